//! The kernel's side of the daemon's state: link and FDB events from rtnetlink, what
//! happens when some are lost, and the periodic reconciliation of the kernel's FDB and
//! MDB entries on the access ports with the sessions and memberships mcgate holds.
//!
//! rtnetlink notifications are datagrams on a socket of bounded buffer: a burst (a
//! flapping port, a large FDB flush) overruns it, the kernel drops what does not fit and
//! the next read fails with ENOBUFS. What was lost cannot be known, so an overrun makes
//! the daemon read the links and the FDB again and act on what differs, and then
//! reconcile. The reconciliation also runs every `reconcile_interval`, and soon after a
//! kernel change failed: an entry deleted by hand comes back, a static entry or an MDB
//! entry someone added on an access port goes, and a change that failed (an FDB delete
//! at logoff, an MDB delete at a leave) is made again.

use super::input::Input;
use super::Daemon;
use crate::auth::{self, PortId};
use crate::dataplane::{netlink, MdbEntry, PortVlan};
use crate::sys;
use crate::wire::MacAddr;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Kernel events waiting for the daemon: their own queue, so that a burst of them
/// neither waits behind frames nor holds frames up.
pub(super) const QUEUE: usize = 1024;
/// The first retry after a kernel change failed; doubling up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Reads the rtnetlink event socket: only the access ports' link changes and locked FDB
/// entries (MAC bypass) go on; a lost event (the socket overran, or the queue was full)
/// becomes one `KernelOverrun`, sent as soon as the queue has room.
/// The event socket, opened before the daemon reads the links and locks the ports: what
/// happens from then on is queued in it (a locked FDB entry made in between would
/// otherwise never be reported, and its host wait for the entry to age out).
pub(super) fn subscribe() -> std::io::Result<std::os::fd::OwnedFd> {
    sys::netlink_route(netlink::GROUPS_LINK_NEIGH, true)
}

pub(super) fn spawn_reader(
    socket: std::os::fd::OwnedFd,
    ports: Vec<u32>,
    tx: mpsc::Sender<Input>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let fd = sys::async_fd(socket)?;
    // nothing is awaited between a read and its hand-on: abort-safe (a hand-over)
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut lost = false;
        loop {
            let Ok(mut guard) = fd.readable().await else { return };
            let events = match guard.try_io(|fd| sys::recv(fd.get_ref(), &mut buf)) {
                Ok(Ok(n)) => netlink::parse_events(&buf[..n]),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost = true;
                    vec![]
                }
                Ok(Err(e)) => {
                    warn!("kernel events: {e}");
                    continue;
                }
                Err(_would_block) => continue,
            };
            let events: Vec<_> = events.into_iter().filter(|e| concerns(e, &ports)).collect();
            if lost {
                match tx.try_send(Input::KernelOverrun) {
                    Ok(()) => lost = false,
                    Err(mpsc::error::TrySendError::Full(_)) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            if events.is_empty() {
                continue;
            }
            match tx.try_send(Input::Kernel { events }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => lost = true,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }))
}

/// An event the daemon acts on: an access port's link, or a locked FDB entry on one.
fn concerns(e: &netlink::Event, ports: &[u32]) -> bool {
    match e {
        netlink::Event::Link(l) => ports.contains(&l.index),
        netlink::Event::LinkGone(index) => ports.contains(index),
        netlink::Event::NewFdb(f) => f.locked && ports.contains(&f.ifindex),
        netlink::Event::DelFdb(_) => false,
    }
}

/// Counters of the kernel side.
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Stats {
    /// Times kernel events were lost (and links and FDB read again).
    pub overruns: u64,
    /// Link states found different from what the events had said, after an overrun.
    pub links_resynced: u64,
    pub reconciles: u64,
    /// Repairs: authorizations put back / removed, MDB entries put back / removed.
    pub fdb_restored: u64,
    pub fdb_removed: u64,
    pub mdb_restored: u64,
    pub mdb_removed: u64,
    /// Reconciliations that could not read or change the kernel.
    pub errors: u64,
}

/// When the next reconciliation is due.
pub(super) struct Schedule {
    interval: Duration,
    pub next: Instant,
    retry: Duration,
    /// `io.dataplane_errors` as last seen: more means a change failed.
    errors_seen: u64,
}

impl Schedule {
    pub fn new(now: Instant, interval: Duration) -> Self {
        Schedule { interval, next: now + interval, retry: FIRST_RETRY, errors_seen: 0 }
    }

