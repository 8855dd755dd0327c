//! Several outstanding R2Ts per write (RFC 7143 section 13.17
//! MaxOutstandingR2T) with pipelined Data-Out, checked against a model.
//!
//! RFC 7143 section 13.17: "Initiator and target negotiate the maximum
//! number of outstanding R2Ts per task, excluding any implied initial R2T
//! that might be part of that task. An R2T is considered outstanding until
//! the last data PDU (with the F bit set to 1) is transferred." Section
//! 11.7.4: "For output (write) data PDUs, the DataSN is the Data-Out PDU
//! number within the current output sequence. Either the current output
//! sequence is identified by the Initiator Task Tag (for unsolicited data)
//! or it is a data sequence generated for one R2T (for data solicited
//! through R2T)." Section 11.7.1: the F bit "is set to 1 for the last PDU
//! of ... solicited data"; section 11.7.3: the Target Transfer Tag "MUST be
//! copied" from the R2T. Section 13.19: "If DataSequenceInOrder is set to
//! No, Data PDU sequences may be transferred in any order"; "if
//! ErrorRecoveryLevel is not 0 and DataSequenceInOrder is set to Yes then
//! MaxOutstandingR2T MUST be set to 1." Section 13.18 (DataPDUInOrder=Yes):
//! "data PDUs within sequences have to be at continuously increasing
//! addresses and overlays are forbidden."

use std::collections::BTreeMap;

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::scsi::Lun;
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{Header, Residual};
use iscsi_proto::wire::text::parse_pairs;
use proptest::prelude::*;

const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// What each side offers.
#[derive(Debug, Clone)]
struct Setup {
    /// MaxOutstandingR2T offered by the initiator and by the target.
    max_r2t: u16,
    /// The target's MaxRecvDataSegmentLength (the initiator's Data-Out
    /// segment limit).
    target_mrdsl: u32,
    max_burst: u32,
}

fn pair(s: &Setup) -> Pair {
    let cfg = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_max_outstanding_r2t(s.max_r2t);
    let mut cfg = cfg;
    cfg.operational.data_sequence_in_order = false;
    cfg.operational.immediate_data = false;
    cfg.operational.initial_r2t = true;
    cfg.operational.max_burst_length = s.max_burst;
    cfg.operational.first_burst_length = s.max_burst.min(cfg.operational.first_burst_length);
    let mut t = TargetConfig::default();
    t.params.max_outstanding_r2t = s.max_r2t;
    t.params.data_sequence_in_order = false;
    t.params.immediate_data = false;
    t.params.initial_r2t = true;
    t.params.max_burst_length = s.max_burst;
    t.params.first_burst_length = s.max_burst.min(t.params.first_burst_length);
    t.params.max_recv_data_segment_length = s.target_mrdsl;
    let mut p = Pair::new(cfg);
    p.login_with(&mut LoginResponder::new(t, None));
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    let n = p.session.negotiated().unwrap();
    assert_eq!(n.max_outstanding_r2t, s.max_r2t);
    assert!(!n.data_sequence_in_order);
    p
}

/// One R2T of the model: its TTT, range, and the Data-Out seen for it.
#[derive(Debug)]
struct Seq {
    offset: u32,
    len: u32,
    /// Bytes received so far (in order: DataPDUInOrder=Yes).
    got: u32,
    /// The next DataSN expected.
    next_sn: u32,
    done: bool,
}

