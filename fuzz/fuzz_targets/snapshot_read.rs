//! The snapshot reader on arbitrary bytes: never panics, never allocates from an unchecked
//! length; whole-file verification and record-by-record reading agree on whether the bytes
//! are a valid snapshot.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tandem_snapshot::{verify_bytes, SnapshotReader};

fuzz_target!(|data: &[u8]| {
    let label = Path::new("fuzz.snap");
    let verified = verify_bytes(data, label).is_ok();
    let read_ok = match SnapshotReader::from_source(data, data.len() as u64, label) {
        Ok(mut reader) => loop {
            match reader.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => break true,
                Err(_) => break false,
            }
        },
        Err(_) => false,
    };
    assert_eq!(verified, read_ok, "verify_bytes and SnapshotReader disagree");
});
