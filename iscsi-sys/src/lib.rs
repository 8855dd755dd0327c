//! The socket calls the `iscsi` drivers need and `std` lacks, for receive
//! coalescing (`iscsi_proto::initiator::LowWater`):
//!
//! - [`set_recv_low_water`]: `SO_RCVLOWAT`, the bytes a socket must hold
//!   before a blocking read returns or the socket reports readable;
//! - [`wait_readable`]: wait, with microsecond precision, until a socket is
//!   readable (honouring that mark). A blocking read's `SO_RCVTIMEO` counts
//!   in scheduler ticks (8 ms was measured on this project's machines), too
//!   coarse to bound a coalescing delay of 1 ms.
//!
//! ```
//! # #[cfg(unix)] fn main() -> std::io::Result<()> {
//! use std::io::Write;
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut sender = TcpStream::connect(listener.local_addr()?)?;
//! let (receiver, _) = listener.accept()?;
//! // Readable only once 48 bytes (one iSCSI basic header segment) are in.
//! iscsi_sys::set_recv_low_water(&receiver, 48)?;
//! sender.write_all(&[0; 16])?;
//! assert!(!iscsi_sys::wait_readable(&receiver, Duration::from_millis(20))?);
//! sender.write_all(&[0; 32])?;
//! assert!(iscsi_sys::wait_readable(&receiver, Duration::from_secs(5))?);
//! # Ok(())
//! # }
//! # #[cfg(not(unix))] fn main() {}
//! ```
//!
//! This is the project's only `unsafe` code: two system calls on a borrowed
//! descriptor with plain-integer arguments. Elsewhere (not Unix) both
//! return [`std::io::ErrorKind::Unsupported`] and the drivers do not
//! coalesce.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

use std::io;
use std::time::Duration;

#[cfg(unix)]
pub use std::os::fd::AsFd as Socket;

/// Stand-in for `AsFd` where there is none.
#[cfg(not(unix))]
pub trait Socket {}
#[cfg(not(unix))]
impl<T> Socket for T {}

/// Sets `SO_RCVLOWAT` on `sock` to `bytes` (at least 1). Linux raises the
/// receive buffer to fit, and caps the mark at half the largest one.
#[cfg(unix)]
pub fn set_recv_low_water(sock: &impl Socket, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_fd().as_raw_fd();
    let v: libc::c_int = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is borrowed from a live socket for the duration of the
    // call; the option value points to a c_int on the stack and `len` is
    // its size.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not available here.
#[cfg(not(unix))]
pub fn set_recv_low_water(_sock: &impl Socket, _bytes: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Waits until `sock` is readable (it holds at least its low-water mark,
/// or the peer closed, or an error is pending) or `timeout` passes:
/// `Ok(true)` if readable. An interrupted wait reports `Ok(false)`.
#[cfg(unix)]
pub fn wait_readable(sock: &impl Socket, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: sock.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9: fits a c_long everywhere.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd on the stack, count 1; the timespec lives on the
    // stack; a null signal mask leaves the mask unchanged (as poll).
    #[allow(unsafe_code)]
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    match r {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Not available here.
#[cfg(not(unix))]
pub fn wait_readable(_sock: &impl Socket, _timeout: Duration) -> io::Result<bool> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn low_water_holds_back_readability_until_enough_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        a.set_nodelay(true).unwrap();
        set_recv_low_water(&b, 100).unwrap();
        a.write_all(&[7u8; 60]).unwrap();
        assert!(!wait_readable(&b, Duration::from_millis(20)).unwrap());
        a.write_all(&[7u8; 40]).unwrap();
        assert!(wait_readable(&b, Duration::from_secs(10)).unwrap());
        let mut buf = [0u8; 200];
        assert_eq!(b.read(&mut buf).unwrap(), 100);
        // Back to 1: any byte makes the socket readable.
        set_recv_low_water(&b, 1).unwrap();
        a.write_all(&[1u8]).unwrap();
        assert!(wait_readable(&b, Duration::from_secs(10)).unwrap());
        assert_eq!(b.read(&mut buf).unwrap(), 1);
        // A closed peer is readable whatever the mark.
        set_recv_low_water(&b, 1000).unwrap();
        drop(a);
        assert!(wait_readable(&b, Duration::from_secs(10)).unwrap());
        assert_eq!(b.read(&mut buf).unwrap(), 0);
    }
}

/// Fills `buf` with random bytes from the operating system (`/dev/urandom`
/// on Unix). The protocol core draws no randomness: drivers use this for
/// what it needs from outside, such as the random part of an ISID (RFC 7143
/// section 11.12.5) and mutual CHAP challenges (section 12.1.3).
#[cfg(unix)]
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Fills `buf` with random bytes from the operating system (std's hash
/// keys, seeded by the OS, where there is no `/dev/urandom`).
#[cfg(not(unix))]
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    Ok(())
}
