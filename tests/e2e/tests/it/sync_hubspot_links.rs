//! HubSpot associations (v4) as link tables, end to end: after the
//! backfill every link table equals the portal's associations field by
//! field (read through the simulator's own per-record lists, not the batch
//! read the engine uses); a link made or removed on its own (touching
//! neither record) arrives with the next full read (`association_interval`);
//! a link made with a new record arrives with that record, long before any
//! full read; a record archived takes its links along.

use crate::sync_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sequin_e2e::{Running, eventually, wait_live};
use sequin_pgtemp::connect;
use sequin_sim::hubspot::{AssociationCategory, ObjectType};
use sequin_sim::{Api, SimConfig};
use serde_json::{Value, json};
use sync_common::{assert_table_equals, spec_columns, within};

/// Every link table of the spec: `(table, from type, to type)`.
const PAIRS: [(&str, ObjectType, ObjectType); 14] = [
    (
        "contact_company",
        ObjectType::Contacts,
        ObjectType::Companies,
    ),
    ("contact_deal", ObjectType::Contacts, ObjectType::Deals),
    ("contact_ticket", ObjectType::Contacts, ObjectType::Tickets),
    ("company_deal", ObjectType::Companies, ObjectType::Deals),
    ("company_ticket", ObjectType::Companies, ObjectType::Tickets),
    ("deal_ticket", ObjectType::Deals, ObjectType::Tickets),
    ("deal_line_item", ObjectType::Deals, ObjectType::LineItems),
    ("quote_deal", ObjectType::Quotes, ObjectType::Deals),
    ("quote_line_item", ObjectType::Quotes, ObjectType::LineItems),
    ("call_contact", ObjectType::Calls, ObjectType::Contacts),
    ("email_contact", ObjectType::Emails, ObjectType::Contacts),
    (
        "meeting_contact",
        ObjectType::Meetings,
        ObjectType::Contacts,
    ),
    ("note_contact", ObjectType::Notes, ObjectType::Contacts),
    ("task_contact", ObjectType::Tasks, ObjectType::Contacts),
];

/// The portal's links from every live `from` record to `to` records, as
/// link rows keyed by `{from}-{to}-{typeId}`.
pub(crate) fn portal_links(
    hs: &sequin_sim::hubspot::Hubspot,
    from: ObjectType,
    to: ObjectType,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for record in hs.records(from) {
        let from_id = record["id"].as_str().expect("a record id").to_string();
        for linked in hs
            .associations_of(from, &from_id, to)
            .expect("a live record")
        {
            let to_id = linked["toObjectId"]
                .as_str()
                .expect("toObjectId")
                .to_string();
            for t in linked["associationTypes"].as_array().expect("types") {
                let id = format!("{from_id}-{to_id}-{}", t["typeId"]);
                out.insert(
                    id.clone(),
                    json!({
                        "id": id,
                        "from_id": from_id,
                        "to_id": to_id,
                        "category": t["category"],
                        "type_id": t["typeId"],
                        "label": t.get("label").cloned().unwrap_or(Value::Null),
                    }),
                );
            }
        }
    }
    out
}

