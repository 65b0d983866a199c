//! Shared by the `sync_*` end-to-end tests: compares a synced Postgres table
//! with the API's own records, every row and every column, typed.
//!
//! The comparison is deliberately written apart from the engine's decoder
//! (`sequin_spec::record`): Postgres renders each column itself (timestamps
//! as epoch microseconds, numerics as numbers, arrays as arrays), and the
//! API's JSON is normalised here by the column's declared type. A decoder bug
//! therefore shows up as a mismatch instead of being repeated on both sides.

use std::collections::BTreeMap;
use std::time::Duration;

use sequin_spec::model::{FieldType, TimeFormat};
use sequin_spec::naming::quote_ident;
use serde_json::Value;

/// A column to compare: where its value is in an API record and its type.
#[derive(Clone, Debug)]
pub struct Col {
    /// The Postgres column.
    pub name: String,
    /// Dot path of the value in an API record.
    pub path: String,
    pub ty: FieldType,
    /// The API sends the value as a string whatever its type (HubSpot).
    pub stringly: bool,
    pub time_format: TimeFormat,
}

impl Col {
    pub fn new(name: &str, path: &str, ty: FieldType) -> Col {
        Col {
            name: name.to_string(),
            path: path.to_string(),
            ty,
            stringly: false,
            time_format: TimeFormat::Iso8601,
        }
    }
}

/// Every column the connector's spec declares for `table`.
pub fn spec_columns(connector: &str, table: &str) -> Vec<Col> {
    let loaded = sequin_runtime::registry::get(connector).expect("connector is compiled in");
    loaded
        .object_columns(table)
        .expect("table is in the spec")
        .iter()
        .map(|c| Col {
            name: c.name.to_string(),
            path: c.path.to_string(),
            ty: c.ty,
            stringly: c.stringly,
            time_format: c.time_format,
        })
        .collect()
}

/// A value in canonical form, comparable across Postgres and the API.
#[derive(Clone, Debug, PartialEq)]
pub enum Canon {
    Null,
    Text(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    /// Microseconds since the epoch.
    Micros(i64),
    Date(String),
    Json(Value),
    Array(Vec<String>),
    /// A value the column's type cannot hold (always a mismatch).
    Bad(String),
}

/// Parses an API timestamp: RFC 3339, Salesforce's `+0000` offsets, or
/// epoch numbers per the column's time format.
pub fn parse_time(v: &Value, fmt: TimeFormat) -> Option<i64> {
    let num = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    if let Some(n) = num {
        return match fmt {
            TimeFormat::UnixSeconds => Some(n * 1_000_000),
            // HubSpot datetime properties travel as epoch milliseconds.
            TimeFormat::UnixMillis | TimeFormat::Iso8601 => Some(n * 1000),
        };
    }
    let s = v.as_str()?;
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.timestamp_micros())
}

/// The API's value of `col` in `record`, in canonical form.
pub fn api_value(col: &Col, record: &Value) -> Canon {
    let mut cur = Some(record);
    for seg in col.path.split('.') {
        cur = cur.and_then(|c| c.get(seg));
    }
    let v = match cur {
        None | Some(Value::Null) => return Canon::Null,
        Some(v) => v,
    };
    if col.stringly && col.ty != FieldType::String && v.as_str() == Some("") {
        return Canon::Null;
    }
    let bad = || Canon::Bad(v.to_string());
    match col.ty {
        FieldType::String => match v {
            Value::String(s) => Canon::Text(s.clone()),
            other => Canon::Text(other.to_string()),
        },
        FieldType::Integer => match v {
            Value::Number(n) => n.as_i64().map(Canon::Int).unwrap_or_else(bad),
            Value::String(s) => s.parse().map(Canon::Int).unwrap_or_else(|_| bad()),
            _ => bad(),
        },
        FieldType::Float | FieldType::Decimal => match v {
            Value::Number(n) => n.as_f64().map(Canon::Num).unwrap_or_else(bad),
            Value::String(s) => s.parse().map(Canon::Num).unwrap_or_else(|_| bad()),
            _ => bad(),
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Canon::Bool(*b),
            Value::String(s) if s == "true" => Canon::Bool(true),
            Value::String(s) if s == "false" => Canon::Bool(false),
            _ => bad(),
        },
        FieldType::Timestamp => parse_time(v, col.time_format)
            .map(Canon::Micros)
            .unwrap_or_else(bad),
        FieldType::Date => match v.as_str() {
            Some(s) if s.len() >= 10 => Canon::Date(s[..10].to_string()),
            _ => bad(),
        },
        FieldType::Json => Canon::Json(v.clone()),
        FieldType::StringArray => match v {
            Value::Array(items) => Canon::Array(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).unwrap_or(i.to_string()))
                    .collect(),
            ),
            _ => bad(),
        },
    }
}

