//! Questions on standard input, a line at a time; on a terminal, secrets are typed with
//! the echo off, and an interrupt at such a prompt gives the terminal its echo back.

use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use nix::libc;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::config::{ConfigError, Secret};

/// Standard input, read a line at a time, whether a terminal or a pipe.
pub struct Input {
    stdin: io::StdinLock<'static>,
    terminal: bool,
}

impl Input {
    /// The process's standard input.
    pub fn stdin() -> Input {
        let stdin = io::stdin();
        let terminal = termios::tcgetattr(stdin.as_fd()).is_ok();
        Input {
            stdin: stdin.lock(),
            terminal,
        }
    }

    /// Prints `prompt` and reads one line; `None` at the end of input. With `echo` false on
    /// a terminal, what is typed is not shown.
    pub fn ask(&mut self, prompt: &str, echo: bool) -> Result<Option<String>, ConfigError> {
        let failed =
            |e: io::Error| ConfigError::new("standard input", format!("cannot be read: {e}"));
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

impl Input {
    /// Asks until `accept` takes the answer, which it may print a note about. The current
    /// value is shown in brackets; Enter, or the end of input, keeps it (if `accept` still
    /// takes it).
    pub fn ask_value<T>(
        &mut self,
        prompt: &str,
        key: &str,
        current: Option<&str>,
        accept: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let shown = current.unwrap_or_default();
        loop {
            let Some(answer) = self.ask(&format!("{prompt} [{shown}]: "), true)? else {
                return match current {
                    Some(current) => accept(current).map_err(|p| ConfigError::new(key, p)),
                    None => Err(ended(key)),
                };
            };
            let answer = match (answer.trim(), current) {
                ("", Some(current)) => current.to_string(),
                (answer, _) => answer.to_string(),
            };
            match accept(&answer) {
                Ok(value) => return Ok(value),
                Err(problem) => println!("{problem}"),
            }
        }
    }

    /// Asks for a secret, not echoed on a terminal, until `accept` takes it; the current
    /// one is shown masked, and Enter keeps it. `empty` is said when there is none to keep.
    pub fn ask_secret(
        &mut self,
        prompt: &str,
        key: &str,
        current: Option<&Secret>,
        accept: impl Fn(&str) -> Result<Secret, String>,
        empty: &str,
    ) -> Result<Secret, ConfigError> {
        let shown = current.map(Secret::masked).unwrap_or_default();
        loop {
            let Some(answer) = self.ask(&format!("{prompt} [{shown}]: "), false)? else {
                return current.cloned().ok_or_else(|| ended(key));
            };
            let answer = answer.trim();
            match (answer, current) {
                ("", Some(secret)) => return Ok(secret.clone()),
                ("", None) => println!("{empty}"),
                (answer, _) => match accept(answer) {
                    Ok(secret) => return Ok(secret),
                    Err(problem) => println!("{problem}"),
                },
            }
        }
    }
}

fn ended(key: &str) -> ConfigError {
    ConfigError::new(
        key,
        "is not set: standard input ended before it was entered",
    )
}

/// The terminal settings to put back if the process is interrupted at a hidden prompt.
static SAVED_TERMINAL: OnceLock<libc::termios> = OnceLock::new();

/// Ctrl-C (or a kill) at a hidden prompt must not leave the administrator's terminal
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
        let failed = |e: nix::Error| {
            ConfigError::new("standard input", format!("cannot turn echo off: {e}"))
        };
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
