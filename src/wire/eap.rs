//! EAP packets (RFC 3748 section 4), as carried in EAPOL and in RADIUS EAP-Message.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |  Type-Data ...   (Request and Response only)
//! ```
//! The authenticator passes methods through (RFC 3579): it reads Identity and the
//! code/identifier, and carries every other method opaquely.

use super::{be16, DecodeError, Field};

mod field {
    use super::Field;
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const TYPE: usize = 4;
    pub const TYPE_DATA: usize = 5;
}

pub const HEADER_LEN: usize = 4;

/// Method types of the tunnelled methods (IANA EAP registry), whose outer identity the
/// server never verifies: EAP-TTLS (RFC 5281), PEAP, EAP-FAST (RFC 4851), TEAP (RFC 7170).
pub const TYPE_TTLS: u8 = 21;
pub const TYPE_PEAP: u8 = 25;
pub const TYPE_FAST: u8 = 43;
pub const TYPE_TEAP: u8 = 55;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Code {
    Request,
    Response,
    Success,
    Failure,
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Self {
        match v {
            1 => Code::Request,
            2 => Code::Response,
            3 => Code::Success,
            4 => Code::Failure,
            other => Code::Unknown(other),
        }
    }
}

impl From<Code> for u8 {
    fn from(v: Code) -> u8 {
        match v {
            Code::Request => 1,
            Code::Response => 2,
            Code::Success => 3,
            Code::Failure => 4,
            Code::Unknown(v) => v,
        }
    }
}

