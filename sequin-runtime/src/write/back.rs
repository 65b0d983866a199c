//! Step 5 of a write: the API's canonical records back into the table, and
//! the client's answer, in one round trip (with the client's Sync when it
//! follows):
//!
//! 1. created rows are inserted under the API's ids (`INSERT .. ON
//!    CONFLICT`, so a copy sync brought in first gives way) in place of
//!    their provisional rows; updated rows are rewritten with the API's
//!    values;
//! 2. RETURNING is computed over these final rows, in the client's formats
//!    (the proxy asks for them: `InjectedQuery::in_client_formats`);
//! 3. `sequin.release()` checks that nothing but this write-back changed
//!    synced rows since the client's statement (a RETURNING expression
//!    could), and marks the statement's effects in the client's
//!    (sub)transaction.

use std::collections::HashMap;

use bytes::Bytes;
use sequin_proxy::{InjectedQuery, InterceptContext, Intercepted, QueryResult, Shape, Step};
use sequin_spec::record::{WriteOp, decode_row, format_iso8601};
use serde_json::{Map, Value};

use super::apply::Applied;
use super::capture::Captured;
use super::error::{Stop, WriteError, without_parameters};
use super::journal::Outcome;
use super::rows::{self, RowOp};
use super::sql;
use super::table::Table;

/// The client's answer to a write: its RETURNING rows with their columns
/// (none without RETURNING) and command tag, which the proxy renders.
pub struct Answer {
    pub result: QueryResult,
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
    (ops, applied, outcomes): (&[RowOp], &Applied, &[(uuid::Uuid, Outcome)]),
    ends_exchange: bool,
) -> Result<Answer, Stop> {
    let keys = rows::keys(ops);
    let (created, updated) = canonical_docs(table, ops, applied, &keys)?;
    let qualified = table.plan.table.qualified();
    let texts = table.write_back_sql();
    let (created_rows, updated_rows) = (created.rows, updated.rows);
    let created_sql = (created_rows > 0).then_some(&texts.created);
    let updated_sql = (updated_rows > 0).then_some(&texts.updated);
    let created_params = [Some(Bytes::from(created.into_json()))];
    let updated_params = [Some(Bytes::from(updated.into_json()))];
    let returning = match &shape.returning {
        Some(list) => {
            Some(returning_query(ctx, st, table, shape, list, captured, applied, &keys).await?)
        }
        None => None,
    };
    let release_params = release_params(
        captured,
        (applied, outcomes),
        &qualified,
        created_rows,
        updated_rows,
    );
    let mut steps = Vec::with_capacity(4);
    for (q, params) in [
        (&created_sql, &created_params),
        (&updated_sql, &updated_params),
    ] {
        if let Some(q) = q {
            steps.push(Step::Query(
                InjectedQuery::new(q)
                    .params(params)
                    .param_types(&[0])
                    .cached(),
            ));
        }
    }
    if let Some(r) = &returning {
        steps.push(Step::Query(r.query()));
    }
    steps.push(Step::Query(
        InjectedQuery::new(
            "SELECT sequin.release($1::pg_catalog.int8, $2::pg_catalog.text::pg_catalog.regclass, $3::pg_catalog.int8, $4::pg_catalog.int8, $5::pg_catalog.int8[], $6::pg_catalog.text::pg_catalog.jsonb)",
        )
        .params(&release_params)
        .param_types(&[0, 0, 0, 0, 0, 0])
        .cached(),
    ));
    // The last round trip of the exchange carries the Sync that ends it
    // (the implicit transaction commits with it; the journal's reconciler
    // settles the effects either way).
    let results = if ends_exchange {
        ctx.pipeline_to_sync(&steps).await?
    } else {
        ctx.pipeline(&steps).await?
    };
    let mut outputs = Vec::with_capacity(results.len());
    for r in results {
        outputs.push(r.map_err(|e| Stop::Failed(without_parameters(e)))?);
    }
    if outputs.len() < steps.len() {
        return Err(Stop::Inject(sequin_proxy::InjectError::Closed));
    }
    let released = outputs.pop().expect("release is the last step");
    let last = first_value(&released)
        .and_then(|s| s.parse().ok())
        .unwrap_or(captured.last);
    let (columns, rows) = match (returning.is_some(), outputs.pop()) {
        (true, Some(r)) => (r.columns, r.rows),
        _ => Default::default(),
    };
    Ok(Answer {
        result: QueryResult {
            columns,
            rows,
            command_tag: captured.tag.clone(),
            notices: Vec::new(),
        },
        last,
    })
}

/// The parameters of `sequin.release()`: the statement's last capture
/// row, its table, how many rows the write-back creates and writes, the
/// capture rows whose effects the API applied (marked as kept), and the
/// journal entries of each record (its events name them).
fn release_params(
    captured: &Captured,
    (applied, outcomes): (&Applied, &[(uuid::Uuid, Outcome)]),
    qualified: &str,
    created: usize,
    updated: usize,
) -> [Option<Bytes>; 6] {
    let mut marks: Vec<i64> = applied
        .done
        .iter()
        .map(|(i, _)| captured.changes[*i].capture_id)
        .collect();
    marks.sort_unstable();
    marks.dedup();
    [
        Some(Bytes::from(captured.last.to_string())),
        Some(Bytes::from(qualified.to_string())),
        Some(Bytes::from(created.to_string())),
        Some(Bytes::from((created + updated).to_string())),
        Some(Bytes::from(format!(
            "{{{}}}",
            marks
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))),
        Some(Bytes::from(requests(outcomes).to_string())),
    ]
}

