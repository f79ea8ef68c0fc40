//! Test harness: runs commands the way the server does (parse, then read or apply a batch),
//! with a controllable clock.

use bytes::Bytes;
use tandem_checksum::Algorithm;

use crate::{parse, Batch, Command, Frame, Keyspace, Op, ParseContext};

/// Start of the test clock: 2026-01-01T00:00:00Z in ms.
pub const T0_MS: i64 = 1_767_225_600_000;

pub struct Harness {
    pub ks: Keyspace,
    pub now_ms: i64,
    pub algorithm: Algorithm,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            ks: Keyspace::new(),
            now_ms: T0_MS,
            algorithm: Algorithm::Sha256,
        }
    }

    pub fn ctx(&self) -> ParseContext {
        ParseContext {
            algorithm: self.algorithm,
            now_ms: self.now_ms,
        }
    }

    /// Parses and runs one command; panics if it is not a data command.
    pub fn run(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.run_bytes(&args)
    }

    pub fn run_bytes(&mut self, args: &[&[u8]]) -> Frame {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        match parse(&args, &self.ctx()).expect("a data command") {
            Err(e) => e,
            Ok(Command::Read(r)) => self.ks.read(&r, self.now_ms),
            Ok(Command::Write(w)) => {
                let batch = Batch {
                    now_ms: self.now_ms,
                    algorithm: self.algorithm,
                    ops: vec![Op::Write(w)],
                };
                let mut out = self.ks.apply(&batch);
                assert_eq!(out.len(), 1);
                out.remove(0)
            }
        }
    }

    /// Parses each command and applies them as ONE batch (MULTI/EXEC), reads included.
    pub fn exec(&mut self, cmds: &[&[&str]]) -> Vec<Frame> {
        let ops = cmds
            .iter()
            .map(|args| {
                let args: Vec<Bytes> = args
                    .iter()
                    .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                    .collect();
                match parse(&args, &self.ctx()).expect("a data command") {
                    Ok(Command::Read(r)) => Op::Read(r),
                    Ok(Command::Write(w)) => Op::Write(w),
                    Err(e) => panic!("{args:?} does not parse: {e:?}"),
                }
            })
            .collect();
        self.ks.apply(&Batch {
            now_ms: self.now_ms,
            algorithm: self.algorithm,
            ops,
        })
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now_ms += ms;
    }
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

pub fn err(s: &str) -> Frame {
    Frame::Error(s.to_string())
}

pub fn ok() -> Frame {
    Frame::ok()
}

pub fn nil() -> Frame {
    Frame::Null
}

pub fn array(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

/// The error text of a frame, or panic.
pub fn error_text(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}
