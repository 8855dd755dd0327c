//! Sense data: decoding fixed (0x70/0x71) and descriptor (0x72/0x73) formats
//! (SPC-4 section 4.5) and building fixed-format sense for a target.
//!
//! RFC 7143 section 11.4.7.2: in a SCSI Response PDU the data segment
//! carries a 2-byte SenseLength followed by the sense data; see
//! [`SenseData::parse_iscsi_segment`].

use core::fmt;

use super::ScsiError;

/// The SPC-4 sense key (4 bits; SPC-4 section 4.5.6, table 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKey {
    /// 0x0 NO SENSE.
    NoSense,
    /// 0x1 RECOVERED ERROR.
    RecoveredError,
    /// 0x2 NOT READY.
    NotReady,
    /// 0x3 MEDIUM ERROR.
    MediumError,
    /// 0x4 HARDWARE ERROR.
    HardwareError,
    /// 0x5 ILLEGAL REQUEST.
    IllegalRequest,
    /// 0x6 UNIT ATTENTION.
    UnitAttention,
    /// 0x7 DATA PROTECT.
    DataProtect,
    /// 0x8 BLANK CHECK.
    BlankCheck,
    /// 0x9 VENDOR SPECIFIC.
    VendorSpecific,
    /// 0xA COPY ABORTED.
    CopyAborted,
    /// 0xB ABORTED COMMAND.
    AbortedCommand,
    /// 0xC EQUAL (obsolete).
    Equal,
    /// 0xD VOLUME OVERFLOW.
    VolumeOverflow,
    /// 0xE MISCOMPARE.
    Miscompare,
    /// 0xF COMPLETED (SPC-5; reserved in SPC-4).
    Completed,
}

impl SenseKey {
    /// Decodes the low 4 bits of `b`.
    pub const fn from_u8(b: u8) -> SenseKey {
        match b & 0x0f {
            0x0 => SenseKey::NoSense,
            0x1 => SenseKey::RecoveredError,
            0x2 => SenseKey::NotReady,
            0x3 => SenseKey::MediumError,
            0x4 => SenseKey::HardwareError,
            0x5 => SenseKey::IllegalRequest,
            0x6 => SenseKey::UnitAttention,
            0x7 => SenseKey::DataProtect,
            0x8 => SenseKey::BlankCheck,
            0x9 => SenseKey::VendorSpecific,
            0xa => SenseKey::CopyAborted,
            0xb => SenseKey::AbortedCommand,
            0xc => SenseKey::Equal,
            0xd => SenseKey::VolumeOverflow,
            0xe => SenseKey::Miscompare,
            _ => SenseKey::Completed,
        }
    }

