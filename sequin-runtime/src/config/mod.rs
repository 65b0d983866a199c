//! `sequin.yaml`: the runtime configuration.
//!
//! Parsed with positions (so a mistake is reported as `file:line:column`),
//! with `${ENV}` interpolation for secrets, and checked against the
//! compiled-in connectors before anything connects. See
//! `sequin.example.yaml` for every key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sequin_spec::Connector;
use sequin_spec::naming::is_snake_identifier;
use serde::Deserialize;

pub use crate::api::Secret;
use crate::registry;

pub mod reload;
mod sinks;
pub use sinks::{DEFAULT_RETRY, EventsConfig, Filter, Secrets, SinkConfig, SinkKind, Start};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Postgres database holding synced tables and the `sequin` schema.
    pub database_url: Secret,
    /// The Postgres proxy (write-through); optional for `sequin sync`.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// API accounts to sync; each gets its own Postgres schema.
    pub connections: Vec<ConnectionConfig>,
    /// The HTTP endpoint of `/metrics`, `/healthz` and `/readyz` (optional:
    /// without it there is none).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Events: changes to synced tables written to `sequin.events` (on
    /// when this is present or any sink is configured).
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// Where events are delivered.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// The Postgres sessions sync shares between every connection.
    #[serde(default)]
    pub pool: PoolConfig,
    /// How the processes pointed at one database share the connections.
    #[serde(default)]
    pub sync: SyncConfig,
}

/// Work shared across processes: each connection is synced by the process
/// holding its lease; a process that stops heartbeating loses its leases
/// after `failover`, and the others take its connections over.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default = "default_failover", deserialize_with = "duration")]
    pub failover: Duration,
    /// Objects backfilling at once in a process; the others wait.
    #[serde(default = "default_backfills")]
    pub backfills: usize,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            failover: default_failover(),
            backfills: default_backfills(),
        }
    }
}

fn default_backfills() -> usize {
    32
}

fn default_failover() -> Duration {
    Duration::from_secs(15)
}

/// Sync's Postgres sessions: `size` at most, whatever the number of
/// connections and objects; `per_connection` at most for one connection
/// (its `max_sessions` overrides it); closed after `idle_timeout` unused.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_pool_size")]
    pub size: usize,
    #[serde(default = "default_per_connection")]
    pub per_connection: usize,
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            size: default_pool_size(),
            per_connection: default_per_connection(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl PoolConfig {
    /// The store's settings.
    pub fn settings(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            size: self.size,
            per_connection: self.per_connection,
            idle_timeout: self.idle_timeout,
        }
    }
}

fn default_pool_size() -> usize {
    crate::store::PoolSettings::default().size
}

fn default_per_connection() -> usize {
    crate::store::PoolSettings::default().per_connection
}

fn default_idle_timeout() -> Duration {
    crate::store::PoolSettings::default().idle_timeout
}

/// Where the metrics endpoint listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to listen on (an IP address: the endpoint binds to it).
    #[serde(deserialize_with = "metrics_listen")]
    pub listen: std::net::SocketAddr,
}

fn metrics_listen<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::net::SocketAddr, D::Error> {
    // Any scalar: a bare port (`9464`) is a YAML number.
    let s = match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "metrics.listen `{s}` is not host:port; write an IP address and a port, e.g. 127.0.0.1:9464 (0.0.0.0:9464 for every interface)"
        ))
    })
}

/// Where the proxy listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// PEM certificate chain for TLS (optional).
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM private key for TLS (optional).
    #[serde(default)]
    pub tls_key: Option<String>,
    /// How long settled entries of the write journal are kept (default 7
    /// days); entries still open are kept whatever their age.
    #[serde(default = "default_journal_retention", deserialize_with = "duration")]
    pub journal_retention: Duration,
}