/// Runs a write of `data` answered by R2Ts over `ranges` (in that order),
/// at most `s.max_r2t` outstanding at a time and `waves[i]` sent in wave i
/// before the initiator's output is read. Checks every Data-Out against the
/// model; returns the bytes the target assembled.
fn run(
    s: &Setup,
    data: &[u8],
    ranges: &[(u32, u32)],
    waves: &[usize],
) -> Result<(), TestCaseError> {
    let mut p = pair(s);
    let buf = Bytes::copy_from_slice(data);
    let task = p
        .session
        .submit(p.now, ScsiCommand::write(Lun::ZERO, WRITE10, buf))
        .unwrap();
    p.flush();
    let cmd = match p.target.expect().header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected the command, got {:?}", h.opcode()),
    };
    prop_assert_eq!(
        p.target.pending(),
        0,
        "no unsolicited data (InitialR2T=Yes)"
    );
    p.target.ack_cmd(cmd.cmd_sn);
    let mut seqs: BTreeMap<u32, Seq> = BTreeMap::new();
    let mut medium = vec![None::<u8>; data.len()];
    let mut next = 0usize; // next range to ask for
    let mut wave = 0usize;
    let mut order: Vec<u32> = Vec::new(); // TTTs in the order data started
    while next < ranges.len() {
        let outstanding = seqs.values().filter(|q| !q.done).count();
        let room = usize::from(s.max_r2t) - outstanding;
        let want = waves.get(wave).copied().unwrap_or(1).clamp(1, room.max(1));
        wave += 1;
        let mut sent = 0;
        while sent < want && next < ranges.len() && outstanding + sent < usize::from(s.max_r2t) {
            let (off, len) = ranges[next];
            let ttt = 0x1000 + next as u32;
            p.target.r2t(cmd.itt, ttt, next as u32, off, len);
            seqs.insert(
                ttt,
                Seq {
                    offset: off,
                    len,
                    got: 0,
                    next_sn: 0,
                    done: false,
                },
            );
            next += 1;
            sent += 1;
        }
        p.deliver();
        while let Some(pdu) = p.target.recv() {
            let d = match pdu.header {
                Header::DataOut(d) => d,
                h => return Err(TestCaseError::fail(format!("unexpected {:?}", h.opcode()))),
            };
            prop_assert_eq!(d.itt, cmd.itt);
            let q = seqs
                .get_mut(&d.ttt)
                .ok_or_else(|| TestCaseError::fail(format!("TTT {:#x} of no R2T", d.ttt)))?;
            prop_assert!(!q.done, "Data-Out after its sequence's F bit");
            if q.got == 0 {
                order.push(d.ttt);
            }
            prop_assert_eq!(d.data_sn.0, q.next_sn, "DataSN per R2T sequence (11.7.4)");
            q.next_sn += 1;
            prop_assert_eq!(d.buffer_offset, q.offset + q.got, "in order (13.18)");
            let n = pdu.data.len() as u32;
            prop_assert!(n > 0 && n <= s.target_mrdsl, "segment {} > MRDSL", n);
            prop_assert!(q.got + n <= q.len, "beyond the R2T's range");
            q.got += n;
            let last = q.got == q.len;
            prop_assert_eq!(
                d.final_pdu,
                last,
                "F bit on the last PDU of the sequence only"
            );
            q.done = last;
            for (i, b) in pdu.data.iter().enumerate() {
                let at = (d.buffer_offset as usize) + i;
                prop_assert!(medium[at].is_none(), "byte {} sent twice", at);
                medium[at] = Some(*b);
            }
        }
        // Pipelined: every R2T sent is answered in full before the
        // target asks for more.
        prop_assert!(seqs.values().all(|q| q.done), "an R2T left unanswered");
    }
    // Sequences started in the order of their R2Ts.
    let mut sorted = order.clone();
    sorted.sort_unstable();
    prop_assert_eq!(order, sorted, "R2Ts answered in order");
    let got: Vec<u8> = medium.iter().map(|b| b.unwrap_or(0)).collect();
    prop_assert!(medium.iter().all(Option::is_some), "a byte never sent");
    prop_assert_eq!(&got[..], data);
    p.target.scsi_response(cmd.itt, 0, Residual::None, None);
    p.deliver();
    prop_assert_eq!(p.completions(task), 1);
    match p.outcome(task) {
        Some(TaskOutcome::Scsi(r)) => prop_assert!(r.is_good()),
        o => return Err(TestCaseError::fail(format!("{o:?}"))),
    }
    Ok(())
}

