#![no_main]

use libfuzzer_sys::fuzz_target;
use onionmesh_wire::{Frame, SignalMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = SignalMsg::decode_frame(data) {
        let again = SignalMsg::decode_frame(&msg.encode_frame()).expect("a decoded message re-encodes");
        assert_eq!(again, msg);
    }
});
