//! Flood isolation per access port, sans-IO: token buckets for IGMP/MLD reports (per
//! port and per source MAC) and for EAPOL, applied in the port's own capture task so
//! that a flooding port's excess never reaches the queue the other ports share. A port
//! whose excess goes on for `quarantine_after` is quarantined for `quarantine_time`:
//! every report from it is dropped (the streams it already has stay), then it is
//! released by itself.

use crate::rate::Bucket;
use crate::wire::MacAddr;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The flood limits of each access port: the configuration's `[limits]` as it is read.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub reports_per_second: f64,
    pub report_burst: f64,
    pub reports_per_second_per_mac: f64,
    pub report_burst_per_mac: f64,
    pub eapol_per_second: f64,
    pub eapol_burst: f64,
    #[serde(deserialize_with = "crate::duration::duration")]
    pub quarantine_after: Duration,
    #[serde(deserialize_with = "crate::duration::duration")]
    pub quarantine_time: Duration,
    /// Slots in each port's receive ring (a multiple of 32, 64 to 65 536): frames that
    /// wait there while mcgate is busy, 2 KiB of kernel memory each, allocated at start.
    pub capture_ring_frames: usize,
    /// Source MACs with a bucket of their own; reports from more share the port's.
    #[serde(skip)]
    pub macs_tracked: usize,
}

impl Config {
    /// The option that is wrong in these limits, with what is wrong with it.
    pub fn invalid(&self) -> Option<(&'static str, String)> {
        let rates = [
            ("reports_per_second", self.reports_per_second),
            ("report_burst", self.report_burst),
            ("reports_per_second_per_mac", self.reports_per_second_per_mac),
            ("report_burst_per_mac", self.report_burst_per_mac),
            ("eapol_per_second", self.eapol_per_second),
            ("eapol_burst", self.eapol_burst),
        ];
        if let Some((name, _)) = rates.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Some((name, format!("{name} must be a number above 0")));
        }
        let n = self.capture_ring_frames;
        if !(64..=65536).contains(&n) || !n.is_multiple_of(32) {
            let why = "capture_ring_frames must be a multiple of 32 from 64 to 65536";
            return Some(("capture_ring_frames", why.into()));
        }
        None
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reports_per_second: 200.0,
            report_burst: 400.0,
            reports_per_second_per_mac: 100.0,
            report_burst_per_mac: 200.0,
            eapol_per_second: 50.0,
            eapol_burst: 100.0,
            quarantine_after: Duration::from_secs(3),
            quarantine_time: Duration::from_secs(60),
            capture_ring_frames: 1024,
            macs_tracked: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    PortRate,
    MacRate,
    Quarantined,
    /// This very frame started the quarantine.
    QuarantineStarts,
    EapolRate,
}

/// What the daemon reads of a port's limiter (its capture task writes it).
#[derive(Debug, Default)]
pub struct Stats {
    pub dropped_port_rate: AtomicU64,
    pub dropped_mac_rate: AtomicU64,
    pub dropped_quarantined: AtomicU64,
    pub dropped_eapol_rate: AtomicU64,
    /// EAPOL, IGMP and MLD frames in a VLAN the port has no `[[port]]` entry for: tagged
    /// with another VLAN (VID 0, priority tags, included), or untagged on a port
    /// configured for tagged hosts only. Nothing mcgate may act on.
    pub dropped_vlan: AtomicU64,
    pub quarantines: AtomicU64,
    pub quarantined: AtomicBool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    pub dropped_port_rate: u64,
    pub dropped_mac_rate: u64,
    pub dropped_quarantined: u64,
    pub dropped_eapol_rate: u64,
    pub dropped_vlan: u64,
    pub quarantines: u64,
    pub quarantined: bool,
}

impl Stats {
    pub fn view(&self) -> StatsView {
        StatsView {
            dropped_port_rate: self.dropped_port_rate.load(Relaxed),
            dropped_mac_rate: self.dropped_mac_rate.load(Relaxed),
            dropped_quarantined: self.dropped_quarantined.load(Relaxed),
            dropped_eapol_rate: self.dropped_eapol_rate.load(Relaxed),
            dropped_vlan: self.dropped_vlan.load(Relaxed),
            quarantines: self.quarantines.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
        }
    }

    fn count(&self, v: Verdict) {
        let c = match v {
            Verdict::Pass => return,
            Verdict::PortRate => &self.dropped_port_rate,
            Verdict::MacRate => &self.dropped_mac_rate,
            Verdict::Quarantined | Verdict::QuarantineStarts => &self.dropped_quarantined,
            Verdict::EapolRate => &self.dropped_eapol_rate,
        };
        c.fetch_add(1, Relaxed);
    }
}

