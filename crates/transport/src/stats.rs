//! Counters ([`TransportStats`]) shared by a node's server and all its peers, for metrics and
//! tests. Each is a relaxed atomic: counts, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters. Share one `Arc<TransportStats>` between [`crate::serve`] and every
/// [`crate::Peer`] of a node to get the node's totals; read them with [`TransportStats::snapshot`].
#[derive(Debug, Default)]
pub struct TransportStats {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) crc_failures: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) calls_timed_out: AtomicU64,
}

/// The counters at one moment. Every count is since the [`TransportStats`] was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransportStatsSnapshot {
    /// Frames written, handshake frames included.
    pub frames_sent: u64,
    /// Frames read whose CRC matched.
    pub frames_received: u64,
    /// Bytes of frames written, headers included.
    pub bytes_sent: u64,
    /// Bytes of frames read whose CRC matched, headers included.
    pub bytes_received: u64,
    /// Frames whose payload did not match its CRC32C; each closed its connection.
    pub crc_failures: u64,
    /// Handshakes this node refused (it sent `Refused`): wrong secret, protocol version or
    /// application hello.
    pub refusals: u64,
    /// Connections that completed the handshake, made (client side) or accepted (server side).
    pub connects: u64,
    /// Connection attempts that did not end in a usable connection: TCP connect errors and
    /// timeouts, failed handshakes and refusals either way.
    pub connect_failures: u64,
    /// Calls sent again on a new connection after theirs dropped.
    pub retries: u64,
    /// Calls that were sent (or waiting for a slot on a connection) when their deadline passed.
    pub calls_timed_out: u64,
}

impl TransportStats {
    /// Counters at zero.
    pub fn new() -> TransportStats {
        TransportStats::default()
    }

    /// The counters now. They are read one by one, so a snapshot taken while traffic flows may
    /// mix slightly different instants.
    pub fn snapshot(&self) -> TransportStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStatsSnapshot {
            frames_sent: get(&self.frames_sent),
            frames_received: get(&self.frames_received),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            crc_failures: get(&self.crc_failures),
            refusals: get(&self.refusals),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            retries: get(&self.retries),
            calls_timed_out: get(&self.calls_timed_out),
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
