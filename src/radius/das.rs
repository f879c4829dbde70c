//! The Dynamic Authorization Server side of RFC 5176: Disconnect-Request and
//! CoA-Request from configured clients, checked before anything acts on them, and
//! their ACK/NAK answers.
//!
//! A request counts only if its Request Authenticator (RFC 5176 3.5, computed as for
//! Accounting-Request) and its Message-Authenticator (required here, RFC 3579 3.2 with
//! the authenticator field zeroed) verify, and its Event-Timestamp lies within the
//! window (replay protection, RFC 5176 3.5); everything else is dropped and counted.

use super::{
    attr, encode_raw, hmac_md5, hmac_md5_verify, md5_parts, same, sign_reply, Attributes, EncodeError, HEADER_LEN,
};

pub const DISCONNECT_REQUEST: u8 = 40;
pub const DISCONNECT_ACK: u8 = 41;
pub const DISCONNECT_NAK: u8 = 42;
pub const COA_REQUEST: u8 = 43;
pub const COA_ACK: u8 = 44;
pub const COA_NAK: u8 = 45;

/// Error-Cause values (RFC 5176 3.6).
pub mod cause {
    pub const UNSUPPORTED_ATTRIBUTE: u32 = 401;
    pub const MISSING_ATTRIBUTE: u32 = 402;
    pub const NAS_IDENTIFICATION_MISMATCH: u32 = 403;
    pub const INVALID_REQUEST: u32 = 404;
    pub const RESOURCES_UNAVAILABLE: u32 = 506;
    pub const MULTIPLE_SESSION_SELECTION_UNSUPPORTED: u32 = 508;
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    #[error("malformed packet")]
    Malformed,
    #[error("not a CoA-Request or Disconnect-Request")]
    UnexpectedCode,
    #[error("request authenticator does not verify")]
    BadAuthenticator,
    #[error("no Message-Authenticator")]
    MissingMessageAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    #[error("no Event-Timestamp")]
    MissingEventTimestamp,
    #[error("Event-Timestamp outside the window")]
    StaleEventTimestamp,
}

impl Drop {
    /// The counter's name (snake_case, as in the status and the metrics).
    pub fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::UnexpectedCode => "unexpected_code",
            Drop::BadAuthenticator => "bad_authenticator",
            Drop::MissingMessageAuthenticator => "missing_message_authenticator",
            Drop::BadMessageAuthenticator => "bad_message_authenticator",
            Drop::MissingEventTimestamp => "missing_event_timestamp",
            Drop::StaleEventTimestamp => "stale_event_timestamp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Disconnect,
    Coa,
}

/// A verified request: who it is about, and (CoA) what changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub kind: Option<Kind>,
    pub id: u8,
    pub authenticator: [u8; 16],
    pub user_name: Option<String>,
    pub acct_session_id: Option<String>,
    pub calling_station_id: Option<String>,
    pub nas_port_id: Option<String>,
    pub nas_identifier: Option<String>,
    pub event_timestamp: Option<u32>,
    /// CoA: the new Filter-Id values (packages).
    pub filter_ids: Vec<String>,
    /// CoA: Vendor-Specific attributes, raw value hex encoded (as `ReplyAttrs` keeps them).
    pub vendor: Vec<String>,
    /// CoA: the Tunnel attributes (type, value) that may assign a VLAN (RFC 3580 3.31).
    pub tunnel: Vec<(u8, Vec<u8>)>,
    /// Proxy-State values, echoed in the answer in order (RFC 5176 3.1, RFC 2865 5.33).
    pub proxy_state: Vec<Vec<u8>>,
    /// Attribute types this NAS does not act on.
    pub unsupported: Vec<u8>,
}

impl Request {
    /// Identifies no session at all.
    pub fn is_anonymous(&self) -> bool {
        self.user_name.is_none() && self.acct_session_id.is_none() && self.calling_station_id.is_none()
    }
}

