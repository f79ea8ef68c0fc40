//! Replies fed to `parse_frame`: it must never panic, no prefix of a value may parse as a value,
//! and each value parsed must survive encode (RESP2 and RESP3) → parse → encode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_resp::fuzzing::check_frame(data);
});
