//! The streaming PDU (Protocol Data Unit) decoder.
//!
//! [`PduDecoder::decode`] takes the connection's receive buffer and returns
//! one whole PDU at a time. It never consumes a partial PDU: until every
//! byte of the next PDU is buffered it returns `Ok(None)` and leaves the
//! buffer alone, so any split of the byte stream into reads yields the same
//! PDUs. A complete PDU is cut off the buffer with `split_to(..).freeze()`
//! and its data segment is a `Bytes` slice of it: no copy.
//!
//! Error contract (see [`WireError::is_fatal`]):
//! - fatal errors (DataSegmentLength above the limit, header digest
//!   mismatch) consume nothing: the stream can no longer be delimited and
//!   the connection must be dropped (RFC 7143 section 7.8);
//! - other errors (data digest mismatch, unknown opcode, forbidden flags,
//!   malformed AHS) consume exactly the bad PDU; its BHS is then available
//!   from [`PduDecoder::take_rejected_header`] to build the Reject that
//!   RFC 7143 section 11.17 asks for, and decoding continues with the next PDU.

use bytes::{Bytes, BytesMut};

use super::ahs::MAX_AHS_LEN;
use super::bhs::{Bhs, BHS_LEN};
use super::digest::{crc32c, digest_from_bytes, header_digest, padding_len, DIGEST_LEN};
use super::error::WireError;
use super::frame::{header_len, pdu_len, trailer_and_data_len, Digests, Pdu, RawPdu};

/// Decoder settings; may be changed between PDUs (digests switch on right
/// after the final Login Response, RFC 7143 section 13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecoderConfig {
    /// Digests expected on incoming PDUs.
    pub digests: Digests,
    /// The MaxRecvDataSegmentLength this side declared (RFC 7143 section
    /// 13.12); a PDU announcing more is refused before its data arrives.
    pub max_data_segment_length: u32,
}

impl Default for DecoderConfig {
    /// No digests; MaxRecvDataSegmentLength 8192, the RFC 7143 section
    /// 13.12 default.
    fn default() -> Self {
        DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 8192,
        }
    }
}

/// A streaming decoder of iSCSI PDUs.
#[derive(Debug, Clone, Default)]
pub struct PduDecoder {
    config: DecoderConfig,
    rejected: Option<Bytes>,
    /// Bytes 16-19 of the last PDU `decode` returned.
    last_itt: u32,
}

impl PduDecoder {
    /// A decoder with the given settings.
    pub fn new(config: DecoderConfig) -> Self {
        PduDecoder {
            config,
            rejected: None,
            last_itt: 0xffff_ffff,
        }
    }

    /// The current settings.
    pub fn config(&self) -> DecoderConfig {
        self.config
    }

    /// Replaces the settings (between PDUs).
    pub fn set_config(&mut self, config: DecoderConfig) {
        self.config = config;
    }

    /// Switches digests on or off (between PDUs).
    pub fn set_digests(&mut self, digests: Digests) {
        self.config.digests = digests;
    }

    /// Sets the MaxRecvDataSegmentLength limit.
    pub fn set_max_data_segment_length(&mut self, max: u32) {
        self.config.max_data_segment_length = max;
    }

    /// The longest PDU the current settings accept: the most a receive
    /// buffer has to hold before [`decode`](Self::decode) can make progress.
    pub fn max_pdu_len(&self) -> usize {
        let max_words = u8::try_from(MAX_AHS_LEN / 4).unwrap_or(u8::MAX);
        header_len(max_words, self.config.digests).saturating_add(trailer_and_data_len(
            self.config.max_data_segment_length.min(0x00ff_ffff),
            self.config.digests,
        ))
    }

    /// How many more bytes `buf` needs before the next call to
    /// [`decode`](Self::decode) returns a PDU: 0 when it can already (or
    /// will report an oversize DataSegmentLength). An upper bound: with
    /// header digests, a header digest error is reported as soon as the
    /// digest itself is buffered.
    pub fn needed(&self, buf: &[u8]) -> usize {
        let Some(b) = buf.get(..BHS_LEN) else {
            return BHS_LEN - buf.len();
        };
        let bhs = Bhs::new_unchecked(b);
        if bhs.data_segment_len() > self.config.max_data_segment_length {
            return 0;
        }
        pdu_len(&bhs, self.config.digests).saturating_sub(buf.len())
    }

