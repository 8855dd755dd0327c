//! Entry points for the cargo-fuzz targets (feature `fuzzing`). Each
//! function takes arbitrary bytes and panics only on a bug.

use bytes::BytesMut;

use crate::wire::bhs::{Bhs, BHS_LEN};
use crate::wire::decoder::{DecoderConfig, PduDecoder};
use crate::wire::error::WireError;
use crate::wire::frame::{Digests, Pdu};
use crate::wire::pdu::Header;

const ALL_DIGESTS: [Digests; 4] = [
    Digests {
        header: false,
        data: false,
    },
    Digests {
        header: true,
        data: false,
    },
    Digests {
        header: false,
        data: true,
    },
    Digests {
        header: true,
        data: true,
    },
];

/// Feeds `input` to a decoder in chunks whose sizes come from `sizes`
/// (cycled; 0 means "everything left"), collecting every result until the
/// input is exhausted or a fatal error stops the stream. Asserts that the
/// receive buffer never holds more than one maximal PDU plus one chunk.
fn decode_chunked(
    config: DecoderConfig,
    input: &[u8],
    sizes: &[u8],
) -> Vec<Result<Pdu, WireError>> {
    let mut dec = PduDecoder::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0usize;
    while !rest.is_empty() {
        let want = match sizes.get(i % sizes.len().max(1)) {
            Some(0) | None => rest.len(),
            Some(n) => usize::from(*n),
        };
        i = i.wrapping_add(1);
        let (chunk, tail) = rest.split_at(want.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(pdu)) => out.push(Ok(pdu)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    if !fatal {
                        assert!(dec.take_rejected_header().is_some());
                    }
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
        // Bounded buffering: an incomplete PDU is never longer than the
        // largest PDU the settings accept.
        assert!(buf.len() < dec.max_pdu_len());
        assert!(dec.needed(&buf) > 0);
    }
    out
}

/// Decodes arbitrary bytes under every digest setting, whole and in
/// chunkings derived from the input, asserting no panic, bounded
/// buffering and identical results for every chunking.
pub fn pdu_decode(data: &[u8]) {
    let (ctrl, input) = data.split_at(data.len().min(4));
    let max = match ctrl.first() {
        Some(b) => u32::from(*b) * 64,
        None => 8192,
    };
    for digests in ALL_DIGESTS {
        let config = DecoderConfig {
            digests,
            max_data_segment_length: max,
        };
        let whole = decode_chunked(config, input, &[0]);
        let sizes: Vec<u8> = ctrl.iter().map(|b| b % 61 + 1).collect();
        let chunked = decode_chunked(config, input, &sizes);
        assert_eq!(whole, chunked);
        let bytewise = decode_chunked(config, input, &[1]);
        assert_eq!(whole, bytewise);
    }
}

/// Parses arbitrary bytes as a BHS and as a whole PDU; whatever parses is
/// emitted again and must parse to the same value.
pub fn roundtrip(data: &[u8]) {
    if let Some(b) = data.get(..BHS_LEN) {
        let bhs = Bhs::new_unchecked(b);
        if let Ok(h) = Header::parse(&bhs) {
            let bytes = h.to_bytes(bhs.total_ahs_len(), bhs.data_segment_len());
            assert_eq!(Header::parse_bytes(&bytes), Ok(h));
        }
    }
    let mut dec = PduDecoder::new(DecoderConfig {
        digests: Digests::NONE,
        max_data_segment_length: 0x00ff_ffff,
    });
    let mut buf = BytesMut::from(data);
    if let Ok(Some(pdu)) = dec.decode(&mut buf) {
        for digests in ALL_DIGESTS {
            let mut out = BytesMut::new();
            assert!(pdu.encode(&mut out, digests).is_ok());
            assert_eq!(out.len(), pdu.encoded_len(digests));
            dec.set_digests(digests);
            let again = dec.decode(&mut out);
            assert_eq!(again, Ok(Some(pdu.clone())));
            assert!(out.is_empty());
        }
    }
}

/// Fuzz entry point `text_kv`: arbitrary bytes through the text key=value
/// codec (streaming assembly with the C bit, every value parser) and the
/// negotiation engines of both sides. Nothing may panic.
pub fn text_kv(data: &[u8]) {
    crate::wire::text::fuzz_text_kv(data);
    crate::login::negotiation::fuzz_negotiation(data);
}
