//! `tandem up`: a local cluster for trying Tandem. It starts `--voters` voting nodes and
//! `--replicas` read replicas as child processes (`tandem server`) on 127.0.0.1, waits until
//! they have formed a cluster, prints how to connect to each, and stops them all on Ctrl-C or
//! SIGTERM.
//!
//! Layout: node i (1-based) has client port `BASE+i-1`, HTTP port `BASE+i-1+1000`, cluster port
//! `BASE+i-1+10000`, data in `DIR/node-i` and its output in `DIR/node-i.log`. The cluster secret
//! is kept in `DIR/cluster-secret`, so running `tandem up` again on the same folder restarts the
//! same cluster.
//!
//! The plan (ports, flags) and the "has it formed" decision are pure functions, tested without
//! starting processes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cluster_cli::{self, CliError, Info};

/// Most nodes `tandem up` starts: keeps the client, HTTP (+1000) and cluster (+10000) port
/// ranges apart, and a laptop responsive.
pub const NODES_MAX: usize = 100;
/// Time the nodes have to elect a primary and bring every replica online.
pub const FORM_DEADLINE: Duration = Duration::from_secs(30);
/// Time the nodes have to stop after SIGTERM before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the cluster's state is polled while it forms.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Lines of a node's log shown when it exits unexpectedly.
const LOG_TAIL_LINES: usize = 20;
/// Bytes read from the end of a log to find those lines.
const LOG_TAIL_BYTES: u64 = 64 << 10;
/// Offsets of the HTTP and cluster ports from the client port.
const HTTP_PORT_OFFSET: u32 = 1000;
const CLUSTER_PORT_OFFSET: u32 = 10000;
/// Opens the line written to a node's log before each start, so the tail shown when it dies
/// holds only the current run.
const START_MARKER: &str = "=== tandem up: starting";
/// Length of a generated cluster secret (alphanumeric: ~190 bits).
const SECRET_LEN: usize = 32;
/// The server reads its cluster secret from here as well as from `--cluster-secret`; the
/// environment keeps it out of the process list.
const SECRET_ENV: &str = "TANDEM_CLUSTER_SECRET";

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Voting nodes (they elect the primary and acknowledge writes).
    #[arg(long, default_value_t = 3)]
    pub voters: usize,
    /// Read replicas (asynchronous, non-voting).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Client port of node 1; node i gets BASE+i-1, its HTTP port that +1000 and its cluster port
    /// that +10000.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Folder for every node's data (DIR/node-i) and output (DIR/node-i.log).
    #[arg(long, default_value = "./tandem-up")]
    pub dir: PathBuf,
    /// Secret the nodes share (at least 8 characters). Default: the one in DIR/cluster-secret,
    /// generated there on first use.
    #[arg(long, env = "TANDEM_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
}

/// Starts the cluster and runs until Ctrl-C or SIGTERM (exit 0), or until a node exits or the
/// cluster does not form (non-zero).
pub fn run(args: UpArgs) -> ExitCode {
    // One thread: the children are spawned from the main thread, which lives as long as the
    // process, so their parent-death signal (see `spawn`) fires only when this process ends.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem up: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(up(args))
}

// ---------------------------------------------------------------------------------------------
// The plan

#[derive(Clone, Debug, PartialEq, Eq)]
struct NodePlan {
    id: u64,
    voter: bool,
    client_port: u16,
    http_port: u16,
    cluster_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
}

/// Every node's ports and paths, or why the arguments do not work.
fn plan(args: &UpArgs) -> Result<Vec<NodePlan>, String> {
    if args.voters == 0 {
        return Err("--voters must be at least 1".into());
    }
    let total = args.voters + args.replicas;
    if total > NODES_MAX {
        return Err(format!(
            "at most {NODES_MAX} nodes, got {} voters and {} replicas",
            args.voters, args.replicas
        ));
    }
    let last_cluster_port = u32::from(args.base_port) + total as u32 - 1 + CLUSTER_PORT_OFFSET;
    if args.base_port == 0 || last_cluster_port > u32::from(u16::MAX) {
        return Err(format!(
            "--base-port {} does not fit: node {total}'s cluster port would be {last_cluster_port}; \
             choose a base port between 1 and {}",
            args.base_port,
            u32::from(u16::MAX) + 1 - total as u32 - CLUSTER_PORT_OFFSET
        ));
    }
    Ok((1..=total)
        .map(|i| {
            let client = u32::from(args.base_port) + i as u32 - 1;
            NodePlan {
                id: i as u64,
                voter: i <= args.voters,
                client_port: client as u16,
                http_port: (client + HTTP_PORT_OFFSET) as u16,
                cluster_port: (client + CLUSTER_PORT_OFFSET) as u16,
                data_dir: args.dir.join(format!("node-{i}")),
                log_path: args.dir.join(format!("node-{i}.log")),
            }
        })
        .collect())
}

