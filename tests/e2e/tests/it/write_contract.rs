//! The write-through contract (issue #6), one scenario run against every
//! connector's simulator through the Sequin proxy. Each connector has a
//! [`Fixture`] (`write_contract/<connector>.rs`). It says how to start the
//! simulator, which table and columns the scenario writes, how to read the
//! API's records, and what the connector checks beyond the contract, at three
//! points of the scenario.
//!
//! The scenario: INSERT ... RETURNING (the API's id; the values in the API and
//! in Postgres), a multi-row INSERT, an UPDATE by an arbitrary WHERE (simple
//! protocol), a DELETE, the connector's own checks, read-only columns, too
//! many rows, a failed write aborting an explicit transaction, the
//! connector's checks that must precede the rollback (journal counts), then
//! a create and an update rolled back and undone upstream.

mod airtable;
mod hubspot;
mod salesforce;
mod stripe;
mod stripe_objects;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::time::Duration;

use crate::write_common::*;
use sequin_e2e::eventually;
use sequin_sim::{Api, Sim};
use serde_json::Value;
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_write_through() {
    contract(&stripe::FIXTURE).await;
}

/// Write-through of every top-level Stripe object the spec declares writes
/// for, and 0A000 for the operations it does not; refusals on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_write_through_every_object() {
    stripe_objects::every_object().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_write_through() {
    contract(&hubspot::FIXTURE).await;
}

/// Write-through of every other HubSpot object: create, update, delete (one
/// row and batches) and refusals by HubSpot and locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_write_through_every_object() {
    hubspot::every_other_object().await;
}

/// Write-through of HubSpot's pipelines, and owners refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_write_through_pipelines_and_owners() {
    hubspot::pipelines_and_owners().await;
}

/// Write-through of HubSpot's custom objects, one defined while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_write_through_custom_objects() {
    hubspot::custom_objects().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_write_through() {
    contract(&salesforce::FIXTURE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airtable_write_through() {
    contract(&airtable::FIXTURE).await;
}

/// A connector's check run inside the scenario.
pub type Step<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;
pub type Hook = for<'a> fn(&'a Ctx<'a>) -> Step<'a>;
/// A check of the row the first INSERT returned.
pub type RowHook = for<'a> fn(&'a Ctx<'a>, &'a Row) -> Step<'a>;

/// How the contract runs against one connector.
pub struct Fixture {
    pub api: Api,
    /// Records per object the simulator starts with.
    pub seed: usize,
    pub db_prefix: &'static str,
    /// The connection's YAML list item; may add to the simulator first
    /// (custom fields, discovered at start).
    pub connection: fn(&Sim) -> String,
    /// Objects to wait for besides the connector's first (discovered tables).
    pub objects_live: &'static [&'static str],
    /// `schema.table` the scenario writes.
    pub table: &'static str,
    /// What the API's errors start with: `[Stripe]: `.
    pub prefix: &'static str,
    /// Records of the table's object the API holds.
    pub count: fn(&Sim) -> usize,
    /// The API's record by id, as a map of its fields by API name.
    pub record: fn(&Sim, &str) -> Option<Value>,
    /// Whether an id has the API's shape.
    pub is_id: fn(&str) -> bool,
    /// The first INSERT: its row is the one the later steps update.
    pub insert: &'static [Field],
    /// Expressions returned after `id` by the first INSERT.
    pub returning: &'static str,
    pub after_insert: RowHook,
    pub multi: Multi,
    pub update: Update,
    /// The DELETE: `where column = $1` with this value reaches one row.
    pub delete_by: (&'static str, &'static str),
    /// The connector's own checks, after the DELETE.
    pub extra: Hook,
    /// `(column, SQL value)` an UPDATE of the first row may not set (428C9).
    pub read_only: &'static [(&'static str, &'static str)],
    /// The connector's max_rows_per_write.
    pub max_rows: usize,
    /// The column a bulk INSERT sets.
    pub bulk_column: &'static str,
    /// A write the API or the local checks refuse with `aborting_code`.
    pub aborting: fn(&Ctx) -> String,
    pub aborting_code: &'static str,
    /// Checks that must run before the rollback step (which compensates).
    pub before_rollback: Hook,
    /// The INSERT rolled back (its first field is looked for afterwards).
    pub rollback_insert: &'static [Field],
    /// The UPDATE of the first row rolled back.
    pub rollback_update: &'static [Field],
}

