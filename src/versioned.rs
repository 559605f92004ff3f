//! The version tag every JSON state file carries (checkpoints, claims, the category store,
//! the held-back sync answer, the done_upload records): `"version": N` beside the other
//! fields of the file's object.
//!
//! A file without the tag was written before tags existed and is version 1. A file of a
//! version newer than this build reads is refused with [`NewerVersion`], before its other
//! fields are looked at (a newer layout is not damage), and it is left as it is: the build
//! that wrote it can still read it after a rollback and a new upgrade.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A state file written by a newer version of the agent than this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is version {found} of its format, written by a newer version of nss-agent; this one reads versions up to {newest}, \
     so it is left as it is: run the newer version again, or move the file away",
    .path.display()
)]
pub struct NewerVersion {
    /// The file.
    pub path: PathBuf,
    /// The version the file says it is.
    pub found: u32,
    /// The newest version this build reads.
    pub newest: u32,
}

impl NewerVersion {
    /// This error inside an [`io::Error`] found by [`NewerVersion::in_io`].
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The [`NewerVersion`] an [`io::Error`] carries, if it is one made by
    /// [`NewerVersion::into_io`].
    pub fn in_io(error: &io::Error) -> Option<&NewerVersion> {
        error.get_ref()?.downcast_ref()
    }
}

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Written by a newer version: never to be treated as damage.
    #[error(transparent)]
    Newer(#[from] NewerVersion),
    /// Not JSON of the file's layout, or of a version no build writes.
    #[error("{0}")]
    Damaged(String),
}

/// Only the tag, whatever else the object holds.
#[derive(Deserialize)]
struct Tag {
    #[serde(default = "first")]
    version: u32,
}

fn first() -> u32 {
    1
}

/// The version tag of the JSON object `json`: 1 when it has none.
pub fn version_of(json: &[u8]) -> Result<u32, ReadError> {
    let tag: Tag = serde_json::from_slice(json).map_err(|e| ReadError::Damaged(e.to_string()))?;
    if tag.version == 0 {
        return Err(ReadError::Damaged(
            "version 0 is not one nss-agent writes".into(),
        ));
    }
    Ok(tag.version)
}

/// The version of `json`, the content of the file `path`, when it is at most `newest`;
/// else the refusal naming the file. Only the tag is read.
pub fn readable_version(path: &Path, json: &[u8], newest: u32) -> Result<u32, ReadError> {
    let version = version_of(json)?;
    if version > newest {
        return Err(NewerVersion {
            path: path.to_path_buf(),
            found: version,
            newest,
        }
        .into());
    }
    Ok(version)
}

/// Reads `json`, the content of the file `path`, as a `T` of a version up to `newest`,
/// and returns it with its version. A newer version is refused before the rest is read.
pub fn from_slice<T: DeserializeOwned>(
    path: &Path,
    json: &[u8],
    newest: u32,
) -> Result<(u32, T), ReadError> {
    let version = readable_version(path, json, newest)?;
    let value = serde_json::from_slice(json).map_err(|e| ReadError::Damaged(e.to_string()))?;
    Ok((version, value))
}

/// `value` (a struct) as a JSON object with `"version": version` first.
#[derive(Serialize)]
struct Tagged<'a, T> {
    version: u32,
    #[serde(flatten)]
    value: &'a T,
}

/// `value` as compact JSON, tagged with `version`.
pub fn to_vec<T: Serialize>(version: u32, value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Tagged { version, value })
}

/// `value` as indented JSON for files people read, tagged with `version`.
pub fn to_vec_pretty<T: Serialize>(version: u32, value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(&Tagged { version, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        offset: u64,
        ranges: Vec<(u64, u64)>,
    }

    const FILE: &str = "/var/lib/nss-agent/state.json";

    #[test]
    fn what_is_written_reads_back_with_its_version() {
        let state = State {
            offset: u64::MAX,
            ranges: vec![(1, 2)],
        };
        let json = to_vec(1, &state).unwrap();
        assert!(json.starts_with(br#"{"version":1,"#), "{json:?}");
        let (version, read): (u32, State) = from_slice(Path::new(FILE), &json, 1).unwrap();
        let pretty = to_vec_pretty(1, &read).unwrap();
        assert_eq!((version, read), (1, state));
        assert_eq!(version_of(&pretty).unwrap(), 1);
    }

    #[test]
    fn a_file_without_a_tag_is_version_one() {
        let (version, read): (u32, State) =
            from_slice(Path::new(FILE), br#"{"offset": 7, "ranges": []}"#, 1).unwrap();
        assert_eq!(version, 1);
        assert_eq!(read.offset, 7);
    }

    #[test]
    fn a_newer_version_is_refused_by_name_whatever_its_layout() {
        // Its other fields are not looked at: a new layout is not damage.
        let newer = br#"{"version": 99, "offset": {"bytes": 7}}"#;
        let error = from_slice::<State>(Path::new(FILE), newer, 1).unwrap_err();
        let ReadError::Newer(newer) = error else {
            panic!("{error:?}");
        };
        assert_eq!((newer.found, newer.newest), (99, 1));
        let text = newer.to_string();
        assert!(
            text.contains(FILE) && text.contains("version 99") && text.contains("up to 1"),
            "{text}"
        );
        let io = newer.clone().into_io();
        assert_eq!(NewerVersion::in_io(&io), Some(&newer));
        assert_eq!(NewerVersion::in_io(&io::Error::other("x")), None);
    }

    #[test]
    fn damage_is_told_apart_from_a_newer_version() {
        for damaged in [
            &br#"{"offset": 7"#[..],
            br#"{"version": "two", "offset": 7, "ranges": []}"#,
            br#"{"version": 0, "offset": 7, "ranges": []}"#,
            br#"{"version": 1, "offset": "seven", "ranges": []}"#,
            br#"[1, 2]"#,
        ] {
            assert!(
                matches!(
                    from_slice::<State>(Path::new(FILE), damaged, 1),
                    Err(ReadError::Damaged(_))
                ),
                "{}",
                String::from_utf8_lossy(damaged)
            );
        }
    }
}
