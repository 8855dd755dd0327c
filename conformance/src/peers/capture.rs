//! A tshark capture of one loopback port, and its analysis.
//!
//! "Capturing on 'Loopback: lo'" on tshark's stderr does not mean packets are
//! already flowing into the file: runs here lost whole (2 ms) sessions that
//! started right after it. So [`Capture::start`] also captures a private UDP
//! sentinel port, sends itself datagrams until tshark prints one (`-P -l`),
//! and [`Capture::stop`] does the same again before SIGINT, so everything
//! sent in between is known to be in the file.

use super::{register_pid, unregister_pid, wait_exit};
use crate::tools::{run, signal};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running `tshark -i lo -f 'tcp port P or udp port Q' -w FILE`.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    port: u16,
    pcap: PathBuf,
    stderr_log: PathBuf,
    sentinel: UdpSocket,
    lines: Receiver<String>,
    sentinels_seen: usize,
}

/// What a capture contained.
#[derive(Debug, Clone, Default)]
pub struct CaptureReport {
    /// The pcap file.
    pub pcap: PathBuf,
    /// Number of iSCSI PDUs tshark decoded (several may share a frame).
    pub iscsi_pdus: usize,
    /// Opcode of every decoded PDU, in order (initiator opcodes without the
    /// I bit, as tshark shows them: 0x03 Login Request, 0x23 Login Response,
    /// 0x00 NOP-Out, 0x20 NOP-In, ...).
    pub opcodes: Vec<u8>,
    /// Frames that carried a header digest.
    pub header_digest_frames: usize,
    /// Frames that carried a data digest.
    pub data_digest_frames: usize,
    /// Every `key=value` of every Login/Text PDU, in order.
    pub key_values: Vec<String>,
    /// Lines tshark printed for `BAD_FRAMES`.
    pub problems: Vec<String>,
}

impl CaptureReport {
    /// Ok if tshark found nothing malformed and no expert error.
    pub fn check_clean(&self) -> Result<(), String> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "tshark flags {} frame(s) in {}: {}",
                self.problems.len(),
                self.pcap.display(),
                self.problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ))
        }
    }

    /// Number of PDUs with this opcode.
    pub fn count_opcode(&self, op: u8) -> usize {
        self.opcodes.iter().filter(|o| **o == op).count()
    }

    /// True if some Login/Text PDU carried exactly `key=value`.
    pub fn has_key_value(&self, kv: &str) -> bool {
        self.key_values.iter().any(|k| k == kv)
    }
}

const SENTINEL_LIMIT: Duration = Duration::from_secs(20);
/// Distinct sentinel payload lengths per sync phase (a capture syncs twice).
const SENTINEL_SPAN: usize = 200;

