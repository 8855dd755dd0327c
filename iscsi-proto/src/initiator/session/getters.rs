//! (A) Getters: the session's state, read without changing it; and the
//! constructor.

use super::*;

impl Session {
    /// A new session; emits `Event::Connect { portal: None }` and arms the
    /// login deadline (which covers the TCP connect). The configuration is
    /// validated here: a value the RFC does not allow, a missing ISID or
    /// unusable CHAP settings are a [`ConfigError`], never reported later
    /// as the target's fault.
    pub fn new(config: SessionConfig, now: Instant) -> Result<Session, ConfigError> {
        let isid = validate(&config)?;
        let initial = Serial(config.initial_cmd_sn);
        let mut timers = TimerTable::new();
        timers.set(Timer::Login, later(now, config.login_timeout));
        let mut s = Session {
            isid,
            phase: Phase::Active,
            conn: Connection::new(config.cid, now),
            logged_in_once: false,
            logins: 0,
            window: CmdWindow::new(initial),
            tsih: 0,
            negotiated: None,
            tasks: TaskTable::new(),
            next_seq: 0,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            portal: None,
            permanent_portal: None,
            redirects: 0,
            recovery_attempt: 0,
            short_lived: 0,
            time2wait: None,
            timers,
            logout_waiting: None,
            logout_sent: false,
            target_logout: false,
            status_snacked: None,
            status_snacked_on: None,
            snack_rounds: 0,
            conn_recovery: None,
            portal_index: 0,
            extra: BTreeMap::new(),
            swapped: None,
            parked_numbered: 0,
            deferred_fail: None,
            deferred_close: false,
            rr: 0,
            stats: crate::stats::SessionStats::default(),
            clock: now,
            window_stalled: false,
            orphans: BTreeSet::new(),
            async_drops: BTreeSet::new(),
            async_logouts: BTreeSet::new(),
            snack_tag: 0,
            time2retain: None,
            cfg: config,
        };
        s.touch_rx(now);
        s.events.push_back(Event::Connect { portal: None });
        Ok(s)
    }

    // ------------------------------------------------------------------
    // (A) getters
    // ------------------------------------------------------------------

