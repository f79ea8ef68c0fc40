//! openraft's network factory over Tandem's transport (`tandem-transport`): one long-lived,
//! authenticated connection per peer, postcard messages ([`super::messages`]), a deadline on
//! every RPC.
//!
//! [`PeerContext`] is what both directions share: this node's identity and addresses, the
//! transport settings, the peers' connections, fault injection for tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use parking_lot::Mutex;
use tandem_transport::{
    CallError, CallOptions, ClientHello, Peer, TransportConfig, TransportStats,
};

use super::identity::IdentityFile;
use super::messages::{decode, encode, Hello, Request, Response, PROTOCOL_VERSION};
use super::state_machine::SnapshotFile;
use super::types::{NodeAddr, NodeId, TypeConfig, Vote};

/// Entries of one AppendEntries RPC are cut to about this many encoded bytes (at least one entry
/// is always sent): big batches would hold up heartbeats behind them.
pub const APPEND_BYTES_TARGET: usize = 16 << 20;

/// Fault injection, for tests (enabled by `--enable-debug-commands`).
#[derive(Default)]
pub struct Faults {
    /// Corrupt the next N outgoing snapshot chunks (after their CRC is computed)...
    pub corrupt_snapshot_chunks: AtomicU32,
    /// ... after letting this many through intact.
    pub corrupt_snapshot_chunks_skip: AtomicU32,
    /// Break off the next snapshot transfer after this many chunks, as if the connection had
    /// dropped (0: off; fires once).
    pub interrupt_snapshot_after: AtomicU32,
    /// Corrupt the next N outgoing requests of any kind.
    pub corrupt_requests: AtomicU32,
    /// Damage a value (not its checksum) in each of the next N outgoing appends that carry one,
    /// before framing: the frame CRC holds, the value's checksum does not (`DEBUG
    /// CORRUPT-APPEND`).
    pub corrupt_append_values: AtomicU32,
}

impl Faults {
    /// Whether to corrupt the snapshot chunk about to be sent.
    pub fn take_snapshot_chunk(&self) -> bool {
        if self.corrupt_snapshot_chunks.load(Ordering::Relaxed) == 0 {
            return false;
        }
        if Faults::take(&self.corrupt_snapshot_chunks_skip) {
            return false;
        }
        Faults::take(&self.corrupt_snapshot_chunks)
    }

