//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and their regression tests
//! (`tests/fuzz.rs`): one per decoder of untrusted input and one per state machine,
//! the latter driven by a byte string read as a sequence of inputs and clock steps.
//! Each panics only on a broken invariant; anything an attacker can send must simply
//! come back as an error, a drop or a state change.

use crate::auth::{self, Authenticator, PortConfig, PortMode};
use crate::mcast::{self, Host, RadiusAnswer, Tracker};
use crate::policy::{Entitlement, Package, Policy, Unknown};
use crate::radius::client::{self, Attr, Client, Request, Server};
use crate::radius::{self, das, Code, Packet};
use crate::wire::{eap, eapol, membership, MacAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads fuzz input as small integers and slices; runs dry as zeros.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn slice(&mut self, max: usize) -> &'a [u8] {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// EAPOL, and the EAP inside it: whatever decodes re-emits to the same octets.
pub fn eapol(data: &[u8]) {
    let Ok(p) = eapol::Packet::new_checked(data) else { return };
    let r = eapol::Repr::parse(&p);
    assert_eq!(r.to_vec(), &data[..r.buffer_len()], "EAPOL re-emitted differs");
    eap(r.body);
}

/// EAP: what decodes re-emits to something that decodes the same; a Request or
/// Response re-emits to the very octets (Success, Failure and unknown codes carry no
/// data, RFC 3748 4.2: whatever trails them is not kept).
pub fn eap(data: &[u8]) {
    let Ok(p) = eap::Packet::new_checked(data) else { return };
    let Ok(r) = eap::Repr::parse(&p) else { return };
    let again = r.to_vec();
    let p2 = eap::Packet::new_checked(&again[..]).expect("re-emitted EAP decodes");
    assert_eq!(eap::Repr::parse(&p2).expect("re-emitted EAP parses"), r);
    if matches!(r.code, eap::Code::Request | eap::Code::Response) {
        assert_eq!(again, p.as_bytes(), "EAP re-emitted differs");
    }
}

/// IGMP (first octet even) or MLD behind IPv6 (odd), as the capture hands them over.
pub fn membership(data: &[u8]) {
    let Some((first, payload)) = data.split_first() else { return };
    let ethertype = if first % 2 == 0 { 0x0800 } else { 0x86dd };
    if let Ok(report) = membership::decode(ethertype, payload) {
        assert!(report.records.len() <= payload.len(), "more records than octets");
    }
}

/// A RADIUS reply as the client meets it: verified against a request authenticator,
/// then decoded, and what a session keeps taken from it.
pub fn radius_reply(data: &[u8]) {
    let ra = [7u8; 16];
    for verified in
        [radius::verify_reply(data, &ra, b"s3cret"), radius::verify_accounting_response(data, &ra, b"s3cret")]
    {
        let Ok(pkt) = verified else { continue };
        let Ok(packet) = Packet::decode(pkt) else { continue };
        let attrs = auth::ReplyAttrs::from_packet(&packet);
        let _ = crate::policy::entitlement_from_attrs(&attrs, 32473);
        let _ = client::eap_message(&packet);
    }
    // and unverified, as the attribute walk sees any datagram
    for a in radius::Attributes::new(data.get(radius::HEADER_LEN..).unwrap_or(&[])) {
        if a.is_err() {
            break;
        }
    }
}

/// A CoA or Disconnect request (its secret is known to the fuzzer, so the mutations
/// that keep it valid reach the decoding past the checks).
pub fn das(data: &[u8]) {
    let _ = das::verify(data, b"s3cret", 1_795_000_000, u64::MAX);
    if data.len() >= 20 {
        // the same octets, signed: past the authenticator checks
        let attrs: Vec<(u8, &[u8])> = radius::Attributes::new(&data[20..])
            .map_while(Result::ok)
            .map(|(_, t, v)| (t, v))
            .filter(|(t, _)| *t != radius::attr::MESSAGE_AUTHENTICATOR)
            .take(64)
            .collect();
        if attrs.iter().map(|(_, v)| v.len() + 2).sum::<usize>() + 38 <= radius::MAX_LEN {
            let signed = das::encode_request(data[0], data[1], &attrs, b"s3cret").unwrap_or_default();
            if let Ok(req) = das::verify(&signed, b"s3cret", 1_795_000_000, u64::MAX) {
                let _ = das::answer(&req, Some(das::cause::INVALID_REQUEST), b"s3cret");
            }
        }
    }
}

/// A policy file.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::policy::parse_file("fuzz.toml", text);
    }
}

/// A configuration file (secret files looked for in a directory that does not exist).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::daemon::config::parse("fuzz.toml", text, std::path::Path::new("/nonexistent/mcgate-fuzz"));
    }
}

fn mac(b: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, b % 8])
}

