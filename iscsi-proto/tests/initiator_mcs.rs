//! Multiple connections per session (MC/S, RFC 7143 section 13.2) at the
//! initiator, against one scripted target per connection sharing the
//! session's CmdSN window. Each test quotes the sentence it checks.

use iscsi_proto::time::Instant;
use std::collections::BTreeMap;

use bytes::BytesMut;
use iscsi_proto::error::UsageError;
use iscsi_proto::initiator::{
    open_session, Event, ScsiCommand, Session, SessionConfig, Spread, TaskId, TaskOutcome,
};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, ScriptedTarget};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::{text, Pdu, Serial};

const TUR: [u8; 6] = [0; 6];

/// A session and one scripted target per connection.
struct Mcs {
    s: Session,
    now: Instant,
    t: BTreeMap<u16, ScriptedTarget>,
    rx: BTreeMap<u16, BytesMut>,
    events: Vec<Event>,
    level: u8,
}

fn responder(level: u8) -> LoginResponder {
    let mut t = TargetConfig::default();
    t.params.max_connections = 4;
    t.params.error_recovery_level = level;
    LoginResponder::new(t, None)
}

impl Mcs {
    fn new(level: u8, spread: Spread) -> Mcs {
        Mcs::with(level, spread, |c| c)
    }

    fn with(level: u8, spread: Spread, f: impl FnOnce(SessionConfig) -> SessionConfig) -> Mcs {
        let cfg = f(SessionConfig::new("iqn.2024-01.test:init")
            .with_target("iqn.2024-01.test:disk")
            .with_error_recovery_level(level)
            .with_max_connections(4, spread));
        let now = Instant::from_millis(1_000_000);
        let s = open_session(cfg, now, [1, 2, 3]).unwrap();
        let mut m = Mcs {
            s,
            now,
            t: BTreeMap::new(),
            rx: BTreeMap::new(),
            events: Vec::new(),
            level,
        };
        m.flush();
        m.login(0);
        m
    }

