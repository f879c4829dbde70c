//! The Linux bridge dataplane, over rtnetlink (see docs/peers-and-kernel.md for
//! the kernel behaviour each step relies on).

use super::netlink::{br, brport, Netlink, RTPROT_MCGATE};
use super::{Dataplane, Error, Found, MdbEntry, PortVlan, BRIDGE_OPTIONS, PORT_FLAGS};
use crate::sys;
use crate::wire::MacAddr;
use std::net::IpAddr;
use std::process::{Command, Stdio};

pub struct LinuxBridge {
    nl: Netlink,
    /// nf_tables, for the usage counters (opened with the multicast set-up).
    nf: Option<Netlink>,
    /// Multicast VLAN registration: the VLAN each access port's streams come in, and the
    /// channels the port has there (it is a member of the VLAN while it has one).
    mvr: std::collections::HashMap<String, (u16, Channels)>,
    /// Interface indexes by name, for the FDB and MDB changes of every login, join and
    /// leave (a lookup is three system calls, as long as the netlink request itself). A
    /// device made again under its name has a new index: a change that fails is tried
    /// once more with the names looked up afresh.
    indexes: std::collections::HashMap<String, u32>,
}

/// A port's channels in the multicast VLAN: (group, source).
type Channels = std::collections::HashSet<(IpAddr, Option<IpAddr>)>;

impl LinuxBridge {
    /// Switches the bridge's querier on without the kernel's hold-off. A bridge whose
    /// querier is switched on ignores its MDB for one query response interval (10 s by
    /// default) and floods instead, so that it can learn who listens first; an access
    /// port with `mcast_flood off` gets no stream at all meanwhile, however admitted.
    /// mcgate's entries do not wait for learning, so the hold-off is made as short as
    /// the kernel allows (the interval at its least, one centisecond, while the querier
    /// goes on) and the interval put back. Nothing is changed when it is on already.
    fn start_querier(&mut self, bridge: u32) -> Result<(), super::netlink::Error> {
        let querier = self.nl.bridge_attrs(bridge, &[br::MCAST_QUERIER])?;
        if querier.first().is_some_and(|(_, v)| v == &[1]) {
            return Ok(());
        }
        let Some(interval) = self.response_interval(bridge)? else {
            // a kernel that does not tell: the querier as it comes
            return self.nl.set_bridge_options(bridge, &[(br::MCAST_QUERIER, 1)]);
        };
        self.nl.set_bridge_attrs(bridge, &[(br::MCAST_QUERY_RESPONSE_INTVL, &1u64.to_ne_bytes())])?;
        let on = self.nl.set_bridge_options(bridge, &[(br::MCAST_QUERIER, 1)]);
        // the interval goes back whatever became of the querier
        self.nl.set_bridge_attrs(bridge, &[(br::MCAST_QUERY_RESPONSE_INTVL, &interval)])?;
        on
    }

    pub fn new() -> Result<Self, Error> {
        Ok(LinuxBridge { nl: Netlink::open()?, nf: None, mvr: Default::default(), indexes: Default::default() })
    }

    /// The bridge's query response interval (u64 centiseconds, as the kernel keeps it).
    fn response_interval(&mut self, bridge: u32) -> Result<Option<[u8; 8]>, super::netlink::Error> {
        let found = self.nl.bridge_attrs(bridge, &[br::MCAST_QUERY_RESPONSE_INTVL])?;
        Ok(found.first().and_then(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok()))
    }

    /// Whether bridge `bridge` forwards by VLAN (`vlan_filtering 1`).
    fn filters_vlans(&mut self, bridge: u32) -> Result<bool, super::netlink::Error> {
        let attrs = self.nl.bridge_attrs(bridge, &[br::VLAN_FILTERING])?;
        Ok(attrs.first().is_some_and(|(_, v)| v.first() == Some(&1)))
    }

    /// The channels `at` holds when it is its port's place in the multicast VLAN.
    fn mvr_channels(&mut self, at: &PortVlan) -> Option<&mut Channels> {
        let (vid, held) = self.mvr.get_mut(&at.port)?;
        (Some(*vid) == at.vlan).then_some(held)
    }

