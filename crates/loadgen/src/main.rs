//! `tandem-loadgen`: the load generator of `scripts/bench-replication.sh`.
//!
//! N connections, each a closed loop (send a request, wait for its reply, send the next), for a
//! duration or a total number of requests, optionally paced to a total rate. It prints the rate,
//! latency percentiles and every error, and ends with one machine-readable `RESULT k=v ...` line.
//! A run with any error (error reply, unexpected reply, dropped connection, GET miss, WAITPOS
//! timeout) exits with status 1: it is not a valid measurement.
//!
//! Modes:
//! - `set`: `SET key value`, keys `key:%012d` drawn uniformly from `--keyspace`.
//! - `set-wait`: `SET` then `WAIT numreplicas timeout` (sent together, one write), one operation
//!   per pair; a `WAIT` that answers fewer replicas than asked is an error.
//! - `get`: `GET key` on random keys; a miss is an error unless `--allow-misses`.
//! - `lag`: `SET`s (normally paced with `--rate`); for every `--sample-every`th, once its reply
//!   has arrived, `POSITION` on the same connection, then `WAITPOS pos timeout` on this
//!   connection's own connection to `--replica`. The lag sample is the time from the SET's reply
//!   to WAITPOS's reply: replication and apply delay, plus the two round trips of the
//!   measurement itself (the POSITION round trip is reported separately).
//! - `load`: exactly `--keys` keys `key:%012d` (0..keys), pipelined `--pipeline` deep, with the
//!   values `scripts/bench/gen_resp.py` gives them (`gen_resp.py --value-of I` prints one).
//! - `failover`, `switchover` (`scripts/bench-failover.sh`): writers follow the primary through a
//!   `kill -9` (`--kill-cmd`) or a planned switch (`--switch-cmd`) that the mode runs itself after
//!   the warm-up; they report the time to the first write acknowledged by the new primary, the
//!   longest gap between acknowledged writes, and the acknowledged writes that did not read back.
//!   Errors and timeouts are expected there: they are counted, and exit status 1 means only that
//!   the trial could not be measured (no new primary, no read-back). See `failover.rs`.
//!
//! Modules: `resp` is the connection (command encoder, strict reply parser); `stats` keeps
//! latency samples and error counts; `failover` is the two failover modes.

mod failover;
mod resp;
mod stats;

