//! Segment files: their names, their 24-byte header (pure codec) and the reading of a whole
//! segment into the list of its records (pure scan, no IO).
//!
//! ```text
//! header: offset size field
//!         0      8    magic "TNDMLOG\0"
//!         8      4    format version, u32 LE (1)
//!         12     8    first index, u64 LE (index of the first entry stored in this segment)
//!         20     4    CRC32C of bytes 0..20, u32 LE
//! then records from offset 24 until a zero length or the end of the file.
//! ```

use crate::record::{
    decode_committed, decode_record, find_valid_record, RecordError, KIND_COMMITTED, KIND_ENTRY,
};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TNDMLOG\0";

/// Segment format version this code writes and reads.
pub const SEGMENT_VERSION: u32 = 1;

/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER_LEN: usize = 24;

const NAME_PREFIX: &str = "log-";
const NAME_SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;

/// `log-<first_index as 20 digits>.seg`: names sort in index order.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{NAME_PREFIX}{first_index:0NAME_DIGITS$}{NAME_SUFFIX}")
}

/// The first index in a segment file name, or `None` if the name is not a segment's.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header bytes of a segment whose first entry is `first_index`.
pub fn encode_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a header: the first index, or (offset of the bad field, reason).
pub fn decode_header(buf: &[u8]) -> Result<u64, (u64, String)> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err((
            0,
            format!(
                "file is {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
                buf.len()
            ),
        ));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err((0, "bad magic: not a Tandem log segment".to_string()));
    }
    let stored = u32::from_le_bytes(buf[20..24].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&buf[0..20]);
    if stored != computed {
        return Err((
            20,
            format!("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION {
        return Err((
            8,
            format!(
                "format version {version} is not supported (this build reads {SEGMENT_VERSION})"
            ),
        ));
    }
    Ok(u64::from_le_bytes(buf[12..20].try_into().expect("8 bytes")))
}

/// Where one entry's record sits in its segment. Offsets fit in u32 because segment files are
/// at most [`crate::config::SEGMENT_BYTES_MAX`] plus one record, well below 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLoc {
    /// Offset of the record (its length field) in the file.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
}

impl EntryLoc {
    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset as u64 + crate::record::encoded_len(self.len as usize) as u64
    }
}

/// A committed marker found while scanning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedMarker {
    pub seq: u64,
    pub data: Vec<u8>,
    pub offset: u64,
}

/// Why a scan stopped before the end of the file's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// A zero length (or the end of the file) where a record would start: the normal end.
    End,
    /// Bytes that fail framing or CRC: a torn write if nothing valid follows in the last
    /// segment, damage otherwise.
    Damaged(RecordError),
    /// A record with a valid CRC that does not belong here (wrong index, unknown kind, bad
    /// marker). Never a torn write: always damage (or a bug).
    Invalid(String),
}

/// What scanning one segment found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// Entries in order; entry `i` has index `first_index + i`.
    pub entries: Vec<EntryLoc>,
    /// The marker with the highest sequence number, if any.
    pub latest_marker: Option<ScannedMarker>,
    /// Offset just past the last good record (where the next record would go).
    pub end_offset: u64,
    /// Why the scan stopped at `end_offset`.
    pub stop: ScanStop,
    /// Offset of a valid record found after `end_offset`, which proves the stop is not a
    /// clean end or torn tail but damage in the middle.
    pub valid_record_after: Option<u64>,
}

impl SegmentScan {
    /// Index the next entry after this segment's entries would have.
    pub fn next_index(&self, first_index: u64) -> u64 {
        first_index + self.entries.len() as u64
    }
}

