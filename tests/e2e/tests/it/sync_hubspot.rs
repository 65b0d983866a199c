//! HubSpot end to end: every CRM object backfilled from the simulator equals
//! the portal's records in every declared property (values arrive as strings
//! and are typed), then changes found by the search API on last-modified,
//! archived records removed, and custom properties created in the portal
//! that become columns without a restart, values included. Contacts,
//! companies and deals are followed in one test (custom properties
//! included), the other standard objects in another: HubSpot's budget of
//! 100 requests per 10 s and 5 searches a second cannot poll all of them at
//! the first test's pace.

use crate::sync_common;
use crate::sync_hubspot_links::{link_ids, portal_links};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::hubspot::{AssociationCategory, ObjectType};
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::FieldType;
use serde_json::{Value, json};
use sync_common::{
    Col, assert_table_equals, db_row, freshness, get_json, row_equals, spec_columns, within,
};

/// HubSpot's budget (100 requests per 10 s) is shared by three objects,
/// each polling search and the archived list (80% of it for reads): a
/// 1.5 s interval with discovery every 2 s fits it.
const POLL: Duration = Duration::from_millis(1500);
const SLACK: Duration = Duration::from_secs(2);
const SEED: usize = 250;

const OBJECTS: [(ObjectType, &str, &str); 3] = [
    (ObjectType::Contacts, "contacts", "contact"),
    (ObjectType::Companies, "companies", "company"),
    (ObjectType::Deals, "deals", "deal"),
];