/// The `Len=N` of a tshark summary line of a UDP datagram.
fn udp_len(line: &str) -> Option<usize> {
    if !line.contains("UDP") {
        return None;
    }
    let rest = line.rsplit_once("Len=")?.1;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Capture {
    /// Starts tshark on `lo` for TCP port `port` (decoded as iSCSI) writing
    /// to `pcap`, and returns once it is provably capturing.
    pub fn start(port: u16, pcap: impl Into<PathBuf>) -> Result<Capture, String> {
        let pcap = pcap.into();
        if let Some(dir) = pcap.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&pcap);
        let sentinel =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind sentinel: {e}"))?;
        let sport = sentinel
            .local_addr()
            .map_err(|e| format!("sentinel addr: {e}"))?
            .port();
        let stderr_log = pcap.with_extension("tshark.log");
        let errf =
            std::fs::File::create(&stderr_log).map_err(|e| format!("create tshark log: {e}"))?;
        let mut child = Command::new("tshark")
            // A 64 MiB kernel capture buffer (-B, in MiB): with the default
            // 2 MiB, multi-MiB loopback bursts lose segments.
            .args(["-i", "lo", "-B", "64", "-n", "-l", "-P", "-f"])
            .arg(format!("tcp port {port} or udp port {sport}"))
            .arg("-d")
            .arg(format!("tcp.port=={port},iscsi"))
            .arg("-w")
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errf)
            .spawn()
            .map_err(|e| format!("cannot spawn tshark: {e}"))?;
        register_pid(child.id());
        let (tx, lines) = channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut cap = Capture {
            child,
            port,
            pcap,
            stderr_log,
            sentinel,
            lines,
            sentinels_seen: 0,
        };
        cap.sync()?;
        Ok(cap)
    }

    /// Sends sentinel datagrams until tshark shows one of them. Each call
    /// uses payload lengths of its own (`Len=` in tshark's summary line), so
    /// a late line from an earlier call cannot end a later wait early.
    fn sync(&mut self) -> Result<(), String> {
        let to = self
            .sentinel
            .local_addr()
            .map_err(|e| format!("sentinel addr: {e}"))?;
        let phase = self.sentinels_seen % 8;
        self.sentinels_seen += 1;
        let lo = 32 + phase * SENTINEL_SPAN;
        let mut len = lo;
        let deadline = Instant::now() + SENTINEL_LIMIT;
        let payload = [b's'; 32 + 8 * SENTINEL_SPAN];
        loop {
            let msg = payload.get(..len).unwrap_or(&payload[..]);
            let _ = self.sentinel.send_to(msg, to);
            if len + 1 < lo + SENTINEL_SPAN {
                len += 1;
            }
            let tick = Instant::now() + Duration::from_millis(100);
            loop {
                let left = tick.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(l) => {
                        if let Some(n) = udp_len(&l) {
                            if (lo..lo + SENTINEL_SPAN).contains(&n) {
                                return Ok(());
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(format!(
                            "tshark exited: {}",
                            super::log_tail(&self.stderr_log, 4)
                        ))
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "tshark never showed a sentinel packet within {SENTINEL_LIMIT:?}: {}",
                    super::log_tail(&self.stderr_log, 4)
                ));
            }
        }
    }

    /// The TCP port being captured.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pcap file being written.
    pub fn pcap(&self) -> &Path {
        &self.pcap
    }

    /// Makes sure everything sent so far is in the file, stops tshark and
    /// analyzes the file.
    pub fn stop(mut self) -> Result<CaptureReport, String> {
        let synced = self.sync();
        self.halt();
        synced?;
        analyze(&self.pcap, self.port)
    }

    fn halt(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "INT");
            if !wait_exit(&mut self.child, Duration::from_secs(10)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        unregister_pid(self.child.id());
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

const READ_LIMIT: Duration = Duration::from_secs(60);

/// The frames a clean capture has none of: malformed, or with an expert
/// error, except segments TCP itself flags as reordered or retransmitted
/// (loopback reorders when the sender moves between CPUs; tshark then
/// reassembles the bytes twice and reports the overlap as an error that
/// says nothing about the iSCSI stream; see `live::is_tcp_recovery`).
pub const BAD_FRAMES: &str = "(_ws.malformed || _ws.expert.severity == error) \
     && !tcp.analysis.out_of_order && !tcp.analysis.retransmission \
     && !tcp.analysis.spurious_retransmission && !tcp.analysis.fast_retransmission";

/// Reads `pcap` with tshark (TCP `port` decoded as iSCSI): counts PDUs,
/// collects opcodes, digests and login keys, and the frames tshark flags
/// as malformed or as expert errors.
pub fn analyze(pcap: &Path, port: u16) -> Result<CaptureReport, String> {
    let file = pcap.to_string_lossy().into_owned();
    let decode = format!("tcp.port=={port},iscsi");
    let bad = run(
        READ_LIMIT,
        "tshark",
        &["-n", "-r", &file, "-d", &decode, "-Y", BAD_FRAMES],
    )?;
    if !bad.success() {
        return Err(bad.describe());
    }
    let fields = run(
        READ_LIMIT,
        "tshark",
        &[
            "-n",
            "-r",
            &file,
            "-d",
            &decode,
            "-Y",
            "iscsi",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "aggregator=|",
            "-E",
            "occurrence=a",
            "-e",
            "iscsi.opcode",
            "-e",
            "iscsi.headerdigest32",
            "-e",
            "iscsi.datadigest32",
            "-e",
            "iscsi.keyvalue",
        ],
    )?;
    if !fields.success() {
        return Err(fields.describe());
    }
    let mut report = parse_fields(&fields.stdout);
    report.pcap = pcap.to_path_buf();
    report.problems = bad
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    Ok(report)
}

/// Parses `tshark -T fields` output with the columns opcode, header digest,
/// data digest, key=value (aggregator `|`).
pub fn parse_fields(out: &str) -> CaptureReport {
    let mut r = CaptureReport::default();
    for line in out.lines() {
        let mut cols = line.split('\t');
        let ops = cols.next().unwrap_or("");
        let hd = cols.next().unwrap_or("");
        let dd = cols.next().unwrap_or("");
        let kv = cols.next().unwrap_or("");
        for op in ops.split('|').filter(|s| !s.is_empty()) {
            let digits = op.trim().trim_start_matches("0x");
            if let Ok(v) = u8::from_str_radix(digits, 16) {
                r.opcodes.push(v);
            }
        }
        if !hd.trim().is_empty() {
            r.header_digest_frames += 1;
        }
        if !dd.trim().is_empty() {
            r.data_digest_frames += 1;
        }
        r.key_values.extend(
            kv.split('|')
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string()),
        );
    }
    r.iscsi_pdus = r.opcodes.len();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_len_reads_tshark_summary() {
        let l = "    3 0.200284198    127.0.0.1 → 127.0.0.1    UDP 68 36938 → 36938 Len=26";
        assert_eq!(udp_len(l), Some(26));
        assert_eq!(
            udp_len("   9 0.7 127.0.0.1 → 127.0.0.1 TCP 74 1 → 2 [SYN] Len=0"),
            None
        );
    }

    #[test]
    fn parse_fields_counts_pdus_digests_and_keys() {
        let out = "0x03\t\t\tInitiatorName=iqn.x|HeaderDigest=None,CRC32C\n\
                   0x23\t\t\tHeaderDigest=CRC32C|DataDigest=None\n\
                   0x01\t0x91d2b211\t\t\n\
                   0x25|0x21\t0x5f963a65|0x1\t0xabc\t\n";
        let r = parse_fields(out);
        assert_eq!(r.opcodes, vec![0x03, 0x23, 0x01, 0x25, 0x21]);
        assert_eq!(r.iscsi_pdus, 5);
        assert_eq!(r.header_digest_frames, 2);
        assert_eq!(r.data_digest_frames, 1);
        assert!(r.has_key_value("HeaderDigest=CRC32C"));
        assert!(!r.has_key_value("HeaderDigest=None"));
        assert_eq!(r.count_opcode(0x21), 1);
        assert!(r.check_clean().is_ok());
        let dirty = CaptureReport {
            problems: vec!["7 ... [Malformed Packet]".into()],
            ..r
        };
        assert!(dirty.check_clean().unwrap_err().contains("Malformed"));
    }
}
