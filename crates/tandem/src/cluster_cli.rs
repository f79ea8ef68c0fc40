//! `tandem cluster <sub>`: look at and change a running cluster through any node's client port.
//!
//! - `status`: finds the primary and prints every member's role, address and replication
//!   progress as the primary sees it (its `INFO replication`).
//! - `add-replica --new HOST:PORT`: tells a running node to become a read replica of this
//!   cluster (`REPLICAOF <primary>`).
//! - `promote ID`, `demote ID`, `remove ID`: `MEMBERSHIP PROMOTE|DEMOTE|REMOVE ID`.
//! - `failover [--to ID]`: `FAILOVER [TO host port]` sent to the primary (found with
//!   `MEMBERSHIP LIST`); returns once the new primary has taken over.
//! - `detach ID`: `REPLICAOF NO ONE` sent to read replica ID: it becomes a standalone database.
//! - `verify [--no-repair] [--timeout-ms MS]`: `VERIFY` sent to the primary: every member's
//!   keyspace digest compared at one log position, differences narrowed to keys and repaired
//!   from the primary; prints the report and fails unless the cluster is clean or repaired.
//!
//! Everything goes over RESP with the small client here ([`Client`]); replies are parsed by
//! `tandem-resp`'s general reply parser. INFO parsing ([`Info`], [`MemberInfo`]) and the
//! table are pure functions, shared with `tandem up` (which waits for the cluster to form).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tandem_resp::{Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time to establish a TCP connection to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a node has to answer one command. Membership changes wait for a replica to catch up
/// and for the change to commit, so this is generous.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest reply accepted, in bytes (and so the most a reply can make this process buffer).
pub const REPLY_BYTES_MAX: usize = 64 << 20;
/// Bytes requested from the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Where `--node` points by default: a node on this machine with Redis's port.
pub const DEFAULT_NODE: &str = "127.0.0.1:6379";

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Client address of any node of the cluster.
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = DEFAULT_NODE)]
    pub node: String,
    /// The nodes' --requirepass. Also read from REDISCLI_AUTH (as redis-cli does), which keeps
    /// it out of the process list.
    #[arg(long, global = true, env = "REDISCLI_AUTH", hide_env_values = true)]
    pub password: Option<String>,
    #[command(subcommand)]
    pub command: ClusterCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show every member: role, client address and replication progress, as the primary sees it.
    Status,
    /// Make a running node (its client port is --new) a read replica of this cluster.
    AddReplica {
        /// Client address of the node to add.
        #[arg(long = "new", value_name = "HOST:PORT")]
        new: String,
    },
    /// Make read replica ID a voter (a synchronous replica that takes part in elections).
    Promote { id: u64 },
    /// Make voter ID a read replica.
    Demote { id: u64 },
    /// Remove member ID from the cluster.
    Remove { id: u64 },
    /// Hand the primary role to a caught-up voter (the most caught-up one, or --to ID) and wait
    /// until it has taken over.
    Failover {
        /// The voter that becomes the primary.
        #[arg(long = "to", value_name = "ID")]
        to: Option<u64>,
        /// Longest the switchover may take, in milliseconds. [default: 10000]
        #[arg(long = "timeout-ms")]
        timeout_ms: Option<u64>,
    },
    /// Turn read replica ID into a standalone database that keeps its data (REPLICAOF NO ONE);
    /// the cluster removes it from its membership.
    Detach { id: u64 },
    /// Compare every member's keyspace with the primary's at one log position, narrow any
    /// difference down to the keys, and repair them from the primary. Fails (exit status 1)
    /// unless every member agrees, or agrees after the repair.
    Verify {
        /// Only report what differs; change nothing.
        #[arg(long)]
        no_repair: bool,
        /// Longest wait for each member to apply each step, in milliseconds. [default: 5000]
        #[arg(long = "timeout-ms")]
        timeout_ms: Option<u64>,
    },
}

