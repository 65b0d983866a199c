//! Authentication of API requests: API keys, bearer tokens, basic auth and
//! the OAuth2 refresh-token flow, plus the [`Secret`] type that keeps
//! credentials out of logs and errors.
//!
//! OAuth2: the access token is cached until it expires (when the token
//! response says when) or the API answers 401; then it is refreshed once and
//! the request retried. Concurrent requests share one refresh. A refresh
//! token the server rotates is persisted through a [`TokenStore`] before it
//! is relied on, so a restart uses the new one (the old one is revoked).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use sequin_spec::model::{Auth, KeyLocation};
use sequin_spec::record::get_path;
use serde_json::Value;

use super::error::{ApiError, ErrorKind};
use super::template::{self, Vars};

/// A credential. `Debug` and `Display` print `***`; only
/// [`Secret::expose`] gives the value, at the one place it goes on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// OAuth2 tokens of a connection as persisted (table `sequin.oauth_token`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredToken {
    /// The refresh token in force (a rotated one replaces the configured one).
    pub refresh_token: Secret,
    /// The last access token, reusable until `expires_at` or a 401.
    pub access_token: Option<Secret>,
    /// When the access token expires, if the token endpoint said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The instance URL from the token response (Salesforce).
    pub instance_url: Option<String>,
}

/// A boxed future, for the object-safe [`TokenStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a token store failed (its message must not contain the tokens).
pub type TokenStoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where OAuth2 tokens are persisted. The runtime implements it over
/// Postgres; [`MemoryTokenStore`] serves tests.
pub trait TokenStore: Send + Sync {
    /// The stored tokens of `connection`, if any.
    fn load<'a>(
        &'a self,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>>;
    /// Stores the tokens of `connection` (replacing earlier ones).
    fn save<'a>(
        &'a self,
        connection: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;
}

/// A [`TokenStore`] in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryTokenStore {
    map: Arc<Mutex<HashMap<String, StoredToken>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> MemoryTokenStore {
        MemoryTokenStore::default()
    }

    /// What is stored for `connection`.
    pub fn get(&self, connection: &str) -> Option<StoredToken> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(connection)
            .cloned()
    }
}

impl TokenStore for MemoryTokenStore {
    fn load<'a>(
        &'a self,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        let found = self.get(connection);
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        connection: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connection.to_string(), token.clone());
        Box::pin(async { Ok(()) })
    }
}

/// How the credential goes on a request.
#[derive(Clone, Debug)]
pub(crate) enum Applied {
    /// A header (name, value).
    Header(String, Secret),
    /// A query parameter (name, value).
    Query(String, Secret),
}

/// The static part of an auth method, resolved from credentials.
#[derive(Debug)]
pub(crate) enum Method {
    Static(Applied),
    OAuth(Box<OAuth>),
}

/// OAuth2 refresh-token state of one connection.
#[derive(Debug)]
pub(crate) struct OAuth {
    token_url: String,
    client_id: Secret,
    client_secret: Secret,
    instance_url_path: Option<String>,
    connection: String,
    store: Option<Arc<dyn TokenStore>>,
    /// The refresh token in the config. A stored (rotated) one takes
    /// precedence, but when that one is refused this one is tried: after a
    /// revocation the user puts a new token in the config, and it must work.
    configured_refresh: Secret,
    state: tokio::sync::Mutex<OAuthState>,
    /// Every token ever seen, for scrubbing errors (tokens rotate).
    seen: Mutex<Vec<String>>,
}

impl fmt::Debug for dyn TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenStore")
    }
}

#[derive(Debug)]
struct OAuthState {
    loaded: bool,
    refresh_token: Secret,
    access_token: Option<Secret>,
    expires_at: Option<DateTime<Utc>>,
    instance_url: Option<String>,
    /// Bumped at each refresh, so concurrent 401s refresh once.
    generation: u64,
    /// A rotated refresh token the store failed to save.
    unsaved: bool,
}

