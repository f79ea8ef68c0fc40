//! The messages a frame carries ([`Envelope`]), serialized with postcard. Pure, no IO.
//!
//! Decoding borrows from the frame: request and response bodies come out as slices of the
//! received buffer, which the caller turns into `Bytes` without copying (`Bytes::slice_ref`).
//! The variant order is the wire format: append new variants, never reorder. The `Challenge`
//! variant (the first frame on every connection, carrying the protocol version) must keep its
//! index and shape in every future version, so that any two versions can tell each other apart.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::frame::{self, FrameError, FRAME_HEADER_LEN};

/// The protocol version this build speaks, sent in the handshake by both sides. A node refuses a
/// peer that speaks another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;

/// Bytes of an HMAC-SHA256 proof.
pub const MAC_LEN: usize = 32;

/// One message. `'a` is the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Envelope<'a> {
    /// 0, server → client, first frame on every connection: the server's protocol version and a
    /// fresh random nonce the client must prove it can MAC.
    Challenge {
        version: u32,
        nonce: [u8; NONCE_LEN],
    },
    /// 1, client → server: the client's version, its own nonce, and
    /// HMAC(secret, "tandem-client" || server nonce || client nonce).
    Auth {
        version: u32,
        nonce: [u8; NONCE_LEN],
        mac: [u8; MAC_LEN],
    },
    /// 2, server → client: HMAC(secret, "tandem-server" || client nonce || server nonce).
    AuthOk { mac: [u8; MAC_LEN] },
    /// 3, client → server, after authentication: the application's hello bytes.
    Hello {
        #[serde(borrow)]
        hello: Blob<'a>,
    },
    /// 4, server → client: the server application's hello bytes; the connection is ready.
    HelloOk {
        #[serde(borrow)]
        hello: Blob<'a>,
    },
    /// 5, either way, during the handshake: the sender refuses the connection and closes it.
    Refused { reason: &'a str },
    /// 6, client → server: call `id` with an opaque body.
    Request {
        id: u64,
        #[serde(borrow)]
        body: Blob<'a>,
    },
    /// 7, server → client: the outcome of call `id`: the handler's reply or its error message.
    Response {
        id: u64,
        #[serde(borrow)]
        result: Result<Blob<'a>, &'a str>,
    },
}

impl Envelope<'_> {
    /// The variant's name, for log lines about unexpected messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Envelope::Challenge { .. } => "Challenge",
            Envelope::Auth { .. } => "Auth",
            Envelope::AuthOk { .. } => "AuthOk",
            Envelope::Hello { .. } => "Hello",
            Envelope::HelloOk { .. } => "HelloOk",
            Envelope::Refused { .. } => "Refused",
            Envelope::Request { .. } => "Request",
            Envelope::Response { .. } => "Response",
        }
    }
}

/// Opaque bytes, serialized as postcard bytes (varint length, then the bytes) and decoded
/// borrowed from the frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blob<'a>(pub &'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(Blob)
    }
}

impl std::fmt::Debug for Blob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("cannot serialize a transport message: {0}")]
    Serialize(#[from] postcard::Error),
}

/// Serializes `envelope` into a complete frame (header included) whose payload is at most `max`
/// bytes.
pub(crate) fn encode(envelope: &Envelope<'_>, max: usize) -> Result<Vec<u8>, EncodeError> {
    let body_len = match envelope {
        Envelope::Hello { hello: b } | Envelope::HelloOk { hello: b } => b.0.len(),
        Envelope::Request { body: b, .. } | Envelope::Response { result: Ok(b), .. } => b.0.len(),
        _ => 0,
    };
    // A body alone over the limit is refused before it is copied.
    if body_len > max {
        return Err(FrameError::TooLarge { len: body_len, max }.into());
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body_len + 32);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let mut out = postcard::to_extend(envelope, out)?;
    frame::seal(&mut out, max)?;
    Ok(out)
}

