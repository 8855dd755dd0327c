//! Cells against istgt with the project's own initiator as the client.
//! istgt's disk is LUN 0; its `NopInInterval` (2 s here) makes it ping an
//! idle initiator with NOP-In, which the libiscsi tools never stay idle
//! long enough to see.

use super::initiator_common::{
    chap_auth, check_capacity, compare, config, connect, expect_login_failed,
    expect_target_refused, file_region, inquiry, lun, mutual_auth, op_params, pdus, read_all,
    read_capacity, with_auth, write_all, XorShift,
};
use crate::peers::{Istgt, IstgtConfig};
use crate::runner::Cell;
use crate::tools::Chap;
use bytes::Bytes;
use iscsi_proto::initiator::Auth;
use iscsi_proto::login::status::LoginStatus;
use iscsi_std::{Client, Options};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const G: &str = "initiator-istgt";

/// istgt's disk is LUN 0.
const LUN: u16 = 0;

fn ini() -> Chap {
    Chap::new("alice", "alicesecret12")
}

fn tgt() -> Chap {
    Chap::new("istgt-target", "targetsecret12")
}

/// Logout responses istgt dropped in the current cell (see [`logout`]).
static DROPPED_LOGOUTS: AtomicUsize = AtomicUsize::new(0);

/// Logs out. istgt 0.4 now and then closes the connection right after it
/// takes a Logout Request, without sending the Logout Response (seen about
/// once in 20 sessions here; its log still says "Logout from ..."). The
/// session is over either way (RFC 7143 11.14: the target closes the
/// connection after the response), so that case passes when istgt's log
/// confirms the logout of this very session (its ISID), and is counted.
fn logout(client: Client, t: &Istgt) -> Result<(), String> {
    let isid: String = client
        .session()
        .isid()
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match client.logout() {
        Ok(_) => Ok(()),
        Err(e @ (iscsi_std::Error::Task(_) | iscsi_std::Error::Closed(_))) => {
            let log = std::fs::read_to_string(t.log_file()).unwrap_or_default();
            let confirmed = log
                .lines()
                .any(|l| l.starts_with("Logout from") && l.contains(&format!("ISID={isid}")));
            if confirmed {
                DROPPED_LOGOUTS.fetch_add(1, Ordering::Relaxed);
                Ok(())
            } else {
                Err(format!("logout: {e}; istgt log: {}", t.log_tail(4)))
            }
        }
        Err(e) => Err(format!("logout: {e}")),
    }
}

/// Notes how many Logout Responses istgt dropped in this cell.
fn note_dropped_logouts(ctx: &mut crate::runner::CellCtx) {
    let n = DROPPED_LOGOUTS.swap(0, Ordering::Relaxed);
    if n > 0 {
        ctx.note(format!(
            "istgt closed {n} session(s) without a Logout Response"
        ));
    }
}