/// The flags of `tandem server` for `node`. The cluster secret goes in the environment.
fn server_args(node: &NodePlan, all: &[NodePlan]) -> Vec<String> {
    let mut args = vec![
        "--node-id".to_string(),
        node.id.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        node.client_port.to_string(),
        "--cluster-port".into(),
        node.cluster_port.to_string(),
        "--http-port".into(),
        node.http_port.to_string(),
        "--data-dir".into(),
        node.data_dir.display().to_string(),
    ];
    if node.voter {
        let initial_cluster = all
            .iter()
            .filter(|n| n.voter)
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        args.extend(["--initial-cluster".to_string(), initial_cluster]);
    } else {
        let first = &all[0];
        args.extend([
            "--join".to_string(),
            format!("127.0.0.1:{}", first.client_port),
        ]);
    }
    args
}

/// The secret: `given`, else the one kept in `dir`, else a new one written there (owner-only).
fn cluster_secret(dir: &Path, given: Option<String>) -> Result<String, String> {
    if let Some(secret) = given {
        if secret.len() < 8 {
            return Err("--cluster-secret must be at least 8 characters".into());
        }
        return Ok(secret);
    }
    let path = dir.join("cluster-secret");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim().to_string();
            if secret.len() < 8 {
                return Err(format!(
                    "{} holds fewer than 8 characters; delete it to have a new secret generated",
                    path.display()
                ));
            }
            return Ok(secret);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    use rand::distributions::{Alphanumeric, DistString};
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), SECRET_LEN);
    let write = || -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(secret.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

/// Refuses to start when a port is taken (by another `tandem up`, most likely), so the user
/// sees which port rather than a node dying at start-up.
fn check_ports_free(nodes: &[NodePlan]) -> Result<(), String> {
    for node in nodes {
        for (what, port) in [
            ("client", node.client_port),
            ("HTTP", node.http_port),
            ("cluster", node.cluster_port),
        ] {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(format!(
                    "port {port} (node {}'s {what} port) is not free: {e}; is another \
                     `tandem up` running? Stop it or choose another --base-port",
                    node.id
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Forming

#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    /// Not formed yet; what is being waited for.
    Waiting(String),
    Formed {
        primary_id: u64,
        cluster_id: String,
    },
}

/// Whether the cluster has formed, from the primary's `INFO replication`: every node of the
/// plan is a member and online (acknowledging the primary).
fn progress(primary: &Info, nodes: &[NodePlan]) -> Progress {
    let primary_id = match primary.value("tandem_primary_id").map(str::parse::<u64>) {
        Some(Ok(id)) => id,
        _ => return Progress::Waiting("waiting for a primary".into()),
    };
    let members = match primary.members() {
        Ok(m) => m,
        Err(e) => return Progress::Waiting(format!("cannot read the member list: {e}")),
    };
    let waiting: Vec<String> = nodes
        .iter()
        .filter(|n| {
            !members
                .iter()
                .any(|m| m.id == n.id && (m.id == primary_id || m.state == "online"))
        })
        .map(|n| n.id.to_string())
        .collect();
    if waiting.is_empty() {
        Progress::Formed {
            primary_id,
            cluster_id: primary.value("master_replid").unwrap_or("").to_string(),
        }
    } else {
        Progress::Waiting(format!(
            "primary is node {primary_id}; waiting for node {} to come online",
            waiting.join(", ")
        ))
    }
}

/// Polls node 1 (and the primary it names) until the cluster has formed, printing each change
/// of progress; the last progress when [`FORM_DEADLINE`] passes.
async fn wait_formed(nodes: &[NodePlan]) -> Result<(u64, String), String> {
    let node1 = format!("127.0.0.1:{}", nodes[0].client_port);
    let deadline = tokio::time::Instant::now() + FORM_DEADLINE;
    let mut last = String::new();
    loop {
        let now = match cluster_cli::find_primary(&node1, None).await {
            Ok((_, info)) => progress(&info, nodes),
            Err(CliError::Connect { .. } | CliError::ConnectTimeout { .. }) => {
                Progress::Waiting("waiting for node 1 to accept connections".into())
            }
            Err(CliError::Cluster(_)) => Progress::Waiting("waiting for a primary".into()),
            Err(e) => Progress::Waiting(format!("waiting for a primary ({e})")),
        };
        match now {
            Progress::Formed {
                primary_id,
                cluster_id,
            } => return Ok((primary_id, cluster_id)),
            Progress::Waiting(why) => {
                if why != last {
                    println!("  {why}");
                    last = why;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What to print once the cluster has formed: one line per node, the primary first.
fn summary(nodes: &[NodePlan], primary_id: u64, cluster_id: &str, dir: &Path) -> String {
    let mut order: Vec<&NodePlan> = nodes.iter().collect();
    order.sort_by_key(|n| (n.id != primary_id, n.id));
    let voters = nodes.iter().filter(|n| n.voter).count();
    let replicas = nodes.len() - voters;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = format!(
        "Tandem is up: {} and {}, cluster {cluster_id}\n\n",
        plural(voters, "voter", "voters"),
        plural(replicas, "read replica", "read replicas"),
    );
    for n in order {
        let role = if n.id == primary_id {
            "primary"
        } else {
            "replica"
        };
        let note = if n.voter { "" } else { "   (read replica)" };
        out.push_str(&format!(
            "  {role:<9} node {:<2} redis-cli -p {}{note}\n",
            n.id, n.client_port
        ));
    }
    let dir = dir.display();
    let first = &nodes[0];
    out.push_str(&format!(
        "\n  data     {dir}/node-<N>\n  logs     {dir}/node-<N>.log\n  \
         metrics  http://127.0.0.1:{}/metrics (node N: port {}+N-1)\n  \
         status   tandem cluster status --node 127.0.0.1:{}\n\n\
         Ctrl-C stops every node.\n",
        first.http_port, first.http_port, first.client_port
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// The processes

struct Running {
    node: NodePlan,
    child: Child,
}

/// Why waiting stopped early.
enum Interrupt {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Child `index` exited.
    Exited(usize, io::Result<ExitStatus>),
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

async fn up(args: UpArgs) -> ExitCode {
    let nodes = match plan(&args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tandem up: {e}");
            return ExitCode::from(2);
        }
    };
    let prepared = fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))
        .and_then(|_| cluster_secret(&args.dir, args.cluster_secret.clone()))
        .and_then(|secret| check_ports_free(&nodes).map(|_| secret))
        .and_then(|secret| {
            std::env::current_exe()
                .map(|exe| (exe, secret))
                .map_err(|e| format!("cannot find this executable to start the nodes: {e}"))
        });
    let (exe, secret) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tandem up: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem up: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut running: Vec<Running> = Vec::with_capacity(nodes.len());
    for node in &nodes {
        match spawn(&exe, node, &server_args(node, &nodes), &secret) {
            Ok(child) => running.push(Running {
                node: node.clone(),
                child,
            }),
            Err(e) => {
                eprintln!("tandem up: cannot start node {}: {e}", node.id);
                stop(&mut running, &mut signals).await;
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "Started {} nodes (logs in {}/node-<N>.log); waiting for them to form a cluster",
        nodes.len(),
        args.dir.display()
    );

    let code = match until(&mut running, &mut signals, wait_formed(&nodes)).await {
        Ok(Ok((primary_id, cluster_id))) => {
            print!("\n{}", summary(&nodes, primary_id, &cluster_id, &args.dir));
            let _ = io::stdout().flush();
            match until(&mut running, &mut signals, std::future::pending::<()>()).await {
                Ok(()) => unreachable!("pending never completes"),
                Err(Interrupt::Signal) => ExitCode::SUCCESS,
                Err(Interrupt::Exited(i, status)) => {
                    report_exit(&running[i].node, status);
                    ExitCode::FAILURE
                }
            }
        }
        Ok(Err(last)) => {
            eprintln!(
                "tandem up: the cluster did not form within {} s ({last}); see the logs in {}",
                FORM_DEADLINE.as_secs(),
                args.dir.display()
            );
            ExitCode::FAILURE
        }
        Err(Interrupt::Signal) => ExitCode::SUCCESS,
        Err(Interrupt::Exited(i, status)) => {
            report_exit(&running[i].node, status);
            ExitCode::FAILURE
        }
    };
    stop(&mut running, &mut signals).await;
    code
}

/// Runs `work` until it finishes, a signal arrives or a child exits.
async fn until<T>(
    running: &mut [Running],
    signals: &mut Signals,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Interrupt> {
    let exits = futures::future::select_all(running.iter_mut().map(|r| Box::pin(r.child.wait())));
    tokio::select! {
        out = work => Ok(out),
        _ = signals.recv() => Err(Interrupt::Signal),
        (status, index, _) = exits => Err(Interrupt::Exited(index, status)),
    }
}

/// Starts `tandem server` for `node`, its output appended to its log file.
fn spawn(exe: &Path, node: &NodePlan, args: &[String], secret: &str) -> io::Result<Child> {
    fs::create_dir_all(&node.data_dir)?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log_path)?;
    writeln!(log, "{START_MARKER} node {} ===", node.id)?;
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .args(args)
        .env(SECRET_ENV, secret)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        // Own process group: Ctrl-C in the terminal reaches only `tandem up`, which then stops
        // the nodes in order (SIGTERM, grace period, SIGKILL).
        .process_group(0);
    exit_with_parent(&mut cmd);
    cmd.spawn()
}

/// Makes the child get SIGTERM when `tandem up` dies, even by SIGKILL, rather than being left
/// running and holding the ports. (Linux only: elsewhere a killed `tandem up` leaves its nodes.)
#[cfg(target_os = "linux")]
fn exit_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl(2),
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn exit_with_parent(_cmd: &mut Command) {}

/// SIGTERM to every node still running, up to [`STOP_GRACE`] for them to exit, then SIGKILL.
/// A second Ctrl-C skips the wait.
async fn stop(running: &mut [Running], signals: &mut Signals) {
    let mut signalled = 0;
    for r in running.iter_mut() {
        if let (Ok(None), Some(pid)) = (r.child.try_wait(), r.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions. `pid` is our unreaped child
            // (`id()` is None once it has been reaped), so it cannot name another process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            signalled += 1;
        }
    }
    if signalled == 0 {
        return;
    }
    println!(
        "Stopping {signalled} node(s) (up to {} s; Ctrl-C again to kill them now)",
        STOP_GRACE.as_secs()
    );
    let all_exited = async {
        for r in running.iter_mut() {
            let _ = r.child.wait().await;
        }
    };
    let graceful = tokio::select! {
        r = tokio::time::timeout(STOP_GRACE, all_exited) => r.is_ok(),
        _ = signals.recv() => false,
    };
    if !graceful {
        for r in running.iter_mut() {
            if let Ok(None) = r.child.try_wait() {
                eprintln!("tandem up: killing node {}", r.node.id);
                let _ = r.child.start_kill();
                let _ = r.child.wait().await;
            }
        }
    }
    println!("Stopped.");
}

/// Says that `node` exited and shows the end of its log.
fn report_exit(node: &NodePlan, status: io::Result<ExitStatus>) {
    let how = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    };
    eprintln!(
        "tandem up: node {} exited unexpectedly ({how}); last lines of {}:",
        node.id,
        node.log_path.display()
    );
    match tail(&node.log_path) {
        Ok(text) => {
            for line in last_lines(&text, LOG_TAIL_LINES) {
                eprintln!("  | {line}");
            }
        }
        Err(e) => eprintln!("  (cannot read it: {e})"),
    }
}

/// The last [`LOG_TAIL_BYTES`] of a file, as text.
fn tail(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last `n` lines of `text`, from the last start marker on.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with(START_MARKER))
        .unwrap_or(0);
    let lines = &lines[start..];
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(voters: usize, replicas: usize, base_port: u16) -> UpArgs {
        UpArgs {
            voters,
            replicas,
            base_port,
            dir: PathBuf::from("up"),
            cluster_secret: None,
        }
    }

    #[test]
    fn each_node_gets_three_ports_a_data_dir_and_a_log() {
        let nodes = plan(&args(3, 1, 7001)).unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            nodes[3],
            NodePlan {
                id: 4,
                voter: false,
                client_port: 7004,
                http_port: 8004,
                cluster_port: 17004,
                data_dir: PathBuf::from("up/node-4"),
                log_path: PathBuf::from("up/node-4.log"),
            }
        );
        assert!(nodes[..3].iter().all(|n| n.voter));
    }

    #[test]
    fn voters_form_the_initial_cluster_and_replicas_join_node_one() {
        let nodes = plan(&args(3, 1, 7001)).unwrap();
        let voter = server_args(&nodes[1], &nodes).join(" ");
        assert_eq!(
            voter,
            "--node-id 2 --bind 127.0.0.1 --port 7002 --cluster-port 17002 --http-port 8002 \
             --data-dir up/node-2 \
             --initial-cluster 1=127.0.0.1:17001,2=127.0.0.1:17002,3=127.0.0.1:17003"
        );
        let replica = server_args(&nodes[3], &nodes).join(" ");
        assert_eq!(
            replica,
            "--node-id 4 --bind 127.0.0.1 --port 7004 --cluster-port 17004 --http-port 8004 \
             --data-dir up/node-4 --join 127.0.0.1:7001"
        );
    }

    #[test]
    fn impossible_layouts_are_refused() {
        assert!(plan(&args(0, 1, 7001)).is_err());
        assert!(plan(&args(NODES_MAX, 1, 7001)).is_err());
        assert!(plan(&args(3, 0, 0)).is_err());
        // Node 3's cluster port would be 65536.
        let e = plan(&args(3, 0, 55534)).unwrap_err();
        assert!(e.contains("65536"), "{e}");
        assert!(plan(&args(3, 0, 55533)).is_ok());
    }

    #[test]
    fn the_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = cluster_secret(dir.path(), None).unwrap();
        assert_eq!(first.len(), SECRET_LEN);
        assert_eq!(cluster_secret(dir.path(), None).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("cluster-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            cluster_secret(dir.path(), Some("given-secret".into())).unwrap(),
            "given-secret"
        );
        assert!(cluster_secret(dir.path(), Some("short".into())).is_err());
        fs::write(dir.path().join("cluster-secret"), "tiny\n").unwrap();
        assert!(cluster_secret(dir.path(), None).is_err());
    }

    fn member(id: u64, kind: &str, state: &str) -> String {
        format!(
            "tandem_member{id}:id={id},kind={kind},client=127.0.0.1:{},cluster=,matched=,\
             lag_entries=,lag_ms=,last_ack_ms=,state={state}\n",
            7000 + id
        )
    }

    #[test]
    fn the_cluster_has_formed_when_every_node_is_online() {
        let nodes = plan(&args(3, 1, 7001)).unwrap();
        let head = "role:master\ntandem_primary_id:2\nmaster_replid:c0ffee\n";
        let no_primary = Info::parse("role:slave\ntandem_primary_id:\n");
        assert_eq!(
            progress(&no_primary, &nodes),
            Progress::Waiting("waiting for a primary".into())
        );
        let partial = Info::parse(&format!(
            "{head}{}{}{}",
            member(1, "voter", "online"),
            member(2, "primary", "wait_bgsave"),
            member(3, "voter", "down"),
        ));
        assert_eq!(
            progress(&partial, &nodes),
            Progress::Waiting("primary is node 2; waiting for node 3, 4 to come online".into())
        );
        let formed = Info::parse(&format!(
            "{head}{}{}{}{}",
            member(1, "voter", "online"),
            member(2, "primary", "online"),
            member(3, "voter", "online"),
            member(4, "read-replica", "online"),
        ));
        assert_eq!(
            progress(&formed, &nodes),
            Progress::Formed {
                primary_id: 2,
                cluster_id: "c0ffee".into()
            }
        );
    }

    #[test]
    fn the_summary_lists_the_primary_first_and_marks_read_replicas() {
        let nodes = plan(&args(3, 1, 7001)).unwrap();
        let text = summary(&nodes, 2, "c0ffee", Path::new("./tandem-up"));
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("redis-cli")).collect();
        assert_eq!(
            lines,
            [
                "  primary   node 2  redis-cli -p 7002",
                "  replica   node 1  redis-cli -p 7001",
                "  replica   node 3  redis-cli -p 7003",
                "  replica   node 4  redis-cli -p 7004   (read replica)",
            ]
        );
        assert!(text.contains("./tandem-up/node-<N>.log"), "{text}");
        assert!(
            text.starts_with("Tandem is up: 3 voters and 1 read replica, cluster c0ffee\n"),
            "{text}"
        );
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a\n", 5), ["a"]);
        assert!(last_lines("", 5).is_empty());
        let two_runs = format!("{START_MARKER} node 1 ===\nold\n{START_MARKER} node 1 ===\nnew\n");
        assert_eq!(
            last_lines(&two_runs, 5),
            [format!("{START_MARKER} node 1 ==="), "new".to_string()]
        );
    }
}
