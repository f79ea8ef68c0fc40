//! Divergence detection, the server's side: the VERIFY command, the periodic verification
//! (`--verify-interval-ms`), DEBUG DIVERGE and DEBUG DIGEST-CHECK, and the INFO integrity fields.
//! The verification itself is `consensus/verify.rs`; the digest is `tandem_core`'s
//! `keyspace/digest.rs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::Frame;
use tracing::warn;

use super::connection::Conn;
use super::Shared;
use crate::consensus::state_machine::SmState;
use crate::consensus::verify::{VerifyOptions, NODE_WAIT_MAX};
use crate::consensus::Node;

/// `VERIFY [NOREPAIR] [TIMEOUT ms]`: runs one verification on the primary and replies with its
/// report (`field:value` lines, as INFO). TIMEOUT bounds the wait for each member to apply
/// each mark.
pub async fn verify(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let mut opts = VerifyOptions {
        algorithm: conn.shared.runtime.read().checksum_algorithm,
        ..VerifyOptions::default()
    };
    let mut i = 1;
    while i < args.len() {
        let word = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
        match word.as_str() {
            "norepair" => opts.repair = false,
            "timeout" if i + 1 < args.len() => {
                let ms = std::str::from_utf8(&args[i + 1])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|ms| (1..=NODE_WAIT_MAX.as_millis() as u64).contains(ms));
                let Some(ms) = ms else {
                    return Frame::Error(format!(
                        "ERR TIMEOUT must be between 1 and {} milliseconds",
                        NODE_WAIT_MAX.as_millis()
                    ));
                };
                opts.node_wait = Duration::from_millis(ms);
                i += 1;
            }
            _ => return Frame::error("ERR syntax error. Try VERIFY [NOREPAIR] [TIMEOUT ms]"),
        }
        i += 1;
    }
    let node = conn.shared.node.clone();
    if !node.is_primary() {
        return Frame::Error(format!(
            "ERR VERIFY runs on the primary{}",
            primary_hint(&node)
        ));
    }
    match node.verify(&opts).await {
        Ok(report) => Frame::Bulk(Bytes::from(report.render())),
        Err(e) => Frame::Error(format!("ERR verification failed: {e}")),
    }
}

/// ": node N at HOST:PORT" for an error sent to a client of a replica.
fn primary_hint(node: &Node) -> String {
    use openraft::async_runtime::watch::WatchReceiver;
    // Clone out of the watch at once (DESIGN.md, traps).
    let m = node.raft.metrics().borrow_watched().clone();
    m.current_leader
        .and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|a| format!(": node {id} at {}", a.client_addr))
        })
        .unwrap_or_default()
}

/// The periodic verification: every `--verify-interval-ms`, the primary verifies (and repairs)
/// the cluster. Other nodes only wait their turn to be primary.
pub async fn run_periodic(shared: Arc<Shared>) {
    let Some(interval) = shared.config.verify_interval else {
        return;
    };
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let node = shared.node.clone();
        if !node.is_primary() || node.is_unformed_standalone() {
            continue;
        }
        let opts = VerifyOptions {
            algorithm: shared.runtime.read().checksum_algorithm,
            ..VerifyOptions::default()
        };
        // The verification logs its own summary (a warning when anything diverged).
        if let Err(e) = node.verify(&opts).await {
            warn!("periodic verification: {e}");
        }
    }
}

/// `DEBUG DIVERGE key value`: this node only, the key gets another value together with that
/// value's checksum (reads verify it; only divergence detection sees it). 1 if the key existed,
/// 0 if it was created.
pub fn debug_diverge(conn: &mut Conn, key: &[u8], value: &[u8]) -> Frame {
    let algorithm = conn.shared.runtime.read().checksum_algorithm;
    let existed = conn
        .shared
        .node
        .state()
        .write()
        .keyspace
        .debug_diverge(key, value, algorithm);
    warn!(
        key = %tandem_core::keyspace::escape_key(key),
        "DEBUG DIVERGE: this node's copy now differs from the cluster's"
    );
    Frame::Integer(i64::from(existed))
}

/// `DEBUG DIGEST-CHECK`: [applied index, incremental digest, digest recomputed from every key,
/// 1 if every bucket agrees too, keys]. O(n): a check for tests.
pub fn debug_digest_check(conn: &mut Conn) -> Frame {
    let st = conn.shared.node.state().read();
    let digest = st.keyspace.digest();
    Frame::Array(vec![
        Frame::Integer(st.last_applied.map(|l| l.index() as i64).unwrap_or(0)),
        Frame::bulk(digest.to_string()),
        Frame::bulk(st.keyspace.digest_recomputed().to_string()),
        Frame::Integer(i64::from(st.keyspace.digest_is_consistent())),
        Frame::Integer(digest.keys as i64),
    ])
}

/// INFO integrity: this node's keyspace digest tagged with its applied index (from `st`, the
/// state the caller has locked), and the verifications it ran as primary.
pub fn info_fields(node: &Node, st: &SmState) -> Vec<(&'static str, String)> {
    let digest = st.keyspace.digest();
    let index = st.last_applied.map(|l| l.index()).unwrap_or(0);
    let restored = st.keyspace.keys_restored_by_verify();
    let v = &node.verify;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let last = v.last.lock().clone().unwrap_or_default();
    vec![
        ("keyspace_digest", digest.to_string()),
        ("keyspace_digest_keys", digest.keys.to_string()),
        ("keyspace_digest_index", index.to_string()),
        ("divergence_checks", load(&v.checks)),
        ("divergence_found", load(&v.found)),
        ("divergence_keys_found", load(&v.keys_found)),
        ("divergence_keys_repaired", load(&v.keys_repaired)),
        ("divergence_keys_restored_here", restored.to_string()),
        ("last_verify_index", last.index.to_string()),
        (
            "last_verify_result",
            if last.result.is_empty() {
                "none"
            } else {
                last.result
            }
            .to_string(),
        ),
        ("last_verify_duration_ms", last.duration_ms.to_string()),
    ]
}
