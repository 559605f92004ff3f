//! The custom URL categories of the appliance: every one of them, not only the one the
//! sync fills, in one JSON file in the state directory, replaced atomically.
//!
//! The file holds categories other sources (an administrator, another tool) put there, so
//! a file that cannot be read is refused, never taken for an empty store and overwritten.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::config::SyncSettings;
use crate::durable_fs::AtomicWrite;
use crate::versioned::{self, NewerVersion, ReadError};

/// The store's file name in the state directory.
pub const FILE_NAME: &str = "url-categories.json";
/// Held (flock) while the store is read and replaced, so that a `nss sync-now` and the
/// daemon's sync do not lose each other's writes.
const LOCK_NAME: &str = "url-categories.lock";
/// Where a new version is written before it is renamed over the file (under the lock, so
/// one name is enough, and a leftover of a crash is simply overwritten).
/// The `source` of the category the unsanctioned-apps sync fills.
pub const SYNC_SOURCE: &str = "mcas-sync";

/// One custom URL category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    /// Domains; a leading dot includes the subdomains.
    pub urls: Vec<String>,
    /// When its URLs were last set, RFC 3339 UTC.
    pub updated: String,
    /// Who set them: [`SYNC_SOURCE`] for the sync, e.g. `admin` for others.
    pub source: String,
}

/// The version of the file's layout this build writes, and the newest it reads.
pub const STORE_VERSION: u32 = 1;

/// The file's layout.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    categories: Vec<Category>,
}

/// The appliance's limits on custom URL categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Custom URLs across all categories.
    pub max_urls: u64,
    /// Custom categories.
    pub max_categories: u64,
}

impl Limits {
    /// The limits configured in `[sync]`.
    pub fn of(settings: &SyncSettings) -> Limits {
        Limits {
            max_urls: settings.max_custom_urls,
            max_categories: settings.max_custom_categories,
        }
    }
}

/// What a [`CategoryStore::replace`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// URLs the category holds now.
    pub urls: u64,
    /// URLs that are new in it.
    pub added: u64,
    /// URLs that left it.
    pub removed: u64,
    /// URLs across all categories now.
    pub total_urls: u64,
    /// Categories now.
    pub categories: u64,
}

/// A replace the appliance's limits do not allow. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Too many custom URLs across all categories.
    #[error(
        "the limit of {limit} custom URLs across all categories (sync.max_custom_urls) would be exceeded by {over}: \
         {category:?} would hold {urls} URLs and the other categories hold {others}; \
         unsanction apps in MCAS, or remove custom URLs from the other categories on the appliance"
    )]
    Urls {
        limit: u64,
        over: u64,
        category: String,
        urls: u64,
        others: u64,
    },
    /// Too many custom categories.
    #[error(
        "the limit of {limit} custom URL categories (sync.max_custom_categories) would be exceeded by {over}: \
         with {category:?} there would be {count}; remove custom URL categories on the appliance \
         (or raise sync.max_custom_categories if the appliance allows more)"
    )]
    Categories {
        limit: u64,
        over: u64,
        category: String,
        count: u64,
    },
}

