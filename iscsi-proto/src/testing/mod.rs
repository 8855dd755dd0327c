//! Test support (feature `testing`): a scripted target that decodes the
//! initiator's PDUs and replies with PDUs the test chooses, a login
//! responder built on the crate's target-side negotiation and CHAP
//! engines, and [`Pair`], an in-memory harness moving bytes between a
//! [`Session`] and a [`ScriptedTarget`] on virtual time, with the byte
//! stream cut at chosen points.
//!
//! This module is for tests: its helpers panic (with a message) when a
//! test's expectation is not met.

// Test support: a panic is a test failure, so the crate's panic-policy lints
// do not apply here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod retain;

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::VecDeque;
use core::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::initiator::{Event, Session, SessionConfig, TaskId, TaskOutcome};
use crate::login::chap::{TargetChap, TargetChapConfig};
use crate::login::negotiation::{LoginStage, Negotiated, TargetConfig, TargetNegotiator};
use crate::wire::frame::{Digests, Pdu};
use crate::wire::pdu::{self as w, Header, Stage};
use crate::wire::text::{self, TextAssembler};
use crate::wire::{DecoderConfig, PduDecoder, Serial, WireError};

/// The reserved tag 0xffffffff.
pub const RESERVED: u32 = 0xffff_ffff;

/// A target whose every reply is chosen by the test.
#[derive(Debug)]
pub struct ScriptedTarget {
    decoder: PduDecoder,
    tx_digests: Digests,
    received: VecDeque<Pdu>,
    out: Vec<u8>,
    /// The StatSN the next status-bearing PDU gets.
    pub stat_sn: Serial,
    /// ExpCmdSN this target announces.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN this target announces.
    pub max_cmd_sn: Serial,
    /// Every PDU received since creation (for assertions).
    pub log: Vec<Pdu>,
    /// Every PDU sent on the current connection, kept for retransmission
    /// (RFC 7143 section 11.16, ErrorRecoveryLevel >= 1: see
    /// [`ScriptedTarget::serve_snack`]).
    pub retained: Vec<Pdu>,
}

