//! The snapshot directory: file naming, listing newest first, cleaning up abandoned temp files.
//!
//! A snapshot directory holds only snapshots: `<stem>.snap` files that are complete, and
//! `<stem>.tmp` files that a [`crate::SnapshotWriter`] is writing or that a crash abandoned. A
//! `.tmp` file is never a valid snapshot, whatever it contains; only the rename in
//! [`crate::SnapshotWriter::finish`] turns one into a `.snap`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Extension of a finished snapshot.
pub const SNAP_EXT: &str = "snap";
/// Extension of a snapshot being written.
pub const TMP_EXT: &str = "tmp";

const STEM_PREFIX: &str = "snap-";
/// Digits of each number in a stem: u64::MAX has 20, so names sort as their numbers do.
const STEM_DIGITS: usize = 20;

/// What a snapshot's file name says: its sequence number and the last log index it covers.
///
/// `seq` orders snapshots (newer is larger) and must never be reused in a directory; the
/// consensus layer derives it from its own state. `last_index` is informational, so a person
/// listing the directory sees what each file covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    pub seq: u64,
    pub last_index: u64,
}

impl SnapshotId {
    /// `snap-<seq, 20 digits>-<last_index, 20 digits>`: the `name` to give
    /// [`crate::SnapshotWriter::create`].
    pub fn file_stem(&self) -> String {
        format!(
            "{STEM_PREFIX}{:0w$}-{:0w$}",
            self.seq,
            self.last_index,
            w = STEM_DIGITS
        )
    }

    /// Parses a file name made by [`SnapshotId::file_stem`], with or without the `.snap`
    /// extension. Anything else (other digit counts, signs, other extensions) is `None`.
    pub fn parse(file_name: &str) -> Option<SnapshotId> {
        let stem = file_name
            .strip_suffix(".snap")
            .unwrap_or(file_name)
            .strip_prefix(STEM_PREFIX)?;
        let (seq, last_index) = stem.split_once('-')?;
        Some(SnapshotId {
            seq: parse_digits(seq)?,
            last_index: parse_digits(last_index)?,
        })
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.len() != STEM_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Temp files being written by live writers of this process, by canonical path.
///
/// [`list_snapshots`] deletes every other `.tmp` file, so a listing that runs while a snapshot
/// is being written must not pull the file out from under its writer. The lock is held across
/// the whole cleanup so a writer cannot start between the check and the delete. (Two processes
/// sharing one data directory are prevented a layer up, by the node's data-dir lock.)
static ACTIVE_TMP: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn active_tmp() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic while holding this lock leaves the set consistent (single insert/remove).
    ACTIVE_TMP.lock().unwrap_or_else(|e| e.into_inner())
}

/// Membership of one path in the active-temp-file set, released on drop.
#[derive(Debug)]
pub(crate) struct ActiveTmp(PathBuf);

impl ActiveTmp {
    /// Claims `canonical_tmp`, or returns `None` when another live writer holds it.
    pub(crate) fn claim(canonical_tmp: PathBuf) -> Option<ActiveTmp> {
        if active_tmp().insert(canonical_tmp.clone()) {
            Some(ActiveTmp(canonical_tmp))
        } else {
            None
        }
    }
}

impl Drop for ActiveTmp {
    fn drop(&mut self) {
        active_tmp().remove(&self.0);
    }
}

/// Lists the finished snapshots in `dir`, newest (largest [`SnapshotId::seq`]) first, and
/// deletes abandoned `*.tmp` files.
///
/// Lists what [`find_snapshots`] finds. Listing does not verify content: open or
/// [`crate::verify_file`] each candidate, falling back to the next one if it is damaged.
///
/// `dir` must be dedicated to snapshots, since every `.tmp` file in it that no live
/// [`crate::SnapshotWriter`] of this process is writing is deleted.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<PathBuf>> {
    remove_abandoned_tmp(dir)?;
    Ok(find_snapshots(dir)?
        .into_iter()
        .map(|(_, path)| path)
        .collect())
}

/// The finished snapshots in `dir` with their ids, newest first, changing nothing on disk (for
/// `tandem check` and other read-only inspection).
///
/// Only `.snap` files whose names parse with [`SnapshotId::parse`] are returned; other `.snap`
/// files are skipped with a warning.
pub fn find_snapshots(dir: &Path) -> io::Result<Vec<(SnapshotId, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = regular_file_name(&entry)? else {
            continue;
        };
        if extension(&name) != Some(SNAP_EXT) {
            continue;
        }
        let path = dir.join(&name);
        match SnapshotId::parse(&name) {
            Some(id) => found.push((id, path)),
            None => tracing::warn!(
                path = %path.display(),
                "ignoring .snap file whose name is not snap-<seq>-<last index>"
            ),
        }
    }
    found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    Ok(found)
}

/// Deletes every `.tmp` file in `dir` that no live writer of this process holds.
fn remove_abandoned_tmp(dir: &Path) -> io::Result<()> {
    let canonical_dir = dir.canonicalize()?;
    // Held throughout: see ACTIVE_TMP.
    let active = active_tmp();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = regular_file_name(&entry)? else {
            continue;
        };
        if extension(&name) != Some(TMP_EXT) || active.contains(&canonical_dir.join(&name)) {
            continue;
        }
        let path = dir.join(&name);
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "removed abandoned snapshot temp file")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not fatal: the file is never mistaken for a snapshot, and the next listing retries.
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not remove abandoned snapshot temp file"
            ),
        }
    }
    Ok(())
}

/// The entry's name when it is a regular file with a UTF-8 name (ours always are).
fn regular_file_name(entry: &fs::DirEntry) -> io::Result<Option<String>> {
    if !entry.file_type()?.is_file() {
        return Ok(None);
    }
    Ok(entry.file_name().into_string().ok())
}

fn extension(name: &str) -> Option<&str> {
    Path::new(name).extension().and_then(|e| e.to_str())
}

/// Makes a rename or create inside `dir` durable: fsync on the directory itself.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; NTFS journals the rename's metadata.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_round_trips_and_sorts_like_its_numbers() {
        let id = SnapshotId {
            seq: 42,
            last_index: 1234,
        };
        assert_eq!(
            id.file_stem(),
            "snap-00000000000000000042-00000000000000001234"
        );
        assert_eq!(SnapshotId::parse(&id.file_stem()), Some(id));
        assert_eq!(SnapshotId::parse(&(id.file_stem() + ".snap")), Some(id));
        let max = SnapshotId {
            seq: u64::MAX,
            last_index: u64::MAX,
        };
        assert_eq!(SnapshotId::parse(&max.file_stem()), Some(max));
        assert!(id.file_stem() < max.file_stem());
    }

    #[test]
    fn parse_refuses_near_misses() {
        for bad in [
            "",
            "snap-",
            "snap-1-2",
            "snap-00000000000000000042-00000000000000001234.tmp",
            "snap-0000000000000000004x-00000000000000001234",
            "snap-+0000000000000000042-00000000000000001234",
            "snap-99999999999999999999-00000000000000001234", // > u64::MAX
            "snap-00000000000000000042-00000000000000001234-1",
            "snap-00000000000000000042_00000000000000001234",
            "xsnap-00000000000000000042-00000000000000001234",
        ] {
            assert_eq!(SnapshotId::parse(bad), None, "{bad:?} parsed");
        }
    }
}
