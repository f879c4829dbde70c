//! The daemon's multicast gate: reports from the capture to the tracker, the
//! tracker's outputs to the store, the bridge MDB, the uplinks and the ports.

use super::config::{Config, Multicast};
use super::input::StartBridge;
use super::metrics::Histogram;
use super::Daemon;
use crate::acct::TerminateCause;
use crate::auth::PortId;
use crate::dataplane::netlink::{Link, Netlink};
use crate::dataplane::{Dataplane, MdbEntry, PortVlan};
use crate::hash::HashMap;
use crate::mcast::{self, EndCause, Host, RadiusAnswer, Tracker};
use crate::policy::{entitlement_from_attrs, Entitlement, Policy};
use crate::radius::client::{Attr, Request};
use crate::radius::{attr, mcgate_attr, vendor_attr, Code, Packet};
use crate::wire::membership::{self, GroupRecord};
use crate::wire::records::OwnedRecord;
use crate::wire::{ethernet, igmp, mld, EncodeError, MacAddr};
use anyhow::{anyhow, Context as _};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// Entries of the bridge's multicast table that are not the access ports' (the bridge's
/// own joins, what it snoops on the uplinks), beyond `max_channels_per_port` per listing.
const BRIDGE_OWN_ENTRIES: usize = 1024;

/// Service-Type Authorize-Only (RFC 5176 3.1): a question, no credentials.
const AUTHORIZE_ONLY: u32 = 17;

pub(super) struct HostInfo {
    entitlement: Entitlement,
    account: Arc<str>,
    session_id: Arc<str>,
}

pub(super) struct McastState {
    pub tracker: Tracker,
    pub policy: Policy,
    pub vendor_id: u32,
    pub bridge: String,
    pub bridge_mac: MacAddr,
    pub bridge_v4: Ipv4Addr,
    pub bridge_ll6: Ipv6Addr,
    /// Uplink names, in the order `Net::send_uplink` numbers them.
    pub uplinks: Vec<String>,
    /// Each port listing's multicast VLAN, where there is one: its streams' MDB entries
    /// go there, and the reports for them go upstream tagged in it.
    pub mvr: Vec<Option<u16>>,
    /// The tag protocol of the bridge's VLANs (0x88a8 on a Q-in-Q bridge): upstream
    /// reports in a multicast VLAN carry it.
    pub vlan_protocol: u16,
    /// What the gate needs of each session: packages and limits from its Access-Accept,
    /// and the names its memberships carry (shared, not copied per join).
    pub hosts: HashMap<(PortId, MacAddr), HostInfo>,
    pub port_names: Vec<Arc<str>>,
    pub stats: McastIoStats,
    /// Spoofed reports are logged once a minute per MAC (each is counted).
    spoof_log: crate::rate::LogLimit<MacAddr>,
    /// Usage counters that stand still: by interface and group, the value read after the
    /// interface's last MDB entry for the group went, and when (see `freeze_usage`).
    pub frozen_usage: HashMap<(Arc<str>, IpAddr), Frozen>,
}

/// A usage counter's value (packets, octets) read when nothing forwarded its group to its
/// interface any more, and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frozen {
    usage: (u64, u64),
    at: Instant,
}

/// How long a frozen usage counter is trusted: the usage set forgets an element an hour
/// after its last packet, and one made again starts from 0.
const FROZEN_FOR: Duration = Duration::from_secs(50 * 60);
/// Frozen usage counters kept at most; a join whose counter is not among them reads it.
const FROZEN_MAX: usize = 65_536;

#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct McastIoStats {
    pub reports: BTreeMap<membership::Version, u64>,
    pub dropped: BTreeMap<membership::Drop, u64>,
    /// Reports from a MAC with no session anywhere.
    pub dropped_unauthenticated: u64,
    /// Reports from a MAC whose session is on another port.
    pub dropped_spoofed_mac: u64,
    pub upstream_reports_tx: u64,
    pub queries_tx: u64,
    pub tx_errors: u64,
    /// From the kernel's receipt of a report to the capture task's read of it: the
    /// wake-up (and any backlog in the ring).
    pub capture_wait: Histogram,
    /// From the capture task's read to the decision made (queueing in the actor included).
    pub decision_latency: Histogram,
    /// From the capture task's read of the earliest report in the batch to the MDB entry
    /// of an admission installed (before its commit): an upper bound.
    pub admission_latency: Histogram,
    /// The earliest capture time of the reports in the batch being handled.
    #[serde(skip)]
    pub batch_since: Option<Instant>,
}

