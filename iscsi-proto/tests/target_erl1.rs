//! ErrorRecoveryLevel 1 on the target (RFC 7143 sections 7.1-7.3, 11.7.2
//! and 11.16): negotiation, every SNACK type, DataACK, retention budget,
//! and recovery R2T for lost or corrupt Data-Out. Each test starts from
//! the RFC sentence it checks.

mod target_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::DigestType;
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{Event as TargetEvent, SessionConfig as TargetConfig};
use iscsi_proto::wire::*;
use target_support::*;

const NO_TAG: u32 = 0xffff_ffff;

fn erl1_config() -> TargetConfig {
    let mut c = config();
    c.params.error_recovery_level = 1;
    c
}

/// Logged in at ERL 1, reads cut in 4096-byte PDUs and 8192-byte bursts,
/// writes solicited only.
fn erl1(cfg: TargetConfig) -> Harness {
    let mut h = Harness::new(cfg);
    let (_, keys) = h.login(&[
        ("ErrorRecoveryLevel", "1"),
        ("MaxRecvDataSegmentLength", "4096"),
        ("MaxBurstLength", "8192"),
        ("FirstBurstLength", "8192"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
    ]);
    assert_eq!(get(&keys, "ErrorRecoveryLevel"), Some("1"));
    assert_eq!(h.s.error_recovery_level(), 1);
    h.events();
    h
}

fn snack(
    t: SnackType,
    itt: u32,
    ttt: u32,
    beg: u32,
    len: u32,
    exp_stat_sn: Serial,
) -> SnackRequest {
    SnackRequest {
        snack_type: t,
        lun: 0,
        itt,
        ttt_or_snack_tag: ttt,
        exp_stat_sn,
        beg_run: Serial(beg),
        run_length: len,
    }
}

fn data_in(p: &Pdu) -> DataIn {
    match p.header {
        Header::DataIn(d) => d,
        ref other => panic!("expected Data-In, got {other:?}"),
    }
}

fn reject_reason(p: &Pdu) -> RejectReason {
    match p.header {
        Header::Reject(r) => r.reason,
        ref other => panic!("expected Reject, got {other:?}"),
    }
}

/// A completed 20000-byte read: its five Data-In PDUs.
fn read(h: &mut Harness) -> (ScsiCommand, Vec<Pdu>) {
    let c = h.cmd(true, false, 20000, true);
    h.send(c, Bytes::new());
    let req = h.command_event();
    h.s.complete(req.task, ScsiStatus::Good, None, pattern(20000))
        .unwrap();
    let r = h.recv();
    assert_eq!(r.len(), 5);
    (c, r)
}

/// Equal but for ExpCmdSN / MaxCmdSN (RFC 7143 section 11.16: replicas
/// "except for the fields ExpCmdSN and MaxCmdSN").
fn same_data_in(a: &Pdu, b: &Pdu) {
    let (mut x, mut y) = (data_in(a), data_in(b));
    x.exp_cmd_sn = Serial(0);
    x.max_cmd_sn = Serial(0);
    y.exp_cmd_sn = Serial(0);
    y.max_cmd_sn = Serial(0);
    assert_eq!(x, y);
    assert_eq!(a.data, b.data);
}

#[test]
fn erl_is_the_lower_offer_and_forces_one_outstanding_r2t() {
    // RFC 7143 section 13.20: ErrorRecoveryLevel, "Result function is
    // Minimum"; section 13.19 (via 13.17): "if ErrorRecoveryLevel is not 0
    // and DataSequenceInOrder is set to Yes then MaxOutstandingR2T MUST be
    // set to 1".
    let mut cfg = erl1_config();
    cfg.params.max_outstanding_r2t = 8;
    let mut h = Harness::new(cfg);
    let (_, keys) = h.login(&[("ErrorRecoveryLevel", "2"), ("MaxOutstandingR2T", "4")]);
    assert_eq!(get(&keys, "ErrorRecoveryLevel"), Some("1"));
    assert_eq!(get(&keys, "MaxOutstandingR2T"), Some("1"));
    // The default configuration stays at level 0 (unchanged behaviour).
    let mut h = Harness::new(config());
    let (_, keys) = h.login(&[("ErrorRecoveryLevel", "2")]);
    assert_eq!(get(&keys, "ErrorRecoveryLevel"), Some("0"));
    let s = snack(SnackType::Status, NO_TAG, NO_TAG, 0, 0, Serial(0));
    h.events();
    h.send(s, Bytes::new());
    let r = h.recv();
    assert_eq!(reject_reason(&r[0]), RejectReason::SnackReject);
}

#[test]
fn data_snack_resends_exact_replicas_of_the_run() {
    // RFC 7143 section 11.16: "The numbered Data-In PDUs, requested by a
    // Data SNACK MUST be delivered as exact replicas of the ones that the
    // target transmitted originally except for the fields ExpCmdSN and
    // MaxCmdSN".
    let mut h = erl1(erl1_config());
    let (c, orig) = read(&mut h);
    let stat = data_in(&orig[4]).status.unwrap().stat_sn;
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 2, 2, stat),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 2);
    same_data_in(&r[0], &orig[2]);
    same_data_in(&r[1], &orig[3]);
    // RunLength 0: "all ... PDUs carrying the numbers equal to or greater
    // than BegRun" (section 11.16.7), status included, same StatSN.
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 3, 0, stat),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 2);
    same_data_in(&r[0], &orig[3]);
    same_data_in(&r[1], &orig[4]);
    // "Any SNACK that requests a numbered-response, Data, or R2T that was
    // not sent by the target ... MUST be rejected with a reason code of
    // 'Protocol error'."
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 5, 1, stat),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(reject_reason(&r[0]), RejectReason::ProtocolError);
    assert!(!h.s.is_closed());
}

