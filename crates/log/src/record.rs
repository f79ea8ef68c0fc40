//! The record codec: plain functions over bytes, no IO (fuzzable).
//!
//! ```text
//! offset  size  field
//! 0       4     body_len  u32 LE = 9 + payload length; 0 = no more records in this segment
//! 4       4     crc       u32 LE, CRC32C of the body (bytes 8 .. 8 + body_len)
//! 8       1     kind      1 = entry, 2 = committed marker
//! 9       8     index     u64 LE
//! 17      n     payload
//! ```
//!
//! `docs/format.md` (section "Log") is the full specification.

use crate::config::PAYLOAD_BYTES_MAX;

/// Bytes before the payload: body_len, crc, kind, index.
pub const RECORD_HEADER_LEN: usize = 17;

/// Bytes of the body that are not payload: kind and index.
pub const BODY_FIXED_LEN: usize = 9;

/// Largest body_len a record may declare. Anything larger is damage, never an allocation.
pub const BODY_LEN_MAX: usize = BODY_FIXED_LEN + PAYLOAD_BYTES_MAX;

/// Kind byte of a log entry; its index is the entry's index.
pub const KIND_ENTRY: u8 = 1;

/// Kind byte of a committed marker. Its index is the index of the next entry after it in the
/// stream; its payload is an 8-byte sequence number (LE) followed by the caller's bytes. The
/// highest sequence number is the latest marker.
pub const KIND_COMMITTED: u8 = 2;

/// One decoded record, borrowing its payload from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub kind: u8,
    pub index: u64,
    pub payload: &'a [u8],
}

impl RawRecord<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The record runs past the end of the buffer (a torn write, or a damaged length).
    Incomplete { needed: usize, available: usize },
    /// body_len is between 1 and 8, or above [`BODY_LEN_MAX`].
    BadLength(u32),
    /// The body does not match its CRC32C.
    BadCrc { stored: u32, computed: u32 },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Incomplete { needed, available } => write!(
                f,
                "record needs {needed} bytes but only {available} remain in the file"
            ),
            RecordError::BadLength(len) => write!(
                f,
                "record length {len} is impossible (must be 9..={BODY_LEN_MAX})"
            ),
            RecordError::BadCrc { stored, computed } => write!(
                f,
                "record checksum mismatch (stored crc32c {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// Bytes a record with a payload of `payload_len` bytes occupies on disk.
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Appends one record to `out`. The caller has checked `payload.len() <= PAYLOAD_BYTES_MAX`.
pub fn encode_record(out: &mut Vec<u8>, kind: u8, index: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= PAYLOAD_BYTES_MAX);
    let body_len = (BODY_FIXED_LEN + payload.len()) as u32;
    let mut fixed = [0u8; BODY_FIXED_LEN];
    fixed[0] = kind;
    fixed[1..9].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&fixed), payload);
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&fixed);
    out.extend_from_slice(payload);
}

/// Appends a committed marker: sequence number, then the caller's bytes, as the payload.
pub fn encode_committed(out: &mut Vec<u8>, next_index: u64, seq: u64, data: &[u8]) {
    let mut payload = Vec::with_capacity(8 + data.len());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(data);
    encode_record(out, KIND_COMMITTED, next_index, &payload);
}

/// Splits a committed marker's payload into (sequence number, caller's bytes).
pub fn decode_committed(payload: &[u8]) -> Option<(u64, &[u8])> {
    let seq = payload.get(..8)?;
    Some((u64::from_le_bytes(seq.try_into().ok()?), &payload[8..]))
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes the record at the start of `buf`.
///
/// `Ok(None)` is the end of the records: a zero length, or fewer than 4 bytes left that are all
/// zero (preallocated space). The kind byte is returned as stored: the caller decides which
/// kinds it knows, because a CRC-valid record of an unknown kind is not a torn write.
pub fn decode_record(buf: &[u8]) -> Result<Option<RawRecord<'_>>, RecordError> {
    if buf.len() < 4 {
        if buf.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        return Err(RecordError::Incomplete {
            needed: RECORD_HEADER_LEN,
            available: buf.len(),
        });
    }
    let body_len = read_u32(buf, 0);
    if body_len == 0 {
        return Ok(None);
    }
    if (body_len as usize) < BODY_FIXED_LEN || body_len as usize > BODY_LEN_MAX {
        return Err(RecordError::BadLength(body_len));
    }
    let total = 8 + body_len as usize;
    if buf.len() < total {
        return Err(RecordError::Incomplete {
            needed: total,
            available: buf.len(),
        });
    }
    let stored = read_u32(buf, 4);
    let body = &buf[8..total];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(RecordError::BadCrc { stored, computed });
    }
    Ok(Some(RawRecord {
        kind: body[0],
        index: u64::from_le_bytes(body[1..9].try_into().expect("8 bytes")),
        payload: &body[BODY_FIXED_LEN..],
    }))
}

