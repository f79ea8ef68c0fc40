//! Byte-level tests of the request parser: bytes in, exact arguments or exact Redis error text
//! out. Every expected error text was checked against redis-server 7.0.

use bytes::{Bytes, BytesMut};
use tandem_resp::{ErrorKind, Frame, Limits, ProtocolError, RequestParser};

/// Parses every request in `input` given at once: the requests, then either the error text or
/// the number of bytes left unconsumed.
fn parse_all_with(input: &[u8], limits: Limits) -> (Vec<Vec<Vec<u8>>>, Result<usize, String>) {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::from(input);
    let mut requests = Vec::new();
    loop {
        match parser.parse(&mut buf) {
            Ok(Some(args)) => requests.push(args.iter().map(|a| a.to_vec()).collect()),
            Ok(None) => return (requests, Ok(buf.len())),
            Err(error) => return (requests, Err(error.to_string())),
        }
    }
}

fn parse_all(input: &[u8]) -> (Vec<Vec<Vec<u8>>>, Result<usize, String>) {
    parse_all_with(input, Limits::default())
}

fn req(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn error_of_with(input: &[u8], limits: Limits) -> String {
    match parse_all_with(input, limits) {
        (_, Err(text)) => text,
        other => panic!(
            "{:?} gave {other:?}, expected an error",
            String::from_utf8_lossy(input)
        ),
    }
}

fn error_of(input: &[u8]) -> String {
    error_of_with(input, Limits::default())
}

#[test]
fn get_request() {
    let (requests, rest) = parse_all(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
    assert_eq!(requests, vec![req(&["GET", "key"])]);
    assert_eq!(rest, Ok(0));
}

#[test]
fn binary_arguments_and_empty_bulk() {
    let (requests, rest) = parse_all(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n");
    assert_eq!(
        requests,
        vec![vec![b"SET".to_vec(), b"".to_vec(), b"\r\n\0\xff".to_vec()]]
    );
    assert_eq!(rest, Ok(0));
}

#[test]
fn pipelined_requests_in_one_buffer() {
    let input =
        b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\n*1\r\n$4\r\nPI";
    let (requests, rest) = parse_all(input);
    assert_eq!(
        requests,
        vec![
            req(&["PING"]),
            req(&["ECHO", "hi"]),
            req(&["GET", "a"]),
            req(&["PING"])
        ]
    );
    // The last request is incomplete: its header and bulk header are consumed into the parser.
    assert_eq!(rest, Ok(2));
}

#[test]
fn incomplete_request_waits_then_completes() {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nke"[..]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert_eq!(parser.bulk_bytes_needed(), Some(5));
    assert_eq!(
        parser.partial_request_bytes(),
        3,
        "GET is held by the parser"
    );
    assert_eq!(&buf[..], b"ke");
    buf.extend_from_slice(b"y\r\n");
    let args = parser.parse(&mut buf).unwrap().unwrap();
    assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("key")]);
    assert!(buf.is_empty());
    assert_eq!(parser.bulk_bytes_needed(), None);
    assert_eq!(parser.partial_request_bytes(), 0);
    assert_eq!(parser.parse(&mut buf), Ok(None));
}

/// `*0`, `*-1`, any `*N` with N <= 0 and blank inline lines are skipped, as Redis skips them.
#[test]
fn empty_requests_are_skipped() {
    let (requests, rest) = parse_all(b"*0\r\n*-1\r\n*-5\r\n\r\n\n   \r\n\t\nPING\r\n");
    assert_eq!(requests, vec![req(&["PING"])]);
    assert_eq!(rest, Ok(0));
}

#[test]
fn inline_requests() {
    let (requests, rest) = parse_all(b"SET k \"a b\\x41\"\r\nGET 'k'\nECHO\t\tx\r\n");
    assert_eq!(
        requests,
        vec![
            req(&["SET", "k", "a bA"]),
            req(&["GET", "k"]),
            req(&["ECHO", "x"])
        ]
    );
    assert_eq!(rest, Ok(0));
    // A line not starting with '*' is inline, even one that looks like RESP.
    assert_eq!(
        parse_all(b"$3\r\nfoo\r\n").0,
        vec![req(&["$3"]), req(&["foo"])]
    );
    // Only one CR before the LF is part of the line ending; other CRs separate arguments.
    assert_eq!(parse_all(b"ECHO x\r\r\n").0, vec![req(&["ECHO", "x"])]);
    assert_eq!(
        parse_all(b"ECHO a\rb\r\n").0,
        vec![req(&["ECHO", "a", "b"])]
    );
    assert_eq!(
        parse_all(b"ECHO \"a\rb\"\r\n").0,
        vec![req(&["ECHO", "a\rb"])]
    );
}

#[test]
fn inline_unbalanced_quotes() {
    for input in [
        &b"ECHO \"abc\r\n"[..],
        b"ECHO 'abc\r\n",
        b"ECHO \"a\"b\r\n",
        b"ECHO a\"b c\"d\r\n",
        b"ECHO \"a\\\"\r\n",
    ] {
        assert_eq!(
            error_of(input),
            "Protocol error: unbalanced quotes in request"
        );
    }
}

const INVALID_MULTIBULK: &str = "Protocol error: invalid multibulk length";
const INVALID_BULK: &str = "Protocol error: invalid bulk length";

#[test]
fn multibulk_errors_have_redis_wording() {
    let cases: &[(&[u8], &str)] = &[
        (b"*+1\r\n", INVALID_MULTIBULK),
        (b"*01\r\n", INVALID_MULTIBULK),
        (b"*-0\r\n", INVALID_MULTIBULK),
        (b"*\r\n", INVALID_MULTIBULK),
        (b"*x\r\n", INVALID_MULTIBULK),
        (b"*1 \r\n", INVALID_MULTIBULK),
        (b"*3000000000\r\n", INVALID_MULTIBULK),
        (b"*1\r\n$04\r\nPING\r\n", INVALID_BULK),
        (b"*1\r\n$-1\r\n", INVALID_BULK),
        (b"*1\r\n$\r\n", INVALID_BULK),
        (b"*1\r\n$+4\r\nPING\r\n", INVALID_BULK),
        (b"*1\r\n$536870913\r\n", INVALID_BULK),
        (b"*1\r\n$100000000000000000\r\n", INVALID_BULK),
        (b"*1\r\n$1000000000000000000\r\n", INVALID_BULK),
        (b"*1\r\n$99999999999999999999\r\n", INVALID_BULK),
        (
            b"*1\r\nX4\r\nPING\r\n",
            "Protocol error: expected '$', got 'X'",
        ),
        (
            b"*2\r\n$1\r\na\r\n:1\r\n",
            "Protocol error: expected '$', got ':'",
        ),
        (b"*1\r\n\r\n", "Protocol error: expected '$', got ' '"),
        (
            b"*1\r\n\x01\r\n",
            "Protocol error: expected '$', got '\x01'",
        ),
        // Redis writes the raw byte; a Rust String cannot hold it, so it is escaped.
        (
            b"*1\r\n\xff\r\n",
            "Protocol error: expected '$', got '\\xff'",
        ),
        (
            b"*1\r\n\x00\r\n",
            "Protocol error: expected '$', got '\\x00'",
        ),
    ];
    for (input, expected) in cases {
        let input_text = String::from_utf8_lossy(input);
        assert_eq!(error_of(input), *expected, "{input_text:?}");
    }
}

/// Redis accepts these (it skips two bytes after the data or the CR without looking); Tandem
/// refuses them because a wrong length would otherwise turn argument bytes into commands.
#[test]
fn missing_crlf_is_an_error() {
    assert_eq!(
        error_of(b"*1\r\n$4\r\nPINGxx"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        error_of(b"*1\r\n$3\r\nPING\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        error_of(b"*1\rX$4\r\nPING\r\n"),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        error_of(b"*1\r\n$4\rXPING\r\n"),
        "Protocol error: invalid bulk length"
    );
}

#[test]
fn error_reply_frame() {
    let error = parse_all(b"*x\r\n");
    assert!(error.1.is_err());
    let mut parser = RequestParser::default();
    let error = parser
        .parse(&mut BytesMut::from(&b"*x\r\n"[..]))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidMultibulkLength);
    assert_eq!(
        error.to_frame(),
        Frame::Error("ERR Protocol error: invalid multibulk length".into())
    );
}

fn limits(edit: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    edit(&mut limits);
    limits
}

#[test]
fn limit_max_bulk_len() {
    let limits = limits(|l| l.max_bulk_len = 4);
    assert_eq!(
        parse_all_with(b"*1\r\n$4\r\nPING\r\n", limits).0,
        vec![req(&["PING"])]
    );
    assert_eq!(
        error_of_with(b"*1\r\n$5\r\nPINGS\r\n", limits),
        "Protocol error: invalid bulk length"
    );
    // The default is Redis's proto-max-bulk-len, 512 MiB; a header is enough to test it.
    assert_eq!(parse_all(b"*1\r\n$536870912\r\n").1, Ok(0));
    assert_eq!(
        error_of(b"*1\r\n$536870913\r\n"),
        "Protocol error: invalid bulk length"
    );
}

#[test]
fn limit_max_array_len() {
    let limits = limits(|l| l.max_array_len = 2);
    assert_eq!(
        parse_all_with(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", limits).0,
        vec![req(&["a", "b"])]
    );
    assert_eq!(
        error_of_with(b"*3\r\n", limits),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(parse_all(b"*1048576\r\n").1, Ok(0));
    assert_eq!(
        error_of(b"*1048577\r\n"),
        "Protocol error: invalid multibulk length"
    );
}

#[test]
fn limit_max_inline_len_for_inline_requests() {
    let limits = limits(|l| l.max_inline_len = 8);
    // The LF may be at index 8 (the 9th byte) at most.
    assert_eq!(
        parse_all_with(b"PING xxx\nPING\n", limits).0,
        vec![req(&["PING", "xxx"]), req(&["PING"])]
    );
    assert_eq!(
        error_of_with(b"PING xxxx\n", limits),
        "Protocol error: too big inline request"
    );
    // Without a LF the error comes as soon as more than the limit is buffered.
    assert_eq!(parse_all_with(b"PING xxx", limits).1, Ok(8));
    assert_eq!(
        error_of_with(b"PING xxxx", limits),
        "Protocol error: too big inline request"
    );
    let mut long = vec![b'x'; 64 * 1024 + 1];
    assert_eq!(error_of(&long), "Protocol error: too big inline request");
    long.truncate(64 * 1024);
    long.push(b'\n');
    assert_eq!(parse_all(&long).0.len(), 1);
}

#[test]
fn limit_max_inline_len_for_header_lines() {
    let limits = limits(|l| l.max_inline_len = 4);
    assert_eq!(parse_all_with(b"*001", limits).1, Ok(4));
    assert_eq!(
        error_of_with(b"*0001", limits),
        "Protocol error: too big mbulk count string"
    );
    assert_eq!(
        error_of_with(b"*00001\r\n", limits),
        "Protocol error: too big mbulk count string"
    );
    assert_eq!(
        error_of_with(b"*1\r\n$0001", limits),
        "Protocol error: too big bulk count string"
    );
    // Redis 7.0 with the default limit, all checked against redis-server:
    let mut digits = b"*1\r\n$".to_vec();
    digits.extend(std::iter::repeat_n(b'1', 65536));
    assert_eq!(
        error_of(&digits),
        "Protocol error: too big bulk count string"
    );
    let mut count = b"*".to_vec();
    count.extend(std::iter::repeat_n(b'1', 65535));
    count.extend_from_slice(b"\r\n");
    assert_eq!(error_of(&count), "Protocol error: invalid multibulk length");
}

#[test]
fn limit_unauthenticated() {
    let mut parser = RequestParser::default();
    parser.set_unauthenticated(true);
    let error = parser
        .parse(&mut BytesMut::from(&b"*11\r\n"[..]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Protocol error: unauthenticated multibulk length"
    );

    let mut parser = RequestParser::default();
    parser.set_unauthenticated(true);
    let mut buf = BytesMut::from(&b"*10\r\n$16384\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    let mut parser = RequestParser::default();
    parser.set_unauthenticated(true);
    let error = parser
        .parse(&mut BytesMut::from(&b"*1\r\n$16385\r\n"[..]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Protocol error: unauthenticated bulk length"
    );

    let mut parser = RequestParser::default();
    parser.set_unauthenticated(true);
    parser.set_unauthenticated(false);
    assert_eq!(parser.parse(&mut BytesMut::from(&b"*11\r\n"[..])), Ok(None));
}

/// Every test input above, split at every byte and fed in two reads, and fed one byte at a
/// time, gives the same requests and the same error as when given whole.
#[test]
fn any_split_parses_the_same_as_whole() {
    let inputs: &[&[u8]] = &[
        b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
        b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\n*1\r\n$4\r\nPI",
        b"*0\r\n*-1\r\n*-5\r\n\r\n\n   \r\n\t\nPING\r\n",
        b"SET k \"a b\\x41\"\r\nGET 'k'\nECHO\t\tx\r\n",
        b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n",
        b"*1\r\n$4\r\nPINGxx",
        b"*1\r\n$-1\r\n",
        b"*1\r\nX4\r\nPING\r\n",
        b"PING\r\nECHO \"abc\r\n",
        b"*1\r\n$1\r\na\r\n*1\rX",
    ];
    for input in inputs {
        let whole = parse_all(input);
        for cut in 0..=input.len() {
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::new();
            let mut requests = Vec::new();
            let mut end = Ok(0);
            'feed: for piece in [&input[..cut], &input[cut..]] {
                buf.extend_from_slice(piece);
                loop {
                    match parser.parse(&mut buf) {
                        Ok(Some(args)) => {
                            requests.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
                        }
                        Ok(None) => break,
                        Err(error) => {
                            end = Err(error.to_string());
                            break 'feed;
                        }
                    }
                }
                end = Ok(buf.len());
            }
            assert_eq!((requests, end), whole, "cut at {cut} of {input:?}");
        }
        // One byte at a time and pseudo-random chunks: the fuzz target's own check.
        let mut data = vec![0u8];
        data.extend_from_slice(input);
        for control in 0..=255u8 {
            data[0] = control;
            tandem_resp::fuzzing::check_request(&data);
        }
    }
}

#[test]
fn arguments_are_zero_copy_slices_of_the_buffer() {
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + 64;
    let args = RequestParser::default().parse(&mut buf).unwrap().unwrap();
    for arg in &args {
        assert!(range.contains(&(arg.as_ptr() as usize)));
    }
}

/// A 1 MiB argument received in 4 KiB reads: the parser keeps its place, reports how many bytes
/// it needs, and returns the argument in one piece.
#[test]
fn large_bulk_in_many_reads() {
    let value = (0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>();
    let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
    input.extend_from_slice(&value);
    input.extend_from_slice(b"\r\n");
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut result = None;
    for chunk in input.chunks(4096) {
        buf.extend_from_slice(chunk);
        if let Some(needed) = parser.bulk_bytes_needed() {
            assert_eq!(needed, value.len() + 2);
        }
        if let Some(args) = parser.parse(&mut buf).unwrap() {
            result = Some(args);
        }
    }
    let args = result.expect("request completed");
    assert_eq!(args.len(), 3);
    assert_eq!(&args[2][..], &value[..]);
    assert!(buf.is_empty());
}

#[test]
fn protocol_error_is_a_std_error() {
    fn takes_error(_: &dyn std::error::Error) {}
    let error: ProtocolError = ErrorKind::TooBigInline.into();
    takes_error(&error);
    assert_eq!(error.to_string(), "Protocol error: too big inline request");
}
