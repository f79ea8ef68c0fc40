//! Planned switchover (FAILOVER): leadership moves from this primary to a caught-up voter.
//!
//! openraft's `transfer_leader` is fire-and-forget (DESIGN.md, traps): a lagging or dead target
//! never takes over, and the old primary stops proposing and heartbeating until some election
//! ends the transfer. So the switchover here
//! 1. checks (or chooses) a target: a voter that acknowledged recently and is the closest to
//!    this node's last entry;
//! 2. waits, bounded, until the target is within [`CAUGHT_UP_ENTRIES`] of the last entry
//!    (`waiting-for-sync`); writes keep flowing meanwhile;
//! 3. triggers the transfer (`failover-in-progress`): this node stops proposing and heartbeating;
//!    the target takes over at once if its log holds everything this node has, and ignores the
//!    transfer otherwise — so it is sent again every [`TRANSFER_RESEND_INTERVAL`] while the
//!    target catches up;
//! 4. waits, bounded, for the role change.
//!
//! No acknowledged write can be lost: the target is elected only with every entry of the old
//! primary's log (Raft's vote rule), so a target that does not catch up simply never takes over;
//! the cluster then elects a primary on its own after the election timeout.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tokio::time::Instant;
use tracing::{info, warn};

use super::node::Node;
use super::types::NodeId;

/// A target this close (in entries) to the primary's last entry may be handed leadership: the
/// transfer itself waits for the rest.
pub const CAUGHT_UP_ENTRIES: u64 = 1000;

/// A voter that has not acknowledged anything for this long is not chosen as the target.
const TARGET_SILENT_MAX: Duration = Duration::from_millis(1000);

/// How often the transfer is sent again until the target has taken over.
const TRANSFER_RESEND_INTERVAL: Duration = Duration::from_millis(50);

/// How often progress is checked while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Redis's `master_failover_state` values (INFO replication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FailoverState {
    NoFailover = 0,
    WaitingForSync = 1,
    InProgress = 2,
}

impl FailoverState {
    pub fn name(self) -> &'static str {
        match self {
            FailoverState::NoFailover => "no-failover",
            FailoverState::WaitingForSync => "waiting-for-sync",
            FailoverState::InProgress => "failover-in-progress",
        }
    }
}

/// The switchover in progress on this node, if any (one at a time).
#[derive(Default)]
pub struct SwitchoverState {
    state: AtomicU8,
    /// Set by FAILOVER ABORT; honoured while waiting for the target to catch up.
    abort: tokio::sync::Notify,
    lock: tokio::sync::Mutex<()>,
}

impl SwitchoverState {
    pub fn state(&self) -> FailoverState {
        match self.state.load(Ordering::Relaxed) {
            1 => FailoverState::WaitingForSync,
            2 => FailoverState::InProgress,
            _ => FailoverState::NoFailover,
        }
    }

