//! Accounting against real peers: kernel joins from a host namespace, a real stream,
//! wpa_supplicant, and FreeRADIUS writing accounting into PostgreSQL (the radacct schema
//! FreeRADIUS ships). What billing reads is checked in the database and in the export.

mod common;

use common::{result, wait_until, Testbed};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const POLICY: &str = r#"
[defaults]
unknown = "deny"
max_groups = 4

[[package]]
name = "basic"
groups = ["239.1.1.0/24"]

[[package]]
name = "sports"
groups = ["239.2.2.0/24"]

# bob's own package, by his account: only the account the server verified may have it
[[subscriber]]
account = "bob"
packages = ["sports"]
"#;

/// Short RADIUS timers so that an outage is noticed, and retried, within seconds.
const RADIUS: &str = "timeout = \"300ms\"\nretries = 1\ndead_time = \"1s\"";

fn testbed(tag: &str, hosts: usize) -> Testbed {
    testbed_with(tag, hosts, "")
}

/// `accounting`: more lines for the [accounting] section.
fn testbed_with(tag: &str, hosts: usize, accounting: &str) -> Testbed {
    testbed_to(tag, hosts, accounting, "127.0.0.1:1813")
}

/// As `testbed_with`, accounting to `server`.
fn testbed_to(tag: &str, hosts: usize, accounting: &str, server: &str) -> Testbed {
    testbed_full(tag, hosts, accounting, server, "")
}

/// ... with `multicast`: more lines for the [multicast] section.
fn testbed_full(tag: &str, hosts: usize, accounting: &str, server: &str, multicast: &str) -> Testbed {
    let mut tb = Testbed::new(tag, hosts);
    tb.radius_sql(1812);
    let ports: Vec<(String, &str)> = (1..=hosts).map(|i| (format!("p{i}"), "dot1x")).collect();
    let ports: Vec<(&str, &str)> = ports.iter().map(|(p, m)| (p.as_str(), *m)).collect();
    let cfg = tb.config(&ports, &["127.0.0.1:1812"], "tx_period = \"1s\"", RADIUS);
    // one host per port: a leave ends the membership at once
    let t =
        std::fs::read_to_string(&cfg).unwrap().replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nfast_leave = true\n");
    let t = t
        + "\n[accounting]\ninterim_interval = \"0s\"\nretry = \"500ms\"\nmax_retry = \"2s\"\n"
        + accounting
        + &format!("\n[[accounting.server]]\naddress = \"{server}\"\nsecret_file = \"secret\"\n");
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, multicast);
    tb.start_mcgate();
    tb
}

fn login(tb: &Testbed, host: usize, user: &str) -> String {
    tb.supplicant(host, user, &format!("{user}pass"), "md5");
    let port = format!("p{host}");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of(&port).is_some()), "{user}:\n{}", tb.log());
    tb.session_of(&port).unwrap()["session_id"].as_str().unwrap().to_string()
}

fn logoff(tb: &Testbed, host: usize) {
    tb.wpa_cli(host, &["logoff"]);
    let port = format!("p{host}");
    assert!(wait_until(Duration::from_secs(5), || tb.session_of(&port).is_none()), "{}", tb.log());
}

fn backlog(tb: &Testbed) -> Option<u64> {
    tb.status()?["accounting"]["backlog"].as_u64()
}

/// Every journaled record acknowledged by FreeRADIUS.
fn delivered(tb: &Testbed, within: Duration) {
    assert!(wait_until(within, || backlog(tb) == Some(0)), "backlog {:?}:\n{}", tb.status(), tb.log());
}

fn zap(tb: &Testbed, host: usize, group: &str, count: u32) -> Value {
    let z = tb.mcast_py(&format!("h{host}"), &["zap", group, "--count", &count.to_string(), "--gap-ms", "300"]);
    result(z)
}

fn export(tb: &Testbed, args: &[&str]) -> (Vec<Value>, u64) {
    let mut a = vec!["acct", "export"];
    a.extend_from_slice(args);
    let (out, err) = tb.mcgate(&a);
    let records = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cursor = err.trim().strip_prefix("cursor ").unwrap_or_else(|| panic!("no cursor: {err}")).parse().unwrap();
    (records, cursor)
}

