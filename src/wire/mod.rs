//! Bytes ↔ types. No I/O, no tokio: every decoder here takes untrusted input and
//! returns a `DecodeError` instead of panicking.

pub mod eap;
pub mod eapol;
pub mod ethernet;
pub mod igmp;
pub mod ip;
pub mod membership;
pub mod mld;
pub mod records;

pub use ethernet::MacAddr;

/// Why a frame could not be decoded. Small and string-free: a bad frame is an event
/// to count, not an error to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("bad length field {field} for {available} octets")]
    BadLength { field: usize, available: usize },
    #[error("unknown code point {0}")]
    Unknown(u8),
}

/// Lower-case hex, as attribute values are kept in the store and the export.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The octets of [`hex`]'s output; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub type Field = core::ops::Range<usize>;

pub(crate) fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}