    fn primary(&self) -> u16 {
        self.s.connection_ids()[0]
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            match &ev {
                Event::Connect { .. } => {
                    let cid = self.primary();
                    self.t.insert(cid, ScriptedTarget::new());
                    self.rx.insert(cid, BytesMut::new());
                    self.s.handle_connected(self.now);
                }
                Event::OpenConnection { cid, .. } => {
                    let mut t = ScriptedTarget::new();
                    // The session's window, shared by every connection.
                    if let Some(p) = self.t.get(&self.primary()) {
                        t.exp_cmd_sn = p.exp_cmd_sn;
                        t.max_cmd_sn = p.max_cmd_sn;
                    }
                    self.t.insert(*cid, t);
                    self.rx.insert(*cid, BytesMut::new());
                    self.s.handle_connected_on(*cid, self.now);
                }
                Event::CloseConnection { cid, .. } => {
                    self.t.remove(cid);
                    self.rx.remove(cid);
                }
                _ => {}
            }
            self.events.push(ev);
        }
    }

    fn flush(&mut self) {
        loop {
            self.drain_events();
            let mut any = false;
            for cid in self.s.connection_ids() {
                while let Some(tx) = self.s.poll_transmit_on(cid, self.now) {
                    any = true;
                    let mut v = Vec::new();
                    tx.write_to(&mut v);
                    self.t.get_mut(&cid).expect("a target").feed(&v).unwrap();
                }
            }
            self.drain_events();
            if !any {
                break;
            }
        }
    }

    fn deliver(&mut self, cid: u16) {
        let out = self.t.get_mut(&cid).unwrap().take_output();
        let rx = self.rx.get_mut(&cid).unwrap();
        rx.extend_from_slice(&out);
        let mut buf = core::mem::take(rx);
        self.s.handle_input_on(cid, self.now, &mut buf);
        if let Some(rx) = self.rx.get_mut(&cid) {
            *rx = buf;
        }
        self.flush();
    }

    /// Advances virtual time, firing the session's timers when due.
    fn advance(&mut self, d: std::time::Duration) {
        self.now += d;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
        self.flush();
    }

    /// The PDUs each connection's target received since last asked.
    fn received(&mut self) -> BTreeMap<u16, Vec<Pdu>> {
        let mut out = BTreeMap::new();
        for (cid, t) in self.t.iter_mut() {
            let mut v = Vec::new();
            while let Some(pdu) = t.recv() {
                v.push(pdu);
            }
            out.insert(*cid, v);
        }
        out
    }

    fn login(&mut self, index: usize) {
        let cid = self.s.connection_ids()[index];
        let mut r = responder(self.level);
        for _ in 0..50 {
            self.flush();
            while let Some(pdu) = self.t.get_mut(&cid).unwrap().recv() {
                r.handle(self.t.get_mut(&cid).unwrap(), &pdu);
            }
            self.deliver(cid);
            if self.s.is_connection_up(cid) {
                return;
            }
        }
        panic!(
            "login of connection {cid} did not finish: {:?}",
            self.events
        );
    }

    fn add(&mut self) -> u16 {
        let cid = self.s.add_connection(self.now).unwrap();
        self.flush();
        let i = self
            .s
            .connection_ids()
            .iter()
            .position(|c| *c == cid)
            .unwrap();
        self.login(i);
        cid
    }

    /// Acknowledges a CmdSN on every connection's target (one window).
    fn ack(&mut self, cmd_sn: Serial) {
        for t in self.t.values_mut() {
            t.ack_cmd(cmd_sn);
        }
    }

    fn completions(&self, task: TaskId) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Complete { task: t, .. } if *t == task))
            .count()
    }

    fn outcome(&self, task: TaskId) -> Option<&TaskOutcome> {
        self.events.iter().find_map(|e| match e {
            Event::Complete { task: t, outcome } if *t == task => Some(outcome),
            _ => None,
        })
    }

    /// Commands received by each connection's target.
    fn commands(&mut self) -> BTreeMap<u16, Vec<w::ScsiCommand>> {
        let mut out = BTreeMap::new();
        for (cid, t) in self.t.iter_mut() {
            let mut v = Vec::new();
            while let Some(pdu) = t.recv() {
                if let Header::ScsiCommand(c) = pdu.header {
                    v.push(c);
                }
            }
            out.insert(*cid, v);
        }
        out
    }
}

fn logins(t: &ScriptedTarget) -> Vec<(w::LoginRequest, Pdu)> {
    t.log
        .iter()
        .filter_map(|p| match p.header {
            Header::LoginRequest(l) => Some((l, p.clone())),
            _ => None,
        })
        .collect()
}

/// RFC 7143 section 13.2 (MaxConnections) and section 6.3 ("a login
/// request with a non-zero TSIH ... adds a new connection to the
/// session"): up to the negotiated number of connections, each logging in
/// with the session's ISID and TSIH and its own CID, leading-only keys on
/// the first only.
#[test]
fn connections_are_added_up_to_max_connections_with_the_sessions_tsih() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    assert_eq!(m.s.negotiated().unwrap().max_connections, 4);
    let tsih = m.s.tsih();
    let added: Vec<u16> = (0..3).map(|_| m.add()).collect();
    let mut cids = m.s.connection_ids();
    cids.dedup();
    assert_eq!(cids.len(), 4, "distinct CIDs: {cids:?}");
    assert!(matches!(
        m.s.add_connection(m.now),
        Err(UsageError::Connection(_))
    ));
    for cid in added {
        let t = &m.t[&cid];
        let (l, pdu) = logins(t).into_iter().next().unwrap();
        assert_eq!((l.tsih, l.cid, l.isid), (tsih, cid, m.s.isid()));
        let pairs = text::parse_pairs(&pdu.data).unwrap();
        assert!(!pairs
            .iter()
            .any(|(k, _)| k == "SessionType" || k == "MaxConnections"));
        assert!(m
            .events
            .iter()
            .any(|e| matches!(e, Event::ConnectionUp { cid: c } if *c == cid)));
    }
    assert_eq!(m.s.tsih(), tsih);
}

