//! [`SnapshotReader`] streams records back, verifying as it goes; [`verify_file`] checks a whole
//! file without keeping any record.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tandem_checksum::Checksum;

use crate::error::{Part, SnapshotError};
use crate::format::{
    block_crc, decode_header_fixed, le_u32, Trailer, TrailerFault, BLOCK_HEAD_LEN, FORMAT_VERSION,
    HEADER_CRC_LEN, HEADER_FIXED_LEN, MAGIC, MAX_BLOCK_PAYLOAD_LEN, MAX_META_LEN, MAX_RECORD_LEN,
    RECORD_LEN_PREFIX, TRAILER_LEN, TRAILER_MAGIC,
};
use crate::sha256_checksum;

/// Read buffer for the small reads (header, block heads, trailer); block payloads bypass it.
const READ_BUFFER_LEN: usize = 64 << 10;

/// What a fully verified snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub size: u64,
    pub meta_len: u64,
    pub record_count: u64,
    pub block_count: u64,
    /// SHA-256 of every byte before the trailer (verified).
    pub digest: Checksum,
}

#[derive(Debug)]
enum State {
    Reading,
    /// The trailer was reached and everything checked out.
    Done(SnapshotSummary),
    Failed,
}

/// Reads a snapshot's records in order, checking every block's CRC32C before handing out any
/// record from it, and the whole-file SHA-256 and the counts at the end.
///
/// Records handed out before the end come from blocks whose CRC matched, but the file as a whole
/// is proven only when [`next_record`](Self::next_record) returns `Ok(None)`: a caller that
/// builds state from the records must discard it if any later call fails.
///
/// Every length read from the file is checked against the limits in `format.rs` and against the
/// bytes actually left in the file before anything is allocated for it, so no content, however
/// damaged or hostile, makes the reader panic or allocate more than the file holds (at most
/// [`MAX_BLOCK_PAYLOAD_LEN`] per block, [`MAX_RECORD_LEN`] per record).
///
/// The reader is generic over its byte source so the same checks run on memory (fuzzing,
/// [`verify_bytes`]); [`open`](SnapshotReader::open) gives the usual file-backed one.
#[derive(Debug)]
pub struct SnapshotReader<R = BufReader<File>> {
    /// The file's path, or a label for an in-memory source; every error names it.
    path: PathBuf,
    source: R,
    /// Size at open; a file that shrinks afterwards shows up as `Truncated`.
    file_len: u64,
    meta: Vec<u8>,
    /// File offset of the next byte `file` returns.
    pos: u64,
    /// Running SHA-256 of every byte read so far (all before the trailer).
    hasher: Sha256,
    /// Payload of the current block and how much of it records have consumed.
    block: Bytes,
    cursor: usize,
    /// Index and file offset of the current block (meaningless before the first one).
    block_index: u64,
    block_offset: u64,
    /// Blocks read and verified so far.
    blocks_loaded: u64,
    records_read: u64,
    state: State,
}

impl SnapshotReader {
    /// Opens `path` and validates the header: magic, version, meta length and header CRC32C.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let io_err = |action, source| SnapshotError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let file = File::open(path).map_err(|e| io_err("opening", e))?;
        let file_len = file
            .metadata()
            .map_err(|e| io_err("reading metadata of", e))?
            .len();
        SnapshotReader::from_source(
            BufReader::with_capacity(READ_BUFFER_LEN, file),
            file_len,
            path,
        )
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads a snapshot of `len` bytes from `source`, validating the header now. `label` stands
    /// for the path in errors.
    pub fn from_source(source: R, len: u64, label: &Path) -> Result<Self, SnapshotError> {
        let mut reader = SnapshotReader {
            path: label.to_path_buf(),
            source,
            file_len: len,
            meta: Vec::new(),
            pos: 0,
            hasher: Sha256::new(),
            block: Bytes::new(),
            cursor: 0,
            block_index: 0,
            block_offset: 0,
            blocks_loaded: 0,
            records_read: 0,
            state: State::Reading,
        };
        reader.read_header()?;
        Ok(reader)
    }

    /// The meta blob given to [`crate::SnapshotWriter::create`] (protected by the header CRC).
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes, as it was when opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Records returned so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// The verified summary, once [`next_record`](Self::next_record) has returned `Ok(None)`.
    pub fn summary(&self) -> Option<&SnapshotSummary> {
        match &self.state {
            State::Done(summary) => Some(summary),
            _ => None,
        }
    }

    /// The next record, or `Ok(None)` once the trailer is reached and the whole-file digest,
    /// the block count and the record count all match.
    ///
    /// A record that lies inside one block is a zero-copy slice of that block; one that spans
    /// blocks is copied together. After `Ok(None)` every call returns `Ok(None)`; after an error
    /// every call returns [`SnapshotError::ReaderFailed`].
    pub fn next_record(&mut self) -> Result<Option<Bytes>, SnapshotError> {
        Ok(self.step(true)?.map(|(_, record)| record))
    }