/// Checks a datagram from a configured client and decodes it. `now` and `window`
/// (seconds) bound its Event-Timestamp.
pub fn verify(bytes: &[u8], secret: &[u8], now: u64, window: u64) -> Result<Request, Drop> {
    let pkt = super::packet(bytes).ok_or(Drop::Malformed)?;
    let kind = match pkt[0] {
        DISCONNECT_REQUEST => Kind::Disconnect,
        COA_REQUEST => Kind::Coa,
        _ => return Err(Drop::UnexpectedCode),
    };
    let mut req = Request { kind: Some(kind), id: pkt[1], ..Default::default() };
    req.authenticator.copy_from_slice(&pkt[4..20]);
    let mut ma_at = None;
    let text = |v: &[u8]| Some(String::from_utf8_lossy(v).into_owned());
    for a in Attributes::new(&pkt[HEADER_LEN..]) {
        let (off, ty, v) = a.map_err(|_| Drop::Malformed)?;
        match ty {
            attr::MESSAGE_AUTHENTICATOR if v.len() == 16 && ma_at.is_none() => ma_at = Some(HEADER_LEN + off + 2),
            attr::MESSAGE_AUTHENTICATOR => return Err(Drop::Malformed),
            attr::USER_NAME => req.user_name = text(v),
            attr::ACCT_SESSION_ID => req.acct_session_id = text(v),
            attr::CALLING_STATION_ID => req.calling_station_id = text(v),
            attr::NAS_PORT_ID => req.nas_port_id = text(v),
            attr::NAS_IDENTIFIER => req.nas_identifier = text(v),
            attr::EVENT_TIMESTAMP => {
                req.event_timestamp = Some(u32::from_be_bytes(v.try_into().map_err(|_| Drop::Malformed)?))
            }
            attr::FILTER_ID if kind == Kind::Coa => req.filter_ids.push(String::from_utf8_lossy(v).into_owned()),
            attr::VENDOR_SPECIFIC if kind == Kind::Coa => req.vendor.push(crate::wire::hex(v)),
            attr::TUNNEL_TYPE | attr::TUNNEL_MEDIUM_TYPE | attr::TUNNEL_PRIVATE_GROUP_ID if kind == Kind::Coa => {
                req.tunnel.push((ty, v.to_vec()))
            }
            attr::PROXY_STATE => req.proxy_state.push(v.to_vec()),
            // identification a NAS may ignore (RFC 5176 3): its own address, the port type
            attr::NAS_IP_ADDRESS | attr::NAS_PORT | attr::NAS_PORT_TYPE | attr::CALLED_STATION_ID => {}
            other => req.unsupported.push(other),
        }
    }
    // Request Authenticator: MD5 over the packet with a zeroed authenticator, then the secret
    let zero = [0u8; 16];
    if !same(&md5_parts(&[&pkt[..4], &zero, &pkt[20..], secret]), &req.authenticator) {
        return Err(Drop::BadAuthenticator);
    }
    let ma_at = ma_at.ok_or(Drop::MissingMessageAuthenticator)?;
    let covered = [&pkt[..4], &zero, &pkt[20..ma_at], &zero, &pkt[ma_at + 16..]];
    if !hmac_md5_verify(secret, &covered, &pkt[ma_at..ma_at + 16]) {
        return Err(Drop::BadMessageAuthenticator);
    }
    let ts = req.event_timestamp.ok_or(Drop::MissingEventTimestamp)? as u64;
    if ts.abs_diff(now) > window {
        return Err(Drop::StaleEventTimestamp);
    }
    Ok(req)
}

/// The ACK (`error_cause` None) or NAK answering `req`, signed with `secret`:
/// Message-Authenticator first, the Error-Cause, the request's Proxy-State echoed.
pub fn answer(req: &Request, error_cause: Option<u32>, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let code = match (req.kind, error_cause) {
        (Some(Kind::Coa), None) => COA_ACK,
        (Some(Kind::Coa), Some(_)) => COA_NAK,
        (_, None) => DISCONNECT_ACK,
        (_, Some(_)) => DISCONNECT_NAK,
    };
    let cause = error_cause.map(u32::to_be_bytes);
    let zero = [0u8; 16];
    let mut attrs: Vec<(u8, &[u8])> = vec![(attr::MESSAGE_AUTHENTICATOR, &zero)];
    attrs.extend(cause.iter().map(|c| (attr::ERROR_CAUSE, c.as_slice())));
    attrs.extend(req.proxy_state.iter().map(|v| (attr::PROXY_STATE, v.as_slice())));
    let mut pkt = encode_raw(code, req.id, &[0; 16], &attrs)?;
    sign_reply(&mut pkt, &req.authenticator, secret);
    Ok(pkt)
}