/// Runs `tandem cluster ...` on its own runtime; the exit code says whether it worked.
pub fn run(args: ClusterArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem cluster: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: ClusterArgs) -> Result<(), CliError> {
    let password = args.password.as_deref().filter(|p| !p.is_empty());
    match args.command {
        ClusterCmd::Status => {
            let (_, primary) = find_primary(&args.node, password).await?;
            print!("{}", render_status(&primary)?);
            Ok(())
        }
        ClusterCmd::AddReplica { new } => {
            let (client, primary) = find_primary(&args.node, password).await?;
            let primary_addr = advertised_client_addr(&primary).unwrap_or(client.addr);
            let (host, port) = split_host_port(&primary_addr)
                .ok_or_else(|| CliError::Cluster(format!("bad primary address {primary_addr}")))?;
            let mut new_node = connect_auth(&new, password).await?;
            let reply = new_node.call(&["REPLICAOF", host, port]).await?;
            print_reply(&new, "REPLICAOF", reply)
        }
        ClusterCmd::Promote { id } => membership(&args.node, password, "PROMOTE", id).await,
        ClusterCmd::Demote { id } => membership(&args.node, password, "DEMOTE", id).await,
        ClusterCmd::Remove { id } => membership(&args.node, password, "REMOVE", id).await,
        ClusterCmd::Failover { to, timeout_ms } => {
            let members = member_list(&args.node, password).await?;
            let primary = members
                .iter()
                .find(|m| m.1 == "primary")
                .ok_or_else(|| CliError::Cluster("the cluster has no primary right now".into()))?;
            let mut command = vec!["FAILOVER".to_string()];
            if let Some(to) = to {
                let target = members.iter().find(|m| m.0 == to).ok_or_else(|| {
                    CliError::Cluster(format!("node {to} is not a member of the cluster"))
                })?;
                let (host, port) = split_host_port(&target.2).ok_or_else(|| {
                    CliError::Cluster(format!("bad address {} for node {to}", target.2))
                })?;
                command.extend(["TO".to_string(), host.to_string(), port.to_string()]);
            }
            if let Some(ms) = timeout_ms {
                command.extend(["TIMEOUT".to_string(), ms.to_string()]);
            }
            let mut client = connect_auth(&primary.2, password).await?;
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            // The node answers within the switchover's own deadline; allow for it.
            let wait =
                Duration::from_millis(timeout_ms.unwrap_or(10_000)).saturating_add(REPLY_TIMEOUT);
            let reply = client.call_within(&args, wait).await?;
            print_reply(&primary.2, "FAILOVER", reply)
        }
        ClusterCmd::Detach { id } => {
            let members = member_list(&args.node, password).await?;
            let node = members.iter().find(|m| m.0 == id).ok_or_else(|| {
                CliError::Cluster(format!("node {id} is not a member of the cluster"))
            })?;
            let mut client = connect_auth(&node.2, password).await?;
            let reply = client.call(&["REPLICAOF", "NO", "ONE"]).await?;
            print_reply(&node.2, "REPLICAOF NO ONE", reply)
        }
        ClusterCmd::Verify {
            no_repair,
            timeout_ms,
        } => {
            let (mut client, _) = find_primary(&args.node, password).await?;
            let mut command = vec!["VERIFY".to_string()];
            if no_repair {
                command.push("NOREPAIR".into());
            }
            if let Some(ms) = timeout_ms {
                command.extend(["TIMEOUT".to_string(), ms.to_string()]);
            }
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let reply = client.call(&args).await?;
            let addr = client.addr.clone();
            let text = match &reply {
                Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
                _ => return print_reply(&addr, "VERIFY", reply),
            };
            print!("{}", text.replace("\r\n", "\n"));
            let result = text
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("result:"))
                .unwrap_or("unknown");
            match result {
                "clean" | "repaired" => Ok(()),
                other => Err(CliError::Cluster(format!(
                    "verification result: {other} (see the report above)"
                ))),
            }
        }
    }
}

