//! The keyspace digest: an order-independent fingerprint of every key's state, kept up to date
//! in O(1) on every mutation, and what divergence detection compares between nodes.
//!
//! **Element.** Each stored key contributes
//! `element = xxh3-128(key ++ digest ++ [algorithm id] ++ expire_at_ms as 8 LE bytes)` (fixed
//! seed): the key's whole logical state, its value represented by the checksum stored with it
//! (computed once when the value entered, see DESIGN.md §1), so updating the digest never reads
//! the value bytes. The concatenation is unambiguous read from the end (8 bytes of deadline, the
//! id, then the id's digest length). Value bytes that no longer match their own checksum are
//! local damage, found by reads and the scrubber; what this digest finds is two nodes holding
//! *different states*: a write applied differently, lost, or made outside the log.
//!
//! **Accumulator.** The digest is the sum of the elements modulo 2^128 (wrapping `u128`), with
//! the key count beside it. A sum does not depend on the order keys were written in, and it can
//! be undone: a replaced or deleted key's element is subtracted. (XOR could be undone too, but
//! two equal elements cancel out; a sum keeps them.) Two different keyspaces share a digest with
//! probability about 2^-128 for accidental differences; nothing here defends against an
//! adversary choosing keys, who would anyway need to bypass the log to make nodes differ.
//!
//! **Buckets.** The same sum is kept for each of [`DIGEST_BUCKETS`] buckets, by the top 12 bits
//! of the key hash (64 KiB). Bucket `b` holds exactly the keys whose `key_hash` is in
//! `[b << 52, (b + 1) << 52)`, a contiguous stretch of the keyspace's hash order, so its keys are
//! listed with a range scan. Sums add up, so the digest of a range of buckets is the sum of its
//! buckets: a verifier narrows a mismatch Merkle-style, comparing ranges and descending only into
//! the differing ones, without the tree ever being stored.
//!
//! **Marks.** To compare nodes at exactly the same log position, the verifying primary proposes
//! an [`Op::VerifyMark`](crate::Op::VerifyMark). Each node applying it records a [`MarkRecord`]
//! (round, digest, a copy of the bucket sums, and, if the mark names buckets to capture, the
//! (key, element) list of those buckets) in a ring of [`MARKS_KEPT`]; peers fetch them by round.
//! The verifier knows the mark's log index from proposing it, so a record needs no index.
//!
//! **Repair.** [`Op::RepairKeys`](crate::Op::RepairKeys) carries the primary's state of keys
//! found to differ. It must never undo a write, yet its bytes were read on the primary before
//! the entry's position in the log. So a capturing mark starts a *watch* on its buckets: every
//! key whose state changes on this node after the mark is noted. A repair applies a key only if
//! the watch is the repair's round and the key was not changed since; otherwise it skips the key
//! (the next verification looks again). On every node that agrees with the primary the repair
//! then changes nothing (its state is the primary's, unchanged since the mark, which is what the
//! repair carries); only a diverged node's copy is replaced. Any later mark, a repair, or
//! FLUSHALL ends the watch.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::Frame;
use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use super::entry::{Entry, NO_EXPIRY};
use super::Keyspace;
use crate::commands::Value;

/// Buckets of the key-hash space with their own digest (the top `BUCKET_BITS` of the hash).
pub const DIGEST_BUCKETS: usize = 1 << BUCKET_BITS;
const BUCKET_BITS: u32 = 12;

/// Seed of the element hash. Part of the digest's meaning on every node: never change it.
const ELEMENT_SEED: u64 = 0x6b65_7973_7061_6365;
/// An element whose input fits in this many bytes is hashed in one call from a stack buffer
/// (keys up to ~180 bytes); longer keys go through the streaming hasher (same result).
const ELEMENT_INLINE_BYTES: usize = 256;

/// Mark records each node keeps (a verification needs one or two at a time; the rest covers a
/// verification started by a new primary while an old one's records are still wanted).
pub const MARKS_KEPT: usize = 4;
/// Most buckets one mark captures the keys of (more are ignored).
pub const CAPTURE_BUCKETS_MAX: usize = 64;
/// Most keys one capture lists, and most key bytes; past either, the capture stops at a hash
/// boundary and says where ([`Captured::truncated_at`]).
pub const CAPTURE_KEYS_MAX: usize = 65_536;
pub const CAPTURE_KEY_BYTES_MAX: usize = 8 << 20;
/// Most changed keys a watch remembers; past that every key of the round counts as changed
/// (the repair skips all of them, the next verification looks again).
pub const WATCH_KEYS_MAX: usize = 65_536;

/// Benchmarks only: when set, mutations leave the digest alone (see [`set_digest_upkeep`]).
static UPKEEP_OFF: AtomicBool = AtomicBool::new(false);

