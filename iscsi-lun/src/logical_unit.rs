//! The logical unit: configuration, command dispatch, unit attentions.

use std::collections::{HashMap, VecDeque};

use iscsi_proto::scsi::cdb::opcode as op;
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{Lun, SenseData, SenseKey};

use crate::device::BlockDevice;
use crate::outcome::{ScsiOutcome, Transfer};
use crate::persistent_reservation::{Access, Pr, TransportId};
use crate::util::{bad_cdb, bad_opcode, be, byte, illegal, truncate, Fail};
use crate::NexusId;

/// Most unit attentions queued per nexus; older ones are dropped first.
const MAX_UA_PER_NEXUS: usize = 8;

/// Identity and limits of a [`LogicalUnit`].
///
/// Build it from [`LuConfig::default`] with the `with_*` methods:
///
/// ```
/// use iscsi_lun::LuConfig;
/// let cfg = LuConfig::default().with_serial("42".into()).with_read_only(true);
/// assert!(cfg.read_only);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// T10 VENDOR IDENTIFICATION (8 ASCII characters, space padded).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (16 ASCII characters).
    pub product: String,
    /// PRODUCT REVISION LEVEL (4 ASCII characters).
    pub revision: String,
    /// UNIT SERIAL NUMBER (VPD page 0x80), also part of the T10 vendor
    /// ID designator; printable ASCII, at most 64 characters are used.
    pub serial: String,
    /// The 8-byte NAA designator (VPD page 0x83). `None` derives a
    /// locally-assigned (NAA 3) identifier from vendor, product and serial.
    pub naa: Option<u64>,
    /// Reject writes with DATA PROTECT / WRITE PROTECTED (27/00).
    pub read_only: bool,
    /// The LUNs REPORT LUNS lists (the target's LUN inventory).
    pub luns: Vec<Lun>,
    /// MAXIMUM TRANSFER LENGTH in blocks (Block Limits VPD); larger
    /// READ/WRITE/VERIFY transfers get INVALID FIELD IN CDB. Also bounds
    /// the Data-In buffer a READ allocates.
    pub max_transfer_blocks: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks.
    pub max_write_same_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT.
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub max_unmap_descriptors: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks (1..=255).
    pub max_compare_and_write_blocks: u8,
    /// Advertise logical block provisioning (UNMAP, WRITE SAME with UNMAP,
    /// LBPME) when the device supports unmapping.
    pub thin_provisioning: bool,
    /// Initial state of the write cache (WCE in the caching mode page).
    pub write_cache: bool,
    /// RELATIVE TARGET PORT IDENTIFIER reported in VPD page 0x83.
    pub relative_port: u16,
}

impl LuConfig {
    crate::util::with_fields! {
        /// Sets [`vendor`](Self::vendor).
        with_vendor: vendor: String,
        /// Sets [`product`](Self::product).
        with_product: product: String,
        /// Sets [`revision`](Self::revision).
        with_revision: revision: String,
        /// Sets [`serial`](Self::serial).
        with_serial: serial: String,
        /// Sets [`naa`](Self::naa).
        with_naa: naa: Option<u64>,
        /// Sets [`read_only`](Self::read_only).
        with_read_only: read_only: bool,
        /// Sets [`luns`](Self::luns).
        with_luns: luns: Vec<Lun>,
        /// Sets [`max_transfer_blocks`](Self::max_transfer_blocks).
        with_max_transfer_blocks: max_transfer_blocks: u32,
        /// Sets [`max_write_same_blocks`](Self::max_write_same_blocks).
        with_max_write_same_blocks: max_write_same_blocks: u32,
        /// Sets [`max_unmap_blocks`](Self::max_unmap_blocks).
        with_max_unmap_blocks: max_unmap_blocks: u32,
        /// Sets [`max_unmap_descriptors`](Self::max_unmap_descriptors).
        with_max_unmap_descriptors: max_unmap_descriptors: u32,
        /// Sets [`max_compare_and_write_blocks`](Self::max_compare_and_write_blocks).
        with_max_compare_and_write_blocks: max_compare_and_write_blocks: u8,
        /// Sets [`thin_provisioning`](Self::thin_provisioning).
        with_thin_provisioning: thin_provisioning: bool,
        /// Sets [`write_cache`](Self::write_cache).
        with_write_cache: write_cache: bool,
        /// Sets [`relative_port`](Self::relative_port).
        with_relative_port: relative_port: u16,
    }
}

