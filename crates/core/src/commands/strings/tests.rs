//! String command semantics beyond the recorded Redis replies (`tests/golden.rs` covers those):
//! checksums on the way in and out, the CORRUPT path of every reading and deriving command,
//! expired keys treated as absent by writes.

use crate::testkit::*;
use crate::Frame;
use tandem_checksum::Algorithm;

#[test]
fn get_set_basics() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["GET", "k"]), nil());
    assert_eq!(h.run(&["SET", "k", "v"]), ok());
    assert_eq!(h.run(&["get", "k"]), bulk("v"));
    assert_eq!(
        h.run(&["set", "k"]),
        err("ERR wrong number of arguments for 'set' command")
    );
}

/// Sets `key` to `value` and flips a byte of the stored value.
fn corrupted(h: &mut Harness, key: &str, value: &str) {
    assert_eq!(h.run(&["SET", key, value]), ok());
    assert!(h.ks.debug_corrupt(key.as_bytes()));
}

fn assert_corrupt(reply: &Frame, key: &str) {
    let text = error_text(reply);
    assert_eq!(
        text,
        format!("CORRUPT value of key '{key}' failed its sha256 checksum")
    );
}

#[test]
fn every_reading_command_refuses_a_corrupt_value() {
    let reads: &[&[&str]] = &[
        &["GET", "k"],
        &["MGET", "k"],
        &["STRLEN", "k"],
        &["GETRANGE", "k", "0", "-1"],
        &["SUBSTR", "k", "0", "0"],
        &["GETEX", "k"],
    ];
    for (i, cmd) in reads.iter().enumerate() {
        let mut h = Harness::new();
        corrupted(&mut h, "k", "12345");
        assert_corrupt(&h.run(cmd), "k");
        assert_eq!(h.ks.integrity().corrupt_detected, 1, "{cmd:?} (#{i})");
    }
}

#[test]
fn mget_with_one_corrupt_value_returns_no_values_at_all() {
    let mut h = Harness::new();
    h.run(&["SET", "good", "fine"]);
    corrupted(&mut h, "bad", "value");
    assert_corrupt(&h.run(&["MGET", "good", "bad", "missing"]), "bad");
    assert_eq!(
        h.run(&["MGET", "good", "missing"]),
        array(vec![bulk("fine"), nil()])
    );
}

/// Commands that would return the old value or derive a new one from it fail with CORRUPT and
/// leave the key exactly as it was (still corrupt, same deadline).
#[test]
fn deriving_and_old_value_commands_leave_a_corrupt_key_unchanged() {
    let writes: &[&[&str]] = &[
        &["GETSET", "k", "new"],
        &["GETDEL", "k"],
        &["GETEX", "k", "PERSIST"],
        &["GETEX", "k", "EX", "5"],
        &["SET", "k", "new", "GET"],
        &["SET", "k", "new", "NX", "GET"],
        &["APPEND", "k", "x"],
        &["INCR", "k"],
        &["DECR", "k"],
        &["INCRBY", "k", "2"],
        &["DECRBY", "k", "2"],
        &["INCRBYFLOAT", "k", "1.5"],
        &["SETRANGE", "k", "0", "x"],
        &["SETRANGE", "k", "0", ""],
    ];
    for cmd in writes {
        let mut h = Harness::new();
        h.run(&["SET", "k", "10", "EX", "100"]);
        assert!(h.ks.debug_corrupt(b"k"));
        assert_corrupt(&h.run(cmd), "k");
        assert_eq!(h.ks.integrity().corrupt_detected, 1, "{cmd:?}");
        assert_eq!(h.run(&["TTL", "k"]), int(100), "{cmd:?} kept the deadline");
        assert_corrupt(&h.run(&["GET", "k"]), "k");
    }
}

#[test]
fn overwriting_a_corrupt_value_needs_no_verification() {
    for cmd in [
        &["SET", "k", "fresh"][..],
        &["MSET", "k", "fresh"],
        &["SETEX", "k", "10", "fresh"],
    ] {
        let mut h = Harness::new();
        corrupted(&mut h, "k", "old");
        assert_eq!(h.run(cmd), ok());
        assert_eq!(h.run(&["GET", "k"]), bulk("fresh"));
        assert_eq!(h.ks.integrity().corrupt_detected, 0);
    }
}

#[test]
fn corrupt_key_names_are_escaped() {
    let mut h = Harness::new();
    h.run_bytes(&[b"SET", b"a\r\nb'", b"v"]);
    assert!(h.ks.debug_corrupt(b"a\r\nb'"));
    assert_eq!(
        h.run_bytes(&[b"GET", b"a\r\nb'"]),
        err("CORRUPT value of key 'a\\x0d\\x0ab\\'' failed its sha256 checksum")
    );
}

#[test]
fn client_values_keep_their_parse_time_checksum() {
    let mut h = Harness::new();
    h.algorithm = Algorithm::Md5;
    let args: Vec<bytes::Bytes> = ["SET", "k", "v"]
        .iter()
        .map(|s| bytes::Bytes::from(*s))
        .collect();
    let Some(Ok(crate::Command::Write(w))) = crate::parse(&args, &h.ctx()) else {
        panic!()
    };
    // The batch says sha256, but a client value keeps the digest computed at parse (md5).
    h.ks.apply(&crate::Batch::single(h.now_ms, Algorithm::Sha256, w));
    h.algorithm = Algorithm::Sha256;
    let reply = h.run(&["DIGEST.GET", "k"]);
    assert_eq!(
        reply,
        array(vec![
            bulk("v"),
            bulk("md5"),
            bulk("9e3669d19b675bd57058fd4664205d2a")
        ])
    );
}

