//! Step 5 of a write: the API's canonical records back into the table, and
//! the client's answer, in one round trip (with the client's Sync when it
//! follows):
//!
//! 1. created rows are inserted under the API's ids (`INSERT .. ON
//!    CONFLICT`, so a copy sync brought in first gives way) in place of
//!    their provisional rows; updated rows are rewritten with the API's
//!    values;
//! 2. RETURNING is computed over these final rows, in the client's formats;
//! 3. `sequin.release()` checks that nothing but this write-back changed
//!    synced rows since the client's statement (a RETURNING expression
//!    could), and marks the statement's effects in the client's
//!    (sub)transaction.

use std::collections::HashMap;

use bytes::Bytes;
use sequin_proxy::codec::{BackendMessage, DataRow};
use sequin_proxy::{InjectedQuery, InterceptContext, Intercepted, Protocol, Step};
use sequin_spec::record::{WriteOp, decode_row, format_iso8601};
use serde_json::{Map, Value};

use super::Stop;
use super::apply::Applied;
use super::capture::Captured;
use super::error::WriteError;
use super::rows::{self, RowOp};
use super::sql::{self, Shape};
use super::table::Table;

/// The client's answer to a write: its RETURNING rows (with their
/// RowDescription in the simple protocol) and command tag.
pub struct Answer {
    pub description: Option<BackendMessage>,
    pub rows: Vec<DataRow>,
    pub tag: String,
    /// The session's new high-water mark of capture rows.
    pub last: i64,
}

/// Writes the canonical records back, computes RETURNING and ends the
/// statement (see the module docs). `ends_exchange`: the client's Sync goes
/// in the same round trip when it follows.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &mut InterceptContext<'_>,
    st: &Intercepted,
    table: &Table,
    shape: &Shape,
    captured: &Captured,
    ops: &[RowOp],
    applied: &Applied,
    ends_exchange: bool,
) -> Result<Answer, Stop> {
    let keys = keys(ops);
    let (created, updated) = canonical_docs(table, ops, applied, &keys)?;
    let qualified = table.plan.table.qualified();
    let pk = sql::Key::of(&table.plan.table);
    let columns: Vec<String> = table
        .plan
        .table
        .columns
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let created_sql =
        (!created.is_empty()).then(|| sql::write_back_created(&qualified, pk, &columns));
    let updated_sql = (!updated.is_empty()).then(|| sql::write_back(&qualified, pk, &columns));
    let created_params = [Some(Bytes::from(Value::Array(created.clone()).to_string()))];
    let updated_params = [Some(Bytes::from(Value::Array(updated.clone()).to_string()))];
    let returning = match &shape.returning {
        Some(list) => {
            Some(returning_query(ctx, st, table, shape, list, captured, applied, &keys).await?)
        }
        None => None,
    };
    let marks: Vec<i64> = {
        let mut m: Vec<i64> = applied
            .done
            .iter()
            .map(|(i, _)| captured.changes[*i].capture_id)
            .collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    let release_params = [
        Some(Bytes::from(captured.last.to_string())),
        Some(Bytes::from(qualified.clone())),
        Some(Bytes::from(created.len().to_string())),
        Some(Bytes::from((created.len() + updated.len()).to_string())),
        Some(Bytes::from(format!(
            "{{{}}}",
            marks
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))),
    ];
    let mut steps = Vec::with_capacity(4);
    for (q, params) in [
        (&created_sql, &created_params),
        (&updated_sql, &updated_params),
    ] {
        if let Some(q) = q {
            steps.push(Step::Query(InjectedQuery {
                sql: q,
                param_types: &[0],
                param_formats: &[],
                params,
                result_formats: &[],
                cache: true,
            }));
        }
    }
    if let Some(r) = &returning {
        steps.push(Step::Query(r.query()));
    }
    steps.push(Step::Query(InjectedQuery {
        sql: "SELECT sequin.release($1::pg_catalog.int8, $2::pg_catalog.text::pg_catalog.regclass, $3::pg_catalog.int8, $4::pg_catalog.int8, $5::pg_catalog.int8[])",
        param_types: &[0, 0, 0, 0, 0],
        param_formats: &[],
        params: &release_params,
        result_formats: &[],
        cache: true,
    }));
    // The last round trip of the exchange carries the Sync that ends it
    // (the implicit transaction commits with it; the journal's reconciler
    // settles the effects either way).
    let results = if ends_exchange {
        ctx.pipeline_to_sync(&steps).await?
    } else {
        ctx.pipeline(&steps).await?
    };
    let n = results.len();
    let mut outputs = Vec::with_capacity(n);
    for r in results {
        match r {
            Ok(r) => outputs.push(r),
            Err(e) => return Err(Stop::Failed(super::without_parameters(e))),
        }
    }
    if n < steps.len() {
        return Err(Stop::Inject(sequin_proxy::InjectError::Closed));
    }
    let released = outputs.pop().expect("release is the last step");
    let last = released
        .rows
        .first()
        .and_then(|r| r.values.first())
        .and_then(|v| v.as_ref())
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(captured.last);
    let (description, rows) = match (returning.is_some(), outputs.pop()) {
        (true, Some(r)) => (
            (st.protocol == Protocol::Simple).then_some(BackendMessage::RowDescription(r.columns)),
            r.rows,
        ),
        _ => (None, Vec::new()),
    };
    Ok(Answer {
        description,
        rows,
        tag: captured.tag.clone(),
        last,
    })
}

/// Each row's key: the provisional id of a created row, the id otherwise.
pub fn keys(ops: &[RowOp]) -> Vec<String> {
    ops.iter()
        .map(|o| match o {
            RowOp::Create { key, .. } => key.clone(),
            RowOp::Update { id, .. } | RowOp::Delete { id } | RowOp::Unchanged { id } => id.clone(),
        })
        .collect()
}

/// The row documents of the API's canonical records: created ones, and
/// updated ones.
fn canonical_docs(
    table: &Table,
    ops: &[RowOp],
    applied: &Applied,
    keys: &[String],
) -> Result<(Vec<Value>, Vec<Value>), WriteError> {
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    for (i, done) in &applied.done {
        let Some(record) = &done.record else { continue };
        let doc = canonical_doc(table, record, &keys[*i]).map_err(|message| {
            WriteError::new(
                table.api(),
                "58030",
                format!("the API accepted the write, but its record could not be read: {message}"),
            )
        })?;
        if matches!(ops[*i], RowOp::Create { .. }) {
            created.push(doc);
        } else {
            updated.push(doc);
        }
    }
    Ok((created, updated))
}

/// The row document of a canonical API record for the write-back.
pub(crate) fn canonical_doc(table: &Table, record: &Value, key: &str) -> Result<Value, String> {
    let cells = decode_row(&table.plan.table.columns, record).map_err(|e| e.to_string())?;
    let mut doc = Map::new();
    for (c, cell) in table.plan.table.columns.iter().zip(&cells) {
        doc.insert(c.name.to_string(), rows::cell_to_pg(cell));
    }
    let marker = table.plan.marker_of_row(&cells, crate::catalog::now_us());
    doc.insert(
        "_sequin_updated_at".into(),
        marker
            .map(|m| Value::String(format_iso8601(m)))
            .unwrap_or(Value::Null),
    );
    doc.insert("__sequin_key".into(), Value::String(key.to_string()));
    Ok(Value::Object(doc))
}

/// The RETURNING query of a statement with its parameters, owned.
struct Returning {
    sql: String,
    types: Vec<u32>,
    formats: Vec<i16>,
    params: Vec<Option<Bytes>>,
    result_formats: Vec<i16>,
}

impl Returning {
    fn query(&self) -> InjectedQuery<'_> {
        InjectedQuery {
            sql: &self.sql,
            param_types: &self.types,
            param_formats: &self.formats,
            params: &self.params,
            result_formats: &self.result_formats,
            cache: false,
        }
    }
}

