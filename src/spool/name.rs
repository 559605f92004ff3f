//! The names of the spool's files: built, printed and parsed here only. See the grammar
//! in the [module doc](super).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handoff::Origin;

/// The name of a file the spool writes in `open/` or `ready/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchName {
    /// A batch a writer is writing: `w<WRITER>-<ORIGIN>-<PID>-<NANOS>.gz.part`.
    Open(OpenName),
    /// A merged batch being written: `merge-<PID>-<NANOS>.gz.part`.
    Merge(MergeName),
    /// A salvage of an unsealed TCP batch being written: `salvage-<SOURCE>`.
    Salvage(OpenName),
    /// A complete salvage, fsynced, waiting to be sealed:
    /// `salvaged-<RECORDS>r-<RAW>b-<SOURCE>`.
    Salvaged {
        records: u64,
        raw_bytes: u64,
        source: OpenName,
    },
    /// What a batch being sealed holds of tailed files: `<OPEN>.claims`.
    Claims(OpenName),
    /// A sealed batch in `ready/`: see [`SealedName`].
    Sealed(SealedName),
}

/// A writer's unsealed batch: who writes it, and where its records came from (which
/// decides what recovery does with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenName {
    pub writer: usize,
    pub origin: Origin,
    /// The process that created it, and when (nanoseconds since the epoch): together unique.
    pub pid: u32,
    pub nanos: u128,
}

/// A merged batch being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeName {
    pub pid: u32,
    pub nanos: u128,
}

/// A sealed batch's name: `<SEQ>-<SEALEDMS>-<RECORDS>r-<RAW>b[-<CRC>c][-<LAST>m].gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedName {
    /// Order of sealing, 20 digits.
    pub seq: u64,
    /// When it was sealed, in milliseconds since the epoch.
    pub sealed_ms: u64,
    pub records: u64,
    /// Uncompressed bytes.
    pub raw_bytes: u64,
    /// CRC-32 of the file's bytes as written, 8 hex digits; absent on salvaged batches and
    /// those of older versions.
    pub checksum: Option<u32>,
    /// For a merged batch, the sequence number of its newest source, 20 digits.
    pub last: Option<u64>,
}

/// The suffix of the file beside a quarantined file that says why it is there.
const REASON_SUFFIX: &str = ".reason";

/// The name a file takes in `quarantine/`: its own, or with `.<COPY>` when a file of that
/// name is there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineName {
    pub original: String,
    pub copy: u32,
}

const OPEN_SUFFIX: &str = ".gz.part";
const SEALED_SUFFIX: &str = ".gz";
pub(super) const CLAIMS_SUFFIX: &str = ".claims";
const MERGE_PREFIX: &str = "merge-";
const SALVAGE_PREFIX: &str = "salvage-";
const SALVAGED_PREFIX: &str = "salvaged-";

/// A name the spool did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a name the spool writes")]
pub struct ForeignName;

fn nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl OpenName {
    /// A new batch of writer `writer`, of records from `origin`, created now.
    pub fn new(writer: usize, origin: Origin) -> OpenName {
        OpenName {
            writer,
            origin,
            pid: std::process::id(),
            nanos: nanos_now(),
        }
    }
}

impl MergeName {
    /// A new merged batch, started now.
    pub fn new() -> MergeName {
        MergeName {
            pid: std::process::id(),
            nanos: nanos_now(),
        }
    }
}

impl Default for MergeName {
    fn default() -> MergeName {
        MergeName::new()
    }
}

impl SealedName {
    /// When the batch was sealed, to the millisecond.
    pub fn sealed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.sealed_ms)
    }
}

impl QuarantineName {
    /// The name of the file that says why this one is in quarantine.
    pub fn reason(&self) -> String {
        format!("{self}{REASON_SUFFIX}")
    }

    /// Whether `name` in `quarantine/` is a reason, not a quarantined file.
    pub fn is_reason(name: &str) -> bool {
        name.ends_with(REASON_SUFFIX)
    }
}

impl fmt::Display for OpenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "w{}-{}-{}-{}{OPEN_SUFFIX}",
            self.writer,
            self.origin.name(),
            self.pid,
            self.nanos
        )
    }
}

impl fmt::Display for MergeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MERGE_PREFIX}{}-{}{OPEN_SUFFIX}", self.pid, self.nanos)
    }
}

impl fmt::Display for SealedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:020}-{}-{}r-{}b",
            self.seq, self.sealed_ms, self.records, self.raw_bytes
        )?;
        if let Some(crc) = self.checksum {
            write!(f, "-{crc:08x}c")?;
        }
        if let Some(last) = self.last {
            write!(f, "-{last:020}m")?;
        }
        f.write_str(SEALED_SUFFIX)
    }
}

impl fmt::Display for QuarantineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.copy {
            0 => f.write_str(&self.original),
            n => write!(f, "{}.{n}", self.original),
        }
    }
}