/// The store cannot be read or written, or a replace would pass a limit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {action} the category store {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is there but is not a store.
    #[error(
        "the category store {} is damaged: {reason}; it holds every custom URL category of the appliance, \
         so it is left as it is: repair it, or move it away to start without categories",
        .path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    /// The file was written by a newer version of the agent; it is left as it is.
    #[error(transparent)]
    Newer(#[from] NewerVersion),
    /// The replace would pass a limit; the store is unchanged.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// The categories' file. Cheap to clone: it is only a path.
#[derive(Debug, Clone)]
pub struct CategoryStore {
    path: PathBuf,
}

impl CategoryStore {
    /// The store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> CategoryStore {
        CategoryStore { path: path.into() }
    }

    /// The store in the state directory `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> CategoryStore {
        CategoryStore::new(state_dir.join(FILE_NAME))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Every category, in the file's order. No file means no categories.
    pub fn load(&self) -> Result<Vec<Category>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.io("read", source)),
        };
        let file: StoreFile = match versioned::from_slice(&self.path, &bytes, STORE_VERSION) {
            Ok((_, file)) => file,
            Err(ReadError::Newer(newer)) => return Err(newer.into()),
            Err(ReadError::Damaged(reason)) => return Err(self.damaged(reason)),
        };
        let mut names = HashSet::new();
        for category in &file.categories {
            if category.name.trim().is_empty() {
                return Err(self.damaged("a category has no name"));
            }
            if !names.insert(category.name.as_str()) {
                return Err(self.damaged(format!("the category {:?} appears twice", category.name)));
            }
        }
        Ok(file.categories)
    }

    /// Sets the URLs of the category `name` to `urls` (sorted and deduplicated here) and
    /// its source to `source`, creating it at the end if it is absent; the other categories
    /// stay as they are. Fails as a whole, leaving the file untouched, when the result
    /// would pass `limits`.
    pub fn replace(
        &self,
        name: &str,
        source: &str,
        mut urls: Vec<String>,
        limits: Limits,
    ) -> Result<Replaced, StoreError> {
        urls.sort();
        urls.dedup();
        let _lock = self.lock()?;
        let mut categories = self.load()?;
        let position = categories.iter().position(|c| c.name == name);

        let count = categories.len() as u64 + u64::from(position.is_none());
        if count > limits.max_categories {
            return Err(LimitError::Categories {
                limit: limits.max_categories,
                over: count - limits.max_categories,
                category: name.to_string(),
                count,
            }
            .into());
        }
        let others: u64 = categories
            .iter()
            .filter(|c| c.name != name)
            .map(|c| c.urls.len() as u64)
            .sum();
        let total = others + urls.len() as u64;
        if total > limits.max_urls {
            return Err(LimitError::Urls {
                limit: limits.max_urls,
                over: total - limits.max_urls,
                category: name.to_string(),
                urls: urls.len() as u64,
                others,
            }
            .into());
        }

        let category = Category {
            name: name.to_string(),
            urls,
            updated: rfc3339(SystemTime::now()),
            source: source.to_string(),
        };
        let (added, removed) = match position {
            Some(i) => {
                let (added, removed) = difference(&categories[i].urls, &category.urls);
                categories[i] = category;
                (added, removed)
            }
            None => {
                let added = category.urls.len() as u64;
                categories.push(category);
                (added, 0)
            }
        };
        let replaced = Replaced {
            urls: total - others,
            added,
            removed,
            total_urls: total,
            categories: categories.len() as u64,
        };
        self.write(&StoreFile { categories })?;
        Ok(replaced)
    }

    /// Takes the store's lock, creating the state directory if need be.
    fn lock(&self) -> Result<Flock<File>, StoreError> {
        let dir = self.dir();
        fs::create_dir_all(dir).map_err(|e| self.io("create the directory of", e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(dir.join(LOCK_NAME))
            .map_err(|e| self.io("lock", e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io("lock", errno.into()))
    }

    /// Writes the new version beside the file, makes it durable, then renames it over.
    fn write(&self, file: &StoreFile) -> Result<(), StoreError> {
        let mut json =
            versioned::to_vec_pretty(STORE_VERSION, file).expect("categories always serialize");
        json.push(b'\n');
        AtomicWrite::durable(0o640)
            .write(&self.path, &json)
            .map_err(|e| self.io("write", e))
    }

    fn io(&self, action: &'static str, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    fn damaged(&self, reason: impl ToString) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Custom URLs across `categories`.
pub fn total_urls(categories: &[Category]) -> u64 {
    categories.iter().map(|c| c.urls.len() as u64).sum()
}

/// How many of `new` are not in `old`, and how many of `old` are not in `new`.
fn difference(old: &[String], new: &[String]) -> (u64, u64) {
    let old: BTreeSet<&String> = old.iter().collect();
    let new: BTreeSet<&String> = new.iter().collect();
    (
        new.difference(&old).count() as u64,
        old.difference(&new).count() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_urls: 25_000,
        max_categories: 48,
    };

    fn urls(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!(".{prefix}{i}.example")).collect()
    }

    fn seed(store: &CategoryStore, categories: &[(&str, usize)]) {
        let file = StoreFile {
            categories: categories
                .iter()
                .map(|&(name, n)| Category {
                    name: name.to_string(),
                    urls: urls(name, n),
                    updated: "2025-01-01T00:00:00Z".to_string(),
                    source: "admin".to_string(),
                })
                .collect(),
        };
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.path(), serde_json::to_vec(&file).unwrap()).unwrap();
    }

    #[test]
    fn a_store_of_a_newer_version_is_refused_and_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(dir.path());
        // A store of before the tags is version 1, and is written back tagged.
        seed(&store, &[("finance", 3)]);
        store
            .replace("apps", SYNC_SOURCE, urls("a", 2), LIMITS)
            .unwrap();
        let written = fs::read(store.path()).unwrap();
        assert_eq!(versioned::version_of(&written).unwrap(), STORE_VERSION);
        assert_eq!(store.load().unwrap().len(), 2);

        let newer = br#"{"version": 2, "categories": {"finance": []}}"#;
        fs::write(store.path(), newer).unwrap();
        for error in [
            store.load().unwrap_err(),
            store
                .replace("apps", SYNC_SOURCE, urls("a", 1), LIMITS)
                .unwrap_err(),
        ] {
            let StoreError::Newer(refused) = &error else {
                panic!("{error:?}");
            };
            assert_eq!((refused.found, refused.newest), (2, STORE_VERSION));
            assert!(error.to_string().contains("version 2"), "{error}");
        }
        assert_eq!(fs::read(store.path()).unwrap(), newer);
    }

    #[test]
    fn a_missing_file_is_no_categories() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(&dir.path().join("not-yet"));
        assert_eq!(store.load().unwrap(), []);
    }

    #[test]
    fn replaces_one_category_and_counts_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(&dir.path().join("state"));
        seed(&store, &[("finance", 3)]);
        let first = store
            .replace("apps", SYNC_SOURCE, urls("a", 30), LIMITS)
            .unwrap();
        assert_eq!((first.urls, first.added, first.removed), (30, 30, 0));
        assert_eq!((first.total_urls, first.categories), (33, 2));

        let mut next = urls("a", 30)[10..].to_vec();
        next.extend(urls("b", 5));
        let second = store.replace("apps", SYNC_SOURCE, next, LIMITS).unwrap();
        assert_eq!((second.urls, second.added, second.removed), (25, 5, 10));

        let categories = store.load().unwrap();
        assert_eq!(categories.len(), 2);
        assert_eq!(categories[0].name, "finance");
        assert_eq!(categories[0].urls, urls("finance", 3));
        assert_eq!(categories[0].source, "admin");
        assert_eq!(categories[1].source, SYNC_SOURCE);
        let mut sorted = categories[1].urls.clone();
        sorted.sort();
        assert_eq!(categories[1].urls, sorted);
        let temporary = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temporary, 0, "no temporary file is left");
        let mode = fs::metadata(store.path()).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o027, 0);
    }

    #[test]
    fn the_url_limit_counts_every_category_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(dir.path());
        seed(&store, &[("finance", 24_990), ("apps", 2)]);
        let before = fs::read(store.path()).unwrap();
        let err = store
            .replace("apps", SYNC_SOURCE, urls("a", 11), LIMITS)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Limit(LimitError::Urls {
                    limit: 25_000,
                    over: 1,
                    ..
                })
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("25000") && text.contains("exceeded by 1"),
            "{text}"
        );
        assert!(text.contains("unsanction apps in MCAS"), "{text}");
        assert_eq!(fs::read(store.path()).unwrap(), before);
        // Exactly at the limit is allowed.
        store
            .replace("apps", SYNC_SOURCE, urls("a", 10), LIMITS)
            .unwrap();
    }

    #[test]
    fn the_category_limit_refuses_a_new_category_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(dir.path());
        let names: Vec<String> = (0..48).map(|i| format!("c{i}")).collect();
        let seeded: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        seed(&store, &seeded);
        let before = fs::read(store.path()).unwrap();
        let err = store
            .replace("apps", SYNC_SOURCE, urls("a", 1), LIMITS)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("48 custom URL categories") && text.contains("exceeded by 1"),
            "{text}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), before);
        // An existing category can still be replaced.
        store.replace("c7", "admin", urls("x", 2), LIMITS).unwrap();
    }

    #[test]
    fn concurrent_replaces_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(dir.path());
        std::thread::scope(|scope| {
            for t in 0..6 {
                let store = store.clone();
                scope.spawn(move || {
                    for round in 1..=5 {
                        store
                            .replace(&format!("c{t}"), "admin", urls("u", round), LIMITS)
                            .unwrap();
                    }
                });
            }
        });
        let categories = store.load().unwrap();
        assert_eq!(categories.len(), 6);
        assert!(categories.iter().all(|c| c.urls.len() == 5));
    }

    #[test]
    fn a_damaged_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CategoryStore::in_state_dir(dir.path());
        for text in [
            "{\"categories\": [",
            "not json",
            "{\"categories\": [{\"name\": \"a\", \"urls\": [], \"updated\": \"x\", \"source\": \"admin\"},\
              {\"name\": \"a\", \"urls\": [], \"updated\": \"x\", \"source\": \"admin\"}]}",
        ] {
            fs::write(store.path(), text).unwrap();
            let err = store
                .replace("apps", SYNC_SOURCE, urls("a", 1), LIMITS)
                .unwrap_err();
            assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
            assert!(err.to_string().contains(&store.path().display().to_string()));
            assert_eq!(fs::read_to_string(store.path()).unwrap(), text);
        }
    }
}
