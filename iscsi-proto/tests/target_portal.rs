//! The target `Portal`: what spans connections (RFC 7143 sections 4.4.3,
//! 6.3.1, 6.3.5, 11.5.1, 11.13.3, 11.13.5), each test written from the
//! sentence it quotes.

mod target_support;

use iscsi_proto::time::Instant;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::{LoginStatus, OperationalParams};
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{
    CloseReason, ConnectionHandle, NexusId, Portal, PortalConfig, PortalError, PortalEvent,
    ResetScope, SessionConfig, TaskId,
};
use iscsi_proto::wire::*;
use target_support::{kv, INITIATOR, TARGET};

const OTHER_INITIATOR: &str = "iqn.2024-01.test:other";

fn portal_with(max_connections: usize) -> Portal {
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.targets[0].luns = vec![0, 1 << 48];
    let mut cfg = PortalConfig::new(s);
    cfg.max_connections = max_connections;
    Portal::new(cfg, 7).unwrap()
}

fn portal() -> Portal {
    portal_with(16)
}

fn isid(d: u16) -> Isid {
    Isid::from_fields(0, 1, 2, 3, d)
}

/// One scripted initiator connection.
struct Ini {
    h: ConnectionHandle,
    isid: Isid,
    cmd_sn: Serial,
    itt: u32,
}

impl Ini {
    fn send(&mut self, p: &mut Portal, now: Instant, h: impl Into<Header>, data: Bytes) {
        let mut buf = BytesMut::new();
        Pdu::new(h, data).encode(&mut buf, Digests::NONE).unwrap();
        p.handle_input(self.h, now, &mut buf);
        assert!(buf.is_empty() || p.is_closed(self.h));
    }

    fn recv(&mut self, p: &mut Portal, now: Instant) -> Vec<Pdu> {
        let mut dec = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 0x00ff_ffff,
        });
        let mut buf = BytesMut::new();
        while let Some(t) = p.poll_transmit(self.h, now) {
            t.write_to(&mut buf);
        }
        std::iter::from_fn(|| dec.decode(&mut buf).unwrap()).collect()
    }

    /// A one-request login (CSG 1 -> NSG 3) with `tsih`; returns the
    /// Login Response.
    fn login(
        p: &mut Portal,
        now: Instant,
        name: &str,
        isid: Isid,
        tsih: u16,
    ) -> (Ini, LoginResponse) {
        let mut ini = Ini::start_login(p, now, name, TARGET, isid, tsih);
        let mut r = ini.recv(p, now);
        assert_eq!(r.len(), 1, "{r:?}");
        let Header::LoginResponse(resp) = r.remove(0).header else {
            panic!("not a login response")
        };
        (ini, resp)
    }

    /// A new connection whose one Login Request (CSG 1 -> NSG 3, `tsih`)
    /// names `target`; nothing read back yet.
    fn start_login(
        p: &mut Portal,
        now: Instant,
        name: &str,
        target: &str,
        isid: Isid,
        tsih: u16,
    ) -> Ini {
        let h = p.accept(now, None).unwrap();
        let mut ini = Ini {
            h,
            isid,
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
            tsih,
            itt: 1,
            cid: 1,
            cmd_sn: Serial(1),
            exp_stat_sn: Serial(0),
        };
        let text = kv(&[
            ("InitiatorName", name),
            ("TargetName", target),
            ("SessionType", "Normal"),
        ]);
        ini.send(p, now, req, text);
        ini
    }

    /// A READ (10) of one block on `lun`, delivered at once.
    fn read(&mut self, p: &mut Portal, now: Instant, lun: u64) {
        self.itt += 1;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        cdb[8] = 1;
        let cmd = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read: true,
            write: false,
            attr: TaskAttr::Simple,
            lun,
            itt: self.itt,
            expected_data_transfer_length: 512,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
            cdb,
        };
        self.cmd_sn = self.cmd_sn.next();
        self.send(p, now, cmd, Bytes::new());
    }

    fn tmf(&mut self, p: &mut Portal, now: Instant, function: TmfFunction, lun: u64) {
        self.itt += 1;
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt: self.itt,
            referenced_task_tag: 0xffff_ffff,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
            ref_cmd_sn: Serial(0),
            exp_data_sn: Serial(0),
        };
        self.send(p, now, req, Bytes::new());
    }
}

