//! The integrity oracle of `iscsi-lun/tests/integrity_model.rs`, driven by
//! fuzzer bytes: the first two bytes pick the session setup, then each
//! pair of bytes is one op (submit READ/WRITE/COMPARE AND WRITE/PERSISTENT
//! RESERVE OUT, ABORT TASK, TMFs, pings, Text, asynchronous messages 1/2/4,
//! partial `poll_transmit` draining, deliveries in cuts, a slow target
//! application, connection drops, virtual time). The harness and the
//! invariants are the test's own (`integrity_support`, included here), so
//! both check exactly the same rules; any broken invariant panics.
//!
//! With `INTEGRITY_FUZZ_PANICS_ONLY=1` in the environment, broken
//! invariants are not reported (only panics, hangs and memory blow-ups of
//! the cores and the harness are): useful while known invariant failures
//! are being fixed.
#![no_main]

use std::sync::OnceLock;

fn panics_only() -> bool {
    static ONLY: OnceLock<bool> = OnceLock::new();
    *ONLY.get_or_init(|| std::env::var_os("INTEGRITY_FUZZ_PANICS_ONLY").is_some())
}

#[allow(dead_code, clippy::all)]
#[path = "../../iscsi-lun/tests/integrity_support/mod.rs"]
mod integrity_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (setup, ops) = integrity_support::decode(data);
    let w = integrity_support::run(&setup, &ops);
    if !w.violations.is_empty() && !panics_only() {
        let mut msg = String::new();
        for v in &w.violations {
            msg.push_str(&format!("{v}\n"));
        }
        panic!(
            "integrity invariant broken:\n{msg}setup: {setup:?}\nops: {ops:#?}\nhistory:\n{}",
            w.summary()
        );
    }
});
