//! Byte-level tests of the reply encoder and the general frame parser. Expected bytes come from
//! redis-server 7.0 replies (HELLO 2 and HELLO 3) where Redis has the same reply.

use bytes::{Bytes, BytesMut};
use tandem_resp::fuzzing::check_round_trip;
use tandem_resp::{encode, parse_frame, Frame, Limits, Protocol};

fn resp2(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, Protocol::Resp2, &mut out);
    out.to_vec()
}

fn resp3(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, Protocol::Resp3, &mut out);
    out.to_vec()
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// Every kind of frame: (frame, RESP2 bytes, RESP3 bytes).
fn encoding_table() -> Vec<(Frame, &'static [u8], &'static [u8])> {
    vec![
        (Frame::ok(), b"+OK\r\n", b"+OK\r\n"),
        (
            Frame::error("ERR syntax error"),
            b"-ERR syntax error\r\n",
            b"-ERR syntax error\r\n",
        ),
        (Frame::Integer(0), b":0\r\n", b":0\r\n"),
        (Frame::Integer(-42), b":-42\r\n", b":-42\r\n"),
        (
            Frame::Integer(i64::MIN),
            b":-9223372036854775808\r\n",
            b":-9223372036854775808\r\n",
        ),
        (bulk("hello"), b"$5\r\nhello\r\n", b"$5\r\nhello\r\n"),
        (bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (Frame::Null, b"$-1\r\n", b"_\r\n"),
        (Frame::NullArray, b"*-1\r\n", b"_\r\n"),
        (Frame::Array(vec![]), b"*0\r\n", b"*0\r\n"),
        (
            Frame::Array(vec![bulk("a"), Frame::Integer(1), Frame::Null]),
            b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n",
            b"*3\r\n$1\r\na\r\n:1\r\n_\r\n",
        ),
        (
            Frame::Map(vec![(bulk("a"), Frame::Integer(1)), (bulk("b"), bulk("x"))]),
            b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$1\r\nx\r\n",
            b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$1\r\nx\r\n",
        ),
        (Frame::Map(vec![]), b"*0\r\n", b"%0\r\n"),
        (
            Frame::Set(vec![bulk("a"), bulk("b")]),
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
            b"~2\r\n$1\r\na\r\n$1\r\nb\r\n",
        ),
        // ZSCORE of 1.1 in Redis 7.0.
        (
            Frame::Double(1.1),
            b"$18\r\n1.1000000000000001\r\n",
            b",1.1000000000000001\r\n",
        ),
        (Frame::Double(3.0), b"$1\r\n3\r\n", b",3\r\n"),
        (Frame::Double(1e17), b"$5\r\n1e+17\r\n", b",1e+17\r\n"),
        (Frame::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
        (
            Frame::Double(f64::NEG_INFINITY),
            b"$4\r\n-inf\r\n",
            b",-inf\r\n",
        ),
        (Frame::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
        (Frame::Boolean(true), b":1\r\n", b"#t\r\n"),
        (Frame::Boolean(false), b":0\r\n", b"#f\r\n"),
        (
            Frame::Verbatim("txt".into(), Bytes::from_static(b"Some string")),
            b"$11\r\nSome string\r\n",
            b"=15\r\ntxt:Some string\r\n",
        ),
        (
            Frame::BigNumber("3492890328409238509324850943850943825024385".into()),
            b"$43\r\n3492890328409238509324850943850943825024385\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
        ),
        (
            Frame::Push(vec![bulk("message"), bulk("ch"), bulk("hi")]),
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        ),
    ]
}

#[test]
fn encodes_every_kind_in_both_protocols() {
    for (frame, expected2, expected3) in encoding_table() {
        assert_eq!(resp2(&frame), expected2, "RESP2 {frame:?}");
        assert_eq!(resp3(&frame), expected3, "RESP3 {frame:?}");
    }
}

#[test]
fn line_breaks_in_lines_become_spaces() {
    let error = Frame::error("ERR bad\r\nthing\n");
    assert_eq!(resp2(&error), b"-ERR bad  thing \r\n");
    assert_eq!(resp3(&Frame::Simple("a\rb".into())), b"+a b\r\n");
    // Bulk strings are length-prefixed and keep every byte.
    assert_eq!(resp2(&bulk("a\r\nb")), b"$4\r\na\r\nb\r\n");
}

#[test]
fn verbatim_with_bad_format_is_written_as_txt() {
    let frame = Frame::Verbatim("markdown".into(), Bytes::from_static(b"x"));
    assert_eq!(resp3(&frame), b"=5\r\ntxt:x\r\n");
}

#[test]
fn encode_appends() {
    let mut out = BytesMut::from(&b"+OK\r\n"[..]);
    encode(&Frame::Integer(7), Protocol::Resp3, &mut out);
    assert_eq!(&out[..], b"+OK\r\n:7\r\n");
}

#[test]
fn parses_what_it_encodes() {
    for (frame, expected2, expected3) in encoding_table() {
        for bytes in [expected2, expected3] {
            let (parsed, used) = parse_frame(bytes, &Limits::default()).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            let mut again = BytesMut::new();
            let proto = if bytes == expected3 {
                Protocol::Resp3
            } else {
                Protocol::Resp2
            };
            encode(&parsed, proto, &mut again);
            assert_eq!(&again[..], bytes, "{frame:?}");
        }
        check_round_trip(&frame);
    }
}

#[test]
fn round_trip_keeps_every_kind_in_resp3() {
    let nested = Frame::Array(vec![
        Frame::Map(vec![(
            Frame::Simple("k".into()),
            Frame::Set(vec![Frame::Boolean(true)]),
        )]),
        Frame::Push(vec![Frame::Double(-0.5), Frame::BigNumber("-12".into())]),
        Frame::Verbatim("mkd".into(), Bytes::from_static(b"# hi\r\n")),
        Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into()),
        Frame::Null,
        Frame::Array(vec![]),
    ]);
    let bytes = resp3(&nested);
    let (parsed, used) = parse_frame(&bytes, &Limits::default()).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(parsed, nested);
    for (frame, _, _) in encoding_table() {
        let (parsed, _) = parse_frame(&resp3(&frame), &Limits::default())
            .unwrap()
            .unwrap();
        match frame {
            Frame::NullArray => assert_eq!(parsed, Frame::Null),
            Frame::Double(value) if value.is_nan() => {
                assert!(matches!(parsed, Frame::Double(v) if v.is_nan()))
            }
            _ => assert_eq!(parsed, frame),
        }
    }
}

/// The reply redis-server 7.0.15 sent to `HELLO 3`.
#[test]
fn parses_a_real_hello_reply() {
    let reply = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:272\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    let (frame, used) = parse_frame(reply, &Limits::default()).unwrap().unwrap();
    assert_eq!(used, reply.len());
    let Frame::Map(pairs) = frame else {
        panic!("not a map: {frame:?}")
    };
    assert_eq!(pairs.len(), 7);
    assert_eq!(pairs[2], (bulk("proto"), Frame::Integer(3)));
    assert_eq!(pairs[6], (bulk("modules"), Frame::Array(vec![])));
}

#[test]
fn parses_resp3_only_forms() {
    let cases: &[(&[u8], Frame)] = &[
        (b"_\r\n", Frame::Null),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Frame::error("SYNTAX invalid syntax"),
        ),
        (b",1.5\r\n", Frame::Double(1.5)),
        (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
        (b",1e+17\r\n", Frame::Double(1e17)),
        (b"(-123\r\n", Frame::BigNumber("-123".into())),
        // Attributes are read and dropped; the value they annotate is returned.
        (
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*1\r\n:2\r\n",
            Frame::Array(vec![Frame::Integer(2)]),
        ),
    ];
    for (bytes, expected) in cases {
        let (frame, used) = parse_frame(bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!((&frame, used), (expected, bytes.len()));
    }
}

#[test]
fn every_prefix_is_incomplete() {
    for (_, expected2, expected3) in encoding_table() {
        for bytes in [expected2, expected3] {
            for cut in 0..bytes.len() {
                assert_eq!(parse_frame(&bytes[..cut], &Limits::default()), Ok(None));
            }
        }
    }
}

#[test]
fn pipelined_replies_parse_one_at_a_time() {
    let bytes = b"+OK\r\n:1\r\n$-1\r\n";
    let limits = Limits::default();
    let (first, used) = parse_frame(bytes, &limits).unwrap().unwrap();
    assert_eq!((first, used), (Frame::ok(), 5));
    let (second, used2) = parse_frame(&bytes[used..], &limits).unwrap().unwrap();
    assert_eq!((second, used2), (Frame::Integer(1), 4));
    let (third, _) = parse_frame(&bytes[used + used2..], &limits)
        .unwrap()
        .unwrap();
    assert_eq!(third, Frame::Null);
}

fn frame_error(bytes: &[u8], limits: &Limits) -> String {
    match parse_frame(bytes, limits) {
        Err(error) => error.to_string(),
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn malformed_replies_are_errors() {
    let limits = Limits::default();
    let cases: &[(&[u8], &str)] = &[
        (b"?\r\n", "Protocol error: unexpected type byte '?'"),
        (b":12a\r\n", "Protocol error: invalid integer"),
        (b"$-2\r\n", "Protocol error: invalid bulk length"),
        (b"$3\r\nabcd\r\n", "Protocol error: invalid bulk length"),
        (b"$?\r\n", "Protocol error: invalid bulk length"),
        (b"*-2\r\n", "Protocol error: invalid multibulk length"),
        (b"*?\r\n", "Protocol error: invalid multibulk length"),
        (b"~-1\r\n", "Protocol error: invalid multibulk length"),
        (b"#x\r\n", "Protocol error: invalid boolean"),
        (b"_x\r\n", "Protocol error: invalid null"),
        (b",abc\r\n", "Protocol error: invalid double"),
        (b"(12x\r\n", "Protocol error: invalid big number"),
        (b"=3\r\ntxt\r\n", "Protocol error: invalid verbatim string"),
        (b"+OK\rX", "Protocol error: invalid line ending"),
    ];
    for (bytes, expected) in cases {
        assert_eq!(frame_error(bytes, &limits), *expected);
    }
}

#[test]
fn limit_max_nesting() {
    let limits = Limits {
        max_nesting: 3,
        ..Limits::default()
    };
    let three = b"*1\r\n*1\r\n*1\r\n:1\r\n";
    assert!(parse_frame(three, &limits).unwrap().is_some());
    let four = b"*1\r\n%1\r\n:1\r\n~1\r\n>0\r\n";
    assert_eq!(
        frame_error(four, &limits),
        "Protocol error: nesting deeper than 3 levels"
    );
    // The default, 32 levels.
    let mut deep = b"*1\r\n".repeat(32);
    deep.extend_from_slice(b":1\r\n");
    assert!(parse_frame(&deep, &Limits::default()).unwrap().is_some());
    let mut deeper = b"*1\r\n".repeat(33);
    deeper.extend_from_slice(b":1\r\n");
    assert_eq!(
        frame_error(&deeper, &Limits::default()),
        "Protocol error: nesting deeper than 32 levels"
    );
}

#[test]
fn limit_max_array_len_and_max_bulk_len_in_replies() {
    let limits = Limits {
        max_array_len: 2,
        max_bulk_len: 3,
        ..Limits::default()
    };
    assert!(parse_frame(b"*2\r\n$3\r\nabc\r\n:1\r\n", &limits)
        .unwrap()
        .is_some());
    assert_eq!(
        frame_error(b"*3\r\n", &limits),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        frame_error(b"%3\r\n", &limits),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        frame_error(b"$4\r\n", &limits),
        "Protocol error: invalid bulk length"
    );
}

#[test]
fn limit_max_inline_len_bounds_reply_lines() {
    let limits = Limits {
        max_inline_len: 4,
        ..Limits::default()
    };
    assert!(parse_frame(b"+abc\r\n", &limits).unwrap().is_some());
    assert_eq!(parse_frame(b"+abc", &limits), Ok(None));
    assert_eq!(
        frame_error(b"+abcde", &limits),
        "Protocol error: line too long"
    );
}
