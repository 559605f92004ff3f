//! The checksum a sealed batch carries in its name: the CRC-32 of the file's own bytes,
//! computed as they are written, so that the check before upload is one read of the file
//! (hardware-accelerated CRC, a few GB/s) instead of decompressing every record again.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// A writer that keeps the CRC-32 of every byte written through it.
pub struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W> Checksummed<W> {
    /// Wraps `inner`, with nothing written yet.
    pub fn new(inner: W) -> Checksummed<W> {
        Checksummed {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The writer underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The writer underneath and the CRC-32 of everything written to it.
    pub fn into_parts(self) -> (W, u32) {
        (self.inner, self.crc.finalize())
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        // Only what the file took: a short write is retried with the rest.
        self.crc.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The CRC-32 of the file at `path`, read whole.
pub fn file_checksum(path: &Path) -> io::Result<u32> {
    let mut file = File::open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(crc.finalize()),
            Ok(n) => crc.update(&buf[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_what_was_written_is_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = Checksummed::new(File::create(&path).unwrap());
        out.write_all(b"some bytes ").unwrap();
        out.write_all(&[0xff; 3 << 20]).unwrap();
        let (file, crc) = out.into_parts();
        drop(file);
        assert_eq!(file_checksum(&path).unwrap(), crc);
        assert_eq!(crc, crc32fast::hash(&std::fs::read(&path).unwrap()));
    }
}
