//! Linearizable reads on the primary, with concurrent reads sharing one barrier.
//!
//! A read may use a barrier round only if the round *started* after the read arrived: the round
//! proves leadership and fixes the read index at its start. So a read arriving while a round is in
//! flight waits for the next one; every read that arrived meanwhile shares that next round. Under
//! load, one round serves every connection that is waiting, instead of one round per read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

pub type BarrierFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

struct State {
    in_flight: bool,
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

#[derive(Clone)]
pub struct ReadBarrier {
    state: Arc<Mutex<State>>,
    round: BarrierFn,
    /// A round that takes longer fails its readers (a leader cut off from its quorum must not
    /// hang reads forever).
    round_timeout: std::time::Duration,
}

impl ReadBarrier {
    /// `round` runs one barrier (openraft's `ensure_linearizable`).
    pub fn new(round: BarrierFn, round_timeout: std::time::Duration) -> Self {
        ReadBarrier {
            state: Arc::new(Mutex::new(State {
                in_flight: false,
                waiting: Vec::new(),
            })),
            round,
            round_timeout,
        }
    }

    /// Resolves once a barrier round that started after this call has completed.
    pub async fn wait(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.in_flight, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.run_rounds().await });
        }
        rx.await.map_err(|_| "read barrier stopped".to_string())?
    }

    async fn run_rounds(&self) {
        // If this task ends abnormally (a panic in a round), the next reader starts a new one
        // and the readers of the lost round get an error instead of waiting forever.
        struct Reset<'a>(&'a Mutex<State>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.lock().in_flight = false;
            }
        }
        let _reset = Reset(&self.state);
        loop {
            let batch = {
                let mut st = self.state.lock();
                if st.waiting.is_empty() {
                    return;
                }
                std::mem::take(&mut st.waiting)
            };
            let result = match tokio::time::timeout(self.round_timeout, (self.round)()).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "read barrier did not complete within {} ms",
                    self.round_timeout.as_millis()
                )),
            };
            for tx in batch {
                let _ = tx.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Many concurrent readers share few rounds, and no reader is answered by a round that
    /// started before it arrived.
    #[tokio::test]
    async fn concurrent_reads_share_rounds_that_start_after_them() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let r = rounds.clone();
        let barrier = ReadBarrier::new(
            Arc::new(move || {
                let r = r.clone();
                Box::pin(async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(())
                })
            }),
            Duration::from_secs(5),
        );
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let b = barrier.clone();
            let r = rounds.clone();
            tasks.push(tokio::spawn(async move {
                let before = r.load(Ordering::SeqCst);
                b.wait().await.unwrap();
                // The round that answered us started after we arrived.
                assert!(r.load(Ordering::SeqCst) > before);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = rounds.load(Ordering::SeqCst);
        assert!(
            n <= 3,
            "100 concurrent readers should share rounds, took {n}"
        );
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_readers() {
        let barrier = ReadBarrier::new(
            Arc::new(|| Box::pin(async { Err("not leader".to_string()) })),
            Duration::from_secs(5),
        );
        assert_eq!(barrier.wait().await, Err("not leader".to_string()));
    }

    /// A round that never completes fails its readers after the deadline, and the barrier
    /// keeps working for later readers.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_round_fails_its_readers_after_the_deadline() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let barrier = ReadBarrier::new(
            Arc::new(move || {
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    if first {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                })
            }),
            Duration::from_millis(500),
        );
        let err = barrier.wait().await.unwrap_err();
        assert!(err.contains("500 ms"), "{err}");
        assert_eq!(barrier.wait().await, Ok(()));
    }
}
