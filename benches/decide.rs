//! The decision path in-process, on one core: a captured-format IGMPv3 report decoded,
//! the host looked up, the join decided by policy, and the tracker's outputs (record,
//! MDB change, upstream report) taken, for a subscriber zapping between channels (each
//! join also leaves the previous channel). Printed beside the cost of decoding alone.
//!
//!     cargo bench --bench decide

use mcgate::mcast::{Config, Host, Tracker};
use mcgate::policy::{parse_file, Entitlement};
use mcgate::wire::membership::decode;
use mcgate::wire::records::{OwnedRecord, RecordType};
use mcgate::wire::{ethernet, igmp, MacAddr};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One package of 65 536 groups, read as a policy file is.
const POLICY: &str = "[[package]]\nname = \"basic\"\ngroups = [\"239.1.0.0/16\"]\nbandwidth_kbps = 4000\n";

const HOSTS: usize = 1000;
const CHANNELS: u8 = 200;

fn report(src: Ipv4Addr, join: Ipv4Addr, leave: Ipv4Addr) -> Vec<u8> {
    let recs = [
        OwnedRecord { record_type: RecordType::ToEx, group: join, sources: vec![] },
        OwnedRecord { record_type: RecordType::ToIn, group: leave, sources: vec![] },
    ];
    igmp::Repr::ReportV3 { records: &recs }.to_ipv4(src, igmp::ALL_V3_ROUTERS, 0xc0).unwrap()
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:>12.0} /s  ({:.0} ns each)", n as f64 / d.as_secs_f64(), d.as_nanos() as f64 / n as f64)
}

fn main() {
    let policy = parse_file("basic.toml", POLICY).unwrap();
    let ent = Entitlement { packages: vec!["basic".into()], max_groups: Some(4) };
    // sessions as the daemon keeps them: (port, MAC) → account
    let sessions: HashMap<(usize, MacAddr), Arc<str>> =
        (0..HOSTS).map(|i| ((i, MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8])), format!("sub{i}").into())).collect();
    let (port_name, session_id): (Arc<str>, Arc<str>) = ("p".into(), "s".into());
    // one report per (host, channel step), built before timing
    let frames: Vec<Vec<u8>> = (0..HOSTS * CHANNELS as usize)
        .map(|k| {
            let (h, c) = (k % HOSTS, (k / HOSTS) as u8);
            let src = Ipv4Addr::new(10, 0, (h >> 8) as u8, h as u8);
            report(src, Ipv4Addr::new(239, 1, 0, c), Ipv4Addr::new(239, 1, 0, c.wrapping_sub(1) % CHANNELS))
        })
        .collect();

    let rounds = 10;
    let n = (frames.len() * rounds) as u64;
    // baseline: decoding and validating the report alone
    let t = Instant::now();
    for _ in 0..rounds {
        for f in &frames {
            black_box(decode(ethernet::ETHERTYPE_IPV4, black_box(f)).unwrap());
        }
    }
    let decode_only = t.elapsed();

    // every join taken through the policy (the simulated clock runs 1 ms a report: each
    // host joins faster than the default admission rate allows)
    let mut config = Config::default();
    config.bounds.admissions_per_second = 1e6;
    let mut tracker = Tracker::new(config, vec![false; HOSTS]);
    let start = Instant::now();
    let t = Instant::now();
    let mut outputs = 0u64;
    for round in 0..rounds {
        for (k, f) in frames.iter().enumerate() {
            let h = k % HOSTS;
            let report = decode(ethernet::ETHERTYPE_IPV4, f).unwrap();
            let mac = MacAddr([2, 0, 0, 0, (h >> 8) as u8, h as u8]);
            let account = &sessions[&(h, mac)];
            let host = Host {
                port: h,
                port_name: &port_name,
                vlan: None,
                mac,
                account,
                session_id: &session_id,
                entitlement: &ent,
            };
            // time moves on so lingering entries expire as on a switch
            let now = start + Duration::from_millis((round * frames.len() + k) as u64);
            tracker.handle_report(now, 0, &policy, &host, &report.records);
            if k % HOSTS == 0 {
                tracker.handle_timeout(now);
            }
            while let Some(o) = tracker.poll_output() {
                black_box(o);
                outputs += 1;
            }
        }
    }
    let full = t.elapsed();
    println!("decision path, {HOSTS} hosts zapping over {CHANNELS} channels, {n} joins (each with a leave), one core:");
    println!("  decode + validate only (baseline)              {}", rate(n, decode_only));
    println!("  decode + look up + decide + track + outputs    {}", rate(n, full));
    println!("  outputs taken: {outputs}; memberships held at the end: {}", tracker.memberships().count());
}
