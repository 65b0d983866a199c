//! Step 2 of a write: the client's statement, executed under the grant, and
//! the rows it changed as the capture triggers recorded them.
//!
//! One round trip: `sequin.open_grant(token)`, the statement (the client's own
//! portal, or its text without RETURNING, which is computed once over the
//! final rows later) and `sequin.captured()`. What was captured must be exactly what the
//! command tag counts, all of the target table: a row more is a row a
//! function the statement called wrote, and the statement is refused.

use bytes::Bytes;
use sequin_proxy::codec::ErrorResponse;
use sequin_proxy::{InjectedQuery, InterceptContext, Intercepted, Protocol, Shape, Step};
use sequin_spec::record::WriteOp;
use serde_json::{Map, Value};

use super::error::{Stop, WriteError, without_parameters};
use super::table::Table;

/// One row changed by the client's statement, as the trigger saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub op: WriteOp,
    pub old: Option<Map<String, Value>>,
    pub new: Option<Map<String, Value>>,
    /// The capture row that recorded it (the statement's effects are
    /// marked by it: `sequin.release`).
    pub capture_id: i64,
}

/// What the client's statement did.
#[derive(Debug)]
pub struct Captured {
    /// Its CommandComplete tag.
    pub tag: String,
    pub changes: Vec<Change>,
    /// The last capture row seen (the session's new high-water mark).
    pub last: i64,
    /// The client's transaction (0 when the statement changed nothing).
    pub xid: i64,
}

/// Runs the client's statement and reads what it changed. `after` is the
/// session's high-water mark of capture rows; `upsert`: its ON CONFLICT
/// clause is the API's upsert, and the rows are inserted without it.
pub async fn run(
    ctx: &mut InterceptContext<'_>,
    st: &Intercepted,
    sql_text: &str,
    shape: &Shape,
    table: &Table,
    after: i64,
    upsert: bool,
) -> Result<Captured, Stop> {
    let stripped = statement_without_returning(ctx, st, sql_text, shape, upsert).await?;
    let statement = match (&stripped, st.protocol, &st.bind) {
        (Some(s), _, _) => Step::Query(s.query()),
        (None, Protocol::Extended, Some(bind)) => Step::Portal(&bind.portal),
        (None, _, _) => Step::Query(InjectedQuery::new(sql_text)),
    };
    let capture_params = [
        Some(Bytes::from(after.to_string())),
        Some(Bytes::from(table.plan.table.qualified())),
        Some(Bytes::from(table.max_rows.to_string())),
    ];
    let capture = Step::Query(
        InjectedQuery::new(
            "SELECT c.id, c.xid, c.is_target, c.op, c.old, c.new FROM sequin.captured($1::pg_catalog.int8, $2::pg_catalog.text::pg_catalog.regclass, $3::pg_catalog.int8) AS c",
        )
        .params(&capture_params)
        .param_types(&[0, 0, 0])
        .cached(),
    );
    // The grant opens for this statement (a token of this process, bound
    // to the backend), then the statement runs, then its rows are read.
    let token = super::grant::token(ctx.session().backend_pid);
    let open = Step::Query(
        InjectedQuery::new(
            "SELECT sequin.open_grant($1::pg_catalog.bytea, $2::pg_catalog.int8, $3::pg_catalog.bytea)",
        )
        .params(&token)
        .param_types(&[0, 0, 0])
        .cached(),
    );
    let mut results = ctx.pipeline(&[open, statement, capture]).await?.into_iter();
    if let Err(Stop::Failed(e)) = next(&mut results) {
        return Err(Stop::Failed(without_parameters(e)));
    }
    let executed = next(&mut results)?;
    let captured = match next(&mut results) {
        Err(Stop::Failed(e)) if e.code() == Some("54000") => {
            return Err(too_many_rows(table, e.message().unwrap_or_default()).into());
        }
        Err(Stop::Failed(e)) => return Err(Stop::Failed(without_parameters(e))),
        other => other?,
    };
    let (changes, last, xid) = changes(table.api(), &captured, after)?;
    let counted = rows_counted(&executed.command_tag);
    if counted != Some(changes.len()) {
        return Err(WriteError::new(
            table.api(),
            "0A000",
            format!(
                "the statement reports {} row(s) but changed {} row(s) of synced tables: rows were written by a function it called, which cannot be written through; write them with their own statement",
                counted.map(|n| n.to_string()).unwrap_or_else(|| "no".into()),
                changes.len()
            ),
        )
        .into());
    }
    Ok(Captured {
        tag: executed.command_tag,
        changes,
        last,
        xid,
    })
}

/// The changes recorded in `sequin.captured()`'s rows, the last capture
/// row seen (from `after`) and the client's transaction id; a row of
/// another synced table refuses the statement.
fn changes(
    api: &str,
    captured: &sequin_proxy::QueryResult,
    after: i64,
) -> Result<(Vec<Change>, i64, i64), WriteError> {
    let mut changes = Vec::new();
    let mut last = after;
    let mut xid = 0;
    for row in &captured.rows {
        let bytes = |i: usize| row.values.get(i).and_then(|v| v.as_ref());
        let text = |i: usize| bytes(i).map(|b| String::from_utf8_lossy(b));
        let id: i64 = text(0).and_then(|s| s.parse().ok()).unwrap_or(0);
        last = last.max(id);
        xid = text(1).and_then(|s| s.parse().ok()).unwrap_or(xid);
        if text(2).as_deref() != Some("t") {
            return Err(WriteError::new(
                api,
                "0A000",
                "the statement also changed another synced table (through a function it called?); write-through applies one table per statement",
            ));
        }
        let rows = |i: usize| -> Result<Vec<Map<String, Value>>, WriteError> {
            match bytes(i) {
                None => Ok(Vec::new()),
                Some(b) => serde_json::from_slice(b).map_err(|e| internal(api, &e.to_string())),
            }
        };
        let (old, new) = (rows(4)?, rows(5)?);
        changes.extend(pair(api, text(3).as_deref(), old, new, id)?);
    }
    Ok((changes, last, xid))
}