#[test]
fn derived_values_get_the_batch_algorithm() {
    let mut h = Harness::new();
    h.algorithm = Algorithm::Crc32c;
    for cmd in [
        &["INCR", "a"][..],
        &["APPEND", "b", "x"],
        &["SETRANGE", "c", "1", "x"],
        &["INCRBYFLOAT", "d", "1.5"],
    ] {
        h.run(cmd);
        let Frame::Array(parts) = h.run(&["DIGEST.GET", cmd[1]]) else {
            panic!()
        };
        assert_eq!(parts[1], bulk("crc32c"), "{cmd:?}");
    }
}

#[test]
fn writes_treat_expired_keys_as_absent() {
    let mut h = Harness::new();
    let cases: &[(&[&str], Frame)] = &[
        (&["SET", "k", "new", "NX"], ok()),
        (&["SET", "k", "new", "XX"], nil()),
        (&["SET", "k", "new", "GET"], nil()),
        (&["SETNX", "k", "new"], int(1)),
        (&["GETSET", "k", "new"], nil()),
        (&["GETDEL", "k"], nil()),
        (&["GETEX", "k", "PERSIST"], nil()),
        (&["APPEND", "k", "new"], int(3)),
        (&["INCR", "k"], int(1)),
        (&["INCRBYFLOAT", "k", "2"], bulk("2")),
        (&["SETRANGE", "k", "1", "x"], int(2)),
        (&["MSETNX", "k", "1"], int(1)),
    ];
    for (cmd, want) in cases {
        h.run(&["SET", "k", "old", "PX", "10"]);
        h.advance_ms(10);
        assert_eq!(&h.run(cmd), want, "{cmd:?}");
        // No write resurrected the old deadline.
        let ttl = h.run(&["TTL", "k"]);
        assert!(ttl == int(-1) || ttl == int(-2), "{cmd:?}: {ttl:?}");
        h.run(&["DEL", "k"]);
    }
}

#[test]
fn set_keepttl_keeps_the_deadline_and_plain_set_clears_it() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v", "EX", "50"]);
    h.run(&["SET", "k", "v2", "KEEPTTL"]);
    assert_eq!(h.run(&["TTL", "k"]), int(50));
    assert_eq!(h.ks.expires_len(), 1);
    h.run(&["SET", "k", "v3"]);
    assert_eq!(h.run(&["TTL", "k"]), int(-1));
    assert_eq!(h.ks.expires_len(), 0);
}

#[test]
fn set_with_a_past_deadline_leaves_no_key() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert_eq!(h.run(&["SET", "k", "v", "PXAT", "1"]), ok());
    assert_eq!(h.ks.len(), 0);
    assert_eq!(h.ks.expires_len(), 0);
}

#[test]
fn relative_expiries_become_absolute_at_parse_time() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v", "EX", "10"]);
    assert_eq!(h.run(&["PEXPIRETIME", "k"]), int(T0_MS + 10_000));
    h.run(&["PSETEX", "k", "5", "v"]);
    assert_eq!(h.run(&["PEXPIRETIME", "k"]), int(T0_MS + 5));
    h.run(&["GETEX", "k", "PX", "7"]);
    assert_eq!(h.run(&["PEXPIRETIME", "k"]), int(T0_MS + 7));
}

#[test]
fn getex_exat_in_the_past_returns_the_value_then_deletes() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert_eq!(h.run(&["GETEX", "k", "EXAT", "1"]), bulk("v"));
    assert_eq!(h.ks.len(), 0);
}

#[test]
fn setrange_and_append_respect_the_512_mib_limit() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(&["SETRANGE", "k", "536870912", "x"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(h.run(&["SETRANGE", "k", "9223372036854775807", ""]), int(0));
    assert_eq!(
        h.run(&["SETRANGE", "k", "9223372036854775807", "x"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(h.ks.len(), 0);
}

#[test]
fn incr_on_binary_and_huge_values_is_an_error_not_a_panic() {
    let mut h = Harness::new();
    h.run_bytes(&[b"SET", b"k", b"\xff\xfe"]);
    assert_eq!(
        h.run(&["INCR", "k"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        h.run(&["INCRBYFLOAT", "k", "1"]),
        err("ERR value is not a valid float")
    );
    let huge = "9".repeat(10_000);
    h.run(&["SET", "k", &huge]);
    assert_eq!(
        h.run(&["INCRBYFLOAT", "k", "1"]),
        err("ERR value is not a valid float")
    );
}

#[test]
fn multi_batches_apply_in_order_with_reads_seeing_earlier_writes() {
    let mut h = Harness::new();
    let replies = h.exec(&[
        &["SET", "k", "1"],
        &["INCR", "k"],
        &["GET", "k"],
        &["APPEND", "k", "0"],
        &["MGET", "k", "nope"],
        &["INCR", "nope2"],
        &["GETDEL", "k"],
        &["EXISTS", "k"],
    ]);
    assert_eq!(
        replies,
        vec![
            ok(),
            int(2),
            bulk("2"),
            int(2),
            array(vec![bulk("20"), nil()]),
            int(1),
            bulk("20"),
            int(0),
        ]
    );
}

#[test]
fn an_error_inside_a_batch_does_not_stop_the_others() {
    // Redis EXEC semantics: a command that fails at run time fails alone.
    let mut h = Harness::new();
    h.run(&["SET", "s", "abc"]);
    let replies = h.exec(&[&["INCR", "s"], &["SET", "t", "1"], &["INCR", "t"]]);
    assert_eq!(
        replies,
        vec![
            err("ERR value is not an integer or out of range"),
            ok(),
            int(2)
        ]
    );
}
