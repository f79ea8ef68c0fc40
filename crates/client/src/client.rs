//! [`Client`]: routes each request to the right node, follows the topology as it changes, and
//! retries exactly the failures that prove a request did not run.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tandem_checksum::Algorithm;
use tandem_resp::Frame;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::connection::{unexpected, Pool};
use crate::error::{Error, Failure};
use crate::options::{ClientOptions, ReadPolicy};
use crate::reply::{classify, expect_integer, expect_ok, expect_value, ErrorClass};
use crate::topology::{NodeInfo, Topology};
use crate::verify::{check_copy, parse_digest_reply, BadCopy, CopyProblem, DigestReply, Verified};

/// First pause between retries; it doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest pause between retries: short next to a failover, so the client notices the new
/// primary soon after it is elected.
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Nodes a discovery asks beyond the addresses it starts with (each answer may name a primary
/// not asked yet). Far more than any real failover needs; it stops a chain of bad answers.
const DISCOVERY_EXTRA_ASKS_MAX: usize = 16;

/// A client for a Tandem cluster. Cheap to clone; clones share connections and topology.
///
/// It learns the cluster from any node (`MEMBERSHIP LIST`), sends writes to the primary and
/// reads where the [`ReadPolicy`] says, keeps a few connections per node, and follows
/// failovers: a request that provably did not run (`-READONLY` from a former primary, a refused
/// connection, `-MASTERDOWN`/`-TRYAGAIN`) is retried against a refreshed topology until
/// [`ClientOptions::retry_deadline`]. A write whose outcome is unknown (the connection broke
/// after it was sent, a timeout, the server's `-UNKNOWN`/`-TIMEOUT`) is never retried: it ends in
/// [`Error::OutcomeUnknown`]. Reads are retried on any failure.
///
/// ```no_run
/// use tandem_client::{Client, ClientOptions, ReadPolicy};
///
/// # async fn example() -> Result<(), tandem_client::Error> {
/// // Any node will do as a seed: the client finds the primary and the replicas itself.
/// let options = ClientOptions {
///     read_policy: ReadPolicy::RoundRobin,
///     ..ClientOptions::default()
/// };
/// let client = Client::connect(&["127.0.0.1:6379", "127.0.0.1:6380"], options).await?;
///
/// client.set("greeting", "hello").await?; // on the primary
/// let value = client.get("greeting").await?; // on a replica, in turn
/// // A replica may lag its primary by up to replica-max-lag-ms: it may not have the write yet.
/// assert!(value.is_none() || value.as_deref() == Some(&b"hello"[..]));
///
/// // Anything else, as raw arguments: `command` goes to the primary, `read_command` follows
/// // the read policy.
/// let reply = client.command(&[b"INCRBY", b"counter", b"5"]).await?;
/// println!("counter is now {reply:?}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    /// The addresses given to `connect`, asked again when no known node answers.
    seeds: Vec<String>,
    view: RwLock<View>,
    /// One pool per node address, created on first use.
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// One refresh at a time; the others wait for it and use its result.
    refreshing: tokio::sync::Mutex<()>,
    /// Counter for [`ReadPolicy::RoundRobin`].
    round_robin: AtomicUsize,
    /// This client's replica under [`ReadPolicy::AnyReplica`], fixed at creation.
    sticky_turn: usize,
}

/// What one node's answer to `DIGEST.GET` means for a verified read.
enum CopyOutcome {
    /// A copy whose bytes match its digest.
    Good { value: Bytes, algorithm: Algorithm },
    /// A copy that failed verification.
    Bad(CopyProblem),
    /// The key does not exist on that node.
    Absent,
    /// No usable answer now (unreachable, refusing reads, a garbled reply): try the others,
    /// and this one again in a later round.
    Unanswered(Error),
    /// An answer that ends the read (`-ERR ...`, a refused `AUTH`).
    Fail(Error),
}

/// What a request attempt saw of the view, to tell afterwards whether the topology changed.
struct Seen {
    generation: u64,
    primary: Option<NodeInfo>,
}

/// The topology and where it came from. Never held across an `.await`.
struct View {
    topology: Topology,
    /// The node whose membership list this is.
    source_addr: String,
    refreshed_at: Instant,
    /// Bumped on every refresh, so a task that saw a failure can tell whether someone else
    /// already refreshed since.
    generation: u64,
}