/// The refusal of a statement that changed more rows than the object's
/// limit (`why`: the server's count).
fn too_many_rows(table: &Table, why: &str) -> WriteError {
    WriteError::new(
        table.api(),
        "54000",
        format!(
            "this statement changes more than {} rows of {}, the most one statement may write through to the API ({why})",
            table.max_rows,
            table.plan.table.qualified(),
        ),
    )
    .hint("Split the statement (e.g. by a range of ids) into several smaller ones.")
}

/// The next result of the pipeline; the server's error ends the write as
/// the client's own statement's error would.
fn next(
    results: &mut impl Iterator<Item = Result<sequin_proxy::QueryResult, ErrorResponse>>,
) -> Result<sequin_proxy::QueryResult, Stop> {
    match results.next() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(Stop::Failed(e)),
        None => Err(Stop::Inject(sequin_proxy::InjectError::Closed)),
    }
}

/// The row count of a command tag (`INSERT 0 3`, `UPDATE 2`).
pub fn rows_counted(tag: &str) -> Option<usize> {
    tag.rsplit(' ').next()?.parse().ok()
}

/// The changes of one capture row: old and new rows in the order Postgres
/// changed them (an update's old and new row share an index, and must
/// share their key: a key the statement changed is refused later).
fn pair(
    api: &str,
    op: Option<&str>,
    old: Vec<Map<String, Value>>,
    new: Vec<Map<String, Value>>,
    capture_id: i64,
) -> Result<Vec<Change>, WriteError> {
    let change = |op, old, new| Change {
        op,
        old,
        new,
        capture_id,
    };
    Ok(match op {
        Some("INSERT") => new
            .into_iter()
            .map(|n| change(WriteOp::Create, None, Some(n)))
            .collect(),
        Some("DELETE") => old
            .into_iter()
            .map(|o| change(WriteOp::Delete, Some(o), None))
            .collect(),
        Some("UPDATE") if old.len() == new.len() => old
            .into_iter()
            .zip(new)
            .map(|(o, n)| change(WriteOp::Update, Some(o), Some(n)))
            .collect(),
        other => {
            return Err(internal(
                api,
                &format!("captured rows of operation {other:?} do not pair"),
            ));
        }
    })
}

fn internal(api: &str, what: &str) -> WriteError {
    WriteError::new(
        api,
        "XX000",
        format!("internal error of write-through: {what}"),
    )
}

/// The client's statement without its RETURNING clause, with the client's
/// parameters, when it has one (RETURNING is computed once, over the
/// final rows, after the API's answer: a volatile expression in it runs
/// once), and without its ON CONFLICT clause (the API's upsert decides).
pub struct Stripped {
    sql: String,
    types: Vec<u32>,
    formats: Vec<i16>,
    params: Vec<Option<Bytes>>,
}

impl Stripped {
    fn query(&self) -> InjectedQuery<'_> {
        InjectedQuery::new(&self.sql)
            .params(&self.params)
            .param_types(&self.types)
            .param_formats(&self.formats)
            .cached()
    }
}

async fn statement_without_returning(
    ctx: &mut InterceptContext<'_>,
    st: &Intercepted,
    sql_text: &str,
    shape: &Shape,
    upsert: bool,
) -> Result<Option<Stripped>, Stop> {
    // An ON CONFLICT clause that is the API's upsert (`upsert.rs`): the
    // rows are inserted without it (it comes last but for RETURNING).
    // Any other (the primary key's) stays, but the client's portal cannot
    // run it: the proxy prepared it without the clause.
    let conflict = shape.on_conflict.as_ref();
    let at = match conflict {
        Some(c) if upsert => Some(c.start),
        Some(_) => Some(shape.returning_at.unwrap_or(sql_text.len())),
        None => shape.returning_at,
    };
    let Some(at) = at else {
        return Ok(None);
    };
    let sql = sql_text
        .get(..at)
        .unwrap_or(sql_text)
        .trim_end()
        .to_string();
    let Some(bind) = &st.bind else {
        return Ok(Some(Stripped {
            sql,
            types: Vec::new(),
            formats: Vec::new(),
            params: Vec::new(),
        }));
    };
    // Parameters used only by RETURNING get their types from the server's
    // view of the client's statement; the others are typed by their use in
    // the text kept, as in the client's own.
    let mut types = if shape.returning_params || conflict.is_some_and(|c| c.params) {
        ctx.describe_statement(&bind.statement).await?
    } else {
        st.param_types.clone()
    };
    types.resize(bind.params.len(), 0);
    Ok(Some(Stripped {
        sql,
        types,
        formats: bind.param_formats.clone(),
        params: bind.params.clone(),
    }))
}
