//! Frames and packets captured from real peers (tests/data/README.md): each is parsed,
//! re-emitted and compared byte for byte; every RADIUS authenticator is verified.

use mcgate::radius::{self, attr, find_attr, hmac_md5, verify_reply};
use mcgate::wire::{eap, eapol, ethernet};

const SECRET: &[u8] = b"testing123";

/// Frames of a classic little-endian pcap file with Ethernet link type.
fn pcap(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        &b[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        1,
        "LINKTYPE_ETHERNET"
    );
    let mut out = vec![];
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(b[at + 16..at + 16 + caplen].to_vec());
        at += 16 + caplen;
    }
    out
}

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
    (
        r.packet_type,
        Some((er.code, er.method.map(|m| m.type_code()))),
    )
}

#[test]
fn wpa_supplicant_md5_login_round_trips() {
    use eap::Code::*;
    use eapol::PacketType::*;
    let seen: Vec<_> = pcap("eapol-md5.pcap")
        .iter()
        .map(|f| round_trip_eapol(f))
        .collect();
    // group Request/Identity on link-up (repeated), then the supplicant's exchange
    let exchange: Vec<_> = seen
        .into_iter()
        .skip_while(|s| *s != (Start, None))
        .collect();
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
    let seen: Vec<_> = pcap("eapol-peap.pcap")
        .iter()
        .map(|f| round_trip_eapol(f))
        .collect();
    let peap = seen
        .iter()
        .filter(|s| matches!(s.1, Some((_, Some(25)))))
        .count();
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
    let requests: Vec<&Vec<u8>> = packets
        .iter()
        .filter(|(dport, _)| *dport == 1812)
        .map(|(_, p)| p)
        .collect();
    let replies: Vec<&Vec<u8>> = packets
        .iter()
        .filter(|(dport, _)| *dport != 1812)
        .map(|(_, p)| p)
        .collect();
    assert!(
        requests.len() >= 10 && replies.len() == requests.len(),
        "{} / {}",
        requests.len(),
        replies.len()
    );
    let mut accepts = 0;
    for req in &requests {
        assert_eq!(req[0], 1, "Access-Request");
        // Message-Authenticator over the request as sent, with the attribute zeroed
        let at = find_attr(req, attr::MESSAGE_AUTHENTICATOR).expect("request signed");
        let mut zeroed = req.to_vec();
        zeroed[at..at + 16].fill(0);
        assert_eq!(&req[at..at + 16], &hmac_md5(SECRET, &[&zeroed]));
        let reply = replies
            .iter()
            .find(|r| r[1] == req[1])
            .expect("a reply per request");
        let ra: [u8; 16] = req[4..20].try_into().unwrap();
        verify_reply(reply, &ra, SECRET).expect("FreeRADIUS reply verifies");
        assert!(verify_reply(reply, &ra, b"testing124").is_err());
        let p = radius::Packet::decode(reply, SECRET).unwrap();
        if p.get_code() == radius::Code::AccessAccept {
            accepts += 1;
        }
    }
    assert_eq!(accepts, 2, "alice (MD5) and bob (PEAP)");
}
