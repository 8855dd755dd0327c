//! SBC-3 (SCSI Block Commands) commands: READ/WRITE/VERIFY families, capacity, caching,
//! provisioning, COMPARE AND WRITE.

use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{SenseData, SenseKey};

use crate::logical_unit::LogicalUnit;
use crate::util::{bad_cdb, be, byte, illegal, lba_oob, rw_fields, truncate, Fail};

/// Offset of the transfer length field (for sense field pointers).
fn len_field(c: &[u8]) -> u16 {
    match c.len() {
        6 => 4,
        10 => 7,
        12 => 6,
        _ => 10,
    }
}

fn medium(code: (u8, u8)) -> Fail {
    Fail::Check(SenseData::with_code(SenseKey::MediumError, code))
}

fn read_err(_: std::io::Error) -> Fail {
    medium(asc::UNRECOVERED_READ_ERROR)
}

fn write_err(_: std::io::Error) -> Fail {
    medium(asc::WRITE_ERROR)
}

fn miscompare(offset: u64) -> Fail {
    Fail::Check(
        SenseData::with_code(SenseKey::Miscompare, asc::MISCOMPARE_DURING_VERIFY)
            .information(offset),
    )
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

impl LogicalUnit {
    pub(crate) fn thin(&self) -> bool {
        self.cfg.thin_provisioning && self.dev.supports_unmap()
    }

    /// SBC-3 4.5: "If the logical block address exceeds the capacity ...
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE". A zero-length access may start
    /// at the capacity; one past it is out of range.
    fn check_range(&self, lba: u64, n: u64) -> Result<(), Fail> {
        match lba.checked_add(n) {
            Some(end) if end <= self.num_blocks => Ok(()),
            _ => Err(lba_oob()),
        }
    }

    /// SBC-3 5.x: "If the TRANSFER LENGTH field is greater than the
    /// MAXIMUM TRANSFER LENGTH field in the Block Limits VPD page ...
    /// INVALID FIELD IN CDB".
    fn check_transfer(&self, c: &[u8], n: u64) -> Result<(), Fail> {
        if n > u64::from(self.cfg.max_transfer_blocks) {
            return Err(bad_cdb(len_field(c)));
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), Fail> {
        // SBC-3 4.x write protection: DATA PROTECT, WRITE PROTECTED.
        if self.cfg.read_only {
            return Err(Fail::Check(SenseData::with_code(
                SenseKey::DataProtect,
                asc::WRITE_PROTECTED,
            )));
        }
        Ok(())
    }

    fn bytes(&self, blocks: u64) -> Result<usize, Fail> {
        blocks
            .checked_mul(u64::from(self.block_size))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(lba_oob)
    }

    fn offset(&self, lba: u64) -> u64 {
        lba.saturating_mul(u64::from(self.block_size))
    }

    /// Takes exactly `need` bytes of Data-Out. Less than the CDB implies
    /// is rejected (as LIO does) with INVALID FIELD IN CDB; extra bytes are
    /// ignored (the iSCSI layer reports the overflow residual).
    fn take<'a>(&self, data_out: &'a [u8], need: usize, c: &[u8]) -> Result<&'a [u8], Fail> {
        data_out.get(..need).ok_or_else(|| bad_cdb(len_field(c)))
    }

    fn sync_if(&mut self, force: bool) -> Result<(), Fail> {
        if force || !self.wce {
            self.dev.flush().map_err(write_err)?;
        }
        Ok(())
    }

    /// `len` bytes of the medium at byte offset `at`, in a vector the
    /// device fills without a zero-fill first (`BlockDevice::read_append`;
    /// allocated with exactly `len` capacity so `Bytes::from` keeps it).
    fn read_vec(&self, at: u64, len: usize) -> Result<Vec<u8>, Fail> {
        let mut v = Vec::new();
        if len == 0 {
            return Ok(v);
        }
        v.try_reserve_exact(len)
            .map_err(|_| read_err(std::io::ErrorKind::OutOfMemory.into()))?;
        self.dev.read_append(at, len, &mut v).map_err(read_err)?;
        Ok(v)
    }

    /// READ (6/10/12/16), SBC-3 5.10-5.13.
    pub(crate) fn read(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let (lba, n) = rw_fields(c);
        // SBC-3 5.11: RDPROTECT other than 000b needs protection
        // information, which this LU does not have: INVALID FIELD IN CDB.
        if c.len() > 6 && byte(c, 1) >> 5 != 0 {
            return Err(bad_cdb(1));
        }
        self.check_transfer(c, n)?;
        self.check_range(lba, n)?;
        self.read_vec(self.offset(lba), self.bytes(n)?)
    }

    /// WRITE (6/10/12/16) and WRITE AND VERIFY (10/12/16), SBC-3 5.31-5.37.
    pub(crate) fn write(
        &mut self,
        c: &[u8],
        data_out: &[u8],
        verify: bool,
    ) -> Result<Vec<u8>, Fail> {
        let (lba, n) = rw_fields(c);
        let b1 = byte(c, 1);
        // SBC-3 5.32: WRPROTECT other than 000b without protection
        // information: INVALID FIELD IN CDB.
        if c.len() > 6 && b1 >> 5 != 0 {
            return Err(bad_cdb(1));
        }
        self.check_transfer(c, n)?;
        self.check_range(lba, n)?;
        self.check_writable()?;
        if n == 0 {
            // SBC-3 5.32: "A TRANSFER LENGTH field set to zero specifies
            // that no logical blocks shall be transferred. This condition
            // shall not be considered an error."
            return Ok(Vec::new());
        }
        let need = self.bytes(n)?;
        let data = if self.short_writes && data_out.len() < need {
            // A transport with a short Data-Out buffer (see
            // `LogicalUnit::execute_transport`): only whole blocks are
            // written; the transport reports the rest as a residual.
            let whole = data_out.len() - data_out.len() % self.block_size as usize;
            if whole == 0 {
                return Ok(Vec::new());
            }
            data_out.get(..whole).unwrap_or_default()
        } else {
            self.take(data_out, need, c)?
        };
        let at = self.offset(lba);
        self.dev.write_at(at, data).map_err(write_err)?;
        if verify {
            // WRITE AND VERIFY: read back and compare (BYTCHK or medium
            // verification; both reduce to this here).
            let back = self.read_vec(at, data.len())?;
            if let Some(off) = first_diff(&back, data) {
                return Err(miscompare(off as u64));
            }
        }
        // FUA (byte 1 bit 3, not in the 6-byte CDB): write to the medium.
        self.sync_if(c.len() > 6 && b1 & 0x08 != 0)?;
        Ok(Vec::new())
    }

    /// VERIFY (10/12/16), SBC-3 5.27-5.29.
    pub(crate) fn verify(&mut self, c: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        let b1 = byte(c, 1);
        if b1 >> 5 != 0 {
            return Err(bad_cdb(1));
        }
        // SBC-3 5.27 table 84: BYTCHK 00b medium only, 01b compare the
        // Data-Out, 10b reserved, 11b one block compared to each.
        let bytchk = (b1 >> 1) & 0x03;
        if bytchk == 0x02 {
            return Err(bad_cdb(1));
        }
        let (lba, n) = rw_fields(c);
        if bytchk != 0 {
            self.check_transfer(c, n)?;
        }
        self.check_range(lba, n)?;
        if n == 0 || bytchk == 0 {
            return Ok(Vec::new());
        }
        let bs = self.bytes(1)?;
        let expected: &[u8] = if bytchk == 0x01 {
            self.take(data_out, self.bytes(n)?, c)?
        } else {
            self.take(data_out, bs, c)?
        };
        let cur = self.read_vec(self.offset(lba), self.bytes(n)?)?;
        // SBC-3 5.27: on a miscompare "the sense key set to MISCOMPARE and
        // the additional sense code set to MISCOMPARE DURING VERIFY
        // OPERATION"; INFORMATION is the offset of the first differing byte.
        let diff = if bytchk == 0x01 {
            first_diff(&cur, expected)
        } else {
            cur.chunks(bs.max(1))
                .enumerate()
                .find_map(|(i, blk)| first_diff(blk, expected).map(|o| i * bs + o))
        };
        match diff {
            Some(off) => Err(miscompare(off as u64)),
            None => Ok(Vec::new()),
        }
    }

    /// SYNCHRONIZE CACHE (10/16) SBC-3 5.22/5.23 and PRE-FETCH (10/16)
    /// SBC-3 5.8/5.9: range checked; sync flushes the device.
    pub(crate) fn sync_or_prefetch(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let (lba, n) = rw_fields(c);
        self.check_range(lba, n)?;
        if matches!(byte(c, 0), 0x35 | 0x91) {
            self.dev.flush().map_err(write_err)?;
        }
        Ok(Vec::new())
    }

    /// WRITE SAME (10/16), SBC-3 5.42/5.43.
    pub(crate) fn write_same(&mut self, c: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        let b1 = byte(c, 1);
        if b1 >> 5 != 0 {
            return Err(bad_cdb(1));
        }
        // ANCHOR (bit 4) needs ANC_SUP, which is zero: INVALID FIELD IN CDB.
        if b1 & 0x10 != 0 {
            return Err(bad_cdb(1));
        }
        let unmap = b1 & 0x08 != 0;
        let ndob = c.len() == 16 && b1 & 0x01 != 0;
        let (lba, n) = rw_fields(c);
        // SBC-3 5.42: WSNZ is one in the Block Limits page, so "a NUMBER OF
        // LOGICAL BLOCKS field set to zero" is INVALID FIELD IN CDB; more
        // than MAXIMUM WRITE SAME LENGTH is too.
        if n == 0 || n > u64::from(self.cfg.max_write_same_blocks) {
            return Err(bad_cdb(len_field(c)));
        }
        self.check_range(lba, n)?;
        self.check_writable()?;
        let bs = self.bytes(1)?;
        let zero_block = vec![0u8; bs];
        let block: &[u8] = if ndob {
            &zero_block
        } else {
            self.take(data_out, bs, c)?
        };
        let at = self.offset(lba);
        let len = self.bytes(n)? as u64;
        if block.iter().all(|&b| b == 0) {
            if unmap && self.thin() {
                self.dev.unmap(at, len).map_err(write_err)?;
            } else {
                self.dev.write_zeroes(at, len).map_err(write_err)?;
            }
        } else {
            // Write in chunks of up to 64 KiB of repeated blocks.
            let per = (65536 / bs).max(1);
            let chunk: Vec<u8> = block.iter().copied().cycle().take(per * bs).collect();
            let mut done = 0u64;
            while done < n {
                let k = (n - done).min(per as u64);
                let part = chunk.get(..self.bytes(k)?).unwrap_or(&chunk);
                self.dev
                    .write_at(self.offset(lba + done), part)
                    .map_err(write_err)?;
                done += k;
            }
        }
        self.sync_if(false)?;
        Ok(Vec::new())
    }

    /// UNMAP, SBC-3 5.28.
    pub(crate) fn unmap(&mut self, c: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        // LBPU is zero when provisioning is off: the command does not exist.
        if !self.thin() {
            return Err(crate::util::bad_opcode());
        }
        if byte(c, 1) & 0x01 != 0 {
            return Err(bad_cdb(1));
        }
        let plen = usize::try_from(be(c, 7, 2)).unwrap_or(0);
        // SBC-3 5.28.1: "A PARAMETER LIST LENGTH set to zero specifies that
        // no data shall be sent. This shall not be considered an error."
        if plen == 0 {
            return Ok(Vec::new());
        }
        let p = data_out.get(..plen.min(data_out.len())).unwrap_or_default();
        // SBC-3 5.28.1: a parameter list length from one to seven is a
        // PARAMETER LIST LENGTH ERROR.
        if plen < 8 || p.len() < 8 {
            return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        self.check_writable()?;
        let desc_len = usize::try_from(be(p, 2, 2)).unwrap_or(0);
        let descs = p
            .get(8..8usize.saturating_add(desc_len).min(p.len()))
            .unwrap_or_default();
        // SBC-3 5.28.2: more descriptors than MAXIMUM UNMAP BLOCK
        // DESCRIPTOR COUNT, or more blocks than MAXIMUM UNMAP LBA COUNT:
        // INVALID FIELD IN PARAMETER LIST. A trailing partial descriptor
        // is ignored.
        let count = descs.len() / 16;
        if count > self.cfg.max_unmap_descriptors as usize {
            return Err(illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST));
        }
        let mut ranges = Vec::with_capacity(count);
        for d in descs.chunks_exact(16) {
            let (lba, n) = (be(d, 0, 8), be(d, 8, 4));
            if n > u64::from(self.cfg.max_unmap_blocks) {
                return Err(illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST));
            }
            // "If the LOGICAL BLOCK ADDRESS plus the NUMBER OF LOGICAL
            // BLOCKS exceeds the capacity ... LOGICAL BLOCK ADDRESS OUT OF
            // RANGE" (checked for every descriptor before any is applied).
            self.check_range(lba, n)?;
            ranges.push((lba, n));
        }
        for (lba, n) in ranges {
            if n > 0 {
                let len = self.bytes(n)? as u64;
                self.dev.unmap(self.offset(lba), len).map_err(write_err)?;
            }
        }
        Ok(Vec::new())
    }

    /// COMPARE AND WRITE, SBC-3 5.2.
    pub(crate) fn compare_and_write(&mut self, c: &[u8], data_out: &[u8]) -> Result<Vec<u8>, Fail> {
        let b1 = byte(c, 1);
        if b1 >> 5 != 0 {
            return Err(bad_cdb(1));
        }
        let lba = be(c, 2, 8);
        let n = u64::from(byte(c, 13));
        // SBC-3 5.2: "If the NUMBER OF LOGICAL BLOCKS field is greater than
        // the value in the MAXIMUM COMPARE AND WRITE LENGTH field ...
        // INVALID FIELD IN CDB".
        if n > u64::from(self.cfg.max_compare_and_write_blocks) {
            return Err(bad_cdb(13));
        }
        self.check_range(lba, n)?;
        self.check_writable()?;
        let half = self.bytes(n)?;
        // SBC-3 5.2: the Data-Out buffer holds "the verify instance of the
        // data" followed by "the write instance of the data", NUMBER OF
        // LOGICAL BLOCKS each. A buffer of any other length (a transport's
        // Expected Data Transfer Length that disagrees with the CDB, even
        // with short_writes) cannot be split into the two instances: the
        // CDB is invalid for it (as Linux LIO answers an over- or
        // underflowing COMPARE AND WRITE), and nothing is compared or
        // written.
        if Some(data_out.len()) != half.checked_mul(2) {
            return Err(bad_cdb(13));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let (verify, write) = data_out.split_at(half);
        let at = self.offset(lba);
        let cur = self.read_vec(at, half)?;
        // SBC-3 5.2: on a mismatch "the device server shall not write" and
        // reports MISCOMPARE with INFORMATION = offset of the first byte
        // that differs in the verify data.
        if let Some(off) = first_diff(&cur, verify) {
            return Err(miscompare(off as u64));
        }
        self.dev.write_at(at, write).map_err(write_err)?;
        self.sync_if(b1 & 0x08 != 0)?;
        Ok(Vec::new())
    }

    /// START STOP UNIT, SBC-3 5.25. The disk is always ready; a POWER
    /// CONDITION other than 0 is accepted and ignored (START and LOEJ are
    /// then ignored too, 5.25); LOEJ on this non-removable medium is an
    /// INVALID FIELD IN CDB.
    pub(crate) fn start_stop(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let b4 = byte(c, 4);
        let pc = b4 >> 4;
        if !matches!(pc, 0x0 | 0x1 | 0x2 | 0x3 | 0x5 | 0x7 | 0xa | 0xb) {
            return Err(bad_cdb(4));
        }
        if pc == 0 && b4 & 0x02 != 0 {
            return Err(bad_cdb(4));
        }
        if pc == 0 && b4 & 0x01 == 0 && b4 & 0x04 == 0 {
            // Stopping flushes the cache unless NO_FLUSH.
            self.dev.flush().map_err(write_err)?;
        }
        Ok(Vec::new())
    }

    /// READ CAPACITY (10), SBC-3 5.15.
    pub(crate) fn read_capacity10(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        // SBC-3 5.15.1: "If the PMI bit is set to zero and the LOGICAL
        // BLOCK ADDRESS field is not set to zero, ... INVALID FIELD IN CDB".
        if byte(c, 8) & 0x01 == 0 && be(c, 2, 4) != 0 {
            return Err(bad_cdb(2));
        }
        let last = self.num_blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
        let mut d = Vec::with_capacity(8);
        d.extend_from_slice(&last.to_be_bytes());
        d.extend_from_slice(&self.block_size.to_be_bytes());
        Ok(d)
    }

    /// READ CAPACITY (16), SBC-3 5.16.
    pub(crate) fn read_capacity16(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&self.num_blocks.saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&self.block_size.to_be_bytes());
        if self.thin() {
            // LBPME and LBPRZ (unmapped blocks read as zero).
            d[14] = 0xc0;
        }
        Ok(truncate(d.to_vec(), be(c, 10, 4)))
    }

    /// GET LBA STATUS, SBC-3 5.6. With provisioning on, scans up to 1 MiB
    /// from the starting LBA and reports all-zero blocks as deallocated
    /// (LBPRZ makes them indistinguishable); otherwise one mapped
    /// descriptor to the end of the medium.
    pub(crate) fn get_lba_status(&mut self, c: &[u8]) -> Result<Vec<u8>, Fail> {
        let lba = be(c, 2, 8);
        let alloc = be(c, 10, 4);
        // SBC-3 5.6: a STARTING LOGICAL BLOCK ADDRESS beyond the last LBA
        // is LOGICAL BLOCK ADDRESS OUT OF RANGE.
        if lba >= self.num_blocks {
            return Err(lba_oob());
        }
        let mut runs: Vec<(u64, u64, u8)> = Vec::new();
        if self.thin() {
            let bs = self.bytes(1)?;
            let scan = (self.num_blocks - lba)
                .min((1 << 20) / bs.max(1) as u64)
                .max(1);
            let buf = self.read_vec(self.offset(lba), self.bytes(scan)?)?;
            for (i, blk) in buf.chunks(bs.max(1)).enumerate() {
                let status = u8::from(blk.iter().all(|&b| b == 0));
                match runs.last_mut() {
                    Some(r) if r.2 == status => r.1 += 1,
                    _ => runs.push((lba + i as u64, 1, status)),
                }
            }
        } else {
            runs.push((lba, (self.num_blocks - lba).min(u64::from(u32::MAX)), 0));
        }
        let mut d = Vec::with_capacity(8 + runs.len() * 16);
        d.extend_from_slice(&((runs.len() * 16 + 4) as u32).to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        for (l, n, s) in runs {
            d.extend_from_slice(&l.to_be_bytes());
            d.extend_from_slice(&(n.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            d.extend_from_slice(&[s, 0, 0, 0]);
        }
        Ok(truncate(d, alloc))
    }
}
