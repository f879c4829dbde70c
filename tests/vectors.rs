//! Frames and packets captured from real peers (tests/data/README.md): each is parsed,
//! re-emitted and compared byte for byte; every RADIUS authenticator is verified.

mod common;

use common::pcap;
use mcgate::radius::{self, attr, find_attr, hmac_md5, verify_reply};
use mcgate::wire::{eap, eapol, ethernet};

const SECRET: &[u8] = b"testing123";

/// Parses an EAPOL frame and re-emits it; returns (type, EAP code, EAP method type).
fn round_trip_eapol(frame: &[u8]) -> (eapol::PacketType, Option<(eap::Code, Option<u8>)>) {
    let f = ethernet::Frame::new_checked(frame).unwrap();
    assert_eq!(f.ethertype(), ethernet::ETHERTYPE_EAPOL);
    let p = eapol::Packet::new_checked(f.payload()).unwrap();
    let r = eapol::Repr::parse(&p);
    assert_eq!(r.to_vec(), &f.payload()[..r.buffer_len()]);
    if r.packet_type != eapol::PacketType::EapPacket {
        return (r.packet_type, None);
    }
    let e = eap::Packet::new_checked(r.body).unwrap();
    let er = eap::Repr::parse(&e).unwrap();
    let mut buf = vec![0xa5; er.buffer_len()];
    er.emit(&mut buf);
    assert_eq!(buf, e.as_bytes(), "EAP re-emitted differs");
    (r.packet_type, Some((er.code, er.method.map(|m| m.type_code()))))
}

#[test]
fn wpa_supplicant_md5_login_round_trips() {
    use eap::Code::*;
    use eapol::PacketType::*;
    let seen: Vec<_> = pcap("eapol-md5.pcap").iter().map(|f| round_trip_eapol(f)).collect();
    // group Request/Identity on link-up (repeated), then the supplicant's exchange
    let exchange: Vec<_> = seen.into_iter().skip_while(|s| *s != (Start, None)).collect();
    assert_eq!(
        exchange,
        vec![
            (Start, None),
            (EapPacket, Some((Request, Some(1)))),
            (EapPacket, Some((Response, Some(1)))),
            (EapPacket, Some((Request, Some(4)))),
            (EapPacket, Some((Response, Some(4)))),
            (EapPacket, Some((Success, None))),
            (Logoff, None),
        ]
    );
}

#[test]
fn wpa_supplicant_peap_login_round_trips() {
    let seen: Vec<_> = pcap("eapol-peap.pcap").iter().map(|f| round_trip_eapol(f)).collect();
    let peap = seen.iter().filter(|s| matches!(s.1, Some((_, Some(25))))).count();
    assert!(peap >= 8, "PEAP frames: {peap}");
    assert!(seen.iter().any(|s| s.1 == Some((eap::Code::Success, None))));
}

#[test]
fn freeradius_replies_verify_and_mcgate_requests_are_signed() {
    // (Ethernet 14 + IPv4 20 + UDP 8) on loopback
    let packets: Vec<(u16, Vec<u8>)> = pcap("radius-md5-peap.pcap")
        .into_iter()
        .map(|f| (u16::from_be_bytes([f[36], f[37]]), f[42..].to_vec()))
        .collect();
    let requests: Vec<&Vec<u8>> = packets.iter().filter(|(dport, _)| *dport == 1812).map(|(_, p)| p).collect();
    let replies: Vec<&Vec<u8>> = packets.iter().filter(|(dport, _)| *dport != 1812).map(|(_, p)| p).collect();
    assert!(requests.len() >= 10 && replies.len() == requests.len(), "{} / {}", requests.len(), replies.len());
    let mut accepts = 0;
    for req in &requests {
        assert_eq!(req[0], 1, "Access-Request");
        // Message-Authenticator over the request as sent, with the attribute zeroed
        let at = find_attr(req, attr::MESSAGE_AUTHENTICATOR).expect("request signed");
        let mut zeroed = req.to_vec();
        zeroed[at..at + 16].fill(0);
        assert_eq!(&req[at..at + 16], &hmac_md5(SECRET, &[&zeroed]));
        let reply = replies.iter().find(|r| r[1] == req[1]).expect("a reply per request");
        let ra: [u8; 16] = req[4..20].try_into().unwrap();
        verify_reply(reply, &ra, SECRET).expect("FreeRADIUS reply verifies");
        assert!(verify_reply(reply, &ra, b"testing124").is_err());
        let p = radius::Packet::decode(reply).unwrap();
        if p.code() == radius::Code::AccessAccept {
            accepts += 1;
        }
    }
    assert_eq!(accepts, 2, "alice (MD5) and bob (PEAP)");
}

