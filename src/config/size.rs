//! Human-readable sizes and durations as the configuration file writes them, and their
//! serde readers: [`ByteSize`], [`Limit`] and [`deserialize_duration`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Parses a size such as `"64MiB"`, `"1.5GiB"`, `"500KB"` or `"1024"` (bytes).
///
/// Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal units (KB, MB, GB, TB)
/// powers of 1000; a bare number or `B` is bytes. Case of the unit does not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "is not a size: write it like \"64MiB\" or \"1GiB\"".to_string())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(
                "has a unit that is not one of B, KiB, MiB, GiB (or KB, MB, GB)".to_string(),
            )
        }
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err("is out of range".to_string());
    }
    Ok(bytes.round() as u64)
}

/// Formats a byte count the way `parse_size` reads it back, in the largest exact binary unit.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Parses a duration such as `"90s"`, `"5m"`, `"2h"`, `"250ms"` or `"1h 30m"`; a bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|_| "is not a duration: write it like \"90s\", \"5m\" or \"2h\"".to_string())
}

/// Formats a duration the way `parse_duration` reads it back.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A size in bytes as the file writes it: `"64MiB"`, `"1GiB"`, or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        deserializer.deserialize_any(SizeVisitor).map(ByteSize)
    }
}

/// Reads a size field into plain bytes (`#[serde(deserialize_with = "...")]`).
pub fn deserialize_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    ByteSize::deserialize(deserializer).map(|size| size.0)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size like \"64MiB\" or \"1GiB\"")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<u64, E> {
        Ok(bytes)
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<u64, E> {
        u64::try_from(bytes)
            .map_err(|_| E::custom(format!("{bytes} is not a size: write it like \"64MiB\"")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        parse_size(text).map_err(E::custom)
    }
}

/// A size that is either given or left to the agent to choose from the machine (`"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Chosen at start from the machine's memory or disk.
    Auto,
    /// This many bytes.
    Bytes(u64),
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Limit, D::Error> {
        deserializer.deserialize_any(LimitVisitor)
    }
}

struct LimitVisitor;

impl Visitor<'_> for LimitVisitor {
    type Value = Limit;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\" or a size like \"512MiB\"")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<Limit, E> {
        Ok(Limit::Bytes(bytes))
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<Limit, E> {
        SizeVisitor.visit_i64(bytes).map(Limit::Bytes)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Limit, E> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(Limit::Auto);
        }
        parse_size(text)
            .map(Limit::Bytes)
            .map_err(|problem| E::custom(format!("{problem}, or \"auto\"")))
    }
}

/// Reads a duration field: a string such as `"90s"` (see [`parse_duration`]) or a plain
/// integer of seconds.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration like \"90s\", \"5m\" or \"2h\"")
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| {
                E::custom(format!(
                    "{seconds} is not a duration: write it like \"90s\", \"5m\" or \"2h\""
                ))
            })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size(" 7 B "), Ok(7));
        assert!(parse_size("64 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1MiB").is_err());
    }

    #[test]
    fn sizes_round_trip() {
        for bytes in [0, 1, 1000, 1024, 64 << 20, 3 << 30, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        let d = Duration::from_millis(90_500);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
