//! The multicast gate against the real kernel: kernel joins (IGMPv2/v3, source-specific,
//! MLDv1/v2) from host namespaces, a real stream from the upstream namespace, the bridge
//! MDB, wpa_supplicant and FreeRADIUS for the sessions.

mod common;

use common::{result, wait_until, Testbed};
use serde_json::Value;
use std::time::Duration;

const SERVER: &str = "127.0.0.1:1812";
const FAST: &str = "tx_period = \"1s\"\nquiet_period = \"3s\"";

/// alice: Filter-Id basic; bob: mcgate's Package attribute premium (testbed/radius/users).
const POLICY: &str = r#"
[defaults]
unknown = "deny"
max_groups = 2
max_bandwidth_kbps = 10000

[[package]]
name = "basic"
groups = ["239.1.1.0/24", "ff3e::1:0/112"]
bandwidth_kbps = 4000

[[package]]
name = "premium"
groups = ["239.1.2.0/24"]
bandwidth_kbps = 8000
[[package.channel]]
source = "192.0.2.254"
group = "232.1.1.0/24"

[[subscriber]]
account = "bob"
packages = ["basic"]
"#;

fn testbed(tag: &str, hosts: usize, ports: &[(&str, &str)], extra_ports: &str) -> Testbed {
    let mut tb = Testbed::new(tag, hosts);
    tb.radius(1812);
    let cfg = tb.config(ports, &[SERVER], FAST, "");
    if !extra_ports.is_empty() {
        // applies to the first port only
        let t = std::fs::read_to_string(&cfg).unwrap().replacen(
            "mode = \"dot1x\"\n",
            &format!("mode = \"dot1x\"\n{extra_ports}\n"),
            1,
        );
        std::fs::write(&cfg, t).unwrap();
    }
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    tb
}

fn login(tb: &Testbed, host: usize, user: &str) {
    tb.supplicant(host, user, &format!("{user}pass"), "md5");
    let port = format!("p{host}");
    assert!(
        wait_until(Duration::from_secs(15), || tb.session_of(&port).is_some()),
        "{user} not authorized:\n{}",
        tb.log()
    );
}

fn stat(tb: &Testbed, path: &[&str]) -> u64 {
    let mut v: Value = tb.status().unwrap_or_default();
    for p in path {
        v = v[*p].clone();
    }
    v.as_u64().unwrap_or(0)
}

fn packets(v: &Value) -> u64 {
    v["packets"].as_u64().unwrap()
}

#[test]
fn only_entitled_joined_hosts_receive_the_stream() {
    let tb = testbed("mg", 3, &[("p1", "dot1x"), ("p2", "dot1x"), ("p3", "dot1x")], "");
    login(&tb, 1, "alice");
    login(&tb, 2, "bob");
    // what the uplink hears: mcgate's IGMPv3 reports for the admitted groups only
    let upstream = common::tcpdump(&tb.ns("up"), 6, &["-i", "eth0", "-n", "-v", "igmp"]);
    let s1 = tb.stream("239.1.1.1", 9);
    let s2 = tb.stream("239.1.3.1", 9);
    // alice joins; bob (entitled too, via the local map) listens on the wire without joining
    let a = tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "3"]);
    let b_wire = tb.mcast_py("h2", &["sniff", "239.1.1.1", "--seconds", "3"]);
    // the unauthenticated host joins too
    let c = tb.mcast_py("h3", &["recv", "239.1.1.1", "--seconds", "3"]);
    let (a, b_wire, c) = (result(a), result(b_wire), result(c));
    assert!(packets(&a) > 300, "alice: {a}\n{}", tb.log());
    assert_eq!(packets(&b_wire), 0, "bob's port got the stream before he joined: {b_wire}");
    assert_eq!(packets(&c), 0, "the unauthenticated host got the stream: {c}");
    assert!(stat(&tb, &["multicast", "io", "dropped_unauthenticated"]) >= 1);
    let mdb = tb.mdb();
    assert!(mdb.contains("port p1 grp 239.1.1.1 permanent"), "{mdb}");
    assert!(!mdb.contains("port p3 grp 239.1.1.1"), "{mdb}");
    let heard = String::from_utf8_lossy(&upstream.wait_with_output().unwrap().stdout).into_owned();
    assert!(heard.contains("gaddr 239.1.1.1 to_ex"), "no report upstream: {heard}");
    assert!(!heard.contains("239.1.3.1"), "a denied group went upstream: {heard}");

    // bob joins now and receives; his join of a group no package names gets nothing
    let b = tb.mcast_py("h2", &["recv", "239.1.1.1", "--seconds", "2"]);
    let denied = tb.mcast_py("h2", &["recv", "239.1.3.1", "--port", "5000", "--seconds", "2"]);
    let (b, denied) = (result(b), result(denied));
    assert!(packets(&b) > 200, "bob after joining: {b}");
    assert_eq!(packets(&denied), 0, "a denied join got the stream: {denied}");
    assert!(stat(&tb, &["multicast", "tracker", "denied", "not_entitled"]) >= 1);
    assert!(!tb.mdb().contains("239.1.3.1"));
    for mut s in [s1, s2] {
        let _ = s.kill();
        let _ = s.wait();
    }
}

