//! The tenant's data sources: `GET /api/discovery/streams/` (the portal's "Data sources"
//! tab, needs `Discovery.read`), the names done_upload's `inputStreamName` must be one
//! of, and the log format names upload_url's `source` must be one of.

use std::time::SystemTime;

use anyhow::{anyhow, Result};
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::server::{json_response, random_hex, Body, Shared};
use crate::Emulator;

/// The log format names MCAS knows for Zscaler, with their log type numbers: the
/// documented ones and the older ones the appliance sends.
pub const LOG_TYPES: [(&str, u32); 6] = [
    ("ZSCALER", 120),
    ("ZSCALER_SYSLOG", 143),
    ("ZSCALER_QRADAR", 170),
    ("ZSCALER_QRADAR_SYSLOG", 171),
    ("ZSCALER_CEF", 196),
    ("ZSCALER_CEF_SYSLOG", 197),
];

/// The log type number of a log format name, if MCAS knows the name.
pub fn log_type_number(name: &str) -> Option<u32> {
    LOG_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, number)| number)
}

/// A data source as configured in the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSource {
    /// Its name, what done_upload's `inputStreamName` gives.
    pub display_name: String,
    /// Its log type number (170: Zscaler QRadar LEEF).
    pub log_type: u32,
}

impl DataSource {
    /// A data source named `display_name` of log type `log_type`.
    pub fn new(display_name: &str, log_type: u32) -> DataSource {
        DataSource {
            display_name: display_name.to_string(),
            log_type,
        }
    }

    /// The default: `NSS`, Zscaler QRadar LEEF (170).
    pub fn nss() -> DataSource {
        DataSource::new("NSS", 170)
    }
}

/// A data source as the streams list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// MCAS's id of the data source.
    pub id: String,
    /// Its name and log type.
    pub source: DataSource,
    /// When it was created.
    pub created: SystemTime,
    /// When done_upload last ingested a file for it.
    pub last_data_received: Option<SystemTime>,
}

/// `2020-12-18T06:33:32.908Z`: how the streams list writes dates.
fn iso(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

impl Stream {
    /// As MCAS lists a data source: `streamType` 1, dates as ISO-8601 strings,
    /// `lastDataReceived` absent before the first data.
    fn to_json(&self) -> Value {
        let mut v = json!({
            "_id": self.id,
            "displayName": self.source.display_name,
            "logType": self.source.log_type,
            "receiverType": "syslog",
            "streamType": 1,
            "created": iso(self.created),
            "lastModified": iso(self.created),
        });
        if let Some(at) = self.last_data_received {
            v["lastDataReceived"] = json!(iso(at));
        }
        v
    }
}

/// The reports the list holds beside the data sources, as a real tenant's does: the
/// "Global View" (no `logType`) and a logical report; clients must skip them.
fn other_reports() -> [Value; 2] {
    [
        json!({"_id": "5f0c0000000000000000aa01", "displayName": "Global View",
               "streamType": 0, "created": "2020-12-18T06:30:01.227Z"}),
        json!({"_id": "5f0c0000000000000000aa02", "displayName": "Zscaler logical",
               "streamType": 2, "logType": 170, "created": "2020-12-18T06:30:01.227Z",
               "lastDataReceived": "2020-12-18T06:33:32.908Z"}),
    ]
}

/// The tenant's data sources.
#[derive(Debug, Default)]
pub(crate) struct Streams(Vec<Stream>);

impl Streams {
    pub(crate) fn new(sources: Vec<DataSource>) -> Streams {
        let mut streams = Streams::default();
        for s in sources {
            streams.add(s);
        }
        streams
    }

    /// Adds a data source, or changes the log type of the one of that name.
    fn add(&mut self, source: DataSource) {
        match self
            .0
            .iter_mut()
            .find(|s| s.source.display_name == source.display_name)
        {
            Some(s) => s.source = source,
            None => self.0.push(Stream {
                id: random_hex(12),
                source,
                created: SystemTime::now(),
                last_data_received: None,
            }),
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|s| s.source.display_name != name);
        self.0.len() != before
    }

    /// Whether a data source of that exact name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.source.display_name == name)
    }

    /// Notes that data for `name` was ingested at `at`.
    pub(crate) fn received(&mut self, name: &str, at: SystemTime) {
        if let Some(s) = self.0.iter_mut().find(|s| s.source.display_name == name) {
            s.last_data_received = Some(at);
        }
    }

    fn to_json(&self) -> Value {
        let mut streams: Vec<Value> = self.0.iter().map(Stream::to_json).collect();
        // Reports that are not data sources come first, so that a client that fails on
        // one fails at once.
        streams.splice(0..0, other_reports());
        json!({ "streams": streams })
    }
}

impl Shared {
    /// `GET /api/discovery/streams/` (permissions already checked).
    pub(crate) fn streams(&self) -> Response<Body> {
        json_response(StatusCode::OK, self.state().streams.to_json())
    }
}

/// The control API under `/_emulator/streams`: `GET` (the list, without auth), `POST`
/// `{"displayName", "logType"}` (add), `DELETE /_emulator/streams/NAME`.
pub(crate) fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let name = path
        .trim_start_matches("/_emulator/streams")
        .trim_matches('/');
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let mut st = shared.state();
    let result: Result<Value> = match (method, name.is_empty()) {
        (&Method::GET, true) => Ok(st.streams.to_json()),
        (&Method::POST, true) => serde_json::from_slice::<DataSource>(body)
            .map_err(anyhow::Error::from)
            .map(|s| {
                let v = json!({ "added": s.display_name });
                st.streams.add(s);
                v
            }),
        (&Method::DELETE, false) => match st.streams.remove(&name) {
            true => Ok(json!({ "removed": name })),
            false => Err(anyhow!("no data source {name:?}")),
        },
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown control endpoint", "endpoints": [
                    "GET /_emulator/streams", "POST /_emulator/streams",
                    "DELETE /_emulator/streams/NAME"]}),
            )
        }
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("{e:#}") }),
        ),
    }
}

impl Emulator {
    /// The data sources, as the streams list shows them.
    pub fn data_sources(&self) -> Vec<Stream> {
        self.inner.state().streams.0.clone()
    }

    /// Adds a data source (or changes the log type of the one of that name).
    pub fn add_data_source(&self, source: DataSource) {
        self.inner.state().streams.add(source);
    }

    /// Removes the data source named `name`; false if there was none.
    pub fn remove_data_source(&self, name: &str) -> bool {
        self.inner.state().streams.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_types() {
        assert_eq!(log_type_number("ZSCALER_QRADAR"), Some(170));
        assert_eq!(log_type_number("ZSCALER_CEF"), Some(196));
        assert_eq!(log_type_number("zscaler_qradar"), None);
        assert_eq!(log_type_number("LEEF"), None);
    }

    #[test]
    fn add_replace_remove() {
        let mut s = Streams::new(vec![DataSource::nss()]);
        assert!(s.contains("NSS") && !s.contains("nss"));
        s.add(DataSource::new("NSS", 196));
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.0[0].source.log_type, 196);
        assert!(s.to_json()["streams"][2].get("lastDataReceived").is_none());
        s.received(
            "NSS",
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_608_273_212_908),
        );
        let nss = &s.to_json()["streams"][2];
        assert_eq!(nss["lastDataReceived"], json!("2020-12-18T06:33:32.908Z"));
        assert_eq!(nss["streamType"], json!(1));
        assert!(s.remove("NSS") && !s.remove("NSS"));
        assert_eq!(s.to_json()["streams"].as_array().unwrap().len(), 2);
    }
}
