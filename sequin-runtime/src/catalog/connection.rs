//! One configured connection as the catalog sees it: its config, its spec
//! (with the connection's rate-limit override) and its API client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sequin_spec::Connector;

use super::{Error, ObjectPlan};
use crate::api::{Client, ClientConfig, Vars};
use crate::config::ConnectionConfig;
use crate::metrics::Metrics;
use crate::registry;

/// A connection's config, spec and API client. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    pub config: ConnectionConfig,
    pub spec: Arc<Connector>,
    pub client: Client,
}

/// The spec a connection runs: the compiled-in one with the connection's
/// rate limit, shared by every connection with the same (a spec is a few
/// MB in memory; a thousand copies of Stripe's would be most of a
/// process). A spec set by an embedding program is the connection's own.
fn spec_of(conn: &ConnectionConfig) -> Arc<Connector> {
    type Key = (String, Option<(u32, std::time::Duration)>);
    static SHARED: Mutex<BTreeMap<Key, Arc<Connector>>> = Mutex::new(BTreeMap::new());
    let with_limit = |base: &Connector| {
        let mut spec = base.clone();
        if let Some(r) = &conn.rate_limit {
            spec.rate_limit.requests = r.requests;
            spec.rate_limit.per = r.per.clone();
            spec.rate_limit.burst = None;
        }
        Arc::new(spec)
    };
    if let Some(own) = &conn.spec {
        return with_limit(own);
    }
    let key = (
        conn.connector.clone(),
        conn.rate_limit.as_ref().map(|r| (r.requests, r.per.get())),
    );
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    shared
        .entry(key)
        .or_insert_with(|| {
            with_limit(
                &registry::get(&conn.connector)
                    .expect("config is checked")
                    .spec,
            )
        })
        .clone()
}

impl Connection {
    /// The spec (with the connection's rate-limit override) and the API
    /// client of `conn`. Every client of one connection shares one
    /// rate-limit budget, in this process and with every other process of
    /// the database, so sync and write-through together stay within the
    /// API's limits. `pool`: sessions of the database, where OAuth tokens
    /// are kept.
    pub fn open(
        pool: &crate::store::Pool,
        conn: &ConnectionConfig,
        metrics: &Metrics,
    ) -> Result<Connection, Error> {
        let spec = spec_of(conn);
        let mut cc = ClientConfig::new(conn.name.clone());
        cc.base_url = conn.base_url.clone();
        cc.token_url = conn.token_url.clone();
        cc.credentials = conn.credentials.clone();
        cc.params = conn.params.clone();
        cc.token_store = Some(Arc::new(crate::tokens::PgTokenStore::new(pool.clone())));
        cc.budgets = Some(crate::rates::budgets(pool.url()));
        cc.metrics = metrics.clone();
        if let Some(q) = &conn.quota {
            cc.quota = q.settings();
        }
        if let Some(t) = conn.request_timeout {
            cc.retry.timeout = t;
        }
        let client = Client::new(spec.clone(), cc)?;
        Ok(Connection {
            config: conn.clone(),
            spec,
            client,
        })
    }

    /// Template variables of an object, or of the connection when `None`
    /// (connection params are added by the client).
    pub fn vars(&self, plan: Option<&ObjectPlan>) -> Vars {
        match plan {
            Some(p) => p.vars(self.spec.fields_under.as_deref()),
            None => Vars::new(),
        }
    }

    /// Whether the connection syncs the static table (or link table)
    /// `name`.
    pub fn wants(&self, name: &str) -> bool {
        super::select::wanted_static(&self.config, &self.spec, name)
    }
}
