//! The records tests send: the published shape of the NSS MCAS feed's, with the current
//! time, unique and byte-exact checkable.

/// The syslog-style prefix of the NSS feed's records, `Mon Oct 02 16:21:40 UTC 2017
/// zscaler-nss: ` in the published sample, at the time this test run started: recent, so
/// that MCAS does not ignore the events as older than 90 days, and the same for the whole
/// run, so that a record made twice is the same bytes.
pub fn nss_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        format!(
            "{} zscaler-nss: ",
            mcas_emulator::log_lines::nss_time(std::time::SystemTime::now())
        )
    })
}

/// A LEEF record in the published shape of the NSS MCAS feed's (the sample line of
/// `mcas-api.md`, with [`nss_prefix`]'s time), unique by `stream` and `n`, about `pad`
/// bytes longer than the minimum.
pub fn leef(stream: &str, n: usize, pad: usize) -> Vec<u8> {
    format!(
        "{}LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\tsrc=185.27.134.{}\turl=www.example{}.com/{}\trecordid={stream}-{n}\tdstBytes={}",
        nss_prefix(),
        n % 256,
        n % 97,
        "p".repeat(pad),
        n * 7
    )
    .into_bytes()
}

/// Records joined with newlines, each terminated.
pub fn lines(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        out.extend_from_slice(record);
        out.push(b'\n');
    }
    out
}
