//! The log format (`source` of upload_url), i.e. the parser MCAS applies to the files.
//! With `mcas.source = "auto"` it is the log type of the data source as MCAS lists it
//! (chosen by the administrator when the data source was created, and what MCAS parses
//! it with), `ZSCALER_QRADAR` while the list cannot be read. The data sources watcher
//! decides; the uploader waits for the first decision before its first upload_url.

use std::fmt;

use tokio::sync::watch;

use super::client::DataSource;
use super::data_source::log_type_name;

/// `mcas.source = "auto"`.
pub const AUTO: &str = "auto";

/// The format used with `auto` when the data sources list cannot be read, or does not
/// list the data source with a Zscaler log type: the NSS MCAS feed's QRadar LEEF.
pub const FALLBACK: &str = "ZSCALER_QRADAR";

/// The names Microsoft's upload_url page lists today (ZSCALER_QRADAR and ZSCALER_CEF were
/// taken off it in December 2021).
pub const DOCUMENTED: [&str; 4] = [
    "ZSCALER",
    "ZSCALER_SYSLOG",
    "ZSCALER_QRADAR_SYSLOG",
    "ZSCALER_CEF_SYSLOG",
];

/// Why this log format is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `mcas.source` names it.
    Configured,
    /// `auto`: the log type of the data source as MCAS lists it.
    DataSource { data_source: String, log_type: u32 },
    /// `auto`, but the data source's log type is not known: the reason.
    Fallback(String),
}

/// The log format used for uploads, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The name given to upload_url.
    pub name: String,
    pub why: Why,
}

impl Choice {
    /// A log format named in `mcas.source`.
    pub fn configured(name: &str) -> Choice {
        Choice {
            name: name.to_string(),
            why: Why::Configured,
        }
    }

    /// With `auto`: the format of `found` (the data source as MCAS lists it), or the
    /// fallback and why.
    pub fn auto(found: Result<&DataSource, String>) -> Choice {
        let fallback = |reason: String| Choice {
            name: FALLBACK.to_string(),
            why: Why::Fallback(reason),
        };
        match found {
            Ok(source) => match log_type_name(source.log_type) {
                Some(name) => Choice {
                    name: name.to_string(),
                    why: Why::DataSource {
                        data_source: source.display_name.clone(),
                        log_type: source.log_type,
                    },
                },
                None => fallback(format!(
                    "the data source \"{}\" has log type {}, none of Zscaler's",
                    source.display_name, source.log_type
                )),
            },
            Err(reason) => fallback(reason),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Configured => write!(f, "set in mcas.source"),
            Why::DataSource {
                data_source,
                log_type,
            } => write!(
                f,
                "auto: the log type ({log_type}) of the data source \"{data_source}\" as MCAS lists it"
            ),
            Why::Fallback(reason) => write!(f, "auto, the default for the NSS feed: {reason}"),
        }
    }
}

/// What upload_url's refusal of `name` should tell the administrator.
pub fn refused_fix(name: &str) -> String {
    format!(
        "MCAS does not take the log format \"{name}\": the names MCAS documents for upload_url are {}; set mcas.source to the one of the data source's log type, or to \"auto\" (the data source's own log type)",
        DOCUMENTED.join(", ")
    )
}

/// The decided log format, shared by the data sources watcher and the uploader.
#[derive(Debug, Clone)]
pub struct Chosen(watch::Receiver<Option<Choice>>);

/// Where the watcher puts its decisions.
pub type Chooser = watch::Sender<Option<Choice>>;

impl Chosen {
    /// For `mcas.source`: decided now unless it is `auto` (then the returned sender
    /// decides).
    pub fn new(setting: &str) -> (Chooser, Chosen) {
        let first = (setting != AUTO).then(|| Choice::configured(setting));
        let (tx, rx) = watch::channel(first);
        (tx, Chosen(rx))
    }

    /// The current choice, once there is one; the fallback if the watcher is gone.
    pub async fn get(&self) -> Choice {
        let mut rx = self.0.clone();
        let decided = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|c| c.clone());
        decided.unwrap_or_else(|| Choice::auto(Err("the data sources list was not read".into())))
    }

    /// The current choice, if there is one yet.
    pub fn now(&self) -> Option<Choice> {
        self.0.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(log_type: u32) -> DataSource {
        DataSource {
            display_name: "NSS".into(),
            log_type,
            last_data_received: None,
        }
    }

    #[test]
    fn auto_takes_the_data_sources_log_type() {
        let chosen = Choice::auto(Ok(&source(171)));
        assert_eq!(chosen.name, "ZSCALER_QRADAR_SYSLOG");
        assert!(chosen.why.to_string().contains("(171)"));
        let odd = Choice::auto(Ok(&source(5)));
        assert_eq!(odd.name, FALLBACK);
        assert!(odd.why.to_string().contains("none of Zscaler's"));
        assert_eq!(Choice::auto(Err("x".into())).name, FALLBACK);
    }

    #[tokio::test]
    async fn configured_is_decided_at_once_auto_by_the_watcher() {
        let (_tx, fixed) = Chosen::new("ZSCALER_CEF");
        assert_eq!(fixed.get().await, Choice::configured("ZSCALER_CEF"));
        let (tx, auto) = Chosen::new(AUTO);
        assert_eq!(auto.now(), None);
        tx.send_replace(Some(Choice::auto(Ok(&source(143)))));
        assert_eq!(auto.get().await.name, "ZSCALER_SYSLOG");
        drop(tx);
        assert_eq!(auto.get().await.name, "ZSCALER_SYSLOG");
    }

    #[test]
    fn a_refusal_names_the_documented_formats() {
        let fix = refused_fix("ZSCALER_QRADAR");
        assert!(
            fix.contains("ZSCALER_QRADAR_SYSLOG") && fix.contains("auto"),
            "{fix}"
        );
    }
}
