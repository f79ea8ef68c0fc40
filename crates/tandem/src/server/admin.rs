//! Server-level commands: connection state, introspection, configuration, transactions.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::{CommandSpec, Frame, COMMANDS};
use tandem_resp::Protocol;

use super::connection::{Conn, Multi};
use super::info;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Redis version Tandem reports to clients that gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

pub fn allowed_before_auth(name: &[u8]) -> bool {
    ["auth", "hello", "quit", "reset"]
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Commands that act at once even inside MULTI instead of being queued.
pub fn runs_inside_multi(name: &str) -> bool {
    matches!(
        name,
        "exec" | "discard" | "multi" | "quit" | "reset" | "unwatch"
    )
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

fn unknown_subcommand(sub: &[u8], cmd: &str) -> Frame {
    Frame::Error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        cmd.to_uppercase()
    ))
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Commands that touch no state: answered at once, or in place inside EXEC.
pub fn stateless(args: &[Bytes]) -> Frame {
    let name = lower(&args[0]);
    match name.as_str() {
        "ping" => match args.len() {
            1 => Frame::Simple("PONG".into()),
            2 => Frame::Bulk(args[1].clone()),
            _ => tandem_core::wrong_arity("ping"),
        },
        "echo" => Frame::Bulk(args[1].clone()),
        "select" => match parse_i64(&args[1]) {
            Some(0) => Frame::ok(),
            Some(_) => Frame::error("ERR DB index is out of range"),
            None => Frame::error("ERR value is not an integer or out of range"),
        },
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Frame::Array(vec![
                Frame::bulk(now.as_secs().to_string()),
                Frame::bulk(now.subsec_micros().to_string()),
            ])
        }
        _ => Frame::Error(format!(
            "ERR Command '{name}' is not allowed inside a transaction in Tandem"
        )),
    }
}

pub async fn handle(conn: &mut Conn, name: &str, args: &[Bytes]) {
    let frame = match name {
        "ping" | "echo" | "time" => stateless(args),
        "select" => stateless(args),
        "quit" => {
            conn.close = true;
            Frame::ok()
        }
        "reset" => {
            conn.multi = None;
            conn.info.multi.store(-1, Ordering::Relaxed);
            conn.proto = Protocol::Resp2;
            conn.authenticated = conn.shared.runtime.read().requirepass.is_none();
            {
                let mut m = conn.info.meta.lock();
                m.name.clear();
                m.resp = 2;
            }
            Frame::Simple("RESET".into())
        }
        "auth" => auth(conn, args),
        "hello" => hello(conn, args),
        "client" => client(conn, args),
        "command" => command(conn, args),
        "config" => config(conn, args),
        "info" => {
            let sections: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
            Frame::Verbatim(
                "txt".into(),
                Bytes::from(info::render(&conn.shared, &sections)),
            )
        }
        "multi" => {
            if conn.multi.is_some() {
                Frame::error("ERR MULTI calls can not be nested")
            } else {
                conn.multi = Some(Multi {
                    queued: Vec::new(),
                    queued_bytes: 0,
                    failed: false,
                });
                conn.info.multi.store(0, Ordering::Relaxed);
                Frame::ok()
            }
        }
        "discard" => match conn.multi.take() {
            Some(_) => {
                conn.info.multi.store(-1, Ordering::Relaxed);
                Frame::ok()
            }
            None => Frame::error("ERR DISCARD without MULTI"),
        },
        "exec" => match conn.multi.take() {
            None => Frame::error("ERR EXEC without MULTI"),
            Some(m) => {
                conn.info.multi.store(-1, Ordering::Relaxed);
                if m.failed {
                    Frame::error("EXECABORT Transaction discarded because of previous errors.")
                } else {
                    conn.exec(m.queued).await
                }
            }
        },
        // Nothing is ever watched (WATCH is not served), so there is nothing to forget.
        "unwatch" => Frame::ok(),
        "wait" => super::replication::wait(conn, args).await,
        "replicaof" | "slaveof" => super::replication::replicaof(conn, args).await,
        "position" => super::replication::position(conn),
        "waitpos" => super::replication::waitpos(conn, args).await,
        "membership" => super::replication::membership(conn, args).await,
        "digest.report" => super::integrity::report(conn, args),
        "verify" => super::divergence::verify(conn, args).await,
        "digest.quarantine" => super::integrity::quarantine(conn),
        "save" | "bgsave" => match conn.shared.node.snapshot_now().await {
            Ok(()) if name == "save" => Frame::ok(),
            Ok(()) => Frame::Simple("Background saving started".into()),
            Err(e) => Frame::Error(format!("ERR snapshot failed: {e}")),
        },
        "lastsave" => Frame::Integer(
            conn.shared
                .node
                .sm
                .shared
                .stats
                .last_unix_secs
                .load(Ordering::Relaxed) as i64,
        ),
        "shutdown" => {
            let mut save = false;
            for a in &args[1..] {
                match lower(a).as_str() {
                    "nosave" => save = false,
                    "save" => save = true,
                    "now" | "force" => {}
                    "abort" if args.len() == 2 => {
                        conn.reply(Frame::error("ERR No shutdown in progress."));
                        return;
                    }
                    _ => {
                        conn.reply(syntax_error());
                        return;
                    }
                }
            }
            if save {
                if let Err(e) = conn.shared.node.snapshot_now().await {
                    conn.reply(Frame::Error(format!(
                        "ERR Errors trying to SHUTDOWN. Check logs. ({e})"
                    )));
                    return;
                }
            }
            conn.close = true;
            let _ = conn.shared.shutdown.send(true);
            return;
        }
        "debug" => debug(conn, args),
        "role" => super::replication::role(conn),
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "publish" | "pubsub" => {
            return super::pubsub::handle(conn, name, args).await;
        }
        "sentinel" => super::sentinel::sentinel(conn, args),
        "failover" => super::failover::failover(conn, args).await,
        other => Frame::Error(format!(
            "ERR command '{other}' is known but not served by this node"
        )),
    };
    conn.reply(frame);
}

