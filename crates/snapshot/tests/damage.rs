//! Damage of any kind is detected, and reported at the right place.
//!
//! The small files here use tiny blocks so every part of the format (header, many blocks,
//! records spanning blocks, trailer) fits in a couple of kilobytes and can be damaged at every
//! single byte.

mod common;

use std::path::Path;

use common::{layout, put, record, write, Layout};
use rand::{Rng, SeedableRng};
use tandem_snapshot::{verify_bytes, verify_file, Part, SnapshotError, SnapshotReader};

/// A small snapshot with a meta blob, ~30 blocks of 64 bytes and records of 0..100 bytes.
fn sample(dir: &Path) -> Vec<u8> {
    let records: Vec<_> = (0..40).map(|i| record(i, (i * 17) % 100)).collect();
    let info = write(dir, "sample", b"meta!", 64, &records);
    std::fs::read(info.path).unwrap()
}

/// Reads every record with `next_record` and returns the first error.
fn read_all(path: &Path) -> Result<u64, SnapshotError> {
    let mut reader = SnapshotReader::open(path)?;
    let mut n = 0;
    while reader.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The part of the file byte `pos` belongs to, and that part's start offset.
fn part_of(l: &Layout, pos: usize) -> (Part, u64) {
    if pos < l.header {
        return (Part::Header, 0);
    }
    for (i, &(start, end)) in l.blocks.iter().enumerate() {
        if pos < end {
            return (Part::Block(i as u64), start as u64);
        }
    }
    (Part::Trailer, l.trailer as u64)
}

#[test]
fn a_flipped_byte_anywhere_is_found_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    let l = layout(&good);
    assert!(l.blocks.len() > 20, "sample should have many blocks");
    for mask in [0x01u8, 0xFF] {
        for pos in 0..good.len() {
            let mut bad = good.clone();
            bad[pos] ^= mask;
            let path = put(dir.path(), "bad.snap", &bad);
            let err = verify_file(&path).expect_err(&format!("flip {mask:#x} at {pos} missed"));
            assert!(err.is_damage(), "flip at {pos}: not damage: {err}");
            let expected = part_of(&l, pos);
            let got = err
                .location()
                .unwrap_or_else(|| panic!("flip at {pos}: no location: {err}"));
            assert_eq!(got, expected, "flip {mask:#x} at {pos}: {err}");
            // The message names the file and the place, for a person reading `tandem check`.
            let msg = err.to_string();
            assert!(msg.contains("bad.snap"), "{msg}");
            assert!(msg.contains("do not load it"), "{msg}");
            // The in-memory entry point (for fuzzing) finds the same fault.
            let err3 = verify_bytes(&bad, &path).unwrap_err();
            assert_eq!(err3.to_string(), err.to_string());
            // The record-by-record reader agrees that the file is bad.
            let err2 = read_all(&path).expect_err("next_record missed the damage");
            assert_eq!(err2.location(), Some(expected), "{err2}");
        }
    }
}

#[test]
fn named_positions_give_the_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    let l = layout(&good);
    let flip = |pos: usize| {
        let mut bad = good.clone();
        bad[pos] ^= 0x04;
        verify_file(&put(dir.path(), "bad.snap", &bad)).unwrap_err()
    };

    assert!(matches!(
        flip(0),
        SnapshotError::BadMagic {
            part: Part::Header,
            offset: 0,
            ..
        }
    ));
    assert!(matches!(
        flip(8),
        SnapshotError::UnsupportedVersion {
            version: 5,
            supported: 1,
            ..
        }
    ));
    assert!(matches!(flip(17), SnapshotError::HeaderCrc { .. })); // meta
    assert!(matches!(
        flip(l.header - 1),
        SnapshotError::HeaderCrc { .. }
    )); // header CRC

    let (b7, _) = l.blocks[7];
    let e = flip(b7 + 20); // payload
    assert!(
        matches!(e, SnapshotError::BlockCrc { block: 7, offset, .. } if offset == b7 as u64),
        "{e}"
    );
    let e = flip(b7 + 5); // CRC field
    assert!(
        matches!(e, SnapshotError::BlockCrc { block: 7, offset, .. } if offset == b7 as u64),
        "{e}"
    );
    let e = flip(b7); // length 64 -> 68: still inside the file, caught by the CRC
    assert!(matches!(e, SnapshotError::BlockCrc { block: 7, .. }), "{e}");
    let e = flip(b7 + 2); // length 64 -> 0x40040: past the end
    assert!(
        matches!(
            e,
            SnapshotError::Truncated {
                part: Part::Block(7),
                ..
            }
        ),
        "{e}"
    );
    let e = flip(b7 + 3); // length -> 0x04000040: over the block limit
    assert!(
        matches!(
            e,
            SnapshotError::TooLarge {
                part: Part::Block(7),
                what: "block payload",
                ..
            }
        ),
        "{e}"
    );

    let t = l.trailer;
    assert!(matches!(
        flip(t),
        SnapshotError::BadMagic {
            part: Part::Trailer,
            ..
        }
    ));
    assert!(matches!(
        flip(t + 6),
        SnapshotError::BadMagic {
            part: Part::Trailer,
            ..
        }
    ));
    assert!(matches!(flip(t + 8), SnapshotError::TrailerCrc { .. })); // record count
    assert!(matches!(flip(t + 30), SnapshotError::TrailerCrc { .. })); // digest
    assert!(matches!(flip(t + 59), SnapshotError::TrailerCrc { .. })); // CRC
}