pub struct PortLimiter {
    cfg: Config,
    reports: Bucket,
    eapol: Bucket,
    macs: HashMap<MacAddr, Bucket>,
    /// Since when reports have been over the limit without a second's pause.
    over_since: Option<Instant>,
    last_over: Option<Instant>,
    quarantined_until: Option<Instant>,
}

/// What a hand-over carries of a port's limiter (its format: fields added later need a
/// default): a flood goes on being limited, a quarantine goes on to its end.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Snapshot {
    reports: Bucket,
    eapol: Bucket,
    macs: Vec<(MacAddr, Bucket)>,
    #[serde(with = "crate::mono::option")]
    over_since: Option<Instant>,
    #[serde(with = "crate::mono::option")]
    last_over: Option<Instant>,
    #[serde(with = "crate::mono::option")]
    quarantined_until: Option<Instant>,
}

impl PortLimiter {
    /// A copy for another process to go on with.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            reports: self.reports,
            eapol: self.eapol,
            macs: self.macs.iter().map(|(m, b)| (*m, *b)).collect(),
            over_since: self.over_since,
            last_over: self.last_over,
            quarantined_until: self.quarantined_until,
        }
    }

    /// Goes on from `s` with the limits `cfg` (at most its MACs tracked).
    pub fn resume(cfg: Config, s: Snapshot) -> Self {
        PortLimiter {
            cfg,
            reports: s.reports,
            eapol: s.eapol,
            macs: s.macs.into_iter().take(cfg.macs_tracked).collect(),
            over_since: s.over_since,
            last_over: s.last_over,
            quarantined_until: s.quarantined_until,
        }
    }

    pub fn new(cfg: Config, now: Instant) -> Self {
        PortLimiter {
            reports: Bucket::new(now, cfg.report_burst),
            eapol: Bucket::new(now, cfg.eapol_burst),
            cfg,
            macs: HashMap::new(),
            over_since: None,
            last_over: None,
            quarantined_until: None,
        }
    }

    /// The limits it keeps.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether an IGMP/MLD frame from `mac` goes on to be decided; counted in `stats`.
    pub fn report(&mut self, now: Instant, mac: MacAddr, stats: &Stats) -> Verdict {
        let v = self.judge(now, mac);
        stats.count(v);
        if v == Verdict::QuarantineStarts {
            stats.quarantines.fetch_add(1, Relaxed);
        }
        stats.quarantined.store(self.quarantined_until.is_some(), Relaxed);
        v
    }

    fn judge(&mut self, now: Instant, mac: MacAddr) -> Verdict {
        match self.quarantined_until {
            Some(t) if now < t => return Verdict::Quarantined,
            Some(_) => {
                // released: a clean slate
                self.quarantined_until = None;
                self.over_since = None;
                self.macs.clear();
            }
            None => {}
        }
        let c = self.cfg;
        let tracked = self.macs.len();
        let mac_ok = match self.macs.entry(mac) {
            std::collections::hash_map::Entry::Occupied(mut b) => {
                b.get_mut().take(now, c.reports_per_second_per_mac, c.report_burst_per_mac)
            }
            std::collections::hash_map::Entry::Vacant(v) if tracked < c.macs_tracked => v
                .insert(Bucket::new(now, c.report_burst_per_mac))
                .take(now, c.reports_per_second_per_mac, c.report_burst_per_mac),
            // beyond the MACs tracked, only the port's bucket applies
            std::collections::hash_map::Entry::Vacant(_) => true,
        };
        let verdict = if !mac_ok {
            Verdict::MacRate
        } else if !self.reports.take(now, c.reports_per_second, c.report_burst) {
            Verdict::PortRate
        } else {
            return Verdict::Pass;
        };
        // over the limit: for how long without a pause (a second without excess starts
        // the count again)?
        if self.last_over.is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(1)) {
            self.over_since = Some(now);
        }
        self.last_over = Some(now);
        if self.over_since.is_some_and(|t| now.saturating_duration_since(t) >= c.quarantine_after) {
            self.quarantined_until = Some(now + c.quarantine_time);
            return Verdict::QuarantineStarts;
        }
        verdict
    }

    /// Whether an EAPOL frame goes on to the authenticator; counted in `stats`.
    pub fn eapol(&mut self, now: Instant, stats: &Stats) -> Verdict {
        let v = if self.eapol.take(now, self.cfg.eapol_per_second, self.cfg.eapol_burst) {
            Verdict::Pass
        } else {
            Verdict::EapolRate
        };
        stats.count(v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn cfg() -> Config {
        Config {
            reports_per_second: 10.0,
            report_burst: 10.0,
            reports_per_second_per_mac: 5.0,
            report_burst_per_mac: 5.0,
            quarantine_after: Duration::from_secs(3),
            quarantine_time: Duration::from_secs(60),
            macs_tracked: 2,
            ..Config::default()
        }
    }

    /// A process that takes over goes on with the buckets and the quarantine as they were.
    #[test]
    fn a_limiter_taken_over_keeps_its_buckets_and_its_quarantine() {
        let s = Stats::default();
        let t0 = Instant::now();
        let mut l = PortLimiter::new(cfg(), t0);
        for ms in (0..4000).step_by(10) {
            l.report(t0 + Duration::from_millis(ms), A, &s);
        }
        assert!(s.view().quarantined);
        let snap = serde_json::to_vec(&l.snapshot()).unwrap();
        let mut taken = PortLimiter::resume(cfg(), serde_json::from_slice(&snap).unwrap());
        let t = t0 + Duration::from_secs(30);
        assert_eq!(taken.report(t, B, &s), Verdict::Quarantined, "still quarantined");
        assert_eq!(taken.report(t0 + Duration::from_secs(70), B, &s), Verdict::Pass, "released on time");
        // the EAPOL bucket as it was: spent
        for _ in 0..1000 {
            l.eapol(t0, &s);
        }
        let mut taken =
            PortLimiter::resume(cfg(), serde_json::from_slice(&serde_json::to_vec(&l.snapshot()).unwrap()).unwrap());
        assert_eq!(taken.eapol(t0, &s), Verdict::EapolRate);
    }

    #[test]
    fn burst_then_rate_per_mac_and_per_port() {
        let t0 = Instant::now();
        let s = Stats::default();
        let mut l = PortLimiter::new(cfg(), t0);
        let passed = (0..8).filter(|_| l.report(t0, A, &s) == Verdict::Pass).count();
        assert_eq!(passed, 5, "A's burst");
        // B has its own bucket; the port's 10 are shared
        let passed = (0..8).filter(|_| l.report(t0, B, &s) == Verdict::Pass).count();
        assert_eq!(passed, 5);
        assert_eq!(l.report(t0, MacAddr([2, 0, 0, 0, 0, 3]), &s), Verdict::PortRate, "the port's burst is spent");
        // a second later: the rates refill
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..8).filter(|_| l.report(t1, A, &s) == Verdict::Pass).count(), 5);
        assert_eq!(s.view().dropped_mac_rate, 9);
        assert_eq!(s.view().dropped_port_rate, 1);
    }

    #[test]
    fn a_sustained_flood_is_quarantined_and_released_while_a_pause_resets() {
        let s = Stats::default();
        let t0 = Instant::now();
        let mut l = PortLimiter::new(cfg(), t0);
        let flood = |l: &mut PortLimiter, from: Instant, secs: u64| {
            let mut last = Verdict::Pass;
            for ms in (0..secs * 1000).step_by(10) {
                last = l.report(from + Duration::from_millis(ms), A, &s);
            }
            last
        };
        // 2 s of flood, a 2 s pause, 2 s again: never 3 s in a row
        flood(&mut l, t0, 2);
        assert_ne!(flood(&mut l, t0 + Duration::from_secs(4), 2), Verdict::Quarantined);
        assert_eq!(s.view().quarantines, 0);
        // 4 s in a row: quarantined, everything dropped, even at a trickle
        let t = t0 + Duration::from_secs(10);
        assert_eq!(flood(&mut l, t, 4), Verdict::Quarantined);
        assert!(s.view().quarantined && s.view().quarantines == 1);
        assert_eq!(l.report(t + Duration::from_secs(30), B, &s), Verdict::Quarantined);
        // released after the quarantine time
        assert_eq!(l.report(t + Duration::from_secs(70), B, &s), Verdict::Pass);
        assert!(!s.view().quarantined);
    }

    #[test]
    fn eapol_has_its_own_bucket() {
        let s = Stats::default();
        let t0 = Instant::now();
        let mut l = PortLimiter::new(Config { eapol_per_second: 1.0, eapol_burst: 2.0, ..cfg() }, t0);
        let v: Vec<Verdict> = (0..3).map(|_| l.eapol(t0, &s)).collect();
        assert_eq!(v, [Verdict::Pass, Verdict::Pass, Verdict::EapolRate]);
        assert_eq!(l.report(t0, A, &s), Verdict::Pass);
    }
}
