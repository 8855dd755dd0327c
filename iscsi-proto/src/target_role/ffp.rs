//! The Full Feature Phase on the target side: command ordering, SCSI
//! tasks with their data transfers, NOP, task management, text
//! (SendTargets) and logout.

use bytes::{Bytes, BytesMut};

use super::event::{CloseReason, Event, ScsiRequest, TaskId, UsageError};
use super::session::{Session, LOGIN_MAX_SEGMENT, NO_TAG};
use super::window::Admit;
use crate::login::keys::{self, ResultRule, Senders, Usage};
use crate::login::SessionType;
use crate::scsi::sense::SenseData;
use crate::scsi::{ScsiStatus, SenseKey};
use crate::wire::text::{encode_pairs, parse_number, TextAssembler};
use crate::wire::{
    Ahs, Bhs, DataIn, DataInStatus, DataOut, Header, LogoutReason, LogoutRequest, LogoutResponse,
    LogoutResponseCode, NopIn, NopOut, Pdu, R2t, RejectReason, Residual, ScsiCommand, ScsiResponse,
    ScsiResponseCode, Serial, TaskAttr, TaskMgmtRequest, TaskMgmtResponse, TextRequest,
    TextResponse, TmfFunction, TmfResponse, WireError,
};

/// Most separate pieces a write buffer is kept in before it is copied
/// into one contiguous buffer (bounds the per-PDU overhead held).
const MAX_PARTS: usize = 8;

/// Sense for RFC 7143 section 11.4.7.2 "Unexpected unsolicited data".
const UNEXPECTED_UNSOLICITED: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x0c, 0x0c);
/// Sense for RFC 7143 section 11.4.7.2 "Incorrect amount of data".
const INCORRECT_AMOUNT: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x0c, 0x0d);
/// Sense for RFC 7143 section 11.4.7.2 "Protocol Service CRC error".
const CRC_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x47, 0x05);
/// SPC-4 DATA OFFSET ERROR (ASC 0x4b, ASCQ 0x05).
const DATA_OFFSET_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x4b, 0x05);
/// SPC-4 DATA PHASE ERROR (ASC 0x4b, ASCQ 0x00), used for a DataSN gap.
const DATA_PHASE_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x4b, 0x00);
/// SPC-4 INVALID FIELD IN CDB.
const INVALID_FIELD_IN_CDB: SenseData = SenseData::new(SenseKey::IllegalRequest, 0x24, 0x00);

/// A command held because it arrived before the ones preceding it.
#[derive(Debug)]
pub(super) enum Held {
    /// A SCSI command (its task already exists and takes data).
    Scsi(TaskId),
    /// Any other command PDU.
    Other(Pdu),
    /// A CmdSN to consume without action (an aborted held command, or a
    /// gap plugged by ABORT TASK, RFC 7143 section 11.5.1).
    Hole,
}

/// A task management request whose response waits (RFC 7143 section
/// 11.5.1; RFC 3720 section 10.6.2: the target "b) Waits for ... all
/// affected tasks in the task set to be received. c) Propagates the
/// command to and receives the response from the target SCSI layer").
#[derive(Debug)]
pub(super) struct PendingTmf {
    req: TaskMgmtRequest,
    response: TmfResponse,
    /// Delivered tasks it aborted, reported in `TaskManagement`.
    aborted: Vec<TaskId>,
    /// Aborted tasks the application has not acknowledged yet.
    waiting: Vec<TaskId>,
    /// Commands with a CmdSN before this one must have been received
    /// (ExpCmdSN reached it) before the response.
    until: Option<Serial>,
    cold: bool,
}

impl PendingTmf {
    /// Whether a non-immediate command `cmd_sn` on `lun` arriving now is
    /// one this request acts on ("all the commands ... having a CmdSN
    /// lower than the task management CmdSN", RFC 7143 section 11.5.1).
    fn covers(&self, cmd_sn: Serial, lun: u64) -> bool {
        let lun_ok = match self.req.function {
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => true,
            _ => lun == self.req.lun,
        };
        lun_ok && self.until.is_some_and(|u| cmd_sn.precedes(u))
    }
}

/// Text request/response exchange state (RFC 7143 sections 11.10, 11.11).
#[derive(Debug, Default)]
pub(super) enum TextPhase {
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

/// One data sequence of a write: unsolicited (TTT 0xffffffff) or the
/// answer to one R2T.
#[derive(Debug, Clone)]
pub(super) struct Seq {
    ttt: u32,
    end: u32,
    next_offset: u32,
    next_data_sn: Serial,
}

/// The write data received so far.
#[derive(Debug, Default)]
enum Assembly {
    #[default]
    Empty,
    Parts(Vec<(u32, Bytes)>),
    Buffer(BytesMut),
}

impl Assembly {
    fn add(&mut self, offset: u32, data: Bytes, total: u32) {
        if data.is_empty() {
            return;
        }
        match self {
            Assembly::Empty => *self = Assembly::Parts(vec![(offset, data)]),
            Assembly::Parts(parts) if parts.len() < MAX_PARTS => parts.push((offset, data)),
            Assembly::Parts(parts) => {
                let mut buf = BytesMut::zeroed(total as usize);
                for (o, d) in parts.drain(..) {
                    copy_at(&mut buf, o, &d);
                }
                copy_at(&mut buf, offset, &data);
                *self = Assembly::Buffer(buf);
            }
            Assembly::Buffer(buf) => copy_at(buf, offset, &data),
        }
    }

