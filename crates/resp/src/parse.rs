//! The general RESP2/RESP3 value parser, for reading replies (client code and tests).

use bytes::Bytes;
use memchr::memchr;

use crate::error::{ErrorKind, ProtocolError};
use crate::limits::{Limits, PREALLOC_ELEMENTS_MAX};
use crate::number::parse_i64;
use crate::request::as_i64;
use crate::Frame;

/// Parses one RESP2 or RESP3 value from the front of `buf`.
///
/// Returns the value and how many bytes it took, or `Ok(None)` when `buf` holds only part of a
/// value. Stateless: each call starts from the front of `buf`, so a caller reading a huge reply
/// in small pieces pays for re-parsing the part already received; fine for clients and tests,
/// not meant for the server's request path (that is [`RequestParser`](crate::RequestParser)).
///
/// Mapping to [`Frame`]: `_` and `$-1` are `Null`, `*-1` is `NullArray`, blob errors (`!`) are
/// `Error`, attributes (`|`) are read and dropped (the value they annotate is returned, and the
/// byte count includes them). Text that is not UTF-8 in simple strings, errors, big numbers and
/// verbatim formats is converted lossily. Streamed RESP3 aggregates (`*?`, `$?`) are refused.
///
/// Limits: bulk lengths by `max_bulk_len`, aggregate counts (map entries for `%`) by
/// `max_array_len`, every line by `max_inline_len`, nesting of aggregates by `max_nesting`
/// (a top-level `*1\r\n:1\r\n` is one level).
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut parser = FrameParser {
        buf,
        pos: 0,
        limits,
    };
    match parser.frame(0) {
        Ok(frame) => Ok(Some((frame, parser.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Invalid(error)) => Err(error),
    }
}

/// Why parsing stopped early.
enum Stop {
    Incomplete,
    Invalid(ProtocolError),
}

impl From<ErrorKind> for Stop {
    fn from(kind: ErrorKind) -> Self {
        Stop::Invalid(kind.into())
    }
}

struct FrameParser<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl FrameParser<'_> {
    /// Parses one value; `depth` is the number of aggregates around it.
    fn frame(&mut self, depth: usize) -> Result<Frame, Stop> {
        loop {
            let &type_byte = self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
            self.pos += 1;
            return Ok(match type_byte {
                b'+' => Frame::Simple(lossy(self.line()?)),
                b'-' => Frame::Error(lossy(self.line()?)),
                b':' => Frame::Integer(self.integer_line("integer")?),
                b'$' => match self.blob()? {
                    Some(data) => Frame::Bulk(Bytes::copy_from_slice(data)),
                    None => Frame::Null,
                },
                b'!' => match self.blob()? {
                    Some(data) => Frame::Error(lossy(data)),
                    None => return Err(ErrorKind::InvalidBulkLength.into()),
                },
                b'=' => match self.blob()? {
                    Some(data) if data.len() >= 4 && data[3] == b':' => {
                        Frame::Verbatim(lossy(&data[..3]), Bytes::copy_from_slice(&data[4..]))
                    }
                    _ => return Err(ErrorKind::InvalidValue("verbatim string").into()),
                },
                b'*' => match self.count(depth)? {
                    Some(count) => Frame::Array(self.elements(count, depth)?),
                    None => Frame::NullArray,
                },
                b'~' => match self.count(depth)? {
                    Some(count) => Frame::Set(self.elements(count, depth)?),
                    None => return Err(ErrorKind::InvalidMultibulkLength.into()),
                },
                b'>' => match self.count(depth)? {
                    Some(count) => Frame::Push(self.elements(count, depth)?),
                    None => return Err(ErrorKind::InvalidMultibulkLength.into()),
                },
                b'%' => match self.count(depth)? {
                    Some(count) => Frame::Map(self.pairs(count, depth)?),
                    None => return Err(ErrorKind::InvalidMultibulkLength.into()),
                },
                b'|' => {
                    // Attributes annotate the value that follows; Frame has no place for them.
                    match self.count(depth)? {
                        Some(count) => drop(self.pairs(count, depth)?),
                        None => return Err(ErrorKind::InvalidMultibulkLength.into()),
                    }
                    continue;
                }
                b'_' => match self.line()? {
                    b"" => Frame::Null,
                    _ => return Err(ErrorKind::InvalidValue("null").into()),
                },
                b'#' => match self.line()? {
                    b"t" => Frame::Boolean(true),
                    b"f" => Frame::Boolean(false),
                    _ => return Err(ErrorKind::InvalidValue("boolean").into()),
                },
                b',' => Frame::Double(parse_double(self.line()?)?),
                b'(' => {
                    let line = self.line()?;
                    let digits = line.strip_prefix(b"-").unwrap_or(line);
                    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                        return Err(ErrorKind::InvalidValue("big number").into());
                    }
                    Frame::BigNumber(lossy(line))
                }
                other => return Err(ErrorKind::UnexpectedTypeByte(other).into()),
            });
        }
    }

    /// The rest of the current line, without its CRLF; consumes both.
    fn line(&mut self) -> Result<&[u8], Stop> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(self.limits.max_inline_len.saturating_add(1))];
        let Some(cr) = memchr(b'\r', window) else {
            return Err(if rest.len() > self.limits.max_inline_len {
                ErrorKind::LineTooLong.into()
            } else {
                Stop::Incomplete
            });
        };
        match rest.get(cr + 1) {
            None => Err(Stop::Incomplete),
            Some(b'\n') => {
                self.pos += cr + 2;
                Ok(&rest[..cr])
            }
            Some(_) => Err(ErrorKind::InvalidValue("line ending").into()),
        }
    }

    fn integer_line(&mut self, what: &'static str) -> Result<i64, Stop> {
        let line = self.line()?;
        parse_i64(line).ok_or_else(|| ErrorKind::InvalidValue(what).into())
    }

    /// A `$`, `!` or `=` body: `len\r\ndata\r\n`; `None` for the null length -1.
    fn blob(&mut self) -> Result<Option<&[u8]>, Stop> {
        let len = match self.integer_line("bulk length") {
            Ok(-1) => return Ok(None),
            Ok(len) if len >= 0 && len <= as_i64(self.limits.max_bulk_len) => len as usize,
            Ok(_) | Err(Stop::Invalid(_)) => return Err(ErrorKind::InvalidBulkLength.into()),
            Err(Stop::Incomplete) => return Err(Stop::Incomplete),
        };
        let rest = &self.buf[self.pos..];
        if rest.len() < len.saturating_add(2) {
            return Err(Stop::Incomplete);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(ErrorKind::InvalidBulkLength.into());
        }
        self.pos += len + 2;
        Ok(Some(&rest[..len]))
    }

    /// An aggregate's count line, checked against the limits; `None` for -1 (null).
    fn count(&mut self, depth: usize) -> Result<Option<usize>, Stop> {
        if depth >= self.limits.max_nesting {
            return Err(ErrorKind::TooDeep(self.limits.max_nesting).into());
        }
        match self.integer_line("aggregate length") {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 && n <= as_i64(self.limits.max_array_len) => Ok(Some(n as usize)),
            Ok(_) | Err(Stop::Invalid(_)) => Err(ErrorKind::InvalidMultibulkLength.into()),
            Err(Stop::Incomplete) => Err(Stop::Incomplete),
        }
    }

    fn elements(&mut self, count: usize, depth: usize) -> Result<Vec<Frame>, Stop> {
        let mut items = Vec::with_capacity(count.min(PREALLOC_ELEMENTS_MAX));
        for _ in 0..count {
            items.push(self.frame(depth + 1)?);
        }
        Ok(items)
    }

    fn pairs(&mut self, count: usize, depth: usize) -> Result<Vec<(Frame, Frame)>, Stop> {
        let mut pairs = Vec::with_capacity(count.min(PREALLOC_ELEMENTS_MAX));
        for _ in 0..count {
            let key = self.frame(depth + 1)?;
            let value = self.frame(depth + 1)?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }
}

/// RESP3 double text: `inf`, `-inf`, `nan` or a decimal number (as Redis and `strtod` write).
fn parse_double(line: &[u8]) -> Result<f64, Stop> {
    let invalid = || Stop::from(ErrorKind::InvalidValue("double"));
    let text = std::str::from_utf8(line).map_err(|_| invalid())?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) =>
        {
            text.parse().map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}
