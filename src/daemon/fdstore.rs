//! systemd's side of a hand-over: the file descriptor store for `systemctl restart` and
//! the restart after a crash, and [`main_pid`] for `systemctl reload` (`mcgate upgrade`
//! starts the new process beside the main one; the old one makes it the main process).
//!
//! Once set up, the daemon gives the service manager another descriptor of each of its
//! sockets (`FDSTORE=1`), named by what it is ([`name`]). systemd keeps them while the
//! unit restarts — `systemctl restart`, or `Restart=` after a crash or a watchdog
//! timeout — and passes them to the next process (`LISTEN_FDS`, `LISTEN_FDNAMES`), which
//! takes them over as a hand-over does: what arrived meanwhile waits in their rings and
//! queues and is read then. On SIGTERM the daemon also stops its readers, commits, and
//! leaves the state its store lacks ([`handover::Package`], with the rings' read
//! positions) as a memory file named [`PACKAGE`]; it waits until systemd has it
//! (`BARRIER=1`: a message from a process that exited first may be dropped — measured),
//! then exits. The next process reads it and removes it from the store at once, so
//! that a later crash does not read it again. After a crash there is none: the read
//! positions are found as a standby finds them, logins under way start again, and the
//! requests in flight are asked anew; the delivery marks not yet stored come from a
//! second memory file ([`Marks`]) the daemon keeps current.
//!
//! A `systemctl stop` empties the store (systemd closes the descriptors once the unit is
//! stopped with no job queued); so does a socket the kernel reports an error or hang-up
//! on (systemd polls them): the next start opens a new one. Names are ASCII without `:`
//! (LISTEN_FDNAMES' separator) and far below systemd's 255 characters.
//!
//! Hand-written: sd-notify passes the messages and reads the variables; what the names
//! mean and when to store what is mcgate's own.

use super::handover::{self, Fd, Package, Taken};
use super::*;
use sd_notify::NotifyState;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd as _;

/// The name of the memory file that holds the state at a stop.
pub const PACKAGE: &str = "package";
/// The name of the memory file that holds the delivery marks not yet stored ([`Marks`]).
pub const MARKS: &str = "marks";
/// The marks file's bound, where it is read.
const MAX_MARKS: u64 = 16 << 20;
/// Descriptors taken from the store at most (the unit's FileDescriptorStoreMax).
const MAX_FDS: usize = 4096;
/// How long to wait for systemd to have read what was sent.
const BARRIER: Duration = Duration::from_secs(5);

/// The store's name of a socket: what it is, without the read position.
pub fn name(fd: &Fd) -> String {
    let addr = |a: &SocketAddr| format!("{}_{}", a.ip().to_string().replace(':', "-"), a.port());
    match fd {
        Fd::Capture { ifindex, frames, .. } => format!("capture_{ifindex}_{frames}"),
        Fd::Uplink { ifindex } => format!("uplink_{ifindex}"),
        Fd::Radius { server } => format!("radius_{}", addr(server)),
        Fd::Accounting { server } => format!("accounting_{}", addr(server)),
        Fd::Das { listen } => format!("das_{}", addr(listen)),
        Fd::Metrics { listen } => format!("metrics_{}", addr(listen)),
        Fd::Kernel => "kernel".into(),
        Fd::Control => "control".into(),
    }
}

/// What a store's name says the socket is (a capture socket's read position unknown).
pub fn parse(name: &str) -> Option<Fd> {
    let mut parts = name.split('_');
    let (kind, a, b) = (parts.next()?, parts.next(), parts.next());
    if parts.next().is_some() {
        return None;
    }
    let addr = || -> Option<SocketAddr> {
        let ip: IpAddr = a?.replace('-', ":").parse().ok()?;
        Some(SocketAddr::new(ip, b?.parse().ok()?))
    };
    let fd = match (kind, a, b) {
        ("capture", Some(i), Some(f)) => Fd::Capture { ifindex: i.parse().ok()?, frames: f.parse().ok()?, head: 0 },
        ("uplink", Some(i), None) => Fd::Uplink { ifindex: i.parse().ok()? },
        ("radius", ..) => Fd::Radius { server: addr()? },
        ("accounting", ..) => Fd::Accounting { server: addr()? },
        ("das", ..) => Fd::Das { listen: addr()? },
        ("metrics", ..) => Fd::Metrics { listen: addr()? },
        ("kernel", None, None) => Fd::Kernel,
        ("control", None, None) => Fd::Control,
        _ => return None,
    };
    Some(fd)
}