fn inject(tb: &Testbed, from_host: usize, as_host: usize, records: &[&str]) {
    let mac = Testbed::host_mac(as_host);
    let ip = format!("192.0.2.{}", 10 + as_host);
    let mut args = vec!["inject", "--src-mac", &mac, "--src-ip", &ip];
    args.extend_from_slice(records);
    let out = tb.mcast_py(&format!("h{from_host}"), &args).wait_with_output().unwrap();
    assert!(out.status.success());
}

fn denied(tb: &Testbed, reason: &str) -> u64 {
    stat(tb, &["multicast", "tracker", "denied", reason])
}

#[test]
fn records_are_decided_one_by_one_limits_hold_and_spoofed_macs_are_dropped() {
    let tb = testbed("rec", 3, &[("p1", "dot1x"), ("p2", "dot1x"), ("p3", "dot1x")], "");
    login(&tb, 1, "alice");
    login(&tb, 2, "bob");
    let has = |entry: &str| tb.mdb().contains(entry);

    // one IGMPv3 report, two records: the entitled one is admitted, the other is not
    inject(&tb, 1, 1, &["4:239.1.1.5", "4:239.1.3.5"]);
    assert!(wait_until(Duration::from_secs(3), || has("port p1 grp 239.1.1.5 permanent")), "{}", tb.mdb());
    assert!(!has("239.1.3.5"));
    assert_eq!(denied(&tb, "not_entitled"), 1);

    // max_groups = 2: the second new group is admitted, the third refused
    inject(&tb, 1, 1, &["4:239.1.1.6", "4:239.1.1.7"]);
    assert!(wait_until(Duration::from_secs(3), || has("port p1 grp 239.1.1.6 permanent")));
    assert!(!has("239.1.1.7"));
    assert_eq!(denied(&tb, "max_groups"), 1);

    // max_bandwidth_kbps = 10000: premium (8000) then basic (4000) does not fit
    inject(&tb, 2, 2, &["4:239.1.2.1"]);
    assert!(wait_until(Duration::from_secs(3), || has("port p2 grp 239.1.2.1 permanent")));
    inject(&tb, 2, 2, &["4:239.1.1.9"]);
    assert!(wait_until(Duration::from_secs(3), || denied(&tb, "max_bandwidth") == 1), "{}", tb.status().unwrap());
    assert!(!has("239.1.1.9"));

    // host 3 forges alice's MAC: dropped and counted, nothing installed on its port
    inject(&tb, 3, 1, &["4:239.1.1.1"]);
    assert!(wait_until(Duration::from_secs(3), || stat(&tb, &["multicast", "io", "dropped_spoofed_mac"]) == 1));
    assert!(!tb.mdb().contains("port p3"), "{}", tb.mdb());

    // memberships name what decided them
    let m = tb.memberships();
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m.iter().any(|m| m["group"] == "239.1.2.1" && m["by"] == "premium" && m["account"] == "bob"));
    assert!(m.iter().any(|m| m["group"] == "239.1.1.5" && m["by"] == "basic" && m["account"] == "alice"));
}

