//! What a caller tunes ([`TransportConfig`]) and the fixed limits that bound every size and count
//! the transport accepts from a peer.

use std::fmt;
use std::time::Duration;

/// Default for [`TransportConfig::frame_bytes_max`]: a 64 MiB RPC body (a large batch of log
/// entries or a snapshot chunk) plus 1 MiB of headroom for the envelope around it.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 65 * 1024 * 1024;

/// Smallest accepted [`TransportConfig::frame_bytes_max`]: room for a response carrying an error
/// message. Only tests want frames this small.
pub const FRAME_BYTES_MIN: usize = 1024;

/// Largest accepted [`TransportConfig::frame_bytes_max`]: what the frame's u32 length field can
/// say.
pub const FRAME_BYTES_LIMIT: usize = u32::MAX as usize;

/// Largest frame accepted before a connection is authenticated, whatever `frame_bytes_max` says.
/// Handshake messages are small; this keeps what an unauthenticated stranger can make a node
/// allocate to 64 KiB per connection. It also bounds the application hello bytes.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 64 * 1024;

/// Largest accepted [`TransportConfig::in_flight_max`].
pub const IN_FLIGHT_LIMIT: usize = 1 << 20;

/// Most connections [`crate::serve`] keeps open at once. A cluster needs one per peer node;
/// connections beyond this are closed at once (with a warning) so that a flood of strangers
/// cannot exhaust the node's file descriptors.
pub const SERVER_CONNECTIONS_MAX: usize = 1024;

/// Largest accepted [`TransportConfig::call_attempts_max`].
pub const CALL_ATTEMPTS_LIMIT: u32 = 100;

/// How the transport connects, authenticates, retries and limits, on both sides. Both ends of a
/// cluster should use the same values (a frame larger than the receiver's `frame_bytes_max` closes
/// the connection).
#[derive(Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// The shared cluster secret. Both sides prove they know it (HMAC-SHA256 challenge-response);
    /// it is never sent. Must not be empty; 16 random bytes or more are recommended.
    pub secret: Vec<u8>,
    /// Largest frame payload (the frame's length field) this node sends or accepts, between
    /// [`FRAME_BYTES_MIN`] and [`FRAME_BYTES_LIMIT`]. A peer that announces more is broken or
    /// hostile: the connection is closed. Default [`FRAME_BYTES_MAX_DEFAULT`].
    pub frame_bytes_max: usize,
    /// Longest wait for the TCP connection to a peer (name resolution included). Default 1 s.
    pub connect_timeout: Duration,
    /// Longest the whole handshake may take, on either side, counted once the TCP connection is
    /// up. Default 5 s.
    pub handshake_timeout: Duration,
    /// First wait before reconnecting to a peer after a failed connection attempt; it doubles
    /// with each further failure. Default 10 ms.
    pub backoff_min: Duration,
    /// Longest wait between reconnection attempts. Default 1 s.
    pub backoff_max: Duration,
    /// Most times one call is sent, across reconnections: a call whose connection drops is
    /// re-sent on a new one until it has been sent this many times. Default 3.
    pub call_attempts_max: u32,
    /// A call whose deadline passes without a single frame arriving on its connection closes
    /// that connection as presumed dead — but only if the deadline was at least this long:
    /// short calls (heartbeats) time out on a merely busy peer, and closing the connection would
    /// interrupt every other call on it. Default 1 s.
    pub presume_dead_after: Duration,
    /// Most calls in flight on one connection, on each side: further calls wait for a slot
    /// (client), and the server stops reading requests until a handler finishes. Default 1024.
    pub in_flight_max: usize,
}

impl TransportConfig {
    /// The defaults, with `secret` as the cluster secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> TransportConfig {
        TransportConfig {
            secret: secret.into(),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            call_attempts_max: 3,
            presume_dead_after: Duration::from_secs(1),
            in_flight_max: 1024,
        }
    }

    /// Checks every field is within its limits; the message names the field that is not.
    pub fn validate(&self) -> Result<(), String> {
        if self.secret.is_empty() {
            return Err("secret is empty: set a cluster secret shared by every node".into());
        }
        if !(FRAME_BYTES_MIN..=FRAME_BYTES_LIMIT).contains(&self.frame_bytes_max) {
            return Err(format!(
                "frame_bytes_max is {}; it must be between {FRAME_BYTES_MIN} and {FRAME_BYTES_LIMIT}",
                self.frame_bytes_max
            ));
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("backoff_min", self.backoff_min),
        ] {
            if value.is_zero() {
                return Err(format!("{name} is zero; it must be positive"));
            }
        }
        if self.backoff_max < self.backoff_min {
            return Err(format!(
                "backoff_max ({:?}) is below backoff_min ({:?})",
                self.backoff_max, self.backoff_min
            ));
        }
        if !(1..=CALL_ATTEMPTS_LIMIT).contains(&self.call_attempts_max) {
            return Err(format!(
                "call_attempts_max is {}; it must be between 1 and {CALL_ATTEMPTS_LIMIT}",
                self.call_attempts_max
            ));
        }
        if !(1..=IN_FLIGHT_LIMIT).contains(&self.in_flight_max) {
            return Err(format!(
                "in_flight_max is {}; it must be between 1 and {IN_FLIGHT_LIMIT}",
                self.in_flight_max
            ));
        }
        Ok(())
    }
}

/// Never prints the secret, only its length.
impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("call_attempts_max", &self.call_attempts_max)
            .field("presume_dead_after", &self.presume_dead_after)
            .field("in_flight_max", &self.in_flight_max)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let ok = TransportConfig::new("s3cret");
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(TransportConfig, &str)> = vec![
            (TransportConfig::new(""), "secret"),
            (
                TransportConfig {
                    frame_bytes_max: FRAME_BYTES_MIN - 1,
                    ..ok.clone()
                },
                "frame_bytes_max",
            ),
            (
                TransportConfig {
                    handshake_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "handshake_timeout",
            ),
            (
                TransportConfig {
                    backoff_max: Duration::from_millis(1),
                    ..ok.clone()
                },
                "backoff_max",
            ),
            (
                TransportConfig {
                    call_attempts_max: 0,
                    ..ok.clone()
                },
                "call_attempts_max",
            ),
            (
                TransportConfig {
                    in_flight_max: 0,
                    ..ok.clone()
                },
                "in_flight_max",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let text = format!("{:?}", TransportConfig::new("hunter2-hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<15 bytes>"), "{text}");
    }
}