/// Benchmarks only (`--bench-no-keyspace-digest`): with `false`, no mutation in this process
/// updates any keyspace digest from now on, to measure what the upkeep costs. The digests are
/// then wrong and divergence detection meaningless: never in production.
pub fn set_digest_upkeep(on: bool) {
    UPKEEP_OFF.store(!on, Ordering::Relaxed);
}

/// The bucket of a key hash.
pub fn bucket_of_hash(hash: u64) -> usize {
    (hash >> (64 - BUCKET_BITS)) as usize
}

/// The key hashes of `bucket`, inclusive.
pub fn bucket_hashes(bucket: usize) -> (u64, u64) {
    let lo = (bucket as u64) << (64 - BUCKET_BITS);
    (lo, lo | ((1u64 << (64 - BUCKET_BITS)) - 1))
}

/// The element of one key's state (see the module doc).
pub fn element(key: &[u8], digest: &[u8], algorithm_id: u8, expire_at_ms: i64) -> u128 {
    let len = key.len() + digest.len() + 9;
    if len <= ELEMENT_INLINE_BYTES {
        let mut buf = [0u8; ELEMENT_INLINE_BYTES];
        let (k, d) = (key.len(), digest.len());
        buf[..k].copy_from_slice(key);
        buf[k..k + d].copy_from_slice(digest);
        buf[k + d] = algorithm_id;
        buf[k + d + 1..len].copy_from_slice(&expire_at_ms.to_le_bytes());
        xxh3_128_with_seed(&buf[..len], ELEMENT_SEED)
    } else {
        let mut h = Xxh3::with_seed(ELEMENT_SEED);
        h.update(key);
        h.update(digest);
        h.update(&[algorithm_id]);
        h.update(&expire_at_ms.to_le_bytes());
        h.digest128()
    }
}

/// The element of a stored entry.
pub(crate) fn element_of(e: &Entry) -> u128 {
    element(e.key(), e.digest(), e.algorithm_id(), e.expire_at_ms())
}

fn element_of_state(key: &[u8], checksum: &Checksum, expire_at_ms: i64) -> u128 {
    element(
        key,
        checksum.digest(),
        checksum.algorithm().id(),
        expire_at_ms,
    )
}

/// A keyspace's digest: the element sum and the number of keys (expired ones not yet deleted
/// included, as everywhere in the state machine).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyspaceDigest {
    pub sum: u128,
    pub keys: u64,
}

impl std::fmt::Display for KeyspaceDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.sum)
    }
}

/// The incremental digest, owned by the store and updated by every mutation there.
pub(crate) struct Digest {
    sum: u128,
    buckets: Box<[u128]>,
    watch: Option<Box<Watch>>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            sum: 0,
            buckets: vec![0u128; DIGEST_BUCKETS].into_boxed_slice(),
            watch: None,
        }
    }
}

impl Digest {
    /// Whether mutations update the digest (always, but in a benchmark of its cost).
    #[inline]
    pub fn tracking() -> bool {
        !UPKEEP_OFF.load(Ordering::Relaxed)
    }

    /// The element of `e`, if the digest is [tracking](Digest::tracking).
    #[inline]
    pub fn element(e: &Entry) -> Option<u128> {
        Digest::tracking().then(|| element_of(e))
    }

    /// Entry `e` with key hash `hash` was added.
    #[inline]
    pub fn add_entry(&mut self, hash: u64, e: &Entry) {
        if let Some(el) = Digest::element(e) {
            self.add(hash, e.key(), el);
        }
    }

    /// Entry `e` with key hash `hash` left the store.
    #[inline]
    pub fn remove_entry(&mut self, hash: u64, e: &Entry) {
        if let Some(el) = Digest::element(e) {
            self.remove(hash, e.key(), el);
        }
    }

    /// A key's state changed in place from element `old` to `new` (both from
    /// [`Digest::element`]).
    #[inline]
    pub fn change(&mut self, hash: u64, key: &[u8], old: Option<u128>, new: Option<u128>) {
        if let (Some(old), Some(new)) = (old, new) {
            self.replace(hash, key, old, new);
        }
    }

    /// A key with key hash `hash` and state `element` was added.
    #[inline]
    pub fn add(&mut self, hash: u64, key: &[u8], element: u128) {
        self.sum = self.sum.wrapping_add(element);
        let b = &mut self.buckets[bucket_of_hash(hash)];
        *b = b.wrapping_add(element);
        if let Some(w) = &mut self.watch {
            w.touch(hash, key);
        }
    }

    /// A key with key hash `hash` and state `element` left the store.
    #[inline]
    pub fn remove(&mut self, hash: u64, key: &[u8], element: u128) {
        self.sum = self.sum.wrapping_sub(element);
        let b = &mut self.buckets[bucket_of_hash(hash)];
        *b = b.wrapping_sub(element);
        if let Some(w) = &mut self.watch {
            w.touch(hash, key);
        }
    }

    /// A key's state changed in place (deadline, value).
    pub fn replace(&mut self, hash: u64, key: &[u8], old: u128, new: u128) {
        self.remove(hash, key, old);
        self.add(hash, key, new);
    }