#[test]
fn source_specific_ipv6_and_older_protocol_versions() {
    let tb = testbed("ver", 2, &[("p1", "dot1x"), ("p2", "dot1x")], "");
    login(&tb, 1, "alice");
    login(&tb, 2, "bob");
    let streams = [
        tb.stream("232.1.1.1", 12),
        tb.stream("ff3e::1:1", 12),
        tb.stream("239.1.1.2", 12),
        tb.stream("ff3e::1:2", 12),
    ];

    // IGMPv3 source-specific join (bob's premium channel)
    let r = result(tb.mcast_py("h2", &["recv", "232.1.1.1", "--source", "192.0.2.254", "--seconds", "2"]));
    assert!(packets(&r) > 150, "SSM: {r}");
    assert!(tb.mdb().contains("port p2 grp 232.1.1.1 src 192.0.2.254"), "{}", tb.mdb());
    // MLDv2 any-source join (alice's basic has ff3e::1:0/112)
    let r = result(tb.mcast_py("h1", &["recv", "ff3e::1:1", "--seconds", "2"]));
    assert!(packets(&r) > 150, "MLDv2: {r}\n{}\n{}", tb.mdb(), tb.status().unwrap());
    // the same hosts forced to IGMPv2 and MLDv1
    for sysctl in ["net.ipv4.conf.eth0.force_igmp_version=2", "net.ipv6.conf.eth0.force_mld_version=1"] {
        tb.in_host(1, &["sysctl", "-qw", sysctl]);
    }
    let v2 = tb.mcast_py("h1", &["recv", "239.1.1.2", "--seconds", "2"]);
    let v1 = tb.mcast_py("h1", &["recv", "ff3e::1:2", "--seconds", "2"]);
    let (v2, v1) = (result(v2), result(v1));
    assert!(packets(&v2) > 150, "IGMPv2: {v2}");
    assert!(packets(&v1) > 150, "MLDv1: {v1}");
    for v in ["igmp_v3", "mld_v2", "igmp_v2", "mld_v1"] {
        assert!(stat(&tb, &["multicast", "io", "reports", v]) >= 1, "no {v} report counted: {}", tb.status().unwrap());
    }
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// Starts a join on `host` that leaves after `leave_after`, and a wire counter; returns
/// both results and how long after the leave the last frame of the stream arrived (ms,
/// wall clock, so the senders' start-up time does not enter it).
fn join_and_leave(tb: &Testbed, host: usize, group: &str, leave_after: Duration) -> (Value, Value, f64) {
    let wire = tb.mcast_py(&format!("h{host}"), &["sniff", group, "--seconds", "5"]);
    let join = tb.mcast_py(&format!("h{host}"), &["recv", group, "--seconds", "4.5"]);
    std::thread::sleep(leave_after);
    let left = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    common::run(std::process::Command::new("kill").args(["-USR1", &join.id().to_string()]));
    let (join, wire) = (result(join), result(wire));
    let after = (wire["last_unix"].as_f64().unwrap() - left) * 1e3;
    (join, wire, after)
}

#[test]
fn a_leave_or_a_logoff_stops_the_stream() {
    // p1 has a single host: its leave is immediate; p2 is shared: query, then linger
    let tb = testbed("lv", 2, &[("p1", "dot1x"), ("p2", "dot1x")], "fast_leave = true");
    login(&tb, 1, "alice");
    login(&tb, 2, "bob");
    let streams = [tb.stream("239.1.1.1", 20)];

    let (joined, _, after) = join_and_leave(&tb, 1, "239.1.1.1", Duration::from_millis(1500));
    assert!(packets(&joined) > 100, "{joined}");
    assert!(after < 800.0, "fast leave: stream still on the wire {after} ms after the leave");
    assert!(!tb.mdb().contains("port p1 grp 239.1.1.1"));

    let (joined, _, after) = join_and_leave(&tb, 2, "239.1.1.1", Duration::from_millis(1000));
    assert!(packets(&joined) > 100, "{joined}");
    // a group-specific query, then last_member_query_time (2 s) with no answer
    assert!(after > 1500.0 && after < 3000.0, "shared port: last frame {after} ms after the leave");
    assert!(stat(&tb, &["multicast", "tracker", "queries_sent"]) >= 1);
    assert!(!tb.mdb().contains("port p2 grp 239.1.1.1"));

    // logoff: the session ends and its memberships with it
    let join = tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "4"]);
    assert!(wait_until(Duration::from_secs(3), || tb.mdb().contains("port p1 grp 239.1.1.1")));
    tb.wpa_cli(1, &["logoff"]);
    assert!(wait_until(Duration::from_secs(3), || !tb.mdb().contains("port p1 grp 239.1.1.1")), "{}", tb.mdb());
    assert!(tb.memberships().iter().all(|m| m["port"] != "p1"));
    let wire = result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "1"]));
    assert_eq!(packets(&wire), 0, "stream still reaches the logged-off host: {wire}");
    let _ = result(join);
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn a_restart_keeps_admitted_streams_flowing() {
    let mut tb = testbed("mr", 1, &[("p1", "dot1x")], "");
    login(&tb, 1, "alice");
    let streams = [tb.stream("239.1.1.1", 25)];
    let join = tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "12"]);
    assert!(wait_until(Duration::from_secs(5), || tb.memberships().len() == 1), "{}", tb.log());
    let before = tb.memberships()[0].clone();
    // the stream flows before the stop (its sender may still be starting up)
    let flowing = || packets(&result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "1"]))) > 100;
    assert!(wait_until(Duration::from_secs(5), flowing), "stream not flowing before the stop");

    tb.stop_mcgate();
    let wire = result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "1"]));
    assert!(packets(&wire) > 100, "stream stopped while mcgate is down: {wire}");
    tb.start_mcgate();
    let after = tb.memberships();
    assert_eq!(after.len(), 1, "{}", tb.log());
    assert_eq!(after[0]["since"], before["since"], "the same membership, not a new one");
    assert_eq!(after[0]["session_id"], before["session_id"]);
    let wire = result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "1"]));
    assert!(packets(&wire) > 100, "stream stopped after the restart: {wire}");
    assert!(tb.mdb().contains("port p1 grp 239.1.1.1 permanent"));
    let joined = result(join);
    assert!(packets(&joined) > 1000, "{joined}");
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// The bridge ignores its MDB, flooding instead (and access ports take no flood), for a
/// query response interval after its querier goes on, and for a query's Max Response
/// Time after another querier appears (docs/peers-and-kernel.md). Neither holds up an
/// admitted stream: mcgate starts the querier with the hold-off at its least, and drops
/// queries from upstream.
#[test]
fn admitted_streams_flow_right_after_the_start_and_when_a_querier_appears_upstream() {
    let mut tb = Testbed::new("mq", 1);
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &[SERVER], FAST, "");
    // the kernel's own response interval, 10 s (the testbed shortens it to 1 s)
    tb.in_sw(&["ip", "link", "set", "br0", "type", "bridge", "mcast_query_response_interval", "1000"]);
    tb.multicast(POLICY, "");
    let mut stream = tb.stream("239.1.1.1", 30);
    tb.start_mcgate();
    login(&tb, 1, "alice");
    // joined within the 10 s the kernel would otherwise hold off
    let join = tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "10"]);
    let flowing = || packets(&result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "1"]))) > 100;
    assert!(wait_until(Duration::from_secs(4), flowing), "no stream after the start:\n{}", tb.log());
    // a router upstream with a lower address than the bridge's: it would be the querier
    let q = tb.mcast_py("up", &["query", "--src-ip", "10.0.0.1"]).wait_with_output().unwrap();
    assert!(q.status.success());
    let wire = result(tb.mcast_py("h1", &["sniff", "239.1.1.1", "--seconds", "2"]));
    assert!(packets(&wire) > 250, "the stream stopped when a querier appeared upstream: {wire}");
    let rules = tb.in_sw(&["nft", "list", "table", "bridge", "mcgate"]);
    for kind in ["igmp", "mld"] {
        let line = rules.lines().find(|l| l.contains(&format!("{kind} queries from upstream"))).unwrap_or_default();
        assert!(line.contains("packets 1 "), "{kind} query not dropped: {rules}");
    }
    let joined = result(join);
    assert!(packets(&joined) > 1000, "{joined}");
    let _ = stream.kill();
    let _ = stream.wait();
}

