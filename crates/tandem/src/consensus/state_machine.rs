//! openraft's `RaftStateMachine` over the keyspace, with snapshots in `DATA_DIR/snapshots`.
//!
//! The keyspace, the last applied log id and the membership live together under one lock
//! ([`SmState`]) so a snapshot always pairs a keyspace with exactly the log position it reflects.
//!
//! Snapshots: the two newest are kept. The log store may physically purge only up to the older
//! one's last index ([`PurgeFloor`]), so a newest snapshot found damaged at start-up can be
//! replaced by the previous one plus a replay of the log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use openraft::{EntryPayload, OptionalSend};
use parking_lot::{Mutex, RwLock};
use tandem_core::Keyspace;
use tracing::{error, info, warn};

use super::log_store::PurgeFloor;
use super::types::{LogId, Replies, SnapshotMeta, StoredMembership, TypeConfig};

/// The state machine's state: what a snapshot captures.
#[derive(Default)]
pub struct SmState {
    pub keyspace: Keyspace,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// A snapshot file on disk, handed to openraft (and, later, streamed to replicas).
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// Facts about snapshots, for INFO persistence.
#[derive(Default)]
pub struct SnapshotStats {
    pub count: AtomicU64,
    pub last_duration_ms: AtomicU64,
    pub last_bytes: AtomicU64,
    pub last_unix_secs: AtomicU64,
    pub in_progress: std::sync::atomic::AtomicBool,
    /// Values the snapshot loaded at start-up although they fail their digest (no better copy
    /// was on disk): the scrubber repairs them from the other members first (`server/scrub.rs`).
    pub loaded_damaged_values: AtomicU64,
}

pub struct SmShared {
    pub state: Arc<RwLock<SmState>>,
    dir: PathBuf,
    /// Newest snapshot: (meta, path).
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    purge_floor: PurgeFloor,
    seq: AtomicU64,
    pub stats: SnapshotStats,
    /// A received snapshot already loaded and verified (path, state), so installing it does not
    /// read it again.
    preloaded: Mutex<Option<(PathBuf, SnapshotMeta, SmState)>>,
    /// Where apply reports damaged values and keys (set once, before openraft starts).
    damage: std::sync::OnceLock<Arc<super::damage::Damage>>,
}

#[derive(Clone)]
pub struct StateMachine {
    pub shared: Arc<SmShared>,
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// What start-up found in the snapshot directory.
pub struct LoadReport {
    /// The snapshot loaded, if any: (path, last log id, keys).
    pub loaded: Option<(PathBuf, Option<LogId>, usize)>,
    /// Snapshots that failed verification and were skipped (path, reason).
    pub skipped: Vec<(PathBuf, String)>,
    /// Values loaded although they fail their digest (no better copy existed); they answer
    /// CORRUPT.
    pub corrupt_values: usize,
}

/// Loads one snapshot file into a fresh state. Every block CRC and the whole-file digest are
/// verified; so is every value, and a failing value is an error unless `keep_corrupt`, in which
/// case it is loaded (it answers CORRUPT) and counted in the returned number.
pub fn load_snapshot_file(
    path: &Path,
    keep_corrupt: bool,
) -> Result<(SmState, SnapshotMeta, usize), String> {
    let reader = tandem_snapshot::SnapshotReader::open(path).map_err(|e| e.to_string())?;
    load_snapshot(reader, path, keep_corrupt)
}

/// [`load_snapshot_file`] from any reader (a snapshot arriving over the network is loaded while
/// it arrives); `path` names it in errors.
pub fn load_snapshot<R: std::io::Read>(
    mut reader: tandem_snapshot::SnapshotReader<R>,
    path: &Path,
    keep_corrupt: bool,
) -> Result<(SmState, SnapshotMeta, usize), String> {
    let meta: SnapshotMeta = postcard::from_bytes(reader.meta())
        .map_err(|e| format!("{}: snapshot meta is unreadable: {e}", path.display()))?;
    let mut state = SmState {
        keyspace: Keyspace::new(),
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    let mut corrupt = 0;
    let mut loader = state.keyspace.bulk_load();
    while let Some(record) = reader.next_record().map_err(|e| e.to_string())? {
        let loaded = if keep_corrupt {
            loader.load_keeping_corrupt(&record).map(|intact| {
                if !intact {
                    corrupt += 1;
                }
            })
        } else {
            loader.load(&record)
        };
        loaded.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    drop(loader);
    Ok((state, meta, corrupt))
}

impl StateMachine {
    /// Opens the snapshot directory and loads the best starting point, in this order:
    /// 1. the newest snapshot that verifies completely (an older one only if the log still holds
    ///    every entry after it, so the replay reaches the same state);
    /// 2. an empty state, if the log was never purged (the replay rebuilds everything);
    /// 3. the newest snapshot whose only fault is values that fail their digest (captured from
    ///    memory that was already damaged): those keys answer CORRUPT, every other key serves.
    ///
    /// Otherwise start-up stops with an error saying what to do. Snapshots passed over for a
    /// fault are renamed `*.snap.damaged` (kept for inspection, never used again).
    ///
    /// `log_purged_index`: the highest index the log no longer holds (None: nothing purged).
    pub fn open(
        dir: &Path,
        log_purged_index: Option<u64>,
        purge_floor: PurgeFloor,
    ) -> io::Result<(StateMachine, LoadReport)> {
        std::fs::create_dir_all(dir)?;
        let snapshots = tandem_snapshot::list_snapshots(dir)?;
        let covered = |last: Option<LogId>| match (log_purged_index, last) {
            (None, _) => true,
            (Some(purged), Some(last)) => purged <= last.index(),
            (Some(_), None) => false,
        };
        let mut report = LoadReport {
            loaded: None,
            skipped: Vec::new(),
            corrupt_values: 0,
        };
        let mut chosen: Option<(SmState, SnapshotMeta, PathBuf)> = None;
        for (i, path) in snapshots.iter().enumerate() {
            match load_snapshot_file(path, false) {
                Ok((s, meta, _)) if i == 0 || covered(meta.last_log_id) => {
                    chosen = Some((s, meta, path.clone()));
                    break;
                }
                Ok((_, meta, _)) => {
                    warn!(
                        "snapshot {} verifies but the log no longer holds the entries after it (last index {:?})",
                        path.display(),
                        meta.last_log_id.map(|l| l.index())
                    );
                }
                Err(e) => {
                    error!("snapshot {} failed verification: {e}", path.display());
                    report.skipped.push((path.clone(), e));
                }
            }
        }
        if chosen.is_none() && !report.skipped.is_empty() && !covered(None) {
            for (i, path) in snapshots.iter().enumerate() {
                let Ok((s, meta, corrupt)) = load_snapshot_file(path, true) else {
                    continue;
                };
                if i == 0 || covered(meta.last_log_id) {
                    error!(
                        "loaded snapshot {} keeping {corrupt} value(s) that fail their digest: no other copy is \
                         available here; those keys answer CORRUPT until they are rewritten",
                        path.display()
                    );
                    report.corrupt_values = corrupt;
                    report.skipped.retain(|(p, _)| p != path);
                    chosen = Some((s, meta, path.clone()));
                    break;
                }
            }
        }
        if chosen.is_none() && !report.skipped.is_empty() && !covered(None) {
            return Err(io_err(format!(
                "no usable snapshot in {}: {}. The log no longer holds the entries they cover (purged up to index \
                 {:?}). Restore the data directory from a backup.",
                dir.display(),
                report
                    .skipped
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display()))
                    .collect::<Vec<_>>()
                    .join("; "),
                log_purged_index
            )));
        }
        for (bad, _) in &report.skipped {
            let aside = bad.with_extension("snap.damaged");
            match std::fs::rename(bad, &aside) {
                Ok(()) => warn!("damaged snapshot set aside as {}", aside.display()),
                Err(e) => warn!("cannot set aside damaged snapshot {}: {e}", bad.display()),
            }
        }
        let (state, current) = match chosen {
            Some((s, meta, path)) => {
                if path != snapshots[0] {
                    warn!(
                        "starting from the older snapshot {} and replaying the log after it",
                        path.display()
                    );
                }
                report.loaded = Some((path.clone(), meta.last_log_id, s.keyspace.len()));
                (s, Some((meta, path)))
            }
            None => {
                if !report.skipped.is_empty() {
                    warn!("no snapshot verifies; rebuilding the whole keyspace from the log, which was never purged");
                }
                (SmState::default(), None)
            }
        };
        let sm = StateMachine {
            shared: Arc::new(SmShared {
                state: Arc::new(RwLock::new(state)),
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                purge_floor,
                seq: AtomicU64::new(next_seq(&snapshots)),
                stats: SnapshotStats::default(),
                preloaded: Mutex::new(None),
                damage: std::sync::OnceLock::new(),
            }),
        };
        sm.shared
            .stats
            .loaded_damaged_values
            .store(report.corrupt_values as u64, Ordering::Relaxed);
        sm.update_purge_floor()?;
        Ok((sm, report))
    }

    /// Has apply report the damage it finds to `damage` (`damage.rs`, `Damage::after_apply`).
    pub fn attach_damage(&self, damage: Arc<super::damage::Damage>) {
        let _ = self.shared.damage.set(damage);
    }

    /// Keeps a received, verified snapshot's state for the `install_snapshot` that follows.
    pub fn preload(&self, path: PathBuf, meta: SnapshotMeta, state: SmState) {
        *self.shared.preloaded.lock() = Some((path, meta, state));
    }

    /// Drops a preloaded state that was not installed.
    pub fn clear_preload(&self) {
        self.shared.preloaded.lock().take();
    }

    /// Last log index covered by the newest snapshot.
    pub fn current_snapshot_index(&self) -> Option<u64> {
        self.shared
            .current
            .lock()
            .as_ref()
            .and_then(|(meta, _)| meta.last_log_id.map(|l| l.index()))
    }

    /// Keeps the two newest snapshots and lets the log purge up to the older one.
    fn update_purge_floor(&self) -> io::Result<()> {
        let snapshots = tandem_snapshot::list_snapshots(&self.shared.dir)?;
        for old in snapshots.iter().skip(2) {
            if let Err(e) = std::fs::remove_file(old) {
                warn!("cannot remove old snapshot {}: {e}", old.display());
            }
        }
        let floor = match snapshots.get(1) {
            Some(prev) => tandem_snapshot::SnapshotReader::open(prev)
                .ok()
                .and_then(|r| postcard::from_bytes::<SnapshotMeta>(r.meta()).ok())
                .and_then(|m| m.last_log_id.map(|l| l.index()))
                .unwrap_or(0),
            None => 0,
        };
        self.shared.purge_floor.set(floor);
        Ok(())
    }

    /// Writes a snapshot of the current state. Serializes under the read lock (reads continue,
    /// applies wait), writes the file without it.
    pub fn write_snapshot(&self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        self.write_snapshot_as(|st| SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
        })
    }

