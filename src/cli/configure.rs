//! `nss configure-mcas` and `nss disable-mcas`: enter or forget the MCAS API token and
//! domain, the way the NSS appliance asks for them, editing the configuration file in place.

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use nix::libc;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg};
use toml_edit::{DocumentMut, Item, Table, Value};

use super::troubleshoot::{self, Verdict};
use super::{ConfigureMcasArgs, Unavailable};
use crate::config::{check_domain, check_token_shape, ConfigError, Secret, Settings};
use crate::fsx::AtomicWrite;
use crate::mcas::McasClient;

const TOKEN_PROMPT: &str = "token (Authentication token for uploading to MCAS)";
const DOMAIN_PROMPT: &str = "domain (MCAS domain like mycompany.portal.cloudappsecurity.com)";
const RESTART_HINT: &str = "Run `sudo nss restart` to apply.";

/// Asks for (or takes from the flags) the token and domain, writes them into the file at
/// `path`, and checks the token against MCAS unless `--no-verify`.
///
/// Exit codes: 0 when saved and the token is valid (also when no app is marked
/// unsanctioned yet); 78 when a value is missing or malformed (nothing is written); 69 when
/// MCAS refused the token or could not be reached (the configuration is saved all the same).
pub fn configure(path: &Path, args: &ConfigureMcasArgs) -> anyhow::Result<()> {
    let mut file = ConfigFile::open(path)?;
    let current_token = file.current_token();
    let current_domain = file.string("domain");

    let interactive = args.token_file.is_none()
        && !args.token_stdin
        && args.domain.is_none()
        && args.data_source.is_none();
    let (token, domain) = if interactive {
        let mut input = Input::stdin();
        let token = ask_token(&mut input, current_token.as_ref())?;
        let domain = ask_domain(&mut input, current_domain.as_deref())?;
        (token, domain)
    } else {
        let token = match (&args.token_file, args.token_stdin) {
            (Some(token_file), _) => {
                let text = fs::read_to_string(token_file).map_err(|e| {
                    config_error(
                        "mcas.token",
                        format!("cannot read --token-file {}: {e}", token_file.display()),
                    )
                })?;
                Some(Secret::new(text.trim()))
            }
            (None, true) => {
                let mut text = String::new();
                io::stdin().read_to_string(&mut text).map_err(|e| {
                    config_error("mcas.token", format!("cannot read standard input: {e}"))
                })?;
                Some(Secret::new(text.trim()))
            }
            (None, false) => current_token,
        };
        let token = token.ok_or_else(|| {
            config_error(
                "mcas.token",
                "is not set: give it with --token-file F or --token-stdin",
            )
        })?;
        check_token_shape(token.expose()).map_err(|p| config_error("mcas.token", p))?;
        let given = args.domain.clone().or(current_domain).ok_or_else(|| {
            config_error(
                "mcas.domain",
                "is not set: give it with --domain, e.g. --domain mycompany.us3.portal.cloudappsecurity.com",
            )
        })?;
        let (domain, note) =
            normalize_domain(&given).map_err(|p| config_error("mcas.domain", p))?;
        if let Some(note) = note {
            println!("{note}");
        }
        (token, domain)
    };
    if let Some(data_source) = &args.data_source {
        if data_source.trim().is_empty() {
            return Err(config_error(
                "mcas.data_source",
                "is empty: give the data source's name in the MCAS portal, e.g. --data-source NSS",
            )
            .into());
        }
        file.set_string("data_source", data_source.trim())?;
    }

    file.set_string("domain", &domain)?;
    file.set_token(&token)?;
    file.save()?;
    println!(
        "Saved the MCAS token ({}) and domain {domain} in {}.",
        token.masked(),
        path.display()
    );

    let outcome = if args.no_verify {
        println!("The token was not checked against MCAS (--no-verify).");
        Ok(())
    } else {
        verify(path)
    };
    println!("{RESTART_HINT}");
    outcome
}

/// Removes the token (inline or `token_file`) and the domain from the file at `path`,
/// leaving every other key and comment as it is.
pub fn disable(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        println!(
            "{} does not exist: MCAS is not configured, nothing to forget.",
            path.display()
        );
        return Ok(());
    }
    let mut file = ConfigFile::open(path)?;
    let token_file = file.string("token_file");
    let removed = file.remove("token") | file.remove("token_file") | file.remove("domain");
    if !removed {
        println!(
            "{} holds no MCAS token or domain: nothing to forget.",
            path.display()
        );
        return Ok(());
    }
    file.save()?;
    println!(
        "Removed the MCAS token and domain from {}; the agent will not upload until `sudo nss configure-mcas` is run again.",
        path.display()
    );
    // The token file may be shared with other tools or managed elsewhere: it is not ours to
    // delete, but the administrator should know the token is still on disk.
    if let Some(token_file) = token_file {
        println!(
            "The token file {token_file} was left in place: delete it if nothing else uses it."
        );
    }
    println!("{RESTART_HINT}");
    Ok(())
}

