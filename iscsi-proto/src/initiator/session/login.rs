//! The initiator's login phase (RFC 7143 sections 6 and 11.12/11.13):
//! security and operational stages, CHAP, redirection, and the switch to
//! Full Feature Phase.

use crate::prelude::*;
use crate::time::Instant;

use bytes::Bytes;

use super::*;

/// Login round trips before the target is deemed to loop.
const MAX_LOGIN_ROUNDS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChapStep {
    /// AuthMethod not yet agreed.
    Method,
    /// CHAP_A sent, waiting for CHAP_A/I/C.
    Offered,
    /// CHAP_N/R sent; for mutual CHAP waiting for the target's CHAP_N/R.
    Responded,
    /// Done.
    Done,
}

/// The login state machine of one connection (RFC 7143 section 6): the
/// negotiation, CHAP, and where the request/response exchange is.
pub(in crate::initiator) struct Login {
    neg: InitiatorNegotiator,
    chap: Option<InitiatorChap>,
    chap_step: ChapStep,
    /// Our mutual CHAP challenge for this login (its first byte is CHAP_I).
    chap_challenge: Vec<u8>,
    /// CSG of the requests we send.
    stage: Stage,
    itt: u32,
    cmd_sn: Serial,
    assembler: TextAssembler,
    /// Outgoing text not yet sent (multi-PDU requests).
    out_rest: Bytes,
    /// Transit/NSG for the last segment of `out_rest`.
    out_transit: Option<Stage>,
    rounds: u32,
    first_response: bool,
    /// The NSG our current request exchange asked for with T=1 (`None`:
    /// T=0). A response may transit only if we did, and never beyond it
    /// (RFC 7143 sections 6.3 and 11.13.6; checked in `check_transit`).
    asked: Option<Stage>,
}

