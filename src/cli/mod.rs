//! Subcommands of the `mcgate` binary.

use crate::daemon::{self, config, control};
use anyhow::{anyhow, Context as _};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "mcgate",
    version,
    about = "802.1X-gated multicast access controller for Linux bridges",
    after_long_help = "Exit status: 0 done; 1 an error (the message on stderr); 2 a usage error; \
                       3 the daemon is not running (nothing listens on its control socket)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon. While one runs with the configuration, a second takes over from
    /// it (its sockets and the state its store lacks: an upgrade without a lost frame).
    Run {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        /// Follow the running daemon as its hot standby: hold its sockets and the state
        /// its store lacks, and take over the moment it dies.
        #[arg(long)]
        standby: bool,
    },
    /// Under systemd (the unit's `ExecReload=`): start the installed mcgate with the
    /// configuration beside the unit's main process ($MAINPID), which hands its sockets and
    /// state over and makes it the unit's main process; returns once it has (exits
    /// non-zero, the running one going on, when the new one fails first).
    Upgrade {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        /// (internal) start `mcgate run`, print its pid and exit at once: the new daemon
        /// is then systemd's child, as a main process must be for systemd to see it exit
        #[arg(long, hide = true)]
        detach: bool,
    },
    /// Validate a configuration file; exits non-zero with file:line and the reason.
    Check {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
    },
    /// List the live sessions of the running daemon: port, MAC, account, method, since.
    Sessions {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        only: control::Filter,
        /// One JSON array with every field of each, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// List the admitted multicast memberships of the running daemon: port, MAC, group,
    /// what admitted it, since.
    Memberships {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        only: control::Filter,
        /// One JSON array with every field of each, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Counters and state of the running daemon (JSON).
    Status {
        #[command(flatten)]
        target: Target,
        /// Every counter, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The multicast policy: check the files, or have the daemon read them again.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The policy catalogue in etcd, shared by every switch: push, diff, status.
    Catalogue {
        #[command(subcommand)]
        command: CatalogueCommand,
    },
    /// Act on a live session.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// The accounting journal: export, follow, purge.
    Acct {
        #[command(subcommand)]
        command: AcctCommand,
    },
    /// Undo mcgate's set-up on the configured ports (unlock, remove authorized MACs)
    /// and end the stored sessions (Stop records, then Accounting-Off). Stopping the
    /// daemon never does this.
    Teardown {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
    },
    /// Run a recording (`[debug] record`) through the core again and print its outputs
    /// (JSON Lines, as recorded); exits 1 where the replay does not make what was
    /// recorded, saying where. Touches no kernel state and sends nothing.
    Replay {
        /// The recording.
        file: PathBuf,
        /// The configuration the recorded run had (its secrets verify the RADIUS replies).
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        /// Print the summary only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (section 8: mcgate.8 and one per command) into DIR.
    Manpages { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate the policy files the configuration names; file:line and the reason on error.
    Check {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
    },
    /// Have the running daemon read them again (as SIGHUP does): all valid, or nothing
    /// changes; memberships the new policy denies end.
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub enum CatalogueCommand {
    /// Validate a policy directory and write it to etcd as the catalogue, in one
    /// transaction (one key per package; keys the directory no longer has are deleted);
    /// prints the revision every switch will apply.
    Push {
        /// The configuration whose [catalogue] names etcd.
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        dir: PathBuf,
    },
    /// What a push of the directory would change: each key added, changed or removed.
    Diff {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        dir: PathBuf,
    },
    /// The catalogue's latest revision and every switch's: the revision it applied,
    /// marked when it is behind or refused the newest.
    Status {
        #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
        config: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// End a session (Admin-Reset): the port closes for that MAC, its memberships end.
    Kick {
        #[command(flatten)]
        target: Target,
        port: String,
        /// e.g. 02:00:00:00:00:11
        mac: String,
    },
}

/// One request to the daemon that answers Done or Error.
fn ask(target: &Target, req: control::Request) -> anyhow::Result<()> {
    match daemon::client_request(&target.socket()?, &req)? {
        control::Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        control::Response::Error { message } => Err(anyhow!(message)),
        other => Err(anyhow!("unexpected answer: {other:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum AcctCommand {
    /// Write journal records from a cursor to stdout; the cursor to resume from goes to
    /// stderr (`cursor N`), and what was written is marked exported.
    Export {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Start at this cursor (a journal sequence number); 0 for everything kept.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Follow new records as they are journaled (JSON Lines or CSV) until interrupted.
    Tail {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Start at this cursor instead of at the end.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Forget records that were delivered to the accounting servers and exported
    /// (below the export mark, or below --before if lower). The servers keep theirs.
    Purge {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        before: Option<u64>,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// The journal: through the running daemon, or in the database when it is not running.
enum Journal {
    Daemon(PathBuf),
    Store(crate::store::Store),
}

/// Records per request.
const PAGE: usize = 10_000;

impl Journal {
    fn open(target: &Target) -> anyhow::Result<Self> {
        let socket = target.socket()?;
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(Journal::Daemon(socket));
        }
        let db = settings(&target.config)?.switch.database;
        let store = crate::store::Store::open(&db)
            .with_context(|| format!("mcgate is not running and its database {} cannot be opened", db.display()))?;
        Ok(Journal::Store(store))
    }

    fn export(&self, since: u64, limit: usize, mark: bool) -> anyhow::Result<(Vec<crate::acct::Record>, u64)> {
        match self {
            Journal::Daemon(socket) => {
                match daemon::client_request(socket, &control::Request::AcctExport { since, limit, mark })? {
                    control::Response::Records { records, next } => Ok((records, next)),
                    control::Response::Error { message } => Err(anyhow!(message)),
                    other => Err(anyhow!("unexpected answer: {other:?}")),
                }
            }
            Journal::Store(store) => Ok(store.export(since, limit, mark)?),
        }
    }

    fn purge(&self, before: Option<u64>) -> anyhow::Result<usize> {
        match self {
            Journal::Daemon(socket) => match daemon::client_request(socket, &control::Request::AcctPurge { before })? {
                control::Response::Purged { purged } => Ok(purged),
                control::Response::Error { message } => Err(anyhow!(message)),
                other => Err(anyhow!("unexpected answer: {other:?}")),
            },
            Journal::Store(store) => Ok(store.purge_exported(before)?),
        }
    }
}

fn write_records(out: &mut impl std::io::Write, records: &[crate::acct::Record], format: Format) -> anyhow::Result<()> {
    for r in records {
        match format {
            Format::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
            Format::Csv => writeln!(out, "{}", r.csv_row())?,
        }
    }
    Ok(())
}

fn acct(command: AcctCommand) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match command {
        AcctCommand::Export { target, format, since } => {
            let journal = Journal::open(&target)?;
            if format == Format::Csv {
                writeln!(out, "{}", crate::acct::CSV_HEADER)?;
            }
            let mut cursor = since;
            loop {
                let (records, next) = journal.export(cursor, PAGE, false)?;
                write_records(&mut out, &records, format)?;
                cursor = next;
                if records.len() < PAGE {
                    break;
                }
            }
            out.flush()?;
            // written out: now it counts as exported
            journal.export(cursor, 0, true)?;
            eprintln!("cursor {cursor}");
            Ok(())
        }
        AcctCommand::Tail { target, format, since } => {
            let journal = Journal::open(&target)?;
            if format == Format::Csv {
                writeln!(out, "{}", crate::acct::CSV_HEADER)?;
            }
            let mut cursor = match since {
                Some(c) => c,
                None => journal.export(u64::MAX, 0, false)?.1,
            };
            loop {
                let (records, next) = journal.export(cursor, PAGE, false)?;
                write_records(&mut out, &records, format)?;
                out.flush()?;
                cursor = next;
                if records.len() < PAGE {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            }
        }
        AcctCommand::Purge { target, before } => {
            let purged = Journal::open(&target)?.purge(before)?;
            println!("{purged} records purged");
            Ok(())
        }
    }
}

/// A table with each column as wide as its widest cell (the last one not padded).
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// The daemon's configuration (to find its control socket).
    #[arg(short, long, default_value = "/etc/mcgate/mcgate.toml")]
    config: PathBuf,
    /// The control socket, instead of reading it from the configuration.
    #[arg(short, long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        Ok(settings(&self.config)?.switch.control_socket)
    }
}

fn load(path: &Path) -> anyhow::Result<config::Loaded> {
    config::load(path).map_err(|e| anyhow!("{e}"))
}

fn catalogue(command: CatalogueCommand) -> anyhow::Result<()> {
    let of = |config: &Path| -> anyhow::Result<crate::catalogue::Config> {
        settings(config)?.catalogue.ok_or_else(|| anyhow!("{}: no [catalogue] section", config.display()))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match command {
        CatalogueCommand::Push { config, dir } => {
            let cfg = of(&config)?;
            let keys = crate::catalogue::split_dir(&dir)?;
            let revision = rt.block_on(crate::catalogue::push(&cfg, &keys))?;
            println!("catalogue of {} keys pushed: revision {revision}", keys.len());
        }
        CatalogueCommand::Diff { config, dir } => {
            let cfg = of(&config)?;
            let keys = crate::catalogue::split_dir(&dir)?;
            for (key, what) in rt.block_on(crate::catalogue::diff(&cfg, &keys))? {
                println!("{what:<8} {}", printable(&key));
            }
        }
        CatalogueCommand::Status { config, json } => {
            let cfg = of(&config)?;
            let (latest, switches) = rt.block_on(crate::catalogue::status(&cfg))?;
            if json {
                let rows: Vec<serde_json::Value> = (switches.iter())
                    .map(|(name, a)| match a {
                        Ok(a) => serde_json::json!({"switch": name, "applied": a, "behind": a.revision < latest}),
                        Err(e) => serde_json::json!({"switch": name, "error": e}),
                    })
                    .collect();
                return print_json(&serde_json::json!({"revision": latest, "switches": rows}));
            }
            println!("catalogue revision {latest}");
            let rows: Vec<Vec<String>> = (switches.iter())
                .map(|(name, a)| {
                    let (revision, state) = match a {
                        Ok(a) if a.refused.is_some() => (
                            a.revision.to_string(),
                            format!(
                                "REFUSED revision {}: {}",
                                a.refused_revision.unwrap_or(0),
                                printable(a.refused.as_deref().unwrap_or(""))
                            ),
                        ),
                        Ok(a) if a.revision < latest => (a.revision.to_string(), "BEHIND".into()),
                        Ok(a) => (a.revision.to_string(), "current".into()),
                        Err(e) => ("-".into(), printable(e).into_owned()),
                    };
                    vec![printable(name).into_owned(), revision, state]
                })
                .collect();
            print_table(&["SWITCH", "REVISION", "STATE"], &rows);
        }
    }
    Ok(())
}

/// The configuration without its secrets or policy: enough to find the daemon.
fn settings(path: &Path) -> anyhow::Result<config::Config> {
    config::load_settings(path).map_err(|e| anyhow!("{e}"))
}

/// `cmd`'s page and its subcommands' (`mcgate-acct-export.8`), section 8.
fn write_manpages(cmd: &clap::Command, dir: &Path, parent: &str) -> anyhow::Result<()> {
    let name = if parent.is_empty() { cmd.get_name().to_string() } else { format!("{parent}-{}", cmd.get_name()) };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(&name)).section("8").render(&mut page)?;
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_manpages(sub, dir, &name)?;
    }
    Ok(())
}

/// Text for people (colour on a terminal; no timestamps under systemd, whose journal
/// has its own), or one JSON object per line for log shippers.
fn init_logging(level: &str, format: config::LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level: tracing::Level = level.parse().unwrap_or(tracing::Level::INFO);
    // mcgate's own lines at `level`, the libraries' at info at most: at debug the gRPC
    // client's HTTP/2 frames would drown mcgate's
    let only = || {
        tracing_subscriber::filter::Targets::new()
            .with_target("mcgate", level)
            .with_default(level.min(tracing::Level::INFO))
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt().with_max_level(level).with_target(false).with_ansi(ansi);
    match (format, stdout_is_journal()) {
        (config::LogFormat::Json, _) => fmt.json().finish().with(only()).init(),
        // the journal keeps the time; each line's priority goes in front as `<N>`, which
        // journald takes off and keeps as the entry's (SyslogLevelPrefix=, on by default)
        (config::LogFormat::Text, true) => fmt
            .with_ansi(false)
            .event_format(Prioritized(
                tracing_subscriber::fmt::format().without_time().with_target(false).with_ansi(false),
            ))
            .finish()
            .with(only())
            .init(),
        (config::LogFormat::Text, false) => fmt.finish().with(only()).init(),
    }
}

/// Whether stdout is the journal's stream: systemd says so in `JOURNAL_STREAM` (the
/// stream's device and inode, sd_journal_stream_fd(3)), which must match stdout itself
/// (a child that inherited the variable may write elsewhere).
fn stdout_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    let out = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned().map(std::fs::File::from);
    out.and_then(|f| f.metadata())
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::dev(&m) == dev && std::os::unix::fs::MetadataExt::ino(&m) == ino)
}

/// Log lines for the journal: the syslog priority of the event's level in front
/// (sd-daemon(3): `<3>` error, `<4>` warning, `<6>` info, `<7>` debug), so that
/// `journalctl -p err` finds `JOURNAL COMMIT FAILED`.
struct Prioritized<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Prioritized<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// `mcgate upgrade`: a new `mcgate run` beside the running one (systemd's $MAINPID),
/// which it asks to hand over; done when that one has exited.
fn upgrade(config: &std::path::Path) -> anyhow::Result<()> {
    let old: u32 = std::env::var("MAINPID").ok().and_then(|p| p.parse().ok()).filter(|p| *p > 0).ok_or_else(|| {
        anyhow::anyhow!(
            "mcgate upgrade runs under systemd (ExecReload=), which names the running daemon in $MAINPID; \
             without systemd, start `mcgate run` beside the running one"
        )
    })?;
    let loaded = load(config)?;
    let exe = std::env::current_exe()?;
    // started by a process that exits at once, the new daemon is systemd's child when it
    // becomes the main process (systemd SIGKILLs a main process that is not its child at
    // the next stop; found by the test: "Supervising process ... which is not our child")
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("upgrade").arg("--detach").arg("-c").arg(config).stdin(std::process::Stdio::null());
    // systemd gives a control process neither its notify socket (NotifyAccess=main) nor
    // the watchdog: the new main process takes them from the running one's environment
    let environ = std::fs::read(format!("/proc/{old}/environ"))
        .map_err(|e| anyhow::anyhow!("reading the running daemon's environment (/proc/{old}/environ): {e}"))?;
    for (name, value) in environ.split(|b| *b == 0).filter_map(|v| std::str::from_utf8(v).ok()?.split_once('=')) {
        if matches!(name, "NOTIFY_SOCKET" | "WATCHDOG_USEC") {
            cmd.env(name, value);
        }
    }
    // the watchdog is the new process's own (no WATCHDOG_PID: sd_watchdog_enabled(3))
    cmd.env_remove("WATCHDOG_PID");
    let out = cmd.stderr(std::process::Stdio::inherit()).output();
    let out = out.map_err(|e| anyhow::anyhow!("starting {}: {e}", exe.display()))?;
    let new: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("the new process did not start ({})", out.status))?;
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < daemon::HAND_OVER_TIMEOUT + std::time::Duration::from_secs(5) {
        if !alive(old) {
            println!("upgraded: {new} took over from {old} on {}", loaded.config.switch.control_socket.display());
            return Ok(());
        }
        if !alive(new) {
            anyhow::bail!("the new process ({new}) ended before it took over; the running one goes on");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    anyhow::bail!("the running daemon ({old}) has not handed over to the new one ({new})")
}

pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, standby } => {
            let loaded = load(&config)?;
            init_logging(&loaded.config.switch.log_level, loaded.config.switch.log_format);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), pid = std::process::id(), standby, "mcgate starting");
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            // The daemon runs as a task, not as the runtime's root future: a task woken by
            // another task (a capture or RADIUS reader handing it an input) goes on the
            // scheduler's queue, while waking the root future writes to the runtime's
            // eventfd and costs a system call and an extra epoll round each time.
            rt.block_on(async { tokio::spawn(daemon::run(loaded, standby)).await? })
        }
        Command::Upgrade { config, detach: false } => upgrade(&config),
        Command::Upgrade { config, detach: true } => {
            let exe = std::env::current_exe()?;
            // its output goes where this one's errors go (the service's log), not to the
            // pipe the pid is read from
            let log = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned()?;
            let child = std::process::Command::new(&exe)
                .arg("run")
                .arg("-c")
                .arg(&config)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::from(log))
                .spawn()
                .map_err(|e| anyhow::anyhow!("starting {}: {e}", exe.display()))?;
            println!("{}", child.id());
            Ok(())
        }
        Command::Check { config } => {
            let loaded = load(&config)?;
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} ports, {} RADIUS servers)",
                config.display(),
                loaded.config.ports.len(),
                loaded.config.radius.servers.len()
            );
            Ok(())
        }
        Command::Sessions { target, only, json } => {
            let resp = daemon::client_request(&target.socket()?, &control::Request::Sessions { only })?;
            let control::Response::Sessions { sessions } = resp else {
                return Err(anyhow!("unexpected answer: {resp:?}"));
            };
            if json {
                print_json(&sessions)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        crate::auth::nas_port_id(&s.port, s.vlan),
                        s.mac.clone(),
                        printable(&s.account).into_owned(),
                        s.method.clone(),
                        s.state.clone(),
                        s.session_id.clone(),
                        format_unix(s.since),
                    ]
                })
                .collect();
            print_table(&["PORT", "MAC", "ACCOUNT", "METHOD", "STATE", "SESSION", "SINCE"], &rows);
            Ok(())
        }
        Command::Memberships { target, only, json } => {
            let resp = daemon::client_request(&target.socket()?, &control::Request::Memberships { only })?;
            let control::Response::Memberships { memberships } = resp else {
                return Err(anyhow!("unexpected answer: {resp:?}"));
            };
            if json {
                print_json(&memberships)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = memberships
                .iter()
                .filter(|m| !m.is_link_local())
                .map(|m| {
                    vec![
                        crate::auth::nas_port_id(&m.port, m.vlan),
                        m.mac.to_string(),
                        printable(&m.account).into_owned(),
                        m.group.to_string(),
                        m.source.map_or("*".to_string(), |s| s.to_string()),
                        printable(&m.by).into_owned(),
                        m.session_id.to_string(),
                        format_unix(m.since),
                    ]
                })
                .collect();
            print_table(&["PORT", "MAC", "ACCOUNT", "GROUP", "SOURCE", "BY", "SESSION", "SINCE"], &rows);
            Ok(())
        }
        Command::Status { target, json } => {
            let resp = daemon::client_request(&target.socket()?, &control::Request::Status)?;
            let control::Response::Status { status } = resp else {
                return Err(anyhow!("unexpected answer: {resp:?}"));
            };
            if json {
                print_json(&status)?;
            } else {
                print!("{}", status_summary(&status));
            }
            Ok(())
        }
        Command::Acct { command } => acct(command),
        Command::Policy { command: PolicyCommand::Check { config } } => {
            let loaded = load(&config)?;
            let p = loaded.policy.ok_or_else(|| anyhow!("{}: no [multicast] section, no policy", config.display()))?;
            println!("policy ok: {} ({} packages, {} subscribers)", p.version, p.packages.len(), p.subscribers.len());
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Reload { target } } => ask(&target, control::Request::PolicyReload),
        Command::Catalogue { command } => catalogue(command),
        Command::Session { command: SessionCommand::Kick { target, port, mac } } => {
            let mac = mac.parse::<crate::wire::MacAddr>().map_err(|e| anyhow!("{mac}: {e}"))?.to_string();
            ask(&target, control::Request::SessionKick { port, mac })
        }
        Command::Teardown { config } => {
            let loaded = load(&config)?;
            crate::teardown::teardown(&loaded).context("teardown")?;
            println!("authorizations and mcgate's MDB entries removed, port flags and bridge options as found before mcgate, stored sessions ended (Stop records journaled)");
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "mcgate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Manpages { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write_manpages(&<Cli as clap::CommandFactory>::command(), &dir, "")
        }
        Command::Replay { file, config, quiet } => {
            let loaded = load(&config)?;
            let scratch = std::env::temp_dir().join(format!("mcgate-replay-{}", std::process::id()));
            std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let done = daemon::replay(&loaded, &file, &scratch, |o| {
                if !quiet {
                    let _ = serde_json::to_writer(&mut out, &daemon::tape::Line::Output(o.clone()));
                    let _ = std::io::Write::write_all(&mut out, b"\n");
                }
            });
            drop(out);
            let _ = std::fs::remove_dir_all(&scratch);
            let done = done?;
            eprintln!("{}: {} steps, {} outputs replayed", file.display(), done.steps, done.outputs);
            match done.diverged {
                None => Ok(()),
                Some(why) => Err(anyhow!("the replay diverged: {why}")),
            }
        }
    }
}