/// Checks the saved configuration's token with one block-script call and prints the
/// verdict. Refused and unreachable verdicts are errors (exit 69) so that scripts notice.
fn verify(path: &Path) -> anyhow::Result<()> {
    // Loaded from the saved file, so the check uses exactly what the daemon will use
    // (mcas.ca_file, upload.timeout, environment overrides).
    let settings = Settings::load(path)?;
    let target = settings.mcas_target()?;
    let client = McasClient::from_settings(&target, &settings.upload, Default::default())?;
    println!("Checking the token against MCAS at {}...", target.domain);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let check = runtime.block_on(troubleshoot::check(&client, &target));
    let saved_anyway = "The configuration is saved all the same, so that the agent starts uploading once the cause is fixed; `sudo nss troubleshoot mcas` checks again.";
    match check.verdict {
        Verdict::Valid => {
            println!(
                "Verdict: valid. MCAS accepted the token and lists {} unsanctioned domains.",
                check.urls.len()
            );
            Ok(())
        }
        Verdict::Empty => {
            println!("Verdict: valid, but no app is marked unsanctioned: mark at least one app as Unsanctioned in the MCAS portal (Cloud Discovery > Discovered apps) so that the URL category sync has something to block.");
            Ok(())
        }
        Verdict::Refused(text) => {
            println!("Verdict: refused. {text}");
            println!("{saved_anyway}");
            Err(Unavailable("MCAS refused the token (the verdict above says why)".into()).into())
        }
        // MCAS answered but could not confirm the token (wrong host, throttled, server
        // error): for the administrator this is the same as not reaching it.
        Verdict::Failed(text) | Verdict::Unreachable(text) => {
            println!("Verdict: unreachable: {text}");
            println!("{saved_anyway}");
            Err(
                Unavailable("MCAS could not check the token (the verdict above says why)".into())
                    .into(),
            )
        }
    }
}

/// Strips a leading `https://` or `http://` and trailing `/` that people paste along with
/// the host, then checks what is left. Returns the domain and a note when something was
/// stripped.
fn normalize_domain(input: &str) -> Result<(String, Option<String>), String> {
    let trimmed = input.trim();
    let mut domain = trimmed;
    let mut stripped = Vec::new();
    for scheme in ["https://", "http://"] {
        if domain.len() >= scheme.len() && domain[..scheme.len()].eq_ignore_ascii_case(scheme) {
            domain = &domain[scheme.len()..];
            stripped.push(format!("the leading \"{}\"", &trimmed[..scheme.len()]));
            break;
        }
    }
    if domain.ends_with('/') {
        domain = domain.trim_end_matches('/');
        stripped.push("the trailing \"/\"".to_string());
    }
    check_domain(domain)?;
    let note = (!stripped.is_empty()).then(|| {
        format!(
            "Note: removed {} (MCAS is always reached over HTTPS): the domain is {domain}",
            stripped.join(" and ")
        )
    });
    Ok((domain.to_string(), note))
}