use clap::{Parser, ValueEnum};
use rand::{rngs::StdRng, Rng, SeedableRng};
use resp::{Conn, Reply};
use stats::{Errors, Samples};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Set,
    SetWait,
    Get,
    Lag,
    Load,
    Failover,
    Switchover,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DiscoverArg {
    /// Try the --nodes addresses in order; a node that refuses the write is skipped.
    Nodes,
    /// Ask the --sentinels: SENTINEL get-master-addr-by-name --master-name.
    Sentinel,
}

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Closed-loop RESP load generator for Tandem's replication benchmarks"
)]
struct Args {
    /// What each operation is (see the crate documentation).
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(short = 'p', long, default_value_t = 6379)]
    port: u16,
    /// Connections, each a closed loop [default: 50; 8 in failover and switchover].
    #[arg(short = 'c', long)]
    clients: Option<usize>,
    /// Run for this many seconds (after the warm-up).
    #[arg(long)]
    duration: Option<f64>,
    /// Run this many operations in total (instead of --duration).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before measuring starts (only with --duration); failover and switchover:
    /// seconds of writes before the event command.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Keys are drawn uniformly from key:000000000000 .. key:(keyspace-1).
    #[arg(short = 'r', long, default_value_t = 100_000)]
    keyspace: u64,
    /// Bytes per value written.
    #[arg(short = 'd', long, default_value_t = 100)]
    value_size: usize,
    /// set-wait: WAIT's numreplicas.
    #[arg(long, default_value_t = 1)]
    wait_replicas: i64,
    /// set-wait: WAIT's timeout in milliseconds (0 = wait forever, as in Redis).
    #[arg(long, default_value_t = 0)]
    wait_timeout_ms: u64,
    /// Pace the operations to this total rate (operations per second over all connections).
    #[arg(long)]
    rate: Option<f64>,
    /// lag: HOST:PORT of the replica WAITPOS is sent to.
    #[arg(long)]
    replica: Option<String>,
    /// lag: sample one SET in this many (per connection).
    #[arg(long, default_value_t = 20)]
    sample_every: u64,
    /// lag: WAITPOS timeout in milliseconds; a timeout is an error.
    #[arg(long, default_value_t = 5000)]
    waitpos_timeout_ms: u64,
    /// load: number of keys to write.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// load: SETs in flight per connection.
    #[arg(long, default_value_t = 64)]
    pipeline: usize,
    /// get: a GET that finds no value is not an error.
    #[arg(long)]
    allow_misses: bool,
    /// Runtime threads (1 = one event loop, like redis-benchmark).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the key choice (each connection adds its number).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// failover/switchover: how the writers find the primary.
    #[arg(long, value_enum, default_value = "nodes")]
    discover: DiscoverArg,
    /// failover/switchover: HOST:PORT,... of the nodes (--discover nodes).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// failover/switchover: HOST:PORT,... of the sentinels (--discover sentinel).
    #[arg(long, value_delimiter = ',')]
    sentinels: Vec<String>,
    /// failover/switchover: the name the sentinels monitor the primary by.
    #[arg(long, default_value = "mymaster")]
    master_name: String,
    /// failover: shell command run after the warm-up that kills the primary (`kill -9 PID`).
    #[arg(long)]
    kill_cmd: Option<String>,
    /// switchover: shell command run after the warm-up that starts the switch
    /// (`redis-cli -p PORT FAILOVER`); an error reply in its output fails the trial.
    #[arg(long)]
    switch_cmd: Option<String>,
    /// failover/switchover: the trial number, part of every key (fo:<trial>:<writer>:<seq>).
    #[arg(long, default_value_t = 1)]
    trial: u64,
    /// failover/switchover: seconds of writes after the first acknowledged by the new primary.
    #[arg(long, default_value_t = 1.0)]
    after: f64,
    /// failover/switchover: seconds to wait for a new primary before giving up.
    #[arg(long, default_value_t = 60.0)]
    max_wait: f64,
    /// failover/switchover: seconds between the end of the load and the read-back.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// failover/switchover: shell command run once the load has stopped, before --settle and the
    /// read-back (e.g. a wait for the script to restart the killed node).
    #[arg(long)]
    settle_cmd: Option<String>,
    /// failover/switchover: a write without a reply within this is not acknowledged.
    #[arg(long, default_value_t = 500)]
    request_timeout_ms: u64,
}

/// When a run stops: a deadline, or a shared budget of operations.
enum Budget {
    Until(Instant),
    Count(AtomicU64),
}

