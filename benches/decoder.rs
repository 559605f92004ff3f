//! The record decoder on NSS LEEF records: how many bytes a second it frames.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nss_agent::feed::{Frame, RecordDecoder};
use tokio_util::codec::Decoder;

/// About 16 MiB of LEEF records like the NSS MCAS feed's, of varied lengths.
fn leef_stream() -> Vec<u8> {
    let mut out = Vec::with_capacity(17 << 20);
    let mut n = 0u64;
    while out.len() < 16 << 20 {
        out.extend_from_slice(format!(
            "Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\tdevTime=Oct 02 2017 16:21:40 UTC\tsrc=185.27.134.{}\tdst=93.184.216.{}\tsrcPort={}\turl=www.example{}.com/path/{}%20file?q={}\tuser=user{}@example.com\tdepartment=Engineering\tappclass=General%20Browsing\trecordid={}\tdstBytes={}\treqMethod=GET\tuseragent=Mozilla/5.0%20(Windows%20NT%2010.0)\n",
            n % 256, n % 200, 1024 + n % 60000, n % 97, "x".repeat((n % 40) as usize), n, n % 1000, n, n * 7
        ).as_bytes());
        n += 1;
    }
    out
}

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
                    if let Frame::Record(record) = frame {
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
