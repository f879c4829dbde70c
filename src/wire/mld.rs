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

use super::ip::icmpv6_checksum;
use super::records::{emit_records, OwnedRecord, Records};
use super::{be16, DecodeError};
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

fn finish(src: Ipv6Addr, dst: Ipv6Addr, mut m: Vec<u8>) -> Vec<u8> {
    let c = icmpv6_checksum(src, dst, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An MLDv2 report from `src` to ff02::16.
pub fn emit_report_v2(src: Ipv6Addr, records: &[OwnedRecord<Ipv6Addr>]) -> Vec<u8> {
    let mut m = vec![REPORT_V2, 0, 0, 0, 0, 0];
    m.extend_from_slice(&(records.len() as u16).to_be_bytes());
    emit_records(records, &mut m);
    finish(src, ALL_V2_ROUTERS, m)
}

/// An MLDv2 multicast-address-specific query.
pub fn emit_query_v2(src: Ipv6Addr, dst: Ipv6Addr, max_resp_code: u16, group: Ipv6Addr, qrv: u8, qqic: u8) -> Vec<u8> {
    let mut m = vec![QUERY, 0, 0, 0];
    m.extend_from_slice(&max_resp_code.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.octets());
    m.extend_from_slice(&[qrv & 7, qqic, 0, 0]);
    finish(src, dst, m)
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
        let m = emit_report_v2(src, &recs);
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
        let q = emit_query_v2(src, g, 1000, g, 2, 125);
        assert!(verify_checksum(src, g, &q));
        assert_eq!(parse(&q).unwrap(), Message::Query { max_resp_code: 1000, group: g, v2: true });
    }
}
