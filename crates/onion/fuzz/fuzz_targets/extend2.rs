#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| onionmesh_onion::fuzzing::extend2(data));
