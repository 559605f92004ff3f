//! Reading back what was uploaded: gzip (possibly several members) or plain text,
//! one record a line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use crate::log_lines::{LineCounts, Parser};

/// Opens `path` decompressed if it starts with the gzip magic, as is otherwise
/// (MCAS also accepts plain text).
fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = read_full(&mut file, &mut magic)?;
    let file = File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        ))))
    } else {
        Ok(Box::new(file))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Counts the non-empty lines of the decompressed content, and reads each with `parser`
/// (the one the upload's `source` names; `None` reads none) as MCAS would at `now`. A
/// decoding error (corrupt or truncated gzip) does not fail the count: the lines read
/// before it are counted and the error is returned beside them, as MCAS would still take
/// the upload and fail later.
pub(crate) fn count_records(
    path: &Path,
    parser: Option<Parser>,
    now: SystemTime,
) -> io::Result<(LineCounts, Option<String>)> {
    let mut reader = BufReader::with_capacity(1 << 16, open(path)?);
    let mut counts = LineCounts::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // What was read of the last line before the error is a line too.
                if !line.is_empty() && line != b"\n" {
                    counts.add(parser, line.strip_suffix(b"\n").unwrap_or(&line), now);
                }
                return Ok((counts, Some(e.to_string())));
            }
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if !text.is_empty() {
            counts.add(parser, text, now);
        }
    }
    Ok((counts, None))
}

/// All non-empty lines of the decompressed content, without their `\n`.
pub(crate) fn read_records(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    open(path)?.read_to_end(&mut data)?;
    Ok(data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// A gzip file of `lines`, each followed by a newline: what a client would upload.
pub fn gzip_lines(lines: &[&str]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in lines {
        encoder
            .write_all(line.as_bytes())
            .expect("writing to memory");
        encoder.write_all(b"\n").expect("writing to memory");
    }
    encoder.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lines(path: &Path) -> (u64, Option<String>) {
        let (counts, error) = count_records(path, None, SystemTime::now()).unwrap();
        (counts.lines, error)
    }

    #[test]
    fn counts_multi_member_gzip_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.gz");
        let mut data = gz(b"one\ntwo\n\n");
        data.extend(gz(b"three\nfour"));
        std::fs::write(&p, &data).unwrap();
        assert_eq!(lines(&p), (4, None));
        assert_eq!(
            read_records(&p).unwrap(),
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"three".to_vec(),
                b"four".to_vec()
            ]
        );

        let t = dir.path().join("a.txt");
        std::fs::write(&t, b"\nx\xff\ny\n").unwrap();
        assert_eq!(lines(&t), (2, None));

        let e = dir.path().join("empty");
        std::fs::write(&e, b"").unwrap();
        assert_eq!(lines(&e), (0, None));
    }

    #[test]
    fn truncated_gzip_reports_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gz");
        let body: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let data = gz(&body);
        std::fs::write(&p, &data[..data.len() - 10]).unwrap();
        let (n, err) = lines(&p);
        assert!(err.is_some());
        assert!(n <= 10_000);
    }
}