/// radacct rows: acctsessionid → (stop time set, terminate cause, acctsessiontime).
fn radacct(tb: &Testbed) -> HashMap<String, Vec<(bool, String, String)>> {
    let mut rows: HashMap<String, Vec<(bool, String, String)>> = HashMap::new();
    for r in tb.psql("SELECT acctsessionid, acctstoptime IS NOT NULL, acctterminatecause, acctsessiontime FROM radacct")
    {
        rows.entry(r[0].clone()).or_default().push((r[1] == "t", r[2].clone(), r[3].clone()));
    }
    rows
}

/// Membership Acct-Session-Ids of the journal, with how many Starts and Stops each has.
fn membership_records(records: &[Value]) -> HashMap<String, (u32, u32)> {
    let mut m: HashMap<String, (u32, u32)> = HashMap::new();
    for r in records.iter().filter(|r| r["kind"] == "membership") {
        let e = m.entry(r["session_id"].as_str().unwrap().to_string()).or_default();
        match r["status"].as_str().unwrap() {
            "start" => e.0 += 1,
            "stop" => e.1 += 1,
            _ => {}
        }
    }
    m
}

#[test]
fn zaps_become_exact_start_stop_pairs_in_radacct_and_the_export_round_trips() {
    let mut tb = testbed("ac", 1);
    let session = login(&tb, 1, "alice");
    let mut stream = tb.stream("239.1.1.1", 30);
    let z = zap(&tb, 1, "239.1.1.1", 5);
    let got = z["first_ms"].as_array().unwrap().iter().filter(|x| !x.is_null()).count();
    assert_eq!(got, 5, "every join got the stream: {z}\n{}", tb.log());
    logoff(&tb, 1);
    delivered(&tb, Duration::from_secs(10));

    let (records, cursor) = export(&tb, &["--format", "jsonl"]);
    let ms = membership_records(&records);
    assert_eq!(ms.len(), 5, "{records:?}");
    assert!(ms.values().all(|c| *c == (1, 1)), "{ms:?}");
    let starts: Vec<&Value> = records.iter().filter(|r| r["status"] == "start").collect();
    for s in starts.iter().filter(|r| r["kind"] == "membership") {
        assert_eq!(s["multi_session_id"], session.as_str());
        assert_eq!(s["user_name"], "alice");
        assert_eq!(s["group"], "239.1.1.1");
        assert_eq!(s["package"], "basic");
    }
    // what each view received, counted by the bridge: every packet of the stream is 140 octets
    let mut octets_by_id = HashMap::new();
    for stop in records.iter().filter(|r| r["kind"] == "membership" && r["status"] == "stop") {
        let counted = |k: &str| stop[k].as_u64().unwrap_or_else(|| panic!("no {k}: {stop}\n{}", tb.log()));
        let (p, o) = (counted("output_packets"), counted("output_octets"));
        assert!(p >= 1, "the host received the stream, the counter says nothing: {stop}");
        assert_eq!(o, p * 140, "{stop}");
        octets_by_id.insert(stop["session_id"].as_str().unwrap().to_string(), o.to_string());
    }
    assert!(records.iter().any(|r| r["kind"] == "nas" && r["status"] == "accounting-on"));
    let stop = records.iter().find(|r| r["kind"] == "session" && r["status"] == "stop").expect("session stop");
    assert_eq!(stop["session_id"], session.as_str());
    assert_eq!(stop["terminate_cause"], "user-request");

    // radacct: one row per membership and one for the session, each closed
    let rows = radacct(&tb);
    for id in ms.keys().chain(std::iter::once(&session)) {
        let r = rows.get(id).unwrap_or_else(|| panic!("{id} not in radacct: {rows:?}"));
        assert_eq!(r.len(), 1, "{id}: {r:?}");
        assert!(r[0].0, "{id} has no stop time: {r:?}");
        assert_eq!(r[0].1, "User-Request", "{id}");
    }
    assert_eq!(rows.len(), ms.len() + 1, "{rows:?}");
    for r in tb.psql("SELECT acctsessionid, acctoutputoctets FROM radacct") {
        if let Some(o) = octets_by_id.get(&r[0]) {
            assert_eq!(&r[1], o, "radacct's octets of {}", r[0]);
        }
    }
    let user = tb.psql("SELECT DISTINCT username, callingstationid, nasportid FROM radacct");
    assert_eq!(user, vec![vec!["alice".to_string(), "02-00-00-00-00-11".into(), "p1".into()]]);

    // export: nothing new after the cursor; CSV has the same records
    assert_eq!(export(&tb, &["--since", &cursor.to_string()]).0.len(), 0);
    let (csv, _) = tb.mcgate(&["acct", "export", "--format", "csv"]);
    assert_eq!(csv.lines().count(), records.len() + 1, "{csv}");
    assert!(csv.starts_with("seq,kind,status,time,session_id,"), "{csv}");
    // purge forgets what was delivered and exported; the server keeps its rows
    let (out, _) = tb.mcgate(&["acct", "purge"]);
    assert_eq!(out.trim(), format!("{} records purged", records.len()));
    assert_eq!(export(&tb, &[]).0.len(), 0);
    assert_eq!(radacct(&tb).len(), ms.len() + 1);

    // new records come after the cursor, and `acct tail` follows them as they are journaled;
    // with the daemon stopped the export reads the database
    let mut tail = std::process::Command::new(common::MCGATE)
        .args(["acct", "tail", "-c"])
        .arg(tb.dir.join("mcgate.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tail_out = tail.stdout.take().unwrap();
    let (line_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(tail_out)).map_while(Result::ok) {
            let _ = line_tx.send(l);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    tb.wpa_cli(1, &["logon"]);
    assert!(wait_until(Duration::from_secs(10), || tb.session_of("p1").is_some()), "{}", tb.log());
    // a two-second view: the bridge counted what the host received (and what was in
    // flight when it left)
    let got = result(tb.mcast_py("h1", &["recv", "239.1.1.1", "--seconds", "2"]))["packets"].as_u64().unwrap();
    delivered(&tb, Duration::from_secs(10));
    let followed: Vec<Value> =
        (0..3).map(|_| serde_json::from_str(&lines.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap()).collect();
    let _ = tail.kill();
    let _ = tail.wait();
    tb.stop_mcgate();
    let (new, next) = export(&tb, &["--since", &cursor.to_string()]);
    let statuses: Vec<&str> = new.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["start", "start", "stop"], "{new:?}");
    assert_eq!(followed, new, "acct tail printed other records than the export");
    let counted = new[2]["output_packets"].as_u64().unwrap();
    assert!(got > 300 && (got..=got + 10).contains(&counted), "host got {got}, the bridge counted {counted}");
    assert!(new.iter().all(|r| r["seq"].as_u64().unwrap() >= cursor));
    assert!(next > cursor);
    let _ = stream.kill();
    let _ = stream.wait();
}

/// The membership Stops journaled after `cursor` as (group, packets counted), once there
/// are `n` (a membership that ended has its Stop committed a moment later), and the
/// export's cursor.
fn stops_after(tb: &Testbed, cursor: u64, n: usize) -> (Vec<(String, u64)>, u64) {
    let stops = |records: &[Value]| -> Vec<(String, u64)> {
        (records.iter())
            .filter(|r| r["kind"] == "membership" && r["status"] == "stop")
            .map(|r| (r["group"].as_str().unwrap().to_string(), r["output_packets"].as_u64().unwrap()))
            .collect()
    };
    let mut got = (vec![], cursor);
    wait_until(Duration::from_secs(5), || {
        let (records, next) = export(tb, &["--since", &cursor.to_string()]);
        got = (stops(&records), next);
        got.0.len() >= n
    });
    got
}

/// What host `host` receives of `group` in `seconds` (a view: join, receive, leave).
fn view(tb: &Testbed, host: usize, group: &str, seconds: u32) -> u64 {
    let r = result(tb.mcast_py(&format!("h{host}"), &["recv", group, "--seconds", &seconds.to_string()]));
    r["packets"].as_u64().unwrap()
}

#[test]
fn streams_beyond_the_usage_counters_room_are_counted_as_such_and_a_bigger_set_keeps_what_it_held() {
    let mut tb = testbed_full("uc", 1, "", "127.0.0.1:1813", "usage_set_size = 1");
    login(&tb, 1, "alice");
    let mut streams = [tb.stream("239.1.1.1", 60), tb.stream("239.1.1.2", 60)];
    let uncounted = |tb: &Testbed| tb.status().and_then(|s| s["io"]["usage_uncounted_packets"].as_u64());
    assert_eq!(uncounted(&tb), Some(0));
    // the first group takes the one pair the set holds; the second finds no room: its
    // packets reach the host and are counted as uncounted
    let first = view(&tb, 1, "239.1.1.1", 2);
    let second = view(&tb, 1, "239.1.1.2", 2);
    assert!(first > 300 && second > 300, "{first} {second}");
    assert!(wait_until(Duration::from_secs(5), || tb.memberships().is_empty()), "{}", tb.log());
    let missed = uncounted(&tb).unwrap();
    assert!((second..=second + 10).contains(&missed), "the host got {second}, {missed} uncounted");
    let (stops, cursor) = stops_after(&tb, 0, 2);
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert!(stops[0].0 == "239.1.1.1" && (first..=first + 10).contains(&stops[0].1), "{first}: {stops:?}");
    assert_eq!(stops[1], ("239.1.1.2".into(), 0), "the known limit: no room, nothing billed");

    // a bigger set after a restart: the pair it held is kept (with its counter), the
    // second group is counted now, and what went uncounted before still shows
    tb.stop_mcgate();
    let cfg = tb.dir.join("mcgate.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("usage_set_size = 1", "usage_set_size = 4");
    std::fs::write(&cfg, text).unwrap();
    tb.start_mcgate();
    let set = common::run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &tb.ns("sw"),
        "nft",
        "list",
        "set",
        "bridge",
        "mcgate_usage",
        "v4",
    ]));
    assert!(set.contains("size 4") && set.contains("\"p1\" . 239.1.1.1"), "{set}");
    let again = view(&tb, 1, "239.1.1.2", 2);
    assert!(wait_until(Duration::from_secs(5), || tb.memberships().is_empty()), "{}", tb.log());
    let (stops, _) = stops_after(&tb, cursor, 1);
    let counted = stops.first().unwrap_or_else(|| panic!("no Stop after {cursor}")).1;
    assert!(again > 300 && (again..=again + 10).contains(&counted), "host got {again}, counted {counted}");
    assert_eq!(uncounted(&tb), Some(missed), "the overflow counter survives the restart");
    for s in &mut streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn peap_bills_the_inner_identity_that_freeradius_verified_not_the_outer_one() {
    let tb = testbed("pp", 1);
    // outer identity "anonymous", inner bob: the testbed's FreeRADIUS returns the inner
    // one as the Access-Accept's User-Name
    tb.supplicant_as(1, "bob", "bobpass", "peap", "anonymous");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()), "{}", tb.log());
    let session = tb.session_of("p1").unwrap();
    assert_eq!(session["account"], "bob", "{session}");
    // bob's own package is his, by the verified name
    let mut stream = tb.stream("239.2.2.1", 20);
    let z = zap(&tb, 1, "239.2.2.1", 1);
    assert!(z["first_ms"][0].is_number(), "bob's package did not admit: {z}\n{}", tb.log());
    logoff(&tb, 1);
    delivered(&tb, Duration::from_secs(10));
    let _ = stream.kill();
    let _ = stream.wait();
    let users = tb.psql("SELECT DISTINCT username FROM radacct");
    assert_eq!(users, vec![vec!["bob".to_string()]], "radacct");
    let (records, _) = export(&tb, &["--format", "jsonl"]);
    assert!(records.iter().filter(|r| r["kind"] != "nas").all(|r| r["user_name"] == "bob"), "{records:?}");
    assert_eq!(membership_records(&records).len(), 1, "{records:?}");
    assert!(!tb.log().contains("Access-Accept without User-Name refused"));
}

