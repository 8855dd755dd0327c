//! The targets and the capture that consecutive matrix cells share: one
//! tgtd reconfigured with `tgtadm` between cells, or twelve istgt
//! instances (one per configuration istgt can express), each with one
//! [`LiveCapture`] of all their ports. A world lives in a static; a cell
//! releases it when the cell after it (`CellCtx::next_cell`) does not use
//! it, also when the cell fails or panics.

use super::{AuthKind, Combo, TargetKind};
use crate::peers::{Istgt, IstgtConfig, LiveCapture, Tgtd, TgtdConfig};
use crate::tools::Chap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The initiator's CHAP account (RFC 7143 12.1.3).
pub(crate) fn initiator_creds() -> Chap {
    Chap::new("alice", "alicesecret12")
}

/// The target's CHAP account for mutual authentication.
pub(crate) fn target_creds(t: TargetKind) -> Chap {
    match t {
        TargetKind::Tgtd => Chap::new("tgtd-target", "targetsecret12"),
        TargetKind::Istgt => Chap::new("istgt-target", "targetsecret12"),
    }
}

/// Size of each LUN (sparse, on tmpfs).
const LUN_SIZE: u64 = 64 << 20;

/// What a cell body needs of the target it talks to.
#[derive(Debug, Clone)]
pub(crate) struct TargetView {
    /// `127.0.0.1:PORT`.
    pub(crate) portal: String,
    /// The TCP port.
    pub(crate) port: u16,
    /// Target IQN.
    pub(crate) iqn: String,
    /// LUN number of the disk.
    pub(crate) lun: u16,
    /// The backing file of that LUN.
    pub(crate) backing: PathBuf,
    /// istgt's log (to confirm a logout it did not answer).
    pub(crate) istgt_log: Option<PathBuf>,
    /// InitialR2T the target is configured with.
    pub(crate) initial_r2t: bool,
    /// ImmediateData the target is configured with.
    pub(crate) immediate_data: bool,
    /// FirstBurstLength the session ends up with (ours and the target's
    /// are both 65536).
    pub(crate) first_burst_length: u32,
    /// MaxRecvDataSegmentLength the target declares.
    pub(crate) target_mrdsl: u32,
    /// The target requires the cell's authentication for discovery too.
    pub(crate) discovery_auth: bool,
}

/// Live state of the shared tgtd (what `tgtadm` last set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TgtdState {
    auth: AuthKind,
    digests: bool,
    r2t: bool,
    imm: bool,
}

pub(crate) struct TgtdWorld {
    cap: LiveCapture,
    tgtd: Tgtd,
    state: Option<TgtdState>,
}

/// The configurations istgt can express: its `InitialR2T` accepts only
/// `Yes` ("not supported value No"), so InitialR2T is not a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IstgtKey {
    auth: AuthKind,
    digests: bool,
    imm: bool,
}

pub(crate) struct IstgtWorld {
    cap: LiveCapture,
    units: Vec<(IstgtKey, Istgt)>,
}

pub(crate) enum World {
    Tgtd(TgtdWorld),
    Istgt(IstgtWorld),
}

impl World {
    fn kind(&self) -> TargetKind {
        match self {
            World::Tgtd(_) => TargetKind::Tgtd,
            World::Istgt(_) => TargetKind::Istgt,
        }
    }

    /// The shared capture.
    pub(crate) fn capture(&self) -> &LiveCapture {
        match self {
            World::Tgtd(w) => &w.cap,
            World::Istgt(w) => &w.cap,
        }
    }
}

impl Drop for IstgtWorld {
    fn drop(&mut self) {
        stop_units(std::mem::take(&mut self.units));
    }
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// The world of the matrix cell named `full` (`matrix/tgtd-...`).
pub(crate) fn world_of(full: &str) -> Option<TargetKind> {
    let rest = full.strip_prefix(concat!("matrix", "/"))?;
    if rest.starts_with("tgtd-") {
        Some(TargetKind::Tgtd)
    } else if rest.starts_with("istgt-") {
        Some(TargetKind::Istgt)
    } else {
        None
    }
}

/// The shared world for one cell; released on drop unless the next cell
/// uses the same one.
pub(crate) struct Lease {
    slot: MutexGuard<'static, Option<World>>,
    keep: bool,
    /// True when this cell started the world.
    pub(crate) started: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.keep {
            drop(self.slot.take());
        }
    }
}

