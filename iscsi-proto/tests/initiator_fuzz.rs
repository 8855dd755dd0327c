//! The initiator fuzz entry points under proptest (run with
//! `--features fuzzing`): arbitrary bytes and arbitrary bytes spliced into
//! well-formed target PDUs never panic.
#![cfg(feature = "fuzzing")]

use bytes::{Bytes, BytesMut};
use iscsi_proto::fuzzing::{initiator_stream, login_initiator};
use iscsi_proto::wire::frame::{Digests, Pdu};
use iscsi_proto::wire::pdu::{self as w, Isid, Residual, Stage};
use iscsi_proto::wire::Serial;
use proptest::prelude::*;

fn enc(h: impl Into<w::Header>, data: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    Pdu::new(h, Bytes::copy_from_slice(data))
        .encode(&mut b, Digests::NONE)
        .unwrap();
    b.to_vec()
}

/// Well-formed target PDUs a fuzzer would find slowly.
fn target_pdus(itt: u32, sn: u32) -> Vec<Vec<u8>> {
    vec![
        enc(
            w::DataIn {
                final_pdu: true,
                ack: false,
                lun: 0,
                itt,
                ttt: u32::MAX,
                exp_cmd_sn: Serial(sn),
                max_cmd_sn: Serial(sn.wrapping_add(8)),
                data_sn: Serial(0),
                buffer_offset: 0,
                status: Some(w::DataInStatus {
                    status: 0,
                    stat_sn: Serial(0x11),
                    residual: Residual::Underflow(3),
                }),
            },
            b"abcd",
        ),
        enc(
            w::R2t {
                lun: 0,
                itt,
                ttt: 9,
                stat_sn: Serial(0x11),
                exp_cmd_sn: Serial(sn),
                max_cmd_sn: Serial(sn.wrapping_add(8)),
                r2t_sn: Serial(0),
                buffer_offset: 0,
                desired_data_transfer_length: 3000,
            },
            b"",
        ),
        enc(
            w::NopIn {
                lun: 0,
                itt: u32::MAX,
                ttt: 5,
                stat_sn: Serial(0x11),
                exp_cmd_sn: Serial(sn),
                max_cmd_sn: Serial(sn.wrapping_add(8)),
            },
            b"ping",
        ),
        enc(
            w::AsyncMessage {
                lun: 0,
                stat_sn: Serial(0x11),
                exp_cmd_sn: Serial(sn),
                max_cmd_sn: Serial(sn.wrapping_add(8)),
                event: w::AsyncEvent::from_u8((itt % 5) as u8),
                vcode: 0,
                parameter1: 0,
                parameter2: 1,
                parameter3: 1,
            },
            b"",
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn login_initiator_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        login_initiator(&data);
    }

    #[test]
    fn login_initiator_with_a_plausible_response(
        ctrl in any::<u8>(),
        class in 0u8..4,
        detail in 0u8..4,
        flags in any::<u8>(),
        text in prop::collection::vec(any::<u8>(), 0..200),
        tail in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let resp = w::LoginResponse {
            transit: flags & 1 != 0,
            cont: flags & 2 != 0 && flags & 1 == 0,
            csg: if flags & 4 != 0 { Stage::Security } else { Stage::Operational },
            nsg: if flags & 8 != 0 { Stage::FullFeature } else { Stage::Operational },
            version_max: 0,
            version_active: 0,
            isid: Isid([0; 6]),
            tsih: u16::from(flags),
            itt: 0,
            stat_sn: Serial(1),
            exp_cmd_sn: Serial(1),
            max_cmd_sn: Serial(8),
            status_class: class,
            status_detail: detail,
        };
        let mut data = vec![ctrl | 0x80];
        data.extend(enc(resp, &text));
        data.extend(tail);
        login_initiator(&data);
    }

    #[test]
    fn initiator_stream_never_panics(data in prop::collection::vec(any::<u8>(), 0..1500)) {
        initiator_stream(&data);
    }

    #[test]
    fn initiator_stream_with_spliced_pdus(
        ctrl in any::<u8>(),
        ops in prop::collection::vec((any::<u8>(), 0usize..4, any::<u8>()), 1..40),
    ) {
        // Opcode nibbles 0..=5 feed the next (arg+1)*13 bytes; we feed
        // whole PDUs by choosing the length, then mutate one byte.
        let mut data = vec![ctrl];
        for (op, which, mutate) in ops {
            if op & 1 == 0 {
                let pdus = target_pdus(u32::from(op >> 1) % 3, 1);
                let mut pdu = pdus[which].clone();
                if mutate & 1 == 1 {
                    let i = usize::from(mutate) % pdu.len();
                    pdu[i] ^= mutate;
                }
                // Feed in 13-byte steps (op 0x00) until the PDU is in.
                for chunk in pdu.chunks(13) {
                    data.push(0x00);
                    data.extend_from_slice(chunk);
                    data.extend(std::iter::repeat_n(0u8, 13 - chunk.len()));
                }
            } else {
                data.push(op);
            }
        }
        initiator_stream(&data);
    }
}
