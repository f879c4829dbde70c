//! The policy catalogue from etcd against real peers: a three-member etcd cluster
//! (Debian's etcd-server, each member in a namespace of its own on a management network)
//! and three switches from the testbed, each with its own FreeRADIUS, subscriber and
//! stream; the catalogue written with `mcgate catalogue push`.

mod common;

use common::{result, run, wait_until, Testbed, MCGATE, TB};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ENDPOINTS: &str = r#"endpoints = ["http://10.77.0.1:2379", "http://10.77.0.2:2379", "http://10.77.0.3:2379"]"#;

/// The switches' own policy files: used only until a catalogue has been applied.
const LOCAL: &str = "[defaults]\nunknown = \"deny\"\npackages = [\"basic\"]\n\
                     [[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

/// A catalogue whose package basic holds `groups`, every subscriber having it.
fn catalogue(dir: &Path, name: &str, groups: &[&str]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
    std::fs::write(d.join("defaults.toml"), "[defaults]\nunknown = \"deny\"\npackages = [\"basic\"]\n").unwrap();
    let basic = format!("[[package]]\nname = \"basic\"\ngroups = [{}]\n", groups.join(", "));
    std::fs::write(d.join("packages.toml"), basic).unwrap();
    d
}

/// A switch on the cluster's management network at 10.77.0.(11 + i), alice logged in on p1.
fn switch(name: &str, cluster: &str, i: usize) -> Testbed {
    let mut tb = Testbed::new(name, 1);
    run(Command::new(TB).args(["mgmt", cluster, &tb.ns("sw"), &format!("10.77.0.{}", 11 + i)]));
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    tb.multicast(
        LOCAL,
        &format!("[catalogue]\n{ENDPOINTS}\ntimeout = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:9470\"\n"),
    );
    tb.start_mcgate();
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()), "{}", tb.log());
    tb
}

/// `mcgate catalogue ARGS` in `tb`'s switch namespace, with its configuration.
fn catalogue_cli(tb: &Testbed, args: &[&str]) -> String {
    let config = tb.dir.join("mcgate.toml");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &tb.ns("sw"), MCGATE, "catalogue"]).args(args).arg("-c").arg(config);
    run(&mut cmd)
}

fn push(tb: &Testbed, dir: &Path) -> i64 {
    let out = catalogue_cli(tb, &["push", dir.to_str().unwrap()]);
    out.trim().rsplit(' ').next().and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("no revision in {out:?}"))
}

fn etcdctl(tb: &Testbed, args: &[&str]) -> String {
    let endpoints = "http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379";
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &tb.ns("sw"), "env", "ETCDCTL_API=3", "etcdctl", "--endpoints", endpoints]);
    run(cmd.args(args))
}

/// The number of the member that leads the cluster now.
fn leader(tb: &Testbed) -> String {
    let status: Value = serde_json::from_str(&etcdctl(tb, &["endpoint", "status", "-w", "json"])).unwrap();
    let lead = status.as_array().into_iter().flatten().find(|m| {
        m["Status"]["leader"].as_u64().is_some() && m["Status"]["leader"] == m["Status"]["header"]["member_id"]
    });
    let endpoint = lead.and_then(|m| m["Endpoint"].as_str()).unwrap_or_else(|| panic!("no leader in {status}"));
    // http://10.77.0.N:2379
    endpoint.rsplit('.').next().and_then(|n| n.split(':').next()).unwrap().to_string()
}

fn catalogue_status(tb: &Testbed) -> Value {
    tb.status().map(|s| s["catalogue"].clone()).unwrap_or_default()
}

fn revision(tb: &Testbed) -> i64 {
    catalogue_status(tb)["revision"].as_i64().unwrap_or(-1)
}

/// Whether every switch has applied revision `rev` or a later listing of the same (a
/// listing's revision is etcd's at the time, past the catalogue's last change).
fn all_at(switches: &[Testbed], rev: i64) -> bool {
    wait_until(Duration::from_secs(40), || switches.iter().all(|s| revision(s) >= rev))
}

