//! The write combiner: many clients' writes become one log entry.
//!
//! Each log entry costs the same fixed work whatever it holds — a trip through openraft's core,
//! a log record, a group-commit turn, an apply under the keyspace lock, and the wake-ups between
//! the tasks and threads doing them. With one entry per client write, that fixed cost, not the
//! writes, bounds throughput. So writes queue here, and one proposer task turns everything queued
//! into one entry (a `Batch` whose ops are the requests' ops, in queue order), while at most
//! `in_flight_max` entries are in flight. While those commit, new writes pile up and the next
//! entry is bigger: the same self-tuning as group commit in the log.
//!
//! To ensure correctness:
//! - A request's ops stay together and in order, and a connection has one request outstanding
//!   at a time, so each connection's writes are applied in the order it sent them.
//! - Merging changes no result: ops are applied one after the other either way; a merged entry
//!   is applied atomically, which only removes interleavings. Each request gets exactly the
//!   replies of its own ops.
//! - Requests with different checksum algorithms (the setting changed meanwhile) are never
//!   merged: the entry's algorithm must be the one each request was parsed with.
//! - The entry's `now_ms` is the latest of its requests': applying a write a little later than it
//!   was parsed is what a slower path would do anyway; expiries were made absolute at parse.

use std::sync::Arc;

use tandem_core::{Batch, Frame};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::node::{WriteError, Written};

/// One client request: a pipeline's writes, or a transaction.
struct Request {
    batch: Batch,
    bytes: usize,
    reply: oneshot::Sender<Result<Written, WriteError>>,
}

/// Limits of one combined entry.
#[derive(Clone, Copy, Debug)]
pub struct CombinerLimits {
    /// Most ops in one entry (a single request larger than this still goes alone).
    pub ops_max: usize,
    /// Most bytes of arguments in one entry (likewise).
    pub bytes_max: usize,
    /// Most entries proposed and not yet applied.
    pub in_flight_max: usize,
}