    /// The data as one buffer: zero-copy when it arrived in one piece.
    fn finish(self, total: u32) -> Bytes {
        match self {
            Assembly::Empty => Bytes::new(),
            Assembly::Parts(mut parts) if parts.len() == 1 => {
                parts.pop().map(|(_, d)| d).unwrap_or_default()
            }
            Assembly::Parts(parts) => {
                let mut buf = BytesMut::zeroed(total as usize);
                for (o, d) in parts {
                    copy_at(&mut buf, o, &d);
                }
                buf.freeze()
            }
            Assembly::Buffer(buf) => buf.freeze(),
        }
    }
}

fn copy_at(buf: &mut BytesMut, offset: u32, data: &[u8]) {
    let start = offset as usize;
    if let Some(dst) = start
        .checked_add(data.len())
        .and_then(|end| buf.get_mut(start..end))
    {
        dst.copy_from_slice(data);
    }
}

/// A SCSI task.
#[derive(Debug)]
pub(super) struct Task {
    pub(super) id: TaskId,
    pub(super) itt: u32,
    pub(super) lun: u64,
    pub(super) cmd_sn: Serial,
    pub(super) immediate: bool,
    attr: TaskAttr,
    cdb: Bytes,
    read: bool,
    write: bool,
    edtl: u32,
    /// Reached in CmdSN order (or immediate): it may be executed.
    pub(super) accepted: bool,
    /// Handed to the application.
    pub(super) delivered: bool,
    /// The task ends with CHECK CONDITION once its data stops flowing.
    failure: Option<SenseData>,
    unsolicited: Option<Seq>,
    r2ts: Vec<Seq>,
    next_r2t_offset: u32,
    r2t_sn: Serial,
    received: u32,
    data: Assembly,
}

/// The 2-byte SenseLength followed by the sense bytes (RFC 7143 section
/// 11.4.7.1).
fn sense_segment(sense: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(sense.len()).ok()?;
    let mut b = BytesMut::with_capacity(sense.len() + 2);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(sense);
    Some(b.freeze())
}

impl Session {
    /// One PDU in the Full Feature Phase.
    pub(super) fn ffp_pdu(&mut self, pdu: Pdu) {
        if !pdu.header.opcode().is_initiator() {
            // RFC 7143 section 11.2.1.2: "Initiators MUST NOT use target
            // opcodes"; Reject reason 0x04 "Protocol Error".
            let b = self.original_bhs(&pdu);
            self.send_reject(RejectReason::ProtocolError, b);
            return;
        }
        // RFC 7143 section 13.21 (SessionType): in a discovery session "the
        // only requests a target accepts ... are a text request with a
        // SendTargets key and a logout request"; others get Reject 0x05
        // "Command not supported" (section 11.17.1).
        if self.session_type == SessionType::Discovery
            && !matches!(
                pdu.header,
                Header::TextRequest(_) | Header::LogoutRequest(_)
            )
        {
            let b = self.original_bhs(&pdu);
            self.send_reject(RejectReason::CommandNotSupported, b);
            return;
        }
        match pdu.header {
            Header::DataOut(h) => self.data_out(h, pdu.data, false),
            Header::SnackRequest(_) => {
                // RFC 7143 section 11.16: SNACK support is required only at
                // ErrorRecoveryLevel > 0; at level 0 it is refused with
                // Reject reason 0x03 "SNACK Reject" (section 11.17.1).
                let b = self.original_bhs(&pdu);
                self.send_reject(RejectReason::SnackReject, b);
            }
            Header::LoginRequest(_) => {
                // RFC 7143 section 6.3: a Login Request in the Full Feature
                // Phase is a protocol error (Reject 0x04).
                let b = self.original_bhs(&pdu);
                self.send_reject(RejectReason::ProtocolError, b);
            }
            Header::NopOut(h) if h.itt == NO_TAG => {
                // RFC 7143 section 11.18: ITT 0xffffffff (I=1) is not a
                // command: either the answer to our ping or a bare
                // ExpStatSN update. No response.
                if h.ttt != NO_TAG {
                    if let Some((ttt, _)) = self.nop.ping {
                        if ttt == h.ttt {
                            self.nop.ping = None;
                        }
                    }
                }
            }
            _ => self.sequence(pdu),
        }
    }

    /// The header bytes of a PDU for a Reject. The decoded header is
    /// re-emitted (the same bytes for every field the Repr keeps).
    fn original_bhs(&self, pdu: &Pdu) -> Bytes {
        let len = u32::try_from(pdu.data.len()).unwrap_or(0);
        Bytes::copy_from_slice(&pdu.header.to_bytes(0, len))
    }

    /// A PDU the decoder refused (non-fatal): Reject it (RFC 7143 section
    /// 11.17), and terminate a task it belonged to.
    pub(super) fn ffp_bad_pdu(&mut self, e: &WireError, bhs: Bytes) {
        let reason = e.reject_reason().unwrap_or(RejectReason::ProtocolError);
        // A Data-Out whose data digest failed is dropped (RFC 7143 section
        // 7.8); at ErrorRecoveryLevel 0 its task cannot recover and ends
        // with "Protocol Service CRC error" (section 11.4.7.2).
        let data_out = Bhs::new_checked(&bhs[..])
            .ok()
            .filter(|b| b.opcode_raw() & 0x3f == 0x05)
            .and_then(|b| DataOut::parse(&b).ok());
        self.send_reject(reason, bhs);
        if let (Some(h), WireError::DataDigest { .. }) = (data_out, e) {
            self.data_out(h, Bytes::new(), true);
        }
    }

    /// Orders a command PDU by CmdSN, then sends the task management
    /// responses that became due.
    fn sequence(&mut self, pdu: Pdu) {
        self.sequence_inner(pdu);
        self.finish_tmfs();
    }

