//! Writes and reads a snapshot of 1M records of ~120 bytes and prints the throughput of each
//! phase. Run the build you ship:
//!
//! ```text
//! cargo run --release -p tandem-snapshot --example snapshot_bench [-- RECORDS [DIR]]
//! ```
//!
//! DIR defaults to a fresh temp dir under $TMPDIR; pass a directory on the data disk to measure
//! its fsync. Also times SHA-256 and CRC32C alone over the same bytes, to show where time goes.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tandem_snapshot::{verify_file, SnapshotId, SnapshotReader, SnapshotWriter};

const RECORD_LEN: usize = 120;

fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .map(|s| s.parse().expect("RECORDS must be a number"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().into());

    // Varying lengths around RECORD_LEN (112..=127), varying content, no allocation per record.
    let template: Vec<u8> = (0..RECORD_LEN + 32)
        .map(|i| (i * 131 % 251) as u8)
        .collect();
    let fill = |i: usize, buf: &mut Vec<u8>| {
        let len = RECORD_LEN - 8 + i % 16;
        buf.clear();
        buf.extend_from_slice(&template[i % 16..i % 16 + len]);
        buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
    };
    let payload_bytes: usize = (0..records).map(|i| RECORD_LEN - 8 + i % 16).sum();

    let name = SnapshotId {
        seq: 1,
        last_index: records as u64,
    }
    .file_stem();
    let started = Instant::now();
    let mut writer = SnapshotWriter::create(&dir, &name, b"bench").expect("create");
    let mut buf = Vec::with_capacity(RECORD_LEN + 16);
    for i in 0..records {
        fill(i, &mut buf);
        writer.write_record(&buf).expect("write_record");
    }
    let before_finish = started.elapsed();
    let info = writer.finish().expect("finish");
    let write_total = started.elapsed();
    let mb = info.size as f64 / 1e6;
    println!(
        "file: {} records, {} blocks, {:.1} MB ({:.1} MB of record bytes) at {}",
        info.record_count,
        info.block_count,
        mb,
        payload_bytes as f64 / 1e6,
        info.path.display()
    );
    println!(
        "write (incl. record generation): {:>7.1} MB/s  ({:.3} s; {:.3} s of it in finish: trailer, fsync, rename, dir fsync)",
        mb / write_total.as_secs_f64(),
        write_total.as_secs_f64(),
        (write_total - before_finish).as_secs_f64()
    );

    let started = Instant::now();
    let mut reader = SnapshotReader::open(&info.path).expect("open");
    let mut n = 0usize;
    let mut bytes = 0usize;
    while let Some(r) = reader.next_record().expect("next_record") {
        n += 1;
        bytes += r.len();
    }
    let elapsed = started.elapsed();
    assert_eq!(n, records);
    assert_eq!(bytes, payload_bytes);
    println!(
        "read (next_record, all checks):  {:>7.1} MB/s  ({:.3} s)",
        mb / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let summary = verify_file(&info.path).expect("verify_file");
    let elapsed = started.elapsed();
    assert_eq!(summary.digest, info.digest);
    println!(
        "verify_file:                     {:>7.1} MB/s  ({:.3} s)",
        mb / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let file = std::fs::read(&info.path).expect("read file");
    let started = Instant::now();
    let digest = Sha256::digest(&file);
    let elapsed = started.elapsed();
    println!(
        "SHA-256 alone:                   {:>7.1} MB/s  ({:.3} s)",
        mb / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let started = Instant::now();
    let crc = crc32c::crc32c(&file);
    let elapsed = started.elapsed();
    println!(
        "CRC32C alone:                    {:>7.1} MB/s  ({:.3} s)",
        mb / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    std::hint::black_box((digest, crc));
}
