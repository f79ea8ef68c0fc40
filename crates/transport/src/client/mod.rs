//! The client side: [`Peer`], a handle on one remote node that connects lazily, keeps one
//! authenticated connection, multiplexes calls on it by id, and when the connection drops sends
//! the calls that were in flight again on a new one.
//!
//! - `backoff` — when the next connection attempt may start after failures.
//! - `conn` — one connection: its pending calls, its write queue and its IO task.

mod backoff;
mod conn;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use self::backoff::Backoff;
use self::conn::ClientConn;
use crate::config::TransportConfig;
use crate::envelope::{self, Blob, EncodeError, Envelope};
use crate::error::CallError;
use crate::stats::{add, TransportStats};

/// What the client application says and checks in the handshake, after authentication.
pub trait ClientHello: Send + Sync + 'static {
    /// The hello bytes sent to the server, asked anew for every connection (so they may change,
    /// e.g. as membership does). At most about 64 KiB ([`crate::config::HANDSHAKE_FRAME_BYTES_MAX`]).
    fn hello(&self) -> Vec<u8>;

    /// Judges the server's hello bytes. An `Err` refuses the connection: the reason is logged,
    /// sent to the server, and returned to the call as [`CallError::Refused`].
    fn check_server_hello(&self, hello: &[u8]) -> Result<(), String>;
}

/// Knobs for one call. The default is a normal call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Fault injection for tests: on the call's first send, one payload byte of the frame is
    /// flipped after its CRC was computed. The receiver sees a CRC failure and closes the
    /// connection, and the call is sent again, intact, on a new one.
    pub corrupt_first_send: bool,
}

/// Why a connection attempt failed, as remembered for the calls that wait on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// TCP, timeout or protocol trouble: worth another attempt after the backoff.
    Unreachable(String),
    /// The handshake was refused: not retried by the calls that saw it.
    Refused(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(reason) => f.write_str(reason),
            Failure::Refused(reason) => write!(f, "refused: {reason}"),
        }
    }
}

/// A handle on one remote node. Cheap to clone: clones share the connection. Dropping the last
/// clone closes the connection.
///
/// Calls need a tokio runtime. The connection is opened by the first call (a connection attempt
/// runs as its own task, so a call with a short deadline cannot keep it from finishing) and kept
/// until it fails, [`Peer::set_addr`] or [`Peer::close`].
#[derive(Clone)]
pub struct Peer {
    inner: Arc<PeerInner>,
}

struct PeerInner {
    config: Arc<TransportConfig>,
    hello: Arc<dyn ClientHello>,
    stats: Arc<TransportStats>,
    /// Call ids, unique for this peer handle across its connections: a call keeps its id when
    /// it is sent again.
    next_id: AtomicU64,
    state: Mutex<State>,
}

struct State {
    addr: String,
    /// Bumped by `set_addr` and `close`: a connection attempt started under an older epoch is
    /// thrown away when it finishes.
    epoch: u64,
    /// Set by `close`: every later call fails.
    closed: bool,
    link: Link,
    backoff: Backoff,
}

/// The connection, or the attempt to make one.
enum Link {
    Idle,
    /// An attempt is running; its outcome is published here once.
    Connecting(watch::Receiver<Option<Result<Arc<ClientConn>, Failure>>>),
    /// The last connection made; it may have ended since (see `ClientConn::is_open`).
    Connected(Arc<ClientConn>),
}

/// Where one call stands, kept outside the future that the deadline cancels so that the error
/// can say what the call was waiting for.
#[derive(Default)]
struct Progress {
    /// The connection the call is on: waiting for a slot, or sent and waiting for the reply.
    on: Option<Arc<ClientConn>>,
    /// `on`'s count of received frames when the request was queued.
    frames_at_send: Option<u64>,
    /// Why the call's last connection ended, if one did.
    lost: Option<String>,
}

/// Removes a call from its connection's pending map however the wait for its reply ends
/// (reply, connection lost, or the call's future dropped at its deadline).
struct Forget<'a> {
    conn: &'a ClientConn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.forget(self.id);
    }
}