    /// Orders a command PDU by CmdSN (RFC 7143 section 4.2.2.1).
    fn sequence_inner(&mut self, pdu: Pdu) {
        let (cmd_sn, immediate) = match &pdu.header {
            Header::ScsiCommand(h) => (h.cmd_sn, h.immediate),
            Header::NopOut(h) => (h.cmd_sn, h.immediate),
            Header::TaskMgmtRequest(h) => (h.cmd_sn, h.immediate),
            Header::TextRequest(h) => (h.cmd_sn, h.immediate),
            Header::LogoutRequest(h) => (h.cmd_sn, h.immediate),
            _ => return,
        };
        if immediate {
            // RFC 7143 section 4.2.2.1: immediate commands are not queued
            // and do not advance ExpCmdSN ("the target MUST NOT ... include
            // them in the command ordering").
            if let Header::ScsiCommand(h) = &pdu.header {
                let immediate_tasks = self.tasks.values().filter(|t| t.immediate).count();
                if immediate_tasks >= self.cfg.max_immediate_tasks as usize {
                    // RFC 7143 section 11.17.1: 0x06 "Immediate command
                    // reject - too many immediate commands".
                    let b = self.original_bhs(&pdu);
                    self.send_reject(RejectReason::ImmediateCommandReject, b);
                    return;
                }
                let h = *h;
                if let Some(id) = self.new_task(&h, &pdu) {
                    self.accept_task(id);
                }
                return;
            }
            self.execute(pdu);
            return;
        }
        let held = &self.held;
        match self
            .window
            .admit(cmd_sn, |sn| held.iter().any(|(s, _)| *s == sn))
        {
            Admit::Drop => {}
            Admit::Hold => {
                let item = match &pdu.header {
                    Header::ScsiCommand(h) => {
                        let h = *h;
                        match self.new_task(&h, &pdu) {
                            Some(id) => Held::Scsi(id),
                            None => return,
                        }
                    }
                    _ => Held::Other(pdu),
                };
                self.held.push((cmd_sn, item));
            }
            Admit::Deliver => {
                match &pdu.header {
                    Header::ScsiCommand(h) => {
                        let h = *h;
                        if let Some(id) = self.new_task(&h, &pdu) {
                            self.window.advance();
                            self.accept_task(id);
                        }
                    }
                    _ => {
                        self.window.advance();
                        self.execute(pdu);
                    }
                }
                self.drain_held();
            }
        }
    }

    /// Delivers held commands that are now next in order.
    pub(super) fn drain_held(&mut self) {
        while self.phase == super::session::Phase::FullFeature {
            let exp = self.window.exp_cmd_sn();
            let Some(i) = self.held.iter().position(|(s, _)| *s == exp) else {
                break;
            };
            let (_, item) = self.held.swap_remove(i);
            self.window.advance();
            match item {
                Held::Scsi(id) => self.accept_task(id),
                Held::Other(pdu) => self.execute(pdu),
                Held::Hole => {}
            }
        }
    }

    fn execute(&mut self, pdu: Pdu) {
        match pdu.header {
            Header::NopOut(h) => self.nop_out(h, pdu.data),
            Header::TaskMgmtRequest(h) => self.task_mgmt(h),
            Header::TextRequest(h) => self.text_request(h, pdu.data),
            Header::LogoutRequest(h) => self.logout(h),
            _ => {}
        }
    }

    // ----- SCSI commands -----

    /// Creates the task of a SCSI Command and checks its immediate data
    /// against the negotiated rules. None when the command was rejected.
    fn new_task(&mut self, h: &ScsiCommand, pdu: &Pdu) -> Option<TaskId> {
        if self.by_itt.contains_key(&h.itt) {
            // RFC 7143 section 11.17.1: 0x07 "Task in progress": the ITT is
            // already used by a live task of this session.
            let b = self.original_bhs(pdu);
            self.send_reject(RejectReason::TaskInProgress, b);
            return None;
        }
        let (first_burst, immediate_ok, initial_r2t) = match &self.negotiated {
            Some(n) => (n.first_burst_length, n.immediate_data, n.initial_r2t),
            None => (0, false, true),
        };
        let mut cdb = BytesMut::from(&h.cdb[..]);
        for a in &pdu.ahs {
            if let Ahs::ExtendedCdb(ext) = a {
                cdb.extend_from_slice(ext);
            }
        }
        let data = pdu.data.clone();
        let imm = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut failure = None;
        if h.read && h.write {
            // Bidirectional commands are not implemented.
            failure = Some(INVALID_FIELD_IN_CDB);
        } else if h.expected_data_transfer_length > self.cfg.max_transfer_length {
            failure = Some(INVALID_FIELD_IN_CDB);
        } else if imm > 0
            && (!h.write
                || !immediate_ok
                || imm > first_burst
                || imm > h.expected_data_transfer_length)
        {
            // RFC 7143 section 13.11: immediate data only with
            // ImmediateData=Yes; section 13.14: unsolicited data (immediate
            // included) never exceeds FirstBurstLength; section 11.4.7.2:
            // "Unexpected unsolicited data".
            failure = Some(UNEXPECTED_UNSOLICITED);
        } else if !h.final_pdu && (!h.write || initial_r2t) {
            // RFC 7143 section 13.10: with InitialR2T=Yes the initiator
            // "MUST NOT" send unsolicited Data-Out: F must be 1.
            failure = Some(UNEXPECTED_UNSOLICITED);
        }
        let unsolicited_end = first_burst.min(h.expected_data_transfer_length);
        let unsolicited = if h.final_pdu {
            None
        } else {
            if failure.is_none() && unsolicited_end <= imm {
                // F=0 announces unsolicited Data-Out, but immediate data
                // already filled the first burst.
                failure = Some(INCORRECT_AMOUNT);
            }
            Some(Seq {
                ttt: NO_TAG,
                end: unsolicited_end,
                next_offset: imm,
                next_data_sn: Serial(0),
            })
        };
        let id = TaskId::target(self.next_task_id, h.itt);
        self.next_task_id = self.next_task_id.wrapping_add(1).max(1);
        let mut task = Task {
            id,
            itt: h.itt,
            lun: h.lun,
            cmd_sn: h.cmd_sn,
            immediate: h.immediate,
            attr: h.attr,
            cdb: cdb.freeze(),
            read: h.read,
            write: h.write,
            edtl: h.expected_data_transfer_length,
            accepted: false,
            delivered: false,
            failure,
            unsolicited,
            r2ts: Vec::new(),
            next_r2t_offset: imm,
            r2t_sn: Serial(0),
            received: 0,
            data: Assembly::Empty,
        };
        if task.failure.is_none() && task.write {
            task.received = imm;
            task.data.add(0, data, task.edtl);
        }
        self.tasks.insert(id, task);
        self.by_itt.insert(h.itt, id);
        Some(id)
    }