    /// The 4-bit code.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// The SPC name, e.g. `"ILLEGAL REQUEST"`.
    pub const fn name(self) -> &'static str {
        match self {
            SenseKey::NoSense => "NO SENSE",
            SenseKey::RecoveredError => "RECOVERED ERROR",
            SenseKey::NotReady => "NOT READY",
            SenseKey::MediumError => "MEDIUM ERROR",
            SenseKey::HardwareError => "HARDWARE ERROR",
            SenseKey::IllegalRequest => "ILLEGAL REQUEST",
            SenseKey::UnitAttention => "UNIT ATTENTION",
            SenseKey::DataProtect => "DATA PROTECT",
            SenseKey::BlankCheck => "BLANK CHECK",
            SenseKey::VendorSpecific => "VENDOR SPECIFIC",
            SenseKey::CopyAborted => "COPY ABORTED",
            SenseKey::AbortedCommand => "ABORTED COMMAND",
            SenseKey::Equal => "EQUAL",
            SenseKey::VolumeOverflow => "VOLUME OVERFLOW",
            SenseKey::Miscompare => "MISCOMPARE",
            SenseKey::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for SenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Common additional sense code / qualifier pairs (SPC-4 table D.1).
pub mod asc {
    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: (u8, u8) = (0x00, 0x00);
    /// 04/00 LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const LUN_NOT_READY: (u8, u8) = (0x04, 0x00);
    /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED.
    pub const LUN_NOT_READY_INIT_REQUIRED: (u8, u8) = (0x04, 0x02);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: (u8, u8) = (0x0c, 0x00);
    /// 11/00 UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: (u8, u8) = (0x11, 0x00);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: (u8, u8) = (0x1a, 0x00);
    /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: (u8, u8) = (0x1d, 0x00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: (u8, u8) = (0x20, 0x00);
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: (u8, u8) = (0x21, 0x00);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: (u8, u8) = (0x24, 0x00);
    /// 25/00 LOGICAL UNIT NOT SUPPORTED.
    pub const LUN_NOT_SUPPORTED: (u8, u8) = (0x25, 0x00);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: (u8, u8) = (0x26, 0x00);
    /// 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
    pub const INVALID_RELEASE_OF_PR: (u8, u8) = (0x26, 0x04);
    /// 27/00 WRITE PROTECTED.
    pub const WRITE_PROTECTED: (u8, u8) = (0x27, 0x00);
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: (u8, u8) = (0x29, 0x00);
    /// 2A/03 RESERVATIONS PREEMPTED.
    pub const RESERVATIONS_PREEMPTED: (u8, u8) = (0x2a, 0x03);
    /// 2A/04 RESERVATIONS RELEASED.
    pub const RESERVATIONS_RELEASED: (u8, u8) = (0x2a, 0x04);
    /// 2A/05 REGISTRATIONS PREEMPTED.
    pub const REGISTRATIONS_PREEMPTED: (u8, u8) = (0x2a, 0x05);
    /// 2C/00 COMMAND SEQUENCE ERROR.
    pub const COMMAND_SEQUENCE_ERROR: (u8, u8) = (0x2c, 0x00);
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: (u8, u8) = (0x39, 0x00);
    /// 3A/00 MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: (u8, u8) = (0x3a, 0x00);
    /// 44/00 INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: (u8, u8) = (0x44, 0x00);
    /// 55/04 INSUFFICIENT REGISTRATION RESOURCES.
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: (u8, u8) = (0x55, 0x04);
}

/// The name of an ASC/ASCQ pair, or `None` when it is not in the table.
pub fn asc_name(asc: u8, ascq: u8) -> Option<&'static str> {
    let name = match (asc, ascq) {
        (0x00, 0x00) => "NO ADDITIONAL SENSE INFORMATION",
        (0x00, 0x16) => "OPERATION IN PROGRESS",
        (0x00, 0x1d) => "ATA PASS THROUGH INFORMATION AVAILABLE",
        (0x04, 0x00) => "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
        (0x04, 0x01) => "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
        (0x04, 0x02) => "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
        (0x04, 0x03) => "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
        (0x04, 0x04) => "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS",
        (0x04, 0x07) => "LOGICAL UNIT NOT READY, OPERATION IN PROGRESS",
        (0x04, 0x09) => "LOGICAL UNIT NOT READY, SELF-TEST IN PROGRESS",
        (0x04, 0x0a) => "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION",
        (0x04, 0x0b) => "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE",
        (0x04, 0x0c) => "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE",
        (0x04, _) => "LOGICAL UNIT NOT READY",
        (0x05, 0x00) => "LOGICAL UNIT DOES NOT RESPOND TO SELECTION",
        (0x08, 0x00) => "LOGICAL UNIT COMMUNICATION FAILURE",
        (0x0c, 0x00) => "WRITE ERROR",
        (0x0c, 0x0c) => "UNEXPECTED UNSOLICITED DATA",
        (0x0c, 0x0d) => "NOT ENOUGH UNSOLICITED DATA",
        (0x10, 0x01) => "LOGICAL BLOCK GUARD CHECK FAILED",
        (0x10, 0x02) => "LOGICAL BLOCK APPLICATION TAG CHECK FAILED",
        (0x10, 0x03) => "LOGICAL BLOCK REFERENCE TAG CHECK FAILED",
        (0x11, 0x00) => "UNRECOVERED READ ERROR",
        (0x11, 0x13) => "READ ERROR - FAILED RETRANSMISSION REQUEST",
        (0x1a, 0x00) => "PARAMETER LIST LENGTH ERROR",
        (0x1d, 0x00) => "MISCOMPARE DURING VERIFY OPERATION",
        (0x20, 0x00) => "INVALID COMMAND OPERATION CODE",
        (0x20, 0x02) => "ACCESS DENIED - NO ACCESS RIGHTS",
        (0x21, 0x00) => "LOGICAL BLOCK ADDRESS OUT OF RANGE",
        (0x21, 0x01) => "INVALID ELEMENT ADDRESS",
        (0x24, 0x00) => "INVALID FIELD IN CDB",
        (0x25, 0x00) => "LOGICAL UNIT NOT SUPPORTED",
        (0x26, 0x00) => "INVALID FIELD IN PARAMETER LIST",
        (0x26, 0x01) => "PARAMETER NOT SUPPORTED",
        (0x26, 0x02) => "PARAMETER VALUE INVALID",
        (0x26, 0x04) => "INVALID RELEASE OF PERSISTENT RESERVATION",
        (0x27, 0x00) => "WRITE PROTECTED",
        (0x27, 0x07) => "SPACE ALLOCATION FAILED WRITE PROTECT",
        (0x28, 0x00) => "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
        (0x29, 0x00) => "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
        (0x29, 0x01) => "POWER ON OCCURRED",
        (0x29, 0x02) => "SCSI BUS RESET OCCURRED",
        (0x29, 0x03) => "BUS DEVICE RESET FUNCTION OCCURRED",
        (0x29, 0x04) => "DEVICE INTERNAL RESET",
        (0x29, 0x07) => "I_T NEXUS LOSS OCCURRED",
        (0x2a, 0x01) => "MODE PARAMETERS CHANGED",
        (0x2a, 0x03) => "RESERVATIONS PREEMPTED",
        (0x2a, 0x04) => "RESERVATIONS RELEASED",
        (0x2a, 0x05) => "REGISTRATIONS PREEMPTED",
        (0x2a, 0x09) => "CAPACITY DATA HAS CHANGED",
        (0x2c, 0x00) => "COMMAND SEQUENCE ERROR",
        (0x2f, 0x00) => "COMMANDS CLEARED BY ANOTHER INITIATOR",
        (0x31, 0x00) => "MEDIUM FORMAT CORRUPTED",
        (0x39, 0x00) => "SAVING PARAMETERS NOT SUPPORTED",
        (0x3a, 0x00) => "MEDIUM NOT PRESENT",
        (0x3a, 0x01) => "MEDIUM NOT PRESENT - TRAY CLOSED",
        (0x3a, 0x02) => "MEDIUM NOT PRESENT - TRAY OPEN",
        (0x3e, 0x03) => "LOGICAL UNIT FAILED SELF-TEST",
        (0x3f, 0x0e) => "REPORTED LUNS DATA HAS CHANGED",
        (0x44, 0x00) => "INTERNAL TARGET FAILURE",
        (0x47, 0x05) => "PROTOCOL SERVICE CRC ERROR",
        (0x47, 0x7f) => "SOME COMMANDS CLEARED BY ISCSI PROTOCOL EVENT",
        (0x49, 0x00) => "INVALID MESSAGE ERROR",
        (0x4b, 0x00) => "DATA PHASE ERROR",
        (0x53, 0x02) => "MEDIUM REMOVAL PREVENTED",
        (0x55, 0x03) => "INSUFFICIENT RESOURCES",
        (0x55, 0x04) => "INSUFFICIENT REGISTRATION RESOURCES",
        _ => return None,
    };
    Some(name)
}

/// Which of the two SPC-4 sense data formats a [`SenseData`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseFormat {
    /// Fixed format, response code 0x70 (current) or 0x71 (deferred).
    Fixed,
    /// Descriptor format, response code 0x72 (current) or 0x73 (deferred).
    Descriptor,
}

/// Decoded sense data (SPC-4 section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseData {
    /// The format the sense data was received in (or will be built in).
    pub format: SenseFormat,
    /// Deferred error (response code 0x71/0x73) rather than current.
    pub deferred: bool,
    /// The sense key.
    pub key: SenseKey,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// The INFORMATION field when its VALID bit is set (in the fixed
    /// format only the low 32 bits exist).
    pub information: Option<u64>,
    /// The COMMAND-SPECIFIC INFORMATION field, when non-zero.
    pub command_specific: Option<u64>,
    /// The 3 sense-key-specific bytes when SKSV is set (SKSV bit included).
    pub sense_key_specific: Option<[u8; 3]>,
    /// FILEMARK bit (fixed format; stream commands).
    pub filemark: bool,
    /// EOM bit (fixed format; stream commands).
    pub eom: bool,
    /// ILI (incorrect length indicator) bit.
    pub ili: bool,
}

