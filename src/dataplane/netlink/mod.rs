//! Just enough rtnetlink for a bridge: port flags (IFLA_PROTINFO), FDB entries
//! (RTM_*NEIGH, AF_BRIDGE), link state, and the event stream. Message layouts are
//! those of linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h and linux/if_link.h.
//!
//! Hand-written: the `rtnetlink` crate is an async client with a connection task of its
//! own, while the actor changes the kernel synchronously, in order, between its commits;
//! the dozen bridge messages it needs (locked and MAB port attributes, NTF_EXT_LOCKED, the
//! MDB's routing protocol) are little code, each tested against the kernel.
//!
//! This file: the socket, message framing and attribute walking, the event stream.
//! `link`: links, bridge port attributes, bridge options, addresses; `fdb`, `mdb`: the
//! bridge's two tables; `nft`: one nf_tables set element's counter.

mod fdb;
mod link;
mod mdb;
mod nft;
mod vlan;

use fdb::parse_neigh;
pub use fdb::{FdbEntry, NTF_EXT_LOCKED, NUD_NOARP, NUD_PERMANENT};
use link::parse_link;
pub use link::Link;
use mdb::ip_of;
pub use mdb::{MdbEntry, RTPROT_MCGATE};

use crate::sys;
use crate::wire::MacAddr;
use std::io;
use std::os::fd::OwnedFd;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWMDB: u16 = 84;
const RTM_DELMDB: u16 = 85;
const RTM_GETMDB: u16 = 86;

const AF_UNSPEC: u8 = 0;
const AF_BRIDGE: u8 = 7;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_BRVLAN: u32 = 1 << 1;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const BRIDGE_VLAN_INFO_PVID: u16 = 1 << 1;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_DATA: u16 = 5;

/// Bridge attributes (IFLA_BR_*) inside IFLA_INFO_DATA.
pub mod br {
    /// u8; VLAN-aware forwarding: FDB and MDB entries then carry a VLAN.
    pub const VLAN_FILTERING: u16 = 7;
    pub const VLAN_PROTOCOL: u16 = 8;
    pub const MCAST_SNOOPING: u16 = 23;
    pub const MCAST_QUERY_USE_IFADDR: u16 = 24;
    pub const MCAST_QUERIER: u16 = 25;
    pub const MCAST_HASH_MAX: u16 = 27;
    /// u64, centiseconds (USER_HZ): the Max Response Time of the bridge's queries, and
    /// how long it ignores its MDB after its querier is switched on.
    pub const MCAST_QUERY_RESPONSE_INTVL: u16 = 34;
    pub const MCAST_IGMP_VERSION: u16 = 43;
    pub const MCAST_MLD_VERSION: u16 = 44;
}

const IFF_LOWER_UP: u32 = 0x10000;
const IFF_UP: u32 = 0x1;

/// Multicast groups for the event socket (RTMGRP_LINK | RTMGRP_NEIGH).
pub const GROUPS_LINK_NEIGH: u32 = 0x1 | 0x4;

/// Bridge port attributes (IFLA_BRPORT_*) inside IFLA_PROTINFO.
pub mod brport {
    pub const LEARNING: u16 = 8;
    pub const MULTICAST_ROUTER: u16 = 25;
    pub const FLUSH: u16 = 24;
    pub const MCAST_FLOOD: u16 = 27;
    pub const LOCKED: u16 = 39;
    pub const MAB: u16 = 40;
    /// u32; the kernel's own limit of multicast groups on the port (Linux 6.3).
    pub const MCAST_MAX_GROUPS: u16 = 42;
}

/// An attribute as read: its type (without NLA_F_NESTED) and payload.
pub type Attr = (u16, Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Link(Link),
    LinkGone(u32),
    NewFdb(FdbEntry),
    DelFdb(FdbEntry),
}

/// A request/response rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    #[error("netlink: malformed reply")]
    Malformed,
    /// A replay's kernel: what the recorded call returned, or that the replay diverged.
    #[error("{0}")]
    Replayed(String),
}

impl Netlink {
    pub fn open() -> Result<Self, Error> {
        Ok(Netlink { fd: sys::netlink_route(0, false)?, seq: 1, buf: vec![0; 1 << 16] })
    }

    /// A dump whose `reply`-type messages are parsed one by one.
    fn collect<T>(&mut self, ty: u16, body: &[u8], reply: u16, parse: fn(&[u8]) -> Option<T>) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        self.dump(ty, body, |t, payload| {
            if t == reply {
                out.extend(parse(payload));
            }
        })?;
        Ok(out)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> Result<(), Error> {
        self.exchange(ty, flags, body, |_, _| {})
    }

    /// A request answered by messages (given to `each`) and then its acknowledgement.
    fn exchange(&mut self, ty: u16, flags: u16, body: &[u8], mut each: impl FnMut(u16, &[u8])) -> Result<(), Error> {
        let seq = self.next_seq();
        sys::send(&self.fd, &message(ty, NLM_F_REQUEST | flags, seq, body))?;
        loop {
            let n = sys::recv(&self.fd, &mut self.buf)?;
            for (mty, _, mseq, payload) in Messages::new(&self.buf[..n]) {
                if mseq != seq {
                    continue;
                }
                if mty == NLMSG_ERROR {
                    return ack(payload);
                }
                each(mty, payload);
            }
        }
    }

