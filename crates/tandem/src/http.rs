//! The HTTP endpoints for load balancers and monitoring (`--http-port`):
//!
//! - `GET /health`: 200 while the consensus core runs, 503 with the reason once it has stopped.
//! - `GET /ready?max-lag-ms=N`: 200 when this node may serve reads whose data is at most N ms
//!   stale: the primary always, a replica while its lag is known and within N (default
//!   `--replica-max-lag-ms`). 503 with the reason otherwise. For load balancers that route reads.
//! - `GET /metrics`: Prometheus text format, from [`Node::status`] and the log's counters.
//!
//! A deliberately tiny HTTP/1.1 server: one request per connection (`Connection: close`), only
//! the request line and headers are read, with a size limit and a read deadline. Parsing, the
//! `/ready` decision and the metrics rendering are pure functions, tested without sockets.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tandem_log::LogStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::consensus::damage::{DamageStats, ScrubProgress, Source};
use crate::consensus::status::{MemberStatus, ReplicationStatus, Role};
use crate::consensus::Node;

/// Largest request head (request line and headers) read; a longer one gets 431.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Time a client has to send its whole request head; a slower one gets 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client has to take the response before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; further ones wait in the listen backlog. Probes and scrapes are
/// few, so this only bounds what a misbehaving client can tie up.
pub const CONNECTIONS_MAX: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves the endpoints on `listener` until the task is dropped. `replica_max_lag` is the
/// default bound of `/ready` (`--replica-max-lag-ms`).
pub async fn serve(listener: TcpListener, node: Arc<Node>, replica_max_lag: Duration) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let default_max_lag_ms = replica_max_lag.as_millis() as u64;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("http: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &node, default_max_lag_ms).await {
                debug!("http: connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// Reads one request, answers it, closes.
async fn connection(
    mut stream: TcpStream,
    node: &Node,
    default_max_lag_ms: u64,
) -> std::io::Result<()> {
    let response = match read_request(&mut stream).await? {
        None => return Ok(()), // Closed before sending a whole request.
        Some(Ok(request)) => route(&request, node, default_max_lag_ms),
        Some(Err(error)) => error.response(),
    };
    let bytes = response.to_bytes();
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
    Ok(())
}

/// Reads until the end of the request head. `None` when the client closed first.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<Result<Request, RequestError>>> {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut buf = vec![0u8; REQUEST_BYTES_MAX];
    let mut len = 0;
    loop {
        match parse_request(&buf[..len]) {
            Ok(None) => {}
            Ok(Some(request)) => return Ok(Some(Ok(request))),
            Err(error) => return Ok(Some(Err(error))),
        }
        if len == buf.len() {
            return Ok(Some(Err(RequestError::TooLarge)));
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(n) => n?,
            Err(_) => return Ok(Some(Err(RequestError::Timeout))),
        };
        if n == 0 {
            return Ok(None);
        }
        len += n;
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The parts of a request the endpoints look at.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    /// The text after `?`, if any.
    query: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum RequestError {
    /// The head is not HTTP/1.x as this server reads it; the text says what is wrong.
    Malformed(&'static str),
    /// No end of the head within [`REQUEST_BYTES_MAX`].
    TooLarge,
    /// The head did not arrive within [`READ_TIMEOUT`].
    Timeout,
}

impl RequestError {
    fn response(&self) -> Response {
        match self {
            RequestError::Malformed(why) => Response::text(400, format!("bad request: {why}\n")),
            RequestError::TooLarge => Response::text(
                431,
                format!("request head larger than {REQUEST_BYTES_MAX} bytes\n"),
            ),
            RequestError::Timeout => Response::text(
                408,
                format!(
                    "request head not received within {} ms\n",
                    READ_TIMEOUT.as_millis()
                ),
            ),
        }
    }
}

/// Parses the request head at the front of `buf`: `Ok(None)` while the blank line ending it has
/// not arrived. Anything after the head (a body) is ignored. Accepts bare LF line endings, as
/// RFC 9112 §2.2 allows.
fn parse_request(buf: &[u8]) -> Result<Option<Request>, RequestError> {
    let Some(head_len) = head_end(buf) else {
        return Ok(None);
    };
    if head_len > REQUEST_BYTES_MAX {
        return Err(RequestError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| RequestError::Malformed("request head is not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "request line is not `METHOD TARGET HTTP/1.1`",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestError::Malformed("invalid method"));
    }
    if !target.starts_with('/') {
        return Err(RequestError::Malformed(
            "target must be a path starting with /",
        ));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Malformed(
            "only HTTP/1.0 and HTTP/1.1 are served",
        ));
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(RequestError::Malformed(
                "folded header lines are not accepted",
            ));
        }
        match line.split_once(':') {
            Some((name, _)) if !name.is_empty() && name.bytes().all(is_token_byte) => {}
            _ => return Err(RequestError::Malformed("invalid header line")),
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
    }))
}

/// Length of the head including its terminating blank line, if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `max-lag-ms` parameter of `/ready`, or `default_ms` when absent. Unknown parameters are
/// refused, so a misspelled bound is not silently replaced by the default.
fn parse_ready_query(query: Option<&str>, default_ms: u64) -> Result<u64, String> {
    let mut max_lag_ms = default_ms;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "max-lag-ms" {
            return Err(format!(
                "unknown parameter `{name}`; /ready takes only max-lag-ms"
            ));
        }
        max_lag_ms = value.parse().map_err(|_| {
            format!("max-lag-ms must be a whole number of milliseconds, got `{value}`")
        })?;
    }
    Ok(max_lag_ms)
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT_PLAIN,
            body: body.into(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// The endpoints. Known paths come first so a wrong method on one is 405, not 404.
fn route(request: &Request, node: &Node, default_max_lag_ms: u64) -> Response {
    let endpoint = match request.path.as_str() {
        "/health" | "/ready" | "/metrics" => request.path.as_str(),
        _ => return Response::text(404, "not found; try /health, /ready or /metrics\n"),
    };
    if request.method != "GET" {
        return Response::text(405, format!("{endpoint} takes only GET\n"));
    }
    match endpoint {
        "/health" => health(core_running(node)),
        "/ready" => {
            let max_lag_ms = match parse_ready_query(request.query.as_deref(), default_max_lag_ms) {
                Ok(ms) => ms,
                Err(why) => return Response::text(400, format!("{why}\n")),
            };
            if let Err(why) = core_running(node) {
                return Response::text(503, format!("not serving: {why}\n"));
            }
            ready(&node.status(), node.is_unformed_standalone(), max_lag_ms)
        }
        _ => Response {
            status: 200,
            content_type: PROMETHEUS_TEXT,
            body: render_metrics(&node.status(), &node.log.stats())
                + &render_integrity_metrics(&node.damage.stats(), &node.damage.scrub),
        },
    }
}

/// Whether the consensus core is running, else why not.
fn core_running(node: &Node) -> Result<(), String> {
    node.core_running()
}

/// `/health` from whether the core runs.
fn health(running: Result<(), String>) -> Response {
    match running {
        Ok(()) => Response::text(200, "ok\n"),
        Err(why) => Response::text(503, format!("{why}\n")),
    }
}

/// `/ready`: may this node serve reads at most `max_lag_ms` stale? `standalone` is a node that
/// is in no cluster and answers reads locally (it holds only what was written to it).
fn ready(status: &ReplicationStatus, standalone: bool, max_lag_ms: u64) -> Response {
    match status.role {
        Role::Primary => return Response::text(200, "ok: primary\n"),
        Role::Unformed if standalone => return Response::text(200, "ok: standalone\n"),
        Role::Unformed => {
            return Response::text(503, "not yet a member of a cluster\n");
        }
        Role::Voter | Role::ReadReplica => {}
    }
    match status.lag_ms() {
        Some(ms) if ms <= max_lag_ms => {
            Response::text(200, format!("ok: {} lagging {ms} ms\n", status.role.name()))
        }
        Some(ms) => Response::text(503, format!("lagging {ms} ms > {max_lag_ms} ms\n")),
        None if status.primary_id.is_none() => Response::text(503, "no primary heard\n"),
        None => Response::text(
            503,
            "not yet caught up with the primary (lag unknown)\n".to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The metrics in Prometheus text format. Per-member progress appears only on the primary (the
/// only node that knows it); values that are unknown are left out rather than shown as 0.
pub fn render_metrics(status: &ReplicationStatus, log: &LogStats) -> String {
    let mut m = Exposition::default();
    let node_id = status.node_id.to_string();

    m.family(
        "tandem_node_info",
        Gauge,
        "This node's id and cluster id (value 1).",
    );
    m.sample(
        "tandem_node_info",
        &[("node_id", &node_id), ("cluster_id", &status.cluster_id)],
        1,
    );
    m.family(
        "tandem_role",
        Gauge,
        "1 for this node's current role, 0 for the others.",
    );
    for role in [
        Role::Primary,
        Role::Voter,
        Role::ReadReplica,
        Role::Unformed,
    ] {
        m.sample(
            "tandem_role",
            &[("role", role.name())],
            u64::from(status.role == role),
        );
    }
    m.gauge("tandem_term", "Current consensus term.", status.term);
    m.gauge(
        "tandem_primary_id",
        "Node id of the primary this node knows of; 0 when it knows none.",
        status.primary_id.unwrap_or(0),
    );
    m.gauge(
        "tandem_last_log_index",
        "Index of the last entry in this node's log.",
        status.last_log_index,
    );
    m.gauge(
        "tandem_committed_index",
        "Highest index this node knows to be committed.",
        status.committed_index,
    );
    m.gauge(
        "tandem_applied_index",
        "Highest index applied to this node's keyspace.",
        status.applied_index,
    );
    if let Some(i) = status.snapshot_index {
        m.gauge(
            "tandem_snapshot_index",
            "Last index covered by this node's newest snapshot.",
            i,
        );
    }
    if let Some(i) = status.purged_index {
        m.gauge(
            "tandem_purged_index",
            "Highest index removed from this node's log.",
            i,
        );
    }

    // This node's own staleness: 0 on the primary, unknown (absent) on a replica that has not
    // caught up yet.
    if let Some(ms) = status.lag_ms() {
        m.gauge(
            "tandem_lag_ms",
            "How stale this node's data may be, in milliseconds (0 on the primary).",
            ms,
        );
    }
    let lag_entries = match (status.role, status.lag) {
        (Role::Primary, _) => Some(0),
        (_, Some(lag)) => Some(lag.entries),
        _ => None,
    };
    if let Some(n) = lag_entries {
        m.gauge(
            "tandem_lag_entries",
            "Entries the primary reported committed that this node has not applied yet.",
            n,
        );
    }
    if let Some(d) = status.lag.and_then(|l| l.since_heard) {
        m.gauge(
            "tandem_primary_last_heard_ms",
            "Milliseconds since this replica last heard from the primary.",
            d.as_millis() as u64,
        );
    }

    if status.role == Role::Primary {
        render_members(&mut m, status);
    }

    let s = &status.sync;
    m.gauge(
        "tandem_snapshot_sync_in_progress",
        "1 while this node is receiving a snapshot from the primary.",
        u64::from(s.in_progress),
    );
    m.gauge(
        "tandem_snapshot_sync_bytes",
        "Bytes received of the snapshot being (or last) received.",
        s.bytes,
    );
    m.gauge(
        "tandem_snapshot_sync_size_bytes",
        "Size of the snapshot being (or last) received.",
        s.total_bytes,
    );
    m.gauge(
        "tandem_snapshot_sync_rate_bytes_per_sec",
        "Receive rate of the current snapshot transfer (0 when none is in progress).",
        s.rate_bytes_per_sec,
    );
    m.counter(
        "tandem_snapshot_sync_completed_total",
        "Snapshots received and installed.",
        s.completed,
    );
    m.counter(
        "tandem_snapshot_sync_rejected_total",
        "Snapshots received and rejected (failed verification); the primary sends them again.",
        s.rejected,
    );

    for (name, help, value) in transport_counters(status) {
        m.counter(name, help, value);
    }

    m.counter(
        "tandem_log_fsyncs_total",
        "fdatasyncs that made log records durable, since the process started.",
        log.fsyncs,
    );
    m.counter(
        "tandem_log_fsyncs_other_total",
        "Other log fsyncs (directories, new segments, meta file), since the process started.",
        log.fsyncs_other,
    );
    m.counter(
        "tandem_log_written_bytes_total",
        "Log record bytes written, since the process started.",
        log.written_bytes,
    );
    m.counter(
        "tandem_log_entries_written_total",
        "Log entries written, since the process started.",
        log.entries_written,
    );
    m.counter(
        "tandem_log_batches_written_total",
        "Group commits that wrote something, since the process started.",
        log.batches_written,
    );
    m.gauge(
        "tandem_log_segments",
        "Log segment files in use.",
        log.segments as u64,
    );
    m.gauge(
        "tandem_log_disk_bytes",
        "Bytes the log segment files occupy.",
        log.disk_bytes,
    );
    m.gauge(
        "tandem_log_used_bytes",
        "Bytes of headers and records in the log segment files.",
        log.used_bytes,
    );
    m.gauge(
        "tandem_log_cache_bytes",
        "Payload bytes held in the log read cache.",
        log.cache_bytes as u64,
    );
    m.out
}

/// Damaged copies per source and kind, the quarantine and the scrubber (`consensus/damage.rs`).
pub fn render_integrity_metrics(stats: &DamageStats, scrub: &ScrubProgress) -> String {
    let mut m = Exposition::default();
    type Field = fn(&(u64, u64, u64)) -> u64;
    let families: [(&str, &str, Field); 3] = [
        (
            "tandem_corruption_detected_total",
            "Values found failing their checksum (or received damaged), by where they were found.",
            |c| c.0,
        ),
        (
            "tandem_corruption_repaired_total",
            "Damaged copies replaced with a good copy from another member (or received again intact).",
            |c| c.1,
        ),
        (
            "tandem_corruption_unrepairable_total",
            "Damaged keys no member had a good copy of (each then quarantined).",
            |c| c.2,
        ),
    ];
    for (name, help, field) in families {
        m.family(name, Counter, help);
        for (i, source) in Source::ALL.iter().enumerate() {
            m.sample(
                name,
                &[("source", source.name())],
                field(&stats.by_source[i]),
            );
        }
    }
    m.gauge(
        "tandem_quarantined_keys",
        "Keys whose copy here is damaged and that no member could repair (DIGEST.QUARANTINE).",
        stats.quarantined as u64,
    );
    m.gauge(
        "tandem_repairs_in_flight",
        "Keys being repaired from other members right now.",
        stats.repairs_in_flight as u64,
    );
    m.gauge(
        "tandem_scrub_suspects",
        "Keys waiting for the scrubber to check them first.",
        stats.suspects as u64,
    );
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    m.counter(
        "tandem_scrub_keys_checked_total",
        "Keys the scrubber verified.",
        load(&scrub.keys_checked),
    );
    m.counter(
        "tandem_scrub_bytes_checked_total",
        "Value bytes the scrubber verified.",
        load(&scrub.bytes_checked),
    );
    m.counter(
        "tandem_scrub_passes_total",
        "Full passes of the scrubber over the keyspace.",
        load(&scrub.passes_completed),
    );
    m.gauge(
        "tandem_scrub_last_full_pass_timestamp_seconds",
        "Unix time the scrubber last completed a full pass (0: never).",
        load(&scrub.last_pass_end_unix_ms) / 1000,
    );
    m.counter(
        "tandem_scrub_faults_found_total",
        "Damaged keys the scrubber found.",
        load(&scrub.faults_found),
    );
    m.counter(
        "tandem_scrub_repairs_total",
        "Damaged keys the scrubber found and repaired.",
        load(&scrub.repairs),
    );
    m.out
}

/// Per-member replication progress, as the primary sees it.
fn render_members(m: &mut Exposition, status: &ReplicationStatus) {
    type Field = fn(&MemberStatus) -> Option<u64>;
    let families: [(&str, &str, Field); 4] = [
        (
            "tandem_member_matched_index",
            "Highest index the member has made durable, as acknowledged to the primary.",
            |s| s.matched_index,
        ),
        (
            "tandem_member_lag_entries",
            "The primary's last index less the member's matched index.",
            |s| s.lag_entries,
        ),
        (
            "tandem_member_lag_ms",
            "0 when the member holds everything, else milliseconds since its last acknowledgement.",
            |s| s.lag_ms(),
        ),
        (
            "tandem_member_last_ack_ms",
            "Milliseconds since the member last acknowledged anything.",
            |s| s.last_ack_ms,
        ),
    ];
    for (name, help, field) in families {
        m.family(name, Gauge, help);
        for member in &status.members {
            let Some(value) = field(member) else { continue };
            let kind = if Some(member.id) == status.primary_id {
                "primary"
            } else if member.voter {
                "voter"
            } else {
                "read-replica"
            };
            m.sample(
                name,
                &[("node_id", &member.id.to_string()), ("kind", kind)],
                value,
            );
        }
    }
}

/// The transport crate's counters, named for Prometheus. The one place that knows the fields of
/// its stats snapshot: update this when the transport adds a counter.
fn transport_counters(status: &ReplicationStatus) -> [(&'static str, &'static str, u64); 10] {
    let t = &status.transport;
    [
        (
            "tandem_transport_frames_sent_total",
            "Cluster frames written, handshakes included.",
            t.frames_sent,
        ),
        (
            "tandem_transport_frames_received_total",
            "Cluster frames read whose CRC matched.",
            t.frames_received,
        ),
        (
            "tandem_transport_sent_bytes_total",
            "Bytes of cluster frames written, headers included.",
            t.bytes_sent,
        ),
        (
            "tandem_transport_received_bytes_total",
            "Bytes of cluster frames read whose CRC matched, headers included.",
            t.bytes_received,
        ),
        (
            "tandem_transport_crc_failures_total",
            "Cluster frames whose payload did not match its CRC32C (each closed its connection).",
            t.crc_failures,
        ),
        (
            "tandem_transport_refusals_total",
            "Cluster handshakes this node refused (wrong secret, protocol version or hello).",
            t.refusals,
        ),
        (
            "tandem_transport_connects_total",
            "Cluster connections that completed the handshake, made or accepted.",
            t.connects,
        ),
        (
            "tandem_transport_connect_failures_total",
            "Cluster connection attempts that did not end in a usable connection.",
            t.connect_failures,
        ),
        (
            "tandem_transport_retries_total",
            "Cluster calls sent again on a new connection after theirs dropped.",
            t.retries,
        ),
        (
            "tandem_transport_calls_timed_out_total",
            "Cluster calls whose deadline passed before a reply.",
            t.calls_timed_out,
        ),
    ]
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}
use Kind::{Counter, Gauge};

/// Writes the text format: a family's `# HELP` and `# TYPE` lines, then its samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Gauge => "gauge",
            Counter => "counter",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Gauge, help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Counter, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Help text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::lag::Lag;
    use crate::consensus::status::SyncStatus;

    fn req(text: &str) -> Result<Option<Request>, RequestError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn a_get_with_headers_parses_into_method_path_and_query() {
        let r = req("GET /ready?max-lag-ms=250 HTTP/1.1\r\nHost: x\r\nUser-Agent: lb\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/ready".into(),
                query: Some("max-lag-ms=250".into()),
            }
        );
        let r = req("GET /health HTTP/1.0\n\n").unwrap().unwrap();
        assert_eq!((r.path.as_str(), r.query), ("/health", None));
    }

    #[test]
    fn a_head_without_its_blank_line_is_incomplete() {
        assert_eq!(req(""), Ok(None));
        assert_eq!(req("GET /health HTTP/1.1\r\n"), Ok(None));
        assert_eq!(req("GET /health HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn a_body_after_the_head_is_ignored() {
        let r = req("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!(r.unwrap().method, "POST");
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "GET\r\n\r\n",
            "GET /health\r\n\r\n",
            "GET /health HTTP/1.1 extra\r\n\r\n",
            "GET  /health HTTP/1.1\r\n\r\n",
            "GET health HTTP/1.1\r\n\r\n",
            "GET /health HTTP/2\r\n\r\n",
            "G(T /health HTTP/1.1\r\n\r\n",
            "GET /health HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /health HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /health HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        ] {
            assert!(
                matches!(req(bad), Err(RequestError::Malformed(_))),
                "{bad:?} -> {:?}",
                req(bad)
            );
        }
        assert!(matches!(
            parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn a_head_longer_than_the_limit_is_too_large() {
        let mut long = format!(
            "GET /health HTTP/1.1\r\nX: {}",
            "a".repeat(REQUEST_BYTES_MAX)
        );
        long.push_str("\r\n\r\n");
        assert_eq!(req(&long), Err(RequestError::TooLarge));
        assert_eq!(RequestError::TooLarge.response().status, 431);
        // Exactly at the limit is fine.
        let base = "GET /health HTTP/1.1\r\nX: \r\n\r\n";
        let exact = format!(
            "GET /health HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(REQUEST_BYTES_MAX - base.len())
        );
        assert_eq!(exact.len(), REQUEST_BYTES_MAX);
        assert!(req(&exact).unwrap().is_some());
    }

    #[test]
    fn the_ready_query_takes_only_a_whole_max_lag() {
        assert_eq!(parse_ready_query(None, 5000), Ok(5000));
        assert_eq!(parse_ready_query(Some(""), 5000), Ok(5000));
        assert_eq!(parse_ready_query(Some("max-lag-ms=250"), 5000), Ok(250));
        assert_eq!(parse_ready_query(Some("max-lag-ms=0"), 5000), Ok(0));
        assert!(parse_ready_query(Some("max-lag-ms="), 5000).is_err());
        assert!(parse_ready_query(Some("max-lag-ms=-1"), 5000).is_err());
        assert!(parse_ready_query(Some("max-lag-ms=1.5"), 5000).is_err());
        let e = parse_ready_query(Some("max_lag_ms=250"), 5000).unwrap_err();
        assert!(e.contains("max_lag_ms"), "{e}");
    }

    #[test]
    fn a_response_closes_the_connection_and_states_its_length() {
        let bytes = Response::text(503, "lagging 1234 ms > 500 ms\n").to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 25\r\n\
             Cache-Control: no-store\r\n\
             Connection: close\r\n\
             \r\n\
             lagging 1234 ms > 500 ms\n"
        );
        let bytes = Response::text(405, "").to_bytes();
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn health_reports_why_the_core_stopped() {
        assert_eq!(health(Ok(())), Response::text(200, "ok\n"));
        let r = health(Err("consensus core stopped: storage error".into()));
        assert_eq!(r.status, 503);
        assert!(r.body.contains("storage error"));
    }

    fn member(id: u64, voter: bool, matched: Option<u64>, ack_ms: Option<u64>) -> MemberStatus {
        MemberStatus {
            id,
            voter,
            client_addr: format!("127.0.0.1:{}", 7000 + id),
            cluster_addr: format!("127.0.0.1:{}", 17000 + id),
            matched_index: matched,
            lag_entries: matched.map(|m| 100 - m),
            last_ack_ms: ack_ms,
        }
    }

    fn status(role: Role, lag_ms: Option<u64>, primary: Option<u64>) -> ReplicationStatus {
        ReplicationStatus {
            node_id: 2,
            cluster_id: "c0ffee".into(),
            cluster_addr: "127.0.0.1:17002".into(),
            role,
            term: 3,
            primary_id: primary,
            primary_client_addr: primary.map(|p| format!("127.0.0.1:{}", 7000 + p)),
            last_log_index: 100,
            committed_index: 99,
            applied_index: 98,
            snapshot_index: Some(50),
            purged_index: None,
            lag: match role {
                Role::Voter | Role::ReadReplica => Some(Lag {
                    staleness: lag_ms.map(Duration::from_millis),
                    entries: 2,
                    since_heard: Some(Duration::from_millis(40)),
                    leader_commit: 100,
                }),
                _ => None,
            },
            members: vec![],
            sync: SyncStatus {
                in_progress: false,
                bytes: 0,
                total_bytes: 0,
                rate_bytes_per_sec: 0,
                completed: 1,
                rejected: 0,
            },
            transport: Default::default(),
        }
    }

    #[test]
    fn the_primary_is_always_ready() {
        let r = ready(&status(Role::Primary, None, Some(2)), false, 0);
        assert_eq!(r.status, 200);
    }

    #[test]
    fn a_replica_is_ready_only_within_the_lag_bound() {
        for role in [Role::Voter, Role::ReadReplica] {
            assert_eq!(
                ready(&status(role, Some(500), Some(1)), false, 500).status,
                200
            );
            let r = ready(&status(role, Some(1234), Some(1)), false, 500);
            assert_eq!(
                (r.status, r.body.as_str()),
                (503, "lagging 1234 ms > 500 ms\n")
            );
        }
    }

    #[test]
    fn a_replica_with_unknown_lag_is_not_ready() {
        let r = ready(&status(Role::Voter, None, None), false, 500);
        assert_eq!((r.status, r.body.as_str()), (503, "no primary heard\n"));
        let r = ready(&status(Role::ReadReplica, None, Some(1)), false, 500);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("not yet caught up"), "{}", r.body);
    }

    #[test]
    fn an_unformed_node_is_ready_only_when_standalone() {
        assert_eq!(
            ready(&status(Role::Unformed, None, None), true, 500).status,
            200
        );
        let r = ready(&status(Role::Unformed, None, None), false, 500);
        assert_eq!(r.status, 503);
    }

    fn log_stats() -> LogStats {
        LogStats {
            first_index: Some(1),
            last_index: Some(100),
            segments: 2,
            disk_bytes: 128 << 20,
            used_bytes: 4096,
            entries_written: 100,
            records_written: 120,
            written_bytes: 9000,
            batches_written: 40,
            fsyncs: 41,
            fsyncs_other: 3,
            cache_entries: 10,
            cache_bytes: 512,
        }
    }

    #[test]
    fn metrics_of_a_replica_show_its_own_lag_and_no_member_progress() {
        let text = render_metrics(&status(Role::ReadReplica, Some(70), Some(1)), &log_stats());
        for line in [
            "# TYPE tandem_role gauge",
            "tandem_role{role=\"primary\"} 0",
            "tandem_role{role=\"read-replica\"} 1",
            "tandem_node_info{node_id=\"2\",cluster_id=\"c0ffee\"} 1",
            "tandem_term 3",
            "tandem_primary_id 1",
            "tandem_last_log_index 100",
            "tandem_committed_index 99",
            "tandem_applied_index 98",
            "tandem_snapshot_index 50",
            "tandem_lag_ms 70",
            "tandem_lag_entries 2",
            "tandem_primary_last_heard_ms 40",
            "# TYPE tandem_snapshot_sync_completed_total counter",
            "tandem_snapshot_sync_completed_total 1",
            "tandem_transport_crc_failures_total 0",
            "tandem_log_fsyncs_total 41",
            "tandem_log_written_bytes_total 9000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("tandem_purged_index"),
            "unknown values are left out"
        );
        assert!(!text.contains("tandem_member_matched_index{"));
    }

    #[test]
    fn metrics_of_the_primary_show_every_members_progress() {
        let mut s = status(Role::Primary, None, Some(2));
        s.members = vec![
            member(1, true, Some(97), Some(12)),
            member(2, true, Some(100), Some(0)),
            member(4, false, None, None),
        ];
        let text = render_metrics(&s, &log_stats());
        for line in [
            "tandem_role{role=\"primary\"} 1",
            "tandem_lag_ms 0",
            "tandem_lag_entries 0",
            "tandem_member_matched_index{node_id=\"1\",kind=\"voter\"} 97",
            "tandem_member_matched_index{node_id=\"2\",kind=\"primary\"} 100",
            "tandem_member_lag_entries{node_id=\"1\",kind=\"voter\"} 3",
            "tandem_member_lag_ms{node_id=\"1\",kind=\"voter\"} 12",
            "tandem_member_lag_ms{node_id=\"2\",kind=\"primary\"} 0",
            "tandem_member_last_ack_ms{node_id=\"1\",kind=\"voter\"} 12",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("node_id=\"4\""),
            "unknown progress is left out"
        );
    }

    #[test]
    fn every_metric_family_is_declared_once_before_its_samples() {
        let mut s = status(Role::Primary, None, Some(2));
        s.members = vec![
            member(1, true, Some(97), Some(12)),
            member(3, false, Some(90), Some(5)),
        ];
        let text = render_metrics(&s, &log_stats());
        let mut declared: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family: {line}");
                assert!(name.starts_with("tandem_"), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<u64>().is_ok(), "{line}");
            }
        }
        for name in &declared {
            if text.contains(&format!("# TYPE {name} counter")) {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = status(Role::Voter, Some(1), Some(1));
        s.cluster_id = "a\"b\\c\nd".into();
        let text = render_metrics(&s, &log_stats());
        assert!(text.contains(r#"cluster_id="a\"b\\c\nd""#), "{text}");
    }
}
