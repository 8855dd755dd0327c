//! R-Data SNACK (RFC 7143 section 11.16.3): "If the initiator
//! MaxRecvDataSegmentLength changed between the original transmission and
//! the time the initiator requests retransmission, the initiator MUST issue
//! a R-Data SNACK. With R-Data SNACK, the initiator indicates that it
//! discards all the unacknowledged data and expects the target to resend
//! it. It also expects resegmentation. ... Their DataSN starts with the
//! BegRun of the last DataACK received by the target if any was received;
//! otherwise it starts with 0". Section 11.16.5: the SNACK Tag "MUST
//! contain a value that is different from 0 or 0xffffffff"; 11.16.6:
//! "BegRun MUST be 0 for a R-Data SNACK"; the target returns "a SCSI
//! Response that contains a copy of the SNACK Tag".

use bytes::Bytes;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::login::negotiation::{DigestType, TargetConfig};
use iscsi_proto::scsi::Lun;
use iscsi_proto::testing::{LoginResponder, Pair, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::Serial;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0];

fn erl1() -> Pair {
    let mut c = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(1);
    c.operational.data_digest = vec![DigestType::Crc32c];
    c.operational.max_recv_data_segment_length = 1024;
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = 1;
    t.params.data_digest = vec![DigestType::Crc32c, DigestType::None];
    let mut p = Pair::new(c);
    p.login_with(&mut LoginResponder::new(t, None));
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

fn data_in(
    t: &mut ScriptedTarget,
    itt: u32,
    sn: u32,
    off: u32,
    status: bool,
    ack: bool,
) -> w::DataIn {
    let status = status.then(|| w::DataInStatus {
        status: 0,
        stat_sn: t.next_stat_sn(),
        residual: Residual::None,
    });
    w::DataIn {
        final_pdu: status.is_some() || ack,
        ack,
        lun: 0,
        itt,
        ttt: if ack { 0x77 } else { RESERVED },
        exp_cmd_sn: t.exp_cmd_sn,
        max_cmd_sn: t.max_cmd_sn,
        data_sn: Serial(sn),
        buffer_offset: off,
        status,
    }
}

/// Our MaxRecvDataSegmentLength goes from 1024 to 2048 while a read is
/// under way; a later Data-In fails its digest: R-Data SNACK, and the
/// resegmented data (from the last DataACK, here DataSN 1) completes the
/// read with every byte delivered once.
fn run(with_ack: bool) {
    let mut p = erl1();
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
    let task = p
        .session
        .submit(p.now, ScsiCommand::read(Lun::ZERO, READ10, 4096))
        .unwrap();
    p.flush();
    let Header::ScsiCommand(c) = p.target.expect().header else {
        panic!("the command")
    };
    p.target.ack_cmd(c.cmd_sn);
    let h0 = data_in(&mut p.target, c.itt, 0, 0, false, with_ack);
    p.target.send(h0, Bytes::copy_from_slice(&data[..1024]));
    p.deliver();
    let acked = if with_ack {
        let Header::SnackRequest(s) = p.target.expect().header else {
            panic!("DataACK")
        };
        assert_eq!(
            (s.snack_type, s.beg_run),
            (w::SnackType::DataAck, Serial(1))
        );
        1
    } else {
        0
    };
    // Renegotiate our MaxRecvDataSegmentLength (RFC 7143 section 13.12).
    let neg = p
        .session
        .declare_max_recv_data_segment_length(p.now, 2048)
        .unwrap();
    p.flush();
    let Header::TextRequest(tr) = p.target.expect().header else {
        panic!("Text Request")
    };
    p.target.ack_cmd(tr.cmd_sn);
    p.target.text_response(tr.itt, true, false, RESERVED, b"");
    p.deliver();
    assert!(
        matches!(p.outcome(neg), Some(TaskOutcome::Negotiated)),
        "{:?}",
        p.events
    );
    // Data-In 1 (sent before the change) fails its data digest.
    let h1 = data_in(&mut p.target, c.itt, 1, 1024, false, false);
    p.target
        .send_corrupt(h1, Bytes::copy_from_slice(&data[1024..2048]));
    p.deliver();
    let Header::SnackRequest(s) = p.target.expect().header else {
        panic!("a SNACK")
    };
    assert_eq!(s.snack_type, w::SnackType::RData, "section 11.16.3");
    assert_eq!(s.itt, c.itt, "section 11.16.4");
    assert!(
        s.ttt_or_snack_tag != 0 && s.ttt_or_snack_tag != RESERVED,
        "11.16.5"
    );
    assert_eq!((s.beg_run, s.run_length), (Serial(0), 0), "11.16.6");
    assert!(p.outcome(task).is_none());
    // The target resends from the last DataACK, resegmented at 2048.
    let from = acked * 1024;
    let mut sn = acked;
    let mut off = from;
    while off < 4096 {
        let n = 2048.min(4096 - off);
        let h = data_in(&mut p.target, c.itt, sn, off, false, false);
        p.target.send(
            h,
            Bytes::copy_from_slice(&data[off as usize..(off + n) as usize]),
        );
        off += n;
        sn += 1;
    }
    let r = w::ScsiResponse {
        response: w::ScsiResponseCode::CommandCompleted,
        status: 0,
        itt: c.itt,
        snack_tag: s.ttt_or_snack_tag,
        stat_sn: p.target.next_stat_sn(),
        exp_cmd_sn: p.target.exp_cmd_sn,
        max_cmd_sn: p.target.max_cmd_sn,
        exp_data_sn: Serial(sn),
        bidi_read_residual: Residual::None,
        residual: Residual::None,
    };
    p.target.send(r, Bytes::new());
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert_eq!(p.read_data(task), data, "every byte once, in order");
    match p.outcome(task) {
        Some(TaskOutcome::Scsi(r)) => assert!(r.is_good(), "{r:?}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(p.connects.len(), 1);
    assert!(!p.events.iter().any(|e| matches!(e, Event::Closed(_))));
}

#[test]
fn r_data_snack_after_our_max_recv_data_segment_length_changed() {
    run(false);
}

#[test]
fn r_data_snack_resumes_from_the_last_data_ack() {
    run(true);
}
