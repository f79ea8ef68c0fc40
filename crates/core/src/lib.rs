//! `tandem-core`: the keyspace (Tandem's replicated state machine) and the semantics of the
//! data commands. Pure: no sockets, files, clocks or threads; callers pass `now_ms` in.
//!
//! How the rest of Tandem uses this crate: a connection task calls [`parse`] on a request's
//! arguments. A read ([`Command::Read`]) runs at once with [`Keyspace::read`] under a shared
//! lock. A write ([`Command::Write`]) is wrapped in a [`Batch`], serialized into the replicated
//! log, and once committed every node calls [`Keyspace::apply`], which is deterministic given
//! (state, batch); the primary's reply frames go back to the client. MULTI/EXEC is one batch of
//! the queued commands (reads as [`Op::Read`]), applied atomically.
//!
//! Module map:
//! - [`batch`]: [`Batch`] and [`Op`], the unit of the log and of `apply`.
//! - [`commands`]: [`parse`] and one file per command family (`strings`, `keys`, `digest`), each
//!   with its argument parsing and its semantics against the keyspace; `args` (shared argument
//!   parsers and Redis error texts), `long_double` (INCRBYFLOAT's exact 80-bit arithmetic) and
//!   `table` ([`COMMANDS`], every command Tandem serves, for arity checks and COMMAND).
//! - [`keyspace`]: [`Keyspace`], the map from key to (value, checksum, deadline): entry layout,
//!   store (hash table + ordered key hashes), expiry index, SCAN cursor, snapshot records,
//!   checksum verification and the repair primitives.
//! - [`glob`]: Redis's glob matching for KEYS and SCAN MATCH.
//!
//! The checksum rule: every value's checksum is computed once, in `parse` (or in `apply` for a
//! value derived from a stored one), and travels unchanged through the log and snapshots. Every
//! read verifies it before replying; a value that fails is never returned: the reply is a
//! `-CORRUPT ...` error naming the key, counted in [`Keyspace::integrity`]. The server repairs
//! such a key from another node with [`Keyspace::repair_value`] (or, if a write met the bad
//! bytes first, [`Keyspace::restore_key`]); see the `keyspace` module doc.

pub mod batch;
pub mod commands;
pub mod glob;
pub mod keyspace;

#[cfg(test)]
mod testkit;

pub use tandem_resp::Frame;

pub use batch::{Batch, Op};
pub use commands::table::{arity_ok, lookup, wrong_arity, CommandSpec, COMMANDS};
pub use commands::{parse, parse_with_spec, Command, ParseContext, ReadCmd, Value, WriteCmd};
pub use glob::glob_match;
pub use keyspace::{IntegrityStats, KeyState, Keyspace, LoadError, RepairOutcome};
