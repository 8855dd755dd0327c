//! The target `Portal`'s driver contract for a session of several
//! connections whose decoding is paused (RFC 7143 section 13.2 MC/S; the
//! pause is the Portal's own flow control, `SessionConfig::
//! max_queued_transmits`).
//!
//! Regression for the hang of session 6 (`mcs/proxy-kill-one-of-4-erl2-
//! write-64mib` and `mcs/ours-erl2-4-connections` under load): two
//! connections of one session both had unread input and full transmit
//! queues; every `handle_input` on one touched the other, so the server's
//! `poll_touched` loop never ended and never went back to its socket
//! events, and the writable event that would have drained the queues was
//! never seen. The oracle: a driver that feeds every touched connection its
//! pending bytes, without sending anything (its sockets are full), reaches
//! a state where nothing is touched; and once it drains the transmits,
//! every pending PDU is answered.

mod target_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::target::{ConnectionHandle, Portal, PortalConfig, SessionConfig};
use iscsi_proto::time::Instant;
use iscsi_proto::wire::*;
use target_support::{kv, INITIATOR, TARGET};

/// PDUs a connection may have queued before its decoding pauses.
const QUEUE: usize = 2;

fn portal() -> Portal {
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.params.max_connections = 4;
    s.max_queued_transmits = QUEUE;
    Portal::new(PortalConfig::new(s), 3).unwrap()
}

fn encode(hd: impl Into<Header>, data: Bytes) -> BytesMut {
    let mut buf = BytesMut::new();
    Pdu::new(hd, data).encode(&mut buf, Digests::NONE).unwrap();
    buf
}

fn take(p: &mut Portal, h: ConnectionHandle, now: Instant) -> Vec<Pdu> {
    let mut dec = PduDecoder::new(DecoderConfig {
        digests: Digests::NONE,
        max_data_segment_length: 0x00ff_ffff,
    });
    let mut buf = BytesMut::new();
    while let Some(t) = p.poll_transmit(h, now) {
        t.write_to(&mut buf);
    }
    std::iter::from_fn(|| dec.decode(&mut buf).unwrap()).collect()
}

/// Logs connection `cid` in (TSIH 0 for the first); returns the TSIH.
fn login(p: &mut Portal, now: Instant, cid: u16, tsih: u16) -> (ConnectionHandle, u16) {
    let h = p.accept(now, None).unwrap();
    let req = LoginRequest {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_min: 0,
        isid: Isid::from_fields(0, 1, 2, 3, 7),
        tsih,
        itt: 1,
        cid,
        cmd_sn: Serial(1),
        exp_stat_sn: Serial(0),
    };
    let mut keys = vec![
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
    ];
    if tsih == 0 {
        keys.push(("MaxConnections", "4"));
    }
    let mut buf = encode(req, kv(&keys));
    p.handle_input(h, now, &mut buf);
    while p.poll_event().is_some() {}
    let r = take(p, h, now);
    let Header::LoginResponse(resp) = r[0].header else {
        panic!("{r:?}")
    };
    assert_eq!(resp.status_class, 0, "login of cid {cid}");
    (h, resp.tsih)
}

/// `n` NOP-Out pings (each wants a NOP-In) on one connection, as one
/// buffer of bytes, with CmdSN from `cmd_sn` (immediate: no CmdSN use).
fn pings(n: u32, itt0: u32, cmd_sn: Serial) -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..n {
        buf.extend_from_slice(&encode(
            NopOut {
                immediate: true,
                lun: 0,
                itt: itt0 + i,
                ttt: 0xffff_ffff,
                cmd_sn,
                exp_stat_sn: Serial(0),
            },
            Bytes::new(),
        ));
    }
    buf
}

#[test]
fn paused_connections_of_one_session_do_not_touch_each_other_for_ever() {
    // RFC 7143 section 13.2: a session of several connections; section
    // 11.18/11.19: each NOP-Out with a valid ITT is answered by a NOP-In on
    // the same connection (6.4 connection allegiance).
    let now = Instant::from_millis(5_000);
    let mut p = portal();
    let (a, tsih) = login(&mut p, now, 1, 0);
    let (b, _) = login(&mut p, now, 2, tsih);
    let (c, _) = login(&mut p, now, 3, tsih);
    while p.poll_touched().is_some() {}
    // Every connection gets more pings than its queue holds; nothing is
    // sent (the driver's sockets are full), so decoding pauses on each.
    let per_conn = (QUEUE as u32) * 3;
    let mut pending = [
        (a, pings(per_conn, 0x100, Serial(1))),
        (b, pings(per_conn, 0x200, Serial(1))),
        (c, pings(per_conn, 0x300, Serial(1))),
    ];
    for (h, buf) in pending.iter_mut() {
        p.handle_input(*h, now, buf);
    }
    assert!(
        pending.iter().all(|(_, b)| !b.is_empty()),
        "decoding should pause with {QUEUE} transmits queued"
    );
    // The driver's loop: drive every touched connection (feed its pending
    // bytes). It must end: a paused connection that consumed nothing has
    // changed nothing its siblings must look at.
    let mut rounds = 0;
    while let Some(h) = p.poll_touched() {
        rounds += 1;
        assert!(rounds < 100, "poll_touched never empties: a livelock");
        if let Some((_, buf)) = pending.iter_mut().find(|(x, _)| *x == h) {
            p.handle_input(h, now, buf);
        }
    }
    // Sockets writable again: the driver drains and feeds until nothing
    // moves; every ping is then answered exactly once on its connection.
    let mut answered = vec![Vec::new(); pending.len()];
    loop {
        let mut moved = false;
        for (i, (h, buf)) in pending.iter_mut().enumerate() {
            for pdu in take(&mut p, *h, now) {
                if let Header::NopIn(n) = pdu.header {
                    answered[i].push(n.itt);
                }
                moved = true;
            }
            let before = buf.len();
            p.handle_input(*h, now, buf);
            moved |= buf.len() != before;
        }
        while p.poll_touched().is_some() {}
        if !moved {
            break;
        }
    }
    for (i, base) in [0x100u32, 0x200, 0x300].into_iter().enumerate() {
        let want: Vec<u32> = (0..per_conn).map(|k| base + k).collect();
        assert_eq!(answered[i], want, "connection {i}");
    }
}
