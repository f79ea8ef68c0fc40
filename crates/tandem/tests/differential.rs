//! Differential tests: the same command scripts against `redis-server` (the reference, Redis 7)
//! and Tandem, each on a fresh instance, replies compared byte for byte, command by command.
//!
//! Scripts live in `tests/scripts/*.redis`, one command per line with shell-like quoting
//! (`"..."` with `\n \r \t \" \\ \xHH` escapes, or `'...'`). Lines starting with `# ` (or a lone
//! `#`) are comments. Directives are `#word` lines (no space) that change how the next command
//! is compared or sent:
//!
//! - `#sort`: compare the reply array sorted (for KEYS and other unordered replies).
//! - `#ignore-value`: compare only the reply type (its first byte).
//! - `#map-keys`: compare only the keys of a map reply (RESP3 map, or RESP2 flat key/value
//!   array), in order (for HELLO, whose values name the server and connection).
//! - `#scan`: the command is a SCAN starting at cursor 0; iterate it to the end on each server
//!   (cursors are implementation details) and compare the sorted set of keys returned.
//! - `#inline`: send the line verbatim plus CRLF, as an inline command.
//! - `#sleep MS`: pause before the next command (for expiry; used sparingly).
//! - `#redis-args ARGS...` (before the first command): extra flags for the reference
//!   `redis-server`, to configure it the way Tandem is (e.g. `--databases 1`).
//!
//! Expected behaviour is Redis's. A mismatch fails the test, printing script, line, command and
//! both replies; every mismatch of a script is listed before the test fails.
//!
//! `TANDEM_DIFF_VERBOSE=1` prints every command with both replies.
//!
//! `TANDEM_DIFF_TARGET=redis` runs the scripts against a second `redis-server` instead of
//! Tandem: a self-check that every script is deterministic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{phase, require_redis, show_bytes, Conn, Frame, Redis, Tandem};

/// Every script in `tests/scripts`, without `.redis`; each has a test below.
const SCRIPTS: &[&str] = &[
    "strings",
    "set_options",
    "counters",
    "ranges",
    "expiry",
    "keys",
    "scan",
    "transactions",
    "connection",
    "resp3",
    "select",
    "errors",
    "float_precision",
];

macro_rules! script_test {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_script(stringify!($name));
            }
        )*
    };
}

script_test!(
    strings,
    set_options,
    counters,
    float_precision,
    ranges,
    expiry,
    keys,
    scan,
    transactions,
    connection,
    resp3,
    select,
    errors
);

#[test]
fn every_script_has_a_test() {
    let mut found: Vec<String> = common::files_with_ext(&scripts_dir(), "redis")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "tests/scripts/*.redis and SCRIPTS (and script_test!) must list the same scripts"
    );
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("scripts")
}

// ---------------------------------------------------------------------------------------------
// Scripts

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compare {
    Exact,
    Sort,
    IgnoreValue,
    MapKeys,
    Scan,
}

#[derive(Debug)]
enum Step {
    Command {
        line: usize,
        text: String,
        args: Vec<Vec<u8>>,
        compare: Compare,
        inline: bool,
    },
    Sleep(u64),
}

struct Script {
    redis_args: Vec<String>,
    steps: Vec<Step>,
}