    /// Like [`next_record`](Self::next_record) but keeps no bytes: returns the record's length.
    /// Blocks are still read and verified whole.
    pub fn skip_record(&mut self) -> Result<Option<u64>, SnapshotError> {
        Ok(self.step(false)?.map(|(len, _)| len))
    }

    /// Runs one record step, keeping the state machine honest about errors and the end.
    fn step(&mut self, keep: bool) -> Result<Option<(u64, Bytes)>, SnapshotError> {
        match self.state {
            State::Done(_) => return Ok(None),
            State::Failed => {
                return Err(SnapshotError::ReaderFailed {
                    path: self.path.clone(),
                })
            }
            State::Reading => {}
        }
        let result = self.read_record(keep);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn read_record(&mut self, keep: bool) -> Result<Option<(u64, Bytes)>, SnapshotError> {
        if self.block_remaining() == 0 && !self.advance_block()? {
            return self.finish_at_trailer().map(|()| None);
        }
        let start = (self.block_index, self.cursor_offset());

        let mut prefix = [0u8; RECORD_LEN_PREFIX];
        if self.block_remaining() >= RECORD_LEN_PREFIX {
            prefix.copy_from_slice(&self.block[self.cursor..self.cursor + RECORD_LEN_PREFIX]);
            self.cursor += RECORD_LEN_PREFIX;
        } else {
            let mut gathered = Vec::with_capacity(RECORD_LEN_PREFIX);
            self.consume(RECORD_LEN_PREFIX, Some(&mut gathered), start)?;
            prefix.copy_from_slice(&gathered);
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_RECORD_LEN {
            return Err(SnapshotError::TooLarge {
                path: self.path.clone(),
                part: Part::Block(start.0),
                offset: start.1,
                what: "record",
                len: len as u64,
                max: MAX_RECORD_LEN as u64,
            });
        }

        let record = if self.block_remaining() >= len {
            let slice = if keep {
                self.block.slice(self.cursor..self.cursor + len)
            } else {
                Bytes::new()
            };
            self.cursor += len;
            slice
        } else if keep {
            // Never reserve more than the file could still supply: a damaged length must not
            // become a huge allocation. The buffer grows only as verified blocks arrive.
            let bound = self.block_remaining() as u64 + (self.file_len.saturating_sub(self.pos));
            let mut buf = Vec::with_capacity(len.min(usize::try_from(bound).unwrap_or(usize::MAX)));
            self.consume(len, Some(&mut buf), start)?;
            Bytes::from(buf)
        } else {
            self.consume(len, None, start)?;
            Bytes::new()
        };
        self.records_read += 1;
        Ok(Some((len as u64, record)))
    }

    /// Takes `n` bytes of the record stream, crossing block boundaries, appending them to `sink`
    /// when given. `start` locates the record for the error if the blocks end first.
    fn consume(
        &mut self,
        mut n: usize,
        mut sink: Option<&mut Vec<u8>>,
        start: (u64, u64),
    ) -> Result<(), SnapshotError> {
        while n > 0 {
            if self.block_remaining() == 0 && !self.advance_block()? {
                return Err(SnapshotError::Malformed {
                    path: self.path.clone(),
                    part: Part::Block(start.0),
                    offset: start.1,
                    detail: format!(
                        "the record starting here is cut off by the trailer ({n} bytes missing)"
                    ),
                });
            }
            let take = n.min(self.block_remaining());
            if let Some(sink) = sink.as_deref_mut() {
                sink.extend_from_slice(&self.block[self.cursor..self.cursor + take]);
            }
            self.cursor += take;
            n -= take;
        }
        Ok(())
    }

    fn block_remaining(&self) -> usize {
        self.block.len() - self.cursor
    }

    /// File offset of the next unconsumed payload byte of the current block.
    fn cursor_offset(&self) -> u64 {
        self.block_offset + BLOCK_HEAD_LEN as u64 + self.cursor as u64
    }

    fn read_header(&mut self) -> Result<(), SnapshotError> {
        let available = self.file_len;
        let min_len = (HEADER_FIXED_LEN + HEADER_CRC_LEN) as u64;
        // Fields are checked in file order, each as soon as its bytes are there, so a damaged
        // field is named rather than the short file it may imply.
        // Check the magic on whatever is there first, so a short non-snapshot file is called
        // that rather than "truncated".
        let mut fixed = [0u8; HEADER_FIXED_LEN];
        let have = available.min(HEADER_FIXED_LEN as u64) as usize;
        self.read_exact(&mut fixed[..have], Part::Header, 0, HEADER_FIXED_LEN as u64)?;
        let magic_have = have.min(MAGIC.len());
        if fixed[..magic_have] != MAGIC[..magic_have] {
            let mut found = [0u8; 8];
            found[..magic_have].copy_from_slice(&fixed[..magic_have]);
            return Err(SnapshotError::BadMagic {
                path: self.path.clone(),
                part: Part::Header,
                offset: 0,
                found,
                expected: MAGIC,
            });
        }
        if have < HEADER_FIXED_LEN {
            return Err(self.truncated(Part::Header, 0, min_len));
        }
        let (_, fixed_fields) = decode_header_fixed(&fixed);
        if fixed_fields.version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                path: self.path.clone(),
                version: fixed_fields.version,
                supported: FORMAT_VERSION,
            });
        }
        let meta_len = fixed_fields.meta_len as usize;
        if meta_len > MAX_META_LEN {
            return Err(SnapshotError::TooLarge {
                path: self.path.clone(),
                part: Part::Header,
                offset: 0,
                what: "meta",
                len: meta_len as u64,
                max: MAX_META_LEN as u64,
            });
        }
        let header_len = (HEADER_FIXED_LEN + meta_len + HEADER_CRC_LEN) as u64;
        if available < header_len {
            return Err(self.truncated(Part::Header, 0, header_len));
        }
        let mut rest = vec![0u8; meta_len + HEADER_CRC_LEN];
        self.read_exact(&mut rest, Part::Header, 0, header_len)?;
        let stored = le_u32(&rest[meta_len..]);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&fixed), &rest[..meta_len]);
        if stored != computed {
            return Err(SnapshotError::HeaderCrc {
                path: self.path.clone(),
                stored,
                computed,
            });
        }
        self.hasher.update(fixed);
        self.hasher.update(&rest);
        rest.truncate(meta_len);
        self.meta = rest;
        Ok(())
    }

    /// Reads and verifies the next block, making it current. Returns `false` (having verified
    /// the trailer) when the trailer comes instead.
    fn advance_block(&mut self) -> Result<bool, SnapshotError> {
        let offset = self.pos;
        let index = self.blocks_loaded;
        let part = Part::Block(index);
        let available = self.file_len.saturating_sub(offset);
        if available < BLOCK_HEAD_LEN as u64 {
            return Err(self.truncated(part, offset, BLOCK_HEAD_LEN as u64));
        }
        let mut head = [0u8; BLOCK_HEAD_LEN];
        self.read_exact(&mut head, part, offset, BLOCK_HEAD_LEN as u64)?;
        // The trailer starts with bytes no block can start with; and where exactly a trailer's
        // worth of bytes is left, a trailer is what must be there, so damage to its magic is
        // reported as such rather than as a strange block.
        if head[..4] == TRAILER_MAGIC[..4] || available == TRAILER_LEN as u64 {
            self.read_trailer(head, offset)?;
            return Ok(false);
        }
        let len_bytes: [u8; 4] = [head[0], head[1], head[2], head[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let stored = le_u32(&head[4..8]);
        if len == 0 {
            return Err(SnapshotError::Malformed {
                path: self.path.clone(),
                part,
                offset,
                detail: "block with an empty payload (writers never emit one)".to_string(),
            });
        }
        if len > MAX_BLOCK_PAYLOAD_LEN {
            return Err(SnapshotError::TooLarge {
                path: self.path.clone(),
                part,
                offset,
                what: "block payload",
                len: len as u64,
                max: MAX_BLOCK_PAYLOAD_LEN as u64,
            });
        }
        let needed = (BLOCK_HEAD_LEN + len) as u64;
        if available < needed {
            return Err(self.truncated(part, offset, needed));
        }
        // Reuse the previous block's buffer when no record still points into it: a fresh
        // megabyte per block costs the kernel a page fault and a zeroing per page.
        let mut payload = match std::mem::take(&mut self.block).try_into_mut() {
            Ok(mut reused) => {
                reused.clear();
                reused.resize(len, 0);
                reused
            }
            Err(_) => bytes::BytesMut::zeroed(len),
        };
        self.read_exact(&mut payload, part, offset, needed)?;
        let computed = block_crc(&len_bytes, &payload);
        if stored != computed {
            return Err(SnapshotError::BlockCrc {
                path: self.path.clone(),
                block: index,
                offset,
                stored,
                computed,
            });
        }
        self.hasher.update(head);
        self.hasher.update(&payload);
        self.block = payload.freeze();
        self.cursor = 0;
        self.block_index = index;
        self.block_offset = offset;
        self.blocks_loaded += 1;
        Ok(true)
    }

    /// Verifies the trailer whose first 8 bytes are `head`, found at `offset`: its magic and CRC,
    /// that the file ends right after it, the whole-file digest and the block count.
    fn read_trailer(
        &mut self,
        head: [u8; BLOCK_HEAD_LEN],
        offset: u64,
    ) -> Result<(), SnapshotError> {
        let available = self.file_len.saturating_sub(offset);
        if available < TRAILER_LEN as u64 {
            return Err(self.truncated(Part::Trailer, offset, TRAILER_LEN as u64));
        }
        let mut bytes = [0u8; TRAILER_LEN];
        bytes[..BLOCK_HEAD_LEN].copy_from_slice(&head);
        self.read_exact(
            &mut bytes[BLOCK_HEAD_LEN..],
            Part::Trailer,
            offset,
            TRAILER_LEN as u64,
        )?;
        let trailer = Trailer::decode(&bytes).map_err(|fault| match fault {
            TrailerFault::BadMagic(found) => SnapshotError::BadMagic {
                path: self.path.clone(),
                part: Part::Trailer,
                offset,
                found,
                expected: TRAILER_MAGIC,
            },
            TrailerFault::Crc { stored, computed } => SnapshotError::TrailerCrc {
                path: self.path.clone(),
                offset,
                stored,
                computed,
            },
        })?;
        let computed: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if computed != trailer.digest {
            return Err(SnapshotError::DigestMismatch {
                path: self.path.clone(),
                offset,
                stored: sha256_checksum(&trailer.digest).to_hex(),
                computed: sha256_checksum(&computed).to_hex(),
            });
        }
        if trailer.block_count != self.blocks_loaded {
            return Err(SnapshotError::CountMismatch {
                path: self.path.clone(),
                what: "blocks",
                stored: trailer.block_count,
                counted: self.blocks_loaded,
            });
        }
        let end = offset + TRAILER_LEN as u64;
        if self.file_len > end {
            return Err(SnapshotError::TrailingBytes {
                path: self.path.clone(),
                offset: end,
                extra: self.file_len - end,
            });
        }
        self.state = State::Done(SnapshotSummary {
            path: self.path.clone(),
            size: self.file_len,
            meta_len: self.meta.len() as u64,
            record_count: trailer.record_count,
            block_count: trailer.block_count,
            digest: sha256_checksum(&trailer.digest),
        });
        Ok(())
    }

    /// Called when the trailer is reached at a record boundary: the last check, the record count.
    fn finish_at_trailer(&mut self) -> Result<(), SnapshotError> {
        let stored = match &self.state {
            State::Done(summary) => summary.record_count,
            // advance_block returns false only after setting Done.
            _ => unreachable!("trailer reached without a verified summary"),
        };
        if stored != self.records_read {
            return Err(SnapshotError::CountMismatch {
                path: self.path.clone(),
                what: "records",
                stored,
                counted: self.records_read,
            });
        }
        Ok(())
    }

    /// Fills `buf` from the file. `part`, `offset` and `needed` describe what is being read, for
    /// the error if the file turns out shorter than it was at open.
    fn read_exact(
        &mut self,
        buf: &mut [u8],
        part: Part,
        offset: u64,
        needed: u64,
    ) -> Result<(), SnapshotError> {
        match self.source.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.truncated(part, offset, needed))
            }
            Err(source) => Err(SnapshotError::Io {
                path: self.path.clone(),
                action: "reading",
                source,
            }),
        }
    }

    fn truncated(&self, part: Part, offset: u64, needed: u64) -> SnapshotError {
        SnapshotError::Truncated {
            path: self.path.clone(),
            part,
            offset,
            needed,
            available: self.file_len.saturating_sub(offset),
        }
    }
}

/// Verifies a whole snapshot file (header, every block's CRC32C, record framing, the whole-file
/// SHA-256 and both counts) without keeping any record; for `tandem check` and for a snapshot
/// received from another node before it is published.
///
/// Returns the counts, or the first fault with its precise location.
pub fn verify_file(path: &Path) -> Result<SnapshotSummary, SnapshotError> {
    verify_all(SnapshotReader::open(path)?)
}

/// [`verify_file`] for a snapshot held in memory; `label` stands for the path in errors. The
/// entry point for fuzzing the reader.
pub fn verify_bytes(bytes: &[u8], label: &Path) -> Result<SnapshotSummary, SnapshotError> {
    verify_all(SnapshotReader::from_source(
        bytes,
        bytes.len() as u64,
        label,
    )?)
}

fn verify_all<R: Read>(mut reader: SnapshotReader<R>) -> Result<SnapshotSummary, SnapshotError> {
    while reader.skip_record()?.is_some() {}
    match reader.state {
        State::Done(summary) => Ok(summary),
        // skip_record returns Ok(None) only in the Done state.
        _ => unreachable!("reader ended without a summary"),
    }
}
