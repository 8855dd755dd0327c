//! Helpers shared by the cells that drive the project's own initiator
//! (`iscsi-proto` + the blocking `iscsi-std` driver) against real targets.

use crate::tools::{run, Chap};
use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::{Auth, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::chap::ChapError;
use iscsi_proto::login::negotiation::{DigestType, OperationalParams};
use iscsi_proto::login::status::LoginStatus;
use iscsi_proto::scsi::cdb::{self, Capacity, RwFlags, StandardInquiry};
use iscsi_proto::scsi::sense::{SenseData, SenseKey};
use iscsi_proto::scsi::status::ScsiStatus;
use iscsi_proto::wire::pdu::Isid;
use iscsi_std::{Client, Completed, Error, Options};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Our InitiatorName in every cell (RFC 7143 section 4.2.7).
pub(super) const INITIATOR: &str = "iqn.2026-11.rs.iscsi:conformance";

/// Largest transfer of one command in these cells.
pub(super) const CHUNK: usize = 1 << 20;

/// A small xorshift64* generator: test data and ISIDs, not secrets.
pub(super) struct XorShift(u64);

static SEED_SEQ: AtomicU64 = AtomicU64::new(0);

impl XorShift {
    /// Seeded from the wall clock and a per-process counter (never zero).
    pub(super) fn from_time() -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let seq = SEED_SEQ.fetch_add(1, Ordering::Relaxed);
        let s = nanos ^ seq.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ u64::from(std::process::id());
        XorShift(if s == 0 { 0x2545_f491_4f6c_dd1d } else { s })
    }

    /// The seed-derived state (for the notes, so a failing run can be
    /// told apart from another).
    pub(super) fn state(&self) -> u64 {
        self.0
    }

    /// Next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` random bytes.
    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// RFC defaults plus what our CLI offers: a 256 KiB receive segment.
pub(super) fn op_params() -> OperationalParams {
    OperationalParams {
        max_recv_data_segment_length: 262_144,
        ..OperationalParams::default()
    }
}

/// Operational values offering CRC32C for both digests (RFC 7143 13.1).
pub(super) fn op_params_digests() -> OperationalParams {
    OperationalParams {
        header_digest: vec![DigestType::Crc32c],
        data_digest: vec![DigestType::Crc32c],
        ..op_params()
    }
}

/// A session config for `target` (`None`: discovery) with a random-format
/// ISID (RFC 7143 section 11.12.5, T = 10b) so sessions never collide.
pub(super) fn config(target: Option<&str>, op: OperationalParams) -> SessionConfig {
    let mut rng = XorShift::from_time();
    let r = rng.bytes(3);
    let isid = Isid::random([r[0], r[1], r[2]], (rng.next_u64() & 0xffff) as u16);
    let mut c = SessionConfig::new(INITIATOR)
        .with_isid(isid)
        .with_operational(op)
        .with_login_timeout(Duration::from_secs(15));
    if let Some(t) = target {
        c = c.with_target(t);
    }
    c
}

/// Adds authentication, with fresh random challenge bytes for mutual CHAP.
pub(super) fn with_auth(c: SessionConfig, auth: Auth) -> SessionConfig {
    let challenge = XorShift::from_time().bytes(16);
    c.with_auth(auth, challenge)
}

/// One-way CHAP with the credentials `c` (RFC 7143 section 12.1.3).
pub(super) fn chap_auth(c: &Chap) -> Auth {
    Auth::chap(c.user.clone(), c.secret.as_bytes().to_vec())
}

/// Mutual CHAP: we prove `c`, the target must prove `t`.
pub(super) fn mutual_auth(c: &Chap, t: &Chap) -> Auth {
    Auth::mutual_chap(
        c.user.clone(),
        c.secret.as_bytes().to_vec(),
        t.user.clone(),
        t.secret.as_bytes().to_vec(),
    )
}

/// Logs in; an error becomes a message naming the portal.
pub(super) fn connect(portal: &str, c: SessionConfig) -> Result<Client, String> {
    Client::connect(portal, c, Options::default()).map_err(|e| format!("login to {portal}: {e}"))
}

/// The 8-byte LUN field for LUN `n` (SAM single-level addressing).
pub(super) fn lun(n: u16) -> u64 {
    iscsi_proto::scsi::lun::Lun::from_number(n).to_u64()
}

/// The sense data of a result, decoded.
fn sense_of(done: &Completed) -> Option<SenseData> {
    done.result.sense_data.or_else(|| {
        done.result
            .sense
            .as_ref()
            .and_then(|s| SenseData::parse(s).ok())
    })
}

/// True when `done` is CHECK CONDITION with UNIT ATTENTION.
pub(super) fn is_unit_attention(done: &Completed) -> bool {
    matches!(sense_of(done), Some(s) if s.key == SenseKey::UnitAttention)
}

/// Runs a command and requires GOOD status. A UNIT ATTENTION (SAM-5 5.14:
/// reported once per I_T nexus after a login or a reset) is retried a few
/// times, as initiators do.
pub(super) fn exec(client: &mut Client, cmd: ScsiCommand, what: &str) -> Result<Completed, String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let done = client
            .execute(cmd.clone())
            .map_err(|e| format!("{what}: {e}"))?;
        if done.result.is_good() {
            return Ok(done);
        }
        if attempts < 4 && is_unit_attention(&done) {
            continue;
        }
        return Err(format!("{what}: {}", describe_status(&done)));
    }
}

