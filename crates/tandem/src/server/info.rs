//! INFO, in Redis's `# Section` / `field:value` format, plus Tandem's `integrity` section.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

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
        if section == "replication" {
            for (k, v) in replication_fields(shared) {
                let _ = write!(out, "{k}:{v}\r\n");
            }
            continue;
        }
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
            ("cluster_id", node.identity.cluster_id()),
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
                ("pubsub_channels", shared.pubsub.channel_count().to_string()),
                ("pubsub_patterns", shared.pubsub.numpat().to_string()),
                (
                    "client_output_buffer_limit_disconnections",
                    shared.pubsub.slow_subscribers_disconnected().to_string(),
                ),
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
            let reports = &shared.integrity_reports;
            vec![
                (
                    "checksum_algorithm",
                    shared.runtime.read().checksum_algorithm.name().into(),
                ),
                ("corrupt_values_detected", i.corrupt_detected.to_string()),
                (
                    "integrity_reports_received",
                    reports.received.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "integrity_reports_confirmed",
                    reports.confirmed.load(Ordering::Relaxed).to_string(),
                ),
            ]
            .into_iter()
            .chain(damage_fields(node))
            .chain(super::divergence::info_fields(node, &st))
            .collect()
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

/// Most quarantined keys INFO integrity names (`quarantined_key0`...); DIGEST.QUARANTINE lists
/// more.
const QUARANTINE_INFO_KEYS_MAX: usize = 16;

