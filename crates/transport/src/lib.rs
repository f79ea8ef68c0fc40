//! Tandem's transport between cluster nodes: one long-lived, authenticated TCP connection per
//! peer, carrying multiplexed request/response calls whose bodies are opaque bytes (the caller
//! serializes them, with postcard). It knows nothing of openraft.
//!
//! The wire format (frames, messages, handshake) is specified in `FORMAT.md` beside this crate's
//! `Cargo.toml`, section "Transport frame".
//!
//! # Map
//!
//! - [`config`] — what a caller tunes ([`TransportConfig`]) and the named limits: frame size,
//!   handshake frame size, calls in flight, connections, attempts.
//! - `frame` — the frame codec: length, CRC32C, payload. Pure functions over bytes;
//!   [`decode_frame`] is public so that a fuzz target can drive it.
//! - `envelope` — the messages a frame carries (handshake, request, response), serialized with
//!   postcard and decoded borrowing from the frame. Pure.
//! - `auth` — the handshake's nonces and HMAC-SHA256 proofs on the cluster secret. Pure.
//! - `socket` — frames on a TCP socket for both sides: the buffered, cancel-safe frame reader
//!   (limit and CRC checked before decoding) and the writer loop that batches queued frames.
//! - `handshake` — the challenge-response and hello exchange, as the client and the server run
//!   it; refusals are logged, counted and sent.
//! - `client` — [`Peer`]: lazy connection, calls matched by id, deadlines, re-sending in-flight
//!   calls on a new connection, reconnection backoff. [`ClientHello`] is the application's part
//!   of the handshake.
//! - `server` — [`serve`]: the accept loop, one task per connection, requests handled
//!   concurrently by the application's [`Handler`] and answered in completion order.
//! - [`stats`] — [`TransportStats`], counters shared by a node's server and peers.
//! - `error` — [`CallError`], how a call fails.
//! - [`fuzzing`] — entry points for the fuzz target over the frame and message decoders.
//!
//! # How a call flows
//!
//! [`Peer::call`] encodes the request frame once (CRC included) in the caller's task, takes the
//! peer's connection (opening it first if there is none: TCP connect, handshake, IO task), takes
//! a slot among `in_flight_max`, registers its id and queues the frame. The connection's writer
//! writes everything queued and flushes once. On the server, the reader checks the frame's length
//! and CRC, decodes the request and spawns the handler; its reply is queued on the connection's
//! writer as soon as it is ready. The client's reader hands the reply to the call waiting on that
//! id. If the connection drops first (EOF, IO error, a CRC failure on either side, a protocol
//! error), every call waiting on it is sent again on a new connection, up to `call_attempts_max`
//! sends, all within the call's deadline.

pub mod config;
pub mod fuzzing;
pub mod stats;

mod auth;
mod client;
mod envelope;
mod error;
mod frame;
mod handshake;
mod server;
mod socket;

pub use crate::client::{CallOptions, ClientHello, Peer};
pub use crate::config::{
    TransportConfig, FRAME_BYTES_LIMIT, FRAME_BYTES_MAX_DEFAULT, HANDSHAKE_FRAME_BYTES_MAX,
};
pub use crate::envelope::PROTOCOL_VERSION;
pub use crate::error::CallError;
pub use crate::frame::{decode_frame, encode_frame, FrameError, FRAME_HEADER_LEN};
pub use crate::server::{serve, Handler};
pub use crate::stats::{TransportStats, TransportStatsSnapshot};

/// Re-exported so that implementors of [`Handler`] name the same type.
pub use futures::future::BoxFuture;
