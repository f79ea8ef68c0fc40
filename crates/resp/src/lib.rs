//! The RESP codec: everything Tandem knows about the Redis wire protocol, as plain functions
//! over bytes (no sockets), so it can be tested byte by byte and fuzzed.
//!
//! - `frame` — [`Frame`], the value type for replies (and any RESP2/RESP3 value).
//! - `request` — [`RequestParser`], the server's incremental parser for client requests:
//!   multibulk (`*N\r\n$len\r\n...`) and inline commands, Redis 7's rules and error texts. It
//!   keeps the progress of a partly received request between reads and returns arguments as
//!   zero-copy [`Bytes`](bytes::Bytes).
//! - `inline` — splitting an inline command line into arguments (Redis's `sdssplitargs`).
//! - `parse` — [`parse_frame`], a general RESP2/RESP3 parser for replies, used by clients and
//!   tests.
//! - `encode` — [`encode`], writing a `Frame` in RESP2 or RESP3 ([`Protocol`]), downgrading
//!   RESP3 types for RESP2 exactly as Redis does.
//! - `limits` — [`Limits`]: every size, count and depth the parsers accept, with Redis's
//!   defaults.
//! - `error` — [`ProtocolError`], whose text is Redis's error text for the same input.
//! - `number` — integer parsing (Redis's `string2ll`) and double formatting (`%.17g`).
//! - [`fuzzing`] — the properties checked by the fuzz targets in `fuzz/` and by this crate's
//!   randomized tests.
#![warn(missing_docs)]

mod encode;
mod error;
mod frame;
pub mod fuzzing;
mod inline;
mod limits;
mod number;
mod parse;
mod request;

pub use encode::{encode, Protocol};
pub use error::{ErrorKind, ProtocolError};
pub use frame::Frame;
pub use limits::{
    Limits, DEFAULT_MAX_ARRAY_LEN, DEFAULT_MAX_BULK_LEN, DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_NESTING,
};
pub use parse::parse_frame;
pub use request::RequestParser;
