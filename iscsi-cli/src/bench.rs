//! The benchmark engine behind `iscsi bench` and `iscsi demo`: keeps a fixed
//! number of commands in flight on one session for a fixed time, with a live
//! progress line, and reports IOPS, MB/s, latency percentiles and initiator
//! CPU time per I/O.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use iscsi_proto::initiator::{ScsiCommand, TaskOutcome};
use iscsi_proto::scsi::cdb::{self, RwFlags};

use crate::driver::{Session, Tag};

/// Access pattern.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Random reads.
    Randread,
    /// Sequential reads.
    Seqread,
    /// Random writes.
    Randwrite,
    /// Sequential writes.
    Seqwrite,
}

impl Pattern {
    fn is_write(self) -> bool {
        matches!(self, Pattern::Randwrite | Pattern::Seqwrite)
    }
    fn is_random(self) -> bool {
        matches!(self, Pattern::Randread | Pattern::Randwrite)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Commands kept in flight.
    pub qd: usize,
    /// Bytes per command (a multiple of the block size).
    pub bs: u32,
    /// How long to run.
    pub duration: Duration,
    /// Access pattern.
    pub pattern: Pattern,
    /// Wire LUN.
    pub lun: u64,
    /// Logical block size of the LUN.
    pub block_size: u32,
    /// Number of blocks of the LUN.
    pub num_blocks: u64,
    /// Print a live progress line on stderr.
    pub progress: bool,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Commands completed.
    pub ios: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency of every command, microseconds, sorted.
    pub lat_us: Vec<u32>,
    /// Process CPU seconds (user + system) spent during the run.
    pub cpu_secs: f64,
    /// Commands completed in each second of the run.
    pub per_second: Vec<u64>,
    /// Latency percentiles of the commands completed in each second of the
    /// run (same length as `per_second`).
    pub latency_per_second: Vec<LatencySecond>,
    /// Process counters over the run (Linux `/proc/self`), when readable.
    pub counters: Option<Counters>,
}

/// Latency of the commands completed within one second of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySecond {
    /// Median, microseconds.
    pub p50_us: u32,
    /// 99th percentile, microseconds.
    pub p99_us: u32,
}

impl LatencySecond {
    /// The percentiles of `samples` (sorted in place).
    fn of(samples: &mut [u32]) -> LatencySecond {
        samples.sort_unstable();
        LatencySecond {
            p50_us: percentile_of(samples, 50.0),
            p99_us: percentile_of(samples, 99.0),
        }
    }
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100); 0 if empty.
fn percentile_of(sorted: &[u32], p: f64) -> u32 {
    let last = sorted.len().saturating_sub(1);
    let i = ((p / 100.0) * last as f64).round() as usize;
    sorted.get(i.min(last)).copied().unwrap_or(0)
}

/// Process counters from `/proc/self/io` and `/proc/self/status`: system
/// calls that read or write and context switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Read system calls (`syscr`: read, readv...; not recv).
    pub read_calls: u64,
    /// Write system calls (`syscw`: write, writev...).
    pub write_calls: u64,
    /// Voluntary context switches (blocking waits).
    pub voluntary_switches: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary_switches: u64,
}

impl Counters {
    /// The counters of this process now.
    pub fn now() -> Option<Counters> {
        let io = std::fs::read_to_string("/proc/self/io").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Counters::parse(&io, &status)
    }

    fn parse(io: &str, status: &str) -> Option<Counters> {
        let field = |text: &str, key: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(Counters {
            read_calls: field(io, "syscr:")?,
            write_calls: field(io, "syscw:")?,
            voluntary_switches: field(status, "voluntary_ctxt_switches:")?,
            involuntary_switches: field(status, "nonvoluntary_ctxt_switches:")?,
        })
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            read_calls: self.read_calls.saturating_sub(before.read_calls),
            write_calls: self.write_calls.saturating_sub(before.write_calls),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(before.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(before.involuntary_switches),
        }
    }
}

impl Report {
    /// I/Os per second.
    pub fn iops(&self) -> f64 {
        self.ios as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Megabytes (10^6 bytes) per second.
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency percentile in microseconds (`p` in 0..=100).
    pub fn percentile(&self, p: f64) -> u32 {
        percentile_of(&self.lat_us, p)
    }
    /// Initiator CPU microseconds per I/O.
    pub fn cpu_us_per_io(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.ios.max(1) as f64)
    }
    /// The report as one JSON object (the keys of [`JsonReport`]).
    pub fn to_json(&self) -> String {
        self.to_json_with(SessionInfo::default())
    }

