//! The control socket: a unix socket for root and the daemon's own user, and for the
//! read-only commands also for the members of `control_group`; one JSON request line in,
//! one JSON response out.
//!
//! Its directory is the daemon's own: created mode 0700 when missing (0711 with a
//! control group, so its members can reach the socket), never chmod-ed when it exists
//! (it may be a shared one such as /run), and refused when others may write in it (they
//! could replace the socket). A file at the socket's path is removed only when it is a
//! socket nobody listens on. The socket is mode 0600, or 0660 and of the control group.
//! Each connection's peer credentials are checked (SO_PEERCRED for the user and primary
//! group, SO_PEERGROUPS for the others, as they were at connect), so the file mode is not
//! the only guard, and every request that changes something is refused to a peer that
//! is only in the group.

use super::Event;
use crate::auth::Method;
use crate::dataplane::PortVlan;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// For the request line to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request line's bound.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Sessions {
        #[serde(default, skip_serializing_if = "Filter::is_empty")]
        only: Filter,
    },
    Memberships {
        #[serde(default, skip_serializing_if = "Filter::is_empty")]
        only: Filter,
    },
    Status,
    /// Journal records from `since` on; `mark`: remember them as exported.
    AcctExport {
        since: u64,
        limit: usize,
        mark: bool,
    },
    /// Forget delivered records below `before` (default: below the export mark).
    AcctPurge {
        before: Option<u64>,
    },
    /// Read the policy files again: all valid, or nothing changes.
    PolicyReload,
    /// End a session (Admin-Reset).
    SessionKick {
        port: String,
        mac: String,
    },
    /// A new mcgate asks to take over (`version`: the newest hand-over format it reads;
    /// see `handover`). Answered with a [`Response::HandOver`] and the sockets.
    HandOver {
        version: u32,
        /// The oldest format it reads.
        #[serde(default)]
        oldest: u32,
    },
    /// A hot standby asks to follow (the formats as for `HandOver`). Answered with the
    /// sockets and the state, then each new state, until either side goes.
    Standby {
        version: u32,
        #[serde(default)]
        oldest: u32,
    },
}

impl Request {
    /// Whether it changes the daemon's state or the journal: for root and the daemon's
    /// user only, not for the read-only control group.
    pub fn changes(&self) -> bool {
        match self {
            Request::Sessions { .. } | Request::Memberships { .. } | Request::Status => false,
            Request::AcctExport { mark, .. } => *mark,
            Request::AcctPurge { .. }
            | Request::PolicyReload
            | Request::SessionKick { .. }
            | Request::HandOver { .. }
            | Request::Standby { .. } => true,
        }
    }
}

