//! Streaming a snapshot file to a replica: in chunks, resumable, throttled, verified before it
//! replaces anything.
//!
//! Sender (the primary, from openraft's `full_snapshot`): offer → the receiver answers with the
//! offset to go on from (the bytes it already holds of the same transfer, or 0) → chunks of
//! `snapshot_chunk_bytes`, paced to `snapshot_bytes_per_sec_max` → done. A dropped connection
//! fails the call; openraft calls again later, and the offer resumes where the receiver is.
//!
//! Receiver: writes chunks to `snapshots/incoming-<transfer>.part` and, at the same time, feeds
//! them to a loader thread that checks every block CRC, the whole-file digest and every value's
//! digest while building the new keyspace (so receiving and loading overlap); at "done" it waits
//! for the loader and only then hands the file and its state to openraft, which swaps them in. Until then the replica keeps serving its old data (under the lag
//! rule). Each chunk travels in a transport frame with its own CRC32C: a corrupted chunk is
//! dropped by the transport and sent again, never written.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::errors::{NetworkError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use parking_lot::Mutex;
use tandem_transport::{CallError, CallOptions};
use tracing::{info, warn};

use super::messages::{Request, Response, SnapshotOffer};
use super::network::{call, PeerClient, PeerFailure};
use super::state_machine::{load_snapshot_file, SnapshotFile, StateMachine};
use super::types::{SnapshotMeta, TypeConfig, Vote};

/// Prefix of the files snapshots are received into, inside the snapshot directory
/// (`incoming-<transfer hash>.part`, one per transfer).
pub const INCOMING_PREFIX: &str = "incoming-";

/// How long the receiver may take to verify and install a received snapshot, per GiB (and at
/// least a minute).
const INSTALL_SECS_PER_GIB: u64 = 60;

fn streaming_error(e: CallError) -> StreamingError<TypeConfig> {
    match e {
        CallError::Remote(m) => StreamingError::Network(NetworkError::new(&PeerFailure(m))),
        other => StreamingError::Unreachable(Unreachable::new(&PeerFailure(other.to_string()))),
    }
}

fn protocol_error(what: &str, r: Response) -> StreamingError<TypeConfig> {
    StreamingError::Network(NetworkError::new(&PeerFailure(format!(
        "unexpected answer to snapshot {what}: {r:?}"
    ))))
}

fn io_error(e: std::io::Error) -> StreamingError<TypeConfig> {
    StreamingError::Network(NetworkError::new(&e))
}

