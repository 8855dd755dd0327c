//! The RFC 7143 section 6 text key=value codec.
//!
//! Login and Text PDUs carry a data segment of `key=value` pairs, each
//! followed by one NUL byte (RFC 7143 section 6.1). A logical text data
//! segment (LTDS) may span several PDUs: every PDU but the last has the C
//! (continue) bit set, and a pair may be cut anywhere, even inside its key.
//!
//! This module offers:
//! - [`parse_pairs`] / [`encode_pairs`]: one complete LTDS to and from pairs;
//! - [`TextAssembler`]: joins data segments PDU by PDU (C bit), bounded;
//! - [`split_text`]: cuts an outgoing LTDS into data segments of at most N bytes;
//! - value parsers ([`parse_number`], [`parse_binary`], [`parse_bool`],
//!   [`parse_range`], [`parse_list`], [`special_value`]) and encoders
//!   ([`encode_hex`], [`encode_base64`]);
//! - [`fuzz_text_kv`]: a pure entry point for the `text_kv` fuzz target.
//!
//! Nothing here panics on any input, and every allocation is bounded by the
//! input length or by an explicit cap.

use crate::prelude::*;
use thiserror::Error;

/// RFC 7143 section 6.1: a standard-label (and so a key-name) "must not
/// exceed 63 characters".
pub const MAX_KEY_LEN: usize = 63;

/// RFC 7143 section 6.1: "If not otherwise specified, the maximum length of a
/// simple-value (not its encoded representation) is 255 bytes, not including
/// the delimiter (comma or zero byte)."
pub const MAX_SIMPLE_VALUE_LEN: usize = 255;

/// RFC 7143 section 12.1.3: CHAP's C and R are large-binary-values whose
/// "binary length ... MUST NOT exceed 1024 bytes". This is the largest
/// decoded binary value any key of RFC 7143 carries.
pub const MAX_BINARY_LEN: usize = 1024;

/// The largest single value (the characters after `=`) this codec accepts.
///
/// RFC 7143 section 6.1: "Any iSCSI target or initiator MUST support
/// receiving at least 8192 bytes of key=value data in a negotiation
/// sequence". No single value of any RFC 7143 key can legitimately be longer
/// (the longest, a 1024-byte CHAP challenge in hex, is 2050 characters), so
/// one value is capped at 8192 bytes.
pub const MAX_VALUE_LEN: usize = 8192;

/// Default cap on one logical text data segment assembled by
/// [`TextAssembler`]: 64 KiB, the amount RFC 7143 section 6.1 requires for
/// "authentication methods that explicitly require support for very long
/// authentication items".
pub const DEFAULT_MAX_TEXT_LEN: usize = 64 * 1024;

/// An error in RFC 7143 section 6 text (the key=value codec and value forms).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TextError {
    /// A record had no `=` (RFC 7143 section 6.1: "A key-name is whatever
    /// precedes the first '=' in the key=value pair").
    #[error("RFC 7143 section 6.1: key=value pair at byte {offset} has no '='")]
    MissingEquals {
        /// Byte offset of the record in the text.
        offset: usize,
    },
    /// An empty key, or an empty record between two NULs.
    #[error("RFC 7143 section 6.1: empty key at byte {offset}")]
    EmptyKey {
        /// Byte offset of the record in the text.
        offset: usize,
    },
    /// A key longer than 63 bytes.
    #[error("RFC 7143 section 6.1: key of {len} bytes exceeds 63")]
    KeyTooLong {
        /// Length of the key.
        len: usize,
    },
    /// A key byte outside the standard-label character set.
    #[error("RFC 7143 section 6.1: invalid byte 0x{byte:02x} in key")]
    InvalidKeyChar {
        /// The offending byte.
        byte: u8,
    },
    /// A value longer than this codec's bound.
    #[error("RFC 7143 section 6.1: value of key {key} is {len} bytes, limit {limit}")]
    ValueTooLong {
        /// The key whose value is too long.
        key: String,
        /// Length of the value.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Text is not UTF-8 (RFC 7143 section 6.1: pairs are "encoded in UTF-8").
    #[error("RFC 7143 section 6.1: text is not UTF-8")]
    NotUtf8,
    /// A value to encode contains a NUL byte, the pair delimiter.
    #[error("RFC 7143 section 6.1: value contains a NUL byte")]
    NulInValue,
    /// The last pair of a complete text (C=0) lacks its NUL.
    #[error("RFC 7143 section 6.1: last key=value pair is not NUL-terminated")]
    Unterminated,
    /// The assembled text exceeds the configured cap.
    #[error("RFC 7143 section 6.1: text of {len} bytes exceeds the cap of {limit}")]
    TooLarge {
        /// Bytes that would be held.
        len: usize,
        /// The configured cap.
        limit: usize,
    },
    /// A value is not a valid numerical-value.
    #[error("RFC 7143 section 6.1: invalid numerical value {0:?}")]
    InvalidNumber(String),
    /// A numerical value is 2^64 or more.
    #[error("RFC 7143 section 6.1: numerical value {0:?} is not below 2^64")]
    NumberTooLarge(String),
    /// A value is not a valid hex-constant or base64-constant.
    #[error("RFC 7143 section 6.1: invalid binary value")]
    InvalidBinary,
    /// A binary value decodes to more bytes than allowed.
    #[error("RFC 7143 section 6.1: binary value of {len} bytes exceeds {limit}")]
    BinaryTooLong {
        /// Decoded (or minimum decoded) length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A value is neither `Yes` nor `No`.
    #[error("RFC 7143 section 6.1: invalid boolean-value {0:?}")]
    InvalidBool(String),
    /// A numeric-range is malformed or its right side is lower than its left.
    #[error("RFC 7143 section 6.1: invalid numeric-range {0:?}")]
    InvalidRange(String),
    /// A list has an empty element or an element over 255 bytes.
    #[error("RFC 7143 section 6.1: invalid list-of-values")]
    InvalidList,
}

/// The reserved constants of RFC 7143 section 6.2 (plus `None`, reserved for
/// "a missing function" in section 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecialValue {
    /// `NotUnderstood`: "the answer for a key not understood MUST be
    /// key=NotUnderstood".
    NotUnderstood,
    /// `Irrelevant`: the key is not relevant for this negotiation.
    Irrelevant,
    /// `Reject`: the offer is refused; the key keeps its current or default value.
    Reject,
    /// `None`: a missing function in a list (digests, AuthMethod).
    None,
}