/// Decodes one frame payload into a message. The whole payload must be used: trailing bytes are
/// an error, as is anything postcard rejects. Never panics, whatever `payload` holds.
pub(crate) fn decode(payload: &[u8]) -> Result<Envelope<'_>, String> {
    match postcard::take_from_bytes::<Envelope<'_>>(payload) {
        Ok((envelope, [])) => Ok(envelope),
        Ok((envelope, rest)) => Err(format!(
            "{} message followed by {} unexpected bytes",
            envelope.kind(),
            rest.len()
        )),
        Err(e) => Err(format!("undecodable message: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use rand::{Rng, RngCore, SeedableRng};

    fn round_trip(envelope: Envelope<'_>) {
        let frame = encode(&envelope, 1 << 20).unwrap();
        let (payload, used) = decode_frame(&frame, 1 << 20).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode(payload).unwrap(), envelope);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Envelope::Challenge {
            version: PROTOCOL_VERSION,
            nonce: [1; NONCE_LEN],
        });
        round_trip(Envelope::Auth {
            version: PROTOCOL_VERSION,
            nonce: [2; NONCE_LEN],
            mac: [3; MAC_LEN],
        });
        round_trip(Envelope::AuthOk { mac: [4; MAC_LEN] });
        round_trip(Envelope::Hello { hello: Blob(b"hi") });
        round_trip(Envelope::HelloOk { hello: Blob(b"") });
        round_trip(Envelope::Refused { reason: "no" });
        round_trip(Envelope::Request {
            id: u64::MAX,
            body: Blob(&[9; 1000]),
        });
        round_trip(Envelope::Response {
            id: 7,
            result: Ok(Blob(b"ok")),
        });
        round_trip(Envelope::Response {
            id: 8,
            result: Err("handler failed"),
        });
    }

    #[test]
    fn request_bytes_are_the_documented_postcard_layout() {
        let frame = encode(
            &Envelope::Request {
                id: 300,
                body: Blob(b"abc"),
            },
            1024,
        )
        .unwrap();
        // variant 6, id 300 as varint (0xac 0x02), body length 3, body.
        assert_eq!(
            &frame[FRAME_HEADER_LEN..],
            &[6, 0xac, 0x02, 3, b'a', b'b', b'c']
        );
        let challenge = encode(
            &Envelope::Challenge {
                version: 1,
                nonce: [0xee; NONCE_LEN],
            },
            1024,
        )
        .unwrap();
        assert_eq!(challenge.len(), FRAME_HEADER_LEN + 2 + NONCE_LEN);
        assert_eq!(&challenge[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 2], &[0, 1]);
    }

    #[test]
    fn oversize_bodies_are_refused_before_being_copied() {
        let err = encode(
            &Envelope::Request {
                id: 1,
                body: Blob(&[0; 2000]),
            },
            1024,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            EncodeError::Frame(FrameError::TooLarge { .. })
        ));
        // The envelope's own bytes count too.
        let err = encode(
            &Envelope::Request {
                id: 1,
                body: Blob(&[0; 1024]),
            },
            1024,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            EncodeError::Frame(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_unknown_variants_are_errors() {
        let frame = encode(&Envelope::Refused { reason: "x" }, 1024).unwrap();
        let mut payload = frame[FRAME_HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(decode(&payload).unwrap_err().contains("unexpected bytes"));
        assert!(decode(&[99]).is_err());
        assert!(decode(&[]).is_err());
        // A length that runs past the end.
        assert!(decode(&[6, 1, 200]).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..20_000 {
            let mut buf = vec![0u8; rng.gen_range(0..80)];
            rng.fill_bytes(&mut buf);
            // A valid variant tag now and then, so that decoding goes further.
            if let Some(first) = buf.first_mut() {
                if rng.gen_bool(0.7) {
                    *first = rng.gen_range(0..9);
                }
            }
            let _ = decode(&buf);
        }
    }
}
