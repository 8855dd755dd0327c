//! One connection of a target session: the state RFC 7143 keeps per TCP
//! connection rather than per session (sections 4 and 13.2).
//!
//! A session (see [`super::Session`]) is the I_T nexus: ISID, TSIH, the
//! command window and the tasks. A connection carries the session's PDUs:
//! its CID, its own StatSN (section 4.2.2.2: "StatSN is a counter
//! maintained per connection"), its login phase (every
//! connection logs in, section 6.3), its digests and MaxRecvDataSegmentLength
//! in each direction (connection-scoped keys, section 13.1 and 13.12), its
//! queue of PDUs to write and its keepalive.
//!
//! A session owns one [`Connection`] per CID (MC/S, section 13.2), each
//! with its own StatSN and login, sharing the session's window and tasks;
//! at ErrorRecoveryLevel >= 1 each keeps its unacknowledged numbered
//! responses for Status SNACK.

use crate::time::Instant;
use alloc::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::config::NopConfig;
use super::retention::StatusLog;
use crate::login::chap::TargetChap;
use crate::login::negotiation::TargetNegotiator;
use crate::transmit::Transmit;
use crate::wire::frame::encode_header;
use crate::wire::text::TextAssembler;
use crate::wire::{
    data_trailer, DecoderConfig, Digests, Header, Pdu, PduDecoder, Serial, WireError,
};
use crate::wire::{Isid, Stage};

/// Largest data segment either side may send during the login phase
/// (RFC 7143 section 13.12: MaxRecvDataSegmentLength defaults to 8192 and
/// is only declared for the Full Feature Phase).
pub(in crate::target) const LOGIN_MAX_SEGMENT: u32 = 8192;

/// The phase of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Login phase (RFC 7143 section 6.3).
    Login,
    /// Full Feature Phase.
    FullFeature,
    /// The connection is over; only pending transmits remain.
    Closed,
}

// Per-connection state of the parts of the protocol (their handlers are
// in `session/`, one file per part).

/// Values fixed by the first Login Request.
#[derive(Debug, Clone, Copy)]
pub(in crate::target) struct FirstLogin {
    pub(in crate::target) isid: Isid,
    pub(in crate::target) tsih: u16,
    pub(in crate::target) cid: u16,
    pub(in crate::target) version_min: u8,
}

/// A Login Response text too long for one PDU, sent piece by piece.
#[derive(Debug, Clone)]
pub(in crate::target) struct PendingText {
    pub(in crate::target) text: Bytes,
    /// Transit and next stage of the last piece.
    pub(in crate::target) transit: bool,
    pub(in crate::target) nsg: Stage,
}

/// State of the login phase.
#[derive(Debug, Default)]
pub(in crate::target) struct LoginState {
    pub(in crate::target) first: Option<FirstLogin>,
    pub(in crate::target) stage: Option<Stage>,
    pub(in crate::target) negotiator: Option<TargetNegotiator>,
    pub(in crate::target) chap: Option<TargetChap>,
    pub(in crate::target) chap_required: bool,
    pub(in crate::target) authenticated: bool,
    pub(in crate::target) assembler: TextAssembler,
    pub(in crate::target) pending: Option<PendingText>,
}

impl LoginState {
    /// Drops any partial login text (the login phase is over).
    pub(in crate::target) fn reset_text(&mut self) {
        self.assembler.reset();
    }
}

/// NOP-In ping state of one connection (RFC 7143 section 11.19).
#[derive(Debug, Clone, Default)]
pub(in crate::target) struct NopState {
    /// When the last PDU arrived (the ping interval counts from there).
    pub(in crate::target) last_rx: Option<Instant>,
    /// The outstanding ping: its Target Transfer Tag and deadline.
    pub(in crate::target) ping: Option<(u32, Instant)>,
}

/// Text request/response exchange state (RFC 7143 sections 11.10, 11.11).
#[derive(Debug, Default)]
pub(in crate::target) enum TextPhase {
    /// No exchange in progress.
    #[default]
    Idle,
    /// The initiator sends a long text with C=1.
    Receiving {
        itt: u32,
        ttt: u32,
        assembler: TextAssembler,
    },
    /// We send a long response; the initiator fetches each piece.
    Sending { itt: u32, ttt: u32, rest: Bytes },
}

