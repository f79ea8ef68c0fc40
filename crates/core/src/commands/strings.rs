//! The string commands: GET, SET, SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX, MGET, MSET,
//! MSETNX, APPEND, STRLEN, INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, GETRANGE (SUBSTR), SETRANGE.
//!
//! Semantics and error texts are Redis 7.0's (checked against redis-server 7.0.15). Every reply
//! that carries stored bytes or their length, and every command that derives a new value from a
//! stored one, verifies the stored checksum first: on failure the reply is the CORRUPT error and
//! nothing changes. Values derived at apply time (APPEND, INCR*, SETRANGE) get a fresh checksum
//! with the batch's algorithm.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_checksum::Checksum;
use tandem_resp::Frame;

use super::args::{
    int_arg, is_keyword, parse_i64, set_expire_deadline, syntax_error, TimeUnit, NOT_AN_INTEGER,
    NOT_A_FLOAT, OVERFLOW, STRING_MAX_BYTES, STRING_TOO_LONG,
};
use super::long_double::LongDouble;
use super::{Command, ParseContext, ReadCmd, Value, WriteCmd};
use crate::keyspace::{ApplyContext, Entry, Keyspace, NO_EXPIRY};

/// String reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StringRead {
    Get(Bytes),
    MGet(Vec<Bytes>),
    StrLen(Bytes),
    /// GETRANGE / SUBSTR with Redis's index rules (negative = from the end).
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
}

/// SET's NX / XX condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// What a SET does to the key's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No option: the key loses any deadline.
    Clear,
    /// KEEPTTL.
    Keep,
    /// EX / PX / EXAT / PXAT, made absolute (ms) at parse time. A deadline `<= now` at apply
    /// deletes the key.
    At(i64),
}

/// GETEX's option.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExExpiry {
    Unchanged,
    Persist,
    At(i64),
    /// The time argument was invalid. Redis reports that only if the key exists (a missing key
    /// replies nil first), so the error is carried to apply.
    Invalid(String),
}

/// SET and its variants (SETEX, PSETEX: `expiry` is `At`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetArgs {
    pub key: Bytes,
    pub value: Value,
    pub condition: SetCondition,
    pub expiry: SetExpiry,
    /// GET: reply with the old value instead of OK.
    pub get: bool,
}

/// String writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StringWrite {
    Set(SetArgs),
    /// SETNX: replies 1 / 0.
    SetNx {
        key: Bytes,
        value: Value,
    },
    GetSet {
        key: Bytes,
        value: Value,
    },
    GetDel(Bytes),
    GetEx {
        key: Bytes,
        expiry: GetExExpiry,
    },
    MSet(Vec<(Bytes, Value)>),
    MSetNx(Vec<(Bytes, Value)>),
    Append {
        key: Bytes,
        tail: Bytes,
    },
    /// INCR, DECR, INCRBY, DECRBY.
    IncrBy {
        key: Bytes,
        delta: i64,
    },
    /// The increment as the client sent it (validated at parse; re-parsed, deterministically,
    /// at apply, since its exact long-double value matters).
    IncrByFloat {
        key: Bytes,
        incr: Bytes,
    },
    /// SETRANGE: offset validated at parse (non-negative; with a non-empty patch, the result
    /// fits in 512 MiB).
    SetRange {
        key: Bytes,
        offset: u64,
        patch: Bytes,
    },
}

impl StringWrite {
    /// The key whose stored value this write reads, if any (see `WriteCmd::value_keys`).
    pub fn value_key(&self) -> Option<&Bytes> {
        match self {
            StringWrite::Set(s) if s.get => Some(&s.key),
            StringWrite::GetSet { key, .. }
            | StringWrite::GetDel(key)
            | StringWrite::GetEx { key, .. }
            | StringWrite::Append { key, .. }
            | StringWrite::IncrBy { key, .. }
            | StringWrite::IncrByFloat { key, .. }
            | StringWrite::SetRange { key, .. } => Some(key),
            StringWrite::Set(_)
            | StringWrite::SetNx { .. }
            | StringWrite::MSet(_)
            | StringWrite::MSetNx(_) => None,
        }
    }
}