impl Lease {
    /// Takes the world for `combo`'s target (starting it if needed,
    /// releasing another one first); `next` is the cell after this one.
    pub(crate) fn take(combo: &Combo, next: Option<&str>, out: &Path) -> Result<Lease, String> {
        let slot = WORLD.lock().unwrap_or_else(|p| p.into_inner());
        let keep = next.and_then(world_of) == Some(combo.target);
        let mut lease = Lease {
            slot,
            keep,
            started: false,
        };
        if lease.slot.as_ref().map(World::kind) != Some(combo.target) {
            drop(lease.slot.take());
            let w = match combo.target {
                TargetKind::Tgtd => World::Tgtd(start_tgtd(out)?),
                TargetKind::Istgt => World::Istgt(start_istgt(out)?),
            };
            *lease.slot = Some(w);
            lease.started = true;
        }
        Ok(lease)
    }

    /// The world (always there after [`Lease::take`]).
    pub(crate) fn world(&self) -> Result<&World, String> {
        self.slot
            .as_ref()
            .ok_or_else(|| "no matrix world".to_string())
    }

    /// Configures the target for `combo` and describes it.
    pub(crate) fn prepare(&mut self, combo: &Combo) -> Result<TargetView, String> {
        match self.slot.as_mut() {
            Some(World::Tgtd(w)) => w.prepare(combo),
            Some(World::Istgt(w)) => w.view(combo),
            None => Err("no matrix world".into()),
        }
    }
}

fn start_tgtd(out: &Path) -> Result<TgtdWorld, String> {
    let tgtd = Tgtd::start(&TgtdConfig {
        iqn: "iqn.2026-11.test.tgtd:matrix".into(),
        lun_size: LUN_SIZE,
        ..TgtdConfig::default()
    })?;
    tgtd.new_account(&initiator_creds())?;
    tgtd.new_account(&target_creds(TargetKind::Tgtd))?;
    let cap = LiveCapture::start(&[tgtd.port()], out.join("matrix-tgtd-capture.log"))?;
    Ok(TgtdWorld {
        cap,
        tgtd,
        state: None,
    })
}

impl TgtdWorld {
    /// Sets digests, InitialR2T, ImmediateData and the bound accounts
    /// (for target 1 and for discovery) with `tgtadm`, changing only what
    /// differs from the previous cell.
    fn prepare(&mut self, c: &Combo) -> Result<TargetView, String> {
        let want = TgtdState {
            auth: c.auth,
            digests: c.digests,
            r2t: c.r2t,
            imm: c.imm,
        };
        let prev = self.state.take();
        let t = &self.tgtd;
        let yn = |b: bool| if b { "Yes" } else { "No" };
        if prev.map(|p| p.digests) != Some(want.digests) {
            let d = if want.digests { "CRC32C" } else { "None" };
            t.set_param("HeaderDigest", d)?;
            t.set_param("DataDigest", d)?;
        }
        if prev.map(|p| p.r2t) != Some(want.r2t) {
            t.set_param("InitialR2T", yn(want.r2t))?;
        }
        if prev.map(|p| p.imm) != Some(want.imm) {
            t.set_param("ImmediateData", yn(want.imm))?;
        }
        let incoming = |a: AuthKind| a != AuthKind::None;
        let outgoing = |a: AuthKind| a == AuthKind::Mutual;
        let ini = initiator_creds();
        let tgt = target_creds(TargetKind::Tgtd);
        // (user, outgoing, wanted now, bound before)
        let bindings = [
            (
                &ini.user,
                false,
                incoming(want.auth),
                prev.is_some_and(|p| incoming(p.auth)),
            ),
            (
                &tgt.user,
                true,
                outgoing(want.auth),
                prev.is_some_and(|p| outgoing(p.auth)),
            ),
        ];
        for (user, out, now, before) in bindings {
            if now != before {
                for discovery in [false, true] {
                    t.bind_account(user, out, discovery, now)?;
                }
            }
        }
        self.state = Some(want);
        Ok(TargetView {
            portal: t.portal(),
            port: t.port(),
            iqn: t.iqn().to_string(),
            lun: 1,
            backing: t.backing_file().to_path_buf(),
            istgt_log: None,
            initial_r2t: c.r2t,
            immediate_data: c.imm,
            first_burst_length: 65536,
            // tgtd's default MaxRecvDataSegmentLength.
            target_mrdsl: 8192,
            discovery_auth: c.auth != AuthKind::None,
        })
    }
}

