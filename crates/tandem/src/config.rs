//! Server configuration: command-line flags, an optional TOML file (`--config`), defaults.
//!
//! Every setting is a flag and a key of the same name (dashes become underscores in TOML). A flag
//! given on the command line overrides the file; the file overrides the default.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tandem_checksum::Algorithm;
use tandem_log::FsyncPolicy;

/// The largest client payload of one log entry: the log's record limit less room for the entry's
/// own framing (log id, operation tags, checksums, lengths).
pub const PROPOSAL_BYTES_LIMIT: usize = tandem_log::config::PAYLOAD_BYTES_MAX - (64 << 10);

/// Flags of `tandem server`. Every field is optional so that "not given" can fall back to the
/// config file and then to the default.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerArgs {
    /// TOML file with any of these settings (keys as the flag names, e.g. `port = 6380`). Flags
    /// given on the command line win over the file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Port for Redis clients (RESP). [default: 6379]
    #[arg(long)]
    pub port: Option<u16>,

    /// Address to listen on. [default: 127.0.0.1]
    #[arg(long)]
    pub bind: Option<IpAddr>,

    /// Directory holding the log, snapshots and the identity file. [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// This node's id in its cluster; must match the data dir's identity file. [default: 1]
    #[arg(long)]
    pub node_id: Option<u64>,

    /// Port for traffic between nodes (reserved for replication). [default: port + 10000]
    #[arg(long)]
    pub cluster_port: Option<u16>,

    /// Checksum algorithm for values written from now on: sha256, md5, sha1, sha512, blake3,
    /// xxh3-64, crc32c. Stored values keep their own algorithm. [default: sha256]
    #[arg(long, value_name = "ALGORITHM")]
    pub checksum_algorithm: Option<String>,

    /// When the log is fsynced: `always` (a write is acknowledged only once fsynced), `everysec`,
    /// `no` (left to the OS). [default: always]
    #[arg(long, value_name = "POLICY")]
    pub appendfsync: Option<String>,

    /// Enable DEBUG commands that damage data on purpose (for tests). [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enable_debug_commands: Option<bool>,

    /// Password clients must send with AUTH (or HELLO ... AUTH). [default: none]
    #[arg(long)]
    pub requirepass: Option<String>,

    /// Maximum number of connected clients. [default: 10000]
    #[arg(long)]
    pub maxclients: Option<usize>,

    /// Largest bulk string a client may send, in bytes (Redis's proto-max-bulk-len).
    /// [default: 536870912]
    #[arg(long)]
    pub proto_max_bulk_len: Option<usize>,

    /// Most arguments in one request. [default: 1048576]
    #[arg(long)]
    pub proto_max_array_len: Option<usize>,

    /// Longest inline (non-RESP) request, in bytes. [default: 65536]
    #[arg(long)]
    pub proto_max_inline_len: Option<usize>,

    /// Most bytes buffered from one client before its requests are processed (Redis's
    /// client-query-buffer-limit). [default: 1073741824]
    #[arg(long)]
    pub client_query_buffer_limit: Option<usize>,

    /// Most write commands from one pipeline proposed together as one log entry. [default: 1024]
    #[arg(long)]
    pub pipeline_batch_max: Option<usize>,

    /// Most bytes of arguments from one pipeline proposed together as one log entry.
    /// [default: 67108864]
    #[arg(long)]
    pub pipeline_batch_bytes_max: Option<usize>,

    /// Largest request or MULTI transaction, in bytes of arguments: each is one log entry.
    /// [default: 537853952 (513 MiB less 64 KiB for the entry's framing), also the maximum]
    #[arg(long)]
    pub proposal_bytes_max: Option<usize>,

    /// Log entries proposed and not yet applied at once. Client writes that arrive meanwhile are
    /// combined into the next entry. [default: 8 with --initial-cluster or --join, else 2]
    #[arg(long)]
    pub proposals_in_flight_max: Option<usize>,

    /// Most client operations combined into one log entry. [default: 4096]
    #[arg(long)]
    pub entry_ops_max: Option<usize>,

    /// Most commands queued in one MULTI. [default: 1000000]
    #[arg(long)]
    pub multi_queued_max: Option<usize>,

    /// Bytes of Pub/Sub messages queued for one subscriber and not yet sent; a subscriber that
    /// reads too slowly to stay under it is disconnected. [default: 33554432]
    #[arg(long)]
    pub pubsub_queue_bytes_max: Option<usize>,

    /// Channels plus patterns one connection may subscribe to. [default: 100000]
    #[arg(long)]
    pub pubsub_subscriptions_max: Option<usize>,

    /// A write not committed within this many milliseconds fails (its outcome is then unknown).
    /// [default: 10000]
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,

    /// Take a snapshot after this many log entries since the previous one. [default: 100000]
    #[arg(long)]
    pub snapshot_entries: Option<u64>,

    /// Size of each preallocated log segment, in bytes. [default: 67108864]
    #[arg(long)]
    pub log_segment_bytes: Option<u64>,

    /// At start-up, truncate the log at a damaged record instead of refusing to start (loses
    /// every entry from that record on). [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub force_truncate_log: Option<bool>,

    /// Start by rebuilding this node from its cluster's other members: its log and snapshots are
    /// moved into DATA_DIR/damaged-<time>/ and it re-syncs as a replica under its identity (a
    /// voter is demoted while it rebuilds and promoted back once caught up). For a node whose
    /// files are damaged; it needs its --initial-cluster or --join. [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub rebuild_from_peers: Option<bool>,

    /// What to do when the log or snapshots fail verification at start-up: `refuse` (exit,
    /// naming the damaged file and offset) or `rebuild` (as --rebuild-from-peers). [default: refuse]
    #[arg(long, value_name = "refuse|rebuild")]
    pub on_damage: Option<String>,

    /// Active expiry cycles per second (Redis's hz). [default: 10]
    #[arg(long)]
    pub hz: Option<u32>,

    /// Most keys deleted by one active expiry cycle. [default: 1000]
    #[arg(long)]
    pub active_expire_keys_max: Option<usize>,

    /// The primary compares every member's keyspace digest this often, and repairs keys that
    /// differ from its own (as `tandem cluster verify` does); 0 turns it off. [default: 60000]
    #[arg(long, value_name = "MS")]
    pub verify_interval_ms: Option<u64>,

    /// Threads serving clients and consensus. Like Redis's single event loop, few threads are
    /// fastest when clients share the machine; the log writer has its own thread.
    /// [default: half the CPUs, at least 1]
    #[arg(long)]
    pub worker_threads: Option<usize>,

    /// Bytes of recent log entries kept in memory for reads (older ones are read from disk).
    /// [default: 8388608]
    #[arg(long)]
    pub log_cache_bytes: Option<usize>,

    /// Log filter, e.g. `info`, `debug`, `tandem=debug`. [default: info]
    #[arg(long)]
    pub log_level: Option<String>,

    /// Shared secret every node of a cluster is started with; peers without it are refused.
    /// Required to talk to other nodes. [default: none: the node stays standalone]
    #[arg(long, env = "TANDEM_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// The voters a new cluster starts with: `ID=HOST:CLUSTER_PORT,...`, the same on every one
    /// of them. The lowest id initializes the cluster once all have started; restarting with the
    /// same flags is safe. [default: none]
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub initial_cluster: Option<String>,

    /// Join the cluster of the node at HOST:PORT (its client port) as a read replica, like
    /// `REPLICAOF HOST PORT`. Only for a node with an empty data dir. [default: none]
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,

    /// Host name or address other nodes and clients use to reach this node. [default: the
    /// --bind address]
    #[arg(long)]
    pub advertise_host: Option<String>,

    /// Port of the HTTP endpoint (`/metrics`, `/health`, `/ready`); 0 disables it. [default: 0]
    #[arg(long)]
    pub http_port: Option<u16>,

    /// A replica refuses reads (MASTERDOWN) when its data may be older than this, or when it has
    /// heard nothing from the primary for longer. [default: 5000]
    #[arg(long)]
    pub replica_max_lag_ms: Option<u64>,

    /// Snapshot bytes sent per second to one replica, at most. [default: 1073741824]
    #[arg(long)]
    pub replica_sync_bytes_per_sec_max: Option<u64>,

    /// The name under which every node answers the Sentinel discovery commands (`SENTINEL
    /// get-master-addr-by-name NAME`, ...) and announces `+switch-master`: give clients' Sentinel
    /// support this name. [default: mymaster]
    #[arg(long)]
    pub sentinel_master_name: Option<String>,

    /// Bytes of a snapshot sent in one chunk (each is checked by its frame's CRC32C).
    /// [default: 1048576, at most 16777216]
    #[arg(long)]
    pub snapshot_chunk_bytes: Option<usize>,

    /// Keep at least this many log entries behind the newest snapshot. [default: 100000]
    #[arg(long)]
    pub log_retention_entries: Option<u64>,

    /// Keep at least this many bytes of log entries behind the newest snapshot.
    /// [default: 67108864]
    #[arg(long)]
    pub log_retention_bytes: Option<u64>,

    /// Keep the log entries written in the last this many milliseconds. [default: 300000]
    #[arg(long)]
    pub log_retention_ms: Option<u64>,

    /// When a write is acknowledged: `majority` (fsynced on a majority of voters) or `all`
    /// (fsynced on every member, read replicas included). Per connection: CLIENT DURABILITY.
    /// [default: majority]
    #[arg(long)]
    pub durability: Option<String>,

    /// Interval between the primary's heartbeats to replicas. [default: 100]
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,

    /// A voter that hears no primary for a random time between this and 1.5 times this starts an
    /// election, once the primary's lease (1.5 times this) has run out: after the primary dies a
    /// new one is elected 2.5 to 3 times this later. [default: 400]
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,

    /// Deadline of one RPC between nodes. [default: 2000]
    #[arg(long)]
    pub rpc_timeout_ms: Option<u64>,

    /// Deadline of one member's answer when this node fetches a good copy of a value that failed
    /// its checksum (repair); members are asked one after another, the primary first.
    /// [default: 1000]
    #[arg(long, value_name = "MS")]
    pub repair_timeout_ms: Option<u64>,

    /// Keys per second the background scrubber verifies against their checksums (keys reported
    /// or suspected first); 0 turns the background pass off (suspected keys are still checked).
    /// [default: 10000]
    #[arg(long)]
    pub scrub_keys_per_sec: Option<u64>,

    /// Value bytes per second the scrubber verifies, at most; the lower of the two rates
    /// applies. [default: 33554432]
    #[arg(long)]
    pub scrub_bytes_per_sec: Option<u64>,

    /// BENCHMARKS ONLY: GET, MGET, STRLEN and GETRANGE return stored values without verifying
    /// their checksum, so scripts/bench-integrity.sh can measure what verification costs. A
    /// damaged value would reach clients: never use it otherwise. Hidden from --help.
    /// [default: false]
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub bench_unverified_reads: Option<bool>,

    /// BENCHMARKS ONLY: mutations do not keep the keyspace digest up to date, so
    /// scripts/bench-divergence.sh can measure what its upkeep costs. Divergence verification is
    /// then meaningless (and off): never use it otherwise. Hidden from --help. [default: false]
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub bench_no_keyspace_digest: Option<bool>,
}

