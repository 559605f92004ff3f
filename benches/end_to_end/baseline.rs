//! The version before the batch-sizing rule, built once for the bench: the first parent of
//! the merge that brought the rule in, from `git archive` into `target/bench-baseline/`
//! (a copy of the tree at that commit, not part of this one), with its own target directory
//! so that this tree's release binary is left alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The subject of the merge that brought the batch-sizing rule in.
const SIZING_MERGE: &str =
    "Merge delivery that keeps up with the feed inside MCAS's 30 calls a minute";

/// The baseline's `nss` binary and the commit it was built from.
pub struct Baseline {
    pub binary: PathBuf,
    /// Short hash and subject.
    pub commit: String,
}

/// The baseline's binary under `target` (built if missing); `None` when
/// `NSS_BENCH_BASELINE=0`. `NSS_BENCH_BASELINE` may name another commit.
pub fn binary(target: &Path) -> Result<Option<Baseline>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rev = match std::env::var("NSS_BENCH_BASELINE").ok().as_deref() {
        Some("0") => return Ok(None),
        Some(rev) => rev.to_string(),
        None => format!("{}^1", sizing_merge(repo)?),
    };
    let hash = git(
        repo,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )?;
    let commit = git(repo, &["log", "-1", "--format=%h %s", &hash])?;
    let dir = target.join("bench-baseline");
    let tree = dir.join(&hash);
    let binary = dir.join("target/release/nss");
    let built = dir.join("built");
    if fs::read_to_string(&built).ok().as_deref() == Some(hash.as_str()) && binary.exists() {
        return Ok(Some(Baseline { binary, commit }));
    }
    eprintln!(
        "building the baseline {commit} (once) in {}...",
        dir.display()
    );
    if !tree.join("Cargo.toml").exists() {
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(&tree)?;
        let archive = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["archive", "--format=tar", &hash])
            .stdout(Stdio::piped())
            .spawn()
            .context("running git archive")?;
        let untar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&tree)
            .stdin(archive.stdout.context("git archive's output")?)
            .status()
            .context("running tar")?;
        if !untar.success() {
            bail!("unpacking {hash} into {} failed", tree.display());
        }
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(&tree)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "nss",
            "--target-dir",
        ])
        .arg(dir.join("target"))
        .status()
        .context("running cargo build for the baseline")?;
    if !status.success() || !binary.exists() {
        bail!("building the baseline {commit} failed (NSS_BENCH_BASELINE=0 leaves it out)");
    }
    fs::write(&built, &hash)?;
    Ok(Some(Baseline { binary, commit }))
}

/// The merge that brought the batch-sizing rule in, found by its subject.
fn sizing_merge(repo: &Path) -> Result<String> {
    let merges = git(repo, &["log", "--merges", "--format=%H %s", "HEAD"])?;
    merges
        .lines()
        .find_map(|l| {
            let (hash, subject) = l.split_once(' ')?;
            subject.starts_with(SIZING_MERGE).then(|| hash.to_string())
        })
        .with_context(|| {
            format!("no merge \"{SIZING_MERGE}\" in the history; set NSS_BENCH_BASELINE to a commit, or 0")
        })
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
