//! proptest strategies for valid wire `Repr`s, shared by the `wire_*` tests
//! (and a model for the fuzz/roundtrip harness).
#![allow(dead_code)]

use bytes::Bytes;
use iscsi_proto::wire::*;
use proptest::prelude::*;

pub fn serial() -> impl Strategy<Value = Serial> {
    any::<u32>().prop_map(Serial)
}

pub fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Security),
        Just(Stage::Operational),
        Just(Stage::FullFeature)
    ]
}

pub fn residual() -> impl Strategy<Value = Residual> {
    prop_oneof![
        Just(Residual::None),
        any::<u32>().prop_map(Residual::Overflow),
        any::<u32>().prop_map(Residual::Underflow),
    ]
}

pub fn isid() -> impl Strategy<Value = Isid> {
    any::<[u8; 6]>().prop_map(Isid)
}

pub fn nop_out() -> impl Strategy<Value = NopOut> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        serial(),
        serial(),
    )
        .prop_map(|(immediate, lun, itt, ttt, cmd_sn, exp_stat_sn)| NopOut {
            // RFC 7143 section 11.18.1: ITT 0xffffffff requires I=1.
            immediate: immediate || itt == u32::MAX,
            lun,
            itt,
            ttt,
            cmd_sn,
            exp_stat_sn,
        })
}

pub fn scsi_command() -> impl Strategy<Value = ScsiCommand> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..8,
        ),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            serial(),
            serial(),
            any::<[u8; 16]>(),
        ),
    )
        .prop_map(
            |(
                (immediate, final_pdu, read, write, attr),
                (lun, itt, edtl, cmd_sn, exp_stat_sn, cdb),
            )| {
                ScsiCommand {
                    immediate,
                    final_pdu,
                    read,
                    write,
                    attr: TaskAttr::from_u8(attr),
                    lun,
                    itt,
                    expected_data_transfer_length: edtl,
                    cmd_sn,
                    exp_stat_sn,
                    cdb,
                }
            },
        )
}

pub fn task_mgmt_request() -> impl Strategy<Value = TaskMgmtRequest> {
    (
        (
            any::<bool>(),
            0u8..128,
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (serial(), serial(), serial(), serial()),
    )
        .prop_map(
            |((immediate, f, lun, itt, rtt), (cmd_sn, exp_stat_sn, ref_cmd_sn, exp_data_sn))| {
                TaskMgmtRequest {
                    immediate,
                    function: TmfFunction::from_u8(f),
                    lun,
                    itt,
                    referenced_task_tag: rtt,
                    cmd_sn,
                    exp_stat_sn,
                    ref_cmd_sn,
                    exp_data_sn,
                }
            },
        )
}

pub fn login_request() -> impl Strategy<Value = LoginRequest> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            stage(),
            stage(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            isid(),
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            serial(),
            serial(),
        ),
    )
        .prop_map(
            |(
                (transit, cont, csg, nsg, version_max, version_min),
                (isid, tsih, itt, cid, cmd_sn, exp_stat_sn),
            )| {
                LoginRequest {
                    transit,
                    // RFC 7143 section 11.12.2: C=1 requires T=0.
                    cont: cont && !transit,
                    csg,
                    nsg,
                    version_max,
                    version_min,
                    isid,
                    tsih,
                    itt,
                    cid,
                    cmd_sn,
                    exp_stat_sn,
                }
            },
        )
}

pub fn text_request() -> impl Strategy<Value = TextRequest> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>()),
        (any::<u32>(), any::<u32>(), serial(), serial()),
    )
        .prop_map(
            |((immediate, final_pdu, cont, lun), (itt, ttt, cmd_sn, exp_stat_sn))| TextRequest {
                immediate,
                final_pdu,
                cont: cont && !final_pdu,
                lun,
                itt,
                ttt,
                cmd_sn,
                exp_stat_sn,
            },
        )
}

pub fn data_out() -> impl Strategy<Value = DataOut> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        serial(),
        serial(),
        any::<u32>(),
    )
        .prop_map(
            |(final_pdu, lun, itt, ttt, exp_stat_sn, data_sn, buffer_offset)| DataOut {
                final_pdu,
                lun,
                itt,
                ttt,
                exp_stat_sn,
                data_sn,
                buffer_offset,
            },
        )
}

