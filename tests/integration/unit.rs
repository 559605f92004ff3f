//! The systemd unit: valid, and hardened to an exposure of 1.5 or less (systemd's tools
//! work offline, without systemd running).

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/nss-agent.service");

#[test]
fn the_unit_verifies_with_this_binary() {
    let dir = tempfile::tempdir().unwrap();
    // The packaged unit names /usr/bin/nss and the man page, which the package installs.
    let text = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace(
            "ExecStart=/usr/bin/nss run",
            &format!("ExecStart={} run", env!("CARGO_BIN_EXE_nss")),
        )
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .collect::<Vec<_>>()
        .join("\n");
    let unit = dir.path().join("nss-agent.service");
    std::fs::write(&unit, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_1_5() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=15"])
        .arg(UNIT)
        .output()
        .expect("systemd-analyze runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let level = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_string();
    eprintln!("{level}");
    assert!(level.contains("OK"), "{level}");
}
