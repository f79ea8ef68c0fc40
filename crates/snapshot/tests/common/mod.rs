//! Helpers shared by the integration tests: building snapshots and finding their parts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tandem_snapshot::{SnapshotInfo, SnapshotWriter};

/// Deterministic record `i`: `len` bytes derived from `i`, so a reader can check each one.
pub fn record(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Writes `records` into `<dir>/<name>.snap` with blocks of `block_len` bytes.
pub fn write(
    dir: &Path,
    name: &str,
    meta: &[u8],
    block_len: usize,
    records: &[Vec<u8>],
) -> SnapshotInfo {
    let mut w = SnapshotWriter::create_with_block_len(dir, name, meta, block_len).unwrap();
    for r in records {
        w.write_record(r).unwrap();
    }
    w.finish().unwrap()
}

/// Where each part of a well-formed snapshot lies, found by walking the bytes independently of
/// the reader: `header` is its length, `blocks[i]` is (start, end) of block i, `trailer` its
/// start.
#[derive(Debug)]
pub struct Layout {
    pub header: usize,
    pub blocks: Vec<(usize, usize)>,
    pub trailer: usize,
}

pub fn layout(bytes: &[u8]) -> Layout {
    let meta_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = 16 + meta_len + 4;
    let mut pos = header;
    let mut blocks = Vec::new();
    while &bytes[pos..pos + 8] != b"TNDMTRLR" {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        blocks.push((pos, pos + 8 + len));
        pos += 8 + len;
    }
    assert_eq!(bytes.len(), pos + 60, "trailer is the last 60 bytes");
    Layout {
        header,
        blocks,
        trailer: pos,
    }
}

/// Writes `bytes` as a snapshot file named `name` in `dir` (for damaged copies).
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
