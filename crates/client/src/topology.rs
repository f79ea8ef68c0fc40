//! The cluster as the client sees it: who is primary, who can serve reads, and in which order
//! reads try them. Plain data, no IO: built from a `MEMBERSHIP LIST` reply and tested without
//! a server.

use tandem_resp::Frame;

use crate::options::ReadPolicy;

/// A node's id in the cluster (the server's `--node-id`).
pub type NodeId = u64;

/// Most members accepted in one `MEMBERSHIP LIST` reply; a longer list is a bad reply.
pub const MEMBERS_MAX: usize = 1024;

/// Longest node address accepted (`host:port`).
const ADDR_MAX_BYTES: usize = 512;

/// What a node is in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Receives every write; serves linearizable reads.
    Primary,
    /// A voting (synchronous) replica: part of every write quorum, may become primary.
    Voter,
    /// A read replica: asynchronous, does not vote.
    ReadReplica,
}

impl NodeRole {
    /// The name `MEMBERSHIP LIST` uses.
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Primary => "primary",
            NodeRole::Voter => "voter",
            NodeRole::ReadReplica => "read-replica",
        }
    }

    fn from_name(name: &[u8]) -> Option<NodeRole> {
        match name {
            b"primary" => Some(NodeRole::Primary),
            b"voter" => Some(NodeRole::Voter),
            b"read-replica" => Some(NodeRole::ReadReplica),
            _ => None,
        }
    }
}

/// One node: its id, its role, and the address clients connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's id; 0 for a standalone node that has not formed a cluster yet (it has no
    /// membership to take an id from).
    pub id: NodeId,
    /// What the node is, as the node that answered `MEMBERSHIP LIST` saw it.
    pub role: NodeRole,
    /// `host:port` of the node's RESP port.
    pub addr: String,
}

/// The members of the cluster, in node id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<NodeInfo>,
}

impl Topology {
    /// Reads a `MEMBERSHIP LIST` reply: an array of `[id, kind, client_addr, cluster_addr]`.
    /// Any other shape, an unknown kind, a duplicate id, two primaries or more than
    /// [`MEMBERS_MAX`] members is an error naming what was wrong.
    pub fn from_membership(reply: &Frame) -> Result<Topology, String> {
        let Frame::Array(entries) = reply else {
            return Err(format!(
                "expected an array of members, got {}",
                describe(reply)
            ));
        };
        if entries.len() > MEMBERS_MAX {
            return Err(format!(
                "{} members, over the client's limit of {MEMBERS_MAX}",
                entries.len()
            ));
        }
        let mut nodes = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            nodes.push(member(entry).map_err(|e| format!("member {i}: {e}"))?);
        }
        nodes.sort_by_key(|n| n.id);
        if let Some(pair) = nodes.windows(2).find(|p| p[0].id == p[1].id) {
            return Err(format!("node id {} is listed twice", pair[0].id));
        }
        if nodes.iter().filter(|n| n.role == NodeRole::Primary).count() > 1 {
            return Err("more than one member is listed as primary".into());
        }
        Ok(Topology { nodes })
    }

    /// A standalone node that has not formed a cluster (its membership is empty, its `ROLE` is
    /// `master`): it is the primary and the only node.
    pub fn standalone(addr: &str) -> Topology {
        Topology {
            nodes: vec![NodeInfo {
                id: 0,
                role: NodeRole::Primary,
                addr: addr.to_string(),
            }],
        }
    }

    /// Every member, in node id order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The primary, if the node that answered knew one.
    pub fn primary(&self) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.role == NodeRole::Primary)
    }

    /// Every node but the primary (voters and read replicas), in node id order.
    pub fn replicas(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.role != NodeRole::Primary)
    }

    /// The order in which a read tries nodes under `policy`; a verified read walks all of it.
    ///
    /// - `Primary`: the primary, then the replicas in id order.
    /// - `AnyReplica` and `RoundRobin`: the replicas starting at `turn` modulo their number
    ///   and wrapping around, then the primary. The caller passes a per-client random number
    ///   for `AnyReplica` (one sticky replica) and a counter for `RoundRobin` (the next one).
    ///
    /// A node appears at most once. With no primary known, the primary's place is skipped.
    pub fn read_order(&self, policy: ReadPolicy, turn: usize) -> Vec<NodeInfo> {
        let replicas: Vec<&NodeInfo> = self.replicas().collect();
        let primary = self.primary();
        let mut order: Vec<NodeInfo> = Vec::with_capacity(self.nodes.len());
        match policy {
            ReadPolicy::Primary => {
                order.extend(primary.cloned());
                order.extend(replicas.into_iter().cloned());
            }
            ReadPolicy::AnyReplica | ReadPolicy::RoundRobin => {
                if !replicas.is_empty() {
                    let start = turn % replicas.len();
                    order.extend(replicas[start..].iter().map(|n| (*n).clone()));
                    order.extend(replicas[..start].iter().map(|n| (*n).clone()));
                }
                order.extend(primary.cloned());
            }
        }
        order
    }
}

