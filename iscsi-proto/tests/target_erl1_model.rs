//! ErrorRecoveryLevel 1 on one target session under random digest errors
//! (proptest): Data-Out PDUs whose data digest fails at the target (RFC
//! 7143 section 7.8: Reject, then a recovery R2T, section 7.2.2), and
//! Data-In / status PDUs the initiator discards (its own digest errors),
//! recovered with Data SNACK and Status SNACK (section 7.2.1, 11.16).
//!
//! Oracles: the connection never drops, every command ends once with GOOD,
//! no command executes twice, write data reaches the medium as sent, read
//! data is what the medium held when the read executed, the medium equals
//! the model, and the retention is empty once everything is acknowledged.

mod target_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::DigestType;
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::Event as TargetEvent;
use iscsi_proto::wire::*;
use proptest::prelude::*;
use target_support::*;

const BLOCK: usize = 512;
const BLOCKS: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    /// Write `n` blocks at `block`; Data-Out PDU k of a first attempt has
    /// its data digest broken when bit k % 16 of `corrupt` is set.
    Write {
        block: usize,
        n: usize,
        fill: u8,
        corrupt: u16,
    },
    /// Read `n` blocks at `block`; the initiator discards Data-In PDU k
    /// when bit k % 16 of `drop` is set (the status included).
    Read { block: usize, n: usize, drop: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..BLOCKS, 1..8usize, any::<u8>(), any::<u16>()).prop_map(|(block, n, fill, corrupt)| {
            Op::Write {
                block,
                n,
                fill,
                corrupt,
            }
        }),
        (0..BLOCKS, 1..8usize, any::<u16>()).prop_map(|(block, n, drop)| Op::Read {
            block,
            n,
            drop
        }),
    ]
}

struct Model {
    h: Harness,
    medium: Vec<u8>,
    model: Vec<u8>,
    exp_stat_sn: Serial,
    executions: u32,
}

