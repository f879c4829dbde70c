//! Hand-over: a second `mcgate run` with the same configuration takes over from the
//! running one, and no frame, RADIUS exchange or client connection is lost on the way.
//!
//! The new process asks on the control socket (`{"cmd":"hand-over","version":N}`, root or
//! mcgate's user only). The running one stops its readers (a capture task finishes the
//! batch it took from its ring; nothing is read after), handles what they had read,
//! commits, and passes on over that connection:
//!
//! - its sockets, as descriptors of the same open sockets (SCM_RIGHTS): the capture
//!   sockets with their rings (and the slot its reader reads next), the uplinks' sending
//!   sockets, the RADIUS and accounting client sockets, the CoA socket, the kernel's event
//!   socket, and the control and metrics listeners. What arrives meanwhile waits in their
//!   queues and rings and is read by the new process;
//! - the state that is not in the store ([`Package`], JSON): the authenticator's hosts
//!   in whatever state they are (an EAP conversation half-way, a hold, re-authentication
//!   timers), the RADIUS requests in flight with their identifiers and octets (a server
//!   that answered already answers a retransmission from its duplicate cache), and the
//!   accounting requests in flight, which the new process does not send again.
//!
//! Then it closes its store and exits once the new process says it has everything; the
//! new one opens the store (sessions, memberships and the journal as committed) and goes
//! on. The kernel's state is not touched: streams keep flowing throughout.
//!
//! Also the multicast tracker's state the store lacks (each membership's deadlines, the
//! per-join questions in flight and who waits on them, cached answers, previews,
//! admission buckets), the CoA server's requests seen, and the capture tasks' flood
//! limiters. A standby follows neither (see [`Daemon::snapshot`]).
//!
//! A hot standby (`mcgate run --standby`) gets the same sockets when it registers and
//! then, after every step that changed it, the state the store lacks ([`Follow`]); when
//! the daemon's connection ends it takes over with what it holds ([`follow`];
//! docs/architecture.md "Hot standby").
//!
//! The format is versioned (docs/architecture.md "Hand-over"): a release reads its own
//! format and the previous release's, and the running process refuses a new process
//! that cannot read its format (a downgrade is a plain restart).
//!
//! Hand-written: no crate passes a process's sockets and state to its successor; the
//! descriptors go with nix's sendmsg/recvmsg (src/sys.rs), the state with serde.

use super::fdstore;
use super::*;
use serde::Deserialize;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// The format this release writes.
pub const VERSION: u32 = 1;
/// The oldest format this release reads.
pub const OLDEST: u32 = 1;
/// Descriptors passed at most: the kernel's SCM_MAX_FD.
pub const MAX_FDS: usize = 253;
/// The state's bound, where it is read.
pub const MAX_PACKAGE: usize = 256 << 20;
/// How long the old process waits for the new one to confirm, and the new one for the
/// old one to stop and pass everything on.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// After the active process died, how long its standby waits for replies to the
/// RADIUS requests it took over before it sends each again (once; the timers go on
/// after): a reply the dead process read is gone, and its request would wait for the
/// timeout. A reply still on its way comes within the server's round trip (on the
/// loopback here 0.5 ms median, 7 ms at most, in the hand-over bench); one asked for
/// again too early costs a datagram, as the server drops a duplicate of a request it
/// still works on and answers one it answered from its cache (RFC 5080 2.2.2).
pub const RESEND_AFTER_DEATH: Duration = Duration::from_millis(50);

/// The sockets passed on, each with what it is (taken out one by one).
pub(super) type Sockets = Vec<(Fd, Option<OwnedFd>)>;

