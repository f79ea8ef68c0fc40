//! Replication commands and the replica read rule: ROLE, WAIT, REPLICAOF, POSITION, WAITPOS,
//! MEMBERSHIP, CLIENT DURABILITY's wait, and the check every read on a replica passes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_core::Frame;

use super::connection::Conn;
use crate::config::Durability;
use crate::consensus::messages::AdminOp;
use crate::consensus::status::Role;
use crate::consensus::Node;

/// Longest WAITPOS timeout a client may ask for.
pub const WAITPOS_TIMEOUT_MAX: Duration = Duration::from_secs(60);

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn not_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

/// Splits `host:port`.
fn host_port(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (addr.to_string(), String::new()),
    }
}

/// Waits with growing pauses (from 50 µs to 1 ms) until `done` or the deadline.
async fn poll_until(deadline: Option<Instant>, mut done: impl FnMut() -> bool) -> bool {
    let mut pause = Duration::from_micros(50);
    loop {
        if done() {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// The reads-on-a-replica rule: serve only while the data is fresh enough. Ok on the primary
/// and on a standalone node.
pub fn replica_read_allowed(node: &Node, max_lag: Duration) -> Result<(), Frame> {
    if node.is_primary() || node.is_unformed_standalone() {
        return Ok(());
    }
    let lag = node.service.lag.lag(Instant::now(), node.applied_index());
    let max_ms = max_lag.as_millis();
    match (lag.staleness, lag.since_heard) {
        (Some(stale), Some(heard)) if stale <= max_lag && heard <= max_lag => Ok(()),
        (None, _) | (_, None) => Err(Frame::error(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (Tandem: this replica has \
             not heard from a primary yet)",
        )),
        (Some(stale), Some(heard)) if heard > max_lag => Err(Frame::Error(format!(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (Tandem: nothing heard \
             from the primary for {} ms, over replica-max-lag-ms {max_ms}; data may be {} ms old)",
            heard.as_millis(),
            stale.as_millis()
        ))),
        (Some(stale), _) => Err(Frame::Error(format!(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (Tandem: this replica \
             lags {} ms behind the primary, over replica-max-lag-ms {max_ms})",
            stale.as_millis()
        ))),
    }
}

/// ROLE, in Redis's reply shapes.
pub fn role(conn: &Conn) -> Frame {
    let st = conn.shared.node.status();
    let acts_as_primary =
        st.role == Role::Primary || (st.role == Role::Unformed && st.primary_id.is_none());
    match acts_as_primary {
        true => {
            let replicas = st
                .replicas()
                .map(|m| {
                    let (h, p) = host_port(&m.client_addr);
                    Frame::Array(vec![
                        Frame::bulk(h),
                        Frame::bulk(p),
                        Frame::bulk(m.matched_index.unwrap_or(0).to_string()),
                    ])
                })
                .collect();
            Frame::Array(vec![
                Frame::bulk("master"),
                Frame::Integer(st.last_log_index as i64),
                Frame::Array(replicas),
            ])
        }
        false => {
            let (h, p) = host_port(st.primary_client_addr.as_deref().unwrap_or(""));
            let link =
                if replica_read_allowed(&conn.shared.node, conn.shared.config.replica_max_lag)
                    .is_ok()
                {
                    "connected"
                } else if st.sync.in_progress {
                    "sync"
                } else {
                    "connect"
                };
            Frame::Array(vec![
                Frame::bulk("slave"),
                Frame::bulk(h),
                Frame::Integer(p.parse().unwrap_or(-1)),
                Frame::bulk(link),
                Frame::Integer(st.applied_index as i64),
            ])
        }
    }
}

/// WAIT numreplicas timeout: replicas (voting or not) that hold this connection's last write
/// durably. Like Redis, a timeout of 0 waits for as long as it takes.
pub async fn wait(conn: &Conn, args: &[Bytes]) -> Frame {
    let (Some(n), Some(timeout)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
        return not_integer();
    };
    if timeout < 0 {
        return Frame::error("ERR timeout is negative");
    }
    let node = &conn.shared.node;
    if !node.is_primary() && !node.is_unformed_standalone() {
        return Frame::error(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is \
             configured to be writable (which is not the default) writes to replicas are just local and are not \
             propagated.",
        );
    }
    let target = conn.last_write_index;
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout as u64));
    let mut count = 0usize;
    let mut deposed = false;
    poll_until(deadline, || match node.replicas_holding(target) {
        Some((have, _)) => {
            count = have;
            count as i64 >= n
        }
        // No longer the primary (or never formed): nothing more will be counted here.
        None => {
            deposed = !node.is_unformed_standalone();
            true
        }
    })
    .await;
    if deposed {
        return Frame::error("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)");
    }
    Frame::Integer(count as i64)
}

/// After a committed write at `index`, under durability `all`: waits until every replica holds
/// it durably, bounded by the write timeout.
pub async fn wait_durable_everywhere(conn: &Conn, index: u64) -> Result<(), Frame> {
    let durability = conn.durability.unwrap_or(conn.shared.config.durability);
    if durability != Durability::All {
        return Ok(());
    }
    let node = &conn.shared.node;
    let timeout = conn.shared.config.write_timeout;
    let mut seen = (0, 0);
    let ok = poll_until(Some(Instant::now() + timeout), || {
        match node.replicas_holding(index) {
            Some(s) => {
                seen = s;
                s.0 == s.1
            }
            None => false,
        }
    })
    .await;
    if ok {
        Ok(())
    } else {
        Err(Frame::Error(format!(
            "TIMEOUT the write is committed on a majority but only {} of {} replicas acknowledged it within {} ms \
             (durability all)",
            seen.0,
            seen.1,
            timeout.as_millis()
        )))
    }
}

/// POSITION: the commit position (log index) of this connection's last write, 0 if none.
pub fn position(conn: &Conn) -> Frame {
    Frame::Integer(conn.last_write_index as i64)
}

/// WAITPOS index timeout-ms: waits until this node has applied `index` (at most the timeout,
/// itself at most `WAITPOS_TIMEOUT_MAX`); answers the applied index. Reads that follow on the
/// connection see that write or a later state.
pub async fn waitpos(conn: &Conn, args: &[Bytes]) -> Frame {
    let (Some(index), Some(timeout)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
        return not_integer();
    };
    if index < 0 || timeout < 0 {
        return Frame::error("ERR position and timeout must not be negative");
    }
    let timeout = Duration::from_millis(timeout as u64);
    if timeout > WAITPOS_TIMEOUT_MAX {
        return Frame::Error(format!(
            "ERR timeout is over the limit of {} ms",
            WAITPOS_TIMEOUT_MAX.as_millis()
        ));
    }
    let node = &conn.shared.node;
    let index = index as u64;
    if poll_until(Some(Instant::now() + timeout), || {
        node.applied_index() >= index
    })
    .await
    {
        Frame::Integer(node.applied_index() as i64)
    } else {
        Frame::Error(format!(
            "TIMEOUT position {index} not applied on this node within {} ms (applied: {})",
            timeout.as_millis(),
            node.applied_index()
        ))
    }
}

/// REPLICAOF host port: a fresh node joins the cluster of the node at host:port as a read
/// replica. REPLICAOF NO ONE on a read replica detaches it as a standalone database
/// (`consensus/detach.rs`); on a primary or a standalone node it is a no-op, as in Redis.
pub async fn replicaof(conn: &Conn, args: &[Bytes]) -> Frame {
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port = String::from_utf8_lossy(&args[2]).into_owned();
    if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
        // Detach: a read replica becomes a standalone database keeping what it applied.
        return match conn.shared.node.detach().await {
            Ok(_) => Frame::ok(),
            Err(e) => Frame::Error(e),
        };
    }
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Frame::error("ERR Invalid master port");
    }
    match conn.shared.node.join(&format!("{host}:{port}")).await {
        Ok(_) => Frame::ok(),
        Err(e) => Frame::Error(e),
    }
}

