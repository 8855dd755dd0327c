//! A scripted iSCSI target on a real loopback socket, for the drivers'
//! tests (shared by iscsi-smol, iscsi-mio and iscsi-std through
//! `#[path]`). Built on `iscsi_proto::testing` (`ScriptedTarget` for the
//! replies, `LoginResponder` for the login) and the crate's `PduDecoder`.
//!
//! It serves one RAM disk (512-byte blocks) as every LUN: READ(10/16),
//! WRITE(10/16) (immediate data, unsolicited Data-Out and R2Ts one at a time
//! as MaxOutstandingR2T=1 requires), TEST UNIT READY, NOP-Out pings,
//! SendTargets, task management and logout. It reports what it saw on a
//! channel ([`Note`]) and sends a NOP-In ping when told ([`Control`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::testing::{LoginResponder, ScriptedTarget, RESERVED};
use iscsi_proto::wire::frame::Digests;
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::{DecoderConfig, PduDecoder, Serial};

/// The block size of the RAM disk.
pub const BLOCK: usize = 512;
/// The target's name (in SendTargets).
pub const TARGET_NAME: &str = "iqn.2026-11.test:loop";

/// What the target saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A login completed (normal or discovery).
    LoggedIn,
    /// The initiator answered our NOP-In ping with this TTT.
    NopAnswered(u32),
    /// A SCSI command (its opcode).
    Command(u8),
    /// The peak number of SCSI commands open at once so far.
    InFlight(usize),
    /// A logout was answered.
    LoggedOut,
    /// The connection ended.
    Disconnected,
}

/// What the test asks the target to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Send a NOP-In ping with this TTT on the current connection.
    Ping(u32),
}

/// A running target.
pub struct LoopbackTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub notes: Receiver<Note>,
    /// Orders for the current connection.
    pub control: Sender<Control>,
    /// The RAM disk.
    pub disk: Arc<Mutex<Vec<u8>>>,
    /// The next this many SCSI commands end with CHECK CONDITION, sense
    /// key UNIT ATTENTION, "power on, reset" (29h/00h), without being
    /// performed (SAM-5 5.14.1), as tgtd answers a session's first one.
    pub unit_attention: Arc<AtomicUsize>,
}

impl LoopbackTarget {
    /// Starts a target with a disk of `blocks` blocks on 127.0.0.1:0.
    /// `hold_responses`: SCSI responses are held back until this many
    /// commands are open (to prove a driver keeps many in flight), then
    /// released together; 0 or 1 answers each at once.
    pub fn start(blocks: usize, hold_responses: usize) -> LoopbackTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (note_tx, notes) = channel();
        let (control, control_rx) = channel();
        let control_rx = Arc::new(Mutex::new(control_rx));
        let disk = Arc::new(Mutex::new(vec![0u8; blocks * BLOCK]));
        let d = disk.clone();
        let unit_attention = Arc::new(AtomicUsize::new(0));
        let ua = unit_attention.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (d, n, c) = (d.clone(), note_tx.clone(), control_rx.clone());
                let ua = ua.clone();
                std::thread::spawn(move || {
                    let mut conn = Conn::new(stream, d, n.clone(), c, hold_responses, addr);
                    conn.unit_attention = ua;
                    conn.serve();
                    let _ = n.send(Note::Disconnected);
                });
            }
        });
        LoopbackTarget {
            addr,
            notes,
            control,
            disk,
            unit_attention,
        }
    }

    /// Waits (up to a minute, a guard against hangs, not a timing
    /// assertion) for a note matching `pred`; returns it.
    pub fn wait_note(&self, mut pred: impl FnMut(&Note) -> bool) -> Note {
        loop {
            match self.notes.recv_timeout(Duration::from_secs(60)) {
                Ok(n) if pred(&n) => return n,
                Ok(_) => {}
                Err(e) => panic!("no matching note from the target: {e}"),
            }
        }
    }

    /// Takes a matching note if one arrived already.
    pub fn try_note(&self, mut pred: impl FnMut(&Note) -> bool) -> Option<Note> {
        while let Ok(n) = self.notes.try_recv() {
            if pred(&n) {
                return Some(n);
            }
        }
        None
    }
}

/// A final response, sent now or held back.
type Reply = Box<dyn FnOnce(&mut ScriptedTarget) + Send>;

struct Write10 {
    offset: usize,
    buf: Vec<u8>,
    got: usize,
    next_r2t: usize,
    r2t_sn: u32,
    burst: usize,
}