/// RFC 7143 section 4.2.2.1: "the CmdSN ... is maintained per session"
/// (one numbering over every connection); section 4.2.2.2: "StatSN is a
/// counter maintained per connection"; section 4.2.5.1 (connection
/// allegiance): a task's response comes on its command's connection.
#[test]
fn commands_spread_round_robin_with_one_cmd_sn_and_a_stat_sn_per_connection() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    for _ in 0..3 {
        m.add();
    }
    let tasks: Vec<TaskId> = (0..8)
        .map(|_| {
            m.s.submit(
                m.now,
                ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
            )
            .unwrap()
        })
        .collect();
    m.flush();
    let got = m.commands();
    let mut sns: Vec<u32> = got.values().flatten().map(|c| c.cmd_sn.0).collect();
    sns.sort_unstable();
    let first = sns[0];
    assert_eq!(
        sns,
        (first..first + 8).collect::<Vec<_>>(),
        "one CmdSN sequence"
    );
    for (cid, cmds) in &got {
        assert_eq!(cmds.len(), 2, "round robin: 2 each on {cid}");
    }
    for cmds in got.values() {
        for c in cmds {
            m.ack(c.cmd_sn);
        }
    }
    for (cid, cmds) in &got {
        let t = m.t.get_mut(cid).unwrap();
        let before = t.stat_sn;
        for c in cmds {
            t.scsi_response(c.itt, 0, Residual::None, None);
        }
        assert_eq!(t.stat_sn, before.plus(2));
        m.deliver(*cid);
        assert_eq!(m.s.connection_ids().len(), 4);
    }
    for t in &tasks {
        assert_eq!(m.completions(*t), 1);
    }
    // Each connection acknowledges its own StatSNs.
    let t2: Vec<TaskId> = (0..4)
        .map(|_| {
            m.s.submit(
                m.now,
                ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
            )
            .unwrap()
        })
        .collect();
    m.flush();
    for (cid, cmds) in m.commands() {
        for c in cmds {
            assert_eq!(c.exp_stat_sn, m.t[&cid].stat_sn, "connection {cid}");
        }
    }
    assert_eq!(t2.len(), 4);
}

/// `Spread::LeastOutstanding`: a new command goes to the connection with
/// the fewest tasks on it.
#[test]
fn least_outstanding_prefers_the_idle_connection() {
    let mut m = Mcs::new(0, Spread::LeastOutstanding);
    let extra = m.add();
    let primary = m.primary();
    let a =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    let b =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let got = m.commands();
    assert_eq!((got[&primary].len(), got[&extra].len()), (1, 1));
    let on_primary = got[&primary][0];
    m.ack(on_primary.cmd_sn);
    m.ack(got[&extra][0].cmd_sn);
    let tp = m.t.get_mut(&primary).unwrap();
    tp.scsi_response(on_primary.itt, 0, Residual::None, None);
    m.deliver(primary);
    // The extra connection still holds one task: the next goes to the first.
    let _c =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let got = m.commands();
    assert_eq!((got[&primary].len(), got[&extra].len()), (1, 0));
    assert_eq!(m.completions(a) + m.completions(b), 1);
}