    fn dump(&mut self, ty: u16, body: &[u8], mut each: impl FnMut(u16, &[u8])) -> Result<(), Error> {
        let seq = self.next_seq();
        sys::send(&self.fd, &message(ty, NLM_F_REQUEST | NLM_F_DUMP, seq, body))?;
        loop {
            let n = sys::recv(&self.fd, &mut self.buf)?;
            for (mty, _, mseq, payload) in Messages::new(&self.buf[..n]) {
                if mseq != seq {
                    continue;
                }
                match mty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => ack(payload)?,
                    _ => each(mty, payload),
                }
            }
        }
    }
}

/// An NLMSG_ERROR payload: 0 is an acknowledgement, anything else the negated errno.
fn ack(payload: &[u8]) -> Result<(), Error> {
    let code = i32::from_ne_bytes(payload.get(..4).ok_or(Error::Malformed)?.try_into().map_err(|_| Error::Malformed)?);
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code).into())
    }
}

/// Parses the messages of one datagram from the event socket.
pub fn parse_events(datagram: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    for (ty, _, _, payload) in Messages::new(datagram) {
        match ty {
            RTM_NEWLINK => out.extend(parse_link(payload).map(Event::Link)),
            RTM_DELLINK => out.extend(parse_link(payload).map(|l| Event::LinkGone(l.index))),
            RTM_NEWNEIGH => out.extend(parse_neigh(payload).map(Event::NewFdb)),
            RTM_DELNEIGH => out.extend(parse_neigh(payload).map(Event::DelFdb)),
            _ => {}
        }
    }
    out
}

fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

fn ifinfomsg(family: u8, index: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0] = family;
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (align4(len) - len), 0);
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates (type, flags, seq, payload) over the netlink messages in a datagram.
struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    fn new(b: &'a [u8]) -> Self {
        Messages { rest: b }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u16, u16, u32, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.rest = &[];
            return None;
        }
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        self.rest = &b[align4(len).min(b.len())..];
        Some((ty, flags, seq, &b[NLMSG_HDRLEN..len]))
    }
}

/// Iterates (type without flags, payload) over route attributes.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        let payload = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((ty, payload))
    })
}

/// The payload of the first attribute of type `want` in `b` (nested or not).
fn find(b: &[u8], want: u16) -> Option<&[u8]> {
    attrs(b).find(|(t, _)| t & !NLA_F_NESTED == want).map(|(_, v)| v)
}

fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

fn mac_of(p: &[u8]) -> Option<MacAddr> {
    Some(MacAddr(p.get(..6)?.try_into().ok()?)).filter(|_| p.len() == 6)
}

#[cfg(test)]
mod tests {
    use super::fdb::fdb_body;
    use super::nft::elem_counter;
    use super::*;

    #[test]
    fn fdb_message_layout() {
        let m = message(RTM_NEWNEIGH, NLM_F_REQUEST, 7, &fdb_body(5, MacAddr([2, 0, 0, 0, 0, 9]), None));
        assert_eq!(m.len(), 16 + 12 + 12);
        let (ty, _, seq, payload) = Messages::new(&m).next().unwrap();
        assert_eq!((ty, seq), (RTM_NEWNEIGH, 7));
        let e = parse_neigh(payload).unwrap();
        assert_eq!(e.ifindex, 5);
        assert_eq!(e.mac, MacAddr([2, 0, 0, 0, 0, 9]));
        assert!(e.is_static());
        assert!(!e.locked);
        assert_eq!(e.vlan, None);
        // on a VLAN-filtering bridge the entry carries its VLAN (NDA_VLAN, 2 octets + pad)
        let m = message(RTM_NEWNEIGH, NLM_F_REQUEST, 8, &fdb_body(5, MacAddr([2, 0, 0, 0, 0, 9]), Some(10)));
        assert_eq!(m.len(), 16 + 12 + 12 + 8);
        let (_, _, _, payload) = Messages::new(&m).next().unwrap();
        assert_eq!(parse_neigh(payload).unwrap().vlan, Some(10));
    }

    #[test]
    fn garbage_does_not_panic() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_events(&junk);
            let _ = parse_link(&junk);
            let _ = parse_neigh(&junk);
        }
    }

    #[test]
    fn set_element_counter_from_the_kernel() {
        // NFT_MSG_NEWSETELEM for "p1" . 239.1.1.1 in mcgate_usage/v4 after 200 packets of
        // 140 octets, as this machine's kernel (6.18) sent it
        let msg: &[u8] = &[
            7, 0, 0, 6, 17, 0, 1, 0, 109, 99, 103, 97, 116, 101, 95, 117, 115, 97, 103, 101, 0, 0, 0, 0, 7, 0, 2, 0,
            118, 52, 0, 0, 92, 0, 3, 0, 88, 0, 1, 0, 28, 0, 1, 0, 24, 0, 1, 0, 112, 49, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 239, 1, 1, 1, 44, 0, 7, 0, 12, 0, 1, 0, 99, 111, 117, 110, 116, 101, 114, 0, 28, 0, 2, 0, 12,
            0, 1, 0, 0, 0, 0, 0, 0, 0, 109, 96, 12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 200, 12, 0, 5, 0, 0, 0, 0, 0, 0, 54,
            237, 120,
        ];
        assert_eq!(elem_counter(&msg[4..]), Some((200, 28000)));
        for n in 0..msg.len() {
            let _ = elem_counter(&msg[4.min(n)..n]);
        }
    }
}
