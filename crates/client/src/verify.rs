//! Checking a `DIGEST.GET` reply on the client: the value's digest is recomputed here, with the
//! algorithm the server names, so the bytes are verified end to end (the server's memory, its
//! reply encoding, the network, this process's buffers). Plain functions, no IO.

use std::fmt;

use bytes::Bytes;
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::Frame;

use crate::topology::{describe, text, NodeInfo};

/// A copy that [`get_verified`](crate::Client::get_verified) read and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The value's bytes, which hash to the digest stored with them.
    pub value: Bytes,
    /// The algorithm the value's digest was computed with (chosen when it was written).
    pub algorithm: Algorithm,
    /// The node that served this copy.
    pub served_by: NodeInfo,
    /// Copies that failed before this one was found, in the order they were read; each
    /// reportable one has been reported to its node with `DIGEST.REPORT`.
    pub bad_copies: Vec<BadCopy>,
}

/// A copy that could not be verified, and what the client did about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCopy {
    /// The node that served it.
    pub node: NodeInfo,
    /// What was wrong with it.
    pub problem: CopyProblem,
    /// Whether the node acknowledged a `DIGEST.REPORT` for it. Always false for problems that
    /// are not [reportable](CopyProblem::is_reportable).
    pub reported: bool,
}

/// Why a copy could not be verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyProblem {
    /// The bytes received do not hash to the digest sent with them.
    Mismatch {
        /// The algorithm the node named.
        algorithm: Algorithm,
        /// The digest the node sent (lower-case hex).
        claimed: String,
        /// The digest of the bytes received (lower-case hex).
        computed: String,
    },
    /// The node found its own copy corrupt and said so (`-CORRUPT ...`, its whole text).
    Corrupt(String),
    /// The digest sent is not valid hex, or not the algorithm's length.
    MalformedDigest {
        /// The algorithm the node named.
        algorithm: Algorithm,
        /// What is wrong with the digest.
        detail: String,
    },
    /// The node named an algorithm this client does not know (a newer server?), so the copy
    /// cannot be checked here. Not evidence of damage: not reported.
    UnknownAlgorithm(String),
}

impl CopyProblem {
    /// Whether the copy is evidence of damage worth telling the node about. An unknown
    /// algorithm is the client's limitation, not the copy's.
    pub fn is_reportable(&self) -> bool {
        !matches!(self, CopyProblem::UnknownAlgorithm(_))
    }
}

impl fmt::Display for CopyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyProblem::Mismatch {
                algorithm,
                claimed,
                computed,
            } => write!(
                f,
                "{algorithm} digest of the bytes received is {computed}, the node sent {claimed}"
            ),
            CopyProblem::Corrupt(message) => write!(f, "the node refused its own copy: {message}"),
            CopyProblem::MalformedDigest { algorithm, detail } => {
                write!(f, "malformed {algorithm} digest: {detail}")
            }
            CopyProblem::UnknownAlgorithm(name) => {
                write!(f, "unknown checksum algorithm '{name}', cannot verify")
            }
        }
    }
}

/// A `DIGEST.GET` reply, shape-checked but not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DigestReply {
    /// The key does not exist on that node (a null array).
    Absent,
    Copy {
        value: Bytes,
        algorithm: String,
        hex: Bytes,
    },
}

/// Reads `[value, algorithm name, hex digest]` or a null. Error replies are the caller's to
/// handle before this; any other shape is an error naming it.
pub(crate) fn parse_digest_reply(reply: Frame) -> Result<DigestReply, String> {
    let fields = match reply {
        Frame::NullArray | Frame::Null => return Ok(DigestReply::Absent),
        Frame::Array(fields) => fields,
        other => {
            return Err(format!(
                "expected [value, algorithm, digest] or null, got {}",
                describe(&other)
            ))
        }
    };
    let [value, algorithm, hex] = <[Frame; 3]>::try_from(fields).map_err(|fields| {
        format!(
            "expected [value, algorithm, digest], got an array of {}",
            fields.len()
        )
    })?;
    let value = match value {
        Frame::Bulk(b) => b,
        other => {
            return Err(format!(
                "value: expected a bulk string, got {}",
                describe(&other)
            ))
        }
    };
    let algorithm = text(&algorithm)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .ok_or_else(|| format!("algorithm: expected a string, got {}", describe(&algorithm)))?;
    let hex = text(&hex)
        .map(Bytes::copy_from_slice)
        .ok_or_else(|| format!("digest: expected a string, got {}", describe(&hex)))?;
    Ok(DigestReply::Copy {
        value,
        algorithm,
        hex,
    })
}