/// Sets up the bridge and uplinks for the gate; what comes back: the bridge's
/// addresses its queries and reports go out from, and the uplinks' interface indexes
/// (their sockets, to send reports on, are opened or taken over later). `access`: each
/// port listing's port and multicast VLAN.
pub(super) fn set_up(
    cfg: &Config,
    mc: &Multicast,
    access: &[(&str, Option<u16>)],
    links: &[Link],
    bridge: &Link,
    nl: &mut Netlink,
    dataplane: &mut (dyn Dataplane + Send),
) -> anyhow::Result<(StartBridge, Vec<u32>)> {
    let uplink_names: Vec<&str> = mc.uplinks.iter().map(|u| u.get_ref().as_str()).collect();
    let mut ports: Vec<&str> = access.iter().map(|(p, _)| *p).collect();
    ports.sort();
    ports.dedup();
    // the bridge's multicast table holds what mcgate's bounds allow (each listing its
    // channels), and room for what the bridge keeps of its own and the uplinks'
    let entries = (access.len().saturating_mul(mc.bounds.channels_per_port)).saturating_add(BRIDGE_OWN_ENTRIES);
    let entries = u32::try_from(entries).unwrap_or(u32::MAX);
    let usage_pairs = mc.usage_pairs(access.len());
    dataplane
        .setup_multicast(&cfg.switch.bridge, &ports, &uplink_names, mc.port_max_groups, entries, usage_pairs)
        .context("multicast set-up")?;
    info!(entries, "the bridge's multicast table holds at least this many entries (mcast_hash_max)");
    info!(usage_pairs, "the usage counters hold this many (port, group) pairs that carried traffic in the last hour");
    // each multicast VLAN with the ports whose streams come in it
    let vids: std::collections::BTreeSet<u16> = access.iter().filter_map(|(_, v)| *v).collect();
    for vid in vids {
        let mut ports: Vec<&str> = access.iter().filter(|(_, v)| *v == Some(vid)).map(|(p, _)| *p).collect();
        ports.dedup();
        dataplane
            .setup_multicast_vlan(&cfg.switch.bridge, vid, &ports, &uplink_names)
            .with_context(|| format!("multicast VLAN {vid}"))?;
        info!(vlan = vid, ?ports, "multicast VLAN registration on");
    }
    let mut uplinks = Vec::new();
    for name in &uplink_names {
        let link = links.iter().find(|l| l.name == *name).ok_or_else(|| anyhow!("uplink {name} not found"))?;
        uplinks.push(link.index);
    }
    let addrs = nl.addresses(bridge.index)?;
    let bridge_v4 = addrs.iter().find_map(|(a, _)| if let IpAddr::V4(a) = a { Some(*a) } else { None });
    if bridge_v4.is_none() {
        warn!(
            bridge = cfg.switch.bridge,
            "the bridge has no IPv4 address: its querier stays silent and snooping floods (docs/peers-and-kernel.md)"
        );
    }
    let bridge_ll6 =
        addrs.iter().find_map(|(a, scope)| if let (IpAddr::V6(a), 253) = (a, scope) { Some(*a) } else { None });
    if bridge_ll6.is_none() {
        warn!(bridge = cfg.switch.bridge, "the bridge has no IPv6 link-local address yet: its MLD querier counts only from its next startup query, and IPv6 snooping floods until then");
    }
    let vlan_protocol = dataplane.vlan_protocol(&cfg.switch.bridge).context("reading the bridge's VLAN protocol")?;
    let b = StartBridge { mac: bridge.mac.unwrap_or_default(), v4: bridge_v4, ll6: bridge_ll6, vlan_protocol };
    Ok((b, uplinks))
}

