//! The daemon: one actor owns the state machines; thin tasks read the sockets and
//! send it events, and it carries their outputs out (EAPOL frames, RADIUS datagrams,
//! kernel changes, database writes).

mod acct;
pub mod config;
pub mod control;
mod das;
mod kernel;
mod listen;
mod mcast;
mod metrics;
mod net;
#[cfg(test)]
mod tests;

use crate::auth::{self, Authenticator, EndCause, Input, Method, PortConfig, PortId};
use crate::capture::{limit, PortSocket};
use crate::dataplane::netlink::{self, Netlink};
use crate::dataplane::{self, Dataplane};
use crate::radius::client::{self as rc, Client};
use crate::store::{Op, Session, Store};
use crate::sys;
use crate::wire::{ethernet, MacAddr};
use anyhow::{anyhow, Context as _};
use config::Loaded;
use control::{Request, Response, SessionRow};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

enum Event {
    Eapol {
        port: PortId,
        src: MacAddr,
        pdu: Vec<u8>,
    },
    /// An IPv4 (IGMP) or IPv6 (Hop-by-Hop: MLD) frame the capture filter passed.
    Mcast {
        port: PortId,
        src: MacAddr,
        ethertype: u16,
        payload: Vec<u8>,
        /// When the capture task read it (decision latency is measured from here).
        at: Instant,
    },
    /// A datagram from a RADIUS server: an authentication (or per-join) one, or an
    /// accounting one.
    Radius {
        acct: bool,
        server: usize,
        bytes: Vec<u8>,
    },
    /// A datagram on the dynamic authorization (RFC 5176) socket.
    Das {
        from: std::net::SocketAddr,
        bytes: Vec<u8>,
    },
    Control(Request, oneshot::Sender<Response>),
    /// A Prometheus scrape: the metrics as text.
    Metrics(oneshot::Sender<String>),
}

/// Counters of the I/O around the state machines.
#[derive(Debug, Default, Clone, Serialize)]
struct IoStats {
    /// IGMP/MLD frames: seen, not acted on until the multicast gate is enabled.
    frames_multicast_control: u64,
    /// Frames the kernel dropped on the capture sockets (their buffers were full).
    capture_drops: u64,
    frames_tx: u64,
    frames_tx_errors: u64,
    radius_tx_errors: u64,
    dataplane_errors: u64,
    store_errors: u64,
    /// Times a MAB port stopped learning because it held its maximum of hosts.
    mab_learning_paused: u64,
}

struct Port {
    name: String,
    ifindex: u32,
    mac: MacAddr,
    /// Its flood limiter's counters (the capture task keeps the limiter).
    limits: Arc<limit::Stats>,
    /// MAB learning as the kernel has it (`setup_port` turns it on for MAB ports).
    mab_learning: bool,
}

struct Daemon {
    auth: Authenticator,
    radius: Client<RadiusFor>,
    /// Every socket the core sends on (a recording fake in unit tests).
    net: Box<dyn net::Net>,
    /// Round trips by server.
    radius_rtt: Vec<metrics::Histogram>,
    dataplane: Box<dyn Dataplane + Send>,
    store: Store,
    ports: Vec<Port>,
    /// Open sessions by (port, MAC), as stored.
    sessions: HashMap<(PortId, MacAddr), Session>,
    /// The multicast gate, when configured.
    mcast: Option<mcast::McastState>,
    acct: acct::Accounting,
    das: Option<das::Das>,
    policy_dir: Option<std::path::PathBuf>,
    io: IoStats,
    started: Instant,
    kernel: kernel::Kernel,
    /// `[switch] audit`: nothing is enforced, so nothing is reconciled.
    audit_mode: bool,
}

/// What a request of the daemon's RADIUS client asks for: its answer goes back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RadiusFor {
    /// An 802.1X or MAB authentication, by the authenticator's token.
    Auth(auth::Token),
    /// A per-join question, by the tracker's token.
    PerJoin(u64),
}

/// Events handled before one commit, at most.
const BATCH_EVENTS: usize = 256;

use crate::acct::unix_now;

