//! The in-memory state shared by callers and the writer thread, under one mutex.
//!
//! Two views live here side by side:
//!
//! - the **logical** log, which callers see: which indexes exist, the purge point, and the
//!   payload cache. Callers change it the moment they submit an operation, because an appended
//!   entry must be readable as soon as `append` returns, before it is durable.
//! - the **physical** log, which the writer thread maintains: the segment files and where each
//!   written entry's record sits. It lags the logical view by whatever is still queued.
//!
//! Reads join the two: an index is served from the cache if it is there, else from disk. The
//! cache therefore never drops an entry that is not yet written (`written_last`).

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::segment::EntryLoc;

/// One segment file as the writer left it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Index of the first entry this segment holds (from its name and header).
    pub first_index: u64,
    pub path: PathBuf,
    /// Shared with readers, who pread from it while the writer appends.
    pub file: Arc<File>,
    /// Entries written and published; entry `i` has index `first_index + i`.
    pub entries: Vec<EntryLoc>,
    /// Offset just past the last written record (entries and markers).
    pub end_offset: u64,
    /// File length (preallocated).
    pub capacity: u64,
}

impl Segment {
    /// Index the next entry after this segment's entries would have.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }
}

/// Payloads of the most recent entries, contiguous up to the logical last index.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Index of `items[0]`; when empty, the index the next pushed entry must have.
    first: u64,
    items: VecDeque<Bytes>,
    bytes: usize,
}

impl Cache {
    /// An empty cache whose next entry is `next`.
    pub fn empty_at(next: u64) -> Cache {
        Cache {
            first: next,
            items: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Index of the first cached entry (or of the next one to be pushed, when empty).
    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the entry after the last cached one. An empty cache restarts at `index`.
    pub fn push(&mut self, index: u64, payload: Bytes) {
        if self.items.is_empty() {
            self.first = index;
        }
        debug_assert_eq!(index, self.first + self.items.len() as u64);
        self.bytes += payload.len();
        self.items.push_back(payload);
    }

    pub fn get(&self, index: u64) -> Option<&Bytes> {
        let at = index.checked_sub(self.first)?;
        self.items.get(usize::try_from(at).ok()?)
    }

    /// Drops every entry with index > `last_kept`.
    pub fn truncate_after(&mut self, last_kept: u64) {
        while !self.items.is_empty() && self.first + self.items.len() as u64 - 1 > last_kept {
            let b = self.items.pop_back().expect("not empty");
            self.bytes -= b.len();
        }
        if self.items.is_empty() {
            self.first = self.first.min(last_kept.saturating_add(1));
        }
    }

    /// Drops every entry with index <= `index`.
    pub fn remove_upto(&mut self, index: u64) {
        while self.first <= index {
            match self.items.pop_front() {
                Some(b) => {
                    self.bytes -= b.len();
                    self.first += 1;
                }
                None => {
                    self.first = index.saturating_add(1);
                    break;
                }
            }
        }
    }

    /// Drops everything; the next pushed entry sets the first index.
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }

    /// Drops the oldest entries while over `bytes_max`, but only entries with index
    /// <= `written_last`: the rest exist nowhere else yet.
    pub fn evict(&mut self, bytes_max: usize, written_last: Option<u64>) {
        let Some(written_last) = written_last else {
            return;
        };
        while self.bytes > bytes_max && self.first <= written_last {
            match self.items.pop_front() {
                Some(b) => {
                    self.bytes -= b.len();
                    self.first += 1;
                }
                None => break,
            }
        }
    }
}

/// Everything behind the one mutex.
#[derive(Debug)]
pub(crate) struct State {
    /// Logical: first and last index present, `None` when the log holds no entry.
    pub range: Option<(u64, u64)>,
    /// Logical: the purge point and the caller's bytes for it.
    pub purged: Option<(u64, Bytes)>,
    /// Logical: bumped by every operation that removes entries from the tail (or empties the
    /// log), so that the writer can tell whether a batch it just wrote is still the current
    /// content of those indexes before it lets the cache drop them.
    pub epoch: u64,
    /// Highest index whose record is written and published in `segments` and that still holds
    /// the current (logical) entry. The cache may drop entries up to here.
    pub written_last: Option<u64>,
    pub cache: Cache,
    /// The durable vote, updated by the writer after each `save_vote`.
    pub vote: Option<Bytes>,
    /// Physical: segment files in index order.
    pub segments: Vec<Segment>,
}

impl State {
    /// The segment and record of a written entry.
    pub fn locate(&self, index: u64) -> Option<(&Segment, EntryLoc)> {
        let at = self.segments.partition_point(|s| s.first_index <= index);
        let seg = self.segments.get(at.checked_sub(1)?)?;
        let i = usize::try_from(index - seg.first_index).ok()?;
        Some((seg, *seg.entries.get(i)?))
    }

    /// Logical last index, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.range.map(|(_, last)| last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![1u8; n])
    }

    #[test]
    fn cache_keeps_unwritten_entries_whatever_the_budget() {
        let mut c = Cache::empty_at(1);
        for i in 1..=5 {
            c.push(i, b(10));
        }
        c.evict(0, Some(2));
        assert_eq!((c.first(), c.len(), c.bytes()), (3, 3, 30));
        c.evict(0, None);
        assert_eq!(c.first(), 3);
        c.evict(25, Some(5));
        assert_eq!((c.first(), c.len()), (4, 2));
        assert!(c.get(3).is_none());
        assert_eq!(c.get(5).map(|p| p.len()), Some(10));
    }

    #[test]
    fn cache_truncation_and_purge_keep_it_contiguous() {
        let mut c = Cache::empty_at(10);
        for i in 10..20 {
            c.push(i, b(1));
        }
        c.truncate_after(14);
        assert_eq!((c.first(), c.len()), (10, 5));
        c.remove_upto(11);
        assert_eq!((c.first(), c.len()), (12, 3));
        c.truncate_after(5);
        assert_eq!((c.first(), c.len(), c.bytes()), (6, 0, 0));
        c.push(6, b(2));
        assert_eq!(c.get(6).map(|p| p.len()), Some(2));
        c.remove_upto(100);
        assert_eq!((c.first(), c.len()), (101, 0));
        c.push(500, b(1));
        assert_eq!(c.first(), 500);
    }
}