/// When a write is acknowledged to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Fsynced on a majority of voters (openraft's commit).
    Majority,
    /// Also fsynced on every other member, read replicas included.
    All,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "majority" => Ok(Durability::Majority),
            "all" => Ok(Durability::All),
            _ => Err(format!("durability must be majority or all, got '{s}'")),
        }
    }
}

/// Parses `--initial-cluster`.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(u64, String)>, String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster: '{part}' is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0 && *id <= i64::MAX as u64)
            .ok_or_else(|| {
                format!(
                    "--initial-cluster: '{id}' is not a node id (1 to {})",
                    i64::MAX
                )
            })?;
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(format!("--initial-cluster: '{addr}' is not HOST:PORT")),
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("--initial-cluster lists node {id} twice"));
        }
        if out.iter().any(|(_, a)| a == addr) {
            return Err(format!("--initial-cluster lists address {addr} twice"));
        }
        out.push((id, addr.to_string()));
    }
    if out.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    if out.len() > INITIAL_CLUSTER_MAX {
        return Err(format!(
            "--initial-cluster lists {} nodes; at most {INITIAL_CLUSTER_MAX} voters",
            out.len()
        ));
    }
    Ok(out)
}

/// Most voters a cluster starts with (more voters make every write slower, not safer).
pub const INITIAL_CLUSTER_MAX: usize = 9;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub bind: IpAddr,
    pub data_dir: PathBuf,
    pub node_id: u64,
    pub cluster_port: u16,
    pub checksum_algorithm: Algorithm,
    pub appendfsync: FsyncPolicy,
    pub enable_debug_commands: bool,
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub proto_max_bulk_len: usize,
    pub proto_max_array_len: usize,
    pub proto_max_inline_len: usize,
    pub client_query_buffer_limit: usize,
    pub pipeline_batch_max: usize,
    pub pipeline_batch_bytes_max: usize,
    pub proposal_bytes_max: usize,
    pub multi_queued_max: usize,
    pub pubsub_queue_bytes_max: usize,
    pub pubsub_subscriptions_max: usize,
    pub proposals_in_flight_max: usize,
    pub entry_ops_max: usize,
    pub write_timeout: Duration,
    pub snapshot_entries: u64,
    pub log_segment_bytes: u64,
    pub force_truncate_log: bool,
    pub rebuild: crate::consensus::rebuild::RebuildMode,
    pub hz: u32,
    pub active_expire_keys_max: usize,
    /// Periodic divergence verification (None: off).
    pub verify_interval: Option<Duration>,
    pub worker_threads: usize,
    pub log_cache_bytes: usize,
    pub log_level: String,
    pub config_file: Option<PathBuf>,
    pub cluster_secret: Option<String>,
    pub initial_cluster: Vec<(u64, String)>,
    pub join: Option<String>,
    pub advertise_host: String,
    pub http_port: u16,
    pub replica_max_lag: Duration,
    pub replica_sync_bytes_per_sec_max: u64,
    pub sentinel_master_name: String,
    pub snapshot_chunk_bytes: usize,
    pub log_retention_entries: u64,
    pub log_retention_bytes: u64,
    pub log_retention: Duration,
    pub durability: Durability,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub rpc_timeout: Duration,
    pub repair_timeout: Duration,
    /// Scrubber rates; keys 0: no background pass.
    pub scrub_keys_per_sec: u64,
    pub scrub_bytes_per_sec: u64,
    /// Benchmarks only (see the flag).
    pub bench_unverified_reads: bool,
    pub bench_no_keyspace_digest: bool,
}