fn events(p: &mut Portal) -> Vec<PortalEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn status(r: &LoginResponse) -> LoginStatus {
    LoginStatus::from_raw(r.status_class, r.status_detail)
}

/// RFC 7143 section 11.13.3: "For a new session, the target MUST generate
/// a non-zero TSIH"; section 4.4.3 (TSIH RULE): "After being selected, the
/// same TSIH value MUST be used whenever the initiator or target refers to
/// the session", so no two live sessions share one.
#[test]
fn tsih_is_non_zero_and_unique_among_live_sessions() {
    let now = Instant::ZERO;
    let mut p = portal();
    let mut tsihs = Vec::new();
    for d in 0..4 {
        let (_, r) = Ini::login(&mut p, now, INITIATOR, isid(d), 0);
        assert_eq!(status(&r), LoginStatus::Success);
        assert_ne!(r.tsih, 0);
        tsihs.push(r.tsih);
    }
    let mut unique = tsihs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), tsihs.len(), "{tsihs:?}");

    // Run the allocator round the 16-bit space while the first sessions
    // stay live (TSIHs 1 to 4), so that it comes back to them next: it
    // hands out neither 0 nor a live TSIH.
    assert_eq!(tsihs, [1, 2, 3, 4]);
    let mut seen_zero = false;
    for _ in 0..(u16::MAX - 4) {
        let h = p.accept(now, None).unwrap();
        p.remove(h);
    }
    for d in 4..8 {
        let (_, r) = Ini::login(&mut p, now, INITIATOR, isid(d), 0);
        seen_zero |= r.tsih == 0;
        assert!(!tsihs.contains(&r.tsih), "{} reused", r.tsih);
        tsihs.push(r.tsih);
    }
    assert!(!seen_zero);
}

/// RFC 7143 section 6.3.5: "Session reinstatement is the process of the
/// initiator logging in with an ISID that is possibly active from the
/// target's perspective. Thus implicitly logging out the session that
/// corresponds to the ISID and reinstating a new iSCSI session in its
/// place (with the same ISID). [...] Session reinstatement causes all the
/// tasks that were active on the old session to be immediately terminated
/// by the target without further notice to the initiator."
#[test]
fn reinstatement_closes_the_old_session_and_ends_its_tasks() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (mut a, r) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    assert_eq!(status(&r), LoginStatus::Success);
    let nexus = NexusId::of(INITIATOR, isid(1));
    assert!(matches!(
        events(&mut p).as_slice(),
        [PortalEvent::LoggedIn { nexus: Some(n), .. }, PortalEvent::NexusCreated { nexus: m, .. }]
            if *n == nexus && *m == nexus
    ));
    // A command delivered and not completed: a live task of the old session.
    a.read(&mut p, now, 0);
    let task = match events(&mut p).as_slice() {
        [PortalEvent::Command {
            connection,
            nexus: n,
            request,
        }] => {
            assert_eq!((*connection, *n), (a.h, nexus));
            request.task
        }
        other => panic!("{other:?}"),
    };

    // Same initiator, same ISID, TSIH 0 (section 6.3.1: "existing | zero |
    // any | do session reinstatement").
    let (b, r) = Ini::login(&mut p, now, INITIATOR, a.isid, 0);
    assert_eq!(status(&r), LoginStatus::Success);
    let ev = events(&mut p);
    assert!(
        matches!(ev.first(), Some(PortalEvent::LoggedIn { connection, .. }) if *connection == b.h)
    );
    assert!(ev.contains(&PortalEvent::SessionReinstated {
        nexus,
        initiator_name: INITIATOR.into(),
        isid: a.isid,
        old: a.h,
        new: b.h,
    }));
    // The old session's task ended, and its connection closes.
    assert!(ev.contains(&PortalEvent::TaskAborted {
        connection: a.h,
        task
    }));
    assert!(ev
        .iter()
        .any(|e| matches!(e, PortalEvent::Closed { connection, .. } if *connection == a.h)));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, PortalEvent::NexusCreated { .. })));
    assert!(p.is_closed(a.h));
    assert!(!p.is_closed(b.h));
    assert_eq!(p.poll_touched(), Some(a.h));
    // The old task is gone: completing it is refused.
    assert!(matches!(
        p.complete(a.h, task, ScsiStatus::Good, None, Bytes::new()),
        Err(PortalError::Session(_))
    ));
    // Removing the old connection does not lose the nexus: the new
    // session is on it.
    p.remove(a.h);
    assert!(events(&mut p).is_empty());
    assert_eq!(p.nexus(b.h), Some(nexus));
    p.remove(b.h);
    assert_eq!(events(&mut p), vec![PortalEvent::NexusLost { nexus }]);
}

