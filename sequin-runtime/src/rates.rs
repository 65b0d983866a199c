//! Rate-limit slots kept in Postgres (`sequin.rate_take`, migration 0013),
//! so every process of one database shares each API account's budget
//! ([`crate::api::ledger`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::api::auth::BoxFuture;
use crate::api::{AccountAnswer, AccountAsk, Budgets, RateStore, TokenStoreError};
use crate::store::{Origin, Pool, PoolSettings};

/// A [`RateStore`] over Postgres, on a session of its own (so renewals
/// never wait behind sync's batches).
pub struct PgRateStore {
    pool: Pool,
}

impl PgRateStore {
    /// A store in the database at `url`.
    pub fn new(url: &str) -> PgRateStore {
        PgRateStore {
            pool: Pool::named(
                url,
                PoolSettings {
                    size: 1,
                    per_connection: 1,
                    idle_timeout: Duration::from_secs(60),
                },
                "sequin-rates",
            ),
        }
    }
}

/// The budgets of this process for the database at `url`: every client of
/// one account in the process shares one, and the processes of one
/// database share its slots.
pub fn budgets(url: &str) -> Budgets {
    static BY_URL: OnceLock<Mutex<HashMap<String, Budgets>>> = OnceLock::new();
    let mut map = BY_URL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(url.to_string())
        .or_insert_with(|| Budgets::shared(Arc::new(PgRateStore::new(url))))
        .clone()
}

impl RateStore for PgRateStore {
    fn take<'a>(
        &'a self,
        holder: &'a str,
        asks: &'a [AccountAsk],
    ) -> BoxFuture<'a, Result<Vec<AccountAnswer>, TokenStoreError>> {
        Box::pin(async move {
            let session = self.pool.lease(None, Origin::Sync).await?;
            let column = |f: fn(&AccountAsk) -> u32| -> Vec<i32> {
                asks.iter()
                    .map(|a| i32::try_from(f(a)).unwrap_or(i32::MAX))
                    .collect()
            };
            let accounts: Vec<&str> = asks.iter().map(|a| a.account.as_str()).collect();
            let ttl: Vec<f64> = asks.iter().map(|a| a.ttl.as_secs_f64()).collect();
            let wants: Vec<i16> = asks.iter().map(|a| a.wants).collect();
            let pauses: Vec<Option<std::time::SystemTime>> =
                asks.iter().map(|a| a.paused_until).collect();
            let sent: Vec<i64> = asks
                .iter()
                .map(|a| i64::try_from(a.sent).unwrap_or(i64::MAX))
                .collect();
            let rows = session
                .client()
                .query(
                    "SELECT account, reads, total, holders, contended, paused_until, sent
                       FROM sequin.rate_take($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    &[
                        &holder,
                        &accounts,
                        &ttl,
                        &column(|a| a.capacity),
                        &column(|a| a.read_capacity),
                        &column(|a| a.reads),
                        &column(|a| a.total),
                        &column(|a| a.want_reads),
                        &column(|a| a.want_total),
                        &wants,
                        &pauses,
                        &sent,
                    ],
                )
                .await
                .map_err(|e| crate::store::error_chain(&e))?;
            let count = |n: i32| u32::try_from(n).unwrap_or(0);
            Ok(rows
                .iter()
                .map(|r| AccountAnswer {
                    account: r.get(0),
                    reads: count(r.get(1)),
                    total: count(r.get(2)),
                    holders: count(r.get(3)),
                    contended: r.get(4),
                    paused_until: r.get(5),
                    sent: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
                })
                .collect())
        })
    }
}
