//! mcgate vs hostapd (driver=wired) as 802.1X authenticator, side by side in one run,
//! on the same namespace topology and the same FreeRADIUS. Prints; asserts nothing.
//!
//!     sudo cargo bench --bench auth            (about 5 minutes)
//!     BENCH_RUNS=5 sudo cargo bench --bench auth   (a quick look)
//!     PORTS=1000 HOSTAPD=no sudo cargo bench --bench auth
//!                 (ports configured and up, 100 by default; mcgate alone)
//!
//! - start → authorized: from starting wpa_supplicant on a host whose link is down (the
//!   supplicant brings it up, as plugging in a cable does) to the authenticator's
//!   "authorized" (mcgate: static FDB entry installed; hostapd: AP-STA-CONNECTED).
//!   Each login uses a fresh MAC, so neither authenticator has state for it. Again with
//!   the link up 1–2 s before the supplicant starts (a service restart, a resume).
//! - EAP exchange: EAP-STARTED → EAP-SUCCESS in the supplicant's own log.
//! - CPU per login: the authenticator's CPU time (schedstat) over those logins, with 1 and
//!   with `PORTS` ports configured; and how often its threads were put on a CPU per PEAP
//!   login (schedstat: each wake-up and each return after a preemption), which is what
//!   most of that CPU pays for; beside it, this machine's floor: the CPU a thread spends
//!   per wake-up when all it does is answer a datagram (`common::wake_floor`), what a
//!   durable commit costs at the least (`commit_floor`), and from them the least a lone
//!   PEAP login can cost an authenticator that keeps mcgate's durability rule.
//! - 100 hosts logging in at once (fresh MACs, the supplicants started together): the
//!   authenticator's CPU per login from the first start to the last success.
//! - burst: 100 authenticated supplicants told to re-authenticate at once; time to the
//!   last EAP-SUCCESS in the supplicants' logs.
//! - re-login right after logoff: `wpa_cli logoff; wpa_cli logon` → authorized again.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, rfc3339, wait_until, Testbed};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hosts logging in at once in the burst rows (at most `PORTS`).
const BURST: usize = 100;

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Mcgate,
    Hostapd,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Time of the first line of the authenticator's log at or after `since` that says
/// `mac` was authorized.
fn authorized_at(tb: &Testbed, who: Auth, mac: &str, since: f64) -> Option<f64> {
    match who {
        Auth::Mcgate => tb.log().lines().filter(|l| l.contains("port open") && l.contains(mac)).find_map(|l| {
            let t = rfc3339(l.split_whitespace().next()?)?;
            (t >= since).then_some(t)
        }),
        Auth::Hostapd => {
            let log = std::fs::read_to_string(tb.dir.join("hostapd/hostapd.log")).unwrap_or_default();
            log.lines()
                .filter(|l| l.contains("AP-STA-CONNECTED") && l.contains(mac))
                .find_map(|l| l.split(':').next()?.parse::<f64>().ok().filter(|t| *t >= since))
        }
    }
}

/// Supplicant log events (`EAP-STARTED`, `EAP-SUCCESS`) at or after `since`.
fn wpa_events(tb: &Testbed, host: usize, what: &str, since: f64) -> Vec<f64> {
    let log = std::fs::read_to_string(tb.dir.join(format!("h{host}/wpa.log"))).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("CTRL-EVENT-{what} ")))
        .filter_map(|l| l.split(':').next()?.parse::<f64>().ok())
        .filter(|t| *t >= since)
        .collect()
}

fn cpu_ns(pid: u32) -> u64 {
    schedstat(pid, 0)
}

/// How often the process's threads were put on a CPU (each wake-up of a sleeping thread,
/// and each return after a preemption).
fn scheduled(pid: u32) -> u64 {
    schedstat(pid, 2)
}

/// Field `i` of /proc/PID/task/*/schedstat (0: time on a CPU in ns; 2: times put on one),
/// summed over the threads.
fn schedstat(pid: u32, i: usize) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(i)?.parse::<u64>().ok())
        .sum()
}

/// What a durable commit costs a thread on this machine at the least: `rounds` appends
/// of 256 octets to a file in `dir` (the journal's file system), each followed by
/// `fdatasync`, `gap` apart; µs of the thread's CPU per commit, the commit alone.
/// (mcgate's journal is a redb file, which writes more per commit: this is any durable
/// journal's floor, not redb's.)
fn commit_floor(dir: &std::path::Path, rounds: usize, gap: Duration) -> f64 {
    use std::io::Write as _;
    let path = dir.join("commit-floor");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let thread_cpu_ns = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `t` is a valid timespec for the call to write.
        assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) }, 0);
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    };
    let record = [b'x'; 256];
    let mut spent = 0;
    for _ in 0..rounds {
        std::thread::sleep(gap);
        let t0 = thread_cpu_ns();
        f.write_all(&record).unwrap();
        f.sync_data().unwrap();
        spent += thread_cpu_ns() - t0;
    }
    drop(f);
    let _ = std::fs::remove_file(path);
    spent as f64 / 1e3 / rounds as f64
}

