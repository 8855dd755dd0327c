//! The wire layer: RFC 7143 section 11 PDUs, framing, digests, text keys and
//! serial-number arithmetic.

pub mod serial;
pub mod text;

pub use serial::Serial;
