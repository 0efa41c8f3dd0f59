#![no_main]

use libfuzzer_sys::fuzz_target;
use onionmesh_wire::{Frame, LinkMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = LinkMsg::decode_frame(data) {
        let again = LinkMsg::decode_frame(&msg.encode_frame()).expect("a decoded message re-encodes");
        assert_eq!(again, msg);
    }
});