/// Length of the fixed-format sense data that [`SenseData::to_fixed`] builds.
pub const FIXED_SENSE_LEN: usize = 18;

/// SPC-4 4.5.2.1: descriptor-format header length.
const HEADER_LEN: usize = 8;

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at.saturating_add(8)) {
        w.copy_from_slice(s);
    }
    u64::from_be_bytes(w)
}

fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

impl SenseData {
    /// A current, fixed-format sense with the given key and ASC/ASCQ.
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> SenseData {
        SenseData {
            format: SenseFormat::Fixed,
            deferred: false,
            key,
            asc,
            ascq,
            information: None,
            command_specific: None,
            sense_key_specific: None,
            filemark: false,
            eom: false,
            ili: false,
        }
    }

    /// Same as [`SenseData::new`] with an `(asc, ascq)` pair from [`asc`].
    pub const fn with_code(key: SenseKey, code: (u8, u8)) -> SenseData {
        SenseData::new(key, code.0, code.1)
    }

    /// Sets the INFORMATION field (and its VALID bit).
    pub const fn information(mut self, info: u64) -> SenseData {
        self.information = Some(info);
        self
    }

    /// Sets the sense-key-specific field to a field pointer (SPC-4
    /// 4.5.2.4.2): `c_d` true if the error is in the CDB (false: in the
    /// parameter list), `byte_offset` the byte, `bit` the bit (if known).
    pub const fn field_pointer(
        mut self,
        c_d: bool,
        byte_offset: u16,
        bit: Option<u8>,
    ) -> SenseData {
        let mut b0 = 0x80u8;
        if c_d {
            b0 |= 0x40;
        }
        if let Some(bit) = bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let off = byte_offset.to_be_bytes();
        self.sense_key_specific = Some([b0, off[0], off[1]]);
        self
    }

