//! A minimal scripted iSCSI initiator over a blocking `std` socket, built
//! from `iscsi_proto::wire` only, and helpers to run a [`Server`] in a
//! thread.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_mio::server::{LunSpec, Server, ShutdownHandle, TargetConfig, TargetError};
use iscsi_proto::wire::text::{encode_pairs, parse_pairs};
use iscsi_proto::wire::*;

pub const TARGET: &str = "iqn.2026-01.test.mio:disk";

/// A running server: its address, its stop handle and its thread.
pub struct Running {
    pub addr: SocketAddr,
    pub stop: ShutdownHandle,
    pub thread: Option<JoinHandle<Result<(), TargetError>>>,
}

impl Running {
    /// Stops the server and waits for `run` to return.
    pub fn stop(mut self) -> Result<(), TargetError> {
        self.stop.shutdown();
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("server thread panicked")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.shutdown();
            let _ = t.join();
        }
    }
}

pub fn config(luns: Vec<LunSpec>) -> TargetConfig {
    let mut cfg = TargetConfig::new("127.0.0.1:0".parse().unwrap(), TARGET);
    cfg.luns = luns;
    cfg.log = false;
    cfg
}

pub fn start(cfg: TargetConfig) -> Running {
    let mut server = Server::bind(cfg).expect("bind");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    Running {
        addr,
        stop,
        thread: Some(thread),
    }
}

pub fn kv(pairs: &[(&str, &str)]) -> Bytes {
    let mut out = Vec::new();
    encode_pairs(pairs.iter().copied(), &mut out).unwrap();
    Bytes::from(out)
}

pub fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// The outcome of one SCSI command.
#[derive(Debug)]
pub struct Outcome {
    pub status: u8,
    pub data: Vec<u8>,
    pub sense: Bytes,
    pub residual: Residual,
}

pub struct Client {
    pub sock: TcpStream,
    pub dec: PduDecoder,
    pub rx: BytesMut,
    pub cmd_sn: Serial,
    pub exp_stat_sn: Serial,
    pub itt: u32,
    pub isid: Isid,
    /// The target's MaxRecvDataSegmentLength.
    pub target_mrdsl: u32,
    /// Digests in use (after login).
    pub digests: Digests,
}

