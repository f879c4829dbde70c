//! The daemon: one actor, the core, owns the state machines; thin tasks read the sockets
//! and hand it inputs, and it carries their outputs out (EAPOL frames, RADIUS datagrams,
//! kernel changes, database writes).
//!
//! Where to read what: this file is the core's state, its steps and its drain (the order
//! in which outputs are carried out); `input` what drives it; `tape` record and replay;
//! `run` the process (set-up, reader tasks, event loop);
//! `sessions` logins and logoffs; `mcast` joins and leaves; `acct` the journal, its
//! commits and delivery; `das` CoA/Disconnect; `kernel` lost events and the
//! reconciliation; `control` the CLI's requests; `net` the sockets the core sends on;
//! `tests` the core on fakes, without root.

mod acct;
mod catalogue;
pub mod config;
pub mod control;
mod das;
mod fdstore;
mod handover;
pub mod input;
mod kernel;
mod listen;
mod mcast;
mod metrics;
mod net;
mod notify;
mod run;
mod sessions;
pub mod tape;
#[cfg(test)]
mod tests;
mod vlan;
mod writer;

pub use control::client_request;
pub use run::run;
/// How long a running daemon waits for the process it hands over to.
pub const HAND_OVER_TIMEOUT: std::time::Duration = handover::TIMEOUT;
pub use tape::replay;

use crate::auth::{self, Authenticator, EndCause, PortConfig, PortId};
use crate::capture::{limit, PortSocket};
use crate::dataplane::netlink::Netlink;
use crate::dataplane::{self, Dataplane, PortVlan};
use crate::hash::HashMap;
use crate::radius::client::{self as rc, Client};
use crate::store::{Op, Session, Store};
use crate::sys;
use crate::wire::{ethernet, MacAddr};
use anyhow::{anyhow, Context as _};
use config::Loaded;
use control::{Request, Response};
use input::{Input, Now, Start};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use run::Event;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tape::Tape;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// Counters of the I/O around the state machines.
#[derive(Debug, Default, Clone, Serialize)]
struct IoStats {
    /// IGMP/MLD frames: seen, not acted on until the multicast gate is enabled.
    frames_multicast_control: u64,
    /// Frames the kernel dropped on the capture sockets (their rings were full).
    capture_drops: u64,
    frames_tx: u64,
    frames_tx_errors: u64,
    radius_tx_errors: u64,
    dataplane_errors: u64,
    store_errors: u64,
    /// Times a MAB port stopped learning because it held its maximum of hosts.
    mab_learning_paused: u64,
    /// Hosts RADIUS accepted that were not authorized: their assigned VLAN could not be
    /// applied (RFC 3580: an Accept as a Reject).
    vlan_refused: u64,
    /// Ports moved to a RADIUS-assigned VLAN, or back.
    vlan_moves: u64,
    /// Multicast forwarded to access ports that the usage counters had no room for
    /// (`usage_set_size`): billed as nothing. The kernel's counter, since the table was
    /// made.
    usage_uncounted_packets: u64,
    usage_uncounted_octets: u64,
}

/// An access port's hosts: its untagged ones, or those tagged with one VLAN (a port
/// listed more than once in the configuration is several of these, on one interface).
struct Port {
    name: String,
    /// The VLAN its hosts' frames come tagged with; none: its untagged hosts.
    tag: Option<u16>,
    /// The VLAN of its hosts on a VLAN-filtering bridge (the tag, or the port's PVID at
    /// set-up, or the VLAN RADIUS assigned): where their FDB entries and sessions are.
    vlan: Option<u16>,
    /// Its own VLAN: where its untagged hosts go back to from an assigned one.
    home: Option<u16>,
    ifindex: u32,
    mac: MacAddr,
    /// Its flood limiter's counters (the capture task keeps the limiter).
    limits: Arc<limit::Stats>,
    /// The entry that stands for the interface (the first of its name): the one whose
    /// flood limiter, capture drops and MAB learning are the interface's.
    interface: PortId,
    /// MAB learning as the kernel has it (`setup_port` turns it on for MAB ports).
    mab_learning: bool,
}

impl Daemon {
    /// The port entry of a stored session or membership: a stored VLAN is the one its
    /// host was in, none (a store from before VLANs) the port's untagged hosts.
    fn port_of(&self, name: &str, vlan: Option<u16>) -> Option<PortId> {
        let of = |p: &Port| p.name == name && (p.vlan == vlan || (vlan.is_none() && p.tag.is_none()));
        self.ports.iter().position(of)
    }