/// Per-join answers come from policies/freeradius/mcgate-joins.example in the testbed's
/// FreeRADIUS: alice may have 239.1.5.0/24 (Session-Timeout 1: cached for a second),
/// nothing else.
fn radius_policy(unreachable: &str) -> String {
    format!(
        "[defaults]\nunknown = \"radius\"\nradius_unreachable = \"{unreachable}\"\n\
         [[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n"
    )
}

#[test]
fn per_join_radius_decides_and_each_fail_mode_holds_when_radius_is_down() {
    let mut tb = Testbed::new("pj", 1);
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &[SERVER], FAST, "timeout = \"300ms\"\nretries = 1");
    tb.multicast(&radius_policy("stale"), "");
    tb.start_mcgate();
    login(&tb, 1, "alice");
    let streams: Vec<_> = ["239.1.5.1", "239.1.5.2", "239.1.6.1"].iter().map(|g| tb.stream(g, 30)).collect();
    let watch = |tb: &Testbed, g: &str| packets(&result(tb.mcast_py("h1", &["recv", g, "--seconds", "2"])));

    // RADIUS allows one group and rejects the other
    assert!(watch(&tb, "239.1.5.1") > 200, "{}", tb.log());
    assert_eq!(watch(&tb, "239.1.6.1"), 0);
    assert!(denied(&tb, "radius_denied") >= 1, "{}", tb.status().unwrap());
    assert!(stat(&tb, &["multicast", "tracker", "radius_asked"]) >= 2);
    assert!(tb.log().contains("by=\"radius\""), "{}", tb.log());

    // RADIUS goes away
    let dir = tb.dir.join("radius-1812");
    common::run(std::process::Command::new("pkill").args(["-f", &format!("freeradius -d {}", dir.display())]));
    std::thread::sleep(Duration::from_millis(1200)); // the cached answer (1 s) is stale now
                                                     // stale: the old answer serves; a group never asked about is refused
    assert!(watch(&tb, "239.1.5.1") > 200, "stale answer not served: {}", tb.log());
    assert!(tb.log().contains("by=\"radius-stale\""));
    assert_eq!(watch(&tb, "239.1.5.2"), 0);
    assert!(denied(&tb, "radius_unreachable") >= 1);

    // allow (fail open) and deny (fail closed), after a restart with that policy
    let policy = tb.dir.join("policies/test.toml");
    std::fs::write(&policy, radius_policy("allow")).unwrap();
    tb.stop_mcgate();
    tb.start_mcgate();
    assert!(watch(&tb, "239.1.5.2") > 200, "fail open: {}", tb.log());
    assert!(tb.log().contains("by=\"radius-unreachable\""));
    std::fs::write(&policy, radius_policy("deny")).unwrap();
    tb.stop_mcgate();
    tb.start_mcgate();
    assert_eq!(watch(&tb, "239.1.6.1"), 0, "fail closed");
    assert!(denied(&tb, "radius_unreachable") >= 1);
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn a_free_preview_ends_on_time_and_is_not_repeated() {
    let policy = "[defaults]\nunknown = \"deny\"\n\
        [[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n\
        [[package]]\nname = \"sports\"\ngroups = [\"239.1.9.0/24\"]\n\
        [package.preview]\nduration = \"2s\"\nviews_per_day = 1\nmin_gap = \"1h\"\n";
    let mut tb = Testbed::new("pv", 1);
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &[SERVER], FAST, "");
    tb.multicast(policy, "");
    tb.start_mcgate();
    login(&tb, 1, "alice");
    let mut stream = tb.stream("239.1.9.1", 20);
    // alice has basic only: sports is a 2 s preview, though she stays joined for 4 s
    let wire = tb.mcast_py("h1", &["sniff", "239.1.9.1", "--seconds", "4"]);
    let joined = result(tb.mcast_py("h1", &["recv", "239.1.9.1", "--seconds", "4"]));
    let wire = result(wire);
    assert!(packets(&joined) > 200, "{joined}");
    // wall clock from the join, so the two processes' start-up times do not enter it
    let last = (wire["last_unix"].as_f64().unwrap() - joined["joined_unix"].as_f64().unwrap()) * 1e3;
    assert!(last > 1500.0 && last < 3000.0, "preview of 2 s: last frame {last} ms after the join");
    assert!(stat(&tb, &["multicast", "tracker", "previews_ended"]) == 1);
    // one view a day
    assert_eq!(packets(&result(tb.mcast_py("h1", &["recv", "239.1.9.1", "--seconds", "1.5"]))), 0);
    assert!(denied(&tb, "preview_exhausted") >= 1);
    let _ = stream.kill();
    let _ = stream.wait();
}

