//! Login Response status class/detail (RFC 7143 section 11.13.5).

use iscsi_proto::login::status::{LoginStatus, StatusClass};

#[test]
fn status_every_named_code_roundtrips_and_displays() {
    let table: &[(u16, LoginStatus, &str)] = &[
        (0x0000, LoginStatus::Success, "success"),
        (
            0x0101,
            LoginStatus::TargetMovedTemporarily,
            "target moved temporarily",
        ),
        (
            0x0102,
            LoginStatus::TargetMovedPermanently,
            "target moved permanently",
        ),
        (0x0200, LoginStatus::InitiatorError, "initiator error"),
        (
            0x0201,
            LoginStatus::AuthenticationFailure,
            "authentication failure",
        ),
        (
            0x0202,
            LoginStatus::AuthorizationFailure,
            "authorization failure",
        ),
        (0x0203, LoginStatus::NotFound, "target not found"),
        (0x0204, LoginStatus::TargetRemoved, "target removed"),
        (
            0x0205,
            LoginStatus::UnsupportedVersion,
            "unsupported version",
        ),
        (
            0x0206,
            LoginStatus::TooManyConnections,
            "too many connections",
        ),
        (0x0207, LoginStatus::MissingParameter, "missing parameter"),
        (
            0x0208,
            LoginStatus::CantIncludeInSession,
            "can't include in session",
        ),
        (
            0x0209,
            LoginStatus::SessionTypeNotSupported,
            "session type not supported",
        ),
        (
            0x020a,
            LoginStatus::SessionDoesNotExist,
            "session does not exist",
        ),
        (
            0x020b,
            LoginStatus::InvalidDuringLogin,
            "invalid request during login",
        ),
        (0x0300, LoginStatus::TargetError, "target error"),
        (
            0x0301,
            LoginStatus::ServiceUnavailable,
            "service unavailable",
        ),
        (0x0302, LoginStatus::OutOfResources, "out of resources"),
    ];
    for &(code, status, text) in table {
        assert_eq!(LoginStatus::from_u16(code), status);
        assert_eq!(LoginStatus::from_raw((code >> 8) as u8, code as u8), status);
        assert_eq!(status.code(), code);
        assert_eq!(status.to_string(), format!("{text} (status 0x{code:04x})"));
    }
    assert_eq!(
        LoginStatus::AuthenticationFailure.to_string(),
        "authentication failure (status 0x0201)"
    );
}

#[test]
fn status_classes_and_retryability() {
    assert!(LoginStatus::Success.is_success());
    assert!(!LoginStatus::Success.is_retryable());
    assert!(LoginStatus::TargetMovedTemporarily.is_redirect());
    assert!(LoginStatus::TargetMovedPermanently.is_redirect());
    for s in [
        LoginStatus::TargetError,
        LoginStatus::ServiceUnavailable,
        LoginStatus::OutOfResources,
    ] {
        assert!(s.is_retryable(), "{s}");
        assert_eq!(s.class(), StatusClass::TargetError);
    }
    for code in 0x0200..=0x020b {
        let s = LoginStatus::from_u16(code);
        assert!(!s.is_retryable(), "{s}");
        assert!(s.is_initiator_error(), "{s}");
    }
    let unknown = LoginStatus::from_raw(2, 0x55);
    assert_eq!(
        unknown,
        LoginStatus::Unknown {
            class: 2,
            detail: 0x55
        }
    );
    assert_eq!(unknown.code(), 0x0255);
    assert!(unknown.is_initiator_error());
    assert_eq!(unknown.to_string(), "unknown status (status 0x0255)");
    assert_eq!(LoginStatus::from_raw(9, 1).class(), StatusClass::Unknown(9));
    assert!(LoginStatus::from_raw(3, 0x77).is_retryable());
}
