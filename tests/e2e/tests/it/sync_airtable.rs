//! Airtable end to end: every table of the base, found at run time in the
//! base schema, becomes a snake_case table with a typed column per field,
//! equal to the base's records; full refreshes bring updates and creates
//! and the full diff removes deleted records; a field added to a table
//! becomes a column without a restart, values included; and the 5 requests
//! per second limit of the base is never exceeded.

use crate::sync_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::airtable::DEMO_BASE_ID;
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::FieldType;
use sequin_spec::naming::{column_name, table_name};
use serde_json::{Value, json};
use sync_common::{Col, assert_table_matches, db_row, freshness, get_json, row_equals, within};

/// Each poll re-lists every table (two pages each) within the base's
/// 5 requests/s: a 2 s interval fits it.
const POLL: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(2);
/// Two pages of 100 per table.
const SEED: usize = 110;

/// The Postgres column type an Airtable field type must have (from
/// Airtable's field model: numbers are exact, selects text, multi-selects
/// arrays of text, times timestamps).
fn field_type(airtable_type: &str) -> FieldType {
    match airtable_type {
        "number" | "currency" | "percent" | "duration" => FieldType::Decimal,
        "checkbox" => FieldType::Boolean,
        "date" => FieldType::Date,
        "dateTime" | "createdTime" | "lastModifiedTime" => FieldType::Timestamp,
        "multipleSelects" | "multipleRecordLinks" => FieldType::StringArray,
        "rating" | "autoNumber" | "count" => FieldType::Integer,
        "singleLineText" | "email" | "url" | "multilineText" | "richText" | "phoneNumber"
        | "singleSelect" => FieldType::String,
        _ => FieldType::Json,
    }
}

fn pg_type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "text",
        FieldType::Integer => "bigint",
        FieldType::Float => "double precision",
        FieldType::Decimal => "numeric",
        FieldType::Boolean => "boolean",
        FieldType::Timestamp => "timestamp with time zone",
        FieldType::Date => "date",
        FieldType::Json => "jsonb",
        FieldType::StringArray => "ARRAY",
    }
}

/// The base's tables from its schema: Postgres table name -> (Airtable
/// table name, columns).
async fn schema(base: &str, token: &str) -> BTreeMap<String, (String, Vec<Col>)> {
    let meta = get_json(
        &format!("{base}/v0/meta/bases/{DEMO_BASE_ID}/tables"),
        token,
    )
    .await;
    let mut out = BTreeMap::new();
    for t in meta["tables"].as_array().expect("tables") {
        let name = t["name"].as_str().unwrap().to_string();
        let mut cols = vec![
            Col::new("id", "id", FieldType::String),
            Col::new("created_time", "createdTime", FieldType::Timestamp),
        ];
        for f in t["fields"].as_array().expect("fields") {
            let fname = f["name"].as_str().unwrap();
            cols.push(Col::new(
                &column_name(fname),
                &format!("fields.{fname}"),
                field_type(f["type"].as_str().unwrap()),
            ));
        }
        out.insert(table_name(&name), (name, cols));
    }
    out
}

