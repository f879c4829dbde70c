//! nf_tables over netlink (NETLINK_NETFILTER): one set element's counter, for the usage
//! counters of memberships (the rules themselves are written by `nft`).

use super::*;

/// nf_tables netlink (linux/netfilter/nf_tables.h, nfnetlink.h).
mod msg {
    pub const SUBSYS: u16 = 10;
    pub const MSG_NEWSETELEM: u16 = 12;
    pub const MSG_GETSETELEM: u16 = 13;
    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const LIST_ELEM: u16 = 1;
    pub const SET_ELEM_KEY: u16 = 1;
    pub const SET_ELEM_EXPR: u16 = 7;
    pub const SET_ELEM_EXPRESSIONS: u16 = 11;
    pub const DATA_VALUE: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const COUNTER_BYTES: u16 = 1;
    pub const COUNTER_PACKETS: u16 = 2;
}

/// The (packets, bytes) of the counter of the element in a NEWSETELEM message's
/// attributes: ELEMENTS → LIST_ELEM → EXPR (one expression) or EXPRESSIONS → LIST_ELEM
/// (several) → NAME "counter", DATA → PACKETS, BYTES. nf_tables nests without
/// NLA_F_NESTED, so the path is followed by type.
pub(super) fn elem_counter(b: &[u8]) -> Option<(u64, u64)> {
    fn find(b: &[u8], want: u16) -> Option<&[u8]> {
        attrs(b).find(|(t, _)| t & !NLA_F_NESTED == want).map(|(_, v)| v)
    }
    let elem = find(find(b, msg::SET_ELEM_LIST_ELEMENTS)?, msg::LIST_ELEM)?;
    let exprs: Vec<&[u8]> = match find(elem, msg::SET_ELEM_EXPR) {
        Some(one) => vec![one],
        None => attrs(find(elem, msg::SET_ELEM_EXPRESSIONS)?).map(|(_, v)| v).collect(),
    };
    let counter = exprs.into_iter().find(|e| find(e, msg::EXPR_NAME).is_some_and(|n| n.starts_with(b"counter\0")))?;
    let data = find(counter, msg::EXPR_DATA)?;
    let u64_of = |want| Some(u64::from_be_bytes(find(data, want)?.get(..8)?.try_into().ok()?));
    Some((u64_of(msg::COUNTER_PACKETS)?, u64_of(msg::COUNTER_BYTES)?))
}

impl Netlink {
    /// nf_tables over NETLINK_NETFILTER (for [`Netlink::set_elem_counter`]).
    pub fn open_netfilter() -> Result<Self, Error> {
        Ok(Netlink { fd: sys::netlink(libc::NETLINK_NETFILTER, 0, false)?, seq: 1, buf: vec![0; 1 << 16] })
    }

    /// The counter (packets, bytes) of one element of an nftables set whose elements
    /// carry counters; `None` when the set has no such element. `key` is the element's
    /// key as the kernel stores it (concatenations: each part padded to 4 octets).
    pub fn set_elem_counter(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<Option<(u64, u64)>, Error> {
        let cstr = |s: &str| [s.as_bytes(), &[0]].concat();
        let mut value = Vec::new();
        push_attr(&mut value, msg::DATA_VALUE, key);
        let mut elem = Vec::new();
        push_attr(&mut elem, msg::SET_ELEM_KEY | NLA_F_NESTED, &value);
        let mut list = Vec::new();
        push_attr(&mut list, msg::LIST_ELEM | NLA_F_NESTED, &elem);
        // struct nfgenmsg { family, version, res_id (be16) }
        let mut body = vec![family, 0, 0, 0];
        push_attr(&mut body, msg::SET_ELEM_LIST_TABLE, &cstr(table));
        push_attr(&mut body, msg::SET_ELEM_LIST_SET, &cstr(set));
        push_attr(&mut body, msg::SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
        let mut found = None;
        let ty = (msg::SUBSYS << 8) | msg::MSG_GETSETELEM;
        let got = self.exchange(ty, NLM_F_ACK, &body, |mty, payload| {
            if mty == (msg::SUBSYS << 8) | msg::MSG_NEWSETELEM {
                found = payload.get(4..).and_then(elem_counter);
            }
        });
        match got {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(found),
        }
    }
}
