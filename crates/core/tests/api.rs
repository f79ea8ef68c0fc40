//! The crate used the way the server uses it: parse on the connection, reads at once, writes
//! as batches through the log's encoding, MULTI/EXEC as one batch, the active expiry cycle.

use bytes::Bytes;
use tandem_checksum::Algorithm;
use tandem_core::{
    arity_ok, glob_match, lookup, parse, wrong_arity, Batch, Command, Frame, Keyspace, Op,
    ParseContext, COMMANDS,
};

const NOW_MS: i64 = 1_767_225_600_000;

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect()
}

fn ctx(now_ms: i64) -> ParseContext {
    ParseContext {
        algorithm: Algorithm::Sha256,
        now_ms,
    }
}

/// What the primary does with one command; returns the reply.
fn serve(ks: &mut Keyspace, parts: &[&str], now_ms: i64) -> Frame {
    match parse(&args(parts), &ctx(now_ms)) {
        None => panic!("{parts:?} is a server command"),
        Some(Err(e)) => e,
        Some(Ok(Command::Read(r))) => ks.read(&r, now_ms),
        Some(Ok(Command::Write(w))) => {
            let batch = Batch::single(now_ms, Algorithm::Sha256, w);
            let entry = postcard::to_stdvec(&batch).unwrap();
            let committed: Batch = postcard::from_bytes(&entry).unwrap();
            ks.apply(&committed).remove(0)
        }
    }
}

#[test]
fn server_commands_are_left_to_the_server() {
    for name in [
        "PING",
        "multi",
        "EXEC",
        "info",
        "CLIENT",
        "nosuchcommand",
        "",
    ] {
        assert!(parse(&args(&[name]), &ctx(NOW_MS)).is_none(), "{name}");
    }
    assert!(parse(&[], &ctx(NOW_MS)).is_none());
    // But the table knows them, for COMMAND and generic arity checks.
    let ping = lookup(b"PING").unwrap();
    assert!(arity_ok(ping, 1) && arity_ok(ping, 2));
    assert!(COMMANDS.len() > 60);
    assert_eq!(
        wrong_arity("ping"),
        Frame::error("ERR wrong number of arguments for 'ping' command")
    );
    assert!(glob_match(b"user:*", b"user:1", false));
}

#[test]
fn multi_exec_is_one_atomic_batch_with_reads() {
    let mut ks = Keyspace::new();
    serve(&mut ks, &["SET", "balance", "10"], NOW_MS);
    let queued = [
        &["DECRBY", "balance", "3"][..],
        &["INCRBY", "other", "3"],
        &["MGET", "balance", "other"],
        &["TTL", "balance"],
    ];
    let ops = queued
        .iter()
        .map(|parts| match parse(&args(parts), &ctx(NOW_MS)) {
            Some(Ok(Command::Write(w))) => Op::Write(w),
            Some(Ok(Command::Read(r))) => Op::Read(r),
            other => panic!("{other:?}"),
        })
        .collect();
    let batch = Batch {
        now_ms: NOW_MS,
        algorithm: Algorithm::Sha256,
        ops,
    };
    let exec_reply = Frame::Array(ks.apply(&batch));
    assert_eq!(
        exec_reply,
        Frame::Array(vec![
            Frame::Integer(7),
            Frame::Integer(3),
            Frame::Array(vec![Frame::bulk("7"), Frame::bulk("3")]),
            Frame::Integer(-1),
        ])
    );
}

#[test]
fn the_active_expiry_cycle_deletes_due_keys_on_every_node() {
    let mut primary = Keyspace::new();
    let mut replica = Keyspace::new();
    for ks in [&mut primary, &mut replica] {
        serve(ks, &["SET", "session", "x", "PX", "100"], NOW_MS);
        serve(ks, &["SET", "keep", "y"], NOW_MS);
    }
    let later = NOW_MS + 100;
    // Replicas hide the key as soon as it is logically expired...
    assert_eq!(serve(&mut replica, &["GET", "session"], later), Frame::Null);
    assert_eq!(replica.len(), 2);
    // ...and delete it when the primary's expiry batch arrives.
    let due = primary.due_for_expiry(later, 100);
    assert_eq!(due, vec![Bytes::from_static(b"session")]);
    let batch = Batch {
        now_ms: later,
        algorithm: Algorithm::Sha256,
        ops: vec![Op::ExpireKeys(due)],
    };
    assert_eq!(primary.apply(&batch), replica.apply(&batch));
    assert_eq!((primary.len(), replica.len()), (1, 1));
    assert_eq!((primary.expires_len(), replica.expires_len()), (0, 0));
}

#[test]
fn a_snapshot_restores_an_identical_keyspace() {
    let mut ks = Keyspace::new();
    for i in 0..100 {
        serve(&mut ks, &["SET", &format!("k{i}"), &"v".repeat(i)], NOW_MS);
    }
    serve(&mut ks, &["EXPIRE", "k5", "100"], NOW_MS);
    let mut records = Vec::new();
    ks.for_each_record(|r| records.push(r.to_vec()));
    let mut restored = Keyspace::new();
    for r in &records {
        restored.load_record(r).unwrap();
    }
    assert_eq!((restored.len(), restored.expires_len()), (100, 1));
    assert_eq!(
        serve(&mut restored, &["DIGEST.GET", "k3"], NOW_MS),
        serve(&mut ks, &["DIGEST.GET", "k3"], NOW_MS)
    );
    restored.clear();
    assert!(restored.is_empty());
}
