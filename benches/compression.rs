//! The batch writer on LEEF records at each gzip level, with the flate2 backend this build
//! was compiled with: speed (criterion) and compressed size, the size against GNU gzip -6's
//! on the same bytes. Build with `--features backend-zlib-ng`, or with
//! `--no-default-features --features backend-miniz`, to measure another backend.
//!
//! A full run stays short with e.g. `cargo bench --bench compression -- --warm-up-time 1
//! --measurement-time 4`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use nss_agent::spool::BatchFile;

mod common;
use common::{leef_stream, records};

/// The gzip levels measured.
const LEVELS: [u32; 7] = [1, 2, 3, 4, 5, 6, 9];

/// The backend flate2 uses in this build. flate2 takes a C zlib first, then zlib-rs, then
/// miniz_oxide, whichever features are on: the same order here. Another crate of the build
/// can turn on a backend too; scripts/bench-backends checks the binary's symbols.
const BACKEND: &str = if cfg!(feature = "backend-zlib-ng") {
    "zlib-ng"
} else if cfg!(feature = "backend-zlib-rs") {
    "zlib-rs"
} else {
    "miniz"
};

/// Writes `records` as one batch file at `path` (which must not exist) at `level`.
fn write_batch(path: &Path, records: &[Bytes], level: u32) {
    let mut batch = BatchFile::create(path, level).unwrap();
    for record in records {
        batch.append(record).unwrap();
    }
    batch.finish().unwrap();
}

/// The size of GNU gzip's output for `bytes` at level 6.
fn gzip_6_size(bytes: &[u8]) -> u64 {
    let mut gzip = Command::new("gzip")
        .args(["-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("GNU gzip must be on PATH");
    // Written from another thread: gzip's output would fill the pipe before it has read
    // all of its input.
    let mut stdin = gzip.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = gzip.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "gzip -6 failed");
    output.stdout.len() as u64
}

/// The bytes a batch file of `records` holds once uncompressed: each followed by a newline.
fn batch_content(records: &[Bytes]) -> Vec<u8> {
    let mut raw = Vec::new();
    for record in records {
        raw.extend_from_slice(record);
        raw.push(b'\n');
    }
    raw
}

/// Prints, for each level, the batch file's size against the raw bytes and against gzip -6.
/// Compression is deterministic: once is enough.
fn print_sizes(records: &[Bytes], raw: &[u8], dir: &Path) {
    let gzip = gzip_6_size(raw);
    println!(
        "size gzip-6: {gzip} bytes of {raw} raw, ratio to raw {:.4}",
        gzip as f64 / raw.len() as f64,
        raw = raw.len()
    );
    for level in LEVELS {
        let path = dir.join(format!("size-{level}.gz"));
        write_batch(&path, records, level);
        let size = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
        println!(
            "size {BACKEND} level {level}: {size} bytes, ratio to raw {:.4}, to gzip-6 {:.4}",
            size as f64 / raw.len() as f64,
            size as f64 / gzip as f64
        );
    }
}

fn compress(c: &mut Criterion) {
    let stream = leef_stream();
    let records = records(&stream);
    let raw = batch_content(&records);
    let dir = tempfile::tempdir().unwrap();
    print_sizes(&records, &raw, dir.path());

    let mut group = c.benchmark_group(format!("compression/{BACKEND}"));
    // An iteration takes up to a few hundred milliseconds at the slow levels: flat
    // sampling needs 10 of them at least, linear sampling 55 (1 + 2 + ... + 10), whatever
    // the measurement time. That time is left to the command line (--measurement-time).
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(raw.len() as u64));
    for level in LEVELS {
        group.bench_function(format!("level_{level}"), |b| {
            b.iter(|| {
                let path = dir.path().join("batch.gz");
                let _ = std::fs::remove_file(&path);
                write_batch(&path, &records, level);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compress);
criterion_main!(benches);
