//! Keyspace-level tests: the expiry cycle, snapshot records, determinism of apply, memory.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tandem_checksum::{Algorithm, Checksum};

use super::*;
use crate::testkit::*;
use crate::KeyState;

fn keys(v: &[&str]) -> Vec<Bytes> {
    v.iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect()
}

#[test]
fn due_for_expiry_is_exact_and_ordered_by_deadline() {
    let mut h = Harness::new();
    h.run(&["SET", "late", "v", "PX", "30"]);
    h.run(&["SET", "early", "v", "PX", "10"]);
    h.run(&["SET", "never", "v"]);
    assert!(h.ks.due_for_expiry(T0_MS + 9, 10).is_empty());
    assert_eq!(h.ks.due_for_expiry(T0_MS + 10, 10), keys(&["early"]));
    assert_eq!(
        h.ks.due_for_expiry(T0_MS + 30, 10),
        keys(&["early", "late"])
    );
    assert_eq!(h.ks.due_for_expiry(T0_MS + 30, 1), keys(&["early"]));
}

#[test]
fn keys_found_expired_by_reads_come_first() {
    let mut h = Harness::new();
    for i in 0..10 {
        h.run(&["SET", &format!("k{i}"), "v", "PX", &(10 + i).to_string()]);
    }
    h.advance_ms(100);
    assert_eq!(h.run(&["GET", "k7"]), nil());
    assert_eq!(
        h.run(&["GET", "k7"]),
        nil(),
        "recorded twice, returned once"
    );
    let due = h.ks.due_for_expiry(h.now_ms, 3);
    assert_eq!(due, keys(&["k7", "k0", "k1"]));
    // The read-found list was consumed; the index still finds everything.
    assert_eq!(h.ks.due_for_expiry(h.now_ms, 100).len(), 10);
}

#[test]
fn lazily_found_keys_are_capped() {
    let mut h = Harness::new();
    for i in 0..(LAZY_EXPIRED_MAX + 10) {
        h.run(&["SET", &format!("k{i}"), "v", "PX", "1"]);
    }
    h.advance_ms(1);
    for i in 0..(LAZY_EXPIRED_MAX + 10) {
        h.run(&["GET", &format!("k{i}")]);
    }
    assert_eq!(h.ks.lazy_expired.lock().len(), LAZY_EXPIRED_MAX);
}

#[test]
fn expire_keys_deletes_only_keys_still_expired_at_the_batch_time() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "v", "PX", "10"]);
    h.run(&["SET", "b", "v", "PX", "10"]);
    h.run(&["SET", "c", "v", "PX", "10"]);
    h.advance_ms(10);
    let due = h.ks.due_for_expiry(h.now_ms, 10);
    assert_eq!(due.len(), 3);
    // Before the expiry batch commits, b is rewritten and c gets a new deadline.
    h.run(&["SET", "b", "fresh"]);
    h.run(&["SET", "c", "v2", "PX", "1000"]);
    let replies = h.ks.apply(&Batch {
        now_ms: h.now_ms,
        algorithm: Algorithm::Sha256,
        ops: vec![Op::ExpireKeys(due.clone()), Op::ExpireKeys(keys(&["nope"]))],
    });
    assert_eq!(replies, vec![int(1), int(0)]);
    assert_eq!(h.run(&["GET", "b"]), bulk("fresh"));
    assert_eq!(h.run(&["GET", "c"]), bulk("v2"));
    assert_eq!((h.ks.len(), h.ks.expires_len()), (2, 1));
    // A batch whose clock is earlier than a key's deadline keeps it (the primary's clock rules).
    let replies = h.ks.apply(&Batch {
        now_ms: h.now_ms,
        algorithm: Algorithm::Sha256,
        ops: vec![Op::ExpireKeys(keys(&["c"]))],
    });
    assert_eq!(replies, vec![int(0)]);
}