/// RFC 7143 section 11.14.1: reason 1 "close the connection" ends one
/// connection; the session goes on on the others.
#[test]
fn logout_of_one_connection_keeps_the_session() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    let extra = m.add();
    let task = m.s.logout_connection(m.now, extra).unwrap();
    m.flush();
    let t = m.t.get_mut(&extra).unwrap();
    let pdu = t.recv().unwrap();
    let Header::LogoutRequest(req) = pdu.header else {
        panic!("Logout Request on the connection itself")
    };
    assert_eq!(
        (req.reason, req.cid),
        (w::LogoutReason::CloseConnection, extra)
    );
    t.logout_response(req.itt, 0, 0);
    m.deliver(extra);
    assert!(matches!(m.outcome(task), Some(TaskOutcome::LoggedOut(_))));
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseConnection { cid, cause: None } if *cid == extra)));
    assert_eq!(m.s.connection_ids(), [m.primary()]);
    assert!(m.s.is_logged_in());
    let t2 =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let p = m.primary();
    let c = m.commands()[&p][0];
    m.ack(c.cmd_sn);
    m.t.get_mut(&p)
        .unwrap()
        .scsi_response(c.itt, 0, Residual::None, None);
    m.deliver(p);
    assert_eq!(m.completions(t2), 1);
}

/// RFC 7143 section 7.1.4.3 at ErrorRecoveryLevel 2 with MC/S: the failed
/// connection is logged out "with the reason code 'remove the connection
/// for recovery'" and its commands reassigned to another connection with
/// TASK REASSIGN; they are not sent again.
#[test]
fn a_failed_added_connection_moves_its_tasks_to_another() {
    let mut m = Mcs::new(2, Spread::RoundRobin);
    let extra = m.add();
    let primary = m.primary();
    let a =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    let b =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let got = m.commands();
    let (ca, cb) = (got[&primary][0], got[&extra][0]);
    m.ack(ca.cmd_sn);
    m.ack(cb.cmd_sn);
    m.s.handle_closed_on(extra, m.now);
    m.flush();
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseConnection { cid, cause: Some(_) } if *cid == extra)));
    assert!(m.s.is_logged_in());
    let t = m.t.get_mut(&primary).unwrap();
    let Header::LogoutRequest(lo) = t.recv().unwrap().header else {
        panic!("Logout reason 2 on the first connection")
    };
    assert_eq!(
        (lo.reason, lo.cid),
        (w::LogoutReason::RemoveForRecovery, extra)
    );
    t.logout_response(lo.itt, 2, 20);
    m.deliver(primary);
    let t = m.t.get_mut(&primary).unwrap();
    let Header::TaskMgmtRequest(r) = t.recv().unwrap().header else {
        panic!("TASK REASSIGN")
    };
    assert_eq!(
        (r.function, r.referenced_task_tag),
        (w::TmfFunction::TaskReassign, cb.itt)
    );
    t.tmf_response(r.itt, w::TmfResponse::FunctionComplete);
    t.scsi_response(cb.itt, 0, Residual::None, None);
    t.scsi_response(ca.itt, 0, Residual::None, None);
    m.deliver(primary);
    assert_eq!((m.completions(a), m.completions(b)), (1, 1));
    let again: usize = m.commands().values().map(|v| v.len()).sum();
    assert_eq!(again, 0, "no command sent twice");
}

/// Below ErrorRecoveryLevel 2 a task cannot leave its connection: a failed
/// added connection holding tasks means session recovery (RFC 7143 section
/// 7.1.5), and every added connection closes.
#[test]
fn below_level_2_a_failed_added_connection_fails_the_session() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    let extra = m.add();
    let _a =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    let b =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    m.s.handle_closed_on(extra, m.now);
    m.flush();
    assert!(m.s.is_closed(), "no recovery configured: {:?}", m.events);
    assert_eq!(m.completions(b), 1);
}

