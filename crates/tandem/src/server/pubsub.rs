//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB, with Redis 7.0's
//! replies.
//!
//! **Node-local**, like Redis outside cluster mode: a message reaches the subscribers connected
//! to the node it was published on, and no other. Messages never enter the log, are not
//! replicated and are not kept: a subscriber that is not connected when a message is published
//! never sees it.
//!
//! The pieces:
//! - [`Hub`] (one per node, in `Shared`): which mailboxes hear which channel and which pattern.
//!   PUBLISH takes its read lock and pushes the message into each matching mailbox; it never
//!   waits for a subscriber. (Un)subscribing takes the write lock.
//! - [`Mailbox`]: one subscribed connection's queue of undelivered messages, bounded in bytes.
//! - [`Subscriber`]: a connection's side — its channels and patterns and the receiving end of
//!   its mailbox. A connection holds one only while it has a subscription, so a connection that
//!   never subscribes pays nothing for Pub/Sub. Dropping it (last UNSUBSCRIBE, RESET, the
//!   connection closing, even a panic) removes the connection from the hub.
//! - [`handle`]: the commands. While subscribed, the connection loop
//!   ([`super::connection`]) waits on the mailbox as well as the socket and writes messages out
//!   as they come ([`deliver`]).
//!
//! Protocol, as in Redis 7.0: a RESP2 connection with a subscription may only run
//! (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING (answered `["pong", arg]`), QUIT and RESET
//! ([`intercept_while_subscribed`]); after HELLO 3 every command is allowed, and messages and
//! confirmations are push frames. RESET leaves every subscription without confirmations.
//! Unlike Redis, (P)SUBSCRIBE cannot be queued inside MULTI.
//!
//! Limits:
//! - `--pubsub-queue-bytes-max` (32 MiB, Redis's `client-output-buffer-limit pubsub` hard
//!   limit): undelivered message bytes queued for one subscriber, each message counted as its
//!   channel, pattern and payload plus [`MESSAGE_OVERHEAD_BYTES`]. A publisher that would take a
//!   queue past it drops the message instead, and the subscriber is disconnected (logged, and
//!   counted in INFO stats `client_output_buffer_limit_disconnections`): a subscriber that does
//!   not read cannot make the server's memory grow.
//! - `--pubsub-subscriptions-max` (100000): channels plus patterns of one connection; a
//!   (P)SUBSCRIBE that would exceed it is refused whole.
//! - Channel and pattern names are bounded by the request limits (`--proto-max-bulk-len`,
//!   `--client-query-buffer-limit`); patterns are matched by [`tandem_core::glob_match`], which
//!   bounds its own work.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tandem_core::{CommandSpec, Frame};
use tandem_resp::Protocol;
use tokio::sync::{mpsc, Notify};
use tracing::warn;

use super::connection::Conn;

/// What one queued message costs beyond its channel, pattern and payload bytes: the frame
/// headers it will be written with, the queue node and the handles to its bytes.
pub const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// Per-subscriber limits (from the server configuration).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Undelivered message bytes one subscriber may have queued before it is disconnected.
    pub queued_bytes_max: usize,
    /// Channels plus patterns one connection may subscribe to.
    pub subscriptions_max: usize,
}

/// Channels or patterns: the two kinds of subscription, which behave alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
}

impl Kind {
    fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
        }
    }

    fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
        }
    }
}