#[test]
fn records_round_trip_every_field() {
    let mut h = Harness::new();
    h.run(&["SET", "plain", "v"]);
    h.run(&["SET", "ttl", "v", "PX", "1000"]);
    h.run_bytes(&[b"SET", b"", b""]);
    h.run_bytes(&[b"SET", b"bin\x00\xff", b"\x00\x01\x02"]);
    for (alg, key) in [
        (Algorithm::Sha512, "s512"),
        (Algorithm::Crc32c, "crc"),
        (Algorithm::Xxh3_64, "xxh"),
    ] {
        h.algorithm = alg;
        h.run(&["SET", key, "value"]);
    }
    let mut records = Vec::new();
    h.ks.for_each_record(|r| records.push(r.to_vec()));
    assert_eq!(records.len(), 7);
    let mut copy = Keyspace::new();
    for r in &records {
        copy.load_record(r).unwrap();
    }
    let mut again = Vec::new();
    copy.for_each_record(|r| again.push(r.to_vec()));
    assert_eq!(records, again);
    assert_eq!((copy.len(), copy.expires_len()), (7, 1));
    assert_eq!(copy.read(&get("ttl"), h.now_ms + 999), bulk("v"));
    assert_eq!(copy.read(&get("ttl"), h.now_ms + 1000), nil());
    assert_eq!(copy.read(&get("s512"), h.now_ms), bulk("value"));
}

fn get(key: &str) -> crate::ReadCmd {
    crate::ReadCmd::String(crate::commands::StringRead::Get(Bytes::copy_from_slice(
        key.as_bytes(),
    )))
}

fn one_record(h: &mut Harness) -> Vec<u8> {
    let mut records = Vec::new();
    h.ks.for_each_record(|r| records.push(r.to_vec()));
    assert_eq!(records.len(), 1);
    records.remove(0)
}

#[test]
fn record_layout_is_as_documented() {
    let mut h = Harness::new();
    h.algorithm = Algorithm::Crc32c;
    h.run(&["SET", "k", "abc", "PXAT", "4102444800000"]);
    let r = one_record(&mut h);
    let mut want = vec![1u8];
    want.extend_from_slice(&1u32.to_le_bytes());
    want.push(b'k');
    want.extend_from_slice(&3u32.to_le_bytes());
    want.extend_from_slice(b"abc");
    want.push(7); // crc32c
    want.push(4);
    want.extend_from_slice(&[0x36, 0x4b, 0x3f, 0xb7]);
    want.extend_from_slice(&4_102_444_800_000i64.to_le_bytes());
    assert_eq!(r, want);
}

#[test]
fn a_record_whose_value_fails_its_digest_is_refused_by_name() {
    let mut h = Harness::new();
    h.run(&["SET", "user:7", "value"]);
    assert!(h.ks.debug_corrupt(b"user:7"));
    let r = one_record(&mut h);
    let mut ks = Keyspace::new();
    assert_eq!(
        ks.load_record(&r),
        Err(LoadError::DigestMismatch {
            key: "user:7".into(),
            algorithm: Algorithm::Sha256
        })
    );
    assert!(ks
        .load_record(&r)
        .unwrap_err()
        .to_string()
        .contains("'user:7'"));
    assert_eq!(ks.len(), 0);
}

/// Start-up with no better copy: the damaged key is loaded but answers CORRUPT, never its bytes,
/// and a malformed record is still refused.
#[test]
fn a_corrupt_value_can_be_loaded_kept_from_clients() {
    let mut h = Harness::new();
    h.run(&["SET", "user:7", "value"]);
    assert!(h.ks.debug_corrupt(b"user:7"));
    let r = one_record(&mut h);
    let mut ks = Keyspace::new();
    assert_eq!(ks.load_record_keeping_corrupt(&r), Ok(false));
    assert_eq!(ks.len(), 1);
    match ks.read(&get("user:7"), 0) {
        Frame::Error(e) => assert!(e.starts_with("CORRUPT") && e.contains("user:7"), "{e}"),
        other => panic!("the damaged bytes must not be returned: {other:?}"),
    }
    let mut healthy = Harness::new();
    healthy.run(&["SET", "k", "v"]);
    let good = one_record(&mut healthy);
    assert_eq!(ks.load_record_keeping_corrupt(&good), Ok(true));
    assert!(ks
        .load_record_keeping_corrupt(&good[..good.len() - 1])
        .is_err());
}

