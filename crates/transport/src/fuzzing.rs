//! Entry points for the fuzz target (`fuzz/fuzz_targets/transport_frame.rs`): what a peer's bytes
//! can do to the frame and message decoders.

use crate::{decode_frame, encode_frame, FrameError};

/// Decodes `data` as a stream of frames (both with the default limit and a tiny one), and every
/// accepted payload as a message. Panics only on a broken invariant: an accepted frame must
/// re-encode to exactly the bytes it was read from, and consume no more than it was given.
pub fn check_frames(data: &[u8]) {
    for max in [crate::FRAME_BYTES_MAX_DEFAULT, 1024] {
        let mut rest = data;
        while let Ok(Some((payload, used))) = decode_frame(rest, max) {
            assert!(used <= rest.len() && used >= crate::FRAME_HEADER_LEN);
            assert!(payload.len() <= max, "a frame over the limit was accepted");
            let again = encode_frame(payload, max).expect("an accepted payload re-encodes");
            assert_eq!(
                &again[..],
                &rest[..used],
                "re-encoding an accepted frame changes it"
            );
            let _ = crate::envelope::decode(payload);
            rest = &rest[used..];
        }
        if let Err(FrameError::TooLarge { len, max: m }) = decode_frame(rest, max) {
            assert!(len > m);
        }
    }
    // The message decoder alone, on raw bytes.
    let _ = crate::envelope::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_frames_garbage_and_truncations_pass_the_checks() {
        let mut stream = encode_frame(b"hello", 1024).unwrap();
        stream.extend(encode_frame(b"", 1024).unwrap());
        for cut in 0..=stream.len() {
            check_frames(&stream[..cut]);
        }
        for seed in 0..200u64 {
            let junk: Vec<u8> = (0..64)
                .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
                .collect();
            check_frames(&junk);
        }
    }
}