/// MEMBERSHIP LIST: (id, kind, client address) per member.
async fn member_list(
    node: &str,
    password: Option<&str>,
) -> Result<Vec<(u64, String, String)>, CliError> {
    let mut client = connect_auth(node, password).await?;
    let reply = client.call(&["MEMBERSHIP", "LIST"]).await?;
    let bad = || CliError::Cluster(format!("{node} answered MEMBERSHIP LIST unexpectedly"));
    let text = |f: &Frame| match f {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(bad()),
    };
    match reply {
        Frame::Error(message) => Err(CliError::Reply {
            addr: node.to_string(),
            command: "MEMBERSHIP LIST".into(),
            message,
        }),
        Frame::Array(items) => items
            .iter()
            .map(|m| match m {
                Frame::Array(f) if f.len() >= 3 => match &f[0] {
                    Frame::Integer(id) if *id > 0 => Ok((*id as u64, text(&f[1])?, text(&f[2])?)),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

async fn membership(
    node: &str,
    password: Option<&str>,
    change: &str,
    id: u64,
) -> Result<(), CliError> {
    let mut client = connect_auth(node, password).await?;
    let reply = client
        .call(&["MEMBERSHIP", change, &id.to_string()])
        .await?;
    print_reply(node, "MEMBERSHIP", reply)
}

/// Prints a reply the way redis-cli does; an error reply is an error.
fn print_reply(addr: &str, command: &str, reply: Frame) -> Result<(), CliError> {
    if let Frame::Error(message) = reply {
        return Err(CliError::Reply {
            addr: addr.to_string(),
            command: command.to_string(),
            message,
        });
    }
    println!("{}", render_reply(&reply));
    Ok(())
}

/// A reply as redis-cli shows it (without its quoting of strings).
pub fn render_reply(frame: &Frame) -> String {
    fn go(frame: &Frame, indent: usize, out: &mut String) {
        match frame {
            Frame::Simple(s) | Frame::BigNumber(s) => out.push_str(s),
            Frame::Error(e) => {
                let _ = write!(out, "(error) {e}");
            }
            Frame::Integer(i) => {
                let _ = write!(out, "(integer) {i}");
            }
            Frame::Double(d) => {
                let _ = write!(out, "(double) {d}");
            }
            Frame::Boolean(b) => {
                let _ = write!(out, "({b})");
            }
            Frame::Bulk(b) | Frame::Verbatim(_, b) => out.push_str(&String::from_utf8_lossy(b)),
            Frame::Null | Frame::NullArray => out.push_str("(nil)"),
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                if items.is_empty() {
                    out.push_str("(empty array)");
                }
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent));
                    }
                    let label = format!("{}) ", i + 1);
                    out.push_str(&label);
                    go(item, indent + label.len(), out);
                }
            }
            Frame::Map(pairs) => {
                let flat: Vec<Frame> = pairs
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect();
                go(&Frame::Array(flat), indent, out);
            }
        }
    }
    let mut out = String::new();
    go(frame, 0, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A failure talking to a node, for the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot connect to {addr}: {source}; is a node listening there? (--node HOST:PORT)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("no connection to {addr} within {} s; is the address right and reachable?", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { addr: String },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} sent no reply within {} s", REPLY_TIMEOUT.as_secs())]
    ReplyTimeout { addr: String },
    #[error("{addr} closed the connection before replying")]
    Closed { addr: String },
    #[error("{addr} sent a reply that is not RESP: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr} refused the password: {message}; pass the nodes' --requirepass with --password or REDISCLI_AUTH")]
    Auth { addr: String, message: String },
    /// The node answered the command with an error reply.
    #[error("{addr} answered {command} with: {message}")]
    Reply {
        addr: String,
        command: String,
        message: String,
    },
    /// The cluster is not in a state the command can work with.
    #[error("{0}")]
    Cluster(String),
}

// ---------------------------------------------------------------------------------------------
// The RESP client

/// One connection to a node: send a command, read its reply.
pub struct Client {
    /// The address connected to, as given.
    pub addr: String,
    stream: TcpStream,
    /// Bytes received and not yet parsed.
    buf: BytesMut,
}

impl Client {
    /// Connects to `addr` (HOST:PORT) within [`CONNECT_TIMEOUT`].
    pub async fn connect(addr: &str) -> Result<Client, CliError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(CliError::ConnectTimeout {
                    addr: addr.to_string(),
                })
            }
            Ok(Err(source)) => {
                return Err(CliError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        Ok(Client {
            addr: addr.to_string(),
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Sends one command and returns its reply. An error reply is `Ok(Frame::Error(..))`: only
    /// the caller knows whether it is a failure.
    pub async fn call(&mut self, args: &[&str]) -> Result<Frame, CliError> {
        self.call_within(args, REPLY_TIMEOUT).await
    }

    /// [`Client::call`] with its own deadline (a command that may run longer, like FAILOVER).
    pub async fn call_within(
        &mut self,
        args: &[&str],
        reply_timeout: Duration,
    ) -> Result<Frame, CliError> {
        let io = |source| CliError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream
            .write_all(&encode_command(args))
            .await
            .map_err(io)?;
        match tokio::time::timeout(reply_timeout, self.read_reply()).await {
            Ok(reply) => reply,
            Err(_) => Err(CliError::ReplyTimeout {
                addr: self.addr.clone(),
            }),
        }
    }

    async fn read_reply(&mut self) -> Result<Frame, CliError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.advance(used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(reason) => {
                    return Err(CliError::Protocol {
                        addr: self.addr.clone(),
                        reason,
                    })
                }
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| CliError::Io {
                    addr: self.addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(CliError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }
}

/// Connects and, with a password, authenticates.
pub async fn connect_auth(addr: &str, password: Option<&str>) -> Result<Client, CliError> {
    let mut client = Client::connect(addr).await?;
    if let Some(password) = password {
        if let Frame::Error(message) = client.call(&["AUTH", password]).await? {
            return Err(CliError::Auth {
                addr: addr.to_string(),
                message,
            });
        }
    }
    Ok(client)
}

/// A command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the front of `buf`: the reply and the bytes it took, `None` while it
/// is incomplete, or why it is not acceptable (malformed, or over [`REPLY_BYTES_MAX`]).
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let limits = Limits {
        max_bulk_len: REPLY_BYTES_MAX,
        ..Limits::default()
    };
    match tandem_resp::parse_frame(buf, &limits) {
        Ok(Some((frame, used))) if used <= REPLY_BYTES_MAX => Ok(Some((frame, used))),
        Ok(Some(_)) => Err(format!("reply larger than {REPLY_BYTES_MAX} bytes")),
        Ok(None) if buf.len() > REPLY_BYTES_MAX => {
            Err(format!("reply larger than {REPLY_BYTES_MAX} bytes"))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// INFO replication

/// The `field:value` lines of an INFO reply, in order (`# Section` headers dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub fields: Vec<(String, String)>,
}

impl Info {
    pub fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Info { fields }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` if present and not empty (Tandem leaves unknown values empty).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every `tandem_member<N>` line, sorted by node id.
    pub fn members(&self) -> Result<Vec<MemberInfo>, String> {
        let mut members = self
            .fields
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("tandem_member")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(k, v)| MemberInfo::parse(v).map_err(|e| format!("{k}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by_key(|m| m.id);
        Ok(members)
    }
}

/// Splits `k=v,k=v` (INFO's nested values). A pair without `=` has an empty value.
pub fn parse_pairs(value: &str) -> Vec<(&str, &str)> {
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// One `tandem_member<N>` line: a member as the primary sees it. Progress is `None` where the
/// line leaves it empty (unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// `primary`, `voter` or `read-replica`.
    pub kind: String,
    pub client: String,
    pub cluster: String,
    pub matched_index: Option<u64>,
    pub lag_entries: Option<u64>,
    pub lag_ms: Option<u64>,
    pub last_ack_ms: Option<u64>,
    pub state: String,
}

impl MemberInfo {
    /// Parses the value of a `tandem_member<N>` line. Unknown keys are skipped, so a newer
    /// server's additions do not break an older client.
    pub fn parse(value: &str) -> Result<MemberInfo, String> {
        let mut m = MemberInfo {
            id: 0,
            kind: String::new(),
            client: String::new(),
            cluster: String::new(),
            matched_index: None,
            lag_entries: None,
            lag_ms: None,
            last_ack_ms: None,
            state: String::new(),
        };
        let mut id = None;
        for (k, v) in parse_pairs(value) {
            let number = || -> Result<Option<u64>, String> {
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse()
                    .map(Some)
                    .map_err(|_| format!("{k}={v} is not a number"))
            };
            match k {
                "id" => id = number()?,
                "kind" => m.kind = v.to_string(),
                "client" => m.client = v.to_string(),
                "cluster" => m.cluster = v.to_string(),
                "matched" => m.matched_index = number()?,
                "lag_entries" => m.lag_entries = number()?,
                "lag_ms" => m.lag_ms = number()?,
                "last_ack_ms" => m.last_ack_ms = number()?,
                "state" => m.state = v.to_string(),
                _ => {}
            }
        }
        m.id = id.ok_or_else(|| format!("no id in `{value}`"))?;
        Ok(m)
    }

    /// The role column: primary, voter or read-replica.
    pub fn role(&self) -> &str {
        if self.kind.is_empty() {
            "?"
        } else {
            &self.kind
        }
    }
}

/// Where a node says the primary is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryAt {
    /// The node is the primary.
    Here,
    /// The primary's client address, HOST:PORT.
    At(String),
    /// The node knows no primary; why, for the user.
    Unknown(String),
}

/// Where the primary is, from a node's `INFO replication`.
pub fn primary_of(info: &Info) -> PrimaryAt {
    if info.get("role") == Some("master") {
        return PrimaryAt::Here;
    }
    match (info.value("master_host"), info.value("master_port")) {
        (Some(host), Some(port)) => PrimaryAt::At(join_host_port(host, port)),
        _ => PrimaryAt::Unknown(match info.value("tandem_role") {
            Some("unformed") => "it is not a member of a cluster yet".to_string(),
            _ => "it has heard from no primary (an election may be in progress)".to_string(),
        }),
    }
}

/// The primary's client address as it advertises it (its own `tandem_member` line).
pub fn advertised_client_addr(primary: &Info) -> Option<String> {
    let id: u64 = primary.value("tandem_node_id")?.parse().ok()?;
    primary
        .members()
        .ok()?
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.client)
        .filter(|c| !c.is_empty())
}

/// `HOST:PORT`, bracketing an IPv6 host.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `HOST:PORT` (or `[V6]:PORT`) into host and port.
pub fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port))
}

/// `INFO replication` of the node at the other end.
pub async fn info_replication(client: &mut Client) -> Result<Info, CliError> {
    match client.call(&["INFO", "replication"]).await? {
        Frame::Bulk(b) | Frame::Verbatim(_, b) => Ok(Info::parse(&String::from_utf8_lossy(&b))),
        Frame::Error(message) => Err(CliError::Reply {
            addr: client.addr.clone(),
            command: "INFO replication".into(),
            message,
        }),
        other => Err(CliError::Protocol {
            addr: client.addr.clone(),
            reason: format!("INFO replied with {other:?}, not a string"),
        }),
    }
}

/// Finds the primary through the node at `node`: a connection to it and its `INFO replication`.
pub async fn find_primary(node: &str, password: Option<&str>) -> Result<(Client, Info), CliError> {
    let mut client = connect_auth(node, password).await?;
    let info = info_replication(&mut client).await?;
    let addr = match primary_of(&info) {
        PrimaryAt::Here => return Ok((client, info)),
        PrimaryAt::At(addr) => addr,
        PrimaryAt::Unknown(why) => {
            return Err(CliError::Cluster(format!(
                "{node} knows no primary: {why}; try again in a moment, or ask another node with --node"
            )))
        }
    };
    drop(client);
    let mut primary = connect_auth(&addr, password).await?;
    let info = info_replication(&mut primary).await?;
    if primary_of(&info) != PrimaryAt::Here {
        return Err(CliError::Cluster(format!(
            "{node} says the primary is {addr}, but {addr} says it is not (a failover may be in \
             progress); try again in a moment"
        )));
    }
    Ok((primary, info))
}

/// The status table from the primary's `INFO replication`.
pub fn render_status(primary: &Info) -> Result<String, CliError> {
    let members = primary
        .members()
        .map_err(|e| CliError::Cluster(format!("cannot read the primary's member list: {e}")))?;
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {}  term {}  primary node {}  committed index {}",
        or_dash(primary.value("master_replid")),
        or_dash(primary.value("tandem_term")),
        or_dash(primary.value("tandem_primary_id")),
        or_dash(primary.value("tandem_committed_index")),
    );
    let number = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut rows = vec![[
        "NODE".to_string(),
        "ROLE".to_string(),
        "CLIENT ADDR".to_string(),
        "MATCHED INDEX".to_string(),
        "LAG ENTRIES".to_string(),
        "LAG MS".to_string(),
        "STATE".to_string(),
    ]];
    for m in &members {
        rows.push([
            m.id.to_string(),
            m.role().to_string(),
            or_dash(Some(m.client.as_str()).filter(|c| !c.is_empty())),
            number(m.matched_index),
            number(m.lag_entries),
            number(m.lag_ms),
            or_dash(Some(m.state.as_str()).filter(|s| !s.is_empty())),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(bytes: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        parse_reply(bytes)
    }

    #[test]
    fn a_command_is_sent_as_an_array_of_bulk_strings() {
        assert_eq!(
            encode_command(&["MEMBERSHIP", "PROMOTE", "4"]),
            b"*3\r\n$10\r\nMEMBERSHIP\r\n$7\r\nPROMOTE\r\n$1\r\n4\r\n"
        );
        assert_eq!(
            encode_command(&["AUTH", ""]),
            b"*2\r\n$4\r\nAUTH\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn each_reply_type_parses_with_its_length() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Frame::Simple("OK".into()), 5))));
        assert_eq!(
            parse(b"-ERR no such member 9\r\n"),
            Ok(Some((Frame::Error("ERR no such member 9".into()), 23)))
        );
        assert_eq!(parse(b":-42\r\n"), Ok(Some((Frame::Integer(-42), 6))));
        assert_eq!(
            parse(b"$5\r\nhello\r\n"),
            Ok(Some((Frame::Bulk(Bytes::from_static(b"hello")), 11)))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Frame::Null, 5))));
        assert_eq!(
            parse(b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n+extra"),
            Ok(Some((
                Frame::Array(vec![
                    Frame::Array(vec![Frame::Integer(1)]),
                    Frame::Bulk(Bytes::from_static(b"x")),
                ]),
                19
            )))
        );
    }

    #[test]
    fn a_partial_reply_waits_for_more_bytes() {
        let whole = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for end in 0..whole.len() {
            assert_eq!(parse(&whole[..end]), Ok(None), "{end}");
        }
        assert!(parse(whole).unwrap().is_some());
    }

    #[test]
    fn malformed_replies_are_refused() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12x\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn a_reply_over_the_size_limit_is_refused_before_it_arrives() {
        let too_long = format!("${}\r\n", REPLY_BYTES_MAX + 1);
        assert!(parse(too_long.as_bytes()).is_err());
        let at_limit = format!("${}\r\n", REPLY_BYTES_MAX - 16);
        assert_eq!(parse(at_limit.as_bytes()), Ok(None));
    }

    #[test]
    fn replies_render_as_redis_cli_shows_them() {
        assert_eq!(render_reply(&Frame::Simple("OK".into())), "OK");
        assert_eq!(render_reply(&Frame::Integer(3)), "(integer) 3");
        assert_eq!(render_reply(&Frame::Null), "(nil)");
        let nested = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"a")),
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)]),
        ]);
        assert_eq!(
            render_reply(&nested),
            "1) a\n2) 1) (integer) 1\n   2) (integer) 2"
        );
    }

    const PRIMARY_INFO: &str = "# Replication\r\n\
        role:master\r\n\
        tandem_role:primary\r\n\
        tandem_node_id:1\r\n\
        tandem_term:3\r\n\
        tandem_primary_id:1\r\n\
        tandem_committed_index:120\r\n\
        master_replid:c0ffee\r\n\
        connected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=7002,state=online,offset=120,lag=0\r\n\
        tandem_member0:id=1,kind=primary,client=127.0.0.1:7001,cluster=127.0.0.1:17001,matched=120,lag_entries=0,lag_ms=0,last_ack_ms=0,state=online\r\n\
        tandem_member1:id=4,kind=read-replica,client=127.0.0.1:7004,cluster=127.0.0.1:17004,matched=,lag_entries=,lag_ms=,last_ack_ms=,state=wait_bgsave\r\n\
        tandem_member2:id=2,kind=voter,client=127.0.0.1:7002,cluster=127.0.0.1:17002,matched=118,lag_entries=2,lag_ms=15,last_ack_ms=15,state=online\r\n";

    #[test]
    fn info_fields_are_read_and_section_headers_skipped() {
        let info = Info::parse(PRIMARY_INFO);
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.get("master_replid"), Some("c0ffee"));
        assert_eq!(info.get("# Replication"), None);
        assert_eq!(info.fields.len(), 12);
        let replica = Info::parse("role:slave\nmaster_host:\nmaster_port:\n");
        assert_eq!(replica.get("master_host"), Some(""));
        assert_eq!(replica.value("master_host"), None);
    }

    #[test]
    fn member_lines_parse_with_unknown_progress_as_none() {
        let members = Info::parse(PRIMARY_INFO).members().unwrap();
        assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(
            members[1],
            MemberInfo {
                id: 2,
                kind: "voter".into(),
                client: "127.0.0.1:7002".into(),
                cluster: "127.0.0.1:17002".into(),
                matched_index: Some(118),
                lag_entries: Some(2),
                lag_ms: Some(15),
                last_ack_ms: Some(15),
                state: "online".into(),
            }
        );
        assert_eq!(members[2].matched_index, None);
        assert_eq!(members[2].state, "wait_bgsave");
    }

    #[test]
    fn member_lines_refuse_bad_numbers_and_skip_unknown_keys() {
        assert!(MemberInfo::parse("id=2,matched=12x").is_err());
        assert!(MemberInfo::parse("kind=voter").is_err(), "id is required");
        let m = MemberInfo::parse("id=2,future=1,kind=voter").unwrap();
        assert_eq!((m.id, m.kind.as_str()), (2, "voter"));
        assert_eq!(
            parse_pairs("a=1,b=,c"),
            vec![("a", "1"), ("b", ""), ("c", "")]
        );
    }

    #[test]
    fn the_primary_is_found_from_any_nodes_info() {
        assert_eq!(primary_of(&Info::parse(PRIMARY_INFO)), PrimaryAt::Here);
        let replica = Info::parse(
            "role:slave\r\ntandem_role:voter\r\nmaster_host:10.0.0.5\r\nmaster_port:7001\r\n",
        );
        assert_eq!(primary_of(&replica), PrimaryAt::At("10.0.0.5:7001".into()));
        let v6 = Info::parse("role:slave\nmaster_host:::1\nmaster_port:7001\n");
        assert_eq!(primary_of(&v6), PrimaryAt::At("[::1]:7001".into()));
        let lost = Info::parse("role:slave\ntandem_role:voter\nmaster_host:\nmaster_port:\n");
        assert!(matches!(primary_of(&lost), PrimaryAt::Unknown(_)));
        let unformed = Info::parse("role:slave\ntandem_role:unformed\n");
        assert!(
            matches!(primary_of(&unformed), PrimaryAt::Unknown(w) if w.contains("not a member"))
        );
    }

    #[test]
    fn the_primary_advertises_its_own_client_address() {
        let info = Info::parse(PRIMARY_INFO);
        assert_eq!(
            advertised_client_addr(&info).as_deref(),
            Some("127.0.0.1:7001")
        );
        assert_eq!(
            split_host_port("127.0.0.1:7001"),
            Some(("127.0.0.1", "7001"))
        );
        assert_eq!(split_host_port("[::1]:7001"), Some(("::1", "7001")));
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("host:"), None);
    }

    #[test]
    fn the_status_table_lists_every_member_in_id_order() {
        let table = render_status(&Info::parse(PRIMARY_INFO)).unwrap();
        let expected = "\
cluster c0ffee  term 3  primary node 1  committed index 120
NODE  ROLE          CLIENT ADDR     MATCHED INDEX  LAG ENTRIES  LAG MS  STATE
1     primary       127.0.0.1:7001  120            0            0       online
2     voter         127.0.0.1:7002  118            2            15      online
4     read-replica  127.0.0.1:7004  -              -            -       wait_bgsave
";
        assert_eq!(table, expected);
    }

    #[test]
    fn cluster_args_parse_with_global_flags_on_either_side() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ClusterArgs,
        }
        let cli = Cli::try_parse_from(["t", "status", "--node", "h:1"]).unwrap();
        assert_eq!(cli.args.node, "h:1");
        let cli = Cli::try_parse_from(["t", "--node", "h:2", "promote", "4"]).unwrap();
        assert!(matches!(cli.args.command, ClusterCmd::Promote { id: 4 }));
        let cli = Cli::try_parse_from(["t", "add-replica", "--new", "h:3"]).unwrap();
        assert!(matches!(cli.args.command, ClusterCmd::AddReplica { new } if new == "h:3"));
        assert_eq!(cli.args.node, DEFAULT_NODE);
    }
}