/// One line about a non-GOOD completion.
pub(super) fn describe_status(done: &Completed) -> String {
    let status = ScsiStatus::from_u8(done.result.status);
    let sense = sense_of(done).map(|s| format!(": {s}")).unwrap_or_default();
    format!(
        "response {:?}, status {status}{sense}",
        done.result.response
    )
}

/// Standard INQUIRY of `lun`.
pub(super) fn inquiry(client: &mut Client, lun: u64) -> Result<StandardInquiry, String> {
    let d = exec(
        client,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::inquiry(96).to_vec(),
            96,
        ),
        "INQUIRY",
    )?;
    StandardInquiry::parse(&d.data).map_err(|e| format!("INQUIRY data: {e}"))
}

/// READ CAPACITY (10), then (16) when the LUN is too large for (10).
pub(super) fn read_capacity(client: &mut Client, lun: u64) -> Result<Capacity, String> {
    let d = exec(
        client,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::read_capacity10().to_vec(),
            8,
        ),
        "READ CAPACITY(10)",
    )?;
    let cap = Capacity::parse10(&d.data).map_err(|e| format!("READ CAPACITY(10) data: {e}"))?;
    if !cap.needs_16() {
        return Ok(cap);
    }
    let d = exec(
        client,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::read_capacity16(32).to_vec(),
            32,
        ),
        "READ CAPACITY(16)",
    )?;
    Capacity::parse16(&d.data).map_err(|e| format!("READ CAPACITY(16) data: {e}"))
}

/// Requires READ CAPACITY to match the size of the backing file.
pub(super) fn check_capacity(cap: &Capacity, backing: &Path) -> Result<(), String> {
    let size = std::fs::metadata(backing)
        .map_err(|e| format!("stat {}: {e}", backing.display()))?
        .len();
    match cap.total_bytes() {
        Some(b) if b == size => Ok(()),
        other => Err(format!(
            "READ CAPACITY says {other:?} bytes, the backing file has {size}"
        )),
    }
}

/// A WRITE(16) of `data` at `lba` (a multiple of `block_len` bytes).
pub(super) fn write_cmd(lun: u64, lba: u64, data: Bytes, block_len: u32) -> ScsiCommand {
    let blocks = (data.len() / block_len as usize) as u32;
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun),
        cdb::write16(lba, blocks, RwFlags::default()).to_vec(),
        data,
    )
}

/// A READ(16) of `blocks` at `lba`.
pub(super) fn read_cmd(lun: u64, lba: u64, blocks: u32, block_len: u32) -> ScsiCommand {
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun),
        cdb::read16(lba, blocks, RwFlags::default()).to_vec(),
        blocks.saturating_mul(block_len),
    )
}

