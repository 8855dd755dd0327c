//! The session-wide command window: CmdSN, ExpCmdSN and MaxCmdSN.
//!
//! RFC 7143 section 4.2.2.1 (Command Numbering and Acknowledging). The
//! initiator keeps three variables per session: CmdSN (the number the next
//! non-immediate command gets), ExpCmdSN (everything before it is
//! acknowledged) and MaxCmdSN (the last number the target accepts). All
//! arithmetic is RFC 1982 serial arithmetic with SERIAL_BITS = 32.

use crate::wire::Serial;

/// What happened to an ExpCmdSN/MaxCmdSN pair offered by a received PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowUpdate {
    /// At least one of the two values advanced the local state.
    Advanced,
    /// Both values were valid but neither was newer than the local state
    /// (an out-of-order or repeated update): ignored.
    Stale,
    /// MaxCmdSN < ExpCmdSN - 1: RFC 7143 section 4.2.2.1 "If the PDU MaxCmdSN
    /// is less than the PDU ExpCmdSN-1 (in Serial Arithmetic Sense), they are
    /// both ignored."
    Invalid,
    /// ExpCmdSN acknowledges command numbers the initiator never assigned
    /// (ExpCmdSN > CmdSN): the target contradicts section 4.2.2.1 ("The
    /// target acknowledges all commands up to, but not including, this
    /// number"). Ignored, and reported so the caller can log it.
    AcksUnsent,
}

/// The CmdSN window of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdWindow {
    cmd_sn: Serial,
    exp_cmd_sn: Serial,
    max_cmd_sn: Serial,
}

impl CmdWindow {
    /// A window starting at the CmdSN of the leading Login Request (RFC 7143
    /// section 4.2.2.1: "Command numbering starts with the first login
    /// request"). Until the final Login Response gives real values the window
    /// holds exactly that one number.
    pub fn new(initial_cmd_sn: Serial) -> Self {
        CmdWindow {
            cmd_sn: initial_cmd_sn,
            exp_cmd_sn: initial_cmd_sn,
            max_cmd_sn: initial_cmd_sn,
        }
    }

    /// The CmdSN the next non-immediate command will carry; also the value
    /// an immediate command carries (section 4.2.2.1: immediate commands
    /// "MUST also carry the current CmdSN").
    pub fn cmd_sn(&self) -> Serial {
        self.cmd_sn
    }

    /// The local ExpCmdSN.
    pub fn exp_cmd_sn(&self) -> Serial {
        self.exp_cmd_sn
    }

    /// The local MaxCmdSN.
    pub fn max_cmd_sn(&self) -> Serial {
        self.max_cmd_sn
    }