#[test]
fn malformed_records_are_errors_never_panics() {
    let mut h = Harness::new();
    h.run(&["SET", "key", "value", "EX", "100"]);
    let good = one_record(&mut h);
    let mut ks = Keyspace::new();
    // Every truncation.
    for len in 0..good.len() {
        assert!(ks.load_record(&good[..len]).is_err(), "truncated to {len}");
    }
    // Every single-byte change: refused, except in the key and the expiry, which the value's
    // digest does not cover (the snapshot's block CRC does).
    let key_field = 5..8;
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let mut ks = Keyspace::new();
            let uncovered = key_field.contains(&i) || i >= good.len() - 8;
            assert_eq!(
                ks.load_record(&bad).is_ok(),
                uncovered,
                "byte {i} ^ {flip:#x}"
            );
        }
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        ks.load_record(&trailing),
        Err(LoadError::TrailingBytes { .. })
    ));
    assert_eq!(ks.load_record(&[2]), Err(LoadError::UnsupportedVersion(2)));
    assert!(matches!(
        ks.load_record(&[1, 0xff, 0xff, 0xff, 0xff]),
        Err(LoadError::TooLong { .. })
    ));
    // Random garbage.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..10_000 {
        let len = rng.gen_range(0..64);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && !junk.is_empty() {
            junk[0] = RECORD_VERSION;
        }
        let _ = ks.load_record(&junk);
    }
    assert!(ks.load_record(&good).is_ok());
    assert!(matches!(
        ks.load_record(&good),
        Err(LoadError::DuplicateKey { .. })
    ));
}

/// Random command mixes applied to two keyspaces (one through postcard, as replicas receive
/// them) end in identical states and identical replies.
#[test]
fn apply_is_deterministic() {
    let seed = 0x7a6e_d3a5_u64;
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut primary = Harness::new();
    let mut replica = Keyspace::new();
    let words = ["a", "b", "c", "d", "10", "-3", "1.5", "x y", ""];
    for step in 0..3000 {
        let k = format!("k{}", rng.gen_range(0..20));
        let k2 = format!("k{}", rng.gen_range(0..20));
        let w = words[rng.gen_range(0..words.len())];
        let n = rng.gen_range(-5..200).to_string();
        let cmd: Vec<&str> = match rng.gen_range(0..16) {
            0 => vec!["SET", &k, w],
            1 => vec!["SET", &k, w, "PX", "50"],
            2 => vec!["INCR", &k],
            3 => vec!["APPEND", &k, w],
            4 => vec!["DEL", &k],
            5 => vec!["PEXPIRE", &k, &n],
            6 => vec!["RENAME", &k, &k2],
            7 => vec!["INCRBYFLOAT", &k, "0.1"],
            8 => vec!["SETRANGE", &k, "2", w],
            9 => vec!["MSETNX", &k, w, &k2, w],
            10 => vec!["GETEX", &k, "PX", "30"],
            11 => vec!["PERSIST", &k],
            12 => vec!["SET", &k, w, "KEEPTTL", "GET"],
            13 => vec!["GETDEL", &k],
            14 => vec!["EXPIRE", &k, "1", "GT"],
            _ => vec!["MSET", &k, w, &k2, w],
        };
        let args: Vec<Bytes> = cmd
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let Some(Ok(crate::Command::Write(w))) = crate::parse(&args, &primary.ctx()) else {
            continue;
        };
        let mut ops = vec![Op::Write(w)];
        if step % 7 == 0 {
            ops.push(Op::ExpireKeys(primary.ks.due_for_expiry(primary.now_ms, 5)));
        }
        let batch = Batch {
            now_ms: primary.now_ms,
            algorithm: Algorithm::Sha256,
            ops,
        };
        let wire = postcard::to_stdvec(&batch).unwrap();
        let received: Batch = postcard::from_bytes(&wire).unwrap();
        assert_eq!(
            primary.ks.apply(&batch),
            replica.apply(&received),
            "step {step}: {cmd:?}"
        );
        primary.advance_ms(rng.gen_range(0..20));
    }
    let dump = |ks: &Keyspace| {
        let mut v = Vec::new();
        ks.for_each_record(|r| v.push(r.to_vec()));
        v
    };
    assert_eq!(dump(&primary.ks), dump(&replica));
    assert_eq!(primary.ks.expires_len(), replica.expires_len());
    assert!(!primary.ks.is_empty());
}

