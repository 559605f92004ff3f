//! Merging waiting batches into one file before upload, so that a backlog of small batches
//! costs two API calls instead of two each.
//!
//! The merged file is one gzip member. Batches this agent sealed end their deflate stream
//! with a sync flush and an empty final block, so their compressed bodies are joined as
//! they are (no recompression): the final blocks are dropped, one is written at the end,
//! and the trailer's CRC-32 is combined from theirs. Any other batch (sealed by an older
//! version) makes the merge decompress and recompress every source instead.
//!
//! Crash safety: the merged file is written in `open/` (`merge-*.gz.part`, deleted by
//! recovery), fsynced, and renamed into `ready/` under the name of its first source with
//! the checksum of its own bytes and the sequence number of its last source
//! (`FIRST-SEALEDMS-RECORDSr-RAWb-CRCc-LASTm.gz`);
//! only then are the sources deleted. Sources are a run of consecutive sequence numbers,
//! so any batch whose numbers lie within a merged batch's is one of its sources, left by a
//! crash before their deletion: [`Spool::scan_ready`] deletes them, and they are never
//! uploaded beside the merged file.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::checksum::Checksummed;
use super::{MergeName, SealedBatch, SealedName, Spool};
use crate::clock::unix_millis;
use crate::durable_fs::sync_dir;

/// MCAS takes files up to 5 GB.
pub const MCAS_MAX_FILE: u64 = 5_000_000_000;

/// The header flate2 writes: no name, no extra field, no header CRC.
pub(super) const GZIP_HEADER_LEN: u64 = 10;
/// A sync flush (an empty stored block) then an empty final fixed-Huffman block.
pub(super) const SPLICE_TAIL: [u8; 6] = [0x00, 0x00, 0xff, 0xff, 0x03, 0x00];
/// The empty final block alone.
pub(super) const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];
/// The bytes after a batch's compressed body: its final block and its gzip trailer.
pub(super) const AFTER_BODY: u64 = FINAL_BLOCK.len() as u64 + 8;

/// The waiting batches a merge takes: the oldest and those after it with consecutive
/// sequence numbers (a gap may be a batch being sealed right now), while the merged file
/// stays within `max_raw_bytes` uncompressed and MCAS's 5 GB.
pub fn merge_run(ready: &[SealedBatch], max_raw_bytes: u64) -> &[SealedBatch] {
    let Some(first) = ready.first() else {
        return ready;
    };
    let (mut raw, mut gzip, mut last) = (first.raw_bytes, first.gzip_bytes, first.last_seq());
    let mut n = 1;
    for next in &ready[1..] {
        if next.seq != last + 1
            || raw + next.raw_bytes > max_raw_bytes
            || gzip + next.gzip_bytes > MCAS_MAX_FILE
        {
            break;
        }
        raw += next.raw_bytes;
        gzip += next.gzip_bytes;
        last = next.last_seq();
        n += 1;
    }
    &ready[..n]
}

/// A merge that failed, and whether it got as far as `ready/`.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct MergeFailed {
    pub error: io::Error,
    /// The merged batch is in `ready/` (beside some or all of its sources, which the scan
    /// deletes): none of them is to go up on its own.
    pub sealed: bool,
}

impl MergeFailed {
    /// Failed before anything of it reached `ready/`.
    pub fn before_ready(error: io::Error) -> MergeFailed {
        MergeFailed {
            error,
            sealed: false,
        }
    }

    fn in_ready(error: io::Error) -> MergeFailed {
        MergeFailed {
            error,
            sealed: true,
        }
    }
}

impl Spool {
    /// Merges the oldest waiting batches (see [`merge_run`]) into one sealed batch and
    /// deletes them; `None` when fewer than two can be merged. `level` is used only when a
    /// source must be recompressed. Blocks: call it off the async runtime.
    pub fn merge_oldest(
        &self,
        ready: &[SealedBatch],
        max_raw_bytes: u64,
        level: u32,
    ) -> Result<Option<SealedBatch>, MergeFailed> {
        let sources = merge_run(ready, max_raw_bytes);
        if sources.len() < 2 {
            return Ok(None);
        }
        let part = self.unsealed_dir.join(MergeName::new().to_string());
        let written = match splice(sources, &part) {
            Ok(Some(checksum)) => Ok((checksum, false)),
            Ok(None) => recompress(sources, &part, level).map(|checksum| (checksum, true)),
            Err(error) => Err(error),
        };
        let (checksum, recompressed) = match written {
            Ok(written) => written,
            Err(error) => {
                let _ = fs::remove_file(&part);
                return Err(MergeFailed::before_ready(error));
            }
        };
        let merged = self.replace_sources(&part, sources, checksum)?;
        tracing::info!(
            batches = sources.len(),
            records = merged.records,
            raw = merged.raw_bytes,
            gzip = merged.gzip_bytes,
            recompressed,
            "merged waiting batches into one upload"
        );
        Ok(Some(merged))
    }

