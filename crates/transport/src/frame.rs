//! The frame codec: plain functions over bytes, no IO (fuzzable).
//!
//! ```text
//! offset  size  field
//! 0       4     len      u32 LE, payload length, at most the receiver's frame_bytes_max
//! 4       4     crc      u32 LE, CRC32C (Castagnoli) of the payload
//! 8       len   payload  one envelope (see `envelope`)
//! ```
//!
//! The CRC is checked before a single payload byte is interpreted. `FORMAT.md` in this crate
//! (section "Transport frame") is the full specification.

/// Bytes before the payload: len, crc.
pub const FRAME_HEADER_LEN: usize = 8;

/// Why the bytes at the start of a buffer are not a valid frame. Either way the stream can no
/// longer be trusted (not even the length of the bad frame) and the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is above the limit (or, when encoding, the payload is).
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The payload does not match its CRC32C.
    #[error("frame checksum mismatch (stored crc32c {stored:#010x}, computed {computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
}

/// Encodes one frame around `payload`. Fails when the payload is longer than `max` or than the
/// u32 length field can say.
pub fn encode_frame(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    frame.extend_from_slice(payload);
    seal(&mut frame, max)?;
    Ok(frame)
}

/// Fills in the header of `frame`, whose payload starts at [`FRAME_HEADER_LEN`]: the length and
/// the CRC32C of the payload. This is how every frame this crate sends is finished.
pub(crate) fn seal(frame: &mut [u8], max: usize) -> Result<(), FrameError> {
    let len = frame.len() - FRAME_HEADER_LEN;
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let crc = crc32c::crc32c(&frame[FRAME_HEADER_LEN..]);
    frame[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes the frame at the start of `buf`, accepting payloads of at most `max` bytes.
///
/// Returns the payload and the number of bytes the frame occupies, or `Ok(None)` when `buf` does
/// not hold a whole frame yet (read more and call again). The length is checked against `max` as
/// soon as its 4 bytes are in, so a hostile length never makes the caller wait for, or allocate,
/// more than `max` bytes. Never panics, whatever `buf` holds.
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    // The length is judged as soon as its 4 bytes are in, before the CRC's.
    let Some(&[l0, l1, l2, l3]) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(&[c0, c1, c2, c3]) = buf.get(4..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let total = FRAME_HEADER_LEN + len;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..total) else {
        return Ok(None);
    };
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(FrameError::BadCrc { stored, computed });
    }
    Ok(Some((payload, total)))
}

/// How many more bytes `buf` needs before [`decode_frame`] can decide, given that it returned
/// `Ok(None)`: the rest of the header, or the rest of the frame.
pub(crate) fn bytes_missing(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(len) if buf.len() >= FRAME_HEADER_LEN => {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            (FRAME_HEADER_LEN + len).saturating_sub(buf.len())
        }
        _ => FRAME_HEADER_LEN - buf.len().min(FRAME_HEADER_LEN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    #[test]
    fn encodes_the_documented_bytes() {
        let frame = encode_frame(b"hello", 1024).unwrap();
        let crc = crc32c::crc32c(b"hello").to_le_bytes();
        let mut expected = vec![5, 0, 0, 0];
        expected.extend_from_slice(&crc);
        expected.extend_from_slice(b"hello");
        assert_eq!(frame, expected);
    }

    #[test]
    fn round_trips_back_to_back_frames_fed_byte_by_byte() {
        let payloads: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), vec![7; 3000]];
        let mut stream = Vec::new();
        for p in &payloads {
            stream.extend_from_slice(&encode_frame(p, 4096).unwrap());
        }
        // Feed the stream one byte at a time, as a slow socket would.
        let mut buf = Vec::new();
        let mut decoded = Vec::new();
        for &byte in &stream {
            buf.push(byte);
            if let Some((payload, used)) = decode_frame(&buf, 4096).unwrap() {
                decoded.push(payload.to_vec());
                buf.drain(..used);
            } else {
                assert!(bytes_missing(&buf) > 0);
            }
        }
        assert_eq!(decoded, payloads);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_flipped_bit_anywhere_after_the_length_is_a_crc_mismatch() {
        let frame = encode_frame(b"some payload", 1024).unwrap();
        for byte in 4..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    matches!(decode_frame(&bad, 1024), Err(FrameError::BadCrc { .. })),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn lengths_above_the_limit_are_refused_from_the_header_alone() {
        let frame = encode_frame(&[1; 100], 1024).unwrap();
        assert_eq!(
            decode_frame(&frame[..4], 99),
            Err(FrameError::TooLarge { len: 100, max: 99 }),
            "the length alone is enough to refuse"
        );
        assert_eq!(decode_frame(&frame[..4], 100), Ok(None));
        assert!(decode_frame(&frame, 100).unwrap().is_some());
        assert_eq!(
            decode_frame(&[0xff; 8], usize::MAX >> 1).unwrap(),
            None,
            "4 GiB is within an absurd limit: wait for more"
        );
        assert!(decode_frame(&[0xff; 8], 1 << 20).is_err());
        assert_eq!(
            encode_frame(&[0; 11], 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            // Small lengths, so that some garbage reaches the CRC check.
            if len >= 4 && rng.gen_bool(0.5) {
                buf[0..4].copy_from_slice(&rng.gen_range(0u32..64).to_le_bytes());
            }
            let max = rng.gen_range(0..128);
            match decode_frame(&buf, max) {
                Ok(Some((payload, used))) => {
                    assert!(used <= buf.len() && payload.len() <= max);
                }
                Ok(None) => assert!(bytes_missing(&buf) > 0),
                Err(_) => {}
            }
        }
    }
}
