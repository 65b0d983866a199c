//! The API client against the Airtable simulator: `offset` paging and the
//! 5 requests/s per base limit, shared by concurrent clients of one base and
//! never exceeded (checked on the simulator's own counters), with room kept
//! for writes.

use crate::api_support;

use std::time::Duration;

use api_support::*;
use sequin_runtime::api::{Budgets, Client, ClientConfig, PageCursor, Priority, Vars, write_body};
use sequin_sim::airtable::DEMO_BASE_ID;
use sequin_sim::{Api, SimConfig};
use serde_json::{Map, json};

fn client(sim: &sequin_sim::Sim, budgets: &Budgets) -> Client {
    Client::new(
        arc(connector("airtable")),
        ClientConfig {
            budgets: Some(budgets.clone()),
            retry: fast_retry(),
            ..ClientConfig::new("airtable")
                .base_url(sim.base_url())
                .credential("api_key", sim.token())
                .param("base_id", DEMO_BASE_ID)
        },
    )
    .unwrap()
}

#[tokio::test]
async fn concurrent_tables_share_the_base_limit_and_never_exceed_it() {
    // The simulator enforces Airtable's documented 5 requests/s per base.
    let sim = start(SimConfig::new(Api::Airtable).seed_records(300)).await;
    sim.airtable().set_rate_limit_wait(Duration::from_secs(1));
    let budgets = Budgets::new();
    let spec = connector("airtable");
    let discovered = spec.discovered_objects.clone().unwrap();
    let mut tasks = Vec::new();
    for table in ["Contacts", "Deals", "Projects"] {
        let client = client(&sim, &budgets);
        let endpoint = discovered.endpoints.list.clone();
        let pagination = discovered.pagination.clone().or(spec.pagination.clone());
        tasks.push(tokio::spawn(async move {
            let listing = fetch_all(
                &client,
                &endpoint,
                None,
                pagination.as_ref(),
                &Vars::new().with("object", table),
                None,
            )
            .await;
            (table, listing)
        }));
    }
    // A write in the middle of the backfill finds room.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writer = client(&sim, &budgets);
    let create = discovered.endpoints.create.clone().unwrap();
    let mut fields = Map::new();
    fields.insert("Name".into(), json!("Written during backfill"));
    let body = write_body(&spec, &create, fields);
    let created = writer
        .send(
            Priority::Write,
            &create,
            &Vars::new().with("object", "Projects"),
            Some(body),
            None,
        )
        .await
        .expect("write goes through");
    assert!(
        created.json.unwrap()["id"]
            .as_str()
            .unwrap()
            .starts_with("rec")
    );

    for t in tasks {
        let (table, listing) = t.await.unwrap();
        assert!(listing.pages >= 3, "{table}: {} pages", listing.pages);
        assert!(matches!(listing.cursors[0], PageCursor::After { .. }));
        let ids = unique_ids(&listing.records, "id");
        // Projects may include the record written meanwhile.
        let count = sim.airtable().count(DEMO_BASE_ID, table);
        assert!(
            ids.len() == count || (table == "Projects" && ids.len() + 1 == count),
            "{table}: {} of {count}",
            ids.len()
        );
    }
    let stats = sim.stats();
    let base = &stats.rate_keys[DEMO_BASE_ID];
    assert!(base.max_attempted_in_window <= 5, "{base:?}");
    assert_eq!(base.rejected, 0, "{base:?}");
    assert_eq!(stats.rate_limited, 0);
    // The budget was actually used (reads may take 4 of the 5), not
    // trivially undershot.
    assert!(base.max_attempted_in_window >= 4, "{base:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn airtable_errors() {
    let sim = start(
        SimConfig::new(Api::Airtable)
            .seed_records(1)
            .rate_limit(0.0),
    )
    .await;
    let budgets = Budgets::new();
    let client = client(&sim, &budgets);
    let spec = client.connector().clone();
    let get = spec
        .discovered_objects
        .as_ref()
        .unwrap()
        .endpoints
        .get
        .clone()
        .unwrap();
    let err = client
        .send(
            Priority::Read,
            &get,
            &Vars::new()
                .with("object", "Contacts")
                .with("id", "recNope00000000000"),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(404));
    assert_eq!(err.sqlstate, "P0002", "{err:?}");
    assert!(err.to_string().starts_with("[Airtable]: "), "{err}");
    sim.shutdown().await;
}