    /// Writes a snapshot of the current state under the metadata `meta_of` gives for it (detach
    /// writes one that names a new membership; see `detach.rs`).
    pub fn write_snapshot_as(
        &self,
        meta_of: impl FnOnce(&SmState) -> SnapshotMeta,
    ) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        let started = Instant::now();
        let shared = &self.shared;
        shared.stats.in_progress.store(true, Ordering::Relaxed);
        let result = (|| {
            let (meta, records) = {
                let st = shared.state.read();
                let meta = meta_of(&st);
                let mut records: Vec<u8> = Vec::with_capacity(st.keyspace.len() * 160);
                st.keyspace.for_each_record(|rec| {
                    records.extend_from_slice(&(rec.len() as u32).to_le_bytes());
                    records.extend_from_slice(rec);
                });
                (meta, records)
            };
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            let name = snapshot_name(seq, meta.last_log_id.map(|l| l.index()).unwrap_or(0));
            let meta_bytes = postcard::to_stdvec(&meta).map_err(io::Error::other)?;
            let mut w = tandem_snapshot::SnapshotWriter::create(&shared.dir, &name, &meta_bytes)
                .map_err(io::Error::other)?;
            let mut rest = &records[..];
            while rest.len() >= 4 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                w.write_record(&rest[4..4 + len])
                    .map_err(io::Error::other)?;
                rest = &rest[4 + len..];
            }
            let info = w.finish().map_err(io::Error::other)?;
            info!(
                "snapshot {} written: last index {:?}, {} bytes, {} ms",
                info.path.display(),
                meta.last_log_id.map(|l| l.index()),
                info.size,
                started.elapsed().as_millis()
            );
            shared.stats.last_bytes.store(info.size, Ordering::Relaxed);
            *shared.current.lock() = Some((meta.clone(), info.path.clone()));
            self.update_purge_floor()?;
            Ok(Snapshot {
                meta,
                snapshot: SnapshotFile { path: info.path },
            })
        })();
        shared.stats.in_progress.store(false, Ordering::Relaxed);
        if result.is_ok() {
            shared.stats.count.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .last_duration_ms
                .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            shared.stats.last_unix_secs.store(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        result
    }
}

/// The file stem of a snapshot: the sequence orders snapshots, the last index informs.
fn snapshot_name(seq: u64, last_index: u64) -> String {
    tandem_snapshot::SnapshotId { seq, last_index }.file_stem()
}

fn next_seq(existing: &[PathBuf]) -> u64 {
    existing
        .iter()
        .filter_map(|p| tandem_snapshot::SnapshotId::parse(p.file_name()?.to_str()?))
        .map(|id| id.seq)
        .max()
        .map(|s| s + 1)
        .unwrap_or(1)
}

impl StateMachine {
    /// Takes the state's write lock, waiting without blocking the thread.
    ///
    /// While a snapshot is being serialized it holds the read lock (about a second with 1M keys).
    /// Blocking on the write lock then would stall the runtime thread — and, since a queued
    /// writer also holds back new readers, every client. Polling instead lets reads go on; only
    /// writes wait for the snapshot.
    async fn write_state(&self) -> parking_lot::RwLockWriteGuard<'_, SmState> {
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            if let Some(guard) = self.shared.state.try_write() {
                return guard;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_snapshot())
            .await
            .map_err(io::Error::other)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self.shared.state.read();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let replies = {
                let mut st = self.write_state().await;
                st.last_applied = Some(log_id);
                match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(proposal) => {
                        let corrupt_before = st.keyspace.integrity().corrupt_detected;
                        let replies = st.keyspace.apply(&proposal.0);
                        if let Some(damage) = self.shared.damage.get() {
                            damage.after_apply(
                                &st.keyspace,
                                &proposal.0,
                                log_id.index(),
                                corrupt_before,
                            );
                        }
                        replies
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(log_id), m.clone());
                        Vec::new()
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(Replies(replies));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let preloaded = {
            let mut slot = self.shared.preloaded.lock();
            match slot.take() {
                Some((path, file_meta, state))
                    if path == snapshot.path && file_meta.last_log_id == meta.last_log_id =>
                {
                    Some((state, file_meta))
                }
                _ => None,
            }
        };
        let (state, file_meta) = match preloaded {
            Some(loaded) => loaded,
            None => {
                let (state, file_meta, _) =
                    load_snapshot_file(&snapshot.path, false).map_err(io_err)?;
                (state, file_meta)
            }
        };
        if file_meta.last_log_id != meta.last_log_id {
            return Err(io_err(format!(
                "snapshot {} covers {:?}, expected {:?}",
                snapshot.path.display(),
                file_meta.last_log_id,
                meta.last_log_id
            )));
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let name = snapshot_name(seq, meta.last_log_id.map(|l| l.index()).unwrap_or(0));
        let dest = self.shared.dir.join(format!("{name}.snap"));
        std::fs::rename(&snapshot.path, &dest)?;
        std::fs::File::open(&self.shared.dir)?.sync_all()?;
        *self.shared.state.write() = state;
        *self.shared.current.lock() = Some((meta.clone(), dest));
        self.update_purge_floor()?;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        Ok(self
            .shared
            .current
            .lock()
            .as_ref()
            .map(|(meta, path)| Snapshot {
                meta: meta.clone(),
                snapshot: SnapshotFile { path: path.clone() },
            }))
    }
}