/// Writes `data` at `lba` in commands of at most [`CHUNK`] bytes, all
/// submitted before the first is waited for (several write tasks, each
/// with its own R2T sequence, in flight at once).
pub(super) fn write_all(
    client: &mut Client,
    lun: u64,
    lba: u64,
    data: &Bytes,
    block_len: u32,
) -> Result<(), String> {
    let bs = block_len as usize;
    if bs == 0 || data.len() % bs != 0 {
        return Err(format!("{} bytes is not a multiple of {bs}", data.len()));
    }
    // The first command after login may meet a UNIT ATTENTION: clear it.
    exec(
        client,
        ScsiCommand::new(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::test_unit_ready().to_vec(),
        ),
        "TEST UNIT READY",
    )?;
    let mut tasks = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let n = CHUNK.min(data.len() - off);
        let at = lba + (off / bs) as u64;
        let cmd = write_cmd(lun, at, data.slice(off..off + n), block_len);
        let t = client
            .submit(cmd)
            .map_err(|e| format!("submit WRITE(16) at LBA {at}: {e}"))?;
        tasks.push((t, at));
        off += n;
    }
    for (t, at) in tasks {
        let (outcome, _) = client
            .wait(t)
            .map_err(|e| format!("WRITE(16) at LBA {at}: {e}"))?;
        expect_good(&outcome, &format!("WRITE(16) at LBA {at}"))?;
    }
    Ok(())
}

/// Reads `len` bytes at `lba` in commands of at most [`CHUNK`] bytes, all
/// in flight at once, reassembled in order.
pub(super) fn read_all(
    client: &mut Client,
    lun: u64,
    lba: u64,
    len: usize,
    block_len: u32,
) -> Result<Vec<u8>, String> {
    let bs = block_len as usize;
    if bs == 0 || len % bs != 0 {
        return Err(format!("{len} bytes is not a multiple of {bs}"));
    }
    exec(
        client,
        ScsiCommand::new(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::test_unit_ready().to_vec(),
        ),
        "TEST UNIT READY",
    )?;
    let mut tasks = Vec::new();
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off);
        let at = lba + (off / bs) as u64;
        let t = client
            .submit(read_cmd(lun, at, (n / bs) as u32, block_len))
            .map_err(|e| format!("submit READ(16) at LBA {at}: {e}"))?;
        tasks.push((t, at, n));
        off += n;
    }
    let mut out = Vec::with_capacity(len);
    for (t, at, n) in tasks {
        let (outcome, data) = client
            .wait(t)
            .map_err(|e| format!("READ(16) at LBA {at}: {e}"))?;
        expect_good(&outcome, &format!("READ(16) at LBA {at}"))?;
        if data.len() != n {
            return Err(format!(
                "READ(16) at LBA {at}: {} bytes delivered, {n} expected",
                data.len()
            ));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Requires a task outcome to be a GOOD SCSI completion.
pub(super) fn expect_good(outcome: &TaskOutcome, what: &str) -> Result<(), String> {
    match outcome {
        TaskOutcome::Scsi(r) if r.is_good() => Ok(()),
        TaskOutcome::Scsi(r) => Err(format!(
            "{what}: response {:?}, status {}",
            r.response,
            ScsiStatus::from_u8(r.status)
        )),
        other => Err(format!("{what}: {other:?}")),
    }
}

/// Byte-for-byte comparison; names the first difference.
pub(super) fn compare(what: &str, want: &[u8], got: &[u8]) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!(
            "{what}: {} bytes, {} expected",
            got.len(),
            want.len()
        ));
    }
    match want.iter().zip(got).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: first difference at byte {i} (block {}): {:#04x} != {:#04x}",
            i / 512,
            got[i],
            want[i]
        )),
    }
}

/// `len` bytes of a file from `offset` (a target's backing file).
pub(super) fn file_region(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("seek {}: {e}", path.display()))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)
        .map_err(|e| format!("read {} at {offset}: {e}", path.display()))?;
    Ok(buf)
}