    pub fn sum(&self) -> u128 {
        self.sum
    }

    pub fn buckets(&self) -> &[u128] {
        &self.buckets
    }

    /// A log entry names `key` as written (whatever the write did here). Every node marks the
    /// same keys, from the log alone: a node where the write met a damaged copy, or did nothing
    /// (SET NX over a key only it holds), must skip the round's repair of the key just as the
    /// nodes where the write changed it do.
    #[inline]
    pub fn note_written(&mut self, key: &[u8]) {
        if let Some(w) = &mut self.watch {
            w.touch(super::store::key_hash(key), key);
        }
    }

    /// Starts watching `buckets` for round `round` (replacing any watch).
    fn watch(&mut self, round: u64, buckets: &[u16]) {
        let mut w = Watch {
            round,
            buckets: [0u64; DIGEST_BUCKETS / 64],
            changed: HashSet::new(),
            keys_max: WATCH_KEYS_MAX,
            overflow: false,
        };
        for &b in buckets {
            w.buckets[usize::from(b) / 64] |= 1 << (b % 64);
        }
        self.watch = Some(Box::new(w));
    }

    fn unwatch(&mut self) {
        self.watch = None;
    }

    /// Whether `key` is known unchanged since round `round`'s capturing mark (false if the
    /// watch is another round's, or overflowed, or gone).
    fn unchanged_since(&self, round: u64, key: &[u8]) -> bool {
        match &self.watch {
            Some(w) => w.round == round && !w.overflow && !w.changed.contains(key),
            None => false,
        }
    }
}

/// Keys changed in the watched buckets since a capturing mark (see the module doc).
struct Watch {
    round: u64,
    /// One bit per bucket.
    buckets: [u64; DIGEST_BUCKETS / 64],
    changed: HashSet<Box<[u8]>>,
    /// [`WATCH_KEYS_MAX`] (a field so tests can lower it).
    keys_max: usize,
    overflow: bool,
}

impl Watch {
    fn touch(&mut self, hash: u64, key: &[u8]) {
        let b = bucket_of_hash(hash);
        if self.overflow || self.buckets[b / 64] & (1 << (b % 64)) == 0 {
            return;
        }
        if self.changed.len() >= self.keys_max {
            self.overflow = true;
            self.changed = HashSet::new();
            return;
        }
        self.changed.insert(key.into());
    }
}

/// A mark in the log: every node records its digest here (and the keys of `capture`'s
/// buckets, starting a watch on them). Serialized into the log: fields are append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyMark {
    /// Chosen by the verifier, unique per verification step; peers are asked for it.
    pub round: u64,
    /// Buckets whose keys to list (at most [`CAPTURE_BUCKETS_MAX`] are used); empty: none.
    pub capture: Vec<u16>,
}

/// The primary's state of keys found to differ, to be installed on every node where the key
/// did not change since round `round`'s capturing mark. Serialized into the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairKeys {
    pub round: u64,
    pub keys: Vec<RepairKey>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairKey {
    pub key: Bytes,
    /// None: the key does not exist on the primary.
    pub state: Option<RepairState>,
}

/// A key's full state, copied exactly (the deadline too, even a past one: it is the state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairState {
    pub value: Value,
    pub expire_at_ms: i64,
}

/// What a repair did with one key on the node that applied it (the reply, one integer per key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairKeyOutcome {
    /// This node's copy differed and now holds the primary's state.
    Changed,
    /// This node already held the primary's state.
    Same,
    /// The key changed since the capture (or the round's watch is gone): left alone.
    SkippedChanged,
    /// The carried value fails its own checksum: left alone (never installed).
    SkippedBadCopy,
}

impl RepairKeyOutcome {
    pub fn code(self) -> i64 {
        match self {
            RepairKeyOutcome::Changed => 1,
            RepairKeyOutcome::Same => 0,
            RepairKeyOutcome::SkippedChanged => -1,
            RepairKeyOutcome::SkippedBadCopy => -2,
        }
    }

    pub fn from_code(code: i64) -> Option<RepairKeyOutcome> {
        Some(match code {
            1 => RepairKeyOutcome::Changed,
            0 => RepairKeyOutcome::Same,
            -1 => RepairKeyOutcome::SkippedChanged,
            -2 => RepairKeyOutcome::SkippedBadCopy,
            _ => return None,
        })
    }
}

/// What a node recorded when it applied a [`VerifyMark`].
#[derive(Clone, Debug)]
pub struct MarkRecord {
    pub round: u64,
    pub digest: KeyspaceDigest,
    buckets: Box<[u128]>,
    pub captured: Option<Captured>,
}

impl MarkRecord {
    /// The digest sum of buckets `lo..hi` (clamped to the bucket count).
    pub fn range_sum(&self, lo: usize, hi: usize) -> u128 {
        let hi = hi.min(DIGEST_BUCKETS);
        self.buckets[lo.min(hi)..hi]
            .iter()
            .fold(0u128, |acc, b| acc.wrapping_add(*b))
    }
}