impl McastState {
    /// The gate's state: the tracker configured from `[multicast]`, the policy, and the
    /// bridge's addresses its queries and reports go out from.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: &Config,
        mc: &Multicast,
        policy: &Policy,
        access: &[&str],
        mvr: Vec<Option<u16>>,
        bridge_mac: MacAddr,
        bridge_v4: Option<Ipv4Addr>,
        bridge_ll6: Option<Ipv6Addr>,
        vlan_protocol: u16,
        run_id: u32,
    ) -> Self {
        let tracker_config = mcast::Config { run_id, bounds: mc.bounds, ..mc.tracker.clone() };
        info!(policy = policy.version, packages = policy.packages.len(), "multicast gate on");
        McastState {
            tracker: Tracker::new(tracker_config, cfg.ports.iter().map(|p| p.fast_leave).collect())
                .with_upstream_vlans(mvr.clone()),
            policy: policy.clone(),
            vendor_id: mc.vendor_id,
            bridge: cfg.switch.bridge.clone(),
            bridge_mac,
            bridge_v4: bridge_v4.unwrap_or(Ipv4Addr::UNSPECIFIED),
            bridge_ll6: bridge_ll6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            uplinks: mc.uplinks.iter().map(|u| u.get_ref().clone()).collect(),
            mvr,
            vlan_protocol,
            hosts: HashMap::default(),
            port_names: access.iter().map(|p| Arc::from(*p)).collect(),
            stats: Default::default(),
            spoof_log: crate::rate::LogLimit::per_minute(1024),
            frozen_usage: HashMap::default(),
        }
    }
}

impl Daemon {
    /// Reads the policy files again; if they are valid, swaps them in and decides the
    /// live memberships again (those no longer allowed go). A broken file changes nothing.
    pub(super) fn policy_reload(&mut self, now: Instant) -> Result<String, String> {
        let (Some(dir), Some(_)) = (&self.policy_dir, &self.mcast) else {
            return Err("no [multicast] section: there is no policy".into());
        };
        if self.catalogue.is_some() {
            return Err(
                "the policy comes from the etcd catalogue ([catalogue]): `mcgate catalogue push` changes it".into()
            );
        }
        let policy = crate::policy::load_dir(dir).map_err(|e| format!("{}:{}: {}", e.file, e.line, e.message))?;
        let (version, packages) = (policy.version.clone(), policy.packages.len());
        let revoked = self.policy_swap(now, policy);
        Ok(format!("policy {version} loaded ({packages} packages); {revoked} memberships no longer allowed"))
    }

    /// Puts a validated policy in force (a reload, a catalogue from etcd) and decides the
    /// live memberships again; returns how many it ended.
    pub(super) fn policy_swap(&mut self, now: Instant, policy: crate::policy::Policy) -> usize {
        let Some(m) = self.mcast.as_mut() else { return 0 };
        m.policy = policy;
        let hosts: Vec<(PortId, MacAddr)> = self.sessions.keys().copied().collect();
        hosts.into_iter().map(|(p, mac)| self.mcast_reevaluate(now, p, mac)).sum()
    }

    pub(super) fn on_mcast_frame(&mut self, now: Instant, port: PortId, src: MacAddr, ethertype: u16, payload: &[u8]) {
        let Some(m) = self.mcast.as_mut() else {
            self.io.frames_multicast_control += 1;
            return;
        };
        let report = match membership::decode(ethertype, payload) {
            Ok(r) => r,
            Err(d) => {
                *m.stats.dropped.entry(d).or_default() += 1;
                debug!(port = self.ports[port].name, mac = %src, reason = d.name(), "IGMP/MLD frame dropped");
                return;
            }
        };
        *m.stats.reports.entry(report.version).or_default() += 1;
        let Some(session) = self.sessions.get(&(port, src)) else {
            if self.session_macs.contains_key(&src) {
                m.stats.dropped_spoofed_mac += 1;
                if m.spoof_log.allow(now, src) {
                    warn!(port = self.ports[port].name, mac = %src, "report with a MAC authorized on another port dropped (logged once a minute per MAC)");
                }
            } else {
                m.stats.dropped_unauthenticated += 1;
                debug!(port = self.ports[port].name, mac = %src, "report from an unauthenticated host dropped");
                // a host that speaks: asked who it is (a supplicant may be starting)
                self.auth.handle_input(now, crate::auth::Input::UnknownMac { port, mac: src });
            }
            return;
        };
        let vendor_id = m.vendor_id;
        let info = m.hosts.entry((port, src)).or_insert_with(|| HostInfo {
            entitlement: entitlement_from_attrs(&session.attrs, vendor_id),
            account: session.account.as_str().into(),
            session_id: session.session_id.as_str().into(),
        });
        let host = Host {
            port,
            port_name: &m.port_names[port],
            vlan: self.ports[port].vlan,
            mac: src,
            account: &info.account,
            session_id: &info.session_id,
            entitlement: &info.entitlement,
        };
        m.tracker.handle_report(now, self.clock.unix, &m.policy, &host, &report.records);
    }

