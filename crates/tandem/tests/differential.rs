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
//! - `#pipeline N`: send the next N commands in one write (a pipeline), then compare their
//!   replies one by one.
//! - `#sleep MS`: pause before the next command (for expiry; used sparingly).
//! - `#redis-args ARGS...` (before the first command): extra flags for the reference
//!   `redis-server`, to configure it the way Tandem is (e.g. `--databases 1`).
//! - `#tandem-args ARGS...` (before the first command): extra flags for `tandem server`.
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

/// One test per script in `tests/scripts` (named as the file without `.redis`), and the list
/// of them, which `every_script_has_a_test` compares with the directory.
macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run_script(stringify!($name));
            }
        )*
    };
}

scripts!(
    strings,
    set_options,
    counters,
    float_precision,
    ranges,
    expiry,
    keys,
    scan,
    transactions,
    pipeline,
    connection,
    resp3,
    select,
    errors,
    auth,
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
        "every tests/scripts/*.redis needs an entry in scripts!(...)"
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
        /// Commands of one `#pipeline` share a group number and are sent in one write.
        pipeline: Option<usize>,
    },
    Sleep(u64),
}

struct Script {
    redis_args: Vec<String>,
    tandem_args: Vec<String>,
    steps: Vec<Step>,
}

fn load_script(name: &str) -> Script {
    let path = scripts_dir().join(format!("{name}.redis"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut script = Script {
        redis_args: Vec::new(),
        tandem_args: Vec::new(),
        steps: Vec::new(),
    };
    let mut compare = Compare::Exact;
    let mut inline = false;
    // (group number, commands still to put in it)
    let mut pipeline: Option<(usize, usize)> = None;
    let mut groups = 0;
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
                "pipeline" => {
                    let n: usize = rest
                        .trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{}: #pipeline needs a count", at()));
                    groups += 1;
                    pipeline = Some((groups, n));
                }
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
                "tandem-args" => {
                    assert!(
                        script.steps.is_empty(),
                        "{}: #tandem-args must come before the first command",
                        at()
                    );
                    script.tandem_args = split_args(rest)
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
        let group = match pipeline {
            Some((g, n)) => {
                assert!(compare != Compare::Scan, "{}: #scan inside #pipeline", at());
                pipeline = (n > 1).then_some((g, n - 1));
                Some(g)
            }
            None => None,
        };
        script.steps.push(Step::Command {
            line: line_no,
            text,
            args,
            compare,
            inline,
            pipeline: group,
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
    fn start(redis_args: &[&str], tandem_args: &[&str]) -> Target {
        if std::env::var("TANDEM_DIFF_TARGET").as_deref() == Ok("redis") {
            return Target::Redis(Redis::start(redis_args));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        Target::Tandem(Tandem::start(&data, tandem_args), dir)
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

/// The bytes a step sends: its RESP array, or its inline line.
fn request_bytes(step: &Step) -> Vec<u8> {
    match step {
        Step::Command {
            inline: true, text, ..
        } => format!("{text}\r\n").into_bytes(),
        Step::Command { args, .. } => common::encode_cmd(args),
        Step::Sleep(_) => Vec::new(),
    }
}

fn read_one(conn: &mut Conn) -> Reply {
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

/// Sends `bytes` in one write and reads `n` replies.
fn send_and_read_n(conn: &mut Conn, bytes: &[u8], n: usize) -> Vec<Reply> {
    if let Err(e) = conn.send(bytes) {
        return (0..n)
            .map(|_| Reply {
                raw: Err(format!("send failed: {e}")),
                frame: None,
            })
            .collect();
    }
    (0..n).map(|_| read_one(conn)).collect()
}

fn send_and_read(conn: &mut Conn, args: &[Vec<u8>]) -> Reply {
    send_and_read_n(conn, &common::encode_cmd(args), 1)
        .pop()
        .unwrap()
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
        let reply = send_and_read(conn, &args);
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
    let tandem_args: Vec<&str> = script.tandem_args.iter().map(String::as_str).collect();
    let target = Target::start(&redis_args, &tandem_args);
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
    let mut i = 0;
    'steps: while i < script.steps.len() {
        let group = match &script.steps[i] {
            Step::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                i += 1;
                continue;
            }
            Step::Command { pipeline, .. } => *pipeline,
        };
        // This command, or every command of its pipeline.
        let mut batch = vec![&script.steps[i]];
        i += 1;
        while group.is_some() {
            match script.steps.get(i) {
                Some(s @ Step::Command { pipeline, .. }) if *pipeline == group => {
                    batch.push(s);
                    i += 1;
                }
                _ => break,
            }
        }
        let results: Vec<(Reply, Reply)> = match batch[..] {
            [Step::Command {
                args,
                compare: Compare::Scan,
                ..
            }] => {
                vec![(full_scan(&mut rc, args), full_scan(&mut tc, args))]
            }
            _ => {
                let bytes: Vec<u8> = batch.iter().flat_map(|s| request_bytes(s)).collect();
                let r = send_and_read_n(&mut rc, &bytes, batch.len());
                let t = send_and_read_n(&mut tc, &bytes, batch.len());
                r.into_iter().zip(t).collect()
            }
        };
        for (step, (expected, actual)) in batch.iter().zip(results) {
            let Step::Command {
                line,
                text,
                compare,
                ..
            } = step
            else {
                unreachable!()
            };
            commands += 1;
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
            if !same(*compare, &expected, &actual) {
                let msg = format!(
                    "scripts/{name}.redis:{line}: `{text}` ({compare:?})\n      redis:  {}\n      {tname}: {}",
                    expected.show(),
                    actual.show()
                );
                eprintln!("MISMATCH {msg}");
                mismatches.push(msg);
                if actual.raw.is_err() {
                    eprintln!("{tname} connection unusable; stopping script {name}");
                    break 'steps;
                }
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