/// Requires a login to fail with the target's Login Response status
/// `want` (RFC 7143 section 11.13.5), as a typed
/// `ConnectionError::LoginFailed`. Returns the error's text.
pub(super) fn expect_login_failed(
    result: Result<Client, Error>,
    want: LoginStatus,
) -> Result<String, String> {
    match result {
        Ok(c) => {
            let _ = c.logout();
            Err(format!("login succeeded; expected {want}"))
        }
        Err(Error::Login(e @ ConnectionError::LoginFailed { status, .. })) if status == want => {
            Ok(e.to_string())
        }
        Err(e) => Err(format!("expected login failure {want}, got: {e}")),
    }
}

/// Requires a login to be refused by us because the target failed mutual
/// CHAP (RFC 7143 section 12.1.3: the initiator verifies CHAP_R of the
/// target). Returns the error's text.
pub(super) fn expect_target_refused(result: Result<Client, Error>) -> Result<String, String> {
    match result {
        Ok(c) => {
            let _ = c.logout();
            Err("login succeeded with a wrong target secret".into())
        }
        Err(Error::Login(
            e @ ConnectionError::Protocol(ProtocolError::Chap(ChapError::AuthenticationFailed)),
        )) => Ok(e.to_string()),
        Err(e) => Err(format!(
            "expected our CHAP check to refuse the target, got: {e}"
        )),
    }
}

/// One iSCSI PDU as tshark decoded it: the opcode (initiator opcodes
/// without the I bit) and its header fields by name (`DataSegmentLength`,
/// `InitiatorTaskTag`, `TargetTransferTag`, `HeaderDigest`, ...), values as
/// tshark prints them.
#[derive(Debug, Clone, Default)]
pub(super) struct PduInfo {
    /// The opcode.
    pub(super) opcode: u8,
    /// `(name, value)` of each field line.
    pub(super) fields: Vec<(String, String)>,
}

impl PduInfo {
    /// A field's printed value.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field's numeric value: its first token, decimal or `0x` hex.
    pub(super) fn num(&self, name: &str) -> Option<u64> {
        let tok = self.get(name)?.split_whitespace().next()?;
        match tok.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => tok.parse().ok(),
        }
    }
}

/// Every iSCSI PDU of a capture, one by one (several PDUs can share a TCP
/// segment, so frame-level display filters cannot tell them apart), and
/// the number of TCP segments tshark reports lost from the capture.
pub(super) fn pdus(pcap: &Path, port: u16) -> Result<(Vec<PduInfo>, usize), String> {
    let file = pcap.to_string_lossy().into_owned();
    let decode = format!("tcp.port=={port},iscsi");
    let out = run(
        Duration::from_secs(60),
        "tshark",
        &[
            "-n", "-r", &file, "-d", &decode, "-Y", "iscsi", "-O", "iscsi", "-V",
        ],
    )?;
    if !out.success() {
        return Err(out.describe());
    }
    let v = parse_pdus(&out.stdout);
    let lost = run(
        Duration::from_secs(60),
        "tshark",
        &["-n", "-r", &file, "-Y", "tcp.analysis.lost_segment"],
    )?;
    let lost = lost.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    Ok((v, lost))
}

/// Parses `tshark -O iscsi -V` text into PDUs (see [`pdus`]).
pub(super) fn parse_pdus(text: &str) -> Vec<PduInfo> {
    let mut v = Vec::new();
    let mut cur: Option<PduInfo> = None;
    for line in text.lines() {
        if line.starts_with("iSCSI (") {
            v.extend(cur.take());
            cur = Some(PduInfo::default());
            continue;
        }
        if !line.starts_with("    ") {
            // Any other top-level line (Frame, SCSI, Flags...) ends a PDU.
            v.extend(cur.take());
            continue;
        }
        let Some(p) = cur.as_mut() else { continue };
        // Only direct children of the PDU (4 spaces), not nested trees.
        if line.starts_with("     ") {
            continue;
        }
        // "..00 0001 = Opcode: SCSI Command (0x01)" -> "Opcode", value.
        let body = line.trim();
        let body = body.split_once(" = ").map(|(_, b)| b).unwrap_or(body);
        let Some((name, value)) = body.split_once(": ") else {
            continue;
        };
        if name == "Opcode" {
            let hex = value
                .rsplit_once("(0x")
                .and_then(|(_, h)| h.strip_suffix(')'))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(op) = hex {
                p.opcode = op;
            }
        }
        p.fields.push((name.to_string(), value.to_string()));
    }
    v.extend(cur);
    v
}

