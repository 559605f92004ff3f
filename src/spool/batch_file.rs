//! One batch file: records, each followed by a newline, in a gzip stream on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::checksum::Checksummed;

/// Output of the compressor is gathered to this size before a write to the file.
const FILE_BUFFER: usize = 256 << 10;

/// A gzip batch being written. Nothing of it is in memory but the compressor's window and
/// one file buffer.
pub struct BatchFile {
    path: PathBuf,
    /// The file's bytes are checksummed on their way to it (see [`Written::checksum`]).
    encoder: GzEncoder<BufWriter<Checksummed<File>>>,
    records: u64,
    raw_bytes: u64,
    /// Uncompressed bytes appended since the last flush.
    unflushed: u64,
    /// Records handed to the operating system by the last flush.
    flushed_records: u64,
    /// Records gathered for the compressor: one call into it per few hundred records
    /// costs far less than two calls per record.
    staging: Vec<u8>,
}

/// How many bytes of records are gathered before they go to the compressor.
const STAGING: usize = 128 << 10;

/// A finished batch file, complete and durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub records: u64,
    /// Uncompressed bytes, newlines included.
    pub raw_bytes: u64,
    /// CRC-32 of the file's bytes, as they were written.
    pub checksum: u32,
}

impl BatchFile {
    /// Creates the file at `path` (which must not exist) and starts a gzip stream at `level`.
    pub fn create(path: &Path, level: u32) -> io::Result<BatchFile> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(BatchFile {
            path: path.to_path_buf(),
            encoder: GzEncoder::new(
                BufWriter::with_capacity(FILE_BUFFER, Checksummed::new(file)),
                Compression::new(level),
            ),
            records: 0,
            raw_bytes: 0,
            unflushed: 0,
            flushed_records: 0,
            staging: Vec::with_capacity(STAGING),
        })
    }

    /// Appends one record and its newline.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        if self.staging.len() + record.len() + 1 > STAGING {
            self.compress_staged()?;
        }
        if record.len() + 1 > STAGING {
            self.encoder.write_all(record)?;
            self.encoder.write_all(b"\n")?;
        } else {
            self.staging.extend_from_slice(record);
            self.staging.push(b'\n');
        }
        self.records += 1;
        self.raw_bytes += record.len() as u64 + 1;
        self.unflushed += record.len() as u64 + 1;
        Ok(())
    }

    /// Hands everything appended so far to the operating system, as a gzip sync flush
    /// (the stream stays valid up to here): a process killed after this loses none of it.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.unflushed > 0 {
            self.compress_staged()?;
            self.encoder.flush()?;
            self.unflushed = 0;
            self.flushed_records = self.records;
        }
        Ok(())
    }

    /// Hands the gathered records to the compressor.
    fn compress_staged(&mut self) -> io::Result<()> {
        if !self.staging.is_empty() {
            self.encoder.write_all(&self.staging)?;
            self.staging.clear();
        }
        Ok(())
    }

    /// Uncompressed bytes appended since the last flush.
    pub fn unflushed(&self) -> u64 {
        self.unflushed
    }

    /// Records handed to the operating system so far: a process killed now keeps them.
    pub fn flushed_records(&self) -> u64 {
        self.flushed_records
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes written so far, newlines included.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Compressed bytes so far, in the file or on their way to it.
    pub fn compressed_bytes(&self) -> u64 {
        let out = self.encoder.get_ref();
        out.get_ref().get_ref().metadata().map_or(0, |m| m.len()) + out.buffer().len() as u64
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the gzip trailer and makes the file durable.
    pub fn finish(mut self) -> io::Result<Written> {
        self.compress_staged()?;
        // A sync flush before the final block, so that the body ends on a byte boundary
        // and a merge of waiting batches can join it to others without recompressing.
        self.encoder.flush()?;
        let (file, checksum) = self
            .encoder
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_parts();
        file.sync_all()?;
        Ok(Written {
            path: self.path,
            records: self.records,
            raw_bytes: self.raw_bytes,
            checksum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn writes_a_gzip_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.gz");
        let mut batch = BatchFile::create(&path, 6).unwrap();
        batch.append(b"one").unwrap();
        batch.append(b"\xff\x00two").unwrap();
        assert_eq!((batch.records(), batch.raw_bytes()), (2, 10));
        let written = batch.finish().unwrap();
        assert_eq!(
            (&written.path, written.records, written.raw_bytes),
            (&path, 2, 10)
        );
        assert_eq!(
            written.checksum,
            crc32fast::hash(&std::fs::read(&path).unwrap())
        );
        let mut text = Vec::new();
        GzDecoder::new(File::open(&path).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, b"one\n\xff\x00two\n");
    }

    #[test]
    fn a_flushed_stream_reads_back_without_its_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.gz");
        let mut batch = BatchFile::create(&path, 6).unwrap();
        batch.append(b"kept one").unwrap();
        batch.append(b"kept two").unwrap();
        batch.flush().unwrap();
        assert_eq!(batch.unflushed(), 0);
        // As if the process were killed here: no trailer.
        let bytes = std::fs::read(&path).unwrap();
        std::mem::forget(batch);
        let mut text = Vec::new();
        let _ = GzDecoder::new(&bytes[..]).read_to_end(&mut text);
        assert_eq!(text, b"kept one\nkept two\n");
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.gz");
        std::fs::write(&path, b"precious").unwrap();
        assert!(BatchFile::create(&path, 6).is_err());
    }
}
