//! A transparent Postgres wire-protocol proxy (session mode: one server
//! connection per client) that finds statements writing synced tables and
//! hands them to an [`Interceptor`] (the seam write-through builds on).
//!
//! Layers, each depending only on those before it:
//! [`codec`] (one module per message) ← [`state`] (protocol state machine) ←
//! [`backend`] (server connections) ← `frontend` (client sessions, with
//! `reply` rendering an interceptor's results and errors) ←
//! [`Proxy`] (listener, cancel keys, TLS). [`pgtls`] reads libpq's
//! `sslmode` parameters for the upstream connection. Classification ([`classify`])
//! uses the real Postgres grammar through pg_query, behind a cheap
//! pre-filter and a cache.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sequin_proxy::{PassThrough, Proxy, ProxyConfig, SyncedTables, TableName, Upstream};
//! let mut config = ProxyConfig::new(
//!     "127.0.0.1:6432".parse()?,
//!     Upstream::plain("127.0.0.1", 5432),
//! );
//! config.synced = SyncedTables::new([TableName::new("stripe", "customer")]);
//! let proxy = Proxy::bind(config, Arc::new(PassThrough)).await?.spawn();
//! // ... later
//! proxy.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod classify;
pub mod codec;
mod frontend;
pub mod interceptor;
pub mod pgtls;
mod reply;
mod server;
pub mod state;
pub mod synced;
mod tls;

pub use backend::Upstream;
pub use classify::{
    Classification, ClassifiedStatement, Classifier, OnConflict, Shape, TableWrite, Via, WriteKind,
};
pub use frontend::{SessionEnd, SessionError};
pub use interceptor::{
    BoxFuture, InjectError, InjectedQuery, InterceptContext, Intercepted, Interceptor, Outcome,
    PassThrough, Protocol, QueryResult, Reply, SessionInfo, Step,
};
pub use pgtls::{PgTls, SslMode, SslParams, TlsParamError};
pub use server::{Proxy, ProxyConfig, ProxyError, ProxyHandle, ProxyStats};
pub use synced::{ALL_TABLES, SyncedSet, SyncedTables, TableName};
pub use tls::{TlsConfig, TlsError};
