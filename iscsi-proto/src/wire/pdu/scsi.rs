//! SCSI Command and SCSI Response PDUs (RFC 7143 sections 11.3 and 11.4),
//! their task attribute, response code and residual fields, and the split of
//! a response's data segment into sense data and response data.

use bytes::Bytes;

use crate::wire::bhs::{Bhs, Opcode};
use crate::wire::error::WireError;
use crate::wire::serial::Serial;

code_enum! {
    /// Task attributes of a SCSI Command (RFC 7143 section 11.3.1, 3 bits).
    pub enum TaskAttr, section "11.3.1" {
        /// 0: Untagged.
        Untagged = 0,
        /// 1: Simple.
        Simple = 1,
        /// 2: Ordered.
        Ordered = 2,
        /// 3: Head of Queue.
        HeadOfQueue = 3,
        /// 4: ACA.
        Aca = 4,
    }
}
code_enum! {
    /// SCSI Response "Response" codes (RFC 7143 section 11.4.3);
    /// 0x80-0xff are vendor specific and kept as `Other`.
    pub enum ScsiResponseCode, section "11.4.3" {
        /// 0x00: Command Completed at Target.
        CommandCompleted = 0x00,
        /// 0x01: Target Failure.
        TargetFailure = 0x01,
    }
}
/// A residual count with its overflow/underflow flag (RFC 7143 sections
/// 11.4.5 and 11.7.5): the count is only meaningful when one of the two
/// flags is set, so it is carried inside the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Residual {
    /// Neither O nor U: the count field is reserved.
    #[default]
    None,
    /// O set: bytes that were not transferred because the buffer was too small.
    Overflow(u32),
    /// U set: bytes expected but not transferred.
    Underflow(u32),
}

impl Residual {
    pub(super) fn from_flags(
        over: bool,
        under: bool,
        count: u32,
        pdu: &'static str,
        section: &'static str,
    ) -> Result<Residual, WireError> {
        match (over, under) {
            (true, true) => Err(WireError::ForbiddenFlags {
                pdu,
                rule: "overflow and underflow bits are mutually exclusive",
                section,
            }),
            (true, false) => Ok(Residual::Overflow(count)),
            (false, true) => Ok(Residual::Underflow(count)),
            (false, false) => Ok(Residual::None),
        }
    }

    /// The overflow count, if the O (or o) bit was set.
    pub const fn overflow(self) -> Option<u32> {
        match self {
            Residual::Overflow(n) => Some(n),
            _ => None,
        }
    }

    /// The underflow count, if the U (or u) bit was set.
    pub const fn underflow(self) -> Option<u32> {
        match self {
            Residual::Underflow(n) => Some(n),
            _ => None,
        }
    }

    /// Bytes actually transferred given the Expected Data Transfer Length
    /// (saturating: `expected - underflow`, or `expected` on overflow, where
    /// the target transferred all it could fit).
    pub const fn transferred(self, expected: u32) -> u32 {
        match self {
            Residual::Underflow(n) => expected.saturating_sub(n),
            Residual::None | Residual::Overflow(_) => expected,
        }
    }

    /// (overflow bit, underflow bit, count field).
    pub(super) const fn to_parts(self) -> (bool, bool, u32) {
        match self {
            Residual::None => (false, false, 0),
            Residual::Overflow(n) => (true, false, n),
            Residual::Underflow(n) => (false, true, n),
        }
    }
}
/// SCSI Command (RFC 7143 section 11.3). Extended CDBs travel in an AHS
/// ([`Ahs::ExtendedCdb`](crate::wire::ahs::Ahs::ExtendedCdb)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiCommand {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: no unsolicited Data-Out PDUs follow.
    pub final_pdu: bool,
    /// R: data will be read from the target.
    pub read: bool,
    /// W: data will be written to the target.
    pub write: bool,
    /// ATTR: task attribute.
    pub attr: TaskAttr,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length (section 11.3.4).
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// The first 16 bytes of the CDB (section 11.3.5), zero padded.
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        Ok(ScsiCommand {
            immediate: bhs.immediate(),
            final_pdu: f & 0x80 != 0,
            read: f & 0x40 != 0,
            write: f & 0x20 != 0,
            // RFC 7143 section 11.3.1: ATTR is the low 3 bits of byte 1.
            attr: TaskAttr::from_u8(f & 0x07),
            lun: bhs.lun(),
            itt: bhs.itt(),
            expected_data_transfer_length: bhs.word20(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            cdb: bhs.cdb(),
        })
    }

    /// Writes the BHS (except bytes 4-7). `attr` is truncated to 3 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::ScsiCommand, self.immediate);
        bhs.set_flags(
            u8::from(self.final_pdu) << 7
                | u8::from(self.read) << 6
                | u8::from(self.write) << 5
                | (self.attr.to_u8() & 0x07),
        );
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.expected_data_transfer_length);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_cdb(&self.cdb);
    }
}
/// SCSI Response (RFC 7143 section 11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiResponse {
    /// Response (section 11.4.3).
    pub response: ScsiResponseCode,
    /// SCSI status (section 11.4.2), valid when `response` is CommandCompleted.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (section 11.4.4).
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// ExpDataSN (section 11.4.8).
    pub exp_data_sn: Serial,
    /// Bidirectional Read Residual Count with the o/u bits (section 11.4.6).
    pub bidi_read_residual: Residual,
    /// Residual Count with the O/U bits (section 11.4.5).
    pub residual: Residual,
}

