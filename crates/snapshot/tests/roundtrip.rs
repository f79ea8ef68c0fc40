//! Whatever is written comes back byte for byte, with the counts and digest the writer reported.

mod common;

use common::{layout, record, write};
use tandem_snapshot::{
    read_chunk, verify_file, SnapshotError, SnapshotReader, SnapshotWriter,
    DEFAULT_BLOCK_PAYLOAD_LEN, MAX_CHUNK_LEN, MAX_META_LEN,
};

/// Writes `records`, reads them back with `next_record`, verifies with `verify_file`, and checks
/// every count and the digest agree. Returns the file bytes.
fn round_trip(meta: &[u8], block_len: usize, records: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let info = write(dir.path(), "s", meta, block_len, records);
    assert_eq!(info.path, dir.path().join("s.snap"));
    assert!(!dir.path().join("s.tmp").exists());
    let bytes = std::fs::read(&info.path).unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.record_count, records.len() as u64);

    let stream_len: usize = records.iter().map(|r| 4 + r.len()).sum();
    assert_eq!(info.block_count as usize, stream_len.div_ceil(block_len));
    assert_eq!(layout(&bytes).blocks.len() as u64, info.block_count);

    let mut reader = SnapshotReader::open(&info.path).unwrap();
    assert_eq!(reader.meta(), meta);
    for (i, expected) in records.iter().enumerate() {
        let got = reader.next_record().unwrap().expect("record missing");
        assert!(got[..] == expected[..], "record {i} differs");
    }
    assert_eq!(reader.next_record().unwrap(), None);
    assert_eq!(reader.next_record().unwrap(), None, "None is sticky");
    let summary = reader.summary().unwrap().clone();
    assert_eq!(summary.record_count, info.record_count);
    assert_eq!(summary.block_count, info.block_count);
    assert_eq!(summary.digest, info.digest);
    assert_eq!(summary.size, info.size);
    assert_eq!(summary.meta_len, meta.len() as u64);

    assert_eq!(verify_file(&info.path).unwrap(), summary);
    bytes
}

#[test]
fn zero_records_is_header_then_trailer() {
    let bytes = round_trip(b"", DEFAULT_BLOCK_PAYLOAD_LEN, &[]);
    assert_eq!(bytes.len(), 20 + 60);
}

#[test]
fn one_record() {
    round_trip(
        b"last-log-id",
        DEFAULT_BLOCK_PAYLOAD_LEN,
        &[b"k=v".to_vec()],
    );
}

#[test]
fn empty_records_and_empty_meta() {
    round_trip(b"", 16, &[vec![], vec![], record(1, 3), vec![]]);
}

#[test]
fn records_larger_than_a_block_span_blocks() {
    let records = vec![
        record(0, 10_000),
        record(1, 5),
        record(2, 1024),
        record(3, 1023),
        record(4, 1025),
    ];
    round_trip(b"m", 1024, &records);
}

#[test]
fn length_prefixes_split_across_block_boundaries() {
    // With 7-byte blocks and records of every small size, prefixes land at every split point.
    let records: Vec<_> = (0..60).map(|i| record(i, i % 13)).collect();
    round_trip(b"meta", 7, &records);
}

#[test]
fn one_byte_blocks() {
    let records: Vec<_> = (0..10).map(|i| record(i, i)).collect();
    round_trip(b"", 1, &records);
}

#[test]
fn record_of_several_default_blocks() {
    round_trip(
        b"",
        DEFAULT_BLOCK_PAYLOAD_LEN,
        &[
            record(0, 100),
            record(1, 3 * DEFAULT_BLOCK_PAYLOAD_LEN + 17),
            record(2, 100),
        ],
    );
}

#[test]
fn many_small_records() {
    let records: Vec<_> = (0..100_000).map(|i| record(i, 20 + i % 100)).collect();
    round_trip(b"membership", DEFAULT_BLOCK_PAYLOAD_LEN, &records);
}

#[test]
fn meta_at_its_limit() {
    round_trip(&record(9, MAX_META_LEN), 4096, &[record(0, 10)]);
}