/// Packets of `group` host 1 of `tb` gets in `seconds` of joining it, while the upstream
/// streams it.
fn watch(tb: &Testbed, group: &str, seconds: u32) -> u64 {
    let mut stream = tb.stream(group, seconds + 1);
    let r = result(tb.mcast_py("h1", &["recv", group, "--seconds", &seconds.to_string()]));
    let _ = stream.kill();
    let _ = stream.wait();
    r["packets"].as_u64().unwrap_or(0)
}

fn admitted(tb: &Testbed, group: &str) -> bool {
    tb.memberships().iter().any(|m| m["group"] == group)
}

#[test]
fn a_catalogue_in_etcd_decides_on_every_switch_and_fails_static() {
    // a testbed of its own holds the cluster (its namespaces go when it does)
    let net = Testbed::new("catnet", 1);
    let cluster = net.prefix.clone();
    run(Command::new(TB).args(["etcd", &cluster, "3"]));
    let mut switches: Vec<Testbed> = (0..3).map(|i| switch(&format!("cat{}", i + 1), &cluster, i)).collect();
    let work = switches[0].dir.join("catalogues");

    // before any push: the local files (239.1.2.0/24 is not in them)
    assert_eq!(watch(&switches[0], "239.1.2.1", 2), 0, "{}", switches[0].log());

    // a push reaches every switch: 239.1.2.0/24 plays on all three
    let v1 = push(&switches[0], &catalogue(&work, "v1", &["239.1.1.0/24", "239.1.2.0/24"]));
    assert!(
        all_at(&switches, v1),
        "not every switch at revision {v1}: {:?}",
        switches.iter().map(catalogue_status).collect::<Vec<_>>()
    );
    for s in &switches {
        assert!(watch(s, "239.1.2.1", 2) > 100, "{}", s.log());
    }
    let status = catalogue_cli(&switches[0], &["status"]);
    assert_eq!(status.matches("current").count(), 3, "{status}");

    // a channel taken out of the package stops on all three while they watch it; an added one plays
    let mut streams = vec![];
    let mut watchers = vec![];
    for s in &switches {
        streams.push(s.stream("239.1.2.1", 8));
        watchers.push(s.mcast_py("h1", &["recv", "239.1.2.1", "--seconds", "7"]));
    }
    assert!(wait_until(Duration::from_secs(5), || switches.iter().all(|s| admitted(s, "239.1.2.1"))));
    let v2 = push(&switches[0], &catalogue(&work, "v2", &["239.1.1.0/24", "239.1.3.0/24"]));
    assert!(all_at(&switches, v2));
    for s in &switches {
        assert!(wait_until(Duration::from_secs(5), || !admitted(s, "239.1.2.1")), "{}", s.log());
        assert!(!s.mdb().contains("239.1.2.1"), "{}", s.mdb());
        assert!(watch(s, "239.1.3.1", 2) > 100, "{}", s.log());
    }
    for mut c in streams.into_iter().chain(watchers) {
        let _ = c.kill();
        let _ = c.wait();
    }

    // a broken catalogue (written past push's own validation) is refused by every switch,
    // which keeps deciding with the one before; `catalogue status` says so
    etcdctl(
        &switches[0],
        &["put", "/mcgate/catalogue/package/broken", "[[package]]\nname = \"broken\"\ngroups = [\"10.0.0.0/8\"]\n"],
    );
    assert!(wait_until(Duration::from_secs(20), || switches.iter().all(|s| catalogue_status(s)["refused"] == 1)));
    for s in &switches {
        let c = catalogue_status(s);
        assert_eq!(c["revision"], v2, "{c}");
        assert!(c["last_refusal"].as_str().unwrap_or("").contains("package/broken"), "{c}");
        assert!(watch(s, "239.1.3.1", 2) > 100, "the refusal changed what plays: {}", s.log());
    }
    let status = catalogue_cli(&switches[0], &["status"]);
    assert_eq!(status.matches("REFUSED").count(), 3, "{status}");
    assert!(status.contains("package/broken"), "{status}");

    // the leader down: a push still applies everywhere (it waits out the election)
    let leader = leader(&switches[0]);
    run(Command::new(TB).args(["etcd-stop", &cluster, &leader]));
    let v3 = push(&switches[0], &catalogue(&work, "v3", &["239.1.1.0/24", "239.1.3.0/24", "239.1.4.0/24"]));
    assert!(
        all_at(&switches, v3),
        "with a member down: {:?}",
        switches.iter().map(catalogue_status).collect::<Vec<_>>()
    );

    // all of etcd down: the switches decide with the last catalogue, a restarted one too
    for m in ["1", "2", "3"] {
        run(Command::new(TB).args(["etcd-stop", &cluster, m]));
    }
    assert!(watch(&switches[1], "239.1.4.1", 2) > 100, "{}", switches[1].log());
    switches[2].stop_mcgate();
    switches[2].start_mcgate();
    assert_eq!(revision(&switches[2]), v3, "restarted without etcd: {}", switches[2].log());
    assert!(switches[2].log().contains("deciding with the one applied last"), "{}", switches[2].log());
    assert!(watch(&switches[2], "239.1.4.1", 2) > 100, "{}", switches[2].log());

    // etcd back: the switches catch up with what is pushed next
    for m in ["1", "2", "3"] {
        run(Command::new(TB).args(["etcd-start", &cluster, m]));
    }
    assert!(wait_until(Duration::from_secs(20), || Command::new("ip")
        .args(["netns", "exec", &switches[0].ns("sw"), "env", "ETCDCTL_API=3", "etcdctl", "--endpoints"])
        .arg("http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379")
        .args(["endpoint", "health"])
        .status()
        .is_ok_and(|s| s.success())));
    let v4 = push(&switches[0], &catalogue(&work, "v4", &["239.1.1.0/24", "239.1.5.0/24"]));
    assert!(
        all_at(&switches, v4),
        "after etcd came back: {:?}",
        switches.iter().map(catalogue_status).collect::<Vec<_>>()
    );

    // a switch cut off while the catalogue changes and etcd compacts its history lists
    // it again when it is back (a resync) and converges
    let cut = &switches[1];
    cut.in_sw(&["ip", "link", "set", "mgmt0", "down"]);
    std::thread::sleep(Duration::from_secs(3));
    push(&switches[0], &catalogue(&work, "v5", &["239.1.1.0/24"]));
    let v6 = push(&switches[0], &catalogue(&work, "v6", &["239.1.1.0/24", "239.1.6.0/24"]));
    assert!(wait_until(Duration::from_secs(10), || revision(&switches[0]) >= v6 && revision(&switches[2]) >= v6));
    let status = catalogue_cli(&switches[0], &["status"]);
    assert_eq!((status.matches("BEHIND").count(), status.matches("current").count()), (1, 2), "{status}");
    etcdctl(&switches[0], &["compact", &v6.to_string()]);
    cut.in_sw(&["ip", "link", "set", "mgmt0", "up"]);
    // (its reconnection pauses have grown to a few seconds meanwhile)
    assert!(all_at(&switches, v6), "after the cut: {:?}", switches.iter().map(catalogue_status).collect::<Vec<_>>());
    assert_eq!(catalogue_status(cut)["resyncs"], 1, "{}", cut.log());
    assert!(watch(cut, "239.1.6.1", 2) > 100, "{}", cut.log());
    let counters = catalogue_status(&switches[0]);
    assert!(counters["applied"].as_u64() >= Some(5), "{counters}");
    // the applied revision and the refusal in the metrics too
    let metrics =
        run(Command::new("ip").args(["netns", "exec", &cut.ns("sw"), "curl", "-s", "http://127.0.0.1:9470/metrics"]));
    let value = |name: &str| -> Option<i64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .map(|v| v as i64)
    };
    assert_eq!(value("mcgate_catalogue_revision"), Some(revision(cut)), "{metrics}");
    assert_eq!(value("mcgate_catalogue_refused_total"), Some(1), "{metrics}");
    assert_eq!(value("mcgate_catalogue_resyncs_total"), Some(1), "{metrics}");
}