    /// [`Report::to_json`] with what the session ran with.
    pub fn to_json_with(&self, session: SessionInfo) -> String {
        let per_io = |n: u64| round_to(n as f64 / self.ios.max(1) as f64, 3);
        let json = JsonReport {
            iops: self.iops().round(),
            mbps: round_to(self.mbps(), 1),
            lat_p50_us: self.percentile(50.0),
            lat_p99_us: self.percentile(99.0),
            lat_p999_us: self.percentile(99.9),
            cpu_us_per_io: round_to(self.cpu_us_per_io(), 2),
            ios: self.ios,
            seconds: round_to(self.elapsed.as_secs_f64(), 3),
            writes_per_io: self.counters.map(|c| per_io(c.write_calls)),
            switches_per_io: self.counters.map(|c| per_io(c.voluntary_switches)),
            preemptions_per_io: self.counters.map(|c| per_io(c.involuntary_switches)),
            erl: session.erl,
            connections: session.connections,
            stats: session.stats.as_ref().map(stats_json),
        };
        // Plain numbers and options only: serialization cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
    /// A human summary.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} IOPS, {:.1} MB/s, latency p50 {} us, p99 {} us, p99.9 {} us, {:.2} us CPU per I/O ({} I/Os in {:.1} s)",
            self.iops(),
            self.mbps(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(99.9),
            self.cpu_us_per_io(),
            self.ios,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What `iscsi bench --json` prints: one object per run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JsonReport {
    /// I/Os per second.
    pub iops: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mbps: f64,
    /// Median latency, microseconds.
    pub lat_p50_us: u32,
    /// 99th percentile latency, microseconds.
    pub lat_p99_us: u32,
    /// 99.9th percentile latency, microseconds.
    pub lat_p999_us: u32,
    /// Initiator CPU (user + system) microseconds per I/O.
    pub cpu_us_per_io: f64,
    /// I/Os completed.
    pub ios: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// `write`-family system calls per I/O (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_io: Option<f64>,
    /// Voluntary context switches per I/O (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switches_per_io: Option<f64>,
    /// Involuntary context switches per I/O (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemptions_per_io: Option<f64>,
    /// The negotiated ErrorRecoveryLevel (absent where the driver does not
    /// expose the session: smol, tokio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erl: Option<u8>,
    /// Connections of the session in the Full Feature Phase at the end of
    /// the run (absent where the driver does not expose the session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// The session's own counters and latency summaries
    /// ([`iscsi_proto::stats`]; absent where the driver does not expose
    /// the session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
}

/// What a session ran with, for [`Report::to_json_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The negotiated ErrorRecoveryLevel.
    pub erl: Option<u8>,
    /// Connections in the Full Feature Phase.
    pub connections: Option<usize>,
    /// What the session counted (`Session::stats`; absent where the
    /// driver does not expose the session).
    pub stats: Option<iscsi_proto::stats::SessionStats>,
}

/// The session's counters as one JSON object: every counter under its
/// metrics name, and the command and NOP latency summaries.
fn stats_json(s: &iscsi_proto::stats::SessionStats) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (name, _help, value) in s.counters() {
        m.insert(name.to_string(), value.into());
    }
    for (prefix, h) in [
        ("command_latency", &s.command_latency),
        ("nop_latency", &s.nop_latency),
    ] {
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        m.insert(format!("{prefix}_count"), h.count().into());
        m.insert(format!("{prefix}_mean_us"), us(h.mean()).into());
        m.insert(format!("{prefix}_p99_us"), us(h.percentile(99.0)).into());
        m.insert(format!("{prefix}_max_us"), us(h.max()).into());
    }
    serde_json::Value::Object(m)
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
pub fn process_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu_secs(&stat))
        .unwrap_or(0.0)
}

/// utime + stime of a `/proc/PID/stat` line, in seconds (100 ticks/s).
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after the last ')'. utime and stime are fields
    // 14 and 15, i.e. indexes 11 and 12 counting from the state (field 3).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime = f.get(11)?.parse::<f64>().ok()?;
    let stime = f.get(12)?.parse::<f64>().ok()?;
    Some((utime + stime) / 100.0)
}