/// Login, READ CAPACITY checked against the backing file, logout.
fn login_readcap(t: &Istgt, auth: Option<Auth>) -> Result<(), String> {
    let mut c = config(Some(t.iqn()), op_params());
    if let Some(a) = auth {
        c = with_auth(c, a);
    }
    let mut client = connect(&t.portal(), c)?;
    let cap = read_capacity(&mut client, lun(LUN))?;
    check_capacity(&cap, t.backing_file())?;
    logout(client, t)
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "discovery", |ctx| {
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&IstgtConfig::default())?;
            let mut result = Ok(Vec::new());
            let r = ctx.captured(t.port(), || {
                result =
                    Client::discover(&t.portal(), config(None, op_params()), Options::default());
                Ok(())
            })?;
            let want_addr = format!("TargetAddress=127.0.0.1:{},1", t.port());
            let targets = match result {
                Ok(v) => v,
                // istgt dropped the Logout Response (see `logout`): the
                // SendTargets answer is on the wire, check it there.
                Err(iscsi_std::Error::Task(_) | iscsi_std::Error::Closed(_))
                    if r.count_opcode(0x06) > 0 && r.count_opcode(0x26) == 0 =>
                {
                    if !r.has_key_value(&format!("TargetName={}", t.iqn()))
                        || !r.has_key_value(&want_addr)
                    {
                        return Err(format!("SendTargets answer lacks the target: {:?}", r.key_values));
                    }
                    ctx.note("istgt closed the session without a Logout Response; answer checked on the wire");
                    return Ok(());
                }
                Err(e) => return Err(format!("discovery: {e}")),
            };
            let rec = targets
                .iter()
                .find(|x| x.name == t.iqn())
                .ok_or_else(|| format!("{} not among {targets:?}", t.iqn()))?;
            if !rec
                .addresses
                .iter()
                .any(|a| a.host == "127.0.0.1" && a.port == Some(t.port()))
            {
                return Err(format!(
                    "portal 127.0.0.1:{} not in {:?}",
                    t.port(),
                    rec.addresses
                ));
            }
            if r.count_opcode(0x04) == 0 || r.count_opcode(0x24) == 0 {
                return Err(format!("no Text Request/Response in {:?}", r.opcodes));
            }
            ctx.note(format!("{} target(s)", targets.len()));
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "login-inquiry-readcap", |ctx| {
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&IstgtConfig::default())?;
            let mut vendor = String::new();
            ctx.captured(t.port(), || {
                let mut client = connect(&t.portal(), config(Some(t.iqn()), op_params()))?;
                let inq = inquiry(&mut client, lun(LUN))?;
                if inq.device_type != 0 || inq.peripheral_qualifier != 0 {
                    return Err(format!("LUN 0 is not a connected disk: {inq:?}"));
                }
                vendor = format!("{} {}", inq.vendor, inq.product);
                let cap = read_capacity(&mut client, lun(LUN))?;
                check_capacity(&cap, t.backing_file())?;
                logout(client, &t)?;
                Ok(())
            })?;
            ctx.note(vendor);
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "chap", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                ..IstgtConfig::default()
            };
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&cfg)?;
            let mut msg = String::new();
            ctx.captured(t.port(), || {
                login_readcap(&t, Some(chap_auth(&ini())))?;
                let c = with_auth(
                    config(Some(t.iqn()), op_params()),
                    chap_auth(&Chap::new("alice", "wrongsecret12")),
                );
                let res = Client::connect(&t.portal(), c, Options::default());
                msg = expect_login_failed(res, LoginStatus::AuthenticationFailure)?;
                Ok(())
            })?;
            ctx.note(format!("wrong secret: {msg}"));
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "chap-mutual", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                mutual: Some(tgt()),
                ..IstgtConfig::default()
            };
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&cfg)?;
            let (mut one_way, mut refused) = (String::new(), String::new());
            let r = ctx.captured(t.port(), || {
                login_readcap(&t, Some(mutual_auth(&ini(), &tgt())))?;
                // "AuthMethod CHAP Mutual" refuses one-way CHAP.
                let c = with_auth(config(Some(t.iqn()), op_params()), chap_auth(&ini()));
                one_way = expect_login_failed(
                    Client::connect(&t.portal(), c, Options::default()),
                    LoginStatus::AuthenticationFailure,
                )?;
                // And we refuse a target that cannot prove itself.
                let bad = mutual_auth(&ini(), &Chap::new("istgt-target", "notthesecret1"));
                let c = with_auth(config(Some(t.iqn()), op_params()), bad);
                refused =
                    expect_target_refused(Client::connect(&t.portal(), c, Options::default()))?;
                Ok(())
            })?;
            if !r.has_key_value("CHAP_N=istgt-target") {
                return Err("target never sent CHAP_N=istgt-target".into());
            }
            ctx.note(format!("one-way: {one_way}"));
            ctx.note(format!("wrong target secret: {refused}"));
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "integrity-1mib", |ctx| {
            let cfg = IstgtConfig {
                nop_in_interval: 2,
                ..IstgtConfig::default()
            };
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&cfg)?;
            const LBA: u64 = 12345;
            const LEN: usize = 1 << 20;
            let mut rng = XorShift::from_time();
            let seed = rng.state();
            let data = Bytes::from(rng.bytes(LEN));
            let r = ctx.captured(t.port(), || {
                let mut client = connect(&t.portal(), config(Some(t.iqn()), op_params()))?;
                let cap = read_capacity(&mut client, lun(LUN))?;
                write_all(&mut client, lun(LUN), LBA, &data, cap.block_len)?;
                let back = read_all(&mut client, lun(LUN), LBA, LEN, cap.block_len)?;
                compare("read-back", &data, &back)?;
                logout(client, &t)?;
                // istgt's backing file, after the session ended.
                let on_disk = file_region(t.backing_file(), LBA * u64::from(cap.block_len), LEN)?;
                compare("backing file", &data, &on_disk)?;
                Ok(())
            })?;
            ctx.note(format!(
                "1 MiB at LBA {LBA}, seed {seed:#x}; {} R2T, {} Data-Out",
                r.count_opcode(0x31),
                r.count_opcode(0x05)
            ));
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(90)),
        // Issue "Integrity first", item 6: `iscsi write` of 1 MiB against
        // istgt pinging every 2 s, 200 times, round-robin over the three
        // drivers, through the tool's own code (`iscsi_cli::tool`), with no
        // failure. istgt now and then closes the connection right after a
        // Logout Request instead of answering it: RFC 7143 section 11.14,
        // that close with nothing outstanding is the logout, and the
        // session must report it as clean (no error, no warning).
        Cell::new(G, "write-loop-200", |ctx| {
            let cfg = IstgtConfig {
                nop_in_interval: 2,
                ..IstgtConfig::default()
            };
            let t = Istgt::start(&cfg)?;
            let loops: usize = std::env::var("ISTGT_WRITE_LOOPS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let kinds = [
                iscsi_cli::driver::DriverKind::Std,
                iscsi_cli::driver::DriverKind::Mio,
                iscsi_cli::driver::DriverKind::Smol,
                iscsi_cli::driver::DriverKind::Tokio,
            ];
            let mut rng = XorShift::from_time();
            let seed = rng.state();
            let data = Bytes::from(rng.bytes(1 << 20));
            for i in 0..loops {
                let kind = kinds[i % kinds.len()];
                let c = config(Some(t.iqn()), op_params())
                    .with_recovery(iscsi_cli::tool::recovery_policy());
                let mut s = iscsi_cli::driver::Session::connect(
                    kind,
                    &t.portal(),
                    c,
                    Options::default(),
                )
                .map_err(|e| format!("run {i} ({}): connect: {e}", kind.name()))?;
                iscsi_cli::tool::write_blocks(&mut s, u64::from(LUN), (i as u64 % 64) * 2048, &data)
                    .map_err(|e| format!("run {i} ({}): write: {e}", kind.name()))?;
                s.logout()
                    .map_err(|e| format!("run {i} ({}): logout: {e}", kind.name()))?;
            }
            ctx.note(format!(
                "{loops} x 1 MiB writes (std/mio/smol/tokio), seed {seed:#x}, every logout clean"
            ));
            Ok(())
        })
        .with_timeout(Duration::from_secs(900)),
        Cell::new(G, "nop-in-idle", |ctx| {
            let cfg = IstgtConfig {
                nop_in_interval: 2,
                ..IstgtConfig::default()
            };
            DROPPED_LOGOUTS.store(0, Ordering::Relaxed);
            let t = Istgt::start(&cfg)?;
            let r = ctx.captured(t.port(), || {
                let mut client = connect(&t.portal(), config(Some(t.iqn()), op_params()))?;
                read_capacity(&mut client, lun(LUN))?;
                // Hold the session idle for 6.5 s: istgt sends a NOP-In
                // after about 3 s without traffic, then every 3 s. The
                // blocking driver reads (and, if asked to, answers) them
                // at its next call: here a ping of our own.
                std::thread::sleep(Duration::from_millis(6500));
                let echo = client
                    .ping(Bytes::from_static(b"idle"))
                    .map_err(|e| format!("ping after idling: {e}"))?;
                if &echo[..] != b"idle" {
                    return Err(format!("ping echoed {echo:?}"));
                }
                let cap = read_capacity(&mut client, lun(LUN))?;
                check_capacity(&cap, t.backing_file())?;
                logout(client, &t)?;
                Ok(())
            })?;
            // Target-initiated NOP-In: ITT 0xffffffff (RFC 7143 11.19.2).
            // Only one with a TTT other than 0xffffffff asks for an answer
            // (11.19.1: "If the target is initiating a NOP-In without
            // wanting to receive a corresponding NOP-Out, this field MUST
            // hold the reserved value 0xffffffff"); the answer is a NOP-Out
            // with ITT 0xffffffff echoing that TTT (11.18.3).
            let (all, _) = pdus(&r.pcap, t.port())?;
            let tag = |p: &super::initiator_common::PduInfo, f: &str| p.num(f);
            let nop_in = all
                .iter()
                .filter(|p| p.opcode == 0x20 && tag(p, "InitiatorTaskTag") == Some(0xffff_ffff))
                .count();
            let asked = all
                .iter()
                .filter(|p| {
                    p.opcode == 0x20
                        && tag(p, "InitiatorTaskTag") == Some(0xffff_ffff)
                        && tag(p, "TargetTransferTag") != Some(0xffff_ffff)
                })
                .count();
            let answers = all
                .iter()
                .filter(|p| p.opcode == 0x00 && tag(p, "InitiatorTaskTag") == Some(0xffff_ffff))
                .count();
            if nop_in == 0 {
                return Err("istgt sent no NOP-In to the idle session".into());
            }
            if answers != asked {
                return Err(format!(
                    "{asked} NOP-In asked for an answer, {answers} NOP-Out answered"
                ));
            }
            ctx.note(format!(
                "{nop_in} NOP-In from istgt ({asked} asking for an answer), {answers} NOP-Out answers"
            ));
            note_dropped_logouts(ctx);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
    ]
}