/// Section 6.3.1: "new | zero | any | instantiate a new session": another
/// ISID, or another initiator with the same ISID, is another session (and
/// another I_T nexus, section 4.4.1), which coexists.
#[test]
fn a_second_session_with_another_isid_coexists() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (a, _) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    let (b, rb) = Ini::login(&mut p, now, INITIATOR, isid(2), 0);
    let (c, rc) = Ini::login(&mut p, now, OTHER_INITIATOR, isid(1), 0);
    assert_eq!(status(&rb), LoginStatus::Success);
    assert_eq!(status(&rc), LoginStatus::Success);
    let ev = events(&mut p);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, PortalEvent::NexusCreated { .. }))
            .count(),
        3
    );
    assert!(!ev.iter().any(|e| matches!(
        e,
        PortalEvent::SessionReinstated { .. } | PortalEvent::Closed { .. }
    )));
    for h in [a.h, b.h, c.h] {
        assert!(!p.is_closed(h));
    }
    let nexuses = [a.h, b.h, c.h].map(|h| p.nexus(h).unwrap());
    assert_ne!(nexuses[0], nexuses[1]);
    assert_ne!(nexuses[0], nexuses[2]);
    assert_eq!(p.connections(), 3);
}

/// Section 6.3.1: "new | non-zero | any | fail the login ("session does
/// not exist")"; section 11.13.5: 0x020a "Session does not exist: Attempt
/// to add a connection to a non-existent session."
#[test]
fn a_login_naming_an_unknown_tsih_is_refused() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (a, ra) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    events(&mut p);
    // A TSIH no live session has.
    let (b, r) = Ini::login(&mut p, now, INITIATOR, isid(2), ra.tsih.wrapping_add(100));
    assert_eq!(status(&r), LoginStatus::SessionDoesNotExist);
    let ev = events(&mut p);
    assert!(ev.iter().any(|e| matches!(
        e,
        PortalEvent::LoginFailed { connection, status: LoginStatus::SessionDoesNotExist, .. }
            if *connection == b.h
    )));
    assert!(p.is_closed(b.h));
    assert!(!p.is_closed(a.h));
}

/// Section 6.3.1: "existing | non-zero existing | new | add a new
/// connection to the session"; this target negotiates MaxConnections=1
/// (section 13.2), so section 11.13.5 applies: 0x0206 "Too many
/// connections on this SSID". The existing session is untouched.
#[test]
fn a_second_connection_to_a_live_session_is_too_many_connections() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (a, ra) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    events(&mut p);
    let (b, r) = Ini::login(&mut p, now, INITIATOR, a.isid, ra.tsih);
    assert_eq!(status(&r), LoginStatus::TooManyConnections);
    assert_eq!(r.isid, a.isid);
    assert_eq!(
        events(&mut p),
        vec![
            PortalEvent::LoginFailed {
                connection: b.h,
                status: LoginStatus::TooManyConnections,
                initiator_name: None,
            },
            PortalEvent::Closed {
                connection: b.h,
                reason: CloseReason::LoginFailed(LoginStatus::TooManyConnections),
            },
        ]
    );
    assert!(p.is_closed(b.h));
    assert!(!p.is_closed(a.h));
    // The same TSIH with another ISID names no session of that initiator
    // port: "does not exist".
    let (_, r) = Ini::login(&mut p, now, INITIATOR, isid(9), ra.tsih);
    assert_eq!(status(&r), LoginStatus::SessionDoesNotExist);
}

