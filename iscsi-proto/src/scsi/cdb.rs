//! CDB (Command Descriptor Block) builders for the commands an initiator
//! needs, and parsers for their responses (SPC-4, SBC-3). The builders
//! return the CDB bytes to place in the SCSI Command PDU (RFC 7143 section
//! 11.3.5: "CDBs whose length exceeds 16 bytes" use an extended-CDB AHS;
//! all builders here are 6, 10, 12 or 16 bytes and fit the BHS).

use super::lun::Lun;
use super::ScsiError;
use crate::prelude::*;

/// Operation codes (SPC-4 annex E, SBC-3 5.1).
pub mod opcode {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// READ (6).
    pub const READ_6: u8 = 0x08;
    /// WRITE (6).
    pub const WRITE_6: u8 = 0x0a;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// MODE SELECT (6).
    pub const MODE_SELECT_6: u8 = 0x15;
    /// RESERVE (6) (obsolete).
    pub const RESERVE_6: u8 = 0x16;
    /// RELEASE (6) (obsolete).
    pub const RELEASE_6: u8 = 0x17;
    /// MODE SENSE (6).
    pub const MODE_SENSE_6: u8 = 0x1a;
    /// START STOP UNIT.
    pub const START_STOP_UNIT: u8 = 0x1b;
    /// SEND DIAGNOSTIC.
    pub const SEND_DIAGNOSTIC: u8 = 0x1d;
    /// PREVENT ALLOW MEDIUM REMOVAL.
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    /// READ CAPACITY (10).
    pub const READ_CAPACITY_10: u8 = 0x25;
    /// READ (10).
    pub const READ_10: u8 = 0x28;
    /// WRITE (10).
    pub const WRITE_10: u8 = 0x2a;
    /// WRITE AND VERIFY (10).
    pub const WRITE_VERIFY_10: u8 = 0x2e;
    /// VERIFY (10).
    pub const VERIFY_10: u8 = 0x2f;
    /// PRE-FETCH (10).
    pub const PRE_FETCH_10: u8 = 0x34;
    /// SYNCHRONIZE CACHE (10).
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    /// WRITE BUFFER.
    pub const WRITE_BUFFER: u8 = 0x3b;
    /// READ BUFFER.
    pub const READ_BUFFER: u8 = 0x3c;
    /// WRITE SAME (10).
    pub const WRITE_SAME_10: u8 = 0x41;
    /// UNMAP.
    pub const UNMAP: u8 = 0x42;
    /// MODE SELECT (10).
    pub const MODE_SELECT_10: u8 = 0x55;
    /// MODE SENSE (10).
    pub const MODE_SENSE_10: u8 = 0x5a;
    /// PERSISTENT RESERVE IN.
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    /// PERSISTENT RESERVE OUT.
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    /// EXTENDED COPY.
    pub const EXTENDED_COPY: u8 = 0x83;
    /// READ (16).
    pub const READ_16: u8 = 0x88;
    /// COMPARE AND WRITE.
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    /// WRITE (16).
    pub const WRITE_16: u8 = 0x8a;
    /// ORWRITE (16).
    pub const ORWRITE_16: u8 = 0x8b;
    /// WRITE AND VERIFY (16).
    pub const WRITE_VERIFY_16: u8 = 0x8e;
    /// VERIFY (16).
    pub const VERIFY_16: u8 = 0x8f;
    /// PRE-FETCH (16).
    pub const PRE_FETCH_16: u8 = 0x90;
    /// SYNCHRONIZE CACHE (16).
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// WRITE SAME (16).
    pub const WRITE_SAME_16: u8 = 0x93;
    /// SERVICE ACTION IN (16): READ CAPACITY (16), GET LBA STATUS.
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xa0;
    /// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES etc.
    pub const MAINTENANCE_IN: u8 = 0xa3;
    /// READ (12).
    pub const READ_12: u8 = 0xa8;
    /// WRITE (12).
    pub const WRITE_12: u8 = 0xaa;
    /// WRITE AND VERIFY (12).
    pub const WRITE_VERIFY_12: u8 = 0xae;
    /// VERIFY (12).
    pub const VERIFY_12: u8 = 0xaf;

