//! RADIUS for a NAS that must survive BlastRADIUS (CVE-2024-3596): Message-Authenticator
//! (RFC 3579 3.2, HMAC-MD5) on every request and required on every reply, the Response
//! Authenticator (RFC 2865 3) checked on the octets received, every length bounded where
//! it is decoded and where it is encoded.
//!
//! The codec is mcgate's own: one attribute reader ([`Attributes`]) serves the checks and
//! the [`Packet`] the rest of mcgate reads, and [`encode_raw`] refuses what does not fit.
//! The `radius` crate decoded replies a second time after those checks until 2026-12-01;
//! it bounds nothing it encodes, and it brought tokio with every feature, chrono and an
//! MD5 of its own for a lookup by attribute type (docs/architecture.md, "Choices and why").

pub mod client;
pub mod das;

/// A shared secret: its bytes for the HMAC and the hashes, never for a log line (its
/// Debug is redacted, so a `{:?}` of whatever holds it shows no secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// The packet codes of mcgate's RADIUS client (RFC 2865 3, 2866 3, 5997); the dynamic
/// authorization server has its own (`das`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Code {
    AccessRequest = 1,
    AccessAccept = 2,
    AccessReject = 3,
    AccountingRequest = 4,
    AccountingResponse = 5,
    AccessChallenge = 11,
    StatusServer = 12,
}

impl Code {
    pub fn from_u8(v: u8) -> Option<Code> {
        use Code::*;
        Some(match v {
            1 => AccessRequest,
            2 => AccessAccept,
            3 => AccessReject,
            4 => AccountingRequest,
            5 => AccountingResponse,
            11 => AccessChallenge,
            12 => StatusServer,
            _ => return None,
        })
    }
}

/// A packet as received (its authenticators checked before, see [`verify_reply`]): the
/// code and the attributes in order, read by [`Attributes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    code: Code,
    attrs: Vec<(u8, Vec<u8>)>,
}

/// Why octets are not a [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("malformed packet")]
    Malformed,
    #[error("unknown code {0}")]
    UnknownCode(u8),
}

impl Packet {
    /// The packet in `bytes` (up to its length field; what follows is ignored, RFC 2865 3).
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        let pkt = packet(bytes).ok_or(PacketError::Malformed)?;
        let code = Code::from_u8(pkt[0]).ok_or(PacketError::UnknownCode(pkt[0]))?;
        let attrs = Attributes::new(&pkt[HEADER_LEN..])
            .map(|a| a.map(|(_, ty, value)| (ty, value.to_vec())))
            .collect::<Result<_, _>>()
            .map_err(|_| PacketError::Malformed)?;
        Ok(Packet { code, attrs })
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The first attribute of type `ty`.
    pub fn lookup(&self, ty: u8) -> Option<&[u8]> {
        self.attrs.iter().find(|(t, _)| *t == ty).map(|(_, v)| v.as_slice())
    }

    /// Every attribute of type `ty`, in order.
    pub fn lookup_all(&self, ty: u8) -> impl Iterator<Item = &[u8]> + '_ {
        self.attrs.iter().filter(move |(t, _)| *t == ty).map(|(_, v)| v.as_slice())
    }
}

/// Attribute types used by mcgate (RFC 2865, 2869, 3580).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const FILTER_ID: u8 = 11;
    pub const FRAMED_MTU: u8 = 12;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const TERMINATION_ACTION: u8 = 29;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_AUTHENTIC: u8 = 45;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_MULTI_SESSION_ID: u8 = 50;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const NAS_PORT_TYPE: u8 = 61;
    /// RFC 2868 (tagged): VLAN assignment as RFC 3580 3.31 uses them.
    pub const TUNNEL_TYPE: u8 = 64;
    pub const TUNNEL_MEDIUM_TYPE: u8 = 65;
    pub const TUNNEL_PRIVATE_GROUP_ID: u8 = 81;
    pub const TUNNEL_TYPE_VLAN: u32 = 13;
    pub const TUNNEL_MEDIUM_IEEE_802: u32 = 6;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    pub const NAS_PORT_ID: u8 = 87;
    /// RFC 5176 3.6.
    pub const ERROR_CAUSE: u8 = 101;

    pub const SERVICE_TYPE_FRAMED: u32 = 2;
    pub const SERVICE_TYPE_CALL_CHECK: u32 = 10;
    pub const NAS_PORT_TYPE_ETHERNET: u32 = 15;
    pub const TERMINATION_ACTION_RADIUS_REQUEST: u32 = 1;
}

