//! `DIGEST.REPORT key`: a client tells this node that the copy of `key` it served failed the
//! client's own digest check (a `DIGEST.GET` reply whose bytes do not hash to the digest next to
//! them, or a `-CORRUPT` reply). `tandem-client`'s verified read sends it to every node that gave
//! it a bad copy.
//!
//! The node re-verifies its own stored copy, exactly as `DIGEST.GET` would, logs a warning
//! naming the client and the key, counts the report, and answers `+OK` whatever it found: the
//! report is a hint, and the client has already read a good copy elsewhere.
//!
//! A confirmed report (this node's copy fails its checksum) starts the repair of the key from
//! another member at once, in the background (`consensus/repair.rs`, source `read`); every
//! reported key is also queued for the scrubber to check first. An unconfirmed report (the copy
//! verifies here) points at the path between the node and the client instead: the network, a
//! proxy, or the client itself.
//!
//! `DIGEST.QUARANTINE` lists the keys no member could repair (`consensus/damage.rs`): one
//! `[key, source, reason, seconds in quarantine]` array each, in key order, at most
//! [`QUARANTINE_LIST_MAX`]. A listed key that verifies again (rewritten, deleted) is released
//! as it is listed.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tandem_core::commands::digest::DigestRead;
use tandem_core::keyspace::escape_key;
use tandem_core::{Frame, ReadCmd};
use tracing::warn;

use super::connection::Conn;
use crate::consensus::damage::Source;

/// Counters of the reports received, for INFO integrity. Atomic because every connection task
/// counts into them without a lock.
#[derive(Default)]
pub struct Reports {
    /// Every `DIGEST.REPORT` received.
    pub received: AtomicU64,
    /// Reports for which this node's own copy failed re-verification: the client was right.
    pub confirmed: AtomicU64,
}

/// What this node found when it re-verified its own copy of the reported key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnCopy {
    /// Present and matching its checksum.
    Verified,
    /// Present and failing its checksum (or known stale): the report is confirmed.
    Corrupt,
    /// Absent or expired here now; it may have been deleted since the client read it.
    Absent,
}

impl OwnCopy {
    fn name(self) -> &'static str {
        match self {
            OwnCopy::Verified => "verified",
            OwnCopy::Corrupt => "corrupt",
            OwnCopy::Absent => "absent",
        }
    }
}

/// `DIGEST.REPORT key` (arity checked by the command table).
pub fn report(conn: &Conn, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let own = own_copy(conn, key);
    let reports = &conn.shared.integrity_reports;
    let received = reports.received.fetch_add(1, Ordering::Relaxed) + 1;
    if own == OwnCopy::Corrupt {
        reports.confirmed.fetch_add(1, Ordering::Relaxed);
    }
    let node = conn.shared.node.clone();
    node.damage.suspect(key.clone(), None);
    if own == OwnCopy::Corrupt {
        let key = key.clone();
        tokio::spawn(async move { node.repair_damaged(&[&key], Source::Read).await });
    }
    let client_name = conn.info.meta.lock().name.clone();
    warn!(
        client_id = conn.info.id,
        client_addr = %conn.info.addr,
        client_name = %client_name,
        key = %escape_key(key),
        own_copy = own.name(),
        reports_received = received,
        "a client reports that this node served a copy that failed its digest check"
    );
    Frame::ok()
}

/// Most entries `DIGEST.QUARANTINE` lists.
pub const QUARANTINE_LIST_MAX: usize = 1000;

/// `DIGEST.QUARANTINE` (arity checked by the command table).
pub fn quarantine(conn: &Conn) -> Frame {
    let node = &conn.shared.node;
    let listed = node.damage.quarantined(QUARANTINE_LIST_MAX);
    let mut out = Vec::with_capacity(listed.len());
    for (key, entry) in listed {
        if !node.state().read().keyspace.is_damaged(&key) {
            node.damage.release(&key);
            continue;
        }
        out.push(Frame::Array(vec![
            Frame::Bulk(key),
            Frame::bulk(entry.source.name()),
            Frame::bulk(entry.reason),
            Frame::Integer(entry.since.elapsed().as_secs() as i64),
        ]));
    }
    Frame::Array(out)
}

/// Re-verifies this node's copy of `key` through the same read `DIGEST.GET` does, so a report
/// is judged by exactly the rule that decides what clients are served.
fn own_copy(conn: &Conn, key: &Bytes) -> OwnCopy {
    let read = ReadCmd::Digest(DigestRead::Get(key.clone()));
    let frame = conn
        .shared
        .node
        .state()
        .read()
        .keyspace
        .read(&read, super::now_ms());
    match frame {
        Frame::NullArray | Frame::Null => OwnCopy::Absent,
        Frame::Error(_) => OwnCopy::Corrupt,
        _ => OwnCopy::Verified,
    }
}
