//! The control socket: a unix socket only root and the daemon's own user may use; one
//! JSON request line in, one JSON response out.
//!
//! Its directory is the daemon's own: created mode 0700 when missing, never chmod-ed
//! when it exists (it may be a shared one such as /run), and refused when others may
//! write in it (they could replace the socket). A file at the socket's path is removed
//! only when it is a socket nobody listens on. Each connection's peer credentials are
//! checked (SO_PEERCRED), so the file mode is not the only guard.

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
use tracing::warn;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// For the request line to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request line's bound.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Sessions,
    Memberships,
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
}

impl super::Daemon {
    pub(super) fn control(&mut self, now: Instant, req: Request) -> Response {
        match req {
            Request::Sessions => {
                let mut sessions: Vec<SessionRow> = self
                    .sessions
                    .iter()
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
            Request::Memberships => {
                let mut memberships: Vec<crate::mcast::Membership> =
                    self.mcast.iter().flat_map(|m| m.tracker.memberships().cloned()).collect();
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
                self.fold_capture_drops();
                self.status()
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
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    use std::io::{BufRead, Write};
    let mut s = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), NotFound | ConnectionRefused) => return Err(NotRunning(socket.into()).into()),
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

/// Binds the control socket at `path` (see the module's doc for the rules).
pub(super) fn bind(path: &Path) -> anyhow::Result<UnixListener> {
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
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
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
    Ok(l)
}

/// Serves the control socket: each request goes to the actor, its answer back.
pub(super) fn serve(listener: UnixListener, tx: mpsc::Sender<Event>) {
    let listener = std::sync::Arc::new(listener);
    super::listen::accept_loop(
        "control socket",
        MAX_CONNECTIONS,
        move || {
            let l = listener.clone();
            async move { l.accept().await.map(|(s, _)| s) }
        },
        move |stream| answer(stream, tx.clone()),
        || warn!("control socket: {MAX_CONNECTIONS} connections open; one more refused"),
    );
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<Event>) {
    let (me, _) = crate::sys::euid_egid();
    match stream.peer_cred() {
        Ok(c) if c.uid() == 0 || c.uid() == me => {}
        Ok(c) => {
            warn!(uid = c.uid(), pid = ?c.pid(), "control socket: refused a connection from another user");
            return;
        }
        Err(e) => {
            warn!("control socket: peer credentials unknown ({e}); connection refused");
            return;
        }
    }
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r.take(MAX_REQUEST));
    if !matches!(tokio::time::timeout(READ_TIMEOUT, r.read_line(&mut line)).await, Ok(Ok(_))) {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            if tx.send(Event::Control(req, otx)).await.is_err() {
                return;
            }
            orx.await.unwrap_or(Response::Error { message: "daemon stopping".into() })
        }
        Err(e) => Response::Error { message: format!("bad request: {e}") },
    };
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
        drop(bind(&path).unwrap());
        assert_eq!(std::fs::metadata(d.join("run")).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // nobody listens on it any more: replaced
        let l = bind(&path).unwrap();
        // somebody does: refused, and the socket stays
        let e = bind(&path).unwrap_err().to_string();
        assert!(e.contains("another process listens"), "{e}");
        drop(l);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_never_removed() {
        let d = dir("file");
        let path = d.join("control.sock");
        std::fs::write(&path, "precious").unwrap();
        let e = bind(&path).unwrap_err().to_string();
        assert!(e.contains("not a socket; not removing it"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_directory_others_may_write_in_is_refused_and_left_as_it_was() {
        let d = dir("shared");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = bind(&d.join("control.sock")).unwrap_err().to_string();
        assert!(e.contains("others may write in"), "{e}");
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o7777, 0o1777, "not chmod-ed");
        let _ = std::fs::remove_dir_all(&d);
    }
}