fn auth(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1]), &args[2]),
        _ => return syntax_error(),
    };
    check_password(conn, user, pass)
}

fn check_password(conn: &mut Conn, user: Option<&Bytes>, pass: &Bytes) -> Frame {
    let required = conn.shared.runtime.read().requirepass.clone();
    let Some(required) = required else {
        if user.is_none() {
            return Frame::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your \
                 configuration is correct?",
            );
        }
        // With no password, the default user accepts anything (like Redis's nopass default user).
        if user.map(|u| u.as_ref() == b"default").unwrap_or(true) {
            conn.authenticated = true;
            return Frame::ok();
        }
        return Frame::error("WRONGPASS invalid username-password pair or user is disabled.");
    };
    let user_ok = user.map(|u| u.as_ref() == b"default").unwrap_or(true);
    if user_ok && constant_time_eq(pass, required.as_bytes()) {
        conn.authenticated = true;
        Frame::ok()
    } else {
        Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hello(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let mut proto = None;
    let mut i = 1;
    if args.len() > 1 {
        match parse_i64(&args[1]) {
            Some(2) => proto = Some(Protocol::Resp2),
            Some(3) => proto = Some(Protocol::Resp3),
            Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
            None => return Frame::error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut setname = None;
    while i < args.len() {
        let opt = lower(&args[i]);
        let more = args.len() - i - 1;
        if opt == "auth" && more >= 2 {
            let f = check_password(conn, Some(&args[i + 1].clone()), &args[i + 2].clone());
            if f.is_error() {
                return f;
            }
            i += 3;
        } else if opt == "setname" && more >= 1 {
            setname = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Frame::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    if !conn.authenticated {
        return Frame::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(name) = setname {
        if let Err(f) = set_name(conn, &name) {
            return f;
        }
    }
    if let Some(p) = proto {
        conn.proto = p;
        conn.info.meta.lock().resp = if matches!(p, Protocol::Resp3) { 3 } else { 2 };
    }
    let resp = conn.info.meta.lock().resp;
    Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_COMPAT_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(resp as i64)),
        (Frame::bulk("id"), Frame::Integer(conn.info.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ])
}

fn set_name(conn: &mut Conn, name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|c| !(b'!'..=b'~').contains(c)) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    conn.info.meta.lock().name = String::from_utf8_lossy(name).into_owned();
    Ok(())
}

fn client(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("setname", 3) => match set_name(conn, &args[2]) {
            Ok(()) => Frame::ok(),
            Err(f) => f,
        },
        ("getname", 2) => {
            let name = conn.info.meta.lock().name.clone();
            if name.is_empty() {
                Frame::Null
            } else {
                Frame::bulk(name)
            }
        }
        ("id", 2) => Frame::Integer(conn.info.id as i64),
        ("durability", 2) => Frame::bulk(
            match conn.durability.unwrap_or(conn.shared.config.durability) {
                crate::config::Durability::Majority => "majority",
                crate::config::Durability::All => "all",
            },
        ),
        ("durability", 3) => match String::from_utf8_lossy(&args[2]).parse() {
            Ok(d) => {
                conn.durability = Some(d);
                Frame::ok()
            }
            Err(e) => Frame::Error(format!("ERR {e}")),
        },
        ("info", 2) => {
            Frame::Verbatim("txt".into(), Bytes::from(format!("{}\n", conn.info.line())))
        }
        ("list", _) => {
            let mut s = String::new();
            for c in conn.shared.clients.all() {
                s.push_str(&c.line());
                s.push('\n');
            }
            Frame::Verbatim("txt".into(), Bytes::from(s))
        }
        ("setinfo", 4) => {
            let attr = lower(&args[2]);
            let value = String::from_utf8_lossy(&args[3]).into_owned();
            if value
                .chars()
                .any(|c| c == ' ' || c == '\n' || !(' '..='~').contains(&c))
            {
                return Frame::Error(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    attr.to_uppercase()
                ));
            }
            match attr.as_str() {
                "lib-name" => conn.info.meta.lock().lib_name = value,
                "lib-ver" => conn.info.meta.lock().lib_ver = value,
                _ => {
                    return Frame::Error(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[2])
                    ))
                }
            }
            Frame::ok()
        }
        ("help", _) => Frame::Array(
            [
                "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST",
                "    Return information about client connections.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are LIB-NAME and LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
            ]
            .iter()
            .map(|s| Frame::Simple(s.to_string()))
            .collect(),
        ),
        ("setname" | "getname" | "id" | "info" | "setinfo", _) => Frame::Error(format!(
            "ERR wrong number of arguments for 'client|{sub}' command"
        )),
        _ => unknown_subcommand(&args[1], "client"),
    }
}

