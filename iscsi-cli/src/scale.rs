//! `iscsi scale`: many sessions to one target on ONE `mio::Poll` (the
//! `iscsi_mio::Client` API), each keeping `--qd` reads in flight. Reports
//! aggregate IOPS, p50/p99 latency, login time, and what each session
//! costs the initiator: resident memory (`VmRSS` of /proc/self/status)
//! and file descriptors (entries of /proc/self/fd), idle after login and
//! at the end of the run.
//!
//! The loop is the one `iscsi-mio/examples/multi.rs` documents, scaled:
//! only the clients an event names are stepped, and timers are kept in a
//! heap so a wake-up costs O(events), not O(sessions).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use iscsi_mio::client::{Blocking, Client, Coalesce, Lun};
use iscsi_proto::driver::reply;
use iscsi_proto::initiator::{Event, ScsiCommand, TaskId};
use iscsi_proto::scsi::cdb::{read16, RwFlags};
use mio::{Events, Poll, Token};

use crate::url::IscsiUrl;
use crate::Global;
use iscsi_cli::bench::XorShift;

/// What `iscsi scale` runs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Sessions opened at once.
    pub sessions: usize,
    /// Reads in flight per session.
    pub qd: usize,
    /// Bytes per read.
    pub bs: u32,
    /// Seconds of measured I/O (after every session logged in).
    pub seconds: u64,
    /// Longest wait for all logins.
    pub login_timeout: Duration,
}

/// One session of the loop.
struct Slot {
    client: Option<Client>,
    logged_in: bool,
    inflight: VecDeque<(TaskId, Instant)>,
    /// The deadline pushed on the timer heap last (None: not armed).
    armed: Option<Instant>,
}

/// Latencies in a log-linear histogram (64 exact microsecond buckets,
/// then 16 per power of two): fixed memory however long the run.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    const SUB: u32 = 16;

    fn new() -> Histogram {
        Histogram {
            counts: vec![0; 64 + 64 * Self::SUB as usize],
            total: 0,
        }
    }

    fn bucket(us: u64) -> usize {
        if us < 64 {
            return us as usize;
        }
        let msb = 63 - us.leading_zeros();
        let sub = (us >> (msb - 4)) & u64::from(Self::SUB - 1);
        64 + (msb as usize - 6) * Self::SUB as usize + sub as usize
    }

    /// The lower edge of bucket `i`, in microseconds.
    fn lower(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let k = i - 64;
        let msb = k / Self::SUB as usize + 6;
        let sub = (k % Self::SUB as usize) as u64;
        (1u64 << msb) | (sub << (msb - 4))
    }

    fn record(&mut self, us: u64) {
        if let Some(c) = self.counts.get_mut(Self::bucket(us)) {
            *c += 1;
            self.total += 1;
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        let want = ((self.total as f64) * p / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::lower(i);
            }
        }
        0
    }
}

