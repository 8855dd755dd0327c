//! Text Request / Text Response on the target side (RFC 7143 sections
//! 11.10 and 11.11): long texts in pieces, SendTargets (section 13.3 and
//! Appendix C) and the keys declarable in the Full Feature Phase.

use crate::prelude::*;
use crate::target::connection::TextPhase;
use bytes::Bytes;

use super::{Session, LOGIN_MAX_SEGMENT, NO_TAG};
use crate::login::keys::{self, ResultRule, Senders, Usage};
use crate::login::SessionType;
use crate::wire::text::{encode_pairs, parse_number, TextAssembler};
use crate::wire::{Header, RejectReason, TextRequest, TextResponse};

impl Session {
    /// A Text Request: continues or starts an exchange, answers it when
    /// its text is complete.
    pub(in crate::target) fn text_request(&mut self, h: TextRequest, data: Bytes) {
        let bhs = || Bytes::copy_from_slice(&Header::TextRequest(h).to_bytes(0, 0));
        let phase = core::mem::take(&mut self.conn.text);
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
                self.conn.text = TextPhase::Receiving {
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
        let max = self.conn.max_send_segment as usize;
        if text.len() > max {
            let ttt = self.new_ttt();
            self.conn.text = TextPhase::Sending {
                itt: h.itt,
                ttt,
                rest: text.slice(max..),
            };
            self.push_text_response(h, false, true, ttt, text.slice(..max));
        } else {
            self.conn.text = TextPhase::Idle;
            self.push_text_response(h, true, false, NO_TAG, text);
        }
    }

    /// Queues one Text Response PDU.
    fn push_text_response(&mut self, h: TextRequest, fin: bool, cont: bool, ttt: u32, data: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
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

    /// The answer to a complete text: SendTargets, a re-declared
    /// MaxRecvDataSegmentLength, or Reject / NotUnderstood.
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
                        self.conn.max_send_segment = u32::try_from(n).unwrap_or(LOGIN_MAX_SEGMENT);
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
}
