//! The receiving side of the transport: checks who is connecting, then hands openraft's RPCs to
//! the local Raft, receives snapshots, answers positions and forwards membership requests to the
//! admin path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::{AppendEntriesResponse, SnapshotResponse};
use openraft::storage::Snapshot;
use parking_lot::Mutex;
use tandem_core::keyspace::escape_key;
use tandem_transport::Handler;
use tracing::{info, warn};

use super::damage::Source;
use super::identity::display_cluster;
use super::lag::LagTracker;
use super::messages::{decode, encode, Hello, Request, Response, PROTOCOL_VERSION};
use super::network::PeerContext;
use super::node::Node;
use super::snapshot_transfer::Receiver;
use super::state_machine::SnapshotFile;

pub struct PeerService {
    pub ctx: Arc<PeerContext>,
    node: OnceLock<Weak<Node>>,
    pub lag: LagTracker,
    pub receiver: Receiver,
    /// May this node take the cluster id of a leader that connects to it? Only a node that was
    /// told to be a member (`--initial-cluster`, REPLICAOF, `--join`); a standalone node is not
    /// captured by whoever connects.
    pub may_adopt: AtomicBool,
    /// DEBUG: refuse appends until then (makes this replica lag, for tests).
    pub paused_until: Mutex<Option<Instant>>,
}

impl PeerService {
    pub fn new(ctx: Arc<PeerContext>, receiver: Receiver, may_adopt: bool) -> PeerService {
        PeerService {
            ctx,
            node: OnceLock::new(),
            lag: LagTracker::default(),
            receiver,
            may_adopt: AtomicBool::new(may_adopt),
            paused_until: Mutex::new(None),
        }
    }

    pub fn attach(&self, node: &Arc<Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    fn node(&self) -> Result<Arc<Node>, String> {
        self.node
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| "this node is starting or stopping".to_string())
    }

