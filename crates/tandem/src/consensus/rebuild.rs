//! Rebuilding a node whose own files are damaged from its peers, under its identity.
//!
//! A node whose log or snapshots fail verification refuses to start, naming the file and
//! offset. With `--rebuild-from-peers` (the operator asks) or `--on-damage rebuild` (configured
//! in advance) it instead
//! 1. moves its `log/` and `snapshots/` aside into `damaged-<unix seconds>/` (evidence is kept,
//!    never deleted) and starts with an empty log, keeping its identity file;
//! 2. refuses to vote (a node that lost its log could elect a primary lacking entries it had
//!    acknowledged) and asks the primary, found through `--initial-cluster` or `--join`, to
//!    accept the rebuild: the primary demotes it if it is a voter, then lets replication start
//!    over for it (openraft's `allow_next_revert`);
//! 3. receives a snapshot and the log like a new replica, verifying every value as it loads;
//! 4. once caught up, votes again and, if it was a voter, asks to be promoted back.
//!
//! A rebuild needs a primary that can commit the demotion without this node; with the quorum
//! depending on this node it waits (and says so in its log).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use parking_lot::Mutex;
use tandem_transport::CallOptions;
use tracing::{info, warn};

use super::membership::ask_cluster_addr;
use super::messages::{AdminOp, Hello, Request, Response};
use super::network::call;
use super::node::Node;
use super::types::NodeId;

/// Pause between attempts to reach the primary.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long the primary may take to accept a rebuild (it commits a membership change).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The rebuilt node counts as caught up when its data is at most this stale.
const CAUGHT_UP_STALENESS: Duration = Duration::from_millis(1000);

/// When a node rebuilds from its peers instead of refusing to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildMode {
    /// Refuse to start on damage (the default): the operator decides.
    Never,
    /// `--rebuild-from-peers`: rebuild now, damaged or not.
    Now,
    /// `--on-damage rebuild`: rebuild if the files fail verification at start-up.
    OnDamage,
}

/// The file that marks a rebuild in progress (durable): a restart in the middle resumes the
/// rebuild instead of starting as an ordinary member with a partial or empty log. It records
/// whether the node was a voter, to promote it back at the end.
pub const MARKER_FILE: &str = "REBUILDING";