impl StringRead {
    /// The keys whose stored value this read returns or measures (see `ReadCmd::value_keys`).
    pub fn value_keys(&self) -> Vec<&Bytes> {
        match self {
            StringRead::Get(key) | StringRead::StrLen(key) | StringRead::GetRange { key, .. } => {
                vec![key]
            }
            StringRead::MGet(keys) => keys.iter().collect(),
        }
    }
}

impl StringWrite {
    /// The values this write brings in with their checksums (see `WriteCmd::values`).
    pub fn values(&self) -> Vec<(&Bytes, &Value)> {
        match self {
            StringWrite::Set(s) => vec![(&s.key, &s.value)],
            StringWrite::SetNx { key, value } | StringWrite::GetSet { key, value } => {
                vec![(key, value)]
            }
            StringWrite::MSet(pairs) | StringWrite::MSetNx(pairs) => {
                pairs.iter().map(|(k, v)| (k, v)).collect()
            }
            StringWrite::GetDel(_)
            | StringWrite::GetEx { .. }
            | StringWrite::Append { .. }
            | StringWrite::IncrBy { .. }
            | StringWrite::IncrByFloat { .. }
            | StringWrite::SetRange { .. } => Vec::new(),
        }
    }

    pub(crate) fn values_mut(&mut self) -> Vec<&mut Value> {
        match self {
            StringWrite::Set(s) => vec![&mut s.value],
            StringWrite::SetNx { value, .. } | StringWrite::GetSet { value, .. } => vec![value],
            StringWrite::MSet(pairs) | StringWrite::MSetNx(pairs) => {
                pairs.iter_mut().map(|(_, v)| v).collect()
            }
            StringWrite::GetDel(_)
            | StringWrite::GetEx { .. }
            | StringWrite::Append { .. }
            | StringWrite::IncrBy { .. }
            | StringWrite::IncrByFloat { .. }
            | StringWrite::SetRange { .. } => Vec::new(),
        }
    }
}

fn as_read(cmd: StringRead) -> Result<Command, Frame> {
    Ok(Command::Read(ReadCmd::String(cmd)))
}

fn as_write(cmd: StringWrite) -> Result<Command, Frame> {
    Ok(Command::Write(WriteCmd::String(cmd)))
}

// ---- parsing (arity already checked against the command table) ----

pub fn parse_get(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(StringRead::Get(args[1].clone()))
}

pub fn parse_mget(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(StringRead::MGet(args[1..].to_vec()))
}

pub fn parse_strlen(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_read(StringRead::StrLen(args[1].clone()))
}

pub fn parse_getrange(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    as_read(StringRead::GetRange {
        key: args[1].clone(),
        start,
        end,
    })
}

/// Option flags of SET and GETEX, as Redis's `parseExtendedStringArgumentsOrReply` tracks them.
mod flag {
    pub const NX: u16 = 1;
    pub const XX: u16 = 2;
    pub const GET: u16 = 4;
    pub const KEEPTTL: u16 = 8;
    pub const PERSIST: u16 = 16;
    pub const EX: u16 = 32;
    pub const PX: u16 = 64;
    pub const EXAT: u16 = 128;
    pub const PXAT: u16 = 256;
    pub const ANY_TIME: u16 = EX | PX | EXAT | PXAT;
}

