//! The log's decoders (record, segment, meta file) on arbitrary bytes: never panic, never
//! allocate from an unchecked length, and accept only what re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_log::fuzzing::check_record(data);
    tandem_log::fuzzing::check_segment(data);
    tandem_log::fuzzing::check_meta(data);
});