    /// Whether the target has room for another non-immediate command:
    /// ExpCmdSN <= CmdSN <= MaxCmdSN (section 4.2.2.1: "For non-immediate
    /// commands, the CmdSN field can take any value from ExpCmdSN to MaxCmdSN
    /// inclusive"). A window with MaxCmdSN = ExpCmdSN - 1 is closed.
    pub fn is_open(&self) -> bool {
        self.cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn)
    }

    /// How many more non-immediate commands the target accepts now.
    pub fn room(&self) -> u32 {
        if self.is_open() {
            self.max_cmd_sn.distance_from(self.cmd_sn).saturating_add(1)
        } else {
            0
        }
    }

    /// Commands sent but not yet acknowledged through ExpCmdSN.
    pub fn unacknowledged(&self) -> u32 {
        self.cmd_sn.distance_from(self.exp_cmd_sn)
    }

    /// Takes the next CmdSN for a non-immediate command, or `None` when the
    /// window is closed (the command must queue; section 4.2.2.1).
    #[must_use = "a CmdSN taken must be used by a command"]
    pub fn take(&mut self) -> Option<Serial> {
        if !self.is_open() {
            return None;
        }
        let sn = self.cmd_sn;
        self.cmd_sn = sn.next();
        // Logged only when debug is on for the target (a cheap check on
        // the hot path otherwise).
        if tracing::enabled!(target: "iscsi::window", tracing::Level::DEBUG) && !self.is_open() {
            tracing::debug!(target: "iscsi::window", last = sn.0, MaxCmdSN = self.max_cmd_sn.0, "command window full: further commands queue until MaxCmdSN advances");
        }
        Some(sn)
    }

    /// Sets all three values from the final Login Response of the leading
    /// login (section 11.13: ExpCmdSN and MaxCmdSN are valid when the status
    /// class is 0). A window closed at login (MaxCmdSN = ExpCmdSN - 1) is
    /// accepted as is and opens with a later NOP-In or response.
    pub fn reset(
        &mut self,
        cmd_sn: Serial,
        exp_cmd_sn: Serial,
        max_cmd_sn: Serial,
    ) -> WindowUpdate {
        if max_cmd_sn.precedes(exp_cmd_sn.minus(1)) {
            self.cmd_sn = cmd_sn;
            self.exp_cmd_sn = cmd_sn;
            self.max_cmd_sn = cmd_sn.minus(1);
            return WindowUpdate::Invalid;
        }
        self.cmd_sn = cmd_sn;
        self.exp_cmd_sn = exp_cmd_sn;
        self.max_cmd_sn = max_cmd_sn;
        WindowUpdate::Advanced
    }

    /// Processes the ExpCmdSN/MaxCmdSN pair of a received PDU by the three
    /// rules of RFC 7143 section 4.2.2.1:
    /// - "If the PDU MaxCmdSN is less than the PDU ExpCmdSN-1 ..., they are
    ///   both ignored."
    /// - "If the PDU MaxCmdSN is greater than the local MaxCmdSN ..., it
    ///   updates the local MaxCmdSN; otherwise, it is ignored."
    /// - "If the PDU ExpCmdSN is greater than the local ExpCmdSN ..., it
    ///   updates the local ExpCmdSN; otherwise, it is ignored."
    pub fn update(&mut self, exp_cmd_sn: Serial, max_cmd_sn: Serial) -> WindowUpdate {
        if max_cmd_sn.precedes(exp_cmd_sn.minus(1)) {
            return WindowUpdate::Invalid;
        }
        // An ExpCmdSN past our CmdSN acknowledges commands never sent.
        if exp_cmd_sn.follows(self.cmd_sn) {
            return WindowUpdate::AcksUnsent;
        }
        // (open, size) before the update, only when window logging is on.
        let before = tracing::enabled!(target: "iscsi::window", tracing::Level::DEBUG)
            .then(|| (self.is_open(), self.size()));
        let mut advanced = false;
        if max_cmd_sn.follows(self.max_cmd_sn) {
            self.max_cmd_sn = max_cmd_sn;
            advanced = true;
        }
        if exp_cmd_sn.follows(self.exp_cmd_sn) {
            self.exp_cmd_sn = exp_cmd_sn;
            advanced = true;
        }
        if let (true, Some((was_open, was_size))) = (advanced, before) {
            self.log_change(was_open, was_size);
        }
        if advanced {
            WindowUpdate::Advanced
        } else {
            WindowUpdate::Stale
        }
    }
}

impl CmdWindow {
    /// MaxCmdSN - ExpCmdSN + 1: how many commands the target accepts in
    /// all (0 when closed, RFC 7143 section 4.2.2.1).
    fn size(&self) -> u32 {
        self.max_cmd_sn.next().distance_from(self.exp_cmd_sn)
    }

