//! Flood isolation, measured: the neighbour's join → first packet while one port floods
//! 100 000 IGMPv3 reports/s from a raw socket, and while it sends 100 000 junk datagrams/s
//! to the CoA port, against the same without a flood, in one run; and mcgate's CPU and
//! memory meanwhile.
//!
//!     sudo cargo bench --bench flood          (JOINS=200 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, result, rss_kib, wait_until, Testbed};
use std::time::{Duration, Instant};

/// utime + stime of a process, seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after the command: state is 0, utime 11, stime 12; 100 ticks per second
    (ticks(11) + ticks(12)) / 100.0
}

/// `joins` zaps by host 2; (first-packet times in ms, joins without a packet).
fn zap(tb: &Testbed, joins: usize) -> (Vec<f64>, usize) {
    let z = result(tb.mcast_py("h2", &["zap", "239.1.1.2", "--count", &joins.to_string(), "--gap-ms", "60"]));
    let all = z["first_ms"].as_array().unwrap();
    let got: Vec<f64> = all.iter().filter_map(|x| x.as_f64()).collect();
    let missed = all.len() - got.len();
    (got, missed)
}

/// Logins of host 2 timed in each phase, after its zaps.
const LOGINS: usize = 5;

/// Host 2 logs off and on again (wpa_cli, EAP-MD5): ms from the logon to its session.
fn log_in_again(tb: &Testbed) -> f64 {
    tb.wpa_cli(2, &["logoff"]);
    assert!(wait_until(Duration::from_secs(5), || tb.session_of("p2").is_none()), "{}", tb.log());
    let t0 = Instant::now();
    tb.wpa_cli(2, &["logon"]);
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p2").is_some()), "{}", tb.log());
    t0.elapsed().as_secs_f64() * 1e3
}

/// What host 1 floods while host 2 zaps and logs in.
enum Flood {
    /// Crafted IGMPv3 reports from a raw socket, 100 000/s.
    Reports,
    /// Reports at the per-MAC allowance (100/s), each a join of one of 200 groups and a
    /// leave of another: a set-top box zapping as fast as it may.
    Churn,
    /// Junk UDP datagrams at a port nobody listens on, 100 000/s: what the flooder
    /// alone costs the machine, the baseline of the next.
    ClosedPort,
    /// The same at the CoA port on the bridge's address.
    CoaPort,
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    joins: Vec<f64>,
    missed: usize,
    logins: Vec<f64>,
    cpu_percent: f64,
    rss_kib: (u64, u64),
}

fn main() {
    let joins: usize = std::env::var("JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(200).min(1000);
    // the CoA port on every address, the bridge's among them, as the flood's target
    let das = "\n[dynamic_authorization]\nlisten = \"0.0.0.0:3799\"\n\
               [[dynamic_authorization.client]]\naddress = \"127.0.0.1\"\nsecret_file = \"secret\"\n";
    // host 2 logs in again LOGINS times a phase: more conversations than the restart
    // hold-off lets through by default
    let tb = Testbed::single_host_pair("flb", "warn", "restart_holdoff = \"100ms\"", das);
    let mut stream = tb.mcast_py("up", &["send", "239.1.1.2", "--pps", "997", "--seconds", "600"]);
    std::thread::sleep(Duration::from_millis(500));
    let pid = tb.daemon_pid().unwrap();

    let mut phases = vec![];
    for (name, flood) in [
        ("idle", None),
        ("p1 churns 200 groups at 100 reports/s", Some(Flood::Churn)),
        ("p1 floods 100 000 IGMPv3 reports/s", Some(Flood::Reports)),
        ("p1 sends 100 000 junk datagrams/s to a closed port", Some(Flood::ClosedPort)),
        ("p1 sends 100 000 junk datagrams/s to the CoA port", Some(Flood::CoaPort)),
    ] {
        // each flood lasts as long as the zapping does, and no longer than a minute
        let flooding = flood.map(|f| match f {
            Flood::Reports => {
                let child = tb.report_flood(1, 6_000_000, 100_000);
                std::thread::sleep(Duration::from_secs(4)); // past the quarantine (3 s by default)
                child
            }
            Flood::Churn => {
                let mac = Testbed::host_mac(1);
                let args = ["churn", "--src-mac", &mac, "--src-ip", "192.0.2.11", "--count", "6000", "--pps", "100"];
                let child = tb.mcast_py("h1", &args);
                std::thread::sleep(Duration::from_secs(1));
                child
            }
            Flood::ClosedPort | Flood::CoaPort => {
                let port = if matches!(f, Flood::CoaPort) { "3799" } else { "3798" };
                let args = ["udpflood", "192.0.2.1", "--port", port, "--count", "6000000", "--pps", "100000"];
                let child = tb.mcast_py("h1", &args);
                std::thread::sleep(Duration::from_secs(1));
                child
            }
        });
        let (cpu0, t0, rss0) = (cpu_s(pid), Instant::now(), rss_kib(pid));
        let (got, missed) = zap(&tb, joins);
        let (cpu, secs, rss) = (cpu_s(pid) - cpu0, t0.elapsed().as_secs_f64(), rss_kib(pid));
        let logins = (0..LOGINS).map(|_| log_in_again(&tb)).collect();
        if let Some(mut child) = flooding {
            let _ = child.kill();
            let _ = child.wait();
        }
        phases.push(Phase { name, joins: got, missed, logins, cpu_percent: 100.0 * cpu / secs, rss_kib: (rss0, rss) });
    }
    let _ = stream.kill();
    let _ = stream.wait();
    let s = tb.status().unwrap_or_default();
    let p1 = &s["limits"]["p1"];

    println!("\nneighbour's join → first packet while p1 floods (stream 997 pps, {joins} joins each):");
    println!(
        "| | median ms | p99 ms | ratio to idle | no packet within 2 s | mcgate CPU % of a core | RSS KiB | \
         h2's MD5 login median / max ms ({LOGINS}) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let (mut im, mut ip) = (0.0, 0.0);
    for p in &mut phases {
        let (m, p99) = (pct(&mut p.joins, 50.0), pct(&mut p.joins, 99.0));
        if p.name == "idle" {
            (im, ip) = (m, p99);
        }
        println!(
            "| {} | {m:.2} | {p99:.2} | {:.2} / {:.2} | {} | {:.1} | {} → {} | {:.1} / {:.1} |",
            p.name,
            m / im,
            p99 / ip,
            p.missed,
            p.cpu_percent,
            p.rss_kib.0,
            p.rss_kib.1,
            pct(&mut p.logins, 50.0),
            pct(&mut p.logins, 100.0)
        );
    }
    println!(
        "\np1 quarantined: {}, reports dropped there: {}; CoA datagrams dropped as from an unknown client: {}",
        p1["quarantined"],
        p1["dropped_quarantined"].as_u64().unwrap_or(0)
            + p1["dropped_port_rate"].as_u64().unwrap_or(0)
            + p1["dropped_mac_rate"].as_u64().unwrap_or(0),
        s["dynamic_authorization"]["dropped"]["unknown_client"]
    );
}
