//! BHS: a checked view over the 48-byte Basic Header Segment (RFC 7143
//! section 11.2.1).
//!
//! [`Bhs`] gives typed access to every field of the BHS without copying.
//! The meaning of bytes 1-3 and 8-47 depends on the opcode; the getters are
//! named after the fields of RFC 7143 section 11 and their docs say which
//! PDUs use them. [`Bhs::new_checked`] guarantees the buffer holds
//! [`BHS_LEN`] bytes; getters and setters never panic even on an unchecked
//! short buffer (they read 0 and write nothing out of range).

use super::error::WireError;

/// Length of the Basic Header Segment (RFC 7143 section 11.2.1).
pub const BHS_LEN: usize = 48;

/// Byte offsets of the BHS fields (RFC 7143 section 11.2.1 and the
/// per-opcode layouts of section 11).
mod field {
    /// Byte 0: bit 6 is I (immediate), bits 0-5 the opcode.
    pub const OPCODE: usize = 0;
    /// Byte 1: F and the opcode-specific flags.
    pub const FLAGS: usize = 1;
    /// Byte 2: opcode specific (Response, Reason, Version-max...).
    pub const BYTE2: usize = 2;
    /// Byte 3: opcode specific (Status, Version-min...).
    pub const BYTE3: usize = 3;
    /// Byte 4: TotalAHSLength in 4-byte words.
    pub const TOTAL_AHS_LEN: usize = 4;
    /// Bytes 5-7: DataSegmentLength (24 bits).
    pub const DATA_SEG_LEN: usize = 5;
    /// Bytes 8-15: LUN (or ISID + TSIH in login PDUs).
    pub const LUN: usize = 8;
    /// Bytes 8-13: ISID (login PDUs).
    pub const ISID: usize = 8;
    /// Bytes 14-15: TSIH (login PDUs).
    pub const TSIH: usize = 14;
    /// Bytes 16-19: Initiator Task Tag.
    pub const ITT: usize = 16;
    /// Bytes 20-23: TTT, Expected Data Transfer Length, Referenced Task Tag,
    /// SNACK Tag; bytes 20-21 CID in login/logout requests.
    pub const W20: usize = 20;
    /// Bytes 24-27: CmdSN (requests) or StatSN (responses).
    pub const W24: usize = 24;
    /// Bytes 28-31: ExpStatSN (requests) or ExpCmdSN (responses).
    pub const W28: usize = 28;
    /// Bytes 32-35: MaxCmdSN (responses), RefCmdSN (TMF), CDB start.
    pub const W32: usize = 32;
    /// Bytes 36-39: ExpDataSN, DataSN, R2TSN, Status-Class/Detail, AsyncEvent...
    pub const W36: usize = 36;
    /// Bytes 40-43: Buffer Offset, BegRun, residuals, Time2Wait/Time2Retain.
    pub const W40: usize = 40;
    /// Bytes 44-47: Residual Count, Desired Data Transfer Length, RunLength.
    pub const W44: usize = 44;
    /// Bytes 32-47: the CDB of a SCSI Command.
    pub const CDB: usize = 32;
}

/// The opcode of a PDU (RFC 7143 section 11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// 0x00 NOP-Out (section 11.18).
    NopOut = 0x00,
    /// 0x01 SCSI Command (section 11.3).
    ScsiCommand = 0x01,
    /// 0x02 SCSI Task Management Function Request (section 11.5).
    TaskMgmtRequest = 0x02,
    /// 0x03 Login Request (section 11.12).
    LoginRequest = 0x03,
    /// 0x04 Text Request (section 11.10).
    TextRequest = 0x04,
    /// 0x05 SCSI Data-Out (section 11.7).
    DataOut = 0x05,
    /// 0x06 Logout Request (section 11.14).
    LogoutRequest = 0x06,
    /// 0x10 SNACK Request (section 11.16).
    SnackRequest = 0x10,
    /// 0x20 NOP-In (section 11.19).
    NopIn = 0x20,
    /// 0x21 SCSI Response (section 11.4).
    ScsiResponse = 0x21,
    /// 0x22 SCSI Task Management Function Response (section 11.6).
    TaskMgmtResponse = 0x22,
    /// 0x23 Login Response (section 11.13).
    LoginResponse = 0x23,
    /// 0x24 Text Response (section 11.11).
    TextResponse = 0x24,
    /// 0x25 SCSI Data-In (section 11.7).
    DataIn = 0x25,
    /// 0x26 Logout Response (section 11.15).
    LogoutResponse = 0x26,
    /// 0x31 Ready To Transfer (section 11.8).
    R2t = 0x31,
    /// 0x32 Asynchronous Message (section 11.9).
    AsyncMessage = 0x32,
    /// 0x3f Reject (section 11.17).
    Reject = 0x3f,
}