/// Parses SET's (from `args[3]`) or GETEX's (from `args[2]`) options with Redis's exact
/// acceptance rules: an option conflicting with an earlier one is a syntax error, repeating
/// one is not (the last time wins). Returns the flags and the time argument.
fn parse_string_options(args: &[Bytes], is_set: bool) -> Result<(u16, Option<&Bytes>), Frame> {
    use flag::*;
    let mut flags = 0u16;
    let mut time = None;
    let mut j = if is_set { 3 } else { 2 };
    while j < args.len() {
        let opt = &args[j];
        let next = args.get(j + 1);
        // A time option conflicts with KEEPTTL, PERSIST and the other time options.
        let timed = |f: u16, flags: u16| (f, flags & (KEEPTTL | PERSIST | (ANY_TIME & !f)) == 0);
        if is_set && is_keyword(opt, "nx") && flags & XX == 0 {
            flags |= NX;
        } else if is_set && is_keyword(opt, "xx") && flags & NX == 0 {
            flags |= XX;
        } else if is_set && is_keyword(opt, "get") {
            flags |= GET;
        } else if is_set && is_keyword(opt, "keepttl") && flags & (PERSIST | ANY_TIME) == 0 {
            flags |= KEEPTTL;
        } else if !is_set && is_keyword(opt, "persist") && flags & (ANY_TIME | KEEPTTL) == 0 {
            flags |= PERSIST;
        } else {
            let (f, compatible) = if is_keyword(opt, "ex") {
                timed(EX, flags)
            } else if is_keyword(opt, "px") {
                timed(PX, flags)
            } else if is_keyword(opt, "exat") {
                timed(EXAT, flags)
            } else if is_keyword(opt, "pxat") {
                timed(PXAT, flags)
            } else {
                return Err(syntax_error());
            };
            match next {
                Some(t) if compatible => {
                    flags |= f;
                    time = Some(t);
                    j += 1;
                }
                _ => return Err(syntax_error()),
            }
        }
        j += 1;
    }
    Ok((flags, time))
}

/// The absolute deadline for the time option in `flags`.
fn option_deadline(flags: u16, time: &[u8], now_ms: i64, command: &str) -> Result<i64, Frame> {
    let (unit, relative) = if flags & flag::EX != 0 {
        (TimeUnit::Seconds, true)
    } else if flags & flag::PX != 0 {
        (TimeUnit::Milliseconds, true)
    } else if flags & flag::EXAT != 0 {
        (TimeUnit::Seconds, false)
    } else {
        (TimeUnit::Milliseconds, false)
    };
    set_expire_deadline(time, unit, relative, now_ms, command)
}

pub fn parse_set(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    let (flags, time) = parse_string_options(args, true)?;
    let expiry = match time {
        Some(t) => SetExpiry::At(option_deadline(flags, t, ctx.now_ms, "set")?),
        None if flags & flag::KEEPTTL != 0 => SetExpiry::Keep,
        None => SetExpiry::Clear,
    };
    let condition = if flags & flag::NX != 0 {
        SetCondition::IfAbsent
    } else if flags & flag::XX != 0 {
        SetCondition::IfPresent
    } else {
        SetCondition::Always
    };
    as_write(StringWrite::Set(SetArgs {
        key: args[1].clone(),
        value: Value::new(ctx.algorithm, args[2].clone()),
        condition,
        expiry,
        get: flags & flag::GET != 0,
    }))
}

pub fn parse_setnx(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::SetNx {
        key: args[1].clone(),
        value: Value::new(ctx.algorithm, args[2].clone()),
    })
}

fn parse_setex_with(
    args: &[Bytes],
    ctx: &ParseContext,
    unit: TimeUnit,
    name: &str,
) -> Result<Command, Frame> {
    let at = set_expire_deadline(&args[2], unit, true, ctx.now_ms, name)?;
    as_write(StringWrite::Set(SetArgs {
        key: args[1].clone(),
        value: Value::new(ctx.algorithm, args[3].clone()),
        condition: SetCondition::Always,
        expiry: SetExpiry::At(at),
        get: false,
    }))
}

pub fn parse_setex(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_setex_with(args, ctx, TimeUnit::Seconds, "setex")
}

pub fn parse_psetex(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    parse_setex_with(args, ctx, TimeUnit::Milliseconds, "psetex")
}

pub fn parse_getset(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::GetSet {
        key: args[1].clone(),
        value: Value::new(ctx.algorithm, args[2].clone()),
    })
}

pub fn parse_getdel(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::GetDel(args[1].clone()))
}

