//! Measures the keyspace's memory and GET cost at scale, for comparison with Redis.
//!
//! `cargo run --release -p tandem-core --example footprint [keys] [value_bytes]`
//!
//! Inserts `keys` (default 1,000,000) keys `key:00000000`.. with values of `value_bytes`
//! (default 100) through `apply` with SHA-256 checksums, then prints the process's resident
//! memory growth per key (Linux /proc), the keyspace's own estimate, and the mean cost of GET.
//! Redis 7.0 for the same data (filled with SET over a pipe): used_memory ~184 B/key.

use std::time::Instant;

use bytes::Bytes;
use tandem_checksum::Algorithm;
use tandem_core::{parse, Batch, Command, Keyspace, Op, ParseContext};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let n: usize = argv
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let value_len: usize = argv.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let ctx = ParseContext {
        algorithm: Algorithm::Sha256,
        now_ms: 1_767_225_600_000,
    };
    let value = Bytes::from(vec![b'x'; value_len]);
    let mut ks = Keyspace::new();
    let before = rss_bytes();
    let start = Instant::now();
    for i in 0..n {
        let key = Bytes::from(format!("key:{i:08}"));
        let args = [Bytes::from_static(b"SET"), key, value.clone()];
        let Some(Ok(Command::Write(w))) = parse(&args, &ctx) else {
            unreachable!()
        };
        ks.apply(&Batch {
            now_ms: ctx.now_ms,
            algorithm: ctx.algorithm,
            ops: vec![Op::Write(w)],
        });
    }
    let fill = start.elapsed();
    let after = rss_bytes();
    println!(
        "{n} keys x {value_len} B: rss +{} B/key, estimate {} B/key, fill {:.0} ns/SET",
        (after - before) / n,
        ks.used_memory_estimate() / n,
        fill.as_nanos() as f64 / n as f64
    );

    let gets: Vec<_> = (0..n)
        .step_by(7)
        .map(|i| {
            let args = [
                Bytes::from_static(b"GET"),
                Bytes::from(format!("key:{i:08}")),
            ];
            match parse(&args, &ctx) {
                Some(Ok(Command::Read(r))) => r,
                _ => unreachable!(),
            }
        })
        .collect();
    let start = Instant::now();
    let mut bytes = 0;
    for r in &gets {
        if let tandem_core::Frame::Bulk(b) = ks.read(r, ctx.now_ms) {
            bytes += b.len();
        }
    }
    let per_get = start.elapsed().as_nanos() as f64 / gets.len() as f64;
    println!("GET: {per_get:.0} ns each (lookup + SHA-256 verify + copy), {bytes} bytes read");

    // The parts: the lookup alone (EXISTS), and the SHA-256 of one value.
    let exists: Vec<_> = (0..n)
        .step_by(7)
        .map(|i| {
            let args = [
                Bytes::from_static(b"EXISTS"),
                Bytes::from(format!("key:{i:08}")),
            ];
            match parse(&args, &ctx) {
                Some(Ok(Command::Read(r))) => r,
                _ => unreachable!(),
            }
        })
        .collect();
    let mut per_lookup = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for r in &exists {
            std::hint::black_box(ks.read(r, ctx.now_ms));
        }
        per_lookup = per_lookup.min(start.elapsed().as_nanos() as f64 / exists.len() as f64);
    }
    // Baseline on the same machine and load: std HashMap lookups of the same keys.
    let map: std::collections::HashMap<Box<[u8]>, Box<[u8]>> = (0..n)
        .map(|i| {
            (
                format!("key:{i:08}").into_bytes().into(),
                vec![b'x'; value_len].into(),
            )
        })
        .collect();
    let probe: Vec<Vec<u8>> = (0..n)
        .step_by(7)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let mut per_map = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for k in &probe {
            std::hint::black_box(map.get(k.as_slice()).map(|v| v.len()));
        }
        per_map = per_map.min(start.elapsed().as_nanos() as f64 / probe.len() as f64);
    }
    let start = Instant::now();
    let rounds = 200_000;
    for _ in 0..rounds {
        std::hint::black_box(tandem_checksum::Checksum::compute(
            Algorithm::Sha256,
            std::hint::black_box(&value),
        ));
    }
    let per_hash = start.elapsed().as_nanos() as f64 / rounds as f64;
    println!(
        "  of which: lookup {per_lookup:.0} ns (EXISTS), SHA-256 of the value {per_hash:.0} ns"
    );
    println!("  baseline: std HashMap lookup of the same keys {per_map:.0} ns");
}
