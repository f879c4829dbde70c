//! Prometheus metrics: the text exposition format (version 0.0.4) on a local address,
//! rendered by the actor from the same counters `mcgate status` shows.

use super::{Daemon, Event};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

/// Bucket upper bounds of [`Histogram`], microseconds.
/// Finer below a millisecond, where the decision and admission paths are compared.
const LATENCY_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 75, 100, 150, 200, 250, 350, 500, 750, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// A latency histogram with fixed buckets (Prometheus-style: `counts[i]` is how many
/// took at most `le_us[i]`, non-cumulative here; the last bucket is everything longer).
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub le_us: &'static [u64],
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { le_us: &LATENCY_BOUNDS_US, counts: [0; LATENCY_BOUNDS_US.len() + 1], sum_us: 0, count: 0 }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.counts[i] += 1;
        self.sum_us += us;
        self.count += 1;
    }
}

/// Text exposition of one metric family at a time.
#[derive(Default)]
pub struct Text(pub String);

impl Text {
    /// A family with its samples: (labels, value), labels like `server="0"` or empty.
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP mcgate_{name} {help}");
        let _ = writeln!(self.0, "# TYPE mcgate_{name} {kind}");
        for (labels, v) in samples {
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(self.0, "mcgate_{name}{labels} {v}");
        }
    }

    pub fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help, &[(String::new(), v as f64)]);
    }

    /// Several histograms of one family, each with its labels (bounds in seconds).
    pub fn histograms(&mut self, name: &str, help: &str, hs: &[(String, &Histogram)]) {
        let _ = writeln!(self.0, "# HELP mcgate_{name} {help}");
        let _ = writeln!(self.0, "# TYPE mcgate_{name} histogram");
        for (labels, h) in hs {
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (i, n) in h.counts.iter().enumerate() {
                cumulative += n;
                let le = h.le_us.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(self.0, "mcgate_{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
            }
            let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(self.0, "mcgate_{name}_sum{braces} {}", h.sum_us as f64 / 1e6);
            let _ = writeln!(self.0, "mcgate_{name}_count{braces} {}", h.count);
        }
    }
}

