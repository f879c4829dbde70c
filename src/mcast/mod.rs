//! The membership tracker: per (port, host MAC, group[, source]) memberships with the
//! semantics of RFC 9776 / RFC 3810 for a snooping switch (RFC 4541), each new one
//! decided by policy. Sans-IO: reports and time in, MDB changes, upstream reports,
//! queries and records out.
//!
//! Memberships are per host, so a host's leave ends only its own; the bridge's MDB
//! entry for a port stays while any host on the port holds the channel. On a shared
//! port the last leave is followed by a group-specific query and the entry lingers for
//! `last_member_query_time` (a v2 host that suppressed its report answers it); on a
//! fast-leave (single-host) port it goes at once.
//!
//! This file: the types, the report's records one by one, admission and leave, timers.
//! `port`: what each access port holds in the MDB; `radius`: the per-join question;
//! `preview`: free previews; `tests`: all of it on a scripted clock.

use crate::auth::PortId;
use crate::policy::{Decision, DenyReason, Entitlement, FailMode, Policy, Preview};
use crate::rate::Bucket;
use crate::wire::membership::GroupRecord;
use crate::wire::records::RecordType;
use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod port;
mod preview;
mod radius;
mod snapshot;
#[cfg(test)]
mod tests;

use crate::hash::HashMap;
use tracing::{debug, info};

/// (group, source); `None` is any source.
pub type Channel = (IpAddr, Option<IpAddr>);
pub use snapshot::Snapshot;

/// As `[multicast]` writes it (its tracker keys; the daemon's configuration adds the
/// policies and the uplinks).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// RFC 9776 8.4: robustness × query interval + query response interval (260 s).
    #[serde(deserialize_with = "crate::duration::duration")]
    pub group_membership_interval: Duration,
    /// RFC 9776 8.8: last member query count × interval (2 × 1 s).
    #[serde(deserialize_with = "crate::duration::duration")]
    pub last_member_query_time: Duration,
    /// Max Resp Code of the group-specific query, tenths of a second.
    #[serde(skip)]
    pub last_member_query_interval_code: u8,
    /// Makes membership Acct-Session-Ids unique across runs (the daemon draws it).
    #[serde(skip)]
    pub run_id: u32,
    /// Bounds on what hosts can make the tracker hold, whatever the policy allows: a join
    /// beyond one is denied and counted by its reason. (Read from the file beside the
    /// rest, not through this struct: see `daemon::config::Multicast`.)
    #[serde(skip)]
    pub bounds: Bounds,
}

/// Resource bounds of the tracker (the policy's max groups and bandwidth are billing
/// limits; these hold however a policy is written, link-scope groups included).
/// `[multicast] max_*` in the configuration.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Bounds {
    /// Memberships per host (port, MAC).
    #[serde(rename = "max_memberships_per_host")]
    pub memberships_per_host: usize,
    /// Channels per access port (its MDB entries).
    #[serde(rename = "max_channels_per_port")]
    pub channels_per_port: usize,
    /// Per-join RADIUS questions in flight.
    #[serde(rename = "max_pending_radius")]
    pub pending_radius: usize,
    /// Per-join RADIUS answers cached.
    #[serde(rename = "max_cached_decisions")]
    pub cached_decisions: usize,
    /// Group records read of one report; the rest are dropped and counted (an IGMPv3
    /// report in one frame holds up to ~180).
    #[serde(rename = "max_records_per_report")]
    pub records_per_report: usize,
    /// New memberships a host may get per second (twice as many at once); joins beyond
    /// are denied (`AdmissionRate`) before any policy, journal or RADIUS work.
    #[serde(rename = "max_admissions_per_second")]
    pub admissions_per_second: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            memberships_per_host: 64,
            channels_per_port: 256,
            pending_radius: 1024,
            cached_decisions: 65_536,
            records_per_report: 64,
            admissions_per_second: 20.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            group_membership_interval: Duration::from_secs(260),
            last_member_query_time: Duration::from_secs(2),
            last_member_query_interval_code: 10,
            run_id: 0,
            bounds: Bounds::default(),
        }
    }
}

