//! The bridge's VLANs: a port's membership of a VLAN (RTM_SETLINK / RTM_DELLINK with
//! IFLA_AF_SPEC, as `bridge vlan add|del` sends it), per-VLAN multicast snooping (the
//! MCAST_VLAN_SNOOPING bool option) and a VLAN's global multicast options (RTM_NEWVLAN
//! with BRIDGE_VLANDB_GLOBAL_OPTIONS: snooping, querier, IGMP/MLD versions), which
//! iproute2 sets with `bridge vlan global set`.

use super::*;

const RTM_NEWVLAN: u16 = 112;
const BRIDGE_VLANDB_GLOBAL_OPTIONS: u16 = 2;
const BRIDGE_VLANDB_GOPTS_ID: u16 = 1;
const BRIDGE_VLANDB_GOPTS_MCAST_SNOOPING: u16 = 3;
const BRIDGE_VLANDB_GOPTS_MCAST_IGMP_VERSION: u16 = 4;
const BRIDGE_VLANDB_GOPTS_MCAST_MLD_VERSION: u16 = 5;
/// u64, centiseconds.
const BRIDGE_VLANDB_GOPTS_MCAST_QUERY_RESPONSE_INTVL: u16 = 13;
const BRIDGE_VLANDB_GOPTS_MCAST_QUERIER: u16 = 15;
const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 1 << 2;
/// IFLA_BR_MULTI_BOOLOPT: struct br_boolopt_multi { u32 optval; u32 optmask; }.
const IFLA_BR_MULTI_BOOLOPT: u16 = 46;
const BR_BOOLOPT_MCAST_VLAN_SNOOPING: u32 = 1 << 1;

fn vlan_info(port: u32, vid: u16, flags: u16) -> Vec<u8> {
    let mut info = flags.to_ne_bytes().to_vec();
    info.extend_from_slice(&vid.to_ne_bytes());
    let mut spec = Vec::new();
    push_attr(&mut spec, IFLA_BRIDGE_VLAN_INFO, &info);
    let mut body = ifinfomsg(AF_BRIDGE, port);
    push_attr(&mut body, IFLA_AF_SPEC | NLA_F_NESTED, &spec);
    body
}

impl Netlink {
    /// Makes port `port` a member of VLAN `vid`, its frames leaving untagged (`untagged`);
    /// the port's PVID stays as it is.
    pub fn vlan_add(&mut self, port: u32, vid: u16, untagged: bool) -> Result<(), Error> {
        let flags = if untagged { BRIDGE_VLAN_INFO_UNTAGGED } else { 0 };
        self.request(RTM_SETLINK, NLM_F_ACK, &vlan_info(port, vid, flags))
    }

    /// Makes VLAN `vid` port `port`'s PVID, egress untagged: where its untagged frames go.
    pub fn vlan_set_pvid(&mut self, port: u32, vid: u16) -> Result<(), Error> {
        let flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED;
        self.request(RTM_SETLINK, NLM_F_ACK, &vlan_info(port, vid, flags))
    }

    /// Ends port `port`'s membership of VLAN `vid`; not a member is not an error.
    pub fn vlan_del(&mut self, port: u32, vid: u16) -> Result<(), Error> {
        match self.request(RTM_DELLINK, NLM_F_ACK, &vlan_info(port, vid, 0)) {
            Err(Error::Io(e)) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
            other => other,
        }
    }

    /// Multicast snooping per VLAN on bridge `bridge` (each VLAN its own querier and MDB
    /// context), or bridge-wide.
    pub fn set_vlan_snooping(&mut self, bridge: u32, on: bool) -> Result<(), Error> {
        let mut opt = (if on { BR_BOOLOPT_MCAST_VLAN_SNOOPING } else { 0 }).to_ne_bytes().to_vec();
        opt.extend_from_slice(&BR_BOOLOPT_MCAST_VLAN_SNOOPING.to_ne_bytes());
        self.set_bridge_attrs(bridge, &[(IFLA_BR_MULTI_BOOLOPT, &opt)])
    }

    /// Whether bridge `bridge` snoops per VLAN.
    pub fn vlan_snooping(&mut self, bridge: u32) -> Result<bool, Error> {
        let attrs = self.bridge_attrs(bridge, &[IFLA_BR_MULTI_BOOLOPT])?;
        let optval = attrs.first().and_then(|(_, v)| v.get(..4)).and_then(|b| <[u8; 4]>::try_from(b).ok());
        Ok(optval.is_some_and(|v| u32::from_ne_bytes(v) & BR_BOOLOPT_MCAST_VLAN_SNOOPING != 0))
    }

    /// VLAN `vid`'s multicast context on bridge `bridge`: snooping on, the bridge's own
    /// querier on, IGMPv3 and MLDv2 queries (as the bridge-wide set-up does). The
    /// querier goes on with the kernel's hold-off at its least (see
    /// `LinuxBridge::start_querier`), then the VLAN's query response interval is
    /// `response_interval` (centiseconds).
    pub fn set_vlan_querier(&mut self, bridge: u32, vid: u16, response_interval: u64) -> Result<(), Error> {
        let u64_opt = |ty: u16, v: u64| (ty, v.to_ne_bytes().to_vec());
        self.set_vlan_options(bridge, vid, &[u64_opt(BRIDGE_VLANDB_GOPTS_MCAST_QUERY_RESPONSE_INTVL, 1)])?;
        let on = self.set_vlan_options(
            bridge,
            vid,
            &[
                (BRIDGE_VLANDB_GOPTS_MCAST_SNOOPING, vec![1]),
                (BRIDGE_VLANDB_GOPTS_MCAST_QUERIER, vec![1]),
                (BRIDGE_VLANDB_GOPTS_MCAST_IGMP_VERSION, vec![3]),
                (BRIDGE_VLANDB_GOPTS_MCAST_MLD_VERSION, vec![2]),
            ],
        );
        self.set_vlan_options(
            bridge,
            vid,
            &[u64_opt(BRIDGE_VLANDB_GOPTS_MCAST_QUERY_RESPONSE_INTVL, response_interval)],
        )?;
        on
    }

    /// Global options (BRIDGE_VLANDB_GOPTS_*, each its payload) of VLAN `vid` on `bridge`.
    fn set_vlan_options(&mut self, bridge: u32, vid: u16, options: &[(u16, Vec<u8>)]) -> Result<(), Error> {
        let mut opts = Vec::new();
        push_attr(&mut opts, BRIDGE_VLANDB_GOPTS_ID, &vid.to_ne_bytes());
        for (ty, v) in options {
            push_attr(&mut opts, *ty, v);
        }
        // struct br_vlan_msg { u8 family; u8 reserved1; u16 reserved2; u32 ifindex; }
        let mut body = vec![AF_BRIDGE, 0, 0, 0];
        body.extend_from_slice(&bridge.to_ne_bytes());
        push_attr(&mut body, BRIDGE_VLANDB_GLOBAL_OPTIONS | NLA_F_NESTED, &opts);
        self.request(RTM_NEWVLAN, NLM_F_ACK, &body)
    }
}
