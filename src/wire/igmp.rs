//! IGMP messages: v1 (RFC 1112), v2 (RFC 2236), v3 (RFC 9776).
//!
//! ```text
//! v1/v2:  | Type | Max Resp Time | Checksum | Group Address |
//! v3 query (4.1):  | 0x11 | Max Resp Code | Checksum | Group Address |
//!                  | Resv|S|QRV | QQIC | Number of Sources (N) | Source Address [N] |
//! v3 report (4.2): | 0x22 | Reserved | Checksum | Reserved | Number of Group Records (M) |
//!                  | Group Record [M] |
//! ```

use super::ip::{checksum, Ipv4Repr, PROTO_IGMP};
use super::records::{emit_records, records_len, OwnedRecord, Records};
use super::{be16, room, u16_field, DecodeError, EncodeError};
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

/// An IGMP message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    ReportV3 {
        records: &'a [OwnedRecord<Ipv4Addr>],
    },
    /// A v2 report or leave (`REPORT_V2`, `LEAVE_V2`) for `group`.
    V2 {
        ty: u8,
        group: Ipv4Addr,
    },
    /// A v3 query: general when `group` is unspecified.
    QueryV3 {
        max_resp_code: u8,
        group: Ipv4Addr,
        qrv: u8,
        qqic: u8,
        sources: &'a [Ipv4Addr],
    },
}

impl Repr<'_> {
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::ReportV3 { records } => 8 + records_len(records),
            Repr::V2 { .. } => 8,
            Repr::QueryV3 { sources, .. } => 12 + 4 * sources.len(),
        }
    }

    /// Writes the message, checksum included, into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), EncodeError> {
        let b = room(buf, self.buffer_len())?;
        b.fill(0);
        match *self {
            Repr::ReportV3 { records } => {
                b[0] = REPORT_V3;
                b[6..8].copy_from_slice(&u16_field("group records of a report", records.len())?);
                emit_records(records, &mut b[8..])?;
            }
            Repr::V2 { ty, group } => {
                b[0] = ty;
                b[4..8].copy_from_slice(&group.octets());
            }
            Repr::QueryV3 { max_resp_code, group, qrv, qqic, sources } => {
                b[0] = QUERY;
                b[1] = max_resp_code;
                b[4..8].copy_from_slice(&group.octets());
                b[8] = qrv & 7;
                b[9] = qqic;
                b[10..12].copy_from_slice(&u16_field("sources of a query", sources.len())?);
                for (i, s) in sources.iter().enumerate() {
                    b[12 + 4 * i..16 + 4 * i].copy_from_slice(&s.octets());
                }
            }
        }
        let c = checksum(b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v)?;
        Ok(v)
    }

    /// The message in an IPv4 packet from `src` to `dst` (TTL 1, Router Alert).
    pub fn to_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, tos: u8) -> Result<Vec<u8>, EncodeError> {
        let ip = Ipv4Repr { src, dst, protocol: PROTO_IGMP, tos, payload_len: self.buffer_len() };
        let mut packet = vec![0; ip.buffer_len()];
        let (header, payload) = packet.split_at_mut(Ipv4Repr::HEADER_LEN);
        ip.emit(header)?;
        self.emit(payload)?;
        Ok(packet)
    }
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
        let m = Repr::ReportV3 { records: &recs }.to_vec().unwrap();
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
    fn counts_their_fields_cannot_hold_are_refused() {
        let g = Ipv4Addr::new(239, 1, 1, 1);
        let one = OwnedRecord { record_type: RecordType::ToEx, group: g, sources: vec![] };
        let many = vec![one.clone(); 65_536];
        let e = Repr::ReportV3 { records: &many }.to_vec().unwrap_err();
        assert_eq!(e, EncodeError::TooMany { what: "group records of a report", n: 65_536 });
        let wide = [OwnedRecord { sources: vec![g; 65_536], ..one }];
        assert!(matches!(Repr::ReportV3 { records: &wide }.to_vec(), Err(EncodeError::TooMany { n: 65_536, .. })));
        let sources = vec![g; 65_536];
        let query = Repr::QueryV3 { max_resp_code: 100, group: g, qrv: 2, qqic: 125, sources: &sources };
        assert!(matches!(query.to_vec(), Err(EncodeError::TooMany { what: "sources of a query", .. })));
        let leave = Repr::V2 { ty: LEAVE_V2, group: g };
        assert_eq!(leave.emit(&mut [0; 7]), Err(EncodeError::Buffer { need: 8, have: 7 }));
    }

    #[test]
    fn v2_and_queries() {
        let g = Ipv4Addr::new(239, 1, 1, 1);
        let leave = Repr::V2 { ty: LEAVE_V2, group: g }.to_vec().unwrap();
        assert_eq!(parse(&leave).unwrap(), Message::LeaveV2 { group: g });
        let q = Repr::QueryV3 { max_resp_code: 100, group: g, qrv: 2, qqic: 125, sources: &[] }.to_vec().unwrap();
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