/// A column written with a value, and the API field that holds it.
pub struct Field {
    pub column: &'static str,
    /// `None`: the API's record as the fixture reads it lacks the field.
    pub api: Option<&'static str>,
    pub value: Val,
}

impl Field {
    pub const fn new(column: &'static str, api: &'static str, value: Val) -> Field {
        Field {
            column,
            api: Some(api),
            value,
        }
    }

    /// A field the scenario checks in Postgres only.
    pub const fn unread(column: &'static str, value: Val) -> Field {
        Field {
            column,
            api: None,
            value,
        }
    }

    /// The API field, for a step that checks it upstream.
    fn api(&self) -> &'static str {
        self.api
            .unwrap_or_else(|| panic!("{}: an API field to check", self.column))
    }
}

/// A value written by the scenario.
pub enum Val {
    Text(&'static str),
    Bool(bool),
    /// JSON text, written to a `jsonb` column.
    Json(&'static str),
}

impl Val {
    /// The SQL literal.
    pub fn sql(&self) -> String {
        match self {
            Val::Text(s) | Val::Json(s) => format!("'{}'", s.replace('\'', "''")),
            Val::Bool(b) => b.to_string(),
        }
    }

    /// The value as JSON (`to_jsonb` of the column; the API's field).
    pub fn json(&self) -> Value {
        match self {
            Val::Text(s) => Value::from(*s),
            Val::Bool(b) => Value::from(*b),
            Val::Json(s) => serde_json::from_str(s).expect("JSON"),
        }
    }
}

/// The multi-row INSERT.
pub struct Multi {
    pub sql: &'static str,
    pub rows: u64,
    /// A WHERE clause selecting exactly the inserted rows.
    pub filter: &'static str,
    /// `(column, API field)` equal in Postgres and the API; the first one
    /// tells the rows apart.
    pub compare: &'static [(&'static str, &'static str)],
}

/// The UPDATE by an arbitrary WHERE.
pub struct Update {
    pub filter: &'static str,
    /// The first field's value is set nowhere else in the table.
    pub set: &'static [Field],
    /// How many rows the WHERE reaches.
    pub matching: RangeInclusive<usize>,
}

/// What a connector's checks see: the setup, the fixture, the first row's
/// id, the record count the API should have, and values noted for later.
pub struct Ctx<'a> {
    pub f: &'static Fixture,
    pub t: &'a Setup,
    pub pg: &'a Client,
    pub proxy: &'a Client,
    /// The first INSERT's row ("Andrea Palladio" in every fixture).
    pub id: String,
    live: std::cell::Cell<usize>,
    notes: std::cell::RefCell<HashMap<&'static str, String>>,
}

impl<'a> Ctx<'a> {
    pub fn schema(&self) -> &'static str {
        self.f.table.split_once('.').expect("schema.table").0
    }

    pub fn table_name(&self) -> &'static str {
        self.f.table.split_once('.').expect("schema.table").1
    }

    /// Records the API holds now.
    pub fn count(&self) -> usize {
        (self.f.count)(&self.t.sim)
    }

    pub fn record(&self, id: &str) -> Option<Value> {
        (self.f.record)(&self.t.sim, id)
    }

    /// Records the API should hold.
    pub fn live(&self) -> usize {
        self.live.get()
    }

    pub fn set_live(&self, n: usize) {
        self.live.set(n);
    }

    /// The API holds the records it should.
    pub fn assert_live(&self, what: &str) {
        assert_eq!(self.count(), self.live(), "records upstream {what}");
    }

    /// Keeps a value for a later check of the connector.
    pub fn note(&self, key: &'static str, value: impl ToString) {
        self.notes.borrow_mut().insert(key, value.to_string());
    }

    pub fn noted(&self, key: &str) -> String {
        self.notes.borrow()[key].clone()
    }

    /// Rows of the table matching `filter`.
    pub async fn count_where(&self, filter: &str) -> i64 {
        count(
            self.pg,
            &format!("select count(*) from {} where {filter}", self.f.table),
        )
        .await
    }

    /// The id of the one row matching `filter`.
    pub async fn id_where(&self, filter: &str) -> String {
        let sql = format!("select id from {} where {filter}", self.f.table);
        self.pg
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0)
    }

    /// Checks a rejection of a write of this table.
    pub fn rejected<'e>(
        &self,
        err: &'e tokio_postgres::Error,
        code: &str,
        column: Option<&str>,
        message_has: &[&str],
        detail_has: &[&str],
    ) -> &'e DbError {
        assert_rejection(
            err,
            &Rejection {
                code,
                prefix: self.f.prefix,
                schema: self.schema(),
                table: self.table_name(),
                column,
                message_has,
                detail_has,
            },
        )
    }
}