/// Whether a service manager listens (`NOTIFY_SOCKET`): only then is anything stored.
pub fn on() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// What systemd's store passed this process.
#[derive(Default)]
pub struct Stored {
    /// Its sockets, and the state the process before left at its stop; none when it
    /// passed no socket (a first start).
    pub taken: Option<Taken>,
    /// The delivery marks' file ([`Marks`]).
    pub marks: Option<std::fs::File>,
}

/// What the store passed this process (nothing when not under systemd). Descriptors it
/// does not know are closed.
pub fn take() -> anyhow::Result<Stored> {
    if !on() {
        return Ok(Stored::default());
    }
    let mut fds = Vec::new();
    let (mut package, mut marks) = (None, None);
    for (fd, name) in sys::listen_fds(MAX_FDS).context("the descriptors systemd passed")? {
        if name == MARKS {
            marks = Some(std::fs::File::from(fd));
        } else if name == PACKAGE {
            package = read_package(fd.into())
                .inspect_err(|e| warn!("the state the stopped process left is unreadable, starting without it: {e:#}"))
                .ok();
        } else if let Some(kind) = parse(&name) {
            fds.push((kind, Some(fd)));
        } else {
            warn!(name, "a descriptor systemd passed that is not mcgate's: closed");
        }
    }
    if package.is_some() {
        // read once: a crash after this must not take it for its own
        remove(PACKAGE);
    }
    if fds.is_empty() {
        return Ok(Stored { taken: None, marks });
    }
    // the read positions the stopped process left; found when it left none (a crash) or
    // not for every ring
    let mut heads_known = package.is_some();
    for (kind, _) in &mut fds {
        if let Fd::Capture { ifindex, head, .. } = kind {
            let left = package.as_ref().and_then(|p: &Package| {
                p.fds.iter().find_map(|f| match f {
                    Fd::Capture { ifindex: i, head, .. } if i == ifindex => Some(*head),
                    _ => None,
                })
            });
            heads_known &= left.is_some();
            *head = left.unwrap_or(0);
        }
    }
    info!(
        sockets = fds.len(),
        state = package.is_some(),
        "systemd's descriptor store passed the sockets{}",
        if heads_known { "" } else { " (no state: the process before did not stop cleanly)" }
    );
    Ok(Stored { taken: Some(Taken::from_store(package, fds, heads_known)), marks })
}

/// The delivery marks not stored yet (records the servers acknowledged, marked at the
/// next commit), in a memory file the store holds and the daemon rewrites after each
/// step that changed them: after a crash, which leaves no state, the next process does
/// not send those records again (a hot standby is told them the same way).
pub struct Marks {
    file: std::fs::File,
    written: Vec<u64>,
}

impl Marks {
    /// The store's file and the marks the process before left in it, or a new file given
    /// to the store (none when that fails: logged, the daemon runs on without).
    pub fn open(stored: Option<std::fs::File>) -> (Option<Marks>, Vec<u64>) {
        if let Some(file) = stored {
            let found = read_marks(&file).unwrap_or_else(|e| {
                warn!("the delivery marks the process before left are unreadable: {e:#}");
                vec![]
            });
            return (Some(Marks { file, written: found.clone() }), found);
        }
        // the store's marks, if it has any, are not this process's (it came by a
        // hand-over): one file of them at a time
        let made = sys::memfd(c"mcgate-marks").and_then(|file| {
            sd_notify::notify(false, &[NotifyState::FdStoreRemove, NotifyState::FdName(MARKS)])?;
            store(MARKS, file.as_fd())?;
            Ok(file)
        });
        match made {
            Ok(file) => (Some(Marks { file, written: vec![] }), vec![]),
            Err(e) => {
                warn!("no delivery marks file in systemd's store: {e}");
                (None, vec![])
            }
        }
    }

    /// Rewrites the file when `marks` differ from what it holds (compared without a copy:
    /// this runs after every step).
    pub fn write(&mut self, marks: impl Iterator<Item = u64> + Clone) {
        use std::os::unix::fs::FileExt as _;
        if marks.clone().eq(self.written.iter().copied()) {
            return;
        }
        let marks: Vec<u64> = marks.collect();
        // over the old content, then cut: a crash half-way leaves what does not parse
        // (read as none), never other records' marks
        let bytes = serde_json::to_vec(&marks).unwrap_or_default();
        match self.file.write_all_at(&bytes, 0).and_then(|()| self.file.set_len(bytes.len() as u64)) {
            Ok(()) => self.written = marks,
            Err(e) => warn!("writing the delivery marks to systemd's store: {e}"),
        }
    }
}

