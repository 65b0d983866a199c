//! DDL and docs, rendered with tera from `templates/`.
//!
//! The context is built here from the model (type mapping, comments,
//! constraint summaries); the templates only lay it out.

use sequin_spec::model::{
    Access, Auth, BodyEncoding, Connector, DeleteDetection, DeleteWindow, Field, FieldType,
    Incremental, Object, Parent,
};
use sequin_spec::naming::quote_ident;
use serde::Serialize;
use tera::{Context, Tera};

const DDL: &str = include_str!("../templates/ddl.sql.tera");
const DOC: &str = include_str!("../templates/doc.md.tera");

#[derive(Serialize)]
struct TableCtx {
    name: String,
    api_name: String,
    description: Option<String>,
    primary_key: String,
    columns: Vec<ColumnCtx>,
    operations: String,
    incremental: String,
    deletes: String,
    discovered: Option<String>,
    /// For a child object: its parent key column (indexed) and how it is
    /// listed.
    parent: Option<ParentCtx>,
    /// A parent of child objects: its `_sequin_synced_at` is indexed (sync
    /// looks up the parents written since its last poll).
    has_children: bool,
    /// For a link table: its pair.
    link: Option<LinkCtx>,
}

#[derive(Serialize)]
struct LinkCtx {
    from: String,
    to: String,
    /// The batch read's path.
    read: String,
    every: String,
}

#[derive(Serialize)]
struct ParentCtx {
    /// The parent's table.
    object: String,
    /// The child's column holding the parent's primary key, quoted.
    ident: String,
    /// The column, unquoted (index names).
    column: String,
    /// The list endpoint's path.
    list: String,
    /// The parent's field embedding the children's first page, if any.
    embedded: Option<String>,
}

#[derive(Serialize)]
struct ColumnCtx {
    name: String,
    ident: String,
    pg_type: &'static str,
    not_null: bool,
    default: Option<&'static str>,
    api: String,
    access: &'static str,
    constraints: String,
    comment: String,
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::ReadOnly => "read-only",
        Access::CreateOnly => "create-only",
        Access::UpdateOnly => "update-only",
        Access::Writable => "writable",
    }
}

