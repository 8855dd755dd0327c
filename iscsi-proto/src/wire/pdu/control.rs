//! Session and connection control PDUs: NOP-Out and NOP-In (RFC 7143
//! sections 11.18 and 11.19), Logout Request and Response (11.14, 11.15),
//! SNACK Request (11.16), Asynchronous Message (11.9) and Reject (11.17),
//! with their reason and event codes.

use super::no_segments;
use crate::wire::bhs::{Bhs, Opcode};
use crate::wire::error::{RejectReason, WireError};
use crate::wire::serial::Serial;

code_enum! {
    /// Logout Request reason codes (RFC 7143 section 11.14.1, 7 bits).
    pub enum LogoutReason, section "11.14.1" {
        /// 0: close the session.
        CloseSession = 0,
        /// 1: close the connection.
        CloseConnection = 1,
        /// 2: remove the connection for recovery.
        RemoveForRecovery = 2,
    }
}

code_enum! {
    /// Logout Response codes (RFC 7143 section 11.15.1).
    pub enum LogoutResponseCode, section "11.15.1" {
        /// 0: connection or session closed successfully.
        Success = 0,
        /// 1: CID not found.
        CidNotFound = 1,
        /// 2: connection recovery is not supported.
        RecoveryNotSupported = 2,
        /// 3: cleanup failed for various reasons.
        CleanupFailed = 3,
    }
}
code_enum! {
    /// Asynchronous Message event codes (RFC 7143 section 11.9.1).
    pub enum AsyncEvent, section "11.9.1" {
        /// 0: a SCSI asynchronous event is reported in the sense data.
        ScsiEvent = 0,
        /// 1: the target requests a logout.
        LogoutRequested = 1,
        /// 2: the target will drop the connection.
        DropConnection = 2,
        /// 3: the target will drop all connections of the session.
        DropAllConnections = 3,
        /// 4: the target requests parameter negotiation.
        NegotiationRequested = 4,
        /// 255: vendor specific.
        VendorSpecific = 255,
    }
}

code_enum! {
    /// SNACK types (RFC 7143 section 11.16.1, 4 bits).
    pub enum SnackType, section "11.16.1" {
        /// 0: Data/R2T SNACK.
        DataR2t = 0,
        /// 1: Status SNACK.
        Status = 1,
        /// 2: DataACK.
        DataAck = 2,
        /// 3: R-Data SNACK.
        RData = 3,
    }
}
/// NOP-Out (RFC 7143 section 11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopOut {
    /// I: immediate delivery.
    pub immediate: bool,
    /// LUN (echoed from a NOP-In when answering one).
    pub lun: u64,
    /// Initiator Task Tag; 0xffffffff when no response is wanted.
    pub itt: u32,
    /// Target Transfer Tag; a copy of the NOP-In's when answering one.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

impl NopOut {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let r = NopOut {
            immediate: bhs.immediate(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        };
        // RFC 7143 section 11.18.1: "If the Initiator Task Tag contains
        // 0xffffffff, the I bit MUST be set to 1".
        if r.itt == 0xffff_ffff && !r.immediate {
            return Err(WireError::ForbiddenFlags {
                pdu: "NOP-Out",
                rule: "ITT 0xffffffff requires I=1",
                section: "11.18.1",
            });
        }
        Ok(r)
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::NopOut, self.immediate);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}
/// Logout Request (RFC 7143 section 11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Reason code (section 11.14.1).
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close (not used for "close the session").
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

impl LogoutRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.14.2: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Logout Request", "11.14.2")?;
        Ok(LogoutRequest {
            immediate: bhs.immediate(),
            reason: LogoutReason::from_u8(bhs.flags() & 0x7f),
            itt: bhs.itt(),
            cid: bhs.cid(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7). `reason` is truncated to 7 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::LogoutRequest, self.immediate);
        bhs.set_flags(0x80 | (self.reason.to_u8() & 0x7f));
        bhs.set_itt(self.itt);
        bhs.set_cid(self.cid);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}

