//! The one declarative table of RFC 7143 text keys (sections 12 and 13).
//!
//! Every key the negotiation engine understands is described here once: its
//! value type and bounds, the result function that combines an offer with
//! the acceptor's choice, its scope, when it may be used, who may send it,
//! and its default. [`super::negotiation`] is driven entirely by this table.

/// How a key's value is written (RFC 7143 section 6.1 value forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueType {
    /// `Yes` or `No`.
    Bool,
    /// A numerical-value within `min..=max`.
    Number {
        /// Smallest admissible value.
        min: u64,
        /// Largest admissible value.
        max: u64,
    },
    /// A numeric-range `a~b` within `min..=max` (obsolete marker intervals).
    Range {
        /// Smallest admissible value.
        min: u64,
        /// Largest admissible value.
        max: u64,
    },
    /// A list-of-values drawn from the given known values (unknown values in
    /// an offer are ignored, RFC 7143 section 6.2.1).
    List(&'static [&'static str]),
    /// One value out of the given set.
    Enum(&'static [&'static str]),
    /// A text-value (at most 255 bytes).
    Text,
    /// An iSCSI-name-value (at most 223 bytes, RFC 7143 section 4.2.7.1).
    IscsiName,
    /// An iSCSI-local-name-value: UTF-8 text (aliases).
    LocalName,
    /// A binary-value (CHAP challenges and responses), decoded length bounded.
    Binary {
        /// Largest decoded length.
        max_len: usize,
    },
}

/// The result function of a key (RFC 7143 sections 6.2.1, 6.2.2 and 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultRule {
    /// Declared by one side, no answer.
    Declarative,
    /// The acceptor picks the first offered value it supports (6.2.1).
    List,
    /// Result is the smaller of the two values.
    Min,
    /// Result is the larger of the two values.
    Max,
    /// Boolean AND: an offer of `No` determines the result.
    And,
    /// Boolean OR: an offer of `Yes` determines the result.
    Or,
    /// Obsoleted by RFC 7143 section 13.25; a responder "SHOULD respond
    /// with the constant Reject".
    Obsolete,
    /// Security-stage key exchanged by the authentication method (CHAP),
    /// handled by [`super::chap`], not by the negotiation engine.
    Auth,
}

/// Whether a key binds the whole session or one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// SW: session-wide.
    Session,
    /// CO: connection-only.
    Connection,
}

/// When a key may be sent (RFC 7143 section 13 "Use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// LO: leading connection's login only.
    LeadingOnly,
    /// IO: Login Phase only (initialize-only).
    InitializeOnly,
    /// ALL: Login and Full Feature Phase.
    All,
    /// FFPO: Full Feature Phase only.
    FullFeatureOnly,
    /// SW security word: the security negotiation stage only.
    SecurityOnly,
}

/// Who may send a key (as a proposal or declaration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Senders {
    /// Only the initiator.
    Initiator,
    /// Only the target.
    Target,
    /// Either side.
    Both,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    /// The key name, case-sensitive.
    pub name: &'static str,
    /// Value form and bounds.
    pub value: ValueType,
    /// Result function.
    pub rule: ResultRule,
    /// Session or connection.
    pub scope: Scope,
    /// When it may be used.
    pub usage: Usage,
    /// Who may send it.
    pub senders: Senders,
    /// Default value in wire spelling, if the RFC gives one.
    pub default: Option<&'static str>,
    /// RFC 7143 "Irrelevant when: SessionType=Discovery".
    pub irrelevant_in_discovery: bool,
    /// The RFC 7143 section defining the key.
    pub section: &'static str,
}

/// 2^24 - 1: the upper bound of the data-length keys (RFC 7143 sections
/// 13.12-13.14: "<numerical-value-512-to-(2**24 - 1)>").
pub const MAX_DATA_LEN: u64 = (1 << 24) - 1;

const DIGESTS: &[&str] = &["CRC32C", "None"];
const AUTH_METHODS: &[&str] = &["KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None"];
const TASK_REPORTING: &[&str] = &["RFC3720", "ResponseFence", "FastAbort"];
const SESSION_TYPES: &[&str] = &["Discovery", "Normal"];

macro_rules! key {
    ($name:expr, $value:expr, $rule:ident, $scope:ident, $usage:ident, $senders:ident,
     $default:expr, $irr:expr, $section:expr) => {
        KeyDef {
            name: $name,
            value: $value,
            rule: ResultRule::$rule,
            scope: Scope::$scope,
            usage: Usage::$usage,
            senders: Senders::$senders,
            default: $default,
            irrelevant_in_discovery: $irr,
            section: $section,
        }
    };
}

const fn num(min: u64, max: u64) -> ValueType {
    ValueType::Number { min, max }
}