    pub fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Checks a peer's hello on a connection to an address whose node is not known yet.
pub type HelloCheck = Box<dyn Fn(&Hello) -> Result<(), String> + Send + Sync>;

/// What the network client, the peer service and the admin path share.
pub struct PeerContext {
    pub node_id: NodeId,
    pub identity: Arc<IdentityFile>,
    pub addr: NodeAddr,
    pub transport: Arc<TransportConfig>,
    pub stats: Arc<TransportStats>,
    /// Deadline of one RPC (a snapshot chunk, a vote, an append).
    pub rpc_timeout: Duration,
    /// Snapshot bytes sent per second to one replica, at most.
    pub snapshot_bytes_per_sec_max: u64,
    /// Bytes of snapshot per chunk.
    pub snapshot_chunk_bytes: usize,
    pub faults: Faults,
    /// The local Raft, set once it exists (the network is built before it).
    pub raft: std::sync::OnceLock<openraft::Raft<TypeConfig, super::state_machine::StateMachine>>,
    /// Connections to members, with the address (and incarnation) each was made for.
    peers: Mutex<HashMap<NodeId, (NodeAddr, Peer)>>,
}

impl PeerContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: NodeId,
        identity: Arc<IdentityFile>,
        addr: NodeAddr,
        transport: Arc<TransportConfig>,
        rpc_timeout: Duration,
        snapshot_bytes_per_sec_max: u64,
        snapshot_chunk_bytes: usize,
    ) -> PeerContext {
        PeerContext {
            node_id,
            identity,
            addr,
            transport,
            stats: Arc::new(TransportStats::default()),
            rpc_timeout,
            snapshot_bytes_per_sec_max,
            snapshot_chunk_bytes,
            faults: Faults::default(),
            raft: std::sync::OnceLock::new(),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// This node's hello; `expect`: the member the caller means to reach.
    pub fn hello(&self, expect: Option<(NodeId, u64)>) -> Hello {
        let id = self.identity.get();
        Hello {
            version: PROTOCOL_VERSION,
            cluster_id: id.cluster_id,
            node_id: self.node_id,
            incarnation: id.incarnation,
            addr: self.addr.clone(),
            expect,
        }
    }

    /// Time since this node, as primary, last heard from a quorum of voters.
    pub fn quorum_age(&self) -> Option<Duration> {
        use openraft::async_runtime::watch::WatchReceiver;
        let raft = self.raft.get()?;
        let acked = raft.metrics().borrow_watched().last_quorum_acked?;
        Some(openraft::Instant::elapsed(&*acked))
    }

    /// The connection to member `target` (created on first use, kept after). A member re-added
    /// under the same id (a new incarnation) or at another address gets a new connection.
    pub fn member(self: &Arc<Self>, target: NodeId, addr: &NodeAddr) -> Peer {
        let mut peers = self.peers.lock();
        if let Some((known, p)) = peers.get(&target) {
            if known == addr {
                return p.clone();
            }
            p.close();
        }
        let hello = Arc::new(MemberHello {
            ctx: self.clone(),
            expect: (target, addr.incarnation),
        });
        let p = Peer::new(
            addr.cluster_addr.clone(),
            self.transport.clone(),
            hello,
            self.stats.clone(),
        );
        peers.insert(target, (addr.clone(), p.clone()));
        p
    }

    /// A one-off connection to an address whose node is not known yet (join, bootstrap probe).
    /// `check` sees the server's hello and may refuse it.
    pub fn stranger(self: &Arc<Self>, addr: &str, check: HelloCheck) -> Peer {
        Peer::new(
            addr.to_string(),
            self.transport.clone(),
            Arc::new(StrangerHello {
                ctx: self.clone(),
                check,
            }),
            self.stats.clone(),
        )
    }

    pub fn forget(&self, target: NodeId) {
        if let Some((_, p)) = self.peers.lock().remove(&target) {
            p.close();
        }
    }
}

/// Checks the hello a peer answers with, from the caller's side.
fn check_server_hello(
    ctx: &PeerContext,
    hello: &Hello,
    expect: Option<(NodeId, u64)>,
) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "peer speaks protocol version {}, this node {PROTOCOL_VERSION}: run the same Tandem version on every node",
            hello.version
        ));
    }
    let mine = ctx.identity.cluster_id();
    if !mine.is_empty() && !hello.cluster_id.is_empty() && mine != hello.cluster_id {
        return Err(format!(
            "peer {} at {} belongs to cluster {}, this node to cluster {mine}",
            hello.node_id, hello.addr.cluster_addr, hello.cluster_id
        ));
    }
    if let Some((id, incarnation)) = expect {
        if hello.node_id != id {
            return Err(format!(
                "expected node {id} at this address, found node {}",
                hello.node_id
            ));
        }
        if incarnation != 0 && hello.incarnation != incarnation {
            return Err(format!(
                "node {id}'s data dir is not the one the cluster admitted (incarnation {:x}, expected {incarnation:x}): \
                 it was wiped or replaced. Remove it (`tandem cluster remove {id}`) and add it back as a new replica with an \
                 empty data dir",
                hello.incarnation
            ));
        }
    }
    Ok(())
}

struct MemberHello {
    ctx: Arc<PeerContext>,
    expect: (NodeId, u64),
}

