//! The webhook sink: events POSTed to one URL, signed as Standard Webhooks
//! (<https://www.standardwebhooks.com>) prescribes.
//!
//! One event is sent as its [`Event::payload`] with `webhook-id` the
//! event's id; several (a batch) as one `sequin.batch` payload whose `data`
//! lists theirs, with `webhook-id` `evt_<first seq>-<last seq>`. Both ids
//! are stable across redeliveries, so a consumer dedupes on them.
//!
//! Each request carries `webhook-timestamp` (the attempt's time, unix
//! seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256>` of
//! `{id}.{timestamp}.{body}` once per configured secret, space-separated,
//! so a consumer keeps verifying while secrets rotate. A 2xx answer is a
//! delivery; anything else, a timeout or a transport error is a
//! [`SendError`] for the dispatcher to retry. Redirects are not followed
//! (the spec counts a 3xx as a failure: the URL should be updated).

use std::borrow::Borrow;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use sha2::Sha256;

use serde::Serialize;

use super::{Event, Payload, SendError};

/// The secrets' prefix (Standard Webhooks' serialization of a symmetric key).
const SECRET_PREFIX: &str = "whsec_";

/// The spec's bounds on a symmetric key: 24 bytes (192 bits) to 64 (512 bits).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// How much of a refusing response's body a [`SendError`] quotes.
const BODY_QUOTE_CHARS: usize = 200;

const AGENT: &str = concat!("Sequin/", env!("CARGO_PKG_VERSION"), " (webhooks)");

/// Why a webhook sink could not be built (configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "webhook url {url:?}: {reason} (fix: give an absolute http:// or https:// URL, e.g. https://example.com/hooks/sequin)"
    )]
    Url { url: String, reason: String },
    #[error(
        "webhook secret #{number}: {reason} (fix: give whsec_ followed by the base64 of 24 to 64 random bytes, e.g. whsec_$(openssl rand -base64 32))"
    )]
    Secret { number: usize, reason: String },
    #[error(
        "webhook: no secret (fix: give at least one whsec_<base64> secret; consumers verify every request with it)"
    )]
    NoSecret,
    #[error("webhook: cannot build the HTTP client: {0}")]
    Client(String),
}

/// A webhook endpoint and the keys its requests are signed with.
pub struct Webhook {
    url: Url,
    /// For errors: the URL without credentials or query (which may hold a
    /// token).
    shown_url: String,
    keys: Vec<Vec<u8>>,
    timeout: Duration,
    client: reqwest::Client,
}

/// One request's content: its `webhook-id` and body.
#[derive(Debug, PartialEq)]
struct Message {
    id: String,
    body: Vec<u8>,
}

