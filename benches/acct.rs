//! Accounting, three figures in one run:
//!
//! 1. The journal: membership Start records made durable (redb, fsync'd commit) one
//!    per commit — what a commit per admission costs — against batches of 8, 64 and 256
//!    records per commit, as the daemon's group commit makes them under load.
//! 2. Delivery: a backlog of journaled records sent by mcgate to FreeRADIUS writing
//!    into PostgreSQL (radacct), against radclient sending the same number of
//!    Accounting-Requests to the same server with the same parallelism.
//!
//! 3. Growth: what a membership's records take in the journal file (an Interim-Update
//!    with its usage counters, as the daemon writes one every `interim_interval` per live
//!    membership), what `acct purge` gives back, and a day of an aggregation switch
//!    worked out from it.
//!
//!     sudo cargo bench --bench acct          (RECORDS=4000 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, run, wait_until, Testbed};
use mcgate::acct::{Kind, Record, Status};
use mcgate::store::{Batch, Store};
use std::process::Command;
use std::time::{Duration, Instant};

fn record(i: u64) -> Record {
    Record {
        multi_session_id: Some("5F00AA0100000001".into()),
        user_name: Some("alice".into()),
        mac: Some(mcgate::wire::MacAddr([2, 0, 0, 0, 0, 0x11])),
        port: Some("p1".into()),
        nas_port: Some(1),
        group: Some(format!("239.1.{}.{}", i / 250 % 250, i % 250).parse().unwrap()),
        package: Some("basic".into()),
        ..Record::new(Kind::Membership, Status::Start, 1_795_000_000 + i, format!("BENCH-{i:X}"))
    }
}

