//! The keyspace side of repair and scrubbing. The server drives both (it fetches copies from
//! other nodes and paces the scrubber); the keyspace only checks and replaces, under the rules
//! below.
//!
//! - [`Keyspace::copy_of`]: this node's copy of a key, for a peer that is repairing its own. A
//!   damaged copy is never handed out: the answer says it is damaged instead.
//! - [`Keyspace::repair_value`] (in `mod.rs`): the common repair, bytes damaged and checksum
//!   intact; the good copy must match the stored checksum, so it cannot change the state.
//! - [`Keyspace::restore_damaged`]: the rare one, where the stored checksum itself cannot be
//!   trusted (a diverged key, or damage in the digest bytes): the whole key is replaced with a
//!   healthy node's state, which must be taken at the same applied position.
//! - [`Keyspace::scrub`]: verifies the values of a stretch of keys in hash order, the
//!   scrubber's unit of work; its cursor survives inserts and deletes as SCAN's does.
//!
//! Checks here count nothing in [`super::IntegrityStats`] (that counts what reads and applies
//! found): the server counts them per source.

use bytes::Bytes;
use tandem_checksum::Checksum;

use super::entry::Entry;
use super::{KeyState, Keyspace};

/// A key's copy on this node, as offered to a peer that is repairing its own.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyCopy {
    /// Not stored here (a deadline in the past does not count: the key is still stored).
    Absent,
    /// Stored, and the value matches its checksum.
    Intact(KeyState),
    /// Stored, and the value fails its checksum (or the key is diverged): nothing to offer.
    Damaged,
}

/// What one [`Keyspace::scrub`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubStep {
    /// Keys verified (expired ones are skipped: they are invisible and about to be deleted).
    pub keys: usize,
    /// Value bytes verified.
    pub bytes: u64,
    /// Keys whose value failed its checksum, or that are diverged.
    pub damaged: Vec<Bytes>,
    /// Where the next call goes on from; None: the pass is complete.
    pub next: Option<u64>,
}

impl Keyspace {
    /// This node's copy of `key` for a peer (see [`KeyCopy`]). Verifies the value.
    pub fn copy_of(&self, key: &[u8]) -> KeyCopy {
        let Some(entry) = self.store.get(key) else {
            return KeyCopy::Absent;
        };
        match (self.intact(entry), entry.checksum()) {
            (true, Some(checksum)) => KeyCopy::Intact(KeyState {
                value: Bytes::copy_from_slice(entry.raw_value()),
                checksum,
                expire_at_ms: entry.expire_at_ms(),
            }),
            _ => KeyCopy::Damaged,
        }
    }

    /// Whether `key` is stored here with a value that fails its checksum, or is diverged. An
    /// absent key is not damaged.
    pub fn is_damaged(&self, key: &[u8]) -> bool {
        self.store.get(key).is_some_and(|e| !self.intact(e))
    }

    /// The checksum stored with `key` (whether or not the value matches it); None if the key is
    /// absent or the algorithm id itself is damaged.
    pub fn stored_checksum(&self, key: &[u8]) -> Option<Checksum> {
        self.store.get(key).and_then(Entry::checksum)
    }

    /// Whether any key is diverged (nearly always false; cheap).
    pub fn has_diverged(&self) -> bool {
        self.store.diverged_keys().next().is_some()
    }

    /// Replaces a damaged key (its value fails its checksum, or it is diverged) with a healthy
    /// node's state of it; `None`: the key does not exist there. Returns false (nothing done)
    /// if the key is not damaged here, or the offered value fails its own checksum.
    ///
    /// To ensure correctness: `state` must be the other node's state of the key at exactly this
    /// node's applied log position. From an earlier position the restore would be stale; from a
    /// later one, the entries in between would be applied on top of it a second time.
    pub fn restore_damaged(&mut self, key: &[u8], state: Option<&KeyState>) -> bool {
        let damaged = match self.store.get(key) {
            Some(e) => !self.intact(e),
            // Absent here: only a diverged key can be missing its state, and a diverged key is
            // always stored.
            None => false,
        };
        damaged && self.install_state(key, state, "damaged")
    }

    /// Verifies the values of keys in hash order from hash `from`, until at least `keys_max`
    /// keys or `bytes_max` value bytes were verified (keys sharing a hash are verified
    /// together), skipping keys expired at `now_ms`. Start a pass with `from = 0`; go on with
    /// the returned `next` until it is None.
    pub fn scrub(&self, from: u64, now_ms: i64, keys_max: usize, bytes_max: u64) -> ScrubStep {
        let mut step = ScrubStep::default();
        for hash in self.store.hashes_from(from) {
            for entry in self.store.entries_with_hash(hash) {
                if entry.is_expired(now_ms) {
                    continue;
                }
                step.keys += 1;
                step.bytes += entry.raw_value().len() as u64;
                if !self.intact(entry) {
                    step.damaged.push(Bytes::copy_from_slice(entry.key()));
                }
            }
            if step.keys >= keys_max || step.bytes >= bytes_max {
                step.next = hash.checked_add(1);
                return step;
            }
        }
        step
    }

    fn intact(&self, entry: &Entry) -> bool {
        entry.verified_value().is_some() && !self.store.is_diverged(entry.key())
    }
}

