//! A network-namespace testbed for one test: built by `testbed/tb`, removed on drop
//! (also when the test fails). Needs root and the peers that `testbed/tb setup` installs.
#![allow(dead_code)]

use mcgate::daemon::control::{Request, Response};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/tb");
pub const MCGATE: &str = env!("CARGO_BIN_EXE_mcgate");
pub const MCAST_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testbed/mcast.py");

/// The mcgate a testbed runs: this build's, or `MCGATE_BIN` (tests/vlan.rs gives its VM
/// the release build, which it has just had cargo bring up to date).
fn mcgate_bin() -> String {
    std::env::var("MCGATE_BIN").unwrap_or_else(|_| MCGATE.to_string())
}

/// The JSON line a `mcast.py recv` or `sniff` printed.
pub fn result(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// strace attached to every thread of process `pid` with `args` (`-e inject=...`), once
/// it is: a test that made its change before strace had attached tested nothing.
pub fn strace(pid: &str, args: &[&str]) -> Child {
    let child = Command::new("strace")
        .args(["-f", "-qq", "-p", pid])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (testbed/tb setup installs it)");
    let traced = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        tasks.filter_map(Result::ok).all(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status.lines().any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    };
    assert!(wait_until(Duration::from_secs(10), traced), "strace did not attach to every thread of {pid}");
    child
}

/// tcpdump in namespace `ns` for `seconds` with `args` (its lines on stdout), once it is
/// listening: what is sent after this returns is heard.
pub fn tcpdump(ns: &str, seconds: u32, args: &[&str]) -> Child {
    use std::io::BufRead as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", &seconds.to_string(), "tcpdump", "-l"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    assert!(listening.recv_timeout(Duration::from_secs(30)).is_ok(), "tcpdump in {ns} is not listening");
    child
}

/// `args` run in namespace `ns`: `ip` and `bridge` with their own `-n` (one process, not
/// `ip netns exec` and then the command: each exec counts in the emulated VM), anything
/// else through `ip netns exec`.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    match args {
        [tool @ ("ip" | "bridge"), rest @ ..] => {
            let mut c = Command::new(tool);
            c.args(["-n", ns]).args(rest);
            c
        }
        _ => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(args);
            c
        }
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Frames of a capture in tests/data: a classic little-endian pcap file with Ethernet
/// link type.
pub fn pcap(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond pcap");
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1, "LINKTYPE_ETHERNET");
    let mut out = vec![];
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(b[at + 16..at + 16 + caplen].to_vec());
        at += 16 + caplen;
    }
    out
}

/// Percentile `p` (0–100) of `v`, nearest rank (sorts `v`); NaN without samples.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

/// A latency histogram of `mcgate status --json` (`multicast.io.NAME`): its bucket
/// bounds (µs) and its counts per bucket (the last count is beyond the last bound).
pub fn histogram(status: &serde_json::Value, name: &str) -> (Vec<u64>, Vec<u64>) {
    buckets(&status["multicast"]["io"][name])
}

/// The bucket bounds (µs) and counts of histogram `h` of the status (none: empty).
fn buckets(h: &serde_json::Value) -> (Vec<u64>, Vec<u64>) {
    let numbers = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default()
    };
    (numbers(&h["le_us"]), numbers(&h["counts"]))
}

/// How many of the daemon's journal commits took over 10 ms, and the slowest's bucket,
/// from its status.
pub fn slow_commits(status: &serde_json::Value) -> String {
    let (bounds, counts) = buckets(&status["accounting"]["journal"]["commit_latency"]);
    if counts.is_empty() {
        return "not in the status".into();
    }
    // counts[i] took at most bounds[i]; the last count is beyond the last bound
    let over: u64 =
        counts.iter().enumerate().filter(|(i, _)| bounds.get(*i).is_none_or(|b| *b > 10_000)).map(|(_, n)| n).sum();
    let bound = |i: usize| bounds.get(i).map_or("longer".into(), |us| format!("≤ {} ms", *us as f64 / 1000.0));
    let slowest = counts.iter().rposition(|n| *n > 0).map_or("-".into(), bound);
    format!("{} in all, {over} over 10 ms, the slowest {slowest}", counts.iter().sum::<u64>())
}

