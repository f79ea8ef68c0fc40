use std::fmt;

use crate::Frame;

/// A malformed or over-limit request or reply.
///
/// `Display` gives exactly the text Redis 7 puts after `ERR ` for the same input, e.g.
/// `Protocol error: invalid multibulk length`; [`ProtocolError::to_frame`] builds the whole
/// reply. After a request error Redis replies and closes the connection; Tandem's server should
/// do the same, because the parser cannot know where the next request starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(ErrorKind);

/// What went wrong, for callers that branch on it. The text is in `ProtocolError`'s `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `*N` with N not a number, or above [`Limits::max_array_len`](crate::Limits).
    InvalidMultibulkLength,
    /// `$N` with N not a number, negative, above [`Limits::max_bulk_len`](crate::Limits), or
    /// bulk data not followed by CRLF.
    InvalidBulkLength,
    /// An argument of a multibulk request did not start with `$`; holds the byte found.
    ExpectedDollar(u8),
    /// No CR within [`Limits::max_inline_len`](crate::Limits) bytes of a `*N` line.
    TooBigMbulkCount,
    /// No CR within [`Limits::max_inline_len`](crate::Limits) bytes of a `$N` line.
    TooBigBulkCount,
    /// No LF within [`Limits::max_inline_len`](crate::Limits) bytes of an inline request.
    TooBigInline,
    /// An inline request with an unterminated quote, or a closing quote not followed by a space.
    UnbalancedQuotes,
    /// `*N` with N > 10 before authentication (Redis's pre-auth limit).
    UnauthenticatedMultibulkLength,
    /// `$N` with N > 16384 before authentication (Redis's pre-auth limit).
    UnauthenticatedBulkLength,
    /// Reply parsing: the first byte of a value is not a RESP2/RESP3 type byte.
    UnexpectedTypeByte(u8),
    /// Reply parsing: a value of the named kind is malformed.
    InvalidValue(&'static str),
    /// Reply parsing: a line longer than [`Limits::max_inline_len`](crate::Limits).
    LineTooLong,
    /// Reply parsing: aggregates nested deeper than [`Limits::max_nesting`](crate::Limits).
    TooDeep(usize),
}

impl ProtocolError {
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0
    }

    /// The error reply Redis sends for this error: `-ERR Protocol error: ...`.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(format!("ERR {self}"))
    }
}

impl From<ErrorKind> for ProtocolError {
    fn from(kind: ErrorKind) -> Self {
        ProtocolError(kind)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self.0 {
            ErrorKind::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ErrorKind::InvalidBulkLength => f.write_str("invalid bulk length"),
            ErrorKind::ExpectedDollar(byte) => {
                f.write_str("expected '$', got '")?;
                write_byte(f, byte)?;
                f.write_str("'")
            }
            ErrorKind::TooBigMbulkCount => f.write_str("too big mbulk count string"),
            ErrorKind::TooBigBulkCount => f.write_str("too big bulk count string"),
            ErrorKind::TooBigInline => f.write_str("too big inline request"),
            ErrorKind::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ErrorKind::UnauthenticatedMultibulkLength => {
                f.write_str("unauthenticated multibulk length")
            }
            ErrorKind::UnauthenticatedBulkLength => f.write_str("unauthenticated bulk length"),
            ErrorKind::UnexpectedTypeByte(byte) => {
                f.write_str("unexpected type byte '")?;
                write_byte(f, byte)?;
                f.write_str("'")
            }
            ErrorKind::InvalidValue(what) => write!(f, "invalid {what}"),
            ErrorKind::LineTooLong => f.write_str("line too long"),
            ErrorKind::TooDeep(limit) => write!(f, "nesting deeper than {limit} levels"),
        }
    }
}

/// Writes an offending byte the way Redis's `%c` does, except where a Rust `String` cannot:
/// CR and LF become spaces (Redis maps them in every error reply), NUL and bytes >= 0x80 are
/// written as `\xNN` (Redis writes the raw byte, which is not valid UTF-8).
fn write_byte(f: &mut fmt::Formatter<'_>, byte: u8) -> fmt::Result {
    match byte {
        b'\r' | b'\n' => f.write_str(" "),
        0 | 0x80..=0xff => write!(f, "\\x{byte:02x}"),
        _ => write!(f, "{}", byte as char),
    }
}

impl std::error::Error for ProtocolError {}
