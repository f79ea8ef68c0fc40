//! The expiry index: every key that has a deadline, ordered by deadline, so the active expiry
//! cycle finds due keys in O(log n + due) instead of sampling (as Redis does) or scanning.
//!
//! Elements are `(expire_at_ms, key_hash)`: 16 bytes instead of a copy of the key. Two keys with
//! the same 64-bit hash AND the same deadline share one element; the store removes an element
//! only when no key with that hash still has that deadline (see `Store::unindex_expiry`).

use std::collections::BTreeSet;

#[derive(Default)]
pub struct ExpiryIndex {
    by_deadline: BTreeSet<(i64, u64)>,
}

impl ExpiryIndex {
    pub fn insert(&mut self, expire_at_ms: i64, hash: u64) {
        self.by_deadline.insert((expire_at_ms, hash));
    }

    pub fn remove(&mut self, expire_at_ms: i64, hash: u64) {
        self.by_deadline.remove(&(expire_at_ms, hash));
    }

    /// `(deadline, hash)` pairs with `deadline <= now_ms`, earliest first.
    pub fn due(&self, now_ms: i64) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.by_deadline
            .iter()
            .copied()
            .take_while(move |&(at, _)| at <= now_ms)
    }

    /// Elements in the index (≤ keys with a deadline, see the module doc).
    pub fn elements(&self) -> usize {
        self.by_deadline.len()
    }
}
