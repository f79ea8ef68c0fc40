//! The handshake every connection starts with, as the two sides run it: authentication on the
//! cluster secret, then the application hello exchange.
//!
//! ```text
//! server                                   client
//!   Challenge { version, server_nonce }  →
//!                                        ←  Auth { version, client_nonce, client proof }
//!   (verify; or Refused)
//!   AuthOk { server proof }              →
//!                                           (verify; or Refused)
//!                                        ←  Hello { client hello }
//!   (Handler::hello; or Refused)
//!   HelloOk { server hello }             →
//!                                           (ClientHello::check_server_hello; or Refused)
//! ```
//!
//! A side that refuses logs the refusal at warn with the peer's address, counts it, sends
//! `Refused { reason }` and closes. Frames are limited to [`HANDSHAKE_FRAME_BYTES_MAX`] until the
//! handshake is over. The callers put the deadline (`handshake_timeout`) around these functions.

use std::fmt::Display;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;

use crate::auth;
use crate::client::ClientHello;
use crate::config::HANDSHAKE_FRAME_BYTES_MAX;
use crate::envelope::{self, Blob, Envelope, PROTOCOL_VERSION};
use crate::server::Handler;
use crate::socket::{self, printable, FrameReader};
use crate::stats::{add, TransportStats};

/// Why a handshake did not produce a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// One side refused the other; the reason is the refusing side's.
    Refused(String),
    /// The peer sent something the protocol does not allow here (logged at warn).
    Protocol(String),
    /// The connection failed or ended (logged at a lower level: a closed connection is routine).
    Io(String),
}

/// The two halves of a connection during its handshake, and who is at the other end.
struct Link<'a, P> {
    reader: &'a mut FrameReader,
    writer: &'a mut OwnedWriteHalf,
    stats: &'a TransportStats,
    peer: P,
}

impl<P: Display> Link<'_, P> {
    async fn send(&mut self, message: &Envelope<'_>) -> Result<(), HandshakeError> {
        let frame = envelope::encode(message, HANDSHAKE_FRAME_BYTES_MAX).map_err(|e| {
            HandshakeError::Protocol(format!("cannot send the {} message: {e}", message.kind()))
        })?;
        socket::write_frame(self.writer, &frame, self.stats)
            .await
            .map_err(|e| HandshakeError::Io(format!("write error: {e}")))
    }

    async fn receive(&mut self) -> Result<Bytes, HandshakeError> {
        self.reader
            .next(HANDSHAKE_FRAME_BYTES_MAX, self.stats)
            .await
            .map_err(|e| {
                if e.is_peer_fault() {
                    HandshakeError::Protocol(e.to_string())
                } else {
                    HandshakeError::Io(e.to_string())
                }
            })
    }

    /// Refuses the peer: log, count, tell it why (best effort), and return the error that closes
    /// the connection.
    async fn refuse(&mut self, side: &str, reason: String) -> HandshakeError {
        tracing::warn!(peer = %self.peer, reason = %reason, "transport: refused connection {side}");
        add(&self.stats.refusals, 1);
        let sent = printable(&reason);
        let _ = self.send(&Envelope::Refused { reason: &sent }).await;
        HandshakeError::Refused(reason)
    }
}

/// The error for a message that is not the one expected at this step. A `Refused` is the peer
/// refusing us.
fn unexpected(expected: &str, got: Result<Envelope<'_>, String>) -> HandshakeError {
    match got {
        Ok(Envelope::Refused { reason }) => HandshakeError::Refused(printable(reason)),
        Ok(other) => HandshakeError::Protocol(format!(
            "handshake protocol error: expected {expected}, received {}",
            other.kind()
        )),
        Err(e) => HandshakeError::Protocol(format!(
            "handshake protocol error: expected {expected}: {e}"
        )),
    }
}

/// The client's side: answer the challenge, check the server's proof, exchange hellos.
pub(crate) async fn client(
    reader: &mut FrameReader,
    writer: &mut OwnedWriteHalf,
    secret: &[u8],
    hello: &dyn ClientHello,
    stats: &TransportStats,
    peer: &str,
) -> Result<(), HandshakeError> {
    let mut link = Link {
        reader,
        writer,
        stats,
        peer,
    };
    let side = "to a server";

    let payload = link.receive().await?;
    let server_nonce = match envelope::decode(&payload) {
        Ok(Envelope::Challenge { version, nonce }) if version == PROTOCOL_VERSION => nonce,
        Ok(Envelope::Challenge { version, .. }) => {
            let reason = format!(
                "the server speaks transport protocol version {version}; this node speaks version {PROTOCOL_VERSION}"
            );
            return Err(link.refuse(side, reason).await);
        }
        other => return Err(unexpected("Challenge", other)),
    };

    let client_nonce = auth::nonce();
    let mac = auth::client_proof(secret, &server_nonce, &client_nonce);
    link.send(&Envelope::Auth {
        version: PROTOCOL_VERSION,
        nonce: client_nonce,
        mac,
    })
    .await?;

    let payload = link.receive().await?;
    match envelope::decode(&payload) {
        Ok(Envelope::AuthOk { mac }) => {
            if !auth::verify_server_proof(secret, &client_nonce, &server_nonce, &mac) {
                let reason = format!(
                    "authentication failed: the server at {peer} could not prove it knows the cluster secret"
                );
                return Err(link.refuse(side, reason).await);
            }
        }
        other => return Err(unexpected("AuthOk", other)),
    }

    let hello_bytes = hello.hello();
    link.send(&Envelope::Hello {
        hello: Blob(&hello_bytes),
    })
    .await?;

    let payload = link.receive().await?;
    match envelope::decode(&payload) {
        Ok(Envelope::HelloOk {
            hello: server_hello,
        }) => {
            if let Err(reason) = hello.check_server_hello(server_hello.0) {
                return Err(link.refuse(side, reason).await);
            }
        }
        other => return Err(unexpected("HelloOk", other)),
    }
    Ok(())
}

