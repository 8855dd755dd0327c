//! High-level representations (`Repr`s) of the 18 PDU kinds of RFC 7143
//! section 11, their field enums, and the [`Header`] sum type.
//!
//! Each `Repr` has `parse(&Bhs<T>) -> Result<Self, WireError>` and
//! `emit(&self, &mut Bhs<T>)`. `emit` writes every byte of the BHS except
//! TotalAHSLength and DataSegmentLength (bytes 4-7, the framing fields),
//! which it leaves untouched: the PDU encoder
//! ([`encode_header`](super::frame::encode_header)) writes them. Reserved
//! fields are emitted as 0 and ignored by `parse` (RFC 7143 section 11.2.1:
//! reserved fields "MUST be 0" when sent and are ignored on receipt).
//!
//! Parsing neither allocates nor copies anything but the fixed-size fields.

use bytes::Bytes;

use super::bhs::{Bhs, Opcode};
use super::error::WireError;
use super::serial::Serial;

macro_rules! code_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident, section $sec:literal {
            $( $(#[$vm:meta])* $var:ident = $val:literal, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            #[doc = concat!(
                "A value RFC 7143 section ", $sec,
                " reserves or leaves to vendors, kept as received. \
                 [`", stringify!($name), "::from_u8`] never puts a named value here."
            )]
            Other(u8),
        }

        impl $name {
            /// Decodes the wire value; values without a name become `Other`.
            #[inline]
            pub const fn from_u8(v: u8) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    other => $name::Other(other),
                }
            }

            /// The wire value.
            #[inline]
            pub const fn to_u8(self) -> u8 {
                match self {
                    $( $name::$var => $val, )*
                    $name::Other(v) => v,
                }
            }
        }

        impl From<u8> for $name {
            #[inline]
            fn from(v: u8) -> Self {
                $name::from_u8(v)
            }
        }
    };
}

code_enum! {
    /// Task attributes of a SCSI Command (RFC 7143 section 11.3.1, 3 bits).
    pub enum TaskAttr, section "11.3.1" {
        /// 0: Untagged.
        Untagged = 0,
        /// 1: Simple.
        Simple = 1,
        /// 2: Ordered.
        Ordered = 2,
        /// 3: Head of Queue.
        HeadOfQueue = 3,
        /// 4: ACA.
        Aca = 4,
    }
}

code_enum! {
    /// Task Management function codes (RFC 7143 section 11.5.1). Unknown
    /// codes are kept: the target answers them with response 5, "Task
    /// management function not supported" (section 11.6.1).
    pub enum TmfFunction, section "11.5.1" {
        /// 1: ABORT TASK.
        AbortTask = 1,
        /// 2: ABORT TASK SET.
        AbortTaskSet = 2,
        /// 3: CLEAR ACA.
        ClearAca = 3,
        /// 4: CLEAR TASK SET.
        ClearTaskSet = 4,
        /// 5: LOGICAL UNIT RESET.
        LogicalUnitReset = 5,
        /// 6: TARGET WARM RESET.
        TargetWarmReset = 6,
        /// 7: TARGET COLD RESET.
        TargetColdReset = 7,
        /// 8: TASK REASSIGN.
        TaskReassign = 8,
    }
}

code_enum! {
    /// Task Management Function Response codes (RFC 7143 section 11.6.1).
    pub enum TmfResponse, section "11.6.1" {
        /// 0: Function complete.
        FunctionComplete = 0,
        /// 1: Task does not exist.
        TaskDoesNotExist = 1,
        /// 2: LUN does not exist.
        LunDoesNotExist = 2,
        /// 3: Task still allegiant.
        TaskStillAllegiant = 3,
        /// 4: Task allegiance reassignment not supported.
        ReassignmentNotSupported = 4,
        /// 5: Task management function not supported.
        NotSupported = 5,
        /// 6: Function authorization failed.
        AuthorizationFailed = 6,
        /// 255: Function rejected.
        Rejected = 255,
    }
}

code_enum! {
    /// Logout Request reason codes (RFC 7143 section 11.14.1, 7 bits).
    pub enum LogoutReason, section "11.14.1" {
        /// 0: close the session.
        CloseSession = 0,
        /// 1: close the connection.
        CloseConnection = 1,
        /// 2: remove the connection for recovery.
        RemoveForRecovery = 2,
    }
}

code_enum! {
    /// Logout Response codes (RFC 7143 section 11.15.1).
    pub enum LogoutResponseCode, section "11.15.1" {
        /// 0: connection or session closed successfully.
        Success = 0,
        /// 1: CID not found.
        CidNotFound = 1,
        /// 2: connection recovery is not supported.
        RecoveryNotSupported = 2,
        /// 3: cleanup failed for various reasons.
        CleanupFailed = 3,
    }
}

code_enum! {
    /// SCSI Response "Response" codes (RFC 7143 section 11.4.3);
    /// 0x80-0xff are vendor specific and kept as `Other`.
    pub enum ScsiResponseCode, section "11.4.3" {
        /// 0x00: Command Completed at Target.
        CommandCompleted = 0x00,
        /// 0x01: Target Failure.
        TargetFailure = 0x01,
    }
}

