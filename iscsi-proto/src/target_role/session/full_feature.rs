//! The Full Feature Phase on the target side (RFC 7143 section 4.2):
//! each PDU dispatched by opcode, and commands put in CmdSN order
//! (section 4.2.2.1) before they are executed by the modules beside this
//! one ([`super::scsi_command`], [`super::task_management`],
//! [`super::text`], [`super::nop`], [`super::logout`]).

use bytes::Bytes;

use super::{Phase, Session, NO_TAG};
use crate::login::SessionType;
use crate::target::event::TaskId;
use crate::target::window::Admit;
use crate::wire::{Bhs, DataOut, Header, Pdu, RejectReason, Serial, WireError};

/// A command held because it arrived before the ones preceding it.
#[derive(Debug)]
pub(in crate::target) enum Held {
    /// A SCSI command (its task already exists and takes data).
    Scsi(TaskId),
    /// Any other command PDU.
    Other(u16, Pdu),
    /// A CmdSN to consume without action (an aborted held command, or a
    /// gap plugged by ABORT TASK, RFC 7143 section 11.5.1).
    Hole,
}

/// The ExpStatSN an initiator PDU of the Full Feature Phase carries (RFC
/// 7143 sections 11.3-11.18: every one has the field).
fn exp_stat_sn(h: &Header) -> Option<Serial> {
    match h {
        Header::NopOut(x) => Some(x.exp_stat_sn),
        Header::ScsiCommand(x) => Some(x.exp_stat_sn),
        Header::TaskMgmtRequest(x) => Some(x.exp_stat_sn),
        Header::TextRequest(x) => Some(x.exp_stat_sn),
        Header::DataOut(x) => Some(x.exp_stat_sn),
        Header::LogoutRequest(x) => Some(x.exp_stat_sn),
        Header::SnackRequest(x) => Some(x.exp_stat_sn),
        _ => None,
    }
}

impl Session {
    /// One PDU in the Full Feature Phase.
    pub(in crate::target) fn full_feature_pdu(&mut self, pdu: Pdu) {
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
        // RFC 7143 section 4.2.2.2: ExpStatSN acknowledges the numbered
        // responses before it; what was kept to retransmit them goes.
        if let Some(exp) = exp_stat_sn(&pdu.header) {
            self.acknowledge_stat_sn(exp);
        }
        match pdu.header {
            Header::DataOut(h) => self.data_out(h, pdu.data, false),
            Header::SnackRequest(h) => {
                let b = self.original_bhs(&pdu);
                self.snack(h, b);
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
                self.nop_out_unsolicited(h.ttt);
            }
            _ => self.sequence(pdu),
        }
    }

    /// The header bytes of a PDU for a Reject. The decoded header is
    /// re-emitted (the same bytes for every field the Repr keeps).
    pub(in crate::target) fn original_bhs(&self, pdu: &Pdu) -> Bytes {
        let len = u32::try_from(pdu.data.len()).unwrap_or(0);
        Bytes::copy_from_slice(&pdu.header.to_bytes(0, len))
    }

    /// A PDU the decoder refused (non-fatal): Reject it (RFC 7143 section
    /// 11.17), and terminate a task it belonged to.
    pub(in crate::target) fn full_feature_bad_pdu(&mut self, e: &WireError, bhs: Bytes) {
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
                    _ => Held::Other(self.conn.cid, pdu),
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
    pub(in crate::target) fn drain_held(&mut self) {
        while self.conn.phase == Phase::FullFeature {
            let exp = self.window.exp_cmd_sn();
            let Some(i) = self.held.iter().position(|(s, _)| *s == exp) else {
                break;
            };
            let (_, item) = self.held.swap_remove(i);
            self.window.advance();
            match item {
                Held::Scsi(id) => self.accept_task(id),
                Held::Other(cid, pdu) => self.with_conn(cid, |s| s.execute(pdu)),
                Held::Hole => {}
            }
        }
    }

    /// Executes a non-SCSI command that reached its place in CmdSN order
    /// (or is immediate).
    fn execute(&mut self, pdu: Pdu) {
        match pdu.header {
            Header::NopOut(h) => self.nop_out(h, pdu.data),
            Header::TaskMgmtRequest(h) => self.task_mgmt(h),
            Header::TextRequest(h) => self.text_request(h, pdu.data),
            Header::LogoutRequest(h) => self.logout(h),
            _ => {}
        }
    }
}
