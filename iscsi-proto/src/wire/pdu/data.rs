//! Data transfer PDUs: SCSI Data-Out, SCSI Data-In (RFC 7143 section 11.7)
//! and Ready To Transfer, R2T (RFC 7143 section 11.8).

use super::no_segments;
use super::scsi::Residual;
use crate::wire::bhs::{Bhs, Opcode};
use crate::wire::error::WireError;
use crate::wire::serial::Serial;

/// SCSI Data-Out (RFC 7143 section 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataOut {
    /// F: last PDU of the sequence (unsolicited burst or R2T).
    pub final_pdu: bool,
    /// LUN (copied from the R2T for solicited data).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// DataSN (section 11.7.5).
    pub data_sn: Serial,
    /// Buffer Offset (section 11.7.6).
    pub buffer_offset: u32,
}

impl DataOut {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(DataOut {
            final_pdu: bhs.final_flag(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            data_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::DataOut, false);
        bhs.set_flags(u8::from(self.final_pdu) << 7);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word36(self.data_sn.0);
        bhs.set_word40(self.buffer_offset);
    }
}
/// The status carried by a Data-In PDU with the S bit set (RFC 7143
/// section 11.7.3: StatSN, Status and Residual Count "only have meaningful
/// content if the S bit is set to 1").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataInStatus {
    /// SCSI status.
    pub status: u8,
    /// StatSN.
    pub stat_sn: Serial,
    /// Residual Count with the O/U bits.
    pub residual: Residual,
}

/// SCSI Data-In (RFC 7143 section 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataIn {
    /// F: last PDU of the sequence.
    pub final_pdu: bool,
    /// A: the target requests a DataACK SNACK (ErrorRecoveryLevel >= 1).
    pub ack: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff unless `ack`).
    pub ttt: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// DataSN.
    pub data_sn: Serial,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// S bit set: the status of the command (phase collapse).
    pub status: Option<DataInStatus>,
}

impl DataIn {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        let final_pdu = f & 0x80 != 0;
        let s = f & 0x01 != 0;
        // RFC 7143 section 11.7.3: "If the S bit is set to 1, the F bit
        // MUST also be set to 1."
        if s && !final_pdu {
            return Err(WireError::ForbiddenFlags {
                pdu: "SCSI Data-In",
                rule: "S=1 requires F=1",
                section: "11.7.3",
            });
        }
        let status = if s {
            Some(DataInStatus {
                status: bhs.byte3(),
                stat_sn: Serial(bhs.stat_sn()),
                // RFC 7143 section 11.7.3: O and U as in 11.4.5.1, mutually
                // exclusive.
                residual: Residual::from_flags(
                    f & 0x04 != 0,
                    f & 0x02 != 0,
                    bhs.word44(),
                    "SCSI Data-In",
                    "11.7.3",
                )?,
            })
        } else {
            None
        };
        Ok(DataIn {
            final_pdu,
            ack: f & 0x40 != 0,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            data_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
            status,
        })
    }

    /// Writes the BHS (except bytes 4-7). A `status` forces F=1 on the wire.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::DataIn, false);
        let mut f = u8::from(self.final_pdu) << 7 | u8::from(self.ack) << 6;
        if let Some(st) = &self.status {
            let (o, u, n) = st.residual.to_parts();
            f |= 0x80 | u8::from(o) << 2 | u8::from(u) << 1 | 1;
            bhs.set_byte3(st.status);
            bhs.set_word24(st.stat_sn.0);
            bhs.set_word44(n);
        }
        bhs.set_flags(f);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.data_sn.0);
        bhs.set_word40(self.buffer_offset);
    }
}
/// Ready To Transfer (RFC 7143 section 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct R2t {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag, to be copied into the Data-Out PDUs.
    pub ttt: u32,
    /// StatSN (the next StatSN; not advanced by the R2T).
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// R2TSN (section 11.8.2).
    pub r2t_sn: Serial,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_data_transfer_length: u32,
}

impl R2t {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.8.1: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "R2T", "11.8.1")?;
        Ok(R2t {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            r2t_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
            desired_data_transfer_length: bhs.word44(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::R2t, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.r2t_sn.0);
        bhs.set_word40(self.buffer_offset);
        bhs.set_word44(self.desired_data_transfer_length);
    }
}