/// The journal entries the API applied, by record id, in the order they
/// were journalled: `{"<record id>": ["<entry id>", ...]}`.
fn requests(outcomes: &[(uuid::Uuid, Outcome)]) -> Value {
    let mut by_record = Map::new();
    for (id, outcome) in outcomes {
        if let Outcome::Applied { api_id, .. } = outcome {
            let ids = by_record
                .entry(api_id.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(ids) = ids {
                ids.push(Value::String(id.to_string()));
            }
        }
    }
    Value::Object(by_record)
}

/// The first column of the first row, as text.
fn first_value(r: &QueryResult) -> Option<&str> {
    r.rows
        .first()
        .and_then(|r| r.values.first())
        .and_then(|v| v.as_ref())
        .and_then(|b| std::str::from_utf8(b).ok())
}

/// A JSON array of the row documents of canonical records for a
/// write-back (`$1` of [`super::sql::write_back`] and its kin), written as
/// text.
#[derive(Default)]
pub(super) struct Docs {
    json: Vec<u8>,
    rows: usize,
}

impl Docs {
    /// Appends the document of a canonical record whose row's current key
    /// is `key`.
    pub(super) fn push(&mut self, table: &Table, record: &Value, key: &str) -> Result<(), String> {
        self.json.push(if self.rows == 0 { b'[' } else { b',' });
        write_canonical_doc(&mut self.json, table, record, key)?;
        self.rows += 1;
        Ok(())
    }

    /// The array's text.
    pub(super) fn into_json(mut self) -> String {
        self.json
            .extend_from_slice(if self.rows == 0 { b"[]" } else { b"]" });
        String::from_utf8(self.json).expect("JSON text is UTF-8")
    }
}

/// The row documents of the API's canonical records: created ones, and
/// updated ones.
fn canonical_docs(
    table: &Table,
    ops: &[RowOp],
    applied: &Applied,
    keys: &[String],
) -> Result<(Docs, Docs), WriteError> {
    let (mut created, mut updated) = (Docs::default(), Docs::default());
    for (i, done) in &applied.done {
        let Some(record) = &done.record else { continue };
        let docs = if matches!(ops[*i], RowOp::Create { .. } | RowOp::Upsert { .. }) {
            &mut created
        } else {
            &mut updated
        };
        docs.push(table, record, &keys[*i]).map_err(|message| {
            WriteError::new(
                table.api(),
                "58030",
                format!("the API accepted the write, but its record could not be read: {message}"),
            )
        })?;
    }
    Ok((created, updated))
}

/// Appends the row document of a canonical API record for the write-back
/// to `out`: a JSON object of its columns (as `jsonb_populate_record`
/// reads them), its update marker and its current key (`__sequin_key`).
/// Written straight to text: a `Value` tree per record cost 5% of sequin's
/// instructions per write-through INSERT.
fn write_canonical_doc(
    out: &mut Vec<u8>,
    table: &Table,
    record: &Value,
    key: &str,
) -> Result<(), String> {
    let cells = decode_row(&table.plan.table.columns, record).map_err(|e| e.to_string())?;
    let string = |out: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(out, s).expect("a string serializes into memory")
    };
    out.push(b'{');
    for (c, cell) in table.plan.table.columns.iter().zip(&cells) {
        string(out, &c.name);
        out.push(b':');
        rows::write_cell_pg(out, cell);
        out.push(b',');
    }
    out.extend_from_slice(b"\"_sequin_updated_at\":");
    match table.plan.marker_of_row(&cells, crate::catalog::now_us()) {
        Some(m) => string(out, &format_iso8601(m)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"__sequin_key\":");
    string(out, key);
    out.push(b'}');
    Ok(())
}

/// The RETURNING query of a statement with its parameters, owned; its
/// rows go to the client as they are, so in the client's formats.
struct Returning {
    sql: String,
    types: Vec<u32>,
    formats: Vec<i16>,
    params: Vec<Option<Bytes>>,
    /// Kept prepared on the session (see [`keeps_result_type`]).
    cache: bool,
}

impl Returning {
    fn query(&self) -> InjectedQuery<'_> {
        let q = InjectedQuery::new(&self.sql)
            .params(&self.params)
            .param_types(&self.types)
            .param_formats(&self.formats)
            .in_client_formats();
        if self.cache { q.cached() } else { q }
    }
}

/// Whether a RETURNING list keeps its result type however its table
/// changes, so that its query can be kept prepared: not with a `*`. A
/// prepared query's plan is made again after DDL, but Postgres refuses to
/// run it ("cached plan must not change result type") when its columns
/// changed, and Sequin adds columns to synced tables when a connector's
/// spec gains fields. Kept prepared, the query is planned once per session
/// instead of at every write (40 µs of Postgres per INSERT, `bench write
/// --server-profile`).
fn keeps_result_type(list: &str) -> bool {
    !list.contains('*')
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
            formats.push(bind.param_format(i));
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
    Ok(Returning {
        cache: keeps_result_type(list),
        sql,
        types,
        formats,
        params,
    })
}