    /// What the session counted about itself since it was created
    /// (commands, bytes, retries, recoveries, window stalls, digest errors,
    /// NOP round trips, latencies): see [`crate::stats`].
    pub fn stats(&self) -> &crate::stats::SessionStats {
        &self.stats
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::Closed => SessionState::Closed,
            Phase::Waiting => SessionState::Recovering,
            Phase::Active => match self.conn.state {
                ConnState::Connecting => SessionState::Connecting,
                ConnState::Login(_) => SessionState::LoggingIn,
                ConnState::Full if self.logout_waiting.is_some() || self.logout_sent => {
                    SessionState::LoggingOut
                }
                ConnState::Full => SessionState::LoggedIn,
            },
        }
    }

    /// Whether the session is in Full Feature Phase.
    pub fn is_logged_in(&self) -> bool {
        self.phase == Phase::Active && self.conn.is_full()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The negotiated values (Full Feature Phase only).
    pub fn negotiated(&self) -> Option<&Negotiated> {
        if self.is_logged_in() {
            self.negotiated.as_ref()
        } else {
            None
        }
    }

    /// The CmdSN window.
    pub fn window(&self) -> &CmdWindow {
        &self.window
    }

    /// The session's connection: CID, ExpStatSN, digests and
    /// MaxRecvDataSegmentLength in each direction.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The ExpStatSN the next PDU will carry (the connection's, RFC 7143
    /// section 4.2.2.2).
    pub fn exp_stat_sn(&self) -> Serial {
        self.conn.exp_stat_sn()
    }

    /// The TSIH (0 before the leading login completes).
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The ISID.
    pub fn isid(&self) -> w::Isid {
        self.isid
    }

    /// The connection ID.
    pub fn cid(&self) -> u16 {
        self.conn.cid()
    }

    /// The CID of the connection `task`'s command went out on (its
    /// connection allegiance, RFC 7143 section 4.2.5.1): `None` for a task
    /// not sent yet (or waiting to be reissued after a recovery) or
    /// unknown.
    pub fn task_connection(&self, task: TaskId) -> Option<u16> {
        self.tasks.get(task.itt()).and_then(|t| t.allegiance)
    }

    /// Tasks started by the application and not yet completed.
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.iter().filter(|(_, t)| !t.internal).count()
    }

    /// What the target owes us now: how many tasks (the application's and
    /// internal ones) have been handed to the target and not yet ended, and
    /// how many bytes it is expected to send, without hearing from us
    /// again, before the `tasks` of them that expect the least have ended.
    ///
    /// A hint for receive coalescing (`initiator::LowWater`), not a promise:
    /// it assumes every read returns all the data it asked for, in Data-In
    /// PDUs as long as our MaxRecvDataSegmentLength allows (RFC 7143 section
    /// 11.7.7), the last carrying the status (section 11.7.4, phase
    /// collapse), so a read that ends early (CHECK CONDITION, a residual
    /// underflow, section 11.4.5) brings fewer bytes. A write, or a task
    /// waiting for an R2T, owes one PDU header: the R2T or the SCSI Response
    /// (section 11.8), after which the target waits for us. Tasks still
    /// waiting for the CmdSN window owe nothing. Outside the full feature
    /// phase nothing is owed. `tasks` is capped at 64.
    pub fn expected_input(&self, tasks: usize) -> ExpectedInput {
        const CAP: usize = 64;
        let none = ExpectedInput { tasks: 0, bytes: 0 };
        let Some(n) = self.negotiated.as_ref().filter(|_| self.is_logged_in()) else {
            return none;
        };
        // Section 11.1 / 12.1: BHS, then the header digest; the data digest
        // follows the data segment.
        let hdr = BHS_LEN + if n.header_digest { 4 } else { 0 };
        let dd = if n.data_digest { 4 } else { 0 };
        let seg = (n.initiator_max_recv_data_segment_length as usize).max(512);
        let k = tasks.min(CAP);
        // The k smallest expectations, kept sorted (k is small).
        let mut least = [0usize; CAP];
        let mut len = 0;
        let mut open = 0;
        for (_, t) in self.tasks.iter() {
            if t.cmd_sn.is_none() {
                continue; // not sent yet: the target owes nothing
            }
            open += 1;
            let e = match &t.kind {
                Kind::Scsi(s) => {
                    let rest = s.cmd.expected_read_len.saturating_sub(s.read_bytes) as usize;
                    if rest == 0 {
                        hdr
                    } else {
                        rest.saturating_add(rest.div_ceil(seg).saturating_mul(hdr + dd))
                    }
                }
                _ => hdr,
            };
            if k == 0 || (len == k && least.get(k - 1).is_some_and(|&m| e >= m)) {
                continue;
            }
            // `len <= k <= CAP`, so the slice is always there.
            let at = least
                .get(..len)
                .unwrap_or_default()
                .partition_point(|&m| m <= e);
            let end = len.min(k - 1);
            least.copy_within(at..end, at + 1);
            if let Some(slot) = least.get_mut(at) {
                *slot = e;
            }
            len = (len + 1).min(k);
        }
        ExpectedInput {
            tasks: open,
            bytes: least
                .iter()
                .take(len)
                .fold(0usize, |a, &b| a.saturating_add(b)),
        }
    }

    /// The caller's non-immediate commands waiting for the CmdSN window
    /// (like [`Session::tasks_in_flight`], internal tasks such as an
    /// answer to a renegotiation request are not counted).
    pub fn queued_commands(&self) -> usize {
        self.pending
            .iter()
            .filter(|&&itt| !matches!(self.tasks.get(itt), Some(t) if t.internal))
            .count()
    }

    /// The portal of the current connection: `None` for the configured
    /// one, else where a redirection pointed.
    pub fn target_portal(&self) -> Option<&NetworkPortal> {
        self.portal.as_ref()
    }

    /// The longest PDU the receive side accepts now (BHS, largest AHS,
    /// digests and our MaxRecvDataSegmentLength): a driver's receive buffer
    /// never has to hold more than this plus one read.
    pub fn max_recv_pdu_len(&self) -> usize {
        self.conn.max_recv_pdu_len()
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Whether PDUs wait in `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        self.conn.has_transmit()
    }
}