    /// Parses sense data in either format (SPC-4 4.5). Bytes beyond the
    /// ADDITIONAL SENSE LENGTH are ignored; fields the length cuts off
    /// read as zero. Needs at least the 8-byte header.
    pub fn parse(data: &[u8]) -> Result<SenseData, ScsiError> {
        let Some(&rc) = data.first() else {
            return Err(ScsiError::Truncated {
                what: "sense data",
                need: HEADER_LEN,
                got: 0,
                section: "SPC-4 4.5.1",
            });
        };
        let code = rc & 0x7f;
        if !(0x70..=0x73).contains(&code) {
            return Err(ScsiError::UnknownSenseFormat(rc));
        }
        if data.len() < HEADER_LEN {
            return Err(ScsiError::Truncated {
                what: "sense data",
                need: HEADER_LEN,
                got: data.len(),
                section: "SPC-4 4.5.1",
            });
        }
        // SPC-4 4.5.2.1 / 4.5.3: ADDITIONAL SENSE LENGTH in byte 7 counts
        // the bytes that follow it; never read past it or past the buffer.
        let total = HEADER_LEN.saturating_add(usize::from(byte(data, 7)));
        let data = data.get(..total.min(data.len())).unwrap_or(data);
        let deferred = code == 0x71 || code == 0x73;
        if code <= 0x71 {
            // SPC-4 4.5.3 fixed format.
            let valid = rc & 0x80 != 0;
            let b2 = byte(data, 2);
            let cmd = be_u32(data, 8);
            let sks = [byte(data, 15), byte(data, 16), byte(data, 17)];
            Ok(SenseData {
                format: SenseFormat::Fixed,
                deferred,
                key: SenseKey::from_u8(b2),
                asc: byte(data, 12),
                ascq: byte(data, 13),
                information: valid.then(|| u64::from(be_u32(data, 3))),
                command_specific: (cmd != 0).then_some(u64::from(cmd)),
                sense_key_specific: (sks[0] & 0x80 != 0).then_some(sks),
                filemark: b2 & 0x80 != 0,
                eom: b2 & 0x40 != 0,
                ili: b2 & 0x20 != 0,
            })
        } else {
            // SPC-4 4.5.2 descriptor format.
            let mut s = SenseData::new(
                SenseKey::from_u8(byte(data, 1)),
                byte(data, 2),
                byte(data, 3),
            );
            s.format = SenseFormat::Descriptor;
            s.deferred = deferred;
            let mut at = HEADER_LEN;
            // Each descriptor: type, additional length, then that many bytes.
            while let (Some(&ty), Some(&len)) = (data.get(at), data.get(at.saturating_add(1))) {
                let end = at.saturating_add(2).saturating_add(usize::from(len));
                let Some(d) = data.get(at..end) else {
                    return Err(ScsiError::Malformed {
                        what: "sense descriptor",
                        detail: "descriptor runs past the additional sense length",
                        section: "SPC-4 4.5.2.1",
                    });
                };
                match ty {
                    // SPC-4 4.5.2.2 information descriptor (length 0x0a).
                    0x00 if d.len() >= 12 && byte(d, 2) & 0x80 != 0 => {
                        s.information = Some(be_u64(d, 4));
                    }
                    // SPC-4 4.5.2.3 command-specific information.
                    0x01 if d.len() >= 12 => {
                        let v = be_u64(d, 4);
                        s.command_specific = (v != 0).then_some(v);
                    }
                    // SPC-4 4.5.2.4 sense key specific (length 0x06).
                    0x02 if d.len() >= 7 && byte(d, 4) & 0x80 != 0 => {
                        s.sense_key_specific = Some([byte(d, 4), byte(d, 5), byte(d, 6)]);
                    }
                    // SPC-4 4.5.2.7 stream commands: FILEMARK/EOM/ILI.
                    0x04 if d.len() >= 4 => {
                        s.filemark = byte(d, 3) & 0x80 != 0;
                        s.eom = byte(d, 3) & 0x40 != 0;
                        s.ili = byte(d, 3) & 0x20 != 0;
                    }
                    // SPC-4 4.5.2.8 block commands: ILI.
                    0x05 if d.len() >= 4 => {
                        s.ili = byte(d, 3) & 0x20 != 0;
                    }
                    _ => {}
                }
                at = end;
            }
            Ok(s)
        }
    }

