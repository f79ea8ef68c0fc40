//! The meta file `log.meta`: the vote, the purge point and (sometimes) a copy of the latest
//! committed marker, replaced atomically as a whole (write temp, fsync, rename, fsync dir).
//!
//! ```text
//! offset size  field
//! 0      8     magic "TNDMMETA"
//! 8      4     format version, u32 LE (1)
//! 12     4     body length B, u32 LE
//! 16     B     body: vote, purged, committed (below)
//! 16+B   4     CRC32C of bytes 0 .. 16+B, u32 LE
//!
//! vote:      present u8 (0|1) [len u32 LE, bytes]
//! purged:    present u8 (0|1) [index u64 LE, len u32 LE, bytes]
//! committed: present u8 (0|1) [seq u64 LE, len u32 LE, bytes]
//! ```
//!
//! The codec is pure; [`read_meta`] and [`write_meta`] do the file IO.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;

use crate::config::OPAQUE_BYTES_MAX;
use crate::error::LogError;
use crate::sys;

/// Name of the meta file inside the log directory.
pub const META_FILE_NAME: &str = "log.meta";

const META_TMP_NAME: &str = "log.meta.tmp";
const META_MAGIC: [u8; 8] = *b"TNDMMETA";
const META_VERSION: u32 = 1;
const META_HEADER_LEN: usize = 16;
/// Largest meta file: header, three opaque values at their cap with their fixed fields, crc.
const META_BYTES_MAX: usize = META_HEADER_LEN + 3 * (1 + 8 + 4 + OPAQUE_BYTES_MAX) + 4;

/// Everything the meta file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The vote, as last saved by `save_vote`.
    pub vote: Option<Bytes>,
    /// The purge point: every entry `<= index` is gone; `data` is the caller's purged log id.
    pub purged: Option<Purged>,
    /// A copy of a committed marker, written before the segment record holding it was deleted.
    /// Whichever of this and the markers in segments has the highest `seq` is the latest.
    pub committed: Option<Committed>,
}

/// The purge point and the caller's bytes for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    pub index: u64,
    pub data: Bytes,
}

/// A committed marker: its sequence number (higher is later) and the caller's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub data: Bytes,
}