/// What a running mcgate passes on besides its sockets.
#[derive(Serialize, Deserialize)]
pub(super) struct Package {
    pub version: u32,
    /// The process that handed over.
    pub pid: u32,
    /// What each descriptor passed with it is, in order.
    pub fds: Vec<Fd>,
    /// Its ports (name, tag) in configured order: the authenticator's state is taken
    /// over only by a configuration with the same ones.
    pub ports: Vec<(String, Option<u16>)>,
    pub auth: auth::Snapshot,
    /// Its RADIUS client's requests in flight (the authenticator's).
    pub radius: rc::Snapshot<RadiusFor>,
    /// The accounting client's requests in flight, named by journal sequence number.
    #[serde(default)]
    pub accounting: Option<rc::Snapshot<u64>>,
    /// Records the servers acknowledged whose marks are not stored yet (a standby's
    /// state: a hand-over stores them first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<u64>,
    /// The multicast tracker's (not a standby's: it changes with every join, which a
    /// standby is not told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<crate::mcast::Snapshot>,
    /// The CoA server's requests seen (not a standby's: up to 4 096 requests with their
    /// answers, copied after every step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub das: Option<das::Snapshot>,
    /// The capture tasks' flood limiters, by interface (a hand-over's, once the tasks
    /// stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limiters: Vec<(u32, crate::capture::limit::Snapshot)>,
}

/// A socket passed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(super) enum Fd {
    /// An access port's capture socket and its ring of `frames` slots, read next at `head`.
    Capture {
        ifindex: u32,
        frames: usize,
        head: usize,
    },
    /// An uplink's socket for sending (a process that closes an AF_PACKET socket waits
    /// for an RCU grace period, ~11 ms here: a dying daemon's standby holds these too,
    /// so that its exit does not close them).
    Uplink {
        ifindex: u32,
    },
    Radius {
        server: SocketAddr,
    },
    Accounting {
        server: SocketAddr,
    },
    Das {
        listen: SocketAddr,
    },
    Kernel,
    Control,
    Metrics {
        listen: SocketAddr,
    },
}

/// The old process's side: the package's octets and the descriptors.
pub(super) struct Outgoing {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    pub version: u32,
    /// Told when the new process confirmed (true) or went away (false); none for a
    /// standby.
    pub done: Option<oneshot::Sender<bool>>,
}

/// The first line with the descriptors attached, then the package. A message carries
/// at most [`MAX_FDS`] descriptors (more, and sendmsg fails: a switch with 1 000 ports
/// could not hand over nor have a standby), so each [`MAX_FDS`] go with one octet of
/// the line and the last of them with the rest; the new process reads until the line
/// is whole. With up to [`MAX_FDS`] this is the one message it always was.
async fn write_out(w: &mut tokio::net::unix::OwnedWriteHalf, out: &Outgoing) -> std::io::Result<()> {
    let head = control::Response::HandOver { version: out.version, fds: out.fds.len(), length: out.bytes.len() };
    let mut line = serde_json::to_vec(&head).unwrap_or_default();
    line.push(b'\n');
    let chunks: Vec<&[OwnedFd]> = if out.fds.is_empty() { vec![&[]] } else { out.fds.chunks(MAX_FDS).collect() };
    if chunks.len() > line.len() {
        return Err(std::io::Error::other(format!("{} sockets are more than a hand-over passes", out.fds.len())));
    }
    let sock = w.as_ref();
    let mut at = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let end = if i + 1 == chunks.len() { line.len() } else { at + 1 };
        let part = &line[at..end];
        at += sock.async_io(tokio::io::Interest::WRITABLE, || crate::sys::send_with_fds(sock, part, chunk)).await?;
    }
    w.write_all(&line[at..]).await?;
    w.write_all(&out.bytes).await
}

/// Writes the hand-over on the connection that asked for it: the first line with the
/// descriptors, the package, then waits for the new process's `taken`. Under systemd the
/// asking process (`pid`) becomes the unit's main process first.
pub(super) async fn send<R>(r: &mut R, w: &mut tokio::net::unix::OwnedWriteHalf, out: Outgoing, pid: Option<u32>)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    if let Some(pid) = pid {
        fdstore::main_pid(pid);
    }
    let sent = async {
        write_out(w, &out).await?;
        let mut ack = String::new();
        r.read_line(&mut ack).await?;
        Ok::<_, std::io::Error>(ack.trim() == "taken")
    };
    let taken = match tokio::time::timeout(TIMEOUT, sent).await {
        Ok(Ok(taken)) => taken,
        Ok(Err(e)) => {
            error!("hand-over: {e}");
            false
        }
        Err(_) => {
            error!("hand-over: the new process did not confirm within {TIMEOUT:?}");
            false
        }
    };
    if let Some(done) = out.done {
        let _ = done.send(taken);
    }
}

