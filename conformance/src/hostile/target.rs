//! A scripted iSCSI target over real TCP on 127.0.0.1: a listener on an
//! ephemeral port, and per accepted connection a [`Peer`] that decodes the
//! initiator's PDUs (whatever way TCP splits them) and sends the PDUs a
//! scenario chooses, built with `iscsi_proto::testing::ScriptedTarget`.
//!
//! Every blocking call has a deadline, so a scenario whose initiator
//! misbehaves fails with a message instead of hanging.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use iscsi_proto::testing::{LoginResponder, ScriptedTarget, RESERVED};
use iscsi_proto::wire::frame::Digests;
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::{DecoderConfig, Pdu, PduDecoder, Serial};

/// Default limit for one receive or accept.
pub const STEP: Duration = Duration::from_secs(5);

/// A listening socket on 127.0.0.1 with an ephemeral port.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    port: u16,
}

impl Listener {
    /// Binds 127.0.0.1:0.
    pub fn bind() -> Result<Listener, String> {
        let inner = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = inner
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        inner
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        Ok(Listener { inner, port })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits up to `limit` for a connection.
    pub fn accept_within(&self, limit: Duration) -> Result<Option<Peer>, String> {
        let until = Instant::now() + limit;
        loop {
            match self.inner.accept() {
                Ok((s, _)) => return Peer::new(s).map(Some),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= until {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("accept: {e}")),
            }
        }
    }

    /// Waits up to [`STEP`] for a connection; an error if none comes.
    pub fn accept(&self) -> Result<Peer, String> {
        self.accept_within(STEP)?
            .ok_or_else(|| format!("no connection on port {} within {STEP:?}", self.port))
    }
}

/// Runs `f` on a new thread with the listener; [`join`] gives its result.
pub fn spawn<T, F>(name: &str, l: Listener, f: F) -> Result<JoinHandle<Result<T, String>>, String>
where
    T: Send + 'static,
    F: FnOnce(Listener) -> Result<T, String> + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("hostile-{name}"))
        .spawn(move || f(l))
        .map_err(|e| format!("spawn: {e}"))
}

