//! A small scripted iSCSI target on a loopback socket for the blocking
//! driver's keepalive tests, built on `iscsi_proto::testing`
//! (`ScriptedTarget` for the replies, `LoginResponder` for the login). It
//! answers logins, NOP-Out pings, every SCSI command with GOOD status and
//! no data, and logouts; and, as told by its [`Script`], asks for a logout
//! with an Asynchronous Message or drops the connection.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use iscsi_proto::testing::{LoginResponder, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header};

/// The target's name.
pub const TARGET_NAME: &str = "iqn.2026-11.test:std-keepalive";

/// What the target does beyond answering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// On the first connection, this long after the login, send
    /// AsyncEvent 1 (logout requested) with Parameter3 = 1 second.
    pub ask_logout_after: Option<Duration>,
    /// On the first connection, close the socket right after answering the
    /// first SCSI command.
    pub drop_after_first_command: bool,
}

/// What the target saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A login completed on connection `n` (from 1).
    LoggedIn(usize),
    /// The Asynchronous Message asking for a logout went out.
    AskedLogout,
    /// A Logout Request was answered.
    LoggedOut,
    /// A SCSI command was answered.
    Command,
    /// Connection `n` ended.
    Disconnected(usize),
}

/// A running target: where it listens and what it saw.
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    notes: Receiver<Note>,
}

impl Target {
    /// Starts a target on 127.0.0.1 (a port the system picks).
    pub fn start(script: Script) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, notes) = channel();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                let n = i + 1;
                std::thread::spawn(move || {
                    serve(
                        stream,
                        n,
                        if n == 1 { script } else { Script::default() },
                        &tx,
                    );
                    let _ = tx.send(Note::Disconnected(n));
                });
            }
        });
        Target { addr, notes }
    }

    /// Waits (at most `guard`, a guard against hangs and not a timing
    /// assertion) for a note matching `pred`; `None` if none came.
    pub fn wait_note(&self, guard: Duration, mut pred: impl FnMut(&Note) -> bool) -> Option<Note> {
        let end = Instant::now() + guard;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok(n) if pred(&n) => return Some(n),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

fn serve(mut stream: TcpStream, conn: usize, script: Script, notes: &Sender<Note>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = stream.set_nodelay(true);
    let mut t = ScriptedTarget::new();
    let mut login = LoginResponder::plain();
    let mut logged_in_at: Option<Instant> = None;
    let mut asked = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let (Some(at), Some(after), false) = (logged_in_at, script.ask_logout_after, asked) {
            if at.elapsed() >= after {
                asked = true;
                t.async_message(w::AsyncEvent::LogoutRequested, [0, 0, 1], &[]);
                let _ = notes.send(Note::AskedLogout);
            }
        }
        let out = t.take_output();
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        if t.feed(&buf[..n]).is_err() {
            return;
        }
        let mut close = false;
        while let Some(pdu) = t.recv() {
            if logged_in_at.is_none() {
                if login.handle(&mut t, &pdu) {
                    logged_in_at = Some(Instant::now());
                    let _ = notes.send(Note::LoggedIn(conn));
                }
                continue;
            }
            match pdu.header {
                Header::NopOut(h) if h.itt != RESERVED => {
                    if !h.immediate {
                        t.ack_cmd(h.cmd_sn);
                    }
                    t.nop_in_reply(&h, pdu.data.clone());
                }
                Header::ScsiCommand(h) => {
                    if !h.immediate {
                        t.ack_cmd(h.cmd_sn);
                    }
                    t.scsi_response(h.itt, 0, w::Residual::None, None);
                    let _ = notes.send(Note::Command);
                    close |= script.drop_after_first_command;
                }
                Header::LogoutRequest(h) => {
                    if !h.immediate {
                        t.ack_cmd(h.cmd_sn);
                    }
                    t.logout_response(h.itt, 0, 0);
                    let _ = notes.send(Note::LoggedOut);
                    close = true;
                }
                _ => {}
            }
        }
        let out = t.take_output();
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        if close {
            return;
        }
    }
}
