//! Cells against tgtd, with libiscsi's tools as the client. Every cell starts
//! its own tgtd and runs the client inside a clean tshark capture.

use super::{expect_contains, libiscsi_fails, libiscsi_ok};
use crate::peers::{CaptureReport, Tgtd, TgtdConfig};
use crate::runner::{Cell, CellCtx};
use crate::tools::{Chap, IscsiUrl};

const G: &str = "tgtd";

fn alice() -> Chap {
    Chap::new("alice", "alicesecret12")
}

fn target_creds() -> Chap {
    Chap::new("tgtd-target", "targetsecret12")
}

fn url(t: &Tgtd) -> IscsiUrl {
    IscsiUrl::new(t.portal(), t.iqn(), 1)
}

/// Notes the value the target answered for `key` (the last occurrence in the
/// login exchange is the target's final answer).
fn note_negotiated(ctx: &mut CellCtx, r: &CaptureReport, key: &str) {
    let prefix = format!("{key}=");
    if let Some(kv) = r.key_values.iter().rev().find(|k| k.starts_with(&prefix)) {
        ctx.note(kv.clone());
    }
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "iscsi-ls", |ctx| {
            let t = Tgtd::start(&TgtdConfig::default())?;
            let portal = IscsiUrl::new(t.portal(), "", 0).to_string();
            let mut out = String::new();
            let r = ctx.captured(t.port(), || {
                out = libiscsi_ok("iscsi-ls", &["-s", &portal])?.stdout;
                Ok(())
            })?;
            expect_contains("iscsi-ls", &out, &format!("Target:{}", t.iqn()))?;
            expect_contains("iscsi-ls", &out, "Lun:1")?;
            // SendTargets travels in Text Request/Response (RFC 7143 11.10/11.11).
            if r.count_opcode(0x04) == 0 || r.count_opcode(0x24) == 0 {
                return Err(format!("no Text Request/Response in {:?}", r.opcodes));
            }
            Ok(())
        }),
        Cell::new(G, "iscsi-inq", |ctx| {
            let t = Tgtd::start(&TgtdConfig::default())?;
            let u = url(&t).to_string();
            let mut out = String::new();
            ctx.captured(t.port(), || {
                out = libiscsi_ok("iscsi-inq", &[&u])?.stdout;
                Ok(())
            })?;
            expect_contains("iscsi-inq", &out, "Peripheral Device Type:DIRECT_ACCESS")?;
            expect_contains("iscsi-inq", &out, "Vendor:IET")
        }),
        Cell::new(G, "iscsi-readcapacity16", |ctx| {
            let t = Tgtd::start(&TgtdConfig::default())?;
            let u = url(&t).to_string();
            let mut out = String::new();
            ctx.captured(t.port(), || {
                out = libiscsi_ok("iscsi-readcapacity16", &[&u])?.stdout;
                Ok(())
            })?;
            let size = std::fs::metadata(t.backing_file())
                .map_err(|e| format!("stat backing file: {e}"))?
                .len();
            expect_contains("readcapacity16", &out, &format!("Total size:{size}\n"))
        }),
        Cell::new(G, "chap", |ctx| {
            let cfg = TgtdConfig {
                chap: Some(alice()),
                ..TgtdConfig::default()
            };
            let t = Tgtd::start(&cfg)?;
            let good = url(&t).chap(&alice()).to_string();
            let none = url(&t).to_string();
            let r = ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-readcapacity16", &[&good])?;
                libiscsi_fails("iscsi-inq", &[&none], "Authentication failure")?;
                Ok(())
            })?;
            if !r.key_values.iter().any(|k| k == "CHAP_N=alice") {
                return Err("no CHAP_N=alice in the login exchange".into());
            }
            Ok(())
        }),
        Cell::new(G, "chap-wrong-secret", |ctx| {
            let cfg = TgtdConfig {
                chap: Some(alice()),
                ..TgtdConfig::default()
            };
            let t = Tgtd::start(&cfg)?;
            let bad = url(&t)
                .chap(&Chap::new("alice", "wrongsecret12"))
                .to_string();
            ctx.captured(t.port(), || {
                libiscsi_fails("iscsi-inq", &[&bad], "Authentication failure").map(|_| ())
            })?;
            Ok(())
        }),
        Cell::new(G, "chap-mutual", |ctx| {
            let cfg = TgtdConfig {
                chap: Some(alice()),
                mutual: Some(target_creds()),
                ..TgtdConfig::default()
            };
            let t = Tgtd::start(&cfg)?;
            let good = url(&t).chap(&alice()).mutual(&target_creds()).to_string();
            let bad = url(&t)
                .chap(&alice())
                .mutual(&Chap::new("tgtd-target", "notthesecret1"))
                .to_string();
            let r = ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-readcapacity16", &[&good])?;
                // The initiator must reject a target that cannot prove itself.
                libiscsi_fails("iscsi-inq", &[&bad], "Invalid CHAP_R")?;
                Ok(())
            })?;
            if !r.key_values.iter().any(|k| k == "CHAP_N=tgtd-target") {
                return Err("target never sent CHAP_N=tgtd-target".into());
            }
            Ok(())
        }),
        Cell::new(G, "digests", |ctx| {
            let cfg = TgtdConfig {
                header_digest: Some("CRC32C".into()),
                data_digest: Some("CRC32C".into()),
                ..TgtdConfig::default()
            };
            let t = Tgtd::start(&cfg)?;
            // libiscsi offers HeaderDigest=None,CRC32C and DataDigest=None.
            let u = url(&t).to_string();
            let r = ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-readcapacity16", &[&u]).map(|_| ())
            })?;
            if !r.has_key_value("HeaderDigest=CRC32C") {
                return Err(format!(
                    "HeaderDigest=CRC32C not agreed: {:?}",
                    r.key_values
                ));
            }
            if r.header_digest_frames == 0 {
                return Err("no frame carried a header digest".into());
            }
            ctx.note(format!(
                "{} frames with HeaderDigest",
                r.header_digest_frames
            ));
            note_negotiated(ctx, &r, "DataDigest");
            Ok(())
        }),
        Cell::new(G, "params", |ctx| {
            let cfg = TgtdConfig {
                initial_r2t: Some(false),
                immediate_data: Some(false),
                first_burst_length: Some(8192),
                max_recv_data_segment_length: Some(16384),
                ..TgtdConfig::default()
            };
            let t = Tgtd::start(&cfg)?;
            let u = url(&t).to_string();
            let r = ctx.captured(t.port(), || libiscsi_ok("iscsi-inq", &[&u]).map(|_| ()))?;
            // Target's answers (RFC 7143 13.x): ImmediateData is an AND,
            // FirstBurstLength a minimum, MaxRecvDataSegmentLength declarative.
            // (tgtd leaves MaxRecvDataSegmentLength out of its answer when it
            // equals the RFC default 8192, hence 16384 here.)
            for kv in [
                "ImmediateData=No",
                "FirstBurstLength=8192",
                "MaxRecvDataSegmentLength=16384",
                "InitialR2T=No",
            ] {
                if !r.has_key_value(kv) {
                    return Err(format!("target never answered {kv}: {:?}", r.key_values));
                }
            }
            Ok(())
        }),
    ]
}