impl Default for LuConfig {
    fn default() -> Self {
        LuConfig {
            vendor: "RUST".into(),
            product: "ISCSI-LUN DISK".into(),
            revision: "0001".into(),
            serial: "0000000000000001".into(),
            naa: None,
            read_only: false,
            luns: vec![Lun::from_number(0)],
            max_transfer_blocks: 16384,
            max_write_same_blocks: 65536,
            max_unmap_blocks: 1 << 22,
            max_unmap_descriptors: 256,
            max_compare_and_write_blocks: 255,
            thin_provisioning: true,
            write_cache: true,
            relative_port: 1,
        }
    }
}

/// A SCSI direct-access block device (SBC-3) emulated over a
/// [`BlockDevice`].
pub struct LogicalUnit {
    pub(crate) dev: Box<dyn BlockDevice>,
    pub(crate) cfg: LuConfig,
    pub(crate) block_size: u32,
    pub(crate) num_blocks: u64,
    pub(crate) wce: bool,
    pub(crate) pr: Pr,
    ua: HashMap<NexusId, VecDeque<SenseData>>,
    /// Set for the duration of [`LogicalUnit::execute_transport`].
    pub(crate) short_writes: bool,
}

impl std::fmt::Debug for LogicalUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalUnit")
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// SPC-4 4.2.5.1: the CDB length follows from the opcode's group code.
fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Takes the CDB of the opcode's length out of `cdb` (the BHS carries 16
/// bytes; the rest is padding) and checks the CONTROL byte: NACA is not
/// supported (SAM-5 5.11: "If the NACA bit is set to one but the device
/// server does not support ACA, ... INVALID FIELD IN CDB").
pub(crate) fn cdb_view(cdb: &[u8]) -> Result<&[u8], Fail> {
    let opcode = *cdb.first().ok_or_else(bad_opcode)?;
    let len = cdb_len(opcode).ok_or_else(bad_opcode)?;
    let c = cdb.get(..len).ok_or_else(|| bad_cdb(0))?;
    if byte(c, len - 1) & 0x04 != 0 {
        return Err(bad_cdb(len as u16 - 1));
    }
    Ok(c)
}

fn access_of(c: &[u8]) -> Access {
    match byte(c, 0) {
        op::TEST_UNIT_READY
        | op::INQUIRY
        | op::REQUEST_SENSE
        | op::REPORT_LUNS
        | op::READ_CAPACITY_10
        | op::PERSISTENT_RESERVE_IN
        | op::PERSISTENT_RESERVE_OUT => Access::Always,
        op::SERVICE_ACTION_IN_16 if byte(c, 1) & 0x1f == op::SAI_READ_CAPACITY_16 => Access::Always,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::PRE_FETCH_10
        | op::PRE_FETCH_16
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        | op::SERVICE_ACTION_IN_16 => Access::Read,
        _ => Access::Write,
    }
}