#[test]
fn an_accounting_outage_loses_nothing_and_duplicates_nothing() {
    let tb = testbed("ao", 1);
    login(&tb, 1, "alice");
    let mut stream = tb.stream("239.1.1.1", 40);
    zap(&tb, 1, "239.1.1.1", 2);
    delivered(&tb, Duration::from_secs(10));
    // FreeRADIUS down: joins go on (the journal has them), delivery waits
    tb.stop_radius(1812);
    let z = zap(&tb, 1, "239.1.1.1", 4);
    assert!(z["first_ms"].as_array().unwrap().iter().all(|x| !x.is_null()), "{z}");
    assert!(wait_until(Duration::from_secs(5), || backlog(&tb) >= Some(8)), "{:?}", tb.status());
    std::thread::sleep(Duration::from_secs(3));
    let s = tb.status().unwrap();
    assert!(s["accounting"]["delivery"]["sender"]["failed"].as_u64().unwrap() > 0, "{s}");
    // back: everything arrives, none twice
    tb.radius_sql_restart(1812);
    delivered(&tb, Duration::from_secs(15));
    let (records, _) = export(&tb, &[]);
    let ms = membership_records(&records);
    assert_eq!(ms.len(), 6);
    let rows = radacct(&tb);
    for id in ms.keys() {
        let r = rows.get(id).unwrap_or_else(|| panic!("{id} lost: {rows:?}"));
        assert_eq!(r.len(), 1, "{id}: {r:?}");
        assert!(r[0].0, "{id}: {r:?}");
    }
    let dups = tb.psql("SELECT acctsessionid FROM radacct GROUP BY acctsessionid HAVING count(*) > 1");
    assert!(dups.is_empty(), "{dups:?}");
    // what was sent late says how late (FreeRADIUS's detail file keeps every request)
    let detail = std::fs::read_dir(tb.dir.join("radius-1812/radacct/127.0.0.1"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(detail.contains("Acct-Delay-Time = "), "no delayed request:\n{detail}");
    let _ = stream.kill();
    let _ = stream.wait();
}

#[test]
fn sigkill_at_random_moments_of_zapping_loses_no_record() {
    let mut tb = testbed("ak", 2);
    login(&tb, 1, "alice");
    login(&tb, 2, "bob");
    let mut streams = [tb.stream("239.1.1.1", 60), tb.stream("239.1.1.2", 60)];
    let mut zappers = [
        tb.mcast_py("h1", &["zap", "239.1.1.1", "--count", "400", "--gap-ms", "40"]),
        tb.mcast_py("h2", &["zap", "239.1.1.2", "--count", "400", "--gap-ms", "40"]),
    ];
    // half the kills with the accounting server down: records then wait across restarts
    let kills = 10;
    tb.stop_radius(1812);
    for i in 0..kills {
        if i == kills / 2 {
            tb.radius_sql_restart(1812);
        }
        std::thread::sleep(Duration::from_millis(300 + rand::random::<u64>() % 1200));
        tb.kill_mcgate();
        tb.start_mcgate();
    }
    std::thread::sleep(Duration::from_secs(1));
    for z in &mut zappers {
        let _ = z.kill();
        let _ = z.wait();
    }
    // the sessions end: every membership still open ends with them
    logoff(&tb, 1);
    logoff(&tb, 2);
    delivered(&tb, Duration::from_secs(20));
    let (records, _) = export(&tb, &[]);
    let ms = membership_records(&records);
    assert!(ms.len() >= 20, "too few memberships to say anything: {}", ms.len());
    let broken: Vec<_> = ms.iter().filter(|(_, c)| **c != (1, 1)).collect();
    assert!(broken.is_empty(), "memberships without exactly one Start and one Stop: {broken:?}");
    let rows = radacct(&tb);
    let mut lost = vec![];
    for id in ms.keys() {
        match rows.get(id).map(|r| r.as_slice()) {
            Some([(true, _, _)]) => {}
            other => lost.push((id.clone(), other.map(|r| r.to_vec()))),
        }
    }
    let journal_of = |id: &str| records.iter().filter(|r| r["session_id"] == id).cloned().collect::<Vec<_>>();
    let lost: Vec<_> = lost.into_iter().map(|(id, rows)| (journal_of(&id), rows)).collect();
    assert!(lost.is_empty(), "{} of {} memberships not closed once in radacct: {lost:?}", lost.len(), ms.len());
    let log = tb.log();
    assert_eq!(log.matches("mcgate running").count(), kills + 1);
    assert!(log.matches("accounting records from before the start to deliver").count() >= kills / 2);
    let continued: HashSet<&str> = records
        .iter()
        .filter(|r| r["kind"] == "membership" && r["status"] == "interim-update")
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    eprintln!("{} memberships, {} continued across a kill", ms.len(), continued.len());
    for s in &mut streams {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn kernel_state_lost_ends_what_was_open_at_the_time_last_known_alive() {
    let mut tb = testbed("ar", 1);
    let session = login(&tb, 1, "alice");
    tb.in_host(1, &["ip", "addr", "add", "239.1.1.1/32", "dev", "eth0", "autojoin"]);
    assert!(wait_until(Duration::from_secs(5), || !tb.memberships().is_empty()), "{}", tb.log());
    delivered(&tb, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = unix_now();
    tb.kill_mcgate();
    // what a reboot does to the port: out of the bridge and back, locks and entries gone
    tb.in_sw(&["ip", "link", "set", "p1", "nomaster"]);
    tb.in_sw(&["ip", "link", "set", "p1", "master", "br0"]);
    tb.start_mcgate();
    assert!(tb.log().contains("ports were not locked"), "{}", tb.log());
    delivered(&tb, Duration::from_secs(10));

    let (records, _) = export(&tb, &[]);
    let stops: Vec<&Value> = records.iter().filter(|r| r["status"] == "stop").collect();
    assert_eq!(stops.len(), 2, "the membership and the session: {records:?}");
    let start = records.iter().find(|r| r["kind"] == "membership" && r["status"] == "start").unwrap();
    for s in &stops {
        assert_eq!(s["terminate_cause"], "nas-reboot", "{s}");
        let t = s["time"].as_u64().unwrap();
        assert!(t >= start["time"].as_u64().unwrap() && t <= before_kill, "stop at {t}, killed at {before_kill}: {s}");
    }
    let on: Vec<u64> =
        records.iter().filter(|r| r["status"] == "accounting-on").map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(on.len(), 2, "first start and the start after the loss: {records:?}");
    assert!(stops.iter().all(|s| s["seq"].as_u64().unwrap() < on[1]), "Stops go before the Accounting-On");
    let rows = radacct(&tb);
    let membership = start["session_id"].as_str().unwrap().to_string();
    for id in [&session, &membership] {
        assert_eq!(rows[id], vec![(true, "NAS-Reboot".to_string(), rows[id][0].2.clone())], "{id}: {rows:?}");
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A small tmpfs of its own, unmounted on drop (also when the test fails).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(at: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        common::run(
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&at),
        );
        SmallDisk(at)
    }

    /// Fills it to the last byte.
    fn fill(&self) {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_joins_loudly_and_loses_nothing() {
    let mut tb = Testbed::new("af", 1);
    tb.radius_sql(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", RADIUS);
    let disk = SmallDisk::new(tb.dir.join("small"), "4m");
    let t = std::fs::read_to_string(&cfg).unwrap().replace("mcgate.redb", "small/mcgate.redb").replace(
        "mode = \"dot1x\"\n",
        "mode = \"dot1x\"\nfast_leave = true\n",
    ) + "\n[accounting]\ninterim_interval = \"0s\"\n[[accounting.server]]\naddress = \"127.0.0.1:1813\"\nsecret_file = \"secret\"\n";
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, "");
    tb.start_mcgate();
    login(&tb, 1, "alice");
    let mut stream = tb.stream("239.1.1.1", 60);
    assert!(zap(&tb, 1, "239.1.1.1", 2)["first_ms"].as_array().unwrap().iter().all(|x| !x.is_null()));

    let (_, cursor) = export(&tb, &[]);
    disk.fill();
    // joins go on while commits find room; one that cannot be made durable is refused
    // (its stream never flows), and the log says so
    let refused = |tb: &Testbed| tb.status().unwrap()["accounting"]["journal"]["joins_refused_unaccountable"].as_u64();
    // A view is a join whose stream kept flowing (the 200 pps stream for 300 ms: ~60
    // packets). A join admitted into a batch whose commit then fails has its entry
    // in the kernel for that commit's time (docs/architecture.md, "Durability rules"):
    // a packet or two may reach the host before it is taken back, never a stream.
    let packets = |z: &Value| z["packets"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect::<Vec<_>>();
    let (mut zaps, mut views, mut flashes) = (0, 0, 0);
    let mut count = |z: &Value| {
        for p in packets(z) {
            match p {
                0 => {}
                1..=9 => flashes += 1,
                _ => views += 1,
            }
        }
    };
    let held = |tb: &Testbed, n: u32| {
        let z =
            tb.mcast_py("h1", &["zap", "239.1.1.1", "--count", &n.to_string(), "--gap-ms", "300", "--hold-ms", "300"]);
        result(z)
    };
    while refused(&tb) == Some(0) && zaps < 40 {
        count(&held(&tb, 1));
        zaps += 1;
    }
    assert!(refused(&tb) > Some(0), "no join refused after {zaps} zaps on a full disk:\n{}", tb.log());
    assert!(tb.log().contains("JOURNAL COMMIT FAILED"), "{}", tb.log());
    count(&held(&tb, 3));
    assert!(flashes <= tb.log().matches("JOURNAL COMMIT FAILED").count(), "{flashes} joins got a few packets");

    // room again: joins are admitted and accounted
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let z = zap(&tb, 1, "239.1.1.1", 2);
    let watched = z["first_ms"].as_array().unwrap().iter().filter(|x| !x.is_null()).count();
    assert_eq!(watched, 2, "{z}\n{}", tb.log());
    views += 2;
    let (since_fill, _) = export(&tb, &["--since", &cursor.to_string()]);
    let starts = since_fill.iter().filter(|r| r["kind"] == "membership" && r["status"] == "start").count();
    assert!(views <= starts, "{views} views got the stream, {starts} Starts were journaled");
    logoff(&tb, 1);
    delivered(&tb, Duration::from_secs(10));
    let (records, _) = export(&tb, &[]);
    let ms = membership_records(&records);
    assert!(ms.values().all(|c| *c == (1, 1)), "{ms:?}");
    let rows = radacct(&tb);
    for id in ms.keys() {
        assert!(matches!(rows.get(id).map(|r| r.as_slice()), Some([(true, _, _)])), "{id}: {rows:?}");
    }
    let _ = stream.kill();
    let _ = stream.wait();
}

#[test]
fn sessions_fail_closed_like_joins_when_their_start_cannot_be_accounted() {
    // nothing answers accounting: Accounting-On and alice's Start fill a backlog of 2
    let tb = testbed_to("as", 2, "max_backlog = 2", "127.0.0.1:1999");
    login(&tb, 1, "alice");
    assert!(wait_until(Duration::from_secs(5), || backlog(&tb) >= Some(2)), "{:?}", tb.status());
    let refused =
        || tb.status().unwrap()["accounting"]["journal"]["sessions_refused_unaccountable"].as_u64().unwrap_or(0);
    tb.supplicant(2, "bob", "bobpass", "md5");
    assert!(wait_until(Duration::from_secs(15), || refused() >= 1), "{}", tb.log());
    // FreeRADIUS said yes, and still the port stays closed: no Start, no session
    assert!(tb.log().contains("session refused: it cannot be accounted"), "{}", tb.log());
    assert!(tb.session_of("p2").is_none(), "{:?}", tb.sessions());
    assert!(!tb.fdb_static().contains("dev p2"), "{}", tb.fdb_static());
    assert!(!tb.ping(2), "a session without its Start opened the port");
    let (records, _) = export(&tb, &[]);
    assert!(!records.iter().any(|r| r["user_name"] == "bob"), "{records:?}");
    // alice's open session is untouched
    assert!(tb.session_of("p1").is_some() && tb.ping(1));
}

#[test]
fn a_full_backlog_refuses_joins_until_delivered() {
    let tb = testbed_with("ab", 1, "max_backlog = 4");
    login(&tb, 1, "alice");
    let mut stream = tb.stream("239.1.1.1", 40);
    delivered(&tb, Duration::from_secs(10));
    tb.stop_radius(1812);
    // two views (a Start and a Stop each) fill the backlog; the next joins are refused
    let watched = |z: Value| z["first_ms"].as_array().unwrap().iter().map(|x| !x.is_null()).collect::<Vec<_>>();
    assert_eq!(watched(zap(&tb, 1, "239.1.1.1", 4)), [true, true, false, false], "{}", tb.log());
    let s = tb.status().unwrap();
    assert!(s["accounting"]["journal"]["joins_refused_unaccountable"].as_u64() >= Some(2), "{s}");
    assert!(!tb.mdb().contains("port p1 grp 239.1.1.1"), "a refused join left an MDB entry: {}", tb.mdb());
    // delivered: joins are admitted again
    tb.radius_sql_restart(1812);
    delivered(&tb, Duration::from_secs(15));
    assert_eq!(watched(zap(&tb, 1, "239.1.1.1", 1)), [true]);
    let _ = stream.kill();
    let _ = stream.wait();
}