/// The keys of the captured buckets with their elements, in key-hash order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// The buckets actually captured (sorted, deduplicated, capped).
    pub buckets: Vec<u16>,
    pub entries: Vec<(Bytes, u128)>,
    /// `Some(h)`: the capture stopped at a limit; keys with hash `>= h` are missing from it.
    pub truncated_at: Option<u64>,
}

/// The keyspace's verification side state: mark records and counters. Not part of the state a
/// snapshot captures (a node that installs a snapshot starts without marks).
#[derive(Default)]
pub(crate) struct Verification {
    marks: VecDeque<MarkRecord>,
    /// Keys this node changed when applying repairs.
    keys_restored: u64,
}

impl Keyspace {
    /// This node's keyspace digest, O(1). Read it under the same lock as the applied index to
    /// tag it with the position it reflects.
    pub fn digest(&self) -> KeyspaceDigest {
        KeyspaceDigest {
            sum: self.store.digest().sum(),
            keys: self.store.len() as u64,
        }
    }

    /// The digest computed from scratch over every key (O(n)); equal to [`Keyspace::digest`]
    /// unless the incremental upkeep has a bug.
    pub fn digest_recomputed(&self) -> KeyspaceDigest {
        self.recompute_buckets().0
    }

    /// Whether the incremental digest, every bucket included, equals a recomputation (O(n)).
    pub fn digest_is_consistent(&self) -> bool {
        let (whole, buckets) = self.recompute_buckets();
        whole == self.digest() && *buckets == *self.store.digest().buckets()
    }

    fn recompute_buckets(&self) -> (KeyspaceDigest, Vec<u128>) {
        let mut buckets = vec![0u128; DIGEST_BUCKETS];
        let mut sum = 0u128;
        let mut keys = 0u64;
        for e in self.store.entries() {
            let el = element_of(e);
            let b = &mut buckets[bucket_of_hash(super::key_hash(e.key()))];
            *b = b.wrapping_add(el);
            sum = sum.wrapping_add(el);
            keys += 1;
        }
        (KeyspaceDigest { sum, keys }, buckets)
    }

    /// This node's record of verification round `round`, if it applied that mark and still
    /// keeps it.
    pub fn mark(&self, round: u64) -> Option<&MarkRecord> {
        self.verification.marks.iter().find(|m| m.round == round)
    }

    /// The newest mark record.
    pub fn last_mark(&self) -> Option<&MarkRecord> {
        self.verification.marks.back()
    }

    /// Keys this node changed when applying repairs since it started.
    pub fn keys_restored_by_verify(&self) -> u64 {
        self.verification.keys_restored
    }

    /// Whether `key` may have changed since round `round`'s capturing mark (the primary leaves
    /// such keys out of a repair: its copy is no longer the one compared).
    pub fn changed_since_capture(&self, round: u64, key: &[u8]) -> bool {
        !self.store.digest().unchanged_since(round, key)
    }

    /// This node's state of `key` for a repair: `Ok(None)` if absent, `Err(())` if its value
    /// fails its checksum (a damaged copy is never sent anywhere).
    #[allow(clippy::result_unit_err)]
    pub fn repair_state(&self, key: &[u8]) -> Result<Option<RepairState>, ()> {
        let Some(e) = self.store.get(key) else {
            return Ok(None);
        };
        if self.store.is_diverged(key) {
            return Err(());
        }
        let checksum = e.checksum().ok_or(())?;
        let value = e.verified_value().ok_or(())?;
        Ok(Some(RepairState {
            value: Value {
                bytes: Bytes::copy_from_slice(value),
                checksum,
            },
            expire_at_ms: e.expire_at_ms(),
        }))
    }

    /// Replaces `key`'s value AND its checksum with `value` (checksummed with `algorithm`) on
    /// this node only, keeping the deadline, or creates the key without one: a consistent
    /// but different state, which reads verify happily and only divergence detection finds.
    /// Fault injection for tests (`DEBUG DIVERGE`). Returns whether the key existed.
    pub fn debug_diverge(&mut self, key: &[u8], value: &[u8], algorithm: Algorithm) -> bool {
        let checksum = Checksum::compute(algorithm, value);
        if self.store.replace_value(key, value, &checksum) {
            return true;
        }
        self.store
            .insert(Entry::new(key, value, &checksum, NO_EXPIRY));
        false
    }

    pub(crate) fn apply_verify_mark(&mut self, op: &VerifyMark) -> Frame {
        let captured = if op.capture.is_empty() {
            self.store.digest_mut().unwatch();
            None
        } else {
            let c = self.capture(&op.capture, CAPTURE_KEYS_MAX, CAPTURE_KEY_BYTES_MAX);
            self.store.digest_mut().watch(op.round, &c.buckets);
            Some(c)
        };
        let listed = captured.as_ref().map_or(0, |c| c.entries.len());
        let record = MarkRecord {
            round: op.round,
            digest: self.digest(),
            buckets: self.store.digest().buckets().into(),
            captured,
        };
        let marks = &mut self.verification.marks;
        marks.retain(|m| m.round != op.round);
        if marks.len() >= MARKS_KEPT {
            marks.pop_front();
        }
        marks.push_back(record);
        Frame::Integer(listed as i64)
    }