/// Cuts `[0, len)` into pieces of at most `max` bytes at the given
/// fractions, then orders them by `perm` (DataSequenceInOrder=No).
fn ranges(len: u32, max: u32, cuts: &[u16], perm: &[u16]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut off = 0u32;
    let mut i = 0;
    while off < len {
        let c = u32::from(cuts.get(i).copied().unwrap_or(u16::MAX));
        let n = (1 + c % max).min(len - off);
        out.push((off, n));
        off += n;
        i += 1;
    }
    // A deterministic shuffle from `perm`.
    for (k, r) in perm.iter().enumerate() {
        if out.len() > 1 {
            let a = k % out.len();
            let b = usize::from(*r) % out.len();
            out.swap(a, b);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random R2T orders and sizes, 1 to 8 outstanding: every byte of the
    /// buffer is sent exactly once, in its R2T's range, with the R2T's
    /// TTT, DataSN from 0 per sequence, and the F bit on the last PDU of
    /// each sequence only.
    #[test]
    fn pipelined_data_out_matches_the_model(
        max_r2t in 1u16..=8,
        mrdsl in prop::sample::select(vec![512u32, 1024, 1536, 4096, 8192]),
        burst in prop::sample::select(vec![512u32, 2048, 5000, 16384, 65536]),
        len in 1u32..=40_000,
        cuts in prop::collection::vec(any::<u16>(), 0..64),
        perm in prop::collection::vec(any::<u16>(), 0..64),
        waves in prop::collection::vec(1usize..=8, 0..16),
    ) {
        let s = Setup { max_r2t, target_mrdsl: mrdsl, max_burst: burst };
        let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect();
        let r = ranges(len, burst, &cuts, &perm);
        run(&s, &data, &r, &waves)?;
    }
}

/// Eight R2Ts at once, all outstanding before any Data-Out is read.
#[test]
fn eight_outstanding_r2ts_answered_in_order() {
    let s = Setup {
        max_r2t: 8,
        target_mrdsl: 1024,
        max_burst: 4096,
    };
    let data: Vec<u8> = (0..32768u32).map(|i| (i % 251) as u8).collect();
    let mut r: Vec<(u32, u32)> = (0..8).map(|i| (i * 4096, 4096)).collect();
    r.reverse();
    run(&s, &data, &r, &[8]).unwrap();
}

fn offered(p: &Pair, key: &str) -> Option<String> {
    p.target.log.iter().find_map(|pdu| match pdu.header {
        Header::LoginRequest(_) => parse_pairs(&pdu.data)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v),
        _ => None,
    })
}

fn login_offer(cfg: SessionConfig) -> Pair {
    let mut p = Pair::new(cfg);
    p.login_with(&mut LoginResponder::new(TargetConfig::default(), None));
    p
}

/// The initiator offers more than one outstanding R2T by default (RFC 7143
/// section 13.17 leaves the value to the negotiation; default 1 only when
/// the key is not sent), and the configured value when set.
#[test]
fn max_outstanding_r2t_offer_is_configurable() {
    let base = || SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk");
    let p = login_offer(base());
    assert_eq!(
        offered(&p, "MaxOutstandingR2T").as_deref(),
        Some(
            iscsi_proto::initiator::DEFAULT_MAX_OUTSTANDING_R2T
                .to_string()
                .as_str()
        )
    );
    const { assert!(iscsi_proto::initiator::DEFAULT_MAX_OUTSTANDING_R2T > 1) };
    let p = login_offer(base().with_max_outstanding_r2t(16));
    assert_eq!(offered(&p, "MaxOutstandingR2T").as_deref(), Some("16"));
}

/// RFC 7143 section 13.19: "if ErrorRecoveryLevel is not 0 and
/// DataSequenceInOrder is set to Yes then MaxOutstandingR2T MUST be set to
/// 1": offering ErrorRecoveryLevel 1 with DataSequenceInOrder=Yes offers 1;
/// with DataSequenceInOrder=No the configured value.
#[test]
fn error_recovery_with_data_sequence_in_order_offers_one_r2t() {
    let base = |erl| {
        SessionConfig::new("iqn.2024-01.test:init")
            .with_target("iqn.2024-01.test:disk")
            .with_error_recovery_level(erl)
            .with_max_outstanding_r2t(8)
    };
    let p = login_offer(base(1));
    assert_eq!(offered(&p, "DataSequenceInOrder").as_deref(), Some("Yes"));
    assert_eq!(offered(&p, "MaxOutstandingR2T").as_deref(), Some("1"));
    let mut c = base(2);
    c.operational.data_sequence_in_order = false;
    let p = login_offer(c);
    assert_eq!(offered(&p, "MaxOutstandingR2T").as_deref(), Some("8"));
    let p = login_offer(base(0));
    assert_eq!(offered(&p, "MaxOutstandingR2T").as_deref(), Some("8"));
}