impl ScsiResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        // RFC 7143 section 11.4.5.1: "Bits O and U and bits o and u are
        // mutually exclusive (i.e., having both o and u or O and U set to 1
        // is a protocol error)."
        let bidi = Residual::from_flags(
            f & 0x10 != 0,
            f & 0x08 != 0,
            bhs.word40(),
            "SCSI Response",
            "11.4.5.1",
        )?;
        let residual = Residual::from_flags(
            f & 0x04 != 0,
            f & 0x02 != 0,
            bhs.word44(),
            "SCSI Response",
            "11.4.5.1",
        )?;
        Ok(ScsiResponse {
            response: ScsiResponseCode::from_u8(bhs.byte2()),
            status: bhs.byte3(),
            itt: bhs.itt(),
            snack_tag: bhs.word20(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            exp_data_sn: Serial(bhs.word36()),
            bidi_read_residual: bidi,
            residual,
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::ScsiResponse, false);
        let (bo, bu, bn) = self.bidi_read_residual.to_parts();
        let (o, u, n) = self.residual.to_parts();
        bhs.set_flags(
            0x80 | u8::from(bo) << 4 | u8::from(bu) << 3 | u8::from(o) << 2 | u8::from(u) << 1,
        );
        bhs.set_byte2(self.response.to_u8());
        bhs.set_byte3(self.status);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.snack_tag);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.exp_data_sn.0);
        bhs.set_word40(bn);
        bhs.set_word44(n);
    }
}
/// The parts of a SCSI Response (or Asynchronous Message) data segment
/// (RFC 7143 sections 11.4.7 and 11.9.4): SenseLength, sense data, then
/// response data (iSCSI event data for async messages). Zero-copy slices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenseAndResponse {
    /// The sense data (SenseLength bytes).
    pub sense: Bytes,
    /// Whatever follows the sense data (response data / iSCSI event data).
    pub response_data: Bytes,
}

/// Splits a data segment into sense data and response data without copying.
///
/// RFC 7143 section 11.4.7: the data segment starts with a 2-byte
/// SenseLength followed by that many bytes of sense data; an empty data
/// segment means no sense data. A 1-byte segment, or a SenseLength past the
/// end, is a [`WireError::MalformedData`].
pub fn split_sense(data: &Bytes) -> Result<SenseAndResponse, WireError> {
    let (s, r) = split_sense_range(data)?;
    Ok(SenseAndResponse {
        sense: data.slice(s),
        response_data: data.slice(r),
    })
}

/// Like [`split_sense`] over a borrowed slice: `(sense, response_data)`.
pub fn split_sense_slice(data: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (s, r) = split_sense_range(data)?;
    match (data.get(s), data.get(r)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(WireError::MalformedData {
            reason: "SenseLength past the end of the data segment",
            section: "11.4.7.1",
        }),
    }
}

fn split_sense_range(
    data: &[u8],
) -> Result<(core::ops::Range<usize>, core::ops::Range<usize>), WireError> {
    match data {
        [] => Ok((0..0, 0..0)),
        [_] => Err(WireError::MalformedData {
            reason: "data segment shorter than SenseLength",
            section: "11.4.7.1",
        }),
        [hi, lo, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*hi, *lo]));
            if n > rest.len() {
                return Err(WireError::MalformedData {
                    reason: "SenseLength past the end of the data segment",
                    section: "11.4.7.1",
                });
            }
            // 2 + n <= data.len() here, so no overflow.
            Ok((2..2 + n, 2 + n..data.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sense_split() {
        let d = Bytes::from_static(&[0, 3, 0x70, 0, 5, 0xaa]);
        let s = split_sense(&d).unwrap();
        assert_eq!(&s.sense[..], &[0x70, 0, 5]);
        assert_eq!(&s.response_data[..], &[0xaa]);
        assert!(split_sense(&Bytes::from_static(&[0])).is_err());
        assert!(split_sense(&Bytes::from_static(&[0, 2, 1])).is_err());
        assert_eq!(
            split_sense(&Bytes::new()).unwrap(),
            SenseAndResponse::default()
        );
        assert_eq!(
            split_sense_slice(&[0, 0, 9]).unwrap(),
            (&[][..], &[9u8][..])
        );
    }

    #[test]
    fn residual_helpers() {
        assert_eq!(Residual::Underflow(100).transferred(512), 412);
        assert_eq!(Residual::Underflow(600).transferred(512), 0);
        assert_eq!(Residual::Overflow(5).transferred(512), 512);
        assert_eq!(Residual::Overflow(5).overflow(), Some(5));
        assert_eq!(Residual::None.underflow(), None);
    }
}