#[test]
fn status_snack_resends_the_numbered_response_until_acknowledged() {
    // RFC 7143 section 11.16.1: "1-Status SNACK - requesting retransmission
    // of one or more numbered responses"; section 11.16: "... or was
    // already acknowledged by the initiator, MUST be rejected with a reason
    // code of 'Protocol error'".
    let mut h = erl1(erl1_config());
    // A write ends with a SCSI Response (not phase-collapsed).
    let c = h.cmd(false, true, 512, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    h.send(h.data_out(c.itt, r2t.ttt, 0, 0, true), pattern(512));
    let req = h.command_event();
    h.s.complete_write(req.task, ScsiStatus::Good, None, 512)
        .unwrap();
    let resp = h.recv().remove(0);
    let Header::ScsiResponse(first) = resp.header else {
        panic!()
    };
    let st = first.stat_sn;
    h.send(
        snack(SnackType::Status, NO_TAG, NO_TAG, st.0, 1, st),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 1);
    let Header::ScsiResponse(again) = r[0].header else {
        panic!("{r:?}")
    };
    assert_eq!(
        (again.stat_sn, again.itt, again.status),
        (st, c.itt, first.status)
    );
    assert_eq!(r[0].data, resp.data);
    assert_eq!(h.s.retained().0, 1);
    // A NOP-Out acknowledging it (ExpStatSN = StatSN + 1) frees it ...
    h.send(
        NopOut {
            immediate: true,
            lun: 0,
            itt: NO_TAG,
            ttt: NO_TAG,
            cmd_sn: h.cmd_sn,
            exp_stat_sn: st.next(),
        },
        Bytes::new(),
    );
    assert!(h.recv().is_empty());
    assert_eq!(h.s.retained().0, 0);
    // ... and a Status SNACK for it is a protocol error now.
    h.send(
        snack(SnackType::Status, NO_TAG, NO_TAG, st.0, 1, st.next()),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(reject_reason(&r[0]), RejectReason::ProtocolError);
}

#[test]
fn data_ack_frees_the_retained_read_data() {
    // RFC 7143 section 11.7.2: the target "MAY only set the A bit to 1 once
    // every MaxBurstLength bytes, or on the last Data-In PDU"; section
    // 11.7.4: TTT and LUN "MUST be provided by the target if the A bit is
    // set to 1"; section 11.16.2: "The DataACK is used to free resources
    // at the target"; "An initiator MUST NOT request retransmission for any
    // data it had already acknowledged."
    let mut cfg = erl1_config();
    cfg.request_data_ack = true;
    let mut h = erl1(cfg);
    let (c, r) = read(&mut h);
    let acks: Vec<DataIn> = r.iter().map(data_in).filter(|d| d.ack).collect();
    assert_eq!(
        r.iter().map(|p| data_in(p).ack).collect::<Vec<_>>(),
        r.iter().map(|p| data_in(p).final_pdu).collect::<Vec<_>>()
    );
    assert_eq!(acks.len(), 3);
    let ttt = acks[0].ttt;
    assert_ne!(ttt, NO_TAG);
    assert!(acks.iter().all(|d| d.ttt == ttt));
    assert_eq!(h.s.retained().2, 20000);
    let stat = data_in(&r[4]).status.unwrap().stat_sn;
    // DataACK up to DataSN 2 (BegRun = next expected): the data stays
    // (part of it is still unacknowledged) and DataSN 1 is acknowledged.
    h.send(
        snack(SnackType::DataAck, NO_TAG, ttt, 2, 0, stat),
        Bytes::new(),
    );
    assert!(h.recv().is_empty());
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 1, 1, stat),
        Bytes::new(),
    );
    assert_eq!(reject_reason(&h.recv()[0]), RejectReason::ProtocolError);
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 2, 1, stat),
        Bytes::new(),
    );
    same_data_in(&h.recv()[0], &r[2]);
    // DataACK of everything: the data is freed.
    h.send(
        snack(SnackType::DataAck, NO_TAG, ttt, 5, 0, stat),
        Bytes::new(),
    );
    assert!(h.recv().is_empty());
    assert_eq!(h.s.retained().2, 0);
}

