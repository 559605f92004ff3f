//! Input shared by the benchmarks.

/// About 16 MiB of LEEF records like the NSS MCAS feed's, of varied lengths.
pub fn leef_stream() -> Vec<u8> {
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

/// The records of `stream` as the feed hands them to the batch writer: framed by the
/// record decoder, without their newlines.
// Each bench compiles this module on its own, and the decoder bench has no use for it.
#[allow(dead_code)]
pub fn records(stream: &[u8]) -> Vec<bytes::Bytes> {
    use nss_agent::feed::{Frame, RecordDecoder};
    use tokio_util::codec::Decoder;

    let mut buf = bytes::BytesMut::from(stream);
    let mut decoder = RecordDecoder::new(1 << 20);
    let mut records = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        if let Frame::Record(record) = frame {
            records.push(record);
        }
    }
    records
}
