//! Opening a log directory: lock it, read the meta file, verify every segment, cut a torn
//! tail (or, if asked, everything from a damaged record on), finish an interrupted purge,
//! and build the state the `Log` and its writer start from.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::{LogError, TruncatedTail};
use crate::log::OpenReport;
use crate::meta::{read_meta, remove_meta_tmp, write_meta, Committed};
use crate::record::RECORD_HEADER_LEN;
use crate::segment::{
    decode_header, parse_segment_file_name, scan_segment, ScanStop, ScannedMarker,
    SEGMENT_HEADER_LEN,
};
use crate::state::{Cache, Segment, State};
use crate::sys;
use crate::writer::WriterInit;

/// Name of the lock file inside the log directory.
pub const LOCK_FILE_NAME: &str = "log.lock";

/// Largest segment file open accepts: the largest configured size plus one maximal record
/// (a record bigger than a segment gets a segment of its own). Keeps offsets within u32 and
/// bounds the memory used to verify a segment.
pub const SEGMENT_FILE_BYTES_MAX: u64 = crate::config::SEGMENT_BYTES_MAX
    + SEGMENT_HEADER_LEN as u64
    + 8
    + crate::record::BODY_LEN_MAX as u64;

/// Everything open produces.
pub(crate) struct Recovered {
    pub state: State,
    pub writer: WriterInit,
    pub report: OpenReport,
    pub lock_file: File,
}

/// Where open must cut the log, and why.
pub(crate) struct Cut {
    /// Position in the segment list of the segment to cut.
    pub at: usize,
    /// Offset to cut the segment at; `None` deletes the whole segment.
    pub offset: Option<u64>,
    /// Offset of the problem, for the error message.
    pub error_offset: u64,
    pub reason: String,
    /// A torn final record (always cut) rather than damage (cut only when forced).
    pub torn: bool,
}

