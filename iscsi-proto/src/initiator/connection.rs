//! One TCP connection of an initiator session: what RFC 7143 keeps per
//! connection rather than per session.
//!
//! RFC 7143 section 4.2.1 (Layers and Sessions): a session is a group of
//! TCP connections, each with its own CID. Per connection are the status
//! numbering (section 4.2.2.2: "StatSN is a counter maintained per
//! connection"), the login that adds it to the session (section 6), the
//! connection-only keys (section 13: HeaderDigest, DataDigest and
//! MaxRecvDataSegmentLength, declared separately in each direction) and the
//! byte streams, hence the PDU decoder, the transmit queues and keepalive.
//! The CmdSN window, the tasks and the session-wide keys are the
//! [`Session`](super::Session)'s.
//!
//! A session has its first [`Connection`] and, with MC/S (RFC 7143
//! section 13.2), more (`session/mcs.rs`). Each task records the CID of
//! the connection its command went out on (its connection allegiance,
//! section 4.2.5.1; see
//! [`Session::task_connection`](super::Session::task_connection)); a
//! received PDU acknowledges StatSN on its own connection (section
//! 4.2.2.2) while the window update it carries is session-wide (section
//! 4.2.2.1). Connection recovery (ErrorRecoveryLevel 2, section 7.1.4.3)
//! replaces a connection and moves its tasks with TASK REASSIGN
//! (`session/erl2.rs`).

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::session::login::Login;
use super::stat_sn::StatSnTracker;
use crate::transmit::Transmit;
use crate::wire::ahs::Ahs;
use crate::wire::bhs::{Bhs, BHS_LEN};
use crate::wire::digest::{digest_from_bytes, header_digest};
use crate::wire::frame::{data_trailer, encode_header, pdu_len, Digests};
use crate::wire::pdu::{self as w, Header};
use crate::wire::{DecoderConfig, PduDecoder, Serial, WireError};

/// MaxRecvDataSegmentLength in effect during login (RFC 7143 section 13.12:
/// the default, 8192, applies until the key is negotiated).
pub(crate) const LOGIN_MRDSL: u32 = 8192;

/// Where a connection is in its life (RFC 7143 section 8.1, the
/// initiator's connection states, from waiting for the transport to the
/// Full Feature Phase).
pub(super) enum ConnState {
    /// Waiting for the driver's TCP connect (`Event::Connect` was emitted).
    Connecting,
    /// Login in progress (RFC 7143 section 6).
    Login(Box<Login>),
    /// Full Feature Phase.
    Full,
}

/// What [`Connection::skip_bad_header`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resync {
    /// The PDU with the bad header is gone; the stream goes on.
    Skipped,
    /// Not enough bytes yet to check where the next PDU starts.
    NeedMore,
    /// Where the next PDU starts cannot be trusted: close the connection.
    Lost,
}

/// A PDU queued for one connection, encoded when it leaves.
pub(super) struct OutPdu {
    pub(super) header: Header,
    pub(super) ahs: Vec<Ahs>,
    pub(super) data: Bytes,
    pub(super) digests: Digests,
    /// Data-Out: the task it belongs to (skipped once the task is gone) and
    /// whether it ends an R2T sequence.
    pub(super) data_out: Option<(u32, bool)>,
    /// A non-immediate command holding a CmdSN.
    pub(super) numbered: bool,
}

/// The per-connection state of an initiator session (see the module
/// documentation). Read it through [`Session::connection`](super::Session::connection).
pub struct Connection {
    pub(super) cid: u16,
    pub(super) state: ConnState,
    pub(super) stat_sn: StatSnTracker,
    pub(super) decoder: PduDecoder,
    /// Digests of what we send (RFC 7143 section 13.1, from the Login
    /// Response that ends the login).
    pub(super) tx_digests: Digests,
    /// MaxRecvDataSegmentLength we declared: the longest data segment we
    /// accept (RFC 7143 section 13.12).
    pub(super) initiator_mrdsl: u32,
    /// MaxRecvDataSegmentLength the target declared: the longest data
    /// segment we may send.
    pub(super) target_mrdsl: u32,
    /// PDUs sent ahead of `tx` (answers to the target's pings).
    pub(super) urgent: VecDeque<OutPdu>,
    pub(super) tx: VecDeque<OutPdu>,
    /// Non-immediate commands in `tx` (they hold CmdSNs not yet sent).
    pub(super) queued_numbered: u32,
    /// Encoding buffer for the header of the PDU leaving.
    scratch: BytesMut,
    /// When the last PDU arrived (keepalive idles from here).
    pub(super) last_rx: Instant,
    /// When the connection entered the Full Feature Phase.
    pub(super) logged_in_at: Instant,
    /// The internal NOP-Out ping in flight, if any.
    pub(super) keepalive_task: Option<u32>,
    /// An added connection (MC/S): when its keepalive ping must have been
    /// answered (the first connection uses the session's `Timer::Ping`).
    pub(super) ping_deadline: Option<Instant>,
    /// Bumped whenever our MaxRecvDataSegmentLength changes in Full
    /// Feature Phase (RFC 7143 section 11.16.3: R-Data SNACK).
    pub(super) mrdsl_epoch: u16,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("cid", &self.cid)
            .field("exp_stat_sn", &self.stat_sn.exp_stat_sn())
            .field("tx_digests", &self.tx_digests)
            .field("queued", &(self.urgent.len() + self.tx.len()))
            .finish()
    }
}

