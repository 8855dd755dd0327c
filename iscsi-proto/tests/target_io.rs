//! Target data transfers: reads split into Data-In sequences, writes in
//! all four InitialR2T x ImmediateData combinations, R2T flow, Data-Out
//! checks and residuals.

mod target_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::scsi::{ScsiStatus, SenseData, SenseKey};
use iscsi_proto::target::Event as TargetEvent;
use iscsi_proto::wire::*;
use target_support::*;

const NO_TAG: u32 = 0xffff_ffff;

fn read_harness() -> Harness {
    let mut h = Harness::new(config());
    h.login(&[
        ("MaxRecvDataSegmentLength", "4096"),
        ("MaxBurstLength", "8192"),
        ("FirstBurstLength", "8192"),
    ]);
    h.events();
    h
}

#[test]
fn read_is_split_by_mrdsl_and_max_burst_with_status_in_last_data_in() {
    let mut h = read_harness();
    let c = h.cmd(true, false, 20000, true);
    h.send(c, Bytes::new());
    let req = h.command_event();
    assert_eq!(req.expected_read_len, 20000);
    assert_eq!(req.cdb[0], 0x28);
    assert_eq!(req.cdb.len(), 16);
    assert!(h.recv().is_empty());
    let stat_before = h.s.stat_sn();
    h.s.complete(req.task, ScsiStatus::Good, None, pattern(20000))
        .unwrap();
    let r = h.recv();
    assert_eq!(r.len(), 5);
    let mut all = BytesMut::new();
    for (i, p) in r.iter().enumerate() {
        let Header::DataIn(d) = p.header else {
            panic!()
        };
        assert_eq!(d.itt, c.itt);
        assert_eq!(d.data_sn, Serial(i as u32));
        assert_eq!(d.buffer_offset as usize, all.len());
        assert!(p.data.len() <= 4096);
        // F at the end of every 8192-byte burst and at the end.
        assert_eq!(d.final_pdu, matches!(i, 1 | 3 | 4), "pdu {i}");
        assert_eq!(d.status.is_some(), i == 4);
        all.extend_from_slice(&p.data);
    }
    let Header::DataIn(last) = r[4].header else {
        panic!()
    };
    let st = last.status.unwrap();
    assert_eq!(st.status, 0);
    assert_eq!(st.stat_sn, stat_before);
    assert_eq!(st.residual, Residual::None);
    assert_eq!(all.freeze(), pattern(20000));
    assert_eq!(h.s.stat_sn(), stat_before.next());
    // The task is gone: completing it again is a usage error.
    assert!(h
        .s
        .complete(req.task, ScsiStatus::Good, None, Bytes::new())
        .is_err());
}

#[test]
fn read_residuals() {
    let mut h = read_harness();
    for (len, want, sent) in [
        (1000usize, Residual::Underflow(3096), 1000usize),
        (5000, Residual::Overflow(904), 4096),
    ] {
        let c = h.cmd(true, false, 4096, true);
        h.send(c, Bytes::new());
        let t = h.task_of();
        h.s.complete(t, ScsiStatus::Good, None, pattern(len))
            .unwrap();
        let r = h.recv();
        let n: usize = r.iter().map(|p| p.data.len()).sum();
        assert_eq!(n, sent);
        let Header::DataIn(d) = r.last().unwrap().header else {
            panic!()
        };
        assert_eq!(d.status.unwrap().residual, want);
    }
}

#[test]
fn check_condition_goes_in_a_scsi_response_with_sense() {
    let mut h = read_harness();
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    let t = h.task_of();
    let sense = SenseData::new(SenseKey::IllegalRequest, 0x21, 0).to_fixed();
    h.s.complete(
        t,
        ScsiStatus::CheckCondition,
        Some(Bytes::copy_from_slice(&sense)),
        Bytes::new(),
    )
    .unwrap();
    let r = h.recv();
    assert_eq!(r.len(), 1);
    let Header::ScsiResponse(s) = r[0].header else {
        panic!()
    };
    assert_eq!(s.status, 2);
    assert_eq!(s.residual, Residual::Underflow(512));
    let sp = split_sense(&r[0].data).unwrap();
    assert_eq!(&sp.sense[..], &sense[..]);
}

