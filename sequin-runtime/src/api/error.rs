//! API errors: decoding an API's error body with the spec's `errors`
//! section, and mapping it to a SQLSTATE.
//!
//! An [`ApiError`] carries everything the proxy needs for a native Postgres
//! ErrorResponse (SQLSTATE, message, code, field, HTTP status, request id) and
//! displays as `[<Display name>]: <the API's own message>`. It never carries a
//! URL, a header or a request body, which is where secrets live; the client
//! additionally scrubs known secrets from every string it puts in one.

use std::fmt;

use reqwest::header::HeaderMap;
use sequin_spec::model::ErrorDecoding;
use sequin_spec::record::get_path;
use serde_json::Value;

/// What went wrong, broadly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API answered with an error status.
    Http,
    /// The API kept answering "rate limited" until retries ran out.
    RateLimited,
    /// No response in time.
    Timeout,
    /// Connecting or transferring failed (refused, reset, TLS).
    Network,
    /// A response could not be read (truncated body, invalid JSON, records
    /// or cursor missing where the spec says they are).
    Decode,
    /// Obtaining an access token failed (OAuth2 token endpoint).
    Auth,
    /// The spec or the connection config cannot make this request (missing
    /// parameter or credential, unfillable template).
    Config,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Http => "http",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Decode => "decode",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
        })
    }
}

/// An error of an API call, ready to become a Postgres ErrorResponse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("[{api}]: {message}")]
pub struct ApiError {
    /// The connector's display name (`Salesforce`).
    pub api: String,
    /// What broadly went wrong (decides retries; the SQLSTATE is finer).
    pub kind: ErrorKind,
    /// The API's own message (or a description of the transport failure).
    pub message: String,
    /// Five-character SQLSTATE.
    pub sqlstate: String,
    /// HTTP status of the last response, when there was one.
    pub status: Option<u16>,
    /// The API's error code (`email_invalid`, `INVALID_EMAIL_ADDRESS`).
    pub code: Option<String>,
    /// API name of the offending field.
    pub field: Option<String>,
    /// Request/correlation id, for support.
    pub request_id: Option<String>,
    /// Attempts made (1 when the first failure was final).
    pub attempts: u32,
    /// For failed writes: whether the API may have applied the write anyway
    /// (the request was sent, and the answer was lost or garbled).
    pub maybe_applied: bool,
}

impl ApiError {
    /// An error without an HTTP response.
    pub fn new(api: &str, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        let sqlstate = match kind {
            ErrorKind::Http | ErrorKind::Decode | ErrorKind::Timeout | ErrorKind::Network => {
                "58030"
            }
            ErrorKind::RateLimited => "53400",
            ErrorKind::Auth => "42501",
            ErrorKind::Config => "22023",
        };
        ApiError {
            api: api.to_string(),
            kind,
            message: message.into(),
            sqlstate: sqlstate.to_string(),
            status: None,
            code: None,
            field: None,
            request_id: None,
            attempts: 1,
            maybe_applied: false,
        }
    }

    /// The DETAIL line: code, field, HTTP status and request id, where known.
    pub fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.code {
            parts.push(format!("API error code: {c}"));
        }
        if let Some(f) = &self.field {
            parts.push(format!("field: {f}"));
        }
        if let Some(s) = self.status {
            parts.push(format!("HTTP status: {s}"));
        }
        if let Some(r) = &self.request_id {
            parts.push(format!("request id: {r}"));
        }
        if self.attempts > 1 {
            parts.push(format!("attempts: {}", self.attempts));
        }
        parts.join(", ")
    }

    /// Whether the API limited the request rate.
    pub fn is_rate_limited(&self) -> bool {
        self.sqlstate == "53400" || self.status == Some(429)
    }

    /// Replaces every occurrence of each secret in the error's strings.
    pub(crate) fn scrub(mut self, secrets: &[String]) -> ApiError {
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            for text in [
                Some(&mut self.message),
                self.code.as_mut(),
                self.field.as_mut(),
                self.request_id.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if text.contains(s.as_str()) {
                    *text = text.replace(s.as_str(), "***");
                }
            }
        }
        self
    }
}

/// The default SQLSTATE of an HTTP status.
pub fn default_sqlstate(status: u16) -> &'static str {
    match status {
        401 | 403 => "42501",
        404 => "P0002",
        409 => "23505",
        429 => "53400",
        400..=499 => "23514",
        _ => "58030",
    }
}

