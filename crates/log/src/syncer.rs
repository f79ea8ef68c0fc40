//! The once-a-second fdatasync of policy `EverySec`, on its own thread so that a slow
//! fdatasync never delays the writer (appends are acknowledged after write(2) under this
//! policy). The writer marks each file it wrote to; the syncer syncs the marked files.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often `EverySec` syncs.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// State shared by the writer (marks files) and the syncer thread.
#[derive(Default)]
pub(crate) struct Syncer {
    inner: Mutex<SyncerState>,
    wake: Condvar,
}

#[derive(Default)]
struct SyncerState {
    dirty: Vec<Arc<File>>,
    stop: bool,
    /// The first fdatasync failure; the writer turns it into a poisoned log.
    error: Option<String>,
}

impl Syncer {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncerState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `file` has data written since its last sync.
    pub fn mark_dirty(&self, file: &Arc<File>) {
        let mut st = self.lock();
        if !st.dirty.iter().any(|f| Arc::ptr_eq(f, file)) {
            st.dirty.push(Arc::clone(file));
        }
    }

    /// The first background fdatasync failure, if any.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Asks the thread to stop (it does not sync again: the writer's close syncs).
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// The thread body: every [`SYNC_INTERVAL`], fdatasync the marked files.
    pub fn run(&self, fsyncs: &AtomicU64) {
        let mut st = self.lock();
        loop {
            let (guard, _) = self
                .wake
                .wait_timeout_while(st, SYNC_INTERVAL, |s| !s.stop)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            if st.stop {
                return;
            }
            let files = std::mem::take(&mut st.dirty);
            drop(st);
            for file in files {
                match file.sync_data() {
                    Ok(()) => {
                        fsyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::error!("background fdatasync of the log failed: {e}");
                        let mut st = self.lock();
                        st.error
                            .get_or_insert_with(|| format!("background fdatasync: {e}"));
                    }
                }
            }
            st = self.lock();
        }
    }
}
