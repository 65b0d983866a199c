//! Placeholders of an operation's endpoints filled from its captured row:
//! a child's parent (`{customer}` in `/v1/customers/{customer}/tax_ids`,
//! from the row's parent column) and any other `{<field>}` (GitHub's
//! `{number}`), so that write-through addresses records the API nests
//! under another. A value the path needs that the row lacks is refused
//! here, before anything is sent.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sequin_spec::model::Endpoint;
use sequin_spec::record::WriteOp;
use serde_json::{Map, Value};

use super::capture::Change;
use super::error::WriteError;
use super::table::Table;

/// Placeholder values of one operation's endpoints, by placeholder name.
pub type PathVars = BTreeMap<String, String>;

/// Placeholders the runtime fills itself, never from a row.
const BUILTIN: [&str; 4] = ["id", "object", "fields", "since"];

/// The endpoint an operation is sent to, if the object has one.
fn endpoint_of(table: &Table, op: WriteOp) -> Option<&Endpoint> {
    let e = &table.plan.endpoints;
    match op {
        WriteOp::Create => e.create.as_ref(),
        WriteOp::Update => e.update.as_ref(),
        WriteOp::Delete => e.delete.as_ref(),
    }
}

/// The column whose value fills placeholder `name`: the parent column for
/// a child's parent placeholder, else the top-level column of that API
/// name. `None` for connection parameters and built-ins.
fn column_for(table: &Table, name: &str) -> Option<usize> {
    if BUILTIN.contains(&name) || table.spec.params.iter().any(|p| p.name == name) {
        return None;
    }
    if let Some(p) = &table.plan.parent
        && p.param == name
    {
        return Some(p.column);
    }
    table
        .plan
        .table
        .columns
        .iter()
        .position(|c| &*c.api_name == name && &*c.path == name)
}

/// Columns the create endpoint's path names (a child's parent column):
/// they address where the record is created, so they are taken from the
/// row but not sent in the body.
pub fn create_path_columns(table: &Table) -> Vec<usize> {
    let Some(ep) = &table.plan.endpoints.create else {
        return Vec::new();
    };
    let mut out: Vec<usize> = ep
        .placeholders()
        .iter()
        .filter_map(|n| column_for(table, n))
        .collect();
    out.dedup();
    out
}

/// A row's value as placeholder text (`None` for NULL).
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The placeholder values of each change's operation, from its row (the
/// new row of an INSERT, the old one otherwise), for the operation's own
/// endpoint and those that read the record back or list it (`get`,
/// `list`). A placeholder of the operation's own endpoint whose column is
/// NULL is refused (23502); one whose column an UPDATE changes too
/// (428C9: the record would move).
pub fn of_changes(table: &Table, changes: &[Change]) -> Result<Vec<PathVars>, WriteError> {
    changes.iter().map(|c| of_change(table, c)).collect()
}

fn of_change(table: &Table, change: &Change) -> Result<PathVars, WriteError> {
    let row = match change.op {
        WriteOp::Create => change.new.as_ref(),
        WriteOp::Update | WriteOp::Delete => change.old.as_ref(),
    };
    let empty = Map::new();
    let row = row.unwrap_or(&empty);
    let columns = &table.plan.table.columns;
    let own = endpoint_of(table, change.op)
        .map(Endpoint::placeholders)
        .unwrap_or_default();
    let e = &table.plan.endpoints;
    let others = e
        .get
        .iter()
        .chain(std::iter::once(&e.list))
        .flat_map(Endpoint::placeholders);
    let mut vars = PathVars::new();
    for name in own.iter().cloned().chain(others) {
        if vars.contains_key(&name) {
            continue;
        }
        let Some(i) = column_for(table, &name) else {
            continue;
        };
        let col = &columns[i];
        let value = text_of(row.get(&*col.name));
        let needed = own.contains(&name);
        if needed && change.op == WriteOp::Update {
            let new = change.new.as_ref().and_then(|n| n.get(&*col.name));
            if new != row.get(&*col.name) {
                return Err(WriteError::new(
                    table.api(),
                    "428C9",
                    format!(
                        "column `{}` cannot change: {} addresses the record through it (`{}`); delete the row and insert one instead",
                        col.name,
                        table.api(),
                        endpoint_of(table, change.op).map(|e| e.path.as_str()).unwrap_or(""),
                    ),
                )
                .column(col.name.to_string()));
            }
        }
        match value {
            Some(v) => {
                vars.insert(name, v);
            }
            None if needed => {
                let parent = table
                    .plan
                    .parent
                    .as_ref()
                    .filter(|p| p.column == i)
                    .map(|p| format!(" (the {}'s id)", p.object))
                    .unwrap_or_default();
                return Err(WriteError::new(
                    table.api(),
                    "23502",
                    format!(
                        "column `{}` is NULL, but {} addresses the record through it (`{}`): set it{parent}",
                        col.name,
                        table.api(),
                        endpoint_of(table, change.op).map(|e| e.path.as_str()).unwrap_or(""),
                    ),
                )
                .column(col.name.to_string()));
            }
            None => {}
        }
    }
    Ok(vars)
}

/// The change as the body sees it: an INSERT's columns that its endpoint's
/// path takes (`columns`) are left out of the row, so they are neither
/// checked as settable fields nor sent. Copied only when there are some.
pub fn without_path_columns<'c>(
    table: &Table,
    change: &'c Change,
    columns: &[usize],
) -> Cow<'c, Change> {
    if change.op != WriteOp::Create || columns.is_empty() || change.new.is_none() {
        return Cow::Borrowed(change);
    }
    let mut out = change.clone();
    if let Some(new) = out.new.as_mut() {
        for &i in columns {
            new.remove(&*table.plan.table.columns[i].name);
        }
    }
    Cow::Owned(out)
}
