//! Discovery: a connection's object plans, static ones from the spec and
//! those known only at run time (Airtable tables, HubSpot custom objects,
//! custom fields), looked up through the API.

use std::collections::BTreeSet;
use std::sync::Arc;

use sequin_spec::links::DefinedObject;
use sequin_spec::model::{DiscoveredObjects, Endpoint, FieldType, Incremental};
use sequin_spec::naming::{column_name, table_name};
use sequin_spec::record::{Column, get_path};
use serde_json::Value;

use super::LinkPlan;
use super::plan::{ObjectPlan, discovered_column, marker_of};
use super::{Connection, Error};
use crate::api::{Priority, Vars};
use crate::metrics::Purpose;
use crate::registry;
use crate::store::Table;

impl Connection {
    /// The plans of every configured object (static, plus discovered
    /// tables), without their discovered fields.
    pub async fn plans(&self) -> Result<Vec<ObjectPlan>, Error> {
        let loaded = registry::get(&self.config.connector).expect("config is checked");
        let spec = &self.spec;
        let mut out = Vec::new();
        for o in spec.objects.iter().filter(|o| self.wants(&o.name)) {
            let columns = loaded
                .object_columns(&o.name)
                .map(|c| c.to_vec())
                .unwrap_or_else(|| o.fields.iter().map(Column::from_field).collect());
            out.push(ObjectPlan::for_object(spec, &self.config.name, o, columns)?);
        }
        for o in spec.link_objects().iter().filter(|o| self.wants(&o.name)) {
            let link = LinkPlan::of(spec, &o.name).expect("a link object has its pair");
            out.push(self.link_plan(o, link)?);
        }
        if spec.discovered_objects.is_some() {
            let found = self.discover_objects().await?;
            let mut names: Vec<(String, String)> = out
                .iter()
                .map(|p| (p.table.name.clone(), p.api_name.clone()))
                .collect();
            names.extend(found.listed.iter().cloned());
            // Said once per start (and not fatal: a custom object may be
            // named before it is created upstream).
            for message in super::select::unmatched_literals(&self.config, spec, &names) {
                tracing::error!(connection = %self.config.name, "{message}");
            }
            out.extend(
                found
                    .plans
                    .into_iter()
                    .filter(|p| p.link.is_none() || self.wants(&p.table.name)),
            );
        }
        Ok(out)
    }

    /// The plan of a link table: an object whose rows the link sync reads
    /// (no incremental strategy or delete detection of its own).
    fn link_plan(
        &self,
        o: &sequin_spec::model::Object,
        link: LinkPlan,
    ) -> Result<ObjectPlan, Error> {
        let loaded = registry::get(&self.config.connector).expect("config is checked");
        let columns = loaded
            .object_columns(&o.name)
            .map(|c| c.to_vec())
            .unwrap_or_else(|| o.fields.iter().map(Column::from_field).collect());
        let mut o = o.clone();
        o.incremental = Some(Incremental::FullRefresh);
        o.deletes = Some(sequin_spec::model::DeleteDetection::None);
        // Never paged (batch reads by id); the plan wants one all the same.
        o.pagination =
            self.spec
                .pagination
                .clone()
                .or(Some(sequin_spec::model::Pagination::LinkHeader {
                    common: Default::default(),
                }));
        let mut plan = ObjectPlan::for_object(&self.spec, &self.config.name, &o, columns)?;
        plan.deletes = None;
        plan.link = Some(link);
        Ok(plan)
    }