/// Why a membership ended (Acct-Terminate-Cause material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndCause {
    Leave,
    Timeout,
    /// The host's session ended, for this reason (its Stops say the session's cause).
    SessionEnd(crate::auth::EndCause),
    Revoked,
    /// A free preview ran its time.
    PreviewEnd,
}

/// A membership's Acct-Session-Id, `RUN-N` in hex: the daemon run's random id and a
/// counter. Made and compared without allocating; a string only where it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcctId {
    pub run: u32,
    pub n: u64,
}

impl std::fmt::Display for AcctId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08X}-{:X}", self.run, self.n)
    }
}

impl std::str::FromStr for AcctId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an Acct-Session-Id of mcgate's");
        let (run, n) = s.split_once('-').ok_or_else(bad)?;
        Ok(AcctId {
            run: u32::from_str_radix(run, 16).map_err(|_| bad())?,
            n: u64::from_str_radix(n, 16).map_err(|_| bad())?,
        })
    }
}

impl Serialize for AcctId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AcctId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Upstream records, each with the VLAN its report goes in on the uplinks (a multicast
/// VLAN's; none: untagged).
pub type Upstream = Vec<(Option<u16>, GroupRecord)>;

/// A host's membership, as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub port: Arc<str>,
    /// The VLAN the host is in (see `store::Session::vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub mac: MacAddr,
    pub account: Arc<str>,
    pub group: IpAddr,
    pub source: Option<IpAddr>,
    /// Unix seconds.
    pub since: u64,
    /// What decided it: a package name, `link-local`, ...
    pub by: Arc<str>,
    pub bandwidth_kbps: u32,
    pub session_id: Arc<str>,
    /// Acct-Session-Id of this membership.
    #[serde(default)]
    pub acct_session_id: AcctId,
    /// The port's usage counter for the group (packets, bytes) when it was admitted:
    /// what it received is the counter's growth since.
    #[serde(default)]
    pub usage_base: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    MdbAdd {
        port: PortId,
        group: IpAddr,
        source: Option<IpAddr>,
    },
    MdbDel {
        port: PortId,
        group: IpAddr,
        source: Option<IpAddr>,
    },
    /// Ask RADIUS whether `account` may have (group, source); answer with `token`.
    AskRadius {
        token: u64,
        port: PortId,
        mac: MacAddr,
        account: String,
        group: IpAddr,
        source: Option<IpAddr>,
    },
    /// Records for the multicast-router ports: first join / last leave on the switch (in
    /// each multicast VLAN).
    Upstream {
        records: Upstream,
    },
    /// A group-specific query on a shared port after a leave.
    Query {
        port: PortId,
        group: IpAddr,
        max_resp_code: u8,
    },
    /// Its Start goes into the batch; the MdbAdd that follows takes effect at once and the
    /// batch is committed after it (the daemon revokes the membership if that fails).
    Admitted {
        port: PortId,
        membership: Arc<Membership>,
    },
    Denied {
        port: PortId,
        mac: MacAddr,
        group: IpAddr,
        source: Option<IpAddr>,
        reason: DenyReason,
    },
    Ended {
        /// Shared, not copied: the outputs stay small to move.
        membership: Arc<Membership>,
        cause: EndCause,
    },
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub records: u64,
    /// Records beyond `records_per_report`, not read.
    pub records_over_limit: u64,
    pub records_unknown_type: u64,
    pub link_local_ignored: u64,
    /// Records for a group that is not multicast, or with a multicast or unspecified source.
    pub records_not_multicast: u64,
    pub admitted: u64,
    pub refreshed: u64,
    pub denied: BTreeMap<DenyReason, u64>,
    pub leaves: u64,
    pub timeouts: u64,
    pub session_ends: u64,
    pub queries_sent: u64,
    pub radius_asked: u64,
    pub radius_coalesced: u64,
    pub radius_cache_hits: u64,
    /// Answers not cached: the cache was full of fresh ones.
    pub radius_cache_full: u64,
    pub previews: u64,
    pub previews_ended: u64,
}

/// A per-join RADIUS answer, for [`Tracker::radius_answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadiusAnswer {
    /// Access-Accept; `ttl` from its Session-Timeout.
    Accept {
        ttl: Option<Duration>,
    },
    Reject {
        ttl: Option<Duration>,
    },
    /// No server answered.
    Unreachable,
}

