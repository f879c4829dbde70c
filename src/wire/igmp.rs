//! IGMP messages: v1 (RFC 1112), v2 (RFC 2236), v3 (RFC 9776).
//!
//! ```text
//! v1/v2:  | Type | Max Resp Time | Checksum | Group Address |
//! v3 query (4.1):  | 0x11 | Max Resp Code | Checksum | Group Address |
//!                  | Resv|S|QRV | QQIC | Number of Sources (N) | Source Address [N] |
//! v3 report (4.2): | 0x22 | Reserved | Checksum | Reserved | Number of Group Records (M) |
//!                  | Group Record [M] |
//! ```

use super::ip::checksum;
use super::records::{emit_records, OwnedRecord, Records};
use super::{be16, DecodeError};
use std::net::Ipv4Addr;

pub const QUERY: u8 = 0x11;
pub const REPORT_V1: u8 = 0x12;
pub const REPORT_V2: u8 = 0x16;
pub const LEAVE_V2: u8 = 0x17;
pub const REPORT_V3: u8 = 0x22;

/// All IGMPv3-capable routers (RFC 9776 4.2.14).
pub const ALL_V3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A query; `sources` is empty for v1/v2 and group-specific v3 queries.
    Query {
        max_resp_code: u8,
        group: Ipv4Addr,
        v3: Option<V3Query<'a>>,
    },
    ReportV1 {
        group: Ipv4Addr,
    },
    ReportV2 {
        group: Ipv4Addr,
    },
    LeaveV2 {
        group: Ipv4Addr,
    },
    ReportV3 {
        records: Records<'a, Ipv4Addr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V3Query<'a> {
    pub suppress: bool,
    pub qrv: u8,
    pub qqic: u8,
    sources: &'a [u8],
}

impl<'a> V3Query<'a> {
    pub fn sources(&self) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.sources.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
    }
}

/// Parses an IGMP message (the IP payload). The checksum is checked separately by
/// [`verify_checksum`].
pub fn parse(b: &[u8]) -> Result<Message<'_>, DecodeError> {
    if b.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let group = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
    Ok(match b[0] {
        QUERY if b.len() == 8 => Message::Query { max_resp_code: b[1], group, v3: None },
        QUERY => {
            if b.len() < 12 {
                return Err(DecodeError::Truncated);
            }
            let n = be16(b, 10..12) as usize;
            if 12 + 4 * n > b.len() {
                return Err(DecodeError::BadLength { field: n, available: b.len() - 12 });
            }
            let v3 = V3Query { suppress: b[8] & 0x08 != 0, qrv: b[8] & 0x07, qqic: b[9], sources: &b[12..12 + 4 * n] };
            Message::Query { max_resp_code: b[1], group, v3: Some(v3) }
        }
        REPORT_V1 => Message::ReportV1 { group },
        REPORT_V2 => Message::ReportV2 { group },
        LEAVE_V2 => Message::LeaveV2 { group },
        REPORT_V3 => {
            let m = be16(b, 6..8) as usize;
            Message::ReportV3 { records: Records::new_checked(&b[8..], m)? }
        }
        other => return Err(DecodeError::Unknown(other)),
    })
}

pub fn verify_checksum(b: &[u8]) -> bool {
    checksum(b) == 0
}

fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An IGMPv3 report with `records`.
pub fn emit_report_v3(records: &[OwnedRecord<Ipv4Addr>]) -> Vec<u8> {
    let mut m = vec![REPORT_V3, 0, 0, 0, 0, 0];
    m.extend_from_slice(&(records.len() as u16).to_be_bytes());
    emit_records(records, &mut m);
    finish(m)
}

/// An IGMPv2 message (report or leave) for `group`.
pub fn emit_v2(ty: u8, group: Ipv4Addr) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&group.octets());
    finish(m)
}

/// An IGMPv3 query (general when `group` is unspecified).
pub fn emit_query_v3(max_resp_code: u8, group: Ipv4Addr, qrv: u8, qqic: u8, sources: &[Ipv4Addr]) -> Vec<u8> {
    let mut m = vec![QUERY, max_resp_code, 0, 0];
    m.extend_from_slice(&group.octets());
    m.push(qrv & 7);
    m.push(qqic);
    m.extend_from_slice(&(sources.len() as u16).to_be_bytes());
    for s in sources {
        m.extend_from_slice(&s.octets());
    }
    finish(m)
}

/// Max Resp Code / QQIC floating-point decoding (RFC 9776 4.1.1, 4.1.7), in units of
/// the code (tenths of a second for Max Resp Code, seconds for QQIC).
pub fn decode_code(code: u8) -> u32 {
    if code < 128 {
        code as u32
    } else {
        let exp = (code >> 4) & 0x7;
        let mant = code & 0x0f;
        ((mant as u32) | 0x10) << (exp + 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::records::RecordType;

    #[test]
    fn every_max_resp_code_decodes_monotonically() {
        let mut last = 0;
        for c in 0..=255u8 {
            let v = decode_code(c);
            assert!(v >= last, "{c}: {v} < {last}");
            last = v;
        }
        assert_eq!(decode_code(127), 127);
        assert_eq!(decode_code(128), 128);
        assert_eq!(decode_code(255), 31744);
    }

    #[test]
    fn v3_report_round_trip() {
        let recs = vec![
            OwnedRecord { record_type: RecordType::ToEx, group: Ipv4Addr::new(239, 1, 1, 1), sources: vec![] },
            OwnedRecord {
                record_type: RecordType::Allow,
                group: Ipv4Addr::new(232, 1, 1, 1),
                sources: vec![Ipv4Addr::new(192, 0, 2, 254), Ipv4Addr::new(192, 0, 2, 253)],
            },
        ];
        let m = emit_report_v3(&recs);
        assert!(verify_checksum(&m));
        let Message::ReportV3 { records } = parse(&m).unwrap() else { panic!() };
        let back: Vec<OwnedRecord<Ipv4Addr>> = records
            .map(|r| OwnedRecord { record_type: r.record_type, group: r.group, sources: r.sources().collect() })
            .collect();
        assert_eq!(back, recs);
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
        // a record count larger than what follows
        let mut bad = m.clone();
        bad[7] = 3;
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn v2_and_queries() {
        let g = Ipv4Addr::new(239, 1, 1, 1);
        assert_eq!(parse(&emit_v2(LEAVE_V2, g)).unwrap(), Message::LeaveV2 { group: g });
        let q = emit_query_v3(100, g, 2, 125, &[]);
        assert!(verify_checksum(&q));
        match parse(&q).unwrap() {
            Message::Query { max_resp_code: 100, group, v3: Some(v3) } => {
                assert_eq!(group, g);
                assert_eq!((v3.qrv, v3.qqic, v3.sources().count()), (2, 125, 0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&[0x99, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(), DecodeError::Unknown(0x99));
    }
}