fn default_journal_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// One API account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The Postgres schema holding its tables (snake_case).
    pub name: String,
    /// A compiled-in connector (`stripe`, `salesforce`, ...).
    pub connector: String,
    /// Overrides the spec's base URL (a simulator, a sandbox).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Overrides the spec's OAuth2 token URL (a simulator, a sandbox).
    #[serde(default)]
    pub token_url: Option<String>,
    /// Credentials the connector's auth names (`api_key`, `refresh_token`...).
    #[serde(default)]
    pub credentials: BTreeMap<String, Secret>,
    /// Connection parameters the connector declares (`base_id`, `owner`...).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Objects to sync, each a table name, an API name (`Account`) or a
    /// pattern with `*` and `?` (`*__c`), case-insensitive; default all
    /// but the connector's default exclusions (which only a literal name
    /// brings in).
    #[serde(default)]
    pub objects: Option<Vec<String>>,
    /// Objects not to sync, named like `objects:` (`*Feed`, `Task`); wins
    /// over `objects:`.
    #[serde(default)]
    pub exclude_objects: Vec<String>,
    /// How often incremental sync polls (`500ms`, `2s`).
    #[serde(default = "default_poll", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Records per page asked from the API (default: the spec's page size).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Overrides the spec's rate limit for this account (live Stripe
    /// accounts allow 100 requests/s where the spec assumes test mode's 25;
    /// enterprise Salesforce orgs have larger daily quotas).
    #[serde(default)]
    pub rate_limit: Option<RateLimitOverride>,
    /// How often runtime-defined objects and fields are looked up again
    /// (default: the spec's `every`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub discovery_interval: Option<Duration>,
    /// How long one API request may take before it counts as timed out
    /// (default 60s). A write-through statement waits at most about this
    /// long per attempt.
    #[serde(default, deserialize_with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// How often each object is re-listed and diffed when the connector's
    /// events feed is refused (a restricted key; default: the spec's
    /// fallback `every`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub events_fallback_interval: Option<Duration>,
    /// How often every link table (`links:` of the spec, HubSpot's
    /// associations) is read whole again and diffed, which is what finds a
    /// link changed without either record changing (default: the spec's
    /// `links.every`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub association_interval: Option<Duration>,
    /// What sync keeps of the API's quota, for connectors that read one
    /// (`quota:` of the spec, Salesforce's daily API requests).
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
    /// Objects with at least this many records backfill through the
    /// connector's asynchronous query jobs (Salesforce's Bulk API 2.0;
    /// default: the spec's `async_query.threshold`, 100,000 for Salesforce).
    #[serde(default)]
    pub async_query_threshold: Option<u64>,
    /// Sync sessions this connection may hold at once (default:
    /// `pool.per_connection`).
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// The connector's spec to run instead of the compiled-in one: never
    /// read from the config file, set by a program embedding the engine (a
    /// test running a variant of a compiled-in spec, whose tables are still
    /// those of the compiled-in connector's DDL).
    #[serde(skip)]
    pub spec: Option<std::sync::Arc<Connector>>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// What sync keeps of a connector's quota: polls pause when a counted
/// quota falls to `floor`, backfills at `backfill_floor`; writes never.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// `10%` (of the allowance, the default) or a number of requests.
    #[serde(default, deserialize_with = "opt_floor")]
    pub floor: Option<crate::api::Floor>,
    /// Where backfills pause (default: twice the floor).
    #[serde(default, deserialize_with = "opt_floor")]
    pub backfill_floor: Option<crate::api::Floor>,
    /// How often the quota is read (default: the spec's `every`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub every: Option<Duration>,
    /// How often it is read while reads are paused (default: the spec's
    /// `paused_every`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub paused_every: Option<Duration>,
}

impl QuotaConfig {
    /// The settings of the API client.
    pub fn settings(&self) -> crate::api::QuotaSettings {
        let default = crate::api::QuotaSettings::default();
        crate::api::QuotaSettings {
            floor: self.floor.unwrap_or(default.floor),
            backfill_floor: self.backfill_floor,
            every: self.every,
            paused_every: self.paused_every,
        }
    }
}

fn opt_floor<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::api::Floor>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let text = match &v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::api::Floor::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a floor; write a share of the quota (`10%`) or a number of requests (`1500`)"
        ))
    })
}

/// A connection's own rate limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window (`1s`, `10s`, `24h`).
    pub per: sequin_spec::duration::Duration,
}