pub fn parse_getex(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    let (flags, time) = parse_string_options(args, false)?;
    let key = args[1].clone();
    let expiry = match time {
        Some(t) => match option_deadline(flags, t, ctx.now_ms, "getex") {
            Ok(at) => GetExExpiry::At(at),
            Err(Frame::Error(e)) => GetExExpiry::Invalid(e),
            Err(other) => return Err(other),
        },
        None if flags & flag::PERSIST != 0 => GetExExpiry::Persist,
        // Plain GETEX changes nothing: serve it as a read, without a trip through the log.
        None => return as_read(StringRead::Get(key)),
    };
    as_write(StringWrite::GetEx { key, expiry })
}

fn parse_pairs(
    args: &[Bytes],
    ctx: &ParseContext,
    name: &str,
) -> Result<Vec<(Bytes, Value)>, Frame> {
    if args.len() % 2 == 0 {
        return Err(super::table::wrong_arity(name));
    }
    Ok(args[1..]
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), Value::new(ctx.algorithm, kv[1].clone())))
        .collect())
}

pub fn parse_mset(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::MSet(parse_pairs(args, ctx, "mset")?))
}

pub fn parse_msetnx(args: &[Bytes], ctx: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::MSetNx(parse_pairs(args, ctx, "msetnx")?))
}

pub fn parse_append(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    as_write(StringWrite::Append {
        key: args[1].clone(),
        tail: args[2].clone(),
    })
}

fn incr_by(args: &[Bytes], delta: i64) -> Result<Command, Frame> {
    as_write(StringWrite::IncrBy {
        key: args[1].clone(),
        delta,
    })
}

pub fn parse_incr(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    incr_by(args, 1)
}

pub fn parse_decr(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    incr_by(args, -1)
}

pub fn parse_incrby(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    incr_by(args, int_arg(&args[2])?)
}

pub fn parse_decrby(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    let by = int_arg(&args[2])?;
    if by == i64::MIN {
        return Err(Frame::error("ERR decrement would overflow"));
    }
    incr_by(args, -by)
}

pub fn parse_incrbyfloat(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    if LongDouble::parse(&args[2]).is_none() {
        return Err(Frame::error(NOT_A_FLOAT));
    }
    as_write(StringWrite::IncrByFloat {
        key: args[1].clone(),
        incr: args[2].clone(),
    })
}

pub fn parse_setrange(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    let offset = int_arg(&args[2])?;
    let Ok(offset) = u64::try_from(offset) else {
        return Err(Frame::error("ERR offset is out of range"));
    };
    let patch = args[3].clone();
    // Redis checks the size only when there is something to write (an empty patch just
    // reports the current length, whatever the offset).
    if !patch.is_empty() && offset.saturating_add(patch.len() as u64) > STRING_MAX_BYTES {
        return Err(Frame::error(STRING_TOO_LONG));
    }
    as_write(StringWrite::SetRange {
        key: args[1].clone(),
        offset,
        patch,
    })
}

// ---- execution ----

pub(crate) fn read(ks: &Keyspace, cmd: &StringRead, now_ms: i64) -> Frame {
    match cmd {
        StringRead::Get(key) => match ks.get_verified(key, now_ms) {
            Ok(Some(v)) => Frame::Bulk(Bytes::copy_from_slice(v)),
            Ok(None) => Frame::Null,
            Err(corrupt) => corrupt,
        },
        StringRead::MGet(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                match ks.get_verified(key, now_ms) {
                    Ok(Some(v)) => out.push(Frame::Bulk(Bytes::copy_from_slice(v))),
                    Ok(None) => out.push(Frame::Null),
                    // Never return the other values next to a corrupt one: the whole reply fails.
                    Err(corrupt) => return corrupt,
                }
            }
            Frame::Array(out)
        }
        StringRead::StrLen(key) => match ks.get_verified(key, now_ms) {
            Ok(v) => Frame::Integer(v.map_or(0, |v| v.len() as i64)),
            Err(corrupt) => corrupt,
        },
        StringRead::GetRange { key, start, end } => match ks.get_verified(key, now_ms) {
            Ok(v) => Frame::Bulk(Bytes::copy_from_slice(get_range(
                v.unwrap_or(&[]),
                *start,
                *end,
            ))),
            Err(corrupt) => corrupt,
        },
    }
}

