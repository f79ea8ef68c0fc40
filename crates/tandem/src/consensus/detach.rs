//! Detach (`REPLICAOF NO ONE` on a read replica): the replica becomes a standalone database at
//! once, without a restart, keeping every entry it has applied.
//!
//! Steps:
//! 1. ask the cluster to remove this node (bounded; a cluster that cannot be reached does not
//!    stop a detach — that is when one is needed most — and the operator removes the node there
//!    later with `MEMBERSHIP REMOVE`);
//! 2. take a new cluster id (durable): from then on the old cluster's members are refused at
//!    connect; and from the start of the detach until the process restarts it takes no
//!    consensus message at all (connections from the old cluster were admitted under the old
//!    id), so nothing of theirs is applied here again;
//! 3. write a snapshot of the applied state whose membership is this node alone, at a log
//!    position one past everything this node holds, and install it through openraft: the log is
//!    replaced by the snapshot and this node, now the only voter, elects itself.
//!
//! The snapshot's log position is local bookkeeping of the new, one-node cluster: no other node
//! will ever compare logs with it (its cluster id is new). What the detached node may lack is
//! what the old cluster committed after this node's applied position (the log says which
//! position that is).
//!
//! Until the detached node restarts it accepts no consensus message: new replicas can join it
//! (they only receive), but promote one of them to voter only after a restart.
//!
//! A crash in the middle is safe to retry: after step 2 the node hears from no one and answers
//! `REPLICAOF NO ONE` again; after step 3's file is written it starts detached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::vote::RaftLeaderId;
use openraft::{Membership, ServerState};
use tracing::{info, warn};

use super::identity::IdentityFile;
use super::messages::AdminOp;
use super::node::Node;
use super::status::Role;
use super::types::{LogId, SnapshotMeta, StoredMembership};

/// How long detach waits for the cluster to remove this node before going on without it.
const REMOVE_WAIT_MAX: Duration = Duration::from_secs(5);

/// Polls (and their interval) for the log to stop growing once the gate is closed.
const SETTLE_POLLS_MAX: usize = 50;
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// How long detach waits for openraft to report the snapshot installed.
const INSTALL_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long detach waits for this node to lead its new cluster.
const LEAD_WAIT_MAX: Duration = Duration::from_secs(10);

/// What a finished detach reports.
#[derive(Debug)]
pub struct Detached {
    /// The last log index applied before detaching: everything up to it is here.
    pub applied_index: u64,
    pub cluster_id: String,
    /// Whether the old cluster confirmed it removed this node (else remove it there by hand).
    pub removed_from_cluster: bool,
}

impl Node {
    /// REPLICAOF NO ONE. A primary or a standalone node is already detached; a voter must be
    /// demoted first (its vote is part of the old cluster's quorum).
    pub async fn detach(&self) -> Result<Option<Detached>, String> {
        let Ok(_guard) = self.detach_lock.try_lock() else {
            return Err("ERR a detach is already in progress".into());
        };
        let me = self.config.node_id;
        let st = self.status();
        match st.role {
            Role::Primary | Role::Unformed => return Ok(None),
            Role::Voter => {
                return Err(format!(
                    "ERR node {me} is a voter of its cluster: demote it to a read replica first (MEMBERSHIP DEMOTE \
                     {me}), or use FAILOVER to make it the primary"
                ))
            }
            Role::ReadReplica => {}
        }
        if !self
            .raft
            .is_initialized()
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(None);
        }
        // From here on this process takes no consensus message from anyone: the old cluster's
        // connections were admitted under the old cluster id, and an append from its primary
        // would otherwise land on top of the detached state (or make that primary step down).
        // A restart lifts the gate; the old members are then refused at connect.
        self.detached_gate.store(true, Ordering::Relaxed);