/// Builds the query computing RETURNING over the final rows: deleted rows
/// as they were, the others read back from the table by their final ids;
/// with the client's parameters (when the list uses them; their types as
/// the server resolved them) and result formats.
#[allow(clippy::too_many_arguments)]
async fn returning_query(
    ctx: &mut InterceptContext<'_>,
    st: &Intercepted,
    table: &Table,
    shape: &Shape,
    list: &str,
    captured: &Captured,
    applied: &Applied,
    keys: &[String],
) -> Result<Returning, Stop> {
    let deleting = captured.changes.iter().all(|c| c.op == WriteOp::Delete);
    let doc = if deleting {
        Value::Array(
            captured
                .changes
                .iter()
                .map(|c| c.old.clone().map(Value::Object).unwrap_or(Value::Null))
                .collect(),
        )
    } else {
        let api_ids: HashMap<usize, &str> = applied
            .done
            .iter()
            .map(|(i, d)| (*i, d.api_id.as_str()))
            .collect();
        Value::Array(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Value::String(api_ids.get(&i).copied().unwrap_or(k).to_string()))
                .collect(),
        )
    };
    let from = if deleting {
        sql::FinalRows::Json
    } else {
        sql::FinalRows::Table {
            pk: sql::Key::of(&table.plan.table),
        }
    };
    let (mut types, mut formats, mut params) = (Vec::new(), Vec::new(), Vec::new());
    if shape.returning_params
        && let Some(bind) = &st.bind
    {
        // The RETURNING list alone might not use (and so type) every
        // parameter of the statement.
        let resolved = ctx.describe_statement(&bind.statement).await?;
        for i in 0..bind.params.len() {
            types.push(
                resolved
                    .get(i)
                    .or(st.param_types.get(i))
                    .copied()
                    .unwrap_or(0),
            );
            formats.push(match bind.param_formats.len() {
                0 => 0,
                1 => bind.param_formats[0],
                _ => bind.param_formats.get(i).copied().unwrap_or(0),
            });
        }
        params.extend(bind.params.iter().cloned());
    }
    const JSONB: u32 = 3802;
    types.push(JSONB);
    formats.push(0);
    params.push(Some(Bytes::from(doc.to_string())));
    let sql = sql::returning_query(
        list,
        &table.plan.table.qualified(),
        &shape.alias,
        params.len(),
        from,
    );
    let result_formats = match (&st.protocol, &st.bind) {
        (Protocol::Extended, Some(b)) => b.result_formats.clone(),
        _ => Vec::new(),
    };
    Ok(Returning {
        sql,
        types,
        formats,
        params,
        result_formats,
    })
}