    fn accept_task(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        // RFC 7143 section 11.5.1: a pending task management request acts
        // on "all the commands ... having a CmdSN lower than the task
        // management CmdSN", including those received after it: such a
        // command is aborted as it reaches its place in the order, never
        // delivered.
        if !t.immediate && self.pending_tmfs.iter().any(|p| p.covers(t.cmd_sn, t.lun)) {
            let itt = t.itt;
            self.remove_task(id);
            self.bury_itt(itt);
            return;
        }
        t.accepted = true;
        self.progress(id);
    }

    /// Moves a task forward: R2Ts while data is missing, the failure
    /// response once data stopped, or delivery to the application.
    fn progress(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get(&id) else {
            return;
        };
        if !t.accepted || t.unsolicited.is_some() || t.delivered {
            return;
        }
        if let Some(sense) = t.failure {
            // RFC 7143 section 11.17.1 (after the reason table): the target
            // "MUST wait until it receives the last expected Data-Out PDUs
            // with the F bit set to 1 before sending the Response PDU".
            if t.r2ts.is_empty() {
                let itt = t.itt;
                self.remove_task(id);
                self.bury_itt(itt);
                self.send_check_condition(itt, &sense);
            }
            return;
        }
        if t.write && t.received < t.edtl {
            self.issue_r2ts(id);
            return;
        }
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        t.delivered = true;
        let data_out = std::mem::take(&mut t.data).finish(t.edtl);
        let req = ScsiRequest {
            task: id,
            lun: t.lun,
            cdb: t.cdb.clone(),
            attr: t.attr,
            itt: t.itt,
            cmd_sn: t.cmd_sn,
            immediate: t.immediate,
            data_out,
            expected_read_len: if t.read { t.edtl } else { 0 },
            expected_write_len: if t.write { t.edtl } else { 0 },
        };
        self.events.push_back(Event::Command(req));
    }

    /// Sends R2Ts until MaxOutstandingR2T are outstanding or the whole
    /// transfer is requested (RFC 7143 sections 11.8 and 13.17).
    fn issue_r2ts(&mut self, id: TaskId) {
        let (max_r2t, max_burst) = match &self.negotiated {
            Some(n) => (
                usize::from(n.max_outstanding_r2t.max(1)),
                n.max_burst_length.max(512),
            ),
            None => return,
        };
        loop {
            let Some(t) = self.tasks.get(&id) else {
                return;
            };
            if t.r2ts.len() >= max_r2t || t.next_r2t_offset >= t.edtl {
                return;
            }
            let offset = t.next_r2t_offset;
            // RFC 7143 section 11.8.5: the Desired Data Transfer Length
            // "MUST NOT be 0 and MUST NOT exceed MaxBurstLength".
            let len = (t.edtl - offset).min(max_burst);
            let (itt, lun, r2t_sn) = (t.itt, t.lun, t.r2t_sn);
            let ttt = self.new_ttt();
            let (exp, max) = self.window_fields();
            if let Some(t) = self.tasks.get_mut(&id) {
                t.next_r2t_offset = offset + len;
                t.r2t_sn = r2t_sn.next();
                t.r2ts.push(Seq {
                    ttt,
                    end: offset + len,
                    next_offset: offset,
                    next_data_sn: Serial(0),
                });
            }
            // RFC 7143 section 11.8.3: an R2T carries StatSN but does not
            // advance it ("StatSN ... the next StatSN").
            self.push_pdu(
                R2t {
                    lun,
                    itt,
                    ttt,
                    stat_sn: self.stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    r2t_sn,
                    buffer_offset: offset,
                    desired_data_transfer_length: len,
                },
                Bytes::new(),
            );
        }
    }

    /// A Data-Out PDU (RFC 7143 section 11.7). `corrupt`: its data was
    /// dropped for a digest error (the Reject is already sent).
    fn data_out(&mut self, h: DataOut, data: Bytes, corrupt: bool) {
        let bhs = || Bytes::copy_from_slice(&Header::DataOut(h).to_bytes(0, 0));
        let Some(&id) = self.by_itt.get(&h.itt) else {
            if !corrupt && !self.is_buried(h.itt) {
                // RFC 7143 section 11.17.1 note 2: an invalid ITT or TTT is
                // answered with 0x09 "Invalid PDU field".
                self.send_reject(RejectReason::InvalidPduField, bhs());
            }
            return;
        };
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        let seq_index = if h.ttt == NO_TAG {
            t.unsolicited.as_ref().map(|_| usize::MAX)
        } else {
            t.r2ts.iter().position(|s| s.ttt == h.ttt)
        };
        let Some(seq_index) = seq_index else {
            if corrupt {
                return;
            }
            if !t.write || t.delivered {
                self.send_reject(RejectReason::InvalidPduField, bhs());
                return;
            }
            // Unsolicited data that was not announced, or an unknown TTT:
            // Reject (note 2 of section 11.17.1), and the task ends with
            // CHECK CONDITION (section 11.4.7.2 "Unexpected unsolicited data").
            t.failure.get_or_insert(UNEXPECTED_UNSOLICITED);
            self.send_reject(RejectReason::InvalidPduField, bhs());
            self.progress(id);
            return;
        };
        let edtl = t.edtl;
        let failing = t.failure.is_some();
        let seq = if seq_index == usize::MAX {
            t.unsolicited.as_mut()
        } else {
            t.r2ts.get_mut(seq_index)
        };
        let Some(seq) = seq else {
            return;
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut new_failure = None;
        let mut reject = false;
        if corrupt {
            new_failure = Some(CRC_ERROR);
        } else if !failing {
            if h.data_sn != seq.next_data_sn {
                // RFC 7143 section 11.7.5: DataSN counts the Data-Out PDUs
                // of a sequence from 0; a gap is an invalid field (Reject
                // 0x09, section 11.17.1 note 2) ending the task.
                new_failure = Some(DATA_PHASE_ERROR);
                reject = true;
            } else if h.buffer_offset != seq.next_offset {
                // RFC 7143 section 13.18: with DataPDUInOrder=Yes data PDUs
                // come "at continuously increasing addresses" without
                // overlays: the offset must continue the sequence.
                new_failure = Some(DATA_OFFSET_ERROR);
                reject = true;
            } else if seq.next_offset.checked_add(len).is_none_or(|e| e > seq.end) {
                // RFC 7143 section 11.4.7.2: more data than the burst or
                // R2T asked for is an "Incorrect amount of data".
                new_failure = Some(INCORRECT_AMOUNT);
            } else {
                seq.next_offset += len;
                seq.next_data_sn = seq.next_data_sn.next();
                t.received = t.received.saturating_add(len);
                t.data.add(h.buffer_offset, data, edtl);
            }
        }
        let complete = seq.next_offset >= seq.end;
        let ends = h.final_pdu || (complete && !failing && new_failure.is_none());
        if h.final_pdu && !complete && !failing && new_failure.is_none() {
            // RFC 7143 section 11.4.7.2: a sequence that ends short of the
            // R2T (or of FirstBurstLength) is an "Incorrect amount of data".
            new_failure = Some(INCORRECT_AMOUNT);
        }
        if let Some(f) = new_failure {
            t.failure.get_or_insert(f);
        }
        if ends {
            if seq_index == usize::MAX {
                t.unsolicited = None;
                t.next_r2t_offset = t.received;
            } else if seq_index < t.r2ts.len() {
                t.r2ts.remove(seq_index);
            }
        }
        if reject {
            self.send_reject(RejectReason::InvalidPduField, bhs());
        }
        self.progress(id);
    }

    fn remove_task(&mut self, id: TaskId) -> Option<Task> {
        let t = self.tasks.remove(&id)?;
        if self.by_itt.get(&t.itt) == Some(&id) {
            self.by_itt.remove(&t.itt);
        }
        Some(t)
    }

    fn send_check_condition(&mut self, itt: u32, sense: &SenseData) {
        let seg = Bytes::copy_from_slice(&sense.to_iscsi_segment());
        self.send_scsi_response(
            itt,
            ScsiStatus::CheckCondition.to_u8(),
            Residual::None,
            seg,
            Serial(0),
        );
    }

    fn send_scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        residual: Residual,
        data: Bytes,
        exp_data_sn: Serial,
    ) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        self.push_pdu(
            ScsiResponse {
                response: ScsiResponseCode::CommandCompleted,
                status,
                itt,
                snack_tag: 0,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                exp_data_sn,
                bidi_read_residual: Residual::None,
                residual,
            },
            data,
        );
    }

