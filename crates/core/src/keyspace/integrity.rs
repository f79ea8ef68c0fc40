//! Verification on the way out: a value whose bytes fail their checksum is never returned.
//!
//! Every command that sends stored bytes (or a length derived from them) to a client, or derives
//! a new value from them, goes through [`Integrity::verify`]. A failure becomes the reply
//! `-CORRUPT value of key '<key>' failed its <algorithm> checksum`, is counted, and is logged;
//! the server may then repair the key from another replica.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tandem_resp::Frame;

use super::entry::Entry;

/// At most this many bytes of a key are shown in a CORRUPT error or log line (keys can be
/// 512 MiB; an error reply should not be).
pub const KEY_DISPLAY_MAX_BYTES: usize = 128;

/// Corruption detections logged one by one before sampling starts.
pub const CORRUPT_LOG_BURST: u64 = 100;
/// After the burst, one detection in this many is logged (the counter has them all).
pub const CORRUPT_LOG_EVERY: u64 = 1000;

/// Counters for INFO and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityStats {
    /// Values found failing their checksum, by reads and by applies, since start (a value read
    /// N times before its repair counts N times).
    pub corrupt_detected: u64,
    /// Values restored from another node's copy with `Keyspace::repair_value`.
    pub repaired: u64,
}

#[derive(Default)]
pub struct Integrity {
    /// Atomic because reads run under a shared lock from many tasks.
    corrupt_detected: AtomicU64,
    repaired: AtomicU64,
    /// Benchmarks only (`--bench-unverified-reads`): plain reads return the stored bytes without
    /// checking them, to measure what verification costs. Never set in production: a damaged
    /// value would be returned.
    reads_unverified: AtomicBool,
}

impl Integrity {
    /// The value bytes of `entry` if they match their checksum and the key is not `diverged`
    /// (its copy known stale); otherwise counts, logs, and returns the CORRUPT error reply.
    pub fn verify<'a>(&self, entry: &'a Entry, diverged: bool) -> Result<&'a [u8], Frame> {
        match entry.verified_value() {
            Some(v) if !diverged => Ok(v),
            _ => Err(self.corrupt(entry)),
        }
    }

    fn corrupt(&self, entry: &Entry) -> Frame {
        let seen_before = self.corrupt_detected.fetch_add(1, Ordering::Relaxed);
        let key = escape_key(entry.key());
        let algorithm = entry.algorithm().map_or("unknown", |a| a.name());
        // A hot corrupt key read in a loop must not flood the log: the first
        // CORRUPT_LOG_BURST detections are logged, then one in CORRUPT_LOG_EVERY.
        if seen_before < CORRUPT_LOG_BURST || seen_before % CORRUPT_LOG_EVERY == 0 {
            tracing::error!(
                key = %key,
                algorithm = %algorithm,
                value_len = entry.raw_value().len(),
                corrupt_detected = seen_before + 1,
                "stored value failed its checksum; not returned"
            );
        }
        Frame::error(format!(
            "CORRUPT value of key '{key}' failed its {algorithm} checksum"
        ))
    }

    /// Whether plain reads skip verification (benchmarks only, see the field).
    pub fn reads_unverified(&self) -> bool {
        self.reads_unverified.load(Ordering::Relaxed)
    }

    pub fn set_reads_unverified(&self, on: bool) {
        self.reads_unverified.store(on, Ordering::Relaxed);
    }

    pub fn note_repaired(&self) {
        self.repaired.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> IntegrityStats {
        IntegrityStats {
            corrupt_detected: self.corrupt_detected.load(Ordering::Relaxed),
            repaired: self.repaired.load(Ordering::Relaxed),
        }
    }
}

/// A key made safe for an error line: printable ASCII as is (`\` and `'` escaped), other bytes as
/// `\xNN`, cut at [`KEY_DISPLAY_MAX_BYTES`] with `...`. Never contains CR or LF.
pub fn escape_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(KEY_DISPLAY_MAX_BYTES)];
    let mut s = String::with_capacity(shown.len() + 8);
    for &b in shown {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    if key.len() > KEY_DISPLAY_MAX_BYTES {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_and_cut() {
        assert_eq!(escape_key(b"user:1"), "user:1");
        assert_eq!(escape_key(b"a'b\\c"), "a\\'b\\\\c");
        assert_eq!(escape_key(b"\r\n\x00\xff"), "\\x0d\\x0a\\x00\\xff");
        let long = vec![b'k'; 1000];
        let shown = escape_key(&long);
        assert_eq!(shown.len(), KEY_DISPLAY_MAX_BYTES + 3);
        assert!(shown.ends_with("..."));
    }
}