impl Default for ScriptedTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedTarget {
    /// A target with StatSN 0x100, ExpCmdSN 1 and MaxCmdSN 32.
    pub fn new() -> Self {
        ScriptedTarget {
            decoder: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: 1 << 24,
            }),
            tx_digests: Digests::NONE,
            received: VecDeque::new(),
            out: Vec::new(),
            stat_sn: Serial(0x100),
            exp_cmd_sn: Serial(1),
            max_cmd_sn: Serial(32),
            log: Vec::new(),
            retained: Vec::new(),
        }
    }

    /// A new TCP connection: forget partial input and switch digests off.
    pub fn reconnect(&mut self) {
        self.decoder = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 1 << 24,
        });
        self.tx_digests = Digests::NONE;
        self.received.clear();
        self.out.clear();
        self.retained.clear();
    }

    /// Switches digests on both directions (after the final Login Response).
    pub fn set_digests(&mut self, d: Digests) {
        self.decoder.set_digests(d);
        self.tx_digests = d;
    }

    /// Decodes the initiator's bytes into the receive queue.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let mut buf = BytesMut::from(bytes);
        while let Some(pdu) = self.decoder.decode(&mut buf)? {
            self.log.push(pdu.clone());
            self.received.push_back(pdu);
        }
        assert!(buf.is_empty(), "the initiator sent a partial PDU");
        Ok(())
    }

    /// The next PDU received, if any.
    pub fn recv(&mut self) -> Option<Pdu> {
        self.received.pop_front()
    }

    /// The next PDU received; panics if there is none.
    pub fn expect(&mut self) -> Pdu {
        self.recv().expect("expected a PDU from the initiator")
    }

    /// Number of PDUs waiting in the receive queue.
    pub fn pending(&self) -> usize {
        self.received.len()
    }

    /// Encodes a PDU into the output stream.
    pub fn send(&mut self, header: impl Into<Header>, data: impl Into<Bytes>) {
        let pdu = Pdu::new(header, data.into());
        self.send_pdu(&pdu);
    }

    /// Encodes a PDU with AHS into the output stream.
    pub fn send_pdu(&mut self, pdu: &Pdu) {
        let mut b = BytesMut::new();
        pdu.encode(&mut b, self.tx_digests)
            .expect("scripted PDU encodes");
        self.out.extend_from_slice(&b);
        self.retained.push(pdu.clone());
    }

    /// Appends raw bytes to the output stream.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Takes the bytes for the initiator.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// Whether bytes wait for the initiator.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Takes the next StatSN.
    pub fn next_stat_sn(&mut self) -> Serial {
        let s = self.stat_sn;
        self.stat_sn = s.next();
        s
    }

    /// Acknowledges a non-immediate command with this CmdSN (advances
    /// ExpCmdSN and MaxCmdSN together, keeping the window size).
    pub fn ack_cmd(&mut self, cmd_sn: Serial) {
        if cmd_sn.follows_or_eq(self.exp_cmd_sn) {
            let n = cmd_sn.next().distance_from(self.exp_cmd_sn);
            self.exp_cmd_sn = self.exp_cmd_sn.plus(n);
            self.max_cmd_sn = self.max_cmd_sn.plus(n);
        }
    }

    /// A target ping (ITT 0xffffffff, TTT `ttt`): StatSN is the next one,
    /// not consumed.
    pub fn nop_in_ping(&mut self, ttt: u32, lun: u64, data: &[u8]) {
        let h = w::NopIn {
            lun,
            itt: RESERVED,
            ttt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
        };
        self.send(h, Bytes::copy_from_slice(data));
    }

    /// An unsolicited window update (NOP-In, ITT and TTT 0xffffffff).
    pub fn nop_in_update(&mut self, exp: Serial, max: Serial) {
        let h = w::NopIn {
            lun: 0,
            itt: RESERVED,
            ttt: RESERVED,
            stat_sn: self.stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
        };
        self.send(h, Bytes::new());
    }

    /// Answers an initiator NOP-Out ping (consumes a StatSN).
    pub fn nop_in_reply(&mut self, req: &w::NopOut, data: Bytes) {
        let h = w::NopIn {
            lun: req.lun,
            itt: req.itt,
            ttt: RESERVED,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
        };
        self.send(h, data);
    }

    /// A SCSI Response.
    pub fn scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        residual: w::Residual,
        sense: Option<&[u8]>,
    ) {
        let h = w::ScsiResponse {
            response: w::ScsiResponseCode::CommandCompleted,
            status,
            itt,
            snack_tag: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            exp_data_sn: Serial(0),
            bidi_read_residual: w::Residual::None,
            residual,
        };
        let data = match sense {
            Some(s) => {
                let mut d = Vec::with_capacity(s.len() + 2);
                d.extend_from_slice(&(s.len() as u16).to_be_bytes());
                d.extend_from_slice(s);
                Bytes::from(d)
            }
            None => Bytes::new(),
        };
        self.send(h, data);
    }

    /// A Data-In PDU; with `status` the S bit is set (phase collapse).
    pub fn data_in(
        &mut self,
        itt: u32,
        data_sn: u32,
        offset: u32,
        data: &[u8],
        status: Option<(u8, w::Residual)>,
    ) {
        let status = status.map(|(s, r)| w::DataInStatus {
            status: s,
            stat_sn: self.next_stat_sn(),
            residual: r,
        });
        let h = w::DataIn {
            final_pdu: status.is_some(),
            ack: false,
            lun: 0,
            itt,
            ttt: RESERVED,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            data_sn: Serial(data_sn),
            buffer_offset: offset,
            status,
        };
        self.send(h, Bytes::copy_from_slice(data));
    }

    /// An R2T.
    pub fn r2t(&mut self, itt: u32, ttt: u32, r2t_sn: u32, offset: u32, len: u32) {
        let h = w::R2t {
            lun: 0,
            itt,
            ttt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            r2t_sn: Serial(r2t_sn),
            buffer_offset: offset,
            desired_data_transfer_length: len,
        };
        self.send(h, Bytes::new());
    }

    /// A Task Management Function Response.
    pub fn tmf_response(&mut self, itt: u32, response: w::TmfResponse) {
        let h = w::TaskMgmtResponse {
            response,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
        };
        self.send(h, Bytes::new());
    }

    /// A Text Response.
    pub fn text_response(&mut self, itt: u32, final_pdu: bool, cont: bool, ttt: u32, data: &[u8]) {
        let h = w::TextResponse {
            final_pdu,
            cont,
            lun: 0,
            itt,
            ttt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
        };
        self.send(h, Bytes::copy_from_slice(data));
    }

    /// A Logout Response.
    pub fn logout_response(&mut self, itt: u32, time2wait: u16, time2retain: u16) {
        let h = w::LogoutResponse {
            response: w::LogoutResponseCode::Success,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            time2wait,
            time2retain,
        };
        self.send(h, Bytes::new());
    }

    /// An Asynchronous Message.
    pub fn async_message(&mut self, event: w::AsyncEvent, params: [u16; 3], data: &[u8]) {
        let h = w::AsyncMessage {
            lun: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            event,
            vcode: 0,
            parameter1: params[0],
            parameter2: params[1],
            parameter3: params[2],
        };
        self.send(h, Bytes::copy_from_slice(data));
    }

    /// A Reject carrying the header of `rejected`.
    pub fn reject(&mut self, reason: w::RejectReason, rejected: &Pdu) {
        let h = w::Reject {
            reason,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            data_sn_or_r2t_sn: Serial(0),
        };
        let bhs = rejected.header.to_bytes(0, rejected.data.len() as u32);
        self.send(h, Bytes::copy_from_slice(&bhs));
    }
}

