//! `nss generate-assets DIR`: the man page and shell completions, made from the same clap
//! definitions as the parser, for the packages.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Writes `DIR/nss.1` and `DIR/completions/{nss.bash,_nss,nss.fish}`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join("nss.1"), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "nss", &completions)?;
    }
    Ok(())
}