impl Session {
    pub(super) fn start_login(&mut self) -> Result<Box<Login>, ConnectionError> {
        // Validated by Session::new: a failure here is a configuration
        // changed since (the fields are public), reported as such.
        // ErrorRecoveryLevel 2 connection recovery (`session/erl2.rs`)
        // logs a connection into the existing session: not leading, only
        // connection keys (RFC 7143 section 6.3: LO keys "only on the
        // leading connection"), the session's TSIH.
        let leading = self.conn_recovery.is_none() && self.swapped.is_none();
        let (mut neg, chap) =
            login_engines(&self.cfg, leading).map_err(ConnectionError::InvalidConfig)?;
        // Connection-level reset: a new login on a new transport.
        self.conn.reset_for_login();
        if let Some(cr) = self.conn_recovery.filter(|_| self.swapped.is_none()) {
            // RFC 7143 section 11.12.9: the ExpStatSN of a Login Request
            // that restarts a connection is that of the old connection.
            self.conn.stat_sn.start(cr.exp_stat_sn.minus(1));
        } else if leading {
            self.tsih = 0;
        }
        let mut pairs = neg.login_keys();
        let stage = if chap.is_some() {
            pairs.extend(neg.security_offer());
            Stage::Security
        } else {
            pairs.extend(neg.operational_offer());
            Stage::Operational
        };
        let mut body = Vec::new();
        text::encode_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut body,
        )
        .map_err(io)?;
        let cmd_sn = self.window.cmd_sn();
        // The login ITT: any value but the reserved one; the task table
        // is not involved (no other task exists during the login).
        let itt = self.next_seq as u32 & 0x7fff_ffff;
        self.next_seq = self.next_seq.wrapping_add(1);
        let login_no = self.logins;
        self.logins = self.logins.wrapping_add(1);
        let mut login = Box::new(Login {
            neg,
            chap,
            chap_step: ChapStep::Method,
            chap_challenge: fresh_challenge(&self.cfg.chap_challenge, login_no),
            stage,
            itt,
            cmd_sn,
            assembler: TextAssembler::with_limit(self.cfg.max_text_len),
            out_rest: Bytes::new(),
            out_transit: None,
            rounds: 0,
            first_response: true,
            asked: None,
        });
        let next = if stage == Stage::Security {
            Stage::Operational
        } else {
            Stage::FullFeature
        };
        self.send_login_text(&mut login, Bytes::from(body), Some(next));
        Ok(login)
    }

    /// Queues `body` as one or more Login Requests (RFC 7143 section 6.1:
    /// text longer than the target's MaxRecvDataSegmentLength is split with
    /// C=1 on all but the last PDU, and a PDU with C=1 "MUST" have T=0).
    pub(super) fn send_login_text(
        &mut self,
        login: &mut Login,
        body: Bytes,
        transit: Option<Stage>,
    ) {
        tracing::trace!(target: "iscsi::login", stage = ?login.stage, keys = %crate::trace_format::TextKeys(&body), "login request");
        let max = LOGIN_MRDSL as usize;
        let (seg, rest) = if body.len() > max {
            (body.slice(..max), body.slice(max..))
        } else {
            (body, Bytes::new())
        };
        let cont = !rest.is_empty();
        login.out_rest = rest;
        login.out_transit = transit;
        login.asked = transit;
        let (t, nsg) = match transit {
            Some(nsg) if !cont => (true, nsg),
            _ => (false, login.stage),
        };
        let req = w::LoginRequest {
            transit: t,
            cont,
            csg: login.stage,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            // RFC 7143 section 6.3.5: session reinstatement uses the same
            // ISID with TSIH 0 (a new session replacing the failed one);
            // section 6.3.4 (connection reinstatement, ErrorRecoveryLevel
            // 2): the session's TSIH and the failed connection's CID.
            tsih: self.tsih,
            itt: login.itt,
            cid: self.conn.cid,
            cmd_sn: login.cmd_sn,
            exp_stat_sn: self.conn.exp_stat_sn(),
        };
        self.conn.push_login(req, seg);
    }

    pub(super) fn on_login_pdu(&mut self, now: Instant, pdu: Pdu) -> Result<(), ConnectionError> {
        let ConnState::Login(mut login) =
            core::mem::replace(&mut self.conn.state, ConnState::Connecting)
        else {
            return Ok(());
        };
        let r = self.on_login_response(now, &mut login, pdu);
        // on_login_response may have moved things on (Full Feature Phase,
        // Connecting for a redirect, a closed or recovering session);
        // restore the login only if it did not.
        if self.phase == Phase::Active
            && matches!(self.conn.state, ConnState::Connecting)
            && r.as_ref().is_ok_and(|done| !done)
        {
            self.conn.state = ConnState::Login(login);
        }
        r.map(|_| ())
    }

    /// Returns Ok(true) when the login phase ended (success or redirect).
    pub(super) fn on_login_response(
        &mut self,
        now: Instant,
        login: &mut Login,
        pdu: Pdu,
    ) -> Result<bool, ConnectionError> {
        // RFC 7143 section 6.1 (Login Phase): only Login Responses may
        // arrive during the login.
        let Header::LoginResponse(resp) = pdu.header else {
            return Err(violation(
                "PDU other than Login Response during the login phase",
                "6.3",
            ));
        };
        login.rounds = login.rounds.saturating_add(1);
        if login.rounds > MAX_LOGIN_ROUNDS {
            return Err(violation("login does not converge", "6.3"));
        }
        // The status is read first: RFC 7143 section 11.13.5 says the other
        // fields of a failed login are not meaningful ("The numbering fields
        // (StatSN, ExpCmdSN, MaxCmdSN) are only valid if Status-Class is
        // 0"), and real targets (tgtd) send a reject with a zero ISID.
        let status = LoginStatus::from_raw(resp.status_class, resp.status_detail);
        tracing::debug!(target: "iscsi::login", stage = ?resp.csg, transit = resp.transit, next = ?resp.nsg, %status, "login response");
        tracing::trace!(target: "iscsi::login", keys = %crate::trace_format::TextKeys(&pdu.data), "login response keys");
        if status.class() == StatusClass::Success {
            // RFC 7143 section 11.13: the target echoes the Initiator Task Tag.
            if resp.itt != login.itt {
                return Err(violation("Login Response with a foreign ITT", "11.13"));
            }
            // RFC 7143 section 11.12.5: ISID is the initiator's, echoed.
            if resp.isid != self.isid {
                return Err(violation("Login Response with a foreign ISID", "11.13"));
            }
            // RFC 7143 section 11.13.4 / 4.2.2.2: StatSN starts with the login
            // response; ExpStatSN acknowledges it.
            self.conn.stat_sn.start(resp.stat_sn);
        }
        match status.class() {
            StatusClass::Success => {}
            StatusClass::Redirection => {
                return self.on_redirect(now, status, &pdu.data).map(|_| true)
            }
            class => {
                // RFC 7143 section 11.13.5: a status class other than 0 or
                // 1 ends the login; target errors (class 3) are retried by
                // session recovery when it is configured.
                tracing::info!(target: "iscsi::login", %status, ?class, detail = resp.status_detail, "login refused by the target");
                let err = ConnectionError::LoginFailed {
                    class,
                    detail: resp.status_detail,
                    status,
                };
                if self.swapped.is_some() {
                    self.fail_connection(now, err);
                } else if self.conn_recovery.take().is_some() {
                    // The session may be gone at the target (Time2Retain,
                    // a reset): session reinstatement is what is left.
                    self.fail_connection(now, err);
                } else if class == StatusClass::TargetError && self.logged_in_once {
                    self.fail_connection(now, err);
                } else {
                    self.fail_closed(err);
                }
                return Ok(true);
            }
        }
        // RFC 7143 section 11.13.2: "Version-active ... The target MUST use
        // the value presented by the initiator" range: we offer only 0.
        if resp.version_active != 0 {
            let e = ConnectionError::LoginFailed {
                class: StatusClass::InitiatorError,
                detail: 5,
                status: LoginStatus::UnsupportedVersion,
            };
            return Err(e);
        }
        // RFC 7143 section 11.12.3 (CSG): the response stage must be the
        // stage of the request.
        if resp.csg != login.stage {
            return Err(violation(
                "Login Response CSG differs from the request",
                "11.13",
            ));
        }
        login.first_response = false;
        check_transit(login, &resp)?;
        // Our multi-PDU request continues: the target answers each C=1 PDU
        // with an empty response (RFC 7143 section 6.1).
        if !login.out_rest.is_empty() {
            let rest = core::mem::take(&mut login.out_rest);
            let transit = login.out_transit;
            self.send_login_text(login, rest, transit);
            return Ok(false);
        }
        // RFC 7143 section 11.13.7: "If the C bit is set to 1, the T bit
        // MUST be 0"; the initiator answers with an empty Login Request to
        // get the rest of the text.
        if resp.cont {
            if resp.transit {
                return Err(violation("Login Response with both C and T set", "11.13.7"));
            }
            login.assembler.push(&pdu.data, true).map_err(io)?;
            // The empty request only fetches the rest of the response text:
            // it stays part of the exchange our last keys started, so the
            // T/NSG asked for there still governs the final piece (targets
            // answer it with that request's T bit).
            let asked = login.asked;
            self.send_login_text(login, Bytes::new(), None);
            login.asked = asked;
            return Ok(false);
        }
        let pairs = login
            .assembler
            .push(&pdu.data, false)
            .map_err(io)?
            .unwrap_or_default();
        let replies = login.neg.handle_response(&pairs).map_err(io)?;
        // RFC 7143 section 11.13.6: "A Login Response with a T bit set to 1
        // MUST NOT contain key=value pairs that may require additional
        // answers from the initiator within the same stage" (section 6.3:
        // "Targets MUST NOT submit parameters that require an additional
        // initiator Login Request in a Login Response with the T bit set to
        // 1"). Answers and declarations (TargetAlias, TargetPortalGroupTag,
        // MaxRecvDataSegmentLength, ...) produce no reply; a new offer or
        // an unknown key (which needs NotUnderstood) does.
        if resp.transit && !replies.is_empty() {
            tracing::debug!(target: "iscsi::login", keys = ?replies.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "Login Response with T=1 needs answers");
            return Err(violation(
                "Login Response with T=1 carries keys that need an answer",
                "11.13.6",
            ));
        }
        let mut out: Vec<(String, String)> = replies;
        let finished = resp.transit && resp.nsg == Stage::FullFeature;
        match login.stage {
            Stage::Security => {
                let method = login.neg.auth_method();
                let chap_needed = method == Some(AuthMethod::Chap);
                if let Some(chap) = login.chap.as_mut() {
                    if chap_needed {
                        match login.chap_step {
                            ChapStep::Method => {
                                out.extend(chap.offer());
                                login.chap_step = ChapStep::Offered;
                            }
                            ChapStep::Offered => {
                                let ch = &login.chap_challenge;
                                let mutual = if chap.is_mutual() {
                                    let id = ch.first().copied().unwrap_or(0);
                                    Some((id, &ch[..]))
                                } else {
                                    None
                                };
                                out.extend(chap.respond(&pairs, mutual).map_err(io)?);
                                login.chap_step = ChapStep::Responded;
                            }
                            ChapStep::Responded => {
                                // RFC 7143 section 12.1.3: "If target
                                // authentication fails, the initiator MUST
                                // close the connection".
                                if chap.is_mutual() && !chap.is_complete() {
                                    chap.verify_target(&pairs).map_err(io)?;
                                }
                                login.chap_step = ChapStep::Done;
                            }
                            ChapStep::Done => {}
                        }
                    } else if method.is_some() && chap.is_mutual() {
                        return Err(io(crate::login::chap::ChapError::MutualChallengeMissing));
                    }
                }
                let chap_done = match &login.chap {
                    Some(c) if chap_needed => c.is_complete(),
                    _ => true,
                };
                if resp.transit {
                    // RFC 7143 section 12.1.3: a target may only leave the
                    // security stage once authentication completed.
                    if !chap_done {
                        return Err(violation(
                            "target left the security stage before CHAP completed",
                            "12.1.3",
                        ));
                    }
                    if finished {
                        return self.login_complete(now, login, &resp).map(|_| true);
                    }
                    if resp.nsg != Stage::Operational {
                        return Err(violation("invalid NSG in Login Response", "11.12.3"));
                    }
                    login.stage = Stage::Operational;
                    out.extend(login.neg.operational_offer());
                    let body = encode(&out)?;
                    self.send_login_text(login, body, Some(Stage::FullFeature));
                } else {
                    // Ready to transit once authentication is through.
                    let transit = if login.chap_step == ChapStep::Offered
                        || (chap_needed && !chap_done && login.chap_step != ChapStep::Responded)
                    {
                        None
                    } else {
                        Some(Stage::Operational)
                    };
                    let body = encode(&out)?;
                    self.send_login_text(login, body, transit);
                }
                Ok(false)
            }
            _ => {
                if finished {
                    return self.login_complete(now, login, &resp).map(|_| true);
                }
                if resp.transit {
                    return Err(violation("invalid NSG in Login Response", "11.12.3"));
                }
                let body = encode(&out)?;
                self.send_login_text(login, body, Some(Stage::FullFeature));
                Ok(false)
            }
        }
    }

    pub(super) fn on_redirect(
        &mut self,
        now: Instant,
        status: LoginStatus,
        data: &Bytes,
    ) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.13.5: class 1 "indicates that the initiator
        // must take further action"; the response carries TargetAddress.
        let pairs = text::parse_pairs(data).map_err(io)?;
        let addr = pairs
            .iter()
            .find(|(k, _)| k == "TargetAddress")
            .ok_or_else(|| violation("redirection without TargetAddress", "11.13.5"))?;
        let portal: NetworkPortal = parse_target_address(&addr.1).map_err(io)?.into();
        if self.swapped.is_some() {
            // An added connection is not redirected on its own: it fails
            // (the session goes on on its other connections).
            return Err(violation(
                "redirection of an added connection (not followed)",
                "13.2",
            ));
        }
        self.redirects = self.redirects.saturating_add(1);
        if self.redirects > self.cfg.max_redirects {
            let n = self.cfg.max_redirects;
            self.fail_closed(ConnectionError::TooManyRedirects(n));
            return Ok(());
        }
        tracing::info!(target: "iscsi::login", %status, host = %portal.host, port = portal.port, "login redirected; following");
        if status == LoginStatus::TargetMovedPermanently {
            self.permanent_portal = Some(portal.clone());
        }
        self.portal = Some(portal.clone());
        self.conn.state = ConnState::Connecting;
        self.timers
            .set(Timer::Login, later(now, self.cfg.login_timeout));
        self.conn.clear_queues();
        self.events.push_back(Event::Connect {
            portal: Some(portal),
        });
        Ok(())
    }

    pub(super) fn login_complete(
        &mut self,
        now: Instant,
        login: &mut Login,
        resp: &w::LoginResponse,
    ) -> Result<(), ConnectionError> {
        // Mutual CHAP must be finished before Full Feature Phase.
        if let Some(c) = &login.chap {
            if c.is_mutual() && !c.is_complete() {
                return Err(io(crate::login::chap::ChapError::MutualChallengeMissing));
            }
        }
        let neg = login.neg.finish().map_err(io)?;
        if self.swapped.is_some() {
            return self.added_login_complete(now, &neg, resp);
        }
        if self.conn_recovery.is_some() {
            return self.connection_login_complete(now, neg, resp);
        }
        // RFC 7143 section 11.13.3: the final response carries the TSIH;
        // a new session "MUST" get a non-zero one.
        if resp.tsih == 0 {
            return Err(violation("final Login Response with TSIH 0", "11.13.3"));
        }
        check_login_window(login.cmd_sn, resp)?;
        self.tsih = resp.tsih;
        // RFC 7143 section 4.2.2.1: the window starts at the login's CmdSN;
        // ExpCmdSN/MaxCmdSN come from the final response (a closed window
        // opens later with a NOP-In or response). `check_login_window` made
        // sure ExpCmdSN is that CmdSN and MaxCmdSN >= ExpCmdSN - 1, so the
        // reset takes the values as they are.
        self.window
            .reset(login.cmd_sn, resp.exp_cmd_sn, resp.max_cmd_sn);
        // RFC 7143 section 13.1: digests start "immediately after the
        // Login Response" with T=1 and NSG=FullFeaturePhase, both ways.
        let digests = Digests {
            header: neg.header_digest,
            data: neg.data_digest,
        };
        // RFC 7143 section 13.12: each side's declared
        // MaxRecvDataSegmentLength (ours bounds what we accept).
        self.conn.enter_full_feature(
            digests,
            neg.initiator_max_recv_data_segment_length,
            neg.target_max_recv_data_segment_length,
        );
        // Every key agreed on this connection (RFC 7143 section 13), at
        // info: `iscsi -v` shows it.
        tracing::info!(
            target: "iscsi::login",
            tsih = self.tsih,
            cid = self.conn.cid,
            reinstated = self.logged_in_once,
            SessionType = ?neg.session_type,
            TargetName = neg.target_name.as_deref().unwrap_or("-"),
            TargetAlias = neg.target_alias.as_deref().unwrap_or("-"),
            TargetPortalGroupTag = ?neg.target_portal_group_tag,
            AuthMethod = ?neg.auth_method,
            HeaderDigest = if neg.header_digest { "CRC32C" } else { "None" },
            DataDigest = if neg.data_digest { "CRC32C" } else { "None" },
            MaxRecvDataSegmentLength.initiator = neg.initiator_max_recv_data_segment_length,
            MaxRecvDataSegmentLength.target = neg.target_max_recv_data_segment_length,
            MaxBurstLength = neg.max_burst_length,
            FirstBurstLength = neg.first_burst_length,
            InitialR2T = neg.initial_r2t,
            ImmediateData = neg.immediate_data,
            MaxOutstandingR2T = neg.max_outstanding_r2t,
            DataPDUInOrder = neg.data_pdu_in_order,
            DataSequenceInOrder = neg.data_sequence_in_order,
            ErrorRecoveryLevel = neg.error_recovery_level,
            DefaultTime2Wait = neg.default_time2wait,
            DefaultTime2Retain = neg.default_time2retain,
            MaxConnections = neg.max_connections,
            iSCSIProtocolLevel = neg.protocol_level,
            TaskReporting = ?neg.task_reporting,
            ExpCmdSN = resp.exp_cmd_sn.0,
            MaxCmdSN = resp.max_cmd_sn.0,
            "logged in"
        );
        self.negotiated = Some(neg);
        self.timers.stop(Timer::Login);
        self.redirects = 0;
        self.touch_rx(now);
        self.conn.logged_in_at = now;
        self.timers.stop(Timer::Ping);
        if self.logged_in_once {
            self.recovery_attempt = 0;
            self.events.push_back(Event::Reinstated { tsih: self.tsih });
        } else {
            self.logged_in_once = true;
            self.events.push_back(Event::LoggedIn { tsih: self.tsih });
        }
        Ok(())
    }
}