/// Scans the records of a segment whose whole file content is `buf` (header included, already
/// checked) and whose first entry index is `first_index`.
pub fn scan_segment(buf: &[u8], first_index: u64) -> SegmentScan {
    let mut entries = Vec::new();
    let mut latest_marker: Option<ScannedMarker> = None;
    let mut at = SEGMENT_HEADER_LEN;
    let mut next = first_index;
    let stop = loop {
        let rec = match decode_record(&buf[at.min(buf.len())..]) {
            Ok(None) => break ScanStop::End,
            Ok(Some(rec)) => rec,
            Err(e) => break ScanStop::Damaged(e),
        };
        match rec.kind {
            KIND_ENTRY => {
                if rec.index != next {
                    break ScanStop::Invalid(format!(
                        "entry has index {} where index {next} was expected",
                        rec.index
                    ));
                }
                let Some(after) = next.checked_add(1) else {
                    break ScanStop::Invalid("entry index overflows u64".to_string());
                };
                entries.push(EntryLoc {
                    offset: at as u32,
                    len: rec.payload.len() as u32,
                });
                next = after;
            }
            KIND_COMMITTED => {
                if rec.index != next {
                    break ScanStop::Invalid(format!(
                        "committed marker names next index {} where {next} was expected",
                        rec.index
                    ));
                }
                let Some((seq, data)) = decode_committed(rec.payload) else {
                    break ScanStop::Invalid(
                        "committed marker is shorter than its sequence number".to_string(),
                    );
                };
                if latest_marker.as_ref().is_none_or(|m| seq > m.seq) {
                    latest_marker = Some(ScannedMarker {
                        seq,
                        data: data.to_vec(),
                        offset: at as u64,
                    });
                }
            }
            kind => break ScanStop::Invalid(format!("unknown record kind {kind}")),
        }
        at += rec.encoded_len();
    };
    let valid_record_after = if at < buf.len() {
        find_valid_record(buf, at + 1, at, next).map(|p| p as u64)
    } else {
        None
    };
    SegmentScan {
        entries,
        latest_marker,
        end_offset: at as u64,
        stop,
        valid_record_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_committed, encode_record};

    fn segment(first: u64, records: &[(u8, u64, &[u8])], size: usize) -> Vec<u8> {
        let mut buf = encode_header(first).to_vec();
        for (kind, index, payload) in records {
            if *kind == KIND_COMMITTED {
                encode_committed(&mut buf, *index, 1, payload);
            } else {
                encode_record(&mut buf, *kind, *index, payload);
            }
        }
        if size > buf.len() {
            buf.resize(size, 0);
        }
        buf
    }

    #[test]
    fn names_sort_by_index_and_round_trip() {
        assert_eq!(segment_file_name(7), "log-00000000000000000007.seg");
        assert_eq!(segment_file_name(u64::MAX), "log-18446744073709551615.seg");
        for i in [0, 1, 99, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(i)), Some(i));
        }
        for bad in [
            "log-1.seg",
            "log-0000000000000000000x.seg",
            "x.seg",
            "log-00000000000000000001.tmp",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn header_round_trips_and_damage_names_the_field() {
        let h = encode_header(123);
        assert_eq!(decode_header(&h), Ok(123));
        assert_eq!(decode_header(&h[..10]).unwrap_err().0, 0);
        let mut bad = h;
        bad[0] = b'X';
        assert!(decode_header(&bad).unwrap_err().1.contains("magic"));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_header(&bad).unwrap_err().0, 20);
        let mut v2 = h;
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&v2[0..20]);
        v2[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_header(&v2).unwrap_err().1.contains("version 2"));
    }

    #[test]
    fn scan_lists_entries_and_the_latest_marker() {
        let buf = segment(
            5,
            &[
                (KIND_ENTRY, 5, b"a"),
                (KIND_COMMITTED, 6, b"c1"),
                (KIND_ENTRY, 6, b"bb"),
            ],
            512,
        );
        let scan = scan_segment(&buf, 5);
        assert_eq!(scan.stop, ScanStop::End);
        assert_eq!(scan.entries.len(), 2);
        assert_eq!(scan.entries[0].offset as usize, SEGMENT_HEADER_LEN);
        assert_eq!(scan.entries[1].len, 2);
        assert_eq!(scan.latest_marker.as_ref().unwrap().data, b"c1");
        assert_eq!(scan.end_offset, scan.entries[1].end());
        assert_eq!(scan.valid_record_after, None);
        assert_eq!(scan.next_index(5), 7);
    }

    #[test]
    fn scan_flags_an_index_out_of_sequence() {
        let buf = segment(5, &[(KIND_ENTRY, 5, b"a"), (KIND_ENTRY, 7, b"b")], 256);
        let scan = scan_segment(&buf, 5);
        assert!(matches!(scan.stop, ScanStop::Invalid(ref m) if m.contains("index 7")));
        assert_eq!(scan.entries.len(), 1);
    }

    #[test]
    fn scan_of_a_file_exactly_full_of_records_ends_cleanly() {
        let buf = segment(1, &[(KIND_ENTRY, 1, b"abc")], 0);
        let scan = scan_segment(&buf, 1);
        assert_eq!(scan.stop, ScanStop::End);
        assert_eq!(scan.entries.len(), 1);
    }

    #[test]
    fn scan_tells_a_torn_tail_from_damage_in_the_middle() {
        let full = segment(1, &[(KIND_ENTRY, 1, b"one"), (KIND_ENTRY, 2, b"two")], 256);
        let second = scan_segment(&full, 1).entries[1];

        let mut torn = full.clone();
        torn[second.offset as usize + 10..second.end() as usize].fill(0);
        let scan = scan_segment(&torn, 1);
        assert!(matches!(scan.stop, ScanStop::Damaged(_)));
        assert_eq!(scan.end_offset, second.offset as u64);
        assert_eq!(scan.valid_record_after, None);

        let mut middle = full.clone();
        middle[SEGMENT_HEADER_LEN + 18] ^= 0xFF;
        let scan = scan_segment(&middle, 1);
        assert!(matches!(
            scan.stop,
            ScanStop::Damaged(RecordError::BadCrc { .. })
        ));
        assert_eq!(scan.end_offset, SEGMENT_HEADER_LEN as u64);
        assert_eq!(scan.valid_record_after, Some(second.offset as u64));

        let mut zeroed = full;
        zeroed[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 4].fill(0);
        let scan = scan_segment(&zeroed, 1);
        assert_eq!(scan.stop, ScanStop::End);
        assert_eq!(scan.valid_record_after, Some(second.offset as u64));
    }
}
