//! Bytes ↔ types. No I/O, no tokio: every decoder here takes untrusted input and
//! returns a `DecodeError` instead of panicking. Messages are sent from a `Repr` (what
//! the message says) that knows its `buffer_len` and emits into the caller's buffer,
//! refusing with an `EncodeError` a count its field cannot hold (smoltcp's layout).

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

/// Why a message could not be encoded: a count or a length its field cannot hold, or
/// a buffer shorter than the message's `buffer_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{what}: {n} does not fit its 16-bit field")]
    TooMany { what: &'static str, n: usize },
    #[error("buffer of {have} octets for {need}")]
    Buffer { need: usize, have: usize },
}

/// `n` as a 16-bit field, or the error naming `what` it counts.
pub(crate) fn u16_field(what: &'static str, n: usize) -> Result<[u8; 2], EncodeError> {
    u16::try_from(n).map(u16::to_be_bytes).map_err(|_| EncodeError::TooMany { what, n })
}

/// `buf` if it holds `need` octets.
pub(crate) fn room(buf: &mut [u8], need: usize) -> Result<&mut [u8], EncodeError> {
    let have = buf.len();
    buf.get_mut(..need).ok_or(EncodeError::Buffer { need, have })
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