struct Conn {
    stream: TcpStream,
    decoder: PduDecoder,
    t: ScriptedTarget,
    login: LoginResponder,
    logged_in: bool,
    disk: Arc<Mutex<Vec<u8>>>,
    notes: Sender<Note>,
    control: Arc<Mutex<Receiver<Control>>>,
    writes: HashMap<u32, Write10>,
    hold: usize,
    held: Vec<Reply>,
    open: usize,
    peak: usize,
    addr: SocketAddr,
    closing: bool,
    unit_attention: Arc<AtomicUsize>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        disk: Arc<Mutex<Vec<u8>>>,
        notes: Sender<Note>,
        control: Arc<Mutex<Receiver<Control>>>,
        hold: usize,
        addr: SocketAddr,
    ) -> Conn {
        Conn {
            stream,
            decoder: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: 1 << 24,
            }),
            t: ScriptedTarget::new(),
            login: LoginResponder::plain(),
            logged_in: false,
            disk,
            notes,
            control,
            writes: HashMap::new(),
            hold,
            held: Vec::new(),
            open: 0,
            peak: 0,
            addr,
            closing: false,
            unit_attention: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn serve(&mut self) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(20)));
        let _ = self.stream.set_nodelay(true);
        let mut rx = BytesMut::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if self.logged_in {
                let orders: Vec<Control> = match self.control.lock() {
                    Ok(c) => c.try_iter().collect(),
                    Err(_) => Vec::new(),
                };
                for Control::Ping(ttt) in orders {
                    self.t.nop_in_ping(ttt, 0, b"ping");
                }
                if !self.flush() {
                    return;
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => rx.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => return,
            }
            loop {
                match self.decoder.decode(&mut rx) {
                    Ok(Some(pdu)) => self.on_pdu(pdu),
                    Ok(None) => break,
                    Err(e) => panic!("initiator sent a bad PDU: {e}"),
                }
            }
            if !self.flush() || self.closing {
                return;
            }
        }
    }

    fn flush(&mut self) -> bool {
        let out = self.t.take_output();
        out.is_empty() || self.stream.write_all(&out).is_ok()
    }

    fn mrdsl(&self) -> usize {
        self.login
            .negotiated
            .as_ref()
            .map_or(8192, |n| n.initiator_max_recv_data_segment_length as usize)
    }

    fn on_pdu(&mut self, pdu: iscsi_proto::wire::Pdu) {
        if !self.logged_in {
            if self.login.handle(&mut self.t, &pdu) {
                self.logged_in = true;
                if let Some(n) = &self.login.negotiated {
                    self.decoder.set_digests(Digests {
                        header: n.header_digest,
                        data: n.data_digest,
                    });
                }
                let _ = self.notes.send(Note::LoggedIn);
            }
            return;
        }
        match pdu.header {
            Header::NopOut(h) => {
                if h.itt != RESERVED {
                    if !h.immediate {
                        self.t.ack_cmd(h.cmd_sn);
                    }
                    self.t.nop_in_reply(&h, pdu.data.clone());
                } else {
                    let _ = self.notes.send(Note::NopAnswered(h.ttt));
                }
            }
            Header::ScsiCommand(h) => {
                if !h.immediate {
                    self.t.ack_cmd(h.cmd_sn);
                }
                let _ = self.notes.send(Note::Command(h.cdb[0]));
                self.open += 1;
                if self.open > self.peak {
                    self.peak = self.open;
                    let _ = self.notes.send(Note::InFlight(self.peak));
                }
                let ua =
                    self.unit_attention
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                if ua.is_ok() {
                    let itt = h.itt;
                    self.respond(Box::new(move |t: &mut ScriptedTarget| {
                        // Fixed-format sense (SPC-4 4.5.3): UNIT ATTENTION,
                        // ASC/ASCQ 29h/00h.
                        let mut sense = [0u8; 18];
                        sense[0] = 0x70;
                        sense[2] = 0x06;
                        sense[7] = 10;
                        sense[12] = 0x29;
                        t.scsi_response(itt, 0x02, w::Residual::None, Some(&sense));
                    }));
                } else {
                    self.command(&h, pdu.data);
                }
            }
            Header::DataOut(h) => self.data_out(&h, &pdu.data),
            Header::TextRequest(h) => {
                self.t.ack_cmd(h.cmd_sn);
                let body = format!("TargetName={TARGET_NAME}\0TargetAddress={},1\0", self.addr);
                self.t
                    .text_response(h.itt, true, false, RESERVED, body.as_bytes());
            }
            Header::TaskMgmtRequest(h) => {
                if !h.immediate {
                    self.t.ack_cmd(h.cmd_sn);
                }
                self.t.tmf_response(h.itt, w::TmfResponse::FunctionComplete);
            }
            Header::LogoutRequest(h) => {
                if !h.immediate {
                    self.t.ack_cmd(h.cmd_sn);
                }
                self.t.logout_response(h.itt, 0, 0);
                let _ = self.notes.send(Note::LoggedOut);
                self.closing = true;
            }
            other => panic!("unexpected PDU {:?}", other.opcode()),
        }
    }

    fn command(&mut self, h: &w::ScsiCommand, data: Bytes) {
        let cdb = h.cdb;
        let (lba, blocks) = match cdb[0] {
            0x88 | 0x8a => (
                u64::from_be_bytes(cdb[2..10].try_into().expect("8 bytes")) as usize,
                u32::from_be_bytes(cdb[10..14].try_into().expect("4 bytes")) as usize,
            ),
            _ => (
                u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]) as usize,
                u16::from_be_bytes([cdb[7], cdb[8]]) as usize,
            ),
        };
        let itt = h.itt;
        match cdb[0] {
            // READ(10), READ(16)
            0x28 | 0x88 => {
                let start = lba * BLOCK;
                let len = blocks * BLOCK;
                let bytes = {
                    let disk = self.disk.lock().expect("disk");
                    Bytes::copy_from_slice(&disk[start..start + len])
                };
                let chunk = self.mrdsl();
                self.respond(Box::new(move |t: &mut ScriptedTarget| {
                    let mut off = 0;
                    let mut sn = 0;
                    while off < len {
                        let end = (off + chunk).min(len);
                        let last = end == len;
                        let status = last.then_some((0, w::Residual::None));
                        t.data_in(itt, sn, off as u32, &bytes[off..end], status);
                        off = end;
                        sn += 1;
                    }
                    if len == 0 {
                        t.scsi_response(itt, 0, w::Residual::None, None);
                    }
                }));
            }
            // WRITE(10), WRITE(16)
            0x2a | 0x8a => {
                let len = blocks * BLOCK;
                let n = self.login.negotiated.as_ref().expect("negotiated");
                let burst = n.max_burst_length as usize;
                let unsolicited = if n.initial_r2t {
                    data.len()
                } else {
                    (n.first_burst_length as usize).min(len)
                };
                let mut st = Write10 {
                    offset: lba * BLOCK,
                    buf: vec![0u8; len],
                    got: data.len(),
                    next_r2t: unsolicited,
                    r2t_sn: 0,
                    burst,
                };
                st.buf[..data.len()].copy_from_slice(&data);
                self.writes.insert(itt, st);
                // With InitialR2T=No the unsolicited burst may still come.
                if n.initial_r2t || data.len() == unsolicited {
                    self.next_r2t_or_finish(itt);
                }
            }
            _ => self.respond(Box::new(move |t: &mut ScriptedTarget| {
                t.scsi_response(itt, 0, w::Residual::None, None)
            })),
        }
    }

    fn data_out(&mut self, h: &w::DataOut, data: &[u8]) {
        let Some(st) = self.writes.get_mut(&h.itt) else {
            panic!("Data-Out for an unknown task");
        };
        let off = h.buffer_offset as usize;
        st.buf[off..off + data.len()].copy_from_slice(data);
        st.got += data.len();
        if h.final_pdu {
            self.next_r2t_or_finish(h.itt);
        }
    }

    /// Sends the next R2T of a write, or completes it once all data came.
    fn next_r2t_or_finish(&mut self, itt: u32) {
        let Some(st) = self.writes.get_mut(&itt) else {
            return;
        };
        let len = st.buf.len();
        if st.got >= len {
            let st = self.writes.remove(&itt).expect("write");
            self.disk.lock().expect("disk")[st.offset..st.offset + len].copy_from_slice(&st.buf);
            self.respond(Box::new(move |t: &mut ScriptedTarget| {
                t.scsi_response(itt, 0, w::Residual::None, None)
            }));
            return;
        }
        let start = st.next_r2t;
        let n = st.burst.min(len - start);
        st.next_r2t += n;
        let sn = st.r2t_sn;
        st.r2t_sn += 1;
        let ttt = 0x1000 + sn;
        self.t.r2t(itt, ttt, sn, start as u32, n as u32);
    }

    /// Sends a final response now, or holds it until `hold` are open.
    fn respond(&mut self, f: Reply) {
        self.held.push(f);
        if self.held.len() >= self.hold.max(1) || self.hold_released() {
            for f in std::mem::take(&mut self.held) {
                f(&mut self.t);
                self.open = self.open.saturating_sub(1);
            }
        }
    }

    fn hold_released(&self) -> bool {
        // Once the peak reached the hold level, answer as they come.
        self.peak >= self.hold
    }
}

/// The StatSN type, re-exported for tests that script by hand.
pub type Sn = Serial;