impl fmt::Display for BatchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchName::Open(name) => name.fmt(f),
            BatchName::Merge(name) => name.fmt(f),
            BatchName::Salvage(source) => write!(f, "{SALVAGE_PREFIX}{source}"),
            BatchName::Salvaged {
                records,
                raw_bytes,
                source,
            } => write!(f, "{SALVAGED_PREFIX}{records}r-{raw_bytes}b-{source}"),
            BatchName::Claims(batch) => write!(f, "{batch}{CLAIMS_SUFFIX}"),
            BatchName::Sealed(name) => name.fmt(f),
        }
    }
}

// The parsers take only what the printers write (no sign, no stray zero, the padded
// widths exactly): a name that parses prints back to itself, so a name rebuilt from its
// parts is the file's.

/// A number as the spool writes it: decimal digits, no leading zero.
fn number<T: FromStr>(text: &str) -> Result<T, ForeignName> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(ForeignName);
    }
    text.parse().map_err(|_| ForeignName)
}

/// A sequence number as the spool writes it: 20 digits.
fn padded(text: &str) -> Result<u64, ForeignName> {
    if text.len() != 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ForeignName);
    }
    text.parse().map_err(|_| ForeignName)
}

/// A CRC-32 as the spool writes it: 8 lowercase hex digits.
fn crc(text: &str) -> Result<u32, ForeignName> {
    let canonical = text.len() == 8 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return Err(ForeignName);
    }
    u32::from_str_radix(text, 16).map_err(|_| ForeignName)
}

impl FromStr for OpenName {
    type Err = ForeignName;

    fn from_str(name: &str) -> Result<OpenName, ForeignName> {
        let rest = name
            .strip_suffix(OPEN_SUFFIX)
            .and_then(|n| n.strip_prefix('w'))
            .ok_or(ForeignName)?;
        let parts: Vec<&str> = rest.split('-').collect();
        let [writer, origin, pid, nanos] = parts[..] else {
            return Err(ForeignName);
        };
        Ok(OpenName {
            writer: number(writer)?,
            origin: Origin::from_name(origin).ok_or(ForeignName)?,
            pid: number(pid)?,
            nanos: number(nanos)?,
        })
    }
}

impl FromStr for MergeName {
    type Err = ForeignName;

    fn from_str(name: &str) -> Result<MergeName, ForeignName> {
        let rest = name
            .strip_prefix(MERGE_PREFIX)
            .and_then(|n| n.strip_suffix(OPEN_SUFFIX))
            .ok_or(ForeignName)?;
        let (pid, nanos) = rest.split_once('-').ok_or(ForeignName)?;
        Ok(MergeName {
            pid: number(pid)?,
            nanos: number(nanos)?,
        })
    }
}

impl FromStr for SealedName {
    type Err = ForeignName;

    fn from_str(name: &str) -> Result<SealedName, ForeignName> {
        let rest = name.strip_suffix(SEALED_SUFFIX).ok_or(ForeignName)?;
        let mut parts = rest.split('-');
        let mut next = || parts.next().ok_or(ForeignName);
        let seq = padded(next()?)?;
        let sealed_ms = number(next()?)?;
        let records = number(next()?.strip_suffix('r').ok_or(ForeignName)?)?;
        let raw_bytes = number(next()?.strip_suffix('b').ok_or(ForeignName)?)?;
        let mut part = parts.next();
        let mut checksum = None;
        if let Some(sum) = part.and_then(|p| p.strip_suffix('c')) {
            checksum = Some(crc(sum)?);
            part = parts.next();
        }
        let mut last = None;
        if let Some(merged) = part {
            last = Some(padded(merged.strip_suffix('m').ok_or(ForeignName)?)?);
        }
        if parts.next().is_some() {
            return Err(ForeignName);
        }
        Ok(SealedName {
            seq,
            sealed_ms,
            records,
            raw_bytes,
            checksum,
            last,
        })
    }
}

impl FromStr for BatchName {
    type Err = ForeignName;