macro_rules! merge {
    ($flags:ident, $file:ident, $($field:ident),* $(,)?) => {
        $( if $flags.$field.is_none() { $flags.$field = $file.$field.take(); } )*
    };
}

fn rebuild_mode(
    now: Option<bool>,
    on_damage: Option<&str>,
) -> Result<crate::consensus::rebuild::RebuildMode, String> {
    use crate::consensus::rebuild::RebuildMode;
    if now == Some(true) {
        return Ok(RebuildMode::Now);
    }
    match on_damage.map(str::to_ascii_lowercase).as_deref() {
        None | Some("refuse") => Ok(RebuildMode::Never),
        Some("rebuild") => Ok(RebuildMode::OnDamage),
        Some(other) => Err(format!(
            "--on-damage must be `refuse` or `rebuild`, got `{other}`"
        )),
    }
}

/// Bounds of `--repair-timeout-ms`.
pub const REPAIR_TIMEOUT_MS_MIN: u64 = 10;
pub const REPAIR_TIMEOUT_MS_MAX: u64 = 60_000;

/// Highest `--scrub-keys-per-sec` (a million keys a second is already most of a core).
pub const SCRUB_KEYS_PER_SEC_MAX: u64 = 1_000_000;

/// `--proposals-in-flight-max` of a node started alone, and of a cluster member.
const PROPOSALS_IN_FLIGHT_ALONE: usize = 2;
const PROPOSALS_IN_FLIGHT_CLUSTER: usize = 8;

