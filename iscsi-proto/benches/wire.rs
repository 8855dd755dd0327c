//! Wire-layer benchmarks: BHS parse + Repr, emit, streaming decode and CRC32C.
//!
//! Run with `cargo bench -p iscsi-proto --bench wire`.
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use iscsi_proto::wire::{
    digest, Bhs, DataIn, DataInStatus, DecoderConfig, Digests, Header, Pdu, PduDecoder, Residual,
    ScsiCommand, Serial, TaskAttr, BHS_LEN,
};

fn scsi_command() -> Header {
    let mut cdb = [0u8; 16];
    cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0]);
    Header::ScsiCommand(ScsiCommand {
        immediate: false,
        final_pdu: true,
        read: true,
        write: false,
        attr: TaskAttr::Simple,
        lun: 0x0001_0000_0000_0000,
        itt: 0x1234,
        expected_data_transfer_length: 4096,
        cmd_sn: Serial(77),
        exp_stat_sn: Serial(55),
        cdb,
    })
}

fn data_in(offset: u32, sn: u32, last: bool) -> Header {
    Header::DataIn(DataIn {
        final_pdu: last,
        ack: false,
        lun: 0,
        itt: 0x1234,
        ttt: 0xffff_ffff,
        exp_cmd_sn: Serial(78),
        max_cmd_sn: Serial(109),
        data_sn: Serial(sn),
        buffer_offset: offset,
        status: last.then_some(DataInStatus {
            status: 0,
            stat_sn: Serial(55),
            residual: Residual::None,
        }),
    })
}

fn to_bytes(h: &Header, data_len: u32) -> [u8; BHS_LEN] {
    let mut buf = [0u8; BHS_LEN];
    let mut bhs = Bhs::new_unchecked(&mut buf[..]);
    h.emit(&mut bhs);
    bhs.set_data_segment_len(data_len);
    buf
}

fn bench_header(c: &mut Criterion) {
    let cmd = to_bytes(&scsi_command(), 0);
    let din = to_bytes(&data_in(0, 0, true), 4096);
    let mut g = c.benchmark_group("bhs");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_scsi_command", |b| {
        b.iter(|| Header::parse_bytes(black_box(&cmd[..])).ok())
    });
    g.bench_function("parse_data_in", |b| {
        b.iter(|| Header::parse_bytes(black_box(&din[..])).ok())
    });
    let h = scsi_command();
    g.bench_function("emit_scsi_command", |b| {
        let mut buf = [0u8; BHS_LEN];
        b.iter(|| {
            let mut bhs = Bhs::new_unchecked(&mut buf[..]);
            black_box(&h).emit(&mut bhs);
            black_box(&buf);
        })
    });
    g.finish();
}

fn stream_of_data_in(count: u32, seg: usize, digests: Digests) -> Bytes {
    let payload = Bytes::from(vec![0x5au8; seg]);
    let mut out = BytesMut::new();
    for i in 0..count {
        let pdu = Pdu::new(data_in(i * seg as u32, i, i + 1 == count), payload.clone());
        pdu.encode(&mut out, digests).expect("encodable");
    }
    out.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_8k_data_in");
    for (name, digests) in [
        ("no_digests", Digests::NONE),
        ("crc32c_digests", Digests::BOTH),
    ] {
        let stream = stream_of_data_in(128, 8192, digests);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut dec = PduDecoder::new(DecoderConfig {
                        digests,
                        max_data_segment_length: 8192,
                    });
                    let mut n = 0usize;
                    while let Ok(Some(pdu)) = dec.decode(&mut buf) {
                        n += pdu.data.len();
                    }
                    assert_eq!(n, 128 * 8192);
                    n
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [4096usize, 1 << 20] {
        let data = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}"), |b| {
            b.iter(|| digest::crc32c(black_box(&data)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_header, bench_decode, bench_crc);
criterion_main!(benches);
