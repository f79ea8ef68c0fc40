//! Shared helpers for Tandem's integration tests.
//!
//! - [`Tandem`]: a `tandem server` child process on a free port with its own data dir; killed on
//!   drop (also when the test panics), its stderr kept in a log file whose tail is printed when
//!   something goes wrong.
//! - [`Redis`]: a `redis-server` child process, the reference for behaviour; [`require_redis`]
//!   says whether one can be started (and fails loudly under `CI=true` when it cannot).
//! - [`Conn`]: a minimal blocking RESP client that sends commands and returns both the raw reply
//!   bytes and the parsed [`Frame`].
//! - [`parse_frame`]: a small RESP2/RESP3 reply parser written for the tests, independent of the
//!   server's own codec so that a bug there cannot hide itself.

#![allow(dead_code)]

pub mod cluster;
pub mod damage;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const TANDEM_BIN: &str = env!("CARGO_BIN_EXE_tandem");

/// How long a server may take to answer its first PING (debug builds on 2 shared cores).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client waits for one reply before calling the server stuck.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Prints a phase line, so a failing test's output reads as a story.
pub fn phase(msg: impl fmt::Display) {
    eprintln!("phase: {msg}");
}

// ---------------------------------------------------------------------------------------------
// Ports

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Lowest and highest client ports handed out. Tandem also listens on `port + 10000` (its default
/// cluster port), so both must be free.
const PORT_LO: u16 = 15000;
const PORT_HI: u16 = 30000;

/// A port `p` such that `p` and `p + 10000` are both free on 127.0.0.1 right now.
///
/// Starts at a random offset per test process and walks upward, so tests running in parallel
/// threads never get the same port and concurrently running test binaries rarely collide (a
/// collision is caught and retried by [`Tandem::start`]).
pub fn free_port() -> u16 {
    let span = PORT_HI - PORT_LO;
    let _ = NEXT_PORT.compare_exchange(
        0,
        PORT_LO + rand::random::<u16>() % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let raw = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_LO + (raw.wrapping_sub(PORT_LO)) % span;
        if port_free(port) && port_free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair found in {PORT_LO}..{PORT_HI}");
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Processes

static SERVER_SEQ: AtomicUsize = AtomicUsize::new(0);

/// How a spawned server ended up.
pub enum Outcome {
    /// It answered PING.
    Ready,
    /// It exited before answering PING; its combined stdout and stderr.
    Exited(ExitStatus, String),
}

/// A `tandem server` process. Killed (SIGKILL) on drop.
pub struct Tandem {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Flags after `--port` and `--data-dir`.
    pub args: Vec<String>,
    /// stdout and stderr of every start, appended.
    pub log_path: PathBuf,
}

impl Tandem {
    /// Starts `tandem server` on a free port with `data_dir` and the extra `args`, and waits
    /// until it answers PING. Panics (printing its output) if it exits or is not ready in time.
    pub fn start(data_dir: &Path, args: &[&str]) -> Tandem {
        let mut t = Tandem::spawn(free_port(), data_dir, args);
        t.ensure_ready();
        t
    }

    /// Spawns without waiting; see [`Tandem::wait`].
    pub fn spawn(port: u16, data_dir: &Path, args: &[&str]) -> Tandem {
        let n = SERVER_SEQ.fetch_add(1, Ordering::SeqCst);
        let name = data_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("data");
        let log_path = data_dir.with_file_name(format!("{name}.tandem-{n}.log"));
        let mut t = Tandem {
            child: None,
            port,
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log_path,
        };
        t.launch();
        t
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        let _ = writeln!(
            log,
            "==== tandem server --port {} {:?}",
            self.port, self.args
        );
        let err = log.try_clone().expect("clone log handle");
        let child = die_with_parent(Command::new(TANDEM_BIN))
            .arg("server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {TANDEM_BIN}: {e}"));
        self.child = Some(child);
    }

    /// Waits until the server answers PING or exits, for at most `timeout`. Panics if neither
    /// happens (the process is killed first).
    pub fn wait(&mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return Outcome::Exited(status, self.log_text());
            }
            if ping_ok(self.port) {
                return Outcome::Ready;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "tandem on port {} neither answered PING nor exited within {timeout:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for PING; if the port was taken meanwhile by someone else, moves to another port.
    pub fn ensure_ready(&mut self) {
        for attempt in 0.. {
            match self.wait(READY_TIMEOUT) {
                Outcome::Ready => return,
                Outcome::Exited(status, log) => {
                    let in_use = log.lines().rev().take(20).any(|l| l.contains("in use"));
                    if in_use && attempt < 3 {
                        eprintln!("port {} taken, retrying on another", self.port);
                        self.port = free_port();
                        self.launch();
                        continue;
                    }
                    panic!(
                        "tandem exited ({status}) before answering PING; log:\n{}",
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Starts the server again on the same data dir and flags, and waits for PING.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
        self.ensure_ready();
    }

    /// Starts the server again (if stopped) and returns how that went, without panicking when it
    /// refuses to start.
    pub fn restart_outcome(&mut self, timeout: Duration) -> Outcome {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
        self.wait(timeout)
    }

    /// Replaces the extra flags used by the next (re)start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to 15 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: plain kill(2) on the pid of our own child, which has not been reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "tandem on port {} ignored SIGTERM for 15 s; killing it",
                self.port
            );
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Whether the process was started and not stopped or killed by the test.
    pub fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("server not running")
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.port)
            .unwrap_or_else(|e| panic!("connect to tandem on {}: {e}", self.port))
    }

    pub fn log_text(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last 60 lines of the server's output.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill9();
        if std::thread::panicking() && was_running {
            eprintln!(
                "---- tail of tandem log {} ----\n{}\n----",
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Runs `tandem ARGS...` to completion (at most `timeout`), returning its exit status and its
/// combined stdout and stderr.
pub fn run_tandem(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(TANDEM_BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.reopen().expect("reopen")))
        .stderr(Stdio::from(out.reopen().expect("reopen")))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {TANDEM_BIN}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`tandem {}` did not finish within {timeout:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read(out.path()).unwrap_or_default();
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// Makes the child get SIGKILL when the thread that spawned it exits, so that servers do not
/// outlive a test process that was itself killed (e.g. by a timeout) before its drops ran.
fn die_with_parent(mut cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own process state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn ping_ok(port: u16) -> bool {
    let Ok(mut c) = Conn::connect_timeout(port, Duration::from_millis(500)) else {
        return false;
    };
    c.set_timeout(Duration::from_millis(2000));
    // With --requirepass, NOAUTH is the answer of a ready server.
    match c.try_cmd(&["PING"]) {
        Ok(Frame::Simple(s)) => s == "PONG",
        Ok(Frame::Error(e)) => e.starts_with("NOAUTH"),
        _ => false,
    }
}

/// True when `redis-server` can be run. When it cannot, prints a loud SKIPPED line and returns
/// false, so the caller can return early; under `CI=true` it panics instead, because a CI run
/// that silently skipped the reference comparison would prove nothing.
pub fn require_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("redis-server not found, and CI=true: install redis-server (Debian package `redis-server`)");
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("***  SKIPPED: redis-server not found (install Debian's redis-server) ***");
    eprintln!("**********************************************************************");
    eprintln!();
    false
}

/// A `redis-server` process (no persistence), killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `redis-server --port P --save '' --appendonly no` plus `extra` flags; waits for PING.
    pub fn start(extra: &[&str]) -> Redis {
        for _attempt in 0..4 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let log = File::create(dir.path().join("redis.log")).expect("redis log");
            let child = die_with_parent(Command::new("redis-server"))
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--bind", "127.0.0.1", "--dir"])
                .arg(dir.path())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("clone log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn redis-server");
            let mut r = Redis {
                child: Some(child),
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if ping_ok(port) {
                    return r;
                }
                if let Ok(Some(_)) = r.child.as_mut().expect("child").try_wait() {
                    break; // probably the port was taken meanwhile; try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let log = std::fs::read_to_string(r._dir.path().join("redis.log")).unwrap_or_default();
            eprintln!("redis-server on {port} did not start:\n{log}");
        }
        panic!("redis-server did not start after 4 attempts");
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.port)
            .unwrap_or_else(|e| panic!("connect to redis on {}: {e}", self.port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// A blocking RESP client over one TCP connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes received but not yet consumed as a reply.
    buf: Vec<u8>,
    pub port: u16,
}

impl Conn {
    pub fn connect(port: u16) -> io::Result<Conn> {
        Conn::connect_timeout(port, Duration::from_secs(5))
    }

    pub fn connect_timeout(port: u16, timeout: Duration) -> io::Result<Conn> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let c = Conn {
            stream,
            buf: Vec::new(),
            port,
        };
        c.set_timeout(REPLY_TIMEOUT);
        Ok(c)
    }

    pub fn set_timeout(&self, t: Duration) {
        let _ = self.stream.set_read_timeout(Some(t));
        let _ = self.stream.set_write_timeout(Some(t));
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command as a RESP array of bulk strings.
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        self.send(&encode_cmd(args))
    }

    /// Reads one reply: the parsed frame and its exact bytes.
    pub fn read_reply(&mut self) -> io::Result<(Frame, Vec<u8>)> {
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    let raw: Vec<u8> = self.buf.drain(..used).collect();
                    return Ok((frame, raw));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unparsable reply ({e}): {}", show_bytes(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed (unconsumed: {})", show_bytes(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and reads its reply, returning an IO error (reset, EOF, timeout) instead
    /// of panicking.
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Frame> {
        self.send_cmd(args)?;
        Ok(self.read_reply()?.0)
    }

    /// Sends a command and returns its reply; panics on IO errors.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{} on port {}: {e}", show_args(args), self.port))
    }

    /// Sends a command and returns its reply's raw bytes; panics on IO errors.
    pub fn cmd_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_cmd(args)
            .unwrap_or_else(|e| panic!("send {}: {e}", show_args(args)));
        self.read_reply()
            .unwrap_or_else(|e| panic!("{} on port {}: {e}", show_args(args), self.port))
            .1
    }

    /// Sends a command and asserts the reply is `+OK`.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let r = self.cmd(args);
        assert_eq!(r, Frame::ok(), "{} should reply OK", show_args(args));
    }

    /// Reads everything until the peer closes or `timeout` passes without data. Returns the
    /// bytes and whether the connection was closed by the peer (EOF or reset).
    pub fn read_until_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (out, false)
                }
                Err(_) => return (out, true),
            }
        }
    }

    /// Closes our sending side (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The RESP2 bulk string encoding of `b`.
pub fn encode_bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

pub fn show_args<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.iter()
        .map(|a| show_bytes(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes as a quoted, escaped string (`"+OK\r\n"`), at most 2000 characters.
pub fn show_bytes(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b.iter().take(2000) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    if b.len() > 2000 {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Replies

/// A RESP2 or RESP3 reply. Doubles and big numbers keep their text so that frames compare and
/// sort exactly.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// `$-1` or `_`.
    Null,
    /// `*-1`.
    NullArray,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Double(String),
    Boolean(bool),
    Verbatim(String, Vec<u8>),
    BigNumber(String),
    Push(Vec<Frame>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn bulk(b: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(b.as_ref().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// The error text (after the `-`), if this is an error.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }

    pub fn as_bulk(&self) -> Option<&[u8]> {
        match self {
            Frame::Bulk(b) => Some(b),
            Frame::Verbatim(_, b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Frame::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Simple(s) => write!(f, "+{s}"),
            Frame::Error(s) => write!(f, "-{s}"),
            Frame::Integer(i) => write!(f, "(integer) {i}"),
            Frame::Bulk(b) => write!(f, "{}", show_bytes(b)),
            Frame::Null => write!(f, "(nil)"),
            Frame::NullArray => write!(f, "(nil array)"),
            Frame::Double(d) => write!(f, "(double) {d}"),
            Frame::Boolean(b) => write!(f, "(bool) {b}"),
            Frame::BigNumber(n) => write!(f, "(big) {n}"),
            Frame::Verbatim(k, b) => write!(f, "(verbatim {k}) {}", show_bytes(b)),
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            Frame::Map(v) => {
                write!(f, "{{")?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {x}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` when incomplete, else the frame and the
/// number of bytes it took. Attributes (`|`) are skipped.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let mut pos = 0;
    match frame_at(buf, &mut pos, 0) {
        Ok(f) => Ok(Some((f, pos))),
        Err(None) => Ok(None),
        Err(Some(e)) => Err(e),
    }
}

/// `Err(None)`: incomplete; `Err(Some(msg))`: invalid.
type P<T> = Result<T, Option<String>>;

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> P<&'a [u8]> {
    let rest = &buf[*pos..];
    let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
        return Err(None);
    };
    *pos += i + 2;
    Ok(&rest[..i])
}

fn int_line(buf: &[u8], pos: &mut usize) -> P<i64> {
    let l = line(buf, pos)?;
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Some(format!("bad integer line {}", show_bytes(l))))
}

fn blob<'a>(buf: &'a [u8], pos: &mut usize) -> P<Option<&'a [u8]>> {
    let n = int_line(buf, pos)?;
    if n == -1 {
        return Ok(None);
    }
    if n < 0 {
        return Err(Some(format!("bad length {n}")));
    }
    let n = n as usize;
    if buf.len() < *pos + n + 2 {
        return Err(None);
    }
    let data = &buf[*pos..*pos + n];
    if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
        return Err(Some("blob not followed by CRLF".into()));
    }
    *pos += n + 2;
    Ok(Some(data))
}

fn frame_at(buf: &[u8], pos: &mut usize, depth: usize) -> P<Frame> {
    if depth > 64 {
        return Err(Some("nested too deep".into()));
    }
    let Some(&t) = buf.get(*pos) else {
        return Err(None);
    };
    *pos += 1;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(match t {
        b'+' => Frame::Simple(text(line(buf, pos)?)),
        b'-' => Frame::Error(text(line(buf, pos)?)),
        b':' => Frame::Integer(int_line(buf, pos)?),
        b'$' => match blob(buf, pos)? {
            Some(d) => Frame::Bulk(d.to_vec()),
            None => Frame::Null,
        },
        b'!' => Frame::Error(text(
            blob(buf, pos)?.ok_or_else(|| Some("null blob error".to_string()))?,
        )),
        b'=' => {
            let d = blob(buf, pos)?.ok_or_else(|| Some("null verbatim".to_string()))?;
            if d.len() < 4 || d[3] != b':' {
                return Err(Some("bad verbatim string".into()));
            }
            Frame::Verbatim(text(&d[..3]), d[4..].to_vec())
        }
        b'_' => {
            let l = line(buf, pos)?;
            if !l.is_empty() {
                return Err(Some("bad null".into()));
            }
            Frame::Null
        }
        b'#' => match line(buf, pos)? {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            l => return Err(Some(format!("bad boolean {}", show_bytes(l)))),
        },
        b',' => Frame::Double(text(line(buf, pos)?)),
        b'(' => Frame::BigNumber(text(line(buf, pos)?)),
        b'*' | b'~' | b'>' => {
            let n = int_line(buf, pos)?;
            if n == -1 && t == b'*' {
                return Ok(Frame::NullArray);
            }
            if n < 0 {
                return Err(Some(format!("bad aggregate length {n}")));
            }
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(frame_at(buf, pos, depth + 1)?);
            }
            match t {
                b'*' => Frame::Array(v),
                b'~' => Frame::Set(v),
                _ => Frame::Push(v),
            }
        }
        b'%' | b'|' => {
            let n = int_line(buf, pos)?;
            if n < 0 {
                return Err(Some(format!("bad map length {n}")));
            }
            let mut v = Vec::new();
            for _ in 0..n {
                let k = frame_at(buf, pos, depth + 1)?;
                let x = frame_at(buf, pos, depth + 1)?;
                v.push((k, x));
            }
            if t == b'|' {
                // An attribute annotates the reply that follows.
                return frame_at(buf, pos, depth);
            }
            Frame::Map(v)
        }
        other => {
            return Err(Some(format!(
                "unexpected type byte {}",
                show_bytes(&[other])
            )))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Files

/// Flips (XORs with 0xff) the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for flip");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// Overwrites `len` bytes of `path` at `offset` with zeros.
pub fn zero_bytes(path: &Path, offset: u64, len: usize) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for zeroing");
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&vec![0u8; len]).unwrap();
    f.sync_all().unwrap();
}

/// Files in `dir` whose name ends with `.{ext}`, sorted by name.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|x| x.to_str()) == Some(ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Seed from `var` if set (decimal), else a random one.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={s} is not a u64")),
        Err(_) => rand::random(),
    }
}