/// Every key of RFC 7143 sections 12.1 and 13 (including the obsoleted
/// marker keys of 13.25), in RFC order.
pub static KEYS: &[KeyDef] = &[
    // 12.1: "AuthMethod = <list-of-values>" ... "Default is None", list.
    key!(
        "AuthMethod",
        ValueType::List(AUTH_METHODS),
        List,
        Connection,
        SecurityOnly,
        Both,
        Some("None"),
        false,
        "12.1"
    ),
    // 12.1.3 CHAP: A is a list of numbers, I a number, C and R
    // large-binary-values of at most 1024 bytes, N a text string.
    key!(
        "CHAP_A",
        ValueType::Text,
        Auth,
        Connection,
        SecurityOnly,
        Both,
        None,
        false,
        "12.1.3"
    ),
    key!(
        "CHAP_I",
        num(0, 255),
        Auth,
        Connection,
        SecurityOnly,
        Both,
        None,
        false,
        "12.1.3"
    ),
    key!(
        "CHAP_C",
        ValueType::Binary { max_len: 1024 },
        Auth,
        Connection,
        SecurityOnly,
        Both,
        None,
        false,
        "12.1.3"
    ),
    key!(
        "CHAP_N",
        ValueType::Text,
        Auth,
        Connection,
        SecurityOnly,
        Both,
        None,
        false,
        "12.1.3"
    ),
    key!(
        "CHAP_R",
        ValueType::Binary { max_len: 1024 },
        Auth,
        Connection,
        SecurityOnly,
        Both,
        None,
        false,
        "12.1.3"
    ),
    // 13.1: "HeaderDigest = <list-of-values>", "Default is None", list, IO, CO.
    key!(
        "HeaderDigest",
        ValueType::List(DIGESTS),
        List,
        Connection,
        InitializeOnly,
        Both,
        Some("None"),
        false,
        "13.1"
    ),
    key!(
        "DataDigest",
        ValueType::List(DIGESTS),
        List,
        Connection,
        InitializeOnly,
        Both,
        Some("None"),
        false,
        "13.1"
    ),
    // 13.2: "MaxConnections=<numerical-value-from-1-to-65535>", default 1, Minimum.
    key!(
        "MaxConnections",
        num(1, 65535),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("1"),
        true,
        "13.2"
    ),
    // 13.3: SendTargets, FFPO, initiator (declarative request).
    key!(
        "SendTargets",
        ValueType::Text,
        Declarative,
        Session,
        FullFeatureOnly,
        Initiator,
        None,
        false,
        "13.3"
    ),
    // 13.4: TargetName, IO by initiator, FFPO by target (SendTargets answers).
    key!(
        "TargetName",
        ValueType::IscsiName,
        Declarative,
        Session,
        InitializeOnly,
        Both,
        None,
        false,
        "13.4"
    ),
    // 13.5: InitiatorName, IO, declarative.
    key!(
        "InitiatorName",
        ValueType::IscsiName,
        Declarative,
        Session,
        InitializeOnly,
        Initiator,
        None,
        false,
        "13.5"
    ),
    // 13.6: TargetAlias, ALL, target, declarative.
    key!(
        "TargetAlias",
        ValueType::LocalName,
        Declarative,
        Session,
        All,
        Target,
        None,
        false,
        "13.6"
    ),
    // 13.7: InitiatorAlias, ALL, initiator, declarative.
    key!(
        "InitiatorAlias",
        ValueType::LocalName,
        Declarative,
        Session,
        All,
        Initiator,
        None,
        false,
        "13.7"
    ),
    // 13.8: TargetAddress, ALL, target, declarative (may repeat).
    key!(
        "TargetAddress",
        ValueType::Text,
        Declarative,
        Session,
        All,
        Target,
        None,
        false,
        "13.8"
    ),
    // 13.9: "TargetPortalGroupTag=<16-bit-binary-value>", IO by target.
    key!(
        "TargetPortalGroupTag",
        num(0, 65535),
        Declarative,
        Session,
        InitializeOnly,
        Target,
        None,
        false,
        "13.9"
    ),
    // 13.10: InitialR2T, "Default is Yes", "Result function is OR".
    key!(
        "InitialR2T",
        ValueType::Bool,
        Or,
        Session,
        LeadingOnly,
        Both,
        Some("Yes"),
        true,
        "13.10"
    ),
    // 13.11: ImmediateData, "Default is Yes", "Result function is AND".
    key!(
        "ImmediateData",
        ValueType::Bool,
        And,
        Session,
        LeadingOnly,
        Both,
        Some("Yes"),
        true,
        "13.11"
    ),
    // 13.12: MaxRecvDataSegmentLength, 512..2^24-1, default 8192, declarative, CO.
    key!(
        "MaxRecvDataSegmentLength",
        num(512, MAX_DATA_LEN),
        Declarative,
        Connection,
        All,
        Both,
        Some("8192"),
        false,
        "13.12"
    ),
    // 13.13: MaxBurstLength, 512..2^24-1, default 262144, Minimum.
    key!(
        "MaxBurstLength",
        num(512, MAX_DATA_LEN),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("262144"),
        true,
        "13.13"
    ),
    // 13.14: FirstBurstLength, 512..2^24-1, default 65536, Minimum.
    key!(
        "FirstBurstLength",
        num(512, MAX_DATA_LEN),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("65536"),
        true,
        "13.14"
    ),
    // 13.15: DefaultTime2Wait, 0..3600, default 2, Maximum.
    key!(
        "DefaultTime2Wait",
        num(0, 3600),
        Max,
        Session,
        LeadingOnly,
        Both,
        Some("2"),
        false,
        "13.15"
    ),
    // 13.16: DefaultTime2Retain, 0..3600, default 20, Minimum.
    key!(
        "DefaultTime2Retain",
        num(0, 3600),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("20"),
        false,
        "13.16"
    ),
    // 13.17: MaxOutstandingR2T, 1..65535, default 1, Minimum.
    key!(
        "MaxOutstandingR2T",
        num(1, 65535),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("1"),
        true,
        "13.17"
    ),
    // 13.18: DataPDUInOrder, default Yes, OR.
    key!(
        "DataPDUInOrder",
        ValueType::Bool,
        Or,
        Session,
        LeadingOnly,
        Both,
        Some("Yes"),
        true,
        "13.18"
    ),
    // 13.19: DataSequenceInOrder, default Yes, OR.
    key!(
        "DataSequenceInOrder",
        ValueType::Bool,
        Or,
        Session,
        LeadingOnly,
        Both,
        Some("Yes"),
        true,
        "13.19"
    ),
    // 13.20: ErrorRecoveryLevel, 0..2, default 0, Minimum.
    key!(
        "ErrorRecoveryLevel",
        num(0, 2),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("0"),
        false,
        "13.20"
    ),
    // 13.21: SessionType, "Discovery|Normal", default Normal, LO, initiator.
    key!(
        "SessionType",
        ValueType::Enum(SESSION_TYPES),
        Declarative,
        Session,
        LeadingOnly,
        Initiator,
        Some("Normal"),
        false,
        "13.21"
    ),
    // 13.23: TaskReporting, list, default RFC3720, LO.
    key!(
        "TaskReporting",
        ValueType::List(TASK_REPORTING),
        List,
        Session,
        LeadingOnly,
        Both,
        Some("RFC3720"),
        true,
        "13.23"
    ),
    // 13.24: iSCSIProtocolLevel, 0..31, default 1, Minimum, LO.
    key!(
        "iSCSIProtocolLevel",
        num(0, 31),
        Min,
        Session,
        LeadingOnly,
        Both,
        Some("1"),
        true,
        "13.24"
    ),
    // 13.25: obsoleted marker keys of RFC 3720.
    key!(
        "OFMarker",
        ValueType::Bool,
        Obsolete,
        Connection,
        InitializeOnly,
        Both,
        Some("No"),
        false,
        "13.25"
    ),
    key!(
        "IFMarker",
        ValueType::Bool,
        Obsolete,
        Connection,
        InitializeOnly,
        Both,
        Some("No"),
        false,
        "13.25"
    ),
    key!(
        "OFMarkInt",
        ValueType::Range { min: 1, max: 65535 },
        Obsolete,
        Connection,
        InitializeOnly,
        Both,
        Some("2048"),
        false,
        "13.25"
    ),
    key!(
        "IFMarkInt",
        ValueType::Range { min: 1, max: 65535 },
        Obsolete,
        Connection,
        InitializeOnly,
        Both,
        Some("2048"),
        false,
        "13.25"
    ),
];

/// Looks a key up by its exact (case-sensitive) name.
pub fn lookup(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// True for private (`X-`) and IANA-registered (`X#`) extension keys
/// (RFC 7143 section 13.22), which this implementation answers with
/// `NotUnderstood`.
pub fn is_extension_key(name: &str) -> bool {
    name.starts_with("X-") || name.starts_with("X#")
}

/// True if RFC 7143 lets the key appear more than once in one text
/// (section 6.2: "except for responses to specific keys that explicitly
/// allow repeated key declarations (e.g., TargetAddress)"); in SendTargets
/// responses each target has its own `TargetName` followed by its
/// `TargetAddress` lines (section 13.3).
pub fn may_repeat(name: &str) -> bool {
    matches!(name, "TargetAddress" | "TargetName")
}
