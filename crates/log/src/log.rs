//! [`Log`], the handle callers hold: it checks and queues requests for the writer thread,
//! keeps the logical view up to date, and serves reads from the cache or with `pread`.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::config::{LogConfig, OPAQUE_BYTES_MAX, PAYLOAD_BYTES_MAX};
use crate::error::{LogError, TruncatedTail};
use crate::record::{decode_record, encoded_len, KIND_ENTRY};
use crate::state::State;
use crate::syncer::Syncer;
use crate::writer::Op;

/// What [`Log::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// First entry present (above the purge point), `None` when the log holds no entry.
    pub first_index: Option<u64>,
    /// Last entry present.
    pub last_index: Option<u64>,
    /// What was cut from the end: a torn final record, or damage dropped because of
    /// `force_truncate_corrupt`. `None` when the log was intact.
    pub truncated_tail: Option<TruncatedTail>,
    /// The last vote saved with [`Log::save_vote`].
    pub vote: Option<Bytes>,
    /// The latest committed marker that was durable ([`Log::save_committed`]).
    pub committed: Option<Bytes>,
    /// The bytes given to the last [`Log::purge_upto`].
    pub purged: Option<Bytes>,
    /// The index given to the last [`Log::purge_upto`].
    pub purged_index: Option<u64>,
    /// Segment files in use.
    pub segments: usize,
}

/// Counters for `INFO persistence` and benchmarks. A snapshot; see [`Log::stats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStats {
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Segment files in use.
    pub segments: usize,
    /// Bytes the segment files occupy (preallocated size).
    pub disk_bytes: u64,
    /// Bytes of headers and records in the segment files.
    pub used_bytes: u64,
    /// Entries written since open.
    pub entries_written: u64,
    /// Records written since open: entries and committed markers.
    pub records_written: u64,
    /// Record bytes written since open.
    pub written_bytes: u64,
    /// Group commits that wrote something (one write each).
    pub batches_written: u64,
    /// fdatasyncs that made records durable: one per group under `Always`, one per second
    /// under `EverySec`, plus one per segment roll and at close.
    pub fsyncs: u64,
    /// Other fsyncs: directories, new segment files, the meta file, truncation.
    pub fsyncs_other: u64,
    /// Entries and payload bytes held in the read cache.
    pub cache_entries: usize,
    pub cache_bytes: usize,
}

impl LogStats {
    /// Average entries made durable per data fsync (0 when there was none).
    pub fn entries_per_fsync(&self) -> f64 {
        ratio(self.entries_written, self.fsyncs)
    }

    /// Average entries per group commit (0 when there was none).
    pub fn entries_per_batch(&self) -> f64 {
        ratio(self.entries_written, self.batches_written)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Counters updated by the writer and syncer threads.
#[derive(Default)]
pub(crate) struct Counters {
    pub fsyncs: AtomicU64,
    pub fsyncs_other: AtomicU64,
    pub entries_written: AtomicU64,
    pub records_written: AtomicU64,
    pub written_bytes: AtomicU64,
    pub batches: AtomicU64,
}

/// What the handle, the writer and the syncer share.
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub cfg: LogConfig,
    pub state: Mutex<State>,
    pub counters: Counters,
    pub syncer: Syncer,
    /// Set by the writer when it is poisoned by an I/O error: the logical view may then hold
    /// entries that never reached the disk, so appends and reads are refused from then on.
    pub failed: AtomicBool,
    /// Held open for the log's lifetime: its flock keeps other processes out.
    pub _lock_file: File,
}

impl Inner {
    /// Locks the state; a panic elsewhere while holding it does not make it unusable, because
    /// every update to it is completed before anything that could panic.
    pub fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tandem's durable log: opaque payloads stored by index in segment files, written by one
/// thread with group commit. `Send + Sync`: share it behind an `Arc`.
///
/// Every request goes through one queue to the writer thread, so requests take effect in the
/// order they were submitted; appends, committed markers, truncation, purge and vote included.
pub struct Log {
    inner: Arc<Inner>,
    /// The queue to the writer. Its mutex is the *submit lock*: holding it while both updating
    /// the logical view and queueing keeps the queue order equal to the logical order. It is
    /// never held by the writer, so a full queue cannot deadlock against it.
    tx: Mutex<SyncSender<Op>>,
    writer: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.inner.dir).finish()
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the log writer thread has stopped",
    )
}

