//! The data commands: parsing arguments into [`Command`]s, and their semantics against the
//! keyspace.
//!
//! One file per family: `strings.rs` (GET, SET, INCR...), `keys.rs` (DEL, EXPIRE, SCAN...),
//! `digest.rs` (Tandem's DIGEST.GET / DIGEST.SET). Each family defines its own read and write
//! enums, a `parse_*` per command and the `read` / `apply` functions that run them. `args.rs`
//! holds the shared argument parsers and Redis's error texts; `table.rs` is the command table
//! (every command Tandem serves, data and server-level) used for arity checks and COMMAND.
//!
//! Where the work happens:
//! - [`parse`] runs on the connection task: it checks arity and syntax, computes the checksum of
//!   every value entering the system, and turns relative expiries into absolute deadlines, so that
//!   what goes into the replicated log is fully determined.
//! - reads run against `&Keyspace` at once; writes are applied on every node from the log.
//!
//! **Compatibility.** `WriteCmd` and `ReadCmd` are serialized (postcard) into the replicated log
//! and must stay readable by every node of a cluster: never reorder or remove variants or fields;
//! add new variants at the end.

pub mod args;
pub mod digest;
pub mod keys;
pub mod long_double;
pub mod strings;
pub mod table;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::Frame;

pub use digest::{DigestRead, DigestWrite};
pub use keys::{KeyRead, KeyWrite};
pub use strings::{StringRead, StringWrite};

/// What the connection task needs to parse a command.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext {
    /// Algorithm for the checksums of values entering the system (the node's configured one).
    pub algorithm: Algorithm,
    /// The primary's clock, for turning relative expiries (EX, PX, EXPIRE...) into deadlines.
    pub now_ms: i64,
}

/// A parsed data command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Runs at once against the keyspace (`Keyspace::read`).
    Read(ReadCmd),
    /// Becomes an `Op::Write` in a `Batch` proposed to the replicated log.
    Write(WriteCmd),
}

/// A command that never changes the keyspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReadCmd {
    String(StringRead),
    Key(KeyRead),
    Digest(DigestRead),
}

/// A command that may change the keyspace. Fully determined at parse time: applying it depends
/// only on the keyspace state and the batch (`now_ms`, `algorithm`), never on a clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WriteCmd {
    String(StringWrite),
    Key(KeyWrite),
    Digest(DigestWrite),
}

impl ReadCmd {
    /// Keys whose stored value bytes this read returns or measures (GET, MGET, STRLEN, GETRANGE,
    /// DIGEST.GET): the keys a `-CORRUPT` reply can be about, for the server to repair.
    pub fn value_keys(&self) -> Vec<&Bytes> {
        match self {
            ReadCmd::String(s) => s.value_keys(),
            ReadCmd::Digest(DigestRead::Get(key)) => vec![key],
            ReadCmd::Key(_) => Vec::new(),
        }
    }
}

impl WriteCmd {
    /// Calls `f` with every key this write names as a target (FLUSHALL names none: it ends a
    /// divergence watch by itself).
    pub fn for_each_written_key(&self, mut f: impl FnMut(&[u8])) {
        use keys::KeyWrite as K;
        use strings::StringWrite as S;
        match self {
            WriteCmd::String(c) => match c {
                S::Set(a) => f(&a.key),
                S::SetNx { key, .. }
                | S::GetSet { key, .. }
                | S::GetEx { key, .. }
                | S::Append { key, .. }
                | S::IncrBy { key, .. }
                | S::IncrByFloat { key, .. }
                | S::SetRange { key, .. }
                | S::GetDel(key) => f(key),
                S::MSet(pairs) | S::MSetNx(pairs) => pairs.iter().for_each(|(k, _)| f(k)),
            },
            WriteCmd::Key(c) => match c {
                K::Del(keys) => keys.iter().for_each(|k| f(k)),
                K::Expire { key, .. } | K::Persist(key) => f(key),
                K::Rename { from, to, .. } => {
                    f(from);
                    f(to);
                }
                K::Flush => {}
            },
            WriteCmd::Digest(DigestWrite::Set { key, .. }) => f(key),
        }
    }

    /// The values (with their keys) this write brings into the keyspace, each with the checksum
    /// computed when it entered the system: what a receiving replica verifies
    /// (`Batch::first_corrupt_value`).
    pub fn values(&self) -> Vec<(&Bytes, &Value)> {
        match self {
            WriteCmd::String(s) => s.values(),
            WriteCmd::Digest(DigestWrite::Set { key, value }) => vec![(key, value)],
            WriteCmd::Key(_) => Vec::new(),
        }
    }

    /// [`WriteCmd::values`], mutable, for fault injection.
    pub(crate) fn values_mut(&mut self) -> Vec<&mut Value> {
        match self {
            WriteCmd::String(s) => s.values_mut(),
            WriteCmd::Digest(DigestWrite::Set { value, .. }) => vec![value],
            WriteCmd::Key(_) => Vec::new(),
        }
    }

