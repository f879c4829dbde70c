//! What a hand-over buys over a plain restart, under load, in one run: four hosts zap
//! (a join a second each, the stream's first packet timed at the host) and two log out
//! and in with PEAP in a loop, while mcgate is (1) left alone — the idle figures —,
//! (2) handed over to a new process EVENTS times back to back, (3) stopped (SIGTERM) and
//! started again EVENTS times, (4) killed (SIGKILL) EVENTS times with a hot standby
//! following it (`--standby`), which takes over (and a new standby starts after each),
//! then under systemd running the shipped unit (`tb systemd`): (5) `systemctl reload`
//! EVENTS times (`mcgate upgrade`: a hand-over to a new main process), (6) `systemctl
//! restart` EVENTS times (the descriptor store), (7) SIGKILL EVENTS times,
//! `Restart=on-failure` after `RestartSec=` 2 s. Counted per phase: joins and their report → first packet
//! p50/p99, joins later than the idle p99 and joins without a packet within 2 s; logins
//! (logon → EAP-Success at the supplicant), those slower than the idle p99 and EAP
//! conversations begun again; the capture sockets' drops (PACKET_STATISTICS, every
//! process's); RADIUS retransmissions; accounting records lost (journaled, never written
//! by FreeRADIUS) or duplicated (written twice: FreeRADIUS's detail file against the
//! journal's export).
//!
//!     sudo cargo bench --bench handover          (EVENTS=20 by default)
//!
//! `PHASES=standby,reload` runs the idle phase and those (`handover`, `restart`, `standby`,
//! `reload`, `systemd-restart`, `crash`); `LOG_LEVEL=debug` has mcgate log each decision
//! (its cost is in the figures then).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, result, unix_now, wait_until, Testbed};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";
const ZAPPERS: [usize; 4] = [1, 2, 3, 4];
const LOGINS: [usize; 2] = [5, 6];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Idle,
    HandOver,
    Restart,
    /// SIGKILL the daemon; its hot standby takes over (and a new standby starts).
    Standby,
    /// Under systemd (the shipped unit): `systemctl reload`, a hand-over to a new process
    /// (`mcgate upgrade`) that becomes the main one.
    SystemdReload,
    /// Under systemd: `systemctl restart`, through the descriptor store.
    SystemdRestart,
    /// Under systemd: SIGKILL, and `Restart=on-failure` after `RestartSec=` (2 s).
    SystemdCrash,
}

impl Phase {
    /// Its name in `PHASES=`.
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::HandOver => "handover",
            Phase::Restart => "restart",
            Phase::Standby => "standby",
            Phase::SystemdReload => "reload",
            Phase::SystemdRestart => "systemd-restart",
            Phase::SystemdCrash => "crash",
        }
    }
}

#[derive(Default)]
struct Figures {
    /// Report on the wire → first packet (ms), each join that got one.
    joins: Vec<f64>,
    /// Joins without a packet within 2 s.
    joins_missed: usize,
    /// The slowest join: ms, its host, which of the host's joins it was (from 1).
    slowest: (f64, usize, usize),
    /// Logon → EAP-Success (ms), each login that succeeded.
    logins: Vec<f64>,
    logins_failed: usize,
    /// EAP conversations begun beyond one per logon.
    eap_restarts: usize,
    capture_drops: u64,
    radius_retransmissions: u64,
    /// Accounting records journaled, lost (never written by FreeRADIUS) and written twice.
    accounting: (usize, usize, usize),
    /// Hand-overs or restarts: how long no process read the sockets (ms); after a kill,
    /// from the kill to the standby running.
    windows: Vec<f64>,
    /// When the daemon was killed (unix seconds).
    kills: Vec<f64>,
    /// Each join's host, its report (Unix time) and its first packet after it (ms).
    joined: Vec<(usize, f64, f64)>,
    /// Kills: from the SIGKILL to the process gone (ms). A thread inside a system call
    /// that does not return at once (fdatasync) holds the process until it does, and the
    /// standby waits for the store's lock that goes with it.
    exits: Vec<f64>,
    /// Hand-overs or restarts: how long each took (ms; the old process's stop to the
    /// new one answering on the control socket).
    gaps: Vec<f64>,
}

