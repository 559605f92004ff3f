//! `nss configure-mcas` and `nss disable-mcas`: the prompts on a terminal, the flags for
//! cloud-init, the file edited in place, and the verdict of the token check.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcas_emulator::{Endpoint, Fault};

use crate::support::harness::*;

pub const TOKEN_PROMPT: &str = "token (Authentication token for uploading to MCAS) ";
pub const DOMAIN_PROMPT: &str = "domain (MCAS domain like mycompany.portal.cloudappsecurity.com) ";

/// The world's settings without the token and domain: what a fresh appliance's file holds.
fn unconfigured(world: &World) -> String {
    let mut text = String::from("# nss-agent configuration, edited by hand\n");
    for line in world.settings().toml().lines() {
        if line.starts_with("domain = ") || line.starts_with("token = ") {
            continue;
        }
        text.push_str(line);
        text.push('\n');
        if line == "[batch]" {
            text.push_str("# half a minute is plenty for tests\n");
        }
    }
    text
}

/// `nss --config <config> <args>` with `stdin` piped in; exit code, stdout, stderr.
pub fn nss_piped(config: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = nss()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token was printed:\n{stdout}{stderr}"
    );
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `nss` on a pseudo-terminal: what it prints is collected by a thread.
pub struct Terminal {
    child: Child,
    master: fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    seen: usize,
}

impl Terminal {
    pub fn spawn(config: &Path, args: &[&str]) -> Terminal {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let child = nss()
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .unwrap();
        drop(pty.slave);
        let master = fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has exited and the slave is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            output,
            seen: 0,
        }
    }

    /// Waits for `text` after what was already expected; returns what came before it.
    pub fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = String::from_utf8_lossy(&self.output.lock().unwrap()).to_string();
            let rest = &all[self.seen.min(all.len())..];
            if let Some(at) = rest.find(text) {
                let before = rest[..at].to_string();
                self.seen += at + text.len();
                return before;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} on the terminal; it shows:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }

    /// Whether the terminal echoes what is typed.
    pub fn echoes(&self) -> bool {
        let settings = nix::sys::termios::tcgetattr(&self.master).unwrap();
        settings
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO)
    }

    /// Waits until the echo is off (the prompt is printed just before it goes off).
    pub fn wait_echo_off(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.echoes() {
            assert!(Instant::now() < deadline, "echo never went off");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn all(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).to_string()
    }

    pub fn wait(mut self) -> (i32, String) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        // Let the reader drain what was written just before the exit.
        std::thread::sleep(Duration::from_millis(100));
        (code, self.all())
    }
}