#[test]
fn truncation_at_every_length_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    for len in 0..good.len() {
        let path = put(dir.path(), "cut.snap", &good[..len]);
        let err = verify_file(&path).expect_err(&format!("cut at {len} missed"));
        assert!(err.is_damage(), "cut at {len}: {err}");
        let (_, offset) = err.location().unwrap();
        assert!(
            offset <= len as u64,
            "cut at {len} reported at {offset}: {err}"
        );
        assert!(
            read_all(&path).is_err(),
            "next_record missed the cut at {len}"
        );
    }
}

#[test]
fn truncation_inside_a_block_names_that_block() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    let l = layout(&good);
    let (start, end) = l.blocks[12];
    let path = put(dir.path(), "cut.snap", &good[..end - 3]);
    match verify_file(&path).unwrap_err() {
        SnapshotError::Truncated {
            part,
            offset,
            needed,
            available,
            ..
        } => {
            assert_eq!(part, Part::Block(12));
            assert_eq!(offset, start as u64);
            assert_eq!(needed, (end - start) as u64);
            assert_eq!(available, (end - start - 3) as u64);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bytes_after_the_trailer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample(dir.path());
    let end = bytes.len() as u64;
    bytes.push(0);
    let err = verify_file(&put(dir.path(), "long.snap", &bytes)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::TrailingBytes { offset, extra: 1, .. } if offset == end),
        "{err}"
    );
}

/// Re-frames `bytes` after its block payloads or trailer fields were edited, recomputing the
/// CRCs (but not the digest), to reach the checks that sit behind the CRCs.
fn refresh_crcs(bytes: &mut [u8]) {
    let l = layout(bytes);
    for &(start, end) in &l.blocks {
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&bytes[start..start + 4]),
            &bytes[start + 8..end],
        );
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let t = l.trailer;
    let crc = crc32c::crc32c(&bytes[t..t + 56]);
    bytes[t + 56..t + 60].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn consistent_edits_behind_the_crcs_are_caught_by_digest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    let l = layout(&good);

    // A payload byte changed and its block CRC recomputed: only the digest can tell.
    let mut bad = good.clone();
    bad[l.blocks[3].0 + 10] ^= 1;
    refresh_crcs(&mut bad);
    let err = verify_file(&put(dir.path(), "d.snap", &bad)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::DigestMismatch { offset, .. } if offset == l.trailer as u64),
        "{err}"
    );

    // The trailer's counts changed and its CRC recomputed (the digest does not cover it).
    let mut bad = good.clone();
    bad[l.trailer + 8] ^= 1;
    refresh_crcs(&mut bad);
    let err = verify_file(&put(dir.path(), "c.snap", &bad)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::CountMismatch {
                what: "records",
                ..
            }
        ),
        "{err}"
    );

    let mut bad = good.clone();
    bad[l.trailer + 16] ^= 1;
    refresh_crcs(&mut bad);
    let err = verify_file(&put(dir.path(), "c.snap", &bad)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::CountMismatch { what: "blocks", .. }),
        "{err}"
    );
}

/// Builds a file by hand from a header, raw block payloads and a trailer whose digest and
/// counts are right, so only the record framing inside the blocks is wrong.
fn hand_made(blocks: &[&[u8]], record_count: u64) -> Vec<u8> {
    use sha2::Digest;
    let mut out = tandem_snapshot::format::encode_header(b"");
    for payload in blocks {
        out.extend_from_slice(&tandem_snapshot::format::encode_block_head(payload));
        out.extend_from_slice(payload);
    }
    let digest: [u8; 32] = sha2::Sha256::digest(&out).into();
    let trailer = tandem_snapshot::format::Trailer {
        record_count,
        block_count: blocks.len() as u64,
        digest,
    };
    out.extend_from_slice(&trailer.encode());
    out
}