fn command_info(spec: &CommandSpec) -> Frame {
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity as i64),
        Frame::Set(
            spec.flags
                .iter()
                .map(|f| Frame::Simple(f.to_string()))
                .collect(),
        ),
        Frame::Integer(spec.first_key as i64),
        Frame::Integer(spec.last_key as i64),
        Frame::Integer(spec.step as i64),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

fn command_docs(spec: &CommandSpec) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(spec.summary)),
        (Frame::bulk("since"), Frame::bulk(spec.since)),
        (Frame::bulk("group"), Frame::bulk(spec.group)),
    ])
}

fn command(_conn: &mut Conn, args: &[Bytes]) -> Frame {
    if args.len() == 1 || (args.len() == 2 && lower(&args[1]) == "info") {
        return Frame::Array(COMMANDS.iter().map(command_info).collect());
    }
    let sub = lower(&args[1]);
    match sub.as_str() {
        "count" if args.len() == 2 => Frame::Integer(COMMANDS.len() as i64),
        "list" => Frame::Array(COMMANDS.iter().map(|c| Frame::bulk(c.name)).collect()),
        "info" => Frame::Array(
            args[2..]
                .iter()
                .map(|n| {
                    tandem_core::lookup(n)
                        .map(command_info)
                        .unwrap_or(Frame::NullArray)
                })
                .collect(),
        ),
        "docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|n| tandem_core::lookup(n))
                    .collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::bulk(s.name), command_docs(s)))
                    .collect(),
            )
        }
        "count" => Frame::error("ERR wrong number of arguments for 'command|count' command"),
        _ => unknown_subcommand(&args[1], "command"),
    }
}