/// Redis's GETRANGE index arithmetic.
fn get_range(v: &[u8], start: i64, end: i64) -> &[u8] {
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return &[];
    }
    &v[start as usize..=end as usize]
}

pub(crate) fn apply(ks: &mut Keyspace, cmd: &StringWrite, ctx: &ApplyContext) -> Frame {
    let now = ctx.now_ms;
    match cmd {
        StringWrite::Set(s) => apply_set(ks, s, now),
        StringWrite::SetNx { key, value } => {
            if ks.lookup_for_write(key, now).is_some() {
                return Frame::Integer(0);
            }
            store_new(ks, key, value, NO_EXPIRY);
            Frame::Integer(1)
        }
        StringWrite::GetSet { key, value } => match ks.get_verified_for_write(key, now) {
            Err(corrupt) => corrupt,
            Ok(old) => {
                store_new(ks, key, value, NO_EXPIRY);
                old.map_or(Frame::Null, |v| Frame::Bulk(v.into()))
            }
        },
        StringWrite::GetDel(key) => match ks.get_verified_for_write(key, now) {
            Err(corrupt) => corrupt,
            Ok(None) => Frame::Null,
            Ok(Some(v)) => {
                ks.store.remove(key);
                Frame::Bulk(v.into())
            }
        },
        StringWrite::GetEx { key, expiry } => match ks.get_verified_for_write(key, now) {
            Err(corrupt) => corrupt,
            Ok(None) => Frame::Null,
            Ok(Some(v)) => {
                match expiry {
                    GetExExpiry::Invalid(e) => return Frame::Error(e.clone()),
                    GetExExpiry::Unchanged => {}
                    GetExExpiry::Persist => {
                        ks.store.set_expiry(key, NO_EXPIRY);
                    }
                    GetExExpiry::At(at) if *at <= now => {
                        ks.store.remove(key);
                    }
                    GetExExpiry::At(at) => {
                        ks.store.set_expiry(key, *at);
                    }
                }
                Frame::Bulk(v.into())
            }
        },
        StringWrite::MSet(pairs) => {
            for (key, value) in pairs {
                store_new(ks, key, value, NO_EXPIRY);
            }
            Frame::ok()
        }
        StringWrite::MSetNx(pairs) => {
            // All or nothing: check every key (deleting expired ones) before writing any.
            let mut any_exists = false;
            for (key, _) in pairs {
                any_exists |= ks.lookup_for_write(key, now).is_some();
            }
            if any_exists {
                return Frame::Integer(0);
            }
            for (key, value) in pairs {
                store_new(ks, key, value, NO_EXPIRY);
            }
            Frame::Integer(1)
        }
        StringWrite::Append { key, tail } => match ks.get_verified_for_write(key, now) {
            Err(corrupt) => corrupt,
            Ok(None) => {
                store_derived(ks, key, tail, ctx);
                Frame::Integer(tail.len() as i64)
            }
            Ok(Some(mut v)) => {
                if (v.len() + tail.len()) as u64 > STRING_MAX_BYTES {
                    return Frame::error(STRING_TOO_LONG);
                }
                v.extend_from_slice(tail);
                store_derived(ks, key, &v, ctx);
                Frame::Integer(v.len() as i64)
            }
        },
        StringWrite::IncrBy { key, delta } => apply_incr(ks, key, *delta, ctx),
        StringWrite::IncrByFloat { key, incr } => apply_incr_float(ks, key, incr, ctx),
        StringWrite::SetRange { key, offset, patch } => {
            let old = match ks.get_verified_for_write(key, now) {
                Err(corrupt) => return corrupt,
                Ok(old) => old,
            };
            if patch.is_empty() {
                return Frame::Integer(old.map_or(0, |v| v.len() as i64));
            }
            // Parse bounded offset + patch by 512 MiB, so these fit in usize.
            let offset = *offset as usize;
            let mut v = old.unwrap_or_default();
            let end = offset + patch.len();
            if v.len() < end {
                v.resize(end, 0);
            }
            v[offset..end].copy_from_slice(patch);
            store_derived(ks, key, &v, ctx);
            Frame::Integer(v.len() as i64)
        }
    }
}

