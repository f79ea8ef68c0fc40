//! The `failover` and `switchover` modes: writes through a change of primary, then checks that
//! every acknowledged write survived.
//!
//! N writers (default 8), each on its own connection to the current primary, write unique keys
//! `fo:<trial>:<writer>:<seq>` whose value repeats the key and the sequence number, and record
//! every acknowledged write (`+OK`) with its time and the address that acknowledged it. After the
//! warm-up the mode runs the event command itself (`--kill-cmd`: e.g. `kill -9 PID` of the
//! primary; `--switch-cmd`: e.g. `redis-cli -p P FAILOVER`), so the event's time is known here
//! without a second clock. It waits for the first write acknowledged by a node other than the old
//! primary, keeps writing for `--after` seconds, stops, runs `--settle-cmd` if given (the script's
//! cue: "the killed node is back and the cluster is whole"), waits `--settle` seconds, and reads
//! every acknowledged key back from the primary of that moment: a key that is missing or holds
//! another value is an acknowledged write lost. Reading back only once the cluster is whole again
//! also catches writes that a later change of primary (a restarted node, a second failover)
//! discarded.
//!
//! With `--rate` the writers are paced to that total rate, so that two systems get the same
//! offered load; a writer that fell behind during the outage does not burst to catch up.
//!
//! Figures:
//! - `failover_ms`: from the start of the event command to the first write acknowledged by
//!   another node (the start, not the end, of the command: the figure is never flattered by the
//!   command's own startup time, which is reported as `event_cmd_ms`);
//! - `gap_max_ms`: the longest time between two consecutive acknowledged writes (all writers
//!   merged) from the last one before the event to the end of the load: the write unavailability;
//! - `lost`, `missing`, `wrong`: acknowledged writes that did not read back, by kind.
//!
//! A write that got an error reply, a dropped connection or no reply within
//! `--request-timeout-ms` is not acknowledged: it is counted by message, not checked. After any of
//! those the writer drops its connection and tries the next candidate address.
//!
//! Finding the primary (`--discover`):
//! - `nodes`: the candidates are the `--nodes` addresses in order; a node that answers an error
//!   (`-READONLY` from a replica) or cannot be reached is skipped for the next;
//! - `sentinel`: `SENTINEL get-master-addr-by-name <--master-name>` on every `--sentinels`
//!   address; the candidates are the distinct answers, in the sentinels' order. Asking all of them,
//!   not the first that answers, means a writer follows the new primary as soon as one sentinel
//!   (the failover leader) knows it.
//!
//! Either way the address that last acknowledged a write (shared by the writers) is tried first
//! and the address that just failed last, and a discovery result is reused for 10 ms so that a
//! failover does not turn the writers into a storm of sentinel queries. A writer whose candidates
//! all failed sleeps 10 ms before discovering again: that is the resolution of `failover_ms`.
//!
//! With `sentinel`, the mode also subscribes to `+switch-master` on every sentinel, as
//! Sentinel-aware clients do (Jedis, Lettuce): on an announcement for `--master-name` every writer
//! leaves the primary it is writing to for the announced one, even if the old one still accepts
//! writes. Without it, a planned `SENTINEL FAILOVER` would leave the writers on the old primary,
//! which acknowledges writes until Sentinel turns it into a replica (seconds later) and then drops
//! them all.

use crate::resp::{Conn, Reply};
use crate::stats::Errors;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a discovery result is reused.
const DISCOVERY_REUSE: Duration = Duration::from_millis(10);
/// Pause of a writer whose candidates all failed, before it discovers again.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// GETs in flight per round trip of the read-back.
const READBACK_PIPELINE: usize = 128;
/// Deadline of one read-back round trip.
const READBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts to find a primary for the read-back (one per 100 ms).
const READBACK_FIND_ATTEMPTS: u32 = 100;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Discover {
    Nodes,
    Sentinel,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The primary is killed: `failover`.
    Kill,
    /// A planned change of primary: `switchover`.
    Switch,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Kill => "failover",
            Event::Switch => "switchover",
        }
    }
}

