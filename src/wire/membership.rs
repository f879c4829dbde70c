//! From an Ethernet payload to what a host asked for: IGMPv1/2/3 and MLDv1/2 reports
//! and leaves normalised to group records, after the validation RFC 9776 and RFC 3810
//! ask of a router (checksums, TTL / hop limit 1, Router Alert).

use super::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::records::{Addr, RecordType};
use super::{igmp, ip, mld};
use serde::Serialize;
use std::net::IpAddr;

/// Named in snake_case alike in the status and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    IgmpV1,
    IgmpV2,
    IgmpV3,
    MldV1,
    MldV2,
}

/// One group record; v1/v2 reports are `IsEx {}` (join), v2 leaves and MLDv1 Done are
/// `ToIn {}` (leave), as RFC 9776 7.3.2 and RFC 3810 8.3.2 translate them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub record_type: RecordType,
    pub group: IpAddr,
    pub sources: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub version: Version,
    pub src: IpAddr,
    pub records: Vec<GroupRecord>,
}

/// Why a frame was not taken as a report. Each is counted, named in snake_case alike in
/// the status, the metrics and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drop {
    Malformed,
    BadIpChecksum,
    BadChecksum,
    /// TTL or hop limit other than 1.
    BadTtl,
    NoRouterAlert,
    /// A query from a host port: hosts do not ask.
    Query,
    /// An ICMPv6 message that is not MLD, or IPv6 without Hop-by-Hop.
    NotMld,
}

impl Drop {
    pub fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::BadIpChecksum => "bad_ip_checksum",
            Drop::BadChecksum => "bad_checksum",
            Drop::BadTtl => "bad_ttl",
            Drop::NoRouterAlert => "no_router_alert",
            Drop::Query => "query",
            Drop::NotMld => "not_mld",
        }
    }
}

pub fn decode(ethertype: u16, payload: &[u8]) -> Result<Report, Drop> {
    match ethertype {
        ETHERTYPE_IPV4 => decode_igmp(payload),
        ETHERTYPE_IPV6 => decode_mld(payload),
        _ => Err(Drop::Malformed),
    }
}

fn records<A: Addr + Into<IpAddr>>(rs: super::records::Records<'_, A>) -> Vec<GroupRecord> {
    rs.map(|r| GroupRecord {
        record_type: r.record_type,
        group: r.group.into(),
        sources: r.sources().map(Into::into).collect(),
    })
    .collect()
}

fn single(record_type: RecordType, group: IpAddr) -> Vec<GroupRecord> {
    vec![GroupRecord { record_type, group, sources: vec![] }]
}

fn decode_igmp(payload: &[u8]) -> Result<Report, Drop> {
    let (h, body) = ip::parse_ipv4(payload).map_err(|_| Drop::Malformed)?;
    if h.protocol != ip::PROTO_IGMP {
        return Err(Drop::Malformed);
    }
    if !h.checksum_ok {
        return Err(Drop::BadIpChecksum);
    }
    if !igmp::verify_checksum(body) {
        return Err(Drop::BadChecksum);
    }
    if h.ttl != 1 {
        return Err(Drop::BadTtl);
    }
    let msg = igmp::parse(body).map_err(|_| Drop::Malformed)?;
    // IGMPv1 hosts predate Router Alert (RFC 1112); v2 and v3 carry it.
    if !h.router_alert && !matches!(msg, igmp::Message::ReportV1 { .. }) {
        return Err(Drop::NoRouterAlert);
    }
    let src = IpAddr::V4(h.src);
    let (version, records) = match msg {
        igmp::Message::Query { .. } => return Err(Drop::Query),
        igmp::Message::ReportV1 { group } => (Version::IgmpV1, single(RecordType::IsEx, group.into())),
        igmp::Message::ReportV2 { group } => (Version::IgmpV2, single(RecordType::IsEx, group.into())),
        igmp::Message::LeaveV2 { group } => (Version::IgmpV2, single(RecordType::ToIn, group.into())),
        igmp::Message::ReportV3 { records: rs } => (Version::IgmpV3, records(rs)),
    };
    Ok(Report { version, src, records })
}