/// A supplicant host, for a thread of its own.
#[derive(Clone)]
struct Host {
    ns: String,
    dir: PathBuf,
}

impl Host {
    fn wpa_cli(&self, what: &str) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns, "wpa_cli", "-p"])
            .arg(self.dir.join("ctrl"))
            .args(["-i", "eth0", what])
            .stdout(Stdio::null())
            .status();
    }

    fn events(&self, what: &str, since: f64, until: f64) -> Vec<f64> {
        let log = std::fs::read_to_string(self.dir.join("wpa.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("CTRL-EVENT-{what}")))
            .filter_map(|l| l.split(':').next()?.parse::<f64>().ok())
            .filter(|t| *t >= since && *t <= until)
            .collect()
    }

    /// Logs out and in again until `stop`: (ms per login, failed, EAP restarts).
    fn login_loop(&self, stop: &AtomicBool) -> (Vec<f64>, usize, usize) {
        let (mut times, mut failed, mut restarts) = (Vec::new(), 0, 0);
        while !stop.load(Ordering::Relaxed) {
            self.wpa_cli("logoff");
            std::thread::sleep(Duration::from_millis(300));
            let t0 = unix_now();
            self.wpa_cli("logon");
            let mut done = None;
            wait_until(Duration::from_secs(30), || {
                done = self.events("EAP-SUCCESS", t0, f64::MAX).first().copied();
                done.is_some()
            });
            match done {
                Some(t) => {
                    times.push((t - t0) * 1e3);
                    restarts += self.events("EAP-STARTED", t0, t).len().saturating_sub(1);
                }
                None => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (times, failed, restarts)
    }
}

fn counters(tb: &Testbed) -> (u64, u64) {
    let s = tb.status().unwrap_or(Value::Null);
    (s["io"]["capture_drops"].as_u64().unwrap_or(0), s["radius"]["retransmissions"].as_u64().unwrap_or(0))
}

/// From mcgate's log since `since`: each time no process read the sockets (ms), from the
/// old one stopping its readers (a hand-over) or stopping (SIGTERM) to the next one
/// running.
fn windows(tb: &Testbed, since: f64, kills: &[f64]) -> Vec<f64> {
    let (mut out, mut from) = (Vec::new(), None);
    let mut kills = kills.to_vec();
    for (t, l) in timed_log(tb).into_iter().filter(|(t, _)| *t >= since) {
        if l.contains("stopping the readers") || l.contains("SIGTERM: stopping") {
            from = Some(t);
        } else if l.contains("mcgate running") && kills.first().is_some_and(|k| *k <= t) {
            // a standby running after a kill: from the kill
            out.push((t - kills.remove(0)) * 1e3);
        } else if l.contains("mcgate running") {
            if let Some(f) = from.take() {
                out.push((t - f) * 1e3);
            }
        }
    }
    out
}

/// mcgate's log lines with their time (Unix seconds), the time taken off.
fn timed_log(tb: &Testbed) -> Vec<(f64, String)> {
    (tb.log().lines())
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            Some((common::rfc3339(ts)?, rest.trim().to_string()))
        })
        .collect()
}

/// "p50 / max" of `v` (ms), or "-".
fn p50_max(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    format!("{:.0} / {:.0}", pct(&mut v.to_vec(), 50.0), v.iter().copied().fold(0.0, f64::max))
}

fn run_phase(tb: &mut Testbed, phase: Phase, events: usize) -> Figures {
    let mut f = Figures::default();
    let start = unix_now();
    // a join a second on each zapper for as long as the events take, and a little more
    let joins = (events + 3).to_string();
    let zaps: Vec<Child> = (ZAPPERS.iter())
        .map(|h| {
            let group = format!("239.1.1.{h}");
            tb.mcast_py(&format!("h{h}"), &["zap", &group, "--count", &joins, "--gap-ms", "1000"])
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (LOGINS.iter())
        .map(|h| {
            let host = Host { ns: tb.ns(&format!("h{h}")), dir: tb.dir.join(format!("h{h}")) };
            let stop = stop.clone();
            std::thread::spawn(move || host.login_loop(&stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..events {
        std::thread::sleep(Duration::from_millis(1000));
        let (drops, retrans) = counters(tb);
        let t0 = unix_now();
        match phase {
            Phase::Idle => continue,
            Phase::HandOver => {
                let exit = tb.hand_over_mcgate();
                assert!(exit.success(), "{exit}\n{}", tb.log());
            }
            Phase::Restart => {
                tb.stop_mcgate();
                tb.start_mcgate();
            }
            Phase::SystemdReload => {
                let before = tb.main_pid();
                let (ok, out) = tb.systemctl(&["reload", "mcgate"]);
                assert!(ok && tb.main_pid() != before, "{out}\n{}", tb.log());
                assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
            }
            Phase::SystemdRestart => {
                let (ok, out) = tb.systemctl(&["restart", "mcgate"]);
                assert!(ok, "{out}\n{}", tb.log());
                assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
            }
            Phase::SystemdCrash => {
                let before = tb.main_pid();
                let (ok, out) = tb.systemctl(&["kill", "-s", "KILL", "mcgate"]);
                assert!(ok, "{out}");
                f.kills.push(t0);
                let back = || tb.main_pid() != before && tb.main_pid() != 0 && tb.status().is_some();
                assert!(wait_until(Duration::from_secs(15), back), "not restarted:\n{}", tb.log());
            }
            Phase::Standby => {
                tb.kill_mcgate();
                f.kills.push(t0);
                f.exits.push((unix_now() - t0) * 1e3);
                tb.standby_took_over();
                assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
                f.gaps.push((unix_now() - t0) * 1e3);
                tb.start_standby();
                f.capture_drops += drops;
                f.radius_retransmissions += retrans;
                continue;
            }
        }
        f.gaps.push((unix_now() - t0) * 1e3);
        f.capture_drops += drops;
        f.radius_retransmissions += retrans;
    }
    for (z, h) in zaps.into_iter().zip(ZAPPERS) {
        let r = result(z);
        for (i, v) in r["report_to_first_ms"].as_array().into_iter().flatten().enumerate() {
            match v.as_f64() {
                Some(ms) => {
                    f.joins.push(ms);
                    if let Some(at) = r["report_at"][i].as_f64() {
                        f.joined.push((h, at, ms));
                    }
                    if ms > f.slowest.0 {
                        f.slowest = (ms, h, i + 1);
                    }
                }
                None => f.joins_missed += 1,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let (times, failed, restarts) = l.join().unwrap();
        f.logins.extend(times);
        f.logins_failed += failed;
        f.eap_restarts += restarts;
    }
    let (drops, retrans) = counters(tb);
    f.capture_drops += drops;
    f.radius_retransmissions += retrans;
    f.windows = windows(tb, start, &f.kills);
    f
}

fn main() {
    let events: usize = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let chosen = std::env::var("PHASES").ok();
    let mut tb = Testbed::new("hb", 6);
    tb.radius_sql(1812);
    let ports: Vec<(String, &str)> = (1..=6).map(|i| (format!("p{i}"), "dot1x")).collect();
    let ports: Vec<(&str, &str)> = ports.iter().map(|(p, m)| (p.as_str(), *m)).collect();
    // the login loop starts a conversation every second or so: more than a host may by
    // default (restart_holdoff 5 s), which would measure the hold-off, not the process
    let cfg = tb.config(&ports, &["127.0.0.1:1812"], "tx_period = \"1s\"\nrestart_holdoff = \"100ms\"", "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nfast_leave = true\n")
        .replace("log_level = \"debug\"", &format!("log_level = \"{level}\""))
        + "\n[accounting]\ninterim_interval = \"0s\"\n\
           [[accounting.server]]\naddress = \"127.0.0.1:1813\"\nsecret_file = \"secret\"\n";
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    for h in ZAPPERS {
        tb.supplicant(h, "alice", "alicepass", "md5");
    }
    for h in LOGINS {
        tb.supplicant(h, "alice", "alicepass", "peap");
    }
    assert!(wait_until(Duration::from_secs(30), || tb.sessions().len() == 6), "{}", tb.log());
    // the streams for the whole run, at 997 packets/s (off the kernel's 4 ms tick)
    let streams: Vec<Child> = (ZAPPERS.iter())
        .map(|h| {
            let g = format!("239.1.1.{h}");
            tb.mcast_py("up", &["send", &g, "--pps", "997", "--seconds", &(events * 3 + 120).to_string()])
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let mut rows = Vec::new();
    let mut idle_p99 = (0.0, 0.0);
    let mut commits = String::new();
    let mut before = (0, 0, 0);
    let phases = [
        Phase::Idle,
        Phase::HandOver,
        Phase::Restart,
        Phase::Standby,
        Phase::SystemdReload,
        Phase::SystemdRestart,
        Phase::SystemdCrash,
    ];
    let wanted = |p: &Phase| *p == Phase::Idle || chosen.as_deref().is_none_or(|c| c.split(',').any(|n| n == p.name()));
    let phases: Vec<Phase> = phases.into_iter().filter(wanted).collect();
    let mut under_systemd = false;
    for phase in phases {
        if phase == Phase::Standby {
            tb.start_standby();
        }
        if matches!(phase, Phase::SystemdReload | Phase::SystemdRestart | Phase::SystemdCrash) && !under_systemd {
            under_systemd = true;
            // the same switch under systemd: the standby and the daemon go, the unit starts
            // on the same store (a plain start: the store of descriptors is empty)
            tb.stop_standby();
            tb.stop_mcgate();
            // 20 restarts in 20 s: beyond the start rate systemd allows by default
            tb.start_systemd_mcgate("[Unit]\nStartLimitIntervalSec=0");
            assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
        }
        let mut f = run_phase(&mut tb, phase, events);
        if phase == Phase::Idle {
            idle_p99 = (pct(&mut f.joins.clone(), 99.0), pct(&mut f.logins.clone(), 99.0));
            commits = common::slow_commits(&tb.status().unwrap_or(Value::Null));
        }
        // the phase's accounting: every record delivered, then the journal against what
        // FreeRADIUS wrote, counted since the last phase
        assert!(
            wait_until(Duration::from_secs(30), || tb.status().and_then(|s| s["accounting"]["backlog"].as_u64())
                == Some(0)),
            "accounting not delivered: {:?}",
            tb.status()
        );
        let (written, journaled) = (tb.accounting_written(1812), tb.journaled());
        let lost = journaled.iter().filter(|k| !written.contains_key(*k)).count();
        let duplicated: usize = written.values().map(|n| n - 1).sum();
        let now = (journaled.len(), lost, duplicated);
        f.accounting = (now.0 - before.0, now.1 - before.1, now.2 - before.2);
        before = now;
        rows.push((phase, f));
    }
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }

    println!(
        "hand-over, plain restart and hot standby, {events} each, under load (4 hosts zapping, 2 logging in and out with PEAP)"
    );
    println!("idle p99: join (report → first packet) {:.2} ms, PEAP login {:.0} ms", idle_p99.0, idle_p99.1);
    println!("idle phase's journal commits (on the writer thread): {commits}");
    if let Some((_, f)) = rows.first() {
        let (ms, h, i) = f.slowest;
        println!("idle phase's slowest join: {ms:.2} ms, h{h}'s join {i} of {}", events + 3);
    }
    println!(
        "{:<14} {:>5} {:>15} {:>7} {:>4} {:>6} {:>13} {:>7} {:>9} {:>5} {:>7} {:>14} {:>14} {:>12}",
        "",
        "joins",
        "p50 / p99 ms",
        ">idle99",
        "none",
        "logins",
        "p50 / p99 ms",
        ">idle99",
        "EAP again",
        "drops",
        "retrans",
        "acct lost/dup",
        "unread p50/max",
        "done p50/max"
    );
    for (phase, f) in &mut rows {
        let late = f.joins.iter().filter(|v| **v > idle_p99.0).count();
        let slow = f.logins.iter().filter(|v| **v > idle_p99.1).count();
        println!(
            "{:<14} {:>5} {:>15} {:>7} {:>4} {:>6} {:>13} {:>7} {:>9} {:>5} {:>7} {:>14} {:>14} {:>12}",
            format!("{phase:?}"),
            f.joins.len() + f.joins_missed,
            format!("{:.2} / {:.2}", pct(&mut f.joins, 50.0), pct(&mut f.joins, 99.0)),
            late,
            f.joins_missed,
            f.logins.len() + f.logins_failed,
            format!("{:.0} / {:.0}", pct(&mut f.logins, 50.0), pct(&mut f.logins, 99.0)),
            slow + f.logins_failed,
            f.eap_restarts,
            f.capture_drops,
            f.radius_retransmissions,
            format!("{} / {} of {}", f.accounting.1, f.accounting.2, f.accounting.0),
            p50_max(&f.windows),
            p50_max(&f.gaps),
        );
    }
    // the joins over twice the idle p99, each with what mcgate logged last before its report
    // (of the processes' own events: the login loops' lines left out)
    let chatter = ["authorized", "port open", "port closed", "EAPOL-Logoff"];
    let timed = timed_log(&tb);
    let log: Vec<(f64, String)> = (timed.iter())
        .filter(|(_, l)| !l.starts_with("DEBUG") && !chatter.iter().any(|c| l.contains(c)))
        .map(|(t, l)| (*t, l.chars().take(110).collect()))
        .collect();
    // at LOG_LEVEL=debug: when mcgate logged the join's admission
    let admitted = |h: usize, at: f64, ms: f64| {
        let line = format!("join admitted port=\"p{h}\"");
        let when = timed.iter().find(|(t, l)| *t >= at - 0.001 && *t <= at + ms / 1e3 + 0.05 && l.contains(&line));
        when.map_or(String::new(), |(t, _)| format!("; admission logged {:.2} ms after the report", (t - at) * 1e3))
    };
    // (the phases the goal is for: a stop and start is slow by nature)
    let goal = [Phase::Idle, Phase::HandOver, Phase::Standby, Phase::SystemdReload];
    for (phase, f) in rows.iter().filter(|(p, _)| goal.contains(p)) {
        for &(h, at, ms) in f.joined.iter().filter(|(_, _, ms)| *ms > 2.0 * idle_p99.0) {
            let last = log.iter().rev().find(|(t, _)| *t <= at);
            let (since, line) = last.map_or((f64::NAN, ""), |(t, l)| ((at - t) * 1e3, l.as_str()));
            let admitted = admitted(h, at, ms);
            // a report that came between a kill and the standby running waited for the take-over
            let kill =
                f.kills.iter().zip(&f.windows).zip(&f.exits).find(|((k, w), _)| at >= **k && at <= *k + *w / 1e3);
            let window = kill.map_or(String::new(), |((k, w), e)| {
                format!(" — inside a take-over: {:.0} ms after the kill (the killed process gone at {e:.0} ms, the standby running at {w:.0})", (at - k) * 1e3)
            });
            println!("{phase:?}: h{h}'s join's first packet after {ms:.2} ms; its report {since:.0} ms after \"{line}\"{admitted}{window}");
        }
    }
    for (phase, f) in &rows {
        if !f.exits.is_empty() {
            // each kill: (killed process gone, standby running), ms after the SIGKILL
            let each: Vec<String> = f.exits.iter().zip(&f.windows).map(|(e, w)| format!("{e:.0}/{w:.0}")).collect();
            println!("{phase:?}: killed process gone / standby running, ms after each SIGKILL: {}", each.join(" "));
        }
    }
}