    /// Seals the complete, fsynced merged file `part` (see [`Spool::seal_merged`]), then
    /// deletes its sources.
    pub(super) fn replace_sources(
        &self,
        part: &Path,
        sources: &[SealedBatch],
        checksum: u32,
    ) -> Result<SealedBatch, MergeFailed> {
        let merged = self.seal_merged(part, sources, checksum)?;
        for source in sources {
            fs::remove_file(&source.path).map_err(MergeFailed::in_ready)?;
            self.forget_ready_bytes(source.gzip_bytes);
        }
        sync_dir(&self.ready_dir).map_err(MergeFailed::in_ready)?;
        Ok(merged)
    }

    /// Renames a complete, fsynced merged file into `ready/`, named after its sources and
    /// with `checksum`, the CRC-32 of its bytes.
    fn seal_merged(
        &self,
        part: &Path,
        sources: &[SealedBatch],
        checksum: u32,
    ) -> Result<SealedBatch, MergeFailed> {
        let first = &sources[0];
        let name = SealedName {
            seq: first.seq,
            sealed_ms: unix_millis(first.sealed_at),
            records: sources.iter().map(|b| b.records).sum(),
            raw_bytes: sources.iter().map(|b| b.raw_bytes).sum(),
            checksum: Some(checksum),
            last: Some(sources[sources.len() - 1].last_seq()),
        };
        let len = fs::metadata(part).map_err(MergeFailed::before_ready)?.len();
        let merged = SealedBatch::named(&self.ready_dir, &name, len);
        let synced = self
            .rename_into_ready(part, &merged, "merge-sync-ready")
            .map_err(MergeFailed::before_ready)?;
        self.ready_bytes
            .fetch_add(merged.gzip_bytes, std::sync::atomic::Ordering::Relaxed);
        // Failed, the merged batch and its sources wait, withheld, for a sync to succeed:
        // then the scan deletes the sources and offers the merged batch.
        synced.map_err(MergeFailed::in_ready)?;
        Ok(merged)
    }

    /// Deletes from `batches` (sorted by sequence number) and from disk the sources a crash
    /// left beside the merged batch that holds them.
    pub(super) fn drop_merged_sources(&self, batches: &mut Vec<SealedBatch>) -> io::Result<()> {
        let sources = merged_sources(batches);
        if sources.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(batches.len());
        for (i, batch) in batches.drain(..).enumerate() {
            if sources.contains(&i) {
                fs::remove_file(&batch.path)?;
            } else {
                kept.push(batch);
            }
        }
        sync_dir(&self.ready_dir)?;
        tracing::info!(
            removed = sources.len(),
            "deleted batches an interrupted merge had already merged"
        );
        *batches = kept;
        Ok(())
    }
}

/// The positions in `batches` (sorted by sequence number) of the sources a crash left
/// beside the merged batch that holds them: batches whose sequence numbers lie within a
/// merged batch's.
pub(super) fn merged_sources(batches: &[SealedBatch]) -> BTreeSet<usize> {
    let merged: Vec<&SealedBatch> = batches.iter().filter(|b| b.last.is_some()).collect();
    if merged.is_empty() {
        return BTreeSet::new();
    }
    batches
        .iter()
        .enumerate()
        .filter(|(_, batch)| {
            merged.iter().any(|m| {
                m.path != batch.path
                    && m.seq <= batch.seq
                    && batch.last_seq() <= m.last_seq()
                    && (batch.seq, batch.last_seq()) != (m.seq, m.last_seq())
            })
        })
        .map(|(i, _)| i)
        .collect()
}

/// What the two ends of a batch this agent sealed hold.
pub(super) struct Ends {
    /// Its gzip header.
    pub header: [u8; GZIP_HEADER_LEN as usize],
    /// The CRC-32 of its records, from its trailer.
    pub records_crc: u32,
    /// Its length in bytes.
    pub len: u64,
}