impl ClientHello for MemberHello {
    fn hello(&self) -> Vec<u8> {
        encode(&self.ctx.hello(Some(self.expect)))
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn check_server_hello(&self, bytes: &[u8]) -> Result<(), String> {
        let hello: Hello = decode(bytes)?;
        check_server_hello(&self.ctx, &hello, Some(self.expect))
    }
}

struct StrangerHello {
    ctx: Arc<PeerContext>,
    check: HelloCheck,
}

impl ClientHello for StrangerHello {
    fn hello(&self) -> Vec<u8> {
        encode(&self.ctx.hello(None))
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn check_server_hello(&self, bytes: &[u8]) -> Result<(), String> {
        let hello: Hello = decode(bytes)?;
        check_server_hello(&self.ctx, &hello, None)?;
        (self.check)(&hello)
    }
}

/// Sends one request and decodes the answer.
pub async fn call(
    peer: &Peer,
    request: &Request,
    deadline: Duration,
    opts: CallOptions,
) -> Result<Response, CallError> {
    let body = encode(request).map_err(CallError::Remote)?;
    let answer = peer.call_with(body, deadline, opts).await?;
    decode(&answer).map_err(CallError::Remote)
}

pub struct Network {
    pub ctx: Arc<PeerContext>,
}

pub struct PeerClient {
    pub(super) ctx: Arc<PeerContext>,
    pub(super) target: NodeId,
    pub(super) peer: Peer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        PeerClient {
            ctx: self.ctx.clone(),
            target,
            peer: self.ctx.member(target, node),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct PeerFailure(pub String);

pub(super) fn rpc_error(e: CallError) -> RPCError<TypeConfig> {
    match e {
        CallError::Remote(m) => RPCError::Network(NetworkError::new(&PeerFailure(m))),
        other => RPCError::Unreachable(Unreachable::new(&PeerFailure(other.to_string()))),
    }
}

fn unexpected(what: &str, r: Response) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&PeerFailure(format!(
        "unexpected answer to {what}: {r:?}"
    ))))
}

impl PeerClient {
    async fn call(
        &self,
        request: &Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<TypeConfig>> {
        let deadline = match request {
            // openraft gives appends the heartbeat interval (soft TTL 75 ms by default): an
            // fsync on a busy follower takes longer, and a timed-out append stalls replication
            // behind a backoff. Heartbeats are cut off by openraft itself anyway.
            Request::Append { .. } => option.soft_ttl().max(self.ctx.rpc_timeout),
            _ => option.soft_ttl().min(self.ctx.rpc_timeout),
        };
        let opts = CallOptions {
            corrupt_first_send: Faults::take(&self.ctx.faults.corrupt_requests),
        };
        call(&self.peer, request, deadline, opts)
            .await
            .map_err(rpc_error)
    }
}

/// How many of `entries` fit in one append of about [`APPEND_BYTES_TARGET`] bytes (at least 1).
fn entries_that_fit(rpc: &AppendEntriesRequest<TypeConfig>) -> usize {
    let mut total = 0usize;
    for (i, e) in rpc.entries.iter().enumerate() {
        total += postcard::experimental::serialized_size(e).unwrap_or(usize::MAX / 2);
        if total > APPEND_BYTES_TARGET {
            return i.max(1);
        }
    }
    rpc.entries.len()
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A batch too big for one frame is sent in part; openraft sends the rest next.
        let fit = entries_that_fit(&rpc);
        let partial = if fit < rpc.entries.len() {
            rpc.entries.truncate(fit);
            rpc.entries.last().map(openraft::entry::RaftEntry::log_id)
        } else {
            None
        };
        let faults = &self.ctx.faults;
        if Faults::take(&faults.corrupt_append_values) && !super::repair::corrupt_a_value(&mut rpc)
        {
            // A heartbeat, or entries without a value: the fault waits for the next append.
            faults.corrupt_append_values.fetch_add(1, Ordering::Relaxed);
        }
        let quorum_age_ms = self.ctx.quorum_age().map(|d| d.as_millis() as u64);
        match self
            .call(&Request::Append { rpc, quorum_age_ms }, &option)
            .await?
        {
            Response::Append(AppendEntriesResponse::Success) if partial.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(partial))
            }
            Response::Append(r) => Ok(r),
            other => Err(unexpected("append", other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&Request::Vote(rpc), &option).await? {
            Response::Vote(r) => Ok(r),
            other => Err(unexpected("vote", other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&Request::PreVote(rpc), &option).await? {
            Response::Vote(r) => Ok(r),
            other => Err(unexpected("pre-vote", other)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&Request::TransferLeader(req), &option).await? {
            Response::TransferLeader(r) => Ok(r),
            other => Err(unexpected("transfer-leader", other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        super::snapshot_transfer::send(self, vote, snapshot, cancel, option).await
    }
}

/// Bytes of an encoded request, for tests and limits.
pub fn encoded_len(request: &Request) -> usize {
    encode(request).map(|b: Bytes| b.len()).unwrap_or(0)
}
