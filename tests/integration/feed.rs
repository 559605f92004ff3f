//! What the feed does with awkward input: it loses nothing but what it must drop.

use std::time::Duration;

use crate::support::harness::*;

/// A 10 MiB line is dropped and counted; invalid UTF-8, NUL and CRLF records pass as
/// bytes; an unterminated last record still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_records() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("500ms"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();

    let mut stream = Vec::new();
    stream.extend_from_slice(b"before the long line\n");
    stream.extend(std::iter::repeat_n(b'x', 10 << 20));
    stream.extend_from_slice(b"\n");
    stream.extend_from_slice(b"invalid utf-8 \xff\xfe\xc3\x28 here\n");
    stream.extend_from_slice(b"nul \x00 bytes \x00\n");
    stream.extend_from_slice(b"crlf terminated\r\n");
    stream.extend_from_slice(b"\n\r\n");
    stream.extend_from_slice(b"unterminated last record");
    send_tcp(addr, &stream);

    let expected: Vec<Vec<u8>> = [
        &b"before the long line"[..],
        b"invalid utf-8 \xff\xfe\xc3\x28 here",
        b"nul \x00 bytes \x00",
        b"crlf terminated",
        b"unterminated last record",
    ]
    .iter()
    .map(|r| r.to_vec())
    .collect();
    world
        .emulator
        .wait_for_records(expected.len() as u64, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, expected);
    let status = agent.wait_status("the oversize count", |s| s["feed"]["oversize_dropped"] == 1);
    assert_eq!(status["feed"]["records"], 5);
    let log = agent.log_text();
    assert!(log.contains("longer than feed.max_record_bytes"), "{log}");
}
