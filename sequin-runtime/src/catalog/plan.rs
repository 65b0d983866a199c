//! What to sync for one object: its table, endpoints and strategies,
//! resolved from the spec (static objects) or from discovery (objects and
//! fields known only at run time).

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use sequin_spec::Connector;
use sequin_spec::model::{
    Access, DeleteDetection, DiscoveredFields, Endpoints, FieldDescriptor, FieldType, Incremental,
    Object, Pagination, TimeFormat,
};
use sequin_spec::naming::column_name;
use sequin_spec::record::{Column, get_path};
use serde_json::Value;

use super::Error;
use crate::store::Table;

/// Now, in microseconds since the epoch: the clock of update markers
/// taken at fetch time ([`Marker::FetchTime`]).
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// How a row's upstream update marker (`_sequin_updated_at`) is found.
#[derive(Clone, Debug, PartialEq)]
pub enum Marker {
    /// A timestamp column of the record (`SystemModstamp`, `updated_at`).
    Column(usize),
    /// The API has no per-record update time: the time the page was fetched.
    FetchTime,
}

/// Everything the engine needs to sync one object.
#[derive(Clone, Debug)]
pub struct ObjectPlan {
    pub table: Table,
    /// The API's name of the object (`{object}` in templates).
    pub api_name: String,
    /// The spec's parts are shared by every plan of the same in the
    /// process ([`shared`]).
    pub endpoints: Arc<Endpoints>,
    pub pagination: Pagination,
    pub incremental: Arc<Incremental>,
    pub deletes: Option<Arc<DeleteDetection>>,
    pub marker: Marker,
    /// Fields looked up at run time and added as columns.
    pub discovered_fields: Option<Arc<DiscoveredFields>>,
    /// How many leading columns come from the spec (the rest were discovered).
    pub static_columns: usize,
    /// The table itself was discovered (created at run time, not by DDL).
    pub dynamic_table: bool,
    /// For a child object (listed only under a parent record): its parent.
    pub parent: Option<ParentPlan>,
    /// For a link table (`links:` of the spec): its pair.
    pub link: Option<super::LinkPlan>,
}

/// One copy of `value` for the whole process: the copy already in use by
/// another plan when there is one (the same object of the same API, in
/// another account). A plan's spec parts are kilobytes, and a thousand
/// accounts of one API would otherwise each hold them.
pub fn shared<T>(value: &T) -> Arc<T>
where
    T: serde::Serialize + Clone + Send + Sync + 'static,
{
    type InUse = BTreeMap<(TypeId, String), Weak<dyn Any + Send + Sync>>;
    static IN_USE: Mutex<InUse> = Mutex::new(BTreeMap::new());
    let Ok(text) = serde_json::to_string(value) else {
        return Arc::new(value.clone());
    };
    let key = (TypeId::of::<T>(), text);
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = in_use.get(&key).and_then(Weak::upgrade)
        && let Ok(shared) = shared.downcast::<T>()
    {
        return shared;
    }
    in_use.retain(|_, w| w.strong_count() > 0);
    let shared = Arc::new(value.clone());
    let any: Arc<dyn Any + Send + Sync> = shared.clone();
    in_use.insert(key, Arc::downgrade(&any));
    shared
}

/// The parent of a child object ([`sequin_spec::model::Parent`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ParentPlan {
    /// The parent's table.
    pub object: String,
    /// The placeholder of the child's endpoints filled with the parent's
    /// primary key.
    pub param: String,
    /// The child's column holding the parent's primary key.
    pub column: usize,
    /// The parent's field (API name) embedding the first page of the
    /// children, if the API embeds them.
    pub embedded: Option<String>,
}

