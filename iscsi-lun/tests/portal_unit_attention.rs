//! `iscsi_lun::Target` applies the portal's I_T nexus events to the
//! logical units: unit attentions after a reset (SAM-5), state kept
//! across session reinstatement and dropped with the nexus.
//!
//! SAM-5 6.3.3 (logical unit reset): the logical unit shall "establish a
//! unit attention condition" (5.14), which is established for the
//! initiator port of every I_T nexus; 5.14 lists "logical unit reset" with
//! the additional sense code BUS DEVICE RESET FUNCTION OCCURRED (29/03).
//! So a reset requested through one nexus is seen by the OTHER nexus as
//! a unit attention on its next command to that logical unit (and only
//! to that one), as well as by the requester.

use iscsi_proto::time::Instant;

use bytes::{Bytes, BytesMut};
use iscsi_lun::{LogicalUnit, LuConfig, RamDisk, Target};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::scsi::{Lun, SenseData, SenseKey};
use iscsi_proto::target::{ConnectionHandle, Portal, PortalConfig, SessionConfig};
use iscsi_proto::wire::*;

const TARGET: &str = "iqn.2024-01.test:disk";
const LUN1: u64 = 1 << 48;

fn target() -> Target {
    let luns = vec![Lun::from_number(0), Lun::from_number(1)];
    let lus = (0..2)
        .map(|_| {
            let cfg = LuConfig {
                luns: luns.clone(),
                ..LuConfig::default()
            };
            LogicalUnit::new(RamDisk::new(1 << 20, 512).unwrap(), cfg)
        })
        .collect();
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.targets[0].luns = vec![0, LUN1];
    Target::with_logical_units(Portal::new(PortalConfig::new(s), 1).unwrap(), lus)
}

struct Ini {
    h: ConnectionHandle,
    cmd_sn: Serial,
    itt: u32,
}

impl Ini {
    fn login(t: &mut Target, name: &str, isid: Isid) -> Ini {
        let now = Instant::ZERO;
        let h = t.accept(now, None, None).unwrap();
        let mut ini = Ini {
            h,
            cmd_sn: Serial(1),
            itt: 1,
        };
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid,
            tsih: 0,
            itt: 1,
            cid: 1,
            cmd_sn: Serial(1),
            exp_stat_sn: Serial(0),
        };
        let mut text = Vec::new();
        iscsi_proto::wire::text::encode_pairs(
            [("InitiatorName", name), ("TargetName", TARGET)],
            &mut text,
        )
        .unwrap();
        let r = ini.exchange(t, req.into(), Bytes::from(text));
        let Header::LoginResponse(r) = &r[0].header else {
            panic!("{r:?}")
        };
        assert_eq!((r.status_class, r.status_detail), (0, 0));
        ini
    }

    fn exchange(&mut self, t: &mut Target, h: Header, data: Bytes) -> Vec<Pdu> {
        let now = Instant::ZERO;
        let mut buf = BytesMut::new();
        Pdu::new(h, data).encode(&mut buf, Digests::NONE).unwrap();
        t.handle_input(self.h, now, &mut buf);
        let mut out = BytesMut::new();
        while let Some(tx) = t.portal_mut().poll_transmit(self.h, now) {
            tx.write_to(&mut out);
        }
        let mut dec = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 0x00ff_ffff,
        });
        std::iter::from_fn(|| dec.decode(&mut out).unwrap()).collect()
    }

    /// TEST UNIT READY on `lun`: `None` when GOOD, else the sense data.
    fn test_unit_ready(&mut self, t: &mut Target, lun: u64) -> Option<SenseData> {
        self.itt += 1;
        let cmd = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read: false,
            write: false,
            attr: TaskAttr::Simple,
            lun,
            itt: self.itt,
            expected_data_transfer_length: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
            cdb: [0; 16],
        };
        self.cmd_sn = self.cmd_sn.next();
        let r = self.exchange(t, cmd.into(), Bytes::new());
        let [Pdu {
            header: Header::ScsiResponse(resp),
            data,
            ..
        }] = r.as_slice()
        else {
            panic!("{r:?}")
        };
        if resp.status == 0 {
            return None;
        }
        assert_eq!(resp.status, 0x02, "CHECK CONDITION");
        SenseData::parse_iscsi_segment(data).unwrap()
    }

    fn lu_reset(&mut self, t: &mut Target, lun: u64) {
        self.itt += 1;
        let req = TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::LogicalUnitReset,
            lun,
            itt: self.itt,
            referenced_task_tag: 0xffff_ffff,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
            ref_cmd_sn: Serial(0),
            exp_data_sn: Serial(0),
        };
        let r = self.exchange(t, req.into(), Bytes::new());
        assert!(
            matches!(
                &r[..],
                [Pdu {
                    header: Header::TaskMgmtResponse(_),
                    ..
                }]
            ),
            "{r:?}"
        );
    }
}

fn is_reset_ua(s: Option<SenseData>) -> bool {
    s.is_some_and(|s| s.is(SenseKey::UnitAttention, (0x29, 0x03)))
}

#[test]
fn a_lu_reset_through_one_nexus_sets_a_unit_attention_for_the_other() {
    let mut t = target();
    let mut a = Ini::login(
        &mut t,
        "iqn.2024-01.test:a",
        Isid::from_fields(0, 1, 2, 3, 4),
    );
    let mut b = Ini::login(
        &mut t,
        "iqn.2024-01.test:b",
        Isid::from_fields(0, 1, 2, 3, 4),
    );
    assert_eq!(b.test_unit_ready(&mut t, 0), None);
    a.lu_reset(&mut t, 0);
    // The other nexus: a unit attention on LUN 0, reported once.
    assert!(is_reset_ua(b.test_unit_ready(&mut t, 0)));
    assert_eq!(b.test_unit_ready(&mut t, 0), None);
    // Only the logical unit reset: LUN 1 has none.
    assert_eq!(b.test_unit_ready(&mut t, LUN1), None);
    // The requester's nexus too (SAM-5 5.14: every I_T nexus).
    assert!(is_reset_ua(a.test_unit_ready(&mut t, 0)));
    assert_eq!(a.test_unit_ready(&mut t, LUN1), None);
}

#[test]
fn a_reinstated_session_keeps_its_nexus_a_lost_nexus_forgets() {
    let mut t = target();
    let isid = Isid::from_fields(0, 1, 2, 3, 4);
    let mut a = Ini::login(&mut t, "iqn.2024-01.test:a", isid);
    let b = Ini::login(&mut t, "iqn.2024-01.test:b", isid);
    a.lu_reset(&mut t, 0);
    // RFC 7143 section 6.3.5: b reinstates its session (same name and
    // ISID, TSIH 0); the I_T nexus is the same, so is its unit attention.
    let old = b.h;
    let mut b = Ini::login(&mut t, "iqn.2024-01.test:b", isid);
    assert!(t.portal().is_closed(old));
    t.remove(old);
    assert!(is_reset_ua(b.test_unit_ready(&mut t, 0)));
    // a's nexus goes away with its last session: its pending unit
    // attention is forgotten with it.
    t.remove(a.h);
    let mut a = Ini::login(&mut t, "iqn.2024-01.test:a", isid);
    assert_eq!(a.test_unit_ready(&mut t, 0), None);
}
