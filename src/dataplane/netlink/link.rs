//! Links and bridge options: the link dump and one link (name, MAC, master, running),
//! bridge port attributes (locked, learning, MAB, flooding, multicast router: set as
//! IFLA_PROTINFO, read from the port's IFLA_LINKINFO), bridge options (IFLA_BR_* in
//! IFLA_LINKINFO), and interface addresses.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub master: Option<u32>,
    /// Administratively up and carrier present.
    pub running: bool,
}

pub(super) fn parse_link(p: &[u8]) -> Option<Link> {
    let index = u32_of(p.get(4..8)?)?;
    let flags = u32_of(p.get(8..12)?)?;
    let mut link = Link {
        index,
        name: String::new(),
        mac: None,
        master: None,
        running: flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0,
    };
    for (ty, v) in attrs(p.get(16..)?) {
        match ty {
            IFLA_IFNAME => link.name = String::from_utf8_lossy(v.split(|&c| c == 0).next().unwrap_or(&[])).into_owned(),
            IFLA_ADDRESS => link.mac = mac_of(v),
            IFLA_MASTER => link.master = u32_of(v),
            _ => {}
        }
    }
    Some(link)
}

/// The attributes of `b` whose types are in `wanted`, in the order found.
pub(super) fn picked(b: &[u8], wanted: &[u16]) -> Vec<Attr> {
    attrs(b)
        .filter(|(t, _)| wanted.contains(&(t & !NLA_F_NESTED)))
        .map(|(t, v)| (t & !NLA_F_NESTED, v.to_vec()))
        .collect()
}

impl Netlink {
    /// Sets bridge port attributes: each (IFLA_BRPORT_*, payload); FLUSH has none, the
    /// flags one octet, MCAST_MAX_GROUPS a u32.
    pub fn set_port_flags(&mut self, ifindex: u32, flags: &[(u16, &[u8])]) -> Result<(), Error> {
        let mut nested = Vec::new();
        for (ty, v) in flags {
            push_attr(&mut nested, *ty, v);
        }
        let mut body = ifinfomsg(AF_BRIDGE, ifindex);
        push_attr(&mut body, IFLA_PROTINFO | NLA_F_NESTED, &nested);
        self.request(RTM_SETLINK, NLM_F_ACK, &body)
    }

    /// Sets bridge options (IFLA_BR_*, one octet each) on bridge `ifindex`.
    pub fn set_bridge_options(&mut self, ifindex: u32, opts: &[(u16, u8)]) -> Result<(), Error> {
        let opts: Vec<(u16, [u8; 1])> = opts.iter().map(|(t, v)| (*t, [*v])).collect();
        let opts: Vec<(u16, &[u8])> = opts.iter().map(|(t, v)| (*t, &v[..])).collect();
        self.set_bridge_attrs(ifindex, &opts)
    }

    /// Sets bridge attributes (IFLA_BR_*, each its payload) on bridge `ifindex`.
    pub fn set_bridge_attrs(&mut self, ifindex: u32, opts: &[(u16, &[u8])]) -> Result<(), Error> {
        let mut data = Vec::new();
        for (ty, v) in opts {
            push_attr(&mut data, *ty, v);
        }
        let mut info = Vec::new();
        push_attr(&mut info, IFLA_INFO_KIND, b"bridge");
        push_attr(&mut info, IFLA_INFO_DATA | NLA_F_NESTED, &data);
        let mut body = ifinfomsg(AF_UNSPEC, ifindex);
        push_attr(&mut body, IFLA_LINKINFO | NLA_F_NESTED, &info);
        self.request(RTM_NEWLINK, NLM_F_ACK, &body)
    }