    fn open_session(&mut self, port: PortId, s: Session) {
        let mac = s.mac;
        if self.sessions.insert((port, mac), s).is_none() {
            *self.session_macs.entry(mac).or_default() += 1;
        }
    }

    fn close_session(&mut self, port: PortId, mac: MacAddr) -> Option<Session> {
        let s = self.sessions.remove(&(port, mac))?;
        if let Some(n) = self.session_macs.get_mut(&mac) {
            *n -= 1;
            if *n == 0 {
                self.session_macs.remove(&mac);
            }
        }
        Some(s)
    }

    /// The access ports, each once (its first entry stands for it).
    fn interfaces(&self) -> impl Iterator<Item = &Port> {
        self.ports.iter().enumerate().filter(|(i, p)| p.interface == *i).map(|(_, p)| p)
    }
}

/// Warns when two interfaces would send the same NAS-Port (`nas_ports[i]` is entry i's):
/// accounting by NAS-Port could not tell them apart. A port's VLAN entries share theirs.
fn warn_shared_nas_ports(ports: &[Port], nas_ports: &[u32]) {
    let mut seen: HashMap<u32, &str> = HashMap::default();
    for (p, n) in ports.iter().zip(nas_ports) {
        match seen.insert(*n, &p.name) {
            Some(other) if other != p.name => {
                warn!(nas_port = n, "ports {other} and {} send the same NAS-Port", p.name)
            }
            _ => {}
        }
    }
}

impl Port {
    /// Where its hosts' FDB entries go.
    fn at(&self) -> PortVlan {
        PortVlan::new(&self.name, self.vlan)
    }
}

struct Daemon {
    auth: Authenticator,
    radius: Client<RadiusFor>,
    /// Every socket the core sends on (a recording fake in unit tests).
    net: Box<dyn net::Net>,
    /// Round trips by server.
    radius_rtt: Vec<metrics::Histogram>,
    dataplane: Box<dyn Dataplane + Send>,
    /// Shared with the journal writer, which commits the batches.
    store: Arc<Store>,
    writer: writer::Writer,
    ports: Vec<Port>,
    /// Open sessions by (port, MAC), as stored. Changed through `open_session` and
    /// `close_session` only, which keep `session_macs`.
    sessions: HashMap<(PortId, MacAddr), Session>,
    /// How many open sessions each MAC has: whether a report's MAC has a session on
    /// another port is asked of every report from a host without one, and a scan of
    /// every session would make a flood of them cost the sessions' number each.
    session_macs: HashMap<MacAddr, u32>,
    /// The multicast gate, when configured.
    mcast: Option<mcast::McastState>,
    acct: acct::Accounting,
    das: Option<das::Das>,
    policy_dir: Option<std::path::PathBuf>,
    /// `[catalogue]`: the policy comes from etcd.
    catalogue: Option<catalogue::Catalogue>,
    io: IoStats,
    kernel: kernel::Kernel,
    /// `[switch] audit`: nothing is enforced, so nothing is reconciled.
    audit_mode: bool,
    /// The monotonic clock's zero: `Now::mono` counts from here.
    epoch: Instant,
    /// The time of the step being handled.
    clock: Now,
    /// Session ids; seeded from the start's seed.
    rng: StdRng,
    /// Journal commits go through here (recorded, or checked against a recording).
    tape: Tape,
}

/// What a request of the daemon's RADIUS client asks for: its answer goes back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RadiusFor {
    /// An 802.1X or MAB authentication, by the authenticator's token.
    Auth(auth::Token),
    /// A per-join question, by the tracker's token.
    PerJoin(u64),
}

/// Events handled before one commit, at most.
const BATCH_EVENTS: usize = 256;