/// The server's side: challenge, check the client's proof, prove ourselves, let the handler
/// judge the client's hello.
pub(crate) async fn server(
    reader: &mut FrameReader,
    writer: &mut OwnedWriteHalf,
    secret: &[u8],
    handler: &dyn Handler,
    stats: &TransportStats,
    peer: SocketAddr,
) -> Result<(), HandshakeError> {
    let mut link = Link {
        reader,
        writer,
        stats,
        peer,
    };
    let side = "from a client";

    let server_nonce = auth::nonce();
    link.send(&Envelope::Challenge {
        version: PROTOCOL_VERSION,
        nonce: server_nonce,
    })
    .await?;

    let payload = link.receive().await?;
    let client_nonce = match envelope::decode(&payload) {
        Ok(Envelope::Auth {
            version,
            nonce,
            mac,
        }) => {
            if version != PROTOCOL_VERSION {
                let reason = format!(
                    "the client speaks transport protocol version {version}; this node speaks version {PROTOCOL_VERSION}"
                );
                return Err(link.refuse(side, reason).await);
            }
            if !auth::verify_client_proof(secret, &server_nonce, &nonce, &mac) {
                let reason = format!(
                    "authentication failed: the client at {peer} does not know the cluster secret \
                     (check that every node has the same --cluster-secret)"
                );
                return Err(link.refuse(side, reason).await);
            }
            nonce
        }
        other => return Err(unexpected("Auth", other)),
    };

    link.send(&Envelope::AuthOk {
        mac: auth::server_proof(secret, &client_nonce, &server_nonce),
    })
    .await?;

    let payload = link.receive().await?;
    let reply = match envelope::decode(&payload) {
        Ok(Envelope::Hello { hello }) => handler.hello(peer, hello.0),
        other => return Err(unexpected("Hello", other)),
    };
    match reply {
        Ok(server_hello) => {
            link.send(&Envelope::HelloOk {
                hello: Blob(&server_hello),
            })
            .await
        }
        Err(reason) => Err(link.refuse(side, reason).await),
    }
}

#[cfg(test)]
mod tests {
    //! The client's checks of the server, against a fake server speaking raw frames: a real
    //! server never gets this far with a wrong secret (it refuses first).

    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    struct Hello;

    impl ClientHello for Hello {
        fn hello(&self) -> Vec<u8> {
            b"client".to_vec()
        }
        fn check_server_hello(&self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    /// Runs the client handshake against a fake server that sends `first`, and, when the client
    /// answers with Auth, an AuthOk proved with `server_secret`. Returns the client's result and
    /// the last message the fake server received.
    async fn against_fake_server(
        version: u32,
        server_secret: &'static [u8],
    ) -> (Result<(), HandshakeError>, String, TransportStats) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = FrameReader::new(read);
            let stats = TransportStats::new();
            let server_nonce = auth::nonce();
            let challenge = Envelope::Challenge {
                version,
                nonce: server_nonce,
            };
            write
                .write_all(&envelope::encode(&challenge, 1024).unwrap())
                .await
                .unwrap();
            let mut last = String::new();
            while let Ok(payload) = reader.next(1024, &stats).await {
                match envelope::decode(&payload).unwrap() {
                    Envelope::Auth { nonce, .. } => {
                        let mac = auth::server_proof(server_secret, &nonce, &server_nonce);
                        let frame = envelope::encode(&Envelope::AuthOk { mac }, 1024).unwrap();
                        write.write_all(&frame).await.unwrap();
                        last = "Auth".into();
                    }
                    Envelope::Refused { reason } => last = format!("Refused: {reason}"),
                    other => {
                        // Hang up: the client would wait for HelloOk forever.
                        last = other.kind().into();
                        break;
                    }
                }
            }
            last
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = FrameReader::new(read);
        let stats = TransportStats::new();
        let result = client(&mut reader, &mut write, b"right", &Hello, &stats, "fake").await;
        drop((reader, write));
        (result, fake.await.unwrap(), stats)
    }

    #[tokio::test]
    async fn client_refuses_a_server_that_cannot_prove_the_secret() {
        let (result, server_saw, stats) = against_fake_server(PROTOCOL_VERSION, b"wrong").await;
        let Err(HandshakeError::Refused(reason)) = result else {
            panic!("expected a refusal, got {result:?}");
        };
        assert!(reason.contains("could not prove"), "{reason}");
        assert!(
            server_saw.starts_with("Refused: authentication failed"),
            "{server_saw}"
        );
        assert_eq!(stats.snapshot().refusals, 1);
    }

    #[tokio::test]
    async fn client_goes_on_with_a_server_that_proves_the_secret() {
        // The fake server stops after AuthOk: the client's next message is its Hello.
        let (result, server_saw, _) = against_fake_server(PROTOCOL_VERSION, b"right").await;
        assert!(matches!(result, Err(HandshakeError::Io(_))), "{result:?}");
        assert_eq!(server_saw, "Hello");
    }

    #[tokio::test]
    async fn client_refuses_another_protocol_version() {
        let (result, server_saw, _) = against_fake_server(PROTOCOL_VERSION + 1, b"right").await;
        let Err(HandshakeError::Refused(reason)) = result else {
            panic!("expected a refusal, got {result:?}");
        };
        assert!(reason.contains("protocol version 2"), "{reason}");
        assert!(server_saw.contains("protocol version 2"), "{server_saw}");
    }
}