/// mcgate's vendor attributes (policies/freeradius/dictionary.mcgate), under the
/// configured vendor id.
pub mod mcgate_attr {
    pub const PACKAGE: u8 = 1;
    pub const MAX_GROUPS: u8 = 2;
    pub const GROUP: u8 = 3;
    pub const SOURCE: u8 = 4;
}

/// The largest value of one vendor attribute inside a Vendor-Specific attribute
/// (RFC 2865 5.26: vendor id and the vendor attribute's own type and length come first).
pub const MAX_VENDOR_VALUE: usize = MAX_ATTR_VALUE - 6;

/// A Vendor-Specific attribute (RFC 2865 5.26) holding one vendor attribute. A value
/// longer than one attribute holds is refused, never cut.
pub fn vendor_attr(vendor_id: u32, ty: u8, value: &[u8]) -> Result<client::Attr, EncodeError> {
    let len = u8::try_from(value.len() + 2)
        .ok()
        .filter(|_| value.len() <= MAX_VENDOR_VALUE)
        .ok_or(EncodeError::ValueTooLong { ty: attr::VENDOR_SPECIFIC, len: value.len() + 6 })?;
    let mut b = vendor_id.to_be_bytes().to_vec();
    b.extend_from_slice(&[ty, len]);
    b.extend_from_slice(value);
    Ok(client::Attr::Bytes(attr::VENDOR_SPECIFIC, b))
}

/// Why a packet was not encoded. Nothing is ever cut to fit: a value that does not fit
/// its length octet would let its own octets be read as further attributes (the
/// attribute injection of a too-long User-Name), so it is refused whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {ty}: a value of {len} octets (one attribute holds {MAX_ATTR_VALUE})")]
    ValueTooLong { ty: u8, len: usize },
    #[error("a packet of {len} octets (RADIUS allows {MAX_LEN})")]
    PacketTooLong { len: usize },
    #[error("a User-Password of {len} octets (1 to 128 allowed)")]
    BadPassword { len: usize },
}

/// The packet's own octets, if its length field is sane (and trailing garbage cut).
pub(crate) fn packet(bytes: &[u8]) -> Option<&[u8]> {
    let len = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize;
    (HEADER_LEN..=MAX_LEN).contains(&len).then(|| bytes.get(..len)).flatten()
}

pub const HEADER_LEN: usize = 20;
/// RFC 2865 3: the maximum packet length.
pub const MAX_LEN: usize = 4096;
/// The largest value one attribute carries; longer EAP messages are split (RFC 3579 3.1).
pub const MAX_ATTR_VALUE: usize = 253;

/// Authenticators compared in constant time: how long a comparison takes says nothing
/// about how many leading octets of a forgery were right.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// HMAC-MD5 (RFC 2104, RustCrypto's `hmac` and `md-5`) over `parts`, keyed with `key`.
fn hmac_md5_over(key: &[u8], parts: &[&[u8]]) -> hmac::Hmac<md5::Md5> {
    use hmac::Mac;
    // HMAC takes a key of any length (a long one is hashed first): this never fails
    let mut mac = <hmac::Hmac<md5::Md5> as Mac>::new_from_slice(key).expect("HMAC keys have no length limit");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// HMAC-MD5 over `parts`, keyed with `key`: a Message-Authenticator to send.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    hmac::Mac::finalize(hmac_md5_over(key, parts)).into_bytes().into()
}

/// Whether `tag` is the HMAC-MD5 of `parts` (a Message-Authenticator received), compared
/// in constant time.
pub fn hmac_md5_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    hmac::Mac::verify_slice(hmac_md5_over(key, parts), tag).is_ok()
}

/// Iterates over the attributes of a packet's attribute area as (type, value),
/// stopping (with `None`) at the first malformed one.
pub struct Attributes<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Attributes<'a> {
    pub fn new(attrs: &'a [u8]) -> Self {
        Attributes { rest: attrs, offset: 0 }
    }
}

