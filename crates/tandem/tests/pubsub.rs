//! Pub/Sub over real connections.
//!
//! - Differential scenarios (RESP2 and RESP3): several connections per server, the same commands
//!   sent to `redis-server` (the reference, Redis 7.0) and to Tandem, every reply and every
//!   message compared byte for byte. Skipped loudly without redis-server; failed under CI=true.
//! - A subscriber that never reads is disconnected once its queue passes
//!   `--pubsub-queue-bytes-max`, while the server and the other subscribers carry on.
//! - `--pubsub-subscriptions-max` refuses a (P)SUBSCRIBE that would pass it, whole.
//! - A connection that goes away leaves every channel and pattern (PUBSUB NUMSUB drops to 0).
//! - Messages arrive in order and none is lost, also between the replies of a pipeline.

mod common;

use std::time::{Duration, Instant};

use common::{phase, require_redis, show_bytes, Conn, Frame, Redis, Tandem};

fn start_tandem(args: &[&str]) -> (Tandem, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Tandem::start(&dir.path().join("data"), args);
    (t, dir)
}

fn info_field(c: &mut Conn, section: &str, field: &str) -> String {
    let info = c.cmd(&["INFO", section]);
    let text = String::from_utf8_lossy(info.as_bulk().expect("INFO is a bulk string")).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{text}"))
        .trim()
        .to_string()
}

fn numsub(c: &mut Conn, channel: &str) -> i64 {
    match c.cmd(&["PUBSUB", "NUMSUB", channel]) {
        Frame::Array(v) if v.len() == 2 => v[1].as_int().expect("a count"),
        other => panic!("PUBSUB NUMSUB {channel}: {other}"),
    }
}

fn numpat(c: &mut Conn) -> i64 {
    c.cmd(&["PUBSUB", "NUMPAT"])
        .as_int()
        .expect("NUMPAT is an integer")
}

/// Polls `f` until it returns true, for at most `timeout`.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn push(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(Frame::bulk).collect())
}

// ---------------------------------------------------------------------------------------------
// Differential scenarios

#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Exact,
    /// Read the replies but do not compare them (HELLO names the server and the connection).
    Skip,
}

/// Send `cmd` on connection `on`, then read `replies[i].1` replies (or messages) from connection
/// `replies[i].0`, in that order.
struct Step {
    on: usize,
    cmd: &'static [&'static str],
    replies: &'static [(usize, usize)],
    compare: Compare,
}

const fn step(on: usize, cmd: &'static [&'static str], replies: &'static [(usize, usize)]) -> Step {
    Step {
        on,
        cmd,
        replies,
        compare: Compare::Exact,
    }
}