/// A memory file's content from its start (its offset is where the writer left it), at
/// most `max` octets.
fn read_all(file: &std::fs::File, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    if len > max {
        return Err(anyhow!("{len} octets (at most {max})"));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

fn read_marks(file: &std::fs::File) -> anyhow::Result<Vec<u64>> {
    let bytes = read_all(file, MAX_MARKS)?;
    if bytes.is_empty() {
        return Ok(vec![]);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

fn read_package(file: std::fs::File) -> anyhow::Result<Package> {
    let package: Package = serde_json::from_slice(&read_all(&file, handover::MAX_PACKAGE as u64)?)?;
    if !(handover::OLDEST..=handover::VERSION).contains(&package.version) {
        return Err(anyhow!(
            "format {}: this release reads {} to {}",
            package.version,
            handover::OLDEST,
            handover::VERSION
        ));
    }
    Ok(package)
}

/// Gives systemd `fd` to keep under `name`.
fn store(name: &str, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    sd_notify::notify_with_fds(false, &[NotifyState::FdStore, NotifyState::FdName(name)], &[fd])
}

/// Gives systemd another descriptor of each socket (`sockets`: what each is); one it
/// holds already it keeps once. Failures are logged: the daemon runs on, a restart then
/// opens what is missing.
pub fn keep(sockets: &[(Fd, std::os::fd::BorrowedFd<'_>)]) {
    if !on() {
        return;
    }
    let mut failed = 0;
    for (kind, fd) in sockets {
        let name = name(kind);
        if let Err(e) = store(&name, *fd) {
            failed += 1;
            warn!(socket = name, "storing a socket with systemd: {e}");
        }
    }
    debug!(sockets = sockets.len(), failed, "sockets in systemd's descriptor store");
}

/// Takes the socket named `name` out of the store.
pub fn remove(name: &str) {
    let states = [NotifyState::FdStoreRemove, NotifyState::FdName(name)];
    if let Err(e) = sd_notify::notify(false, &states).and_then(|()| barrier()) {
        warn!(name, "removing a socket from systemd's store: {e}");
    }
}

/// Leaves the state the store lacks for the next process, and waits until systemd has it.
pub fn leave(package: &Package) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = sys::memfd(c"mcgate-package")?;
    file.write_all(&serde_json::to_vec(package)?)?;
    store(PACKAGE, file.as_fd())?;
    barrier()?;
    Ok(())
}

/// Tells systemd that `pid` (the process this one hands over to) is the unit's main
/// process from now on, and waits until it has the message: a hand-over under systemd
/// (`mcgate upgrade` from `ExecReload=`: the new process is in the unit's control group).
pub fn main_pid(pid: u32) {
    if !on() {
        return;
    }
    match sd_notify::notify(false, &[NotifyState::MainPid(pid)]).and_then(|()| barrier()) {
        Ok(()) => info!(pid, "systemd told the new process is the unit's main process"),
        Err(e) => warn!(pid, "telling systemd the new main process: {e}"),
    }
}

/// Returns once systemd has handled every message this process sent before
/// (sd_notify_barrier(3): it closes the pipe's end passed with `BARRIER=1`).
fn barrier() -> std::io::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    sd_notify::notify_with_fds(false, &[NotifyState::Custom("BARRIER=1")], &[writer.as_fd()])?;
    drop(writer);
    if sys::wait_readable(&reader, BARRIER)? {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("systemd did not confirm within {BARRIER:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_has_a_name_that_says_what_it_is() {
        let all = [
            Fd::Capture { ifindex: 12, frames: 1024, head: 0 },
            Fd::Uplink { ifindex: 7 },
            Fd::Radius { server: "127.0.0.1:1812".parse().unwrap() },
            Fd::Accounting { server: "[2001:db8::1]:1813".parse().unwrap() },
            Fd::Das { listen: "[::]:3799".parse().unwrap() },
            Fd::Metrics { listen: "0.0.0.0:9100".parse().unwrap() },
            Fd::Kernel,
            Fd::Control,
        ];
        for fd in all {
            let n = name(&fd);
            assert!(n.len() < 255 && n.is_ascii() && !n.contains(':') && n != PACKAGE, "{n}");
            assert_eq!(parse(&n), Some(fd), "{n}");
        }
        assert_eq!(name(&Fd::Capture { ifindex: 3, frames: 64, head: 17 }), "capture_3_64", "no read position");
        for bad in ["", "capture_1", "capture_x_2", "uplink_1_2", "radius_1.2.3.4", "radius_nope_1", "kernel_1", "x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
