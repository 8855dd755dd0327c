//! An in-memory I/O loop for the initiator core, shared by the `io`
//! criterion bench and the `alloc_count` test (included with `#[path]`).
//!
//! The initiator logs in against the crate's scripted login responder
//! (`iscsi_proto::testing::Pair`), then talks to a minimal Full Feature
//! Phase responder: pre-encoded Data-In (with status, phase collapse) and
//! SCSI Response PDUs whose ITT, StatSN, ExpCmdSN and MaxCmdSN are patched
//! per command. The responder allocates nothing and copies only what a
//! socket read would (the response bytes into the receive buffer), so the
//! loop measures the initiator: submit, poll_transmit, handle_input,
//! poll_event.
#![allow(dead_code)]

use iscsi_proto::time::Instant;

use bytes::{Bytes, BytesMut};
use iscsi_proto::initiator::{Event, ScsiCommand, Session, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{read16, write16, RwFlags};
use iscsi_proto::testing::Pair;
use iscsi_proto::wire::{
    DataIn, DataInStatus, Digests, Header, Pdu, Residual, ScsiResponse, ScsiResponseCode, Serial,
};

/// Bytes per I/O.
pub const IO: usize = 4096;
/// The wire LUN (LUN 1).
pub const LUN: u64 = 0x0001_0000_0000_0000;

/// Offsets in the BHS (RFC 7143 section 11.2.1).
const ITT: usize = 16;
const CMD_SN: usize = 24;
const STAT_SN: usize = 24;
const EXP_CMD_SN: usize = 28;
const MAX_CMD_SN: usize = 32;

/// A logged-in initiator and its in-memory peer.
pub struct IoLoop {
    /// The initiator under test.
    pub session: Session,
    now: Instant,
    rx: BytesMut,
    data_in: Vec<u8>,
    response: Vec<u8>,
    stat_sn: u32,
    payload: Bytes,
    lba: u64,
    /// Commands seen by the responder: (ITT, CmdSN, is a write).
    seen: Vec<(u32, u32, bool)>,
}

fn put(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn get(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn encode(header: impl Into<Header>, data: Bytes) -> Vec<u8> {
    let mut b = BytesMut::new();
    Pdu::new(header, data)
        .encode(&mut b, Digests::NONE)
        .expect("template encodes");
    b.to_vec()
}

impl Default for IoLoop {
    fn default() -> Self {
        Self::new()
    }
}

impl IoLoop {
    /// Logs in (RFC defaults: ImmediateData=Yes, MaxRecvDataSegmentLength
    /// 8192) and builds the response templates.
    pub fn new() -> IoLoop {
        let cfg = SessionConfig::new("iqn.2026-11.rs.iscsi:bench")
            .with_target("iqn.2026-11.rs.iscsi:bench-target");
        let mut pair = Pair::new(cfg);
        pair.login();
        let stat_sn = pair.target.stat_sn.0;
        let Pair { session, now, .. } = pair;
        let data: Vec<u8> = (0..IO).map(|i| (i * 7) as u8).collect();
        let data_in = encode(
            DataIn {
                final_pdu: true,
                ack: false,
                lun: 0,
                itt: 0,
                ttt: 0xffff_ffff,
                exp_cmd_sn: Serial(0),
                max_cmd_sn: Serial(0),
                data_sn: Serial(0),
                buffer_offset: 0,
                status: Some(DataInStatus {
                    status: 0,
                    stat_sn: Serial(0),
                    residual: Residual::None,
                }),
            },
            Bytes::from(data),
        );
        let response = encode(
            ScsiResponse {
                response: ScsiResponseCode::CommandCompleted,
                status: 0,
                itt: 0,
                snack_tag: 0,
                stat_sn: Serial(0),
                exp_cmd_sn: Serial(0),
                max_cmd_sn: Serial(0),
                exp_data_sn: Serial(0),
                bidi_read_residual: Residual::None,
                residual: Residual::None,
            },
            Bytes::new(),
        );
        let payload = Bytes::from(vec![0x5a; IO]);
        // One clone up front: the first clone of a `Vec`-backed `Bytes`
        // allocates its shared header; later clones only count references.
        drop(payload.clone());
        IoLoop {
            session,
            now,
            rx: BytesMut::with_capacity(1 << 20),
            data_in,
            response,
            stat_sn,
            payload,
            lba: 0,
            seen: Vec::with_capacity(256),
        }
    }

    fn command(&mut self, write: bool) -> ScsiCommand {
        self.lba = (self.lba + 8) % (1 << 20);
        if write {
            let cdb = write16(self.lba, 8, RwFlags::default());
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::from_u64(LUN),
                cdb,
                self.payload.clone(),
            )
        } else {
            let cdb = read16(self.lba, 8, RwFlags::default());
            ScsiCommand::read(iscsi_proto::scsi::Lun::from_u64(LUN), cdb, IO as u32)
        }
    }

    /// Submits `n` commands (reads or writes), moves every PDU to the
    /// responder, delivers all answers in one buffer (as one socket read
    /// would) and collects the `n` completions. Returns the bytes read.
    pub fn batch(&mut self, n: usize, write: bool) -> usize {
        for _ in 0..n {
            let cmd = self.command(write);
            self.session.submit(self.now, cmd).expect("submit");
        }
        // The responder: look at each command PDU as the target would.
        while let Some(t) = self.session.poll_transmit(self.now) {
            let h = t.header();
            if h[0] & 0x3f == 0x01 {
                self.seen
                    .push((get(h, ITT), get(h, CMD_SN), h[1] & 0x20 != 0));
            }
        }
        for i in 0..self.seen.len() {
            let (itt, cmd_sn, is_write) = self.seen[i];
            let pdu = if is_write {
                &mut self.response
            } else {
                &mut self.data_in
            };
            put(pdu, ITT, itt);
            put(pdu, STAT_SN, self.stat_sn);
            put(pdu, EXP_CMD_SN, cmd_sn.wrapping_add(1));
            put(pdu, MAX_CMD_SN, cmd_sn.wrapping_add(64));
            self.stat_sn = self.stat_sn.wrapping_add(1);
            self.rx.extend_from_slice(pdu);
        }
        self.seen.clear();
        self.session.handle_input(self.now, &mut self.rx);
        let mut read = 0;
        let mut done = 0;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::DataIn { data, .. } => read += data.len(),
                Event::Complete {
                    outcome: TaskOutcome::Scsi(r),
                    ..
                } if r.is_good() => done += 1,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(done, n, "every command completes");
        read
    }
}
