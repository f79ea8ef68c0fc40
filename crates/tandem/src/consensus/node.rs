//! Start-up of one consensus node and the handle the server uses.
//!
//! Start-up order (each step must finish before the next):
//! 1. identity file: refuse a data dir that belongs to another node or cluster;
//! 2. open the log (torn tail truncated, damage elsewhere refused with file and offset);
//! 3. load the newest valid snapshot (or the previous one if the log covers it);
//! 4. start openraft, initialize a fresh single-voter cluster;
//! 5. `wait_for_recovery`: replay committed entries before any read is served.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::{Raft, ReadPolicy, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tandem_core::{Batch, Frame};
use tandem_log::{FsyncPolicy, Log, LogConfig};
use tracing::{info, warn};

use super::combiner::{Combiner, CombinerLimits};
use super::log_store::{LogStore, PurgeFloor};
use super::network::Network;
use super::read_barrier::ReadBarrier;
use super::state_machine::{SmState, StateMachine};
use super::types::{NodeAddr, NodeId, Proposal, TypeConfig};

/// Settings of the consensus layer (a subset of the server's configuration).
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    pub data_dir: PathBuf,
    pub node_id: NodeId,
    pub client_addr: String,
    pub cluster_addr: String,
    pub fsync: FsyncPolicy,
    pub log_segment_bytes: u64,
    /// Take a snapshot after this many entries since the previous one.
    pub snapshot_entries: u64,
    /// A write not committed within this time fails with an error whose outcome is unknown.
    pub write_timeout: Duration,
    /// Truncate the log at a damaged record instead of refusing to start.
    pub force_truncate_log: bool,
    /// Recent log payloads kept in memory.
    pub log_cache_bytes: usize,
    /// How client writes are combined into log entries.
    pub combiner: CombinerLimits,
}

/// A data dir's identity: which cluster and which node it belongs to.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Identity {
    cluster_id: String,
    node_id: NodeId,
}

const IDENTITY_FILE: &str = "identity.toml";

/// How often the server checks that the consensus core is still running.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Longest a SAVE waits for its snapshot.
const SNAPSHOT_WAIT_MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// The entry may or may not be committed: never retry a non-idempotent write automatically.
    #[error("UNKNOWN write outcome unknown: {0}; check the key before retrying")]
    OutcomeUnknown(String),
    #[error("TRYAGAIN write not accepted: {0}")]
    NotAccepted(String),
    #[error("TIMEOUT write not committed within {0} ms; its outcome is unknown, check the key before retrying")]
    Timeout(u128),
}

impl WriteError {
    pub fn to_frame(&self) -> Frame {
        Frame::Error(self.to_string())
    }
}

pub struct Node {
    pub raft: Raft<TypeConfig, StateMachine>,
    pub sm: StateMachine,
    pub log: Arc<Log>,
    pub config: ConsensusConfig,
    pub cluster_id: String,
    barrier: ReadBarrier,
    combiner: Combiner,
    _dir_lock: DirLock,
}

fn check_identity(dir: &Path, node_id: NodeId, has_data: bool) -> io::Result<String> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id: Identity = toml::from_str(&text).map_err(|e| {
                io::Error::other(format!(
                    "{} is damaged ({e}); restore it, or move the data dir away to start this node afresh",
                    path.display()
                ))
            })?;
            if id.node_id != node_id {
                return Err(io::Error::other(format!(
                    "data dir {} belongs to node {} (cluster {}), not node {node_id}: start with --node-id {} or use \
                     another --data-dir",
                    dir.display(),
                    id.node_id,
                    id.cluster_id,
                    id.node_id
                )));
            }
            Ok(id.cluster_id)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if has_data {
                return Err(io::Error::other(format!(
                    "data dir {} holds a log or snapshots but no {IDENTITY_FILE}: it may belong to another node. \
                     Restore the file, or move the data dir away to start afresh",
                    dir.display()
                )));
            }
            let id = Identity {
                cluster_id: format!("{:032x}", rand::random::<u128>()),
                node_id,
            };
            let text = toml::to_string(&id).map_err(io::Error::other)?;
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(id.cluster_id)
        }
        Err(e) => Err(e),
    }
}

