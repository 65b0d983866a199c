//! Salesforce's objects discovered at run time (issue #14, deliver 1): a fresh org's every
//! queryable object (standard and custom, beside the four static ones) synced and equal to
//! the org field by field with the column types the describe implies; the deny list and the
//! default exclusions left out; a custom object created while sync runs becomes a table
//! without a restart; `objects:` with wildcards and API names, `exclude_objects:`, literal
//! names bringing in default-excluded objects (history without a cursor field: a full diff;
//! sharing rows with LastModifiedDate only: that cursor); a denied object named literally
//! refused with the reason, one that does not exist yet synced once created; and
//! write-through into a discovered custom object.
//!
//! The expected columns come from the simulator's describe (written from Salesforce's
//! docs), mapped here by the field types Salesforce documents, not from Sequin's spec.

use crate::sync_common;
use crate::write_common::{Setup, salesforce_connection};

use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::{Api, Sim, SimConfig};
use sequin_spec::model::FieldType;
use sequin_spec::naming::column_name;
use serde_json::{Value, json};
use sync_common::{Col, assert_table_matches, freshness, row_equals, salesforce_config, within};

const POLL: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(2000);
const SEED: usize = 20;

/// The objects a connection without `objects:` discovers (API name, table): every queryable
/// object of the simulated org but the four static ones, the deny list and the default
/// exclusions.
const DISCOVERED: [(&str, &str); 21] = [
    ("Case", "case"),
    ("Task", "task"),
    ("Event", "event"),
    ("Campaign", "campaign"),
    ("CampaignMember", "campaign_member"),
    ("Product2", "product2"),
    ("Pricebook2", "pricebook2"),
    ("PricebookEntry", "pricebook_entry"),
    ("Contract", "contract"),
    ("Order", "order"),
    ("OrderItem", "order_item"),
    ("Asset", "asset"),
    ("Solution", "solution"),
    ("User", "user"),
    ("Note", "note"),
    ("Attachment", "attachment"),
    ("Invoice__c", "invoice__c"),
    ("Project__c", "project__c"),
    ("Shipment__c", "shipment__c"),
    ("Timesheet__c", "timesheet__c"),
    ("Vendor__c", "vendor__c"),
];

/// Listed by describeGlobal but never a table by default: field history and sharing rows
/// (default exclusions), ContentDocumentLink (deny list: it needs a filter) and a change
/// event type (not queryable).
const LEFT_OUT: [&str; 4] = [
    "account_history",
    "account_share",
    "content_document_link",
    "account_change_event",
];

/// The column type of a Salesforce field type (describe's `type`), as Salesforce documents
/// the values: `None` for the types whose fields are not synced (compound address and
/// geolocation, whose parts are fields; base64 content).
fn column_type(sf_type: &str) -> Option<FieldType> {
    Some(match sf_type {
        "address" | "location" | "base64" => return None,
        "boolean" => FieldType::Boolean,
        "int" | "long" => FieldType::Integer,
        "double" | "currency" | "percent" => FieldType::Decimal,
        "date" => FieldType::Date,
        "datetime" => FieldType::Timestamp,
        "anyType" | "complexvalue" | "json" => FieldType::Json,
        _ => FieldType::String,
    })
}

fn pg_type(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "text",
        FieldType::Integer => "bigint",
        FieldType::Decimal => "numeric",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::Timestamp => "timestamp with time zone",
        FieldType::Json => "jsonb",
        other => panic!("no Salesforce field maps to {other:?}"),
    }
}

/// The columns an object's table must have, from the simulator's describe, and the fields
/// that must have no column.
fn expected_columns(sim: &Sim, object: &str) -> (Vec<Col>, Vec<String>) {
    let describe = sim
        .salesforce()
        .describe(object)
        .expect("a described object");
    let mut cols = Vec::new();
    let mut skipped = Vec::new();
    for f in describe["fields"].as_array().expect("fields") {
        let name = f["name"].as_str().expect("a name");
        match column_type(f["type"].as_str().expect("a type")) {
            Some(t) => cols.push(Col::new(&column_name(name), name, t)),
            None => skipped.push(column_name(name)),
        }
    }
    (cols, skipped)
}