fn default_poll() -> Duration {
    Duration::from_secs(1)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration; write a number and a unit: 500ms, 1s, 5m, 1h"
        ))
    })
}

pub use sequin_spec::duration::parse as parse_duration;

/// A configuration problem: one line saying what and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config {path}: {source} (pass --config FILE, or create ./sequin.yaml from sequin.example.yaml)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    At {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
}

impl Config {
    /// Reads, interpolates and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, &|k| {
            std::env::var(k).ok()
        })
    }

    /// Parses config text; `env` resolves `${VAR}`.
    pub fn parse(
        path: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let at = |span: sequin_spec::yaml::Span, message: String| ConfigError::At {
            path: path.to_string(),
            line: span.line,
            col: span.col,
            message,
        };
        let mut doc = sequin_spec::yaml::parse(text)
            .map_err(|e| {
                at(
                    e.span,
                    format!(
                        "YAML syntax error: {}; fix the YAML there (sequin.example.yaml shows the layout)",
                        e.message
                    ),
                )
            })?;
        let mut missing = None;
        interpolate(&mut doc.value, "", env, &mut missing);
        if let Some((pointer, var)) = missing {
            return Err(at(
                doc.span(&pointer),
                format!(
                    "environment variable `{var}` is not set (export {var}=... before starting sequin)"
                ),
            ));
        }
        let config: Config = sequin_spec::yaml::deserialize(&doc.value)
            .map_err(|e| at(doc.span(&e.pointer), e.message))?;
        config
            .check()
            .map_err(|(pointer, message)| at(doc.span(&pointer), message))?;
        Ok(config)
    }

    /// Checks the database URL's TLS parameters (and reads the files they
    /// name, so a bad path fails before any work) and the connections
    /// against the compiled-in connectors.
    fn check(&self) -> Result<(), (String, String)> {
        sequin_proxy::SslParams::split_url(self.database_url.expose())
            .and_then(|(params, _)| params.load())
            .map_err(|e| ("/database_url".to_string(), e.to_string()))?;
        self.check_sinks()?;
        self.check_pool()?;
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.connections.iter().enumerate() {
            let p = format!("/connections/{i}");
            if c.max_sessions == Some(0) {
                return Err((
                    format!("{p}/max_sessions"),
                    "max_sessions must be at least 1 (leave it out for pool.per_connection)".into(),
                ));
            }
            if !is_snake_identifier(&c.name) || c.name == "sequin" || c.name.starts_with("pg_") {
                return Err((
                    format!("{p}/name"),
                    format!(
                        "connection name `{}` must be a lowercase snake_case schema name other than `sequin` and `pg_*`",
                        c.name
                    ),
                ));
            }
            if !names.insert(&c.name) {
                return Err((
                    format!("{p}/name"),
                    format!("connection name `{}` is used twice", c.name),
                ));
            }
            let Some(loaded) = registry::get(&c.connector) else {
                let names = registry::names();
                let guess = names
                    .iter()
                    .map(|n| (edit_distance(n, &c.connector.to_lowercase()), n))
                    .min()
                    .filter(|(d, _)| *d <= 2)
                    .map(|(_, n)| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err((
                    format!("{p}/connector"),
                    format!(
                        "unknown connector `{}`{guess}; set `connector:` to one of the compiled-in connectors: {} (`sequin connectors` lists them)",
                        c.connector,
                        names.join(", ")
                    ),
                ));
            };
            let spec = &loaded.spec;
            for cred in required_credentials(spec) {
                if !c.credentials.contains_key(cred) {
                    return Err((
                        format!("{p}/credentials"),
                        format!(
                            "connection `{}` needs credential `{cred}` for {}: add `{cred}: \"${{VARIABLE}}\"` under its `credentials:`",
                            c.name, spec.display_name
                        ),
                    ));
                }
            }
            for param in &spec.params {
                if param.required && !c.params.contains_key(&param.name) {
                    return Err((
                        format!("{p}/params"),
                        format!(
                            "connection `{}` needs param `{}` ({})",
                            c.name, param.name, param.description
                        ),
                    ));
                }
            }
            if c.async_query_threshold.is_some() && spec.async_query.is_none() {
                return Err((
                    format!("{p}/async_query_threshold"),
                    format!(
                        "{} has no asynchronous query jobs: remove `async_query_threshold`",
                        spec.display_name
                    ),
                ));
            }
            for key in c.params.keys() {
                if !spec.params.iter().any(|p| &p.name == key) {
                    return Err((
                        format!("{p}/params/{key}"),
                        format!("{} has no param `{key}`", spec.display_name),
                    ));
                }
            }
            if let Some(objects) = &c.objects {
                for (j, o) in objects.iter().enumerate() {
                    let Some(pair) = spec.link_pair(o) else {
                        continue;
                    };
                    if let Some(missing) = [&pair.from, &pair.to]
                        .into_iter()
                        .find(|x| !crate::catalog::wanted_static(c, spec, x))
                    {
                        return Err((
                            format!("{p}/objects/{j}"),
                            format!(
                                "`{o}` links `{}` to `{}` records, so it needs `{missing}` synced too: add `{missing}` to objects",
                                pair.from, pair.to
                            ),
                        ));
                    }
                }
            }
            if let Some((j, message)) = crate::catalog::denied_literal(c, spec) {
                return Err((format!("{p}/objects/{j}"), message));
            }
            if let Some(objects) = &c.objects
                && spec.discovered_objects.is_none()
            {
                for (j, o) in objects.iter().enumerate() {
                    if spec.link_pair(o).is_some() {
                        continue;
                    }
                    if let Some(parent) = spec.object(o).and_then(|o| o.parent.as_ref())
                        && !crate::catalog::wanted_static(c, spec, &parent.object)
                    {
                        return Err((
                            format!("{p}/objects/{j}"),
                            format!(
                                "`{o}` is listed under each `{0}`, so it needs `{0}` synced too: add `{0}` to objects",
                                parent.object
                            ),
                        ));
                    }
                    let matches_one = spec.objects.iter().any(|x| {
                        sequin_spec::pattern::matches(o, &x.name)
                            || sequin_spec::pattern::matches(o, &x.api_name)
                    });
                    if !matches_one {
                        let known: Vec<&str> =
                            spec.objects.iter().map(|o| o.name.as_str()).collect();
                        return Err((
                            format!("{p}/objects/{j}"),
                            format!(
                                "{} has no object `{o}`; objects: {}",
                                spec.display_name,
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            if let Some(r) = &c.rate_limit
                && r.requests == 0
            {
                return Err((
                    format!("{p}/rate_limit"),
                    "rate_limit needs `requests` above 0 (e.g. { requests: 100, per: 1s })"
                        .to_string(),
                ));
            }
            if let Some(q) = &c.quota {
                if spec.quota.is_none() {
                    return Err((
                        format!("{p}/quota"),
                        format!(
                            "{} reads no quota: remove `quota:` from connection `{}`",
                            spec.display_name, c.name
                        ),
                    ));
                }
                let s = q.settings();
                use crate::api::Floor::{Requests, Share};
                let below = match (s.backfill_floor, s.floor) {
                    (Some(Share(b)), Share(f)) => b < f,
                    (Some(Requests(b)), Requests(f)) => b < f,
                    _ => false,
                };
                if let (true, Some(b)) = (below, s.backfill_floor) {
                    return Err((
                        format!("{p}/quota/backfill_floor"),
                        format!(
                            "backfill_floor {b} is below floor {}: backfills pause first, so set it at or above the floor",
                            s.floor
                        ),
                    ));
                }
            }
            if let Some(url) = &c.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err((
                    format!("{p}/base_url"),
                    format!("base_url `{url}` is not an http(s) URL"),
                ));
            }
        }
        Ok(())
    }

    /// Each sink's keys, and their names unique.
    /// A pool must lend at least one session, to each connection too.
    fn check_pool(&self) -> Result<(), (String, String)> {
        for (key, n) in [
            ("size", self.pool.size),
            ("per_connection", self.pool.per_connection),
        ] {
            if n == 0 {
                return Err((
                    format!("/pool/{key}"),
                    format!(
                        "pool.{key} must be at least 1 (default {})",
                        match key {
                            "size" => default_pool_size(),
                            _ => default_per_connection(),
                        }
                    ),
                ));
            }
        }
        if self.sync.backfills == 0 {
            return Err((
                "/sync/backfills".into(),
                "sync.backfills must be at least 1 (default 32)".into(),
            ));
        }
        if self.sync.failover < Duration::from_secs(1) {
            return Err((
                "/sync/failover".into(),
                "sync.failover must be at least 1s (default 15s): processes heartbeat three times per failover".into(),
            ));
        }
        if self.pool.idle_timeout.is_zero() {
            return Err((
                "/pool/idle_timeout".into(),
                "pool.idle_timeout must be longer than 0 (default 1m)".into(),
            ));
        }
        Ok(())
    }

    fn check_sinks(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let p = format!("/sinks/{i}");
            if s.name.is_empty() || s.name.len() > 63 {
                return Err((
                    format!("{p}/name"),
                    format!("sink name `{}` must be 1 to 63 characters", s.name),
                ));
            }
            if !names.insert(&s.name) {
                return Err((
                    format!("{p}/name"),
                    format!("sink name `{}` is used twice", s.name),
                ));
            }
            s.check(&p)?;
        }
        Ok(())
    }

    /// Whether changes become events: `events:` or any sink configured.
    pub fn emits_events(&self) -> bool {
        self.events.is_some() || !self.sinks.is_empty()
    }

    /// A connection by name.
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The credential names a connector's auth needs.
pub fn required_credentials(spec: &Connector) -> Vec<&str> {
    use sequin_spec::model::Auth;
    match &spec.auth {
        Auth::ApiKey { credential, .. } | Auth::Bearer { credential } => vec![credential],
        Auth::Basic { username, password } => {
            let mut v = vec![username.as_str()];
            v.extend(password.as_deref());
            v
        }
        Auth::OAuth2Refresh {
            client_id,
            client_secret,
            refresh_token,
            ..
        } => vec![client_id, client_secret, refresh_token],
    }
}

/// Replaces `${VAR}` in every string; records the first missing variable.
fn interpolate(
    v: &mut serde_json::Value,
    pointer: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Option<(String, String)>,
) {
    match v {
        serde_json::Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                let var = &after[..end];
                match env(var) {
                    Some(val) => out.push_str(&val),
                    None => {
                        if missing.is_none() {
                            *missing = Some((pointer.to_string(), var.to_string()));
                        }
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{pointer}/{i}"), env, missing);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let p = format!("{pointer}/{}", sequin_spec::yaml::escape_segment(k));
                interpolate(item, &p, env, missing);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "STRIPE_KEY").then(|| "sk_test_123".to_string())
    }

    const GOOD: &str = "database_url: postgres://u@127.0.0.1:5432/app\nproxy:\n  listen: 127.0.0.1:7432\nconnections:\n  - name: stripe\n    connector: stripe\n    base_url: http://127.0.0.1:12111\n    credentials: { api_key: \"${STRIPE_KEY}\" }\n    objects: [customer]\n    poll_interval: 500ms\n";

    #[test]
    fn parses_and_interpolates() {
        let c = Config::parse("sequin.yaml", GOOD, &env).unwrap();
        assert_eq!(
            c.connections[0].credentials["api_key"].expose(),
            "sk_test_123"
        );
        assert_eq!(c.connections[0].poll_interval, Duration::from_millis(500));
        // Secrets never print.
        assert!(!format!("{c:?}").contains("sk_test_123"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../sequin.example.yaml");
        let env = |k: &str| {
            Some(match k {
                "SEQUIN_WEBHOOK_SECRET" => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                _ => "x".into(),
            })
        };
        let c = Config::parse("sequin.example.yaml", text, &env).unwrap();
        assert_eq!(c.connections.len(), 3);
        assert_eq!(c.sinks.len(), 3);
        assert!(c.emits_events());
        assert_eq!(
            c.connections[1].discovery_interval,
            Some(Duration::from_secs(60))
        );
        let quota = c.connections[1].quota.as_ref().unwrap().settings();
        assert_eq!(quota.floor, crate::api::Floor::Share(0.1));
        assert_eq!(quota.backfill_floor().of(15_000), 3000);
    }

    #[test]
    fn sinks_are_checked_key_by_key() {
        let sink = |keys: &str| {
            let text = format!(
                "database_url: postgres://u@127.0.0.1/app\nconnections: []\nsinks:\n  - name: s\n{keys}"
            );
            Config::parse("t.yaml", &text, &|_| None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(sink("    kind: notify\n    channel: c\n"), Ok(()));
        let e = sink("    kind: notify\n    channel: c\n    url: http://x\n").unwrap_err();
        assert!(e.contains("a notify sink has no `url`: remove it"), "{e}");
        let e = sink("    kind: webhook\n    url: https://example.com/h\n").unwrap_err();
        assert!(e.contains("needs `secret`: add `secret:"), "{e}");
        let e = sink("    kind: webhook\n    url: https://example.com/h\n    secret: nope\n")
            .unwrap_err();
        assert!(e.contains("whsec_"), "{e}");
        let e = sink("    kind: nats\n    url: nats://127.0.0.1:4222\n").unwrap_err();
        assert!(e.contains("needs `stream`"), "{e}");
        let e = sink("    kind: notify\n    channel: c\n    retry: []\n").unwrap_err();
        assert!(e.contains("retry needs at least one wait"), "{e}");
        let e = sink("    kind: notify\n    channel: c\n    filter: { operations: [read] }\n")
            .unwrap_err();
        assert!(e.contains("add `backfill: true`"), "{e}");
        let e = sink("    kind: kafka\n").unwrap_err();
        assert!(e.contains("t.yaml:"), "{e}");
    }

    #[test]
    fn quota_floors_are_checked() {
        let sf = |quota: &str| {
            let text = format!(
                "database_url: postgres://u@127.0.0.1/app\nconnections:\n  - name: sf\n    connector: salesforce\n    credentials: {{ client_id: a, client_secret: b, refresh_token: c }}\n    quota: {quota}\n"
            );
            Config::parse("s.yaml", &text, &env)
                .map(|c| c.connections[0].quota.as_ref().unwrap().settings())
        };
        let s = sf("{ floor: 1500, backfill_floor: 40%, paused_every: 2s }").unwrap();
        assert_eq!(s.floor, crate::api::Floor::Requests(1500));
        assert_eq!(s.backfill_floor, Some(crate::api::Floor::Share(0.4)));
        assert_eq!(s.paused_every, Some(Duration::from_secs(2)));
        assert_eq!(
            sf("{ floor: ten }").unwrap_err().to_string(),
            "s.yaml:6:21: `ten` is not a floor; write a share of the quota (`10%`) or a number of requests (`1500`)"
        );
        assert_eq!(
            sf("{ floor: 20%, backfill_floor: 10% }")
                .unwrap_err()
                .to_string(),
            "s.yaml:6:42: backfill_floor 10% is below floor 20%: backfills pause first, so set it at or above the floor"
        );
        let stripe = GOOD.replace("poll_interval: 500ms", "quota: { floor: 5% }");
        assert_eq!(
            Config::parse("s.yaml", &stripe, &env)
                .unwrap_err()
                .to_string(),
            "s.yaml:10:12: Stripe reads no quota: remove `quota:` from connection `stripe`"
        );
    }

    /// Every field of the configuration's structs appears in the example
    /// (as a key or a commented-out key): the example is the reference.
    /// Fields serde skips are no keys.
    #[test]
    fn the_example_config_names_every_key() {
        let example = include_str!("../../../sequin.example.yaml");
        let source = [include_str!("mod.rs"), include_str!("sinks.rs")]
            .map(|s| &s[..s.find("#[cfg(test)]").unwrap_or(s.len())])
            .join("\n");
        let lines: Vec<&str> = source.lines().collect();
        let missing: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i == 0 || lines[i - 1].trim() != "#[serde(skip)]")
            .filter_map(|(_, l)| l.trim().strip_prefix("pub ")?.split_once(':'))
            .map(|(name, _)| name.trim())
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .filter(|name| !example.contains(&format!("{name}:")))
            .collect();
        assert!(
            missing.is_empty(),
            "sequin.example.yaml does not show {missing:?}; add each with a comment saying what it does"
        );
    }

    #[test]
    fn one_line_errors_with_positions() {
        let missing = Config::parse("sequin.yaml", GOOD, &|_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            missing,
            "sequin.yaml:8:29: environment variable `STRIPE_KEY` is not set (export STRIPE_KEY=... before starting sequin)"
        );
        let unknown = Config::parse(
            "s.yaml",
            &GOOD.replace("connector: stripe", "connector: strype"),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            unknown.starts_with(
                "s.yaml:6:16: unknown connector `strype` (did you mean `stripe`?); set `connector:` to one of the compiled-in connectors: airtable,"
            ),
            "{unknown}"
        );
        let bad_yaml = Config::parse("s.yaml", "connections: [", &env)
            .unwrap_err()
            .to_string();
        assert!(
            bad_yaml.starts_with("s.yaml:2:1: YAML syntax error"),
            "{bad_yaml}"
        );
        let bad_key = Config::parse(
            "s.yaml",
            &GOOD.replace("poll_interval", "poll_intervall"),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_key.contains("unknown field `poll_intervall`"),
            "{bad_key}"
        );
        let bad_object = Config::parse("s.yaml", &GOOD.replace("[customer]", "[customers]"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            bad_object.contains("has no object `customers`"),
            "{bad_object}"
        );
        assert!(!bad_object.contains('\n'));
        let rate = |limit: &str| {
            Config::parse("s.yaml", &format!("{GOOD}    rate_limit: {limit}\n"), &env)
                .map(|c| c.connections[0].rate_limit.clone().unwrap().per.get())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            rate("{ requests: 100, per: 10s }"),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            rate("{ requests: 100, per: soon }"),
            Err("s.yaml:11:39: `soon` is not a duration; write a number and a unit: 500ms, 1s, 10s, 5m, 1h, 30d".into())
        );
        assert_eq!(
            rate("{ requests: 0, per: 1s }"),
            Err("s.yaml:11:17: rate_limit needs `requests` above 0 (e.g. { requests: 100, per: 1s })".into())
        );
    }

    #[test]
    fn metrics_listen_is_an_address_and_port() {
        let with_metrics = |listen: &str| {
            Config::parse(
                "s.yaml",
                &format!("{GOOD}metrics:\n  listen: {listen}\n"),
                &env,
            )
        };
        assert_eq!(
            with_metrics("127.0.0.1:9464")
                .unwrap()
                .metrics
                .unwrap()
                .listen,
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            with_metrics("9464").unwrap_err().to_string(),
            "s.yaml:12:11: metrics.listen `9464` is not host:port; write an IP address and a port, e.g. 127.0.0.1:9464 (0.0.0.0:9464 for every interface)"
        );
        assert!(
            with_metrics("localhost")
                .unwrap_err()
                .to_string()
                .contains("metrics.listen `localhost` is not host:port")
        );
        assert!(
            Config::parse("s.yaml", GOOD, &env)
                .unwrap()
                .metrics
                .is_none()
        );
    }

    #[test]
    fn tls_parameters_of_database_url_are_checked_at_load() {
        let with_url = |url: &str| {
            Config::parse(
                "s.yaml",
                &GOOD.replace("postgres://u@127.0.0.1:5432/app", url),
                &env,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            with_url("postgres://u@db/app?sslmode=verify").unwrap_err(),
            "s.yaml:1:15: database_url: sslmode=`verify` is not a libpq sslmode; use one of disable, allow, prefer, require, verify-ca, verify-full"
        );
        let missing =
            with_url("postgres://u@db/app?sslmode=verify-full&sslrootcert=/no/such/ca.pem")
                .unwrap_err();
        assert!(
            missing.starts_with(
                "s.yaml:1:15: database_url: cannot read sslrootcert `/no/such/ca.pem`: "
            ),
            "{missing}"
        );
        let no_key = with_url("postgres://u@db/app?sslmode=require&sslcert=/c.pem").unwrap_err();
        assert!(no_key.contains("sslcert needs sslkey"), "{no_key}");
        with_url("postgres://u@db/app?sslmode=require").unwrap();
    }
}