pub(crate) fn recover(dir: &Path, cfg: &LogConfig) -> Result<Recovered, LogError> {
    cfg.validate().map_err(LogError::Config)?;
    let created = !dir.exists();
    fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
    if created {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: make the new directory's name durable.
            let _ = File::open(parent).and_then(|p| sys::sync_dir(&p));
        }
    }
    let dir_file = File::open(dir).map_err(|e| LogError::io(dir, e))?;
    let lock_path = dir.join(LOCK_FILE_NAME);
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| LogError::io(&lock_path, e))?;
    if !sys::try_lock_exclusive(&lock_file).map_err(|e| LogError::io(&lock_path, e))? {
        return Err(LogError::Locked {
            dir: dir.to_path_buf(),
            lock: lock_path,
        });
    }
    remove_meta_tmp(dir).map_err(|e| LogError::io(dir, e))?;
    let mut meta = read_meta(dir)?;
    let mut names = list_segments(dir, true)?;
    let mut dir_dirty = false;

    // Segments wholly below the purge point are leftovers of an interrupted purge.
    if let Some(p) = &meta.purged {
        while names.len() >= 2 && names[1].0 <= p.index.saturating_add(1) {
            let (_, path) = names.remove(0);
            fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
            dir_dirty = true;
        }
    }

    // Verify every segment, stopping at the first problem.
    let Verified {
        mut segments,
        markers,
        cut,
        nonzero_end,
    } = verify_segments(&names, true, &mut |_| Ok(()))?;

    let mut truncated_tail = None;
    if let Some(cut) = cut {
        let path = names[cut.at].1.clone();
        let offset = cut.offset.unwrap_or(0);
        if !cut.torn && !cfg.force_truncate_corrupt {
            return Err(LogError::Corrupt {
                path,
                offset: cut.error_offset,
                reason: cut.reason,
            });
        }
        let later = &names[cut.at + 1..];
        let mut bytes_dropped = 0u64;
        for (_, p) in later.iter().rev() {
            bytes_dropped += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(p).map_err(|e| LogError::io(p, e))?;
            dir_dirty = true;
        }
        match cut.offset {
            None => {
                bytes_dropped += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
                dir_dirty = true;
            }
            Some(off) => {
                let seg = &segments[cut.at];
                bytes_dropped += nonzero_end.saturating_sub(off);
                cut_segment(&seg.file, off, seg.capacity).map_err(|e| LogError::io(&path, e))?;
            }
        }
        let tail = TruncatedTail {
            file: path,
            offset,
            bytes_dropped,
            segments_deleted: later.len() + usize::from(cut.offset.is_none()),
            reason: cut.reason,
        };
        if cut.torn {
            tracing::warn!(
                file = %tail.file.display(),
                offset = tail.offset,
                bytes = tail.bytes_dropped,
                "log: dropped a torn final record left by a crash mid-write: {}",
                tail.reason
            );
        } else {
            tracing::warn!(
                file = %tail.file.display(),
                offset = tail.offset,
                bytes = tail.bytes_dropped,
                segments = tail.segments_deleted,
                "log: force_truncate_corrupt dropped the log from a damaged record on: {}",
                tail.reason
            );
        }
        truncated_tail = Some(tail);
    }

    // The latest committed marker: whichever of the segments' and the meta file's has the
    // highest sequence number.
    let mut latest: Option<Committed> = meta.committed.clone();
    let mut committed_in_segment = None;
    for (seg, marker) in segments.iter().zip(&markers) {
        if let Some(m) = marker {
            if latest.as_ref().is_none_or(|c| m.seq > c.seq) {
                latest = Some(Committed {
                    seq: m.seq,
                    data: m.data.clone().into(),
                });
                committed_in_segment = Some((seg.first_index, m.offset));
            }
        }
    }

    // Which entries are live: above the purge point. Segments without a live entry are not
    // needed: all of them when no entry is live (an interrupted purge, or a cut that left
    // nothing), and a last segment a cut left without entries (only entries start segments,
    // so that segment names never repeat). Before deleting, save the latest committed marker
    // in the meta file if one of them holds it.
    let purge_index = meta.purged.as_ref().map(|p| p.index);
    let live_first = segments.first().map(|first_seg| {
        purge_index.map_or(first_seg.first_index, |p| {
            first_seg.first_index.max(p.saturating_add(1))
        })
    });
    let live_next = segments.last().map(|s| s.next_index());
    let keep = match (live_first, live_next) {
        (Some(first), Some(next)) if first < next => segments
            .iter()
            .rposition(|s| !s.entries.is_empty())
            .map_or(0, |p| p + 1),
        _ => 0,
    };
    if keep < segments.len() {
        let dropped_first = segments[keep].first_index;
        if committed_in_segment.is_some_and(|(f, _)| f >= dropped_first) {
            meta.committed = latest.clone();
            write_meta(dir, &dir_file, &meta).map_err(|e| LogError::io(dir, e))?;
            committed_in_segment = None;
        }
        for seg in segments.drain(keep..).rev() {
            fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        }
        dir_dirty = true;
    }
    let range = match (live_first, segments.last()) {
        (Some(first), Some(last)) => Some((first, last.next_index() - 1)),
        _ => None,
    };
    if dir_dirty {
        sys::sync_dir(&dir_file).map_err(|e| LogError::io(dir, e))?;
    }

    let phys_next = segments.last().map(|s| s.next_index());
    let active = segments
        .last()
        .map(|s| (s.first_index, Arc::clone(&s.file), s.end_offset, s.capacity));

    let report = OpenReport {
        first_index: range.map(|r| r.0),
        last_index: range.map(|r| r.1),
        truncated_tail,
        vote: meta.vote.clone(),
        committed: latest.as_ref().map(|c| c.data.clone()),
        purged: meta.purged.as_ref().map(|p| p.data.clone()),
        purged_index: purge_index,
        segments: segments.len(),
    };
    let state = State {
        range,
        purged: meta.purged.as_ref().map(|p| (p.index, p.data.clone())),
        epoch: 0,
        written_last: range.map(|r| r.1),
        cache: Cache::empty_at(phys_next.unwrap_or(0)),
        vote: meta.vote.clone(),
        segments,
    };
    let writer = WriterInit {
        dir_file,
        meta,
        latest_committed: latest,
        committed_in_segment,
        active,
        phys_next,
    };
    Ok(Recovered {
        state,
        writer,
        report,
        lock_file,
    })
}

/// What verifying the segment files found.
pub(crate) struct Verified {
    /// The segments verified, up to and including the one with the problem (if it has a
    /// valid header).
    pub segments: Vec<Segment>,
    /// The latest committed marker of each segment in `segments`.
    pub markers: Vec<Option<ScannedMarker>>,
    /// The first problem, if any.
    pub cut: Option<Cut>,
    /// Offset just past the last non-zero byte of the segment with the problem.
    pub nonzero_end: u64,
}

/// An entry shown to the visitor of [`verify_segments`].
pub(crate) struct VisitedEntry<'a> {
    pub index: u64,
    pub payload: &'a [u8],
    pub path: &'a Path,
    pub offset: u64,
}