/// Sends `snapshot` to the client's target (openraft's `full_snapshot`).
pub async fn send(
    client: &mut PeerClient,
    vote: Vote,
    snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>,
    cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
    _option: RPCOption,
) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
    let ctx = client.ctx.clone();
    let target = client.target;
    let path = snapshot.snapshot.path.clone();
    let meta = snapshot.meta.clone();
    let mut file = std::fs::File::open(&path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    // Names this transfer: a receiver resumes only the same file.
    let transfer = format!(
        "{}@{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        meta.last_log_id.map(|l| l.to_string()).unwrap_or_default()
    );
    let rpc = ctx.rpc_timeout;
    let offer = Request::SnapshotOffer(SnapshotOffer {
        vote,
        meta: meta.clone(),
        transfer: transfer.clone(),
        size_bytes: size,
    });
    let mut offset = match call(&client.peer, &offer, rpc, CallOptions::default())
        .await
        .map_err(streaming_error)?
    {
        Response::SnapshotResume { offset } => offset.min(size),
        Response::SnapshotStale(r) => return Ok(r),
        other => return Err(protocol_error("offer", other)),
    };
    if offset > 0 {
        info!("snapshot {transfer} to node {target}: resuming at byte {offset} of {size}");
    } else {
        info!("snapshot {transfer} to node {target}: sending {size} bytes");
    }
    tokio::pin!(cancel);
    let started = Instant::now();
    let first_offset = offset;
    let mut last_report = Instant::now();
    let rate = ctx.snapshot_bytes_per_sec_max.max(1);
    let chunk_bytes = ctx.snapshot_chunk_bytes.max(1);
    let mut chunks_sent: u32 = 0;
    while offset < size {
        let interrupt = ctx
            .faults
            .interrupt_snapshot_after
            .load(std::sync::atomic::Ordering::Relaxed);
        if interrupt > 0
            && chunks_sent >= interrupt
            && ctx
                .faults
                .interrupt_snapshot_after
                .compare_exchange(
                    interrupt,
                    0,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            warn!("snapshot {transfer} to node {target}: interrupted after {chunks_sent} chunks (DEBUG)");
            return Err(StreamingError::Unreachable(Unreachable::new(&PeerFailure(
                "snapshot transfer interrupted by DEBUG SNAPSHOT-INTERRUPT".into(),
            ))));
        }
        // Pace: never ahead of `rate` bytes per second since the transfer (re)started.
        let sent = offset - first_offset;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let n = (size - offset).min(chunk_bytes as u64) as usize;
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut data = Vec::with_capacity(n);
        (&mut file)
            .take(n as u64)
            .read_to_end(&mut data)
            .map_err(io_error)?;
        if data.len() != n {
            return Err(io_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "snapshot file ended at {} bytes, expected {size}",
                    offset + data.len() as u64
                ),
            )));
        }
        let chunk = Request::SnapshotChunk {
            transfer: transfer.clone(),
            offset,
            data: bytes::Bytes::from(data),
        };
        let opts = CallOptions {
            corrupt_first_send: ctx.faults.take_snapshot_chunk(),
        };
        let answer = tokio::select! {
            closed = &mut cancel => return Err(StreamingError::Closed(closed)),
            a = call(&client.peer, &chunk, rpc, opts) => a.map_err(streaming_error)?,
        };
        match answer {
            Response::SnapshotResume { offset: next } if next <= size => offset = next,
            other => return Err(protocol_error("chunk", other)),
        }
        chunks_sent += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            info!(
                "snapshot {transfer} to node {target}: {offset} of {size} bytes ({:.0}%), {:.1} MiB/s",
                offset as f64 * 100.0 / size.max(1) as f64,
                (offset - first_offset) as f64 / secs / (1 << 20) as f64
            );
        }
    }
    let install_deadline =
        Duration::from_secs(60.max(size.div_ceil(1 << 30) * INSTALL_SECS_PER_GIB)) + rpc;
    let done = Request::SnapshotDone {
        vote,
        meta,
        transfer: transfer.clone(),
    };
    let answer = tokio::select! {
        closed = &mut cancel => return Err(StreamingError::Closed(closed)),
        a = call(&client.peer, &done, install_deadline, CallOptions::default()) => a.map_err(streaming_error)?,
    };
    match answer {
        Response::SnapshotInstalled(r) | Response::SnapshotStale(r) => {
            info!(
                "snapshot {transfer} to node {target}: {size} bytes delivered in {} ms",
                started.elapsed().as_millis()
            );
            Ok(r)
        }
        other => Err(protocol_error("done", other)),
    }
}

/// Progress of the snapshot this node is receiving, for INFO and `/metrics`.
#[derive(Default)]
pub struct SyncProgress {
    pub in_progress: AtomicBool,
    pub bytes: AtomicU64,
    pub total_bytes: AtomicU64,
    pub started: Mutex<Option<Instant>>,
    /// Bytes received in the current transfer since it (re)started, for the rate.
    pub bytes_since_start: AtomicU64,
    pub completed: AtomicU64,
    pub rejected: AtomicU64,
    /// Received snapshots whose content failed verification (a block CRC, the whole-file
    /// digest or a value's digest), among the rejected ones.
    pub verify_failures: AtomicU64,
}

impl SyncProgress {
    pub fn rate_bytes_per_sec(&self) -> u64 {
        match *self.started.lock() {
            Some(t) if self.in_progress.load(Ordering::Relaxed) => {
                let secs = t.elapsed().as_secs_f64().max(0.001);
                (self.bytes_since_start.load(Ordering::Relaxed) as f64 / secs) as u64
            }
            _ => 0,
        }
    }
}

struct Incoming {
    transfer: String,
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    size: u64,
    last_report: Instant,
    /// Chunks for the loader thread, in order; None once it stopped taking them (then the file
    /// is loaded from disk at the end instead).
    feed: Option<std::sync::mpsc::SyncSender<bytes::Bytes>>,
    loader: Option<std::thread::JoinHandle<Result<Loaded, String>>>,
}

type Loaded = (super::state_machine::SmState, SnapshotMeta, usize);

/// Chunks queued for the loader thread at most (each up to `--snapshot-chunk-bytes`).
const LOADER_QUEUE_CHUNKS: usize = 32;

