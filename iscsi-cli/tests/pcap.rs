//! `iscsi --pcap` against the embedded target: the capture file is a
//! well-formed pcap (global header, Ethernet/IPv4/TCP frames with correct
//! checksums, a handshake and FINs, sequence numbers that follow the
//! bytes), and the TCP payloads reassemble into exactly the iSCSI PDUs of
//! the session: Login, SCSI Command (INQUIRY) and its Data-In/Response,
//! Logout. No conformance harness needed; when tshark is installed it must
//! decode the same capture as iSCSI with nothing malformed.

use std::net::SocketAddr;
use std::process::Command;

use iscsi_mio::server::{LunSpec, Server, TargetConfig};

const IQN: &str = "iqn.2026-11.rs.iscsi:pcap-test";

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// RFC 1071 checksum; 0 when `data` (with its checksum field) is intact.
fn inet_sum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            be16(c, 0)
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Segment {
    to_target: bool,
    flags: u8,
    seq: u32,
    payload: Vec<u8>,
}

/// Parses the capture; checks every header and checksum on the way.
fn parse(file: &[u8]) -> Vec<Segment> {
    assert!(file.len() >= 24, "no global header");
    assert_eq!(le32(file, 0), 0xa1b2_c3d4, "pcap magic");
    assert_eq!(le32(file, 20), 1, "LINKTYPE_ETHERNET");
    let mut at = 24;
    let mut out = Vec::new();
    let mut target_port = None;
    while at < file.len() {
        let incl = le32(file, at + 8) as usize;
        assert_eq!(incl, le32(file, at + 12) as usize, "truncated frame");
        let f = &file[at + 16..at + 16 + incl];
        at += 16 + incl;
        assert_eq!(be16(f, 12), 0x0800, "IPv4 ethertype");
        let ip = &f[14..];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[9], 6, "TCP");
        assert_eq!(be16(ip, 2) as usize, ip.len(), "IP total length");
        assert_eq!(inet_sum(&ip[..20], 0), 0, "IPv4 header checksum");
        let tcp = &ip[20..];
        let mut pseudo = 6 + tcp.len() as u32;
        for w in ip[12..20].chunks(2) {
            pseudo += u32::from(be16(w, 0));
        }
        assert_eq!(inet_sum(tcp, pseudo), 0, "TCP checksum");
        let (sport, dport) = (be16(tcp, 0), be16(tcp, 2));
        // The initiator's SYN opens the connection to the target port.
        let tport = *target_port.get_or_insert(dport);
        assert!(sport == tport || dport == tport, "foreign ports");
        out.push(Segment {
            to_target: dport == tport,
            flags: tcp[13],
            seq: be32(tcp, 4),
            payload: tcp[20..].to_vec(),
        });
    }
    out
}

/// Reassembles one direction (checking the sequence numbers follow the
/// bytes) and splits it into (opcode, data segment length) per PDU.
fn pdus(segs: &[Segment], to_target: bool) -> Vec<(u8, usize)> {
    let mut stream = Vec::new();
    let mut next: Option<u32> = None;
    for s in segs.iter().filter(|s| s.to_target == to_target) {
        if s.flags & 0x02 != 0 {
            next = Some(s.seq.wrapping_add(1));
            continue;
        }
        if let Some(n) = next {
            assert_eq!(s.seq, n, "sequence gap");
        }
        stream.extend_from_slice(&s.payload);
        let fin = u32::from(s.flags & 0x01 != 0);
        next = Some(s.seq.wrapping_add(s.payload.len() as u32 + fin));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let bhs = &stream[at..at + 48];
        let ahs = usize::from(bhs[4]) * 4;
        let dlen = (usize::from(bhs[5]) << 16) | (usize::from(bhs[6]) << 8) | usize::from(bhs[7]);
        out.push((bhs[0] & 0x3f, dlen));
        at += 48 + ahs + dlen.div_ceil(4) * 4;
    }
    assert_eq!(at, stream.len(), "a PDU runs past the stream");
    out
}

/// The capture of one `iscsi inquiry` on `driver`: the byte tap lives in
/// the shared driver core, so every driver writes the same capture.
fn pcap_of_an_inquiry_holds_the_whole_session(driver: &str) {
    let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), IQN);
    cfg.luns.push(LunSpec::Ram(1 << 20));
    cfg.log = false;
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run()
    });
    let file = std::env::temp_dir().join(format!(
        "iscsi-cli-pcap-{driver}-{}.pcap",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_iscsi"))
        .args(["--driver", driver, "--pcap", file.to_str().unwrap()])
        .args(["inquiry", &format!("iscsi://{addr}/{IQN}/0")])
        .output()
        .unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
    assert!(out.status.success(), "{driver}: {out:?}");
    let bytes = std::fs::read(&file).unwrap();

    let segs = parse(&bytes);
    // Handshake first, FINs both ways at the end.
    assert_eq!(segs[0].flags & 0x12, 0x02, "SYN");
    assert_eq!(segs[1].flags & 0x12, 0x12, "SYN-ACK");
    assert_eq!(
        segs.iter().filter(|s| s.flags & 0x01 != 0).count(),
        2,
        "one FIN each way"
    );
    let to_target = pdus(&segs, true);
    let to_initiator = pdus(&segs, false);
    // Login Request, SCSI Command, Logout Request.
    let ops: Vec<u8> = to_target.iter().map(|p| p.0).collect();
    assert_eq!(ops, [0x03, 0x01, 0x06], "{to_target:?}");
    assert!(to_target[0].1 > 0, "the login carries keys");
    // Login Response, the INQUIRY data (Data-In, maybe with status) and
    // possibly a SCSI Response, Logout Response.
    let ops: Vec<u8> = to_initiator.iter().map(|p| p.0).collect();
    assert_eq!(ops.first(), Some(&0x23), "{ops:x?}");
    assert!(ops.contains(&0x25), "Data-In: {ops:x?}");
    assert_eq!(ops.last(), Some(&0x26), "{ops:x?}");

    // An independent dissector, when present: tshark decodes the capture
    // as iSCSI (the target side is on port 3260) with nothing malformed.
    if Command::new("tshark").arg("-v").output().is_ok() {
        let r = file.to_str().unwrap();
        let listed = Command::new("tshark")
            .args(["-r", r, "-Y", "iscsi"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        for what in [
            "Login Command",
            "Login Response",
            "Inquiry",
            "Logout Response",
        ] {
            assert!(listed.contains(what), "{what} not in:\n{listed}");
        }
        let bad = Command::new("tshark")
            .args([
                "-r",
                r,
                "-Y",
                "_ws.malformed || _ws.expert.severity == error",
            ])
            .output()
            .unwrap();
        assert!(
            bad.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&bad.stdout)
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn pcap_with_the_std_driver() {
    pcap_of_an_inquiry_holds_the_whole_session("std");
}

#[test]
fn pcap_with_the_mio_driver() {
    pcap_of_an_inquiry_holds_the_whole_session("mio");
}

#[test]
fn pcap_with_the_smol_driver() {
    pcap_of_an_inquiry_holds_the_whole_session("smol");
}
