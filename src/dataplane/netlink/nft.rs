//! nf_tables over netlink (NETLINK_NETFILTER): one set element's counter, for the usage
//! counters of memberships, and one named counter's (the rules themselves are written by
//! `nft`).

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
    pub const MSG_NEWOBJ: u16 = 18;
    pub const MSG_GETOBJ: u16 = 19;
    pub const OBJ_TABLE: u16 = 1;
    pub const OBJ_NAME: u16 = 2;
    pub const OBJ_TYPE: u16 = 3;
    pub const OBJ_DATA: u16 = 4;
    pub const OBJECT_COUNTER: u32 = 1;
}

/// A name as nf_tables takes it: NUL-terminated.
fn cstr(s: &str) -> Vec<u8> {
    [s.as_bytes(), &[0]].concat()
}

/// (packets, bytes) of a counter's data: PACKETS and BYTES, big-endian u64s.
fn counter_of(data: &[u8]) -> Option<(u64, u64)> {
    let u64_of = |want| Some(u64::from_be_bytes(find(data, want)?.get(..8)?.try_into().ok()?));
    Some((u64_of(msg::COUNTER_PACKETS)?, u64_of(msg::COUNTER_BYTES)?))
}

/// The (packets, bytes) of a named counter in a NEWOBJ message's attributes (after the
/// nfgenmsg): DATA → PACKETS, BYTES.
pub(super) fn obj_counter(b: &[u8]) -> Option<(u64, u64)> {
    counter_of(find(b, msg::OBJ_DATA)?)
}

/// The (packets, bytes) of the counter of the element in a NEWSETELEM message's
/// attributes: ELEMENTS → LIST_ELEM → EXPR (one expression) or EXPRESSIONS → LIST_ELEM
/// (several) → NAME "counter", DATA → PACKETS, BYTES. nf_tables nests without
/// NLA_F_NESTED, so the path is followed by type.
pub(super) fn elem_counter(b: &[u8]) -> Option<(u64, u64)> {
    let elem = find(find(b, msg::SET_ELEM_LIST_ELEMENTS)?, msg::LIST_ELEM)?;
    let exprs: Vec<&[u8]> = match find(elem, msg::SET_ELEM_EXPR) {
        Some(one) => vec![one],
        None => attrs(find(elem, msg::SET_ELEM_EXPRESSIONS)?).map(|(_, v)| v).collect(),
    };
    let counter = exprs.into_iter().find(|e| find(e, msg::EXPR_NAME).is_some_and(|n| n.starts_with(b"counter\0")))?;
    counter_of(find(counter, msg::EXPR_DATA)?)
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
        let mut value = Vec::new();
        push_attr(&mut value, msg::DATA_VALUE, key);
        let mut elem = Vec::new();
        push_attr(&mut elem, msg::SET_ELEM_KEY | NLA_F_NESTED, &value);
        let mut list = Vec::new();
        push_attr(&mut list, msg::LIST_ELEM | NLA_F_NESTED, &elem);
        let mut attrs = Vec::new();
        push_attr(&mut attrs, msg::SET_ELEM_LIST_TABLE, &cstr(table));
        push_attr(&mut attrs, msg::SET_ELEM_LIST_SET, &cstr(set));
        push_attr(&mut attrs, msg::SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
        self.get_one(family, (msg::MSG_GETSETELEM, msg::MSG_NEWSETELEM), &attrs, elem_counter)
    }

    /// The (packets, bytes) of a named counter (`counter NAME { }` in `table`); `None`
    /// when the table has no such counter.
    pub fn obj_counter(&mut self, family: u8, table: &str, name: &str) -> Result<Option<(u64, u64)>, Error> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, msg::OBJ_TABLE, &cstr(table));
        push_attr(&mut attrs, msg::OBJ_NAME, &cstr(name));
        push_attr(&mut attrs, msg::OBJ_TYPE, &msg::OBJECT_COUNTER.to_be_bytes());
        self.get_one(family, (msg::MSG_GETOBJ, msg::MSG_NEWOBJ), &attrs, obj_counter)
    }

    /// One nf_tables GET request (`get`, for `family`, with `attrs`) answered by one `new`
    /// message, read by `read` (its attributes, after the nfgenmsg); `None` when the
    /// kernel has no such thing.
    fn get_one<T>(
        &mut self,
        family: u8,
        (get, new): (u16, u16),
        attrs: &[u8],
        read: fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        // struct nfgenmsg { family, version, res_id (be16) }
        let body = [&[family, 0, 0, 0], attrs].concat();
        let mut found = None;
        let got = self.exchange((msg::SUBSYS << 8) | get, NLM_F_ACK, &body, |mty, payload| {
            if mty == (msg::SUBSYS << 8) | new {
                found = payload.get(4..).and_then(read);
            }
        });
        match got {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(found),
        }
    }
}