/// `(name, value, settable)`: what CONFIG GET shows.
fn config_items(conn: &Conn) -> Vec<(&'static str, String, bool)> {
    let c = &conn.shared.config;
    let rt = conn.shared.runtime.read();
    vec![
        ("port", c.port.to_string(), false),
        ("bind", c.bind.to_string(), false),
        ("dir", c.data_dir.display().to_string(), false),
        ("appendonly", "yes".into(), false),
        ("appendfsync", c.appendfsync.as_str().into(), false),
        ("save", String::new(), false),
        ("databases", "1".into(), false),
        ("maxclients", c.maxclients.to_string(), false),
        (
            "proto-max-bulk-len",
            c.proto_max_bulk_len.to_string(),
            false,
        ),
        (
            "client-query-buffer-limit",
            c.client_query_buffer_limit.to_string(),
            false,
        ),
        ("hz", c.hz.to_string(), false),
        ("timeout", "0".into(), false),
        (
            "requirepass",
            rt.requirepass.clone().unwrap_or_default(),
            true,
        ),
        (
            "checksum-algorithm",
            rt.checksum_algorithm.name().into(),
            true,
        ),
        (
            "enable-debug-commands",
            if c.enable_debug_commands { "yes" } else { "no" }.into(),
            false,
        ),
        ("node-id", c.node_id.to_string(), false),
        ("snapshot-entries", c.snapshot_entries.to_string(), false),
        (
            "write-timeout-ms",
            c.write_timeout.as_millis().to_string(),
            false,
        ),
        (
            "pipeline-batch-max",
            c.pipeline_batch_max.to_string(),
            false,
        ),
    ]
}

fn config(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "get" if args.len() >= 3 => {
            let items = config_items(conn);
            let mut out = Vec::new();
            for (name, value, _) in &items {
                if args[2..]
                    .iter()
                    .any(|p| tandem_core::glob_match(p, name.as_bytes(), true))
                    && !out
                        .iter()
                        .any(|(n, _): &(Frame, Frame)| n == &Frame::bulk(*name))
                {
                    out.push((Frame::bulk(*name), Frame::bulk(value.clone())));
                }
            }
            Frame::Map(out)
        }
        "set" if args.len() >= 4 && args.len().is_multiple_of(2) => {
            let items = config_items(conn);
            // Validate everything first: all or nothing, like Redis.
            let mut changes: Vec<(String, String)> = Vec::new();
            for pair in args[2..].chunks(2) {
                let name = lower(&pair[0]);
                let value = String::from_utf8_lossy(&pair[1]).into_owned();
                if changes.iter().any(|(n, _)| *n == name) {
                    return Frame::Error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                    ));
                }
                match items.iter().find(|(n, _, _)| *n == name) {
                    None => {
                        return Frame::Error(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        ))
                    }
                    Some((_, _, false)) => {
                        return Frame::Error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
                        ))
                    }
                    Some(_) => {}
                }
                if name == "checksum-algorithm" {
                    if let Err(e) = value.parse::<tandem_checksum::Algorithm>() {
                        return Frame::Error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                        ));
                    }
                }
                changes.push((name, value));
            }
            let mut rt = conn.shared.runtime.write();
            for (name, value) in changes {
                match name.as_str() {
                    // Validated above.
                    "checksum-algorithm" => {
                        if let Ok(a) = value.parse() {
                            rt.checksum_algorithm = a;
                        }
                    }
                    "requirepass" => rt.requirepass = Some(value).filter(|v| !v.is_empty()),
                    _ => {}
                }
            }
            Frame::ok()
        }
        "resetstat" if args.len() == 2 => {
            let s = &conn.shared.stats;
            for c in [
                &s.commands_processed,
                &s.connections_received,
                &s.rejected_connections,
                &s.expired_keys,
                &s.protocol_errors,
                &s.net_input_bytes,
                &s.net_output_bytes,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            Frame::ok()
        }
        "rewrite" => {
            Frame::error("ERR CONFIG REWRITE is not supported: edit the file given with --config")
        }
        "get" | "set" | "resetstat" => Frame::Error(format!(
            "ERR wrong number of arguments for 'config|{sub}' command"
        )),
        _ => unknown_subcommand(&args[1], "config"),
    }
}

