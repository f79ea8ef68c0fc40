//! What a caller can tune ([`LogConfig`], [`FsyncPolicy`]) and the fixed limits that bound
//! every size the log reads from disk or accepts from a caller.

use std::fmt;
use std::str::FromStr;

/// Largest payload of one entry: a Redis string's 512 MiB plus room for the key and the
/// entry's other fields (the snapshot's `MAX_RECORD_LEN` is the same). Larger appends fail; a
/// larger length read from disk is damage, never an allocation.
pub const PAYLOAD_BYTES_MAX: usize = 513 * 1024 * 1024;

/// Largest opaque value for the vote, the committed marker and the purged log id. These hold
/// small serialized log ids; the cap keeps the meta file small and its reads bounded.
pub const OPAQUE_BYTES_MAX: usize = 64 * 1024;

/// Smallest accepted `segment_size_bytes`: room for the header and a few small records. Only
/// tests want segments this small.
pub const SEGMENT_BYTES_MIN: u64 = 128;

/// Largest accepted `segment_size_bytes`. Open reads one whole segment into memory while
/// verifying it, so this bounds the memory open needs.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Most bytes of records the writer gathers into one write before it writes and syncs. Bounds
/// the writer's buffer; batches are usually far smaller.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most requests waiting for the writer thread. A caller that finds the queue full blocks until
/// the writer catches up (back-pressure instead of unbounded memory).
pub const QUEUE_OPS_MAX: usize = 16 * 1024;

/// When an append becomes durable, and so when its `done` callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `done` runs after the batch holding the entries was written and fdatasync'ed.
    #[default]
    Always,
    /// `done` runs after write(2); a timer thread fdatasyncs once a second, so a machine crash
    /// loses at most about a second of acknowledged entries (a process crash loses none).
    EverySec,
    /// `done` runs after write(2); the operating system decides when data reaches the disk.
    No,
}

impl FsyncPolicy {
    /// The name used in configuration: `always`, `everysec` or `no` (Redis' `appendfsync`).
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of `always`, `everysec`, `no`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync policy '{0}' (expected one of: always, everysec, no)")]
pub struct UnknownFsyncPolicy(pub String);

impl FromStr for FsyncPolicy {
    type Err = UnknownFsyncPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(UnknownFsyncPolicy(s.to_string())),
        }
    }
}

/// How a [`crate::Log`] stores and caches its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Size each segment file is preallocated to (fallocate, or set_len where unsupported).
    /// A record larger than a whole segment gets a segment of its own, sized to fit.
    /// Between [`SEGMENT_BYTES_MIN`] and [`SEGMENT_BYTES_MAX`]; default 64 MiB.
    pub segment_size_bytes: u64,
    /// When appends are acknowledged; default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// Payload bytes of the most recent entries kept in memory so that reads of the tail (what
    /// replication mostly reads) never touch the disk. Entries not yet written are always kept,
    /// whatever this says. Default 64 MiB.
    pub cache_bytes_max: usize,
    /// What open does with a damaged record that is not a torn tail: `false` (default) fails
    /// with an error naming the file and offset; `true` drops the log from that record on
    /// (later segments included) and reports what it dropped. Dropping can lose acknowledged
    /// entries: only for an operator who knows the node will be repaired from its peers.
    pub force_truncate_corrupt: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            cache_bytes_max: 64 * 1024 * 1024,
            force_truncate_corrupt: false,
        }
    }
}

impl LogConfig {
    /// Checks every field is within its limits; the message says which one is not.
    pub fn validate(&self) -> Result<(), String> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_size_bytes) {
            return Err(format!(
                "segment_size_bytes is {}; it must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}",
                self.segment_size_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_its_config_names() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            assert_eq!(policy.as_str().parse::<FsyncPolicy>(), Ok(policy));
        }
        assert_eq!("EverySec".parse::<FsyncPolicy>(), Ok(FsyncPolicy::EverySec));
        let err = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert!(err.to_string().contains("always, everysec, no"), "{err}");
    }

    #[test]
    fn config_limits_are_checked() {
        assert!(LogConfig::default().validate().is_ok());
        let tiny = LogConfig {
            segment_size_bytes: SEGMENT_BYTES_MIN - 1,
            ..LogConfig::default()
        };
        assert!(tiny.validate().unwrap_err().contains("segment_size_bytes"));
        let huge = LogConfig {
            segment_size_bytes: SEGMENT_BYTES_MAX + 1,
            ..LogConfig::default()
        };
        assert!(huge.validate().is_err());
    }
}