/// A label value, escaped (backslash, quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Daemon {
    /// Every metric, as text.
    pub(super) fn metrics(&self) -> String {
        let mut t = Text::default();
        t.one("sessions", "gauge", "Authorized 802.1X/MAB sessions.", self.sessions.len() as u64);
        let a = &self.auth.stats;
        t.family(
            "auth_results_total",
            "counter",
            "Authentications by result.",
            &[
                ("result=\"success\"".into(), a.auth_success as f64),
                ("result=\"failure\"".into(), a.auth_failure as f64),
            ],
        );
        t.one("reauthentications_total", "counter", "Re-authentications.", a.reauthentications);
        t.one("supplicant_timeouts_total", "counter", "EAP exchanges the supplicant abandoned.", a.supplicant_timeouts);
        t.family(
            "eap_refused_total",
            "counter",
            "EAP identities and Access-Accepts refused before a session, by reason.",
            &[
                ("reason=\"identity_too_long\"".into(), a.identity_too_long as f64),
                ("reason=\"identity_not_utf8\"".into(), a.identity_not_utf8 as f64),
                ("reason=\"restart_held_off\"".into(), a.identity_held_off as f64),
                ("reason=\"accept_without_user_name\"".into(), a.accept_without_user_name as f64),
            ],
        );
        t.one(
            "capture_drops_total",
            "counter",
            "Frames the kernel dropped on the capture sockets.",
            self.io.capture_drops,
        );
        t.one(
            "usage_uncounted_packets_total",
            "counter",
            "Multicast packets forwarded to access ports that the usage counters had no room for (usage_set_size).",
            self.io.usage_uncounted_packets,
        );
        t.one("usage_uncounted_octets_total", "counter", "Their octets.", self.io.usage_uncounted_octets);

        t.one(
            "vlan_assignments_refused_total",
            "counter",
            "Hosts RADIUS accepted (or a CoA moved) whose assigned VLAN could not be applied.",
            self.io.vlan_refused,
        );
        t.one("vlan_moves_total", "counter", "Ports moved to a RADIUS-assigned VLAN, or back.", self.io.vlan_moves);

        let views: Vec<(String, crate::capture::limit::StatsView)> =
            self.interfaces().map(|p| (label(&p.name), p.limits.view())).collect();
        let mut limited = vec![];
        for (port, v) in &views {
            for (reason, n) in [
                ("port_rate", v.dropped_port_rate),
                ("mac_rate", v.dropped_mac_rate),
                ("quarantined", v.dropped_quarantined),
                ("eapol_rate", v.dropped_eapol_rate),
            ] {
                limited.push((format!("port=\"{port}\",reason=\"{reason}\""), n as f64));
            }
        }
        t.family(
            "frames_rate_limited_total",
            "counter",
            "Frames dropped by the flood limits, by port and reason.",
            &limited,
        );
        let by_port = |f: &dyn Fn(&crate::capture::limit::StatsView) -> u64| -> Vec<(String, f64)> {
            views.iter().map(|(p, v)| (format!("port=\"{p}\""), f(v) as f64)).collect()
        };
        t.family(
            "frames_vlan_dropped_total",
            "counter",
            "EAPOL, IGMP and MLD frames dropped for coming in a VLAN the port has no entry for (VID 0 too), by port.",
            &by_port(&|v| v.dropped_vlan),
        );
        let k = &self.kernel.stats;
        t.one("kernel_event_overruns_total", "counter", "Times rtnetlink events were lost and read again.", k.overruns);
        t.family(
            "reconcile_repairs_total",
            "counter",
            "Kernel entries on access ports the reconciliation repaired, by what.",
            &[
                ("what=\"fdb_restored\"".into(), k.fdb_restored as f64),
                ("what=\"fdb_removed\"".into(), k.fdb_removed as f64),
                ("what=\"mdb_restored\"".into(), k.mdb_restored as f64),
                ("what=\"mdb_removed\"".into(), k.mdb_removed as f64),
            ],
        );
        t.family("port_quarantined", "gauge", "1 while the port is quarantined.", &by_port(&|v| v.quarantined as u64));
        t.family("port_quarantines_total", "counter", "Quarantines of the port.", &by_port(&|v| v.quarantines));
        t.one(
            "hosts_over_port_bound_total",
            "counter",
            "Frames and locked-port MACs from hosts beyond max_hosts_per_port, dropped.",
            self.auth.stats.dropped_host_limit,
        );
        self.radius_metrics(&mut t, "auth", &self.radius, &self.radius_rtt);
        if let Some(d) = &self.acct.delivery {
            self.radius_metrics(&mut t, "accounting", &d.client, &d.rtt);
        }
        t.one(
            "journal_backlog",
            "gauge",
            "Accounting records not yet acknowledged by a server.",
            self.acct.backlog() as u64,
        );
        let j = &self.acct.stats;
        t.one("journal_records_total", "counter", "Accounting records made durable.", j.records);
        t.one("journal_commit_failures_total", "counter", "Journal commits that failed.", j.commit_failures);
        t.histograms(
            "journal_commit_seconds",
            "How long a journal commit (one fsync) took, on the journal writer's thread.",
            &[(String::new(), &j.commit_latency)],
        );
        if let Some(m) = &self.mcast {
            let s = &m.tracker.stats;
            t.one(
                "memberships",
                "gauge",
                "Admitted memberships.",
                m.tracker.memberships().filter(|m| !m.is_link_local()).count() as u64,
            );
            t.one("joins_admitted_total", "counter", "Joins admitted.", s.admitted);
            let mut denied: Vec<(String, f64)> =
                s.denied.iter().map(|(r, n)| (format!("reason=\"{}\"", r.name()), *n as f64)).collect();
            denied.push(("reason=\"unauthenticated\"".into(), m.stats.dropped_unauthenticated as f64));
            denied.push(("reason=\"spoofed_mac\"".into(), m.stats.dropped_spoofed_mac as f64));
            denied.push(("reason=\"unaccountable\"".into(), j.joins_refused_unaccountable as f64));
            t.family("joins_denied_total", "counter", "Joins denied or dropped, by reason.", &denied);
            t.one(
                "join_answers_not_cached_total",
                "counter",
                "Per-join RADIUS answers not cached: the cache was full of fresh ones.",
                s.radius_cache_full,
            );
            let dropped: Vec<(String, f64)> =
                m.stats.dropped.iter().map(|(r, n)| (format!("reason=\"{}\"", r.name()), *n as f64)).collect();
            t.family(
                "reports_malformed_total",
                "counter",
                "IGMP/MLD frames dropped as malformed, by reason.",
                &dropped,
            );
            t.histograms(
                "capture_wait_seconds",
                "From the kernel's receipt of a report (the capture ring's timestamp) to the capture task's read of it.",
                &[(String::new(), &m.stats.capture_wait)],
            );
            t.histograms(
                "decision_latency_seconds",
                "From the capture task's read of a report to its decision.",
                &[(String::new(), &m.stats.decision_latency)],
            );
            t.histograms(
                "admission_latency_seconds",
                "From the capture of a batch's earliest report to an admission's MDB entry installed (its Start is committed after).",
                &[(String::new(), &m.stats.admission_latency)],
            );
        }
        if let Some(c) = &self.catalogue {
            let s = &c.stats;
            t.one(
                "catalogue_revision",
                "gauge",
                "The etcd revision of the policy catalogue in force.",
                s.revision.max(0) as u64,
            );
            t.one("catalogue_applied_total", "counter", "Catalogues from etcd applied.", s.applied);
            t.one(
                "catalogue_refused_total",
                "counter",
                "Catalogues from etcd refused (the previous one kept).",
                s.refused,
            );
            t.one("catalogue_resyncs_total", "counter", "Full listings after a compacted watch.", s.resyncs);
        }
        if let Some(d) = &self.das {
            let s = &d.stats;
            t.one("das_requests_total", "counter", "Dynamic authorization requests received.", s.requests);
            let naks: u64 = s.naks.values().sum();
            t.family(
                "das_answers_total",
                "counter",
                "Dynamic authorization answers.",
                &[("answer=\"ack\"".into(), s.acks as f64), ("answer=\"nak\"".into(), naks as f64)],
            );
            let dropped: Vec<(String, f64)> =
                s.dropped.iter().map(|(r, n)| (format!("reason=\"{}\"", label(r)), *n as f64)).collect();
            t.family("das_dropped_total", "counter", "Dynamic authorization requests dropped, by reason.", &dropped);
        }
        t.0
    }

    fn radius_metrics<T: crate::radius::client::Token>(
        &self,
        t: &mut Text,
        client: &str,
        c: &crate::radius::client::Client<T>,
        rtt: &[Histogram],
    ) {
        let addrs = c.server_addrs();
        let per = |f: &dyn Fn(&crate::radius::client::ServerStats) -> u64| -> Vec<(String, f64)> {
            c.per_server
                .iter()
                .zip(&addrs)
                .map(|(s, a)| (format!("client=\"{client}\",server=\"{a}\""), f(s) as f64))
                .collect()
        };
        t.family("radius_requests_total", "counter", "RADIUS requests sent, by server.", &per(&|s| s.requests));
        t.family("radius_replies_total", "counter", "RADIUS replies accepted, by server.", &per(&|s| s.replies));
        t.family("radius_timeouts_total", "counter", "RADIUS waits that ran out, by server.", &per(&|s| s.timeouts));
        t.family("radius_server_dead_total", "counter", "Times a server was marked dead.", &per(&|s| s.marked_dead));
        let st = &c.stats;
        let refused = [
            ("bad_authenticator", st.replies_bad_authenticator),
            ("missing_message_authenticator", st.replies_missing_message_authenticator),
            ("bad_message_authenticator", st.replies_bad_message_authenticator),
            ("unknown_id", st.replies_unknown_id),
            ("unexpected_code", st.replies_unexpected_code),
            ("malformed", st.replies_malformed),
        ];
        let refused: Vec<(String, f64)> =
            refused.iter().map(|(r, n)| (format!("client=\"{client}\",reason=\"{r}\""), *n as f64)).collect();
        t.family("radius_replies_refused_total", "counter", "RADIUS replies refused, by reason.", &refused);
        t.family(
            "radius_failovers_total",
            "counter",
            "Requests moved to another server.",
            &[(format!("client=\"{client}\""), st.failovers as f64)],
        );
        let hs: Vec<(String, &Histogram)> =
            rtt.iter().zip(&addrs).map(|(h, a)| (format!("client=\"{client}\",server=\"{a}\""), h)).collect();
        t.histograms("radius_rtt_seconds", "RADIUS round trip, by server.", &hs);
    }
}

