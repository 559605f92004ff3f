//! The command line's exit codes (the contract's), and which errors decide them: each kind
//! of error says its code where it is declared ([`ExitStatus`]), and the first cause of a
//! failed command's error chain that has one decides.

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

/// The exit code of a command that failed with `error`: the one the first cause of its
/// chain decides, else [`FAILURE`].
pub fn code_for(error: &anyhow::Error) -> u8 {
    error.chain().find_map(decided).unwrap_or(FAILURE)
}

/// The code `cause` decides, if it is of a kind that decides one.
fn decided(cause: &(dyn Error + 'static)) -> Option<u8> {
    /// Every kind of error that decides an exit code.
    const KINDS: &[fn(&(dyn Error + 'static)) -> Option<u8>] = &[
        of::<crate::config::ConfigError>,
        of::<crate::cli::ConfigRefused>,
        of::<crate::zia::ZiaError>,
        of::<crate::mcas::ApiError>,
        of::<crate::cli::Unavailable>,
    ];
    KINDS.iter().find_map(|kind| kind(cause))
}

fn of<E: ExitStatus>(cause: &(dyn Error + 'static)) -> Option<u8> {
    cause.downcast_ref::<E>().map(E::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_kind_decides_its_code_wherever_it_is_in_the_chain() {
        let config: anyhow::Result<()> =
            Err(crate::config::ConfigError::new("mcas.domain", "missing").into());
        assert_eq!(code_for(&config.context("loading").unwrap_err()), CONFIG);
        let refused = anyhow::Error::new(crate::cli::ConfigRefused("refused".into()));
        assert_eq!(code_for(&refused.context("nss reload")), CONFIG);
        let unavailable = anyhow::Error::new(crate::cli::Unavailable("MCAS refused".into()));
        assert_eq!(code_for(&unavailable), UNAVAILABLE);
        let setup = anyhow::Error::new(crate::zia::ZiaError::Setup("no CA".into()));
        assert_eq!(code_for(&setup), CONFIG);
        let read_only = crate::zia::ZiaError::ReadOnly {
            endpoint: "/urlCategories".into(),
        };
        assert_eq!(code_for(&anyhow::Error::new(read_only)), UNAVAILABLE);
        assert_eq!(code_for(&anyhow::anyhow!("anything else")), FAILURE);
    }
}
