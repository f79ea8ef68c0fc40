//! Client requests fed to `RequestParser` whole, in random chunks and byte by byte: it must
//! never panic, and how the bytes are split into reads must not change the requests parsed, the
//! error, or the bytes left over. The first input byte picks the limits and the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_resp::fuzzing::check_request(data);
});
