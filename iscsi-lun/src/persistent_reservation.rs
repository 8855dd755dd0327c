//! Persistent reservations (SPC-4 5.7, 6.13 PERSISTENT RESERVE IN,
//! 6.14 PERSISTENT RESERVE OUT), kept in memory (no APTPL).

use std::collections::HashMap;

use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{SenseData, SenseKey};

use crate::util::{bad_cdb, be, illegal, Fail};
use crate::NexusId;

/// Most registrations kept; more yield INSUFFICIENT REGISTRATION RESOURCES.
pub const MAX_REGISTRATIONS: usize = 64;

/// Persistent reservation types (SPC-4 6.14.3, table 172).
pub mod pr_type {
    /// Write Exclusive.
    pub const WRITE_EXCLUSIVE: u8 = 1;
    /// Exclusive Access.
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    /// Write Exclusive - Registrants Only.
    pub const WRITE_EXCLUSIVE_RO: u8 = 5;
    /// Exclusive Access - Registrants Only.
    pub const EXCLUSIVE_ACCESS_RO: u8 = 6;
    /// Write Exclusive - All Registrants.
    pub const WRITE_EXCLUSIVE_AR: u8 = 7;
    /// Exclusive Access - All Registrants.
    pub const EXCLUSIVE_ACCESS_AR: u8 = 8;
}

/// An initiator port's TransportID (SPC-4 7.6.4), as PERSISTENT RESERVE
/// IN READ FULL STATUS reports it for each registered I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportId(Vec<u8>);

/// SPC-4 7.6.1, table 444: PROTOCOL IDENTIFIER 5h is iSCSI.
const PROTOCOL_ISCSI: u8 = 0x05;

/// The longest iSCSI name (RFC 7143 section 4.2.7.1: "no more than 223
/// bytes"); longer input is cut there.
const MAX_ISCSI_NAME: usize = 223;

impl TransportId {
    /// The iSCSI TransportID of an initiator port (SPC-4 7.6.4.6): with
    /// an ISID, FORMAT CODE 01b, "the ISCSI NAME ... the SEPARATOR field
    /// [\",i,0x\"] ... the ISCSI INITIATOR SESSION ID field ... in the
    /// form of ASCII characters that are the hexadecimal digits"; without
    /// one, FORMAT CODE 00b with the name alone. Null terminated and null
    /// padded: "The ADDITIONAL LENGTH field shall be at least 20 and shall
    /// be a multiple of four."
    pub fn iscsi(initiator_name: &str, isid: Option<[u8; 6]>) -> TransportId {
        let name = initiator_name.as_bytes();
        let name = name.get(..MAX_ISCSI_NAME).unwrap_or(name);
        let mut body = name.to_vec();
        let format = match isid {
            Some(isid) => {
                body.extend_from_slice(b",i,0x");
                for b in isid {
                    body.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                0x40
            }
            None => 0x00,
        };
        // The terminating null, then padding to a multiple of four, at
        // least 20 bytes.
        body.push(0);
        let len = body.len().max(20).next_multiple_of(4);
        body.resize(len, 0);
        let mut out = Vec::with_capacity(4 + len);
        out.push(format | PROTOCOL_ISCSI);
        out.push(0);
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&body);
        TransportId(out)
    }

    /// The TransportID bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// How a command is treated under a persistent reservation (SPC-4 5.7.1,
/// table 59 condensed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Allowed under every reservation type (INQUIRY, REPORT LUNS,
    /// REQUEST SENSE, TEST UNIT READY, READ CAPACITY, PR IN/OUT).
    Always,
    /// Reads: conflict only for the exclusive-access types.
    Read,
    /// Writes and everything else: conflict for every type.
    Write,
}

#[derive(Debug, Clone, Copy)]
struct Reservation {
    holder: NexusId,
    ty: u8,
}

/// Persistent reservation state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct Pr {
    generation: u32,
    regs: Vec<(NexusId, u64)>,
    res: Option<Reservation>,
    /// The TransportIDs of the live I_T nexuses the target told us about.
    ports: HashMap<NexusId, TransportId>,
    /// The TransportIDs of registered nexuses that are gone (SPC-4 5.7.2:
    /// registrations survive the loss of the nexus); pruned to the
    /// registered ones after every PERSISTENT RESERVE OUT.
    reg_ports: HashMap<NexusId, TransportId>,
}

fn is_all_registrants(ty: u8) -> bool {
    ty == pr_type::WRITE_EXCLUSIVE_AR || ty == pr_type::EXCLUSIVE_ACCESS_AR
}

fn is_registrants_type(ty: u8) -> bool {
    matches!(ty, 5..=8)
}

