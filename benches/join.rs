//! Join → first multicast packet at the host: mcgate deciding by package vs the same
//! bridge with plain kernel snooping and no mcgate, in one run, on the same topology.
//! Both ports leave fast (mcgate: `fast_leave`; kernel: `fastleave on`), and neither
//! floods unregistered multicast to the port, so every join is a fresh decision.
//! The stream runs at 997 packets/s (detuned from the 4 ms timer tick, docs/peers-and-kernel.md).
//! Two figures per join: from the join call (most of it is the host kernel's report
//! timer), and from the host's report on the wire to the stream's first packet there
//! (kernel timestamps on the host's interface): what the switch adds.
//! A third part on the same bridge measures the floor of any admitter in user space on
//! this machine: the bridge's snooping kept from the reports as mcgate keeps it, and a
//! thread that does nothing but wait for a report and send the MDB request (`floor_admitter`).
//!
//!     sudo cargo bench --bench join          (JOINS=200 by default)
//!
//! `CPU_LATENCY_US=0` holds the machine's CPU wake-up latency at that bound for the whole
//! run (a PM QoS request on /dev/cpu_dma_latency, what tuned's latency profiles do): idle
//! CPUs then poll instead of sleeping, so both halves run without the wake-up of a
//! sleeping CPU.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{bucket_quantile, histogram, pct, wait_until, Testbed};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

/// The zaps' figures: ms from the join call to the first packet, ms from the host's
/// report on the wire to the first packet there (none: no packet within 2 s).
struct Zaps {
    join: Vec<Option<f64>>,
    wire: Vec<Option<f64>>,
}

impl Zaps {
    fn got(v: &[Option<f64>]) -> Vec<f64> {
        v.iter().flatten().copied().collect()
    }

    fn missed(&self) -> usize {
        self.join.iter().filter(|v| v.is_none()).count()
    }

    /// The first `n` joins, as they went: "12.1 / 0.51" (join → first / report → first).
    fn first(&self, n: usize) -> String {
        let ms = |v: &Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.2}"));
        let each = self.join.iter().zip(&self.wire).take(n).map(|(j, w)| format!("{} / {}", ms(j), ms(w)));
        each.collect::<Vec<_>>().join(", ")
    }
}

fn zap(tb: &Testbed, joins: usize) -> Zaps {
    let child = tb.mcast_py("h1", &["zap", "239.1.1.1", "--count", &joins.to_string(), "--gap-ms", "60"]);
    let r = common::result(child);
    let all = |key: &str| r[key].as_array().unwrap().iter().map(|v| v.as_f64()).collect();
    Zaps { join: all("first_ms"), wire: all("report_to_first_ms") }
}

/// The least a user-space admitter adds on this machine: a thread asleep in `poll` on an
/// AF_PACKET socket bound to the port (no ring, no runtime, no policy, no accounting, no
/// usage counter) that sends the RTM_NEWMDB request mcgate sends for an IGMP join and
/// RTM_DELMDB for a leave, nothing else. Runs in namespace `ns` until `stop`; returns the
/// joins it admitted. The host's reports reach it only (the caller's nftables rule keeps
/// them from the bridge's snooping, as mcgate's does).
fn floor_admitter(ns: String, port: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    use mcgate::sys;
    std::thread::spawn(move || {
        common::in_netns(&ns, || {
            let (ifindex, bridge) = (sys::if_index(port).unwrap(), sys::if_index("br0").unwrap());
            let mut nl = mcgate::dataplane::netlink::Netlink::open().unwrap();
            let (fd, ()) = sys::packet_socket(ifindex, |_| Ok(())).unwrap();
            let mut buf = [0u8; 2048];
            let mut admitted = 0;
            while !stop.load(Ordering::Relaxed) {
                // woken every 100 ms at most to look at `stop`
                if !sys::wait_readable(&fd, Duration::from_millis(100)).unwrap() {
                    continue;
                }
                let Ok(n) = sys::recv(&fd, &mut buf) else { continue };
                match igmp_change(&buf[..n]) {
                    Some((group, true)) => {
                        nl.mdb_add(bridge, ifindex, group.into(), None, 0).unwrap();
                        admitted += 1;
                    }
                    Some((group, false)) => nl.mdb_del(bridge, ifindex, group.into(), None, 0).unwrap(),
                    None => {}
                }
            }
            admitted
        })
    })
}

