//! Consensus: the only module that imports openraft.
//!
//! - [`types`]: the openraft type configuration and the payload/response wrappers.
//! - [`log_store`]: openraft's `RaftLogStorage` over our own segmented log (`tandem-log`).
//! - [`state_machine`]: openraft's `RaftStateMachine` over the keyspace, with snapshots on disk.
//! - [`network`]: openraft's network factory (no peers yet: a cluster of one voter).
//! - [`node`]: start-up (identity check, recovery, initialization) and the handle the server uses
//!   to propose writes and wait for linearizable reads.

pub mod combiner;
pub mod log_store;
pub mod network;
pub mod node;
pub mod read_barrier;
pub mod state_machine;
pub mod types;

pub use node::{ConsensusConfig, Node, WriteError};