    /// After a failed kernel change the next reconciliation comes early (1 s, doubling
    /// while changes keep failing, never later than the interval).
    fn note_errors(&mut self, now: Instant, errors: u64) {
        if errors > self.errors_seen {
            self.errors_seen = errors;
            self.next = self.next.min(now + self.retry);
            self.retry = (self.retry * 2).min(self.interval);
        }
    }
}

impl Daemon {
    /// The entries of interface `ifindex`: its link is theirs.
    fn ports_on(&self, ifindex: u32) -> Vec<PortId> {
        (0..self.ports.len()).filter(|i| self.ports[*i].ifindex == ifindex).collect()
    }

    /// The entry of interface `ifindex` whose hosts are in `vlan` (a locked FDB entry's).
    fn port_in(&self, ifindex: u32, vlan: Option<u16>) -> Option<PortId> {
        self.ports.iter().position(|p| p.ifindex == ifindex && p.vlan == vlan)
    }

    pub(super) fn kernel_event(&mut self, now: Instant, e: netlink::Event) {
        match e {
            netlink::Event::Link(l) => {
                for port in self.ports_on(l.index) {
                    let input = if l.running { auth::Input::LinkUp { port } } else { auth::Input::LinkDown { port } };
                    debug!(port = %self.ports[port].at(), running = l.running, "link state");
                    self.auth.handle_input(now, input);
                }
            }
            netlink::Event::LinkGone(index) => {
                for port in self.ports_on(index) {
                    warn!(port = %self.ports[port].at(), "port removed");
                    self.auth.handle_input(now, auth::Input::LinkDown { port });
                }
            }
            netlink::Event::NewFdb(f) if f.locked => {
                if let Some(port) = self.port_in(f.ifindex, f.vlan) {
                    self.auth.handle_input(now, auth::Input::UnknownMac { port, mac: f.mac });
                }
            }
            _ => {}
        }
    }

    /// Events were lost: the links and the FDB are read again and what differs from
    /// what the daemon knows is acted on, then everything is reconciled.
    pub(super) fn kernel_overrun(&mut self, now: Instant) {
        self.kernel.stats.overruns += 1;
        warn!("kernel events were lost (the event socket overran): links and FDB read again");
        match self.net.links() {
            Ok(links) => {
                for port in 0..self.ports.len() {
                    let running = links.iter().any(|l| l.index == self.ports[port].ifindex && l.running);
                    if running == self.auth.port_up(port) {
                        continue;
                    }
                    self.kernel.stats.links_resynced += 1;
                    info!(port = self.ports[port].name, running, "link state found changed after lost events");
                    let input = if running { auth::Input::LinkUp { port } } else { auth::Input::LinkDown { port } };
                    self.auth.handle_input(now, input);
                }
            }
            Err(e) => {
                self.kernel.stats.errors += 1;
                error!("reading links after lost events: {e}");
            }
        }
        match self.net.fdb() {
            Ok(entries) => {
                for f in entries.into_iter().filter(|f| f.locked) {
                    if let Some(port) = self.port_in(f.ifindex, f.vlan) {
                        self.auth.handle_input(now, auth::Input::UnknownMac { port, mac: f.mac });
                    }
                }
            }
            Err(e) => {
                self.kernel.stats.errors += 1;
                error!("reading the FDB after lost events: {e}");
            }
        }
        // what the link changes end is carried out first, then the rest is compared
        self.drain(now);
        self.reconcile(now);
    }

    /// When the next reconciliation is due (a failed change brings it closer).
    pub(super) fn reconcile_due(&mut self, now: Instant) -> Option<Instant> {
        if self.audit_mode {
            return None;
        }
        self.kernel.schedule.note_errors(now, self.io.dataplane_errors);
        Some(self.kernel.schedule.next)
    }

    pub(super) fn reconcile_timeout(&mut self, now: Instant) {
        if self.audit_mode || self.kernel.schedule.next > now {
            return;
        }
        // what the timers just did is carried out (and committed) first
        self.drain(now);
        let errors = self.io.dataplane_errors;
        self.reconcile(now);
        let s = &mut self.kernel.schedule;
        if self.io.dataplane_errors == errors {
            s.retry = FIRST_RETRY;
        }
        s.errors_seen = self.io.dataplane_errors;
        s.next = now + s.interval;
    }