/// The identity fields of a host that a membership records.
#[derive(Debug, Clone, Copy)]
struct Who<'a> {
    port: PortId,
    port_name: &'a Arc<str>,
    vlan: Option<u16>,
    mac: MacAddr,
    account: &'a Arc<str>,
    session_id: &'a Arc<str>,
}

/// A host waiting for a per-join answer (owned: the report that asked is gone).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiter {
    port: PortId,
    port_name: Arc<str>,
    vlan: Option<u16>,
    mac: MacAddr,
    account: Arc<str>,
    session_id: Arc<str>,
    max_groups: Option<u32>,
}

#[derive(Debug)]
struct Pending {
    key: (Arc<str>, Channel),
    waiters: Vec<Waiter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    admit: bool,
    #[serde(with = "crate::mono")]
    fresh_until: Instant,
}

/// How long an expired per-join answer is kept for `radius_unreachable = "stale"`.
const STALE_KEEP: Duration = Duration::from_secs(24 * 3600);
/// A preview's views are counted over this many seconds.
const DAY: u64 = 86_400;
/// How often the cache is swept of what is older than that.
const CACHE_SWEEP: Duration = Duration::from_secs(60);

/// Who sent a report, as the session store knows them.
#[derive(Debug, Clone)]
pub struct Host<'a> {
    pub port: PortId,
    pub port_name: &'a Arc<str>,
    /// The VLAN the host is in, on a VLAN-filtering bridge.
    pub vlan: Option<u16>,
    pub mac: MacAddr,
    pub account: &'a Arc<str>,
    pub session_id: &'a Arc<str>,
    pub entitlement: &'a Entitlement,
}

#[derive(Debug)]
struct Held {
    /// Shared with the `Admitted` output that announced it (no copy per join).
    membership: Arc<Membership>,
    expires: Instant,
    /// A free preview ends here, reported or not.
    preview_ends: Option<Instant>,
}

impl Held {
    fn new(membership: Arc<Membership>, expires: Instant) -> Self {
        Held { membership, expires, preview_ends: None }
    }

    fn deadline(&self) -> Instant {
        self.preview_ends.map_or(self.expires, |p| p.min(self.expires))
    }
}

/// A host's memberships by channel, in a vector rather than a hash map: a host holds a
/// few channels (at most `max_memberships_per_host`, 64 by default), so a scan costs no
/// more than hashing, and a hash map's spare buckets and control bytes took about 80 B
/// per membership at an aggregation switch's 256 000 (the standard library has no small
/// map, and the crates that offer one are unmaintained).
#[derive(Default)]
struct HostChannels(Vec<(Channel, Held)>);

impl HostChannels {
    fn get(&self, ch: &Channel) -> Option<&Held> {
        self.0.iter().find(|(c, _)| c == ch).map(|(_, h)| h)
    }

    fn get_mut(&mut self, ch: &Channel) -> Option<&mut Held> {
        self.0.iter_mut().find(|(c, _)| c == ch).map(|(_, h)| h)
    }

    /// Holds `h` for `ch`; the one it held before, if any, is returned.
    fn insert(&mut self, ch: Channel, h: Held) -> Option<Held> {
        match self.get_mut(&ch) {
            Some(old) => Some(std::mem::replace(old, h)),
            None => {
                self.0.push((ch, h));
                None
            }
        }
    }

