//! Group records, shared by IGMPv3 (RFC 9776 4.2.4) and MLDv2 (RFC 3810 5.2.4):
//!
//! ```text
//! +---------------+---------------+-------------------------------+
//! |  Record Type  |  Aux Data Len |     Number of Sources (N)     |
//! +---------------+---------------+-------------------------------+
//! |            Multicast Address (4 or 16 octets)                 |
//! |            Source Address [1..N] (4 or 16 octets each)        |
//! |            Auxiliary Data (Aux Data Len 32-bit words)         |
//! ```

use super::{be16, u16_field, DecodeError, EncodeError};
use std::net::{Ipv4Addr, Ipv6Addr};

pub trait Addr: Copy + std::fmt::Debug + PartialEq + Eq + std::hash::Hash + Ord + 'static {
    const LEN: usize;
    fn from_octets(b: &[u8]) -> Self;
    /// Writes the address into `out[..LEN]`.
    fn write_octets(&self, out: &mut [u8]);
}

impl Addr for Ipv4Addr {
    const LEN: usize = 4;
    fn from_octets(b: &[u8]) -> Self {
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    fn write_octets(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.octets())
    }
}

impl Addr for Ipv6Addr {
    const LEN: usize = 16;
    fn from_octets(b: &[u8]) -> Self {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        o.into()
    }
    fn write_octets(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.octets())
    }
}

/// Record Type (RFC 9776 4.2.12, RFC 3810 5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RecordType {
    /// MODE_IS_INCLUDE
    IsIn,
    /// MODE_IS_EXCLUDE
    IsEx,
    /// CHANGE_TO_INCLUDE_MODE
    ToIn,
    /// CHANGE_TO_EXCLUDE_MODE
    ToEx,
    /// ALLOW_NEW_SOURCES
    Allow,
    /// BLOCK_OLD_SOURCES
    Block,
    Unknown(u8),
}

impl From<u8> for RecordType {
    fn from(v: u8) -> Self {
        match v {
            1 => RecordType::IsIn,
            2 => RecordType::IsEx,
            3 => RecordType::ToIn,
            4 => RecordType::ToEx,
            5 => RecordType::Allow,
            6 => RecordType::Block,
            o => RecordType::Unknown(o),
        }
    }
}

impl From<RecordType> for u8 {
    fn from(v: RecordType) -> u8 {
        match v {
            RecordType::IsIn => 1,
            RecordType::IsEx => 2,
            RecordType::ToIn => 3,
            RecordType::ToEx => 4,
            RecordType::Allow => 5,
            RecordType::Block => 6,
            RecordType::Unknown(o) => o,
        }
    }
}

/// One group record, its sources borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a, A: Addr> {
    pub record_type: RecordType,
    pub group: A,
    sources: &'a [u8],
    _a: std::marker::PhantomData<A>,
}

impl<'a, A: Addr> Record<'a, A> {
    pub fn sources(&self) -> impl ExactSizeIterator<Item = A> + 'a {
        self.sources.chunks_exact(A::LEN).map(A::from_octets)
    }
}

/// Checks the record area of a report (`n` records) and iterates over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records<'a, A: Addr> {
    rest: &'a [u8],
    left: usize,
    _a: std::marker::PhantomData<A>,
}

impl<'a, A: Addr> Records<'a, A> {
    /// Validates that `n` records fit in `b` exactly as their lengths say.
    pub fn new_checked(b: &'a [u8], n: usize) -> Result<Self, DecodeError> {
        let mut at = 0;
        for _ in 0..n {
            at += record_len::<A>(&b[at.min(b.len())..])?;
        }
        Ok(Records { rest: &b[..at], left: n, _a: std::marker::PhantomData })
    }

    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

fn record_len<A: Addr>(b: &[u8]) -> Result<usize, DecodeError> {
    if b.len() < 4 + A::LEN {
        return Err(DecodeError::Truncated);
    }
    let len = 4 + A::LEN * (1 + be16(b, 2..4) as usize) + 4 * b[1] as usize;
    if len > b.len() {
        return Err(DecodeError::BadLength { field: len, available: b.len() });
    }
    Ok(len)
}

impl<'a, A: Addr> Iterator for Records<'a, A> {
    type Item = Record<'a, A>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let b = self.rest;
        let len = record_len::<A>(b).ok()?; // checked in new_checked
        let n = be16(b, 2..4) as usize;
        let r = Record {
            record_type: b[0].into(),
            group: A::from_octets(&b[4..]),
            sources: &b[4 + A::LEN..4 + A::LEN * (1 + n)],
            _a: std::marker::PhantomData,
        };
        self.rest = &b[len..];
        self.left -= 1;
        Some(r)
    }
}

/// An owned record for emitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord<A: Addr> {
    pub record_type: RecordType,
    pub group: A,
    pub sources: Vec<A>,
}

impl<A: Addr> OwnedRecord<A> {
    /// Octets of the record: header, group, sources (no auxiliary data).
    pub fn buffer_len(&self) -> usize {
        4 + A::LEN * (1 + self.sources.len())
    }
}

/// Octets of `records` emitted one after another.
pub fn records_len<A: Addr>(records: &[OwnedRecord<A>]) -> usize {
    records.iter().map(OwnedRecord::buffer_len).sum()
}

/// Writes `records` into `buf`, which holds [`records_len`] octets (the caller checked).
pub fn emit_records<A: Addr>(records: &[OwnedRecord<A>], buf: &mut [u8]) -> Result<(), EncodeError> {
    let mut at = 0;
    for r in records {
        let b = &mut buf[at..at + r.buffer_len()];
        b[0] = r.record_type.into();
        b[1] = 0;
        b[2..4].copy_from_slice(&u16_field("sources of a group record", r.sources.len())?);
        r.group.write_octets(&mut b[4..]);
        for (i, s) in r.sources.iter().enumerate() {
            s.write_octets(&mut b[4 + A::LEN * (1 + i)..]);
        }
        at += r.buffer_len();
    }
    Ok(())
}
