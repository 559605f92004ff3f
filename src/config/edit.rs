//! The configuration file edited in place (`nss configure-mcas`, `disable-mcas`): keys
//! set or removed with every other key and comment kept, written atomically, keeping its owner, mode 0600 (0640 for a file of the daemon's group).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use super::{ConfigError, Secret};
use crate::durable_fs::AtomicWrite;

/// The configuration file as a format-preserving TOML document.
pub struct ConfigFile {
    path: PathBuf,
    doc: DocumentMut,
    /// Owner and group of the file as found, kept on rewrite so that the daemon's user
    /// can still read it.
    owner: Option<(u32, u32)>,
    /// The mode a rewrite gives the file: 0640 where the daemon's group could read it (the
    /// packaged file is `root:nss-agent 0640`), else 0600.
    mode: u32,
    /// Secret files to write alongside: (the `*_file` key, its path, the secret).
    secret_files: Vec<(String, PathBuf, Secret)>,
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty document.
    pub fn open(path: &Path) -> Result<ConfigFile, ConfigError> {
        let key = path.display().to_string();
        let (text, owner, mode) = match fs::read_to_string(path) {
            Ok(text) => {
                let meta = fs::metadata(path).map_err(|e| {
                    ConfigError::new(&key, format!("cannot read the configuration file: {e}"))
                })?;
                (text, Some((meta.uid(), meta.gid())), kept_mode(&meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (String::new(), None, 0o600),
            Err(e) => {
                return Err(ConfigError::new(
                    &key,
                    format!("cannot read the configuration file: {e}"),
                ))
            }
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            ConfigError::new(
                &key,
                format!("the file is not valid TOML ({e}): fix the line it names"),
            )
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            doc,
            owner,
            mode,
            secret_files: Vec::new(),
        })
    }

    fn table(&self, section: &str) -> Option<&dyn toml_edit::TableLike> {
        self.doc.get(section).and_then(Item::as_table_like)
    }

    fn table_mut(&mut self, section: &str) -> Result<&mut dyn toml_edit::TableLike, ConfigError> {
        let item = self
            .doc
            .entry(section)
            .or_insert_with(|| Item::Table(Table::new()));
        item.as_table_like_mut().ok_or_else(|| {
            ConfigError::new(
                section,
                format!("is not a table: it must be a [{section}] section"),
            )
        })
    }

    /// The string value of `section.key`, if set and not empty.
    pub fn string(&self, section: &str, key: &str) -> Option<String> {
        self.table(section)
            .and_then(|t| t.get(key))
            .and_then(Item::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The secret `section.key` in the file now, inline or read from `section.<key>_file`,
    /// for the prompt.
    pub fn current_secret(&self, section: &str, key: &str) -> Option<Secret> {
        if let Some(secret) = self.string(section, key) {
            return Some(Secret::new(secret));
        }
        let text = fs::read_to_string(self.string(section, &format!("{key}_file"))?).ok()?;
        Some(Secret::new(text.trim())).filter(|t| !t.expose().is_empty())
    }

    /// Sets `section.key`, keeping the comments around an existing value: the comment
    /// lines above a key belong to the key, a trailing comment to the value, so an
    /// existing value is replaced in place rather than the key re-inserted.
    pub fn set_string(&mut self, section: &str, key: &str, text: &str) -> Result<(), ConfigError> {
        let table = self.table_mut(section)?;
        let mut value = Value::from(text);
        if let Some(old) = table.get_mut(key).and_then(Item::as_value_mut) {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        } else {
            table.insert(key, Item::Value(value));
        }
        Ok(())
    }

    /// Stores the secret `section.key`. When the file keeps it in `section.<key>_file`, the
    /// new secret goes into that file rather than inline: the administrator chose to keep
    /// the secret out of the configuration file (which may be readable by more people, or
    /// managed by a configuration tool), and the command should not quietly undo that.
    pub fn set_secret(
        &mut self,
        section: &str,
        key: &str,
        secret: &Secret,
    ) -> Result<(), ConfigError> {
        let file_key = format!("{key}_file");
        if let Some(path) = self.string(section, &file_key) {
            self.secret_files.push((
                format!("{section}.{file_key}"),
                PathBuf::from(path),
                secret.clone(),
            ));
            self.remove(section, key);
        } else {
            self.set_string(section, key, secret.expose())?;
        }
        Ok(())
    }

    /// Removes `section.key`; whether it was there.
    pub fn remove(&mut self, section: &str, key: &str) -> bool {
        self.doc
            .get_mut(section)
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.remove(key))
            .is_some()
    }

    /// Writes the secret files (if any), then the configuration file, each atomically.
    pub fn save(&self) -> Result<(), ConfigError> {
        for (key, path, secret) in &self.secret_files {
            let owner = fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
            write_atomically(
                path,
                format!("{}\n", secret.expose()).as_bytes(),
                owner,
                0o600,
            )
            .map_err(|e| ConfigError::new(key, format!("cannot write {}: {e}", path.display())))?;
        }
        write_atomically(
            &self.path,
            self.doc.to_string().as_bytes(),
            self.owner,
            self.mode,
        )
        .map_err(|e| {
            ConfigError::new(
                &self.path.display().to_string(),
                format!("cannot write the configuration file: {e}"),
            )
        })
    }
}

/// The mode a rewrite keeps: 0640 for a file of the daemon's group that its group may
/// read (the packaged `root:nss-agent 0640`), else 0600.
fn kept_mode(meta: &fs::Metadata) -> u32 {
    let daemons_group = nix::unistd::Group::from_name("nss-agent")
        .ok()
        .flatten()
        .is_some_and(|group| group.gid.as_raw() == meta.gid());
    if daemons_group && meta.mode() & 0o040 != 0 {
        0o640
    } else {
        0o600
    }
}

/// Replaces `path` with `data` so that a crash leaves either the old or the new file,
/// with permission bits `mode`, creating its directory if need be.
fn write_atomically(
    path: &Path,
    data: &[u8],
    owner: Option<(u32, u32)>,
    mode: u32,
) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    AtomicWrite::durable(mode).owned_by(owner).write(path, data)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn edits_keep_other_keys_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(
            &path,
            "# top\n[mcas]\n# the tenant\ndomain = \"old.example.com\" # trailing\n\n[batch]\nmax_age = \"30s\" # keep\n",
        )
        .unwrap();
        let mut file = ConfigFile::open(&path).unwrap();
        file.set_string("mcas", "domain", "new.example.com")
            .unwrap();
        file.set_secret("mcas", "token", &Secret::new("a".repeat(40)))
            .unwrap();
        file.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# top\n[mcas]\n# the tenant\ndomain = \"new.example.com\" # trailing\n"),
            "{text}"
        );
        assert!(text.contains("max_age = \"30s\" # keep"), "{text}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut file = ConfigFile::open(&path).unwrap();
        assert!(file.remove("mcas", "token") && file.remove("mcas", "domain"));
        file.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("domain =") && !text.contains("token ="),
            "{text}"
        );
        assert!(text.contains("max_age = \"30s\" # keep"), "{text}");
    }

    #[test]
    fn a_secret_kept_in_a_file_stays_in_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let secret_file = dir.path().join("client-secret");
        fs::write(
            &path,
            format!(
                "[mcas]\nclient_secret_file = \"{}\"\n",
                secret_file.display()
            ),
        )
        .unwrap();
        let mut file = ConfigFile::open(&path).unwrap();
        file.set_secret("mcas", "client_secret", &Secret::new("s3cret"))
            .unwrap();
        file.save().unwrap();
        assert_eq!(fs::read_to_string(&secret_file).unwrap(), "s3cret\n");
        assert!(!fs::read_to_string(&path).unwrap().contains("s3cret"));
        let reopened = ConfigFile::open(&path).unwrap();
        assert_eq!(
            reopened.current_secret("mcas", "client_secret"),
            Some(Secret::new("s3cret"))
        );
    }
}
