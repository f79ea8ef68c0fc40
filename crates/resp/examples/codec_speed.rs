//! Rough speed of the hot paths, for spotting regressions by eye (not a test; see DESIGN.md §6):
//!
//!   cargo run --release -p tandem-resp --example codec_speed
//!
//! Prints nanoseconds per operation for: parsing a `GET key` request the way a connection does
//! (append the bytes read, parse, drop the arguments), parsing 16 pipelined GETs from one read,
//! and encoding a 3-byte bulk reply and a RESP3 double.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tandem_resp::{encode, Frame, Limits, Protocol, RequestParser};

const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";

/// Best of five runs, since the machine may be busy with other work.
fn time(name: &str, ops: u64, mut run: impl FnMut()) {
    run(); // warm up
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    println!(
        "{name:<40} {:>8.1} ns/op",
        best.as_nanos() as f64 / ops as f64
    );
}

fn main() {
    // CODEC_SPEED_OPS=10000 for a quick run, e.g. under `valgrind --tool=callgrind`.
    let n: u64 = std::env::var("CODEC_SPEED_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::with_capacity(16 * 1024);
    time("parse GET (one per read)", n, || {
        for _ in 0..n {
            buf.extend_from_slice(GET);
            let args = parser.parse(&mut buf).unwrap().unwrap();
            black_box(&args);
        }
    });

    let pipeline = GET.repeat(16);
    time("parse GET (16 pipelined per read)", n, || {
        for _ in 0..n / 16 {
            buf.extend_from_slice(&pipeline);
            while let Some(args) = parser.parse(&mut buf).unwrap() {
                black_box(&args);
            }
        }
    });

    let mut out = BytesMut::with_capacity(16 * 1024);
    let reply = Frame::Bulk(Bytes::from_static(b"bar"));
    time("encode $3 bulk reply", n, || {
        for _ in 0..n {
            encode(&reply, Protocol::Resp2, &mut out);
            if out.len() > 8192 {
                out.clear();
            }
        }
    });

    let double = Frame::Double(1.1);
    time("encode RESP3 double 1.1", n, || {
        for _ in 0..n {
            encode(&double, Protocol::Resp3, &mut out);
            if out.len() > 8192 {
                out.clear();
            }
        }
    });
}