/// A login that fails (here: an unknown target) does not reinstate: the
/// old session goes only when the new one is established.
#[test]
fn a_failed_login_with_a_live_isid_leaves_the_session_alone() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (a, _) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    events(&mut p);
    let b = Ini::start_login(&mut p, now, INITIATOR, "iqn.x:none", a.isid, 0);
    assert!(p.is_closed(b.h));
    assert!(!p.is_closed(a.h));
    assert!(!events(&mut p)
        .iter()
        .any(|e| matches!(e, PortalEvent::SessionReinstated { .. })));
}

/// SAM-5 6.3.3 / 5.14: a logical unit reset establishes a unit attention
/// for every I_T nexus; the portal names them all in one event.
#[test]
fn a_logical_unit_reset_names_every_nexus() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (mut a, _) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    let (b, _) = Ini::login(&mut p, now, OTHER_INITIATOR, isid(1), 0);
    events(&mut p);
    a.tmf(&mut p, now, TmfFunction::LogicalUnitReset, 1 << 48);
    let na = p.nexus(a.h).unwrap();
    let mut all = vec![na, p.nexus(b.h).unwrap()];
    all.sort_unstable();
    let ev = events(&mut p);
    assert!(ev.contains(&PortalEvent::Reset {
        scope: ResetScope::LogicalUnit(1 << 48),
        by: na,
        nexuses: all,
    }));
    assert!(!p.is_closed(b.h));
}

/// RFC 7143 section 11.5.1: "LOGICAL UNIT RESET, TARGET WARM RESET and
/// TARGET COLD RESET may affect commands from other sessions". A reset
/// through one nexus aborts the other session's tasks on that logical
/// unit (taken ones are reported for acknowledgement, unseen ones are
/// withdrawn), and leaves its tasks on other logical units alone.
#[test]
fn a_logical_unit_reset_aborts_the_other_sessions_tasks_on_that_unit() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (mut a, _) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    let (mut b, _) = Ini::login(&mut p, now, OTHER_INITIATOR, isid(1), 0);
    events(&mut p);
    // b: one task on LUN 1 taken by the application, one on LUN 2 taken,
    // and one on LUN 1 whose Command event is still queued.
    b.read(&mut p, now, 1 << 48);
    b.read(&mut p, now, 2 << 48);
    let taken: Vec<TaskId> = events(&mut p)
        .into_iter()
        .filter_map(|e| match e {
            PortalEvent::Command { request, .. } => Some(request.task),
            _ => None,
        })
        .collect();
    assert_eq!(taken.len(), 2);
    b.read(&mut p, now, 1 << 48);
    a.tmf(&mut p, now, TmfFunction::LogicalUnitReset, 1 << 48);
    let ev = events(&mut p);
    let aborted: Vec<TaskId> = ev
        .iter()
        .filter_map(|e| match e {
            PortalEvent::TaskAborted { connection, task } if *connection == b.h => Some(*task),
            _ => None,
        })
        .collect();
    assert_eq!(aborted, vec![taken[0]], "{ev:?}");
    // The unseen LUN 1 command was withdrawn: it never reaches the
    // application.
    assert!(
        !ev.iter()
            .any(|e| matches!(e, PortalEvent::Command { connection, .. } if *connection == b.h)),
        "{ev:?}"
    );
    // The LUN 2 task still completes normally.
    assert!(p.abort_acknowledged(b.h, taken[0]).is_ok());
    assert!(p
        .complete(
            b.h,
            taken[1],
            ScsiStatus::Good,
            None,
            Bytes::from_static(&[0u8; 512])
        )
        .is_ok());
}

