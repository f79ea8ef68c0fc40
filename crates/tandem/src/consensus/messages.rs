//! What nodes say to each other over the transport (`tandem-transport`): the bodies of its RPCs,
//! serialized with postcard. The transport frames them (length, CRC32C) and authenticates peers;
//! this file is the vocabulary.
//!
//! Every message is versioned by the handshake's [`Hello::version`]: a peer speaking another
//! version is refused at connect rather than misread.

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::types::{NodeAddr, NodeId, SnapshotMeta, TypeConfig, Vote};

/// Version of this vocabulary; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// What each side of a connection says about itself after authentication.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub version: u32,
    /// Empty for a node that belongs to no cluster yet.
    pub cluster_id: String,
    pub node_id: NodeId,
    pub incarnation: u64,
    pub addr: NodeAddr,
    /// Client side only: the member the caller believes it is talking to, with the incarnation
    /// the membership records for it (0: unknown). The server refuses the connection if that is
    /// not itself.
    pub expect: Option<(NodeId, u64)>,
}

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// `quorum_age_ms`: how long before sending the primary last heard from a quorum of voters
    /// (None: never in this term). Replicas use it to bound staleness (`lag.rs`).
    Append {
        rpc: AppendEntriesRequest<TypeConfig>,
        quorum_age_ms: Option<u64>,
    },
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Start (or resume) sending a snapshot: the receiver answers with the offset to go on from.
    SnapshotOffer(SnapshotOffer),
    /// Bytes of the snapshot file at `offset`.
    SnapshotChunk {
        transfer: String,
        offset: u64,
        data: Bytes,
    },
    /// The whole file was sent: verify it and install it.
    SnapshotDone {
        vote: Vote,
        meta: SnapshotMeta,
        transfer: String,
    },
    /// Who is the primary and what is committed (read-your-writes, status).
    Position,
    /// Admit the sender as a read replica (sent to any member; forwarded to the primary).
    Join {
        node_id: NodeId,
        addr: NodeAddr,
    },
    /// A membership change, forwarded to the primary.
    Admin(AdminOp),
    /// This node's copy of `key` is damaged: send yours, once you have applied at least
    /// `min_applied_index` (`repair.rs`).
    FetchValue {
        key: Bytes,
        min_applied_index: u64,
    },
    /// Divergence detection: the primary asks about this node's record of a mark (`verify.rs`).
    Verify(super::verify::VerifyRequest),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotOffer {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// Identifies this transfer (the snapshot id): a receiver resumes only the same transfer.
    pub transfer: String,
    pub size_bytes: u64,
}

/// Membership changes; all of them go through the primary's one admin path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum AdminOp {
    /// Make a read replica a voter.
    Promote(NodeId),
    /// Make a voter a read replica.
    Demote(NodeId),
    /// Remove a member (voter or read replica) from the cluster.
    Remove(NodeId),
    /// Member `id` lost its log and snapshots and starts again empty under its identity
    /// (`rebuild.rs`): demote it if it votes, then let replication start over for it.
    Rebuild { id: NodeId, incarnation: u64 },
}

/// The answer to a [`Request`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    SnapshotResume {
        offset: u64,
    },
    /// The offer's vote is older than the receiver's: the sender is no longer the leader.
    SnapshotStale(SnapshotResponse<TypeConfig>),
    SnapshotInstalled(SnapshotResponse<TypeConfig>),
    Position {
        leader: Option<NodeId>,
        leader_addr: Option<NodeAddr>,
        committed_index: u64,
        applied_index: u64,
    },
    /// Done; for Join and Admin, a message for the operator.
    Ok(String),
    /// The receiver is not the primary; here is the primary, if known.
    NotPrimary(Option<(NodeId, NodeAddr)>),
    /// The primary accepted a rebuild; the node was a voter before it (and may be promoted back
    /// once caught up).
    Rebuilt {
        was_voter: bool,
    },
    /// The answer to `FetchValue`: the copy as of `applied_index`, the answering node's applied
    /// position when it read it.
    Value {
        copy: ValueCopy,
        applied_index: u64,
    },
    Verify(super::verify::VerifyReply),
}

/// A member's copy of one key, for a node repairing its own (`repair.rs`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ValueCopy {
    /// The key is not stored there.
    Absent,
    /// Stored, and the value verifies against its checksum (the receiver verifies it again).
    Intact {
        value: Bytes,
        checksum: tandem_checksum::Checksum,
        /// Absolute deadline in ms, or `tandem_core::keyspace::NO_EXPIRY`.
        expire_at_ms: i64,
    },
    /// Stored, but damaged there too: never sent.
    Damaged,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, String> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|e| format!("cannot encode a peer message: {e}"))
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable peer message: {e}"))
}