code_enum! {
    /// Asynchronous Message event codes (RFC 7143 section 11.9.1).
    pub enum AsyncEvent, section "11.9.1" {
        /// 0: a SCSI asynchronous event is reported in the sense data.
        ScsiEvent = 0,
        /// 1: the target requests a logout.
        LogoutRequested = 1,
        /// 2: the target will drop the connection.
        DropConnection = 2,
        /// 3: the target will drop all connections of the session.
        DropAllConnections = 3,
        /// 4: the target requests parameter negotiation.
        NegotiationRequested = 4,
        /// 255: vendor specific.
        VendorSpecific = 255,
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

code_enum! {
    /// SNACK types (RFC 7143 section 11.16.1, 4 bits).
    pub enum SnackType, section "11.16.1" {
        /// 0: Data/R2T SNACK.
        DataR2t = 0,
        /// 1: Status SNACK.
        Status = 1,
        /// 2: DataACK.
        DataAck = 2,
        /// 3: R-Data SNACK.
        RData = 3,
    }
}

/// A login stage (RFC 7143 section 11.12.3, CSG and NSG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// 0: SecurityNegotiation.
    Security = 0,
    /// 1: LoginOperationalNegotiation.
    Operational = 1,
    /// 3: FullFeaturePhase.
    FullFeature = 3,
}

impl Stage {
    /// Decodes a 2-bit stage. RFC 7143 section 11.12.3: "2 - Reserved";
    /// a reserved stage where one is required is an error.
    pub fn from_bits(v: u8, field: &'static str) -> Result<Stage, WireError> {
        match v & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            other => Err(WireError::ReservedValue {
                field,
                value: u32::from(other),
                section: "11.12.3",
            }),
        }
    }

    /// The 2-bit wire value.
    #[inline]
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// The format of an ISID (RFC 7143 section 11.12.5, the T field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsidType {
    /// 00b: OUI format; A and B hold a 22-bit OUI, C and D a qualifier.
    Oui,
    /// 01b: IANA Enterprise Number; B and C hold the EN, D a qualifier.
    EnterpriseNumber,
    /// 10b: Random; B and C random, D a qualifier.
    Random,
    /// 11b: reserved.
    Reserved,
}

/// The 6-byte Initiator Session ID (RFC 7143 section 11.12.5): T (2 bits),
/// A (6 bits), B (16 bits), C (8 bits), D (16 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isid(pub [u8; 6]);

impl Isid {
    /// Builds an ISID from its T, A, B, C, D fields (T and A are masked to
    /// 2 and 6 bits).
    pub const fn from_fields(t: u8, a: u8, b: u16, c: u8, d: u16) -> Isid {
        let b = b.to_be_bytes();
        let d = d.to_be_bytes();
        Isid([((t & 3) << 6) | (a & 0x3f), b[0], b[1], c, d[0], d[1]])
    }

    /// An OUI-format ISID (T = 00b) from a 22-bit OUI and a 24-bit qualifier.
    pub const fn oui(oui: u32, qualifier: u32) -> Isid {
        let o = (oui & 0x3f_ffff).to_be_bytes();
        let q = qualifier.to_be_bytes();
        Isid([o[1] & 0x3f, o[2], o[3], q[1], q[2], q[3]])
    }

    /// An IANA Enterprise Number ISID (T = 01b) from a 24-bit EN and a qualifier.
    pub const fn enterprise(en: u32, qualifier: u16) -> Isid {
        let e = en.to_be_bytes();
        let q = qualifier.to_be_bytes();
        Isid([0x40, e[1], e[2], e[3], q[0], q[1]])
    }

    /// A random-format ISID (T = 10b) from 24 random bits (supplied by the
    /// caller: the core draws no randomness) and a qualifier.
    pub const fn random(random: [u8; 3], qualifier: u16) -> Isid {
        let q = qualifier.to_be_bytes();
        Isid([0x80, random[0], random[1], random[2], q[0], q[1]])
    }

    /// The T field (2 bits).
    pub const fn t(&self) -> u8 {
        self.0[0] >> 6
    }

    /// The T field decoded.
    pub const fn kind(&self) -> IsidType {
        match self.t() {
            0 => IsidType::Oui,
            1 => IsidType::EnterpriseNumber,
            2 => IsidType::Random,
            _ => IsidType::Reserved,
        }
    }

    /// The A field (6 bits).
    pub const fn a(&self) -> u8 {
        self.0[0] & 0x3f
    }

    /// The B field (16 bits).
    pub const fn b(&self) -> u16 {
        u16::from_be_bytes([self.0[1], self.0[2]])
    }

    /// The C field (8 bits).
    pub const fn c(&self) -> u8 {
        self.0[3]
    }

    /// The D field (16 bits).
    pub const fn d(&self) -> u16 {
        u16::from_be_bytes([self.0[4], self.0[5]])
    }
}

/// A residual count with its overflow/underflow flag (RFC 7143 sections
/// 11.4.5 and 11.7.5): the count is only meaningful when one of the two
/// flags is set, so it is carried inside the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Residual {
    /// Neither O nor U: the count field is reserved.
    #[default]
    None,
    /// O set: bytes that were not transferred because the buffer was too small.
    Overflow(u32),
    /// U set: bytes expected but not transferred.
    Underflow(u32),
}

impl Residual {
    fn from_flags(
        over: bool,
        under: bool,
        count: u32,
        pdu: &'static str,
        section: &'static str,
    ) -> Result<Residual, WireError> {
        match (over, under) {
            (true, true) => Err(WireError::ForbiddenFlags {
                pdu,
                rule: "overflow and underflow bits are mutually exclusive",
                section,
            }),
            (true, false) => Ok(Residual::Overflow(count)),
            (false, true) => Ok(Residual::Underflow(count)),
            (false, false) => Ok(Residual::None),
        }
    }

    /// The overflow count, if the O (or o) bit was set.
    pub const fn overflow(self) -> Option<u32> {
        match self {
            Residual::Overflow(n) => Some(n),
            _ => None,
        }
    }

    /// The underflow count, if the U (or u) bit was set.
    pub const fn underflow(self) -> Option<u32> {
        match self {
            Residual::Underflow(n) => Some(n),
            _ => None,
        }
    }

    /// Bytes actually transferred given the Expected Data Transfer Length
    /// (saturating: `expected - underflow`, or `expected` on overflow, where
    /// the target transferred all it could fit).
    pub const fn transferred(self, expected: u32) -> u32 {
        match self {
            Residual::Underflow(n) => expected.saturating_sub(n),
            Residual::None | Residual::Overflow(_) => expected,
        }
    }