/// The ends of `batch`, read from `file` (left just after the header), if it ends as this
/// agent's batches do: a gzip header without optional fields, a sync flush and an empty
/// final block, and a trailer whose size is the batch's.
pub(super) fn read_ends(file: &mut File, batch: &SealedBatch) -> io::Result<Option<Ends>> {
    let len = file.metadata()?.len();
    if len < GZIP_HEADER_LEN + SPLICE_TAIL.len() as u64 + 8 {
        return Ok(None);
    }
    let mut tail = [0u8; 14];
    file.seek(SeekFrom::End(-14))?;
    file.read_exact(&mut tail)?;
    let records_crc = u32::from_le_bytes(tail[6..10].try_into().expect("4 bytes"));
    let isize = u32::from_le_bytes(tail[10..14].try_into().expect("4 bytes"));
    if tail[..6] != SPLICE_TAIL || isize != batch.raw_bytes as u32 {
        return Ok(None);
    }
    let mut header = [0u8; GZIP_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    // Magic, deflate, and no optional header fields.
    if header[..4] != [0x1f, 0x8b, 0x08, 0x00] {
        return Ok(None);
    }
    Ok(Some(Ends {
        header,
        records_crc,
        len,
    }))
}

/// A source's compressed body, if it ends as this agent's batches do: where its deflate
/// data starts and ends (without the final block), its CRC-32 and its uncompressed size.
fn spliceable(batch: &SealedBatch) -> io::Result<Option<(u64, u64, u32)>> {
    let mut file = File::open(&batch.path)?;
    Ok(read_ends(&mut file, batch)?
        .map(|ends| (GZIP_HEADER_LEN, ends.len - AFTER_BODY, ends.records_crc)))
}

/// Joins the sources' compressed bodies into `part`, returning the CRC-32 of its bytes;
/// `None` (nothing written) when one of them cannot be joined as it is.
fn splice(sources: &[SealedBatch], part: &Path) -> io::Result<Option<u32>> {
    let mut bodies = Vec::with_capacity(sources.len());
    for source in sources {
        match spliceable(source)? {
            Some(body) => bodies.push(body),
            None => return Ok(None),
        }
    }
    let mut out = BufWriter::with_capacity(1 << 20, Checksummed::new(create_new(part)?));
    // The header flate2 writes for level 6 (XFL 0, OS unknown): the first source's.
    let mut header = [0u8; 10];
    File::open(&sources[0].path)?.read_exact(&mut header)?;
    out.write_all(&header)?;
    let mut crc = crc32fast::Hasher::new();
    let mut raw: u64 = 0;
    for (source, (start, end, source_crc)) in sources.iter().zip(bodies) {
        let mut file = File::open(&source.path)?;
        file.seek(SeekFrom::Start(start))?;
        let copied = io::copy(&mut (&mut file).take(end - start), &mut out)?;
        if copied != end - start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} changed while being merged", source.path.display()),
            ));
        }
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            source_crc,
            source.raw_bytes,
        ));
        raw += source.raw_bytes;
    }
    out.write_all(&FINAL_BLOCK)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(raw as u32).to_le_bytes())?;
    finish_file(out).map(Some)
}

/// Decompresses every source and compresses them again into `part`, ending the stream as
/// the batch writers do, so that the result can itself be joined later. Returns the
/// CRC-32 of its bytes.
fn recompress(sources: &[SealedBatch], part: &Path, level: u32) -> io::Result<u32> {
    let out = BufWriter::with_capacity(256 << 10, Checksummed::new(create_new(part)?));
    let mut encoder = GzEncoder::new(out, Compression::new(level));
    for source in sources {
        let mut decoder = MultiGzDecoder::new(BufReader::new(File::open(&source.path)?));
        let copied = io::copy(&mut decoder, &mut encoder)?;
        if copied != source.raw_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {copied} bytes, its name says {}",
                    source.path.display(),
                    source.raw_bytes
                ),
            ));
        }
    }
    encoder.flush()?;
    finish_file(encoder.finish()?)
}

fn create_new(path: &Path) -> io::Result<File> {
    File::options().write(true).create_new(true).open(path)
}

