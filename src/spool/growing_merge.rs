//! A merge written source by source while the writers still seal, so that the uploader
//! can send each piece ahead as it is written (as blocks of one Azure blob) instead of
//! merging and sending everything once the last batch is sealed.
//!
//! The merged file is the one [`Spool::merge_oldest`] would splice from the same sources,
//! byte for byte: one gzip member, the sources' compressed bodies joined as they are. It
//! grows in `open/merge-…` (deleted by recovery, its sources still waiting) and is sealed
//! as any merged batch. Each source is read once: the bytes read are written to the part,
//! handed out, and checked against the checksum in the source's name when its last byte
//! is read; a source without one (a salvage, an older version's batch) does not join.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};

use super::checksum::Checksummed;
use super::merge::{read_ends, Ends, AFTER_BODY, FINAL_BLOCK, GZIP_HEADER_LEN};
use super::{Damage, MergeFailed, MergeName, SealedBatch, Spool};

/// A merged file being written in `open/`.
pub struct GrowingMerge {
    part: PathBuf,
    out: Checksummed<File>,
    /// The CRC-32 and size of the records so far, for the merged file's trailer.
    records_crc: crc32fast::Hasher,
    raw: u64,
    sources: Vec<SealedBatch>,
    reading: Option<Reading>,
}

/// The source whose body is being copied.
struct Reading {
    file: File,
    /// Body bytes not yet read.
    left: u64,
    /// The CRC-32 of the source file's bytes read so far, header included.
    file_crc: crc32fast::Hasher,
    /// The merged file's gzip header, when this is its first source.
    header: Option<[u8; GZIP_HEADER_LEN as usize]>,
}

impl Spool {
    /// Starts a merged file in `open/`, with no source yet.
    pub fn grow_merge(&self) -> io::Result<GrowingMerge> {
        let part = self.unsealed_dir.join(MergeName::new().to_string());
        let file = File::options().write(true).create_new(true).open(&part)?;
        Ok(GrowingMerge {
            part,
            out: Checksummed::new(file),
            records_crc: crc32fast::Hasher::new(),
            raw: 0,
            sources: Vec::new(),
            reading: None,
        })
    }
}

impl GrowingMerge {
    /// Starts copying `source`, the batch after the last one added (the caller keeps to
    /// consecutive sequence numbers). `false` when it cannot join as it is: not sealed by
    /// this agent with a checksum, or not ending as its batches end.
    pub fn add(&mut self, source: &SealedBatch) -> io::Result<bool> {
        assert!(
            self.reading.is_none(),
            "the source before is not yet copied"
        );
        if source.checksum.is_none() {
            return Ok(false);
        }
        let mut file = File::open(&source.path)?;
        let Some(Ends {
            header,
            records_crc: source_crc,
            len,
        }) = read_ends(&mut file, source)?
        else {
            return Ok(false);
        };
        if len != source.gzip_bytes {
            return Ok(false);
        }
        let mut file_crc = crc32fast::Hasher::new();
        file_crc.update(&header);
        self.records_crc
            .combine(&crc32fast::Hasher::new_with_initial_len(
                source_crc,
                source.raw_bytes,
            ));
        self.raw += source.raw_bytes;
        self.reading = Some(Reading {
            file,
            left: len - GZIP_HEADER_LEN - AFTER_BODY,
            file_crc,
            header: self.sources.is_empty().then_some(header),
        });
        self.sources.push(source.clone());
        Ok(true)
    }

