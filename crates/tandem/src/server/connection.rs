//! One client connection: read, parse, route, reply — in order, pipelined.
//!
//! Routing: a data read runs against the keyspace after a linearizable read barrier; consecutive
//! data writes of one pipeline are gathered into ONE log entry (ops applied in order, replies in
//! order), proposed when something that must observe them comes next (a read, a server command)
//! or when the pipeline ends. A server-level command is answered by [`super::admin`].
//!
//! Order: replies are written in request order because every non-write command first waits for
//! the writes before it, and writes are proposed in arrival order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tandem_core::{Batch, Command, Frame, Op, ParseContext};
use tandem_resp::{Protocol, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::clients::ClientInfo;
use super::{admin, now_ms, pubsub, replication, Shared};
use crate::consensus::damage::Source;

/// Replies buffered beyond this are written out before the rest of the pipeline is processed.
const OUT_FLUSH_BYTES: usize = 64 * 1024;

/// A MULTI in progress. Like Redis, commands are checked for existence and arity when queued,
/// and parsed (syntax, values, relative expiries) only at EXEC.
pub struct Multi {
    pub queued: Vec<Vec<Bytes>>,
    /// Bytes of arguments queued: the transaction is one log entry, so it has a size limit.
    pub queued_bytes: usize,
    /// A command failed to queue (unknown, wrong arity, not allowed): EXEC must abort.
    pub failed: bool,
}

/// Server-level commands that may be queued in MULTI: they touch no data, so EXEC answers them
/// in place without putting them in the log.
pub fn stateless_in_multi(name: &str) -> bool {
    matches!(name, "ping" | "echo" | "time" | "select")
}

pub struct Conn {
    pub shared: Arc<Shared>,
    pub info: Arc<ClientInfo>,
    pub proto: Protocol,
    pub authenticated: bool,
    pub multi: Option<Multi>,
    /// Close the connection once the replies so far are written (QUIT, protocol error).
    pub close: bool,
    pub out: BytesMut,
    /// Writes of the current pipeline not yet proposed, and their size in argument bytes.
    pending: Vec<Op>,
    pending_bytes: usize,
    /// A barrier (or a committed write) completed after every request in the current read
    /// arrived, so reads in it are linearizable without another round.
    barrier_fresh: bool,
    /// Clock reading and checksum algorithm for the requests of the current read, taken once per
    /// read rather than once per request (a pipeline shares them).
    ctx: ParseContext,
    /// Commit position (log index) of this connection's last write: WAIT and POSITION use it.
    pub last_write_index: u64,
    /// CLIENT DURABILITY: this connection's setting, overriding the server's.
    pub durability: Option<crate::config::Durability>,
    /// Pub/Sub channels and patterns, and the queue of messages for them: present only while
    /// the connection holds a subscription, so that the others pay nothing for Pub/Sub.
    pub pubsub: Option<Box<pubsub::Subscriber>>,
}

/// What woke a subscribed connection.
enum Woken {
    Read(usize),
    Message(pubsub::Message),
    Overflowed,
}

pub async fn serve(shared: Arc<Shared>, mut socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let laddr = socket.local_addr().unwrap_or(peer);
    let Some(info) = shared
        .clients
        .register(peer, laddr, shared.config.maxclients)
    else {
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let id = info.id;
    // Unregisters even if the task panics, so a client slot is never leaked.
    struct Registered(Arc<Shared>, u64);
    impl Drop for Registered {
        fn drop(&mut self) {
            self.0.clients.unregister(self.1);
        }
    }
    let _registered = Registered(shared.clone(), id);
    let mut conn = Conn {
        authenticated: shared.runtime.read().requirepass.is_none(),
        shared: shared.clone(),
        info,
        proto: Protocol::Resp2,
        multi: None,
        close: false,
        out: BytesMut::with_capacity(16 * 1024),
        pending: Vec::new(),
        pending_bytes: 0,
        barrier_fresh: false,
        ctx: ParseContext {
            algorithm: shared.config.checksum_algorithm,
            now_ms: 0,
        },
        last_write_index: 0,
        durability: None,
        pubsub: None,
    };
    if let Err(e) = conn.run(&mut socket).await {
        debug!("client {id} ({peer}): {e}");
    }
}

impl Conn {
    async fn run(&mut self, socket: &mut TcpStream) -> std::io::Result<()> {
        let cfg = &self.shared.config;
        let mut parser = RequestParser::new(tandem_resp::Limits {
            max_bulk_len: cfg.proto_max_bulk_len,
            max_array_len: cfg.proto_max_array_len,
            max_inline_len: cfg.proto_max_inline_len,
            ..Default::default()
        });
        let query_limit = cfg.client_query_buffer_limit;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            let n = if let Some(subscriber) = self.pubsub.as_deref_mut() {
                // Subscribed: a request or a message, whichever comes first. Messages are
                // written out as they come, between requests.
                let woken = tokio::select! {
                    read = socket.read_buf(&mut buf) => Woken::Read(read?),
                    message = subscriber.next() => match message {
                        Some(message) => Woken::Message(message),
                        None => Woken::Overflowed,
                    },
                };
                match woken {
                    Woken::Read(n) => n,
                    Woken::Message(message) => {
                        pubsub::deliver(self, message, OUT_FLUSH_BYTES);
                        self.write_out(socket).await?;
                        continue;
                    }
                    Woken::Overflowed => return Err(pubsub::overflow_error(self)),
                }
            } else {
                socket.read_buf(&mut buf).await?
            };
            if n == 0 {
                return Ok(());
            }
            self.shared
                .stats
                .net_input_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            self.barrier_fresh = false;
            self.info.touch();
            loop {
                // Before AUTH, Redis's tighter limits apply (at most 10 arguments of 16 KiB).
                parser.set_unauthenticated(!self.authenticated);
                match parser.parse(&mut buf) {
                    Ok(Some(args)) => {
                        if args.is_empty() {
                            continue;
                        }
                        self.handle(args).await;
                        if self.close {
                            break;
                        }
                        if self.out.len() >= OUT_FLUSH_BYTES {
                            self.write_out(socket).await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.flush_pending().await;
                        self.shared
                            .stats
                            .protocol_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.reply(Frame::Error(format!("ERR {e}")));
                        self.close = true;
                        break;
                    }
                }
            }
            self.flush_pending().await;
            if !self.close && buf.len() + parser.partial_request_bytes() > query_limit {
                self.reply(Frame::error(
                    "ERR client query buffer exceeds client-query-buffer-limit; connection closed",
                ));
                self.close = true;
            }
            self.write_out(socket).await?;
            if self.close {
                return Ok(());
            }
            // Keep the buffer from growing without bound after a large request was consumed.
            if buf.is_empty() && buf.capacity() > 1 << 20 {
                buf = BytesMut::with_capacity(16 * 1024);
            }
        }
    }

    async fn write_out(&mut self, socket: &mut TcpStream) -> std::io::Result<()> {
        if !self.out.is_empty() {
            match self.pubsub.as_deref() {
                None => socket.write_all(&self.out).await?,
                // A subscriber that stops reading would hold this write forever: give it up
                // once its message queue overflows.
                Some(subscriber) => tokio::select! {
                    written = socket.write_all(&self.out) => written?,
                    () = subscriber.overflowed() => return Err(pubsub::overflow_error(self)),
                },
            }
            self.shared
                .stats
                .net_output_bytes
                .fetch_add(self.out.len() as u64, Ordering::Relaxed);
            self.out.clear();
            if self.out.capacity() > 1 << 20 {
                self.out = BytesMut::with_capacity(16 * 1024);
            }
        }
        Ok(())
    }

    pub fn reply(&mut self, frame: Frame) {
        tandem_resp::encode(&frame, self.proto, &mut self.out);
    }

    pub fn parse_context(&self) -> ParseContext {
        ParseContext {
            algorithm: self.shared.runtime.read().checksum_algorithm,
            now_ms: now_ms(),
        }
    }

    async fn handle(&mut self, args: Vec<Bytes>) {
        let shared = self.shared.clone();
        shared
            .stats
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        // Per command, not per read: an earlier command of the pipeline may have waited (WAIT,
        // a write, a barrier) or changed the configured checksum algorithm.
        self.ctx = self.parse_context();
        let name = &args[0];

        if !self.authenticated && !admin::allowed_before_auth(name) {
            self.flush_pending().await;
            return self.reply(Frame::error("NOAUTH Authentication required."));
        }
        let Some(spec) = tandem_core::lookup(name) else {
            self.flush_pending().await;
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return self.reply(unknown_command(&args));
        };
        if !tandem_core::arity_ok(spec, args.len()) {
            self.flush_pending().await;
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            if spec.name == "exec" {
                // Redis answers a rejected EXEC by discarding the transaction.
                self.multi = None;
                self.info.multi.store(-1, Ordering::Relaxed);
                return self.reply(Frame::error(
                    "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
                ));
            }
            return self.reply(tandem_core::wrong_arity(spec.name));
        }
        if self.pubsub.is_some() && pubsub::intercept_while_subscribed(self, spec, &args).await {
            return;
        }

        if self.multi.is_some() && !admin::runs_inside_multi(spec.name) {
            return self.queue(spec.name, args);
        }
        // Every write becomes (part of) one log entry, which has a size limit: refuse what
        // cannot fit instead of letting the log reject it.
        let request_bytes: usize = args.iter().map(|a| a.len()).sum();
        if request_bytes > shared.config.proposal_bytes_max {
            self.flush_pending().await;
            return self.reply(Frame::Error(format!(
                "ERR request too large: {request_bytes} bytes of arguments, over proposal-bytes-max ({})",
                shared.config.proposal_bytes_max
            )));
        }

        match tandem_core::parse_with_spec(spec, &args, &self.ctx) {
            Some(Ok(Command::Write(w))) => {
                // A write that derives its value from stored bytes (APPEND, INCR, ...) must not be
                // proposed if this node's copy is corrupt: verify first. The pipeline's earlier
                // writes may replace that copy, so on a failure apply them and look again.
                if !w.value_keys().is_empty() {
                    let mut verdict = self.verify_stored(&w);
                    if verdict.is_err() && !self.pending.is_empty() {
                        self.flush_pending().await;
                        verdict = self.verify_stored(&w);
                    }
                    if verdict.is_err() {
                        // This node's copy is damaged: repair it from another member, then
                        // look again (the write is proposed only over verified bytes).
                        self.flush_pending().await;
                        let node = shared.node.clone();
                        if node.repair_damaged(&w.value_keys(), Source::Read).await {
                            verdict = self.verify_stored(&w);
                        }
                    }
                    if let Err(frame) = verdict {
                        self.flush_pending().await;
                        return self.reply(frame);
                    }
                }
                if self.pending_bytes + request_bytes > shared.config.pipeline_batch_bytes_max {
                    self.flush_pending().await;
                }
                self.pending.push(Op::Write(w));
                self.pending_bytes += request_bytes;
                if self.pending.len() >= shared.config.pipeline_batch_max {
                    self.flush_pending().await;
                }
            }
            Some(Ok(Command::Read(r))) => {
                self.flush_pending().await;
                if !self.barrier_fresh {
                    if shared.node.is_primary() || shared.node.is_unformed_standalone() {
                        // Linearizable on the primary.
                        if let Err(e) = shared.node.read_barrier().await {
                            return self
                                .reply(Frame::Error(format!("TRYAGAIN read not served: {e}")));
                        }
                    } else if let Err(refusal) = replication::replica_read_allowed(
                        &shared.node,
                        shared.config.replica_max_lag,
                    ) {
                        // A replica: a prefix of the log, fresh within the lag bound.
                        return self.reply(refusal);
                    }
                    self.barrier_fresh = true;
                }
                let mut frame = shared
                    .node
                    .state()
                    .read()
                    .keyspace
                    .read(&r, self.ctx.now_ms);
                if is_corrupt(&frame) {
                    // Never the damaged bytes: repair from another member (network, outside
                    // the lock), then read again; still CORRUPT if no member had a good copy.
                    let node = shared.node.clone();
                    if node.repair_damaged(&r.value_keys(), Source::Read).await {
                        frame = node.state().read().keyspace.read(&r, self.ctx.now_ms);
                    }
                }
                self.reply(frame);
            }
            Some(Err(frame)) => {
                self.flush_pending().await;
                self.reply(frame);
            }
            None => {
                self.flush_pending().await;
                admin::handle(self, spec.name, &args).await;
            }
        }
    }

    fn verify_stored(&self, w: &tandem_core::WriteCmd) -> Result<(), Frame> {
        self.shared
            .node
            .state()
            .read()
            .keyspace
            .verify_values(w.value_keys(), now_ms())
    }

    /// Queues a command inside MULTI (or records why it cannot be queued).
    fn queue(&mut self, spec_name: &str, args: Vec<Bytes>) {
        let config = &self.shared.config;
        let Some(multi) = self.multi.as_mut() else {
            return;
        };
        let bytes: usize = args.iter().map(|a| a.len()).sum();
        let reply = if multi.queued.len() >= config.multi_queued_max {
            multi.failed = true;
            Frame::Error(format!(
                "ERR too many commands queued in MULTI (multi-queued-max is {})",
                config.multi_queued_max
            ))
        } else if multi.queued_bytes + bytes > config.proposal_bytes_max {
            multi.failed = true;
            Frame::Error(format!(
                "ERR transaction too large: over proposal-bytes-max ({} bytes of arguments; a \
                 transaction is one log entry)",
                config.proposal_bytes_max
            ))
        } else if tandem_core::commands::is_data_command(spec_name) || stateless_in_multi(spec_name)
        {
            multi.queued_bytes += bytes;
            multi.queued.push(args);
            Frame::Simple("QUEUED".into())
        } else {
            multi.failed = true;
            Frame::Error(format!(
                "ERR Command '{spec_name}' is not allowed inside a transaction in Tandem"
            ))
        };
        self.info
            .multi
            .store(multi.queued.len() as i64, Ordering::Relaxed);
        self.reply(reply);
    }

    /// Proposes the pipeline's gathered writes as one log entry and writes their replies.
    pub async fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.pending);
        let bytes = std::mem::take(&mut self.pending_bytes);
        let n = ops.len();
        let batch = Batch {
            now_ms: now_ms(),
            algorithm: self.ctx.algorithm,
            ops,
        };
        match self.shared.node.write(batch, bytes).await {
            Ok(written) => {
                self.last_write_index = written.index;
                match replication::wait_durable_everywhere(self, written.index).await {
                    Ok(()) => {
                        for f in written.frames {
                            self.reply(f);
                        }
                    }
                    Err(f) => {
                        for _ in 0..n {
                            self.reply(f.clone());
                        }
                    }
                }
                self.barrier_fresh = true;
            }
            Err(e) => {
                let f = e.to_frame();
                for _ in 0..n {
                    self.reply(f.clone());
                }
            }
        }
    }

    /// Runs a whole transaction: every data command is parsed now (as Redis does at EXEC) and
    /// the ones that parse become one log entry, applied atomically. A command that fails to
    /// parse, and the stateless server commands, are answered in their place in the reply.
    pub async fn exec(&mut self, queued: Vec<Vec<Bytes>>) -> Frame {
        let ctx = self.parse_context();
        let mut replies: Vec<Option<Frame>> = Vec::with_capacity(queued.len());
        let mut ops = Vec::new();
        // Keys an earlier command of the transaction writes: their stored copy is replaced
        // before this one runs, so only the others are checked now (apply itself refuses a
        // derived write that meets damaged bytes). After FLUSHALL nothing stored is read.
        let mut written: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
        let mut flushed = false;
        for args in &queued {
            match tandem_core::parse(args, &ctx) {
                Some(Ok(Command::Write(w))) => {
                    let stored: Vec<&Bytes> = w
                        .value_keys()
                        .into_iter()
                        .filter(|k| !flushed && !written.contains(*k))
                        .collect();
                    if !stored.is_empty() {
                        let verdict = self
                            .shared
                            .node
                            .state()
                            .read()
                            .keyspace
                            .verify_values(stored, now_ms());
                        if let Err(frame) = verdict {
                            replies.push(Some(frame));
                            continue;
                        }
                    }
                    w.for_each_written_key(|k| {
                        written.insert(Bytes::copy_from_slice(k));
                    });
                    flushed |= matches!(
                        w,
                        tandem_core::WriteCmd::Key(tandem_core::commands::keys::KeyWrite::Flush)
                    );
                    ops.push(Op::Write(w));
                    replies.push(None);
                }
                Some(Ok(Command::Read(r))) => {
                    ops.push(Op::Read(r));
                    replies.push(None);
                }
                Some(Err(frame)) => replies.push(Some(frame)),
                None => replies.push(Some(admin::stateless(args))),
            }
        }
        let read_only = ops.iter().all(|op| matches!(op, Op::Read(_)));
        let on_replica =
            !self.shared.node.is_primary() && !self.shared.node.is_unformed_standalone();
        let mut applied = if ops.is_empty() {
            Vec::new()
        } else if read_only && on_replica {
            // A transaction of reads on a replica: served from this node's state, all under one
            // lock (one point of the log), under the replica read rule.
            if let Err(refusal) = replication::replica_read_allowed(
                &self.shared.node,
                self.shared.config.replica_max_lag,
            ) {
                return refusal;
            }
            let now = now_ms();
            let st = self.shared.node.state().read();
            ops.iter()
                .filter_map(|op| match op {
                    Op::Read(r) => Some(st.keyspace.read(r, now)),
                    _ => None,
                })
                .collect()
        } else {
            let batch = Batch {
                now_ms: now_ms(),
                algorithm: ctx.algorithm,
                ops,
            };
            let bytes = queued.iter().flatten().map(|a| a.len()).sum();
            match self.shared.node.write(batch, bytes).await {
                Ok(written) => {
                    self.last_write_index = written.index;
                    if let Err(f) = replication::wait_durable_everywhere(self, written.index).await
                    {
                        return f;
                    }
                    written.frames
                }
                Err(e) => return e.to_frame(),
            }
        }
        .into_iter();
        Frame::Array(
            replies
                .into_iter()
                .map(|r| r.or_else(|| applied.next()).unwrap_or(Frame::Null))
                .collect(),
        )
    }
}

/// A `-CORRUPT` reply (the keyspace's, see `tandem_core::keyspace`): a stored value failed its
/// checksum.
pub fn is_corrupt(frame: &Frame) -> bool {
    matches!(frame, Frame::Error(e) if e.starts_with("CORRUPT "))
}

/// Redis 7's reply to an unknown command.
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncate(&String::from_utf8_lossy(&args[0]), 128)
    );
    // Like Redis: the quoted arguments together are cut at 128 characters.
    let mut quoted = String::new();
    for a in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push_str(&format!(
            "'{}' ",
            truncate(&String::from_utf8_lossy(a), room)
        ));
    }
    msg.push_str(&quoted);
    Frame::Error(msg)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
