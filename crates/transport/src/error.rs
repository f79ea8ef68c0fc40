//! [`CallError`]: how a call to a peer can fail.

/// Why [`crate::Peer::call`] returned no reply. Only `Remote` means the handler ran and failed;
/// after `Timeout` or `Unreachable` the call may or may not have run on the peer (possibly more
/// than once, see [`crate::Peer::call`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No working connection to the peer within the deadline, or the connection kept dropping
    /// (`call_attempts_max` sends used up). The text says what went wrong last.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The call was on a connection but no reply came within the deadline.
    #[error("no reply from the peer within the call's deadline")]
    Timeout,
    /// The handshake was refused, by the peer or by this node (wrong cluster secret, protocol
    /// version or application hello). Not retried: the text says which check failed.
    #[error("connection refused in the handshake: {0}")]
    Refused(String),
    /// The peer's handler returned an error; the text is its message.
    #[error("the peer's handler failed: {0}")]
    Remote(String),
    /// The request does not fit in a frame of `frame_bytes_max` bytes; it was not sent.
    #[error("request body of {body_bytes} bytes does not fit in a frame (frame_bytes_max is {frame_bytes_max})")]
    TooLarge {
        body_bytes: usize,
        frame_bytes_max: usize,
    },
}
