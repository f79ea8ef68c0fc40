//! [`SnapshotError`]: every way writing or reading a snapshot can fail, each naming the file and,
//! for damage, the exact place ([`Part`] and byte offset), and saying what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Advice attached to every "this file is damaged" error.
const DAMAGED: &str = "the snapshot is damaged: do not load it; move it aside and recover from an \
older snapshot plus the log, or fetch a fresh snapshot from another replica";
/// The same advice for a file that may not be a snapshot at all.
const NOT_LOADABLE: &str = "do not load it; move it aside and recover from an older snapshot plus \
the log, or fetch a fresh snapshot from another replica";

/// Which part of a snapshot file an error points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Magic, version, meta and the header CRC.
    Header,
    /// The block with this index (0 is the first block after the header). When a file ends
    /// exactly at a block boundary, this names the block that should have come next (or the
    /// trailer in its place).
    Block(u64),
    /// The 60-byte trailer.
    Trailer,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Header => f.write_str("header"),
            Part::Block(i) => write!(f, "block {i}"),
            Part::Trailer => f.write_str("trailer"),
        }
    }
}

/// Everything that can go wrong writing, reading, verifying or listing snapshots.
///
/// Errors about file content carry the path, the [`Part`] and the byte offset where that part
/// starts (0 for the header; for a fault in a record's framing, where the record's length prefix
/// starts), so `tandem check` can say exactly where a file is damaged;
/// [`SnapshotError::location`] returns them.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The operating system refused a read, write, fsync or rename.
    #[error("{path}: {action} failed: {source}; check the disk, free space and permissions")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    /// [`crate::SnapshotWriter::create`] was given a name that is not a plain file stem.
    #[error("snapshot name {name:?} is invalid: {reason}; use snapshot_file_stem()")]
    InvalidName { name: String, reason: &'static str },

    /// A finished snapshot of that name exists already; sequence numbers must not be reused.
    #[error("{path} already exists; pick the next sequence number instead of overwriting it")]
    AlreadyExists { path: PathBuf },

    /// Another writer in this process is writing the same temp file.
    #[error("{path} is being written by another SnapshotWriter in this process; wait for it or use another name")]
    InProgress { path: PathBuf },

    /// The writer was asked to exceed one of the format's limits.
    #[error("{path}: {what} of {len} bytes exceeds the limit of {max} bytes; nothing was written for it")]
    LimitExceeded {
        path: PathBuf,
        what: &'static str,
        len: u64,
        max: u64,
    },

    /// The header or the trailer does not start with its magic: not a snapshot, or damaged.
    #[error("{path}: {part} at byte offset {offset} has magic {found:?}, expected {expected:?}; not a Tandem snapshot, or one that is damaged or cut short; {NOT_LOADABLE}",
        found = String::from_utf8_lossy(found), expected = String::from_utf8_lossy(expected))]
    BadMagic {
        path: PathBuf,
        part: Part,
        offset: u64,
        found: [u8; 8],
        expected: [u8; 8],
    },

    /// The header names a format version this build cannot read.
    #[error("{path}: snapshot format version {version} is not supported (this build reads version {supported}): \
        if a newer Tandem wrote it, upgrade this node; otherwise the header is damaged: {NOT_LOADABLE}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        supported: u32,
    },

    /// The header's CRC32C does not match its bytes.
    #[error("{path}: header CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x}); {DAMAGED}")]
    HeaderCrc {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },

    /// A block's CRC32C does not match its length field and payload.
    #[error("{path}: block {block} at byte offset {offset}: CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x}); {DAMAGED}")]
    BlockCrc {
        path: PathBuf,
        block: u64,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// The trailer's CRC32C does not match its bytes.
    #[error("{path}: trailer at byte offset {offset}: CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x}); {DAMAGED}")]
    TrailerCrc {
        path: PathBuf,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// The file ends inside `part`: cut short (a crash before the rename cannot cause this, so a
    /// copy or disk went wrong), or a length field is damaged and points past the end.
    #[error("{path}: {part} at byte offset {offset} needs {needed} bytes but only {available} remain before the end of the file; \
        the file was cut short or a length field is damaged; {DAMAGED}")]
    Truncated {
        path: PathBuf,
        part: Part,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// A length read from the file exceeds its limit (see `format.rs`); the file is damaged.
    #[error("{path}: {part} at byte offset {offset}: {what} length {len} exceeds the limit of {max}; {DAMAGED}")]
    TooLarge {
        path: PathBuf,
        part: Part,
        offset: u64,
        what: &'static str,
        len: u64,
        max: u64,
    },

    /// Bytes whose checksums are fine but which break a rule of the format (an empty block, a
    /// record cut off by the trailer). Points at a writer bug rather than at the disk.
    #[error("{path}: {part} at byte offset {offset}: {detail}; {DAMAGED}")]
    Malformed {
        path: PathBuf,
        part: Part,
        offset: u64,
        detail: String,
    },

    /// The SHA-256 of the file before the trailer differs from the one the trailer stores.
    #[error("{path}: whole-file SHA-256 mismatch at the trailer (byte offset {offset}): stored {stored}, computed {computed}; {DAMAGED}")]
    DigestMismatch {
        path: PathBuf,
        offset: u64,
        stored: String,
        computed: String,
    },

    /// The trailer's record or block count differs from what the file holds.
    #[error("{path}: the trailer says {stored} {what} but the file holds {counted}; {DAMAGED}")]
    CountMismatch {
        path: PathBuf,
        what: &'static str,
        stored: u64,
        counted: u64,
    },

    /// Bytes follow the trailer.
    #[error(
        "{path}: {extra} unexpected bytes after the trailer, from byte offset {offset}; {DAMAGED}"
    )]
    TrailingBytes {
        path: PathBuf,
        offset: u64,
        extra: u64,
    },

    /// The reader was used again after it returned an error.
    #[error("{path}: the reader already failed; open the file again to retry")]
    ReaderFailed { path: PathBuf },
}

impl SnapshotError {
    /// Where in the file the fault is, for errors about file content: the part and the byte
    /// offset the error reports.
    pub fn location(&self) -> Option<(Part, u64)> {
        use SnapshotError::*;
        match self {
            BadMagic { part, offset, .. }
            | Truncated { part, offset, .. }
            | TooLarge { part, offset, .. }
            | Malformed { part, offset, .. } => Some((*part, *offset)),
            UnsupportedVersion { .. } | HeaderCrc { .. } => Some((Part::Header, 0)),
            BlockCrc { block, offset, .. } => Some((Part::Block(*block), *offset)),
            TrailerCrc { offset, .. }
            | DigestMismatch { offset, .. }
            | TrailingBytes { offset, .. } => Some((Part::Trailer, *offset)),
            Io { .. }
            | InvalidName { .. }
            | AlreadyExists { .. }
            | InProgress { .. }
            | LimitExceeded { .. }
            | CountMismatch { .. }
            | ReaderFailed { .. } => None,
        }
    }

    /// True when the error means the file's content is bad (as opposed to IO trouble or misuse):
    /// the file should not be loaded, and retrying will not help.
    pub fn is_damage(&self) -> bool {
        use SnapshotError::*;
        matches!(
            self,
            BadMagic { .. }
                | UnsupportedVersion { .. }
                | HeaderCrc { .. }
                | BlockCrc { .. }
                | TrailerCrc { .. }
                | Truncated { .. }
                | TooLarge { .. }
                | Malformed { .. }
                | DigestMismatch { .. }
                | CountMismatch { .. }
                | TrailingBytes { .. }
        )
    }
}
