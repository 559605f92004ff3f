//! The check a sealed batch passes before upload (and before it joins a merge): the CRC-32
//! of its file's bytes is the one recorded in its name at seal; a batch sealed without one
//! (a salvage, an older version's batch) decompresses whole, with the CRC32 and size of its
//! gzip trailer, to the uncompressed size its name records.

use std::fs::File;
use std::io::{self, Read};

use flate2::read::GzDecoder;

use super::checksum::file_checksum;
use super::{SealedBatch, Spool};

impl Spool {
    /// Checks that a sealed batch is still what was sealed. With a checksum recorded at
    /// seal, every byte of the file must match it: catches any byte changed, a file cut
    /// short or overwritten. Without one, the file must be a gzip stream that decompresses
    /// whole (to nowhere) with a matching CRC32 and size, to the uncompressed bytes its
    /// name records. Reads the whole file: call it off the async runtime.
    pub fn verify(&self, batch: &SealedBatch) -> Result<(), String> {
        match batch.checksum {
            Some(sealed) => verify_checksum(batch, sealed),
            None => verify_inflating(batch),
        }
    }
}

/// The file's CRC-32 against the one recorded at seal.
fn verify_checksum(batch: &SealedBatch, sealed: u32) -> Result<(), String> {
    match file_checksum(&batch.path) {
        Ok(found) if found == sealed => Ok(()),
        Ok(found) => Err(format!(
            "its bytes do not match the checksum recorded at its seal (CRC-32 {found:08x}, sealed {sealed:08x}): the file was damaged, cut short or overwritten"
        )),
        Err(error) => Err(format!("cannot read it: {error}")),
    }
}

/// Decompresses the whole file, for a batch sealed without a checksum.
fn verify_inflating(batch: &SealedBatch) -> Result<(), String> {
    let check = || -> io::Result<Result<(), String>> {
        let mut file = File::open(&batch.path)?;
        let len = file.metadata()?.len();
        if len < 18 {
            return Ok(Err(format!("{len} bytes is too short for a gzip file")));
        }
        let mut magic = [0u8; 2];
        file.read_exact(&mut magic)?;
        if magic != [0x1f, 0x8b] {
            return Ok(Err("not a gzip file (no gzip magic bytes)".to_string()));
        }
        let file = File::open(&batch.path)?;
        // GzDecoder checks the trailer's CRC32 and size against what it decompressed.
        let mut decoder = GzDecoder::new(io::BufReader::with_capacity(256 << 10, file));
        let size = match io::copy(&mut decoder, &mut io::sink()) {
            Ok(size) => size,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Err(format!(
                    "the gzip stream ends early ({error}): the file was cut short"
                )))
            }
            Err(error) => {
                return Ok(Err(format!(
                    "the gzip stream is damaged ({error}): it does not decompress whole or its CRC32 does not match"
                )))
            }
        };
        if size != batch.raw_bytes {
            return Ok(Err(format!(
                "it decompresses to {size} bytes, the batch had {}: the file was cut short or overwritten",
                batch.raw_bytes
            )));
        }
        Ok(Ok(()))
    };
    check().unwrap_or_else(|e| Err(format!("cannot read it: {e}")))
}