    /// Validates a connecting peer's hello (see `messages::Hello`) and answers with ours.
    fn check_hello(&self, peer: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let hello: Hello = decode(bytes)?;
        if hello.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not this node's {PROTOCOL_VERSION}: run the same Tandem version on every node",
                hello.version
            ));
        }
        let me = self.ctx.identity.get();
        if let Some((id, incarnation)) = hello.expect {
            if id != self.ctx.node_id {
                return Err(format!(
                    "this is node {}, not node {id}: check the cluster's addresses",
                    self.ctx.node_id
                ));
            }
            if incarnation != 0 && incarnation != me.incarnation {
                return Err(format!(
                    "node {id}'s data dir was wiped or replaced since the cluster admitted it (incarnation {:x}, the \
                     cluster expects {incarnation:x}); it is not readmitted under its old id. Remove node {id} from \
                     the cluster (`tandem cluster remove {id}`) and add this node back as a new replica with an \
                     empty data dir",
                    me.incarnation
                ));
            }
        }
        if !hello.cluster_id.is_empty()
            && !me.cluster_id.is_empty()
            && hello.cluster_id != me.cluster_id
        {
            return Err(format!(
                "node {} from {peer} belongs to cluster {}, this node to cluster {}: they cannot be mixed. To move a node \
                 to another cluster, start it with an empty data dir",
                hello.node_id, hello.cluster_id, me.cluster_id
            ));
        }
        if me.cluster_id.is_empty() && !hello.cluster_id.is_empty() && hello.expect.is_some() {
            let exact = hello.expect == Some((self.ctx.node_id, me.incarnation));
            if !self.may_adopt.load(Ordering::Relaxed) || !exact {
                return Err(format!(
                    "this node (id {}) belongs to no cluster and was not asked to join one: send it REPLICAOF, or \
                     start it with --join or --initial-cluster",
                    self.ctx.node_id
                ));
            }
            self.ctx
                .identity
                .set_cluster_id(&hello.cluster_id)
                .map_err(|e| format!("cannot record the cluster id: {e}"))?;
            info!(
                "joined cluster {} (node {} at {} connected)",
                hello.cluster_id, hello.node_id, hello.addr.cluster_addr
            );
        }
        let _ = display_cluster;
        encode(&self.ctx.hello(None)).map(|b| b.to_vec())
    }

    async fn handle(&self, body: Bytes) -> Result<Response, String> {
        let request: Request = decode(&body)?;
        let node = self.node()?;
        let raft = &node.raft;
        let fail = |e: &dyn std::fmt::Display| e.to_string();
        if let Some(refused) = gate(&node, &request) {
            return Err(refused);
        }
        Ok(match request {
            Request::Append { rpc, quorum_age_ms } => {
                if let Some(until) = *self.paused_until.lock() {
                    if Instant::now() < until {
                        return Err(
                            "replication to this node is paused (DEBUG REPLICATION-PAUSE)".into(),
                        );
                    }
                }
                // Taken before the append is processed: fsync and queueing must not make the
                // primary's claim look fresher than it is.
                let received = Instant::now();
                let valid_at = quorum_age_ms.map(|ms| {
                    received
                        .checked_sub(Duration::from_millis(ms))
                        .unwrap_or(received)
                });
                // Corruption never spreads (DESIGN.md §2.5): an entry whose value fails its
                // checksum is refused whole, before openraft sees it; the primary sends it again.
                if let Some((index, key)) = super::repair::first_corrupt_entry(&rpc) {
                    node.damage.refused(Source::Transport);
                    let key = escape_key(key);
                    warn!(index, key = %key, "refused an append: a value fails its checksum");
                    return Err(format!(
                        "entry {index}: the value of key '{key}' fails its checksum; refused, send it again"
                    ));
                }
                let commit = rpc.leader_commit.map(|l| l.index()).unwrap_or(0);
                let carried_entries = !rpc.entries.is_empty();
                let r = raft.append_entries(rpc).await.map_err(|e| fail(&e))?;
                if matches!(
                    r,
                    AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
                ) {
                    self.lag
                        .heard(received, valid_at, commit, node.applied_index());
                    if carried_entries {
                        node.damage.received_intact(Source::Transport);
                    }
                }
                Response::Append(r)
            }
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await.map_err(|e| fail(&e))?),
            Request::PreVote(rpc) => {
                Response::Vote(raft.pre_vote(rpc).await.map_err(|e| fail(&e))?)
            }
            Request::TransferLeader(req) => Response::TransferLeader(
                raft.handle_transfer_leader(req)
                    .await
                    .map_err(|e| fail(&e))?,
            ),
            Request::SnapshotOffer(offer) => {
                let mine = raft.metrics().borrow_watched().vote;
                if offer.vote < mine {
                    Response::SnapshotStale(SnapshotResponse::new(mine))
                } else {
                    let n = node.clone();
                    let offset =
                        tokio::task::spawn_blocking(move || n.service.receiver.offer(&offer))
                            .await
                            .map_err(|e| e.to_string())??;
                    Response::SnapshotResume { offset }
                }
            }
            Request::SnapshotChunk {
                transfer,
                offset,
                data,
            } => {
                // File IO off the runtime threads: heartbeats must not wait behind it.
                let n = node.clone();
                let next = tokio::task::spawn_blocking(move || {
                    n.service.receiver.chunk(&transfer, offset, data)
                })
                .await
                .map_err(|e| e.to_string())??;
                Response::SnapshotResume { offset: next }
            }
            Request::SnapshotDone {
                vote,
                meta,
                transfer,
            } => {
                // openraft panics on a snapshot no protocol-following leader can send; refuse
                // such input here instead (a peer passed the cluster-secret check, but its
                // bytes are still input).
                if let Some(last) = meta.last_log_id {
                    if last.committed_leader_id() > vote.leader_id() {
                        return Err(format!(
                            "snapshot last log id {last} is beyond its sender's vote {vote}"
                        ));
                    }
                    let committed = raft.metrics().borrow_watched().local_committed;
                    if let Some(c) = committed {
                        if last > c && last.index() <= c.index() {
                            return Err(format!(
                                "snapshot last log id {last} contradicts the locally committed {c}"
                            ));
                        }
                    }
                }
                let n = node.clone();
                let this_meta = meta.clone();
                let path = tokio::task::spawn_blocking(move || {
                    let sm = n.sm.clone();
                    let failures = &n.service.receiver.progress.verify_failures;
                    let failed_before = failures.load(Ordering::Relaxed);
                    let finished = n.service.receiver.finish(&transfer, &this_meta, &sm);
                    // A snapshot that fails verification is refused and sent again (counted as
                    // damage found in a snapshot, repaired by the next one that verifies).
                    match &finished {
                        Ok(_) => n.damage.received_intact(Source::Snapshot),
                        Err(_) if failures.load(Ordering::Relaxed) != failed_before => {
                            n.damage.refused(Source::Snapshot)
                        }
                        Err(_) => {}
                    }
                    finished
                })
                .await
                .map_err(|e| e.to_string())??;
                let installed = raft
                    .install_full_snapshot(
                        vote,
                        Snapshot {
                            meta,
                            snapshot: SnapshotFile { path: path.clone() },
                        },
                    )
                    .await;
                // Whatever openraft did with it, the received file and its loaded state are done.
                self.receiver.done(&path, &node.sm);
                Response::SnapshotInstalled(installed.map_err(|e| fail(&e))?)
            }
            Request::Position => {
                let m = raft.metrics().borrow_watched().clone();
                let leader_addr = m
                    .current_leader
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
                Response::Position {
                    leader: m.current_leader,
                    leader_addr,
                    committed_index: m.cluster_committed.map(|l| l.index()).unwrap_or(0),
                    applied_index: m.last_applied.map(|l| l.index()).unwrap_or(0),
                }
            }
            Request::Join { node_id, addr } => node.admit(node_id, addr).await?,
            Request::Admin(op) => node.admin_local(op).await?,
            Request::FetchValue {
                key,
                min_applied_index,
            } => node.answer_fetch(key, min_applied_index).await,
            Request::Verify(request) => node.answer_verify(request).await,
        })
    }
}

