//! openraft's `RaftLogStorage` over Tandem's segmented log.
//!
//! Each openraft entry is serialized with postcard into one log record. The vote lives in the
//! log's meta file (fsynced before `save_vote` returns); the committed log id is a marker record in
//! the log stream, durable with the group-commit flush it joins (see `save_committed`).
//!
//! To ensure correctness:
//! - `append` reports completion only through the log's `done` callback, which runs after the
//!   records are fsynced (`--appendfsync always`), so openraft never counts an entry as
//!   persisted before it is.
//! - `purge` never deletes log that the *previous* snapshot needs: if the newest snapshot turns out
//!   damaged at start-up, the node falls back to the previous one and replays the log from there
//!   (see [`PurgeFloor`]).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use parking_lot::Mutex;
use tandem_log::Log;
use tracing::warn;

use super::types::{Entry, LogId, TypeConfig, Vote};

/// The highest log index the log store may physically delete: the last index covered by the
/// older of the two snapshots kept on disk. Maintained by the state machine.
#[derive(Clone, Default)]
pub struct PurgeFloor(Arc<AtomicU64>);

impl PurgeFloor {
    pub fn set(&self, index: u64) {
        self.0.store(index, Ordering::Release);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// What the log store remembers in memory between calls.
#[derive(Default)]
struct Cached {
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// `committed` changed since it was last written to the log.
    committed_unwritten: bool,
    last_purged: Option<LogId>,
    last_log_id: Option<LogId>,
}

#[derive(Clone)]
pub struct LogStore {
    log: Arc<Log>,
    cached: Arc<Mutex<Cached>>,
    purge_floor: PurgeFloor,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log: cannot decode {what}: {e}"),
        )
    })
}

fn encode<T: serde::Serialize>(value: &T) -> io::Result<Bytes> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|e| io::Error::other(format!("log: cannot encode: {e}")))
}

impl LogStore {
    /// Wraps an opened log. `report` is what `Log::open` found on disk.
    pub fn new(
        log: Arc<Log>,
        report: &tandem_log::OpenReport,
        purge_floor: PurgeFloor,
    ) -> io::Result<Self> {
        let mut cached = Cached {
            vote: report
                .vote
                .as_deref()
                .map(|b| decode("vote", b))
                .transpose()?,
            committed: report
                .committed
                .as_deref()
                .map(|b| decode("committed log id", b))
                .transpose()?,
            committed_unwritten: false,
            last_purged: report
                .purged
                .as_deref()
                .map(|b| decode("purged log id", b))
                .transpose()?,
            last_log_id: None,
        };
        if let Some(last) = log.last_index() {
            let entries = log.read(last..last + 1)?;
            let (_, bytes) = entries
                .first()
                .ok_or_else(|| io::Error::other(format!("log: last entry {last} is unreadable")))?;
            let entry: Entry = decode("entry", bytes)?;
            cached.last_log_id = Some(entry.log_id());
        }
        Ok(LogStore {
            log,
            cached: Arc::new(Mutex::new(cached)),
            purge_floor,
        })
    }

    /// Makes the log agree with the snapshot the state machine loaded (ending at
    /// `snapshot_last`), before openraft reads the log state:
    ///
    /// - the purge marker may be ahead of it (the newest snapshot was damaged and an older one was
    ///   loaded): lower the logical purge point so openraft replays the log after the older
    ///   snapshot; `StateMachine::open` checked the log still holds those entries;
    /// - the log may end before it: under `--appendfsync everysec|no`, a crash can lose the
    ///   unsynced tail of the log while the (fsynced) snapshot covers it. The snapshot holds
    ///   everything those entries did, so the log is purged up to the snapshot and continues
    ///   right after it;
    /// - the committed marker cannot be ahead of what exists.
    pub fn reconcile_with_snapshot(&mut self, snapshot_last: Option<LogId>) -> io::Result<()> {
        let mut c = self.cached.lock();
        if c.last_purged.map(|l| l.index()) > snapshot_last.map(|l| l.index()) {
            warn!(
                "log purge marker {:?} is ahead of the loaded snapshot {:?}: replaying the log from the snapshot",
                c.last_purged, snapshot_last
            );
            c.last_purged = snapshot_last;
        }
        if let Some(snap) = snapshot_last {
            if c.last_log_id.map(|l| l.index()) < Some(snap.index()) {
                warn!(
                    "the log ends at {:?}, before the loaded snapshot {snap:?} (an unsynced tail was lost): the log \
                     continues after the snapshot",
                    c.last_log_id
                );
                self.log.purge_upto(snap.index(), encode(&snap)?)?;
                c.last_purged = Some(snap);
                c.last_log_id = Some(snap);
            }
        }
        let top = c.last_log_id.max(c.last_purged);
        if c.committed > top {
            c.committed = top;
        }
        Ok(())
    }
}