    /// Every interface's name, by index.
    fn names(&mut self) -> Result<std::collections::HashMap<u32, String>, Error> {
        Ok(self.nl.links()?.into_iter().map(|l| (l.index, l.name)).collect())
    }

    /// `change` with the indexes of `bridge` and `port`, from the cache; once more with
    /// both looked up again if it fails (see `indexes`).
    fn with_indexes(
        &mut self,
        bridge: &str,
        port: &str,
        mut change: impl FnMut(&mut Netlink, u32, u32) -> Result<(), super::netlink::Error>,
    ) -> Result<(), Error> {
        let (b, p) = (self.cached_index(bridge)?, self.cached_index(port)?);
        if change(&mut self.nl, b, p).is_ok() {
            return Ok(());
        }
        self.indexes.clear();
        let (b, p) = (self.cached_index(bridge)?, self.cached_index(port)?);
        change(&mut self.nl, b, p).map_err(Self::at(port))
    }

    /// `change` with the index of `port`, from the cache, as `with_indexes`.
    fn with_index(
        &mut self,
        port: &str,
        mut change: impl FnMut(&mut Netlink, u32) -> Result<(), super::netlink::Error>,
    ) -> Result<(), Error> {
        let p = self.cached_index(port)?;
        if change(&mut self.nl, p).is_ok() {
            return Ok(());
        }
        self.indexes.remove(port);
        let p = self.cached_index(port)?;
        change(&mut self.nl, p).map_err(Self::at(port))
    }

    /// The index of `name` from the cache, looked up and kept there if it is not in it.
    fn cached_index(&mut self, name: &str) -> Result<u32, Error> {
        if let Some(i) = self.indexes.get(name) {
            return Ok(*i);
        }
        let i = Self::index(name)?;
        self.indexes.insert(name.to_string(), i);
        Ok(i)
    }

    fn index(port: &str) -> Result<u32, Error> {
        sys::if_index(port).map_err(|_| Error::NoSuchPort(port.to_string()))
    }

    fn at(port: &str) -> impl Fn(super::netlink::Error) -> Error + '_ {
        move |source| Error::Port { port: port.to_string(), source }
    }
}

/// The nftables table that keeps the hosts' IGMP and MLD away from the bridge's own
/// snooping (bridge family, prerouting): mcgate decides, the bridge does not learn.
fn nft_ruleset(access: &[&str], uplinks: &[&str]) -> String {
    let list = |names: &[&str]| names.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let ports = list(access);
    // Another querier's first query makes the bridge ignore its MDB for that query's
    // Max Response Time (10 s from a router), streams to the access ports stopped: the
    // bridge is the querier toward the hosts, and queries from upstream stay upstream.
    let upstream = if uplinks.is_empty() {
        String::new()
    } else {
        let up = list(uplinks);
        format!(
            "\t\tiifname {{ {up} }} igmp type membership-query counter drop comment \"igmp queries from upstream\"\n\
             \t\tiifname {{ {up} }} meta l4proto ipv6-icmp icmpv6 type mld-listener-query counter drop comment \"mld queries from upstream\"\n"
        )
    };
    format!(
        "table bridge mcgate\ndelete table bridge mcgate\ntable bridge mcgate {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tiifname {{ {ports} }} ip protocol igmp counter drop comment \"igmp from hosts\"\n\
         \t\tiifname {{ {ports} }} meta l4proto ipv6-icmp icmpv6 type {{ mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }} counter drop comment \"mld from hosts\"\n\
         {upstream}\t}}\n}}\n"
    )
}