    /// A per-join answer (`None`: no server answered).
    pub(super) fn per_join_answer(&mut self, now: Instant, token: u64, reply: Option<&Packet>) {
        let ttl =
            |p: &Packet| crate::auth::ReplyAttrs::from_packet(p).session_timeout.map(|s| Duration::from_secs(s as u64));
        let answer = match reply {
            Some(p) if p.code() == Code::AccessAccept => RadiusAnswer::Accept { ttl: ttl(p) },
            Some(p) => RadiusAnswer::Reject { ttl: ttl(p) },
            None => RadiusAnswer::Unreachable,
        };
        self.per_join_decided(now, token, answer);
    }

    pub(super) fn per_join_decided(&mut self, now: Instant, token: u64, answer: RadiusAnswer) {
        let Some(m) = self.mcast.as_mut() else { return };
        m.tracker.radius_answer(now, self.clock.unix, &m.policy, token, answer);
    }

    /// Every membership of a session that ended goes with it, at once: their Stops
    /// are written while the session is still known.
    pub(super) fn mcast_end_host(&mut self, now: Instant, port: PortId, mac: MacAddr, cause: crate::auth::EndCause) {
        if let Some(m) = self.mcast.as_mut() {
            m.hosts.remove(&(port, mac));
            m.tracker.end_host(now, port, mac, EndCause::SessionEnd(cause));
            self.drain_mcast(now);
        }
    }

    /// The session's packages or the policy changed: its memberships are decided
    /// again and those no longer allowed go. Returns how many went.
    pub(super) fn mcast_reevaluate(&mut self, now: Instant, port: PortId, mac: MacAddr) -> usize {
        let (Some(session), Some(m)) = (self.sessions.get(&(port, mac)), self.mcast.as_mut()) else { return 0 };
        let info = HostInfo {
            entitlement: entitlement_from_attrs(&session.attrs, m.vendor_id),
            account: session.account.as_str().into(),
            session_id: session.session_id.as_str().into(),
        };
        let info = m.hosts.entry((port, mac)).insert_entry(info).into_mut();
        let host = Host {
            port,
            port_name: &m.port_names[port],
            vlan: self.ports[port].vlan,
            mac,
            account: &info.account,
            session_id: &info.session_id,
            entitlement: &info.entitlement,
        };
        m.tracker.reevaluate(now, &m.policy, &host)
    }

    /// A re-authentication may have brought other packages.
    pub(super) fn mcast_forget_entitlement(&mut self, port: PortId, mac: MacAddr) {
        if let Some(m) = self.mcast.as_mut() {
            m.hosts.remove(&(port, mac));
        }
    }

