//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;
use tandem_log::{Log, LogConfig, OpenReport};

/// A deterministic payload for `index`: 1..=200 bytes, none of them zero, so that a record cut
/// anywhere in its payload never happens to read back as valid.
pub fn payload(index: u64) -> Bytes {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let len = 1 + (x % 200) as usize;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x as u8) | 1);
    }
    Bytes::from(out)
}

/// A configuration for tests: small segments, the given cache.
pub fn small(segment_size_bytes: u64, cache_bytes_max: usize) -> LogConfig {
    LogConfig {
        segment_size_bytes,
        cache_bytes_max,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, cfg: LogConfig) -> (Log, OpenReport) {
    Log::open(dir, cfg).unwrap_or_else(|e| panic!("open failed: {e}"))
}

/// Appends and waits for `done`.
pub fn append_wait(log: &Log, entries: Vec<(u64, Bytes)>) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    log.append(
        entries,
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    rx.recv().expect("done is called")
}

/// Appends `range` with [`payload`], `per_batch` entries per append, waiting for each.
pub fn append_range(log: &Log, range: std::ops::RangeInclusive<u64>, per_batch: usize) {
    let all: Vec<u64> = range.collect();
    for chunk in all.chunks(per_batch) {
        let entries = chunk.iter().map(|&i| (i, payload(i))).collect();
        append_wait(log, entries).unwrap();
    }
}

pub fn committed_wait(log: &Log, data: &'static [u8]) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    log.save_committed(
        Bytes::from_static(data),
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    rx.recv().expect("done is called")
}

/// Reads `range` and checks it holds exactly `expected` indexes with [`payload`]s.
pub fn assert_entries(
    log: &Log,
    range: std::ops::Range<u64>,
    expected: std::ops::RangeInclusive<u64>,
) {
    let got = log
        .read(range.clone())
        .unwrap_or_else(|e| panic!("read {range:?}: {e}"));
    let want: Vec<u64> = expected.collect();
    let got_idx: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(got_idx, want, "indexes read from {range:?}");
    for (i, p) in got {
        assert_eq!(p, payload(i), "payload of entry {i}");
    }
}

/// Copies every file of `from` into `to` (flat directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Segment files in `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}