#[test]
fn tagged_eapol_igmp_and_mld_are_dropped_counted_and_never_snooped() {
    let tb = testbed("tg", 1, &[("p1", "dot1x")], "");
    let tagged = |kind: &str, vid: u16, group: &str, src: &str| {
        let vid = vid.to_string();
        let args = ["tagged", kind, "--vid", vid.as_str(), "--group", group, "--src-ip", src];
        let out = tb.mcast_py("h1", &args).wait_with_output().unwrap();
        assert!(out.status.success());
    };
    // before any login: a tagged EAPOL-Start, priority-tagged and in VLAN 7
    for vid in [0, 7] {
        tagged("eapol-start", vid, "", "");
    }
    login(&tb, 1, "alice");
    // tagged joins of a channel alice's package has, in both IP versions
    for vid in [0, 7] {
        tagged("igmp", vid, "239.1.1.5", "192.0.2.11");
        tagged("mld", vid, "ff3e::1:5", "fe80::11");
    }
    let dropped = || stat(&tb, &["limits", "p1", "dropped_vlan"]);
    assert!(wait_until(Duration::from_secs(3), || dropped() == 6), "{} dropped:\n{}", dropped(), tb.log());
    assert_eq!(stat(&tb, &["authenticator", "eapol_start"]), 0, "a tagged EAPOL-Start was taken for untagged");
    // neither mcgate nor the bridge's own snooping took a tagged join
    std::thread::sleep(Duration::from_millis(300));
    let mdb = tb.mdb();
    assert!(!mdb.contains("239.1.1.5") && !mdb.contains("ff3e::1:5"), "a tagged join reached the MDB:\n{mdb}");
    assert!(tb.memberships().is_empty(), "{:?}", tb.memberships());
    assert_eq!(tb.log().matches("frame in an unconfigured VLAN dropped").count(), 1, "logged once a minute per host");
    // the same joins untagged are admitted: the drop was for the tag
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.5/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || tb.mdb().contains("port p1 grp 239.1.1.5")), "{}", tb.log());
}

