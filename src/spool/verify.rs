//! The check a sealed batch passes before upload: it decompresses whole, with the CRC32
//! and size of its gzip trailer, to the uncompressed size its name records.

use std::fs::File;
use std::io::{self, Read};

use flate2::read::GzDecoder;

use super::{SealedBatch, Spool};

impl Spool {
    /// Checks that a sealed batch is still what was sealed: a gzip stream that decompresses
    /// whole (to nowhere) with a matching CRC32 and size, to the uncompressed bytes its
    /// name records. Catches a file cut short, overwritten or damaged inside its deflate
    /// stream. Reads the whole file: call it off the async runtime.
    pub fn verify(&self, batch: &SealedBatch) -> Result<(), String> {
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
}