fn decode_mld(payload: &[u8]) -> Result<Report, Drop> {
    let (h, body) = ip::parse_ipv6(payload).map_err(|_| Drop::Malformed)?;
    if h.next_header != ip::PROTO_ICMPV6 {
        return Err(Drop::NotMld);
    }
    if !mld::verify_checksum(h.src, h.dst, body) {
        return Err(Drop::BadChecksum);
    }
    if h.hop_limit != 1 {
        return Err(Drop::BadTtl);
    }
    let msg = match mld::parse(body) {
        Ok(m) => m,
        Err(super::DecodeError::Unknown(_)) => return Err(Drop::NotMld),
        Err(_) => return Err(Drop::Malformed),
    };
    if !h.router_alert {
        return Err(Drop::NoRouterAlert);
    }
    let src = IpAddr::V6(h.src);
    let (version, records) = match msg {
        mld::Message::Query { .. } => return Err(Drop::Query),
        mld::Message::ReportV1 { group } => (Version::MldV1, single(RecordType::IsEx, group.into())),
        mld::Message::DoneV1 { group } => (Version::MldV1, single(RecordType::ToIn, group.into())),
        mld::Message::ReportV2 { records: rs } => (Version::MldV2, records(rs)),
    };
    Ok(Report { version, src, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::records::OwnedRecord;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v3(recs: &[OwnedRecord<Ipv4Addr>]) -> Vec<u8> {
        igmp::Repr::ReportV3 { records: recs }
            .to_ipv4(Ipv4Addr::new(192, 0, 2, 11), igmp::ALL_V3_ROUTERS, 0xc0)
            .unwrap()
    }

    #[test]
    fn igmp_validation() {
        let g = Ipv4Addr::new(239, 1, 1, 1);
        let good = v3(&[OwnedRecord { record_type: RecordType::ToEx, group: g, sources: vec![] }]);
        let r = decode(ETHERTYPE_IPV4, &good).unwrap();
        assert_eq!(r.version, Version::IgmpV3);
        assert_eq!(r.records, single(RecordType::ToEx, g.into()));
        let mut ttl = good.clone();
        ttl[8] = 2;
        assert_eq!(decode(ETHERTYPE_IPV4, &ttl), Err(Drop::BadIpChecksum), "TTL change breaks the IP checksum first");
        let mut body = good.clone();
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(decode(ETHERTYPE_IPV4, &body), Err(Drop::BadChecksum));
        let host = Ipv4Addr::new(192, 0, 2, 11);
        let leave = igmp::Repr::V2 { ty: igmp::LEAVE_V2, group: g }.to_ipv4(host, igmp::ALL_ROUTERS, 0).unwrap();
        assert_eq!(decode(ETHERTYPE_IPV4, &leave).unwrap().records, single(RecordType::ToIn, g.into()));
        let general =
            igmp::Repr::QueryV3 { max_resp_code: 100, group: Ipv4Addr::UNSPECIFIED, qrv: 2, qqic: 125, sources: &[] };
        let query = general.to_ipv4(host, igmp::ALL_SYSTEMS, 0).unwrap();
        assert_eq!(decode(ETHERTYPE_IPV4, &query), Err(Drop::Query));
        for n in 0..good.len() {
            let _ = decode(ETHERTYPE_IPV4, &good[..n]);
        }
    }

    #[test]
    fn mld_validation() {
        let src: Ipv6Addr = "fe80::11".parse().unwrap();
        let g: Ipv6Addr = "ff3e::8000:1".parse().unwrap();
        let records = [OwnedRecord { record_type: RecordType::ToEx, group: g, sources: vec![] }];
        let pkt = mld::Repr::ReportV2 { records: &records }.to_ipv6(src, mld::ALL_V2_ROUTERS).unwrap();
        let r = decode(ETHERTYPE_IPV6, &pkt).unwrap();
        assert_eq!(r.version, Version::MldV2);
        assert_eq!(r.records, single(RecordType::ToEx, g.into()));
        let mut hl = pkt.clone();
        hl[7] = 255;
        assert_eq!(decode(ETHERTYPE_IPV6, &hl), Err(Drop::BadTtl));
        let mut ra = pkt.clone();
        ra[42] = 1; // the option type: PadN instead of Router Alert
        assert_eq!(decode(ETHERTYPE_IPV6, &ra), Err(Drop::NoRouterAlert));
        for n in 0..pkt.len() {
            let _ = decode(ETHERTYPE_IPV6, &pkt[..n]);
        }
    }

    /// Records as a host may send them: any of the six types, any group, up to 8 sources.
    fn records<A: std::fmt::Debug + Clone>(
        addr: impl proptest::strategy::Strategy<Value = A> + Clone,
    ) -> impl proptest::strategy::Strategy<Value = Vec<(u8, A, Vec<A>)>> {
        proptest::collection::vec((1u8..=6, addr.clone(), proptest::collection::vec(addr, 0..8)), 0..12)
    }

    use proptest::strategy::Strategy as _;

    type Sent<A> = Vec<(u8, A, Vec<A>)>;

    /// The records to emit, and what they must decode to.
    fn owned<A: crate::wire::records::Addr + Copy>(recs: &Sent<A>) -> Vec<OwnedRecord<A>> {
        recs.iter().map(|(t, g, s)| OwnedRecord { record_type: (*t).into(), group: *g, sources: s.clone() }).collect()
    }

    /// `report`'s records next to those sent, both as (type, group, sources).
    fn decoded_and_sent<A: Into<IpAddr>>(report: &Report, recs: Sent<A>) -> (Sent<IpAddr>, Sent<IpAddr>) {
        let back = report.records.iter().map(|r| (r.record_type.into(), r.group, r.sources.clone())).collect();
        let sent = recs.into_iter().map(|(t, g, s)| (t, g.into(), s.into_iter().map(Into::into).collect())).collect();
        (back, sent)
    }

    proptest::proptest! {
        /// What the IGMPv3 emitter writes (as an IPv4 packet with Router Alert and TTL 1)
        /// decodes to the same records, in order.
        #[test]
        fn igmpv3_reports_round_trip(recs in records(proptest::num::u32::ANY.prop_map(Ipv4Addr::from))) {
            let src = Ipv4Addr::new(192, 0, 2, 11);
            let records = owned(&recs);
            let packet = igmp::Repr::ReportV3 { records: &records }.to_ipv4(src, igmp::ALL_V3_ROUTERS, 0xc0).unwrap();
            let report = decode(ETHERTYPE_IPV4, &packet).unwrap();
            proptest::prop_assert_eq!(report.version, Version::IgmpV3);
            let (back, sent) = decoded_and_sent(&report, recs);
            proptest::prop_assert_eq!(back, sent);
        }

        /// The same for MLDv2 behind its Hop-by-Hop header.
        #[test]
        fn mldv2_reports_round_trip(recs in records(proptest::num::u128::ANY.prop_map(Ipv6Addr::from))) {
            let src: Ipv6Addr = "fe80::11".parse().unwrap();
            let records = owned(&recs);
            let packet = mld::Repr::ReportV2 { records: &records }.to_ipv6(src, mld::ALL_V2_ROUTERS).unwrap();
            let report = decode(ETHERTYPE_IPV6, &packet).unwrap();
            proptest::prop_assert_eq!(report.version, Version::MldV2);
            let (back, sent) = decoded_and_sent(&report, recs);
            proptest::prop_assert_eq!(back, sent);
        }
    }
}
