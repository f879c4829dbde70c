//! The Linux bridge dataplane against the real kernel, in a namespace of its own:
//! port locking, FDB entries, multicast set-up and MDB entries, read back with the
//! `bridge` and `nft` commands.

mod common;

use common::{in_netns, Testbed};
use mcgate::dataplane::PortVlan;
use mcgate::dataplane::{linux::LinuxBridge, Dataplane};
use mcgate::wire::MacAddr;
use std::net::IpAddr;
use std::process::Command;

#[test]
fn ports_fdb_and_mdb_on_the_real_bridge() {
    let tb = Testbed::new("dp", 2);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mac: MacAddr = "02:00:00:00:00:11".parse().unwrap();
    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        dp.setup_port("p1", false).unwrap();
        dp.setup_port("p2", true).unwrap();
        dp.authorize(&at("p1"), mac).unwrap();
        dp.authorize(&at("p1"), mac).unwrap(); // idempotent
        assert_eq!(dp.authorized(&at("p1")).unwrap(), vec![mac]);
        // an entry the kernel would have snooped before mcgate: not justified, removed
        let pre = Command::new("bridge")
            .args(["mdb", "add", "dev", "br0", "port", "p2", "grp", "239.9.9.9", "temp"])
            .status()
            .unwrap();
        assert!(pre.success());
        dp.setup_multicast("br0", &["p1", "p2"], &["up0"], 3, 4096, 65_536).unwrap();
        dp.mdb_add("br0", &at("p1"), ip("239.1.1.1"), None).unwrap();
        dp.mdb_add("br0", &at("p1"), ip("239.1.1.1"), None).unwrap(); // idempotent
        dp.mdb_add("br0", &at("p2"), ip("232.1.1.1"), Some(ip("192.0.2.254"))).unwrap();
        dp.mdb_add("br0", &at("p2"), ip("ff3e::8000:1"), None).unwrap();
        // the kernel's backstop: p2 holds 2 groups, takes a third, refuses a fourth
        dp.mdb_add("br0", &at("p2"), ip("239.2.2.3"), None).unwrap();
        assert!(dp.mdb_add("br0", &at("p2"), ip("239.2.2.4"), None).is_err(), "mcast_max_groups not applied");
        dp.mdb_del("br0", &at("p2"), ip("239.2.2.3"), None).unwrap();
        let mut e = dp.mdb_entries("br0").unwrap();
        e.sort();
        assert_eq!(
            e,
            vec![
                (at("p1"), ip("239.1.1.1"), None),
                (at("p2"), ip("232.1.1.1"), Some(ip("192.0.2.254"))),
                (at("p2"), ip("ff3e::8000:1"), None),
            ]
        );
    });
    let links = tb.in_sw(&["bridge", "-d", "link", "show"]);
    let p1 = links.lines().skip_while(|l| !l.contains("p1@")).take(3).collect::<String>();
    assert!(p1.contains("locked on") && p1.contains("learning off") && p1.contains("mcast_flood off"), "{p1}");
    let p2 = links.lines().skip_while(|l| !l.contains("p2@")).take(3).collect::<String>();
    assert!(p2.contains("locked on") && p2.contains("learning on"), "{p2}");
    let up0 = links.lines().skip_while(|l| !l.contains("up0@")).take(3).collect::<String>();
    assert!(up0.contains("mcast_router 2"), "{up0}");
    let br = tb.in_sw(&["ip", "-d", "link", "show", "br0"]);
    for want in [
        "mcast_snooping 1",
        "mcast_querier 1",
        "mcast_igmp_version 3",
        "mcast_mld_version 2",
        "mcast_query_use_ifaddr 1",
    ] {
        assert!(br.contains(want), "{want} missing: {br}");
    }
    let mdb = tb.in_sw(&["bridge", "mdb", "show"]);
    assert!(!mdb.contains("239.9.9.9"), "{mdb}");
    assert!(!mdb.contains("port p1 grp ff02") && !mdb.contains("port p2 grp ff02"), "snooped entries left: {mdb}");
    assert!(mdb.contains("port p1 grp 239.1.1.1 permanent"), "{mdb}");
    assert!(mdb.contains("port p2 grp 232.1.1.1 src 192.0.2.254 permanent"), "{mdb}");
    assert!(mdb.contains("port p2 grp ff3e::8000:1 permanent"), "{mdb}");
    let nft = tb.in_sw(&["nft", "list", "table", "bridge", "mcgate"]);
    assert!(nft.contains("igmp from hosts") && nft.contains("mld from hosts"), "{nft}");

    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        dp.mdb_del("br0", &at("p2"), ip("232.1.1.1"), Some(ip("192.0.2.254"))).unwrap();
        dp.mdb_del("br0", &at("p2"), ip("232.1.1.1"), Some(ip("192.0.2.254"))).unwrap(); // absent: fine
        assert_eq!(dp.mdb_entries("br0").unwrap().len(), 2);
        dp.teardown_multicast("br0", &[], &Default::default()).unwrap();
        assert!(dp.mdb_entries("br0").unwrap().is_empty());
        dp.teardown_ports(&[at("p1")]).unwrap();
        assert!(dp.authorized(&at("p1")).unwrap().is_empty());
    });
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "nft", "list", "table", "bridge", "mcgate"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nft table left after teardown");
}