/// MC/S at ErrorRecoveryLevel 2: while the first connection is being
/// replaced, the others carry new commands (RFC 7143 section 4.2.2.1: the
/// CmdSN is session-wide, any connection may carry any command), and the
/// first one comes back into the same session.
#[test]
fn the_other_connections_carry_on_while_the_first_recovers() {
    let mut m = Mcs::new(2, Spread::RoundRobin);
    let extra = m.add();
    let primary = m.primary();
    let tsih = m.s.tsih();
    m.s.handle_closed(m.now);
    m.flush();
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::Recovering { .. })));
    let a =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let got = m.commands();
    assert_eq!(got[&extra].len(), 1, "sent on the connection that is up");
    let c = got[&extra][0];
    m.ack(c.cmd_sn);
    m.t.get_mut(&extra)
        .unwrap()
        .scsi_response(c.itt, 0, Residual::None, None);
    m.deliver(extra);
    assert_eq!(m.completions(a), 1);
    // The first connection comes back after Time2Wait, same TSIH.
    m.now += std::time::Duration::from_secs(2);
    m.s.handle_timeout(m.now);
    m.flush();
    m.login(0);
    assert!(m.s.is_connection_up(primary));
    assert_eq!(m.s.tsih(), tsih);
    let (l, _) = logins(&m.t[&primary]).into_iter().last().unwrap();
    assert_eq!(l.tsih, tsih);
}

fn pings(pdus: &[Pdu]) -> Vec<w::NopOut> {
    pdus.iter()
        .filter_map(|p| match p.header {
            Header::NopOut(n) if n.itt != u32::MAX => Some(n),
            _ => None,
        })
        .collect()
}

/// Each connection is watched on its own: RFC 7143 section 4.2.1 ("a
/// session is a group of TCP connections"), section 11.18 (NOP-Out "ping"
/// to verify that a connection is still active) and section 4.2.5.1 (the
/// answer comes on the connection the request went out on). Traffic on
/// the first connection does not keep an idle added one from being
/// pinged, and the other way round.
#[test]
fn every_connection_has_its_own_keepalive() {
    use std::time::Duration;
    let ka = Duration::from_secs(10);
    let mut m = Mcs::with(0, Spread::RoundRobin, |c| {
        c.with_keepalive(ka, Duration::from_secs(5))
    });
    let extra = m.add();
    let primary = m.primary();
    m.received();
    // Only the first connection's target talks (window updates) for a
    // while: the added connection idles.
    for _ in 0..4 {
        m.advance(Duration::from_secs(3));
        let t = m.t.get_mut(&primary).unwrap();
        let (e, x) = (t.exp_cmd_sn, t.max_cmd_sn);
        t.nop_in_update(e, x);
        m.deliver(primary);
    }
    let got = m.received();
    assert!(
        pings(&got[&primary]).is_empty(),
        "the busy connection is not pinged"
    );
    let p = pings(&got[&extra]);
    assert_eq!(p.len(), 1, "the idle added connection is pinged on itself");
    // It answers: still in the session.
    let t = m.t.get_mut(&extra).unwrap();
    t.nop_in_reply(&p[0], bytes::Bytes::new());
    m.deliver(extra);
    assert!(m.s.is_connection_up(extra));
    // Now only the added connection talks: the first one gets its ping.
    for _ in 0..4 {
        m.advance(Duration::from_secs(3));
        let t = m.t.get_mut(&extra).unwrap();
        let (e, x) = (t.exp_cmd_sn, t.max_cmd_sn);
        t.nop_in_update(e, x);
        m.deliver(extra);
    }
    let got = m.received();
    assert_eq!(
        pings(&got[&primary]).len(),
        1,
        "the idle first connection is pinged"
    );
    assert!(pings(&got[&extra]).is_empty());
    assert!(m.s.is_logged_in());
}

