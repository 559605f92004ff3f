//! Questions on standard input, a line at a time; on a terminal, secrets are typed with
//! the echo off, and an interrupt at such a prompt gives the terminal its echo back.

use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use nix::libc;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::config::ConfigError;

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