    /// The plans of the configured objects with their discovered columns,
    /// as the sync engine sees them (write-through encodes writes with
    /// them).
    pub async fn plans_with_fields(&self) -> Result<Vec<ObjectPlan>, Error> {
        let mut out = Vec::new();
        for p in self.plans().await? {
            if p.discovered_fields.is_some() {
                let found = self.discover_fields(&p).await?;
                out.push(p.with_discovered(found.into_iter().map(|(c, _)| c).collect()));
            } else {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Lists runtime-defined objects (Airtable tables, HubSpot custom
    /// objects, Salesforce's sObjects) as plans of the objects the
    /// connection selects, followed by the link tables their definitions
    /// declare (`links.discovered`).
    pub async fn discover_objects(&self) -> Result<Discovery, Error> {
        let spec = &self.spec;
        let d = spec.discovered_objects.as_ref().expect("caller checked");
        let resp = self.get_json(&d.endpoint, &self.vars(None)).await?;
        let empty = Vec::new();
        let objects = get_path(&resp, &d.records)
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let pagination = d
            .pagination
            .clone()
            .or_else(|| spec.pagination.clone())
            .ok_or_else(|| Error::NoPagination {
                connector: spec.name.clone(),
                object: "(discovered)".into(),
            })?;
        let mut plans = Vec::new();
        let mut definitions: Vec<&Value> = Vec::new();
        let mut listed = Vec::new();
        for o in objects {
            let Some((table, api_name)) = self.listed_object(d, o) else {
                continue;
            };
            listed.push((table.clone(), api_name.clone()));
            let excluded = d.excluded_by_default(&api_name).is_some();
            if !super::select::selects(&self.config, &table, &api_name, excluded) {
                continue;
            }
            let fields: Vec<Value> = match (&d.fields, &d.describe) {
                (Some(path), _) => get_path(o, path)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                (None, Some(desc)) => {
                    let vars = Vars::new().with("object", api_name.clone());
                    let resp = self.get_json(&desc.endpoint, &vars).await?;
                    get_path(&resp, &desc.records)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                }
                (None, None) => Vec::new(),
            };
            let mut plan = self.discovered_plan(d, table, api_name, &fields, &pagination);
            if !listed_flag(o, d.deletes_if_flag.as_deref()) && plan.deletes.is_some() {
                // No deleted-records list for it: the full re-list's diff
                // finds its deletes.
                plan.incremental = Arc::new(Incremental::FullRefresh);
                plan.marker = marker_of(&plan.incremental, &plan.table.columns);
                plan.deletes = None;
            }
            plans.push(plan);
            definitions.push(o);
        }
        let links = self.discover_links(&plans, &definitions, &listed)?;
        plans.extend(links);
        Ok(Discovery { plans, listed })
    }

    /// The table and API name of an entry of the listing, unless the spec
    /// leaves it out: a flag of `only_if` not true, the deny list, a static
    /// object of the same API name (synced as the static one), or a static
    /// table's name (never taken over).
    fn listed_object(&self, d: &DiscoveredObjects, o: &Value) -> Option<(String, String)> {
        let display = get_path(o, &d.name).and_then(Value::as_str)?;
        let api_name = get_path(o, &d.api_name).and_then(Value::as_str)?;
        let flags_hold = d
            .only_if
            .iter()
            .all(|f| get_path(o, f).and_then(Value::as_bool) == Some(true));
        if !flags_hold || d.denied(api_name).is_some() {
            return None;
        }
        let statics = self.spec.all_objects();
        if statics
            .iter()
            .any(|s| s.api_name.eq_ignore_ascii_case(api_name))
        {
            return None;
        }
        let table = if d.table_from_api_name {
            column_name(api_name)
        } else {
            table_name(display)
        };
        // A static table is never taken over (a HubSpot custom object
        // labelled "Ticket").
        if statics.iter().any(|s| s.name == table) {
            tracing::warn!(connection = %self.config.name, table = %table, api_name, "a discovered object is named like a static one; not synced");
            return None;
        }
        Some((table, api_name.to_string()))
    }

    /// The plan of one discovered object from its field descriptions: the
    /// fixed fields, then the described ones; its incremental cursor the
    /// first of `cursor_fields` it has (none: re-listed and diffed).
    fn discovered_plan(
        &self,
        d: &DiscoveredObjects,
        table: String,
        api_name: String,
        fields: &[Value],
        pagination: &sequin_spec::model::Pagination,
    ) -> ObjectPlan {
        let spec = &self.spec;
        let mut columns: Vec<Column> = d.fixed_fields.iter().map(Column::from_field).collect();
        for f in fields {
            if let Some((c, _)) = discovered_column(spec, &d.field, &d.value_path, d.stringly, f)
                && !columns.iter().any(|x| x.name == c.name)
            {
                columns.push(c);
            }
        }
        let primary_key = d
            .fixed_fields
            .iter()
            .position(|f| f.name == d.primary_key)
            .expect("specs are checked");
        let mut incremental = d
            .incremental
            .clone()
            .or_else(|| spec.incremental.clone())
            .unwrap_or(Incremental::FullRefresh);
        let mut deletes = d.deletes.clone().or_else(|| spec.deletes.clone());
        if !d.cursor_fields.is_empty() {
            let has = |name: &str, ty: Option<FieldType>| {
                columns
                    .iter()
                    .any(|c| &*c.api_name == name && ty.is_none_or(|t| c.ty == t))
            };
            match d
                .cursor_fields
                .iter()
                .find(|f| has(f, Some(FieldType::Timestamp)))
            {
                Some(f) => incremental = with_cursor(incremental, f),
                None => {
                    // A full re-list every poll, whose diff finds deletes.
                    incremental = Incremental::FullRefresh;
                    deletes = None;
                }
            }
            if d.deletes_if_field.as_deref().is_some_and(|f| !has(f, None)) {
                deletes = None;
            }
        }
        let static_columns = columns.len();
        let marker = marker_of(&incremental, &columns);
        ObjectPlan {
            table: Table {
                schema: self.config.name.clone(),
                name: table,
                columns,
                primary_key,
            },
            api_name,
            endpoints: super::plan::shared(&d.endpoints),
            pagination: pagination.clone(),
            incremental: super::plan::shared(&incremental),
            deletes: deletes.as_ref().map(super::plan::shared),
            marker,
            discovered_fields: None,
            // The table's fields are all its columns: the whole table is
            // discovered again (the sync engine's `refresh_dynamic`), not
            // field by field.
            static_columns,
            dynamic_table: true,
            parent: None,
            link: None,
        }
    }

    /// The link tables the discovered objects' definitions declare with
    /// objects this connection syncs (`links.discovered`), as dynamic
    /// tables.
    fn discover_links(
        &self,
        objects: &[ObjectPlan],
        definitions: &[&Value],
        listed: &[(String, String)],
    ) -> Result<Vec<ObjectPlan>, Error> {
        let spec = &self.spec;
        let Some((links, found)) = spec
            .links
            .as_ref()
            .and_then(|l| Some((l, l.discovered.as_ref()?)))
        else {
            return Ok(Vec::new());
        };
        let mut defined: Vec<DefinedObject<'_>> = objects
            .iter()
            .zip(definitions)
            .map(|(p, d)| DefinedObject {
                table: &p.table.name,
                api_name: &p.api_name,
                definition: d,
            })
            .collect();
        defined.sort_by(|a, b| a.api_name.cmp(b.api_name));
        let mut taken: BTreeSet<String> = spec.all_objects().into_iter().map(|o| o.name).collect();
        // Every listed object's table, synced or not: a link table never
        // takes the name one would have.
        taken.extend(listed.iter().map(|(t, _)| t.clone()));
        let pairs = found.pairs(spec, &defined, &mut taken, |t| self.wants(t));
        let shared = Arc::new(links.clone());
        let mut out = Vec::new();
        for f in pairs {
            let o = links.pair_object(&f.pair, &f.from_api, &f.to_api);
            let link = LinkPlan {
                links: shared.clone(),
                pair: f.pair,
                from_api: f.from_api,
                to_api: f.to_api,
            };
            let mut plan = self.link_plan(&o, link)?;
            // Created at run time, like its discovered object's table.
            plan.dynamic_table = true;
            out.push(plan);
        }
        Ok(out)
    }

    /// Looks up an object's runtime fields (custom fields, custom
    /// properties), with each one's API type.
    pub async fn discover_fields(&self, plan: &ObjectPlan) -> Result<Vec<(Column, String)>, Error> {
        let Some(d) = &plan.discovered_fields else {
            return Ok(Vec::new());
        };
        let resp = self.get_json(&d.endpoint, &self.vars(Some(plan))).await?;
        let empty = Vec::new();
        let value_path = d.value_path.as_deref().unwrap_or("{name}");
        let mut out = Vec::new();
        for f in get_path(&resp, &d.records)
            .and_then(Value::as_array)
            .unwrap_or(&empty)
        {
            if let Some(flag) = &d.only_if
                && get_path(f, flag).and_then(Value::as_bool) != Some(true)
            {
                continue;
            }
            if let Some(flag) = &d.only_if_not
                && get_path(f, flag).and_then(Value::as_bool) == Some(true)
            {
                continue;
            }
            if let Some((c, t)) = discovered_column(&self.spec, &d.field, value_path, d.stringly, f)
            {
                let clash = plan.table.columns[..plan.static_columns]
                    .iter()
                    .any(|x| x.name == c.name);
                if !clash {
                    out.push((c, t));
                }
            }
        }
        Ok(out)
    }

    /// GETs a describe/meta endpoint.
    async fn get_json(&self, ep: &Endpoint, vars: &Vars) -> Result<Value, Error> {
        let resp = self
            .client
            .with_purpose(Purpose::Discover)
            .send(Priority::Read, ep, vars, None, None)
            .await?;
        Ok(resp.json.unwrap_or(Value::Null))
    }
}

/// What one discovery found: the plans of the objects the connection
/// selects (and of their link tables), and the table and API name of every
/// object the listing offers (for a literal name of `objects:` that
/// matches none).
pub struct Discovery {
    pub plans: Vec<ObjectPlan>,
    pub listed: Vec<(String, String)>,
}

/// `incremental` following the field `cursor` (`{cursor}` in its
/// templates).
fn with_cursor(incremental: Incremental, cursor: &str) -> Incremental {
    match incremental {
        Incremental::UpdatedSince {
            field: _,
            since_param,
            since_format,
            inclusive,
            endpoint,
        } => Incremental::UpdatedSince {
            field: cursor.to_string(),
            since_param,
            since_format,
            inclusive,
            endpoint,
        },
        other => other,
    }
}

/// Whether a listing entry has `flag` true (no flag: every entry has).
fn listed_flag(entry: &Value, flag: Option<&str>) -> bool {
    flag.is_none_or(|f| get_path(entry, f).and_then(Value::as_bool) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::listed_flag;
    use serde_json::json;

    #[test]
    fn a_listing_flag_must_be_true_when_asked_for() {
        let entry = json!({"name": "Account", "replicateable": true, "custom": false});
        assert!(listed_flag(&entry, None));
        assert!(listed_flag(&entry, Some("replicateable")));
        assert!(!listed_flag(&entry, Some("custom")));
        assert!(!listed_flag(&entry, Some("missing")));
    }
}
