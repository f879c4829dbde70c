//! Sustained joins through the capture sockets from many ports at once: each host floods
//! IGMPv3 reports from a raw socket (one Python process per host, as fast as it sends),
//! and mcgate decodes, looks up and decides every one. Two loads in one run: joins the
//! policy denies (decode + decide, nothing written) and joins it admits (each one also a
//! durable membership record and an MDB entry). "Lost" = sent − decided.
//!
//!     sudo cargo bench --bench capture          (HOSTS=8, REPORTS=100000 per host flat out)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{bucket_quantile, histogram, wait_until, Testbed};
use serde_json::Value;
use std::time::{Duration, Instant};

fn counter(tb: &Testbed, path: &[&str]) -> u64 {
    let mut v: Value = tb.status().unwrap_or_default();
    for p in path {
        v = v[*p].clone();
    }
    v.as_u64().unwrap_or(0)
}

/// Decided records so far: admitted + denied (any reason) + refreshed.
fn decided(tb: &Testbed) -> u64 {
    let t = tb.status().unwrap_or_default()["multicast"]["tracker"].clone();
    let denied: u64 = t["denied"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    t["admitted"].as_u64().unwrap_or(0) + t["refreshed"].as_u64().unwrap_or(0) + denied
}

/// The decision-latency histogram: bucket bounds (µs) and counts.
fn latency(tb: &Testbed) -> (Vec<u64>, Vec<u64>) {
    histogram(&tb.status().unwrap_or_default(), "decision_latency")
}

/// The bucket bound (µs) under which fraction `q` of the reports between two snapshots
/// were decided; "more" beyond the last bound.
fn quantile(bounds: &[u64], before: &[u64], after: &[u64], q: f64) -> String {
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    bucket_quantile(bounds, &delta, q, |b| format!("≤ {b}"))
}

struct Load {
    /// Decision latency p50 and p99 (bucket bounds, µs).
    p50: String,
    p99: String,
    sent: u64,
    decided: u64,
    kernel_drops: u64,
    /// From the first decision to the last (to the samples' precision, 50 ms and more).
    seconds: f64,
    /// How long the slowest sender took to send its share.
    sending: f64,
}

/// Every host sends `per_host` reports at `pps` each (0: flat out); waits until mcgate
/// has worked off what reached it.
fn run_load(tb: &Testbed, hosts: usize, per_host: usize, pps: usize) -> Load {
    let before = decided(tb);
    let drops_before = counter(tb, &["io", "capture_drops"]);
    let (_, latency_before) = latency(tb);
    // all hosts start at once, after the slowest interpreter has started
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64() + 1.5;
    let at = format!("{at:.3}");
    let mut floods: Vec<_> = (1..=hosts)
        .map(|h| {
            let mac = Testbed::host_mac(h);
            let ip = format!("192.0.2.{}", 10 + h);
            let (count, rate) = (per_host.to_string(), pps.to_string());
            tb.mcast_py(
                &format!("h{h}"),
                &["flood", "--src-mac", &mac, "--src-ip", &ip, "--count", &count, "--pps", &rate, "--at", &at],
            )
        })
        .collect();
    // mcgate's own count, sampled while the hosts send: the decision rate runs from the
    // last sample within a few reports of the start to the first within a few of the end
    // (the hosts' own kernel reports come at any time)
    let mut samples = vec![(Instant::now(), before)];
    let mut last_change = Instant::now();
    loop {
        let sending = floods.iter_mut().any(|f| f.try_wait().ok().flatten().is_none());
        if !sending && last_change.elapsed() > Duration::from_millis(500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = decided(tb);
        if Some(now) != samples.last().map(|s| s.1) {
            last_change = Instant::now();
        }
        samples.push((Instant::now(), now));
    }
    let last = samples.last().map_or(before, |s| s.1);
    let start = samples.iter().rev().find(|s| s.1 <= before + 32).map(|s| s.0);
    let end = samples.iter().find(|s| s.1 + 32 >= last).map(|s| s.0);
    let sending = floods.into_iter().map(|f| common::result(f)["seconds"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max);
    let (bounds, latency_after) = latency(tb);
    Load {
        p50: quantile(&bounds, &latency_before, &latency_after, 0.50),
        p99: quantile(&bounds, &latency_before, &latency_after, 0.99),
        sent: (hosts * per_host) as u64,
        decided: last - before,
        kernel_drops: counter(tb, &["io", "capture_drops"]) - drops_before,
        seconds: start.zip(end).map_or(0.0, |(s, e)| (e - s).as_secs_f64()),
        sending,
    }
}

/// A row of the table; the decision rate is what mcgate's own count says (for a paced
/// load that loses nothing, the offered rate to the samples' precision).
fn row(what: &str, l: &Load) {
    let lost = l.sent.saturating_sub(l.decided);
    println!(
        "| {what} | {} in {:.2} s | {} | {lost} | {} | {:.0} | {} / {} |",
        l.sent,
        l.sending,
        l.decided,
        l.kernel_drops,
        l.decided as f64 / l.seconds,
        l.p50,
        l.p99
    );
}

fn main() {
    let hosts: usize = std::env::var("HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let per_host: usize = std::env::var("REPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut tb = Testbed::new("cap", hosts);
    tb.radius(1812);
    let ports: Vec<String> = (1..=hosts).map(|i| format!("p{i}")).collect();
    let list: Vec<(&str, &str)> = ports.iter().map(|p| (p.as_str(), "dot1x")).collect();
    let cfg = tb.config(&list, &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap().replace("log_level = \"debug\"", "log_level = \"warn\""),
    )
    .unwrap();
    // 239.2.0.0/16 is denied (no package); 239.3.0.0/16 admitted, no limits
    tb.multicast(
        "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"all\"\ngroups = [\"239.3.0.0/16\"]\n",
        "port_max_groups = 0",
    );
    // the decision path is measured here, not the flood limits (benches/flood.rs)
    let unlimited = "\n[limits]\nreports_per_second = 1e9\nreport_burst = 1e9\nreports_per_second_per_mac = 1e9\n\
                     report_burst_per_mac = 1e9\n";
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (head, multicast) = text.split_once("\n[multicast]").unwrap();
    std::fs::write(&cfg, format!("{head}{unlimited}\n[multicast]{multicast}")).unwrap();
    tb.start_mcgate();
    for h in 1..=hosts {
        tb.supplicant(h, "alice", "alicepass", "md5");
    }
    assert!(wait_until(Duration::from_secs(30), || tb.sessions().len() == hosts), "not all hosts authorized");
    println!("\nreports through the capture sockets, {hosts} ports at once, one sending process per host:");
    println!("| load | sent | decided | lost | of which kernel drops | decided/s | decision p50 / p99 µs |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let paced: Vec<usize> = std::env::var("PACED")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![16_000, 100_000, 200_000, 300_000, 400_000]);
    for total in paced {
        let per_host_pps = total / hosts;
        let l = run_load(&tb, hosts, per_host_pps * 2, per_host_pps);
        row(&format!("denied joins, paced at {total}/s"), &l);
    }
    let l = run_load(&tb, hosts, per_host, 0);
    row("denied joins, flat out", &l);
    // admitted: the flood's groups moved into the package's range
    let text =
        std::fs::read_to_string(tb.dir.join("policies/test.toml")).unwrap().replace("239.3.0.0/16", "239.2.0.0/16");
    std::fs::write(tb.dir.join("policies/test.toml"), text).unwrap();
    tb.stop_mcgate();
    tb.start_mcgate();
    let l = run_load(&tb, hosts, 2000, 1000);
    row(&format!("admitted joins (each new group a durable record + MDB entry), paced at {}/s", hosts * 1000), &l);
}
