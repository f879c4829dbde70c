//! Everything that touches the kernel's forwarding state sits behind [`Dataplane`],
//! so the kernel is touched in one place only, and audit mode enforces nothing.

pub mod linux;
pub mod netlink;

use crate::wire::MacAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// An MDB entry as the dataplane reports it: (where, group, source).
pub type MdbEntry = (PortVlan, IpAddr, Option<IpAddr>);

/// A bridge port and, on a VLAN-filtering bridge, a VLAN of it: where an FDB entry of
/// an authorized host goes (the VLAN its frames are in: their tag, or the port's PVID
/// for untagged ones), or an MDB entry (that VLAN, or the multicast VLAN). Without a
/// VLAN on a VLAN-filtering bridge an entry would go into every VLAN of the port, and
/// let the host through the lock in all of them. Written `port` or `port:vlan` (an
/// interface name holds no `:`), as NAS-Port-Id carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortVlan {
    pub port: String,
    pub vlan: Option<u16>,
}

impl PortVlan {
    pub fn new(port: &str, vlan: Option<u16>) -> Self {
        PortVlan { port: port.to_string(), vlan }
    }
}

impl std::fmt::Display for PortVlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.vlan {
            Some(v) => write!(f, "{}:{v}", self.port),
            None => f.write_str(&self.port),
        }
    }
}

impl std::str::FromStr for PortVlan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None => Ok(PortVlan::new(s, None)),
            Some((port, vlan)) => {
                let vlan = vlan.parse().map_err(|_| format!("{s:?}: no VLAN after the port's name"))?;
                Ok(PortVlan::new(port, Some(vlan)))
            }
        }
    }
}

impl serde::Serialize for PortVlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PortVlan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The bridge options mcgate's multicast set-up changes (IFLA_BR_*).
pub const BRIDGE_OPTIONS: [u16; 6] = [
    netlink::br::MCAST_HASH_MAX,
    netlink::br::MCAST_SNOOPING,
    netlink::br::MCAST_QUERIER,
    netlink::br::MCAST_QUERY_USE_IFADDR,
    netlink::br::MCAST_IGMP_VERSION,
    netlink::br::MCAST_MLD_VERSION,
];
/// The port attributes mcgate's set-up changes (IFLA_BRPORT_*).
pub const PORT_FLAGS: [u16; 6] = [
    netlink::brport::LOCKED,
    netlink::brport::LEARNING,
    netlink::brport::MAB,
    netlink::brport::MCAST_FLOOD,
    netlink::brport::MCAST_MAX_GROUPS,
    netlink::brport::MULTICAST_ROUTER,
];

/// What mcgate found before its set-up changed it: the kernel's attribute payloads as
/// read over netlink, so that `mcgate teardown` puts back exactly those.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Found {
    /// IFLA_BR_* → payload, of [`BRIDGE_OPTIONS`].
    pub bridge: BTreeMap<u16, Vec<u8>>,
    /// Port name → (IFLA_BRPORT_* → payload), of [`PORT_FLAGS`].
    pub ports: BTreeMap<String, BTreeMap<u16, Vec<u8>>>,
    /// Port name → the VLANs it was in (on a VLAN-filtering bridge): an uplink not in a
    /// multicast VLAN before mcgate put it there leaves it again at teardown.
    #[serde(default)]
    pub vlans: BTreeMap<String, Vec<u16>>,
    /// The bridge's per-VLAN multicast snooping (MCAST_VLAN_SNOOPING), where it was read.
    #[serde(default)]
    pub vlan_snooping: Option<bool>,
}