/// MEMBERSHIP LIST | PROMOTE id | DEMOTE id | REMOVE id.
pub async fn membership(conn: &Conn, args: &[Bytes]) -> Frame {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let node = &conn.shared.node;
    if sub == "list" && args.len() == 2 {
        let st = node.status();
        return Frame::Array(
            st.members
                .iter()
                .map(|m| {
                    let kind = if Some(m.id) == st.primary_id {
                        "primary"
                    } else if m.voter {
                        "voter"
                    } else {
                        "read-replica"
                    };
                    Frame::Array(vec![
                        Frame::Integer(m.id as i64),
                        Frame::bulk(kind),
                        Frame::bulk(m.client_addr.clone()),
                        Frame::bulk(m.cluster_addr.clone()),
                    ])
                })
                .collect(),
        );
    }
    if args.len() != 3 {
        return Frame::Error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try MEMBERSHIP LIST, PROMOTE id, DEMOTE \
             id, REMOVE id."
        ));
    }
    let Some(id) = parse_i64(&args[2]).filter(|i| *i > 0) else {
        return Frame::error("ERR node id must be a positive integer");
    };
    let op = match sub.as_str() {
        "promote" => AdminOp::Promote(id as u64),
        "demote" => AdminOp::Demote(id as u64),
        "remove" => AdminOp::Remove(id as u64),
        _ => {
            return Frame::Error(format!(
                "ERR unknown subcommand '{sub}'. Try MEMBERSHIP LIST, PROMOTE id, DEMOTE id, REMOVE id."
            ))
        }
    };
    match node.admin(op).await {
        Ok(msg) => Frame::Simple(msg),
        Err(e) => Frame::Error(format!("ERR {e}")),
    }
}