    /// (overflow bit, underflow bit, count field).
    const fn to_parts(self) -> (bool, bool, u32) {
        match self {
            Residual::None => (false, false, 0),
            Residual::Overflow(n) => (true, false, n),
            Residual::Underflow(n) => (false, true, n),
        }
    }
}

fn no_segments<T: AsRef<[u8]>>(
    bhs: &Bhs<T>,
    pdu: &'static str,
    section: &'static str,
) -> Result<(), WireError> {
    if bhs.total_ahs_len() != 0 || bhs.data_segment_len() != 0 {
        return Err(WireError::UnexpectedSegment { pdu, section });
    }
    Ok(())
}

/// NOP-Out (RFC 7143 section 11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopOut {
    /// I: immediate delivery.
    pub immediate: bool,
    /// LUN (echoed from a NOP-In when answering one).
    pub lun: u64,
    /// Initiator Task Tag; 0xffffffff when no response is wanted.
    pub itt: u32,
    /// Target Transfer Tag; a copy of the NOP-In's when answering one.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

impl NopOut {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let r = NopOut {
            immediate: bhs.immediate(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        };
        // RFC 7143 section 11.18.1: "If the Initiator Task Tag contains
        // 0xffffffff, the I bit MUST be set to 1".
        if r.itt == 0xffff_ffff && !r.immediate {
            return Err(WireError::ForbiddenFlags {
                pdu: "NOP-Out",
                rule: "ITT 0xffffffff requires I=1",
                section: "11.18.1",
            });
        }
        Ok(r)
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::NopOut, self.immediate);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}

/// SCSI Command (RFC 7143 section 11.3). Extended CDBs travel in an AHS
/// ([`Ahs::ExtendedCdb`](super::ahs::Ahs::ExtendedCdb)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiCommand {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: no unsolicited Data-Out PDUs follow.
    pub final_pdu: bool,
    /// R: data will be read from the target.
    pub read: bool,
    /// W: data will be written to the target.
    pub write: bool,
    /// ATTR: task attribute.
    pub attr: TaskAttr,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length (section 11.3.4).
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// The first 16 bytes of the CDB (section 11.3.5), zero padded.
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        Ok(ScsiCommand {
            immediate: bhs.immediate(),
            final_pdu: f & 0x80 != 0,
            read: f & 0x40 != 0,
            write: f & 0x20 != 0,
            // RFC 7143 section 11.3.1: ATTR is the low 3 bits of byte 1.
            attr: TaskAttr::from_u8(f & 0x07),
            lun: bhs.lun(),
            itt: bhs.itt(),
            expected_data_transfer_length: bhs.word20(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            cdb: bhs.cdb(),
        })
    }

    /// Writes the BHS (except bytes 4-7). `attr` is truncated to 3 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::ScsiCommand, self.immediate);
        bhs.set_flags(
            u8::from(self.final_pdu) << 7
                | u8::from(self.read) << 6
                | u8::from(self.write) << 5
                | (self.attr.to_u8() & 0x07),
        );
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.expected_data_transfer_length);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_cdb(&self.cdb);
    }
}

/// Task Management Function Request (RFC 7143 section 11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Function (section 11.5.1).
    pub function: TmfFunction,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Referenced Task Tag (section 11.5.4), 0xffffffff when unused.
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// RefCmdSN (section 11.5.5).
    pub ref_cmd_sn: Serial,
    /// ExpDataSN (section 11.5.6).
    pub exp_data_sn: Serial,
}

impl TaskMgmtRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.5.2: "For this PDU TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Task Management Function Request", "11.5.2")?;
        Ok(TaskMgmtRequest {
            immediate: bhs.immediate(),
            function: TmfFunction::from_u8(bhs.flags() & 0x7f),
            lun: bhs.lun(),
            itt: bhs.itt(),
            referenced_task_tag: bhs.word20(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            ref_cmd_sn: Serial(bhs.word32()),
            exp_data_sn: Serial(bhs.word36()),
        })
    }

    /// Writes the BHS (except bytes 4-7). `function` is truncated to 7 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TaskMgmtRequest, self.immediate);
        bhs.set_flags(0x80 | (self.function.to_u8() & 0x7f));
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.referenced_task_tag);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word32(self.ref_cmd_sn.0);
        bhs.set_word36(self.exp_data_sn.0);
    }
}

/// Login Request (RFC 7143 section 11.12). The I bit is always 1 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginRequest {
    /// T: ready to transit to `nsg`.
    pub transit: bool,
    /// C: the text is continued in the next PDU.
    pub cont: bool,
    /// CSG: current stage.
    pub csg: Stage,
    /// NSG: next stage. Only meaningful when `transit` is set; when T=0 the
    /// field is reserved and a reserved value parses as `Security`.
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: Isid,
    /// TSIH (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

/// Parses the T, C, CSG and NSG fields of byte 1 of a login PDU.
fn parse_login_flags(
    f: u8,
    pdu: &'static str,
    c_section: &'static str,
    lenient_stages: bool,
) -> Result<(bool, bool, Stage, Stage), WireError> {
    let transit = f & 0x80 != 0;
    let cont = f & 0x40 != 0;
    // RFC 7143 section 11.12.2 (11.13.7 for responses): "If the C bit is
    // set to 1, the T bit MUST be set to 0."
    if transit && cont {
        return Err(WireError::ForbiddenFlags {
            pdu,
            rule: "C=1 requires T=0",
            section: c_section,
        });
    }
    let csg = match Stage::from_bits(f >> 2, "CSG") {
        Ok(s) => s,
        Err(_) if lenient_stages => Stage::Security,
        Err(e) => return Err(e),
    };
    // RFC 7143 section 11.12.3: "The next stage value is only valid when
    // the T bit is 1; otherwise, it is reserved."
    let nsg = match Stage::from_bits(f, "NSG") {
        Ok(s) => s,
        Err(_) if !transit || lenient_stages => Stage::Security,
        Err(e) => return Err(e),
    };
    Ok((transit, cont, csg, nsg))
}