#[test]
fn r_data_snack_resegments_and_tags_a_new_response() {
    // RFC 7143 section 11.16.3: "Their DataSN starts with the BegRun of the
    // last DataACK received by the target if any was received; otherwise
    // it starts with 0"; "A target that has received a R-Data SNACK MUST
    // return a SCSI Response that contains a copy of the SNACK Tag ...
    // if it ... had the status included in the last Data-In PDU, it must
    // send a new SCSI Response PDU ... all SCSI responses must carry the
    // same StatSN".
    let mut h = erl1(erl1_config());
    let (c, orig) = read(&mut h);
    let st = data_in(&orig[4]).status.unwrap();
    h.send(
        snack(SnackType::RData, c.itt, 77, 0, 0, st.stat_sn),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 6, "{r:?}");
    let mut all = BytesMut::new();
    for (i, p) in r[..5].iter().enumerate() {
        let d = data_in(p);
        assert_eq!(d.data_sn, Serial(i as u32));
        assert!(d.status.is_none());
        all.extend_from_slice(&p.data);
    }
    assert_eq!(all.freeze(), pattern(20000));
    let Header::ScsiResponse(resp) = r[5].header else {
        panic!()
    };
    assert_eq!(
        (resp.snack_tag, resp.stat_sn, resp.status, resp.exp_data_sn),
        (77, st.stat_sn, 0, Serial(5))
    );
    // A Status SNACK now gets "the SCSI Response with the latest content".
    h.send(
        snack(
            SnackType::Status,
            NO_TAG,
            NO_TAG,
            st.stat_sn.0,
            1,
            st.stat_sn,
        ),
        Bytes::new(),
    );
    let r = h.recv();
    assert!(matches!(r[0].header, Header::ScsiResponse(x) if x.snack_tag == 77));
    // "this field MUST contain a value that is different from 0 or
    // 0xffffffff": else a protocol error.
    h.send(
        snack(SnackType::RData, c.itt, 0, 0, 0, st.stat_sn),
        Bytes::new(),
    );
    assert_eq!(reject_reason(&h.recv()[0]), RejectReason::ProtocolError);
}

#[test]
fn snack_beyond_the_retention_budget_is_rejected() {
    // RFC 7143 section 7.2.1 (digest errors, initiator side): "In response
    // to the SNACK, the target MUST either resend the data PDU or reject
    // the SNACK with a Reject PDU with a reason code of 'SNACK reject'";
    // the retention is bounded by the configured budget.
    let mut cfg = erl1_config();
    cfg.retention_budget = 10_000;
    let mut h = erl1(cfg);
    let (c, r) = read(&mut h);
    assert_eq!(h.s.retained().2, 0, "20000 bytes do not fit in 10000");
    let stat = data_in(&r[4]).status.unwrap().stat_sn;
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 0, 1, stat),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(reject_reason(&r[0]), RejectReason::SnackReject);
    assert!(!h.s.is_closed());
}

#[test]
fn r2t_snack_resends_the_r2t_with_the_current_stat_sn() {
    // RFC 7143 section 11.16: "R2T(s) requested by SNACK MUST also carry
    // the current value of StatSN", otherwise exact replicas.
    let mut h = erl1(erl1_config());
    let c = h.cmd(false, true, 4096, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 0, 1, Serial(0)),
        Bytes::new(),
    );
    let r = h.recv();
    assert_eq!(r.len(), 1);
    let Header::R2t(again) = r[0].header else {
        panic!("{r:?}")
    };
    assert_eq!(
        (
            again.ttt,
            again.r2t_sn,
            again.buffer_offset,
            again.desired_data_transfer_length
        ),
        (r2t.ttt, r2t.r2t_sn, 0, 4096)
    );
    assert_eq!(again.stat_sn, h.s.stat_sn());
    // R2TSN 1 was never sent: protocol error.
    h.send(
        snack(SnackType::DataR2t, c.itt, NO_TAG, 1, 1, Serial(0)),
        Bytes::new(),
    );
    assert_eq!(reject_reason(&h.recv()[0]), RejectReason::ProtocolError);
    // The burst still completes the write.
    h.send(h.data_out(c.itt, r2t.ttt, 0, 0, true), pattern(4096));
    assert_eq!(h.command_event().data_out, pattern(4096));
}