impl Peer {
    /// A handle on the node at `addr` (`host:port`; names are resolved at each connection).
    /// Nothing happens until the first call. `config` should be valid
    /// ([`TransportConfig::validate`]); if it is not, calls fail with `Unreachable` naming the
    /// problem.
    pub fn new(
        addr: String,
        config: Arc<TransportConfig>,
        hello: Arc<dyn ClientHello>,
        stats: Arc<TransportStats>,
    ) -> Peer {
        let backoff = Backoff::new(config.backoff_min, config.backoff_max);
        Peer {
            inner: Arc::new(PeerInner {
                config,
                hello,
                stats,
                next_id: AtomicU64::new(1),
                state: Mutex::new(State {
                    addr,
                    epoch: 0,
                    closed: false,
                    link: Link::Idle,
                    backoff,
                }),
            }),
        }
    }

    /// Sends `body` to the peer's handler and returns its reply.
    ///
    /// `deadline` bounds the whole call: connecting, waiting for a slot among `in_flight_max`,
    /// every send and the reply. A call that passes it while connecting fails with
    /// `Unreachable` (with the last connection problem), once sent with `Timeout`. A call that
    /// arrives while reconnection is backing off fails at once with `Unreachable` if the next
    /// attempt would come after its deadline.
    ///
    /// **Calls must be idempotent.** When the connection drops, the calls in flight are sent
    /// again on a new connection, up to `call_attempts_max` sends in all: the peer may have run
    /// one before its reply was lost, and then runs it again. `Refused` and `Remote` are never
    /// retried.
    pub async fn call(&self, body: Bytes, deadline: Duration) -> Result<Bytes, CallError> {
        self.call_with(body, deadline, CallOptions::default()).await
    }

    /// [`Peer::call`] with options (fault injection for tests).
    pub async fn call_with(
        &self,
        body: Bytes,
        deadline: Duration,
        options: CallOptions,
    ) -> Result<Bytes, CallError> {
        let frame_bytes_max = self.inner.config.frame_bytes_max;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Envelope::Request {
            id,
            body: Blob(&body),
        };
        // Encoded (and CRC'd) once, in the caller's task; every send reuses the frame.
        let frame = match envelope::encode(&request, frame_bytes_max) {
            Ok(frame) => Bytes::from(frame),
            Err(EncodeError::Frame(_)) => {
                return Err(CallError::TooLarge {
                    body_bytes: body.len(),
                    frame_bytes_max,
                })
            }
            Err(EncodeError::Serialize(e)) => {
                return Err(CallError::Unreachable(format!(
                    "cannot encode the request: {e}"
                )))
            }
        };
        let now = Instant::now();
        // A deadline too far away to represent is no deadline: a year will do.
        let deadline_at = now
            .checked_add(deadline)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        let mut progress = Progress::default();
        let attempts = self.attempts(id, frame, options, deadline_at, &mut progress);
        match tokio::time::timeout_at(deadline_at, attempts).await {
            Ok(result) => result,
            Err(_) => Err(self.deadline_passed(deadline, progress)),
        }
    }

    /// The address calls connect to.
    pub fn addr(&self) -> String {
        self.inner.state.lock().addr.clone()
    }

    /// Changes the peer's address. If it differs from the current one, the connection (made to
    /// the old address) is closed and the calls in flight on it are sent again to the new one;
    /// the reconnection backoff starts afresh.
    pub fn set_addr(&self, addr: String) {
        let old = {
            let mut state = self.inner.state.lock();
            if state.addr == addr {
                return;
            }
            state.addr = addr;
            state.epoch += 1;
            state.backoff.reset();
            std::mem::replace(&mut state.link, Link::Idle)
        };
        if let Link::Connected(conn) = old {
            conn.shut("the peer's address changed".into(), true);
        }
    }

    /// Whether an authenticated connection is open now (it may still fail at any moment).
    pub fn is_connected(&self) -> bool {
        matches!(&self.inner.state.lock().link, Link::Connected(conn) if conn.is_open())
    }

