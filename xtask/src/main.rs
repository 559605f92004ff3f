//! Build-time tasks, kept out of the shipped binary: `cargo run -p xtask -- assets DIR`
//! writes the man page and shell completions, made from the same clap definitions as the
//! `nss` parser, for the packages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::CommandFactory;
use clap_complete::Shell;
use nss_agent::cli::Cli;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "assets" => assets(&PathBuf::from(dir)),
        _ => bail!("usage: cargo run -p xtask -- assets DIR"),
    }
}

/// Writes `DIR/nss.1` and `DIR/completions/{nss.bash,_nss,nss.fish}`.
fn assets(dir: &Path) -> anyhow::Result<()> {
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
