//! The incremental parser for client requests: multibulk (`*N` / `$len`) and inline commands,
//! with Redis 7's semantics and error texts.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use crate::error::{ErrorKind, ProtocolError};
use crate::inline::split_args;
use crate::limits::{Limits, PREALLOC_ELEMENTS_MAX};
use crate::number::parse_i64;

/// Redis refuses `*N` above this before authentication.
const UNAUTHENTICATED_ARRAY_LEN_MAX: i64 = 10;
/// Redis refuses `$N` above this before authentication.
const UNAUTHENTICATED_BULK_LEN_MAX: i64 = 16384;
/// Redis keeps multibulk counts in an `int`.
const REDIS_ARRAY_LEN_MAX: i64 = i32::MAX as i64;

/// Parses client requests from a connection's read buffer, one at a time, like Redis's
/// `processMultibulkBuffer` and `processInlineBuffer`.
///
/// Keeps the progress of a partly received request (arguments already split off, the length of
/// the bulk being received, how far a header line has been searched), so a 512 MiB argument
/// arriving in many reads is looked at once, not re-scanned from the start on every read.
///
/// To ensure correctness: pass the same buffer to every call, and only append to it between
/// calls. After an error the parser's state is unspecified (but safe): reply with
/// [`ProtocolError::to_frame`] and close the connection, as Redis does.
///
/// Differences from Redis 7.0, all on inputs no client sends:
/// - bulk data not followed by CRLF is an error (`invalid bulk length`); Redis skips two bytes;
/// - a header line's CR must be followed by LF (`invalid multibulk length` / `invalid bulk
///   length`); Redis skips the byte after the CR;
/// - size limits depend only on the bytes, not on how they were split into reads: a header or
///   inline line is refused when its line end is not within `max_inline_len` bytes, even when
///   the whole line arrived at once (Redis checks only while waiting for more bytes);
/// - a NUL byte is ordinary data in header and inline lines; Redis stops at it (its line search
///   uses `strchr`) and then waits for more input until the line limit is hit.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    /// Apply Redis's much smaller pre-authentication limits (see `set_unauthenticated`).
    unauthenticated: bool,
    /// Arguments of the current multibulk request still to come; 0 between requests.
    pending_args: usize,
    /// Length of the bulk whose `$len` line is consumed but whose data has not fully arrived.
    pending_bulk_len: Option<usize>,
    /// Arguments of the current multibulk request received so far.
    args: Vec<Bytes>,
    /// Total length of `args`, for the caller's query-buffer limit.
    args_len_sum: usize,
    /// Bytes at the front of the buffer already searched for the current line's end.
    line_scanned: usize,
}

impl RequestParser {
    /// A parser for a new connection, authenticated (see `set_unauthenticated`).
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            unauthenticated: false,
            pending_args: 0,
            pending_bulk_len: None,
            args: Vec::new(),
            args_len_sum: 0,
            line_scanned: 0,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// While `true`, refuse `*N` above 10 (`Protocol error: unauthenticated multibulk length`)
    /// and `$N` above 16384 (`Protocol error: unauthenticated bulk length`), as Redis does for
    /// a connection that must still `AUTH`. Takes effect from the next header line parsed.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// How many bytes the buffer must hold, counted from its front, before the bulk being
    /// received is complete; `None` when no bulk is in progress. Lets the caller reserve room for
    /// a large argument once instead of growing the buffer read after read.
    pub fn bulk_bytes_needed(&self) -> Option<usize> {
        self.pending_bulk_len.map(|len| len.saturating_add(2))
    }

    /// Bytes of the request in progress that were already split off the buffer into the
    /// parser. A per-connection memory limit (Redis's `client-query-buffer-limit`) should count
    /// `buf.len() + parser.partial_request_bytes()`, or a request of many medium-sized arguments
    /// escapes it.
    pub fn partial_request_bytes(&self) -> usize {
        self.args_len_sum
    }

