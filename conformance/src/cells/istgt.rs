//! Cells against istgt, with libiscsi's tools as the client (never
//! `iscsi-ls -s`: against istgt it spun forever here).

use super::{expect_contains, libiscsi_fails, libiscsi_ok};
use crate::peers::{Istgt, IstgtConfig};
use crate::runner::Cell;
use crate::tools::{Chap, IscsiUrl};

const G: &str = "istgt";

fn ini() -> Chap {
    Chap::new("alice", "alicesecret12")
}

fn tgt() -> Chap {
    Chap::new("istgt-target", "targetsecret12")
}

fn url(t: &Istgt) -> IscsiUrl {
    IscsiUrl::new(t.portal(), t.iqn(), 0)
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "iscsi-inq", |ctx| {
            let t = Istgt::start(&IstgtConfig::default())?;
            let u = url(&t).to_string();
            let mut out = String::new();
            ctx.captured(t.port(), || {
                out = libiscsi_ok("iscsi-inq", &[&u])?.stdout;
                Ok(())
            })?;
            expect_contains("iscsi-inq", &out, "Peripheral Device Type:DIRECT_ACCESS")
        }),
        Cell::new(G, "iscsi-readcapacity16", |ctx| {
            let t = Istgt::start(&IstgtConfig::default())?;
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
        Cell::new(G, "chap-mutual", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                mutual: Some(tgt()),
                ..IstgtConfig::default()
            };
            let t = Istgt::start(&cfg)?;
            let good = url(&t).chap(&ini()).mutual(&tgt()).to_string();
            let one_way = url(&t).chap(&ini()).to_string();
            let bad_target = url(&t)
                .chap(&ini())
                .mutual(&Chap::new("istgt-target", "notthesecret1"))
                .to_string();
            ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-readcapacity16", &[&good])?;
                // "AuthMethod CHAP Mutual" refuses an initiator that does
                // not ask the target to authenticate itself.
                libiscsi_fails("iscsi-inq", &[&one_way], "Authentication failure")?;
                libiscsi_fails("iscsi-inq", &[&bad_target], "Invalid CHAP_R")?;
                Ok(())
            })?;
            Ok(())
        }),
        Cell::new(G, "chap-wrong-secret", |ctx| {
            let cfg = IstgtConfig {
                chap: Some(ini()),
                ..IstgtConfig::default()
            };
            let t = Istgt::start(&cfg)?;
            let good = url(&t).chap(&ini()).to_string();
            let bad = url(&t)
                .chap(&Chap::new("alice", "wrongsecret12"))
                .to_string();
            ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-inq", &[&good])?;
                libiscsi_fails("iscsi-inq", &[&bad], "Authentication failure")?;
                Ok(())
            })?;
            Ok(())
        }),
        Cell::new(G, "header-digest", |ctx| {
            let cfg = IstgtConfig {
                use_digest: "Header".into(),
                ..IstgtConfig::default()
            };
            let t = Istgt::start(&cfg)?;
            let u = url(&t).header_digest("crc32c").to_string();
            let r = ctx.captured(t.port(), || {
                libiscsi_ok("iscsi-readcapacity16", &[&u]).map(|_| ())
            })?;
            if !r.has_key_value("HeaderDigest=CRC32C") || r.header_digest_frames == 0 {
                return Err(format!(
                    "header digest not in use ({} frames): {:?}",
                    r.header_digest_frames, r.key_values
                ));
            }
            ctx.note(format!(
                "{} frames with HeaderDigest",
                r.header_digest_frames
            ));
            Ok(())
        }),
    ]
}