/// The rebuild in progress in `dir`, if any: `Some(was_voter)`.
pub fn in_progress(dir: &Path) -> std::io::Result<Option<bool>> {
    match std::fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(text) => Ok(Some(text.lines().any(|l| l.trim() == "was_voter=true"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records (durably) that a rebuild is in progress, and whether the node was a voter.
pub fn mark(dir: &Path, was_voter: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(
        f,
        "# tandem: this node is rebuilding from its peers (rebuild.rs); it resumes on restart"
    )?;
    writeln!(f, "was_voter={was_voter}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MARKER_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The rebuild is over.
fn unmark(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_file(dir.join(MARKER_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Moves the log and snapshots of `dir` into `dir/damaged-<unix seconds>/`; returns that folder.
pub fn move_aside(dir: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut dest = dir.join(format!("damaged-{secs}"));
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(&dest)?;
    for sub in ["log", "snapshots"] {
        let from = dir.join(sub);
        if from.exists() {
            std::fs::rename(&from, dest.join(sub))?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(dest)
}

impl Node {
    /// Step 2-4 of the rebuild; runs until done.
    pub async fn rebuild_from_peers(self: Arc<Self>) {
        let me = self.config.node_id;
        let dir = self.config.data_dir.clone();
        let accepted_was_voter = loop {
            match self.request_rebuild().await {
                Ok(v) => break v,
                Err(e) => warn!("rebuild: {e}; retrying"),
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        };
        // A rebuild resumed after a restart finds itself already demoted: the marker remembers.
        let recorded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || in_progress(&dir))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .unwrap_or(false)
        };
        let was_voter = accepted_was_voter || recorded;
        if accepted_was_voter && !recorded {
            let dir = dir.clone();
            let saved = tokio::task::spawn_blocking(move || mark(&dir, true)).await;
            if !matches!(saved, Ok(Ok(()))) {
                warn!("rebuild: cannot record that node {me} was a voter: {saved:?}");
            }
        }
        self.rebuild_accepted.store(true, Ordering::Relaxed);
        info!("rebuild: the primary accepted; receiving the data (was a voter: {was_voter})");
        loop {
            let caught_up = self
                .status()
                .lag
                .and_then(|l| l.staleness)
                .is_some_and(|s| s <= CAUGHT_UP_STALENESS);
            if caught_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.rebuilding.store(false, Ordering::Relaxed);
        info!(
            "rebuild: caught up at index {}; node {me} votes again",
            self.applied_index()
        );
        if was_voter {
            loop {
                match self.admin(AdminOp::Promote(me)).await {
                    Ok(msg) => {
                        info!("rebuild: {msg}");
                        break;
                    }
                    Err(e) => warn!("rebuild: promoting node {me} back to voter: {e}; retrying"),
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        }
        // Removed last: a restart before this resumes the rebuild (harmless when already done).
        match tokio::task::spawn_blocking(move || unmark(&dir)).await {
            Ok(Ok(())) => info!("rebuild: done"),
            other => warn!("rebuild: cannot remove the {MARKER_FILE} marker: {other:?}"),
        }
    }

    /// Finds the primary through the configured addresses and asks it to accept the rebuild.
    async fn request_rebuild(&self) -> Result<bool, String> {
        let me = self.config.node_id;
        let mut targets: Vec<String> = self
            .config
            .initial_cluster
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(_, addr)| addr.clone())
            .collect();
        if let Some(join) = &self.config.join {
            match ask_cluster_addr(join, self.ctx.rpc_timeout).await {
                Ok(addr) => targets.push(addr),
                Err(e) => warn!("rebuild: --join {join}: {e}"),
            }
        }
        if targets.is_empty() {
            return Err(
                "no peer to rebuild from: start the node with its --initial-cluster or --join"
                    .into(),
            );
        }
        let request = Request::Admin(AdminOp::Rebuild {
            id: me,
            incarnation: self.identity.incarnation(),
        });
        let mut last_error = String::new();
        let mut queue = targets;
        let mut hops = 0;
        while let Some(target) = queue.pop() {
            hops += 1;
            if hops > 16 {
                break;
            }
            let cluster_id = self.identity.cluster_id();
            let seen: Arc<Mutex<Option<NodeId>>> = Arc::default();
            let seen2 = seen.clone();
            let peer = self.ctx.stranger(
                &target,
                Box::new(move |h: &Hello| {
                    if h.cluster_id != cluster_id {
                        return Err(format!("{} is in another cluster", h.addr.cluster_addr));
                    }
                    *seen2.lock() = Some(h.node_id);
                    Ok(())
                }),
            );
            let answer = call(&peer, &request, ACCEPT_TIMEOUT, CallOptions::default()).await;
            peer.close();
            match answer {
                Ok(Response::Rebuilt { was_voter }) => return Ok(was_voter),
                Ok(Response::NotPrimary(Some((_, addr)))) => queue.push(addr.cluster_addr),
                Ok(Response::NotPrimary(None)) => last_error = "no primary right now".into(),
                Ok(other) => last_error = format!("unexpected answer from {target}: {other:?}"),
                Err(e) => last_error = format!("{target}: {e}"),
            }
        }
        Err(format!(
            "the primary did not accept the rebuild: {last_error}"
        ))
    }

    /// The primary's side: demote the node if it votes, then let its replication start over.
    pub(crate) async fn accept_rebuild(
        &self,
        id: NodeId,
        incarnation: u64,
    ) -> Result<Response, String> {
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .clone();
        let Some(addr) = membership.get_node(&id).cloned() else {
            return Err(format!("node {id} is not a member of this cluster"));
        };
        if addr.incarnation != incarnation {
            return Err(format!(
                "node {id} answers with another data-dir incarnation than the cluster admitted: it is not the same \
                 node; remove it and add it back as a new replica"
            ));
        }
        if id == self.config.node_id {
            return Err("the primary cannot rebuild itself".into());
        }
        let was_voter = membership.voter_ids().any(|v| v == id);
        if was_voter {
            let change =
                openraft::ChangeMembers::RemoveVoters(std::collections::BTreeSet::from([id]));
            tokio::time::timeout(ACCEPT_TIMEOUT, self.raft.change_membership(change, true))
                .await
                .map_err(|_| format!("demoting node {id} was not committed in time"))?
                .map_err(|e| e.to_string())?;
            info!("rebuild: node {id} demoted to read replica while it rebuilds");
        }
        self.raft
            .trigger()
            .allow_next_revert(&id, true)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        info!("rebuild: replication to node {id} starts over");
        Ok(Response::Rebuilt { was_voter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_survives_until_the_rebuild_is_over_and_remembers_a_voter() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(in_progress(dir.path()).unwrap(), None);
        mark(dir.path(), false).unwrap();
        assert_eq!(in_progress(dir.path()).unwrap(), Some(false));
        mark(dir.path(), true).unwrap();
        assert_eq!(in_progress(dir.path()).unwrap(), Some(true));
        unmark(dir.path()).unwrap();
        assert_eq!(in_progress(dir.path()).unwrap(), None);
    }

    #[test]
    fn damaged_files_are_moved_aside_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::write(dir.path().join("log/log-1.seg"), b"damaged").unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        std::fs::write(dir.path().join("identity.toml"), b"kept").unwrap();
        let first = move_aside(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(first.join("log/log-1.seg")).unwrap(),
            b"damaged"
        );
        assert!(first.join("snapshots").exists());
        assert!(!dir.path().join("log").exists());
        assert!(dir.path().join("identity.toml").exists());
        // A second rebuild in the same second gets its own folder.
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let second = move_aside(dir.path()).unwrap();
        assert_ne!(first, second);
        assert!(second.join("log").exists());
    }
}