impl<'a> Iterator for Attributes<'a> {
    /// (offset of the attribute within the area, type, value)
    type Item = Result<(usize, u8, &'a [u8]), crate::wire::DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 2 {
            self.rest = &[];
            return Some(Err(crate::wire::DecodeError::Truncated));
        }
        let len = self.rest[1] as usize;
        if len < 2 || len > self.rest.len() {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(crate::wire::DecodeError::BadLength { field: len, available }));
        }
        let item = (self.offset, self.rest[0], &self.rest[2..len]);
        self.rest = &self.rest[len..];
        self.offset += len;
        Some(Ok(item))
    }
}

/// Why a reply was refused. Every variant is counted; none is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed packet")]
    Malformed,
    #[error("answers no outstanding request")]
    Unmatched,
    #[error("unexpected code for the request")]
    UnexpectedCode,
    #[error("response authenticator does not verify")]
    BadResponseAuthenticator,
    #[error("no Message-Authenticator")]
    MissingMessageAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
}

/// Checks a reply's length, attribute structure, Response Authenticator and
/// Message-Authenticator against the request authenticator it answers. Returns the
/// packet's own octets (without trailing garbage).
pub fn verify_reply<'a>(
    bytes: &'a [u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<&'a [u8], ReplyError> {
    verify(bytes, request_authenticator, secret, true)
}

/// As [`verify_reply`] for an Accounting-Response, which RFC 2866 authenticates by its
/// Response Authenticator alone: a Message-Authenticator is checked when present.
pub fn verify_accounting_response<'a>(
    bytes: &'a [u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<&'a [u8], ReplyError> {
    verify(bytes, request_authenticator, secret, false)
}

fn verify<'a>(
    bytes: &'a [u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    require_ma: bool,
) -> Result<&'a [u8], ReplyError> {
    let pkt = packet(bytes).ok_or(ReplyError::Malformed)?;
    let attrs = &pkt[HEADER_LEN..];
    let mut ma_at = None;
    for a in Attributes::new(attrs) {
        let (off, ty, value) = a.map_err(|_| ReplyError::Malformed)?;
        if ty == attr::MESSAGE_AUTHENTICATOR {
            if value.len() != 16 || ma_at.is_some() {
                return Err(ReplyError::Malformed);
            }
            ma_at = Some(HEADER_LEN + off + 2);
        }
    }
    let expect = md5_parts(&[&pkt[..4], request_authenticator, attrs, secret]);
    if !same(&expect, &pkt[4..20]) {
        return Err(ReplyError::BadResponseAuthenticator);
    }
    let ma_at = match ma_at {
        Some(at) => at,
        None if require_ma => return Err(ReplyError::MissingMessageAuthenticator),
        None => return Ok(pkt),
    };
    // RFC 3579 3.2: computed over the reply with the Request Authenticator in place
    // of the Response Authenticator and the Message-Authenticator value zeroed.
    let zero = [0u8; 16];
    let covered = [&pkt[..4], request_authenticator, &pkt[20..ma_at], &zero, &pkt[ma_at + 16..]];
    if !hmac_md5_verify(secret, &covered, &pkt[ma_at..ma_at + 16]) {
        return Err(ReplyError::BadMessageAuthenticator);
    }
    Ok(pkt)
}

/// Fills the (zeroed) Message-Authenticator of a request encoded in `pkt` in place.
/// For Access-Request and Status-Server the HMAC covers the packet as sent.
pub fn sign_request(pkt: &mut [u8], secret: &[u8]) -> Result<(), ReplyError> {
    let ma_at = find_attr(pkt, attr::MESSAGE_AUTHENTICATOR).ok_or(ReplyError::MissingMessageAuthenticator)?;
    let mac = hmac_md5(secret, &[pkt]);
    pkt[ma_at..ma_at + 16].copy_from_slice(&mac);
    Ok(())
}

/// Offset of the value of the first attribute of type `ty` in an encoded packet.
pub fn find_attr(pkt: &[u8], ty: u8) -> Option<usize> {
    Attributes::new(pkt.get(HEADER_LEN..)?)
        .map_while(Result::ok)
        .find(|(_, t, _)| *t == ty)
        .map(|(off, _, _)| HEADER_LEN + off + 2)
}

