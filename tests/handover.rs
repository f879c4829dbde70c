//! Hand-over against real peers: a second `mcgate run` takes over from the running one
//! while wpa_supplicant logs in with PEAP against FreeRADIUS (its RADIUS exchange in
//! flight), while a host joins through the kernel, and while accounting goes to
//! FreeRADIUS's PostgreSQL; nothing is asked twice, lost or journaled twice.

mod common;

use common::{wait_until, Testbed};
use std::process::Command;
use std::time::Duration;

/// Groups no package names are asked of RADIUS (FreeRADIUS's mcgate-joins gives alice
/// 239.1.5.0/24).
const POLICY: &str = "[defaults]\nunknown = \"radius\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

/// Three 802.1X ports, FreeRADIUS with accounting into PostgreSQL, the multicast gate;
/// mcgate running.
fn testbed(tag: &str) -> Testbed {
    let mut tb = configured(tag);
    tb.start_mcgate();
    tb
}

/// ... configured, not started.
fn configured(tag: &str) -> Testbed {
    let tb = Testbed::new(tag, 3);
    tb.radius_sql(1812);
    let ports = [("p1", "dot1x"), ("p2", "dot1x"), ("p3", "dot1x")];
    // RADIUS's wait outlasts the frozen server below: the request is in flight, not failed
    let cfg = tb.config(&ports, &["127.0.0.1:1812"], "tx_period = \"1s\"", "timeout = \"3s\"\nretries = 3");
    let t = std::fs::read_to_string(&cfg).unwrap()
        + "\n[accounting]\ninterim_interval = \"0s\"\nretry = \"500ms\"\nmax_retry = \"2s\"\n\
           [[accounting.server]]\naddress = \"127.0.0.1:1813\"\nsecret_file = \"secret\"\n";
    std::fs::write(&cfg, t).unwrap();
    tb.multicast(POLICY, "");
    tb
}

fn signal(sig: &str, pid: &str) {
    assert!(Command::new("kill").args([sig, pid.trim()]).status().unwrap().success(), "kill {sig} {pid}");
}

/// FreeRADIUS stopped (SIGSTOP) with a request of mcgate's in flight, until dropped.
struct FrozenRadius(String);

impl FrozenRadius {
    /// Stops FreeRADIUS, has `ask` make mcgate ask it something (`what`, for the failure)
    /// and waits until the request is out; `ask`'s result is returned with the guard.
    fn with_request<T>(tb: &Testbed, what: &str, ask: impl FnOnce() -> T) -> (FrozenRadius, T) {
        let pid = std::fs::read_to_string(tb.dir.join("radius-1812/freeradius.pid")).unwrap();
        signal("-STOP", &pid);
        let frozen = FrozenRadius(pid);
        let asked = ask();
        let pending = || tb.status().is_some_and(|s| s["radius_pending"].as_u64().unwrap_or(0) >= 1);
        assert!(wait_until(Duration::from_secs(10), pending), "no {what} in flight:\n{}", tb.log());
        (frozen, asked)
    }
}

impl Drop for FrozenRadius {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

/// EAP conversations wpa_supplicant on host `h` began.
fn eap_started(tb: &Testbed, h: usize) -> usize {
    let log = std::fs::read_to_string(tb.dir.join(format!("h{h}/wpa.log"))).unwrap_or_default();
    log.matches("CTRL-EVENT-EAP-STARTED").count()
}

/// `recv`'s join went out while no process read (before `resumed`, unix seconds) and its
/// first packet came within a second after (a lost report is repeated only after 10 s):
/// how long after (ms).
fn first_packet_after(tb: &Testbed, recv: std::process::Child, resumed: f64) -> f64 {
    let out = common::result(recv);
    let joined = out["joined_unix"].as_f64().unwrap();
    let first = joined + out["first_ms"].as_f64().unwrap_or(f64::INFINITY) / 1000.0;
    assert!(joined < resumed, "the join went out after the process resumed: {out}");
    let after = first - resumed;
    assert!(after < 1.0, "first packet {after:.3} s after the process resumed: {out}\n{}", tb.log());
    after * 1000.0
}

/// alice logged in with PEAP on h1 and MD5 on h2, two streams running, h2 watching the
/// first: the two sessions' ids and the processes to stop at the end.
fn logged_in_and_watching(tb: &Testbed) -> (String, String, Vec<std::process::Child>) {
    tb.supplicant(1, "alice", "alicepass", "peap");
    tb.supplicant(2, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(20), || tb.sessions().len() == 2), "{}", tb.log());
    let (s1, s2) = (session_id(tb, "p1"), session_id(tb, "p2"));
    let children = vec![
        tb.stream("239.1.1.1", 60),
        tb.stream("239.1.1.2", 60),
        tb.mcast_py("h2", &["recv", "239.1.1.1", "--seconds", "50"]),
    ];
    assert!(wait_until(Duration::from_secs(5), || tb.memberships().len() == 1), "{}", tb.log());
    (s1, s2, children)
}