fn istgt_config(k: IstgtKey) -> IstgtConfig {
    let ini = initiator_creds();
    let tgt = target_creds(TargetKind::Istgt);
    IstgtConfig {
        target_name: format!(
            "matrix-{}-{}-{}",
            k.auth.name(),
            if k.digests { "digests" } else { "nodigests" },
            if k.imm { "imm" } else { "noimm" }
        ),
        lun_size: LUN_SIZE,
        chap: (k.auth != AuthKind::None).then_some(ini),
        mutual: (k.auth == AuthKind::Mutual).then_some(tgt),
        use_digest: if k.digests { "Header Data" } else { "Auto" }.into(),
        initial_r2t: true,
        immediate_data: k.imm,
        discovery_auth: true,
        ..IstgtConfig::default()
    }
}

fn start_istgt(out: &Path) -> Result<IstgtWorld, String> {
    let mut keys = Vec::new();
    for imm in [true, false] {
        for auth in AuthKind::ALL {
            for digests in [false, true] {
                keys.push(IstgtKey { auth, digests, imm });
            }
        }
    }
    // Start them side by side (each waits for its port).
    let started: Vec<(IstgtKey, Result<Istgt, String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = keys
            .iter()
            .map(|k| {
                let k = *k;
                s.spawn(move || (k, Istgt::start(&istgt_config(k))))
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for (k, r) in started {
        match r {
            Ok(t) => units.push((k, t)),
            Err(e) => errors.push(format!("{k:?}: {e}")),
        }
    }
    if units.len() != keys.len() {
        stop_units(units);
        return Err(format!(
            "istgt instances did not start: {}",
            errors.join("; ")
        ));
    }
    let ports: Vec<u16> = units.iter().map(|(_, t)| t.port()).collect();
    match LiveCapture::start(&ports, out.join("matrix-istgt-capture.log")) {
        Ok(cap) => Ok(IstgtWorld { cap, units }),
        Err(e) => {
            stop_units(units);
            Err(e)
        }
    }
}

/// Stops istgt instances side by side (each may take 2 s: SIGTERM, then
/// SIGKILL).
fn stop_units(units: Vec<(IstgtKey, Istgt)>) {
    std::thread::scope(|s| {
        for u in units {
            s.spawn(move || drop(u));
        }
    });
}

impl IstgtWorld {
    fn view(&self, c: &Combo) -> Result<TargetView, String> {
        let key = IstgtKey {
            auth: c.auth,
            digests: c.digests,
            imm: c.imm,
        };
        let t = self
            .units
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("no istgt for {key:?}"))?;
        Ok(TargetView {
            portal: t.portal(),
            port: t.port(),
            iqn: t.iqn().to_string(),
            lun: 0,
            backing: t.backing_file().to_path_buf(),
            istgt_log: Some(t.log_file().to_path_buf()),
            initial_r2t: true,
            immediate_data: c.imm,
            first_burst_length: 65536,
            target_mrdsl: 262_144,
            discovery_auth: c.auth != AuthKind::None,
        })
    }
}
