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

/// Fuzz entry point `target_stream`: arbitrary initiator bytes into a
/// target session, in the login phase or (with a valid login prepended)
/// in the Full Feature Phase, cut into reads at points taken from the
/// input. Every delivered command is completed with data, timers run, and
/// nothing may panic; the receive buffer never holds more than one PDU
/// beyond what the decoder accepts.
pub fn target_stream(data: &[u8]) {
    use crate::scsi::ScsiStatus;
    use crate::target::{Config, NopConfig, Session, TargetEvent};
    use crate::wire::pdu::{LoginRequest, Stage};
    use crate::wire::{Isid, Serial};
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    let (ctrl, input) = data.split_at(data.len().min(3));
    let mode = ctrl.first().copied().unwrap_or(0);
    let chunk = usize::from(ctrl.get(1).copied().unwrap_or(0)) + 1;
    let mut cfg = Config::new("iqn.2024-01.fuzz:t");
    cfg.seed = u64::from(ctrl.get(2).copied().unwrap_or(0));
    cfg.params.initial_r2t = mode & 2 == 0;
    cfg.params.immediate_data = mode & 4 != 0;
    cfg.params.max_recv_data_segment_length = 4096;
    cfg.params.first_burst_length = 4096;
    cfg.params.max_burst_length = 8192;
    cfg.cmd_window = 4;
    cfg.max_transfer_length = 1 << 16;
    cfg.nop = Some(NopConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    });
    let Ok(mut s) = Session::new(cfg) else {
        return;
    };
    let mut stream = BytesMut::new();
    if mode & 1 == 1 {
        let text: &[u8] = b"InitiatorName=iqn.2024-01.fuzz:i\0TargetName=iqn.2024-01.fuzz:t\0\
MaxBurstLength=8192\0FirstBurstLength=4096\0InitialR2T=No\0ImmediateData=Yes\0";
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: Isid::random([1, 2, 3], 1),
            tsih: 0,
            itt: 1,
            cid: 1,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        let _ = Pdu::new(req, Bytes::from_static(text)).encode(&mut stream, Digests::NONE);
    }
    stream.extend_from_slice(input);
    let mut now = Instant::now();
    let mut buf = BytesMut::new();
    let mut rest = &stream[..];
    let mut round = 0u32;
    loop {
        let (piece, tail) = rest.split_at(chunk.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        // Drain completely (the transmit queue has a high-water mark).
        for _ in 0..64 {
            s.handle_input(now, &mut buf);
            let mut sent = 0;
            while s.poll_transmit(now).is_some() {
                sent += 1;
            }
            while let Some(ev) = s.poll_event() {
                if let TargetEvent::Command(req) = ev {
                    let len = req.expected_read_len as usize + usize::from(mode >> 4);
                    let _ = s.complete(
                        req.task,
                        ScsiStatus::Good,
                        None,
                        Bytes::from(vec![0u8; len]),
                    );
                }
            }
            if sent == 0 {
                break;
            }
        }
        assert!(s.is_closed() || buf.len() < 8192 + 1200 + chunk);
        round = round.wrapping_add(1);
        if round % 8 == 0 {
            now += Duration::from_millis(700);
            s.handle_timeout(now);
        }
        if rest.is_empty() || s.is_closed() {
            break;
        }
    }
    while s.poll_transmit(now).is_some() {}
    while s.poll_event().is_some() {}
}