/// Runs the daemon until SIGTERM or SIGINT. Kernel state (locked ports, authorized
/// MACs) stays in place on exit: while mcgate is down nothing new gets in and what
/// was admitted keeps working.
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let store = Store::open(&cfg.switch.database)
        .with_context(|| format!("opening database {}", cfg.switch.database.display()))?;

    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let bridge = links
        .iter()
        .find(|l| l.name == cfg.switch.bridge)
        .ok_or_else(|| anyhow!("bridge {} not found", cfg.switch.bridge))?;
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    // CoA/Disconnect requests wait in a queue of their own (see das::spawn_reader)
    let (das_tx, mut das_rx) = mpsc::channel::<Event>(das::QUEUE);

    let mut ports = Vec::new();
    let mut port_sockets = Vec::new();
    for p in &cfg.ports {
        let name = p.name.get_ref().clone();
        let link = links.iter().find(|l| l.name == name).ok_or_else(|| anyhow!("port {name} not found"))?;
        if link.master != Some(bridge.index) {
            return Err(anyhow!("port {name} is not a member of bridge {}", cfg.switch.bridge));
        }
        let mac = link.mac.ok_or_else(|| anyhow!("port {name} has no MAC address"))?;
        port_sockets.push(Arc::new(PortSocket::open(link.index).with_context(|| format!("capture on {name}"))?));
        let mab_learning = p.mode.uses_mab();
        ports.push(Port { name, ifindex: link.index, mac, limits: Default::default(), mab_learning });
    }

    let mut dataplane: Box<dyn Dataplane + Send> =
        if cfg.switch.audit { Box::new(dataplane::Audit) } else { Box::new(dataplane::linux::LinuxBridge::new()?) };
    // an unlocked port: what an earlier run left in the kernel is gone (reboot, rebuilt bridge)
    let unlocked: Vec<String> =
        ports.iter().filter(|p| !dataplane.is_locked(&p.name).unwrap_or(false)).map(|p| p.name.clone()).collect();
    let kernel_state_gone = !unlocked.is_empty();
    remember_found(&store, dataplane.as_mut(), cfg, &unlocked).context("reading the kernel state before set-up")?;
    for (p, c) in ports.iter().zip(&cfg.ports) {
        dataplane.setup_port(&p.name, c.mode).with_context(|| format!("locking port {}", p.name))?;
    }
    // Acct-Session-Ids of memberships: unique across runs
    let run_id = rand::random::<u32>();
    let (mcast, uplink_sockets) = match (&cfg.multicast, &loaded.policy) {
        (Some(mc), Some(policy)) => {
            let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
            let (m, uplinks) = mcast::McastState::set_up(
                cfg,
                mc,
                policy,
                &names,
                &links,
                bridge,
                &mut nl,
                dataplane.as_mut(),
                run_id,
            )?;
            (Some(m), uplinks)
        }
        _ => (None, vec![]),
    };

    let servers = loaded.radius_servers();
    let radius_sockets = udp_sockets(false, &servers, &tx)?;
    let acct_sockets = udp_sockets(true, &loaded.acct_servers(), &tx)?;
    let mut das_socket = None;
    let das = match &cfg.dynamic_authorization {
        Some(da) => {
            let sock = std::net::UdpSocket::bind(da.listen)
                .with_context(|| format!("dynamic authorization socket {}", da.listen))?;
            sock.set_nonblocking(true)?;
            let addresses: Vec<_> = da.clients.iter().map(|c| c.get_ref().address).collect();
            let reader = Arc::new(das::ReaderStats::default());
            das::spawn_reader(UdpSocket::from_std(sock.try_clone()?)?, addresses.clone(), das_tx, reader.clone());
            let clients = addresses.into_iter().zip(loaded.das_secrets.iter().cloned()).collect();
            info!(listen = %da.listen, "dynamic authorization (RFC 5176) on");
            das_socket = Some(sock);
            Some(das::Das::new(reader, clients, da.event_timestamp_window.as_secs()))
        }
        None => None,
    };
    let net = Box::new(net::Sockets {
        ports: port_sockets.clone(),
        uplinks: uplink_sockets,
        radius: radius_sockets,
        accounting: acct_sockets,
        das: das_socket,
        nl,
    });
    let mut d = Daemon::new(&loaded, ports, dataplane, store, net, mcast, das)?;
    d.start(Instant::now(), kernel_state_gone, run_id);
    if kernel_state_gone {
        info!(ports = ?unlocked, "ports were not locked: nothing of an earlier run continues");
    }
    for (i, (p, socket)) in d.ports.iter().zip(port_sockets).enumerate() {
        spawn_capture(i, p, socket, loaded.limits(), tx.clone());
    }
    let (kernel_tx, mut kernel_rx) = mpsc::channel(kernel::QUEUE);
    kernel::spawn_reader(d.ports.iter().map(|p| p.ifindex).collect(), kernel_tx)?;
    if let Some(m) = &cfg.metrics {
        metrics::serve(metrics::bind(m.listen).await.with_context(|| format!("metrics on {}", m.listen))?, tx.clone());
    }
    control::serve(control::bind(&cfg.switch.control_socket)?, tx.clone());

    // Link state last: a port that is up gets its first Request/Identity now.
    let now = Instant::now();
    for (i, p) in d.ports.iter().enumerate() {
        let running = links.iter().any(|l| l.index == p.ifindex && l.running);
        let input = if running { Input::LinkUp { port: i } } else { Input::LinkDown { port: i } };
        d.auth.handle_input(now, input);
    }
    d.drain(now);
    info!(ports = d.ports.len(), sessions = d.sessions.len(), "mcgate running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        let mcast_deadline = d.mcast.as_ref().and_then(|m| m.tracker.poll_timeout());
        let reconcile = d.reconcile_due(Instant::now());
        let deadline =
            [d.auth.poll_timeout(), d.radius.poll_timeout(), mcast_deadline, d.acct.poll_timeout(), reconcile]
                .into_iter()
                .flatten()
                .min();
        let sleep = tokio::time::sleep_until(
            deadline.map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600), Into::into),
        );
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                d.handle_event(now, ev);
                // what else is waiting goes into the same commit (group commit)
                for _ in 0..BATCH_EVENTS {
                    let Ok(ev) = rx.try_recv() else { break };
                    d.handle_event(now, ev);
                }
            }
            Some(ev) = das_rx.recv() => d.handle_event(Instant::now(), ev),
            Some(msg) = kernel_rx.recv() => d.kernel_msg(Instant::now(), msg),
            _ = sleep => {
                let now = Instant::now();
                d.radius.handle_timeout(now);
                d.auth.handle_timeout(now);
                if let Some(m) = d.mcast.as_mut() {
                    m.tracker.handle_timeout(now);
                }
                d.acct_timeout(now);
                d.reconcile_timeout(now);
            }
            _ = sighup.recv() => {
                match d.policy_reload(Instant::now()) {
                    Ok(done) => info!("SIGHUP: {done}"),
                    Err(e) => error!("SIGHUP: policy not reloaded, nothing changed: {e}"),
                }
            }
            _ = sigterm.recv() => { info!("SIGTERM: stopping; kernel state left in place"); break }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: stopping; kernel state left in place"); break }
        }
        d.drain(Instant::now());
        if let Some(m) = d.mcast.as_mut() {
            m.stats.batch_since = None;
        }
    }
    // what the last events did is committed before the process goes (its grants too)
    d.drain(Instant::now());
    let _ = std::fs::remove_file(&cfg.switch.control_socket);
    Ok(())
}