fn config_error(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// Asks for the token until a well-shaped one is entered or Enter keeps the current one.
fn ask_token(input: &mut Input, current: Option<&Secret>) -> Result<Secret, ConfigError> {
    let shown = current.map(Secret::masked).unwrap_or_default();
    loop {
        let Some(answer) = input.ask(&format!("{TOKEN_PROMPT} [{shown}]: "), false)? else {
            return current.cloned().ok_or_else(|| {
                config_error(
                    "mcas.token",
                    "is not set: standard input ended before it was entered",
                )
            });
        };
        let answer = answer.trim();
        if answer.is_empty() {
            match current {
                Some(token) => return Ok(token.clone()),
                None => {
                    println!(
                        "The token is empty: paste the API token generated in the MCAS portal."
                    );
                    continue;
                }
            }
        }
        match check_token_shape(answer) {
            Ok(()) => return Ok(Secret::new(answer)),
            Err(problem) => println!("{problem}"),
        }
    }
}

/// Asks for the domain until a valid one is entered or Enter keeps a valid current one.
fn ask_domain(input: &mut Input, current: Option<&str>) -> Result<String, ConfigError> {
    let shown = current.unwrap_or_default();
    loop {
        let Some(answer) = input.ask(&format!("{DOMAIN_PROMPT} [{shown}]: "), true)? else {
            return match current {
                Some(domain) => normalize_domain(domain)
                    .map(|(d, _)| d)
                    .map_err(|p| config_error("mcas.domain", p)),
                None => Err(config_error(
                    "mcas.domain",
                    "is not set: standard input ended before it was entered",
                )),
            };
        };
        let answer = match (answer.trim(), current) {
            ("", Some(current)) => current.to_string(),
            (answer, _) => answer.to_string(),
        };
        match normalize_domain(&answer) {
            Ok((domain, note)) => {
                if let Some(note) = note {
                    println!("{note}");
                }
                return Ok(domain);
            }
            Err(problem) => println!("{problem}"),
        }
    }
}

/// Standard input, read a line at a time, whether a terminal or a pipe.
struct Input {
    stdin: io::StdinLock<'static>,
    terminal: bool,
}

impl Input {
    fn stdin() -> Input {
        let stdin = io::stdin();
        let terminal = termios::tcgetattr(stdin.as_fd()).is_ok();
        Input {
            stdin: stdin.lock(),
            terminal,
        }
    }

    /// Prints `prompt` and reads one line; `None` at the end of input. With `echo` false on
    /// a terminal, what is typed is not shown.
    fn ask(&mut self, prompt: &str, echo: bool) -> Result<Option<String>, ConfigError> {
        let failed = |e: io::Error| config_error("standard input", format!("cannot be read: {e}"));
        print!("{prompt}");
        io::stdout().flush().map_err(failed)?;
        let mut line = String::new();
        let read = if self.terminal && !echo {
            let _quiet = EchoOff::new()?;
            let read = self.stdin.read_line(&mut line);
            // The Enter that ended the line was not echoed either.
            println!();
            read
        } else {
            self.stdin.read_line(&mut line)
        };
        match read.map_err(failed)? {
            0 => Ok(None),
            _ => Ok(Some(line.trim_end_matches(['\n', '\r']).to_string())),
        }
    }
}

/// The terminal settings to put back if the process is interrupted at the token prompt.
static SAVED_TERMINAL: OnceLock<libc::termios> = OnceLock::new();

/// Ctrl-C (or a kill) at the token prompt must not leave the administrator's terminal
/// without echo: put it back, end the line, and exit as an interrupted program does.
extern "C" fn restore_terminal_and_exit(signal: libc::c_int) {
    if let Some(saved) = SAVED_TERMINAL.get() {
        // SAFETY: tcsetattr, write and _exit are async-signal-safe; `saved` is a plain
        // C struct that is never written again once set.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            libc::write(libc::STDOUT_FILENO, b"\n".as_ptr().cast(), 1);
        }
    }
    // SAFETY: _exit ends the process at once, running no Rust code.
    unsafe { libc::_exit(128 + signal) }
}

/// Turns the terminal's echo off until dropped.
struct EchoOff {
    saved: termios::Termios,
    handlers: Vec<(Signal, SigAction)>,
}

impl EchoOff {
    fn new() -> Result<EchoOff, ConfigError> {
        let failed =
            |e: nix::Error| config_error("standard input", format!("cannot turn echo off: {e}"));
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(failed)?;
        let _ = SAVED_TERMINAL.set(saved.clone().into());
        let action = SigAction::new(
            SigHandler::Handler(restore_terminal_and_exit),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut handlers = Vec::new();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only calls async-signal-safe functions.
            let previous = unsafe { sigaction(signal, &action) }.map_err(failed)?;
            handlers.push((signal, previous));
        }
        let mut quiet = saved.clone();
        // ECHONL stays as it was: the newline is printed by `ask` itself.
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &quiet).map_err(failed)?;
        Ok(EchoOff { saved, handlers })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
        for (signal, previous) in &self.handlers {
            // SAFETY: puts back the handlers that were there before.
            let _ = unsafe { sigaction(*signal, previous) };
        }
    }
}