/// Scrapes served at once; Prometheus makes one at a time per target.
const MAX_CONNECTIONS: usize = 32;
/// For a request head to arrive, and again for the answer to be written.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener`; the actor renders each scrape. Connections
/// beyond [`MAX_CONNECTIONS`] are closed at once and counted.
pub(super) fn serve(listener: TcpListener, tx: mpsc::Sender<Event>) -> tokio::task::JoinHandle<()> {
    let listener = Arc::new(listener);
    let refused = Arc::new(AtomicU64::new(0));
    let counted = refused.clone();
    super::listen::accept_loop(
        "metrics",
        MAX_CONNECTIONS,
        move || {
            let l = listener.clone();
            async move { l.accept().await }
        },
        move |(stream, peer)| scrape(stream, peer, tx.clone(), refused.clone()),
        move || {
            counted.fetch_add(1, Ordering::Relaxed);
        },
    )
}

async fn scrape(mut stream: TcpStream, peer: SocketAddr, tx: mpsc::Sender<Event>, refused: Arc<AtomicU64>) {
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // the request head, bounded in size and time
    let read = tokio::time::timeout(IO_TIMEOUT, async {
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        true
    });
    if !matches!(read.await, Ok(true)) {
        debug!(%peer, "metrics: no request");
        return;
    }
    let (status, body) = if req.starts_with(b"GET /metrics ") || req.starts_with(b"GET /metrics?") {
        let (otx, orx) = oneshot::channel();
        if tx.send(Event::Metrics(otx)).await.is_err() {
            return;
        }
        let mut t = Text(orx.await.unwrap_or_default());
        t.one(
            "metrics_connections_refused_total",
            "counter",
            "Scrape connections closed unanswered: too many were open.",
            refused.load(Ordering::Relaxed),
        );
        ("200 OK", t.0)
    } else {
        ("404 Not Found", "not found: the metrics are at /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await
    };
    if !matches!(tokio::time::timeout(IO_TIMEOUT, write).await, Ok(Ok(()))) {
        debug!(%peer, "metrics: the answer was not taken in time");
    }
}

pub(super) async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    info!(listen = %addr, "Prometheus metrics at /metrics");
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = Histogram::default();
        for us in [0, 10, 11, 999, 1_000, 1_001, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.counts[0], 2, "0 and 10 µs: at most 10");
        assert_eq!(h.counts[1], 1, "11 µs: at most 25");
        assert_eq!(h.counts[11], 2, "999 and 1000 µs: at most 1 ms");
        assert_eq!(h.counts[12], 1, "1001 µs: at most 2.5 ms");
        assert_eq!(h.counts[LATENCY_BOUNDS_US.len()], 1, "beyond the last bound");
        assert_eq!((h.count, h.sum_us), (7, 2_003_021));
    }
}