    /// The (key, element) list of `buckets`, in hash order, stopping (at a hash boundary) once
    /// `keys_max` keys or `key_bytes_max` key bytes are listed.
    fn capture(&self, buckets: &[u16], keys_max: usize, key_bytes_max: usize) -> Captured {
        let mut list: Vec<u16> = buckets
            .iter()
            .copied()
            .filter(|&b| usize::from(b) < DIGEST_BUCKETS)
            .collect();
        list.sort_unstable();
        list.dedup();
        list.truncate(CAPTURE_BUCKETS_MAX);
        let mut out = Captured {
            buckets: list.clone(),
            ..Captured::default()
        };
        let mut bytes = 0usize;
        for &b in &list {
            let (lo, hi) = bucket_hashes(usize::from(b));
            for hash in self.store.hashes_from(lo).take_while(|&h| h <= hi) {
                // Keys sharing a hash are listed together: the cut is at a hash boundary.
                if out.entries.len() >= keys_max || bytes >= key_bytes_max {
                    out.truncated_at = Some(hash);
                    return out;
                }
                for e in self.store.entries_with_hash(hash) {
                    bytes += e.key().len();
                    out.entries
                        .push((Bytes::copy_from_slice(e.key()), element_of(e)));
                }
            }
        }
        out
    }

    pub(crate) fn apply_repair_keys(&mut self, op: &RepairKeys) -> Frame {
        let mut outcomes = Vec::with_capacity(op.keys.len());
        for rk in &op.keys {
            let outcome = self.repair_one(op.round, rk);
            if outcome == RepairKeyOutcome::Changed {
                self.verification.keys_restored += 1;
                tracing::warn!(
                    key = %super::escape_key(&rk.key),
                    "diverged key replaced with the primary's state"
                );
            }
            outcomes.push(Frame::Integer(outcome.code()));
        }
        self.store.digest_mut().unwatch();
        Frame::Array(outcomes)
    }

    fn repair_one(&mut self, round: u64, rk: &RepairKey) -> RepairKeyOutcome {
        if !self.store.digest().unchanged_since(round, &rk.key) {
            return RepairKeyOutcome::SkippedChanged;
        }
        let target = match &rk.state {
            Some(s) if !s.value.checksum.verify(&s.value.bytes) => {
                return RepairKeyOutcome::SkippedBadCopy
            }
            Some(s) => Some(element_of_state(&rk.key, &s.value.checksum, s.expire_at_ms)),
            None => None,
        };
        let current = self.store.get(&rk.key).map(element_of);
        if current == target {
            return RepairKeyOutcome::Same;
        }
        match &rk.state {
            Some(s) => {
                self.store.insert(Entry::new(
                    &rk.key,
                    &s.value.bytes,
                    &s.value.checksum,
                    s.expire_at_ms,
                ));
            }
            None => {
                self.store.remove(&rk.key);
            }
        }
        RepairKeyOutcome::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, Op};
    use crate::keyspace::key_hash;

    const ALG: Algorithm = Algorithm::Sha256;

    fn set(ks: &mut Keyspace, key: &str, value: &str, at: i64) {
        let c = Checksum::compute(ALG, value.as_bytes());
        ks.store
            .insert(Entry::new(key.as_bytes(), value.as_bytes(), &c, at));
    }

    fn apply(ks: &mut Keyspace, op: Op) -> Frame {
        let mut replies = ks.apply(&Batch {
            now_ms: 1_000,
            algorithm: ALG,
            ops: vec![op],
        });
        replies.pop().unwrap()
    }

    fn mark(ks: &mut Keyspace, round: u64, capture: Vec<u16>) -> MarkRecord {
        apply(ks, Op::VerifyMark(VerifyMark { round, capture }));
        ks.mark(round).unwrap().clone()
    }

