//! The keyspace: Tandem's replicated state machine.
//!
//! - `entry.rs`: one key with its value, checksum and deadline, packed for size.
//! - `store.rs`: the map of entries (a hash table, plus the key hashes in order for SCAN), with
//!   the expiry index and byte counts.
//! - `expiry.rs`: the deadline-ordered index behind [`Keyspace::due_for_expiry`].
//! - `scan.rs`: SCAN's stateless cursor over the hash order, and RANDOMKEY.
//! - `record.rs`: the snapshot record of one key ([`Keyspace::for_each_record`]).
//! - `integrity.rs`: checksum verification on the way out, the CORRUPT reply and its counter.
//! - `digest.rs`: the keyspace digest (order-independent, O(1) per write, per key-hash bucket
//!   too), the marks that record it at one log position on every node, and the repair of keys
//!   that differ from the primary's, for divergence detection.
//! - `repair.rs`: what repair and the scrubber need: a key's copy for a peer
//!   ([`Keyspace::copy_of`]), restoring a damaged key, verifying every value in hash order.
//!
//! Repair (the server drives it; the keyspace only checks): a value that fails its checksum is
//! restored from another node's copy with [`Keyspace::repair_value`], which accepts only bytes
//! matching the stored checksum. If a write met the corrupt bytes first, the key is *diverged*
//! (other nodes applied the write, this one could not): it is refused by reads until a
//! value-independent write overwrites it or [`Keyspace::restore_key`] installs a healthy node's
//! state; [`Keyspace::verify_values`] lets the primary refuse such writes before proposing.
//!
//! Reads take `&self` (many connection tasks under a shared lock); they never mutate state,
//! only two interior-mutable side channels: the corruption counter (atomic) and the short list
//! of keys a read found expired (a mutex taken only on that rare path). `apply` takes `&mut self`
//! and must be deterministic: it reads no clock and no randomness, and iterates only ordered
//! structures.

mod digest;
mod entry;
mod expiry;
mod integrity;
mod record;
mod repair;
mod scan;
mod store;

use std::collections::BTreeSet;

use bytes::Bytes;
use parking_lot::Mutex;
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::Frame;

use crate::batch::{Batch, Op};
use crate::commands::{digest as digest_cmd, keys, strings, ReadCmd, WriteCmd};

pub use digest::{
    bucket_hashes, bucket_of_hash, set_digest_upkeep, Captured, KeyspaceDigest, MarkRecord,
    RepairKey, RepairKeyOutcome, RepairKeys, RepairState, VerifyMark, CAPTURE_BUCKETS_MAX,
    CAPTURE_KEYS_MAX, CAPTURE_KEY_BYTES_MAX, DIGEST_BUCKETS, MARKS_KEPT, WATCH_KEYS_MAX,
};
pub(crate) use entry::Entry;
pub use entry::NO_EXPIRY;
pub use integrity::{escape_key, IntegrityStats, KEY_DISPLAY_MAX_BYTES};
pub use record::{BulkLoad, LoadError, RECORD_VERSION};
pub use repair::{KeyCopy, ScrubStep};
pub use scan::{ScanPage, RANDOM_KEY_PROBE_MAX};
pub use store::key_hash;

pub(crate) use integrity::Integrity;
pub(crate) use store::Store;

/// How many keys found expired by reads are remembered for the active cycle to delete first.
/// Past this, further ones are not recorded (the expiry index still finds them, just later).
pub const LAZY_EXPIRED_MAX: usize = 1024;

/// The result of [`Keyspace::repair_value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The local bytes were corrupt and now hold the good copy.
    Repaired,
    /// The local bytes verify: nothing to repair (a concurrent repair may have won).
    NotCorrupt,
    /// The key is gone (deleted since the corruption was found).
    NoSuchKey,
    /// The key now holds another value (rewritten since): the copy is stale, nothing done.
    DifferentValue,
    /// The offered bytes fail the checksum too: try another node.
    CopyAlsoCorrupt,
    /// A write could not be applied to the corrupt copy, so even the same checksum would be a
    /// stale value: use [`Keyspace::restore_key`] with a healthy node's current state instead.
    Diverged,
}

