//! Repair: a node that finds its copy of a key damaged (on a read, by the scrubber, at apply, in a
//! snapshot loaded at start-up) fetches the key from the other members, the primary first, and
//! replaces its own copy with one that verifies. DESIGN.md §2.5: no byte that fails its checksum is
//! ever returned, and a damaged copy is never handed to another node.
//!
//! The exchange: `Request::FetchValue { key, min_applied_index }` → `Response::Value { copy,
//! applied_index }`. The member answering first waits (up to half the caller's deadline) until it
//! has applied at least the caller's position, then reads its copy under its state lock: the copy
//! is that member's state of the key at `applied_index`. A damaged copy is answered as damaged,
//! never sent (and the answering member queues the key for its own scrubber).
//!
//! What the caller accepts, in order of preference:
//! 1. A copy whose checksum is the one stored here, from a member at least as far as this node:
//!    the bytes were damaged, the checksum was not. The checksum names the value, so such a copy
//!    restores exactly the bytes the log wrote; the key keeps its own deadline
//!    (`Keyspace::repair_value`). This is the common case.
//! 2. A copy from a member at exactly this node's applied position (checked again under the
//!    write lock), for a key whose stored checksum cannot be trusted: a diverged key (a write
//!    met its damaged bytes) or one whose digest bytes were damaged. The whole key is replaced
//!    (`Keyspace::restore_damaged`). A copy from a later position would be wrong here: the
//!    entries in between would be applied on top of it again. When members are ahead, the node
//!    waits briefly for its own applies and asks again, [`REPAIR_ROUNDS_MAX`] rounds at most.
//!
//! Every copy is verified against its checksum before it is accepted. A key no member could
//! repair is quarantined (`damage.rs`): reads answer `-CORRUPT`, the scrubber retries it. One
//! repair per key runs at a time (others wait for its outcome), at most
//! [`REPAIRS_IN_FLIGHT_MAX`] keys at once; each runs in its own task, so a client that goes away
//! mid-repair does not abandon it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::AppendEntriesRequest;
use openraft::EntryPayload;
use tandem_core::keyspace::{escape_key, KeyCopy};
use tandem_core::{KeyState, RepairOutcome};
use tandem_transport::CallOptions;
use tracing::{info, warn};

use super::damage::Source;
use super::messages::{Request, Response, ValueCopy};
use super::network::call;
use super::node::Node;
use super::state_machine::SmState;
use super::types::{NodeAddr, NodeId, TypeConfig};

/// Members asked for a copy in one round, at most (the primary first, then voters, then read
/// replicas).
pub const REPAIR_PEERS_MAX: usize = 8;

/// Rounds of asking, at most, when members are ahead of this node (see the module doc, case 2).
pub const REPAIR_ROUNDS_MAX: usize = 3;

/// Pause between rounds, for this node's applies to catch up.
const REPAIR_ROUND_PAUSE: Duration = Duration::from_millis(50);

/// Keys being repaired at once, at most; a key past it is left to the scrubber.
pub const REPAIRS_IN_FLIGHT_MAX: usize = 64;

/// Keys one client request repairs, at most (an MGET of many damaged keys); the others stay
/// refused and are queued for the scrubber.
pub const REPAIR_KEYS_PER_REQUEST_MAX: usize = 16;

/// How often a member answering a fetch looks at its applied position while it waits.
const APPLIED_POLL: Duration = Duration::from_millis(5);

/// The outcome of one repair of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The local copy verifies (repaired meanwhile, or rewritten), or the key is gone.
    NotNeeded,
    /// Replaced with the copy of member `from`.
    Repaired { from: NodeId },
    /// No member offered a usable copy: the key is quarantined.
    Unrepairable(Tally),
    /// Not tried now (too many repairs at once, or quarantined and tried moments ago).
    Deferred,
}

/// What the members said when asked for a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub asked: u32,
    /// Their copy is damaged too.
    pub damaged: u32,
    /// They do not hold the key.
    pub absent: u32,
    /// No answer within the deadline: says nothing about their copy.
    pub unreachable: u32,
    /// Still behind this node's applied position when their deadline came.
    pub behind: u32,
    /// Ahead of this node with another value, for a key that needs a copy at this position.
    pub ahead: u32,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.asked == 0 {
            return write!(f, "no other member to ask");
        }
        write!(
            f,
            "asked {} member(s): {} damaged, {} without the key, {} unreachable, {} behind, {} ahead",
            self.asked, self.damaged, self.absent, self.unreachable, self.behind, self.ahead
        )
    }
}

