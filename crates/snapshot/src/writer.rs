//! [`SnapshotWriter`]: streams records into `<name>.tmp`, then publishes `<name>.snap` atomically.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tandem_checksum::Checksum;

use crate::dir::{fsync_dir, ActiveTmp, SNAP_EXT, TMP_EXT};
use crate::error::SnapshotError;
use crate::format::{
    encode_block_head, encode_header, Trailer, DEFAULT_BLOCK_PAYLOAD_LEN, MAX_BLOCK_PAYLOAD_LEN,
    MAX_META_LEN, MAX_RECORD_LEN, RECORD_LEN_PREFIX,
};
use crate::sha256_checksum;

/// Bytes buffered before a `write` reaches the file. Blocks of 1 MiB bypass it; it batches the
/// small header, block heads and the trailer.
const WRITE_BUFFER_LEN: usize = 256 << 10;

/// Longest name accepted, leaving room for the extension within common 255-byte name limits.
const MAX_NAME_LEN: usize = 200;

/// What [`SnapshotWriter::finish`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The published `<dir>/<name>.snap`.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub size: u64,
    pub record_count: u64,
    pub block_count: u64,
    /// SHA-256 of every byte before the trailer, as stored in the trailer.
    pub digest: Checksum,
}

/// Writes one snapshot: header, records packed into CRC32C-framed blocks, then the trailer.
///
/// The file is `<dir>/<name>.tmp` until [`finish`](Self::finish) fsyncs it, renames it to
/// `<dir>/<name>.snap` and fsyncs the directory. So at every moment of a crash there is either
/// no `.snap` of that name or a complete, durable one; a `.tmp` is never mistaken for a snapshot
/// and [`crate::list_snapshots`] removes it.
///
/// Dropping a writer without calling `finish` (or after `finish` failed) deletes the temp file.
/// After any error the writer is spent: later calls fail too.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    /// `None` once the writer has failed or finished.
    out: Option<BufWriter<File>>,
    /// Running SHA-256 of every byte written so far (all of them precede the trailer).
    hasher: Sha256,
    /// Payload of the block being filled; emitted when it reaches `block_payload_len`.
    block: Vec<u8>,
    block_payload_len: usize,
    record_count: u64,
    block_count: u64,
    bytes_written: u64,
    started: Instant,
    /// Set once the rename happened: from then on the temp file no longer exists to clean up.
    published: bool,
    /// Keeps `list_snapshots` from deleting our temp file while we write it. Declared last so it
    /// is released after `Drop` has removed an unfinished temp file.
    _active: ActiveTmp,
}

impl SnapshotWriter {
    /// Creates `<dir>/<name>.tmp` (replacing an abandoned one) and writes the header.
    ///
    /// `meta` is an opaque blob of at most [`MAX_META_LEN`] bytes, returned by
    /// [`crate::SnapshotReader::meta`]; the consensus layer keeps the snapshot's last log id and
    /// membership there. `name` is a plain file stem (letters, digits, `-`, `_`, `.`; not
    /// starting with `.`), normally [`crate::SnapshotId::file_stem`]. Fails with
    /// [`SnapshotError::AlreadyExists`] when `<name>.snap` exists.
    pub fn create(dir: &Path, name: &str, meta: &[u8]) -> Result<Self, SnapshotError> {
        Self::create_with_block_len(dir, name, meta, DEFAULT_BLOCK_PAYLOAD_LEN)
    }