/// Method types the authenticator itself understands; the rest are `Other` (RFC 3748 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Identity(&'a [u8]),
    Notification(&'a [u8]),
    /// Desired auth types of a Nak response.
    Nak(&'a [u8]),
    /// RFC 3748 5.4: Value-Size, Value, Name.
    Md5Challenge {
        value: &'a [u8],
        name: &'a [u8],
    },
    Other {
        method: u8,
        data: &'a [u8],
    },
}

impl<'a> Method<'a> {
    fn parse(ty: u8, data: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(match ty {
            1 => Method::Identity(data),
            2 => Method::Notification(data),
            3 => Method::Nak(data),
            4 => {
                let size = *data.first().ok_or(DecodeError::Truncated)? as usize;
                if 1 + size > data.len() {
                    return Err(DecodeError::BadLength { field: size, available: data.len() - 1 });
                }
                Method::Md5Challenge { value: &data[1..1 + size], name: &data[1 + size..] }
            }
            method => Method::Other { method, data },
        })
    }

    pub fn type_code(&self) -> u8 {
        match self {
            Method::Identity(_) => 1,
            Method::Notification(_) => 2,
            Method::Nak(_) => 3,
            Method::Md5Challenge { .. } => 4,
            Method::Other { method, .. } => *method,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Method::Identity(d) | Method::Notification(d) | Method::Nak(d) => d.len(),
            Method::Md5Challenge { value, name } => 1 + value.len() + name.len(),
            Method::Other { data, .. } => data.len(),
        }
    }

    fn emit(&self, buf: &mut [u8]) {
        match self {
            Method::Identity(d) | Method::Notification(d) | Method::Nak(d) => buf.copy_from_slice(d),
            Method::Md5Challenge { value, name } => {
                buf[0] = value.len() as u8;
                buf[1..1 + value.len()].copy_from_slice(value);
                buf[1 + value.len()..].copy_from_slice(name);
            }
            Method::Other { data, .. } => buf.copy_from_slice(data),
        }
    }
}

/// A checked view of an EAP packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let len = be16(b, field::LENGTH) as usize;
        if len < HEADER_LEN || len > b.len() {
            return Err(DecodeError::BadLength { field: len, available: b.len() });
        }
        let code = Code::from(b[field::CODE]);
        if matches!(code, Code::Request | Code::Response) && len <= field::TYPE {
            return Err(DecodeError::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn code(&self) -> Code {
        self.buffer.as_ref()[field::CODE].into()
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[field::IDENTIFIER]
    }

    pub fn len(&self) -> usize {
        be16(self.buffer.as_ref(), field::LENGTH) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// The packet's own octets, without any trailing padding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub code: Code,
    pub identifier: u8,
    /// Present for Request and Response.
    pub method: Option<Method<'a>>,
}

impl<'a> Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &'a Packet<&'a T>) -> Result<Repr<'a>, DecodeError> {
        let bytes = packet.as_bytes();
        let method = match packet.code() {
            Code::Request | Code::Response => Some(Method::parse(bytes[field::TYPE], &bytes[field::TYPE_DATA..])?),
            _ => None,
        };
        Ok(Repr { code: packet.code(), identifier: packet.identifier(), method })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.method.map_or(0, |m| 1 + m.data_len())
    }

    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        buf[field::CODE] = self.code.into();
        buf[field::IDENTIFIER] = self.identifier;
        buf[field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
        if let Some(m) = self.method {
            buf[field::TYPE] = m.type_code();
            m.emit(&mut buf[field::TYPE_DATA..len]);
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // constructed (RFC 3748 5.1): EAP-Response/Identity "alice" answering id 1
    static RESP_IDENTITY: [u8; 10] = [0x02, 0x01, 0x00, 0x0a, 0x01, b'a', b'l', b'i', b'c', b'e'];
    // constructed (RFC 3748 5.4): EAP-Request/MD5-Challenge, 16-octet value, no name
    static MD5_CHALLENGE: [u8; 22] = [
        0x01, 0x02, 0x00, 0x16, 0x04, 0x10, 0x6f, 0x0d, 0x8a, 0x5c, 0x21, 0x3e, 0x77, 0x01, 0x9b, 0xc4, 0x55, 0x10,
        0xe2, 0x38, 0xa9, 0x4f,
    ];
    static SUCCESS: [u8; 4] = [0x03, 0x02, 0x00, 0x04];

    #[test]
    fn identity_response() {
        let p = Packet::new_checked(&RESP_IDENTITY[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.code, Code::Response);
        assert_eq!(r.identifier, 1);
        assert_eq!(r.method, Some(Method::Identity(b"alice")));
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut buf);
        assert_eq!(buf, RESP_IDENTITY);
    }

    #[test]
    fn md5_challenge() {
        let p = Packet::new_checked(&MD5_CHALLENGE[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        match r.method {
            Some(Method::Md5Challenge { value, name }) => {
                assert_eq!(value.len(), 16);
                assert!(name.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.to_vec(), MD5_CHALLENGE);
    }

    #[test]
    fn success_has_no_type() {
        let p = Packet::new_checked(&SUCCESS[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r, Repr { code: Code::Success, identifier: 2, method: None });
        assert_eq!(r.to_vec(), SUCCESS);
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        assert_eq!(Packet::new_checked(&[1u8, 1, 0][..]).unwrap_err(), DecodeError::Truncated);
        assert!(matches!(Packet::new_checked(&[1u8, 1, 0, 2][..]), Err(DecodeError::BadLength { .. })));
        assert!(matches!(Packet::new_checked(&[1u8, 1, 0, 9, 1][..]), Err(DecodeError::BadLength { .. })));
        // a Request with no Type octet
        assert_eq!(Packet::new_checked(&[1u8, 1, 0, 4][..]).unwrap_err(), DecodeError::Truncated);
        // MD5 value size beyond the data
        let bad = [1u8, 1, 0, 7, 4, 9, 0];
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert!(Repr::parse(&p).is_err());
        // every prefix of a valid packet is handled
        for n in 0..MD5_CHALLENGE.len() {
            if let Ok(p) = Packet::new_checked(&MD5_CHALLENGE[..n]) {
                let _ = Repr::parse(&p);
            }
        }
    }

    #[test]
    fn opaque_methods_round_trip() {
        // PEAP (25) start: flags octet only
        let raw = [1u8, 7, 0, 6, 25, 0x20];
        let p = Packet::new_checked(&raw[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.method, Some(Method::Other { method: 25, data: &[0x20] }));
        assert_eq!(r.to_vec(), raw);
    }
}