impl Opcode {
    /// All 18 opcodes, initiator ones first.
    pub const ALL: [Opcode; 18] = [
        Opcode::NopOut,
        Opcode::ScsiCommand,
        Opcode::TaskMgmtRequest,
        Opcode::LoginRequest,
        Opcode::TextRequest,
        Opcode::DataOut,
        Opcode::LogoutRequest,
        Opcode::SnackRequest,
        Opcode::NopIn,
        Opcode::ScsiResponse,
        Opcode::TaskMgmtResponse,
        Opcode::LoginResponse,
        Opcode::TextResponse,
        Opcode::DataIn,
        Opcode::LogoutResponse,
        Opcode::R2t,
        Opcode::AsyncMessage,
        Opcode::Reject,
    ];

    /// Decodes the 6-bit opcode (the I bit and bit 7 are masked off).
    ///
    /// RFC 7143 section 11.2.1.2: vendor-specific (0x1c-0x1e, 0x3c-0x3e) and
    /// all undefined opcodes are an [`WireError::UnknownOpcode`] error.
    pub fn from_u8(v: u8) -> Result<Opcode, WireError> {
        Ok(match v & 0x3f {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskMgmtRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::SnackRequest,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskMgmtResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::R2t,
            0x32 => Opcode::AsyncMessage,
            0x3f => Opcode::Reject,
            other => return Err(WireError::UnknownOpcode(other)),
        })
    }

    /// The 6-bit code.
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether initiators send this opcode. RFC 7143 section 11.2.1.2:
    /// "Initiators MUST NOT use target opcodes, and targets MUST NOT use
    /// initiator opcodes." Target opcodes have bit 5 set.
    #[inline]
    pub const fn is_initiator(self) -> bool {
        (self as u8) & 0x20 == 0
    }
}

impl TryFrom<u8> for Opcode {
    type Error = WireError;
    fn try_from(v: u8) -> Result<Self, WireError> {
        Opcode::from_u8(v)
    }
}

/// A view over a Basic Header Segment in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bhs<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn get_u8(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[inline]
fn get_u16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline]
fn get_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.wrapping_add(4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

#[inline]
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(at..at.wrapping_add(v.len())) {
        dst.copy_from_slice(v);
    }
}