fn range_to_std<RB: RangeBounds<u64>>(range: &RB) -> std::ops::Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let mut r = range_to_std(&range);
        if let Some(last) = self.log.last_index() {
            r.end = r.end.min(last + 1);
        }
        if r.start >= r.end {
            return Ok(Vec::new());
        }
        let records = self.log.read(r)?;
        records.iter().map(|(_, b)| decode("entry", b)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.cached.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let c = self.cached.lock();
        Ok(LogState {
            last_purged_log_id: c.last_purged,
            last_log_id: c.last_log_id.max(c.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = encode(vote)?;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.save_vote(bytes))
            .await
            .map_err(io::Error::other)??;
        self.cached.lock().vote = Some(*vote);
        Ok(())
    }

    /// Notes the committed log id; it is written to the log stream just before the next
    /// appended entries, in the same group commit (see `append`).
    ///
    /// openraft awaits this inline in its core loop, between "flushed" and "apply". Writing the
    /// marker here — and even more, waiting for its fsync — would add a log-writer round trip
    /// (measured: about 60 µs per write) or a second fsync to every commit round. Riding with the
    /// next entries makes it durable with their fsync at no extra cost. A crash before that
    /// leaves an older committed marker on disk, which is safe: no read is served after a restart
    /// before `wait_for_recovery` has seen the cluster commit cover the whole local log and the
    /// state machine apply it (see node.rs), so a restarted node never serves data older than it
    /// served before.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if let Some(committed) = committed {
            let mut c = self.cached.lock();
            c.committed = Some(committed);
            c.committed_unwritten = true;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.cached.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut last = None;
        for entry in entries {
            let log_id = entry.log_id();
            records.push((log_id.index(), encode(&entry)?));
            last = Some(log_id);
        }
        if records.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let marker = {
            let mut c = self.cached.lock();
            c.last_log_id = last;
            let unwritten = std::mem::take(&mut c.committed_unwritten);
            c.committed.filter(|_| unwritten)
        };
        if let Some(committed) = marker {
            self.log.save_committed(
                encode(&committed)?,
                Box::new(|r| {
                    if let Err(e) = r {
                        tracing::error!("log: cannot write the committed marker: {e}");
                    }
                }),
            );
        }
        self.log
            .append(records, Box::new(move |r| callback.io_completed(r)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let log = self.log.clone();
        let keep = last_log_id.map(|l| l.index());
        tokio::task::spawn_blocking(move || log.truncate_after(keep))
            .await
            .map_err(io::Error::other)??;
        let mut c = self.cached.lock();
        c.last_log_id = last_log_id.or(c.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Physically keep what the previous snapshot needs; logically everything up to `log_id` is
        // gone for openraft. A purge beyond the end of the log (after a snapshot was installed
        // past it) empties it, so the next append continues after `log_id`.
        let reaches_end = self
            .log
            .last_index()
            .is_none_or(|last| log_id.index() > last);
        let physical = if reaches_end {
            log_id.index()
        } else {
            log_id.index().min(self.purge_floor.get())
        };
        if physical > 0 {
            let log = self.log.clone();
            let marker = encode(&log_id)?;
            tokio::task::spawn_blocking(move || log.purge_upto(physical, marker))
                .await
                .map_err(io::Error::other)??;
        }
        let mut c = self.cached.lock();
        c.last_purged = Some(log_id);
        if c.last_log_id.map(|l| l.index()) < Some(log_id.index()) {
            c.last_log_id = Some(log_id);
        }
        Ok(())
    }
}