/// The authenticator, two ports, fed EAPOL, link and MAB events, RADIUS answers to what
/// it asked and clock steps.
pub fn authenticator(data: &[u8]) {
    let ports = (0..2)
        .map(|i| PortConfig {
            name: format!("p{i}"),
            mode: if i == 0 { PortMode::Dot1x } else { PortMode::Dot1xThenMab },
            nas_port: i + 1,
            mac: MacAddr([2, 0xaa, 0, 0, 0, i as u8]),
            vlan: None,
        })
        .collect();
    let mut a = Authenticator::new(auth::Config::default(), ports);
    let mut now = Instant::now();
    let mut b = Bytes(data);
    let mut asked: Vec<u64> = vec![];
    while !b.is_empty() {
        let port = (b.u8() % 2) as usize;
        match b.u8() % 8 {
            0 | 1 => {
                let src = mac(b.u8());
                a.handle_input(now, auth::Input::Eapol { port, src, pdu: b.slice(1500) })
            }
            2 => a.handle_input(now, auth::Input::LinkUp { port }),
            3 => a.handle_input(now, auth::Input::LinkDown { port }),
            4 => a.handle_input(now, auth::Input::UnknownMac { port, mac: mac(b.u8()) }),
            5 if !asked.is_empty() => {
                let token = asked.swap_remove(b.u8() as usize % asked.len());
                let code = [Code::AccessAccept, Code::AccessReject, Code::AccessChallenge][b.u8() as usize % 3];
                let eap = b.slice(300);
                let attrs: Vec<(u8, &[u8])> =
                    eap.chunks(radius::MAX_ATTR_VALUE).map(|c| (radius::attr::EAP_MESSAGE, c)).collect();
                let encoded = radius::encode_raw(code as u8, 0, &[0; 16], &attrs).ok();
                if let Some(p) = encoded.and_then(|e| Packet::decode(&e).ok()) {
                    a.handle_input(now, auth::Input::RadiusReply { token, packet: &p });
                }
            }
            6 if !asked.is_empty() => {
                let token = asked.swap_remove(b.u8() as usize % asked.len());
                a.handle_input(now, auth::Input::RadiusFailed { token });
            }
            7 => a.handle_input(now, auth::Input::Kick { port, mac: mac(b.u8()) }),
            _ => {
                now += Duration::from_millis(b.u8() as u64 * 50);
                a.handle_timeout(now);
            }
        }
        while let Some(o) = a.poll_output() {
            match o {
                auth::Output::Radius { token, .. } => asked.push(token),
                auth::Output::CancelRadius { token } => asked.retain(|t| *t != token),
                _ => {}
            }
        }
        assert!(a.poll_timeout().is_none_or(|t| t >= now - Duration::from_secs(3600)));
    }
}

/// The membership tracker, two ports, fed reports, per-join RADIUS answers, session
/// ends, revocations, re-evaluations and clock steps; its MDB view must always cover
/// every membership.
pub fn tracker(data: &[u8]) {
    let mut policy = Policy { unknown: Unknown::Radius, ..Default::default() };
    policy.packages.insert(
        "basic".into(),
        Package {
            name: "basic".into(),
            groups: vec!["239.1.0.0/16".parse().unwrap_or_else(|_| unreachable!())],
            channels: vec![],
            bandwidth_kbps: 1000,
            preview: None,
        },
    );
    let mut t = Tracker::new(mcast::Config::default(), vec![false, true]);
    let ent = Entitlement { packages: vec!["basic".into()], max_groups: Some(8) };
    let names: [Arc<str>; 4] = ["p0".into(), "p1".into(), "alice".into(), "s1".into()];
    let mut now = Instant::now();
    let mut b = Bytes(data);
    let mut asked: Vec<u64> = vec![];
    while !b.is_empty() {
        let port = (b.u8() % 2) as usize;
        let host = Host {
            port,
            port_name: &names[port],
            vlan: None,
            mac: mac(b.u8()),
            account: &names[2],
            session_id: &names[3],
            entitlement: &ent,
        };
        match b.u8() % 6 {
            0 | 1 => {
                let ethertype = if b.u8() % 2 == 0 { 0x0800 } else { 0x86dd };
                if let Ok(r) = membership::decode(ethertype, b.slice(600)) {
                    t.handle_report(now, 1_795_000_000, &policy, &host, &r.records);
                }
            }
            2 if !asked.is_empty() => {
                let token = asked.swap_remove(b.u8() as usize % asked.len());
                let answer = match b.u8() % 3 {
                    0 => RadiusAnswer::Accept { ttl: Some(Duration::from_secs(60)) },
                    1 => RadiusAnswer::Reject { ttl: None },
                    _ => RadiusAnswer::Unreachable,
                };
                t.radius_answer(now, 1_795_000_000, &policy, token, answer);
            }
            3 => t.end_host(now, port, host.mac, mcast::EndCause::SessionEnd(crate::auth::EndCause::UserRequest)),
            4 => {
                let _ = t.reevaluate(now, &policy, &host);
            }
            _ => {
                now += Duration::from_millis(b.u8() as u64 * 500);
                t.handle_timeout(now);
            }
        }
        while let Some(o) = t.poll_output() {
            if let mcast::Output::AskRadius { token, .. } = o {
                asked.push(token);
            }
        }
        let held: std::collections::HashSet<_> = t.port_channels().collect();
        for m in t.memberships() {
            let p = if *m.port == *names[0] { 0 } else { 1 };
            assert!(held.contains(&(p, (m.group, m.source))), "a membership without its MDB entry: {m:?}");
        }
    }
}

