//! Crash tests: kill -9 under load, restart on the same data dir, check every acknowledged write.
//!
//! A `tandem server` runs with `--appendfsync always` and a small `--snapshot-entries`, so that
//! snapshots and log purges happen while the test runs. Each cycle, 8 client threads write
//! concurrently (SET, INCR, APPEND, MSET) on keys of their own and on keys shared by all, each
//! recording which writes were acknowledged (the reply arrived) and which were in flight. The
//! server is SIGKILLed at a random moment 50-800 ms into the load, restarted, and the keyspace is
//! checked against what the clients saw:
//!
//! - a key written by one thread only holds its last acknowledged value, or a value of a later
//!   write of that thread whose reply never arrived;
//! - an MSET of a thread's four keys is all-or-nothing: the four keys hold the same version;
//! - an APPEND log holds every acknowledged append, in order, plus at most the unacknowledged
//!   ones after it;
//! - a shared INCR counter is at least its previous value plus the acknowledged increments and at
//!   most that plus the attempted ones;
//! - a shared SET key holds a value written in this cycle if any such write was acknowledged.
//!
//! The first cycle runs until a snapshot is due before its kill, so later restarts load a
//! snapshot plus the log after it. The observed state becomes the model's state and the next cycle continues on it.
//!
//! `TANDEM_CRASH_CYCLES` sets the number of cycles (default 10), `TANDEM_CRASH_SEED` replays a
//! run (the seed is printed at the start).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{files_with_ext, phase, seed_from_env, show_bytes, Conn, Frame, Tandem};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 8;
const OWN_KEYS: usize = 6;
const COUNTERS: usize = 4;
const SHARED_KEYS: usize = 4;
const MSET_KEYS: usize = 4;
/// `--snapshot-entries`: small, so that snapshots and log purges happen during the test.
const SNAPSHOT_ENTRIES: u64 = 2000;
const SNAPSHOT_ENTRIES_STR: &str = "2000";
/// The first cycle runs at least this many writes before its kill.
const WARMUP_WRITES: u64 = SNAPSHOT_ENTRIES + 200;

