//! Rate limits on the caller's clock: a token bucket, and at most one log line per key (a
//! host, a source address) per interval, so that what a stranger sends can be counted
//! without limit but logged only within a bound.
//!
//! Hand-written: the limiters on crates.io (governor) keep their own clock; these take
//! the caller's time (the state machines are sans-IO and tested on simulated time), and
//! the log limiter needs a hard bound on the keys it remembers, nothing more.

use crate::hash::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: `rate` per second, at most `burst` at once.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    tokens: f64,
    #[serde(with = "crate::mono")]
    last: Instant,
}

impl Bucket {
    pub fn new(now: Instant, burst: f64) -> Self {
        Bucket { tokens: burst, last: now }
    }

    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long after the last `take` until one token is there, at `rate` per second.
    pub fn ready_in(&self, rate: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / rate).clamp(0.0, 1e9))
    }
}

pub struct LogLimit<K> {
    every: Duration,
    capacity: usize,
    last: HashMap<K, Instant>,
    /// Lines not written since the last one that was.
    pub suppressed: u64,
}

impl<K: Hash + Eq> LogLimit<K> {
    /// One line per key per `every`, remembering at most `capacity` keys: beyond those,
    /// new keys are not logged until old ones are an interval old.
    pub fn new(every: Duration, capacity: usize) -> Self {
        LogLimit { every, capacity, last: HashMap::default(), suppressed: 0 }
    }

    /// One line per key a minute: what the logs say of everything a stranger can repeat.
    pub fn per_minute(capacity: usize) -> Self {
        Self::new(Duration::from_secs(60), capacity)
    }

    /// Whether a line about `key` may be written now.
    pub fn allow(&mut self, now: Instant, key: K) -> bool {
        let every = self.every;
        let due = |t: &Instant| now.saturating_duration_since(*t) >= every;
        if let Some(t) = self.last.get_mut(&key) {
            if !due(t) {
                self.suppressed += 1;
                return false;
            }
            *t = now;
            return true;
        }
        if self.last.len() >= self.capacity {
            self.last.retain(|_, t| !due(t));
            if self.last.len() >= self.capacity {
                self.suppressed += 1;
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_key_per_interval_within_capacity() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimit::new(Duration::from_secs(60), 2);
        assert!(l.allow(t0, 1));
        assert!(!l.allow(t0 + 59 * s, 1));
        assert!(l.allow(t0 + 60 * s, 1));
        assert!(l.allow(t0, 2));
        // full: a third key waits until one of the others is an interval old
        assert!(!l.allow(t0 + s, 3));
        assert!(l.allow(t0 + 61 * s, 3));
        assert_eq!(l.suppressed, 2);
        assert!(l.last.len() <= 2);
    }
}