/// This kernel's boot: kernel state stored under another one is gone.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(|_| String::new(), |s| s.trim().to_string())
}

impl Daemon {
    /// Reads the policy files again; if they are valid, swaps them in and decides the
    /// live memberships again (those no longer allowed go). A broken file changes nothing.
    fn policy_reload(&mut self, now: Instant) -> Result<String, String> {
        let (Some(dir), Some(_)) = (&self.policy_dir, &self.mcast) else {
            return Err("no [multicast] section: there is no policy".into());
        };
        let policy = crate::policy::load_dir(dir).map_err(|e| format!("{}:{}: {}", e.file, e.line, e.message))?;
        let (version, packages) = (policy.version.clone(), policy.packages.len());
        if let Some(m) = self.mcast.as_mut() {
            m.policy = policy;
        }
        let hosts: Vec<(PortId, MacAddr)> = self.sessions.keys().copied().collect();
        let revoked: usize = hosts.into_iter().map(|(p, mac)| self.mcast_reevaluate(now, p, mac)).sum();
        Ok(format!("policy {version} loaded ({packages} packages); {revoked} memberships no longer allowed"))
    }

    /// True when nothing of a previous run continues: first start, a start after a
    /// reboot or a teardown, or with the kernel state gone otherwise (ports not locked).
    /// The core, from the configuration and what the set-up made of the kernel and the
    /// sockets (fakes in unit tests). Nothing is sent or changed until [`Daemon::start`].
    fn new(
        loaded: &Loaded,
        ports: Vec<Port>,
        dataplane: Box<dyn Dataplane + Send>,
        store: Store,
        net: Box<dyn net::Net>,
        mcast: Option<mcast::McastState>,
        das: Option<das::Das>,
    ) -> anyhow::Result<Self> {
        let cfg = &loaded.config;
        let port_configs = (ports.iter().zip(&cfg.ports).enumerate())
            .map(|(i, (p, c))| PortConfig {
                name: p.name.clone(),
                mode: c.mode,
                nas_port: loaded.nas_port(i),
                mac: p.mac,
            })
            .collect();
        let acct_servers = loaded.acct_servers();
        let delivery = if acct_servers.is_empty() {
            None
        } else {
            let a = &cfg.accounting;
            let mut sender = crate::acct::Sender::new(a.window, a.retry, a.max_retry);
            // what an earlier run journaled and could not deliver goes first
            let undelivered = store.undelivered().context("reading the undelivered journal")?;
            if !undelivered.is_empty() {
                info!(records = undelivered.len(), "accounting records from before the start to deliver");
            }
            for (seq, key) in undelivered {
                sender.enqueue(seq, key);
            }
            let rtt = vec![Default::default(); acct_servers.len()];
            Some(acct::Delivery {
                client: Client::new(Instant::now(), loaded.radius_config(), acct_servers),
                sender,
                rtt,
            })
        };
        let vendor_id = cfg.multicast.as_ref().map_or(crate::policy::DEFAULT_VENDOR_ID, |m| m.vendor_id);
        let nas_ports = (0..cfg.ports.len()).map(|i| loaded.nas_port(i)).collect();
        let servers = loaded.radius_servers();
        Ok(Daemon {
            auth: Authenticator::new(loaded.auth_config(), port_configs),
            radius_rtt: vec![Default::default(); servers.len()],
            radius: Client::new(Instant::now(), loaded.radius_config(), servers),
            net,
            dataplane,
            store,
            ports,
            sessions: HashMap::new(),
            mcast,
            acct: acct::Accounting::new(
                &cfg.accounting,
                cfg.switch.nas_identifier.clone(),
                vendor_id,
                nas_ports,
                delivery,
            ),
            das,
            policy_dir: loaded.policy_dir.clone(),
            io: IoStats::default(),
            started: Instant::now(),
            kernel: kernel::Kernel {
                schedule: kernel::Schedule::new(Instant::now(), cfg.switch.reconcile_interval),
                stats: Default::default(),
            },
            audit_mode: cfg.switch.audit,
        })
    }