fn login_flags(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
    u8::from(transit) << 7 | u8::from(cont) << 6 | csg.bits() << 2 | nsg.bits()
}

impl LoginRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let (transit, cont, csg, nsg) =
            parse_login_flags(bhs.flags(), "Login Request", "11.12.2", false)?;
        Ok(LoginRequest {
            transit,
            cont,
            csg,
            nsg,
            version_max: bhs.byte2(),
            version_min: bhs.byte3(),
            isid: Isid(bhs.isid()),
            tsih: bhs.tsih(),
            itt: bhs.itt(),
            cid: bhs.cid(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        // RFC 7143 section 11.12: the I bit of a Login Request is always 1.
        bhs.set_opcode(Opcode::LoginRequest, true);
        bhs.set_flags(login_flags(self.transit, self.cont, self.csg, self.nsg));
        bhs.set_byte2(self.version_max);
        bhs.set_byte3(self.version_min);
        bhs.set_isid(self.isid.0);
        bhs.set_tsih(self.tsih);
        bhs.set_itt(self.itt);
        bhs.set_cid(self.cid);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}

/// Text Request (RFC 7143 section 11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: final PDU of the text sequence.
    pub final_pdu: bool,
    /// C: the text continues in the next PDU.
    pub cont: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff to start a new exchange).
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

fn text_flags(f: u8, pdu: &'static str, section: &'static str) -> Result<(bool, bool), WireError> {
    let fin = f & 0x80 != 0;
    let cont = f & 0x40 != 0;
    // RFC 7143 sections 11.10.2 / 11.11.2: a Text PDU "with the C bit set
    // to 1 MUST have the F bit set to 0".
    if fin && cont {
        return Err(WireError::ForbiddenFlags {
            pdu,
            rule: "C=1 requires F=0",
            section,
        });
    }
    Ok((fin, cont))
}

impl TextRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let (final_pdu, cont) = text_flags(bhs.flags(), "Text Request", "11.10.2")?;
        Ok(TextRequest {
            immediate: bhs.immediate(),
            final_pdu,
            cont,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TextRequest, self.immediate);
        bhs.set_flags(u8::from(self.final_pdu) << 7 | u8::from(self.cont) << 6);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}

/// SCSI Data-Out (RFC 7143 section 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataOut {
    /// F: last PDU of the sequence (unsolicited burst or R2T).
    pub final_pdu: bool,
    /// LUN (copied from the R2T for solicited data).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// DataSN (section 11.7.5).
    pub data_sn: Serial,
    /// Buffer Offset (section 11.7.6).
    pub buffer_offset: u32,
}

impl DataOut {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(DataOut {
            final_pdu: bhs.final_flag(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            data_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::DataOut, false);
        bhs.set_flags(u8::from(self.final_pdu) << 7);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word36(self.data_sn.0);
        bhs.set_word40(self.buffer_offset);
    }
}

/// Logout Request (RFC 7143 section 11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Reason code (section 11.14.1).
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close (not used for "close the session").
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: Serial,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
}

impl LogoutRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.14.2: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Logout Request", "11.14.2")?;
        Ok(LogoutRequest {
            immediate: bhs.immediate(),
            reason: LogoutReason::from_u8(bhs.flags() & 0x7f),
            itt: bhs.itt(),
            cid: bhs.cid(),
            cmd_sn: Serial(bhs.cmd_sn()),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7). `reason` is truncated to 7 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::LogoutRequest, self.immediate);
        bhs.set_flags(0x80 | (self.reason.to_u8() & 0x7f));
        bhs.set_itt(self.itt);
        bhs.set_cid(self.cid);
        bhs.set_word24(self.cmd_sn.0);
        bhs.set_word28(self.exp_stat_sn.0);
    }
}

/// SNACK Request (RFC 7143 section 11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnackRequest {
    /// Type (section 11.16.1), 4 bits.
    pub snack_type: SnackType,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for Status SNACK).
    pub itt: u32,
    /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data).
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: Serial,
    /// BegRun: first DataSN, R2TSN or StatSN to resend (section 11.16.6).
    pub beg_run: Serial,
    /// RunLength (section 11.16.7), 0 for "all from BegRun".
    pub run_length: u32,
}

impl SnackRequest {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(SnackRequest {
            snack_type: SnackType::from_u8(bhs.flags() & 0x0f),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt_or_snack_tag: bhs.word20(),
            exp_stat_sn: Serial(bhs.exp_stat_sn()),
            beg_run: Serial(bhs.word40()),
            run_length: bhs.word44(),
        })
    }

    /// Writes the BHS (except bytes 4-7). `snack_type` is truncated to 4 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::SnackRequest, false);
        bhs.set_flags(0x80 | (self.snack_type.to_u8() & 0x0f));
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.ttt_or_snack_tag);
        bhs.set_word28(self.exp_stat_sn.0);
        bhs.set_word40(self.beg_run.0);
        bhs.set_word44(self.run_length);
    }
}

/// NOP-In (RFC 7143 section 11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopIn {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff when target-initiated).
    pub itt: u32,
    /// Target Transfer Tag (not 0xffffffff when a reply is wanted).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
}

impl NopIn {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(NopIn {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::NopIn, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
    }
}

/// SCSI Response (RFC 7143 section 11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiResponse {
    /// Response (section 11.4.3).
    pub response: ScsiResponseCode,
    /// SCSI status (section 11.4.2), valid when `response` is CommandCompleted.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (section 11.4.4).
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// ExpDataSN (section 11.4.8).
    pub exp_data_sn: Serial,
    /// Bidirectional Read Residual Count with the o/u bits (section 11.4.6).
    pub bidi_read_residual: Residual,
    /// Residual Count with the O/U bits (section 11.4.5).
    pub residual: Residual,
}