mod kernel_joins {
    use super::pcap;
    use mcgate::wire::ethernet::Frame;
    use mcgate::wire::membership::{decode, GroupRecord, Version};
    use mcgate::wire::records::{OwnedRecord, RecordType};
    use mcgate::wire::{igmp, ip, mld};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// (version, records) of each frame, and each frame re-emitted byte for byte.
    fn reports(name: &str) -> Vec<(Version, Vec<GroupRecord>)> {
        pcap(name)
            .iter()
            .map(|f| {
                let frame = Frame::new_checked(&f[..]).unwrap();
                let r = decode(frame.ethertype(), frame.payload()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(reemit(&r.version, r.src, frame.payload()), frame.payload(), "{name}: re-emitted differs");
                (r.version, r.records)
            })
            .collect()
    }

    fn reemit(version: &Version, src: IpAddr, payload: &[u8]) -> Vec<u8> {
        match (version, src) {
            (Version::IgmpV3, IpAddr::V4(s)) => {
                let (h, body) = ip::parse_ipv4(payload).unwrap();
                let igmp::Message::ReportV3 { records } = igmp::parse(body).unwrap() else { panic!() };
                let owned: Vec<OwnedRecord<Ipv4Addr>> = records
                    .map(|r| OwnedRecord { record_type: r.record_type, group: r.group, sources: r.sources().collect() })
                    .collect();
                igmp::Repr::ReportV3 { records: &owned }.to_ipv4(s, h.dst, payload[1]).unwrap()
            }
            (Version::IgmpV1 | Version::IgmpV2, IpAddr::V4(s)) => {
                let (h, body) = ip::parse_ipv4(payload).unwrap();
                let group = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
                igmp::Repr::V2 { ty: body[0], group }.to_ipv4(s, h.dst, payload[1]).unwrap()
            }
            (Version::MldV2, IpAddr::V6(s)) => {
                let (_, body) = ip::parse_ipv6(payload).unwrap();
                let mld::Message::ReportV2 { records } = mld::parse(body).unwrap() else { panic!() };
                let owned: Vec<OwnedRecord<Ipv6Addr>> = records
                    .map(|r| OwnedRecord { record_type: r.record_type, group: r.group, sources: r.sources().collect() })
                    .collect();
                mld::Repr::ReportV2 { records: &owned }.to_ipv6(s, mld::ALL_V2_ROUTERS).unwrap()
            }
            // MLDv1 is decoded but never emitted by mcgate
            _ => payload.to_vec(),
        }
    }

    fn r(ty: RecordType, g: &str, s: &[&str]) -> GroupRecord {
        GroupRecord {
            record_type: ty,
            group: g.parse().unwrap(),
            sources: s.iter().map(|x| x.parse().unwrap()).collect(),
        }
    }

    fn types(v: &[(Version, Vec<GroupRecord>)]) -> Vec<RecordType> {
        v.iter().map(|(_, rs)| rs[0].record_type).collect()
    }

    #[test]
    fn igmpv3_any_source_join_and_leave() {
        let v = reports("igmpv3-asm.pcap");
        assert!(v.iter().all(|(ver, _)| *ver == Version::IgmpV3));
        assert_eq!(v[0].1, [r(RecordType::ToEx, "239.1.1.1", &[])]);
        assert_eq!(types(&v), [RecordType::ToEx, RecordType::ToEx, RecordType::ToIn, RecordType::ToIn]);
    }

    #[test]
    fn igmpv3_source_specific_join_and_leave() {
        let v = reports("igmpv3-ssm.pcap");
        assert_eq!(v[0].1, [r(RecordType::Allow, "232.1.1.1", &["192.0.2.254"])]);
        assert_eq!(v[2].1, [r(RecordType::Block, "232.1.1.1", &["192.0.2.254"])]);
    }

    #[test]
    fn igmpv2_and_v1() {
        let v = reports("igmpv2.pcap");
        assert_eq!(
            v,
            [
                (Version::IgmpV2, vec![r(RecordType::IsEx, "239.1.1.2", &[])]),
                (Version::IgmpV2, vec![r(RecordType::ToIn, "239.1.1.2", &[])]),
            ]
        );
        assert_eq!(reports("igmpv1.pcap"), [(Version::IgmpV1, vec![r(RecordType::IsEx, "239.1.1.3", &[])])]);
    }

    #[test]
    fn mld_versions() {
        let v = reports("mldv2-asm.pcap");
        assert_eq!(v[0], (Version::MldV2, vec![r(RecordType::ToEx, "ff3e::8000:1", &[])]));
        assert_eq!(types(&v), [RecordType::ToEx, RecordType::ToEx, RecordType::ToIn, RecordType::ToIn]);
        let v = reports("mldv2-ssm.pcap");
        assert_eq!(v[0].1, [r(RecordType::Allow, "ff3e::8000:2", &["2001:db8::254"])]);
        assert_eq!(v.last().unwrap().1, [r(RecordType::Block, "ff3e::8000:2", &["2001:db8::254"])]);
        let v = reports("mldv1.pcap");
        assert_eq!(
            v,
            [
                (Version::MldV1, vec![r(RecordType::IsEx, "ff3e::8000:3", &[])]),
                (Version::MldV1, vec![r(RecordType::ToIn, "ff3e::8000:3", &[])]),
            ]
        );
    }

    #[test]
    fn every_single_bit_flip_in_a_checksummed_part_is_refused() {
        // IGMP: the IP header checksum and the IGMP checksum between them cover every octet.
        for name in ["igmpv3-ssm.pcap", "igmpv2.pcap"] {
            let f = &pcap(name)[0];
            let frame = Frame::new_checked(&f[..]).unwrap();
            let p = frame.payload().to_vec();
            for i in 0..p.len() * 8 {
                let mut bad = p.clone();
                bad[i / 8] ^= 1 << (i % 8);
                assert!(decode(frame.ethertype(), &bad).is_err(), "{name}: flip of bit {i} accepted");
            }
        }
        // MLD: the ICMPv6 checksum covers the message and the addresses (pseudo-header);
        // the hop limit and Router Alert are checked; the traffic class, flow label and
        // the Hop-by-Hop padding are covered by nothing (RFC 8200), so flips there pass.
        let f = &pcap("mldv2-ssm.pcap")[0];
        let frame = Frame::new_checked(&f[..]).unwrap();
        let p = frame.payload().to_vec();
        let covered = (7..40).chain(40..46).chain(48..p.len());
        for byte in covered {
            for bit in 0..8 {
                let mut bad = p.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode(frame.ethertype(), &bad).is_err(), "MLD: flip in octet {byte} bit {bit} accepted");
            }
        }
    }
}
