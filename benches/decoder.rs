//! The record decoder on NSS LEEF records: how many bytes a second it frames.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nss_agent::feed::{Decoded, RecordDecoder};
use tokio_util::codec::Decoder;

mod common;
use common::leef_stream;

fn decode(c: &mut Criterion) {
    let stream = leef_stream();
    let mut group = c.benchmark_group("decoder");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("leef_records", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut decoder = RecordDecoder::new(1 << 20);
                let mut records = 0usize;
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    if let Decoded::Record(record) = frame {
                        records += record.len();
                    }
                }
                records
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
