//! nss-agent: the on-box log uploader of the Zscaler NSS appliance.
//!
//! # Layout
//!
//! The modules follow the data path in one direction (none imports one further up the
//! path); ARCHITECTURE.md at the repository's root says what each file holds.
//!
//! - **The data path:** [`feed`] turns bytes from the NSS feed into records, handed on as
//!   [`handoff`] types; [`batch`] writes them into gzip files; [`spool`] keeps the sealed
//!   files on disk until [`upload`] has handed each to MCAS; [`latency`] measures the wait.
//! - **The side loop:** [`category_sync`] makes MCAS's unsanctioned apps a URL category in ZIA.
//! - **The remote services:** [`mcas`] and [`zia`], their one [`https`] client, [`reach`],
//!   [`jwt`], [`retry`].
//! - **Control:** [`daemon`] wires the stages together; [`cli`] is what an administrator
//!   types, reading [`config`]; [`control`], [`status_report`], [`metrics`], [`pidfile`],
//!   [`privilege`], [`untrusted`].
//! - **Infrastructure:** [`counter`], [`memory`], [`durable_fs`], [`versioned`], [`clock`],
//!   [`crashpoint`], [`error_text`], [`exit`], [`logging`].

// The data path.
pub(crate) mod batch;
pub mod feed;
pub mod handoff;
pub(crate) mod latency;
pub mod spool;
pub(crate) mod upload;

// The side loop.
pub mod category_sync;

// The remote services.
pub mod https;
pub(crate) mod jwt;
pub mod mcas;
pub(crate) mod reach;
pub(crate) mod retry;
pub mod zia;

// Control.
pub mod cli;
pub mod config;
pub mod control;
pub(crate) mod daemon;
pub(crate) mod metrics;
pub mod pidfile;
pub(crate) mod privilege;
pub(crate) mod status_report;
pub mod untrusted;

// Infrastructure.
pub(crate) mod clock;
pub(crate) mod counter;
pub(crate) mod crashpoint;
pub(crate) mod durable_fs;
pub mod error_text;
pub mod exit;
pub mod logging;
pub(crate) mod memory;
pub(crate) mod versioned;

#[cfg(test)]
mod layout_tests {
    //! ARCHITECTURE.md is the map of the tree: every source file is named in it, in the
    //! block of its directory, and every path it names exists.

    use std::path::Path;

    /// The block of ARCHITECTURE.md that starts with `entry` (`src/feed/`, `src/clock.rs`):
    /// its first line and the indented lines after it.
    fn block(map: &str, entry: &str) -> Option<String> {
        let mut lines = map.lines().skip_while(|line| !line.starts_with(entry));
        let first = lines.next()?;
        let rest = lines.take_while(|line| line.starts_with(' ') && !line.trim().is_empty());
        Some(
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    #[test]
    fn architecture_md_names_every_source_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(root.join("src")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                let Some(text) = block(&map, &format!("src/{name}/")) else {
                    // A directory of data beside its module (status_report/shape.txt).
                    if !root.join("src").join(format!("{name}.rs")).exists() {
                        missing.push(format!("src/{name}/"));
                    }
                    continue;
                };
                // Every `*.rs` the block names, as a whole word.
                let named: Vec<&str> = text
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .map(|word| word.trim_end_matches('.'))
                    .filter(|word| word.ends_with(".rs"))
                    .collect();
                for file in std::fs::read_dir(&path).unwrap() {
                    let file = file.unwrap().file_name().into_string().unwrap();
                    let shown = file.ends_with(".rs") && file != "mod.rs" && file != "tests.rs";
                    if shown && !named.contains(&file.as_str()) {
                        missing.push(format!("src/{name}/{file}"));
                    }
                }
                for file in named {
                    if !path.join(file).exists() {
                        missing.push(format!("src/{name}/{file} (named, not there)"));
                    }
                }
            } else if name != "lib.rs" && block(&map, &format!("src/{name}")).is_none() {
                missing.push(format!("src/{name}"));
            }
        }
        assert!(missing.is_empty(), "not in ARCHITECTURE.md: {missing:?}");
        for line in map.lines().filter(|line| line.starts_with("src/")) {
            let named = line.split_whitespace().next().unwrap();
            assert!(
                root.join(named).exists(),
                "ARCHITECTURE.md names {named}, which does not exist"
            );
        }
    }
}
