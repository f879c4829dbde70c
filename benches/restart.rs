//! The daemon with an aggregation box's state, against the kernel: 64 000 sessions (16
//! multi-host ports of 4 000 hosts each, as on a port facing a DSLAM or an OLT) holding 4
//! channels each, 256 000 memberships. The state goes into the store directly (logging
//! 64 000 hosts in through wpa_supplicant is not what is measured); mcgate then starts
//! with it, as after an upgrade. Printed beside the same daemon with the store empty, in
//! one run:
//!
//! - start → deciding: from `mcgate run` to the first answer on the control socket (the
//!   store read, sessions and memberships restored, the kernel's FDB and MDB made to match),
//!   once with the kernel empty (its entries all added) and once with them in place;
//! - RSS of the whole process, and per session and per membership over the empty daemon;
//! - `mcgate status --json`, `sessions --json` and `memberships --json`: time and size;
//! - the database file and what each restart adds to the journal;
//! - a join's decision latency (capture → decided, mcgate's own histogram) with that state,
//!   beside the same with 1 000 sessions (`SMALL`): 4 real hosts, whose sessions are in the
//!   store too, send IGMPv3 joins at 500/s each for 4 s (50 groups each, all admitted: the
//!   first of each a durable record and an MDB entry, the rest refreshes).
//! - with a hot standby following (`mcgate run --standby`): the active process's
//!   CPU with nobody doing anything, its joins' decisions, the standby's RSS; then the
//!   active one killed: kill → the standby answering on the control socket.
//!
//!     sudo cargo bench --bench restart          (SESSIONS=64000 HELD=4 by default)
//!
//! `HOLD_SECS=N` keeps the daemon with its state running N seconds, for a profiler.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{bucket_quantile, histogram, Testbed};
use mcgate::auth::{Method, ReplyAttrs};
use mcgate::mcast::{AcctId, Membership};
use mcgate::store::{Batch, Op, Session, Store};
use mcgate::wire::MacAddr;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORTS: usize = 16;
const CHANNELS: usize = 1000;
/// 239.1/16: the channels the stored memberships hold; 239.2/16: the joining hosts' (the
/// `mcast.py flood` range).
const POLICY: &str =
    "[[package]]\nname = \"basic\"\ngroups = [\"239.1.0.0/16\", \"239.2.0.0/16\"]\nbandwidth_kbps = 4000\n";
