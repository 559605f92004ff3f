//! Entra's refusals of a token request: the JSON error document with its `AADSTS` code.

use std::time::SystemTime;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::server::{json_response, random_hex, Body};

/// An answer of Entra refusing a token request.
#[derive(Debug)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl Refusal {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        message: String,
    ) -> Refusal {
        Refusal {
            status,
            error,
            code,
            message,
        }
    }

    pub(super) fn missing(param: &str) -> Refusal {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    pub(super) fn tenant_not_found(tenant: &str) -> Refusal {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
        )
    }

    pub(super) fn invalid_jwt(why: &str) -> Refusal {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            format!("JWT token is invalid or malformed: {why}"),
        )
    }

    pub(super) fn bad_signature(reason: &str, thumbprint: &str, client_id: &str) -> Refusal {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!("Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"),
        )
    }

    /// Entra's error document.
    pub(super) fn response(&self) -> Response<Body> {
        let now = SystemTime::now();
        let timestamp = crate::sas::iso8601(now).replace('T', " ");
        let trace_id = uuid_like();
        let correlation_id = uuid_like();
        json_response(
            self.status,
            json!({
                "error": self.error,
                "error_description": format!(
                    "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                    self.code, self.message
                ),
                "error_codes": [self.code],
                "timestamp": timestamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
            }),
        )
    }
}

fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