fn load_script(name: &str) -> Script {
    let path = scripts_dir().join(format!("{name}.redis"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut script = Script {
        redis_args: Vec::new(),
        steps: Vec::new(),
    };
    let mut compare = Compare::Exact;
    let mut inline = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        let at = || format!("{}:{line_no}", path.display());
        if line.is_empty() || line == "#" || line.starts_with("# ") {
            continue;
        }
        if let Some(directive) = line.strip_prefix('#') {
            let (word, rest) = directive.split_once(' ').unwrap_or((directive, ""));
            match word {
                "sort" => compare = Compare::Sort,
                "ignore-value" => compare = Compare::IgnoreValue,
                "map-keys" => compare = Compare::MapKeys,
                "scan" => compare = Compare::Scan,
                "inline" => inline = true,
                "sleep" => script.steps.push(Step::Sleep(
                    rest.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{}: bad #sleep", at())),
                )),
                "redis-args" => {
                    assert!(
                        script.steps.is_empty(),
                        "{}: #redis-args must come before the first command",
                        at()
                    );
                    script.redis_args = split_args(rest)
                        .unwrap_or_else(|e| panic!("{}: {e}", at()))
                        .into_iter()
                        .map(|a| String::from_utf8(a).unwrap())
                        .collect();
                }
                other => panic!(
                    "{}: unknown directive #{other} (comments need a space after #)",
                    at()
                ),
            }
            continue;
        }
        let args = if inline {
            Vec::new()
        } else {
            split_args(line).unwrap_or_else(|e| panic!("{}: {e}", at()))
        };
        // An inline command is sent exactly as written (its surrounding spaces included).
        let text = if inline {
            raw.trim_end_matches('\r').to_string()
        } else {
            line.to_string()
        };
        script.steps.push(Step::Command {
            line: line_no,
            text,
            args,
            compare,
            inline,
        });
        compare = Compare::Exact;
        inline = false;
    }
    script
}

/// Splits a line into arguments like `redis-cli` does: whitespace-separated words, `"..."` with
/// escapes, `'...'` with only `\'`.
fn split_args(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let b = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return Ok(args);
        }
        let mut cur = Vec::new();
        loop {
            if i == b.len() || b[i].is_ascii_whitespace() {
                break;
            }
            match b[i] {
                b'"' => {
                    i += 1;
                    loop {
                        let Some(&c) = b.get(i) else {
                            return Err("unbalanced double quote".into());
                        };
                        i += 1;
                        match c {
                            b'"' => break,
                            b'\\' => {
                                let Some(&e) = b.get(i) else {
                                    return Err("dangling backslash".into());
                                };
                                i += 1;
                                cur.push(match e {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'a' => 7,
                                    b'b' => 8,
                                    b'x' => {
                                        let hex = std::str::from_utf8(
                                            b.get(i..i + 2).ok_or("short \\x escape")?,
                                        )
                                        .map_err(|_| "bad \\x escape")?;
                                        i += 2;
                                        u8::from_str_radix(hex, 16).map_err(|_| "bad \\x escape")?
                                    }
                                    other => other,
                                });
                            }
                            _ => cur.push(c),
                        }
                    }
                }
                b'\'' => {
                    i += 1;
                    loop {
                        let Some(&c) = b.get(i) else {
                            return Err("unbalanced single quote".into());
                        };
                        i += 1;
                        match c {
                            b'\'' => break,
                            b'\\' if b.get(i) == Some(&b'\'') => {
                                cur.push(b'\'');
                                i += 1;
                            }
                            _ => cur.push(c),
                        }
                    }
                }
                c => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        args.push(cur);
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// The server the reference is compared with: Tandem, or (self-check) a second Redis.
enum Target {
    /// The temp dir holds the data dir; it is removed when the target is dropped.
    Tandem(Tandem, #[allow(dead_code)] tempfile::TempDir),
    Redis(Redis),
}

impl Target {
    fn start(redis_args: &[&str]) -> Target {
        if std::env::var("TANDEM_DIFF_TARGET").as_deref() == Ok("redis") {
            return Target::Redis(Redis::start(redis_args));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        Target::Tandem(Tandem::start(&data, &[]), dir)
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Tandem(..) => "tandem",
            Target::Redis(_) => "redis#2",
        }
    }

    fn conn(&self) -> Conn {
        match self {
            Target::Tandem(t, _) => t.conn(),
            Target::Redis(r) => r.conn(),
        }
    }
}

/// One reply as compared: its raw bytes (or how reading it failed) and the parsed frame.
struct Reply {
    raw: Result<Vec<u8>, String>,
    frame: Option<Frame>,
}

impl Reply {
    fn show(&self) -> String {
        match &self.raw {
            Ok(raw) => show_bytes(raw),
            Err(e) => format!("<{e}>"),
        }
    }
}

fn send_and_read(conn: &mut Conn, args: &[Vec<u8>], inline: Option<&str>) -> Reply {
    let sent = match inline {
        Some(text) => conn.send(format!("{text}\r\n").as_bytes()),
        None => conn.send_cmd(args),
    };
    if let Err(e) = sent {
        return Reply {
            raw: Err(format!("send failed: {e}")),
            frame: None,
        };
    }
    match conn.read_reply() {
        Ok((frame, raw)) => Reply {
            raw: Ok(raw),
            frame: Some(frame),
        },
        Err(e) => Reply {
            raw: Err(e.to_string()),
            frame: None,
        },
    }
}

/// Iterates SCAN from cursor 0 to the end; the sorted, de-duplicated keys (as a comparable
/// reply), or the first reply when it is not a well-formed SCAN page.
fn full_scan(conn: &mut Conn, args: &[Vec<u8>]) -> Reply {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut args = args.to_vec();
    assert!(
        args.len() >= 2 && args[1] == b"0",
        "#scan needs `SCAN 0 ...`"
    );
    for _page in 0..100_000 {
        let reply = send_and_read(conn, &args, None);
        let page = match &reply.frame {
            Some(Frame::Array(page)) if page.len() == 2 => page.clone(),
            _ => return reply,
        };
        let (Frame::Bulk(cursor), Frame::Array(batch)) = (&page[0], &page[1]) else {
            return reply;
        };
        for k in batch {
            match k {
                Frame::Bulk(k) => keys.push(k.clone()),
                _ => return reply,
            }
        }
        if cursor == b"0" {
            keys.sort();
            keys.dedup();
            let frame = Frame::Array(keys.iter().map(Frame::bulk).collect());
            let raw = common::encode_cmd(&keys);
            return Reply {
                raw: Ok(raw),
                frame: Some(frame),
            };
        }
        args[1] = cursor.clone();
    }
    Reply {
        raw: Err("SCAN did not finish in 100000 pages".into()),
        frame: None,
    }
}

fn sorted(f: &Frame) -> Frame {
    match f {
        Frame::Array(v) => {
            let mut v = v.clone();
            v.sort();
            Frame::Array(v)
        }
        Frame::Set(v) => {
            let mut v = v.clone();
            v.sort();
            Frame::Set(v)
        }
        other => other.clone(),
    }
}

/// The keys of a map reply; RESP2 replies carry maps as flat key/value arrays.
fn map_keys(f: &Frame) -> Option<Vec<Frame>> {
    match f {
        Frame::Map(pairs) => Some(pairs.iter().map(|(k, _)| k.clone()).collect()),
        Frame::Array(v) if v.len() % 2 == 0 => Some(v.iter().step_by(2).cloned().collect()),
        _ => None,
    }
}

fn same(compare: Compare, a: &Reply, b: &Reply) -> bool {
    let (Ok(ra), Ok(rb)) = (&a.raw, &b.raw) else {
        return false;
    };
    let (fa, fb) = (a.frame.as_ref().unwrap(), b.frame.as_ref().unwrap());
    match compare {
        Compare::Exact | Compare::Scan => ra == rb,
        Compare::Sort => ra.first() == rb.first() && sorted(fa) == sorted(fb),
        Compare::IgnoreValue => ra.first() == rb.first(),
        Compare::MapKeys => {
            ra.first() == rb.first() && map_keys(fa).is_some() && map_keys(fa) == map_keys(fb)
        }
    }
}

fn run_script(name: &str) {
    if !require_redis() {
        return;
    }
    let script = load_script(name);
    let redis_args: Vec<&str> = script.redis_args.iter().map(String::as_str).collect();
    phase(format!(
        "script {name}: starting redis-server {redis_args:?} and the target"
    ));
    let redis = Redis::start(&redis_args);
    let target = Target::start(&redis_args);
    let mut rc = redis.conn();
    let mut tc = target.conn();
    let tname = target.name();

    phase(format!(
        "script {name}: running {} steps",
        script.steps.len()
    ));
    let verbose = std::env::var("TANDEM_DIFF_VERBOSE").is_ok();
    let mut mismatches = Vec::new();
    let mut commands = 0;
    for step in &script.steps {
        let (line, text, args, compare, inline) = match step {
            Step::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                continue;
            }
            Step::Command {
                line,
                text,
                args,
                compare,
                inline,
            } => (line, text, args, *compare, *inline),
        };
        commands += 1;
        let inline_text = inline.then_some(text.as_str());
        let (expected, actual) = if compare == Compare::Scan {
            (full_scan(&mut rc, args), full_scan(&mut tc, args))
        } else {
            (
                send_and_read(&mut rc, args, inline_text),
                send_and_read(&mut tc, args, inline_text),
            )
        };
        if let Err(e) = &expected.raw {
            panic!(
                "scripts/{name}.redis:{line}: the reference redis-server failed on `{text}`: {e}"
            );
        }
        if verbose {
            eprintln!(
                "{name}:{line}: {text}\n    redis:  {}\n    {tname}: {}",
                expected.show(),
                actual.show()
            );
        }
        if !same(compare, &expected, &actual) {
            let msg = format!(
                "scripts/{name}.redis:{line}: `{text}` ({compare:?})\n      redis:  {}\n      {tname}: {}",
                expected.show(),
                actual.show()
            );
            eprintln!("MISMATCH {msg}");
            mismatches.push(msg);
            if actual.raw.is_err() {
                eprintln!("{tname} connection unusable; stopping script {name}");
                break;
            }
        }
    }
    if !mismatches.is_empty() {
        panic!(
            "script {name}: {} of {commands} commands differ from Redis:\n  {}",
            mismatches.len(),
            mismatches.join("\n  ")
        );
    }
    phase(format!(
        "script {name}: all {commands} replies identical to Redis"
    ));
}

#[test]
fn split_args_follows_redis_cli_quoting() {
    let v = split_args(r#"SET "a b" 'c d' e\x "\x41\n\"" 'it\'s'"#).unwrap();
    let want: Vec<&[u8]> = vec![b"SET", b"a b", b"c d", b"e\\x", b"A\n\"", b"it's"];
    assert_eq!(v, want);
    assert!(split_args("SET \"abc").is_err());
    assert!(split_args("SET 'abc").is_err());
}
