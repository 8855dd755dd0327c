//! Runs a case's steps against a live target: the session state a step
//! needs (tags, sequence numbers, R2Ts, negotiated values), what every
//! received PDU tells the oracle, and the end-of-case probe.

use std::collections::BTreeMap;
use std::time::Duration;

use iscsi_proto::login::chap::{ChapCredentials, InitiatorChap, InitiatorChapConfig};
use iscsi_proto::wire::digest::{crc32c, digest_bytes, header_digest, padding_len};
use iscsi_proto::wire::{Digests, Header, Isid, Pdu, RejectReason, Serial, Stage};

use crate::conn::{Conn, Recv};
use crate::mutation::Mutation;
use crate::oracle::{Finding, FindingKind, Rule};
use crate::TargetSpec;

/// Deadlines of a case.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// TCP connect timeout.
    pub connect: Duration,
    /// How long an owed answer may take before the target counts as hung.
    pub answer: Duration,
    /// Silence that ends the reading after a step.
    pub quiet: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect: Duration::from_secs(3),
            answer: Duration::from_secs(5),
            quiet: Duration::from_millis(20),
        }
    }
}

/// An R2T received for a task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct R2tInfo {
    pub(crate) ttt: u32,
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) answered: bool,
}

/// A task the case started.
#[derive(Debug, Clone, Default)]
pub(crate) struct Task {
    pub(crate) itt: u32,
    pub(crate) cmd_sn: u32,
    pub(crate) edtl: u32,
    pub(crate) r2ts: Vec<R2tInfo>,
    pub(crate) responses: u32,
    /// Its ITT was used twice: no per-task rule applies.
    pub(crate) reused: bool,
    /// Sent with a CmdSN the target must silently ignore.
    pub(crate) ignored: bool,
}

/// The session state of one case connection.
#[derive(Debug)]
pub struct Exec<'a> {
    pub(crate) spec: &'a TargetSpec,
    pub(crate) limits: Limits,
    pub(crate) conn: Conn,
    pub(crate) isid: Isid,
    pub(crate) tsih: u16,
    pub(crate) next_itt: u32,
    pub(crate) login_itt: u32,
    pub(crate) cmd_sn: u32,
    pub(crate) exp_cmd_sn: Option<u32>,
    pub(crate) max_cmd_sn: Option<u32>,
    pub(crate) stat_sn: Option<u32>,
    pub(crate) stage: Stage,
    pub(crate) in_ffp: bool,
    pub(crate) discovery: bool,
    pub(crate) login_failed: bool,
    /// A Login Request is unanswered.
    pub(crate) login_owed: bool,
    pub(crate) chap: Option<InitiatorChap>,
    /// Keys the target sent during login.
    pub(crate) negotiated: BTreeMap<String, String>,
    pub(crate) tasks: BTreeMap<u8, Task>,
    pub(crate) framing_broken: bool,
    pub(crate) bad_data_digest_sent: bool,
    /// The BHS of the last PDU sent with a wrong data digest.
    pub(crate) bad_digest_bhs: Option<[u8; 48]>,
    pub(crate) logout_itt: Option<u32>,
    pub(crate) logout_answered: bool,
    pub(crate) r2t_seen: bool,
    pub(crate) window_closed: bool,
    /// A mutation may have moved the target's CmdSN away from ours: a
    /// non-immediate request may then be silently ignored, so no answer
    /// to one is owed.
    pub(crate) cmd_sn_disturbed: bool,
    /// The Logout Request went out unmutated with a defined reason.
    pub(crate) logout_clean: bool,
    /// The first rule the target broke.
    pub(crate) violation: Option<(Rule, String)>,
    /// Every ITT this connection put on the wire (mutated ones too).
    pub(crate) sent_itts: std::collections::BTreeSet<u32>,
    /// Bytes sent by the current step (for the replay file).
    pub(crate) step_bytes: Vec<u8>,
}

