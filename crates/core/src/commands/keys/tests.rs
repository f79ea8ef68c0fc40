//! Key command semantics beyond the recorded Redis replies (`tests/golden.rs` covers those):
//! expiry decided by the batch clock, SCAN's cursor, RENAME carrying checksums.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::testkit::*;
use crate::Frame;

#[test]
fn expiry_is_decided_by_the_clock_passed_in() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    assert_eq!(h.run(&["EXPIRE", "a", "10"]), int(1));
    assert_eq!(h.run(&["TTL", "a"]), int(10));
    h.advance_ms(9_499);
    assert_eq!(h.run(&["TTL", "a"]), int(1));
    assert_eq!(h.run(&["PTTL", "a"]), int(501));
    h.advance_ms(500);
    assert_eq!(h.run(&["PTTL", "a"]), int(1));
    assert_eq!(h.run(&["TTL", "a"]), int(0));
    h.advance_ms(1);
    for cmd in [
        &["GET", "a"][..],
        &["TTL", "a"],
        &["EXISTS", "a"],
        &["TYPE", "a"],
    ] {
        let want = match cmd[0] {
            "GET" => nil(),
            "TTL" => int(-2),
            "EXISTS" => int(0),
            _ => Frame::Simple("none".into()),
        };
        assert_eq!(h.run(cmd), want, "{cmd:?}");
    }
    // Hidden, not deleted: only an applied deletion removes it (DBSIZE counts it, as Redis).
    assert_eq!(h.run(&["DBSIZE"]), int(1));
    assert_eq!(
        h.run(&["DEL", "a"]),
        int(0),
        "DEL of an expired key deletes it but counts 0"
    );
    assert_eq!(h.run(&["DBSIZE"]), int(0));
}

#[test]
fn expire_conditions_compare_absolute_deadlines() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert_eq!(
        h.run(&["PEXPIREAT", "k", &(T0_MS + 1000).to_string(), "GT"]),
        int(0)
    );
    assert_eq!(
        h.run(&["PEXPIREAT", "k", &(T0_MS + 1000).to_string(), "LT"]),
        int(1)
    );
    assert_eq!(
        h.run(&["PEXPIRE", "k", "1000", "GT"]),
        int(0),
        "equal is not greater"
    );
    assert_eq!(h.run(&["PEXPIRE", "k", "1001", "GT", "XX"]), int(1));
    assert_eq!(
        h.run(&["PEXPIRE", "k", "1001", "LT"]),
        int(0),
        "equal is not less"
    );
    assert_eq!(
        h.run(&["PEXPIRE", "k", "-5", "LT"]),
        int(1),
        "a past deadline deletes"
    );
    assert_eq!(h.ks.len(), 0);
    assert_eq!(h.ks.expires_len(), 0);
}

#[test]
fn rename_carries_value_checksum_and_deadline() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "v", "EX", "100"]);
    assert!(h.ks.debug_corrupt(b"a"));
    assert_eq!(h.run(&["RENAME", "a", "b"]), ok());
    assert_eq!(h.run(&["TTL", "b"]), int(100));
    assert_eq!(h.ks.expires_len(), 1);
    // The corruption travels with the value: renaming never launders bad bytes.
    assert!(error_text(&h.run(&["GET", "b"])).starts_with("CORRUPT value of key 'b'"));
    assert_eq!(
        h.run(&["RENAME", "b", "c"]),
        ok(),
        "moving needs no verification"
    );
}

#[test]
fn rename_over_a_key_with_a_deadline_drops_that_deadline() {
    let mut h = Harness::new();
    h.run(&["SET", "src", "v"]);
    h.run(&["SET", "dst", "w", "EX", "100"]);
    assert_eq!(h.run(&["RENAME", "src", "dst"]), ok());
    assert_eq!(h.run(&["TTL", "dst"]), int(-1));
    assert_eq!(h.ks.expires_len(), 0);
    assert!(h.ks.due_for_expiry(i64::MAX, 10).is_empty());
}

#[test]
fn keys_and_scan_hide_expired_keys() {
    let mut h = Harness::new();
    h.run(&["SET", "live", "1"]);
    h.run(&["SET", "dead", "1", "PX", "1"]);
    h.advance_ms(1);
    assert_eq!(h.run(&["KEYS", "*"]), array(vec![bulk("live")]));
    assert_eq!(
        h.run(&["SCAN", "0", "COUNT", "100"]),
        array(vec![bulk("0"), array(vec![bulk("live")])])
    );
    assert_eq!(h.run(&["RANDOMKEY"]), bulk("live"));
    assert_eq!(h.ks.due_for_expiry(h.now_ms, 10), vec![Bytes::from("dead")]);
}