    /// Memberships of sessions that survived the restart are put back (and their MDB
    /// entries re-installed, their Interim-Updates going on); the rest of the store ends
    /// with its Stop at the time last known alive, and any MDB entry of mcgate's that
    /// nothing justifies is removed.
    pub(super) fn mcast_restore(&mut self, now: Instant, cold: bool) {
        if self.mcast.is_none() {
            return;
        }
        let stored = self.store.memberships().unwrap_or_else(|e| {
            error!("reading memberships: {e}");
            vec![]
        });
        let ended = self.last_alive();
        let (mut restored, mut stopped) = (0usize, 0usize);
        for r in stored {
            let membership = match r {
                Ok(x) => x,
                Err(e) => {
                    error!("{e}");
                    continue;
                }
            };
            let port = self.port_of(&membership.port, membership.vlan);
            match port.filter(|p| self.sessions.contains_key(&(*p, membership.mac))) {
                Some(port) => {
                    debug!(port = &*membership.port, mac = %membership.mac, group = %membership.group, "membership restored");
                    restored += 1;
                    if let Some(m) = self.mcast.as_mut() {
                        m.tracker.restore(now, port, membership);
                    }
                }
                None => {
                    let cause = if cold { TerminateCause::NasReboot } else { TerminateCause::AdminReset };
                    debug!(port = &*membership.port, mac = %membership.mac, group = %membership.group, ?cause, "membership without a session ended");
                    stopped += 1;
                    let time = ended.max(membership.since);
                    self.acct_membership_stop(port, &membership, cause, time, !cold);
                }
            }
        }
        if restored + stopped > 0 {
            info!(restored, ended = stopped, "memberships of the last run");
        }
        let Some(m) = self.mcast.as_ref() else { return };
        let justified: std::collections::BTreeSet<MdbEntry> =
            m.tracker.port_channels().map(|(p, (g, s))| (self.mdb_at(p, g), g, s)).collect();
        match self.dataplane.mdb_entries(&m.bridge) {
            Ok(entries) => {
                for (port, g, s) in entries.into_iter().filter(|e| !justified.contains(e)) {
                    info!(%port, group = %g, source = ?s, "MDB entry without a membership removed");
                    if self.dataplane.mdb_del(&m.bridge, &port, g, s).is_err() {
                        self.io.dataplane_errors += 1;
                    }
                }
            }
            Err(e) => {
                error!("listing MDB entries: {e}");
                self.io.dataplane_errors += 1;
            }
        }
    }

    /// Carries out the tracker's outputs; true when there were any.
    /// Where `port`'s MDB entry for `group` goes.
    pub(super) fn mdb_at(&self, port: PortId, group: IpAddr) -> PortVlan {
        match &self.mcast {
            Some(m) => mdb_at(m, &self.ports, port, group),
            None => self.ports[port].at(),
        }
    }

    /// Where `port`'s channels' MDB entries go.
    pub(super) fn channels_at(&self, port: PortId) -> PortVlan {
        match &self.mcast {
            Some(m) => channels_at(m, &self.ports, port),
            None => self.ports[port].at(),
        }
    }

    pub(super) fn drain_mcast(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(o) = self.mcast.as_mut().and_then(|m| m.tracker.poll_output()) {
            progressed = true;
            self.mcast_output(now, o);
        }
        progressed
    }