pub(crate) async fn link_ids(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Vec<String> {
    pg.query(&format!("SELECT id FROM {schema}.{table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_table_backfills_and_a_full_read_finds_links_changed_alone() {
    const SCHEMA: &str = "hubspot_links";
    const SEED: usize = 30;
    const SWEEP: Duration = Duration::from_secs(3);
    let db = sequin_pgtemp::Database::create("sync_hubspot_links").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(SEED),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    let objects =
        "contact, company, deal, ticket, line_item, quote, call, email, meeting, note, task";
    let links: Vec<&str> = PAIRS.iter().map(|p| p.0).collect();
    // Objects poll rarely (eleven of them share HubSpot's budget with the
    // full reads of fourteen link tables): what arrives below comes from
    // the full reads.
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [{objects}, {links}]
    poll_interval: 10s
    association_interval: 3s
    discovery_interval: 1h
",
        db = db.url,
        base = sim.base_url(),
        token = sim.token(),
        links = links.join(", "),
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(180)).await;

    // Every link table equals the portal's associations, field by field,
    // and each has rows (the seed links every pair).
    for (table, from, to) in PAIRS {
        let expected = portal_links(hs, from, to);
        assert!(!expected.is_empty(), "the seed links {table}");
        let cols = spec_columns("hubspot", table);
        let n = assert_table_equals(&pg, SCHEMA, table, "id", &cols, &expected).await;
        assert_eq!(n, expected.len(), "{table}");
    }
    // Contact to company carries two types per link (unlabeled and Primary).
    let primary: i64 = pg
        .query_one(
            &format!("SELECT count(*) FROM {SCHEMA}.contact_company WHERE label = 'Primary' AND type_id = 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(primary, SEED as i64);

    // A link made and one removed by another user, touching neither
    // record: the next full read finds both.
    let contacts: Vec<String> = hs
        .records(ObjectType::Contacts)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let companies: Vec<String> = hs
        .records(ObjectType::Companies)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let changed_at = Instant::now();
    hs.associate(
        (ObjectType::Contacts, &contacts[0]),
        (ObjectType::Companies, &companies[5]),
        &[(AssociationCategory::HubspotDefined, 279)],
    )
    .unwrap();
    hs.dissociate(
        (ObjectType::Contacts, &contacts[1]),
        (ObjectType::Companies, &companies[1]),
    );
    let made = format!("{}-{}-279", contacts[0], companies[5]);
    let removed = [
        format!("{}-{}-279", contacts[1], companies[1]),
        format!("{}-{}-1", contacts[1], companies[1]),
    ];
    within(
        changed_at,
        SWEEP * 4 + Duration::from_secs(4),
        "a link made and one removed at the portal",
        || async {
            let ids = link_ids(&pg, SCHEMA, "contact_company").await;
            let done = ids.contains(&made) && !removed.iter().any(|r| ids.contains(r));
            (done, ids.len())
        },
    )
    .await;
    let cols = spec_columns("hubspot", "contact_company");
    let expected = portal_links(hs, ObjectType::Contacts, ObjectType::Companies);
    assert_table_equals(&pg, SCHEMA, "contact_company", "id", &cols, &expected).await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_made_with_a_record_arrive_with_it_and_go_with_an_archived_one() {
    const SCHEMA: &str = "hubspot_links_live";
    const POLL: Duration = Duration::from_secs(1);
    let db = sequin_pgtemp::Database::create("sync_hubspot_links_live").unwrap();
    let sim = sequin_sim::start(
        SimConfig::new(Api::Hubspot).seed_records(10),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = sim.hubspot();
    // No full read during the test: what arrives, arrives with a record.
    let config = format!(
        "database_url: {db}
connections:
  - name: {SCHEMA}
    connector: hubspot
    base_url: {base}
    credentials: {{ access_token: '{token}' }}
    objects: [contact, company, contact_company]
    poll_interval: 1s
    association_interval: 1h
    discovery_interval: 1h
",
        db = db.url,
        base = sim.base_url(),
        token = sim.token(),
    );
    let sync = Running::start(&config);
    let pg = connect(&db.url).await;
    wait_live(&pg, SCHEMA, Duration::from_secs(120)).await;
    assert_eq!(link_ids(&pg, SCHEMA, "contact_company").await.len(), 20);
    let contacts: Vec<String> = hs
        .records(ObjectType::Contacts)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    // A new company (a link's target) linked to an existing contact, which
    // does not change: the company's sources are read again.
    let changed_at = Instant::now();
    let company = hs
        .create(
            ObjectType::Companies,
            json!({"name": "Linked Inc", "domain": "linked.example"}),
        )
        .unwrap();
    hs.associate(
        (ObjectType::Contacts, &contacts[3]),
        (ObjectType::Companies, &company),
        &[(AssociationCategory::HubspotDefined, 279)],
    )
    .unwrap();
    // A contact updated and linked to a second company at once.
    let companies: Vec<String> = hs
        .records(ObjectType::Companies)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    hs.update(
        ObjectType::Contacts,
        &contacts[4],
        json!({"jobtitle": "Buyer"}),
    )
    .unwrap();
    hs.associate(
        (ObjectType::Contacts, &contacts[4]),
        (ObjectType::Companies, &companies[7]),
        &[(AssociationCategory::HubspotDefined, 279)],
    )
    .unwrap();
    let made = [
        format!("{}-{company}-279", contacts[3]),
        format!("{}-{}-279", contacts[4], companies[7]),
    ];
    within(
        changed_at,
        sync_common::freshness(POLL, Duration::from_secs(3)),
        "links made with a record",
        || async {
            let ids = link_ids(&pg, SCHEMA, "contact_company").await;
            (made.iter().all(|m| ids.contains(m)), ids.len())
        },
    )
    .await;

    // A contact archived: its rows go, its links with them.
    hs.archive(ObjectType::Contacts, &contacts[5]);
    let prefix = format!("{}-", contacts[5]);
    eventually(
        Duration::from_secs(10),
        "an archived contact's links gone",
        || async {
            let ids = link_ids(&pg, SCHEMA, "contact_company").await;
            (!ids.iter().any(|i| i.starts_with(&prefix)), ids.len())
        },
    )
    .await;
    let cols = spec_columns("hubspot", "contact_company");
    let expected = portal_links(hs, ObjectType::Contacts, ObjectType::Companies);
    assert_table_equals(&pg, SCHEMA, "contact_company", "id", &cols, &expected).await;
    assert!(!sync.finished(), "the engine is still running");
    sync.stop().await.unwrap();
    sim.shutdown().await;
}