fn member(entry: &Frame) -> Result<NodeInfo, String> {
    let Frame::Array(fields) = entry else {
        return Err(format!("expected an array, got {}", describe(entry)));
    };
    if fields.len() < 3 {
        return Err(format!(
            "expected [id, kind, client address, cluster address], got {} fields",
            fields.len()
        ));
    }
    let id = match &fields[0] {
        Frame::Integer(id) if *id >= 0 => *id as NodeId,
        other => {
            return Err(format!(
                "node id: expected a non-negative integer, got {}",
                describe(other)
            ))
        }
    };
    let kind = text(&fields[1])
        .ok_or_else(|| format!("kind: expected a string, got {}", describe(&fields[1])))?;
    let role = NodeRole::from_name(kind)
        .ok_or_else(|| format!("unknown kind '{}'", String::from_utf8_lossy(kind)))?;
    let addr = text(&fields[2]).ok_or_else(|| {
        format!(
            "client address: expected a string, got {}",
            describe(&fields[2])
        )
    })?;
    let addr = std::str::from_utf8(addr)
        .ok()
        .filter(|a| !a.is_empty() && a.len() <= ADDR_MAX_BYTES && a.contains(':'))
        .ok_or_else(|| {
            format!(
                "client address '{}' is not host:port",
                String::from_utf8_lossy(addr)
            )
        })?;
    Ok(NodeInfo {
        id,
        role,
        addr: addr.to_string(),
    })
}

/// The bytes of a string reply, whichever of RESP's string types carries it.
pub(crate) fn text(frame: &Frame) -> Option<&[u8]> {
    match frame {
        Frame::Bulk(b) => Some(b),
        Frame::Simple(s) => Some(s.as_bytes()),
        Frame::Verbatim(_, b) => Some(b),
        _ => None,
    }
}

/// A short description of a reply for error messages: its type, and its text for errors.
pub(crate) fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Simple(s) => format!("the simple string '{}'", clip(s)),
        Frame::Error(e) => format!("the error '{}'", clip(e)),
        Frame::Integer(n) => format!("the integer {n}"),
        Frame::Bulk(b) => format!("a {}-byte bulk string", b.len()),
        Frame::Null => "a null".into(),
        Frame::NullArray => "a null array".into(),
        Frame::Array(a) => format!("an array of {}", a.len()),
        Frame::Map(m) => format!("a map of {}", m.len()),
        Frame::Set(s) => format!("a set of {}", s.len()),
        Frame::Double(d) => format!("the double {d}"),
        Frame::Boolean(b) => format!("the boolean {b}"),
        Frame::Verbatim(_, b) => format!("a {}-byte verbatim string", b.len()),
        Frame::BigNumber(n) => format!("the big number {}", clip(n)),
        Frame::Push(p) => format!("a push of {}", p.len()),
    }
}