fn login_decoder() -> PduDecoder {
    PduDecoder::new(DecoderConfig {
        digests: Digests::NONE,
        max_data_segment_length: LOGIN_MRDSL,
    })
}

impl Connection {
    pub(super) fn new(cid: u16, now: Instant) -> Connection {
        Connection {
            cid,
            state: ConnState::Connecting,
            stat_sn: StatSnTracker::new(),
            decoder: login_decoder(),
            tx_digests: Digests::NONE,
            initiator_mrdsl: LOGIN_MRDSL,
            target_mrdsl: LOGIN_MRDSL,
            urgent: VecDeque::new(),
            tx: VecDeque::new(),
            queued_numbered: 0,
            scratch: BytesMut::with_capacity(128),
            last_rx: now,
            logged_in_at: now,
            keepalive_task: None,
            ping_deadline: None,
            mrdsl_epoch: 0,
        }
    }

    // ------------------------------------------------------------------
    // getters
    // ------------------------------------------------------------------

    /// The connection ID (RFC 7143 section 11.12.7).
    pub fn cid(&self) -> u16 {
        self.cid
    }

    /// The ExpStatSN the next PDU on this connection carries (RFC 7143
    /// section 4.2.2.2).
    pub fn exp_stat_sn(&self) -> Serial {
        self.stat_sn.exp_stat_sn()
    }

    /// The digests of the PDUs sent on this connection (RFC 7143 section
    /// 13.1; none during the login).
    pub fn digests(&self) -> Digests {
        self.tx_digests
    }

    /// Our MaxRecvDataSegmentLength on this connection (RFC 7143 section
    /// 13.12; 8192 during the login).
    pub fn initiator_max_recv_data_segment_length(&self) -> u32 {
        self.initiator_mrdsl
    }

    /// The target's MaxRecvDataSegmentLength on this connection: the
    /// longest data segment we send (at least 512).
    pub fn target_max_recv_data_segment_length(&self) -> u32 {
        self.target_mrdsl.max(512)
    }

    /// The longest PDU the receive side accepts now (BHS, largest AHS,
    /// digests and our MaxRecvDataSegmentLength).
    pub fn max_recv_pdu_len(&self) -> usize {
        self.decoder.max_pdu_len()
    }

    /// Whether PDUs wait to be sent on this connection.
    pub fn has_transmit(&self) -> bool {
        !self.urgent.is_empty() || !self.tx.is_empty()
    }

    /// Whether the connection is in its login phase.
    pub(super) fn is_logging_in(&self) -> bool {
        matches!(self.state, ConnState::Login(_))
    }

    /// Whether the connection is in the Full Feature Phase.
    pub(super) fn is_full(&self) -> bool {
        matches!(self.state, ConnState::Full)
    }

    // ------------------------------------------------------------------
    // life cycle
    // ------------------------------------------------------------------

    /// A new transport under this connection: the login starts from
    /// scratch, with the login-phase decoder and no digests.
    pub(super) fn reset_for_login(&mut self) {
        self.stat_sn = StatSnTracker::new();
        self.decoder = login_decoder();
        self.tx_digests = Digests::NONE;
        self.initiator_mrdsl = LOGIN_MRDSL;
        self.target_mrdsl = LOGIN_MRDSL;
    }

    /// The login ended with these connection keys: digests start now in
    /// both directions (RFC 7143 section 13.1: "immediately after the
    /// Login Response" with T=1 and NSG=FullFeaturePhase), and each side's
    /// MaxRecvDataSegmentLength applies (section 13.12).
    pub(super) fn enter_full_feature(&mut self, digests: Digests, initiator: u32, target: u32) {
        self.tx_digests = digests;
        self.set_max_recv_data_segment_lengths(initiator, target);
        self.state = ConnState::Full;
    }

    /// New MaxRecvDataSegmentLengths (after the login, or a Full Feature
    /// Phase renegotiation, RFC 7143 section 13.12).
    pub(super) fn set_max_recv_data_segment_lengths(&mut self, initiator: u32, target: u32) {
        if self.is_full() && initiator != self.initiator_mrdsl {
            self.mrdsl_epoch = self.mrdsl_epoch.wrapping_add(1);
        }
        self.initiator_mrdsl = initiator;
        self.target_mrdsl = target;
        self.decoder.set_config(DecoderConfig {
            digests: self.tx_digests,
            max_data_segment_length: initiator,
        });
    }

