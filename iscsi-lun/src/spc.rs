//! SPC-4 (SCSI Primary Commands) commands: INQUIRY and VPD pages, MODE SENSE / MODE SELECT,
//! REQUEST SENSE.

use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{SenseData, SenseKey};

use crate::logical_unit::LogicalUnit;
use crate::util::{ascii_field, bad_cdb, be, byte, illegal, truncate, Fail};
use crate::NexusId;

/// VPD pages this LU returns (SPC-4 7.8, SBC-3 6.6), in ascending order.
const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Mode pages (SPC-4 7.5, SBC-3 6.5) in ascending order.
const MODE_PAGES: [u8; 3] = [0x08, 0x0a, 0x1c];

/// T10 version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00a0, 0x0960, 0x0460, 0x04c0];

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn bad_param() -> Fail {
    illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST)
}

impl LogicalUnit {
    /// INQUIRY, SPC-4 6.6.
    pub(crate) fn inquiry(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let b1 = byte(c, 1);
        let page = byte(c, 2);
        let alloc = be(c, 3, 2);
        // SPC-4 6.6.1: CMDDT is obsolete (INVALID FIELD IN CDB when set);
        // "If the EVPD bit is set to zero and the PAGE CODE field is not
        // set to zero, ... INVALID FIELD IN CDB".
        if b1 & 0x02 != 0 {
            return Err(bad_cdb(1));
        }
        let data = if b1 & 0x01 == 0 {
            if page != 0 {
                return Err(bad_cdb(2));
            }
            self.standard_inquiry()
        } else {
            self.vpd(page)?
        };
        Ok(truncate(data, alloc))
    }