impl LogicalUnit {
    /// Wraps `dev` with the given identity and limits.
    pub fn new(dev: impl BlockDevice + 'static, cfg: LuConfig) -> LogicalUnit {
        let block_size = dev.block_size();
        let num_blocks = dev.num_blocks();
        let wce = cfg.write_cache;
        LogicalUnit {
            dev: Box::new(dev),
            cfg,
            block_size,
            num_blocks,
            wce,
            pr: Pr::default(),
            ua: HashMap::new(),
            short_writes: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LuConfig {
        &self.cfg
    }

    /// The backing device.
    pub fn device(&self) -> &dyn BlockDevice {
        self.dev.as_ref()
    }

    /// The backing device, mutably (e.g. to preload contents).
    pub fn device_mut(&mut self) -> &mut dyn BlockDevice {
        self.dev.as_mut()
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Capacity in logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    /// Replaces the LUN inventory REPORT LUNS returns.
    pub fn set_luns(&mut self, luns: Vec<Lun>) {
        self.cfg.luns = luns;
    }

    /// Queues a unit attention for `nexus` (e.g. POWER ON, RESET 29/00 for
    /// a new I_T nexus, SAM-5 5.14). At most 8 are kept per nexus.
    pub fn add_unit_attention(&mut self, nexus: NexusId, sense: SenseData) {
        let q = self.ua.entry(nexus).or_default();
        if q.len() >= MAX_UA_PER_NEXUS {
            q.pop_front();
        }
        q.push_back(sense);
    }

    /// Forgets the per-nexus unit attention queue when the I_T nexus is
    /// gone. Persistent reservations survive nexus loss (SPC-4 5.7.2).
    pub fn nexus_lost(&mut self, nexus: NexusId) {
        self.ua.remove(&nexus);
        self.pr.port_lost(nexus);
    }

    /// Tells the logical unit the TransportID of the initiator port of
    /// `nexus` (e.g. [`TransportId::iscsi`] with the InitiatorName and
    /// ISID, when the session logs in). PERSISTENT RESERVE IN READ FULL
    /// STATUS (SPC-4 6.15.5) reports it for the nexus's registration; an
    /// unknown port is reported with an empty iSCSI name.
    pub fn set_transport_id(&mut self, nexus: NexusId, id: TransportId) {
        self.pr.set_port(nexus, id);
    }

    pub(crate) fn take_ua(&mut self, nexus: NexusId) -> Option<SenseData> {
        let q = self.ua.get_mut(&nexus)?;
        let s = q.pop_front();
        if q.is_empty() {
            self.ua.remove(&nexus);
        }
        s
    }

    /// Executes one command from `nexus`. `data_out` is the Data-Out
    /// buffer (immediate + unsolicited + solicited data), empty for
    /// commands without one. Never panics.
    pub fn execute(&mut self, nexus: NexusId, cdb: &[u8], data_out: &[u8]) -> ScsiOutcome {
        ScsiOutcome::from_result(self.run(nexus, cdb, data_out))
    }

    /// Executes like [`execute`](Self::execute), for a transport whose
    /// Data-Out buffer may be shorter than the CDB's transfer length (an
    /// iSCSI Expected Data Transfer Length below it, RFC 7143 section
    /// 11.4.5.1): a WRITE or WRITE AND VERIFY then writes the whole blocks
    /// the buffer holds and succeeds, and the transport reports the rest
    /// as a residual overflow against
    /// [`expected_transfer`](Self::expected_transfer). Other commands are
    /// as strict as with `execute`.
    pub fn execute_transport(
        &mut self,
        nexus: NexusId,
        cdb: &[u8],
        data_out: &[u8],
    ) -> ScsiOutcome {
        self.short_writes = true;
        let out = self.execute(nexus, cdb, data_out);
        self.short_writes = false;
        out
    }

    fn run(&mut self, nexus: NexusId, cdb: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        let opcode = *cdb.first().ok_or_else(bad_opcode)?;
        // SAM-5 5.14 / SPC-4 5.9: a pending unit attention is reported on
        // any command except INQUIRY, REPORT LUNS and REQUEST SENSE.
        if !matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE) {
            if let Some(s) = self.take_ua(nexus) {
                return Err(Fail::Check(s));
            }
        }
        let c = cdb_view(cdb)?;
        // SPC-4 5.7.1: reservation conflicts are detected before the
        // command's own fields are checked.
        self.pr.check(nexus, access_of(c))?;
        match opcode {
            op::TEST_UNIT_READY => Ok(Vec::new()),
            op::INQUIRY => self.inquiry(c),
            op::REQUEST_SENSE => self.request_sense(nexus, c),
            op::REPORT_LUNS => report_luns_data(c, &self.cfg.luns),
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => self.mode_sense(c),
            op::MODE_SELECT_6 | op::MODE_SELECT_10 => self.mode_select(c, data_out),
            op::PERSISTENT_RESERVE_IN => {
                let alloc = be(c, 7, 2);
                self.pr
                    .pr_in(c, self.cfg.relative_port)
                    .map(|v| truncate(v, alloc))
            }
            op::PERSISTENT_RESERVE_OUT => {
                let mut uas = Vec::new();
                let r = self.pr.pr_out(nexus, c, data_out, &mut uas);
                for (n, s) in uas {
                    self.add_unit_attention(n, s);
                }
                r.map(|()| Vec::new())
            }
            op::READ_CAPACITY_10 => self.read_capacity10(c),
            op::SERVICE_ACTION_IN_16 => match byte(c, 1) & 0x1f {
                op::SAI_READ_CAPACITY_16 => self.read_capacity16(c),
                op::SAI_GET_LBA_STATUS => self.get_lba_status(c),
                _ => Err(bad_cdb(1)),
            },
            op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => self.read(c),
            op::WRITE_6 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
                self.write(c, data_out, false)
            }
            op::WRITE_VERIFY_10 | op::WRITE_VERIFY_12 | op::WRITE_VERIFY_16 => {
                self.write(c, data_out, true)
            }
            op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => self.verify(c, data_out),
            op::SYNCHRONIZE_CACHE_10
            | op::SYNCHRONIZE_CACHE_16
            | op::PRE_FETCH_10
            | op::PRE_FETCH_16 => self.sync_or_prefetch(c),
            op::WRITE_SAME_10 | op::WRITE_SAME_16 => self.write_same(c, data_out),
            op::UNMAP => self.unmap(c, data_out),
            op::COMPARE_AND_WRITE => self.compare_and_write(c, data_out),
            op::START_STOP_UNIT => self.start_stop(c),
            // SBC-3 5.10: PREVENT ALLOW MEDIUM REMOVAL; the medium is not
            // removable, so every PREVENT value is accepted and ignored.
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => Ok(Vec::new()),
            _ => Err(bad_opcode()),
        }
    }

    /// The data transfer `cdb` implies for this LU: direction and the
    /// number of bytes (transfer or allocation length). The target uses it
    /// to check the SCSI Command PDU's R/W bits and Expected Data Transfer
    /// Length and to size R2Ts. Unknown or malformed CDBs give
    /// [`Transfer::NONE`].
    pub fn expected_transfer(&self, cdb: &[u8]) -> Transfer {
        let Ok(c) = cdb_view(cdb) else {
            return Transfer::NONE;
        };
        let bs = u64::from(self.block_size);
        let blocks = |n: u64| n.saturating_mul(bs);
        match byte(c, 0) {
            op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => {
                Transfer::data_in(blocks(crate::util::rw_fields(c).1))
            }
            op::WRITE_6
            | op::WRITE_10
            | op::WRITE_12
            | op::WRITE_16
            | op::WRITE_VERIFY_10
            | op::WRITE_VERIFY_12
            | op::WRITE_VERIFY_16 => Transfer::data_out(blocks(crate::util::rw_fields(c).1)),
            op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
                let n = crate::util::rw_fields(c).1;
                match (byte(c, 1) >> 1) & 0x03 {
                    0x01 => Transfer::data_out(blocks(n)),
                    0x03 if n > 0 => Transfer::data_out(bs),
                    _ => Transfer::NONE,
                }
            }
            op::WRITE_SAME_10 => Transfer::data_out(bs),
            op::WRITE_SAME_16 if byte(c, 1) & 0x01 != 0 => Transfer::NONE,
            op::WRITE_SAME_16 => Transfer::data_out(bs),
            op::COMPARE_AND_WRITE => {
                Transfer::data_out(blocks(u64::from(byte(c, 13)).saturating_mul(2)))
            }
            op::UNMAP => Transfer::data_out(be(c, 7, 2)),
            op::MODE_SELECT_6 => Transfer::data_out(u64::from(byte(c, 4))),
            op::MODE_SELECT_10 => Transfer::data_out(be(c, 7, 2)),
            op::PERSISTENT_RESERVE_OUT => Transfer::data_out(be(c, 5, 4)),
            op::INQUIRY => Transfer::data_in(be(c, 3, 2)),
            op::REQUEST_SENSE | op::MODE_SENSE_6 => Transfer::data_in(u64::from(byte(c, 4))),
            op::MODE_SENSE_10 | op::PERSISTENT_RESERVE_IN => Transfer::data_in(be(c, 7, 2)),
            op::REPORT_LUNS => Transfer::data_in(be(c, 6, 4)),
            op::READ_CAPACITY_10 => Transfer::data_in(8),
            op::SERVICE_ACTION_IN_16 => Transfer::data_in(be(c, 10, 4)),
            _ => Transfer::NONE,
        }
    }
}