/// Which sessions or memberships a listing wants (all when empty). The daemon applies
/// it, so one port's listing on an aggregation switch does not carry all 256 000
/// memberships over the socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct Filter {
    /// Only those on this port (`p1`, or `p1:40` for a port's VLAN).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Only those of this MAC address.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<crate::wire::MacAddr>,
    /// Only those of this account.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a row of port `port` (tagged `vlan`), `mac` and `account` is wanted.
    pub fn admits(&self, port: &str, vlan: Option<u16>, mac: crate::wire::MacAddr, account: &str) -> bool {
        self.port.as_ref().is_none_or(|p| p == port || *p == crate::auth::nas_port_id(port, vlan))
            && self.mac.is_none_or(|m| m == mac)
            && self.account.as_ref().is_none_or(|a| a == account)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRow {
    pub port: String,
    pub mac: String,
    pub account: String,
    pub method: String,
    pub state: String,
    pub session_id: String,
    /// Unix seconds.
    pub since: u64,
    /// The VLAN, on a VLAN-filtering bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// On the wire `{"kind": ..., "body": {...}}`, the kind first: an internally tagged enum
/// (the kind among the fields) makes serde buffer the whole answer before it can decode
/// it, a third of the time `memberships` took with 256 000 of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "kebab-case")]
pub enum Response {
    Sessions {
        sessions: Vec<SessionRow>,
    },
    Memberships {
        memberships: Vec<crate::mcast::Membership>,
    },
    Status {
        status: serde_json::Value,
    },
    /// `next`: the cursor to resume from.
    Records {
        records: Vec<crate::acct::Record>,
        next: u64,
    },
    Done {
        message: String,
    },
    Purged {
        purged: usize,
    },
    Error {
        message: String,
    },
    /// The hand-over's first line, sent with the sockets (SCM_RIGHTS): `fds` of them, and
    /// the state in the `length` octets after this line, in format `version`.
    HandOver {
        version: u32,
        fds: usize,
        length: usize,
    },
}

impl super::Daemon {
    pub(super) fn control(&mut self, now: Instant, req: Request) -> Response {
        match req {
            Request::Sessions { only } => {
                let mut sessions: Vec<SessionRow> = self
                    .sessions
                    .iter()
                    .filter(|((port, mac), s)| only.admits(&s.port, self.ports[*port].vlan, *mac, &s.account))
                    .map(|((port, _), s)| SessionRow {
                        port: s.port.clone(),
                        mac: s.mac.to_string(),
                        account: s.account.clone(),
                        method: match s.method {
                            Method::Dot1x => "dot1x".into(),
                            Method::Mab => "mab".into(),
                        },
                        state: "authorized".into(),
                        session_id: s.session_id.clone(),
                        since: s.since,
                        vlan: self.ports[*port].vlan,
                    })
                    .collect();
                sessions.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
                Response::Sessions { sessions }
            }
            Request::Memberships { only } => {
                let mut memberships: Vec<crate::mcast::Membership> = (self.mcast.iter())
                    .flat_map(|m| m.tracker.memberships())
                    .filter(|m| only.admits(&m.port, m.vlan, m.mac, &m.account))
                    .cloned()
                    .collect();
                memberships.sort_unstable_by(|a, b| {
                    (&a.port, a.vlan, &a.mac, a.group, a.source).cmp(&(&b.port, b.vlan, &b.mac, b.group, b.source))
                });
                Response::Memberships { memberships }
            }
            Request::AcctExport { since, limit, mark } => match self.store.export(since, limit, mark) {
                Ok((records, next)) => Response::Records { records, next },
                Err(e) => Response::Error { message: e.to_string() },
            },
            Request::AcctPurge { before } => {
                match self.acct_commit_marks().and_then(|_| self.store.purge_exported(before)) {
                    Ok(purged) => Response::Purged { purged },
                    Err(e) => Response::Error { message: e.to_string() },
                }
            }
            Request::PolicyReload => match self.policy_reload(now) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message: format!("policy not reloaded, nothing changed: {message}") },
            },
            Request::SessionKick { port, mac } => {
                // `port` or `port:vlan`, as `mcgate sessions` shows it
                let named = |p: &super::Port| p.name == port || p.at().to_string() == port;
                let found = self.sessions.keys().find(|(p, m)| named(&self.ports[*p]) && m.to_string() == mac);
                match found.copied() {
                    Some((p, m)) => {
                        self.auth.handle_input(now, crate::auth::Input::Kick { port: p, mac: m });
                        Response::Done { message: format!("session of {mac} on {port} ended") }
                    }
                    None => Response::Error { message: format!("no session of {mac} on {port}") },
                }
            }
            Request::Status => {
                self.read_kernel_counters();
                self.status()
            }
            // the connection's task hands it to the event loop as what it is
            Request::HandOver { .. } | Request::Standby { .. } => {
                Response::Error { message: "a hand-over is not a step's request".into() }
            }
        }
    }

    pub(super) fn status(&self) -> Response {
        Response::Status {
            status: serde_json::json!({
                "uptime_s": self.clock.mono / 1_000_000,
                "ports": self.ports.iter().map(|p| PortVlan::new(&p.name, p.tag).to_string()).collect::<Vec<_>>(),
                "sessions": self.sessions.len(),
                "authenticator": self.auth.stats,
                "radius": self.radius.stats,
                "kernel": self.kernel.stats,
                "radius_pending": self.radius.pending(),
                "radius_servers": self.radius.server_addrs().iter().zip(&self.radius.per_server)
                    .map(|(a, st)| (a.to_string(), st)).collect::<std::collections::BTreeMap<_, _>>(),
                "io": self.io,
                "limits": self.interfaces().map(|p| (p.name.clone(), p.limits.view())).collect::<std::collections::BTreeMap<_, _>>(),
                "dynamic_authorization": self.das.as_ref().map(|d| d.stats()),
                "catalogue": self.catalogue.as_ref().map(|c| &c.stats),
                "accounting": serde_json::json!({
                    "backlog": self.acct.backlog(),
                    "interims_queued": self.acct.interims_queued(),
                    "journal": self.acct.stats,
                    "delivery": self.acct.delivery.as_ref().map(|d| serde_json::json!({
                        "sender": d.sender.stats,
                        "radius": d.client.stats,
                    })),
                }),
                "multicast": self.mcast.as_ref().map(|m| serde_json::json!({
                    "policy": m.policy.version,
                    "memberships": m.tracker.memberships().filter(|m| !m.is_link_local()).count(),
                    "tracker": m.tracker.stats,
                    "io": m.stats,
                })),
            }),
        }
    }
}

