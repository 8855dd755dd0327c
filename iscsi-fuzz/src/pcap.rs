//! A small classic-pcap writer (LINKTYPE_RAW, IPv4 + TCP) for the traffic
//! of one fuzz case: what was sent and received, one segment per chunk,
//! with the target side on port 3260 so dissectors decode iSCSI.

use std::io::{self, Write};

use crate::conn::{Chunk, Dir};

/// iSCSI's registered port, used for the target side of the capture.
const ISCSI_PORT: u16 = 3260;
/// The initiator's port in captures.
const INITIATOR_PORT: u16 = 40000;
/// Largest TCP payload per record (IPv4 total length is 16 bits).
const MAX_SEGMENT: usize = 65_000;

/// Writes `chunks` (one connection) as a pcap file to `out`.
pub fn write_pcap<W: Write>(out: &mut W, chunks: &[Chunk]) -> io::Result<()> {
    // Global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, RAW (101).
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&262_144u32.to_le_bytes())?;
    out.write_all(&101u32.to_le_bytes())?;
    let mut seq = [1u32, 1u32]; // initiator, target
    let mut t = 0u64;
    // A synthetic handshake so dissectors see the connection start.
    let handshake: [(Dir, u8); 3] = [(Dir::Sent, 0x02), (Dir::Received, 0x12), (Dir::Sent, 0x10)];
    for (dir, flags) in handshake {
        segment(out, dir, flags, &mut seq, &[], t)?;
        t += 1;
    }
    for c in chunks {
        for part in c.bytes.chunks(MAX_SEGMENT) {
            segment(out, c.dir, 0x18, &mut seq, part, c.micros.max(t))?;
            t = c.micros.max(t) + 1;
        }
    }
    Ok(())
}

fn segment<W: Write>(
    out: &mut W,
    dir: Dir,
    flags: u8,
    seq: &mut [u32; 2],
    payload: &[u8],
    micros: u64,
) -> io::Result<()> {
    let (src_port, dst_port) = match dir {
        Dir::Sent => (INITIATOR_PORT, ISCSI_PORT),
        Dir::Received => (ISCSI_PORT, INITIATOR_PORT),
    };
    let [ini, tgt] = seq;
    let (me, other) = match dir {
        Dir::Sent => (ini, tgt),
        Dir::Received => (tgt, ini),
    };
    let (src, dst): ([u8; 4], [u8; 4]) = match dir {
        Dir::Sent => ([127, 0, 0, 1], [127, 0, 0, 2]),
        Dir::Received => ([127, 0, 0, 2], [127, 0, 0, 1]),
    };
    let s = *me;
    let a = *other;
    let syn = flags & 0x02 != 0;
    let total = 20 + 20 + payload.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&s.to_be_bytes());
    tcp[8..12].copy_from_slice(&if flags == 0x02 { 0 } else { a }.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    out.write_all(&u32::try_from(micros / 1_000_000).unwrap_or(0).to_le_bytes())?;
    out.write_all(&u32::try_from(micros % 1_000_000).unwrap_or(0).to_le_bytes())?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&ip)?;
    out.write_all(&tcp)?;
    out.write_all(payload)?;
    let adv = u32::try_from(payload.len()).unwrap_or(0) + u32::from(syn);
    *me = s.wrapping_add(adv);
    Ok(())
}

/// The IPv4 header checksum (RFC 791).
fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for w in b.chunks(2) {
        let hi = u32::from(w.first().copied().unwrap_or(0));
        let lo = u32::from(w.get(1).copied().unwrap_or(0));
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
