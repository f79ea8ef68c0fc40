//! The command table: every command Tandem serves, data and server-level, with Redis 7's
//! arity, flags, key positions, ACL categories and docs, for generic arity checks and for the
//! server's COMMAND COUNT / INFO / DOCS / LIST.
//!
//! The entries (`table/specs.rs`) are generated from redis-server 7.0's own COMMAND INFO and
//! COMMAND DOCS, plus Tandem's own commands (DIGEST.GET, DIGEST.SET, DIGEST.REPORT,
//! DIGEST.QUARANTINE, POSITION, WAITPOS, MEMBERSHIP, VERIFY) and SENTINEL written by hand.

mod specs;

use tandem_resp::Frame;

pub use specs::COMMANDS;

/// One command's description, as Redis 7's COMMAND INFO / COMMAND DOCS give it.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name (`"get"`, `"digest.get"`; subcommands `"client|id"`).
    pub name: &'static str,
    /// Redis convention: N = exactly N arguments including the name; -N = at least N.
    pub arity: i32,
    /// COMMAND INFO flags (`write`, `readonly`, `denyoom`, `fast`, `admin`, `noscript`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key argument (0 = none).
    pub first_key: i32,
    /// Position of the last key argument (-1 = the last argument).
    pub last_key: i32,
    /// Distance between key arguments (MSET: 2).
    pub step: i32,
    /// ACL categories, with their `@` (`@read`, `@string`, `@fast`).
    pub acl_categories: &'static [&'static str],
    /// COMMAND DOCS group (`string`, `generic`, `connection`, `server`, `transactions`...).
    pub group: &'static str,
    pub summary: &'static str,
    /// Redis version that introduced the command (Tandem's version for Tandem's own commands).
    pub since: &'static str,
    pub complexity: &'static str,
    /// Subcommands of container commands (CLIENT, COMMAND, CONFIG), sorted by name.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// Whether the command may change the keyspace (`write` flag).
    pub fn is_write(&self) -> bool {
        self.has_flag("write")
    }

    /// The subcommand `sub` (case-insensitive, without the `container|` prefix).
    pub fn subcommand(&self, sub: &[u8]) -> Option<&'static CommandSpec> {
        let prefix = self.name.len() + 1;
        self.subcommands.iter().find(|s| {
            s.name.len() > prefix && s.name.as_bytes()[prefix..].eq_ignore_ascii_case(sub)
        })
    }
}

/// Longest command name in the table; longer inputs cannot match.
const NAME_MAX_BYTES: usize = 32;

/// The spec of command `name` (case-insensitive). Hot path: lower-cases into a stack buffer
/// and binary-searches the sorted table, with no allocation.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > NAME_MAX_BYTES {
        return None;
    }
    let mut buf = [0u8; NAME_MAX_BYTES];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let lower: &[u8] = lower;
    COMMANDS
        .binary_search_by(|spec| spec.name.as_bytes().cmp(lower))
        .ok()
        .map(|i| &COMMANDS[i])
}

/// Whether `argc` arguments (including the command name) satisfy the spec's arity.
pub fn arity_ok(spec: &CommandSpec, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(spec.arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// `ERR wrong number of arguments for 'get' command` (`name` as the client should see it:
/// Redis shows the lower-case table name).
pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lower_case() {
        for pair in COMMANDS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} !< {}",
                pair[0].name,
                pair[1].name
            );
        }
        for spec in COMMANDS {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(spec.name.len() <= NAME_MAX_BYTES);
            assert!(
                !spec.group.is_empty() && !spec.summary.is_empty(),
                "{}",
                spec.name
            );
            for pair in spec.subcommands.windows(2) {
                assert!(pair[0].name < pair[1].name);
            }
        }
    }

    #[test]
    fn every_data_command_is_in_the_table() {
        let data = [
            "get",
            "set",
            "setnx",
            "setex",
            "psetex",
            "getset",
            "getdel",
            "getex",
            "mget",
            "mset",
            "msetnx",
            "append",
            "strlen",
            "incr",
            "decr",
            "incrby",
            "decrby",
            "incrbyfloat",
            "getrange",
            "setrange",
            "substr",
            "del",
            "unlink",
            "exists",
            "type",
            "expire",
            "pexpire",
            "expireat",
            "pexpireat",
            "expiretime",
            "pexpiretime",
            "ttl",
            "pttl",
            "persist",
            "rename",
            "renamenx",
            "keys",
            "scan",
            "randomkey",
            "dbsize",
            "flushdb",
            "flushall",
            "digest.get",
            "digest.set",
        ];
        for name in data {
            assert!(lookup(name.as_bytes()).is_some(), "{name}");
            assert!(crate::commands::is_data_command(name), "{name}");
        }
        // And every data command the parser knows is in the table.
        let parsed = COMMANDS
            .iter()
            .filter(|s| crate::commands::is_data_command(s.name))
            .count();
        assert_eq!(parsed, data.len());
        for server in [
            "ping", "echo", "hello", "auth", "select", "quit", "reset", "client", "command",
            "info", "config", "time", "shutdown", "multi", "exec", "discard", "debug", "wait",
            "role", "lastsave", "save", "bgsave",
        ] {
            assert!(lookup(server.as_bytes()).is_some(), "{server}");
            assert!(!crate::commands::is_data_command(server), "{server}");
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_rejects_unknown_names() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert_eq!(lookup(b"DIGEST.SET").map(|s| s.arity), Some(5));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(&[b'g'; 1000]).is_none());
        assert!(lookup(b"get\xff").is_none());
    }

    #[test]
    fn arity_follows_redis_convention() {
        let get = lookup(b"get").unwrap();
        assert!(arity_ok(get, 2));
        assert!(!arity_ok(get, 1) && !arity_ok(get, 3));
        let set = lookup(b"set").unwrap();
        assert!(!arity_ok(set, 2) && arity_ok(set, 3) && arity_ok(set, 9));
        assert_eq!(
            wrong_arity("get"),
            Frame::error("ERR wrong number of arguments for 'get' command")
        );
    }

    #[test]
    fn redis_specs_spot_checks() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(
            (mset.arity, mset.first_key, mset.last_key, mset.step),
            (-3, 1, -1, 2)
        );
        assert!(mset.is_write());
        let client = lookup(b"client").unwrap();
        assert_eq!(client.subcommand(b"SETNAME").map(|s| s.arity), Some(3));
        assert!(client.subcommand(b"nope").is_none());
    }
}
