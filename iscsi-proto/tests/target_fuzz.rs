//! The `target_stream` fuzz entry point under proptest: random bytes and
//! mutated valid initiator transcripts never panic the target session.
#![cfg(feature = "fuzzing")]

use bytes::{Bytes, BytesMut};
use iscsi_proto::fuzzing::target_stream;
use iscsi_proto::wire::*;
use proptest::prelude::*;

/// A valid Full Feature Phase transcript (after the login the fuzz entry
/// prepends in mode bit 0): writes with unsolicited data, reads, NOP,
/// TMF, text, SNACK, logout.
fn transcript() -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut sn = 0u32;
    let push = |h: Header, d: Bytes, out: &mut BytesMut| {
        let _ = Pdu::new(h, d).encode(out, Digests::NONE);
    };
    for i in 0..6u32 {
        let write = i % 2 == 0;
        let c = ScsiCommand {
            immediate: i == 5,
            final_pdu: !write,
            read: !write,
            write,
            attr: TaskAttr::Simple,
            lun: 0,
            itt: i,
            expected_data_transfer_length: 6000,
            cmd_sn: Serial(sn),
            exp_stat_sn: Serial(0),
            cdb: [0x28; 16],
        };
        if i != 5 {
            sn += 1;
        }
        push(
            c.into(),
            if write {
                Bytes::from(vec![1u8; 1000])
            } else {
                Bytes::new()
            },
            &mut out,
        );
        if write {
            let d = DataOut {
                final_pdu: true,
                lun: 0,
                itt: i,
                ttt: 0xffff_ffff,
                exp_stat_sn: Serial(0),
                data_sn: Serial(0),
                buffer_offset: 1000,
            };
            push(d.into(), Bytes::from(vec![2u8; 3096]), &mut out);
        }
    }
    let n = NopOut {
        immediate: false,
        lun: 0,
        itt: 50,
        ttt: 0xffff_ffff,
        cmd_sn: Serial(sn),
        exp_stat_sn: Serial(0),
    };
    sn += 1;
    push(n.into(), Bytes::from_static(b"ping"), &mut out);
    let t = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::AbortTask,
        lun: 0,
        itt: 51,
        referenced_task_tag: 0,
        cmd_sn: Serial(sn),
        exp_stat_sn: Serial(0),
        ref_cmd_sn: Serial(0),
        exp_data_sn: Serial(0),
    };
    push(t.into(), Bytes::new(), &mut out);
    let x = TextRequest {
        immediate: true,
        final_pdu: false,
        cont: true,
        lun: 0,
        itt: 52,
        ttt: 0xffff_ffff,
        cmd_sn: Serial(sn),
        exp_stat_sn: Serial(0),
    };
    push(x.into(), Bytes::from_static(b"SendTar"), &mut out);
    let s = SnackRequest {
        snack_type: SnackType::DataR2t,
        lun: 0,
        itt: 1,
        ttt_or_snack_tag: 0,
        exp_stat_sn: Serial(0),
        beg_run: Serial(0),
        run_length: 0,
    };
    push(s.into(), Bytes::new(), &mut out);
    let l = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseSession,
        itt: 53,
        cid: 1,
        cmd_sn: Serial(sn),
        exp_stat_sn: Serial(0),
    };
    push(l.into(), Bytes::new(), &mut out);
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
        target_stream(&data);
    }

    #[test]
    fn mutated_transcripts_never_panic(
        mode in any::<u8>(),
        chunk in any::<u8>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..12),
        cut in any::<usize>(),
    ) {
        let mut t = transcript();
        for (at, x) in flips {
            let n = t.len();
            if let Some(b) = t.get_mut(at % n) {
                *b ^= x;
            }
        }
        let keep = t.len() - cut % (t.len() / 4 + 1);
        t.truncate(keep);
        let mut data = vec![mode | 1, chunk, 7];
        data.extend_from_slice(&t);
        target_stream(&data);
    }
}

#[test]
fn clean_transcript_runs_to_logout() {
    for mode in [1u8, 3, 5, 7, 0x31] {
        for chunk in [0u8, 1, 47, 255] {
            let mut data = vec![mode, chunk, 1];
            data.extend_from_slice(&transcript());
            target_stream(&data);
        }
    }
}