    /// The next piece of the merged file, at most `max` bytes (the gzip header comes
    /// first), copied from the source being read and written to the part; `None` once
    /// that source is copied whole. Its last byte read, the source's bytes are compared
    /// with the checksum in its name: a mismatch is an error naming the damage, and the
    /// merge is to be abandoned (the check before upload then keeps that batch from MCAS).
    pub fn next_piece(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        let Some(reading) = self.reading.as_mut() else {
            return Ok(None);
        };
        let source = self.sources.last().expect("a source is being read");
        if reading.left == 0 {
            // The final block and trailer: checked, not copied.
            let mut after = [0u8; AFTER_BODY as usize];
            reading.file.read_exact(&mut after)?;
            reading.file_crc.update(&after);
            let found = reading.file_crc.clone().finalize();
            let sealed = source.checksum.expect("only batches with a checksum join");
            // The next source's bytes are not read before this one's are known good.
            self.out.get_ref().sync_data()?;
            self.reading = None;
            if found != sealed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: {}",
                        source.path.display(),
                        Damage::Checksum { found, sealed }
                    ),
                ));
            }
            return Ok(None);
        }
        let header = reading.header.take();
        let extra = header.map_or(0, |h| h.len());
        let take = (max.saturating_sub(extra).max(1) as u64).min(reading.left) as usize;
        let mut piece = BytesMut::with_capacity(extra + take);
        if let Some(header) = header {
            piece.extend_from_slice(&header);
        }
        piece.resize(extra + take, 0);
        reading.file.read_exact(&mut piece[extra..])?;
        reading.file_crc.update(&piece[extra..]);
        reading.left -= take as u64;
        self.out.write_all(&piece)?;
        Ok(Some(piece.freeze()))
    }

    /// The sources added so far, oldest first.
    pub fn sources(&self) -> &[SealedBatch] {
        &self.sources
    }

    /// Ends the merged stream after the sources copied whole: writes and returns its last
    /// bytes (an empty final block and the trailer).
    pub fn end(&mut self) -> io::Result<Bytes> {
        assert!(self.reading.is_none(), "a source is not yet copied whole");
        let mut last = Vec::with_capacity(AFTER_BODY as usize);
        last.extend_from_slice(&FINAL_BLOCK);
        last.extend_from_slice(&self.records_crc.clone().finalize().to_le_bytes());
        last.extend_from_slice(&(self.raw as u32).to_le_bytes());
        self.out.write_all(&last)?;
        Ok(Bytes::from(last))
    }

    /// Makes the ended file durable and seals it as a merged batch in place of its
    /// sources (see [`Spool::merge_oldest`]); with a single source, the file (the same
    /// bytes as that source) is deleted and the source returned as it is.
    pub fn seal(self, spool: &Spool) -> Result<SealedBatch, MergeFailed> {
        let (file, checksum) = self.out.into_parts();
        let before_ready = MergeFailed::before_ready;
        if self.sources.is_empty() {
            drop(file);
            let _ = fs::remove_file(&self.part);
            return Err(before_ready(io::Error::other(
                "no batch was added to the merge",
            )));
        }
        if self.sources.len() == 1 {
            drop(file);
            fs::remove_file(&self.part).map_err(before_ready)?;
            return Ok(self.sources[0].clone());
        }
        if let Err(error) = file.sync_all() {
            drop(file);
            let _ = fs::remove_file(&self.part);
            return Err(before_ready(error));
        }
        drop(file);
        let merged = spool.replace_sources(&self.part, &self.sources, checksum)?;
        tracing::info!(
            batches = self.sources.len(),
            records = merged.records,
            raw = merged.raw_bytes,
            gzip = merged.gzip_bytes,
            "merged the batches sent ahead into one upload"
        );
        Ok(merged)
    }

    /// Deletes the part; the sources wait as they were.
    pub fn abandon(self) {
        let GrowingMerge { part, out, .. } = self;
        drop(out);
        if let Err(error) = fs::remove_file(&part) {
            tracing::warn!(file = %part.display(), %error, "cannot delete an abandoned merge; the next start deletes it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::Origin;
    use crate::spool::BatchFile;

    fn seal(spool: &Spool, records: &[&str]) -> SealedBatch {
        let mut file = BatchFile::create(&spool.new_batch_path(0, Origin::File), 6).unwrap();
        for record in records {
            file.append(record.as_bytes()).unwrap();
        }
        spool
            .seal_written(&file.finish().unwrap(), &[])
            .unwrap()
            .batch
    }

    fn pieces(merge: &mut GrowingMerge, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(piece) = merge.next_piece(max).unwrap() {
            assert!(piece.len() <= max.max(GZIP_HEADER_LEN as usize + 1));
            out.extend_from_slice(&piece);
        }
        out
    }

    #[test]
    fn the_pieces_are_the_merged_file_and_the_merge_of_the_same_sources() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let sources = [
            seal(&spool, &["one", "two"]),
            seal(&spool, &["three"]),
            seal(&spool, &["four", "five", "six"]),
        ];
        let mut merge = spool.grow_merge().unwrap();
        let mut sent = Vec::new();
        for source in &sources {
            assert!(merge.add(source).unwrap());
            sent.extend(pieces(&mut merge, 16));
        }
        sent.extend_from_slice(&merge.end().unwrap());
        // What merge_oldest writes for the same sources, in another spool.
        let other = tempfile::tempdir().unwrap();
        let copy = Spool::prepare(other.path()).unwrap();
        let copies: Vec<_> = [&["one", "two"][..], &["three"], &["four", "five", "six"]]
            .iter()
            .map(|records| seal(&copy, records))
            .collect();
        let spliced = copy.merge_oldest(&copies, 1 << 30, 6).unwrap().unwrap();
        let merged = merge.seal(&spool).unwrap();
        assert_eq!(sent, fs::read(&merged.path).unwrap());
        assert_eq!(sent, fs::read(&spliced.path).unwrap());
        assert_eq!(merged.checksum, spliced.checksum);
        assert_eq!(spool.scan_ready().unwrap(), vec![merged]);
    }

    #[test]
    fn one_source_is_sent_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let source = seal(&spool, &["alone"]);
        let mut merge = spool.grow_merge().unwrap();
        assert!(merge.add(&source).unwrap());
        let mut sent = pieces(&mut merge, 4);
        sent.extend_from_slice(&merge.end().unwrap());
        assert_eq!(sent, fs::read(&source.path).unwrap());
        assert_eq!(merge.seal(&spool).unwrap(), source);
        assert_eq!(fs::read_dir(dir.path().join("open")).unwrap().count(), 0);
    }

    #[test]
    fn a_changed_byte_in_a_source_stops_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let source = seal(&spool, &["a record long enough to change a byte of"]);
        let mut bytes = fs::read(&source.path).unwrap();
        bytes[14] ^= 0x01;
        fs::write(&source.path, bytes).unwrap();
        let mut merge = spool.grow_merge().unwrap();
        assert!(merge.add(&source).unwrap());
        let error = loop {
            match merge.next_piece(8) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the damage went unnoticed"),
                Err(error) => break error,
            }
        };
        assert!(error.to_string().contains("checksum"), "{error}");
        merge.abandon();
        assert_eq!(fs::read_dir(dir.path().join("open")).unwrap().count(), 0);
    }

    #[test]
    fn a_batch_without_a_checksum_does_not_join() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let path = spool.new_batch_path(0, Origin::Stream);
        let mut file = BatchFile::create(&path, 6).unwrap();
        file.append(b"salvaged").unwrap();
        let written = file.finish().unwrap();
        let source = spool
            .seal(&written.path, written.records, written.raw_bytes)
            .unwrap();
        let mut merge = spool.grow_merge().unwrap();
        assert!(!merge.add(&source).unwrap());
        merge.abandon();
    }
}