/// Runs a 40000-byte write under the given InitialR2T / ImmediateData and
/// MaxOutstandingR2T, checking every R2T, and returns (R2T count, data).
fn write_case(initial_r2t: bool, immediate: bool, max_r2t: u16) -> (usize, Bytes) {
    let mut cfg = config();
    cfg.params.initial_r2t = false;
    cfg.params.immediate_data = true;
    cfg.params.max_recv_data_segment_length = 4096;
    cfg.params.first_burst_length = 8192;
    cfg.params.max_burst_length = 16384;
    cfg.params.max_outstanding_r2t = 4;
    let mut h = Harness::new(cfg);
    let yn = |b: bool| if b { "Yes" } else { "No" };
    let mr = max_r2t.to_string();
    let (_, p) = h.login(&[
        ("InitialR2T", yn(initial_r2t)),
        ("ImmediateData", yn(immediate)),
        ("MaxOutstandingR2T", &mr),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
    ]);
    assert_eq!(get(&p, "InitialR2T"), Some(yn(initial_r2t)));
    assert_eq!(get(&p, "ImmediateData"), Some(yn(immediate)));
    let n = h.s.negotiated().unwrap().clone();
    assert_eq!(n.max_burst_length, 16384);
    assert_eq!(n.target_max_recv_data_segment_length, 4096);
    h.events();
    let total = 40000u32;
    let data = pattern(total as usize);
    let imm = if immediate { 4096 } else { 0 };
    let unsol_end = if initial_r2t { imm } else { 8192 };
    let mut c = h.cmd(false, true, total, unsol_end == imm);
    h.send(c, data.slice(..imm as usize));
    c.final_pdu = true;
    // Unsolicited Data-Out.
    let mut off = imm;
    let mut sn = 0;
    while off < unsol_end {
        let n = (unsol_end - off).min(4096);
        let d = h.data_out(c.itt, NO_TAG, sn, off, off + n == unsol_end);
        h.send(d, data.slice(off as usize..(off + n) as usize));
        off += n;
        sn += 1;
    }
    // R2T loop.
    let mut r2ts = 0usize;
    let mut next_offset = unsol_end;
    let mut ttts = Vec::new();
    loop {
        let pdus = h.recv();
        let ev = h.events();
        if let [TargetEvent::Command(req)] = ev.as_slice() {
            assert!(pdus.is_empty());
            assert_eq!(req.expected_write_len, total);
            let out = req.data_out.clone();
            h.s.complete(req.task, ScsiStatus::Good, None, Bytes::new())
                .unwrap();
            let r = h.recv();
            let Header::ScsiResponse(s) = r[0].header else {
                panic!()
            };
            assert_eq!(s.status, 0);
            // RFC 7143 section 11.4.8: ExpDataSN counts the R2Ts.
            assert_eq!(s.exp_data_sn, Serial(r2ts as u32));
            return (r2ts, out);
        }
        assert!(ev.is_empty(), "{ev:?}");
        assert!(!pdus.is_empty(), "stalled at {next_offset}");
        assert!(pdus.len() <= max_r2t as usize);
        for p in pdus {
            let Header::R2t(r) = p.header else {
                panic!("{:?}", p.header)
            };
            assert_eq!(r.itt, c.itt);
            assert_eq!(r.r2t_sn, Serial(r2ts as u32));
            assert_eq!(r.buffer_offset, next_offset);
            assert!(r.desired_data_transfer_length <= 16384);
            assert!(r.desired_data_transfer_length > 0);
            assert!(!ttts.contains(&r.ttt) && r.ttt != NO_TAG);
            ttts.push(r.ttt);
            next_offset += r.desired_data_transfer_length;
            r2ts += 1;
            let end = r.buffer_offset + r.desired_data_transfer_length;
            let mut off = r.buffer_offset;
            let mut sn = 0;
            while off < end {
                let n = (end - off).min(4096);
                let d = h.data_out(c.itt, r.ttt, sn, off, off + n == end);
                h.send(d, data.slice(off as usize..(off + n) as usize));
                off += n;
                sn += 1;
            }
        }
    }
}

#[test]
fn write_in_all_four_initial_r2t_immediate_data_combinations() {
    let data = pattern(40000);
    for (ir2t, imm, want_r2ts) in [
        // 40000 bytes, first burst 8192 / immediate 4096, bursts of 16384.
        (true, false, 3),  // 0..16384, ..32768, ..40000
        (true, true, 3),   // 4096..20480, ..36864, ..40000
        (false, false, 2), // 8192..24576, ..40000
        (false, true, 2),  // 4096 immediate + 4096 unsolicited, then 2
    ] {
        let (r2ts, out) = write_case(ir2t, imm, 1);
        assert_eq!(r2ts, want_r2ts, "InitialR2T={ir2t} ImmediateData={imm}");
        assert_eq!(out, data);
    }
}

#[test]
fn several_r2ts_outstanding() {
    let (r2ts, out) = write_case(true, false, 2);
    assert_eq!(r2ts, 3);
    assert_eq!(out, pattern(40000));
}

#[test]
fn immediate_data_arriving_in_one_pdu_is_zero_copy() {
    let mut h = Harness::new(config());
    h.login(&[("ImmediateData", "Yes")]);
    h.events();
    let c = h.cmd(false, true, 4096, true);
    let mut buf = BytesMut::new();
    Pdu::new(c, pattern(4096))
        .encode(&mut buf, Digests::NONE)
        .unwrap();
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let now = h.now;
    h.s.handle_input(now, &mut buf);
    let req = h.command_event();
    assert_eq!(req.data_out, pattern(4096));
    assert!(range.contains(&(req.data_out.as_ptr() as usize)));
}

