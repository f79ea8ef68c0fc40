//! The snapshot record: one key, serialized.
//!
//! A snapshot (written by the snapshot crate, in checksummed blocks) is a sequence of these
//! opaque records, one per key. Layout, all integers little-endian:
//!
//! ```text
//! offset      size  field
//! 0           1     record version, = 1
//! 1           4     key_len K (u32), <= 512 MiB
//! 5           K     key bytes
//! 5+K         4     value_len V (u32), <= 512 MiB
//! 9+K         V     value bytes
//! 9+K+V       1     checksum algorithm id (tandem-checksum's ids: 1 sha256, 2 md5, 3 sha1,
//!                   4 sha512, 5 blake3, 6 xxh3-64, 7 crc32c)
//! 10+K+V      1     digest_len D, must equal the algorithm's digest length
//! 11+K+V      D     digest of the value bytes, as computed when the value entered the system
//! 11+K+V+D    8     expire_at_ms (i64): absolute Unix ms deadline; i64::MIN = no deadline
//! total: 19 + K + V + D bytes; nothing may follow.
//! ```
//!
//! Loading validates every field, refuses trailing bytes and duplicate keys, and verifies the
//! value against its digest: a record that fails is an error naming the key, never a value.
//! A deadline already in the past is loaded as is (load has no clock): the key is hidden by
//! reads and deleted by the next expiry cycle.

use tandem_checksum::{Algorithm, Checksum};

use super::entry::Entry;
use super::integrity::escape_key;
use super::Keyspace;
use crate::commands::args::STRING_MAX_BYTES;

/// Version byte at the start of every record.
pub const RECORD_VERSION: u8 = 1;

/// Why a snapshot record was refused. Errors after the key is read name it (escaped).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("snapshot record is truncated (in its {field})")]
    Truncated { field: &'static str },
    #[error("snapshot record has version {0}; this build reads version {RECORD_VERSION}")]
    UnsupportedVersion(u8),
    #[error("snapshot record has a {field} of {len} bytes, over the 512 MiB limit")]
    TooLong { field: &'static str, len: u64 },
    #[error("snapshot record of key '{key}' has an invalid checksum field: {reason}")]
    BadChecksumField { key: String, reason: String },
    #[error("snapshot record of key '{key}': the value fails its {algorithm} checksum")]
    DigestMismatch { key: String, algorithm: Algorithm },
    #[error("snapshot record of key '{key}' has {extra} unexpected trailing bytes")]
    TrailingBytes { key: String, extra: usize },
    #[error("snapshot holds key '{key}' twice")]
    DuplicateKey { key: String },
}

impl Keyspace {
    /// Calls `f` with the snapshot record of every key (layout in `record.rs`), in hash order.
    /// One buffer is reused between calls: copy the bytes if you keep them.
    pub fn for_each_record(&self, mut f: impl FnMut(&[u8])) {
        let mut buf = Vec::new();
        for e in self.store.entries() {
            encode(e, &mut buf);
            f(&buf);
        }
    }

    /// Adds the key of one snapshot record, after validating every field and verifying the
    /// value against its digest.
    pub fn load_record(&mut self, record: &[u8]) -> Result<(), LoadError> {
        let entry = decode(record, true)?;
        self.insert_loaded(entry)
    }

    /// Like [`Keyspace::load_record`], but a value that fails its digest is loaded as it is
    /// (every other field is still validated) and `Ok(false)` is returned. Reads verify every
    /// value, so such a key answers CORRUPT and its bytes are never returned; the caller counts
    /// and reports it. For start-up when no better copy exists: a node that has lost the good
    /// bytes of one key still serves all the others.
    pub fn load_record_keeping_corrupt(&mut self, record: &[u8]) -> Result<bool, LoadError> {
        let entry = decode(record, false)?;
        let intact = entry.verified_value().is_some();
        self.insert_loaded(entry)?;
        Ok(intact)
    }

    /// Starts loading many records into this keyspace at once (a snapshot): like
    /// [`Keyspace::load_record`] record by record, with the key order built once at the end,
    /// when the returned loader is dropped.
    pub fn bulk_load(&mut self) -> BulkLoad<'_> {
        BulkLoad {
            ks: self,
            pending: Vec::new(),
        }
    }

    fn insert_loaded(&mut self, entry: Entry) -> Result<(), LoadError> {
        if self.store.get(entry.key()).is_some() {
            return Err(LoadError::DuplicateKey {
                key: escape_key(entry.key()),
            });
        }
        self.store.insert(entry);
        Ok(())
    }
}

