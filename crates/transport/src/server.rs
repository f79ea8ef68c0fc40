//! The server side: [`serve`] accepts connections, runs the handshake on each and then answers
//! its requests through the application's [`Handler`], concurrently, in completion order.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{TransportConfig, SERVER_CONNECTIONS_MAX};
use crate::envelope::{self, Blob, Envelope};
use crate::handshake::{self, HandshakeError};
use crate::socket::{self, printable, FrameReader, ReadError};
use crate::stats::{add, TransportStats};

/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one, so that a
/// persistent failure does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// What the server application does with connections and calls.
pub trait Handler: Send + Sync + 'static {
    /// Judges the hello bytes of an authenticated client at `peer`. `Ok` carries the server's
    /// own hello bytes (at most about 64 KiB); `Err` refuses the connection with that reason,
    /// which is logged and sent to the client.
    fn hello(&self, peer: SocketAddr, hello: &[u8]) -> Result<Vec<u8>, String>;

    /// Answers one call from `peer`. `Err` reaches the caller as [`crate::CallError::Remote`].
    ///
    /// Calls on one connection run concurrently (at most `in_flight_max` at once). A call whose
    /// connection closes before it finishes is dropped (cancelled). The same call may arrive
    /// more than once: clients re-send calls whose connection dropped.
    fn call(&self, peer: SocketAddr, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// Accepts connections on `listener` and serves each in its own task, forever.
///
/// Dropping (or aborting) the future closes every connection it accepted and cancels their
/// handlers, so a node that stops serving really stops. Returns at once with `InvalidInput` if
/// `config` is not valid; otherwise only ends when dropped (accept errors are logged and
/// retried).
pub async fn serve(
    listener: TcpListener,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
    stats: Arc<TransportStats>,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= SERVER_CONNECTIONS_MAX {
                        tracing::warn!(%peer, limit = SERVER_CONNECTIONS_MAX, "transport: too many connections, closing the new one");
                        continue;
                    }
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        config.clone(),
                        handler.clone(),
                        stats.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "transport: accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One connection from handshake to close.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<TransportConfig>,
    handler: Arc<dyn Handler>,
    stats: Arc<TransportStats>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "transport: cannot set TCP_NODELAY");
    }
    let (read, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let handshake = handshake::server(
        &mut reader,
        &mut writer,
        &config.secret,
        &*handler,
        &stats,
        peer,
    );
    let failure = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(Ok(())) => None,
        Err(_) => Some(format!(
            "handshake did not finish within {:?}",
            config.handshake_timeout
        )),
        // Our own refusals were logged at warn where they were made; the client's are news.
        Ok(Err(HandshakeError::Refused(reason))) => {
            tracing::info!(%peer, %reason, "transport: handshake refused");
            Some(reason)
        }
        Ok(Err(HandshakeError::Protocol(e))) => {
            tracing::warn!(%peer, error = %e, "transport: handshake failed");
            Some(e)
        }
        Ok(Err(HandshakeError::Io(e))) => {
            tracing::debug!(%peer, error = %e, "transport: handshake failed");
            Some(e)
        }
    };
    if let Some(reason) = failure {
        add(&stats.connect_failures, 1);
        tracing::debug!(%peer, %reason, "transport: connection closed during handshake");
        return;
    }
    add(&stats.connects, 1);
    tracing::debug!(%peer, "transport: client connected");

    let (outgoing, queue) = mpsc::unbounded_channel();
    let reason = tokio::select! {
        reason = read_loop(reader, outgoing, peer, &config, &handler, &stats) => reason,
        written = socket::write_loop(writer, queue, &stats) => match written {
            Ok(()) => "connection writer stopped".to_string(),
            Err(e) => format!("write error: {e}"),
        },
    };
    tracing::debug!(%peer, %reason, "transport: connection closed");
}