/// What the login responder does with the next Login Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginScript {
    /// Negotiate normally.
    Accept,
    /// Answer with this status (class, detail) and these pairs.
    Status(u8, u8, Vec<(String, String)>),
}

/// A target-side login built on [`TargetNegotiator`] and [`TargetChap`].
pub struct LoginResponder {
    neg: TargetNegotiator,
    chap: Option<TargetChap>,
    chap_challenge: Vec<u8>,
    /// A wrong mutual CHAP response is sent when set.
    pub corrupt_mutual_response: bool,
    assembler: TextAssembler,
    /// TSIH of the new session.
    pub tsih: u16,
    /// Split text responses into segments of this size (C bit).
    pub max_segment: usize,
    pending_out: Option<(Bytes, bool, Stage, Stage)>,
    /// Scripted outcomes, consumed one per Login Request before negotiating.
    pub script: VecDeque<LoginScript>,
    /// Final window: (ExpCmdSN offset from the login CmdSN, window size).
    /// `(0, 0)` closes the window (MaxCmdSN = ExpCmdSN - 1).
    pub window: (u32, u32),
    /// The negotiated values once the final response was sent.
    pub negotiated: Option<Negotiated>,
    /// Number of Login Requests seen.
    pub requests: usize,
    login_itt: u32,
}

impl LoginResponder {
    /// A responder with the given target configuration and optional CHAP.
    pub fn new(cfg: TargetConfig, chap: Option<TargetChapConfig>) -> Self {
        LoginResponder {
            neg: TargetNegotiator::new(cfg).expect("valid target config"),
            chap: chap.map(|c| TargetChap::new(c).expect("valid CHAP config")),
            chap_challenge: (1..=16).collect(),
            corrupt_mutual_response: false,
            assembler: TextAssembler::new(),
            tsih: 0x0d,
            max_segment: 8192,
            pending_out: None,
            script: VecDeque::new(),
            window: (0, 32),
            negotiated: None,
            requests: 0,
            login_itt: 0,
        }
    }

    /// A responder with RFC defaults and no authentication.
    pub fn plain() -> Self {
        Self::new(TargetConfig::default(), None)
    }

    fn respond(
        &mut self,
        t: &mut ScriptedTarget,
        req: &w::LoginRequest,
        body: Bytes,
        transit: bool,
        csg: Stage,
        nsg: Stage,
    ) {
        let (seg, rest) = if body.len() > self.max_segment {
            (
                body.slice(..self.max_segment),
                body.slice(self.max_segment..),
            )
        } else {
            (body, Bytes::new())
        };
        let cont = !rest.is_empty();
        if cont {
            self.pending_out = Some((rest, transit, csg, nsg));
        }
        let final_ = transit && !cont && nsg == Stage::FullFeature;
        let (exp, max) = if final_ {
            let exp = req.cmd_sn.plus(self.window.0);
            (exp, exp.plus(self.window.1).minus(1))
        } else {
            (req.cmd_sn, req.cmd_sn)
        };
        if final_ {
            t.exp_cmd_sn = exp;
            t.max_cmd_sn = max;
        }
        let h = w::LoginResponse {
            transit: transit && !cont,
            cont,
            csg,
            nsg: if transit && !cont { nsg } else { csg },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: if final_ { self.tsih } else { 0 },
            itt: req.itt,
            stat_sn: t.next_stat_sn(),
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            status_class: 0,
            status_detail: 0,
        };
        t.send(h, seg);
    }