/// Loads records into a keyspace; the keys join the key order when it is dropped. See
/// [`Keyspace::bulk_load`].
pub struct BulkLoad<'a> {
    ks: &'a mut Keyspace,
    pending: Vec<u64>,
}

impl BulkLoad<'_> {
    /// [`Keyspace::load_record`], deferred ordering.
    pub fn load(&mut self, record: &[u8]) -> Result<(), LoadError> {
        let entry = decode(record, true)?;
        self.insert(entry)
    }

    /// [`Keyspace::load_record_keeping_corrupt`], deferred ordering.
    pub fn load_keeping_corrupt(&mut self, record: &[u8]) -> Result<bool, LoadError> {
        let entry = decode(record, false)?;
        let intact = entry.verified_value().is_some();
        self.insert(entry)?;
        Ok(intact)
    }

    fn insert(&mut self, entry: Entry) -> Result<(), LoadError> {
        if self.ks.store.get(entry.key()).is_some() {
            return Err(LoadError::DuplicateKey {
                key: escape_key(entry.key()),
            });
        }
        let hash = self.ks.store.insert_unordered(entry);
        self.pending.push(hash);
        Ok(())
    }
}

impl Drop for BulkLoad<'_> {
    fn drop(&mut self) {
        self.ks
            .store
            .add_to_order(std::mem::take(&mut self.pending));
    }
}

fn encode(e: &Entry, buf: &mut Vec<u8>) {
    let digest = e.digest();
    buf.clear();
    buf.reserve(19 + e.key().len() + e.raw_value().len() + digest.len());
    buf.push(RECORD_VERSION);
    // Keys and values are at most 512 MiB (parse and apply enforce it), so they fit in u32.
    buf.extend_from_slice(&(e.key().len() as u32).to_le_bytes());
    buf.extend_from_slice(e.key());
    buf.extend_from_slice(&(e.raw_value().len() as u32).to_le_bytes());
    buf.extend_from_slice(e.raw_value());
    buf.push(e.algorithm().map_or(0, |a| a.id()));
    buf.push(digest.len() as u8);
    buf.extend_from_slice(digest);
    buf.extend_from_slice(&e.expire_at_ms().to_le_bytes());
}

/// A cursor over a record that fails with `Truncated` instead of panicking.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], LoadError> {
        if self.rest.len() < n {
            return Err(LoadError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, LoadError> {
        Ok(self.take(1, field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], LoadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// A u32 length prefix, bounded by the 512 MiB string limit, then that many bytes.
    fn sized(&mut self, field: &'static str) -> Result<&'a [u8], LoadError> {
        let len = u64::from(u32::from_le_bytes(self.array(field)?));
        if len > STRING_MAX_BYTES {
            return Err(LoadError::TooLong { field, len });
        }
        self.take(len as usize, field)
    }
}

fn decode(record: &[u8], verify: bool) -> Result<Entry, LoadError> {
    let mut r = Reader { rest: record };
    let version = r.u8("version")?;
    if version != RECORD_VERSION {
        return Err(LoadError::UnsupportedVersion(version));
    }
    let key = r.sized("key")?;
    let value = r.sized("value")?;
    let bad_field = |reason: String| LoadError::BadChecksumField {
        key: escape_key(key),
        reason,
    };
    let algorithm =
        Algorithm::from_id(r.u8("algorithm id")?).map_err(|e| bad_field(e.to_string()))?;
    let digest_len = usize::from(r.u8("digest length")?);
    let digest = r.take(digest_len, "digest")?;
    let checksum =
        Checksum::from_digest(algorithm, digest).map_err(|e| bad_field(e.to_string()))?;
    let expire_at_ms = i64::from_le_bytes(r.array("expiry")?);
    if !r.rest.is_empty() {
        return Err(LoadError::TrailingBytes {
            key: escape_key(key),
            extra: r.rest.len(),
        });
    }
    if verify && !checksum.verify(value) {
        return Err(LoadError::DigestMismatch {
            key: escape_key(key),
            algorithm,
        });
    }
    Ok(Entry::new(key, value, &checksum, expire_at_ms))
}
