//! [`Batch`]: the unit of the replicated log, and what `Keyspace::apply` consumes.
//!
//! One batch is one client write, or one MULTI/EXEC transaction (its queued commands in order,
//! reads included), or one round of the active expiry cycle. Every node applies every committed
//! batch, so a batch carries everything apply needs that is not in the keyspace: the primary's
//! clock reading and the checksum algorithm for values derived at apply time.
//!
//! Serialized with postcard into the log: fields and variants are append-only (see
//! `commands/mod.rs`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_checksum::Algorithm;

use crate::commands::{ReadCmd, WriteCmd};

/// Operations applied atomically, in order, with one reply frame each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The primary's clock when it proposed the batch: "now" for every expiry decision in apply
    /// (a key whose deadline is `<= now_ms` is absent). Never read from a local clock in apply.
    pub now_ms: i64,
    /// Algorithm for checksums of values derived at apply time (INCR, APPEND, SETRANGE,
    /// INCRBYFLOAT). Values that came from a client keep the checksum computed in `parse`.
    pub algorithm: Algorithm,
    pub ops: Vec<Op>,
}

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Write(WriteCmd),
    /// A read queued inside MULTI: it must see the transaction's earlier writes.
    Read(ReadCmd),
    /// The active expiry cycle: delete each key that is expired at `Batch::now_ms` (a key whose
    /// deadline was extended, or that was rewritten, after the primary picked it stays).
    /// Replies with the number of keys deleted.
    ExpireKeys(Vec<Bytes>),
}

impl Batch {
    /// A batch of one write (the common case).
    pub fn single(now_ms: i64, algorithm: Algorithm, cmd: WriteCmd) -> Batch {
        Batch {
            now_ms,
            algorithm,
            ops: vec![Op::Write(cmd)],
        }
    }
}
