//! The active expiry cycle: `hz` times a second, the primary proposes the deletion of keys whose
//! expiry has passed (including those a read found expired), as one log entry, so every copy
//! deletes the same keys. Reads already hide expired keys; this reclaims their memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tandem_core::{Batch, Op};
use tracing::warn;

use super::{now_ms, Shared};

pub async fn run(shared: Arc<Shared>) {
    let period = Duration::from_millis(1000 / shared.config.hz.max(1) as u64);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        if !shared.node.is_primary() {
            continue;
        }
        let now = now_ms();
        let due = shared
            .node
            .state()
            .read()
            .keyspace
            .due_for_expiry(now, shared.config.active_expire_keys_max);
        if due.is_empty() {
            continue;
        }
        let bytes = due.iter().map(|k| k.len()).sum();
        let batch = Batch {
            now_ms: now,
            algorithm: shared.runtime.read().checksum_algorithm,
            ops: vec![Op::ExpireKeys(due)],
        };
        match shared.node.write(batch, bytes).await {
            Ok(written) => {
                let deleted: i64 = written
                    .frames
                    .iter()
                    .map(|f| {
                        if let tandem_core::Frame::Integer(n) = f {
                            *n
                        } else {
                            0
                        }
                    })
                    .sum();
                shared
                    .stats
                    .expired_keys
                    .fetch_add(deleted.max(0) as u64, Ordering::Relaxed);
            }
            Err(e) => warn!("active expiry: {e}"),
        }
    }
}
