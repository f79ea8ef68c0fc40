//! Seeded random inputs through the same checks the fuzz targets run (`tandem_resp::fuzzing`):
//! the parsers never panic, splitting input into reads never changes the result, and
//! encode → parse → encode is stable. Each test prints its seed; set `TANDEM_SEED` to replay.

use bytes::Bytes;
use tandem_resp::fuzzing::{check_frame, check_request, check_round_trip, next_random};
use tandem_resp::{encode, Frame, Protocol};

fn seed(test: &str) -> u64 {
    let seed = std::env::var("TANDEM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    println!("{test}: TANDEM_SEED={seed}");
    seed
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        next_random(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces requests are made of, so random inputs reach deep into the parser instead of all
/// being rejected at the first byte.
const REQUEST_TOKENS: &[&[u8]] = &[
    b"*",
    b"$",
    b"0",
    b"1",
    b"2",
    b"3",
    b"9",
    b"-",
    b"-1",
    b"+",
    b"\r\n",
    b"\r",
    b"\n",
    b"PING",
    b"GET",
    b" ",
    b"\t",
    b"\"",
    b"'",
    b"\\x41",
    b"\\",
    b"\\n",
    b"\0",
    b"\xff",
    b"x",
    b"*1\r\n",
    b"*2\r\n",
    b"$3\r\n",
    b"$0\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"SET k v\r\n",
    b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
];

fn random_request_input(rng: &mut Rng) -> Vec<u8> {
    let mut data = vec![rng.next() as u8];
    for _ in 0..rng.below(40) {
        if rng.below(10) == 0 {
            data.push(rng.next() as u8);
        } else {
            let token: &&[u8] = rng.pick(REQUEST_TOKENS);
            data.extend_from_slice(token);
        }
    }
    data
}

#[test]
fn random_requests_never_panic_and_split_the_same() {
    let mut rng = Rng(seed("random_requests"));
    for _ in 0..20_000 {
        check_request(&random_request_input(&mut rng));
    }
}

#[test]
fn random_garbage_requests() {
    let mut rng = Rng(seed("random_garbage_requests") ^ 1);
    for _ in 0..5_000 {
        let len = rng.below(300);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_request(&data);
    }
}

fn random_text(rng: &mut Rng) -> String {
    let pieces = ["a", "OK", " ", "\r", "\n", "é", "ERR", "7", "-", "txt", ""];
    (0..rng.below(6)).map(|_| *rng.pick(&pieces)).collect()
}

fn random_frame(rng: &mut Rng, depth: usize) -> Frame {
    let kinds = if depth >= 4 { 10 } else { 15 };
    match rng.below(kinds) {
        0 => Frame::Simple(random_text(rng)),
        1 => Frame::Error(random_text(rng)),
        2 => Frame::Integer(rng.next() as i64 >> rng.below(64)),
        3 => Frame::Bulk(Bytes::from(random_text(rng))),
        4 => Frame::Null,
        5 => Frame::NullArray,
        6 => Frame::Double(match rng.below(4) {
            0 => f64::from_bits(rng.next()),
            1 => (rng.next() % 1000) as f64 / 8.0,
            2 => *rng.pick(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0]),
            _ => rng.next() as i64 as f64,
        }),
        7 => Frame::Boolean(rng.below(2) == 0),
        8 => Frame::Verbatim(
            rng.pick(&["txt", "mkd", "ab", "abcd"]).to_string(),
            Bytes::from(random_text(rng)),
        ),
        9 => Frame::BigNumber(format!("{}{}", rng.pick(&["", "-"]), rng.next())),
        10 => Frame::Array(random_frames(rng, depth)),
        11 => Frame::Set(random_frames(rng, depth)),
        12 => Frame::Push(random_frames(rng, depth)),
        _ => Frame::Map(
            (0..rng.below(4))
                .map(|_| (random_frame(rng, depth + 1), random_frame(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn random_frames(rng: &mut Rng, depth: usize) -> Vec<Frame> {
    (0..rng.below(5))
        .map(|_| random_frame(rng, depth + 1))
        .collect()
}

#[test]
fn random_frames_round_trip() {
    let mut rng = Rng(seed("random_frames_round_trip") ^ 2);
    for _ in 0..5_000 {
        check_round_trip(&random_frame(&mut rng, 0));
    }
}

/// Encoded frames with random damage: cut, bytes changed, bytes inserted.
#[test]
fn damaged_frames_never_panic() {
    let mut rng = Rng(seed("damaged_frames") ^ 3);
    for _ in 0..5_000 {
        let mut out = bytes::BytesMut::new();
        let proto = *rng.pick(&[Protocol::Resp2, Protocol::Resp3]);
        encode(&random_frame(&mut rng, 0), proto, &mut out);
        let mut data = out.to_vec();
        check_frame(&data);
        for _ in 0..rng.below(4) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(3) {
                0 => data.truncate(at),
                1 => data[at] = *rng.pick(b"*$:+-_,#!=(%~>|\r\n0123456789?-"),
                _ => data.insert(at, rng.next() as u8),
            }
        }
        check_frame(&data);
    }
    for _ in 0..5_000 {
        let len = rng.below(100);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_frame(&data);
    }
}