/// Holds an exclusive lock on `DATA_DIR/LOCK` for the life of the node: two processes on one data
/// dir would corrupt each other's log.
pub struct DirLock(#[allow(dead_code)] std::fs::File);

fn lock_data_dir(dir: &Path) -> io::Result<DirLock> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "data dir {} is in use by another tandem process (cannot lock {})",
            dir.display(),
            path.display()
        )));
    }
    Ok(DirLock(file))
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

impl Node {
    pub async fn start(config: ConsensusConfig) -> io::Result<Arc<Node>> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)?;
        let log_dir = dir.join("log");
        let snap_dir = dir.join("snapshots");
        let dir_lock = lock_data_dir(dir)?;
        let has_data = dir_has_files(&log_dir) || dir_has_files(&snap_dir);
        let cluster_id = check_identity(dir, config.node_id, has_data)?;

        let log_cfg = LogConfig {
            segment_size_bytes: config.log_segment_bytes,
            fsync: config.fsync,
            force_truncate_corrupt: config.force_truncate_log,
            cache_bytes_max: config.log_cache_bytes,
        };
        let (log, report) = Log::open(&log_dir, log_cfg).map_err(io::Error::other)?;
        if let Some(t) = &report.truncated_tail {
            warn!("log: truncated a torn record at the tail: {t:?}");
        }
        let log = Arc::new(log);
        let floor = PurgeFloor::default();
        let (sm, load) = StateMachine::open(&snap_dir, report.purged_index, floor.clone())?;
        if let Some((path, last, keys)) = &load.loaded {
            info!(
                "loaded snapshot {} (last log id {last:?}, {keys} keys)",
                path.display()
            );
        }
        let snapshot_last = load.loaded.as_ref().and_then(|l| l.1);
        let mut log_store = LogStore::new(log.clone(), &report, floor)?;
        log_store.reconcile_with_snapshot(snapshot_last)?;

        let raft_config = openraft::Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            enable_pre_vote: Some(true),
            // Must be at least leader lease + max election timeout (DESIGN.md, traps).
            quorum_loss_probe_interval: Some(1500),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            // The log store keeps what the previous snapshot needs on its own (PurgeFloor).
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(io::Error::other)?);
        let raft = Raft::new(config.node_id, raft_config, Network, log_store, sm.clone())
            .await
            .map_err(io::Error::other)?;

        if !raft.is_initialized().await.map_err(io::Error::other)? {
            let mut members = BTreeMap::new();
            members.insert(
                config.node_id,
                NodeAddr {
                    cluster_addr: config.cluster_addr.clone(),
                    client_addr: config.client_addr.clone(),
                },
            );
            info!("initializing a new single-voter cluster {cluster_id}");
            raft.initialize(members).await.map_err(io::Error::other)?;
        }
        // No read may be served before the state machine holds everything committed before the
        // restart (DESIGN.md, traps).
        raft.wait_for_recovery(Some(Duration::from_secs(600)))
            .await
            .map_err(|e| io::Error::other(format!("recovery did not finish: {e}")))?;

        let r = raft.clone();
        let barrier = ReadBarrier::new(
            Arc::new(move || {
                let r = r.clone();
                Box::pin(async move {
                    r.ensure_linearizable(ReadPolicy::ReadIndex)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            }),
            config.write_timeout,
        );
        let proposer = raft.clone();
        let timeout = config.write_timeout;
        let combiner = Combiner::start(
            config.combiner,
            Arc::new(move |batch| Box::pin(Node::propose(proposer.clone(), batch, timeout))),
        );
        Ok(Arc::new(Node {
            raft,
            sm,
            log,
            config,
            cluster_id,
            barrier,
            combiner,
            _dir_lock: dir_lock,
        }))
    }

    /// The state machine state: the keyspace and the applied position.
    pub fn state(&self) -> &Arc<RwLock<SmState>> {
        &self.sm.shared.state
    }

    /// Writes a batch (one request: a pipeline's writes, a transaction) and returns the state
    /// machine's replies, one per op, once it is committed and applied. `bytes` is its size in
    /// argument bytes. Requests are combined into log entries (see `combiner.rs`).
    pub async fn write(&self, batch: Batch, bytes: usize) -> Result<Vec<Frame>, WriteError> {
        self.combiner.write(batch, bytes).await
    }

    /// Hands one entry to openraft (in call order) and returns a future of its replies, bounded
    /// by the write timeout.
    async fn propose(
        raft: Raft<TypeConfig, StateMachine>,
        batch: Batch,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Frame>, WriteError>> + Send>>
    {
        let (responder, applied) = openraft::impls::ProgressResponder::complete_only();
        if let Err(fatal) = raft.client_write_ff(Proposal(batch), Some(responder)).await {
            let e = WriteError::NotAccepted(fatal.to_string());
            return Box::pin(async move { Err(e) });
        }
        Box::pin(async move {
            match tokio::time::timeout(timeout, applied).await {
                Err(_) => Err(WriteError::Timeout(timeout.as_millis())),
                Ok(Err(_)) => Err(WriteError::OutcomeUnknown(
                    "the consensus core dropped the write".into(),
                )),
                Ok(Ok(Ok(resp))) => Ok(resp.data.0),
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => Err(WriteError::NotAccepted(
                    format!("this node is not the primary (primary: {:?})", f.leader_id),
                )),
                Ok(Ok(Err(e))) => Err(WriteError::OutcomeUnknown(e.to_string())),
            }
        })
    }

    /// Waits until a read that arrived before this call would be linearizable.
    ///
    /// Fast path: when this node is the leader and the only voter, the local state machine
    /// already holds every acknowledged write (a write is acknowledged only after it is applied
    /// here, and no other node can commit anything), so no barrier round is needed. This stays
    /// true while a voter is being added: joint consensus needs this node's vote to elect anyone
    /// else until the new configuration alone is committed, which happens after openraft has
    /// published it in the metrics read here.
    pub async fn read_barrier(&self) -> Result<(), String> {
        if self.is_sole_voter_leader() {
            return Ok(());
        }
        self.barrier.wait().await
    }

    fn is_sole_voter_leader(&self) -> bool {
        // `metrics()`, not `server_metrics()`: only the former reports a core that has stopped.
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader || m.running_state.is_err() {
            return false;
        }
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(self.config.node_id) && voters.next().is_none()
    }

    pub fn is_primary(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Takes a snapshot now through openraft (SAVE) and waits (bounded) until a snapshot covers
    /// every write applied before the call.
    pub async fn snapshot_now(&self) -> Result<(), String> {
        let target = self.state().read().last_applied.map(|l| l.index());
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT_MAX;
        while self.sm.current_snapshot_index() < target {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "no snapshot covering index {target:?} within {} s; see the server log",
                    SNAPSHOT_WAIT_MAX.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Resolves when the consensus core has stopped (a storage failure, shutdown), with why.
    /// A node whose core stopped can neither write nor serve linearizable reads: the server exits
    /// so a supervisor restarts it, rather than staying up half alive.
    ///
    /// Polls (every `STOP_POLL_INTERVAL`) instead of watching the metrics: they change several
    /// times per write, and a watcher would be woken, on another thread, for every one.
    pub async fn stopped(&self) -> String {
        loop {
            // Never hold the borrow across an await (DESIGN.md, traps).
            let state = self.raft.metrics().borrow_watched().running_state.clone();
            if let Err(fatal) = state {
                return fatal.to_string();
            }
            tokio::time::sleep(STOP_POLL_INTERVAL).await;
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }
}
