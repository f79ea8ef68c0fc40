//! The map from key to [`Entry`], with its keys also ordered by a 64-bit hash.
//!
//! Two structures, each doing what it is good at:
//! - `table`, a `hashbrown::HashTable<Entry>`: lookups touch a control group, one bucket and
//!   the entry's data, about three cache misses at a million keys (a B-tree keyed by hash took
//!   about eight). Its hash is derived from the 32 bits cached in each entry, so resizing never
//!   touches key bytes.
//! - `order`, a `BTreeSet<u64>` of the key hashes present: SCAN needs an integer cursor that
//!   survives any insertions and deletions between calls without server-side state, and
//!   "the next hash to visit" is exactly that (see `scan.rs`). It also gives snapshots, KEYS
//!   and RANDOMKEY a deterministic order. Updated only when a key is created or deleted.
//!
//! The key hash is xxh3-64 with a fixed seed, so every node orders keys the same way (a cursor
//! taken on one primary keeps working after a failover). Distinct keys with the same 64-bit
//! hash are kept correct (they share one `order` element), not fast.
//!
//! The store keeps the expiry index, the byte counts, the set of diverged keys and the keyspace
//! digest (`digest.rs`) in step with every mutation, so every mutation goes through a method
//! here.
//!
//! A key is *diverged* when an apply could not carry out a write on it because the local bytes
//! failed their checksum: other nodes applied the write, this one could not, so its copy is
//! stale. Reads refuse a diverged key (CORRUPT) until a write that does not depend on the old
//! value replaces or deletes it (`insert`, `remove`), or the server restores it from a healthy
//! node (`Keyspace::restore_key`).

use std::collections::BTreeSet;
use std::ops::Bound;

use hashbrown::HashTable;
use tandem_checksum::Checksum;

use super::digest::Digest;
use super::entry::{Entry, NO_EXPIRY};
use super::expiry::ExpiryIndex;

/// Seed of the key hash. Part of the SCAN cursor's meaning: never change it.
const KEY_HASH_SEED: u64 = 0x7a6e_6465_6d5f_6b65;

/// The position of a key in the keyspace order (and the SCAN cursor space).
pub fn key_hash(key: &[u8]) -> u64 {
    // Unit tests need real collisions, which xxh3 will not produce on demand.
    #[cfg(test)]
    if key.starts_with(b"collide:") {
        return 42;
    }
    xxhash_rust::xxh3::xxh3_64_with_seed(key, KEY_HASH_SEED)
}