    /// [`create`](Self::create) with blocks of `block_payload_len` bytes (1 to
    /// [`MAX_BLOCK_PAYLOAD_LEN`]) instead of [`DEFAULT_BLOCK_PAYLOAD_LEN`]. Readers accept any
    /// block size within the limit; small blocks are for tests.
    pub fn create_with_block_len(
        dir: &Path,
        name: &str,
        meta: &[u8],
        block_payload_len: usize,
    ) -> Result<Self, SnapshotError> {
        validate_name(name)?;
        let tmp_path = dir.join(format!("{name}.{TMP_EXT}"));
        let final_path = dir.join(format!("{name}.{SNAP_EXT}"));
        if !(1..=MAX_BLOCK_PAYLOAD_LEN).contains(&block_payload_len) {
            return Err(SnapshotError::LimitExceeded {
                path: tmp_path,
                what: "block payload",
                len: block_payload_len as u64,
                max: MAX_BLOCK_PAYLOAD_LEN as u64,
            });
        }
        if meta.len() > MAX_META_LEN {
            return Err(SnapshotError::LimitExceeded {
                path: tmp_path,
                what: "meta",
                len: meta.len() as u64,
                max: MAX_META_LEN as u64,
            });
        }
        let canonical_dir = dir.canonicalize().map_err(|source| SnapshotError::Io {
            path: dir.to_path_buf(),
            action: "resolving the snapshot directory",
            source,
        })?;
        let active =
            ActiveTmp::claim(canonical_dir.join(format!("{name}.{TMP_EXT}"))).ok_or_else(|| {
                SnapshotError::InProgress {
                    path: tmp_path.clone(),
                }
            })?;
        match final_path.try_exists() {
            Ok(false) => {}
            Ok(true) => return Err(SnapshotError::AlreadyExists { path: final_path }),
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: final_path,
                    action: "checking for an existing snapshot",
                    source,
                })
            }
        }
        let file = File::create(&tmp_path).map_err(|source| SnapshotError::Io {
            path: tmp_path.clone(),
            action: "creating the temp file",
            source,
        })?;
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            tmp_path,
            final_path,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER_LEN, file)),
            hasher: Sha256::new(),
            block: Vec::with_capacity(block_payload_len),
            block_payload_len,
            record_count: 0,
            block_count: 0,
            bytes_written: 0,
            started: Instant::now(),
            published: false,
            _active: active,
        };
        writer.write_hashed(&encode_header(meta))?;
        Ok(writer)
    }

    /// Appends one record: opaque bytes, at most [`MAX_RECORD_LEN`] of them.
    ///
    /// The record goes into the record stream as a 4-byte length and its bytes; the stream is cut
    /// into blocks regardless of record boundaries, so a record may span several blocks.
    pub fn write_record(&mut self, record: &[u8]) -> Result<(), SnapshotError> {
        if record.len() > MAX_RECORD_LEN {
            return Err(SnapshotError::LimitExceeded {
                path: self.tmp_path.clone(),
                what: "record",
                len: record.len() as u64,
                max: MAX_RECORD_LEN as u64,
            });
        }
        let prefix: [u8; RECORD_LEN_PREFIX] = (record.len() as u32).to_le_bytes();
        self.push(&prefix)?;
        self.push(record)?;
        self.record_count += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Path of the temp file being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Emits the last block and the trailer, fsyncs the file, renames it to `<name>.snap` and
    /// fsyncs the directory. When this returns `Ok` the snapshot is durable.
    ///
    /// To ensure correctness: the rename must come after the file's fsync (or a crash could
    /// publish a name whose blocks never reached the disk), and the directory fsync after the
    /// rename (or a crash could forget the rename after the caller acted on it, e.g. by
    /// truncating the log).
    pub fn finish(mut self) -> Result<SnapshotInfo, SnapshotError> {
        if !self.block.is_empty() {
            let block = std::mem::take(&mut self.block);
            self.emit_block(&block)?;
        }
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        let trailer = Trailer {
            record_count: self.record_count,
            block_count: self.block_count,
            digest,
        };
        self.write_raw(&trailer.encode())?;

        let out = self.out.take().ok_or_else(|| self.spent())?;
        let file = out.into_inner().map_err(|e| SnapshotError::Io {
            path: self.tmp_path.clone(),
            action: "writing",
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| SnapshotError::Io {
            path: self.tmp_path.clone(),
            action: "fsyncing the temp file",
            source,
        })?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|source| SnapshotError::Io {
            path: self.tmp_path.clone(),
            action: "renaming the temp file to .snap",
            source,
        })?;
        self.published = true;
        fsync_dir(&self.dir).map_err(|source| SnapshotError::Io {
            path: self.dir.clone(),
            action: "fsyncing the snapshot directory",
            source,
        })?;

        let info = SnapshotInfo {
            path: self.final_path.clone(),
            size: self.bytes_written,
            record_count: self.record_count,
            block_count: self.block_count,
            digest: sha256_checksum(&digest),
        };
        tracing::info!(
            path = %info.path.display(),
            bytes = info.size,
            records = info.record_count,
            blocks = info.block_count,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(info)
    }

    /// Adds `data` to the record stream, emitting every block that fills up.
    fn push(&mut self, mut data: &[u8]) -> Result<(), SnapshotError> {
        while !data.is_empty() {
            if self.block.is_empty() && data.len() >= self.block_payload_len {
                // A whole block straight from the caller's slice: no copy for large records.
                let (now, rest) = data.split_at(self.block_payload_len);
                self.emit_block(now)?;
                data = rest;
                continue;
            }
            let take = (self.block_payload_len - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == self.block_payload_len {
                let block = std::mem::take(&mut self.block);
                let result = self.emit_block(&block);
                self.block = block;
                self.block.clear();
                result?;
            }
        }
        Ok(())
    }

    fn emit_block(&mut self, payload: &[u8]) -> Result<(), SnapshotError> {
        self.write_hashed(&encode_block_head(payload))?;
        self.write_hashed(payload)?;
        self.block_count += 1;
        Ok(())
    }

    /// Writes bytes that precede the trailer, so they are part of the whole-file digest.
    fn write_hashed(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.write_raw(bytes)?;
        self.hasher.update(bytes);
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.spent());
        };
        if let Err(source) = out.write_all(bytes) {
            // The file's content is now unknown: refuse every later call.
            self.out = None;
            return Err(SnapshotError::Io {
                path: self.tmp_path.clone(),
                action: "writing",
                source,
            });
        }
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    fn spent(&self) -> SnapshotError {
        SnapshotError::Io {
            path: self.tmp_path.clone(),
            action: "writing",
            source: io::Error::other("an earlier write to this snapshot failed"),
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Unfinished or failed: the temp file is useless. Close it first, then delete it.
        self.out = None;
        match std::fs::remove_file(&self.tmp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.tmp_path.display(),
                error = %e,
                "could not remove an unfinished snapshot temp file; list_snapshots will retry"
            ),
        }
    }
}

fn validate_name(name: &str) -> Result<(), SnapshotError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 200 bytes"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        "only ASCII letters, digits, '-', '_' and '.' are allowed"
    } else {
        return Ok(());
    };
    Err(SnapshotError::InvalidName {
        name: name.to_string(),
        reason,
    })
}