#[test]
fn memory_estimate_grows_with_data_and_returns_to_baseline() {
    let mut h = Harness::new();
    let empty = h.ks.used_memory_estimate();
    for i in 0..1000 {
        h.run(&["SET", &format!("key:{i:08}"), &"x".repeat(100)]);
    }
    let full = h.ks.used_memory_estimate();
    let per_key = (full - empty) / 1000;
    assert!((200..400).contains(&per_key), "{per_key} bytes per key");
    h.run(&["FLUSHALL"]);
    assert_eq!(h.ks.used_memory_estimate(), empty);
}

#[test]
fn keyspace_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Keyspace>();
    assert_send_sync::<Batch>();
}

#[test]
fn keys_with_colliding_hashes_are_scanned_expired_and_recorded_correctly() {
    let mut h = Harness::new();
    h.run(&["SET", "collide:a", "1"]);
    h.run(&["SET", "collide:b", "2", "PX", "5"]);
    h.run(&["SET", "collide:c", "3"]);
    h.run(&["SET", "plain", "4"]);
    assert_eq!(h.ks.len(), 4);
    // One SCAN step visits one hash: all three colliding keys come together.
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = h.ks.scan(cursor, 1, h.now_ms, |_| true);
        seen.push(page.keys.len());
        cursor = page.next_cursor;
        if cursor == 0 {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, vec![1, 3]);
    h.advance_ms(5);
    assert_eq!(h.ks.due_for_expiry(h.now_ms, 10), keys(&["collide:b"]));
    let replies = h.ks.apply(&Batch {
        now_ms: h.now_ms,
        algorithm: Algorithm::Sha256,
        ops: vec![Op::ExpireKeys(keys(&["collide:a", "collide:b"]))],
    });
    assert_eq!(replies, vec![int(1)]);
    assert_eq!(
        h.run(&["MGET", "collide:a", "collide:b", "collide:c"]),
        array(vec![bulk("1"), nil(), bulk("3")])
    );
    assert_eq!(h.run(&["RENAME", "collide:a", "collide:z"]), ok());
    let mut copy = Keyspace::new();
    h.ks.for_each_record(|r| copy.load_record(r).unwrap());
    assert_eq!(copy.len(), 3);
}

#[test]
fn corruption_counter_is_shared_by_concurrent_readers() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "value"]);
    assert!(h.ks.debug_corrupt(b"k"));
    let ks = std::sync::Arc::new(h.ks);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let ks = ks.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let reply = ks.read(&get("k"), T0_MS);
                    assert!(matches!(reply, crate::Frame::Error(e) if e.starts_with("CORRUPT")));
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(ks.integrity().corrupt_detected, 400);
}

#[test]
fn debug_corrupt_needs_a_value_byte() {
    let mut h = Harness::new();
    h.run(&["SET", "empty", ""]);
    assert!(!h.ks.debug_corrupt(b"empty"));
    assert!(!h.ks.debug_corrupt(b"missing"));
    assert_eq!(h.run(&["GET", "empty"]), bulk(""));
}

