//! Forming and changing a cluster. Every membership change goes through one admin path on the
//! primary, serialized by `Node::admin_lock`; a member that is not the primary forwards the
//! request there.
//!
//! - Bootstrap (`--initial-cluster`): the member with the lowest id initializes, once every
//!   listed member has answered and none belongs to a cluster already (a member that does means
//!   this node's data dir was wiped: refuse rather than start a second cluster). The others wait
//!   to be contacted by the leader and take its cluster id.
//! - Join (REPLICAOF, `--join`): a fresh node asks the primary to admit it as a read replica,
//!   with its addresses and incarnation.
//! - Promote, demote, remove: membership changes through openraft, refused when unsafe (a lagging
//!   replica made voter, the last voter removed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ChangeMembers;
use parking_lot::Mutex;
use tandem_transport::CallOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::identity::IdentityFile;
use super::messages::{AdminOp, Hello, Request, Response};
use super::network::call;
use super::node::Node;
use super::types::{NodeAddr, NodeId};

/// A read replica may become a voter only this close (in entries) to the primary's last entry.
pub const PROMOTE_LAG_ENTRIES_MAX: u64 = 1000;

/// How long a membership change may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between bootstrap and join attempts.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

impl Node {
    /// `--initial-cluster`: waits until every member answers, then initializes (this node has the
    /// lowest id). Runs until done or refused.
    pub async fn bootstrap(self: Arc<Self>, members: Vec<(NodeId, String)>) -> Result<(), String> {
        let mut announced = false;
        loop {
            if self.initialized().await? {
                return Ok(());
            }
            let mut found: BTreeMap<NodeId, NodeAddr> = BTreeMap::new();
            let mut missing = Vec::new();
            for (id, addr) in &members {
                if *id == self.config.node_id {
                    found.insert(*id, self.ctx.addr.clone());
                    continue;
                }
                match self.probe(addr).await {
                    Ok(hello) if hello.node_id != *id => {
                        return Err(format!(
                            "--initial-cluster lists node {id} at {addr}, but node {} answers there",
                            hello.node_id
                        ));
                    }
                    Ok(hello) if !hello.cluster_id.is_empty() => {
                        return Err(format!(
                            "node {id} at {addr} already belongs to cluster {}, but this node (the one that initializes \
                             it) has no cluster: its data dir was wiped or replaced. It will not start a second cluster. \
                             Remove node {} from the cluster and add this node back as a new replica with an empty \
                             data dir",
                            hello.cluster_id, self.config.node_id
                        ));
                    }
                    Ok(hello) => {
                        let mut a = hello.addr.clone();
                        a.cluster_addr = addr.clone();
                        a.incarnation = hello.incarnation;
                        found.insert(*id, a);
                    }
                    Err(e) => missing.push(format!("{id} ({addr}): {e}")),
                }
            }
            if missing.is_empty() {
                // An id recorded by an earlier attempt that crashed before initializing is kept.
                let own = self.identity.cluster_id();
                let cluster_id = if own.is_empty() {
                    IdentityFile::new_cluster_id()
                } else {
                    own
                };
                self.identity
                    .set_cluster_id(&cluster_id)
                    .map_err(|e| e.to_string())?;
                info!(
                    "initializing cluster {cluster_id} with voters {:?}",
                    found.keys().collect::<Vec<_>>()
                );
                return self.raft.initialize(found).await.map_err(|e| e.to_string());
            }
            if !announced {
                info!(
                    "bootstrap: waiting for every --initial-cluster member to start; not answering yet: {}",
                    missing.join("; ")
                );
                announced = true;
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
    }

    /// Connects to a node we know only by address and returns its hello.
    async fn probe(&self, cluster_addr: &str) -> Result<Hello, String> {
        let seen: Arc<Mutex<Option<Hello>>> = Arc::default();
        let seen2 = seen.clone();
        let peer = self.ctx.stranger(
            cluster_addr,
            Box::new(move |h: &Hello| {
                *seen2.lock() = Some(h.clone());
                Ok(())
            }),
        );
        let result = call(
            &peer,
            &Request::Position,
            self.ctx.rpc_timeout,
            CallOptions::default(),
        )
        .await;
        peer.close();
        result.map_err(|e| e.to_string())?;
        let hello = seen.lock().take();
        hello.ok_or_else(|| "no hello".to_string())
    }

    async fn initialized(&self) -> Result<bool, String> {
        self.raft.is_initialized().await.map_err(|e| e.to_string())
    }

    /// Initializes a standalone node as a cluster of one voter, on its first write.
    pub async fn form_standalone(&self) -> Result<(), String> {
        let _guard = self.admin_lock.lock().await;
        if self.initialized().await? {
            return Ok(());
        }
        if self.service.may_adopt.load(Ordering::Relaxed) {
            return Err("this node is joining a cluster".into());
        }
        // An id recorded by an attempt that crashed before initializing is kept (a data dir
        // whose log was lost is refused at start-up, see identity.rs).
        let own = self.identity.cluster_id();
        let cluster_id = if own.is_empty() {
            IdentityFile::new_cluster_id()
        } else {
            own
        };
        self.identity
            .set_cluster_id(&cluster_id)
            .map_err(|e| e.to_string())?;
        info!("initializing a new single-voter cluster {cluster_id}");
        let mut members = BTreeMap::new();
        members.insert(self.config.node_id, self.ctx.addr.clone());
        self.raft
            .initialize(members)
            .await
            .map_err(|e| e.to_string())
    }

    /// REPLICAOF host port (a client port) / `--join`: asks the primary to admit this fresh node
    /// as a read replica.
    pub async fn join(&self, primary_client_addr: &str) -> Result<String, String> {
        let _guard = self.admin_lock.lock().await;
        let initialized = self.initialized().await?;
        let own = self.identity.cluster_id();
        if initialized || (!own.is_empty() && !self.service.may_adopt.load(Ordering::Relaxed)) {
            return Err(format!(
                "ERR this node already belongs to cluster {own} and holds its data; REPLICAOF works only on a fresh node \
                 (an empty --data-dir). Use `tandem cluster` to change members of a cluster"
            ));
        }
        if self.ctx.transport.secret.is_empty() {
            return Err(
                "ERR this node has no --cluster-secret: it cannot talk to other nodes".into(),
            );
        }
        let cluster_addr = ask_cluster_addr(primary_client_addr, self.ctx.rpc_timeout).await?;
        self.service.may_adopt.store(true, Ordering::Relaxed);
        let mut target = cluster_addr;
        for _ in 0..3 {
            let seen: Arc<Mutex<Option<Hello>>> = Arc::default();
            let seen2 = seen.clone();
            let peer = self.ctx.stranger(
                &target,
                Box::new(move |h: &Hello| {
                    if h.cluster_id.is_empty() {
                        return Err("that node belongs to no cluster yet".into());
                    }
                    *seen2.lock() = Some(h.clone());
                    Ok(())
                }),
            );
            // The hello tells the cluster id; it is recorded before the primary is asked, so a
            // restart in between still accepts the primary's connection.
            let pos = call(
                &peer,
                &Request::Position,
                self.ctx.rpc_timeout,
                CallOptions::default(),
            )
            .await;
            if let Err(e) = pos {
                peer.close();
                self.service
                    .may_adopt
                    .store(!own.is_empty(), Ordering::Relaxed);
                return Err(format!(
                    "ERR cannot reach the primary's cluster port {target}: {e}"
                ));
            }
            let hello = seen.lock().take().ok_or("no hello")?;
            self.identity
                .set_cluster_id(&hello.cluster_id)
                .map_err(|e| format!("ERR {e}"))?;
            let join = Request::Join {
                node_id: self.config.node_id,
                addr: self.ctx.addr.clone(),
            };
            let answer = call(&peer, &join, CHANGE_TIMEOUT, CallOptions::default()).await;
            peer.close();
            if let Err(tandem_transport::CallError::Remote(why)) = &answer {
                // Refused for good (e.g. the node id is taken): this node joined nothing, so it
                // may try again elsewhere or under another id.
                if !self.raft.is_initialized().await.unwrap_or(true) {
                    let _ = self.identity.clear_cluster_id();
                    self.service.may_adopt.store(false, Ordering::Relaxed);
                }
                return Err(format!("ERR join refused by {target}: {why}"));
            }
            match answer.map_err(|e| format!("ERR join failed at {target}: {e}"))? {
                Response::Ok(msg) => {
                    info!("joined cluster {}: {msg}", hello.cluster_id);
                    return Ok(msg);
                }
                Response::NotPrimary(Some((_, addr))) => target = addr.cluster_addr,
                Response::NotPrimary(None) => {
                    return Err("ERR the cluster has no primary right now; try again".into())
                }
                other => return Err(format!("ERR unexpected answer to join: {other:?}")),
            }
        }
        Err("ERR could not find the primary (redirected too many times)".into())
    }

    /// The primary's side of a join.
    pub async fn admit(&self, node_id: NodeId, addr: NodeAddr) -> Result<Response, String> {
        if let Some(redirect) = self.not_primary() {
            return Ok(redirect);
        }
        let _guard = self.admin_lock.lock().await;
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        if let Some(existing) = membership.membership().get_node(&node_id) {
            if existing.incarnation == addr.incarnation {
                return Ok(Response::Ok(format!("node {node_id} is already a member")));
            }
            return Err(format!(
                "node id {node_id} is already a member of this cluster (at {}); start the new node with another \
                 --node-id, or remove the old member first",
                existing.cluster_addr
            ));
        }
        self.raft
            .add_learner(node_id, addr.clone(), false)
            .await
            .map_err(|e| e.to_string())?;
        info!(
            "admitted node {node_id} ({}) as a read replica",
            addr.client_addr
        );
        Ok(Response::Ok(format!(
            "node {node_id} added as a read replica"
        )))
    }

    fn not_primary(&self) -> Option<Response> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state == openraft::ServerState::Leader {
            return None;
        }
        let leader = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|a| (l, a.clone()))
        });
        Some(Response::NotPrimary(leader))
    }

    /// A membership change requested here: run it if this is the primary, else forward it.
    pub async fn admin(&self, op: AdminOp) -> Result<String, String> {
        for _ in 0..3 {
            let answer = match self.not_primary() {
                None => self.admin_local(op.clone()).await?,
                Some(Response::NotPrimary(Some((id, addr)))) => {
                    let peer = self.ctx.member(id, &addr);
                    call(
                        &peer,
                        &Request::Admin(op.clone()),
                        CHANGE_TIMEOUT,
                        CallOptions::default(),
                    )
                    .await
                    .map_err(|e| format!("forwarding to the primary (node {id}) failed: {e}"))?
                }
                Some(_) => return Err("the cluster has no primary right now; try again".into()),
            };
            match answer {
                Response::Ok(msg) => return Ok(msg),
                Response::NotPrimary(_) => tokio::time::sleep(RETRY_INTERVAL).await,
                other => return Err(format!("unexpected answer: {other:?}")),
            }
        }
        Err("could not reach the primary".into())
    }

    /// Runs a membership change on the primary (or answers where the primary is).
    pub async fn admin_local(&self, op: AdminOp) -> Result<Response, String> {
        if let Some(redirect) = self.not_primary() {
            return Ok(redirect);
        }
        let _guard = self.admin_lock.lock().await;
        if let AdminOp::Rebuild { id, incarnation } = op {
            return self.accept_rebuild(id, incarnation).await;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let is_member = |id: &NodeId| membership.get_node(id).is_some();
        let change = match op {
            AdminOp::Rebuild { .. } => return Err("a rebuild is not a membership change".into()),
            AdminOp::Promote(id) => {
                if !is_member(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                if voters.contains(&id) {
                    return Ok(Response::Ok(format!("node {id} is already a voter")));
                }
                let last = m.last_log_index.unwrap_or(0);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned())
                    .flatten()
                    .map(|l| l.index())
                    .unwrap_or(0);
                if last.saturating_sub(matched) > PROMOTE_LAG_ENTRIES_MAX {
                    return Err(format!(
                        "node {id} is {} entries behind (at most {PROMOTE_LAG_ENTRIES_MAX} to become a voter); wait \
                         for it to catch up",
                        last - matched
                    ));
                }
                ChangeMembers::AddVoterIds(BTreeSet::from([id]))
            }
            AdminOp::Demote(id) => {
                if !voters.contains(&id) {
                    return Err(format!("node {id} is not a voter"));
                }
                if id == self.config.node_id {
                    return Err(
                        "the primary cannot demote itself: fail over to another voter first".into(),
                    );
                }
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            }
            AdminOp::Remove(id) => {
                if !is_member(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                if id == self.config.node_id {
                    return Err(
                        "the primary cannot remove itself: fail over to another voter first".into(),
                    );
                }
                if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err("cannot remove the last voter".into());
                    }
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                }
            }
        };
        let retain = matches!(op, AdminOp::Demote(_));
        let result =
            tokio::time::timeout(CHANGE_TIMEOUT, self.raft.change_membership(change, retain)).await;
        match result {
            Err(_) => {
                return Err(format!(
                    "membership change not committed within {} s",
                    CHANGE_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(_)) => {}
        }
        if let AdminOp::Remove(id) = op {
            self.ctx.forget(id);
        }
        info!("membership change done: {op:?}");
        Ok(Response::Ok(match op {
            AdminOp::Promote(id) => format!("node {id} is now a voter"),
            AdminOp::Demote(id) => format!("node {id} is now a read replica"),
            AdminOp::Remove(id) => format!("node {id} removed"),
            AdminOp::Rebuild { id, .. } => format!("node {id} rebuilds"),
        }))
    }

    /// `--join`: keeps trying to join until it works or is refused for good.
    pub async fn join_until_done(self: Arc<Self>, primary: String) {
        loop {
            if self.raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            match self.join(&primary).await {
                Ok(_) => return,
                Err(e) if e.contains("already belongs") => {
                    warn!("--join {primary}: {e}");
                    return;
                }
                Err(e) => warn!("--join {primary}: {e}; retrying"),
            }
            tokio::time::sleep(RETRY_INTERVAL * 4).await;
        }
    }
}

/// Asks a node's client (RESP) port for its cluster port address, with `INFO replication`.
pub(crate) async fn ask_cluster_addr(
    client_addr: &str,
    timeout: Duration,
) -> Result<String, String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(client_addr)
            .await
            .map_err(|e| format!("ERR cannot connect to {client_addr}: {e}"))?;
        s.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
            .await
            .map_err(|e| format!("ERR {client_addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(info) = bulk_reply(&buf, client_addr)? {
                let field = "tandem_cluster_addr:";
                return info
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("ERR {client_addr} is not a Tandem node with a cluster port (its INFO has no {field})"));
            }
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("ERR {client_addr}: {e}"))?;
            if n == 0 {
                return Err(format!("ERR {client_addr} closed the connection"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        format!(
            "ERR no answer from {client_addr} within {} ms",
            timeout.as_millis()
        )
    })?
}

/// Most bytes of an INFO reply read from another node.
const INFO_REPLY_BYTES_MAX: usize = 1 << 20;

/// The text of a complete RESP bulk string at the start of `buf`, None if more bytes are needed.
fn bulk_reply(buf: &[u8], from: &str) -> Result<Option<String>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > 64 {
            Err(format!(
                "ERR {from} answered with something that is not RESP"
            ))
        } else {
            Ok(None)
        };
    };
    let header = String::from_utf8_lossy(&buf[..eol]);
    if let Some(err) = header.strip_prefix('-') {
        return Err(format!("ERR {from} refused INFO: {err}"));
    }
    let len: usize = header
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= INFO_REPLY_BYTES_MAX)
        .ok_or_else(|| format!("ERR {from} answered INFO with an unexpected reply '{header}'"))?;
    let body = &buf[eol + 2..];
    if body.len() < len {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&body[..len]).into_owned()))
}
