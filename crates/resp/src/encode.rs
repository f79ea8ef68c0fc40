//! Writing replies in RESP2 or RESP3, with RESP3 types downgraded for RESP2 exactly as Redis 7.0
//! does.

use bytes::{BufMut, BytesMut};
use memchr::memchr2;

use crate::number::{format_double, DOUBLE_TEXT_MAX};
use crate::Frame;

/// The protocol a connection speaks, chosen by `HELLO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, every connection's protocol until `HELLO 3`.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Appends `frame` to `out` in `proto`.
///
/// RESP2 has no null, map, set, double, boolean, verbatim, big number or push types, so, as in
/// Redis: `Null` is `$-1`, `NullArray` is `*-1`, a map is a flat array of key, value, ..., sets
/// and pushes are arrays, a double is a bulk string of its text, a boolean is `:1` or `:0`, a
/// verbatim string is a bulk string of its text alone, a big number is a bulk string.
/// In RESP3 both nulls are `_`.
///
/// Doubles are written as Redis 7.0 writes them: `inf`, `-inf`, `nan`, otherwise C's `%.17g`
/// (`1.1` is `1.1000000000000001`, `3.0` is `3`, `1e17` is `1e+17`).
///
/// Simple strings, errors and big numbers cannot hold CR or LF on the wire: each is replaced by
/// a space, as Redis does for error replies. A verbatim format that is not 3 bytes is written as
/// `txt`.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    let resp3 = proto == Protocol::Resp3;
    match frame {
        Frame::Simple(text) => put_line(out, b'+', text.as_bytes()),
        Frame::Error(text) => put_line(out, b'-', text.as_bytes()),
        Frame::Integer(n) => put_integer(out, b':', *n),
        Frame::Bulk(data) => put_bulk(out, data),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => put_aggregate(out, b'*', items, proto),
        Frame::Set(items) => put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Frame::Push(items) => put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Frame::Map(pairs) => {
            if resp3 {
                put_count(out, b'%', pairs.len());
            } else {
                put_count(out, b'*', pairs.len().saturating_mul(2));
            }
            for (key, value) in pairs {
                encode(key, proto, out);
                encode(value, proto, out);
            }
        }
        Frame::Double(value) => {
            let mut text = [0u8; DOUBLE_TEXT_MAX];
            let len = format_double(*value, &mut text);
            if resp3 {
                put_line(out, b',', &text[..len]);
            } else {
                put_bulk(out, &text[..len]);
            }
        }
        Frame::Boolean(value) => out.put_slice(match (resp3, value) {
            (true, true) => b"#t\r\n",
            (true, false) => b"#f\r\n",
            (false, true) => b":1\r\n",
            (false, false) => b":0\r\n",
        }),
        Frame::Verbatim(format, text) if resp3 => {
            let format = if format.len() == 3 {
                format.as_bytes()
            } else {
                b"txt"
            };
            put_count(out, b'=', text.len() + 4);
            out.reserve(text.len() + 6);
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Frame::Verbatim(_, text) => put_bulk(out, text),
        Frame::BigNumber(digits) if resp3 => put_line(out, b'(', digits.as_bytes()),
        Frame::BigNumber(digits) => put_bulk(out, digits.as_bytes()),
    }
}

fn put_aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame], proto: Protocol) {
    put_count(out, prefix, items.len());
    for item in items {
        encode(item, proto, out);
    }
}

/// `prefix` + text + CRLF, with CR and LF in the text replaced by spaces.
fn put_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if memchr2(b'\r', b'\n', text).is_none() {
        out.put_slice(text);
    } else {
        let start = out.len();
        out.put_slice(text);
        for byte in &mut out[start..] {
            if matches!(*byte, b'\r' | b'\n') {
                *byte = b' ';
            }
        }
    }
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    // `$`, up to 20 digits, CRLF, data, CRLF.
    out.reserve(data.len() + 25);
    put_count(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn put_count(out: &mut BytesMut, prefix: u8, count: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(count).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

fn put_integer(out: &mut BytesMut, prefix: u8, value: i64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}