/// The bound of the bucket by which fraction `q` of `counts` is reached, written by
/// `show`; "more" beyond the last bound, "-" without samples.
pub fn bucket_quantile(bounds: &[u64], counts: &[u64], q: f64, show: impl Fn(u64) -> String) -> String {
    let total: u64 = counts.iter().sum();
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if total > 0 && seen as f64 >= q * total as f64 {
            return bounds.get(i).map_or("more".to_string(), |b| show(*b));
        }
    }
    "-".to_string()
}

/// The wall clock in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Unix seconds of an RFC 3339 UTC timestamp as tracing prints it.
pub fn rfc3339(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm, ss) = (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

pub struct Testbed {
    pub prefix: String,
    pub dir: PathBuf,
    pub hosts: usize,
    daemon: Option<Child>,
    /// `mcgate run --standby`, following `daemon`.
    standby: Option<Child>,
    /// The guard that takes the testbed down when this process is gone, however it
    /// went (see `guard`); `Drop` takes it down itself and ends the guard.
    guard: Child,
}

/// A process that waits for the end of a pipe only this process holds, then runs
/// `tb down PREFIX`: the testbed goes also when the test process is killed (a timeout's
/// SIGTERM, SIGKILL) and its `Drop` never runs. It ignores the signals a terminal or
/// `timeout` sends to the whole process group.
fn guard(prefix: &str) -> Child {
    Command::new("sh")
        .args(["-c", "trap '' INT TERM HUP; cat >/dev/null; exec \"$0\" down \"$1\"", TB, prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the testbed's guard process")
}

impl Testbed {
    /// `name`: a short tag unique among the tests (namespaces are `mg<tag><pid>-*`).
    pub fn new(name: &str, hosts: usize) -> Self {
        static TAGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut tags = TAGS.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!tags.iter().any(|t| t == name), "testbed tag {name:?} used by two tests of this file");
        tags.push(name.to_string());
        drop(tags);
        let prefix = format!("mg{name}{}", std::process::id());
        let _ = Command::new(TB).args(["down", &prefix]).status();
        let tb = Testbed {
            prefix: prefix.clone(),
            dir: PathBuf::from("/tmp/mcgate-tb").join(&prefix),
            hosts,
            daemon: None,
            standby: None,
            guard: guard(&prefix),
        };
        run(Command::new(TB).args(["up", &prefix, &hosts.to_string()]));
        let secret = tb.dir.join("secret");
        std::fs::write(&secret, "testing123\n").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        tb
    }

    /// Two subscribers (alice on h1 and h2) logged in on single-host 802.1X ports p1, p2
    /// with the basic package (239.1.1.0/24), unknown groups denied: the flood test's and
    /// bench's set-up. `auth`: lines for the authenticator's section besides tx_period;
    /// `extra`: TOML appended to mcgate's configuration.
    pub fn single_host_pair(name: &str, log_level: &str, auth: &str, extra: &str) -> Self {
        let mut tb = Testbed::new(name, 2);
        tb.radius(1812);
        let auth = format!("tx_period = \"1s\"\n{auth}");
        let cfg = tb.config(&[("p1", "dot1x"), ("p2", "dot1x")], &["127.0.0.1:1812"], &auth, "");
        let t = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("mode = \"dot1x\"\n", "mode = \"dot1x\"\nfast_leave = true\n")
            .replace("log_level = \"debug\"", &format!("log_level = \"{log_level}\""))
            + extra;
        std::fs::write(&cfg, t).unwrap();
        let policy = "[defaults]\nunknown = \"deny\"\n[[package]]\nname = \"basic\"\ngroups = [\"239.1.1.0/24\"]\n";
        tb.multicast(policy, "");
        tb.start_mcgate();
        for h in [1, 2] {
            tb.supplicant(h, "alice", "alicepass", "md5");
        }
        assert!(wait_until(Duration::from_secs(15), || tb.sessions().len() == 2), "{}", tb.log());
        tb
    }

    pub fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    pub fn radius(&self, port: u16) {
        run(Command::new(TB).args(["radius", &self.prefix, &port.to_string()]));
    }

    /// PostgreSQL with FreeRADIUS's schema, then FreeRADIUS accounting into it.
    pub fn radius_sql(&self, port: u16) {
        run(Command::new(TB).args(["postgres", &self.prefix]));
        run(Command::new(TB).args(["radius", &self.prefix, &port.to_string(), "sql"]));
    }

    /// FreeRADIUS again, into the PostgreSQL that is already running.
    pub fn radius_sql_restart(&self, port: u16) {
        run(Command::new(TB).args(["radius", &self.prefix, &port.to_string(), "sql"]));
    }

    pub fn stop_radius(&self, port: u16) {
        let pidfile = self.dir.join(format!("radius-{port}/freeradius.pid"));
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            let pid = pid.trim().to_string();
            wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
    }

    /// A query against the testbed's PostgreSQL: rows, columns split on `|`.
    pub fn psql(&self, sql: &str) -> Vec<Vec<String>> {
        run(Command::new(TB).args(["psql", &self.prefix, sql]))
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    /// `mcgate ARGS -c <this testbed's config>`: (stdout, stderr).
    pub fn mcgate(&self, args: &[&str]) -> (String, String) {
        let out = Command::new(mcgate_bin()).args(args).arg("-c").arg(self.dir.join("mcgate.toml")).output().unwrap();
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "mcgate {args:?}: {o}{e}");
        (o, e)
    }

    /// SIGKILL: a crash.
    pub fn kill_mcgate(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes mcgate's config: `ports` as (name, mode); `servers` as "127.0.0.1:PORT";
    /// `extra_auth` and `extra_radius` are raw TOML lines for those sections.
    pub fn config(&self, ports: &[(&str, &str)], servers: &[&str], extra_auth: &str, extra_radius: &str) -> PathBuf {
        let mut t = format!(
            "[switch]\nbridge = \"br0\"\nnas_identifier = \"{p}-sw\"\ndatabase = \"{d}/mcgate.redb\"\n\
             control_socket = \"{d}/control.sock\"\nlog_level = \"debug\"\n\n[authenticator]\n{extra_auth}\n\n\
             [radius]\n{extra_radius}\n",
            p = self.prefix,
            d = self.dir.display()
        );
        for s in servers {
            t += &format!("[[radius.server]]\naddress = \"{s}\"\nsecret_file = \"secret\"\n");
        }
        for (name, mode) in ports {
            t += &format!("[[port]]\nname = \"{name}\"\nmode = \"{mode}\"\n");
        }
        let path = self.dir.join("mcgate.toml");
        std::fs::write(&path, t).unwrap();
        path
    }

    /// Adds a [multicast] section and writes `policy` as the only policy file.
    pub fn multicast(&self, policy: &str, extra: &str) {
        let dir = self.dir.join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("test.toml"), policy).unwrap();
        let path = self.dir.join("mcgate.toml");
        let mut t = std::fs::read_to_string(&path).unwrap();
        t += &format!("\n[multicast]\npolicies = \"policies\"\nuplinks = [\"up0\"]\n{extra}\n");
        std::fs::write(path, t).unwrap();
    }

    /// Starts `testbed/mcast.py ARGS` in namespace `which` (`h1`, `up`, ...).
    pub fn mcast_py(&self, which: &str, args: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(which), "python3", MCAST_PY])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A stream from the upstream namespace, bounded in time.
    pub fn stream(&self, group: &str, seconds: u32) -> std::process::Child {
        self.mcast_py("up", &["send", group, "--pps", "200", "--seconds", &seconds.to_string()])
    }

    pub fn mdb(&self) -> String {
        self.in_sw(&["bridge", "mdb", "show"])
    }

    /// One request on the control socket, asked from this process: the tests poll these
    /// often, and an exec of the CLI for each cost 0.3–1 s in the emulated VM. The CLI's
    /// `--json` answers are compared with these in tests/operate.rs.
    fn ask(&self, request: Request) -> Option<Response> {
        mcgate::daemon::client_request(&self.socket(), &request).ok()
    }

    pub fn memberships(&self) -> Vec<serde_json::Value> {
        let Some(Response::Memberships { memberships }) = self.ask(Request::Memberships { only: Default::default() })
        else {
            return vec![];
        };
        let all = memberships.iter().map(|m| serde_json::to_value(m).unwrap());
        all.filter(|m| m["by"] != "link-local").collect()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Starts mcgate and waits for its control socket to answer: up to 10 s, or 60 s in
    /// the emulated VM (tests/vlan.rs), where a start (the exec of the test build, its
    /// set-up, each `mcgate status` asked) took 4–10 s in runs that passed, and more
    /// in one that did not: its timings mean nothing.
    pub fn start_mcgate(&mut self) {
        let in_vm = std::env::var_os("MCGATE_IN_VM").is_some();
        self.start_mcgate_within(Duration::from_secs(if in_vm { 60 } else { 10 }));
    }

    /// `mcgate run ARGS -c <config>` in the switch's namespace, logging to mcgate.log.
    fn spawn_mcgate(&self, args: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("mcgate.log")).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns("sw"), &mcgate_bin(), "run"])
            .args(args)
            .arg("-c")
            .arg(self.dir.join("mcgate.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Starts mcgate and waits up to `limit` for its control socket to answer.
    pub fn start_mcgate_within(&mut self, limit: Duration) {
        assert!(self.daemon.is_none());
        let t0 = Instant::now();
        self.daemon = Some(self.spawn_mcgate(&[]));
        assert!(wait_until(limit, || self.status().is_some()), "mcgate did not start:\n{}", self.log());
        println!("mcgate answered {} ms after it was started", t0.elapsed().as_millis());
    }

    /// A second `mcgate run` with the same configuration takes over from the running
    /// one; returns once the old one exited (its exit status) and the new one answers.
    pub fn hand_over_mcgate(&mut self) -> std::process::ExitStatus {
        self.hand_over_mcgate_with(|_, _| {})
    }

    /// ... with `meanwhile(self, old pid)` run once the new process is started.
    pub fn hand_over_mcgate_with(&mut self, meanwhile: impl FnOnce(&Self, u32)) -> std::process::ExitStatus {
        let mut old = self.daemon.take().expect("mcgate running");
        self.daemon = Some(self.spawn_mcgate(&[]));
        meanwhile(self, old.id());
        let mut exited = None;
        assert!(
            wait_until(Duration::from_secs(20), || {
                exited = exited.or_else(|| old.try_wait().ok().flatten());
                exited.is_some()
            }),
            "the old mcgate did not exit:\n{}",
            self.log()
        );
        assert!(wait_until(Duration::from_secs(10), || self.status().is_some()), "{}", self.log());
        exited.unwrap()
    }

    /// `mcgate run --standby` with the same configuration, following the running daemon;
    /// returns once the daemon says it is followed.
    pub fn start_standby(&mut self) {
        assert!(self.standby.is_none());
        let followed = |tb: &Self| tb.log().matches("a standby follows").count();
        let before = followed(self);
        self.standby = Some(self.spawn_mcgate(&["--standby"]));
        assert!(wait_until(Duration::from_secs(10), || followed(self) > before), "no standby:\n{}", self.log());
    }

    pub fn standby_pid(&self) -> Option<u32> {
        self.standby.as_ref().map(|c| c.id())
    }

    /// The daemon was killed and the standby took over: it is the daemon now.
    pub fn standby_took_over(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is still there");
        self.daemon = self.standby.take();
    }

    /// mcgate as a systemd service: the shipped unit (contrib/mcgate.service) with a
    /// testbed drop-in (this build, this configuration, root as there is no mcgate user,
    /// the testbed's directory writable, the log in mcgate.log) and `extra` (unit file
    /// lines after [Service]'s), under a service manager of the testbed's own (`tb systemd`);
    /// returns once `systemctl start` did (Type=notify: the daemon is ready).
    pub fn start_systemd_mcgate(&self, extra: &str) {
        let units = self.dir.join("systemd");
        std::fs::create_dir_all(units.join("mcgate.service.d")).unwrap();
        let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/mcgate.service");
        std::fs::copy(unit, units.join("mcgate.service")).unwrap();
        let (dir, cfg) = (self.dir.display(), self.dir.join("mcgate.toml"));
        let dropin = format!(
            "[Unit]\n# the testbed's manager has no sysinit.target\nDefaultDependencies=no\n\
             [Service]\nExecStartPre=\nExecStartPre={MCGATE} check -c {cfg}\nExecStart=\nExecStart={MCGATE} run -c {cfg}\n\
             ExecReload=\nExecReload={MCGATE} upgrade -c {cfg}\n\
             User=root\nGroup=root\nPrivateTmp=no\nReadWritePaths={dir}\n\
             StandardOutput=append:{dir}/mcgate.log\nStandardError=inherit\n{extra}\n",
            cfg = cfg.display()
        );
        std::fs::write(units.join("mcgate.service.d/testbed.conf"), dropin).unwrap();
        run(Command::new(TB).args(["systemd", &self.prefix]));
        let (ok, out) = self.systemctl(&["start", "mcgate"]);
        assert!(ok, "systemctl start mcgate: {out}\n{}", self.log());
    }

    /// `systemctl ARGS` against the testbed's service manager: whether it succeeded, and
    /// what it printed.
    pub fn systemctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(TB).args(["systemctl", &self.prefix]).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// The unit's main process (0: none).
    pub fn main_pid(&self) -> u32 {
        self.systemctl(&["show", "-p", "MainPID", "--value", "mcgate"]).1.trim().parse().unwrap_or(0)
    }

    /// Kills the standby (SIGKILL).
    pub fn stop_standby(&mut self) {
        if let Some(mut c) = self.standby.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as systemd would; kernel state stays.
    pub fn stop_mcgate(&mut self) {
        self.stop_mcgate_with("TERM");
    }

    /// Stops the daemon with SIG`signal` (`TERM`, `INT`) and waits for it to exit.
    pub fn stop_mcgate_with(&mut self, signal: &str) {
        if let Some(mut c) = self.daemon.take() {
            let _ = Command::new("kill").args([&format!("-{signal}"), &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mcgate.log")).unwrap_or_default()
    }

    pub fn supplicant(&self, host: usize, user: &str, pass: &str, method: &str) {
        self.supplicant_as(host, user, pass, method, "");
    }

    /// As `supplicant`, with `outer` as PEAP's outer (anonymous) identity when not empty;
    /// `user` may be `hex:OCTETS`.
    pub fn supplicant_as(&self, host: usize, user: &str, pass: &str, method: &str, outer: &str) {
        run(Command::new(TB).args(["supplicant", &self.prefix, &host.to_string(), user, pass, method, outer]));
    }

    /// FreeRADIUS writing every Access-Request it receives, every attribute, to
    /// [`Testbed::radius_requests`] (its auth_log).
    pub fn radius_detail(&self, port: u16) {
        run(Command::new(TB).args(["radius", &self.prefix, &port.to_string(), "detail"]));
    }

    /// What FreeRADIUS's auth_log wrote (see `radius_detail`): every request it received.
    pub fn radius_requests(&self, port: u16) -> String {
        let dir = self.dir.join(format!("radius-{port}/radacct"));
        let mut all = String::new();
        for d in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                all += &std::fs::read_to_string(f.path()).unwrap_or_default();
            }
        }
        all
    }

    /// (Acct-Session-Id, Acct-Status-Type) → how often FreeRADIUS on `port` wrote that
    /// accounting request to its detail file (a retransmission its duplicate cache
    /// answered is not written again; a record sent anew is).
    pub fn accounting_written(&self, port: u16) -> std::collections::HashMap<(String, String), usize> {
        let mut out = std::collections::HashMap::new();
        for block in self.radius_requests(port).split("\n\n") {
            let field = |name: &str| {
                block.lines().find_map(|l| {
                    let (k, v) = l.trim().split_once(" = ")?;
                    (k == name).then(|| v.trim_matches('"').to_string())
                })
            };
            if let (Some(id), Some(status)) = (field("Acct-Session-Id"), field("Acct-Status-Type")) {
                *out.entry((id, status)).or_insert(0) += 1;
            }
        }
        out
    }

    /// The journal's records (`mcgate acct export`) as (Acct-Session-Id, Acct-Status-Type),
    /// the names FreeRADIUS's detail file gives them.
    pub fn journaled(&self) -> Vec<(String, String)> {
        let (out, _) = self.mcgate(&["acct", "export", "--format", "jsonl"]);
        let status = |s: &str| match s {
            "start" => "Start",
            "stop" => "Stop",
            "interim-update" => "Interim-Update",
            "accounting-on" => "Accounting-On",
            "accounting-off" => "Accounting-Off",
            _ => "?",
        };
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|r| (r["session_id"].as_str().unwrap_or("").into(), status(r["status"].as_str().unwrap_or("")).into()))
            .collect()
    }

    /// FreeRADIUS's own log (errors, warnings).
    pub fn radius_log(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("radius-{port}/radius.log"))).unwrap_or_default()
    }

    pub fn wpa_cli(&self, host: usize, args: &[&str]) -> String {
        let mut c = Command::new(TB);
        c.args(["wpa_cli", &self.prefix, &host.to_string()]).args(args);
        run(&mut c)
    }

    pub fn stop_supplicant(&self, host: usize) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("h{host}/wpa.pid"))) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            let pidfile = self.dir.join(format!("h{host}/wpa.pid"));
            wait_until(Duration::from_secs(5), || !pidfile.exists());
        }
    }

    /// Runs a command in host `i`'s namespace.
    pub fn in_host(&self, host: usize, args: &[&str]) -> String {
        run(&mut in_ns(&self.ns(&format!("h{host}")), args))
    }

    /// `args` run in the switch's namespace (must succeed); their output.
    pub fn in_sw(&self, args: &[&str]) -> String {
        run(&mut in_ns(&self.ns("sw"), args))
    }

    /// hostapd (driver=wired) on ports p1..pN, as the reference authenticator.
    pub fn start_hostapd(&self, ports: usize) -> u32 {
        run(Command::new(TB).args(["hostapd", &self.prefix, &ports.to_string()]));
        let pidfile = self.dir.join("hostapd/hostapd.pid");
        assert!(wait_until(Duration::from_secs(5), || pidfile.exists()));
        std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap()
    }

    pub fn stop_hostapd(&self) {
        let pidfile = self.dir.join("hostapd/hostapd.pid");
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            wait_until(Duration::from_secs(5), || !pidfile.exists());
        }
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// One ping from host `i` to the upstream namespace.
    pub fn ping(&self, host: usize) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(&format!("h{host}")), "ping", "-c1", "-W1", "192.0.2.254"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Non-EAPOL frames from host `i` that the bridge forwarded (`forward`) or took
    /// in itself (`input`), from the testbed's nftables counters.
    pub fn frames_from(&self, host: usize, hook: &str) -> u64 {
        let out = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns("sw"),
            "nft",
            "-j",
            "list",
            "chain",
            "bridge",
            "tb",
            hook,
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let comment = format!("h{host}");
        for item in v["nftables"].as_array().unwrap() {
            let rule = &item["rule"];
            if rule["comment"] == comment.as_str() {
                for e in rule["expr"].as_array().unwrap() {
                    if let Some(p) = e["counter"]["packets"].as_u64() {
                        return p;
                    }
                }
            }
        }
        panic!("no counter for {comment} in {hook}")
    }

    pub fn fdb_static(&self) -> String {
        self.in_sw(&["bridge", "fdb", "show", "br", "br0"])
            .lines()
            .filter(|l| l.contains(" static"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn sessions(&self) -> Vec<serde_json::Value> {
        match self.ask(Request::Sessions { only: Default::default() }) {
            Some(Response::Sessions { sessions }) => {
                sessions.iter().map(|s| serde_json::to_value(s).unwrap()).collect()
            }
            _ => vec![],
        }
    }

    pub fn session_of(&self, port: &str) -> Option<serde_json::Value> {
        self.sessions().into_iter().find(|s| s["port"] == port)
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        match self.ask(Request::Status)? {
            Response::Status { status } => Some(status),
            _ => None,
        }
    }

    /// Host `host` sends `count` crafted IGMPv3 reports from a raw socket at `pps`, from its
    /// own MAC and address (`mcast.py flood`); the child prints what it sent.
    pub fn report_flood(&self, host: usize, count: u32, pps: u32) -> Child {
        self.mcast_py(
            &format!("h{host}"),
            &[
                "flood",
                "--src-mac",
                &Self::host_mac(host),
                "--src-ip",
                &format!("192.0.2.{}", 10 + host),
                "--count",
                &count.to_string(),
                "--pps",
                &pps.to_string(),
            ],
        )
    }

    pub fn host_mac(host: usize) -> String {
        let n = 0x10 + host;
        format!("02:00:00:00:{:02x}:{:02x}", n >> 8, n & 0xff)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mcgate log of {} ---\n{}", self.prefix, self.log());
        }
        // the standby first: it would take over from the daemon stopped below
        self.stop_standby();
        self.stop_mcgate();
        let _ = Command::new(TB).args(["down", &self.prefix]).status();
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
            // SAFETY: setns(2) on a descriptor we hold open; it changes only this thread's
            // network namespace, and this thread ends with the closure.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

/// What this machine charges for waking a sleeping thread with a datagram, the least any
/// daemon that sleeps between its inputs pays per input: a baseline for the benchmarks'
/// per-wake-up figures, measured in the same run.
pub struct WakeFloor {
    /// Time on a CPU of the answering thread per datagram (woken, received, answered).
    pub cpu_us: f64,
    /// Send → the sleeping peer has it, µs (half a round trip), each round.
    pub one_way_us: Vec<f64>,
}

/// `rounds` round trips over UDP on loopback between this thread and one that does
/// nothing but answer, `gap` apart: both sleep in between, and their CPUs idle, as a
/// daemon's do between its inputs. The longer the gap, the colder the wake-up (on the
/// development VM: 13 µs of CPU and 17 µs one way at 2 ms, 24 µs and 35 µs at 100 ms).
/// Two threads of one process: a lower bound, as waking another process costs more.
pub fn wake_floor(rounds: usize, gap: Duration) -> WakeFloor {
    use std::net::UdpSocket;
    let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    // field 0 of the thread's schedstat: time on a CPU, ns
    let cpu_ns = || -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    };
    let answerer = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let t0 = cpu_ns();
        for _ in 0..rounds {
            let n = b.recv(&mut buf).unwrap();
            b.send(&buf[..n]).unwrap();
        }
        cpu_ns() - t0
    });
    let mut one_way_us = Vec::with_capacity(rounds);
    let mut buf = [0u8; 64];
    for i in 0..rounds {
        std::thread::sleep(gap);
        let t0 = Instant::now();
        a.send(&(i as u64).to_be_bytes()).unwrap();
        a.recv(&mut buf).unwrap();
        one_way_us.push(t0.elapsed().as_secs_f64() * 1e6 / 2.0);
    }
    let cpu = answerer.join().unwrap();
    WakeFloor { cpu_us: cpu as f64 / 1e3 / rounds as f64, one_way_us }
}