/// The counters an operator looks at first; `--json` has all of them.
fn status_summary(s: &serde_json::Value) -> String {
    let n = |path: &[&str]| {
        let v = path.iter().fold(s, |v, p| &v[*p]);
        match v {
            serde_json::Value::Object(m) => m.values().filter_map(|x| x.as_u64()).sum::<u64>().to_string(),
            v => v.as_u64().map_or("-".to_string(), |x| x.to_string()),
        }
    };
    // a field summed over the ports of `status.limits`
    let ports = |field: &str| -> u64 {
        let per_port = s["limits"].as_object().into_iter().flat_map(|m| m.values());
        per_port.map(|p| p[field].as_u64().unwrap_or(u64::from(p[field] == true))).sum()
    };
    // a reason not in the map has not happened
    let denied = |reason: &str| s["multicast"]["tracker"]["denied"][reason].as_u64().unwrap_or(0);
    let rows = [
        ("uptime (s)", n(&["uptime_s"])),
        ("sessions", n(&["sessions"])),
        (
            "authentications ok / failed",
            format!("{} / {}", n(&["authenticator", "auth_success"]), n(&["authenticator", "auth_failure"])),
        ),
        (
            "RADIUS requests / replies / failures",
            format!("{} / {} / {}", n(&["radius", "requests"]), n(&["radius", "replies"]), n(&["radius", "failures"])),
        ),
        ("memberships", n(&["multicast", "memberships"])),
        (
            "joins admitted / denied",
            format!("{} / {}", n(&["multicast", "tracker", "admitted"]), n(&["multicast", "tracker", "denied"])),
        ),
        (
            "reports dropped: unauthenticated / spoofed",
            format!(
                "{} / {}",
                n(&["multicast", "io", "dropped_unauthenticated"]),
                n(&["multicast", "io", "dropped_spoofed_mac"])
            ),
        ),
        ("capture drops (kernel)", n(&["io", "capture_drops"])),
        ("EAPOL/IGMP/MLD in an unconfigured VLAN dropped", ports("dropped_vlan").to_string()),
        ("flood: ports quarantined now / quarantines", format!("{} / {}", ports("quarantined"), ports("quarantines"))),
        (
            "flood: frames dropped over rate / quarantined",
            format!(
                "{} / {}",
                ports("dropped_port_rate") + ports("dropped_mac_rate") + ports("dropped_eapol_rate"),
                ports("dropped_quarantined")
            ),
        ),
        (
            "bounds hit: hosts/port, memberships/host, channels/port",
            format!(
                "{} / {} / {}",
                n(&["authenticator", "dropped_host_limit"]),
                denied("host_membership_limit"),
                denied("port_channel_limit")
            ),
        ),
        (
            "bounds hit: RADIUS questions, cached answers",
            format!("{} / {}", denied("radius_busy"), n(&["multicast", "tracker", "radius_cache_full"])),
        ),
        (
            "policy catalogue (etcd): revision / refused",
            format!("{} / {}", n(&["catalogue", "revision"]), n(&["catalogue", "refused"])),
        ),
        ("accounting backlog", n(&["accounting", "backlog"])),
        (
            "journal records / commit failures",
            format!(
                "{} / {}",
                n(&["accounting", "journal", "records"]),
                n(&["accounting", "journal", "commit_failures"])
            ),
        ),
        (
            "CoA/Disconnect acks / naks / dropped",
            format!(
                "{} / {} / {}",
                n(&["dynamic_authorization", "acks"]),
                n(&["dynamic_authorization", "naks"]),
                n(&["dynamic_authorization", "dropped"])
            ),
        ),
    ];
    rows.iter().map(|(k, v)| format!("{k:<44} {v}\n")).collect()
}

/// A subscriber's string (an account is whatever identity a supplicant or a server sent)
/// as a table cell: control characters escaped, so that none can move the cursor, clear
/// the screen or forge a line of the operator's terminal.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// `2026-11-23T21:50:04Z` from unix seconds (UTC, proleptic Gregorian).
fn format_unix(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `value` as pretty JSON on stdout, written as it is encoded (a listing of 256 000
/// memberships is 80 MB).
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        use super::printable;
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("bob\u{1b}[2J\nroot"), "bob\\u{1b}[2J\\nroot");
    }

    #[test]
    fn format_unix() {
        assert_eq!(super::format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_unix(1_795_470_604), "2026-11-23T21:50:04Z");
        assert_eq!(super::format_unix(951_782_400), "2000-02-29T00:00:00Z");
    }
}