/// The integration guide's steps as an administrator follows them on a terminal: the
/// token's prompt first and exactly as the guide shows it, the echo off while it is typed,
/// then the domain's, then the `nss restart` hint. The token shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_two_prompts_on_a_terminal() {
    let world = World::start().await;
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    let config = world.dir.path().join("config.toml");
    fs::write(&config, unconfigured(&world)).unwrap();

    let mut terminal = Terminal::spawn(&config, &["configure-mcas"]);
    let before = terminal.expect("token (Authentication token for uploading to MCAS) []: ");
    assert_eq!(before, "", "something came before the token's prompt");
    terminal.wait_echo_off();
    terminal.type_line(TOKEN);
    let between =
        terminal.expect("domain (MCAS domain like mycompany.portal.cloudappsecurity.com) []: ");
    // Only the end of the hidden line.
    assert_eq!(between, "\r\n", "between the prompts: {between:?}");
    assert!(terminal.echoes(), "the echo stayed off after the token");
    terminal.type_line(&world.emulator.domain());
    terminal.expect("Verdict: valid");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    // Not the token, nor any 8 characters of it.
    for part in TOKEN.as_bytes().windows(8) {
        let part = std::str::from_utf8(part).unwrap();
        assert!(
            !shown.contains(part),
            "{part:?} of the token shows:\n{shown}"
        );
    }
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("token = \"{TOKEN}\"")), "{text}");
    assert!(!text.contains("auth ="), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_on_a_terminal_asks_hides_the_token_and_keeps_the_file() {
    let world = World::start().await;
    world
        .emulator
        .set_banned(vec![".reddit.com".to_string(), ".redd.it".to_string()]);
    let config = world.dir.path().join("etc").join("config.toml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = unconfigured(&world);
    fs::write(&config, &original).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();

    let mut terminal = Terminal::spawn(&config, &["configure-mcas"]);
    terminal.expect(&format!("{TOKEN_PROMPT}[]: "));
    terminal.type_line("");
    let complaint = terminal.expect(&format!("{TOKEN_PROMPT}[]: "));
    assert!(
        complaint.contains("The token is empty") && complaint.contains("--auth entra"),
        "{complaint}"
    );
    terminal.type_line(TOKEN);
    terminal.expect(&format!("{DOMAIN_PROMPT}[]: "));
    terminal.type_line("https://x/y");
    let complaint = terminal.expect(&format!("{DOMAIN_PROMPT}[]: "));
    assert!(complaint.contains("path"), "{complaint}");
    terminal.type_line("tenant .example.com");
    let complaint = terminal.expect(&format!("{DOMAIN_PROMPT}[]: "));
    assert!(complaint.contains("white space"), "{complaint}");
    terminal.type_line(&world.emulator.domain());
    terminal.expect("Verdict: valid");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains(TOKEN), "the token was echoed:\n{shown}");
    assert!(
        !shown.contains("SECRET"),
        "part of the token shows:\n{shown}"
    );

    assert_eq!(mode(&config), 0o600);
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with("# nss-agent configuration, edited by hand\n"),
        "{text}"
    );
    assert!(
        text.contains("[batch]\n# half a minute is plenty for tests\nmax_age = \"2s\""),
        "{text}"
    );
    assert!(text.contains("ca_file = "), "{text}");
    assert!(text.contains(&format!("token = \"{TOKEN}\"")), "{text}");
    assert!(
        text.contains(&format!("domain = \"{}\"", world.emulator.domain())),
        "{text}"
    );
    // Only the two keys were added: every line of the original is still there, in order.
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("token = ") && !l.starts_with("domain = "))
        .collect();
    assert_eq!(kept, original.lines().collect::<Vec<_>>());

    let (code, dump, stderr) = nss_piped(&config, &["dump-config"], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(dump.contains("****CRET"), "{dump}");

    // A second run shows the current values; Enter keeps them.
    let mut terminal = Terminal::spawn(&config, &["configure-mcas", "--no-verify"]);
    terminal.expect(&format!("{TOKEN_PROMPT}[****CRET]: "));
    terminal.type_line("");
    terminal.expect(&format!("{DOMAIN_PROMPT}[{}]: ", world.emulator.domain()));
    terminal.type_line("");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);

    // Interrupted at the hidden token prompt: the terminal gets its echo back.
    let mut terminal = Terminal::spawn(&config, &["configure-mcas"]);
    terminal.expect(&format!("{TOKEN_PROMPT}[****CRET]: "));
    terminal.wait_echo_off();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(terminal.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = terminal.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", terminal.all());
    assert!(terminal.echoes(), "echo stayed off");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);
}