/// RADIUS requests mcgate has sent (its status), to count a login's round trips.
fn radius_requests(tb: &Testbed) -> u64 {
    tb.status().and_then(|s| s["radius"]["requests"].as_u64()).unwrap_or(0)
}

/// The fresh MAC of the `serial`th lone login (none of the testbed's own).
fn login_mac(serial: usize) -> String {
    format!("02:00:00:01:{:02x}:{:02x}", serial / 256, serial % 256)
}

/// Host `h`'s MAC in the `k`th round of logins at once.
fn burst_mac(k: usize, h: usize) -> String {
    format!("02:00:00:{:02x}:00:{h:02x}", 3 + k)
}

struct Login {
    total_ms: f64,
    eap_ms: f64,
}

/// One login on `host` with a fresh MAC (`serial` makes it unique). `link_up`: the
/// supplicant starts on a link that has been up for 1 to 2 s (a service restart, a
/// resume, a second host) instead of bringing it up itself.
fn login(
    tb: &Testbed,
    who: Auth,
    host: usize,
    serial: usize,
    creds: (&str, &str, &str),
    link_up: bool,
) -> Option<Login> {
    let (user, pass, method) = creds;
    tb.stop_supplicant(host);
    let mac = login_mac(serial);
    tb.in_host(host, &["ip", "link", "set", "eth0", "down"]);
    tb.in_host(host, &["ip", "link", "set", "eth0", "address", &mac]);
    // let the authenticator see the link go down before it comes back
    std::thread::sleep(Duration::from_millis(50));
    if link_up {
        tb.in_host(host, &["ip", "link", "set", "eth0", "up"]);
        // a start at no particular moment of the authenticator's schedule
        std::thread::sleep(Duration::from_millis(1000 + (serial as u64 * 137) % 1000));
    }
    let t0 = now();
    tb.supplicant(host, user, pass, method);
    let mut at = None;
    wait_until(Duration::from_secs(15), || {
        at = authorized_at(tb, who, &mac, t0);
        at.is_some()
    });
    let at = at?;
    let started = *wpa_events(tb, host, "EAP-STARTED", t0).first()?;
    let success = *wpa_events(tb, host, "EAP-SUCCESS", t0).first()?;
    tb.stop_supplicant(host);
    Some(Login { total_ms: (at - t0) * 1e3, eap_ms: (success - started) * 1e3 })
}

struct Row {
    what: String,
    mcgate: String,
    hostapd: String,
}

fn start(tb: &mut Testbed, who: Auth, ports: usize) -> u32 {
    match who {
        Auth::Mcgate => {
            let names: Vec<String> = (1..=ports).map(|i| format!("p{i}")).collect();
            let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "dot1x")).collect();
            // tx_period as in the example config; quiet logs (info) as in production
            let cfg = tb.config(&list, &["127.0.0.1:1812"], "", "");
            // AUTH_LOG=debug keeps mcgate's debug lines (to see where a slow login waited)
            let level = std::env::var("AUTH_LOG").unwrap_or_else(|_| "info".into());
            let text = std::fs::read_to_string(&cfg)
                .unwrap()
                .replace("log_level = \"debug\"", &format!("log_level = \"{level}\""));
            std::fs::write(&cfg, text).unwrap();
            // a start with many ports takes longer than the tests' 10 s allow (measured)
            tb.start_mcgate_within(Duration::from_secs(120));
            tb.daemon_pid().unwrap()
        }
        Auth::Hostapd => tb.start_hostapd(ports),
    }
}