impl ObjectPlan {
    /// The plan of a static object of the spec, with its generated columns.
    pub fn for_object(
        spec: &Connector,
        schema: &str,
        o: &Object,
        columns: Vec<Column>,
    ) -> Result<ObjectPlan, Error> {
        let pagination = spec
            .pagination_of(o)
            .cloned()
            .ok_or_else(|| Error::NoPagination {
                connector: spec.name.clone(),
                object: o.name.clone(),
            })?;
        let incremental = spec
            .incremental_of(o)
            .cloned()
            .unwrap_or(Incremental::FullRefresh);
        // A child is kept current through its parent; the events feed adds
        // its own events only to one that changes without its parent.
        let own_events = o.parent.as_ref().is_none_or(|p| p.changes_without_parent);
        let (incremental, deletes) = if own_events {
            (incremental, spec.deletes_of(o).cloned())
        } else {
            (Incremental::FullRefresh, None)
        };
        let primary_key = o
            .fields
            .iter()
            .position(|f| f.name == o.primary_key)
            .expect("specs are checked: the primary key is a field");
        let marker = marker_of(&incremental, &columns);
        let parent = o.parent.as_ref().map(|p| ParentPlan {
            object: p.object.clone(),
            param: p.param.clone(),
            column: o
                .fields
                .iter()
                .position(|f| f.name == p.field)
                .expect("specs are checked: the parent's key is a field"),
            embedded: p.embedded.clone(),
        });
        Ok(ObjectPlan {
            static_columns: columns.len(),
            table: Table {
                schema: schema.to_string(),
                name: o.name.clone(),
                columns,
                primary_key,
            },
            api_name: o.api_name.clone(),
            endpoints: shared(&o.endpoints),
            pagination,
            incremental: shared(&incremental),
            deletes: deletes.as_ref().map(shared),
            marker,
            discovered_fields: o.discovered_fields.as_ref().map(shared),
            dynamic_table: false,
            parent,
            link: None,
        })
    }

    /// Adds discovered columns (keeping the static ones first).
    pub fn with_discovered(&self, extra: Vec<Column>) -> ObjectPlan {
        let mut plan = self.clone();
        plan.table.columns.truncate(self.static_columns);
        for c in extra {
            if !plan.table.columns.iter().any(|x| x.name == c.name) {
                plan.table.columns.push(c);
            }
        }
        plan.marker = marker_of(&plan.incremental, &plan.table.columns);
        plan
    }

    /// Template variables of the object's endpoints: `{object}`,
    /// `{fields}` and, when its incremental strategy follows a field,
    /// `{cursor}` (that field's API name; connection params are added by
    /// the client).
    pub fn vars(&self, fields_under: Option<&str>) -> crate::api::Vars {
        let vars = crate::api::Vars::new()
            .with("object", self.api_name.clone())
            .fields(self.field_names(fields_under));
        match &*self.incremental {
            Incremental::UpdatedSince { field, .. } | Incremental::Search { field, .. } => {
                vars.with("cursor", field.clone())
            }
            _ => vars,
        }
    }

    /// API names of the columns (`{fields}` in templates), restricted to
    /// those whose value path lies under `under` when the connector says so
    /// (HubSpot's `properties=` takes property names only).
    pub fn field_names(&self, under: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.table.columns {
            if let Some(prefix) = under {
                let inside = c
                    .path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'));
                if !inside {
                    continue;
                }
            }
            if !names.iter().any(|n| n == &*c.api_name) {
                names.push(c.api_name.to_string());
            }
        }
        names
    }

    /// The marker of a decoded row, in microseconds.
    pub fn marker_of_row(
        &self,
        cells: &[sequin_spec::record::Cell],
        fetched_at: i64,
    ) -> Option<i64> {
        match self.marker {
            Marker::Column(i) => match cells.get(i) {
                Some(sequin_spec::record::Cell::Timestamp(us)) => Some(*us),
                _ => Some(fetched_at),
            },
            Marker::FetchTime => Some(fetched_at),
        }
    }
}

/// The update marker of an object synced by `incremental` with `columns`:
/// the timestamp column its updated-since list or search follows, else the
/// fetch time.
pub fn marker_of(incremental: &Incremental, columns: &[Column]) -> Marker {
    let field = match incremental {
        Incremental::UpdatedSince { field, .. } | Incremental::Search { field, .. } => field,
        _ => return Marker::FetchTime,
    };
    columns
        .iter()
        .position(|c| &*c.api_name == field && c.ty == FieldType::Timestamp)
        .map(Marker::Column)
        .unwrap_or(Marker::FetchTime)
}