#[test]
fn configure_from_flags_strips_validates_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    // The file and its directory do not exist yet.
    let config = dir.path().join("new").join("config.toml");
    let (code, stdout, stderr) = nss_piped(
        &config,
        &[
            "configure-mcas",
            "--token-stdin",
            "--domain",
            "https://tenant.us3.portal.cloudappsecurity.com/",
            "--no-verify",
        ],
        &format!("{TOKEN}\n"),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Note: removed"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("Run `sudo nss restart` to apply."),
        "{stdout}"
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("domain = \"tenant.us3.portal.cloudappsecurity.com\""),
        "{text}"
    );
    assert_eq!(mode(&config), 0o600);

    for domain in ["https://x/y", "tenant .example.com", ""] {
        let (code, stdout, stderr) = nss_piped(
            &config,
            &["configure-mcas", "--token-stdin", "--domain", domain],
            TOKEN,
        );
        assert_eq!(code, 78, "{domain:?}: {stdout}{stderr}");
        assert!(stderr.contains("mcas.domain"), "{stderr}");
    }
    let (code, stdout, stderr) = nss_piped(
        &config,
        &["configure-mcas", "--token-stdin", "--no-verify"],
        "short-token",
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stderr.contains("mcas.token"), "{stderr}");
    // Refused input leaves the file as it was.
    assert_eq!(fs::read_to_string(&config).unwrap(), text);

    // A fresh file with only a data source given: no token, no domain to keep.
    let empty = dir.path().join("empty.toml");
    let (code, _, stderr) = nss_piped(&empty, &["configure-mcas", "--data-source", "NSS2"], "");
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("mcas.token"), "{stderr}");
    assert!(!empty.exists());

    // A file that keeps the token in a token file gets the new token there, not inline.
    let token_file = dir.path().join("token");
    fs::write(&token_file, format!("{}\n", "0".repeat(64))).unwrap();
    let with_file = dir.path().join("with-file.toml");
    fs::write(
        &with_file,
        format!(
            "[mcas]\ntoken_file = \"{}\" # kept apart\ndomain = \"a.example.com\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let given = dir.path().join("given-token");
    fs::write(&given, TOKEN).unwrap();
    let (code, stdout, stderr) = nss_piped(
        &with_file,
        &[
            "configure-mcas",
            "--token-file",
            given.to_str().unwrap(),
            "--data-source",
            "NSS-east",
            "--no-verify",
        ],
        "",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(fs::read_to_string(&token_file).unwrap().trim(), TOKEN);
    assert_eq!(mode(&token_file), 0o600);
    let text = fs::read_to_string(&with_file).unwrap();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("# kept apart"), "{text}");
    assert!(text.contains("domain = \"a.example.com\""), "{text}");
    assert!(text.contains("data_source = \"NSS-east\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_gives_one_of_four_verdicts() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    let domain = world.emulator.domain();
    let configure = |config: &Path, domain: &str| {
        let (code, stdout, stderr) = nss_piped(
            config,
            &["configure-mcas", "--token-stdin", "--domain", domain],
            TOKEN,
        );
        assert!(
            stdout
                .trim_end()
                .ends_with("Run `sudo nss restart` to apply."),
            "{stdout}"
        );
        assert_eq!(stdout.matches("Verdict:").count(), 1, "{stdout}");
        (code, stdout, stderr)
    };

    fs::write(&config, unconfigured(&world)).unwrap();
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    let (code, stdout, stderr) = configure(&config, &domain);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Verdict: valid. "), "{stdout}");

    world
        .emulator
        .push_fault(Endpoint::BlockScript, Fault::status(401), 1);
    let (code, stdout, stderr) = configure(&config, &domain);
    assert_eq!(code, 69, "{stdout}{stderr}");
    assert!(
        stdout.contains("Verdict: refused") && stdout.contains("global administrator"),
        "{stdout}"
    );
    assert!(stdout.contains("saved all the same"), "{stdout}");

    world.emulator.set_banned(Vec::new());
    let (code, stdout, stderr) = configure(&config, &domain);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Verdict: valid, but no app is marked unsanctioned"),
        "{stdout}"
    );

    let closed = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = configure(&config, &closed);
    assert_eq!(code, 69, "{stdout}{stderr}");
    assert!(
        stdout.contains("Verdict: unreachable") && stdout.contains("refused the connection"),
        "{stdout}"
    );
    // Saved all the same.
    assert!(fs::read_to_string(&config).unwrap().contains(&closed));

    // Without mcas.ca_file the emulator's certificate is not trusted.
    let untrusted = world.dir.path().join("untrusted.toml");
    let text: String = unconfigured(&world)
        .lines()
        .filter(|l| !l.starts_with("ca_file = "))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&untrusted, text).unwrap();
    let (code, stdout, stderr) = configure(&untrusted, &domain);
    assert_eq!(code, 69, "{stdout}{stderr}");
    assert!(
        stdout.contains("Verdict: unreachable") && stdout.contains("TLS"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_forgets_token_and_domain() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    let original = unconfigured(&world);
    fs::write(&config, &original).unwrap();
    let (code, stdout, stderr) = nss_piped(
        &config,
        &[
            "configure-mcas",
            "--token-stdin",
            "--domain",
            &world.emulator.domain(),
            "--no-verify",
        ],
        TOKEN,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, stdout, stderr) = nss_piped(&config, &["disable-mcas"], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout
            .trim_end()
            .ends_with("Run `sudo nss restart` to apply."),
        "{stdout}"
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
    assert_eq!(mode(&config), 0o600);

    let output = nss()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("mcas.domain"), "{stderr}");
}