    /// Makes the access ports' static FDB entries and MDB entries what the sessions and
    /// memberships say, both ways.
    fn reconcile(&mut self, now: Instant) {
        self.kernel.stats.reconciles += 1;
        for port in 0..self.ports.len() {
            self.release_vlan(now, port);
        }
        let mut have = match self.authorized_hosts() {
            Ok(have) => have,
            Err(e) => {
                self.kernel.stats.errors += 1;
                error!("reconcile: listing authorizations: {e}");
                return self.reconcile_mdb();
            }
        };
        let missing: Vec<(PortId, MacAddr)> = self.sessions.keys().filter(|k| !have.remove(*k)).copied().collect();
        // what is left of `have` has no session
        for (port, mac) in have {
            let at = self.ports[port].at();
            warn!(port = %at, mac = %mac, "reconcile: static FDB entry without a session removed");
            self.kernel.stats.fdb_removed += 1;
            if let Err(e) = self.dataplane.deauthorize(&at, mac) {
                self.io.dataplane_errors += 1;
                error!(port = %at, mac = %mac, "reconcile: {e}");
            }
        }
        for (port, mac) in missing {
            let at = self.ports[port].at();
            warn!(port = %at, mac = %mac, "reconcile: authorized host's FDB entry was gone; put back");
            self.kernel.stats.fdb_restored += 1;
            if let Err(e) = self.dataplane.authorize(&at, mac) {
                self.io.dataplane_errors += 1;
                error!(port = %at, mac = %mac, "reconcile: {e}");
            }
        }
        self.reconcile_mdb();
    }

    fn reconcile_mdb(&mut self) {
        let Some(m) = self.mcast.as_ref() else { return };
        let bridge = m.bridge.clone();
        // two entries of one port in the multicast VLAN share its MDB entries there
        let want: std::collections::BTreeSet<MdbEntry> =
            m.tracker.port_channels().map(|(p, (g, s))| (self.mdb_at(p, g), g, s)).collect();
        let all = match self.dataplane.mdb_all(&bridge) {
            Ok(all) => all,
            Err(e) => {
                self.kernel.stats.errors += 1;
                error!("reconcile: listing MDB entries: {e}");
                return;
            }
        };
        // others' entries count where mcgate installs (a VLAN-filtering bridge's other
        // VLANs of the ports are none of its business); its own count everywhere
        // where mcgate installs: the channels' VLAN (the multicast VLAN's, if any) and the
        // hosts' own (link-scope groups)
        let targets: std::collections::BTreeSet<PortVlan> =
            (0..self.ports.len()).flat_map(|p| [self.channels_at(p), self.ports[p].at()]).collect();
        let (ours, foreign): (Vec<_>, Vec<_>) =
            all.into_iter().filter(|(e, ours)| *ours || targets.contains(&e.0)).partition(|(_, ours)| *ours);
        let ours: std::collections::BTreeSet<MdbEntry> = ours.into_iter().map(|(e, _)| e).collect();
        let unjustified: Vec<MdbEntry> =
            ours.iter().filter(|e| !want.contains(e)).cloned().chain(foreign.into_iter().map(|(e, _)| e)).collect();
        let missing: Vec<&MdbEntry> = want.iter().filter(|e| !ours.contains(e)).collect();
        if !unjustified.is_empty() || !missing.is_empty() {
            // entries came or went behind mcgate's back: a counter it holds frozen may
            // have moved meanwhile
            if let Some(m) = self.mcast.as_mut() {
                m.frozen_usage.clear();
            }
        }
        for (port, group, source) in &unjustified {
            warn!(%port, %group, ?source, "reconcile: MDB entry without a membership removed");
            self.kernel.stats.mdb_removed += 1;
            if let Err(e) = self.dataplane.mdb_del(&bridge, port, *group, *source) {
                self.io.dataplane_errors += 1;
                error!(%port, %group, "reconcile: {e}");
            }
        }
        for (port, group, source) in missing {
            warn!(%port, %group, ?source, "reconcile: a membership's MDB entry was gone; put back");
            self.kernel.stats.mdb_restored += 1;
            if let Err(e) = self.dataplane.mdb_add(&bridge, port, *group, *source) {
                self.io.dataplane_errors += 1;
                error!(%port, %group, "reconcile: {e}");
            }
        }
    }
}

/// The daemon's kernel side: the reconciliation's schedule, the counters.
pub(super) struct Kernel {
    pub schedule: Schedule,
    pub stats: Stats,
}
