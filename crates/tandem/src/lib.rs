//! Tandem: a key-value database that keeps several copies of every byte and proves, on every
//! read, that the bytes it returns are the bytes that were written. It speaks RESP.
//!
//! The layers, from the network in to the disk (each calls only the ones below it):
//!
//! - [`server`]: TCP listener, one task per connection, RESP parsing and encoding (crate
//!   `tandem-resp`), pipelining, limits, authentication, server-level commands, INFO, active
//!   expiry.
//! - commands and keyspace (crate `tandem-core`): a data command parses into a read, run against
//!   the keyspace, or a write, proposed to consensus; the keyspace is the state machine that
//!   applies committed writes. Pure: no IO.
//! - [`consensus`]: the only module that imports openraft: log store, state machine adapter
//!   (snapshots), network, start-up and recovery, the read barrier.
//! - log (crate `tandem-log`): segmented append-only files, CRC32C per record, group commit.
//! - snapshot (crate `tandem-snapshot`): the snapshot file format, CRC32C blocks and a whole-file
//!   digest.
//! - checksum (crate `tandem-checksum`): the value checksum algorithms behind one type.
//! - [`http`]: `/health`, `/ready` and `/metrics` for load balancers and monitoring
//!   (`--http-port`).
//! - [`up`]: `tandem up`, a local cluster of child processes for trying Tandem.
//! - [`cluster_cli`]: `tandem cluster ...`, status and membership changes over RESP.
//! - [`check`]: `tandem check DATA_DIR`, offline verification of everything on disk.
//! - [`config`]: flags, the TOML file, defaults.

pub mod check;
pub mod cluster_cli;
pub mod config;
pub mod consensus;
pub mod http;
pub mod server;
pub mod up;