impl ScsiResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        // RFC 7143 section 11.4.5.1: "Bits O and U and bits o and u are
        // mutually exclusive (i.e., having both o and u or O and U set to 1
        // is a protocol error)."
        let bidi = Residual::from_flags(
            f & 0x10 != 0,
            f & 0x08 != 0,
            bhs.word40(),
            "SCSI Response",
            "11.4.5.1",
        )?;
        let residual = Residual::from_flags(
            f & 0x04 != 0,
            f & 0x02 != 0,
            bhs.word44(),
            "SCSI Response",
            "11.4.5.1",
        )?;
        Ok(ScsiResponse {
            response: ScsiResponseCode::from_u8(bhs.byte2()),
            status: bhs.byte3(),
            itt: bhs.itt(),
            snack_tag: bhs.word20(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            exp_data_sn: Serial(bhs.word36()),
            bidi_read_residual: bidi,
            residual,
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::ScsiResponse, false);
        let (bo, bu, bn) = self.bidi_read_residual.to_parts();
        let (o, u, n) = self.residual.to_parts();
        bhs.set_flags(
            0x80 | u8::from(bo) << 4 | u8::from(bu) << 3 | u8::from(o) << 2 | u8::from(u) << 1,
        );
        bhs.set_byte2(self.response.to_u8());
        bhs.set_byte3(self.status);
        bhs.set_itt(self.itt);
        bhs.set_word20(self.snack_tag);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.exp_data_sn.0);
        bhs.set_word40(bn);
        bhs.set_word44(n);
    }
}

/// Task Management Function Response (RFC 7143 section 11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtResponse {
    /// Response (section 11.6.1).
    pub response: TmfResponse,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
}

impl TaskMgmtResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.6.3: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Task Management Function Response", "11.6.3")?;
        Ok(TaskMgmtResponse {
            response: TmfResponse::from_u8(bhs.byte2()),
            itt: bhs.itt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TaskMgmtResponse, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.response.to_u8());
        bhs.set_itt(self.itt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
    }
}

/// Login Response (RFC 7143 section 11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginResponse {
    /// T: the target transits to `nsg`.
    pub transit: bool,
    /// C: the text continues in the next PDU.
    pub cont: bool,
    /// CSG. Reserved (parsed leniently as `Security`) when `status_class != 0`.
    pub csg: Stage,
    /// NSG. Reserved when T=0 or `status_class != 0`.
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID.
    pub isid: Isid,
    /// TSIH.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// Status-Class (section 11.13.5): 0 success, 1 redirection,
    /// 2 initiator error, 3 target error.
    pub status_class: u8,
    /// Status-Detail (section 11.13.5).
    pub status_detail: u8,
}

impl LoginResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let status_class = bhs.byte36();
        // RFC 7143 section 11.13.5: on a non-zero Status-Class (login
        // reject or redirect) "the T bit and the CSG and NSG fields are
        // reserved", so reserved stage values are tolerated there.
        let (transit, cont, csg, nsg) =
            parse_login_flags(bhs.flags(), "Login Response", "11.13.7", status_class != 0)?;
        Ok(LoginResponse {
            transit,
            cont,
            csg,
            nsg,
            version_max: bhs.byte2(),
            version_active: bhs.byte3(),
            isid: Isid(bhs.isid()),
            tsih: bhs.tsih(),
            itt: bhs.itt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            status_class,
            status_detail: bhs.byte37(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::LoginResponse, false);
        bhs.set_flags(login_flags(self.transit, self.cont, self.csg, self.nsg));
        bhs.set_byte2(self.version_max);
        bhs.set_byte3(self.version_active);
        bhs.set_isid(self.isid.0);
        bhs.set_tsih(self.tsih);
        bhs.set_itt(self.itt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_byte36(self.status_class);
        bhs.set_byte37(self.status_detail);
    }

    /// Whether the login succeeded so far (Status-Class 0).
    pub const fn is_success(&self) -> bool {
        self.status_class == 0
    }
}

/// Text Response (RFC 7143 section 11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextResponse {
    /// F: final PDU of the text sequence.
    pub final_pdu: bool,
    /// C: the text continues in the next PDU.
    pub cont: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff when the exchange is complete).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
}

impl TextResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let (final_pdu, cont) = text_flags(bhs.flags(), "Text Response", "11.11.2")?;
        Ok(TextResponse {
            final_pdu,
            cont,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::TextResponse, false);
        bhs.set_flags(u8::from(self.final_pdu) << 7 | u8::from(self.cont) << 6);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
    }
}

/// The status carried by a Data-In PDU with the S bit set (RFC 7143
/// section 11.7.3: StatSN, Status and Residual Count "only have meaningful
/// content if the S bit is set to 1").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataInStatus {
    /// SCSI status.
    pub status: u8,
    /// StatSN.
    pub stat_sn: Serial,
    /// Residual Count with the O/U bits.
    pub residual: Residual,
}

/// SCSI Data-In (RFC 7143 section 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataIn {
    /// F: last PDU of the sequence.
    pub final_pdu: bool,
    /// A: the target requests a DataACK SNACK (ErrorRecoveryLevel >= 1).
    pub ack: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff unless `ack`).
    pub ttt: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// DataSN.
    pub data_sn: Serial,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// S bit set: the status of the command (phase collapse).
    pub status: Option<DataInStatus>,
}