/// Everything the two modes need (from the command line).
pub struct Config {
    pub event: Event,
    pub event_cmd: String,
    pub discover: Discover,
    pub nodes: Vec<String>,
    pub sentinels: Vec<String>,
    pub master_name: String,
    pub writers: usize,
    pub trial: u64,
    pub value_size: usize,
    pub warmup: Duration,
    pub after: Duration,
    pub max_wait: Duration,
    pub settle: Duration,
    /// Run after the load stops, before the settle wait and the read-back: e.g. a wait until the
    /// script has restarted the killed node and the cluster is whole again.
    pub settle_cmd: Option<String>,
    pub request_timeout: Duration,
    /// Interval between one writer's writes (the total rate is paced); None: as fast as replies come.
    pub interval: Option<Duration>,
}

/// One acknowledged write: its sequence number (the writer is known from where it is kept), when
/// the `+OK` arrived, and which address sent it.
struct Ack {
    seq: u64,
    at: Instant,
    addr: Arc<str>,
}

/// What one writer did.
#[derive(Default)]
struct WriterResult {
    acks: Vec<Ack>,
    /// Writes sent that were not acknowledged (error reply, dropped connection, timeout).
    unacked: u64,
    errors: Errors,
}

/// State the writers and the conductor share.
struct Shared {
    cfg: Config,
    stop: AtomicBool,
    /// The address that last acknowledged a write: tried first by every writer.
    hint: Mutex<Option<Arc<str>>>,
    /// The primary last announced by a sentinel's `+switch-master`, and how many announcements
    /// there were (a writer whose connection is older than the last one moves).
    announced: Mutex<Option<Arc<str>>>,
    announcements: AtomicU64,
    /// Set when the event starts: its time and the primary of that moment.
    event: Mutex<Option<(Instant, Arc<str>)>>,
    /// The first write acknowledged after the event by another node than the old primary.
    first_new: Mutex<Option<(Instant, Arc<str>)>>,
    first_new_signal: Notify,
    discovery: tokio::sync::Mutex<Discovery>,
}

/// The cached result of the last discovery and the sentinel connections it keeps open.
struct Discovery {
    last: Option<(Instant, Vec<Arc<str>>)>,
    sentinel_conns: Vec<Option<Conn>>,
}

pub fn key_of(trial: u64, writer: usize, seq: u64) -> String {
    format!("fo:{trial}:{writer}:{seq}")
}

/// The value of a key: the key and its sequence number, then filler up to `size` bytes (never
/// shorter than the prefix, so the value always identifies its write).
pub fn value_of(key: &str, seq: u64, fill: &[u8]) -> Vec<u8> {
    let mut v = format!("{key}#{seq}:").into_bytes();
    if v.len() < fill.len() {
        v.extend_from_slice(&fill[..fill.len() - v.len()]);
    }
    v
}

impl Shared {
    /// The candidate addresses, best first: the hint, then what discovery found, `failed` last.
    async fn candidates(&self, failed: Option<&Arc<str>>) -> VecDeque<Arc<str>> {
        let found = self.discover().await;
        let hint = self.hint.lock().unwrap().clone();
        let mut out: VecDeque<Arc<str>> = VecDeque::new();
        let mut push = |a: &Arc<str>| {
            if !out.iter().any(|x| x == a) {
                out.push_back(a.clone());
            }
        };
        let announced = self.announced.lock().unwrap().clone();
        for a in [&announced, &hint].into_iter().flatten() {
            if Some(a) != failed {
                push(a);
            }
        }
        // In node order, starting after the one that failed (so that writers spread their tries).
        let start = failed
            .and_then(|f| found.iter().position(|a| a == f))
            .map_or(0, |i| i + 1);
        for i in 0..found.len() {
            let a = &found[(start + i) % found.len()];
            if Some(a) != failed {
                push(a);
            }
        }
        if let Some(f) = failed {
            push(f);
        }
        out
    }