    fn remove(&mut self, ch: &Channel) -> Option<Held> {
        let i = self.0.iter().position(|(c, _)| c == ch)?;
        Some(self.0.swap_remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&Channel, &Held)> {
        self.0.iter().map(|(c, h)| (c, h))
    }

    fn keys(&self) -> impl Iterator<Item = &Channel> {
        self.0.iter().map(|(c, _)| c)
    }

    fn values(&self) -> impl Iterator<Item = &Held> {
        self.0.iter().map(|(_, h)| h)
    }
}

#[derive(Debug, Default)]
struct PortEntry {
    members: u32,
    linger_until: Option<Instant>,
}

pub struct Tracker {
    config: Config,
    /// Ports configured single-host: a leave takes effect at once.
    fast_leave: Vec<bool>,
    hosts: HashMap<(PortId, MacAddr), HostChannels>,
    ports: HashMap<(PortId, Channel), PortEntry>,
    /// No membership is due before this (a refresh only moves deadlines later, so it
    /// stays true until the memberships are looked through again, when one is due).
    members_due: Option<Instant>,
    /// Channels lingering after their last leave, by when: all linger as long, so this
    /// is in order; an entry whose linger was cancelled is skipped when it comes due.
    lingering: VecDeque<(Instant, PortId, Channel)>,
    /// Stale per-join answers are swept from the cache no more often than this, and a
    /// full cache of its stale ones no more often than `next_full_sweep`.
    next_cache_sweep: Option<Instant>,
    next_full_sweep: Option<Instant>,
    /// Entries of `ports` per port, indexed by port (grown on a port's first entry).
    channel_counts: Vec<usize>,
    /// Source-specific entries of `ports` by port and group (none for a group only joined
    /// any-source, so nothing at all where no host joins source-specific): with the
    /// any-source entry, whether a port is sent a group at all (`holds_group`).
    ssm_groups: HashMap<(PortId, IpAddr), u32>,
    /// Ports holding each channel, by the VLAN their reports go upstream in, for
    /// first-join / last-leave upstream.
    switch: HashMap<(Option<u16>, Channel), u32>,
    /// The VLAN each port's channels are asked for upstream in (see `with_upstream_vlans`).
    upstream_vlans: Vec<Option<u16>>,
    /// Per-join questions in flight, by token, and their tokens by (account, channel).
    pending: HashMap<u64, Pending>,
    asking: HashMap<(Arc<str>, Channel), u64>,
    /// Per-join answers by (account, channel).
    cache: HashMap<(Arc<str>, Channel), Cached>,
    /// Start times (unix seconds) of free previews in the last 24 hours, by (account, channel).
    previews: HashMap<(Arc<str>, Channel), Vec<u64>>,
    /// When (unix seconds) `previews` is next swept of what is a day old.
    next_preview_sweep: u64,
    /// New memberships each host with a session may still get (see `admissions_per_second`).
    admissions: HashMap<(PortId, MacAddr), Bucket>,
    next_token: u64,
    next_membership: u64,
    labels: Labels,
    outputs: VecDeque<Output>,
    pub stats: Stats,
}

/// 224.0.0.0/24 is never snooped (RFC 4541 2.1.2): nothing to gate.
fn is_v4_link_local(g: IpAddr) -> bool {
    matches!(g, IpAddr::V4(a) if a.octets()[..3] == [224, 0, 0])
}

/// ff01::/16, ff02::/16: interface- and link-local scope (solicited-node groups among
/// them: IPv6 neighbour discovery needs them delivered). Admitted without policy.
pub(crate) fn is_v6_link_scope(g: IpAddr) -> bool {
    matches!(g, IpAddr::V6(a) if a.segments()[0] & 0xff0f <= 0xff02 && a.segments()[0] >> 8 == 0xff)
}

impl Host<'_> {
    fn who(&self) -> Who<'_> {
        Who {
            port: self.port,
            port_name: self.port_name,
            vlan: self.vlan,
            mac: self.mac,
            account: self.account,
            session_id: self.session_id,
        }
    }
}

impl Membership {
    /// Admitted without policy (link-scope IPv6), outside limits and accounting.
    pub fn is_link_local(&self) -> bool {
        &*self.by == LINK_LOCAL
    }
}

const LINK_LOCAL: &str = "link-local";

/// What decided a membership, besides package names: made once, shared by every record.
#[derive(Debug)]
struct Labels {
    link_local: Arc<str>,
    radius: Arc<str>,
    radius_cache: Arc<str>,
    radius_stale: Arc<str>,
    radius_unreachable: Arc<str>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            link_local: LINK_LOCAL.into(),
            radius: "radius".into(),
            radius_cache: "radius-cache".into(),
            radius_stale: "radius-stale".into(),
            radius_unreachable: "radius-unreachable".into(),
        }
    }
}