#[test]
fn randomkey_finds_keys_and_gives_up_on_only_expired_ones() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["RANDOMKEY"]), nil());
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        h.run(&["SET", &format!("k{i}"), "v"]);
    }
    for _ in 0..200 {
        let Frame::Bulk(k) = h.run(&["RANDOMKEY"]) else {
            panic!()
        };
        seen.insert(k);
    }
    assert!(
        seen.len() > 5,
        "RANDOMKEY spreads over keys: {}",
        seen.len()
    );
    h.run(&["FLUSHALL"]);
    for i in 0..5 {
        h.run(&["SET", &format!("k{i}"), "v", "PX", "1"]);
    }
    h.advance_ms(1);
    assert_eq!(h.run(&["RANDOMKEY"]), nil());
}

/// Runs a full SCAN, calling `between` after each call; returns every key seen (with
/// repetitions) and the number of calls.
fn full_scan(
    h: &mut Harness,
    count: &str,
    mut between: impl FnMut(&mut Harness, usize),
) -> (Vec<Bytes>, usize) {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        let Frame::Array(reply) = h.run(&["SCAN", &cursor, "COUNT", count]) else {
            panic!()
        };
        let (Frame::Bulk(next), Frame::Array(keys)) = (&reply[0], &reply[1]) else {
            panic!()
        };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!() };
            seen.push(k.clone());
        }
        calls += 1;
        cursor = String::from_utf8(next.to_vec()).unwrap();
        assert!(cursor.parse::<u64>().is_ok(), "cursor is a plain integer");
        if cursor == "0" {
            return (seen, calls);
        }
        between(h, calls);
        assert!(calls < 100_000);
    }
}

#[test]
fn scan_returns_every_key_exactly_once() {
    let mut h = Harness::new();
    for i in 0..1000 {
        h.run(&["SET", &format!("key:{i}"), "v"]);
    }
    let (seen, calls) = full_scan(&mut h, "7", |_, _| {});
    assert_eq!(seen.len(), 1000);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 1000);
    assert!(calls >= 1000 / 7, "COUNT bounds the work per call: {calls}");
}

/// The guarantee: a key present for the whole iteration is returned (exactly once), whatever
/// is inserted and deleted between calls; a key deleted or inserted mid-way appears at most once.
#[test]
fn scan_guarantee_holds_under_concurrent_inserts_and_deletes() {
    let mut h = Harness::new();
    for i in 0..500 {
        h.run(&["SET", &format!("stable:{i}"), "v"]);
        h.run(&["SET", &format!("doomed:{i}"), "v"]);
    }
    let (seen, _) = full_scan(&mut h, "5", |h, call| {
        // Between calls: delete some doomed keys, insert new ones, rewrite stable ones.
        for j in 0..3 {
            let n = call * 3 + j;
            h.run(&["DEL", &format!("doomed:{n}")]);
            h.run(&["SET", &format!("new:{n}"), "v"]);
            h.run(&["SET", &format!("stable:{}", n % 500), "v2"]);
        }
    });
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no key is returned twice");
    for i in 0..500 {
        assert!(
            unique.contains(&Bytes::from(format!("stable:{i}"))),
            "stable:{i} missed"
        );
    }
}

#[test]
fn scan_match_and_type_filter_after_visiting() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.run(&["SET", &format!("a:{i}"), "v"]);
        h.run(&["SET", &format!("b:{i}"), "v"]);
    }
    let Frame::Array(reply) = h.run(&["SCAN", "0", "MATCH", "a:*", "COUNT", "1000"]) else {
        panic!()
    };
    let Frame::Array(keys) = &reply[1] else {
        panic!()
    };
    assert_eq!(keys.len(), 50);
    let Frame::Array(reply) = h.run(&["SCAN", "0", "TYPE", "hash", "COUNT", "1000"]) else {
        panic!()
    };
    assert_eq!(reply[1], array(vec![]));
    // With COUNT 1 a filtered page may be empty but the cursor still moves.
    let Frame::Array(reply) = h.run(&["SCAN", "0", "MATCH", "zzz", "COUNT", "1"]) else {
        panic!()
    };
    assert_ne!(reply[0], bulk("0"));
}

#[test]
fn scan_cursors_past_the_last_key_finish() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert_eq!(
        h.run(&["SCAN", "18446744073709551615"]),
        array(vec![bulk("0"), array(vec![])])
    );
}

#[test]
fn flush_removes_everything_including_deadlines() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1", "EX", "10"]);
    h.run(&["SET", "b", "1"]);
    assert_eq!(h.run(&["FLUSHDB", "ASYNC"]), ok());
    assert_eq!((h.ks.len(), h.ks.expires_len()), (0, 0));
    assert!(h.ks.due_for_expiry(i64::MAX, 10).is_empty());
}