    /// Parses one complete request from the front of `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more bytes are needed (bytes of a partial request may already
    /// have been consumed into the parser). Arguments are zero-copy slices of `buf`'s memory for
    /// multibulk requests; note that they keep that whole allocation alive, so copy an argument
    /// that is stored for long (`Bytes::copy_from_slice`). Empty requests (`*0`, `*-1`, any `*N`
    /// with N <= 0, an empty or blank inline line) are skipped, as Redis does: this never
    /// returns an empty `Vec`.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.pending_args == 0 {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.parse_inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    }
                }
                match self.parse_array_header(buf)? {
                    None => return Ok(None),
                    Some(0) => continue,
                    Some(count) => {
                        self.pending_args = count;
                        self.args = Vec::with_capacity(count.min(PREALLOC_ELEMENTS_MAX));
                    }
                }
            }
            return self.parse_bulks(buf);
        }
    }

    /// Reads bulks of the current multibulk request until it is complete or the buffer runs out.
    fn parse_bulks(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        while self.pending_args > 0 {
            let len = match self.pending_bulk_len {
                Some(len) => len,
                None => match self.parse_bulk_header(buf)? {
                    Some(len) => {
                        self.pending_bulk_len = Some(len);
                        len
                    }
                    None => return Ok(None),
                },
            };
            if buf.len() < len.saturating_add(2) {
                return Ok(None);
            }
            if &buf[len..len + 2] != b"\r\n" {
                return Err(ErrorKind::InvalidBulkLength.into());
            }
            let arg = buf.split_to(len).freeze();
            buf.advance(2);
            self.args_len_sum += len;
            self.args.push(arg);
            self.pending_bulk_len = None;
            self.pending_args -= 1;
        }
        self.args_len_sum = 0;
        Ok(Some(std::mem::take(&mut self.args)))
    }

    /// Parses `*N\r\n`; returns the number of arguments to expect (0 for an empty request).
    fn parse_array_header(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let (count, cr) = match self.quick_header(buf) {
            Some((n, cr)) => (Some(n), cr),
            None => match self.find_line_end(buf, b'\r', ErrorKind::TooBigMbulkCount)? {
                Some(cr) => (parse_i64(&buf[1..cr]), cr),
                None => return Ok(None),
            },
        };
        let count = match count {
            Some(n) if n <= REDIS_ARRAY_LEN_MAX && n <= as_i64(self.limits.max_array_len) => n,
            _ => return Err(ErrorKind::InvalidMultibulkLength.into()),
        };
        if self.unauthenticated && count > UNAUTHENTICATED_ARRAY_LEN_MAX {
            return Err(ErrorKind::UnauthenticatedMultibulkLength.into());
        }
        if buf[cr + 1] != b'\n' {
            return Err(ErrorKind::InvalidMultibulkLength.into());
        }
        buf.advance(cr + 2);
        Ok(Some(count.max(0) as usize))
    }

    /// Parses `$len\r\n`; returns the length of the bulk data that follows.
    fn parse_bulk_header(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let quick = match buf.first() {
            Some(b'$') => self.quick_header(buf),
            _ => None,
        };
        let (len, cr) = match quick {
            Some((n, cr)) => (Some(n), cr),
            None => match self.find_line_end(buf, b'\r', ErrorKind::TooBigBulkCount)? {
                Some(_) if buf[0] != b'$' => return Err(ErrorKind::ExpectedDollar(buf[0]).into()),
                Some(cr) => (parse_i64(&buf[1..cr]), cr),
                None => return Ok(None),
            },
        };
        let len = match len {
            Some(n) if n >= 0 && n <= as_i64(self.limits.max_bulk_len) => n,
            _ => return Err(ErrorKind::InvalidBulkLength.into()),
        };
        if self.unauthenticated && len > UNAUTHENTICATED_BULK_LEN_MAX {
            return Err(ErrorKind::UnauthenticatedBulkLength.into());
        }
        if buf[cr + 1] != b'\n' {
            return Err(ErrorKind::InvalidBulkLength.into());
        }
        buf.advance(cr + 2);
        Ok(Some(len as usize))
    }

    /// The fast path for the usual header line: a prefix byte, a plain non-negative number of at
    /// most 18 digits, CRLF, all in `buf`. Returns the number and the index of the CR, or `None`
    /// to take the general path (`find_line_end` + `parse_i64`), which gives the same answer for
    /// such lines and also handles everything else: waiting, signs, errors, limits.
    #[inline]
    fn quick_header(&mut self, buf: &[u8]) -> Option<(i64, usize)> {
        // 18 digits cannot overflow an i64.
        let digits_end = buf.len().min(19);
        let mut value: i64 = 0;
        let mut cr = 1;
        while cr < digits_end {
            let digit = buf[cr].wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value * 10 + i64::from(digit);
            cr += 1;
        }
        let digits = cr - 1;
        // Redis's string2ll refuses leading zeros; leave those to the general path.
        let plain = digits == 1 || (digits > 1 && buf[1] != b'0');
        if plain
            && buf.get(cr) == Some(&b'\r')
            && cr + 1 < buf.len()
            && cr <= self.limits.max_inline_len
        {
            self.line_scanned = 0;
            Some((value, cr))
        } else {
            None
        }
    }

    /// Parses one inline request line; `Some(vec![])` for a blank line.
    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(lf) = self.find_line_end(buf, b'\n', ErrorKind::TooBigInline)? else {
            return Ok(None);
        };
        let end = if lf > 0 && buf[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let args = split_args(&buf[..end]).ok_or(ErrorKind::UnbalancedQuotes)?;
        buf.advance(lf + 1);
        Ok(Some(args))
    }

    /// Finds the `terminator` ending the line at the front of `buf`.
    ///
    /// For `\r`, also waits until the byte after it has arrived. A line whose terminator is not
    /// within its first `max_inline_len + 1` bytes is `too_big` — decided from the bytes alone,
    /// so the answer does not depend on how the input was split into reads.
    fn find_line_end(
        &mut self,
        buf: &[u8],
        terminator: u8,
        too_big: ErrorKind,
    ) -> Result<Option<usize>, ProtocolError> {
        let window = &buf[..buf.len().min(self.limits.max_inline_len.saturating_add(1))];
        let from = self.line_scanned.min(window.len());
        match memchr(terminator, &window[from..]) {
            Some(offset) => {
                let end = from + offset;
                if terminator == b'\r' && end + 1 >= buf.len() {
                    // The CR is here but the byte after it is not yet.
                    self.line_scanned = end;
                    return Ok(None);
                }
                self.line_scanned = 0;
                Ok(Some(end))
            }
            None if buf.len() > self.limits.max_inline_len => Err(too_big.into()),
            None => {
                self.line_scanned = window.len();
                Ok(None)
            }
        }
    }
}

/// A limit as an `i64`, for comparing with a parsed count (a limit above `i64::MAX` is no limit).
pub(crate) fn as_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser::new(Limits::default())
    }
}
