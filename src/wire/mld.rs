//! MLD messages (ICMPv6): v1 (RFC 2710), v2 (RFC 3810). Always behind an IPv6
//! Hop-by-Hop header with Router Alert; the checksum covers the IPv6 pseudo-header.
//!
//! ```text
//! v1 (3):  | Type | Code | Checksum | Maximum Response Delay | Reserved | Multicast Address (16) |
//! v2 query (5.1):  | 130 | Code | Checksum | Max Resp Code | Reserved | Multicast Address |
//!                  | Resv|S|QRV | QQIC | Number of Sources (N) | Source Address [N] |
//! v2 report (5.2): | 143 | Reserved | Checksum | Reserved | Nr of Mcast Address Records (M) |
//!                  | Multicast Address Record [M] |
//! ```

use super::ip::{icmpv6_checksum, Ipv6MldRepr};
use super::records::{emit_records, records_len, OwnedRecord, Records};
use super::{be16, room, u16_field, DecodeError, EncodeError};
use std::net::Ipv6Addr;

pub const QUERY: u8 = 130;
pub const REPORT_V1: u8 = 131;
pub const DONE_V1: u8 = 132;
pub const REPORT_V2: u8 = 143;

/// All MLDv2-capable routers (RFC 3810 5.2.14).
pub const ALL_V2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Query { max_resp_code: u16, group: Ipv6Addr, v2: bool },
    ReportV1 { group: Ipv6Addr },
    DoneV1 { group: Ipv6Addr },
    ReportV2 { records: Records<'a, Ipv6Addr> },
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    o.into()
}

/// Parses an MLD message (the ICMPv6 message). Other ICMPv6 types are `Unknown`.
pub fn parse(b: &[u8]) -> Result<Message<'_>, DecodeError> {
    if b.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let needs_addr = || {
        if b.len() < 24 {
            Err(DecodeError::Truncated)
        } else {
            Ok(addr(&b[8..24]))
        }
    };
    Ok(match b[0] {
        QUERY => {
            let group = needs_addr()?;
            if b.len() >= 28 {
                let n = be16(b, 26..28) as usize;
                if 28 + 16 * n > b.len() {
                    return Err(DecodeError::BadLength { field: n, available: b.len() - 28 });
                }
            }
            Message::Query { max_resp_code: be16(b, 4..6), group, v2: b.len() >= 28 }
        }
        REPORT_V1 => Message::ReportV1 { group: needs_addr()? },
        DONE_V1 => Message::DoneV1 { group: needs_addr()? },
        REPORT_V2 => {
            let m = be16(b, 6..8) as usize;
            Message::ReportV2 { records: Records::new_checked(&b[8..], m)? }
        }
        other => return Err(DecodeError::Unknown(other)),
    })
}

pub fn verify_checksum(src: Ipv6Addr, dst: Ipv6Addr, b: &[u8]) -> bool {
    icmpv6_checksum(src, dst, b) == 0
}

/// An MLD message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// An MLDv2 report (to `ALL_V2_ROUTERS`).
    ReportV2 { records: &'a [OwnedRecord<Ipv6Addr>] },
    /// An MLDv2 multicast-address-specific query; Maximum Response Code in milliseconds.
    QueryV2 { max_resp_code: u16, group: Ipv6Addr, qrv: u8, qqic: u8 },
}

impl Repr<'_> {
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::ReportV2 { records } => 8 + records_len(records),
            Repr::QueryV2 { .. } => 28,
        }
    }

    /// Writes the message into `buf[..buffer_len()]`, its checksum over the pseudo-header
    /// of `src` → `dst`.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<(), EncodeError> {
        let b = room(buf, self.buffer_len())?;
        b.fill(0);
        match *self {
            Repr::ReportV2 { records } => {
                b[0] = REPORT_V2;
                b[6..8].copy_from_slice(&u16_field("address records of a report", records.len())?);
                emit_records(records, &mut b[8..])?;
            }
            Repr::QueryV2 { max_resp_code, group, qrv, qqic } => {
                b[0] = QUERY;
                b[4..6].copy_from_slice(&max_resp_code.to_be_bytes());
                b[8..24].copy_from_slice(&group.octets());
                b[24] = qrv & 7;
                b[25] = qqic;
            }
        }
        let c = icmpv6_checksum(src, dst, b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }

    /// The message in an IPv6 packet from `src` to `dst` (hop limit 1, Hop-by-Hop
    /// header with Router Alert).
    pub fn to_ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Vec<u8>, EncodeError> {
        let ip = Ipv6MldRepr { src, dst, payload_len: self.buffer_len() };
        let mut packet = vec![0; ip.buffer_len()];
        let (header, payload) = packet.split_at_mut(Ipv6MldRepr::HEADER_LEN);
        ip.emit(header)?;
        self.emit(src, dst, payload)?;
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::records::RecordType;

    #[test]
    fn v2_report_round_trip_with_checksum() {
        let src: Ipv6Addr = "fe80::200:ff:fe00:11".parse().unwrap();
        let recs = vec![OwnedRecord {
            record_type: RecordType::IsIn,
            group: "ff3e::8000:1".parse().unwrap(),
            sources: vec!["2001:db8::1".parse().unwrap()],
        }];
        let m = Repr::ReportV2 { records: &recs }.to_ipv6(src, ALL_V2_ROUTERS).unwrap()[48..].to_vec();
        assert!(verify_checksum(src, ALL_V2_ROUTERS, &m));
        assert!(!verify_checksum(src, "ff02::1".parse().unwrap(), &m));
        let Message::ReportV2 { records } = parse(&m).unwrap() else { panic!() };
        let r: Vec<_> = records.collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].group, recs[0].group);
        assert_eq!(r[0].sources().collect::<Vec<_>>(), recs[0].sources);
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
    }

    #[test]
    fn query() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let g: Ipv6Addr = "ff3e::1".parse().unwrap();
        let q =
            Repr::QueryV2 { max_resp_code: 1000, group: g, qrv: 2, qqic: 125 }.to_ipv6(src, g).unwrap()[48..].to_vec();
        assert!(verify_checksum(src, g, &q));
        assert_eq!(parse(&q).unwrap(), Message::Query { max_resp_code: 1000, group: g, v2: true });
    }
}