/// Nothing listens on the control socket: the daemon is not running. The CLI exits 3
/// for it, as an LSB init script's `status` does for a stopped service.
#[derive(Debug, thiserror::Error)]
#[error("mcgate is not running (nothing listens on {})", .0.display())]
pub struct NotRunning(pub std::path::PathBuf);

/// Sends one request to a running daemon.
pub fn client_request(socket: &std::path::Path, req: &Request) -> anyhow::Result<Response> {
    use std::io::ErrorKind::{ConnectionRefused, NotFound, PermissionDenied};
    use std::io::{BufRead, Write};
    let mut s = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), NotFound | ConnectionRefused) => return Err(NotRunning(socket.into()).into()),
        Err(e) if e.kind() == PermissionDenied => {
            return Err(anyhow::anyhow!(
                "control socket {}: permission denied: it is for root, mcgate's user and the members of control_group",
                socket.display()
            ))
        }
        // a socket there that this user may not use, say: not "not running"
        Err(e) => return Err(anyhow::anyhow!("control socket {}: {e}", socket.display())),
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    std::io::BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}

/// Binds the control socket at `path` (see the module's doc for the rules), for the
/// read-only commands also of the group `group`.
pub(super) fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    use anyhow::{bail, Context as _};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => bail!("control socket {}: {} is not a directory", path.display(), dir.display()),
        Ok(m) if m.mode() & 0o022 != 0 => bail!(
            "control socket {}: others may write in {} (mode {:o}); give the socket a directory of its own",
            path.display(),
            dir.display(),
            m.mode() & 0o7777
        ),
        Ok(m) => {
            if let Some(gid) = group.filter(|gid| !reachable_by(m.mode(), m.gid(), *gid)) {
                warn!(
                    "control socket {}: members of control_group (gid {gid}) cannot reach it: {} is mode {:o} of group {}",
                    path.display(),
                    dir.display(),
                    m.mode() & 0o7777,
                    m.gid()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(if group.is_some() { 0o711 } else { 0o700 })
            .create(dir)
            .with_context(|| format!("control socket directory {}", dir.display()))?,
        Err(e) => bail!("control socket directory {}: {e}", dir.display()),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            bail!("control socket {}: the file there is not a socket; not removing it", path.display())
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            bail!("control socket {}: another process listens on it (is mcgate already running?)", path.display())
        }
        Ok(_) => std::fs::remove_file(path).with_context(|| format!("stale control socket {}", path.display()))?,
        Err(_) => {}
    }
    let l = UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "control socket {}: cannot give it to control_group (gid {gid}); the daemon's user must be \
                 a member of it (under systemd: SupplementaryGroups= in a drop-in, systemctl edit mcgate)",
                path.display()
            )
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(l)
}

/// Whether members of group `gid` may pass through a directory of `mode` and group `dir_gid`.
fn reachable_by(mode: u32, dir_gid: u32, gid: u32) -> bool {
    mode & 0o001 != 0 || (mode & 0o010 != 0 && dir_gid == gid)
}

/// What a connection's peer may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Root or the daemon's own user: everything.
    Full,
    /// A member of the control group: what changes nothing.
    ReadOnly,
}