/// Hosts that send joins while the state is held (their sessions are in the store).
const JOINING: usize = 4;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// CPU time the process has used so far, all its threads (schedstat), ns.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// What the daemon spends per second with nobody doing anything (its timers: the
/// Interim-Updates that fall due, the reconciliation), over `secs` seconds.
fn idle_ms_per_s(tb: &Testbed, secs: u64) -> f64 {
    let pid = daemon_pid(tb);
    let (c0, t0) = (cpu_ns(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    (cpu_ns(pid) - c0) as f64 / 1e6 / t0.elapsed().as_secs_f64()
}

/// The pid of the `mcgate run` the testbed started (under `ip netns exec`, which execs).
fn daemon_pid(tb: &Testbed) -> u32 {
    tb.daemon_pid().expect("mcgate runs")
}

/// Time and size of one CLI call's answer.
fn cli(tb: &Testbed, what: &str) -> (Duration, usize) {
    let t0 = Instant::now();
    let out = Command::new(common::MCGATE).args([what, "--json", "-s"]).arg(tb.socket()).output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    (t0.elapsed(), out.stdout.len())
}

fn journal_records(tb: &Testbed) -> u64 {
    tb.status().unwrap_or_default()["accounting"]["journal"]["records"].as_u64().unwrap_or(0)
}

/// `sessions` hosts spread over the ports, each holding `held` of CHANNELS groups.
fn fill(path: &std::path::Path, sessions: usize, held: usize) {
    let store = Store::open(path).unwrap();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3600;
    let mut ops = Vec::new();
    for i in 0..sessions {
        let port = format!("p{}", 1 + i % PORTS);
        let mac = MacAddr([0x02, 0x10, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let account = format!("sub{i:06}");
        let session_id = format!("{:08X}-{i:08X}", 0x5EED_u32);
        let attrs = ReplyAttrs { filter_ids: vec!["basic".into()], ..Default::default() };
        let (port_arc, account_arc, sid): (Arc<str>, Arc<str>, Arc<str>) =
            (port.as_str().into(), account.as_str().into(), session_id.as_str().into());
        for k in 0..held {
            let c = (i * 7 + k * 251) % CHANNELS;
            ops.push(Op::PutMembership(Membership {
                port: port_arc.clone(),
                vlan: None,
                mac,
                account: account_arc.clone(),
                group: IpAddr::from([239, 1, (c / 256) as u8, (c % 256) as u8]),
                source: None,
                since,
                by: "basic".into(),
                bandwidth_kbps: 4000,
                session_id: sid.clone(),
                acct_session_id: AcctId { run: 0x5EED, n: (i * held + k) as u64 },
                usage_base: None,
            }));
        }
        ops.push(Op::PutSession(Session {
            port,
            vlan: None,
            mac,
            account,
            method: Method::Dot1x,
            session_id,
            since,
            attrs,
        }));
        if ops.len() >= 20_000 {
            store.commit(&Batch { ops: std::mem::take(&mut ops), ..Default::default() }).unwrap();
        }
    }
    // the hosts that join during the measurement, each on its own port
    for h in 1..=JOINING {
        ops.push(Op::PutSession(Session {
            port: format!("p{h}"),
            vlan: None,
            mac: Testbed::host_mac(h).parse().unwrap(),
            account: format!("joiner{h}"),
            method: Method::Dot1x,
            session_id: format!("{:08X}-J{h:07}", 0x5EED_u32),
            since,
            attrs: ReplyAttrs { filter_ids: vec!["basic".into()], ..Default::default() },
        }));
    }
    store.commit(&Batch { ops, ..Default::default() }).unwrap();
}

/// Decision latency of joins sent while the daemon holds its state: JOINING hosts at
/// 500/s each for 4 s (50 groups each); p50 / p99 (bucket bounds, µs), the mean, and how
/// many were decided of those sent.
fn joins(tb: &Testbed) -> String {
    let decided = |tb: &Testbed| -> u64 {
        let t = tb.status().unwrap_or_default()["multicast"]["tracker"].clone();
        let denied: u64 = t["denied"].as_object().map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum());
        t["admitted"].as_u64().unwrap_or(0) + t["refreshed"].as_u64().unwrap_or(0) + denied
    };
    let sum = |tb: &Testbed| -> (u64, u64) {
        let h = &tb.status().unwrap_or_default()["multicast"]["io"]["decision_latency"];
        (h["sum_us"].as_u64().unwrap_or(0), h["count"].as_u64().unwrap_or(0))
    };
    let (n0, (s0, c0)) = (decided(tb), sum(tb));
    let (bounds, before) = histogram(&tb.status().unwrap_or_default(), "decision_latency");
    let floods: Vec<_> = (1..=JOINING)
        .map(|h| {
            let (mac, ip) = (Testbed::host_mac(h), format!("192.0.2.{}", 10 + h));
            let args =
                ["flood", "--src-mac", &mac, "--src-ip", &ip, "--count", "2000", "--pps", "500", "--groups", "50"];
            tb.mcast_py(&format!("h{h}"), &args)
        })
        .collect();
    for f in floods {
        common::result(f);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, after) = histogram(&tb.status().unwrap_or_default(), "decision_latency");
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let (s1, c1) = sum(tb);
    let q = |q| bucket_quantile(&bounds, &delta, q, |b| format!("≤ {b}"));
    format!(
        "{} / {} µs, mean {:.0} µs ({} of {} decided)",
        q(0.5),
        q(0.99),
        (s1 - s0) as f64 / (c1 - c0).max(1) as f64,
        decided(tb) - n0,
        JOINING * 2000
    )
}

struct Start {
    to_deciding: Duration,
    rss_kib: u64,
    sessions: usize,
    memberships: usize,
    fdb: usize,
    mdb: usize,
}

/// Starts mcgate and waits until it answers; then reads what it holds.
fn start(tb: &mut Testbed) -> Start {
    let t0 = Instant::now();
    tb.start_mcgate_within(Duration::from_secs(120));
    let to_deciding = t0.elapsed();
    let status = tb.status().unwrap_or_default();
    let count = |cmd: &str, mark: &str| {
        let out = Command::new("ip").args(["netns", "exec", &tb.ns("sw"), "bridge"]).args(cmd.split(' ')).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains(mark)).count()).unwrap_or(0)
    };
    Start {
        to_deciding,
        rss_kib: rss_kib(daemon_pid(tb)),
        sessions: status["sessions"].as_u64().unwrap_or(0) as usize,
        memberships: status["multicast"]["memberships"].as_u64().unwrap_or(0) as usize,
        fdb: count("fdb show br br0", "static"),
        mdb: count("mdb show dev br0", "permanent"),
    }
}

fn main() {
    let sessions: usize = std::env::var("SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(64_000);
    let held: usize = std::env::var("HELD").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let per_port = sessions.div_ceil(PORTS);
    let mut tb = Testbed::new("rst", PORTS);
    let ports: Vec<String> = (1..=PORTS).map(|i| format!("p{i}")).collect();
    let list: Vec<(&str, &str)> = ports.iter().map(|p| (p.as_str(), "dot1x")).collect();
    let cfg = tb.config(&list, &["127.0.0.1:1812"], &format!("max_hosts_per_port = {}", per_port + 16), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("log_level = \"debug\"", "log_level = \"info\"");
    std::fs::write(&cfg, text).unwrap();
    // the joining hosts' 50 groups admitted at their pace
    tb.multicast(
        POLICY,
        &format!("max_channels_per_port = {}\nport_max_groups = 0\nmax_admissions_per_second = 1e4", CHANNELS + 24),
    );
    // the decision path is measured, not the flood limits (benches/flood.rs)
    let unlimited = "\n[limits]\nreports_per_second = 1e9\nreport_burst = 1e9\nreports_per_second_per_mac = 1e9\n\
                     report_burst_per_mac = 1e9\n";
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (head, multicast) = text.split_once("\n[multicast]").unwrap();
    std::fs::write(&cfg, format!("{head}{unlimited}\n[multicast]{multicast}")).unwrap();

    // the same daemon with nothing to hold: ports locked, multicast set up
    let empty = start(&mut tb);
    let empty_cli: Vec<_> = ["status", "sessions", "memberships"].iter().map(|w| cli(&tb, w)).collect();
    let empty_idle = idle_ms_per_s(&tb, 5);
    tb.stop_mcgate();

    let db = tb.dir.join("mcgate.redb");
    // the store as this run left it (its run's identity, what it found in the kernel), to
    // fill again for the small switch below
    let template = tb.dir.join("template.redb");
    std::fs::copy(&db, &template).unwrap();
    let t0 = Instant::now();
    fill(&db, sessions, held);
    let filled_in = t0.elapsed();
    let db_before = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    // first start with the state: the kernel has none of its entries yet
    let cold_kernel = start(&mut tb);
    let journal_1 = journal_records(&tb);
    let full_cli: Vec<_> = ["status", "sessions", "memberships"].iter().map(|w| cli(&tb, w)).collect();
    let full_idle = idle_ms_per_s(&tb, 10);
    let interims = journal_records(&tb);
    if let Some(secs) = std::env::var("HOLD_SECS").ok().and_then(|v| v.parse().ok()) {
        // for a profiler: the daemon with its state, its control socket's path
        eprintln!("holding for {secs} s: {}", tb.socket().display());
        std::thread::sleep(Duration::from_secs(secs));
    }
    tb.stop_mcgate();
    let db_after_1 = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    // and again, the kernel's entries in place: an upgrade
    let warm = start(&mut tb);
    let journal_2 = journal_records(&tb);
    let joins_full = joins(&tb);
    // a hot standby following it: what the state it is sent after every step (the hosts in
    // a conversation, the requests in flight, the delivery marks) costs the active process
    tb.start_standby();
    let standby_rss = tb.standby_pid().map_or(0, rss_kib);
    let followed_idle = idle_ms_per_s(&tb, 10);
    let joins_followed = joins(&tb);
    // and the active one killed: the standby takes over with the whole state to load
    tb.kill_mcgate();
    let t0 = Instant::now();
    tb.standby_took_over();
    common::wait_until(Duration::from_secs(120), || tb.status().is_some());
    let take_over = t0.elapsed();
    tb.stop_mcgate();
    let db_after_2 = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    // the baseline for the decisions: a small switch's state (the kernel's entries of the
    // big one go at this start, as unjustified)
    let small: usize = std::env::var("SMALL").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    std::fs::copy(&template, &db).unwrap();
    fill(&db, small, held);
    start(&mut tb);
    let joins_small = joins(&tb);
    tb.stop_mcgate();

    println!(
        "\nmcgate with {sessions} sessions on {PORTS} ports ({per_port} hosts each), {} memberships:",
        sessions * held
    );
    println!("| | start → deciding | sessions | memberships | FDB (static) / MDB (permanent) entries | RSS |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (what, s) in [
        ("empty store", &empty),
        ("with the state, kernel entries missing", &cold_kernel),
        ("with the state, kernel entries in place", &warm),
    ] {
        println!(
            "| {what} | {:.2} s | {} | {} | {} / {} | {:.1} MB |",
            s.to_deciding.as_secs_f64(),
            s.sessions,
            s.memberships,
            s.fdb,
            s.mdb,
            s.rss_kib as f64 / 1024.0
        );
    }
    let grown = warm.rss_kib.saturating_sub(empty.rss_kib) as f64 * 1024.0;
    println!(
        "\nRSS over the empty daemon: {:.0} B per session with its {held} memberships (goal: 2 KiB + {held} × 512 B = {} B)",
        grown / sessions as f64,
        2048 + held * 512
    );
    println!(
        "\nCPU with nobody doing anything: empty {empty_idle:.2} ms/s, with the state {full_idle:.2} ms/s \
         ({interims} Interim-Updates journaled since the start), with the state and a hot standby \
         following {followed_idle:.2} ms/s (the standby's RSS {:.1} MB; killed, the active process's \
         successor answered {:.2} s after the kill)",
        standby_rss as f64 / 1024.0,
        take_over.as_secs_f64()
    );
    println!("\n| control socket, --json | empty: time / size | with the state: time / size |");
    println!("| --- | --- | --- |");
    for (i, what) in ["status", "sessions", "memberships"].iter().enumerate() {
        println!(
            "| {what} | {:.0} ms / {} B | {:.0} ms / {:.1} MB |",
            empty_cli[i].0.as_secs_f64() * 1e3,
            empty_cli[i].1,
            full_cli[i].0.as_secs_f64() * 1e3,
            full_cli[i].1 as f64 / 1e6
        );
    }
    println!(
        "\n| a join's decision (capture → decided), p50 / p99 | with {small} sessions | with {sessions} sessions |"
    );
    println!("| --- | --- | --- |");
    println!("| {JOINING} hosts × 500 joins/s, 4 s | {joins_small} | {joins_full} |");
    println!("| the same, a hot standby following | | {joins_followed} |");
    println!(
        "\nstore: filled in {:.1} s, {:.1} MB; after the first start {:.1} MB ({journal_1} journal records), after the second {:.1} MB ({journal_2})",
        filled_in.as_secs_f64(),
        db_before as f64 / 1e6,
        db_after_1 as f64 / 1e6,
        db_after_2 as f64 / 1e6
    );
}