/// Resident memory of this process in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of this process.
fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// `iscsi scale URL --sessions N`.
pub fn run(g: &Global, url: &str, spec: &Spec, json: bool) -> Result<(), String> {
    if spec.sessions == 0 || spec.qd == 0 {
        return Err("--sessions and --qd must be at least 1".into());
    }
    let u = IscsiUrl::parse(url)?;
    let portal = u.portal();
    let cfg = |g: &Global| {
        crate::session_config(g, Some(&u.target), u.user.as_deref(), u.secret.as_deref())
    };
    let lun = Lun::from_number(u.lun);
    // One blocking session first: the LUN's size and block length.
    let mut probe = Blocking::connect(&portal, cfg(g)?).map_err(|e| format!("{portal}: {e}"))?;
    let cap = probe.read_capacity(lun).map_err(|e| e.to_string())?;
    let _ = probe.logout();
    let block = cap.block_len.max(1);
    if spec.bs == 0 || spec.bs % block != 0 {
        return Err(format!("--bs must be a multiple of the block size {block}"));
    }
    let blocks = spec.bs / block;
    let span = cap
        .num_blocks()
        .unwrap_or(0)
        .saturating_sub(u64::from(blocks))
        / u64::from(blocks);
    if span == 0 {
        return Err("the LUN is smaller than one --bs".into());
    }
    let coalesce = match g.coalesce {
        0 => Coalesce::OFF,
        n => Coalesce::default().with_max_tasks(usize::from(n)),
    };

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    // One registry clone for every client: a session costs its socket only.
    let registry = std::sync::Arc::new(poll.registry().try_clone().map_err(|e| e.to_string())?);
    let (rss0, fd0) = (rss_kib(), fd_count());
    let t0 = Instant::now();
    let mut slots = Vec::with_capacity(spec.sessions);
    for i in 0..spec.sessions {
        let mut c = Client::new(&portal, cfg(g)?, &registry, Token(i))
            .map_err(|e| format!("session {i}: {e}"))?;
        c.set_coalesce(coalesce);
        slots.push(Slot {
            client: Some(c),
            logged_in: false,
            inflight: VecDeque::new(),
            armed: None,
        });
    }
    let mut lp = Loop {
        slots,
        timers: BinaryHeap::new(),
        events: Events::with_capacity(1024),
        hist: Histogram::new(),
        rng: XorShift::new(0x5ca1e ^ u64::from(std::process::id())),
        done: 0,
        failed: 0,
        spec: spec.clone(),
        lun,
        blocks,
        block,
        span,
        issuing: false,
    };
    for i in 0..spec.sessions {
        lp.step(i)?;
    }
    // Log in everybody (no I/O yet).
    let login_deadline = t0 + spec.login_timeout;
    while lp.logged_in() + lp.failed < spec.sessions && Instant::now() < login_deadline {
        lp.turn(&mut poll)?;
    }
    let login_secs = t0.elapsed().as_secs_f64();
    let up = lp.logged_in();
    if up == 0 {
        return Err(format!("no session logged in ({} failed)", lp.failed));
    }
    let (rss_idle, fd_idle) = (rss_kib(), fd_count());
    // Measured I/O.
    lp.issuing = true;
    for i in 0..spec.sessions {
        lp.step(i)?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(spec.seconds);
    while Instant::now() < end {
        lp.turn(&mut poll)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (rss_busy, fd_busy) = (rss_kib(), fd_count());
    lp.issuing = false;
    // Let what is in flight finish, then log out (bounded wait).
    let drain = Instant::now() + Duration::from_secs(10);
    let done_ios = lp.done;
    while lp.slots.iter().any(|s| !s.inflight.is_empty()) && Instant::now() < drain {
        lp.turn(&mut poll)?;
    }
    for s in lp.slots.iter_mut() {
        if let Some(c) = s.client.as_mut().filter(|c| !c.is_closed()) {
            let _ = c.logout();
        }
    }
    while lp.slots.iter().any(|s| s.client.is_some()) && Instant::now() < drain {
        lp.turn(&mut poll)?;
    }

    let n = up as f64;
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / n;
    let iops = done_ios as f64 / elapsed;
    let (p50, p99) = (lp.hist.percentile(50.0), lp.hist.percentile(99.0));
    if json {
        let v = serde_json::json!({
            "sessions": spec.sessions, "logged_in": up, "failed": lp.failed,
            "qd": spec.qd, "bs": spec.bs, "seconds": elapsed,
            "login_seconds": login_secs, "ios": done_ios, "iops": iops.round(),
            "p50_us": p50, "p99_us": p99,
            "rss_base_kib": rss0, "rss_idle_kib": rss_idle, "rss_busy_kib": rss_busy,
            "rss_idle_kib_per_session": per(rss_idle, rss0),
            "rss_busy_kib_per_session": per(rss_busy, rss0),
            "fds_per_session": per(fd_idle, fd0),
            "fds_busy_per_session": per(fd_busy, fd0),
        });
        println!("{v}");
    } else {
        println!(
            "{up}/{} sessions logged in in {login_secs:.2} s ({} failed), QD {} each, {} B reads",
            spec.sessions, lp.failed, spec.qd, spec.bs
        );
        println!("aggregate: {iops:.0} IOPS over {elapsed:.1} s ({done_ios} I/Os), latency p50 {p50} us, p99 {p99} us");
        println!(
            "initiator per session: {:.1} KiB RSS idle, {:.1} KiB under load, {:.2} file descriptors",
            per(rss_idle, rss0),
            per(rss_busy, rss0),
            per(fd_idle, fd0)
        );
    }
    Ok(())
}

/// The event loop's state.
struct Loop {
    slots: Vec<Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    events: Events,
    hist: Histogram,
    rng: XorShift,
    done: u64,
    failed: usize,
    spec: Spec,
    lun: Lun,
    blocks: u32,
    block: u32,
    span: u64,
    issuing: bool,
}

impl Loop {
    fn logged_in(&self) -> usize {
        self.slots.iter().filter(|s| s.logged_in).count()
    }

    /// One wait on the `Poll`, then the named clients and the due timers.
    fn turn(&mut self, poll: &mut Poll) -> Result<(), String> {
        let now = Instant::now();
        let timeout = self
            .timers
            .peek()
            .map(|Reverse((d, _))| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e.to_string()),
            Ok(()) => {}
        }
        let mut touched = Vec::new();
        let mut broken = Vec::new();
        for ev in self.events.iter() {
            let i = ev.token().0;
            if let Some(c) = self.slots.get_mut(i).and_then(|s| s.client.as_mut()) {
                if c.handle_event(ev).is_err() {
                    broken.push(i);
                }
                touched.push(i);
            }
        }
        for i in broken {
            self.drop_slot(i);
        }
        for i in touched {
            self.step(i)?;
        }
        let now = Instant::now();
        while let Some(Reverse((d, i))) = self.timers.peek().copied() {
            if d > now {
                break;
            }
            self.timers.pop();
            let Some(s) = self.slots.get_mut(i) else {
                continue;
            };
            if s.armed != Some(d) {
                continue; // stale entry
            }
            s.armed = None;
            if let Some(c) = s.client.as_mut() {
                if c.handle_timeout().is_err() {
                    self.drop_slot(i);
                }
            }
            self.step(i)?;
        }
        if self.timers.len() > 4 * self.slots.len() + 64 {
            let live = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.armed.map(|d| Reverse((d, i))));
            self.timers = live.collect();
        }
        Ok(())
    }

    fn drop_slot(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            if s.client.take().is_some() && !s.logged_in {
                self.failed += 1;
            }
            s.inflight.clear();
        }
    }

    /// Events, completions and new reads of session `i`; re-arms its timer.
    fn step(&mut self, i: usize) -> Result<(), String> {
        let Some(s) = self.slots.get_mut(i) else {
            return Ok(());
        };
        let Some(c) = s.client.as_mut() else {
            return Ok(());
        };
        let mut closed = false;
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::LoggedIn { .. } => s.logged_in = true,
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        let now = Instant::now();
        while let Some((task, t)) = s.inflight.front().copied() {
            let Some(r) = c.take_completed(task) else {
                break;
            };
            s.inflight.pop_front();
            if reply::scsi(r).is_ok_and(|d| d.result.is_good()) {
                self.done += 1;
                self.hist
                    .record(now.saturating_duration_since(t).as_micros() as u64);
            }
        }
        // Completions out of order: look past the head too.
        let mut k = 0;
        while k < s.inflight.len() {
            let Some((task, t)) = s.inflight.get(k).copied() else {
                break;
            };
            match c.take_completed(task) {
                Some(r) => {
                    s.inflight.remove(k);
                    if reply::scsi(r).is_ok_and(|d| d.result.is_good()) {
                        self.done += 1;
                        self.hist
                            .record(now.saturating_duration_since(t).as_micros() as u64);
                    }
                }
                None => k += 1,
            }
        }
        while self.issuing && s.logged_in && !closed && s.inflight.len() < self.spec.qd {
            let lba = (self.rng.next_u64() % self.span) * u64::from(self.blocks);
            let cdb = read16(lba, self.blocks, RwFlags::default());
            let cmd = ScsiCommand::read(self.lun, cdb, self.blocks * self.block);
            match c.execute(cmd) {
                Ok(task) => s.inflight.push_back((task, Instant::now())),
                Err(e) => return Err(format!("session {i}: {e}")),
            }
        }
        if closed || c.is_closed() {
            self.drop_slot(i);
            return Ok(());
        }
        let next = c.poll_timeout();
        if next != s.armed {
            s.armed = next;
            if let Some(d) = next {
                self.timers.push(Reverse((d, i)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for us in [0u64, 1, 63, 64, 65, 100, 1000, 38_000, 1 << 40] {
            let b = Histogram::bucket(us);
            assert!(b >= prev, "{us}");
            prev = b;
            let lo = Histogram::lower(b);
            // The bucket's lower edge is within 1/16 below the value.
            assert!(lo <= us && us - lo <= us / 16, "{us}: {lo}");
        }
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::new();
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert!((96..=99).contains(&h.percentile(99.0)));
    }
}