    /// Closes this handle for good (every clone): the connection is closed, calls in flight and
    /// later calls fail with `Unreachable`.
    pub fn close(&self) {
        let old = {
            let mut state = self.inner.state.lock();
            state.closed = true;
            state.epoch += 1;
            std::mem::replace(&mut state.link, Link::Idle)
        };
        if let Link::Connected(conn) = old {
            conn.shut("the peer handle was closed".into(), false);
        }
    }

    /// Sends the call, on a new connection each time its connection drops, until it has a reply
    /// or has been sent `call_attempts_max` times.
    async fn attempts(
        &self,
        id: u64,
        frame: Bytes,
        options: CallOptions,
        deadline_at: Instant,
        progress: &mut Progress,
    ) -> Result<Bytes, CallError> {
        let attempts_max = self.inner.config.call_attempts_max;
        let mut sends = 0u32;
        loop {
            progress.on = None;
            progress.frames_at_send = None;
            let conn = self.connection(deadline_at).await?;
            progress.on = Some(conn.clone());
            // The permit is this call's slot among `in_flight_max`, held until the reply.
            let Ok(_slot) = conn.in_flight.acquire().await else {
                continue; // The connection ended while we waited; nothing was sent.
            };
            let to_send = if options.corrupt_first_send && sends == 0 {
                corrupt(&frame)
            } else {
                frame.clone()
            };
            let Some(reply) = conn.send(id, to_send) else {
                continue;
            };
            let _forget = Forget { conn: &conn, id };
            sends += 1;
            if sends > 1 {
                add(&self.inner.stats.retries, 1);
            }
            progress.frames_at_send = Some(conn.frames_received());
            match reply.await {
                Ok(Ok(body)) => return Ok(body),
                Ok(Err(message)) => return Err(CallError::Remote(message)),
                Err(_) => {
                    let end = conn.end();
                    if !end.retry {
                        return Err(CallError::Unreachable(end.reason));
                    }
                    if sends >= attempts_max {
                        return Err(CallError::Unreachable(format!(
                            "the connection dropped each of the {sends} times this call was sent \
                             (call_attempts_max); last: {}",
                            end.reason
                        )));
                    }
                    tracing::debug!(id, reason = %end.reason, "transport: connection lost, sending the call again");
                    progress.lost = Some(end.reason);
                }
            }
        }
    }

    /// An open connection: the current one, the outcome of the attempt under way, or a new
    /// attempt once the backoff allows.
    async fn connection(&self, deadline_at: Instant) -> Result<Arc<ClientConn>, CallError> {
        enum Next {
            Wait(watch::Receiver<Option<Result<Arc<ClientConn>, Failure>>>),
            Sleep(Instant),
        }
        loop {
            let next = {
                let mut state = self.inner.state.lock();
                if state.closed {
                    return Err(CallError::Unreachable(format!(
                        "{}: the peer handle was closed",
                        state.addr
                    )));
                }
                match &state.link {
                    Link::Connected(conn) if conn.is_open() => return Ok(conn.clone()),
                    Link::Connecting(outcome) => Next::Wait(outcome.clone()),
                    Link::Idle | Link::Connected(_) => {
                        let now = Instant::now();
                        match state.backoff.wait_until(now) {
                            Some(at) if at > deadline_at => {
                                return Err(fail_fast(&state, at - now));
                            }
                            Some(at) => Next::Sleep(at),
                            None => Next::Wait(self.start_connect(&mut state)),
                        }
                    }
                }
            };
            match next {
                Next::Sleep(at) => tokio::time::sleep_until(at).await,
                Next::Wait(mut outcome) => {
                    // Cloned at once: the watch borrow must not live across an await.
                    let outcome = outcome
                        .wait_for(Option::is_some)
                        .await
                        .map(|value| value.clone());
                    match outcome {
                        Ok(Some(Ok(conn))) if conn.is_open() => return Ok(conn),
                        Ok(Some(Err(Failure::Refused(reason)))) => {
                            return Err(CallError::Refused(reason))
                        }
                        // Failed (the backoff now decides when to try again), superseded, or
                        // already dropped again: look at the state anew.
                        Ok(_) => {}
                        Err(_) => {
                            return Err(CallError::Unreachable(format!(
                                "{}: the connection attempt was abandoned (runtime shutting down?)",
                                self.addr()
                            )))
                        }
                    }
                }
            }
        }
    }

