//! Differential tests against recorded Redis 7.0 replies.
//!
//! `tests/golden/*.redis` are command scripts; `tools/golden.py` ran each against
//! redis-server 7.0.15 and recorded every reply into `*.golden`. This test replays the same
//! scripts through Tandem's `parse` + `Keyspace` (one batch per write, as the server does) and
//! requires byte-identical replies. `!sleep N` advances Tandem's clock by N ms instead of
//! sleeping; `~` compares arrays unordered; `%` compares integers by class (-2, -1, 0, +) where
//! the value depends on the recording clock. To add a case: edit the `.redis` script, re-run the tool against a local
//! redis-server, review the diff of the `.golden` file.

use bytes::Bytes;
use tandem_checksum::Algorithm;
use tandem_core::{parse, Batch, Command, Frame, Keyspace, Op, ParseContext};

/// The replay clock starts at 2026-01-01T00:00:00Z.
const T0_MS: i64 = 1_767_225_600_000;

fn render(frame: &Frame, unordered: bool, classify: bool) -> String {
    match frame {
        Frame::Integer(n) if classify && *n > 0 => ":+".to_string(),
        Frame::Simple(s) => format!("+{s}"),
        Frame::Error(e) => format!("-{e}"),
        Frame::Integer(n) => format!(":{n}"),
        Frame::Bulk(b) => escape(b),
        Frame::Null => "nil".to_string(),
        Frame::NullArray => "nilarray".to_string(),
        Frame::Array(items) => {
            let mut items: Vec<String> = items
                .iter()
                .map(|f| render(f, unordered, classify))
                .collect();
            if unordered {
                items.sort();
            }
            format!("[{}]", items.join(", "))
        }
        other => panic!("unexpected frame {other:?}"),
    }
}

fn escape(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

fn tokens(line: &str) -> Vec<Bytes> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let mut tok = Vec::new();
        if b[i] == b'"' {
            i += 1;
            while b[i] != b'"' {
                if b[i] == b'\\' {
                    match b[i + 1] {
                        b'x' => {
                            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                            tok.push(u8::from_str_radix(hex, 16).unwrap());
                            i += 4;
                        }
                        e => {
                            tok.push(match e {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                other => other,
                            });
                            i += 2;
                        }
                    }
                } else {
                    tok.push(b[i]);
                    i += 1;
                }
            }
            i += 1;
        } else {
            while i < b.len() && b[i] != b' ' {
                tok.push(b[i]);
                i += 1;
            }
        }
        out.push(Bytes::from(tok));
    }
    out
}

struct Replay {
    ks: Keyspace,
    now_ms: i64,
}

impl Replay {
    fn run(&mut self, args: &[Bytes]) -> Frame {
        let ctx = ParseContext {
            algorithm: Algorithm::Sha256,
            now_ms: self.now_ms,
        };
        match parse(args, &ctx).expect("every golden command is a data command") {
            Err(e) => e,
            Ok(Command::Read(r)) => self.ks.read(&r, self.now_ms),
            Ok(Command::Write(w)) => {
                let batch = Batch {
                    now_ms: self.now_ms,
                    algorithm: Algorithm::Sha256,
                    ops: vec![Op::Write(w)],
                };
                // Through the log's encoding, as in production.
                let wire = postcard::to_stdvec(&batch).unwrap();
                let batch: Batch = postcard::from_bytes(&wire).unwrap();
                self.ks.apply(&batch).remove(0)
            }
        }
    }
}

fn replay(name: &str) {
    let path = format!("{}/tests/golden/{name}.golden", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut r = Replay {
        ks: Keyspace::new(),
        now_ms: T0_MS,
    };
    let mut failures = Vec::new();
    let mut lines = text.lines().peekable();
    let mut cases = 0;
    while let Some(line) = lines.next() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(ms) = line.strip_prefix("!sleep ") {
            r.now_ms += ms.parse::<i64>().unwrap();
            continue;
        }
        let want = lines
            .next()
            .and_then(|l| l.strip_prefix("=> "))
            .unwrap_or_else(|| panic!("{path}: no reply recorded after {line:?}"));
        let (unordered, classify, cmd) = if let Some(rest) = line.strip_prefix("~ ") {
            (true, false, rest)
        } else if let Some(rest) = line.strip_prefix("% ") {
            (false, true, rest)
        } else {
            (false, false, line)
        };
        let got = render(&r.run(&tokens(cmd)), unordered, classify);
        cases += 1;
        if got != want {
            failures.push(format!("{cmd}\n    redis:  {want}\n    tandem: {got}"));
        }
    }
    assert!(cases > 0);
    assert!(
        failures.is_empty(),
        "{name}: {} of {cases} replies differ from Redis 7:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn strings_match_redis() {
    replay("strings");
}

#[test]
fn counters_match_redis() {
    replay("counters");
}

#[test]
fn keys_match_redis() {
    replay("keys");
}

#[test]
fn random_floats_match_redis() {
    replay("floats");
}

#[test]
fn random_mixes_match_redis() {
    replay("mixed");
}
