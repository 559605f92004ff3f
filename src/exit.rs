//! The command line's exit codes (the contract's), and the trait by which each kind of
//! error says its code where it is declared ([`ExitStatus`]); `cli::exit_code_for` lets the
//! first cause of a failed command's chain that has one decide.

use std::error::Error;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
/// A remote service (MCAS, ZIA) refused or could not be reached.
pub const UNAVAILABLE: u8 = 69;
/// The configuration is at fault.
pub const CONFIG: u8 = 78;

/// An error that decides the exit code of the command it ends.
pub trait ExitStatus: Error + 'static {
    /// The exit code.
    fn exit_code(&self) -> u8;
}
