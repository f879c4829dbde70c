//! Delivery of the journal to the accounting servers, sans-IO: which records go out
//! next (oldest first, a bounded window at a time), and the pause after every server
//! failed. Retransmission and failover of each request are the RADIUS client's.
//!
//! Records of one accounting session go out one at a time, in order: a server that
//! runs a session's Start and Stop concurrently can lose the Stop (FreeRADIUS's SQL
//! queries do: the Stop's UPDATE finds no row yet, its INSERT then meets the Start's
//! row and does nothing — seen in the SIGKILL test). Accounting-On/Off go alone.

use crate::hash::HashMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a record must wait for: earlier records of the same session (`Some(id)`), or
/// every earlier record (`None`: Accounting-On/Off, which close sessions in bulk).
pub type Key = Option<String>;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub sent: u64,
    pub delivered: u64,
    /// Requests no server answered (each is sent again after the pause).
    pub failed: u64,
    /// Pauses after a failure.
    pub pauses: u64,
}

/// How far past blocked records `next` looks for one that may go.
const SCAN: usize = 4096;

pub struct Sender {
    /// Journaled, undelivered, not in flight.
    queue: BTreeMap<u64, Key>,
    in_flight: HashMap<u64, Key>,
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
            queue: BTreeMap::new(),
            in_flight: HashMap::default(),
            window: window.max(1),
            retry,
            max_retry,
            backoff: retry,
            paused_until: None,
            stats: Stats::default(),
        }
    }

    /// A record to deliver (journaled now, or found undelivered at start).
    pub fn enqueue(&mut self, seq: u64, key: Key) {
        if !self.in_flight.contains_key(&seq) {
            self.queue.insert(seq, key);
        }
    }

    /// Records another process had in flight when it handed over: their requests came
    /// along and are retransmitted as they were, so they are not sent anew.
    pub fn in_flight_already(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            if let Some(key) = self.queue.remove(&seq) {
                self.in_flight.insert(seq, key);
            }
        }
    }

    /// The next record to send now, if the window, the pause and the order allow; the
    /// caller sends it with the sequence number as token.
    pub fn next(&mut self, now: Instant) -> Option<u64> {
        if self.paused_until.is_some_and(|t| t > now) || self.in_flight.len() >= self.window {
            return None;
        }
        self.paused_until = None;
        if self.in_flight.values().any(Option::is_none) {
            return None;
        }
        let mut seq = None;
        for (s, key) in self.queue.iter().take(SCAN) {
            match key {
                None => {
                    if self.in_flight.is_empty() {
                        seq = Some(*s);
                    }
                    // nothing after it goes before it
                    break;
                }
                Some(k) if !self.in_flight.values().any(|f| f.as_ref() == Some(k)) => {
                    seq = Some(*s);
                    break;
                }
                Some(_) => {}
            }
        }
        let seq = seq?;
        let key = self.queue.remove(&seq)?;
        self.in_flight.insert(seq, key);
        self.stats.sent += 1;
        Some(seq)
    }

    /// Acknowledged by a server (or not deliverable at all: gone from the journal).
    pub fn delivered(&mut self, seq: u64) {
        if self.in_flight.remove(&seq).is_some() {
            self.stats.delivered += 1;
            self.backoff = self.retry;
        }
    }

    /// No server answered: the record waits, and so does everything else.
    pub fn failed(&mut self, now: Instant, seq: u64) {
        let Some(key) = self.in_flight.remove(&seq) else { return };
        self.stats.failed += 1;
        self.queue.insert(seq, key);
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

    fn k(s: &str) -> Key {
        Some(s.into())
    }

    #[test]
    fn window_then_oldest_first_after_failure_with_growing_pause() {
        let t0 = Instant::now();
        let s1 = Duration::from_secs(1);
        let mut s = Sender::new(2, s1, Duration::from_secs(3));
        for seq in [5, 3, 4] {
            s.enqueue(seq, k(&format!("S{seq}")));
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

    #[test]
    fn one_record_of_a_session_at_a_time_and_accounting_on_alone() {
        let t0 = Instant::now();
        let mut s = Sender::new(8, Duration::from_secs(1), Duration::from_secs(1));
        s.enqueue(1, k("A")); // A's Start
        s.enqueue(2, k("B"));
        s.enqueue(3, k("A")); // A's Stop waits for its Start
        s.enqueue(4, None); // Accounting-On waits for everything before it
        s.enqueue(5, k("C")); // ... and everything after it waits for it
        assert_eq!((s.next(t0), s.next(t0), s.next(t0)), (Some(1), Some(2), None));
        s.delivered(1);
        assert_eq!((s.next(t0), s.next(t0)), (Some(3), None));
        s.delivered(2);
        assert_eq!(s.next(t0), None);
        s.delivered(3);
        assert_eq!((s.next(t0), s.next(t0)), (Some(4), None));
        s.delivered(4);
        assert_eq!(s.next(t0), Some(5));
    }
}
