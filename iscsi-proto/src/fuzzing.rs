//! Entry points for the cargo-fuzz targets (feature `fuzzing`). Each
//! function takes arbitrary bytes and panics only on a bug.

use crate::prelude::*;
use bytes::BytesMut;

use crate::wire::bhs::{Bhs, BHS_LEN};
use crate::wire::decoder::{DecoderConfig, PduDecoder};
use crate::wire::error::WireError;
use crate::wire::frame::{Digests, Pdu};
use crate::wire::pdu::Header;

const ALL_DIGESTS: [Digests; 4] = [
    Digests {
        header: false,
        data: false,
    },
    Digests {
        header: true,
        data: false,
    },
    Digests {
        header: false,
        data: true,
    },
    Digests {
        header: true,
        data: true,
    },
];

/// Feeds `input` to a decoder in chunks whose sizes come from `sizes`
/// (cycled; 0 means "everything left"), collecting every result until the
/// input is exhausted or a fatal error stops the stream. Asserts that the
/// receive buffer never holds more than one maximal PDU plus one chunk.
fn decode_chunked(
    config: DecoderConfig,
    input: &[u8],
    sizes: &[u8],
) -> Vec<Result<Pdu, WireError>> {
    let mut dec = PduDecoder::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0usize;
    while !rest.is_empty() {
        let want = match sizes.get(i % sizes.len().max(1)) {
            Some(0) | None => rest.len(),
            Some(n) => usize::from(*n),
        };
        i = i.wrapping_add(1);
        let (chunk, tail) = rest.split_at(want.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(pdu)) => out.push(Ok(pdu)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    if !fatal {
                        assert!(dec.take_rejected_header().is_some());
                    }
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
        // Bounded buffering: an incomplete PDU is never longer than the
        // largest PDU the settings accept.
        assert!(buf.len() < dec.max_pdu_len());
        assert!(dec.needed(&buf) > 0);
    }
    out
}

/// Decodes arbitrary bytes under every digest setting, whole and in
/// chunkings derived from the input, asserting no panic, bounded
/// buffering and identical results for every chunking.
pub fn pdu_decode(data: &[u8]) {
    let (ctrl, input) = data.split_at(data.len().min(4));
    let max = match ctrl.first() {
        Some(b) => u32::from(*b) * 64,
        None => 8192,
    };
    for digests in ALL_DIGESTS {
        let config = DecoderConfig {
            digests,
            max_data_segment_length: max,
        };
        let whole = decode_chunked(config, input, &[0]);
        let sizes: Vec<u8> = ctrl.iter().map(|b| b % 61 + 1).collect();
        let chunked = decode_chunked(config, input, &sizes);
        assert_eq!(whole, chunked);
        let bytewise = decode_chunked(config, input, &[1]);
        assert_eq!(whole, bytewise);
    }
}

/// Parses arbitrary bytes as a BHS and as a whole PDU; whatever parses is
/// emitted again and must parse to the same value.
pub fn roundtrip(data: &[u8]) {
    if let Some(b) = data.get(..BHS_LEN) {
        let bhs = Bhs::new_unchecked(b);
        if let Ok(h) = Header::parse(&bhs) {
            let bytes = h.to_bytes(bhs.total_ahs_len(), bhs.data_segment_len());
            assert_eq!(Header::parse_bytes(&bytes), Ok(h));
        }
    }
    let mut dec = PduDecoder::new(DecoderConfig {
        digests: Digests::NONE,
        max_data_segment_length: 0x00ff_ffff,
    });
    let mut buf = BytesMut::from(data);
    if let Ok(Some(pdu)) = dec.decode(&mut buf) {
        for digests in ALL_DIGESTS {
            let mut out = BytesMut::new();
            assert!(pdu.encode(&mut out, digests).is_ok());
            assert_eq!(out.len(), pdu.encoded_len(digests));
            dec.set_digests(digests);
            let again = dec.decode(&mut out);
            assert_eq!(again, Ok(Some(pdu.clone())));
            assert!(out.is_empty());
        }
    }
}

/// Fuzz entry point `text_kv`: arbitrary bytes through the text key=value
/// codec (streaming assembly with the C bit, every value parser) and the
/// negotiation engines of both sides. Nothing may panic.
pub fn text_kv(data: &[u8]) {
    crate::wire::text::fuzz_text_kv(data);
    crate::login::negotiation::fuzz_negotiation(data);
    if let Ok(pairs) = crate::wire::text::parse_pairs(data) {
        let _ = crate::login::discovery::parse_send_targets(&pairs);
    }
}

/// Fuzz entry point `target_stream`: arbitrary initiator bytes into a
/// target session, in the login phase or (with a valid login prepended)
/// in the Full Feature Phase, cut into reads at points taken from the
/// input. Every delivered command is completed with data, timers run, and
/// nothing may panic; the receive buffer never holds more than one PDU
/// beyond what the decoder accepts.
pub fn target_stream(data: &[u8]) {
    use crate::scsi::ScsiStatus;
    use crate::target::{Event as TargetEvent, NopConfig, Session, SessionConfig as TargetConfig};
    use crate::time::Instant;
    use crate::wire::pdu::{LoginRequest, Stage};
    use crate::wire::{Isid, Serial};
    use bytes::Bytes;
    use core::time::Duration;

    let (ctrl, input) = data.split_at(data.len().min(3));
    let mode = ctrl.first().copied().unwrap_or(0);
    let chunk = usize::from(ctrl.get(1).copied().unwrap_or(0)) + 1;
    let mut cfg = TargetConfig::new("iqn.2024-01.fuzz:t");
    cfg.seed = u64::from(ctrl.get(2).copied().unwrap_or(0));
    cfg.params.initial_r2t = mode & 2 == 0;
    cfg.params.immediate_data = mode & 4 != 0;
    cfg.params.max_recv_data_segment_length = 4096;
    cfg.params.first_burst_length = 4096;
    cfg.params.max_burst_length = 8192;
    cfg.cmd_window = 4;
    cfg.max_transfer_length = 1 << 16;
    cfg.nop = Some(NopConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    });
    let Ok(mut s) = Session::new(cfg) else {
        return;
    };
    let mut stream = BytesMut::new();
    if mode & 1 == 1 {
        let text: &[u8] = b"InitiatorName=iqn.2024-01.fuzz:i\0TargetName=iqn.2024-01.fuzz:t\0\
MaxBurstLength=8192\0FirstBurstLength=4096\0InitialR2T=No\0ImmediateData=Yes\0";
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: Isid::random([1, 2, 3], 1),
            tsih: 0,
            itt: 1,
            cid: 1,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        let _ = Pdu::new(req, Bytes::from_static(text)).encode(&mut stream, Digests::NONE);
    }
    stream.extend_from_slice(input);
    let mut now = Instant::ZERO;
    let mut buf = BytesMut::new();
    let mut rest = &stream[..];
    let mut round = 0u32;
    loop {
        let (piece, tail) = rest.split_at(chunk.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        // Drain completely (the transmit queue has a high-water mark).
        for _ in 0..64 {
            s.handle_input(now, &mut buf);
            let mut sent = 0;
            while s.poll_transmit(now).is_some() {
                sent += 1;
            }
            while let Some(ev) = s.poll_event() {
                if let TargetEvent::Command(req) = ev {
                    let len = req.expected_read_len as usize + usize::from(mode >> 4);
                    let _ = s.complete(
                        req.task,
                        ScsiStatus::Good,
                        None,
                        Bytes::from(vec![0u8; len]),
                    );
                }
            }
            if sent == 0 {
                break;
            }
        }
        assert!(s.is_closed() || buf.len() < 8192 + 1200 + chunk);
        round = round.wrapping_add(1);
        if round % 8 == 0 {
            now += Duration::from_millis(700);
            s.handle_timeout(now);
        }
        if rest.is_empty() || s.is_closed() {
            break;
        }
    }
    while s.poll_transmit(now).is_some() {}
    while s.poll_event().is_some() {}
}

// ----------------------------------------------------------------------
// Initiator session entry points.
// ----------------------------------------------------------------------

use crate::time::Instant;
use core::time::Duration;

use bytes::Bytes;

use crate::initiator::coalesce::MAX_MARK;
use crate::initiator::{
    Auth, Coalesce, Event, ExpectedInput, LogoutMode, LowWater, ScsiCommand, Session,
    SessionConfig, TaskId,
};
use crate::wire::pdu::{LoginResponse, Stage, TmfFunction};
use crate::wire::serial::Serial;

/// Drains everything the session wants to send and report; returns the
/// transmits (decoded later by callers that care) and asserts the event
/// queue stays small relative to the input.
fn drain(s: &mut Session, now: Instant, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    while let Some(t) = s.poll_transmit(now) {
        assert!(t.len() >= BHS_LEN);
        out.clear();
        t.write_to(out);
        assert_eq!(out.len(), t.len());
    }
    while s.poll_event().is_some() {
        n += 1;
    }
    n
}

fn fuzz_config(ctrl: u8) -> SessionConfig {
    let mut cfg = SessionConfig::new("iqn.2024-01.fuzz:init");
    if ctrl & 1 == 0 {
        cfg = cfg.with_target("iqn.2024-01.fuzz:tgt");
    }
    match (ctrl >> 1) & 3 {
        1 => cfg.auth = Auth::chap("user", "secret-secret"),
        2 => {
            cfg.auth = Auth::mutual_chap("user", "secret-secret", "tgt", "other-secret");
            cfg.chap_challenge = (0..16).collect();
        }
        _ => {}
    }
    if ctrl & 8 != 0 {
        cfg = cfg.with_keepalive(Duration::from_secs(5), Duration::from_secs(2));
    }
    if ctrl & 16 != 0 {
        cfg = cfg.with_recovery(crate::initiator::Recovery::default());
    }
    cfg
}

/// Feeds `input` to the session in chunks sized by `sizes`, asserting
/// the receive buffer stays bounded by one PDU plus one chunk.
fn feed(s: &mut Session, now: Instant, buf: &mut BytesMut, input: &[u8], out: &mut Vec<u8>) {
    buf.extend_from_slice(input);
    s.handle_input(now, buf);
    drain(s, now, out);
    assert!(buf.len() <= s.max_recv_pdu_len().saturating_add(input.len()));
}

/// Fuzz entry point `login_initiator`: a session in its login phase fed
/// arbitrary target bytes (the first Login Response's ITT and ISID fixed up
/// to match the request when the control byte asks, so the fuzzer gets past
/// those checks), with timeouts in between. Never panics; memory bounded.
pub fn login_initiator(data: &[u8]) {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let base = Instant::ZERO;
    let Ok(mut s) = crate::initiator::open_session(fuzz_config(ctrl), base, [1, 2, 3]) else {
        return;
    };
    let mut out = Vec::new();
    drain(&mut s, base, &mut out);
    s.handle_connected(base);
    let mut req = Vec::new();
    if let Some(t) = s.poll_transmit(base) {
        t.write_to(&mut req);
    }
    drain(&mut s, base, &mut out);
    let mut input = rest.to_vec();
    if ctrl & 0x80 != 0 {
        // Copy ISID/TSIH (8..16) and ITT (16..20) from the request.
        if let (Some(dst), Some(src)) = (input.get_mut(8..20), req.get(8..20)) {
            dst.copy_from_slice(src);
        }
    }
    let mut buf = BytesMut::new();
    let mut now = base;
    for (i, chunk) in input
        .chunks(usize::from(ctrl & 0x3f).max(1) * 7)
        .enumerate()
    {
        feed(&mut s, now, &mut buf, chunk, &mut out);
        if i % 5 == 4 {
            now += Duration::from_secs(3);
            s.handle_timeout(now);
            drain(&mut s, now, &mut out);
        }
        if s.is_closed() {
            break;
        }
    }
    s.handle_closed(now);
    drain(&mut s, now, &mut out);
}

/// A session logged in against a synthesized final Login Response (window
/// of 8 commands, no digests, defaults).
fn logged_in(ctrl: u8, now: Instant) -> Option<Session> {
    let cfg = fuzz_config(ctrl & !0b110);
    let mut s = crate::initiator::open_session(cfg, now, [1, 2, 3]).ok()?;
    let mut out = Vec::new();
    drain(&mut s, now, &mut out);
    s.handle_connected(now);
    let t = s.poll_transmit(now)?;
    let req = Header::parse_bytes(t.header()).ok()?;
    let Header::LoginRequest(req) = req else {
        return None;
    };
    let resp = LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 1,
        itt: req.itt,
        stat_sn: Serial(0x10),
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn: req.cmd_sn.plus(7),
        status_class: 0,
        status_detail: 0,
    };
    let mut buf = BytesMut::new();
    Pdu::new(resp, Bytes::from_static(b"TargetPortalGroupTag=1\0"))
        .encode(&mut buf, Digests::NONE)
        .ok()?;
    s.handle_input(now, &mut buf);
    drain(&mut s, now, &mut out);
    s.is_logged_in().then_some(s)
}

