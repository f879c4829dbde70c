//! The IPv4 and IPv6 headers as far as IGMP and MLD need them: IPv4 with its options
//! (Router Alert, RFC 2113), IPv6 with a Hop-by-Hop header carrying Router Alert
//! (RFC 2711) in front of ICMPv6, and the Internet checksum (RFC 1071).

use super::{be16, room, u16_field, DecodeError, EncodeError};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const PROTO_HOPOPT: u8 = 0;
pub const PROTO_IGMP: u8 = 2;
pub const PROTO_ICMPV6: u8 = 58;

/// One's-complement sum of 16-bit words (RFC 1071), not yet complemented.
pub fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`; 0 when `data` carries a correct checksum.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(0, data))
}

/// ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 8.1) and `data`.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> u16 {
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc += data.len() as u32;
    acc += PROTO_ICMPV6 as u32;
    fold(sum16(acc, data))
}

/// What the IPv4 header of an IGMP message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub router_alert: bool,
    pub checksum_ok: bool,
}

/// Parses an IPv4 header; returns it and the payload (bounded by Total Length).
pub fn parse_ipv4(b: &[u8]) -> Result<(Ipv4Info, &[u8]), DecodeError> {
    if b.len() < 20 {
        return Err(DecodeError::Truncated);
    }
    if b[0] >> 4 != 4 {
        return Err(DecodeError::Unknown(b[0] >> 4));
    }
    let ihl = (b[0] & 0x0f) as usize * 4;
    let total = be16(b, 2..4) as usize;
    if ihl < 20 || total < ihl || total > b.len() {
        return Err(DecodeError::BadLength { field: total, available: b.len() });
    }
    // Fragments are not IGMP messages the switch can read whole.
    if be16(b, 6..8) & 0x3fff != 0 {
        return Err(DecodeError::Unknown(b[9]));
    }
    let mut router_alert = false;
    let mut opts = &b[20..ihl];
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let len = *opts.get(1).ok_or(DecodeError::Truncated)? as usize;
                if len < 2 || len > opts.len() {
                    return Err(DecodeError::BadLength { field: len, available: opts.len() });
                }
                router_alert |= kind == 0x94 && len == 4;
                opts = &opts[len..];
            }
        }
    }
    let info = Ipv4Info {
        src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        ttl: b[8],
        protocol: b[9],
        router_alert,
        checksum_ok: checksum(&b[..ihl]) == 0,
    };
    Ok((info, &b[ihl..total]))
}

/// The IPv4 header IGMP goes out with: Router Alert (RFC 2113), TTL 1, Don't Fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    pub payload_len: usize,
}

impl Ipv4Repr {
    pub const HEADER_LEN: usize = 24;

    /// The whole packet's length.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.payload_len
    }

    /// Writes the header into `buf[..HEADER_LEN]`; the payload goes after it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), EncodeError> {
        let total = u16_field("IPv4 total length", self.buffer_len())?;
        let h = room(buf, Self::HEADER_LEN)?;
        h[..12].copy_from_slice(&[0x46, self.tos, total[0], total[1], 0, 0, 0x40, 0, 1, self.protocol, 0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        h[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Info {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// Router Alert with value 0 (MLD) in the Hop-by-Hop header.
    pub router_alert: bool,
    /// The upper-layer protocol after the Hop-by-Hop header.
    pub next_header: u8,
}

/// Parses an IPv6 header and a Hop-by-Hop header if present; returns them and the
/// upper-layer payload.
pub fn parse_ipv6(b: &[u8]) -> Result<(Ipv6Info, &[u8]), DecodeError> {
    if b.len() < 40 {
        return Err(DecodeError::Truncated);
    }
    if b[0] >> 4 != 6 {
        return Err(DecodeError::Unknown(b[0] >> 4));
    }
    let plen = be16(b, 4..6) as usize;
    if 40 + plen > b.len() {
        return Err(DecodeError::BadLength { field: plen, available: b.len() - 40 });
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&b[24..40]);
    let mut info =
        Ipv6Info { src: src.into(), dst: dst.into(), hop_limit: b[7], router_alert: false, next_header: b[6] };
    let mut payload = &b[40..40 + plen];
    if info.next_header == PROTO_HOPOPT {
        if payload.len() < 8 {
            return Err(DecodeError::Truncated);
        }
        let len = (payload[1] as usize + 1) * 8;
        if len > payload.len() {
            return Err(DecodeError::BadLength { field: len, available: payload.len() });
        }
        info.next_header = payload[0];
        let mut opts = &payload[2..len];
        while let Some(&ty) = opts.first() {
            if ty == 0 {
                opts = &opts[1..]; // Pad1
                continue;
            }
            let olen = *opts.get(1).ok_or(DecodeError::Truncated)? as usize;
            if 2 + olen > opts.len() {
                return Err(DecodeError::BadLength { field: olen, available: opts.len() });
            }
            info.router_alert |= ty == 5 && olen == 2 && opts[2..4] == [0, 0];
            opts = &opts[2 + olen..];
        }
        payload = &payload[len..];
    }
    Ok((info, payload))
}

/// The IPv6 header MLD goes out with: hop limit 1 and a Hop-by-Hop header with Router
/// Alert (RFC 2711), in front of ICMPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6MldRepr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub payload_len: usize,
}

impl Ipv6MldRepr {
    /// The fixed header (40) and the Hop-by-Hop header (8).
    pub const HEADER_LEN: usize = 48;

    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.payload_len
    }

    /// Writes both headers into `buf[..HEADER_LEN]`; the ICMPv6 message goes after them.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), EncodeError> {
        let len = u16_field("IPv6 payload length", 8 + self.payload_len)?;
        let h = room(buf, Self::HEADER_LEN)?;
        h[..8].copy_from_slice(&[0x60, 0, 0, 0, len[0], len[1], PROTO_HOPOPT, 1]);
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        // Next Header ICMPv6, length 0 (8 octets): Router Alert (MLD), PadN
        h[40..48].copy_from_slice(&[PROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(224, 0, 0, 22));
        let r = Ipv4Repr { src, dst, protocol: PROTO_IGMP, tos: 0xc0, payload_len: payload.len() };
        let mut p = vec![0; r.buffer_len()];
        r.emit(&mut p).unwrap();
        p[Ipv4Repr::HEADER_LEN..].copy_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_round_trip_with_router_alert() {
        let p = ipv4(&[1, 2, 3, 4]);
        let (info, payload) = parse_ipv4(&p).unwrap();
        assert!(info.router_alert && info.checksum_ok);
        assert_eq!((info.ttl, info.protocol), (1, PROTO_IGMP));
        assert_eq!(payload, &[1, 2, 3, 4]);
        let mut bad = p.clone();
        bad[12] ^= 1;
        assert!(!parse_ipv4(&bad).unwrap().0.checksum_ok);
        for n in 0..p.len() {
            let _ = parse_ipv4(&p[..n]);
        }
    }

    #[test]
    fn ipv6_hop_by_hop_router_alert() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::16".parse().unwrap();
        let r = Ipv6MldRepr { src, dst, payload_len: 4 };
        let mut p = vec![0; r.buffer_len()];
        r.emit(&mut p).unwrap();
        p[Ipv6MldRepr::HEADER_LEN..].copy_from_slice(&[143, 0, 0, 0]);
        let (info, payload) = parse_ipv6(&p).unwrap();
        assert!(info.router_alert);
        assert_eq!((info.next_header, info.hop_limit), (PROTO_ICMPV6, 1));
        assert_eq!(payload, &[143, 0, 0, 0]);
        for n in 0..p.len() {
            let _ = parse_ipv6(&p[..n]);
        }
    }

    #[test]
    fn lengths_the_header_cannot_hold_and_short_buffers_are_refused() {
        let (src, dst) = (Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
        let r = Ipv4Repr { src, dst, protocol: PROTO_IGMP, tos: 0, payload_len: 65_535 - 24 + 1 };
        assert_eq!(r.emit(&mut [0; 24]), Err(EncodeError::TooMany { what: "IPv4 total length", n: 65_536 }));
        let r = Ipv4Repr { payload_len: 0, ..r };
        assert_eq!(r.emit(&mut [0; 23]), Err(EncodeError::Buffer { need: 24, have: 23 }));
        let r = Ipv6MldRepr { src: Ipv6Addr::LOCALHOST, dst: Ipv6Addr::LOCALHOST, payload_len: 65_535 - 8 + 1 };
        assert!(matches!(r.emit(&mut [0; 48]), Err(EncodeError::TooMany { .. })));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 4.1: the sum of 0001 f203 f4f5 f6f7 is ddf2
        assert_eq!(fold(sum16(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), !0xddf2);
    }
}