#[derive(Clone)]
pub struct Combiner {
    tx: mpsc::UnboundedSender<Request>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Proposes one batch to consensus in two steps (`Node::propose`): the outer future hands the
/// entry to openraft — awaited by the proposer, so entries enter the log in the order they were
/// formed — and yields the inner future, which resolves with the replies once it is applied.
pub type ProposeFn =
    Arc<dyn Fn(Batch) -> BoxFuture<BoxFuture<Result<Written, WriteError>>> + Send + Sync>;

impl Combiner {
    pub fn start(limits: CombinerLimits, propose: ProposeFn) -> Combiner {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, limits, propose));
        Combiner { tx }
    }

    /// Queues a request (`bytes`: its size in argument bytes) and returns its replies, one per
    /// op, once the entry holding it is applied.
    pub async fn write(&self, batch: Batch, bytes: usize) -> Result<Written, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                batch,
                bytes,
                reply,
            })
            .map_err(|_| WriteError::NotAccepted("the node is shutting down".into()))?;
        rx.await.map_err(|_| {
            WriteError::OutcomeUnknown("the proposer stopped before answering".into())
        })?
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Request>, limits: CombinerLimits, propose: ProposeFn) {
    let slots = Arc::new(Semaphore::new(limits.in_flight_max.max(1)));
    // A request taken from the queue that did not fit the previous entry.
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        // Waiting for a slot is what lets the next entry grow.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let algorithm = first.batch.algorithm;
        let mut now_ms = first.batch.now_ms;
        let mut ops_total = first.batch.ops.len();
        let mut bytes_total = first.bytes;
        let mut requests = vec![first];
        while ops_total < limits.ops_max && bytes_total < limits.bytes_max {
            let Ok(next) = rx.try_recv() else { break };
            let fits = next.batch.algorithm == algorithm
                && ops_total + next.batch.ops.len() <= limits.ops_max
                && bytes_total + next.bytes <= limits.bytes_max;
            if !fits {
                carried = Some(next);
                break;
            }
            now_ms = now_ms.max(next.batch.now_ms);
            ops_total += next.batch.ops.len();
            bytes_total += next.bytes;
            requests.push(next);
        }
        let mut ops = Vec::with_capacity(ops_total);
        let mut counts = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for r in requests {
            counts.push(r.batch.ops.len());
            ops.extend(r.batch.ops);
            replies.push(r.reply);
        }
        let applied = propose(Batch {
            now_ms,
            algorithm,
            ops,
        })
        .await;
        tokio::spawn(async move {
            let result = applied.await;
            drop(slot);
            match result {
                Ok(written) => {
                    let index = written.index;
                    let mut frames = written.frames.into_iter();
                    for (reply, n) in replies.into_iter().zip(counts) {
                        let mine: Vec<Frame> = frames.by_ref().take(n).collect();
                        let _ = reply.send(Ok(Written {
                            index,
                            frames: mine,
                        }));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use tandem_checksum::Algorithm;
    use tandem_core::Op;

    use super::*;

    fn expire_op(key: &str) -> Op {
        Op::ExpireKeys(vec![Bytes::copy_from_slice(key.as_bytes())])
    }

    /// A stand-in for consensus: answers each op with its key, after a delay, and counts entries.
    fn echo_propose(entries: Arc<AtomicUsize>) -> ProposeFn {
        Arc::new(move |batch: Batch| {
            let entries = entries.clone();
            entries.fetch_add(1, Ordering::SeqCst);
            let applied: BoxFuture<Result<Written, WriteError>> = Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(Written {
                    index: 1,
                    frames: batch
                        .ops
                        .iter()
                        .map(|op| match op {
                            Op::ExpireKeys(k) => Frame::Bulk(k[0].clone()),
                            _ => Frame::Null,
                        })
                        .collect(),
                })
            });
            Box::pin(std::future::ready(applied))
        })
    }

    fn batch(keys: &[String], algorithm: Algorithm) -> Batch {
        Batch {
            now_ms: 1,
            algorithm,
            ops: keys.iter().map(|k| expire_op(k)).collect(),
        }
    }

    /// Concurrent requests are merged into few entries, and each gets exactly its own replies,
    /// in its own order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_entries_and_get_their_own_replies() {
        let entries = Arc::new(AtomicUsize::new(0));
        let limits = CombinerLimits {
            ops_max: 1000,
            bytes_max: 1 << 20,
            in_flight_max: 1,
        };
        let c = Combiner::start(limits, echo_propose(entries.clone()));
        let mut tasks = Vec::new();
        for client in 0..50 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..10 {
                    let keys: Vec<String> =
                        (0..3).map(|i| format!("c{client}-r{round}-{i}")).collect();
                    let frames = c
                        .write(batch(&keys, Algorithm::Sha256), 10)
                        .await
                        .unwrap()
                        .frames;
                    let want: Vec<Frame> = keys
                        .iter()
                        .map(|k| Frame::Bulk(Bytes::from(k.clone())))
                        .collect();
                    assert_eq!(frames, want);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = entries.load(Ordering::SeqCst);
        assert!(n < 500 / 2, "500 requests should share entries, took {n}");
    }

    /// Limits: an entry never exceeds the op or byte budget unless one request alone does, and
    /// requests with different algorithms are never merged.
    #[tokio::test]
    async fn entries_respect_limits_and_algorithms() {
        let seen: Arc<parking_lot::Mutex<Vec<(usize, Algorithm)>>> = Arc::default();
        let s = seen.clone();
        let propose: ProposeFn = Arc::new(move |b: Batch| {
            s.lock().push((b.ops.len(), b.algorithm));
            let n = b.ops.len();
            let applied: BoxFuture<Result<Written, WriteError>> = Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Written {
                    index: 1,
                    frames: vec![Frame::Null; n],
                })
            });
            Box::pin(std::future::ready(applied))
        });
        let limits = CombinerLimits {
            ops_max: 4,
            bytes_max: 1 << 20,
            in_flight_max: 1,
        };
        let c = Combiner::start(limits, propose);
        let mut tasks = Vec::new();
        for i in 0..12 {
            let c = c.clone();
            let algorithm = if i % 2 == 0 {
                Algorithm::Sha256
            } else {
                Algorithm::Blake3
            };
            tasks.push(tokio::spawn(async move {
                c.write(batch(&["a".into(), "b".into()], algorithm), 1)
                    .await
                    .unwrap()
            }));
        }
        let big = c.clone();
        tasks.push(tokio::spawn(async move {
            let keys: Vec<String> = (0..9).map(|i| i.to_string()).collect();
            big.write(batch(&keys, Algorithm::Sha256), 1).await.unwrap()
        }));
        for t in tasks {
            t.await.unwrap();
        }
        for (n, _) in seen.lock().iter() {
            assert!(*n <= 4 || *n == 9, "entry of {n} ops");
        }
        let total: usize = seen.lock().iter().map(|(n, _)| n).sum();
        assert_eq!(total, 12 * 2 + 9);
    }

    #[tokio::test]
    async fn a_failed_entry_fails_every_request_in_it() {
        let propose: ProposeFn = Arc::new(|_b: Batch| {
            let applied: BoxFuture<Result<Written, WriteError>> =
                Box::pin(async { Err(WriteError::Timeout(7)) });
            Box::pin(std::future::ready(applied))
        });
        let limits = CombinerLimits {
            ops_max: 100,
            bytes_max: 100,
            in_flight_max: 1,
        };
        let c = Combiner::start(limits, propose);
        let r = c.write(batch(&["k".into()], Algorithm::Sha256), 1).await;
        assert!(matches!(r, Err(WriteError::Timeout(7))));
    }
}
