//! [`Header`], the sum of the 18 PDU kinds' BHS (Basic Header Segment)
//! representations: parse any BHS by its opcode, emit any header.

use super::{
    AsyncMessage, DataIn, DataOut, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse,
    NopIn, NopOut, R2t, Reject, ScsiCommand, ScsiResponse, SnackRequest, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse,
};
use crate::wire::bhs::{Bhs, Opcode, BHS_LEN};
use crate::wire::error::WireError;

/// The header of any of the 18 PDU kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is documented by its Repr type
pub enum Header {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    SnackRequest(SnackRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
}

macro_rules! header_dispatch {
    ($self:expr, $h:ident => $e:expr) => {
        match $self {
            Header::NopOut($h) => $e,
            Header::ScsiCommand($h) => $e,
            Header::TaskMgmtRequest($h) => $e,
            Header::LoginRequest($h) => $e,
            Header::TextRequest($h) => $e,
            Header::DataOut($h) => $e,
            Header::LogoutRequest($h) => $e,
            Header::SnackRequest($h) => $e,
            Header::NopIn($h) => $e,
            Header::ScsiResponse($h) => $e,
            Header::TaskMgmtResponse($h) => $e,
            Header::LoginResponse($h) => $e,
            Header::TextResponse($h) => $e,
            Header::DataIn($h) => $e,
            Header::LogoutResponse($h) => $e,
            Header::R2t($h) => $e,
            Header::AsyncMessage($h) => $e,
            Header::Reject($h) => $e,
        }
    };
}

impl Header {
    /// Parses a BHS of any kind. No allocation, no copy beyond the fields.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Header, WireError> {
        Ok(match bhs.opcode()? {
            Opcode::NopOut => Header::NopOut(NopOut::parse(bhs)?),
            Opcode::ScsiCommand => Header::ScsiCommand(ScsiCommand::parse(bhs)?),
            Opcode::TaskMgmtRequest => Header::TaskMgmtRequest(TaskMgmtRequest::parse(bhs)?),
            Opcode::LoginRequest => Header::LoginRequest(LoginRequest::parse(bhs)?),
            Opcode::TextRequest => Header::TextRequest(TextRequest::parse(bhs)?),
            Opcode::DataOut => Header::DataOut(DataOut::parse(bhs)?),
            Opcode::LogoutRequest => Header::LogoutRequest(LogoutRequest::parse(bhs)?),
            Opcode::SnackRequest => Header::SnackRequest(SnackRequest::parse(bhs)?),
            Opcode::NopIn => Header::NopIn(NopIn::parse(bhs)?),
            Opcode::ScsiResponse => Header::ScsiResponse(ScsiResponse::parse(bhs)?),
            Opcode::TaskMgmtResponse => Header::TaskMgmtResponse(TaskMgmtResponse::parse(bhs)?),
            Opcode::LoginResponse => Header::LoginResponse(LoginResponse::parse(bhs)?),
            Opcode::TextResponse => Header::TextResponse(TextResponse::parse(bhs)?),
            Opcode::DataIn => Header::DataIn(DataIn::parse(bhs)?),
            Opcode::LogoutResponse => Header::LogoutResponse(LogoutResponse::parse(bhs)?),
            Opcode::R2t => Header::R2t(R2t::parse(bhs)?),
            Opcode::AsyncMessage => Header::AsyncMessage(AsyncMessage::parse(bhs)?),
            Opcode::Reject => Header::Reject(Reject::parse(bhs)?),
        })
    }

    /// Parses the first 48 bytes of `bytes` (checking the length).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Header, WireError> {
        Header::parse(&Bhs::new_checked(bytes)?)
    }

    /// Writes the BHS (all bytes except TotalAHSLength and DataSegmentLength).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        header_dispatch!(self, h => h.emit(bhs))
    }

    /// The opcode of this header.
    pub const fn opcode(&self) -> Opcode {
        match self {
            Header::NopOut(_) => Opcode::NopOut,
            Header::ScsiCommand(_) => Opcode::ScsiCommand,
            Header::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
            Header::LoginRequest(_) => Opcode::LoginRequest,
            Header::TextRequest(_) => Opcode::TextRequest,
            Header::DataOut(_) => Opcode::DataOut,
            Header::LogoutRequest(_) => Opcode::LogoutRequest,
            Header::SnackRequest(_) => Opcode::SnackRequest,
            Header::NopIn(_) => Opcode::NopIn,
            Header::ScsiResponse(_) => Opcode::ScsiResponse,
            Header::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
            Header::LoginResponse(_) => Opcode::LoginResponse,
            Header::TextResponse(_) => Opcode::TextResponse,
            Header::DataIn(_) => Opcode::DataIn,
            Header::LogoutResponse(_) => Opcode::LogoutResponse,
            Header::R2t(_) => Opcode::R2t,
            Header::AsyncMessage(_) => Opcode::AsyncMessage,
            Header::Reject(_) => Opcode::Reject,
        }
    }

    /// The Initiator Task Tag (0xffffffff for Asynchronous Message and Reject).
    pub const fn itt(&self) -> u32 {
        match self {
            Header::NopOut(h) => h.itt,
            Header::ScsiCommand(h) => h.itt,
            Header::TaskMgmtRequest(h) => h.itt,
            Header::LoginRequest(h) => h.itt,
            Header::TextRequest(h) => h.itt,
            Header::DataOut(h) => h.itt,
            Header::LogoutRequest(h) => h.itt,
            Header::SnackRequest(h) => h.itt,
            Header::NopIn(h) => h.itt,
            Header::ScsiResponse(h) => h.itt,
            Header::TaskMgmtResponse(h) => h.itt,
            Header::LoginResponse(h) => h.itt,
            Header::TextResponse(h) => h.itt,
            Header::DataIn(h) => h.itt,
            Header::LogoutResponse(h) => h.itt,
            Header::R2t(h) => h.itt,
            Header::AsyncMessage(_) | Header::Reject(_) => 0xffff_ffff,
        }
    }

    /// Whether the I (immediate) bit is set (always true for Login Request,
    /// false for PDUs without an I bit).
    pub const fn immediate(&self) -> bool {
        match self {
            Header::NopOut(h) => h.immediate,
            Header::ScsiCommand(h) => h.immediate,
            Header::TaskMgmtRequest(h) => h.immediate,
            Header::TextRequest(h) => h.immediate,
            Header::LogoutRequest(h) => h.immediate,
            Header::LoginRequest(_) => true,
            _ => false,
        }
    }

    /// Emits this header into a fresh 48-byte array with the given framing
    /// lengths (`total_ahs_words` in 4-byte words, `data_len` truncated to
    /// 24 bits).
    pub fn to_bytes(&self, total_ahs_words: u8, data_len: u32) -> [u8; BHS_LEN] {
        let mut out = [0u8; BHS_LEN];
        let mut v = Bhs::new_unchecked(&mut out[..]);
        self.emit(&mut v);
        v.set_total_ahs_len(total_ahs_words);
        v.set_data_segment_len(data_len);
        out
    }
}

macro_rules! header_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Header {
            #[inline]
            fn from(h: $t) -> Header { Header::$t(h) }
        }
    )*};
}
header_from!(
    NopOut,
    ScsiCommand,
    TaskMgmtRequest,
    LoginRequest,
    TextRequest,
    DataOut,
    LogoutRequest,
    SnackRequest,
    NopIn,
    ScsiResponse,
    TaskMgmtResponse,
    LoginResponse,
    TextResponse,
    DataIn,
    LogoutResponse,
    R2t,
    AsyncMessage,
    Reject
);