    /// The BHS of the last PDU that [`decode`](Self::decode) or
    /// [`decode_raw`](Self::decode_raw) consumed and refused with a
    /// non-fatal error, for the Reject's data segment (RFC 7143 section
    /// 11.17.4). Cleared by the next decode call.
    pub fn take_rejected_header(&mut self) -> Option<Bytes> {
        self.rejected.take()
    }

    /// Bytes 16-19 (the Initiator Task Tag field, RFC 7143 section 11.2.1)
    /// of the last PDU [`decode`](Self::decode) returned, whatever its
    /// opcode: a Reject or Asynchronous Message header parses without
    /// one, but the peer's bytes are there to echo.
    pub fn last_itt(&self) -> u32 {
        self.last_itt
    }

    /// Delimits and digest-checks the next PDU without parsing its header.
    pub fn decode_raw(&mut self, buf: &mut BytesMut) -> Result<Option<RawPdu>, WireError> {
        self.rejected = None;
        let digests = self.config.digests;
        let Some(b) = buf.get(..BHS_LEN) else {
            return Ok(None);
        };
        let bhs = Bhs::new_unchecked(b);
        let dsl = bhs.data_segment_len();
        // RFC 7143 section 13.12 (MaxRecvDataSegmentLength): the sender
        // "MUST NOT send" a data segment longer than the receiver declared.
        // Checked from the BHS alone, before waiting for or buffering data.
        if dsl > self.config.max_data_segment_length {
            return Err(WireError::DataSegmentTooLong {
                length: dsl,
                limit: self.config.max_data_segment_length,
            });
        }
        let hdr_end = BHS_LEN + bhs.ahs_len_bytes();
        let total = pdu_len(&bhs, digests);
        // RFC 7143 section 11.2.3: the header digest follows BHS + AHS and
        // covers both. Verified as soon as it is buffered, so a corrupt
        // length is not waited for.
        if digests.header {
            let Some(&[a, b, c, d]) = buf.get(hdr_end..hdr_end + DIGEST_LEN) else {
                return Ok(None);
            };
            let received = digest_from_bytes([a, b, c, d]);
            let computed = header_digest(buf.get(..hdr_end).unwrap_or(&[]));
            if received != computed {
                return Err(WireError::HeaderDigest { received, computed });
            }
        }
        if buf.len() < total {
            return Ok(None);
        }
        let data_start = hdr_end + if digests.header { DIGEST_LEN } else { 0 };
        // dsl <= max_data_segment_length and fits the buffer (checked above).
        let dsl = dsl as usize;
        let data_end = data_start + dsl;
        let padded_end = data_end + padding_len(dsl);
        let mut data_digest_error = None;
        // RFC 7143 section 11.2.3: the data digest follows the padded data
        // segment, covers data and padding, and is absent when the data
        // segment is empty.
        if digests.data && dsl > 0 {
            let covered = buf.get(data_start..padded_end).unwrap_or(&[]);
            let computed = crc32c(covered);
            if let Some(&[a, b, c, d]) = buf.get(padded_end..padded_end + DIGEST_LEN) {
                let received = digest_from_bytes([a, b, c, d]);
                if received != computed {
                    data_digest_error = Some(WireError::DataDigest { received, computed });
                }
            }
        }
        let frame = buf.split_to(total).freeze();
        if let Some(e) = data_digest_error {
            self.rejected = Some(frame.slice(..BHS_LEN));
            return Err(e);
        }
        Ok(Some(RawPdu {
            header: frame.slice(..hdr_end),
            data: frame.slice(data_start..data_end),
        }))
    }

    /// Decodes the next whole PDU from `buf`; `Ok(None)` until one is
    /// completely buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Pdu>, WireError> {
        let Some(raw) = self.decode_raw(buf)? else {
            return Ok(None);
        };
        self.last_itt = raw.bhs().itt();
        match raw.parse() {
            Ok(pdu) => Ok(Some(pdu)),
            Err(e) => {
                self.rejected = Some(raw.bhs_bytes());
                Err(e)
            }
        }
    }
}
