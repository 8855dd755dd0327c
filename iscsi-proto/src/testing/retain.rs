//! ErrorRecoveryLevel 1 support of the scripted target: a PDU sent with a
//! wrong data digest, and SNACKs answered from the PDUs it retained (RFC
//! 7143 section 11.16: "the target MUST either resend the data PDU or
//! reject the SNACK", section 7.8).

use crate::prelude::*;
use bytes::{Bytes, BytesMut};

use super::ScriptedTarget;
use crate::wire::frame::Pdu;
use crate::wire::pdu::{self as w, Header};
use crate::wire::{Serial, BHS_LEN};

/// The StatSN of a PDU that carries status (RFC 7143 section 4.2.2.2).
pub fn status_sn(header: &Header) -> Option<Serial> {
    match header {
        Header::ScsiResponse(h) => Some(h.stat_sn),
        Header::DataIn(h) => h.status.map(|s| s.stat_sn),
        Header::NopIn(h) if h.itt != super::RESERVED => Some(h.stat_sn),
        Header::TaskMgmtResponse(h) => Some(h.stat_sn),
        Header::TextResponse(h) => Some(h.stat_sn),
        Header::LogoutResponse(h) => Some(h.stat_sn),
        Header::AsyncMessage(h) => Some(h.stat_sn),
        Header::Reject(h) => Some(h.stat_sn),
        _ => None,
    }
}

/// Whether `sn` is in the run of a SNACK (RFC 7143 section 11.16:
/// RunLength 0 means every number from BegRun).
fn in_run(sn: Serial, beg: Serial, len: u32) -> bool {
    !sn.precedes(beg) && (len == 0 || sn.precedes(beg.plus(len)))
}

impl ScriptedTarget {
    /// Encodes a PDU whose data digest does not match its data (RFC 7143
    /// section 11.2.3). Data digests must be on and the data segment not
    /// empty. The PDU is retained as if it had been sent right, so a SNACK
    /// gets it back intact.
    pub fn send_corrupt(&mut self, header: impl Into<Header>, data: impl Into<Bytes>) {
        let pdu = Pdu::new(header, data.into());
        assert!(
            self.tx_digests.data && !pdu.data.is_empty(),
            "send_corrupt needs data digests and a data segment"
        );
        let mut b = BytesMut::new();
        pdu.encode(&mut b, self.tx_digests)
            .expect("scripted PDU encodes");
        // The data digest is the last word of the PDU.
        if let Some(last) = b.last_mut() {
            *last ^= 0x5a;
        }
        self.out.extend_from_slice(&b);
        self.retained.push(pdu);
    }

    /// Encodes a PDU whose header digest does not match (RFC 7143 section
    /// 11.2.3; header digests must be on). With `length` the
    /// DataSegmentLength field is corrupted too (the next PDU cannot be
    /// found then). Retained as if sent right.
    pub fn send_corrupt_header(
        &mut self,
        header: impl Into<Header>,
        data: impl Into<Bytes>,
        length: bool,
    ) {
        let pdu = Pdu::new(header, data.into());
        assert!(
            self.tx_digests.header,
            "send_corrupt_header needs header digests"
        );
        let mut b = BytesMut::new();
        pdu.encode(&mut b, self.tx_digests)
            .expect("scripted PDU encodes");
        if length {
            // DataSegmentLength is bytes 5-7 of the BHS.
            if let Some(x) = b.get_mut(7) {
                *x ^= 0x10;
            }
        } else if let Some(x) = b.get_mut(BHS_LEN) {
            // The first byte of the header digest (no AHS here).
            *x ^= 0x5a;
        }
        self.out.extend_from_slice(&b);
        self.retained.push(pdu);
    }

    /// Retains a PDU as sent without sending it: a PDU lost on the way
    /// (as a header digest error makes it, RFC 7143 section 7.9).
    pub fn lose(&mut self, header: impl Into<Header>, data: impl Into<Bytes>) {
        self.retained.push(Pdu::new(header, data.into()));
    }

    /// Answers a SNACK from the retained PDUs (RFC 7143 section 11.16):
    /// Data/R2T SNACK resends the task's Data-In and R2T PDUs in the run,
    /// Status SNACK the status PDUs in the run, DataACK frees nothing here.
    /// Returns how many PDUs were resent.
    pub fn serve_snack(&mut self, snack: &w::SnackRequest) -> usize {
        let again: Vec<Pdu> = self
            .retained
            .iter()
            .filter(|p| match (&snack.snack_type, &p.header) {
                (w::SnackType::DataR2t, Header::DataIn(h)) => {
                    h.itt == snack.itt && in_run(h.data_sn, snack.beg_run, snack.run_length)
                }
                (w::SnackType::DataR2t, Header::R2t(h)) => {
                    h.itt == snack.itt && in_run(h.r2t_sn, snack.beg_run, snack.run_length)
                }
                (w::SnackType::Status, h) => {
                    status_sn(h).is_some_and(|sn| in_run(sn, snack.beg_run, snack.run_length))
                }
                _ => false,
            })
            .cloned()
            .collect();
        let n = again.len();
        for p in again {
            let mut b = BytesMut::new();
            p.encode(&mut b, self.tx_digests)
                .expect("scripted PDU encodes");
            self.out.extend_from_slice(&b);
        }
        n
    }

    /// Rejects a PDU with reason "SNACK reject" (RFC 7143 section 11.17.1,
    /// 0x03), its header in the data segment.
    pub fn reject_snack(&mut self, snack: &Pdu) {
        self.reject(w::RejectReason::SnackReject, snack);
    }
}
