//! The check a sealed batch passes before upload and before a merge, on the same batch
//! file both ways: against the CRC-32 of its bytes recorded at seal (batches this agent
//! seals) and by decompressing it whole (salvaged batches, older versions' files, and
//! every batch before the checksum). Throughput is of the batch's uncompressed bytes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nss_agent::spool::{BatchFile, Spool};

mod common;
use common::{leef_stream, records};

fn verify(c: &mut Criterion) {
    let stream = leef_stream();
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::prepare(dir.path()).unwrap();
    let mut file = BatchFile::create(
        &spool.new_batch_path(0, nss_agent::handoff::Origin::Stream),
        6,
    )
    .unwrap();
    for record in records(&stream) {
        file.append(&record).unwrap();
    }
    let written = file.finish().unwrap();
    let copy = spool.new_batch_path(0, nss_agent::handoff::Origin::Stream);
    std::fs::copy(&written.path, &copy).unwrap();
    let inflated = spool
        .seal(&copy, written.records, written.raw_bytes)
        .unwrap();
    let checksummed = spool.seal_written(&written, &[]).unwrap().batch;
    assert_eq!(checksummed.gzip_bytes, inflated.gzip_bytes);

    let mut group = c.benchmark_group("verify");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(written.raw_bytes));
    group.bench_function("checksum", |b| {
        b.iter(|| spool.verify(&checksummed).unwrap())
    });
    group.bench_function("inflate", |b| b.iter(|| spool.verify(&inflated).unwrap()));
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