fn constraints(f: &Field) -> String {
    let mut parts = Vec::new();
    if f.required_on_create {
        parts.push("required on create".to_string());
    }
    if !f.nullable {
        parts.push("not null".into());
    }
    if let Some(fmt) = f.format {
        parts.push(format!(
            "format {}",
            serde_json::to_value(fmt)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("")
        ));
    }
    if let Some(n) = f.max_length {
        parts.push(format!("max {n} chars"));
    }
    if !f.enum_values.is_empty() {
        parts.push(format!("one of {}", f.enum_values.join(", ")));
    }
    if let Some(p) = &f.pattern {
        parts.push(format!("matches `{}`", p.replace('|', "\\|")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        parts.join("; ")
    }
}

fn column(f: &Field, primary_key: bool) -> ColumnCtx {
    let name = f.column_name();
    let mut comment = format!("{} `{}`", access_name(f.access), f.name);
    let c = constraints(f);
    if !c.is_empty() {
        comment.push_str("; ");
        comment.push_str(&c);
    }
    ColumnCtx {
        ident: quote_ident(&name),
        name,
        pg_type: f.ty.pg_type(),
        not_null: primary_key,
        // A row inserted through the proxy carries a provisional id until the
        // API assigns the real one.
        default: (primary_key && f.ty == FieldType::String)
            .then_some("('_pending_' || gen_random_uuid()::text)"),
        api: f.value_path().to_string(),
        access: access_name(f.access),
        constraints: c.replace('|', "\\|"),
        comment: comment.replace('\'', "''"),
    }
}

fn operations(o: &Object) -> String {
    let e = &o.endpoints;
    let mut ops = vec!["SELECT"];
    if e.create.is_some() || e.batch_create.is_some() {
        ops.push("INSERT");
    }
    if e.update.is_some() || e.batch_update.is_some() {
        ops.push("UPDATE");
    }
    if e.delete.is_some() || e.batch_delete.is_some() {
        ops.push("DELETE");
    }
    let mut s = ops.join(", ");
    if ops.len() > 1 {
        s.push_str(&format!(
            " (at most {} rows per statement)",
            o.max_rows_per_write
        ));
    }
    if e.upsert.is_some() {
        let by: Vec<&str> = o
            .fields
            .iter()
            .filter(|f| f.external_id)
            .map(|f| f.name.as_str())
            .collect();
        let by = if by.is_empty() {
            "an external id field the API describes".to_string()
        } else {
            by.join(", ")
        };
        s.push_str(&format!(
            "; INSERT ... ON CONFLICT (<external id>) DO UPDATE upserts by {by}"
        ));
    }
    s
}

fn incremental_name(i: Option<&Incremental>) -> String {
    match i {
        Some(Incremental::Events {
            endpoint,
            fallback: Some(f),
            ..
        }) => format!(
            "events feed `{}` (refused with HTTP {}: re-listed every {} and diffed)",
            endpoint.path,
            f.on_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            f.every
        ),
        Some(Incremental::Events { endpoint, .. }) => format!("events feed `{}`", endpoint.path),
        Some(Incremental::UpdatedSince { field, .. }) => {
            format!("records updated since the last poll (`{field}`)")
        }
        Some(Incremental::Search { field, .. }) => format!("search on `{field}`"),
        Some(Incremental::FullRefresh) | None => "full refresh".into(),
    }
}

/// How a child object is kept current: through its parent, plus its own
/// events where it has them.
fn child_incremental(c: &Connector, o: &Object, p: &Parent) -> String {
    let own = match c.incremental_of(o) {
        Some(i @ Incremental::Events { .. }) if p.changes_without_parent => {
            format!(", and its own {}", incremental_name(Some(i)))
        }
        _ => String::new(),
    };
    format!(
        "listed again under a `{}` whenever that row changes{own}",
        p.object
    )
}

/// How a child object's deletes are found.
fn child_deletes(c: &Connector, o: &Object, p: &Parent) -> String {
    let own = match c.deletes_of(o) {
        Some(DeleteDetection::Events) if p.changes_without_parent => " and from the events feed",
        _ => "",
    };
    format!(
        "records no longer listed under their `{}` (and every record of a deleted `{}`){own}",
        p.object, p.object
    )
}

fn deletes_name(d: Option<&DeleteDetection>) -> String {
    match d {
        Some(DeleteDetection::Events) => "from the events feed".into(),
        Some(DeleteDetection::DeletedList {
            endpoint, window, ..
        }) => {
            let list = format!("deleted-records list `{}`", endpoint.path);
            match window {
                Some(w) => format!("{list}{}", window_note(w)),
                None => list,
            }
        }
        Some(DeleteDetection::FullDiff { every }) => format!("full id diff every {every}"),
        Some(DeleteDetection::None) => "the API does not delete".into(),
        None => "full id diff".into(),
    }
}

/// What a deleted-records list's window means for a stopped sync, in
/// words: how far back it reaches and what happens beyond.
fn window_note(w: &DeleteWindow) -> String {
    let reach = match (&w.earliest, &w.retention) {
        (Some(path), Some(r)) => format!("back to its `{path}`, at most {r}"),
        (Some(path), None) => format!("back to its `{path}`"),
        (None, Some(r)) => format!("back {r}"),
        (None, None) => "back as far as it answers".into(),
    };
    let listing = match &w.full_diff {
        Some(l) => format!("`{}`", l.endpoint.path),
        None => "the object's list".into(),
    };
    format!(
        ", which reaches {reach}; a cursor older than that triggers one full id diff (every id listed through {listing}, rows whose ids are gone deleted)"
    )
}

fn tables(c: &Connector) -> Vec<TableCtx> {
    let links = c.links.as_ref();
    let mut tables: Vec<TableCtx> = c.objects.iter().map(|o| table(c, o)).collect();
    for (o, p) in c
        .link_objects()
        .iter()
        .zip(links.map_or(&[][..], |l| &l.pairs))
    {
        let mut t = table(c, o);
        let l = links.expect("link objects come from `links`");
        t.link = Some(LinkCtx {
            from: p.from.clone(),
            to: p.to.clone(),
            read: o.endpoints.list.path.clone(),
            every: l.every.to_string(),
        });
        t.incremental = format!(
            "links of `{}` records read in batches of {} (`{}`): after both objects' backfill, again for every record of either object sync writes, and all of them every {} (per connection: `association_interval`)",
            p.from, l.read.max_size, o.endpoints.list.path, l.every
        );
        t.deletes = format!(
            "the full read every {} deletes links no longer there; a record's links go with it",
            l.every
        );
        tables.push(t);
    }
    tables
}

fn table(c: &Connector, o: &Object) -> TableCtx {
    TableCtx {
        name: o.name.clone(),
        api_name: o.api_name.clone(),
        description: o.description.clone(),
        primary_key: o
            .primary_key_field()
            .map(|f| quote_ident(&f.column_name()))
            .unwrap_or_default(),
        columns: o
            .fields
            .iter()
            .map(|f| column(f, f.name == o.primary_key))
            .collect(),
        operations: operations(o),
        incremental: match &o.parent {
            Some(p) => child_incremental(c, o, p),
            None => incremental_name(c.incremental_of(o)),
        },
        deletes: match &o.parent {
            Some(p) => child_deletes(c, o, p),
            None => deletes_name(c.deletes_of(o)),
        },
        // Sync looks up the rows written since its last poll on the
        // parents of children and on the objects of link tables.
        has_children: c.children_of(&o.name).next().is_some()
            || c.links
                .as_ref()
                .is_some_and(|l| l.pairs.iter().any(|p| p.from == o.name || p.to == o.name)),
        parent: o.parent.as_ref().map(|p| {
            let column = o
                .fields
                .iter()
                .find(|f| f.name == p.field)
                .map(Field::column_name)
                .unwrap_or_else(|| p.field.clone());
            ParentCtx {
                object: p.object.clone(),
                ident: quote_ident(&column),
                column,
                list: o.endpoints.list.path.clone(),
                embedded: p.embedded.clone(),
            }
        }),
        discovered: o.discovered_fields.as_ref().map(|d| {
            format!(
                "`{}`{}, every {}",
                d.endpoint.path,
                d.only_if
                    .as_ref()
                    .map(|p| format!(" where `{p}`"))
                    .unwrap_or_default(),
                d.every
            )
        }),
        link: None,
    }
}

fn render(template: &str, name: &str, ctx: &Context) -> String {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_template(name, template)
        .expect("built-in template parses");
    tera.render(name, ctx).expect("built-in template renders")
}

/// The DDL of a connector's static tables.
pub fn ddl(c: &Connector, source: &str) -> String {
    let mut ctx = Context::new();
    ctx.insert("header", &crate::header(source));
    ctx.insert("source", source);
    ctx.insert("c", c);
    ctx.insert("tables", &tables(c));
    render(DDL, "ddl.sql", &ctx)
}

/// The docs page of a connector.
pub fn doc(c: &Connector, source: &str) -> String {
    let mut ctx = Context::new();
    ctx.insert("header", &crate::header(source));
    ctx.insert("source", source);
    ctx.insert("c", c);
    ctx.insert("tables", &tables(c));
    ctx.insert("params", &c.params);
    ctx.insert(
        "write_share_pct",
        &((c.rate_limit.write_share * 100.0).round() as u32),
    );
    ctx.insert(
        "auth",
        &match &c.auth {
            Auth::ApiKey { location, name, .. } => {
                format!("API key in {location:?} `{name}`").to_lowercase()
            }
            Auth::Bearer { credential } => format!("bearer token (credential `{credential}`)"),
            Auth::Basic { username, .. } => format!("HTTP basic (credential `{username}`)"),
            Auth::OAuth2Refresh {
                rotating_refresh_token,
                ..
            } => format!(
                "OAuth2 refresh token{}",
                if *rotating_refresh_token {
                    ", rotated and persisted"
                } else {
                    ""
                }
            ),
        },
    );
    ctx.insert(
        "body",
        match c.body {
            BodyEncoding::Json => "JSON",
            BodyEncoding::Form => "form-encoded (deepObject nesting)",
        },
    );
    let discovered = c.discovered_objects.as_ref().map(|d| {
        let mut s = format!(
            "Every object listed by `{}` becomes a table named after it (snake_case), with the fixed columns below plus one column per field (typed through the type map). Operations through the proxy: {}. Incremental sync: {}. Deletes: {}. Re-discovered every {}.\n\n| column | type | API field | access |\n|---|---|---|---|",
            d.endpoint.path,
            operations(&Object {
                name: String::new(),
                api_name: String::new(),
                description: None,
                primary_key: d.primary_key.clone(),
                endpoints: d.endpoints.clone(),
                pagination: None,
                incremental: None,
                deletes: None,
                max_rows_per_write: d.max_rows_per_write,
                fields: Vec::new(),
                discovered_fields: None,
                parent: None,
            }),
            incremental_name(d.incremental.as_ref().or(c.incremental.as_ref())),
            deletes_name(d.deletes.as_ref().or(c.deletes.as_ref())),
            d.every,
        );
        for f in &d.fixed_fields {
            s.push_str(&format!(
                "\n| `{}` | {} | `{}` | {} |",
                f.column_name(),
                f.ty.pg_type(),
                f.value_path(),
                access_name(f.access)
            ));
        }
        s.push_str(&discovered_rules(d));
        if !c.type_map.is_empty() {
            s.push_str("\n\nType map (API type -> column type):\n");
            for (k, v) in &c.type_map {
                s.push_str(&format!("\n- `{k}` -> {}", v.pg_type()));
            }
        }
        if let Some(found) = c.links.as_ref().and_then(|l| l.discovered.as_ref()) {
            s.push_str(&format!(
                "\n\nLink tables of discovered objects: each association in a discovered object's `{}` with an object this connection syncs (a table above or another discovered object; `{}` names it) is a link table, with the columns and the sync and write-through of the link tables above. It is named `<object>_<other>` (from the discovered object to the other one), `<object>_<other>_link` when that name is taken, and left out when both are; one table per object pair.",
                found.associations, found.to
            ));
        }
        s
    });
    ctx.insert("discovered", &discovered);
    render(DOC, "doc.md", &ctx)
}

/// The docs of a discovered objects' selection and change detection: the
/// per-object describe, the listing's filters, the deny list and default
/// exclusions with their reasons, the cursor candidates and the skipped
/// field types.
fn discovered_rules(d: &sequin_spec::model::DiscoveredObjects) -> String {
    let mut s = String::new();
    if let Some(desc) = &d.describe {
        s.push_str(&format!(
            "\n\nThe listing names objects without their fields: each synced object's fields come from `{}` (one request per object and discovery).",
            desc.endpoint.path
        ));
    }
    if d.table_from_api_name {
        s.push_str(" Tables are named after the API name with the column rules (`Invoice__c` -> `invoice__c`).");
    }
    if !d.only_if.is_empty() {
        let flags: Vec<String> = d.only_if.iter().map(|f| format!("`{f}`")).collect();
        s.push_str(&format!(
            " Only objects whose listing entry has {} true are synced.",
            flags.join(", ")
        ));
    }
    if !d.cursor_fields.is_empty() {
        let fields: Vec<String> = d.cursor_fields.iter().map(|f| format!("`{f}`")).collect();
        s.push_str(&format!(
            "\n\nChange detection per object: the first of {} the object has is the incremental cursor (`{{cursor}}`); an object with none of them is re-listed whole and diffed at every poll (a periodic full diff, which also finds its deletes).",
            fields.join(", ")
        ));
    }
    if let Some(f) = &d.deletes_if_field {
        s.push_str(&format!(
            " Deletes are detected only on objects with a `{f}` field."
        ));
    }
    if let Some(f) = &d.deletes_if_flag {
        s.push_str(&format!(
            " An object whose listing entry does not have `{f}` true is re-listed whole and diffed at every poll, which finds its deletes."
        ));
    }
    let skipped = &d.field.skip_types;
    if !skipped.is_empty() {
        let types: Vec<String> = skipped.iter().map(|t| format!("`{t}`")).collect();
        s.push_str(&format!(
            " Fields of the types {} are not synced (see the spec's comments for why).",
            types.join(", ")
        ));
    }
    if let Some(p) = &d.field.computed {
        s.push_str(&format!(" Fields with `{p}` true are read-only."));
    }
    for (title, rules) in [
        ("Never synced (deny list)", &d.deny),
        (
            "Not synced unless a connection names them literally in `objects:`",
            &d.exclude_by_default,
        ),
    ] {
        if rules.is_empty() {
            continue;
        }
        s.push_str(&format!("\n\n{title}:\n"));
        for r in rules {
            s.push_str(&format!("\n- `{}`: {}", r.pattern, r.why.trim()));
        }
    }
    s
}