/// The per-connection state of a target session.
#[derive(Debug)]
pub(super) struct Connection {
    /// The CID the initiator gave in its first Login Request (RFC 7143
    /// section 11.12.7); 0 until then.
    pub(super) cid: u16,
    /// Login, Full Feature or Closed (RFC 7143 section 6.3: the login phase
    /// is per connection).
    pub(super) phase: Phase,
    /// The login state machine (RFC 7143 section 6.3).
    pub(super) login: LoginState,
    /// A text exchange in progress (RFC 7143 sections 11.10 and 11.11).
    pub(super) text: TextPhase,
    /// The NOP-In keepalive (RFC 7143 section 11.19).
    pub(super) nop: NopState,
    /// Largest data segment we may send: the initiator's
    /// MaxRecvDataSegmentLength (RFC 7143 section 13.12). Ours, the limit
    /// on what we receive, lives in the decoder.
    pub(super) max_send_segment: u32,
    /// The StatSN the next status-carrying PDU gets.
    stat_sn: Serial,
    decoder: PduDecoder,
    tx_digests: Digests,
    hdr_buf: BytesMut,
    transmits: VecDeque<Transmit>,
    rejects_sent: u64,
    /// The numbered responses kept for Status SNACK (ErrorRecoveryLevel
    /// >= 1, RFC 7143 section 11.16.1); None at level 0.
    pub(super) status_log: Option<StatusLog>,
    /// The StatSN taken for the PDU about to be pushed.
    pending_status: Option<Serial>,
}