/// Runs the steps on `connections` connections to redis-server and as many to Tandem, comparing
/// every reply byte for byte; at the end no connection may hold anything unread.
fn run_differential(name: &str, connections: usize, steps: &[Step]) {
    if !require_redis() {
        return;
    }
    phase(format!("{name}: starting redis-server and tandem"));
    let redis = Redis::start(&[]);
    let (tandem, _dir) = start_tandem(&[]);
    let open = |port: u16| -> Vec<Conn> {
        (0..connections)
            .map(|_| {
                let c = Conn::connect(port).expect("connect");
                c.set_timeout(Duration::from_secs(5));
                c
            })
            .collect()
    };
    let mut rc = open(redis.port);
    let mut tc = open(tandem.port);

    phase(format!("{name}: {} steps", steps.len()));
    let mut mismatches = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let what = format!("step {i}: conn {} `{}`", s.on, s.cmd.join(" "));
        let read_all = |conns: &mut Vec<Conn>| -> Vec<Result<Vec<u8>, String>> {
            conns[s.on].send_cmd(s.cmd).expect("send");
            let mut got = Vec::new();
            for &(from, n) in s.replies {
                for _ in 0..n {
                    got.push(
                        conns[from]
                            .read_reply()
                            .map(|(_, raw)| raw)
                            .map_err(|e| format!("conn {from}: {e}")),
                    );
                }
            }
            got
        };
        let expected = read_all(&mut rc);
        let actual = read_all(&mut tc);
        for (k, (e, a)) in expected.iter().zip(&actual).enumerate() {
            let e = e
                .as_ref()
                .unwrap_or_else(|err| panic!("{name} {what}: redis-server failed: {err}"));
            if s.compare == Compare::Exact && a.as_ref() != Ok(e) {
                let a = match a {
                    Ok(raw) => show_bytes(raw),
                    Err(err) => err.clone(),
                };
                mismatches.push(format!(
                    "{what}, reply {k}:\n    redis:  {}\n    tandem: {a}",
                    show_bytes(e)
                ));
            }
        }
    }
    phase(format!("{name}: nothing more may arrive"));
    for (who, conns) in [("redis", &mut rc), ("tandem", &mut tc)] {
        for (i, c) in conns.iter_mut().enumerate() {
            let (extra, _) = c.read_until_close(Duration::from_millis(300));
            if !extra.is_empty() {
                mismatches.push(format!("{who} conn {i}: unread {}", show_bytes(&extra)));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} mismatch(es) with redis-server:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Connection 0 subscribes, 1 publishes and inspects, 2 subscribes to everything and resets.
#[test]
fn resp2_replies_and_messages_match_redis() {
    const S: usize = 0;
    const P: usize = 1;
    const T: usize = 2;
    run_differential(
        "resp2",
        3,
        &[
            // Unsubscribing without subscriptions: one reply with a null name.
            step(S, &["UNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["PUNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["UNSUBSCRIBE", "x", "y"], &[(S, 2)]),
            step(S, &["SUBSCRIBE"], &[(S, 1)]),
            // One confirmation per name, duplicates included, with the running count.
            step(S, &["SUBSCRIBE", "news", "sport", "news"], &[(S, 3)]),
            step(S, &["PSUBSCRIBE", "h?llo", "n*"], &[(S, 2)]),
            // Subscribed mode: PING's own reply, and only a few commands allowed.
            step(S, &["PING"], &[(S, 1)]),
            step(S, &["PING", "hi"], &[(S, 1)]),
            step(S, &["PING", "a", "b"], &[(S, 1)]),
            step(S, &["GET", "k"], &[(S, 1)]),
            step(S, &["SET", "k", "v"], &[(S, 1)]),
            step(S, &["CLIENT", "ID"], &[(S, 1)]),
            step(S, &["PUBSUB", "NUMSUB", "news"], &[(S, 1)]),
            step(S, &["HELLO", "3"], &[(S, 1)]),
            step(S, &["MULTI"], &[(S, 1)]),
            step(S, &["PUBLISH", "news", "x"], &[(S, 1)]),
            step(S, &["SUBSCRIBE"], &[(S, 1)]),
            // Messages: the channel's subscribers first, then the patterns.
            step(P, &["PUBLISH", "news", "hello"], &[(P, 1), (S, 2)]),
            step(P, &["PUBLISH", "hello", "world"], &[(P, 1), (S, 1)]),
            step(P, &["PUBLISH", "other", "lost"], &[(P, 1)]),
            step(P, &["PUBLISH", "sport", "a\r\nb\0c"], &[(P, 1), (S, 1)]),
            step(P, &["PUBLISH", "news", ""], &[(P, 1), (S, 2)]),
            // Introspection.
            step(P, &["PUBSUB", "NUMSUB", "news", "sport", "none"], &[(P, 1)]),
            step(P, &["PUBSUB", "NUMSUB"], &[(P, 1)]),
            step(P, &["PUBSUB", "NUMPAT"], &[(P, 1)]),
            step(P, &["PUBSUB", "CHANNELS", "s*"], &[(P, 1)]),
            step(P, &["PUBSUB", "CHANNELS", "zzz*"], &[(P, 1)]),
            step(P, &["PUBSUB", "CHANNELS", "a", "b"], &[(P, 1)]),
            step(P, &["PUBSUB", "NUMPAT", "x"], &[(P, 1)]),
            step(P, &["PUBSUB", "NOPE"], &[(P, 1)]),
            step(P, &["PUBSUB"], &[(P, 1)]),
            step(P, &["PUBLISH", "a"], &[(P, 1)]),
            // Leaving: by name, then everything, counting down.
            step(S, &["UNSUBSCRIBE", "sport", "never"], &[(S, 2)]),
            step(P, &["PUBLISH", "sport", "gone"], &[(P, 1)]),
            step(S, &["UNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["PUNSUBSCRIBE", "nope"], &[(S, 1)]),
            step(S, &["PUNSUBSCRIBE"], &[(S, 2)]),
            // Out of subscribed mode: everything is allowed again.
            step(S, &["PING"], &[(S, 1)]),
            step(S, &["GET", "k"], &[(S, 1)]),
            step(P, &["PUBSUB", "NUMPAT"], &[(P, 1)]),
            // RESET leaves every subscription, without confirmations.
            step(T, &["PSUBSCRIBE", "*"], &[(T, 1)]),
            step(T, &["SUBSCRIBE", "t"], &[(T, 1)]),
            step(P, &["PUBLISH", "t", "m"], &[(P, 1), (T, 2)]),
            step(T, &["RESET"], &[(T, 1)]),
            step(P, &["PUBSUB", "NUMPAT"], &[(P, 1)]),
            step(P, &["PUBSUB", "NUMSUB", "t"], &[(P, 1)]),
            step(P, &["PUBLISH", "t", "m"], &[(P, 1)]),
            step(T, &["PING"], &[(T, 1)]),
            // QUIT is allowed while subscribed.
            step(T, &["SUBSCRIBE", "q"], &[(T, 1)]),
            step(T, &["QUIT"], &[(T, 1)]),
        ],
    );
}

/// After HELLO 3 confirmations and messages are push frames and every command is allowed.
#[test]
fn resp3_replies_and_messages_match_redis() {
    const S: usize = 0;
    const P: usize = 1;
    run_differential(
        "resp3",
        2,
        &[
            Step {
                compare: Compare::Skip,
                ..step(S, &["HELLO", "3"], &[(S, 1)])
            },
            step(S, &["UNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["SUBSCRIBE", "a", "b"], &[(S, 2)]),
            step(S, &["PSUBSCRIBE", "a*"], &[(S, 1)]),
            step(S, &["PING"], &[(S, 1)]),
            step(S, &["PING", "x"], &[(S, 1)]),
            step(S, &["GET", "k"], &[(S, 1)]),
            step(S, &["SET", "k", "v"], &[(S, 1)]),
            step(S, &["GET", "k"], &[(S, 1)]),
            step(S, &["PUBSUB", "NUMSUB", "a", "zz"], &[(S, 1)]),
            step(S, &["PUBLISH", "b", "to myself"], &[(S, 2)]),
            step(P, &["PUBLISH", "a", "m"], &[(P, 1), (S, 2)]),
            step(P, &["PUBLISH", "abc", "m2"], &[(P, 1), (S, 1)]),
            step(S, &["UNSUBSCRIBE", "a"], &[(S, 1)]),
            step(S, &["UNSUBSCRIBE", "b"], &[(S, 1)]),
            step(S, &["PUNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["UNSUBSCRIBE"], &[(S, 1)]),
            step(S, &["SUBSCRIBE", "c"], &[(S, 1)]),
            // RESET leaves the subscription and goes back to RESP2.
            step(S, &["RESET"], &[(S, 1)]),
            step(P, &["PUBSUB", "NUMSUB", "c"], &[(P, 1)]),
            step(S, &["SUBSCRIBE", "c"], &[(S, 1)]),
            step(P, &["PUBLISH", "c", "m3"], &[(P, 1), (S, 1)]),
            step(S, &["GET", "k"], &[(S, 1)]),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Tandem's own behaviour

#[test]
fn a_subscriber_that_never_reads_is_disconnected_at_the_limit_and_the_server_carries_on() {
    const LIMIT: &str = "1048576";
    let (t, _dir) = start_tandem(&["--pubsub-queue-bytes-max", LIMIT]);
    let mut p = t.conn();
    let mut calm = t.conn();

    phase("a subscriber to `flood` that never reads, and one to `calm` that does");
    let mut slow = t.conn();
    assert_eq!(
        slow.cmd(&["SUBSCRIBE", "flood"]),
        push(&["subscribe", "flood"]).with_count(1)
    );
    assert_eq!(
        calm.cmd(&["SUBSCRIBE", "calm"]),
        push(&["subscribe", "calm"]).with_count(1)
    );
    assert_eq!(numsub(&mut p, "flood"), 1);

    phase("publish 64 KiB messages until the slow subscriber is dropped");
    let payload = "x".repeat(64 << 10);
    let mut published = 0;
    let dropped = loop {
        let receivers = p.cmd(&["PUBLISH", "flood", &payload]).as_int().unwrap();
        published += 1;
        if receivers == 0 {
            break true;
        }
        // Socket buffers on both sides take a few MiB before the queue starts to fill.
        if published >= 2000 {
            break false;
        }
    };
    assert!(
        dropped,
        "still subscribed after {published} messages of 64 KiB"
    );
    eprintln!("dropped after {published} messages");

    phase("its connection was closed; the drop is counted and logged");
    let (_, closed) = slow.read_until_close(Duration::from_secs(20));
    assert!(closed, "the slow subscriber's connection must be closed");
    assert_eq!(
        info_field(&mut p, "stats", "client_output_buffer_limit_disconnections"),
        "1"
    );
    assert!(
        t.log_text().contains("pubsub-queue-bytes-max"),
        "the disconnection must be logged:\n{}",
        t.log_tail()
    );

    phase("the server and the other subscriber carry on");
    assert_eq!(p.cmd(&["PING"]), Frame::Simple("PONG".into()));
    p.ok(&["SET", "k", "v"]);
    assert_eq!(p.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(p.cmd(&["PUBLISH", "calm", "still here"]).as_int(), Some(1));
    assert_eq!(
        calm.read_reply().expect("message").0,
        push(&["message", "calm", "still here"])
    );
    assert_eq!(numsub(&mut p, "flood"), 0);
}

#[test]
fn the_subscription_limit_refuses_a_whole_command() {
    let (t, _dir) = start_tandem(&["--pubsub-subscriptions-max", "3"]);
    let mut s = t.conn();
    let mut p = t.conn();
    s.send_cmd(&["SUBSCRIBE", "a", "b"]).unwrap();
    assert_eq!(
        s.read_reply().unwrap().0,
        push(&["subscribe", "a"]).with_count(1)
    );
    assert_eq!(
        s.read_reply().unwrap().0,
        push(&["subscribe", "b"]).with_count(2)
    );

    phase("two more would make four: refused, nothing joined");
    let e = s.cmd(&["PSUBSCRIBE", "c*", "d*"]);
    let text = e
        .error_text()
        .unwrap_or_else(|| panic!("expected an error, got {e}"));
    assert!(
        text.starts_with("ERR too many subscriptions") && text.contains("pubsub-subscriptions-max"),
        "{text}"
    );
    assert_eq!(numpat(&mut p), 0);

    phase("one more fits; names already joined do not count");
    assert_eq!(
        s.cmd(&["PSUBSCRIBE", "c*"]),
        push(&["psubscribe", "c*"]).with_count(3)
    );
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "a"]),
        push(&["subscribe", "a"]).with_count(3)
    );
    assert!(s.cmd(&["SUBSCRIBE", "e"]).is_error());

    phase("CLIENT LIST shows the counts");
    let list = p.cmd(&["CLIENT", "LIST"]);
    let list = String::from_utf8_lossy(list.as_bulk().unwrap()).to_string();
    assert!(
        list.lines()
            .any(|l| l.contains("flags=P ") && l.contains(" sub=2 psub=1 ")),
        "{list}"
    );
}

#[test]
fn connections_that_go_away_leave_every_channel_and_pattern() {
    let (t, _dir) = start_tandem(&[]);
    let mut p = t.conn();

    phase("five connections subscribe to `gone` and `g*`");
    let mut subscribers: Vec<Conn> = (0..5).map(|_| t.conn()).collect();
    for s in &mut subscribers {
        s.send_cmd(&["SUBSCRIBE", "gone", "also"]).unwrap();
        s.read_reply().unwrap();
        s.read_reply().unwrap();
        assert_eq!(
            s.cmd(&["PSUBSCRIBE", "g*"]),
            push(&["psubscribe", "g*"]).with_count(3)
        );
    }
    assert_eq!(numsub(&mut p, "gone"), 5);
    assert_eq!(numpat(&mut p), 1);
    assert_eq!(p.cmd(&["PUBLISH", "gone", "m"]).as_int(), Some(10));
    assert_eq!(info_field(&mut p, "stats", "pubsub_channels"), "2");
    assert_eq!(info_field(&mut p, "stats", "pubsub_patterns"), "1");

    phase("one quits, two close their sockets, one leaves with unread messages");
    let mut quitter = subscribers.pop().unwrap();
    // Its two pending messages come before QUIT's reply.
    assert_eq!(
        quitter.read_reply().unwrap().0,
        push(&["message", "gone", "m"])
    );
    assert_eq!(
        quitter.read_reply().unwrap().0,
        push(&["pmessage", "g*", "gone", "m"])
    );
    assert_eq!(quitter.cmd(&["QUIT"]), Frame::ok());
    drop(subscribers.pop());
    drop(subscribers.pop());
    for _ in 0..20 {
        p.cmd(&["PUBLISH", "also", "unread"]);
    }
    drop(subscribers.pop());
    assert!(
        eventually(Duration::from_secs(10), || numsub(&mut p, "gone") == 1),
        "PUBSUB NUMSUB gone should drop to 1, is {}",
        numsub(&mut p, "gone")
    );

    phase("the last one goes: nothing is left");
    drop(subscribers.pop());
    assert!(
        eventually(Duration::from_secs(10), || numsub(&mut p, "gone") == 0),
        "PUBSUB NUMSUB gone should drop to 0"
    );
    assert_eq!(numsub(&mut p, "also"), 0);
    assert_eq!(numpat(&mut p), 0);
    assert_eq!(p.cmd(&["PUBSUB", "CHANNELS"]), Frame::Array(vec![]));
    assert_eq!(p.cmd(&["PUBLISH", "gone", "m"]).as_int(), Some(0));
    assert_eq!(info_field(&mut p, "stats", "pubsub_channels"), "0");
    assert_eq!(info_field(&mut p, "stats", "pubsub_patterns"), "0");
}

#[test]
fn messages_arrive_in_order_and_none_is_lost() {
    let (t, _dir) = start_tandem(&[]);
    let mut s = t.conn();
    let mut p = t.conn();
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "seq"]),
        push(&["subscribe", "seq"]).with_count(1)
    );

    phase("1000 messages, pipelined by the publisher");
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(common::encode_cmd(&["PUBLISH", "seq", &i.to_string()]));
    }
    p.send(&batch).unwrap();
    for _ in 0..1000 {
        assert_eq!(p.read_reply().unwrap().0, Frame::Integer(1));
    }
    for i in 0..1000 {
        assert_eq!(
            s.read_reply().unwrap().0,
            push(&["message", "seq", &i.to_string()])
        );
    }

    phase("a RESP3 subscriber gets messages between its own replies");
    let mut r = t.conn();
    r.cmd(&["HELLO", "3"]);
    assert_eq!(
        r.cmd(&["SUBSCRIBE", "seq"]),
        Frame::Push(vec![
            Frame::bulk("subscribe"),
            Frame::bulk("seq"),
            Frame::Integer(1)
        ])
    );
    assert_eq!(p.cmd(&["PUBLISH", "seq", "both"]).as_int(), Some(2));
    assert_eq!(s.read_reply().unwrap().0, push(&["message", "seq", "both"]));
    assert_eq!(
        r.read_reply().unwrap().0,
        Frame::Push(vec![
            Frame::bulk("message"),
            Frame::bulk("seq"),
            Frame::bulk("both")
        ])
    );
    r.ok(&["SET", "k", "v"]);
    assert_eq!(r.cmd(&["GET", "k"]), Frame::bulk("v"));

    phase("PUBSUB HELP lists what Tandem serves");
    let help = p.cmd(&["PUBSUB", "HELP"]);
    let lines: Vec<String> = help
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| match l {
            Frame::Simple(s) => s.clone(),
            other => panic!("{other}"),
        })
        .collect();
    assert!(lines[0].starts_with("PUBSUB <subcommand>"), "{lines:?}");
    for sub in ["CHANNELS", "NUMPAT", "NUMSUB", "HELP"] {
        assert!(lines.iter().any(|l| l.starts_with(sub)), "{sub}: {lines:?}");
    }
}

/// `[word, name, count]` as a subscribe confirmation carries it.
trait WithCount {
    fn with_count(self, n: i64) -> Frame;
}

impl WithCount for Frame {
    fn with_count(self, n: i64) -> Frame {
        match self {
            Frame::Array(mut v) => {
                v.push(Frame::Integer(n));
                Frame::Array(v)
            }
            other => other,
        }
    }
}
