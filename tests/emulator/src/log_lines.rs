//! What MCAS's parsers make of an uploaded line: the parser is the one the upload's
//! `source` (upload_url's query parameter) names. A line it cannot read is not refused
//! by the API: MCAS's governance log reports the file with "The log format doesn't
//! match". An event older than 90 days is ignored.
//!
//! The NSS feed writes, per line (tabs shown as `\t`):
//! `Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\tsrc=...`
//! a syslog-style prefix (the event's time, time zone, year, the sender and a colon),
//! then the LEEF header (`LEEF:1.0|vendor|product|version|event id|`), then
//! tab-separated `key=value` pairs.
//!
//! Which prefix each parser wants:
//! - the `*_SYSLOG` variants (143, 171, 197) need the prefix before the header;
//! - `ZSCALER_QRADAR` and `ZSCALER_CEF` take the header at the start of the line, or
//!   after such a prefix: the NSS feed itself sends the prefix, and the data source of
//!   log type 170 that Microsoft's Zscaler integration page has the administrator make
//!   receives exactly that feed, so its parser must read it;
//! - `ZSCALER` (120, CSV) takes the NSS CSV output at the start of the line.
//!
//! The event time is read from the prefix (UTC or GMT); MCAS's pages do not say that it
//! reads LEEF's `devTime`, so a line without a prefix has no known time and is not
//! counted as too old.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::sas::civil_from_days;

/// MCAS ignores events older than this.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// Which parser a log format name selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// `ZSCALER` (120) and `ZSCALER_SYSLOG` (143): the NSS CSV output.
    Csv { syslog: bool },
    /// `ZSCALER_QRADAR` (170) and `ZSCALER_QRADAR_SYSLOG` (171): QRadar LEEF.
    Leef { syslog: bool },
    /// `ZSCALER_CEF` (196) and `ZSCALER_CEF_SYSLOG` (197): ArcSight CEF.
    Cef { syslog: bool },
}

impl Parser {
    /// The parser of a log format name; `None` for a name MCAS does not know.
    pub fn of(source: &str) -> Option<Parser> {
        match source {
            "ZSCALER" => Some(Parser::Csv { syslog: false }),
            "ZSCALER_SYSLOG" => Some(Parser::Csv { syslog: true }),
            "ZSCALER_QRADAR" => Some(Parser::Leef { syslog: false }),
            "ZSCALER_QRADAR_SYSLOG" => Some(Parser::Leef { syslog: true }),
            "ZSCALER_CEF" => Some(Parser::Cef { syslog: false }),
            "ZSCALER_CEF_SYSLOG" => Some(Parser::Cef { syslog: true }),
            _ => None,
        }
    }

    /// What the parser makes of one line (without its `\n`).
    pub fn read(self, line: &[u8]) -> Line {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (time, rest) = match syslog_prefix(line) {
            Some((time, rest)) => (time, rest),
            None => (None, line),
        };
        let prefixed = rest.len() != line.len();
        let parsed = match self {
            Parser::Csv { syslog } => (prefixed || !syslog) && csv(rest),
            Parser::Leef { syslog } => (prefixed || !syslog) && leef(rest),
            Parser::Cef { syslog } => (prefixed || !syslog) && cef(rest),
        };
        if !parsed {
            return Line::Unparsed;
        }
        Line::Parsed { time }
    }
}

/// One line as a parser read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Read; the event's time when the line says it.
    Parsed { time: Option<SystemTime> },
    /// "The log format doesn't match".
    Unparsed,
}

/// What a parser made of the lines of one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LineCounts {
    /// Non-empty lines.
    pub lines: u64,
    /// Lines the parser could not read.
    pub unparsed: u64,
    /// Lines read whose event is older than 90 days at ingestion: ignored.
    pub ignored_old: u64,
}

impl LineCounts {
    /// Counts `line` as `parser` reads it at `now`.
    pub fn add(&mut self, parser: Option<Parser>, line: &[u8], now: SystemTime) {
        self.lines += 1;
        let Some(parser) = parser else {
            self.unparsed += 1;
            return;
        };
        match parser.read(line) {
            Line::Unparsed => self.unparsed += 1,
            Line::Parsed { time: Some(at) } if at + MAX_EVENT_AGE < now => self.ignored_old += 1,
            Line::Parsed { .. } => {}
        }
    }

