//! The interop matrix: drivers {std, mio, smol} x targets {tgtd, istgt} x
//! auth {none, CHAP, mutual CHAP} x digests {none, header+data CRC32C} x
//! {InitialR2T, ImmediateData} in all four combinations: 144 cells named
//! `matrix/<target>-<driver>-<auth>-<digests>-<r2t>-<imm>`, e.g.
//! `matrix/tgtd-std-chap-digests-r2t-imm` or
//! `matrix/istgt-smol-mutual-nodigests-nor2t-noimm`.
//!
//! Each cell, through its driver: SendTargets discovery (with the cell's
//! authentication, which the target requires for discovery too), login
//! with the cell's wishes, the negotiated values checked against what the
//! target configuration implies, INQUIRY, READ CAPACITY, 512 KiB of random
//! data at a random LBA as four 128 KiB WRITE(16) in flight (each larger
//! than FirstBurstLength, so immediate data, unsolicited Data-Out and R2Ts
//! all occur where the combination allows them), SYNCHRONIZE CACHE, the
//! backing file compared, four READ(16) in flight compared, then ABORT
//! TASK of an in-flight read and LOGICAL UNIT RESET with others in flight
//! (every task ends exactly once, GOOD with the right data or aborted),
//! the session used again, and logout. The whole cell runs inside a live
//! capture shared with its neighbours ([`crate::peers::LiveCapture`]): no
//! malformed PDU and no expert error, digests present exactly when
//! negotiated, the target's login answers carry the expected values, and
//! the bytes sent as immediate data, unsolicited Data-Out and solicited
//! Data-Out are exactly what the negotiated values prescribe.
//!
//! Targets are shared by consecutive cells (see [`world`]): one tgtd,
//! reconfigured live with `tgtadm`, and twelve istgt instances started
//! side by side.

mod driver;
mod world;

use super::initiator_common::{
    chap_auth, check_capacity, compare, config, file_region, lun, mutual_auth, op_params, read_cmd,
    with_auth, write_cmd, XorShift,
};
use crate::peers::LiveReport;
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use driver::{connect, discover, EndError, Initiator, Kind};
use iscsi_proto::error::{ConnectionError, TaskError};
use iscsi_proto::initiator::{Auth, ScsiCommand, ScsiResult, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::{AuthMethod, DigestType, OperationalParams};
use iscsi_proto::login::status::LoginStatus;
use iscsi_proto::scsi::cdb::{self, Capacity, StandardInquiry};
use iscsi_proto::scsi::sense::{SenseData, SenseKey};
use iscsi_proto::scsi::status::ScsiStatus;
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use std::time::Duration;
use world::{initiator_creds, target_creds, Lease, TargetView};

const G: &str = "matrix";

/// WRITE(16) commands in flight at once.
const WRITES: usize = 4;
/// Bytes per WRITE(16): above FirstBurstLength (64 KiB), so every write
/// needs R2Ts after its unsolicited part.
const PER_WRITE: usize = 128 * 1024;
/// Bytes written (and read back) per cell.
const LEN: usize = WRITES * PER_WRITE;
/// Reads in flight when ABORT TASK goes out.
const BEFORE_ABORT: usize = 6;
/// Reads submitted after the abort, in flight when LUN RESET goes out.
const BEFORE_RESET: usize = 2;

/// Which target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// tgtd.
    Tgtd,
    /// istgt.
    Istgt,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Tgtd => "tgtd",
            TargetKind::Istgt => "istgt",
        }
    }
}

/// Authentication of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthKind {
    /// AuthMethod=None.
    None,
    /// One-way CHAP (RFC 7143 12.1.3).
    Chap,
    /// Mutual CHAP.
    Mutual,
}

impl AuthKind {
    pub(crate) const ALL: [AuthKind; 3] = [AuthKind::None, AuthKind::Chap, AuthKind::Mutual];

    pub(crate) fn name(self) -> &'static str {
        match self {
            AuthKind::None => "noauth",
            AuthKind::Chap => "chap",
            AuthKind::Mutual => "mutual",
        }
    }
}