/// Postgres's rendering of a column, turned canonical.
fn db_value(ty: FieldType, v: &Value) -> Canon {
    if v.is_null() {
        return Canon::Null;
    }
    let bad = || Canon::Bad(format!("db: {v}"));
    match ty {
        FieldType::String => v
            .as_str()
            .map(|s| Canon::Text(s.into()))
            .unwrap_or_else(bad),
        FieldType::Integer => v.as_i64().map(Canon::Int).unwrap_or_else(bad),
        FieldType::Float | FieldType::Decimal => v.as_f64().map(Canon::Num).unwrap_or_else(bad),
        FieldType::Boolean => v.as_bool().map(Canon::Bool).unwrap_or_else(bad),
        FieldType::Timestamp => v.as_i64().map(Canon::Micros).unwrap_or_else(bad),
        FieldType::Date => v
            .as_str()
            .map(|s| Canon::Date(s.into()))
            .unwrap_or_else(bad),
        FieldType::Json => Canon::Json(v.clone()),
        FieldType::StringArray => match v.as_array() {
            Some(items) => Canon::Array(
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            None => bad(),
        },
    }
}

/// Every row of `schema.table` keyed by primary key (as text), each with
/// the values of `cols` in order.
pub async fn db_rows(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    cols: &[Col],
) -> BTreeMap<String, Vec<Canon>> {
    select_rows(pg, schema, table, pk, cols, None).await
}

/// The rows of `schema.table` (only the row of `key` when given).
async fn select_rows(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    cols: &[Col],
    key: Option<&str>,
) -> BTreeMap<String, Vec<Canon>> {
    let exprs: Vec<String> = cols
        .iter()
        .map(|c| {
            let q = quote_ident(&c.name);
            match c.ty {
                // Exact microseconds, whatever the session's TimeZone.
                FieldType::Timestamp => format!("(extract(epoch from {q}) * 1000000)::bigint"),
                FieldType::Date => format!("{q}::text"),
                _ => q,
            }
        })
        .collect();
    let mut out = BTreeMap::new();
    // jsonb_build_array takes at most 100 arguments: select in chunks.
    for (chunk_no, chunk) in exprs.chunks(90).enumerate() {
        let sql = format!(
            "SELECT {pk}::text, jsonb_build_array({}) FROM {}.{} WHERE $1::text IS NULL OR {pk}::text = $1",
            chunk.join(", "),
            quote_ident(schema),
            quote_ident(table),
            pk = quote_ident(pk),
        );
        for row in pg.query(&sql, &[&key]).await.expect("select synced rows") {
            let key: String = row.get(0);
            let values: Value = row.get(1);
            let entry: &mut Vec<Canon> = out.entry(key).or_default();
            for (i, v) in values.as_array().expect("array").iter().enumerate() {
                entry.push(db_value(cols[chunk_no * 90 + i].ty, v));
            }
        }
    }
    out
}

/// Asserts that `schema.table` holds exactly the API's live records: as
/// many rows as `api_count`, and every row equal, column by column, to the
/// record `lookup` returns for its key. Returns the number of rows.
pub async fn assert_table_matches(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    cols: &[Col],
    api_count: usize,
    lookup: impl Fn(&str) -> Option<Value>,
) -> usize {
    let rows = db_rows(pg, schema, table, pk, cols).await;
    let mut problems = Vec::new();
    for (key, db) in &rows {
        let Some(record) = lookup(key) else {
            problems.push(format!(
                "{key}: in Postgres but not a live record of the API"
            ));
            continue;
        };
        for (col, got) in cols.iter().zip(db) {
            let want = api_value(col, &record);
            if &want != got {
                problems.push(format!(
                    "{key}.{}: Postgres has {got:?}, the API {want:?}",
                    col.name
                ));
            }
        }
    }
    if rows.len() != api_count {
        problems.push(format!(
            "{} rows in Postgres, {api_count} live records in the API",
            rows.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{schema}.{table} differs from the API ({} problems):\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    rows.len()
}

/// Like [`assert_table_matches`] over a map of every live record by key.
pub async fn assert_table_equals(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    cols: &[Col],
    api: &BTreeMap<String, Value>,
) -> usize {
    assert_table_matches(pg, schema, table, pk, cols, api.len(), |k| {
        api.get(k).cloned()
    })
    .await
}

/// The values of one row (`None` when the row is missing).
pub async fn db_row(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    key: &str,
    cols: &[Col],
) -> Option<Vec<Canon>> {
    select_rows(pg, schema, table, pk, cols, Some(key))
        .await
        .remove(key)
}

/// Whether the row of `key` equals the API's `record` in every column.
pub async fn row_equals(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    pk: &str,
    key: &str,
    cols: &[Col],
    record: &Value,
) -> (bool, Option<Vec<Canon>>) {
    let row = db_row(pg, schema, table, pk, key, cols).await;
    let want: Vec<Canon> = cols.iter().map(|c| api_value(c, record)).collect();
    (row.as_ref() == Some(&want), row)
}

/// How long a change made upstream may take to show: two poll intervals
/// (the design's freshness bound) plus slack for a loaded 2-core machine.
pub fn freshness(poll: Duration, slack: Duration) -> Duration {
    poll * 2 + slack
}

/// GETs a JSON document from a simulator with a bearer token.
pub async fn get_json(url: &str, token: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET from the simulator");
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.expect("JSON from the simulator")
}

/// The last error of every object of a connection (for failure messages).
pub async fn sync_errors(pg: &tokio_postgres::Client, connection: &str) -> Vec<(String, String)> {
    pg.query(
        "SELECT object, last_error FROM sequin.sync_state WHERE connection = $1 AND last_error IS NOT NULL",
        &[&connection],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Waits (up to 60 s) until `check` holds, then asserts it held within
/// `bound` of `since` (the moment of the upstream change). Returns the time
/// it took. Waiting past the bound first tells a late change (a freshness
/// failure, with the time measured) from one that never arrives (a
/// correctness failure).
pub async fn within<T: std::fmt::Debug, F, Fut>(
    since: std::time::Instant,
    bound: Duration,
    what: &str,
    check: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    sequin_e2e::eventually(Duration::from_secs(60), what, check).await;
    let took = since.elapsed();
    assert!(
        took <= bound,
        "{what} became visible after {took:?}, beyond the freshness bound of {bound:?}"
    );
    took
}

/// The Salesforce connector's static objects (API name, table).
pub const SALESFORCE_OBJECTS: [(&str, &str); 4] = [
    ("Account", "account"),
    ("Contact", "contact"),
    ("Lead", "lead"),
    ("Opportunity", "opportunity"),
];

/// A `sequin.yaml` syncing the simulated Salesforce org into `db`, polling
/// every 300 ms; `extra` holds more keys of the connection, each line
/// indented by four spaces.
pub fn salesforce_config(db: &str, sim: &sequin_sim::Sim, extra: &str) -> String {
    use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
    let base = sim.base_url();
    format!(
        "database_url: {db}
connections:
  - name: salesforce
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}
    poll_interval: 300ms
{extra}",
        refresh = sim.salesforce().refresh_token(),
    )
}

#[cfg(test)]
mod comparator_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_values_are_typed_like_postgres_renders_them() {
        let mut nps = Col::new("nps", "properties.nps", FieldType::Decimal);
        nps.stringly = true;
        let rec = json!({"properties": {"nps": "9.5", "empty": ""}, "SystemModstamp": "2024-05-01T12:00:00.000+0000", "Tags": ["a", "b"]});
        assert_eq!(
            api_value(&nps, &rec),
            db_value(FieldType::Decimal, &json!(9.5))
        );
        let mut empty = Col::new("e", "properties.empty", FieldType::Integer);
        empty.stringly = true;
        assert_eq!(api_value(&empty, &rec), Canon::Null);
        let stamp = Col::new("s", "SystemModstamp", FieldType::Timestamp);
        assert_eq!(
            api_value(&stamp, &rec),
            Canon::Micros(1_714_564_800_000_000)
        );
        assert_eq!(
            db_value(FieldType::Timestamp, &json!(1_714_564_800_000_000_i64)),
            Canon::Micros(1_714_564_800_000_000)
        );
        let tags = Col::new("tags", "Tags", FieldType::StringArray);
        assert_eq!(
            api_value(&tags, &rec),
            db_value(FieldType::StringArray, &json!(["a", "b"]))
        );
    }

    #[test]
    fn differences_are_not_hidden() {
        let name = Col::new("name", "Name", FieldType::String);
        let rec = json!({"Name": "Ada"});
        assert_ne!(
            api_value(&name, &rec),
            db_value(FieldType::String, &json!("Grace"))
        );
        assert_ne!(
            api_value(&name, &rec),
            db_value(FieldType::String, &Value::Null)
        );
        let amount = Col::new("amount", "Amount", FieldType::Decimal);
        assert_ne!(
            api_value(&amount, &json!({"Amount": 10.5})),
            db_value(FieldType::Decimal, &json!(10.25))
        );
        // A value the column type cannot hold never equals anything.
        let n = Col::new("n", "N", FieldType::Integer);
        assert!(matches!(api_value(&n, &json!({"N": "x"})), Canon::Bad(_)));
    }
}
