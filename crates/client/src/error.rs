//! [`Error`], everything a request can end in, and [`Failure`], the connection layer's more
//! specific answer to "did the request reach the server?", which decides whether a retry is safe.

use std::time::Duration;

use tandem_resp::ProtocolError;

use crate::verify::BadCopy;

/// Why a request failed. Each message says what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No seed (or known node) answered `MEMBERSHIP LIST` with a usable list.
    #[error(
        "no node answered MEMBERSHIP LIST with a usable topology ({tried}); check the addresses \
         and that the nodes are up"
    )]
    Discovery {
        /// Each address asked and what went wrong there.
        tried: String,
    },
    /// The known topology has no primary (an election is under way, or quorum is lost).
    #[error("no primary is known (topology from {source_addr}); writes wait for an election")]
    NoPrimary {
        /// The node whose membership list was used.
        source_addr: String,
    },
    /// A TCP connection could not be made, or broke.
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// The node's `host:port`.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The node closed the connection before the reply was complete.
    #[error("{addr} closed the connection before replying")]
    Closed {
        /// The node's `host:port`.
        addr: String,
    },
    /// A connect, a free connection, or a reply did not come in time.
    #[error("{addr}: no {waiting_for} within {after:?}")]
    Timeout {
        /// The node's `host:port`.
        addr: String,
        /// What was awaited: "connection", "free connection" or "reply".
        waiting_for: &'static str,
        /// How long it was awaited.
        after: Duration,
    },
    /// A write was sent but whether it was executed is not known: the connection broke or timed
    /// out after sending, or the server said so (`-UNKNOWN`, `-TIMEOUT`). The client never
    /// retries such a write itself. Read the key to find out, then retry if needed.
    #[error(
        "outcome of the write on {addr} is unknown ({reason}); it may or may not have been \
         applied: read the key before retrying"
    )]
    OutcomeUnknown {
        /// The primary the write was sent to.
        addr: String,
        /// What broke, or the server's error reply.
        reason: String,
    },
    /// The server answered with an error reply that the client does not handle itself.
    #[error("{addr} replied: {message}")]
    Server {
        /// The node that answered.
        addr: String,
        /// The whole error reply, prefix word included (`WRONGTYPE Operation against ...`).
        message: String,
    },
    /// The reply bytes were not valid RESP, or over the client's
    /// [`reply_limits`](crate::ClientOptions::reply_limits).
    #[error("{addr} sent a malformed reply: {source}")]
    Protocol {
        /// The node that sent it.
        addr: String,
        /// What was wrong with it.
        #[source]
        source: ProtocolError,
    },
    /// The reply was valid RESP but not the shape the command has.
    #[error("{addr} answered {command} with an unexpected reply: {detail}")]
    UnexpectedReply {
        /// The node that sent it.
        addr: String,
        /// The command it answered.
        command: String,
        /// What was expected and what came.
        detail: String,
    },
    /// Retrying after errors that prove the request did not run did not succeed before the
    /// [`retry_deadline`](crate::ClientOptions::retry_deadline).
    #[error(
        "no node could serve the request within {waited:?} of retries; last error: {last}. Check \
         the cluster with ROLE or MEMBERSHIP LIST, or raise retry_deadline"
    )]
    Unavailable {
        /// How long the request was retried.
        waited: Duration,
        /// The error of the last attempt.
        last: Box<Error>,
    },
    /// [`get_verified`](crate::Client::get_verified): every node asked gave a copy that failed
    /// verification (each has been reported to the node that served it).
    #[error(
        "no verified copy of key '{key}': {} node(s) served a bad copy ({})",
        .bad_copies.len(),
        summary(.bad_copies)
    )]
    NoVerifiedCopy {
        /// The key, printable (non-ASCII bytes as `\xNN`).
        key: String,
        /// Every bad copy, in the order they were read.
        bad_copies: Vec<BadCopy>,
    },
    /// The request itself is unusable (no seeds, an empty command).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// True for [`Error::OutcomeUnknown`]: the write may or may not have happened.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// The server's error reply, if the request ended in one (`"WRONGTYPE ..."`).
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Server { message, .. } => Some(message),
            _ => None,
        }
    }
}

fn summary(bad_copies: &[BadCopy]) -> String {
    bad_copies
        .iter()
        .map(|b| format!("node {} at {}: {}", b.node.id, b.node.addr, b.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a request to one node failed, by what it means for retrying it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request never reached the server complete (no connection, or sending failed): it
    /// was not executed, and may be sent anywhere again.
    NotSent(Error),
    /// The request was sent but no complete reply came back: it may have been executed.
    Lost(Error),
    /// Retrying cannot help (the server refused our `AUTH`).
    Fatal(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::NotSent(e) | Failure::Lost(e) | Failure::Fatal(e) => e,
        }
    }
}
