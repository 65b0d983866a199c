//! Step 1 of a write: which synced table the statement writes (unqualified
//! names resolved by the server through the session's search_path), and
//! whether write-through can write it that way: in its main clause, with
//! an operation the object supports, as UTF-8 text.

use std::sync::Arc;

use sequin_proxy::{
    InjectError, InterceptContext, Intercepted, TableName, TableWrite, Via, WriteKind,
};
use sequin_spec::record::WriteOp;

use super::error::WriteError;
use super::sql;
use super::table::{Catalog, Table};

/// The synced tables a statement writes, with the schema of each
/// unqualified name resolved by the server through the session's
/// search_path (only names some synced table has reach here). Tables
/// that turn out not to be synced are left out.
pub(super) async fn resolve(
    ctx: &mut InterceptContext<'_>,
    catalog: &Catalog,
    writes: &[TableWrite],
) -> Result<Vec<TableWrite>, InjectError> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        if !w.table.schema.is_empty() {
            out.push(w.clone());
            continue;
        }
        let name = sql::ident(&w.table.table);
        let resolved = ctx
            .query(
                "SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
                &[Some(&name)],
            )
            .await;
        // A failure here (the server is not skipping: the transaction
        // was checked) becomes the client's error.
        let schema = text_at(&resolved?, 0, 0);
        let synced = schema
            .as_deref()
            .is_some_and(|s| s == "sequin" || catalog.connection(s).is_some());
        if let (true, Some(schema)) = (synced, schema) {
            let mut w = w.clone();
            w.table = TableName::new(schema, w.table.table.clone());
            out.push(w);
        }
    }
    Ok(out)
}

/// The table the statement writes, and how.
pub(super) async fn check(
    catalog: &Catalog,
    st: &Intercepted,
    writes: &[TableWrite],
) -> Result<(Arc<Table>, WriteOp), WriteError> {
    let first = &writes[0];
    let (schema, name) = (first.table.schema.as_str(), first.table.table.as_str());
    if st.invalid_utf8 {
        // What would reach the API is not what the client sent.
        return Err(WriteError::new(
            "Sequin",
            "22021",
            format!(
                "the statement writing {schema}.{name} is not valid UTF-8, so it cannot be written through; send UTF-8 text (client_encoding UTF8)"
            ),
        ));
    }
    if let Some(why) = wrapped(first.via) {
        return Err(WriteError::new("Sequin", "0A000", why));
    }
    if schema == "sequin" {
        return Err(WriteError::new(
            "Sequin",
            "42501",
            format!("sequin.{name} is maintained by Sequin and cannot be written by clients"),
        ));
    }
    let Some(table) = catalog.table_or_refresh(schema, name).await else {
        return Err(unknown(catalog, schema, name));
    };
    if writes.len() > 1 || first.in_cte {
        return Err(WriteError::new(
            table.api(),
            "0A000",
            "a statement may write one synced table, in its main clause (not in a WITH clause); split it into one INSERT, UPDATE or DELETE per table",
        ));
    }
    let op = operation(&table, first.kind)?;
    Ok((table, op))
}

/// Why a write wrapped in another statement cannot be written through.
fn wrapped(via: Via) -> Option<&'static str> {
    match via {
        Via::Statement => None,
        Via::ExplainAnalyze => Some(
            "EXPLAIN ANALYZE would change the synced table without the API; use EXPLAIN without ANALYZE, or run the statement itself",
        ),
        Via::CopyTo => Some(
            "COPY (... RETURNING ...) TO cannot write through to the API; run the statement itself, with RETURNING",
        ),
        Via::Prepare => Some(
            "a write to a synced table cannot be PREPAREd in SQL (its EXECUTE would run where write-through cannot apply it to the API); use the driver's prepared statements, or send the statement itself",
        ),
        Via::Other => {
            Some("this statement cannot write a synced table; use INSERT, UPDATE or DELETE")
        }
    }
}

/// The refusal of a table write-through does not know: its API cannot be
/// asked right now, or it is no object of a configured connection.
fn unknown(catalog: &Catalog, schema: &str, name: &str) -> WriteError {
    if let Some(err) = catalog.lookup_error(schema) {
        let api = catalog
            .connection(schema)
            .map(|c| c.spec.display_name.clone())
            .unwrap_or_else(|| "Sequin".into());
        return WriteError::new(
            &api,
            "58030",
            format!(
                "cannot look up {schema}.{name} at the API right now, so nothing was written; try again: {err}"
            ),
        );
    }
    WriteError::new(
        "Sequin",
        "0A000",
        format!(
            "{schema}.{name} is not an object of a configured connection, so it cannot be written through to an API"
        ),
    )
}

/// The API operation of a statement kind, if the object supports it.
fn operation(table: &Table, kind: WriteKind) -> Result<WriteOp, WriteError> {
    let unsupported = |what: &str| WriteError::new(table.api(), "0A000", what);
    if table.plan.link.is_some() && kind == WriteKind::Update {
        return Err(unsupported(&format!(
            "{}.{} is a link table: the API creates and removes links but does not change them",
            table.connection, table.plan.table.name
        ))
        .hint("DELETE the link's row and INSERT the new one"));
    }
    let e = &table.plan.endpoints;
    let (op, supported) = match kind {
        WriteKind::Insert => (
            WriteOp::Create,
            e.create.is_some() || e.batch_create.is_some(),
        ),
        WriteKind::Update => (
            WriteOp::Update,
            e.update.is_some() || e.batch_update.is_some(),
        ),
        WriteKind::Delete => (
            WriteOp::Delete,
            e.delete.is_some() || e.batch_delete.is_some(),
        ),
        WriteKind::Merge => {
            return Err(unsupported(
                "MERGE into a synced table is not supported; use INSERT, UPDATE or DELETE",
            ));
        }
        WriteKind::Copy => {
            return Err(unsupported(
                "COPY into a synced table is not supported; use INSERT (up to the object's rows per statement)",
            ));
        }
        WriteKind::Truncate => {
            return Err(unsupported(
                "TRUNCATE of a synced table is not supported (it would delete every record at the API); use DELETE",
            ));
        }
    };
    if !supported {
        let verb = match op {
            WriteOp::Create => "created",
            WriteOp::Update => "updated",
            WriteOp::Delete => "deleted",
        };
        return Err(unsupported(&format!(
            "{} records cannot be {verb} through the API",
            table.plan.api_name
        )));
    }
    Ok(op)
}

fn text_at(r: &sequin_proxy::QueryResult, row: usize, col: usize) -> Option<String> {
    r.rows
        .get(row)?
        .values
        .get(col)?
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}