    /// The addresses of interface `ifindex`: (address, scope; 253 = link).
    pub fn addresses(&mut self, ifindex: u32) -> Result<Vec<(std::net::IpAddr, u8)>, Error> {
        let body = vec![0u8; 8];
        let mut out = Vec::new();
        self.dump(RTM_GETADDR, &body, |ty, p| {
            if ty != RTM_NEWADDR || p.len() < 8 || u32_of(&p[4..8]) != Some(ifindex) {
                return;
            }
            let (family, scope) = (p[0], p[3]);
            for (t, v) in attrs(&p[8..]) {
                // IFA_ADDRESS
                if t == 1 {
                    let proto = if family == libc::AF_INET as u8 { 0x0800 } else { 0x86dd };
                    out.extend(ip_of(v, proto).map(|a| (a, scope)));
                }
            }
        })?;
        Ok(out)
    }

    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        self.collect(RTM_GETLINK, &ifinfomsg(AF_UNSPEC, 0), RTM_NEWLINK, parse_link)
    }

    /// Link `ifindex` alone (RTM_GETLINK for one index, not the dump of every link:
    /// the set-up asks about each port, and with 1 000 ports a dump each took the start
    /// 17 s); `each` gets its message.
    fn link_message(&mut self, ifindex: u32, mut each: impl FnMut(&[u8])) -> Result<(), Error> {
        self.exchange(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(AF_UNSPEC, ifindex), |ty, p| {
            if ty == RTM_NEWLINK && p.get(4..8).and_then(u32_of) == Some(ifindex) {
                each(p)
            }
        })
    }

    /// Link `ifindex`.
    pub fn link(&mut self, ifindex: u32) -> Result<Option<Link>, Error> {
        let mut out = None;
        self.link_message(ifindex, |p| out = parse_link(p))?;
        Ok(out)
    }

    /// The nested attributes `kind` (IFLA_INFO_DATA: the bridge's own; IFLA_INFO_SLAVE_DATA:
    /// a bridge port's, IFLA_BRPORT_* as in IFLA_PROTINFO) of link `ifindex`'s
    /// IFLA_LINKINFO whose types are in `wanted`; `None` when the link has none.
    fn link_info(&mut self, ifindex: u32, kind: u16, wanted: &[u16]) -> Result<Option<Vec<Attr>>, Error> {
        let mut out = None;
        self.link_message(ifindex, |p| {
            let data = p.get(16..).and_then(|a| find(a, IFLA_LINKINFO)).and_then(|info| find(info, kind));
            out = data.map(|d| picked(d, wanted));
        })?;
        Ok(out)
    }

    /// The bridge port attributes of port `ifindex` whose types are in `wanted`, as the
    /// kernel reports them; `None` when it is no bridge port.
    pub fn port_attrs(&mut self, ifindex: u32, wanted: &[u16]) -> Result<Option<Vec<Attr>>, Error> {
        self.link_info(ifindex, IFLA_INFO_SLAVE_DATA, wanted)
    }

    /// The bridge attributes (IFLA_BR_* in IFLA_LINKINFO's data) of bridge `ifindex`
    /// whose types are in `wanted`.
    pub fn bridge_attrs(&mut self, ifindex: u32, wanted: &[u16]) -> Result<Vec<Attr>, Error> {
        Ok(self.link_info(ifindex, IFLA_INFO_DATA, wanted)?.unwrap_or_default())
    }

    /// The PVID of bridge port `ifindex` (the VLAN its untagged frames belong to);
    /// `None` when the port has none (a kernel without VLAN filtering).
    pub fn port_pvid(&mut self, ifindex: u32) -> Result<Option<u16>, Error> {
        let vlans = self.port_vlans()?.remove(&ifindex).unwrap_or_default();
        Ok(vlans.into_iter().find(|(_, flags)| flags & BRIDGE_VLAN_INFO_PVID != 0).map(|(v, _)| v))
    }

    /// The VLANs each bridge port is a member of (by ifindex), with their
    /// BRIDGE_VLAN_INFO_* flags, in one dump with the bridge's VLAN information
    /// (RTEXT_FILTER_BRVLAN, uncompressed: one entry per VLAN).
    pub fn port_vlans(&mut self) -> Result<std::collections::HashMap<u32, Vec<(u16, u16)>>, Error> {
        let mut body = ifinfomsg(AF_BRIDGE, 0);
        push_attr(&mut body, IFLA_EXT_MASK, &RTEXT_FILTER_BRVLAN.to_ne_bytes());
        let mut all = std::collections::HashMap::new();
        self.dump(RTM_GETLINK, &body, |ty, p| {
            let Some(ifindex) = p.get(4..8).and_then(u32_of).filter(|_| ty == RTM_NEWLINK) else { return };
            let vlans: &mut Vec<(u16, u16)> = all.entry(ifindex).or_default();
            let spec = p.get(16..).and_then(|a| find(a, IFLA_AF_SPEC));
            for (ty, info) in spec.into_iter().flat_map(attrs) {
                // struct bridge_vlan_info { u16 flags; u16 vid; }
                if ty == IFLA_BRIDGE_VLAN_INFO && info.len() >= 4 {
                    let flags = u16::from_ne_bytes([info[0], info[1]]);
                    vlans.push((u16::from_ne_bytes([info[2], info[3]]), flags));
                }
            }
        })?;
        Ok(all)
    }
}