/// The new process's side: what it was handed.
pub(super) struct Taken {
    /// Taken by the core when it is built.
    pub package: Option<Package>,
    fds: Sockets,
    from: From,
}

/// Where the sockets came from.
enum From {
    /// The old process, which waits for the word.
    Process(std::os::unix::net::UnixStream),
    /// A standby's daemon that died: its rings' read positions are to be found.
    Dead,
    /// systemd's descriptor store ([`fdstore`]); the read positions are known when the
    /// process before left them at its stop.
    Store { heads_known: bool },
}

impl Taken {
    pub fn from_store(package: Option<Package>, fds: Sockets, heads_known: bool) -> Self {
        Taken { package, fds, from: From::Store { heads_known } }
    }

    /// The process before died: what it handed over is a standby's latest state.
    pub fn died(&self) -> bool {
        matches!(self.from, From::Dead)
    }

    /// The capture rings' read positions are known: the old process handed them over
    /// alive (not a take-over from a process that died, whose positions are to be found).
    pub fn heads_known(&self) -> bool {
        match self.from {
            From::Process(_) => true,
            From::Dead => false,
            From::Store { heads_known } => heads_known,
        }
    }

    /// Whether a socket of `kind` is here to take.
    pub fn has(&self, kind: impl Fn(&Fd) -> bool) -> bool {
        self.fds.iter().any(|(f, fd)| fd.is_some() && kind(f))
    }

    /// The socket passed on as `kind` (each once).
    pub fn take(&mut self, kind: impl Fn(&Fd) -> bool) -> Option<(Fd, OwnedFd)> {
        let (f, fd) = self.fds.iter_mut().find(|(f, fd)| fd.is_some() && kind(f))?;
        Some((f.clone(), fd.take()?))
    }

    /// Tells the old process it may go; the sockets it passed and nobody took close
    /// (and leave systemd's store).
    pub fn confirm(mut self) {
        for (f, fd) in &self.fds {
            if fd.is_some() {
                info!(socket = ?f, "hand-over: a socket this configuration does not use is closed");
                if matches!(self.from, From::Store { .. }) {
                    fdstore::remove(&fdstore::name(f));
                }
            }
        }
        if let From::Process(s) = &mut self.from {
            if let Err(e) = s.write_all(b"taken\n") {
                warn!("hand-over: telling the old process: {e}");
            }
        }
    }
}

/// A connection to a running mcgate, which is asked to hand over once this process's
/// own set-up is done.
pub(super) struct Asking(std::os::unix::net::UnixStream);

/// Connects to a running mcgate on `socket`; `None` when none runs.
pub(super) fn connect(socket: &std::path::Path) -> anyhow::Result<Option<Asking>> {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => {
            info!(socket = %socket.display(), "an mcgate is running: it hands over once this one is set up");
            Ok(Some(Asking(s)))
        }
        Err(e) if matches!(e.kind(), NotFound | ConnectionRefused) => Ok(None),
        Err(e) => Err(anyhow!("control socket {}: {e}", socket.display())),
    }
}

impl Asking {
    /// Asks for the hand-over and receives it; `None` when the running process went
    /// away meanwhile without an answer (a plain start follows).
    pub fn request(self) -> anyhow::Result<Option<Taken>> {
        let mut s = self.0;
        s.set_read_timeout(Some(TIMEOUT))?;
        if !ask(&mut s, &Request::HandOver { version: VERSION, oldest: OLDEST })? {
            warn!("the running mcgate went away before it was asked: starting on its own");
            return Ok(None);
        }
        let Some((package, fds)) = receive(&mut s, "hand over")? else {
            warn!("the running mcgate went away before it answered: starting on its own");
            return Ok(None);
        };
        info!(from = package.pid, sockets = package.fds.len(), "hand-over received");
        Ok(Some(Taken { package: Some(package), fds, from: From::Process(s) }))
    }
}

