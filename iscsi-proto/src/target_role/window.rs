//! The target's side of the command window (RFC 7143 section 4.2.2.1).
//!
//! The target keeps ExpCmdSN (the next CmdSN it will deliver) and MaxCmdSN
//! (the last it accepts). Non-immediate commands are delivered in CmdSN
//! order: one that arrives early is held until the gap before it fills.
//! The window never shrinks (an initiator ignores a smaller MaxCmdSN), and
//! it only grows as delivered tasks complete, so at most `depth`
//! non-immediate commands are ever outstanding.

use crate::wire::Serial;

/// What to do with a non-immediate command that carries `cmd_sn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// It is the next one: deliver it now.
    Deliver,
    /// It is inside the window but early: hold it until the gap fills.
    Hold,
    /// Outside the window or a duplicate: ignore it silently (RFC 7143
    /// section 4.2.2.1: the target "MUST silently ignore any non-immediate
    /// command outside of this range or non-immediate duplicates within the
    /// range").
    Drop,
}

/// ExpCmdSN / MaxCmdSN of one session, and the CmdSNs held early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetWindow {
    exp_cmd_sn: Serial,
    max_cmd_sn: Serial,
    depth: u32,
}

impl TargetWindow {
    /// A window whose first expected CmdSN is the one of the leading Login
    /// Request (RFC 7143 section 4.2.2.1: "Command numbering starts with
    /// the first login request"; login requests are immediate, so the first
    /// command after login carries the same CmdSN).
    pub fn new(initial: Serial, depth: u32) -> Self {
        let depth = depth.clamp(1, 1 << 30);
        TargetWindow {
            exp_cmd_sn: initial,
            max_cmd_sn: initial.plus(depth - 1),
            depth,
        }
    }

    /// ExpCmdSN to advertise.
    pub fn exp_cmd_sn(&self) -> Serial {
        self.exp_cmd_sn
    }

    /// MaxCmdSN to advertise.
    pub fn max_cmd_sn(&self) -> Serial {
        self.max_cmd_sn
    }

    /// The configured depth.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Classifies a non-immediate command.
    pub fn admit(&self, cmd_sn: Serial, held: impl Fn(Serial) -> bool) -> Admit {
        if cmd_sn == self.exp_cmd_sn {
            return Admit::Deliver;
        }
        // RFC 7143 section 4.2.2.1: "For non-immediate commands, the CmdSN
        // field can take any value from ExpCmdSN to MaxCmdSN inclusive."
        if cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn) && !held(cmd_sn) {
            Admit::Hold
        } else {
            Admit::Drop
        }
    }

    /// Records delivery of the command numbered ExpCmdSN.
    pub fn advance(&mut self) {
        self.exp_cmd_sn = self.exp_cmd_sn.next();
    }

    /// Recomputes MaxCmdSN for `outstanding` delivered, unfinished
    /// non-immediate commands: ExpCmdSN + depth - outstanding - 1, never
    /// below the value already advertised (RFC 7143 section 4.2.2.1: an
    /// initiator only moves MaxCmdSN forward, so a smaller value would not
    /// close the window anyway).
    pub fn refresh(&mut self, outstanding: u32) {
        let room = self.depth.saturating_sub(outstanding);
        let candidate = self.exp_cmd_sn.plus(room).minus(1);
        if candidate.follows(self.max_cmd_sn) {
            self.max_cmd_sn = candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_basics() {
        // Depth 4 from 0xfffffffe: MaxCmdSN wraps to 1 (RFC 1982).
        let mut w = TargetWindow::new(Serial(u32::MAX - 1), 4);
        assert_eq!(w.max_cmd_sn(), Serial(1));
        assert_eq!(w.admit(Serial(u32::MAX - 1), |_| false), Admit::Deliver);
        assert_eq!(w.admit(Serial(u32::MAX), |_| false), Admit::Hold);
        assert_eq!(w.admit(Serial(1), |_| false), Admit::Hold);
        assert_eq!(w.admit(Serial(u32::MAX), |_| true), Admit::Drop);
        assert_eq!(w.admit(Serial(2), |_| false), Admit::Drop);
        assert_eq!(w.admit(Serial(u32::MAX - 2), |_| false), Admit::Drop);
        w.advance();
        // One outstanding: exp 0xffffffff + 3 - 1 = 1, unchanged.
        w.refresh(1);
        assert_eq!(w.max_cmd_sn(), Serial(1));
        // Too many outstanding never shrinks the advertised window.
        w.refresh(9);
        assert_eq!(w.max_cmd_sn(), Serial(1));
        w.refresh(0);
        assert_eq!(w.max_cmd_sn(), Serial(2));
    }
}