    fn mcast_output(&mut self, now: Instant, o: mcast::Output) {
        let Some(m) = self.mcast.as_mut() else { return };
        match o {
            mcast::Output::Admitted { port, membership } => {
                // Its Start goes into this batch, the MdbAdd that follows in at once
                // (`mdb_install`); a join that cannot be accounted is refused here
                // (fail closed).
                let (mac, channel) = (membership.mac, (membership.group, membership.source));
                if !self.acct_membership_start(port, (*membership).clone()) {
                    if let Some(m) = self.mcast.as_mut() {
                        m.tracker.revoke(now, port, mac, channel);
                    }
                }
            }
            mcast::Output::Ended { membership, cause } => {
                debug!(port = &*membership.port, mac = %membership.mac, group = %membership.group, ?cause, "membership ended");
                let port = self.port_of(&membership.port, membership.vlan);
                self.acct_membership_stop(port, &membership, cause.into(), self.clock.unix, true);
            }
            mcast::Output::Denied { .. } => {}
            mcast::Output::AskRadius { token, port, mac, account, group, source } => {
                // the method of US7502926B2: the account, where it is, and what it wants
                // an address in text is at most 39 octets: these always fit
                let vsa = |ty: u8, v: IpAddr| vendor_attr(m.vendor_id, ty, v.to_string().as_bytes());
                let mut attrs = vec![
                    Attr::Bytes(attr::USER_NAME, account.into_bytes()),
                    Attr::U32(attr::SERVICE_TYPE, AUTHORIZE_ONLY),
                ];
                attrs.extend(vsa(mcgate_attr::GROUP, group));
                attrs.extend(source.map(|s| vsa(mcgate_attr::SOURCE, s)).transpose().ok().flatten());
                attrs.extend(self.auth.nas_attrs(port, mac));
                debug!(port = self.ports[port].name, mac = %mac, %group, "per-join Access-Request");
                self.radius_send(now, super::RadiusFor::PerJoin(token), Request { code: Code::AccessRequest, attrs });
            }
            mcast::Output::MdbAdd { port, group, source } => {
                // not when its admission was refused a moment ago (it cannot be accounted)
                if m.tracker.holds(port, (group, source)) {
                    self.mdb_install(port, group, source);
                }
            }
            mcast::Output::MdbDel { port, group, source } => {
                // an entry in the multicast VLAN stays while another of the port's
                // entries (its hosts in another VLAN) holds the channel
                let at = mdb_at(m, &self.ports, port, group);
                let shared = (0..self.ports.len()).any(|p| {
                    p != port && mdb_at(m, &self.ports, p, group) == at && m.tracker.holds(p, (group, source))
                });
                if shared {
                    return;
                }
                match self.dataplane.mdb_del(&m.bridge, &at, group, source) {
                    Ok(()) => self.freeze_usage(now, port, group),
                    Err(e) => {
                        self.io.dataplane_errors += 1;
                        error!(port = %at, %group, "MDB del: {e}");
                    }
                }
            }
            mcast::Output::Upstream { records } => {
                // a report per multicast VLAN (none: untagged), in the order they came
                let mut vlans: Vec<Option<u16>> = records.iter().map(|(v, _)| *v).collect();
                vlans.dedup();
                let frames = vlans.into_iter().flat_map(|vlan| {
                    let these: Vec<GroupRecord> =
                        records.iter().filter(|(v, _)| *v == vlan).map(|(_, r)| r.clone()).collect();
                    upstream_frames(m, vlan, &these)
                });
                for frame in frames.collect::<Vec<_>>() {
                    let frame = match frame {
                        Ok(f) => f,
                        Err(e) => {
                            m.stats.tx_errors += 1;
                            error!("upstream report not encoded: {e}");
                            continue;
                        }
                    };
                    for (i, name) in m.uplinks.iter().enumerate() {
                        match self.net.send_uplink(i, &frame) {
                            Ok(()) => m.stats.upstream_reports_tx += 1,
                            Err(e) => {
                                m.stats.tx_errors += 1;
                                warn!(port = name, "upstream report: {e}");
                            }
                        }
                    }
                }
            }
            mcast::Output::Query { port, group, max_resp_code } => {
                match query_frame(m, self.ports[port].tag, group, max_resp_code)
                    .map_err(|e| e.to_string())
                    .and_then(|frame| self.net.send_frame(port, &frame).map_err(|e| e.to_string()))
                {
                    Ok(()) => m.stats.queries_tx += 1,
                    Err(e) => {
                        m.stats.tx_errors += 1;
                        warn!(port = %self.ports[port].at(), "group-specific query: {e}");
                    }
                }
            }
        }
    }
}

impl Daemon {
    /// After an MDB entry of `port`'s went: when no listing of the interface holds a
    /// channel of `group` any more, nothing forwards the group there, and its usage
    /// counter stands still until the next entry; its value now is the base of the next
    /// membership of the group there (`usage_base`), read here rather than on that join's
    /// way to its first packet (a netlink request, ~60 µs). Exact as long as only mcgate
    /// installs entries on its ports (the reconciliation forgets every frozen counter
    /// when it finds one it did not install).
    fn freeze_usage(&mut self, now: Instant, port: PortId, group: IpAddr) {
        let Some(m) = self.mcast.as_ref() else { return };
        let ifindex = self.ports[port].ifindex;
        let sent = (0..self.ports.len()).any(|p| self.ports[p].ifindex == ifindex && m.tracker.holds_group(p, group));
        if sent {
            return;
        }
        let name = m.port_names[port].clone();
        let usage = match self.dataplane.usage(&name, group) {
            Ok(Some(u)) => u,
            Ok(None) => return,
            Err(e) => {
                self.io.dataplane_errors += 1;
                warn!(port = &*name, %group, "reading the usage counter: {e}");
                return;
            }
        };
        let Some(m) = self.mcast.as_mut() else { return };
        if m.frozen_usage.len() >= FROZEN_MAX {
            m.frozen_usage.retain(|_, f| now.saturating_duration_since(f.at) < FROZEN_FOR);
            if m.frozen_usage.len() >= FROZEN_MAX {
                m.frozen_usage.clear();
            }
        }
        m.frozen_usage.insert((name, group), Frozen { usage, at: now });
    }

