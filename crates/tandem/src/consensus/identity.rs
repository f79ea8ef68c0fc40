//! The data dir's identity file (`DATA_DIR/identity.toml`): which cluster and which node the data
//! belongs to, and which incarnation of that node's data dir it is.
//!
//! openraft does not notice, in release builds, a node that comes back under its old id with a
//! wiped or restored data dir (DESIGN.md, traps). The incarnation is a random number fixed when a
//! data dir is created and recorded in the cluster's membership when the node is admitted; a peer
//! whose incarnation differs from the one the membership holds is refused at connect, so a wiped
//! node is never admitted under its old id.

use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::NodeId;

pub const IDENTITY_FILE: &str = "identity.toml";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    /// Empty until the node initializes a cluster or is admitted to one.
    #[serde(default)]
    pub cluster_id: String,
    pub node_id: NodeId,
    /// Fixed when the data dir is created; 0 only in files written before incarnations existed
    /// (a new one is assigned on open).
    #[serde(default)]
    pub incarnation: u64,
}

/// The identity file of an open data dir.
pub struct IdentityFile {
    dir: PathBuf,
    current: Mutex<Identity>,
}

fn random_nonzero() -> u64 {
    loop {
        let v = rand::random::<u64>() >> 1;
        if v != 0 {
            return v;
        }
    }
}

impl IdentityFile {
    /// Reads (or, for a data dir with no data, creates) the identity file and checks it belongs
    /// to `node_id`. `has_data`: the dir already holds a log or snapshots.
    pub fn open(dir: &Path, node_id: NodeId, has_data: bool) -> io::Result<IdentityFile> {
        let path = dir.join(IDENTITY_FILE);
        let identity = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let id: Identity = toml::from_str(&text).map_err(|e| {
                    io::Error::other(format!(
                        "{} is damaged ({e}); restore it, or move the data dir away to start this node afresh",
                        path.display()
                    ))
                })?;
                if id.node_id != node_id {
                    return Err(io::Error::other(format!(
                        "data dir {} belongs to node {} (cluster {}), not node {node_id}: start with --node-id {} or \
                         use another --data-dir",
                        dir.display(),
                        id.node_id,
                        display_cluster(&id.cluster_id),
                        id.node_id
                    )));
                }
                if !id.cluster_id.is_empty() && !has_data {
                    // Its log and snapshots are gone but its identity is not: a node coming back
                    // with an empty log under an incarnation the cluster trusts could vote twice
                    // and drop entries it acknowledged.
                    return Err(io::Error::other(format!(
                        "data dir {} belongs to node {node_id} of cluster {} but its log and snapshots are gone: it will not rejoin with an empty log under its old identity. Remove node {node_id} from the cluster (`tandem cluster remove {node_id}`), then start it with an empty data dir to add it back as a new replica",
                        dir.display(),
                        id.cluster_id
                    )));
                }
                id
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if has_data {
                    return Err(io::Error::other(format!(
                        "data dir {} holds a log or snapshots but no {IDENTITY_FILE}: it may belong to another node. \
                         Restore the file, or move the data dir away to start afresh",
                        dir.display()
                    )));
                }
                Identity {
                    cluster_id: String::new(),
                    node_id,
                    incarnation: 0,
                }
            }
            Err(e) => return Err(e),
        };
        let file = IdentityFile {
            dir: dir.to_path_buf(),
            current: Mutex::new(identity.clone()),
        };
        if identity.incarnation == 0 || !path.exists() {
            let mut id = identity;
            if id.incarnation == 0 {
                id.incarnation = random_nonzero();
            }
            file.store(id)?;
        }
        Ok(file)
    }

    pub fn get(&self) -> Identity {
        self.current.lock().clone()
    }

    pub fn cluster_id(&self) -> String {
        self.current.lock().cluster_id.clone()
    }

    pub fn incarnation(&self) -> u64 {
        self.current.lock().incarnation
    }

    /// Records the cluster this node now belongs to (durable on return). Refuses to change a
    /// cluster id already set to another.
    pub fn set_cluster_id(&self, cluster_id: &str) -> io::Result<()> {
        let mut id = self.get();
        if id.cluster_id == cluster_id {
            return Ok(());
        }
        if !id.cluster_id.is_empty() {
            return Err(io::Error::other(format!(
                "this node belongs to cluster {}, not {cluster_id}",
                id.cluster_id
            )));
        }
        id.cluster_id = cluster_id.to_string();
        self.store(id)
    }

    /// Moves this node to a new cluster of its own (detach: REPLICAOF NO ONE). Durable on
    /// return; from then on members of the old cluster are refused at connect.
    pub fn replace_cluster_id(&self, cluster_id: &str) -> io::Result<()> {
        let mut id = self.get();
        id.cluster_id = cluster_id.to_string();
        self.store(id)
    }

    /// Forgets the cluster id of a node that was never admitted (its join was refused), so it
    /// can try another cluster. The caller checks the node holds no cluster state.
    pub fn clear_cluster_id(&self) -> io::Result<()> {
        let mut id = self.get();
        if id.cluster_id.is_empty() {
            return Ok(());
        }
        id.cluster_id.clear();
        self.store(id)
    }

    /// A fresh random cluster id, for a node that initializes a new cluster.
    pub fn new_cluster_id() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    fn store(&self, id: Identity) -> io::Result<()> {
        let text = toml::to_string(&id).map_err(io::Error::other)?;
        let path = self.dir.join(IDENTITY_FILE);
        let tmp = self.dir.join(format!("{IDENTITY_FILE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        *self.current.lock() = id;
        Ok(())
    }
}

pub fn display_cluster(id: &str) -> &str {
    if id.is_empty() {
        "none yet"
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_dir_gets_an_incarnation_and_no_cluster_until_told() {
        let dir = tempfile::tempdir().unwrap();
        let f = IdentityFile::open(dir.path(), 3, false).unwrap();
        assert_eq!(f.cluster_id(), "");
        let inc = f.incarnation();
        assert_ne!(inc, 0);
        f.set_cluster_id("abc").unwrap();
        let again = IdentityFile::open(dir.path(), 3, true).unwrap();
        assert_eq!(again.cluster_id(), "abc");
        assert_eq!(
            again.incarnation(),
            inc,
            "the incarnation survives a restart"
        );
        assert!(
            again.set_cluster_id("other").is_err(),
            "a cluster id never changes"
        );
        assert!(
            IdentityFile::open(dir.path(), 4, true).is_err(),
            "another node id is refused"
        );
    }

    #[test]
    fn an_identity_of_a_cluster_without_its_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        IdentityFile::open(dir.path(), 3, false)
            .unwrap()
            .set_cluster_id("abc")
            .unwrap();
        let err = IdentityFile::open(dir.path(), 3, false).err().unwrap();
        assert!(
            err.to_string().contains("log and snapshots are gone"),
            "{err}"
        );
    }

    #[test]
    fn data_without_an_identity_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = IdentityFile::open(dir.path(), 1, true).err().unwrap();
        assert!(err.to_string().contains("no identity.toml"), "{err}");
    }
}
