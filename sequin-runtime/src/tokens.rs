//! OAuth2 tokens persisted in `sequin.oauth_token`, so a rotated refresh
//! token survives restarts (the configured one may already be revoked).

use crate::api::auth::BoxFuture;
use crate::api::{Secret, StoredToken, TokenStore, TokenStoreError};

/// A [`TokenStore`] over Postgres, through a session of a pool lent for
/// each read or write.
pub struct PgTokenStore {
    pool: crate::store::Pool,
}

impl PgTokenStore {
    pub fn new(pool: crate::store::Pool) -> PgTokenStore {
        PgTokenStore { pool }
    }

    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, TokenStoreError> {
        let session = self.pool.lease(None, crate::store::Origin::Sync).await?;
        // The server's message, not just "db error".
        f(session.client())
            .await
            .map_err(|e| crate::store::error_chain(&e).into())
    }
}

impl TokenStore for PgTokenStore {
    fn load<'a>(
        &'a self,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredToken>, TokenStoreError>> {
        Box::pin(async move {
            let row = self
                .with_client(async |c| {
                    c.query_opt(
                        "SELECT refresh_token, access_token, expires_at, instance_url
                           FROM sequin.oauth_token WHERE connection = $1",
                        &[&connection],
                    )
                    .await
                })
                .await?;
            Ok(row.map(|r| StoredToken {
                refresh_token: Secret::new(r.get::<_, String>(0)),
                access_token: r.get::<_, Option<String>>(1).map(Secret::new),
                expires_at: r.get(2),
                instance_url: r.get(3),
            }))
        })
    }

    fn save<'a>(
        &'a self,
        connection: &'a str,
        token: &'a StoredToken,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            let refresh = token.refresh_token.expose().to_string();
            let access = token.access_token.as_ref().map(|s| s.expose().to_string());
            self.with_client(async |c| {
                c.execute(
                    "INSERT INTO sequin.oauth_token (connection, refresh_token, access_token, expires_at, instance_url, updated_at)
                     VALUES ($1, $2, $3, $4, $5, now())
                     ON CONFLICT (connection) DO UPDATE SET refresh_token = EXCLUDED.refresh_token,
                        access_token = EXCLUDED.access_token, expires_at = EXCLUDED.expires_at,
                        instance_url = EXCLUDED.instance_url, updated_at = now()",
                    &[&connection, &refresh, &access, &token.expires_at, &token.instance_url],
                )
                .await
            })
            .await?;
            Ok(())
        })
    }
}
