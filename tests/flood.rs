//! Hostile input against the running daemon: a port that floods IGMPv3 reports from a
//! raw socket while its neighbour zaps, with real kernel joins, a real stream,
//! wpa_supplicant and FreeRADIUS.

mod common;

use common::{result, rss_kib, wait_until, Testbed};
use serde_json::Value;
use std::time::Duration;

#[test]
fn a_flooding_port_is_quarantined_while_its_neighbour_keeps_zapping() {
    let tb = Testbed::single_host_pair(
        "fl",
        "debug",
        "",
        "\n[limits]\nquarantine_after = \"2s\"\nquarantine_time = \"60s\"\n",
    );
    let mut streams = [tb.stream("239.1.1.1", 40), tb.stream("239.1.1.2", 40)];
    // the flooder watches a channel before it floods: that stays
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.1/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || tb.mdb().contains("port p1 grp 239.1.1.1")), "{}", tb.log());
    let pid = tb.daemon_pid().unwrap();
    let rss_before = rss_kib(pid);

    // 100 000 reports/s for 10 s, bounded in count and time
    let flood = tb.report_flood(1, 1_000_000, 100_000);
    std::thread::sleep(Duration::from_secs(1));
    let zaps = result(tb.mcast_py("h2", &["zap", "239.1.1.2", "--count", "20", "--gap-ms", "200"]));
    let watched = result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "2"]));
    let sent = result(flood);
    let rss_during = rss_kib(pid);

    let first: Vec<&Value> = zaps["first_ms"].as_array().unwrap().iter().collect();
    assert!(first.iter().all(|x| !x.is_null()), "the neighbour's joins failed during the flood: {zaps}");
    assert!(watched["packets"].as_u64().unwrap() > 100, "the flooder's admitted stream stopped: {watched}");
    let s = tb.status().expect("mcgate answers after the flood");
    let p1 = &s["limits"]["p1"];
    assert_eq!(p1["quarantined"], true, "{s}");
    assert!(p1["quarantines"].as_u64() == Some(1) && p1["dropped_quarantined"].as_u64() > Some(1000), "{s}");
    let p2 = &s["limits"]["p2"];
    assert_eq!(p2["dropped_port_rate"].as_u64().unwrap() + p2["dropped_mac_rate"].as_u64().unwrap(), 0, "{s}");
    assert!(tb.log().contains("port quarantined"), "{}", tb.log());
    // memory: the flood's groups never became state
    assert!(rss_during < rss_before + 16 * 1024, "RSS {rss_before} → {rss_during} KiB");
    eprintln!(
        "flood: {} reports in {:.1} s; neighbour's first packet {:?} ms; mcgate RSS {rss_before} → {rss_during} KiB",
        sent["sent"], sent["seconds"], first
    );
    for s in &mut streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn a_host_churning_200_groups_at_its_frame_allowance_costs_bounded_logs_journal_and_memory() {
    // at info, as a switch runs
    let tb = Testbed::single_host_pair("ch", "info", "", "");
    let mut stream = tb.stream("239.1.1.2", 60);
    let pid = tb.daemon_pid().unwrap();
    let journal = || tb.status().unwrap()["accounting"]["journal"]["records"].as_u64().unwrap();
    let idle = result(tb.mcast_py("h2", &["zap", "239.1.1.2", "--count", "10", "--gap-ms", "200"]));
    let (rss_before, records_before, lines_before) = (rss_kib(pid), journal(), tb.log().lines().count());

    // 30 s at the per-MAC report allowance (100/s), each report a join and a leave
    let churn = tb.mcast_py(
        "h1",
        &["churn", "--src-mac", &Testbed::host_mac(1), "--src-ip", "192.0.2.11", "--count", "3000", "--pps", "100"],
    );
    std::thread::sleep(Duration::from_secs(10));
    let during = result(tb.mcast_py("h2", &["zap", "239.1.1.2", "--count", "10", "--gap-ms", "200"]));
    let sent = result(churn);
    let (rss_after, records_after, lines_after) = (rss_kib(pid), journal(), tb.log().lines().count());
    let _ = stream.kill();
    let _ = stream.wait();

    let s = tb.status().unwrap();
    let tracker = &s["multicast"]["tracker"];
    let records = records_after - records_before;
    let lines = lines_after - lines_before;
    let ms = |z: &Value| -> Vec<f64> { z["first_ms"].as_array().unwrap().iter().filter_map(Value::as_f64).collect() };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    eprintln!(
        "churn: {} reports in {:.1} s; admitted {}, denied {}; journal +{records} records, log +{lines} lines, \
         RSS {rss_before} → {rss_after} KiB, {} interims queued; neighbour's first packet median {:.1} ms idle, {:.1} ms during",
        sent["sent"], sent["seconds"], tracker["admitted"], tracker["denied"], s["accounting"]["interims_queued"],
        median(ms(&idle)), median(ms(&during))
    );
    // admissions: 20/s (40 at once) → a Start and a Stop each, over about 31 s of churn
    // and reading, plus the neighbour's 10 zaps: not one per report
    assert!(tracker["denied"]["admission_rate"].as_u64() > Some(1000), "{tracker}");
    assert!(records <= 2 * (20 * 32 + 40) + 2 * 10, "journal grew by {records} records");
    // per-record decisions are debug lines: the churn adds next to nothing at info
    assert!(lines <= 20, "{lines} log lines:\n{}", tb.log());
    assert!(rss_after < rss_before + 16 * 1024, "RSS {rss_before} → {rss_after} KiB");
    // one Interim-Update timer per session, none per membership: the churn leaves none
    // behind (the churner's and the neighbour's sessions hold two)
    assert!(s["accounting"]["interims_queued"].as_u64() <= Some(2), "{}", s["accounting"]);
    // the neighbour zaps as before: every join gets its stream (how much later is the
    // flood bench's to measure, not a test's to time)
    assert!(ms(&during).len() == 10, "the neighbour's joins failed during the churn: {during}");
}

