//! Ethernet II framing (IEEE 802.3 clause 3) and MAC addresses.

use super::{be16, DecodeError, Field};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address. Displays as `00:10:a4:23:19:c0`; RADIUS wants
/// `00-10-A4-23-19-C0` (RFC 3580 3.21), see [`MacAddr::radius`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The Port Access Entity group address (IEEE 802.1X-2020 11.1.1); never forwarded by a bridge.
    pub const PAE_GROUP: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x03]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Calling-Station-Id form: upper case, dash separated.
    pub fn radius(&self) -> String {
        let b = self.0;
        format!("{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}", b[0], b[1], b[2], b[3], b[4], b[5])
    }

    /// The Ethernet group address a multicast IP group maps to (RFC 1112 6.4,
    /// RFC 2464 7).
    pub fn for_group(group: std::net::IpAddr) -> MacAddr {
        match group {
            std::net::IpAddr::V4(g) => {
                let o = g.octets();
                MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
            }
            std::net::IpAddr::V6(g) => {
                let o = g.octets();
                MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
            }
        }
    }

    /// MAC-bypass User-Name form: lower case hex, no separators (`0010a42319c0`).
    pub fn bare(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address: {0:?}")]
pub struct BadMac(String);

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(BadMac(s.to_string()));
        }
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(BadMac(s.to_string()));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| BadMac(s.to_string()))?;
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_EAPOL: u16 = 0x888e;

mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// An Ethernet II frame as read from an AF_PACKET socket (VLAN tags already
/// taken off by the kernel and handed over beside the frame).
///
/// ```text
/// +----------------+----------------+-----------+---------
/// | destination(6) | source(6)      | type(2)   | payload
/// +----------------+----------------+-----------+---------
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        if buffer.as_ref().len() < field::PAYLOAD {
            return Err(DecodeError::Truncated);
        }
        Ok(Frame { buffer })
    }

    pub fn dst(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::DST)
    }

    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SRC)
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

fn mac_at(b: &[u8], f: Field) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[f]);
    MacAddr(m)
}

/// Builds an Ethernet II frame around `payload`.
pub fn emit_frame(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field::PAYLOAD + payload.len());
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad (Q-in-Q): a service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// An Ethernet II frame around `payload`, with an 802.1Q tag of VLAN `vlan` (priority 0)
/// when given.
pub fn emit_frame_in(vlan: Option<u16>, dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    emit_frame_tagged(ETHERTYPE_VLAN, vlan, dst, src, ethertype, payload)
}

/// ... with a tag of protocol `tpid` (802.1Q's 0x8100 or 802.1ad's 0x88a8).
pub fn emit_frame_tagged(
    tpid: u16,
    vlan: Option<u16>,
    dst: MacAddr,
    src: MacAddr,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let Some(vid) = vlan else { return emit_frame(dst, src, ethertype, payload) };
    let mut out = Vec::with_capacity(field::PAYLOAD + 4 + payload.len());
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let m: MacAddr = "00:10:a4:23:19:c0".parse().unwrap();
        assert_eq!(m.radius(), "00-10-A4-23-19-C0");
        assert_eq!(m.bare(), "0010a42319c0");
        assert_eq!(m.to_string(), "00:10:a4:23:19:c0");
        assert_eq!("00-10-A4-23-19-C0".parse::<MacAddr>().unwrap(), m);
        assert!("00:10:a4:23:19".parse::<MacAddr>().is_err());
        assert!("00:10:a4:23:19:zz".parse::<MacAddr>().is_err());
        assert!(MacAddr::PAE_GROUP.is_multicast());
        assert_eq!(MacAddr::for_group("224.0.0.22".parse().unwrap()).to_string(), "01:00:5e:00:00:16");
        assert_eq!(MacAddr::for_group("239.129.1.2".parse().unwrap()).to_string(), "01:00:5e:01:01:02");
        assert_eq!(MacAddr::for_group("ff02::16".parse().unwrap()).to_string(), "33:33:00:00:00:16");
    }

    #[test]
    fn a_tagged_frame_carries_its_vlan() {
        let f = emit_frame_in(Some(100), MacAddr::PAE_GROUP, MacAddr([2, 0, 0, 0, 0, 1]), ETHERTYPE_IPV4, &[1]);
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
        let f =
            emit_frame_tagged(ETHERTYPE_QINQ, Some(100), MacAddr::PAE_GROUP, MacAddr([2, 0, 0, 0, 0, 1]), 0x0800, &[1]);
        assert_eq!(&f[12..18], &[0x88, 0xa8, 0x00, 100, 0x08, 0x00]);
        assert_eq!(emit_frame_in(None, MacAddr::PAE_GROUP, MacAddr::PAE_GROUP, 1, &[]).len(), 14);
    }

    #[test]
    fn frame_round_trip() {
        let f = emit_frame(MacAddr::PAE_GROUP, MacAddr([2, 0, 0, 0, 0, 1]), ETHERTYPE_EAPOL, &[1, 2]);
        let p = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(p.dst(), MacAddr::PAE_GROUP);
        assert_eq!(p.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.ethertype(), ETHERTYPE_EAPOL);
        assert_eq!(p.payload(), &[1, 2]);
        assert_eq!(Frame::new_checked(&f[..13]).unwrap_err(), DecodeError::Truncated);
    }
}
