//! Append throughput of the log under each fsync policy.
//!
//! N threads each append one entry (100 bytes by default) and wait for its `done` before the
//! next, like clients waiting for their acknowledgement. Prints appends per second, latency,
//! and how many entries each fdatasync and each write carried (group commit at work).
//!
//! ```text
//! cargo run --release -p tandem-log --example log_bench -- [--threads 16] [--seconds 3]
//!     [--payload 100] [--dir /path/on/the/disk/to/test]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_log::{FsyncPolicy, Log, LogConfig};

struct Args {
    threads: usize,
    seconds: f64,
    payload: usize,
    dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        threads: 16,
        seconds: 3.0,
        payload: 100,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => args.threads = value().parse().expect("--threads N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--payload" => args.payload = value().parse().expect("--payload BYTES"),
            "--dir" => args.dir = Some(value().into()),
            other => panic!("unknown flag {other}; see the doc comment at the top of log_bench.rs"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    println!(
        "log_bench: {} threads, {}-byte entries, {} s per policy, each append waits for its done",
        args.threads, args.payload, args.seconds
    );
    println!(
        "{:<9} {:>12} {:>9} {:>9} {:>13} {:>13}",
        "policy", "appends/s", "p50 us", "p99 us", "entries/fsync", "entries/write"
    );
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        run(&args, policy);
    }
}

fn run(args: &Args, policy: FsyncPolicy) {
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let cfg = LogConfig {
        fsync: policy,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(tmp.path(), cfg).expect("open");
    let log = Arc::new(log);
    let next = Arc::new(Mutex::new(1u64));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![b'x'; args.payload]);

    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (log, next, stop, payload) = (
                Arc::clone(&log),
                Arc::clone(&next),
                Arc::clone(&stop),
                payload.clone(),
            );
            std::thread::spawn(move || {
                let mut latencies_us = Vec::new();
                let (tx, rx) = mpsc::channel::<()>();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    {
                        let mut next = next.lock().unwrap();
                        let tx = tx.clone();
                        log.append(
                            vec![(*next, payload.clone())],
                            Box::new(move |r| {
                                r.expect("append failed");
                                let _ = tx.send(());
                            }),
                        );
                        *next += 1;
                    }
                    rx.recv().unwrap();
                    latencies_us.push(t0.elapsed().as_micros() as u32);
                }
                latencies_us
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u32> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let stats = log.stats();
    let log = Arc::try_unwrap(log).expect("workers are done");
    log.close().expect("close");

    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let fsyncs = if stats.fsyncs == 0 {
        "no fsync".to_string()
    } else {
        format!("{:.1}", stats.entries_per_fsync())
    };
    println!(
        "{:<9} {:>12.0} {:>9} {:>9} {:>13} {:>13.1}",
        policy.as_str(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        fsyncs,
        stats.entries_per_batch()
    );
}
