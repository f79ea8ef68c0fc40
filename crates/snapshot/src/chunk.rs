//! [`read_chunk`]: a snapshot file's raw bytes, piece by piece, for sending to another node.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::SnapshotError;
use crate::format::MAX_CHUNK_LEN;

/// Returns up to `max_len` bytes of the file at `path` starting at byte `offset` (fewer near the
/// end, none at or past it). `max_len` is capped at [`MAX_CHUNK_LEN`].
///
/// The bytes are sent unverified: the receiver writes the chunks to a temp file and runs
/// [`crate::verify_file`] on it before publishing it, which checks every block and the
/// whole-file digest, so a chunk damaged on the way is caught there.
pub fn read_chunk(path: &Path, offset: u64, max_len: usize) -> Result<Vec<u8>, SnapshotError> {
    let io_err = |action, source| SnapshotError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let mut file = File::open(path).map_err(|e| io_err("opening", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| io_err("reading metadata of", e))?
        .len();
    if offset >= file_len {
        return Ok(Vec::new());
    }
    let len = (max_len.min(MAX_CHUNK_LEN) as u64).min(file_len - offset);
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("seeking in", e))?;
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("reading", e))?;
    Ok(buf)
}
