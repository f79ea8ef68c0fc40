//! INFO, in Redis's `# Section` / `field:value` format, plus Tandem's `integrity` section.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use super::Shared;

const SECTIONS: [&str; 9] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "keyspace",
    "integrity",
    "cpu",
];

/// Renders the sections asked for (none, `default`, `all` or `everything` = every section).
pub fn render(shared: &Shared, asked: &[String]) -> String {
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let mut out = String::new();
    for section in SECTIONS {
        if !all && !asked.iter().any(|a| a == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = writeln!(out, "# {}\r", capitalize(section));
        for (k, v) in fields(shared, section) {
            let _ = write!(out, "{k}:{v}\r\n");
        }
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn fields(shared: &Shared, section: &str) -> Vec<(&'static str, String)> {
    let cfg = &shared.config;
    let node = &shared.node;
    match section {
        "server" => vec![
            ("redis_version", super::admin::REDIS_COMPAT_VERSION.into()),
            ("tandem_version", super::admin::VERSION.into()),
            ("redis_mode", "standalone".into()),
            ("os", std::env::consts::OS.into()),
            ("arch_bits", "64".into()),
            ("process_id", std::process::id().to_string()),
            ("tcp_port", cfg.port.to_string()),
            (
                "uptime_in_seconds",
                shared.started.elapsed().as_secs().to_string(),
            ),
            (
                "uptime_in_days",
                (shared.started.elapsed().as_secs() / 86400).to_string(),
            ),
            ("hz", cfg.hz.to_string()),
            (
                "executable",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "config_file",
                cfg.config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("node_id", cfg.node_id.to_string()),
            ("cluster_id", node.cluster_id.clone()),
        ],
        "clients" => vec![
            ("connected_clients", shared.clients.len().to_string()),
            ("maxclients", cfg.maxclients.to_string()),
            ("blocked_clients", "0".into()),
        ],
        "memory" => {
            let used = node.state().read().keyspace.used_memory_estimate();
            let rss = resident_bytes();
            vec![
                ("used_memory", used.to_string()),
                ("used_memory_human", human(used as u64)),
                ("used_memory_rss", rss.to_string()),
                ("used_memory_rss_human", human(rss)),
                ("maxmemory", "0".into()),
                ("maxmemory_policy", "noeviction".into()),
            ]
        }
        "persistence" => {
            let s = &node.sm.shared.stats;
            let log = node.log.stats();
            vec![
                ("loading", "0".into()),
                ("appendonly", "1".into()),
                ("appendfsync", cfg.appendfsync.as_str().into()),
                (
                    "rdb_bgsave_in_progress",
                    (s.in_progress.load(Ordering::Relaxed) as u8).to_string(),
                ),
                (
                    "rdb_last_save_time",
                    s.last_unix_secs.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "snapshots_taken",
                    s.count.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "snapshot_last_duration_ms",
                    s.last_duration_ms.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "snapshot_last_bytes",
                    s.last_bytes.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "log_first_index",
                    node.log.first_index().unwrap_or(0).to_string(),
                ),
                (
                    "log_last_index",
                    node.log.last_index().unwrap_or(0).to_string(),
                ),
                ("log_disk_bytes", log.disk_bytes.to_string()),
                ("log_segments", log.segments.to_string()),
                ("log_fsyncs", log.fsyncs.to_string()),
                ("log_records_written", log.records_written.to_string()),
            ]
        }
        "stats" => {
            let st = &shared.stats;
            vec![
                (
                    "total_connections_received",
                    st.connections_received.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "total_commands_processed",
                    st.commands_processed.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "rejected_connections",
                    st.rejected_connections.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "expired_keys",
                    st.expired_keys.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "total_net_input_bytes",
                    st.net_input_bytes.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "total_net_output_bytes",
                    st.net_output_bytes.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "total_error_replies_protocol",
                    st.protocol_errors.load(Ordering::Relaxed).to_string(),
                ),
            ]
        }
        "replication" => {
            let m = node.raft.metrics().borrow_watched().clone();
            let role = if m.state == ServerState::Leader {
                "master"
            } else {
                "slave"
            };
            let applied = m.last_applied.map(|l| l.index()).unwrap_or(0);
            vec![
                ("role", role.into()),
                ("connected_slaves", "0".into()),
                ("master_failover_state", "no-failover".into()),
                ("master_replid", node.cluster_id.clone()),
                ("master_repl_offset", applied.to_string()),
                ("tandem_term", m.current_term.to_string()),
                (
                    "tandem_primary_id",
                    m.current_leader.map(|l| l.to_string()).unwrap_or_default(),
                ),
                (
                    "tandem_durable_index",
                    m.last_log_index.unwrap_or(0).to_string(),
                ),
                ("tandem_applied_index", applied.to_string()),
            ]
        }
        "keyspace" => {
            let st = node.state().read();
            let keys = st.keyspace.len();
            if keys == 0 {
                Vec::new()
            } else {
                vec![(
                    "db0",
                    format!(
                        "keys={keys},expires={},avg_ttl=0",
                        st.keyspace.expires_len()
                    ),
                )]
            }
        }
        "integrity" => {
            let st = node.state().read();
            let i = st.keyspace.integrity();
            vec![
                (
                    "checksum_algorithm",
                    shared.runtime.read().checksum_algorithm.name().into(),
                ),
                ("corrupt_values_detected", i.corrupt_detected.to_string()),
            ]
        }
        "cpu" => {
            let (user, sys) = cpu_times();
            vec![
                ("used_cpu_sys", format!("{sys:.6}")),
                ("used_cpu_user", format!("{user:.6}")),
            ]
        }
        _ => Vec::new(),
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2}G", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.2}M", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// Resident set size from /proc (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn cpu_times() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we pass.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return (0.0, 0.0);
        }
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(usage.ru_utime), t(usage.ru_stime))
}
