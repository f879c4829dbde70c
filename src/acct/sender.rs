//! Delivery of the journal to the accounting servers, sans-IO: which records go out
//! next (oldest first, a bounded window at a time), and the pause after every server
//! failed. Retransmission and failover of each request are the RADIUS client's.

use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub sent: u64,
    pub delivered: u64,
    /// Requests no server answered (each is sent again after the pause).
    pub failed: u64,
    /// Pauses after a failure.
    pub pauses: u64,
}

pub struct Sender {
    /// Journaled, undelivered, not in flight.
    queue: BTreeSet<u64>,
    in_flight: HashSet<u64>,
    window: usize,
    retry: Duration,
    max_retry: Duration,
    backoff: Duration,
    paused_until: Option<Instant>,
    pub stats: Stats,
}

impl Sender {
    /// At most `window` requests outstanding; after a failure nothing is sent for
    /// `retry`, doubling up to `max_retry` while failures go on.
    pub fn new(window: usize, retry: Duration, max_retry: Duration) -> Self {
        Sender {
            queue: BTreeSet::new(),
            in_flight: HashSet::new(),
            window: window.max(1),
            retry,
            max_retry,
            backoff: retry,
            paused_until: None,
            stats: Stats::default(),
        }
    }

    /// A record to deliver (journaled now, or found undelivered at start).
    pub fn enqueue(&mut self, seq: u64) {
        if !self.in_flight.contains(&seq) {
            self.queue.insert(seq);
        }
    }

    /// The next record to send now, if the window and the pause allow; the caller sends
    /// it with the sequence number as token.
    pub fn next(&mut self, now: Instant) -> Option<u64> {
        if self.paused_until.is_some_and(|t| t > now) || self.in_flight.len() >= self.window {
            return None;
        }
        self.paused_until = None;
        let seq = self.queue.pop_first()?;
        self.in_flight.insert(seq);
        self.stats.sent += 1;
        Some(seq)
    }

    /// Acknowledged by a server (or not deliverable at all: gone from the journal).
    pub fn delivered(&mut self, seq: u64) {
        if self.in_flight.remove(&seq) {
            self.stats.delivered += 1;
            self.backoff = self.retry;
        }
    }

    /// No server answered: the record waits, and so does everything else.
    pub fn failed(&mut self, now: Instant, seq: u64) {
        if !self.in_flight.remove(&seq) {
            return;
        }
        self.stats.failed += 1;
        self.queue.insert(seq);
        if self.paused_until.is_none_or(|t| t <= now) {
            self.stats.pauses += 1;
            self.paused_until = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(self.max_retry);
        }
    }

    /// When sending may resume after a pause.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paused_until.filter(|_| !self.queue.is_empty())
    }

    /// Records not yet acknowledged.
    pub fn backlog(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_then_oldest_first_after_failure_with_growing_pause() {
        let t0 = Instant::now();
        let s1 = Duration::from_secs(1);
        let mut s = Sender::new(2, s1, Duration::from_secs(3));
        for seq in [5, 3, 4] {
            s.enqueue(seq);
        }
        assert_eq!((s.next(t0), s.next(t0), s.next(t0)), (Some(3), Some(4), None));
        s.delivered(3);
        assert_eq!(s.next(t0), Some(5));
        // every server failed: 4 waits, nothing goes out during the pause
        s.failed(t0, 4);
        s.failed(t0, 5);
        assert_eq!(s.backlog(), 2);
        assert_eq!(s.next(t0), None);
        assert_eq!(s.poll_timeout(), Some(t0 + s1));
        assert_eq!(s.next(t0 + s1), Some(4));
        s.failed(t0 + s1, 4);
        assert_eq!(s.poll_timeout(), Some(t0 + s1 * 3), "the pause doubles");
        let t = t0 + s1 * 3;
        assert_eq!(s.next(t), Some(4));
        s.failed(t, 4);
        assert_eq!(s.poll_timeout(), Some(t + s1 * 3), "capped at max_retry");
        let t = t + s1 * 3;
        assert_eq!(s.next(t), Some(4));
        s.delivered(4);
        assert_eq!(s.next(t), Some(5));
        s.delivered(5);
        assert_eq!(s.backlog(), 0);
        assert_eq!(s.stats.delivered, 3);
    }
}