        // 1. Leave the old cluster's membership.
        let removed =
            match tokio::time::timeout(REMOVE_WAIT_MAX, self.admin(AdminOp::Remove(me))).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => {
                    warn!("detach: the cluster did not remove node {me}: {e}; detaching anyway");
                    false
                }
                Err(_) => {
                    warn!(
                    "detach: the cluster did not remove node {me} within {} s; detaching anyway",
                    REMOVE_WAIT_MAX.as_secs()
                );
                    false
                }
            };

        // 2. A cluster of its own: the old members are refused from now on.
        let cluster_id = IdentityFile::new_cluster_id();
        let identity = self.identity.clone();
        let id = cluster_id.clone();
        tokio::task::spawn_blocking(move || identity.replace_cluster_id(&id))
            .await
            .map_err(|e| format!("ERR cannot record the new cluster id: {e}"))?
            .map_err(|e| format!("ERR cannot record the new cluster id: {e}"))?;
        self.service.may_adopt.store(false, Ordering::Relaxed);

        // 3. The applied state as a snapshot of a one-node membership, installed through openraft,
        // at an index above every entry this node holds (appends handed to openraft before the
        // gate closed are waited for).
        let mut last_index = u64::MAX;
        for _ in 0..SETTLE_POLLS_MAX {
            tokio::time::sleep(SETTLE_POLL).await;
            let now = self
                .raft
                .metrics()
                .borrow_watched()
                .last_log_index
                .unwrap_or(0);
            if now == last_index {
                break;
            }
            last_index = now;
        }
        let vote = self.raft.metrics().borrow_watched().vote;
        if !vote.is_committed() {
            return Err(
                "ERR this node is between leaders of its old cluster; try REPLICAOF NO ONE again"
                    .into(),
            );
        }
        let leader = vote.leader_id().to_committed();
        let addr = self.ctx.addr.clone();
        let sm = self.sm.clone();
        let (snapshot, applied_index) = tokio::task::spawn_blocking(move || {
            let mut applied = 0;
            let snapshot = sm.write_snapshot_as(|st| {
                applied = st.last_applied.map(|l| l.index()).unwrap_or(0);
                let log_id = LogId::new(leader, applied.max(last_index) + 1);
                // One voter that is its own node: valid by construction.
                let membership =
                    Membership::new(vec![BTreeSet::from([me])], BTreeMap::from([(me, addr)]))
                        .unwrap_or_default();
                SnapshotMeta {
                    last_log_id: Some(log_id),
                    last_membership: StoredMembership::new(Some(log_id), membership),
                }
            });
            snapshot.map(|s| (s, applied))
        })
        .await
        .map_err(|e| format!("ERR detach snapshot: {e}"))?
        .map_err(|e| format!("ERR detach snapshot: {e}"))?;
        let wanted = snapshot.meta.last_log_id;
        self.raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| format!("ERR detach: installing the snapshot failed: {e}"))?;
        // The metrics show it a moment after the call returns.
        let _ = self
            .raft
            .wait(Some(INSTALL_WAIT_MAX))
            .metrics(|m| m.snapshot == wanted, "the detach snapshot is installed")
            .await;
        let installed = self.raft.metrics().borrow_watched().snapshot;
        if installed != wanted {
            return Err(format!(
                "ERR detach: openraft did not install the detach snapshot ({wanted:?}; it holds {installed:?})"
            ));
        }
        // The only voter now: elect at once rather than after the old primary's lease runs out.
        let _ = self.raft.trigger().elect(false).await;
        info!(
            "detached: node {me} is a standalone database in cluster {cluster_id}, with every entry up to index \
             {applied_index} of its old cluster"
        );

        // This node is now the only voter: it elects itself after its election timeout.
        let _ = self
            .raft
            .wait(Some(LEAD_WAIT_MAX))
            .metrics(|m| m.state == ServerState::Leader, "leads its own cluster")
            .await;
        if !self.is_primary() {
            return Err(format!(
                "ERR detached (cluster {cluster_id}), but this node did not elect itself within {} s; see its log",
                LEAD_WAIT_MAX.as_secs()
            ));
        }
        Ok(Some(Detached {
            applied_index,
            cluster_id,
            removed_from_cluster: removed,
        }))
    }
}
