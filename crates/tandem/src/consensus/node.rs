//! Start-up of one consensus node and the handle the server uses.
//!
//! Start-up order (each step must finish before the next):
//! 1. identity file: refuse a data dir that belongs to another node or cluster;
//! 2. open the log (torn tail truncated, damage elsewhere refused with file and offset);
//! 3. load the newest valid snapshot (or the previous one if the log covers it);
//! 4. start openraft and the peer listener (when a cluster secret is set);
//! 5. `wait_for_recovery`: replay committed entries before any read is served;
//! 6. form the cluster if needed: `--initial-cluster` bootstrap, `--join`, or (standalone) a
//!    single-voter cluster on the first write (see `membership.rs`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::{Raft, ReadPolicy, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use tandem_core::{Batch, Frame};
use tandem_log::{FsyncPolicy, Log, LogConfig};
use tracing::{info, warn};

use super::combiner::{Combiner, CombinerLimits};
use super::damage::{Damage, RepairConfig};
use super::identity::IdentityFile;
use super::log_store::{LogStore, PurgeFloor};
use super::network::{Network, PeerContext};
use super::read_barrier::ReadBarrier;
use super::rebuild::RebuildMode;
use super::service::PeerService;
use super::snapshot_transfer::Receiver;
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
    /// Shared secret of the cluster; without one the node talks to no other node.
    pub cluster_secret: Option<String>,
    /// `--initial-cluster`: the voters a new cluster starts with (id, cluster address).
    pub initial_cluster: Vec<(NodeId, String)>,
    /// `--join`: the client address of a member to ask for admission as a read replica.
    pub join: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Deadline of one RPC between nodes.
    pub rpc_timeout: Duration,
    pub snapshot_bytes_per_sec_max: u64,
    pub snapshot_chunk_bytes: usize,
    pub retention: Retention,
    /// Bind address of the cluster listener.
    pub cluster_bind: std::net::SocketAddr,
    /// When to rebuild from the peers instead of refusing damaged files (`rebuild.rs`).
    pub rebuild: RebuildMode,
    /// How damaged copies are repaired from the other members (`repair.rs`).
    pub repair: RepairConfig,
}

/// How much log the primary keeps beyond what snapshots cover, so a restarted or briefly
/// disconnected replica catches up from the log instead of needing a snapshot. Each is a
/// minimum: the log keeps the longest of the three.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub entries: u64,
    pub bytes: u64,
    pub age: Duration,
}

/// How often the server checks that the consensus core is still running.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Longest start-up waits to recover the committed state (a replica needs to hear the primary).
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(600);

/// Longest a write waits for the sole voter (this node) to elect itself.
const OWN_ELECTION_WAIT_MAX: Duration = Duration::from_secs(5);

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
    /// This node is a replica.
    #[error("READONLY You can't write against a read only replica.")]
    ReadOnly,
}