impl Client {
    pub fn connect(addr: SocketAddr, isid_qualifier: u16) -> Client {
        let sock = TcpStream::connect(addr).expect("connect");
        // A safety net against a hung server, not a timed assertion.
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            dec: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: 0x00ff_ffff,
            }),
            rx: BytesMut::new(),
            cmd_sn: Serial(1),
            exp_stat_sn: Serial(0),
            itt: 0,
            isid: Isid::random([0x12, 0x34, 0x56], isid_qualifier),
            target_mrdsl: 8192,
            digests: Digests::NONE,
        }
    }

    pub fn send(&mut self, h: impl Into<Header>, data: Bytes) {
        let mut out = BytesMut::new();
        Pdu::new(h, data).encode(&mut out, self.digests).unwrap();
        self.sock.write_all(&out).expect("write");
    }

    /// Reads until one whole PDU is decoded; `None` at end of stream.
    pub fn try_recv(&mut self) -> Option<Pdu> {
        loop {
            if let Some(p) = self.dec.decode(&mut self.rx).expect("decode") {
                return Some(p);
            }
            let mut buf = [0u8; 65536];
            match self.sock.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn recv(&mut self) -> Pdu {
        self.try_recv().expect("connection closed by the target")
    }

    fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    /// One login request (CSG=Operational, NSG=FullFeature) with
    /// `extra` keys; returns the response and its keys.
    pub fn login_with(
        &mut self,
        session_type: &str,
        extra: &[(&str, &str)],
    ) -> (LoginResponse, Vec<(String, String)>) {
        let mut keys = vec![
            ("InitiatorName", "iqn.2026-01.test.mio:client"),
            ("SessionType", session_type),
            ("MaxRecvDataSegmentLength", "65536"),
        ];
        for k in ["HeaderDigest", "DataDigest"] {
            if !extra.iter().any(|(e, _)| *e == k) {
                keys.push((k, "None"));
            }
        }
        if session_type == "Normal" && !extra.iter().any(|(k, _)| *k == "TargetName") {
            keys.push(("TargetName", TARGET));
        }
        keys.extend_from_slice(extra);
        let itt = self.next_itt();
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(req, kv(&keys));
        let p = self.recv();
        let Header::LoginResponse(h) = p.header else {
            panic!("expected a login response, got {:?}", p.header)
        };
        let pairs = parse_pairs(&p.data).unwrap();
        self.exp_stat_sn = h.stat_sn.next();
        self.after_login_response(&h, &pairs);
        (h, pairs)
    }

    /// Notes the target's declarations; switches digests on at the end
    /// of a successful login.
    fn after_login_response(&mut self, h: &LoginResponse, pairs: &[(String, String)]) {
        if let Some(v) = get(pairs, "MaxRecvDataSegmentLength") {
            self.target_mrdsl = v.parse().unwrap();
        }
        if h.status_class == 0 && h.transit && h.nsg == Stage::FullFeature {
            self.digests = Digests {
                header: get(pairs, "HeaderDigest") == Some("CRC32C"),
                data: get(pairs, "DataDigest") == Some("CRC32C"),
            };
            self.dec.set_digests(self.digests);
        }
    }

    /// One login request in any stage; returns the response and its keys.
    pub fn login_step(
        &mut self,
        transit: bool,
        csg: Stage,
        nsg: Stage,
        keys: &[(&str, &str)],
    ) -> (LoginResponse, Vec<(String, String)>) {
        let itt = self.next_itt();
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(req, kv(keys));
        let p = self.recv();
        let Header::LoginResponse(h) = p.header else {
            panic!("expected a login response, got {:?}", p.header)
        };
        let pairs = parse_pairs(&p.data).unwrap();
        self.exp_stat_sn = h.stat_sn.next();
        self.after_login_response(&h, &pairs);
        (h, pairs)
    }

    /// A CHAP (MD5) login, RFC 7143 section 12.1.3; returns the status
    /// of the response to CHAP_N/CHAP_R (and completes the login when it
    /// is a success).
    pub fn login_chap(&mut self, user: &str, secret: &str) -> (u8, u8) {
        use iscsi_proto::login::chap::ChapAlgorithm;
        use iscsi_proto::login::ChapSecret;
        use iscsi_proto::wire::text::{encode_hex, parse_binary};
        let (h, p) = self.login_step(
            false,
            Stage::Security,
            Stage::Operational,
            &[
                ("InitiatorName", "iqn.2026-01.test.mio:client"),
                ("TargetName", TARGET),
                ("SessionType", "Normal"),
                ("AuthMethod", "CHAP"),
            ],
        );
        assert_eq!(h.status_class, 0, "{p:?}");
        assert_eq!(get(&p, "AuthMethod"), Some("CHAP"));
        let (_, p) = self.login_step(
            false,
            Stage::Security,
            Stage::Operational,
            &[("CHAP_A", "5")],
        );
        let id: u8 = get(&p, "CHAP_I").expect("CHAP_I").parse().unwrap();
        let challenge = parse_binary(get(&p, "CHAP_C").expect("CHAP_C"), 1024).unwrap();
        let r = ChapAlgorithm::Md5.response(id, &ChapSecret::new(secret.as_bytes()), &challenge);
        let r = encode_hex(&r);
        let (h, p) = self.login_step(
            true,
            Stage::Security,
            Stage::Operational,
            &[("CHAP_N", user), ("CHAP_R", &r)],
        );
        if h.status_class != 0 {
            return (h.status_class, h.status_detail);
        }
        assert!(h.transit, "{p:?}");
        let (h, p) = self.login_step(
            true,
            Stage::Operational,
            Stage::FullFeature,
            &[("HeaderDigest", "None"), ("DataDigest", "None")],
        );
        assert_eq!((h.status_class, h.status_detail), (0, 0), "{p:?}");
        assert!(h.transit);
        (0, 0)
    }

    /// A successful Normal login with InitialR2T=Yes, ImmediateData=No
    /// (every write goes through R2T).
    pub fn login(&mut self) -> Vec<(String, String)> {
        let (h, p) = self.login_with("Normal", &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
        assert_eq!((h.status_class, h.status_detail), (0, 0), "login: {p:?}");
        assert!(h.transit);
        assert_eq!(h.nsg, Stage::FullFeature);
        assert_ne!(h.tsih, 0);
        p
    }

    /// Runs one SCSI command to completion: answers R2Ts with Data-Out
    /// from `write`, gathers Data-In.
    pub fn scsi(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> Outcome {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read: read_len > 0,
            write: !write.is_empty(),
            attr: TaskAttr::Simple,
            lun,
            itt,
            expected_data_transfer_length: if write.is_empty() {
                read_len
            } else {
                write.len() as u32
            },
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
        };
        self.cmd_sn = self.cmd_sn.next();
        self.send(cmd, Bytes::new());
        self.finish(itt, lun, write)
    }

    /// Sends a READ without waiting for it (pipelining).
    pub fn send_read(&mut self, cdb: &[u8], read_len: u32) -> u32 {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read: true,
            write: false,
            attr: TaskAttr::Simple,
            lun: 0,
            itt,
            expected_data_transfer_length: read_len,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
        };
        self.cmd_sn = self.cmd_sn.next();
        self.send(cmd, Bytes::new());
        itt
    }

    /// Waits for the end of task `itt`.
    pub fn finish(&mut self, itt: u32, lun: u64, write: &[u8]) -> Outcome {
        let mut data = Vec::new();
        loop {
            let p = self.recv();
            match p.header {
                Header::R2t(r) => {
                    assert_eq!(r.itt, itt, "R2T for another task");
                    let mut off = r.buffer_offset as usize;
                    let end = off + r.desired_data_transfer_length as usize;
                    let mut data_sn = 0u32;
                    while off < end {
                        let n = (end - off).min(self.target_mrdsl as usize);
                        let dout = DataOut {
                            final_pdu: off + n == end,
                            lun,
                            itt,
                            ttt: r.ttt,
                            exp_stat_sn: self.exp_stat_sn,
                            data_sn: Serial(data_sn),
                            buffer_offset: off as u32,
                        };
                        self.send(dout, Bytes::copy_from_slice(&write[off..off + n]));
                        data_sn += 1;
                        off += n;
                    }
                }
                Header::DataIn(d) => {
                    assert_eq!(d.itt, itt, "Data-In for another task");
                    assert_eq!(d.buffer_offset as usize, data.len(), "Data-In out of order");
                    data.extend_from_slice(&p.data);
                    if let Some(st) = d.status {
                        self.exp_stat_sn = st.stat_sn.next();
                        return Outcome {
                            status: st.status,
                            data,
                            sense: Bytes::new(),
                            residual: st.residual,
                        };
                    }
                }
                Header::ScsiResponse(r) => {
                    assert_eq!(r.itt, itt, "response for another task");
                    self.exp_stat_sn = r.stat_sn.next();
                    return Outcome {
                        status: r.status,
                        data,
                        sense: p.data,
                        residual: r.residual,
                    };
                }
                Header::NopIn(n) if n.ttt != 0xffff_ffff => self.answer_ping(n.ttt),
                other => panic!("unexpected PDU {other:?}"),
            }
        }
    }

    /// Answers a target NOP-In ping (RFC 7143 section 11.18: ITT
    /// 0xffffffff, the ping's TTT, immediate).
    pub fn answer_ping(&mut self, ttt: u32) {
        let answer = NopOut {
            immediate: true,
            lun: 0,
            itt: 0xffff_ffff,
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(answer, Bytes::new());
    }

    pub fn read10(&mut self, lba: u32, blocks: u16) -> Vec<u8> {
        let cdb = iscsi_proto::scsi::cdb::read10(lba, blocks, Default::default());
        let o = self.scsi(0, &cdb, u32::from(blocks) * 512, &[]);
        assert_eq!(o.status, 0, "READ(10) failed: {o:?}");
        o.data
    }

    pub fn write10(&mut self, lba: u32, data: &[u8]) {
        let blocks = (data.len() / 512) as u16;
        let cdb = iscsi_proto::scsi::cdb::write10(lba, blocks, Default::default());
        let o = self.scsi(0, &cdb, 0, data);
        assert_eq!(o.status, 0, "WRITE(10) failed: {o:?}");
        assert_eq!(o.residual, Residual::None);
    }

    /// Logs out (close the session) and expects the response.
    pub fn logout(&mut self) {
        let itt = self.next_itt();
        let req = LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(req, Bytes::new());
        let p = self.recv();
        let Header::LogoutResponse(r) = p.header else {
            panic!("expected a logout response, got {:?}", p.header)
        };
        assert_eq!(r.itt, itt);
        assert_eq!(r.response, LogoutResponseCode::Success);
        // The target closes the connection after the response.
        assert!(
            self.try_recv().is_none(),
            "connection still open after logout"
        );
    }
}

/// A deterministic byte pattern, different per `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed) * 7) as u8
                ^ seed
        })
        .collect()
}