/// An untagged IPv4 frame's IGMP join (true) or leave (false) of one group: a v2 report
/// or leave, or a v3 report's first record (EXCLUDE: join; INCLUDE with no source: leave).
fn igmp_change(frame: &[u8]) -> Option<(std::net::Ipv4Addr, bool)> {
    let ip = frame.get(14..).filter(|_| frame.get(12..14) == Some(&[0x08, 0x00]))?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let igmp = ip.get(ihl..).filter(|_| ip.get(9) == Some(&2))?;
    let addr = |b: &[u8]| -> Option<std::net::Ipv4Addr> { Some(<[u8; 4]>::try_from(b.get(..4)?).ok()?.into()) };
    match *igmp.first()? {
        0x16 => Some((addr(igmp.get(4..)?)?, true)),
        0x17 => Some((addr(igmp.get(4..)?)?, false)),
        0x22 => {
            let rec = igmp.get(8..)?;
            let sources = u16::from_be_bytes([*rec.get(2)?, *rec.get(3)?]);
            match rec.first()? {
                2 | 4 => Some((addr(rec.get(4..)?)?, true)),
                1 | 3 if sources == 0 => Some((addr(rec.get(4..)?)?, false)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn main() {
    let joins: usize = std::env::var("JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // held open for the whole run: the request ends when the file is closed
    let latency: Option<i32> = std::env::var("CPU_LATENCY_US").ok().and_then(|v| v.parse().ok());
    let _qos = latency.map(|us| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().write(true).open("/dev/cpu_dma_latency").unwrap();
        f.write_all(&us.to_ne_bytes()).unwrap();
        f
    });
    let mut tb = Testbed::new("jn", 1);
    tb.radius(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    let t =
        std::fs::read_to_string(&cfg).unwrap().replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nfast_leave = true\n");
    std::fs::write(&cfg, t.replace("log_level = \"debug\"", "log_level = \"warn\"")).unwrap();
    tb.multicast(POLICY, "");
    // the head-end streams all along
    let mut stream = tb.mcast_py("up", &["send", "239.1.1.1", "--pps", "997", "--seconds", "600"]);
    tb.start_mcgate();
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()));
    // the host zaps as soon as it is in: the first joins after a start and a login are
    // the ones a subscriber switching on the box makes
    let with = zap(&tb, joins);
    // mcgate's own part: capture → decided, and capture → MDB entry installed (its commit follows)
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
    let commits = common::slow_commits(&status);
    let waited = inside("capture_wait");
    let decision = inside("decision_latency");
    let admission = inside("admission_latency");

    // the same bridge without mcgate: teardown (which puts back the bridge as the testbed
    // made it, without a querier), then kernel snooping with the querier and query versions
    // mcgate sets, and fast leave
    tb.stop_mcgate();
    let sw = tb.ns("sw");
    tb.in_sw(&[common::MCGATE, "teardown", "-c", &cfg.to_string_lossy()]);
    let options = ["mcast_snooping", "1", "mcast_querier", "1", "mcast_query_use_ifaddr", "1"];
    let versions = ["mcast_igmp_version", "3", "mcast_mld_version", "2"];
    tb.in_sw(&[&["ip", "link", "set", "br0", "type", "bridge"][..], &options, &versions].concat());
    // the bridge floods for one query response interval after its querier starts (1 s here)
    std::thread::sleep(Duration::from_millis(1500));
    tb.in_sw(&["bridge", "link", "set", "dev", "p1", "fastleave", "on", "mcast_flood", "off"]);
    let plain = zap(&tb, joins);
    // the same bridge again, its snooping kept from the host's reports as mcgate keeps it,
    // and the floor admitter deciding nothing
    let drop = "table bridge jnfloor {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tiifname \"p1\" ip protocol igmp drop\n\t}\n}\n";
    nft(&sw, drop);
    let stop = Arc::new(AtomicBool::new(false));
    let admitter = floor_admitter(sw.clone(), "p1", stop.clone());
    let least = zap(&tb, joins);
    stop.store(true, Ordering::Relaxed);
    let admitted = admitter.join().unwrap();
    nft(&sw, "delete table bridge jnfloor\n");
    let _ = stream.kill();
    let _ = stream.wait();

    match latency {
        Some(us) => println!("\nCPU wake-up latency held at {us} µs (/dev/cpu_dma_latency) for both halves"),
        None => println!("\nCPU wake-up latency as the machine has it (no PM QoS request)"),
    }
    println!("{joins} joins each, stream 997 pps, median / p99 ms:");
    println!("| | join → first packet | host's report on the wire → first packet | no packet within 2 s |");
    println!("| --- | --- | --- | --- |");
    let mut ratios = vec![];
    let rows = [
        ("mcgate (package decision, MDB entry)", &with),
        ("plain kernel snooping, no mcgate", &plain),
        ("the least admitter in user space: a thread in poll, then RTM_NEWMDB", &least),
    ];
    for (name, z) in rows {
        let (mut j, mut w) = (Zaps::got(&z.join), Zaps::got(&z.wire));
        let q = [pct(&mut j, 50.0), pct(&mut j, 99.0), pct(&mut w, 50.0), pct(&mut w, 99.0)];
        println!("| {name} | {:.2} / {:.2} | {:.3} / {:.3} | {} |", q[0], q[1], q[2], q[3], z.missed());
        ratios.push(q);
    }
    let (a, b, c) = (ratios[0], ratios[1], ratios[2]);
    println!("| ratio | {:.3} / {:.3} | {:.3} / {:.3} | |", a[0] / b[0], a[1] / b[1], a[2] / b[2], a[3] / b[3]);
    let adds = |x: [f64; 4]| format!("{:+.0} µs / {:+.0} µs", (x[2] - b[2]) * 1000.0, (x[3] - b[3]) * 1000.0);
    println!("| mcgate adds (report → first) | | {} | |", adds(a));
    println!("| the least admitter adds (report → first; it admitted {admitted} joins) | | {} | |", adds(c));
    println!("\nthe first 3 joins (join → first / report → first, ms):");
    println!("  mcgate, right after its start and the host's login: {}", with.first(3));
    println!("  plain snooping, right after its querier started: {}", plain.first(3));
    println!("\ninside mcgate (histogram bucket bounds, ms):");
    println!("| | median | p99 | count |");
    println!("| --- | --- | --- | --- |");
    println!("| kernel's receipt → capture task's read (its wake-up) | {} | {} | {} |", waited.0, waited.1, waited.2);
    println!("| capture → decided | {} | {} | {} |", decision.0, decision.1, decision.2);
    println!(
        "| capture → MDB entry installed (before its commit) | {} | {} | {} |",
        admission.0, admission.1, admission.2
    );
    // as far apart as the zaps' reports (each after a 60 ms gap and the host's report delay)
    let mut floor = common::wake_floor(200, Duration::from_millis(70)).one_way_us;
    println!(
        "| this machine: a datagram → a thread asleep for 70 ms has it (half a round trip on loopback, 200 rounds; µs) | {:.0} | {:.0} | |",
        pct(&mut floor, 50.0),
        pct(&mut floor, 99.0)
    );
    println!("journal commits (on the writer thread): {commits}");
    println!("\nkernel's receipt → capture task's read by bucket (ms): {}", waited.3);
    println!("capture → decided by bucket (ms): {}", decision.3);
    println!("capture → MDB entry installed by bucket (ms): {}", admission.3);
}

/// Loads an nftables script in namespace `ns`.
fn nft(ns: &str, script: &str) {
    use std::io::Write as _;
    let mut child = common::in_ns(ns, &["nft", "-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft in {ns}: {script}");
}