/// Encodes `meta`. The caller has checked each value is at most [`OPAQUE_BYTES_MAX`] bytes.
pub fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut body = Vec::new();
    let put_bytes = |body: &mut Vec<u8>, b: &[u8]| {
        body.extend_from_slice(&(b.len() as u32).to_le_bytes());
        body.extend_from_slice(b);
    };
    match &meta.vote {
        Some(v) => {
            body.push(1);
            put_bytes(&mut body, v);
        }
        None => body.push(0),
    }
    match &meta.purged {
        Some(p) => {
            body.push(1);
            body.extend_from_slice(&p.index.to_le_bytes());
            put_bytes(&mut body, &p.data);
        }
        None => body.push(0),
    }
    match &meta.committed {
        Some(c) => {
            body.push(1);
            body.extend_from_slice(&c.seq.to_le_bytes());
            put_bytes(&mut body, &c.data);
        }
        None => body.push(0),
    }
    let mut out = Vec::with_capacity(META_HEADER_LEN + body.len() + 4);
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&META_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a meta file, or (offset, reason) for the first thing wrong with it.
pub fn decode_meta(buf: &[u8]) -> Result<Meta, (u64, String)> {
    if buf.len() < META_HEADER_LEN + 4 {
        return Err((0, format!("file is only {} bytes", buf.len())));
    }
    if buf[0..8] != META_MAGIC {
        return Err((0, "bad magic: not a Tandem log meta file".to_string()));
    }
    let body_len = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if buf.len() != META_HEADER_LEN + body_len + 4 {
        return Err((
            12,
            format!(
                "body length {body_len} does not match the file size {}",
                buf.len()
            ),
        ));
    }
    let crc_at = META_HEADER_LEN + body_len;
    let stored = u32::from_le_bytes(buf[crc_at..].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&buf[..crc_at]);
    if stored != computed {
        return Err((
            crc_at as u64,
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != META_VERSION {
        return Err((
            8,
            format!("format version {version} is not supported (this build reads {META_VERSION})"),
        ));
    }
    let mut r = Reader {
        buf: &buf[..crc_at],
        at: META_HEADER_LEN,
    };
    let vote = if r.flag()? { Some(r.bytes()?) } else { None };
    let purged = if r.flag()? {
        let index = r.u64()?;
        Some(Purged {
            index,
            data: r.bytes()?,
        })
    } else {
        None
    };
    let committed = if r.flag()? {
        let seq = r.u64()?;
        Some(Committed {
            seq,
            data: r.bytes()?,
        })
    } else {
        None
    };
    if r.at != r.buf.len() {
        return Err((
            r.at as u64,
            "unexpected bytes after the last field".to_string(),
        ));
    }
    Ok(Meta {
        vote,
        purged,
        committed,
    })
}

/// A bounds-checked cursor: every read that would run past the body is an error, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], (u64, String)> {
        if self.buf.len() - self.at < n {
            return Err((
                self.at as u64,
                format!("field of {n} bytes runs past the body"),
            ));
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn flag(&mut self) -> Result<bool, (u64, String)> {
        let at = self.at as u64;
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err((at, format!("presence flag is {other}, not 0 or 1"))),
        }
    }

    fn u64(&mut self) -> Result<u64, (u64, String)> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, (u64, String)> {
        let at = self.at as u64;
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if len > OPAQUE_BYTES_MAX {
            return Err((at, format!("value length {len} exceeds {OPAQUE_BYTES_MAX}")));
        }
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

/// Reads `dir/log.meta`; a missing file is an empty [`Meta`].
pub fn read_meta(dir: &Path) -> Result<Meta, LogError> {
    let path = dir.join(META_FILE_NAME);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
    if len > META_BYTES_MAX as u64 {
        return Err(LogError::Corrupt {
            path,
            offset: 0,
            reason: format!(
                "meta file is {len} bytes, larger than the {META_BYTES_MAX}-byte maximum"
            ),
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.read_to_end(&mut buf)
        .map_err(|e| LogError::io(&path, e))?;
    decode_meta(&buf).map_err(|(offset, reason)| LogError::Corrupt {
        path,
        offset,
        reason,
    })
}

/// Atomically replaces `dir/log.meta` with `meta`: write a temp file, fsync it, rename it over
/// the old one, fsync the directory. A crash leaves either the old or the new file, whole.
/// Returns the number of fsyncs done.
pub fn write_meta(dir: &Path, dir_file: &File, meta: &Meta) -> io::Result<u64> {
    let tmp = dir.join(META_TMP_NAME);
    let bytes = encode_meta(meta);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(META_FILE_NAME))?;
    sys::sync_dir(dir_file)?;
    Ok(2)
}

/// Removes a temp file left by a crash during [`write_meta`].
pub fn remove_meta_tmp(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(META_TMP_NAME)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Meta {
        Meta {
            vote: Some(Bytes::from_static(b"vote")),
            purged: Some(Purged {
                index: 99,
                data: Bytes::from_static(b"purged-id"),
            }),
            committed: Some(Committed {
                seq: 7,
                data: Bytes::from_static(b""),
            }),
        }
    }

    #[test]
    fn meta_round_trips() {
        for meta in [Meta::default(), full()] {
            assert_eq!(decode_meta(&encode_meta(&meta)), Ok(meta));
        }
    }

    #[test]
    fn empty_meta_bytes_are_as_specified() {
        let bytes = encode_meta(&Meta::default());
        assert_eq!(&bytes[0..8], b"TNDMMETA");
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &3u32.to_le_bytes());
        assert_eq!(&bytes[16..19], &[0, 0, 0]);
        assert_eq!(bytes.len(), 23);
    }

    #[test]
    fn any_damage_is_an_error_not_a_panic() {
        let bytes = encode_meta(&full());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode_meta(&bad).is_err(), "flip at {at}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_meta(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lengths_inside_a_valid_checksum_are_still_checked() {
        // A body whose declared value length runs past the body, with a correct CRC.
        let mut bad = Vec::new();
        bad.extend_from_slice(b"TNDMMETA");
        bad.extend_from_slice(&1u32.to_le_bytes());
        let body = [1u8, 0xFF, 0xFF, 0xFF, 0x7F];
        bad.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bad.extend_from_slice(&body);
        let crc = crc32c::crc32c(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        assert!(decode_meta(&bad).unwrap_err().1.contains("exceeds"));
    }
}