impl<T: AsRef<[u8]>> Bhs<T> {
    /// Wraps a buffer without checking its length. Getters on a short buffer
    /// return 0 rather than panic; prefer [`Bhs::new_checked`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Bhs<T> {
        Bhs { buffer }
    }

    /// Wraps a buffer after checking it holds at least [`BHS_LEN`] bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Bhs<T>, WireError> {
        let got = buffer.as_ref().len();
        if got < BHS_LEN {
            return Err(WireError::Truncated {
                needed: BHS_LEN,
                got,
            });
        }
        Ok(Bhs { buffer })
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The underlying bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Byte 0 bit 6: the I (immediate delivery) bit (section 11.2.1.1).
    #[inline]
    pub fn immediate(&self) -> bool {
        get_u8(self.as_bytes(), field::OPCODE) & 0x40 != 0
    }

    /// The raw 6-bit opcode.
    #[inline]
    pub fn opcode_raw(&self) -> u8 {
        get_u8(self.as_bytes(), field::OPCODE) & 0x3f
    }

    /// The opcode (section 11.2.1.2); unknown values are an error.
    #[inline]
    pub fn opcode(&self) -> Result<Opcode, WireError> {
        Opcode::from_u8(self.opcode_raw())
    }

    /// Byte 1: F and the opcode-specific flags.
    #[inline]
    pub fn flags(&self) -> u8 {
        get_u8(self.as_bytes(), field::FLAGS)
    }

    /// Byte 1 bit 7: F (final), or T (transit) in login PDUs (section 11.2.1.3).
    #[inline]
    pub fn final_flag(&self) -> bool {
        self.flags() & 0x80 != 0
    }

    /// Byte 2 (Response, Reason, Version-max, ...).
    #[inline]
    pub fn byte2(&self) -> u8 {
        get_u8(self.as_bytes(), field::BYTE2)
    }

    /// Byte 3 (Status, Version-min / Version-active, ...).
    #[inline]
    pub fn byte3(&self) -> u8 {
        get_u8(self.as_bytes(), field::BYTE3)
    }

    /// TotalAHSLength in 4-byte words (section 11.2.1.5).
    #[inline]
    pub fn total_ahs_len(&self) -> u8 {
        get_u8(self.as_bytes(), field::TOTAL_AHS_LEN)
    }

    /// TotalAHSLength in bytes (at most 1020).
    #[inline]
    pub fn ahs_len_bytes(&self) -> usize {
        usize::from(self.total_ahs_len()) * 4
    }

    /// DataSegmentLength in bytes, excluding padding (section 11.2.1.6).
    #[inline]
    pub fn data_segment_len(&self) -> u32 {
        get_u32(self.as_bytes(), field::TOTAL_AHS_LEN) & 0x00ff_ffff
    }

    /// Bytes 8-15: LUN, big-endian raw 8 bytes (section 11.2.1.7).
    #[inline]
    pub fn lun(&self) -> u64 {
        let b = self.as_bytes();
        (u64::from(get_u32(b, field::LUN)) << 32) | u64::from(get_u32(b, field::LUN + 4))
    }

    /// Bytes 8-13: ISID of login PDUs (section 11.12.5).
    #[inline]
    pub fn isid(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        if let Some(src) = self.as_bytes().get(field::ISID..field::ISID + 6) {
            out.copy_from_slice(src);
        }
        out
    }

    /// Bytes 14-15: TSIH of login PDUs (section 11.12.6).
    #[inline]
    pub fn tsih(&self) -> u16 {
        get_u16(self.as_bytes(), field::TSIH)
    }

    /// Bytes 16-19: Initiator Task Tag (section 11.2.1.8).
    #[inline]
    pub fn itt(&self) -> u32 {
        get_u32(self.as_bytes(), field::ITT)
    }

    /// Bytes 20-23: Target Transfer Tag / Expected Data Transfer Length /
    /// Referenced Task Tag / SNACK Tag, depending on the opcode.
    #[inline]
    pub fn word20(&self) -> u32 {
        get_u32(self.as_bytes(), field::W20)
    }

    /// Bytes 20-23 as the Target Transfer Tag.
    #[inline]
    pub fn ttt(&self) -> u32 {
        self.word20()
    }

    /// Bytes 20-21: CID of Login and Logout Requests (sections 11.12.7, 11.14.3).
    #[inline]
    pub fn cid(&self) -> u16 {
        get_u16(self.as_bytes(), field::W20)
    }

    /// Bytes 24-27: CmdSN of requests.
    #[inline]
    pub fn cmd_sn(&self) -> u32 {
        get_u32(self.as_bytes(), field::W24)
    }

    /// Bytes 24-27: StatSN of responses.
    #[inline]
    pub fn stat_sn(&self) -> u32 {
        get_u32(self.as_bytes(), field::W24)
    }

    /// Bytes 28-31: ExpStatSN of requests.
    #[inline]
    pub fn exp_stat_sn(&self) -> u32 {
        get_u32(self.as_bytes(), field::W28)
    }

    /// Bytes 28-31: ExpCmdSN of responses.
    #[inline]
    pub fn exp_cmd_sn(&self) -> u32 {
        get_u32(self.as_bytes(), field::W28)
    }

    /// Bytes 32-35: MaxCmdSN of responses (RefCmdSN in TMF requests).
    #[inline]
    pub fn max_cmd_sn(&self) -> u32 {
        get_u32(self.as_bytes(), field::W32)
    }

    /// Bytes 32-35 as a raw word.
    #[inline]
    pub fn word32(&self) -> u32 {
        get_u32(self.as_bytes(), field::W32)
    }

    /// Bytes 36-39 (ExpDataSN, DataSN, R2TSN, ...), raw.
    #[inline]
    pub fn word36(&self) -> u32 {
        get_u32(self.as_bytes(), field::W36)
    }

    /// Byte 36 (Status-Class, AsyncEvent).
    #[inline]
    pub fn byte36(&self) -> u8 {
        get_u8(self.as_bytes(), field::W36)
    }

    /// Byte 37 (Status-Detail, AsyncVCode).
    #[inline]
    pub fn byte37(&self) -> u8 {
        get_u8(self.as_bytes(), field::W36 + 1)
    }

    /// Bytes 38-39 (Async Parameter1).
    #[inline]
    pub fn half38(&self) -> u16 {
        get_u16(self.as_bytes(), field::W36 + 2)
    }

    /// Bytes 40-43 (Buffer Offset, BegRun, Bidirectional Read Residual Count), raw.
    #[inline]
    pub fn word40(&self) -> u32 {
        get_u32(self.as_bytes(), field::W40)
    }

    /// Bytes 40-41 (Time2Wait, Async Parameter2).
    #[inline]
    pub fn half40(&self) -> u16 {
        get_u16(self.as_bytes(), field::W40)
    }

    /// Bytes 42-43 (Time2Retain, Async Parameter3).
    #[inline]
    pub fn half42(&self) -> u16 {
        get_u16(self.as_bytes(), field::W40 + 2)
    }

    /// Bytes 44-47 (Residual Count, Desired Data Transfer Length, RunLength), raw.
    #[inline]
    pub fn word44(&self) -> u32 {
        get_u32(self.as_bytes(), field::W44)
    }

    /// Bytes 32-47: the CDB of a SCSI Command (section 11.3.5).
    #[inline]
    pub fn cdb(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(src) = self.as_bytes().get(field::CDB..field::CDB + 16) {
            out.copy_from_slice(src);
        }
        out
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Bhs<T> {
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Zeroes all 48 bytes (reserved fields are sent as 0).
    #[inline]
    pub fn clear(&mut self) {
        if let Some(b) = self.bytes_mut().get_mut(..BHS_LEN) {
            b.fill(0);
        }
    }

    /// Zeroes every byte except TotalAHSLength and DataSegmentLength (4-7).
    #[inline]
    pub fn clear_except_lengths(&mut self) {
        let b = self.bytes_mut();
        if let Some(x) = b.get_mut(..4) {
            x.fill(0);
        }
        if let Some(x) = b.get_mut(8..BHS_LEN) {
            x.fill(0);
        }
    }

    /// Sets the opcode and I bit (byte 0; bit 7 is reserved and written 0).
    #[inline]
    pub fn set_opcode(&mut self, op: Opcode, immediate: bool) {
        let v = op.code() | if immediate { 0x40 } else { 0 };
        put(self.bytes_mut(), field::OPCODE, &[v]);
    }

    /// Sets byte 1 (flags).
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        put(self.bytes_mut(), field::FLAGS, &[v]);
    }

    /// Sets byte 2.
    #[inline]
    pub fn set_byte2(&mut self, v: u8) {
        put(self.bytes_mut(), field::BYTE2, &[v]);
    }

    /// Sets byte 3.
    #[inline]
    pub fn set_byte3(&mut self, v: u8) {
        put(self.bytes_mut(), field::BYTE3, &[v]);
    }

    /// Sets TotalAHSLength (in 4-byte words).
    #[inline]
    pub fn set_total_ahs_len(&mut self, words: u8) {
        put(self.bytes_mut(), field::TOTAL_AHS_LEN, &[words]);
    }

    /// Sets DataSegmentLength; only the low 24 bits are written.
    #[inline]
    pub fn set_data_segment_len(&mut self, len: u32) {
        let b = len.to_be_bytes();
        put(self.bytes_mut(), field::DATA_SEG_LEN, &b[1..]);
    }

    /// Sets the LUN (bytes 8-15).
    #[inline]
    pub fn set_lun(&mut self, lun: u64) {
        put(self.bytes_mut(), field::LUN, &lun.to_be_bytes());
    }

    /// Sets the ISID (bytes 8-13).
    #[inline]
    pub fn set_isid(&mut self, isid: [u8; 6]) {
        put(self.bytes_mut(), field::ISID, &isid);
    }

    /// Sets the TSIH (bytes 14-15).
    #[inline]
    pub fn set_tsih(&mut self, v: u16) {
        put(self.bytes_mut(), field::TSIH, &v.to_be_bytes());
    }

    /// Sets the Initiator Task Tag.
    #[inline]
    pub fn set_itt(&mut self, v: u32) {
        put(self.bytes_mut(), field::ITT, &v.to_be_bytes());
    }

    /// Sets bytes 20-23.
    #[inline]
    pub fn set_word20(&mut self, v: u32) {
        put(self.bytes_mut(), field::W20, &v.to_be_bytes());
    }

    /// Sets bytes 20-23 as the Target Transfer Tag.
    #[inline]
    pub fn set_ttt(&mut self, v: u32) {
        self.set_word20(v);
    }

    /// Sets the CID (bytes 20-21).
    #[inline]
    pub fn set_cid(&mut self, v: u16) {
        put(self.bytes_mut(), field::W20, &v.to_be_bytes());
    }

    /// Sets bytes 24-27 (CmdSN or StatSN).
    #[inline]
    pub fn set_word24(&mut self, v: u32) {
        put(self.bytes_mut(), field::W24, &v.to_be_bytes());
    }

    /// Sets bytes 28-31 (ExpStatSN or ExpCmdSN).
    #[inline]
    pub fn set_word28(&mut self, v: u32) {
        put(self.bytes_mut(), field::W28, &v.to_be_bytes());
    }

    /// Sets bytes 32-35 (MaxCmdSN, RefCmdSN).
    #[inline]
    pub fn set_word32(&mut self, v: u32) {
        put(self.bytes_mut(), field::W32, &v.to_be_bytes());
    }

    /// Sets bytes 36-39.
    #[inline]
    pub fn set_word36(&mut self, v: u32) {
        put(self.bytes_mut(), field::W36, &v.to_be_bytes());
    }

    /// Sets byte 36.
    #[inline]
    pub fn set_byte36(&mut self, v: u8) {
        put(self.bytes_mut(), field::W36, &[v]);
    }

    /// Sets byte 37.
    #[inline]
    pub fn set_byte37(&mut self, v: u8) {
        put(self.bytes_mut(), field::W36 + 1, &[v]);
    }

    /// Sets bytes 38-39.
    #[inline]
    pub fn set_half38(&mut self, v: u16) {
        put(self.bytes_mut(), field::W36 + 2, &v.to_be_bytes());
    }

    /// Sets bytes 40-43.
    #[inline]
    pub fn set_word40(&mut self, v: u32) {
        put(self.bytes_mut(), field::W40, &v.to_be_bytes());
    }

    /// Sets bytes 40-41.
    #[inline]
    pub fn set_half40(&mut self, v: u16) {
        put(self.bytes_mut(), field::W40, &v.to_be_bytes());
    }

    /// Sets bytes 42-43.
    #[inline]
    pub fn set_half42(&mut self, v: u16) {
        put(self.bytes_mut(), field::W40 + 2, &v.to_be_bytes());
    }

    /// Sets bytes 44-47.
    #[inline]
    pub fn set_word44(&mut self, v: u32) {
        put(self.bytes_mut(), field::W44, &v.to_be_bytes());
    }

    /// Sets the CDB (bytes 32-47).
    #[inline]
    pub fn set_cdb(&mut self, cdb: &[u8; 16]) {
        put(self.bytes_mut(), field::CDB, cdb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn short_buffer_is_rejected_and_unchecked_never_panics() {
        assert_eq!(
            Bhs::new_checked(&[0u8; 47][..]),
            Err(WireError::Truncated {
                needed: 48,
                got: 47
            })
        );
        let v = Bhs::new_unchecked(&[0xffu8; 3][..]);
        assert_eq!(v.itt(), 0);
        assert_eq!(v.lun(), 0);
        let mut short = [0u8; 5];
        let mut m = Bhs::new_unchecked(&mut short[..]);
        m.set_itt(7);
        m.set_data_segment_len(0x0102_0304);
    }

    #[test]
    fn opcode_table() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op.code()), Ok(op));
            assert_eq!(op.is_initiator(), op.code() < 0x20);
        }
        let known: Vec<u8> = Opcode::ALL.iter().map(|o| o.code()).collect();
        for v in 0u8..0x40 {
            if !known.contains(&v) {
                assert_eq!(Opcode::from_u8(v), Err(WireError::UnknownOpcode(v)));
            }
        }
        // I bit and bit 7 are masked.
        assert_eq!(Opcode::from_u8(0x43), Ok(Opcode::LoginRequest));
    }

    #[test]
    fn lengths_and_lun() {
        let mut b = [0u8; 48];
        let mut v = Bhs::new_checked(&mut b[..]).unwrap();
        v.set_total_ahs_len(3);
        v.set_data_segment_len(0xab_cdef);
        v.set_lun(0x0102_0304_0506_0708);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(v.total_ahs_len(), 3);
        assert_eq!(v.ahs_len_bytes(), 12);
        assert_eq!(v.data_segment_len(), 0xab_cdef);
        assert_eq!(v.lun(), 0x0102_0304_0506_0708);
        assert_eq!(&b[4..16], &[3, 0xab, 0xcd, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
