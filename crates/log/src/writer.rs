//! The writer thread: the only code that changes log files, one request at a time, in the
//! order callers submitted them.
//!
//! Group commit: the thread blocks for one request, then drains every request already queued
//! (up to [`BATCH_BYTES_MAX`]). Appends and committed markers of that group are encoded into
//! one buffer, written with one `pwrite`, made durable with one `fdatasync` (policy `Always`),
//! and only then is each caller's `done` run. An idle log therefore flushes at once; under load
//! requests pile up while the previous fdatasync runs, and the next group is larger.
//!
//! Truncation, purge, vote and close are *barriers*: the group before them is committed first,
//! then they run alone and durably. Because they travel through the same queue as appends, they
//! are ordered with appends exactly as the caller submitted them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{FsyncPolicy, BATCH_BYTES_MAX};
use crate::log::Inner;
use crate::meta::{write_meta, Committed, Meta, Purged};
use crate::record::{encode_committed, encode_record, encoded_len, KIND_ENTRY};
use crate::segment::{encode_header, segment_file_name, EntryLoc, SEGMENT_HEADER_LEN};
use crate::state::Segment;
use crate::sys;

/// Called once, from the writer thread, when a request is durable (per the fsync policy) or
/// failed. It must be quick and must not call blocking `Log` methods (the writer would wait on
/// itself).
pub type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The answer to a barrier request, sent back to the blocked caller.
pub(crate) type Reply = SyncSender<io::Result<()>>;

/// A request to the writer thread.
pub(crate) enum Op {
    Append {
        entries: Vec<(u64, Bytes)>,
        /// The logical epoch when the append was submitted (see `State::epoch`).
        epoch: u64,
        done: Done,
    },
    Committed {
        data: Bytes,
        done: Done,
    },
    /// A request refused when submitted; its `done` runs in order, from the writer thread.
    Reject {
        error: io::Error,
        done: Done,
    },
    Truncate {
        last_kept: Option<u64>,
        reply: Reply,
    },
    Purge {
        index: u64,
        data: Bytes,
        reply: Reply,
    },
    Vote {
        data: Bytes,
        reply: Reply,
    },
    Close {
        reply: Reply,
    },
}

impl Op {
    /// Completes the request with an error without the writer (the writer is gone).
    pub(crate) fn fail(self, error: io::Error) {
        match self {
            Op::Append { done, .. } | Op::Committed { done, .. } | Op::Reject { done, .. } => {
                call_done(done, Err(error))
            }
            Op::Truncate { reply, .. }
            | Op::Purge { reply, .. }
            | Op::Vote { reply, .. }
            | Op::Close { reply } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// Runs a caller's callback; a panicking callback is logged and does not kill the writer.
pub(crate) fn call_done(done: Done, result: io::Result<()>) {
    if catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
        tracing::error!("a log `done` callback panicked; the writer thread carries on");
    }
}

/// The segment appends go to.
struct Active {
    first_index: u64,
    file: Arc<File>,
    /// Offset just past the bytes already written (not counting the staging buffer).
    written: u64,
    capacity: u64,
}

/// The requests of one group and what committing it must publish.
#[derive(Default)]
struct Group {
    /// Callbacks in submission order, each with its error if it was refused up front.
    dones: Vec<(Done, Option<io::Error>)>,
    /// Entries staged, as (segment first index, location), in index order.
    locs: Vec<(u64, EntryLoc)>,
    /// (epoch, last index) of each append, to advance `written_last`.
    appends: Vec<(u64, u64)>,
    /// Committed markers staged.
    markers: u64,
    /// The latest committed marker staged: the marker and where its record is.
    marker: Option<(Committed, u64, u64)>,
    /// End offsets of segments rolled away from during this group.
    rolled: Vec<(u64, u64)>,
    entries: u64,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.dones.is_empty()
    }
}

/// What the writer knows at start, from recovery.
pub(crate) struct WriterInit {
    pub dir_file: File,
    pub meta: Meta,
    pub latest_committed: Option<Committed>,
    pub committed_in_segment: Option<(u64, u64)>,
    /// The last segment and where its records end, if any segment exists.
    pub active: Option<(u64, Arc<File>, u64, u64)>,
    pub phys_next: Option<u64>,
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    dir: PathBuf,
    dir_file: File,
    /// What `log.meta` durably holds.
    meta: Meta,
    /// The latest committed marker written (durable per policy), wherever it lives.
    latest_committed: Option<Committed>,
    /// (segment first index, offset) of the record holding `latest_committed`, or `None` when
    /// only `log.meta` holds it. Truncation and purge copy it into `log.meta` before deleting it.
    committed_in_segment: Option<(u64, u64)>,
    next_seq: u64,
    active: Option<Active>,
    /// Index of the next entry physically; `None` when there is no segment.
    phys_next: Option<u64>,
    buf: Vec<u8>,
    group: Group,
    /// Set after a failed write or fsync: the file state is unknown, so every later request
    /// fails until the log is reopened (and recovery re-reads what is really on disk).
    poisoned: Option<String>,
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>, init: WriterInit) -> Writer {
        let next_seq = init.latest_committed.as_ref().map_or(1, |c| c.seq + 1);
        Writer {
            dir: inner.dir.clone(),
            inner,
            dir_file: init.dir_file,
            meta: init.meta,
            latest_committed: init.latest_committed,
            committed_in_segment: init.committed_in_segment,
            next_seq,
            active: init
                .active
                .map(|(first_index, file, written, capacity)| Active {
                    first_index,
                    file,
                    written,
                    capacity,
                }),
            phys_next: init.phys_next,
            buf: Vec::new(),
            group: Group::default(),
            poisoned: None,
        }
    }