    /// The application's answer to a delivered task.
    /// `write_len`: for a command without the R bit, the number of bytes
    /// its CDB transfers to the target, if the application knows it (for
    /// the write residual).
    pub(super) fn complete_task(
        &mut self,
        id: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        data_in: Bytes,
        write_len: Option<u32>,
    ) -> Result<(), UsageError> {
        if self.aborting.remove(&id).is_some() {
            // The task was aborted while the application ran it: the
            // completion acknowledges the abort and is discarded (RFC 7143
            // section 11.5.1: no response for a covered task after the
            // Task Management response; none before it either, as the
            // initiator has given the task up).
            self.abort_done(id);
            return Ok(());
        }
        match self.tasks.get(&id) {
            Some(t) if t.delivered => {}
            _ => return Err(UsageError::UnknownTask(id)),
        }
        let sense_seg = match &sense {
            Some(s) => Some(sense_segment(s).ok_or(UsageError::SenseTooLong)?),
            None => None,
        };
        let Some(t) = self.remove_task(id) else {
            return Err(UsageError::UnknownTask(id));
        };
        let edtl = t.edtl;
        // RFC 7143 section 11.4.5.1: the residual is the difference between
        // the Expected Data Transfer Length and what the target transferred
        // (U bit) or would have (O bit).
        let (send, residual) = if t.read {
            let len = u32::try_from(data_in.len()).unwrap_or(u32::MAX);
            if len > edtl {
                (
                    data_in.slice(..edtl as usize),
                    Residual::Overflow(len - edtl),
                )
            } else if len < edtl {
                (data_in, Residual::Underflow(edtl - len))
            } else {
                (data_in, Residual::None)
            }
        } else {
            // RFC 7143 section 11.4.5.1, for writes: "the Residual Count
            // ... MUST be set to the number of bytes that were not
            // transferred" (U: the Expected Data Transfer Length exceeded
            // what the command needed) or that the command needed beyond it
            // (O). Without the command's own length, none is reported.
            let residual = match write_len {
                Some(n) if n > edtl => Residual::Overflow(n - edtl),
                Some(n) if n < edtl => Residual::Underflow(edtl - n),
                _ => Residual::None,
            };
            (Bytes::new(), residual)
        };
        let status_u8 = status.to_u8();
        // RFC 7143 section 11.7.4 (S bit): status may ride in the last
        // Data-In only when the command ended without an exception (GOOD,
        // CONDITION MET), so never with sense data.
        let in_data = !send.is_empty() && sense_seg.is_none() && status.is_success();
        let max_burst = self
            .negotiated
            .as_ref()
            .map_or(262_144, |n| n.max_burst_length)
            .max(512) as usize;
        let seg_max = (self.peer_mrdsl as usize).min(max_burst).max(1);
        let total = send.len();
        let mut off = 0usize;
        let mut burst = 0usize;
        let mut data_sn = Serial(0);
        while off < total {
            // RFC 7143 section 13.12: a Data-In never exceeds the
            // initiator's MaxRecvDataSegmentLength; section 13.13: a
            // sequence never exceeds MaxBurstLength, and its last PDU has
            // F=1 (section 11.7.1).
            let n = (total - off).min(seg_max).min(max_burst - burst);
            let last = off + n == total;
            burst += n;
            let burst_end = last || burst == max_burst;
            if burst == max_burst {
                burst = 0;
            }
            let (exp, max) = self.window_fields();
            let st = if last && in_data {
                Some(DataInStatus {
                    status: status_u8,
                    stat_sn: self.take_stat_sn(),
                    residual,
                })
            } else {
                None
            };
            self.push_pdu(
                DataIn {
                    final_pdu: burst_end,
                    ack: false,
                    lun: 0,
                    itt: t.itt,
                    ttt: NO_TAG,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn,
                    buffer_offset: off as u32,
                    status: st,
                },
                send.slice(off..off + n),
            );
            data_sn = data_sn.next();
            off += n;
        }
        if !in_data {
            // RFC 7143 section 11.4.8: ExpDataSN is "the number of R2T and
            // Data-In (read) PDUs the target has sent for the command".
            let exp_data_sn = data_sn.plus(t.r2t_sn.0);
            self.send_scsi_response(
                t.itt,
                status_u8,
                residual,
                sense_seg.unwrap_or_default(),
                exp_data_sn,
            );
        }
        Ok(())
    }

