//! The Sentinel discovery subset, so that Sentinel-aware client libraries find the primary and
//! follow failovers with no Tandem-specific code.
//!
//! Every node answers for its own cluster, under one name (`--sentinel-master-name`, default
//! `mymaster`): give clients the nodes' client addresses as their "sentinels". Served:
//! `SENTINEL MASTERS | MASTER name | REPLICAS name | SLAVES name | SENTINELS name |
//! GET-MASTER-ADDR-BY-NAME name | MYID`, with Redis Sentinel 7's reply shapes (maps in RESP3,
//! flat field/value arrays in RESP2). The other members play the other sentinels.
//!
//! [`announce_switches`] publishes `+switch-master <name> <old-ip> <old-port> <new-ip>
//! <new-port>` on the `+switch-master` channel of this node when it sees the primary change, as
//! Sentinel does. Pub/Sub is node-local, so every node announces to its own subscribers.
//!
//! What a node knows is its own view: a node cut off from the primary still names the primary it
//! last heard from, flagged `s_down` when it has not heard from it within the replica lag bound
//! (clients that check flags, like redis-py, then ask another node). Before any primary is known
//! the name is unknown (`GET-MASTER-ADDR-BY-NAME` answers a null array).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_checksum::{Algorithm, Checksum};
use tandem_core::Frame;
use tracing::info;

use super::connection::Conn;
use super::Shared;
use crate::consensus::status::{ReplicationStatus, Role};
use crate::consensus::types::NodeId;

/// How often a node looks for a change of primary to announce.
const SWITCH_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The channel Sentinel announces a new primary on.
pub const SWITCH_MASTER_CHANNEL: &str = "+switch-master";

fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (addr.to_string(), "0".to_string()),
    }
}

/// A stable 40-hex-digit id for a member (Sentinel's run ids have this shape).
fn run_id(cluster_id: &str, node_id: NodeId) -> String {
    let seed = format!("tandem {cluster_id} node {node_id}");
    let mut hex = Checksum::compute(Algorithm::Sha256, seed.as_bytes()).to_hex();
    hex.truncate(40);
    hex
}

/// Field/value pairs: a map in RESP3, a flat array in RESP2 (as Sentinel replies).
fn fields(pairs: Vec<(&'static str, String)>) -> Frame {
    Frame::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Frame::bulk(k), Frame::Bulk(Bytes::from(v))))
            .collect(),
    )
}