    /// The thread body: serve requests until `Close` (or until every sender is gone).
    pub(crate) fn run(mut self, rx: Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(op) = next.take() {
                if self.handle(op) {
                    return;
                }
                if self.buf.len() >= BATCH_BYTES_MAX {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.commit_group();
        }
        self.commit_group();
        let _ = self.final_sync();
    }

    /// Stages or runs one request; true once the writer must stop.
    fn handle(&mut self, op: Op) -> bool {
        self.check_background_error();
        match op {
            Op::Append {
                entries,
                epoch,
                done,
            } => self.stage_append(entries, epoch, done),
            Op::Committed { data, done } => self.stage_committed(data, done),
            Op::Reject { error, done } => self.group.dones.push((done, Some(error))),
            Op::Truncate { last_kept, reply } => {
                self.commit_group();
                let r = self.barrier(|w| w.truncate_after(last_kept));
                let _ = reply.send(r);
            }
            Op::Purge { index, data, reply } => {
                self.commit_group();
                let r = self.barrier(|w| w.purge_upto(index, data));
                let _ = reply.send(r);
            }
            Op::Vote { data, reply } => {
                self.commit_group();
                let r = self.barrier(|w| w.save_vote(data));
                let _ = reply.send(r);
            }
            Op::Close { reply } => {
                self.commit_group();
                let r = match self.poison_error() {
                    Some(e) => Err(e),
                    None => self.final_sync(),
                };
                let _ = reply.send(r);
                return true;
            }
        }
        false
    }

    fn check_background_error(&mut self) {
        if self.poisoned.is_none() {
            if let Some(msg) = self.inner.syncer.error() {
                self.poisoned = Some(msg);
                self.inner.failed.store(true, Ordering::Release);
            }
        }
    }

    fn poison_error(&self) -> Option<io::Error> {
        self.poisoned.as_ref().map(|msg| {
            io::Error::other(format!(
                "the log is unusable after an earlier I/O error ({msg}); reopen it to recover"
            ))
        })
    }

    fn poison(&mut self, what: &str, e: &io::Error) -> io::Error {
        let msg = format!("{what}: {e}");
        tracing::error!(dir = %self.dir.display(), "log writer failed: {msg}");
        if self.poisoned.is_none() {
            self.poisoned = Some(msg.clone());
        }
        self.inner.failed.store(true, Ordering::Release);
        io::Error::new(e.kind(), msg)
    }

    /// Runs a barrier request unless poisoned; any error poisons the log.
    fn barrier(&mut self, f: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if let Some(e) = self.poison_error() {
            return Err(e);
        }
        f(self).map_err(|e| self.poison("log maintenance failed", &e))
    }

    fn count_fsync(&self, data: bool) {
        let c = &self.inner.counters;
        if data {
            c.fsyncs.fetch_add(1, Ordering::Relaxed);
        } else {
            c.fsyncs_other.fetch_add(1, Ordering::Relaxed);
        }
    }

    // ---- appends and markers -------------------------------------------------------------

    fn stage_append(&mut self, entries: Vec<(u64, Bytes)>, epoch: u64, done: Done) {
        if let Some(e) = self.poison_error() {
            self.group.dones.push((done, Some(e)));
            return;
        }
        let count = entries.len() as u64;
        let last = entries.last().map(|(i, _)| *i);
        for (index, payload) in &entries {
            if let Err(e) = self.stage_entry(*index, payload) {
                self.poison("appending to the log failed", &e);
                break;
            }
        }
        if let Some(last) = last {
            self.group.appends.push((epoch, last));
        }
        self.group.entries += count;
        self.group.dones.push((done, None));
    }

    fn stage_entry(&mut self, index: u64, payload: &[u8]) -> io::Result<()> {
        let len = encoded_len(payload.len()) as u64;
        match self.phys_next {
            None => self.create_segment(index, len)?,
            Some(next) if next != index => {
                return Err(io::Error::other(format!(
                    "internal error: entry {index} staged where entry {next} belongs"
                )))
            }
            Some(_) => {
                if !self.fits(len) {
                    self.roll(index, len)?;
                }
            }
        }
        let active = self.active.as_ref().expect("segment exists");
        let offset = active.written + self.buf.len() as u64;
        self.group.locs.push((
            active.first_index,
            EntryLoc {
                offset: offset as u32,
                len: payload.len() as u32,
            },
        ));
        encode_record(&mut self.buf, KIND_ENTRY, index, payload);
        self.phys_next = Some(index + 1);
        Ok(())
    }

    fn fits(&self, record_len: u64) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.written + self.buf.len() as u64 + record_len <= a.capacity)
    }

    fn stage_committed(&mut self, data: Bytes, done: Done) {
        if let Some(e) = self.poison_error() {
            self.group.dones.push((done, Some(e)));
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let marker = Committed { seq, data };
        let len = encoded_len(8 + marker.data.len()) as u64;
        let (Some(_), Some(next)) = (self.active.as_ref(), self.phys_next) else {
            // No segment to hold it (the log is empty): keep it in the meta file instead.
            return self.committed_to_meta(marker, done);
        };
        if !self.fits(len) {
            // Only entries start segments, so every segment holds at least one entry and
            // segment names (their first index) never repeat. A marker that does not fit goes
            // to the meta file; this happens at most about once per segment.
            return self.committed_to_meta(marker, done);
        }
        let active = self.active.as_ref().expect("segment exists");
        let offset = active.written + self.buf.len() as u64;
        let seg_first = active.first_index;
        encode_committed(&mut self.buf, next, seq, &marker.data);
        self.group.marker = Some((marker, seg_first, offset));
        self.group.markers += 1;
        self.group.dones.push((done, None));
    }

    /// Saves a committed marker in `log.meta` (slow path, only when no segment can hold it).
    fn committed_to_meta(&mut self, marker: Committed, done: Done) {
        self.commit_group();
        let r = self.barrier(|w| {
            w.latest_committed = Some(marker);
            w.committed_in_segment = None;
            w.write_meta()
        });
        call_done(done, r);
    }

    /// Writes the staging buffer at the end of the active segment.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let active = self
            .active
            .as_mut()
            .expect("bytes staged without a segment");
        active.file.write_all_at(&self.buf, active.written)?;
        active.written += self.buf.len() as u64;
        self.inner
            .counters
            .written_bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        if self.inner.cfg.fsync == FsyncPolicy::EverySec {
            self.inner.syncer.mark_dirty(&active.file);
        }
        Ok(())
    }

    /// Closes the active segment (written and synced) and starts a new one whose first entry
    /// will be `first_index`, big enough for a record of `record_len` bytes.
    fn roll(&mut self, first_index: u64, record_len: u64) -> io::Result<()> {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.first_index == first_index)
        {
            return Err(io::Error::other(format!(
                "internal error: rolling segment {first_index} that holds no entry"
            )));
        }
        self.flush_buf()?;
        if let Some(old) = &self.active {
            // Synced whatever the policy, so that only the last segment can ever hold a torn
            // record: recovery treats damage in any earlier segment as corruption.
            old.file.sync_data()?;
            self.count_fsync(true);
            self.group.rolled.push((old.first_index, old.written));
        }
        self.create_segment(first_index, record_len)
    }

    /// Creates `log-<first_index>.seg`: header, preallocation, fsync, then rename into place
    /// and fsync the directory, so a segment under its final name always has a valid header.
    fn create_segment(&mut self, first_index: u64, record_len: u64) -> io::Result<()> {
        let capacity = self
            .inner
            .cfg
            .segment_size_bytes
            .max(SEGMENT_HEADER_LEN as u64 + record_len);
        let path = self.dir.join(segment_file_name(first_index));
        let tmp = tmp_path(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all_at(&encode_header(first_index), 0)?;
        sys::preallocate(&file, capacity)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sys::sync_dir(&self.dir_file)?;
        self.count_fsync(false);
        self.count_fsync(false);
        let file = Arc::new(file);
        self.inner.lock_state().segments.push(Segment {
            first_index,
            path,
            file: Arc::clone(&file),
            entries: Vec::new(),
            end_offset: SEGMENT_HEADER_LEN as u64,
            capacity,
        });
        self.active = Some(Active {
            first_index,
            file,
            written: SEGMENT_HEADER_LEN as u64,
            capacity,
        });
        self.phys_next = Some(first_index);
        Ok(())
    }

    /// Writes, syncs (policy `Always`), publishes and acknowledges the current group.
    fn commit_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let result = match self.poison_error() {
            Some(e) => Err(e),
            None => self.write_group(&group),
        };
        match result {
            Ok(()) => {
                self.publish(&group);
                for (done, refused) in group.dones {
                    call_done(done, refused.map_or(Ok(()), Err));
                }
            }
            Err(e) => {
                self.buf.clear();
                for (done, refused) in group.dones {
                    let err = refused.unwrap_or_else(|| io::Error::new(e.kind(), e.to_string()));
                    call_done(done, Err(err));
                }
            }
        }
    }

    fn write_group(&mut self, group: &Group) -> io::Result<()> {
        let staged = !self.buf.is_empty();
        self.flush_buf()
            .map_err(|e| self.poison("writing to the log failed", &e))?;
        // A group of committed markers alone is written but not synced: a marker is a hint for
        // recovery, not data (the consensus layer does not wait on it; see `save_committed` in
        // the tandem crate), and syncing it alone would cost a second fdatasync per commit
        // round. The next group with entries syncs it too.
        if staged && group.entries > 0 && self.inner.cfg.fsync == FsyncPolicy::Always {
            let active = self.active.as_ref().expect("written to a segment");
            active
                .file
                .sync_data()
                .map_err(|e| self.poison("fdatasync of the log failed", &e))?;
            self.count_fsync(true);
        }
        if staged {
            let c = &self.inner.counters;
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.entries_written
                .fetch_add(group.entries, Ordering::Relaxed);
            c.records_written
                .fetch_add(group.entries + group.markers, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes the group's records visible to readers and lets the cache drop them.
    fn publish(&mut self, group: &Group) {
        if let Some((marker, seg_first, offset)) = &group.marker {
            self.latest_committed = Some(marker.clone());
            self.committed_in_segment = Some((*seg_first, *offset));
        }
        let mut st = self.inner.lock_state();
        for (seg_first, loc) in &group.locs {
            if let Some(seg) = st
                .segments
                .iter_mut()
                .rev()
                .find(|s| s.first_index == *seg_first)
            {
                seg.entries.push(*loc);
            }
        }
        for (seg_first, end) in &group.rolled {
            if let Some(seg) = st.segments.iter_mut().find(|s| s.first_index == *seg_first) {
                seg.end_offset = *end;
            }
        }
        if let Some(active) = &self.active {
            if let Some(seg) = st.segments.last_mut() {
                if seg.first_index == active.first_index {
                    seg.end_offset = active.written;
                }
            }
        }
        let epoch = st.epoch;
        for (op_epoch, last) in &group.appends {
            if *op_epoch == epoch {
                st.written_last = Some(*last);
            }
        }
        let written_last = st.written_last;
        let cache_max = self.inner.cfg.cache_bytes_max;
        st.cache.evict(cache_max, written_last);
    }

    // ---- barriers ------------------------------------------------------------------------

    fn write_meta(&mut self) -> io::Result<()> {
        self.meta.committed = self.latest_committed.clone();
        let n = write_meta(&self.dir, &self.dir_file, &self.meta)?;
        self.inner
            .counters
            .fsyncs_other
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn save_vote(&mut self, data: Bytes) -> io::Result<()> {
        self.meta.vote = Some(data.clone());
        self.write_meta()?;
        self.inner.lock_state().vote = Some(data);
        Ok(())
    }

    /// Removes every entry > `last_kept`, from the end backwards, so that a crash part-way
    /// leaves a prefix of the old log (never a hole). If the latest committed marker would go
    /// with them, it is first copied into `log.meta`.
    fn truncate_after(&mut self, last_kept: Option<u64>) -> io::Result<()> {
        let Some(phys_next) = self.phys_next else {
            return Ok(());
        };
        let purged = self.meta.purged.as_ref().map(|p| p.index);
        // The segments to delete (a suffix) and, unless everything goes, the cut:
        // (position in `segments`, its first index, cut offset, file, capacity).
        let (delete, cut) = {
            let st = self.inner.lock_state();
            let first = st.segments.first().map_or(phys_next, |s| s.first_index);
            let keep = match last_kept {
                Some(k) if k >= first && purged.is_none_or(|p| k > p) => Some(k),
                // Nothing above the purge point would remain: everything goes.
                _ => None,
            };
            match keep {
                Some(k) if k.saturating_add(1) >= phys_next => return Ok(()),
                Some(k) => {
                    let j = st.segments.partition_point(|s| s.first_index <= k) - 1;
                    let seg = &st.segments[j];
                    let loc = seg.entries[(k - seg.first_index) as usize];
                    let cut = (
                        j,
                        seg.first_index,
                        loc.end(),
                        Arc::clone(&seg.file),
                        seg.capacity,
                    );
                    let delete: Vec<PathBuf> = st.segments[j + 1..]
                        .iter()
                        .map(|s| s.path.clone())
                        .collect();
                    (delete, Some(cut))
                }
                None => (st.segments.iter().map(|s| s.path.clone()).collect(), None),
            }
        };
        if let Some((seg_first, offset)) = self.committed_in_segment {
            let lost = match &cut {
                None => true,
                Some((_, cut_first, cut_at, _, _)) => {
                    seg_first > *cut_first || (seg_first == *cut_first && offset >= *cut_at)
                }
            };
            if lost {
                self.write_meta()?;
                self.committed_in_segment = None;
            }
        }
        for path in delete.iter().rev() {
            remove_file(path)?;
            sys::sync_dir(&self.dir_file)?;
            self.count_fsync(false);
            let mut st = self.inner.lock_state();
            st.segments.pop();
        }
        match cut {
            None => {
                self.active = None;
                self.phys_next = None;
            }
            Some((j, _, cut_at, file, capacity)) => {
                file.set_len(cut_at)?;
                sys::preallocate(&file, capacity)?;
                file.sync_all()?;
                self.count_fsync(false);
                let k = last_kept.expect("cut implies a kept entry");
                let mut st = self.inner.lock_state();
                st.segments.truncate(j + 1);
                let seg = &mut st.segments[j];
                seg.entries.truncate((k - seg.first_index + 1) as usize);
                seg.end_offset = cut_at;
                self.active = Some(Active {
                    first_index: seg.first_index,
                    file,
                    written: cut_at,
                    capacity,
                });
                self.phys_next = Some(k + 1);
            }
        }
        Ok(())
    }

    /// Records the purge point durably in `log.meta`, then deletes every segment whose
    /// entries are all <= `index` (all of them when no entry is left).
    fn purge_upto(&mut self, index: u64, data: Bytes) -> io::Result<()> {
        if self.meta.purged.as_ref().is_some_and(|p| p.index >= index) {
            return Ok(());
        }
        self.meta.purged = Some(Purged { index, data });
        // Written first, so the purge point survives even if a deletion below does not.
        // It also carries the latest committed marker, whatever segment holds it.
        self.write_meta()?;
        let delete: Vec<(u64, PathBuf)> = {
            let st = self.inner.lock_state();
            let all = self
                .phys_next
                .is_none_or(|next| next <= index.saturating_add(1));
            let n = st.segments.len();
            st.segments
                .iter()
                .enumerate()
                .take_while(|(i, _)| {
                    all || (i + 1 < n && st.segments[i + 1].first_index <= index.saturating_add(1))
                })
                .map(|(_, s)| (s.first_index, s.path.clone()))
                .collect()
        };
        if delete.is_empty() {
            return Ok(());
        }
        for (seg_first, path) in &delete {
            if self
                .committed_in_segment
                .is_some_and(|(f, _)| f == *seg_first)
            {
                // Already in log.meta, written just above.
                self.committed_in_segment = None;
            }
            remove_file(path)?;
        }
        sys::sync_dir(&self.dir_file)?;
        self.count_fsync(false);
        let mut st = self.inner.lock_state();
        st.segments.drain(..delete.len());
        if st.segments.is_empty() {
            self.active = None;
            self.phys_next = None;
        }
        Ok(())
    }

    /// Makes everything written durable, whatever the policy (used when closing).
    fn final_sync(&mut self) -> io::Result<()> {
        if let Some(active) = &self.active {
            active.file.sync_data()?;
            self.count_fsync(true);
        }
        Ok(())
    }
}

/// Where a segment is built before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("deleting {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}
