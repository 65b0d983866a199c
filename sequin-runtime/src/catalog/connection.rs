//! One configured connection as the catalog sees it: its config, its spec
//! (with the connection's rate-limit override) and its API client.

use std::sync::{Arc, OnceLock};

use sequin_spec::Connector;

use super::{Error, ObjectPlan};
use crate::api::{Budgets, Client, ClientConfig, Vars};
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

impl Connection {
    /// The spec (with the connection's rate-limit override) and the API
    /// client of `conn`. Every client of one connection in this process
    /// shares one rate-limit budget, so sync and write-through together stay
    /// within the API's limits. `pool`: sessions of the database, where
    /// OAuth tokens are kept.
    pub fn open(
        pool: &crate::store::Pool,
        conn: &ConnectionConfig,
        metrics: &Metrics,
    ) -> Result<Connection, Error> {
        static BUDGETS: OnceLock<Budgets> = OnceLock::new();
        let loaded = registry::get(&conn.connector).expect("config is checked");
        let mut spec = conn.spec.as_deref().unwrap_or(&loaded.spec).clone();
        if let Some(r) = &conn.rate_limit {
            spec.rate_limit.requests = r.requests;
            spec.rate_limit.per = r.per.clone();
            spec.rate_limit.burst = None;
        }
        let spec = Arc::new(spec);
        let mut cc = ClientConfig::new(conn.name.clone());
        cc.base_url = conn.base_url.clone();
        cc.token_url = conn.token_url.clone();
        cc.credentials = conn.credentials.clone();
        cc.params = conn.params.clone();
        cc.token_store = Some(Arc::new(crate::tokens::PgTokenStore::new(pool.clone())));
        cc.budgets = Some(BUDGETS.get_or_init(Default::default).clone());
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
