//! The API client against the HubSpot simulator: `paging.next.after`
//! cursors in the query (lists) and in the JSON body (search POSTs), the
//! `{fields}` list as a comma-joined query value and as a body array, and
//! HubSpot's error bodies.

use crate::api_support;

use api_support::*;
use sequin_runtime::api::{Client, ClientConfig, PageCursor, Priority, Vars};
use sequin_sim::hubspot::ObjectType;
use sequin_sim::{Api, SimConfig};
use sequin_spec::model::Incremental;

fn client(sim: &sequin_sim::Sim) -> Client {
    let mut spec = connector("hubspot");
    // Listing speed is not what this test is about.
    spec.rate_limit.requests = 10_000;
    Client::new(
        arc(spec),
        ClientConfig {
            retry: fast_retry(),
            ..ClientConfig::new("hubspot")
                .base_url(sim.base_url())
                .credential("access_token", sim.token())
        },
    )
    .unwrap()
}

#[tokio::test]
async fn lists_and_searches_page_with_after_cursors() {
    let sim = start(
        SimConfig::new(Api::Hubspot)
            .seed_records(250)
            .rate_limit(0.0),
    )
    .await;
    let client = client(&sim);
    let spec = client.connector().clone();
    let contact = spec.object("contact").unwrap();
    let vars = Vars::new().fields(["email", "firstname", "lastname", "lastmodifieddate"]);

    let listing = fetch_all(
        &client,
        &contact.endpoints.list,
        None,
        spec.pagination_of(contact),
        &vars,
        None,
    )
    .await;
    assert_eq!(listing.pages, 3);
    assert!(matches!(listing.cursors[0], PageCursor::After { .. }));
    let ids = unique_ids(&listing.records, "id");
    assert_eq!(ids.len(), sim.hubspot().count(ObjectType::Contacts, false));
    assert_eq!(ids.len(), 250);
    // `properties={fields}` asked for exactly these properties.
    let first = &listing.records[0]["properties"];
    assert!(first["email"].as_str().unwrap().contains('@'), "{first}");
    assert!(first.get("phone").is_none(), "{first}");

    // The incremental search: a POST whose body template holds `{since}` and
    // `{fields}`, paged with `after` in the body.
    let Some(Incremental::Search {
        endpoint,
        body,
        records,
        pagination,
        ..
    }) = spec.incremental_of(contact).cloned()
    else {
        panic!("hubspot contacts sync by search");
    };
    let searched = fetch_all(
        &client,
        &endpoint,
        Some(&records),
        Some(&pagination),
        &vars.clone().with("since", "0"),
        Some(body),
    )
    .await;
    assert_eq!(searched.pages, 2);
    assert_eq!(unique_ids(&searched.records, "id"), ids);
    assert!(searched.records[0]["properties"]["email"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn hubspot_errors_carry_the_correlation_id() {
    let sim = start(SimConfig::new(Api::Hubspot).seed_records(1).rate_limit(0.0)).await;
    let client = client(&sim);
    let spec = client.connector().clone();
    let get = spec
        .object("contact")
        .unwrap()
        .endpoints
        .get
        .clone()
        .unwrap();
    let err = client
        .send(
            Priority::Read,
            &get,
            &Vars::new().with("id", "999999999").fields(["email"]),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(404));
    assert_eq!(err.sqlstate, "P0002");
    assert_eq!(err.code.as_deref(), Some("OBJECT_NOT_FOUND"));
    assert!(err.request_id.is_some(), "{err:?}");
    assert!(err.to_string().starts_with("[HubSpot]: "), "{err}");
    sim.shutdown().await;
}
