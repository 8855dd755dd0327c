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
        self.tick(now);
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
        self.tick(now);
        self.input_loop(now, buf);
        self.after_action(now);
    }

    /// Decodes and handles whole PDUs of the current connection.
    pub(super) fn input_loop(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            // An added connection (MC/S) goes on while the first one
            // recovers (ErrorRecoveryLevel 2).
            let phase_ok = match self.swapped {
                Some(_) => self.phase != Phase::Closed,
                None => self.phase == Phase::Active,
            };
            if !phase_ok
                || matches!(self.conn.state, ConnState::Connecting)
                || self.deferred_fail.is_some()
            {
                break;
            }
            match self.conn.decoder.decode(buf) {
                Ok(Some(pdu)) => {
                    self.touch_rx(now);
                    if let Err(e) = self.on_pdu(now, pdu) {
                        self.fail_connection(now, e);
                        buf.clear();
                        break;
                    }
                }
                Ok(None) => break,
                Err(WireError::DataDigest { received, computed })
                    if self.erl() >= 1 && self.conn.is_full() =>
                {
                    // RFC 7143 section 7.8: "When an initiator receives any
                    // iSCSI PDU with a payload digest error, it MUST
                    // discard the PDU"; at ErrorRecoveryLevel 1 the header
                    // (its digest checked) says what to ask for again.
                    self.touch_rx(now);
                    self.stats.digest_errors = self.stats.digest_errors.saturating_add(1);
                    let bhs = self.conn.decoder.take_rejected_header();
                    let err = WireError::DataDigest { received, computed };
                    if let Err(e) = self.on_data_digest_error(now, bhs, err) {
                        self.fail_connection(now, e);
                        buf.clear();
                        break;
                    }
                }
                Err(e @ WireError::HeaderDigest { .. })
                    if self.erl() >= 1 && self.conn.is_full() =>
                {
                    // RFC 7143 section 7.8 at ErrorRecoveryLevel 1: the PDU
                    // is discarded when the next one can be found for sure;
                    // its loss then shows as a sequence gap (section 7.9).
                    self.stats.digest_errors = self.stats.digest_errors.saturating_add(1);
                    match self.conn.skip_bad_header(buf) {
                        Resync::Skipped => {
                            tracing::warn!(target: "iscsi::erl", "header digest error: PDU discarded (RFC 7143 section 7.8)");
                            self.touch_rx(now);
                        }
                        Resync::NeedMore => break,
                        Resync::Lost => {
                            self.fail_connection(now, ConnectionError::DigestFailure(e));
                            buf.clear();
                            break;
                        }
                    }
                }
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
                        // RFC 7143 section 7.8: at ErrorRecoveryLevel 0
                        // digest errors end the connection (at level 1 and
                        // above they are handled above).
                        WireError::HeaderDigest { .. } | WireError::DataDigest { .. } => {
                            self.stats.digest_errors = self.stats.digest_errors.saturating_add(1);
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
    }

    /// A deadline passed (call at or after `poll_timeout()`): every
    /// [`Timer`] due is handled (`session/timers.rs`).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        self.fire_timers(now);
        self.after_action(now);
    }

    /// The TCP connection closed or failed.
    pub fn handle_closed(&mut self, now: Instant) {
        self.tick(now);
        if self.phase == Phase::Active {
            self.fail_connection(now, ConnectionError::Closed);
        }
        self.after_action(now);
    }
}