/// Usage counters: what the bridge forwards to each access port, per group, counted in
/// dynamic sets (`oifname . daddr` with a counter per element, refreshed by traffic and
/// gone after an hour without) of `size` elements each. Its own table, kept across
/// restarts (the counters of memberships that continue must go on); its rules are
/// rewritten, and a set declared again with another size keeps its elements (checked on
/// 6.18). A packet whose pair finds no room (a full set: the `update` fails and the rule
/// ends there) is counted in the `uncounted` counter instead.
fn nft_usage(access: &[&str], size: u32) -> String {
    let ports = access.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let v4 = format!("oifname {{ {ports} }} ip daddr 224.0.0.0/4 ip daddr != 224.0.0.0/24");
    let v6 = format!("oifname {{ {ports} }} ip6 daddr ff00::/8 ip6 daddr != ff02::/16");
    format!(
        "table bridge {USAGE_TABLE} {{\n\
         \tcounter {UNCOUNTED} {{ }}\n\
         \tset v4 {{ type ifname . ipv4_addr; flags dynamic,timeout; timeout 1h; counter; size {size}; }}\n\
         \tset v6 {{ type ifname . ipv6_addr; flags dynamic,timeout; timeout 1h; counter; size {size}; }}\n\
         \tchain forward {{ type filter hook forward priority 10; policy accept; }}\n}}\n\
         flush chain bridge {USAGE_TABLE} forward\n\
         add rule bridge {USAGE_TABLE} forward {v4} update @v4 {{ oifname . ip daddr }} accept\n\
         add rule bridge {USAGE_TABLE} forward {v4} counter name \"{UNCOUNTED}\"\n\
         add rule bridge {USAGE_TABLE} forward {v6} update @v6 {{ oifname . ip6 daddr }} accept\n\
         add rule bridge {USAGE_TABLE} forward {v6} counter name \"{UNCOUNTED}\"\n"
    )
}

const USAGE_TABLE: &str = "mcgate_usage";
/// The usage table's counter of what found no room in its sets.
const UNCOUNTED: &str = "uncounted";
/// NFPROTO_BRIDGE
const FAMILY_BRIDGE: u8 = 7;

/// Where Debian's nftables package puts `nft`: by absolute path, so that a PATH of the
/// environment mcgate was started from never picks the program that edits its rules.
const NFT: &str = "/usr/sbin/nft";