#[test]
fn usage_counters_count_what_each_port_was_sent() {
    let tb = Testbed::new("du", 2);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (g4, g6) = (ip("239.1.1.1"), ip("ff3e::8000:1"));
    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        dp.setup_multicast("br0", &["p1", "p2"], &["up0"], 0, 4096, 65_536).unwrap();
        dp.mdb_add("br0", &at("p1"), g4, None).unwrap();
        dp.mdb_add("br0", &at("p1"), g6, None).unwrap();
        assert_eq!(dp.usage("p1", g4).unwrap(), Some((0, 0)));
    });
    // past the bridge's flood window after its querier starts (1 s in the testbed)
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // 200 packets of each: 140 octets as IPv4 (20 + 8 + 112), 160 as IPv6 (40 + 8 + 112)
    let s4 = tb.mcast_py("up", &["send", "239.1.1.1", "--pps", "200", "--seconds", "1"]);
    let s6 = tb.mcast_py("up", &["send", "ff3e::8000:1", "--pps", "200", "--seconds", "1"]);
    for s in [s4, s6] {
        assert!(s.wait_with_output().unwrap().status.success());
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        dp.setup_multicast("br0", &["p1", "p2"], &["up0"], 0, 4096, 65_536).unwrap();
        assert_eq!(dp.usage("p1", g4).unwrap(), Some((200, 200 * 140)));
        assert_eq!(dp.usage("p1", g6).unwrap(), Some((200, 200 * 160)));
        // the neighbour's port was sent nothing
        assert_eq!(dp.usage("p2", g4).unwrap(), Some((0, 0)));
        assert_eq!(dp.usage("p2", g6).unwrap(), Some((0, 0)));
        dp.teardown_multicast("br0", &[], &Default::default()).unwrap();
    });
    // a new set-up (a restart) keeps the counters; the teardown above removed them
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "nft", "list", "table", "bridge", "mcgate_usage"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "usage table left after teardown");
}

#[test]
fn the_bridge_multicast_table_is_sized_to_what_mcgate_allows_and_put_back() {
    let tb = Testbed::new("dh", 1);
    let hash_max = || {
        let link = tb.in_sw(&["ip", "-d", "link", "show", "br0"]);
        let mut words = link.split_whitespace();
        words.find(|w| *w == "mcast_hash_max").and_then(|_| words.next()).map(str::to_string)
    };
    assert_eq!(hash_max().as_deref(), Some("4096"), "the kernel's default");
    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        let found = dp.found("br0", &["p1"]).unwrap();
        dp.setup_multicast("br0", &["p1"], &["up0"], 0, 5000, 65_536).unwrap();
        assert_eq!(hash_max().as_deref(), Some("5000"));
        // the 4097th channel and more: the default table would refuse them (ENOSPC)
        for i in 0..4200u32 {
            let g = IpAddr::from([239, 10, (i >> 8) as u8, i as u8]);
            dp.mdb_add("br0", &at("p1"), g, None).unwrap_or_else(|e| panic!("entry {i}: {e}"));
        }
        assert_eq!(dp.mdb_entries("br0").unwrap().len(), 4200);
        dp.teardown_multicast("br0", &[], &found).unwrap();
        dp.restore("br0", &found).unwrap();
    });
    assert_eq!(hash_max().as_deref(), Some("4096"), "teardown puts the table's size back");
}