/// A small xorshift generator for LBAs and payloads (not cryptographic).
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Runs the benchmark on a logged-in session.
pub fn run(client: &mut Session, spec: &Spec) -> Result<Report, String> {
    let blocks_per_io = u64::from(spec.bs / spec.block_size.max(1)).max(1);
    if spec.bs == 0 || spec.bs % spec.block_size != 0 {
        return Err(format!(
            "block size {} is not a multiple of the LUN's {}",
            spec.bs, spec.block_size
        ));
    }
    let slots = spec.num_blocks / blocks_per_io;
    if slots == 0 {
        return Err("the LUN is smaller than one I/O".into());
    }
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ spec.qd as u64);
    let payload = Bytes::from(rng.bytes(spec.bs as usize));
    let mut next_seq = 0u64;
    let mut make = |rng: &mut XorShift| -> ScsiCommand {
        let slot = if spec.pattern.is_random() {
            rng.next_u64() % slots
        } else {
            let s = next_seq % slots;
            next_seq += 1;
            s
        };
        let lba = slot * blocks_per_io;
        if spec.pattern.is_write() {
            let cdb = cdb::write16(lba, blocks_per_io as u32, RwFlags::default());
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::from_u64(spec.lun),
                cdb,
                payload.clone(),
            )
        } else {
            let cdb = cdb::read16(lba, blocks_per_io as u32, RwFlags::default());
            ScsiCommand::read(iscsi_proto::scsi::Lun::from_u64(spec.lun), cdb, spec.bs)
        }
    };
    // Submit times of the commands in flight: a short list searched from
    // the front (the oldest command usually completes first), no hashing.
    let mut in_flight: Vec<(Tag, Instant)> = Vec::with_capacity(spec.qd);
    let mut lat_us = Vec::with_capacity(1 << 16);
    let mut per_second = Vec::new();
    let mut latency_per_second = Vec::new();
    let mut this_second: Vec<u32> = Vec::with_capacity(1 << 12);
    let counters0 = Counters::now();
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let end = start + spec.duration;
    let mut next_tick = start + Duration::from_secs(1);
    let mut ios_at_tick = 0u64;
    let mut ios = 0u64;
    for _ in 0..spec.qd {
        let task = client.submit(make(&mut rng))?;
        in_flight.push((task, Instant::now()));
    }
    while !in_flight.is_empty() {
        let (task, outcome, _data) = client.wait_any()?;
        let now = Instant::now();
        let Some(i) = in_flight.iter().position(|f| f.0 == task) else {
            continue;
        };
        // `remove`, not `swap_remove`: keeps the list in submission order.
        let (_, t0) = in_flight.remove(i);
        match outcome {
            TaskOutcome::Scsi(r) if r.is_good() => {}
            TaskOutcome::Scsi(r) => {
                return Err(format!(
                    "I/O failed with status {:#04x}{}",
                    r.status,
                    r.sense_data.map(|s| format!(": {s}")).unwrap_or_default()
                ))
            }
            other => return Err(format!("I/O failed: {other:?}")),
        }
        ios += 1;
        let lat = now.duration_since(t0).as_micros().min(u128::from(u32::MAX)) as u32;
        lat_us.push(lat);
        this_second.push(lat);
        if now >= next_tick {
            per_second.push(ios - ios_at_tick);
            latency_per_second.push(LatencySecond::of(&mut this_second));
            this_second.clear();
            ios_at_tick = ios;
            next_tick += Duration::from_secs(1);
            if spec.progress {
                let secs = now.duration_since(start).as_secs_f64();
                let last = *per_second.last().unwrap_or(&0);
                eprint!(
                    "\r  {:>4.0}s  {:>9} IOPS  {:>9.1} MB/s  in flight {:>3}   ",
                    secs,
                    last,
                    last as f64 * f64::from(spec.bs) / 1e6,
                    in_flight.len() + 1
                );
                let _ = std::io::stderr().flush();
            }
        }
        if now < end {
            // The completion's clock reading doubles as the submit time:
            // one clock read per I/O.
            let task = client.submit(make(&mut rng))?;
            in_flight.push((task, now));
        }
    }
    let elapsed = start.elapsed();
    let cpu_secs = process_cpu_secs() - cpu0;
    let counters = match (Counters::now(), counters0) {
        (Some(after), Some(before)) => Some(after.since(before)),
        _ => None,
    };
    if spec.progress {
        eprintln!();
    }
    lat_us.sort_unstable();
    Ok(Report {
        ios,
        bytes: ios * u64::from(spec.bs),
        elapsed,
        lat_us,
        cpu_secs,
        per_second,
        latency_per_second,
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_erl_and_the_connections_when_known() {
        let r = report();
        assert!(!r.to_json().contains("\"erl\""));
        let j = r.to_json_with(SessionInfo {
            erl: Some(2),
            connections: Some(4),
            stats: None,
        });
        assert!(j.contains("\"erl\":2"), "{j}");
        assert!(j.contains("\"connections\":4"), "{j}");
        assert!(!j.contains("\"stats\""), "{j}");
    }

    #[test]
    fn json_carries_the_session_counters_when_known() {
        let mut stats = iscsi_proto::stats::SessionStats::default();
        stats.retries = 3;
        stats
            .command_latency
            .record(std::time::Duration::from_micros(100));
        let j = report().to_json_with(SessionInfo {
            stats: Some(stats),
            ..SessionInfo::default()
        });
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["stats"]["iscsi_retries_total"], 3);
        assert_eq!(v["stats"]["command_latency_count"], 1);
        assert_eq!(v["stats"]["command_latency_max_us"], 100);
    }

    fn report() -> Report {
        Report {
            ios: 1000,
            bytes: 4_096_000,
            elapsed: Duration::from_secs(2),
            lat_us: (1..=1000).collect(),
            cpu_secs: 0.005,
            per_second: vec![500, 500],
            latency_per_second: vec![
                LatencySecond {
                    p50_us: 250,
                    p99_us: 495,
                },
                LatencySecond {
                    p50_us: 750,
                    p99_us: 995,
                },
            ],
            counters: Some(Counters {
                read_calls: 100,
                write_calls: 50,
                voluntary_switches: 10,
                involuntary_switches: 0,
            }),
        }
    }

    #[test]
    fn figures() {
        let r = report();
        assert_eq!(r.iops().round(), 500.0);
        assert!((r.mbps() - 2.048).abs() < 1e-9);
        assert_eq!(r.percentile(50.0), 501);
        assert_eq!(r.percentile(99.0), 990);
        assert!((r.cpu_us_per_io() - 5.0).abs() < 1e-9);
        let j = r.to_json();
        for key in [
            "\"iops\":",
            "\"mbps\":",
            "\"lat_p50_us\":",
            "\"lat_p99_us\":",
            "\"cpu_us_per_io\":",
            "\"writes_per_io\":0.05",
        ] {
            assert!(j.contains(key), "{j}");
        }
    }

    #[test]
    fn json_is_json() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["iops"], 500.0);
        assert_eq!(v["lat_p50_us"], 501);
        assert_eq!(v["writes_per_io"], 0.05);
        let mut r = report();
        r.counters = None;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v.get("writes_per_io").is_none());
    }

    #[test]
    fn per_second_percentiles() {
        let mut s = vec![5, 1, 4, 2, 3];
        assert_eq!(
            LatencySecond::of(&mut s),
            LatencySecond {
                p50_us: 3,
                p99_us: 5
            }
        );
        assert_eq!(LatencySecond::of(&mut []), LatencySecond::default());
    }

    #[test]
    fn cpu_time_parsed_from_proc_stat() {
        let line = "4242 (a (weird) name) R 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(stat_cpu_secs(line), Some(3.25));
        assert_eq!(stat_cpu_secs("4242 (x) R 1 2"), None);
        assert_eq!(stat_cpu_secs("garbage"), None);
        // This machine's own file parses.
        assert!(stat_cpu_secs(&std::fs::read_to_string("/proc/self/stat").unwrap()).is_some());
    }

    #[test]
    fn counters_parsed_from_proc() {
        let io = "rchar: 1\nwchar: 2\nsyscr: 30\nsyscw: 40\nread_bytes: 0\n";
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t6\n";
        let c = Counters::parse(io, status).unwrap();
        assert_eq!((c.read_calls, c.write_calls), (30, 40));
        assert_eq!((c.voluntary_switches, c.involuntary_switches), (5, 6));
        assert_eq!(Counters::parse("syscr: 1\n", status), None);
        let later = Counters {
            read_calls: 31,
            ..c
        };
        assert_eq!(later.since(c).read_calls, 1);
        assert!(Counters::now().is_some());
    }
}
