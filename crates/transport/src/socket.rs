//! Frames on a TCP socket, shared by both sides: [`FrameReader`] (buffered, cancel-safe, checks
//! the length limit and CRC before anything is decoded) and the writer loop that batches queued
//! frames into few system calls.

use std::fmt;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::frame::{self, FrameError, FRAME_HEADER_LEN};
use crate::stats::{add, TransportStats};

/// Initial size of a connection's read buffer; it grows to hold the largest frame seen.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Smallest amount of room made in the read buffer before each read, so that small frames
/// arriving together are read in one system call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Size of the writer's buffer: frames smaller than this are gathered and written together.
const WRITE_BUF_BYTES: usize = 64 * 1024;

/// Most bytes of frames the writer takes from its queue before it flushes, so that one flush
/// never waits behind an unbounded queue.
const WRITE_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Why no further frame can be read from a connection.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    Io(io::Error),
    /// A length above the limit or a CRC mismatch: the stream cannot be trusted any further.
    Frame(FrameError),
}

impl ReadError {
    /// Whether the peer sent bytes that break the protocol (as opposed to a connection that
    /// merely ended): these are logged at warn.
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(self, ReadError::Frame(_))
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed by the peer"),
            ReadError::Truncated => {
                f.write_str("connection closed by the peer in the middle of a frame")
            }
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Frame(e @ FrameError::BadCrc { .. }) => write!(
                f,
                "received a frame that failed its CRC32C check, closing the connection ({e})"
            ),
            ReadError::Frame(e) => write!(f, "protocol error, closing the connection: {e}"),
        }
    }
}

/// The read half of a connection and the bytes read from it but not yet returned as frames.
pub(crate) struct FrameReader {
    half: OwnedReadHalf,
    buf: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(half: OwnedReadHalf) -> FrameReader {
        FrameReader {
            half,
            buf: BytesMut::with_capacity(READ_BUF_BYTES),
        }
    }

    /// Reads the next frame and returns its payload, at most `max` bytes, CRC verified.
    ///
    /// Cancel safe: bytes read before a cancellation stay in the buffer for the next call. A CRC
    /// mismatch is counted in `stats.crc_failures`; the caller logs it and closes the connection.
    pub(crate) async fn next(
        &mut self,
        max: usize,
        stats: &TransportStats,
    ) -> Result<Bytes, ReadError> {
        loop {
            match frame::decode_frame(&self.buf, max) {
                Ok(Some((_, used))) => {
                    let mut frame = self.buf.split_to(used).freeze();
                    frame.advance(FRAME_HEADER_LEN);
                    add(&stats.frames_received, 1);
                    add(&stats.bytes_received, used as u64);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    if let FrameError::BadCrc { .. } = e {
                        add(&stats.crc_failures, 1);
                    }
                    return Err(ReadError::Frame(e));
                }
            }
            // decode_frame has checked the length against `max`, so this reserve is bounded.
            self.buf
                .reserve(frame::bytes_missing(&self.buf).max(READ_CHUNK_BYTES));
            let n = self
                .half
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
    }
}

/// Writes one frame at once (the handshake's messages, each answered before the next).
pub(crate) async fn write_frame(
    half: &mut OwnedWriteHalf,
    frame: &[u8],
    stats: &TransportStats,
) -> io::Result<()> {
    // Counted before the write, so that a peer that has read the frame always sees it counted.
    add(&stats.frames_sent, 1);
    add(&stats.bytes_sent, frame.len() as u64);
    half.write_all(frame).await
}

/// Writes the frames queued on `queue` until it closes or a write fails.
///
/// Batching: after the first frame it takes every frame already queued (up to
/// [`WRITE_BATCH_BYTES_MAX`]) into the buffer and then flushes once, so many small RPCs in flight
/// cost one `write` system call rather than one each. Not cancel safe (a frame may be half
/// written): callers only stop it together with the connection.
pub(crate) async fn write_loop(
    half: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    stats: &TransportStats,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUF_BYTES, half);
    while let Some(first) = queue.recv().await {
        let mut batch_bytes = 0;
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            // Counted before the write, so that a peer that has read the frame always sees it
            // counted.
            add(&stats.frames_sent, 1);
            add(&stats.bytes_sent, frame.len() as u64);
            out.write_all(&frame).await?;
            batch_bytes += frame.len();
            if batch_bytes < WRITE_BATCH_BYTES_MAX {
                next = queue.try_recv().ok();
            }
        }
        out.flush().await?;
    }
    Ok(())
}

/// A reason from the peer, made safe to log: control characters replaced and at most 256
/// characters kept.
pub(crate) fn printable(reason: &str) -> String {
    const CHARS_MAX: usize = 256;
    let mut out: String = reason
        .chars()
        .take(CHARS_MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.chars().nth(CHARS_MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_strips_control_characters_and_long_tails() {
        assert_eq!(printable("bad\nsecret\x1b[31m"), "bad secret [31m");
        let long = "x".repeat(1000);
        assert_eq!(printable(&long).chars().count(), 257);
    }
}
