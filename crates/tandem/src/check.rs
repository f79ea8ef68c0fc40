//! `tandem check DATA_DIR`: offline, read-only verification of a stopped node's files.
//!
//! Checks the identity file, every log record (CRC32C, decodable entry, digest of every value it
//! carries) and every snapshot (block CRC32Cs, whole-file digest, every record and value digest).
//! Nothing is modified: a torn log tail is reported, not truncated.

use std::fmt::Write as _;
use std::path::Path;

use crate::consensus::state_machine::load_snapshot_file;
use crate::consensus::types::Entry;

#[derive(Default)]
pub struct CheckReport {
    pub lines: Vec<String>,
    pub faults: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let _ = writeln!(s, "{l}");
        }
        for f in &self.faults {
            let _ = writeln!(s, "FAULT: {f}");
        }
        let _ = writeln!(
            s,
            "{}",
            if self.ok() {
                "result: OK, no fault found".to_string()
            } else {
                format!("result: {} fault(s) found", self.faults.len())
            }
        );
        s
    }
}

pub fn check(data_dir: &Path) -> CheckReport {
    let mut r = CheckReport::default();
    if !data_dir.is_dir() {
        r.faults
            .push(format!("{} is not a directory", data_dir.display()));
        return r;
    }
    let identity = data_dir.join("identity.toml");
    match std::fs::read_to_string(&identity) {
        Ok(text) => match text.parse::<toml::Table>() {
            Ok(t) if t.contains_key("cluster_id") && t.contains_key("node_id") => {
                r.lines.push(format!("identity: {} ok", identity.display()))
            }
            Ok(_) => r.faults.push(format!(
                "{}: missing cluster_id or node_id",
                identity.display()
            )),
            Err(e) => r.faults.push(format!("{}: {e}", identity.display())),
        },
        Err(e) => r.faults.push(format!("{}: {e}", identity.display())),
    }

    let log_dir = data_dir.join("log");
    if log_dir.is_dir() {
        let mut entries = 0u64;
        let mut values = 0u64;
        let result = tandem_log::verify_dir(&log_dir, |index, payload| {
            entries += 1;
            let entry: Entry = postcard::from_bytes(payload)
                .map_err(|e| format!("entry {index} does not decode: {e}"))?;
            if let openraft::EntryPayload::Normal(p) = &entry.payload {
                values += verify_batch_values(&p.0).map_err(|e| format!("entry {index}: {e}"))?;
            }
            Ok(())
        });
        match result {
            Ok(summary) => r.lines.push(format!(
                "log: {} segment(s), {entries} entries, {values} value digests verified{}",
                summary.segments,
                summary
                    .torn_tail
                    .as_ref()
                    .map(|t| format!(" (torn tail at {t}: the server truncates it at start-up)"))
                    .unwrap_or_default()
            )),
            Err(e) => r.faults.push(format!("log: {e}")),
        }
    } else {
        r.lines.push("log: none".into());
    }

    let snap_dir = data_dir.join("snapshots");
    let snapshots = if snap_dir.is_dir() {
        // Read-only: `list_snapshots` would delete leftover temp files.
        tandem_snapshot::find_snapshots(&snap_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    } else {
        Vec::new()
    };
    if snapshots.is_empty() {
        r.lines.push("snapshots: none".into());
    }
    for path in snapshots {
        match load_snapshot_file(&path, false) {
            Ok((state, meta, _)) => r.lines.push(format!(
                "snapshot: {} ok: last index {}, {} keys, every value digest verified",
                path.display(),
                meta.last_log_id.map(|l| l.index).unwrap_or(0),
                state.keyspace.len()
            )),
            Err(e) => r.faults.push(format!("snapshot: {e}")),
        }
    }
    r
}

/// Verifies the digest of every client value a logged batch carries; returns how many.
fn verify_batch_values(batch: &tandem_core::Batch) -> Result<u64, String> {
    use tandem_core::commands::{DigestWrite, StringWrite};
    use tandem_core::{Op, Value, WriteCmd};
    let mut values: Vec<(&[u8], &Value)> = Vec::new();
    for op in &batch.ops {
        let Op::Write(w) = op else { continue };
        match w {
            WriteCmd::String(StringWrite::Set(args)) => values.push((&args.key, &args.value)),
            WriteCmd::String(
                StringWrite::SetNx { key, value } | StringWrite::GetSet { key, value },
            ) => values.push((key, value)),
            WriteCmd::String(StringWrite::MSet(kvs) | StringWrite::MSetNx(kvs)) => {
                values.extend(kvs.iter().map(|(k, v)| (&k[..], v)))
            }
            WriteCmd::Digest(DigestWrite::Set { key, value }) => values.push((key, value)),
            _ => {}
        }
    }
    for (key, value) in &values {
        if !value.checksum.verify(&value.bytes) {
            return Err(format!(
                "value of key '{}' fails its {} checksum",
                String::from_utf8_lossy(key),
                value.checksum.algorithm()
            ));
        }
    }
    Ok(values.len() as u64)
}