impl<'a> Exec<'a> {
    /// Connects to the target; `salt` varies the ISID between cases.
    pub fn connect(spec: &'a TargetSpec, limits: Limits, salt: u64) -> std::io::Result<Exec<'a>> {
        let conn = Conn::connect(&spec.addr, limits.connect)?;
        let s = salt.to_be_bytes();
        let chap = spec.chap.as_ref().and_then(|(u, p)| {
            InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new(
                u.clone(),
                p.as_bytes(),
            )))
            .ok()
        });
        Ok(Exec {
            spec,
            limits,
            conn,
            // A random-format ISID (RFC 7143 section 11.12.5); distinct per
            // case so the target never reinstates an earlier session.
            isid: Isid::random([s[5], s[6], s[7]], u16::from_be_bytes([s[3], s[4]])),
            tsih: 0,
            next_itt: 0x100,
            login_itt: 0,
            cmd_sn: 1,
            exp_cmd_sn: None,
            max_cmd_sn: None,
            stat_sn: None,
            stage: Stage::Security,
            in_ffp: false,
            discovery: false,
            login_failed: false,
            login_owed: false,
            chap,
            negotiated: BTreeMap::new(),
            tasks: BTreeMap::new(),
            framing_broken: false,
            bad_data_digest_sent: false,
            bad_digest_bhs: None,
            logout_itt: None,
            logout_answered: false,
            r2t_seen: false,
            window_closed: false,
            cmd_sn_disturbed: false,
            logout_clean: false,
            violation: None,
            sent_itts: std::collections::BTreeSet::new(),
            step_bytes: Vec::new(),
        })
    }

    /// The connection (its transcript).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    pub(crate) fn itt(&mut self) -> u32 {
        self.next_itt = self.next_itt.wrapping_add(1);
        self.next_itt
    }

    pub(crate) fn exp_stat_sn(&self) -> Serial {
        Serial(self.stat_sn.map_or(0, |s| s.wrapping_add(1)))
    }

    /// The target's MaxRecvDataSegmentLength (what we may send).
    pub(crate) fn target_mrdsl(&self) -> u32 {
        self.negotiated
            .get("MaxRecvDataSegmentLength")
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| *v >= 512)
            .unwrap_or(8192)
            .min(64 * 1024)
    }

    fn flag(&mut self, rule: Rule, detail: String) {
        if self.violation.is_none() {
            self.violation = Some((rule, detail));
        }
    }

    /// Encodes `header` + `data` with the mutation's BHS, AHS and digest
    /// changes and sends it as the mutation's delivery says.
    pub(crate) fn emit(&mut self, header: Header, data: &[u8], m: Option<&Mutation>) -> bool {
        let digests = if self.in_ffp {
            self.conn.digests
        } else {
            Digests::NONE
        };
        let mut ahs = Vec::new();
        if let Some(Mutation::Ahs { ahs_type, len }) = m {
            let len = (*len).min(1016);
            ahs.extend_from_slice(&len.to_be_bytes());
            ahs.push(*ahs_type);
            ahs.push(0);
            ahs.resize(4 + usize::from(len) + padding_len(usize::from(len)), 0);
            if let Some(x) = ahs.get_mut(4) {
                *x = 0x5a;
            }
        }
        let words = u8::try_from(ahs.len() / 4).unwrap_or(u8::MAX);
        let dlen = u32::try_from(data.len())
            .unwrap_or(u32::MAX)
            .min(0x00ff_ffff);
        let mut bhs = header.to_bytes(words, dlen);
        match m {
            Some(Mutation::Opcode { value }) => bhs[0] = (bhs[0] & 0x40) | (value & 0x3f),
            Some(Mutation::Flags { xor }) => bhs[1] ^= xor,
            Some(Mutation::TotalAhsLength { value }) => bhs[4] = *value,
            Some(Mutation::DataSegmentLength { value }) => {
                let v = value.to_be_bytes();
                bhs[5] = v[1];
                bhs[6] = v[2];
                bhs[7] = v[3];
            }
            Some(Mutation::ReservedItt) => bhs[16..20].copy_from_slice(&[0xff; 4]),
            Some(Mutation::Word { offset, value }) => {
                let o = usize::from(*offset).clamp(8, 44) & !3;
                if let Some(w) = bhs.get_mut(o..o + 4) {
                    w.copy_from_slice(&value.to_be_bytes());
                }
            }
            _ => {}
        }
        if self.sent_itts.len() < 100_000 {
            self.sent_itts
                .insert(u32::from_be_bytes([bhs[16], bhs[17], bhs[18], bhs[19]]));
        }
        let mut out = Vec::with_capacity(64 + data.len());
        out.extend_from_slice(&bhs);
        out.extend_from_slice(&ahs);
        let bad_hd = matches!(m, Some(Mutation::BadHeaderDigest));
        if digests.header {
            let crc = header_digest(&out) ^ u32::from(bad_hd);
            out.extend_from_slice(&digest_bytes(crc));
        } else if bad_hd {
            out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        }
        out.extend_from_slice(data);
        out.resize(out.len() + padding_len(data.len()), 0);
        let bad_dd = matches!(m, Some(Mutation::BadDataDigest));
        if digests.data && !data.is_empty() {
            let from = out.len() - data.len() - padding_len(data.len());
            let padded = out.get(from..).unwrap_or(&[]);
            let crc = crc32c(padded) ^ u32::from(bad_dd);
            out.extend_from_slice(&digest_bytes(crc));
            self.bad_data_digest_sent |= bad_dd;
            if bad_dd {
                self.bad_digest_bhs = Some(bhs);
            }
        } else if bad_dd {
            out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        }
        if let Some(m) = m {
            if matches!(
                m,
                Mutation::CmdSn { .. }
                    | Mutation::Opcode { .. }
                    | Mutation::Word { offset: 24, .. }
            ) {
                self.cmd_sn_disturbed = true;
            }
            if m.breaks_framing(digests.header, digests.data && !data.is_empty()) {
                self.framing_broken = true;
            }
        }
        if self.step_bytes.len() < 64 * 1024 {
            self.step_bytes.extend_from_slice(&out);
        }
        match m {
            Some(Mutation::Truncate { at }) => {
                let at = (*at as usize).min(out.len());
                let ok = self.conn.send(out.get(..at).unwrap_or(&[]));
                self.conn.shutdown_write();
                ok
            }
            Some(Mutation::Split { at, delay_ms }) => {
                let at = (*at as usize).min(out.len());
                let (a, b) = out.split_at(at);
                let ok = self.conn.send(a);
                std::thread::sleep(Duration::from_millis(u64::from(*delay_ms)));
                ok && self.conn.send(b)
            }
            _ => self.conn.send(&out),
        }
    }

    /// Reads until the target has been silent for the quiet time.
    pub(crate) fn pump(&mut self) {
        let q = self.limits.quiet;
        while let Some(p) = self.next(q) {
            self.observe(&p);
        }
    }

    /// The next PDU within `wait` (`None` on silence, close or garbage).
    pub(crate) fn next(&mut self, wait: Duration) -> Option<Box<Pdu>> {
        match self.conn.recv(wait) {
            Recv::Pdu(p) => Some(p),
            Recv::Closed | Recv::Timeout => None,
            Recv::Malformed(e) => {
                self.flag(
                    Rule::MalformedPdu,
                    format!("the target sent bytes that are not a valid PDU: {e}"),
                );
                None
            }
        }
    }

    /// Reads until `want` matches a PDU (observing every PDU) or `wait`
    /// passes; the matching PDU.
    pub(crate) fn wait_for(
        &mut self,
        wait: Duration,
        mut want: impl FnMut(&Pdu) -> bool,
    ) -> Option<Box<Pdu>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let p = self.next(left)?;
            self.observe(&p);
            if want(&p) {
                return Some(p);
            }
        }
    }

    fn window(&mut self, exp: Serial, max: Serial) {
        // RFC 7143 section 4.2.2.1: "The target MUST NOT transmit a
        // MaxCmdSN that is less than ExpCmdSN-1."
        if max < exp.minus(1) {
            self.flag(
                Rule::WindowInvalid,
                format!("MaxCmdSN {} < ExpCmdSN {} - 1", max.0, exp.0),
            );
            return;
        }
        if self.exp_cmd_sn.is_none_or(|e| Serial(e) < exp) {
            self.exp_cmd_sn = Some(exp.0);
        }
        if self.max_cmd_sn.is_none_or(|m| Serial(m) < max) {
            self.max_cmd_sn = Some(max.0);
        }
    }

    /// A StatSN that advances the connection's status numbering.
    fn status(&mut self, sn: Serial, what: &str) {
        // RFC 7143 section 4.2.2.2: StatSN numbers the responses of a
        // connection in order; it never goes backwards.
        if let Some(last) = self.stat_sn {
            if sn < Serial(last) {
                self.flag(
                    Rule::StatSnBackwards,
                    format!("{what} StatSN {} after StatSN {last}", sn.0),
                );
                return;
            }
        }
        self.stat_sn = Some(sn.0);
    }

    fn task_by_itt(&mut self, itt: u32) -> Option<(u8, &mut Task)> {
        self.tasks
            .iter_mut()
            .find(|(_, t)| t.itt == itt)
            .map(|(s, t)| (*s, t))
    }

    fn task_answered(&mut self, itt: u32, what: &str) {
        let mut flag = None;
        if let Some((slot, t)) = self.task_by_itt(itt) {
            t.responses += 1;
            if !t.reused && t.ignored {
                // RFC 7143 section 4.2.2.1: "The target MUST silently
                // ignore any non-immediate command outside of this range".
                flag = Some((
                    Rule::AnsweredIgnoredCommand,
                    format!("{what} for task {slot} (ITT {itt:#x}), sent outside the CmdSN window"),
                ));
            } else if !t.reused && t.responses > 1 {
                // RFC 7143 section 11.4: a task ends with one SCSI
                // Response (or a final Data-In carrying status).
                flag = Some((
                    Rule::TaskEndedTwice,
                    format!("second {what} for task {slot} (ITT {itt:#x})"),
                ));
            }
        }
        if let Some((r, d)) = flag {
            self.flag(r, d);
        }
    }

    /// What a received PDU updates and what the oracle checks in it.
    pub(crate) fn observe(&mut self, p: &Pdu) {
        if !self.in_ffp && !matches!(p.header, Header::LoginResponse(_)) {
            // RFC 7143 section 4.2.4 (RFC 3720 3.2.3): "Before the Full
            // Feature Phase is established, only Login Request and Login
            // Response PDUs are allowed."
            self.flag(
                Rule::NonLoginPduDuringLogin,
                format!("the target sent a {} during login", pdu_name(&p.header)),
            );
        }
        match &p.header {
            Header::LoginResponse(r) => {
                self.login_owed = false;
                if !self.sent_itts.contains(&r.itt) {
                    // RFC 7143 section 11.13: the response carries the
                    // request's Initiator Task Tag (a non-login PDU during
                    // login is answered with its own ITT).
                    self.flag(
                        Rule::WrongItt,
                        format!(
                            "Login Response ITT {:#x}, a tag we never sent (login ITT {:#x})",
                            r.itt, self.login_itt
                        ),
                    );
                }
                self.status(r.stat_sn, "Login Response");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
            }
            Header::ScsiResponse(r) => {
                self.status(r.stat_sn, "SCSI Response");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
                self.task_answered(r.itt, "SCSI Response");
            }
            Header::DataIn(d) => {
                self.window(d.exp_cmd_sn, d.max_cmd_sn);
                if let Some(s) = &d.status {
                    self.status(s.stat_sn, "Data-In with status");
                    self.task_answered(d.itt, "Data-In with status");
                }
            }
            Header::R2t(r) => {
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
                self.r2t_seen = true;
                let mut flag = None;
                if let Some((slot, t)) = self.task_by_itt(r.itt) {
                    let end =
                        u64::from(r.buffer_offset) + u64::from(r.desired_data_transfer_length);
                    if !t.reused && end > u64::from(t.edtl) {
                        // RFC 7143 section 11.8: an R2T asks for data of the
                        // command's Expected Data Transfer Length.
                        flag = Some((
                            Rule::R2tBeyondTransfer,
                            format!(
                                "R2T for task {slot} asks for bytes {}..{end} of a {}-byte transfer",
                                r.buffer_offset, t.edtl
                            ),
                        ));
                    }
                    if !t.reused && t.ignored {
                        flag = Some((
                            Rule::AnsweredIgnoredCommand,
                            format!("R2T for task {slot}, sent outside the CmdSN window"),
                        ));
                    }
                    t.r2ts.push(R2tInfo {
                        ttt: r.ttt,
                        offset: r.buffer_offset,
                        len: r.desired_data_transfer_length,
                        answered: false,
                    });
                }
                if let Some((r, d)) = flag {
                    self.flag(r, d);
                }
            }
            Header::TaskMgmtResponse(r) => {
                self.status(r.stat_sn, "TMF Response");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
            }
            Header::TextResponse(r) => {
                self.status(r.stat_sn, "Text Response");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
                if !r.final_pdu && r.ttt != 0xffff_ffff && !self.framing_broken {
                    // More text to come: an empty Text Request continues
                    // the exchange (RFC 7143 section 11.10.2).
                    let req = iscsi_proto::wire::TextRequest {
                        immediate: true,
                        final_pdu: true,
                        cont: false,
                        lun: 0,
                        itt: r.itt,
                        ttt: r.ttt,
                        cmd_sn: Serial(self.cmd_sn),
                        exp_stat_sn: self.exp_stat_sn(),
                    };
                    self.emit(req.into(), &[], None);
                }
            }
            Header::LogoutResponse(r) => {
                self.logout_answered = true;
                self.status(r.stat_sn, "Logout Response");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
            }
            Header::NopIn(n) => {
                self.window(n.exp_cmd_sn, n.max_cmd_sn);
                if n.itt != 0xffff_ffff {
                    self.status(n.stat_sn, "NOP-In");
                } else if n.ttt != 0xffff_ffff && !self.framing_broken && self.in_ffp {
                    // A target ping: answer it (RFC 7143 section 11.18).
                    let out = iscsi_proto::wire::NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: 0xffff_ffff,
                        ttt: n.ttt,
                        cmd_sn: Serial(self.cmd_sn),
                        exp_stat_sn: self.exp_stat_sn(),
                    };
                    self.emit(out.into(), &p.data, None);
                }
            }
            Header::Reject(r) => {
                self.status(r.stat_sn, "Reject");
                self.window(r.exp_cmd_sn, r.max_cmd_sn);
                self.check_reject(r.reason, &p.data);
            }
            Header::AsyncMessage(a) => {
                self.status(a.stat_sn, "Async Message");
                self.window(a.exp_cmd_sn, a.max_cmd_sn);
            }
            other => {
                self.flag(
                    Rule::MalformedPdu,
                    format!("the target sent an initiator PDU: {:?}", opcode_name(other)),
                );
            }
        }
    }

    fn check_reject(&mut self, reason: RejectReason, data: &[u8]) {
        let data_len = data.len();
        // The Reject names the PDU it rejects by carrying its header.
        let rejects_bad_digest = self
            .bad_digest_bhs
            .is_some_and(|b| data.get(..48) == Some(&b[..]));
        match reason {
            // RFC 7143 section 11.17.1 reserves the other codes.
            RejectReason::Other(c) => self.flag(
                Rule::RejectReason,
                format!("Reject with reserved reason {c:#04x}"),
            ),
            // After a PDU that broke framing the target may read any bytes
            // as a data segment, so a digest error is then its right answer.
            RejectReason::DataDigestError if !self.bad_data_digest_sent && !self.framing_broken => {
                self.flag(
                    Rule::RejectReason,
                    "Reject 'data digest error' but no data digest was wrong".into(),
                )
            }
            _ if rejects_bad_digest && reason != RejectReason::DataDigestError => {
                // RFC 7143 section 7.8: "When a target receives any iSCSI
                // PDU with a payload digest error, it MUST answer with a
                // Reject PDU with a reason code of Data-Digest-Error".
                self.flag(
                    Rule::RejectReason,
                    format!(
                        "a data digest error answered with Reject reason {:#04x}",
                        reason.to_u8()
                    ),
                );
            }
            _ => {}
        }
        if data_len < 48 {
            // RFC 7143 section 11.17: the Reject "includes the complete
            // header of the bad PDU" in its data segment.
            self.flag(
                Rule::RejectWithoutHeader,
                format!("Reject with a {data_len}-byte data segment (no rejected header)"),
            );
        }
    }

    /// The end-of-case probe: did the target answer what it owes? A
    /// finding of class hang if not.
    pub fn probe(&mut self) -> Option<Finding> {
        if let Some((rule, detail)) = self.violation.take() {
            return Some(Finding::new(FindingKind::Violation(rule), detail));
        }
        if self.conn.closed {
            return None;
        }
        let wait = self.limits.answer;
        if self.framing_broken {
            self.conn.shutdown_write();
            if !self.conn.wait_closed(wait) {
                return Some(Finding::new(
                    FindingKind::Hang,
                    format!("connection still open {wait:?} after a malformed PDU and our FIN"),
                ));
            }
            return None;
        }
        if self.login_owed && !self.in_ffp {
            let got = self.wait_for(wait, |p| matches!(p.header, Header::LoginResponse(_)));
            if got.is_none() && !self.conn.closed {
                return Some(Finding::new(
                    FindingKind::Hang,
                    format!("no Login Response and no close within {wait:?}"),
                ));
            }
        } else if self.logout_itt.is_some() {
            // After a Logout Request the initiator sends nothing more on
            // the connection (RFC 7143 section 11.14), so no ping: only a
            // clean Logout that surely arrived in order is owed its
            // Logout Response (RFC 7143 section 11.15) or a close.
            let owed = !self.logout_answered && self.logout_clean && !self.cmd_sn_disturbed;
            if owed {
                let got = self.wait_for(wait, |p| {
                    matches!(p.header, Header::LogoutResponse(_) | Header::Reject(_))
                });
                if got.is_none() && !self.conn.closed {
                    return Some(Finding::new(
                        FindingKind::Hang,
                        format!("no Logout Response and no close within {wait:?}"),
                    ));
                }
            }
        } else if self.in_ffp {
            let itt = self.itt();
            let ping = iscsi_proto::wire::NopOut {
                immediate: true,
                lun: 0,
                itt,
                ttt: 0xffff_ffff,
                cmd_sn: Serial(self.cmd_sn),
                exp_stat_sn: self.exp_stat_sn(),
            };
            if self.emit(ping.into(), &[], None) {
                let got = self.wait_for(wait, |p| match &p.header {
                    Header::NopIn(n) => n.itt == itt,
                    Header::Reject(_) | Header::LogoutResponse(_) => true,
                    Header::AsyncMessage(a) => a.event.to_u8() == 1,
                    _ => false,
                });
                if got.is_none() && !self.conn.closed {
                    return Some(Finding::new(
                        FindingKind::Hang,
                        format!("no answer to a NOP-Out ping and no close within {wait:?}"),
                    ));
                }
            }
        }
        self.violation
            .take()
            .map(|(rule, detail)| Finding::new(FindingKind::Violation(rule), detail))
    }
}