/// REPORT LUNS data (SPC-4 6.33) for `luns`, cut to the allocation length.
pub(crate) fn report_luns_data(c: &[u8], luns: &[Lun]) -> Result<Vec<u8>, Fail> {
    let alloc = be(c, 6, 4);
    // SPC-4 6.33: "If the ALLOCATION LENGTH field is less than 16 bytes,
    // the device server may terminate the command with CHECK CONDITION
    // status ... INVALID FIELD IN CDB" (libiscsi and tgtd expect it).
    if alloc < 16 {
        return Err(bad_cdb(6));
    }
    // SELECT REPORT (SPC-4 table 166): 00h all but well-known LUs,
    // 01h only well-known LUs, 02h all; others are invalid here.
    let select = byte(c, 2);
    let keep = |l: &Lun| match select {
        0x00 => !l.is_well_known(),
        0x01 => l.is_well_known(),
        _ => true,
    };
    if select > 0x02 {
        return Err(bad_cdb(2));
    }
    let list: Vec<&Lun> = luns.iter().filter(|l| keep(l)).take(1 << 16).collect();
    let mut d = Vec::with_capacity(8 + list.len() * 8);
    d.extend_from_slice(&((list.len() * 8) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for l in list {
        d.extend_from_slice(&l.to_bytes());
    }
    Ok(truncate(d, alloc))
}

/// Executes REPORT LUNS against a LUN inventory; usable by the target for
/// any LUN, including the REPORT LUNS well-known LUN and LUNs that do not
/// exist (SPC-4 6.33: REPORT LUNS is addressed to any LUN).
pub fn report_luns(cdb: &[u8], luns: &[Lun]) -> ScsiOutcome {
    ScsiOutcome::from_result(cdb_view(cdb).and_then(|c| {
        if byte(c, 0) != op::REPORT_LUNS {
            return Err(bad_opcode());
        }
        report_luns_data(c, luns)
    }))
}

/// Executes a command addressed to a LUN that does not exist (SPC-4
/// 4.6.14 / SAM-5 5.10.6): INQUIRY returns PERIPHERAL QUALIFIER 011b /
/// DEVICE TYPE 1Fh, REPORT LUNS lists `luns`, REQUEST SENSE returns
/// LOGICAL UNIT NOT SUPPORTED as sense data, and everything else ends with
/// CHECK CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25/00).
pub fn execute_no_lun(cdb: &[u8], luns: &[Lun]) -> ScsiOutcome {
    let not_supported = SenseData::with_code(SenseKey::IllegalRequest, asc::LUN_NOT_SUPPORTED);
    let r = cdb_view(cdb).and_then(|c| match byte(c, 0) {
        op::REPORT_LUNS => report_luns_data(c, luns),
        op::INQUIRY => {
            if byte(c, 1) & 0x01 != 0 || byte(c, 2) != 0 {
                return Err(illegal(asc::LUN_NOT_SUPPORTED));
            }
            let mut d = [0u8; 36];
            d[0] = 0x7f;
            d[2] = 0x06;
            d[3] = 0x12;
            d[4] = 31;
            Ok(truncate(d.to_vec(), be(c, 3, 2)))
        }
        op::REQUEST_SENSE => Ok(truncate(
            not_supported.to_fixed().to_vec(),
            u64::from(byte(c, 4)),
        )),
        _ => Err(Fail::Check(not_supported)),
    });
    ScsiOutcome::from_result(r)
}
