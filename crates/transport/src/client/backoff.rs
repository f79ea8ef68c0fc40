//! When the next connection attempt to a peer may start ([`Backoff`]). Pure: the caller passes
//! the clock in.

use std::time::Duration;

use tokio::time::Instant;

use super::Failure;

/// Exponential backoff between failed connection attempts, reset by a successful handshake.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// Wait imposed by the next failure.
    next_delay: Duration,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
    /// Why the last attempt failed, for the error of calls that cannot wait.
    last_failure: Option<Failure>,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next_delay: min,
            retry_at: None,
            last_failure: None,
        }
    }

    /// An attempt failed at `now`: the next waits, and the wait after it doubles (up to `max`).
    pub(crate) fn failed(&mut self, now: Instant, failure: Failure) {
        self.retry_at = Some(now + self.next_delay);
        self.next_delay = (self.next_delay * 2).min(self.max);
        self.last_failure = Some(failure);
    }

    /// A connection was established (or the peer's address changed): the next failure waits
    /// `min` again.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new(self.min, self.max);
    }

    /// When the next attempt may start, if that is after `now`.
    pub(crate) fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|&at| at > now)
    }

    pub(crate) fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_reset_after_success() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(10), ms(35));
        let t0 = Instant::now();
        assert_eq!(backoff.wait_until(t0), None);
        let mut waits = Vec::new();
        for _ in 0..4 {
            backoff.failed(t0, Failure::Unreachable("down".into()));
            waits.push(backoff.wait_until(t0).unwrap() - t0);
        }
        assert_eq!(waits, [ms(10), ms(20), ms(35), ms(35)]);
        assert_eq!(backoff.wait_until(t0 + ms(35)), None, "the wait is over");
        assert!(matches!(
            backoff.last_failure(),
            Some(Failure::Unreachable(r)) if r == "down"
        ));
        backoff.reset();
        assert_eq!(backoff.wait_until(t0), None);
        assert!(backoff.last_failure().is_none());
        backoff.failed(t0, Failure::Unreachable("down".into()));
        assert_eq!(backoff.wait_until(t0), Some(t0 + ms(10)));
    }
}
