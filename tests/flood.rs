//! Hostile input against the running daemon: a port that floods IGMPv3 reports from a
//! raw socket while its neighbour zaps, with real kernel joins, a real stream,
//! wpa_supplicant and FreeRADIUS.

mod common;

use common::{result, wait_until, Testbed};
use serde_json::Value;
use std::time::Duration;

const POLICY: &str = "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_flooding_port_is_quarantined_while_its_neighbour_keeps_zapping() {
    let mut tb = Testbed::new("fl", 2);
    tb.radius(1812);
    let cfg = tb.config(&[("p1", "dot1x"), ("p2", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    let t =
        std::fs::read_to_string(&cfg).unwrap().replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nsingle_host = true\n")
            + "\n[limits]\nquarantine_after = \"2s\"\nquarantine_time = \"60s\"\n";
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    for h in [1, 2] {
        tb.supplicant(h, "alice", "alicepass", "md5");
    }
    assert!(wait_until(Duration::from_secs(15), || tb.sessions().len() == 2), "{}", tb.log());
    let mut streams = [tb.stream("239.1.1.1", 40), tb.stream("239.1.1.2", 40)];
    // the flooder watches a channel before it floods: that stays
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.1/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || tb.mdb().contains("port p1 grp 239.1.1.1")), "{}", tb.log());
    let pid = tb.daemon_pid().unwrap();
    let rss_before = rss_kib(pid);

    // 100 000 reports/s for 10 s, bounded in count and time
    let flood = tb.mcast_py(
        "h1",
        &[
            "flood",
            "--src-mac",
            &Testbed::host_mac(1),
            "--src-ip",
            "192.0.2.11",
            "--count",
            "1000000",
            "--pps",
            "100000",
        ],
    );
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