impl SpecialValue {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpecialValue::NotUnderstood => "NotUnderstood",
            SpecialValue::Irrelevant => "Irrelevant",
            SpecialValue::Reject => "Reject",
            SpecialValue::None => "None",
        }
    }
}

/// Recognises `NotUnderstood`, `Irrelevant`, `Reject` and `None`
/// (case-sensitive, RFC 7143 section 6.1: keys and values "are case sensitive").
pub fn special_value(value: &str) -> Option<SpecialValue> {
    match value {
        "NotUnderstood" => Some(SpecialValue::NotUnderstood),
        "Irrelevant" => Some(SpecialValue::Irrelevant),
        "Reject" => Some(SpecialValue::Reject),
        "None" => Some(SpecialValue::None),
        _ => None,
    }
}

/// Checks a key-name.
///
/// RFC 7143 section 6.1: a standard-label is "a string of one or more
/// characters that consist of letters, digits, dot, minus, plus, commercial
/// at, or underscore", of at most 63 characters. The RFC also says it "MUST
/// begin with a capital letter", but its own `iSCSIProtocolLevel` key
/// (section 13.24) does not, so any letter is accepted as the first
/// character. `#` is accepted only in the `X#` prefix of IANA-registered
/// extension keys (section 13.22).
pub fn validate_key(key: &[u8]) -> Result<(), TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset: 0 });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong { len: key.len() });
    }
    for (i, &b) in key.iter().enumerate() {
        let ok = match b {
            b'a'..=b'z' | b'A'..=b'Z' => true,
            b'0'..=b'9' | b'.' | b'-' | b'+' | b'@' | b'_' => i > 0,
            b'#' => i == 1 && key.first() == Some(&b'X'),
            _ => false,
        };
        if !ok {
            return Err(TextError::InvalidKeyChar { byte: b });
        }
    }
    Ok(())
}

fn parse_record(record: &[u8], offset: usize) -> Result<(String, String), TextError> {
    if record.is_empty() {
        return Err(TextError::EmptyKey { offset });
    }
    let eq = record
        .iter()
        .position(|&b| b == b'=')
        .ok_or(TextError::MissingEquals { offset })?;
    let (key, rest) = record.split_at(eq);
    let value = rest.get(1..).unwrap_or(&[]);
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset });
    }
    validate_key(key)?;
    // validate_key admits ASCII only, so this cannot fail; map anyway.
    let key = core::str::from_utf8(key).map_err(|_| TextError::NotUtf8)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(TextError::ValueTooLong {
            key: key.to_owned(),
            len: value.len(),
            limit: MAX_VALUE_LEN,
        });
    }
    let value = core::str::from_utf8(value).map_err(|_| TextError::NotUtf8)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses one complete logical text data segment into `(key, value)` pairs,