/// MD5 over `parts` (RFC 2865's Request and Response Authenticators).
pub(crate) fn md5_parts(parts: &[&[u8]]) -> [u8; 16] {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Signs a reply as a server would (Message-Authenticator, then Response
/// Authenticator). Used by tests and the fuzz harness to build valid and forged replies.
pub fn sign_reply(pkt: &mut [u8], request_authenticator: &[u8; 16], secret: &[u8]) {
    pkt[4..20].copy_from_slice(request_authenticator);
    if let Some(ma_at) = find_attr(pkt, attr::MESSAGE_AUTHENTICATOR) {
        pkt[ma_at..ma_at + 16].fill(0);
        let mac = hmac_md5(secret, &[pkt]);
        pkt[ma_at..ma_at + 16].copy_from_slice(&mac);
    }
    let auth = md5_parts(&[pkt, secret]);
    pkt[4..20].copy_from_slice(&auth);
}

/// The length of a packet of attributes given as (type, value length), if every value
/// fits its attribute and the packet fits RADIUS's 4096 octets.
pub fn packet_len(attrs: impl IntoIterator<Item = (u8, usize)>) -> Result<usize, EncodeError> {
    let len = attrs.into_iter().try_fold(HEADER_LEN, |sum, (ty, len)| {
        if len > MAX_ATTR_VALUE {
            return Err(EncodeError::ValueTooLong { ty, len });
        }
        Ok(sum + 2 + len)
    })?;
    if len > MAX_LEN {
        return Err(EncodeError::PacketTooLong { len });
    }
    Ok(len)
}

/// Builds a raw packet from (type, value) pairs. A value over 253 octets or a packet over
/// 4096 is refused; values longer than one attribute are the caller's to split (RFC 3579
/// 3.1 for EAP-Message).
pub fn encode_raw(code: u8, id: u8, authenticator: &[u8; 16], attrs: &[(u8, &[u8])]) -> Result<Vec<u8>, EncodeError> {
    let len = packet_len(attrs.iter().map(|(ty, v)| (*ty, v.len())))?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[code, id]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(authenticator);
    for (ty, v) in attrs {
        // packet_len bounded both: a value is at most 253 octets, the packet at most 4096
        out.extend_from_slice(&[*ty, (v.len() + 2) as u8]);
        out.extend_from_slice(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_rfc2202_vectors() {
        // RFC 2202 test cases 1 and 2
        assert_eq!(
            hmac_md5(&[0x0b; 16], &[b"Hi There"]),
            [0x92, 0x94, 0x72, 0x7a, 0x36, 0x38, 0xbb, 0x1c, 0x13, 0xf4, 0x8e, 0xf8, 0x15, 0x8b, 0xfc, 0x9d]
        );
        assert_eq!(
            hmac_md5(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            [0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d, 0xb7, 0x38]
        );
        // key longer than the block: RFC 2202 test case 6
        assert_eq!(
            hmac_md5(&[0xaa; 80], &[b"Test Using Larger Than Block-Size Key - Hash Key First"]),
            [0x6b, 0x1a, 0xb7, 0xfe, 0x4b, 0xd7, 0xbf, 0x8f, 0x0b, 0x62, 0xe6, 0xce, 0x61, 0xb9, 0xd0, 0xcd]
        );
    }

    fn reply(with_ma: bool) -> (Vec<u8>, [u8; 16]) {
        let req_auth = [7u8; 16];
        let zero = [0u8; 16];
        let mut attrs: Vec<(u8, &[u8])> = vec![(attr::USER_NAME, b"alice")];
        if with_ma {
            attrs.push((attr::MESSAGE_AUTHENTICATOR, &zero));
        }
        let mut pkt = encode_raw(2, 9, &[0; 16], &attrs).unwrap();
        sign_reply(&mut pkt, &req_auth, b"secret");
        (pkt, req_auth)
    }

    #[test]
    fn verify_accepts_a_signed_reply_and_refuses_forgeries() {
        let (pkt, ra) = reply(true);
        assert!(verify_reply(&pkt, &ra, b"secret").is_ok());
        assert_eq!(verify_reply(&pkt, &ra, b"wrong").unwrap_err(), ReplyError::BadResponseAuthenticator);
        let (unsigned, ra) = reply(false);
        assert_eq!(verify_reply(&unsigned, &ra, b"secret").unwrap_err(), ReplyError::MissingMessageAuthenticator);
        // a flipped bit anywhere is refused
        for i in 0..pkt.len() {
            let mut bad = pkt.clone();
            bad[i] ^= 1;
            assert!(verify_reply(&bad, &ra, b"secret").is_err(), "bit flip at {i} accepted");
        }
        // a Message-Authenticator recomputed with the wrong key but a valid response authenticator
        let mut bad = pkt.clone();
        let at = find_attr(&bad, attr::MESSAGE_AUTHENTICATOR).unwrap();
        bad[at] ^= 0xff;
        bad[4..20].copy_from_slice(&ra);
        let auth = md5_parts(&[&bad, b"secret"]);
        bad[4..20].copy_from_slice(&auth);
        assert_eq!(verify_reply(&bad, &ra, b"secret").unwrap_err(), ReplyError::BadMessageAuthenticator);
    }

    proptest::proptest! {
        /// Any list of attributes encodes and decodes to the same list, or is refused;
        /// never to a different list (a value over 253 octets once did: its length octet
        /// wrapped and its tail became attributes).
        #[test]
        fn attributes_round_trip_or_are_refused(
            attrs in proptest::collection::vec((proptest::num::u8::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..400)), 0..24)
        ) {
            let refs: Vec<(u8, &[u8])> = attrs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
            let total = HEADER_LEN + refs.iter().map(|(_, v)| 2 + v.len()).sum::<usize>();
            match encode_raw(4, 1, &[0; 16], &refs) {
                Ok(pkt) => {
                    let back: Vec<(u8, &[u8])> =
                        Attributes::new(&pkt[HEADER_LEN..]).map(|a| a.map(|(_, t, v)| (t, v)).unwrap()).collect();
                    proptest::prop_assert_eq!(back, refs);
                    proptest::prop_assert_eq!(packet(&pkt).map(<[u8]>::len), Some(total));
                }
                Err(EncodeError::ValueTooLong { ty, len }) => {
                    proptest::prop_assert!(refs.iter().any(|(t, v)| *t == ty && v.len() == len && len > MAX_ATTR_VALUE));
                }
                Err(EncodeError::PacketTooLong { len }) => {
                    proptest::prop_assert!(len > MAX_LEN && len == total);
                    proptest::prop_assert!(refs.iter().all(|(_, v)| v.len() <= MAX_ATTR_VALUE));
                }
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }

    #[test]
    fn the_injection_of_a_300_octet_user_name_is_refused() {
        // "alice" then a NAS-Identifier and filler: with the length octet (302 as u8 = 46)
        // the server read User-Name = "alice…" (44 octets) and then these as attributes
        let mut v = b"alice".to_vec();
        v.resize(44, b'a');
        v.extend_from_slice(&[attr::NAS_IDENTIFIER, 10]);
        v.extend_from_slice(b"INJECTED");
        v.extend_from_slice(&[attr::REPLY_MESSAGE, 246]);
        v.resize(300, b'f');
        assert_eq!(
            encode_raw(1, 1, &[0; 16], &[(attr::USER_NAME, &v)]),
            Err(EncodeError::ValueTooLong { ty: attr::USER_NAME, len: 300 })
        );
        assert!(vendor_attr(1, 1, &[0; MAX_VENDOR_VALUE]).is_ok());
        assert!(vendor_attr(1, 1, &[0; MAX_VENDOR_VALUE + 1]).is_err());
        let big = [0u8; 253];
        let many: Vec<(u8, &[u8])> = (0..16).map(|_| (attr::CLASS, &big[..])).collect();
        assert_eq!(encode_raw(1, 1, &[0; 16], &many), Err(EncodeError::PacketTooLong { len: 20 + 16 * 255 }));
    }

    #[test]
    fn truncated_and_malformed_replies() {
        let (pkt, ra) = reply(true);
        for n in 0..pkt.len() {
            assert!(verify_reply(&pkt[..n], &ra, b"secret").is_err());
        }
        let mut bad = pkt.clone();
        bad[HEADER_LEN + 1] = 1; // attribute length below 2
        assert_eq!(verify_reply(&bad, &ra, b"secret").unwrap_err(), ReplyError::Malformed);
    }
}