/// Looks for a valid record that starts anywhere in `buf[from..]`, used after a damaged
/// record to tell a torn tail (nothing valid follows) from damage in the middle of the log.
///
/// `damaged_at` is where the damaged record starts and `expected_next` the index the log
/// expected there. A genuine later record is an entry or committed marker whose index lies
/// between `expected_next - 1` and `expected_next + 1 + (distance / RECORD_HEADER_LEN)`, because
/// indexes grow by one per entry and every record takes at least `RECORD_HEADER_LEN` bytes.
/// Candidates outside that window are skipped before computing any CRC, which keeps this scan
/// fast over garbage as well as over zeros.
pub fn find_valid_record(
    buf: &[u8],
    from: usize,
    damaged_at: usize,
    expected_next: u64,
) -> Option<usize> {
    let mut at = from;
    while at + RECORD_HEADER_LEN <= buf.len() {
        // Skip runs of zeros quickly: a record's length is never zero. The next non-zero byte
        // may be any of the 4 bytes of a length field, so resume up to 3 bytes before it.
        if buf[at..at + 4] == [0, 0, 0, 0] {
            match buf[at..].iter().position(|&b| b != 0) {
                Some(rel) => at = (at + rel - 3).max(at + 1),
                None => return None,
            }
            continue;
        }
        if plausible_at(buf, at, damaged_at, expected_next) {
            if let Ok(Some(rec)) = decode_record(&buf[at..]) {
                if rec.kind == KIND_ENTRY || rec.kind == KIND_COMMITTED {
                    return Some(at);
                }
            }
        }
        at += 1;
    }
    None
}

fn plausible_at(buf: &[u8], at: usize, damaged_at: usize, expected_next: u64) -> bool {
    let body_len = read_u32(buf, at) as usize;
    if !(BODY_FIXED_LEN..=BODY_LEN_MAX).contains(&body_len) || at + 8 + body_len > buf.len() {
        return false;
    }
    let kind = buf[at + 8];
    if kind != KIND_ENTRY && kind != KIND_COMMITTED {
        return false;
    }
    let index = u64::from_le_bytes(buf[at + 9..at + 17].try_into().expect("8 bytes"));
    let distance = at.saturating_sub(damaged_at) as u64;
    let low = expected_next.saturating_sub(1);
    let high = expected_next.saturating_add(1 + distance / RECORD_HEADER_LEN as u64);
    (low..=high).contains(&index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, kind, index, payload);
        out
    }

    #[test]
    fn record_bytes_are_exactly_as_specified() {
        let bytes = record(KIND_ENTRY, 0x0102, b"ab");
        let body = [1u8, 0x02, 0x01, 0, 0, 0, 0, 0, 0, b'a', b'b'];
        let mut expected = Vec::new();
        expected.extend_from_slice(&11u32.to_le_bytes());
        expected.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn records_round_trip_including_empty_payloads() {
        for payload in [&b""[..], b"x", &[7u8; 1000][..]] {
            let bytes = record(KIND_ENTRY, 42, payload);
            assert_eq!(bytes.len(), encoded_len(payload.len()));
            let rec = decode_record(&bytes).unwrap().unwrap();
            assert_eq!(rec.kind, KIND_ENTRY);
            assert_eq!(rec.index, 42);
            assert_eq!(rec.payload, payload);
            assert_eq!(rec.encoded_len(), bytes.len());
        }
    }

    #[test]
    fn committed_marker_carries_its_sequence_number() {
        let mut bytes = Vec::new();
        encode_committed(&mut bytes, 9, 77, b"log-id");
        let rec = decode_record(&bytes).unwrap().unwrap();
        assert_eq!((rec.kind, rec.index), (KIND_COMMITTED, 9));
        assert_eq!(decode_committed(rec.payload), Some((77, &b"log-id"[..])));
        assert_eq!(decode_committed(b"short"), None);
    }

    #[test]
    fn zeros_mean_end_of_records() {
        assert_eq!(decode_record(&[0u8; 64]), Ok(None));
        assert_eq!(decode_record(&[0u8; 3]), Ok(None));
        assert_eq!(decode_record(&[]), Ok(None));
        assert!(matches!(
            decode_record(&[0, 0, 1]),
            Err(RecordError::Incomplete { .. })
        ));
    }

    #[test]
    fn impossible_lengths_are_rejected_before_any_allocation() {
        let mut bytes = record(KIND_ENTRY, 1, b"abc");
        bytes[0..4].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(decode_record(&bytes), Err(RecordError::BadLength(5)));
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(&bytes), Err(RecordError::BadLength(u32::MAX)));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_detected() {
        let bytes = record(KIND_ENTRY, 5, b"payload bytes");
        for cut in 1..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(
                !matches!(decode_record(&damaged), Ok(Some(r)) if r.payload == b"payload bytes" && r.index == 5),
                "flip at {at} went unnoticed"
            );
        }
    }

    #[test]
    fn resync_finds_the_next_genuine_record_and_ignores_garbage() {
        let mut buf = vec![0xAB; 40];
        let at = buf.len();
        buf.extend(record(KIND_ENTRY, 11, b"next"));
        buf.extend([0u8; 100]);
        assert_eq!(find_valid_record(&buf, 1, 0, 10), Some(at));
        // A valid record whose index is far outside the window is not a later log record.
        let mut far = vec![0u8; 10];
        far.extend(record(KIND_ENTRY, 1_000_000, b"x"));
        assert_eq!(find_valid_record(&far, 1, 0, 10), None);
        assert_eq!(find_valid_record(&[0u8; 4096], 1, 0, 1), None);
    }

    #[test]
    fn resync_sees_records_right_after_zero_bytes() {
        for zeros in 0..8 {
            let mut buf = vec![0u8; zeros];
            buf.extend(record(KIND_COMMITTED, 3, &[1, 2, 3, 4, 5, 6, 7, 8]));
            assert_eq!(
                find_valid_record(&buf, 0, 0, 3),
                Some(zeros),
                "{zeros} zeros"
            );
        }
    }
}
