//! The bridge's forwarding database (RTM_*NEIGH, AF_BRIDGE): static entries for
//! authorized MACs, the locked entries MAB reports, dumps.

use super::*;

const NDA_LLADDR: u16 = 2;
const NDA_VLAN: u16 = 5;
const NDA_MASTER: u16 = 9;
const NDA_FLAGS_EXT: u16 = 15;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;
const NTF_MASTER: u8 = 0x04;
pub const NTF_EXT_LOCKED: u32 = 1 << 1;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub state: u16,
    pub master: Option<u32>,
    pub locked: bool,
    /// The VLAN of the entry (NDA_VLAN), on a VLAN-filtering bridge.
    #[serde(default)]
    pub vlan: Option<u16>,
}

impl FdbEntry {
    /// A user-added static entry (`bridge fdb add ... static`); the port's own
    /// addresses are NUD_PERMANENT and not counted.
    pub fn is_static(&self) -> bool {
        self.state & NUD_NOARP != 0 && self.state & NUD_PERMANENT == 0
    }
}

pub(super) fn fdb_body(ifindex: u32, mac: MacAddr, vlan: Option<u16>) -> Vec<u8> {
    // struct ndmsg { family, pad1, pad2(2), ifindex(4), state(2), flags, type }
    let mut b = vec![0u8; 12];
    b[0] = AF_BRIDGE;
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b[8..10].copy_from_slice(&NUD_NOARP.to_ne_bytes());
    b[10] = NTF_MASTER;
    push_attr(&mut b, NDA_LLADDR, &mac.0);
    if let Some(vid) = vlan {
        push_attr(&mut b, NDA_VLAN, &vid.to_ne_bytes());
    }
    b
}

pub(super) fn parse_neigh(p: &[u8]) -> Option<FdbEntry> {
    if *p.first()? != AF_BRIDGE {
        return None;
    }
    let ifindex = u32_of(p.get(4..8)?)?;
    let state = u16::from_ne_bytes(p.get(8..10)?.try_into().ok()?);
    let mut mac = None;
    let mut master = None;
    let mut locked = false;
    let mut vlan = None;
    for (ty, v) in attrs(p.get(12..)?) {
        match ty {
            NDA_LLADDR => mac = mac_of(v),
            NDA_VLAN => vlan = v.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])),
            NDA_MASTER => master = u32_of(v),
            NDA_FLAGS_EXT => locked = u32_of(v).is_some_and(|f| f & NTF_EXT_LOCKED != 0),
            _ => {}
        }
    }
    Some(FdbEntry { ifindex, mac: mac?, state, master, locked, vlan })
}

impl Netlink {
    /// Adds or replaces a static FDB entry for `mac` on bridge port `ifindex`, in `vlan`
    /// on a VLAN-filtering bridge.
    pub fn fdb_replace(&mut self, ifindex: u32, mac: MacAddr, vlan: Option<u16>) -> Result<(), Error> {
        let body = fdb_body(ifindex, mac, vlan);
        self.request(RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &body)
    }

    /// Removes the FDB entry for `mac` (in `vlan`) on `ifindex`; absent is not an error.
    pub fn fdb_del(&mut self, ifindex: u32, mac: MacAddr, vlan: Option<u16>) -> Result<(), Error> {
        match self.request(RTM_DELNEIGH, NLM_F_ACK, &fdb_body(ifindex, mac, vlan)) {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    pub fn fdb_dump(&mut self) -> Result<Vec<FdbEntry>, Error> {
        let mut body = vec![0u8; 12];
        body[0] = AF_BRIDGE;
        self.collect(RTM_GETNEIGH, &body, RTM_NEWNEIGH, parse_neigh)
    }
}