/// Recomputes the digest of `value` with the algorithm named and compares it with `hex`.
pub(crate) fn check_copy(
    value: &[u8],
    algorithm: &str,
    hex: &[u8],
) -> Result<Algorithm, CopyProblem> {
    let algorithm: Algorithm = algorithm
        .parse()
        .map_err(|_| CopyProblem::UnknownAlgorithm(algorithm.to_string()))?;
    let claimed = Checksum::from_hex(algorithm, hex).map_err(|e| CopyProblem::MalformedDigest {
        algorithm,
        detail: e.to_string(),
    })?;
    let computed = Checksum::compute(algorithm, value);
    if computed == claimed {
        Ok(algorithm)
    } else {
        Err(CopyProblem::Mismatch {
            algorithm,
            claimed: claimed.to_hex(),
            computed: computed.to_hex(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of "hello", from `printf hello | sha256sum`.
    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn reply(value: &str, algorithm: &str, hex: &str) -> Frame {
        Frame::Array(vec![
            Frame::bulk(value.to_string()),
            Frame::bulk(algorithm.to_string()),
            Frame::bulk(hex.to_string()),
        ])
    }

    #[test]
    fn a_good_copy_verifies_with_its_own_algorithm() {
        assert_eq!(
            check_copy(b"hello", "sha256", HELLO_SHA256.as_bytes()),
            Ok(Algorithm::Sha256)
        );
        // Upper-case hex and the algorithm's other spellings are accepted.
        let upper = HELLO_SHA256.to_ascii_uppercase();
        assert_eq!(
            check_copy(b"hello", "SHA-256", upper.as_bytes()),
            Ok(Algorithm::Sha256)
        );
        // Every algorithm the checksum crate knows round-trips.
        for algorithm in tandem_checksum::ALL {
            let hex = Checksum::compute(algorithm, b"some value").to_hex();
            assert_eq!(
                check_copy(b"some value", algorithm.name(), hex.as_bytes()),
                Ok(algorithm)
            );
        }
    }

    #[test]
    fn one_flipped_byte_is_a_mismatch_naming_both_digests() {
        let err = check_copy(b"hellp", "sha256", HELLO_SHA256.as_bytes()).unwrap_err();
        let CopyProblem::Mismatch {
            algorithm,
            claimed,
            computed,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*algorithm, Algorithm::Sha256);
        assert_eq!(claimed, HELLO_SHA256);
        assert_eq!(
            *computed,
            Checksum::compute(Algorithm::Sha256, b"hellp").to_hex()
        );
        assert!(err.is_reportable());
        assert!(err.to_string().contains(HELLO_SHA256), "{err}");
    }

    #[test]
    fn unknown_algorithms_and_malformed_digests_are_problems_not_panics() {
        let unknown = check_copy(b"hello", "sha3-256", b"00").unwrap_err();
        assert_eq!(unknown, CopyProblem::UnknownAlgorithm("sha3-256".into()));
        assert!(!unknown.is_reportable());
        for hex in ["zz", "abc", "", &HELLO_SHA256[..62]] {
            let err = check_copy(b"hello", "sha256", hex.as_bytes()).unwrap_err();
            assert!(
                matches!(err, CopyProblem::MalformedDigest { .. }),
                "{hex}: {err:?}"
            );
            assert!(err.is_reportable());
        }
    }

    #[test]
    fn digest_get_replies_are_shape_checked() {
        assert_eq!(
            parse_digest_reply(Frame::NullArray),
            Ok(DigestReply::Absent)
        );
        assert_eq!(parse_digest_reply(Frame::Null), Ok(DigestReply::Absent));
        assert_eq!(
            parse_digest_reply(reply("hello", "sha256", HELLO_SHA256)),
            Ok(DigestReply::Copy {
                value: Bytes::from("hello"),
                algorithm: "sha256".into(),
                hex: Bytes::from(HELLO_SHA256),
            })
        );
        let bad = [
            (Frame::bulk("hello"), "got a 5-byte bulk string"),
            (Frame::Array(vec![Frame::bulk("v")]), "array of 1"),
            (
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::bulk("sha256"),
                    Frame::bulk("00"),
                ]),
                "value: expected a bulk string",
            ),
            (
                Frame::Array(vec![Frame::bulk("v"), Frame::Integer(1), Frame::bulk("00")]),
                "algorithm: expected a string",
            ),
            (
                Frame::Array(vec![
                    Frame::bulk("v"),
                    Frame::bulk("sha256"),
                    Frame::NullArray,
                ]),
                "digest: expected a string",
            ),
        ];
        for (frame, want) in bad {
            let err = parse_digest_reply(frame.clone()).unwrap_err();
            assert!(err.contains(want), "{frame:?}: {err}");
        }
    }
}
