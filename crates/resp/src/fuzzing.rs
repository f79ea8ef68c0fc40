//! The properties the fuzz targets check, as plain functions, so the libFuzzer targets in
//! `fuzz/` and this crate's seeded tests run the same code. Each panics when a property fails.

use bytes::{Bytes, BytesMut};

use crate::encode::{encode, Protocol};
use crate::{parse_frame, Frame, Limits, ProtocolError, RequestParser};

/// Small limits, so fuzz inputs of a few hundred bytes reach every limit.
pub fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_array_len: 8,
        max_inline_len: 32,
        max_nesting: 4,
    }
}

/// Feeds the input to a [`RequestParser`] whole, in pseudo-random chunks and (for short inputs)
/// one byte at a time, and checks that the requests parsed, the error (if any) and the bytes
/// left over are the same every way. `data[0]` chooses the limits, the pre-auth mode and the
/// chunk sizes; the rest is the input. Never panics unless a property fails.
pub fn check_request(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = if control & 1 == 0 {
        Limits::default()
    } else {
        small_limits()
    };
    let unauthenticated = control & 2 != 0;
    let whole = feed_requests(
        input,
        limits,
        unauthenticated,
        &mut std::iter::repeat(usize::MAX),
    );
    let mut seed = u64::from(control >> 2) + 1;
    let max_chunk = [1, 2, 3, 7, 16, 64][usize::from(control >> 2) % 6];
    let mut sizes = std::iter::from_fn(|| Some(1 + (next_random(&mut seed) as usize) % max_chunk));
    let chunked = feed_requests(input, limits, unauthenticated, &mut sizes);
    assert_eq!(whole, chunked, "chunks of up to {max_chunk} bytes");
    if input.len() <= 512 {
        let bytewise = feed_requests(input, limits, unauthenticated, &mut std::iter::repeat(1));
        assert_eq!(whole, bytewise, "one byte at a time");
    }
}

/// What a connection would see from an input: the requests, then the error that ended it or
/// the number of bytes still buffered.
#[derive(Debug, PartialEq)]
struct RequestOutcome {
    requests: Vec<Vec<Bytes>>,
    end: Result<usize, ProtocolError>,
}

fn feed_requests(
    input: &[u8],
    limits: Limits,
    unauthenticated: bool,
    chunk_sizes: &mut dyn Iterator<Item = usize>,
) -> RequestOutcome {
    let mut parser = RequestParser::new(limits);
    parser.set_unauthenticated(unauthenticated);
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = chunk_sizes
            .next()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        buf.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "empty requests are skipped");
                    requests.push(args);
                }
                Ok(None) => break,
                Err(error) => {
                    // The error text is built on the error path only: check it never panics.
                    let _ = error.to_frame();
                    return RequestOutcome {
                        requests,
                        end: Err(error),
                    };
                }
            }
        }
    }
    RequestOutcome {
        requests,
        end: Ok(buf.len()),
    }
}

/// Parses the input as a reply with the default and the small limits; for every value parsed,
/// checks that no prefix of its bytes parses as a value, and that encoding it in RESP2 and RESP3
/// gives bytes that parse back whole and re-encode to the same bytes (and, for RESP3, to an
/// equivalent value).
pub fn check_frame(data: &[u8]) {
    for limits in [Limits::default(), small_limits()] {
        let Ok(Some((frame, used))) = parse_frame(data, &limits) else {
            continue;
        };
        assert!(used > 0 && used <= data.len());
        if used <= 512 {
            for prefix in 0..used {
                assert_eq!(
                    parse_frame(&data[..prefix], &limits),
                    Ok(None),
                    "prefix {prefix}"
                );
            }
        }
        check_round_trip(&frame);
    }
}

/// Encodes `frame` in both protocols and checks that the bytes parse back and re-encode to
/// the same bytes; in RESP3 the value read back must be [`equivalent`] to `frame`.
pub fn check_round_trip(frame: &Frame) {
    // The encoder may lengthen lines (lossy UTF-8) and double counts (RESP2 maps).
    let limits = Limits {
        max_bulk_len: usize::MAX,
        max_array_len: usize::MAX,
        max_inline_len: usize::MAX,
        max_nesting: usize::MAX,
    };
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        let mut first = BytesMut::new();
        encode(frame, proto, &mut first);
        let (again, used) = match parse_frame(&first, &limits) {
            Ok(Some(parsed)) => parsed,
            other => panic!("{proto:?} encoding of {frame:?} is {first:?}, parsed as {other:?}"),
        };
        assert_eq!(used, first.len(), "{proto:?}: {first:?}");
        let mut second = BytesMut::new();
        encode(&again, proto, &mut second);
        assert_eq!(first, second, "{proto:?}: re-encoding changed the bytes");
        if proto == Protocol::Resp3 {
            assert!(
                equivalent(frame, &again),
                "{frame:?} came back as {again:?}"
            );
        }
    }
}

/// Whether `sent` reads back as `received` after a RESP3 round trip: equal, except that the two
/// nulls are one, NaN equals NaN, CR and LF in lines became spaces and a malformed verbatim
/// format became `txt`.
pub fn equivalent(sent: &Frame, received: &Frame) -> bool {
    fn same_line(sent: &str, received: &str) -> bool {
        sent.replace(['\r', '\n'], " ") == received
    }
    fn all(sent: &[Frame], received: &[Frame]) -> bool {
        sent.len() == received.len() && sent.iter().zip(received).all(|(a, b)| equivalent(a, b))
    }
    match (sent, received) {
        (Frame::Null | Frame::NullArray, Frame::Null) => true,
        (Frame::Simple(a), Frame::Simple(b))
        | (Frame::Error(a), Frame::Error(b))
        | (Frame::BigNumber(a), Frame::BigNumber(b)) => same_line(a, b),
        (Frame::Double(a), Frame::Double(b)) => a == b || (a.is_nan() && b.is_nan()),
        (Frame::Verbatim(fa, a), Frame::Verbatim(fb, b)) => {
            a == b && (fa == fb || (fa.len() != 3 && fb == "txt"))
        }
        (Frame::Array(a), Frame::Array(b))
        | (Frame::Set(a), Frame::Set(b))
        | (Frame::Push(a), Frame::Push(b)) => all(a, b),
        (Frame::Map(a), Frame::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| equivalent(ka, kb) && equivalent(va, vb))
        }
        _ => sent == received,
    }
}

/// xorshift64: a tiny deterministic generator, so a chunking is reproducible from its seed.
pub fn next_random(state: &mut u64) -> u64 {
    if *state == 0 {
        *state = 0x9E37_79B9_7F4A_7C15;
    }
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