/// Entries of the bridge's FDB on `port` for the flood's MACs that mcgate did not
/// authorize: the locked entries of MACs the port saw and holds back (Debian's iproute2
/// does not print the locked flag).
fn flood_entries_unauthorized(tb: &Testbed, port: &str) -> usize {
    common::run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &tb.ns("sw"),
        "bridge",
        "fdb",
        "show",
        "dev",
        port,
    ]))
    .lines()
    .filter(|l| l.starts_with("0a:00:00") && !l.contains("static"))
    .count()
}

#[test]
fn a_mac_flood_on_a_locked_port_stays_within_the_port_bound() {
    let mut tb = Testbed::new("mf", 3);
    tb.radius(1812);
    // FreeRADIUS accepts every flood MAC (0a:00:00:…): only the bound stops them
    tb.config(&[("p1", "mab"), ("p3", "mab")], &["127.0.0.1:1812"], "max_hosts_per_port = 8", "");
    // h1's own MAC stays quiet (no IPv6 router solicitations racing the flood for a place)
    tb.in_host(1, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    tb.start_mcgate();
    let pid = tb.daemon_pid().unwrap();
    let rss_before = rss_kib(pid);
    let flood = tb.mcast_py("h1", &["macflood", "--count", "20000", "--pps", "10000"]);
    // the set-top box on the neighbouring port comes up during the flood
    std::thread::sleep(Duration::from_millis(500));
    tb.ping(3);
    let sent = result(flood);
    assert!(
        wait_until(Duration::from_secs(10), || tb.session_of("p3").is_some() && tb.ping(3)),
        "the neighbour's set-top box did not get through during the flood\n{}",
        tb.log()
    );
    let s = tb.status().expect("mcgate answers after the flood");
    let on_p1: Vec<Value> = tb.sessions().into_iter().filter(|s| s["port"] == "p1").collect();
    assert_eq!(on_p1.len(), 8, "{on_p1:?} {sent} locked {} {s}", flood_entries_unauthorized(&tb, "p1"));
    assert!(on_p1.iter().all(|s| s["mac"].as_str().is_some_and(|m| m.starts_with("0a:00:00"))), "{on_p1:?}");
    let a = &s["authenticator"];
    assert_eq!(a["mab_requests"].as_u64(), Some(9), "8 flood MACs and the set-top box: {s}");
    // the full port stopped learning: the kernel holds no locked entry of the flood either
    let in_kernel = flood_entries_unauthorized(&tb, "p1");
    assert_eq!(in_kernel, 0, "{s}");
    assert_eq!(s["io"]["mab_learning_paused"], 1, "{s}");
    assert!(tb.log().contains("MAC bypass stops learning"), "{}", tb.log());
    // the table for people says it too
    let (table, _) = tb.mcgate(&["status"]);
    let row = table.lines().find(|l| l.starts_with("bounds hit: hosts/port")).unwrap_or_default();
    assert!(row.ends_with(&format!(" {} / 0 / 0", a["dropped_host_limit"])), "{table}");
    let rss_after = rss_kib(pid);
    // a host going makes room: the port learns again and the next MAC takes the place
    let kicked = on_p1[0]["mac"].as_str().unwrap_or_default().to_string();
    tb.mcgate(&["session", "kick", "p1", &kicked]);
    assert!(wait_until(Duration::from_secs(5), || tb.log().contains("MAC bypass learns again")), "{}", tb.log());
    result(tb.mcast_py("h1", &["macflood", "--count", "100", "--pps", "1000"]));
    assert!(
        wait_until(Duration::from_secs(5), || tb.sessions().iter().filter(|s| s["port"] == "p1").count() == 8),
        "{}",
        tb.log()
    );
    assert!(rss_after < rss_before + 8 * 1024, "RSS {rss_before} → {rss_after} KiB");
    eprintln!(
        "MAC flood: {} MACs in {:.1} s; sessions on p1 {}, MAB requests {}, dropped over the bound {}; \
         locked FDB entries on p1 (the kernel's) {}; mcgate RSS {rss_before} → {rss_after} KiB",
        sent["sent"],
        sent["seconds"],
        on_p1.len(),
        a["mab_requests"],
        a["dropped_host_limit"],
        in_kernel,
    );
}