/// Longest `--sentinel-master-name`.
const SENTINEL_MASTER_NAME_BYTES_MAX: usize = 256;

fn sentinel_master_name(name: Option<String>) -> Result<String, String> {
    let name = name.unwrap_or_else(|| "mymaster".into());
    if name.is_empty()
        || name.len() > SENTINEL_MASTER_NAME_BYTES_MAX
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "--sentinel-master-name must be 1 to {SENTINEL_MASTER_NAME_BYTES_MAX} bytes without spaces, got {name:?}"
        ));
    }
    Ok(name)
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(name: &str, v: T) -> Result<T, String> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(format!("--{name} must be greater than 0, got {v}"))
    }
}

impl ServerConfig {
    /// Resolves flags, the config file they name, and defaults; validates every value.
    pub fn resolve(mut flags: ServerArgs) -> Result<ServerConfig, String> {
        if let Some(path) = &flags.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let mut file: ServerArgs = toml::from_str(&text)
                .map_err(|e| format!("config file {}: {e}", path.display()))?;
            merge!(
                flags,
                file,
                port,
                bind,
                data_dir,
                node_id,
                cluster_port,
                checksum_algorithm,
                appendfsync,
                enable_debug_commands,
                requirepass,
                maxclients,
                proto_max_bulk_len,
                proto_max_array_len,
                proto_max_inline_len,
                client_query_buffer_limit,
                pipeline_batch_max,
                pipeline_batch_bytes_max,
                proposal_bytes_max,
                multi_queued_max,
                pubsub_queue_bytes_max,
                pubsub_subscriptions_max,
                proposals_in_flight_max,
                entry_ops_max,
                write_timeout_ms,
                snapshot_entries,
                log_segment_bytes,
                force_truncate_log,
                rebuild_from_peers,
                on_damage,
                hz,
                active_expire_keys_max,
                verify_interval_ms,
                worker_threads,
                log_cache_bytes,
                log_level,
                cluster_secret,
                initial_cluster,
                join,
                advertise_host,
                http_port,
                replica_max_lag_ms,
                replica_sync_bytes_per_sec_max,
                sentinel_master_name,
                snapshot_chunk_bytes,
                log_retention_entries,
                log_retention_bytes,
                log_retention_ms,
                durability,
                heartbeat_interval_ms,
                election_timeout_ms,
                rpc_timeout_ms,
                repair_timeout_ms,
                scrub_keys_per_sec,
                scrub_bytes_per_sec,
                bench_unverified_reads,
                bench_no_keyspace_digest,
            );
        }
        let port = flags.port.unwrap_or(6379);
        let checksum_algorithm = match &flags.checksum_algorithm {
            Some(s) => s
                .parse::<Algorithm>()
                .map_err(|e| format!("--checksum-algorithm: {e}"))?,
            None => Algorithm::DEFAULT,
        };
        let appendfsync = match &flags.appendfsync {
            Some(s) => s
                .parse::<FsyncPolicy>()
                .map_err(|_| format!("--appendfsync must be always, everysec or no, got '{s}'"))?,
            None => FsyncPolicy::Always,
        };
        let node_id = positive("node-id", flags.node_id.unwrap_or(1))?;
        if node_id > i64::MAX as u64 {
            return Err(format!(
                "--node-id must be at most {}, got {node_id}",
                i64::MAX
            ));
        }
        let proposal_bytes_max = flags.proposal_bytes_max.unwrap_or(PROPOSAL_BYTES_LIMIT);
        if !(1..=PROPOSAL_BYTES_LIMIT).contains(&proposal_bytes_max) {
            return Err(format!(
                "--proposal-bytes-max must be between 1 and {PROPOSAL_BYTES_LIMIT}, got {proposal_bytes_max}"
            ));
        }
        let proto_max_bulk_len = positive(
            "proto-max-bulk-len",
            flags.proto_max_bulk_len.unwrap_or(512 << 20),
        )?;
        if proto_max_bulk_len > 512 << 20 {
            return Err(format!(
                "--proto-max-bulk-len must be at most 536870912 (512 MiB, a value must fit in one log entry), got \
                 {proto_max_bulk_len}"
            ));
        }
        let hz = flags.hz.unwrap_or(10);
        if !(1..=500).contains(&hz) {
            return Err(format!("--hz must be between 1 and 500, got {hz}"));
        }
        let log_segment_bytes = flags.log_segment_bytes.unwrap_or(64 << 20);
        if log_segment_bytes < (1 << 20) {
            return Err(format!(
                "--log-segment-bytes must be at least 1048576, got {log_segment_bytes}"
            ));
        }
        let bind = flags.bind.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let advertise_host = match flags.advertise_host.clone() {
            Some(h) if !h.trim().is_empty() => h.trim().to_string(),
            Some(_) => return Err("--advertise-host is empty".into()),
            None if bind.is_unspecified() => {
                return Err(format!(
                    "--bind {bind} listens on every address: say which one other nodes and clients reach this node at with --advertise-host"
                ))
            }
            None => bind.to_string(),
        };
        let initial_cluster = match &flags.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => Vec::new(),
        };
        // In a cluster an entry commits only after a round trip to the voters, so more entries in
        // flight keep the pipe full (measured: +12% SET/s with 3 voters at 8 vs 2); alone, 2
        // makes larger group commits and is faster (BENCHMARKS.md).
        let proposals_in_flight_default = if initial_cluster.is_empty() && flags.join.is_none() {
            PROPOSALS_IN_FLIGHT_ALONE
        } else {
            PROPOSALS_IN_FLIGHT_CLUSTER
        };
        if !initial_cluster.is_empty() && flags.join.is_some() {
            return Err("--initial-cluster and --join exclude each other: a node either starts a cluster or joins one".into());
        }
        let node_id_given = flags.node_id;
        if !initial_cluster.is_empty() {
            let id = node_id_given.unwrap_or(1);
            if !initial_cluster.iter().any(|(i, _)| *i == id) {
                return Err(format!(
                    "--initial-cluster does not list this node (--node-id {id}); a read replica joins with --join instead"
                ));
            }
        }
        let cluster_secret = flags.cluster_secret.clone().filter(|s| !s.is_empty());
        if cluster_secret.as_ref().is_some_and(|s| s.len() < 8) {
            return Err("--cluster-secret must be at least 8 characters".into());
        }
        let election_timeout_ms = flags.election_timeout_ms.unwrap_or(400);
        let heartbeat_interval_ms = flags.heartbeat_interval_ms.unwrap_or(100);
        if !(10..=60_000).contains(&heartbeat_interval_ms) {
            return Err(format!(
                "--heartbeat-interval-ms must be between 10 and 60000, got {heartbeat_interval_ms}"
            ));
        }
        if election_timeout_ms < heartbeat_interval_ms * 2 || election_timeout_ms > 600_000 {
            return Err(format!(
                "--election-timeout-ms must be at least twice --heartbeat-interval-ms ({heartbeat_interval_ms}) and at most 600000, got {election_timeout_ms}"
            ));
        }
        let snapshot_chunk_bytes = flags.snapshot_chunk_bytes.unwrap_or(1 << 20);
        if !(4096..=16 << 20).contains(&snapshot_chunk_bytes) {
            return Err(format!(
                "--snapshot-chunk-bytes must be between 4096 and 16777216, got {snapshot_chunk_bytes}"
            ));
        }
        let repair_timeout_ms = flags.repair_timeout_ms.unwrap_or(1000);
        if !(REPAIR_TIMEOUT_MS_MIN..=REPAIR_TIMEOUT_MS_MAX).contains(&repair_timeout_ms) {
            return Err(format!(
                "--repair-timeout-ms must be between {REPAIR_TIMEOUT_MS_MIN} and {REPAIR_TIMEOUT_MS_MAX}, got \
                 {repair_timeout_ms}"
            ));
        }
        let scrub_keys_per_sec = flags.scrub_keys_per_sec.unwrap_or(10_000);
        if scrub_keys_per_sec > SCRUB_KEYS_PER_SEC_MAX {
            return Err(format!(
                "--scrub-keys-per-sec must be at most {SCRUB_KEYS_PER_SEC_MAX}, got {scrub_keys_per_sec}"
            ));
        }
        let scrub_bytes_per_sec = positive(
            "scrub-bytes-per-sec",
            flags.scrub_bytes_per_sec.unwrap_or(32 << 20),
        )?;
        let durability = match &flags.durability {
            Some(d) => d.parse::<Durability>().map_err(|e| format!("--{e}"))?,
            None => Durability::Majority,
        };
        Ok(ServerConfig {
            port,
            bind,
            data_dir: flags.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            node_id,
            cluster_port: flags.cluster_port.unwrap_or(port.wrapping_add(10000)),
            checksum_algorithm,
            appendfsync,
            enable_debug_commands: flags.enable_debug_commands.unwrap_or(false),
            requirepass: flags.requirepass.filter(|p| !p.is_empty()),
            maxclients: positive("maxclients", flags.maxclients.unwrap_or(10_000))?,
            proto_max_bulk_len: positive(
                "proto-max-bulk-len",
                flags.proto_max_bulk_len.unwrap_or(512 << 20),
            )?,
            proto_max_array_len: positive(
                "proto-max-array-len",
                flags.proto_max_array_len.unwrap_or(1 << 20),
            )?,
            proto_max_inline_len: positive(
                "proto-max-inline-len",
                flags.proto_max_inline_len.unwrap_or(64 << 10),
            )?,
            client_query_buffer_limit: positive(
                "client-query-buffer-limit",
                flags.client_query_buffer_limit.unwrap_or(1 << 30),
            )?,
            pipeline_batch_max: positive(
                "pipeline-batch-max",
                flags.pipeline_batch_max.unwrap_or(1024),
            )?,
            pipeline_batch_bytes_max: positive(
                "pipeline-batch-bytes-max",
                flags.pipeline_batch_bytes_max.unwrap_or(64 << 20),
            )?,
            proposal_bytes_max,
            multi_queued_max: positive(
                "multi-queued-max",
                flags.multi_queued_max.unwrap_or(1_000_000),
            )?,
            pubsub_queue_bytes_max: positive(
                "pubsub-queue-bytes-max",
                flags.pubsub_queue_bytes_max.unwrap_or(32 << 20),
            )?,
            pubsub_subscriptions_max: positive(
                "pubsub-subscriptions-max",
                flags.pubsub_subscriptions_max.unwrap_or(100_000),
            )?,
            proposals_in_flight_max: positive(
                "proposals-in-flight-max",
                flags
                    .proposals_in_flight_max
                    .unwrap_or(proposals_in_flight_default),
            )?,
            entry_ops_max: positive("entry-ops-max", flags.entry_ops_max.unwrap_or(4096))?,
            write_timeout: Duration::from_millis(positive(
                "write-timeout-ms",
                flags.write_timeout_ms.unwrap_or(10_000),
            )?),
            snapshot_entries: positive(
                "snapshot-entries",
                flags.snapshot_entries.unwrap_or(100_000),
            )?,
            log_segment_bytes,
            force_truncate_log: flags.force_truncate_log.unwrap_or(false),
            rebuild: rebuild_mode(flags.rebuild_from_peers, flags.on_damage.as_deref())?,
            hz,
            active_expire_keys_max: positive(
                "active-expire-keys-max",
                flags.active_expire_keys_max.unwrap_or(1000),
            )?,
            verify_interval: match flags
                .verify_interval_ms
                .unwrap_or(crate::consensus::verify::VERIFY_INTERVAL_DEFAULT_MS)
            {
                _ if flags.bench_no_keyspace_digest == Some(true) => None,
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            worker_threads: positive(
                "worker-threads",
                flags.worker_threads.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| (n.get() / 2).max(1))
                        .unwrap_or(1)
                }),
            )?,
            log_cache_bytes: flags.log_cache_bytes.unwrap_or(8 << 20),
            log_level: flags.log_level.unwrap_or_else(|| "info".into()),
            config_file: flags.config,
            cluster_secret,
            initial_cluster,
            join: flags.join,
            advertise_host,
            http_port: flags.http_port.unwrap_or(0),
            replica_max_lag: Duration::from_millis(positive(
                "replica-max-lag-ms",
                flags.replica_max_lag_ms.unwrap_or(5000),
            )?),
            replica_sync_bytes_per_sec_max: positive(
                "replica-sync-bytes-per-sec-max",
                flags.replica_sync_bytes_per_sec_max.unwrap_or(1 << 30),
            )?,
            sentinel_master_name: sentinel_master_name(flags.sentinel_master_name)?,
            snapshot_chunk_bytes,
            log_retention_entries: flags.log_retention_entries.unwrap_or(100_000),
            log_retention_bytes: flags.log_retention_bytes.unwrap_or(64 << 20),
            log_retention: Duration::from_millis(flags.log_retention_ms.unwrap_or(300_000)),
            durability,
            heartbeat_interval_ms,
            election_timeout_ms,
            rpc_timeout: Duration::from_millis(positive(
                "rpc-timeout-ms",
                flags.rpc_timeout_ms.unwrap_or(2000),
            )?),
            repair_timeout: Duration::from_millis(repair_timeout_ms),
            scrub_keys_per_sec,
            scrub_bytes_per_sec,
            bench_unverified_reads: flags.bench_unverified_reads.unwrap_or(false),
            bench_no_keyspace_digest: flags.bench_no_keyspace_digest.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse_flags(flags: &[&str]) -> Result<ServerConfig, String> {
        use clap::Parser;
        let cli = Cli::try_parse_from(std::iter::once("tandem").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        ServerConfig::resolve(cli.args)
    }

    #[test]
    fn boolean_flags_work_bare_or_with_a_value() {
        assert!(
            parse_flags(&["--enable-debug-commands"])
                .unwrap()
                .enable_debug_commands
        );
        assert!(
            parse_flags(&["--enable-debug-commands", "true"])
                .unwrap()
                .enable_debug_commands
        );
        assert!(
            !parse_flags(&["--enable-debug-commands", "false"])
                .unwrap()
                .enable_debug_commands
        );
        assert!(parse_flags(&["--enable-debug-commands", "maybe"]).is_err());
        let c =
            parse_flags(&["--port", "7000", "--appendfsync", "no", "--data-dir", "/x"]).unwrap();
        assert_eq!(c.port, 7000);
        assert!(matches!(c.appendfsync, FsyncPolicy::No));
        assert!(
            parse_flags(&["--port", "70000"]).is_err(),
            "out-of-range port is refused"
        );
    }

    #[test]
    fn initial_cluster_is_parsed_and_checked() {
        assert_eq!(
            parse_initial_cluster("1=127.0.0.1:17001, 2=h2:17002").unwrap(),
            vec![
                (1, "127.0.0.1:17001".to_string()),
                (2, "h2:17002".to_string())
            ]
        );
        for bad in [
            "",
            "1",
            "0=h:1",
            "1=h",
            "1=h:0",
            "1=h:1,1=h:2",
            "1=h:1,2=h:1",
            "x=h:1",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad} must be refused");
        }
        let err = parse_flags(&["--initial-cluster", "2=h:1,3=h:2", "--node-id", "1"]).unwrap_err();
        assert!(err.contains("does not list this node"), "{err}");
        let err = parse_flags(&["--initial-cluster", "1=h:1", "--join", "h:2"]).unwrap_err();
        assert!(err.contains("exclude"), "{err}");
        let err = parse_flags(&["--bind", "0.0.0.0"]).unwrap_err();
        assert!(err.contains("--advertise-host"), "{err}");
        assert!(parse_flags(&["--cluster-secret", "short"]).is_err());
        assert!(parse_flags(&["--durability", "some"]).is_err());
        assert!(parse_flags(&[
            "--election-timeout-ms",
            "100",
            "--heartbeat-interval-ms",
            "100"
        ])
        .is_err());
        assert!(parse_flags(&["--snapshot-chunk-bytes", "1"]).is_err());
        assert!(parse_flags(&["--repair-timeout-ms", "0"]).is_err());
        assert!(parse_flags(&["--repair-timeout-ms", "60001"]).is_err());
        assert!(parse_flags(&["--scrub-keys-per-sec", "1000001"]).is_err());
        assert!(parse_flags(&["--scrub-bytes-per-sec", "0"]).is_err());
        let c = parse_flags(&["--scrub-keys-per-sec", "0", "--bench-unverified-reads"]).unwrap();
        assert_eq!(c.scrub_keys_per_sec, 0, "0 turns the background pass off");
        assert!(c.bench_unverified_reads);
        let c = parse_flags(&["--durability", "all", "--initial-cluster", "1=h:1"]).unwrap();
        assert_eq!(c.durability, Durability::All);
    }

    #[test]
    fn defaults_are_sensible() {
        let c = ServerConfig::resolve(ServerArgs::default()).unwrap();
        assert_eq!(c.port, 6379);
        assert_eq!(c.checksum_algorithm, Algorithm::Sha256);
        assert!(matches!(c.appendfsync, FsyncPolicy::Always));
        assert_eq!(c.proto_max_bulk_len, 512 << 20);
        assert_eq!(c.cluster_port, 16379);
        assert!(!c.enable_debug_commands);
        assert_eq!(c.repair_timeout, Duration::from_millis(1000));
        assert_eq!(
            (c.scrub_keys_per_sec, c.scrub_bytes_per_sec),
            (10_000, 32 << 20)
        );
        assert!(!c.bench_unverified_reads, "reads are verified unless asked");
        assert_eq!(c.verify_interval, Some(Duration::from_secs(60)));
        assert!(!c.bench_no_keyspace_digest);
    }

    #[test]
    fn periodic_verification_is_set_in_ms_and_0_or_a_digest_benchmark_turns_it_off() {
        let c = parse_flags(&["--verify-interval-ms", "250"]).unwrap();
        assert_eq!(c.verify_interval, Some(Duration::from_millis(250)));
        let c = parse_flags(&["--verify-interval-ms", "0"]).unwrap();
        assert_eq!(c.verify_interval, None);
        let c = parse_flags(&["--bench-no-keyspace-digest"]).unwrap();
        assert!(c.bench_no_keyspace_digest);
        assert_eq!(
            c.verify_interval, None,
            "a digest not kept cannot be compared"
        );
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(
            &path,
            "port = 7000\nappendfsync = \"everysec\"\nchecksum-algorithm = \"blake3\"\n",
        )
        .unwrap();
        let flags = ServerArgs {
            config: Some(path),
            port: Some(7001),
            ..Default::default()
        };
        let c = ServerConfig::resolve(flags).unwrap();
        assert_eq!(c.port, 7001, "flag wins");
        assert!(
            matches!(c.appendfsync, FsyncPolicy::EverySec),
            "file wins over default"
        );
        assert_eq!(c.checksum_algorithm, Algorithm::Blake3);
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_message() {
        let bad = |f: ServerArgs| ServerConfig::resolve(f).unwrap_err();
        assert!(bad(ServerArgs {
            checksum_algorithm: Some("sha3".into()),
            ..Default::default()
        })
        .contains("sha3"));
        assert!(bad(ServerArgs {
            appendfsync: Some("sometimes".into()),
            ..Default::default()
        })
        .contains("appendfsync"));
        assert!(bad(ServerArgs {
            node_id: Some(0),
            ..Default::default()
        })
        .contains("node-id"));
        assert!(bad(ServerArgs {
            hz: Some(0),
            ..Default::default()
        })
        .contains("hz"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "no-such-setting = 1\n").unwrap();
        assert!(bad(ServerArgs {
            config: Some(path),
            ..Default::default()
        })
        .contains("no-such-setting"));
    }
}