    /// After a header digest error at ErrorRecoveryLevel >= 1 (RFC 7143
    /// section 7.8): the receiver "MUST either discard the header and all
    /// data up to the beginning of a later PDU or close the connection",
    /// the beginning of that PDU to be "reliably ascertained by other
    /// means". Here the PDU is skipped by the length its (unverified)
    /// header claims only when the header found there passes its own
    /// digest (CRC32C: a false match has a 2^-32 chance); otherwise the
    /// connection must close. Waits for at most one PDU plus the next
    /// header (bounded by MaxRecvDataSegmentLength).
    pub(super) fn skip_bad_header(&mut self, buf: &mut BytesMut) -> Resync {
        let cfg = self.decoder.config();
        if !cfg.digests.header {
            return Resync::Lost;
        }
        let Some(b) = buf.get(..BHS_LEN) else {
            return Resync::NeedMore;
        };
        let bhs = Bhs::new_unchecked(b);
        if bhs.data_segment_len() > cfg.max_data_segment_length {
            return Resync::Lost;
        }
        let total = pdu_len(&bhs, cfg.digests);
        let Some(next) = buf.get(total..total + BHS_LEN) else {
            return Resync::NeedMore;
        };
        // A target PDU: a target opcode and no AHS (RFC 7143 section
        // 11.2.1.2; no target PDU carries one), so at most a BHS and its
        // digest are waited for.
        let cand = Bhs::new_unchecked(next);
        let target_opcode = matches!(cand.opcode_raw(), 0x20..=0x26 | 0x31 | 0x32 | 0x3c..=0x3f);
        if !target_opcode || cand.ahs_len_bytes() != 0 {
            return Resync::Lost;
        }
        let hdr_end = total + BHS_LEN;
        let Some(&[a, b, c, d]) = buf.get(hdr_end..hdr_end + 4) else {
            return Resync::NeedMore;
        };
        let header = buf.get(total..hdr_end).unwrap_or(&[]);
        if digest_from_bytes([a, b, c, d]) != header_digest(header) {
            return Resync::Lost;
        }
        let _ = buf.split_to(total);
        Resync::Skipped
    }

    /// Drops every PDU not yet sent.
    pub(super) fn clear_queues(&mut self) {
        self.urgent.clear();
        self.tx.clear();
        self.queued_numbered = 0;
    }

    // ------------------------------------------------------------------
    // transmit queue
    // ------------------------------------------------------------------

    /// Queues a PDU with this connection's digests.
    pub(super) fn push(
        &mut self,
        header: impl Into<Header>,
        ahs: Vec<Ahs>,
        data: Bytes,
        numbered: bool,
    ) {
        self.tx.push_back(OutPdu {
            header: header.into(),
            ahs,
            data,
            digests: self.tx_digests,
            data_out: None,
            numbered,
        });
        if numbered {
            self.queued_numbered = self.queued_numbered.saturating_add(1);
        }
    }

    /// Queues a PDU ahead of the others.
    pub(super) fn push_urgent(&mut self, header: impl Into<Header>, data: Bytes) {
        self.urgent.push_back(OutPdu {
            header: header.into(),
            ahs: Vec::new(),
            data,
            digests: self.tx_digests,
            data_out: None,
            numbered: false,
        });
    }

    /// Queues a Login Request: no digests during the login (RFC 7143
    /// section 13.1).
    pub(super) fn push_login(&mut self, req: w::LoginRequest, data: Bytes) {
        self.tx.push_back(OutPdu {
            header: req.into(),
            ahs: Vec::new(),
            data,
            digests: Digests::NONE,
            data_out: None,
            numbered: false,
        });
    }

