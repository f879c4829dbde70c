//! Flood isolation, measured: the neighbour's join → first packet while one port floods
//! 100 000 IGMPv3 reports/s from a raw socket, against the same without the flood, in
//! one run; and mcgate's CPU and memory meanwhile.
//!
//!     sudo cargo bench --bench flood          (JOINS=200 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, result, rss_kib, Testbed};
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

fn main() {
    let joins: usize = std::env::var("JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(200).min(1000);
    let tb = Testbed::single_host_pair("flb", "warn", "");
    let mut stream = tb.mcast_py("up", &["send", "239.1.1.2", "--pps", "997", "--seconds", "600"]);
    std::thread::sleep(Duration::from_millis(500));
    let pid = tb.daemon_pid().unwrap();

    let (mut idle, idle_missed) = zap(&tb, joins);
    // the flood lasts as long as the zapping does, and no longer than a minute
    let flood = tb.report_flood(1, 6_000_000, 100_000);
    std::thread::sleep(Duration::from_secs(4)); // past the quarantine (3 s by default)
    let (cpu0, t0, rss0) = (cpu_s(pid), Instant::now(), rss_kib(pid));
    let (mut flooded, flood_missed) = zap(&tb, joins);
    let (cpu, secs, rss) = (cpu_s(pid) - cpu0, t0.elapsed().as_secs_f64(), rss_kib(pid));
    let mut flood = flood;
    let _ = flood.kill();
    let _ = flood.wait();
    let _ = stream.kill();
    let _ = stream.wait();
    let s = tb.status().unwrap_or_default();
    let p1 = &s["limits"]["p1"];

    println!("\nneighbour's join → first packet while p1 floods 100 000 IGMPv3 reports/s (stream 997 pps):");
    println!("| | median ms | p99 ms | no packet within 2 s |");
    println!("| --- | --- | --- | --- |");
    let (im, ip) = (pct(&mut idle, 50.0), pct(&mut idle, 99.0));
    let (fm, fp) = (pct(&mut flooded, 50.0), pct(&mut flooded, 99.0));
    println!("| idle, {joins} joins | {im:.2} | {ip:.2} | {idle_missed} |");
    println!("| p1 flooding, {joins} joins | {fm:.2} | {fp:.2} | {flood_missed} |");
    println!("| ratio | {:.2} | {:.2} | |", fm / im, fp / ip);
    println!(
        "\nmcgate during the flood: CPU {:.1} % of one core, RSS {rss0} → {rss} KiB; p1 quarantined: {}, \
         reports dropped there: {}",
        100.0 * cpu / secs,
        p1["quarantined"],
        p1["dropped_quarantined"].as_u64().unwrap_or(0)
            + p1["dropped_port_rate"].as_u64().unwrap_or(0)
            + p1["dropped_mac_rate"].as_u64().unwrap_or(0)
    );
}