impl DataIn {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        let f = bhs.flags();
        let final_pdu = f & 0x80 != 0;
        let s = f & 0x01 != 0;
        // RFC 7143 section 11.7.3: "If the S bit is set to 1, the F bit
        // MUST also be set to 1."
        if s && !final_pdu {
            return Err(WireError::ForbiddenFlags {
                pdu: "SCSI Data-In",
                rule: "S=1 requires F=1",
                section: "11.7.3",
            });
        }
        let status = if s {
            Some(DataInStatus {
                status: bhs.byte3(),
                stat_sn: Serial(bhs.stat_sn()),
                // RFC 7143 section 11.7.3: O and U as in 11.4.5.1, mutually
                // exclusive.
                residual: Residual::from_flags(
                    f & 0x04 != 0,
                    f & 0x02 != 0,
                    bhs.word44(),
                    "SCSI Data-In",
                    "11.7.3",
                )?,
            })
        } else {
            None
        };
        Ok(DataIn {
            final_pdu,
            ack: f & 0x40 != 0,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            data_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
            status,
        })
    }

    /// Writes the BHS (except bytes 4-7). A `status` forces F=1 on the wire.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::DataIn, false);
        let mut f = u8::from(self.final_pdu) << 7 | u8::from(self.ack) << 6;
        if let Some(st) = &self.status {
            let (o, u, n) = st.residual.to_parts();
            f |= 0x80 | u8::from(o) << 2 | u8::from(u) << 1 | 1;
            bhs.set_byte3(st.status);
            bhs.set_word24(st.stat_sn.0);
            bhs.set_word44(n);
        }
        bhs.set_flags(f);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.data_sn.0);
        bhs.set_word40(self.buffer_offset);
    }
}

/// Logout Response (RFC 7143 section 11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutResponse {
    /// Response (section 11.15.1).
    pub response: LogoutResponseCode,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// Time2Wait in seconds (section 11.15.3).
    pub time2wait: u16,
    /// Time2Retain in seconds (section 11.15.4).
    pub time2retain: u16,
}

impl LogoutResponse {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.15.2: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "Logout Response", "11.15.2")?;
        Ok(LogoutResponse {
            response: LogoutResponseCode::from_u8(bhs.byte2()),
            itt: bhs.itt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            time2wait: bhs.half40(),
            time2retain: bhs.half42(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::LogoutResponse, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.response.to_u8());
        bhs.set_itt(self.itt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_half40(self.time2wait);
        bhs.set_half42(self.time2retain);
    }
}

/// Ready To Transfer (RFC 7143 section 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct R2t {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag, to be copied into the Data-Out PDUs.
    pub ttt: u32,
    /// StatSN (the next StatSN; not advanced by the R2T).
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// R2TSN (section 11.8.2).
    pub r2t_sn: Serial,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_data_transfer_length: u32,
}

impl R2t {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        // RFC 7143 section 11.8.1: "For this PDU, TotalAHSLength and
        // DataSegmentLength MUST be 0."
        no_segments(bhs, "R2T", "11.8.1")?;
        Ok(R2t {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.ttt(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            r2t_sn: Serial(bhs.word36()),
            buffer_offset: bhs.word40(),
            desired_data_transfer_length: bhs.word44(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::R2t, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        bhs.set_itt(self.itt);
        bhs.set_ttt(self.ttt);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.r2t_sn.0);
        bhs.set_word40(self.buffer_offset);
        bhs.set_word44(self.desired_data_transfer_length);
    }
}

/// Asynchronous Message (RFC 7143 section 11.9). Its ITT is always
/// 0xffffffff on the wire. The data segment holds SenseLength, sense data
/// and iSCSI event data ([`split_sense`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsyncMessage {
    /// LUN (valid for SCSI async events).
    pub lun: u64,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// AsyncEvent (section 11.9.1).
    pub event: AsyncEvent,
    /// AsyncVCode (vendor code).
    pub vcode: u8,
    /// Parameter1 (e.g. CID for events 2 and 4... see section 11.9.1).
    pub parameter1: u16,
    /// Parameter2 (Time2Wait for events 1-3).
    pub parameter2: u16,
    /// Parameter3 (Time2Retain for events 2-3).
    pub parameter3: u16,
}

impl AsyncMessage {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(AsyncMessage {
            lun: bhs.lun(),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            event: AsyncEvent::from_u8(bhs.byte36()),
            vcode: bhs.byte37(),
            parameter1: bhs.half38(),
            parameter2: bhs.half40(),
            parameter3: bhs.half42(),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::AsyncMessage, false);
        bhs.set_flags(0x80);
        bhs.set_lun(self.lun);
        // RFC 7143 section 11.9: the Initiator Task Tag is 0xffffffff.
        bhs.set_itt(0xffff_ffff);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_byte36(self.event.to_u8());
        bhs.set_byte37(self.vcode);
        bhs.set_half38(self.parameter1);
        bhs.set_half40(self.parameter2);
        bhs.set_half42(self.parameter3);
    }
}

/// Reject (RFC 7143 section 11.17). Its ITT is always 0xffffffff on the
/// wire; the data segment carries the complete header of the bad PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reject {
    /// Reason (section 11.17.1).
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: Serial,
    /// ExpCmdSN.
    pub exp_cmd_sn: Serial,
    /// MaxCmdSN.
    pub max_cmd_sn: Serial,
    /// DataSN/R2TSN of the rejected PDU for SNACK rejects (section 11.17.2).
    pub data_sn_or_r2t_sn: Serial,
}

impl Reject {
    /// Parses the BHS.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Self, WireError> {
        Ok(Reject {
            reason: RejectReason::from_u8(bhs.byte2()),
            stat_sn: Serial(bhs.stat_sn()),
            exp_cmd_sn: Serial(bhs.exp_cmd_sn()),
            max_cmd_sn: Serial(bhs.max_cmd_sn()),
            data_sn_or_r2t_sn: Serial(bhs.word36()),
        })
    }

    /// Writes the BHS (except bytes 4-7).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        bhs.clear_except_lengths();
        bhs.set_opcode(Opcode::Reject, false);
        bhs.set_flags(0x80);
        bhs.set_byte2(self.reason.to_u8());
        // RFC 7143 section 11.17: the Initiator Task Tag is 0xffffffff.
        bhs.set_itt(0xffff_ffff);
        bhs.set_word24(self.stat_sn.0);
        bhs.set_word28(self.exp_cmd_sn.0);
        bhs.set_word32(self.max_cmd_sn.0);
        bhs.set_word36(self.data_sn_or_r2t_sn.0);
    }
}

