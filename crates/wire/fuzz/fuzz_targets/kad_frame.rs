#![no_main]

use libfuzzer_sys::fuzz_target;
use onionmesh_wire::kad::KadMsg;
use onionmesh_wire::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = KadMsg::decode_frame(data) {
        let again = KadMsg::decode_frame(&msg.encode_frame()).expect("a decoded message re-encodes");
        assert_eq!(again, msg);
    }
});
