//! Bad input never crashes a node or loses data (DESIGN.md §2.7).
//!
//! Each case sends malformed or hostile bytes on a fresh connection and checks the reply: a
//! `-ERR Protocol error...` followed by the server closing the connection where Redis 7 does
//! that, Redis's own reply where Redis treats the bytes as something else. After every case the
//! server must still answer PING on a new connection and still hold the data written before.
//!
//! The same cases run against `redis-server` (`redis_agrees_with_the_expectations`), which shows
//! the expectations are Redis's behaviour and not our guess.

mod common;

use std::time::Duration;

use common::{parse_frame, phase, require_redis, show_bytes, Conn, Frame, Redis, Tandem};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Bulk strings above this are refused; both servers are started with it (1 MiB is the smallest
/// value Redis accepts for proto-max-bulk-len).
const MAX_BULK: usize = 1024 * 1024;

/// What the server must do with a case's bytes.
#[derive(Clone, Debug)]
enum Expect {
    /// Reply `-ERR Protocol error...`, then close the connection.
    ProtocolError,
    /// Exactly these reply bytes, and the connection stays usable.
    Reply(&'static [u8]),
    /// Either a protocol error and close (stricter than Redis), or exactly Redis's reply.
    ProtocolErrorOr(&'static [u8]),
    /// Redis waits for the rest of a huge request: either that (no reply, connection open) or a
    /// protocol error and close.
    NothingYetOrProtocolError,
    /// Only error replies (any number), well-formed; the connection may close.
    OnlyErrors,
    /// The client disconnects midway; no reply is owed and the partial command must not run.
    Disconnect,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn cases(seed: u64) -> Vec<Case> {
    let mut garbage = vec![0u8; 1024 * 1024];
    StdRng::seed_from_u64(seed).fill_bytes(&mut garbage);
    // Without quotes the inline parser gets past the first line: hundreds of random inline
    // commands, each an unknown command, until a line happens to start like a RESP array.
    let unquoted: Vec<u8> = garbage
        .iter()
        .map(|&b| if b == b'"' || b == b'\'' { b'q' } else { b })
        .collect();
    let c = |name, bytes: &[u8], expect| Case {
        name,
        bytes: bytes.to_vec(),
        expect,
    };
    vec![
        c("bad multibulk length", b"*abc\r\n", Expect::ProtocolError),
        c(
            "negative bulk length",
            b"*1\r\n$-5\r\n",
            Expect::ProtocolError,
        ),
        c(
            "non-numeric bulk length",
            b"*1\r\n$abc\r\n",
            Expect::ProtocolError,
        ),
        c(
            "simple string inside a request",
            b"*1\r\n+foo\r\n",
            Expect::ProtocolError,
        ),
        c(
            "nested array",
            b"*1\r\n*1\r\n$4\r\nPING\r\n",
            Expect::ProtocolError,
        ),
        c(
            "unbalanced quotes inline",
            b"SET k \"abc\r\n",
            Expect::ProtocolError,
        ),
        c(
            "unbalanced single quote inline",
            b"SET k 'abc\r\n",
            Expect::ProtocolError,
        ),
        c(
            "bulk above proto-max-bulk-len",
            format!("*2\r\n$3\r\nGET\r\n${}\r\n", MAX_BULK + 1).as_bytes(),
            Expect::ProtocolError,
        ),
        c(
            "inline line above 64 KiB",
            &[b'x'; 70_000],
            Expect::ProtocolError,
        ),
        c(
            "array count line above 64 KiB",
            &[b"*".as_slice(), &[b'1'; 70_000]].concat(),
            Expect::ProtocolError,
        ),
        c(
            "bulk longer than its length",
            b"*1\r\n$3\r\nabcd\r\n",
            Expect::ProtocolErrorOr(b"-ERR unknown command 'abc', with args beginning with: \r\n"),
        ),
        c(
            "huge array header",
            b"*2147483647\r\n",
            Expect::NothingYetOrProtocolError,
        ),
        c(
            "huge array header, then elements",
            b"*2147483647\r\n$4\r\nPING\r\n$4\r\nPING\r\n",
            Expect::NothingYetOrProtocolError,
        ),
        c("1 MiB of random bytes", &garbage, Expect::OnlyErrors),
        c(
            "1 MiB of random bytes without quotes",
            &unquoted,
            Expect::OnlyErrors,
        ),
        c(
            "half a request, then disconnect",
            b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nab",
            Expect::Disconnect,
        ),
        c(
            "half a header, then disconnect",
            b"*3\r\n$3\r\nSET\r\n$4",
            Expect::Disconnect,
        ),
        c(
            "bare $-5 is an inline command",
            b"$-5\r\n",
            Expect::Reply(b"-ERR unknown command '$-5', with args beginning with: \r\n"),
        ),
        c(
            "unknown command keeps the connection",
            b"FOO bar\r\n*1\r\n$4\r\nPING\r\n",
            Expect::Reply(
                b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n+PONG\r\n",
            ),
        ),
        c(
            "empty and null arrays are ignored",
            b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
            Expect::Reply(b"+PONG\r\n"),
        ),
        c(
            "empty inline lines are ignored",
            b"\r\n\r\nPING\r\n",
            Expect::Reply(b"+PONG\r\n"),
        ),
    ]
}

/// Sends one case to the server on `port` and checks its reply; then checks the server still
/// answers and still holds `keep`.
fn run_case(port: u16, case: &Case, keep: &[(String, String)]) -> Result<(), String> {
    let mut conn = Conn::connect(port).map_err(|e| format!("connect: {e}"))?;
    // A write error means the server already closed the connection (e.g. after a protocol error
    // on the first bytes of a long send); the reply read below still says what happened.
    let _ = conn.send(&case.bytes);
    if matches!(case.expect, Expect::Disconnect) {
        conn.shutdown_write();
    }
    let (reply, closed) = match case.expect {
        Expect::Reply(want) | Expect::ProtocolErrorOr(want) => read_expected(&mut conn, want.len()),
        Expect::NothingYetOrProtocolError => conn.read_until_close(Duration::from_millis(1500)),
        _ => conn.read_until_close(Duration::from_secs(10)),
    };
    eprintln!(
        "    reply {} (connection {})",
        show_bytes(&reply[..reply.len().min(200)]),
        if closed { "closed" } else { "open" }
    );
    let got = || {
        format!(
            "got {} (connection {})",
            show_bytes(&reply),
            if closed { "closed" } else { "open" }
        )
    };
    let protocol_error_and_close = reply.starts_with(b"-ERR Protocol error")
        && reply.ends_with(b"\r\n")
        && closed
        && reply.iter().filter(|&&b| b == b'\n').count() == 1;
    match &case.expect {
        Expect::ProtocolError => {
            if !protocol_error_and_close {
                return Err(format!(
                    "expected one -ERR Protocol error... reply and a close; {}",
                    got()
                ));
            }
        }
        Expect::Reply(want) => {
            if reply != *want || closed {
                return Err(format!(
                    "expected {} and the connection open; {}",
                    show_bytes(want),
                    got()
                ));
            }
            // ...and usable.
            conn.set_timeout(Duration::from_secs(10));
            match conn.try_cmd(&["PING"]) {
                Ok(Frame::Simple(s)) if s == "PONG" => {}
                other => {
                    return Err(format!(
                        "connection not usable afterwards: PING gave {other:?}"
                    ))
                }
            }
        }
        Expect::ProtocolErrorOr(redis_reply) => {
            if !protocol_error_and_close && reply != *redis_reply {
                return Err(format!(
                    "expected a protocol error and close, or Redis's {}; {}",
                    show_bytes(redis_reply),
                    got()
                ));
            }
        }
        Expect::NothingYetOrProtocolError => {
            if !(protocol_error_and_close || (reply.is_empty() && !closed)) {
                return Err(format!(
                    "expected no reply yet, or a protocol error and close; {}",
                    got()
                ));
            }
        }
        Expect::OnlyErrors => {
            let mut rest = reply.as_slice();
            let mut n = 0;
            while !rest.is_empty() {
                match parse_frame(rest) {
                    Ok(Some((Frame::Error(_), used))) => {
                        rest = &rest[used..];
                        n += 1;
                    }
                    other => {
                        return Err(format!(
                            "reply {n} is not a well-formed error ({other:?}); {}",
                            got()
                        ))
                    }
                }
            }
            eprintln!(
                "    {n} error replies, connection {}",
                if closed { "closed" } else { "open" }
            );
        }
        Expect::Disconnect => {
            if !reply.is_empty() {
                return Err(format!("expected no reply to a partial request; {}", got()));
            }
        }
    }
    drop(conn);
    check_alive(port, keep)?;
    if matches!(case.expect, Expect::Disconnect) {
        let mut c = Conn::connect(port).map_err(|e| format!("reconnect: {e}"))?;
        let r = c.try_cmd(&["EXISTS", "half"]).map_err(|e| e.to_string())?;
        if r != Frame::Integer(0) {
            return Err(format!("the partial SET half ... ran: EXISTS half = {r}"));
        }
    }
    Ok(())
}

/// Reads until `len` bytes arrived or the server closed (at most 10 s), then briefly for
/// anything extra. Returns the bytes and whether the server closed the connection.
fn read_expected(conn: &mut Conn, len: usize) -> (Vec<u8>, bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut reply, mut closed) = (Vec::new(), false);
    while reply.len() < len && !closed && std::time::Instant::now() < deadline {
        let (more, c) = conn.read_until_close(Duration::from_millis(200));
        reply.extend_from_slice(&more);
        closed = c;
    }
    if !closed {
        let (more, c) = conn.read_until_close(Duration::from_millis(300));
        reply.extend_from_slice(&more);
        closed = c;
    }
    (reply, closed)
}

/// A new connection gets PONG and every key in `keep` still holds its value.
fn check_alive(port: u16, keep: &[(String, String)]) -> Result<(), String> {
    let mut c = Conn::connect(port).map_err(|e| format!("server gone? connect failed: {e}"))?;
    match c.try_cmd(&["PING"]) {
        Ok(Frame::Simple(s)) if s == "PONG" => {}
        other => return Err(format!("server not answering: PING gave {other:?}")),
    }
    for (k, v) in keep {
        let r = c
            .try_cmd(&["GET", k])
            .map_err(|e| format!("GET {k}: {e}"))?;
        if r != Frame::bulk(v) {
            return Err(format!("earlier data lost: GET {k} = {r}, expected {v}"));
        }
    }
    Ok(())
}

/// Runs every case against the server on `port`; returns the failures.
fn run_all(port: u16, seed: u64) -> Vec<String> {
    let mut keep = Vec::new();
    let mut c = Conn::connect(port).expect("connect");
    for i in 0..20 {
        let (k, v) = (
            format!("keep:{i}"),
            format!("value-{i}-{}", "v".repeat(i * 10)),
        );
        c.ok(&["SET", &k, &v]);
        keep.push((k, v));
    }
    let mut failures = Vec::new();
    for case in cases(seed) {
        phase(format!("case: {} ({} bytes)", case.name, case.bytes.len()));
        if let Err(e) = run_case(port, &case, &keep) {
            eprintln!("    FAILED: {e}");
            failures.push(format!("{}: {e}", case.name));
        }
    }
    failures
}

#[test]
fn malformed_requests_get_protocol_errors_and_the_server_survives() {
    let seed = common::seed_from_env("TANDEM_BAD_INPUT_SEED");
    eprintln!("seed {seed} (TANDEM_BAD_INPUT_SEED replays the random garbage)");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let max_bulk = MAX_BULK.to_string();
    let mut server = Tandem::start(&data, &["--proto-max-bulk-len", &max_bulk]);
    let mut failures = run_all(server.port, seed);
    assert!(
        server.is_running(),
        "tandem exited during the bad-input cases:\n{}",
        server.log_tail()
    );

    phase("restart: the data written before the bad input is still there");
    server.restart();
    let keep: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("keep:{i}"),
                format!("value-{i}-{}", "v".repeat(i * 10)),
            )
        })
        .collect();
    if let Err(e) = check_alive(server.port, &keep) {
        failures.push(format!("after restart: {e}"));
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} bad-input cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A request just under the bulk limit is accepted (the limit is not off by one).
#[test]
fn bulk_at_the_limit_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let max_bulk = MAX_BULK.to_string();
    let server = Tandem::start(&data, &["--proto-max-bulk-len", &max_bulk]);
    let mut c = server.conn();
    let big = vec![b'z'; MAX_BULK];
    c.ok(&[b"SET".as_slice(), b"big", &big]);
    assert_eq!(c.cmd(&["STRLEN", "big"]), Frame::Integer(MAX_BULK as i64));
}

#[test]
fn redis_agrees_with_the_expectations() {
    if !require_redis() {
        return;
    }
    let redis = Redis::start(&["--proto-max-bulk-len", &MAX_BULK.to_string()]);
    let failures = run_all(redis.port, 1);
    assert!(
        failures.is_empty(),
        "the expectations are not Redis's behaviour:\n  {}",
        failures.join("\n  ")
    );
}