#[cfg(test)]
mod tests {
    use tandem_checksum::Algorithm;

    use super::*;
    use crate::keyspace::NO_EXPIRY;

    fn state(value: &[u8], expire_at_ms: i64) -> KeyState {
        KeyState {
            value: Bytes::copy_from_slice(value),
            checksum: Checksum::compute(Algorithm::Sha256, value),
            expire_at_ms,
        }
    }

    fn keyspace(keys: usize) -> Keyspace {
        let mut ks = Keyspace::new();
        for i in 0..keys {
            let v = format!("value-{i}");
            ks.store.insert(Entry::new(
                format!("k{i}").as_bytes(),
                v.as_bytes(),
                &Checksum::compute(Algorithm::Sha256, v.as_bytes()),
                NO_EXPIRY,
            ));
        }
        ks
    }

    #[test]
    fn a_copy_is_offered_only_when_it_verifies() {
        let mut ks = keyspace(2);
        assert_eq!(ks.copy_of(b"nope"), KeyCopy::Absent);
        assert_eq!(
            ks.copy_of(b"k0"),
            KeyCopy::Intact(state(b"value-0", NO_EXPIRY))
        );
        assert!(!ks.is_damaged(b"k0") && !ks.is_damaged(b"nope"));
        assert!(ks.debug_corrupt(b"k0"));
        assert_eq!(ks.copy_of(b"k0"), KeyCopy::Damaged);
        assert!(ks.is_damaged(b"k0"));
        assert_eq!(
            ks.stored_checksum(b"k0"),
            Some(Checksum::compute(Algorithm::Sha256, b"value-0")),
            "the checksum survives damage to the value"
        );
        ks.store.mark_diverged(b"k1");
        assert!(ks.has_diverged());
        assert_eq!(
            ks.copy_of(b"k1"),
            KeyCopy::Damaged,
            "a diverged key is stale"
        );
    }

    #[test]
    fn restore_replaces_only_damaged_keys_and_only_with_good_bytes() {
        let mut ks = keyspace(3);
        let good = state(b"other", 1234);
        assert!(!ks.restore_damaged(b"k0", Some(&good)), "k0 is intact");
        assert!(!ks.restore_damaged(b"absent", Some(&good)));
        assert!(ks.debug_corrupt(b"k0"));
        let mut bad = good.clone();
        bad.value = Bytes::from_static(b"othex");
        assert!(
            !ks.restore_damaged(b"k0", Some(&bad)),
            "a bad copy is refused"
        );
        assert!(ks.restore_damaged(b"k0", Some(&good)));
        assert_eq!(ks.copy_of(b"k0"), KeyCopy::Intact(good.clone()));
        assert_eq!(ks.integrity().repaired, 1);

        ks.store.mark_diverged(b"k1");
        assert!(ks.restore_damaged(b"k1", None), "gone on the healthy node");
        assert_eq!(ks.copy_of(b"k1"), KeyCopy::Absent);
        assert!(!ks.has_diverged());
        assert_eq!(ks.len(), 2);
    }

    #[test]
    fn unverified_reads_skip_only_the_plain_read_check() {
        use crate::commands::{DigestRead, StringRead};
        use crate::ReadCmd;
        let mut ks = keyspace(1);
        assert!(ks.debug_corrupt(b"k0"));
        let get = ReadCmd::String(StringRead::Get(Bytes::from_static(b"k0")));
        assert!(matches!(ks.read(&get, 0), tandem_resp::Frame::Error(_)));
        ks.set_reads_unverified(true);
        assert!(matches!(ks.read(&get, 0), tandem_resp::Frame::Bulk(_)));
        let digest = ReadCmd::Digest(DigestRead::Get(Bytes::from_static(b"k0")));
        assert!(matches!(ks.read(&digest, 0), tandem_resp::Frame::Error(_)));
        assert!(ks.verify_values([&Bytes::from_static(b"k0")], 0).is_err());
        assert_eq!(get.value_keys(), vec![&Bytes::from_static(b"k0")]);
    }

    #[test]
    fn a_scrub_pass_visits_every_key_once_and_finds_the_damaged_ones() {
        let mut ks = keyspace(1000);
        for k in ["k3", "k500", "k999"] {
            assert!(ks.debug_corrupt(k.as_bytes()));
        }
        ks.store.mark_diverged(b"k7");
        // An expired key is skipped, damaged or not.
        ks.store.set_expiry(b"k8", 50);
        ks.debug_corrupt(b"k8");
        let mut from = Some(0);
        let (mut keys, mut steps, mut damaged) = (0, 0, Vec::new());
        while let Some(f) = from {
            let step = ks.scrub(f, 100, 64, u64::MAX);
            assert!(step.keys <= 64 + 1, "a step stays near its budget");
            keys += step.keys;
            damaged.extend(step.damaged);
            from = step.next;
            steps += 1;
        }
        assert_eq!(keys, 999);
        assert!(steps >= 999 / 64);
        damaged.sort();
        assert_eq!(damaged, vec!["k3", "k500", "k7", "k999"]);
        let bytes = ks.scrub(0, 100, usize::MAX, 20);
        assert!(bytes.keys <= 3 && bytes.bytes >= 20, "{bytes:?}");
        assert_eq!(Keyspace::new().scrub(0, 0, 10, 10), ScrubStep::default());
    }
}