/// The mutual CHAP challenge for login number `n` of a session. RFC 1994
/// section 2.3 (which RFC 7143 section 12.1.3 builds on): "Each challenge
/// value SHOULD be unique, since repetition of a challenge value in
/// conjunction with the same secret would permit an attacker to reply with
/// a previously intercepted response". The core draws no randomness: the
/// first login uses the caller's random bytes as given, and every later
/// one (session recovery, redirects) a SHA-256 expansion of those bytes
/// and the login number, as unpredictable as the caller's bytes and never
/// repeated within the session.
fn fresh_challenge(seed: &[u8], n: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    if n == 0 || seed.is_empty() {
        return seed.to_vec();
    }
    let len = seed.len().max(16);
    let mut out = Vec::with_capacity(len + 32);
    let mut block = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(b"iscsi-proto mutual CHAP challenge");
        h.update(n.to_be_bytes());
        h.update(block.to_be_bytes());
        h.update(seed);
        out.extend_from_slice(&h.finalize());
        block = block.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// The T bit and NSG of a success Login Response against what our request
/// asked for.
///
/// - RFC 7143 section 11.13.6: "If the status class is 0, the T bit MUST NOT
///   be set to 1 if the T bit in the request was set to 0" (section 6.3: "a
///   target can only respond with a transition after one is proposed by the
///   initiator"). While a multi-PDU request of ours is still going out, the
///   PDU in flight has C=1 and therefore T=0 (section 11.12.2).
/// - RFC 7143 section 6.3: "The selected NSG MUST NOT exceed the value
///   stated by the initiator." A target that jumps from the security stage
///   to Full Feature Phase would skip the operational keys we require
///   (digests, for one).
fn check_transit(login: &Login, resp: &w::LoginResponse) -> Result<(), ConnectionError> {
    if !resp.transit {
        return Ok(());
    }
    let asked = if login.out_rest.is_empty() {
        login.asked
    } else {
        None
    };
    let Some(asked) = asked else {
        return Err(violation(
            "Login Response with T=1 to a request with T=0",
            "11.13.6",
        ));
    };
    if resp.nsg as u8 > asked as u8 {
        return Err(violation(
            "Login Response NSG exceeds the NSG the initiator asked for",
            "6.3",
        ));
    }
    Ok(())
}

/// The CmdSN window of the final Login Response of a leading login.
///
/// Every login this initiator makes is a leading login (TSIH 0: a new or
/// reinstated session, one connection), so RFC 7143 section 11.12.8
/// applies: "If the Login Request is a leading Login Request, the target
/// MUST use the value presented in CmdSN as the target value for ExpCmdSN",
/// and "the first non-immediate command in the Full Feature Phase also
/// carries" that CmdSN. Section 4.2.2.1: "The target MUST NOT transmit a
/// MaxCmdSN that is less than ExpCmdSN-1."
///
/// Decision: a final response that breaks either rule fails the login with
/// a [`ProtocolError::Violation`]. Adopting a different ExpCmdSN would make
/// us skip command numbers the target says it never received, and ignoring
/// the pair (section 4.2.2.1's rule for later PDUs) would start the session
/// with no window at all; either way commands could wait forever.
fn check_login_window(cmd_sn: Serial, resp: &w::LoginResponse) -> Result<(), ConnectionError> {
    if resp.exp_cmd_sn != cmd_sn {
        tracing::debug!(target: "iscsi::login", CmdSN = cmd_sn.0, ExpCmdSN = resp.exp_cmd_sn.0, "final Login Response: ExpCmdSN is not the login's CmdSN");
        return Err(violation(
            "final Login Response ExpCmdSN differs from the leading login's CmdSN",
            "11.12.8",
        ));
    }
    if resp.max_cmd_sn.precedes(resp.exp_cmd_sn.minus(1)) {
        tracing::debug!(target: "iscsi::login", ExpCmdSN = resp.exp_cmd_sn.0, MaxCmdSN = resp.max_cmd_sn.0, "final Login Response: MaxCmdSN < ExpCmdSN - 1");
        return Err(violation(
            "final Login Response MaxCmdSN is less than ExpCmdSN - 1",
            "4.2.2.1",
        ));
    }
    Ok(())
}

fn encode(pairs: &[(String, String)]) -> Result<Bytes, ConnectionError> {
    let mut body = Vec::new();
    text::encode_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &mut body,
    )
    .map_err(io)?;
    Ok(Bytes::from(body))
}
