//! Cells against istgt with the project's own initiator as the client.
//! istgt's disk is LUN 0; its `NopInInterval` (2 s here) makes it ping an
//! idle initiator with NOP-In, which the libiscsi tools never stay idle
//! long enough to see.

use super::initiator_common::{
    chap_auth, check_capacity, compare, config, connect, count_frames, expect_login_failed,
    expect_target_refused, file_region, inquiry, lun, mutual_auth, op_params, read_all,
    read_capacity, with_auth, write_all, XorShift,
};
use crate::peers::{Istgt, IstgtConfig};
use crate::runner::Cell;
use crate::tools::Chap;
use bytes::Bytes;
use iscsi_proto::initiator::Auth;
use iscsi_proto::login::status::LoginStatus;
use iscsi_std::{Client, Options};
use std::time::{Duration, Instant};

const G: &str = "initiator-istgt";

/// istgt's disk is LUN 0.
const LUN: u16 = 0;

fn ini() -> Chap {
    Chap::new("alice", "alicesecret12")
}

fn tgt() -> Chap {
    Chap::new("istgt-target", "targetsecret12")
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
    client.logout().map_err(|e| format!("logout: {e}"))?;
    Ok(())
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "discovery", |ctx| {
            let t = Istgt::start(&IstgtConfig::default())?;
            let mut targets = Vec::new();
            let r = ctx.captured(t.port(), || {
                targets =
                    Client::discover(&t.portal(), config(None, op_params()), Options::default())
                        .map_err(|e| format!("discovery: {e}"))?;
                Ok(())
            })?;
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
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "login-inquiry-readcap", |ctx| {
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
                client.logout().map_err(|e| format!("logout: {e}"))?;
                Ok(())
            })?;
            ctx.note(vendor);
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "chap", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                ..IstgtConfig::default()
            };
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
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "chap-mutual", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                mutual: Some(tgt()),
                ..IstgtConfig::default()
            };
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
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
        Cell::new(G, "integrity-1mib", |ctx| {
            let cfg = IstgtConfig {
                nop_in_interval: 2,
                ..IstgtConfig::default()
            };
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
                client.logout().map_err(|e| format!("logout: {e}"))?;
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
            Ok(())
        })
        .with_timeout(Duration::from_secs(90)),
        Cell::new(G, "nop-in-idle", |ctx| {
            let cfg = IstgtConfig {
                nop_in_interval: 2,
                ..IstgtConfig::default()
            };
            let t = Istgt::start(&cfg)?;
            let mut pings = 0;
            let r = ctx.captured(t.port(), || {
                let mut client = connect(&t.portal(), config(Some(t.iqn()), op_params()))?;
                read_capacity(&mut client, lun(LUN))?;
                // Hold the session idle for about 6 s. The blocking driver
                // answers a NOP-In only inside a call; istgt pings only a
                // connection idle for NopInInterval, so we look in every
                // 2.5 s with our own ping, which also takes in (and answers)
                // any NOP-In that arrived meanwhile.
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(6) {
                    std::thread::sleep(Duration::from_millis(2500));
                    let echo = client
                        .ping(Bytes::from_static(b"idle"))
                        .map_err(|e| format!("ping after {:?}: {e}", start.elapsed()))?;
                    if &echo[..] != b"idle" {
                        return Err(format!("ping echoed {echo:?}"));
                    }
                    pings += 1;
                }
                let cap = read_capacity(&mut client, lun(LUN))?;
                check_capacity(&cap, t.backing_file())?;
                client.logout().map_err(|e| format!("logout: {e}"))?;
                Ok(())
            })?;
            // Target-initiated NOP-In: ITT 0xffffffff (RFC 7143 11.19.2);
            // our answer: a NOP-Out with ITT 0xffffffff echoing its TTT
            // (11.18.3).
            let nop_in = count_frames(
                &r.pcap,
                t.port(),
                "iscsi.opcode == 0x20 && iscsi.initiatortasktag == 0xffffffff",
            )?;
            let answers = count_frames(
                &r.pcap,
                t.port(),
                "iscsi.opcode == 0x00 && iscsi.initiatortasktag == 0xffffffff \
                 && iscsi.targettransfertag != 0xffffffff",
            )?;
            if nop_in == 0 {
                return Err("istgt sent no NOP-In to the idle session".into());
            }
            if answers < nop_in {
                return Err(format!("{nop_in} NOP-In, only {answers} answered"));
            }
            ctx.note(format!(
                "{nop_in} NOP-In from istgt, {answers} answered; {pings} own pings"
            ));
            Ok(())
        })
        .with_timeout(Duration::from_secs(60)),
    ]
}
