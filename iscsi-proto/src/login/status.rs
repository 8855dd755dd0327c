//! Login Response Status-Class and Status-Detail (RFC 7143 section 11.13.5).

use core::fmt;

/// The Status-Class byte of a Login Response (RFC 7143 section 11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusClass {
    /// 0: "Success - indicates that the iSCSI target successfully received,
    /// understood, and accepted the request."
    Success,
    /// 1: "Redirection - indicates that the initiator must take further
    /// action to complete the request."
    Redirection,
    /// 2: "Initiator Error (not a format error) - indicates that the
    /// initiator most likely caused the error."
    InitiatorError,
    /// 3: "Target Error - indicates that the target sees no errors in the
    /// initiator's Login Request but is currently incapable of fulfilling
    /// the request."
    TargetError,
    /// Any other class byte.
    Unknown(u8),
}

impl StatusClass {
    /// Decodes the class byte.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => StatusClass::Success,
            1 => StatusClass::Redirection,
            2 => StatusClass::InitiatorError,
            3 => StatusClass::TargetError,
            other => StatusClass::Unknown(other),
        }
    }

    /// The class byte.
    pub const fn as_u8(self) -> u8 {
        match self {
            StatusClass::Success => 0,
            StatusClass::Redirection => 1,
            StatusClass::InitiatorError => 2,
            StatusClass::TargetError => 3,
            StatusClass::Unknown(v) => v,
        }
    }
}

/// A Login Response status (Status-Class, Status-Detail), RFC 7143
/// section 11.13.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginStatus {
    /// 0x0000 Success: login is proceeding OK.
    Success,
    /// 0x0101 Target moved temporarily: use the TargetAddress given.
    TargetMovedTemporarily,
    /// 0x0102 Target moved permanently: use the TargetAddress given.
    TargetMovedPermanently,
    /// 0x0200 Initiator error (miscellaneous).
    InitiatorError,
    /// 0x0201 Authentication failure.
    AuthenticationFailure,
    /// 0x0202 Authorization failure: the initiator may not access the target.
    AuthorizationFailure,
    /// 0x0203 Not found: the requested target does not exist here.
    NotFound,
    /// 0x0204 Target removed.
    TargetRemoved,
    /// 0x0205 Unsupported version.
    UnsupportedVersion,
    /// 0x0206 Too many connections.
    TooManyConnections,
    /// 0x0207 Missing parameter (e.g. iSCSI name or initiator name).
    MissingParameter,
    /// 0x0208 Can't include in session.
    CantIncludeInSession,
    /// 0x0209 Session type not supported.
    SessionTypeNotSupported,
    /// 0x020a Session does not exist.
    SessionDoesNotExist,
    /// 0x020b Invalid request type during login.
    InvalidDuringLogin,
    /// 0x0300 Target error (miscellaneous).
    TargetError,
    /// 0x0301 Service unavailable.
    ServiceUnavailable,
    /// 0x0302 Out of resources.
    OutOfResources,
    /// Any other class/detail pair.
    Unknown {
        /// Status-Class byte.
        class: u8,
        /// Status-Detail byte.
        detail: u8,
    },
}

impl LoginStatus {
    /// Decodes the Status-Class and Status-Detail bytes (RFC 7143 section 11.13.5).
    pub const fn from_raw(class: u8, detail: u8) -> Self {
        use LoginStatus::*;
        match (class, detail) {
            (0, 0) => Success,
            (1, 1) => TargetMovedTemporarily,
            (1, 2) => TargetMovedPermanently,
            (2, 0) => InitiatorError,
            (2, 1) => AuthenticationFailure,
            (2, 2) => AuthorizationFailure,
            (2, 3) => NotFound,
            (2, 4) => TargetRemoved,
            (2, 5) => UnsupportedVersion,
            (2, 6) => TooManyConnections,
            (2, 7) => MissingParameter,
            (2, 8) => CantIncludeInSession,
            (2, 9) => SessionTypeNotSupported,
            (2, 0x0a) => SessionDoesNotExist,
            (2, 0x0b) => InvalidDuringLogin,
            (3, 0) => TargetError,
            (3, 1) => ServiceUnavailable,
            (3, 2) => OutOfResources,
            (class, detail) => Unknown { class, detail },
        }
    }