/// Why a process that reads hand-over formats `formats` cannot take this release's
/// (`who`: the new process, the standby).
pub(super) fn unreadable(formats: &std::ops::RangeInclusive<u32>, who: &str) -> Option<String> {
    (!formats.contains(&VERSION))
        .then(|| format!("this mcgate writes hand-over format {VERSION}, {who} reads {formats:?}"))
}

/// Writes a request line; false when the peer is gone.
fn ask(s: &mut std::os::unix::net::UnixStream, req: &Request) -> anyhow::Result<bool> {
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    match s.write_all(&line) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => Ok(false),
        r => r.map(|_| true).map_err(Into::into),
    }
}

/// Reads the answer to a hand-over or standby request: the first line with the sockets,
/// then the package; `None` when the peer closed without a word.
fn receive(s: &mut std::os::unix::net::UnixStream, what: &str) -> anyhow::Result<Option<(Package, Sockets)>> {
    let mut buf = vec![0u8; 64 << 10];
    let (n, mut fds) = crate::sys::recv_with_fds(&*s, &mut buf, MAX_FDS).context("receiving the sockets")?;
    if n == 0 {
        return Ok(None);
    }
    let mut got = buf[..n].to_vec();
    // the first line (the rest of it, when the first read cut it off), with the
    // descriptors of every message it came in (see `write_out`)
    while !got.contains(&b'\n') {
        if got.len() > 64 << 10 {
            return Err(anyhow!("hand-over: a first line over 64 KiB"));
        }
        let (n, more) = crate::sys::recv_with_fds(&*s, &mut buf, MAX_FDS).context("receiving the sockets")?;
        if n == 0 {
            return Err(anyhow!("hand-over: the running mcgate closed the connection"));
        }
        got.extend_from_slice(&buf[..n]);
        fds.extend(more);
    }
    let end = got.iter().position(|b| *b == b'\n').unwrap_or(got.len());
    let (length, version) = match serde_json::from_slice(&got[..end])? {
        control::Response::HandOver { version, fds: count, length } if count == fds.len() => (length, version),
        control::Response::HandOver { fds: count, .. } => {
            return Err(anyhow!("hand-over: {count} sockets announced, {} came", fds.len()))
        }
        control::Response::Error { message } => return Err(anyhow!("the running mcgate refused to {what}: {message}")),
        other => return Err(anyhow!("hand-over: unexpected answer {other:?}")),
    };
    if !(OLDEST..=VERSION).contains(&version) {
        return Err(anyhow!("hand-over format {version}: this release reads {OLDEST} to {VERSION}"));
    }
    if length > MAX_PACKAGE {
        return Err(anyhow!("hand-over: a state of {length} octets (at most {MAX_PACKAGE})"));
    }
    let mut bytes = got.split_off(end + 1);
    if bytes.len() > length {
        return Err(anyhow!("hand-over: more octets than announced"));
    }
    let rest = length - bytes.len();
    bytes.reserve(rest);
    (&mut *s).take(rest as u64).read_to_end(&mut bytes)?;
    if bytes.len() != length {
        return Err(anyhow!("hand-over: {} of {length} octets came", bytes.len()));
    }
    let package: Package = serde_json::from_slice(&bytes).context("hand-over: the state")?;
    if package.fds.len() != fds.len() {
        return Err(anyhow!("hand-over: {} sockets described, {} came", package.fds.len(), fds.len()));
    }
    let fds = package.fds.iter().cloned().zip(fds.into_iter().map(Some)).collect();
    Ok(Some((package, fds)))
}

/// What the running process sends its standby after the sockets and the first state, a
/// line each.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(super) enum Follow {
    /// The state its store lacks, as of its last step.
    State(Box<Package>),
    /// It hands over to a new process: follow that one.
    Moving,
}