impl View {
    fn seen(&self) -> Seen {
        Seen {
            generation: self.generation,
            primary: self.topology.primary().cloned(),
        }
    }
}

impl Client {
    /// Discovers the cluster from the first of `seeds` (`host:port` of any nodes) that answers,
    /// preferring the primary's own view. Fails with [`Error::Discovery`] if none answers.
    pub async fn connect(seeds: &[&str], options: ClientOptions) -> Result<Client, Error> {
        if seeds.is_empty() {
            return Err(Error::InvalidArgument("no seed addresses given".into()));
        }
        let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        let inner = Arc::new(Inner {
            options,
            seeds: seeds.clone(),
            view: RwLock::new(View {
                topology: Topology::default(),
                source_addr: String::new(),
                refreshed_at: Instant::now(),
                generation: 0,
            }),
            pools: Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
            round_robin: AtomicUsize::new(0),
            sticky_turn: random_usize(),
        });
        let client = Client { inner };
        let (topology, source) = client.discover(&seeds).await?;
        client.install(topology, source);
        Ok(client)
    }

    /// The cluster as last discovered.
    pub fn topology(&self) -> Topology {
        self.view().topology.clone()
    }

    /// Asks the cluster for its membership again (known nodes first, then the seeds) and
    /// returns the new topology.
    pub async fn refresh_topology(&self) -> Result<Topology, Error> {
        let generation = self.view().generation;
        self.refresh(generation).await?;
        Ok(self.topology())
    }