/// Runs the scenario against the connector of `f`.
pub async fn contract(f: &'static Fixture) {
    let t = Setup::start(f.api, f.seed, f.db_prefix, f.connection).await;
    let schema = f.table.split_once('.').expect("schema.table").0;
    if !f.objects_live.is_empty() {
        t.wait_objects_live(schema, f.objects_live).await;
    }
    let seeded = (f.count)(&t.sim);
    assert_eq!(seeded, f.seed);
    let row = insert_returning(f, &t).await;
    {
        let c = Ctx {
            f,
            t: &t,
            pg: &t.pg,
            proxy: &t.proxy,
            id: row.get(0),
            live: std::cell::Cell::new(seeded + 1),
            notes: Default::default(),
        };
        c.assert_live("after the INSERT");
        assert_no_pending_ids(c.pg, f.table, "id").await;
        (f.after_insert)(&c, &row).await;
        multi_row_insert(&c).await;
        update_by_where(&c).await;
        delete(&c).await;
        (f.extra)(&c).await;
        read_only(&c).await;
        too_many_rows(&c).await;
        failed_write_aborts(&c).await;
        (f.before_rollback)(&c).await;
        rollback_undone(&c).await;
    }
    t.finish().await;
}

/// `a, b` and `'x', true` of an INSERT.
fn columns_values(fields: &[Field]) -> (String, String) {
    let columns: Vec<&str> = fields.iter().map(|w| w.column).collect();
    let values: Vec<String> = fields.iter().map(|w| w.value.sql()).collect();
    (columns.join(", "), values.join(", "))
}

/// `a = 'x', b = true` of an UPDATE (`sep` `, `) or a WHERE (` and `).
fn assignments(fields: &[Field], sep: &str) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|w| format!("{} = {}", w.column, w.value.sql()))
        .collect();
    parts.join(sep)
}

/// A row of `table` as JSON (`to_jsonb`), by id.
async fn local_row(pg: &Client, table: &str, id: &str) -> Value {
    pg.query_one(
        &format!("select to_jsonb(t) from {table} t where id = $1"),
        &[&id],
    )
    .await
    .unwrap_or_else(|e| panic!("{id} is in {table}: {e:?}"))
    .get(0)
}

/// INSERT ... RETURNING: the API's id, the values in the API and in
/// Postgres under that id.
async fn insert_returning(f: &Fixture, t: &Setup) -> Row {
    let (columns, values) = columns_values(f.insert);
    let sql = format!(
        "insert into {} ({columns}) values ({values}) returning id, {}",
        f.table, f.returning
    );
    let row = t
        .proxy
        .query_one(&sql, &[])
        .await
        .expect("insert through the proxy");
    let id: String = row.get(0);
    assert!((f.is_id)(&id), "the API's id: {id}");
    let rec = (f.record)(&t.sim, &id).expect("the API holds the record");
    let local = local_row(&t.pg, f.table, &id).await;
    for w in f.insert {
        if let Some(api) = w.api {
            assert_eq!(rec[api], w.value.json(), "{api} in the API");
        }
        assert_eq!(local[w.column], w.value.json(), "{} in Postgres", w.column);
    }
    row
}

