//! Configuration of a target session.

use crate::network_portal::NetworkPortal;
use crate::prelude::*;
use core::time::Duration;

use crate::login::chap::ChapAlgorithm;
use crate::login::{ChapCredentials, OperationalParams};

/// `with_*` builder methods: each sets one field and returns the value.
macro_rules! with_fields {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}
pub(crate) use with_fields;

/// One target node served on this portal (RFC 7143 section 4.2.7: an iSCSI
/// name identifies the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetNode {
    /// TargetName (RFC 7143 section 13.4).
    pub name: String,
    /// TargetAlias (RFC 7143 section 13.6), sent in the operational stage.
    pub alias: Option<String>,
    /// The LUNs this node exposes, in their 8-byte wire form (see
    /// [`crate::scsi::Lun`]). Used to answer task management requests
    /// with "LUN does not exist" (RFC 7143 section 11.6.1); SCSI commands
    /// to other LUNs are still handed to the application, which answers
    /// them (e.g. LOGICAL UNIT NOT SUPPORTED).
    pub luns: Vec<u64>,
}

impl TargetNode {
    /// A node with LUN 0 only and no alias.
    pub fn new(name: impl Into<String>) -> Self {
        TargetNode {
            name: name.into(),
            alias: None,
            luns: vec![0],
        }
    }
}

/// How the target authenticates initiators (RFC 7143 section 12).
#[derive(Debug, Clone, Default)]
pub enum TargetAuth {
    /// AuthMethod=None.
    #[default]
    None,
    /// AuthMethod=CHAP (RFC 7143 section 12.1.3).
    Chap {
        /// The initiator's name and secret, to verify CHAP_N/CHAP_R.
        initiator: ChapCredentials,
        /// The target's name and secret for mutual CHAP, if offered.
        mutual: Option<ChapCredentials>,
        /// Accepted algorithms (default MD5 only).
        algorithms: Vec<ChapAlgorithm>,
    },
}

impl TargetAuth {
    /// CHAP with MD5 and no mutual authentication.
    pub fn chap(initiator: ChapCredentials) -> Self {
        TargetAuth::Chap {
            initiator,
            mutual: None,
            algorithms: vec![ChapAlgorithm::Md5],
        }
    }

    /// CHAP with MD5, verifying the initiator and answering its challenge.
    pub fn mutual_chap(initiator: ChapCredentials, target: ChapCredentials) -> Self {
        TargetAuth::Chap {
            initiator,
            mutual: Some(target),
            algorithms: vec![ChapAlgorithm::Md5],
        }
    }
}

/// Target-initiated NOP-In pings (RFC 7143 section 11.19: a NOP-In with a
/// valid Target Transfer Tag asks the initiator for a NOP-Out answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopConfig {
    /// Time without any received PDU before a ping is sent.
    pub interval: Duration,
    /// Time to wait for the NOP-Out answer before dropping the connection.
    pub timeout: Duration,
}

/// Everything a target session needs. The core draws no randomness: the
/// CHAP identifiers and challenges, the initial StatSN and the Target
/// Transfer Tags are derived from [`SessionConfig::seed`], and the TSIH is given.
///
/// `#[non_exhaustive]`: build it with [`SessionConfig::new`] and the
/// `with_*` methods (or assign fields of a value you have):
///
/// ```
/// use iscsi_proto::target::SessionConfig;
/// let cfg = SessionConfig::new("iqn.2026-01.example:disk")
///     .with_cmd_window(64)
///     .with_allow_discovery(false);
/// assert_eq!(cfg.cmd_window, 64);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Target nodes served (at least one).
    pub targets: Vec<TargetNode>,
    /// Portals reported by SendTargets.
    pub portals: Vec<NetworkPortal>,
    /// TargetPortalGroupTag of the portal this connection arrived on
    /// (RFC 7143 section 13.9).
    pub portal_group_tag: u16,
    /// Authentication of Normal sessions.
    pub auth: TargetAuth,
    /// Authentication of Discovery sessions.
    pub discovery_auth: TargetAuth,
    /// Whether SessionType=Discovery is accepted (else 0x0209).
    pub allow_discovery: bool,
    /// The target's operational limits and preferences (MaxRecvDataSegmentLength,
    /// MaxBurstLength, FirstBurstLength, InitialR2T, ImmediateData,
    /// MaxOutstandingR2T, digests accepted). `error_recovery_level` is
    /// the highest ErrorRecoveryLevel offered (RFC 7143 section 13.20: the
    /// result is the lower of both offers), up to 2; when it is above 0, MaxOutstandingR2T is offered as 1
    /// (section 13.17 via 13.19: "if ErrorRecoveryLevel is not 0 and
    /// DataSequenceInOrder is set to Yes then MaxOutstandingR2T MUST be
    /// set to 1"). `max_connections` is the most connections a session
    /// may have (section 13.2; further connections join through the
    /// [`Portal`](super::Portal)). DataPDUInOrder and DataSequenceInOrder
    /// are forced to Yes.
    pub params: OperationalParams,
    /// Command window depth: MaxCmdSN = ExpCmdSN + depth - 1 (at least 1).
    pub cmd_window: u32,
    /// Immediate SCSI commands accepted at the same time; more are
    /// rejected with reason 0x06 (RFC 7143 section 11.17.1).
    pub max_immediate_tasks: u32,
    /// Largest Expected Data Transfer Length accepted; larger commands
    /// end with CHECK CONDITION, ILLEGAL REQUEST.
    pub max_transfer_length: u32,
    /// NOP-In pings, if any.
    pub nop: Option<NopConfig>,
    /// The TSIH given to the session in the final Login Response (non-zero).
    pub tsih: u16,
    /// Seed for CHAP challenges, the initial StatSN and transfer tags.
    pub seed: u64,
    /// Length of the CHAP challenge issued (RFC 7143 section 12.1.3).
    pub chap_challenge_len: usize,
    /// High-water mark of the transmit queue: while more PDUs wait,
    /// `handle_input` stops decoding (back-pressure on the initiator).
    pub max_queued_transmits: usize,
    /// At ErrorRecoveryLevel >= 1: bytes of read data, and separately of
    /// response data segments, kept for retransmission until the
    /// initiator acknowledges them (RFC 7143 sections 7.2 and 11.16).
    /// What falls outside it cannot be retransmitted: a SNACK for it is
    /// answered with Reject "SNACK Reject" (section 11.17.1).
    pub retention_budget: usize,
    /// At ErrorRecoveryLevel >= 1: set the A bit on the last Data-In of
    /// every sequence (RFC 7143 section 11.7.2: at most "once every
    /// MaxBurstLength bytes"), so that the initiator's DataACK frees the
    /// retained data before the status is acknowledged.
    pub request_data_ack: bool,
    /// Sequence reception timeout for solicited and unsolicited Data-Out
    /// (RFC 7143 section 7.1.4.1 b: "Sequence reception timeout (no data
    /// or partial-data-and-no-F-bit)"): a write whose awaited Data-Out
    /// stops arriving for this long gets a recovery R2T for the missing
    /// part at ErrorRecoveryLevel >= 1 (after three in a row without data,
    /// or at level 0, its connection fails: section 7.1.5); a task already
    /// failing ends with its CHECK CONDITION. `None`: wait forever.
    pub data_out_timeout: Option<Duration>,
}