fn nft(script: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("running {NFT}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| Error::Nft(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Nft(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

impl Dataplane for LinuxBridge {
    fn setup_port(&mut self, port: &str, mab: bool) -> Result<(), Error> {
        let idx = Self::index(port)?;
        // The kernel accepts `mab on` only on a port that is locked AND learning, so
        // lock and learning go first, then MAB, then the flush of what was learned.
        self.nl
            .set_port_flags(idx, &[(brport::LOCKED, &[1]), (brport::LEARNING, &[mab as u8])])
            .map_err(Self::at(port))?;
        self.nl.set_port_flags(idx, &[(brport::MAB, &[mab as u8])]).map_err(Self::at(port))?;
        self.nl.set_port_flags(idx, &[(brport::FLUSH, &[])]).map_err(Self::at(port))
    }

    fn vlan_protocol(&mut self, bridge: &str) -> Result<u16, Error> {
        let attrs = self.nl.bridge_attrs(Self::index(bridge)?, &[br::VLAN_PROTOCOL]).map_err(Self::at(bridge))?;
        // big-endian, as it goes on the wire
        let v = attrs.first().and_then(|(_, v)| <[u8; 2]>::try_from(v.as_slice()).ok());
        Ok(v.map_or(crate::wire::ethernet::ETHERTYPE_VLAN, u16::from_be_bytes))
    }

    /// The port's PVID when its bridge filters by VLAN, none otherwise.
    fn port_vlan(&mut self, port: &str) -> Result<Option<u16>, Error> {
        let idx = Self::index(port)?;
        let master = self.nl.link(idx).map_err(Self::at(port))?.and_then(|l| l.master);
        let filtering = match master {
            Some(b) => self.filters_vlans(b).map_err(Self::at(port))?,
            None => false,
        };
        if !filtering {
            return Ok(None);
        }
        self.nl.port_pvid(idx).map_err(Self::at(port))
    }

    fn set_mab_learning(&mut self, port: &str, on: bool) -> Result<(), Error> {
        let idx = Self::index(port)?;
        let v = on as u8;
        if on {
            // learning first: the kernel refuses MAB on a port that does not learn
            self.nl.set_port_flags(idx, &[(brport::LEARNING, &[v])]).map_err(Self::at(port))?;
            self.nl.set_port_flags(idx, &[(brport::MAB, &[v])]).map_err(Self::at(port))
        } else {
            self.nl.set_port_flags(idx, &[(brport::MAB, &[v]), (brport::LEARNING, &[v])]).map_err(Self::at(port))?;
            // the locked entries of the MACs over the bound (authorized hosts are static)
            self.nl.set_port_flags(idx, &[(brport::FLUSH, &[])]).map_err(Self::at(port))
        }
    }

    fn authorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), Error> {
        self.with_index(&at.port, |nl, idx| nl.fdb_replace(idx, mac, at.vlan))
    }

    fn deauthorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), Error> {
        self.with_index(&at.port, |nl, idx| nl.fdb_del(idx, mac, at.vlan))
    }

    fn is_locked(&mut self, port: &str) -> Result<bool, Error> {
        let attrs = self.nl.port_attrs(Self::index(port)?, &[brport::LOCKED]).map_err(Self::at(port))?;
        Ok(attrs.unwrap_or_default().first().is_some_and(|(_, v)| v.first() == Some(&1)))
    }

    fn authorized_on(&mut self, ats: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, Error> {
        let ats = ats.iter().map(|at| Ok((Self::index(&at.port)?, at))).collect::<Result<Vec<_>, Error>>()?;
        // an entry in a VLAN of the port that is not asked for is none of mcgate's business
        Ok(self
            .nl
            .fdb_dump()?
            .into_iter()
            .filter(|e| e.master.is_some() && e.is_static() && !e.locked)
            .filter_map(|e| {
                let (_, at) = ats.iter().find(|(i, at)| *i == e.ifindex && at.vlan == e.vlan)?;
                Some(((*at).clone(), e.mac))
            })
            .collect())
    }

    fn setup_multicast(
        &mut self,
        bridge: &str,
        access: &[&str],
        uplinks: &[&str],
        port_max_groups: u32,
        entries: u32,
        usage_pairs: u32,
    ) -> Result<(), Error> {
        let b = Self::index(bridge)?;
        // a full table refuses the next entry (ENOSPC), whoever's it is
        let hash_max = self.nl.bridge_attrs(b, &[br::MCAST_HASH_MAX]).map_err(Self::at(bridge))?;
        let now = hash_max.first().and_then(|(_, v)| <[u8; 4]>::try_from(v.as_slice()).ok()).map(u32::from_ne_bytes);
        if now.is_some_and(|n| n < entries) {
            self.nl.set_bridge_attrs(b, &[(br::MCAST_HASH_MAX, &entries.to_ne_bytes())]).map_err(Self::at(bridge))?;
        }
        // Snooping needs a querier to work (and the bridge an IPv4 address, or it
        // floods); v3/v2 queries keep hosts on IGMPv3/MLDv2 and source-specific joins.
        self.nl
            .set_bridge_options(
                b,
                &[
                    (br::MCAST_SNOOPING, 1),
                    (br::MCAST_QUERY_USE_IFADDR, 1),
                    (br::MCAST_IGMP_VERSION, 3),
                    (br::MCAST_MLD_VERSION, 2),
                ],
            )
            .map_err(Self::at(bridge))?;
        self.start_querier(b).map_err(Self::at(bridge))?;
        for port in access {
            let idx = Self::index(port)?;
            self.nl.set_port_flags(idx, &[(brport::MCAST_FLOOD, &[0])]).map_err(Self::at(port))?;
            self.nl
                .set_port_flags(idx, &[(brport::MCAST_MAX_GROUPS, &port_max_groups.to_ne_bytes())])
                .map_err(Self::at(port))?;
        }
        for port in uplinks {
            let idx = Self::index(port)?;
            // permanent multicast-router port
            self.nl.set_port_flags(idx, &[(brport::MULTICAST_ROUTER, &[2])]).map_err(Self::at(port))?;
        }
        // one run, one transaction: a run of nft costs ~10 ms (a start's unread window)
        nft(&(nft_ruleset(access, uplinks) + &nft_usage(access, usage_pairs)))?;
        self.nf = Some(Netlink::open_netfilter()?);
        // What the kernel snooped on access ports before the drop table existed is not
        // justified by any decision: it goes, as learned FDB entries do.
        for (port, group, source) in self.mdb_foreign(bridge, access)? {
            self.mdb_del(bridge, &port, group, source)?;
        }
        Ok(())
    }

    fn setup_multicast_vlan(&mut self, bridge: &str, vid: u16, access: &[&str], uplinks: &[&str]) -> Result<(), Error> {
        let b = Self::index(bridge)?;
        if !self.filters_vlans(b).map_err(Self::at(bridge))? {
            return Err(Error::Unsupported(format!("a multicast VLAN needs vlan_filtering 1 on bridge {bridge}")));
        }
        // each VLAN its own snooping context; the multicast VLAN's querier keeps the
        // hosts reporting (its queries reach them untagged, the ports being members)
        self.nl.set_vlan_snooping(b, true).map_err(Self::at(bridge))?;
        for port in uplinks {
            self.nl.vlan_add(Self::index(port)?, vid, false).map_err(Self::at(port))?;
        }
        let interval = self.response_interval(b).map_err(Self::at(bridge))?;
        // the VLAN's queries ask as the bridge's do (10 s when the kernel does not tell)
        self.nl.set_vlan_querier(b, vid, interval.map_or(1000, u64::from_ne_bytes)).map_err(Self::at(bridge))?;
        let ports = access.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
        // tagged 802.1Q or, on a Q-in-Q bridge, 802.1ad (a rule each: `vlan id` alone
        // means an 802.1Q tag)
        nft(&format!(
            "add rule bridge mcgate prerouting iifname {{ {ports} }} vlan id {vid} counter drop comment \"multicast vlan from hosts\"\n\
             add rule bridge mcgate prerouting iifname {{ {ports} }} ether type 8021ad vlan id {vid} counter drop comment \"multicast vlan from hosts, 802.1ad\"\n"
        ))?;
        // the ports' entries there now (a restart): each port a member while it has one
        let entries = self.nl.mdb_dump(b).map_err(Self::at(bridge))?;
        for port in access {
            let idx = Self::index(port)?;
            let held: std::collections::HashSet<_> =
                entries.iter().filter(|e| e.port == idx && e.vid == vid).map(|e| (e.group, e.source)).collect();
            if held.is_empty() {
                self.nl.vlan_del(idx, vid).map_err(Self::at(port))?;
            }
            self.mvr.insert(port.to_string(), (vid, held));
        }
        Ok(())
    }

    fn teardown_multicast(&mut self, bridge: &str, multicast_vlans: &[u16], found: &Found) -> Result<(), Error> {
        // every entry of mcgate's, in the VLAN it is in; a port's membership of the
        // multicast VLAN was mcgate's too (it had one while it had an entry there)
        let b = Self::index(bridge)?;
        let names = self.names()?;
        let mut members = std::collections::HashSet::new();
        for e in self.nl.mdb_dump(b).map_err(Self::at(bridge))? {
            let Some(port) = names.get(&e.port).filter(|_| e.rtprot == Some(RTPROT_MCGATE)) else { continue };
            self.nl.mdb_del(b, e.port, e.group, e.source, e.vid).map_err(Self::at(port))?;
            if multicast_vlans.contains(&e.vid) && members.insert((e.port, e.vid)) {
                self.nl.vlan_del(e.port, e.vid).map_err(Self::at(port))?;
            }
        }
        // the uplinks leave the multicast VLANs mcgate put them in
        for (port, was_in) in &found.vlans {
            let Ok(idx) = Self::index(port) else { continue };
            for vid in multicast_vlans.iter().filter(|v| !was_in.contains(v)) {
                self.nl.vlan_del(idx, *vid).map_err(Self::at(port))?;
            }
        }
        if found.vlan_snooping == Some(false) {
            self.nl.set_vlan_snooping(b, false).map_err(Self::at(bridge))?;
        }
        nft(&format!(
            "table bridge mcgate\ndelete table bridge mcgate\ntable bridge {USAGE_TABLE}\ndelete table bridge {USAGE_TABLE}\n"
        ))
    }

    fn usage(&mut self, port: &str, group: IpAddr) -> Result<Option<(u64, u64)>, Error> {
        let Some(nf) = self.nf.as_mut() else { return Ok(None) };
        // the set's key: the interface name in 16 octets, then the address
        let mut key = [0u8; 16].to_vec();
        let name = port.as_bytes();
        key[..name.len().min(15)].copy_from_slice(&name[..name.len().min(15)]);
        let set = match group {
            IpAddr::V4(g) => {
                key.extend_from_slice(&g.octets());
                "v4"
            }
            IpAddr::V6(g) => {
                key.extend_from_slice(&g.octets());
                "v6"
            }
        };
        // no element: nothing was forwarded there (within the last hour), or the set had
        // no room for it (`uncounted` counts that)
        Ok(Some(nf.set_elem_counter(FAMILY_BRIDGE, USAGE_TABLE, set, &key).map_err(Self::at(port))?.unwrap_or((0, 0))))
    }

    fn usage_uncounted(&mut self) -> Result<Option<(u64, u64)>, Error> {
        let Some(nf) = self.nf.as_mut() else { return Ok(None) };
        nf.obj_counter(FAMILY_BRIDGE, USAGE_TABLE, UNCOUNTED).map_err(Self::at(USAGE_TABLE))
    }

    fn mdb_add(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), Error> {
        let vid = at.vlan.unwrap_or(0);
        if self.mvr_channels(at).is_some() {
            // the port is in the multicast VLAN, egress untagged, from its first channel
            // on; asked every time, for an entry put back after the membership was
            // removed by hand (which takes the port's entries in the VLAN with it)
            let p = Self::index(&at.port)?;
            self.nl.vlan_add(p, vid, true).map_err(Self::at(&at.port))?;
        }
        self.with_indexes(bridge, &at.port, |nl, b, p| nl.mdb_add(b, p, group, source, vid))?;
        if let Some(held) = self.mvr_channels(at) {
            held.insert((group, source));
        }
        Ok(())
    }

    fn mdb_del(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), Error> {
        let vid = at.vlan.unwrap_or(0);
        self.with_indexes(bridge, &at.port, |nl, b, p| nl.mdb_del(b, p, group, source, vid))?;
        if let Some(held) = self.mvr_channels(at) {
            if held.remove(&(group, source)) && held.is_empty() {
                // its last channel: out of the multicast VLAN again
                let p = Self::index(&at.port)?;
                self.nl.vlan_del(p, vid).map_err(Self::at(&at.port))?;
            }
        }
        Ok(())
    }

    fn mdb_all(&mut self, bridge: &str) -> Result<Vec<(MdbEntry, bool)>, Error> {
        let b = Self::index(bridge)?;
        let names = self.names()?;
        // ports taken out of the multicast VLAN (by hand): their entries there forward
        // nothing, and count as absent (adding one puts the port back)
        let mut outside = std::collections::HashSet::new();
        if !self.mvr.is_empty() {
            let members = self.nl.port_vlans().map_err(Self::at(bridge))?;
            for (port, (vid, _)) in &self.mvr {
                let idx = Self::index(port)?;
                if !members.get(&idx).is_some_and(|vlans| vlans.iter().any(|(v, _)| v == vid)) {
                    outside.insert((idx, *vid));
                }
            }
        }
        let mut out = vec![];
        for e in self.nl.mdb_dump(b).map_err(Self::at(bridge))? {
            let Some(name) = names.get(&e.port) else { continue };
            if outside.contains(&(e.port, e.vid)) {
                continue;
            }
            let at = PortVlan::new(name, (e.vid != 0).then_some(e.vid));
            out.push(((at, e.group, e.source), e.rtprot == Some(RTPROT_MCGATE)));
        }
        Ok(out)
    }

    fn move_untagged(&mut self, port: &str, from: u16, to: u16) -> Result<(), Error> {
        let idx = Self::index(port)?;
        // a VLAN the port is in already (tagged, set up by the operator) would lose what
        // it was when the port moves back: not mcgate's to change
        let vlans = self.nl.port_vlans().map_err(Self::at(port))?;
        if vlans.get(&idx).is_some_and(|v| v.iter().any(|(vid, _)| *vid == to)) {
            return Err(Error::Unsupported(format!("port {port} is in VLAN {to} already")));
        }
        // the new VLAN first: the port is never without a PVID (its untagged frames
        // would be dropped, or with a default PVID go somewhere else)
        self.nl.vlan_set_pvid(idx, to).map_err(Self::at(port))?;
        self.nl.vlan_del(idx, from).map_err(Self::at(port))
    }

    fn teardown_ports(&mut self, ats: &[PortVlan]) -> Result<(), Error> {
        // one dump of the FDB for all of them (one a port took 6 s for 1 000 ports)
        for (at, mac) in self.authorized_on(ats)? {
            self.nl.fdb_del(Self::index(&at.port)?, mac, at.vlan).map_err(Self::at(&at.port))?;
        }
        Ok(())
    }

    fn found(&mut self, bridge: &str, ports: &[&str]) -> Result<Found, Error> {
        let b = Self::index(bridge)?;
        let mut found = Found {
            bridge: self.nl.bridge_attrs(b, &BRIDGE_OPTIONS).map_err(Self::at(bridge))?.into_iter().collect(),
            ..Default::default()
        };
        let vlans = self.nl.port_vlans().map_err(Self::at(bridge))?;
        for port in ports {
            let idx = Self::index(port)?;
            let attrs = self.nl.port_attrs(idx, &PORT_FLAGS).map_err(Self::at(port))?;
            let attrs = attrs.ok_or_else(|| Error::NoSuchPort(port.to_string()))?;
            found.ports.insert(port.to_string(), attrs.into_iter().collect());
            if let Some(v) = vlans.get(&idx) {
                found.vlans.insert(port.to_string(), v.iter().map(|(vid, _)| *vid).collect());
            }
        }
        if self.filters_vlans(b).map_err(Self::at(bridge))? {
            found.vlan_snooping = Some(self.nl.vlan_snooping(b).map_err(Self::at(bridge))?);
        }
        Ok(found)
    }

    fn restore(&mut self, bridge: &str, found: &Found) -> Result<(), Error> {
        for (port, flags) in &found.ports {
            let Ok(idx) = Self::index(port) else { continue };
            let get = |ty| flags.get(&ty).map(Vec::as_slice);
            // The kernel takes MAB only on a locked, learning port: off first, then
            // lock and learning as found, then MAB as found.
            self.nl.set_port_flags(idx, &[(brport::MAB, &[0])]).map_err(Self::at(port))?;
            let set: Vec<(u16, &[u8])> =
                PORT_FLAGS.into_iter().filter(|ty| *ty != brport::MAB).filter_map(|ty| Some((ty, get(ty)?))).collect();
            self.nl.set_port_flags(idx, &set).map_err(Self::at(port))?;
            if let Some(mab) = get(brport::MAB) {
                self.nl.set_port_flags(idx, &[(brport::MAB, mab)]).map_err(Self::at(port))?;
            }
        }
        if !found.bridge.is_empty() {
            let opts: Vec<(u16, &[u8])> = found.bridge.iter().map(|(t, v)| (*t, v.as_slice())).collect();
            self.nl.set_bridge_attrs(Self::index(bridge)?, &opts).map_err(Self::at(bridge))?;
        }
        Ok(())
    }
}
