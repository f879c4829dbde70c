//! The multicast core at an aggregation box's scale, in-process on one core: 64 000
//! hosts on 1 000 port listings, each holding 4 channels (256 000 memberships), against
//! the same harness with 1 000 hosts, in one run. Prints what a join's decision costs
//! (each one timed: decode, look up, decide, track, outputs taken) at both sizes, and the
//! memory the tracker takes per membership (the process's RSS before and after the
//! memberships are made). The daemon's own session table, the store and the kernel are
//! not in this figure; see the README for what is measured where.
//!
//! As root it then measures the kernel's side: MDB entries added and deleted through
//! mcgate's netlink dataplane (one request and its acknowledgement each), beside
//! iproute2's `bridge -batch` doing the same in one process, in a namespace testbed.
//!
//!     cargo bench --bench scale          (ZAPS=200000, MDB_ENTRIES=20000 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use mcgate::dataplane::{linux::LinuxBridge, Dataplane, PortVlan};
use mcgate::mcast::{Config, Host, Tracker};
use mcgate::policy::{parse_file, Entitlement};
use mcgate::wire::membership::decode;
use mcgate::wire::records::{OwnedRecord, RecordType};
use mcgate::wire::{ethernet, igmp, MacAddr};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One package of 65 536 groups, read as a policy file is.
const POLICY: &str = "[[package]]\nname = \"basic\"\ngroups = [\"239.1.0.0/16\"]\nbandwidth_kbps = 4000\n";

const HOSTS_PER_PORT: usize = 64;
const HELD: usize = 4;
const CHANNELS: usize = 1000;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4
}

fn channel(c: usize) -> Ipv4Addr {
    let c = c % CHANNELS;
    Ipv4Addr::new(239, 1, (c >> 8) as u8, c as u8)
}

fn report(src: Ipv4Addr, records: &[(RecordType, Ipv4Addr)]) -> Vec<u8> {
    let recs: Vec<OwnedRecord<Ipv4Addr>> =
        records.iter().map(|(t, g)| OwnedRecord { record_type: *t, group: *g, sources: vec![] }).collect();
    igmp::Repr::ReportV3 { records: &recs }.to_ipv4(src, igmp::ALL_V3_ROUTERS, 0xc0).unwrap()
}

struct Subscriber {
    port: usize,
    mac: MacAddr,
    ip: Ipv4Addr,
    account: Arc<str>,
}

fn subscribers(n: usize) -> Vec<Subscriber> {
    (0..n)
        .map(|i| Subscriber {
            port: i / HOSTS_PER_PORT,
            mac: MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            ip: Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8),
            account: format!("sub{i}").into(),
        })
        .collect()
}

struct Run {
    hosts: usize,
    memberships: usize,
    kib_per_100k: f64,
    fill: Duration,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
}

fn host<'a>(s: &'a Subscriber, names: &'a (Arc<str>, Arc<str>), ent: &'a Entitlement) -> Host<'a> {
    Host {
        port: s.port,
        port_name: &names.0,
        vlan: None,
        mac: s.mac,
        account: &s.account,
        session_id: &names.1,
        entitlement: ent,
    }
}

fn run(hosts: usize, zaps: usize) -> Run {
    let policy = parse_file("basic.toml", POLICY).unwrap();
    let ent = Entitlement { packages: vec!["basic".into()], max_groups: Some(8) };
    let subs = subscribers(hosts);
    let ports = hosts.div_ceil(HOSTS_PER_PORT);
    let mut config = Config::default();
    config.bounds.admissions_per_second = 1e6;
    config.bounds.channels_per_port = CHANNELS;
    let names: (Arc<str>, Arc<str>) = ("p".into(), "s".into());

    let start = Instant::now();
    let before = rss_kib();
    let mut tracker = Tracker::new(config, vec![false; ports]);
    // each host joins HELD channels, spread so that ports share some
    let t = Instant::now();
    for (i, s) in subs.iter().enumerate() {
        let records: Vec<(RecordType, Ipv4Addr)> =
            (0..HELD).map(|k| (RecordType::ToEx, channel(i * 7 + k * 131))).collect();
        let frame = report(s.ip, &records);
        let r = decode(ethernet::ETHERTYPE_IPV4, &frame).unwrap();
        tracker.handle_report(start, 0, &policy, &host(s, &names, &ent), &r.records);
        while let Some(o) = tracker.poll_output() {
            black_box(o);
        }
    }
    let fill = t.elapsed();
    let memberships = tracker.memberships().count();
    let kib = rss_kib().saturating_sub(before);
    // then zapping: a host leaves its first channel for a new one, timed one by one
    let frames: Vec<(usize, Vec<u8>)> = (0..zaps)
        .map(|z| {
            let i = (z * 7919) % hosts;
            let (old, new) = (channel(i * 7), channel(i * 7 + 500 + z % 100));
            (i, report(subs[i].ip, &[(RecordType::ToEx, new), (RecordType::ToIn, old)]))
        })
        .collect();
    let mut each = Vec::with_capacity(zaps);
    for (z, (i, frame)) in frames.iter().enumerate() {
        let now = start + Duration::from_millis(1 + z as u64 / 100);
        let t = Instant::now();
        let r = decode(ethernet::ETHERTYPE_IPV4, frame).unwrap();
        tracker.handle_report(now, 0, &policy, &host(&subs[*i], &names, &ent), &r.records);
        while let Some(o) = tracker.poll_output() {
            black_box(o);
        }
        each.push(t.elapsed().as_nanos() as u64);
    }
    each.sort_unstable();
    let q = |p: f64| each[((each.len() - 1) as f64 * p).round() as usize];
    Run {
        hosts,
        memberships,
        kib_per_100k: kib as f64 * 100_000.0 / memberships.max(1) as f64,
        fill,
        p50_ns: q(0.5),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
    }
}