pub fn logout_request() -> impl Strategy<Value = LogoutRequest> {
    (
        any::<bool>(),
        0u8..128,
        any::<u32>(),
        any::<u16>(),
        serial(),
        serial(),
    )
        .prop_map(
            |(immediate, r, itt, cid, cmd_sn, exp_stat_sn)| LogoutRequest {
                immediate,
                reason: LogoutReason::from_u8(r),
                itt,
                cid,
                cmd_sn,
                exp_stat_sn,
            },
        )
}

pub fn snack_request() -> impl Strategy<Value = SnackRequest> {
    (
        0u8..16,
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        serial(),
        serial(),
        any::<u32>(),
    )
        .prop_map(
            |(t, lun, itt, tag, exp_stat_sn, beg_run, run_length)| SnackRequest {
                snack_type: SnackType::from_u8(t),
                lun,
                itt,
                ttt_or_snack_tag: tag,
                exp_stat_sn,
                beg_run,
                run_length,
            },
        )
}

pub fn nop_in() -> impl Strategy<Value = NopIn> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        serial(),
        serial(),
        serial(),
    )
        .prop_map(|(lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn)| NopIn {
            lun,
            itt,
            ttt,
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        })
}

pub fn scsi_response() -> impl Strategy<Value = ScsiResponse> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            serial(),
        ),
        (serial(), serial(), serial(), residual(), residual()),
    )
        .prop_map(
            |(
                (resp, status, itt, snack_tag, stat_sn),
                (exp_cmd_sn, max_cmd_sn, exp_data_sn, bidi, residual),
            )| {
                ScsiResponse {
                    response: ScsiResponseCode::from_u8(resp),
                    status,
                    itt,
                    snack_tag,
                    stat_sn,
                    exp_cmd_sn,
                    max_cmd_sn,
                    exp_data_sn,
                    bidi_read_residual: bidi,
                    residual,
                }
            },
        )
}

pub fn task_mgmt_response() -> impl Strategy<Value = TaskMgmtResponse> {
    (any::<u8>(), any::<u32>(), serial(), serial(), serial()).prop_map(
        |(r, itt, stat_sn, exp_cmd_sn, max_cmd_sn)| TaskMgmtResponse {
            response: TmfResponse::from_u8(r),
            itt,
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        },
    )
}

pub fn login_response() -> impl Strategy<Value = LoginResponse> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            stage(),
            stage(),
            any::<u8>(),
            any::<u8>(),
            isid(),
        ),
        (
            any::<u16>(),
            any::<u32>(),
            serial(),
            serial(),
            serial(),
            any::<u8>(),
            any::<u8>(),
        ),
    )
        .prop_map(
            |(
                (transit, cont, csg, nsg, version_max, version_active, isid),
                (tsih, itt, stat_sn, exp_cmd_sn, max_cmd_sn, status_class, status_detail),
            )| LoginResponse {
                transit,
                cont: cont && !transit,
                csg,
                nsg,
                version_max,
                version_active,
                isid,
                tsih,
                itt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                status_class,
                status_detail,
            },
        )
}

pub fn text_response() -> impl Strategy<Value = TextResponse> {
    (
        (any::<bool>(), any::<bool>(), any::<u64>(), any::<u32>()),
        (any::<u32>(), serial(), serial(), serial()),
    )
        .prop_map(
            |((final_pdu, cont, lun, itt), (ttt, stat_sn, exp_cmd_sn, max_cmd_sn))| TextResponse {
                final_pdu,
                cont: cont && !final_pdu,
                lun,
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
            },
        )
}

