//! Crash test: a child process appends with `FsyncPolicy::Always` and prints every
//! acknowledged index; the parent SIGKILLs it at random moments, reopens the log and checks that
//! every acknowledged entry is there with its payload, and that the committed marker and purge
//! point never went back. Set `TANDEM_LOG_CRASH_SEED` to replay a run.
//!
//! The child is this same test binary, re-run with `TANDEM_LOG_CRASH_CHILD_DIR` set, executing
//! only `crash_child_process` (which does nothing in a normal run).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use tandem_log::{Log, LogConfig};

const CHILD_DIR_ENV: &str = "TANDEM_LOG_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "TANDEM_LOG_CRASH_CHILD_SEED";
const ROUNDS: usize = 8;

fn cfg() -> LogConfig {
    // Small segments so crashes also land on rolls; the cache off so reads hit the disk.
    small(32 * 1024, 0)
}

#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    run_child(Path::new(&dir), seed);
}

/// Appends forever (until killed), up to 64 appends in flight, with markers and purges.
fn run_child(dir: &Path, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (log, report) = Log::open(dir, cfg()).unwrap();
    let mut next = report
        .last_index
        .or(report.purged_index)
        .map_or(1, |i| i + 1);
    // A newline first: the test harness has printed "test crash_child_process ... " unended.
    println!("\nSTART {next}");
    let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
    loop {
        {
            let (lock, cv) = &*in_flight;
            let mut n = cv.wait_while(lock.lock().unwrap(), |n| *n >= 64).unwrap();
            *n += 1;
        }
        let count = rng.gen_range(1..=8);
        let (first, last) = (next, next + count - 1);
        let entries = (first..=last).map(|i| (i, payload(i))).collect();
        let in_flight2 = Arc::clone(&in_flight);
        log.append(
            entries,
            Box::new(move |r| {
                r.expect("append failed");
                println!("ACK {first} {last}");
                let (lock, cv) = &*in_flight2;
                *lock.lock().unwrap() -= 1;
                cv.notify_one();
            }),
        );
        next = last + 1;
        if rng.gen_ratio(1, 10) {
            let c = last;
            log.save_committed(
                Bytes::from(c.to_string()),
                Box::new(move |r| {
                    r.expect("save_committed failed");
                    println!("COMMITTED {c}");
                }),
            );
        }
        if rng.gen_ratio(1, 300) && last > 3000 {
            let p = last - 2000;
            log.purge_upto(p, Bytes::from(format!("purged {p}")))
                .unwrap();
            println!("PURGED {p}");
        }
        if rng.gen_ratio(1, 500) {
            log.save_vote(Bytes::from(format!("vote {last}"))).unwrap();
            println!("VOTED {last}");
        }
    }
}

#[derive(Default, Debug)]
struct Acked {
    /// Highest index acknowledged.
    entries_upto: u64,
    /// First index of the next acknowledgement in this round.
    next_ack: u64,
    committed: u64,
    purged: u64,
    voted: u64,
    lines: u64,
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_entry() {
    let seed: u64 = std::env::var("TANDEM_LOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed: {seed} (replay with TANDEM_LOG_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SEED_ENV, rng.gen::<u64>().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acked2 = Arc::clone(&acked);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let words: Vec<&str> = line.split_whitespace().collect();
                let mut a = acked2.lock().unwrap();
                let num = |i: usize| words[i].parse::<u64>().unwrap();
                match words.first().copied() {
                    Some("START") => a.next_ack = num(1),
                    Some("ACK") => {
                        assert_eq!(num(1), a.next_ack, "acks arrive in order");
                        a.next_ack = num(2) + 1;
                        a.entries_upto = num(2);
                    }
                    Some("COMMITTED") => a.committed = a.committed.max(num(1)),
                    Some("PURGED") => a.purged = num(1),
                    Some("VOTED") => a.voted = num(1),
                    _ => continue,
                }
                a.lines += 1;
            }
        });
        let wait_ms = rng.gen_range(50..700);
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();

        let a = acked.lock().unwrap();
        let (log, report) = Log::open(dir.path(), cfg()).unwrap();
        println!(
            "round {round}: killed after {wait_ms} ms; acknowledged up to {}, committed {}, \
             purged {}; log holds {:?}..={:?}, torn tail: {:?}",
            a.entries_upto,
            a.committed,
            a.purged,
            report.first_index,
            report.last_index,
            report
                .truncated_tail
                .as_ref()
                .map(|t| (t.offset, t.bytes_dropped))
        );
        assert!(
            report.last_index.unwrap_or(0) >= a.entries_upto,
            "round {round}: {report:?}"
        );
        let purged = report.purged_index.unwrap_or(0);
        assert!(purged >= a.purged, "purge point went back: {report:?}");
        let committed: u64 = report
            .committed
            .as_ref()
            .map_or(0, |c| std::str::from_utf8(c).unwrap().parse().unwrap());
        assert!(
            committed >= a.committed,
            "committed marker went back: {report:?}"
        );
        if a.voted > 0 {
            let vote = report.vote.clone().expect("vote lost");
            let v: u64 = std::str::from_utf8(&vote).unwrap()[5..].parse().unwrap();
            assert!(v >= a.voted, "vote went back");
        }
        if let (Some(first), Some(last)) = (report.first_index, report.last_index) {
            assert_eq!(
                first,
                purged + 1,
                "the log starts right after the purge point"
            );
            // Every entry present, acknowledged or not, has the payload that was written.
            assert_entries(&log, first..last + 1, first..=last);
        }
        log.close().unwrap();
    }
    let a = acked.lock().unwrap();
    assert!(a.entries_upto > 100, "the children made progress: {a:?}");
}
