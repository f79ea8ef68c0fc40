//! The `tandem` binary: `tandem server`, `tandem check`, `tandem up`, `tandem cluster`.

use std::process::ExitCode;

/// mimalloc: many small long-lived allocations (one per key) fragment glibc's malloc, and its
/// per-call cost shows on the request path. (Redis uses jemalloc for the same reasons; mimalloc
/// builds with a C compiler alone, no `make`.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use tandem::config::{ServerArgs, ServerConfig};
use tandem::consensus::{ConsensusConfig, Node};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A replicated, checksummed key-value database that speaks RESP"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one Tandem node.
    Server(Box<ServerArgs>),
    /// Verify every log record, snapshot block and value digest in DATA_DIR, offline (the node
    /// must be stopped). Exits non-zero on any fault, naming where.
    Check {
        /// The data directory of a stopped node.
        data_dir: std::path::PathBuf,
    },
    /// Start a local cluster for trying Tandem: several `tandem server` processes on 127.0.0.1,
    /// data in one folder, connection lines printed, everything stopped on Ctrl-C.
    Up(tandem::up::UpArgs),
    /// Look at or change a running cluster: status, add-replica, promote, demote, remove.
    Cluster(tandem::cluster_cli::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Server(args) => {
            let config = match ServerConfig::resolve(*args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tandem: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config.log_level);
            // One thread: everything runs on the thread that accepts connections, so no request
            // pays for a wake-up across threads (the log writer has its own thread either way).
            let rt = if config.worker_threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(config.worker_threads)
                    .enable_all()
                    .build()
            };
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tandem: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("tandem: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check { data_dir } => {
            init_logging("warn");
            let report = tandem::check::check(&data_dir);
            print!("{}", report.render());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Up(args) => {
            init_logging("warn");
            tandem::up::run(args)
        }
        Cmd::Cluster(args) => {
            init_logging("warn");
            tandem::cluster_cli::run(args)
        }
    }
}

async fn serve(config: ServerConfig) -> std::io::Result<()> {
    let consensus = ConsensusConfig {
        data_dir: config.data_dir.clone(),
        node_id: config.node_id,
        client_addr: format!("{}:{}", config.advertise_host, config.port),
        cluster_addr: format!("{}:{}", config.advertise_host, config.cluster_port),
        fsync: config.appendfsync,
        log_segment_bytes: config.log_segment_bytes,
        snapshot_entries: config.snapshot_entries,
        write_timeout: config.write_timeout,
        force_truncate_log: config.force_truncate_log,
        log_cache_bytes: config.log_cache_bytes,
        combiner: tandem::consensus::combiner::CombinerLimits {
            ops_max: config.entry_ops_max,
            bytes_max: config.pipeline_batch_bytes_max,
            in_flight_max: config.proposals_in_flight_max,
        },
        cluster_secret: config.cluster_secret.clone(),
        initial_cluster: config.initial_cluster.clone(),
        join: config.join.clone(),
        heartbeat_interval_ms: config.heartbeat_interval_ms,
        election_timeout_min_ms: config.election_timeout_ms,
        // openraft's leader lease is this maximum, and a follower's election timer runs after
        // it: a narrower range elects sooner after a crash (measured in bench-failover.sh) while
        // a 0.5x spread still keeps two followers' timers apart.
        election_timeout_max_ms: config.election_timeout_ms * 3 / 2,
        rpc_timeout: config.rpc_timeout,
        snapshot_bytes_per_sec_max: config.replica_sync_bytes_per_sec_max,
        snapshot_chunk_bytes: config.snapshot_chunk_bytes,
        retention: tandem::consensus::Retention {
            entries: config.log_retention_entries,
            bytes: config.log_retention_bytes,
            age: config.log_retention,
        },
        cluster_bind: std::net::SocketAddr::new(config.bind, config.cluster_port),
        rebuild: config.rebuild,
        repair: tandem::consensus::damage::RepairConfig {
            peer_timeout: config.repair_timeout,
        },
    };
    let node = Node::start(consensus).await?;
    tandem::server::run(config, node).await
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