/// A repair under way, shared by every task waiting for that key.
pub type InFlight = Shared<BoxFuture<'static, Outcome>>;

impl From<KeyCopy> for ValueCopy {
    fn from(copy: KeyCopy) -> ValueCopy {
        match copy {
            KeyCopy::Absent => ValueCopy::Absent,
            KeyCopy::Damaged => ValueCopy::Damaged,
            KeyCopy::Intact(s) => ValueCopy::Intact {
                value: s.value,
                checksum: s.checksum,
                expire_at_ms: s.expire_at_ms,
            },
        }
    }
}

/// An answer that the caller can use, from one member.
enum Offer {
    Copy(KeyState),
    Absent,
}

impl Node {
    /// Repairs the keys among `keys` whose local copy is damaged (at most
    /// [`REPAIR_KEYS_PER_REQUEST_MAX`]), counting each as detected by `source`. Returns whether
    /// every damaged key is now intact or gone: the caller may read again.
    pub async fn repair_damaged(self: &Arc<Self>, keys: &[&Bytes], source: Source) -> bool {
        let damaged: Vec<Bytes> = {
            let st = self.state().read();
            keys.iter()
                .filter(|k| st.keyspace.is_damaged(k))
                .map(|k| (*k).clone())
                .collect()
        };
        if damaged.is_empty() {
            return true;
        }
        self.damage.detected(source, damaged.len() as u64);
        let mut all = true;
        let mut now = Vec::new();
        for (i, key) in damaged.into_iter().enumerate() {
            if i >= REPAIR_KEYS_PER_REQUEST_MAX {
                self.damage.suspect(key, Some(source));
                all = false;
            } else {
                now.push(self.repair_key(key, source));
            }
        }
        // Side by side: a request waits for its slowest key, not for the sum of them.
        for outcome in futures::future::join_all(now).await {
            match outcome {
                Outcome::NotNeeded | Outcome::Repaired { .. } => {}
                Outcome::Unrepairable(_) | Outcome::Deferred => all = false,
            }
        }
        all
    }