#[test]
fn drift_made_by_hand_is_repaired_within_the_reconcile_interval() {
    let mut tb = Testbed::new("dr", 1);
    tb.radius(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &[SERVER], FAST, "");
    let t = std::fs::read_to_string(&cfg).unwrap().replacen("[switch]\n", "[switch]\nreconcile_interval = \"2s\"\n", 1);
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    login(&tb, 1, "alice");
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.1/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || tb.mdb().contains("port p1 grp 239.1.1.1")), "{}", tb.log());
    let host = Testbed::host_mac(1);
    // alice's authorization and channel deleted by hand, a stranger's added by hand
    tb.in_sw(&["bridge", "fdb", "del", &host, "dev", "p1", "master", "static"]);
    tb.in_sw(&["bridge", "fdb", "add", "02:00:00:00:00:99", "dev", "p1", "master", "static"]);
    tb.in_sw(&["bridge", "mdb", "del", "dev", "br0", "port", "p1", "grp", "239.1.1.1"]);
    tb.in_sw(&["bridge", "mdb", "add", "dev", "br0", "port", "p1", "grp", "239.1.1.77", "permanent"]);
    assert!(!tb.fdb_static().contains(&host) && !tb.mdb().contains("239.1.1.1"));
    let repaired = || {
        let (fdb, mdb) = (tb.fdb_static(), tb.mdb());
        fdb.contains(&host)
            && !fdb.contains("02:00:00:00:00:99")
            && mdb.contains("port p1 grp 239.1.1.1")
            && !mdb.contains("239.1.1.77")
    };
    assert!(
        wait_until(Duration::from_secs(4), repaired),
        "not repaired:\n{}\n{}\n{}",
        tb.fdb_static(),
        tb.mdb(),
        tb.log()
    );
    let k = tb.status().unwrap()["kernel"].clone();
    for what in ["fdb_restored", "fdb_removed", "mdb_restored", "mdb_removed"] {
        assert_eq!(k[what], 1, "{what}: {k}");
    }
    // alice's stream flows again
    let mut stream = tb.stream("239.1.1.1", 5);
    let got = result(tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "1.5"]));
    let _ = stream.kill();
    let _ = stream.wait();
    assert!(packets(&got) > 100, "{got}");
}