fn debug(conn: &mut Conn, args: &[Bytes]) -> Frame {
    if !conn.shared.config.enable_debug_commands {
        return Frame::error(
            "ERR DEBUG command not allowed. Start the server with --enable-debug-commands to use it (tests only: it \
             damages data on purpose).",
        );
    }
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("corrupt", 3) => {
            let hit = conn
                .shared
                .node
                .state()
                .write()
                .keyspace
                .debug_corrupt(&args[2]);
            if hit {
                Frame::ok()
            } else {
                Frame::error("ERR no such key")
            }
        }
        ("diverge", 4) => super::divergence::debug_diverge(conn, &args[2], &args[3]),
        ("digest-check", 2) => super::divergence::debug_digest_check(conn),
        ("keyspace-digest", 2) => {
            // [applied index, order-independent digest of every record, keys], read under one
            // lock so the digest is exactly that of the state at that index.
            let st = conn.shared.node.state().read();
            let mut acc = [0u8; 32];
            st.keyspace.for_each_record(|rec| {
                let d = tandem_checksum::Checksum::compute(tandem_checksum::Algorithm::Sha256, rec);
                for (a, b) in acc.iter_mut().zip(d.digest()) {
                    *a ^= b;
                }
            });
            let hex: String = acc.iter().map(|b| format!("{b:02x}")).collect();
            Frame::Array(vec![
                Frame::Integer(st.last_applied.map(|l| l.index() as i64).unwrap_or(0)),
                Frame::bulk(hex),
                Frame::Integer(st.keyspace.len() as i64),
            ])
        }
        ("replication-pause", 3) => {
            match parse_i64(&args[2]).filter(|ms| (0..=600_000).contains(ms)) {
                // Refuses appends from the primary for that long: this replica falls behind.
                Some(ms) => {
                    *conn.shared.node.service.paused_until.lock() =
                        Some(std::time::Instant::now() + Duration::from_millis(ms as u64));
                    Frame::ok()
                }
                None => Frame::error("ERR milliseconds must be between 0 and 600000"),
            }
        }
        ("snapshot-interrupt", 3) => {
            match parse_i64(&args[2]).filter(|n| (0..=1_000_000).contains(n)) {
                // Break off the next snapshot transfer after N chunks, as a dropped connection would.
                Some(n) => {
                    conn.shared
                        .node
                        .ctx
                        .faults
                        .interrupt_snapshot_after
                        .store(n as u32, Ordering::Relaxed);
                    Frame::ok()
                }
                None => Frame::error("ERR chunks must be between 0 and 1000000"),
            }
        }
        ("repair", 3) => {
            // DEBUG REPAIR OFF|ON: stop (or resume) repairing damaged copies from the other
            // members, for tests of what clients see from a node that cannot repair.
            let off = match lower(&args[2]).as_str() {
                "off" => true,
                "on" => false,
                _ => return Frame::error("ERR DEBUG REPAIR takes ON or OFF"),
            };
            conn.shared
                .node
                .damage
                .repair_off
                .store(off, Ordering::Relaxed);
            Frame::ok()
        }
        ("corrupt-append", 2..=3) => {
            // DEBUG CORRUPT-APPEND [count]: damage a value (not its checksum) in each of the next
            // `count` appends this node sends that carry one; replicas must refuse them.
            match args
                .get(2)
                .map_or(Some(1), |a| parse_i64(a))
                .filter(|n| (0..=1000).contains(n))
            {
                Some(n) => {
                    conn.shared
                        .node
                        .ctx
                        .faults
                        .corrupt_append_values
                        .store(n as u32, Ordering::Relaxed);
                    Frame::ok()
                }
                None => Frame::error("ERR count must be between 0 and 1000"),
            }
        }
        ("corrupt-snapshot-chunk" | "corrupt-frame", 2..=4) => {
            // DEBUG CORRUPT-SNAPSHOT-CHUNK [count [skip]]: corrupt `count` outgoing snapshot
            // chunks after `skip` intact ones. DEBUG CORRUPT-FRAME [count]: any requests.
            let arg = |i: usize, default: i64| {
                if args.len() > i {
                    parse_i64(&args[i]).filter(|n| (0..=1000).contains(n))
                } else {
                    Some(default)
                }
            };
            let (Some(count), Some(skip)) = (arg(2, 1), arg(3, 0)) else {
                return Frame::error("ERR count and skip must be between 0 and 1000");
            };
            let faults = &conn.shared.node.ctx.faults;
            if sub == "corrupt-frame" {
                if args.len() > 3 {
                    return Frame::error("ERR DEBUG CORRUPT-FRAME takes only a count");
                }
                faults
                    .corrupt_requests
                    .store(count as u32, Ordering::Relaxed);
            } else {
                faults
                    .corrupt_snapshot_chunks_skip
                    .store(skip as u32, Ordering::Relaxed);
                faults
                    .corrupt_snapshot_chunks
                    .store(count as u32, Ordering::Relaxed);
            }
            Frame::ok()
        }
        ("sleep", 3) => {
            let secs: f64 = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            std::thread::sleep(Duration::from_secs_f64(secs.clamp(0.0, 10.0)));
            Frame::ok()
        }
        _ => unknown_subcommand(&args[1], "debug"),
    }
}
