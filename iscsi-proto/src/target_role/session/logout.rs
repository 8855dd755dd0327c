//! Logout on the target side (RFC 7143 sections 11.14 and 11.15).

use bytes::Bytes;

use super::Session;
use crate::target::event::{CloseReason, Event};
use crate::wire::{LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode};

impl Session {
    /// A Logout Request: answered, and on success the connection (and
    /// with one connection, the session) ends.
    pub(in crate::target) fn logout(&mut self, h: LogoutRequest) {
        let own = h.cid == self.conn.cid;
        // A CID of this session: its connection, live or failed.
        let known = own || self.cids().contains(&h.cid) || self.recovery.has_failed(h.cid);
        let response = match h.reason {
            LogoutReason::CloseSession => LogoutResponseCode::Success,
            // RFC 7143 section 11.15.1: 2 "connection recovery is not
            // supported" below ErrorRecoveryLevel 2 (section 7.1.5).
            LogoutReason::RemoveForRecovery if self.erl() < 2 => {
                LogoutResponseCode::RecoveryNotSupported
            }
            // RFC 7143 section 11.15.1: 1 "CID not found".
            LogoutReason::CloseConnection | LogoutReason::RemoveForRecovery if !known => {
                LogoutResponseCode::CidNotFound
            }
            LogoutReason::CloseConnection | LogoutReason::RemoveForRecovery => {
                LogoutResponseCode::Success
            }
            LogoutReason::Other(_) => LogoutResponseCode::CleanupFailed,
        };
        let (t2w, t2r) = self
            .negotiated
            .as_ref()
            .map_or((2, 20), |n| (n.default_time2wait, n.default_time2retain));
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        // RFC 7143 sections 11.15.2-3: Time2Wait and Time2Retain as
        // negotiated (only meaningful at ErrorRecoveryLevel 2).
        self.conn.push_pdu(
            LogoutResponse {
                response,
                itt: h.itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                time2wait: t2w,
                time2retain: t2r,
            },
            Bytes::new(),
        );
        if response != LogoutResponseCode::Success {
            return;
        }
        // RFC 7143 section 11.14: reason 0 closes the session (every
        // connection); reason 1 closes the connection CID and terminates
        // its tasks ("implicitly terminates ... all active commands",
        // section 11.14.5... RFC 3720 10.14.5); reason 2 removes it for
        // recovery: its tasks wait for TASK REASSIGN (section 7.1.5).
        match h.reason {
            LogoutReason::CloseSession => {
                self.emit(Event::LoggedOut);
                self.close(CloseReason::LoggedOut);
            }
            LogoutReason::CloseConnection | LogoutReason::RemoveForRecovery => {
                let terminate = h.reason == LogoutReason::CloseConnection;
                if own {
                    self.emit(Event::LoggedOut);
                    self.end_connection(CloseReason::LoggedOut, terminate);
                } else {
                    let cid = h.cid;
                    if self.is_closed_on(cid) {
                        // Already failed (maybe forgotten): only its tasks
                        // change.
                        if terminate {
                            self.terminate_orphans(cid);
                        }
                    } else {
                        self.with_conn(cid, |s| {
                            s.end_connection(CloseReason::LoggedOutElsewhere, terminate);
                        });
                    }
                }
            }
            LogoutReason::Other(_) => {}
        }
    }
}
