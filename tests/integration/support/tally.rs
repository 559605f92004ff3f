//! Counting what MCAS received of the records sent: sent, delivered, missing,
//! duplicated, and whether each duplicate came from a batch received twice.

use std::collections::BTreeMap;

use mcas_emulator::Emulator;

/// Of records made by [`leef`] for `streams` (name, count), how many were sent, delivered
/// at least once, missing, and delivered more than once; and whether every duplicate came
/// from a batch MCAS received twice (the same bytes: a batch sent again after a crash
/// between done_upload and its removal), not from records read twice.
pub fn tally(emulator: &Emulator, streams: &[(String, usize)]) -> Tally {
    // A batch is told by its bytes (names may repeat across runs).
    let digest = |upload: &mcas_emulator::Upload| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        upload.read().unwrap().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    let uploads = emulator.uploads();
    let digests: Vec<String> = uploads.iter().map(digest).collect();
    for name in &digests {
        *names.entry(name.clone()).or_default() += 1;
    }
    let mut sent = 0;
    let mut expected = std::collections::BTreeSet::new();
    for (stream, count) in streams {
        for n in 0..*count {
            expected.insert(format!("recordid={stream}-{n}\t").into_bytes());
            sent += 1;
        }
    }
    let mut foreign = 0;
    // Each record: in which batches (by file name) and how often.
    let mut places: BTreeMap<Vec<u8>, BTreeMap<String, u32>> = BTreeMap::new();
    for (upload, name) in uploads.iter().zip(&digests) {
        for record in upload.records_decompressed().unwrap() {
            let Some(at) = memchr::memmem::find(&record, b"recordid=") else {
                foreign += 1;
                continue;
            };
            let end = record[at..]
                .iter()
                .position(|&b| b == b'\t')
                .map_or(record.len(), |e| at + e + 1);
            let key = record[at..end].to_vec();
            if !expected.contains(&key) {
                foreign += 1;
                continue;
            }
            *places
                .entry(key)
                .or_default()
                .entry(name.clone())
                .or_default() += 1;
        }
    }
    let count = |p: &BTreeMap<String, u32>| p.values().sum::<u32>();
    let duplicated = places.values().filter(|p| count(p) > 1).count();
    // Read twice: in two batches, or more often in a batch than the batch was received.
    let unexplained = places
        .values()
        .filter(|p| p.len() > 1 || p.iter().any(|(name, &n)| n > names[name]))
        .count();
    let seen = places;
    Tally {
        sent,
        delivered: seen.len(),
        missing: sent - seen.len(),
        duplicated,
        unexplained,
        foreign,
        batches: uploads.len(),
        batches_twice: names.values().filter(|&&c| c > 1).count(),
    }
}

/// What [`tally`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sent: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicated: usize,
    /// Duplicates not explained by a batch received twice under the same name.
    pub unexplained: usize,
    pub foreign: usize,
    pub batches: usize,
    /// Batches MCAS received twice under the same name.
    pub batches_twice: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "records sent {}, delivered {}, missing {}, duplicated {} ({} not from a batch sent twice); {} batches, {} sent twice",
            self.sent, self.delivered, self.missing, self.duplicated, self.unexplained, self.batches, self.batches_twice
        )
    }
}