/// INFO integrity: damage per source, the quarantine and the scrubber (`consensus/damage.rs`).
fn damage_fields(node: &crate::consensus::Node) -> Vec<(&'static str, String)> {
    use crate::consensus::damage::Source;
    // Field names are &'static: one per (kind, source).
    const NAMES: [[&str; 3]; 5] = [
        [
            "corrupt_detected_read",
            "corrupt_repaired_read",
            "corrupt_unrepairable_read",
        ],
        [
            "corrupt_detected_scrub",
            "corrupt_repaired_scrub",
            "corrupt_unrepairable_scrub",
        ],
        [
            "corrupt_detected_apply",
            "corrupt_repaired_apply",
            "corrupt_unrepairable_apply",
        ],
        [
            "corrupt_detected_snapshot",
            "corrupt_repaired_snapshot",
            "corrupt_unrepairable_snapshot",
        ],
        [
            "corrupt_detected_transport",
            "corrupt_repaired_transport",
            "corrupt_unrepairable_transport",
        ],
    ];
    let d = node.damage.stats();
    let mut f = Vec::new();
    for (i, _) in Source::ALL.iter().enumerate() {
        let (detected, repaired, unrepairable) = d.by_source[i];
        f.push((NAMES[i][0], detected.to_string()));
        f.push((NAMES[i][1], repaired.to_string()));
        f.push((NAMES[i][2], unrepairable.to_string()));
    }
    f.push(("repairs_in_flight", d.repairs_in_flight.to_string()));
    f.push(("scrub_suspects", d.suspects.to_string()));
    f.push(("scrub_suspects_dropped", d.suspects_dropped.to_string()));
    f.push(("quarantined_keys", d.quarantined.to_string()));
    f.push(("quarantine_dropped", d.quarantine_dropped.to_string()));
    const KEY_FIELDS: [&str; QUARANTINE_INFO_KEYS_MAX] = [
        "quarantined_key0",
        "quarantined_key1",
        "quarantined_key2",
        "quarantined_key3",
        "quarantined_key4",
        "quarantined_key5",
        "quarantined_key6",
        "quarantined_key7",
        "quarantined_key8",
        "quarantined_key9",
        "quarantined_key10",
        "quarantined_key11",
        "quarantined_key12",
        "quarantined_key13",
        "quarantined_key14",
        "quarantined_key15",
    ];
    for (i, (key, q)) in node
        .damage
        .quarantined(QUARANTINE_INFO_KEYS_MAX)
        .into_iter()
        .enumerate()
    {
        f.push((
            KEY_FIELDS[i],
            format!(
                "key={},source={},seconds={}",
                tandem_core::keyspace::escape_key(&key).replace(',', "\\x2c"),
                q.source.name(),
                q.since.elapsed().as_secs()
            ),
        ));
    }
    let s = &node.damage.scrub;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    f.push((
        "scrub_enabled",
        u8::from(s.enabled.load(Ordering::Relaxed)).to_string(),
    ));
    f.push(("scrub_keys_per_sec", load(&s.keys_per_sec)));
    f.push(("scrub_bytes_per_sec", load(&s.bytes_per_sec)));
    f.push(("scrub_passes_completed", load(&s.passes_completed)));
    f.push((
        "scrub_last_full_pass_unix_ms",
        load(&s.last_pass_end_unix_ms),
    ));
    f.push((
        "scrub_last_pass_duration_ms",
        load(&s.last_pass_duration_ms),
    ));
    f.push(("scrub_pass_keys_checked", load(&s.pass_keys)));
    f.push(("scrub_keys_checked", load(&s.keys_checked)));
    f.push(("scrub_bytes_checked", load(&s.bytes_checked)));
    f.push(("scrub_faults_found", load(&s.faults_found)));
    f.push(("scrub_repairs", load(&s.repairs)));
    f
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

/// INFO replication: Redis's fields (log index as the offset) and Tandem's own.
fn replication_fields(shared: &Shared) -> Vec<(String, String)> {
    use crate::consensus::status::Role;
    let st = shared.node.status();
    let mut f: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| f.push((k.to_string(), v));
    let acts_as_primary =
        st.role == Role::Primary || (st.role == Role::Unformed && st.primary_id.is_none());
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    if acts_as_primary {
        push("role", "master".into());
        let replicas: Vec<_> = st.replicas().cloned().collect();
        push("connected_slaves", replicas.len().to_string());
        for (i, m) in replicas.iter().enumerate() {
            let (ip, port) = m
                .client_addr
                .rsplit_once(':')
                .unwrap_or((&m.client_addr, ""));
            push(
                &format!("slave{i}"),
                format!(
                    "ip={ip},port={port},state={},offset={},lag={}",
                    m.state(),
                    m.matched_index.unwrap_or(0),
                    m.last_ack_ms.map(|ms| ms / 1000).unwrap_or(0)
                ),
            );
        }
    } else {
        push("role", "slave".into());
        let addr = st.primary_client_addr.clone().unwrap_or_default();
        let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, ""));
        push("master_host", host.to_string());
        push("master_port", port.to_string());
        let up =
            super::replication::replica_read_allowed(&shared.node, shared.config.replica_max_lag)
                .is_ok();
        push("master_link_status", if up { "up" } else { "down" }.into());
        let heard = st
            .lag
            .and_then(|l| l.since_heard)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(-1);
        push("master_last_io_seconds_ago", heard.to_string());
        push(
            "master_sync_in_progress",
            u8::from(st.sync.in_progress).to_string(),
        );
        push("slave_read_repl_offset", st.last_log_index.to_string());
        push("slave_repl_offset", st.applied_index.to_string());
        push("slave_priority", "100".into());
        push("slave_read_only", "1".into());
        push("replica_announced", "1".into());
        push("connected_slaves", "0".into());
    }
    push(
        "master_failover_state",
        shared.node.switchover.state().name().into(),
    );
    push("master_replid", st.cluster_id.clone());
    push(
        "master_replid2",
        "0000000000000000000000000000000000000000".into(),
    );
    push("master_repl_offset", st.last_log_index.to_string());
    push("second_repl_offset", "-1".into());
    push("repl_backlog_active", "1".into());
    push(
        "repl_backlog_first_byte_offset",
        (st.purged_index.unwrap_or(0) + 1).to_string(),
    );
    push(
        "repl_backlog_histlen",
        st.last_log_index
            .saturating_sub(st.purged_index.unwrap_or(0))
            .to_string(),
    );
    push("tandem_role", st.role.name().into());
    push("tandem_node_id", st.node_id.to_string());
    push(
        "tandem_cluster_addr",
        if shared.config.cluster_secret.is_some() {
            st.cluster_addr.clone()
        } else {
            String::new()
        },
    );
    push("tandem_term", st.term.to_string());
    push("tandem_primary_id", opt(st.primary_id));
    push("tandem_last_log_index", st.last_log_index.to_string());
    push("tandem_committed_index", st.committed_index.to_string());
    push("tandem_applied_index", st.applied_index.to_string());
    push("tandem_snapshot_index", opt(st.snapshot_index));
    push("tandem_purged_index", opt(st.purged_index));
    if !acts_as_primary {
        push("tandem_lag_ms", opt(st.lag_ms()));
        push("tandem_lag_entries", opt(st.lag.map(|l| l.entries)));
    }
    push(
        "tandem_sync_in_progress",
        u8::from(st.sync.in_progress).to_string(),
    );
    push("tandem_sync_bytes", st.sync.bytes.to_string());
    push("tandem_sync_total_bytes", st.sync.total_bytes.to_string());
    let pct = if st.sync.total_bytes > 0 {
        st.sync.bytes as f64 * 100.0 / st.sync.total_bytes as f64
    } else {
        0.0
    };
    push("tandem_sync_percent", format!("{pct:.1}"));
    push(
        "tandem_sync_rate_bytes_per_sec",
        st.sync.rate_bytes_per_sec.to_string(),
    );
    push("tandem_sync_completed", st.sync.completed.to_string());
    push("tandem_sync_rejected", st.sync.rejected.to_string());
    push(
        "tandem_transport_crc_failures",
        st.transport.crc_failures.to_string(),
    );
    push(
        "tandem_transport_refusals",
        st.transport.refusals.to_string(),
    );
    for (i, m) in st.members.iter().enumerate() {
        let kind = if Some(m.id) == st.primary_id {
            "primary"
        } else if m.voter {
            "voter"
        } else {
            "read-replica"
        };
        push(
            &format!("tandem_member{i}"),
            format!(
                "id={},kind={kind},client={},cluster={},matched={},lag_entries={},lag_ms={},last_ack_ms={},state={}",
                m.id,
                m.client_addr,
                m.cluster_addr,
                opt(m.matched_index),
                opt(m.lag_entries),
                opt(m.lag_ms()),
                opt(m.last_ack_ms),
                if Some(m.id) == st.primary_id { "online" } else if acts_as_primary { m.state() } else { "" }
            ),
        );
    }
    f
}