/// The header of any of the 18 PDU kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is documented by its Repr type
pub enum Header {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    SnackRequest(SnackRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
}

macro_rules! header_dispatch {
    ($self:expr, $h:ident => $e:expr) => {
        match $self {
            Header::NopOut($h) => $e,
            Header::ScsiCommand($h) => $e,
            Header::TaskMgmtRequest($h) => $e,
            Header::LoginRequest($h) => $e,
            Header::TextRequest($h) => $e,
            Header::DataOut($h) => $e,
            Header::LogoutRequest($h) => $e,
            Header::SnackRequest($h) => $e,
            Header::NopIn($h) => $e,
            Header::ScsiResponse($h) => $e,
            Header::TaskMgmtResponse($h) => $e,
            Header::LoginResponse($h) => $e,
            Header::TextResponse($h) => $e,
            Header::DataIn($h) => $e,
            Header::LogoutResponse($h) => $e,
            Header::R2t($h) => $e,
            Header::AsyncMessage($h) => $e,
            Header::Reject($h) => $e,
        }
    };
}

impl Header {
    /// Parses a BHS of any kind. No allocation, no copy beyond the fields.
    pub fn parse<T: AsRef<[u8]>>(bhs: &Bhs<T>) -> Result<Header, WireError> {
        Ok(match bhs.opcode()? {
            Opcode::NopOut => Header::NopOut(NopOut::parse(bhs)?),
            Opcode::ScsiCommand => Header::ScsiCommand(ScsiCommand::parse(bhs)?),
            Opcode::TaskMgmtRequest => Header::TaskMgmtRequest(TaskMgmtRequest::parse(bhs)?),
            Opcode::LoginRequest => Header::LoginRequest(LoginRequest::parse(bhs)?),
            Opcode::TextRequest => Header::TextRequest(TextRequest::parse(bhs)?),
            Opcode::DataOut => Header::DataOut(DataOut::parse(bhs)?),
            Opcode::LogoutRequest => Header::LogoutRequest(LogoutRequest::parse(bhs)?),
            Opcode::SnackRequest => Header::SnackRequest(SnackRequest::parse(bhs)?),
            Opcode::NopIn => Header::NopIn(NopIn::parse(bhs)?),
            Opcode::ScsiResponse => Header::ScsiResponse(ScsiResponse::parse(bhs)?),
            Opcode::TaskMgmtResponse => Header::TaskMgmtResponse(TaskMgmtResponse::parse(bhs)?),
            Opcode::LoginResponse => Header::LoginResponse(LoginResponse::parse(bhs)?),
            Opcode::TextResponse => Header::TextResponse(TextResponse::parse(bhs)?),
            Opcode::DataIn => Header::DataIn(DataIn::parse(bhs)?),
            Opcode::LogoutResponse => Header::LogoutResponse(LogoutResponse::parse(bhs)?),
            Opcode::R2t => Header::R2t(R2t::parse(bhs)?),
            Opcode::AsyncMessage => Header::AsyncMessage(AsyncMessage::parse(bhs)?),
            Opcode::Reject => Header::Reject(Reject::parse(bhs)?),
        })
    }

    /// Parses the first 48 bytes of `bytes` (checking the length).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Header, WireError> {
        Header::parse(&Bhs::new_checked(bytes)?)
    }

    /// Writes the BHS (all bytes except TotalAHSLength and DataSegmentLength).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bhs: &mut Bhs<T>) {
        header_dispatch!(self, h => h.emit(bhs))
    }

    /// The opcode of this header.
    pub const fn opcode(&self) -> Opcode {
        match self {
            Header::NopOut(_) => Opcode::NopOut,
            Header::ScsiCommand(_) => Opcode::ScsiCommand,
            Header::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
            Header::LoginRequest(_) => Opcode::LoginRequest,
            Header::TextRequest(_) => Opcode::TextRequest,
            Header::DataOut(_) => Opcode::DataOut,
            Header::LogoutRequest(_) => Opcode::LogoutRequest,
            Header::SnackRequest(_) => Opcode::SnackRequest,
            Header::NopIn(_) => Opcode::NopIn,
            Header::ScsiResponse(_) => Opcode::ScsiResponse,
            Header::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
            Header::LoginResponse(_) => Opcode::LoginResponse,
            Header::TextResponse(_) => Opcode::TextResponse,
            Header::DataIn(_) => Opcode::DataIn,
            Header::LogoutResponse(_) => Opcode::LogoutResponse,
            Header::R2t(_) => Opcode::R2t,
            Header::AsyncMessage(_) => Opcode::AsyncMessage,
            Header::Reject(_) => Opcode::Reject,
        }
    }

    /// The Initiator Task Tag (0xffffffff for Asynchronous Message and Reject).
    pub const fn itt(&self) -> u32 {
        match self {
            Header::NopOut(h) => h.itt,
            Header::ScsiCommand(h) => h.itt,
            Header::TaskMgmtRequest(h) => h.itt,
            Header::LoginRequest(h) => h.itt,
            Header::TextRequest(h) => h.itt,
            Header::DataOut(h) => h.itt,
            Header::LogoutRequest(h) => h.itt,
            Header::SnackRequest(h) => h.itt,
            Header::NopIn(h) => h.itt,
            Header::ScsiResponse(h) => h.itt,
            Header::TaskMgmtResponse(h) => h.itt,
            Header::LoginResponse(h) => h.itt,
            Header::TextResponse(h) => h.itt,
            Header::DataIn(h) => h.itt,
            Header::LogoutResponse(h) => h.itt,
            Header::R2t(h) => h.itt,
            Header::AsyncMessage(_) | Header::Reject(_) => 0xffff_ffff,
        }
    }

    /// Whether the I (immediate) bit is set (always true for Login Request,
    /// false for PDUs without an I bit).
    pub const fn immediate(&self) -> bool {
        match self {
            Header::NopOut(h) => h.immediate,
            Header::ScsiCommand(h) => h.immediate,
            Header::TaskMgmtRequest(h) => h.immediate,
            Header::TextRequest(h) => h.immediate,
            Header::LogoutRequest(h) => h.immediate,
            Header::LoginRequest(_) => true,
            _ => false,
        }
    }

    /// Emits this header into a fresh 48-byte array with the given framing
    /// lengths (`total_ahs_words` in 4-byte words, `data_len` truncated to
    /// 24 bits).
    pub fn to_bytes(&self, total_ahs_words: u8, data_len: u32) -> [u8; super::bhs::BHS_LEN] {
        let mut out = [0u8; super::bhs::BHS_LEN];
        let mut v = Bhs::new_unchecked(&mut out[..]);
        self.emit(&mut v);
        v.set_total_ahs_len(total_ahs_words);
        v.set_data_segment_len(data_len);
        out
    }
}

