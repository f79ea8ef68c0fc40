use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A reply (or any RESP value). RESP3-only types are downgraded when encoding for RESP2
/// connections, the way Redis does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the whole text after the `-`, including the prefix word (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`: a binary-safe string.
    Bulk(Bytes),
    /// The null bulk string: RESP2 `$-1`, RESP3 `_`.
    Null,
    /// The null array: RESP2 `*-1`, RESP3 `_`.
    NullArray,
    /// `*N`: an array of any values.
    Array(Vec<Frame>),
    /// RESP3 map; RESP2 flattens it into an array of key, value, key, value.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 set; RESP2 array.
    Set(Vec<Frame>),
    /// RESP3 double; RESP2 bulk string.
    Double(f64),
    /// RESP3 boolean; RESP2 integer 1 or 0.
    Boolean(bool),
    /// RESP3 verbatim string with a 3-letter format (`txt`); RESP2 bulk string.
    Verbatim(String, Bytes),
    /// RESP3 big number; RESP2 bulk string.
    BigNumber(String),
    /// RESP3 push; RESP2 array.
    Push(Vec<Frame>),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply; `msg` includes the prefix word, e.g. `"ERR syntax error"`.
    pub fn error(msg: impl Into<String>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A bulk string.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}