/// Server text shown in an error, cut short so a huge reply cannot flood a log line.
fn clip(s: &str) -> &str {
    const SHOWN_MAX_BYTES: usize = 200;
    if s.len() <= SHOWN_MAX_BYTES {
        return s;
    }
    let mut end = SHOWN_MAX_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, kind: &str, port: u16) -> Frame {
        Frame::Array(vec![
            Frame::Integer(id),
            Frame::bulk(kind.to_string()),
            Frame::bulk(format!("127.0.0.1:{port}")),
            Frame::bulk(format!("127.0.0.1:{}", port + 10000)),
        ])
    }

    /// Primary 2, voters 1 and 3, read replicas 4 and 5, listed out of order.
    fn five() -> Topology {
        Topology::from_membership(&Frame::Array(vec![
            entry(4, "read-replica", 7004),
            entry(2, "primary", 7002),
            entry(1, "voter", 7001),
            entry(5, "read-replica", 7005),
            entry(3, "voter", 7003),
        ]))
        .unwrap()
    }

    fn ids(order: &[NodeInfo]) -> Vec<NodeId> {
        order.iter().map(|n| n.id).collect()
    }

    #[test]
    fn membership_list_is_read_in_id_order() {
        let t = five();
        assert_eq!(ids(t.nodes()), [1, 2, 3, 4, 5]);
        let p = t.primary().unwrap();
        assert_eq!(
            (p.id, p.role, p.addr.as_str()),
            (2, NodeRole::Primary, "127.0.0.1:7002")
        );
        assert_eq!(t.replicas().map(|n| n.id).collect::<Vec<_>>(), [1, 3, 4, 5]);
        assert_eq!(t.nodes()[3].role, NodeRole::ReadReplica);
        assert_eq!(t.nodes()[0].role, NodeRole::Voter);
    }

    #[test]
    fn read_order_per_policy() {
        let t = five();
        assert_eq!(ids(&t.read_order(ReadPolicy::Primary, 3)), [2, 1, 3, 4, 5]);
        assert_eq!(
            ids(&t.read_order(ReadPolicy::RoundRobin, 0)),
            [1, 3, 4, 5, 2]
        );
        assert_eq!(
            ids(&t.read_order(ReadPolicy::RoundRobin, 1)),
            [3, 4, 5, 1, 2]
        );
        assert_eq!(
            ids(&t.read_order(ReadPolicy::RoundRobin, 6)),
            [4, 5, 1, 3, 2]
        );
        assert_eq!(
            ids(&t.read_order(ReadPolicy::AnyReplica, 3)),
            [5, 1, 3, 4, 2]
        );
        // Successive turns start on every replica once before repeating.
        let firsts: Vec<NodeId> = (0..8)
            .map(|turn| t.read_order(ReadPolicy::RoundRobin, turn)[0].id)
            .collect();
        assert_eq!(firsts, [1, 3, 4, 5, 1, 3, 4, 5]);
    }

    #[test]
    fn read_order_without_primary_or_replicas() {
        let no_primary = Topology::from_membership(&Frame::Array(vec![
            entry(1, "voter", 7001),
            entry(2, "voter", 7002),
        ]))
        .unwrap();
        assert!(no_primary.primary().is_none());
        assert_eq!(ids(&no_primary.read_order(ReadPolicy::Primary, 0)), [1, 2]);
        assert_eq!(
            ids(&no_primary.read_order(ReadPolicy::RoundRobin, 1)),
            [2, 1]
        );

        let alone = Topology::standalone("localhost:6379");
        for policy in [
            ReadPolicy::Primary,
            ReadPolicy::AnyReplica,
            ReadPolicy::RoundRobin,
        ] {
            assert_eq!(ids(&alone.read_order(policy, 7)), [0], "{policy:?}");
        }
        assert!(Topology::default()
            .read_order(ReadPolicy::RoundRobin, 0)
            .is_empty());
    }

    #[test]
    fn bad_membership_replies_are_errors_not_panics() {
        let cases: Vec<(Frame, &str)> = vec![
            (Frame::Error("ERR nope".into()), "expected an array"),
            (Frame::NullArray, "expected an array"),
            (
                Frame::Array(vec![Frame::Integer(1)]),
                "member 0: expected an array",
            ),
            (
                Frame::Array(vec![Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::bulk("voter"),
                ])]),
                "2 fields",
            ),
            (Frame::Array(vec![entry(-1, "voter", 1)]), "non-negative"),
            (
                Frame::Array(vec![entry(1, "observer", 1)]),
                "unknown kind 'observer'",
            ),
            (
                Frame::Array(vec![Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::bulk("voter"),
                    Frame::bulk("no-port"),
                    Frame::bulk(""),
                ])]),
                "not host:port",
            ),
            (
                Frame::Array(vec![Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Integer(2),
                    Frame::bulk("a:1"),
                    Frame::bulk(""),
                ])]),
                "kind: expected a string",
            ),
            (
                Frame::Array(vec![entry(1, "voter", 1), entry(1, "voter", 2)]),
                "listed twice",
            ),
            (
                Frame::Array(vec![entry(1, "primary", 1), entry(2, "primary", 2)]),
                "more than one",
            ),
            (
                Frame::Array(
                    (0..=MEMBERS_MAX as i64)
                        .map(|i| entry(i, "voter", 1))
                        .collect(),
                ),
                "over the client's limit",
            ),
        ];
        for (reply, want) in cases {
            let err = Topology::from_membership(&reply).unwrap_err();
            assert!(err.contains(want), "{reply:?}: {err}");
        }
    }

    #[test]
    fn simple_strings_and_extra_fields_are_accepted() {
        let t = Topology::from_membership(&Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(9),
            Frame::Simple("primary".into()),
            Frame::Simple("db.example:6379".into()),
            Frame::bulk("db.example:16379"),
            Frame::bulk("a field from a newer server"),
        ])]))
        .unwrap();
        assert_eq!(
            t.primary().map(|p| p.addr.as_str()),
            Some("db.example:6379")
        );
    }
}