/// A token to put on a request, and which refresh produced it.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) applied: Applied,
    pub(crate) generation: u64,
}

fn credential(
    api: &str,
    credentials: &BTreeMap<String, Secret>,
    name: &str,
) -> Result<Secret, ApiError> {
    credentials.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            api,
            ErrorKind::Config,
            format!("the connection has no credential `{name}`, which the connector's auth needs"),
        )
    })
}

impl Method {
    /// Resolves the spec's auth against a connection's credentials.
    pub(crate) fn new(
        api: &str,
        auth: &Auth,
        credentials: &BTreeMap<String, Secret>,
        token_url: String,
        connection: &str,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Result<Method, ApiError> {
        Ok(match auth {
            Auth::ApiKey {
                location,
                name,
                prefix,
                credential: c,
            } => {
                let key = credential(api, credentials, c)?;
                let value = Secret::new(format!(
                    "{}{}",
                    prefix.as_deref().unwrap_or(""),
                    key.expose()
                ));
                Method::Static(match location {
                    KeyLocation::Header => Applied::Header(name.clone(), value),
                    KeyLocation::Query => Applied::Query(name.clone(), value),
                })
            }
            Auth::Bearer { credential: c } => {
                let token = credential(api, credentials, c)?;
                Method::Static(Applied::Header(
                    AUTHORIZATION.to_string(),
                    Secret::new(format!("Bearer {}", token.expose())),
                ))
            }
            Auth::Basic { username, password } => {
                let user = credential(api, credentials, username)?;
                let pass = match password {
                    Some(p) => credential(api, credentials, p)?,
                    None => Secret::new(""),
                };
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.expose(),
                    pass.expose()
                ));
                Method::Static(Applied::Header(
                    AUTHORIZATION.to_string(),
                    Secret::new(format!("Basic {encoded}")),
                ))
            }
            Auth::OAuth2Refresh {
                client_id,
                client_secret,
                refresh_token,
                instance_url,
                ..
            } => Method::OAuth(Box::new(OAuth {
                configured_refresh: credential(api, credentials, refresh_token)?,
                token_url,
                client_id: credential(api, credentials, client_id)?,
                client_secret: credential(api, credentials, client_secret)?,
                instance_url_path: instance_url.clone(),
                connection: connection.to_string(),
                store,
                state: tokio::sync::Mutex::new(OAuthState {
                    loaded: false,
                    refresh_token: credential(api, credentials, refresh_token)?,
                    access_token: None,
                    expires_at: None,
                    instance_url: None,
                    generation: 0,
                    unsaved: false,
                }),
                seen: Mutex::new(Vec::new()),
            })),
        })
    }
}

/// The token URL of an OAuth2 spec, filled with connection params (or the
/// override).
pub(crate) fn token_url(
    auth: &Auth,
    vars: &Vars,
    override_url: Option<&str>,
) -> Result<String, template::TemplateError> {
    match (auth, override_url) {
        (_, Some(u)) => Ok(u.to_string()),
        (Auth::OAuth2Refresh { token_url, .. }, None) => template::render(token_url, vars),
        _ => Ok(String::new()),
    }
}

/// How long before the announced expiry a token is refreshed anyway.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