    /// Queues Data-Out PDUs covering `buf[start..end]`, each at most the
    /// target's MaxRecvDataSegmentLength (RFC 7143 section 13.12), DataSN
    /// from 0 (section 11.7.4: per R2T or unsolicited sequence), F on the
    /// last (section 11.7.1).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_data_out(
        &mut self,
        itt: u32,
        lun: u64,
        ttt: u32,
        buf: &Bytes,
        start: usize,
        end: usize,
        solicited: bool,
    ) {
        let mrdsl = self.target_max_recv_data_segment_length() as usize;
        let mut off = start;
        let mut sn = Serial(0);
        while off < end {
            let n = (end - off).min(mrdsl.max(1));
            let last = off + n >= end;
            let d = w::DataOut {
                final_pdu: last,
                lun,
                itt,
                ttt,
                exp_stat_sn: Serial(0),
                data_sn: sn,
                buffer_offset: off as u32,
            };
            self.tx.push_back(OutPdu {
                header: d.into(),
                ahs: Vec::new(),
                data: buf.slice(off..off + n),
                digests: self.tx_digests,
                data_out: Some((itt, last && solicited)),
                numbered: false,
            });
            sn = sn.next();
            off += n;
        }
    }

    /// The next PDU to leave: the urgent queue first.
    pub(super) fn pop(&mut self) -> Option<OutPdu> {
        let out = match self.urgent.pop_front() {
            Some(o) => o,
            None => self.tx.pop_front()?,
        };
        if out.numbered {
            self.queued_numbered = self.queued_numbered.saturating_sub(1);
        }
        Some(out)
    }

    /// Encodes a PDU taken with [`Connection::pop`], its header stamped.
    pub(super) fn encode(
        &mut self,
        header: &Header,
        ahs: &[Ahs],
        data: Bytes,
        digests: Digests,
    ) -> Result<Transmit, WireError> {
        self.scratch.clear();
        let len = u32::try_from(data.len()).map_err(|_| WireError::Unencodable {
            reason: "data segment longer than 2^24 - 1 bytes",
            section: "11.2.1.6",
        })?;
        encode_header(&mut self.scratch, header, ahs, len, digests)?;
        let trailer = data_trailer(&data, digests);
        Ok(Transmit::new(&self.scratch, data, trailer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nop(itt: u32) -> w::NopOut {
        w::NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: 0xffff_ffff,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        }
    }

    fn itt_of(out: &OutPdu) -> u32 {
        match &out.header {
            Header::NopOut(h) => h.itt,
            Header::DataOut(h) => h.itt,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Answers to the target's pings leave before queued work; numbered
    /// commands are counted until they leave (RFC 7143 section 4.2.2.1:
    /// an immediate command carries the CmdSN of the next one not sent).
    #[test]
    fn urgent_first_and_numbered_counted() {
        let mut c = Connection::new(1, Instant::now());
        c.push(nop(1), Vec::new(), Bytes::new(), true);
        c.push_urgent(nop(2), Bytes::new());
        assert_eq!(c.queued_numbered, 1);
        assert!(c.has_transmit());
        let first = c.pop().unwrap();
        assert_eq!(itt_of(&first), 2);
        assert_eq!(c.queued_numbered, 1);
        let second = c.pop().unwrap();
        assert_eq!(itt_of(&second), 1);
        assert_eq!(c.queued_numbered, 0);
        assert!(c.pop().is_none());
        assert!(!c.has_transmit());
    }

    /// RFC 7143 section 13.12: no Data-Out data segment exceeds the
    /// target's MaxRecvDataSegmentLength; section 11.7.4: DataSN counts
    /// from 0 in each sequence; section 11.7.1: F on the last PDU.
    #[test]
    fn data_out_is_cut_at_the_target_limit() {
        let mut c = Connection::new(1, Instant::now());
        c.enter_full_feature(Digests::NONE, 8192, 1000);
        let buf = Bytes::from(vec![7u8; 2500]);
        c.queue_data_out(9, 0, 0x55, &buf, 0, 2500, true);
        let mut lens = Vec::new();
        while let Some(out) = c.pop() {
            let Header::DataOut(h) = out.header else {
                panic!("expected Data-Out");
            };
            assert_eq!(h.data_sn, Serial(lens.len() as u32));
            assert_eq!(h.buffer_offset, 1000 * lens.len() as u32);
            assert_eq!(h.final_pdu, out.data.len() == 500);
            assert_eq!(out.data_out, Some((9, h.final_pdu)));
            lens.push(out.data.len());
        }
        assert_eq!(lens, [1000, 1000, 500]);
    }

    /// A new login on the connection starts with the login-phase values
    /// (RFC 7143 section 13.12: 8192; section 13.1: no digests).
    #[test]
    fn a_new_login_resets_the_connection_keys() {
        let mut c = Connection::new(4, Instant::now());
        let d = Digests {
            header: true,
            data: true,
        };
        c.enter_full_feature(d, 65536, 262144);
        assert!(c.is_full());
        assert_eq!(c.digests(), d);
        assert_eq!(c.initiator_max_recv_data_segment_length(), 65536);
        assert_eq!(c.target_max_recv_data_segment_length(), 262144);
        c.reset_for_login();
        assert_eq!(c.digests(), Digests::NONE);
        assert_eq!(c.initiator_max_recv_data_segment_length(), LOGIN_MRDSL);
        assert_eq!(c.target_max_recv_data_segment_length(), LOGIN_MRDSL);
        assert_eq!(c.exp_stat_sn(), Serial(0));
        assert_eq!(c.cid(), 4);
    }
}