    /// Handles one PDU from the initiator; returns `true` once the final
    /// Login Response has been sent (digests are then switched on).
    pub fn handle(&mut self, t: &mut ScriptedTarget, pdu: &Pdu) -> bool {
        let Header::LoginRequest(req) = pdu.header else {
            panic!("expected a Login Request, got {:?}", pdu.header.opcode());
        };
        self.requests += 1;
        self.login_itt = req.itt;
        if let Some(LoginScript::Status(class, detail, pairs)) = self.script.pop_front() {
            let mut body = Vec::new();
            text::encode_pairs(
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &mut body,
            )
            .expect("encodable");
            let h = w::LoginResponse {
                transit: false,
                cont: false,
                csg: Stage::Security,
                nsg: Stage::Security,
                version_max: 0,
                version_active: 0,
                isid: req.isid,
                tsih: 0,
                itt: req.itt,
                stat_sn: t.next_stat_sn(),
                exp_cmd_sn: req.cmd_sn,
                max_cmd_sn: req.cmd_sn,
                status_class: class,
                status_detail: detail,
            };
            t.send(h, Bytes::from(body));
            return false;
        }
        if let Some((rest, transit, csg, nsg)) = self.pending_out.take() {
            assert!(
                pdu.data.is_empty(),
                "initiator must answer C=1 with an empty request"
            );
            self.respond(t, &req, rest, transit, csg, nsg);
            return false;
        }
        let pairs = self
            .assembler
            .push(&pdu.data, req.cont)
            .expect("valid login text");
        let Some(pairs) = pairs else {
            // C=1 from the initiator: answer with an empty response.
            self.respond(t, &req, Bytes::new(), false, req.csg, req.csg);
            return false;
        };
        let stage = if req.csg == Stage::Security {
            LoginStage::Security
        } else {
            LoginStage::Operational
        };
        let mut out = self.neg.handle_request(&pairs, stage).expect("negotiation");
        let mut transit = req.transit;
        if req.csg == Stage::Security {
            let chap_selected = self.neg.auth_method() == Some(crate::login::AuthMethod::Chap);
            if let (Some(chap), true) = (self.chap.as_mut(), chap_selected) {
                if pairs.iter().any(|(k, _)| k == "CHAP_A") {
                    out.extend(
                        chap.challenge(&pairs, 7, &self.chap_challenge)
                            .expect("CHAP_A"),
                    );
                    transit = false;
                } else if pairs.iter().any(|(k, _)| k == "CHAP_R") {
                    match chap.verify(&pairs) {
                        Ok(mut reply) => {
                            if self.corrupt_mutual_response {
                                for (k, v) in reply.iter_mut() {
                                    if k == "CHAP_R" {
                                        *v = "0x00112233445566778899aabbccddeeff".to_owned();
                                    }
                                }
                            }
                            out.extend(reply);
                        }
                        Err(_) => {
                            let h = w::LoginResponse {
                                transit: false,
                                cont: false,
                                csg: Stage::Security,
                                nsg: Stage::Security,
                                version_max: 0,
                                version_active: 0,
                                isid: req.isid,
                                tsih: 0,
                                itt: req.itt,
                                stat_sn: t.next_stat_sn(),
                                exp_cmd_sn: req.cmd_sn,
                                max_cmd_sn: req.cmd_sn,
                                status_class: 2,
                                status_detail: 1,
                            };
                            t.send(h, Bytes::new());
                            return false;
                        }
                    }
                } else {
                    transit = false;
                }
            }
        }
        let nsg = req.nsg;
        let done = transit && nsg == Stage::FullFeature;
        if done {
            self.negotiated = Some(self.neg.finish().expect("integrity"));
        }
        let mut body = Vec::new();
        text::encode_pairs(out.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut body)
            .expect("encodable");
        self.respond(t, &req, Bytes::from(body), transit, req.csg, nsg);
        if done && self.pending_out.is_none() {
            if let Some(n) = &self.negotiated {
                t.set_digests(Digests {
                    header: n.header_digest,
                    data: n.data_digest,
                });
            }
            return true;
        }
        false
    }
}

/// An initiator [`Session`] and a [`ScriptedTarget`] connected in memory.
pub struct Pair {
    /// The session under test.
    pub session: Session,
    /// The scripted peer.
    pub target: ScriptedTarget,
    /// Virtual time.
    pub now: Instant,
    /// Events drained from the session, in order.
    pub events: Vec<Event>,
    /// Chunk sizes (cycled) in which bytes reach the initiator; empty
    /// means all at once. 0 entries are treated as 1.
    pub cuts: Vec<usize>,
    cut_idx: usize,
    rx: BytesMut,
    /// `Event::Connect`s seen (the harness reconnects automatically).
    pub connects: Vec<Option<crate::initiator::NetworkPortal>>,
    /// Largest receive buffer the initiator had to hold.
    pub max_rx: usize,
}

