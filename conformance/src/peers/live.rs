//! A capture that stays up for many cells: `dumpcap` writes the loopback
//! traffic of some iSCSI ports as a pcap stream to this process, which
//! relays it to one live `tshark` (the independent iSCSI dissector) and,
//! per cell, into a pcap file of its own. Cells are cut out of the stream
//! by sentinel datagrams, so a cell costs two sentinel round trips instead
//! of a tshark start, two sentinel syncs, a stop and two read passes
//! ([`super::Capture`], about 3 s a cell).
//!
//! ```text
//! dumpcap -i lo -P -w - --> relay thread --> tshark -r - -T fields --> frame thread
//!                               |  (sentinels seen here, frame numbers counted)
//!                               +--> <cell>-capture.pcap while a cell runs
//! ```
//!
//! tshark prints one line of fields per frame (`frame.number`, expert
//! severities and messages, iSCSI opcode, DataSegmentLength,
//! DesiredDataLength, digests, login/text keys). A cell's [`LiveReport`]
//! holds the frames between its two sentinels. The relay counts the
//! records it hands to tshark, so the frame number of a sentinel is known
//! without waiting for the dissector, and the end of a cell waits until
//! tshark has printed that frame.

use super::{register_pid, unregister_pid, wait_exit, CaptureReport};
use crate::tools::signal;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What marks a sentinel datagram (followed by an 8-byte token).
const MAGIC: &[u8] = b"ISCSI-CONF-LIVE-SENTINEL";
/// How long a sentinel may take to show up in the relayed stream.
const SYNC_LIMIT: Duration = Duration::from_secs(20);
/// How long tshark may lag behind the relay at the end of a cell.
const DISSECT_LIMIT: Duration = Duration::from_secs(90);
/// Largest pcap record accepted from dumpcap (its snaplen is 262144).
const MAX_RECORD: usize = 1 << 20;
/// `_ws.expert.severity` of an error (PI_ERROR).
const SEVERITY_ERROR: u64 = 0x0080_0000;

/// One frame as the live tshark decoded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFrame {
    /// `frame.number` (1-based position in the relayed stream).
    pub number: u64,
    /// Messages of expert items with severity Error (a malformed packet
    /// is one: "Malformed Packet (Exception occurred)").
    pub expert_errors: Vec<String>,
    /// True when tshark reports a segment missing from the capture
    /// ("Previous segment(s) not captured", "ACKed segment that wasn't
    /// captured").
    pub lost_segment: bool,
    /// `(opcode, DataSegmentLength)` of each iSCSI PDU in the frame
    /// (initiator opcodes without the I bit).
    pub pdus: Vec<(u8, u32)>,
    /// DesiredDataTransferLength of each R2T in the frame.
    pub r2t_desired: Vec<u32>,
    /// Header digests in the frame.
    pub header_digests: usize,
    /// Data digests in the frame.
    pub data_digests: usize,
    /// `key=value` of Login/Text PDUs in the frame.
    pub key_values: Vec<String>,
}