/// A key's full state, as fetched from a healthy node to restore a diverged key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyState {
    pub value: Bytes,
    pub checksum: Checksum,
    /// Absolute deadline in ms, or [`NO_EXPIRY`].
    pub expire_at_ms: i64,
}

/// What apply needs besides the keyspace: the batch's clock and algorithm.
#[derive(Clone, Copy, Debug)]
pub struct ApplyContext {
    pub now_ms: i64,
    pub algorithm: Algorithm,
}

/// The in-memory map from key to (value, checksum, deadline).
#[derive(Default)]
pub struct Keyspace {
    pub(crate) store: Store,
    pub(crate) integrity: Integrity,
    /// Keys a read found logically expired (replicas and the primary alike hide them; only an
    /// applied `Op::ExpireKeys` deletes them). Capped at [`LAZY_EXPIRED_MAX`].
    lazy_expired: Mutex<Vec<Bytes>>,
    /// Divergence detection's mark records and counters (`digest.rs`).
    verification: digest::Verification,
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs a read at `now_ms` (logically expired keys are invisible).
    pub fn read(&self, cmd: &ReadCmd, now_ms: i64) -> Frame {
        match cmd {
            ReadCmd::String(c) => strings::read(self, c, now_ms),
            ReadCmd::Key(c) => keys::read(self, c, now_ms),
            ReadCmd::Digest(c) => digest_cmd::read(self, c, now_ms),
        }
    }

