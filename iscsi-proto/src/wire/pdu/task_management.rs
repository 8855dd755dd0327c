//! Task management PDUs: Task Management Function Request and Response
//! (RFC 7143 sections 11.5 and 11.6) and their function and response codes.

use super::no_segments;
use crate::wire::bhs::{Bhs, Opcode};
use crate::wire::error::WireError;
use crate::wire::serial::Serial;

code_enum! {
    /// Task Management function codes (RFC 7143 section 11.5.1). Unknown
    /// codes are kept: the target answers them with response 5, "Task
    /// management function not supported" (section 11.6.1).
    pub enum TmfFunction, section "11.5.1" {
        /// 1: ABORT TASK.
        AbortTask = 1,
        /// 2: ABORT TASK SET.
        AbortTaskSet = 2,
        /// 3: CLEAR ACA.
        ClearAca = 3,
        /// 4: CLEAR TASK SET.
        ClearTaskSet = 4,
        /// 5: LOGICAL UNIT RESET.
        LogicalUnitReset = 5,
        /// 6: TARGET WARM RESET.
        TargetWarmReset = 6,
        /// 7: TARGET COLD RESET.
        TargetColdReset = 7,
        /// 8: TASK REASSIGN.
        TaskReassign = 8,
    }
}

code_enum! {
    /// Task Management Function Response codes (RFC 7143 section 11.6.1).
    pub enum TmfResponse, section "11.6.1" {
        /// 0: Function complete.
        FunctionComplete = 0,
        /// 1: Task does not exist.
        TaskDoesNotExist = 1,
        /// 2: LUN does not exist.
        LunDoesNotExist = 2,
        /// 3: Task still allegiant.
        TaskStillAllegiant = 3,
        /// 4: Task allegiance reassignment not supported.
        ReassignmentNotSupported = 4,
        /// 5: Task management function not supported.
        NotSupported = 5,
        /// 6: Function authorization failed.
        AuthorizationFailed = 6,
        /// 255: Function rejected.
        Rejected = 255,
    }
}
/// Task Management Function Request (RFC 7143 section 11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Function (section 11.5.1).
    pub function: TmfFunction,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Referenced Task Tag (section 11.5.4), 0xffffffff when unused.
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// RefCmdSN (section 11.5.5).
    pub ref_cmd_sn: Serial,
    /// ExpDataSN (section 11.5.6).
    pub exp_data_sn: Serial,
}

impl TaskMgmtRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.5.2: "For this PDU TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Task Management Function Request", "11.5.2")?;
        Ok(TaskMgmtRequest {
            immediate: bhs.immediate(),
            function: TmfFunction::from_u8(bhs.flags() & 0x7f),
            lun: bhs.lun(),
            itt: bhs.itt(),
            referenced_task_tag: bhs.word20(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            ref_cmd_sn: Serial(bhs.word32()),
            exp_data_sn: Serial(bhs.word36()),
        })
    }

    /// Writes the BHS (except bytes 4-7). `function` is truncated to 7 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TaskMgmtRequest, self.immediate);
        bhs.set_flags(0x80 | (self.function.to_u8() & 0x7f));
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.referenced_task_tag);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word32(self.ref_cmd_sn.0);
        bhs.set_word36(self.exp_data_sn.0);
    }
}
/// Task Management Function Response (RFC 7143 section 11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtResponse {
    /// Response (section 11.6.1).
    pub response: TmfResponse,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
}

impl TaskMgmtResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.6.3: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Task Management Function Response", "11.6.3")?;
        Ok(TaskMgmtResponse {
            response: TmfResponse::from_u8(bhs.byte2()),
            itt: bhs.itt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TaskMgmtResponse, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.response.to_u8());
        bhs.set_itt(self.itt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
    }
}
