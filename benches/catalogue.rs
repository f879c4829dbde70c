//! Push → applied on every switch: a catalogue pushed with `mcgate catalogue push` to a
//! three-member etcd cluster (Debian's etcd-server, each member in its own namespace, as in
//! tests/catalogue.rs), followed by 3 real switches (mcgate, each with its subscriber) and
//! WATCHERS simulated switches: mcgate's own catalogue client (`mcgate::catalogue::spawn`)
//! in one process, each with its own connection, watch and lease and writing its status
//! key, each validating every catalogue as a switch does. Beside them, in the same run,
//! etcd's own client (`etcdctl watch`) as the reference, and the push's own time. Prints
//! p50 / p99 / max from the push's start to each switch's catalogue applied, and the CPU
//! the etcd members spent.
//!
//!     sudo cargo bench --bench catalogue        (WATCHERS=1000 PUSHES=5 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pct, rfc3339, run, wait_until, Testbed, MCGATE, TB};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ENDPOINTS: [&str; 3] = ["http://10.77.0.1:2379", "http://10.77.0.2:2379", "http://10.77.0.3:2379"];
const LOCAL: &str = "[defaults]\nunknown = \"deny\"\npackages = [\"basic\"]\n\
                     [[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// A catalogue of `packages` packages (channel line-up number `n`).
fn catalogue(dir: &std::path::Path, n: usize, packages: usize) -> std::path::PathBuf {
    let d = dir.join(format!("v{n}"));
    std::fs::create_dir_all(&d).unwrap();
    let names: Vec<String> = (0..packages).map(|p| format!("\"p{p}\"")).collect();
    let mut t = format!("[defaults]\nunknown = \"deny\"\npackages = [{}]\n", names.join(", "));
    for p in 0..packages {
        // line-up n moves every package's range by one
        t += &format!("[[package]]\nname = \"p{p}\"\ngroups = [\"239.{}.{}.0/24\"]\n", 1 + p / 200, (p + n) % 250);
    }
    std::fs::write(d.join("lineup.toml"), t).unwrap();
    d
}

fn switch(name: &str, cluster: &str, i: usize) -> Testbed {
    let mut tb = Testbed::new(name, 1);
    run(Command::new(TB).args(["mgmt", cluster, &tb.ns("sw"), &format!("10.77.0.{}", 11 + i)]));
    tb.radius(1812);
    let cfg = tb.config(&[("p1", "dot1x")], &["127.0.0.1:1812"], "tx_period = \"1s\"", "");
    let t = std::fs::read_to_string(&cfg).unwrap().replace("log_level = \"debug\"", "log_level = \"info\"");
    std::fs::write(&cfg, t).unwrap();
    let endpoints: Vec<String> = ENDPOINTS.iter().map(|e| format!("\"{e}\"")).collect();
    tb.multicast(LOCAL, &format!("[catalogue]\nendpoints = [{}]\n", endpoints.join(", ")));
    tb.start_mcgate();
    tb.supplicant(1, "alice", "alicepass", "md5");
    assert!(wait_until(Duration::from_secs(15), || tb.session_of("p1").is_some()), "{}", tb.log());
    tb
}

/// (revision, unix time) of each "catalogue applied" line of a switch's log.
fn applied_lines(tb: &Testbed) -> Vec<(i64, f64)> {
    tb.log()
        .lines()
        .filter(|l| l.contains("catalogue applied"))
        .filter_map(|l| {
            let t = rfc3339(l.split_whitespace().next()?)?;
            let r = l.split("revision=").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((r, t))
        })
        .collect()
}

/// CPU seconds (user + system) the processes of namespace `ns` have used.
fn cpu_of(ns: &str) -> f64 {
    let pids = run(Command::new("ip").args(["netns", "pids", ns]));
    let tick = 100.0; // USER_HZ
    pids.split_whitespace()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .sum()
}

fn rss_mb_of(ns: &str) -> f64 {
    let pids = run(Command::new("ip").args(["netns", "pids", ns]));
    pids.split_whitespace().filter_map(|p| p.parse().ok()).map(common::rss_kib).sum::<u64>() as f64 / 1024.0
}

/// When each simulated switch applied each revision: (watcher, revision, unix time).
type Seen = Arc<Mutex<Vec<(usize, i64, f64)>>>;

/// WATCHERS simulated switches in namespace `ns`, on a thread of their own.
fn simulate(
    ns: String,
    watchers: usize,
    seen: Seen,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns(2) on a descriptor held open; it changes only this thread's
        // network namespace, and the runtime below runs on this thread alone.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let cfg: mcgate::catalogue::Config = toml::from_str(&format!(
                "endpoints = [{}]\ntimeout = \"2s\"\n",
                ENDPOINTS.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ")
            ))
            .unwrap();
            for w in 0..watchers {
                let (tx, mut rx) = tokio::sync::mpsc::channel(4);
                let (applied, applied_rx) = tokio::sync::watch::channel(mcgate::catalogue::Applied::default());
                // each starts with another member first, as switches configured in
                // different orders would
                let mut c = cfg.clone();
                c.endpoints.rotate_left(w % 3);
                mcgate::catalogue::spawn(c, format!("sim{w}"), None, tx, applied_rx);
                let seen = seen.clone();
                tokio::spawn(async move {
                    while let Some(u) = rx.recv().await {
                        let Ok(snap) = u.catalogue else { continue };
                        if snap.keys.is_empty() || snap.policy().is_err() {
                            continue;
                        }
                        seen.lock().unwrap().push((w, snap.revision, unix_now()));
                        applied
                            .send_replace(mcgate::catalogue::Applied { revision: snap.revision, ..Default::default() });
                    }
                });
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    })
}