/// The last "taken over" line of mcgate's log: what the process that took over got.
fn last_take_over(tb: &Testbed) -> String {
    tb.log().lines().rev().find(|l| l.contains("taken over")).unwrap_or_default().to_string()
}

fn no_capture_drops(tb: &Testbed) {
    let status = tb.status().unwrap();
    assert_eq!(status["io"]["capture_drops"], 0, "{status}");
}

/// Stops the streams and receivers, and waits until their memberships have ended (a
/// leave ends one after the last-member wait, 2 s): their Stops are journaled then.
fn stop_all(tb: &Testbed, children: Vec<std::process::Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        wait_until(Duration::from_secs(15), || tb.status().is_some() && tb.memberships().is_empty()),
        "{:?}\n{}",
        tb.memberships(),
        tb.log()
    );
}

fn session_id(tb: &Testbed, port: &str) -> String {
    tb.session_of(port).map(|s| s["session_id"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

#[test]
fn a_new_process_takes_over_logins_joins_and_accounting_without_losing_any() {
    let mut tb = testbed("ho");
    let (s1, s2, children) = logged_in_and_watching(&tb);

    // 1. idle: the old process exits cleanly, the sessions and the membership go on
    let exit = tb.hand_over_mcgate();
    assert!(exit.success(), "the old process: {exit}\n{}", tb.log());
    assert!(tb.log().contains("handed over; exiting"), "{}", tb.log());
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1.clone(), s2.clone()), "the same sessions");
    assert_eq!(tb.memberships().len(), 1, "{}", tb.log());

    // 2. a PEAP login whose Access-Request is in flight: FreeRADIUS frozen, the request
    // out, the hand-over, FreeRADIUS resumed: it answers on the socket the new process
    // has now, which goes on with the conversation — no second EAP conversation
    let (radius, ()) =
        FrozenRadius::with_request(&tb, "Access-Request", || tb.supplicant(3, "alice", "alicepass", "peap"));
    let exit = tb.hand_over_mcgate();
    drop(radius);
    assert!(exit.success(), "the old process: {exit}\n{}", tb.log());
    assert!(wait_until(Duration::from_secs(20), || tb.session_of("p3").is_some()), "{}", tb.log());
    assert_eq!(eap_started(&tb, 3), 1, "h3 began one EAP conversation:\n{}", tb.log());
    let took = last_take_over(&tb);
    assert!(took.contains("authenticating=1") && took.contains("radius_in_flight=1"), "{took}");
    eprintln!("hand-over under a PEAP login: {took}");

    // 3. a join while the old process stands still: the report waits in the capture
    // ring (the host repeats it only after 10 s here), the new process (or the old one
    // before it stops) decides it; the first packet comes within a second
    tb.in_host(2, &["sysctl", "-qw", "net.ipv4.conf.eth0.igmpv3_unsolicited_report_interval=10000"]);
    let mut second = None;
    let exit = tb.hand_over_mcgate_with(|tb, old| {
        signal("-STOP", &old.to_string());
        let child = tb.mcast_py("h2", &["recv", "239.1.1.2", "--seconds", "3"]);
        // the join goes out (Python takes a few hundred ms to start) while it stands still
        std::thread::sleep(Duration::from_millis(1000));
        second = Some((common::unix_now(), child));
        signal("-CONT", &old.to_string());
    });
    assert!(exit.success(), "the old process: {exit}\n{}", tb.log());
    let (resumed, child) = second.unwrap();
    let after = first_packet_after(&tb, child, resumed);
    eprintln!("a join sent while the old process stood still: first packet {after:.0} ms after it resumed");
    no_capture_drops(&tb);

    // 4. a join whose per-join RADIUS question is in flight (FreeRADIUS frozen): the new
    // process takes the question and its waiter over, and the answer to the old
    // process's request admits the join; the host does not ask again (not for 10 s)
    let stream = tb.stream("239.1.5.1", 30);
    let (radius, third) = FrozenRadius::with_request(&tb, "per-join question", || {
        tb.mcast_py("h2", &["recv", "239.1.5.1", "--seconds", "3"])
    });
    let exit = tb.hand_over_mcgate();
    let resumed = common::unix_now();
    drop(radius);
    assert!(exit.success(), "the old process: {exit}\n{}", tb.log());
    let took = last_take_over(&tb);
    assert!(took.contains("per_join_questions=1"), "{took}");
    let after = first_packet_after(&tb, third, resumed);
    eprintln!("a join whose RADIUS question was in flight: first packet {after:.0} ms after FreeRADIUS resumed");
    let mut children = children;
    children.push(stream);

    // 5. accounting: every record journaled once reaches radacct once; nothing pending
    stop_all(&tb, children);
    assert!(
        wait_until(Duration::from_secs(15), || tb.status().and_then(|s| s["accounting"]["backlog"].as_u64())
            == Some(0)),
        "{:?}",
        tb.status()
    );
    let (export, _) = tb.mcgate(&["acct", "export", "--format", "jsonl"]);
    let starts: Vec<String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["status"] == "start")
        .map(|r| r["session_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = starts.iter().collect();
    assert_eq!(unique.len(), starts.len(), "a Start journaled twice: {starts:?}");
    // 3 sessions and 3 channels, each Started once
    assert_eq!(starts.len(), 6, "{starts:?}\n{}", tb.log());
    accounting_exactly_once(&tb);
    let rows = tb.psql("SELECT acctsessionid, count(*) FROM radacct GROUP BY acctsessionid");
    assert_eq!(rows.len(), starts.len(), "{rows:?} vs {starts:?}");
    assert!(rows.iter().all(|r| r[1] == "1"), "{rows:?}");
    for s in &starts {
        assert!(rows.iter().any(|r| r[0] == *s), "{s} not in radacct: {rows:?}");
    }
}

/// A process that cannot read the running one's format is refused, and the running one
/// goes on as if nothing happened.
#[test]
fn a_hand_over_the_new_process_cannot_read_is_refused_and_nothing_stops() {
    use std::io::{BufRead as _, Write as _};
    let mut tb = Testbed::new("hr", 1);
    tb.radius(1812);
    tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "", "");
    tb.start_mcgate();
    let mut s = std::os::unix::net::UnixStream::connect(tb.socket()).unwrap();
    s.write_all(b"{\"cmd\":\"hand-over\",\"version\":0,\"oldest\":0}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    assert!(line.contains("\"error\"") && line.contains("format"), "{line}");
    assert!(tb.status().is_some(), "still running:\n{}", tb.log());
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()), "{}", tb.log());
}

