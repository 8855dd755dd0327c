//! The wire layer: RFC 7143 section 11 PDUs (Protocol Data Units), framing,
//! digests, text keys and serial-number arithmetic.
//!
//! - [`bhs`]: [`Bhs`], a zero-copy checked view over the 48-byte Basic
//!   Header Segment, and [`Opcode`].
//! - [`pdu`]: one `Repr` per PDU kind, their field enums, and [`Header`].
//! - [`ahs`]: Additional Header Segments.
//! - [`digest`]: CRC32C header and data digests.
//! - [`frame`]: PDU lengths, the zero-copy encoder ([`encode_header`],
//!   [`data_trailer`]), [`Pdu`] and [`RawPdu`].
//! - [`decoder`]: the streaming [`PduDecoder`].
//! - [`error`]: the error type, [`WireError`].

/// Defines an enum of RFC 7143 one-byte code values with an `Other(u8)`
/// variant, `from_u8`/`to_u8` and `From<u8>` (used by `error` and `pdu`).
macro_rules! code_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident, section $sec:literal {
            $( $(#[$vm:meta])* $var:ident = $val:literal, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            #[doc = concat!(
                "A value RFC 7143 section ", $sec,
                " reserves or leaves to vendors, kept as received. \
                 [`", stringify!($name), "::from_u8`] never puts a named value here."
            )]
            Other(u8),
        }

        impl $name {
            /// Decodes the wire value; values without a name become `Other`.
            #[inline]
            pub const fn from_u8(v: u8) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    other => $name::Other(other),
                }
            }

            /// The wire value.
            #[inline]
            pub const fn to_u8(self) -> u8 {
                match self {
                    $( $name::$var => $val, )*
                    $name::Other(v) => v,
                }
            }
        }

        impl From<u8> for $name {
            #[inline]
            fn from(v: u8) -> Self {
                $name::from_u8(v)
            }
        }
    };
}

pub mod ahs;
pub mod bhs;
pub mod decoder;
pub mod digest;
pub mod error;
pub mod frame;
pub mod pdu;
pub mod serial;
pub mod text;

pub use ahs::Ahs;
pub use bhs::{Bhs, Opcode, BHS_LEN};
pub use decoder::{DecoderConfig, PduDecoder};
pub use error::WireError;
pub use frame::{data_trailer, encode_header, pdu_len, DataTrailer, Digests, Pdu, RawPdu};
pub use pdu::{
    split_sense, AsyncEvent, AsyncMessage, DataIn, DataInStatus, DataOut, Header, Isid, IsidType,
    LoginRequest, LoginResponse, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    NopIn, NopOut, R2t, Reject, RejectReason, Residual, ScsiCommand, ScsiResponse,
    ScsiResponseCode, SenseAndResponse, SnackRequest, SnackType, Stage, TaskAttr, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse, TmfFunction, TmfResponse,
};
pub use serial::Serial;