#[test]
fn kernel_changes_that_fail_at_a_logoff_are_made_again_soon() {
    let tb = testbed("rt", 1, &[("p1", "dot1x")], "");
    login(&tb, 1, "alice");
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.1/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || tb.mdb().contains("port p1 grp 239.1.1.1")), "{}", tb.log());
    // every sendto of the daemon fails while strace is attached: the netlink requests
    // that delete the FDB and MDB entries at the logoff among them
    let pid = tb.daemon_pid().unwrap().to_string();
    let mut strace = common::strace(&pid, &["-e", "trace=sendto", "-e", "inject=sendto:error=EPERM"]);
    tb.wpa_cli(1, &["logoff"]);
    assert!(wait_until(Duration::from_secs(5), || tb.session_of("p1").is_none()), "{}", tb.log());
    let _ = strace.kill();
    let _ = strace.wait();
    let host = Testbed::host_mac(1);
    assert!(tb.fdb_static().contains(&host), "the delete did not fail: {}", tb.fdb_static());
    assert!(tb.mdb().contains("port p1 grp 239.1.1.1"), "{}", tb.mdb());
    // the reconciliation comes a second after the failure, not after its 60 s interval
    let gone = || !tb.fdb_static().contains(&host) && !tb.mdb().contains("port p1 grp 239.1.1.1");
    assert!(wait_until(Duration::from_secs(5), gone), "kept access:\n{}\n{}\n{}", tb.fdb_static(), tb.mdb(), tb.log());
    assert!(stat(&tb, &["io", "dataplane_errors"]) >= 2);
    assert_eq!(stat(&tb, &["kernel", "fdb_removed"]), 1);
    assert!(stat(&tb, &["kernel", "mdb_removed"]) >= 1);
}

