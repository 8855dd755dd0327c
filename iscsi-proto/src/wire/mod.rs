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
