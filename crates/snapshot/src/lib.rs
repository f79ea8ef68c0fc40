//! The snapshot file: a small header blob plus a sequence of opaque records, written so that a
//! crash never leaves a half snapshot that looks valid, and read so that any damage is reported
//! with its exact place.
//!
//! This crate knows nothing of keys or consensus. The keyspace serializes each key into one
//! record; the consensus layer stores its last log id and membership in the header's `meta`
//! blob. The byte layout is specified in `docs/format.md`, section `## Snapshot`.
//!
//! # Map
//!
//! - [`format`](mod@format) — constants, limits and pure encode/decode of the header, block
//!   heads and trailer. No IO; everything else builds on it.
//! - `writer` — [`SnapshotWriter`]: header, then records packed into blocks of
//!   [`DEFAULT_BLOCK_PAYLOAD_LEN`] bytes, each framed with its length and CRC32C, then a trailer
//!   with the counts and a SHA-256 of everything before it. Written to `<name>.tmp`; `finish`
//!   fsyncs, renames to `<name>.snap` and fsyncs the directory.
//! - `reader` — [`SnapshotReader`]: validates the header on open, then hands out records,
//!   verifying each block's CRC32C before using it and the digest and counts at the trailer.
//!   [`verify_file`] runs the same checks without keeping records (`tandem check`).
//! - `dir` — the snapshot directory: [`SnapshotId`] names files `snap-<seq>-<last index>`,
//!   [`list_snapshots`] lists them newest first and deletes abandoned `.tmp` files;
//!   [`find_snapshots`] lists without touching anything.
//! - `chunk` — [`read_chunk`]: raw byte ranges of a file, for shipping a snapshot to another
//!   node (the receiver runs [`verify_file`] before publishing it).
//! - `error` — [`SnapshotError`]: every failure, naming the file, the [`Part`] (header, block
//!   index, trailer) and the byte offset, and saying what to do.
//!
//! # Example
//!
//! ```
//! use tandem_snapshot::{list_snapshots, SnapshotId, SnapshotReader, SnapshotWriter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let id = SnapshotId { seq: 1, last_index: 40 };
//! let mut writer = SnapshotWriter::create(dir.path(), &id.file_stem(), b"meta").unwrap();
//! writer.write_record(b"key1=value1").unwrap();
//! writer.write_record(b"key2=value2").unwrap();
//! let info = writer.finish().unwrap();
//!
//! assert_eq!(list_snapshots(dir.path()).unwrap(), vec![info.path.clone()]);
//! let mut reader = SnapshotReader::open(&info.path).unwrap();
//! assert_eq!(reader.meta(), b"meta");
//! assert_eq!(&reader.next_record().unwrap().unwrap()[..], b"key1=value1");
//! assert_eq!(&reader.next_record().unwrap().unwrap()[..], b"key2=value2");
//! assert!(reader.next_record().unwrap().is_none()); // digest and counts verified
//! ```

mod chunk;
mod dir;
mod error;
pub mod format;
mod reader;
mod writer;

pub use chunk::read_chunk;
pub use dir::{find_snapshots, list_snapshots, SnapshotId, SNAP_EXT, TMP_EXT};
pub use error::{Part, SnapshotError};
pub use format::{
    DEFAULT_BLOCK_PAYLOAD_LEN, FORMAT_VERSION, MAX_BLOCK_PAYLOAD_LEN, MAX_CHUNK_LEN, MAX_META_LEN,
    MAX_RECORD_LEN,
};
pub use reader::{verify_bytes, verify_file, SnapshotReader, SnapshotSummary};
pub use writer::{SnapshotInfo, SnapshotWriter};

use tandem_checksum::{Algorithm, Checksum};

/// Wraps a raw SHA-256 digest in the project's checksum type.
fn sha256_checksum(digest: &[u8; 32]) -> Checksum {
    Checksum::from_digest(Algorithm::Sha256, digest).expect("a SHA-256 digest is 32 bytes")
}