fn failed_error() -> io::Error {
    io::Error::other("the log failed an earlier write or fsync and refuses further use; reopen it")
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Log {
    /// Opens or creates the log in `dir` (created if missing) and starts its writer thread.
    ///
    /// Every segment is read and every record's CRC32C verified. Then:
    /// - A torn final record — a damaged record in the last segment after which no valid record
    ///   follows, as a crash in the middle of a write leaves — is cut off, reported in
    ///   [`OpenReport::truncated_tail`] and logged with `tracing::warn`. It was never
    ///   acknowledged (its `done` had not run), so nothing acknowledged is lost.
    /// - Any other damage fails with [`LogError::Corrupt`] naming the file and byte offset,
    ///   unless `cfg.force_truncate_corrupt`, in which case the log is cut at that record
    ///   (later segments deleted) and the cut is reported.
    ///
    /// One process at a time: the directory is locked (`log.lock`) until the log is closed.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(Log, OpenReport), LogError> {
        let recovered = crate::recovery::recover(dir, &cfg)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            cfg,
            state: Mutex::new(recovered.state),
            counters: Counters::default(),
            syncer: Syncer::default(),
            failed: AtomicBool::new(false),
            _lock_file: recovered.lock_file,
        });
        let (tx, rx) = sync_channel(crate::config::QUEUE_OPS_MAX);
        let writer = crate::writer::Writer::new(Arc::clone(&inner), recovered.writer);
        let writer = std::thread::Builder::new()
            .name("tandem-log-writer".to_string())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io(dir, e))?;
        let syncer = if inner.cfg.fsync == crate::FsyncPolicy::EverySec {
            let inner2 = Arc::clone(&inner);
            let handle = std::thread::Builder::new()
                .name("tandem-log-fsync".to_string())
                .spawn(move || inner2.syncer.run(&inner2.counters.fsyncs))
                .map_err(|e| LogError::io(dir, e))?;
            Some(handle)
        } else {
            None
        };
        let log = Log {
            inner,
            tx: Mutex::new(tx),
            writer: Some(writer),
            syncer,
        };
        Ok((log, recovered.report))
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn submit_lock(&self) -> MutexGuard<'_, SyncSender<Op>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(tx: &SyncSender<Op>, op: Op) {
        if let Err(std::sync::mpsc::SendError(op)) = tx.send(op) {
            op.fail(closed_error());
        }
    }

    /// Queues a barrier request and waits for the writer's answer.
    fn request(&self, op: impl FnOnce(SyncSender<io::Result<()>>) -> Op) -> io::Result<()> {
        let (reply, answer) = sync_channel(1);
        Self::send(&self.submit_lock(), op(reply));
        answer.recv().unwrap_or_else(|_| Err(closed_error()))
    }

    /// Appends entries, given as `(index, payload)`.
    ///
    /// ### To ensure correctness
    /// - Indexes must be contiguous and continue the log: the first is `last_index + 1`, or,
    ///   when the log holds no entry, any index above the purge point. Otherwise, or if a
    ///   payload exceeds [`PAYLOAD_BYTES_MAX`], nothing is appended and `done` gets an
    ///   `InvalidInput` error.
    /// - The entries are readable with [`Log::read`] as soon as this returns, before they are
    ///   durable, as openraft requires.
    /// - `done` is called exactly once, from the writer thread, when the entries are durable:
    ///   after fdatasync under `Always`, after write(2) under `EverySec` and `No`. An I/O error
    ///   is passed to `done`, and leaves the log refusing all later writes until reopened.
    /// - `done` runs on the writer thread: it must be quick (e.g. send on a channel) and must
    ///   not call `save_vote`, `truncate_after`, `purge_upto` or `close`, which would wait for
    ///   the writer thread itself.
    ///
    /// Blocks only when [`crate::config::QUEUE_OPS_MAX`] requests are already queued.
    pub fn append(&self, entries: Vec<(u64, Bytes)>, done: Box<dyn FnOnce(io::Result<()>) + Send>) {
        let tx = self.submit_lock();
        let op = {
            let mut st = self.inner.lock_state();
            let checked = if self.inner.failed.load(Ordering::Acquire) {
                Err(failed_error())
            } else {
                check_append(&st, &entries)
            };
            match checked {
                Err(error) => Op::Reject { error, done },
                Ok(()) => {
                    if let (Some((first_new, _)), Some((last_new, _))) =
                        (entries.first(), entries.last())
                    {
                        let first = st.range.map_or(*first_new, |(f, _)| f);
                        st.range = Some((first, *last_new));
                        for (index, payload) in &entries {
                            st.cache.push(*index, payload.clone());
                        }
                        let written_last = st.written_last;
                        st.cache.evict(self.inner.cfg.cache_bytes_max, written_last);
                    }
                    Op::Append {
                        entries,
                        epoch: st.epoch,
                        done,
                    }
                }
            }
        };
        Self::send(&tx, op);
    }

    /// Records the committed marker (opaque bytes, at most [`OPAQUE_BYTES_MAX`]) in the log
    /// stream. It becomes durable with the group commit of the entries queued with it or after
    /// it: a group holding only markers is written but not fsynced, since a marker only speeds
    /// up recovery and syncing it alone would double the fsyncs per commit round. `done` is
    /// called once it is written. [`Log::open`] returns the latest marker that survived.
    ///
    /// ### To ensure correctness
    /// The latest marker is never lost to truncation or purge: before a segment record holding
    /// it is deleted, it is copied into the meta file.
    pub fn save_committed(&self, data: Bytes, done: Box<dyn FnOnce(io::Result<()>) + Send>) {
        let op = if data.len() > OPAQUE_BYTES_MAX {
            Op::Reject {
                error: invalid(format!(
                    "committed marker is {} bytes; the limit is {OPAQUE_BYTES_MAX}",
                    data.len()
                )),
                done,
            }
        } else {
            Op::Committed { data, done }
        };
        Self::send(&self.submit_lock(), op);
    }

    /// Durably replaces the vote (opaque bytes, at most [`OPAQUE_BYTES_MAX`]).
    ///
    /// ### To ensure correctness
    /// Returns only once the vote is on disk (meta file: write temp, fsync, rename, fsync
    /// directory), whatever the fsync policy, and after every request submitted before it has
    /// completed (openraft requires vote and log writes to be serialized).
    pub fn save_vote(&self, data: Bytes) -> io::Result<()> {
        if data.len() > OPAQUE_BYTES_MAX {
            return Err(invalid(format!(
                "vote is {} bytes; the limit is {OPAQUE_BYTES_MAX}",
                data.len()
            )));
        }
        self.request(|reply| Op::Vote { data, reply })
    }

    /// The last vote saved, if any.
    pub fn vote(&self) -> Option<Bytes> {
        self.inner.lock_state().vote.clone()
    }

    /// Removes every entry with index > `last_kept` (`None`: every entry).
    ///
    /// ### To ensure correctness
    /// - Ordered with appends: it goes through the writer's queue, so appends submitted before
    ///   it are written first (then removed) and appends submitted after it continue the
    ///   truncated log (the next index is `last_kept + 1`). Readers see the entries gone at once.
    /// - Durable on return. Segments are deleted from the last one backwards and the cut
    ///   segment is shortened and synced, so a crash part-way leaves a prefix of the old log,
    ///   never a hole.
    /// - The latest committed marker survives (copied to the meta file first if needed), and
    ///   the purge point is unchanged.
    pub fn truncate_after(&self, last_kept: Option<u64>) -> io::Result<()> {
        let (reply, answer) = sync_channel(1);
        {
            let tx = self.submit_lock();
            {
                let mut st = self.inner.lock_state();
                if let Some((first, last)) = st.range {
                    match last_kept {
                        Some(k) if k >= last => {}
                        Some(k) if k >= first => {
                            st.range = Some((first, k));
                            st.cache.truncate_after(k);
                            st.written_last = st.written_last.map(|w| w.min(k));
                            st.epoch += 1;
                        }
                        _ => {
                            st.range = None;
                            st.cache.clear();
                            st.written_last = None;
                            st.epoch += 1;
                        }
                    }
                }
            }
            Self::send(&tx, Op::Truncate { last_kept, reply });
        }
        answer.recv().unwrap_or_else(|_| Err(closed_error()))
    }

    /// Marks every entry <= `index` purged (covered by a snapshot) and stores `purged` (opaque
    /// bytes, at most [`OPAQUE_BYTES_MAX`]: the purged log id) durably; [`Log::open`] returns it.
    /// `index` may lie beyond the last entry (a snapshot installed from the leader): the log is
    /// then empty and the next append may start at any index above `index`.
    ///
    /// ### To ensure correctness
    /// - Ordered with appends like [`Log::truncate_after`]; durable on return. The purge point
    ///   is written to the meta file before any segment is deleted.
    /// - Deletes the segments whose entries are all <= `index`. Reads of purged indexes fail
    ///   at once. A purge at or below the current purge point does nothing.
    pub fn purge_upto(&self, index: u64, purged: Bytes) -> io::Result<()> {
        if purged.len() > OPAQUE_BYTES_MAX {
            return Err(invalid(format!(
                "purged log id is {} bytes; the limit is {OPAQUE_BYTES_MAX}",
                purged.len()
            )));
        }
        let (reply, answer) = sync_channel(1);
        {
            let tx = self.submit_lock();
            {
                let mut st = self.inner.lock_state();
                if st.purged.as_ref().is_none_or(|(p, _)| index > *p) {
                    st.purged = Some((index, purged.clone()));
                    match st.range {
                        Some((_, last)) if index >= last => {
                            st.range = None;
                            st.cache.clear();
                            st.written_last = None;
                            st.epoch += 1;
                        }
                        Some((first, last)) if index >= first => {
                            st.range = Some((index + 1, last));
                            st.cache.remove_upto(index);
                        }
                        _ => {}
                    }
                }
            }
            Self::send(
                &tx,
                Op::Purge {
                    index,
                    data: purged,
                    reply,
                },
            );
        }
        answer.recv().unwrap_or_else(|_| Err(closed_error()))
    }

    /// The purge point and its bytes, if anything was ever purged.
    pub fn purged(&self) -> Option<(u64, Bytes)> {
        self.inner.lock_state().purged.clone()
    }

    /// Payloads of the entries in `range` that exist, as one contiguous run in index order
    /// (empty if none). Recent entries come from the cache; older ones are read from disk
    /// with `pread` and their CRC32C verified.
    ///
    /// ### To ensure correctness
    /// - Fails with `NotFound` if `range` starts at or below the purge point.
    /// - Never returns bytes that fail their checksum: damage on disk is an `InvalidData`
    ///   error naming the file and offset.
    pub fn read(&self, range: Range<u64>) -> io::Result<Vec<(u64, Bytes)>> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        if self.inner.failed.load(Ordering::Acquire) {
            return Err(failed_error());
        }
        let (disk, cached, epoch) = {
            let st = self.inner.lock_state();
            if let Some((p, _)) = &st.purged {
                if range.start <= *p {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "log entries up to {p} are purged (covered by a snapshot); \
                             read from {} asked for",
                            range.start
                        ),
                    ));
                }
            }
            let Some((first, last)) = st.range else {
                return Ok(Vec::new());
            };
            let start = range.start.max(first);
            let end = range.end.min(last.saturating_add(1));
            if start >= end {
                return Ok(Vec::new());
            }
            let cache_first = st.cache.first().max(start);
            let mut disk: Vec<DiskRun> = Vec::new();
            let mut index = start;
            while index < end.min(cache_first) {
                let Some((seg, loc)) = st.locate(index) else {
                    return Err(io::Error::other(format!(
                        "internal error: entry {index} is neither cached nor written"
                    )));
                };
                match disk.last_mut() {
                    Some(run) if Arc::ptr_eq(&run.file, &seg.file) => run.locs.push((index, loc)),
                    _ => disk.push(DiskRun {
                        file: Arc::clone(&seg.file),
                        path: seg.path.clone(),
                        locs: vec![(index, loc)],
                    }),
                }
                index += 1;
            }
            let mut cached = Vec::with_capacity((end - index) as usize);
            while index < end {
                match st.cache.get(index) {
                    Some(p) => cached.push((index, p.clone())),
                    None => break,
                }
                index += 1;
            }
            (disk, cached, st.epoch)
        };
        let mut out = Vec::new();
        for run in &disk {
            if !self.read_run(run, epoch, &mut out)? {
                // The entries were truncated while we read them: return what still existed.
                return Ok(out);
            }
        }
        out.extend(cached);
        Ok(out)
    }

    /// Reads one run of entries of one segment with one pread. Returns false (keeping the
    /// prefix read) if a record no longer matches because a concurrent truncation removed it.
    fn read_run(&self, run: &DiskRun, epoch: u64, out: &mut Vec<(u64, Bytes)>) -> io::Result<bool> {
        let start = run.locs[0].1.offset as u64;
        let end = run.locs.last().expect("runs are not empty").1.end();
        let mut buf = vec![0u8; (end - start) as usize];
        if let Err(e) = run.file.read_exact_at(&mut buf, start) {
            if self.inner.lock_state().epoch != epoch {
                return Ok(false);
            }
            return Err(io::Error::new(
                e.kind(),
                format!("reading {} at offset {start}: {e}", run.path.display()),
            ));
        }
        let buf = Bytes::from(buf);
        for (index, loc) in &run.locs {
            let at = (loc.offset as u64 - start) as usize;
            let problem = match decode_record(&buf[at..]) {
                Ok(Some(rec))
                    if rec.kind == KIND_ENTRY
                        && rec.index == *index
                        && rec.payload.len() == loc.len as usize =>
                {
                    None
                }
                Ok(Some(rec)) => Some(format!(
                    "expected entry {index} of {} bytes, found kind {} index {} of {} bytes",
                    loc.len,
                    rec.kind,
                    rec.index,
                    rec.payload.len()
                )),
                Ok(None) => Some("expected a record, found zeros".to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                if self.inner.lock_state().epoch != epoch {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "log file {} is damaged at byte offset {}: {problem}",
                        run.path.display(),
                        loc.offset
                    ),
                ));
            }
            let payload_at = at + encoded_len(0);
            out.push((*index, buf.slice(payload_at..payload_at + loc.len as usize)));
        }
        Ok(true)
    }

    /// First entry present, `None` when the log holds no entry.
    pub fn first_index(&self) -> Option<u64> {
        self.inner.lock_state().range.map(|(f, _)| f)
    }

    /// Last entry present (including entries appended but not yet durable).
    pub fn last_index(&self) -> Option<u64> {
        self.inner.lock_state().last_index()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LogStats {
        let st = self.inner.lock_state();
        let c = &self.inner.counters;
        LogStats {
            first_index: st.range.map(|(f, _)| f),
            last_index: st.last_index(),
            segments: st.segments.len(),
            disk_bytes: st.segments.iter().map(|s| s.capacity).sum(),
            used_bytes: st.segments.iter().map(|s| s.end_offset).sum(),
            entries_written: c.entries_written.load(Ordering::Relaxed),
            records_written: c.records_written.load(Ordering::Relaxed),
            written_bytes: c.written_bytes.load(Ordering::Relaxed),
            batches_written: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsyncs_other: c.fsyncs_other.load(Ordering::Relaxed),
            cache_entries: st.cache.len(),
            cache_bytes: st.cache.bytes(),
        }
    }

    /// Writes and syncs everything queued (whatever the policy), stops the writer thread and
    /// releases the directory lock. Dropping a `Log` does the same, ignoring errors.
    pub fn close(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        if writer.thread().id() == std::thread::current().id() {
            // Dropped from a `done` callback, on the writer thread itself: waiting for the
            // writer would wait forever. Queue the close; the writer runs it after this group.
            let (reply, _) = sync_channel(1);
            Self::send(&self.submit_lock(), Op::Close { reply });
            self.inner.syncer.stop();
            return Ok(());
        }
        let result = self.request(|reply| Op::Close { reply });
        let _ = writer.join();
        self.inner.syncer.stop();
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
        result
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(dir = %self.inner.dir.display(), "closing the log failed: {e}");
        }
    }
}