    /// `SET key value` on the primary.
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        let (addr, reply) = self.write(&[b"SET", key.as_ref(), value.as_ref()]).await?;
        expect_ok(&reply).map_err(|detail| Error::UnexpectedReply {
            addr,
            command: "SET".into(),
            detail,
        })
    }

    /// `GET key` on a node chosen by the read policy; `None` if the key does not exist there.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let (addr, reply) = self.read(&[b"GET", key.as_ref()]).await?;
        expect_value(reply).map_err(|detail| Error::UnexpectedReply {
            addr,
            command: "GET".into(),
            detail,
        })
    }

    /// `DEL key` on the primary; true if the key existed.
    pub async fn del(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let (addr, reply) = self.write(&[b"DEL", key.as_ref()]).await?;
        expect_integer(&reply)
            .map(|n| n > 0)
            .map_err(|detail| Error::UnexpectedReply {
                addr,
                command: "DEL".into(),
                detail,
            })
    }

    /// Any command, as raw arguments, sent to the primary and treated as a write: retried only
    /// after errors that prove it did not run. Error replies are [`Error::Server`].
    pub async fn command(&self, args: &[&[u8]]) -> Result<Frame, Error> {
        check_args(args)?;
        Ok(self.write(args).await?.1)
    }

    /// A read-only command, as raw arguments, sent where the read policy says and retried on
    /// any failure (so never use it for a command that changes anything). Error replies are
    /// [`Error::Server`].
    pub async fn read_command(&self, args: &[&[u8]]) -> Result<Frame, Error> {
        check_args(args)?;
        Ok(self.read(args).await?.1)
    }

    /// Reads `key` with `DIGEST.GET` and verifies it here: the digest of the bytes received is
    /// recomputed with the algorithm the node names and compared with the digest it sent.
    ///
    /// Nodes are tried in the read policy's order (the policy's choice, the other replicas, then
    /// the primary; under [`ReadPolicy::Primary`] the primary first). A copy that fails
    /// (a digest mismatch, a node's `-CORRUPT` refusal, a malformed digest, an algorithm this
    /// client does not know) is skipped, and each reportable one is reported to the node that
    /// served it with `DIGEST.REPORT key`. Returns the first verified copy, with the bad ones
    /// found on the way, or `None` if the key does not exist. A node without the key answers
    /// `None` only if no bad copy was seen before it; otherwise the remaining nodes are asked
    /// for a verified copy first. If every node's copy is bad: [`Error::NoVerifiedCopy`].
    ///
    /// Under [`ReadPolicy::Primary`], a verified read falls back to a replica only when the
    /// primary's copy fails; that copy may be as old as the cluster's `replica-max-lag-ms`.
    ///
    /// ```no_run
    /// use tandem_client::{Client, ClientOptions, Error};
    ///
    /// # async fn example() -> Result<(), Error> {
    /// let client = Client::connect(&["127.0.0.1:6379"], ClientOptions::default()).await?;
    /// match client.get_verified("invoice:42").await {
    ///     Ok(Some(copy)) => {
    ///         let (len, algorithm, node) = (copy.value.len(), copy.algorithm, copy.served_by.id);
    ///         println!("{len} bytes, {algorithm} digest verified, from node {node}");
    ///         for bad in &copy.bad_copies {
    ///             eprintln!("node {} served a bad copy: {}", bad.node.id, bad.problem);
    ///         }
    ///     }
    ///     Ok(None) => println!("no such key"),
    ///     Err(Error::NoVerifiedCopy { bad_copies, .. }) => {
    ///         eprintln!("every copy is damaged: {} bad copies", bad_copies.len());
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_verified(&self, key: impl AsRef<[u8]>) -> Result<Option<Verified>, Error> {
        let key = key.as_ref();
        let deadline = Instant::now() + self.inner.options.retry_deadline;
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut bad_copies: Vec<BadCopy> = Vec::new();
        // Nodes whose copy was bad or absent: not asked again in a later round.
        let mut settled: HashSet<String> = HashSet::new();
        // A node without the key answered after a bad copy had been seen.
        let mut absent_seen = false;
        let turn = self.turn();
        loop {
            self.refresh_if_due().await;
            let (order, seen) = {
                let view = self.view();
                let order = view
                    .topology
                    .read_order(self.inner.options.read_policy, turn);
                (order, view.seen())
            };
            let mut last: Option<Error> = None;
            for node in order {
                if settled.contains(&node.addr) {
                    continue;
                }
                match self.read_copy(&node, key).await {
                    CopyOutcome::Good { value, algorithm } => {
                        self.report_bad_copies(key, &mut bad_copies).await;
                        return Ok(Some(Verified {
                            value,
                            algorithm,
                            served_by: node,
                            bad_copies,
                        }));
                    }
                    CopyOutcome::Absent if bad_copies.is_empty() => return Ok(None),
                    CopyOutcome::Absent => {
                        settled.insert(node.addr.clone());
                        absent_seen = true;
                    }
                    CopyOutcome::Bad(problem) => {
                        warn!(
                            node = node.id,
                            addr = %node.addr,
                            key = %printable(key),
                            %problem,
                            "verified read: bad copy, trying another node"
                        );
                        settled.insert(node.addr.clone());
                        bad_copies.push(BadCopy {
                            node,
                            problem,
                            reported: false,
                        });
                    }
                    CopyOutcome::Unanswered(error) => last = Some(error),
                    CopyOutcome::Fail(error) => {
                        self.report_bad_copies(key, &mut bad_copies).await;
                        return Err(error);
                    }
                }
            }
            // Every node has been asked, or the unsettled ones failed to answer.
            let all_settled = {
                let view = self.view();
                let nodes = view.topology.nodes();
                !nodes.is_empty() && nodes.iter().all(|n| settled.contains(&n.addr))
            };
            let out_of_time = Instant::now() >= deadline;
            if all_settled || (out_of_time && !bad_copies.is_empty()) {
                self.report_bad_copies(key, &mut bad_copies).await;
                if absent_seen {
                    return Ok(None);
                }
                return Err(Error::NoVerifiedCopy {
                    key: printable(key),
                    bad_copies,
                });
            }
            let last = last.unwrap_or_else(|| self.no_primary());
            if out_of_time {
                return Err(self.unavailable(deadline, last));
            }
            backoff = self.pause_and_refresh(seen, backoff, deadline).await;
        }
    }

    /// Asks one node for its copy of `key` and verifies it.
    async fn read_copy(&self, node: &NodeInfo, key: &[u8]) -> CopyOutcome {
        let reply = match self.send(&node.addr, &[b"DIGEST.GET", key]).await {
            Ok(reply) => reply,
            Err(Failure::Fatal(e)) => return CopyOutcome::Fail(e),
            Err(Failure::NotSent(e) | Failure::Lost(e)) => return CopyOutcome::Unanswered(e),
        };
        let addr = node.addr.clone();
        if let Frame::Error(message) = reply {
            return match classify(&message) {
                ErrorClass::Corrupt => CopyOutcome::Bad(CopyProblem::Corrupt(message)),
                class if class.is_routing() => {
                    CopyOutcome::Unanswered(Error::Server { addr, message })
                }
                _ => CopyOutcome::Fail(Error::Server { addr, message }),
            };
        }
        match parse_digest_reply(reply) {
            Err(detail) => CopyOutcome::Unanswered(Error::UnexpectedReply {
                addr,
                command: "DIGEST.GET".into(),
                detail,
            }),
            Ok(DigestReply::Absent) => CopyOutcome::Absent,
            Ok(DigestReply::Copy {
                value,
                algorithm,
                hex,
            }) => match check_copy(&value, &algorithm, &hex) {
                Ok(algorithm) => CopyOutcome::Good { value, algorithm },
                Err(problem) => CopyOutcome::Bad(problem),
            },
        }
    }

    /// Sends a write to the primary; retries while the failure proves it did not run.
    /// Returns the primary's address with its reply.
    async fn write(&self, args: &[&[u8]]) -> Result<(String, Frame), Error> {
        let deadline = Instant::now() + self.inner.options.retry_deadline;
        let mut backoff = RETRY_BACKOFF_MIN;
        loop {
            self.refresh_if_due().await;
            let (primary, seen) = {
                let view = self.view();
                (view.topology.primary().cloned(), view.seen())
            };
            let last = match primary {
                None => self.no_primary(),
                Some(node) => match self.send(&node.addr, args).await {
                    Ok(Frame::Error(message)) => match classify(&message) {
                        class if class.is_routing() => Error::Server {
                            addr: node.addr,
                            message,
                        },
                        ErrorClass::OutcomeUnknown => {
                            return Err(Error::OutcomeUnknown {
                                addr: node.addr,
                                reason: message,
                            })
                        }
                        _ => {
                            return Err(Error::Server {
                                addr: node.addr,
                                message,
                            })
                        }
                    },
                    Ok(reply) => return Ok((node.addr, reply)),
                    Err(Failure::NotSent(e)) => e,
                    Err(Failure::Lost(e)) => {
                        return Err(Error::OutcomeUnknown {
                            addr: node.addr,
                            reason: e.to_string(),
                        })
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                },
            };
            if Instant::now() >= deadline {
                return Err(self.unavailable(deadline, last));
            }
            debug!(error = %last, "write not executed; refreshing the topology and retrying");
            backoff = self.pause_and_refresh(seen, backoff, deadline).await;
        }
    }

    /// Sends a read where the policy says, falling over to the next candidate on any failure
    /// and retrying rounds until the deadline. Returns the serving node's address with its reply.
    async fn read(&self, args: &[&[u8]]) -> Result<(String, Frame), Error> {
        let deadline = Instant::now() + self.inner.options.retry_deadline;
        let mut backoff = RETRY_BACKOFF_MIN;
        let turn = self.turn();
        loop {
            self.refresh_if_due().await;
            let (candidates, seen) = {
                let view = self.view();
                let policy = self.inner.options.read_policy;
                let candidates = match policy {
                    // Linearizable reads only: never silently fall back to a replica.
                    ReadPolicy::Primary => view.topology.primary().cloned().into_iter().collect(),
                    _ => view.topology.read_order(policy, turn),
                };
                (candidates, view.seen())
            };
            let mut last = None;
            for node in candidates {
                match self.send(&node.addr, args).await {
                    Ok(Frame::Error(message)) => {
                        let class = classify(&message);
                        let error = Error::Server {
                            addr: node.addr,
                            message,
                        };
                        if !class.is_routing() {
                            return Err(error);
                        }
                        last = Some(error);
                    }
                    Ok(reply) => return Ok((node.addr, reply)),
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::NotSent(e) | Failure::Lost(e)) => last = Some(e),
                }
            }
            let last = last.unwrap_or_else(|| self.no_primary());
            if Instant::now() >= deadline {
                return Err(self.unavailable(deadline, last));
            }
            debug!(error = %last, "read not served; refreshing the topology and retrying");
            backoff = self.pause_and_refresh(seen, backoff, deadline).await;
        }
    }

    /// Tells each node that served a reportable bad copy, once. A report that fails is noted
    /// in the copy (`reported: false`) and never fails the read.
    async fn report_bad_copies(&self, key: &[u8], bad_copies: &mut [BadCopy]) {
        for bad in bad_copies
            .iter_mut()
            .filter(|b| b.problem.is_reportable() && !b.reported)
        {
            match self.send(&bad.node.addr, &[b"DIGEST.REPORT", key]).await {
                Ok(reply) if expect_ok(&reply).is_ok() => bad.reported = true,
                Ok(reply) => {
                    warn!(addr = %bad.node.addr, reply = ?reply, "DIGEST.REPORT not acknowledged")
                }
                Err(failure) => {
                    warn!(addr = %bad.node.addr, error = %failure.into_error(), "DIGEST.REPORT not delivered")
                }
            }
        }
    }

    /// One request to one node. A connection failure also drops that node's idle connections.
    async fn send(&self, addr: &str, args: &[&[u8]]) -> Result<Frame, Failure> {
        let pool = self.pool(addr);
        let result = pool.request(args, &self.inner.options).await;
        if result.is_err() {
            pool.clear();
        }
        result
    }

    fn pool(&self, addr: &str) -> Arc<Pool> {
        self.lock_pools()
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Pool::new(addr, &self.inner.options)))
            .clone()
    }

    fn lock_pools(&self) -> MutexGuard<'_, HashMap<String, Arc<Pool>>> {
        self.inner
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.inner
            .view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where a read starts among the replicas: fixed per client for `AnyReplica`, the next one
    /// for `RoundRobin`.
    fn turn(&self) -> usize {
        match self.inner.options.read_policy {
            ReadPolicy::RoundRobin => self.inner.round_robin.fetch_add(1, Ordering::Relaxed),
            _ => self.inner.sticky_turn,
        }
    }

    fn no_primary(&self) -> Error {
        Error::NoPrimary {
            source_addr: self.view().source_addr.clone(),
        }
    }

    fn unavailable(&self, deadline: Instant, last: Error) -> Error {
        let retry_deadline = self.inner.options.retry_deadline;
        let started = deadline.checked_sub(retry_deadline).unwrap_or(deadline);
        Error::Unavailable {
            waited: started.elapsed(),
            last: Box::new(last),
        }
    }

    /// After a failure: refresh the topology (unless another task did since `seen`), and
    /// unless that found a new primary, wait `backoff` (no later than `deadline`, where the last
    /// attempt is made) before the next attempt. Returns the next pause.
    async fn pause_and_refresh(
        &self,
        seen: Seen,
        backoff: Duration,
        deadline: Instant,
    ) -> Duration {
        if let Err(e) = self.refresh(seen.generation).await {
            debug!(error = %e, "topology refresh failed");
        }
        let now = self.view().topology.primary().cloned();
        if now.is_some() && now != seen.primary {
            // A new primary: try it at once.
            return RETRY_BACKOFF_MIN;
        }
        tokio::time::sleep_until((Instant::now() + backoff).min(deadline)).await;
        (backoff * 2).min(RETRY_BACKOFF_MAX)
    }

    /// The periodic refresh, before a request, if the topology is older than the option says.
    async fn refresh_if_due(&self) {
        let Some(interval) = self.inner.options.topology_refresh_interval else {
            return;
        };
        let (due, generation) = {
            let view = self.view();
            (view.refreshed_at.elapsed() >= interval, view.generation)
        };
        if due {
            if let Err(e) = self.refresh(generation).await {
                debug!(error = %e, "periodic topology refresh failed; keeping the old topology");
            }
        }
    }

    /// Rediscovers the topology, unless another task already did since `seen_generation`.
    async fn refresh(&self, seen_generation: u64) -> Result<(), Error> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let addrs = {
            let view = self.view();
            if view.generation != seen_generation {
                return Ok(());
            }
            // The primary first (if it still is, its answer settles it), the other members,
            // then the seeds.
            let mut addrs: Vec<String> = view
                .topology
                .primary()
                .map(|p| p.addr.clone())
                .into_iter()
                .collect();
            addrs.extend(view.topology.replicas().map(|n| n.addr.clone()));
            addrs.extend(self.inner.seeds.iter().cloned());
            addrs
        };
        let (topology, source) = self.discover(&addrs).await?;
        self.install(topology, source);
        Ok(())
    }

    fn install(&self, topology: Topology, source_addr: String) {
        let members: HashSet<&str> = topology.nodes().iter().map(|n| n.addr.as_str()).collect();
        self.lock_pools()
            .retain(|addr, _| members.contains(addr.as_str()) || self.inner.seeds.contains(addr));
        let mut view = self
            .inner
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        debug!(from = %source_addr, ?topology, "topology installed");
        view.topology = topology;
        view.source_addr = source_addr;
        view.refreshed_at = Instant::now();
        view.generation += 1;
    }

    /// Asks `addrs` in order for their membership until one is authoritative: a list in which
    /// the node that answered is itself the primary. When a node names another as primary,
    /// that one is asked next. Without an authoritative answer, the first list naming a primary
    /// is used, else the first list at all.
    async fn discover(&self, addrs: &[String]) -> Result<(Topology, String), Error> {
        let mut queue: VecDeque<String> = addrs.iter().cloned().collect();
        let mut asked: HashSet<String> = HashSet::new();
        let mut fallback: Option<(Topology, String)> = None;
        let mut tried: Vec<String> = Vec::new();
        // Each answer may add one address (the primary it names): bound the walk.
        let asks_max = addrs.len() + DISCOVERY_EXTRA_ASKS_MAX;
        while let Some(addr) = queue.pop_front() {
            if asked.len() >= asks_max {
                tried.push(format!("stopped after asking {asks_max} nodes"));
                break;
            }
            if !asked.insert(addr.clone()) {
                continue;
            }
            let topology = match self.membership(&addr).await {
                Ok(topology) => topology,
                Err(e) => {
                    tried.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            match topology.primary() {
                Some(primary) if primary.addr == addr => return Ok((topology, addr)),
                Some(primary) => queue.push_front(primary.addr.clone()),
                None => {}
            }
            let better = match &fallback {
                None => true,
                Some((known, _)) => known.primary().is_none() && topology.primary().is_some(),
            };
            if better {
                fallback = Some((topology, addr));
            }
        }
        fallback.ok_or_else(|| Error::Discovery {
            tried: if tried.is_empty() {
                "no address to ask".into()
            } else {
                tried.join("; ")
            },
        })
    }

    /// One node's view of the membership. An empty list with `ROLE` master is a standalone
    /// node that has not formed a cluster yet.
    async fn membership(&self, addr: &str) -> Result<Topology, Error> {
        let reply = self
            .send(addr, &[b"MEMBERSHIP", b"LIST"])
            .await
            .map_err(Failure::into_error)?;
        if let Frame::Error(message) = reply {
            return Err(Error::Server {
                addr: addr.to_string(),
                message,
            });
        }
        let topology =
            Topology::from_membership(&reply).map_err(|detail| Error::UnexpectedReply {
                addr: addr.to_string(),
                command: "MEMBERSHIP LIST".into(),
                detail,
            })?;
        if !topology.nodes().is_empty() {
            return Ok(topology);
        }
        let role = self
            .send(addr, &[b"ROLE"])
            .await
            .map_err(Failure::into_error)?;
        match &role {
            Frame::Array(fields)
                if fields.first().and_then(crate::topology::text) == Some(&b"master"[..]) =>
            {
                Ok(Topology::standalone(addr))
            }
            other => Err(unexpected(
                addr,
                "ROLE (of a node with no membership)",
                other,
            )),
        }
    }
}

fn check_args(args: &[&[u8]]) -> Result<(), Error> {
    if args.is_empty() {
        return Err(Error::InvalidArgument(
            "a command needs at least its name".into(),
        ));
    }
    Ok(())
}

/// A key for an error message: printable ASCII as is, other bytes as `\xNN`.
fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// A random number without a dependency: std's hasher keys are random per process and per
/// `RandomState`.
fn random_usize() -> usize {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as usize
}

#[cfg(test)]
mod tests;