/// The peer's access from its credentials: `uid` and primary `gid` (SO_PEERCRED),
/// `groups` its supplementary ones; `me` the daemon's user, `group` the control group.
fn access(uid: u32, gid: u32, groups: &[u32], me: u32, group: Option<u32>) -> Option<Access> {
    if uid == 0 || uid == me {
        Some(Access::Full)
    } else if group.is_some_and(|g| g == gid || groups.contains(&g)) {
        Some(Access::ReadOnly)
    } else {
        None
    }
}

/// Serves the control socket: each request goes to the actor, its answer back.
pub(super) fn serve(
    listener: UnixListener,
    tx: mpsc::Sender<Event>,
    group: Option<u32>,
) -> tokio::task::JoinHandle<()> {
    let listener = std::sync::Arc::new(listener);
    super::listen::accept_loop(
        "control socket",
        MAX_CONNECTIONS,
        move || {
            let l = listener.clone();
            async move { l.accept().await.map(|(s, _)| s) }
        },
        move |stream| answer(stream, tx.clone(), group),
        || warn!("control socket: {MAX_CONNECTIONS} connections open; one more refused"),
    )
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<Event>, group: Option<u32>) {
    use std::os::fd::AsRawFd;
    let (me, _) = crate::sys::euid_egid();
    let cred = stream.peer_cred();
    // only asked when the group decides
    let groups = || match group {
        Some(_) => crate::sys::peer_groups(stream.as_raw_fd()),
        None => Ok(Vec::new()),
    };
    let (access, uid, pid) = match cred.and_then(|c| Ok((c, groups()?))) {
        Ok((c, groups)) => (access(c.uid(), c.gid(), &groups, me, group), c.uid(), c.pid()),
        Err(e) => {
            warn!("control socket: peer credentials unknown ({e}); connection refused");
            return;
        }
    };
    let (r, mut w) = stream.into_split();
    let Some(access) = access else {
        warn!(uid, pid = ?pid, "control socket: refused a user who is neither root, mcgate's user nor in control_group");
        let message = "permission denied: the control socket is for root, mcgate's user and control_group".into();
        return reply(&mut w, Response::Error { message }).await;
    };
    let mut line = String::new();
    let mut r = BufReader::new(r.take(MAX_REQUEST));
    if !matches!(tokio::time::timeout(READ_TIMEOUT, r.read_line(&mut line)).await, Ok(Ok(_))) {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Ok(req) if access == Access::ReadOnly && req.changes() => {
            warn!(uid, pid = ?pid, "control socket: refused a change to a member of control_group: {req:?}");
            Response::Error { message: "permission denied: control_group may only look; changes need root".into() }
        }
        Ok(Request::HandOver { version, oldest }) => {
            let (otx, orx) = oneshot::channel();
            if tx.send(Event::HandOver(oldest..=version, otx)).await.is_err() {
                return;
            }
            match orx.await {
                Ok(Ok(out)) => {
                    let pid = pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p != 0);
                    return super::handover::send(&mut r, &mut w, out, pid).await;
                }
                Ok(Err(message)) => Response::Error { message },
                Err(_) => Response::Error { message: "daemon stopping".into() },
            }
        }
        Ok(Request::Standby { version, oldest }) => {
            let (otx, orx) = oneshot::channel();
            if tx.send(Event::Standby(oldest..=version, otx)).await.is_err() {
                return;
            }
            match orx.await {
                Ok(Ok((out, updates))) => {
                    info!(pid = ?pid, "a standby follows");
                    return super::handover::serve_standby(&mut r, &mut w, out, updates).await;
                }
                Ok(Err(message)) => Response::Error { message },
                Err(_) => Response::Error { message: "daemon stopping".into() },
            }
        }
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            if tx.send(Event::Control(req, otx)).await.is_err() {
                return;
            }
            orx.await.unwrap_or(Response::Error { message: "daemon stopping".into() })
        }
        Err(e) => Response::Error { message: format!("bad request: {e}") },
    };
    reply(&mut w, resp).await
}

