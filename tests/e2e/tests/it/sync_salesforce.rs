//! Salesforce end to end: OAuth2 refresh with rotation (persisted in
//! `sequin.oauth_token`), a SOQL backfill that crosses `nextRecordsUrl`
//! pages (> 2000 records per object), every table equal to the org's
//! records field by field, then live changes by SystemModstamp, deletes by
//! the `sobjects/{object}/deleted` window, and custom fields added in the org that
//! become columns without a restart, values included.

use crate::sync_common;

use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET, FieldType as SfType};
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::FieldType;
use serde_json::json;
use sync_common::{
    Col, SALESFORCE_OBJECTS, assert_table_matches, freshness, row_equals, spec_columns, within,
};

const POLL: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(1500);
/// More than one SOQL batch (2000 records) per object.
const SEED: usize = 2100;

const OBJECTS: [(&str, &str); 4] = SALESFORCE_OBJECTS;

async fn stored_refresh_token(pg: &tokio_postgres::Client) -> Option<String> {
    pg.query_opt(
        "SELECT refresh_token FROM sequin.oauth_token WHERE connection = 'salesforce'",
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

async fn column_type(pg: &tokio_postgres::Client, table: &str, column: &str) -> Option<String> {
    pg.query_opt(
        "SELECT data_type::text FROM information_schema.columns
          WHERE table_schema = 'salesforce' AND table_name = $1 AND column_name = $2",
        &[&table, &column],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_soql_backfill_live_changes_and_custom_fields() {
    let db = sequin_pgtemp::Database::create("sync_salesforce").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    // Every refresh returns a new refresh token and revokes the one used.
    sf.set_rotate_refresh_tokens(true);
    let initial_refresh = sf.refresh_token();
    let config = format!(
        "database_url: {db}
connections:
  - name: salesforce
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{initial_refresh}' }}
    poll_interval: 300ms
    discovery_interval: 300ms
",
        db = db.url,
        base = sim.base_url(),
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(180)).await;

    // The backfill crossed SOQL batches: more than 2000 records per object.
    let stats = sim.stats();
    let more = stats
        .by_route
        .iter()
        .filter(|(r, _)| r.contains("/query/"))
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        more >= 4,
        "nextRecordsUrl pages fetched: {:?}",
        stats.by_route
    );

    // Every table equals the org, every record and every declared field.
    for (object, table) in OBJECTS {
        let cols = spec_columns("salesforce", table);
        let n = assert_table_matches(
            &pg,
            "salesforce",
            table,
            "id",
            &cols,
            sf.count(object, false),
            |id| sf.get(object, id),
        )
        .await;
        assert_eq!(n, SEED, "salesforce.{table}");
    }

    // The rotated refresh token replaced the configured (now revoked) one.
    let rotated = stored_refresh_token(&pg).await.expect("token stored");
    assert_ne!(rotated, initial_refresh, "rotation is persisted");

    // Live changes made by another user show up within two poll intervals.
    let account_cols = spec_columns("salesforce", "account");
    let lead_cols = spec_columns("salesforce", "lead");
    let contact_cols = spec_columns("salesforce", "contact");
    let account_id: String = pg
        .query_one("SELECT id FROM salesforce.account ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let lead_gone: String = pg
        .query_one("SELECT id FROM salesforce.lead ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let changed_at = Instant::now();
    sf.update(
        "Account",
        &account_id,
        json!({"Name": "Palladio Villas", "NumberOfEmployees": 77, "AnnualRevenue": 1234.5}),
    )
    .unwrap();
    let contact_id = sf
        .create(
            "Contact",
            json!({"LastName": "Palladio", "FirstName": "Andrea", "Email": "andrea@example.com", "AccountId": account_id}),
        )
        .unwrap();
    sf.delete("Lead", &lead_gone).unwrap();
    let account = sf.get("Account", &account_id).unwrap();
    let contact = sf.get("Contact", &contact_id).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "update, create and delete",
        || async {
            let (a, arow) = row_equals(
                &pg,
                "salesforce",
                "account",
                "id",
                &account_id,
                &account_cols,
                &account,
            )
            .await;
            let (c, _) = row_equals(
                &pg,
                "salesforce",
                "contact",
                "id",
                &contact_id,
                &contact_cols,
                &contact,
            )
            .await;
            let gone = sync_common::db_row(&pg, "salesforce", "lead", "id", &lead_gone, &lead_cols)
                .await
                .is_none();
            let errors = sync_common::sync_errors(&pg, "salesforce").await;
            (a && c && gone, (a, c, gone, errors, arow))
        },
    )
    .await;
    let fresh = changed_at.elapsed();

    // Access tokens expire: the engine refreshes with the rotated token it
    // stored, and keeps syncing.
    let changed_at = Instant::now();
    sf.expire_access_tokens();
    sf.update("Account", &account_id, json!({"Phone": "+1 555 0100"}))
        .unwrap();
    let account = sf.get("Account", &account_id).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a change after the access token expired",
        || async {
            row_equals(
                &pg,
                "salesforce",
                "account",
                "id",
                &account_id,
                &account_cols,
                &account,
            )
            .await
        },
    )
    .await;
    let rotated_again = stored_refresh_token(&pg).await.unwrap();
    assert_ne!(rotated_again, rotated, "the second rotation is persisted");

    // A custom field added in the org becomes a column without a restart,
    // and a value set right away (before discovery) still arrives.
    sf.add_custom_field("Account", "Tier__c", "Tier", SfType::String, Some(40))
        .unwrap();
    sf.add_custom_field("Account", "Score__c", "Score", SfType::Double, None)
        .unwrap();
    sf.update(
        "Account",
        &account_id,
        json!({"Tier__c": "Gold", "Score__c": 9.5}),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "custom columns", || async {
        let tier = column_type(&pg, "account", "tier__c").await;
        let score = column_type(&pg, "account", "score__c").await;
        (tier.is_some() && score.is_some(), (tier, score))
    })
    .await;
    assert_eq!(
        column_type(&pg, "account", "tier__c").await.as_deref(),
        Some("text")
    );
    assert_eq!(
        column_type(&pg, "account", "score__c").await.as_deref(),
        Some("numeric")
    );
    let mut with_custom = account_cols.clone();
    with_custom.push(Col::new("tier__c", "Tier__c", FieldType::String));
    with_custom.push(Col::new("score__c", "Score__c", FieldType::Decimal));
    let account = sf.get("Account", &account_id).unwrap();
    // The values already set arrive with the re-list that follows the new
    // column (the whole object: no freshness bound applies).
    eventually(
        Duration::from_secs(60),
        "the custom field's value",
        || async {
            row_equals(
                &pg,
                "salesforce",
                "account",
                "id",
                &account_id,
                &with_custom,
                &account,
            )
            .await
        },
    )
    .await;
    // Later values of the custom field sync like any other.
    let other: String = pg
        .query_one(
            "SELECT id FROM salesforce.account WHERE id <> $1 ORDER BY id LIMIT 1",
            &[&account_id],
        )
        .await
        .unwrap()
        .get(0);
    let changed_at = Instant::now();
    sf.update("Account", &other, json!({"Tier__c": "Silver"}))
        .unwrap();
    let other_rec = sf.get("Account", &other).unwrap();
    within(
        changed_at,
        freshness(POLL, SLACK),
        "a later custom value",
        || async {
            row_equals(
                &pg,
                "salesforce",
                "account",
                "id",
                &other,
                &with_custom,
                &other_rec,
            )
            .await
        },
    )
    .await;

    // In the end every table still equals the org, custom columns included.
    for (object, table) in OBJECTS {
        let cols = if table == "account" {
            with_custom.clone()
        } else {
            spec_columns("salesforce", table)
        };
        assert_table_matches(
            &pg,
            "salesforce",
            table,
            "id",
            &cols,
            sf.count(object, false),
            |id| sf.get(object, id),
        )
        .await;
    }
    assert!(!sync.finished(), "the engine is still running");
    eprintln!("salesforce: first live changes visible after {fresh:?}");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

/// A custom field whose value was set after the engine last fetched the
/// record without it: an incremental poll can never bring that value (the
/// record's SystemModstamp lies behind the cursor), so the engine re-lists
/// the object when it finds new columns, here at a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_field_values_behind_the_cursor_arrive_after_restart() {
    let db = sequin_pgtemp::Database::create("sync_salesforce_relist").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce).seed_records(50),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sf = sim.salesforce();
    // No discovery while running: new fields are found at the next start.
    let config = format!(
        "database_url: {db}
connections:
  - name: salesforce
    connector: salesforce
    base_url: {base}
    token_url: {base}/services/oauth2/token
    credentials: {{ client_id: '{CLIENT_ID}', client_secret: '{CLIENT_SECRET}', refresh_token: '{refresh}' }}
    objects: [account]
    poll_interval: 200ms
    discovery_interval: 1h
",
        db = db.url,
        base = sim.base_url(),
        refresh = sf.refresh_token(),
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, "salesforce", Duration::from_secs(60)).await;
    let cols = spec_columns("salesforce", "account");
    let ids: Vec<String> = pg
        .query("SELECT id FROM salesforce.account ORDER BY id LIMIT 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (x, y) = (&ids[0], &ids[1]);

    // The field appears and X gets a value; the engine fetches X (its Name
    // changed too) without the field it does not know yet.
    sf.add_custom_field("Account", "Region__c", "Region", SfType::String, Some(40))
        .unwrap();
    sf.update(
        "Account",
        x,
        json!({"Name": "Villa Emo", "Region__c": "Veneto"}),
    )
    .unwrap();
    let x_rec = sf.get("Account", x).unwrap();
    eventually(Duration::from_secs(30), "X's new name", || async {
        row_equals(&pg, "salesforce", "account", "id", x, &cols, &x_rec).await
    })
    .await;
    // A later change elsewhere moves the cursor past X's modstamp and its
    // overlap window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sf.update("Account", y, json!({"Name": "Villa Barbaro"}))
        .unwrap();
    let y_rec = sf.get("Account", y).unwrap();
    eventually(Duration::from_secs(30), "Y's new name", || async {
        row_equals(&pg, "salesforce", "account", "id", y, &cols, &y_rec).await
    })
    .await;
    assert_eq!(column_type(&pg, "account", "region__c").await, None);
    sync.stop().await.unwrap();

    // At the next start the column is added and X's value arrives.
    let sync = Running::start(&config);
    let mut with_region = cols.clone();
    with_region.push(Col::new("region__c", "Region__c", FieldType::String));
    let x_rec = sf.get("Account", x).unwrap();
    assert_eq!(x_rec["Region__c"], "Veneto");
    eventually(Duration::from_secs(30), "the region__c column", || async {
        let t = column_type(&pg, "account", "region__c").await;
        (t.is_some(), t)
    })
    .await;
    eventually(Duration::from_secs(30), "X's Region__c", || async {
        row_equals(&pg, "salesforce", "account", "id", x, &with_region, &x_rec).await
    })
    .await;
    assert_table_matches(
        &pg,
        "salesforce",
        "account",
        "id",
        &with_region,
        sf.count("Account", false),
        |id| sf.get("Account", id),
    )
    .await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
