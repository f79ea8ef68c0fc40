//! FAILOVER: a planned switchover with Redis's syntax and replies.
//!
//! `FAILOVER [TO host port] [TIMEOUT ms] [FORCE]` hands leadership to a caught-up voter (the one
//! named, or the most caught-up one) and `FAILOVER ABORT` ends one still waiting for its target
//! (see `consensus/switchover.rs` for the steps).
//!
//! One difference from Redis: Redis answers `+OK` at once and fails over in the background;
//! Tandem answers `+OK` once the new primary has taken over, or an error saying why not (and that
//! this node is still the primary, or that the cluster elects one on its own). Without TIMEOUT
//! the switchover may take [`TIMEOUT_DEFAULT`].

use std::time::Duration;

use bytes::Bytes;
use tandem_core::Frame;

use super::connection::Conn;
use crate::consensus::switchover::SwitchoverRequest;

/// How long a FAILOVER without TIMEOUT may take.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The longest TIMEOUT accepted.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// FAILOVER's arguments, parsed the way Redis parses them.
#[derive(Debug, PartialEq)]
enum Parsed {
    Abort,
    Start {
        to: Option<(String, u16)>,
        timeout: Option<Duration>,
        force: bool,
    },
}

fn integer(b: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Frame::error("ERR value is not an integer or out of range"))
}

fn parse(args: &[Bytes]) -> Result<Parsed, Frame> {
    let syntax = || Frame::error("ERR syntax error");
    if args.len() == 2 && args[1].eq_ignore_ascii_case(b"abort") {
        return Ok(Parsed::Abort);
    }
    let (mut to, mut timeout, mut force) = (None, None, false);
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"to") && i + 2 < args.len() && to.is_none() {
            let host = String::from_utf8_lossy(&args[i + 1]).into_owned();
            let port = integer(&args[i + 2])?;
            let port = u16::try_from(port).map_err(|_| Frame::error("ERR Invalid port"))?;
            to = Some((host, port));
            i += 3;
        } else if a.eq_ignore_ascii_case(b"timeout") && i + 1 < args.len() && timeout.is_none() {
            let ms = integer(&args[i + 1])?;
            if ms <= 0 {
                return Err(Frame::error("ERR FAILOVER timeout must be greater than 0"));
            }
            let ms = Duration::from_millis(ms as u64);
            if ms > TIMEOUT_MAX {
                return Err(Frame::Error(format!(
                    "ERR FAILOVER timeout must be at most {} ms",
                    TIMEOUT_MAX.as_millis()
                )));
            }
            timeout = Some(ms);
            i += 2;
        } else if a.eq_ignore_ascii_case(b"force") && !force {
            force = true;
            i += 1;
        } else {
            return Err(syntax());
        }
    }
    Ok(Parsed::Start { to, timeout, force })
}

pub async fn failover(conn: &mut Conn, args: &[Bytes]) -> Frame {
    let node = conn.shared.node.clone();
    let (to, timeout, force) = match parse(args) {
        Err(f) => return f,
        Ok(Parsed::Abort) => {
            return match node.abort_switchover() {
                Ok(()) => Frame::ok(),
                Err(e) => Frame::error(e),
            }
        }
        Ok(Parsed::Start { to, timeout, force }) => (to, timeout, force),
    };
    if force && (to.is_none() || timeout.is_none()) {
        return Frame::error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        );
    }
    if !node.is_primary() {
        return Frame::error("ERR FAILOVER is not valid when server is a replica.");
    }
    let target = match to {
        None => None,
        Some((host, port)) => match node.member_by_client_addr(&host, port) {
            Some(id) => Some(id),
            None => return Frame::error("ERR FAILOVER target HOST and PORT is not a replica."),
        },
    };
    let req = SwitchoverRequest {
        target,
        timeout: timeout.unwrap_or(TIMEOUT_DEFAULT),
        force,
    };
    match node.switchover(req).await {
        Ok(_) => Frame::ok(),
        Err(e) => Frame::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split_whitespace()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn err(s: &str) -> String {
        match parse(&args(s)) {
            Err(Frame::Error(e)) => e,
            other => panic!("{s}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_like_redis() {
        assert_eq!(parse(&args("FAILOVER abort")), Ok(Parsed::Abort));
        assert_eq!(
            parse(&args("failover TO 10.0.0.1 7001 TIMEOUT 500 FORCE")),
            Ok(Parsed::Start {
                to: Some(("10.0.0.1".into(), 7001)),
                timeout: Some(Duration::from_millis(500)),
                force: true
            })
        );
        assert_eq!(
            parse(&args("failover")),
            Ok(Parsed::Start {
                to: None,
                timeout: None,
                force: false
            })
        );
    }

    #[test]
    fn rejects_what_redis_rejects_with_its_wording() {
        // Each reply below was recorded from redis-server 7.0.15.
        assert_eq!(err("failover abort timeout 10"), "ERR syntax error");
        assert_eq!(err("failover bogus"), "ERR syntax error");
        assert_eq!(err("failover to"), "ERR syntax error");
        assert_eq!(err("failover force force"), "ERR syntax error");
        assert_eq!(err("failover timeout 5 timeout 6"), "ERR syntax error");
        assert_eq!(err("failover to h 1 to h 2"), "ERR syntax error");
        assert_eq!(
            err("failover timeout 0"),
            "ERR FAILOVER timeout must be greater than 0"
        );
        assert_eq!(
            err("failover timeout -5"),
            "ERR FAILOVER timeout must be greater than 0"
        );
        assert_eq!(
            err("failover timeout x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err("failover to h x"),
            "ERR value is not an integer or out of range"
        );
        assert!(err("failover to h 70000").contains("port"));
        assert!(err("failover timeout 700000").contains("at most"));
    }
}
