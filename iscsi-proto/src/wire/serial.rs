//! RFC 1982 serial number arithmetic for CmdSN, StatSN, DataSN and R2TSN.
//!
//! RFC 7143 section 4.2.2.1: "Comparisons and arithmetic on ExpCmdSN and
//! MaxCmdSN MUST use Serial Number Arithmetic as defined in \[RFC1982\]
//! where SERIAL_BITS = 32" (the same section says it of CmdSN; this crate
//! applies the same arithmetic to StatSN, DataSN and R2TSN, which wrap the
//! same way). Raw `u32` sequence numbers are therefore never compared with `<` in this crate: they
//! are wrapped in [`Serial`], whose [`PartialOrd`] implements RFC 1982.
//!
//! RFC 1982 leaves the comparison of two numbers exactly 2^31 apart undefined;
//! [`Serial::partial_cmp`] returns `None` for that pair, so `<`, `<=`, `>` and
//! `>=` are all `false` for it, which makes every window check fail closed.

use core::cmp::Ordering;
use core::fmt;

/// A 32-bit sequence number compared with RFC 1982 serial number arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Serial(pub u32);

/// Half the serial number space (2^31), the RFC 1982 comparison horizon.
const HALF: u32 = 1 << 31;

impl Serial {
    /// Wraps a raw sequence number.
    #[inline]
    pub const fn new(v: u32) -> Self {
        Serial(v)
    }

    /// The raw value, for putting on the wire.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// RFC 1982 section 3.1 addition: `self + n` modulo 2^32. `n` must be at
    /// most 2^31 - 1 for the result to compare as greater; larger values are
    /// still computed modulo 2^32 (callers only ever add small counts).
    #[inline]
    #[must_use]
    pub const fn plus(self, n: u32) -> Self {
        Serial(self.0.wrapping_add(n))
    }

    /// `self - n` modulo 2^32 (used for `ExpCmdSN - 1`, the empty window).
    #[inline]
    #[must_use]
    pub const fn minus(self, n: u32) -> Self {
        Serial(self.0.wrapping_sub(n))
    }

    /// The successor, `self + 1` modulo 2^32.
    #[inline]
    #[must_use]
    pub const fn next(self) -> Self {
        self.plus(1)
    }

    /// The forward distance from `earlier` to `self` modulo 2^32, i.e. how
    /// many increments take `earlier` to `self`.
    #[inline]
    pub const fn distance_from(self, earlier: Serial) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// RFC 1982 section 3.2: `self < other`.
    #[inline]
    pub const fn precedes(self, other: Serial) -> bool {
        (self.0 < other.0 && other.0 - self.0 < HALF)
            || (self.0 > other.0 && self.0 - other.0 > HALF)
    }

    /// RFC 1982 section 3.2: `self > other`.
    #[inline]
    pub const fn follows(self, other: Serial) -> bool {
        other.precedes(self)
    }

    /// `self <= other` in RFC 1982 order (equal, or defined and less).
    #[inline]
    pub const fn precedes_or_eq(self, other: Serial) -> bool {
        self.0 == other.0 || self.precedes(other)
    }

    /// `self >= other` in RFC 1982 order (equal, or defined and greater).
    #[inline]
    pub const fn follows_or_eq(self, other: Serial) -> bool {
        self.0 == other.0 || self.follows(other)
    }

    /// Whether `self` lies in the closed interval `[lo, hi]` walking forward
    /// from `lo`, with the interval no larger than 2^31 (RFC 7143 section
    /// 4.2.2.1 windows are bounded by 2^31 - 1 commands).
    #[inline]
    pub const fn in_window(self, lo: Serial, hi: Serial) -> bool {
        let span = hi.0.wrapping_sub(lo.0);
        span < HALF && self.0.wrapping_sub(lo.0) <= span
    }
}

impl PartialOrd for Serial {
    /// RFC 1982 section 3.2 ordering; `None` when the two values are exactly
    /// 2^31 apart (undefined by the RFC).
    #[inline]
    fn partial_cmp(&self, other: &Serial) -> Option<Ordering> {
        if self.0 == other.0 {
            Some(Ordering::Equal)
        } else if self.precedes(*other) {
            Some(Ordering::Less)
        } else if self.follows(*other) {
            Some(Ordering::Greater)
        } else {
            None
        }
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({:#010x})", self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for Serial {
    #[inline]
    fn from(v: u32) -> Self {
        Serial(v)
    }
}

impl From<Serial> for u32 {
    #[inline]
    fn from(s: Serial) -> u32 {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_across_zero() {
        assert!(Serial(0xffff_ffff) < Serial(0));
        assert!(Serial(0) > Serial(0xffff_fff0));
        assert_eq!(Serial(0xffff_ffff).next(), Serial(0));
        assert_eq!(Serial(0).minus(1), Serial(0xffff_ffff));
    }

    #[test]
    // The operators themselves are under test here.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn half_space_apart_is_undefined() {
        let a = Serial(0);
        let b = Serial(HALF);
        assert_eq!(a.partial_cmp(&b), None);
        assert!(!(a < b) && !(a > b) && !(a <= b) && !(a >= b));
    }

    #[test]
    fn window_membership() {
        // Closed window MaxCmdSN = ExpCmdSN - 1 contains nothing.
        let exp = Serial(0xffff_fffe);
        assert!(!exp.in_window(exp, exp.minus(1)));
        assert!(exp.in_window(exp, exp.plus(3)));
        assert!(Serial(1).in_window(exp, exp.plus(3)));
        assert!(!Serial(2).in_window(exp, exp.plus(3)));
    }

    proptest! {
        /// RFC 1982 3.1/3.2: s + n > s for 0 < n < 2^31.
        #[test]
        fn addition_increases(s in any::<u32>(), n in 1u32..HALF) {
            prop_assert!(Serial(s).plus(n) > Serial(s));
            prop_assert!(Serial(s) < Serial(s).plus(n));
        }

        /// Trichotomy where defined: exactly one of <, ==, > holds unless
        /// the pair is 2^31 apart.
        #[test]
        fn trichotomy(a in any::<u32>(), b in any::<u32>()) {
            let (x, y) = (Serial(a), Serial(b));
            let count = [x < y, x == y, x > y].iter().filter(|v| **v).count();
            if a.wrapping_sub(b) == HALF {
                prop_assert_eq!(count, 0);
            } else {
                prop_assert_eq!(count, 1);
            }
        }

        /// Antisymmetry: x < y iff y > x.
        #[test]
        fn antisymmetry(a in any::<u32>(), b in any::<u32>()) {
            prop_assert_eq!(Serial(a) < Serial(b), Serial(b) > Serial(a));
        }

        /// Comparison is invariant under translation (the wrap is invisible).
        #[test]
        fn translation_invariant(a in any::<u32>(), b in any::<u32>(), k in any::<u32>()) {
            prop_assert_eq!(
                Serial(a).partial_cmp(&Serial(b)),
                Serial(a).plus(k).partial_cmp(&Serial(b).plus(k))
            );
        }

        /// distance_from inverts add.
        #[test]
        fn distance_inverts_add(s in any::<u32>(), n in any::<u32>()) {
            prop_assert_eq!(Serial(s).plus(n).distance_from(Serial(s)), n);
        }
    }
}