#[test]
fn data_sn_gap_is_recovered_by_a_recovery_r2t() {
    // RFC 7143 section 7.3: "When a target receives a data PDU with an out
    // of order DataSN, it means that the target must have hit a header or
    // payload digest error on at least one of the earlier data PDUs. The
    // target MUST address these implied digest errors" (section 7.2.2: "a)
    // Request retransmission with a recovery R2T"); a recovery R2T "carries
    // the next unused R2TSN, but requests all or part of the data burst
    // that an earlier R2T ... had already requested" (section 2.2).
    let mut h = erl1(erl1_config());
    let c = h.cmd(false, true, 8192, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    assert_eq!(r2t.desired_data_transfer_length, 8192);
    let data = pattern(8192);
    // DataSN 0 is "lost"; DataSN 1 (F) arrives.
    h.send(
        h.data_out(c.itt, r2t.ttt, 1, 4096, true),
        data.slice(4096..),
    );
    let r = h.recv();
    assert_eq!(r.len(), 1, "no Reject, only the recovery R2T: {r:?}");
    let Header::R2t(rec) = r[0].header else {
        panic!("{r:?}")
    };
    assert_eq!(rec.r2t_sn, r2t.r2t_sn.next());
    assert_eq!(
        (rec.buffer_offset, rec.desired_data_transfer_length),
        (0, 8192)
    );
    assert_ne!(rec.ttt, r2t.ttt);
    assert!(h.events().is_empty());
    h.send(h.data_out(c.itt, rec.ttt, 0, 0, false), data.slice(..4096));
    h.send(
        h.data_out(c.itt, rec.ttt, 1, 4096, true),
        data.slice(4096..),
    );
    assert_eq!(h.command_event().data_out, data);
    assert_eq!(h.s.rejects_sent(), 0);
}

#[test]
fn data_digest_error_on_data_out_is_recovered_by_a_recovery_r2t() {
    // RFC 7143 section 7.2.2 (3720 6.7): "When a target receives any iSCSI
    // PDU with a payload digest error, it MUST answer with a Reject PDU
    // with a reason code of Data-Digest-Error and discard the PDU. If the
    // discarded PDU is a solicited or unsolicited iSCSI data PDU ... the
    // target MUST do one of the following: a) Request retransmission with
    // a recovery R2T."
    let mut cfg = erl1_config();
    cfg.params.data_digest = vec![DigestType::Crc32c];
    let mut h = Harness::new(cfg);
    h.login(&[
        ("ErrorRecoveryLevel", "1"),
        ("DataDigest", "CRC32C"),
        ("MaxBurstLength", "8192"),
        ("FirstBurstLength", "8192"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
    ]);
    h.events();
    let c = h.cmd(false, true, 8192, true);
    h.send(c, Bytes::new());
    let Header::R2t(r2t) = h.recv()[0].header else {
        panic!()
    };
    let data = pattern(8192);
    h.send(h.data_out(c.itt, r2t.ttt, 0, 0, false), data.slice(..4096));
    let mut b = BytesMut::new();
    Pdu::new(
        h.data_out(c.itt, r2t.ttt, 1, 4096, true),
        data.slice(4096..),
    )
    .encode(&mut b, h.tx_digests)
    .unwrap();
    let n = b.len();
    b[n - 1] ^= 0xff;
    h.send_raw(&b);
    let r = h.recv();
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(reject_reason(&r[0]), RejectReason::DataDigestError);
    let Header::R2t(rec) = r[1].header else {
        panic!("{r:?}")
    };
    // Only the part lost is asked again.
    assert_eq!(
        (rec.buffer_offset, rec.desired_data_transfer_length),
        (4096, 4096)
    );
    h.send(
        h.data_out(c.itt, rec.ttt, 0, 4096, true),
        data.slice(4096..),
    );
    let req = h.command_event();
    assert_eq!(req.data_out, data);
    assert!(!h.s.is_closed());
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, TargetEvent::Closed { .. })));
}
