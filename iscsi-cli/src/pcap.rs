//! A minimal pcap writer that wraps a session's byte streams in synthetic
//! Ethernet/IPv4/TCP frames, so Wireshark and tshark dissect the iSCSI PDUs.
//!
//! The capture starts with a TCP three-way handshake and ends with FINs, so
//! the dissector sees a complete stream; sequence and acknowledgement numbers
//! follow the bytes actually sent; IPv4 and TCP checksums are correct.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which way a chunk of bytes travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Initiator to target.
    ToTarget,
    /// Target to initiator.
    ToInitiator,
}

/// The largest TCP payload put in one synthetic segment.
const MAX_SEGMENT: usize = 16 * 1024;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

struct Endpoint {
    ip: Ipv4Addr,
    port: u16,
    mac: [u8; 6],
    seq: u32,
}

/// Writes TCP connections' traffic as a pcap file, one connection after
/// the other.
pub struct PcapWriter<W: Write> {
    out: W,
    initiator: Endpoint,
    target: Endpoint,
    ip_id: u16,
    open: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Starts a capture file: writes the pcap global header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        // pcap global header: magic, v2.4, thiszone, sigfigs, snaplen, LINKTYPE_ETHERNET.
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&0i32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&262_144u32.to_le_bytes());
        hdr.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&hdr)?;
        let ep = |port, last| Endpoint {
            ip: Ipv4Addr::LOCALHOST,
            port,
            mac: [0x02, 0, 0, 0, 0, last],
            seq: 0,
        };
        Ok(PcapWriter {
            out,
            initiator: ep(0, 1),
            target: ep(0, 2),
            ip_id: 1,
            open: false,
        })
    }

    /// Starts a new connection (closing the previous one, if any) with a
    /// synthetic three-way handshake.
    pub fn connect(
        &mut self,
        initiator: (Ipv4Addr, u16),
        target: (Ipv4Addr, u16),
    ) -> io::Result<()> {
        self.close()?;
        self.initiator.ip = initiator.0;
        self.initiator.port = initiator.1;
        self.initiator.seq = 0x1000_0000;
        self.target.ip = target.0;
        self.target.port = target.1;
        self.target.seq = 0x2000_0000;
        self.segment(Direction::ToTarget, TCP_SYN, &[])?;
        self.initiator.seq = self.initiator.seq.wrapping_add(1);
        self.segment(Direction::ToInitiator, TCP_SYN | TCP_ACK, &[])?;
        self.target.seq = self.target.seq.wrapping_add(1);
        self.segment(Direction::ToTarget, TCP_ACK, &[])?;
        self.open = true;
        Ok(())
    }

    /// Records bytes sent in one direction, split into segments.
    pub fn record(&mut self, dir: Direction, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(MAX_SEGMENT) {
            self.segment(dir, TCP_PSH | TCP_ACK, chunk)?;
            let ep = match dir {
                Direction::ToTarget => &mut self.initiator,
                Direction::ToInitiator => &mut self.target,
            };
            ep.seq = ep.seq.wrapping_add(chunk.len() as u32);
        }
        Ok(())
    }

    /// Closes the current connection with a FIN exchange.
    pub fn close(&mut self) -> io::Result<()> {
        if self.open {
            self.open = false;
            self.segment(Direction::ToTarget, TCP_FIN | TCP_ACK, &[])?;
            self.initiator.seq = self.initiator.seq.wrapping_add(1);
            self.segment(Direction::ToInitiator, TCP_FIN | TCP_ACK, &[])?;
            self.target.seq = self.target.seq.wrapping_add(1);
            self.segment(Direction::ToTarget, TCP_ACK, &[])?;
        }
        Ok(())
    }

    /// Closes the current connection and flushes the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.close()?;
        self.out.flush()
    }

    // Indexing is in bounds: the frame is built right here with a fixed
    // layout (14-byte Ethernet, 20-byte IPv4, 20-byte TCP headers) before
    // the checksum fields are patched, and IPv4 addresses have 4 octets.
    #[allow(clippy::indexing_slicing)]
    fn segment(&mut self, dir: Direction, flags: u8, payload: &[u8]) -> io::Result<()> {
        let (src, dst) = match dir {
            Direction::ToTarget => (&self.initiator, &self.target),
            Direction::ToInitiator => (&self.target, &self.initiator),
        };
        let tcp_len = 20 + payload.len();
        let ip_len = 20 + tcp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        // Ethernet II.
        f.extend_from_slice(&dst.mac);
        f.extend_from_slice(&src.mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        // IPv4, no options.
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(ip_len as u16).to_be_bytes());
        f.extend_from_slice(&self.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src.ip.octets());
        f.extend_from_slice(&dst.ip.octets());
        let ip_sum = checksum(&f[ip_start..ip_start + 20], 0);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        // TCP, no options.
        let tcp_start = f.len();
        let ack = if flags & TCP_ACK != 0 { dst.seq } else { 0 };
        f.extend_from_slice(&src.port.to_be_bytes());
        f.extend_from_slice(&dst.port.to_be_bytes());
        f.extend_from_slice(&src.seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[0x50, flags]);
        f.extend_from_slice(&0xffffu16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let mut pseudo = 0u32;
        for pair in src.ip.octets().chunks(2).chain(dst.ip.octets().chunks(2)) {
            pseudo += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        pseudo += 6 + tcp_len as u32;
        let tcp_sum = checksum(&f[tcp_start..], pseudo);
        f[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut rec = Vec::with_capacity(16);
        rec.extend_from_slice(&(now.as_secs() as u32).to_le_bytes());
        rec.extend_from_slice(&now.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&f)
    }
}

/// The Internet checksum (RFC 1071) over `data`, starting from `initial`.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            sum += u32::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_answer() {
        // The IPv4 header example from RFC 1071's usual illustration.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr, 0), 0xb861);
    }

    #[test]
    fn layout_and_sequence_numbers() {
        let mut buf = Vec::new();
        {
            let mut w = PcapWriter::new(&mut buf).unwrap();
            w.connect((Ipv4Addr::LOCALHOST, 40000), (Ipv4Addr::LOCALHOST, 3260))
                .unwrap();
            w.record(Direction::ToTarget, &[0u8; 48]).unwrap();
            w.record(Direction::ToInitiator, &vec![1u8; MAX_SEGMENT + 10])
                .unwrap();
            w.finish().unwrap();
        }
        assert_eq!(&buf[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // Walk the records: 3 handshake + 1 + 2 data + 3 closing.
        let mut off = 24;
        let mut n = 0;
        let mut payloads = Vec::new();
        while off < buf.len() {
            let len = u32::from_le_bytes(buf[off + 8..off + 12].try_into().unwrap()) as usize;
            let frame = &buf[off + 16..off + 16 + len];
            // The IPv4 header checksums to zero when verified.
            assert_eq!(checksum(&frame[14..34], 0), 0);
            payloads.push(len - 54);
            off += 16 + len;
            n += 1;
        }
        assert_eq!(n, 9);
        assert_eq!(payloads, vec![0, 0, 0, 48, MAX_SEGMENT, 10, 0, 0, 0]);
    }
}
