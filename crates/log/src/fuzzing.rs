//! The properties a fuzz target for the log's decoders checks, as plain functions, so that a
//! libFuzzer target in `fuzz/` and this crate's seeded tests run the same code. Each function
//! takes arbitrary bytes, must never panic on them, and panics only when a property fails.

use crate::meta::{decode_meta, encode_meta};
use crate::record::{decode_record, encode_record, find_valid_record, KIND_COMMITTED, KIND_ENTRY};
use crate::segment::{decode_header, scan_segment, ScanStop, SEGMENT_HEADER_LEN};

/// A record decoded from arbitrary bytes re-encodes to exactly the bytes it was read from.
pub fn check_record(data: &[u8]) {
    if let Ok(Some(rec)) = decode_record(data) {
        let mut again = Vec::new();
        encode_record(&mut again, rec.kind, rec.index, rec.payload);
        assert_eq!(
            &data[..again.len()],
            &again[..],
            "record does not round-trip"
        );
    }
}

/// Scanning arbitrary bytes as a segment stays within them, and every entry it reports decodes
/// at its offset as a valid entry with the expected index. A valid record found after the stop
/// really is one.
pub fn check_segment(data: &[u8]) {
    let first = decode_header(data).unwrap_or(1);
    if data.len() < SEGMENT_HEADER_LEN {
        return;
    }
    let scan = scan_segment(data, first);
    assert!(
        scan.end_offset as usize <= data.len(),
        "scan ran past the data"
    );
    for (i, loc) in scan.entries.iter().enumerate() {
        let rec = decode_record(&data[loc.offset as usize..])
            .ok()
            .flatten()
            .expect("a listed entry decodes");
        assert_eq!(rec.kind, KIND_ENTRY);
        assert_eq!(rec.index, first + i as u64);
        assert_eq!(rec.payload.len(), loc.len as usize);
        assert!(loc.end() <= scan.end_offset);
    }
    if let Some(at) = scan.valid_record_after {
        assert!(
            at > scan.end_offset,
            "resync found a record before the stop"
        );
        let rec = decode_record(&data[at as usize..]).ok().flatten();
        assert!(
            rec.is_some_and(|r| r.kind == KIND_ENTRY || r.kind == KIND_COMMITTED),
            "resync reported an invalid record"
        );
    }
    if scan.stop == ScanStop::End && scan.valid_record_after.is_none() {
        let rest = &data[scan.end_offset as usize..];
        assert!(
            find_valid_record(rest, 0, 0, first + scan.entries.len() as u64).is_none(),
            "a clean end must have no valid record after it"
        );
    }
}

/// A meta file decoded from arbitrary bytes re-encodes to exactly those bytes (the encoding is
/// canonical), and decoding never panics.
pub fn check_meta(data: &[u8]) {
    if let Ok(meta) = decode_meta(data) {
        assert_eq!(encode_meta(&meta), data, "meta does not round-trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_committed;
    use crate::segment::encode_header;
    use rand::{Rng, SeedableRng};

    fn sample_segment() -> Vec<u8> {
        let mut buf = encode_header(10).to_vec();
        for i in 10..20u64 {
            encode_record(
                &mut buf,
                KIND_ENTRY,
                i,
                &vec![i as u8 | 1; (i % 7) as usize],
            );
            if i % 3 == 0 {
                encode_committed(&mut buf, i + 1, i, b"c");
            }
        }
        buf.resize(buf.len() + 64, 0);
        buf
    }

    /// Seeded stand-in for the fuzzer: random bytes and random damage to a valid segment.
    #[test]
    fn decoders_hold_their_properties_on_damaged_and_random_input() {
        let seed: u64 = rand::random();
        println!("fuzzing seed: {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let base = sample_segment();
        check_segment(&base);
        for _ in 0..3000 {
            let mut data = base.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..data.len());
                data[at] = rng.gen();
            }
            if rng.gen_ratio(1, 4) {
                data.truncate(rng.gen_range(0..data.len()));
            }
            check_segment(&data);
            check_record(&data[SEGMENT_HEADER_LEN.min(data.len())..]);
            let random: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
            check_segment(&random);
            check_record(&random);
            check_meta(&random);
        }
    }
}
