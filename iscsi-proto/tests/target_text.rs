//! Target: key negotiation in a Text Request during the Full Feature Phase
//! (RFC 7143 sections 6.2, 11.10, 11.11, 13 and 13.12).
//!
//! Each test quotes the rule it checks.

mod target_support;

use bytes::Bytes;
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::wire::*;
use target_support::*;

fn ffp() -> Harness {
    let mut h = Harness::new(config());
    h.login(&[]);
    h.events();
    h
}

/// Sends one complete Text Request (F=1, new exchange) and returns the
/// key=value pairs of the single final Text Response.
fn text(h: &mut Harness, keys: &[(&str, &str)]) -> Vec<(String, String)> {
    let itt = h.next_itt();
    let req = TextRequest {
        immediate: true,
        final_pdu: true,
        cont: false,
        lun: 0,
        itt,
        ttt: 0xffff_ffff,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(req, kv(keys));
    let out = h.recv();
    assert_eq!(out.len(), 1, "{out:?}");
    let Header::TextResponse(r) = out[0].header else {
        panic!("expected a Text Response, got {:?}", out[0].header)
    };
    assert!(r.final_pdu && !r.cont);
    assert_eq!(r.itt, itt);
    pairs(&out[0].data)
}

/// Runs a read of `len` bytes and returns the Data-In segment lengths.
fn read_segments(h: &mut Harness, len: u32) -> Vec<usize> {
    let c = h.cmd(true, false, len, true);
    h.send(c, Bytes::new());
    let t = h.task_of();
    h.s.complete(t, ScsiStatus::Good, None, pattern(len as usize))
        .unwrap();
    let out = h.recv();
    let segs: Vec<usize> = out
        .iter()
        .filter(|p| matches!(p.header, Header::DataIn(_)))
        .map(|p| p.data.len())
        .collect();
    assert_eq!(segs.iter().sum::<usize>(), len as usize);
    segs
}

/// RFC 7143 section 13.12: MaxRecvDataSegmentLength is "Use: ALL,
/// Declarative" ("The initiator or target declares the maximum data
/// segment length in bytes it can receive in an iSCSI PDU"), so it may be
/// declared again in a Text Request in the Full Feature Phase, and "The
/// transmitter (initiator or target) is required to send PDUs with a data
/// segment that does not exceed MaxRecvDataSegmentLength of the receiver."
/// After the initiator declares 1024, a 4096-byte read comes in Data-In
/// segments of at most 1024 bytes; the target declares its own value in
/// the response.
#[test]
fn declared_max_recv_data_segment_length_cuts_data_in() {
    let mut h = ffp();
    let before = read_segments(&mut h, 4096);
    assert_eq!(before, vec![4096], "8192 (the default) before");
    let ours =
        h.s.negotiated()
            .unwrap()
            .target_max_recv_data_segment_length
            .to_string();
    let answer = text(&mut h, &[("MaxRecvDataSegmentLength", "1024")]);
    assert_eq!(
        answer,
        vec![("MaxRecvDataSegmentLength".to_owned(), ours)],
        "the target declares its own value, and rejects nothing"
    );
    let segs = read_segments(&mut h, 4096);
    assert_eq!(segs, vec![1024; 4]);
    // NOP-In echo data is cut to the new limit too (RFC 7143 section 11.19).
    let itt = h.next_itt();
    let ping = NopOut {
        immediate: true,
        lun: 0,
        itt,
        ttt: 0xffff_ffff,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(ping, pattern(4000));
    let out = h.recv();
    assert_eq!(out[0].data.len(), 1024);
    // A larger declaration raises it again.
    text(&mut h, &[("MaxRecvDataSegmentLength", "2048")]);
    assert_eq!(read_segments(&mut h, 4096), vec![2048; 2]);
}

/// RFC 7143 section 13.12: "<numerical-value-512-to-(2**24 - 1)>"; RFC 7143
/// section 6.2: "Proposing a value not admissible (e.g., not within the
/// specified bounds) MAY be answered with the constant "Reject"", and "If
/// the acceptor sends "Reject" as an answer, the negotiated key is left at
/// its current value".
#[test]
fn out_of_range_max_recv_data_segment_length_is_rejected() {
    let mut h = ffp();
    for bad in ["100", "16777216", "x"] {
        let answer = text(&mut h, &[("MaxRecvDataSegmentLength", bad)]);
        assert_eq!(get(&answer, "MaxRecvDataSegmentLength"), Some("Reject"));
        assert_eq!(read_segments(&mut h, 4096), vec![4096], "{bad}");
    }
}

/// RFC 7143 section 13 ("Use: LO" — "Leading Only: can be used only on the
/// leading connection's login"; "Use: IO" — "Initialize Only: can be used
/// only in the Login Phase"): such keys are not negotiable in a Full
/// Feature Phase Text Request; RFC 7143 section 6.2: an acceptor that "is
/// not allowed to use any of the proposed options ... may use the constant
/// "Reject"", and "the negotiated key is left at its current value".
/// Unknown keys: "the answer for a key not understood MUST be
/// key=NotUnderstood".
#[test]
fn login_only_keys_are_rejected_in_the_full_feature_phase() {
    let mut h = ffp();
    let mbl = h.s.negotiated().unwrap().max_burst_length;
    let answer = text(
        &mut h,
        &[
            ("MaxBurstLength", "512"),          // LO
            ("HeaderDigest", "CRC32C"),         // IO
            ("MaxConnections", "4"),            // LO
            ("InitiatorName", "iqn.2024-01.x"), // IO
            ("X-com.example.foo", "1"),
        ],
    );
    for k in [
        "MaxBurstLength",
        "HeaderDigest",
        "MaxConnections",
        "InitiatorName",
    ] {
        assert_eq!(get(&answer, k), Some("Reject"), "{k}: {answer:?}");
    }
    assert_eq!(get(&answer, "X-com.example.foo"), Some("NotUnderstood"));
    assert_eq!(h.s.negotiated().unwrap().max_burst_length, mbl);
    assert_eq!(h.s.initiator_name(), Some(INITIATOR));
}

/// RFC 7143 section 13.7: InitiatorAlias is "Use: ALL, Senders: Initiator,
/// Declarative": a declaration in the Full Feature Phase is accepted; a
/// declarative key needs no answer (section 6.2: "the responder ... is not
/// required to respond" to a declaration), so neither Reject nor
/// NotUnderstood comes back.
#[test]
fn initiator_alias_may_be_declared_in_the_full_feature_phase() {
    let mut h = ffp();
    let answer = text(&mut h, &[("InitiatorAlias", "web-01")]);
    assert_eq!(get(&answer, "InitiatorAlias"), None, "{answer:?}");
}
