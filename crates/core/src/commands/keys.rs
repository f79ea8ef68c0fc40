//! The generic key commands: DEL, UNLINK, EXISTS, TYPE, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT,
//! EXPIRETIME, PEXPIRETIME, TTL, PTTL, PERSIST, RENAME, RENAMENX, KEYS, SCAN, RANDOMKEY, DBSIZE,
//! FLUSHDB, FLUSHALL.
//!
//! Only the string type exists, so TYPE answers `string` or `none`, and SCAN's TYPE filter keeps
//! every key for `string` and none for any other name (Redis 7.0 accepts unknown type names).
//! None of these send value bytes to a client, so none verifies checksums; RENAME moves the
//! value together with its checksum, so a corrupt value stays detectably corrupt.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_resp::Frame;

use super::args::{int_arg, invalid_expire_time, is_keyword, syntax_error, TimeUnit, NO_SUCH_KEY};
use super::{Command, ParseContext, ReadCmd, WriteCmd};
use crate::glob::glob_match;
use crate::keyspace::{ApplyContext, Keyspace, NO_EXPIRY};

/// SCAN's default COUNT, as Redis.
pub const SCAN_COUNT_DEFAULT: u64 = 10;

/// Key reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyRead {
    Exists(Vec<Bytes>),
    Type(Bytes),
    /// TTL (s, relative), PTTL (ms, relative), EXPIRETIME (s, absolute), PEXPIRETIME.
    Ttl {
        key: Bytes,
        unit: TimeUnit,
        absolute: bool,
    },
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: u64,
        type_name: Option<Bytes>,
    },
    /// The seed is drawn at parse time so running the read is deterministic.
    RandomKey {
        seed: u64,
    },
    DbSize,
}

/// EXPIRE's NX / XX / GT / LT options (Redis allows XX together with GT or LT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireCondition {
    /// Only if the key has no deadline.
    pub nx: bool,
    /// Only if the key has a deadline.
    pub xx: bool,
    /// Only if the new deadline is later than the current one (no deadline = infinite).
    pub gt: bool,
    /// Only if the new deadline is earlier than the current one (no deadline = infinite).
    pub lt: bool,
}

/// Key writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyWrite {
    /// DEL and UNLINK (the same here: there is no lazy-free thread).
    Del(Vec<Bytes>),
    /// EXPIRE and friends, with the deadline already absolute (ms). A deadline `<= now` at
    /// apply deletes the key (Redis: "EXPIRE with a negative time deletes the key").
    Expire {
        key: Bytes,
        at_ms: i64,
        condition: ExpireCondition,
    },
    Persist(Bytes),
    Rename {
        from: Bytes,
        to: Bytes,
        nx: bool,
    },
    /// FLUSHDB / FLUSHALL (ASYNC and SYNC accepted, same effect).
    Flush,
}

fn as_read(cmd: KeyRead) -> Result<Command, Frame> {
    Ok(Command::Read(ReadCmd::Key(cmd)))
}

fn as_write(cmd: KeyWrite) -> Result<Command, Frame> {
    Ok(Command::Write(WriteCmd::Key(cmd)))
}

// ---- parsing (arity already checked against the command table) ----

pub fn parse_del(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(KeyWrite::Del(args[1..].to_vec()))
}

pub fn parse_exists(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(KeyRead::Exists(args[1..].to_vec()))
}

pub fn parse_type(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(KeyRead::Type(args[1].clone()))
}

/// Redis's `expireGenericCommand` argument handling: options first (`Unsupported option`,
/// then the compatibility checks), then the time, then overflow checks.
fn parse_expire_with(
    args: &[Bytes],
    ctx: &ParseContext,
    unit: TimeUnit,
    relative: bool,
    name: &str,
) -> Result<Command, Frame> {
    let mut condition = ExpireCondition::default();
    for opt in &args[3..] {
        if is_keyword(opt, "nx") {
            condition.nx = true;
        } else if is_keyword(opt, "xx") {
            condition.xx = true;
        } else if is_keyword(opt, "gt") {
            condition.gt = true;
        } else if is_keyword(opt, "lt") {
            condition.lt = true;
        } else {
            return Err(Frame::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let mut when = int_arg(&args[2])?;
    if unit == TimeUnit::Seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid_expire_time(name));
        }
        when *= 1000;
    }
    let base = if relative { ctx.now_ms } else { 0 };
    let Some(at_ms) = when.checked_add(base) else {
        return Err(invalid_expire_time(name));
    };
    as_write(KeyWrite::Expire {
        key: args[1].clone(),
        at_ms,
        condition,
    })
}

