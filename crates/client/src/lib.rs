//! A Rust client for Tandem clusters.
//!
//! Give it the address of any node: it asks that node for the cluster's membership, sends
//! writes to the primary, sends reads where a [`ReadPolicy`] says, follows failovers, and can
//! verify every byte it reads against the value's own checksum, end to end.
//!
//! ```no_run
//! use tandem_client::{Client, ClientOptions, ReadPolicy};
//!
//! # async fn example() -> Result<(), tandem_client::Error> {
//! let client = Client::connect(
//!     &["10.0.0.7:6379"],
//!     ClientOptions { read_policy: ReadPolicy::AnyReplica, ..ClientOptions::default() },
//! )
//! .await?;
//! client.set("user:1", "ada").await?;
//! if let Some(copy) = client.get_verified("user:1").await? {
//!     assert_eq!(&copy.value[..], b"ada");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! How the crate is laid out:
//!
//! - `client` — [`Client`]: routing (writes to the primary, reads by policy), the retry rules
//!   (retry what provably did not run, never a write whose outcome is unknown), topology
//!   refresh, and [`Client::get_verified`], which falls back to other copies and reports bad
//!   ones to the nodes that served them (`DIGEST.REPORT`).
//! - `topology` — [`Topology`]: the members read from `MEMBERSHIP LIST`, and the order in
//!   which each read policy tries them. Pure data, tested without a server.
//! - `verify` — checking a `DIGEST.GET` reply with the `tandem-checksum` crate; [`Verified`],
//!   [`BadCopy`], [`CopyProblem`]. Pure functions.
//! - `reply` — what an error reply means for routing (`-READONLY`, `-MASTERDOWN`, `-TRYAGAIN`,
//!   `-UNKNOWN`, `-TIMEOUT`, `-CORRUPT`), and the reply shapes of the typed commands.
//! - `connection` — one TCP connection (RESP2 through the `tandem-resp` codec) and the small
//!   per-node pool; it tells a request that never reached the server from one whose reply was
//!   lost, which is what makes retrying safe.
//! - `options` — [`ClientOptions`] and [`ReadPolicy`], each knob with a named default.
//! - `error` — [`Error`].
//!
//! Consistency, in short: reads on the primary are linearizable; reads on a replica see a
//! prefix of the log at most the cluster's `replica-max-lag-ms` old, and may not yet show this
//! client's own latest write.
#![warn(missing_docs)]

mod client;
mod connection;
mod error;
mod options;
mod reply;
mod topology;
mod verify;

pub use client::Client;
pub use error::Error;
pub use options::{
    ClientOptions, ReadPolicy, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_NODE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_DEADLINE, DEFAULT_TOPOLOGY_REFRESH_INTERVAL,
};
pub use tandem_checksum::Algorithm;
pub use tandem_resp::Frame;
pub use topology::{NodeId, NodeInfo, NodeRole, Topology, MEMBERS_MAX};
pub use verify::{BadCopy, CopyProblem, Verified};