/// in order, duplicates kept (duplicate handling is key-specific and left
/// to the caller: RFC 7143 section 6.2 allows repeats only for keys such as
/// `TargetAddress`).
///
/// RFC 7143 section 6.1: "Every key=value pair, including the last or only
/// pair in a LTDS, MUST be followed by one null (0x00) delimiter." Trailing
/// bytes without a NUL are [`TextError::Unterminated`]. As a tolerance for
/// peers that pad the data segment itself, a run of NULs at the very end is
/// ignored; an empty record elsewhere is an error.
pub fn parse_pairs(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    let mut out = Vec::new();
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let body = data.get(..end).unwrap_or(&[]);
    if body.is_empty() {
        return Ok(out);
    }
    if end == data.len() {
        return Err(TextError::Unterminated);
    }
    let mut offset = 0usize;
    for record in body.split(|&b| b == 0) {
        out.push(parse_record(record, offset)?);
        offset = offset.saturating_add(record.len()).saturating_add(1);
    }
    Ok(out)
}

/// Appends one `key=value` pair and its NUL to `out`, after checking the key
/// ([`validate_key`]), that the value holds no NUL and is at most
/// [`MAX_VALUE_LEN`] bytes.
pub fn encode_pair(key: &str, value: &str, out: &mut Vec<u8>) -> Result<(), TextError> {
    validate_key(key.as_bytes())?;
    if value.len() > MAX_VALUE_LEN {
        return Err(TextError::ValueTooLong {
            key: key.to_owned(),
            len: value.len(),
            limit: MAX_VALUE_LEN,
        });
    }
    if value.as_bytes().contains(&0) {
        return Err(TextError::NulInValue);
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    Ok(())
}

/// Appends every pair with [`encode_pair`]; on error `out` may hold the
/// pairs encoded before the bad one.
pub fn encode_pairs<K, V, I>(pairs: I, out: &mut Vec<u8>) -> Result<(), TextError>
where
    K: AsRef<str>,
    V: AsRef<str>,
    I: IntoIterator<Item = (K, V)>,
{
    for (k, v) in pairs {
        encode_pair(k.as_ref(), v.as_ref(), out)?;
    }
    Ok(())
}

/// Parses a numerical-value: a decimal-constant or a hex-constant (`0x`/`0X`)
/// below 2^64 (RFC 7143 section 6.1). Base64-constants (`0b`/`0B`) are also
/// accepted, as for large-numerical-values, when they fit in 64 bits.
pub fn parse_number(value: &str) -> Result<u64, TextError> {
    let bad = || TextError::InvalidNumber(truncate_for_error(value));
    let big = || TextError::NumberTooLarge(truncate_for_error(value));
    let b = value.as_bytes();
    match b {
        [b'0', b'x' | b'X', digits @ ..] => {
            if digits.is_empty() {
                return Err(bad());
            }
            let mut acc: u64 = 0;
            for &d in digits {
                let v = hex_val(d).ok_or_else(bad)?;
                acc = acc
                    .checked_mul(16)
                    .and_then(|a| a.checked_add(u64::from(v)))
                    .ok_or_else(big)?;
            }
            Ok(acc)
        }
        [b'0', b'b' | b'B', ..] => {
            let bytes = parse_binary(value, MAX_BINARY_LEN).map_err(|_| bad())?;
            let mut acc: u64 = 0;
            for byte in bytes {
                acc = acc
                    .checked_mul(256)
                    .and_then(|a| a.checked_add(u64::from(byte)))
                    .ok_or_else(big)?;
            }
            Ok(acc)
        }
        [] => Err(bad()),
        // RFC 7143 section 6.1: a decimal-constant is "the digit 0 or a
        // string of one or more digits that start with a non-zero digit".
        [b'0', _, ..] => Err(bad()),
        digits => {
            let mut acc: u64 = 0;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return Err(bad());
                }
                acc = acc
                    .checked_mul(10)
                    .and_then(|a| a.checked_add(u64::from(d - b'0')))
                    .ok_or_else(big)?;
            }
            Ok(acc)
        }
    }
}

/// Parses a numeric-range `a~b` (RFC 7143 section 6.1: "the value to the
/// right of tilde must not be lower than the value to the left").
pub fn parse_range(value: &str) -> Result<(u64, u64), TextError> {
    let bad = || TextError::InvalidRange(truncate_for_error(value));
    let (lo, hi) = value.split_once('~').ok_or_else(bad)?;
    let lo = parse_number(lo).map_err(|_| bad())?;
    let hi = parse_number(hi).map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Parses a boolean-value: exactly `Yes` or `No` (RFC 7143 section 6.1).
pub fn parse_bool(value: &str) -> Result<bool, TextError> {
    match value {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(TextError::InvalidBool(truncate_for_error(value))),
    }
}

/// The wire spelling of a boolean: `Yes` or `No`.
pub const fn encode_bool(v: bool) -> &'static str {
    if v {
        "Yes"
    } else {
        "No"
    }
}