/// A multi-row INSERT: every row upstream under its own id.
async fn multi_row_insert(c: &Ctx<'_>) {
    let m = &c.f.multi;
    let n = c.proxy.execute(m.sql, &[]).await.expect("multi-row insert");
    assert_eq!(n, m.rows, "rows affected");
    c.set_live(c.live() + m.rows as usize);
    c.assert_live("after the multi-row INSERT");
    let rows: Vec<Value> =
        c.pg.query(
            &format!("select to_jsonb(t) from {} t where {}", c.f.table, m.filter),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows.len() as u64, m.rows, "{rows:?}");
    let mut keys = HashSet::new();
    for local in &rows {
        let id = local["id"].as_str().expect("a text id");
        assert!((c.f.is_id)(id), "{id}");
        let rec = c.record(id).unwrap_or_else(|| panic!("{id} is in the API"));
        for (column, field) in m.compare {
            assert_eq!(rec[*field], local[*column], "{field} of {id}");
        }
        keys.insert(local[m.compare[0].0].to_string());
    }
    assert_eq!(keys.len() as u64, m.rows, "one row each: {rows:?}");
    assert_no_pending_ids(c.pg, c.f.table, "id").await;
}

/// The values of `fields` in an API record (`None`: the record lacks it).
fn fields_of(rec: &Value, fields: &[Field]) -> Vec<Option<Value>> {
    fields.iter().map(|w| rec.get(w.api()).cloned()).collect()
}

/// An UPDATE by an arbitrary WHERE (simple protocol): every matching row
/// changes upstream, the others do not.
async fn update_by_where(c: &Ctx<'_>) {
    let u = &c.f.update;
    let table = c.f.table;
    let matching: Vec<String> =
        c.pg.query(&format!("select id from {table} where {}", u.filter), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(u.matching.contains(&matching.len()), "{matching:?}");
    let other = c
        .id_where(&format!("not ({}) order by id limit 1", u.filter))
        .await;
    let other_before = fields_of(&c.record(&other).unwrap(), u.set);
    let n = simple_rows(
        c.proxy,
        &format!(
            "update {table} set {} where {}",
            assignments(u.set, ", "),
            u.filter
        ),
    )
    .await
    .expect("update through the proxy");
    assert_eq!(n, matching.len() as u64, "rows affected");
    for id in &matching {
        let rec = c.record(id).unwrap();
        for w in u.set {
            assert_eq!(rec[w.api()], w.value.json(), "{} of {id}", w.api());
        }
    }
    assert_eq!(
        fields_of(&c.record(&other).unwrap(), u.set),
        other_before,
        "a row the WHERE does not reach"
    );
    let marker = assignments(&u.set[..1], " and ");
    assert_eq!(c.count_where(&marker).await, matching.len() as i64);
    let all = format!("({}) and {}", u.filter, assignments(u.set, " and "));
    assert_eq!(c.count_where(&all).await, matching.len() as i64);
}

/// A DELETE: gone upstream and locally.
async fn delete(c: &Ctx<'_>) {
    let (column, value) = c.f.delete_by;
    let table = c.f.table;
    let id: String =
        c.pg.query_one(
            &format!("select id from {table} where {column} = $1"),
            &[&value],
        )
        .await
        .unwrap()
        .get(0);
    let n = c
        .proxy
        .execute(
            &format!("delete from {table} where {column} = $1"),
            &[&value],
        )
        .await
        .expect("delete through the proxy");
    assert_eq!(n, 1);
    assert!(c.record(&id).is_none(), "deleted upstream");
    assert_eq!(c.count_where(&format!("id = '{id}'")).await, 0);
    c.set_live(c.live() - 1);
    c.assert_live("after the DELETE");
}

/// Read-only columns (428C9).
async fn read_only(c: &Ctx<'_>) {
    for (column, value) in c.f.read_only {
        let sql = format!("update {} set {column} = {value} where id = $1", c.f.table);
        let err = expect_err(c.proxy.execute(&sql, &[&c.id]).await, &sql);
        c.rejected(&err, "428C9", Some(column), &[], &[]);
    }
}

/// Too many rows for one statement (54000, naming the limit).
async fn too_many_rows(c: &Ctx<'_>) {
    let (table, column, max) = (c.f.table, c.f.bulk_column, c.f.max_rows);
    let err = expect_err(
        c.proxy
            .execute(
                &format!(
                    "insert into {table} ({column}) select 'Bulk ' || g from generate_series(1, {}) g",
                    max + 1
                ),
                &[],
            )
            .await,
        "too many rows in one statement",
    );
    let db = db_error(&err);
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().starts_with(c.f.prefix), "{db:?}");
    assert!(
        db.message().contains(&max.to_string()),
        "names the limit: {db:?}"
    );
    c.assert_live("after too many rows");
    assert_eq!(c.count_where(&format!("{column} like 'Bulk %'")).await, 0);
}