    /// Decodes `class << 8 | detail`.
    pub const fn from_u16(code: u16) -> Self {
        Self::from_raw((code >> 8) as u8, code as u8)
    }

    /// `(Status-Class, Status-Detail)`.
    pub const fn raw(self) -> (u8, u8) {
        use LoginStatus::*;
        match self {
            Success => (0, 0),
            TargetMovedTemporarily => (1, 1),
            TargetMovedPermanently => (1, 2),
            InitiatorError => (2, 0),
            AuthenticationFailure => (2, 1),
            AuthorizationFailure => (2, 2),
            NotFound => (2, 3),
            TargetRemoved => (2, 4),
            UnsupportedVersion => (2, 5),
            TooManyConnections => (2, 6),
            MissingParameter => (2, 7),
            CantIncludeInSession => (2, 8),
            SessionTypeNotSupported => (2, 9),
            SessionDoesNotExist => (2, 0x0a),
            InvalidDuringLogin => (2, 0x0b),
            TargetError => (3, 0),
            ServiceUnavailable => (3, 1),
            OutOfResources => (3, 2),
            Unknown { class, detail } => (class, detail),
        }
    }

    /// `class << 8 | detail`, as written in the RFC's table (e.g. 0x0201).
    pub const fn code(self) -> u16 {
        let (c, d) = self.raw();
        ((c as u16) << 8) | d as u16
    }

    /// The Status-Class.
    pub const fn class(self) -> StatusClass {
        StatusClass::from_u8(self.raw().0)
    }

    /// True for 0x0000.
    pub const fn is_success(self) -> bool {
        matches!(self, LoginStatus::Success)
    }

    /// True for class 1: the Login Response carries a TargetAddress to use
    /// instead (RFC 7143 section 11.13.5).
    pub const fn is_redirect(self) -> bool {
        matches!(self.class(), StatusClass::Redirection)
    }

    /// True for class 2: RFC 7143 section 11.13.5 says the initiator "most
    /// likely caused the error"; retrying the same login will fail again.
    pub const fn is_initiator_error(self) -> bool {
        matches!(self.class(), StatusClass::InitiatorError)
    }

    /// True for target errors (class 3): the target is "currently incapable
    /// of fulfilling the request" (RFC 7143 section 11.13.5), so the same
    /// login may succeed later.
    pub const fn is_retryable(self) -> bool {
        matches!(self.class(), StatusClass::TargetError)
    }

    /// A short lowercase description, e.g. `"authentication failure"`.
    pub const fn description(self) -> &'static str {
        use LoginStatus::*;
        match self {
            Success => "success",
            TargetMovedTemporarily => "target moved temporarily",
            TargetMovedPermanently => "target moved permanently",
            InitiatorError => "initiator error",
            AuthenticationFailure => "authentication failure",
            AuthorizationFailure => "authorization failure",
            NotFound => "target not found",
            TargetRemoved => "target removed",
            UnsupportedVersion => "unsupported version",
            TooManyConnections => "too many connections",
            MissingParameter => "missing parameter",
            CantIncludeInSession => "can't include in session",
            SessionTypeNotSupported => "session type not supported",
            SessionDoesNotExist => "session does not exist",
            InvalidDuringLogin => "invalid request during login",
            TargetError => "target error",
            ServiceUnavailable => "service unavailable",
            OutOfResources => "out of resources",
            Unknown { .. } => "unknown status",
        }
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (status 0x{:04x})", self.description(), self.code())
    }
}

impl From<u16> for LoginStatus {
    fn from(code: u16) -> Self {
        Self::from_u16(code)
    }
}
