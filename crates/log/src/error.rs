//! Errors: [`LogError`] for opening a log, and what [`crate::Log::open`] reports when it had to
//! drop a damaged tail ([`TruncatedTail`]). Operations on an open log return `std::io::Error`,
//! whose message names the file and offset where that applies.

use std::io;
use std::path::{Path, PathBuf};

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed on `path`.
    #[error("log I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file holds bytes that are not a valid log, somewhere other than a torn final record.
    #[error(
        "log file {} is damaged at byte offset {offset}: {reason}. Restore this node from a \
         replica, or open with force_truncate_corrupt (`tandem server --force-truncate-log`) to drop the log from this point on \
         (entries after it are lost on this node)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Another process (or another `Log` in this one) has the directory open.
    #[error("log directory {} is in use by another process (lock file {} is held)", dir.display(), lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },
    /// The configuration is out of its limits.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn io(path: &Path, source: io::Error) -> LogError {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<LogError> for io::Error {
    fn from(e: LogError) -> io::Error {
        let kind = match &e {
            LogError::Io { source, .. } => source.kind(),
            LogError::Corrupt { .. } => io::ErrorKind::InvalidData,
            LogError::Locked { .. } => io::ErrorKind::WouldBlock,
            LogError::Config(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// What open dropped from the end of the log: a torn final record (a crash in the middle of a
/// write), or with `force_truncate_corrupt` everything from a damaged record on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment that was cut.
    pub file: PathBuf,
    /// Offset of the first dropped byte in `file`; the file now ends its records there.
    pub offset: u64,
    /// Non-zero bytes dropped from `file`, plus the sizes of whole later segment files deleted.
    pub bytes_dropped: u64,
    /// Later segment files deleted (only with `force_truncate_corrupt`).
    pub segments_deleted: usize,
    /// What was wrong at `offset`.
    pub reason: String,
}
