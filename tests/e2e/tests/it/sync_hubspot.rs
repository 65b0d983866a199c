//! HubSpot end to end: contacts, companies and deals backfilled from the
//! simulator equal the portal's records in every declared property (values
//! arrive as strings and are typed), then changes found by the search API
//! on last-modified, archived records removed, and custom properties created
//! in the portal that become columns without a restart, values included.

use crate::sync_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::hubspot::ObjectType;
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

async fn has_column(pg: &tokio_postgres::Client, table: &str, column: &str) -> Option<String> {
    pg.query_opt(
        "SELECT data_type::text FROM information_schema.columns
          WHERE table_schema = 'hubspot' AND table_name = $1 AND column_name = $2",
        &[&table, &column],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_backfill_live_changes_archives_and_custom_properties() {
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
  - name: hubspot
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    poll_interval: 1500ms
    discovery_interval: 2s
",
        db = db.url,
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "hubspot", Duration::from_secs(120)).await;

    // Every table equals the portal: every record, every declared property.
    for (_, object, table) in OBJECTS {
        let cols = spec_columns("hubspot", table);
        let api = api_records(&base, &token, object, &cols).await;
        assert_eq!(api.len(), SEED);
        assert_table_equals(&pg, "hubspot", table, "id", &cols, &api).await;
    }
    // Stringly values are typed in Postgres.
    let row = pg
        .query_one(
            "SELECT numberofemployees, hs_object_id, createdate FROM hubspot.company ORDER BY id LIMIT 1",
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
        .query_one("SELECT id FROM hubspot.contact ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let deal_gone: String = pg
        .query_one("SELECT id FROM hubspot.deal ORDER BY id LIMIT 1", &[])
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
                "hubspot",
                "contact",
                "id",
                &contact_id,
                &contact_cols,
                &contact,
            )
            .await;
            let (c, _) = row_equals(
                &pg,
                "hubspot",
                "company",
                "id",
                &company_id,
                &company_cols,
                &company,
            )
            .await;
            let gone = db_row(&pg, "hubspot", "deal", "id", &deal_gone, &deal_cols)
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
        let a = has_column(&pg, "contact", "favorite_color").await;
        let b = has_column(&pg, "contact", "nps_score").await;
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
                "hubspot",
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
            "SELECT id FROM hubspot.contact WHERE id <> $1 ORDER BY id LIMIT 1",
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
                "hubspot",
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
        assert_table_equals(&pg, "hubspot", table, "id", &cols, &api).await;
    }
    assert!(!sync.finished(), "the engine is still running");
    eprintln!("hubspot: first live changes visible after {fresh:?}");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
