//! One read of the replication state, for ROLE, INFO replication, `/metrics`, `/ready` and
//! `tandem cluster status`: everything they show comes from here, so they never disagree.

use std::sync::atomic::Ordering;
use std::time::Instant;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use super::lag::Lag;
use super::node::Node;
use super::types::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes writes.
    Primary,
    /// A voting (synchronous) replica.
    Voter,
    /// A non-voting (asynchronous) read replica.
    ReadReplica,
    /// A standalone node that has taken no write yet, or a node waiting to be admitted.
    Unformed,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Voter => "voter",
            Role::ReadReplica => "read-replica",
            Role::Unformed => "unformed",
        }
    }
}

/// A member as the primary sees it (only the primary knows its replicas' progress).
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: NodeId,
    pub voter: bool,
    pub client_addr: String,
    pub cluster_addr: String,
    /// Highest index durable on the member (acknowledged to the primary).
    pub matched_index: Option<u64>,
    /// Primary's last index less the member's matched index.
    pub lag_entries: Option<u64>,
    /// Milliseconds since the member last acknowledged anything.
    pub last_ack_ms: Option<u64>,
}

impl MemberStatus {
    /// Milliseconds the member is behind: 0 when it holds everything, else the time since it last
    /// acknowledged.
    pub fn lag_ms(&self) -> Option<u64> {
        match self.lag_entries {
            Some(0) => Some(0),
            _ => self.last_ack_ms,
        }
    }

    /// Redis's `state=` for INFO replication.
    pub fn state(&self) -> &'static str {
        match (self.matched_index, self.last_ack_ms) {
            (Some(_), Some(ms)) if ms < 5_000 => "online",
            (None, _) => "wait_bgsave",
            _ => "down",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyncStatus {
    pub in_progress: bool,
    pub bytes: u64,
    pub total_bytes: u64,
    pub rate_bytes_per_sec: u64,
    pub completed: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug)]
pub struct ReplicationStatus {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub cluster_addr: String,
    pub role: Role,
    pub term: u64,
    pub primary_id: Option<NodeId>,
    pub primary_client_addr: Option<String>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// This node as a replica: how stale its data may be.
    pub lag: Option<Lag>,
    /// Every member (the primary fills in progress; other nodes only addresses).
    pub members: Vec<MemberStatus>,
    pub sync: SyncStatus,
    pub transport: tandem_transport::TransportStatsSnapshot,
}

impl ReplicationStatus {
    pub fn voters(&self) -> impl Iterator<Item = &MemberStatus> {
        self.members.iter().filter(|m| m.voter)
    }

    /// The replicas (every member but the primary).
    pub fn replicas(&self) -> impl Iterator<Item = &MemberStatus> {
        let primary = self.primary_id;
        self.members.iter().filter(move |m| Some(m.id) != primary)
    }

    /// Staleness bound of this node's data in milliseconds: 0 on the primary.
    pub fn lag_ms(&self) -> Option<u64> {
        match self.role {
            Role::Primary => Some(0),
            _ => self
                .lag
                .and_then(|l| l.staleness)
                .map(|d| d.as_millis() as u64),
        }
    }
}

impl Node {
    /// On the primary: (replicas holding `index` durably, replicas). None on any other node.
    /// Cheap: reads only the replication progress, for WAIT and durability `all`.
    pub fn replicas_holding(&self, index: u64) -> Option<(usize, usize)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader {
            return None;
        }
        let me = self.config.node_id;
        let mut have = 0;
        let mut total = 0;
        for (id, _) in m.membership_config.membership().nodes() {
            if *id == me {
                continue;
            }
            total += 1;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned())
                .flatten();
            if matched.is_some_and(|l| l.index() >= index) {
                have += 1;
            }
        }
        Some((have, total))
    }

    pub fn status(&self) -> ReplicationStatus {
        // Clone out of the watch: never hold its borrow longer than this (DESIGN.md, traps).
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voter_ids: Vec<NodeId> = membership.voter_ids().collect();
        let me = self.config.node_id;
        let role = if m.state == ServerState::Leader {
            Role::Primary
        } else if voter_ids.contains(&me) {
            Role::Voter
        } else if membership.get_node(&me).is_some() {
            Role::ReadReplica
        } else if voter_ids.is_empty() {
            Role::Unformed
        } else {
            Role::ReadReplica
        };
        let last_log_index = m.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, addr)| {
                let matched = if *id == me {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned())
                        .flatten()
                        .map(|l| l.index())
                };
                let last_ack_ms = if *id == me && role == Role::Primary {
                    Some(0)
                } else {
                    m.heartbeat
                        .as_ref()
                        .and_then(|h| h.get(id).cloned())
                        .flatten()
                        .map(|t| openraft::Instant::elapsed(&*t).as_millis() as u64)
                };
                MemberStatus {
                    id: *id,
                    voter: voter_ids.contains(id),
                    client_addr: addr.client_addr.clone(),
                    cluster_addr: addr.cluster_addr.clone(),
                    matched_index: if role == Role::Primary { matched } else { None },
                    lag_entries: if role == Role::Primary {
                        matched.map(|x| last_log_index.saturating_sub(x))
                    } else {
                        None
                    },
                    last_ack_ms: if role == Role::Primary {
                        last_ack_ms
                    } else {
                        None
                    },
                }
            })
            .collect();
        let applied_index = m.last_applied.map(|l| l.index()).unwrap_or(0);
        let lag = match role {
            Role::Primary | Role::Unformed => None,
            _ => Some(self.service.lag.lag(Instant::now(), applied_index)),
        };
        let primary_client_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|a| a.client_addr.clone()));
        let p = &self.service.receiver.progress;
        ReplicationStatus {
            node_id: me,
            cluster_id: self.identity.cluster_id(),
            cluster_addr: self.ctx.addr.cluster_addr.clone(),
            role,
            term: m.current_term,
            primary_id: m.current_leader,
            primary_client_addr,
            last_log_index,
            committed_index: m.cluster_committed.map(|l| l.index()).unwrap_or(0),
            applied_index,
            snapshot_index: m.snapshot.map(|l| l.index()),
            purged_index: m.purged.map(|l| l.index()),
            lag,
            members,
            sync: SyncStatus {
                in_progress: p.in_progress.load(Ordering::Relaxed),
                bytes: p.bytes.load(Ordering::Relaxed),
                total_bytes: p.total_bytes.load(Ordering::Relaxed),
                rate_bytes_per_sec: p.rate_bytes_per_sec(),
                completed: p.completed.load(Ordering::Relaxed),
                rejected: p.rejected.load(Ordering::Relaxed),
            },
            transport: self.ctx.stats.snapshot(),
        }
    }
}