impl Pair {
    /// A session created at a fixed virtual time and connected. An unset
    /// ISID gets fixed "random" bytes 12:34:56, as a driver would draw
    /// from the OS. Panics on a configuration `Session::new` refuses (test
    /// support only: build the session directly to test those).
    pub fn new(cfg: SessionConfig) -> Pair {
        let now = Instant::ZERO;
        let session = match crate::initiator::open_session(cfg, now, [0x12, 0x34, 0x56]) {
            Ok(s) => s,
            Err(e) => panic!("Pair::new: invalid configuration: {e}"),
        };
        let mut p = Pair {
            session,
            target: ScriptedTarget::new(),
            now,
            events: Vec::new(),
            cuts: Vec::new(),
            cut_idx: 0,
            rx: BytesMut::new(),
            connects: Vec::new(),
            max_rx: 0,
        };
        p.drain_events();
        p
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            if let Event::Connect { portal } = &ev {
                self.connects.push(portal.clone());
                self.rx.clear();
                self.target.reconnect();
                self.session.handle_connected(self.now);
            }
            self.events.push(ev);
        }
    }

    /// Moves everything the initiator wants to send to the target.
    pub fn flush(&mut self) {
        loop {
            self.drain_events();
            let mut any = false;
            while let Some(t) = self.session.poll_transmit(self.now) {
                any = true;
                let mut v = Vec::new();
                t.write_to(&mut v);
                self.target.feed(&v).expect("initiator PDUs decode");
            }
            self.drain_events();
            if !any {
                break;
            }
        }
    }

    /// Delivers the target's output to the initiator in `cuts`-sized
    /// chunks, then flushes the initiator's replies to the target.
    pub fn deliver(&mut self) {
        let out = self.target.take_output();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let n = if self.cuts.is_empty() {
                rest.len()
            } else {
                let c = self.cuts[self.cut_idx % self.cuts.len()].max(1);
                self.cut_idx += 1;
                c.min(rest.len())
            };
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            self.rx.extend_from_slice(chunk);
            self.max_rx = self.max_rx.max(self.rx.len());
            self.session.handle_input(self.now, &mut self.rx);
            self.drain_events();
        }
        self.flush();
    }

    /// Advances virtual time by `d`, firing the session's timer if due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
            self.session.handle_timeout(self.now);
        }
        self.flush();
    }

    /// Runs a login against `responder`; returns once the final response
    /// was delivered (or the session gave up).
    pub fn login_with(&mut self, responder: &mut LoginResponder) {
        for _ in 0..200 {
            self.flush();
            let mut done = false;
            while let Some(pdu) = self.target.recv() {
                done |= responder.handle(&mut self.target, &pdu);
            }
            self.deliver();
            if done || self.session.is_logged_in() || self.session.is_closed() {
                return;
            }
        }
        panic!("login did not finish");
    }

    /// A plain login with RFC defaults.
    pub fn login(&mut self) {
        let mut r = LoginResponder::plain();
        self.login_with(&mut r);
        assert!(
            self.session.is_logged_in(),
            "login failed: {:?}",
            self.events
        );
    }

    /// Takes the events gathered so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    /// The outcome of `task`, if it completed (searches the gathered events).
    pub fn outcome(&self, task: TaskId) -> Option<&TaskOutcome> {
        self.events.iter().find_map(|e| match e {
            Event::Complete { task: t, outcome } if *t == task => Some(outcome),
            _ => None,
        })
    }

    /// How many times `task` completed (must be 0 or 1).
    pub fn completions(&self, task: TaskId) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Complete { task: t, .. } if *t == task))
            .count()
    }

    /// The read data delivered for `task`, joined in offset order.
    pub fn read_data(&self, task: TaskId) -> Vec<u8> {
        let mut parts: Vec<(u32, &Bytes)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::DataIn {
                    task: t,
                    offset,
                    data,
                } if *t == task => Some((*offset, data)),
                _ => None,
            })
            .collect();
        parts.sort_by_key(|p| p.0);
        let mut v = Vec::new();
        for (_, d) in parts {
            v.extend_from_slice(d);
        }
        v
    }
}