impl Webhook {
    /// A sink POSTing to `url`, signing with each of `secrets`
    /// (`whsec_<base64>`; several while a key rotates), waiting at most
    /// `timeout` for each request.
    pub fn new(url: &str, secrets: &[String], timeout: Duration) -> Result<Webhook, WebhookError> {
        let parsed = parse_url(url)?;
        if secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                decode_secret(s).map_err(|reason| WebhookError::Secret {
                    number: i + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let mut shown = parsed.clone();
        shown.set_query(None);
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Ok(Webhook {
            url: parsed,
            shown_url: shown.to_string(),
            keys,
            timeout,
            client,
        })
    }

    /// Delivers `events` in one request (nothing to send: `Ok` without a
    /// request). `Ok` means the endpoint answered 2xx.
    pub async fn send<E: Borrow<Event>>(&self, events: &[E]) -> Result<(), SendError> {
        let Some(message) = Message::of(events, chrono::Utc::now()) else {
            return Ok(());
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signatures = self.signatures(&message, timestamp);
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(AGENT))
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(message.body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(SendError::new(format!(
            "webhook {} answered {status}: {}",
            self.shown_url,
            quote(&body)
        )))
    }

    /// The `webhook-signature` value: one `v1,` signature per key.
    fn signatures(&self, message: &Message, timestamp: i64) -> String {
        self.keys
            .iter()
            .map(|key| sign(key, &message.id, timestamp, &message.body))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn transport_error(&self, e: &reqwest::Error) -> SendError {
        let what = if e.is_timeout() {
            format!("no answer within {:?} (timeout)", self.timeout)
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "request failed".to_string()
        };
        SendError::new(format!("webhook {}: {what}: {}", self.shown_url, causes(e)))
    }
}

impl Message {
    /// The request for `events` (`None` for none); `now` stamps a batch.
    /// The body is serialized straight from the events.
    fn of<E: Borrow<Event>>(events: &[E], now: chrono::DateTime<chrono::Utc>) -> Option<Message> {
        let (first, last) = (events.first()?.borrow(), events.last()?.borrow());
        if events.len() == 1 {
            return Some(Message {
                id: first.id(),
                body: first.payload_json(),
            });
        }
        #[derive(Serialize)]
        struct Batch<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            timestamp: String,
            data: Vec<Payload<'a>>,
        }
        let batch = Batch {
            kind: "sequin.batch",
            timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: events.iter().map(|e| e.borrow().payload_ref()).collect(),
        };
        Some(Message {
            id: format!("evt_{}-{}", first.seq, last.seq),
            body: serde_json::to_vec(&batch).expect("events serialize"),
        })
    }
}

/// The Standard Webhooks symmetric signature of one request:
/// `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn parse_url(url: &str) -> Result<Url, WebhookError> {
    let error = |reason: String| WebhookError::Url {
        url: url.to_string(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| error(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(error(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(error("no host".to_string()));
    }
    Ok(parsed)
}

/// The key of a `whsec_<base64>` secret; why not, in words.
fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.trim().strip_prefix(SECRET_PREFIX) else {
        return Err("does not start with whsec_".to_string());
    };
    let key = BASE64
        .decode(encoded)
        .map_err(|e| format!("the part after whsec_ is not base64 ({e})"))?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes, Standard Webhooks wants {} to {}",
            key.len(),
            KEY_BYTES.start(),
            KEY_BYTES.end()
        ));
    }
    Ok(key)
}

/// The start of a response body on one line.
fn quote(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".to_string();
    }
    match line.char_indices().nth(BODY_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// An error's causes below reqwest's own message (which repeats the URL,
/// query included), joined on one line.
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::events::sample;

    /// The Standard Webhooks reference vector (standard-webhooks/standard-webhooks,
    /// libraries/go/webhook_test.go, `TestWebhookSign`; the other languages'
    /// libraries test the same one).
    #[test]
    fn signs_the_specs_reference_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_urls_and_secrets_name_the_fix() {
        let good = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()];
        let t = Duration::from_secs(5);
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            (
                "localhost:8080/x",
                good.clone(),
                "absolute http:// or https:// URL",
            ),
            ("ftp://example.com/x", good.clone(), "scheme \"ftp\""),
            ("https://example.com/x", vec![], "no secret"),
            (
                "https://example.com/x",
                vec!["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
                "does not start with whsec_",
            ),
            (
                "https://example.com/x",
                vec![good[0].clone(), "whsec_!!".into()],
                "secret #2: the part after whsec_ is not base64",
            ),
            (
                "https://example.com/x",
                vec!["whsec_c2hvcnQ=".into()],
                "the key is 5 bytes",
            ),
        ];
        for (url, secrets, wanted) in cases {
            let message = Webhook::new(url, &secrets, t)
                .err()
                .expect("refused")
                .to_string();
            assert!(message.contains(wanted), "{url} {secrets:?}: {message}");
            assert!(message.contains("(fix: "), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        assert!(Webhook::new("https://example.com/x", &good, t).is_ok());
    }

    #[test]
    fn one_event_is_its_payload_and_several_a_batch() {
        let now = chrono::DateTime::from_timestamp(1_780_000_100, 0).unwrap();
        assert_eq!(Message::of::<Event>(&[], now), None);
        let one = Message::of(&[sample(7, "cus_1")], now).unwrap();
        assert_eq!(one.id, "evt_7");
        let body: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
        assert_eq!(body, sample(7, "cus_1").payload());

        let events = [sample(7, "cus_1"), sample(8, "cus_2"), sample(9, "cus_1")];
        let batch = Message::of(&events, now).unwrap();
        assert_eq!(batch.id, "evt_7-9");
        let body: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(body["type"], "sequin.batch");
        assert_eq!(body["timestamp"], "2026-05-28T20:28:20.000Z");
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[2], events[2].payload());
    }

    #[test]
    fn quotes_the_start_of_a_body_on_one_line() {
        assert_eq!(quote("no\n  such\thook\n"), "no such hook");
        assert_eq!(quote(""), "(empty body)");
        let long = "é".repeat(300);
        assert_eq!(quote(&long), format!("{}...", "é".repeat(200)));
    }

    /// One request the test endpoint saw: its headers and body.
    type Request = (HeaderMap, Vec<u8>);

    /// What the test endpoint saw, in order.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Request>>>);

    /// An endpoint on a free port answering `status` (after `delay`) with
    /// `body`; records each request.
    async fn endpoint(status: StatusCode, body: &'static str, delay: Duration) -> (String, Seen) {
        let seen = Seen::default();
        let kept = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, bytes: bytes::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.0.lock().unwrap().push((headers, bytes.to_vec()));
                    tokio::time::sleep(delay).await;
                    (status, body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook?token=secret-token",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn a_2xx_delivers_with_one_signature_per_secret() {
        let (url, seen) = endpoint(StatusCode::NO_CONTENT, "", Duration::ZERO).await;
        let secrets = [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
            format!("whsec_{}", BASE64.encode([7u8; 32])),
        ];
        let hook = Webhook::new(&url, &secrets, Duration::from_secs(5)).unwrap();
        hook.send(&[sample(3, "cus_1"), sample(4, "cus_2")])
            .await
            .unwrap();

        let requests = seen.0.lock().unwrap();
        let (headers, body) = &requests[0];
        let header = |name: &str| headers[name].to_str().unwrap().to_string();
        assert_eq!(header("webhook-id"), "evt_3-4");
        assert_eq!(header("content-type"), "application/json");
        assert!(header("user-agent").starts_with("Sequin/"));
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
        let expected: Vec<String> = secrets
            .iter()
            .map(|s| sign(&decode_secret(s).unwrap(), "evt_3-4", timestamp, body))
            .collect();
        assert_eq!(header("webhook-signature"), expected.join(" "));
        assert_ne!(expected[0], expected[1]);
    }

    #[tokio::test]
    async fn a_refusal_names_the_status_and_the_body_but_not_the_query() {
        let (url, _) = endpoint(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database\nis down",
            Duration::ZERO,
        )
        .await;
        let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()];
        let hook = Webhook::new(&url, &secrets, Duration::from_secs(5)).unwrap();
        let error = hook.send(&[sample(1, "cus_1")]).await.unwrap_err().message;
        assert!(
            error.contains("answered 500 Internal Server Error: database is down"),
            "{error}"
        );
        assert!(!error.contains("secret-token"), "{error}");
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_say_so() {
        let (url, _) = endpoint(StatusCode::OK, "", Duration::from_secs(5)).await;
        let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()];
        let hook = Webhook::new(&url, &secrets, Duration::from_millis(200)).unwrap();
        let error = hook.send(&[sample(1, "cus_1")]).await.unwrap_err().message;
        assert!(
            error.contains("no answer within 200ms (timeout)"),
            "{error}"
        );

        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook::new(
            &format!("http://127.0.0.1:{port}/hook"),
            &secrets,
            Duration::from_secs(5),
        )
        .unwrap();
        let error = hook.send(&[sample(1, "cus_1")]).await.unwrap_err().message;
        assert!(error.contains("cannot connect"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
