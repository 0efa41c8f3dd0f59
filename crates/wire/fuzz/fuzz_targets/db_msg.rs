#![no_main]

use libfuzzer_sys::fuzz_target;
use onionmesh_wire::cell::RelayCmd;
use onionmesh_wire::db::{ContentMeta, DbMsg};

// The first byte picks a DB_* command (0x70..=0x7f), the rest is the relay data. Also decodes the
// whole input as a content descriptor.
fuzz_target!(|data: &[u8]| {
    if let Some((&c, body)) = data.split_first() {
        let cmd = RelayCmd(0x70 | (c & 0x0f));
        if let Ok(msg) = DbMsg::decode(cmd, body) {
            let (again_cmd, again) = msg.encode();
            assert_eq!(again_cmd, cmd);
            assert_eq!(again, body, "a decoded DB message re-encodes to the same bytes");
        }
    }
    if let Ok(meta) = ContentMeta::decode(data) {
        assert_eq!(meta.encode(), data);
    }
});