    /// Repairs one key whose damage `source` found (and counted): one repair per key at a
    /// time, accounted and quarantined here. See the module doc.
    pub async fn repair_key(self: &Arc<Self>, key: Bytes, source: Source) -> Outcome {
        if self.damage.recently_quarantined(&key) || self.damage.repair_off.load(Ordering::Relaxed)
        {
            return Outcome::Deferred;
        }
        let shared = {
            let mut in_flight = self.damage.in_flight.lock();
            match in_flight.get(&key) {
                Some(running) => running.clone(),
                None if in_flight.len() >= REPAIRS_IN_FLIGHT_MAX => {
                    drop(in_flight);
                    self.damage.suspect(key, Some(source));
                    return Outcome::Deferred;
                }
                None => {
                    // Spawned while the map is locked, so it cannot finish (and remove itself)
                    // before it is in the map.
                    let node = self.clone();
                    let k = key.clone();
                    let task = tokio::spawn(async move {
                        // Leaves the map however the task ends (a panic too), or the key would
                        // be deferred forever.
                        struct Leave(Arc<Node>, Bytes);
                        impl Drop for Leave {
                            fn drop(&mut self) {
                                self.0.damage.in_flight.lock().remove(&self.1);
                            }
                        }
                        let _leave = Leave(node.clone(), k.clone());
                        let outcome = node.clone().repair_exchange(k.clone()).await;
                        node.repair_account(&k, source, &outcome);
                        outcome
                    });
                    let shared = task
                        .map(|r| r.unwrap_or(Outcome::Deferred))
                        .boxed()
                        .shared();
                    in_flight.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await
    }

    fn repair_account(&self, key: &Bytes, source: Source, outcome: &Outcome) {
        match outcome {
            Outcome::Repaired { from } => {
                self.damage.repaired(source);
                self.damage.release(key);
                info!(key = %escape_key(key), source = source.name(), from, "repaired a damaged copy");
            }
            Outcome::NotNeeded => self.damage.release(key),
            Outcome::Unrepairable(tally) => {
                if self.damage.quarantine(key, source, tally.to_string()) {
                    self.damage.unrepairable(source);
                }
            }
            Outcome::Deferred => {}
        }
    }

    /// The exchange with the members (module doc), without accounting.
    async fn repair_exchange(self: Arc<Self>, key: Bytes) -> Outcome {
        let mut tally = Tally::default();
        for round in 0..REPAIR_ROUNDS_MAX {
            if round > 0 {
                tokio::time::sleep(REPAIR_ROUND_PAUSE).await;
            }
            let (stored, applied) = {
                let st = self.state().read();
                if !st.keyspace.is_damaged(&key) {
                    return Outcome::NotNeeded;
                }
                (st.keyspace.stored_checksum(&key), applied_of(&st))
            };
            tally = Tally::default();
            for (id, addr) in self.repair_peers() {
                tally.asked += 1;
                let Some((offer, at)) = self
                    .repair_fetch(id, &addr, &key, applied, &mut tally)
                    .await
                else {
                    continue;
                };
                let same_value =
                    matches!(&offer, Offer::Copy(s) if Some(&s.checksum) == stored.as_ref());
                if same_value {
                    let Offer::Copy(s) = &offer else { continue };
                    let outcome = self.repair_write_lock().await.keyspace.repair_value(
                        &key,
                        &s.value,
                        &s.checksum,
                    );
                    match outcome {
                        RepairOutcome::Repaired => return Outcome::Repaired { from: id },
                        RepairOutcome::NotCorrupt | RepairOutcome::NoSuchKey => {
                            return Outcome::NotNeeded
                        }
                        // Rewritten meanwhile, or diverged: only a copy at this exact position
                        // will do, below.
                        RepairOutcome::DifferentValue
                        | RepairOutcome::Diverged
                        | RepairOutcome::CopyAlsoCorrupt => {}
                    }
                }
                let mut st = self.repair_write_lock().await;
                if at != applied_of(&st) {
                    tally.ahead += 1;
                    continue;
                }
                let state = match &offer {
                    Offer::Copy(s) => Some(s),
                    Offer::Absent => None,
                };
                if st.keyspace.restore_damaged(&key, state) {
                    return Outcome::Repaired { from: id };
                }
                if !st.keyspace.is_damaged(&key) {
                    return Outcome::NotNeeded;
                }
            }
            if tally.ahead == 0 {
                break;
            }
        }
        warn!(key = %escape_key(&key), "no member offered a usable copy: {tally}");
        Outcome::Unrepairable(tally)
    }

    /// Asks member `id` for its copy of `key` at `applied` or later. None (counted in `tally`)
    /// when its answer is of no use.
    async fn repair_fetch(
        &self,
        id: NodeId,
        addr: &NodeAddr,
        key: &Bytes,
        applied: u64,
        tally: &mut Tally,
    ) -> Option<(Offer, u64)> {
        let request = Request::FetchValue {
            key: key.clone(),
            min_applied_index: applied,
        };
        let peer = self.ctx.member(id, addr);
        let answer = call(
            &peer,
            &request,
            self.damage.config.peer_timeout,
            CallOptions::default(),
        )
        .await;
        let (copy, at) = match answer {
            Ok(Response::Value {
                copy,
                applied_index,
            }) => (copy, applied_index),
            Ok(other) => {
                warn!("member {id} answered a value fetch with {other:?}");
                tally.unreachable += 1;
                return None;
            }
            Err(e) => {
                warn!(key = %escape_key(key), "member {id} did not answer a value fetch: {e}");
                tally.unreachable += 1;
                return None;
            }
        };
        if at < applied {
            tally.behind += 1;
            return None;
        }
        match copy {
            ValueCopy::Damaged => {
                tally.damaged += 1;
                None
            }
            ValueCopy::Absent => {
                tally.absent += 1;
                Some((Offer::Absent, at))
            }
            ValueCopy::Intact {
                value,
                checksum,
                expire_at_ms,
            } => {
                // Never trust a copy for being sent: verify it here.
                if !checksum.verify(&value) {
                    warn!(key = %escape_key(key), "member {id} sent a copy that fails its checksum");
                    tally.damaged += 1;
                    return None;
                }
                Some((
                    Offer::Copy(KeyState {
                        value,
                        checksum,
                        expire_at_ms,
                    }),
                    at,
                ))
            }
        }
    }

    /// The members to ask, in order: the primary, the other voters, the read replicas; never
    /// this node; at most [`REPAIR_PEERS_MAX`].
    fn repair_peers(&self) -> Vec<(NodeId, NodeAddr)> {
        let me = self.config.node_id;
        // Clone out of the watch at once (DESIGN.md, traps).
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        order_peers(me, m.current_leader, &voters, members)
    }

    /// The state's write lock, polled rather than blocked on: a snapshot being serialized holds
    /// the read lock for up to seconds, and a blocked runtime thread would stall every client.
    async fn repair_write_lock(&self) -> parking_lot::RwLockWriteGuard<'_, SmState> {
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(guard) = self.state().try_write() {
                return guard;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// The answering side of a fetch (see the module doc): waits, up to half the caller's
    /// deadline, to have applied `min_applied_index`, then answers with its copy and position.
    pub async fn answer_fetch(&self, key: Bytes, min_applied_index: u64) -> Response {
        let deadline = Instant::now() + self.damage.config.peer_timeout / 2;
        while self.applied_index() < min_applied_index && Instant::now() < deadline {
            tokio::time::sleep(APPLIED_POLL).await;
        }
        let (copy, applied_index) = {
            let st = self.state().read();
            (st.keyspace.copy_of(&key), applied_of(&st))
        };
        if copy == KeyCopy::Damaged {
            warn!(key = %escape_key(&key), "a member asked for a key whose copy here is damaged too");
            self.damage.suspect(key, None);
        }
        Response::Value {
            copy: copy.into(),
            applied_index,
        }
    }
}

/// `members` without `me`, the primary first, then the voters, then the rest (each by id), at
/// most [`REPAIR_PEERS_MAX`].
fn order_peers<A>(
    me: NodeId,
    primary: Option<NodeId>,
    voters: &[NodeId],
    mut members: Vec<(NodeId, A)>,
) -> Vec<(NodeId, A)> {
    members.retain(|(id, _)| *id != me);
    members.sort_by_key(|(id, _)| (Some(*id) != primary, !voters.contains(id), *id));
    members.truncate(REPAIR_PEERS_MAX);
    members
}

fn applied_of(st: &SmState) -> u64 {
    st.last_applied.map(|l| l.index()).unwrap_or(0)
}

/// The first entry of a received append carrying a value that fails its checksum: (its index,
/// the key). Such an append is refused whole, before openraft sees it, and the primary sends it
/// again (DESIGN.md §2.5: corruption never spreads).
pub fn first_corrupt_entry(rpc: &AppendEntriesRequest<TypeConfig>) -> Option<(u64, &Bytes)> {
    rpc.entries.iter().find_map(|e| match &e.payload {
        EntryPayload::Normal(p) => p.0.first_corrupt_value().map(|k| (e.log_id.index(), k)),
        _ => None,
    })
}

/// Fault injection (`DEBUG CORRUPT-APPEND`): damages one value of the first entry of `rpc` that
/// carries one, its checksum left as it was. False if none does.
pub fn corrupt_a_value(rpc: &mut AppendEntriesRequest<TypeConfig>) -> bool {
    rpc.entries.iter_mut().any(|e| match &mut e.payload {
        EntryPayload::Normal(p) => p.0.debug_corrupt_a_value(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_is_asked_first_then_voters_then_read_replicas_never_self() {
        let members: Vec<(NodeId, ())> = [5, 1, 4, 2, 3].iter().map(|id| (*id, ())).collect();
        let ids = |v: Vec<(NodeId, ())>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids(order_peers(2, Some(3), &[1, 2, 3], members.clone())),
            vec![3, 1, 4, 5]
        );
        assert_eq!(
            ids(order_peers(3, Some(3), &[1, 2, 3], members.clone())),
            vec![1, 2, 4, 5],
            "on the primary: the voters first"
        );
        assert_eq!(ids(order_peers(1, None, &[1], members)), vec![2, 3, 4, 5]);
        let many: Vec<(NodeId, ())> = (1..=20).map(|id| (id, ())).collect();
        let asked = order_peers(7, Some(20), &[7, 20], many);
        assert_eq!(asked.len(), REPAIR_PEERS_MAX);
        assert_eq!(asked[0].0, 20);
    }

    #[test]
    fn a_tally_says_why_no_copy_was_usable() {
        assert_eq!(Tally::default().to_string(), "no other member to ask");
        let t = Tally {
            asked: 3,
            damaged: 1,
            unreachable: 2,
            ..Tally::default()
        };
        assert_eq!(
            t.to_string(),
            "asked 3 member(s): 1 damaged, 0 without the key, 2 unreachable, 0 behind, 0 ahead"
        );
    }
}