    /// A new membership's usage base: its interface's frozen counter for the group, or
    /// the counter read now.
    pub(super) fn usage_base(&mut self, m: &mcast::Membership) -> Option<(u64, u64)> {
        let now = self.clock.instant(self.epoch);
        let frozen = self.mcast.as_ref().and_then(|mc| mc.frozen_usage.get(&(m.port.clone(), m.group)));
        match frozen {
            Some(f) if now.saturating_duration_since(f.at) < FROZEN_FOR => Some(f.usage),
            _ => self.usage(m),
        }
    }

    /// A stream's MDB entry goes in as soon as its join is admitted, while the batch
    /// that holds its Start is still to be committed: the commit (an fsync, most of a
    /// millisecond) does not delay the first packet. If the commit fails, the join is
    /// revoked and the entry deleted; if mcgate dies before the commit, the entry is
    /// unjustified at the restart, which deletes it. What flows unbilled is bounded by
    /// the time mcgate is down (docs/architecture.md, "Durability").
    fn mdb_install(&mut self, port: PortId, group: IpAddr, source: Option<IpAddr>) {
        let at = self.mdb_at(port, group);
        let Some(m) = self.mcast.as_mut() else { return };
        // the interface is sent the group from now on: its counter moves again
        m.frozen_usage.remove(&(m.port_names[port].clone(), group));
        if let Err(e) = self.dataplane.mdb_add(&m.bridge, &at, group, source) {
            self.io.dataplane_errors += 1;
            error!(port = %at, %group, "MDB add: {e}");
        }
        if let Some(t) = m.stats.batch_since {
            m.stats.admission_latency.record(t.elapsed());
        }
    }
}

/// IGMPv3 reports for the IPv4 records and MLDv2 reports for the IPv6 ones, as many as
/// it takes for each to fit an Ethernet frame (a batch under load holds hundreds of first
/// joins: one report of them all would be refused by the kernel, EMSGSIZE, and the
/// upstream router would hear none of them).
fn upstream_frames(m: &McastState, vlan: Option<u16>, records: &[GroupRecord]) -> Vec<Result<Vec<u8>, EncodeError>> {
    let mut v4: Vec<OwnedRecord<Ipv4Addr>> = vec![];
    let mut v6: Vec<OwnedRecord<Ipv6Addr>> = vec![];
    for r in records {
        match r.group {
            IpAddr::V4(g) => v4.push(OwnedRecord {
                record_type: r.record_type,
                group: g,
                sources: r.sources.iter().filter_map(|s| if let IpAddr::V4(s) = s { Some(*s) } else { None }).collect(),
            }),
            IpAddr::V6(g) => v6.push(OwnedRecord {
                record_type: r.record_type,
                group: g,
                sources: r.sources.iter().filter_map(|s| if let IpAddr::V6(s) = s { Some(*s) } else { None }).collect(),
            }),
        }
    }
    let mut out = vec![];
    // IPv4 header with Router Alert (24) and the report's own header (8)
    for chunk in fitting(&v4, MTU - 24 - 8, OwnedRecord::buffer_len) {
        let pkt = igmp::Repr::ReportV3 { records: chunk }.to_ipv4(m.bridge_v4, igmp::ALL_V3_ROUTERS, 0xc0);
        let dst = MacAddr::for_group(igmp::ALL_V3_ROUTERS.into());
        out.push(pkt.map(|p| {
            ethernet::emit_frame_tagged(m.vlan_protocol, vlan, dst, m.bridge_mac, ethernet::ETHERTYPE_IPV4, &p)
        }));
    }
    // IPv6 header (40), Hop-by-Hop with Router Alert (8), the report's header (8)
    for chunk in fitting(&v6, MTU - 40 - 8 - 8, OwnedRecord::buffer_len) {
        let pkt = mld::Repr::ReportV2 { records: chunk }.to_ipv6(m.bridge_ll6, mld::ALL_V2_ROUTERS);
        let dst = MacAddr::for_group(mld::ALL_V2_ROUTERS.into());
        out.push(pkt.map(|p| {
            ethernet::emit_frame_tagged(m.vlan_protocol, vlan, dst, m.bridge_mac, ethernet::ETHERTYPE_IPV6, &p)
        }));
    }
    out
}