/// Makes a written file durable; returns the CRC-32 of its bytes.
fn finish_file(out: BufWriter<Checksummed<File>>) -> io::Result<u32> {
    let (file, checksum) = out.into_inner().map_err(|e| e.into_error())?.into_parts();
    file.sync_all()?;
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::BatchFile;
    use std::io::Read;

    /// Seals a batch of `records` as the batch writers do.
    fn seal(spool: &Spool, records: &[&str]) -> SealedBatch {
        let mut file =
            BatchFile::create(&spool.new_batch_path(0, crate::handoff::Origin::Stream), 6).unwrap();
        for r in records {
            file.append(r.as_bytes()).unwrap();
        }
        spool
            .seal_written(&file.finish().unwrap(), &[])
            .unwrap()
            .batch
    }

    /// Seals a batch as an older version did: a gzip stream ended without a sync flush.
    fn seal_plain(spool: &Spool, records: &[&str]) -> SealedBatch {
        let path = spool.new_batch_path(0, crate::handoff::Origin::Stream);
        let mut encoder = GzEncoder::new(File::create(&path).unwrap(), Compression::new(6));
        let mut raw = 0;
        for r in records {
            encoder.write_all(r.as_bytes()).unwrap();
            encoder.write_all(b"\n").unwrap();
            raw += r.len() as u64 + 1;
        }
        encoder.finish().unwrap();
        spool.seal(&path, records.len() as u64, raw).unwrap()
    }

    /// The records of the first gzip member of a file, and whether bytes follow it.
    fn first_member(path: &Path) -> (String, bool) {
        let bytes = fs::read(path).unwrap();
        let mut decoder = flate2::bufread::GzDecoder::new(&bytes[..]);
        let mut text = String::new();
        decoder.read_to_string(&mut text).unwrap();
        (text, !decoder.into_inner().is_empty())
    }

    #[test]
    fn joins_batches_into_one_member_without_recompressing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        seal(&spool, &["a1", "a2"]);
        seal(&spool, &["b1"]);
        let big: Vec<String> = (0..20_000).map(|i| format!("c{i} some LEEF")).collect();
        seal(&spool, &big.iter().map(String::as_str).collect::<Vec<_>>());
        let ready = spool.scan_ready().unwrap();
        assert!(ready.iter().all(|b| spliceable(b).unwrap().is_some()));
        let merged = spool.merge_oldest(&ready, 1 << 30, 6).unwrap().unwrap();
        assert_eq!(
            (merged.seq, merged.last_seq(), merged.records),
            (0, 2, 20_003)
        );
        let (text, trailing) = first_member(&merged.path);
        assert!(!trailing, "one gzip member, nothing after it");
        let expected = format!("a1\na2\nb1\n{}\n", big.join("\n"));
        assert_eq!(text, expected);
        spool.verify(&merged).unwrap();
        // The sources are gone; the merged file is all that waits.
        assert_eq!(spool.scan_ready().unwrap(), vec![merged.clone()]);
        assert_eq!(spool.ready_bytes(), merged.gzip_bytes);
        // A merged batch merges again with newer ones, still without recompressing.
        let newer = seal(&spool, &["d1"]);
        assert_eq!(newer.seq, 3);
        let ready = spool.scan_ready().unwrap();
        let again = spool.merge_oldest(&ready, 1 << 30, 6).unwrap().unwrap();
        assert_eq!((again.seq, again.last_seq(), again.records), (0, 3, 20_004));
        assert_eq!(
            first_member(&again.path),
            (format!("{expected}d1\n"), false)
        );
    }

    #[test]
    fn recompresses_batches_of_an_older_version() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        seal_plain(&spool, &["old1", "old2"]);
        seal(&spool, &["new1"]);
        let ready = spool.scan_ready().unwrap();
        assert!(spliceable(&ready[0]).unwrap().is_none());
        let merged = spool.merge_oldest(&ready, 1 << 30, 6).unwrap().unwrap();
        assert_eq!(
            first_member(&merged.path),
            ("old1\nold2\nnew1\n".into(), false)
        );
        spool.verify(&merged).unwrap();
        // Recompressed to end as the writers' batches do: it joins without recompression.
        assert!(spliceable(&merged).unwrap().is_some());
    }

    #[test]
    fn a_run_stops_at_a_gap_and_at_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        for _ in 0..4 {
            seal(&spool, &["0123456789"]);
        }
        let mut ready = spool.scan_ready().unwrap();
        assert_eq!(merge_run(&ready, 1 << 30).len(), 4);
        assert_eq!(merge_run(&ready, 33).len(), 3, "11 bytes each");
        // Batch 2 being sealed right now: not yet in ready/.
        ready.remove(2);
        assert_eq!(merge_run(&ready, 1 << 30).len(), 2);
    }

    #[test]
    fn after_a_crash_mid_merge_every_record_waits_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        seal(&spool, &["r1"]);
        seal(&spool, &["r2"]);
        seal(&spool, &["r3"]);
        // Killed while writing the merged file: the part is deleted, the sources stay.
        let ready = spool.scan_ready().unwrap();
        fs::write(
            dir.path().join("open/merge-1-2.gz.part"),
            b"\x1f\x8b half a merge",
        )
        .unwrap();
        drop(spool);
        let spool = Spool::prepare(dir.path()).unwrap();
        spool.recover(6, &mut |_, _| Ok(())).unwrap();
        assert_eq!(spool.quarantined().unwrap(), 0);
        assert_eq!(spool.scan_ready().unwrap(), ready);

        // Killed after the merged file was sealed, before every source was deleted.
        let merged = spool
            .merge_oldest(&ready[..2], 1 << 30, 6)
            .unwrap()
            .unwrap();
        for source in &ready[..2] {
            fs::copy(&merged.path, &source.path).unwrap();
        }
        drop(spool);
        let spool = Spool::prepare(dir.path()).unwrap();
        spool.recover(6, &mut |_, _| Ok(())).unwrap();
        let after = spool.scan_ready().unwrap();
        assert_eq!(after, vec![merged, ready[2].clone()]);
        let records: u64 = after.iter().map(|b| b.records).sum();
        assert_eq!(records, 3);
    }
}