/// SNACK Request (RFC 7143 section 11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnackRequest {
    /// Type (section 11.16.1), 4 bits.
    pub snack_type: SnackType,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for Status SNACK).
    pub itt: u32,
    /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data).
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// BegRun: first DataSN, R2TSN or StatSN to resend (section 11.16.6).
    pub beg_run: Serial,
    /// RunLength (section 11.16.7), 0 for "all from BegRun".
    pub run_length: u32,
}

impl SnackRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(SnackRequest {
            snack_type: SnackType::from_u8(bhs.flags() & 0x0f),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt_or_snack_tag: bhs.word20(),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            beg_run: Serial(bhs.word40()),
            run_length: bhs.word44(),
        })
    }

    /// Writes the BHS (except bytes 4-7). `snack_type` is truncated to 4 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::SnackRequest, false);
        bhs.set_flags(0x80 | (self.snack_type.to_u8() & 0x0f));
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.ttt_or_snack_tag);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word40(self.beg_run.0);
        bhs.set_word44(self.run_length);
    }
}

/// NOP-In (RFC 7143 section 11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopIn {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff when target-initiated).
    pub itt: u32,
    /// Target Transfer Tag (not 0xffffffff when a reply is wanted).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
}

impl NopIn {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(NopIn {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::NopIn, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
    }
}
/// Logout Response (RFC 7143 section 11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutResponse {
    /// Response (section 11.15.1).
    pub response: LogoutResponseCode,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// Time2Wait in seconds (section 11.15.3).
    pub time2wait: u16,
    /// Time2Retain in seconds (section 11.15.4).
    pub time2retain: u16,
}

impl LogoutResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.15.2: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Logout Response", "11.15.2")?;
        Ok(LogoutResponse {
            response: LogoutResponseCode::from_u8(bhs.byte2()),
            itt: bhs.itt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            time2wait: bhs.half40(),
            time2retain: bhs.half42(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::LogoutResponse, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.response.to_u8());
        bhs.set_itt(self.itt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_half40(self.time2wait);
        bhs.set_half42(self.time2retain);
    }
}
/// Asynchronous Message (RFC 7143 section 11.9). Its ITT is always
/// 0xffffffff on the wire. The data segment holds SenseLength, sense data
/// and iSCSI event data ([`split_sense`](super::split_sense)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsyncMessage {
    /// LUN (valid for SCSI async events).
    pub lun: u64,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// AsyncEvent (section 11.9.1).
    pub event: AsyncEvent,
    /// AsyncVCode (vendor code).
    pub vcode: u8,
    /// Parameter1 (e.g. CID for events 2 and 4... see section 11.9.1).
    pub parameter1: u16,
    /// Parameter2 (Time2Wait for events 1-3).
    pub parameter2: u16,
    /// Parameter3 (Time2Retain for events 2-3).
    pub parameter3: u16,
}

impl AsyncMessage {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(AsyncMessage {
            lun: bhs.lun(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            event: AsyncEvent::from_u8(bhs.byte36()),
            vcode: bhs.byte37(),
            parameter1: bhs.half38(),
            parameter2: bhs.half40(),
            parameter3: bhs.half42(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::AsyncMessage, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        // RFC 7143 section 11.9: the Initiator Task Tag is 0xffffffff.
        bhs.set_itt(0xffff_ffff);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_byte36(self.event.to_u8());
        bhs.set_byte37(self.vcode);
        bhs.set_half38(self.parameter1);
        bhs.set_half40(self.parameter2);
        bhs.set_half42(self.parameter3);
    }
}

/// Reject (RFC 7143 section 11.17). Its ITT is always 0xffffffff on the
/// wire; the data segment carries the complete header of the bad PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reject {
    /// Reason (section 11.17.1).
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// DataSN/R2TSN of the rejected PDU for SNACK rejects (section 11.17.2).
    pub data_sn_or_r2t_sn: Serial,
}

impl Reject {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(Reject {
            reason: RejectReason::from_u8(bhs.byte2()),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            data_sn_or_r2t_sn: Serial(bhs.word36()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::Reject, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.reason.to_u8());
        // RFC 7143 section 11.17: the Initiator Task Tag is 0xffffffff.
        bhs.set_itt(0xffff_ffff);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.data_sn_or_r2t_sn.0);
    }
}