fn apply_set(ks: &mut Keyspace, s: &SetArgs, now: i64) -> Frame {
    let mut reply = Frame::ok();
    let exists = if s.get {
        match ks.get_verified_for_write(&s.key, now) {
            Err(corrupt) => return corrupt,
            Ok(old) => {
                reply = old.map_or(Frame::Null, |v| Frame::Bulk(v.into()));
                ks.store.get(&s.key).is_some()
            }
        }
    } else {
        ks.lookup_for_write(&s.key, now).is_some()
    };
    let allowed = match s.condition {
        SetCondition::Always => true,
        SetCondition::IfAbsent => !exists,
        SetCondition::IfPresent => exists,
    };
    if !allowed {
        // With GET the reply is the old value either way; without, nil.
        return if s.get { reply } else { Frame::Null };
    }
    let expire_at_ms = match s.expiry {
        SetExpiry::Clear => NO_EXPIRY,
        SetExpiry::Keep => ks.store.get(&s.key).map_or(NO_EXPIRY, |e| e.expire_at_ms()),
        SetExpiry::At(at) => at,
    };
    if expire_at_ms != NO_EXPIRY && expire_at_ms <= now {
        // A deadline already past (EXAT / PXAT): the key ends up absent.
        ks.store.remove(&s.key);
    } else {
        store_new(ks, &s.key, &s.value, expire_at_ms);
    }
    reply
}

fn apply_incr(ks: &mut Keyspace, key: &[u8], delta: i64, ctx: &ApplyContext) -> Frame {
    let old = match ks.get_verified_for_write(key, ctx.now_ms) {
        Err(corrupt) => return corrupt,
        Ok(None) => 0,
        Ok(Some(v)) => match parse_i64(&v) {
            Some(n) => n,
            None => return Frame::error(NOT_AN_INTEGER),
        },
    };
    let Some(new) = old.checked_add(delta) else {
        return Frame::error(OVERFLOW);
    };
    let mut buf = itoa::Buffer::new();
    store_derived(ks, key, buf.format(new).as_bytes(), ctx);
    Frame::Integer(new)
}

fn apply_incr_float(ks: &mut Keyspace, key: &[u8], incr: &[u8], ctx: &ApplyContext) -> Frame {
    let old = match ks.get_verified_for_write(key, ctx.now_ms) {
        Err(corrupt) => return corrupt,
        Ok(None) => LongDouble::ZERO,
        Ok(Some(v)) => match LongDouble::parse(&v) {
            Some(x) => x,
            None => return Frame::error(NOT_A_FLOAT),
        },
    };
    let Some(incr) = LongDouble::parse(incr) else {
        return Frame::error(NOT_A_FLOAT);
    };
    let Some(sum) = old.add(&incr) else {
        return Frame::error("ERR increment would produce NaN or Infinity");
    };
    let text = sum.to_human_string();
    store_derived(ks, key, text.as_bytes(), ctx);
    Frame::Bulk(Bytes::from(text))
}

/// Stores a client value with its parse-time checksum (replacing any old value and deadline).
fn store_new(ks: &mut Keyspace, key: &[u8], value: &Value, expire_at_ms: i64) {
    ks.store
        .insert(Entry::new(key, &value.bytes, &value.checksum, expire_at_ms));
}

/// Stores a value computed at apply time: a fresh checksum with the batch's algorithm; an
/// existing key keeps its deadline (Redis's dbOverwrite), a new key has none.
fn store_derived(ks: &mut Keyspace, key: &[u8], value: &[u8], ctx: &ApplyContext) {
    let checksum = Checksum::compute(ctx.algorithm, value);
    if !ks.store.replace_value(key, value, &checksum) {
        ks.store
            .insert(Entry::new(key, value, &checksum, NO_EXPIRY));
    }
}

#[cfg(test)]
mod tests;

/// Re-exported for the digest family, which stores client values the same way.
pub(crate) fn store_client_value(ks: &mut Keyspace, key: &[u8], value: &Value) {
    store_new(ks, key, value, NO_EXPIRY);
}