    /// Keys whose stored value bytes this write reads, to return them (GETSET, GETDEL, GETEX,
    /// SET ... GET) or to derive the new value (APPEND, INCR*, SETRANGE).
    ///
    /// The primary should check them with [`crate::Keyspace::verify_values`] before proposing:
    /// a write that would meet a corrupt local copy is then refused with CORRUPT (and the key
    /// repaired) instead of committing a write that the other nodes apply but this one cannot.
    pub fn value_keys(&self) -> Vec<&Bytes> {
        match self {
            WriteCmd::String(s) => s.value_key().into_iter().collect(),
            WriteCmd::Key(_) | WriteCmd::Digest(_) => Vec::new(),
        }
    }
}

/// A value entering the keyspace with its checksum, computed once in `parse` and then carried
/// unchanged through the log, the keyspace and snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub bytes: Bytes,
    pub checksum: Checksum,
}

impl Value {
    /// Computes the checksum of `bytes` with `algorithm`.
    pub fn new(algorithm: Algorithm, bytes: Bytes) -> Value {
        let checksum = Checksum::compute(algorithm, &bytes);
        Value { bytes, checksum }
    }
}

/// Parses a data command (name case-insensitive).
///
/// `None`: not a data command (server-level commands such as PING, INFO, MULTI are the server's,
/// and so are unknown ones). `Some(Err(frame))`: the error reply, in Redis 7's exact wording
/// (arity, syntax, bad integer, invalid expire time...).
///
/// Values get their checksum here (with `ctx.algorithm`), and relative expiries become absolute
/// deadlines using `ctx.now_ms`.
pub fn parse(args: &[Bytes], ctx: &ParseContext) -> Option<Result<Command, Frame>> {
    parse_with_spec(table::lookup(args.first()?)?, args, ctx)
}

/// [`parse`] for a caller that already looked the command up (the server does, to check
/// authentication and MULTI first): no second lookup. Dispatch is an array index, not a string
/// match, because this runs for every request.
pub fn parse_with_spec(
    spec: &'static table::CommandSpec,
    args: &[Bytes],
    ctx: &ParseContext,
) -> Option<Result<Command, Frame>> {
    let parser = parser_of(spec)?;
    if !table::arity_ok(spec, args.len()) {
        return Some(Err(table::wrong_arity(spec.name)));
    }
    Some(parser(args, ctx))
}

/// The parser of a command of the table, found by the spec's position in `COMMANDS`.
fn parser_of(spec: &'static table::CommandSpec) -> Option<Parser> {
    static PARSERS: std::sync::OnceLock<Vec<Option<Parser>>> = std::sync::OnceLock::new();
    let parsers =
        PARSERS.get_or_init(|| table::COMMANDS.iter().map(|s| parser_for(s.name)).collect());
    let offset = (spec as *const table::CommandSpec as usize)
        .wrapping_sub(table::COMMANDS.as_ptr() as usize);
    let index = offset / std::mem::size_of::<table::CommandSpec>();
    match parsers.get(index) {
        Some(p) if std::ptr::eq(&table::COMMANDS[index], spec) => *p,
        // Not an element of COMMANDS (cannot happen through `lookup`): fall back to the name.
        _ => parser_for(spec.name),
    }
}

type Parser = fn(&[Bytes], &ParseContext) -> Result<Command, Frame>;

/// The parser of each data command, by its lower-case name (as in the command table).
fn parser_for(name: &str) -> Option<Parser> {
    Some(match name {
        // strings
        "get" => strings::parse_get,
        "set" => strings::parse_set,
        "setnx" => strings::parse_setnx,
        "setex" => strings::parse_setex,
        "psetex" => strings::parse_psetex,
        "getset" => strings::parse_getset,
        "getdel" => strings::parse_getdel,
        "getex" => strings::parse_getex,
        "mget" => strings::parse_mget,
        "mset" => strings::parse_mset,
        "msetnx" => strings::parse_msetnx,
        "append" => strings::parse_append,
        "strlen" => strings::parse_strlen,
        "incr" => strings::parse_incr,
        "decr" => strings::parse_decr,
        "incrby" => strings::parse_incrby,
        "decrby" => strings::parse_decrby,
        "incrbyfloat" => strings::parse_incrbyfloat,
        "getrange" | "substr" => strings::parse_getrange,
        "setrange" => strings::parse_setrange,
        // keys
        "del" | "unlink" => keys::parse_del,
        "exists" => keys::parse_exists,
        "type" => keys::parse_type,
        "expire" => keys::parse_expire,
        "pexpire" => keys::parse_pexpire,
        "expireat" => keys::parse_expireat,
        "pexpireat" => keys::parse_pexpireat,
        "expiretime" => keys::parse_expiretime,
        "pexpiretime" => keys::parse_pexpiretime,
        "ttl" => keys::parse_ttl,
        "pttl" => keys::parse_pttl,
        "persist" => keys::parse_persist,
        "rename" => keys::parse_rename,
        "renamenx" => keys::parse_renamenx,
        "keys" => keys::parse_keys,
        "scan" => keys::parse_scan,
        "randomkey" => keys::parse_randomkey,
        "dbsize" => keys::parse_dbsize,
        "flushdb" | "flushall" => keys::parse_flush,
        // Tandem's own
        "digest.get" => digest::parse_get,
        "digest.set" => digest::parse_set,
        _ => return None,
    })
}

/// True for the names [`parse`] handles (lower-case, as in the command table).
pub fn is_data_command(name: &str) -> bool {
    parser_for(name).is_some()
}
