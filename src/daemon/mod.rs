//! The daemon: one actor owns the state machines; thin tasks read the sockets and
//! send it events, and it carries their outputs out (EAPOL frames, RADIUS datagrams,
//! kernel changes, database writes).
//!
//! Where to read what: this file is the core's state and its drain (the order in which
//! outputs are carried out); `run` the process (set-up, reader tasks, event loop);
//! `sessions` logins and logoffs; `mcast` joins and leaves; `acct` the journal, its
//! commits and delivery; `das` CoA/Disconnect; `kernel` lost events and the
//! reconciliation; `control` the CLI's requests; `net` the sockets the core sends on;
//! `tests` the core on fakes, without root.

mod acct;
pub mod config;
pub mod control;
mod das;
mod kernel;
mod listen;
mod mcast;
mod metrics;
mod net;
mod run;
mod sessions;
#[cfg(test)]
mod tests;

pub use control::client_request;
pub use run::run;

use crate::acct::unix_now;
use crate::auth::{self, Authenticator, EndCause, Input, PortConfig, PortId};
use crate::capture::{limit, PortSocket};
use crate::dataplane::netlink::Netlink;
use crate::dataplane::{self, Dataplane};
use crate::radius::client::{self as rc, Client};
use crate::store::{Op, Session, Store};
use crate::sys;
use crate::wire::{ethernet, MacAddr};
use anyhow::{anyhow, Context as _};
use config::Loaded;
use control::{Request, Response};
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

impl Daemon {
    /// The core, from the configuration and what the set-up made of the kernel and the
    /// sockets (fakes in unit tests). Nothing is sent or changed until [`Daemon::start`].
    pub(super) fn new(
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
    pub(super) fn start(&mut self, now: Instant, kernel_state_gone: bool, run_id: u32) {
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

    pub(super) fn handle_event(&mut self, now: Instant, ev: Event) {
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
    pub(super) fn fold_capture_drops(&mut self) {
        self.io.capture_drops += self.net.capture_drops();
    }
}