impl Model {
    fn new() -> Model {
        let mut cfg = config();
        cfg.params.error_recovery_level = 1;
        cfg.params.data_digest = vec![DigestType::Crc32c];
        let mut h = Harness::new(cfg);
        let (r, _) = h.login(&[
            ("ErrorRecoveryLevel", "1"),
            ("DataDigest", "CRC32C"),
            ("MaxRecvDataSegmentLength", "1024"),
            ("MaxBurstLength", "2048"),
            ("FirstBurstLength", "2048"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
        ]);
        h.events();
        Model {
            h,
            medium: vec![0; BLOCK * (BLOCKS + 8)],
            model: vec![0; BLOCK * (BLOCKS + 8)],
            exp_stat_sn: r.stat_sn.next(),
            executions: 0,
        }
    }

    fn cmd(&mut self, write: bool, block: usize, n: usize) -> ScsiCommand {
        let mut c = self.h.cmd(!write, write, (n * BLOCK) as u32, true);
        c.cdb[5] = block as u8;
        c.exp_stat_sn = self.exp_stat_sn;
        c
    }

    /// Sends a Data-Out, its data digest broken when `bad`.
    fn data_out(&mut self, d: DataOut, data: Bytes, bad: bool) {
        let mut b = BytesMut::new();
        Pdu::new(d, data).encode(&mut b, self.h.tx_digests).unwrap();
        if bad {
            let n = b.len();
            b[n - 1] ^= 0x5a;
        }
        self.h.send_raw(&b);
    }

    /// The application runs the one command delivered.
    fn execute(&mut self) -> bool {
        let ev = self.h.events();
        let mut ran = false;
        for e in ev {
            let TargetEvent::Command(req) = e else {
                panic!("unexpected event {e:?}")
            };
            self.executions += 1;
            ran = true;
            let at = req.cdb[5] as usize * BLOCK;
            if req.expected_write_len > 0 {
                let len = req.data_out.len();
                self.medium[at..at + len].copy_from_slice(&req.data_out);
                self.h
                    .s
                    .complete_write(req.task, ScsiStatus::Good, None, len as u32)
                    .unwrap();
            } else {
                let len = req.expected_read_len as usize;
                let data = Bytes::copy_from_slice(&self.medium[at..at + len]);
                self.h
                    .s
                    .complete(req.task, ScsiStatus::Good, None, data)
                    .unwrap();
            }
        }
        ran
    }

    fn note_status(&mut self, sn: Serial) {
        assert_eq!(sn, self.exp_stat_sn, "statuses in order");
        self.exp_stat_sn = sn.next();
    }

    fn write(&mut self, block: usize, n: usize, fill: u8, corrupt: u16) {
        let data = Bytes::from(vec![fill; n * BLOCK]);
        let c = self.cmd(true, block, n);
        self.h.send(c, Bytes::new());
        let mut k = 0u32;
        let mut attempts = 0;
        let mut done = false;
        while !done {
            self.execute();
            let pdus = self.h.recv();
            assert!(!pdus.is_empty(), "write {} stuck", c.itt);
            for p in pdus {
                match p.header {
                    Header::R2t(r) => {
                        attempts += 1;
                        let end = r.buffer_offset + r.desired_data_transfer_length;
                        let mut off = r.buffer_offset;
                        let mut sn = 0;
                        while off < end {
                            let len = (end - off).min(1024);
                            let bad = attempts <= 2 && corrupt & (1 << (k % 16)) != 0;
                            k += 1;
                            let d = DataOut {
                                final_pdu: off + len == end,
                                lun: 0,
                                itt: c.itt,
                                ttt: r.ttt,
                                exp_stat_sn: self.exp_stat_sn,
                                data_sn: Serial(sn),
                                buffer_offset: off,
                            };
                            let slice = data.slice(off as usize..(off + len) as usize);
                            self.data_out(d, slice, bad);
                            off += len;
                            sn += 1;
                        }
                    }
                    Header::Reject(j) => {
                        assert_eq!(j.reason, RejectReason::DataDigestError);
                        self.note_status(j.stat_sn);
                    }
                    Header::ScsiResponse(s) => {
                        assert_eq!((s.itt, s.status), (c.itt, 0));
                        self.note_status(s.stat_sn);
                        done = true;
                    }
                    ref other => panic!("unexpected {other:?}"),
                }
            }
        }
        let at = block * BLOCK;
        self.model[at..at + n * BLOCK].copy_from_slice(&data);
    }

    fn read(&mut self, block: usize, n: usize, drop: u16) {
        let c = self.cmd(false, block, n);
        self.h.send(c, Bytes::new());
        let at = block * BLOCK;
        let expected = Bytes::copy_from_slice(&self.medium[at..at + n * BLOCK]);
        assert!(self.execute());
        let pdus = self.h.recv();
        let total = pdus.len();
        let mut got: Vec<Option<Pdu>> = vec![None; total];
        for (i, p) in pdus.into_iter().enumerate() {
            if drop & (1 << (i % 16)) == 0 {
                got[i] = Some(p);
            }
        }
        // Data SNACK for each missing Data-In (RunLength 1), the status
        // (in the last one) included: its StatSN is the next expected.
        for (i, slot) in got.iter_mut().enumerate() {
            if slot.is_none() {
                let s = SnackRequest {
                    snack_type: SnackType::DataR2t,
                    lun: 0,
                    itt: c.itt,
                    ttt_or_snack_tag: 0xffff_ffff,
                    exp_stat_sn: self.exp_stat_sn,
                    beg_run: Serial(i as u32),
                    run_length: 1,
                };
                self.h.send(s, Bytes::new());
                let mut r = self.h.recv();
                assert_eq!(r.len(), 1, "one replica: {r:?}");
                *slot = r.pop();
            }
        }
        let mut all = BytesMut::new();
        for (i, p) in got.iter().enumerate() {
            let p = p.as_ref().unwrap();
            let Header::DataIn(d) = p.header else {
                panic!("{p:?}")
            };
            assert_eq!(d.data_sn, Serial(i as u32));
            all.extend_from_slice(&p.data);
            if let Some(st) = d.status {
                assert_eq!(st.status, 0);
                self.note_status(st.stat_sn);
            }
        }
        assert_eq!(all.freeze(), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn erl1_digest_errors_cost_one_pdu(ops in proptest::collection::vec(op(), 1..24)) {
        let mut m = Model::new();
        let mut commands = 0;
        for op in &ops {
            commands += 1;
            match *op {
                Op::Write { block, n, fill, corrupt } => m.write(block, n, fill, corrupt),
                Op::Read { block, n, drop } => m.read(block, n, drop),
            }
            prop_assert!(!m.h.s.is_closed());
        }
        prop_assert_eq!(m.executions, commands);
        prop_assert_eq!(&m.medium, &m.model);
        // A NOP-Out acknowledging everything empties the retention.
        let nop = NopOut {
            immediate: true,
            lun: 0,
            itt: 0xffff_ffff,
            ttt: 0xffff_ffff,
            cmd_sn: m.h.cmd_sn,
            exp_stat_sn: m.exp_stat_sn,
        };
        m.h.send(nop, Bytes::new());
        prop_assert_eq!(m.h.s.retained(), (0, 0, 0));
    }
}