/// Builds a signed request as a client would (tests, and the forger in them).
pub fn encode_request(code: u8, id: u8, attrs: &[(u8, &[u8])], secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let zero = [0u8; 16];
    let mut all: Vec<(u8, &[u8])> = vec![(attr::MESSAGE_AUTHENTICATOR, &zero)];
    all.extend_from_slice(attrs);
    let mut pkt = encode_raw(code, id, &zero, &all)?;
    let ma_at = HEADER_LEN + 2;
    let mac = hmac_md5(secret, &[&pkt]);
    pkt[ma_at..ma_at + 16].copy_from_slice(&mac);
    let ra = md5_parts(&[&pkt, secret]);
    pkt[4..20].copy_from_slice(&ra);
    Ok(pkt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::verify_reply;

    const NOW: u64 = 1_795_000_000;

    fn disconnect(secret: &[u8], ts: u32) -> Vec<u8> {
        let ts = ts.to_be_bytes();
        encode_request(
            DISCONNECT_REQUEST,
            7,
            &[(attr::USER_NAME, b"alice"), (attr::EVENT_TIMESTAMP, &ts), (attr::NAS_IP_ADDRESS, &[127, 0, 0, 1])],
            secret,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_fresh_request_verifies_and_forgeries_do_not() {
        let pkt = disconnect(b"s3cret", NOW as u32);
        let req = verify(&pkt, b"s3cret", NOW, 300).unwrap();
        assert_eq!((req.kind, req.user_name.as_deref(), req.id), (Some(Kind::Disconnect), Some("alice"), 7));
        assert!(req.unsupported.is_empty());
        assert_eq!(verify(&pkt, b"wrong", NOW, 300), Err(Drop::BadAuthenticator));
        assert_eq!(
            verify(&disconnect(b"s3cret", NOW as u32 - 301), b"s3cret", NOW, 300),
            Err(Drop::StaleEventTimestamp)
        );
        for i in 0..pkt.len() {
            let mut bad = pkt.clone();
            bad[i] ^= 1;
            assert!(verify(&bad, b"s3cret", NOW, 300).is_err(), "bit flip at {i} accepted");
        }
        for n in 0..pkt.len() {
            assert!(verify(&pkt[..n], b"s3cret", NOW, 300).is_err());
        }
        // without Message-Authenticator: authenticator right, still refused
        let ts = (NOW as u32).to_be_bytes();
        let mut bare =
            encode_raw(DISCONNECT_REQUEST, 1, &[0; 16], &[(attr::USER_NAME, b"a"), (attr::EVENT_TIMESTAMP, &ts)])
                .unwrap();
        let ra = md5_parts(&[&bare, b"s3cret"]);
        bare[4..20].copy_from_slice(&ra);
        assert_eq!(verify(&bare, b"s3cret", NOW, 300), Err(Drop::MissingMessageAuthenticator));
    }

    #[test]
    fn answers_verify_as_replies_to_the_request() {
        let ts = (NOW as u32).to_be_bytes();
        let coa = encode_request(
            COA_REQUEST,
            9,
            &[
                (attr::PROXY_STATE, b"px1"),
                (attr::FILTER_ID, b"premium"),
                (attr::EVENT_TIMESTAMP, &ts),
                (attr::PROXY_STATE, b"px2"),
            ],
            b"k",
        )
        .unwrap();
        let req = verify(&coa, b"k", NOW, 300).unwrap();
        assert_eq!(req.filter_ids, ["premium"]);
        assert!(req.unsupported.is_empty(), "Proxy-State is supported: {:?}", req.unsupported);
        let nak = answer(&req, Some(cause::SESSION_CONTEXT_NOT_FOUND), b"k").unwrap();
        let pkt = verify_reply(&nak, &req.authenticator, b"k").unwrap();
        assert_eq!((pkt[0], pkt[1]), (COA_NAK, 9));
        // Message-Authenticator first, then the cause, then Proxy-State in the request's order
        assert_eq!(pkt[20], attr::MESSAGE_AUTHENTICATOR);
        assert_eq!(&pkt[38..44], &[attr::ERROR_CAUSE, 6, 0, 0, 1, 247]);
        assert_eq!(&pkt[44..], &[attr::PROXY_STATE, 5, b'p', b'x', b'1', attr::PROXY_STATE, 5, b'p', b'x', b'2']);
        assert_eq!(answer(&req, None, b"k").unwrap()[0], COA_ACK);
    }
}