pub fn data_in() -> impl Strategy<Value = DataIn> {
    let status = proptest::option::of((any::<u8>(), serial(), residual()).prop_map(
        |(status, stat_sn, residual)| DataInStatus {
            status,
            stat_sn,
            residual,
        },
    ));
    (
        (
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (serial(), serial(), serial(), any::<u32>(), status),
    )
        .prop_map(
            |(
                (final_pdu, ack, lun, itt, ttt),
                (exp_cmd_sn, max_cmd_sn, data_sn, buffer_offset, status),
            )| DataIn {
                // RFC 7143 section 11.7.3: S=1 requires F=1.
                final_pdu: final_pdu || status.is_some(),
                ack,
                lun,
                itt,
                ttt,
                exp_cmd_sn,
                max_cmd_sn,
                data_sn,
                buffer_offset,
                status,
            },
        )
}

pub fn logout_response() -> impl Strategy<Value = LogoutResponse> {
    (
        any::<u8>(),
        any::<u32>(),
        serial(),
        serial(),
        serial(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(r, itt, stat_sn, exp_cmd_sn, max_cmd_sn, time2wait, time2retain)| LogoutResponse {
                response: LogoutResponseCode::from_u8(r),
                itt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                time2wait,
                time2retain,
            },
        )
}

pub fn r2t() -> impl Strategy<Value = R2t> {
    (
        (any::<u64>(), any::<u32>(), any::<u32>(), serial(), serial()),
        (serial(), serial(), any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |((lun, itt, ttt, stat_sn, exp_cmd_sn), (max_cmd_sn, r2t_sn, off, len))| R2t {
                lun,
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                r2t_sn,
                buffer_offset: off,
                desired_data_transfer_length: len,
            },
        )
}

pub fn async_message() -> impl Strategy<Value = AsyncMessage> {
    (
        (any::<u64>(), serial(), serial(), serial()),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
        ),
    )
        .prop_map(
            |((lun, stat_sn, exp_cmd_sn, max_cmd_sn), (e, vcode, p1, p2, p3))| AsyncMessage {
                lun,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                event: AsyncEvent::from_u8(e),
                vcode,
                parameter1: p1,
                parameter2: p2,
                parameter3: p3,
            },
        )
}

pub fn reject() -> impl Strategy<Value = Reject> {
    (any::<u8>(), serial(), serial(), serial(), serial()).prop_map(|(r, a, b, c, d)| Reject {
        reason: RejectReason::from_u8(r),
        stat_sn: a,
        exp_cmd_sn: b,
        max_cmd_sn: c,
        data_sn_or_r2t_sn: d,
    })
}

/// Any valid header of the 18 kinds.
pub fn header() -> impl Strategy<Value = Header> {
    prop_oneof![
        nop_out().prop_map(Header::from),
        scsi_command().prop_map(Header::from),
        task_mgmt_request().prop_map(Header::from),
        login_request().prop_map(Header::from),
        text_request().prop_map(Header::from),
        data_out().prop_map(Header::from),
        logout_request().prop_map(Header::from),
        snack_request().prop_map(Header::from),
        nop_in().prop_map(Header::from),
        scsi_response().prop_map(Header::from),
        task_mgmt_response().prop_map(Header::from),
        login_response().prop_map(Header::from),
        text_response().prop_map(Header::from),
        data_in().prop_map(Header::from),
        logout_response().prop_map(Header::from),
        r2t().prop_map(Header::from),
        async_message().prop_map(Header::from),
        reject().prop_map(Header::from),
    ]
}

pub fn ahs() -> impl Strategy<Value = Ahs> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|v| Ahs::ExtendedCdb(Bytes::from(v))),
        any::<u32>().prop_map(Ahs::BidiReadLength),
        (3u8..64, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, v)| Ahs::Unknown {
            ahs_type: t,
            data: Bytes::from(v)
        }),
    ]
}

/// PDU kinds that must not carry AHS or data (RFC 7143 sections 11.5.2,
/// 11.6.3, 11.8.1, 11.14.2, 11.15.2).
pub fn segments_forbidden(h: &Header) -> bool {
    matches!(
        h,
        Header::TaskMgmtRequest(_)
            | Header::TaskMgmtResponse(_)
            | Header::R2t(_)
            | Header::LogoutRequest(_)
            | Header::LogoutResponse(_)
    )
}

/// A valid PDU with up to `max_data` data bytes (and AHS on SCSI Commands).
pub fn pdu(max_data: usize) -> impl Strategy<Value = Pdu> {
    (
        header(),
        proptest::collection::vec(ahs(), 0..3),
        proptest::collection::vec(any::<u8>(), 0..=max_data),
    )
        .prop_map(|(header, ahs, data)| {
            if segments_forbidden(&header) {
                Pdu {
                    header,
                    ahs: Vec::new(),
                    data: Bytes::new(),
                }
            } else if matches!(header, Header::ScsiCommand(_)) {
                Pdu {
                    header,
                    ahs,
                    data: Bytes::from(data),
                }
            } else {
                Pdu {
                    header,
                    ahs: Vec::new(),
                    data: Bytes::from(data),
                }
            }
        })
}

pub fn digests() -> impl Strategy<Value = Digests> {
    (any::<bool>(), any::<bool>()).prop_map(|(header, data)| Digests { header, data })
}