/// Reads and verifies the segment files `names` (sorted by first index), stopping at the first
/// problem, and shows every valid entry to `visit` (an error from it stops the verification).
/// Changes nothing on disk; `writable` only chooses how the files are opened.
pub(crate) fn verify_segments(
    names: &[(u64, PathBuf)],
    writable: bool,
    visit: &mut dyn FnMut(VisitedEntry<'_>) -> Result<(), LogError>,
) -> Result<Verified, LogError> {
    let mut segments: Vec<Segment> = Vec::new();
    // The latest committed marker of each kept segment.
    let mut markers: Vec<Option<ScannedMarker>> = Vec::new();
    let mut cut: Option<Cut> = None;
    let mut expected: Option<u64> = None;
    let mut nonzero_end = 0u64;
    for (i, (first, path)) in names.iter().enumerate() {
        let is_last = i + 1 == names.len();
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
        let whole = |error_offset: u64, reason: String| Cut {
            at: i,
            offset: None,
            error_offset,
            reason,
            torn: false,
        };
        if len > SEGMENT_FILE_BYTES_MAX {
            cut = Some(whole(
                0,
                format!(
                    "segment file is {len} bytes, larger than the {SEGMENT_FILE_BYTES_MAX}-byte maximum"
                ),
            ));
            break;
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| LogError::io(path, e))?;
        match decode_header(&buf) {
            Err((offset, reason)) => {
                cut = Some(whole(offset, format!("bad segment header: {reason}")));
                break;
            }
            Ok(h) if h != *first => {
                cut = Some(whole(
                    12,
                    format!("header says the first index is {h} but the file name says {first}"),
                ));
                break;
            }
            Ok(_) => {}
        }
        if let Some(e) = expected.filter(|e| e != first) {
            cut = Some(whole(
                0,
                format!(
                    "segment starts at index {first} but the previous one ends before index {e}: \
                     a segment is missing or misnamed"
                ),
            ));
            break;
        }
        let scan = scan_segment(&buf, *first);
        let end = scan.end_offset;
        let problem = match (&scan.stop, scan.valid_record_after) {
            (ScanStop::End, None) => None,
            (ScanStop::End, Some(p)) => Some((
                format!("record length is zero but a valid record follows at offset {p}"),
                false,
            )),
            (ScanStop::Damaged(e), None) if is_last => Some((e.to_string(), true)),
            (ScanStop::Damaged(e), Some(p)) => Some((
                format!("{e}; a valid record follows at offset {p}, so this is not a torn write"),
                false,
            )),
            (ScanStop::Damaged(e), None) => Some((
                format!("{e}, in a segment that is not the last, so this is not a torn write"),
                false,
            )),
            (ScanStop::Invalid(reason), _) => Some((reason.clone(), false)),
        };
        for (i, loc) in scan.entries.iter().enumerate() {
            let at = loc.offset as usize + RECORD_HEADER_LEN;
            visit(VisitedEntry {
                index: first + i as u64,
                payload: &buf[at..at + loc.len as usize],
                path,
                offset: loc.offset as u64,
            })?;
        }
        expected = Some(scan.next_index(*first));
        markers.push(scan.latest_marker);
        segments.push(Segment {
            first_index: *first,
            path: path.clone(),
            file: Arc::new(file),
            entries: scan.entries,
            end_offset: end,
            capacity: len,
        });
        if let Some((reason, torn)) = problem {
            // Bytes that held something, for the report: up to the last non-zero byte.
            nonzero_end = buf
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |p| p as u64 + 1);
            cut = Some(Cut {
                at: i,
                offset: Some(end),
                error_offset: end,
                reason,
                torn,
            });
            break;
        }
    }

    Ok(Verified {
        segments,
        markers,
        cut,
        nonzero_end,
    })
}

/// Segment files in `dir`, sorted by first index. With `remove_tmp`, leftover temp files of an
/// interrupted segment creation are deleted; other files are always left alone.
pub(crate) fn list_segments(dir: &Path, remove_tmp: bool) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = parse_segment_file_name(name) {
            out.push((first, entry.path()));
        } else if remove_tmp
            && name
                .strip_suffix(".tmp")
                .and_then(parse_segment_file_name)
                .is_some()
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
        }
    }
    out.sort();
    Ok(out)
}

/// Cuts a segment's records at `offset`: everything after reads as zeros again, the file keeps
/// its preallocated size, and the change is synced.
pub(crate) fn cut_segment(file: &File, offset: u64, capacity: u64) -> io::Result<()> {
    file.set_len(offset)?;
    sys::preallocate(file, capacity)?;
    file.sync_all()
}