impl Budget {
    /// Takes one operation from the budget; false when the run is over.
    fn take(&self) -> bool {
        match self {
            Budget::Until(t) => Instant::now() < *t,
            Budget::Count(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// What one connection's task measured.
#[derive(Default)]
struct TaskResult {
    ops: u64,
    /// Operations including the warm-up ones (for CPU per operation, measured over the whole run).
    all_ops: u64,
    misses: u64,
    latency: Samples,
    lag: Samples,
    position_rtt: Samples,
    errors: Errors,
}

impl TaskResult {
    fn merge(&mut self, o: TaskResult) {
        self.ops += o.ops;
        self.all_ops += o.all_ops;
        self.misses += o.misses;
        self.latency.merge(o.latency);
        self.lag.merge(o.lag);
        self.position_rtt.merge(o.position_rtt);
        self.errors.merge(o.errors);
    }
}

/// Settings shared by every task.
struct Plan {
    mode: Mode,
    keyspace: u64,
    value: Vec<u8>,
    wait_replicas: i64,
    wait_replicas_arg: Vec<u8>,
    wait_timeout_arg: Vec<u8>,
    sample_every: u64,
    waitpos_timeout_arg: Vec<u8>,
    allow_misses: bool,
    /// Interval between one connection's operations when paced.
    interval: Option<Duration>,
    /// Operations that start before this are not measured (warm-up).
    measure_from: Instant,
    budget: Budget,
}

/// The printable filler of `scripts/bench/gen_resp.py` (same generator, same alphabet).
pub(crate) fn filler(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x: u64 = 0x2545_F491;
    (0..size)
        .map(|_| {
            x = (x * 1_103_515_245 + 12_345) & 0x7FFF_FFFF;
            ALPHABET[((x >> 16) % ALPHABET.len() as u64) as usize]
        })
        .collect()
}

/// The value key `i` gets in `load` mode: `v%012d:` then the filler, cut to `size` bytes.
fn value_of(i: u64, fill: &[u8]) -> Vec<u8> {
    let mut v = format!("v{i:012}:").into_bytes();
    v.extend_from_slice(fill);
    v.truncate(fill.len());
    v
}

fn key_of(i: u64) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

fn expect_ok(r: &Reply, what: &str, errors: &mut Errors) -> bool {
    match r {
        Reply::Simple(s) if &s[..] == b"OK" => true,
        Reply::Error(_) => {
            errors.add(format!("{what}: {}", r.describe()));
            false
        }
        other => {
            errors.add(format!("{what}: expected +OK, got {}", other.describe()));
            false
        }
    }
}

/// One connection's closed loop for the modes set, set-wait, get and lag.
async fn client_loop(
    id: u64,
    mut conn: Conn,
    mut replica: Option<Conn>,
    plan: Arc<Plan>,
    seed: u64,
) -> TaskResult {
    let mut res = TaskResult::default();
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(id));
    let clients_offset = id;
    let mut next_start = plan.interval.map(|iv| {
        // Spread the connections' schedules over one interval.
        Instant::now() + iv.mul_f64(rng.gen::<f64>())
    });
    let mut n: u64 = 0;
    while plan.budget.take() {
        if let (Some(at), Some(iv)) = (next_start.as_mut(), plan.interval) {
            // Absolute schedule: a connection that fell behind catches up without sleeping.
            tokio::time::sleep_until((*at).into()).await;
            *at += iv;
        }
        let key = key_of(rng.gen_range(0..plan.keyspace));
        let t0 = Instant::now();
        let measured = t0 >= plan.measure_from;
        let outcome: std::io::Result<bool> = async {
            match plan.mode {
                Mode::Set | Mode::Lag => {
                    let r = conn.call(&[b"SET", &key, &plan.value]).await?;
                    Ok(expect_ok(&r, "SET", &mut res.errors))
                }
                Mode::SetWait => {
                    conn.push(&[b"SET", &key, &plan.value]);
                    conn.push(&[b"WAIT", &plan.wait_replicas_arg, &plan.wait_timeout_arg]);
                    conn.flush().await?;
                    let set = conn.read().await?;
                    let wait = conn.read().await?;
                    let mut ok = expect_ok(&set, "SET", &mut res.errors);
                    match wait {
                        Reply::Int(k) if k >= plan.wait_replicas => {}
                        Reply::Int(k) => {
                            res.errors.add(format!(
                                "WAIT answered {k} < {} replicas",
                                plan.wait_replicas
                            ));
                            ok = false;
                        }
                        other => {
                            res.errors.add(format!("WAIT: {}", other.describe()));
                            ok = false;
                        }
                    }
                    Ok(ok)
                }
                Mode::Get => match conn.call(&[b"GET", &key]).await? {
                    Reply::Bulk(Some(_)) => Ok(true),
                    Reply::Bulk(None) => {
                        if measured {
                            res.misses += 1;
                        }
                        if !plan.allow_misses {
                            res.errors.add("GET: miss (nil) on a key that should exist");
                        }
                        Ok(plan.allow_misses)
                    }
                    other => {
                        res.errors.add(format!("GET: {}", other.describe()));
                        Ok(false)
                    }
                },
                Mode::Load | Mode::Failover | Mode::Switchover => {
                    unreachable!("these modes have their own loops")
                }
            }
        }
        .await;
        let acked = Instant::now();
        match outcome {
            Err(e) => {
                res.errors.add(format!("connection: {e}"));
                return res;
            }
            Ok(false) => continue,
            Ok(true) => {}
        }
        if measured {
            res.ops += 1;
            res.latency.record(acked - t0);
        }
        res.all_ops += 1;
        n += 1;
        if plan.mode == Mode::Lag && (n + clients_offset) % plan.sample_every == 0 {
            if let Err(e) = sample_lag(
                &mut conn,
                replica.as_mut().expect("lag has a replica"),
                &plan,
                acked,
                measured,
                &mut res,
            )
            .await
            {
                res.errors.add(format!("connection (lag sample): {e}"));
                return res;
            }
        }
    }
    res
}

/// POSITION on the writing connection, then WAITPOS on the replica; records the lag since `acked`.
async fn sample_lag(
    conn: &mut Conn,
    replica: &mut Conn,
    plan: &Plan,
    acked: Instant,
    measured: bool,
    res: &mut TaskResult,
) -> std::io::Result<()> {
    let t = Instant::now();
    let pos = match conn.call(&[b"POSITION"]).await? {
        Reply::Int(p) if p > 0 => p,
        other => {
            res.errors.add(format!("POSITION: {}", other.describe()));
            return Ok(());
        }
    };
    let position_rtt = t.elapsed();
    let pos_arg = pos.to_string().into_bytes();
    match replica
        .call(&[b"WAITPOS", &pos_arg, &plan.waitpos_timeout_arg])
        .await?
    {
        Reply::Int(applied) if applied >= pos => {
            if measured {
                res.lag.record(acked.elapsed());
                res.position_rtt.record(position_rtt);
            }
        }
        other => res
            .errors
            .add(format!("WAITPOS {pos}: {}", other.describe())),
    }
    Ok(())
}

/// `load` mode: one task's contiguous share of the keys, `pipeline` SETs per round trip.
async fn load_loop(
    mut conn: Conn,
    first: u64,
    end: u64,
    pipeline: usize,
    fill: Arc<Vec<u8>>,
) -> TaskResult {
    let mut res = TaskResult::default();
    let mut i = first;
    while i < end {
        let batch_end = (i + pipeline as u64).min(end);
        for k in i..batch_end {
            conn.push(&[b"SET", &key_of(k), &value_of(k, &fill)]);
        }
        let t0 = Instant::now();
        if let Err(e) = conn.flush().await {
            res.errors.add(format!("connection: {e}"));
            return res;
        }
        for _ in i..batch_end {
            match conn.read().await {
                Ok(r) => {
                    if expect_ok(&r, "SET", &mut res.errors) {
                        res.ops += 1;
                    }
                }
                Err(e) => {
                    res.errors.add(format!("connection: {e}"));
                    return res;
                }
            }
        }
        res.latency.record(t0.elapsed());
        i = batch_end;
    }
    res
}

/// CPU seconds (user + system) this process has used so far, from /proc (0 where unavailable).
fn own_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // The state (field 3) is index 0 here, so utime (field 14) is index 11. USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn fmt_ms(x: f64) -> String {
    format!("{x:.3}")
}

/// Seconds from the command line as a duration (negative or not a number: zero).
fn duration_arg(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

async fn run_failover(args: Args) -> Result<bool, String> {
    let writers = args.clients.unwrap_or(8);
    let interval = match args.rate {
        Some(r) if r > 0.0 => Some(Duration::from_secs_f64(writers as f64 / r)),
        Some(_) => return Err("--rate must be positive".into()),
        None => None,
    };
    let (event, cmd) = match args.mode {
        Mode::Failover => (failover::Event::Kill, args.kill_cmd),
        _ => (failover::Event::Switch, args.switch_cmd),
    };
    failover::run(failover::Config {
        event,
        event_cmd: cmd.unwrap_or_default(),
        discover: match args.discover {
            DiscoverArg::Nodes => failover::Discover::Nodes,
            DiscoverArg::Sentinel => failover::Discover::Sentinel,
        },
        nodes: args.nodes,
        sentinels: args.sentinels,
        master_name: args.master_name,
        writers,
        trial: args.trial,
        value_size: args.value_size,
        warmup: duration_arg(args.warmup),
        after: duration_arg(args.after),
        max_wait: duration_arg(args.max_wait),
        settle: duration_arg(args.settle),
        settle_cmd: args.settle_cmd,
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        interval,
    })
    .await
}

async fn run(args: Args) -> Result<bool, String> {
    if matches!(args.mode, Mode::Failover | Mode::Switchover) {
        return run_failover(args).await;
    }
    let addr = format!("{}:{}", args.host, args.port);
    let clients = args.clients.unwrap_or(50);
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(
            Conn::connect(&addr)
                .await
                .map_err(|e| format!("connect to {addr}: {e}"))?,
        );
    }
    let fill = Arc::new(filler(args.value_size));

    if args.mode == Mode::Load {
        let start = Instant::now();
        let per = args.keys.div_ceil(clients as u64);
        let mut handles = Vec::new();
        for (i, c) in conns.into_iter().enumerate() {
            let first = (i as u64 * per).min(args.keys);
            let end = ((i as u64 + 1) * per).min(args.keys);
            handles.push(tokio::spawn(load_loop(
                c,
                first,
                end,
                args.pipeline.max(1),
                fill.clone(),
            )));
        }
        let mut total = TaskResult::default();
        for h in handles {
            total.merge(h.await.map_err(|e| format!("task failed: {e}"))?);
        }
        let secs = start.elapsed().as_secs_f64();
        let bytes = total.ops as f64 * (16 + args.value_size) as f64;
        total.latency.finish();
        println!(
            "load: {} keys in {:.2} s: {:.0} keys/s, {:.1} MB/s of keys+values; pipeline of {} round trip p50 {} ms, max {} ms",
            total.ops,
            secs,
            total.ops as f64 / secs,
            bytes / secs / 1e6,
            args.pipeline,
            fmt_ms(total.latency.percentile_ms(50.0)),
            fmt_ms(total.latency.max_ms())
        );
        report_errors(&total.errors);
        println!(
            "RESULT mode=load keys={} elapsed_s={:.3} keys_per_sec={:.0} errors={}",
            total.ops,
            secs,
            total.ops as f64 / secs,
            total.errors.total()
        );
        return Ok(total.errors.total() == 0 && total.ops == args.keys);
    }

    let mut replicas: Vec<Option<Conn>> = Vec::new();
    if args.mode == Mode::Lag {
        let r = args
            .replica
            .as_deref()
            .ok_or("--mode lag needs --replica HOST:PORT")?;
        if args.sample_every == 0 {
            return Err("--sample-every must be at least 1".into());
        }
        for _ in 0..clients {
            replicas.push(Some(
                Conn::connect(r)
                    .await
                    .map_err(|e| format!("connect to replica {r}: {e}"))?,
            ));
        }
    } else {
        replicas.resize_with(clients, || None);
    }

    let cpu0 = own_cpu_secs();
    let start = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measure_from = start + warmup;
    let budget = match (args.duration, args.requests) {
        (Some(d), None) => Budget::Until(measure_from + Duration::from_secs_f64(d)),
        (None, Some(n)) if args.warmup == 0.0 => Budget::Count(AtomicU64::new(n)),
        (None, Some(_)) => return Err("--warmup needs --duration".into()),
        _ => return Err("give exactly one of --duration and --requests".into()),
    };
    let interval = match args.rate {
        Some(r) if r > 0.0 => Some(Duration::from_secs_f64(clients as f64 / r)),
        Some(_) => return Err("--rate must be positive".into()),
        None => None,
    };
    let plan = Arc::new(Plan {
        mode: args.mode,
        keyspace: args.keyspace.max(1),
        value: fill.to_vec(),
        wait_replicas: args.wait_replicas,
        wait_replicas_arg: args.wait_replicas.to_string().into_bytes(),
        wait_timeout_arg: args.wait_timeout_ms.to_string().into_bytes(),
        sample_every: args.sample_every,
        waitpos_timeout_arg: args.waitpos_timeout_ms.to_string().into_bytes(),
        allow_misses: args.allow_misses,
        interval,
        measure_from,
        budget,
    });

    let mut handles = Vec::new();
    for (i, (c, r)) in conns.into_iter().zip(replicas).enumerate() {
        handles.push(tokio::spawn(client_loop(
            i as u64,
            c,
            r,
            plan.clone(),
            args.seed,
        )));
    }
    let mut total = TaskResult::default();
    for h in handles {
        total.merge(h.await.map_err(|e| format!("task failed: {e}"))?);
    }
    let secs = (Instant::now().saturating_duration_since(measure_from)).as_secs_f64();
    let client_cpu_pct = 100.0 * (own_cpu_secs() - cpu0) / start.elapsed().as_secs_f64();
    let rate = total.ops as f64 / secs;
    total.latency.finish();
    total.lag.finish();
    total.position_rtt.finish();

    let mode = args
        .mode
        .to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_owned();
    let l = &total.latency;
    println!(
        "{mode}: {} ops in {:.2} s = {:.0} ops/s ({} clients{}); latency ms: mean {} p50 {} p99 {} p99.9 {} max {}",
        total.ops,
        secs,
        rate,
        clients,
        args.rate.map(|r| format!(", paced to {r:.0} ops/s")).unwrap_or_default(),
        fmt_ms(l.mean_ms()),
        fmt_ms(l.percentile_ms(50.0)),
        fmt_ms(l.percentile_ms(99.0)),
        fmt_ms(l.percentile_ms(99.9)),
        fmt_ms(l.max_ms())
    );
    let mut result = format!(
        "RESULT mode={mode} clients={} ops={} all_ops={} elapsed_s={:.3} ops_per_sec={:.0} p50_ms={} p99_ms={} p999_ms={} max_ms={} errors={} misses={} client_cpu_pct={:.0}",
        clients,
        total.ops,
        total.all_ops,
        secs,
        rate,
        fmt_ms(l.percentile_ms(50.0)),
        fmt_ms(l.percentile_ms(99.0)),
        fmt_ms(l.percentile_ms(99.9)),
        fmt_ms(l.max_ms()),
        total.errors.total(),
        total.misses,
        client_cpu_pct
    );
    if let Some(r) = args.rate {
        result.push_str(&format!(" target_rate={r:.0}"));
    }
    if args.mode == Mode::Lag {
        let g = &total.lag;
        let p = &total.position_rtt;
        println!(
            "lag: {} samples; SET acknowledged -> applied on replica, ms: p50 {} p90 {} p99 {} max {} (includes the POSITION round trip: p50 {} p99 {} ms, and WAITPOS's)",
            g.len(),
            fmt_ms(g.percentile_ms(50.0)),
            fmt_ms(g.percentile_ms(90.0)),
            fmt_ms(g.percentile_ms(99.0)),
            fmt_ms(g.max_ms()),
            fmt_ms(p.percentile_ms(50.0)),
            fmt_ms(p.percentile_ms(99.0))
        );
        result.push_str(&format!(
            " lag_samples={} lag_p50_ms={} lag_p90_ms={} lag_p99_ms={} lag_max_ms={} position_rtt_p50_ms={} position_rtt_p99_ms={}",
            g.len(),
            fmt_ms(g.percentile_ms(50.0)),
            fmt_ms(g.percentile_ms(90.0)),
            fmt_ms(g.percentile_ms(99.0)),
            fmt_ms(g.max_ms()),
            fmt_ms(p.percentile_ms(50.0)),
            fmt_ms(p.percentile_ms(99.0))
        ));
    }
    report_errors(&total.errors);
    println!("{result}");
    let valid = total.errors.total() == 0
        && total.ops > 0
        && (args.mode != Mode::Lag || total.lag.len() > 0);
    Ok(valid)
}

fn report_errors(errors: &Errors) {
    report_errors_as("ERRORS", "the run is not a valid measurement", errors);
}

/// Prints the error counts, most frequent first, under `heading: N (note)`.
pub(crate) fn report_errors_as(heading: &str, note: &str, errors: &Errors) {
    if errors.total() > 0 {
        eprintln!("{heading}: {} ({note}); most frequent:", errors.total());
        for (m, n) in errors.top(10) {
            eprintln!("  {n:>8}  {m}");
        }
    }
}

fn main() {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("tandem-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_gen_resp_py() {
        // `scripts/bench/gen_resp.py --value-of 7 --value-size 30` prints this.
        assert_eq!(value_of(7, &filler(30)), b"v000000000007:zuhEPjbZWzOOIM38");
        assert_eq!(key_of(42), b"key:000000000042");
    }
}