fn journal() {
    let dir = std::env::temp_dir().join(format!("mcgate-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("journal (redb, durable commits), membership Start records:");
    println!("  {:>8} {:>9} {:>14} {:>16} {:>16}", "batch", "records", "records/s", "commit med ms", "commit p99 ms");
    for (batch, total) in [(1u64, 1000u64), (8, 4000), (64, 16000), (256, 32000)] {
        let store = Store::open(&dir.join(format!("b{batch}.redb"))).unwrap();
        let mut lat = vec![];
        let t0 = Instant::now();
        for b in 0..total / batch {
            let records = (0..batch).map(|i| record(b * batch + i)).collect();
            let t = Instant::now();
            store.commit(&Batch { records, deliver: true, ..Default::default() }).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let secs = t0.elapsed().as_secs_f64();
        let (med, p99) = (pct(&mut lat, 50.0), pct(&mut lat, 99.0));
        println!("  {batch:>8} {total:>9} {:>14.0} {med:>16.2} {p99:>16.2}", total as f64 / secs);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An Interim-Update of membership `i` as the daemon journals one: its session's
/// identifiers, the group, the package and the bridge's counters.
fn interim(i: u64) -> Record {
    Record {
        session_time: Some(600 + i % 86_400),
        output_octets: Some(4_000_000_000 + i * 1_316),
        output_packets: Some(3_000_000 + i),
        multi_session_id: Some(format!("5EED0000-{:08X}", i / 4)),
        session_id: format!("5EED{:012X}", i),
        user_name: Some(format!("sub{:06}", i / 4 % 64_000)),
        port: Some(format!("p{}", 1 + i % 16)),
        nas_port: Some(1 + (i % 16) as u32),
        status: Status::InterimUpdate,
        ..record(i)
    }
}

fn growth() {
    const N: u64 = 200_000;
    let dir = std::env::temp_dir().join(format!("mcgate-bench-growth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("growth.redb");
    let store = Store::open(&path).unwrap();
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let empty = size();
    // written as the group commit writes them under load, 256 a commit, delivered
    let write = |from: u64| {
        for b in (from..from + N).step_by(256) {
            let records = (b..(b + 256).min(from + N)).map(interim).collect();
            store.commit(&Batch { records, deliver: false, ..Default::default() }).unwrap();
        }
    };
    write(0);
    let full = size();
    let per_record = (full - empty) as f64 / N as f64;
    let json = serde_json::to_vec(&interim(N / 2)).unwrap().len();
    store.set_exported(store.next_seq().unwrap()).unwrap();
    let t0 = Instant::now();
    let purged = store.purge_exported(None).unwrap();
    let purge_s = t0.elapsed().as_secs_f64();
    let after_purge = size();
    // the next day's records go into the pages the purge freed
    write(N);
    let refilled = size();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    println!("\njournal growth, {N} membership Interim-Updates (256 a commit, delivered):");
    println!("  file: {:.1} MB empty, {:.1} MB with them: {per_record:.0} B per record ({json} B of it the record itself, JSON)", empty as f64 / 1e6, full as f64 / 1e6);
    println!("  acct purge (all exported): {purged} records in {purge_s:.2} s; file {:.1} MB after it, {:.1} MB after {N} more", after_purge as f64 / 1e6, refilled as f64 / 1e6);
    // a day of the aggregation switch of benches/restart.rs: 64 000 sessions with 4
    // channels each, an Interim-Update per session and membership every 10 minutes (the
    // default), and 20 zaps per subscriber (a Stop and a Start each)
    let per_day = 64_000.0 * (5.0 * 144.0 + 20.0 * 2.0);
    println!(
        "  a day of 64 000 subscribers holding 4 channels, interim_interval 10 min, 20 zaps each: {:.1} M records, {:.1} GB \
         unpurged; purged hourly, the file stays near {:.1} GB",
        per_day / 1e6,
        per_day * per_record / 1e9,
        per_day / 24.0 * per_record / 1e9
    );
}

fn delivery(records: u64) {
    let mut tb = Testbed::new("acb", 1);
    tb.radius_sql(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "", "");
    let window = 64;
    let t = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "\n[accounting]\ninterim_interval = \"0s\"\nwindow = {window}\n\
             [[accounting.server]]\naddress = \"127.0.0.1:1813\"\nsecret_file = \"secret\"\n"
        );
    std::fs::write(&cfg, t).unwrap();
    // the backlog: journaled while no server was configured to take it
    {
        let store = Store::open(&tb.dir.join("mcgate.redb")).unwrap();
        let batch = Batch { records: (0..records).map(record).collect(), deliver: true, ..Default::default() };
        store.commit(&batch).unwrap();
    }
    // FreeRADIUS opens its SQL connections as load comes; a cold burst finds too few
    // and goes unanswered. Both clients meet a warm server.
    let warm = tb.dir.join("warm.txt");
    std::fs::write(
        &warm,
        (0..500)
            .map(|i| format!("Acct-Status-Type = Interim-Update\nAcct-Session-Id = \"W{i}\"\nUser-Name = \"w\"\n\n"))
            .collect::<String>(),
    )
    .unwrap();
    run(Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "radclient", "-q", "-p", "64", "-f"])
        .arg(&warm)
        .args(["127.0.0.1:1813", "acct", "testing123"]));
    let t0 = Instant::now();
    tb.start_mcgate();
    let backlog = |tb: &Testbed| tb.status().and_then(|s| s["accounting"]["backlog"].as_u64());
    assert!(
        wait_until(Duration::from_secs(300), || backlog(&tb) == Some(0)),
        "not delivered: {:?}\n{}",
        tb.status(),
        tb.log()
    );
    let mcgate_s = t0.elapsed().as_secs_f64();
    let retransmissions = tb.status().unwrap()["accounting"]["delivery"]["radius"]["retransmissions"].as_u64().unwrap();
    let rows = |tb: &Testbed| tb.psql("SELECT count(*) FROM radacct WHERE acctsessionid LIKE 'BENCH-%'")[0][0].clone();
    let mcgate_rows = rows(&tb);
    tb.stop_mcgate();

    // radclient: the same requests, numbered apart, as many in flight
    let mut file = String::new();
    for i in 0..records {
        let r = record(i);
        file += &format!(
            "Acct-Status-Type = Start\nAcct-Session-Id = \"RC-{i:X}\"\nUser-Name = \"alice\"\n\
             NAS-Identifier = \"{}-sw\"\nCalling-Station-Id = \"02-00-00-00-00-11\"\nNAS-Port = 1\n\
             NAS-Port-Id = \"p1\"\nNAS-Port-Type = Ethernet\nAcct-Multi-Session-Id = \"5F00AA0100000001\"\n\
             Event-Timestamp = {}\n\n",
            tb.prefix, r.time
        );
    }
    let path = tb.dir.join("radclient.txt");
    std::fs::write(&path, file).unwrap();
    let t0 = Instant::now();
    run(Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "radclient", "-q", "-p", &window.to_string(), "-f"])
        .arg(&path)
        .args(["127.0.0.1:1813", "acct", "testing123"]));
    let radclient_s = t0.elapsed().as_secs_f64();
    let radclient_rows = tb.psql("SELECT count(*) FROM radacct WHERE acctsessionid LIKE 'RC-%'")[0][0].clone();

    println!("\ndelivery to FreeRADIUS 3.2.1 + PostgreSQL 15 (radacct), {records} Starts, {window} in flight:");
    println!("  {:<10} {:>10} {:>12} {:>14}", "", "seconds", "records/s", "radacct rows");
    println!("  {:<10} {mcgate_s:>10.2} {:>12.0} {mcgate_rows:>14}", "mcgate", records as f64 / mcgate_s);
    println!("  {:<10} {radclient_s:>10.2} {:>12.0} {radclient_rows:>14}", "radclient", records as f64 / radclient_s);
    println!("  (mcgate's time includes its start-up; {retransmissions} retransmissions)");
}

fn main() {
    let records: u64 = std::env::var("RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000).min(50_000);
    journal();
    growth();
    delivery(records);
}