/// Stops the authenticator, then (mcgate) undoes its set-up; ms each took.
fn stop(tb: &mut Testbed, who: Auth) -> (f64, f64) {
    let t0 = std::time::Instant::now();
    match who {
        Auth::Mcgate => {
            tb.stop_mcgate();
            let stopped = t0.elapsed().as_secs_f64() * 1e3;
            let cfg = tb.dir.join("mcgate.toml");
            common::run(
                Command::new("ip").args(["netns", "exec", &tb.ns("sw"), common::MCGATE, "teardown", "-c"]).arg(cfg),
            );
            (stopped, t0.elapsed().as_secs_f64() * 1e3 - stopped)
        }
        Auth::Hostapd => {
            tb.stop_hostapd();
            (t0.elapsed().as_secs_f64() * 1e3, 0.0)
        }
    }
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    // a host namespace on every port, so that every port has link
    let ports: usize = std::env::var("PORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100).clamp(2, 1000);
    let burst = ports.min(BURST);
    eprintln!("building a topology with {ports} hosts and FreeRADIUS...");
    let mut tb = Testbed::new("bn", ports);
    tb.radius(1812);
    let mut results: Vec<[String; 2]> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    let mut serial = 0;
    let mut mcgate_runs1 = 0.0;
    // RADIUS round trips per PEAP login (mcgate's count)
    let mut round_trips = 0.0;
    // HOSTAPD=no: mcgate alone (hostapd had not finished starting 1 000 ports after 13 min)
    let with_hostapd = std::env::var("HOSTAPD").map_or(true, |v| v != "no");
    for (col, who) in [Auth::Mcgate, Auth::Hostapd].into_iter().enumerate() {
        if who == Auth::Hostapd && !with_hostapd {
            results.iter_mut().for_each(|r| r[1] = "not run".into());
            continue;
        }
        let mut out: Vec<(String, String)> = Vec::new();
        // CPU per PEAP login, 1 port configured
        let pid = start(&mut tb, who, 1);
        let r0 = if who == Auth::Mcgate { radius_requests(&tb) } else { 0 };
        let (c0, s0) = (cpu_ns(pid), scheduled(pid));
        let mut ok = 0;
        for _ in 0..runs {
            serial += 1;
            ok += login(&tb, who, 1, serial, ("bob", "bobpass", "peap"), false).is_some() as usize;
        }
        let cpu1 = (cpu_ns(pid) - c0) as f64 / 1e6 / ok.max(1) as f64;
        let runs1 = (scheduled(pid) - s0) as f64 / ok.max(1) as f64;
        if who == Auth::Mcgate {
            mcgate_runs1 = runs1;
            round_trips = radius_requests(&tb).saturating_sub(r0) as f64 / ok.max(1) as f64;
        }
        stop(&mut tb, who);

        let t0 = std::time::Instant::now();
        let pid = start(&mut tb, who, ports);
        let start_ms = t0.elapsed().as_secs_f64() * 1e3;
        // what the authenticator spends with nobody logging in (mcgate: asking the ports
        // with link and no host, all but one, every idle_period), per second
        std::thread::sleep(Duration::from_secs(2));
        let (c0, t0) = (cpu_ns(pid), now());
        std::thread::sleep(Duration::from_secs(5));
        let idle_ms_per_s = (cpu_ns(pid) - c0) as f64 / 1e6 / (now() - t0);
        out.push((
            format!("CPU with {ports} ports up and nobody logging in (ms per second)"),
            format!("{idle_ms_per_s:.2}"),
        ));
        for (method, user, pass) in [("md5", "alice", "alicepass"), ("peap", "bob", "bobpass")] {
            let (c0, t0, s0) = (cpu_ns(pid), now(), scheduled(pid));
            let mut total = Vec::new();
            let mut eap = Vec::new();
            for _ in 0..runs {
                serial += 1;
                if let Some(l) = login(&tb, who, 1, serial, (user, pass, method), false) {
                    total.push(l.total_ms);
                    eap.push(l.eap_ms);
                }
            }
            let spent = (cpu_ns(pid) - c0) as f64 / 1e6;
            let cpu = spent / total.len().max(1) as f64;
            let runs_per_login = (scheduled(pid) - s0) as f64 / total.len().max(1) as f64;
            // the same without what the idle ports cost meanwhile
            let own = (spent - idle_ms_per_s * (now() - t0)).max(0.0) / total.len().max(1) as f64;
            let n = total.len();
            out.push((
                format!("start → authorized, {method} (median / p95, ms; {n}/{runs} ok)"),
                format!("{:.0} / {:.0}", pct(&mut total, 50.0), pct(&mut total, 95.0)),
            ));
            out.push((
                format!("EAP exchange alone, {method} (median / p95, ms)"),
                format!("{:.1} / {:.1}", pct(&mut eap, 50.0), pct(&mut eap, 95.0)),
            ));
            if method == "peap" {
                out.push(("CPU per PEAP login, 1 port configured (ms)".into(), format!("{cpu1:.2}")));
                out.push(("times put on a CPU per PEAP login, 1 port configured".into(), format!("{runs1:.1}")));
                out.push((
                    "CPU per time put on a CPU, PEAP, 1 port configured (µs)".into(),
                    format!("{:.0}", cpu1 * 1e3 / runs1.max(1.0)),
                ));
                out.push((
                    format!("CPU per PEAP login, {ports} ports configured (ms; idle cost excluded)"),
                    format!("{cpu:.2} ({own:.2})"),
                ));
                out.push((
                    format!("times put on a CPU per PEAP login, {ports} ports configured (idle included)"),
                    format!("{runs_per_login:.1}"),
                ));
            } else {
                out.push((
                    format!("CPU per MD5 login, {ports} ports configured (ms; idle cost excluded)"),
                    format!("{cpu:.2} ({own:.2})"),
                ));
            }
        }

        // a supplicant that starts on a link that is already up
        for (method, user, pass) in [("md5", "alice", "alicepass"), ("peap", "bob", "bobpass")] {
            let mut total = Vec::new();
            for _ in 0..runs {
                serial += 1;
                if let Some(l) = login(&tb, who, 1, serial, (user, pass, method), true) {
                    total.push(l.total_ms);
                }
            }
            let n = total.len();
            out.push((
                format!("start → authorized, link already up, {method} (median / p95, ms; {n}/{runs} ok)"),
                format!("{:.0} / {:.0}", pct(&mut total, 50.0), pct(&mut total, 95.0)),
            ));
        }

        // re-login right after logoff
        let mut relogin = Vec::new();
        for _ in 0..2 {
            serial += 1;
            if login(&tb, who, 2, serial, ("alice", "alicepass", "md5"), false).is_none() {
                continue;
            }
            tb.supplicant(2, "alice", "alicepass", "md5");
            let mac = login_mac(serial);
            wait_until(Duration::from_secs(10), || authorized_at(&tb, who, &mac, now() - 60.0).is_some());
            tb.wpa_cli(2, &["logoff"]);
            std::thread::sleep(Duration::from_millis(200));
            let t0 = now();
            tb.wpa_cli(2, &["logon"]);
            let mut at = None;
            let done = wait_until(Duration::from_secs(45), || {
                at = authorized_at(&tb, who, &mac, t0);
                at.is_some()
            });
            relogin.push(if done { format!("{:.0}", (at.unwrap() - t0) * 1e3) } else { "> 45000".into() });
            tb.stop_supplicant(2);
        }
        out.push(("re-login right after logoff (ms, each run)".into(), relogin.join(", ")));

        // bursts: all hosts authenticated, then all re-authenticate at once
        for (k, (method, user, pass)) in
            [("md5", "alice", "alicepass"), ("peap", "bob", "bobpass")].into_iter().enumerate()
        {
            // first logins of all hosts at once (fresh MACs; a switch's reboot, a power cut
            // in a building): the supplicants started together, the CPU counted from the
            // first start to the last success, the ports' idle asks included
            for h in 1..=burst {
                tb.stop_supplicant(h);
                tb.in_host(h, &["ip", "link", "set", "eth0", "address", &burst_mac(k, h)]);
            }
            let (t0, c0) = (now(), cpu_ns(pid));
            let starting: Vec<_> = (1..=burst)
                .map(|h| {
                    Command::new(common::TB)
                        .args(["supplicant", &tb.prefix, &h.to_string(), user, pass, method, ""])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for mut c in starting {
                let _ = c.wait();
            }
            let all = wait_until(Duration::from_secs(60), || {
                (1..=burst).all(|h| !wpa_events(&tb, h, "EAP-SUCCESS", t0).is_empty())
            });
            // each host's first success (none: infinity), read once
            let firsts: Vec<(usize, f64)> = (1..=burst)
                .map(|h| (h, wpa_events(&tb, h, "EAP-SUCCESS", t0).first().copied().unwrap_or(f64::INFINITY)))
                .collect();
            let last = firsts.iter().map(|f| f.1).filter(|t| t.is_finite()).fold(t0, f64::max);
            // a login far behind the others: what its supplicant and mcgate said about it
            let slowest = firsts.iter().copied().fold((0, t0), |a, b| if b.1 > a.1 { b } else { a });
            if !all || slowest.1 - t0 > 10.0 {
                let (h, at) = slowest;
                let mac = burst_mac(k, h);
                let wpa = std::fs::read_to_string(tb.dir.join(format!("h{h}/wpa.log"))).unwrap_or_default();
                let log = tb.log();
                let mine: Vec<String> =
                    log.lines().filter(|l| l.contains(&mac)).map(|l| l.chars().take(300).collect()).collect();
                eprintln!(
                    "slow {method} login: h{h} ({mac}) after {:.1} s\n--- its wpa_supplicant log (last 60 lines) ---\n{}\n--- mcgate's lines of its MAC ---\n{}",
                    at - t0,
                    wpa.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
                    mine.join("\n")
                );
            }
            // what follows the last success (the port opened, the session's Start) included
            std::thread::sleep(Duration::from_millis(300));
            let spent = (cpu_ns(pid) - c0) as f64 / 1e6;
            out.push((
                format!("CPU per {method} login, {burst} hosts starting at once (ms; first start → last success)"),
                if all { format!("{:.2} ({:.1} s)", spent / burst as f64, last - t0) } else { "failed".into() },
            ));
            let mut times = Vec::new();
            if all {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(500));
                    let t0 = now();
                    let children: Vec<_> = (1..=burst)
                        .map(|h| {
                            Command::new("ip")
                                .args(["netns", "exec", &tb.ns(&format!("h{h}")), "wpa_cli", "-p"])
                                .arg(tb.dir.join(format!("h{h}/ctrl")))
                                .args(["-i", "eth0", "reauthenticate"])
                                .stdout(std::process::Stdio::null())
                                .spawn()
                                .unwrap()
                        })
                        .collect();
                    for mut c in children {
                        let _ = c.wait();
                    }
                    let done = wait_until(Duration::from_secs(60), || {
                        (1..=burst).all(|h| !wpa_events(&tb, h, "EAP-SUCCESS", t0).is_empty())
                    });
                    if done {
                        let last = (1..=burst).map(|h| wpa_events(&tb, h, "EAP-SUCCESS", t0)[0]).fold(0.0, f64::max);
                        times.push((last - t0) * 1e3);
                    }
                }
            }
            let n = times.len();
            out.push((
                format!("burst: {burst} re-authenticate at once, {method} (median ms of {n}/3)"),
                if n > 0 { format!("{:.0}", pct(&mut times, 50.0)) } else { "failed".into() },
            ));
        }
        for h in 1..=burst {
            tb.stop_supplicant(h);
        }
        let (stop_ms, teardown_ms) = stop(&mut tb, who);
        out.push((
            format!("start with {ports} ports (ms; mcgate: until its control socket answers, hostapd: -B returns)"),
            format!("{start_ms:.0}"),
        ));
        out.push((
            format!("stop with {ports} ports (ms; SIGTERM → exited), then mcgate teardown (ms)"),
            format!("{stop_ms:.0}, {teardown_ms:.0}"),
        ));
        for (i, (label, value)) in out.into_iter().enumerate() {
            if col == 0 {
                labels.push(label);
                results.push([value, String::new()]);
            } else {
                results[i][1] = value;
            }
        }
    }
    let rows: Vec<Row> =
        labels.into_iter().zip(results).map(|(what, [m, h])| Row { what, mcgate: m, hostapd: h }).collect();
    println!("\n| {ports} ports with a host each, FreeRADIUS 3.2.1 on the switch's loopback | mcgate | hostapd |");
    println!("| --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.mcgate, r.hostapd);
    }
    // the least a daemon that sleeps between its messages pays for them on this machine,
    // at about the spacing of a login's messages
    let floor = common::wake_floor(2000, Duration::from_millis(1));
    println!(
        "\nthis machine's floor: a thread that does nothing but answer one datagram per wake-up \
         (UDP on loopback, 2 000 rounds 1 ms apart) spends {:.1} µs of CPU on each; at mcgate's \
         {:.1} times put on a CPU per PEAP login (1 port) that is {:.2} ms a login",
        floor.cpu_us,
        mcgate_runs1,
        floor.cpu_us * mcgate_runs1 / 1e3
    );
    // The least a lone PEAP login costs any authenticator that keeps mcgate's rule (the
    // session's Start and its Stop each durable before anything else is done with them,
    // one commit each when nothing else comes with them): one wake-up per EAP response
    // from the host and one per RADIUS reply, and two commits.
    let commit = commit_floor(&tb.dir, 200, Duration::from_millis(10));
    let least = 2.0 * round_trips * floor.cpu_us + 2.0 * commit;
    println!(
        "a durable commit (256 octets appended and fdatasync'd, the journal's file system, 200 \
         commits 10 ms apart) costs the thread {commit:.1} µs of CPU; a PEAP login here is \
         {round_trips:.1} RADIUS round trips, so any authenticator that wakes for each EAP \
         response and each RADIUS reply and makes the session's Start and Stop durable one by \
         one spends at least 2 × {round_trips:.1} × {:.1} + 2 × {commit:.1} µs = {:.2} ms of CPU \
         per lone PEAP login on this machine",
        floor.cpu_us,
        least / 1e3
    );
}