#[test]
fn a_port_made_again_under_its_name_gets_its_entries_at_its_new_index() {
    let tb = Testbed::new("dx", 1);
    in_netns(&tb.ns("sw"), || {
        let mut dp = LinuxBridge::new().unwrap();
        let found = dp.found("br0", &["p1"]).unwrap();
        dp.setup_multicast("br0", &["p1"], &["up0"], 0, 5000, 65_536).unwrap();
        let g = |i: u8| IpAddr::from([239, 10, 0, i]);
        dp.mdb_add("br0", &at("p1"), g(1), None).unwrap();
        // the port goes and comes back under its name: a new interface index
        let before = tb.in_sw(&["cat", "/sys/class/net/p1/ifindex"]);
        tb.in_sw(&["ip", "link", "del", "p1"]);
        tb.in_sw(&["ip", "link", "add", "p1", "type", "veth", "peer", "name", "p1peer"]);
        tb.in_sw(&["ip", "link", "set", "p1", "master", "br0", "up"]);
        tb.in_sw(&["ip", "link", "set", "p1peer", "up"]);
        assert_ne!(tb.in_sw(&["cat", "/sys/class/net/p1/ifindex"]), before);
        dp.mdb_add("br0", &at("p1"), g(2), None).unwrap();
        let mdb = tb.in_sw(&["bridge", "mdb", "show", "dev", "br0"]);
        assert!(mdb.contains("port p1 grp 239.10.0.2"), "{mdb}");
        dp.mdb_del("br0", &at("p1"), g(2), None).unwrap();
        assert!(!tb.in_sw(&["bridge", "mdb", "show", "dev", "br0"]).contains("239.10.0.2"));
        dp.teardown_multicast("br0", &[], &found).unwrap();
    });
}

/// An IGMP frame from h1 that carries `i` after its IGMP header, 802.1Q-tagged with
/// `vid` if given.
fn numbered_igmp(i: u32, vid: Option<u16>) -> Vec<u8> {
    let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x16, 0x02, 0, 0, 0, 0, 0x01];
    if let Some(vid) = vid {
        f.extend([0x81, 0x00]);
        f.extend(vid.to_be_bytes());
    }
    f.extend([0x08, 0x00, 0x45, 0, 0, 32, 0, 0, 0, 0, 1, 2, 0, 0, 192, 0, 2, 11, 224, 0, 0, 22]);
    f.extend([0x22, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(i.to_be_bytes());
    f.resize(f.len().max(60), 0);
    f
}

#[test]
fn the_capture_ring_keeps_order_and_tags_and_counts_what_does_not_fit() {
    use mcgate::capture::PortSocket;
    const RING_FRAMES: usize = 256;
    let tb = Testbed::new("ring", 1);
    let sent = RING_FRAMES as u32 + 500;
    in_netns(&tb.ns("sw"), || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _in_rt = rt.enter();
        let capture = PortSocket::open(mcgate::sys::if_index("p1").unwrap(), RING_FRAMES).unwrap();
        in_netns(&tb.ns("h1"), || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _in_rt = rt.enter();
            let host = PortSocket::open_tx_only(mcgate::sys::if_index("eth0").unwrap()).unwrap();
            host.send(&numbered_igmp(0, Some(42))).unwrap();
            for i in 1..sent {
                host.send(&numbered_igmp(i, None)).unwrap();
            }
        });
        let dropped = capture.drops();
        // nothing read yet: the ring holds the first RING_FRAMES, the kernel counted the rest
        let mut got: Vec<(u32, Option<u16>, u16)> = Vec::new();
        rt.block_on(async {
            loop {
                let batch = capture.recv_batch(256, |frame, info| {
                    // the host's own reports (its kernel's) are not numbered
                    if frame.len() >= 46 && frame[6..12] == [2, 0, 0, 0, 0, 1] && frame[34] == 0x22 {
                        let i = u32::from_be_bytes([frame[42], frame[43], frame[44], frame[45]]);
                        got.push((i, info.vlan, info.tpid));
                    }
                });
                if tokio::time::timeout(std::time::Duration::from_millis(200), batch).await.is_err() {
                    break;
                }
            }
        });
        assert_eq!(got.first(), Some(&(0, Some(42), 0x8100)), "the tag comes in the ring's header, not the frame");
        assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "frames out of order or missing in between");
        assert!(got.iter().skip(1).all(|g| g.1.is_none()), "untagged frames with a tag");
        // the host's kernel may have sent a report or two of its own into the ring
        assert!(got.len() <= RING_FRAMES && got.len() + 8 >= RING_FRAMES, "{} numbered frames taken", got.len());
        assert!(u64::from(dropped) + got.len() as u64 >= u64::from(sent), "{dropped} counted as dropped");
        // and the ring is in use again from where it stopped
        in_netns(&tb.ns("h1"), || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _in_rt = rt.enter();
            let host = PortSocket::open_tx_only(mcgate::sys::if_index("eth0").unwrap()).unwrap();
            host.send(&numbered_igmp(sent, None)).unwrap();
        });
        let mut again = None;
        rt.block_on(capture.recv_batch(256, |frame, _| {
            if frame.len() >= 46 && frame[34] == 0x22 {
                again = Some(u32::from_be_bytes([frame[42], frame[43], frame[44], frame[45]]));
            }
        }))
        .unwrap();
        assert_eq!(again, Some(sent));
    });
}

/// A port without a VLAN (the bridge here does not filter by VLAN).
fn at(port: &str) -> PortVlan {
    PortVlan::new(port, None)
}
