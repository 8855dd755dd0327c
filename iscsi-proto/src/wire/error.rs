//! Errors of the wire layer.
//!
//! Every [`WireError`] names the RFC 7143 section whose rule the input broke
//! ([`WireError::rfc_section`]) and, where the RFC answers such a PDU with a
//! Reject, the reason code to put in it ([`WireError::reject_reason`]).
//! [`WireError::is_fatal`] tells whether the byte stream itself can no
//! longer be trusted (the connection must be dropped) or only one PDU was bad.

/// An error decoding or encoding an iSCSI PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the structure being read (RFC 7143 section 11.2).
    #[error("truncated: need {needed} bytes, have {got} (RFC 7143 section 11.2)")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The opcode is reserved, vendor specific or otherwise unknown
    /// (RFC 7143 section 11.2.1.2).
    #[error("unknown opcode {0:#04x} (RFC 7143 section 11.2.1.2)")]
    UnknownOpcode(u8),
    /// A field holds a value the RFC reserves and forbids (e.g. login stage 2).
    #[error("reserved value {value:#x} in {field} (RFC 7143 section {section})")]
    ReservedValue {
        /// The field's name.
        field: &'static str,
        /// The offending value.
        value: u32,
        /// The RFC 7143 section that defines the field.
        section: &'static str,
    },
    /// A combination of flags the RFC forbids (e.g. Data-In with S=1 and F=0).
    #[error("forbidden flags in {pdu}: {rule} (RFC 7143 section {section})")]
    ForbiddenFlags {
        /// The PDU kind.
        pdu: &'static str,
        /// The rule that was broken.
        rule: &'static str,
        /// The RFC 7143 section of the rule.
        section: &'static str,
    },
    /// A PDU kind that must not carry AHS or data carries some
    /// (e.g. Task Management Function Request, RFC 7143 section 11.5.2).
    #[error("{pdu} must have TotalAHSLength and DataSegmentLength 0 (RFC 7143 section {section})")]
    UnexpectedSegment {
        /// The PDU kind.
        pdu: &'static str,
        /// The RFC 7143 section of the rule.
        section: &'static str,
    },
    /// DataSegmentLength exceeds the receiver's MaxRecvDataSegmentLength
    /// (RFC 7143 sections 7.x / 13.12). Detected from the BHS alone, before
    /// the data arrives; nothing was consumed.
    #[error("DataSegmentLength {length} exceeds MaxRecvDataSegmentLength {limit} (RFC 7143 section 13.12)")]
    DataSegmentTooLong {
        /// The declared DataSegmentLength.
        length: u32,
        /// The configured limit.
        limit: u32,
    },
    /// The header digest does not match (RFC 7143 sections 11.2.3 and 7.8).
    /// Framing can no longer be trusted; nothing was consumed.
    #[error("header digest mismatch: received {received:#010x}, computed {computed:#010x} (RFC 7143 section 7.8)")]
    HeaderDigest {
        /// The CRC32C carried by the PDU.
        received: u32,
        /// The CRC32C computed over BHS and AHS.
        computed: u32,
    },
    /// The data digest does not match (RFC 7143 sections 11.2.3 and 7.8).
    /// The PDU was consumed; answer with Reject reason 0x02.
    #[error("data digest mismatch: received {received:#010x}, computed {computed:#010x} (RFC 7143 section 7.8)")]
    DataDigest {
        /// The CRC32C carried by the PDU.
        received: u32,
        /// The CRC32C computed over data and padding.
        computed: u32,
    },
    /// The AHS list is malformed (RFC 7143 section 11.2.2).
    #[error("malformed AHS: {reason} (RFC 7143 section 11.2.2)")]
    MalformedAhs {
        /// What is wrong.
        reason: &'static str,
    },
    /// A data segment's internal structure is malformed (e.g. SenseLength
    /// past the end, RFC 7143 section 11.4.7.1).
    #[error("malformed data segment: {reason} (RFC 7143 section {section})")]
    MalformedData {
        /// What is wrong.
        reason: &'static str,
        /// The RFC 7143 section of the structure.
        section: &'static str,
    },
    /// A value cannot be encoded (too long for its field).
    #[error("cannot encode: {reason} (RFC 7143 section {section})")]
    Unencodable {
        /// What is wrong.
        reason: &'static str,
        /// The RFC 7143 section of the field.
        section: &'static str,
    },
}