impl Found {
    /// What a port has when it joins a bridge, for ports of which nothing was found
    /// (a database from before mcgate kept what it found): learning, unlocked, no MAB,
    /// unregistered multicast flooded, no group limit, multicast router "learn".
    pub fn new_port() -> BTreeMap<u16, Vec<u8>> {
        use netlink::brport::*;
        BTreeMap::from([
            (LOCKED, vec![0]),
            (LEARNING, vec![1]),
            (MAB, vec![0]),
            (MCAST_FLOOD, vec![1]),
            (MCAST_MAX_GROUPS, 0u32.to_ne_bytes().to_vec()),
            (MULTICAST_ROUTER, vec![1]),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("port {port}: {source}")]
    Port { port: String, source: netlink::Error },
    #[error("no such interface {0}")]
    NoSuchPort(String),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error("nft: {0}")]
    Nft(String),
    /// A replay's kernel: what the recorded call returned, or that the replay diverged.
    #[error("{0}")]
    Replayed(String),
    /// What this bridge (or dataplane) cannot do as configured.
    #[error("{0}")]
    Unsupported(String),
}

pub trait Dataplane {
    /// Locks the port: only MACs with a static FDB entry pass. Learning (and MAB
    /// reporting of unknown MACs) is on only with `mab`. Dynamic entries
    /// learned before are flushed, or an already-learned host keeps passing.
    fn setup_port(&mut self, port: &str, mab: bool) -> Result<(), Error>;
    /// MAB learning on a port set up for MAB: off, the locked port makes no entries
    /// for unknown MACs (and those it made are flushed); on again as `setup_port` left it.
    fn set_mab_learning(&mut self, port: &str, on: bool) -> Result<(), Error>;
    fn authorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), Error>;
    fn deauthorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), Error>;
    /// Authorized MACs the kernel holds in each of `ats` (static FDB entries), read in
    /// one go.
    fn authorized_on(&mut self, ats: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, Error>;
    /// Authorized MACs the kernel holds in `at`.
    fn authorized(&mut self, at: &PortVlan) -> Result<Vec<MacAddr>, Error> {
        Ok(self.authorized_on(std::slice::from_ref(at))?.into_iter().map(|(_, mac)| mac).collect())
    }
    /// Whether the port is locked as mcgate leaves it: false after a reboot or a
    /// rebuilt bridge (the kernel state of an earlier run is gone).
    fn is_locked(&mut self, port: &str) -> Result<bool, Error>;
    /// The tag protocol of the bridge's VLANs: 802.1Q's 0x8100, or 802.1ad's 0x88a8.
    fn vlan_protocol(&mut self, _bridge: &str) -> Result<u16, Error> {
        Ok(crate::wire::ethernet::ETHERTYPE_VLAN)
    }
    /// The VLAN the port's hosts are authorized in: its PVID on a VLAN-filtering bridge,
    /// `None` on any other.
    fn port_vlan(&mut self, _port: &str) -> Result<Option<u16>, Error> {
        Ok(None)
    }
    /// Moves the port's untagged hosts from VLAN `from` to VLAN `to` (a RADIUS-assigned
    /// VLAN, or back): `to` becomes its PVID, egress untagged, and it leaves `from`.
    fn move_untagged(&mut self, _port: &str, _from: u16, _to: u16) -> Result<(), Error> {
        Err(Error::Unsupported("a VLAN assignment needs the Linux bridge".into()))
    }
    /// Removes the static entries in each of `ats` (the ports' flags go back with
    /// [`Dataplane::restore`]).
    fn teardown_ports(&mut self, ats: &[PortVlan]) -> Result<(), Error>;
    /// Reads what the set-up of `bridge` and `ports` would change, as it is now.
    fn found(&mut self, bridge: &str, ports: &[&str]) -> Result<Found, Error>;
    /// Puts back what [`Dataplane::found`] read; ports that are gone are skipped.
    fn restore(&mut self, bridge: &str, found: &Found) -> Result<(), Error>;

    /// Multicast set-up: snooping with a querier sending IGMPv3/MLDv2 queries, no
    /// flooding of unregistered multicast to access ports, uplinks as multicast-router
    /// ports, and the nftables table that drops the hosts' IGMP/MLD before the bridge
    /// sees them (the capture tap still does).
    /// `port_max_groups`: the kernel's own per-port group limit, a backstop under the
    /// policy's limits (0: none). `entries`: what the bridge's multicast table must hold
    /// (its `mcast_hash_max`, 4096 by default, is raised to it, never lowered).
    /// `usage_pairs`: the (port, group) pairs the usage counters hold.
    fn setup_multicast(
        &mut self,
        bridge: &str,
        access: &[&str],
        uplinks: &[&str],
        port_max_groups: u32,
        entries: u32,
        usage_pairs: u32,
    ) -> Result<(), Error>;
    /// Multicast VLAN registration: the streams of `access` ports come in VLAN `vid`
    /// (their MDB entries go there, each port an egress-untagged member of it while it
    /// has an entry there), with snooping and a querier of its own, the uplinks tagged
    /// in it, and frames tagged with it from the access ports dropped.
    fn setup_multicast_vlan(
        &mut self,
        _bridge: &str,
        _vid: u16,
        _access: &[&str],
        _uplinks: &[&str],
    ) -> Result<(), Error> {
        Err(Error::Unsupported("a multicast VLAN needs the Linux bridge".into()))
    }
    /// Removes mcgate's nft tables and MDB entries, and the ports' memberships of the
    /// multicast VLANs; the uplinks leave the multicast VLANs they were not in as `found`
    /// (a VLAN left without members goes, its querier with it) and per-VLAN snooping is
    /// as found (the options and flags go back with [`Dataplane::restore`]).
    fn teardown_multicast(&mut self, bridge: &str, multicast_vlans: &[u16], found: &Found) -> Result<(), Error>;
    fn mdb_add(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), Error>;
    fn mdb_del(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), Error>;
    /// Every MDB entry of `bridge` on a port, and whether it is mcgate's, read in one go
    /// (an entry in the multicast VLAN of a port that is no member of it counts as
    /// absent: it forwards nothing).
    fn mdb_all(&mut self, bridge: &str) -> Result<Vec<(MdbEntry, bool)>, Error>;
    /// The MDB entries mcgate installed.
    fn mdb_entries(&mut self, bridge: &str) -> Result<Vec<MdbEntry>, Error> {
        Ok(self.mdb_all(bridge)?.into_iter().filter(|(_, ours)| *ours).map(|(e, _)| e).collect())
    }
    /// The MDB entries on `ports` that are not mcgate's (snooped, or added by hand).
    fn mdb_foreign(&mut self, bridge: &str, ports: &[&str]) -> Result<Vec<MdbEntry>, Error> {
        let all = self.mdb_all(bridge)?.into_iter();
        Ok(all.filter(|(e, ours)| !ours && ports.contains(&e.0.port.as_str())).map(|(e, _)| e).collect())
    }
    /// (packets, bytes) the bridge has forwarded to `port` for `group`: a counter that
    /// grows while traffic flows, and starts again from 0 after an hour without.
    /// `None`: this dataplane does not count.
    fn usage(&mut self, port: &str, group: IpAddr) -> Result<Option<(u64, u64)>, Error>;
    /// (packets, bytes) forwarded to access ports uncounted because the usage counters
    /// were full; `None`: this dataplane does not count. A counter of the kernel's, read
    /// for the status and metrics (not recorded: it decides nothing).
    fn usage_uncounted(&mut self) -> Result<Option<(u64, u64)>, Error> {
        Ok(None)
    }
}