    /// Parses the data segment of a SCSI Response PDU (RFC 7143 section
    /// 11.4.7.2: a 2-byte SenseLength, then the sense data). Returns
    /// `Ok(None)` when SenseLength is 0 (no sense data).
    pub fn parse_iscsi_segment(segment: &[u8]) -> Result<Option<SenseData>, ScsiError> {
        let Some(len_bytes) = segment.first_chunk::<2>() else {
            return Err(ScsiError::Truncated {
                what: "SenseLength",
                need: 2,
                got: segment.len(),
                section: "RFC 7143 11.4.7.2",
            });
        };
        let len = usize::from(u16::from_be_bytes(*len_bytes));
        if len == 0 {
            return Ok(None);
        }
        // RFC 7143 11.4.7.1: SenseLength is the length of the sense data that
        // follows; it must fit in the segment.
        let need = len.saturating_add(2);
        let Some(sense) = segment.get(2..need) else {
            return Err(ScsiError::Truncated {
                what: "sense data in SCSI Response",
                need,
                got: segment.len(),
                section: "RFC 7143 11.4.7.1",
            });
        };
        SenseData::parse(sense).map(Some)
    }

    /// Builds fixed-format sense data (SPC-4 4.5.3), 18 bytes, response
    /// code 0x70 (0x71 if deferred). The INFORMATION field holds the low 32
    /// bits of [`SenseData::information`].
    pub fn to_fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = if self.deferred { 0x71 } else { 0x70 };
        if let Some(info) = self.information {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&(info as u32).to_be_bytes());
        }
        b[2] = self.key.to_u8()
            | if self.filemark { 0x80 } else { 0 }
            | if self.eom { 0x40 } else { 0 }
            | if self.ili { 0x20 } else { 0 };
        // SPC-4 4.5.3: ADDITIONAL SENSE LENGTH = n - 7.
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        if let Some(c) = self.command_specific {
            b[8..12].copy_from_slice(&(c as u32).to_be_bytes());
        }
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sense_key_specific {
            b[15] = sks[0] | 0x80;
            b[16] = sks[1];
            b[17] = sks[2];
        }
        b
    }

    /// Builds the SCSI Response data segment for this sense (RFC 7143
    /// 11.4.7.2): 2-byte SenseLength + fixed-format sense data.
    pub fn to_iscsi_segment(&self) -> [u8; FIXED_SENSE_LEN + 2] {
        let mut b = [0u8; FIXED_SENSE_LEN + 2];
        b[1] = FIXED_SENSE_LEN as u8;
        b[2..].copy_from_slice(&self.to_fixed());
        b
    }

    /// The name of the ASC/ASCQ pair, if known.
    pub fn asc_name(&self) -> Option<&'static str> {
        asc_name(self.asc, self.ascq)
    }

    /// True if the sense key and ASC/ASCQ equal the given ones.
    pub fn is(&self, key: SenseKey, code: (u8, u8)) -> bool {
        self.key == key && (self.asc, self.ascq) == code
    }
}