/// One cell's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Combo {
    pub(crate) target: TargetKind,
    pub(crate) kind: Kind,
    pub(crate) auth: AuthKind,
    pub(crate) digests: bool,
    /// InitialR2T the initiator offers (and tgtd is set to).
    pub(crate) r2t: bool,
    /// ImmediateData the initiator offers (and the target is set to).
    pub(crate) imm: bool,
}

impl Combo {
    /// `tgtd-std-chap-digests-r2t-imm`.
    pub(crate) fn name(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}-{}",
            self.target.name(),
            self.kind.name(),
            self.auth.name(),
            if self.digests { "digests" } else { "nodigests" },
            if self.r2t { "r2t" } else { "nor2t" },
            if self.imm { "imm" } else { "noimm" }
        )
    }
}

/// Every combination, grouped so the shared target changes as little as
/// possible between neighbours.
pub(crate) fn combos() -> Vec<Combo> {
    let mut v = Vec::new();
    for target in [TargetKind::Tgtd, TargetKind::Istgt] {
        for imm in [true, false] {
            for r2t in [true, false] {
                for auth in AuthKind::ALL {
                    for digests in [false, true] {
                        for kind in Kind::ALL {
                            v.push(Combo {
                                target,
                                kind,
                                auth,
                                digests,
                                r2t,
                                imm,
                            });
                        }
                    }
                }
            }
        }
    }
    v
}

pub(super) fn cells() -> Vec<Cell> {
    combos()
        .into_iter()
        .map(|c| {
            Cell::new(G, &c.name(), move |ctx| run_cell(ctx, c))
                .with_timeout(Duration::from_secs(90))
        })
        .collect()
}

/// What a negotiation must yield for a combination (RFC 7143 13.10:
/// InitialR2T is OR-ed, "the result function is OR"; 13.11: ImmediateData
/// is AND-ed; 13.1: a digest is CRC32C only when both sides list it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    digests: bool,
    initial_r2t: bool,
    immediate_data: bool,
    first_burst_length: u32,
    target_mrdsl: u32,
}

impl Expected {
    fn of(c: &Combo, v: &TargetView) -> Expected {
        Expected {
            digests: c.digests,
            initial_r2t: c.r2t || v.initial_r2t,
            immediate_data: c.imm && v.immediate_data,
            first_burst_length: v.first_burst_length,
            target_mrdsl: v.target_mrdsl,
        }
    }

    /// Bytes of one write of `len` sent as immediate data, unsolicited
    /// Data-Out and solicited Data-Out. RFC 7143 13.14: FirstBurstLength
    /// is the most unsolicited data (immediate included) per command;
    /// immediate data also fits one PDU of the target's
    /// MaxRecvDataSegmentLength (13.12); 13.10: with InitialR2T=Yes only
    /// immediate data is unsolicited.
    fn split(&self, len: u64) -> (u64, u64, u64) {
        let fbl = u64::from(self.first_burst_length);
        let imm = if self.immediate_data {
            len.min(fbl).min(u64::from(self.target_mrdsl))
        } else {
            0
        };
        let unsol = if self.initial_r2t {
            0
        } else {
            len.min(fbl) - imm
        };
        (imm, unsol, len - imm - unsol)
    }
}

fn op_params_for(c: &Combo) -> OperationalParams {
    let d = if c.digests {
        DigestType::Crc32c
    } else {
        DigestType::None
    };
    OperationalParams {
        header_digest: vec![d],
        data_digest: vec![d],
        initial_r2t: c.r2t,
        immediate_data: c.imm,
        ..op_params()
    }
}