/// The fields every instance in a Sentinel reply starts with (Sentinel's order), then `rest`.
/// `last_reply_ms`: how long ago the instance last answered, as far as this node knows.
fn instance_fields(
    shared: &Shared,
    name: String,
    addr: &str,
    runid: String,
    flags: &str,
    last_reply_ms: u64,
    rest: Vec<(&'static str, String)>,
) -> Frame {
    let (ip, port) = split_addr(addr);
    let mut all = vec![
        ("name", name),
        ("ip", ip),
        ("port", port),
        ("runid", runid),
        ("flags", flags.to_string()),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", "0".into()),
        ("last-ok-ping-reply", last_reply_ms.to_string()),
        ("last-ping-reply", last_reply_ms.to_string()),
        (
            "down-after-milliseconds",
            shared.config.election_timeout_ms.to_string(),
        ),
    ];
    all.extend(rest);
    fields(all)
}

/// The primary as this node sees it: (id, client address, down?).
fn primary_of(shared: &Shared, st: &ReplicationStatus) -> Option<(NodeId, String, bool)> {
    let id = st.primary_id?;
    let addr = st.primary_client_addr.clone()?;
    let down = match st.role {
        // A primary that has not heard from a quorum within the lag bound cannot commit: say so,
        // so clients that check flags ask another node (a restarted ex-primary that still
        // believes in its old term looks like this too, until it hears the new one).
        Role::Primary => {
            st.voters().count() > 1
                && shared
                    .node
                    .ctx
                    .quorum_age()
                    .is_none_or(|age| age > shared.config.replica_max_lag)
        }
        _ => st
            .lag
            .and_then(|l| l.since_heard)
            .is_none_or(|d| d > shared.config.replica_max_lag),
    };
    Some((id, addr, down))
}

fn master_fields(shared: &Shared, st: &ReplicationStatus) -> Option<Frame> {
    let (id, addr, down) = primary_of(shared, st)?;
    let flags = if down { "master,s_down" } else { "master" };
    let voters = st.voters().count();
    Some(instance_fields(
        shared,
        shared.config.sentinel_master_name.clone(),
        &addr,
        run_id(&st.cluster_id, id),
        flags,
        0,
        vec![
            ("info-refresh", "0".into()),
            ("role-reported", "master".into()),
            ("role-reported-time", "0".into()),
            ("config-epoch", st.term.to_string()),
            ("num-slaves", st.replicas().count().to_string()),
            (
                "num-other-sentinels",
                st.members.len().saturating_sub(1).to_string(),
            ),
            ("quorum", (voters / 2 + 1).to_string()),
            (
                "failover-timeout",
                super::failover::TIMEOUT_DEFAULT.as_millis().to_string(),
            ),
            ("parallel-syncs", "1".into()),
        ],
    ))
}

fn replica_fields(shared: &Shared, st: &ReplicationStatus) -> Vec<Frame> {
    let primary = primary_of(shared, st);
    let (mip, mport) = primary
        .as_ref()
        .map(|(_, a, _)| split_addr(a))
        .unwrap_or_default();
    st.replicas()
        .map(|m| {
            // Only the primary knows every replica's progress; elsewhere report what is known.
            let link_ok = match m.last_ack_ms {
                Some(ms) => Duration::from_millis(ms) <= shared.config.replica_max_lag,
                None => st.role != Role::Primary,
            };
            let flags = if link_ok { "slave" } else { "slave,s_down" };
            instance_fields(
                shared,
                m.client_addr.clone(),
                &m.client_addr,
                run_id(&st.cluster_id, m.id),
                flags,
                m.last_ack_ms.unwrap_or(0),
                vec![
                    ("info-refresh", "0".into()),
                    ("role-reported", "slave".into()),
                    ("role-reported-time", "0".into()),
                    ("master-link-down-time", "0".into()),
                    (
                        "master-link-status",
                        if link_ok { "ok" } else { "err" }.into(),
                    ),
                    ("master-host", mip.clone()),
                    ("master-port", mport.clone()),
                    ("slave-priority", if m.voter { "100" } else { "0" }.into()),
                    (
                        "slave-repl-offset",
                        m.matched_index.unwrap_or(0).to_string(),
                    ),
                    ("replica-announced", "1".into()),
                ],
            )
        })
        .collect()
}

fn sentinel_fields(shared: &Shared, st: &ReplicationStatus) -> Vec<Frame> {
    st.members
        .iter()
        .filter(|m| m.id != st.node_id)
        .map(|m| {
            let runid = run_id(&st.cluster_id, m.id);
            instance_fields(
                shared,
                runid.clone(),
                &m.client_addr,
                runid,
                "sentinel",
                0,
                vec![
                    ("last-hello-message", "0".into()),
                    ("voted-leader", "?".into()),
                    ("voted-leader-epoch", "0".into()),
                ],
            )
        })
        .collect()
}

pub fn sentinel(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let shared = conn.shared.clone();
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let name_ok = |n: &Bytes| n.as_ref() == shared.config.sentinel_master_name.as_bytes();
    let st = shared.node.status();
    match (sub.as_str(), args.len()) {
        ("myid", 2) => Frame::Bulk(Bytes::from(run_id(&st.cluster_id, st.node_id))),
        ("masters", 2) => Frame::Array(master_fields(&shared, &st).into_iter().collect()),
        ("master", 3) => match (name_ok(&args[2]), master_fields(&shared, &st)) {
            (true, Some(f)) => f,
            _ => Frame::error("ERR No such master with that name"),
        },
        ("replicas" | "slaves", 3) => match name_ok(&args[2]) && st.primary_id.is_some() {
            true => Frame::Array(replica_fields(&shared, &st)),
            false => Frame::error("ERR No such master with that name"),
        },
        ("sentinels", 3) => match name_ok(&args[2]) && st.primary_id.is_some() {
            true => Frame::Array(sentinel_fields(&shared, &st)),
            false => Frame::error("ERR No such master with that name"),
        },
        ("get-master-addr-by-name", 3) => {
            match primary_of(&shared, &st).filter(|_| name_ok(&args[2])) {
                Some((_, addr, _)) => {
                    let (ip, port) = split_addr(&addr);
                    Frame::Array(vec![Frame::bulk(ip), Frame::bulk(port)])
                }
                None => Frame::NullArray,
            }
        }
        _ => Frame::Error(format!(
            "ERR Unknown sentinel subcommand '{sub}' or wrong number of arguments; Tandem serves MASTERS, MASTER, \
             REPLICAS, SLAVES, SENTINELS, GET-MASTER-ADDR-BY-NAME and MYID"
        )),
    }
}

/// Announces every change of primary this node sees on the `+switch-master` channel, until the
/// server shuts down.
pub async fn announce_switches(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut last: Option<(NodeId, String)> = None;
    loop {
        let st = shared.node.status();
        if let (Some(id), Some(addr)) = (st.primary_id, st.primary_client_addr.clone()) {
            match &last {
                Some((old_id, old_addr)) if *old_id != id => {
                    let (oip, oport) = split_addr(old_addr);
                    let (nip, nport) = split_addr(&addr);
                    let msg = format!(
                        "{} {oip} {oport} {nip} {nport}",
                        shared.config.sentinel_master_name
                    );
                    let n = shared
                        .pubsub
                        .publish(SWITCH_MASTER_CHANNEL.as_bytes(), Bytes::from(msg.clone()));
                    info!("{SWITCH_MASTER_CHANNEL} {msg} ({n} subscribers told)");
                }
                _ => {}
            }
            last = Some((id, addr));
        }
        tokio::select! {
            _ = tokio::time::sleep(SWITCH_POLL_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_look_like_sentinel_ids_and_differ_per_member() {
        let a = run_id("c1", 1);
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, run_id("c1", 2));
        assert_ne!(a, run_id("c2", 1));
        assert_eq!(a, run_id("c1", 1));
    }

    #[test]
    fn addresses_split_at_the_last_colon() {
        assert_eq!(
            split_addr("10.0.0.1:7001"),
            ("10.0.0.1".into(), "7001".into())
        );
        assert_eq!(split_addr("::1:7001"), ("::1".into(), "7001".into()));
        assert_eq!(split_addr("nohost"), ("nohost".into(), "0".into()));
    }
}
