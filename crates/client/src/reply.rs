//! What a reply means: error replies sorted by what the client should do about them, and the
//! shapes the typed commands expect. Plain functions over [`Frame`]s.

use bytes::Bytes;
use tandem_resp::Frame;

use crate::topology::describe;

/// What an error reply tells the router, by its prefix word (the server's wording follows
/// Redis, whose clients map errors by prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// `-READONLY`: this node is not the primary; the write was not executed.
    NotPrimary,
    /// `-MASTERDOWN` (a replica without a fresh primary), `-TRYAGAIN` (a write not accepted, a
    /// read barrier that failed), `-LOADING`: the node cannot serve this now and did nothing.
    NotReady,
    /// `-UNKNOWN`, `-TIMEOUT`: a write was proposed but its fate is not known.
    OutcomeUnknown,
    /// `-CORRUPT`: the node's stored copy failed its checksum; nothing was returned.
    Corrupt,
    /// Anything else (`-ERR`, `-WRONGTYPE`, `-NOAUTH`, ...): the answer to the request itself.
    Other,
}

impl ErrorClass {
    /// True when another node (or the same one later) may serve the request and the request
    /// provably did nothing here.
    pub(crate) fn is_routing(self) -> bool {
        matches!(self, ErrorClass::NotPrimary | ErrorClass::NotReady)
    }
}

pub(crate) fn classify(message: &str) -> ErrorClass {
    let prefix = message.split(' ').next().unwrap_or("");
    match prefix {
        "READONLY" => ErrorClass::NotPrimary,
        "MASTERDOWN" | "TRYAGAIN" | "LOADING" => ErrorClass::NotReady,
        "UNKNOWN" | "TIMEOUT" => ErrorClass::OutcomeUnknown,
        "CORRUPT" => ErrorClass::Corrupt,
        _ => ErrorClass::Other,
    }
}

/// `+OK`.
pub(crate) fn expect_ok(reply: &Frame) -> Result<(), String> {
    match reply {
        Frame::Simple(s) if s == "OK" => Ok(()),
        other => Err(format!("expected +OK, got {}", describe(other))),
    }
}

/// A string, or a null for an absent key.
pub(crate) fn expect_value(reply: Frame) -> Result<Option<Bytes>, String> {
    match reply {
        Frame::Bulk(b) => Ok(Some(b)),
        Frame::Verbatim(_, b) => Ok(Some(b)),
        Frame::Simple(s) => Ok(Some(Bytes::from(s))),
        Frame::Null | Frame::NullArray => Ok(None),
        other => Err(format!(
            "expected a string or null, got {}",
            describe(&other)
        )),
    }
}

/// An integer (RESP3 booleans count as 0 and 1).
pub(crate) fn expect_integer(reply: &Frame) -> Result<i64, String> {
    match reply {
        Frame::Integer(n) => Ok(*n),
        Frame::Boolean(b) => Ok(i64::from(*b)),
        other => Err(format!("expected an integer, got {}", describe(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_their_prefix_word() {
        let cases = [
            (
                "READONLY You can't write against a read only replica.",
                ErrorClass::NotPrimary,
            ),
            (
                "MASTERDOWN Link with MASTER is down and ...",
                ErrorClass::NotReady,
            ),
            (
                "TRYAGAIN write not accepted: the node is shutting down",
                ErrorClass::NotReady,
            ),
            ("TRYAGAIN read not served: no leader", ErrorClass::NotReady),
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorClass::NotReady,
            ),
            (
                "UNKNOWN write outcome unknown: x; check the key before retrying",
                ErrorClass::OutcomeUnknown,
            ),
            (
                "TIMEOUT write not committed within 10000 ms; ...",
                ErrorClass::OutcomeUnknown,
            ),
            (
                "CORRUPT value of key 'k' failed its sha256 checksum",
                ErrorClass::Corrupt,
            ),
            ("ERR syntax error", ErrorClass::Other),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                ErrorClass::Other,
            ),
            ("READONLYX not the prefix word", ErrorClass::Other),
            ("", ErrorClass::Other),
        ];
        for (message, class) in cases {
            assert_eq!(classify(message), class, "{message}");
        }
        assert!(ErrorClass::NotPrimary.is_routing() && ErrorClass::NotReady.is_routing());
        assert!(!ErrorClass::OutcomeUnknown.is_routing() && !ErrorClass::Corrupt.is_routing());
    }

    #[test]
    fn typed_replies_accept_their_shapes_only() {
        assert_eq!(expect_ok(&Frame::ok()), Ok(()));
        assert!(expect_ok(&Frame::Simple("QUEUED".into()))
            .unwrap_err()
            .contains("QUEUED"));
        assert!(expect_ok(&Frame::Integer(1)).is_err());

        assert_eq!(expect_value(Frame::bulk("v")), Ok(Some(Bytes::from("v"))));
        assert_eq!(expect_value(Frame::Null), Ok(None));
        assert_eq!(expect_value(Frame::NullArray), Ok(None));
        assert!(expect_value(Frame::Array(vec![]))
            .unwrap_err()
            .contains("an array of 0"));

        assert_eq!(expect_integer(&Frame::Integer(3)), Ok(3));
        assert_eq!(expect_integer(&Frame::Boolean(true)), Ok(1));
        assert!(expect_integer(&Frame::bulk("3")).is_err());
    }
}