    // ----- NOP -----

    fn nop_out(&mut self, h: NopOut, data: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        // RFC 7143 section 11.19: the NOP-In answering a NOP-Out echoes its
        // ping data (cut to the initiator's MaxRecvDataSegmentLength),
        // carries its ITT and TTT 0xffffffff.
        let data = data.slice(..data.len().min(self.peer_mrdsl as usize));
        self.push_pdu(
            NopIn {
                lun: h.lun,
                itt: h.itt,
                ttt: NO_TAG,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            data,
        );
    }

    /// A NOP-In ping (RFC 7143 section 11.19.2: ITT 0xffffffff, a valid
    /// TTT asking for an answer; StatSN is not advanced for it).
    pub(super) fn send_ping(&mut self, ttt: u32) {
        let (exp, max) = self.window_fields();
        self.push_pdu(
            NopIn {
                lun: 0,
                itt: NO_TAG,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            Bytes::new(),
        );
    }

    // ----- task management -----

    /// Aborts a task. A task the application has not seen yet (not
    /// delivered, or its `Command` event still queued) is dropped here;
    /// one the application took is reported as `TaskAborted` and awaits
    /// its acknowledgement: its id is returned.
    fn abort(&mut self, id: TaskId) -> Option<TaskId> {
        let t = self.remove_task(id)?;
        self.bury_itt(t.itt);
        for (_, item) in self.held.iter_mut() {
            if matches!(item, Held::Scsi(h) if *h == id) {
                *item = Held::Hole;
            }
        }
        if !t.delivered {
            return None;
        }
        // Not polled yet: withdraw the command, so the application never
        // executes it (and never touches the medium for it).
        if let Some(i) = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Command(r) if r.task == id))
        {
            self.events.remove(i);
            return None;
        }
        self.events.push_back(Event::TaskAborted { task: id });
        self.aborting.insert(id, (t.lun, t.itt));
        Some(id)
    }

    /// The application stopped an aborted task (acknowledged, or completed
    /// it): the requests waiting for it may be answered.
    pub(super) fn abort_done(&mut self, task: TaskId) {
        for p in &mut self.pending_tmfs {
            p.waiting.retain(|t| *t != task);
        }
        self.finish_tmfs();
    }

    /// Sends the responses of the pending task management requests that
    /// no longer wait: every aborted task acknowledged and every command
    /// before them received (RFC 7143 section 11.5.1; RFC 3720 section
    /// 10.6.1: "The response to ABORT TASK SET and CLEAR TASK SET MUST only
    /// be issued by the target after all of the commands affected have
    /// been received by the target, the corresponding task management
    /// functions have been executed by the SCSI target").
    pub(super) fn finish_tmfs(&mut self) {
        while self.phase == super::session::Phase::FullFeature {
            let exp = self.window.exp_cmd_sn();
            let Some(i) = self
                .pending_tmfs
                .iter()
                .position(|p| p.waiting.is_empty() && p.until.is_none_or(|u| !exp.precedes(u)))
            else {
                return;
            };
            let p = self.pending_tmfs.remove(i);
            self.send_tmf_response(p);
        }
    }

    fn send_tmf_response(&mut self, p: PendingTmf) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        self.push_pdu(
            TaskMgmtResponse {
                response: p.response,
                itt: p.req.itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            Bytes::new(),
        );
        if p.response == TmfResponse::FunctionComplete {
            self.events.push_back(Event::TaskManagement {
                function: p.req.function,
                lun: p.req.lun,
                aborted: p.aborted,
            });
        }
        if p.cold {
            // RFC 7143 section 11.5.1: for TARGET COLD RESET the target
            // "MUST ... terminate all of its TCP connections to all
            // initiators" after the response.
            self.close(CloseReason::ColdReset);
        }
    }

    fn lun_exists(&self, lun: u64) -> bool {
        self.target_index
            .and_then(|i| self.cfg.targets.get(i))
            .is_some_and(|t| t.luns.contains(&lun))
    }