/// Every record of the journal delivered, written by FreeRADIUS once.
fn accounting_exactly_once(tb: &Testbed) {
    assert!(
        wait_until(Duration::from_secs(15), || tb.status().and_then(|s| s["accounting"]["backlog"].as_u64())
            == Some(0)),
        "{:?}",
        tb.status()
    );
    let journal = tb.journaled();
    let written = tb.accounting_written(1812);
    for k in &journal {
        assert_eq!(written.get(k), Some(&1), "{k:?} written {:?} times; all: {written:?}", written.get(k));
    }
    assert_eq!(written.len(), journal.len(), "written: {written:?}\njournal: {journal:?}");
}

/// A hot standby holds the active process's sockets and follows the state its store
/// lacks, also across a hand-over; SIGKILL the active and the standby goes on: the PEAP login whose
/// Access-Request was in flight finishes without starting over, a join sent while
/// neither process read (the standby stopped too) is read from the ring it held, and no
/// accounting record is lost or written twice.
#[test]
fn a_standby_takes_over_when_the_active_dies_and_loses_nothing() {
    let mut tb = testbed("sb");
    tb.start_standby();
    let (s1, s2, children) = logged_in_and_watching(&tb);
    // a hand-over meanwhile: the standby follows the new process
    let exit = tb.hand_over_mcgate();
    assert!(exit.success(), "the old process: {exit}\n{}", tb.log());
    let followed = || tb.log().matches("a standby follows").count() == 2;
    assert!(wait_until(Duration::from_secs(10), followed), "the standby did not follow the new process:\n{}", tb.log());

    // a PEAP login with its Access-Request in flight (FreeRADIUS stopped)
    let (radius, ()) =
        FrozenRadius::with_request(&tb, "Access-Request", || tb.supplicant(3, "alice", "alicepass", "peap"));
    // the standby stands still too: a join now waits in the ring it holds
    tb.in_host(2, &["sysctl", "-qw", "net.ipv4.conf.eth0.igmpv3_unsolicited_report_interval=10000"]);
    let standby = tb.standby_pid().unwrap().to_string();
    signal("-STOP", &standby);
    tb.kill_mcgate();
    let second = tb.mcast_py("h2", &["recv", "239.1.1.2", "--seconds", "3"]);
    std::thread::sleep(Duration::from_millis(1000));
    let resumed = common::unix_now();
    signal("-CONT", &standby);
    tb.standby_took_over();
    assert!(wait_until(Duration::from_secs(5), || tb.status().is_some()), "{}", tb.log());
    drop(radius);

    let after = first_packet_after(&tb, second, resumed);
    eprintln!("a join sent while no process read: first packet {after:.0} ms after the standby resumed");

    assert!(wait_until(Duration::from_secs(20), || tb.session_of("p3").is_some()), "{}", tb.log());
    assert_eq!(eap_started(&tb, 3), 1, "h3 began one EAP conversation:\n{}", tb.log());
    let took = last_take_over(&tb);
    assert!(took.contains("authenticating=1") && took.contains("radius_in_flight=1"), "{took}");
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1, s2), "the same sessions, not logged in again");
    assert_eq!(eap_started(&tb, 1), 1, "h1 was not asked again");
    no_capture_drops(&tb);

    stop_all(&tb, children);
    accounting_exactly_once(&tb);
}