fn auth_for(c: &Combo) -> Option<Auth> {
    let ini = initiator_creds();
    match c.auth {
        AuthKind::None => None,
        AuthKind::Chap => Some(chap_auth(&ini)),
        AuthKind::Mutual => Some(mutual_auth(&ini, &target_creds(c.target))),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_cell(ctx: &mut CellCtx, c: Combo) -> Result<(), String> {
    let out = ctx.out_dir().to_path_buf();
    let next = ctx.next_cell().map(str::to_string);
    let mut lease = Lease::take(&c, next.as_deref(), &out)?;
    if lease.started {
        ctx.note(format!("started the shared {}", c.target.name()));
    }
    let view = lease.prepare(&c)?;
    let exp = Expected::of(&c, &view);
    let mut late = Vec::new();
    if c.r2t != view.initial_r2t {
        // istgt takes only "InitialR2T Yes" (README): the cell still runs,
        // and RFC 7143 13.10 (result function OR) makes it Yes.
        late.push(format!(
            "{} cannot be set to InitialR2T=No: offered No, expecting Yes",
            c.target.name()
        ));
    }
    if matches!(c.kind, Kind::Smol | Kind::Tokio) {
        late.push(format!(
            "negotiated values checked on the wire only (iscsi-{} has no getter)",
            c.kind.name()
        ));
    }
    let cap = lease.world()?.capture();
    let window = cap.begin(ctx.artifact("capture.pcap"))?;
    let body = session(&c, &view, &exp);
    let report = cap.end(window)?;
    let done = body?;
    let notes = wire_checks(&c, &view, &exp, &done, &report)?;
    for n in notes.into_iter().chain(done.notes).chain(late) {
        ctx.note(n);
    }
    Ok(())
}

/// What the session part of a cell leaves for the wire checks.
#[derive(Debug, Default)]
struct Done {
    notes: Vec<String>,
    /// istgt closed the discovery session without a Logout Response (the
    /// SendTargets answer is then checked on the wire only).
    discovery_unanswered: bool,
    /// Task Management Function Requests that went to the target (the
    /// abort is not sent when the task already ended in the core).
    tmf_sent: usize,
}

fn is_unit_attention(r: &ScsiResult) -> bool {
    let sense = r
        .sense_data
        .or_else(|| r.sense.as_ref().and_then(|s| SenseData::parse(s).ok()));
    matches!(sense, Some(s) if s.key == SenseKey::UnitAttention)
}

/// Runs a command and requires GOOD, retrying a UNIT ATTENTION (SAM-5
/// 5.14: reported once per I_T nexus after a login or a reset) a few
/// times. Returns the data and whether a UNIT ATTENTION came first.
fn exec(c: &mut dyn Initiator, cmd: ScsiCommand, what: &str) -> Result<(Bytes, bool), String> {
    let mut ua = false;
    for _ in 0..4 {
        let (r, d) = c.execute(cmd.clone()).map_err(|e| format!("{what}: {e}"))?;
        if r.is_good() {
            return Ok((d, ua));
        }
        if !is_unit_attention(&r) {
            return Err(format!(
                "{what}: response {:?}, status {}",
                r.response,
                ScsiStatus::from_u8(r.status)
            ));
        }
        ua = true;
    }
    Err(format!("{what}: UNIT ATTENTION four times"))
}

/// Every task of `ids` ends exactly once and no other task ends.
fn wait_all(
    c: &mut dyn Initiator,
    ids: &[TaskId],
) -> Result<Vec<(TaskId, TaskOutcome, Bytes)>, String> {
    super::initiator_common::wait_all_with(ids, || c.wait_any())
}

fn expect_good(o: &TaskOutcome, what: &str) -> Result<(), String> {
    match o {
        TaskOutcome::Scsi(r) if r.is_good() => Ok(()),
        TaskOutcome::Scsi(r) => Err(format!(
            "{what}: response {:?}, status {}",
            r.response,
            ScsiStatus::from_u8(r.status)
        )),
        other => Err(format!("{what}: {other:?}")),
    }
}

/// istgt 0.4 now and then closes the connection right after a Logout
/// Request without the Logout Response (see the README); that counts as
/// a logout only when istgt's log confirms the logout of this ISID.
fn istgt_confirms_logout(v: &TargetView, isid: &str) -> bool {
    let Some(log) = &v.istgt_log else {
        return false;
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("ISID={isid}");
    text.lines()
        .any(|l| l.starts_with("Logout") && l.contains(&needle))
}

/// A random LBA where `len` bytes fit on a LUN of `cap`, block aligned.
fn random_lba(rng: &mut XorShift, cap: &Capacity, len: usize) -> Result<u64, String> {
    let bs = cap.block_len.max(1) as usize;
    let blocks = (len / bs) as u64;
    let total = cap.num_blocks().ok_or("capacity overflows")?;
    let room = total
        .checked_sub(blocks)
        .ok_or("the LUN is smaller than the test data")?;
    Ok(rng.next_u64() % (room + 1))
}

fn session(c: &Combo, v: &TargetView, exp: &Expected) -> Result<Done, String> {
    let mut done = Done::default();
    let auth = auth_for(c);
    let with = |cfg| match &auth {
        Some(a) => with_auth(cfg, a.clone()),
        None => cfg,
    };

    // SendTargets discovery (RFC 7143 11.10, 13.3) with the cell's auth;
    // both targets are set to require it for discovery too. Digests are
    // offered as "CRC32C,None": tgtd answers HeaderDigest=None on discovery
    // sessions whatever the target is set to (see the README), which is
    // not admissible against an offer of CRC32C alone (13.1).
    let mut dop = op_params_for(c);
    if c.digests {
        dop.header_digest = vec![DigestType::Crc32c, DigestType::None];
        dop.data_digest = vec![DigestType::Crc32c, DigestType::None];
    }
    // The target requires authentication for discovery: without
    // credentials the login fails with "Authentication failure" (RFC 7143
    // 11.13.5, 0x0201). Checked once per combination, with the std driver.
    if c.kind == Kind::Std && c.auth != AuthKind::None && v.discovery_auth {
        let res = iscsi_std::Client::discover(
            &v.portal,
            config(None, dop.clone()),
            iscsi_std::Options::default(),
        );
        match res {
            Err(iscsi_std::Error::Login(ConnectionError::LoginFailed {
                status: LoginStatus::AuthenticationFailure,
                ..
            })) => {}
            Ok(t) => {
                return Err(format!(
                    "discovery without credentials succeeded ({} targets)",
                    t.len()
                ))
            }
            Err(e) => return Err(format!("discovery without credentials: {e}")),
        }
        done.notes
            .push("discovery without credentials refused".into());
    }
    let dcfg = with(config(None, dop));
    let disc_isid = hex(&dcfg.isid.unwrap_or_default().0);
    match discover(c.kind, &v.portal, dcfg) {
        Ok(targets) => {
            let rec = targets
                .iter()
                .find(|t| t.name == v.iqn)
                .ok_or_else(|| format!("discovery: {} not among {targets:?}", v.iqn))?;
            // 13.8: TargetAddress is domainname[:port][,tag].
            if !rec
                .addresses
                .iter()
                .any(|a| a.host == "127.0.0.1" && a.port == Some(v.port))
            {
                return Err(format!(
                    "discovery: portal {} not in {:?}",
                    v.portal, rec.addresses
                ));
            }
        }
        Err(EndError::NoResponse(e)) if istgt_confirms_logout(v, &disc_isid) => {
            done.discovery_unanswered = true;
            done.notes.push(format!(
                "istgt closed the discovery session without a Logout Response ({e})"
            ));
        }
        Err(e) => return Err(format!("discovery: {}", e.message())),
    }

    // Login with the cell's wishes.
    let cfg = with(config(Some(&v.iqn), op_params_for(c)));
    let isid = hex(&cfg.isid.unwrap_or_default().0);
    let mut ini = connect(c.kind, &v.portal, cfg)?;
    let cl = ini.as_mut();
    if let Some(n) = cl.negotiated() {
        let got = (
            n.header_digest,
            n.data_digest,
            n.initial_r2t,
            n.immediate_data,
            n.first_burst_length,
            n.target_max_recv_data_segment_length,
        );
        let want = (
            exp.digests,
            exp.digests,
            exp.initial_r2t,
            exp.immediate_data,
            exp.first_burst_length,
            exp.target_mrdsl,
        );
        if got != want {
            return Err(format!(
                "negotiated (HeaderDigest, DataDigest, InitialR2T, ImmediateData, \
                 FirstBurstLength, target MRDSL) = {got:?}, expected {want:?}"
            ));
        }
        let am = if c.auth == AuthKind::None {
            AuthMethod::None
        } else {
            AuthMethod::Chap
        };
        if n.auth_method != am {
            return Err(format!("AuthMethod {:?}, expected {am:?}", n.auth_method));
        }
    }
    let l = lun(v.lun);

    let (inq, _) = exec(
        cl,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::inquiry(96).to_vec(),
            96,
        ),
        "INQUIRY",
    )?;
    let inq = StandardInquiry::parse(&inq).map_err(|e| format!("INQUIRY data: {e}"))?;
    if inq.device_type != 0 || inq.peripheral_qualifier != 0 {
        return Err(format!("LUN {} is not a connected disk: {inq:?}", v.lun));
    }
    let (cap, _) = exec(
        cl,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::read_capacity10().to_vec(),
            8,
        ),
        "READ CAPACITY(10)",
    )?;
    let cap = Capacity::parse10(&cap).map_err(|e| format!("READ CAPACITY(10) data: {e}"))?;
    check_capacity(&cap, &v.backing)?;
    let bs = cap.block_len;
    if bs == 0 || PER_WRITE % bs as usize != 0 {
        return Err(format!("block length {bs}"));
    }
    let mut rng = XorShift::from_time();
    let seed = rng.state();
    let lba = random_lba(&mut rng, &cap, LEN)?;
    let data = Bytes::from(rng.bytes(LEN));
    let at = |i: usize| lba + (i * PER_WRITE / bs as usize) as u64;
    let blocks = (PER_WRITE / bs as usize) as u32;
    exec(
        cl,
        ScsiCommand::new(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::test_unit_ready().to_vec(),
        ),
        "TEST UNIT READY",
    )?;

    // Writes in flight.
    let mut ids = Vec::new();
    for i in 0..WRITES {
        let cmd = write_cmd(l, at(i), data.slice(i * PER_WRITE..(i + 1) * PER_WRITE), bs);
        ids.push(
            cl.submit(cmd)
                .map_err(|e| format!("submit WRITE(16) {i}: {e}"))?,
        );
    }
    let held = cl.in_flight();
    if held.is_some_and(|h| h != WRITES) {
        return Err(format!("{held:?} tasks in flight after {WRITES} writes"));
    }
    for (t, o, _) in wait_all(cl, &ids)? {
        expect_good(&o, &format!("WRITE(16) {t:?}"))?;
    }
    // SBC: SYNCHRONIZE CACHE makes the target write back what it cached
    // (istgt runs with its write cache on) before the file is compared.
    exec(
        cl,
        ScsiCommand::new(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::synchronize_cache10(0, 0).to_vec(),
        ),
        "SYNCHRONIZE CACHE(10)",
    )?;
    let on_disk = file_region(&v.backing, lba * u64::from(bs), LEN)?;
    compare("backing file", &data, &on_disk)?;

    // Reads in flight, compared.
    let mut ids = Vec::new();
    for i in 0..WRITES {
        ids.push(
            cl.submit(read_cmd(l, at(i), blocks, bs))
                .map_err(|e| format!("submit READ(16) {i}: {e}"))?,
        );
    }
    let mut back = vec![Bytes::new(); WRITES];
    for (t, o, d) in wait_all(cl, &ids)? {
        expect_good(&o, &format!("READ(16) {t:?}"))?;
        let i = ids.iter().position(|x| *x == t).ok_or("unknown read")?;
        if let Some(slot) = back.get_mut(i) {
            *slot = d;
        }
    }
    let back: Vec<u8> = back.concat();
    compare("read-back", &data, &back)?;

    // Task management with I/O in flight (RFC 7143 11.5.1).
    let mut tmf_ids: Vec<(TaskId, usize)> = Vec::new();
    for k in 0..BEFORE_ABORT {
        let i = k % WRITES;
        let t = cl
            .submit(read_cmd(l, at(i), blocks, bs))
            .map_err(|e| format!("submit read {k}: {e}"))?;
        tmf_ids.push((t, i));
    }
    let (victim, _) = *tmf_ids.last().ok_or("no read to abort")?;
    // 11.6.1: "Function complete" when the target still had the task,
    // "Task does not exist" when it had already completed it; `None`: the
    // completion reached the core before the abort did (async drivers).
    let abort = cl.abort(victim).map_err(|e| format!("ABORT TASK: {e}"))?;
    if !matches!(
        abort,
        None | Some(TmfResponse::FunctionComplete | TmfResponse::TaskDoesNotExist)
    ) {
        return Err(format!("ABORT TASK answered {abort:?}"));
    }
    for k in 0..BEFORE_RESET {
        let i = k % WRITES;
        let t = cl
            .submit(read_cmd(l, at(i), blocks, bs))
            .map_err(|e| format!("submit read after abort {k}: {e}"))?;
        tmf_ids.push((t, i));
    }
    done.tmf_sent = usize::from(abort.is_some()) + 1;
    let reset = cl
        .tmf(l, TmfFunction::LogicalUnitReset)
        .map_err(|e| format!("LOGICAL UNIT RESET: {e}"))?;
    if reset != TmfResponse::FunctionComplete {
        return Err(format!("LOGICAL UNIT RESET answered {reset:?}"));
    }
    let all: Vec<TaskId> = tmf_ids.iter().map(|(t, _)| *t).collect();
    let (mut good, mut aborted, mut ua_after) = (0, 0, 0);
    let mut victim_done_first = false;
    let good_end = |o: &TaskOutcome| matches!(o, TaskOutcome::Scsi(r) if r.is_good());
    for (t, o, d) in wait_all(cl, &all)? {
        let i = tmf_ids
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, i)| *i)
            .ok_or("unknown task")?;
        match &o {
            TaskOutcome::Scsi(r) if r.is_good() => {
                let want = data.slice(i * PER_WRITE..(i + 1) * PER_WRITE);
                compare(&format!("read {t:?} around the TMFs"), &want, &d)?;
                good += 1;
            }
            // A read that reached the LU after the reset: CHECK CONDITION,
            // UNIT ATTENTION (SAM-5 5.14). The reset is an immediate PDU
            // (RFC 7143 11.5) and may overtake reads the core still held
            // in its CmdSN queue.
            TaskOutcome::Scsi(r) if is_unit_attention(r) => ua_after += 1,
            TaskOutcome::Failed(TaskError::Aborted(_)) => aborted += 1,
            other => return Err(format!("task {t:?} around the TMFs ended {other:?}")),
        }
        // RFC 7143 11.5.1 b): "Function complete" also answers an abort
        // of a task the target already completed (istgt does that while
        // the GOOD status is on its way), so the victim may end either way.
        if t == victim && abort == Some(TmfResponse::FunctionComplete) && good_end(&o) {
            victim_done_first = true;
        }
    }
    if let Some(n) = cl.in_flight().filter(|n| *n != 0) {
        return Err(format!("{n} task(s) still in flight after the reset"));
    }
    // The session still works (the reset raises a UNIT ATTENTION).
    let (_, ua) = exec(
        cl,
        ScsiCommand::new(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::test_unit_ready().to_vec(),
        ),
        "TEST UNIT READY after the reset",
    )?;
    let (cap2, _) = exec(
        cl,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::read_capacity10().to_vec(),
            8,
        ),
        "READ CAPACITY(10) after the reset",
    )?;
    let cap2 = Capacity::parse10(&cap2).map_err(|e| format!("READ CAPACITY(10) data: {e}"))?;
    check_capacity(&cap2, &v.backing)?;
    let (d, _) = exec(
        cl,
        read_cmd(l, at(1), blocks, bs),
        "READ(16) after the reset",
    )?;
    compare("read after the reset", &data[PER_WRITE..2 * PER_WRITE], &d)?;

    match ini.logout() {
        Ok(()) => {}
        Err(EndError::NoResponse(e)) if istgt_confirms_logout(v, &isid) => {
            done.notes.push(format!(
                "istgt closed the session without a Logout Response ({e})"
            ));
        }
        Err(e) => return Err(format!("logout: {}", e.message())),
    }
    done.notes.push(format!(
        "LBA {lba} seed {seed:#x}; abort {}, reset {reset:?}: {good} good {aborted} aborted{}{}{}",
        abort.map_or("after completion".to_string(), |a| format!("{a:?}")),
        if ua_after > 0 {
            format!(" {ua_after} UA")
        } else {
            String::new()
        },
        if ua { ", UA" } else { "" },
        if victim_done_first {
            " (aborted task had completed)"
        } else {
            ""
        }
    ));
    Ok(done)
}