impl Connection {
    /// A connection waiting for its first Login Request; `stat_sn` is the
    /// StatSN of the first response (RFC 7143 section 11.13.4: the target
    /// chooses it).
    pub(super) fn new(stat_sn: Serial) -> Connection {
        Connection {
            cid: 0,
            phase: Phase::Login,
            login: LoginState::default(),
            text: TextPhase::Idle,
            nop: NopState::default(),
            max_send_segment: LOGIN_MAX_SEGMENT,
            stat_sn,
            // RFC 7143 section 13.12: during login both sides use 8192.
            decoder: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: LOGIN_MAX_SEGMENT,
            }),
            tx_digests: Digests::NONE,
            hdr_buf: BytesMut::new(),
            transmits: VecDeque::new(),
            rejects_sent: 0,
            status_log: None,
            pending_status: None,
        }
    }

    /// The StatSN the next status-carrying PDU will carry (also what an
    /// R2T or a NOP-In ping carries without advancing it, RFC 7143
    /// sections 11.8.3 and 11.19.2).
    pub(super) fn stat_sn(&self) -> Serial {
        self.stat_sn
    }

    /// Takes the StatSN for a status-carrying PDU and advances it (RFC 7143
    /// section 4.2.2.2).
    pub(super) fn take_stat_sn(&mut self) -> Serial {
        let s = self.stat_sn;
        self.stat_sn = s.next();
        self.pending_status = Some(s);
        s
    }

    /// Decodes the next whole PDU of `buf`, if any.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Pdu>, WireError> {
        self.decoder.decode(buf)
    }

    /// Bytes 16-19 of the PDU `decode` just returned (its ITT field).
    pub(super) fn last_itt(&self) -> u32 {
        self.decoder.last_itt()
    }

    /// The header of the PDU the decoder just refused (for a Reject).
    pub(super) fn take_rejected_header(&mut self) -> Bytes {
        self.decoder.take_rejected_header().unwrap_or_default()
    }

    /// The login succeeded: digests and MaxRecvDataSegmentLength take
    /// effect "starting with the first PDU after the final Login Response"
    /// (RFC 7143 section 13.1), in both directions.
    pub(super) fn enter_full_feature(
        &mut self,
        now: Instant,
        digests: Digests,
        max_recv_segment: u32,
        max_send_segment: u32,
    ) {
        self.tx_digests = digests;
        self.decoder.set_digests(digests);
        self.decoder.set_max_data_segment_length(max_recv_segment);
        self.max_send_segment = max_send_segment;
        self.phase = Phase::FullFeature;
        self.nop.last_rx = Some(now);
        self.login.reset_text();
    }

    /// Queues a PDU; the header is encoded now, the data goes out as is.
    pub(super) fn push_pdu(&mut self, header: impl Into<Header>, data: Bytes) {
        let header = header.into();
        let Ok(len) = u32::try_from(data.len()) else {
            return;
        };
        // Every StatSN taken goes out in the next PDU pushed: keep it for
        // a Status SNACK (RFC 7143 section 11.16.1) when retention is on.
        if let Some(sn) = self.pending_status.take() {
            if let Some(log) = &mut self.status_log {
                log.record(sn, header, data.clone());
            }
        }
        if encode_header(&mut self.hdr_buf, &header, &[], len, self.tx_digests).is_err() {
            // Only a data segment above 2^24 - 1 bytes fails, and no caller
            // builds one (segments are cut to MaxRecvDataSegmentLength).
            self.hdr_buf.clear();
            return;
        }
        let trailer = data_trailer(&data, self.tx_digests);
        self.transmits
            .push_back(Transmit::new(&self.hdr_buf, data, trailer));
        self.hdr_buf.clear();
    }

    /// The next PDU to write.
    pub(super) fn pop_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// PDUs waiting to be written.
    pub(super) fn queued_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// Counts a Reject sent on this connection.
    pub(super) fn count_reject(&mut self) {
        self.rejects_sent = self.rejects_sent.saturating_add(1);
    }

    /// Reject PDUs sent on this connection.
    pub(super) fn rejects_sent(&self) -> u64 {
        self.rejects_sent
    }

    /// When this connection's keepalive next needs attention: the
    /// outstanding ping's deadline, or the end of the idle interval.
    pub(super) fn timeout(&self, nop: Option<NopConfig>) -> Option<Instant> {
        match (self.phase, self.nop.ping, nop) {
            (Phase::FullFeature, Some((_, deadline)), _) => Some(deadline),
            (Phase::FullFeature, None, Some(nop)) => self.nop.last_rx.map(|t| t + nop.interval),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{NopIn, BHS_LEN};
    use core::time::Duration;

    fn nop_in(stat_sn: Serial) -> NopIn {
        NopIn {
            lun: 0,
            itt: 1,
            ttt: 0xffff_ffff,
            stat_sn,
            exp_cmd_sn: Serial(0),
            max_cmd_sn: Serial(0),
        }
    }

    #[test]
    fn stat_sn_advances_only_when_taken() {
        // RFC 7143 section 4.2.2.2: "StatSN is a counter maintained per
        // connection"; section 11.8.3 (R2T): "The StatSN field will contain
        // the next StatSN. The StatSN for this connection is not advanced
        // after this PDU is sent."
        let mut c = Connection::new(Serial(u32::MAX));
        assert_eq!(c.stat_sn(), Serial(u32::MAX));
        assert_eq!(c.stat_sn(), Serial(u32::MAX));
        assert_eq!(c.take_stat_sn(), Serial(u32::MAX));
        // Serial arithmetic wraps (RFC 1982).
        assert_eq!(c.take_stat_sn(), Serial(0));
        assert_eq!(c.stat_sn(), Serial(1));
    }

    #[test]
    fn digests_apply_after_the_login() {
        // RFC 7143 section 13.1: digests are used "starting with the first
        // PDU after the final Login Response".
        let now = Instant::now();
        let mut c = Connection::new(Serial(0));
        c.push_pdu(nop_in(Serial(0)), Bytes::from_static(b"abcd"));
        let t = c.pop_transmit().unwrap();
        assert_eq!(t.header().len(), BHS_LEN);
        assert_eq!(t.len(), BHS_LEN + 4);
        c.enter_full_feature(now, Digests::BOTH, 8192, 512);
        assert_eq!(c.phase, Phase::FullFeature);
        assert_eq!(c.max_send_segment, 512);
        c.push_pdu(nop_in(Serial(1)), Bytes::from_static(b"abcd"));
        let t = c.pop_transmit().unwrap();
        assert_eq!(t.header().len(), BHS_LEN + 4);
        assert_eq!(t.len(), BHS_LEN + 4 + 4 + 4);
        assert!(c.pop_transmit().is_none());
        assert_eq!(c.queued_transmits(), 0);
    }

    #[test]
    fn keepalive_timer_only_in_full_feature() {
        // RFC 7143 section 11.19: the NOP-In ping belongs to the Full
        // Feature Phase; none is due during login.
        let now = Instant::now();
        let nop = NopConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        };
        let mut c = Connection::new(Serial(0));
        assert_eq!(c.timeout(Some(nop)), None);
        c.enter_full_feature(now, Digests::NONE, 8192, 8192);
        assert_eq!(c.timeout(None), None);
        assert_eq!(c.timeout(Some(nop)), Some(now + nop.interval));
        c.nop.ping = Some((7, now + Duration::from_secs(1)));
        assert_eq!(c.timeout(Some(nop)), Some(now + Duration::from_secs(1)));
    }
}