impl fmt::Display for SenseData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deferred {
            f.write_str("DEFERRED ")?;
        }
        match self.asc_name() {
            Some(n) => write!(
                f,
                "{}: {} ({:#04x}/{:#04x})",
                self.key, n, self.asc, self.ascq
            )?,
            None => write!(
                f,
                "{}: ASC/ASCQ ({:#04x}/{:#04x})",
                self.key, self.asc, self.ascq
            )?,
        }
        if let Some(i) = self.information {
            write!(f, " info {i:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn fixed_roundtrip_and_display() {
        let s = SenseData::with_code(SenseKey::IllegalRequest, asc::LBA_OUT_OF_RANGE);
        let b = s.to_fixed();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x21, 0x00));
        let p = SenseData::parse(&b).unwrap();
        assert_eq!(p, s);
        assert_eq!(
            p.to_string(),
            "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/0x00)"
        );
    }

    #[test]
    fn fixed_with_information_and_sks() {
        let s = SenseData::with_code(SenseKey::Miscompare, asc::MISCOMPARE_DURING_VERIFY)
            .information(0x1234)
            .field_pointer(true, 2, Some(1));
        let b = s.to_fixed();
        assert_eq!(b[0], 0xf0);
        assert_eq!(&b[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!(&b[15..18], &[0xc9, 0, 2]);
        let p = SenseData::parse(&b).unwrap();
        assert_eq!(p.information, Some(0x1234));
        assert_eq!(p.sense_key_specific, Some([0xc9, 0, 2]));
        assert!(p.is(SenseKey::Miscompare, asc::MISCOMPARE_DURING_VERIFY));
        assert!(p.to_string().ends_with("info 0x1234"));
    }

    #[test]
    fn deferred_fixed() {
        let mut b = SenseData::new(SenseKey::MediumError, 0x0c, 0).to_fixed();
        b[0] = 0x71;
        let p = SenseData::parse(&b).unwrap();
        assert!(p.deferred);
        assert_eq!(
            p.to_string(),
            "DEFERRED MEDIUM ERROR: WRITE ERROR (0x0c/0x00)"
        );
    }

    #[test]
    fn descriptor_format() {
        let b = [
            0x72, 0x0e, 0x1d, 0x00, 0, 0, 0, 20, // header, additional length 20
            0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02, // information
            0x02, 0x06, 0, 0, 0x80, 0x00, 0x10, 0, // sense key specific
        ];
        let p = SenseData::parse(&b).unwrap();
        assert_eq!(p.format, SenseFormat::Descriptor);
        assert_eq!(p.key, SenseKey::Miscompare);
        assert_eq!((p.asc, p.ascq), (0x1d, 0));
        assert_eq!(p.information, Some(0x102));
        assert_eq!(p.sense_key_specific, Some([0x80, 0, 0x10]));
        assert!(!p.deferred);
    }

    #[test]
    fn descriptor_overrun_is_error() {
        let b = [0x73, 0x05, 0x24, 0, 0, 0, 0, 4, 0x00, 0x0a, 0x80, 0];
        assert!(matches!(
            SenseData::parse(&b),
            Err(ScsiError::Malformed { .. })
        ));
    }

    #[test]
    fn short_and_unknown() {
        assert!(matches!(
            SenseData::parse(&[]),
            Err(ScsiError::Truncated { .. })
        ));
        assert!(matches!(
            SenseData::parse(&[0x70, 0, 5]),
            Err(ScsiError::Truncated { got: 3, .. })
        ));
        assert_eq!(
            SenseData::parse(&[0x7f; 18]),
            Err(ScsiError::UnknownSenseFormat(0x7f))
        );
        // Additional sense length 0 cuts off ASC/ASCQ: they read as zero.
        let p = SenseData::parse(&[0x70, 0, 6, 0, 0, 0, 0, 0, 9, 9, 9, 9, 0x29, 0]).unwrap();
        assert_eq!(p.key, SenseKey::UnitAttention);
        assert_eq!((p.asc, p.ascq), (0, 0));
    }

    #[test]
    fn iscsi_segment() {
        let s = SenseData::with_code(SenseKey::UnitAttention, asc::POWER_ON_RESET);
        let seg = s.to_iscsi_segment();
        assert_eq!(&seg[..2], &[0, 18]);
        assert_eq!(SenseData::parse_iscsi_segment(&seg).unwrap(), Some(s));
        assert_eq!(SenseData::parse_iscsi_segment(&[0, 0]).unwrap(), None);
        assert!(SenseData::parse_iscsi_segment(&[0]).is_err());
        assert!(SenseData::parse_iscsi_segment(&seg[..10]).is_err());
    }

    #[test]
    fn names() {
        for k in 0..16u8 {
            let key = SenseKey::from_u8(k);
            assert_eq!(key.to_u8(), k);
            assert!(!key.name().is_empty());
        }
        assert_eq!(asc_name(0x04, 0x77), Some("LOGICAL UNIT NOT READY"));
        assert_eq!(asc_name(0x24, 0), Some("INVALID FIELD IN CDB"));
        assert_eq!(asc_name(0x99, 0x99), None);
        let s = SenseData::new(SenseKey::NotReady, 0x99, 0x01);
        assert_eq!(s.to_string(), "NOT READY: ASC/ASCQ (0x99/0x01)");
    }
}
