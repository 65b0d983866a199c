//! The Standard Webhooks signature check, on its own: any `v1,` signature
//! of `webhook-signature` made with any of our keys over
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, the timestamp within
//! [`TOLERANCE_SECS`] of now (a captured request cannot be replayed later).
//! Several keys let a secret rotate without a refused delivery.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from our clock, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The key of a `whsec_<base64>` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.trim().strip_prefix("whsec_").ok_or_else(|| {
        "a webhook secret must start with whsec_ (fix: copy the secret Sequin is configured with)"
            .to_string()
    })?;
    BASE64.decode(encoded).map_err(|e| {
        format!("the webhook secret after whsec_ is not base64: {e} (fix: copy it whole)")
    })
}

/// The request's `webhook-id` when one of its signatures is ours and its
/// timestamp is fresh; why not otherwise.
pub fn verify(
    keys: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, &'static str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("webhook-id").ok_or("no webhook-id")?;
    let timestamp = header("webhook-timestamp").ok_or("no webhook-timestamp")?;
    let signatures = header("webhook-signature").ok_or("no webhook-signature")?;
    let at: i64 = timestamp
        .parse()
        .map_err(|_| "webhook-timestamp is not a number")?;
    if (now - at).abs() > TOLERANCE_SECS {
        return Err("webhook-timestamp is more than 5 minutes off");
    }
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let ours = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| BASE64.decode(s).ok())
            // verify_slice compares in constant time.
            .any(|theirs| mac.clone().verify_slice(&theirs).is_ok());
        if ours {
            return Ok(id.to_string());
        }
    }
    Err("no signature made with our secrets")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks libraries
    /// (libraries/go/webhook_test.go, `TestWebhookSign`).
    fn reference(signature: &str, timestamp: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", timestamp.parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn accepts_the_reference_vector_among_other_signatures_and_keys() {
        let keys = [
            decode_secret("whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==").unwrap(),
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        ];
        let headers = reference(
            &format!("v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SIGNATURE}"),
            "1614265330",
        );
        assert_eq!(
            verify(&keys, &headers, BODY, 1614265330 + 299).unwrap(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek"
        );
    }

    #[test]
    fn refuses_another_body_key_or_a_stale_timestamp() {
        let key = [decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()];
        let headers = reference(SIGNATURE, "1614265330");
        let now = 1614265330;
        assert!(verify(&key, &headers, br#"{"test": 2432232315}"#, now).is_err());
        let other = [decode_secret("whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==").unwrap()];
        assert!(verify(&other, &headers, BODY, now).is_err());
        assert_eq!(
            verify(&key, &headers, BODY, now + 301),
            Err("webhook-timestamp is more than 5 minutes off")
        );
        assert_eq!(
            verify(&key, &HeaderMap::new(), BODY, now),
            Err("no webhook-id")
        );
    }
}