/// An added connection that does not answer its ping fails alone; with no
/// task on it the session and the first connection go on untouched (no
/// session recovery, no reconnect).
#[test]
fn an_unanswered_ping_fails_only_its_connection() {
    use std::time::Duration;
    let mut m = Mcs::with(0, Spread::RoundRobin, |c| {
        c.with_keepalive(Duration::from_secs(10), Duration::from_secs(5))
    });
    let extra = m.add();
    let primary = m.primary();
    let connects = |m: &Mcs| {
        m.events
            .iter()
            .filter(|e| matches!(e, Event::Connect { .. }))
            .count()
    };
    let before = connects(&m);
    for _ in 0..8 {
        m.advance(Duration::from_secs(2));
        // The first connection answers its pings; the added one is silent.
        let got = m.received();
        for n in pings(&got[&primary]) {
            m.t.get_mut(&primary)
                .unwrap()
                .nop_in_reply(&n, bytes::Bytes::new());
        }
        m.deliver(primary);
    }
    assert!(
        m.events.iter().any(|e| matches!(
            e,
            Event::CloseConnection { cid, cause: Some(iscsi_proto::error::ConnectionError::TimedOut(_)) } if *cid == extra
        )),
        "{:?}",
        m.events
    );
    assert!(m.s.is_logged_in());
    assert_eq!(m.s.connection_ids(), [primary]);
    assert_eq!(connects(&m), before, "no session recovery");
}

/// RFC 7143 section 11.9.1, AsyncEvent 2: "The Parameter1 field indicates
/// the CID of the connection that is going to be dropped"; section
/// 7.1.4.3: "The initiator MUST handle it as a TCP connection failure for
/// the connection(s) referred to in the Message." At ErrorRecoveryLevel 2
/// the dropped connection's task is reassigned; the other connections are
/// not touched.
#[test]
fn async_drop_connection_fails_only_the_named_connection() {
    let mut m = Mcs::new(2, Spread::RoundRobin);
    let extra = m.add();
    let third = m.add();
    let primary = m.primary();
    let a =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    let b =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    let c =
        m.s.submit(
            m.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    m.flush();
    let got = m.commands();
    let on_extra = got[&extra][0];
    for v in got.values() {
        for cmd in v {
            m.ack(cmd.cmd_sn);
        }
    }
    // The Async Message arrives on the first connection, naming `extra`.
    m.t.get_mut(&primary).unwrap().async_message(
        w::AsyncEvent::DropConnection,
        [extra, 0, 20],
        &[],
    );
    m.deliver(primary);
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseConnection { cid, cause: Some(_) } if *cid == extra)));
    assert!(m.s.is_connection_up(third), "the others are not touched");
    assert!(m.s.is_logged_in());
    let t = m.t.get_mut(&primary).unwrap();
    let Header::LogoutRequest(lo) = t.recv().unwrap().header else {
        panic!("Logout reason 2 for the dropped connection")
    };
    assert_eq!(
        (lo.reason, lo.cid),
        (w::LogoutReason::RemoveForRecovery, extra)
    );
    t.logout_response(lo.itt, 0, 20);
    m.deliver(primary);
    let t = m.t.get_mut(&primary).unwrap();
    let Header::TaskMgmtRequest(r) = t.recv().unwrap().header else {
        panic!("TASK REASSIGN")
    };
    assert_eq!(r.referenced_task_tag, on_extra.itt);
    t.tmf_response(r.itt, w::TmfResponse::FunctionComplete);
    t.scsi_response(on_extra.itt, 0, Residual::None, None);
    m.deliver(primary);
    // The tasks on the other connections end there.
    for (cid, v) in got.iter().filter(|(c, _)| **c != extra) {
        for cmd in v {
            m.t.get_mut(cid)
                .unwrap()
                .scsi_response(cmd.itt, 0, Residual::None, None);
        }
        m.deliver(*cid);
    }
    assert_eq!(
        (m.completions(a), m.completions(b), m.completions(c)),
        (1, 1, 1)
    );
    assert_eq!(m.s.connection_ids(), [primary, third]);
}