    /// Lines that became data: read, and recent enough.
    pub fn ingested(&self) -> u64 {
        self.lines - self.unparsed - self.ignored_old
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &LineCounts) {
        self.lines += other.lines;
        self.unparsed += other.unparsed;
        self.ignored_old += other.ignored_old;
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The NSS feed's time as its prefix writes it, in UTC: `Mon Oct 02 16:21:40 UTC 2017`.
pub fn nss_time(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// The prefix `Www Mmm DD HH:MM:SS TZ YYYY sender: ` at the start of `line`: the event's
/// time (when TZ is UTC or GMT) and the rest of the line.
fn syslog_prefix(line: &[u8]) -> Option<(Option<SystemTime>, &[u8])> {
    let mut fields = line.splitn(8, |&b| b == b' ');
    let weekday = fields.next()?;
    let month = fields.next()?;
    let day = fields.next()?;
    let clock = fields.next()?;
    let zone = fields.next()?;
    let year = fields.next()?;
    let sender = fields.next()?;
    let rest = fields.next()?;
    if !DAYS.iter().any(|d| d.as_bytes() == weekday)
        || sender.len() < 2
        || !sender.ends_with(b":")
        || zone.is_empty()
        || !zone.iter().all(u8::is_ascii_alphabetic)
    {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == month)? as u32 + 1;
    let day = number(day, 2)?;
    let year = number(year, 4)?;
    if !(1..=31).contains(&day) || clock.len() != 8 || clock[2] != b':' || clock[5] != b':' {
        return None;
    }
    let (hh, mm, ss) = (
        number(&clock[0..2], 2)?,
        number(&clock[3..5], 2)?,
        number(&clock[6..8], 2)?,
    );
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let time = match zone {
        b"UTC" | b"GMT" => {
            let days = days_from_civil(year as i64, month, day);
            let secs = days * 86400 + i64::from(hh * 3600 + mm * 60 + ss);
            u64::try_from(secs)
                .ok()
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        }
        _ => None,
    };
    Some((time, rest))
}

/// `digits` ASCII digits exactly.
fn number(text: &[u8], digits: usize) -> Option<u32> {
    if text.len() != digits || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `LEEF:1.0|Zscaler|NSS|<version>|<event id>|` then tab-separated `key=value` pairs.
fn leef(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"LEEF:1.0|Zscaler|NSS|") else {
        return false;
    };
    let mut parts = rest.splitn(3, |&b| b == b'|');
    let (Some(version), Some(event), Some(attributes)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !version.is_empty()
        && !event.is_empty()
        && !attributes.is_empty()
        && attributes.split(|&b| b == b'\t').all(|pair| {
            pair.iter()
                .position(|&b| b == b'=')
                .is_some_and(|at| at > 0)
        })
}

/// `CEF:0|Zscaler|NSSWeblog|<version>|<signature id>|<name>|<severity>|<extension>`, the
/// extension space-separated `key=value` pairs (empty allowed).
fn cef(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"CEF:0|Zscaler|NSSWeblog|") else {
        return false;
    };
    let parts: Vec<&[u8]> = rest.splitn(5, |&b| b == b'|').collect();
    let [version, signature, name, severity, extension] = parts[..] else {
        return false;
    };
    !version.is_empty()
        && !signature.is_empty()
        && !name.is_empty()
        && !severity.is_empty()
        && (extension.is_empty()
            || extension
                .iter()
                .position(|&b| b == b'=')
                .is_some_and(|at| at > 0))
}

/// The NSS CSV output: the documentation says only "CSV"; the NSS's CSV samples quote
/// every field (`"Mon Jun 20 15:29:11 2022","new-gre","HTTP",...`). So: a quoted first
/// field, at least two fields separated by commas, every quote closed.
fn csv(line: &[u8]) -> bool {
    if line.first() != Some(&b'"') {
        return false;
    }
    let mut fields = 1;
    let mut quoted = false;
    let mut i = 0;
    while i < line.len() {
        match (line[i], quoted) {
            (b'"', true) if line.get(i + 1) == Some(&b'"') => i += 1,
            (b'"', _) => quoted = !quoted,
            (b',', false) => fields += 1,
            _ => {}
        }
        i += 1;
    }
    !quoted && fields >= 2
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published NSS sample line (`mcas-api.md`), tabs as tabs.
    const SAMPLE: &[u8] = b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\tsrc=185.27.134.11\turl=www.example.com/\trecordid=69790990\tdstBytes=596219";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_published_time_reads_and_writes_back() {
        assert_eq!(nss_time(at(1_506_961_300)), "Mon Oct 02 16:21:40 UTC 2017");
        assert_eq!(nss_time(at(0)), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(nss_time(at(1_709_164_800)), "Thu Feb 29 00:00:00 UTC 2024");
        let (time, rest) = syslog_prefix(SAMPLE).unwrap();
        assert_eq!(time, Some(at(1_506_961_300)));
        assert!(rest.starts_with(b"LEEF:1.0|"));
        for secs in [0, 951_782_400, 1_506_961_300, 1_796_212_738, 4_102_444_799] {
            let text = format!("{} zscaler-nss: x", nss_time(at(secs)));
            assert_eq!(syslog_prefix(text.as_bytes()).unwrap().0, Some(at(secs)));
        }
    }

    #[test]
    fn leef_lines_with_and_without_the_prefix() {
        let qradar = Parser::of("ZSCALER_QRADAR").unwrap();
        let syslog = Parser::of("ZSCALER_QRADAR_SYSLOG").unwrap();
        let bare = &SAMPLE[b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: ".len()..];
        assert!(matches!(
            qradar.read(SAMPLE),
            Line::Parsed { time: Some(_) }
        ));
        assert!(matches!(
            syslog.read(SAMPLE),
            Line::Parsed { time: Some(_) }
        ));
        assert_eq!(qradar.read(bare), Line::Parsed { time: None });
        assert_eq!(syslog.read(bare), Line::Unparsed, "the prefix is required");
        for bad in [
            &b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA"[..],
            b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:2.0|Zscaler|NSS|4.1|NA|cat=x",
            b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=x\tsrc",
            b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=x\t=y",
            b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss LEEF:1.0|Zscaler|NSS|4.1|NA|cat=x",
            b"Mon Oct 2 16:21:40 UTC 2017 zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=x",
            b"cat=Blocked\tsrc=185.27.134.11",
            b"\xff\xfe",
        ] {
            assert_eq!(
                qradar.read(bad),
                Line::Unparsed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cef_and_csv() {
        let cef = Parser::of("ZSCALER_CEF_SYSLOG").unwrap();
        let line = b"Mon Oct 02 16:21:40 UTC 2017 zscaler-nss: CEF:0|Zscaler|NSSWeblog|5.0|Allowed|Allowed|3|act=Allowed src=10.0.0.1";
        assert!(matches!(cef.read(line), Line::Parsed { .. }));
        assert_eq!(cef.read(SAMPLE), Line::Unparsed);
        let csv = Parser::of("ZSCALER").unwrap();
        assert!(matches!(
            csv.read(br#""Mon Jun 20 15:29:11 2022","new-gre","HTTP","ebay.com/","Blocked""#),
            Line::Parsed { time: None }
        ));
        assert_eq!(
            csv.read(br#""Mon Jun 20 15:29:11 2022,"new-gre""#),
            Line::Unparsed
        );
        assert_eq!(csv.read(SAMPLE), Line::Unparsed);
        assert_eq!(Parser::of("LEEF"), None);
    }

    #[test]
    fn old_events_are_ignored() {
        let qradar = Parser::of("ZSCALER_QRADAR");
        let now = at(1_506_961_300) + MAX_EVENT_AGE + Duration::from_secs(1);
        let mut counts = LineCounts::default();
        counts.add(qradar, SAMPLE, now);
        counts.add(qradar, SAMPLE, now - Duration::from_secs(2));
        counts.add(qradar, b"junk", now);
        assert_eq!(
            counts,
            LineCounts {
                lines: 3,
                unparsed: 1,
                ignored_old: 1
            }
        );
        assert_eq!(counts.ingested(), 1);
    }
}
