//! Logout on the target side (RFC 7143 sections 11.14 and 11.15).

use bytes::Bytes;

use super::Session;
use crate::target::event::{CloseReason, Event};
use crate::wire::{LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode};

impl Session {
    /// A Logout Request: answered, and on success the connection (and
    /// with one connection, the session) ends.
    pub(in crate::target) fn logout(&mut self, h: LogoutRequest) {
        let response = match h.reason {
            LogoutReason::CloseSession => LogoutResponseCode::Success,
            // RFC 7143 section 11.15.1: 1 "CID not found".
            LogoutReason::CloseConnection if h.cid == self.conn.cid => LogoutResponseCode::Success,
            LogoutReason::CloseConnection => LogoutResponseCode::CidNotFound,
            // RFC 7143 section 11.15.1: 2 "connection recovery is not
            // supported" (ErrorRecoveryLevel 0).
            LogoutReason::RemoveForRecovery => LogoutResponseCode::RecoveryNotSupported,
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
        if response == LogoutResponseCode::Success {
            // RFC 7143 section 11.14: after a successful logout response
            // the connection (and with one connection, the session) ends.
            self.events.push_back(Event::LoggedOut);
            self.close(CloseReason::LoggedOut);
        }
    }
}