pub fn parse_expire(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_expire_with(args, ctx, TimeUnit::Seconds, true, "expire")
}

pub fn parse_pexpire(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_expire_with(args, ctx, TimeUnit::Milliseconds, true, "pexpire")
}

pub fn parse_expireat(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_expire_with(args, ctx, TimeUnit::Seconds, false, "expireat")
}

pub fn parse_pexpireat(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_expire_with(args, ctx, TimeUnit::Milliseconds, false, "pexpireat")
}

fn ttl(args: &[Bytes], unit: TimeUnit, absolute: bool) -> Result<Command, Frame> {
    as_read(KeyRead::Ttl {
        key: args[1].clone(),
        unit,
        absolute,
    })
}

pub fn parse_ttl(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    ttl(args, TimeUnit::Seconds, false)
}

pub fn parse_pttl(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    ttl(args, TimeUnit::Milliseconds, false)
}

pub fn parse_expiretime(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    ttl(args, TimeUnit::Seconds, true)
}

pub fn parse_pexpiretime(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    ttl(args, TimeUnit::Milliseconds, true)
}

pub fn parse_persist(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(KeyWrite::Persist(args[1].clone()))
}

pub fn parse_rename(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(KeyWrite::Rename {
        from: args[1].clone(),
        to: args[2].clone(),
        nx: false,
    })
}

pub fn parse_renamenx(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(KeyWrite::Rename {
        from: args[1].clone(),
        to: args[2].clone(),
        nx: true,
    })
}

pub fn parse_keys(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(KeyRead::Keys(args[1].clone()))
}