    async fn discover(&self) -> Vec<Arc<str>> {
        if self.cfg.discover == Discover::Nodes {
            return self
                .cfg
                .nodes
                .iter()
                .map(|n| Arc::from(n.as_str()))
                .collect();
        }
        let mut d = self.discovery.lock().await;
        if let Some((at, found)) = &d.last {
            if at.elapsed() < DISCOVERY_REUSE {
                return found.clone();
            }
        }
        let mut found: Vec<Arc<str>> = Vec::new();
        for i in 0..self.cfg.sentinels.len() {
            let addr = &self.cfg.sentinels[i];
            let conn = &mut d.sentinel_conns[i];
            match ask_sentinel(conn, addr, &self.cfg.master_name, self.cfg.request_timeout).await {
                Some(a) if !found.iter().any(|x| **x == *a) => found.push(Arc::from(a.as_str())),
                _ => {}
            }
        }
        d.last = Some((Instant::now(), found.clone()));
        found
    }

    fn record_ack(&self, addr: &Arc<str>, at: Instant) {
        {
            let mut hint = self.hint.lock().unwrap();
            if hint.as_ref() != Some(addr) {
                *hint = Some(addr.clone());
            }
        }
        let event = self.event.lock().unwrap().clone();
        if let Some((event_at, old)) = event {
            if at >= event_at && *addr != old {
                let mut first = self.first_new.lock().unwrap();
                if first.is_none() {
                    *first = Some((at, addr.clone()));
                    self.first_new_signal.notify_one();
                }
            }
        }
    }
}