/// A published message on its way to one subscriber. Its bytes are shared by every receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The pattern that matched, for a `pmessage`; None for a `message`.
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    /// What the message counts against its subscriber's queue limit.
    pub fn cost_bytes(&self) -> usize {
        self.pattern.as_ref().map_or(0, |p| p.len())
            + self.channel.len()
            + self.payload.len()
            + MESSAGE_OVERHEAD_BYTES
    }

    /// `message channel payload` or `pmessage pattern channel payload`: a push frame (an array
    /// in RESP2).
    pub fn frame(&self) -> Frame {
        match &self.pattern {
            None => Frame::Push(vec![
                Frame::bulk("message"),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
            Some(pattern) => Frame::Push(vec![
                Frame::bulk("pmessage"),
                Frame::Bulk(pattern.clone()),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
        }
    }
}

/// One subscriber's queue as publishers see it.
pub struct Mailbox {
    /// The connection's client id.
    id: u64,
    /// Unbounded on purpose: a publisher must never wait. The bound is `queued_bytes_max`,
    /// checked before each send.
    tx: mpsc::UnboundedSender<Message>,
    /// Cost of the messages sent and not yet taken by the connection.
    queued_bytes: AtomicUsize,
    queued_bytes_max: usize,
    /// Set once, by the publisher whose message did not fit; the connection then closes.
    overflowed: AtomicBool,
    /// Wakes the connection when `overflowed` is set, even while it is stuck writing to a
    /// client that does not read.
    overflow: Notify,
}

impl Mailbox {
    /// Queues `message` unless it would take the queue over its bound (or the queue already
    /// overflowed): then the message is dropped. Returns true when this call is the one that
    /// found the queue full, which disconnects the subscriber.
    fn offer(&self, message: Message) -> bool {
        if self.overflowed.load(Ordering::Acquire) {
            return false;
        }
        let cost = message.cost_bytes();
        let queued = self.queued_bytes.fetch_add(cost, Ordering::AcqRel) + cost;
        if queued > self.queued_bytes_max {
            self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            let first = !self.overflowed.swap(true, Ordering::AcqRel);
            self.overflow.notify_waiters();
            return first;
        }
        // Fails only when the receiving connection is already gone.
        let _ = self.tx.send(message);
        false
    }

    /// Resolves once the mailbox has overflowed.
    async fn overflowed(&self) {
        let notified = self.overflow.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a notification between the two is not lost.
        notified.as_mut().enable();
        if self.overflowed.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// Subscribers of each channel and each pattern.
#[derive(Default)]
struct Registry {
    channels: HashMap<Bytes, Vec<Arc<Mailbox>>>,
    patterns: HashMap<Bytes, Vec<Arc<Mailbox>>>,
}

impl Registry {
    fn map(&mut self, kind: Kind) -> &mut HashMap<Bytes, Vec<Arc<Mailbox>>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
        }
    }

    fn remove(&mut self, kind: Kind, name: &[u8], id: u64) {
        let map = self.map(kind);
        if let Some(subscribers) = map.get_mut(name) {
            if let Some(i) = subscribers.iter().position(|m| m.id == id) {
                subscribers.swap_remove(i);
            }
            if subscribers.is_empty() {
                map.remove(name);
            }
        }
    }
}

/// Channels and patterns and their subscribers, shared by every connection of this node.
#[derive(Default)]
pub struct Hub {
    /// Shared with every [`Subscriber`], which removes itself when dropped.
    registry: Arc<RwLock<Registry>>,
    /// Subscribers disconnected for going over their queue limit.
    slow_subscribers_disconnected: AtomicU64,
}

impl Hub {
    /// The subscription state of connection `id`, subscribed to nothing yet.
    pub fn subscriber(&self, id: u64, limits: Limits) -> Subscriber {
        let (tx, rx) = mpsc::unbounded_channel();
        Subscriber {
            registry: self.registry.clone(),
            mailbox: Arc::new(Mailbox {
                id,
                tx,
                queued_bytes: AtomicUsize::new(0),
                queued_bytes_max: limits.queued_bytes_max,
                overflowed: AtomicBool::new(false),
                overflow: Notify::new(),
            }),
            rx,
            channels: HashMap::new(),
            patterns: HashMap::new(),
            next_seq: 0,
            subscriptions_max: limits.subscriptions_max,
        }
    }

    /// Delivers `message` to every subscriber of `channel` and of a pattern matching it; returns
    /// how many received it (a connection subscribed both ways counts twice, as in Redis).
    ///
    /// Never waits for a subscriber: a message that would take a subscriber's queue over its
    /// limit is dropped and that subscriber disconnected (it still counts as a receiver, as in
    /// Redis, where the client is closed after the message was added to its output buffer).
    pub fn publish(&self, channel: &[u8], message: Bytes) -> usize {
        let registry = self.registry.read();
        let mut receivers = 0;
        let mut channel_bytes: Option<Bytes> = None;
        let mut send = |mailbox: &Mailbox, pattern: Option<&Bytes>| {
            let channel = channel_bytes
                .get_or_insert_with(|| Bytes::copy_from_slice(channel))
                .clone();
            let overflowed = mailbox.offer(Message {
                pattern: pattern.cloned(),
                channel,
                payload: message.clone(),
            });
            if overflowed {
                self.slow_subscribers_disconnected
                    .fetch_add(1, Ordering::Relaxed);
            }
        };
        if let Some(subscribers) = registry.channels.get(channel) {
            for mailbox in subscribers {
                send(mailbox, None);
            }
            receivers += subscribers.len();
        }
        for (pattern, subscribers) in &registry.patterns {
            if tandem_core::glob_match(pattern, channel, false) {
                for mailbox in subscribers {
                    send(mailbox, Some(pattern));
                }
                receivers += subscribers.len();
            }
        }
        receivers
    }

    /// Subscribers of `channel`, not counting patterns (PUBSUB NUMSUB).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.registry
            .read()
            .channels
            .get(channel)
            .map_or(0, Vec::len)
    }

    /// Distinct patterns subscribed to by any connection (PUBSUB NUMPAT, INFO pubsub_patterns).
    pub fn numpat(&self) -> usize {
        self.registry.read().patterns.len()
    }

    /// Channels with at least one subscriber (INFO pubsub_channels).
    pub fn channel_count(&self) -> usize {
        self.registry.read().channels.len()
    }

    /// Channels with at least one subscriber, those matching `pattern` if given (PUBSUB
    /// CHANNELS); in no particular order, as in Redis.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.registry
            .read()
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| tandem_core::glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers disconnected so far for going over `--pubsub-queue-bytes-max`.
    pub fn slow_subscribers_disconnected(&self) -> u64 {
        self.slow_subscribers_disconnected.load(Ordering::Relaxed)
    }
}

/// A (P)SUBSCRIBE refused because the connection would have more than `max` subscriptions.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManySubscriptions {
    pub max: usize,
}

/// One connection's subscriptions and the receiving end of its mailbox.
pub struct Subscriber {
    registry: Arc<RwLock<Registry>>,
    mailbox: Arc<Mailbox>,
    rx: mpsc::UnboundedReceiver<Message>,
    /// Each subscription with the sequence number it was made at: UNSUBSCRIBE without
    /// arguments leaves them in the order they were joined.
    channels: HashMap<Bytes, u64>,
    patterns: HashMap<Bytes, u64>,
    next_seq: u64,
    subscriptions_max: usize,
}

impl Subscriber {
    fn names(&mut self, kind: Kind) -> &mut HashMap<Bytes, u64> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
        }
    }

    /// Channels plus patterns: the count every confirmation carries.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Joins every name (those already joined stay as they are), or none of them when that would
    /// exceed the subscription limit. Returns the count after each name, for the confirmations.
    pub fn join(
        &mut self,
        kind: Kind,
        names: &[Bytes],
    ) -> Result<Vec<usize>, TooManySubscriptions> {
        let mine = self.names(kind);
        let new: HashSet<&[u8]> = names
            .iter()
            .map(|n| n.as_ref())
            .filter(|n| !mine.contains_key(*n))
            .collect();
        if self.count() + new.len() > self.subscriptions_max {
            return Err(TooManySubscriptions {
                max: self.subscriptions_max,
            });
        }
        let registry = self.registry.clone();
        let mut registry = registry.write();
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let seq = self.next_seq;
            if let Entry::Vacant(slot) = self.names(kind).entry(name.clone()) {
                slot.insert(seq);
                self.next_seq += 1;
                registry
                    .map(kind)
                    .entry(name.clone())
                    .or_default()
                    .push(self.mailbox.clone());
            }
            counts.push(self.count());
        }
        Ok(counts)
    }

    /// Leaves `name` if joined; returns the count after.
    pub fn leave(&mut self, kind: Kind, name: &[u8]) -> usize {
        if self.names(kind).remove(name).is_some() {
            self.registry.write().remove(kind, name, self.mailbox.id);
        }
        self.count()
    }

    /// Leaves every channel (or every pattern), in the order they were joined; returns each with
    /// the count after it.
    pub fn leave_all(&mut self, kind: Kind) -> Vec<(Bytes, usize)> {
        let mut joined: Vec<(Bytes, u64)> = self.names(kind).drain().collect();
        joined.sort_by_key(|(_, seq)| *seq);
        let id = self.mailbox.id;
        let mut count = self.count() + joined.len();
        let mut registry = self.registry.write();
        joined
            .into_iter()
            .map(|(name, _)| {
                registry.remove(kind, &name, id);
                count -= 1;
                (name, count)
            })
            .collect()
    }

    /// The next message, waiting for one; None once the mailbox has overflowed (the connection
    /// must then close). Cancel-safe.
    pub async fn next(&mut self) -> Option<Message> {
        if self.mailbox.overflowed.load(Ordering::Acquire) {
            return None;
        }
        let mailbox = self.mailbox.clone();
        tokio::select! {
            biased;
            () = mailbox.overflowed() => None,
            // Never None: this subscriber's own mailbox holds the sender.
            message = self.rx.recv() => message.map(|m| self.taken(m)),
        }
    }

    /// A message already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        let message = self.rx.try_recv().ok()?;
        Some(self.taken(message))
    }

    fn taken(&self, message: Message) -> Message {
        self.mailbox
            .queued_bytes
            .fetch_sub(message.cost_bytes(), Ordering::AcqRel);
        message
    }

    /// Whether a publisher found the queue full: the connection must close.
    pub fn is_overflowed(&self) -> bool {
        self.mailbox.overflowed.load(Ordering::Acquire)
    }

    /// Resolves once the queue has overflowed (to abandon a write to a client that does not
    /// read).
    pub async fn overflowed(&self) {
        self.mailbox.overflowed().await
    }

    /// Bytes of messages queued and not yet taken.
    pub fn queued_bytes(&self) -> usize {
        self.mailbox.queued_bytes.load(Ordering::Acquire)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut registry = self.registry.write();
        let id = self.mailbox.id;
        for (name, _) in self.channels.drain() {
            registry.remove(Kind::Channel, &name, id);
        }
        for (name, _) in self.patterns.drain() {
            registry.remove(Kind::Pattern, &name, id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB: writes the reply frames.
pub async fn handle(conn: &mut Conn, name: &str, args: &[Bytes]) {
    match name {
        "subscribe" => join(conn, Kind::Channel, &args[1..]),
        "psubscribe" => join(conn, Kind::Pattern, &args[1..]),
        "unsubscribe" => leave(conn, Kind::Channel, &args[1..]),
        "punsubscribe" => leave(conn, Kind::Pattern, &args[1..]),
        "publish" => {
            let receivers = conn.shared.pubsub.publish(&args[1], args[2].clone());
            // A connection publishing to itself gets the message before the reply, as in Redis.
            deliver_queued(conn);
            conn.reply(Frame::Integer(receivers as i64));
        }
        _ => {
            let frame = pubsub_command(&conn.shared.pubsub, args);
            conn.reply(frame);
        }
    }
}

/// `[subscribe|unsubscribe|..., name or null, subscriptions after]`: a push frame (an array in
/// RESP2).
fn confirmation(word: &'static str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![Frame::bulk(word), name, Frame::Integer(count as i64)])
}

fn join(conn: &mut Conn, kind: Kind, names: &[Bytes]) {
    let limits = Limits {
        queued_bytes_max: conn.shared.config.pubsub_queue_bytes_max,
        subscriptions_max: conn.shared.config.pubsub_subscriptions_max,
    };
    let subscriber = conn
        .pubsub
        .get_or_insert_with(|| Box::new(conn.shared.pubsub.subscriber(conn.info.id, limits)));
    let frames: Vec<Frame> = match subscriber.join(kind, names) {
        Ok(counts) => names
            .iter()
            .zip(counts)
            .map(|(name, count)| confirmation(kind.subscribe_word(), Frame::Bulk(name.clone()), count))
            .collect(),
        Err(TooManySubscriptions { max }) => vec![Frame::Error(format!(
            "ERR too many subscriptions: this connection would have more than {max} channels and patterns \
             (pubsub-subscriptions-max); unsubscribe from some first"
        ))],
    };
    if subscriber.count() == 0 {
        conn.pubsub = None;
    }
    sync_counts(conn);
    for frame in frames {
        conn.reply(frame);
    }
}

fn leave(conn: &mut Conn, kind: Kind, names: &[Bytes]) {
    let word = kind.unsubscribe_word();
    let frames: Vec<Frame> = match conn.pubsub.as_deref_mut() {
        None if names.is_empty() => vec![confirmation(word, Frame::Null, 0)],
        None => names
            .iter()
            .map(|name| confirmation(word, Frame::Bulk(name.clone()), 0))
            .collect(),
        Some(subscriber) if names.is_empty() => {
            let left = subscriber.leave_all(kind);
            if left.is_empty() {
                vec![confirmation(word, Frame::Null, subscriber.count())]
            } else {
                left.into_iter()
                    .map(|(name, count)| confirmation(word, Frame::Bulk(name), count))
                    .collect()
            }
        }
        Some(subscriber) => names
            .iter()
            .map(|name| {
                let count = subscriber.leave(kind, name);
                confirmation(word, Frame::Bulk(name.clone()), count)
            })
            .collect(),
    };
    // Whatever is queued now was published before the subscriptions ended: it goes first, as
    // in Redis, where it would already be in the output buffer.
    deliver_queued(conn);
    if conn.pubsub.as_ref().is_some_and(|s| s.count() == 0) {
        conn.pubsub = None;
    }
    sync_counts(conn);
    for frame in frames {
        conn.reply(frame);
    }
}

/// Leaves every channel and pattern without confirmations (RESET). Messages already queued are
/// still delivered first.
pub fn leave_everything(conn: &mut Conn) {
    if let Some(subscriber) = conn.pubsub.as_deref_mut() {
        subscriber.leave_all(Kind::Channel);
        subscriber.leave_all(Kind::Pattern);
    }
    deliver_queued(conn);
    conn.pubsub = None;
    sync_counts(conn);
}

/// Keeps CLIENT LIST's `sub=` and `psub=` current.
fn sync_counts(conn: &Conn) {
    let (channels, patterns) = conn
        .pubsub
        .as_ref()
        .map_or((0, 0), |s| (s.channel_count(), s.pattern_count()));
    conn.info.sub.store(channels as u64, Ordering::Relaxed);
    conn.info.psub.store(patterns as u64, Ordering::Relaxed);
}

/// Writes every queued message into the connection's output.
fn deliver_queued(conn: &mut Conn) {
    while let Some(message) = conn.pubsub.as_mut().and_then(|s| s.try_next()) {
        conn.reply(message.frame());
    }
}

/// Writes `first`, then whatever else is queued, into the connection's output, stopping once
/// the output holds `out_bytes_max` bytes (the caller writes it out and comes back for more).
pub fn deliver(conn: &mut Conn, first: Message, out_bytes_max: usize) {
    conn.reply(first.frame());
    while conn.out.len() < out_bytes_max {
        let Some(message) = conn.pubsub.as_mut().and_then(|s| s.try_next()) else {
            break;
        };
        conn.reply(message.frame());
    }
}

/// Logs why a subscriber is disconnected for reading too slowly, and returns the error that
/// ends its connection.
pub fn overflow_error(conn: &Conn) -> std::io::Error {
    let max = conn.shared.config.pubsub_queue_bytes_max;
    warn!(
        "client {} ({}) disconnected: more than {max} bytes of Pub/Sub messages queued for it \
         (pubsub-queue-bytes-max); it reads too slowly",
        conn.info.id, conn.info.addr
    );
    std::io::Error::other(format!(
        "Pub/Sub queue over pubsub-queue-bytes-max ({max} bytes)"
    ))
}

/// The commands a RESP2 connection with a subscription may run (Redis 7.0's list; Tandem has
/// no shard channels).
fn allowed_in_resp2_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}

/// Redis's rules for a connection that holds a subscription, applied before any command runs.
/// Returns true when the command was answered here:
/// - RESET leaves every subscription first (and then runs as usual);
/// - in RESP2, PING answers `["pong", arg]`, and commands outside (P)SUBSCRIBE,
///   (P)UNSUBSCRIBE, PING, QUIT, RESET get Redis's error. RESP3 allows everything.
pub async fn intercept_while_subscribed(
    conn: &mut Conn,
    spec: &CommandSpec,
    args: &[Bytes],
) -> bool {
    if spec.name == "reset" {
        leave_everything(conn);
        return false;
    }
    if conn.proto == Protocol::Resp3 {
        return false;
    }
    let reply = match spec.name {
        // PING with too many arguments gets its usual arity error.
        "ping" if args.len() <= 2 => Frame::Array(vec![
            Frame::bulk("pong"),
            Frame::Bulk(args.get(1).cloned().unwrap_or_default()),
        ]),
        name if allowed_in_resp2_subscribed(name) => return false,
        name => {
            let full = args
                .get(1)
                .and_then(|sub| spec.subcommand(sub))
                .map_or(name, |sub| sub.name);
            Frame::Error(format!(
                "ERR Can't execute '{full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context"
            ))
        }
    };
    conn.flush_pending().await;
    conn.reply(reply);
    true
}

/// Redis's text, cut at 128 characters.
fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(128).collect()
}

/// PUBSUB CHANNELS | NUMSUB | NUMPAT | HELP.
fn pubsub_command(hub: &Hub, args: &[Bytes]) -> Frame {
    let spec = tandem_core::lookup(b"pubsub").expect("PUBSUB is in the command table");
    let Some(sub) = spec.subcommand(&args[1]) else {
        return Frame::Error(format!(
            "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
            shown(&args[1])
        ));
    };
    if !tandem_core::arity_ok(sub, args.len()) {
        return tandem_core::wrong_arity(sub.name);
    }
    match sub.name {
        "pubsub|channels" if args.len() <= 3 => Frame::Array(
            hub.channels(args.get(2).map(|p| p.as_ref()))
                .into_iter()
                .map(Frame::Bulk)
                .collect(),
        ),
        "pubsub|numsub" => Frame::Array(
            args[2..]
                .iter()
                .flat_map(|c| [Frame::Bulk(c.clone()), Frame::Integer(hub.numsub(c) as i64)])
                .collect(),
        ),
        "pubsub|numpat" => Frame::Integer(hub.numpat() as i64),
        "pubsub|help" => Frame::Array(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|line| Frame::Simple(line.to_string()))
            .collect(),
        ),
        _ => Frame::Error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            shown(&args[1])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Limits = Limits {
        queued_bytes_max: 1 << 20,
        subscriptions_max: 1000,
    };

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn names(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|s| b(s)).collect()
    }

    fn message(channel: &str, payload: &str) -> Message {
        Message {
            pattern: None,
            channel: b(channel),
            payload: b(payload),
        }
    }

    #[test]
    fn publish_reaches_channel_and_pattern_subscribers() {
        let hub = Hub::default();
        let mut plain = hub.subscriber(1, ROOMY);
        let mut pattern = hub.subscriber(2, ROOMY);
        plain.join(Kind::Channel, &names(&["news"])).unwrap();
        pattern.join(Kind::Pattern, &names(&["n*s"])).unwrap();

        assert_eq!(hub.publish(b"news", b("hello")), 2);
        assert_eq!(plain.try_next(), Some(message("news", "hello")));
        assert_eq!(
            pattern.try_next(),
            Some(Message {
                pattern: Some(b("n*s")),
                ..message("news", "hello")
            })
        );
        assert_eq!(plain.try_next(), None);
        assert_eq!(pattern.try_next(), None);

        assert_eq!(hub.publish(b"weather", b("rain")), 0);
        assert_eq!(hub.publish(b"nobs", b("x")), 1, "only the pattern matches");
        assert_eq!(plain.try_next(), None);
        assert_eq!(pattern.try_next().unwrap().channel, b("nobs"));
    }

    #[test]
    fn a_connection_subscribed_both_ways_receives_and_counts_twice() {
        let hub = Hub::default();
        let mut s = hub.subscriber(1, ROOMY);
        s.join(Kind::Channel, &names(&["a"])).unwrap();
        s.join(Kind::Pattern, &names(&["a*", "*"])).unwrap();
        assert_eq!(hub.publish(b"a", b("m")), 3);
        let got: Vec<Option<Bytes>> = std::iter::from_fn(|| s.try_next())
            .map(|m| m.pattern)
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0], None,
            "the channel's subscribers come first, as in Redis"
        );
        assert!(got.contains(&Some(b("a*"))) && got.contains(&Some(b("*"))));
    }

    #[test]
    fn confirmations_count_channels_plus_patterns_and_ignore_duplicates() {
        let hub = Hub::default();
        let mut s = hub.subscriber(1, ROOMY);
        assert_eq!(
            s.join(Kind::Channel, &names(&["a", "b", "a"])).unwrap(),
            vec![1, 2, 2]
        );
        assert_eq!(s.join(Kind::Pattern, &names(&["p*"])).unwrap(), vec![3]);
        assert_eq!(s.join(Kind::Pattern, &names(&["p*"])).unwrap(), vec![3]);
        assert_eq!((s.channel_count(), s.pattern_count()), (2, 1));
        assert_eq!(hub.numsub(b"a"), 1);
        assert_eq!(hub.numpat(), 1);

        assert_eq!(s.leave(Kind::Channel, b"a"), 2);
        assert_eq!(
            s.leave(Kind::Channel, b"a"),
            2,
            "leaving twice changes nothing"
        );
        assert_eq!(s.leave(Kind::Channel, b"never"), 2);
        assert_eq!(
            s.leave(Kind::Pattern, b"b"),
            2,
            "a channel is not a pattern"
        );
        assert_eq!(hub.numsub(b"a"), 0);
        assert_eq!(hub.channel_count(), 1);
    }

    #[test]
    fn leave_all_goes_in_join_order_counting_down() {
        let hub = Hub::default();
        let mut s = hub.subscriber(1, ROOMY);
        s.join(Kind::Channel, &names(&["c", "a", "b"])).unwrap();
        s.join(Kind::Pattern, &names(&["x*"])).unwrap();
        assert_eq!(
            s.leave_all(Kind::Channel),
            vec![(b("c"), 3), (b("a"), 2), (b("b"), 1)]
        );
        assert_eq!(s.leave_all(Kind::Channel), vec![]);
        assert_eq!(hub.channel_count(), 0);
        assert_eq!(s.leave_all(Kind::Pattern), vec![(b("x*"), 0)]);
        assert_eq!(hub.numpat(), 0);
    }

    #[test]
    fn numpat_counts_distinct_patterns_and_numsub_ignores_them() {
        let hub = Hub::default();
        let mut s1 = hub.subscriber(1, ROOMY);
        let mut s2 = hub.subscriber(2, ROOMY);
        s1.join(Kind::Pattern, &names(&["h?llo", "*"])).unwrap();
        s2.join(Kind::Pattern, &names(&["h?llo"])).unwrap();
        s2.join(Kind::Channel, &names(&["hello"])).unwrap();
        assert_eq!(hub.numpat(), 2);
        assert_eq!(hub.numsub(b"hello"), 1);
        assert_eq!(hub.publish(b"hello", b("m")), 4);
        s2.leave(Kind::Pattern, b"h?llo");
        assert_eq!(hub.numpat(), 2, "s1 still holds h?llo");
        s1.leave(Kind::Pattern, b"h?llo");
        assert_eq!(hub.numpat(), 1);
    }

    #[test]
    fn channels_lists_active_channels_matching_the_pattern() {
        let hub = Hub::default();
        let mut s = hub.subscriber(1, ROOMY);
        s.join(Kind::Channel, &names(&["news.tech", "news.art", "sport"]))
            .unwrap();
        s.join(Kind::Pattern, &names(&["news.*"])).unwrap();
        let mut all = hub.channels(None);
        all.sort();
        assert_eq!(all, names(&["news.art", "news.tech", "sport"]));
        let mut news = hub.channels(Some(b"news.*"));
        news.sort();
        assert_eq!(news, names(&["news.art", "news.tech"]));
        assert_eq!(
            hub.channels(Some(b"NEWS.*")),
            Vec::<Bytes>::new(),
            "case-sensitive"
        );
    }

    #[test]
    fn dropping_a_subscriber_leaves_everything() {
        let hub = Hub::default();
        let mut stays = hub.subscriber(1, ROOMY);
        stays.join(Kind::Channel, &names(&["a"])).unwrap();
        {
            let mut goes = hub.subscriber(2, ROOMY);
            goes.join(Kind::Channel, &names(&["a", "b"])).unwrap();
            goes.join(Kind::Pattern, &names(&["*"])).unwrap();
            assert_eq!(hub.publish(b"a", b("m")), 3);
        }
        assert_eq!(hub.numsub(b"a"), 1);
        assert_eq!(hub.numsub(b"b"), 0);
        assert_eq!(hub.numpat(), 0);
        assert_eq!(hub.channels(None), names(&["a"]));
        assert_eq!(hub.publish(b"a", b("m")), 1);
    }

    #[test]
    fn subscription_limit_refuses_the_whole_command() {
        let hub = Hub::default();
        let limits = Limits {
            subscriptions_max: 3,
            ..ROOMY
        };
        let mut s = hub.subscriber(1, limits);
        s.join(Kind::Channel, &names(&["a", "b"])).unwrap();
        assert_eq!(
            s.join(Kind::Pattern, &names(&["c", "d"])),
            Err(TooManySubscriptions { max: 3 })
        );
        assert_eq!(s.count(), 2, "nothing of a refused command is joined");
        assert_eq!(hub.numpat(), 0);
        assert_eq!(
            s.join(Kind::Channel, &names(&["a", "c", "c"])).unwrap(),
            vec![2, 3, 3],
            "names already joined or repeated do not count against the limit"
        );
        assert!(s.join(Kind::Pattern, &names(&["x"])).is_err());
        assert_eq!(s.join(Kind::Channel, &names(&["a"])).unwrap(), vec![3]);
    }

    #[test]
    fn a_full_queue_drops_the_message_marks_the_subscriber_and_counts_it_once() {
        let hub = Hub::default();
        let one = message("ch", "0123456789").cost_bytes();
        let limits = Limits {
            queued_bytes_max: 3 * one,
            ..ROOMY
        };
        let mut slow = hub.subscriber(1, limits);
        let mut fast = hub.subscriber(2, ROOMY);
        slow.join(Kind::Channel, &names(&["ch"])).unwrap();
        fast.join(Kind::Channel, &names(&["ch"])).unwrap();
        for _ in 0..3 {
            hub.publish(b"ch", b("0123456789"));
        }
        assert_eq!(slow.queued_bytes(), 3 * one);
        assert!(!slow.is_overflowed());
        assert_eq!(hub.slow_subscribers_disconnected(), 0);

        assert_eq!(hub.publish(b"ch", b("0123456789")), 2, "still a receiver");
        assert!(slow.is_overflowed());
        assert_eq!(
            slow.queued_bytes(),
            3 * one,
            "the queue never goes over the limit"
        );
        assert_eq!(hub.slow_subscribers_disconnected(), 1);
        hub.publish(b"ch", b("0123456789"));
        assert_eq!(hub.slow_subscribers_disconnected(), 1, "counted once");
        assert_eq!(slow.queued_bytes(), 3 * one);

        assert_eq!(
            std::iter::from_fn(|| fast.try_next()).count(),
            5,
            "other subscribers are not affected"
        );
        assert!(slow.try_next().is_some());
        assert_eq!(
            slow.queued_bytes(),
            2 * one,
            "taking a message frees its room"
        );
    }

    #[tokio::test]
    async fn next_returns_messages_then_none_once_overflowed() {
        let hub = Arc::new(Hub::default());
        let cost = message("ch", "xx").cost_bytes();
        let mut s = hub.subscriber(
            1,
            Limits {
                queued_bytes_max: cost,
                ..ROOMY
            },
        );
        s.join(Kind::Channel, &names(&["ch"])).unwrap();
        hub.publish(b"ch", b("xx"));
        assert_eq!(s.next().await, Some(message("ch", "xx")));

        // A waiting connection is woken by a message...
        let publish_later = |times: usize| {
            let hub = hub.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                for _ in 0..times {
                    hub.publish(b"ch", b("xx"));
                }
            })
        };
        let publisher = publish_later(1);
        assert_eq!(s.next().await, Some(message("ch", "xx")));
        publisher.await.unwrap();

        // ... and by the overflow, which wins over the messages still queued.
        let publisher = publish_later(2);
        let woken = tokio::time::timeout(std::time::Duration::from_secs(10), s.next()).await;
        publisher.await.unwrap();
        assert_eq!(woken, Ok(None));
        assert_eq!(s.next().await, None);
        let overflowed =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.overflowed()).await;
        assert!(
            overflowed.is_ok(),
            "overflowed() resolves at once after an overflow"
        );
    }

    #[test]
    fn messages_encode_as_redis_writes_them() {
        let mut out = bytes::BytesMut::new();
        tandem_resp::encode(&message("ch", "hi").frame(), Protocol::Resp2, &mut out);
        assert_eq!(&out[..], b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        out.clear();
        let p = Message {
            pattern: Some(b("c*")),
            ..message("ch", "hi")
        };
        tandem_resp::encode(&p.frame(), Protocol::Resp3, &mut out);
        assert_eq!(
            &out[..],
            b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
    }
}