/// A failed write in an explicit transaction aborts it.
async fn failed_write_aborts(c: &Ctx<'_>) {
    let err = assert_aborts_transaction(c.proxy, &(c.f.aborting)(c)).await;
    assert_eq!(db_error(&err).code().code(), c.f.aborting_code, "{err:?}");
    c.assert_live("after the aborted transaction");
}

/// A create and an update rolled back are undone upstream: the record gone,
/// the fields as they were, the create compensated in the journal.
async fn rollback_undone(c: &Ctx<'_>) {
    let (table, set) = (c.f.table, c.f.rollback_update);
    let upstream_before = fields_of(&c.record(&c.id).unwrap(), set);
    let local_before = local_row(c.pg, table, &c.id).await;
    c.proxy.batch_execute("BEGIN").await.unwrap();
    let (columns, values) = columns_values(c.f.rollback_insert);
    let rolled: String = c
        .proxy
        .query_one(
            &format!("insert into {table} ({columns}) values ({values}) returning id"),
            &[],
        )
        .await
        .expect("insert in a transaction")
        .get(0);
    assert!((c.f.is_id)(&rolled), "{rolled}");
    let n = c
        .proxy
        .execute(
            &format!(
                "update {table} set {} where id = $1",
                assignments(set, ", ")
            ),
            &[&c.id],
        )
        .await
        .expect("update in a transaction");
    assert_eq!(n, 1);
    assert!(
        c.record(&rolled).is_some(),
        "applied when the statement ran"
    );
    let rec = c.record(&c.id).unwrap();
    for w in set {
        assert_eq!(rec[w.api()], w.value.json(), "{} applied", w.api());
    }
    c.proxy.batch_execute("ROLLBACK").await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the rolled-back create and update undone upstream",
        || async {
            let created = c.record(&rolled).is_some();
            let now = fields_of(&c.record(&c.id).unwrap(), set);
            (!created && now == upstream_before, (created, now))
        },
    )
    .await;
    c.assert_live("after the rollback");
    let marks = format!(
        "id = '{rolled}' or {} or {}",
        assignments(&c.f.rollback_insert[..1], " and "),
        assignments(&set[..1], " and ")
    );
    assert_eq!(c.count_where(&marks).await, 0, "{marks}");
    let local = local_row(c.pg, table, &c.id).await;
    for w in set {
        assert_eq!(local[w.column], local_before[w.column], "{} kept", w.column);
    }
    let states = journal_states(c.pg, &rolled).await;
    assert_eq!(states, ["compensated"], "journal of the rolled-back create");
}

/// The journal states of every API effect on `api_id`, once none is still
/// `applied` (the outcome of the client's transaction is recorded right
/// after it ends).
pub async fn journal_states(pg: &Client, api_id: &str) -> Vec<String> {
    eventually(Duration::from_secs(30), "the journal settles", || async {
        let states: Vec<String> = pg
            .query(
                "select state from sequin.write_journal where api_id = $1 order by state",
                &[&api_id],
            )
            .await
            .expect("sequin.write_journal is readable")
            .iter()
            .map(|r| r.get(0))
            .collect();
        (
            // Open entries: an intent (its API answer not yet folded in
            // by the reconciler) or applied (its transaction not ended).
            !states.is_empty() && !states.iter().any(|s| s == "applied" || s == "intent"),
            states,
        )
    })
    .await
}

/// A hook with nothing to check.
pub fn nothing<'a>(_: &'a Ctx<'a>) -> Step<'a> {
    Box::pin(async {})
}
