//! Join → first multicast packet at the host: mcgate deciding by package vs the same
//! bridge with plain kernel snooping and no mcgate, in one run, on the same topology.
//! Both ports leave fast (mcgate: `single_host`; kernel: `fastleave on`), and neither
//! floods unregistered multicast to the port, so every join is a fresh decision.
//! The stream runs at 997 packets/s (detuned from the 4 ms timer tick, docs/peers-and-kernel.md).
//!
//!     sudo cargo bench --bench join          (JOINS=200 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{bucket_quantile, histogram, pct, run, wait_until, Testbed};
use std::process::Command;
use std::time::Duration;

const POLICY: &str = "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

fn zap(tb: &Testbed, joins: usize) -> (Vec<f64>, usize) {
    let child = tb.mcast_py("h1", &["zap", "239.1.1.1", "--count", &joins.to_string(), "--gap-ms", "60"]);
    let r = common::result(child);
    let all = r["first_ms"].as_array().unwrap();
    let got: Vec<f64> = all.iter().filter_map(|v| v.as_f64()).collect();
    let missed = all.len() - got.len();
    (got, missed)
}

fn main() {
    let joins: usize = std::env::var("JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut tb = Testbed::new("jn", 1);
    tb.radius(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    let t =
        std::fs::read_to_string(&cfg).unwrap().replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nsingle_host = true\n");
    std::fs::write(&cfg, t.replace("log_level = \"debug\"", "log_level = \"warn\"")).unwrap();
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()));
    let mut stream = tb.mcast_py("up", &["send", "239.1.1.1", "--pps", "997", "--seconds", "600"]);
    std::thread::sleep(Duration::from_secs(1));
    let (mut with, missed_with) = zap(&tb, joins);
    // mcgate's own part: capture → decided, and capture → MDB entry installed (commit included)
    let status = tb.status().unwrap_or_default();
    let inside = |name: &str| {
        let (bounds, counts) = histogram(&status, name);
        let ms = |b: u64| format!("≤ {:.2}", b as f64 / 1000.0);
        // the whole distribution, by bucket
        let all: Vec<String> = bounds
            .iter()
            .map(|b| ms(*b))
            .chain(["more".to_string()])
            .zip(&counts)
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| format!("{b}: {n}"))
            .collect();
        let total: u64 = counts.iter().sum();
        (bucket_quantile(&bounds, &counts, 0.5, ms), bucket_quantile(&bounds, &counts, 0.99, ms), total, all.join(", "))
    };
    let decision = inside("decision_latency");
    let admission = inside("admission_latency");

    // the same bridge without mcgate: teardown (which puts back the bridge as the testbed
    // made it, without a querier), then kernel snooping with the querier and query versions
    // mcgate sets, and fast leave
    tb.stop_mcgate();
    let sw = tb.ns("sw");
    run(Command::new("ip").args(["netns", "exec", &sw, common::MCGATE, "teardown", "-c"]).arg(&cfg));
    run(Command::new("ip").args(["netns", "exec", &sw, "ip", "link", "set", "br0", "type", "bridge"]).args([
        "mcast_snooping",
        "1",
        "mcast_querier",
        "1",
        "mcast_query_use_ifaddr",
        "1",
        "mcast_igmp_version",
        "3",
        "mcast_mld_version",
        "2",
    ]));
    // the bridge floods for one query response interval after its querier starts (1 s here)
    std::thread::sleep(Duration::from_millis(1500));
    run(Command::new("ip").args([
        "netns",
        "exec",
        &sw,
        "bridge",
        "link",
        "set",
        "dev",
        "p1",
        "fastleave",
        "on",
        "mcast_flood",
        "off",
    ]));
    let (mut plain, missed_plain) = zap(&tb, joins);
    let _ = stream.kill();
    let _ = stream.wait();

    let (m1, p1) = (pct(&mut with, 50.0), pct(&mut with, 99.0));
    let (m0, p0) = (pct(&mut plain, 50.0), pct(&mut plain, 99.0));
    println!("\njoin → first packet at the host, {joins} joins each, stream 997 pps:");
    println!("| | median ms | p99 ms | no packet within 2 s |");
    println!("| --- | --- | --- | --- |");
    println!("| mcgate (package decision, MDB entry) | {m1:.2} | {p1:.2} | {missed_with} |");
    println!("| plain kernel snooping, no mcgate | {m0:.2} | {p0:.2} | {missed_plain} |");
    println!("| ratio | {:.3} | {:.3} | |", m1 / m0, p1 / p0);
    println!("\ninside mcgate (histogram bucket bounds, ms):");
    println!("| | median | p99 | count |");
    println!("| --- | --- | --- | --- |");
    println!("| capture → decided | {} | {} | {} |", decision.0, decision.1, decision.2);
    println!(
        "| capture → MDB entry installed (durable commit included) | {} | {} | {} |",
        admission.0, admission.1, admission.2
    );
    println!("\ncapture → decided by bucket (ms): {}", decision.3);
    println!("capture → MDB entry installed by bucket (ms): {}", admission.3);
}
