//! The login phase on the target side (RFC 7143 sections 6.3, 11.12,
//! 11.13, 12 and 13).

use crate::prelude::*;
use crate::target::connection::{FirstLogin, PendingText};
use crate::time::Instant;

use bytes::Bytes;

use super::{Session, LOGIN_MAX_SEGMENT};
use crate::login::chap::{TargetChap, TargetChapConfig};
use crate::login::negotiation::{LoginStage, TargetConfig, TargetNegotiator};
use crate::login::{AuthMethod, LoginStatus, SessionType};
use crate::target::config::TargetAuth;
use crate::target::event::{CloseReason, Event};
use crate::target::window::TargetWindow;
use crate::wire::text::encode_pairs;
use crate::wire::{Digests, Header, LoginRequest, LoginResponse, Pdu, Stage};

/// The only protocol version defined (RFC 7143 section 11.12.4: "the
/// version number of the current draft is 0x00").
const VERSION: u8 = 0x00;

fn has_key(pairs: &[(String, String)], key: &str) -> bool {
    pairs.iter().any(|(k, _)| k == key)
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Session {
    /// One PDU in the login phase: only Login Requests are allowed.
    pub(in crate::target) fn login_pdu(&mut self, now: Instant, pdu: Pdu) {
        let Header::LoginRequest(req) = pdu.header else {
            // RFC 7143 section 11.13.5: 0x020b "Invalid request type during
            // login"; section 6.3: only Login Requests flow before the
            // Full Feature Phase. The response carries the PDU's own ITT
            // field (bytes 16-19, section 11.2.1), also for opcodes whose
            // header has no ITT of its own (a Reject sent by an initiator).
            self.login_reject(self.conn.last_itt(), LoginStatus::InvalidDuringLogin);
            return;
        };
        self.login_request(now, req, pdu.data);
    }

    /// A PDU that failed to decode during login: the login is refused.
    pub(in crate::target) fn login_bad_pdu(&mut self, bhs: &Bytes) {
        let itt = bhs
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(super::NO_TAG);
        // RFC 7143 section 11.13.5: 0x0200 "Initiator error" for a
        // malformed request (e.g. C and T both set, a reserved stage).
        self.login_reject(itt, LoginStatus::InitiatorError);
    }

    /// A Login Request: identity checks, stage rules, text assembly, then
    /// the stage's negotiation and the response.
    fn login_request(&mut self, now: Instant, req: LoginRequest, data: Bytes) {
        match self.conn.login.first {
            None => {
                self.isid = req.isid;
                self.conn.cid = req.cid;
                // RFC 7143 section 4.2.2.1: "Command numbering starts with
                // the first login request".
                self.window = TargetWindow::new(req.cmd_sn, self.cfg.cmd_window);
                // RFC 7143 section 11.12.4: the target answers with
                // "Unsupported version" (0x0205) when no version in
                // [Version-min, Version-max] is supported.
                if !(req.version_min..=req.version_max).contains(&VERSION) {
                    self.login_reject(req.itt, LoginStatus::UnsupportedVersion);
                    return;
                }
                // RFC 7143 section 11.12.6: a non-zero TSIH names an
                // existing session (adding a connection or reinstating
                // one); a session alone knows no other session: 0x020a
                // "Session does not exist", unless the Portal routed the
                // login to a session it joins.
                let join = self.recovery.joining.clone();
                match join {
                    // A further connection of a live session (RFC 7143
                    // section 6.3.1 table, row "non-zero TSIH": "new
                    // connection in an existing session"), routed here by
                    // the Portal: the session's window applies (section
                    // 4.2.2.1: CmdSN is session-wide).
                    Some((tsih, window)) if req.tsih == tsih => {
                        self.window = window;
                    }
                    _ if req.tsih != 0 => {
                        self.login_reject(req.itt, LoginStatus::SessionDoesNotExist);
                        return;
                    }
                    _ => {}
                }
                self.conn.login.first = Some(FirstLogin {
                    isid: req.isid,
                    tsih: req.tsih,
                    cid: req.cid,
                    version_min: req.version_min,
                });
            }
            Some(f) => {
                // RFC 7143 section 11.12.4: "All Login Requests within the
                // Login Phase MUST carry the same Version-min"; ISID, TSIH
                // and CID identify the same connection throughout.
                if req.version_min != f.version_min
                    || req.isid != f.isid
                    || req.tsih != f.tsih
                    || req.cid != f.cid
                {
                    self.login_reject(req.itt, LoginStatus::InitiatorError);
                    return;
                }
            }
        }
        let stage = *self.conn.login.stage.get_or_insert(req.csg);
        // RFC 7143 section 6.3: requests stay in the current stage until
        // both sides agree to transit (CSG must be the stage we are in);
        // CSG=3 is not a login stage.
        if req.csg != stage || stage == Stage::FullFeature {
            self.login_reject(req.itt, LoginStatus::InitiatorError);
            return;
        }
        // RFC 7143 section 6.3: stages only move forward, and the next
        // stage is never the security stage.
        if req.transit && !valid_transition(stage, req.nsg) {
            self.login_reject(req.itt, LoginStatus::InitiatorError);
            return;
        }
        if let Some(p) = self.conn.login.pending.take() {
            // RFC 7143 section 6.1 (text spanning PDUs): while the target
            // sends a long response with C=1, the initiator answers each
            // piece with an empty request.
            if !data.is_empty() || req.cont {
                self.login_reject(req.itt, LoginStatus::InitiatorError);
                return;
            }
            self.send_login_text(now, req, stage, p);
            return;
        }
        let pairs = match self.conn.login.assembler.push(&data, req.cont) {
            Err(_) => {
                self.login_reject(req.itt, LoginStatus::InitiatorError);
                return;
            }
            Ok(None) => {
                // RFC 7143 section 6.1: "the receiver ... MUST respond with
                // an empty PDU" to a PDU with the C bit set, until the text
                // is complete.
                self.send_login_response(req, false, false, stage, stage, Bytes::new(), false);
                return;
            }
            Ok(Some(pairs)) => pairs,
        };
        if self.conn.login.negotiator.is_none() && !self.first_ltds(req, &pairs) {
            return;
        }
        let replies = match stage {
            Stage::Security => self.security_stage(req, &pairs),
            _ => self.operational_stage(req, &pairs),
        };
        let Some((replies, transit)) = replies else {
            return;
        };
        let mut text = Vec::new();
        if encode_pairs(replies.iter().map(|(k, v)| (k, v)), &mut text).is_err() {
            self.login_reject(req.itt, LoginStatus::TargetError);
            return;
        }
        let p = PendingText {
            text: Bytes::from(text),
            transit,
            nsg: if transit { req.nsg } else { stage },
        };
        self.send_login_text(now, req, stage, p);
    }

    /// Checks of the first complete text of the login (RFC 7143 section
    /// 6.3.1) and creation of the negotiation engine. False when the login
    /// was refused.
    fn first_ltds(&mut self, req: LoginRequest, pairs: &[(String, String)]) -> bool {
        let session_type = match value(pairs, "SessionType") {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => {
                // RFC 7143 section 13.21: SessionType is Discovery or Normal.
                self.login_reject(req.itt, LoginStatus::SessionTypeNotSupported);
                return false;
            }
        };
        // RFC 7143 section 6.3.1: "The initial Login Request of any
        // connection MUST include the InitiatorName key=value pair";
        // 0x0207 "Missing parameter" (section 11.13.5).
        let Some(initiator) = value(pairs, "InitiatorName").map(str::to_owned) else {
            self.login_reject(req.itt, LoginStatus::MissingParameter);
            return false;
        };
        let mut alias = None;
        match session_type {
            SessionType::Normal => {
                // RFC 7143 section 6.3.1: "For any connection within a
                // session whose type is not Discovery, the first Login
                // Request MUST also include the TargetName key=value pair."
                let Some(name) = value(pairs, "TargetName") else {
                    self.login_reject(req.itt, LoginStatus::MissingParameter);
                    return false;
                };
                // RFC 7143 section 11.13.5: 0x0203 "Not found: the
                // requested iSCSI Target Name does not exist at this address".
                let Some(i) = self.cfg.targets.iter().position(|t| t.name == name) else {
                    self.login_reject(req.itt, LoginStatus::NotFound);
                    return false;
                };
                self.target_index = Some(i);
                alias = self.cfg.targets.get(i).and_then(|t| t.alias.clone());
            }
            SessionType::Discovery => {
                if !self.cfg.allow_discovery {
                    // RFC 7143 section 11.13.5: 0x0209 "Session type not supported".
                    self.login_reject(req.itt, LoginStatus::SessionTypeNotSupported);
                    return false;
                }
            }
        }
        let auth = match session_type {
            SessionType::Normal => self.cfg.auth.clone(),
            SessionType::Discovery => self.cfg.discovery_auth.clone(),
        };
        let auth_methods = match &auth {
            TargetAuth::None => vec![AuthMethod::None],
            TargetAuth::Chap { .. } => vec![AuthMethod::Chap],
        };
        let tc = TargetConfig {
            auth_methods,
            target_portal_group_tag: self.cfg.portal_group_tag,
            target_alias: alias,
            params: self.cfg.params.clone(),
        };
        let Ok(neg) = TargetNegotiator::new(tc) else {
            self.login_reject(req.itt, LoginStatus::TargetError);
            return false;
        };
        if let TargetAuth::Chap {
            initiator: ini,
            mutual,
            algorithms,
        } = auth
        {
            let mut c = TargetChapConfig::new(ini);
            c.mutual = mutual;
            if !algorithms.is_empty() {
                c.algorithms = algorithms;
            }
            let Ok(chap) = TargetChap::new(c) else {
                self.login_reject(req.itt, LoginStatus::TargetError);
                return false;
            };
            self.conn.login.chap = Some(chap);
            self.conn.login.chap_required = true;
        }
        self.session_type = session_type;
        self.initiator_name = Some(initiator);
        self.conn.login.negotiator = Some(neg);
        true
    }

    /// The security stage: AuthMethod, then CHAP (RFC 7143 sections 6.3.2,
    /// 12.1 and 12.1.3). Returns the replies and whether we transit.
    fn security_stage(
        &mut self,
        req: LoginRequest,
        pairs: &[(String, String)],
    ) -> Option<(Vec<(String, String)>, bool)> {
        let neg = self.conn.login.negotiator.as_mut()?;
        let mut replies = match neg.handle_request(pairs, LoginStage::Security) {
            Ok(r) => r,
            Err(_) => {
                // RFC 7143 section 6.2: a negotiation error by the
                // initiator is answered with "Login reject (initiator error)".
                self.login_reject(req.itt, LoginStatus::InitiatorError);
                return None;
            }
        };
        let method = neg.auth_method();
        if self.conn.login.chap_required {
            let chap_keys = pairs.iter().any(|(k, _)| k.starts_with("CHAP_"));
            if method == Some(AuthMethod::Chap) && chap_keys {
                let started = self
                    .conn
                    .login
                    .chap
                    .as_ref()
                    .is_some_and(|_| has_key(pairs, "CHAP_N") || has_key(pairs, "CHAP_R"));
                let result = if started {
                    self.conn.login.chap.as_mut().map(|c| c.verify(pairs))
                } else {
                    let mut challenge = vec![0u8; self.cfg.chap_challenge_len];
                    self.rng.fill(&mut challenge);
                    let id = self.rng.next_u64() as u8;
                    self.conn
                        .login
                        .chap
                        .as_mut()
                        .map(|c| c.challenge(pairs, id, &challenge))
                };
                match result {
                    Some(Ok(more)) => replies.extend(more),
                    _ => {
                        // RFC 7143 section 12.1.3: on a failed verification
                        // the target "MUST answer with a Login reject with
                        // the Authentication Failure status" (0x0201).
                        self.login_reject(req.itt, LoginStatus::AuthenticationFailure);
                        return None;
                    }
                }
                self.conn.login.authenticated = self
                    .conn
                    .login
                    .chap
                    .as_ref()
                    .is_some_and(|c| c.is_complete());
            }
        } else if method.is_none_or(|m| m == AuthMethod::None) {
            self.conn.login.authenticated = true;
        }
        if !req.transit {
            return Some((replies, false));
        }
        if self.conn.login.authenticated {
            return Some((replies, true));
        }
        // RFC 7143 section 6.3: an initiator "willing to negotiate iSCSI
        // security" may send its first request with T=1 and AuthMethod=CHAP,
        // None; a target that picks CHAP answers with T=0 ("If the target
        // responds to a Login Request that has the T bit set to 1 with a
        // Login Response that has the T bit set to 0, the initiator should
        // keep sending the Login Request ... with the T bit set to 1") and
        // the CHAP exchange follows. Any wrong CHAP key was rejected above.
        let in_progress = self
            .conn
            .login
            .chap
            .as_ref()
            .is_some_and(|c| !c.is_complete())
            && method == Some(AuthMethod::Chap);
        if in_progress {
            // CHAP was just selected, or the challenge is in this response:
            // stay in the stage (T=0) until the initiator answers it.
            return Some((replies, false));
        }
        // RFC 7143 section 12: a target that requires authentication does
        // not let the initiator leave the security stage unauthenticated;
        // 0x0201 "Authentication failure" (section 11.13.5).
        self.login_reject(req.itt, LoginStatus::AuthenticationFailure);
        None
    }

    /// The operational stage (RFC 7143 sections 6.3.3 and 13).
    fn operational_stage(
        &mut self,
        req: LoginRequest,
        pairs: &[(String, String)],
    ) -> Option<(Vec<(String, String)>, bool)> {
        if self.conn.login.chap_required && !self.conn.login.authenticated {
            // RFC 7143 section 6.3: the security stage may only be skipped
            // when the target requires no authentication; 0x0201.
            self.login_reject(req.itt, LoginStatus::AuthenticationFailure);
            return None;
        }
        let neg = self.conn.login.negotiator.as_mut()?;
        match neg.handle_request(pairs, LoginStage::Operational) {
            // RFC 7143 section 6.2: a key the target proposed must be
            // answered before the stage ends, so no transit while one is
            // outstanding (the initiator asks again with T=1).
            Ok(r) => Some((r, req.transit && neg.pending_answers().is_empty())),
            Err(_) => {
                self.login_reject(req.itt, LoginStatus::InitiatorError);
                None
            }
        }
    }

    /// Sends (the next piece of) a Login Response text; the last piece
    /// carries the transit decision, and a transit to the Full Feature
    /// Phase ends the login.
    fn send_login_text(&mut self, now: Instant, req: LoginRequest, stage: Stage, p: PendingText) {
        let max = LOGIN_MAX_SEGMENT as usize;
        if p.text.len() > max {
            // RFC 7143 section 6.1: a text that does not fit is sent in
            // several PDUs with C=1 on all but the last; section 11.13.7:
            // "If the C bit is set to 1, the T bit MUST be set to 0".
            let chunk = p.text.slice(..max);
            let rest = PendingText {
                text: p.text.slice(max..),
                ..p
            };
            self.conn.login.pending = Some(rest);
            self.send_login_response(req, false, true, stage, stage, chunk, false);
            return;
        }
        let final_response = p.transit && p.nsg == Stage::FullFeature;
        if final_response {
            let Some(neg) = self.conn.login.negotiator.as_ref() else {
                self.login_reject(req.itt, LoginStatus::TargetError);
                return;
            };
            // RFC 7143 section 6.2: "An iSCSI target MUST perform integrity
            // checking before the new parameters take effect."
            let negotiated = match neg.finish() {
                Ok(n) => n,
                Err(_) => {
                    self.login_reject(req.itt, LoginStatus::InitiatorError);
                    return;
                }
            };
            self.tsih = match &self.recovery.joining {
                Some((tsih, _)) => *tsih,
                None => self.cfg.tsih,
            };
            self.send_login_response(req, true, false, stage, Stage::FullFeature, p.text, true);
            self.enter_full_feature(now, negotiated);
            return;
        }
        self.send_login_response(req, p.transit, false, stage, p.nsg, p.text, false);
        if p.transit {
            self.conn.login.stage = Some(p.nsg);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_login_response(
        &mut self,
        req: LoginRequest,
        transit: bool,
        cont: bool,
        csg: Stage,
        nsg: Stage,
        data: Bytes,
        final_response: bool,
    ) {
        let (exp, max) = self.window_fields();
        // RFC 7143 section 11.13.4: the first Login Response carries the
        // starting StatSN; "The next response of any kind -- including the
        // next Login Response, if any, in the same Login Phase -- will
        // carry this number + 1."
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
            LoginResponse {
                transit,
                cont,
                csg,
                nsg: if transit { nsg } else { Stage::Security },
                version_max: VERSION,
                version_active: VERSION,
                isid: self.isid,
                // RFC 7143 section 11.13.3: TSIH is set by the target in
                // the final response of a new session only.
                tsih: if final_response { self.tsih } else { req.tsih },
                itt: req.itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                status_class: 0,
                status_detail: 0,
            },
            data,
        );
    }

    /// The final Login Response is queued: the connection enters the Full
    /// Feature Phase and the application hears of the new session.
    fn enter_full_feature(&mut self, now: Instant, negotiated: crate::login::Negotiated) {
        // RFC 7143 section 13.1: digests are used "starting with the first
        // PDU after the final Login Response" in both directions; the
        // decoder switches before the next PDU is decoded.
        let digests = Digests {
            header: negotiated.header_digest,
            data: negotiated.data_digest,
        };
        // RFC 7143 section 13.12: from now on, data segments sent to us are
        // limited by our declared MaxRecvDataSegmentLength, ours by theirs.
        self.conn.enter_full_feature(
            now,
            digests,
            negotiated.target_max_recv_data_segment_length,
            negotiated.initiator_max_recv_data_segment_length.max(512),
        );
        if negotiated.error_recovery_level >= 1 {
            // RFC 7143 section 7.2.1 / 11.16.1: at ErrorRecoveryLevel >= 1
            // the numbered responses are kept for Status SNACK until
            // ExpStatSN acknowledges them.
            self.conn.status_log = Some(crate::target::retention::StatusLog::new(
                self.cfg.retention_budget,
            ));
        }
        let initiator_name = self.initiator_name.clone().unwrap_or_default();
        let target_name = self.target_name().map(str::to_owned);
        self.emit(Event::LoggedIn {
            session_type: self.session_type,
            initiator_name,
            target_name,
            isid: self.isid,
            tsih: self.tsih,
            negotiated: Box::new(negotiated.clone()),
        });
        self.negotiated = Some(negotiated);
        self.update_timer();
    }

    /// Refuses the login with `status` and closes the connection (RFC 7143
    /// section 11.13.5: after a non-zero Status-Class "the initiator and
    /// target MUST close the TCP connection").
    pub(in crate::target) fn login_reject(&mut self, itt: u32, status: LoginStatus) {
        let (class, detail) = status.raw();
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
            LoginResponse {
                transit: false,
                cont: false,
                csg: self.conn.login.stage.unwrap_or(Stage::Security),
                nsg: Stage::Security,
                version_max: VERSION,
                version_active: VERSION,
                isid: self.isid,
                tsih: 0,
                itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                status_class: class,
                status_detail: detail,
            },
            Bytes::new(),
        );
        self.emit(Event::LoginFailed { status });
        self.close(CloseReason::LoginFailed(status));
    }
}

/// RFC 7143 section 6.3 (and 11.12.3): the next stage is beyond the
/// current one; the security stage is never a next stage.
fn valid_transition(csg: Stage, nsg: Stage) -> bool {
    matches!(
        (csg, nsg),
        (Stage::Security, Stage::Operational)
            | (Stage::Security, Stage::FullFeature)
            | (Stage::Operational, Stage::FullFeature)
    )
}