#[test]
fn repair_restores_only_the_same_logical_value() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "good bytes", "EX", "100"]);
    let checksum = Checksum::compute(Algorithm::Sha256, b"good bytes");
    assert_eq!(
        h.ks.repair_value(b"k", b"good bytes", &checksum),
        RepairOutcome::NotCorrupt
    );
    assert!(h.ks.debug_corrupt(b"k"));
    assert_eq!(
        h.ks.repair_value(
            b"k",
            b"other",
            &Checksum::compute(Algorithm::Sha256, b"other")
        ),
        RepairOutcome::DifferentValue
    );
    assert_eq!(
        h.ks.repair_value(b"k", b"gOod bytes", &checksum),
        RepairOutcome::CopyAlsoCorrupt
    );
    assert_eq!(
        h.ks.repair_value(b"nope", b"good bytes", &checksum),
        RepairOutcome::NoSuchKey
    );
    assert_eq!(
        h.ks.repair_value(b"k", b"good bytes", &checksum),
        RepairOutcome::Repaired
    );
    assert_eq!(h.run(&["GET", "k"]), bulk("good bytes"));
    assert_eq!(h.run(&["TTL", "k"]), int(100));
    assert_eq!(h.ks.integrity().repaired, 1);
}

/// Story: a replica's copy of a counter is corrupted. An INCR commits; every other node
/// increments, this one cannot. Its copy is now stale, so it must never be served or "repaired"
/// back to the old value: only a full restore from a healthy node (or an overwrite) heals it.
#[test]
fn a_write_that_meets_corrupt_bytes_marks_the_key_diverged_until_restored() {
    let mut h = Harness::new();
    h.run(&["SET", "counter", "41", "EX", "100"]);
    let old_good = Checksum::compute(Algorithm::Sha256, b"41");
    assert!(h.ks.debug_corrupt(b"counter"));
    assert!(error_text(&h.run(&["INCR", "counter"])).starts_with("CORRUPT"));
    assert_eq!(h.ks.diverged_keys(), keys(&["counter"]));
    // Even the old, checksum-valid bytes are refused as a repair: they are stale now.
    assert_eq!(
        h.ks.repair_value(b"counter", b"41", &old_good),
        RepairOutcome::Diverged
    );
    assert!(error_text(&h.run(&["GET", "counter"])).starts_with("CORRUPT"));
    assert!(error_text(&h.run(&["DIGEST.GET", "counter"])).starts_with("CORRUPT"));
    // Value-independent writes still apply (others apply them too): the deadline moves.
    assert_eq!(h.run(&["EXPIRE", "counter", "200"]), int(1));
    // RENAME carries the flag.
    assert_eq!(h.run(&["RENAME", "counter", "c2"]), ok());
    assert_eq!(h.ks.diverged_keys(), keys(&["c2"]));
    // A restore needs a verifying value.
    let healthy = KeyState {
        value: Bytes::from_static(b"42"),
        checksum: Checksum::compute(Algorithm::Sha256, b"42"),
        expire_at_ms: h.now_ms + 200_000,
    };
    let mut bad = healthy.clone();
    bad.value = Bytes::from_static(b"43");
    assert!(!h.ks.restore_key(b"c2", Some(&bad)));
    assert!(
        !h.ks.restore_key(b"other", Some(&healthy)),
        "only diverged keys are restored"
    );
    assert!(h.ks.restore_key(b"c2", Some(&healthy)));
    assert_eq!(h.run(&["GET", "c2"]), bulk("42"));
    assert_eq!(h.run(&["TTL", "c2"]), int(200));
    assert!(h.ks.diverged_keys().is_empty());
}

