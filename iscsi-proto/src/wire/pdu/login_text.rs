//! Login and Text PDUs: Login Request and Response (RFC 7143 sections 11.12
//! and 11.13), Text Request and Response (sections 11.10 and 11.11), the
//! login [`Stage`] and the Initiator Session ID ([`Isid`]).

use crate::wire::bhs::{Bhs, Opcode};
use crate::wire::error::WireError;
use crate::wire::serial::Serial;

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
}