#[test]
fn bad_data_out_offset_is_rejected_and_the_task_ends_with_check_condition() {
    let mut h = read_harness();
    let c = h.cmd(false, true, 8192, true);
    h.send(c, Bytes::new());
    let r = h.recv();
    let Header::R2t(r2t) = r[0].header else {
        panic!()
    };
    assert_eq!(r2t.desired_data_transfer_length, 8192);
    // Wrong offset (RFC 7143 section 13.18).
    let d = h.data_out(c.itt, r2t.ttt, 0, 100, false);
    h.send(d, pattern(1000));
    let r = h.recv();
    assert_eq!(r.len(), 1);
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::InvalidPduField));
    // The response waits for the F bit of the sequence.
    let d = h.data_out(c.itt, r2t.ttt, 1, 1000, true);
    h.send(d, pattern(1000));
    let r = h.recv();
    assert_eq!(r.len(), 1);
    let Header::ScsiResponse(s) = r[0].header else {
        panic!()
    };
    assert_eq!(s.status, 2);
    let sense = SenseData::parse(&split_sense(&r[0].data).unwrap().sense).unwrap();
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (SenseKey::AbortedCommand, 0x4b, 0x05)
    );
    assert!(h.events().is_empty());
    // Late Data-Out for the dead task is dropped silently.
    let d = h.data_out(c.itt, r2t.ttt, 2, 2000, true);
    h.send(d, pattern(100));
    assert!(h.recv().is_empty());
}

#[test]
fn short_r2t_answer_is_incorrect_amount_of_data() {
    let mut h = read_harness();
    let c = h.cmd(false, true, 8192, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    let d = h.data_out(c.itt, r2t.ttt, 0, 0, true);
    h.send(d, pattern(4096));
    let r = h.recv();
    let Header::ScsiResponse(s) = r[0].header else {
        panic!()
    };
    assert_eq!(s.status, 2);
    let sense = SenseData::parse(&split_sense(&r[0].data).unwrap().sense).unwrap();
    assert_eq!((sense.asc, sense.ascq), (0x0c, 0x0d));
}

#[test]
fn unsolicited_data_with_initial_r2t_yes_is_unexpected() {
    let mut h = read_harness(); // InitialR2T=Yes (default)
    let c = h.cmd(false, true, 8192, false);
    h.send(c, Bytes::new());
    assert!(h.recv().is_empty());
    let d = h.data_out(c.itt, NO_TAG, 0, 0, true);
    h.send(d, pattern(4096));
    let r = h.recv();
    let Header::ScsiResponse(s) = r[0].header else {
        panic!()
    };
    let sense = SenseData::parse(&split_sense(&r[0].data).unwrap().sense).unwrap();
    assert_eq!((s.status, sense.asc, sense.ascq), (2, 0x0c, 0x0c));
}

#[test]
fn data_out_for_unknown_task_is_rejected() {
    let mut h = read_harness();
    let d = h.data_out(0x999, 5, 0, 0, true);
    h.send(d, pattern(16));
    let r = h.recv();
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::InvalidPduField));
    assert_eq!(&r[0].data[..], &Header::DataOut(d).to_bytes(0, 0)[..]);
}

#[test]
fn oversized_transfer_is_refused_with_check_condition() {
    let mut cfg = config();
    cfg.max_transfer_length = 1 << 20;
    let mut h = Harness::new(cfg);
    h.login(&[]);
    h.events();
    let c = h.cmd(true, false, (1 << 20) + 1, true);
    h.send(c, Bytes::new());
    let r = h.recv();
    let Header::ScsiResponse(s) = r[0].header else {
        panic!()
    };
    let sense = SenseData::parse(&split_sense(&r[0].data).unwrap().sense).unwrap();
    assert_eq!((s.status, sense.key), (2, SenseKey::IllegalRequest));
    assert!(h.events().is_empty());
    assert_eq!(h.s.live_tasks(), 0);
}

#[test]
fn bad_data_digest_on_data_out_rejects_and_fails_the_task() {
    let mut cfg = config();
    cfg.params.data_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    let mut h = Harness::new(cfg);
    h.login(&[("DataDigest", "CRC32C")]);
    h.events();
    let c = h.cmd(false, true, 1024, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    let d = h.data_out(c.itt, r2t.ttt, 0, 0, true);
    let mut b = BytesMut::new();
    Pdu::new(d, pattern(1024))
        .encode(
            &mut b,
            Digests {
                header: false,
                data: true,
            },
        )
        .unwrap();
    let n = b.len();
    b[n - 1] ^= 0xff;
    h.send_raw(&b);
    let r = h.recv();
    assert_eq!(r.len(), 2);
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::DataDigestError));
    let Header::ScsiResponse(s) = r[1].header else {
        panic!()
    };
    let sense = SenseData::parse(&split_sense(&r[1].data).unwrap().sense).unwrap();
    assert_eq!((s.status, sense.asc, sense.ascq), (2, 0x47, 0x05));
    assert!(!h.s.is_closed());
}