impl WireError {
    /// The RFC 7143 section whose rule this error is about.
    pub fn rfc_section(&self) -> &'static str {
        match self {
            WireError::Truncated { .. } => "11.2",
            WireError::UnknownOpcode(_) => "11.2.1.2",
            WireError::ReservedValue { section, .. }
            | WireError::ForbiddenFlags { section, .. }
            | WireError::UnexpectedSegment { section, .. }
            | WireError::MalformedData { section, .. }
            | WireError::Unencodable { section, .. } => section,
            WireError::DataSegmentTooLong { .. } => "13.12",
            WireError::HeaderDigest { .. } | WireError::DataDigest { .. } => "7.8",
            WireError::MalformedAhs { .. } => "11.2.2",
        }
    }

    /// The Reject reason (RFC 7143 section 11.17.1) a receiver answers this
    /// error with, or `None` when no Reject applies (the PDU cannot be
    /// delimited or trusted: header digest error, truncation; or the error
    /// is local, as for [`WireError::Unencodable`]).
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            // RFC 7143 section 7.8: a PDU with a header digest error is
            // discarded; no Reject can be built from an untrusted header.
            WireError::Truncated { .. }
            | WireError::HeaderDigest { .. }
            | WireError::Unencodable { .. } => None,
            // RFC 7143 section 11.17.1: 0x05 "Command not supported".
            WireError::UnknownOpcode(_) => Some(RejectReason::CommandNotSupported),
            // RFC 7143 section 11.17.1: 0x02 "Data (payload) digest error".
            WireError::DataDigest { .. } => Some(RejectReason::DataDigestError),
            WireError::ReservedValue { .. }
            | WireError::UnexpectedSegment { .. }
            | WireError::MalformedAhs { .. } => Some(RejectReason::InvalidPduField),
            WireError::ForbiddenFlags { .. }
            | WireError::DataSegmentTooLong { .. }
            | WireError::MalformedData { .. } => Some(RejectReason::ProtocolError),
        }
    }

    /// Whether the byte stream can no longer be delimited or trusted, so the
    /// connection must be dropped (RFC 7143 section 7.8 for header digest
    /// errors; an oversize DataSegmentLength cannot be buffered either).
    /// When this is `true` the decoder consumed nothing; when `false` the bad
    /// PDU was consumed and the stream continues with the next PDU.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            WireError::Truncated { .. }
                | WireError::HeaderDigest { .. }
                | WireError::DataSegmentTooLong { .. }
        )
    }
}

code_enum! {
    /// Reject reason codes (RFC 7143 section 11.17.1).
    pub enum RejectReason, section "11.17.1" {
        /// 0x02: Data (payload) digest error.
        DataDigestError = 0x02,
        /// 0x03: SNACK Reject.
        SnackReject = 0x03,
        /// 0x04: Protocol Error.
        ProtocolError = 0x04,
        /// 0x05: Command not supported.
        CommandNotSupported = 0x05,
        /// 0x06: Immediate command reject - too many immediate commands.
        ImmediateCommandReject = 0x06,
        /// 0x07: Task in progress.
        TaskInProgress = 0x07,
        /// 0x08: Invalid data ack.
        InvalidDataAck = 0x08,
        /// 0x09: Invalid PDU field.
        InvalidPduField = 0x09,
        /// 0x0a: Long op reject - can't generate Target Transfer Tag.
        LongOpReject = 0x0a,
        /// 0x0b: Deprecated (was Negotiation Reset); MUST NOT be used.
        Deprecated = 0x0b,
        /// 0x0c: Waiting for Logout.
        WaitingForLogout = 0x0c,
    }
}