/// The target thread's result (a panic inside it becomes an error).
pub fn join<T>(h: JoinHandle<Result<T, String>>) -> Result<T, String> {
    match h.join() {
        Ok(r) => r.map_err(|e| format!("target: {e}")),
        Err(p) => Err(format!(
            "target panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// What a receive saw.
#[derive(Debug)]
pub enum Rx {
    /// A whole PDU.
    Pdu(Box<Pdu>),
    /// The initiator closed (or reset) the connection.
    Closed,
    /// Nothing within the limit.
    Timeout,
}

/// One accepted connection of the scripted target.
#[derive(Debug)]
pub struct Peer {
    stream: TcpStream,
    /// The PDU builder (StatSN, ExpCmdSN, MaxCmdSN state).
    pub t: ScriptedTarget,
    dec: PduDecoder,
    rx: BytesMut,
    /// Every PDU received on this connection, in order.
    pub log: Vec<Pdu>,
}

impl Peer {
    fn new(stream: TcpStream) -> Result<Peer, String> {
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("blocking: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Peer {
            stream,
            t: ScriptedTarget::new(),
            dec: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: 1 << 24,
            }),
            rx: BytesMut::new(),
            log: Vec::new(),
        })
    }

    /// Switches digests on for both directions.
    pub fn set_digests(&mut self, d: Digests) {
        self.t.set_digests(d);
        self.dec.set_digests(d);
    }

    /// Receives the next PDU within `limit`.
    pub fn recv_within(&mut self, limit: Duration) -> Result<Rx, String> {
        let until = Instant::now() + limit;
        loop {
            if let Some(p) = self
                .dec
                .decode(&mut self.rx)
                .map_err(|e| format!("the initiator sent an undecodable PDU: {e}"))?
            {
                self.log.push(p.clone());
                return Ok(Rx::Pdu(Box::new(p)));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Rx::Timeout);
            }
            self.stream
                .set_read_timeout(Some((until - now).max(Duration::from_millis(1))))
                .map_err(|e| format!("set_read_timeout: {e}"))?;
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(Rx::Closed),
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(Rx::Closed)
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next PDU; an error on close or after [`STEP`].
    pub fn recv(&mut self) -> Result<Pdu, String> {
        match self.recv_within(STEP)? {
            Rx::Pdu(p) => Ok(*p),
            Rx::Closed => Err("the initiator closed the connection".into()),
            Rx::Timeout => Err(format!("no PDU from the initiator within {STEP:?}")),
        }
    }

    /// Requires the initiator to close the connection (sending nothing
    /// more) within `limit`.
    pub fn expect_closed_within(&mut self, limit: Duration) -> Result<(), String> {
        match self.recv_within(limit)? {
            Rx::Closed => Ok(()),
            Rx::Pdu(p) => Err(format!(
                "expected the connection to close, got {:?}",
                p.header
            )),
            Rx::Timeout => Err(format!("the connection stayed open for {limit:?}")),
        }
    }

    /// Requires the initiator to close the connection within [`STEP`].
    pub fn expect_closed(&mut self) -> Result<(), String> {
        self.expect_closed_within(STEP)
    }

    /// Writes everything the scripted target queued.
    pub fn flush(&mut self) -> Result<(), String> {
        let out = self.t.take_output();
        if out.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&out)
            .map_err(|e| format!("write: {e}"))
    }

    /// Writes raw bytes (after anything queued).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.flush()?;
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// Closes the connection (both directions).
    pub fn drop_connection(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Runs a login with `r` until its final response is queued (not yet
    /// flushed, so a scenario can append PDUs to the same TCP write);
    /// digests switch on as negotiated. Returns the leading Login Request.
    pub fn login_queued(&mut self, r: &mut LoginResponder) -> Result<w::LoginRequest, String> {
        let mut first = None;
        for _ in 0..32 {
            let pdu = self.recv()?;
            let Header::LoginRequest(req) = pdu.header else {
                return Err(format!("expected a Login Request, got {:?}", pdu.header));
            };
            first.get_or_insert(req);
            if r.handle(&mut self.t, &pdu) {
                if let Some(n) = &r.negotiated {
                    self.dec.set_digests(Digests {
                        header: n.header_digest,
                        data: n.data_digest,
                    });
                }
                return first.ok_or_else(|| "no login request".to_string());
            }
            self.flush()?;
        }
        Err("login did not finish in 32 rounds".into())
    }

    /// A whole login (final response written).
    pub fn login(&mut self, r: &mut LoginResponder) -> Result<w::LoginRequest, String> {
        let req = self.login_queued(r)?;
        self.flush()?;
        Ok(req)
    }

    /// A plain login with RFC defaults.
    pub fn login_plain(&mut self) -> Result<w::LoginRequest, String> {
        self.login(&mut LoginResponder::plain())
    }

    /// The next PDU, which must be a SCSI Command.
    pub fn expect_cmd(&mut self) -> Result<w::ScsiCommand, String> {
        let p = self.recv()?;
        match p.header {
            Header::ScsiCommand(c) => Ok(c),
            other => Err(format!("expected a SCSI Command, got {other:?}")),
        }
    }

    /// The next PDU, which must be an ABORT TASK for command `c`. RFC 7143
    /// section 11.5: it names the task (Referenced Task Tag, RefCmdSN, LUN)
    /// and, like every task management request here, goes out immediate.
    pub fn expect_abort_of(&mut self, c: &w::ScsiCommand) -> Result<w::TaskMgmtRequest, String> {
        let p = self.recv()?;
        let Header::TaskMgmtRequest(m) = p.header else {
            return Err(format!("expected ABORT TASK, got {:?}", p.header));
        };
        check_eq("TMF function", m.function, w::TmfFunction::AbortTask)?;
        check_eq("TMF I bit", m.immediate, true)?;
        check_eq("TMF referenced task", m.referenced_task_tag, c.itt)?;
        check_eq("TMF RefCmdSN", m.ref_cmd_sn, c.cmd_sn)?;
        check_eq("TMF LUN", m.lun, c.lun)?;
        Ok(m)
    }

    /// The next PDU, which must be a NOP-Out; with its data.
    pub fn expect_nop_out(&mut self) -> Result<(w::NopOut, bytes::Bytes), String> {
        let p = self.recv()?;
        match p.header {
            Header::NopOut(n) => Ok((n, p.data)),
            other => Err(format!("expected a NOP-Out, got {other:?}")),
        }
    }

    /// Sends a NOP-In ping with `ttt` and requires the next PDU to be its
    /// answer (RFC 7143 section 11.18.3). A way to synchronise with the
    /// initiator: anything it had queued before the ping arrives first.
    pub fn ping_sync(&mut self, ttt: u32) -> Result<(), String> {
        self.t.nop_in_ping(ttt, 0, &[]);
        self.flush()?;
        let p = self.recv()?;
        match p.header {
            Header::NopOut(n) if n.ttt == ttt && n.itt == RESERVED => Ok(()),
            other => Err(format!(
                "expected the NOP-Out answering ping {ttt:#x}, got {other:?}"
            )),
        }
    }

    /// Answers a command GOOD (acknowledging its CmdSN when non-immediate).
    pub fn good(&mut self, c: &w::ScsiCommand) -> Result<(), String> {
        if !c.immediate {
            self.t.ack_cmd(c.cmd_sn);
        }
        self.t.scsi_response(c.itt, 0, w::Residual::None, None);
        self.flush()
    }

    /// Expects a Logout Request, answers it and expects the close.
    pub fn serve_logout(&mut self) -> Result<w::LogoutRequest, String> {
        let p = self.recv()?;
        let Header::LogoutRequest(l) = p.header else {
            return Err(format!("expected a Logout Request, got {:?}", p.header));
        };
        self.t.logout_response(l.itt, 0, 0);
        self.flush()?;
        self.expect_closed()?;
        Ok(l)
    }

    /// The StatSN the next status will carry (what ExpStatSN must be).
    pub fn next_stat_sn(&self) -> Serial {
        self.t.stat_sn
    }
}

/// Fails with `what` unless `got == want`.
pub fn check_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}