/// Follows one sentinel's `+switch-master` announcements for the whole run (reconnecting after
/// errors): each one for our master name becomes `announced`.
async fn follow_announcements(shared: Arc<Shared>, sentinel: String) {
    let name = shared.cfg.master_name.clone();
    loop {
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(shared.cfg.request_timeout, Conn::connect(&sentinel)).await
        {
            c.push(&[b"SUBSCRIBE", b"+switch-master"]);
            if c.flush().await.is_ok() {
                // Messages: ["message", "+switch-master", "<name> <old ip> <old port> <ip> <port>"].
                while let Ok(Reply::Array(Some(items))) = c.read().await {
                    let [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(text))] = &items[..] else {
                        continue;
                    };
                    if &kind[..] != b"message" {
                        continue;
                    }
                    let text = String::from_utf8_lossy(text);
                    let f: Vec<&str> = text.split_whitespace().collect();
                    if f.len() == 5 && f[0] == name {
                        let addr: Arc<str> = Arc::from(format!("{}:{}", f[3], f[4]).as_str());
                        let mut a = shared.announced.lock().unwrap();
                        if a.as_ref() != Some(&addr) {
                            *a = Some(addr);
                            shared.announcements.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `SENTINEL get-master-addr-by-name`, on a kept connection (reconnected when it failed).
async fn ask_sentinel(
    conn: &mut Option<Conn>,
    addr: &str,
    name: &str,
    timeout: Duration,
) -> Option<String> {
    if conn.is_none() {
        *conn = tokio::time::timeout(timeout, Conn::connect(addr))
            .await
            .ok()?
            .ok();
    }
    let c = conn.as_mut()?;
    let reply = tokio::time::timeout(
        timeout,
        c.call(&[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()]),
    )
    .await;
    match reply {
        Ok(Ok(Reply::Array(Some(items)))) => match &items[..] {
            [Reply::Bulk(Some(host)), Reply::Bulk(Some(port))] => Some(format!(
                "{}:{}",
                String::from_utf8_lossy(host),
                String::from_utf8_lossy(port)
            )),
            _ => None,
        },
        Ok(Ok(_)) => None,
        _ => {
            *conn = None;
            None
        }
    }
}

/// One writer: unique keys, one at a time, until told to stop.
async fn writer(id: usize, shared: Arc<Shared>, fill: Arc<Vec<u8>>) -> WriterResult {
    let cfg = &shared.cfg;
    let mut res = WriterResult::default();
    let mut conn: Option<(Arc<str>, Conn)> = None;
    let mut candidates: VecDeque<Arc<str>> = VecDeque::new();
    let mut failed: Option<Arc<str>> = None;
    let mut seq: u64 = 0;
    let mut next_write = Instant::now();
    // The announcements seen when the current connection was made.
    let mut conn_announcements = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let announcements = shared.announcements.load(Ordering::SeqCst);
        if announcements != conn_announcements && conn.is_some() {
            // A sentinel announced another primary: leave this one, even if it still takes writes.
            let announced = shared.announced.lock().unwrap().clone();
            if conn.as_ref().map(|(a, _)| a) != announced.as_ref() {
                conn = None;
                candidates.clear();
            }
            conn_announcements = announcements;
        }
        if conn.is_none() {
            conn_announcements = announcements;
            if candidates.is_empty() {
                if failed.is_some() {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                candidates = shared.candidates(failed.as_ref()).await;
                if candidates.is_empty() {
                    res.errors.add("discovery: no candidate address");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
            let addr = candidates.pop_front().expect("not empty");
            match tokio::time::timeout(cfg.request_timeout, Conn::connect(&addr)).await {
                Ok(Ok(c)) => conn = Some((addr, c)),
                Ok(Err(e)) => {
                    res.errors.add(format!("connect: {}", e.kind()));
                    failed = Some(addr);
                    continue;
                }
                Err(_) => {
                    res.errors.add("connect: timeout");
                    failed = Some(addr);
                    continue;
                }
            }
        }
        if let Some(iv) = cfg.interval {
            // Paced, without catching up after an outage: a writer that fell behind (no primary
            // for a while) starts its schedule again from now instead of bursting.
            tokio::time::sleep_until(next_write.into()).await;
            next_write = (next_write + iv).max(Instant::now());
        }
        let (addr, c) = conn.as_mut().expect("connected");
        seq += 1;
        let key = key_of(cfg.trial, id, seq);
        let value = value_of(&key, seq, &fill);
        let reply = tokio::time::timeout(
            cfg.request_timeout,
            c.call(&[b"SET", key.as_bytes(), &value]),
        )
        .await;
        let at = Instant::now();
        let problem = match reply {
            Ok(Ok(Reply::Simple(s))) if &s[..] == b"OK" => {
                shared.record_ack(addr, at);
                res.acks.push(Ack {
                    seq,
                    at,
                    addr: addr.clone(),
                });
                failed = None;
                candidates.clear();
                continue;
            }
            Ok(Ok(Reply::Error(e))) => {
                // The first word is the error's kind (READONLY, TRYAGAIN, ...).
                let e = String::from_utf8_lossy(&e).into_owned();
                format!("SET: -{}", e.split_whitespace().next().unwrap_or(""))
            }
            Ok(Ok(other)) => format!("SET: unexpected reply {}", other.describe()),
            Ok(Err(e)) => format!("SET: connection: {}", e.kind()),
            Err(_) => format!(
                "SET: no reply within {} ms",
                cfg.request_timeout.as_millis()
            ),
        };
        res.unacked += 1;
        res.errors.add(problem);
        let (addr, _) = conn.take().expect("connected");
        failed = Some(addr);
    }
    res
}

/// Runs a shell command; its duration, and its output on failure.
async fn run_cmd(cmd: &str) -> (Duration, Result<String, String>) {
    let t = Instant::now();
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let took = t.elapsed();
    let out = match out {
        Err(e) => Err(format!("could not run `{cmd}`: {e}")),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
            .trim()
            .to_owned();
            // redis-cli prints an error reply and may still exit 0: an output starting with an
            // error word counts as failure too.
            let error_reply = text
                .lines()
                .any(|l| l.starts_with("ERR") || l.starts_with("(error)"));
            if !o.status.success() || error_reply {
                Err(format!("`{cmd}` failed ({}): {text}", o.status))
            } else {
                Ok(text)
            }
        }
    };
    (took, out)
}

/// What the read-back found.
struct Readback {
    from: Arc<str>,
    missing: u64,
    wrong: u64,
    /// A few of the lost keys, for the report.
    examples: Vec<String>,
}

/// Finds the primary of this moment: the first candidate that acknowledges a probe write.
async fn find_primary(shared: &Shared) -> Result<(Arc<str>, Conn), String> {
    let cfg = &shared.cfg;
    let probe = format!("fo:{}:readback-probe", cfg.trial);
    let mut last_problem = String::from("no candidate");
    for _ in 0..READBACK_FIND_ATTEMPTS {
        for addr in shared.candidates(None).await {
            let Ok(Ok(mut c)) =
                tokio::time::timeout(cfg.request_timeout, Conn::connect(&addr)).await
            else {
                last_problem = format!("{addr}: cannot connect");
                continue;
            };
            match tokio::time::timeout(
                cfg.request_timeout,
                c.call(&[b"SET", probe.as_bytes(), b"1"]),
            )
            .await
            {
                Ok(Ok(Reply::Simple(s))) if &s[..] == b"OK" => return Ok((addr, c)),
                Ok(Ok(r)) => last_problem = format!("{addr}: {}", r.describe()),
                Ok(Err(e)) => last_problem = format!("{addr}: {e}"),
                Err(_) => last_problem = format!("{addr}: timeout"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no primary accepted a write for the read-back ({last_problem})"
    ))
}

/// GETs every acknowledged key from the primary and compares its value.
async fn read_back(
    shared: &Shared,
    results: &[WriterResult],
    fill: &[u8],
) -> Result<Readback, String> {
    let (from, mut c) = find_primary(shared).await?;
    let mut rb = Readback {
        from: from.clone(),
        missing: 0,
        wrong: 0,
        examples: Vec::new(),
    };
    let trial = shared.cfg.trial;
    let all: Vec<(usize, u64)> = results
        .iter()
        .enumerate()
        .flat_map(|(w, r)| r.acks.iter().map(move |a| (w, a.seq)))
        .collect();
    for chunk in all.chunks(READBACK_PIPELINE) {
        let keys: Vec<String> = chunk.iter().map(|&(w, s)| key_of(trial, w, s)).collect();
        for k in &keys {
            c.push(&[b"GET", k.as_bytes()]);
        }
        let replies = tokio::time::timeout(READBACK_TIMEOUT, async {
            c.flush().await?;
            let mut v = Vec::with_capacity(keys.len());
            for _ in &keys {
                v.push(c.read().await?);
            }
            Ok::<_, std::io::Error>(v)
        })
        .await
        .map_err(|_| format!("read-back from {from}: no reply within {READBACK_TIMEOUT:?}"))?
        .map_err(|e| format!("read-back from {from}: {e}"))?;
        for ((k, &(_, seq)), r) in keys.iter().zip(chunk).zip(replies) {
            let problem = match r {
                Reply::Bulk(Some(v)) if v[..] == value_of(k, seq, fill)[..] => continue,
                Reply::Bulk(Some(_)) => {
                    rb.wrong += 1;
                    "wrong value"
                }
                Reply::Bulk(None) => {
                    rb.missing += 1;
                    "missing"
                }
                other => return Err(format!("read-back GET {k}: {}", other.describe())),
            };
            if rb.examples.len() < 5 {
                rb.examples.push(format!("{k} ({problem})"));
            }
        }
    }
    Ok(rb)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// `t - origin` in milliseconds, negative when `t` is earlier.
fn signed_ms(t: Instant, origin: Instant) -> String {
    let d = t.saturating_duration_since(origin).as_secs_f64()
        - origin.saturating_duration_since(t).as_secs_f64();
    format!("{:.1}", d * 1e3)
}

/// Runs one trial; Ok(true) when it was measured (whatever the figures), Ok(false) when not.
pub async fn run(cfg: Config) -> Result<bool, String> {
    match cfg.discover {
        Discover::Nodes if cfg.nodes.is_empty() => {
            return Err("--discover nodes needs --nodes HOST:PORT,...".into())
        }
        Discover::Sentinel if cfg.sentinels.is_empty() => {
            return Err("--discover sentinel needs --sentinels HOST:PORT,...".into())
        }
        _ => {}
    }
    if cfg.writers == 0 {
        return Err("--clients must be at least 1".into());
    }
    if cfg.event_cmd.trim().is_empty() {
        return Err(match cfg.event {
            Event::Kill => "--mode failover needs --kill-cmd".into(),
            Event::Switch => "--mode switchover needs --switch-cmd".into(),
        });
    }
    let fill = Arc::new(crate::filler(cfg.value_size));
    let n_sentinels = cfg.sentinels.len();
    let shared = Arc::new(Shared {
        cfg,
        stop: AtomicBool::new(false),
        hint: Mutex::new(None),
        announced: Mutex::new(None),
        announcements: AtomicU64::new(0),
        event: Mutex::new(None),
        first_new: Mutex::new(None),
        first_new_signal: Notify::new(),
        discovery: tokio::sync::Mutex::new(Discovery {
            last: None,
            sentinel_conns: (0..n_sentinels).map(|_| None).collect(),
        }),
    });
    let cfg = &shared.cfg;
    let mode = cfg.event.name();
    if cfg.discover == Discover::Sentinel {
        for s in &cfg.sentinels {
            tokio::spawn(follow_announcements(shared.clone(), s.clone()));
        }
    }
    let handles: Vec<_> = (0..cfg.writers)
        .map(|i| tokio::spawn(writer(i, shared.clone(), fill.clone())))
        .collect();
    let stop_writers = || async {
        shared.stop.store(true, Ordering::Relaxed);
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.map_err(|e| format!("writer task failed: {e}"))?);
        }
        Ok::<_, String>(results)
    };

    tokio::time::sleep(cfg.warmup).await;
    let Some(old) = shared.hint.lock().unwrap().clone() else {
        let results = stop_writers().await?;
        let mut errors = Errors::default();
        for r in results {
            errors.merge(r.errors);
        }
        crate::report_errors(&errors);
        return Err(format!(
            "no write was acknowledged during the {:?} warm-up: no primary found",
            cfg.warmup
        ));
    };
    let event_at = Instant::now();
    *shared.event.lock().unwrap() = Some((event_at, old.clone()));
    let (event_cmd_took, event_out) = run_cmd(&cfg.event_cmd).await;
    if let Err(e) = event_out {
        stop_writers().await?;
        eprintln!("{mode}: the event command failed, nothing measured: {e}");
        println!(
            "RESULT mode={mode} trial={} old_primary={old} event_failed=1",
            cfg.trial
        );
        return Ok(false);
    }
    let waited = tokio::time::timeout(cfg.max_wait, async {
        loop {
            let notified = shared.first_new_signal.notified();
            if shared.first_new.lock().unwrap().is_some() {
                return;
            }
            notified.await;
        }
    })
    .await;
    if waited.is_ok() {
        tokio::time::sleep(cfg.after).await;
    }
    let load_end = Instant::now();
    let results = stop_writers().await?;
    let first_new = shared.first_new.lock().unwrap().clone();

    // Gaps between consecutive acknowledged writes, all writers merged, from the last one before
    // the event to the end of the load.
    let mut times: Vec<Instant> = results
        .iter()
        .flat_map(|r| r.acks.iter().map(|a| a.at))
        .collect();
    times.sort_unstable();
    let from = times.partition_point(|&t| t < event_at).saturating_sub(1);
    let mut gap_max = Duration::ZERO;
    let mut gap_at = event_at;
    let mut prev = times.get(from).copied().unwrap_or(event_at);
    for &t in times[from..].iter().chain(std::iter::once(&load_end)) {
        if t - prev > gap_max {
            gap_max = t - prev;
            gap_at = prev;
        }
        prev = t;
    }
    let acked: u64 = results.iter().map(|r| r.acks.len() as u64).sum();
    let acked_before = times.partition_point(|&t| t < event_at) as u64;
    let acked_old_after = results
        .iter()
        .flat_map(|r| r.acks.iter())
        .filter(|a| a.at >= event_at && a.addr == old)
        .count();
    let unacked: u64 = results.iter().map(|r| r.unacked).sum();
    let mut errors = Errors::default();

    let mut settle_failed = None;
    if let Some(cmd) = &cfg.settle_cmd {
        if let (_, Err(e)) = run_cmd(cmd).await {
            settle_failed = Some(e);
        }
    }
    tokio::time::sleep(cfg.settle).await;
    let readback = read_back(&shared, &results, &fill).await;
    for r in results {
        errors.merge(r.errors);
    }

    let failover = first_new.as_ref().map(|(t, _)| *t - event_at);
    let new_primary = first_new
        .as_ref()
        .map_or_else(|| "none".to_owned(), |(_, a)| a.to_string());
    println!(
        "{mode} (trial {}): old primary {old}; event command took {} ms; first write acknowledged by another node ({new_primary}) {} after the event",
        cfg.trial,
        ms(event_cmd_took),
        failover.map_or_else(
            || format!("NEVER (waited {:?})", cfg.max_wait),
            |d| format!("{} ms", ms(d))
        )
    );
    println!(
        "  writes acknowledged: {acked} ({acked_before} before the event, {acked_old_after} by the old primary after it); not acknowledged: {unacked}; longest gap between acknowledged writes {} ms, starting at {} ms from the event",
        ms(gap_max),
        signed_ms(gap_at, event_at)
    );
    if let Some(e) = &settle_failed {
        eprintln!("  the settle command failed (read back anyway): {e}");
    }
    crate::report_errors_as(
        "writes not acknowledged",
        "expected around the event; not counted as lost",
        &errors,
    );
    let mut result = format!(
        "RESULT mode={mode} trial={} writers={} old_primary={old} new_primary={new_primary} failover_ms={} gap_max_ms={} event_cmd_ms={} acked={acked} acked_before_event={acked_before} acked_old_after_event={acked_old_after} unacked={unacked}",
        cfg.trial,
        cfg.writers,
        failover.map_or_else(|| "none".to_owned(), ms),
        ms(gap_max),
        ms(event_cmd_took),
    );
    let measured = match &readback {
        Ok(rb) => {
            let lost = rb.missing + rb.wrong;
            println!(
                "  read back {acked} acknowledged keys from {}: {lost} lost ({} missing, {} wrong){}",
                rb.from,
                rb.missing,
                rb.wrong,
                if rb.examples.is_empty() {
                    String::new()
                } else {
                    format!("; e.g. {}", rb.examples.join(", "))
                }
            );
            result.push_str(&format!(
                " lost={lost} missing={} wrong={} readback_from={}",
                rb.missing, rb.wrong, rb.from
            ));
            failover.is_some()
        }
        Err(e) => {
            eprintln!("  read-back failed: {e}");
            result.push_str(" lost=unknown");
            false
        }
    };
    println!("{result}");
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_identify_their_write() {
        let fill = crate::filler(40);
        let v = value_of("fo:3:1:17", 17, &fill);
        assert_eq!(v.len(), 40);
        assert!(v.starts_with(b"fo:3:1:17#17:"));
        // A value size smaller than the prefix keeps the whole prefix.
        assert_eq!(value_of("fo:3:1:17", 17, &fill[..4]), b"fo:3:1:17#17:");
        assert_ne!(
            value_of("fo:3:1:17", 17, &fill),
            value_of("fo:3:1:18", 18, &fill)
        );
    }
}