/// The IP MTU upstream reports are made to fit.
const MTU: usize = 1500;

/// `items` in consecutive runs whose `size`s add up to at most `budget` (an item larger
/// than the budget alone goes in a run of its own).
fn fitting<T>(items: &[T], budget: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut runs = vec![];
    let (mut start, mut used) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && used + n > budget {
            runs.push(&items[start..i]);
            (start, used) = (i, 0);
        }
        used += n;
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// A group-specific query (IGMPv3 / MLDv2) to `group` from the bridge.
/// The robustness variable and query interval (seconds) a query announces: RFC 9776
/// 8.1 and 8.2's defaults, as the bridge's own querier uses them.
const QRV: u8 = 2;
const QQIC: u8 = 125;

/// A group-specific query to a port's hosts, tagged as theirs (`tag`).
fn query_frame(m: &McastState, tag: Option<u16>, group: IpAddr, max_resp_code: u8) -> Result<Vec<u8>, EncodeError> {
    let (ethertype, pkt) = match group {
        IpAddr::V4(g) => {
            let query = igmp::Repr::QueryV3 { max_resp_code, group: g, qrv: QRV, qqic: QQIC, sources: &[] };
            (ethernet::ETHERTYPE_IPV4, query.to_ipv4(m.bridge_v4, g, 0xc0)?)
        }
        IpAddr::V6(g) => {
            // MLDv2 Maximum Response Code is in milliseconds; ours is in tenths of a second.
            let query =
                mld::Repr::QueryV2 { max_resp_code: max_resp_code as u16 * 100, group: g, qrv: QRV, qqic: QQIC };
            (ethernet::ETHERTYPE_IPV6, query.to_ipv6(m.bridge_ll6, g)?)
        }
    };
    Ok(ethernet::emit_frame_in(tag, MacAddr::for_group(group), m.bridge_mac, ethertype, &pkt))
}

/// Where `port`'s MDB entry for `group` goes: a channel's where its channels go, a
/// link-scope IPv6 group (neighbour discovery's) in its hosts' own VLAN, never the
/// multicast VLAN.
fn mdb_at(m: &McastState, ports: &[super::Port], port: PortId, group: IpAddr) -> PortVlan {
    if mcast::is_v6_link_scope(group) {
        return ports[port].at();
    }
    channels_at(m, ports, port)
}

/// Where `port`'s channels' MDB entries go: on its interface, in the multicast VLAN
/// when there is one, else in its hosts' VLAN.
fn channels_at(m: &McastState, ports: &[super::Port], port: PortId) -> PortVlan {
    let p = &ports[port];
    PortVlan::new(&p.name, m.mvr.get(port).copied().flatten().or(p.vlan))
}

#[cfg(test)]
mod tests {
    use super::fitting;

    #[test]
    fn upstream_records_are_split_to_fit_a_frame() {
        let sizes = [8, 8, 8, 12, 8, 40, 8];
        let runs = fitting(&sizes, 24, |s| *s);
        assert_eq!(runs, vec![&[8, 8, 8][..], &[12, 8][..], &[40][..], &[8][..]]);
        assert!(fitting(&[] as &[usize], 24, |s| *s).is_empty());
        // 500 first joins of a batch: every report within the frame, none lost
        let many = vec![8usize; 500];
        let runs = fitting(&many, 1500 - 32, |s| *s);
        assert!(runs.iter().all(|r| r.len() * 8 <= 1468));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 500);
    }
}
