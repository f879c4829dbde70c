//! The bridge's multicast database (RTM_*MDB): permanent entries marked with mcgate's
//! routing protocol, deletes, dumps.

use super::*;

/// The routing protocol mcgate marks its MDB entries with, to tell them from others.
pub const RTPROT_MCGATE: u8 = 196;
const MDBA_MDB: u16 = 1;
const MDBA_MDB_ENTRY: u16 = 1;
const MDBA_MDB_ENTRY_INFO: u16 = 1;
const MDBA_MDB_EATTR_SOURCE: u16 = 4;
const MDBA_MDB_EATTR_RTPROT: u16 = 5;
const MDBA_SET_ENTRY: u16 = 1;
const MDBA_SET_ENTRY_ATTRS: u16 = 2;
const MDBE_ATTR_SOURCE: u16 = 1;
const MDBE_ATTR_RTPROT: u16 = 4;
const MDB_PERMANENT: u8 = 1;

/// A multicast database entry: (port, group, source) on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdbEntry {
    pub port: u32,
    pub group: std::net::IpAddr,
    pub source: Option<std::net::IpAddr>,
    pub permanent: bool,
    pub rtprot: Option<u8>,
    /// The VLAN (br_mdb_entry's vid; 0: none).
    pub vid: u16,
}

/// struct br_port_msg (8 octets) + MDBA_SET_ENTRY (struct br_mdb_entry, 28 octets)
/// [+ MDBA_SET_ENTRY_ATTRS { MDBE_ATTR_SOURCE, MDBE_ATTR_RTPROT }].
pub(super) fn mdb_body(
    bridge: u32,
    port: u32,
    group: std::net::IpAddr,
    source: Option<std::net::IpAddr>,
    vid: u16,
    add: bool,
) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b[0] = AF_BRIDGE;
    b[4..8].copy_from_slice(&bridge.to_ne_bytes());
    let mut e = vec![0u8; 28];
    e[0..4].copy_from_slice(&port.to_ne_bytes());
    e[4] = MDB_PERMANENT;
    e[6..8].copy_from_slice(&vid.to_ne_bytes());
    let proto: u16 = match group {
        std::net::IpAddr::V4(g) => {
            e[8..12].copy_from_slice(&g.octets());
            0x0800
        }
        std::net::IpAddr::V6(g) => {
            e[8..24].copy_from_slice(&g.octets());
            0x86dd
        }
    };
    e[24..26].copy_from_slice(&proto.to_be_bytes());
    push_attr(&mut b, MDBA_SET_ENTRY, &e);
    let mut attrs = Vec::new();
    match source {
        Some(std::net::IpAddr::V4(s)) => push_attr(&mut attrs, MDBE_ATTR_SOURCE, &s.octets()),
        Some(std::net::IpAddr::V6(s)) => push_attr(&mut attrs, MDBE_ATTR_SOURCE, &s.octets()),
        None => {}
    }
    if add {
        push_attr(&mut attrs, MDBE_ATTR_RTPROT, &[RTPROT_MCGATE]);
    }
    if !attrs.is_empty() {
        push_attr(&mut b, MDBA_SET_ENTRY_ATTRS | NLA_F_NESTED, &attrs);
    }
    b
}

pub(super) fn ip_of(b: &[u8], proto: u16) -> Option<std::net::IpAddr> {
    match proto {
        0x0800 => Some(std::net::Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?).into()),
        0x86dd => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?).into()),
        _ => None,
    }
}

pub(super) fn parse_mdb(payload: &[u8], out: &mut Vec<MdbEntry>) {
    let Some(attrs_area) = payload.get(8..) else {
        return;
    };
    for (ty, mdb) in attrs(attrs_area) {
        if ty != MDBA_MDB {
            continue;
        }
        for (ty, entry) in attrs(mdb) {
            if ty != MDBA_MDB_ENTRY {
                continue;
            }
            for (ty, info) in attrs(entry) {
                if ty != MDBA_MDB_ENTRY_INFO || info.len() < 28 {
                    continue;
                }
                let proto = u16::from_be_bytes([info[24], info[25]]);
                let Some(group) = ip_of(&info[8..24], proto) else {
                    continue;
                };
                let mut e = MdbEntry {
                    port: u32_of(&info[0..4]).unwrap_or(0),
                    group,
                    source: None,
                    permanent: info[4] == MDB_PERMANENT,
                    rtprot: None,
                    vid: u16::from_ne_bytes([info[6], info[7]]),
                };
                for (ty, v) in attrs(&info[28..]) {
                    match ty {
                        MDBA_MDB_EATTR_SOURCE => e.source = ip_of(v, proto),
                        MDBA_MDB_EATTR_RTPROT => e.rtprot = v.first().copied(),
                        _ => {}
                    }
                }
                out.push(e);
            }
        }
    }
}

impl Netlink {
    /// Adds (or replaces) a permanent MDB entry marked as mcgate's, in VLAN `vid` (0:
    /// none).
    pub fn mdb_add(
        &mut self,
        bridge: u32,
        port: u32,
        group: std::net::IpAddr,
        source: Option<std::net::IpAddr>,
        vid: u16,
    ) -> Result<(), Error> {
        let body = mdb_body(bridge, port, group, source, vid, true);
        self.request(RTM_NEWMDB, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &body)
    }

    /// Removes an MDB entry; absent is not an error.
    pub fn mdb_del(
        &mut self,
        bridge: u32,
        port: u32,
        group: std::net::IpAddr,
        source: Option<std::net::IpAddr>,
        vid: u16,
    ) -> Result<(), Error> {
        match self.request(RTM_DELMDB, NLM_F_ACK, &mdb_body(bridge, port, group, source, vid, false)) {
            Err(Error::Io(e)) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
            other => other,
        }
    }

    /// Every MDB entry of bridge `bridge`.
    pub fn mdb_dump(&mut self, bridge: u32) -> Result<Vec<MdbEntry>, Error> {
        let mut body = vec![0u8; 8];
        body[0] = AF_BRIDGE;
        let mut out = Vec::new();
        self.dump(RTM_GETMDB, &body, |ty, payload| {
            // dump answers come as RTM_GETMDB, notifications as RTM_NEWMDB
            if matches!(ty, RTM_NEWMDB | RTM_GETMDB) && u32_of(payload.get(4..8).unwrap_or(&[])) == Some(bridge) {
                parse_mdb(payload, &mut out);
            }
        })?;
        Ok(out)
    }
}
