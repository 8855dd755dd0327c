//! Block devices a [`LogicalUnit`](crate::LogicalUnit) emulates SCSI over.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Errors building a block device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The block size is not a power of two in 512..=65536.
    #[error("block size {0} is not a power of two in 512..=65536 (SBC-3 4.5)")]
    BadBlockSize(u32),
    /// The capacity is zero or not a multiple of the block size.
    #[error("capacity {size} bytes is zero or not a multiple of the block size {block_size}")]
    BadSize {
        /// Capacity in bytes.
        size: u64,
        /// Block size in bytes.
        block_size: u32,
    },
    /// The capacity does not fit in memory on this platform.
    #[error("capacity {0} bytes does not fit in memory")]
    TooLarge(u64),
    /// The backing file could not be opened or sized.
    #[error("backing file: {0}")]
    Io(#[from] io::Error),
}

/// A linear array of fixed-size blocks addressed by byte offset.
///
/// Offsets and lengths passed by [`LogicalUnit`](crate::LogicalUnit) are
/// always block-aligned and within `block_size() * num_blocks()`;
/// implementations still return an error rather than panic otherwise.
pub trait BlockDevice: Send {
    /// Logical block size in bytes.
    fn block_size(&self) -> u32;

    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;

    /// Reads `buf.len()` bytes at byte offset `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Appends the `len` bytes at byte offset `offset` to `out`: the read
    /// path of [`LogicalUnit`](crate::LogicalUnit) (READ, VERIFY, ...) uses
    /// it so that a device that can write into `out`'s spare capacity
    /// avoids zero-filling a buffer it then overwrites. On error `out` is
    /// left as it was.
    ///
    /// The default zero-fills `len` bytes at the end of `out` and calls
    /// [`BlockDevice::read_at`] on them; [`RamDisk`] copies its region
    /// directly and [`FileDisk`] reads large ranges without zero-filling.
    fn read_append(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        out.resize(end, 0);
        let r = match out.get_mut(start..) {
            Some(tail) => self.read_at(offset, tail),
            None => Err(out_of_range()),
        };
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Writes `buf` at byte offset `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;

    /// Makes previous writes durable.
    fn flush(&mut self) -> io::Result<()>;

    /// True if [`BlockDevice::unmap`] deallocates (thin provisioning:
    /// the LU then advertises UNMAP and LBPME).
    fn supports_unmap(&self) -> bool {
        false
    }

    /// Deallocates `len` bytes at `offset`; afterwards they read as zero.
    /// The default writes zeroes.
    fn unmap(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }

    /// Writes `len` zero bytes at `offset`. The default writes a zeroed
    /// buffer of at most 64 KiB repeatedly.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 64 * 1024;
        let zeros = vec![0u8; usize::try_from(len.min(CHUNK)).unwrap_or(0)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            let at = offset.checked_add(done).ok_or_else(out_of_range)?;
            let chunk = zeros.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
            self.write_at(at, chunk)?;
            done += n;
        }
        Ok(())
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "access beyond the end of the device",
    )
}

fn check_geometry(size: u64, block_size: u32) -> Result<(), DeviceError> {
    if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
        return Err(DeviceError::BadBlockSize(block_size));
    }
    if size == 0 || size % u64::from(block_size) != 0 {
        return Err(DeviceError::BadSize { size, block_size });
    }
    Ok(())
}

/// A RAM-backed block device (a `Vec<u8>`), with thin-provisioning
/// semantics: [`BlockDevice::unmap`] zeroes the range.
#[derive(Debug, Clone)]
pub struct RamDisk {
    data: Vec<u8>,
    block_size: u32,
}

impl RamDisk {
    /// A zero-filled disk of `size` bytes (e.g. 64 MiB) in blocks of
    /// `block_size` bytes.
    pub fn new(size: u64, block_size: u32) -> Result<RamDisk, DeviceError> {
        check_geometry(size, block_size)?;
        let len = usize::try_from(size).map_err(|_| DeviceError::TooLarge(size))?;
        Ok(RamDisk {
            data: vec![0; len],
            block_size,
        })
    }

    /// The disk contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        if end > self.data.len() {
            return Err(out_of_range());
        }
        Ok(start..end)
    }
}

impl BlockDevice for RamDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.data.len() as u64 / u64::from(self.block_size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(self.data.get(r).ok_or_else(out_of_range)?);
        Ok(())
    }

    fn read_append(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        // A copy of the region straight into `out`'s spare capacity: no
        // zero-fill (issue 17: that memset was 31% of the target's
        // instructions at 4 KiB QD 32).
        let r = self.range(offset, len)?;
        out.extend_from_slice(self.data.get(r).ok_or_else(out_of_range)?);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len())?;
        self.data
            .get_mut(r)
            .ok_or_else(out_of_range)?
            .copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn supports_unmap(&self) -> bool {
        true
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        let r = self.range(offset, len)?;
        self.data.get_mut(r).ok_or_else(out_of_range)?.fill(0);
        Ok(())
    }
}

/// From this length on, [`FileDisk`] reads without zero-filling (a seek
/// and up to two `read`s instead of one `pread` into a zeroed buffer).
const FILE_UNINIT_READ_MIN: usize = 32 * 1024;

/// A file-backed block device using positional I/O
/// (`std::os::unix::fs::FileExt`); `flush` is `fdatasync`.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    size: u64,
    block_size: u32,
    read_only: bool,
}

impl FileDisk {
    /// Opens an existing file (or block device node) read-write; its
    /// current length is the capacity.
    pub fn open(path: impl AsRef<Path>, block_size: u32) -> Result<FileDisk, DeviceError> {
        let file = File::options().read(true).write(true).open(path)?;
        let size = file.metadata()?.len();
        check_geometry(size, block_size)?;
        Ok(FileDisk {
            file,
            size,
            block_size,
            read_only: false,
        })
    }

    /// Opens an existing file read-only.
    pub fn open_read_only(
        path: impl AsRef<Path>,
        block_size: u32,
    ) -> Result<FileDisk, DeviceError> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        check_geometry(size, block_size)?;
        Ok(FileDisk {
            file,
            size,
            block_size,
            read_only: true,
        })
    }

    /// Creates (or truncates) a file of `size` bytes (sparse where the
    /// file system allows) and opens it.
    pub fn create(
        path: impl AsRef<Path>,
        size: u64,
        block_size: u32,
    ) -> Result<FileDisk, DeviceError> {
        check_geometry(size, block_size)?;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size)?;
        Ok(FileDisk {
            file,
            size,
            block_size,
            read_only: false,
        })
    }

    /// True if opened with [`FileDisk::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// [`BlockDevice::read_append`]'s default: zero-fill, then `pread`.
    fn read_append_zeroed(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start.checked_add(len).ok_or_else(out_of_range)?, 0);
        let r = match out.get_mut(start..) {
            Some(tail) => self.file.read_exact_at(tail, offset),
            None => Err(out_of_range()),
        };
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn check(&self, offset: u64, len: usize) -> io::Result<()> {
        let end = offset.checked_add(len as u64).ok_or_else(out_of_range)?;
        if end > self.size {
            return Err(out_of_range());
        }
        Ok(())
    }
}

impl BlockDevice for FileDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.size / u64::from(self.block_size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len())?;
        self.file.read_exact_at(buf, offset)
    }

    fn read_append(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        self.check(offset, len)?;
        if len < FILE_UNINIT_READ_MIN {
            // Small reads: one `pread` into a zeroed tail costs less than
            // the seek and the extra `read` below.
            return self.read_append_zeroed(offset, len, out);
        }
        // Large reads: `read_to_end` on a `File` reads into the vector's
        // spare capacity without initialising it (no unsafe here). The
        // file position is used by nothing else: every other access is
        // positional (`pread`/`pwrite`) and the device is not `Sync`.
        let start = out.len();
        out.try_reserve_exact(len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "read buffer"))?;
        let r = (&self.file)
            .seek(SeekFrom::Start(offset))
            .and_then(|_| (&self.file).take(len as u64).read_to_end(out));
        match r {
            Ok(n) if n == len => Ok(()),
            Ok(_) => {
                out.truncate(start);
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backing file shorter than the device",
                ))
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only device",
            ));
        }
        self.check(offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramdisk_geometry_and_io() {
        assert!(matches!(
            RamDisk::new(4096, 500),
            Err(DeviceError::BadBlockSize(500))
        ));
        assert!(matches!(
            RamDisk::new(1000, 512),
            Err(DeviceError::BadSize { .. })
        ));
        assert!(matches!(
            RamDisk::new(0, 512),
            Err(DeviceError::BadSize { .. })
        ));
        let mut d = RamDisk::new(8192, 512).unwrap();
        assert_eq!(d.num_blocks(), 16);
        d.write_at(512, &[7; 512]).unwrap();
        let mut b = [0u8; 1024];
        d.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..512], &[0; 512][..]);
        assert_eq!(&b[512..], &[7; 512][..]);
        assert!(d.read_at(8192 - 511, &mut [0; 512]).is_err());
        assert!(d.write_at(u64::MAX, &[1]).is_err());
        d.unmap(512, 512).unwrap();
        d.read_at(512, &mut b[..512]).unwrap();
        assert_eq!(&b[..512], &[0; 512][..]);
    }

    #[test]
    fn filedisk_io() {
        let dir = std::env::temp_dir().join(format!("iscsi-lun-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let mut d = FileDisk::create(&path, 1 << 20, 4096).unwrap();
        assert_eq!(d.num_blocks(), 256);
        d.write_at(4096, &[9; 4096]).unwrap();
        d.write_zeroes(4096, 2048).unwrap();
        d.flush().unwrap();
        let mut b = vec![0u8; 4096];
        d.read_at(4096, &mut b).unwrap();
        assert_eq!(&b[..2048], &[0; 2048][..]);
        assert_eq!(&b[2048..], &[9; 2048][..]);
        assert!(d.read_at(1 << 20, &mut b).is_err());
        drop(d);
        let ro = FileDisk::open_read_only(&path, 4096).unwrap();
        assert!(ro.is_read_only());
        let mut ro = ro;
        assert!(ro.write_at(0, &[1; 16]).is_err());
        let d2 = FileDisk::open(&path, 4096).unwrap();
        d2.read_at(4096 + 2048, &mut b[..16]).unwrap();
        assert_eq!(&b[..16], &[9; 16]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    /// A device with only the required methods: exercises the default
    /// `read_append`.
    struct Plain(RamDisk);

    impl BlockDevice for Plain {
        fn block_size(&self) -> u32 {
            self.0.block_size()
        }
        fn num_blocks(&self) -> u64 {
            self.0.num_blocks()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
            self.0.write_at(offset, buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `read_append` is `read_at` appended to what `out` holds, for every
    /// device, below and above the file device's uninitialised-read
    /// threshold; out of range it fails and leaves `out` unchanged.
    #[test]
    fn read_append_equals_read_at() {
        let size: u64 = 256 * 1024;
        let pattern: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        let dir = std::env::temp_dir().join(format!("iscsi-lun-ra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ram = RamDisk::new(size, 512).unwrap();
        let mut file = FileDisk::create(dir.join("d.img"), size, 512).unwrap();
        let mut plain = Plain(RamDisk::new(size, 512).unwrap());
        ram.write_at(0, &pattern).unwrap();
        file.write_at(0, &pattern).unwrap();
        plain.write_at(0, &pattern).unwrap();
        let devs: [&dyn BlockDevice; 3] = [&ram, &file, &plain];
        for dev in devs {
            for (off, len) in [
                (0u64, 0usize),
                (512, 512),
                (4096, 4096),
                (512, FILE_UNINIT_READ_MIN),
                (1024, 100 * 1024),
                (0, size as usize),
            ] {
                let mut out = vec![0xA5u8; 3];
                dev.read_append(off, len, &mut out).unwrap();
                assert_eq!(&out[..3], &[0xA5; 3]);
                assert_eq!(&out[3..], &pattern[off as usize..off as usize + len]);
            }
            for (off, len) in [(size - 512, 1024usize), (size, 512), (u64::MAX, 512)] {
                let mut out = vec![1u8, 2];
                assert!(dev.read_append(off, len, &mut out).is_err());
                assert_eq!(out, [1, 2]);
            }
        }
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
