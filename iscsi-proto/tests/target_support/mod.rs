//! A scripted initiator for the target session tests: builds PDUs, feeds
//! their bytes to a `target::Session` on virtual time, and decodes what it
//! sends back.
#![allow(dead_code)]

use iscsi_proto::time::Instant;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::target::{Event as TargetEvent, Session, SessionConfig as TargetConfig, TaskId};
use iscsi_proto::wire::text::{encode_pairs, parse_pairs};
use iscsi_proto::wire::*;

pub const TARGET: &str = "iqn.2024-01.test:disk1";
pub const INITIATOR: &str = "iqn.2024-01.test:init";

pub fn kv(pairs: &[(&str, &str)]) -> Bytes {
    let mut out = Vec::new();
    encode_pairs(pairs.iter().copied(), &mut out).unwrap();
    Bytes::from(out)
}

pub fn pairs(data: &[u8]) -> Vec<(String, String)> {
    parse_pairs(data).unwrap()
}

pub fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

pub struct Harness {
    pub s: Session,
    pub now: Instant,
    pub rx: PduDecoder,
    pub tx_digests: Digests,
    pub cmd_sn: Serial,
    pub itt: u32,
    pub isid: Isid,
    /// When set, encoded bytes are fed in pieces of this size.
    pub chunk: Option<usize>,
}

pub fn config() -> TargetConfig {
    let mut c = TargetConfig::new(TARGET);
    c.seed = 42;
    c.params = OperationalParams::default();
    c
}

impl Harness {
    pub fn new(cfg: TargetConfig) -> Harness {
        Harness {
            s: Session::new(cfg).unwrap(),
            now: Instant::ZERO,
            rx: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: 0x00ff_ffff,
            }),
            tx_digests: Digests::NONE,
            cmd_sn: Serial(1000),
            itt: 1,
            isid: Isid::random([1, 2, 3], 7),
            chunk: None,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    /// Sends one PDU (with digests as negotiated).
    pub fn send(&mut self, h: impl Into<Header>, data: Bytes) {
        self.send_pdu(Pdu::new(h, data));
    }

    pub fn send_pdu(&mut self, pdu: Pdu) {
        let mut out = BytesMut::new();
        pdu.encode(&mut out, self.tx_digests).unwrap();
        self.send_raw(&out);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let now = self.now;
        match self.chunk {
            None => {
                let mut b = BytesMut::from(bytes);
                self.s.handle_input(now, &mut b);
                assert!(b.is_empty() || self.s.is_closed());
            }
            Some(n) => {
                let mut b = BytesMut::new();
                for c in bytes.chunks(n.max(1)) {
                    b.extend_from_slice(c);
                    self.s.handle_input(now, &mut b);
                }
                assert!(b.is_empty() || self.s.is_closed());
            }
        }
    }

    /// Everything the target sent, decoded.
    pub fn recv(&mut self) -> Vec<Pdu> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        while let Some(t) = self.s.poll_transmit(self.now) {
            t.write_to(&mut buf);
            // Decode one at a time: digests switch after the final login
            // response.
            while let Some(p) = self.rx.decode(&mut buf).unwrap() {
                if let Header::LoginResponse(r) = &p.header {
                    if r.transit && r.nsg == Stage::FullFeature && r.status_class == 0 {
                        self.rx.set_digests(self.pending_digests());
                    }
                }
                out.push(p);
            }
        }
        assert!(buf.is_empty());
        out
    }

    fn pending_digests(&self) -> Digests {
        self.s
            .negotiated()
            .map(|n| Digests {
                header: n.header_digest,
                data: n.data_digest,
            })
            .unwrap_or(Digests::NONE)
    }

    pub fn events(&mut self) -> Vec<TargetEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    pub fn login_req(&self, transit: bool, cont: bool, csg: Stage, nsg: Stage) -> LoginRequest {
        LoginRequest {
            transit,
            cont,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt: 1,
            cid: 3,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
        }
    }

    /// Sends one login request and returns the single response.
    pub fn login_step(
        &mut self,
        req: LoginRequest,
        text: Bytes,
    ) -> (LoginResponse, Vec<(String, String)>) {
        self.send(req, text);
        let mut r = self.recv();
        assert_eq!(r.len(), 1, "one login response expected: {r:?}");
        let p = r.remove(0);
        let Header::LoginResponse(h) = p.header else {
            panic!("not a login response: {:?}", p.header)
        };
        (h, pairs(&p.data))
    }

    /// A Normal session login without security negotiation: one request
    /// CSG=1 -> NSG=3 with the given extra keys.
    pub fn login(&mut self, extra: &[(&str, &str)]) -> (LoginResponse, Vec<(String, String)>) {
        let mut keys = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
        ];
        keys.extend_from_slice(extra);
        let req = self.login_req(true, false, Stage::Operational, Stage::FullFeature);
        let (h, p) = self.login_step(req, kv(&keys));
        assert_eq!((h.status_class, h.status_detail), (0, 0), "{p:?}");
        assert!(h.transit);
        assert_eq!(h.nsg, Stage::FullFeature);
        self.tx_digests = self.pending_digests();
        (h, p)
    }

    pub fn cmd(&mut self, read: bool, write: bool, edtl: u32, fin: bool) -> ScsiCommand {
        let itt = self.next_itt();
        let sn = self.cmd_sn;
        self.cmd_sn = sn.next();
        let mut cdb = [0u8; 16];
        cdb[0] = if write { 0x2a } else { 0x28 };
        ScsiCommand {
            immediate: false,
            final_pdu: fin,
            read,
            write,
            attr: TaskAttr::Simple,
            lun: 0,
            itt,
            expected_data_transfer_length: edtl,
            cmd_sn: sn,
            exp_stat_sn: Serial(0),
            cdb,
        }
    }

    pub fn data_out(&self, itt: u32, ttt: u32, data_sn: u32, offset: u32, fin: bool) -> DataOut {
        DataOut {
            final_pdu: fin,
            lun: 0,
            itt,
            ttt,
            exp_stat_sn: Serial(0),
            data_sn: Serial(data_sn),
            buffer_offset: offset,
        }
    }

    /// The single Command event expected now.
    pub fn command_event(&mut self) -> iscsi_proto::target::ScsiRequest {
        let ev = self.events();
        match ev.as_slice() {
            [TargetEvent::Command(r)] => r.clone(),
            other => panic!("expected one Command event, got {other:?}"),
        }
    }

    pub fn task_of(&mut self) -> TaskId {
        self.command_event().task
    }
}

pub fn pattern(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}
