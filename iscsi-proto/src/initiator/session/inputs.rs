//! (B) Inputs from the driver: the connection is up, bytes arrived, a
//! deadline passed, the connection ended.

use crate::time::Instant;

use bytes::BytesMut;

use super::*;

impl Session {
    // ------------------------------------------------------------------
    // (B) inputs
    // ------------------------------------------------------------------

    /// The TCP connection asked for by `Event::Connect` is up: start the
    /// login.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.phase != Phase::Active || !matches!(self.conn.state, ConnState::Connecting) {
            return;
        }
        tracing::debug!(target: "iscsi::login", cid = self.conn.cid, "connected; login starts");
        match self.start_login() {
            Ok(login) => {
                self.conn.state = ConnState::Login(login);
                self.touch_rx(now);
            }
            Err(e) => self.fail_closed(e),
        }
    }

    /// Bytes arrived. Whole PDUs are consumed from `buf`; a partial PDU is
    /// left for the next call. After a connection failure the buffer is
    /// cleared (its bytes belong to the dead connection).
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            if self.phase != Phase::Active || matches!(self.conn.state, ConnState::Connecting) {
                break;
            }
            match self.conn.decoder.decode(buf) {
                Ok(Some(pdu)) => {
                    self.touch_rx(now);
                    self.timers.stop(Timer::Ping);
                    if let Err(e) = self.on_pdu(now, pdu) {
                        self.fail_connection(now, e);
                        buf.clear();
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // RFC 7143 section 11.2.1.2: opcodes 0x3c-0x3e are
                    // vendor specific; a target may send them and an
                    // initiator that does not know them ignores them.
                    if let WireError::UnknownOpcode(op) = e {
                        if !e.is_fatal() && (0x3c..=0x3e).contains(&op) {
                            self.touch_rx(now);
                            continue;
                        }
                    }
                    let err = match e {
                        // RFC 7143 section 7.8: header digest errors and
                        // (at ErrorRecoveryLevel 0) data digest errors end
                        // the connection.
                        WireError::HeaderDigest { .. } | WireError::DataDigest { .. } => {
                            ConnectionError::DigestFailure(e)
                        }
                        other => io(other),
                    };
                    self.fail_connection(now, err);
                    buf.clear();
                    break;
                }
            }
        }
        self.after_action(now);
    }

    /// A deadline passed (call at or after `poll_timeout()`): every
    /// [`Timer`] due is handled (`session/timers.rs`).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
        self.after_action(now);
    }

    /// The TCP connection closed or failed.
    pub fn handle_closed(&mut self, now: Instant) {
        if self.phase == Phase::Active {
            self.fail_connection(now, ConnectionError::Closed);
        }
        self.after_action(now);
    }
}