/// The same at ErrorRecoveryLevel 0 with nothing on the dropped
/// connection: it closes alone, the session goes on (no reconnect).
#[test]
fn async_drop_of_an_idle_added_connection_at_level_0() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    let extra = m.add();
    let primary = m.primary();
    m.t.get_mut(&extra)
        .unwrap()
        .async_message(w::AsyncEvent::DropConnection, [extra, 2, 0], &[]);
    m.deliver(extra);
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseConnection { cid, .. } if *cid == extra)));
    assert_eq!(m.s.connection_ids(), [primary]);
    assert!(m.s.is_logged_in());
    assert_eq!(
        m.events
            .iter()
            .filter(|e| matches!(e, Event::Connect { .. }))
            .count(),
        1
    );
}

/// RFC 7143 section 11.9.1, AsyncEvent 1: "This Async Message MUST be sent
/// on the same connection as the one requesting to be logged out ... The
/// initiator MUST send a Logout with a reason code of 'close the
/// connection' OR 'close the session'." Received on an added connection:
/// that connection is logged out alone (reason 1, section 11.14.1) once
/// its task is done, no new command goes to it meanwhile, and the session
/// and its first connection go on (UNH-IOL #14.2).
#[test]
fn async_logout_request_on_an_added_connection_logs_out_only_it() {
    let mut m = Mcs::new(0, Spread::RoundRobin);
    let extra = m.add();
    let primary = m.primary();
    let lun = iscsi_proto::scsi::Lun::ZERO;
    let a = m.s.submit(m.now, ScsiCommand::new(lun, &TUR[..])).unwrap();
    let b = m.s.submit(m.now, ScsiCommand::new(lun, &TUR[..])).unwrap();
    m.flush();
    let got = m.commands();
    let on_extra = got[&extra][0];
    let on_primary = got[&primary][0];
    m.ack(on_extra.cmd_sn);
    m.ack(on_primary.cmd_sn);
    m.t.get_mut(&extra)
        .unwrap()
        .async_message(w::AsyncEvent::LogoutRequested, [0, 0, 10], &[]);
    m.deliver(extra);
    // Its task is still out: no Logout yet, and new commands avoid it.
    let got = m.received();
    assert!(got[&extra].is_empty(), "{:?}", got[&extra]);
    assert!(
        got[&primary].is_empty(),
        "no session logout: {:?}",
        got[&primary]
    );
    let c = m.s.submit(m.now, ScsiCommand::new(lun, &TUR[..])).unwrap();
    let d = m.s.submit(m.now, ScsiCommand::new(lun, &TUR[..])).unwrap();
    m.flush();
    let got = m.commands();
    assert!(
        got[&extra].is_empty(),
        "a new command went to the leaving connection"
    );
    assert_eq!(got[&primary].len(), 2);
    for cmd in &got[&primary] {
        m.ack(cmd.cmd_sn);
        m.t.get_mut(&primary)
            .unwrap()
            .scsi_response(cmd.itt, 0, Residual::None, None);
    }
    m.t.get_mut(&primary)
        .unwrap()
        .scsi_response(on_primary.itt, 0, Residual::None, None);
    m.deliver(primary);
    // The task on it ends: the Logout Request (reason 1) goes out on it.
    m.t.get_mut(&extra)
        .unwrap()
        .scsi_response(on_extra.itt, 0, Residual::None, None);
    m.deliver(extra);
    let t = m.t.get_mut(&extra).unwrap();
    let Header::LogoutRequest(lo) = t.recv().unwrap().header else {
        panic!("Logout Request on the connection itself")
    };
    assert_eq!(
        (lo.reason, lo.cid),
        (w::LogoutReason::CloseConnection, extra)
    );
    t.logout_response(lo.itt, 0, 0);
    m.deliver(extra);
    assert!(m
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseConnection { cid, cause: None } if *cid == extra)));
    assert_eq!(m.s.connection_ids(), [primary]);
    assert!(m.s.is_logged_in());
    for t in [a, b, c, d] {
        assert_eq!(m.completions(t), 1);
    }
    assert_eq!(
        m.events
            .iter()
            .filter(|e| matches!(e, Event::Connect { .. }))
            .count(),
        1
    );
}
