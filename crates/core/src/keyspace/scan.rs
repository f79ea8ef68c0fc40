//! SCAN's stateless cursor, and RANDOMKEY.
//!
//! Keys are ordered by `key_hash` (a fixed-seed 64-bit hash, see `store.rs`). A cursor is the
//! hash to resume at: a call visits the key hashes `>= cursor` in order, stops after `count`
//! hashes, and returns as next cursor the first hash it did not visit, or 0 when none is left.
//!
//! **Guarantee.** The cursors of one full iteration (0, c1, c2, ..., 0) are strictly increasing
//! and each call visits every key hash in `[c_i, c_{i+1})` present at that moment, so the calls
//! partition the whole hash space. Therefore a key present during the whole iteration is
//! returned exactly once; a key inserted or deleted during it is returned at most once. (Stronger
//! than Redis, which may return a key twice.) No state is kept between calls, the cursor is a
//! plain unsigned integer, and every node computes the same order, so a cursor stays meaningful
//! after a failover.
//!
//! A cursor of 0 after the first call would be ambiguous only if the next hash were 0; but
//! hash 0 is the smallest possible, so it is always visited by the first call.

use bytes::Bytes;

use super::Keyspace;

/// One SCAN reply: the cursor to pass next (0 = iteration complete) and the keys found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    pub next_cursor: u64,
    pub keys: Vec<Bytes>,
}

/// RANDOMKEY gives up after visiting this many key hashes that hold only expired keys.
pub const RANDOM_KEY_PROBE_MAX: usize = 1024;

impl Keyspace {
    /// Visits up to `count` (at least 1) key hashes starting at `cursor`, returning the live keys
    /// (not expired at `now_ms`) for which `keep` is true. See the module doc for the guarantee.
    pub(crate) fn scan(
        &self,
        cursor: u64,
        count: usize,
        now_ms: i64,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> ScanPage {
        let mut keys = Vec::new();
        let mut hashes = self.store.hashes_from(cursor);
        for _ in 0..count.max(1) {
            let Some(hash) = hashes.next() else {
                return ScanPage {
                    next_cursor: 0,
                    keys,
                };
            };
            for e in self.store.entries_with_hash(hash) {
                if e.is_expired(now_ms) {
                    self.note_lazy_expired(e.key());
                } else if keep(e.key()) {
                    keys.push(Bytes::copy_from_slice(e.key()));
                }
            }
        }
        ScanPage {
            next_cursor: hashes.next().unwrap_or(0),
            keys,
        }
    }

    /// A live key chosen from `seed` (the caller draws it at random): the first live key at or
    /// after hash `seed`, wrapping around. `None` if the keyspace is empty or only expired keys
    /// were found within [`RANDOM_KEY_PROBE_MAX`] hashes.
    pub(crate) fn random_key(&self, seed: u64, now_ms: i64) -> Option<Bytes> {
        let after = self.store.hashes_from(seed);
        let wrapped = self.store.hashes_from(0).take_while(|h| *h < seed);
        for hash in after.chain(wrapped).take(RANDOM_KEY_PROBE_MAX) {
            for e in self.store.entries_with_hash(hash) {
                if e.is_expired(now_ms) {
                    self.note_lazy_expired(e.key());
                } else {
                    return Some(Bytes::copy_from_slice(e.key()));
                }
            }
        }
        None
    }
}