    #[test]
    fn the_digest_does_not_depend_on_write_order() {
        let mut a = Keyspace::new();
        let mut b = Keyspace::new();
        for i in 0..300 {
            set(&mut a, &format!("k{i}"), &format!("v{i}"), NO_EXPIRY);
        }
        for i in (0..300).rev() {
            // b takes a detour through other values and deadlines first.
            set(&mut b, &format!("k{i}"), "old", 5);
            set(&mut b, &format!("k{i}"), &format!("v{i}"), NO_EXPIRY);
        }
        set(&mut b, "gone", "x", NO_EXPIRY);
        b.store.remove(b"gone");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().keys, 300);
        assert_ne!(a.digest(), Keyspace::new().digest());
        assert!(a.digest_is_consistent() && b.digest_is_consistent());
    }

    #[test]
    fn every_part_of_a_keys_state_changes_the_digest() {
        let mut ks = Keyspace::new();
        set(&mut ks, "k", "v", NO_EXPIRY);
        let base = ks.digest();
        let mut seen = HashSet::new();
        seen.insert(base);
        // Another value (with its checksum), another deadline, another algorithm, another key.
        ks.debug_diverge(b"k", b"w", ALG);
        assert!(seen.insert(ks.digest()));
        ks.debug_diverge(b"k", b"v", ALG);
        assert_eq!(ks.digest(), base);
        ks.store.set_expiry(b"k", 99);
        assert!(seen.insert(ks.digest()));
        ks.store.set_expiry(b"k", NO_EXPIRY);
        assert_eq!(ks.digest(), base);
        ks.debug_diverge(b"k", b"v", Algorithm::Crc32c);
        assert!(seen.insert(ks.digest()));
        let mut other = Keyspace::new();
        set(&mut other, "K", "v", NO_EXPIRY);
        assert!(seen.insert(other.digest()));
        // Damage to the value bytes alone is the read path's business, not a state change.
        ks.debug_diverge(b"k", b"v", ALG);
        assert!(ks.debug_corrupt(b"k"));
        assert_eq!(ks.digest(), base);
    }

    #[test]
    fn long_keys_hash_the_same_through_either_path() {
        let key = vec![b'x'; 1000];
        let c = Checksum::compute(Algorithm::Sha512, b"v");
        let mut buf = key.clone();
        buf.extend_from_slice(c.digest());
        buf.push(c.algorithm().id());
        buf.extend_from_slice(&7i64.to_le_bytes());
        assert_eq!(
            element(&key, c.digest(), c.algorithm().id(), 7),
            xxh3_128_with_seed(&buf, ELEMENT_SEED)
        );
        let short = b"short";
        let mut h = Xxh3::with_seed(ELEMENT_SEED);
        h.update(short);
        h.update(c.digest());
        h.update(&[c.algorithm().id()]);
        h.update(&7i64.to_le_bytes());
        assert_eq!(
            element(short, c.digest(), c.algorithm().id(), 7),
            h.digest128()
        );
    }

    #[test]
    fn incremental_equals_recomputed_through_every_command() {
        use crate::testkit::Harness;
        let mut node = Harness::new();
        let script: &[&[&str]] = &[
            &["SET", "a", "1"],
            &["SET", "b", "2", "PX", "50"],
            &["MSET", "c", "3", "d", "4", "e", "5"],
            &["APPEND", "a", "xyz"],
            &["INCR", "n"],
            &["INCRBYFLOAT", "f", "1.5"],
            &["SETRANGE", "c", "5", "zz"],
            &["EXPIRE", "c", "100"],
            &["PERSIST", "c"],
            &["RENAME", "d", "d2"],
            &["RENAMENX", "e", "a"],
            &["GETDEL", "a"],
            &["GETEX", "d2", "PX", "10"],
            &["DEL", "e", "nope"],
            &["SET", "collide:1", "x"],
            &["SET", "collide:2", "y"],
            &["DEL", "collide:1"],
        ];
        for cmd in script {
            node.run(cmd);
            assert!(node.ks.digest_is_consistent(), "after {cmd:?}");
        }
        // Expiry through the log.
        node.now_ms += 1_000;
        let due = node.ks.due_for_expiry(node.now_ms, 100);
        assert!(!due.is_empty());
        node.ks.apply(&Batch {
            now_ms: node.now_ms,
            algorithm: ALG,
            ops: vec![Op::ExpireKeys(due)],
        });
        assert!(node.ks.digest_is_consistent());
        // A snapshot load rebuilds the same digest.
        let mut loaded = Keyspace::new();
        {
            let mut loader = loaded.bulk_load();
            node.ks
                .for_each_record(|r| loader.load(r).expect("record loads"));
        }
        assert_eq!(loaded.digest(), node.ks.digest());
        assert!(loaded.digest_is_consistent());
        node.run(&["FLUSHALL"]);
        assert_eq!(node.ks.digest(), Keyspace::new().digest());
        assert!(node.ks.digest_is_consistent());
    }

    #[test]
    fn bucket_sums_narrow_a_difference_to_its_key() {
        let mut a = Keyspace::new();
        for i in 0..5000 {
            set(&mut a, &format!("k{i}"), "v", NO_EXPIRY);
        }
        let mut b = Keyspace::new();
        for i in (0..5000).rev() {
            set(&mut b, &format!("k{i}"), "v", NO_EXPIRY);
        }
        b.debug_diverge(b"k1234", b"other", ALG);
        let (ma, mb) = (mark(&mut a, 1, vec![]), mark(&mut b, 1, vec![]));
        assert_ne!(ma.digest, mb.digest);
        // Descend: 16 ranges of 256, then 16 of 16, then single buckets.
        let mut ranges = vec![(0usize, DIGEST_BUCKETS)];
        while ranges[0].1 - ranges[0].0 > 1 {
            let mut next = Vec::new();
            for (lo, hi) in ranges {
                let step = (hi - lo) / 16;
                for c in 0..16 {
                    let r = (lo + c * step, lo + (c + 1) * step);
                    if ma.range_sum(r.0, r.1) != mb.range_sum(r.0, r.1) {
                        next.push(r);
                    }
                }
            }
            assert_eq!(next.len(), 1, "exactly one differing range per level");
            ranges = next;
        }
        let bucket = ranges[0].0;
        assert_eq!(bucket, bucket_of_hash(key_hash(b"k1234")));
        // Capture that bucket on both sides and diff the lists.
        let ca = mark(&mut a, 2, vec![bucket as u16]).captured.unwrap();
        let cb = mark(&mut b, 2, vec![bucket as u16]).captured.unwrap();
        assert!(ca.truncated_at.is_none() && !ca.entries.is_empty());
        let diff: Vec<_> = ca
            .entries
            .iter()
            .filter(|e| !cb.entries.contains(e))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(diff, vec![Bytes::from_static(b"k1234")]);
        assert!(ca
            .entries
            .iter()
            .all(|(k, _)| bucket_of_hash(key_hash(k)) == bucket));
    }

    fn repair_of(ks: &Keyspace, round: u64, keys: &[&str]) -> RepairKeys {
        RepairKeys {
            round,
            keys: keys
                .iter()
                .map(|k| RepairKey {
                    key: Bytes::copy_from_slice(k.as_bytes()),
                    state: ks.repair_state(k.as_bytes()).unwrap(),
                })
                .collect(),
        }
    }

    fn outcomes(f: Frame) -> Vec<RepairKeyOutcome> {
        let Frame::Array(items) = f else {
            panic!("{f:?}")
        };
        items
            .into_iter()
            .map(|i| match i {
                Frame::Integer(n) => RepairKeyOutcome::from_code(n).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_repair_restores_the_diverged_copy_and_changes_nothing_elsewhere() {
        let build = || {
            let mut ks = Keyspace::new();
            for i in 0..100 {
                set(&mut ks, &format!("k{i}"), &format!("v{i}"), NO_EXPIRY);
            }
            ks
        };
        let (mut primary, mut healthy, mut diverged) = (build(), build(), build());
        diverged.debug_diverge(b"k7", b"bad", ALG);
        diverged.debug_diverge(b"extra", b"only here", ALG);
        diverged.store.remove(b"k9");
        let buckets: Vec<u16> = ["k7", "extra", "k9"]
            .iter()
            .map(|k| bucket_of_hash(key_hash(k.as_bytes())) as u16)
            .collect();
        for ks in [&mut primary, &mut healthy, &mut diverged] {
            mark(ks, 5, buckets.clone());
        }
        let op = repair_of(&primary, 5, &["k7", "extra", "k9"]);
        let before = primary.digest();
        use RepairKeyOutcome::*;
        assert_eq!(
            outcomes(apply(&mut primary, Op::RepairKeys(op.clone()))),
            vec![Same, Same, Same]
        );
        assert_eq!(
            outcomes(apply(&mut healthy, Op::RepairKeys(op.clone()))),
            vec![Same, Same, Same]
        );
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(op))),
            vec![Changed, Changed, Changed]
        );
        for ks in [&primary, &healthy, &diverged] {
            assert_eq!(ks.digest(), before);
            assert!(ks.digest_is_consistent());
        }
        assert_eq!(diverged.keys_restored_by_verify(), 3);
    }

    #[test]
    fn a_repair_never_undoes_a_write_made_after_the_capture() {
        let mut primary = Keyspace::new();
        let mut diverged = Keyspace::new();
        for ks in [&mut primary, &mut diverged] {
            set(ks, "k", "v", NO_EXPIRY);
        }
        diverged.debug_diverge(b"k", b"bad", ALG);
        let bucket = bucket_of_hash(key_hash(b"k")) as u16;
        mark(&mut primary, 1, vec![bucket]);
        mark(&mut diverged, 1, vec![bucket]);
        let op = repair_of(&primary, 1, &["k"]);
        // A client's write lands between the capture and the repair, on both nodes.
        for ks in [&mut primary, &mut diverged] {
            set(ks, "k", "new", NO_EXPIRY);
        }
        assert!(primary.changed_since_capture(1, b"k"));
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(op.clone()))),
            vec![RepairKeyOutcome::SkippedChanged]
        );
        assert_eq!(diverged.digest(), primary.digest(), "the write stands");
        // A repair of another round, or after the watch ended, does nothing either.
        diverged.debug_diverge(b"k", b"bad", ALG);
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(op.clone()))),
            vec![RepairKeyOutcome::SkippedChanged]
        );
        mark(&mut diverged, 2, vec![bucket]);
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(op))),
            vec![RepairKeyOutcome::SkippedChanged]
        );
        // A copy that fails its checksum is never installed.
        mark(&mut diverged, 3, vec![bucket]);
        let mut bad = repair_of(&primary, 3, &["k"]);
        bad.keys[0].state.as_mut().unwrap().value.bytes = Bytes::from_static(b"nex");
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(bad))),
            vec![RepairKeyOutcome::SkippedBadCopy]
        );
    }

    /// A client write parsed and applied as the log applies it.
    fn write(ks: &mut Keyspace, args: &[&str]) -> Frame {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let ctx = crate::commands::ParseContext {
            algorithm: ALG,
            now_ms: 1_000,
        };
        match crate::commands::parse(&args, &ctx) {
            Some(Ok(crate::commands::Command::Write(w))) => apply(ks, Op::Write(w)),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn a_repair_skips_a_key_a_write_named_even_where_the_write_changed_nothing() {
        // The diverged node holds a key the primary lacks; the round's repair would delete it.
        let mut primary = Keyspace::new();
        let mut diverged = Keyspace::new();
        set(&mut diverged, "x", "extra", NO_EXPIRY);
        let bucket = bucket_of_hash(key_hash(b"x")) as u16;
        mark(&mut primary, 1, vec![bucket]);
        mark(&mut diverged, 1, vec![bucket]);
        let op = RepairKeys {
            round: 1,
            keys: vec![RepairKey {
                key: Bytes::from_static(b"x"),
                state: primary.repair_state(b"x").unwrap(),
            }],
        };
        // SET NX after the capture: creates x on the primary, does nothing on the diverged node.
        for ks in [&mut primary, &mut diverged] {
            write(ks, &["SET", "x", "client", "NX"]);
        }
        assert_eq!(
            outcomes(apply(&mut diverged, Op::RepairKeys(op))),
            vec![RepairKeyOutcome::SkippedChanged],
            "the repair must not act on a key a later write named: every node skips it alike"
        );
        assert!(
            diverged.store.get(b"x").is_some(),
            "x is left for the next round"
        );
    }

    #[test]
    fn captures_and_marks_respect_their_limits() {
        let mut ks = Keyspace::new();
        for i in 0..20_000 {
            set(&mut ks, &format!("k{i}"), "", NO_EXPIRY);
        }
        let all: Vec<u16> = (0..DIGEST_BUCKETS as u16).rev().collect();
        let c = mark(&mut ks, 1, all.clone()).captured.unwrap();
        assert_eq!(
            c.buckets,
            (0..CAPTURE_BUCKETS_MAX as u16).collect::<Vec<_>>()
        );
        assert!(c.truncated_at.is_none());
        let full = c.entries;
        assert!(full
            .windows(2)
            .all(|w| key_hash(&w[0].0) <= key_hash(&w[1].0)));
        // Cut by count, then by bytes: a prefix of the full list, and it says where it stopped.
        for (keys_max, bytes_max) in [(100, usize::MAX), (usize::MAX, 50)] {
            let cut = ks.capture(&all, keys_max, bytes_max);
            let at = cut.truncated_at.expect("stopped at a limit");
            assert_eq!(cut.entries[..], full[..cut.entries.len()]);
            assert!(cut.entries.iter().all(|(k, _)| key_hash(k) < at));
            assert_eq!(key_hash(&full[cut.entries.len()].0), at);
        }
        for round in 2..10 {
            mark(&mut ks, round, vec![]);
        }
        assert!(
            ks.mark(1).is_none(),
            "only the newest {MARKS_KEPT} are kept"
        );
        assert_eq!(ks.last_mark().unwrap().round, 9);
        assert!(ks.mark(6).is_some());
        // A bucket number out of range is ignored, not a panic.
        let c = mark(&mut ks, 20, vec![u16::MAX]).captured.unwrap();
        assert!(c.buckets.is_empty() && c.entries.is_empty());
    }

    #[test]
    fn a_watch_that_overflows_skips_the_whole_round() {
        let mut ks = Keyspace::new();
        set(&mut ks, "k", "v", NO_EXPIRY);
        let b = bucket_of_hash(key_hash(b"k")) as u16;
        mark(&mut ks, 1, vec![b]);
        assert!(!ks.changed_since_capture(1, b"k"));
        assert!(ks.changed_since_capture(2, b"k"), "another round");
        ks.store.digest_mut().watch.as_mut().unwrap().keys_max = 3;
        let mut i = 0u64;
        let mut changed = 0;
        while changed <= 3 {
            let key = format!("w{i}");
            i += 1;
            if bucket_of_hash(key_hash(key.as_bytes())) as u16 == b {
                assert!(
                    !ks.changed_since_capture(1, b"k"),
                    "{changed} changed keys fit"
                );
                set(&mut ks, &key, "", NO_EXPIRY);
                changed += 1;
            }
        }
        assert!(
            ks.changed_since_capture(1, b"k"),
            "overflowed: nothing is known unchanged"
        );
    }
}