/// Waits for every task in `tasks` with `wait_any`, requiring each to end
/// exactly once and no unknown task to end. Returns the outcomes in
/// completion order.
pub(super) fn wait_all(
    client: &mut Client,
    tasks: &[TaskId],
) -> Result<Vec<(TaskId, TaskOutcome, Bytes)>, String> {
    wait_all_with(tasks, || client.wait_any().map_err(|e| e.to_string()))
}

/// [`wait_all`] over any driver: `wait_any` yields the next task to end.
pub(super) fn wait_all_with(
    tasks: &[TaskId],
    mut wait_any: impl FnMut() -> Result<(TaskId, TaskOutcome, Bytes), String>,
) -> Result<Vec<(TaskId, TaskOutcome, Bytes)>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(tasks.len());
    for _ in 0..tasks.len() {
        let (t, o, d) = wait_any()
            .map_err(|e| format!("wait_any after {} of {}: {e}", out.len(), tasks.len()))?;
        if !tasks.contains(&t) {
            return Err(format!("unknown task {t:?} ended: {o:?}"));
        }
        if !seen.insert(t) {
            return Err(format!("task {t:?} ended twice"));
        }
        out.push((t, o, d));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_pdus_splits_pdus_sharing_a_frame() {
        let text = "\
Frame 23: 32834 bytes on wire
Transmission Control Protocol, Src Port: 55862, Dst Port: 38077
iSCSI (SCSI Command)
    ..00 0001 = Opcode: SCSI Command (0x01)
    DataSegmentLength: 0 (0x00000000)
    LUNs
        LUN 0
            ..00 0000  0000 0001 = LUN: 0x0001
    InitiatorTaskTag: 0x00030000
Flags: 0x21, W, Attr: Simple
iSCSI (SCSI Data Out)
    ..00 0101 = Opcode: SCSI Data Out (0x05)
    DataSegmentLength: 8192 (0x00002000)
    InitiatorTaskTag: 0x00030000
    TargetTransferTag: 0xffffffff
    HeaderDigest: 0xab4949d7 (Good CRC32)
SCSI Payload (Write(16) Request Data)
Frame 24: 114 bytes on wire
iSCSI (NOP In)
    ..10 0000 = Opcode: NOP In (0x20)
    InitiatorTaskTag: 0xffffffff
";
        let v = parse_pdus(text);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].opcode, 0x01);
        assert_eq!(v[0].num("DataSegmentLength"), Some(0));
        assert_eq!(v[0].get("LUN"), None, "nested fields are skipped");
        assert_eq!(v[1].opcode, 0x05);
        assert_eq!(v[1].num("DataSegmentLength"), Some(8192));
        assert_eq!(v[1].num("TargetTransferTag"), Some(0xffff_ffff));
        assert!(v[1].get("HeaderDigest").unwrap().contains("Good CRC32"));
        assert_eq!(v[2].opcode, 0x20);
        assert_eq!(v[2].num("InitiatorTaskTag"), Some(0xffff_ffff));
        assert_eq!(v[2].num("TargetTransferTag"), None);
    }

    #[test]
    fn xorshift_is_not_constant_and_sized() {
        let mut r = XorShift::from_time();
        let a = r.bytes(1000);
        let b = r.bytes(1000);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != a[0]));
    }

    #[test]
    fn compare_names_the_first_difference() {
        assert!(compare("x", b"abc", b"abc").is_ok());
        let e = compare("x", &[0u8; 1024], &{
            let mut v = [0u8; 1024];
            v[600] = 1;
            v
        })
        .unwrap_err();
        assert!(e.contains("byte 600 (block 1)"), "{e}");
        assert!(compare("x", b"ab", b"abc").is_err());
    }
}