/// Under systemd the descriptor store is the way over: `systemctl restart` with a PEAP
/// login's Access-Request in flight finishes that login without a second EAP
/// conversation; a crash (SIGKILL, `Restart=on-failure`) loses no join sent while no
/// process ran; a `systemctl stop` empties the store and the next start is a plain one.
/// The real systemd (Debian's 252) runs the shipped unit, sandbox and all.
#[test]
fn under_systemd_a_restart_and_a_crash_keep_the_sockets_and_the_logins() {
    let mut tb = configured("sd");
    // a watchdog short enough to bite within the test
    tb.start_systemd_mcgate("WatchdogSec=2s");
    assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
    // systemd heard READY=1 (the start returned) and the status line
    let (_, status) = tb.systemctl(&["show", "-p", "StatusText", "--value", "mcgate"]);
    assert!(status.contains("3 ports, 0 sessions"), "{status}");
    let (s1, s2, children) = logged_in_and_watching(&tb);
    let took = |tb: &Testbed| tb.log().matches("systemd's descriptor store passed the sockets").count();
    // a standby beside the unit follows the process systemd starts next
    tb.start_standby();

    // 1. systemctl restart with an Access-Request in flight
    let (radius, ()) =
        FrozenRadius::with_request(&tb, "Access-Request", || tb.supplicant(3, "alice", "alicepass", "peap"));
    let before = tb.main_pid();
    let (restarted, out) = tb.systemctl(&["restart", "mcgate"]);
    drop(radius);
    assert!(restarted, "systemctl restart: {out}\n{}", tb.log());
    assert!(tb.main_pid() != before && tb.main_pid() != 0, "a new main process");
    assert!(tb.log().contains("the state is in systemd's descriptor store"), "{}", tb.log());
    assert_eq!(took(&tb), 1, "{}", tb.log());
    assert!(wait_until(Duration::from_secs(20), || tb.session_of("p3").is_some()), "{}", tb.log());
    assert_eq!(eap_started(&tb, 3), 1, "h3 began one EAP conversation:\n{}", tb.log());
    let last = last_take_over(&tb);
    assert!(last.contains("authenticating=1") && last.contains("radius_in_flight=1"), "{last}");
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1.clone(), s2.clone()), "the same sessions");
    accounting_exactly_once(&tb);
    let followed = || tb.log().matches("a standby follows").count() == 2;
    assert!(wait_until(Duration::from_secs(10), followed), "the standby did not follow the new process:\n{}", tb.log());
    assert!(!tb.log().contains("standby: the active mcgate is gone"), "the standby took over:\n{}", tb.log());

    // 1b. systemctl reload: `mcgate upgrade` starts a new process beside the main one,
    // which hands over and makes it the unit's main process; its watchdog pings go on
    let before = tb.main_pid();
    let (reloaded, out) = tb.systemctl(&["reload", "mcgate"]);
    assert!(reloaded, "systemctl reload: {out}\n{}", tb.log());
    let upgraded = tb.main_pid();
    assert!(upgraded != before && upgraded != 0, "the new process is the main one");
    assert_eq!(tb.log().matches("handed over; exiting").count(), 1, "{}", tb.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tb.main_pid(), upgraded, "still the main process past WatchdogSec:\n{}", tb.log());
    let (_, restarts) = tb.systemctl(&["show", "-p", "NRestarts", "--value", "mcgate"]);
    assert_eq!(restarts.trim(), "0", "no restart");
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1.clone(), s2.clone()), "the same sessions");
    let follows = |n| tb.log().matches("a standby follows").count() == n;
    assert!(wait_until(Duration::from_secs(10), || follows(3)), "the standby did not follow:\n{}", tb.log());
    // the new process is systemd's main process for a stop too: a restart stops it cleanly
    // (systemd SIGKILLed one it had not started itself)
    let left = |tb: &Testbed| tb.log().matches("the state is in systemd's descriptor store").count();
    let before = left(&tb);
    let (restarted, out) = tb.systemctl(&["restart", "mcgate"]);
    assert!(restarted, "{out}");
    assert_eq!(left(&tb), before + 1, "the upgraded process left its state:\n{}", tb.log());
    assert!(!tb.log().contains("did not stop cleanly"), "{}", tb.log());
    assert!(wait_until(Duration::from_secs(10), || follows(4)), "the standby did not follow:\n{}", tb.log());

    // 2. a crash with the standby following: it takes over at once; systemd's restart
    // then finds the store in use and the standby hands over to the unit's new process
    let before = tb.main_pid();
    let (killed, out) = tb.systemctl(&["kill", "-s", "KILL", "mcgate"]);
    assert!(killed, "{out}");
    tb.standby_took_over();
    let handed = || tb.log().contains("a standby took over") && tb.log().matches("handed over; exiting").count() == 2;
    assert!(wait_until(Duration::from_secs(15), handed), "{}", tb.log());
    assert!(wait_until(Duration::from_secs(5), || tb.main_pid() != before && tb.status().is_some()), "{}", tb.log());
    tb.kill_mcgate(); // the standby, exited
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1.clone(), s2.clone()), "the same sessions");

    // 3. a crash without a standby: the join sent before systemd starts the next process (RestartSec=2s)
    // waits in the capture ring the store holds (the host repeats it only after 10 s)
    tb.in_host(2, &["sysctl", "-qw", "net.ipv4.conf.eth0.igmpv3_unsolicited_report_interval=10000"]);
    let before = tb.main_pid();
    let (killed, out) = tb.systemctl(&["kill", "-s", "KILL", "mcgate"]);
    assert!(killed, "{out}");
    let second = tb.mcast_py("h2", &["recv", "239.1.1.2", "--seconds", "5"]);
    assert!(
        wait_until(Duration::from_secs(10), || tb.main_pid() != before && tb.main_pid() != 0 && tb.status().is_some()),
        "not restarted:\n{}",
        tb.log()
    );
    let resumed = common::unix_now();
    let after = first_packet_after(&tb, second, resumed);
    eprintln!("a join sent while no process ran: first packet {after:.0} ms after the restarted one answered");
    assert_eq!(took(&tb), 4, "{}", tb.log());
    assert!(tb.log().contains("did not stop cleanly"), "{}", tb.log());
    let (_, restarts) = tb.systemctl(&["show", "-p", "NRestarts", "--value", "mcgate"]);
    assert_eq!(restarts.trim(), "2", "two restarts by Restart=on-failure");
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1.clone(), s2.clone()), "the same sessions");
    assert_eq!((eap_started(&tb, 1), eap_started(&tb, 2)), (1, 1), "no one logged in again");
    no_capture_drops(&tb);

    // every record written once, across the restart and the crashes (a record in flight
    // at a plain stop goes again after the start: not checked past this point)
    stop_all(&tb, children);
    accounting_exactly_once(&tb);

    // 4. stop, start: the store is empty, a plain start (the kernel's state and the
    // store's sessions carry on as on any restart)
    let (stopped, out) = tb.systemctl(&["stop", "mcgate"]);
    assert!(stopped, "{out}");
    let (started, out) = tb.systemctl(&["start", "mcgate"]);
    assert!(started, "{out}\n{}", tb.log());
    assert!(wait_until(Duration::from_secs(10), || tb.status().is_some()), "{}", tb.log());
    assert_eq!(took(&tb), 4, "a plain start:\n{}", tb.log());
    assert_eq!((session_id(&tb, "p1"), session_id(&tb, "p2")), (s1, s2), "the same sessions");
}
