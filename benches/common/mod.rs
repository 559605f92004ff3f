//! Input shared by the benchmarks: NSS MCAS feed records (QRadar LEEF), generated from a
//! fixed seed so that every run and every machine measures the same bytes.
// Each bench uses a part of this module.
#![allow(dead_code)]

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// About 16 MiB of LEEF records.
pub fn leef_stream() -> Vec<u8> {
    let mut out = Vec::with_capacity(17 << 20);
    write_leef(&mut out, 16 << 20).expect("writing to memory");
    out
}

/// Writes LEEF records, one a line, until at least `bytes` are written; returns how many
/// records.
///
/// The records are in the published shape of the NSS MCAS feed (syslog-style prefix,
/// LEEF header, tab-separated pairs) and vary as a real feed's do: a few thousand users and hosts, a few hundred
/// sites with varied paths and query strings, a clock that moves on, random sizes and
/// ports; so that they compress like a real feed (to about a tenth), not like a repeated
/// line.
pub fn write_leef(out: &mut impl Write, bytes: u64) -> io::Result<u64> {
    const ACTIONS: [&str; 3] = ["Allowed", "Allowed", "Blocked"];
    const CATEGORIES: [(&str, &str); 8] = [
        ("Business%20and%20Economy", "Business%20and%20Economy"),
        ("Web%20Search", "Information%20Technology"),
        ("Professional%20Services", "Business%20and%20Economy"),
        ("Social%20Networking", "Internet%20Communication"),
        ("Streaming%20Media", "Entertainment%2FRecreation"),
        ("Webmail", "Internet%20Communication"),
        ("Online%20Storage", "Information%20Technology"),
        ("Corporate%20Marketing", "Business%20and%20Economy"),
    ];
    const AGENTS: [&str; 5] = [
        "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20AppleWebKit/537.36%20(KHTML,%20like%20Gecko)%20Chrome/120.0.0.0%20Safari/537.36",
        "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2014_2)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/17.2%20Safari/605.1.15",
        "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64;%20rv:121.0)%20Gecko/20100101%20Firefox/121.0",
        "Microsoft%20Office/16.0%20(Windows%20NT%2010.0;%20Microsoft%20Outlook%2016.0.17126)",
        "okhttp/4.12.0",
    ];
    const TLDS: [&str; 5] = ["com", "net", "org", "io", "co.uk"];
    const WORDS: [&str; 16] = [
        "api", "static", "login", "assets", "v2", "images", "search", "files", "docs", "mail",
        "cdn", "app", "user", "data", "share", "sync",
    ];

    // The feed's clock starts at midnight UTC a week before today: recent enough that
    // MCAS does not ignore the events (90 days), and the same for every run of a day;
    // from day to day only the dates change, never a length.
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86400);
    let start = UNIX_EPOCH + Duration::from_secs(today.saturating_sub(7) * 86400);
    let mut rng = fastrand::Rng::with_seed(0x4e53_5341);
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut written = 0u64;
    let mut records = 0u64;
    let mut second = 0u64;
    let mut line = Vec::with_capacity(1024);
    while written < bytes {
        // About 2,000 records a second, as a site of 15,000 users sends at its busiest.
        if rng.u32(0..2000) == 0 {
            second += 1;
        }
        // `Mon Oct 02 16:21:40 UTC 2017`: weekday, month, day, clock, zone, year.
        let time = mcas_emulator::log_lines::nss_time(start + Duration::from_secs(second));
        let parts: Vec<&str> = time.split(' ').collect();
        let dev_time = format!("{} {} {} {} UTC", parts[1], parts[2], parts[5], parts[3]);
        let user = rng.u32(0..3000);
        let host = rng.u32(0..60_000);
        let site = rng.u32(0..400);
        let (category, supercategory) = CATEGORIES[site as usize % CATEGORIES.len()];
        let mut path = String::new();
        for _ in 0..rng.usize(1..5) {
            path.push('/');
            path.push_str(WORDS[rng.usize(0..WORDS.len())]);
        }
        if rng.bool() {
            path.push_str(&format!("?id={}&s={:x}", rng.u32(..), rng.u64(..)));
        }
        line.clear();
        writeln!(
            line,
            "{time} zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|{reason}|cat={action}\t\
             devTime={dev_time}\tsrc=10.{a}.{b}.{c}\tdst=203.0.{d}.{e}\t\
             srcPostNAT=198.51.100.{f}\trealm=Site{g}\tusrName=user{user}@example.com\tsrcBytes={req}\tdstBytes={resp}\t\
             role=Department{dept}\tpolicy={reason}\turlcategory={category}\turlsupercategory={supercategory}\t\
             url=www.{site_word}{site}.{tld}{path}\tuseragent={agent}\tstatus={status}\trequestmethod={method}\t\
             srcPort={port}\trecordid={id}",
            reason = if rng.u8(0..10) == 0 { "Blocked%20by%20policy" } else { "Allowed" },
            action = ACTIONS[rng.usize(0..ACTIONS.len())],
            a = host >> 12,
            b = (host >> 4) & 0xff,
            c = rng.u8(1..255),
            d = site % 250,
            e = rng.u8(1..255),
            f = rng.u8(1..30),
            g = user % 12,
            req = rng.u32(200..4000),
            resp = rng.u32(0..2_000_000),
            dept = user % 40,
            site_word = WORDS[site as usize % WORDS.len()],
            tld = TLDS[site as usize % TLDS.len()],
            agent = AGENTS[(user as usize + rng.usize(0..2)) % AGENTS.len()],
            status = if rng.u8(0..20) == 0 { 302 } else { 200 },
            method = if rng.u8(0..5) == 0 { "POST" } else { "GET" },
            port = rng.u32(1024..65535),
            id = 7_000_000_000u64 + records,
        )?;
        out.write_all(&line)?;
        written += line.len() as u64;
        records += 1;
    }
    out.flush()?;
    Ok(records)
}

/// The records of `stream` as the feed hands them to the batch writer: framed by the
/// record decoder, without their newlines.
pub fn records(stream: &[u8]) -> Vec<bytes::Bytes> {
    use nss_agent::feed::{Decoded, RecordDecoder};
    use tokio_util::codec::Decoder;

    let mut buf = bytes::BytesMut::from(stream);
    let mut decoder = RecordDecoder::new(1 << 20);
    let mut records = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        if let Decoded::Record(record) = frame {
            records.push(record);
        }
    }
    records
}
