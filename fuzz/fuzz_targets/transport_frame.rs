//! The transport's frame and message decoders on arbitrary bytes from a peer: never panic,
//! never trust an unchecked length, and accept only frames that re-encode identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_transport::fuzzing::check_frames(data);
});