/// MDB entries added then deleted by mcgate's dataplane, then by `bridge -batch`:
/// (mcgate add, mcgate delete, bridge add, bridge delete).
fn kernel(entries: u32) -> [Duration; 4] {
    let tb = common::Testbed::new("sc", 1);
    let sw = tb.ns("sw");
    let groups: Vec<IpAddr> =
        (0..entries).map(|i| IpAddr::from([239, 10 + (i >> 16) as u8, (i >> 8) as u8, i as u8])).collect();
    let batch = |verb: &str| {
        let lines: Vec<String> =
            groups.iter().map(|g| format!("mdb {verb} dev br0 port p1 grp {g} permanent\n")).collect();
        let file = tb.dir.join(format!("mdb-{verb}.batch"));
        std::fs::write(&file, lines.concat()).unwrap();
        let t = Instant::now();
        common::run(Command::new("ip").args(["netns", "exec", &sw, "bridge", "-batch"]).arg(&file));
        t.elapsed()
    };
    common::in_netns(&sw, || {
        let mut dp = LinuxBridge::new().unwrap();
        let found = dp.found("br0", &["p1"]).unwrap();
        dp.setup_multicast("br0", &["p1"], &["up0"], 0, entries + 1024, 65_536).unwrap();
        let at = PortVlan::new("p1", None);
        let t = Instant::now();
        for g in &groups {
            dp.mdb_add("br0", &at, *g, None).unwrap();
        }
        let add = t.elapsed();
        assert_eq!(dp.mdb_entries("br0").unwrap().len(), groups.len());
        let t = Instant::now();
        for g in &groups {
            dp.mdb_del("br0", &at, *g, None).unwrap();
        }
        let del = t.elapsed();
        let (badd, bdel) = (batch("add"), batch("del"));
        dp.teardown_multicast("br0", &[], &found).unwrap();
        dp.restore("br0", &found).unwrap();
        [add, del, badd, bdel]
    })
}

fn main() {
    let zaps: usize = std::env::var("ZAPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    // the small one first, in the same process (its memory is given back before the big one)
    let small = run(1_000, zaps);
    let big = run(64_000, zaps);
    println!("the multicast core, {HELD} channels held per host, {zaps} zaps (join + leave in one report), one core:");
    println!("| hosts | memberships | made in | tracker memory per membership (RSS) | decision p50 / p99 / p99.9 |");
    println!("| --- | --- | --- | --- | --- |");
    for r in [&small, &big] {
        println!(
            "| {} | {} | {:.0} ms | {:.0} B | {:.2} / {:.2} / {:.2} µs |",
            r.hosts,
            r.memberships,
            r.fill.as_secs_f64() * 1e3,
            r.kib_per_100k * 1024.0 / 100_000.0,
            r.p50_ns as f64 / 1e3,
            r.p99_ns as f64 / 1e3,
            r.p999_ns as f64 / 1e3
        );
    }
    println!(
        "p99 at {} hosts / p99 at {} hosts: {:.2}",
        big.hosts,
        small.hosts,
        big.p99_ns as f64 / small.p99_ns as f64
    );
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } != 0 {
        println!("\n(not root: the kernel's side is not measured)");
        return;
    }
    let entries: u32 = std::env::var("MDB_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let [add, del, badd, bdel] = kernel(entries);
    let per_s = |d: Duration| {
        format!("{:.0}/s ({:.1} µs each)", entries as f64 / d.as_secs_f64(), d.as_secs_f64() * 1e6 / entries as f64)
    };
    println!("\n{entries} MDB entries on one port of a bridge, added then deleted:");
    println!("| | add | delete |");
    println!("| --- | --- | --- |");
    println!("| mcgate's dataplane (a netlink request and its ACK each) | {} | {} |", per_s(add), per_s(del));
    println!("| iproute2 `bridge -batch`, one process (baseline) | {} | {} |", per_s(badd), per_s(bdel));
}