/// A committed write: its log index (the commit position clients can wait for) and the replies.
#[derive(Debug)]
pub struct Written {
    pub index: u64,
    pub frames: Vec<Frame>,
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
    pub identity: Arc<IdentityFile>,
    pub ctx: Arc<PeerContext>,
    pub service: Arc<PeerService>,
    /// Serializes membership changes (one admin path).
    pub admin_lock: tokio::sync::Mutex<()>,
    /// The planned switchover (FAILOVER) in progress, if any.
    pub switchover: super::switchover::SwitchoverState,
    /// One detach (REPLICAOF NO ONE) at a time.
    pub detach_lock: tokio::sync::Mutex<()>,
    /// Set by detach: no consensus message is taken until the process restarts (`detach.rs`).
    pub detached_gate: std::sync::atomic::AtomicBool,
    /// Rebuilding from the peers after losing its files: it does not vote (`rebuild.rs`).
    pub rebuilding: std::sync::atomic::AtomicBool,
    /// The primary accepted the rebuild: until then appends and snapshots are refused, so the
    /// primary never sees this node's empty log before it allowed replication to start over.
    pub rebuild_accepted: std::sync::atomic::AtomicBool,
    /// Set when the node cannot go on (bootstrap refused): the server exits with it.
    pub fatal: parking_lot::Mutex<Option<String>>,
    /// Damaged copies found, repaired and quarantined (`damage.rs`, `repair.rs`).
    pub damage: Arc<Damage>,
    /// Divergence verification: one at a time, and its counters (`verify.rs`).
    pub verify: super::verify::VerifyState,
    barrier: ReadBarrier,
    combiner: Combiner,
    _dir_lock: DirLock,
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

/// Opens the log, the newest valid snapshot and the log store over them; an error names the
/// damaged file.
fn open_storage(
    config: &ConsensusConfig,
    log_dir: &Path,
    snap_dir: &Path,
) -> io::Result<(Arc<Log>, StateMachine, LogStore)> {
    let log_cfg = LogConfig {
        segment_size_bytes: config.log_segment_bytes,
        fsync: config.fsync,
        force_truncate_corrupt: config.force_truncate_log,
        cache_bytes_max: config.log_cache_bytes,
    };
    let (log, report) = Log::open(log_dir, log_cfg).map_err(io::Error::other)?;
    if let Some(t) = &report.truncated_tail {
        warn!("log: truncated a torn record at the tail: {t:?}");
    }
    let log = Arc::new(log);
    let floor = PurgeFloor::default();
    let (sm, load) = StateMachine::open(snap_dir, report.purged_index, floor.clone())?;
    if let Some((path, last, keys)) = &load.loaded {
        info!(
            "loaded snapshot {} (last log id {last:?}, {keys} keys)",
            path.display()
        );
    }
    let snapshot_last = load.loaded.as_ref().and_then(|l| l.1);
    let mut log_store = LogStore::new(log.clone(), &report, floor)?;
    log_store.reconcile_with_snapshot(snapshot_last)?;
    Ok((log, sm, log_store))
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
        let has_peers = config.initial_cluster.len() > 1 || config.join.is_some();
        // A rebuild interrupted by a restart resumes: the node must not come back as an ordinary
        // member with the partial log it had received.
        let resumed = super::rebuild::in_progress(dir)?.is_some();
        if resumed {
            warn!(
                "resuming the rebuild from the peers that was in progress ({} present)",
                super::rebuild::MARKER_FILE
            );
        }
        if config.rebuild == RebuildMode::Now && !resumed {
            if !dir.join(super::identity::IDENTITY_FILE).exists() {
                return Err(io::Error::other(format!(
                    "--rebuild-from-peers: data dir {} has no identity file, so this node belongs to no cluster to \
                     rebuild from; start it without the flag to add it as a new node",
                    dir.display()
                )));
            }
            if !has_peers {
                return Err(io::Error::other(
                    "--rebuild-from-peers needs the cluster's addresses: give the node its --initial-cluster or \
                     --join HOST:PORT (any member's client address)",
                ));
            }
            super::rebuild::mark(dir, false)?;
            let aside = super::rebuild::move_aside(dir)?;
            warn!(
                "--rebuild-from-peers: moved the log and snapshots to {}; rebuilding from the peers",
                aside.display()
            );
        }
        let mut rebuilding = resumed || config.rebuild == RebuildMode::Now;
        let has_data = dir_has_files(&log_dir) || dir_has_files(&snap_dir);
        // A rebuild starts with an empty log on purpose, under the identity it keeps.
        let identity = Arc::new(IdentityFile::open(
            dir,
            config.node_id,
            has_data || rebuilding,
        )?);
        let (log, sm, log_store) = match open_storage(&config, &log_dir, &snap_dir) {
            Ok(opened) => opened,
            // Only damage (a failed check: kind Other/InvalidData) is rebuilt; a permission or
            // full-disk error would be the same on every node and is the operator's to fix.
            Err(damage)
                if config.rebuild == RebuildMode::OnDamage
                    && !rebuilding
                    && has_peers
                    && matches!(
                        damage.kind(),
                        io::ErrorKind::Other
                            | io::ErrorKind::InvalidData
                            | io::ErrorKind::UnexpectedEof
                    )
                    && !identity.cluster_id().is_empty() =>
            {
                super::rebuild::mark(dir, false)?;
                let aside = super::rebuild::move_aside(dir)?;
                warn!(
                    "--on-damage rebuild: {damage}; moved the log and snapshots to {} and rebuilding from the peers",
                    aside.display()
                );
                rebuilding = true;
                open_storage(&config, &log_dir, &snap_dir)?
            }
            Err(damage) => return Err(damage),
        };

        // Before openraft starts applying: apply reports the damage it finds here.
        let damage = Arc::new(Damage::new(config.repair));
        sm.attach_damage(damage.clone());

        let raft_config = openraft::Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            enable_pre_vote: Some(true),
            // Must be at least leader lease + max election timeout (DESIGN.md, traps).
            quorum_loss_probe_interval: Some(
                (config.election_timeout_max_ms * 2 + config.heartbeat_interval_ms).max(1500),
            ),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            // Never purged by openraft on its own: the retention task decides (`retention.rs`).
            max_in_snapshot_log_to_keep: u64::MAX / 4,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(io::Error::other)?);
        let addr = NodeAddr {
            cluster_addr: config.cluster_addr.clone(),
            client_addr: config.client_addr.clone(),
            incarnation: identity.incarnation(),
        };
        let secret = config.cluster_secret.clone().unwrap_or_default();
        let mut transport = tandem_transport::TransportConfig::new(secret.clone().into_bytes());
        // One log entry (up to the log's record limit) must fit in one append frame.
        transport.frame_bytes_max = (tandem_log::config::PAYLOAD_BYTES_MAX + (2 << 20))
            .min(tandem_transport::FRAME_BYTES_LIMIT);
        let transport = Arc::new(transport);
        let ctx = Arc::new(PeerContext::new(
            config.node_id,
            identity.clone(),
            addr,
            transport.clone(),
            config.rpc_timeout,
            config.snapshot_bytes_per_sec_max,
            config.snapshot_chunk_bytes,
        ));
        let may_adopt = !config.initial_cluster.is_empty() || config.join.is_some();
        let service = Arc::new(PeerService::new(
            ctx.clone(),
            Receiver::new(snap_dir.clone()),
            may_adopt,
        ));
        let raft = Raft::new(
            config.node_id,
            raft_config,
            Network { ctx: ctx.clone() },
            log_store,
            sm.clone(),
        )
        .await
        .map_err(io::Error::other)?;

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
        let _ = ctx.raft.set(raft.clone());
        let node = Arc::new(Node {
            raft,
            sm,
            log,
            config,
            identity,
            ctx,
            service: service.clone(),
            admin_lock: tokio::sync::Mutex::new(()),
            switchover: Default::default(),
            detach_lock: tokio::sync::Mutex::new(()),
            detached_gate: std::sync::atomic::AtomicBool::new(false),
            rebuilding: std::sync::atomic::AtomicBool::new(rebuilding),
            rebuild_accepted: std::sync::atomic::AtomicBool::new(false),
            fatal: parking_lot::Mutex::new(None),
            damage,
            verify: Default::default(),
            barrier,
            combiner,
            _dir_lock: dir_lock,
        });
        service.attach(&node);
        if !secret.is_empty() {
            let listener = tokio::net::TcpListener::bind(node.config.cluster_bind)
                .await
                .map_err(|e| {
                    io::Error::other(format!(
                        "cannot listen on the cluster port {}: {e}",
                        node.config.cluster_bind
                    ))
                })?;
            info!("cluster port listening on {}", node.config.cluster_bind);
            let stats = node.ctx.stats.clone();
            let handler: Arc<dyn tandem_transport::Handler> = service;
            tokio::spawn(async move {
                if let Err(e) = tandem_transport::serve(listener, transport, handler, stats).await {
                    tracing::error!("cluster listener stopped: {e}");
                }
            });
        } else if !node.config.initial_cluster.is_empty() || node.config.join.is_some() {
            return Err(io::Error::other(
                "--initial-cluster and --join need --cluster-secret: nodes authenticate each other with it",
            ));
        }
        let initialized = node.raft.is_initialized().await.map_err(io::Error::other)?;
        if initialized {
            // No read may be served before the state machine holds everything committed before
            // the restart (DESIGN.md, traps): the server starts serving only after this. A
            // replica needs the primary's commit index for it, so the peer listener is already
            // up. A node that was never initialized has nothing to recover.
            info!("recovering: waiting until the state machine holds everything committed");
            node.raft
                .wait_for_recovery(Some(RECOVERY_WAIT_MAX))
                .await
                .map_err(|e| io::Error::other(format!("recovery did not finish: {e}")))?;
        }
        if rebuilding {
            tokio::spawn(node.clone().rebuild_from_peers());
        } else if !initialized && !node.config.initial_cluster.is_empty() {
            let lowest = node.config.initial_cluster.iter().map(|(id, _)| *id).min();
            if lowest == Some(node.config.node_id) {
                let n = node.clone();
                let members = node.config.initial_cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = n.clone().bootstrap(members).await {
                        tracing::error!("bootstrap refused: {e}");
                        n.fatal.lock().replace(e);
                    }
                });
            } else {
                info!("waiting for node {lowest:?} to initialize the cluster");
            }
        } else if !initialized {
            if let Some(primary) = node.config.join.clone() {
                tokio::spawn(node.clone().join_until_done(primary));
            }
        }
        tokio::spawn(super::retention::run(node.clone()));
        Ok(node)
    }

    /// This node's applied index.
    pub fn applied_index(&self) -> u64 {
        self.state()
            .read()
            .last_applied
            .map(|l| l.index())
            .unwrap_or(0)
    }

    /// A standalone node that has taken no write yet: it holds nothing and answers reads locally.
    pub fn is_unformed_standalone(&self) -> bool {
        !self
            .service
            .may_adopt
            .load(std::sync::atomic::Ordering::Relaxed)
            && self.identity.cluster_id().is_empty()
    }

    /// The state machine state: the keyspace and the applied position.
    pub fn state(&self) -> &Arc<RwLock<SmState>> {
        &self.sm.shared.state
    }

    /// Writes a batch (one request: a pipeline's writes, a transaction) and returns the state
    /// machine's replies, one per op, once it is committed and applied. `bytes` is its size in
    /// argument bytes. Requests are combined into log entries (see `combiner.rs`).
    pub async fn write(&self, batch: Batch, bytes: usize) -> Result<Written, WriteError> {
        if !self.is_primary() {
            self.await_own_leadership().await?;
        }
        self.combiner.write(batch, bytes).await
    }

    /// On a node that is not the primary: a standalone node forms its single-voter cluster on its
    /// first write (concurrent first writes wait for that), and the sole voter of a cluster waits
    /// (bounded) for its own election. Any other node is a replica: READONLY.
    async fn await_own_leadership(&self) -> Result<(), WriteError> {
        let me = self.config.node_id;
        let standalone = !self
            .service
            .may_adopt
            .load(std::sync::atomic::Ordering::Relaxed)
            && self.config.initial_cluster.is_empty();
        if standalone {
            self.form_standalone()
                .await
                .map_err(WriteError::NotAccepted)?;
        }
        // Wait until this node leads, or the membership shows other voters (then it is a
        // replica, or a voter of a cluster whose election is not ours to wait for).
        let _ = self
            .raft
            .wait(Some(OWN_ELECTION_WAIT_MAX))
            .metrics(
                |m| {
                    let mut voters = m.membership_config.membership().voter_ids();
                    let sole = voters.next() == Some(me) && voters.next().is_none();
                    m.state == ServerState::Leader
                        || !(sole
                            || (standalone
                                && m.membership_config
                                    .membership()
                                    .voter_ids()
                                    .next()
                                    .is_none()))
                },
                "this node leads, or is not the sole voter",
            )
            .await;
        if self.is_primary() {
            Ok(())
        } else {
            Err(WriteError::ReadOnly)
        }
    }

    /// Hands one entry to openraft (in call order) and returns a future of its replies, bounded
    /// by the write timeout.
    async fn propose(
        raft: Raft<TypeConfig, StateMachine>,
        batch: Batch,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Written, WriteError>> + Send>>
    {
        let me = *raft.node_id();
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
                Ok(Ok(Ok(resp))) => Ok(Written {
                    index: resp.log_id.index(),
                    frames: resp.data.0,
                }),
                // Still the primary but not accepting (a lease or a leadership transfer): retry.
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) if f.leader_id == Some(me) => {
                    Err(WriteError::NotAccepted(format!(
                        "the primary is not accepting writes right now: {f}"
                    )))
                }
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(_)))) => Err(WriteError::ReadOnly),
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
        if self.is_sole_voter_leader() || self.is_unformed_standalone() {
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
            if let Some(why) = self.fatal.lock().clone() {
                return why;
            }
            tokio::time::sleep(STOP_POLL_INTERVAL).await;
        }
    }

    /// Whether the consensus core is running, else why not (for `/health`).
    pub fn core_running(&self) -> Result<(), String> {
        // Clone out of the watch at once: never hold its borrow (DESIGN.md, traps).
        let state = self.raft.metrics().borrow_watched().running_state.clone();
        if let Err(fatal) = state {
            return Err(format!("consensus core stopped: {fatal}"));
        }
        if let Some(why) = self.fatal.lock().clone() {
            return Err(why);
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }
}
