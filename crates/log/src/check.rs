//! Offline verification for `tandem check`: reads a log directory the way [`crate::Log::open`]
//! does, verifying every record's CRC32C, and reports what it found without changing anything
//! (no lock taken, no torn tail cut, no leftover deleted).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::LogError;
use crate::meta::read_meta;
use crate::recovery::{list_segments, verify_segments, Verified};

/// A problem found by [`check`], where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} byte offset {}: {}",
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Segment files verified (those wholly below the purge point are only counted below).
    pub segments: usize,
    /// Segment files wholly below the purge point: left by an interrupted purge, deleted at the
    /// next open, not verified.
    pub segments_below_purge: usize,
    /// Entry records whose CRC32C was verified.
    pub entries_verified: u64,
    /// First and last entry above the purge point, up to the first problem.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// The saved vote and the latest committed marker, as stored (opaque bytes).
    pub vote: Option<Bytes>,
    pub committed: Option<Bytes>,
    /// A torn final record: the normal trace of a crash mid-write. Open cuts it.
    pub torn_tail: Option<Problem>,
    /// Damage: open refuses the log unless `force_truncate_corrupt`.
    pub damage: Option<Problem>,
}

impl CheckReport {
    /// True when open would accept the log as it is (a torn tail is not damage).
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
    }
}

/// Verifies the log in `dir` without changing it. Meant for a stopped node: a running writer
/// may make it report a torn tail that is only a write in progress.
///
/// Errors only when a file cannot be read, or when the meta file is damaged
/// ([`LogError::Corrupt`] naming it); damage in segments is reported in the result.
pub fn check(dir: &Path) -> Result<CheckReport, LogError> {
    check_entries(dir, |_, _| Ok(()))
}

/// Like [`check`], and also shows every verified entry above the purge point to `visit`
/// (index, payload), in index order, so the caller can check what the payloads carry. The
/// first error from `visit` stops the check and is returned as [`LogError::Corrupt`] naming the
/// entry's file and offset.
pub fn check_entries(
    dir: &Path,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<CheckReport, LogError> {
    std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    let meta = read_meta(dir)?;
    let mut names = list_segments(dir, false)?;
    let mut below_purge = 0;
    if let Some(p) = &meta.purged {
        while names.len() >= 2 && names[1].0 <= p.index.saturating_add(1) {
            names.remove(0);
            below_purge += 1;
        }
    }
    let purged_index = meta.purged.as_ref().map(|p| p.index);
    let Verified {
        segments,
        markers,
        cut,
        ..
    } = verify_segments(&names, false, &mut |e| {
        if purged_index.is_some_and(|p| e.index <= p) {
            return Ok(());
        }
        visit(e.index, e.payload).map_err(|reason| LogError::Corrupt {
            path: e.path.to_path_buf(),
            offset: e.offset,
            reason: format!("entry {} was rejected: {reason}", e.index),
        })
    })?;

    let (mut torn_tail, mut damage) = (None, None);
    if let Some(cut) = cut {
        let problem = Problem {
            file: names[cut.at].1.clone(),
            offset: cut.error_offset,
            reason: cut.reason,
        };
        if cut.torn {
            torn_tail = Some(problem);
        } else {
            damage = Some(problem);
        }
    }
    let live_first = segments
        .first()
        .map(|s| purged_index.map_or(s.first_index, |p| s.first_index.max(p.saturating_add(1))));
    let next = segments.last().map(|s| s.next_index());
    let (first_index, last_index) = match (live_first, next) {
        (Some(f), Some(n)) if f < n => (Some(f), Some(n - 1)),
        _ => (None, None),
    };
    let mut committed = meta.committed.clone();
    for m in markers.into_iter().flatten() {
        if committed.as_ref().is_none_or(|c| m.seq > c.seq) {
            committed = Some(crate::meta::Committed {
                seq: m.seq,
                data: m.data.into(),
            });
        }
    }
    Ok(CheckReport {
        segments: names.len(),
        segments_below_purge: below_purge,
        entries_verified: segments.iter().map(|s| s.entries.len() as u64).sum(),
        first_index,
        last_index,
        purged_index,
        vote: meta.vote,
        committed: committed.map(|c| c.data),
        torn_tail,
        damage,
    })
}

/// [`check_entries`] for callers that count damage as an error: damage in a segment is returned
/// as [`LogError::Corrupt`] naming the file and offset; a torn tail stays in the report (it is
/// the normal trace of a crash, cut at the next open).
pub fn verify_dir(
    dir: &Path,
    visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<CheckReport, LogError> {
    let report = check_entries(dir, visit)?;
    match &report.damage {
        Some(d) => Err(LogError::Corrupt {
            path: d.file.clone(),
            offset: d.offset,
            reason: d.reason.clone(),
        }),
        None => Ok(report),
    }
}