    /// Continues what the store holds (or ends it, after a reboot: `kernel_state_gone`)
    /// and makes the kernel agree; an Accounting-On on a cold start.
    fn start(&mut self, now: Instant, kernel_state_gone: bool, run_id: u32) {
        let cold = self.cold_start(kernel_state_gone);
        self.restore(now, cold);
        self.mcast_restore(now, cold);
        if cold {
            self.acct.record(crate::acct::Record::new(
                crate::acct::Kind::Nas,
                crate::acct::Status::AccountingOn,
                unix_now(),
                format!("{run_id:08X}-on"),
            ));
        }
    }

    fn cold_start(&mut self, kernel_state_gone: bool) -> bool {
        let now = boot_id();
        let stored = self.store.boot_id().unwrap_or_else(|e| {
            error!("reading the boot id: {e}");
            None
        });
        if stored.as_deref() == Some(now.as_str()) && !kernel_state_gone {
            return false;
        }
        if let Err(e) = self.store.set_boot_id(&now) {
            error!("storing the boot id: {e}");
        }
        info!(previous = stored.as_deref().unwrap_or("none"), "cold start: Accounting-On");
        true
    }

    /// When the previous run was last known alive: the time of the Stops it could not
    /// send itself.
    fn last_alive(&self) -> u64 {
        self.store.alive().unwrap_or(0)
    }