impl OAuth {
    /// Secrets to scrub from errors: client secret and every token seen.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = vec![
            self.client_secret.expose().to_string(),
            self.client_id.expose().to_string(),
        ];
        out.extend(self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone());
        out
    }

    fn remember(&self, s: &Secret) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|x| x == s.expose()) {
            seen.push(s.expose().to_string());
        }
    }

    /// The instance URL learned from the token endpoint, if any.
    pub(crate) async fn instance_url(
        &self,
        api: &str,
        http: &reqwest::Client,
    ) -> Result<Option<String>, ApiError> {
        let mut st = self.state.lock().await;
        self.ensure(&mut st, api, http, None).await?;
        Ok(st.instance_url.clone())
    }

    /// A valid access token; `stale` is the generation of a token the API
    /// just refused (401), which forces a refresh unless another request
    /// already refreshed since.
    pub(crate) async fn token(
        &self,
        api: &str,
        http: &reqwest::Client,
        stale: Option<u64>,
    ) -> Result<Token, ApiError> {
        let mut st = self.state.lock().await;
        self.ensure(&mut st, api, http, stale).await?;
        let access = st.access_token.clone().expect("ensure leaves a token");
        Ok(Token {
            applied: Applied::Header(
                AUTHORIZATION.to_string(),
                Secret::new(format!("Bearer {}", access.expose())),
            ),
            generation: st.generation,
        })
    }

    async fn ensure(
        &self,
        st: &mut OAuthState,
        api: &str,
        http: &reqwest::Client,
        stale: Option<u64>,
    ) -> Result<(), ApiError> {
        self.remember(&st.refresh_token);
        if !st.loaded {
            st.loaded = true;
            if let Some(store) = &self.store {
                let stored = store.load(&self.connection).await.map_err(|e| {
                    ApiError::new(
                        api,
                        ErrorKind::Auth,
                        format!("cannot load OAuth tokens: {e}"),
                    )
                })?;
                if let Some(t) = stored {
                    self.remember(&t.refresh_token);
                    st.refresh_token = t.refresh_token;
                    st.access_token = t.access_token;
                    st.expires_at = t.expires_at;
                    st.instance_url = t.instance_url;
                }
            }
        }
        if st.unsaved {
            self.persist(st, api).await?;
        }
        let expired = st.expires_at.is_some_and(|at| {
            at - chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default() <= Utc::now()
        });
        let refused = stale.is_some_and(|g| g == st.generation);
        if st.access_token.is_none() || expired || refused {
            self.refresh(st, api, http).await?;
        }
        Ok(())
    }

    async fn refresh(
        &self,
        st: &mut OAuthState,
        api: &str,
        http: &reqwest::Client,
    ) -> Result<(), ApiError> {
        // Instrumented rather than entered: a span entered across an await
        // leaks into whatever else runs on the thread meanwhile.
        let span = tracing::info_span!("oauth_refresh", connection = %self.connection);
        let result = tracing::Instrument::instrument(
            self.refresh_token_request(st, api, http),
            span.clone(),
        )
        .await;
        match result {
            Err(e) if e.kind == ErrorKind::Auth && st.refresh_token != self.configured_refresh => {
                tracing::warn!(connection = %self.connection, "the stored refresh token was refused; trying the configured one");
                st.refresh_token = self.configured_refresh.clone();
                tracing::Instrument::instrument(self.refresh_token_request(st, api, http), span)
                    .await
            }
            other => other,
        }
    }

    async fn refresh_token_request(
        &self,
        st: &mut OAuthState,
        api: &str,
        http: &reqwest::Client,
    ) -> Result<(), ApiError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", self.client_id.expose())
            .append_pair("client_secret", self.client_secret.expose())
            .append_pair("refresh_token", st.refresh_token.expose())
            .finish();
        let response = http
            .post(&self.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            )
            .body(form)
            .send()
            .await
            .map_err(|e| {
                // Transient: the caller retries these like any transport failure.
                ApiError::new(
                    api,
                    if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Network
                    },
                    format!("token request failed: {}", super::transport_reason(&e)),
                )
            })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            ApiError::new(
                api,
                ErrorKind::Network,
                format!("token response unreadable: {}", super::transport_reason(&e)),
            )
        })?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let text = |path: &str| -> Option<String> {
            body.as_ref()
                .and_then(|b| get_path(b, path))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if !(200..300).contains(&status) {
            let reason = text("error_description")
                .or_else(|| text("error"))
                .unwrap_or_else(|| format!("HTTP {status}"));
            // A refused grant is final (42501); a token endpoint that is down
            // or limiting is transient, and the caller retries.
            let kind = match status {
                429 => ErrorKind::RateLimited,
                500.. => ErrorKind::Http,
                _ => ErrorKind::Auth,
            };
            let mut e = ApiError::new(api, kind, format!("OAuth token refresh failed: {reason}"));
            e.status = Some(status);
            e.code = text("error");
            tracing::warn!(status, "OAuth token refresh refused");
            return Err(e);
        }
        let access = text("access_token").ok_or_else(|| {
            ApiError::new(api, ErrorKind::Auth, "token response has no access_token")
        })?;
        let access = Secret::new(access);
        self.remember(&access);
        st.access_token = Some(access);
        st.expires_at = body
            .as_ref()
            .and_then(|b| b.get("expires_in"))
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
            .map(|secs| Utc::now() + chrono::Duration::seconds(secs));
        if let Some(path) = &self.instance_url_path
            && let Some(url) = text(path)
        {
            st.instance_url = Some(url);
        }
        let rotated = text("refresh_token")
            .map(Secret::new)
            .filter(|r| *r != st.refresh_token);
        if let Some(r) = &rotated {
            self.remember(r);
            st.refresh_token = r.clone();
        }
        st.generation += 1;
        tracing::info!(rotated = rotated.is_some(), "OAuth access token refreshed");
        self.persist(st, api).await
    }

    async fn persist(&self, st: &mut OAuthState, api: &str) -> Result<(), ApiError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let token = StoredToken {
            refresh_token: st.refresh_token.clone(),
            access_token: st.access_token.clone(),
            expires_at: st.expires_at,
            instance_url: st.instance_url.clone(),
        };
        match store.save(&self.connection, &token).await {
            Ok(()) => {
                st.unsaved = false;
                Ok(())
            }
            Err(e) => {
                // The old refresh token may be revoked already: keep the new
                // one in memory and try to save it again before the next use.
                st.unsaved = true;
                Err(ApiError::new(
                    api,
                    ErrorKind::Auth,
                    format!("cannot save OAuth tokens: {e}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk_live_abc");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let t = StoredToken {
            refresh_token: Secret::new("refresh-xyz"),
            access_token: Some(Secret::new("access-xyz")),
            expires_at: None,
            instance_url: Some("https://na1.example.com".into()),
        };
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("xyz"), "{dbg}");
        assert_eq!(s.expose(), "sk_live_abc");
    }

    #[test]
    fn static_methods_resolve_credentials() {
        let mut creds = BTreeMap::new();
        creds.insert("key".to_string(), Secret::new("k1"));
        creds.insert("user".to_string(), Secret::new("u"));
        let api_key = Auth::ApiKey {
            location: KeyLocation::Query,
            name: "api_key".into(),
            prefix: Some("token ".into()),
            credential: "key".into(),
        };
        match Method::new("X", &api_key, &creds, String::new(), "c", None).unwrap() {
            Method::Static(Applied::Query(n, v)) => {
                assert_eq!(n, "api_key");
                assert_eq!(v.expose(), "token k1");
            }
            other => panic!("{other:?}"),
        }
        let basic = Auth::Basic {
            username: "user".into(),
            password: None,
        };
        match Method::new("X", &basic, &creds, String::new(), "c", None).unwrap() {
            Method::Static(Applied::Header(n, v)) => {
                assert_eq!(n, "authorization");
                assert_eq!(v.expose(), "Basic dTo=");
            }
            other => panic!("{other:?}"),
        }
        let missing = Auth::Bearer {
            credential: "token".into(),
        };
        let err = Method::new("GitHub", &missing, &creds, String::new(), "c", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.to_string().contains("`token`"), "{err}");
    }

    #[tokio::test]
    async fn memory_store_round_trips() {
        let store = MemoryTokenStore::new();
        assert_eq!(store.load("sf").await.unwrap(), None);
        let t = StoredToken {
            refresh_token: Secret::new("r2"),
            access_token: None,
            expires_at: None,
            instance_url: None,
        };
        store.save("sf", &t).await.unwrap();
        assert_eq!(store.load("sf").await.unwrap(), Some(t));
    }
}
