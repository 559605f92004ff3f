//! The batch writer (records appended one by one, gzip trailer, fsync) against raw flate2
//! compressing the same bytes in one call, at the same level and backend: what the
//! per-record path costs.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::write::GzEncoder;
use flate2::Compression;
use nss_agent::spool::BatchFile;

mod common;
use common::{leef_stream, records};

fn write(c: &mut Criterion) {
    let stream = leef_stream();
    let records = records(&stream);
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("batch_writer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for level in [1, 6] {
        group.bench_function(format!("batch_file_level_{level}"), |b| {
            b.iter(|| {
                let path = dir.path().join("batch.gz");
                let _ = std::fs::remove_file(&path);
                let mut batch = BatchFile::create(&path, level).unwrap();
                for record in &records {
                    batch.append(record).unwrap();
                }
                batch.finish().unwrap()
            })
        });
        group.bench_function(format!("raw_flate2_level_{level}"), |b| {
            b.iter(|| {
                let path = dir.path().join("raw.gz");
                let file = std::fs::File::create(&path).unwrap();
                let mut encoder = GzEncoder::new(
                    std::io::BufWriter::with_capacity(256 << 10, file),
                    Compression::new(level),
                );
                encoder.write_all(&stream).unwrap();
                let file = encoder.finish().unwrap().into_inner().unwrap();
                file.sync_all().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