/// Builds a column from one field description of a describe/meta response.
pub fn discovered_column(
    spec: &Connector,
    d: &FieldDescriptor,
    value_path: &str,
    stringly: bool,
    field: &Value,
) -> Option<(Column, String)> {
    let name = get_path(field, &d.name)?.as_str()?.to_string();
    let api_type = get_path(field, &d.ty)
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    if d.skip_types.iter().any(|t| t == &api_type) {
        return None;
    }
    let ty = spec
        .type_map
        .get(&api_type)
        .copied()
        .unwrap_or(FieldType::Json);
    let flag = |p: &Option<String>| {
        p.as_ref()
            .and_then(|p| get_path(field, p))
            .and_then(Value::as_bool)
    };
    let computed =
        d.read_only_types.iter().any(|t| t == &api_type) || flag(&d.computed) == Some(true);
    let access = match (flag(&d.createable), flag(&d.updateable), flag(&d.read_only)) {
        _ if computed => Access::ReadOnly,
        (_, _, Some(true)) => Access::ReadOnly,
        (Some(c), Some(u), _) => match (c, u) {
            (_, true) => Access::Writable,
            (true, false) => Access::CreateOnly,
            (false, false) => Access::ReadOnly,
        },
        _ => d.default_access,
    };
    let max_length = d
        .max_length
        .as_ref()
        .and_then(|p| get_path(field, p))
        .and_then(Value::as_u64)
        .filter(|n| *n > 0 && ty == FieldType::String)
        .map(|n| n as u32);
    let enum_values: Vec<std::borrow::Cow<'static, str>> = d
        .enum_values
        .as_ref()
        .and_then(|p| get_path(field, p))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(m) => m.get("value").and_then(Value::as_str).map(str::to_string),
                    _ => None,
                })
                .map(Into::into)
                .collect()
        })
        .unwrap_or_default();
    // Required on create: settable then, never null, not filled in by
    // the API (Salesforce: `nillable` false, `defaultedOnCreate` false).
    let required_on_create = d.required_on_create.as_ref().is_some_and(|r| {
        matches!(access, Access::Writable | Access::CreateOnly)
            && get_path(field, &r.nullable).and_then(Value::as_bool) == Some(false)
            && r.defaulted
                .as_ref()
                .and_then(|p| get_path(field, p))
                .and_then(Value::as_bool)
                != Some(true)
    });
    let col = Column {
        name: column_name(&name).into(),
        api_name: name.clone().into(),
        path: value_path.replace("{name}", &name).into(),
        ty,
        nullable: flag(&d.nullable).unwrap_or(true),
        access,
        required_on_create,
        format: None,
        max_length,
        enum_values: if ty == FieldType::String {
            enum_values.into()
        } else {
            Vec::new().into()
        },
        pattern: None,
        time_format: TimeFormat::Iso8601,
        merge_keys: false,
        stringly,
        external_id: flag(&d.external_id).unwrap_or(false),
    };
    Some((col, api_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_of_one_object_share_its_endpoints() {
        let stripe = &crate::registry::get("stripe").unwrap().spec;
        let customer = stripe
            .objects
            .iter()
            .find(|o| o.name == "customer")
            .unwrap();
        let price = stripe.objects.iter().find(|o| o.name == "price").unwrap();
        let a = ObjectPlan::for_object(stripe, "acct_a", customer, vec![]).unwrap();
        let b = ObjectPlan::for_object(stripe, "acct_b", customer, vec![]).unwrap();
        assert!(Arc::ptr_eq(&a.endpoints, &b.endpoints));
        assert!(Arc::ptr_eq(&a.incremental, &b.incremental));
        assert_eq!(*a.endpoints, customer.endpoints);
        let p = ObjectPlan::for_object(stripe, "acct_a", price, vec![]).unwrap();
        assert!(!Arc::ptr_eq(&a.endpoints, &p.endpoints));
        assert_eq!(*p.endpoints, price.endpoints);
    }
}