/// Splits a list-of-values on commas (RFC 7143 section 6.1). Every element
/// must be non-empty and at most [`MAX_SIMPLE_VALUE_LEN`] bytes.
pub fn parse_list(value: &str) -> Result<Vec<&str>, TextError> {
    let mut out = Vec::new();
    for item in value.split(',') {
        if item.is_empty() || item.len() > MAX_SIMPLE_VALUE_LEN {
            return Err(TextError::InvalidList);
        }
        out.push(item);
    }
    Ok(out)
}

/// Decodes a binary-value given as a hex-constant (`0x`/`0X`) or a
/// base64-constant (`0b`/`0B`, RFC 2045 alphabet, optional `=` padding),
/// refusing anything that decodes to more than `max_len` bytes before
/// allocating it (RFC 7143 section 6.1).
///
/// A hex-constant with an odd number of digits has an implicit leading zero
/// nibble ("a byte-length of (the integer part of) (n+1)/2").
pub fn parse_binary(value: &str, max_len: usize) -> Result<Vec<u8>, TextError> {
    let b = value.as_bytes();
    match b {
        [b'0', b'x' | b'X', digits @ ..] => {
            if digits.is_empty() {
                return Err(TextError::InvalidBinary);
            }
            let len = digits.len() / 2 + digits.len() % 2;
            if len > max_len {
                return Err(TextError::BinaryTooLong {
                    len,
                    limit: max_len,
                });
            }
            let mut out = Vec::with_capacity(len);
            let mut iter = digits.iter();
            if digits.len() % 2 == 1 {
                let d = iter.next().copied().unwrap_or(b'0');
                out.push(hex_val(d).ok_or(TextError::InvalidBinary)?);
            }
            while let (Some(&h), Some(&l)) = (iter.next(), iter.next()) {
                let h = hex_val(h).ok_or(TextError::InvalidBinary)?;
                let l = hex_val(l).ok_or(TextError::InvalidBinary)?;
                out.push((h << 4) | l);
            }
            Ok(out)
        }
        [b'0', b'b' | b'B', rest @ ..] => decode_base64(rest, max_len),
        _ => Err(TextError::InvalidBinary),
    }
}

fn hex_val(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// RFC 2045 base64 as RFC 7143 section 6.1 uses it: the standard alphabet,
/// `=` padding optional on input, written on output, and the unused low
/// bits of the last character zero ("Correctly encoded base64 strings
/// cannot have n values of 1, 5 ... k*4 + 1"; the decoder refuses those).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn decode_base64(text: &[u8], max_len: usize) -> Result<Vec<u8>, TextError> {
    // The decoded length bounds the allocation, so it is checked before
    // decoding (RFC 7143 section 6.1 binary values are bounded per key).
    let unpadded = text.iter().rev().take_while(|&&c| c == b'=').count();
    let n = text.len() - unpadded;
    if n == 0 || unpadded > 2 {
        return Err(TextError::InvalidBinary);
    }
    let len = n / 4 * 3 + (n % 4).saturating_sub(1);
    if len > max_len {
        return Err(TextError::BinaryTooLong {
            len,
            limit: max_len,
        });
    }
    base64::Engine::decode(&BASE64, text).map_err(|_| TextError::InvalidBinary)
}

