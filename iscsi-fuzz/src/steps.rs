//! What each typed [`Step`] sends: the PDUs built from the core's wire
//! `Repr`s and the session state, with the step's mutation applied.

use bytes::Bytes;
use iscsi_proto::wire::pdu::SnackType;
use iscsi_proto::wire::{
    DataOut, Digests, Header, LoginRequest, LogoutReason, LogoutRequest, NopOut, ScsiCommand,
    Serial, SnackRequest, Stage, TaskAttr, TaskMgmtRequest, TextRequest, TmfFunction,
};

use crate::case::{CmdKind, Step};
use crate::exec::{Exec, Task};
use crate::mutation::{shift, Mutation};

/// Block size assumed for READ/WRITE (every target this fuzzer was run
/// against serves 512-byte blocks; a different size only changes which
/// transfer lengths are legal).
const BLOCK: u32 = 512;

/// Most WRITEs `FillWindow` sends.
const FILL_MAX: u32 = 300;

impl Exec<'_> {
    /// Runs one step (nothing once the connection is closed). True if it
    /// ran.
    pub fn run_step(&mut self, step: &Step) -> bool {
        self.step_bytes.clear();
        if self.conn.closed {
            return false;
        }
        match step {
            Step::LoginSecurity {
                discovery,
                mutation,
            } => self.login_security(*discovery, mutation.as_ref()),
            Step::LoginOperational { digests, mutation } => {
                self.login_operational(*digests, mutation.as_ref())
            }
            Step::Command {
                slot,
                cmd,
                wait_r2t,
                mutation,
            } => {
                self.command(*slot, *cmd, mutation.as_ref());
                if *wait_r2t {
                    let itt = self.tasks.get(slot).map_or(0, |t| t.itt);
                    let wait = self.limits.answer;
                    self.wait_for(wait, |p| match &p.header {
                        Header::R2t(r) => r.itt == itt,
                        Header::ScsiResponse(r) => r.itt == itt,
                        _ => false,
                    });
                }
                self.pump();
            }
            Step::DataOut { slot, mutation } => {
                self.data_out(*slot, mutation.as_ref());
                self.pump();
            }
            Step::FillWindow => self.fill_window(),
            Step::Tmf {
                function,
                slot,
                mutation,
            } => {
                self.tmf(*function, *slot, mutation.as_ref());
                self.pump();
            }
            Step::Text { keys, mutation } => {
                let m = mutation.as_ref();
                let (itt, cmd_sn) = self.numbered(m);
                let req = TextRequest {
                    immediate: false,
                    final_pdu: true,
                    cont: false,
                    lun: 0,
                    itt,
                    ttt: 0xffff_ffff,
                    cmd_sn: Serial(cmd_sn),
                    exp_stat_sn: self.exp_stat_sn_for(m),
                };
                let data = Mutation::encode_text(m, keys);
                self.emit(req.into(), &data, m);
                self.pump();
            }
            Step::Nop { data, mutation } => {
                let m = mutation.as_ref();
                let itt = self.itt_for(m);
                let nop = NopOut {
                    immediate: true,
                    lun: 0,
                    itt,
                    ttt: 0xffff_ffff,
                    cmd_sn: Serial(self.cmd_sn_for(m, self.cmd_sn)),
                    exp_stat_sn: self.exp_stat_sn_for(m),
                };
                let payload: Vec<u8> = (0..*data).map(|i| i as u8).collect();
                self.emit(nop.into(), &payload, m);
                self.pump();
            }
            Step::Logout { reason, mutation } => {
                let m = mutation.as_ref();
                let (itt, cmd_sn) = self.numbered(m);
                let req = LogoutRequest {
                    immediate: false,
                    reason: LogoutReason::from_u8(*reason),
                    itt,
                    cid: 1,
                    cmd_sn: Serial(cmd_sn),
                    exp_stat_sn: self.exp_stat_sn_for(m),
                };
                self.logout_itt = Some(itt);
                self.logout_clean = m.is_none() && *reason <= 2;
                self.emit(req.into(), &[], m);
                self.pump();
            }
            Step::Snack {
                snack_type,
                slot,
                mutation,
            } => {
                let m = mutation.as_ref();
                let itt = self.tasks.get(slot).map_or(0xffff_ffff, |t| t.itt);
                let req = SnackRequest {
                    snack_type: SnackType::from_u8(*snack_type),
                    lun: 0,
                    itt,
                    ttt_or_snack_tag: 0,
                    exp_stat_sn: self.exp_stat_sn(),
                    beg_run: Serial(0),
                    run_length: 0,
                };
                self.emit(req.into(), &[], m);
                self.pump();
            }
        }
        true
    }

    /// ITT: a fresh one, an earlier task's (ReuseItt) or the reserved one
    /// (written by `emit`).
    fn itt_for(&mut self, m: Option<&Mutation>) -> u32 {
        if matches!(m, Some(Mutation::ReuseItt)) {
            if let Some(t) = self.tasks.values_mut().next() {
                t.reused = true;
                return t.itt;
            }
        }
        self.itt()
    }

    fn cmd_sn_for(&self, m: Option<&Mutation>, right: u32) -> u32 {
        match m {
            Some(Mutation::CmdSn { delta }) => shift(right, *delta),
            _ => right,
        }
    }

    fn exp_stat_sn_for(&self, m: Option<&Mutation>) -> Serial {
        let right = self.exp_stat_sn();
        match m {
            Some(Mutation::ExpStatSn { delta }) => Serial(shift(right.0, *delta)),
            _ => right,
        }
    }

    /// ITT and CmdSN of a non-immediate PDU; the session's CmdSN advances
    /// unless the mutation moved it.
    fn numbered(&mut self, m: Option<&Mutation>) -> (u32, u32) {
        let itt = self.itt_for(m);
        let sn = self.cmd_sn_for(m, self.cmd_sn);
        if !matches!(m, Some(Mutation::CmdSn { .. })) {
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        (itt, sn)
    }

    fn login_request(
        &mut self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &[(String, String)],
        m: Option<&Mutation>,
    ) -> bool {
        if self.login_itt == 0 {
            self.login_itt = self.itt();
        }
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: self.login_itt,
            cid: 1,
            cmd_sn: Serial(self.cmd_sn),
            exp_stat_sn: self.exp_stat_sn_for(m),
        };
        let data = Mutation::encode_text(m, keys);
        self.login_owed = true;
        self.emit(req.into(), &data, m)
    }

    /// Waits for the Login Response; its keys, or `None` (no answer,
    /// closed or a failure status).
    fn login_response(
        &mut self,
    ) -> Option<(iscsi_proto::wire::LoginResponse, Vec<(String, String)>)> {
        let wait = self.limits.answer;
        let p = self.wait_for(wait, |p| matches!(p.header, Header::LoginResponse(_)))?;
        let Header::LoginResponse(r) = p.header else {
            return None;
        };
        let keys = iscsi_proto::wire::text::parse_pairs(&p.data).unwrap_or_default();
        for (k, v) in &keys {
            self.negotiated.insert(k.clone(), v.clone());
        }
        if r.status_class != 0 {
            self.login_failed = true;
            return None;
        }
        if r.tsih != 0 {
            self.tsih = r.tsih;
        }
        if r.transit {
            self.stage = r.nsg;
            if r.nsg == Stage::FullFeature {
                self.enter_ffp();
            }
        }
        Some((r, keys))
    }

    fn enter_ffp(&mut self) {
        self.in_ffp = true;
        let on = |k: &str| {
            self.negotiated
                .get(k)
                .is_some_and(|v| v.eq_ignore_ascii_case("CRC32C"))
        };
        let d = Digests {
            header: on("HeaderDigest"),
            data: on("DataDigest"),
        };
        self.conn.set_digests(d);
        self.conn.set_max_recv(8192);
    }

    fn login_security(&mut self, discovery: bool, m: Option<&Mutation>) {
        self.discovery = discovery;
        let mut keys = vec![
            (
                "InitiatorName".to_string(),
                self.spec.initiator_name.clone(),
            ),
            (
                "SessionType".to_string(),
                if discovery { "Discovery" } else { "Normal" }.to_string(),
            ),
        ];
        if !discovery {
            keys.push(("TargetName".into(), self.spec.target_name.clone()));
        }
        let chap = self.chap.is_some();
        keys.push((
            "AuthMethod".into(),
            if chap { "CHAP,None" } else { "None" }.into(),
        ));
        let mut transit = !chap;
        let mut mutation = m;
        for _ in 0..6 {
            if !self.login_request(
                Stage::Security,
                Stage::Operational,
                transit,
                &keys,
                mutation,
            ) {
                return;
            }
            mutation = None;
            let Some((r, got)) = self.login_response() else {
                return;
            };
            if r.transit || self.in_ffp {
                return;
            }
            let has = |k: &str| got.iter().any(|(gk, _)| gk == k);
            keys = match self.chap.as_mut() {
                Some(c) if has("CHAP_C") => {
                    transit = true;
                    c.respond(&got, None).unwrap_or_default()
                }
                Some(c) if got.iter().any(|(k, v)| k == "AuthMethod" && v == "CHAP") => {
                    let offer = c.offer();
                    transit = false;
                    offer
                }
                _ => {
                    transit = true;
                    Vec::new()
                }
            };
        }
    }

    fn login_operational(&mut self, digests: bool, m: Option<&Mutation>) {
        if self.in_ffp {
            // The target skipped the stage; the step's PDU still goes out
            // (a Login Request in the full feature phase).
            self.login_request(Stage::Operational, Stage::FullFeature, true, &[], m);
            self.pump();
            return;
        }
        let d = if digests { "CRC32C,None" } else { "None" };
        let mut keys: Vec<(String, String)> = vec![
            ("HeaderDigest".into(), d.into()),
            ("DataDigest".into(), d.into()),
            ("MaxRecvDataSegmentLength".into(), "8192".into()),
        ];
        if !self.discovery {
            for (k, v) in [
                ("InitialR2T", "Yes"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("MaxOutstandingR2T", "1"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "0"),
                ("DefaultTime2Retain", "0"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
            ] {
                keys.push((k.into(), v.into()));
            }
        }
        let mut mutation = m;
        for _ in 0..4 {
            if !self.login_request(
                Stage::Operational,
                Stage::FullFeature,
                true,
                &keys,
                mutation,
            ) {
                return;
            }
            mutation = None;
            keys.clear();
            let Some((r, _)) = self.login_response() else {
                return;
            };
            if self.in_ffp || (r.transit && r.nsg == Stage::FullFeature) {
                return;
            }
        }
    }

    fn command(&mut self, slot: u8, cmd: CmdKind, m: Option<&Mutation>) {
        let (cdb, edtl, read, write): ([u8; 16], u32, bool, bool) = match cmd {
            CmdKind::TestUnitReady => ([0; 16], 0, false, false),
            CmdKind::Inquiry => {
                let mut c = [0u8; 16];
                c[0] = 0x12;
                c[4] = 96;
                (c, 96, true, false)
            }
            CmdKind::Read { blocks } => {
                let mut c = [0u8; 16];
                c[0] = 0x28;
                c[7..9].copy_from_slice(&blocks.to_be_bytes());
                (c, u32::from(blocks) * BLOCK, true, false)
            }
            CmdKind::Write { blocks } => {
                let mut c = [0u8; 16];
                c[0] = 0x2a;
                c[5] = 8;
                c[7..9].copy_from_slice(&blocks.to_be_bytes());
                (c, u32::from(blocks) * BLOCK, false, true)
            }
        };
        let itt = self.itt_for(m);
        let right = self.cmd_sn;
        let sn = self.cmd_sn_for(m, right);
        // Only a CmdSN the target has certainly seen pass (below the
        // ExpCmdSN it announced) or far beyond any window is known to lie
        // outside the window when it arrives: the target may have opened
        // the window since its last PDU, never closed it behind ExpCmdSN.
        let ignored = matches!(m, Some(Mutation::CmdSn { .. }))
            && self.exp_cmd_sn.is_some_and(|e| {
                let below = Serial(sn) < Serial(e);
                let far = self
                    .max_cmd_sn
                    .is_some_and(|mx| Serial(sn) > Serial(mx.wrapping_add(1 << 20)));
                below || far
            });
        if !matches!(m, Some(Mutation::CmdSn { .. })) {
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        let reused = self.tasks.values().any(|t| t.itt == itt);
        self.tasks.insert(
            slot,
            Task {
                itt,
                cmd_sn: sn,
                edtl,
                reused,
                ignored,
                ..Task::default()
            },
        );
        let hdr = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read,
            write,
            attr: TaskAttr::Simple,
            lun: self.spec.lun_field(),
            itt,
            expected_data_transfer_length: edtl,
            cmd_sn: Serial(sn),
            exp_stat_sn: self.exp_stat_sn_for(m),
            cdb,
        };
        self.emit(hdr.into(), &[], m);
    }

    fn data_out(&mut self, slot: u8, m: Option<&Mutation>) {
        let mrdsl = self.target_mrdsl();
        let Some(task) = self.tasks.get_mut(&slot) else {
            return;
        };
        let itt = task.itt;
        let (ttt, start, len) = match task.r2ts.iter_mut().rev().find(|r| !r.answered) {
            Some(r) => {
                r.answered = true;
                (r.ttt, r.offset, r.len)
            }
            // No R2T: unsolicited data from offset 0.
            None => (0xffff_ffff, 0, task.edtl.min(mrdsl)),
        };
        let end = start.saturating_add(len);
        // (offset, length) of each Data-Out of the burst.
        let mut pdus: Vec<(u32, u32)> = Vec::new();
        match m {
            Some(Mutation::DataOutOffsetBeyond { past }) => {
                pdus.push((end.saturating_add(*past), BLOCK.min(mrdsl)));
            }
            _ => {
                let first = match m {
                    Some(Mutation::DataOutSkip { gap }) => start.saturating_add(*gap).min(end),
                    _ => start,
                };
                let mut off = first;
                while off < end {
                    let n = (end - off).min(mrdsl);
                    pdus.push((off, n));
                    off += n;
                }
                if let (Some(Mutation::DataOutOverrun { extra }), Some(last)) = (m, pdus.last_mut())
                {
                    let extra = (*extra).clamp(1, mrdsl / 2);
                    let n = last.1.min(mrdsl - extra);
                    *last = (end - n, n + extra);
                }
            }
        }
        let ttt = match m {
            Some(Mutation::WrongTtt { ttt }) => *ttt,
            _ => ttt,
        };
        let itt = match m {
            Some(Mutation::ReuseItt) => itt.wrapping_add(0x1000),
            _ => itt,
        };
        let count = pdus.len();
        for (i, (off, n)) in pdus.into_iter().enumerate() {
            let mut data_sn = i as u32;
            if let (0, Some(Mutation::DataSn { delta })) = (i, m) {
                data_sn = shift(data_sn, *delta);
            }
            let last = i + 1 == count;
            let hdr = DataOut {
                final_pdu: last && !matches!(m, Some(Mutation::NoFinal)),
                lun: self.spec.lun_field(),
                itt,
                ttt,
                exp_stat_sn: self.exp_stat_sn(),
                data_sn: Serial(data_sn),
                buffer_offset: off,
            };
            let payload = Bytes::from(vec![0xa5u8; n as usize]);
            // Header, AHS, digest and delivery mutations act on the first.
            let pm = if i == 0 { m } else { None };
            if !self.emit(hdr.into(), &payload, pm) {
                return;
            }
        }
    }

    fn fill_window(&mut self) {
        for i in 0..FILL_MAX {
            if let Some(max) = self.max_cmd_sn {
                if Serial(self.cmd_sn) > Serial(max) {
                    self.window_closed = true;
                    break;
                }
            }
            let slot = 100u8.wrapping_add((i % 100) as u8);
            self.command(slot, CmdKind::Write { blocks: 1 }, None);
            // Read what arrived (R2Ts, window updates) without waiting.
            while let Some(p) = self.next(std::time::Duration::ZERO) {
                self.observe(&p);
            }
        }
        self.pump();
        if let Some(max) = self.max_cmd_sn {
            self.window_closed |= Serial(self.cmd_sn) > Serial(max);
        }
    }

    fn tmf(&mut self, function: u8, slot: Option<u8>, m: Option<&Mutation>) {
        let (rtt, ref_sn) = slot
            .and_then(|s| self.tasks.get(&s))
            .map_or((0xffff_ffff, self.cmd_sn), |t| (t.itt, t.cmd_sn));
        let itt = self.itt_for(m);
        let req = TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::from_u8(function),
            lun: self.spec.lun_field(),
            itt,
            referenced_task_tag: rtt,
            cmd_sn: Serial(self.cmd_sn_for(m, self.cmd_sn)),
            exp_stat_sn: self.exp_stat_sn_for(m),
            ref_cmd_sn: Serial(ref_sn),
            exp_data_sn: Serial(0),
        };
        self.emit(req.into(), &[], m);
    }
}