fn is_exclusive_access(ty: u8) -> bool {
    matches!(
        ty,
        pr_type::EXCLUSIVE_ACCESS | pr_type::EXCLUSIVE_ACCESS_RO | pr_type::EXCLUSIVE_ACCESS_AR
    )
}

fn bad_param() -> Fail {
    illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST)
}

fn ua(code: (u8, u8)) -> SenseData {
    SenseData::with_code(SenseKey::UnitAttention, code)
}

impl Pr {
    /// Records the TransportID of `n`.
    pub(crate) fn set_port(&mut self, n: NexusId, id: TransportId) {
        self.ports.insert(n, id);
    }

    /// `n` is gone: its TransportID is kept only while it is registered.
    pub(crate) fn port_lost(&mut self, n: NexusId) {
        if let Some(id) = self.ports.remove(&n) {
            if self.key_of(n).is_some() {
                self.reg_ports.insert(n, id);
            }
        }
    }

    fn prune_ports(&mut self) {
        let regs = &self.regs;
        self.reg_ports
            .retain(|n, _| regs.iter().any(|(x, _)| x == n));
    }

    /// SPC-4 6.15.5: the full status descriptors, one per registration.
    fn full_status(&self, relative_port: u16, d: &mut Vec<u8>) {
        let unknown = TransportId::iscsi("", None);
        let mut list = Vec::new();
        for &(n, key) in &self.regs {
            let tid = self
                .ports
                .get(&n)
                .or_else(|| self.reg_ports.get(&n))
                .unwrap_or(&unknown);
            list.extend_from_slice(&key.to_be_bytes());
            list.extend_from_slice(&[0; 4]);
            // Byte 12: ALL_TG_PT (bit 1) is zero (not supported), R_HOLDER
            // (bit 0); byte 13: SCOPE and TYPE, "not valid" (zero) unless
            // R_HOLDER is one.
            let (holder, scope_type) = match self.res {
                Some(r) if self.is_holder(n) => (0x01, r.ty & 0x0f),
                _ => (0x00, 0x00),
            };
            list.extend_from_slice(&[holder, scope_type, 0, 0, 0, 0]);
            list.extend_from_slice(&relative_port.to_be_bytes());
            let tid = tid.as_bytes();
            list.extend_from_slice(&u32::try_from(tid.len()).unwrap_or(0).to_be_bytes());
            list.extend_from_slice(tid);
        }
        d.extend_from_slice(&u32::try_from(list.len()).unwrap_or(u32::MAX).to_be_bytes());
        d.extend_from_slice(&list);
    }

    fn key_of(&self, n: NexusId) -> Option<u64> {
        self.regs.iter().find(|(x, _)| *x == n).map(|&(_, k)| k)
    }

    fn is_holder(&self, n: NexusId) -> bool {
        match self.res {
            None => false,
            Some(r) if is_all_registrants(r.ty) => self.key_of(n).is_some(),
            Some(r) => r.holder == n,
        }
    }

    /// SPC-4 5.7.1: "a command that is not allowed ... shall be completed
    /// with RESERVATION CONFLICT status".
    pub(crate) fn check(&self, n: NexusId, access: Access) -> Result<(), Fail> {
        let Some(r) = self.res else { return Ok(()) };
        if access == Access::Always || self.is_holder(n) {
            return Ok(());
        }
        // Registrants-only / all-registrants: every registered nexus has access.
        if is_registrants_type(r.ty) && self.key_of(n).is_some() {
            return Ok(());
        }
        if access == Access::Read && !is_exclusive_access(r.ty) {
            return Ok(());
        }
        Err(Fail::Conflict)
    }