/// RFC 7143 section 11.5.1: "For the TARGET COLD RESET function, the
/// target MUST then close all of its TCP connections to all initiators
/// (terminates all sessions)."
#[test]
fn a_target_cold_reset_closes_every_session() {
    let now = Instant::ZERO;
    let mut p = portal();
    let (mut a, _) = Ini::login(&mut p, now, INITIATOR, isid(1), 0);
    let (b, _) = Ini::login(&mut p, now, OTHER_INITIATOR, isid(1), 0);
    events(&mut p);
    a.tmf(&mut p, now, TmfFunction::TargetColdReset, 0);
    let ev = events(&mut p);
    assert!(ev.iter().any(|e| matches!(
        e,
        PortalEvent::Reset {
            scope: ResetScope::Target { cold: true },
            ..
        }
    )));
    assert!(p.is_closed(b.h));
    assert!(p.is_closed(a.h));
    assert_eq!(p.poll_touched(), Some(b.h));
}

/// The portal refuses connections beyond its limit.
#[test]
fn accept_beyond_the_limit_is_refused() {
    let now = Instant::ZERO;
    let mut p = portal_with(2);
    let a = p.accept(now, None).unwrap();
    p.accept(now, None).unwrap();
    assert_eq!(p.accept(now, None), Err(PortalError::TooManyConnections(2)));
    p.remove(a);
    assert_eq!(p.accept(now, None).map(|h| h.index()), Ok(a.index()));
}

/// RFC 7143 section 4.4.1: the SCSI initiator port is the InitiatorName
/// plus the ISID; the nexus id is a function of both, stable across logins
/// (a reconnecting initiator keeps its reservations) and never 0.
#[test]
fn the_nexus_is_the_initiator_port() {
    let a = NexusId::of(INITIATOR, isid(1));
    assert_eq!(a, NexusId::of(INITIATOR, isid(1)));
    assert_ne!(a, NexusId::of(INITIATOR, isid(2)));
    assert_ne!(a, NexusId::of(OTHER_INITIATOR, isid(1)));
    assert_ne!(a.0, 0);
    // A Discovery session has no I_T nexus.
    let now = Instant::ZERO;
    let mut p = portal();
    let h = p.accept(now, None).unwrap();
    let mut ini = Ini {
        h,
        isid: isid(1),
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
        isid: isid(1),
        tsih: 0,
        itt: 1,
        cid: 1,
        cmd_sn: Serial(1),
        exp_stat_sn: Serial(0),
    };
    let text = kv(&[("InitiatorName", INITIATOR), ("SessionType", "Discovery")]);
    ini.send(&mut p, now, req, text);
    assert!(matches!(
        events(&mut p).as_slice(),
        [PortalEvent::LoggedIn { nexus: None, .. }]
    ));
    assert_eq!(p.nexus(h), None);
}

/// The receive bound a driver keeps: the largest PDU is the BHS, at most
/// 1020 bytes of AHS (RFC 7143 section 11.2.1.2), two digests, the data
/// segment up to our MaxRecvDataSegmentLength (section 13.12; 8192 during
/// login) and 3 bytes of padding.
#[test]
fn max_pdu_len_covers_the_largest_pdu() {
    let p = portal();
    let mrdsl = OperationalParams::default().max_recv_data_segment_length as usize;
    assert_eq!(p.max_pdu_len(), mrdsl.max(8192) + 48 + 1020 + 4 + 3 + 4);
}