/// The hash table's hash, from the low 32 bits of the key hash: multiplying by an odd constant
/// keeps the low bits (bucket index) uniform and mixes all 32 into the top 7 (hashbrown's tag).
fn table_hash(hash_lo: u32) -> u64 {
    u64::from(hash_lo).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn rehash(e: &Entry) -> u64 {
    table_hash(e.hash_lo())
}

#[derive(Default)]
pub struct Store {
    table: HashTable<Entry>,
    /// Key hashes present (one element per distinct hash), in order.
    order: BTreeSet<u64>,
    /// Number of keys with a deadline.
    expires_len: usize,
    expiry: ExpiryIndex,
    /// Sum of `Entry::heap_bytes` over all keys, for the memory estimate.
    heap_bytes: usize,
    /// Keys whose local copy is known to be behind the log (see the module doc). Nearly always
    /// empty, which keeps the check on every read to one branch.
    diverged: BTreeSet<Box<[u8]>>,
    /// The order-independent digest of every entry's state, O(1) per mutation (`digest.rs`).
    digest: Digest,
}

impl Store {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn expires_len(&self) -> usize {
        self.expires_len
    }

    /// Distinct key hashes (= keys, barring 64-bit collisions).
    pub fn hash_count(&self) -> usize {
        self.order.len()
    }

    pub fn expiry_elements(&self) -> usize {
        self.expiry.elements()
    }

    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    /// Bytes allocated by the hash table itself (buckets and control bytes).
    pub fn table_bytes(&self) -> usize {
        self.table.allocation_size()
    }

    /// The entry for `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        let hash = key_hash(key);
        let lo = hash as u32;
        self.table
            .find(table_hash(lo), |e| e.hash_lo() == lo && e.key() == key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let lo = key_hash(key) as u32;
        self.table
            .find_mut(table_hash(lo), |e| e.hash_lo() == lo && e.key() == key)
    }

    /// The entries whose key hash is exactly `hash` (nearly always one).
    pub fn entries_with_hash(&self, hash: u64) -> impl Iterator<Item = &Entry> + '_ {
        let lo = hash as u32;
        self.table
            .iter_hash(table_hash(lo))
            .filter(move |e| e.hash_lo() == lo && key_hash(e.key()) == hash)
    }

    /// Whether `key`'s local copy is known to be stale (see the module doc).
    pub fn is_diverged(&self, key: &[u8]) -> bool {
        !self.diverged.is_empty() && self.diverged.contains(key)
    }

    pub fn mark_diverged(&mut self, key: &[u8]) {
        self.diverged.insert(key.into());
    }

    pub fn diverged_keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.diverged.iter().map(|k| &k[..])
    }

    /// Inserts or replaces the entry for its key (a full overwrite: the key is no longer
    /// diverged); returns the previous entry.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let hash = self.account(&entry);
        let old = match self.get_mut(entry.key()) {
            Some(e) => Some(std::mem::replace(e, entry)),
            None => {
                self.table
                    .insert_unique(table_hash(hash as u32), entry, rehash);
                self.order.insert(hash);
                None
            }
        };
        if let Some(old) = &old {
            self.forget(hash, old);
        }
        old
    }

    /// Adds an entry whose key is known to be absent, leaving its place in the key order to
    /// [`Store::add_to_order`] (a bulk load orders all keys at once). Returns the key hash.
    pub(crate) fn insert_unordered(&mut self, entry: Entry) -> u64 {
        let hash = self.account(&entry);
        self.table
            .insert_unique(table_hash(hash as u32), entry, rehash);
        hash
    }

    /// The bookkeeping of an entry about to be stored (it is no longer diverged; its deadline,
    /// heap bytes and digest element are counted); returns its key hash.
    fn account(&mut self, entry: &Entry) -> u64 {
        if !self.diverged.is_empty() {
            self.diverged.remove(entry.key());
        }
        let hash = key_hash(entry.key());
        self.digest.add_entry(hash, entry);
        if entry.has_expiry() {
            self.expiry.insert(entry.expire_at_ms(), hash);
            self.expires_len += 1;
        }
        self.heap_bytes += entry.heap_bytes();
        hash
    }

    /// Puts the hashes of keys added by [`Store::insert_unordered`] in the key order. Building
    /// the ordered set from sorted hashes at once is far cheaper than a million inserts.
    pub(crate) fn add_to_order(&mut self, mut hashes: Vec<u64>) {
        hashes.sort_unstable();
        hashes.dedup();
        if self.order.is_empty() {
            self.order = hashes.into_iter().collect();
        } else {
            self.order.extend(hashes);
        }
    }

    /// Removes `key` (it is no longer diverged); returns its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        if !self.diverged.is_empty() {
            self.diverged.remove(key);
        }
        let hash = key_hash(key);
        let lo = hash as u32;
        let found = self
            .table
            .find_entry(table_hash(lo), |e| e.hash_lo() == lo && e.key() == key);
        let removed = found.ok()?.remove().0;
        if self.entries_with_hash(hash).next().is_none() {
            self.order.remove(&hash);
        }
        self.forget(hash, &removed);
        Some(removed)
    }

    /// Sets (or, with [`NO_EXPIRY`], clears) the deadline of `key`. False if absent.
    pub fn set_expiry(&mut self, key: &[u8], expire_at_ms: i64) -> bool {
        let Some(entry) = self.get_mut(key) else {
            return false;
        };
        let old = entry.expire_at_ms();
        if old == expire_at_ms {
            return true;
        }
        let element_before = Digest::element(entry);
        entry.set_expire_at_ms(expire_at_ms);
        let element_after = Digest::element(entry);
        let hash = key_hash(key);
        self.digest.change(hash, key, element_before, element_after);
        if old != NO_EXPIRY {
            self.expires_len -= 1;
            self.unindex_expiry(hash, old);
        }
        if expire_at_ms != NO_EXPIRY {
            self.expires_len += 1;
            self.expiry.insert(expire_at_ms, hash);
        }
        true
    }

    /// Replaces the value of `key`, keeping its deadline. False if absent.
    pub fn replace_value(&mut self, key: &[u8], value: &[u8], checksum: &Checksum) -> bool {
        let Some(entry) = self.get_mut(key) else {
            return false;
        };
        let before = entry.heap_bytes();
        let element_before = Digest::element(entry);
        entry.replace_value(value, checksum);
        let element_after = Digest::element(entry);
        let after = entry.heap_bytes();
        self.heap_bytes = self.heap_bytes - before + after;
        self.digest
            .change(key_hash(key), key, element_before, element_after);
        true
    }

    /// Flips one value byte of `key` (fault injection). False if absent or the value is empty.
    pub fn corrupt_value(&mut self, key: &[u8]) -> bool {
        self.get_mut(key).is_some_and(|e| e.corrupt_value_byte())
    }

    pub fn clear(&mut self) {
        *self = Store::default();
    }

    /// Keys whose deadline is `<= now_ms`, earliest deadline first, at most `max`.
    pub fn due(&self, now_ms: i64, max: usize) -> Vec<&[u8]> {
        let mut out = Vec::new();
        for (at, hash) in self.expiry.due(now_ms) {
            for e in self.entries_with_hash(hash) {
                if out.len() >= max {
                    return out;
                }
                if e.expire_at_ms() == at {
                    out.push(e.key());
                }
            }
        }
        out
    }

    /// Key hashes `>= from`, in order.
    pub fn hashes_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        self.order
            .range((Bound::Included(from), Bound::Unbounded))
            .copied()
    }

    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }

    pub(crate) fn digest_mut(&mut self) -> &mut Digest {
        &mut self.digest
    }

    /// Every entry, in hash order (deterministic: the same on every node).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.order
            .iter()
            .flat_map(move |&hash| self.entries_with_hash(hash))
    }

    /// Bookkeeping for an entry that left the map (removed or replaced).
    fn forget(&mut self, hash: u64, old: &Entry) {
        self.digest.remove_entry(hash, old);
        self.heap_bytes -= old.heap_bytes();
        if old.has_expiry() {
            self.expires_len -= 1;
            self.unindex_expiry(hash, old.expire_at_ms());
        }
    }

    /// Drops `(at, hash)` from the expiry index unless another key with this hash still has
    /// deadline `at` (keys sharing a hash and a deadline share one index element).
    fn unindex_expiry(&mut self, hash: u64, at: i64) {
        let still_used = self.entries_with_hash(hash).any(|e| e.expire_at_ms() == at);
        if !still_used {
            self.expiry.remove(at, hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_checksum::Algorithm;

    fn entry(key: &[u8], at: i64) -> Entry {
        Entry::new(key, b"v", &Checksum::compute(Algorithm::Crc32c, b"v"), at)
    }

    #[test]
    fn counts_follow_inserts_replacements_and_removals() {
        let mut s = Store::default();
        assert!(s.insert(entry(b"a", 10)).is_none());
        assert!(s.insert(entry(b"b", NO_EXPIRY)).is_none());
        assert_eq!((s.len(), s.expires_len(), s.expiry_elements()), (2, 1, 1));
        assert!(s.insert(entry(b"a", NO_EXPIRY)).is_some());
        assert_eq!((s.len(), s.expires_len(), s.expiry_elements()), (2, 0, 0));
        assert!(s.set_expiry(b"b", 5));
        assert_eq!(s.due(5, 10), vec![&b"b"[..]]);
        assert!(s.due(4, 10).is_empty());
        assert!(s.remove(b"b").is_some());
        assert_eq!((s.len(), s.expires_len(), s.expiry_elements()), (1, 0, 0));
        assert!(s.remove(b"b").is_none());
        assert_eq!(
            s.heap_bytes(),
            7,
            "key + value + crc32c digest + algorithm id"
        );
        assert_eq!(s.hash_count(), 1);
    }

    #[test]
    fn colliding_keys_share_an_order_element_and_an_index_element() {
        let mut s = Store::default();
        assert!(s.insert(entry(b"collide:a", 7)).is_none());
        assert!(s.insert(entry(b"collide:b", 7)).is_none());
        assert!(s.insert(entry(b"collide:c", NO_EXPIRY)).is_none());
        assert_eq!(
            (
                s.len(),
                s.hash_count(),
                s.expires_len(),
                s.expiry_elements()
            ),
            (3, 1, 2, 1)
        );
        assert_eq!(s.entries_with_hash(42).count(), 3);
        assert_eq!(s.due(7, 10).len(), 2);
        assert!(s.get(b"collide:b").is_some());
        assert!(s.get(b"collide:z").is_none());
        // "a" goes; "b" still has deadline 7, so the shared element stays.
        assert!(s.remove(b"collide:a").is_some());
        assert_eq!((s.len(), s.expires_len(), s.expiry_elements()), (2, 1, 1));
        assert!(s.set_expiry(b"collide:b", NO_EXPIRY));
        assert_eq!((s.expires_len(), s.expiry_elements()), (0, 0));
        assert!(s.remove(b"collide:b").is_some());
        assert_eq!(s.hash_count(), 1, "collide:c still has the hash");
        assert!(s.remove(b"collide:c").is_some());
        assert_eq!((s.len(), s.hash_count(), s.heap_bytes()), (0, 0, 0));
    }

    #[test]
    fn entries_come_in_hash_order() {
        let mut s = Store::default();
        for i in 0..500 {
            s.insert(entry(format!("k{i}").as_bytes(), NO_EXPIRY));
        }
        let hashes: Vec<u64> = s.entries().map(|e| key_hash(e.key())).collect();
        assert_eq!(hashes.len(), 500);
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
    }
}