/// Parses one line of the live tshark's `-T fields` output (columns:
/// frame.number, _ws.expert.severity, _ws.expert.message, iscsi.opcode,
/// iscsi.datasegmentlength, iscsi.desireddatalength, iscsi.headerdigest32,
/// iscsi.datadigest32, iscsi.keyvalue; aggregator `|`).
pub fn parse_live_line(line: &str) -> Option<LiveFrame> {
    let cols: Vec<&str> = line.split('\t').collect();
    let col = |i: usize| cols.get(i).copied().unwrap_or("");
    let list = |i: usize| -> Vec<&str> { col(i).split('|').filter(|s| !s.is_empty()).collect() };
    let number = col(0).trim().parse().ok()?;
    let sev = list(1);
    let msgs = list(2);
    let mut f = LiveFrame {
        number,
        ..LiveFrame::default()
    };
    // A segment TCP itself delivered again or out of order (loopback can
    // reorder when the sender moves between CPUs; the receiver's SACK then
    // brings a retransmission): tshark reassembles its bytes twice and
    // reports an overlap "error" that says nothing about the iSCSI stream.
    let tcp_recovered = msgs.iter().any(|m| is_tcp_recovery(m));
    for (i, s) in sev.iter().enumerate() {
        let v = parse_num(s).unwrap_or(0);
        // With a '|' inside a message the lists no longer line up: then
        // the whole message column is reported.
        let msg = if msgs.len() == sev.len() {
            msgs.get(i).copied().unwrap_or("").to_string()
        } else {
            col(2).to_string()
        };
        if v >= SEVERITY_ERROR && !tcp_recovered {
            f.expert_errors.push(msg.clone());
        }
        if msg.contains("not captured") || msg.contains("wasn't captured") {
            f.lost_segment = true;
        }
    }
    let ops: Vec<u8> = list(3)
        .iter()
        .filter_map(|s| parse_num(s).and_then(|v| u8::try_from(v).ok()))
        .collect();
    let dsl: Vec<u32> = list(4)
        .iter()
        .filter_map(|s| parse_num(s).and_then(|v| u32::try_from(v).ok()))
        .collect();
    // Every iSCSI PDU has both fields; should they ever not line up, the
    // lengths are unknown (0) rather than attributed to the wrong PDU.
    let aligned = ops.len() == dsl.len();
    f.pdus = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let len = if aligned {
                dsl.get(i).copied().unwrap_or(0)
            } else {
                0
            };
            (*op, len)
        })
        .collect();
    f.r2t_desired = list(5)
        .iter()
        .filter_map(|s| parse_num(s).and_then(|v| u32::try_from(v).ok()))
        .collect();
    f.header_digests = list(6).len();
    f.data_digests = list(7).len();
    f.key_values = list(8).iter().map(|s| s.to_string()).collect();
    Some(f)
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// What the live dissector saw during one cell.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    /// The same summary a [`super::Capture`] gives (its `problems` are the
    /// expert errors, each as `frame N: message`).
    pub report: CaptureReport,
    /// `(opcode, DataSegmentLength)` of every iSCSI PDU, in order.
    pub pdus: Vec<(u8, u32)>,
    /// Sum of the DesiredDataTransferLength of every R2T.
    pub r2t_desired: u64,
    /// Frames with a segment missing from the capture before them.
    pub lost_segments: usize,
    /// Frames in the cell's window.
    pub frames: usize,
    /// `key=value` of the frames that carry a Login or Text Response
    /// (and no request): what the target answered.
    pub response_keys: Vec<String>,
}

impl LiveReport {
    /// Builds the report of a cell from its frames.
    pub fn from_frames(frames: &[LiveFrame], pcap: PathBuf) -> LiveReport {
        let mut r = LiveReport {
            frames: frames.len(),
            ..LiveReport::default()
        };
        r.report.pcap = pcap;
        for f in frames {
            for e in &f.expert_errors {
                r.report.problems.push(format!("frame {}: {e}", f.number));
            }
            if f.lost_segment {
                r.lost_segments += 1;
            }
            r.pdus.extend(f.pdus.iter().copied());
            r.report.opcodes.extend(f.pdus.iter().map(|(op, _)| *op));
            r.r2t_desired += f.r2t_desired.iter().map(|v| u64::from(*v)).sum::<u64>();
            if f.header_digests > 0 {
                r.report.header_digest_frames += 1;
            }
            if f.data_digests > 0 {
                r.report.data_digest_frames += 1;
            }
            r.report.key_values.extend(f.key_values.iter().cloned());
            let has = |ops: [u8; 2]| f.pdus.iter().any(|(o, _)| ops.contains(o));
            if has([0x23, 0x24]) && !has([0x03, 0x04]) {
                r.response_keys.extend(f.key_values.iter().cloned());
            }
        }
        r.report.iscsi_pdus = r.report.opcodes.len();
        r
    }

    /// Sum of the DataSegmentLength of every PDU with opcode `op`.
    pub fn data_bytes(&self, op: u8) -> u64 {
        self.pdus
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, l)| u64::from(*l))
            .sum()
    }

    /// Number of PDUs with opcode `op` and a non-empty data segment.
    pub fn count_with_data(&self, op: u8) -> usize {
        self.pdus.iter().filter(|(o, l)| *o == op && *l > 0).count()
    }
}

/// The start of a cell's window (see [`LiveCapture::begin`]).
#[derive(Debug)]
pub struct Window {
    start: u64,
    pcap: PathBuf,
}

impl Window {
    /// The cell's pcap file.
    pub fn pcap(&self) -> &Path {
        &self.pcap
    }
}

struct Recorder {
    file: BufWriter<File>,
}

#[derive(Default)]
struct RelayState {
    /// Pcap global header of the stream (written to each cell file).
    header: Vec<u8>,
    /// Records relayed so far.
    relayed: u64,
    /// Frame number of the first sentinel of each token.
    seen: HashMap<u64, u64>,
    recording: Option<Recorder>,
    error: Option<String>,
    done: bool,
}