impl Tracker {
    pub fn new(config: Config, fast_leave: Vec<bool>) -> Self {
        Tracker {
            config,
            fast_leave,
            hosts: HashMap::default(),
            ports: HashMap::default(),
            members_due: None,
            lingering: VecDeque::new(),
            next_cache_sweep: None,
            next_full_sweep: None,
            channel_counts: Vec::new(),
            ssm_groups: HashMap::default(),
            switch: HashMap::default(),
            upstream_vlans: vec![],
            pending: HashMap::default(),
            asking: HashMap::default(),
            cache: HashMap::default(),
            previews: HashMap::default(),
            next_preview_sweep: 0,
            admissions: HashMap::default(),
            next_token: 1,
            next_membership: 1,
            labels: Labels::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Each port's channels go upstream in its VLAN of `vlans` (a multicast VLAN): the
    /// first join and last leave are counted per VLAN. Without: all untagged.
    pub fn with_upstream_vlans(mut self, vlans: Vec<Option<u16>>) -> Self {
        self.upstream_vlans = vlans;
        self
    }

    fn upstream_vlan(&self, port: PortId) -> Option<u16> {
        self.upstream_vlans.get(port).copied().flatten()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The host's report, record by record: admitted records take effect and go
    /// upstream, the others do not.
    pub fn handle_report(
        &mut self,
        now: Instant,
        unix: u64,
        policy: &Policy,
        host: &Host<'_>,
        records: &[GroupRecord],
    ) {
        if unix >= self.next_preview_sweep {
            self.previews.retain(|_, starts| starts.last().is_some_and(|t| unix.saturating_sub(*t) < DAY));
            self.next_preview_sweep = unix + CACHE_SWEEP.as_secs();
        }
        let mut upstream = vec![];
        let over = records.len().saturating_sub(self.config.bounds.records_per_report);
        self.stats.records_over_limit += over as u64;
        for r in &records[..records.len() - over] {
            self.stats.records += 1;
            let g = r.group;
            if is_v4_link_local(g) {
                self.stats.link_local_ignored += 1;
                continue;
            }
            // only a multicast group can be joined, from unicast sources: anything else
            // in a record is a forgery, and never reaches the policy or the MDB
            if !g.is_multicast() || r.sources.iter().any(|s| s.is_multicast() || s.is_unspecified()) {
                self.stats.records_not_multicast += 1;
                continue;
            }
            let srcs = || r.sources.iter().map(|s| (g, Some(*s)));
            match r.record_type {
                RecordType::IsEx | RecordType::ToEx => self.want(now, unix, policy, host, (g, None), &mut upstream),
                RecordType::IsIn | RecordType::Allow | RecordType::ToIn if !r.sources.is_empty() => {
                    for ch in srcs() {
                        self.want(now, unix, policy, host, ch, &mut upstream);
                    }
                    if r.record_type == RecordType::ToIn {
                        // the new include list replaces the old state
                        let listed = |(_, s): &Channel| s.is_some_and(|s| r.sources.contains(&s));
                        self.leave_group(now, host, g, listed, &mut upstream);
                    }
                }
                RecordType::IsIn | RecordType::ToIn => self.leave_group(now, host, g, |_| false, &mut upstream),
                RecordType::Allow => {}
                RecordType::Block => {
                    for ch in srcs() {
                        self.leave(now, host.port, host.mac, ch, EndCause::Leave, &mut upstream);
                    }
                }
                RecordType::Unknown(_) => self.stats.records_unknown_type += 1,
            }
        }
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    /// The host leaves every channel of group `g` but those `keep` names.
    fn leave_group(
        &mut self,
        now: Instant,
        host: &Host<'_>,
        g: IpAddr,
        keep: impl Fn(&Channel) -> bool,
        upstream: &mut Upstream,
    ) {
        // one at a time: a host holds a few channels, and a leave is no allocation
        while let Some(ch) =
            self.hosts.get(&(host.port, host.mac)).and_then(|m| m.keys().find(|c| c.0 == g && !keep(c)).copied())
        {
            self.leave(now, host.port, host.mac, ch, EndCause::Leave, upstream);
        }
    }

    fn want(
        &mut self,
        now: Instant,
        unix: u64,
        policy: &Policy,
        host: &Host<'_>,
        ch: Channel,
        upstream: &mut Upstream,
    ) {
        let expires = now + self.config.group_membership_interval;
        let held = self.hosts.entry((host.port, host.mac)).or_default();
        if let Some(h) = held.get_mut(&ch) {
            h.expires = expires;
            self.stats.refreshed += 1;
            return;
        }
        let n_held = held.len();
        let who = host.who();
        let bounds = self.config.bounds;
        let (rate, burst) = (bounds.admissions_per_second, (bounds.admissions_per_second * 2.0).max(1.0));
        let allowance = self.admissions.entry((host.port, host.mac)).or_insert_with(|| Bucket::new(now, burst));
        if !allowance.take(now, rate, burst) {
            return self.deny(&who, ch, DenyReason::AdmissionRate);
        }
        if n_held >= bounds.memberships_per_host {
            return self.deny(&who, ch, DenyReason::HostMembershipLimit);
        }
        if !self.ports.contains_key(&(host.port, ch))
            && self.channel_counts.get(host.port).copied().unwrap_or(0) >= bounds.channels_per_port
        {
            return self.deny(&who, ch, DenyReason::PortChannelLimit);
        }
        let decision = if is_v6_link_scope(ch.0) {
            Decision::Admit { by: self.labels.link_local.clone(), bandwidth_kbps: 0 }
        } else {
            let (n, kbps) = self.held_load(host.port, host.mac);
            policy.decide(host.entitlement, host.account, ch.0, ch.1, n, kbps)
        };
        match decision {
            Decision::Admit { by, bandwidth_kbps } => self.admit(now, unix, &who, ch, by, bandwidth_kbps, upstream),
            Decision::Deny { reason } => self.deny(&who, ch, reason),
            Decision::AskRadius => self.ask_radius(now, unix, policy, host, ch, upstream),
            Decision::Preview { package, bandwidth_kbps, preview } => {
                self.start_preview(now, unix, &who, ch, &package, bandwidth_kbps, preview, upstream)
            }
        }
    }

    /// Memberships a host holds that count against its limits, and their bandwidth.
    fn held_load(&self, port: PortId, mac: MacAddr) -> (u32, u32) {
        self.hosts.get(&(port, mac)).map_or((0, 0), |held| {
            held.values()
                .filter(|h| !h.membership.is_link_local())
                .fold((0, 0), |(n, k), h| (n + 1, k.saturating_add(h.membership.bandwidth_kbps)))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        now: Instant,
        unix: u64,
        who: &Who<'_>,
        ch: Channel,
        by: Arc<str>,
        kbps: u32,
        upstream: &mut Upstream,
    ) {
        let (group, source) = ch;
        let membership = Membership {
            port: who.port_name.clone(),
            vlan: who.vlan,
            mac: who.mac,
            account: who.account.clone(),
            group,
            source,
            since: unix,
            by,
            bandwidth_kbps: kbps,
            session_id: who.session_id.clone(),
            acct_session_id: AcctId { run: self.config.run_id, n: self.next_membership },
            usage_base: None,
        };
        self.next_membership += 1;
        if !membership.is_link_local() {
            debug!(port = &**who.port_name, mac = %who.mac, account = &**who.account, %group, source = ?source, by = &*membership.by, "join admitted");
        }
        self.stats.admitted += 1;
        let membership = Arc::new(membership);
        self.outputs.push_back(Output::Admitted { port: who.port, membership: membership.clone() });
        let expires = now + self.config.group_membership_interval;
        self.hosts.entry((who.port, who.mac)).or_default().insert(ch, Held::new(membership, expires));
        self.member_due(expires);
        self.port_acquire(who.port, ch, upstream);
    }

    fn deny(&mut self, who: &Who<'_>, (group, source): Channel, reason: DenyReason) {
        debug!(port = &**who.port_name, mac = %who.mac, account = &**who.account, %group, source = ?source, reason = reason.name(), "join denied");
        *self.stats.denied.entry(reason).or_default() += 1;
        self.outputs.push_back(Output::Denied { port: who.port, mac: who.mac, group, source, reason });
    }

    fn leave(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        ch: Channel,
        cause: EndCause,
        upstream: &mut Upstream,
    ) {
        let Some(held) = self.hosts.get_mut(&(port, mac)) else {
            return;
        };
        let Some(h) = held.remove(&ch) else { return };
        if held.is_empty() {
            self.hosts.remove(&(port, mac));
        }
        match cause {
            EndCause::Leave => self.stats.leaves += 1,
            EndCause::Timeout => self.stats.timeouts += 1,
            EndCause::SessionEnd(_) | EndCause::Revoked => self.stats.session_ends += 1,
            EndCause::PreviewEnd => self.stats.previews_ended += 1,
        }
        if !h.membership.is_link_local() {
            debug!(port = &*h.membership.port, mac = %mac, group = %ch.0, source = ?ch.1, ?cause, "membership ended");
        }
        self.outputs.push_back(Output::Ended { membership: h.membership, cause });
        self.port_release(now, port, ch, cause == EndCause::Leave, upstream);
    }

    /// The host's packages or the policy changed (CoA, reload): each membership a
    /// package admitted is decided again, as a new join would be with the host's other
    /// memberships held, and those now denied are revoked. What RADIUS decided per join,
    /// free previews and link-scope groups stay. Returns how many were revoked.
    pub fn reevaluate(&mut self, now: Instant, policy: &Policy, host: &Host<'_>) -> usize {
        let Some(held) = self.hosts.get(&(host.port, host.mac)) else { return 0 };
        let l = &self.labels;
        let mut chans: Vec<(Channel, u32)> = held
            .iter()
            .filter(|(_, h)| {
                let by = &h.membership.by;
                !h.membership.is_link_local()
                    && ![&l.radius, &l.radius_cache, &l.radius_stale, &l.radius_unreachable].contains(&by)
                    && !by.starts_with("preview:")
            })
            .map(|(ch, h)| (*ch, h.membership.bandwidth_kbps))
            .collect();
        chans.sort();
        let mut revoked = 0;
        for (ch, kbps) in chans {
            let (n, total) = self.held_load(host.port, host.mac);
            let d = policy.decide(
                host.entitlement,
                host.account,
                ch.0,
                ch.1,
                n.saturating_sub(1),
                total.saturating_sub(kbps),
            );
            // Admitted by a package, and no package (nor unknown = "allow") admits it now:
            // it ends at once. A per-join question or a preview would be a new
            // decision, taken when the host next asks, not a reason to keep watching.
            let why = match d {
                Decision::Admit { .. } => continue,
                Decision::Deny { reason } => format!("{reason:?}"),
                Decision::AskRadius => "no package names it (unknown groups go to RADIUS)".into(),
                Decision::Preview { .. } => "only a preview of it is left".into(),
            };
            info!(port = &**host.port_name, mac = %host.mac, group = %ch.0, reason = why, "membership no longer allowed");
            self.revoke(now, host.port, host.mac, ch);
            revoked += 1;
        }
        revoked
    }

    /// Takes back one membership (its record could not be made durable, or its
    /// entitlement is gone): no query, no linger.
    pub fn revoke(&mut self, now: Instant, port: PortId, mac: MacAddr, ch: Channel) {
        let mut upstream = vec![];
        self.leave(now, port, mac, ch, EndCause::Revoked, &mut upstream);
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    /// The host's session ended: every membership of it goes.
    pub fn end_host(&mut self, now: Instant, port: PortId, mac: MacAddr, cause: EndCause) {
        self.admissions.remove(&(port, mac));
        for p in self.pending.values_mut() {
            p.waiters.retain(|w| (w.port, w.mac) != (port, mac));
        }
        let chans: Vec<Channel> = self.hosts.get(&(port, mac)).map(|m| m.keys().copied().collect()).unwrap_or_default();
        let mut upstream = vec![];
        for ch in chans {
            self.leave(now, port, mac, ch, cause, &mut upstream);
        }
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    /// Puts back a membership that was admitted before a restart (its MDB entry is
    /// re-installed; it must be reported again within the membership interval).
    pub fn restore(&mut self, now: Instant, port: PortId, membership: Membership) {
        let ch = (membership.group, membership.source);
        let expires = now + self.config.group_membership_interval;
        let mut upstream = vec![];
        let held = self.hosts.entry((port, membership.mac)).or_default();
        if held.insert(ch, Held::new(Arc::new(membership), expires)).is_none() {
            self.port_acquire(port, ch, &mut upstream);
        }
        self.member_due(expires);
        // upstream learns again from the restored set in one report
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    fn member_due(&mut self, at: Instant) {
        self.members_due = Some(self.members_due.map_or(at, |t| t.min(at)));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.members_due, self.lingering.front().map(|l| l.0)].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_cache_sweep.is_none_or(|t| t <= now) {
            self.cache.retain(|_, c| c.fresh_until + STALE_KEEP > now);
            self.next_cache_sweep = Some(now + CACHE_SWEEP);
        }
        let mut upstream = vec![];
        if self.members_due.is_some_and(|t| t <= now) {
            // not refreshed in time, or a preview that ran its time
            let over: Vec<(PortId, MacAddr, Channel, EndCause)> = self
                .hosts
                .iter()
                .flat_map(|((p, m), chans)| {
                    chans.iter().filter_map(move |(c, h)| {
                        let cause = if h.expires <= now {
                            EndCause::Timeout
                        } else if h.preview_ends.is_some_and(|t| t <= now) {
                            EndCause::PreviewEnd
                        } else {
                            return None;
                        };
                        Some((*p, *m, *c, cause))
                    })
                })
                .collect();
            for (port, mac, ch, cause) in over {
                debug!(port, mac = %mac, group = %ch.0, ?cause, "membership over");
                self.leave(now, port, mac, ch, cause, &mut upstream);
            }
            self.members_due = self.hosts.values().flat_map(|m| m.values().map(Held::deadline)).min();
        }
        // nobody answered the group-specific query
        while let Some(&(until, port, ch)) = self.lingering.front() {
            if until > now {
                break;
            }
            self.lingering.pop_front();
            let due = self.ports.get(&(port, ch)).is_some_and(|e| e.members == 0 && e.linger_until == Some(until));
            if due {
                self.mdb_remove(port, ch, &mut upstream);
            }
        }
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    /// The membership an `Admitted` output names.
    pub fn membership(&self, port: PortId, mac: MacAddr, ch: Channel) -> Option<&Membership> {
        self.hosts.get(&(port, mac))?.get(&ch).map(|h| &*h.membership)
    }

    pub fn set_usage_base(&mut self, port: PortId, mac: MacAddr, ch: Channel, base: Option<(u64, u64)>) {
        if let Some(h) = self.hosts.get_mut(&(port, mac)).and_then(|m| m.get_mut(&ch)) {
            Arc::make_mut(&mut h.membership).usage_base = base;
        }
    }

    /// The memberships of the host `mac` on `port`.
    pub fn memberships_of(&self, port: PortId, mac: MacAddr) -> impl Iterator<Item = &Membership> {
        self.hosts.get(&(port, mac)).into_iter().flat_map(|m| m.values().map(|h| &*h.membership))
    }

    pub fn memberships(&self) -> impl Iterator<Item = &Membership> {
        self.hosts.values().flat_map(|m| m.values().map(|h| &*h.membership))
    }

    /// Channels each port holds in the MDB (members or lingering).
    pub fn port_channels(&self) -> impl Iterator<Item = (PortId, Channel)> + '_ {
        self.ports.keys().copied()
    }

    /// Whether `port` has channel `ch` (one of its hosts is a member).
    pub fn holds(&self, port: PortId, ch: Channel) -> bool {
        self.ports.contains_key(&(port, ch))
    }

    /// Whether the port holds any channel of `group` (any-source or source-specific).
    pub fn holds_group(&self, port: PortId, group: IpAddr) -> bool {
        self.holds(port, (group, None)) || self.ssm_groups.contains_key(&(port, group))
    }
}

fn upstream_record((group, source): Channel, join: bool) -> GroupRecord {
    let record_type = match (source.is_some(), join) {
        (false, true) => RecordType::ToEx,
        (false, false) => RecordType::ToIn,
        (true, true) => RecordType::Allow,
        (true, false) => RecordType::Block,
    };
    GroupRecord { record_type, group, sources: source.into_iter().collect() }
}