/// One step of the deadline model below.
#[derive(Debug, Clone)]
enum Step {
    /// Accept a connection and log in (ISID from the number).
    Login(u16),
    /// A READ on connection i (modulo the handles).
    Read(usize),
    /// The application answers every command reported so far.
    CompleteAll,
    /// A task management LOGICAL UNIT RESET on connection i.
    Reset(usize),
    /// The peer closed connection i.
    Closed(usize),
    /// The driver removed connection i.
    Remove(usize),
    /// Time passes (milliseconds), then `handle_timeout`.
    Advance(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u16..6).prop_map(Step::Login),
        (0usize..8).prop_map(Step::Read),
        Just(Step::CompleteAll),
        (0usize..8).prop_map(Step::Reset),
        (0usize..8).prop_map(Step::Closed),
        (0usize..8).prop_map(Step::Remove),
        (0u64..4000).prop_map(Step::Advance),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The portal's `poll_timeout` (an ordered deadline index, issue 17)
    /// is exactly the minimum of its sessions' `Session::poll_timeout`
    /// after every input, action and timeout, for random sequences; a
    /// model: the sessions are reached through every handle ever accepted.
    /// The sessions ping (RFC 7143 section 11.19, NOP-In) so their
    /// deadlines move with every PDU received and every timeout.
    #[test]
    fn poll_timeout_is_the_minimum_over_the_sessions(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut s = SessionConfig::new(TARGET);
        s.params = OperationalParams::default();
        s.targets[0].luns = vec![0, 1 << 48];
        s.nop = Some(iscsi_proto::target::NopConfig {
            interval: std::time::Duration::from_millis(1500),
            timeout: std::time::Duration::from_millis(1000),
        });
        let mut cfg = PortalConfig::new(s);
        cfg.max_connections = 64;
        let mut p = Portal::new(cfg, 11).unwrap();
        let mut now = Instant::ZERO;
        let mut inis: Vec<Ini> = Vec::new();
        let mut pending: Vec<(ConnectionHandle, TaskId)> = Vec::new();
        for st in steps {
            match st {
                Step::Login(d) => {
                    let (ini, _) = Ini::login(&mut p, now, INITIATOR, isid(d), 0);
                    inis.push(ini);
                }
                Step::Read(i) if !inis.is_empty() => {
                    let n = inis.len();
                    let ini = &mut inis[i % n];
                    if !p.is_closed(ini.h) {
                        ini.read(&mut p, now, 0);
                    }
                }
                Step::Reset(i) if !inis.is_empty() => {
                    let n = inis.len();
                    let ini = &mut inis[i % n];
                    if !p.is_closed(ini.h) {
                        ini.tmf(&mut p, now, TmfFunction::LogicalUnitReset, 0);
                    }
                }
                Step::CompleteAll => {
                    for (h, task) in pending.drain(..) {
                        let _ = p.complete(h, task, ScsiStatus::Good, None, Bytes::from_static(&[0; 512]));
                    }
                }
                Step::Closed(i) if !inis.is_empty() => {
                    let h = inis[i % inis.len()].h;
                    p.handle_closed(h, now);
                }
                Step::Remove(i) if !inis.is_empty() => {
                    let h = inis[i % inis.len()].h;
                    p.remove(h);
                }
                Step::Advance(ms) => {
                    now += std::time::Duration::from_millis(ms);
                    p.handle_timeout(now);
                }
                _ => {}
            }
            for e in events(&mut p) {
                match e {
                    PortalEvent::Command { connection, request, .. } => {
                        pending.push((connection, request.task));
                    }
                    PortalEvent::TaskAborted { connection, task } => {
                        pending.retain(|&(h, t)| (h, t) != (connection, task));
                        let _ = p.abort_acknowledged(connection, task);
                    }
                    _ => {}
                }
            }
            // Drain what every connection has to send (the driver's job);
            // transmits may arm or move timers too.
            for ini in inis.iter_mut() {
                let _ = ini.recv(&mut p, now);
            }
            while p.poll_touched().is_some() {}
            let model = inis
                .iter()
                .filter_map(|ini| p.session(ini.h).and_then(|s| s.poll_timeout()))
                .min();
            proptest::prop_assert_eq!(p.poll_timeout(), model);
        }
    }
}
