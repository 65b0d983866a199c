//! Stripe's error envelope, `{"error":{"code","doc_url","message","param","type"}}`, and the
//! JSON responses every handler sends.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::catalogue::Kind;

/// A Stripe error response: `{"error":{"code","doc_url","message","param","type"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
}

impl StripeError {
    pub(super) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: Some(param.into()),
            message: message.into(),
        }
    }

    pub(super) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(super) fn unknown_param(param: &str) -> Self {
        Self::invalid(param, format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
    }

    pub(super) fn missing_param(param: &str) -> Self {
        Self::invalid(param, format!("Missing required param: {param}."))
            .with_code("parameter_missing")
    }

    /// `No such customer: 'cus_x'`; 404 for the object named in the URL, 400 for a parameter.
    pub(super) fn no_such(kind: Kind, id: &str, param: &str) -> Self {
        let status = if param == "id" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::missing(status, kind, id, param)
    }

    /// `No such customer: 'cus_x'` for the parent named in a nested list's URL: 404.
    pub(super) fn no_such_parent(kind: Kind, id: &str, param: &str) -> Self {
        Self::missing(StatusCode::NOT_FOUND, kind, id, param)
    }

    fn missing(status: StatusCode, kind: Kind, id: &str, param: &str) -> Self {
        Self {
            status,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            param: Some(param.to_owned()),
            message: format!("No such {}: '{id}'", kind.object().replace('_', "")),
        }
    }

    /// A restricted key without the permission an endpoint needs: 403, in Stripe's words
    /// (`The provided key 'rk_test_***abc123' does not have the required permissions for this
    /// endpoint on account 'acct_1'. Having the 'rak_event_read' permission would allow this
    /// request to continue.`).
    pub(super) fn permission(masked_key: &str, account: &str, permission: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: format!(
                "The provided key '{masked_key}' does not have the required permissions for this endpoint on account '{account}'. Having the '{permission}' permission would allow this request to continue."
            ),
        }
    }

    fn body(&self) -> Value {
        let mut e = Map::new();
        if let Some(code) = self.code {
            e.insert("code".into(), code.into());
            e.insert(
                "doc_url".into(),
                format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )
                .into(),
            );
        }
        e.insert("message".into(), self.message.clone().into());
        if let Some(p) = &self.param {
            e.insert("param".into(), p.clone().into());
        }
        e.insert("type".into(), self.kind.into());
        json!({ "error": e })
    }
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for StripeError {}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, self.body().to_string());
        if self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("stripe-should-retry", HeaderValue::from_static("true"));
        }
        r
    }
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(super) fn ok_json(body: String) -> Response {
    json_response(StatusCode::OK, body)
}