    fn from_str(name: &str) -> Result<BatchName, ForeignName> {
        if let Some(batch) = name.strip_suffix(CLAIMS_SUFFIX) {
            return Ok(BatchName::Claims(batch.parse()?));
        }
        if let Some(rest) = name.strip_prefix(SALVAGED_PREFIX) {
            let (records, rest) = rest.split_once("r-").ok_or(ForeignName)?;
            let (raw_bytes, source) = rest.split_once("b-").ok_or(ForeignName)?;
            return Ok(BatchName::Salvaged {
                records: number(records)?,
                raw_bytes: number(raw_bytes)?,
                source: source.parse()?,
            });
        }
        if let Some(source) = name.strip_prefix(SALVAGE_PREFIX) {
            return Ok(BatchName::Salvage(source.parse()?));
        }
        if name.starts_with(MERGE_PREFIX) {
            return Ok(BatchName::Merge(name.parse()?));
        }
        if name.starts_with('w') {
            return Ok(BatchName::Open(name.parse()?));
        }
        Ok(BatchName::Sealed(name.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(origin: Origin) -> OpenName {
        OpenName {
            writer: 3,
            origin,
            pid: 4242,
            nanos: 1_767_225_600_123_456_789,
        }
    }

    fn sealed(checksum: Option<u32>, last: Option<u64>) -> SealedName {
        SealedName {
            seq: 7,
            sealed_ms: 1_767_225_600_123,
            records: 100_000,
            raw_bytes: 268_435_456,
            checksum,
            last,
        }
    }

    #[test]
    fn every_kind_reads_back_as_it_was_printed() {
        let names = [
            BatchName::Open(open(Origin::Stream)),
            BatchName::Open(open(Origin::File)),
            BatchName::Open(OpenName::new(0, Origin::Stream)),
            BatchName::Merge(MergeName { pid: 1, nanos: 2 }),
            BatchName::Merge(MergeName::new()),
            BatchName::Salvage(open(Origin::Stream)),
            BatchName::Salvaged {
                records: 12,
                raw_bytes: 345,
                source: open(Origin::Stream),
            },
            BatchName::Claims(open(Origin::File)),
            BatchName::Sealed(sealed(None, None)),
            BatchName::Sealed(sealed(Some(0), None)),
            BatchName::Sealed(sealed(Some(0xdead_beef), None)),
            BatchName::Sealed(sealed(Some(0x0000_00ff), Some(u64::MAX))),
            BatchName::Sealed(sealed(None, Some(9))),
        ];
        for name in names {
            let text = name.to_string();
            assert_eq!(text.parse::<BatchName>(), Ok(name.clone()), "{text}");
        }
    }

    /// Names as the spool writes them on disk: existing spools are read the same.
    #[test]
    fn names_on_disk_read_as_they_always_did() {
        for (text, name) in [
            (
                "w3-tcp-4242-1767225600123456789.gz.part",
                BatchName::Open(open(Origin::Stream)),
            ),
            (
                "w3-file-4242-1767225600123456789.gz.part",
                BatchName::Open(open(Origin::File)),
            ),
            (
                "merge-1-2.gz.part",
                BatchName::Merge(MergeName { pid: 1, nanos: 2 }),
            ),
            (
                "salvage-w3-tcp-4242-1767225600123456789.gz.part",
                BatchName::Salvage(open(Origin::Stream)),
            ),
            (
                "salvaged-12r-345b-w3-tcp-4242-1767225600123456789.gz.part",
                BatchName::Salvaged {
                    records: 12,
                    raw_bytes: 345,
                    source: open(Origin::Stream),
                },
            ),
            (
                "w3-file-4242-1767225600123456789.gz.part.claims",
                BatchName::Claims(open(Origin::File)),
            ),
            (
                "00000000000000000007-1767225600123-100000r-268435456b.gz",
                BatchName::Sealed(sealed(None, None)),
            ),
            (
                "00000000000000000007-1767225600123-100000r-268435456b-deadbeefc.gz",
                BatchName::Sealed(sealed(Some(0xdead_beef), None)),
            ),
            (
                "00000000000000000007-1767225600123-100000r-268435456b-000000ffc-00000000000000000009m.gz",
                BatchName::Sealed(sealed(Some(0xff), Some(9))),
            ),
        ] {
            assert_eq!(text.parse::<BatchName>(), Ok(name.clone()), "{text}");
            assert_eq!(name.to_string(), text);
        }
    }

    #[test]
    fn names_the_spool_never_writes_are_foreign() {
        for text in [
            "",
            "notes.txt",
            "w3-udp-1-2.gz.part",
            "w3-tcp-1.gz.part",
            "w-tcp-1-2.gz.part",
            "w3-tcp-+1-2.gz.part",
            "merge-1.gz.part",
            "merge-x-2.gz.part",
            "salvage-notes.txt",
            "salvaged-1r-2b-notes.txt",
            "salvaged-xr-2b-w3-tcp-1-2.gz.part",
            "notes.claims",
            "w03-tcp-1-2.gz.part",
            "7-1-1r-1b.gz",
            "00000000000000000007-1-1r-1b",
            "00000000000000000007-1-1r-1b.gz.part",
            "00000000000000000007-1-1r.gz",
            "00000000000000000007-1-1-1b.gz",
            "00000000000000000007-01-1r-1b.gz",
            "00000000000000000007-1-1r-1b-dead beefc.gz",
            "00000000000000000007-1-1r-1b-DEADBEEFc.gz",
            "00000000000000000007-1-1r-1b-deadbeefc-9m.gz",
            "00000000000000000007-1-1r-1b-deadbeefc-00000000000000000009m-1.gz",
            "00000000000000000007-1-1r-1b-9x.gz",
        ] {
            assert_eq!(text.parse::<BatchName>(), Err(ForeignName), "{text:?}");
        }
    }

    #[test]
    fn quarantine_names_keep_the_original_and_count_copies() {
        let first = QuarantineName {
            original: "w0-tcp-1-2.gz.part".into(),
            copy: 0,
        };
        assert_eq!(first.to_string(), "w0-tcp-1-2.gz.part");
        assert_eq!(first.reason(), "w0-tcp-1-2.gz.part.reason");
        let second = QuarantineName { copy: 2, ..first };
        assert_eq!(second.to_string(), "w0-tcp-1-2.gz.part.2");
        assert!(QuarantineName::is_reason(&second.reason()));
        assert!(!QuarantineName::is_reason(&second.to_string()));
    }
}