/// The columns of `schema.table` with their types.
async fn pg_columns(pg: &tokio_postgres::Client, table: &str) -> Vec<(String, String)> {
    pg.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
          WHERE table_schema = 'salesforce' AND table_name = $1",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Every record of `object` equals its row, every described field its column (name and type).
async fn assert_object_synced(pg: &tokio_postgres::Client, sim: &Sim, object: &str, table: &str) {
    let sf = sim.salesforce();
    let (cols, skipped) = expected_columns(sim, object);
    let have = pg_columns(pg, table).await;
    for c in &cols {
        let found = have.iter().find(|(n, _)| n == &c.name);
        assert_eq!(
            found.map(|(_, t)| t.as_str()),
            Some(pg_type(c.ty)),
            "salesforce.{table}.{} ({})",
            c.name,
            c.path
        );
    }
    for s in &skipped {
        assert!(
            !have.iter().any(|(n, _)| n == s),
            "salesforce.{table}.{s} is a compound or base64 field: no column"
        );
    }
    let n = assert_table_matches(
        pg,
        "salesforce",
        table,
        "id",
        &cols,
        sf.count(object, false),
        |id| sf.get(object, id),
    )
    .await;
    assert!(n > 0, "salesforce.{table} has rows");
}

async fn synced_objects(pg: &tokio_postgres::Client) -> Vec<String> {
    pg.query(
        "SELECT object FROM sequin.sync_state
          WHERE connection = 'salesforce' AND object NOT IN ('_events', '_connection')
          ORDER BY object",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn config(db: &str, sim: &Sim, extra: &str) -> String {
    salesforce_config(db, sim, &format!("    discovery_interval: 500ms\n{extra}"))
}

async fn start_sim() -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Salesforce).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_discovered_object_equals_the_org_and_a_new_custom_object_becomes_a_table() {
    let db = sequin_pgtemp::Database::create("sync_sf_objects").unwrap();
    let sim = start_sim().await;
    let sf = sim.salesforce();
    let sync = Running::start(&config(&db.url, &sim, ""));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(120)).await;

    // Exactly the static objects and the discovered ones: none of the left-out.
    let mut want: Vec<String> = ["account", "contact", "lead", "opportunity"]
        .iter()
        .chain(DISCOVERED.iter().map(|(_, t)| t))
        .map(|t| t.to_string())
        .collect();
    want.sort();
    assert_eq!(synced_objects(&pg).await, want);
    for t in LEFT_OUT {
        assert!(pg_columns(&pg, t).await.is_empty(), "no table {t}");
    }
    for (object, table) in DISCOVERED {
        assert_object_synced(&pg, &sim, object, table).await;
    }
    // Compound parts are columns of their own; formulas hold Salesforce's value.
    let total: Option<String> = pg
        .query_one(
            "SELECT total__c::text FROM salesforce.invoice__c ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(total.is_some(), "a formula's value is synced");

    // Live changes to discovered objects: by SystemModstamp, deletes by queryAll.
    let (invoice_cols, _) = expected_columns(&sim, "Invoice__c");
    let invoice = sf.ids("Invoice__c")[0].clone();
    let case_gone = sf.ids("Case")[0].clone();
    let changed_at = Instant::now();
    sf.update(
        "Invoice__c",
        &invoice,
        json!({"Amount__c": 250.0, "Status__c": "Paid"}),
    )
    .unwrap();
    sf.delete("Case", &case_gone).unwrap();
    let record = sf.get("Invoice__c", &invoice).unwrap();
    assert_eq!(record["Total__c"], json!(300.0), "the formula follows");
    within(
        changed_at,
        freshness(POLL, SLACK),
        "an update and a delete",
        || async {
            let (same, row) = row_equals(
                &pg,
                "salesforce",
                "invoice__c",
                "id",
                &invoice,
                &invoice_cols,
                &record,
            )
            .await;
            let gone: i64 = pg
                .query_one(
                    "SELECT count(*) FROM salesforce.\"case\" WHERE id = $1",
                    &[&case_gone],
                )
                .await
                .unwrap()
                .get(0);
            (same && gone == 0, (row, gone))
        },
    )
    .await;

    // A custom object created upstream (the simulator's control route, as an admin in Setup)
    // becomes a table without a restart, with its records.
    let created = reqwest::Client::new()
        .post(format!("{}/_sim/salesforce/objects", sim.base_url()))
        .json(&json!({"name": "Ticket__c", "label": "Ticket", "fields": [
            {"name": "Severity__c", "type": "picklist"},
            {"name": "Opened__c", "type": "datetime"},
            {"name": "Points__c", "type": "double"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let ticket = sf
        .create(
            "Ticket__c",
            json!({"Name": "T-1", "Severity__c": "High", "Opened__c": "2025-03-01T10:00:00.000Z", "Points__c": 3.5}),
        )
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the new custom object's table",
        || async {
            let rows: i64 = pg
                .query_one(
                    "SELECT count(*) FROM sequin.sync_state
                  WHERE connection = 'salesforce' AND object = 'ticket__c' AND phase = 'live'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (rows == 1, rows)
        },
    )
    .await;
    assert_object_synced(&pg, &sim, "Ticket__c", "ticket__c").await;
    let (ticket_cols, _) = expected_columns(&sim, "Ticket__c");
    let changed_at = Instant::now();
    sf.update("Ticket__c", &ticket, json!({"Points__c": 8}))
        .unwrap();
    let record = sf.get("Ticket__c", &ticket).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a change to the new object",
        || async {
            row_equals(
                &pg,
                "salesforce",
                "ticket__c",
                "id",
                &ticket,
                &ticket_cols,
                &record,
            )
            .await
        },
    )
    .await;

    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// `incremental_cursor` of a table: whether it follows an update marker (`since`).
async fn follows_a_cursor(pg: &tokio_postgres::Client, table: &str) -> bool {
    let cursor: Option<Value> = pg
        .query_one(
            "SELECT incremental_cursor FROM sequin.sync_state
              WHERE connection = 'salesforce' AND object = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    cursor.is_some_and(|c| c.get("since").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_api_names_exclusions_and_literal_names_select_objects() {
    let db = sequin_pgtemp::Database::create("sync_sf_patterns").unwrap();
    let sim = start_sim().await;
    let sf = sim.salesforce();
    let extra = "    objects: [\"*__c\", Case, account, AccountHistory, AccountShare, \"*History\"]
    exclude_objects: [Vendor__c, \"Time*\"]
";
    let sync = Running::start(&config(&db.url, &sim, extra));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(120)).await;
    assert_eq!(
        synced_objects(&pg).await,
        [
            "account",
            "account_history",
            "account_share",
            "case",
            "invoice__c",
            "project__c",
            "shipment__c",
        ],
        "a wildcard, API names, a table name and literal names of default-excluded objects, \
         less the exclusions"
    );
    for (object, table) in [
        ("AccountHistory", "account_history"),
        ("AccountShare", "account_share"),
        ("Case", "case"),
        ("Project__c", "project__c"),
    ] {
        assert_object_synced(&pg, &sim, object, table).await;
    }
    // History has neither SystemModstamp nor LastModifiedDate: re-listed and diffed;
    // sharing rows follow LastModifiedDate.
    assert!(!follows_a_cursor(&pg, "account_history").await);
    assert!(follows_a_cursor(&pg, "account_share").await);
    assert!(follows_a_cursor(&pg, "case").await);
    let (share_cols, _) = expected_columns(&sim, "AccountShare");
    let share = sf.ids("AccountShare")[0].clone();
    let changed_at = Instant::now();
    sf.update(
        "AccountShare",
        &share,
        json!({"AccountAccessLevel": "Edit"}),
    )
    .unwrap();
    let record = sf.get("AccountShare", &share).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a LastModifiedDate change",
        || async {
            row_equals(
                &pg,
                "salesforce",
                "account_share",
                "id",
                &share,
                &share_cols,
                &record,
            )
            .await
        },
    )
    .await;
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_name_of_no_object_yet_is_synced_once_created_and_a_denied_one_is_refused() {
    let db = sequin_pgtemp::Database::create("sync_sf_literal").unwrap();
    let sim = start_sim().await;
    // A denied object named literally: the config is refused, with the reason and the fix.
    let denied = config(
        &db.url,
        &sim,
        "    objects: [Invoice__c, ContentDocumentLink]\n",
    );
    let err = sequin_runtime::config::Config::parse("sequin.yaml", &denied, &|_: &str| None)
        .expect_err("a denied object is refused")
        .to_string();
    assert!(
        err.contains("`ContentDocumentLink` is never synced")
            && err.contains("filter")
            && err.contains("remove it from objects"),
        "{err}"
    );
    // A name that matches nothing yet (logged with the fix) does not stop the others, and
    // the object it names is synced once it exists.
    let extra = "    objects: [Invoice__c, Later__c]\n";
    let sync = Running::start(&config(&db.url, &sim, extra));
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;
    assert_eq!(synced_objects(&pg).await, ["invoice__c"]);
    assert_object_synced(&pg, &sim, "Invoice__c", "invoice__c").await;
    sim.salesforce()
        .create_custom_object("Later__c", "Later", &[])
        .unwrap();
    sim.salesforce()
        .create("Later__c", json!({"Name": "first"}))
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the named object's table",
        || async {
            let objects = synced_objects(&pg).await;
            (objects == ["invoice__c", "later__c"], objects)
        },
    )
    .await;
    wait_live(&pg, "salesforce", Duration::from_secs(30)).await;
    assert_object_synced(&pg, &sim, "Later__c", "later__c").await;
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_inserts_into_a_discovered_custom_object() {
    let s = Setup::start(Api::Salesforce, 5, "write_sf_objects", |sim| {
        // An External ID of the custom object: the conflict target of upserts.
        sim.salesforce()
            .add_external_id_field("Invoice__c", "Code__c")
            .unwrap();
        salesforce_connection(sim, "Invoice__c, account")
    })
    .await;
    let sf = s.sim.salesforce();
    let account: String =
        s.pg.query_one("SELECT id FROM salesforce.account ORDER BY id LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
    // One row: the single create; two rows: a composite collection whose items carry the
    // object's API name (`attributes.type`).
    let row = s
        .proxy
        .query_one(
            "INSERT INTO salesforce.invoice__c (name, account__c, amount__c, tax_rate__c, status__c)
             VALUES ('INV-NEW', $1, 100, 10, 'Sent') RETURNING id, total__c = 110",
            &[&account],
        )
        .await
        .unwrap();
    let id: String = row.get(0);
    assert_eq!(
        row.get::<_, Option<bool>>(1),
        Some(true),
        "the formula's value is read back"
    );
    let upstream = sf.get("Invoice__c", &id).expect("created upstream");
    assert_eq!(upstream["Name"], json!("INV-NEW"));
    assert_eq!(upstream["Account__c"], json!(account));
    let rows = s
        .proxy
        .query(
            "INSERT INTO salesforce.invoice__c (name, amount__c) VALUES ('INV-A', 1), ('INV-B', 2)
             RETURNING id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let id: String = r.get(0);
        assert!(sf.get("Invoice__c", &id).is_some(), "{id} created upstream");
    }
    // A batch upsert of the discovered object: its collection items carry the object's API
    // name too; one row updates the record created above, one creates.
    sf.update("Invoice__c", &id, json!({"Code__c": "INV-CODE-1"}))
        .unwrap();
    let rows = s
        .proxy
        .query(
            "INSERT INTO salesforce.invoice__c AS i (name, code__c) VALUES ('INV-UP', 'INV-CODE-1'), ('INV-C', 'INV-CODE-2')
             ON CONFLICT (code__c) DO UPDATE SET name = EXCLUDED.name RETURNING i.id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], id, "the upsert updated the record with that code");
    assert_eq!(sf.get("Invoice__c", &id).unwrap()["Name"], json!("INV-UP"));
    assert_eq!(
        sf.get("Invoice__c", &ids[1]).expect("created upstream")["Code__c"],
        json!("INV-CODE-2")
    );
    // A formula field is read-only: refused before anything is sent.
    let err = s
        .proxy
        .execute(
            "UPDATE salesforce.invoice__c SET total__c = 1 WHERE id = $1",
            &[&id],
        )
        .await
        .expect_err("a formula field is read-only");
    assert!(format!("{err:?}").contains("total__c"), "{err:?}");
    assert_eq!(sf.get("Invoice__c", &id).unwrap()["Total__c"], json!(110.0));
    s.finish().await;
}