#[test]
fn hand_made_files_with_valid_checksums_but_bad_framing() {
    let dir = tempfile::tempdir().unwrap();
    // Sanity: a hand-made good file verifies.
    let ok = hand_made(&[&[2, 0, 0, 0, b'h', b'i']], 1);
    assert_eq!(
        verify_file(&put(dir.path(), "ok.snap", &ok))
            .unwrap()
            .record_count,
        1
    );

    // A record cut off by the trailer.
    let cut = hand_made(&[&[9, 0, 0, 0, b'h', b'i']], 1);
    let err = verify_file(&put(dir.path(), "cut.snap", &cut)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Malformed {
                part: Part::Block(0),
                offset: 28,
                ..
            }
        ),
        "{err}"
    );

    // A length prefix cut off by the trailer.
    let cut = hand_made(&[&[2, 0, 0, 0, b'h', b'i', 1, 0]], 2);
    let err = verify_file(&put(dir.path(), "cut.snap", &cut)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Malformed {
                part: Part::Block(0),
                offset: 34,
                ..
            }
        ),
        "{err}"
    );

    // A record claiming more than the limit: refused before any allocation.
    let huge = hand_made(&[&[0xFF, 0xFF, 0xFF, 0xFF, 0]], 1);
    let err = verify_file(&put(dir.path(), "huge.snap", &huge)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::TooLarge {
                what: "record",
                len: 0xFFFF_FFFF,
                ..
            }
        ),
        "{err}"
    );

    // A record claiming 500 MiB (within the limit) in a tiny file: the reader reserves only what
    // the file could hold, then finds the record cut off.
    let big = hand_made(&[&(500u32 << 20).to_le_bytes()], 1);
    let path = put(dir.path(), "big.snap", &big);
    assert!(matches!(
        read_all(&path).unwrap_err(),
        SnapshotError::Malformed { .. }
    ));

    // An empty block.
    let empty = {
        let mut out = tandem_snapshot::format::encode_header(b"");
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&crc32c::crc32c(&[0, 0, 0, 0]).to_le_bytes());
        out.extend_from_slice(&[0; 60]);
        out
    };
    let err = verify_file(&put(dir.path(), "empty.snap", &empty)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Malformed {
                part: Part::Block(0),
                offset: 20,
                ..
            }
        ),
        "{err}"
    );

    // A record count that disagrees with the records.
    let miscounted = hand_made(&[&[2, 0, 0, 0, b'h', b'i']], 2);
    let err = verify_file(&put(dir.path(), "n.snap", &miscounted)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::CountMismatch {
                what: "records",
                stored: 2,
                counted: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn hostile_headers_are_refused_without_big_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = b"TNDMSNAP".to_vec();
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = verify_file(&put(dir.path(), "h.snap", &h)).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::TooLarge {
                part: Part::Header,
                what: "meta",
                ..
            }
        ),
        "{err}"
    );

    let err = verify_file(&put(
        dir.path(),
        "x.snap",
        b"hello, world! this is not a snapshot",
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::BadMagic {
                part: Part::Header,
                ..
            }
        ),
        "{err}"
    );
    let err = verify_file(&put(dir.path(), "short.snap", b"TNDM")).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Truncated {
                part: Part::Header,
                ..
            }
        ),
        "{err}"
    );
    let err = verify_file(&put(dir.path(), "empty.snap", b"")).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Truncated {
                part: Part::Header,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_failed_reader_stays_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = sample(dir.path());
    let l = layout(&bad);
    bad[l.blocks[0].0 + 12] ^= 1;
    let mut reader = SnapshotReader::open(&put(dir.path(), "bad.snap", &bad)).unwrap();
    assert!(matches!(
        reader.next_record(),
        Err(SnapshotError::BlockCrc { block: 0, .. })
    ));
    assert!(matches!(
        reader.next_record(),
        Err(SnapshotError::ReaderFailed { .. })
    ));
    assert!(reader.summary().is_none());
}

/// Random damage (flips, overwrites, cuts, insertions, several at once) never panics and is
/// always detected. Prints its seed; set SNAPSHOT_FUZZ_SEED to replay one.
#[test]
fn random_damage_is_always_detected() {
    let seed: u64 = std::env::var("SNAPSHOT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("SNAPSHOT_FUZZ_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let good = sample(dir.path());
    for round in 0..1500 {
        let mut bad = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let pos = rng.gen_range(0..bad.len());
            match rng.gen_range(0..4) {
                0 => bad[pos] ^= 1 << rng.gen_range(0..8),
                1 => bad[pos] = rng.gen(),
                2 => bad.truncate(pos),
                _ => bad.insert(pos, rng.gen()),
            }
            if bad.is_empty() {
                break;
            }
        }
        if bad == good {
            continue;
        }
        let path = put(dir.path(), "fuzz.snap", &bad);
        let err =
            verify_file(&path).expect_err(&format!("seed {seed} round {round}: damage missed"));
        assert!(err.is_damage(), "seed {seed} round {round}: {err}");
        assert!(
            read_all(&path).is_err(),
            "seed {seed} round {round}: next_record missed it"
        );
        assert!(
            verify_bytes(&bad, &path).is_err(),
            "seed {seed} round {round}: verify_bytes missed it"
        );
    }
}