async fn reply(w: &mut tokio::net::unix::OwnedWriteHalf, resp: Response) {
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    let _ = tokio::time::timeout(READ_TIMEOUT, w.write_all(&out)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mcgate-control-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn a_missing_directory_is_made_private_and_a_stale_socket_replaced() {
        let d = dir("stale");
        let path = d.join("run/control.sock");
        drop(bind(&path, None).unwrap());
        assert_eq!(std::fs::metadata(d.join("run")).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // nobody listens on it any more: replaced
        let l = bind(&path, None).unwrap();
        // somebody does: refused, and the socket stays
        let e = bind(&path, None).unwrap_err().to_string();
        assert!(e.contains("another process listens"), "{e}");
        drop(l);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn with_a_control_group_the_socket_is_the_groups_and_its_new_directory_passable() {
        let d = dir("group");
        let path = d.join("run/control.sock");
        // a group the process may give files to, whoever runs the test
        let (_, egid) = crate::sys::euid_egid();
        let l = bind(&path, Some(egid)).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.mode() & 0o777, m.gid()), (0o660, egid));
        assert_eq!(std::fs::metadata(d.join("run")).unwrap().mode() & 0o777, 0o711);
        drop(l);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_control_group_may_look_but_not_change() {
        let (me, group) = (100, Some(4));
        assert_eq!(access(0, 0, &[], me, group), Some(Access::Full));
        assert_eq!(access(100, 100, &[], me, group), Some(Access::Full));
        // in the group as its primary or as a supplementary one
        assert_eq!(access(1000, 4, &[], me, group), Some(Access::ReadOnly));
        assert_eq!(access(1000, 1000, &[27, 4], me, group), Some(Access::ReadOnly));
        assert_eq!(access(1000, 1000, &[27], me, group), None);
        assert_eq!(access(1000, 4, &[4], me, None), None);
        let looks = [
            Request::Sessions { only: Filter::default() },
            Request::Memberships { only: Filter::default() },
            Request::Status,
            Request::AcctExport { since: 0, limit: 10, mark: false },
        ];
        assert!(looks.iter().all(|r| !r.changes()));
        let changes = [
            Request::AcctExport { since: 0, limit: 10, mark: true },
            Request::AcctPurge { before: None },
            Request::PolicyReload,
            Request::SessionKick { port: "p1".into(), mac: "02:00:00:00:00:11".into() },
        ];
        assert!(changes.iter().all(Request::changes));
        assert!(reachable_by(0o711, 0, 4) && reachable_by(0o750, 4, 4));
        assert!(!reachable_by(0o700, 4, 4) && !reachable_by(0o750, 5, 4));
    }

    #[test]
    fn a_listing_without_a_filter_is_the_request_it_was_before_filters() {
        // recorded runs and older CLIs send these
        for (line, req) in [
            (r#"{"cmd":"sessions"}"#, Request::Sessions { only: Filter::default() }),
            (r#"{"cmd":"memberships"}"#, Request::Memberships { only: Filter::default() }),
        ] {
            assert_eq!(serde_json::from_str::<Request>(line).unwrap(), req);
            assert_eq!(serde_json::to_string(&req).unwrap(), line);
        }
        let only = Filter { port: Some("p1:40".into()), mac: "02:00:00:00:00:11".parse().ok(), account: None };
        let line = serde_json::to_string(&Request::Memberships { only: only.clone() }).unwrap();
        assert_eq!(line, r#"{"cmd":"memberships","only":{"port":"p1:40","mac":"02:00:00:00:00:11"}}"#);
        let mac = "02:00:00:00:00:11".parse().unwrap();
        assert!(only.admits("p1", Some(40), mac, "alice"));
        assert!(!only.admits("p1", None, mac, "alice"));
        assert!(!only.admits("p1", Some(40), "02:00:00:00:00:12".parse().unwrap(), "alice"));
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_never_removed() {
        let d = dir("file");
        let path = d.join("control.sock");
        std::fs::write(&path, "precious").unwrap();
        let e = bind(&path, None).unwrap_err().to_string();
        assert!(e.contains("not a socket; not removing it"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_directory_others_may_write_in_is_refused_and_left_as_it_was() {
        let d = dir("shared");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = bind(&d.join("control.sock"), None).unwrap_err().to_string();
        assert!(e.contains("others may write in"), "{e}");
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o7777, 0o1777, "not chmod-ed");
        let _ = std::fs::remove_dir_all(&d);
    }
}
