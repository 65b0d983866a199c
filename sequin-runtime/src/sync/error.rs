//! Why a sync task stops, and whether waiting may cure it.

use crate::api;
use crate::catalog;
use crate::store::StoreError;

/// Errors that stop a sync task.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(Box<api::ApiError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog's errors but the API's (which are [`SyncError::Api`]).
    #[error(transparent)]
    Catalog(catalog::Error),
    #[error("{0}")]
    Decode(String),
    /// The API refused the connection's credentials: retrying cannot help,
    /// so the connection stops and says what to change.
    #[error(
        "connection `{connection}`: {source}; the credentials were refused: update {credentials} in the config (or the environment variable it comes from) and start sequin again"
    )]
    Credentials {
        connection: String,
        /// The credential names, quoted (`` `api_key` ``).
        credentials: String,
        #[source]
        source: Box<SyncError>,
    },
}

impl From<api::ApiError> for SyncError {
    fn from(e: api::ApiError) -> SyncError {
        SyncError::Api(Box::new(e))
    }
}

impl From<catalog::Error> for SyncError {
    fn from(e: catalog::Error) -> SyncError {
        match e {
            catalog::Error::Api(e) => SyncError::Api(e),
            e => SyncError::Catalog(e),
        }
    }
}

impl SyncError {
    /// Whether waiting may cure the error: the database unreachable or its
    /// session lost (a restart), the API down, timing out, limiting or
    /// answering garbage.
    /// Whether the database went away (restarting, unreachable): the
    /// connection starts again, rather than its task retrying a step.
    pub fn is_session_lost(&self) -> bool {
        match self {
            SyncError::Store(StoreError::Connect { .. }) => true,
            SyncError::Store(StoreError::Db { source, .. }) => {
                source.is_closed()
                    || source
                        .code()
                        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
            }
            _ => false,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Store(StoreError::Connect { .. }) => true,
            // A refused certificate or sslmode waits for the operator.
            SyncError::Store(StoreError::Tls { .. }) => false,
            // Another process syncs the connection now.
            SyncError::Store(StoreError::Fenced { .. }) => false,
            SyncError::Store(StoreError::Db { source, .. }) => match source.code() {
                None => true,
                Some(c) => {
                    let c = c.code();
                    // 55P03: a lock an application's transaction holds
                    // (sync sessions wait at most 300 ms, then retry).
                    c.starts_with("08")
                        || c.starts_with("57P")
                        || c == "40001"
                        || c == "40P01"
                        || c == "55P03"
                }
            },
            SyncError::Api(e) => match e.kind {
                api::ErrorKind::Timeout
                | api::ErrorKind::Network
                | api::ErrorKind::RateLimited
                | api::ErrorKind::Decode => true,
                api::ErrorKind::Http => e.status.is_none_or(|s| s >= 500),
                api::ErrorKind::Auth | api::ErrorKind::Config => false,
            },
            SyncError::Decode(_) => true,
            SyncError::Catalog(_) | SyncError::Credentials { .. } => false,
        }
    }

    /// Whether the API refused the credentials (HTTP 401 after any token
    /// refresh, or an OAuth token endpoint refusing the refresh token).
    /// Such an error stops the whole connection instead of being retried.
    pub fn is_auth(&self) -> bool {
        match self {
            SyncError::Api(e) => e.status == Some(401) || e.kind == api::ErrorKind::Auth,
            SyncError::Credentials { .. } => true,
            _ => false,
        }
    }
}