impl SessionConfig {
    /// A configuration serving one target node with LUN 0, no
    /// authentication, RFC default operational values, window depth 32.
    pub fn new(target_name: impl Into<String>) -> Self {
        SessionConfig {
            targets: vec![TargetNode::new(target_name)],
            portals: Vec::new(),
            portal_group_tag: 1,
            auth: TargetAuth::None,
            discovery_auth: TargetAuth::None,
            allow_discovery: true,
            params: OperationalParams::default(),
            cmd_window: 32,
            max_immediate_tasks: 8,
            max_transfer_length: 16 * 1024 * 1024,
            nop: None,
            tsih: 1,
            seed: 0,
            chap_challenge_len: 16,
            max_queued_transmits: 1024,
            retention_budget: 4 * 1024 * 1024,
            request_data_ack: false,
            data_out_timeout: Some(Duration::from_secs(30)),
        }
    }

    with_fields! {
        /// Sets [`targets`](Self::targets).
        with_targets: targets: Vec<TargetNode>,
        /// Sets [`portals`](Self::portals).
        with_portals: portals: Vec<NetworkPortal>,
        /// Sets [`portal_group_tag`](Self::portal_group_tag).
        with_portal_group_tag: portal_group_tag: u16,
        /// Sets [`auth`](Self::auth).
        with_auth: auth: TargetAuth,
        /// Sets [`discovery_auth`](Self::discovery_auth).
        with_discovery_auth: discovery_auth: TargetAuth,
        /// Sets [`allow_discovery`](Self::allow_discovery).
        with_allow_discovery: allow_discovery: bool,
        /// Sets [`params`](Self::params).
        with_params: params: OperationalParams,
        /// Sets [`cmd_window`](Self::cmd_window).
        with_cmd_window: cmd_window: u32,
        /// Sets [`max_immediate_tasks`](Self::max_immediate_tasks).
        with_max_immediate_tasks: max_immediate_tasks: u32,
        /// Sets [`max_transfer_length`](Self::max_transfer_length).
        with_max_transfer_length: max_transfer_length: u32,
        /// Sets [`nop`](Self::nop).
        with_nop: nop: Option<NopConfig>,
        /// Sets [`tsih`](Self::tsih).
        with_tsih: tsih: u16,
        /// Sets [`seed`](Self::seed).
        with_seed: seed: u64,
        /// Sets [`chap_challenge_len`](Self::chap_challenge_len).
        with_chap_challenge_len: chap_challenge_len: usize,
        /// Sets [`max_queued_transmits`](Self::max_queued_transmits).
        with_max_queued_transmits: max_queued_transmits: usize,
        /// Sets [`retention_budget`](Self::retention_budget).
        with_retention_budget: retention_budget: usize,
        /// Sets [`request_data_ack`](Self::request_data_ack).
        with_request_data_ack: request_data_ack: bool,
        /// Sets [`data_out_timeout`](Self::data_out_timeout).
        with_data_out_timeout: data_out_timeout: Option<Duration>,
    }
}