macro_rules! header_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Header {
            #[inline]
            fn from(h: $t) -> Header { Header::$t(h) }
        }
    )*};
}
header_from!(
    NopOut,
    ScsiCommand,
    TaskMgmtRequest,
    LoginRequest,
    TextRequest,
    DataOut,
    LogoutRequest,
    SnackRequest,
    NopIn,
    ScsiResponse,
    TaskMgmtResponse,
    LoginResponse,
    TextResponse,
    DataIn,
    LogoutResponse,
    R2t,
    AsyncMessage,
    Reject
);

/// The parts of a SCSI Response (or Asynchronous Message) data segment
/// (RFC 7143 sections 11.4.7 and 11.9.4): SenseLength, sense data, then
/// response data (iSCSI event data for async messages). Zero-copy slices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenseAndResponse {
    /// The sense data (SenseLength bytes).
    pub sense: Bytes,
    /// Whatever follows the sense data (response data / iSCSI event data).
    pub response_data: Bytes,
}

/// Splits a data segment into sense data and response data without copying.
///
/// RFC 7143 section 11.4.7: the data segment starts with a 2-byte
/// SenseLength followed by that many bytes of sense data; an empty data
/// segment means no sense data. A 1-byte segment, or a SenseLength past the
/// end, is a [`WireError::MalformedData`].
pub fn split_sense(data: &Bytes) -> Result<SenseAndResponse, WireError> {
    let (s, r) = split_sense_range(data)?;
    Ok(SenseAndResponse {
        sense: data.slice(s),
        response_data: data.slice(r),
    })
}

/// Like [`split_sense`] over a borrowed slice: `(sense, response_data)`.
pub fn split_sense_slice(data: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (s, r) = split_sense_range(data)?;
    match (data.get(s), data.get(r)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(WireError::MalformedData {
            reason: "SenseLength past the end of the data segment",
            section: "11.4.7.1",
        }),
    }
}

fn split_sense_range(
    data: &[u8],
) -> Result<(core::ops::Range<usize>, core::ops::Range<usize>), WireError> {
    match data {
        [] => Ok((0..0, 0..0)),
        [_] => Err(WireError::MalformedData {
            reason: "data segment shorter than SenseLength",
            section: "11.4.7.1",
        }),
        [hi, lo, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*hi, *lo]));
            if n > rest.len() {
                return Err(WireError::MalformedData {
                    reason: "SenseLength past the end of the data segment",
                    section: "11.4.7.1",
                });
            }
            // 2 + n <= data.len() here, so no overflow.
            Ok((2..2 + n, 2 + n..data.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isid_fields() {
        let i = Isid::from_fields(2, 0x15, 0x1234, 0x56, 0x789a);
        assert_eq!(i.0, [0x95, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(
            (i.t(), i.a(), i.b(), i.c(), i.d()),
            (2, 0x15, 0x1234, 0x56, 0x789a)
        );
        assert_eq!(i.kind(), IsidType::Random);
        assert_eq!(Isid::random([1, 2, 3], 9).0, [0x80, 1, 2, 3, 0, 9]);
        assert_eq!(
            Isid::enterprise(0x00_1234, 7).kind(),
            IsidType::EnterpriseNumber
        );
        let o = Isid::oui(0x02_3d00, 0);
        assert_eq!(o.kind(), IsidType::Oui);
    }

    #[test]
    fn code_enums_roundtrip_every_byte() {
        for v in 0..=255u8 {
            assert_eq!(TmfFunction::from_u8(v).to_u8(), v);
            assert_eq!(RejectReason::from_u8(v).to_u8(), v);
            assert_eq!(AsyncEvent::from_u8(v).to_u8(), v);
            assert_eq!(ScsiResponseCode::from_u8(v).to_u8(), v);
        }
        assert_eq!(TmfFunction::from_u8(8), TmfFunction::TaskReassign);
        assert_eq!(TmfFunction::from_u8(9), TmfFunction::Other(9));
        assert_eq!(TaskAttr::from_u8(5), TaskAttr::Other(5));
    }

    #[test]
    fn sense_split() {
        let d = Bytes::from_static(&[0, 3, 0x70, 0, 5, 0xaa]);
        let s = split_sense(&d).unwrap();
        assert_eq!(&s.sense[..], &[0x70, 0, 5]);
        assert_eq!(&s.response_data[..], &[0xaa]);
        assert!(split_sense(&Bytes::from_static(&[0])).is_err());
        assert!(split_sense(&Bytes::from_static(&[0, 2, 1])).is_err());
        assert_eq!(
            split_sense(&Bytes::new()).unwrap(),
            SenseAndResponse::default()
        );
        assert_eq!(
            split_sense_slice(&[0, 0, 9]).unwrap(),
            (&[][..], &[9u8][..])
        );
    }

    #[test]
    fn residual_helpers() {
        assert_eq!(Residual::Underflow(100).transferred(512), 412);
        assert_eq!(Residual::Underflow(600).transferred(512), 0);
        assert_eq!(Residual::Overflow(5).transferred(512), 512);
        assert_eq!(Residual::Overflow(5).overflow(), Some(5));
        assert_eq!(Residual::None.underflow(), None);
    }
}