/// Why this node must not take a consensus message right now, if it must not: it detached
/// (`detach.rs`), or it is rebuilding (`rebuild.rs`).
fn gate(node: &Node, request: &Request) -> Option<String> {
    let me = node.config.node_id;
    let vote = matches!(
        request,
        Request::Vote(_) | Request::PreVote(_) | Request::TransferLeader(_)
    );
    let replication = matches!(
        request,
        Request::Append { .. }
            | Request::SnapshotOffer(_)
            | Request::SnapshotChunk { .. }
            | Request::SnapshotDone { .. }
    );
    if !(vote || replication) {
        return None;
    }
    if node.detached_gate.load(Ordering::Relaxed) {
        return Some(format!(
            "node {me} detached from this cluster (REPLICAOF NO ONE)"
        ));
    }
    if !node.rebuilding.load(Ordering::Relaxed) {
        return None;
    }
    if vote {
        // Its log is gone: a vote from it could elect a primary lacking entries it had
        // acknowledged. It votes again once demoted and caught up.
        return Some(format!(
            "node {me} is rebuilding from its peers and does not vote"
        ));
    }
    // Until the primary has allowed replication to start over for this node, it must not see
    // the empty log (openraft would take it for a log going backwards).
    (!node.rebuild_accepted.load(Ordering::Relaxed))
        .then(|| format!("node {me} is rebuilding and waits for the primary to accept it"))
}

impl Handler for PeerService {
    fn hello(&self, peer: SocketAddr, hello: &[u8]) -> Result<Vec<u8>, String> {
        self.check_hello(peer, hello)
            .inspect_err(|e| warn!("refused peer {peer}: {e}"))
    }

    fn call(&self, _peer: SocketAddr, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let Ok(node) = self.node() else {
            return Box::pin(async { Err("this node is starting or stopping".to_string()) });
        };
        Box::pin(async move {
            let response = node.service.handle(body).await?;
            encode(&response)
        })
    }
}