fn pdu_name(h: &Header) -> &'static str {
    match h {
        Header::NopIn(_) => "NOP-In",
        Header::ScsiResponse(_) => "SCSI Response",
        Header::TaskMgmtResponse(_) => "TMF Response",
        Header::LoginResponse(_) => "Login Response",
        Header::TextResponse(_) => "Text Response",
        Header::DataIn(_) => "Data-In",
        Header::LogoutResponse(_) => "Logout Response",
        Header::R2t(_) => "R2T",
        Header::AsyncMessage(_) => "Async Message",
        Header::Reject(_) => "Reject",
        other => opcode_name(other),
    }
}

fn opcode_name(h: &Header) -> &'static str {
    match h {
        Header::NopOut(_) => "NOP-Out",
        Header::ScsiCommand(_) => "SCSI Command",
        Header::TaskMgmtRequest(_) => "TMF Request",
        Header::LoginRequest(_) => "Login Request",
        Header::TextRequest(_) => "Text Request",
        Header::DataOut(_) => "Data-Out",
        Header::LogoutRequest(_) => "Logout Request",
        Header::SnackRequest(_) => "SNACK",
        _ => "target PDU",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_proto::wire::{Bhs, NopOut};
    use std::io::Read;
    use std::net::TcpListener;

    /// Sends one NOP-Out with `m` through `emit` and returns the bytes the
    /// peer received (until the fuzzer closes).
    fn emitted(m: Option<Mutation>, data: &[u8], ffp_digests: Option<Digests>) -> Vec<u8> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = TargetSpec::new(l.local_addr().unwrap().to_string(), "t");
        let mut e = Exec::connect(&spec, Limits::default(), 7).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        if let Some(d) = ffp_digests {
            e.in_ffp = true;
            e.conn.set_digests(d);
        }
        let nop = NopOut {
            immediate: true,
            lun: 0,
            itt: 0x1234,
            ttt: 0xffff_ffff,
            cmd_sn: Serial(5),
            exp_stat_sn: Serial(9),
        };
        assert!(e.emit(nop.into(), data, m.as_ref()));
        e.conn.close();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    }

    #[test]
    fn unmutated_pdu_is_the_cores_encoding() {
        let got = emitted(None, b"abcde", None);
        let mut want = bytes::BytesMut::new();
        let nop = NopOut {
            immediate: true,
            lun: 0,
            itt: 0x1234,
            ttt: 0xffff_ffff,
            cmd_sn: Serial(5),
            exp_stat_sn: Serial(9),
        };
        Pdu::new(nop, bytes::Bytes::from_static(b"abcde"))
            .encode(&mut want, Digests::NONE)
            .unwrap();
        assert_eq!(got, want.to_vec());
        // With both digests (RFC 7143 section 11.2.3) too.
        let got = emitted(None, b"abcde", Some(Digests::BOTH));
        let mut want = bytes::BytesMut::new();
        Pdu::new(nop, bytes::Bytes::from_static(b"abcde"))
            .encode(&mut want, Digests::BOTH)
            .unwrap();
        assert_eq!(got, want.to_vec());
    }

    #[test]
    fn each_header_mutation_changes_exactly_its_field() {
        let base = emitted(None, &[], None);
        let diff = |m: Mutation| -> Vec<usize> {
            let got = emitted(Some(m), &[], None);
            (0..base.len().max(got.len()))
                .filter(|&i| base.get(i) != got.get(i))
                .collect()
        };
        assert_eq!(diff(Mutation::Opcode { value: 0x3f }), vec![0]);
        assert_eq!(diff(Mutation::Flags { xor: 0x80 }), vec![1]);
        assert_eq!(diff(Mutation::TotalAhsLength { value: 1 }), vec![4]);
        assert_eq!(diff(Mutation::DataSegmentLength { value: 1 }), vec![7]);
        assert_eq!(diff(Mutation::ReservedItt), vec![16, 17, 18, 19]);
        assert_eq!(
            diff(Mutation::Word {
                offset: 24,
                value: 6
            }),
            vec![27]
        );
        // Without digests in use, a "bad digest" is 4 stray bytes.
        assert_eq!(diff(Mutation::BadHeaderDigest), vec![48, 49, 50, 51]);
        let got = emitted(Some(Mutation::Truncate { at: 20 }), &[], None);
        assert_eq!(got, base[..20]);
        let got = emitted(Some(Mutation::Split { at: 7, delay_ms: 1 }), &[], None);
        assert_eq!(got, base);
    }

    #[test]
    fn ahs_and_digest_mutations_keep_the_framing_consistent() {
        let got = emitted(
            Some(Mutation::Ahs {
                ahs_type: 2,
                len: 5,
            }),
            b"xy",
            None,
        );
        let bhs = Bhs::new_checked(&got[..48]).unwrap();
        // AHSLength 5 -> 4 + 5 bytes padded to 12: TotalAHSLength 3 words.
        assert_eq!(bhs.total_ahs_len(), 3);
        assert_eq!(&got[48..52], &[0, 5, 2, 0]);
        assert_eq!(got.len(), 48 + 12 + 4);
        // With digests: a wrong header digest differs from the right one
        // in the digest only; a wrong data digest likewise.
        let right = emitted(None, b"xy", Some(Digests::BOTH));
        let bad_h = emitted(Some(Mutation::BadHeaderDigest), b"xy", Some(Digests::BOTH));
        let bad_d = emitted(Some(Mutation::BadDataDigest), b"xy", Some(Digests::BOTH));
        assert_eq!(right.len(), bad_h.len());
        let dh: Vec<usize> = (0..right.len()).filter(|&i| right[i] != bad_h[i]).collect();
        assert!(dh.iter().all(|i| (48..52).contains(i)) && !dh.is_empty());
        let dd: Vec<usize> = (0..right.len()).filter(|&i| right[i] != bad_d[i]).collect();
        assert!(dd.iter().all(|&i| i >= right.len() - 4) && !dd.is_empty());
    }

    #[test]
    fn text_mutations() {
        let pairs = vec![("A".to_string(), "1".to_string())];
        assert_eq!(Mutation::encode_text(None, &pairs), b"A=1\0");
        assert_eq!(
            Mutation::encode_text(Some(&Mutation::MissingNul), &pairs),
            b"A=1"
        );
        assert_eq!(
            Mutation::encode_text(Some(&Mutation::RepeatedKey { key: "A".into() }), &pairs),
            b"A=1\0A=1\0A=1\0"
        );
        let big = Mutation::encode_text(
            Some(&Mutation::OversizedValue {
                key: "A".into(),
                len: 300,
            }),
            &pairs,
        );
        assert_eq!(big.len(), 2 + 300 + 1);
    }
}