#[test]
fn overwrites_and_deletes_end_a_divergence() {
    for cmd in [
        &["SET", "k", "new"][..],
        &["DEL", "k"],
        &["MSET", "k", "new"],
        &["FLUSHALL"],
    ] {
        let mut h = Harness::new();
        h.run(&["SET", "k", "v"]);
        assert!(h.ks.debug_corrupt(b"k"));
        h.run(&["APPEND", "k", "x"]);
        assert_eq!(h.ks.diverged_keys().len(), 1);
        h.run(cmd);
        assert!(h.ks.diverged_keys().is_empty(), "{cmd:?}");
    }
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert!(h.ks.debug_corrupt(b"k"));
    h.run(&["GETDEL", "k"]);
    assert!(h.ks.restore_key(b"k", None), "restore to absent");
    assert_eq!(h.ks.len(), 0);
}

#[test]
fn the_primary_can_refuse_writes_that_would_read_corrupt_bytes() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.run(&["SET", "b", "1"]);
    assert!(h.ks.debug_corrupt(b"b"));
    let parse = |h: &Harness, parts: &[&str]| {
        let args: Vec<Bytes> = parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect();
        match crate::parse(&args, &h.ctx()) {
            Some(Ok(crate::Command::Write(w))) => w,
            other => panic!("{other:?}"),
        }
    };
    let incr_a = parse(&h, &["INCR", "a"]);
    let incr_b = parse(&h, &["INCR", "b"]);
    let set_b = parse(&h, &["SET", "b", "x"]);
    let getset_b = parse(&h, &["SET", "b", "x", "GET"]);
    assert!(h.ks.verify_values(incr_a.value_keys(), h.now_ms).is_ok());
    assert!(h.ks.verify_values(incr_b.value_keys(), h.now_ms).is_err());
    assert!(set_b.value_keys().is_empty(), "a plain SET reads nothing");
    assert_eq!(getset_b.value_keys().len(), 1);
    assert!(
        h.ks.diverged_keys().is_empty(),
        "a pre-check changes nothing"
    );
}

/// A bulk load (the key order built once at the end) ends in exactly the keyspace a
/// record-by-record load builds: same records in the same (hash) order, same counts, same SCAN
/// pages, expiries honoured; and it refuses duplicates the same way.
#[test]
fn a_bulk_load_equals_a_record_by_record_load() {
    let mut h = Harness::new();
    for i in 0..500 {
        h.run(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    h.run(&["SET", "ttl", "v", "PX", "1000"]);
    let mut records = Vec::new();
    h.ks.for_each_record(|r| records.push(r.to_vec()));

    let mut one_by_one = Keyspace::new();
    for r in &records {
        one_by_one.load_record(r).unwrap();
    }
    let mut bulk_ks = Keyspace::new();
    {
        let mut loader = bulk_ks.bulk_load();
        for r in &records {
            loader.load(r).unwrap();
        }
        let err = loader.load(&records[0]).unwrap_err();
        assert!(matches!(err, LoadError::DuplicateKey { .. }), "{err:?}");
    }
    let dump = |ks: &Keyspace| {
        let mut v = Vec::new();
        ks.for_each_record(|r| v.push(r.to_vec()));
        v
    };
    assert_eq!(
        dump(&bulk_ks),
        dump(&one_by_one),
        "same records in the same order"
    );
    assert_eq!(
        (bulk_ks.len(), bulk_ks.expires_len()),
        (one_by_one.len(), one_by_one.expires_len())
    );
    let now = h.now_ms;
    let mut hb = Harness {
        ks: bulk_ks,
        now_ms: now,
        algorithm: Algorithm::Sha256,
    };
    let mut h1 = Harness {
        ks: one_by_one,
        now_ms: now,
        algorithm: Algorithm::Sha256,
    };
    for cursor in ["0", "17", "123456789"] {
        assert_eq!(
            hb.run(&["SCAN", cursor, "COUNT", "37"]),
            h1.run(&["SCAN", cursor, "COUNT", "37"]),
            "SCAN {cursor}"
        );
    }
    assert_eq!(hb.run(&["DBSIZE"]), int(501));
    assert_eq!(hb.run(&["GET", "k499"]), bulk("v499"));
    hb.now_ms = now + 1000;
    assert_eq!(hb.run(&["GET", "ttl"]), nil());
}