/// Redis's `parseScanCursorOrReply` (C `strtoul`): optional sign (a negative value wraps, as
/// `strtoul` does), decimal digits, no spaces, within u64; the empty string is cursor 0.
pub fn parse_cursor(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

pub fn parse_scan(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    let Some(cursor) = parse_cursor(&args[1]) else {
        return Err(Frame::error("ERR invalid cursor"));
    };
    let mut count = SCAN_COUNT_DEFAULT;
    let mut pattern = None;
    let mut type_name = None;
    let mut i = 2;
    while i < args.len() {
        let has_value = i + 1 < args.len();
        if is_keyword(&args[i], "count") && has_value {
            let n = int_arg(&args[i + 1])?;
            if n < 1 {
                return Err(syntax_error());
            }
            count = n as u64;
        } else if is_keyword(&args[i], "match") && has_value {
            // "*" matches everything: skip matching, as Redis does.
            let p = &args[i + 1];
            pattern = (p.as_ref() != b"*").then(|| p.clone());
        } else if is_keyword(&args[i], "type") && has_value {
            type_name = Some(args[i + 1].clone());
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    as_read(KeyRead::Scan {
        cursor,
        pattern,
        count,
        type_name,
    })
}

pub fn parse_randomkey(_: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(KeyRead::RandomKey {
        seed: rand::random(),
    })
}

pub fn parse_dbsize(_: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(KeyRead::DbSize)
}

pub fn parse_flush(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    match args {
        [_] => as_write(KeyWrite::Flush),
        [_, mode] if is_keyword(mode, "sync") || is_keyword(mode, "async") => {
            as_write(KeyWrite::Flush)
        }
        _ => Err(syntax_error()),
    }
}

// ---- execution ----

pub(crate) fn read(ks: &Keyspace, cmd: &KeyRead, now_ms: i64) -> Frame {
    match cmd {
        KeyRead::Exists(keys) => Frame::Integer(
            keys.iter()
                .filter(|k| ks.lookup(k, now_ms).is_some())
                .count() as i64,
        ),
        KeyRead::Type(key) => Frame::Simple(
            if ks.lookup(key, now_ms).is_some() {
                "string"
            } else {
                "none"
            }
            .to_string(),
        ),
        KeyRead::Ttl {
            key,
            unit,
            absolute,
        } => Frame::Integer(match ks.lookup(key, now_ms) {
            None => -2,
            Some(e) if !e.has_expiry() => -1,
            Some(e) => {
                let at = e.expire_at_ms();
                let ms = if *absolute {
                    at
                } else {
                    at.saturating_sub(now_ms)
                }
                .max(0);
                match unit {
                    TimeUnit::Milliseconds => ms,
                    // Redis rounds to the nearest second.
                    TimeUnit::Seconds => (ms / 1000) + i64::from(ms % 1000 >= 500),
                }
            }
        }),
        KeyRead::Keys(pattern) => {
            let all = pattern.as_ref() == b"*";
            let mut out = Vec::new();
            for e in ks.store.entries() {
                if e.is_expired(now_ms) {
                    continue;
                }
                if all || glob_match(pattern, e.key(), false) {
                    out.push(Frame::Bulk(Bytes::copy_from_slice(e.key())));
                }
            }
            Frame::Array(out)
        }
        KeyRead::Scan {
            cursor,
            pattern,
            count,
            type_name,
        } => {
            let type_ok = type_name
                .as_ref()
                .is_none_or(|t| t.eq_ignore_ascii_case(b"string"));
            let count = usize::try_from(*count).unwrap_or(usize::MAX);
            let page = ks.scan(*cursor, count, now_ms, |key| {
                type_ok && pattern.as_ref().is_none_or(|p| glob_match(p, key, false))
            });
            let mut buf = itoa::Buffer::new();
            Frame::Array(vec![
                Frame::Bulk(Bytes::copy_from_slice(
                    buf.format(page.next_cursor).as_bytes(),
                )),
                Frame::Array(page.keys.into_iter().map(Frame::Bulk).collect()),
            ])
        }
        KeyRead::RandomKey { seed } => ks
            .random_key(*seed, now_ms)
            .map_or(Frame::Null, Frame::Bulk),
        KeyRead::DbSize => Frame::Integer(ks.len() as i64),
    }
}

pub(crate) fn apply(ks: &mut Keyspace, cmd: &KeyWrite, ctx: &ApplyContext) -> Frame {
    let now = ctx.now_ms;
    match cmd {
        KeyWrite::Del(keys) => {
            let mut deleted = 0;
            for key in keys {
                if ks.lookup_for_write(key, now).is_some() {
                    ks.store.remove(key);
                    deleted += 1;
                }
            }
            Frame::Integer(deleted)
        }
        KeyWrite::Expire {
            key,
            at_ms,
            condition,
        } => {
            let Some(e) = ks.lookup_for_write(key, now) else {
                return Frame::Integer(0);
            };
            let current = e.has_expiry().then(|| e.expire_at_ms());
            let refused = (condition.nx && current.is_some())
                || (condition.xx && current.is_none())
                || (condition.gt && current.is_none_or(|c| *at_ms <= c))
                || (condition.lt && current.is_some_and(|c| *at_ms >= c));
            if refused {
                return Frame::Integer(0);
            }
            if *at_ms <= now {
                ks.store.remove(key);
            } else {
                ks.store.set_expiry(key, *at_ms);
            }
            Frame::Integer(1)
        }
        KeyWrite::Persist(key) => match ks.lookup_for_write(key, now) {
            Some(e) if e.has_expiry() => {
                ks.store.set_expiry(key, NO_EXPIRY);
                Frame::Integer(1)
            }
            _ => Frame::Integer(0),
        },
        KeyWrite::Rename { from, to, nx } => {
            if ks.lookup_for_write(from, now).is_none() {
                return Frame::error(NO_SUCH_KEY);
            }
            let reply = if *nx { Frame::Integer(1) } else { Frame::ok() };
            if from == to {
                return if *nx { Frame::Integer(0) } else { reply };
            }
            if *nx && ks.lookup_for_write(to, now).is_some() {
                return Frame::Integer(0);
            }
            // A stale copy stays known as stale under its new name.
            let diverged = ks.store.is_diverged(from);
            let Some(old) = ks.store.remove(from) else {
                return Frame::error(NO_SUCH_KEY);
            };
            // The value moves with its checksum and deadline, unverified: no bytes leave.
            ks.store.insert(old.renamed(to));
            if diverged {
                ks.store.mark_diverged(to);
            }
            reply
        }
        KeyWrite::Flush => {
            ks.clear();
            Frame::ok()
        }
    }
}

#[cfg(test)]
mod tests;
