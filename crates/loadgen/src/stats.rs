//! Latency samples and error counts, kept per connection task and merged at the end.
//!
//! Every sample is kept (nanoseconds, 8 bytes each): a 10-second run at 100k ops/s is 8 MB, and
//! exact percentiles need no bucket-width caveat in the report.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    pub fn record(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Sorts the samples; call before [`Samples::percentile_ms`].
    pub fn finish(&mut self) {
        self.nanos.sort_unstable();
    }

    /// The `p`-th percentile (0 < p <= 100) in milliseconds, nearest-rank; 0 with no samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.nanos.len() as f64).ceil() as usize;
        self.nanos[rank.clamp(1, self.nanos.len()) - 1] as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.nanos.last().map_or(0.0, |&n| n as f64 / 1e6)
    }

    pub fn mean_ms(&self) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        self.nanos.iter().map(|&n| n as f64).sum::<f64>() / self.nanos.len() as f64 / 1e6
    }
}

/// Errors by message (error replies, unexpected replies, connection failures).
#[derive(Default)]
pub struct Errors {
    by_message: BTreeMap<String, u64>,
}

impl Errors {
    pub fn add(&mut self, message: impl Into<String>) {
        let mut m: String = message.into();
        // Keep the report short when a server embeds per-request details in its errors.
        if m.len() > 160 {
            let mut cut = 160;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push_str("...");
        }
        *self.by_message.entry(m).or_default() += 1;
    }

    pub fn merge(&mut self, other: Errors) {
        for (m, n) in other.by_message {
            *self.by_message.entry(m).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_message.values().sum()
    }

    /// The most frequent messages, most frequent first.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .by_message
            .iter()
            .map(|(m, &c)| (m.as_str(), c))
            .collect();
        v.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        s.finish();
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(99.9), 100.0);
        assert_eq!(s.max_ms(), 100.0);
    }
}