    /// Applies a committed batch: every op in order, one reply frame per op.
    ///
    /// To ensure correctness: the result must depend only on (state, batch). Every node applies
    /// the same batches in the same order and must end in the same state.
    pub fn apply(&mut self, batch: &Batch) -> Vec<Frame> {
        let ctx = ApplyContext {
            now_ms: batch.now_ms,
            algorithm: batch.algorithm,
        };
        batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Write(w) => {
                    let digest = self.store.digest_mut();
                    w.for_each_written_key(|k| digest.note_written(k));
                    self.apply_write(w, &ctx)
                }
                Op::Read(r) => self.read(r, ctx.now_ms),
                Op::ExpireKeys(keys) => {
                    let digest = self.store.digest_mut();
                    keys.iter().for_each(|k| digest.note_written(k));
                    Frame::Integer(self.expire_keys(keys, ctx.now_ms))
                }
                Op::VerifyMark(m) => self.apply_verify_mark(m),
                Op::RepairKeys(r) => self.apply_repair_keys(r),
            })
            .collect()
    }

    fn apply_write(&mut self, cmd: &WriteCmd, ctx: &ApplyContext) -> Frame {
        match cmd {
            WriteCmd::String(c) => strings::apply(self, c, ctx),
            WriteCmd::Key(c) => keys::apply(self, c, ctx),
            WriteCmd::Digest(c) => digest_cmd::apply(self, c, ctx),
        }
    }

    /// Deletes each key that is expired at `now_ms`; returns how many were deleted.
    fn expire_keys(&mut self, keys: &[Bytes], now_ms: i64) -> i64 {
        let mut deleted = 0;
        for key in keys {
            if self.store.get(key).is_some_and(|e| e.is_expired(now_ms)) {
                self.store.remove(key);
                deleted += 1;
            }
        }
        deleted
    }

    /// Number of keys, including logically expired ones not yet deleted (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// No keys at all (expired or not).
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Number of keys with a deadline.
    pub fn expires_len(&self) -> usize {
        self.store.expires_len()
    }

    /// Up to `max` keys whose deadline is `<= now_ms`, for the active expiry cycle to propose as
    /// `Op::ExpireKeys`. Keys that reads found expired come first (and are taken off that list),
    /// then the earliest deadlines. Exact: never returns a key that is not expired at `now_ms`.
    pub fn due_for_expiry(&self, now_ms: i64, max: usize) -> Vec<Bytes> {
        let lazy = std::mem::take(&mut *self.lazy_expired.lock());
        let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
        let mut out = Vec::new();
        for key in &lazy {
            if out.len() >= max {
                break;
            }
            let still_due = self.store.get(key).is_some_and(|e| e.is_expired(now_ms));
            if still_due && seen.insert(key) {
                out.push(key.clone());
            }
        }
        for key in self.store.due(now_ms, max + seen.len()) {
            if out.len() >= max {
                break;
            }
            if !seen.contains(key) {
                out.push(Bytes::copy_from_slice(key));
            }
        }
        out
    }

    /// Checks that the stored values of `keys` verify at `now_ms` (absent keys pass): the
    /// primary's pre-check before proposing a write that reads them (`WriteCmd::value_keys`).
    /// Err is the CORRUPT reply for the first failing key.
    pub fn verify_values<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a Bytes>,
        now_ms: i64,
    ) -> Result<(), Frame> {
        for key in keys {
            if let Some(e) = self.lookup(key, now_ms) {
                self.verify(e)?;
            }
        }
        Ok(())
    }

    /// Counters of the checksum verification done by reads and applies.
    pub fn integrity(&self) -> IntegrityStats {
        self.integrity.stats()
    }

    /// Benchmarks only: with `true`, GET, MGET, STRLEN and GETRANGE return stored bytes without
    /// verifying them (DIGEST.GET, writes and apply still verify), to measure what verification
    /// costs. A damaged value would then reach clients: never in production.
    pub fn set_reads_unverified(&self, on: bool) {
        self.integrity.set_reads_unverified(on);
    }

    /// Flips one byte of the stored value of `key` (not its digest), so the next read of it
    /// fails verification. Fault injection for tests and `DEBUG` only (the server gates it
    /// behind `--enable-debug-commands`). False if the key is absent or its value is empty.
    pub fn debug_corrupt(&mut self, key: &[u8]) -> bool {
        self.store.corrupt_value(key)
    }

    /// Repairs a value that failed its checksum with a good copy fetched from another node.
    ///
    /// Succeeds only if `key` exists here with exactly this checksum (same algorithm and
    /// digest: the same logical value every node holds) and `value` verifies against it, so a
    /// repair can only restore the bytes the log wrote, never change the state. The deadline is
    /// kept. Not an `apply`: each node repairs its own copy. Returns whether bytes were replaced.
    pub fn repair_value(&mut self, key: &[u8], value: &[u8], checksum: &Checksum) -> RepairOutcome {
        let Some(entry) = self.store.get(key) else {
            return RepairOutcome::NoSuchKey;
        };
        if self.store.is_diverged(key) {
            return RepairOutcome::Diverged;
        }
        if entry.checksum().as_ref() != Some(checksum) {
            return RepairOutcome::DifferentValue;
        }
        if !checksum.verify(value) {
            return RepairOutcome::CopyAlsoCorrupt;
        }
        if entry.verified_value().is_some() {
            return RepairOutcome::NotCorrupt;
        }
        self.store.replace_value(key, value, checksum);
        self.integrity.note_repaired();
        tracing::warn!(key = %escape_key(key), "corrupt value repaired from another node's copy");
        RepairOutcome::Repaired
    }

    /// Keys whose local copy is stale because a write could not be applied to corrupt bytes
    /// (reads refuse them with CORRUPT). The server restores each from a healthy node that has
    /// applied at least as far as this one, with [`Keyspace::restore_key`]; a snapshot should
    /// not be taken while any remain (their records would not load).
    pub fn diverged_keys(&self) -> Vec<Bytes> {
        self.store
            .diverged_keys()
            .map(Bytes::copy_from_slice)
            .collect()
    }

    /// Replaces a diverged key with a healthy node's state of it (`None`: the key does not
    /// exist there). The value must verify against its checksum. Returns false (nothing done)
    /// if the key is not diverged or the value fails its checksum.
    ///
    /// To ensure correctness: `state` must come from a node whose applied log position is at
    /// least this node's, taken at that position, or the restore itself is stale.
    pub fn restore_key(&mut self, key: &[u8], state: Option<&KeyState>) -> bool {
        self.store.is_diverged(key) && self.install_state(key, state, "diverged")
    }

    /// Puts another node's state of `key` in place of the local copy (`None`: deletes it), if
    /// its value verifies; counts and logs the repair of a `what` key. Returns whether it did.
    pub(crate) fn install_state(
        &mut self,
        key: &[u8],
        state: Option<&KeyState>,
        what: &str,
    ) -> bool {
        match state {
            Some(s) if !s.checksum.verify(&s.value) => return false,
            Some(s) => {
                self.store
                    .insert(Entry::new(key, &s.value, &s.checksum, s.expire_at_ms));
            }
            None => {
                self.store.remove(key);
            }
        }
        self.integrity.note_repaired();
        tracing::warn!(key = %escape_key(key), "{what} key restored from another node's state");
        true
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.store.clear();
        self.lazy_expired.lock().clear();
    }

    /// Estimated bytes of memory used by the keyspace, for INFO memory: the hash table's
    /// allocation, the ordered hash index and the expiry index at a typical B-tree fill, and
    /// the packed key+value allocations with malloc's per-chunk overhead.
    pub fn used_memory_estimate(&self) -> usize {
        // A B-tree filled by random inserts averages ~70% full nodes: count 10/7 per element.
        const BTREE_SLACK_NUM: usize = 10;
        const BTREE_SLACK_DEN: usize = 7;
        // glibc malloc: 8 bytes of header, 16-byte granularity.
        const MALLOC_OVERHEAD_PER_ALLOC: usize = 16;
        let order_element = std::mem::size_of::<u64>();
        let index_element = std::mem::size_of::<(i64, u64)>();
        std::mem::size_of::<Self>()
            + self.store.table_bytes()
            + self.store.hash_count() * order_element * BTREE_SLACK_NUM / BTREE_SLACK_DEN
            + self.store.expiry_elements() * index_element * BTREE_SLACK_NUM / BTREE_SLACK_DEN
            + self.store.heap_bytes()
            + self.store.len() * MALLOC_OVERHEAD_PER_ALLOC
    }

    // ---- helpers for the command families ----

    /// The entry for `key` if it exists and is not expired at `now_ms` (read path). An expired
    /// key is recorded for the active expiry cycle.
    pub(crate) fn lookup(&self, key: &[u8], now_ms: i64) -> Option<&Entry> {
        let entry = self.store.get(key)?;
        if entry.is_expired(now_ms) {
            self.note_lazy_expired(key);
            return None;
        }
        Some(entry)
    }

    /// Write path: deletes `key` if it is expired at `now_ms` (deterministic: same batch, same
    /// result on every node), then returns the live entry, if any.
    pub(crate) fn lookup_for_write(&mut self, key: &[u8], now_ms: i64) -> Option<&Entry> {
        if self.store.get(key)?.is_expired(now_ms) {
            self.store.remove(key);
            return None;
        }
        self.store.get(key)
    }

    /// The verified value of a live `key` at `now_ms`: `Ok(None)` if absent, `Err(CORRUPT)` if
    /// its bytes fail their checksum.
    pub(crate) fn get_verified(&self, key: &[u8], now_ms: i64) -> Result<Option<&[u8]>, Frame> {
        match self.lookup(key, now_ms) {
            None => Ok(None),
            Some(e) if self.integrity.reads_unverified() => Ok(Some(e.raw_value())),
            Some(e) => self.verify(e).map(Some),
        }
    }

    /// The value bytes of a stored entry, verified (see [`Integrity::verify`]).
    pub(crate) fn verify<'a>(&self, entry: &'a Entry) -> Result<&'a [u8], Frame> {
        self.integrity
            .verify(entry, self.store.is_diverged(entry.key()))
    }

    /// As [`Keyspace::get_verified`] on the write path (an expired key is deleted first). The
    /// bytes are copied out so the caller can mutate the keyspace next.
    ///
    /// On a CORRUPT failure the write cannot be carried out here while other nodes carry it
    /// out, so the key is marked diverged (its copy is now stale; see `store.rs`).
    pub(crate) fn get_verified_for_write(
        &mut self,
        key: &[u8],
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, Frame> {
        if self.lookup_for_write(key, now_ms).is_none() {
            return Ok(None);
        }
        let result = match self.store.get(key) {
            None => return Ok(None),
            Some(e) => self.verify(e).map(|v| Some(v.to_vec())),
        };
        if result.is_err() {
            self.store.mark_diverged(key);
        }
        result
    }

    fn note_lazy_expired(&self, key: &[u8]) {
        // Duplicates are possible (due_for_expiry drops them); checking here would cost a scan
        // of the list under the lock on every hit.
        let mut lazy = self.lazy_expired.lock();
        if lazy.len() < LAZY_EXPIRED_MAX {
            lazy.push(Bytes::copy_from_slice(key));
        }
    }
}

#[cfg(test)]
mod tests;
