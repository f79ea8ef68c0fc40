//! Consensus: the only module that imports openraft.
//!
//! - [`types`]: the openraft type configuration and the payload/response wrappers.
//! - [`log_store`]: openraft's `RaftLogStorage` over our own segmented log (`tandem-log`).
//! - [`state_machine`]: openraft's `RaftStateMachine` over the keyspace, with snapshots on disk.
//! - [`network`]: openraft's network factory over the transport, and the context both
//!   directions share; [`messages`]: what nodes say to each other; [`service`]: the receiving
//!   side; [`snapshot_transfer`]: snapshots streamed to replicas.
//! - [`repair`]: a damaged copy is replaced with a good one fetched from another member;
//!   [`damage`]: what was found, repaired and quarantined, per source.
//! - [`verify`]: divergence detection: keyspace digests compared at one log position, narrowed
//!   to the keys that differ, which are repaired from the primary.
//! - [`identity`]: the data dir's identity file (cluster, node, incarnation).
//! - [`membership`]: bootstrap, join, promote/demote/remove through one admin path.
//! - [`lag`]: how stale a replica's data may be; [`retention`]: how much log is kept.
//! - [`status`]: one read of the replication state for ROLE, INFO, metrics.
//! - [`switchover`]: planned leadership transfer (FAILOVER).
//! - [`detach`]: a read replica becomes a standalone database (REPLICAOF NO ONE).
//! - [`rebuild`]: a node whose files are damaged starts again from its peers.
//! - [`node`]: start-up (identity check, recovery, cluster formation) and the handle the server
//!   uses to propose writes and wait for linearizable reads.

pub mod combiner;
pub mod damage;
pub mod detach;
pub mod identity;
pub mod lag;
pub mod log_store;
pub mod membership;
pub mod messages;
pub mod network;
pub mod node;
pub mod read_barrier;
pub mod rebuild;
pub mod repair;
pub mod retention;
pub mod service;
pub mod snapshot_transfer;
pub mod state_machine;
pub mod status;
pub mod switchover;
pub mod types;
pub mod verify;

pub use node::{ConsensusConfig, Node, Retention, WriteError, Written};