/// Audit mode: decide and record, enforce nothing.
#[derive(Debug, Default)]
pub struct Audit;

impl Dataplane for Audit {
    fn setup_port(&mut self, _: &str, _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn set_mab_learning(&mut self, _: &str, _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn authorize(&mut self, _: &PortVlan, _: MacAddr) -> Result<(), Error> {
        Ok(())
    }
    fn deauthorize(&mut self, _: &PortVlan, _: MacAddr) -> Result<(), Error> {
        Ok(())
    }
    fn is_locked(&mut self, _: &str) -> Result<bool, Error> {
        Ok(true)
    }
    fn authorized_on(&mut self, _: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, Error> {
        Ok(vec![])
    }
    fn teardown_ports(&mut self, _: &[PortVlan]) -> Result<(), Error> {
        Ok(())
    }
    fn move_untagged(&mut self, _: &str, _: u16, _: u16) -> Result<(), Error> {
        Ok(())
    }
    fn found(&mut self, _: &str, _: &[&str]) -> Result<Found, Error> {
        Ok(Found::default())
    }
    fn restore(&mut self, _: &str, _: &Found) -> Result<(), Error> {
        Ok(())
    }
    fn setup_multicast(&mut self, _: &str, _: &[&str], _: &[&str], _: u32, _: u32, _: u32) -> Result<(), Error> {
        Ok(())
    }
    fn teardown_multicast(&mut self, _: &str, _: &[u16], _: &Found) -> Result<(), Error> {
        Ok(())
    }
    fn mdb_add(&mut self, _: &str, _: &PortVlan, _: IpAddr, _: Option<IpAddr>) -> Result<(), Error> {
        Ok(())
    }
    fn mdb_del(&mut self, _: &str, _: &PortVlan, _: IpAddr, _: Option<IpAddr>) -> Result<(), Error> {
        Ok(())
    }
    fn usage(&mut self, _: &str, _: IpAddr) -> Result<Option<(u64, u64)>, Error> {
        Ok(None)
    }
    fn mdb_all(&mut self, _: &str) -> Result<Vec<(MdbEntry, bool)>, Error> {
        Ok(vec![])
    }
}