    /// SERVICE ACTION IN (16) service action: READ CAPACITY (16).
    pub const SAI_READ_CAPACITY_16: u8 = 0x10;
    /// SERVICE ACTION IN (16) service action: GET LBA STATUS.
    pub const SAI_GET_LBA_STATUS: u8 = 0x12;
}

/// The longest CDB kept inline in a [`Cdb`]: the BHS's CDB field (RFC 7143
/// section 11.3.5, 16 bytes). Longer ones travel partly in an Extended CDB
/// AHS (section 11.2.2.3) and are kept in a `Bytes`.
pub const INLINE_CDB_LEN: usize = 16;

/// A CDB, as a [`ScsiCommand`](crate::initiator::ScsiCommand) holds it and
/// its constructors take it, so a builder's array goes in as it is
/// (`ScsiCommand::read(lun, read16(lba, n, flags), len)`), as do a
/// `Vec<u8>`, a `Bytes` or a `&[u8]`.
///
/// Up to 16 bytes (every CDB that fits the BHS, RFC 7143 section 11.3.5:
/// READ/WRITE(6/10/12/16) and the rest of SBC/SPC's usual commands) are
/// stored inline: building and submitting a command allocates nothing for
/// its CDB, and the one copy is the one into the command (the session
/// keeps it there for a reissue after recovery, section 7.2.1). Longer
/// CDBs (up to 260 bytes, the rest in an Extended CDB AHS, section
/// 11.2.2.3) are kept in a `Bytes` (a `Bytes` or `Vec<u8>` given is taken
/// without a copy).
#[derive(Clone)]
pub struct Cdb(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of `bytes` (the rest zero).
    Inline {
        len: u8,
        bytes: [u8; INLINE_CDB_LEN],
    },
    /// More than [`INLINE_CDB_LEN`] bytes.
    Long(bytes::Bytes),
}

impl Cdb {
    /// A CDB from `a`: inline when it is at most [`INLINE_CDB_LEN`] bytes
    /// long, else copied into a `Bytes`.
    pub fn from_slice(a: &[u8]) -> Cdb {
        match Cdb::inline(a) {
            Some(c) => c,
            None => Cdb(Repr::Long(bytes::Bytes::copy_from_slice(a))),
        }
    }

    fn inline(a: &[u8]) -> Option<Cdb> {
        let mut bytes = [0u8; INLINE_CDB_LEN];
        bytes.get_mut(..a.len())?.copy_from_slice(a);
        let len = u8::try_from(a.len()).ok()?;
        Some(Cdb(Repr::Inline { len, bytes }))
    }

    /// The CDB bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            Repr::Long(b) => b,
        }
    }

    /// The CDB's first 16 bytes as the BHS carries them (zero-padded, RFC
    /// 7143 section 11.3.5).
    pub fn bhs_field(&self) -> [u8; INLINE_CDB_LEN] {
        match &self.0 {
            Repr::Inline { bytes, .. } => *bytes,
            Repr::Long(b) => {
                let mut out = [0u8; INLINE_CDB_LEN];
                for (d, s) in out.iter_mut().zip(b.iter()) {
                    *d = *s;
                }
                out
            }
        }
    }

    /// The bytes beyond the first 16, for the Extended CDB AHS (RFC 7143
    /// section 11.2.2.3); `None` for a CDB that fits the BHS. Never
    /// copies.
    pub fn extended(&self) -> Option<bytes::Bytes> {
        match &self.0 {
            Repr::Long(b) if b.len() > INLINE_CDB_LEN => Some(b.slice(INLINE_CDB_LEN..)),
            _ => None,
        }
    }

    /// The CDB bytes as a `Bytes` (a copy for an inline CDB).
    pub fn into_bytes(self) -> bytes::Bytes {
        match self.0 {
            Repr::Inline { .. } => bytes::Bytes::copy_from_slice(self.as_slice()),
            Repr::Long(b) => b,
        }
    }

    /// Whether the CDB is stored inline (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl core::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Cdb").field(&self.as_slice()).finish()
    }
}

