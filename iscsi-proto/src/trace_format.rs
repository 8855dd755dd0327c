//! Lazy `Display` helpers for the `tracing` events the core emits.
//!
//! The core only emits events (targets `iscsi::login`, `iscsi::window`,
//! `iscsi::recovery`, `iscsi::nop`, `iscsi::session`, `iscsi::pdu`); it
//! installs no subscriber and reads no clock. The wrappers here format
//! nothing until a subscriber that wants the event asks for its fields, so
//! a filtered-out event costs a level check and nothing else.

use crate::prelude::*;
use core::fmt;

/// Text keys whose values are never logged, at any level. RFC 7143 section
/// 12.1.3: CHAP_C and CHAP_R are the challenge and the response computed
/// from the shared secret; with them an observer can attack the secret
/// offline, so they stay out of logs just like the secret itself.
const REDACTED: &[&str] = &["CHAP_C", "CHAP_R"];

/// The longest value shown for one key (text values may reach 64 KiB,
/// e.g. a SendTargets reply); longer ones are cut with an ellipsis.
const MAX_VALUE: usize = 128;

/// A login or text data segment (`key=value\0...`, RFC 7143 section 6.1)
/// shown as `key=value key=value`, with CHAP_C/CHAP_R values replaced by
/// `<redacted>`.
pub(crate) struct TextKeys<'a>(pub(crate) &'a [u8]);

impl fmt::Display for TextKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for pair in self.0.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (
                    pair.get(..i).unwrap_or_default(),
                    pair.get(i + 1..).unwrap_or_default(),
                ),
                None => (pair, &[][..]),
            };
            let key = String::from_utf8_lossy(key);
            if REDACTED.iter().any(|r| key.eq_ignore_ascii_case(r)) {
                write!(f, "{key}=<redacted>")?;
                continue;
            }
            let shown = value.get(..MAX_VALUE).unwrap_or(value);
            write!(f, "{key}={}", String::from_utf8_lossy(shown))?;
            if shown.len() < value.len() {
                f.write_str("...")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chap_challenge_and_response_are_redacted() {
        let text = b"CHAP_N=alice\0CHAP_R=0xdeadbeef\0CHAP_I=7\0CHAP_C=0x0123456789\0";
        let shown = TextKeys(text).to_string();
        assert_eq!(
            shown,
            "CHAP_N=alice CHAP_R=<redacted> CHAP_I=7 CHAP_C=<redacted>"
        );
        assert!(!shown.contains("deadbeef") && !shown.contains("0123456789"));
    }

    #[test]
    fn odd_segments_do_not_panic_and_long_values_are_cut() {
        let long = format!("TargetAddress={}\0", "a".repeat(1000));
        let shown = TextKeys(long.as_bytes()).to_string();
        assert_eq!(shown.len(), "TargetAddress=".len() + MAX_VALUE + 3);
        assert_eq!(
            TextKeys(b"\0\0NoEquals\0=\0\xff=\xfe").to_string(),
            "NoEquals= = \u{fffd}=\u{fffd}"
        );
        assert_eq!(TextKeys(b"").to_string(), "");
    }
}