/// Serves a standby on the connection that asked: the sockets and the first state, then
/// each new state (`updates`, the latest only: a standby that reads slowly skips
/// states, never the last one) until either side goes.
pub(super) async fn serve_standby<R>(
    r: &mut R,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    out: Outgoing,
    mut updates: tokio::sync::watch::Receiver<Arc<Vec<u8>>>,
) where
    R: tokio::io::AsyncBufRead + Unpin,
{
    if let Err(e) = write_out(w, &out).await {
        warn!("standby: {e}");
        return;
    }
    drop(out.fds);
    let mut ignored = String::new();
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let mut update = updates.borrow_and_update().as_ref().clone();
                update.push(b'\n');
                if !matches!(tokio::time::timeout(TIMEOUT, w.write_all(&update)).await, Ok(Ok(()))) {
                    warn!("standby: it stopped reading; no longer followed");
                    return;
                }
            }
            // the standby says nothing more: a read that ends is the standby gone
            _ = r.read_line(&mut ignored) => {
                info!("standby gone");
                return;
            }
        }
    }
}

/// Follows the running mcgate as its standby, holding its sockets, until it is gone
/// (its connection ends: noticed at once); returns what it held then. When it hands
/// over, follows the new process.
pub(super) fn follow(socket: &std::path::Path, first: Asking) -> anyhow::Result<Taken> {
    use std::io::BufRead as _;
    let mut s = first.0;
    loop {
        s.set_read_timeout(Some(TIMEOUT))?;
        if !ask(&mut s, &Request::Standby { version: VERSION, oldest: OLDEST })? {
            return Err(anyhow!("the running mcgate went away before it was asked to be followed"));
        }
        let Some((mut latest, fds)) = receive(&mut s, "be followed")? else {
            return Err(anyhow!("the running mcgate went away before it answered"));
        };
        info!(active = latest.pid, sockets = fds.len(), "standby: following; its sockets held");
        s.set_read_timeout(None)?;
        let mut lines = std::io::BufReader::new(s.try_clone()?);
        let mut line = Vec::new();
        let moving = loop {
            line.clear();
            match (&mut lines).take(MAX_PACKAGE as u64).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break false,
                Ok(_) => match serde_json::from_slice::<Follow>(&line) {
                    Ok(Follow::State(p)) => latest = *p,
                    Ok(Follow::Moving) => break true,
                    Err(e) => warn!("standby: an update not understood, kept the one before: {e}"),
                },
            }
        };
        if !moving {
            warn!(active = latest.pid, "standby: the active mcgate is gone; taking over");
            return Ok(Taken { package: Some(latest), fds, from: From::Dead });
        }
        info!(active = latest.pid, "standby: the active mcgate hands over; following the new one");
        drop(fds);
        // the listener came along: the new process's backlog holds this connection
        s = std::os::unix::net::UnixStream::connect(socket)
            .with_context(|| format!("standby: reconnecting to {}", socket.display()))?;
    }
}

impl Daemon {
    /// What a hand-over carries of the core (its sockets are the caller's): every host,
    /// or with `unstored_only` what a restart from the store would not make again (a
    /// standby's state).
    pub(super) fn snapshot(&self, fds: Vec<Fd>, unstored_only: bool) -> Package {
        Package {
            version: VERSION,
            pid: std::process::id(),
            fds,
            ports: self.ports.iter().map(|p| (p.name.clone(), p.tag)).collect(),
            auth: self.auth.snapshot(unstored_only),
            // per-join questions only with the tracker, whose waiters they answer
            radius: self.radius.snapshot(|t| !unstored_only || matches!(t, RadiusFor::Auth(_))),
            accounting: self.acct.delivery.as_ref().map(|d| d.client.snapshot(|_| true)),
            delivered: self.acct.unstored_marks().collect(),
            tracker: self.mcast.as_ref().filter(|_| !unstored_only).map(|m| m.tracker.snapshot()),
            das: self.das.as_ref().filter(|_| !unstored_only).map(das::Das::snapshot),
            limiters: vec![],
        }
    }

    /// What a process that goes passes on (`fds`: its sockets, the readers stopped and
    /// the last step committed; `limiters`: theirs): the drops counted so far, the
    /// delivery marks stored, every host.
    pub(super) fn last_package(&mut self, fds: Vec<Fd>, limiters: Vec<(u32, limit::Snapshot)>) -> Package {
        self.fold_capture_drops();
        self.commit_delivery_marks();
        Package { limiters, ..self.snapshot(fds, false) }
    }