    /// Restores stored sessions whose kernel state is, or can be made, consistent;
    /// removes authorizations the store does not justify. After a cold start the
    /// stored sessions are over: they get their Stop at the time last known alive.
    fn restore(&mut self, now: Instant, cold: bool) {
        let stored = match self.store.sessions() {
            Ok(s) => s,
            Err(e) => {
                error!("reading sessions: {e}");
                self.io.store_errors += 1;
                vec![]
            }
        };
        let unix = unix_now();
        for s in stored {
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    error!("{e}");
                    self.io.store_errors += 1;
                    continue;
                }
            };
            let Some(port) = self.ports.iter().position(|p| p.name == s.port) else {
                info!(port = s.port, mac = %s.mac, "port no longer configured: session ended");
                self.acct_session_stop(None, &s, crate::acct::TerminateCause::AdminReset, unix);
                continue;
            };
            if cold {
                info!(port = s.port, mac = %s.mac, session = s.session_id, "session of an earlier boot ended");
                let time = self.last_alive().max(s.since);
                self.acct_session_stop(Some(port), &s, crate::acct::TerminateCause::NasReboot, time);
                continue;
            }
            if let Err(e) = self.dataplane.authorize(&s.port, s.mac) {
                error!(port = s.port, mac = %s.mac, "re-authorizing: {e}");
                self.io.dataplane_errors += 1;
            }
            info!(port = s.port, mac = %s.mac, account = s.account, session = s.session_id, "session restored");
            self.auth.handle_input(
                now,
                Input::Restore {
                    port,
                    mac: s.mac,
                    method: s.method,
                    account: s.account.clone(),
                    attrs: s.attrs.clone(),
                    age: Duration::from_secs(unix.saturating_sub(s.since)),
                },
            );
            self.acct_session_continued(now, port, &s);
            self.sessions.insert((port, s.mac), s);
        }
        for (i, p) in self.ports.iter().enumerate() {
            match self.dataplane.authorized(&p.name) {
                Ok(macs) => {
                    for mac in macs.into_iter().filter(|m| !self.sessions.contains_key(&(i, *m))) {
                        info!(port = p.name, mac = %mac, "authorization without a session removed");
                        if self.dataplane.deauthorize(&p.name, mac).is_err() {
                            self.io.dataplane_errors += 1;
                        }
                    }
                }
                Err(e) => {
                    error!(port = p.name, "listing authorizations: {e}");
                    self.io.dataplane_errors += 1;
                }
            }
        }
    }

    fn handle_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Eapol { port, src, pdu } => self.auth.handle_input(now, Input::Eapol { port, src, pdu: &pdu }),
            Event::Mcast { port, src, ethertype, payload, at } => {
                self.on_mcast_frame(now, port, src, ethertype, &payload);
                if let Some(m) = self.mcast.as_mut() {
                    m.stats.decision_latency.record(at.elapsed());
                    m.stats.batch_since = Some(m.stats.batch_since.map_or(at, |t| t.min(at)));
                }
            }
            Event::Radius { acct: true, server, bytes } => self.acct_datagram(now, server, &bytes),
            Event::Radius { acct: false, server, bytes } => {
                if let Err(e) = self.radius.handle_datagram(now, server, &bytes) {
                    warn!(server = %self.radius.server_addrs()[server], "RADIUS reply dropped: {e}");
                }
            }
            Event::Das { from, bytes } => self.das_datagram(now, from, &bytes),
            Event::Control(req, reply) => {
                let _ = reply.send(self.control(req));
            }
            Event::Metrics(reply) => {
                self.fold_capture_drops();
                let _ = reply.send(self.metrics());
            }
        }
    }

    fn port_by_index(&self, ifindex: u32) -> Option<PortId> {
        self.ports.iter().position(|p| p.ifindex == ifindex)
    }

    pub(super) fn kernel_event(&mut self, now: Instant, e: netlink::Event) {
        match e {
            netlink::Event::Link(l) => {
                if let Some(port) = self.port_by_index(l.index) {
                    let input = if l.running { Input::LinkUp { port } } else { Input::LinkDown { port } };
                    debug!(port = self.ports[port].name, running = l.running, "link state");
                    self.auth.handle_input(now, input);
                }
            }
            netlink::Event::LinkGone(index) => {
                if let Some(port) = self.port_by_index(index) {
                    warn!(port = self.ports[port].name, "port removed");
                    self.auth.handle_input(now, Input::LinkDown { port });
                }
            }
            netlink::Event::NewFdb(f) if f.locked => {
                if let Some(port) = self.port_by_index(f.ifindex) {
                    self.auth.handle_input(now, Input::UnknownMac { port, mac: f.mac });
                }
            }
            _ => {}
        }
    }

    /// Carries out everything the state machines want done, until they are quiet.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(o) = self.radius.poll_output() {
                progressed = true;
                match o {
                    rc::Output::Transmit { server, bytes } => {
                        if let Err(e) = self.net.send_radius(server, &bytes) {
                            self.io.radius_tx_errors += 1;
                            warn!(server = %self.radius.server_addrs()[server], "RADIUS send: {e}");
                        }
                    }
                    rc::Output::Reply { token, server, packet, rtt } => {
                        debug!(?token, server, rtt_us = rtt.as_micros() as u64, code = ?packet.get_code(), "RADIUS reply");
                        self.radius_rtt[server].record(rtt);
                        match token {
                            RadiusFor::PerJoin(t) => self.per_join_answer(now, t, Some(&packet)),
                            RadiusFor::Auth(token) => {
                                self.auth.handle_input(now, Input::RadiusReply { token, packet: &packet })
                            }
                        }
                    }
                    rc::Output::Failed { token: RadiusFor::PerJoin(t) } => self.per_join_answer(now, t, None),
                    rc::Output::Failed { token: RadiusFor::Auth(token) } => {
                        self.auth.handle_input(now, Input::RadiusFailed { token })
                    }
                }
            }
            while let Some(o) = self.auth.poll_output() {
                progressed = true;
                self.auth_output(now, o);
            }
            progressed |= self.drain_mcast(now);
            progressed |= self.acct_drain(now);
            if !progressed && !self.acct_commit(now) {
                break;
            }
        }
        self.sync_mab_learning();
        // CoA/Disconnect answers go once what they asked for has taken effect
        if let Some(d) = self.das.as_mut() {
            d.send_answers(self.net.as_mut());
        }
    }

    /// The kernel's drop counters of the capture sockets reset when read: what they
    /// counted goes into ours before anything shows it.
    fn fold_capture_drops(&mut self) {
        self.io.capture_drops += self.net.capture_drops();
    }

    /// Each MAB port learns unknown MACs only while it has room for another host.
    fn sync_mab_learning(&mut self) {
        for (i, p) in self.ports.iter_mut().enumerate() {
            let want = self.auth.mab_learning(i);
            if want == p.mab_learning {
                continue;
            }
            match self.dataplane.set_mab_learning(&p.name, want) {
                Ok(()) if want => info!(port = p.name, "port has room for a host again: MAC bypass learns again"),
                Ok(()) => {
                    self.io.mab_learning_paused += 1;
                    warn!(
                        port = p.name,
                        "port holds its maximum of hosts: MAC bypass stops learning (locked entries flushed)"
                    );
                }
                // counted and logged once, not tried again on every event: the next
                // change of the port's room tries again
                Err(e) => {
                    self.io.dataplane_errors += 1;
                    warn!(port = p.name, on = want, "MAB learning: {e}");
                }
            }
            p.mab_learning = want;
        }
    }

    /// Sends a RADIUS request. One that does not fit RADIUS's bounds is refused by the
    /// client (and counted there) and answered here as a rejection — for a per-join
    /// question never as "no server answered", which a fail-open package would admit.
    fn radius_send(&mut self, now: Instant, token: RadiusFor, request: rc::Request) {
        let Err(e) = self.radius.send(now, token, request) else { return };
        error!(?token, "RADIUS request refused, not sent: {e}");
        match token {
            RadiusFor::PerJoin(t) => self.per_join_decided(now, t, crate::mcast::RadiusAnswer::Reject { ttl: None }),
            RadiusFor::Auth(token) => self.auth.handle_input(now, Input::RadiusFailed { token }),
        }
    }

    fn auth_output(&mut self, now: Instant, o: auth::Output) {
        match o {
            auth::Output::TxEapol { port, dst, pdu } => {
                let p = &self.ports[port];
                let frame = ethernet::emit_frame(dst, p.mac, ethernet::ETHERTYPE_EAPOL, &pdu);
                match self.net.send_frame(port, &frame) {
                    Ok(()) => self.io.frames_tx += 1,
                    Err(e) => {
                        self.io.frames_tx_errors += 1;
                        debug!(port = p.name, mac = %dst, "EAPOL send: {e}");
                    }
                }
            }
            auth::Output::Radius { token, request } => self.radius_send(now, RadiusFor::Auth(token), request),
            auth::Output::CancelRadius { token } => self.radius.cancel(RadiusFor::Auth(token)),
            auth::Output::Authorized { port, mac, method, account, attrs } => {
                let name = self.ports[port].name.clone();
                self.mcast_forget_entitlement(port, mac);
                // The port opens once the session (and its Start) is durable.
                let session = match self.sessions.remove(&(port, mac)) {
                    // re-authentication: same session, new attributes
                    Some(mut s) => {
                        s.account = account;
                        s.attrs = attrs;
                        self.acct.op(Op::PutSession(s.clone()));
                        self.acct.grant(acct::Grant::Authorize { port, mac });
                        s
                    }
                    None => {
                        let s = Session {
                            port: name.clone(),
                            mac,
                            account,
                            method,
                            session_id: format!("{:08X}{:08X}", unix_now() as u32, rand::random::<u32>()),
                            since: unix_now(),
                            attrs,
                        };
                        if !self.acct_session_start(now, port, &s) {
                            // no Start, no session: the authenticator forgets the host
                            self.auth.handle_input(now, Input::Kick { port, mac });
                            return;
                        }
                        s
                    }
                };
                info!(port = name, mac = %mac, account = session.account, session = session.session_id, "port open");
                self.sessions.insert((port, mac), session);
            }
            auth::Output::Deauthorized { port, mac, cause } => self.end_session(now, port, mac, cause),
            auth::Output::Rejected { port, mac, method, account } => {
                info!(port = self.ports[port].name, mac = %mac, account, ?method, "rejected");
            }
            auth::Output::ForgetLocked { port, mac } => {
                if self.dataplane.deauthorize(&self.ports[port].name, mac).is_err() {
                    self.io.dataplane_errors += 1;
                }
            }
        }
    }

    fn end_session(&mut self, now: Instant, port: PortId, mac: MacAddr, cause: EndCause) {
        let name = self.ports[port].name.clone();
        // its streams stop with it (the port lock filters ingress only), their Stops
        // saying why the session ended
        self.mcast_end_host(now, port, mac, cause);
        // Fail closed first: the kernel stops the host before the record goes (and an
        // authorization still waiting for its commit never happens).
        self.acct.cancel(acct::Grant::Authorize { port, mac });
        if let Err(e) = self.dataplane.deauthorize(&name, mac) {
            self.io.dataplane_errors += 1;
            error!(port = name, mac = %mac, "deauthorizing: {e}");
        }
        let s = self.sessions.remove(&(port, mac));
        if let Some(s) = &s {
            self.acct_session_stop(Some(port), s, cause.into(), unix_now());
        }
        info!(
            port = name,
            mac = %mac,
            account = s.as_ref().map(|s| s.account.as_str()),
            session = s.as_ref().map(|s| s.session_id.as_str()),
            ?cause,
            "port closed"
        );
    }

    fn control(&mut self, req: Request) -> Response {
        match req {
            Request::Sessions => {
                let mut sessions: Vec<SessionRow> = self
                    .sessions
                    .values()
                    .map(|s| SessionRow {
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
                    })
                    .collect();
                sessions.sort_by(|a, b| (&a.port, &a.mac).cmp(&(&b.port, &b.mac)));
                Response::Sessions { sessions }
            }
            Request::Memberships => {
                let mut memberships: Vec<crate::mcast::Membership> =
                    self.mcast.iter().flat_map(|m| m.tracker.memberships().cloned()).collect();
                memberships
                    .sort_by(|a, b| (&a.port, &a.mac, a.group, a.source).cmp(&(&b.port, &b.mac, b.group, b.source)));
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
            Request::PolicyReload => match self.policy_reload(Instant::now()) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message: format!("policy not reloaded, nothing changed: {message}") },
            },
            Request::SessionKick { port, mac } => {
                let found = self.sessions.keys().find(|(p, m)| self.ports[*p].name == port && m.to_string() == mac);
                match found.copied() {
                    Some((p, m)) => {
                        self.auth.handle_input(Instant::now(), Input::Kick { port: p, mac: m });
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

    fn status(&self) -> Response {
        Response::Status {
            status: serde_json::json!({
                "uptime_s": self.started.elapsed().as_secs(),
                "ports": self.ports.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "sessions": self.sessions.len(),
                "authenticator": self.auth.stats,
                "radius": self.radius.stats,
                "kernel": self.kernel.stats,
                "radius_pending": self.radius.pending(),
                "radius_servers": self.radius.server_addrs().iter().zip(&self.radius.per_server)
                    .map(|(a, st)| (a.to_string(), st)).collect::<std::collections::BTreeMap<_, _>>(),
                "io": self.io,
                "limits": self.ports.iter().map(|p| (p.name.clone(), p.limits.view())).collect::<std::collections::BTreeMap<_, _>>(),
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

/// The port's capture task: frames the kernel filter passed, through the port's flood
/// limiter (here, so that a flooding port's excess never reaches the shared queue), to
/// the actor.
fn spawn_capture(port: PortId, p: &Port, socket: Arc<PortSocket>, limits: limit::Config, tx: mpsc::Sender<Event>) {
    let (stats, name) = (p.limits.clone(), p.name.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut limiter = limit::PortLimiter::new(limits, Instant::now());
        let mut tagged_log = crate::rate::LogLimit::per_minute(256);
        loop {
            let (n, info) = match socket.recv(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    error!(port, "capture: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if info.pkttype == sys::PACKET_OUTGOING {
                continue;
            }
            let Ok(frame) = ethernet::Frame::new_checked(&buf[..n]) else {
                continue;
            };
            let now = Instant::now();
            // The kernel takes an 802.1Q tag off before the tap (it comes as auxdata):
            // without this a tagged EAPOL-Start or report would pass for an untagged one.
            if let Some(vid) = info.vlan {
                stats.dropped_tagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if tagged_log.allow(now, frame.src()) {
                    warn!(port = name, mac = %frame.src(), vid, ethertype = format!("{:#06x}", frame.ethertype()), "tagged frame dropped: VLANs are not configured (logged once a minute per host)");
                }
                continue;
            }

            let verdict = match frame.ethertype() {
                ethernet::ETHERTYPE_EAPOL => limiter.eapol(now, &stats),
                _ => {
                    let was = stats.quarantined.load(std::sync::atomic::Ordering::Relaxed);
                    let v = limiter.report(now, frame.src(), &stats);
                    if v == limit::Verdict::QuarantineStarts {
                        warn!(port = name, mac = %frame.src(), "port quarantined: IGMP/MLD over its rate for {:?}; new joins dropped for {:?}, admitted streams stay", limits.quarantine_after, limits.quarantine_time);
                    } else if was && v == limit::Verdict::Pass {
                        info!(port = name, "port released from quarantine");
                    }
                    v
                }
            };
            if verdict != limit::Verdict::Pass {
                continue;
            }
            let ev = match frame.ethertype() {
                ethernet::ETHERTYPE_EAPOL => Event::Eapol { port, src: frame.src(), pdu: frame.payload().to_vec() },
                ethertype => {
                    Event::Mcast { port, src: frame.src(), ethertype, payload: frame.payload().to_vec(), at: now }
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
}

/// A UDP socket per server, connected (datagrams from any other address or port never
/// reach it), with a reader task; returns the sockets to send with. Sending goes
/// straight to the (non-blocking) socket: tokio's `try_send` refuses with WouldBlock
/// until the runtime has polled the socket once, which lost a whole window of
/// Accounting-Requests sent at start.
fn udp_sockets(
    acct: bool,
    servers: &[rc::Server],
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let mut out = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let bind: std::net::SocketAddr = if s.addr.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
        let sock = std::net::UdpSocket::bind(bind)?;
        sock.connect(s.addr)?;
        sock.set_nonblocking(true)?;
        let reader = UdpSocket::from_std(sock.try_clone()?)?;
        spawn_radius_reader(acct, i, Arc::new(reader), tx.clone());
        out.push(sock);
    }
    Ok(out)
}

fn spawn_radius_reader(acct: bool, server: usize, sock: Arc<UdpSocket>, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::radius::MAX_LEN + 1];
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) => {
                    if tx.send(Event::Radius { acct, server, bytes: buf[..n].to_vec() }).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from a dead server surfaces here; the client's
                // timers handle the failover.
                Err(e) => debug!(server, "RADIUS socket: {e}"),
            }
        }
    });
}

/// Keeps what the set-up is about to change, as the kernel has it now, for `mcgate
/// teardown`. What is stored stays while mcgate's set-up is in place (the kernel then
/// holds mcgate's values); it is read again for a port found unlocked (new in the
/// configuration, or its kernel state gone), and everything is when no port is locked
/// (a first start, a reboot, a rebuilt bridge).
fn remember_found(
    store: &Store,
    dataplane: &mut (dyn Dataplane + Send),
    cfg: &config::Config,
    unlocked: &[String],
) -> anyhow::Result<()> {
    let mut found = store.found()?.unwrap_or_default();
    let access = cfg.ports.iter().map(|p| p.name.get_ref().as_str());
    let uplinks = cfg.multicast.iter().flat_map(|m| &m.uplinks).map(|u| u.get_ref().as_str());
    let fresh = unlocked.len() == cfg.ports.len();
    let stale: Vec<&str> = access
        .chain(uplinks)
        .filter(|p| fresh || unlocked.iter().any(|u| u == p) || !found.ports.contains_key(*p))
        .collect();
    if stale.is_empty() && !found.bridge.is_empty() {
        return Ok(());
    }
    let now = dataplane.found(&cfg.switch.bridge, &stale)?;
    if fresh || found.bridge.is_empty() {
        found.bridge = now.bridge;
    }
    found.ports.extend(now.ports);
    store.set_found(Some(&found))?;
    Ok(())
}

/// Sends one request to a running daemon.
pub fn client_request(socket: &std::path::Path, req: &Request) -> anyhow::Result<Response> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("mcgate is not running (no control socket at {})", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    std::io::BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}