#[derive(Default)]
struct FrameState {
    frames: Vec<LiveFrame>,
    /// Frames below this number are dropped (`u64::MAX`: between cells).
    keep_from: u64,
    /// Highest frame number tshark printed.
    last: u64,
    done: bool,
}

type Shared<T> = Arc<(Mutex<T>, Condvar)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running dumpcap + relay + live tshark on `lo` for some TCP ports;
/// stopped in `Drop`.
pub struct LiveCapture {
    dumpcap: Child,
    tshark: Child,
    sentinel: UdpSocket,
    sentinel_to: SocketAddr,
    relay: Shared<RelayState>,
    frames: Shared<FrameState>,
    next_token: AtomicU64,
    log: PathBuf,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("dumpcap", &self.dumpcap.id())
            .field("tshark", &self.tshark.id())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Starts capturing TCP `ports` (each decoded as iSCSI) on `lo`;
    /// dumpcap's and tshark's stderr go to `log`. Returns once a sentinel
    /// went through the relay.
    pub fn start(ports: &[u16], log: PathBuf) -> Result<LiveCapture, String> {
        if ports.is_empty() {
            return Err("LiveCapture::start: no port".into());
        }
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        let sentinel =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind sentinel: {e}"))?;
        let sentinel_to = sentinel
            .local_addr()
            .map_err(|e| format!("sentinel addr: {e}"))?;
        let mut filter: Vec<String> = ports.iter().map(|p| format!("tcp port {p}")).collect();
        filter.push(format!("udp port {}", sentinel_to.port()));
        let logf = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let logf2 = logf.try_clone().map_err(|e| format!("dup log: {e}"))?;
        // -B 64: a 64 MiB kernel buffer (the default 2 MiB loses segments
        // of MiB bursts on loopback); -P: pcap, not pcapng, on stdout.
        let mut dumpcap = Command::new("dumpcap")
            .args(["-i", "lo", "-B", "64", "-P", "-q", "-f"])
            .arg(filter.join(" or "))
            .args(["-w", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot spawn dumpcap: {e}"))?;
        register_pid(dumpcap.id());
        let mut args: Vec<String> = ["-r", "-", "-n", "-l", "-T", "fields"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for p in ports {
            args.push("-d".into());
            args.push(format!("tcp.port=={p},iscsi"));
        }
        for e in ["separator=/t", "aggregator=|", "occurrence=a", "quote=n"] {
            args.push("-E".into());
            args.push(e.into());
        }
        for f in [
            "frame.number",
            "_ws.expert.severity",
            "_ws.expert.message",
            "iscsi.opcode",
            "iscsi.datasegmentlength",
            "iscsi.desireddatalength",
            "iscsi.headerdigest32",
            "iscsi.datadigest32",
            "iscsi.keyvalue",
        ] {
            args.push("-e".into());
            args.push(f.into());
        }
        let tshark = Command::new("tshark")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(logf2)
            .spawn();
        let mut tshark = match tshark {
            Ok(t) => t,
            Err(e) => {
                let _ = dumpcap.kill();
                let _ = dumpcap.wait();
                unregister_pid(dumpcap.id());
                return Err(format!("cannot spawn tshark: {e}"));
            }
        };
        register_pid(tshark.id());
        let relay: Shared<RelayState> =
            Arc::new((Mutex::new(RelayState::default()), Condvar::new()));
        let frames: Shared<FrameState> = Arc::new((
            Mutex::new(FrameState {
                keep_from: u64::MAX,
                ..FrameState::default()
            }),
            Condvar::new(),
        ));
        let mut threads = Vec::new();
        if let (Some(out), Some(tin)) = (dumpcap.stdout.take(), tshark.stdin.take()) {
            let r = Arc::clone(&relay);
            let port = sentinel_to.port();
            threads.push(std::thread::spawn(move || relay_loop(out, tin, port, &r)));
        }
        if let Some(out) = tshark.stdout.take() {
            let f = Arc::clone(&frames);
            threads.push(std::thread::spawn(move || frame_loop(out, &f)));
        }
        let cap = LiveCapture {
            dumpcap,
            tshark,
            sentinel,
            sentinel_to,
            relay,
            frames,
            next_token: AtomicU64::new(1),
            log,
            threads,
        };
        cap.sync()?;
        Ok(cap)
    }

    /// Sends sentinel datagrams (one token) until the relay has seen one;
    /// returns its frame number.
    fn sync(&self) -> Result<u64, String> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut msg = MAGIC.to_vec();
        msg.extend_from_slice(&token.to_le_bytes());
        let deadline = Instant::now() + SYNC_LIMIT;
        let (m, cv) = &*self.relay;
        let mut st = lock(m);
        loop {
            if let Some(f) = st.seen.remove(&token) {
                return Ok(f);
            }
            if let Some(e) = &st.error {
                return Err(format!("capture relay: {e}; {}", self.log_tail()));
            }
            if st.done {
                return Err(format!("dumpcap stopped; {}", self.log_tail()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no sentinel through the capture within {SYNC_LIMIT:?}; {}",
                    self.log_tail()
                ));
            }
            let _ = self.sentinel.send_to(&msg, self.sentinel_to);
            st = cv
                .wait_timeout(st, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Starts a cell's window: from now on the relayed frames also go to
    /// `pcap`, and the frames after the start sentinel are kept for
    /// [`LiveCapture::end`].
    pub fn begin(&self, pcap: PathBuf) -> Result<Window, String> {
        if let Some(dir) = pcap.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        let relayed = {
            let (m, _) = &*self.relay;
            let mut st = lock(m);
            let mut file = BufWriter::new(
                File::create(&pcap).map_err(|e| format!("create {}: {e}", pcap.display()))?,
            );
            file.write_all(&st.header)
                .map_err(|e| format!("write {}: {e}", pcap.display()))?;
            st.recording = Some(Recorder { file });
            st.relayed
        };
        {
            let (m, _) = &*self.frames;
            let mut fs = lock(m);
            fs.frames.clear();
            fs.keep_from = relayed.saturating_add(1);
        }
        let start = match self.sync() {
            Ok(s) => s,
            Err(e) => {
                let (m, _) = &*self.relay;
                drop(lock(m).recording.take());
                return Err(e);
            }
        };
        {
            let (m, _) = &*self.frames;
            let mut fs = lock(m);
            fs.frames.retain(|f| f.number > start);
            fs.keep_from = start.saturating_add(1);
        }
        Ok(Window { start, pcap })
    }

    /// Ends a cell's window: waits until everything sent so far went
    /// through the relay and the dissector, closes the cell's pcap and
    /// returns what tshark saw in between.
    pub fn end(&self, w: Window) -> Result<LiveReport, String> {
        let synced = self.sync();
        // One more datagram behind the end sentinel, so no reader can be
        // holding the sentinel back waiting for more input.
        let _ = self.sentinel.send_to(b"pad", self.sentinel_to);
        {
            let (m, _) = &*self.relay;
            let mut st = lock(m);
            if let Some(mut r) = st.recording.take() {
                let _ = r.file.flush();
            }
        }
        let end = synced?;
        let (m, cv) = &*self.frames;
        let deadline = Instant::now() + DISSECT_LIMIT;
        let mut fs = lock(m);
        while fs.last < end {
            if fs.done {
                return Err(format!(
                    "tshark stopped at frame {} of {end}; {}",
                    fs.last,
                    self.log_tail()
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "tshark still at frame {} of {end} after {DISSECT_LIMIT:?}",
                    fs.last
                ));
            }
            fs = cv
                .wait_timeout(fs, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let frames: Vec<LiveFrame> = fs
            .frames
            .drain(..)
            .filter(|f| f.number > w.start && f.number < end)
            .collect();
        fs.keep_from = u64::MAX;
        drop(fs);
        Ok(LiveReport::from_frames(&frames, w.pcap))
    }

    fn log_tail(&self) -> String {
        format!("capture log: {}", super::log_tail(&self.log, 4))
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // dumpcap ends on SIGINT, the relay then sees EOF and closes
        // tshark's input, and tshark ends.
        signal(self.dumpcap.id(), "INT");
        if !wait_exit(&mut self.dumpcap, Duration::from_secs(5)) {
            let _ = self.dumpcap.kill();
            let _ = self.dumpcap.wait();
        }
        unregister_pid(self.dumpcap.id());
        if !wait_exit(&mut self.tshark, Duration::from_secs(10)) {
            let _ = self.tshark.kill();
            let _ = self.tshark.wait();
        }
        unregister_pid(self.tshark.id());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Byte order of a pcap stream, from its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

fn u32_at(b: &[u8], at: usize, e: Endian) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u32::from_le_bytes(s),
        Endian::Big => u32::from_be_bytes(s),
    })
}

/// The pcap global header: byte order and link type.
fn parse_global_header(h: &[u8]) -> Option<(Endian, u32)> {
    let magic = h.get(0..4)?;
    let e = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => Endian::Little,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => Endian::Big,
        _ => return None,
    };
    Some((e, u32_at(h, 20, e)?))
}

/// The token of a sentinel datagram to UDP `port` in one captured frame
/// of link type `linktype` (1 Ethernet, 113 Linux cooked), if it is one.
pub fn sentinel_token(frame: &[u8], linktype: u32, port: u16) -> Option<u64> {
    let (l2, ethertype_at) = match linktype {
        1 => (14, 12),
        113 => (16, 14),
        _ => return None,
    };
    if frame.get(ethertype_at..ethertype_at + 2)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(l2..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let dport = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    if dport != port {
        return None;
    }
    let payload = udp.get(8..)?;
    let rest = payload.strip_prefix(MAGIC)?;
    Some(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?))
}

fn relay_loop(
    mut from: impl Read,
    to: ChildStdin,
    port: u16,
    shared: &(Mutex<RelayState>, Condvar),
) {
    let (m, cv) = shared;
    let fail = |e: String| {
        let mut st = lock(m);
        st.error.get_or_insert(e);
        st.done = true;
        cv.notify_all();
    };
    let mut to = Some(to);
    let mut header = [0u8; 24];
    if let Err(e) = from.read_exact(&mut header) {
        return fail(format!("no pcap header from dumpcap: {e}"));
    }
    let Some((endian, linktype)) = parse_global_header(&header) else {
        return fail(format!("not a pcap stream: {:02x?}", &header[..4]));
    };
    if let Some(t) = to.as_mut() {
        if t.write_all(&header).and_then(|_| t.flush()).is_err() {
            to = None;
        }
    }
    lock(m).header = header.to_vec();
    let mut rec = [0u8; 16];
    let mut data = Vec::new();
    loop {
        if from.read_exact(&mut rec).is_err() {
            break;
        }
        let Some(len) = u32_at(&rec, 8, endian) else {
            break;
        };
        let len = len as usize;
        if len > MAX_RECORD {
            return fail(format!("pcap record of {len} bytes"));
        }
        data.resize(len, 0);
        if from.read_exact(&mut data).is_err() {
            break;
        }
        if let Some(t) = to.as_mut() {
            let ok = t
                .write_all(&rec)
                .and_then(|_| t.write_all(&data))
                .and_then(|_| t.flush());
            if ok.is_err() {
                // tshark is gone: keep draining dumpcap; the frame thread
                // reports the stop.
                to = None;
            }
        }
        let token = sentinel_token(&data, linktype, port);
        let mut st = lock(m);
        st.relayed += 1;
        let n = st.relayed;
        if let Some(r) = st.recording.as_mut() {
            let _ = r.file.write_all(&rec).and_then(|_| r.file.write_all(&data));
        }
        if let Some(t) = token {
            st.seen.entry(t).or_insert(n);
            cv.notify_all();
        }
    }
    drop(to);
    let mut st = lock(m);
    st.done = true;
    cv.notify_all();
}

fn frame_loop(out: impl Read, shared: &(Mutex<FrameState>, Condvar)) {
    let (m, cv) = shared;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let Some(f) = parse_live_line(&line) else {
            continue;
        };
        let mut fs = lock(m);
        fs.last = fs.last.max(f.number);
        if f.number >= fs.keep_from {
            fs.frames.push(f);
        }
        cv.notify_all();
    }
    let mut fs = lock(m);
    fs.done = true;
    cv.notify_all();
}

/// Whether an expert message is TCP's own analysis of a reordered or
/// retransmitted segment.
pub fn is_tcp_recovery(msg: &str) -> bool {
    [
        "(suspected) out-of-order segment",
        "(suspected) retransmission",
        "(suspected) spurious retransmission",
        "(suspected) fast retransmission",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_live_line_fields() {
        let l = "17\t4194304|8388608\tSome note|Malformed Packet (Exception occurred)\t0x01|0x05\t8192|57344\t\t0x1|0x2\t0x3\tA=B|C=D";
        let f = parse_live_line(l).unwrap();
        assert_eq!(f.number, 17);
        assert_eq!(
            f.expert_errors,
            vec!["Malformed Packet (Exception occurred)".to_string()]
        );
        assert!(!f.lost_segment);
        assert_eq!(f.pdus, vec![(0x01, 8192), (0x05, 57344)]);
        assert_eq!(f.header_digests, 2);
        assert_eq!(f.data_digests, 1);
        assert_eq!(f.key_values, vec!["A=B", "C=D"]);
        let g = parse_live_line(
            "3\t6291456\tPrevious segment(s) not captured (common at capture start)\t0x31\t0\t65536",
        )
        .unwrap();
        assert!(g.lost_segment);
        assert!(g.expert_errors.is_empty());
        assert_eq!(g.r2t_desired, vec![65536]);
        assert!(parse_live_line("").is_none());
        assert!(parse_live_line("x\t").is_none());
        // A reordered segment's reassembly overlap is TCP's, not ours; the
        // same error without TCP's out-of-order flag still counts.
        let o = parse_live_line("85\t4194304|8388608\tThis frame is a (suspected) out-of-order segment|New fragment overlaps old data (retransmission?)\t\t").unwrap();
        assert!(o.expert_errors.is_empty());
        let m =
            parse_live_line("86\t8388608\tNew fragment overlaps old data (retransmission?)\t\t")
                .unwrap();
        assert_eq!(m.expert_errors.len(), 1);
        // Opcodes and lengths that do not line up are not paired.
        let h = parse_live_line("4\t\t\t0x01|0x05\t100").unwrap();
        assert_eq!(h.pdus, vec![(0x01, 0), (0x05, 0)]);
    }

    #[test]
    fn report_sums() {
        let frames = vec![
            parse_live_line("5\t\t\t0x01\t8192\t\t0x1\t0x2").unwrap(),
            parse_live_line("6\t\t\t0x31|0x31\t0|0\t4096|4096").unwrap(),
            parse_live_line("7\t8388608\tbad\t0x05|0x05\t4096|4096").unwrap(),
        ];
        let r = LiveReport::from_frames(&frames, PathBuf::from("x.pcap"));
        assert_eq!(r.frames, 3);
        assert_eq!(r.data_bytes(0x01), 8192);
        assert_eq!(r.data_bytes(0x05), 8192);
        assert_eq!(r.r2t_desired, 8192);
        assert_eq!(r.count_with_data(0x01), 1);
        assert_eq!(r.report.iscsi_pdus, 5);
        assert_eq!(r.report.header_digest_frames, 1);
        assert_eq!(r.report.problems, vec!["frame 7: bad".to_string()]);
        assert!(r.response_keys.is_empty());
        assert!(r.report.check_clean().is_err());
        let login = vec![
            parse_live_line("1\t\t\t0x03\t20\t\t\t\tInitialR2T=No").unwrap(),
            parse_live_line("2\t\t\t0x23\t20\t\t\t\tInitialR2T=Yes").unwrap(),
        ];
        let r = LiveReport::from_frames(&login, PathBuf::from("x.pcap"));
        assert_eq!(r.response_keys, vec!["InitialR2T=Yes".to_string()]);
        assert!(r.report.has_key_value("InitialR2T=No"));
        assert!(r.report.check_clean().is_ok());
    }

    fn udp_frame(port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let len = (8 + payload.len()) as u16;
        ip.extend_from_slice(&1234u16.to_be_bytes());
        ip.extend_from_slice(&port.to_be_bytes());
        ip.extend_from_slice(&len.to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn sentinel_tokens_are_found_only_on_their_port() {
        let mut p = MAGIC.to_vec();
        p.extend_from_slice(&42u64.to_le_bytes());
        assert_eq!(sentinel_token(&udp_frame(5000, &p), 1, 5000), Some(42));
        assert_eq!(sentinel_token(&udp_frame(5001, &p), 1, 5000), None);
        assert_eq!(sentinel_token(&udp_frame(5000, b"pad"), 1, 5000), None);
        assert_eq!(sentinel_token(&udp_frame(5000, &p), 228, 5000), None);
        let cut = udp_frame(5000, &p);
        for n in 0..cut.len() {
            let _ = sentinel_token(&cut[..n], 1, 5000);
        }
        assert_eq!(sentinel_token(&[], 1, 5000), None);
    }

    #[test]
    fn global_header_byte_orders() {
        let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1];
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse_global_header(&h), Some((Endian::Little, 1)));
        assert_eq!(parse_global_header(&h[..10]), None);
        assert_eq!(parse_global_header(&[0u8; 24]), None);
    }
}