    /// Goes on from a hand-over: before the first step, after the store's state was
    /// restored. `died`: the package is a standby's latest and the process that made it
    /// died; what it was waiting for from RADIUS is asked again soon (see
    /// [`RESEND_AFTER_DEATH`]).
    pub(super) fn take_over(&mut self, p: Package, died: bool) {
        let resend_by = died.then(|| self.clock.instant(self.epoch) + RESEND_AFTER_DEATH);
        let ports: Vec<(String, Option<u16>)> = self.ports.iter().map(|p| (p.name.clone(), p.tag)).collect();
        let (hosts, requests) = (p.auth.authenticating(), p.radius.requests());
        let mut questions = 0;
        if ports == p.ports {
            let asked: Vec<u64> = (p.radius.tokens())
                .filter_map(|t| match t {
                    RadiusFor::PerJoin(token) => Some(*token),
                    RadiusFor::Auth(_) => None,
                })
                .collect();
            // the tracker's waiters first: a request whose server is gone fails at once
            if let (Some(m), Some(t)) = (self.mcast.as_mut(), p.tracker) {
                questions = m.tracker.take_over(t, &asked);
            }
            self.auth.take_over(p.auth);
            self.radius.take_over(p.radius, resend_by);
        } else {
            warn!("hand-over: the ports differ from the old process's; logins under way start again");
        }
        let mut accounting = 0;
        if let (Some(d), Some(snap)) = (self.acct.delivery.as_mut(), p.accounting) {
            accounting = snap.requests();
            d.sender.in_flight_already(snap.in_flight().copied());
            d.client.take_over(snap, resend_by);
        }
        self.acct.delivered_elsewhere(p.delivered);
        if let (Some(das), Some(seen)) = (self.das.as_mut(), p.das) {
            das.take_over(seen);
        }
        info!(
            from = p.pid,
            authenticating = hosts,
            radius_in_flight = requests,
            per_join_questions = questions,
            accounting_in_flight = accounting,
            "taken over"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release reads the previous release's format: the files under
    /// tests/data/handover are packages as earlier releases wrote them, and each must
    /// still be read (a field added since needs a default; see the module's doc).
    #[test]
    fn every_earlier_format_is_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/handover");
        let mut read = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let p: Package = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!((OLDEST..=VERSION).contains(&p.version), "{}", path.display());
            read += 1;
        }
        assert!(read >= 1, "no earlier format in {}", dir.display());
    }

    /// More descriptors than one message carries (a switch with hundreds of ports) come
    /// over in several, each with its part of the first line, all of them in order.
    #[test]
    fn more_sockets_than_one_message_holds_are_all_passed_on() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/handover/1.json");
        let mut package: Package = serde_json::from_slice(&std::fs::read(dir).unwrap()).unwrap();
        let n = 2 * MAX_FDS + 7;
        package.fds = (0..n).map(|_| Fd::Kernel).collect();
        // each descriptor a pipe's read end, told apart by what its write end wrote
        let (readers, writers): (Vec<OwnedFd>, Vec<std::fs::File>) = (0..n)
            .map(|i| {
                let (r, w) = nix::unistd::pipe().unwrap();
                let mut w = std::fs::File::from(w);
                w.write_all(&(i as u32).to_le_bytes()).unwrap();
                (r, w)
            })
            .unzip();
        let out = Outgoing { bytes: serde_json::to_vec(&package).unwrap(), fds: readers, version: VERSION, done: None };
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sender = std::thread::spawn(move || {
            rt.block_on(async {
                a.set_nonblocking(true).unwrap();
                let (_r, mut w) = tokio::net::UnixStream::from_std(a).unwrap().into_split();
                write_out(&mut w, &out).await.unwrap();
            })
        });
        let (got, sockets) = receive(&mut b, "test").unwrap().unwrap();
        sender.join().unwrap();
        drop(writers);
        assert_eq!(got.fds.len(), n);
        for (i, (_, fd)) in sockets.into_iter().enumerate() {
            let mut said = [0u8; 4];
            std::fs::File::from(fd.unwrap()).read_exact(&mut said).unwrap();
            assert_eq!(u32::from_le_bytes(said), i as u32, "descriptor {i} in its place");
        }
    }
}