    /// Debug events for an update that changed the window: closed by the
    /// target, reopened, or resized; a plain slide shows at trace.
    fn log_change(&self, was_open: bool, was_size: u32) {
        let (open, size) = (self.is_open(), self.size());
        let (exp, max) = (self.exp_cmd_sn.0, self.max_cmd_sn.0);
        if size == 0 && was_size != 0 {
            tracing::debug!(target: "iscsi::window", ExpCmdSN = exp, MaxCmdSN = max, "command window closed by the target (MaxCmdSN = ExpCmdSN - 1)");
        } else if open && !was_open {
            tracing::debug!(target: "iscsi::window", ExpCmdSN = exp, MaxCmdSN = max, room = self.room(), "command window reopened");
        } else if size != was_size {
            tracing::debug!(target: "iscsi::window", ExpCmdSN = exp, MaxCmdSN = max, size, was = was_size, "command window resized");
        } else {
            tracing::trace!(target: "iscsi::window", ExpCmdSN = exp, MaxCmdSN = max, "command window slid");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(cmd: u32, exp: u32, max: u32) -> CmdWindow {
        let mut win = CmdWindow::new(Serial(cmd));
        assert_eq!(
            win.reset(Serial(cmd), Serial(exp), Serial(max)),
            WindowUpdate::Advanced
        );
        win
    }

    #[test]
    fn closed_at_login_then_opened() {
        let mut win = w(1, 1, 0);
        assert!(!win.is_open());
        assert_eq!(win.take(), None);
        assert_eq!(win.update(Serial(1), Serial(4)), WindowUpdate::Advanced);
        assert_eq!(win.room(), 4);
        assert_eq!(win.take(), Some(Serial(1)));
    }

    #[test]
    fn never_overruns_the_window() {
        let mut win = w(10, 10, 12);
        assert_eq!(win.take(), Some(Serial(10)));
        assert_eq!(win.take(), Some(Serial(11)));
        assert_eq!(win.take(), Some(Serial(12)));
        assert_eq!(win.take(), None);
        assert_eq!(win.unacknowledged(), 3);
    }

    #[test]
    fn stale_and_invalid_updates_ignored() {
        let mut win = w(5, 5, 20);
        assert_eq!(win.update(Serial(5), Serial(10)), WindowUpdate::Stale);
        assert_eq!(win.max_cmd_sn(), Serial(20));
        // MaxCmdSN < ExpCmdSN - 1: both ignored.
        assert_eq!(win.update(Serial(5), Serial(2)), WindowUpdate::Invalid);
        assert_eq!(win.max_cmd_sn(), Serial(20));
        // ExpCmdSN beyond anything sent.
        assert_eq!(win.update(Serial(9), Serial(30)), WindowUpdate::AcksUnsent);
        assert_eq!(win.exp_cmd_sn(), Serial(5));
        assert_eq!(win.max_cmd_sn(), Serial(20));
    }

    #[test]
    fn wraps_at_2_pow_32() {
        let mut win = w(0xffff_fffe, 0xffff_fffe, 1);
        assert_eq!(win.room(), 4);
        assert_eq!(win.take(), Some(Serial(0xffff_fffe)));
        assert_eq!(win.take(), Some(Serial(0xffff_ffff)));
        assert_eq!(win.take(), Some(Serial(0)));
        assert_eq!(win.take(), Some(Serial(1)));
        assert_eq!(win.take(), None);
        assert_eq!(win.update(Serial(2), Serial(5)), WindowUpdate::Advanced);
        assert_eq!(win.take(), Some(Serial(2)));
    }

    proptest! {
        /// Whatever updates arrive, no CmdSN handed out lies outside the
        /// window that was current when it was taken, and ExpCmdSN/MaxCmdSN
        /// never move backwards.
        #[test]
        fn window_model(start in any::<u32>(), ops in proptest::collection::vec((0u8..3, 0u32..40, 0u32..40), 1..200)) {
            let mut win = CmdWindow::new(Serial(start));
            win.reset(Serial(start), Serial(start), Serial(start).plus(3));
            for (op, a, b) in ops {
                let (exp0, max0) = (win.exp_cmd_sn(), win.max_cmd_sn());
                match op {
                    0 => {
                        let open = win.is_open();
                        match win.take() {
                            Some(sn) => {
                                prop_assert!(open);
                                prop_assert!(sn.in_window(exp0, max0));
                            }
                            None => prop_assert!(!open),
                        }
                    }
                    _ => {
                        // Updates around the current values, some stale, some invalid.
                        let exp = win.exp_cmd_sn().plus(a).minus(20);
                        let max = exp.plus(b).minus(5);
                        win.update(exp, max);
                        prop_assert!(win.exp_cmd_sn().follows_or_eq(exp0));
                        prop_assert!(win.max_cmd_sn().follows_or_eq(max0));
                        prop_assert!(win.exp_cmd_sn().precedes_or_eq(win.cmd_sn()));
                    }
                }
            }
        }
    }
}