/// Checks on what the live dissector saw; returns notes.
fn wire_checks(
    c: &Combo,
    v: &TargetView,
    exp: &Expected,
    done: &Done,
    r: &LiveReport,
) -> Result<Vec<String>, String> {
    let rep = &r.report;
    rep.check_clean()?;
    if rep.iscsi_pdus == 0 {
        return Err(format!("no iSCSI PDU in {}", rep.pcap.display()));
    }
    let mut notes = vec![format!("{} PDUs clean", rep.iscsi_pdus)];
    // RFC 7143 13.1: digests are in use exactly when negotiated.
    if exp.digests != (rep.header_digest_frames > 0) || exp.digests != (rep.data_digest_frames > 0)
    {
        return Err(format!(
            "digests negotiated: {}, frames with header digests {}, data digests {}",
            exp.digests, rep.header_digest_frames, rep.data_digest_frames
        ));
    }
    // The target's answers (Login Response, Text Response) carry the
    // values; RFC 7143 6.2: the responder answers every negotiated key.
    let yn = |b: bool| if b { "Yes" } else { "No" };
    let dig = if exp.digests { "CRC32C" } else { "None" };
    for kv in [
        format!("HeaderDigest={dig}"),
        format!("DataDigest={dig}"),
        format!("InitialR2T={}", yn(exp.initial_r2t)),
        format!("ImmediateData={}", yn(exp.immediate_data)),
    ] {
        if !r.response_keys.contains(&kv) {
            return Err(format!(
                "no {kv} in the target's answers: {:?}",
                r.response_keys
            ));
        }
    }
    if c.auth != AuthKind::None && !rep.has_key_value("CHAP_N=alice") {
        return Err("no CHAP_N=alice on the wire".into());
    }
    if c.auth == AuthKind::Mutual {
        let kv = format!("CHAP_N={}", target_creds(c.target).user);
        if !r.response_keys.contains(&kv) {
            return Err(format!("the target never answered {kv}"));
        }
    }
    if !rep.has_key_value("SendTargets=All") {
        return Err("no SendTargets=All on the wire".into());
    }
    let tn = format!("TargetName={}", v.iqn);
    if !r.response_keys.contains(&tn) {
        return Err(format!(
            "no {tn} in a Text Response{}",
            if done.discovery_unanswered {
                " (the discovery logout went unanswered)"
            } else {
                ""
            }
        ));
    }
    // Task management requests and responses (11.5, 11.6).
    // (A lost segment can only hide PDUs.)
    let tmf_seen = (rep.count_opcode(0x02), rep.count_opcode(0x22));
    if tmf_seen != (done.tmf_sent, done.tmf_sent)
        && (r.lost_segments == 0 || tmf_seen.0 > done.tmf_sent || tmf_seen.1 > done.tmf_sent)
    {
        return Err(format!(
            "{} TMF requests, {} responses on the wire, {} sent",
            rep.count_opcode(0x02),
            rep.count_opcode(0x22),
            done.tmf_sent
        ));
    }
    // How the written bytes travelled.
    let (imm, unsol, sol) = exp.split(PER_WRITE as u64);
    let n = WRITES as u64;
    let got_imm = r.data_bytes(0x01);
    let got_out = r.data_bytes(0x05);
    let got_r2t = r.r2t_desired;
    let shape = format!(
        "imm {}K unsol {}K r2t {}K",
        got_imm / 1024,
        got_out.saturating_sub(got_r2t) / 1024,
        got_r2t / 1024
    );
    if r.lost_segments > 0 {
        notes.push(format!(
            "capture lost {} segment(s): byte split not checked ({shape})",
            r.lost_segments
        ));
        return Ok(notes);
    }
    if got_imm != n * imm || got_r2t != n * sol || got_out != n * (unsol + sol) {
        return Err(format!(
            "written bytes on the wire: immediate {got_imm}, Data-Out {got_out}, R2T {got_r2t}; \
             expected immediate {}, unsolicited {}, solicited {} (x{WRITES})",
            imm, unsol, sol
        ));
    }
    notes.push(shape);
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_filterable() {
        let all = combos();
        // 2 targets x 4 drivers x 3 authentications x 8 (digests, R2T,
        // immediate data).
        assert_eq!(all.len(), 192);
        let names: std::collections::HashSet<String> = all.iter().map(Combo::name).collect();
        assert_eq!(names.len(), 192);
        assert!(names.contains("tgtd-std-chap-digests-r2t-imm"));
        assert!(names.contains("istgt-smol-mutual-nodigests-nor2t-noimm"));
        assert!(names.contains("istgt-tokio-mutual-nodigests-nor2t-noimm"));
        assert_eq!(names.iter().filter(|n| n.contains("-digests-")).count(), 96);
        assert_eq!(names.iter().filter(|n| n.contains("-r2t-")).count(), 96);
        assert_eq!(names.iter().filter(|n| n.ends_with("-imm")).count(), 96);
        assert_eq!(names.iter().filter(|n| n.contains("-mio-")).count(), 48);
        assert_eq!(names.iter().filter(|n| n.contains("-tokio-")).count(), 48);
        // Cells of one target are contiguous (one shared world each).
        let first_istgt = all
            .iter()
            .position(|c| c.target == TargetKind::Istgt)
            .unwrap();
        assert!(all[first_istgt..]
            .iter()
            .all(|c| c.target == TargetKind::Istgt));
        for c in &all {
            let full = format!("{G}/{}", c.name());
            assert_eq!(world::world_of(&full), Some(c.target));
        }
        assert_eq!(world::world_of("drivers/tgtd-std"), None);
    }

    #[test]
    fn negotiation_results_follow_rfc_functions() {
        let v = |r2t, imm| TargetView {
            portal: String::new(),
            port: 1,
            iqn: String::new(),
            lun: 0,
            backing: Default::default(),
            istgt_log: None,
            initial_r2t: r2t,
            immediate_data: imm,
            first_burst_length: 65536,
            target_mrdsl: 8192,
            discovery_auth: false,
        };
        let c = |r2t, imm| Combo {
            target: TargetKind::Istgt,
            kind: Kind::Std,
            auth: AuthKind::None,
            digests: false,
            r2t,
            imm,
        };
        // InitialR2T: OR; ImmediateData: AND.
        let e = Expected::of(&c(false, true), &v(true, true));
        assert!(e.initial_r2t && e.immediate_data);
        let e = Expected::of(&c(false, true), &v(false, false));
        assert!(!e.initial_r2t && !e.immediate_data);
    }

    #[test]
    fn write_split_matches_first_burst_and_mrdsl() {
        let e = |r2t, imm, mrdsl| Expected {
            digests: false,
            initial_r2t: r2t,
            immediate_data: imm,
            first_burst_length: 65536,
            target_mrdsl: mrdsl,
        };
        let k = 1024;
        // tgtd (MRDSL 8 KiB): immediate 8 KiB, unsolicited up to 64 KiB.
        assert_eq!(e(false, true, 8192).split(128 * k), (8 * k, 56 * k, 64 * k));
        assert_eq!(e(true, true, 8192).split(128 * k), (8 * k, 0, 120 * k));
        assert_eq!(e(false, false, 8192).split(128 * k), (0, 64 * k, 64 * k));
        assert_eq!(e(true, false, 8192).split(128 * k), (0, 0, 128 * k));
        // istgt (MRDSL 256 KiB): immediate data fills the first burst.
        assert_eq!(e(false, true, 262_144).split(128 * k), (64 * k, 0, 64 * k));
        // A write within the first burst needs no R2T.
        assert_eq!(e(false, true, 8192).split(32 * k), (8 * k, 24 * k, 0));
    }
}