/// The configuration file as a format-preserving TOML document.
struct ConfigFile {
    path: PathBuf,
    doc: DocumentMut,
    /// Owner and group of the file as found, kept on rewrite so that the daemon's user
    /// can still read it.
    owner: Option<(u32, u32)>,
    /// A token file to write alongside: (path, token).
    token_file: Option<(PathBuf, Secret)>,
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty document.
    fn open(path: &Path) -> Result<ConfigFile, ConfigError> {
        let key = path.display().to_string();
        let (text, owner) = match fs::read_to_string(path) {
            Ok(text) => {
                let meta = fs::metadata(path).map_err(|e| {
                    config_error(&key, format!("cannot read the configuration file: {e}"))
                })?;
                (text, Some((meta.uid(), meta.gid())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (String::new(), None),
            Err(e) => {
                return Err(config_error(
                    &key,
                    format!("cannot read the configuration file: {e}"),
                ))
            }
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            config_error(
                &key,
                format!("the file is not valid TOML ({e}): fix the line it names"),
            )
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            doc,
            owner,
            token_file: None,
        })
    }

    fn mcas(&self) -> Option<&dyn toml_edit::TableLike> {
        self.doc.get("mcas").and_then(Item::as_table_like)
    }

    fn mcas_mut(&mut self) -> Result<&mut dyn toml_edit::TableLike, ConfigError> {
        let item = self
            .doc
            .entry("mcas")
            .or_insert_with(|| Item::Table(Table::new()));
        item.as_table_like_mut()
            .ok_or_else(|| config_error("mcas", "is not a table: it must be a [mcas] section"))
    }

    /// The string value of `mcas.<key>`, if set and not empty.
    fn string(&self, key: &str) -> Option<String> {
        self.mcas()
            .and_then(|t| t.get(key))
            .and_then(Item::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The token in the file now, inline or read from `token_file`, for the prompt.
    fn current_token(&self) -> Option<Secret> {
        if let Some(token) = self.string("token") {
            return Some(Secret::new(token));
        }
        let text = fs::read_to_string(self.string("token_file")?).ok()?;
        Some(Secret::new(text.trim())).filter(|t| !t.expose().is_empty())
    }

    /// Sets `mcas.<key>`, keeping the comments around an existing value: the comment
    /// lines above a key belong to the key, a trailing comment to the value, so an
    /// existing value is replaced in place rather than the key re-inserted.
    fn set_string(&mut self, key: &str, text: &str) -> Result<(), ConfigError> {
        let table = self.mcas_mut()?;
        let mut value = Value::from(text);
        if let Some(old) = table.get_mut(key).and_then(Item::as_value_mut) {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        } else {
            table.insert(key, Item::Value(value));
        }
        Ok(())
    }

    /// Stores the token. When the file keeps the token in `mcas.token_file`, the new token
    /// goes into that file rather than inline: the administrator chose to keep the secret
    /// out of the configuration file (which may be readable by more people, or managed by
    /// a configuration tool), and configure-mcas should not quietly undo that choice.
    fn set_token(&mut self, token: &Secret) -> Result<(), ConfigError> {
        if let Some(token_file) = self.string("token_file") {
            self.token_file = Some((PathBuf::from(token_file), token.clone()));
            self.remove("token");
        } else {
            self.set_string("token", token.expose())?;
        }
        Ok(())
    }

    /// Removes `mcas.<key>`; whether it was there.
    fn remove(&mut self, key: &str) -> bool {
        self.doc
            .get_mut("mcas")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.remove(key))
            .is_some()
    }

    /// Writes the token file (if any), then the configuration file, each atomically.
    fn save(&self) -> Result<(), ConfigError> {
        if let Some((path, token)) = &self.token_file {
            let owner = fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
            write_atomically(path, format!("{}\n", token.expose()).as_bytes(), owner).map_err(
                |e| {
                    config_error(
                        "mcas.token_file",
                        format!("cannot write {}: {e}", path.display()),
                    )
                },
            )?;
        }
        write_atomically(&self.path, self.doc.to_string().as_bytes(), self.owner).map_err(|e| {
            config_error(
                &self.path.display().to_string(),
                format!("cannot write the configuration file: {e}"),
            )
        })
    }
}

/// Replaces `path` with `data` so that a crash leaves either the old or the new file,
/// mode 0600, creating its directory if need be.
fn write_atomically(path: &Path, data: &[u8], owner: Option<(u32, u32)>) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    AtomicWrite::durable(0o600)
        .owned_by(owner)
        .write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_scheme_and_slash_with_a_note() {
        let (domain, note) =
            normalize_domain("https://tenant.us3.portal.cloudappsecurity.com/").unwrap();
        assert_eq!(domain, "tenant.us3.portal.cloudappsecurity.com");
        assert!(note.unwrap().contains("https://"));
        let (domain, note) = normalize_domain("tenant.portal.cloudappsecurity.com").unwrap();
        assert_eq!(domain, "tenant.portal.cloudappsecurity.com");
        assert!(note.is_none());
        assert!(normalize_domain("https://x/y").is_err());
        assert!(normalize_domain("x .com").is_err());
        assert!(normalize_domain("").is_err());
        assert!(normalize_domain("https://").is_err());
    }

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
        file.set_string("domain", "new.example.com").unwrap();
        file.set_token(&Secret::new("a".repeat(40))).unwrap();
        file.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# top\n[mcas]\n# the tenant\ndomain = \"new.example.com\" # trailing\n"),
            "{text}"
        );
        assert!(text.contains("max_age = \"30s\" # keep"), "{text}");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

        let mut file = ConfigFile::open(&path).unwrap();
        assert!(file.remove("token") && file.remove("domain"));
        file.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("domain =") && !text.contains("token ="),
            "{text}"
        );
        assert!(text.contains("max_age = \"30s\" # keep"), "{text}");
    }
}