/// Reads requests and starts a handler task for each, until the connection fails; returns why.
/// The handler tasks live in this future: when it ends they are cancelled.
async fn read_loop(
    mut reader: FrameReader,
    outgoing: mpsc::UnboundedSender<Bytes>,
    peer: SocketAddr,
    config: &TransportConfig,
    handler: &Arc<dyn Handler>,
    stats: &TransportStats,
) -> String {
    let mut handlers = JoinSet::new();
    loop {
        // At the limit, stop reading (TCP pushes back on the client) until a handler finishes.
        while handlers.len() >= config.in_flight_max {
            handlers.join_next().await;
        }
        let next = tokio::select! {
            next = reader.next(config.frame_bytes_max, stats) => next,
            Some(_) = handlers.join_next(), if !handlers.is_empty() => continue,
        };
        let payload = match next {
            Ok(payload) => payload,
            Err(ReadError::Closed) => return "connection closed by the client".into(),
            Err(e) => {
                if e.is_peer_fault() {
                    tracing::warn!(%peer, error = %e, "transport: bad frame from client");
                }
                return e.to_string();
            }
        };
        let (id, body) = match envelope::decode(&payload) {
            Ok(Envelope::Request { id, body }) => (id, payload.slice_ref(body.0)),
            Ok(Envelope::Refused { reason }) => {
                // The client did not accept our hello.
                let reason = printable(reason);
                tracing::info!(%peer, %reason, "transport: client refused the connection");
                return format!("refused by the client: {reason}");
            }
            Ok(other) => {
                let e = format!("protocol error: unexpected {} message", other.kind());
                tracing::warn!(%peer, error = %e, "transport: bad message from client");
                return e;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "transport: bad message from client");
                return format!("protocol error: {e}");
            }
        };
        let call = handler.call(peer, body);
        let outgoing = outgoing.clone();
        let frame_bytes_max = config.frame_bytes_max;
        handlers.spawn(async move {
            let result = match AssertUnwindSafe(call).catch_unwind().await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(%peer, id, "transport: handler panicked");
                    Err("the handler panicked".to_string())
                }
            };
            if let Some(frame) = response_frame(id, &result, frame_bytes_max) {
                // Fails only when the connection has ended: the reply has nowhere to go.
                let _ = outgoing.send(frame);
            }
        });
    }
}

/// The frame answering call `id`. A reply too large for a frame becomes an error reply, so the
/// caller learns why instead of timing out.
fn response_frame(id: u64, result: &Result<Bytes, String>, max: usize) -> Option<Bytes> {
    let result_ref = match result {
        Ok(body) => Ok(Blob(body)),
        Err(message) => Err(message.as_str()),
    };
    let encoded = envelope::encode(
        &Envelope::Response {
            id,
            result: result_ref,
        },
        max,
    );
    let encoded = encoded.or_else(|e| {
        let message = match result {
            Ok(body) => format!(
                "the reply of {} bytes does not fit in a frame: {e}",
                body.len()
            ),
            Err(message) => format!(
                "the error message of {} bytes does not fit in a frame: {e}",
                message.len()
            ),
        };
        tracing::warn!(id, %message, "transport: reply replaced by an error");
        envelope::encode(
            &Envelope::Response {
                id,
                result: Err(&message),
            },
            max,
        )
    });
    match encoded {
        Ok(frame) => Some(Bytes::from(frame)),
        Err(e) => {
            tracing::warn!(id, error = %e, "transport: cannot encode a reply; dropping it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_frame, FRAME_HEADER_LEN};

    #[test]
    fn replies_too_large_for_a_frame_become_error_replies() {
        let big = Ok(Bytes::from(vec![0u8; 2000]));
        let frame = response_frame(9, &big, 1024).unwrap();
        let (payload, _) = decode_frame(&frame, 1024).unwrap().unwrap();
        match envelope::decode(payload).unwrap() {
            Envelope::Response {
                id: 9,
                result: Err(message),
            } => {
                assert!(message.contains("2000 bytes"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        let small = Ok(Bytes::from_static(b"fine"));
        let frame = response_frame(3, &small, 1024).unwrap();
        assert_eq!(frame.len(), FRAME_HEADER_LEN + 1 + 1 + 1 + 1 + 4);
    }
}