    fn standard_inquiry(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(66);
        // Peripheral qualifier 000b, device type 00h (direct access block).
        d.push(0x00);
        d.push(0x00); // RMB = 0
        d.push(0x06); // VERSION: SPC-4
        d.push(0x12); // HISUP, RESPONSE DATA FORMAT 2
        d.push(61); // ADDITIONAL LENGTH (66 - 5)
        d.push(0x00);
        d.push(0x00);
        d.push(0x02); // CMDQUE
        ascii_field(&mut d, &self.cfg.vendor, 8);
        ascii_field(&mut d, &self.cfg.product, 16);
        ascii_field(&mut d, &self.cfg.revision, 4);
        d.resize(58, 0);
        for v in VERSION_DESCRIPTORS {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d
    }

    fn naa(&self) -> u64 {
        self.cfg.naa.unwrap_or_else(|| {
            // NAA 3h: locally assigned (SPC-4 7.8.6.6.2).
            (3u64 << 60) | (fnv1a(&[&self.cfg.vendor, &self.cfg.product, &self.cfg.serial]) >> 4)
        })
    }

    fn serial(&self) -> Vec<u8> {
        self.cfg
            .serial
            .bytes()
            .filter(|c| (0x20..0x7f).contains(c))
            .take(64)
            .collect()
    }

    fn vpd(&self, page: u8) -> Result<Vec<u8>, Fail> {
        let mut body = Vec::new();
        match page {
            // SPC-4 7.8.13 Supported VPD Pages.
            0x00 => body.extend_from_slice(&VPD_PAGES),
            // SPC-4 7.8.15 Unit Serial Number.
            0x80 => body.extend(self.serial()),
            // SPC-4 7.8.6 Device Identification.
            0x83 => {
                // NAA designator: code set binary, association LU, type 3.
                body.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
                body.extend_from_slice(&self.naa().to_be_bytes());
                // T10 vendor ID designator: ASCII, association LU, type 1.
                let mut t10 = Vec::new();
                ascii_field(&mut t10, &self.cfg.vendor, 8);
                ascii_field(&mut t10, &self.cfg.product, 16);
                t10.extend(self.serial());
                body.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
                body.extend(t10);
                // Relative target port: protocol iSCSI (5h), PIV,
                // association target port, type 4.
                body.extend_from_slice(&[0x51, 0x94, 0x00, 0x04, 0, 0]);
                body.extend_from_slice(&self.cfg.relative_port.to_be_bytes());
            }
            // SBC-3 6.6.3 Block Limits (page length 3Ch).
            0xb0 => {
                let thin = self.thin();
                // A fixed-size page: its indices are checked at compile time.
                let mut p = [0u8; 0x3c];
                p[0] = 0x01; // WSNZ
                p[1] = self.cfg.max_compare_and_write_blocks;
                p[2..4].copy_from_slice(&1u16.to_be_bytes());
                p[4..8].copy_from_slice(&self.cfg.max_transfer_blocks.to_be_bytes());
                p[8..12].copy_from_slice(&self.cfg.max_transfer_blocks.to_be_bytes());
                if thin {
                    p[16..20].copy_from_slice(&self.cfg.max_unmap_blocks.to_be_bytes());
                    p[20..24].copy_from_slice(&self.cfg.max_unmap_descriptors.to_be_bytes());
                    p[24..28].copy_from_slice(&1u32.to_be_bytes());
                }
                p[32..40].copy_from_slice(&u64::from(self.cfg.max_write_same_blocks).to_be_bytes());
                body.extend_from_slice(&p);
            }
            // SBC-3 6.6.2 Block Device Characteristics: non-rotating medium.
            0xb1 => {
                let mut p = [0u8; 0x3c];
                p[0..2].copy_from_slice(&1u16.to_be_bytes());
                body.extend_from_slice(&p);
            }
            // SBC-3 6.6.4 Logical Block Provisioning.
            0xb2 => {
                let thin = self.thin();
                // LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type 2 (thin).
                body.extend_from_slice(&[
                    0,
                    if thin { 0xe4 } else { 0 },
                    if thin { 0x02 } else { 0 },
                    0,
                ]);
            }
            // SPC-4 6.6.1: an unsupported VPD page is INVALID FIELD IN CDB.
            _ => return Err(bad_cdb(2)),
        }
        let mut d = Vec::with_capacity(body.len() + 4);
        d.extend_from_slice(&[0x00, page]);
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend(body);
        Ok(d)
    }

    /// Current (or changeable-mask) contents of a mode page.
    fn mode_page(&self, page: u8, changeable: bool) -> Vec<u8> {
        match page {
            // SBC-3 6.5.5 Caching mode page: WCE is the one changeable bit.
            0x08 => {
                let mut p = [0u8; 20];
                p[0] = 0x08;
                p[1] = 0x12;
                p[2] = if changeable || self.wce { 0x04 } else { 0 };
                p.to_vec()
            }
            // SPC-4 7.5.8 Control mode page: queue algorithm modifier 1
            // (unrestricted reordering) when reporting current values.
            0x0a => {
                let mut p = [0u8; 12];
                p[0] = 0x0a;
                p[1] = 0x0a;
                if !changeable {
                    p[3] = 0x10;
                    p[8] = 0xff;
                    p[9] = 0xff;
                }
                p.to_vec()
            }
            // SPC-4 7.5.14 Informational Exceptions Control mode page.
            _ => {
                let mut p = [0u8; 12];
                p[0] = 0x1c;
                p[1] = 0x0a;
                p.to_vec()
            }
        }
    }

    /// MODE SENSE (6/10), SPC-4 6.11/6.12.
    pub(crate) fn mode_sense(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let ten = c.len() == 10;
        let b1 = byte(c, 1);
        let dbd = b1 & 0x08 != 0;
        let llbaa = ten && b1 & 0x10 != 0;
        let pc = byte(c, 2) >> 6;
        let page = byte(c, 2) & 0x3f;
        let subpage = byte(c, 3);
        let alloc = if ten {
            be(c, 7, 2)
        } else {
            u64::from(byte(c, 4))
        };
        // SPC-4 6.11.1: saved values are not implemented: "SAVING
        // PARAMETERS NOT SUPPORTED".
        if pc == 3 {
            return Err(illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED));
        }
        // No subpages exist: 00h and FFh (all subpages) are accepted; any
        // other SUBPAGE CODE is INVALID FIELD IN CDB.
        if subpage != 0x00 && subpage != 0xff {
            return Err(bad_cdb(3));
        }
        let pages: Vec<u8> = if page == 0x3f {
            MODE_PAGES.to_vec()
        } else if MODE_PAGES.contains(&page) {
            vec![page]
        } else {
            return Err(bad_cdb(2));
        };
        let changeable = pc == 1;
        let mut bd = Vec::new();
        if !dbd {
            let (blocks, bs) = if changeable {
                (0, 0)
            } else {
                (self.num_blocks, self.block_size)
            };
            if llbaa {
                bd.extend_from_slice(&blocks.to_be_bytes());
                bd.extend_from_slice(&[0; 4]);
                bd.extend_from_slice(&bs.to_be_bytes());
            } else {
                bd.extend_from_slice(&(blocks.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                bd.push(0);
                bd.extend_from_slice(&bs.to_be_bytes()[1..]);
            }
        }
        // Device-specific parameter (SBC-3 6.5.1): WP, DPOFUA.
        let dsp = if self.cfg.read_only { 0x90 } else { 0x10 };
        let mut body = bd.clone();
        for p in pages {
            body.extend(self.mode_page(p, changeable));
        }
        let mut d = Vec::with_capacity(body.len() + 8);
        if ten {
            let total = body.len() + 8;
            d.extend_from_slice(&((total - 2) as u16).to_be_bytes());
            d.extend_from_slice(&[0, dsp, u8::from(llbaa), 0]);
            d.extend_from_slice(&(bd.len() as u16).to_be_bytes());
        } else {
            let total = body.len() + 4;
            d.extend_from_slice(&[(total - 1) as u8, 0, dsp, bd.len() as u8]);
        }
        d.extend(body);
        Ok(truncate(d, alloc))
    }

    /// MODE SELECT (6/10), SPC-4 6.9/6.10: only WCE of the caching page
    /// may change; all pages are validated before any is applied.
    pub(crate) fn mode_select(&mut self, c: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        let ten = c.len() == 10;
        // SP: saving pages is not supported.
        if byte(c, 1) & 0x01 != 0 {
            return Err(bad_cdb(1));
        }
        let plen = usize::try_from(if ten {
            be(c, 7, 2)
        } else {
            u64::from(byte(c, 4))
        })
        .unwrap_or(0);
        if plen == 0 {
            return Ok(Vec::new());
        }
        let hdr = if ten { 8 } else { 4 };
        let Some(p) = data_out.get(..plen) else {
            return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
        };
        if p.len() < hdr {
            return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let bdl = usize::try_from(if ten {
            be(p, 6, 2)
        } else {
            u64::from(byte(p, 3))
        })
        .unwrap_or(usize::MAX);
        let Some(bd) = p.get(hdr..hdr.saturating_add(bdl)) else {
            return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
        };
        // A block descriptor may only restate the current block length.
        for d in bd.chunks(8) {
            if d.len() == 8 && be(d, 5, 3) != u64::from(self.block_size) && be(d, 5, 3) != 0 {
                return Err(bad_param());
            }
        }
        let mut at = hdr + bdl;
        let mut new_wce = self.wce;
        while at < p.len() {
            let code = byte(p, at);
            let len = usize::from(byte(p, at + 1));
            // Sub-page format (SPF) pages do not exist here.
            if code & 0x40 != 0 || !MODE_PAGES.contains(&(code & 0x3f)) {
                return Err(bad_param());
            }
            let Some(page) = p.get(at..at + 2 + len) else {
                return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
            };
            let cur = self.mode_page(code & 0x3f, false);
            let mask = self.mode_page(code & 0x3f, true);
            if page.len() != cur.len() {
                return Err(bad_param());
            }
            // SPC-4 6.9: changing a field that is not changeable is
            // INVALID FIELD IN PARAMETER LIST (PS in byte 0 is ignored).
            if page
                .iter()
                .zip(&cur)
                .zip(&mask)
                .skip(2)
                .any(|((&n, &o), &m)| (n ^ o) & !m != 0)
            {
                return Err(bad_param());
            }
            if code & 0x3f == 0x08 {
                new_wce = byte(page, 2) & 0x04 != 0;
            }
            at += 2 + len;
        }
        if self.wce && !new_wce {
            self.dev.flush().map_err(|_| {
                Fail::Check(SenseData::with_code(
                    SenseKey::MediumError,
                    asc::WRITE_ERROR,
                ))
            })?;
        }
        self.wce = new_wce;
        Ok(Vec::new())
    }

    /// REQUEST SENSE, SPC-4 6.39: returns (and clears) a pending unit
    /// attention, else NO SENSE.
    pub(crate) fn request_sense(&mut self, nexus: NexusId, c: &[u8]) -> Result<Vec<u8>, Fail> {
        // DESC = 1 asks for descriptor format, which is not implemented.
        if byte(c, 1) & 0x01 != 0 {
            return Err(bad_cdb(1));
        }
        let s = self
            .take_ua(nexus)
            .unwrap_or(SenseData::new(SenseKey::NoSense, 0, 0));
        Ok(truncate(s.to_fixed().to_vec(), u64::from(byte(c, 4))))
    }
}
