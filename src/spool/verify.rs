//! The check a sealed batch passes before upload (and before it joins a merge): the CRC-32
//! of its file's bytes is the one recorded in its name at seal; a batch sealed without one
//! (a salvage, an older version's batch) decompresses whole, with the CRC32 and size of its
//! gzip trailer, to the uncompressed size its name records.

use std::fs::File;
use std::io::{self, Read};

use flate2::read::GzDecoder;

use super::checksum::file_checksum;
use super::{SealedBatch, Spool};

/// Why a sealed batch is not what was sealed. Each kind keeps the batch from MCAS (it goes
/// to quarantine with this text as its reason).
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// Its bytes differ from the CRC-32 recorded at seal.
    #[error("its bytes do not match the checksum recorded at its seal (CRC-32 {found:08x}, sealed {sealed:08x}): the file was damaged, cut short or overwritten")]
    Checksum { found: u32, sealed: u32 },
    /// Too short to be a gzip file at all.
    #[error("{0} bytes is too short for a gzip file")]
    TooShort(u64),
    /// It does not start with gzip's magic bytes.
    #[error("not a gzip file (no gzip magic bytes)")]
    NotGzip,
    /// The gzip stream ends before its trailer.
    #[error("the gzip stream ends early ({0}): the file was cut short")]
    CutShort(io::Error),
    /// The gzip stream does not decompress, or its trailer does not match.
    #[error("the gzip stream is damaged ({0}): it does not decompress whole or its CRC32 does not match")]
    Stream(io::Error),
    /// It decompresses to another size than its name records.
    #[error("it decompresses to {found} bytes, the batch had {expected}: the file was cut short or overwritten")]
    Size { found: u64, expected: u64 },
    /// The file could not be read (or the check could not run).
    #[error("cannot read it: {0}")]
    Unreadable(io::Error),
}

impl Spool {
    /// Checks that a sealed batch is still what was sealed. With a checksum recorded at
    /// seal, every byte of the file must match it: catches any byte changed, a file cut
    /// short or overwritten. Without one, the file must be a gzip stream that decompresses
    /// whole (to nowhere) with a matching CRC32 and size, to the uncompressed bytes its
    /// name records. Reads the whole file: call it off the async runtime.
    pub fn verify(&self, batch: &SealedBatch) -> Result<(), Damage> {
        match batch.checksum {
            Some(sealed) => verify_checksum(batch, sealed),
            None => verify_inflating(batch),
        }
    }
}

/// The file's CRC-32 against the one recorded at seal.
fn verify_checksum(batch: &SealedBatch, sealed: u32) -> Result<(), Damage> {
    match file_checksum(&batch.path) {
        Ok(found) if found == sealed => Ok(()),
        Ok(found) => Err(Damage::Checksum { found, sealed }),
        Err(error) => Err(Damage::Unreadable(error)),
    }
}

/// Decompresses the whole file, for a batch sealed without a checksum.
fn verify_inflating(batch: &SealedBatch) -> Result<(), Damage> {
    let mut file = File::open(&batch.path).map_err(Damage::Unreadable)?;
    let len = file.metadata().map_err(Damage::Unreadable)?.len();
    if len < 18 {
        return Err(Damage::TooShort(len));
    }
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic).map_err(Damage::Unreadable)?;
    if magic != [0x1f, 0x8b] {
        return Err(Damage::NotGzip);
    }
    let file = File::open(&batch.path).map_err(Damage::Unreadable)?;
    // GzDecoder checks the trailer's CRC32 and size against what it decompressed.
    let mut decoder = GzDecoder::new(io::BufReader::with_capacity(256 << 10, file));
    let found = match io::copy(&mut decoder, &mut io::sink()) {
        Ok(size) => size,
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(Damage::CutShort(error))
        }
        Err(error) => return Err(Damage::Stream(error)),
    };
    if found != batch.raw_bytes {
        return Err(Damage::Size {
            found,
            expected: batch.raw_bytes,
        });
    }
    Ok(())
}