fn text_at(body: &Value, path: &str) -> Option<String> {
    match get_path(body, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decodes an error response with the spec's `errors` section.
///
/// The code is the first non-empty value among `code` and `code_fallbacks`;
/// the SQLSTATE is the `codes` entry of the first candidate code that has
/// one, else the `status` entry, else [`default_sqlstate`]. A body that is
/// not JSON, or lacks the message, yields a message naming the status (and
/// the code when there is one), never the raw body.
pub fn decode_error(
    api: &str,
    spec: &ErrorDecoding,
    status: u16,
    headers: Option<&HeaderMap>,
    body: &[u8],
) -> ApiError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let json = json.as_ref();
    let at = |path: &Option<String>| -> Option<String> {
        let path = path.as_deref()?;
        text_at(json?, path)
    };
    let mut candidates: Vec<String> = Vec::new();
    if let Some(c) = at(&spec.code) {
        candidates.push(c);
    }
    for fb in &spec.code_fallbacks {
        if let Some(c) = json.and_then(|j| text_at(j, fb))
            && !candidates.contains(&c)
        {
            candidates.push(c);
        }
    }
    let code = candidates.first().cloned();
    let sqlstate = candidates
        .iter()
        .find_map(|c| spec.codes.get(c))
        .or_else(|| spec.status.get(&status))
        .cloned()
        .unwrap_or_else(|| default_sqlstate(status).to_string());
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    let message = json
        .and_then(|j| text_at(j, &spec.message))
        .unwrap_or_else(|| match &code {
            Some(c) => format!("{c} (HTTP {status} {reason})"),
            None => format!("HTTP {status} {reason}"),
        });
    let request_id = spec
        .request_id_header
        .as_deref()
        .and_then(|h| headers?.get(h)?.to_str().ok().map(str::to_string))
        .or_else(|| at(&spec.request_id));
    let kind = if sqlstate == "53400" || status == 429 {
        ErrorKind::RateLimited
    } else {
        ErrorKind::Http
    };
    ApiError {
        api: api.to_string(),
        kind,
        message,
        sqlstate,
        status: Some(status),
        code,
        field: at(&spec.field),
        request_id,
        attempts: 1,
        maybe_applied: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_support::connector;

    fn decode(name: &str, status: u16, headers: &[(&str, &str)], body: &str) -> ApiError {
        let c = connector(name);
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        decode_error(
            &c.display_name,
            &c.errors,
            status,
            Some(&h),
            body.as_bytes(),
        )
    }

    #[test]
    fn stripe_errors() {
        let e = decode(
            "stripe",
            400,
            &[("Request-Id", "req_abc123")],
            r#"{"error":{"code":"email_invalid","doc_url":"https://stripe.com/docs/error-codes/email-invalid","message":"Invalid email address: andrea__invalid","param":"email","request_log_url":"https://dashboard.stripe.com/test/logs/req_abc123","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "[Stripe]: Invalid email address: andrea__invalid"
        );
        assert_eq!(e.code.as_deref(), Some("email_invalid"));
        assert_eq!(e.field.as_deref(), Some("email"));
        assert_eq!(e.request_id.as_deref(), Some("req_abc123"));
        assert_eq!(e.sqlstate, "22023");
        assert_eq!(e.status, Some(400));
        assert_eq!(
            e.detail(),
            "API error code: email_invalid, field: email, HTTP status: 400, request id: req_abc123"
        );
        // A card error without a code falls back to its type.
        let card = decode(
            "stripe",
            402,
            &[],
            r#"{"error":{"message":"Your card was declined.","type":"card_error"}}"#,
        );
        assert_eq!(card.code.as_deref(), Some("card_error"));
        assert_eq!(card.sqlstate, "23514");
        // 409 is a concurrent idempotent request: the spec maps it to 40001.
        let conflict = decode(
            "stripe",
            409,
            &[],
            r#"{"error":{"message":"Keys for idempotent requests can only be used with the same parameters they were first used with.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(conflict.sqlstate, "40001");
        let missing = decode(
            "stripe",
            404,
            &[],
            r#"{"error":{"code":"resource_missing","message":"No such customer: 'cus_x'","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(missing.sqlstate, "P0002");
        let limited = decode(
            "stripe",
            429,
            &[],
            r#"{"error":{"code":"rate_limit","message":"Too many requests","type":"invalid_request_error"}}"#,
        );
        assert_eq!(limited.sqlstate, "53400");
        assert_eq!(limited.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn salesforce_error_arrays() {
        let e = decode(
            "salesforce",
            400,
            &[],
            r#"[{"message":"Email: invalid email address: andrea__invalid","errorCode":"INVALID_EMAIL_ADDRESS","fields":["Email"]}]"#,
        );
        assert_eq!(
            e.to_string(),
            "[Salesforce]: Email: invalid email address: andrea__invalid"
        );
        assert_eq!(e.code.as_deref(), Some("INVALID_EMAIL_ADDRESS"));
        assert_eq!(e.field.as_deref(), Some("Email"));
        assert_eq!(e.sqlstate, "22023");
        let session = decode(
            "salesforce",
            401,
            &[],
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(session.sqlstate, "42501");
        assert_eq!(session.field, None);
        let limit = decode(
            "salesforce",
            403,
            &[],
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(limit.sqlstate, "53400");
        assert_eq!(limit.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn hubspot_errors() {
        let e = decode(
            "hubspot",
            400,
            &[],
            r#"{"status":"error","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Email address andrea__invalid is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]","correlationId":"3b4a2e8c-5e91-4c0d-9a1e-000000000001","category":"VALIDATION_ERROR","errors":[{"message":"Email address andrea__invalid is invalid","code":"INVALID_EMAIL","in":"email"}]}"#,
        );
        assert!(
            e.to_string()
                .starts_with("[HubSpot]: Property values were not valid")
        );
        assert_eq!(e.code.as_deref(), Some("VALIDATION_ERROR"));
        assert_eq!(e.field.as_deref(), Some("email"));
        assert_eq!(
            e.request_id.as_deref(),
            Some("3b4a2e8c-5e91-4c0d-9a1e-000000000001")
        );
        assert_eq!(e.sqlstate, "23514");
        let nf = decode(
            "hubspot",
            404,
            &[],
            r#"{"status":"error","message":"Object not found.  objectId are usually numeric.","correlationId":"x","category":"OBJECT_NOT_FOUND"}"#,
        );
        assert_eq!(nf.sqlstate, "P0002");
    }

    #[test]
    fn airtable_errors_object_and_string_forms() {
        let e = decode(
            "airtable",
            422,
            &[],
            r#"{"error":{"type":"INVALID_VALUE_FOR_COLUMN","message":"Field \"Email\" cannot accept the provided value"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "[Airtable]: Field \"Email\" cannot accept the provided value"
        );
        assert_eq!(e.sqlstate, "22023");
        // Airtable's 404 is a bare string under `error`.
        let nf = decode("airtable", 404, &[], r#"{"error":"NOT_FOUND"}"#);
        assert_eq!(nf.code.as_deref(), Some("NOT_FOUND"));
        assert_eq!(nf.sqlstate, "P0002");
        assert_eq!(nf.to_string(), "[Airtable]: NOT_FOUND (HTTP 404 Not Found)");
        let limited = decode(
            "airtable",
            429,
            &[],
            r#"{"errors":[{"error":"RATE_LIMIT_REACHED","message":"Rate limit exceeded. Please try again later"}]}"#,
        );
        assert_eq!(limited.code.as_deref(), Some("RATE_LIMIT_REACHED"));
        assert_eq!(limited.sqlstate, "53400");
    }

    #[test]
    fn github_validation_failed() {
        let e = decode(
            "github",
            422,
            &[("X-GitHub-Request-Id", "CAFE:BEEF:1:2:3")],
            r#"{"message":"Validation Failed","errors":[{"resource":"Issue","code":"missing_field","field":"title"}],"documentation_url":"https://docs.github.com/rest/issues/issues#create-an-issue","status":"422"}"#,
        );
        assert_eq!(e.to_string(), "[GitHub]: Validation Failed");
        assert_eq!(e.code.as_deref(), Some("missing_field"));
        assert_eq!(e.field.as_deref(), Some("title"));
        assert_eq!(e.sqlstate, "23502");
        assert_eq!(e.request_id.as_deref(), Some("CAFE:BEEF:1:2:3"));
        let gone = decode(
            "github",
            410,
            &[],
            r#"{"message":"Issues are disabled for this repo"}"#,
        );
        assert_eq!(gone.sqlstate, "P0002");
    }

    #[test]
    fn default_sqlstates_and_unreadable_bodies() {
        for (status, state) in [
            (400, "23514"),
            (401, "42501"),
            (403, "42501"),
            (404, "P0002"),
            (409, "23505"),
            (422, "23514"),
            (429, "53400"),
            (500, "58030"),
            (503, "58030"),
        ] {
            assert_eq!(default_sqlstate(status), state, "{status}");
        }
        let spec = connector("stripe").errors;
        let e = decode_error("Stripe", &spec, 502, None, b"<html>Bad gateway</html>");
        assert_eq!(e.message, "HTTP 502 Bad Gateway");
        assert_eq!(e.sqlstate, "58030");
        assert_eq!(
            ApiError::new("X", ErrorKind::Timeout, "t").sqlstate,
            "58030"
        );
    }

    #[test]
    fn scrub_removes_secrets() {
        let mut e = ApiError::new("X", ErrorKind::Http, "bad key sk_live_123456 given");
        e.code = Some("sk_live_123456".into());
        let e = e.scrub(&["sk_live_123456".into()]);
        assert_eq!(e.message, "bad key *** given");
        assert_eq!(e.code.as_deref(), Some("***"));
    }
}