impl PartialEq for Cdb {
    fn eq(&self, other: &Cdb) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Cdb {}

impl Default for Cdb {
    /// An empty CDB (which `Session::submit` refuses).
    fn default() -> Cdb {
        Cdb(Repr::Inline {
            len: 0,
            bytes: [0; INLINE_CDB_LEN],
        })
    }
}

impl core::ops::Deref for Cdb {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Cdb {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> From<[u8; N]> for Cdb {
    fn from(a: [u8; N]) -> Cdb {
        Cdb::from_slice(&a)
    }
}

impl<const N: usize> From<&[u8; N]> for Cdb {
    fn from(a: &[u8; N]) -> Cdb {
        Cdb::from_slice(a)
    }
}

impl From<&[u8]> for Cdb {
    fn from(a: &[u8]) -> Cdb {
        Cdb::from_slice(a)
    }
}

impl From<Vec<u8>> for Cdb {
    fn from(v: Vec<u8>) -> Cdb {
        match Cdb::inline(&v) {
            Some(c) => c,
            None => Cdb(Repr::Long(v.into())),
        }
    }
}

impl From<bytes::Bytes> for Cdb {
    fn from(b: bytes::Bytes) -> Cdb {
        match Cdb::inline(&b) {
            Some(c) => c,
            None => Cdb(Repr::Long(b)),
        }
    }
}

impl From<Cdb> for bytes::Bytes {
    fn from(c: Cdb) -> bytes::Bytes {
        c.into_bytes()
    }
}

/// DPO/FUA bits of READ and WRITE CDBs (SBC-3 5.8, 5.32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RwFlags {
    /// Disable page out: do not keep the data in cache.
    pub dpo: bool,
    /// Force unit access: go to (or come from) the medium.
    pub fua: bool,
}

impl RwFlags {
    fn byte1(self) -> u8 {
        (if self.dpo { 0x10 } else { 0 }) | (if self.fua { 0x08 } else { 0 })
    }
}

/// TEST UNIT READY (SPC-4 6.47).
pub const fn test_unit_ready() -> [u8; 6] {
    [opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0]
}

/// REQUEST SENSE (SPC-4 6.39) with the given allocation length, fixed format.
pub const fn request_sense(alloc_len: u8) -> [u8; 6] {
    [opcode::REQUEST_SENSE, 0, 0, 0, alloc_len, 0]
}

/// Standard INQUIRY (SPC-4 6.6), EVPD = 0.
pub const fn inquiry(alloc_len: u16) -> [u8; 6] {
    let a = alloc_len.to_be_bytes();
    [opcode::INQUIRY, 0, 0, a[0], a[1], 0]
}

/// INQUIRY for a vital product data page (SPC-4 6.6, EVPD = 1).
pub const fn inquiry_vpd(page: u8, alloc_len: u16) -> [u8; 6] {
    let a = alloc_len.to_be_bytes();
    [opcode::INQUIRY, 1, page, a[0], a[1], 0]
}

/// READ CAPACITY (10) (SBC-3 5.15).
pub const fn read_capacity10() -> [u8; 10] {
    [opcode::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// READ CAPACITY (16) (SBC-3 5.16; SERVICE ACTION IN 0x9e / 0x10).
pub const fn read_capacity16(alloc_len: u32) -> [u8; 16] {
    let a = alloc_len.to_be_bytes();
    let mut c = [0u8; 16];
    c[0] = opcode::SERVICE_ACTION_IN_16;
    c[1] = opcode::SAI_READ_CAPACITY_16;
    c[10] = a[0];
    c[11] = a[1];
    c[12] = a[2];
    c[13] = a[3];
    c
}

fn rw10(op: u8, lba: u32, blocks: u16, flags: RwFlags) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [op, flags.byte1(), l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn rw16(op: u8, lba: u64, blocks: u32, flags: RwFlags) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags.byte1();
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ (10) (SBC-3 5.11).
pub fn read10(lba: u32, blocks: u16, flags: RwFlags) -> [u8; 10] {
    rw10(opcode::READ_10, lba, blocks, flags)
}

/// READ (16) (SBC-3 5.13).
pub fn read16(lba: u64, blocks: u32, flags: RwFlags) -> [u8; 16] {
    rw16(opcode::READ_16, lba, blocks, flags)
}

/// WRITE (10) (SBC-3 5.32).
pub fn write10(lba: u32, blocks: u16, flags: RwFlags) -> [u8; 10] {
    rw10(opcode::WRITE_10, lba, blocks, flags)
}

/// WRITE (16) (SBC-3 5.34).
pub fn write16(lba: u64, blocks: u32, flags: RwFlags) -> [u8; 16] {
    rw16(opcode::WRITE_16, lba, blocks, flags)
}

/// SYNCHRONIZE CACHE (10) (SBC-3 5.22); `blocks` 0 means "to the end".
pub fn synchronize_cache10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(
        opcode::SYNCHRONIZE_CACHE_10,
        lba,
        blocks,
        RwFlags::default(),
    )
}

/// REPORT LUNS (SPC-4 6.33); `select_report` 0 = all logical units
/// except well-known ones.
pub const fn report_luns(select_report: u8, alloc_len: u32) -> [u8; 12] {
    let a = alloc_len.to_be_bytes();
    [
        opcode::REPORT_LUNS,
        0,
        select_report,
        0,
        0,
        0,
        a[0],
        a[1],
        a[2],
        a[3],
        0,
        0,
    ]
}

/// Page control field of MODE SENSE (SPC-4 6.11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageControl {
    /// 00b current values.
    Current = 0,
    /// 01b changeable values.
    Changeable = 1,
    /// 10b default values.
    Default = 2,
    /// 11b saved values.
    Saved = 3,
}

/// MODE SENSE (6) (SPC-4 6.11). `dbd` disables block descriptors.
pub const fn mode_sense6(
    dbd: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
    alloc_len: u8,
) -> [u8; 6] {
    [
        opcode::MODE_SENSE_6,
        if dbd { 0x08 } else { 0 },
        ((pc as u8) << 6) | (page & 0x3f),
        subpage,
        alloc_len,
        0,
    ]
}

/// MODE SENSE (10) (SPC-4 6.12).
pub const fn mode_sense10(
    dbd: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
    alloc_len: u16,
) -> [u8; 10] {
    let a = alloc_len.to_be_bytes();
    [
        opcode::MODE_SENSE_10,
        if dbd { 0x08 } else { 0 },
        ((pc as u8) << 6) | (page & 0x3f),
        subpage,
        0,
        0,
        0,
        a[0],
        a[1],
        0,
    ]
}

fn trimmed_ascii(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim_end().to_string()
}

/// Standard INQUIRY data (SPC-4 6.6.2), the fields an initiator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardInquiry {
    /// PERIPHERAL QUALIFIER (0: connected, 1: not connected, 3: no LU).
    pub peripheral_qualifier: u8,
    /// PERIPHERAL DEVICE TYPE (0x00 disk, 0x05 CD/DVD, 0x0c storage
    /// array controller, 0x1f unknown / no device type).
    pub device_type: u8,
    /// RMB: removable medium.
    pub removable: bool,
    /// VERSION (0x06 = SPC-4).
    pub version: u8,
    /// RESPONSE DATA FORMAT (must be 2).
    pub response_data_format: u8,
    /// HISUP: hierarchical LUN addressing supported.
    pub hisup: bool,
    /// TPGS field (asymmetric logical unit access).
    pub tpgs: u8,
    /// 3PC: third-party copy supported.
    pub third_party_copy: bool,
    /// PROTECT: protection information supported.
    pub protect: bool,
    /// CMDQUE: command queuing supported.
    pub cmdque: bool,
    /// T10 VENDOR IDENTIFICATION, trailing spaces removed.
    pub vendor: String,
    /// PRODUCT IDENTIFICATION, trailing spaces removed.
    pub product: String,
    /// PRODUCT REVISION LEVEL, trailing spaces removed.
    pub revision: String,
}

/// Minimum standard INQUIRY data length holding vendor/product/revision.
pub const STANDARD_INQUIRY_MIN_LEN: usize = 36;

impl StandardInquiry {
    /// Parses standard INQUIRY data; needs at least 36 bytes.
    pub fn parse(data: &[u8]) -> Result<StandardInquiry, ScsiError> {
        let Some(d) = data.first_chunk::<STANDARD_INQUIRY_MIN_LEN>() else {
            return Err(ScsiError::Truncated {
                what: "standard INQUIRY data",
                need: STANDARD_INQUIRY_MIN_LEN,
                got: data.len(),
                section: "SPC-4 6.6.2",
            });
        };
        Ok(StandardInquiry {
            peripheral_qualifier: d[0] >> 5,
            device_type: d[0] & 0x1f,
            removable: d[1] & 0x80 != 0,
            version: d[2],
            response_data_format: d[3] & 0x0f,
            hisup: d[3] & 0x10 != 0,
            tpgs: (d[5] >> 4) & 0x03,
            third_party_copy: d[5] & 0x08 != 0,
            protect: d[5] & 0x01 != 0,
            cmdque: d[7] & 0x02 != 0,
            vendor: trimmed_ascii(&d[8..16]),
            product: trimmed_ascii(&d[16..32]),
            revision: trimmed_ascii(&d[32..36]),
        })
    }
}

/// Capacity returned by READ CAPACITY (10) or (16) (SBC-3 5.15, 5.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capacity {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA.
    pub last_lba: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_len: u32,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (16 only).
    pub lbppbe: u8,
    /// LBPME: logical block provisioning management enabled (16 only).
    pub lbpme: bool,
    /// LBPRZ: unmapped blocks read as zero (16 only).
    pub lbprz: bool,
    /// PROT_EN: protection information enabled (16 only).
    pub prot_en: bool,
    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS (16 only).
    pub lowest_aligned_lba: u16,
}

impl Capacity {
    /// Parses READ CAPACITY (10) parameter data (8 bytes).
    ///
    /// SBC-3 5.15.2: a last LBA of 0xFFFFFFFF means the capacity does not
    /// fit and READ CAPACITY (16) must be used; see [`Capacity::needs_16`].
    pub fn parse10(data: &[u8]) -> Result<Capacity, ScsiError> {
        let Some(d) = data.first_chunk::<8>() else {
            return Err(ScsiError::Truncated {
                what: "READ CAPACITY (10) data",
                need: 8,
                got: data.len(),
                section: "SBC-3 5.15.2",
            });
        };
        Ok(Capacity {
            last_lba: u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])),
            block_len: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ..Capacity::default()
        })
    }

    /// Parses READ CAPACITY (16) parameter data (at least 32 bytes; the
    /// first 12 are enough for the last LBA and block length and are
    /// accepted when the allocation length was short).
    pub fn parse16(data: &[u8]) -> Result<Capacity, ScsiError> {
        let Some(d) = data.first_chunk::<12>() else {
            return Err(ScsiError::Truncated {
                what: "READ CAPACITY (16) data",
                need: 12,
                got: data.len(),
                section: "SBC-3 5.16.2",
            });
        };
        let mut last = [0u8; 8];
        last.copy_from_slice(&d[..8]);
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        Ok(Capacity {
            last_lba: u64::from_be_bytes(last),
            block_len: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            prot_en: b(12) & 0x01 != 0,
            lbppbe: b(13) & 0x0f,
            lbpme: b(14) & 0x80 != 0,
            lbprz: b(14) & 0x40 != 0,
            lowest_aligned_lba: u16::from_be_bytes([b(14) & 0x3f, b(15)]),
        })
    }

    /// True when READ CAPACITY (10) reported 0xFFFFFFFF (use the 16 form).
    pub fn needs_16(&self) -> bool {
        self.last_lba == u64::from(u32::MAX)
    }

    /// Number of logical blocks (`last_lba + 1`), `None` on overflow.
    pub fn num_blocks(&self) -> Option<u64> {
        self.last_lba.checked_add(1)
    }

    /// Total capacity in bytes, `None` on overflow.
    pub fn total_bytes(&self) -> Option<u64> {
        self.num_blocks()?.checked_mul(u64::from(self.block_len))
    }
}