async fn column_types(pg: &tokio_postgres::Client, table: &str) -> BTreeMap<String, String> {
    pg.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
          WHERE table_schema = 'airtable' AND table_name = $1",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn assert_base_equals(
    pg: &tokio_postgres::Client,
    sim: &sequin_sim::Sim,
    tables: &BTreeMap<String, (String, Vec<Col>)>,
) {
    let at = sim.airtable();
    for (table, (name, cols)) in tables {
        let types = column_types(pg, table).await;
        for c in cols {
            assert_eq!(
                types.get(&c.name).map(String::as_str),
                Some(pg_type_name(c.ty)),
                "type of airtable.{table}.{}; the table has {types:?}",
                c.name
            );
        }
        assert_table_matches(
            pg,
            "airtable",
            table,
            "id",
            cols,
            at.count(DEMO_BASE_ID, name),
            |id| at.get(DEMO_BASE_ID, name, id),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_tables_full_refresh_deletes_new_fields_within_rate_limit() {
    let db = sequin_pgtemp::Database::create("sync_airtable").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Airtable).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let at = sim.airtable();
    let base = sim.base_url();
    let token = sim.token().to_string();
    let config = format!(
        "database_url: {db}
connections:
  - name: airtable
    connector: airtable
    base_url: {base}
    credentials: {{ api_key: '{token}' }}
    params: {{ base_id: {DEMO_BASE_ID} }}
    poll_interval: 2s
    discovery_interval: 2s
",
        db = db.url,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "airtable", Duration::from_secs(120)).await;

    // The base's tables became snake_case tables, typed, equal to the base.
    let tables = schema(&base, &token).await;
    assert_eq!(
        tables.keys().cloned().collect::<Vec<_>>(),
        ["contacts", "deals", "projects"]
    );
    let live: Vec<String> = pg
        .query(
            "SELECT object FROM sequin.sync_state WHERE connection = 'airtable' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(live, ["contacts", "deals", "projects"]);
    assert_base_equals(&pg, &sim, &tables).await;

    // Changes made by a collaborator arrive with the next full refresh;
    // the record deleted upstream is removed.
    let contact_id: String = pg
        .query_one("SELECT id FROM airtable.contacts ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let project_gone: String = pg
        .query_one("SELECT id FROM airtable.projects ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let changed_at = Instant::now();
    at.update(
        DEMO_BASE_ID,
        "Contacts",
        &contact_id,
        json!({"Name": "Andrea Palladio", "Status": "Customer", "Subscribed": true}),
    )
    .unwrap();
    let deal_id = at
        .create(
            DEMO_BASE_ID,
            "Deals",
            json!({"Name": "Villa Rotonda", "Amount": 1570.25, "Stage": "Won", "Close Date": "2025-06-01", "Probability": 0.9}),
        )
        .unwrap();
    at.delete(DEMO_BASE_ID, "Projects", &project_gone).unwrap();
    let contacts_cols = tables["contacts"].1.clone();
    let deals_cols = tables["deals"].1.clone();
    let projects_cols = tables["projects"].1.clone();
    let contact = at.get(DEMO_BASE_ID, "Contacts", &contact_id).unwrap();
    let deal = at.get(DEMO_BASE_ID, "Deals", &deal_id).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "update, create and delete",
        || async {
            let (a, arow) = row_equals(
                &pg,
                "airtable",
                "contacts",
                "id",
                &contact_id,
                &contacts_cols,
                &contact,
            )
            .await;
            let (d, _) =
                row_equals(&pg, "airtable", "deals", "id", &deal_id, &deals_cols, &deal).await;
            let gone = db_row(
                &pg,
                "airtable",
                "projects",
                "id",
                &project_gone,
                &projects_cols,
            )
            .await
            .is_none();
            (a && d && gone, (a, d, gone, arow))
        },
    )
    .await;
    let fresh = changed_at.elapsed();

    // A field added to a table becomes a typed column without a restart,
    // and values set right away arrive.
    at.add_field(
        DEMO_BASE_ID,
        "Contacts",
        json!({"name": "Lifetime Value", "type": "currency", "options": {"precision": 2, "symbol": "$"}}),
    )
    .unwrap();
    at.update(
        DEMO_BASE_ID,
        "Contacts",
        &contact_id,
        json!({"Lifetime Value": 4200.5}),
    )
    .unwrap();
    eventually(Duration::from_secs(15), "the new column", || async {
        let types = column_types(&pg, "contacts").await;
        let t = types.get("lifetime_value").cloned();
        (t.as_deref() == Some("numeric"), t)
    })
    .await;
    let tables = schema(&base, &token).await;
    let contacts_cols = tables["contacts"].1.clone();
    assert!(contacts_cols.iter().any(|c| c.name == "lifetime_value"));
    let contact = at.get(DEMO_BASE_ID, "Contacts", &contact_id).unwrap();
    // The values already set arrive with the re-list that follows the new
    // column (the whole object: no freshness bound applies).
    eventually(Duration::from_secs(60), "the new field's value", || async {
        row_equals(
            &pg,
            "airtable",
            "contacts",
            "id",
            &contact_id,
            &contacts_cols,
            &contact,
        )
        .await
    })
    .await;

    // In the end the whole base still equals Postgres.
    assert_base_equals(&pg, &sim, &tables).await;

    // The base's 5 requests per second were never exceeded.
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0, "no request was refused: {stats:?}");
    for (key, k) in &stats.rate_keys {
        assert!(
            k.max_attempted_in_window <= k.limit && k.rejected == 0,
            "rate key {key}: {k:?}"
        );
    }
    assert!(
        stats.rate_keys.contains_key(DEMO_BASE_ID),
        "requests were counted per base: {:?}",
        stats.rate_keys.keys()
    );
    assert!(!sync.finished(), "the engine is still running");
    eprintln!(
        "airtable: first live changes visible after {fresh:?}; {} requests",
        stats.requests
    );
    sync.stop().await.unwrap();
    sim.shutdown().await;
    let _ = Value::Null;
}