/// The lines of a recording that are outputs, as JSON values.
fn outputs_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("output").cloned())
        .collect()
}

fn replay(tb: &Testbed, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(common::MCGATE)
        .arg("replay")
        .arg(file)
        .arg("-c")
        .arg(tb.dir.join("mcgate.toml"))
        .output()
        .unwrap()
}

#[test]
fn a_recorded_run_replays_to_the_same_outputs() {
    let mut tb = testbed("rp", 2, &[("p1", "dot1x"), ("p2", "dot1x")], "fast_leave = true");
    login(&tb, 1, "alice");
    let streams = [tb.stream("239.1.1.1", 30), tb.stream("239.1.1.2", 30)];
    let first = tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "20"]);
    assert!(wait_until(Duration::from_secs(5), || tb.memberships().len() == 1), "{}", tb.log());
    // the recorded run starts on what this one stored: a session and a membership
    tb.stop_mcgate();
    let cfg = tb.dir.join("mcgate.toml");
    let text = std::fs::read_to_string(&cfg).unwrap() + "\n[debug]\nrecord = \"run.jsonl\"\n";
    std::fs::write(&cfg, text).unwrap();
    tb.start_mcgate();
    login(&tb, 2, "bob");
    let second = tb.mcast_py("h2", &["recv", "239.1.1.2", "--seconds", "2"]);
    let denied = tb.mcast_py("h2", &["recv", "239.1.3.1", "--port", "5000", "--seconds", "2"]);
    assert!(packets(&result(second)) > 100);
    assert_eq!(packets(&result(denied)), 0);
    tb.wpa_cli(1, &["logoff"]);
    assert!(wait_until(Duration::from_secs(5), || tb.session_of("p1").is_none()), "{}", tb.log());
    tb.stop_mcgate();
    let _ = result(first);
    for mut s in streams {
        let _ = s.kill();
        let _ = s.wait();
    }

    let file = tb.dir.join("run.jsonl");
    // the unit test `daemon::tests::a_run_recorded_against_the_real_peers_replays` replays
    // a recording of this test kept with MCGATE_KEEP_RECORDING=DIR (tests/data/replay)
    if let Some(keep) = std::env::var_os("MCGATE_KEEP_RECORDING") {
        let keep = std::path::Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for f in ["run.jsonl", "run.jsonl.redb", "mcgate.toml"] {
            std::fs::copy(tb.dir.join(f), keep.join(f)).unwrap();
        }
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let recorded = outputs_of(&text);
    let kinds = |k: &str| recorded.iter().filter(|o| o["kind"] == k).count();
    // what the run did is in it: RADIUS, EAPOL, the port opened, the join, the logoff
    for k in ["radius", "frame", "authorize", "mdb_add", "mdb_del", "deauthorize", "handed", "uplink"] {
        assert!(kinds(k) >= 1, "no {k} output recorded:\n{text}");
    }
    let out = replay(&tb, &file);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "replay: {stderr}");
    assert_eq!(outputs_of(&stdout), recorded, "{stderr}");
    assert!(stderr.contains(&format!("{} outputs replayed", recorded.len())), "{stderr}");

    // a recording whose first Access-Accept was altered on the way does not replay: its
    // Response Authenticator no longer verifies, and the port is not opened
    let accept = text
        .lines()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let d = v["step"]["inputs"][0]["datagram"].as_str()?;
            (v["step"]["inputs"][0]["input"] == "radius" && d.starts_with("02")).then(|| d.to_string())
        })
        .expect("an Access-Accept in the recording");
    let mut altered = accept.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
    let tampered = tb.dir.join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen(&accept, std::str::from_utf8(&altered).unwrap(), 1)).unwrap();
    std::fs::copy(tb.dir.join("run.jsonl.redb"), tb.dir.join("tampered.jsonl.redb")).unwrap();
    let out = replay(&tb, &tampered);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
}