/// Entries of one segment to read with one pread.
struct DiskRun {
    file: Arc<File>,
    path: PathBuf,
    locs: Vec<(u64, crate::segment::EntryLoc)>,
}

/// Checks an append against the logical log: contiguous, continuing it, within limits.
fn check_append(st: &State, entries: &[(u64, Bytes)]) -> io::Result<()> {
    let Some((first, _)) = entries.first() else {
        return Ok(());
    };
    for (i, (index, payload)) in entries.iter().enumerate() {
        if *index == u64::MAX {
            return Err(invalid(
                "index u64::MAX is reserved (the index after the last entry must exist)"
                    .to_string(),
            ));
        }
        if first.checked_add(i as u64) != Some(*index) {
            return Err(invalid(format!(
                "append indexes must be contiguous: entry {i} has index {index}, expected {}",
                first.saturating_add(i as u64)
            )));
        }
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(invalid(format!(
                "entry {index} is {} bytes; the limit is {PAYLOAD_BYTES_MAX}",
                payload.len()
            )));
        }
    }
    match (st.range, &st.purged) {
        (Some((_, last)), _) if last.checked_add(1) != Some(*first) => Err(invalid(format!(
            "append must continue the log at index {}, got {first}",
            last.saturating_add(1)
        ))),
        (None, Some((p, _))) if *first <= *p => Err(invalid(format!(
            "append at index {first} is at or below the purge point {p}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Log>();
    }
}