fn main() {
    let watchers: usize = std::env::var("WATCHERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let pushes: usize = std::env::var("PUSHES").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let packages = 50;
    let net = Testbed::new("cbnet", 1);
    let cluster = net.prefix.clone();
    run(Command::new(TB).args(["etcd", &cluster, "3"]));
    // the simulated switches and the reference watcher live in the net testbed's switch namespace
    run(Command::new(TB).args(["mgmt", &cluster, &net.ns("sw"), "10.77.0.100"]));
    let switches: Vec<Testbed> = (0..3).map(|i| switch(&format!("cb{i}"), &cluster, i)).collect();
    let work = net.dir.join("catalogues");
    let config = switches[0].dir.join("mcgate.toml");
    let push = |n: usize| -> (i64, f64, f64) {
        let dir = catalogue(&work, n, packages);
        let t0 = unix_now();
        let out = run(Command::new("ip")
            .args(["netns", "exec", &switches[0].ns("sw"), MCGATE, "catalogue", "push", "-c"])
            .arg(&config)
            .arg(&dir));
        let rev = out.trim().rsplit(' ').next().and_then(|r| r.parse().ok()).expect("a revision");
        (rev, t0, unix_now())
    };

    // etcd's own client, the reference: each response line stamped as it arrives
    let reference: Arc<Mutex<Vec<(i64, f64)>>> = Arc::default();
    let mut etcdctl = Command::new("ip")
        .args(["netns", "exec", &net.ns("sw"), "env", "ETCDCTL_API=3", "etcdctl", "--endpoints", ENDPOINTS[0]])
        .args(["watch", "--prefix", "/mcgate/catalogue/", "-w", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = etcdctl.stdout.take().unwrap();
    let r = reference.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let t = unix_now();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let newest =
                v["Events"].as_array().into_iter().flatten().filter_map(|e| e["kv"]["mod_revision"].as_i64()).max();
            if let Some(rev) = newest {
                r.lock().unwrap().push((rev, t));
            }
        }
    });

    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let etcd_cpu = || (1..=3).map(|i| cpu_of(&format!("{cluster}-etcd{i}"))).sum::<f64>();
    let t_connect = unix_now();
    let sim = simulate(net.ns("sw"), watchers, seen.clone(), stop.clone());
    // the first push: every simulated switch connected and applied it
    let (rev0, _, _) = push(0);
    let all_applied = |rev: i64| {
        wait_until(Duration::from_secs(120), || {
            let s = seen.lock().unwrap();
            let mut got = vec![false; watchers];
            for (w, r, _) in s.iter() {
                if *r >= rev {
                    got[*w] = true;
                }
            }
            got.iter().all(|g| *g)
        }) && wait_until(Duration::from_secs(30), || {
            switches.iter().all(|s| applied_lines(s).iter().any(|(r, _)| *r >= rev))
        })
    };
    assert!(all_applied(rev0), "not every switch applied the first catalogue");
    let connected_s = unix_now() - t_connect;
    std::thread::sleep(Duration::from_secs(2));
    let cpu_settled = etcd_cpu();
    let idle_t0 = unix_now();
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = (etcd_cpu() - cpu_settled) / (unix_now() - idle_t0);

    let (mut push_s, mut reference_s, mut sim_s, mut real_s) = (vec![], vec![], vec![], vec![]);
    let cpu_before = etcd_cpu();
    for n in 1..=pushes {
        let (rev, t0, t1) = push(n);
        assert!(all_applied(rev), "push {n} (revision {rev}) not applied everywhere");
        push_s.push(t1 - t0);
        if let Some((_, t)) = reference.lock().unwrap().iter().find(|(r, _)| *r >= rev) {
            reference_s.push(t - t0);
        }
        let s = seen.lock().unwrap();
        for w in 0..watchers {
            if let Some((_, _, t)) = s.iter().find(|(x, r, _)| *x == w && *r >= rev) {
                sim_s.push(t - t0);
            }
        }
        drop(s);
        for sw in &switches {
            if let Some((_, t)) = applied_lines(sw).into_iter().find(|(r, _)| *r >= rev) {
                real_s.push(t - t0);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let push_cpu = etcd_cpu() - cpu_before;
    let rss: Vec<f64> = (1..=3).map(|i| rss_mb_of(&format!("{cluster}-etcd{i}"))).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sim.join();
    let _ = etcdctl.kill();
    let _ = etcdctl.wait();

    println!(
        "\npush → applied, {pushes} pushes of a {packages}-package catalogue ({} keys), a three-member etcd 3.4 cluster:",
        packages + 1
    );
    println!("| | p50 | p99 | max | samples |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |what: &str, v: &mut Vec<f64>| {
        let ms = |x: f64| format!("{:.0} ms", x * 1e3);
        let max = v.iter().copied().fold(0.0, f64::max);
        println!("| {what} | {} | {} | {} | {} |", ms(pct(v, 50.0)), ms(pct(v, 99.0)), ms(max), v.len());
    };
    row("the push itself (mcgate catalogue push: connect, list, one transaction)", &mut push_s);
    row("etcd's own client (etcdctl watch), the reference", &mut reference_s);
    row(&format!("{watchers} simulated switches (mcgate's catalogue client, validated)"), &mut sim_s);
    row("3 real switches (mcgate: validated, applied, memberships decided again)", &mut real_s);
    println!(
        "\n{watchers} simulated switches connected, listed and applied the first push in {connected_s:.1} s; \
         etcd's three members: {idle_cpu:.3} CPU s/s with them idle (leases, status keys, progress), \
         {push_cpu:.2} CPU s for the {pushes} pushes, RSS {:.0} / {:.0} / {:.0} MB",
        rss[0], rss[1], rss[2]
    );
}
