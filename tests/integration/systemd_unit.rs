//! The systemd unit: valid, and hardened to an exposure of 1.1 or less (systemd's tools
//! work offline, without systemd running).

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/nss-agent.service");

#[test]
fn the_unit_verifies_with_this_binary() {
    let dir = tempfile::tempdir().unwrap();
    // The packaged unit names /usr/bin/nss (ExecStart=, ExecReload=) and the man page,
    // which the package installs.
    let text = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace(
            "=/usr/bin/nss ",
            &format!("={} ", env!("CARGO_BIN_EXE_nss")),
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
fn the_unit_is_hardened_to_an_exposure_of_at_most_1_1() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=11"])
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

/// The unit lets the daemon bind the default feed and metrics ports and nothing else, and
/// caps its memory above the largest budget `memory.limit = "auto"` picks (1 GiB).
#[test]
fn the_unit_allows_binding_only_the_default_ports_and_caps_memory() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    let settings = nss_agent::config::Settings::default();
    let mut expected: Vec<String> = [settings.feed.listen, settings.metrics.listen]
        .iter()
        .flatten()
        .map(|addr| format!("tcp:{}", addr.port()))
        .collect();
    expected.sort();
    let mut allowed = values("SocketBindAllow");
    allowed.sort();
    assert_eq!(allowed, expected);
    assert_eq!(values("SocketBindDeny"), ["any"]);
    let bytes = |v: &str| -> u64 {
        let (n, unit) = v.split_at(v.len() - 1);
        n.parse::<u64>().unwrap()
            << match unit {
                "M" => 20,
                "G" => 30,
                _ => panic!("{v}"),
            }
    };
    let high = bytes(&values("MemoryHigh")[0]);
    let max = bytes(&values("MemoryMax")[0]);
    assert!(
        high > 1 << 30 && max > high,
        "MemoryHigh {high}, MemoryMax {max}"
    );
    let weight: u32 = values("CPUWeight")[0].parse().unwrap();
    assert!(
        weight < 100,
        "CPUWeight {weight} is not below the default of 100"
    );
}
