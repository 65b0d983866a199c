//! The synced tables write-through can write: each connection's API client
//! and object plans (columns incl. discovered ones, endpoints), looked up
//! at start and again when a statement names a table not known yet.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sequin_spec::Connector;

use crate::api::Client;
pub(super) use crate::catalog::Connection;
use crate::catalog::ObjectPlan;

/// A synced table write-through can write: its connection's API client and
/// the object's plan (columns incl. discovered ones, endpoints).
pub struct Table {
    pub connection: String,
    pub spec: Arc<Connector>,
    pub client: Client,
    pub plan: ObjectPlan,
    /// Most rows one statement may write.
    pub max_rows: u32,
    /// The write-back's statements, built on first use (a statement's
    /// text names every column: building it per write cost more than the
    /// rest of the write-back's work in sequin).
    write_back: std::sync::OnceLock<WriteBackSql>,
    /// The endpoints' template variables, made on first use (`{fields}`
    /// lists every column).
    vars: std::sync::OnceLock<crate::api::Vars>,
}

/// The texts of a table's write-back statements ([`super::sql`]).
pub struct WriteBackSql {
    /// Created rows under the API's ids ([`super::sql::write_back_created`]).
    pub created: String,
    /// Updated rows rewritten ([`super::sql::write_back`]).
    pub updated: String,
}

impl Table {
    /// The write-back's statement texts.
    pub fn write_back_sql(&self) -> &WriteBackSql {
        self.write_back.get_or_init(|| {
            let t = &self.plan.table;
            let qualified = t.qualified();
            let pk = super::sql::Key::of(t);
            let columns: Vec<String> = t.columns.iter().map(|c| c.name.to_string()).collect();
            WriteBackSql {
                created: super::sql::write_back_created(&qualified, pk, &columns),
                updated: super::sql::write_back(&qualified, pk, &columns),
            }
        })
    }

    /// Template variables of the table's endpoints.
    pub fn vars(&self) -> &crate::api::Vars {
        self.vars
            .get_or_init(|| self.plan.vars(self.spec.fields_under.as_deref()))
    }

    /// The API's display name, which prefixes every error message.
    pub fn api(&self) -> &str {
        &self.spec.display_name
    }

    /// The column of an API field name, if it is one.
    pub fn column_of(&self, field: Option<&str>) -> Option<String> {
        let f = field?;
        let find = |f: &str| {
            self.plan
                .table
                .columns
                .iter()
                .find(|c| &*c.api_name == f || &*c.path == f || c.path.ends_with(&format!(".{f}")))
                .map(|c| c.name.to_string())
        };
        // A member of a nested field (Stripe's form keys
        // `invoice_settings[footer]`, dotted paths) belongs to its column.
        find(f).or_else(|| {
            let top = f.split(['[', '.']).next().unwrap_or(f);
            (top != f).then(|| find(top)).flatten()
        })
    }
}

/// Every connection's tables, refreshed on demand.
pub(super) struct Catalog {
    pub connections: Vec<Connection>,
    tables: RwLock<HashMap<(String, String), Arc<Table>>>,
    last_refresh: std::sync::Mutex<Option<Instant>>,
    /// The last failure to look up a connection's objects, by connection.
    lookup_errors: std::sync::Mutex<HashMap<String, String>>,
}

/// Least time between two refreshes caused by unknown tables.
const REFRESH_MIN: Duration = Duration::from_secs(5);

impl Catalog {
    pub fn new(connections: Vec<Connection>) -> Catalog {
        Catalog {
            connections,
            tables: RwLock::new(HashMap::new()),
            last_refresh: std::sync::Mutex::new(None),
            lookup_errors: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Looks up every connection's objects again (new Airtable tables,
    /// custom fields).
    pub async fn refresh(&self) {
        *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        for c in &self.connections {
            let plans = c.plans_with_fields().await;
            let mut errors = self.lookup_errors.lock().unwrap_or_else(|e| e.into_inner());
            match plans {
                Ok(plans) => {
                    errors.remove(&c.config.name);
                    let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
                    tables.retain(|(schema, _), _| schema != &c.config.name);
                    for plan in plans {
                        let max_rows = max_rows(&c.spec, &plan);
                        tables.insert(
                            (c.config.name.clone(), plan.table.name.clone()),
                            Arc::new(Table {
                                connection: c.config.name.clone(),
                                spec: c.spec.clone(),
                                client: c.client.clone(),
                                plan,
                                max_rows,
                                write_back: Default::default(),
                                vars: Default::default(),
                            }),
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(connection = %c.config.name, error = %e, "write-through: cannot look up the connection's objects");
                    errors.insert(c.config.name.clone(), e.to_string());
                }
            }
        }
    }

    /// The table `schema.table`, if write-through knows it.
    pub fn table(&self, schema: &str, table: &str) -> Option<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// The table, looked up again (at most every few seconds) when unknown.
    pub async fn table_or_refresh(&self, schema: &str, table: &str) -> Option<Arc<Table>> {
        if let Some(t) = self.table(schema, table) {
            return Some(t);
        }
        let recent = self
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < REFRESH_MIN);
        if !recent {
            self.refresh().await;
        }
        self.table(schema, table)
    }

    /// The last failure to look up `connection`'s objects.
    pub fn lookup_error(&self, connection: &str) -> Option<String> {
        self.lookup_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(connection)
            .cloned()
    }

    /// The connection named `name` (its schema).
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.config.name == name)
    }
}

fn max_rows(spec: &Connector, plan: &ObjectPlan) -> u32 {
    if let Some(o) = spec.objects.iter().find(|o| o.name == plan.table.name) {
        return o.max_rows_per_write;
    }
    if let (Some(l), Some(_)) = (&spec.links, &plan.link) {
        return l.max_rows_per_write;
    }
    spec.discovered_objects
        .as_ref()
        .map(|d| d.max_rows_per_write)
        .unwrap_or(100)
}
