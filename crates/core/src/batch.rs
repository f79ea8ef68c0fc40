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
use crate::keyspace::{RepairKeys, VerifyMark};

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
    /// Divergence detection: every node records its keyspace digest at this point of the log
    /// (and lists the keys of the buckets named), see `keyspace/digest.rs`. Replies with the
    /// number of keys listed.
    VerifyMark(VerifyMark),
    /// Divergence repair: the primary's state of keys found to differ, installed where the key
    /// did not change since the round's capture (`keyspace/digest.rs`). Replies with an array of
    /// one outcome code per key ([`crate::keyspace::RepairKeyOutcome`]).
    RepairKeys(RepairKeys),
}

impl Batch {
    /// The key of the first value entering the keyspace with this batch (SET, MSET, DIGEST.SET,
    /// ...) whose bytes fail the checksum it carries: a corrupt entry, to be refused rather than
    /// applied or passed on (DESIGN.md §2.5). Values derived at apply time (APPEND, INCR, ...)
    /// carry no checksum yet; the frame CRC of the transport and the log record CRC cover them.
    pub fn first_corrupt_value(&self) -> Option<&Bytes> {
        self.corrupt_values().next()
    }

    /// The keys of every such value, in order (see [`Batch::first_corrupt_value`]).
    pub fn corrupt_values(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.ops
            .iter()
            .flat_map(|op| match op {
                Op::Write(w) => w.values(),
                Op::RepairKeys(r) => r
                    .keys
                    .iter()
                    .filter_map(|k| k.state.as_ref().map(|s| (&k.key, &s.value)))
                    .collect(),
                Op::Read(_) | Op::ExpireKeys(_) | Op::VerifyMark(_) => Vec::new(),
            })
            .filter(|(_, v)| !v.checksum.verify(&v.bytes))
            .map(|(key, _)| key)
    }

    /// Fault injection (`DEBUG CORRUPT-APPEND`): flips one byte of the first non-empty value of
    /// the batch, leaving its checksum as it was, so the value no longer verifies. False if the
    /// batch carries no such value.
    pub fn debug_corrupt_a_value(&mut self) -> bool {
        for op in &mut self.ops {
            let Op::Write(w) = op else { continue };
            for value in w.values_mut() {
                if let Some(first) = value.bytes.first() {
                    let mut bytes = value.bytes.to_vec();
                    bytes[0] = first ^ 0xff;
                    value.bytes = Bytes::from(bytes);
                    return true;
                }
            }
        }
        false
    }

    /// A batch of one write (the common case).
    pub fn single(now_ms: i64, algorithm: Algorithm, cmd: WriteCmd) -> Batch {
        Batch {
            now_ms,
            algorithm,
            ops: vec![Op::Write(cmd)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{parse, ParseContext};
    use crate::Command;

    fn write(args: &[&str]) -> Op {
        let ctx = ParseContext {
            algorithm: Algorithm::Sha256,
            now_ms: 0,
        };
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        match parse(&args, &ctx) {
            Some(Ok(Command::Write(w))) => Op::Write(w),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn a_value_damaged_on_the_way_is_found_and_named() {
        let mut batch = Batch {
            now_ms: 0,
            algorithm: Algorithm::Sha256,
            ops: vec![
                write(&["INCR", "n"]),
                write(&["DEL", "x"]),
                write(&["MSET", "a", "1", "b", "2"]),
                write(&["SET", "c", "3"]),
            ],
        };
        assert_eq!(batch.first_corrupt_value(), None);
        assert!(batch.debug_corrupt_a_value());
        assert_eq!(batch.first_corrupt_value().map(|k| &k[..]), Some(&b"a"[..]));
        assert_eq!(batch.corrupt_values().count(), 1);
        let mut nothing = Batch::single(0, Algorithm::Sha256, {
            let Op::Write(w) = write(&["APPEND", "k", "tail"]) else {
                unreachable!()
            };
            w
        });
        assert!(
            !nothing.debug_corrupt_a_value(),
            "APPEND carries no checksummed value"
        );
        assert_eq!(nothing.first_corrupt_value(), None);
    }
}