/// Encodes bytes as a hex-constant: `0x` followed by two lowercase digits
/// per byte (RFC 7143 section 6.1). An empty input gives `0x` alone, which
/// [`parse_binary`] refuses: binary values have at least one digit.
pub fn encode_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + data.len().saturating_mul(2));
    s.push_str("0x");
    // `b >> 4` and `b & 0xf` are below 16, the length of `HEX`.
    #[allow(clippy::indexing_slicing)]
    for &b in data {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Encodes bytes as a base64-constant: `0b` followed by RFC 2045 base64 with
/// `=` padding (RFC 7143 section 6.1).
pub fn encode_base64(data: &[u8]) -> String {
    let mut s = String::with_capacity(2 + data.len().div_ceil(3).saturating_mul(4));
    s.push_str("0b");
    base64::Engine::encode_string(&BASE64, data, &mut s);
    s
}

fn truncate_for_error(value: &str) -> String {
    // Keep error values small: at most 64 bytes, cut on a char boundary.
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or("").to_owned()
}

/// Joins the data segments of a logical text data segment that arrive one
/// PDU at a time (RFC 7143 section 6.1: "Key=value pairs may span PDU
/// boundaries. An initiator or target that sends partial key=value text
/// within a PDU indicates that more text follows by setting the C bit").
///
/// Memory is bounded: the bytes held never exceed the cap given to
/// [`TextAssembler::with_limit`] (default [`DEFAULT_MAX_TEXT_LEN`]).
#[derive(Debug, Clone)]
pub struct TextAssembler {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for TextAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl TextAssembler {
    /// An assembler with the default 64 KiB cap.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_TEXT_LEN)
    }

    /// An assembler holding at most `limit` bytes of one LTDS.
    pub fn with_limit(limit: usize) -> Self {
        TextAssembler {
            buf: Vec::new(),
            limit,
        }
    }

    /// Bytes held from earlier segments with C=1.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Drops any partial text (e.g. when a negotiation is restarted).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Feeds the data segment of one PDU. With `continues` (the C bit) set,
    /// the bytes are held and `Ok(None)` is returned; with it clear, the
    /// whole LTDS is parsed with [`parse_pairs`] and returned, and the
    /// assembler is ready for the next LTDS. On error the partial text is
    /// dropped.
    pub fn push(
        &mut self,
        segment: &[u8],
        continues: bool,
    ) -> Result<Option<Vec<(String, String)>>, TextError> {
        let len = self.buf.len().saturating_add(segment.len());
        if len > self.limit {
            self.buf.clear();
            return Err(TextError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        if continues {
            self.buf.extend_from_slice(segment);
            return Ok(None);
        }
        let result = if self.buf.is_empty() {
            parse_pairs(segment)
        } else {
            self.buf.extend_from_slice(segment);
            parse_pairs(&self.buf)
        };
        self.buf.clear();
        result.map(Some)
    }
}

/// One outgoing data segment produced by [`split_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSegment<'a> {
    /// The bytes of this PDU's data segment.
    pub data: &'a [u8],
    /// The C bit: set on every segment but the last.
    pub continues: bool,
}

/// Iterator returned by [`split_text`].
#[derive(Debug, Clone)]
pub struct SplitText<'a> {
    rest: &'a [u8],
    max: usize,
    done: bool,
}

impl<'a> Iterator for SplitText<'a> {
    type Item = TextSegment<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let take = self.rest.len().min(self.max);
        let (data, rest) = self.rest.split_at(take);
        self.rest = rest;
        let continues = !rest.is_empty();
        if !continues {
            self.done = true;
        }
        Some(TextSegment { data, continues })
    }
}

/// Cuts an outgoing LTDS into data segments of at most `max_segment` bytes
/// (the peer's MaxRecvDataSegmentLength), C set on all but the last
/// (RFC 7143 section 6.1). Pairs may be cut anywhere. An empty text yields a
/// single empty segment with C clear; a `max_segment` of 0 is treated as 1.
pub fn split_text(text: &[u8], max_segment: usize) -> SplitText<'_> {
    SplitText {
        rest: text,
        max: max_segment.max(1),
        done: false,
    }
}

/// Fuzzing entry point for the `text_kv` target: feeds `data` (cut into
/// segments at points chosen by its first byte) to a [`TextAssembler`],
/// then runs every value parser on every key and value. Never panics.
pub fn fuzz_text_kv(data: &[u8]) {
    let (cut, body) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c).max(1), rest),
        None => (1, data),
    };
    let mut asm = TextAssembler::with_limit(4096);
    let mut pairs = Vec::new();
    for seg in split_text(body, cut) {
        if let Ok(Some(p)) = asm.push(seg.data, seg.continues) {
            pairs = p;
        }
    }
    let _ = parse_pairs(body);
    for (k, v) in &pairs {
        let _ = validate_key(k.as_bytes());
        let _ = parse_number(v);
        let _ = parse_range(v);
        let _ = parse_bool(v);
        let _ = parse_list(v);
        let _ = special_value(v);
        if let Ok(bin) = parse_binary(v, MAX_BINARY_LEN) {
            let _ = parse_binary(&encode_hex(&bin), MAX_BINARY_LEN);
            let _ = parse_binary(&encode_base64(&bin), MAX_BINARY_LEN);
        }
        let mut out = Vec::new();
        let _ = encode_pair(k, v, &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_roundtrip_small() {
        for n in 0..10usize {
            let data: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            let enc = encode_base64(&data);
            if n == 0 {
                assert!(parse_binary(&enc, 10).is_err());
            } else {
                assert_eq!(parse_binary(&enc, 10).unwrap(), data);
            }
        }
    }
}