/// Every live record of an object type, read through the API with the
/// properties of `cols` (the sim's own list endpoint, paged by `after`).
async fn api_records(
    base: &str,
    token: &str,
    object: &str,
    cols: &[Col],
) -> BTreeMap<String, Value> {
    let props: Vec<&str> = cols
        .iter()
        .filter_map(|c| c.path.strip_prefix("properties."))
        .collect();
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{base}/crm/v3/objects/{object}?limit=100&properties={}",
            props.join(",")
        );
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = get_json(&url, token).await;
        for r in page["results"].as_array().expect("results") {
            out.insert(r["id"].as_str().unwrap().to_string(), r.clone());
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

async fn api_record(base: &str, token: &str, object: &str, id: &str, cols: &[Col]) -> Value {
    let props: Vec<&str> = cols
        .iter()
        .filter_map(|c| c.path.strip_prefix("properties."))
        .collect();
    get_json(
        &format!(
            "{base}/crm/v3/objects/{object}/{id}?properties={}",
            props.join(",")
        ),
        token,
    )
    .await
}

async fn has_column(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    column: &str,
) -> Option<String> {
    pg.query_opt(
        "SELECT data_type::text FROM information_schema.columns
          WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
        &[&schema, &table, &column],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_backfill_live_changes_archives_and_custom_properties() {
    // A connection of its own name (and so its own rate-limit budget): the
    // write-through tests' `hubspot` connections run beside this one.
    const SCHEMA: &str = "hubspot_crm";
    let db = sequin_pgtemp::Database::create("sync_hubspot").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    let base = sim.base_url();
    let token = sim.token().to_string();
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [contact, company, deal]
    poll_interval: 1500ms
    discovery_interval: 2s
",
        db = db.url,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(120)).await;

    // Every table equals the portal: every record, every declared property.
    for (_, object, table) in OBJECTS {
        let cols = spec_columns("hubspot", table);
        let api = api_records(&base, &token, object, &cols).await;
        assert_eq!(api.len(), SEED);
        assert_table_equals(&pg, SCHEMA, table, "id", &cols, &api).await;
    }
    // Stringly values are typed in Postgres.
    let row = pg
        .query_one(
            &format!("SELECT numberofemployees, hs_object_id, createdate FROM {SCHEMA}.company ORDER BY id LIMIT 1"),
            &[],
        )
        .await
        .unwrap();
    assert!(row.try_get::<_, i64>(1).is_ok(), "hs_object_id is bigint");

    // Changes made by another user: found by the search on last-modified.
    let contact_cols = spec_columns("hubspot", "contact");
    let company_cols = spec_columns("hubspot", "company");
    let deal_cols = spec_columns("hubspot", "deal");
    let contact_id: String = pg
        .query_one(
            &format!("SELECT id FROM {SCHEMA}.contact ORDER BY id LIMIT 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let deal_gone: String = pg
        .query_one(
            &format!("SELECT id FROM {SCHEMA}.deal ORDER BY id LIMIT 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let changed_at = Instant::now();
    hs.update(
        ObjectType::Contacts,
        &contact_id,
        json!({"firstname": "Andrea", "jobtitle": "Architect", "city": "Vicenza"}),
    )
    .unwrap();
    let company_id = hs
        .create(
            ObjectType::Companies,
            json!({"name": "Palladio Srl", "domain": "palladio.example.com", "numberofemployees": "12", "annualrevenue": "1500000.5"}),
        )
        .unwrap();
    hs.archive(ObjectType::Deals, &deal_gone);
    let contact = api_record(&base, &token, "contacts", &contact_id, &contact_cols).await;
    let company = api_record(&base, &token, "companies", &company_id, &company_cols).await;
    within(
        changed_at,
        freshness(POLL, SLACK),
        "update, create and archive",
        || async {
            let (a, arow) = row_equals(
                &pg,
                SCHEMA,
                "contact",
                "id",
                &contact_id,
                &contact_cols,
                &contact,
            )
            .await;
            let (c, _) = row_equals(
                &pg,
                SCHEMA,
                "company",
                "id",
                &company_id,
                &company_cols,
                &company,
            )
            .await;
            let gone = db_row(&pg, SCHEMA, "deal", "id", &deal_gone, &deal_cols)
                .await
                .is_none();
            (a && c && gone, (a, c, gone, arow))
        },
    )
    .await;
    let fresh = changed_at.elapsed();

    // Custom properties become columns without a restart; values set right
    // away (before discovery) still arrive.
    hs.create_property(
        ObjectType::Contacts,
        json!({"name": "favorite_color", "label": "Favorite color", "type": "string", "fieldType": "text", "groupName": "contactinformation"}),
    )
    .unwrap();
    hs.create_property(
        ObjectType::Contacts,
        json!({"name": "nps_score", "label": "NPS score", "type": "number", "fieldType": "number", "groupName": "contactinformation"}),
    )
    .unwrap();
    hs.update(
        ObjectType::Contacts,
        &contact_id,
        json!({"favorite_color": "teal", "nps_score": "9.5"}),
    )
    .unwrap();
    eventually(Duration::from_secs(15), "custom columns", || async {
        let a = has_column(&pg, SCHEMA, "contact", "favorite_color").await;
        let b = has_column(&pg, SCHEMA, "contact", "nps_score").await;
        (
            a.as_deref() == Some("text") && b.as_deref() == Some("numeric"),
            (a, b),
        )
    })
    .await;
    let mut with_custom = contact_cols.clone();
    for (name, ty) in [
        ("favorite_color", FieldType::String),
        ("nps_score", FieldType::Decimal),
    ] {
        let mut c = Col::new(name, &format!("properties.{name}"), ty);
        c.stringly = true;
        with_custom.push(c);
    }
    let contact = api_record(&base, &token, "contacts", &contact_id, &with_custom).await;
    assert_eq!(contact["properties"]["favorite_color"], "teal");
    // The values already set arrive with the re-list that follows the new
    // column (the whole object: no freshness bound applies).
    eventually(
        Duration::from_secs(60),
        "custom property values",
        || async {
            row_equals(
                &pg,
                SCHEMA,
                "contact",
                "id",
                &contact_id,
                &with_custom,
                &contact,
            )
            .await
        },
    )
    .await;
    let other: String = pg
        .query_one(
            &format!("SELECT id FROM {SCHEMA}.contact WHERE id <> $1 ORDER BY id LIMIT 1"),
            &[&contact_id],
        )
        .await
        .unwrap()
        .get(0);
    let changed_at = Instant::now();
    hs.update(ObjectType::Contacts, &other, json!({"nps_score": "3"}))
        .unwrap();
    let other_rec = api_record(&base, &token, "contacts", &other, &with_custom).await;
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a later custom value",
        || async {
            row_equals(
                &pg,
                SCHEMA,
                "contact",
                "id",
                &other,
                &with_custom,
                &other_rec,
            )
            .await
        },
    )
    .await;

    // In the end every table equals the portal, custom columns included.
    for (_, object, table) in OBJECTS {
        let cols = if table == "contact" {
            with_custom.clone()
        } else {
            spec_columns("hubspot", table)
        };
        let api = api_records(&base, &token, object, &cols).await;
        assert_table_equals(&pg, SCHEMA, table, "id", &cols, &api).await;
    }
    assert!(!sync.finished(), "the engine is still running");
    eprintln!("hubspot: first live changes visible after {fresh:?}");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// Polls of the other standard objects: nine objects each search and list
/// their archived records every poll, 18 requests against a read budget of
/// 8 a second and 5 searches a second.
const POLL_MANY: Duration = Duration::from_secs(3);

/// `(type, path name, table, a valid create body, a property to change and
/// its new value)` of every standard object but contacts, companies and deals.
fn other_objects(
    owner: &str,
) -> Vec<(
    ObjectType,
    &'static str,
    &'static str,
    Value,
    &'static str,
    Value,
)> {
    let when = "2025-03-01T10:00:00.000Z";
    vec![
        (
            ObjectType::Tickets,
            "tickets",
            "ticket",
            json!({"subject": "Printer on fire", "hs_pipeline_stage": "1", "hs_ticket_priority": "HIGH"}),
            "hs_pipeline_stage",
            json!("4"),
        ),
        (
            ObjectType::Products,
            "products",
            "product",
            json!({"name": "Widget", "price": "12.5", "hs_sku": "W-1"}),
            "price",
            json!("13.75"),
        ),
        (
            ObjectType::LineItems,
            "line_items",
            "line_item",
            json!({"name": "Widgets", "quantity": "3", "price": "12.5"}),
            "quantity",
            json!("4"),
        ),
        (
            ObjectType::Quotes,
            "quotes",
            "quote",
            json!({"hs_title": "Q-1", "hs_expiration_date": "2025-12-31", "hs_esign_enabled": "true"}),
            "hs_expiration_date",
            json!("2026-01-31"),
        ),
        (
            ObjectType::Calls,
            "calls",
            "call",
            json!({"hs_timestamp": when, "hs_call_title": "Intro", "hs_call_duration": "60000"}),
            "hs_call_duration",
            json!("120000"),
        ),
        (
            ObjectType::Emails,
            "emails",
            "email",
            json!({"hs_timestamp": when, "hs_email_subject": "Hello", "hs_email_direction": "EMAIL"}),
            "hs_email_subject",
            json!("Hello again"),
        ),
        (
            ObjectType::Meetings,
            "meetings",
            "meeting",
            json!({"hs_timestamp": when, "hs_meeting_title": "Kickoff", "hubspot_owner_id": owner}),
            "hs_meeting_end_time",
            json!("2025-03-01T11:00:00.000Z"),
        ),
        (
            ObjectType::Notes,
            "notes",
            "note",
            json!({"hs_timestamp": when, "hs_note_body": "Met at the fair"}),
            "hs_note_body",
            json!("Met twice"),
        ),
        (
            ObjectType::Tasks,
            "tasks",
            "task",
            json!({"hs_timestamp": when, "hs_task_subject": "Call back"}),
            "hs_task_status",
            json!("COMPLETED"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_standard_object_backfills_and_follows_live_changes() {
    const SEED_MANY: usize = 120;
    // A connection of its own name: the process keeps one rate-limit budget
    // per connection name, and the other HubSpot tests run beside this one.
    const SCHEMA: &str = "hubspot_others";
    let db = sequin_pgtemp::Database::create("sync_hubspot_all").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(SEED_MANY),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    let base = sim.base_url();
    let token = sim.token().to_string();
    let owner = hs.owner_ids()[0].clone();
    let objects = other_objects(&owner);
    let tables: Vec<&str> = objects.iter().map(|o| o.2).collect();
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [{tables}]
    poll_interval: 3s
    discovery_interval: 60s
",
        db = db.url,
        tables = tables.join(", "),
        SCHEMA = SCHEMA,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(180)).await;

    // Every table equals the portal: every record, every declared property.
    for (_, object, table, ..) in &objects {
        let cols = spec_columns("hubspot", table);
        let api = api_records(&base, &token, object, &cols).await;
        assert_eq!(api.len(), SEED_MANY, "{object}");
        assert_table_equals(&pg, SCHEMA, table, "id", &cols, &api).await;
    }

    // A create, an update and an archive of every object, made by another
    // user at once, all visible within two poll intervals.
    let mut expected = Vec::new();
    let changed_at = Instant::now();
    for (object_type, object, table, create, key, value) in &objects {
        let first: String = pg
            .query_one(
                &format!("SELECT id FROM {SCHEMA}.{table} ORDER BY id LIMIT 1"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let second: String = pg
            .query_one(
                &format!("SELECT id FROM {SCHEMA}.{table} ORDER BY id OFFSET 1 LIMIT 1"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        hs.update(*object_type, &first, json!({ *key: value }))
            .unwrap();
        let created = hs.create(*object_type, create.clone()).unwrap();
        hs.archive(*object_type, &second);
        expected.push((*object, *table, first, created, second));
    }
    let mut records = Vec::new();
    for (object, table, updated, created, archived) in &expected {
        let cols = spec_columns("hubspot", table);
        let updated_rec = api_record(&base, &token, object, updated, &cols).await;
        let created_rec = api_record(&base, &token, object, created, &cols).await;
        records.push((
            *table,
            cols,
            updated.clone(),
            updated_rec,
            created.clone(),
            created_rec,
            archived.clone(),
        ));
    }
    within(
        changed_at,
        freshness(POLL_MANY, SLACK),
        "a create, an update and an archive of every object",
        || async {
            let mut pending = Vec::new();
            for (table, cols, updated, updated_rec, created, created_rec, archived) in &records {
                let (u, _) = row_equals(&pg, SCHEMA, table, "id", updated, cols, updated_rec).await;
                let (c, _) = row_equals(&pg, SCHEMA, table, "id", created, cols, created_rec).await;
                let gone = db_row(&pg, SCHEMA, table, "id", archived, cols)
                    .await
                    .is_none();
                if !(u && c && gone) {
                    pending.push((*table, u, c, gone));
                }
            }
            (pending.is_empty(), pending)
        },
    )
    .await;
    // The calculated values HubSpot set with the changes arrived too.
    let closed: Option<bool> = pg
        .query_one(
            &format!("SELECT closed_date IS NOT NULL FROM {SCHEMA}.ticket WHERE id = $1"),
            &[&expected[0].2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        closed,
        Some(true),
        "a ticket moved to a closed stage has its close date"
    );

    // In the end every table equals the portal.
    for (_, object, table, ..) in &objects {
        let cols = spec_columns("hubspot", table);
        let api = api_records(&base, &token, object, &cols).await;
        assert_table_equals(&pg, SCHEMA, table, "id", &cols, &api).await;
    }
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    // Nine objects polled at once kept to the search endpoints' own limit
    // (5 a second across objects, the spec's `rate_limit.endpoints`); the
    // test itself never searches.
    let search = sim.stats().rate_keys["portal:search"].clone();
    assert_eq!(search.rejected, 0, "searches over the limit: {search:?}");
    assert!(search.requests >= objects.len() as u64, "{search:?}");
    assert!(search.max_attempted_in_window <= 5, "{search:?}");
    sim.shutdown().await;
}

/// Every record of a list endpoint that pages by `after` (or not at all),
/// by id.
async fn api_list(base: &str, token: &str, path: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &after {
            Some(a) => format!("{base}{path}{sep}after={a}"),
            None => format!("{base}{path}"),
        };
        let page = get_json(&url, token).await;
        for r in page["results"].as_array().expect("results") {
            out.insert(r["id"].as_str().unwrap().to_string(), r.clone());
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_pipelines_backfill_and_follow_live_changes() {
    const SCHEMA: &str = "hubspot_meta";
    const POLL_META: Duration = Duration::from_secs(1);
    let tables = [
        ("owner", "/crm/v3/owners?limit=2"),
        ("deal_pipeline", "/crm/v3/pipelines/deals"),
        ("ticket_pipeline", "/crm/v3/pipelines/tickets"),
    ];
    let db = sequin_pgtemp::Database::create("sync_hubspot_meta").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(3),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    let base = sim.base_url();
    let token = sim.token().to_string();
    for i in 0..4 {
        hs.create_owner(&format!("rep{i}@example.com"), "Rep", &i.to_string());
    }
    let renewals = hs
        .create_pipeline(
            "deals",
            json!({"label": "Renewals", "displayOrder": 1, "stages": [
                {"label": "Up for renewal", "displayOrder": 0, "metadata": {"probability": "0.5"}}
            ]}),
        )
        .unwrap();
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [owner, deal_pipeline, ticket_pipeline]
    poll_interval: 1s
",
        db = db.url,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(120)).await;
    let all_equal = || async {
        for (table, path) in tables {
            let cols = spec_columns("hubspot", table);
            let api = api_list(&base, &token, path).await;
            assert_table_equals(&pg, SCHEMA, table, "id", &cols, &api).await;
        }
    };
    // Every owner (paged two at a time by the test, 500 by the engine) and
    // pipeline, every field, the stages as JSON.
    all_equal().await;
    let owners: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {SCHEMA}.owner"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owners, 7, "three starting owners and four invited");

    // Owners invited, renamed and deactivated; pipelines created, renamed,
    // given a stage and deleted: all visible within two poll intervals.
    let ids = hs.owner_ids();
    let changed_at = Instant::now();
    let invited = hs.create_owner("late@example.com", "Late", "Comer");
    hs.rename_owner(&ids[1], "Grace", "Brewster Hopper")
        .unwrap();
    hs.archive_owner(&ids[2]).unwrap();
    let support = hs
        .create_pipeline(
            "tickets",
            json!({"label": "Escalations", "displayOrder": 1, "stages": [
                {"label": "Escalated", "displayOrder": 0, "metadata": {"ticketState": "OPEN"}}
            ]}),
        )
        .unwrap();
    hs.update_pipeline("tickets", "0", json!({"label": "Support Pipeline (EU)"}))
        .unwrap();
    hs.add_stage(
        "tickets",
        "0",
        json!({"label": "On hold", "displayOrder": 9, "metadata": {"ticketState": "OPEN"}}),
    )
    .unwrap();
    hs.archive_pipeline("deals", renewals["id"].as_str().unwrap())
        .unwrap();
    within(
        changed_at,
        freshness(POLL_META, SLACK),
        "owners and pipelines changed upstream",
        || async {
            let row = |table: &'static str, id: String, cols: Vec<Col>| {
                let pg = &pg;
                async move { db_row(pg, SCHEMA, table, "id", &id, &cols).await }
            };
            let owner_cols = spec_columns("hubspot", "owner");
            let pipeline_cols = spec_columns("hubspot", "ticket_pipeline");
            let new_owner = row("owner", invited.clone(), owner_cols.clone()).await.is_some();
            let gone = row("owner", ids[2].clone(), owner_cols.clone()).await.is_none();
            let renamed: Option<String> = pg
                .query_opt(&format!("SELECT last_name FROM {SCHEMA}.owner WHERE id = $1"), &[&ids[1]])
                .await
                .unwrap()
                .map(|r| r.get(0));
            let escalations = row(
                "ticket_pipeline",
                support["id"].as_str().unwrap().to_string(),
                pipeline_cols,
            )
            .await
            .is_some();
            let support_eu: Option<(String, i64)> = pg
                .query_opt(
                    &format!("SELECT label, jsonb_array_length(stages)::bigint FROM {SCHEMA}.ticket_pipeline WHERE id = '0'"),
                    &[],
                )
                .await
                .unwrap()
                .map(|r| (r.get(0), r.get(1)));
            let renewals_gone = row(
                "deal_pipeline",
                renewals["id"].as_str().unwrap().to_string(),
                spec_columns("hubspot", "deal_pipeline"),
            )
            .await
            .is_none();
            let done = new_owner
                && gone
                && renamed.as_deref() == Some("Brewster Hopper")
                && escalations
                && support_eu == Some(("Support Pipeline (EU)".into(), 5))
                && renewals_gone;
            (done, (new_owner, gone, renamed, escalations, support_eu, renewals_gone))
        },
    )
    .await;
    all_equal().await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// The columns of a custom object as its schema describes it (read from
/// the schemas API): the record fields, then one column per property at
/// `properties.<name>`, typed by HubSpot's property type.
async fn schema_columns(base: &str, token: &str, object: &str) -> Vec<Col> {
    let schema = get_json(&format!("{base}/crm/v3/schemas/{object}"), token).await;
    let mut cols = vec![
        Col::new("id", "id", FieldType::String),
        Col::new("created_at", "createdAt", FieldType::Timestamp),
        Col::new("updated_at", "updatedAt", FieldType::Timestamp),
        Col::new("archived", "archived", FieldType::Boolean),
        Col::new("archived_at", "archivedAt", FieldType::Timestamp),
    ];
    for p in schema["properties"].as_array().expect("properties") {
        let name = p["name"].as_str().unwrap();
        let ty = match p["type"].as_str().unwrap() {
            "number" if name == "hs_object_id" => FieldType::Integer,
            "number" => FieldType::Decimal,
            "bool" => FieldType::Boolean,
            "date" => FieldType::Date,
            "datetime" => FieldType::Timestamp,
            _ => FieldType::String,
        };
        let mut c = Col::new(name, &format!("properties.{name}"), ty);
        c.stringly = true;
        cols.push(c);
    }
    cols
}

async fn table_exists(pg: &tokio_postgres::Client, schema: &str, table: &str) -> bool {
    pg.query_one(
        "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
        &[&schema, &table],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_objects_sync_beside_standard_ones_and_appear_without_restart() {
    const SCHEMA: &str = "hubspot_custom";
    const SEED_CUSTOM: usize = 60;
    const SWEEP: Duration = Duration::from_secs(4);
    let db = sequin_pgtemp::Database::create("sync_hubspot_custom").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(SEED_CUSTOM),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    let base = sim.base_url();
    let token = sim.token().to_string();
    let pets = hs.object_type("pets").unwrap();
    // A static object beside the discovered ones: both kinds in one
    // connection, with the link tables of the custom objects'
    // associations. `boat` does not exist yet.
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [contact, pet, boat, pet_contact, boat_contact, boat_pet]
    poll_interval: 1500ms
    discovery_interval: 2s
    association_interval: {sweep}s
",
        db = db.url,
        sweep = SWEEP.as_secs(),
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(120)).await;

    // The custom object's table equals the portal, every property typed.
    let pet_cols = schema_columns(&base, &token, "pets").await;
    let api = api_records(&base, &token, "pets", &pet_cols).await;
    assert_eq!(api.len(), SEED_CUSTOM);
    assert_table_equals(&pg, SCHEMA, "pet", "id", &pet_cols, &api).await;
    let contact_cols = spec_columns("hubspot", "contact");
    let api = api_records(&base, &token, "contacts", &contact_cols).await;
    assert_table_equals(&pg, SCHEMA, "contact", "id", &contact_cols, &api).await;

    // The custom object's associations are a link table discovered with
    // it, equal to the portal's links field by field (the seed links each
    // pet to a contact).
    let link_cols = spec_columns("hubspot", "contact_company");
    let expected = portal_links(hs, pets, ObjectType::Contacts);
    assert_eq!(expected.len(), SEED_CUSTOM, "the seed links every pet");
    let n = assert_table_equals(&pg, SCHEMA, "pet_contact", "id", &link_cols, &expected).await;
    assert_eq!(n, SEED_CUSTOM);
    // Its type, as the schema declares it (user-defined, pets to contacts).
    let schema = get_json(&format!("{base}/crm/v3/schemas/pets"), &token).await;
    let pet_type: u32 = schema["associations"][0]["id"]
        .as_str()
        .expect("the pets schema declares its association")
        .parse()
        .unwrap();
    let contacts: Vec<String> = hs
        .records(ObjectType::Contacts)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    // A create, an update and an archive of pets, within two poll intervals.
    let ids: Vec<String> = pg
        .query(
            &format!("SELECT id FROM {SCHEMA}.pet ORDER BY id LIMIT 2"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let changed_at = Instant::now();
    hs.update(pets, &ids[0], json!({"age": "7.5", "species": "bird"}))
        .unwrap();
    let created = hs
        .create(pets, json!({"pet_name": "Bucefalo", "species": "dog", "adopted": "true", "adopted_on": "2024-06-01"}))
        .unwrap();
    hs.archive(pets, &ids[1]);
    // The new pet linked to a contact: the link arrives with the record.
    let user = AssociationCategory::UserDefined;
    hs.associate(
        (pets, &created),
        (ObjectType::Contacts, &contacts[7]),
        &[(user, pet_type)],
    )
    .unwrap();
    let made_with_record = format!("{created}-{}-{pet_type}", contacts[7]);
    let updated_rec = api_record(&base, &token, "pets", &ids[0], &pet_cols).await;
    let created_rec = api_record(&base, &token, "pets", &created, &pet_cols).await;
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a custom object's create, update and archive",
        || async {
            let (u, _) =
                row_equals(&pg, SCHEMA, "pet", "id", &ids[0], &pet_cols, &updated_rec).await;
            let (c, _) =
                row_equals(&pg, SCHEMA, "pet", "id", &created, &pet_cols, &created_rec).await;
            let gone = db_row(&pg, SCHEMA, "pet", "id", &ids[1], &pet_cols)
                .await
                .is_none();
            let links = link_ids(&pg, SCHEMA, "pet_contact").await;
            let linked = links.contains(&made_with_record);
            let unlinked = !links.iter().any(|l| l.starts_with(&format!("{}-", ids[1])));
            (
                u && c && gone && linked && unlinked,
                (u, c, gone, linked, unlinked),
            )
        },
    )
    .await;

    // A link made and one removed by another user, touching neither
    // record: the next full read (every `association_interval`) finds both.
    let changed_at = Instant::now();
    hs.associate(
        (pets, &ids[0]),
        (ObjectType::Contacts, &contacts[9]),
        &[(user, pet_type)],
    )
    .unwrap();
    let (old_pet, old_contact) = {
        let l = &expected.values().nth(5).unwrap();
        (
            l["from_id"].as_str().unwrap().to_string(),
            l["to_id"].as_str().unwrap().to_string(),
        )
    };
    hs.dissociate((pets, &old_pet), (ObjectType::Contacts, &old_contact));
    let made_alone = format!("{}-{}-{pet_type}", ids[0], contacts[9]);
    let removed_alone = format!("{old_pet}-{old_contact}-{pet_type}");
    within(
        changed_at,
        SWEEP * 2 + POLL * 2 + SLACK,
        "a custom object's link made and one removed at the portal",
        || async {
            let links = link_ids(&pg, SCHEMA, "pet_contact").await;
            let done = links.contains(&made_alone) && !links.contains(&removed_alone);
            (done, links.len())
        },
    )
    .await;
    let expected = portal_links(hs, pets, ObjectType::Contacts);
    assert_table_equals(&pg, SCHEMA, "pet_contact", "id", &link_cols, &expected).await;

    // A schema created while Sequin runs is a table at the next discovery,
    // without a restart, with the records already made.
    // Associated with contacts and with the other custom object: two link
    // tables, discovered with it.
    let boats = hs
        .create_schema(json!({
            "name": "boats",
            "labels": {"singular": "Boat", "plural": "Boats"},
            "primaryDisplayProperty": "boat_name",
            "requiredProperties": ["boat_name"],
            "associatedObjects": ["CONTACT", "pets"],
            "properties": [
                {"name": "boat_name", "label": "Name", "type": "string", "fieldType": "text"},
                {"name": "length_m", "label": "Length", "type": "number", "fieldType": "number"},
                {"name": "launched", "label": "Launched", "type": "datetime", "fieldType": "date"}
            ]
        }))
        .unwrap();
    // Defined with it, a custom object labelled like a standard table: it
    // must not take the `contact` table over.
    let impostor = hs
        .create_schema(json!({
            "name": "people",
            "labels": {"singular": "Contact", "plural": "Contacts"},
            "requiredProperties": [],
            "properties": [{"name": "nickname", "label": "Nickname", "type": "string", "fieldType": "text"}]
        }))
        .unwrap();
    hs.create(impostor, json!({"nickname": "Not a contact"}))
        .unwrap();
    let boat_schema = get_json(&format!("{base}/crm/v3/schemas/boats"), &token).await;
    let boat_type = |to: &str| -> u32 {
        boat_schema["associations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["toObjectTypeId"] == to)
            .and_then(|a| a["id"].as_str())
            .expect("the boats schema declares the association")
            .parse()
            .unwrap()
    };
    let (to_contact, to_pet) = (boat_type("0-1"), boat_type(&pets.type_id()));
    let boat_pets = [&ids[0], &created];
    for (k, (name, length)) in [("Bucintoro", "35"), ("Peota", "12.5")]
        .into_iter()
        .enumerate()
    {
        let boat = hs
            .create(
                boats,
                json!({"boat_name": name, "length_m": length, "launched": "1729-05-14T10:00:00Z"}),
            )
            .unwrap();
        hs.associate(
            (boats, &boat),
            (ObjectType::Contacts, &contacts[k]),
            &[(user, to_contact)],
        )
        .unwrap();
        hs.associate((boats, &boat), (pets, boat_pets[k]), &[(user, to_pet)])
            .unwrap();
    }
    let boat_cols = schema_columns(&base, &token, "boats").await;
    eventually(Duration::from_secs(30), "the boat table", || async {
        (table_exists(&pg, SCHEMA, "boat").await, ())
    })
    .await;
    let api = api_records(&base, &token, "boats", &boat_cols).await;
    eventually(Duration::from_secs(30), "boats synced", || async {
        let rows = sync_common::db_rows(&pg, SCHEMA, "boat", "id", &boat_cols).await;
        (rows.len() == api.len(), rows.len())
    })
    .await;
    assert_table_equals(&pg, SCHEMA, "boat", "id", &boat_cols, &api).await;
    // Its link tables too, without a restart, equal to the portal.
    for (table, to) in [("boat_contact", ObjectType::Contacts), ("boat_pet", pets)] {
        let expected = portal_links(hs, boats, to);
        assert_eq!(expected.len(), 2, "{table}");
        eventually(Duration::from_secs(30), table, || async {
            if !table_exists(&pg, SCHEMA, table).await {
                return (false, 0);
            }
            let n = link_ids(&pg, SCHEMA, table).await.len();
            (n == expected.len(), n)
        })
        .await;
        assert_table_equals(&pg, SCHEMA, table, "id", &link_cols, &expected).await;
    }
    // The discovery that found boats skipped the impostor: `contact` is still
    // the contacts, and no object recorded an error.
    let api = api_records(&base, &token, "contacts", &contact_cols).await;
    assert_table_equals(&pg, SCHEMA, "contact", "id", &contact_cols, &api).await;
    assert_eq!(sync_common::sync_errors(&pg, SCHEMA).await, []);
    // And it follows changes like any other table.
    let changed_at = Instant::now();
    let third = hs
        .create(boats, json!({"boat_name": "Sandolo", "length_m": "7"}))
        .unwrap();
    let third_rec = api_record(&base, &token, "boats", &third, &boat_cols).await;
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a record of the new custom object",
        || async { row_equals(&pg, SCHEMA, "boat", "id", &third, &boat_cols, &third_rec).await },
    )
    .await;

    // A property added to a custom object is a column at the next
    // discovery, its values included.
    hs.create_property(
        pets,
        json!({"name": "microchip", "label": "Microchip", "type": "string", "fieldType": "text", "groupName": "pets_information"}),
    )
    .unwrap();
    hs.update(pets, &created, json!({"microchip": "985112004512345"}))
        .unwrap();
    let pet_cols = schema_columns(&base, &token, "pets").await;
    let created_rec = api_record(&base, &token, "pets", &created, &pet_cols).await;
    eventually(Duration::from_secs(30), "the microchip column", || async {
        let found: Option<String> = pg
            .query_opt(
                "SELECT data_type::text FROM information_schema.columns
                  WHERE table_schema = $1 AND table_name = 'pet' AND column_name = 'microchip'",
                &[&SCHEMA],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        (found.as_deref() == Some("text"), found)
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the new custom property",
        || async { row_equals(&pg, SCHEMA, "pet", "id", &created, &pet_cols, &created_rec).await },
    )
    .await;
    let api = api_records(&base, &token, "pets", &pet_cols).await;
    assert_table_equals(&pg, SCHEMA, "pet", "id", &pet_cols, &api).await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
