//! The openraft type configuration.

use std::fmt;

use serde::{Deserialize, Serialize};
use tandem_core::{Batch, Frame};

/// What a log entry carries: one write, or one MULTI/EXEC transaction, as a batch of operations.
///
/// A newtype because openraft wants `Display` on its application data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Proposal(pub Batch);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch(now_ms={}, ops={})",
            self.0.now_ms,
            self.0.ops.len()
        )
    }
}

/// The replies the state machine produced for one proposal, one per operation. Only the node that
/// proposed the entry sends them to a client.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Replies(pub Vec<Frame>);

/// A member's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the cluster (peer) port.
    pub cluster_addr: String,
    /// `host:port` of the client (RESP) port.
    pub client_addr: String,
    /// The member's data-dir incarnation (see `identity.rs`): a peer that answers with another
    /// one had its data dir wiped or replaced and is refused.
    pub incarnation: u64,
}

openraft::declare_raft_types!(
    /// Tandem's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Replies,
        Node = NodeAddr,
);

pub type NodeId = u64;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
