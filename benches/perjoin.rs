//! A cold per-join RADIUS decision in mcgate vs radclient's round trip to the same
//! FreeRADIUS, in one run. mcgate: a report for a group no package names (each group new,
//! so nothing is cached) → Access-Request → Access-Accept → membership admitted, timed
//! from mcgate's own log. radclient: the same Access-Requests, one at a time.
//!
//!     sudo cargo bench --bench perjoin          (JOINS=100 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, rfc3339, run, wait_until, Testbed};
use std::process::Command;
use std::time::{Duration, Instant};

const POLICY: &str = "[defaults]\nunknown = \"radius\"\n";

/// Timestamp of the first log line containing all of `needles`.
fn logged(log: &str, needles: &[&str]) -> Option<f64> {
    log.lines().find(|l| needles.iter().all(|n| l.contains(n))).and_then(|l| rfc3339(l.split_whitespace().next()?))
}

fn main() {
    let joins: usize = std::env::var("JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(100).min(250);
    let mut tb = Testbed::new("pjb", 1);
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()));

    let mac = Testbed::host_mac(1);
    let mut decision = Vec::new();
    for i in 1..=joins {
        let group = format!("239.1.5.{i}");
        let rec = format!("4:{group}");
        let out = tb
            .mcast_py("h1", &["inject", "--src-mac", &mac, "--src-ip", "192.0.2.11", &rec])
            .wait_with_output()
            .unwrap();
        assert!(out.status.success());
        let admitted = format!("group={group} source=None by=\"radius\"");
        assert!(wait_until(Duration::from_secs(5), || tb.log().contains(&admitted)), "{group} not admitted");
        let log = tb.log();
        let asked = logged(&log, &["per-join Access-Request", &format!("group={group}")]).unwrap();
        let done = logged(&log, &["join admitted", &admitted]).unwrap();
        decision.push((done - asked) * 1e3);
    }

    // radclient: the same requests to the same server, one at a time
    let raddb = tb.dir.join("radius-1812");
    let mut reqs = String::new();
    for i in 1..=joins {
        reqs += &format!(
            "User-Name = \"alice\"\nService-Type = Authorize-Only\nMcgate-Group = \"239.1.5.{i}\"\n\
             Calling-Station-Id = \"02-00-00-00-00-11\"\nNAS-Port-Id = \"p1\"\nMessage-Authenticator = 0x00\n\n"
        );
    }
    let file = tb.dir.join("perjoin.txt");
    std::fs::write(&file, reqs).unwrap();
    let t = Instant::now();
    run(Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "radclient", "-q", "-p", "1", "-c", "1", "-d"])
        .arg(&raddb)
        .arg("-f")
        .arg(&file)
        .args(["127.0.0.1:1812", "auth", "testing123"]));
    let radclient_ms = t.elapsed().as_secs_f64() * 1e3 / joins as f64;

    let (m, p99) = (pct(&mut decision, 50.0), pct(&mut decision, 99.0));
    println!("\ncold per-join RADIUS decision, {joins} joins, FreeRADIUS 3.2.1 on the switch's loopback:");
    println!("| | median ms | p99 ms |");
    println!("| --- | --- | --- |");
    println!("| mcgate: report decided, request → admitted (its log) | {m:.2} | {p99:.2} |");
    println!("| radclient: one request after another (wall / {joins}) | {radclient_ms:.2} | |");
}
