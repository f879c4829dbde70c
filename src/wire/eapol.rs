//! EAPOL PDUs (IEEE 802.1X-2020 clause 11.3).
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+-------------------------------+
//! | Protocol Ver. | Packet Type   | Packet Body Length            |
//! +---------------+---------------+-------------------------------+
//! | Packet Body ...
//! ```

use super::{be16, DecodeError, Field};

mod field {
    use super::Field;
    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const BODY: usize = 4;
}

pub const HEADER_LEN: usize = field::BODY;

/// EAPOL Packet Type (IEEE 802.1X-2020 Table 11-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PacketType {
    EapPacket,
    Start,
    Logoff,
    Key,
    EncapsulatedAsfAlert,
    Mka,
    /// A type this implementation does not act on (announcements and newer ones).
    Unknown(u8),
}

impl From<u8> for PacketType {
    fn from(v: u8) -> Self {
        match v {
            0 => PacketType::EapPacket,
            1 => PacketType::Start,
            2 => PacketType::Logoff,
            3 => PacketType::Key,
            4 => PacketType::EncapsulatedAsfAlert,
            5 => PacketType::Mka,
            other => PacketType::Unknown(other),
        }
    }
}

impl From<PacketType> for u8 {
    fn from(v: PacketType) -> u8 {
        match v {
            PacketType::EapPacket => 0,
            PacketType::Start => 1,
            PacketType::Logoff => 2,
            PacketType::Key => 3,
            PacketType::EncapsulatedAsfAlert => 4,
            PacketType::Mka => 5,
            PacketType::Unknown(v) => v,
        }
    }
}

/// A read-only view of an EAPOL PDU whose length has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the header fits and that the body length field fits in the buffer.
    /// Octets after the body (Ethernet padding) are ignored.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let len = be16(b, field::LENGTH) as usize;
        if HEADER_LEN + len > b.len() {
            return Err(DecodeError::BadLength { field: len, available: b.len() - HEADER_LEN });
        }
        Ok(Packet { buffer })
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn packet_type(&self) -> PacketType {
        self.buffer.as_ref()[field::TYPE].into()
    }

    pub fn body_len(&self) -> usize {
        be16(self.buffer.as_ref(), field::LENGTH) as usize
    }

    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.body_len()]
    }
}

/// A high-level representation of an EAPOL PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub version: u8,
    pub packet_type: PacketType,
    pub body: &'a [u8],
}

impl<'a> Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &'a Packet<&'a T>) -> Repr<'a> {
        Repr { version: packet.version(), packet_type: packet.packet_type(), body: packet.body() }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Writes the PDU into `buf`, which must be at least `buffer_len()` long.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::VERSION] = self.version;
        buf[field::TYPE] = self.packet_type.into();
        buf[field::LENGTH].copy_from_slice(&(self.body.len() as u16).to_be_bytes());
        buf[HEADER_LEN..self.buffer_len()].copy_from_slice(self.body);
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

    // constructed (802.1X-2020 11.3): EAPOL-Start as wpa_supplicant sends it with eapol_version=2
    static START: [u8; 4] = [0x02, 0x01, 0x00, 0x00];
    // constructed: EAPOL-Logoff, version 2
    static LOGOFF: [u8; 4] = [0x02, 0x02, 0x00, 0x00];

    #[test]
    fn start_and_logoff() {
        let p = Packet::new_checked(&START[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!(r, Repr { version: 2, packet_type: PacketType::Start, body: &[] });
        assert_eq!(r.to_vec(), START);
        let p = Packet::new_checked(&LOGOFF[..]).unwrap();
        assert_eq!(Repr::parse(&p).packet_type, PacketType::Logoff);
    }

    #[test]
    fn padding_is_ignored_and_length_checked() {
        let mut padded = START.to_vec();
        padded.resize(46, 0);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.body(), &[] as &[u8]);
        assert_eq!(
            Packet::new_checked(&[2u8, 0, 0, 9, 1, 2][..]).unwrap_err(),
            DecodeError::BadLength { field: 9, available: 2 }
        );
        assert_eq!(Packet::new_checked(&[2u8, 0, 0][..]).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn emit_fills_every_field() {
        let body = [1u8, 2, 3];
        let r = Repr { version: 3, packet_type: PacketType::Unknown(9), body: &body };
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut buf);
        assert_eq!(buf, [3, 9, 0, 3, 1, 2, 3]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p), r);
    }

    #[test]
    fn every_type_code_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(PacketType::from(v)), v);
        }
    }
}