#[test]
fn skip_record_reports_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let records = vec![record(0, 3), record(1, 0), record(2, 50)];
    let info = write(dir.path(), "s", b"", 8, &records);
    let mut reader = SnapshotReader::open(&info.path).unwrap();
    assert_eq!(reader.skip_record().unwrap(), Some(3));
    assert_eq!(reader.skip_record().unwrap(), Some(0));
    assert_eq!(&reader.next_record().unwrap().unwrap()[..], &records[2][..]);
    assert_eq!(reader.skip_record().unwrap(), None);
    assert_eq!(reader.records_read(), 3);
}

#[test]
fn writer_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let err = SnapshotWriter::create(dir.path(), "m", &vec![0; MAX_META_LEN + 1]).unwrap_err();
    assert!(
        matches!(err, SnapshotError::LimitExceeded { what: "meta", .. }),
        "{err}"
    );
    for len in [0, tandem_snapshot::MAX_BLOCK_PAYLOAD_LEN + 1] {
        let err = SnapshotWriter::create_with_block_len(dir.path(), "b", b"", len).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::LimitExceeded {
                what: "block payload",
                ..
            }
        ));
    }

    // calloc'd, so the 513 MiB are never touched.
    let huge = vec![0u8; tandem_snapshot::MAX_RECORD_LEN + 1];
    let mut w = SnapshotWriter::create(dir.path(), "r", b"").unwrap();
    let err = w.write_record(&huge).unwrap_err();
    assert!(
        matches!(err, SnapshotError::LimitExceeded { what: "record", .. }),
        "{err}"
    );
    // The refused record left no trace: the writer goes on.
    w.write_record(b"ok").unwrap();
    let info = w.finish().unwrap();
    assert_eq!(info.record_count, 1);
    verify_file(&info.path).unwrap();
}

#[test]
fn invalid_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let long = "a".repeat(201);
    for name in ["", ".hidden", "a/b", "../x", "a b", "é", long.as_str()] {
        let err = SnapshotWriter::create(dir.path(), name, b"").unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidName { .. }),
            "{name:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn existing_snapshot_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let info = write(dir.path(), "s", b"", 64, &[record(0, 5)]);
    let before = std::fs::read(&info.path).unwrap();
    let err = SnapshotWriter::create(dir.path(), "s", b"").unwrap_err();
    assert!(matches!(err, SnapshotError::AlreadyExists { .. }), "{err}");
    assert_eq!(std::fs::read(&info.path).unwrap(), before);
}

#[test]
fn two_writers_cannot_share_a_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = SnapshotWriter::create(dir.path(), "s", b"").unwrap();
    let err = SnapshotWriter::create(dir.path(), "s", b"").unwrap_err();
    assert!(matches!(err, SnapshotError::InProgress { .. }), "{err}");
    drop(first);
    // Released on drop.
    SnapshotWriter::create(dir.path(), "s", b"")
        .unwrap()
        .finish()
        .unwrap();
}

#[test]
fn dropping_an_unfinished_writer_removes_its_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SnapshotWriter::create(dir.path(), "s", b"meta").unwrap();
    w.write_record(&record(0, 5000)).unwrap();
    let tmp = w.tmp_path().to_path_buf();
    assert!(tmp.exists());
    drop(w);
    assert!(!tmp.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn read_chunk_reassembles_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..500).map(|i| record(i, 30)).collect();
    let info = write(dir.path(), "s", b"meta", 256, &records);
    let bytes = std::fs::read(&info.path).unwrap();
    let mut copy = Vec::new();
    loop {
        let chunk = read_chunk(&info.path, copy.len() as u64, 1000).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 1000);
        copy.extend_from_slice(&chunk);
    }
    assert_eq!(copy, bytes);
    assert!(read_chunk(&info.path, bytes.len() as u64 + 5, 10)
        .unwrap()
        .is_empty());
    assert_eq!(read_chunk(&info.path, 3, usize::MAX).unwrap(), bytes[3..]);
    assert!(MAX_CHUNK_LEN >= bytes.len());
    let err = read_chunk(&dir.path().join("missing.snap"), 0, 10).unwrap_err();
    assert!(matches!(err, SnapshotError::Io { .. }));
}

#[test]
fn writer_and_reader_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<SnapshotWriter>();
    assert_send::<SnapshotReader>();
    assert_send::<SnapshotError>();
}
