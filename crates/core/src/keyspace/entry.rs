//! One stored key: its name, its value bytes, the value's checksum and its expiry.
//!
//! This is the type there are a million of, so it is laid out for size. Everything variable
//! lives in ONE heap allocation, `data = key ++ value ++ digest ++ [algorithm id]`; the struct
//! itself (what the hash table's buckets hold) is 32 bytes: the allocation, the key length, 32
//! bits of the key hash (in what would be padding) and the deadline as a plain `i64` with a
//! sentinel. The key comes first so a lookup's key comparison reads the allocation's first
//! cache line; the digest comes last because only verification (which reads the whole value
//! anyway) needs it.

use tandem_checksum::{Algorithm, Checksum};

use super::store::key_hash;

/// `expire_at_ms` of a key that never expires. `i64::MIN` can never be a stored deadline: a
/// deadline at or before the apply time deletes the key instead of storing it.
pub const NO_EXPIRY: i64 = i64::MIN;

/// A key with its value. Fields are private so the packing of `data` stays an invariant.
pub struct Entry {
    /// `key ++ value ++ digest ++ [algorithm id]`.
    data: Box<[u8]>,
    /// Length of the key prefix of `data`. Keys are at most 512 MiB, so `u32` is enough.
    key_len: u32,
    /// Low 32 bits of `key_hash(key)`: lets the hash table resize and skip non-matching
    /// candidates without touching `data` (a cache miss each).
    hash_lo: u32,
    /// Absolute Unix time in milliseconds after which the key is logically gone, or [`NO_EXPIRY`].
    expire_at_ms: i64,
}

impl Entry {
    /// Builds an entry. Callers guarantee `key.len() <= u32::MAX` (the protocol limits keys to
    /// 512 MiB long before that).
    pub fn new(key: &[u8], value: &[u8], checksum: &Checksum, expire_at_ms: i64) -> Entry {
        Entry {
            data: pack(key, value, checksum),
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            hash_lo: key_hash(key) as u32,
            expire_at_ms,
        }
    }

    /// The same value, checksum and deadline under another key (RENAME): the bytes are copied
    /// as they are, unverified, so a corrupt value stays detectably corrupt.
    pub fn renamed(&self, key: &[u8]) -> Entry {
        let mut data = Vec::with_capacity(key.len() + self.data.len() - self.key_end());
        data.extend_from_slice(key);
        data.extend_from_slice(&self.data[self.key_end()..]);
        Entry {
            data: data.into_boxed_slice(),
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            hash_lo: key_hash(key) as u32,
            expire_at_ms: self.expire_at_ms,
        }
    }

    fn key_end(&self) -> usize {
        (self.key_len as usize).min(self.data.len())
    }

    /// The algorithm id byte (last byte of `data`), as stored (the keyspace digest hashes it
    /// raw, so even a damaged id changes the digest).
    pub(super) fn algorithm_id(&self) -> u8 {
        self.data.last().copied().unwrap_or(0)
    }

    /// Where the digest starts (= where the value ends). An unknown algorithm id (possible
    /// only if this process's own memory were damaged) is treated as an empty digest, which
    /// then fails verification.
    fn digest_start(&self) -> usize {
        let digest_len = self.algorithm().map_or(0, Algorithm::digest_len);
        self.data
            .len()
            .saturating_sub(1 + digest_len)
            .max(self.key_end())
    }

    pub fn hash_lo(&self) -> u32 {
        self.hash_lo
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_end()]
    }

    /// The stored value bytes, NOT verified: use [`Entry::verified_value`] for anything that
    /// reaches a client.
    pub fn raw_value(&self) -> &[u8] {
        &self.data[self.key_end()..self.digest_start()]
    }

    /// The algorithm of the value's checksum.
    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_id(self.algorithm_id()).ok()
    }

    /// The value's digest bytes.
    pub fn digest(&self) -> &[u8] {
        let end = self.data.len().saturating_sub(1).max(self.digest_start());
        &self.data[self.digest_start()..end]
    }

    /// The value's checksum (None only if the stored algorithm id is damaged).
    pub fn checksum(&self) -> Option<Checksum> {
        Checksum::from_digest(self.algorithm()?, self.digest()).ok()
    }

    /// The value bytes if they still match their checksum.
    pub fn verified_value(&self) -> Option<&[u8]> {
        let value = self.raw_value();
        self.checksum()?.verify(value).then_some(value)
    }

    pub fn expire_at_ms(&self) -> i64 {
        self.expire_at_ms
    }

    pub fn has_expiry(&self) -> bool {
        self.expire_at_ms != NO_EXPIRY
    }

    /// True when the key has a deadline and it has passed at `now_ms` (Redis: a key whose
    /// deadline equals the current time is already expired).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expire_at_ms != NO_EXPIRY && self.expire_at_ms <= now_ms
    }

    /// Sets the deadline; the store keeps its expiry index in step (see `Store::set_expiry`).
    pub(super) fn set_expire_at_ms(&mut self, expire_at_ms: i64) {
        self.expire_at_ms = expire_at_ms;
    }

    /// Replaces the value and its checksum, keeping the key and the deadline.
    pub(super) fn replace_value(&mut self, value: &[u8], checksum: &Checksum) {
        self.data = pack(self.key(), value, checksum);
    }

    /// Heap bytes owned by this entry.
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
    }

    /// Flips one byte of the value (fault injection). Returns false for an empty value.
    pub(super) fn corrupt_value_byte(&mut self) -> bool {
        if self.raw_value().is_empty() {
            return false;
        }
        let at = self.key_end();
        self.data[at] ^= 0x20;
        true
    }
}

fn pack(key: &[u8], value: &[u8], checksum: &Checksum) -> Box<[u8]> {
    let digest = checksum.digest();
    let mut data = Vec::with_capacity(key.len() + value.len() + digest.len() + 1);
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    data.extend_from_slice(digest);
    data.push(checksum.algorithm().id());
    data.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_checksum::Algorithm;

    #[test]
    fn entry_stays_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn key_and_value_share_one_buffer() {
        for algorithm in tandem_checksum::ALL {
            let c = Checksum::compute(algorithm, b"value");
            let mut e = Entry::new(b"key", b"value", &c, NO_EXPIRY);
            assert_eq!(e.key(), b"key");
            assert_eq!(e.verified_value(), Some(&b"value"[..]));
            assert_eq!(e.checksum(), Some(c));
            e.replace_value(b"other!", &Checksum::compute(algorithm, b"other!"));
            assert_eq!(e.key(), b"key");
            assert_eq!(e.verified_value(), Some(&b"other!"[..]));
            let moved = e.renamed(b"k2");
            assert_eq!(
                (moved.key(), moved.raw_value()),
                (&b"k2"[..], &b"other!"[..])
            );
            assert!(e.corrupt_value_byte());
            assert_eq!(e.verified_value(), None);
            assert_eq!(e.key(), b"key", "{algorithm}");
        }
        let empty = Entry::new(b"", b"", &Checksum::compute(Algorithm::Md5, b""), NO_EXPIRY);
        assert_eq!(
            (empty.key(), empty.verified_value()),
            (&b""[..], Some(&b""[..]))
        );
    }

    #[test]
    fn expiry_boundaries() {
        let c = Checksum::compute(Algorithm::Crc32c, b"");
        let e = Entry::new(b"k", b"", &c, 100);
        assert!(!e.is_expired(99));
        assert!(e.is_expired(100));
        let never = Entry::new(b"k", b"", &c, NO_EXPIRY);
        assert!(!never.is_expired(i64::MAX));
        assert!(!never.has_expiry());
    }
}