    /// PERSISTENT RESERVE IN (SPC-4 6.13); returns untruncated data.
    /// `relative_port`: the RELATIVE TARGET PORT IDENTIFIER for READ FULL
    /// STATUS.
    pub(crate) fn pr_in(&self, c: &[u8], relative_port: u16) -> Result<Vec<u8>, Fail> {
        let sa = c.get(1).copied().unwrap_or(0) & 0x1f;
        let mut d = Vec::new();
        d.extend_from_slice(&self.generation.to_be_bytes());
        match sa {
            // 6.13.2 READ KEYS.
            0x00 => {
                let len = (self.regs.len() * 8) as u32;
                d.extend_from_slice(&len.to_be_bytes());
                for (_, k) in &self.regs {
                    d.extend_from_slice(&k.to_be_bytes());
                }
            }
            // 6.13.3 READ RESERVATION.
            0x01 => match self.res {
                None => d.extend_from_slice(&0u32.to_be_bytes()),
                Some(r) => {
                    d.extend_from_slice(&16u32.to_be_bytes());
                    // 6.13.3.2: for all-registrants types the RESERVATION
                    // KEY field is zero.
                    let key = if is_all_registrants(r.ty) {
                        0
                    } else {
                        self.key_of(r.holder).unwrap_or(0)
                    };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 0, 0, r.ty & 0x0f, 0, 0]);
                }
            },
            // 6.13.4 REPORT CAPABILITIES: length 8, TMV with every type
            // supported, no CRH/SIP_C/ATP_C/PTPL_C.
            0x02 => {
                d.clear();
                d.extend_from_slice(&[0, 8, 0x00, 0x80, 0xea, 0x01, 0, 0]);
            }
            // 6.15.5 READ FULL STATUS.
            0x03 => self.full_status(relative_port, &mut d),
            _ => return Err(bad_cdb(1)),
        }
        Ok(d)
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.14). `uas` receives unit attentions
    /// to queue for other nexuses.
    pub(crate) fn pr_out(
        &mut self,
        n: NexusId,
        c: &[u8],
        data_out: &[u8],
        uas: &mut Vec<(NexusId, SenseData)>,
    ) -> Result<(), Fail> {
        let r = self.pr_out_inner(n, c, data_out, uas);
        self.prune_ports();
        r
    }

    fn pr_out_inner(
        &mut self,
        n: NexusId,
        c: &[u8],
        data_out: &[u8],
        uas: &mut Vec<(NexusId, SenseData)>,
    ) -> Result<(), Fail> {
        let sa = c.get(1).copied().unwrap_or(0) & 0x1f;
        let scope = c.get(2).copied().unwrap_or(0) >> 4;
        let ty = c.get(2).copied().unwrap_or(0) & 0x0f;
        let plen = be(c, 5, 4);
        if sa > 0x06 {
            // REGISTER AND MOVE (7) and reserved service actions.
            return Err(bad_cdb(1));
        }
        // SPC-4 6.14.1: with SPEC_I_PT zero, "the PARAMETER LIST LENGTH
        // field shall contain 24"; otherwise PARAMETER LIST LENGTH ERROR.
        if plen != 24 || data_out.len() < 24 {
            return Err(illegal(asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let key = be(data_out, 0, 8);
        let sa_key = be(data_out, 8, 8);
        let flags = data_out.get(20).copied().unwrap_or(0);
        // SPC-4 6.14.3: SPEC_I_PT, ALL_TG_PT and APTPL are not supported
        // (REPORT CAPABILITIES says so): INVALID FIELD IN PARAMETER LIST.
        if flags & 0x0d != 0 {
            return Err(bad_param());
        }
        let my_key = self.key_of(n);
        match sa {
            // REGISTER (0) and REGISTER AND IGNORE EXISTING KEY (6).
            0x00 | 0x06 => {
                // SPC-4 5.7.7: an unregistered nexus must send key 0 and a
                // registered one its current key, unless IGNORE.
                if sa == 0x00 && key != my_key.unwrap_or(0) {
                    return Err(Fail::Conflict);
                }
                match (my_key, sa_key) {
                    (None, 0) => return Ok(()),
                    (None, k) => {
                        if self.regs.len() >= MAX_REGISTRATIONS {
                            return Err(illegal(asc::INSUFFICIENT_REGISTRATION_RESOURCES));
                        }
                        self.regs.push((n, k));
                    }
                    (Some(_), 0) => self.unregister(n, uas),
                    (Some(_), k) => {
                        if let Some(e) = self.regs.iter_mut().find(|(x, _)| *x == n) {
                            e.1 = k;
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
                Ok(())
            }
            // RESERVE.
            0x01 => {
                if my_key != Some(key) {
                    return Err(Fail::Conflict);
                }
                check_scope_type(scope, ty)?;
                match self.res {
                    None => {
                        self.res = Some(Reservation { holder: n, ty });
                        Ok(())
                    }
                    // SPC-4 5.7.9: the holder may re-reserve with the same
                    // scope and type; anything else conflicts.
                    Some(r) if self.is_holder(n) && r.ty == ty => Ok(()),
                    Some(_) => Err(Fail::Conflict),
                }
            }
            // RELEASE.
            0x02 => {
                if my_key != Some(key) {
                    return Err(Fail::Conflict);
                }
                let Some(r) = self.res else { return Ok(()) };
                if !self.is_holder(n) {
                    return Ok(());
                }
                // SPC-4 5.7.11.2: a holder releasing with another scope or
                // type gets INVALID RELEASE OF PERSISTENT RESERVATION.
                if scope != 0 || ty != r.ty {
                    return Err(illegal(asc::INVALID_RELEASE_OF_PR));
                }
                self.res = None;
                if is_registrants_type(r.ty) {
                    for &(x, _) in &self.regs {
                        if x != n {
                            uas.push((x, ua(asc::RESERVATIONS_RELEASED)));
                        }
                    }
                }
                Ok(())
            }
            // CLEAR.
            0x03 => {
                if my_key != Some(key) {
                    return Err(Fail::Conflict);
                }
                for &(x, _) in &self.regs {
                    if x != n {
                        uas.push((x, ua(asc::RESERVATIONS_PREEMPTED)));
                    }
                }
                self.regs.clear();
                self.res = None;
                self.generation = self.generation.wrapping_add(1);
                Ok(())
            }
            // PREEMPT (4) and PREEMPT AND ABORT (5; no task set to abort here).
            _ => {
                if my_key != Some(key) {
                    return Err(Fail::Conflict);
                }
                self.preempt(n, scope, ty, sa_key, uas)?;
                self.generation = self.generation.wrapping_add(1);
                Ok(())
            }
        }
    }

    fn unregister(&mut self, n: NexusId, uas: &mut Vec<(NexusId, SenseData)>) {
        self.regs.retain(|(x, _)| *x != n);
        if let Some(r) = self.res {
            let released = if is_all_registrants(r.ty) {
                self.regs.is_empty()
            } else {
                r.holder == n
            };
            if released {
                self.res = None;
                // SPC-4 5.7.11.2: releasing a registrants-only reservation
                // by unregistering notifies the other registrants.
                if is_registrants_type(r.ty) {
                    for &(x, _) in &self.regs {
                        uas.push((x, ua(asc::RESERVATIONS_RELEASED)));
                    }
                }
            }
        }
    }

    /// Removes registrations with `sa_key` (except `n`'s own), returns how
    /// many matched (including `n`'s own).
    fn remove_key(
        &mut self,
        n: NexusId,
        sa_key: u64,
        uas: &mut Vec<(NexusId, SenseData)>,
    ) -> usize {
        let matched = self.regs.iter().filter(|(_, k)| *k == sa_key).count();
        self.regs.retain(|&(x, k)| {
            if k == sa_key && x != n {
                uas.push((x, ua(asc::REGISTRATIONS_PREEMPTED)));
                false
            } else {
                true
            }
        });
        matched
    }

    fn preempt(
        &mut self,
        n: NexusId,
        scope: u8,
        ty: u8,
        sa_key: u64,
        uas: &mut Vec<(NexusId, SenseData)>,
    ) -> Result<(), Fail> {
        match self.res {
            // SPC-4 5.7.11.4.2: no reservation: remove the registrations
            // with SERVICE ACTION RESERVATION KEY; zero is invalid, no match
            // is a conflict.
            None => {
                if sa_key == 0 {
                    return Err(bad_param());
                }
                if self.remove_key(n, sa_key, uas) == 0 {
                    return Err(Fail::Conflict);
                }
                Ok(())
            }
            Some(r) if is_all_registrants(r.ty) => {
                if sa_key == 0 {
                    // 5.7.11.4.3: preempting an all-registrants reservation
                    // with key 0 removes every other registration and makes
                    // the preemptor the holder of a new reservation.
                    check_scope_type(scope, ty)?;
                    self.regs.retain(|&(x, _)| {
                        if x != n {
                            uas.push((x, ua(asc::REGISTRATIONS_PREEMPTED)));
                        }
                        x == n
                    });
                    self.res = Some(Reservation { holder: n, ty });
                    Ok(())
                } else if self.remove_key(n, sa_key, uas) == 0 {
                    Err(Fail::Conflict)
                } else {
                    Ok(())
                }
            }
            Some(r) => {
                let holder_key = self.key_of(r.holder);
                if holder_key == Some(sa_key) {
                    // 5.7.11.4.3: preempting the holder releases the
                    // reservation and creates one for the preemptor.
                    check_scope_type(scope, ty)?;
                    self.remove_key(n, sa_key, uas);
                    self.res = Some(Reservation { holder: n, ty });
                    if r.ty != ty {
                        for &(x, _) in &self.regs {
                            if x != n {
                                uas.push((x, ua(asc::RESERVATIONS_RELEASED)));
                            }
                        }
                    }
                    Ok(())
                } else if sa_key == 0 {
                    Err(bad_param())
                } else if self.remove_key(n, sa_key, uas) == 0 {
                    Err(Fail::Conflict)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// SPC-4 6.14.2: only LU_SCOPE (0) exists; types 1, 3, 5..=8 are defined.
fn check_scope_type(scope: u8, ty: u8) -> Result<(), Fail> {
    if scope != 0 || !matches!(ty, 1 | 3 | 5..=8) {
        return Err(bad_cdb(2));
    }
    Ok(())
}