    fn set(&self, s: FailoverState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Moves from `from` to `to` only if nothing else moved it first (an ABORT racing the
    /// transfer: exactly one of them wins).
    fn advance(&self, from: FailoverState, to: FailoverState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What FAILOVER asked for.
#[derive(Clone, Debug)]
pub struct SwitchoverRequest {
    /// A voter chosen by the operator; None = the most caught-up voter.
    pub target: Option<NodeId>,
    /// Deadline of the whole switchover.
    pub timeout: Duration,
    /// Transfer even if the target has not caught up by the deadline (it still takes over only
    /// with every entry).
    pub force: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SwitchoverError {
    #[error("ERR FAILOVER is not valid when server is a replica.")]
    NotPrimary,
    #[error("ERR FAILOVER already in progress.")]
    InProgress,
    #[error("ERR FAILOVER requires connected replicas.")]
    NoVoter,
    #[error("ERR FAILOVER target HOST and PORT is not a replica.")]
    UnknownTarget,
    #[error("ERR FAILOVER target node {0} is a read replica: promote it to a voter first (MEMBERSHIP PROMOTE {0})")]
    TargetNotVoter(NodeId),
    #[error("ERR FAILOVER target node {0} has not caught up within the timeout; this node is still the primary")]
    NotCaughtUp(NodeId),
    #[error("ERR FAILOVER to node {0} did not finish within the timeout; the cluster elects a primary on its own")]
    NotTakenOver(NodeId),
    #[error("ERR FAILOVER aborted")]
    Aborted,
    #[error("ERR FAILOVER failed: {0}")]
    Fatal(String),
}

/// One voter's replication progress, seen from the primary.
struct Candidate {
    id: NodeId,
    matched: u64,
    silent: Option<Duration>,
}

impl Node {
    /// Moves leadership to a caught-up voter and waits until it has taken over. Returns the new
    /// primary's id.
    pub async fn switchover(&self, req: SwitchoverRequest) -> Result<NodeId, SwitchoverError> {
        let sw = &self.switchover;
        let Ok(_guard) = sw.lock.try_lock() else {
            return Err(SwitchoverError::InProgress);
        };
        if !self.is_primary() {
            return Err(SwitchoverError::NotPrimary);
        }
        let deadline = Instant::now() + req.timeout;
        let result = self.run_switchover(&req, deadline).await;
        sw.set(FailoverState::NoFailover);
        match &result {
            Ok(id) => info!("FAILOVER: node {id} is the primary now"),
            Err(e) => warn!("FAILOVER: {e}"),
        }
        result
    }

    /// FAILOVER ABORT: ends a switchover still waiting for its target. Once leadership is being
    /// handed over it cannot be taken back.
    pub fn abort_switchover(&self) -> Result<(), &'static str> {
        match self.switchover.state() {
            FailoverState::NoFailover => Err("ERR No failover in progress."),
            FailoverState::InProgress => Err(
                "ERR FAILOVER can no longer be aborted: leadership is already being handed over",
            ),
            FailoverState::WaitingForSync => {
                if !self
                    .switchover
                    .advance(FailoverState::WaitingForSync, FailoverState::NoFailover)
                {
                    return Err(
                        "ERR FAILOVER can no longer be aborted: leadership is already being handed over",
                    );
                }
                // A permit, not a broadcast: the waiting switchover cannot miss it.
                self.switchover.abort.notify_one();
                Ok(())
            }
        }
    }

    async fn run_switchover(
        &self,
        req: &SwitchoverRequest,
        deadline: Instant,
    ) -> Result<NodeId, SwitchoverError> {
        let sw = &self.switchover;
        let target = self.choose_target(req.target)?;
        let abort = sw.abort.notified();
        tokio::pin!(abort);
        sw.set(FailoverState::WaitingForSync);
        info!("FAILOVER: handing leadership to node {target}");
        loop {
            if sw.state() != FailoverState::WaitingForSync {
                return Err(SwitchoverError::Aborted);
            }
            let (last, c) = self.progress_of(target);
            let caught_up = c.as_ref().is_some_and(|c| {
                last.saturating_sub(c.matched) <= CAUGHT_UP_ENTRIES
                    && c.silent.is_some_and(|s| s <= TARGET_SILENT_MAX)
            });
            if caught_up {
                break;
            }
            if !self.is_primary() {
                return Err(SwitchoverError::NotPrimary);
            }
            if Instant::now() >= deadline {
                if req.force {
                    break;
                }
                return Err(SwitchoverError::NotCaughtUp(target));
            }
            tokio::select! {
                _ = &mut abort => {
                    if sw.state() != FailoverState::WaitingForSync {
                        return Err(SwitchoverError::Aborted);
                    }
                    // A permit left over from an earlier ABORT: not ours.
                    abort.set(sw.abort.notified());
                }
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        if !sw.advance(FailoverState::WaitingForSync, FailoverState::InProgress) {
            return Err(SwitchoverError::Aborted);
        }
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| SwitchoverError::Fatal(e.to_string()))?;
        let mut resent = Instant::now();
        // The target needs at most its log flush plus one election round; give it until the
        // deadline, but at least two election timeouts after a forced transfer.
        let floor = Instant::now() + Duration::from_millis(2 * self.config.election_timeout_max_ms);
        let wait_until = deadline.max(floor);
        loop {
            let (state, leader) = {
                let m = self.raft.metrics();
                let m = m.borrow_watched();
                (m.state, m.current_leader)
            };
            if state != ServerState::Leader && leader == Some(target) {
                return Ok(target);
            }
            if state != ServerState::Leader && leader.is_some() {
                // Someone else won an election meanwhile: the switchover is over, not as asked.
                return Err(SwitchoverError::NotTakenOver(target));
            }
            if Instant::now() >= wait_until {
                return Err(SwitchoverError::NotTakenOver(target));
            }
            // The target ignores a transfer that arrives before its log holds everything this
            // node has, and nothing re-sends it: this node no longer proposes, so the target
            // catches up, and one of the re-sent transfers finds it ready.
            if resent.elapsed() >= TRANSFER_RESEND_INTERVAL && state == ServerState::Leader {
                resent = Instant::now();
                self.raft
                    .trigger()
                    .transfer_leader(target)
                    .await
                    .map_err(|e| SwitchoverError::Fatal(e.to_string()))?;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The operator's target if it is a voter, else the voter closest to the last entry among
    /// those heard from recently.
    fn choose_target(&self, wanted: Option<NodeId>) -> Result<NodeId, SwitchoverError> {
        let me = self.config.node_id;
        let (voters, members) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let membership = m.membership_config.membership();
            let voters: Vec<NodeId> = membership.voter_ids().filter(|id| *id != me).collect();
            let members: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
            (voters, members)
        };
        if let Some(id) = wanted {
            if id == me || !members.contains(&id) {
                return Err(SwitchoverError::UnknownTarget);
            }
            if !voters.contains(&id) {
                return Err(SwitchoverError::TargetNotVoter(id));
            }
            return Ok(id);
        }
        voters
            .iter()
            .filter_map(|id| self.progress_of(*id).1)
            .filter(|c| c.silent.is_some_and(|s| s <= TARGET_SILENT_MAX))
            .max_by_key(|c| (c.matched, std::cmp::Reverse(c.id)))
            .map(|c| c.id)
            .ok_or(SwitchoverError::NoVoter)
    }

    /// This node's last log index and what it knows of `id`'s replication.
    fn progress_of(&self, id: NodeId) -> (u64, Option<Candidate>) {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned())
            .map(|l| l.map(|l| l.index()).unwrap_or(0));
        let silent = m
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(&id).cloned())
            .flatten()
            .map(|t| openraft::Instant::elapsed(&*t));
        (
            last,
            matched.map(|matched| Candidate {
                id,
                matched,
                silent,
            }),
        )
    }

    /// The member whose client address is `host:port` (FAILOVER TO host port).
    pub fn member_by_client_addr(&self, host: &str, port: u16) -> Option<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let wanted = format!("{host}:{port}");
        let localhost_alias = |a: &str| a.replace("localhost:", "127.0.0.1:");
        let found = m
            .membership_config
            .membership()
            .nodes()
            .find(|(_, addr)| localhost_alias(&addr.client_addr) == localhost_alias(&wanted))
            .map(|(id, _)| *id);
        found
    }
}