    /// Starts a connection attempt in its own task and returns where its outcome will appear.
    fn start_connect(
        &self,
        state: &mut State,
    ) -> watch::Receiver<Option<Result<Arc<ClientConn>, Failure>>> {
        let (publish, outcome) = watch::channel(None);
        state.link = Link::Connecting(outcome.clone());
        let inner = self.inner.clone();
        let addr = state.addr.clone();
        let epoch = state.epoch;
        tokio::spawn(async move {
            let result = conn::open(&addr, &inner.config, &*inner.hello, &inner.stats).await;
            let result = inner.finish_connect(epoch, result);
            publish.send_replace(Some(result));
        });
        outcome
    }

    /// The error for a call whose deadline passed; closes a connection that looks dead.
    fn deadline_passed(&self, deadline: Duration, progress: Progress) -> CallError {
        if let Some(conn) = progress.on {
            add(&self.inner.stats.calls_timed_out, 1);
            // TCP alone may take many minutes to notice a peer that vanished without a reset:
            // a connection that brought nothing at all during a whole call deadline is
            // presumed dead, so that the next call reconnects instead of timing out too.
            if deadline >= self.inner.config.presume_dead_after
                && progress.frames_at_send == Some(conn.frames_received())
                && conn.is_open()
            {
                let reason = format!(
                    "nothing received for a whole call deadline ({deadline:?}): connection presumed dead"
                );
                tracing::info!(peer = %self.addr(), %reason, "transport: closing connection");
                conn.shut(reason, true);
            }
            return CallError::Timeout;
        }
        let state = self.inner.state.lock();
        let why = progress
            .lost
            .or_else(|| state.backoff.last_failure().map(ToString::to_string))
            .unwrap_or_else(|| "the connection attempt had not finished".into());
        CallError::Unreachable(format!(
            "no connection to {} within the call's deadline of {deadline:?}; last problem: {why}",
            state.addr
        ))
    }
}

impl PeerInner {
    /// Records the outcome of a connection attempt started under `epoch`.
    fn finish_connect(
        &self,
        epoch: u64,
        result: Result<Arc<ClientConn>, Failure>,
    ) -> Result<Arc<ClientConn>, Failure> {
        let mut state = self.state.lock();
        if state.epoch != epoch {
            // `set_addr` or `close` ran meanwhile and already replaced the link.
            if let Ok(conn) = &result {
                conn.shut("superseded while connecting".into(), true);
            }
            return Err(Failure::Unreachable(format!(
                "{}: the connection attempt was superseded (address changed or handle closed)",
                state.addr
            )));
        }
        match &result {
            Ok(conn) => {
                state.link = Link::Connected(conn.clone());
                state.backoff.reset();
            }
            Err(failure) => {
                state.link = Link::Idle;
                state.backoff.failed(Instant::now(), failure.clone());
            }
        }
        result
    }
}

impl Drop for PeerInner {
    fn drop(&mut self) {
        if let Link::Connected(conn) = &self.state.get_mut().link {
            conn.shut("the peer handle was dropped".into(), false);
        }
    }
}

/// The error for a call that cannot wait for the next connection attempt.
fn fail_fast(state: &State, wait: Duration) -> CallError {
    match state.backoff.last_failure() {
        Some(Failure::Refused(reason)) => CallError::Refused(reason.clone()),
        Some(Failure::Unreachable(reason)) => CallError::Unreachable(format!(
            "{reason} (next connection attempt in {wait:?}, after this call's deadline)"
        )),
        None => CallError::Unreachable(format!(
            "{}: next connection attempt in {wait:?}, after this call's deadline",
            state.addr
        )),
    }
}

/// A copy of `frame` with the last payload byte flipped, CRC left as it was.
fn corrupt(frame: &Bytes) -> Bytes {
    let mut bad = frame.to_vec();
    // Every frame has a payload (at least the message tag), so the last byte is a payload byte.
    if let Some(last) = bad.last_mut() {
        *last ^= 0xff;
    }
    Bytes::from(bad)
}