impl Daemon {
    /// The core, from the configuration and what the set-up made of the kernel and the
    /// sockets (fakes in unit tests). Nothing is sent or changed here: [`Daemon::build`]
    /// starts it.
    #[allow(clippy::too_many_arguments)]
    fn new(
        loaded: &Loaded,
        start: &Start,
        epoch: Instant,
        mut rng: StdRng,
        ports: Vec<Port>,
        dataplane: Box<dyn Dataplane + Send>,
        (store, writer): (Arc<Store>, writer::Writer),
        net: Box<dyn net::Net>,
        mcast: Option<mcast::McastState>,
        das: Option<das::Das>,
        tape: Tape,
    ) -> anyhow::Result<Self> {
        let cfg = &loaded.config;
        let now = start.at.instant(epoch);
        let port_configs = (ports.iter().zip(&cfg.ports).enumerate())
            .map(|(i, (p, c))| PortConfig {
                name: p.name.clone(),
                mode: c.mode,
                nas_port: loaded.nas_port(i, p.ifindex),
                mac: p.mac,
                vlan: p.vlan,
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
                client: Client::new(now, loaded.radius_config(), acct_servers, StdRng::from_seed(rng.gen())),
                sender,
                rtt,
            })
        };
        let vendor_id = cfg.multicast.as_ref().map_or(crate::policy::DEFAULT_VENDOR_ID, |m| m.vendor_id);
        let nas_ports: Vec<u32> = ports.iter().enumerate().map(|(i, p)| loaded.nas_port(i, p.ifindex)).collect();
        warn_shared_nas_ports(&ports, &nas_ports);
        let vlans = ports.iter().map(|p| p.vlan).collect();
        let servers = loaded.radius_servers();
        Ok(Daemon {
            auth: Authenticator::new(loaded.auth_config(), port_configs),
            radius_rtt: vec![Default::default(); servers.len()],
            radius: Client::new(now, loaded.radius_config(), servers, StdRng::from_seed(rng.gen())),
            net,
            dataplane,
            store,
            writer,
            ports,
            sessions: HashMap::default(),
            session_macs: HashMap::default(),
            mcast,
            acct: acct::Accounting::new(
                &cfg.accounting,
                cfg.switch.nas_identifier.clone(),
                vendor_id,
                nas_ports,
                vlans,
                delivery,
                now,
            ),
            das,
            policy_dir: loaded.policy_dir.clone(),
            catalogue: cfg.catalogue.as_ref().map(|_| catalogue::Catalogue::new()),
            io: IoStats::default(),
            kernel: kernel::Kernel {
                schedule: kernel::Schedule::new(now, cfg.switch.reconcile_interval),
                stats: Default::default(),
            },
            audit_mode: cfg.switch.audit,
            epoch,
            clock: start.at,
            rng,
            tape,
        })
    }

    /// The core as `start` describes it, started: what the store holds continued (or
    /// ended, after a reboot), the kernel made to agree, an Accounting-On on a cold
    /// start, and the ports that are up asked for their identity. `das_reader`: the
    /// counters of the CoA socket's reader task, when there is one. `handed`: what a
    /// hand-over carries; `delivered`: records the process before saw acknowledged and
    /// died before it stored their marks (systemd's marks file). `store`: the store with
    /// the writer that commits to it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        loaded: &Loaded,
        start: &Start,
        epoch: Instant,
        dataplane: Box<dyn Dataplane + Send>,
        store: (Arc<Store>, writer::Writer),
        net: Box<dyn net::Net>,
        tape: Tape,
        das_reader: Option<Arc<das::ReaderStats>>,
        handed: Option<(handover::Package, bool)>,
        delivered: Vec<u64>,
    ) -> anyhow::Result<Self> {
        // the hash tables made from here on iterate as the recorded run's did
        let mut rng = StdRng::from_seed(start.seed);
        crate::hash::seed_thread(rng.gen());
        let cfg = &loaded.config;
        if start.ports.len() != cfg.ports.len() {
            return Err(anyhow!("{} ports started, {} configured", start.ports.len(), cfg.ports.len()));
        }
        // ports still in a RADIUS-assigned VLAN when the last run stopped, and their own
        let homes = store.0.port_homes().context("reading the ports' own VLANs")?;
        let mut ports: Vec<Port> = Vec::with_capacity(start.ports.len());
        for (p, c) in start.ports.iter().zip(&cfg.ports) {
            let interface = ports.iter().position(|q| q.name == p.name).unwrap_or(ports.len());
            let limits = ports.get(interface).map_or_else(Default::default, |q| q.limits.clone());
            ports.push(Port {
                name: p.name.clone(),
                tag: p.tag,
                vlan: p.vlan,
                home: if p.tag.is_some() { p.vlan } else { homes.get(&p.name).copied().or(p.vlan) },
                ifindex: p.ifindex,
                mac: p.mac,
                limits,
                interface,
                mab_learning: false,
            });
            // the set-up turned MAB learning on where one of the port's entries uses MAB
            ports[interface].mab_learning |= c.mode.uses_mab();
        }
        let mcast = match (&cfg.multicast, &loaded.policy) {
            (Some(mc), Some(policy)) => {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                let b = start.bridge.as_ref().ok_or_else(|| anyhow!("the multicast gate without its bridge"))?;
                let mvr = (0..ports.len()).map(|i| loaded.multicast_vlan(i)).collect();
                Some(mcast::McastState::new(
                    cfg,
                    mc,
                    policy,
                    &names,
                    mvr,
                    b.mac,
                    b.v4,
                    b.ll6,
                    b.vlan_protocol,
                    start.run_id,
                ))
            }
            _ => None,
        };
        let das = cfg.dynamic_authorization.as_ref().map(|da| {
            let addresses = da.clients.iter().map(|c| c.get_ref().address);
            let clients = addresses.zip(loaded.das_secrets.iter().cloned()).collect();
            das::Das::new(das_reader.unwrap_or_default(), clients, da.event_timestamp_window.as_secs())
        });
        tape.start(start);
        let mut d = Daemon::new(loaded, start, epoch, rng, ports, dataplane, store, net, mcast, das, tape)?;
        let now = start.at.instant(epoch);
        let cold = d.cold_start(start.kernel_state_gone, &start.boot_id);
        d.restore(now, cold);
        d.mcast_restore(now, cold);
        // a port left in an assigned VLAN without hosts goes back; one found back already
        // (its bridge rebuilt) keeps no record of being away
        for port in 0..d.ports.len() {
            d.release_vlan(now, port);
            let p = &d.ports[port];
            if p.tag.is_none() && p.vlan == p.home && homes.contains_key(&p.name) {
                d.acct.op(Op::PortHome(p.name.clone(), None));
            }
        }
        if cold {
            d.acct.record(crate::acct::Record::new(
                crate::acct::Kind::Nas,
                crate::acct::Status::AccountingOn,
                start.at.unix,
                format!("{:08X}-on", start.run_id),
            ));
        }
        // what a hand-over carries replaces what was restored, before anything is sent
        if let Some((p, died)) = handed {
            d.take_over(p, died);
        }
        if !delivered.is_empty() {
            info!(records = delivered.len(), "acknowledged before the process before died: not sent again");
            d.acct.delivered_elsewhere(delivered);
        }
        // link state last: a port that is up gets its first Request/Identity now
        for (port, p) in start.ports.iter().enumerate() {
            let input = if p.running { auth::Input::LinkUp { port } } else { auth::Input::LinkDown { port } };
            d.auth.handle_input(now, input);
        }
        d.drain(now);
        // an inline writer's result (unit tests) is a step of its own, as a thread's is
        if let Some(done) = d.writer.take_inline() {
            d.step(start.at, vec![done]);
        }
        Ok(d)
    }

    /// One step: `inputs` handled at `at`, then everything they ask for carried out
    /// (their changes one batch for the journal writer). The responses of control
    /// requests, in order.
    pub(super) fn step(&mut self, at: Now, inputs: Vec<Input>) -> Vec<Response> {
        let mut responses = vec![];
        let mut inputs = inputs;
        loop {
            self.tape.step(at, &inputs);
            self.clock = at;
            let now = at.instant(self.epoch);
            responses.extend(inputs.into_iter().filter_map(|i| self.handle(now, i)));
            self.drain(now);
            if let Some(m) = self.mcast.as_mut() {
                m.stats.batch_since = None;
            }
            // an inline writer (the unit tests') committed at once: its result is a
            // step of its own, as the writer thread's would be
            match self.writer.take_inline() {
                Some(done) => inputs = vec![done],
                None => return responses,
            }
        }
    }

    fn handle(&mut self, now: Instant, input: Input) -> Option<Response> {
        match input {
            Input::Eapol { port, src, pdu } => self.auth.handle_input(now, auth::Input::Eapol { port, src, pdu: &pdu }),
            Input::Catalogue { update } => self.catalogue_update(now, update),
            Input::Mcast { port, src, ethertype, payload, read, waited } => {
                self.on_mcast_frame(now, port, src, ethertype, &payload);
                if let Some(m) = self.mcast.as_mut() {
                    m.stats.capture_wait.record(Duration::from_micros(waited.into()));
                    let read = Now { mono: read, unix: 0 }.instant(self.epoch);
                    m.stats.decision_latency.record(Instant::now().saturating_duration_since(read));
                    m.stats.batch_since = Some(m.stats.batch_since.map_or(read, |t| t.min(read)));
                }
            }
            Input::Radius { acct: true, server, datagram } => self.acct_datagram(now, server, &datagram),
            Input::Radius { acct: false, server, datagram } => {
                if let Err(e) = self.radius.handle_datagram(now, server, &datagram) {
                    warn!(server = %self.radius.server_addrs()[server], "RADIUS reply dropped: {e}");
                }
            }
            Input::Das { from, datagram } => self.das_datagram(now, from, &datagram),
            Input::Kernel { events } => events.into_iter().for_each(|e| self.kernel_event(now, e)),
            Input::KernelOverrun => self.kernel_overrun(now),
            Input::Control { request } => return Some(self.control(now, request)),
            Input::Committed { result, took } => self.acct_committed(now, result, Duration::from_micros(took)),
            Input::Timeout => {
                self.radius.handle_timeout(now);
                self.auth.handle_timeout(now);
                if let Some(m) = self.mcast.as_mut() {
                    m.tracker.handle_timeout(now);
                }
                self.acct_timeout(now);
                self.reconcile_timeout(now);
            }
        }
        None
    }

    /// One line of what the daemon holds, for the service manager's status.
    pub(super) fn summary(&self) -> String {
        let memberships =
            self.mcast.as_ref().map_or(0, |m| m.tracker.memberships().filter(|m| !m.is_link_local()).count());
        format!(
            "{} ports, {} sessions, {memberships} memberships, accounting backlog {}",
            self.ports.len(),
            self.sessions.len(),
            self.acct.backlog()
        )
    }

    /// The earliest timer of the core, when it has one.
    pub(super) fn poll_timeout(&mut self) -> Option<Instant> {
        let mcast = self.mcast.as_ref().and_then(|m| m.tracker.poll_timeout());
        let reconcile = self.reconcile_due(self.clock.instant(self.epoch));
        [self.auth.poll_timeout(), self.radius.poll_timeout(), mcast, self.acct.poll_timeout(), reconcile]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn drain(&mut self, now: Instant) {
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
                        debug!(?token, server, rtt_us = rtt.as_micros() as u64, code = ?packet.code(), "RADIUS reply");
                        self.radius_rtt[server].record(rtt);
                        match token {
                            RadiusFor::PerJoin(t) => self.per_join_answer(now, t, Some(&packet)),
                            RadiusFor::Auth(token) => {
                                self.auth.handle_input(now, auth::Input::RadiusReply { token, packet: &packet })
                            }
                        }
                    }
                    rc::Output::Failed { token: RadiusFor::PerJoin(t) } => self.per_join_answer(now, t, None),
                    rc::Output::Failed { token: RadiusFor::Auth(token) } => {
                        self.auth.handle_input(now, auth::Input::RadiusFailed { token })
                    }
                }
            }
            while let Some(o) = self.auth.poll_output() {
                progressed = true;
                self.auth_output(now, o);
            }
            progressed |= self.drain_mcast(now);
            progressed |= self.acct_drain(now);
            if !progressed {
                self.acct_commit(now);
                break;
            }
        }
        self.sync_mab_learning();
        // CoA/Disconnect answers go once what they asked for has taken effect
        if let Some(d) = self.das.as_mut() {
            d.send_answers(self.net.as_mut(), self.acct.durable_at(), self.acct.durable());
        }
    }

    /// The kernel's drop counters of the capture sockets reset when read: what they
    /// counted goes into ours before anything shows it.
    pub(super) fn fold_capture_drops(&mut self) {
        self.io.capture_drops += self.net.capture_drops();
    }

    /// The kernel's counters a status or a scrape shows: the capture drops, and what the
    /// usage counters had no room for (read as it is: the kernel's counter only grows).
    pub(super) fn read_kernel_counters(&mut self) {
        self.fold_capture_drops();
        match self.dataplane.usage_uncounted() {
            Ok(Some((packets, octets))) => {
                self.io.usage_uncounted_packets = packets;
                self.io.usage_uncounted_octets = octets;
            }
            Ok(None) => {}
            Err(e) => warn!("reading the usage counters' overflow counter: {e}"),
        }
    }
}
