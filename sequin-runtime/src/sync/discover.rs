//! Discovered objects and fields applied to the synced tables: new
//! columns added, and the object listed again so existing records fill
//! them.

use std::sync::Arc;

use sequin_spec::model::Incremental;
use sequin_spec::record::Column;
use tokio::sync::watch;

use super::{Ctx, SyncError, poll};
use crate::catalog::ObjectPlan;
use crate::store::Writer;

/// Applies discovered fields: new columns are added to the table. Returns
/// the columns added.
pub(super) async fn refresh_fields(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
) -> Result<Vec<String>, SyncError> {
    if plan.discovered_fields.is_none() {
        return Ok(Vec::new());
    }
    let found = ctx.api.discover_fields(plan).await?;
    let (cols, types): (Vec<Column>, Vec<String>) = found.into_iter().unzip();
    let next = plan.with_discovered(cols);
    if next.table.columns == plan.table.columns {
        return Ok(Vec::new());
    }
    let mut all_types: Vec<String> = vec![String::new(); next.static_columns];
    all_types.extend(types);
    let added = writer
        .ensure_table(&ctx.api.config.name, &next.table, &all_types)
        .await?;
    if !added.is_empty() {
        tracing::info!(connection = %ctx.api.config.name, table = %next.table.name, columns = ?added, "new columns discovered");
    }
    *plan = next;
    Ok(added)
}

/// Takes the latest columns of a discovered table (fields added to an
/// Airtable table) from the connection's discovery. Returns the columns
/// added to the Postgres table.
pub(super) async fn refresh_dynamic(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &mut ObjectPlan,
    discovered: &mut watch::Receiver<Arc<Vec<ObjectPlan>>>,
) -> Result<Vec<String>, SyncError> {
    if !discovered.has_changed().unwrap_or(false) {
        return Ok(Vec::new());
    }
    let latest = discovered.borrow_and_update().clone();
    let Some(found) = latest.iter().find(|p| p.api_name == plan.api_name) else {
        return Ok(Vec::new());
    };
    if found.table.columns == plan.table.columns {
        return Ok(Vec::new());
    }
    // The table keeps its name (a renamed Airtable table is still this one);
    // columns that disappeared upstream stay in Postgres with their data.
    let mut next = plan.clone();
    next.table.columns = found.table.columns.clone();
    next.static_columns = next.table.columns.len();
    next.marker = found.marker.clone();
    let types = vec![String::new(); next.table.columns.len()];
    let added = writer
        .ensure_table(&ctx.api.config.name, &next.table, &types)
        .await?;
    if !added.is_empty() {
        tracing::info!(connection = %ctx.api.config.name, table = %next.table.name, columns = ?added, "new columns discovered");
    }
    *plan = next;
    Ok(added)
}

/// Lists the whole object again after columns were added, so the values
/// records already hold in the new fields arrive: adding a field upstream
/// does not change the records' update markers, so an incremental poll
/// would never bring them.
pub(super) async fn resync(
    ctx: &Ctx,
    writer: &mut Writer,
    plan: &ObjectPlan,
) -> Result<(), SyncError> {
    if matches!(*plan.incremental, Incremental::FullRefresh) {
        // The next poll lists everything anyway.
        return Ok(());
    }
    let seen = poll::full_list(ctx, writer, plan).await?;
    tracing::info!(connection = %ctx.api.config.name, table = %plan.table.name, records = seen.len(), "re-listed for new columns");
    Ok(())
}