/// REPORT LUNS parameter data (SPC-4 6.33.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportLuns {
    /// The LUN entries present in the returned data.
    pub luns: Vec<Lun>,
    /// LUN LIST LENGTH as reported by the target, in bytes; if larger than
    /// the data returned, the list was cut by the allocation length.
    pub list_len: u32,
}

impl ReportLuns {
    /// Parses REPORT LUNS data. Entries past the returned bytes are not
    /// invented: allocation is bounded by `data.len() / 8`.
    pub fn parse(data: &[u8]) -> Result<ReportLuns, ScsiError> {
        let Some(h) = data.first_chunk::<8>() else {
            return Err(ScsiError::Truncated {
                what: "REPORT LUNS data",
                need: 8,
                got: data.len(),
                section: "SPC-4 6.33.2",
            });
        };
        let list_len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        // SPC-4 6.33.2: LUN LIST LENGTH is a multiple of 8.
        if list_len % 8 != 0 {
            return Err(ScsiError::Malformed {
                what: "REPORT LUNS data",
                detail: "LUN LIST LENGTH is not a multiple of 8",
                section: "SPC-4 6.33.2",
            });
        }
        let body = data.get(8..).unwrap_or_default();
        let avail = body
            .len()
            .min(usize::try_from(list_len).unwrap_or(usize::MAX));
        let luns = body
            .get(..avail)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                Lun::from_bytes(b)
            })
            .collect();
        Ok(ReportLuns { luns, list_len })
    }

    /// True when the target has more entries than were returned.
    pub fn truncated(&self) -> bool {
        (self.luns.len() as u64).saturating_mul(8) < u64::from(self.list_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_builders() {
        assert_eq!(test_unit_ready(), [0; 6]);
        assert_eq!(request_sense(18), [0x03, 0, 0, 0, 18, 0]);
        assert_eq!(inquiry(0x1234), [0x12, 0, 0, 0x12, 0x34, 0]);
        assert_eq!(inquiry_vpd(0x83, 255), [0x12, 1, 0x83, 0, 255, 0]);
        assert_eq!(read_capacity10()[0], 0x25);
        let rc = read_capacity16(32);
        assert_eq!(&rc[..2], &[0x9e, 0x10]);
        assert_eq!(&rc[10..14], &[0, 0, 0, 32]);
        assert_eq!(
            report_luns(2, 4096),
            [0xa0, 0, 2, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
        );
        assert_eq!(
            mode_sense6(true, PageControl::Current, 0x3f, 0, 255),
            [0x1a, 8, 0x3f, 0, 255, 0]
        );
        assert_eq!(
            mode_sense10(false, PageControl::Changeable, 0x08, 0, 0x100),
            [0x5a, 0, 0x48, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(synchronize_cache10(5, 0), [0x35, 0, 0, 0, 0, 5, 0, 0, 0, 0]);
    }

    #[test]
    fn rw_builders() {
        let f = RwFlags {
            dpo: true,
            fua: true,
        };
        assert_eq!(
            read10(0x01020304, 8, f),
            [0x28, 0x18, 1, 2, 3, 4, 0, 0, 8, 0]
        );
        assert_eq!(
            write10(1, 0x102, RwFlags::default()),
            [0x2a, 0, 0, 0, 0, 1, 0, 1, 2, 0]
        );
        let r = read16(
            0x0102030405060708,
            0x0a0b0c0d,
            RwFlags {
                dpo: false,
                fua: true,
            },
        );
        assert_eq!(r[0], 0x88);
        assert_eq!(r[1], 0x08);
        assert_eq!(&r[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&r[10..14], &[0xa, 0xb, 0xc, 0xd]);
        assert_eq!(write16(0, 1, RwFlags::default())[0], 0x8a);
    }

    #[test]
    fn inquiry_parse() {
        let mut d = [0x20u8; 36];
        d[0] = 0x00;
        d[1] = 0x80;
        d[2] = 0x06;
        d[3] = 0x12;
        d[5] = 0x08;
        d[7] = 0x02;
        d[8..12].copy_from_slice(b"IET ");
        d[16..20].copy_from_slice(b"VIRT");
        d[32..36].copy_from_slice(b"0001");
        let i = StandardInquiry::parse(&d).unwrap();
        assert_eq!(i.peripheral_qualifier, 0);
        assert_eq!(i.device_type, 0);
        assert!(i.removable);
        assert_eq!(i.version, 6);
        assert_eq!(i.response_data_format, 2);
        assert!(i.hisup && i.cmdque && i.third_party_copy);
        assert_eq!(i.vendor, "IET");
        assert_eq!(i.product, "VIRT");
        assert_eq!(i.revision, "0001");
        d[0] = 0x7f;
        let i = StandardInquiry::parse(&d).unwrap();
        assert_eq!((i.peripheral_qualifier, i.device_type), (3, 0x1f));
        assert!(matches!(
            StandardInquiry::parse(&d[..35]),
            Err(ScsiError::Truncated {
                need: 36,
                got: 35,
                ..
            })
        ));
    }

    #[test]
    fn capacity_parse() {
        let c = Capacity::parse10(&[0, 0, 0x1f, 0xff, 0, 0, 2, 0]).unwrap();
        assert_eq!(c.last_lba, 0x1fff);
        assert_eq!(c.block_len, 512);
        assert_eq!(c.num_blocks(), Some(0x2000));
        assert_eq!(c.total_bytes(), Some(4 * 1024 * 1024));
        assert!(!c.needs_16());
        assert!(Capacity::parse10(&[0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0])
            .unwrap()
            .needs_16());
        assert!(Capacity::parse10(&[0; 7]).is_err());

        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        d[8..12].copy_from_slice(&4096u32.to_be_bytes());
        d[13] = 3;
        d[14] = 0xc0;
        d[15] = 1;
        let c = Capacity::parse16(&d).unwrap();
        assert_eq!(c.last_lba, 0x1_0000_0000);
        assert_eq!(c.block_len, 4096);
        assert_eq!(c.lbppbe, 3);
        assert!(c.lbpme && c.lbprz);
        assert_eq!(c.lowest_aligned_lba, 1);
        assert_eq!(c.total_bytes(), Some(0x1_0000_0001 * 4096));
        assert!(Capacity::parse16(&d[..12]).is_ok());
        assert!(Capacity::parse16(&d[..11]).is_err());
        let huge = Capacity {
            last_lba: u64::MAX,
            block_len: 512,
            ..Capacity::default()
        };
        assert_eq!(huge.total_bytes(), None);
        let huge = Capacity {
            last_lba: u64::MAX / 2,
            block_len: 512,
            ..Capacity::default()
        };
        assert_eq!(huge.total_bytes(), None);
    }

    #[test]
    fn report_luns_parse() {
        let mut d = vec![0, 0, 0, 16, 0, 0, 0, 0];
        d.extend_from_slice(&Lun::from_number(0).to_bytes());
        d.extend_from_slice(&Lun::from_number(300).to_bytes());
        let r = ReportLuns::parse(&d).unwrap();
        assert_eq!(r.luns, vec![Lun::from_number(0), Lun::from_number(300)]);
        assert!(!r.truncated());
        // Cut by allocation length: list says 3 entries, 1 returned.
        let mut d2 = vec![0, 0, 0, 24, 0, 0, 0, 0];
        d2.extend_from_slice(&Lun::from_number(1).to_bytes());
        d2.extend_from_slice(&[0, 0, 0]);
        let r = ReportLuns::parse(&d2).unwrap();
        assert_eq!(r.luns.len(), 1);
        assert!(r.truncated());
        // Huge list length does not allocate.
        let r = ReportLuns::parse(&[0xff, 0xff, 0xff, 0xf8, 0, 0, 0, 0]).unwrap();
        assert!(r.luns.is_empty() && r.truncated());
        assert!(ReportLuns::parse(&[0, 0, 0, 9, 0, 0, 0, 0]).is_err());
        assert!(ReportLuns::parse(&[0, 0, 0]).is_err());
    }
}