/// The RADIUS client, two servers probed with Status-Server, fed requests, any datagrams
/// and clock steps.
pub fn radius_client(data: &[u8]) {
    let servers = (0..2)
        .map(|i| Server { addr: ([127, 0, 0, 1], 1812 + i).into(), secret: crate::radius::Secret(b"s3cret".to_vec()) })
        .collect();
    let config = client::Config { status_server: Some(Duration::from_secs(1)), ..Default::default() };
    let mut c = Client::new(Instant::now(), config, servers, rand::SeedableRng::seed_from_u64(0));
    let mut now = Instant::now();
    let mut b = Bytes(data);
    let mut sent = 0u64;
    while !b.is_empty() {
        match b.u8() % 4 {
            0 => {
                let code = if b.u8() % 2 == 0 { Code::AccessRequest } else { Code::AccountingRequest };
                let _ = c.send(
                    now,
                    sent,
                    Request { code, attrs: vec![Attr::Bytes(radius::attr::USER_NAME, b.slice(40).to_vec())] },
                );
                sent += 1;
            }
            1 | 2 => {
                let server = (b.u8() % 2) as usize;
                let _ = c.handle_datagram(now, server, b.slice(255));
            }
            _ => {
                now += Duration::from_millis(b.u8() as u64 * 100);
                c.handle_timeout(now);
            }
        }
        while c.poll_output().is_some() {}
        assert!(c.pending() as u64 <= sent);
    }
}

/// A target: any octets in, a panic only on a broken invariant.
/// The RADIUS encoder: a list of attributes (values up to 600 octets, so some cannot
/// fit) encodes to a packet that decodes to the very same list, or is refused — never to
/// a different list. The same through the client's request encoder, whose bound check
/// (`Request::encoded_len`) must agree with what it encodes.
pub fn radius_encode(data: &[u8]) {
    let mut b = Bytes(data);
    let mut attrs: Vec<(u8, &[u8])> = vec![];
    while !b.is_empty() && attrs.len() < 64 {
        let ty = b.u8();
        let len = (b.u8() as usize) * 3; // 0..=765
        let n = len.min(b.0.len());
        let (v, rest) = b.0.split_at(n);
        b.0 = rest;
        attrs.push((ty, v));
    }
    let decode = |pkt: &[u8]| -> Vec<(u8, Vec<u8>)> {
        radius::Attributes::new(&pkt[radius::HEADER_LEN..])
            .map(|a| a.map(|(_, t, v)| (t, v.to_vec())).expect("own encoding decodes"))
            .collect()
    };
    let want: Vec<(u8, Vec<u8>)> = attrs.iter().map(|(t, v)| (*t, v.to_vec())).collect();
    let fits = attrs.iter().all(|(_, v)| v.len() <= radius::MAX_ATTR_VALUE)
        && radius::HEADER_LEN + attrs.iter().map(|(_, v)| 2 + v.len()).sum::<usize>() <= radius::MAX_LEN;
    match radius::encode_raw(1, 7, &[0; 16], &attrs) {
        Ok(pkt) => {
            assert!(fits, "encoded what does not fit");
            assert_eq!(radius::packet(&pkt), Some(&pkt[..]), "length field");
            assert_eq!(decode(&pkt), want, "decoded to a different list");
        }
        Err(_) => assert!(!fits, "refused what fits"),
    }
    let request =
        Request { code: Code::AccessRequest, attrs: attrs.iter().map(|(t, v)| Attr::Bytes(*t, v.to_vec())).collect() };
    match (request.encoded_len(), client::encode_request(&request, 1, &[0; 16], b"s3cret")) {
        (Ok(len), Ok(pkt)) => {
            assert_eq!(len, pkt.len());
            let back = decode(&pkt);
            assert_eq!(back[0].0, radius::attr::MESSAGE_AUTHENTICATOR, "Message-Authenticator first");
            assert_eq!(back[1..], want[..], "request decoded to a different list");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("bound check {a:?} and encoder {:?} disagree", b.map(|p| p.len())),
    }
}

pub type Target = fn(&[u8]);

/// Every target by name (the fuzz script and the regression test use these names).
pub const TARGETS: &[(&str, Target)] = &[
    ("radius_encode", radius_encode),
    ("eapol", eapol),
    ("eap", eap),
    ("membership", membership),
    ("radius_reply", radius_reply),
    ("das", das),
    ("policy", policy),
    ("config", config),
    ("authenticator", authenticator),
    ("tracker", tracker),
    ("radius_client", radius_client),
];