    fn task_mgmt(&mut self, h: TaskMgmtRequest) {
        let mut aborted = Vec::new();
        let mut cold = false;
        let response = match h.function {
            TmfFunction::AbortTask => {
                let found = self
                    .by_itt
                    .get(&h.referenced_task_tag)
                    .copied()
                    .filter(|id| self.tasks.get(id).is_some_and(|t| t.lun == h.lun));
                match found {
                    Some(id) => {
                        aborted.extend(self.abort(id));
                        TmfResponse::FunctionComplete
                    }
                    None => {
                        // RFC 7143 section 11.6.1 b): a task that does not
                        // exist but whose RefCmdSN is inside the window and
                        // before the request's CmdSN is "considered as
                        // received" and answered "Function complete"; c):
                        // otherwise "Task does not exist".
                        let exp = self.window.exp_cmd_sn();
                        let r = h.ref_cmd_sn;
                        if r.in_window(exp, self.window.max_cmd_sn()) && r.precedes(h.cmd_sn) {
                            self.plug(r);
                            TmfResponse::FunctionComplete
                        } else {
                            TmfResponse::TaskDoesNotExist
                        }
                    }
                }
            }
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset => {
                if self.lun_exists(h.lun) {
                    // RFC 7143 section 4.2.3.3 / 11.5.1: the tasks of the
                    // LUN are aborted; aborted tasks get no response. ABORT
                    // TASK SET and CLEAR TASK SET act on "the commands ...
                    // having a CmdSN lower than the task management CmdSN"
                    // (immediate ones included); LOGICAL UNIT RESET "may
                    // affect ... commands from the same session with CmdSN
                    // equal or exceeding CmdSN": all of them.
                    let reset = h.function == TmfFunction::LogicalUnitReset;
                    let ids: Vec<TaskId> = self
                        .tasks
                        .values()
                        .filter(|t| t.lun == h.lun)
                        .filter(|t| reset || t.immediate || t.cmd_sn.precedes(h.cmd_sn))
                        .map(|t| t.id)
                        .collect();
                    for id in ids {
                        aborted.extend(self.abort(id));
                    }
                    TmfResponse::FunctionComplete
                } else {
                    // RFC 7143 section 11.6.1: 2 "LUN does not exist".
                    TmfResponse::LunDoesNotExist
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
                for id in ids {
                    aborted.extend(self.abort(id));
                }
                cold = h.function == TmfFunction::TargetColdReset;
                TmfResponse::FunctionComplete
            }
            // RFC 7143 section 11.6.1: 4 "Task allegiance reassignment not
            // supported" (ErrorRecoveryLevel 0 has no connection recovery).
            TmfFunction::TaskReassign => TmfResponse::ReassignmentNotSupported,
            // RFC 7143 section 11.6.1: 5 "Task management function not
            // supported" (CLEAR ACA: ACA is not implemented; unknown codes).
            _ => TmfResponse::NotSupported,
        };
        // Tasks already aborted by an earlier request and still running in
        // the application are covered too: wait for them as well.
        let mut waiting = aborted.clone();
        if response == TmfResponse::FunctionComplete {
            for (&id, &(lun, itt)) in &self.aborting {
                let covered = match h.function {
                    TmfFunction::AbortTask => itt == h.referenced_task_tag && lun == h.lun,
                    TmfFunction::AbortTaskSet
                    | TmfFunction::ClearTaskSet
                    | TmfFunction::LogicalUnitReset => lun == h.lun,
                    TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => true,
                    _ => false,
                };
                if covered && !waiting.contains(&id) {
                    waiting.push(id);
                }
            }
        }
        // RFC 7143 section 11.5.1: an immediate request "must be
        // considered immediately for execution, but the operations
        // involved ... may be postponed to allow the target to receive all
        // relevant tasks": the commands before its CmdSN that were inside
        // the window we advertised (so may legally be on their way).
        let until = match h.function {
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset
            | TmfFunction::TargetWarmReset
            | TmfFunction::TargetColdReset
                if response == TmfResponse::FunctionComplete && h.immediate =>
            {
                let limit = self.window.max_cmd_sn().next();
                Some(if limit.precedes(h.cmd_sn) {
                    limit
                } else {
                    h.cmd_sn
                })
            }
            _ => None,
        };
        self.pending_tmfs.push(PendingTmf {
            req: h,
            response,
            aborted,
            waiting,
            until,
            cold,
        });
        self.finish_tmfs();
    }

    /// Considers `sn` received (an aborted command that never arrived).
    fn plug(&mut self, sn: Serial) {
        if sn == self.window.exp_cmd_sn() {
            self.window.advance();
            self.drain_held();
        } else if !self.held.iter().any(|(s, _)| *s == sn) {
            self.held.push((sn, Held::Hole));
        }
    }

    // ----- text -----

    fn text_request(&mut self, h: TextRequest, data: Bytes) {
        let bhs = || Bytes::copy_from_slice(&Header::TextRequest(h).to_bytes(0, 0));
        let phase = std::mem::take(&mut self.text);
        let mut assembler = match phase {
            TextPhase::Sending { itt, ttt, rest } if h.ttt != NO_TAG => {
                // RFC 7143 section 11.10.4: the initiator fetches the next
                // piece of a long response by echoing its TTT, with no data.
                if itt != h.itt || ttt != h.ttt || !data.is_empty() {
                    self.send_reject(RejectReason::InvalidPduField, bhs());
                    return;
                }
                self.send_text(h, rest);
                return;
            }
            TextPhase::Receiving {
                itt,
                ttt,
                assembler,
            } if h.ttt != NO_TAG => {
                if itt != h.itt || ttt != h.ttt {
                    self.send_reject(RejectReason::InvalidPduField, bhs());
                    return;
                }
                assembler
            }
            _ if h.ttt != NO_TAG => {
                // RFC 7143 section 11.17.1 note 2: an invalid TTT.
                self.send_reject(RejectReason::InvalidPduField, bhs());
                return;
            }
            // RFC 7143 section 11.10.4: TTT 0xffffffff starts a new
            // exchange and resets any earlier one.
            _ => TextAssembler::new(),
        };
        let pairs = match assembler.push(&data, h.cont) {
            Err(_) => {
                // Malformed or oversized text: a protocol error (RFC 7143
                // section 6.1).
                self.send_reject(RejectReason::ProtocolError, bhs());
                return;
            }
            Ok(None) => {
                // RFC 7143 section 6.1: a PDU with C=1 is answered with an
                // empty PDU; the TTT ties the continuation to this exchange.
                let ttt = self.new_ttt();
                self.text = TextPhase::Receiving {
                    itt: h.itt,
                    ttt,
                    assembler,
                };
                self.push_text_response(h, false, false, ttt, Bytes::new());
                return;
            }
            Ok(Some(p)) => p,
        };
        let answer = self.text_answer(&pairs);
        let mut text = Vec::new();
        if encode_pairs(answer.iter().map(|(k, v)| (k, v)), &mut text).is_err() {
            self.send_reject(RejectReason::ProtocolError, bhs());
            return;
        }
        self.send_text(h, Bytes::from(text));
    }

    /// Sends a text response, in pieces of at most the initiator's
    /// MaxRecvDataSegmentLength (RFC 7143 sections 6.1 and 11.11: C=1 and
    /// F=0 with a TTT on all but the last, F=1 and TTT 0xffffffff on it).
    fn send_text(&mut self, h: TextRequest, text: Bytes) {
        let max = self.peer_mrdsl as usize;
        if text.len() > max {
            let ttt = self.new_ttt();
            self.text = TextPhase::Sending {
                itt: h.itt,
                ttt,
                rest: text.slice(max..),
            };
            self.push_text_response(h, false, true, ttt, text.slice(..max));
        } else {
            self.text = TextPhase::Idle;
            self.push_text_response(h, true, false, NO_TAG, text);
        }
    }

    fn push_text_response(&mut self, h: TextRequest, fin: bool, cont: bool, ttt: u32, data: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        self.push_pdu(
            TextResponse {
                final_pdu: fin,
                cont,
                lun: h.lun,
                itt: h.itt,
                ttt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            data,
        );
    }

    fn text_answer(&mut self, pairs: &[(String, String)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut declared_ours = false;
        for (k, v) in pairs {
            if k == "SendTargets" {
                self.send_targets(v, &mut out);
            } else if k == "MaxRecvDataSegmentLength" {
                // RFC 7143 section 13.12: "Use: ALL, Declarative", 512 to
                // 2^24 - 1: the initiator may re-declare it in the Full
                // Feature Phase, and "The transmitter ... is required to
                // send PDUs with a data segment that does not exceed
                // MaxRecvDataSegmentLength of the receiver": Data-In,
                // NOP-In and Text Response segments follow the new value.
                match parse_number(v) {
                    Ok(n) if (512..=keys::MAX_DATA_LEN).contains(&n) => {
                        self.peer_mrdsl = u32::try_from(n).unwrap_or(LOGIN_MAX_SEGMENT);
                        // The target declares its own in return (section
                        // 13.12: "The initiator or target declares").
                        if !declared_ours {
                            declared_ours = true;
                            let ours = self
                                .negotiated
                                .as_ref()
                                .map_or(self.cfg.params.max_recv_data_segment_length, |n| {
                                    n.target_max_recv_data_segment_length
                                });
                            out.push((k.clone(), ours.to_string()));
                        }
                    }
                    // RFC 7143 section 6.2: "Proposing a value not
                    // admissible (e.g., not within the specified bounds)
                    // MAY be answered with the constant "Reject""; the
                    // limit stays as it was.
                    _ => out.push((k.clone(), "Reject".to_owned())),
                }
            } else if let Some(def) = keys::lookup(k) {
                let ffp_ok = matches!(def.usage, Usage::All | Usage::FullFeatureOnly)
                    && matches!(def.senders, Senders::Initiator | Senders::Both);
                if !(ffp_ok && def.rule == ResultRule::Declarative) {
                    // RFC 7143 section 13: "LO" (leading connection's login
                    // only) and "IO" (Login Phase only) keys, and keys the
                    // initiator may not send, are not negotiable here;
                    // section 6.2: an acceptor "not allowed to use any of the
                    // proposed options ... may use the constant "Reject"",
                    // and the key keeps its current value.
                    out.push((k.clone(), "Reject".to_owned()));
                }
                // Otherwise a declaration legal in the Full Feature Phase
                // (InitiatorAlias, section 13.7): noted, no answer needed.
            } else {
                // RFC 7143 section 6.2: "the answer for a key not
                // understood MUST be key=NotUnderstood".
                out.push((k.clone(), "NotUnderstood".to_owned()));
            }
        }
        out
    }

    /// RFC 7143 section 13.3 and Appendix C: SendTargets=All (discovery
    /// sessions only: it "MUST NOT be supported on an operational
    /// session"), =<name>, or empty (the session's own target).
    fn send_targets(&self, v: &str, out: &mut Vec<(String, String)>) {
        let discovery = self.session_type == SessionType::Discovery;
        let own = self.target_index;
        let chosen: Vec<usize> = match v {
            "All" if discovery => (0..self.cfg.targets.len()).collect(),
            "All" => {
                out.push(("SendTargets".to_owned(), "Reject".to_owned()));
                return;
            }
            "" => own.into_iter().collect(),
            name => self
                .cfg
                .targets
                .iter()
                .position(|t| t.name == name)
                .filter(|i| discovery || Some(*i) == own)
                .into_iter()
                .collect(),
        };
        for i in chosen {
            let Some(t) = self.cfg.targets.get(i) else {
                continue;
            };
            out.push(("TargetName".to_owned(), t.name.clone()));
            for p in &self.cfg.portals {
                out.push((
                    "TargetAddress".to_owned(),
                    format!(
                        "{},{}",
                        p.address(),
                        p.portal_group_tag.unwrap_or(self.cfg.portal_group_tag)
                    ),
                ));
            }
        }
    }

    // ----- logout -----

    fn logout(&mut self, h: LogoutRequest) {
        let response = match h.reason {
            LogoutReason::CloseSession => LogoutResponseCode::Success,
            // RFC 7143 section 11.15.1: 1 "CID not found".
            LogoutReason::CloseConnection if h.cid == self.cid => LogoutResponseCode::Success,
            LogoutReason::CloseConnection => LogoutResponseCode::CidNotFound,
            // RFC 7143 section 11.15.1: 2 "connection recovery is not
            // supported" (ErrorRecoveryLevel 0).
            LogoutReason::RemoveForRecovery => LogoutResponseCode::RecoveryNotSupported,
            LogoutReason::Other(_) => LogoutResponseCode::CleanupFailed,
        };
        let (t2w, t2r) = self
            .negotiated
            .as_ref()
            .map_or((2, 20), |n| (n.default_time2wait, n.default_time2retain));
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        // RFC 7143 sections 11.15.2-3: Time2Wait and Time2Retain as
        // negotiated (only meaningful at ErrorRecoveryLevel 2).
        self.push_pdu(
            LogoutResponse {
                response,
                itt: h.itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                time2wait: t2w,
                time2retain: t2r,
            },
            Bytes::new(),
        );
        if response == LogoutResponseCode::Success {
            // RFC 7143 section 11.14: after a successful logout response
            // the connection (and with one connection, the session) ends.
            self.events.push_back(Event::LoggedOut);
            self.close(CloseReason::LoggedOut);
        }
    }
}