/// Fuzz entry point `initiator_stream`: a logged-in session fed arbitrary
/// target bytes interleaved with caller actions derived from the input
/// (submissions of reads, writes and long CDBs, pings, aborts, task
/// management, SendTargets, logout, timeouts, connection loss). Never
/// panics; the receive buffer, the task table and the queues stay bounded.
pub fn initiator_stream(data: &[u8]) {
    let Some((&ctrl, mut rest)) = data.split_first() else {
        return;
    };
    let base = Instant::ZERO;
    let Some(mut s) = logged_in(ctrl, base) else {
        return;
    };
    let mut now = base;
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut tasks: Vec<TaskId> = Vec::new();
    let write_buf = Bytes::from(vec![0x5au8; 70_000]);
    // The receive coalescing planner rides along, as a driver would use it.
    let mut lw = LowWater::new(Coalesce::default());
    let mut steps = 0;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        steps += 1;
        if steps > 4096 {
            break;
        }
        let arg = usize::from(op >> 4);
        match op & 0x0f {
            0..=5 => {
                let n = (arg + 1) * 13;
                let (chunk, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                lw.on_input(chunk.len(), now);
                feed(&mut s, now, &mut buf, chunk, &mut out);
            }
            6 => {
                let cmd = ScsiCommand::read(
                    crate::scsi::Lun::ZERO,
                    &[0x28u8; 10][..],
                    (arg as u32 + 1) * 512,
                );
                if let Ok(t) = s.submit(now, cmd) {
                    tasks.push(t);
                }
            }
            7 => {
                let len = (arg + 1) * 4000;
                let cmd = ScsiCommand::write(
                    crate::scsi::Lun::ZERO,
                    &[0x2au8; 10][..],
                    write_buf.slice(..len),
                );
                if let Ok(t) = s.submit(now, cmd) {
                    tasks.push(t);
                }
            }
            8 => {
                let cdb: Vec<u8> = (0..(16 + arg * 15) as u8).collect();
                if let Ok(t) = s.submit(
                    now,
                    ScsiCommand::new(crate::scsi::Lun::from_u64(arg as u64), cdb),
                ) {
                    tasks.push(t);
                }
            }
            9 => {
                if let Ok(t) = s.nop_ping(now, Bytes::from(vec![0u8; arg])) {
                    tasks.push(t);
                }
            }
            10 => {
                if let Some(&t) = tasks.get(arg % tasks.len().max(1)) {
                    if let Ok(t) = s.abort_task(now, t) {
                        tasks.push(t);
                    }
                }
            }
            11 => {
                let f = TmfFunction::from_u8((arg % 9) as u8);
                if let Ok(t) = s.task_management(now, 0, f) {
                    tasks.push(t);
                }
            }
            12 => {
                if let Ok(t) = s.send_targets(now) {
                    tasks.push(t);
                }
            }
            13 => {
                let mode = if arg & 1 == 0 {
                    LogoutMode::WaitForTasks
                } else {
                    LogoutMode::AbortTasks
                };
                if let Ok(t) = s.logout(now, mode) {
                    tasks.push(t);
                }
            }
            14 => {
                now += Duration::from_millis(250 * (arg as u64 + 1));
                if lw.deadline().is_some_and(|d| d <= now) {
                    let _ = lw.timeout();
                }
                s.handle_timeout(now);
            }
            _ => {
                if arg == 15 {
                    s.handle_closed(now);
                    buf.clear();
                }
                // Follow a reconnection request at once.
            }
        }
        let mut reconnect = false;
        while let Some(t) = s.poll_transmit(now) {
            out.clear();
            t.write_to(&mut out);
        }
        while let Some(ev) = s.poll_event() {
            if let Event::Connect { .. } = ev {
                reconnect = true;
            }
        }
        if reconnect {
            buf.clear();
            lw.reset();
            s.handle_connected(now);
            drain(&mut s, now, &mut out);
        }
        let _ = lw.plan(&s, buf.len(), s.has_transmit(), now);
        assert!((1..=MAX_MARK).contains(&lw.mark()));
        assert_eq!(lw.deadline().is_some(), lw.mark() > 1);
        // Both counts are O(tasks): checked every 32 steps (and at the
        // end) so that long inputs stay fast to execute.
        if steps % 32 == 0 {
            check_counts(&s, tasks.len());
            check_expected_input(&s);
        }
        if s.is_closed() {
            break;
        }
    }
    check_counts(&s, tasks.len());
    check_expected_input(&s);
}

/// What the target owes grows with the number of tasks asked about, and
/// the task count does not depend on it.
fn check_expected_input(s: &Session) {
    let all = s.expected_input(64);
    assert_eq!(
        s.expected_input(0),
        ExpectedInput {
            tasks: all.tasks,
            bytes: 0
        }
    );
    let (one, two) = (s.expected_input(1), s.expected_input(2));
    assert!(one.bytes <= two.bytes && two.bytes <= all.bytes);
    assert_eq!((one.tasks, two.tasks), (all.tasks, all.tasks));
}

/// The caller's tasks in flight and queued never exceed what was submitted.
fn check_counts(s: &Session, submitted: usize) {
    assert!(s.tasks_in_flight() <= submitted);
    assert!(s.queued_commands() <= submitted);
}
