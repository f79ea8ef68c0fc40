//! [`ClientOptions`] and [`ReadPolicy`]: every knob of the client, each with a named default.

use std::fmt;
use std::time::Duration;

use tandem_resp::Limits;

/// Longest wait for a TCP connection to a node. Loopback and LAN connects take well under a
/// millisecond; a node that does not accept within a second is treated as down for this attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for one reply. Longer than the server's own write deadline
/// (`--write-timeout-ms`, 10 s by default), so that a primary cut off from its quorum answers
/// with its `-TIMEOUT` error before the client gives up on the connection.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a request keeps being retried after errors that prove it was not executed (a
/// replica's `-READONLY`, a refused connection, no primary yet). A failover takes about a second
/// with the server's default election timeout; five leave room for a slow election.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(5);

/// Most connections open at once to one node. Requests beyond that wait for a free connection
/// (within the request timeout), so one client cannot exhaust a node's `maxclients`.
pub const DEFAULT_MAX_CONNECTIONS_PER_NODE: usize = 8;

/// How old the known topology may get before a request refreshes it first, even if nothing
/// failed: this is how a client learns about replicas added to the cluster.
pub const DEFAULT_TOPOLOGY_REFRESH_INTERVAL: Option<Duration> = Some(Duration::from_secs(30));

/// Where reads go. Writes always go to the primary.
///
/// "Replicas" are every node but the primary: voters and read replicas alike, taken in node id
/// order. A replica serves reads only while it is within the cluster's `replica-max-lag-ms` of
/// the primary, so a replica read may be that old; reads on the primary are linearizable.
///
/// ```
/// use tandem_client::{ClientOptions, ReadPolicy};
///
/// // Spread reads over every replica in turn, falling back to the primary when none answers.
/// let options = ClientOptions {
///     read_policy: ReadPolicy::RoundRobin,
///     ..ClientOptions::default()
/// };
/// assert_eq!(options.read_policy, ReadPolicy::RoundRobin);
/// assert_eq!(ReadPolicy::default(), ReadPolicy::Primary);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// Every read on the primary: linearizable, and no read scaling. Plain reads never fall back
    /// to a replica; a verified read does only when the primary's copy fails verification.
    #[default]
    Primary,
    /// Reads on one replica, picked at random when the client is created and kept while it
    /// answers (so successive reads come from one replica's log prefix and never go back in
    /// time while it stays up); then the other replicas, then the primary.
    AnyReplica,
    /// Each read on the next replica in turn, so the load spreads evenly; on a failure the
    /// following replicas, then the primary.
    RoundRobin,
}

/// How a [`Client`](crate::Client) connects, times out and retries.
///
/// Build one from the defaults and change what you need:
///
/// ```
/// use std::time::Duration;
/// use tandem_client::{ClientOptions, ReadPolicy};
///
/// let options = ClientOptions {
///     read_policy: ReadPolicy::AnyReplica,
///     retry_deadline: Duration::from_secs(10),
///     ..ClientOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    /// Where reads go. Default [`ReadPolicy::Primary`].
    pub read_policy: ReadPolicy,
    /// Longest wait for a TCP connection. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Longest wait for one reply (and for a free connection to the node). Default
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// How long to keep retrying a request that provably did not run, across topology
    /// refreshes. Zero means a single attempt. Default [`DEFAULT_RETRY_DEADLINE`].
    pub retry_deadline: Duration,
    /// Most connections open at once to one node; at least 1. Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_NODE`].
    pub max_connections_per_node: usize,
    /// Refresh the topology before a request once it is this old; `None` refreshes only after
    /// errors. Default [`DEFAULT_TOPOLOGY_REFRESH_INTERVAL`].
    pub topology_refresh_interval: Option<Duration>,
    /// Sent with `AUTH` on every new connection when the nodes run with `--requirepass`.
    /// Default none.
    pub password: Option<String>,
    /// Sent with `CLIENT SETNAME` on every new connection, so the nodes' logs (for instance
    /// their warnings about reported bad copies) and `CLIENT LIST` name this client. Default
    /// none.
    pub client_name: Option<String>,
    /// Largest reply accepted (bulk length, array length, nesting). A reply over a limit is an
    /// [`Error::Protocol`](crate::Error::Protocol). Default: the RESP crate's defaults (512 MiB
    /// strings, as Redis's `proto-max-bulk-len`).
    pub reply_limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            read_policy: ReadPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            max_connections_per_node: DEFAULT_MAX_CONNECTIONS_PER_NODE,
            topology_refresh_interval: DEFAULT_TOPOLOGY_REFRESH_INTERVAL,
            password: None,
            client_name: None,
            reply_limits: Limits::default(),
        }
    }
}

/// Written by hand so that the password never reaches a log.
impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("read_policy", &self.read_policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_deadline", &self.retry_deadline)
            .field("max_connections_per_node", &self.max_connections_per_node)
            .field("topology_refresh_interval", &self.topology_refresh_interval)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name)
            .field("reply_limits", &self.reply_limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let options = ClientOptions {
            password: Some("hunter2".into()),
            ..ClientOptions::default()
        };
        let text = format!("{options:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