fn cycles() -> usize {
    std::env::var("TANDEM_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// The expected state of a key written by one thread only: the last acknowledged value (or the
/// value observed at the last check), and the values of later writes whose replies never came.
#[derive(Clone, Debug, Default)]
struct OwnKey {
    acked: Option<Vec<u8>>,
    pending: Vec<Vec<u8>>,
}

impl OwnKey {
    fn allowed(&self, v: &Option<Vec<u8>>) -> bool {
        *v == self.acked
            || v.as_ref()
                .map(|v| self.pending.contains(v))
                .unwrap_or(false)
    }

    fn attempt(&mut self, v: Vec<u8>) {
        self.pending.push(v);
    }

    fn ack(&mut self, v: Vec<u8>) {
        self.acked = Some(v);
        self.pending.clear();
    }

    fn settle(&mut self, observed: Option<Vec<u8>>) {
        self.acked = observed;
        self.pending.clear();
    }
}

/// One thread's keys.
#[derive(Clone, Debug, Default)]
struct ThreadModel {
    own: Vec<OwnKey>,
    /// The four MSET keys share one model: they must always hold the same version.
    mset: OwnKey,
    /// APPEND log: acknowledged content, then tokens appended without a reply.
    log_acked: Vec<u8>,
    log_pending: Vec<Vec<u8>>,
    /// Values attempted on each shared key in this cycle, and whether any was acknowledged.
    shared_attempted: Vec<Vec<Vec<u8>>>,
    shared_acked: Vec<bool>,
    writes_acked: u64,
    failures: Vec<String>,
}

fn own_key(t: usize, j: usize) -> String {
    format!("t{t}:s{j}")
}
fn mset_key(t: usize, j: usize) -> String {
    format!("t{t}:m{j}")
}
fn log_key(t: usize) -> String {
    format!("t{t}:log")
}
fn counter_key(j: usize) -> String {
    format!("ctr:{j}")
}
fn shared_key(j: usize) -> String {
    format!("shared:{j}")
}

/// Counters shared by all threads: attempted and acknowledged increments this cycle.
struct Counters {
    attempted: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

/// The cycle number a value was written in (values look like `tag:thread:cycle:seq:padding`).
fn value_cycle(v: &[u8]) -> Option<usize> {
    std::str::from_utf8(v).ok()?.split(':').nth(2)?.parse().ok()
}

/// One client thread's load for one cycle: runs until the connection dies (the server is
/// killed), or until a reply is wrong.
fn client_load(
    port: u16,
    t: usize,
    cycle: usize,
    seed: u64,
    model: &mut ThreadModel,
    counters: &Counters,
    acked_live: &AtomicU64,
) {
    let mut rng = StdRng::seed_from_u64(
        seed ^ ((cycle as u64) << 32) ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let Ok(mut conn) = Conn::connect(port) else {
        model.failures.push(format!(
            "thread {t}: cannot connect at the start of cycle {cycle}"
        ));
        return;
    };
    for key in model.shared_attempted.iter_mut() {
        key.clear();
    }
    model.shared_acked.iter_mut().for_each(|a| *a = false);
    let mut seq = 0u64;
    loop {
        seq += 1;
        let pad = "x".repeat(rng.gen_range(0..48));
        let roll = rng.gen_range(0..100);
        let outcome = if roll < 35 {
            let j = rng.gen_range(0..OWN_KEYS);
            let v = format!("s:{t}:{cycle}:{seq}:{pad}").into_bytes();
            model.own[j].attempt(v.clone());
            let r = conn.try_cmd(&[b"SET".as_slice(), own_key(t, j).as_bytes(), &v]);
            r.map(|r| {
                if r == Frame::ok() {
                    model.own[j].ack(v);
                    None
                } else {
                    Some(format!("SET {} replied {r}", own_key(t, j)))
                }
            })
        } else if roll < 55 {
            let j = rng.gen_range(0..COUNTERS);
            counters.attempted[j].fetch_add(1, Ordering::SeqCst);
            conn.try_cmd(&["INCR", &counter_key(j)]).map(|r| match r {
                Frame::Integer(_) => {
                    counters.acked[j].fetch_add(1, Ordering::SeqCst);
                    None
                }
                other => Some(format!("INCR {} replied {other}", counter_key(j))),
            })
        } else if roll < 70 {
            let token = format!("{cycle}.{seq};").into_bytes();
            model.log_pending.push(token.clone());
            conn.try_cmd(&[b"APPEND".as_slice(), log_key(t).as_bytes(), &token])
                .map(|r| {
                    let expected_len = model.log_acked.len() + token.len();
                    match r {
                        Frame::Integer(n) if n as usize == expected_len => {
                            model.log_acked.extend_from_slice(&token);
                            model.log_pending.clear();
                            None
                        }
                        other => Some(format!(
                            "APPEND {} replied {other}, expected length {expected_len}",
                            log_key(t)
                        )),
                    }
                })
        } else if roll < 85 {
            let v = format!("m:{t}:{cycle}:{seq}:{pad}").into_bytes();
            model.mset.attempt(v.clone());
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for j in 0..MSET_KEYS {
                args.push(mset_key(t, j).into_bytes());
                args.push(v.clone());
            }
            conn.try_cmd(&args).map(|r| {
                if r == Frame::ok() {
                    model.mset.ack(v);
                    None
                } else {
                    Some(format!("MSET replied {r}"))
                }
            })
        } else {
            let j = rng.gen_range(0..SHARED_KEYS);
            let v = format!("h:{t}:{cycle}:{seq}:{pad}").into_bytes();
            model.shared_attempted[j].push(v.clone());
            conn.try_cmd(&[b"SET".as_slice(), shared_key(j).as_bytes(), &v])
                .map(|r| {
                    if r == Frame::ok() {
                        model.shared_acked[j] = true;
                        None
                    } else {
                        Some(format!("SET {} replied {r}", shared_key(j)))
                    }
                })
        };
        match outcome {
            Ok(None) => {
                model.writes_acked += 1;
                acked_live.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(bad)) => {
                // A reply that is not the success reply: the server is alive, so this is a bug.
                model
                    .failures
                    .push(format!("thread {t} cycle {cycle}: {bad}"));
                return;
            }
            Err(_) => return, // the server died: the write in flight stays pending
        }
    }
}

/// Reads many keys with MGET (in one request per chunk); None for missing keys.
fn mget(conn: &mut Conn, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut out = Vec::new();
    for chunk in keys.chunks(64) {
        let mut args = vec!["MGET".to_string()];
        args.extend(chunk.iter().cloned());
        match conn.try_cmd(&args).map_err(|e| format!("MGET: {e}"))? {
            Frame::Array(items) if items.len() == chunk.len() => {
                for it in items {
                    out.push(match it {
                        Frame::Bulk(b) => Some(b),
                        Frame::Null => None,
                        other => return Err(format!("MGET element {other}")),
                    });
                }
            }
            other => return Err(format!("MGET replied {other}")),
        }
    }
    Ok(out)
}

fn show_opt(v: &Option<Vec<u8>>) -> String {
    v.as_ref()
        .map(|v| show_bytes(v))
        .unwrap_or_else(|| "(nil)".into())
}

/// Checks the restarted server against the models and settles the models on what it holds.
/// Returns the violations found.
fn verify(
    conn: &mut Conn,
    models: &mut [ThreadModel],
    counters: &Counters,
    counter_base: &mut [i64],
    shared_prev: &mut [Option<Vec<u8>>],
) -> Vec<String> {
    let mut bad = Vec::new();
    for (t, m) in models.iter_mut().enumerate() {
        let mut keys: Vec<String> = (0..OWN_KEYS).map(|j| own_key(t, j)).collect();
        keys.extend((0..MSET_KEYS).map(|j| mset_key(t, j)));
        keys.push(log_key(t));
        let vals = match mget(conn, &keys) {
            Ok(v) => v,
            Err(e) => {
                bad.push(format!("thread {t}: {e}"));
                continue;
            }
        };
        for (j, (own, v)) in m.own.iter_mut().zip(&vals).enumerate() {
            if !own.allowed(v) {
                bad.push(format!(
                    "{}: holds {}, but the last acknowledged value is {} and the unacknowledged later ones are {:?}",
                    own_key(t, j),
                    show_opt(v),
                    show_opt(&own.acked),
                    own.pending.iter().map(|p| show_bytes(p)).collect::<Vec<_>>()
                ));
            }
            own.settle(v.clone());
        }
        let mvals = &vals[OWN_KEYS..OWN_KEYS + MSET_KEYS];
        if mvals.iter().any(|v| v != &mvals[0]) {
            bad.push(format!(
                "thread {t}: MSET not atomic, its keys hold {:?}",
                mvals.iter().map(show_opt).collect::<Vec<_>>()
            ));
        } else if !m.mset.allowed(&mvals[0]) {
            bad.push(format!(
                "thread {t}: MSET keys hold {}, but the last acknowledged MSET wrote {} (unacknowledged later: {})",
                show_opt(&mvals[0]),
                show_opt(&m.mset.acked),
                m.mset.pending.len()
            ));
        }
        m.mset.settle(mvals[0].clone());
        let log = vals[OWN_KEYS + MSET_KEYS].clone().unwrap_or_default();
        if !log_allowed(&log, &m.log_acked, &m.log_pending) {
            bad.push(format!(
                "{}: holds {} but the acknowledged appends make {} (unacknowledged later: {:?})",
                log_key(t),
                show_bytes(&log),
                show_bytes(&m.log_acked),
                m.log_pending
                    .iter()
                    .map(|p| show_bytes(p))
                    .collect::<Vec<_>>()
            ));
        }
        m.log_acked = log;
        m.log_pending.clear();
    }

    let ckeys: Vec<String> = (0..COUNTERS).map(counter_key).collect();
    match mget(conn, &ckeys) {
        Err(e) => bad.push(format!("counters: {e}")),
        Ok(vals) => {
            for j in 0..COUNTERS {
                let v = vals[j]
                    .as_ref()
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .parse::<i64>()
                            .unwrap_or(i64::MIN)
                    })
                    .unwrap_or(0);
                let lo = counter_base[j] + counters.acked[j].swap(0, Ordering::SeqCst) as i64;
                let hi = counter_base[j] + counters.attempted[j].swap(0, Ordering::SeqCst) as i64;
                if v < lo || v > hi {
                    bad.push(format!(
                        "{}: holds {v}, expected between {lo} (acknowledged) and {hi} (attempted)",
                        counter_key(j)
                    ));
                }
                counter_base[j] = v;
            }
        }
    }

    let skeys: Vec<String> = (0..SHARED_KEYS).map(shared_key).collect();
    match mget(conn, &skeys) {
        Err(e) => bad.push(format!("shared keys: {e}")),
        Ok(vals) => {
            for j in 0..SHARED_KEYS {
                let v = &vals[j];
                let any_acked = models.iter().any(|m| m.shared_acked[j]);
                let written_now = v
                    .as_ref()
                    .map(|v| models.iter().any(|m| m.shared_attempted[j].contains(v)))
                    .unwrap_or(false);
                let ok = if any_acked {
                    written_now
                } else {
                    written_now || *v == shared_prev[j]
                };
                if !ok {
                    bad.push(format!(
                        "{}: holds {}; acknowledged writes this cycle: {any_acked}, previous value {}",
                        shared_key(j),
                        show_opt(v),
                        show_opt(&shared_prev[j])
                    ));
                }
                shared_prev[j] = v.clone();
            }
        }
    }
    bad
}

/// True when `log` is `acked` followed by some of `pending`, in order.
fn log_allowed(log: &[u8], acked: &[u8], pending: &[Vec<u8>]) -> bool {
    let Some(mut rest) = log.strip_prefix(acked) else {
        return false;
    };
    for p in pending {
        if let Some(r) = rest.strip_prefix(p.as_slice()) {
            rest = r;
        }
    }
    rest.is_empty()
}

/// What each cycle's server runs with: flags and the checksum algorithm it uses (if set).
type CycleConfig = fn(usize) -> (Vec<&'static str>, Option<&'static str>);

fn run_crash_test(name: &str, config: CycleConfig) {
    let seed = seed_from_env("TANDEM_CRASH_SEED");
    let cycles = cycles();
    eprintln!("{name}: seed {seed} (replay with TANDEM_CRASH_SEED={seed}), {cycles} cycles (TANDEM_CRASH_CYCLES)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");

    let (args, _) = config(0);
    phase(format!("start tandem {args:?}"));
    let mut server = Tandem::start(&data, &args);

    let mut models: Vec<ThreadModel> = (0..THREADS)
        .map(|_| ThreadModel {
            own: vec![OwnKey::default(); OWN_KEYS],
            shared_attempted: vec![Vec::new(); SHARED_KEYS],
            shared_acked: vec![false; SHARED_KEYS],
            ..Default::default()
        })
        .collect();
    let counters = Arc::new(Counters {
        attempted: (0..COUNTERS).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..COUNTERS).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut counter_base = vec![0i64; COUNTERS];
    let mut shared_prev: Vec<Option<Vec<u8>>> = vec![None; SHARED_KEYS];
    let mut total_acked = 0u64;
    let mut algorithm_checks = 0usize;

    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.gen_range(50..=800));
        phase(format!(
            "cycle {cycle}: load from {THREADS} threads, kill -9 after {kill_after:?}"
        ));
        let port = server.port;
        let acked_live = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = std::mem::take(&mut models)
            .into_iter()
            .enumerate()
            .map(|(t, mut m)| {
                let (counters, acked_live) = (counters.clone(), acked_live.clone());
                std::thread::spawn(move || {
                    client_load(port, t, cycle, seed, &mut m, &counters, &acked_live);
                    m
                })
            })
            .collect();
        if cycle == 0 {
            // The first cycle runs until a snapshot is due, so that every later restart loads a
            // snapshot and the log after it, and the log has been purged at least once.
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked_live.load(Ordering::Relaxed) < WARMUP_WRITES && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            phase(format!(
                "cycle 0: {} writes acknowledged (snapshot due after {SNAPSHOT_ENTRIES} entries)",
                acked_live.load(Ordering::Relaxed)
            ));
        }
        std::thread::sleep(kill_after);
        phase(format!("cycle {cycle}: kill -9"));
        server.kill9();
        let started = Instant::now();
        models = handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect();
        let failures: Vec<String> = models
            .iter_mut()
            .flat_map(|m| std::mem::take(&mut m.failures))
            .collect();
        assert!(
            failures.is_empty(),
            "seed {seed}: unexpected replies under load:\n{}",
            failures.join("\n")
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "client threads took too long to notice the kill"
        );
        let acked_now: u64 = models
            .iter_mut()
            .map(|m| std::mem::take(&mut m.writes_acked))
            .sum();
        total_acked += acked_now;

        let (args, _) = config(cycle + 1);
        phase(format!(
            "cycle {cycle}: {acked_now} writes acknowledged; restart with {args:?} ({} segments, {} snapshots on disk)",
            files_with_ext(&data.join("log"), "seg").len(),
            files_with_ext(&data.join("snapshots"), "snap").len()
        ));
        server.set_args(&args);
        server.restart();

        phase(format!("cycle {cycle}: verify every acknowledged write"));
        let mut conn = server.conn();
        let bad = verify(
            &mut conn,
            &mut models,
            &counters,
            &mut counter_base,
            &mut shared_prev,
        );
        assert!(
            bad.is_empty(),
            "seed {seed} cycle {cycle}: {} acknowledged writes lost or wrong (first 20):\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
        algorithm_checks += check_algorithms(&mut conn, config, &models, &counter_base)
            .unwrap_or_else(|e| panic!("seed {seed} cycle {cycle}: {e}"));
    }

    let snaps = files_with_ext(&data.join("snapshots"), "snap").len();
    phase(format!("done: {cycles} cycles, {total_acked} writes acknowledged, {snaps} snapshots on disk, {algorithm_checks} digests checked"));
    assert!(total_acked > 0, "no write was ever acknowledged");
    // Concurrent clients' writes share log entries (the combiner), so count entries, not
    // writes: a log longer than --snapshot-entries means a snapshot was due.
    let info = server.conn().cmd(&["INFO", "replication"]);
    let info = String::from_utf8_lossy(info.as_bulk().unwrap_or_default()).into_owned();
    let last_index: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("tandem_last_log_index:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO replication has tandem_last_log_index");
    assert!(
        last_index < SNAPSHOT_ENTRIES + 10 || snaps > 0,
        "{last_index} log entries with --snapshot-entries {SNAPSHOT_ENTRIES} but no snapshot in {}",
        data.join("snapshots").display()
    );
    server.stop();
}

/// Checks, with DIGEST.GET, that each value carries the algorithm that was configured when it
/// was written and a correct digest. Returns how many values were checked. Does nothing when
/// the test does not set the algorithm.
fn check_algorithms(
    conn: &mut Conn,
    config: CycleConfig,
    models: &[ThreadModel],
    counter_base: &[i64],
) -> Result<usize, String> {
    if config(0).1.is_none() {
        return Ok(0);
    }
    // (key, whether its value was written whole by SET or MSET and so names its cycle)
    let mut keys: Vec<(String, bool)> = Vec::new();
    for (t, m) in models.iter().enumerate() {
        for j in 0..OWN_KEYS {
            if m.own[j].acked.is_some() {
                keys.push((own_key(t, j), true));
            }
        }
        if m.mset.acked.is_some() {
            keys.extend((0..MSET_KEYS).map(|j| (mset_key(t, j), true)));
        }
        if !m.log_acked.is_empty() {
            keys.push((log_key(t), false));
        }
    }
    keys.extend((0..SHARED_KEYS).map(|j| (shared_key(j), true)));
    keys.extend(
        (0..COUNTERS)
            .filter(|&j| counter_base[j] != 0)
            .map(|j| (counter_key(j), false)),
    );
    let mut checked = 0;
    for (key, is_plain_set) in keys {
        let reply = conn
            .try_cmd(&["DIGEST.GET", &key])
            .map_err(|e| format!("DIGEST.GET {key}: {e}"))?;
        let Some([value, alg, hex]) = reply
            .as_array()
            .and_then(|a| <&[Frame; 3]>::try_from(a).ok())
        else {
            if reply == Frame::Null || reply == Frame::NullArray {
                continue; // a shared key nobody wrote yet
            }
            return Err(format!("DIGEST.GET {key} replied {reply}"));
        };
        let (Some(value), Some(alg), Some(hex)) = (value.as_bulk(), alg_name(alg), hex_text(hex))
        else {
            return Err(format!("DIGEST.GET {key} replied {reply}"));
        };
        let expected_hex = match alg.as_str() {
            "sha256" => sha256_hex(value),
            "xxh3-64" => format!("{:016x}", xxhash_rust::xxh3::xxh3_64(value)),
            other => {
                return Err(format!(
                    "{key}: algorithm {other}, but only sha256 and xxh3-64 were ever configured"
                ))
            }
        };
        if hex != expected_hex {
            return Err(format!(
                "{key}: DIGEST.GET says {alg} {hex}, but the value hashes to {expected_hex}"
            ));
        }
        // Values written by SET and MSET name their cycle; the algorithm must be that cycle's.
        // (APPEND and INCR compute a new value from the old one; either algorithm is fine.)
        if is_plain_set {
            let cycle = value_cycle(value)
                .ok_or_else(|| format!("{key}: unexpected value {}", show_bytes(value)))?;
            let want = config(cycle).1.unwrap();
            if alg != want {
                return Err(format!("{key}: written in cycle {cycle} with --checksum-algorithm {want}, but stored with {alg}"));
            }
        }
        checked += 1;
    }
    Ok(checked)
}

fn alg_name(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex_text(f: &Frame) -> Option<String> {
    alg_name(f).map(|s| s.to_ascii_lowercase())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn kill9_under_load_keeps_every_acknowledged_write() {
    run_crash_test("kill9_under_load", |_| {
        (
            vec![
                "--appendfsync",
                "always",
                "--snapshot-entries",
                SNAPSHOT_ENTRIES_STR,
            ],
            None,
        )
    });
}

/// Same as above, but the configured checksum algorithm alternates between restarts (xxh3-64
/// on even cycles, sha256 on odd ones): every value must keep the algorithm it was written with.
#[test]
fn kill9_with_alternating_checksum_algorithms() {
    run_crash_test("kill9_alternating_algorithms", |cycle| {
        let alg = if cycle % 2 == 0 { "xxh3-64" } else { "sha256" };
        (
            vec![
                "--appendfsync",
                "always",
                "--snapshot-entries",
                SNAPSHOT_ENTRIES_STR,
                "--checksum-algorithm",
                alg,
            ],
            Some(alg),
        )
    });
}

#[test]
fn model_accepts_only_allowed_histories() {
    // The checker must be able to fail: feed it states a correct server could not produce.
    let mut k = OwnKey::default();
    k.attempt(b"a".to_vec());
    k.ack(b"a".to_vec());
    k.attempt(b"b".to_vec());
    assert!(k.allowed(&Some(b"a".to_vec())));
    assert!(k.allowed(&Some(b"b".to_vec())));
    assert!(!k.allowed(&None), "an acknowledged write was lost");
    assert!(!k.allowed(&Some(b"c".to_vec())));
    assert!(log_allowed(b"1;2;3;", b"1;2;", &[b"3;".to_vec()]));
    assert!(log_allowed(b"1;2;", b"1;2;", &[b"3;".to_vec()]));
    assert!(
        !log_allowed(b"1;", b"1;2;", &[]),
        "an acknowledged append was lost"
    );
    assert!(!log_allowed(b"1;2;4;", b"1;2;", &[b"3;".to_vec()]));
    assert_eq!(value_cycle(b"s:3:17:42:xx"), Some(17));
}