/// The chunks of a snapshot as one byte stream, for the loader thread; ends when the receiver
/// drops its sender.
struct ChunkStream {
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChunkStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.current = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Starts a thread that loads and verifies a snapshot of `size` bytes from the chunks sent to
/// the returned sender.
fn start_loader(
    size: u64,
    label: PathBuf,
) -> (
    std::sync::mpsc::SyncSender<bytes::Bytes>,
    Option<std::thread::JoinHandle<Result<Loaded, String>>>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel(LOADER_QUEUE_CHUNKS);
    let loader = std::thread::Builder::new()
        .name("snapshot-loader".into())
        .spawn(move || {
            let stream = ChunkStream {
                rx,
                current: bytes::Bytes::new(),
            };
            let reader = tandem_snapshot::SnapshotReader::from_source(stream, size, &label)
                .map_err(|e| e.to_string())?;
            super::state_machine::load_snapshot(reader, &label, false)
        })
        .ok();
    (tx, loader)
}

/// What the receiver is doing.
enum State {
    Idle,
    Receiving(Incoming),
    /// A complete file is being verified or installed: new offers wait.
    Finishing(String),
}

/// The receiving side, owned by the peer service.
pub struct Receiver {
    dir: PathBuf,
    state: Mutex<State>,
    pub progress: SyncProgress,
}

fn remove_partials(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(INCOMING_PREFIX) && name.ends_with(".part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Receiver {
    pub fn new(snapshot_dir: PathBuf) -> Receiver {
        // A partial transfer from before a restart is not resumed: the primary may have a newer
        // snapshot by now, and the file's tail may be torn.
        remove_partials(&snapshot_dir);
        Receiver {
            dir: snapshot_dir,
            state: Mutex::new(State::Idle),
            progress: SyncProgress::default(),
        }
    }

    fn path_for(&self, transfer: &str) -> PathBuf {
        let id = tandem_checksum::Checksum::compute(
            tandem_checksum::Algorithm::Crc32c,
            transfer.as_bytes(),
        );
        self.dir.join(format!(
            "{INCOMING_PREFIX}{}-{}.part",
            id.to_hex(),
            transfer.len()
        ))
    }

    /// An offer: resume the same transfer where it stopped, or start afresh.
    pub fn offer(&self, offer: &SnapshotOffer) -> Result<u64, String> {
        if offer.size_bytes > SNAPSHOT_BYTES_MAX {
            return Err(format!(
                "snapshot of {} bytes is over the limit of {SNAPSHOT_BYTES_MAX}",
                offer.size_bytes
            ));
        }
        if let Some(free) = free_bytes(&self.dir) {
            // The log shares the disk: never let a snapshot take the room its appends need.
            if offer.size_bytes.saturating_add(DISK_HEADROOM_BYTES) > free {
                return Err(format!(
                    "not enough disk space for a snapshot of {} bytes in {} ({free} bytes free, {} kept for the log)",
                    offer.size_bytes,
                    self.dir.display(),
                    DISK_HEADROOM_BYTES
                ));
            }
        }
        let mut st = self.state.lock();
        match &*st {
            State::Finishing(t) => {
                return Err(format!("still verifying snapshot {t}; offer again later"));
            }
            State::Receiving(inc)
                if inc.transfer == offer.transfer && inc.size == offer.size_bytes =>
            {
                info!(
                    "receiving snapshot {}: resuming at byte {} of {}",
                    inc.transfer, inc.len, inc.size
                );
                *self.progress.started.lock() = Some(Instant::now());
                self.progress.bytes_since_start.store(0, Ordering::Relaxed);
                return Ok(inc.len);
            }
            _ => {}
        }
        // Another transfer (or none): its partial file is of no more use.
        *st = State::Idle;
        remove_partials(&self.dir);
        let path = self.path_for(&offer.transfer);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        info!(
            "receiving snapshot {} ({} bytes, last index {:?})",
            offer.transfer,
            offer.size_bytes,
            offer.meta.last_log_id.map(|l| l.index())
        );
        let (feed, loader) = start_loader(offer.size_bytes, path.clone());
        *st = State::Receiving(Incoming {
            transfer: offer.transfer.clone(),
            path,
            file,
            len: 0,
            size: offer.size_bytes,
            last_report: Instant::now(),
            feed: loader.as_ref().map(|_| feed),
            loader,
        });
        let p = &self.progress;
        p.in_progress.store(true, Ordering::Relaxed);
        p.bytes.store(0, Ordering::Relaxed);
        p.bytes_since_start.store(0, Ordering::Relaxed);
        p.total_bytes.store(offer.size_bytes, Ordering::Relaxed);
        *p.started.lock() = Some(Instant::now());
        Ok(0)
    }

    /// A chunk; answers with the offset the sender should send next.
    pub fn chunk(&self, transfer: &str, offset: u64, data: bytes::Bytes) -> Result<u64, String> {
        use std::os::unix::fs::FileExt;
        let mut st = self.state.lock();
        let inc = match &mut *st {
            State::Receiving(inc) if inc.transfer == transfer => inc,
            _ => {
                return Err(format!(
                    "no snapshot transfer {transfer} in progress here: offer it again"
                ))
            }
        };
        if offset != inc.len {
            // A retried chunk that already arrived, or a gap: tell the sender where we are.
            return Ok(inc.len);
        }
        if inc.len + data.len() as u64 > inc.size {
            return Err(format!(
                "snapshot chunk at {offset} (+{} bytes) runs past the offered size {}",
                data.len(),
                inc.size
            ));
        }
        // At its offset, not at the file cursor: a failed write must not shift later chunks.
        inc.file
            .write_all_at(&data, offset)
            .map_err(|e| format!("cannot write {}: {e}", inc.path.display()))?;
        inc.len += data.len() as u64;
        let n = data.len() as u64;
        if let Some(feed) = &inc.feed {
            if feed.send(data).is_err() {
                // The loader stopped (it found a fault, or failed): load from the file at the end.
                inc.feed = None;
            }
        }
        self.progress.bytes.store(inc.len, Ordering::Relaxed);
        self.progress
            .bytes_since_start
            .fetch_add(n, Ordering::Relaxed);
        if inc.last_report.elapsed() >= Duration::from_secs(1) {
            inc.last_report = Instant::now();
            info!(
                "receiving snapshot {}: {} of {} bytes ({:.0}%), {:.1} MiB/s",
                inc.transfer,
                inc.len,
                inc.size,
                inc.len as f64 * 100.0 / inc.size.max(1) as f64,
                self.progress.rate_bytes_per_sec() as f64 / (1 << 20) as f64
            );
        }
        Ok(inc.len)
    }

    /// The whole file arrived: sync it and verify everything in it. On success the file is ready
    /// for openraft to install (returns its path) and the receiver stays in the finishing state
    /// until [`Receiver::done`]; on failure the file is deleted and counted.
    pub fn finish(
        &self,
        transfer: &str,
        meta: &SnapshotMeta,
        sm: &StateMachine,
    ) -> Result<PathBuf, String> {
        let mut inc = {
            let mut st = self.state.lock();
            match std::mem::replace(&mut *st, State::Finishing(transfer.to_string())) {
                State::Receiving(i) if i.transfer == transfer => i,
                other => {
                    *st = other;
                    return Err(format!("no snapshot transfer {transfer} in progress here"));
                }
            }
        };
        self.progress.in_progress.store(false, Ordering::Relaxed);
        let result = (|| {
            if inc.len != inc.size {
                return Err(format!(
                    "snapshot {transfer} is incomplete: {} of {} bytes",
                    inc.len, inc.size
                ));
            }
            inc.file
                .sync_all()
                .map_err(|e| format!("cannot sync {}: {e}", inc.path.display()))?;
            // The loader has seen every byte if it took every chunk: ending its stream lets it
            // finish (trailer, whole-file digest). Otherwise load from the file.
            let fed_all = inc.feed.take().is_some();
            let streamed = inc.loader.take().and_then(|h| h.join().ok());
            let loaded = match streamed {
                Some(loaded) if fed_all => loaded,
                _ => load_snapshot_file(&inc.path, false),
            };
            let (state, file_meta, _) = loaded.inspect_err(|_| {
                self.progress
                    .verify_failures
                    .fetch_add(1, Ordering::Relaxed);
            })?;
            if file_meta.last_log_id != meta.last_log_id
                || file_meta.last_membership != meta.last_membership
            {
                return Err(format!(
                    "snapshot {transfer} holds last log id {:?}, the sender announced {:?}",
                    file_meta.last_log_id, meta.last_log_id
                ));
            }
            sm.preload(inc.path.clone(), file_meta, state);
            Ok(inc.path.clone())
        })();
        match &result {
            Ok(_) => {
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
                info!("received snapshot {transfer}: {} bytes, verified", inc.size);
            }
            Err(e) => {
                self.progress.rejected.fetch_add(1, Ordering::Relaxed);
                warn!("rejected received snapshot {transfer}: {e}; the primary will send it again");
                let _ = std::fs::remove_file(&inc.path);
                *self.state.lock() = State::Idle;
            }
        }
        result
    }

    /// openraft has installed (or declined) the finished snapshot at `path`: forget it. A file
    /// openraft did not take is deleted; so is a verified state it did not install.
    pub fn done(&self, path: &std::path::Path, sm: &StateMachine) {
        sm.clear_preload();
        if path.exists() {
            let _ = std::fs::remove_file(path);
        }
        *self.state.lock() = State::Idle;
    }
}

/// Largest snapshot a replica accepts.
pub const SNAPSHOT_BYTES_MAX: u64 = 1 << 40;

/// Disk space a received snapshot must leave free (for the log).
pub const DISK_HEADROOM_BYTES: u64 = 256 << 20;

/// Bytes available to this process on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes only into `st`, which lives for the call; `path` is NUL-terminated.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
