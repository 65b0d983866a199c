//! The API client against the GitHub simulator: RFC 8288 `Link` paging with
//! connection parameters in the path, the secondary rate limit (403 with
//! Retry-After) treated as a rate limit, and 422 validation errors.

use crate::api_support;

use std::time::Duration;

use api_support::*;
use sequin_runtime::api::{
    Client, ClientConfig, PageCursor, Priority, SendRequest, Vars, write_body,
};
use sequin_sim::github::Github;
use sequin_sim::{Api, RateLimit, SimConfig};
use serde_json::{Map, json};

fn client(sim: &sequin_sim::Sim) -> Client {
    Client::new(
        arc(connector("github")),
        ClientConfig {
            retry: fast_retry(),
            ..ClientConfig::new("gh")
                .base_url(sim.base_url())
                .credential("token", sim.token())
                .param("owner", Github::OWNER)
                .param("repo", Github::REPO)
        },
    )
    .unwrap()
}

#[tokio::test]
async fn link_header_paging() {
    let sim = start(
        SimConfig::new(Api::Github)
            .seed_records(250)
            .rate_limit(0.0),
    )
    .await;
    let client = client(&sim);
    let spec = client.connector().clone();
    let issue = spec.object("issue").unwrap();
    let listing = fetch_all(
        &client,
        &issue.endpoints.list,
        None,
        spec.pagination_of(issue),
        &Vars::new(),
        None,
    )
    .await;
    assert_eq!(listing.pages, 3);
    assert!(matches!(&listing.cursors[0], PageCursor::Url { url } if url.contains("page=2")));
    assert_eq!(
        unique_ids(&listing.records, "id").len(),
        sim.github().issue_count()
    );
    assert_eq!(listing.records.len(), 250);
    sim.shutdown().await;
}

#[tokio::test]
async fn secondary_rate_limit_403_is_waited_out() {
    let sim = start(SimConfig::new(Api::Github).seed_records(250)).await;
    sim.set_rate_limit(Some(RateLimit {
        requests: 1,
        window: Duration::from_secs(1),
    }));
    let client = client(&sim);
    let spec = client.connector().clone();
    let issue = spec.object("issue").unwrap();
    let listing = fetch_all(
        &client,
        &issue.endpoints.list,
        None,
        spec.pagination_of(issue),
        &Vars::new(),
        None,
    )
    .await;
    assert_eq!(listing.records.len(), 250);
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 2, "{stats:?}");
    assert_eq!(stats.by_status.get(&403).copied(), Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_errors_and_record_fields_in_paths() {
    let sim = start(SimConfig::new(Api::Github).seed_records(3).rate_limit(0.0)).await;
    let client = client(&sim);
    let spec = client.connector().clone();
    let issue = spec.object("issue").unwrap();
    let create = issue.endpoints.create.clone().unwrap();
    let mut obj = Map::new();
    obj.insert("body".into(), json!("no title"));
    let err = client
        .send(
            Priority::Write,
            &create,
            &Vars::new(),
            Some(write_body(&spec, &create, obj)),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(422));
    assert_eq!(err.to_string(), "[GitHub]: Validation Failed");
    assert_eq!(err.field.as_deref(), Some("title"), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("missing_field"));
    assert_eq!(err.sqlstate, "23502");

    // `{number}` comes from the record's own field.
    let update = issue.endpoints.update.clone().unwrap();
    let record = sim.github().issue(2).unwrap();
    let mut obj = Map::new();
    obj.insert("title".into(), json!("Renamed by Sequin"));
    let resp = client
        .send(
            Priority::Write,
            &update,
            &Vars::new().record(&record),
            Some(write_body(&spec, &update, obj)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.json.unwrap()["title"], "Renamed by Sequin");
    assert_eq!(sim.github().issue(2).unwrap()["title"], "Renamed by Sequin");

    // Conditional reads: the ETag comes back in the headers, and a 304 is a
    // success without a body.
    let get = issue.endpoints.get.clone().unwrap();
    let vars = Vars::new().with("number", "2");
    let first = client
        .send(Priority::Read, &get, &vars, None, None)
        .await
        .unwrap();
    let etag = first.headers["etag"].to_str().unwrap().to_string();
    let mut req = SendRequest::new(Priority::Read, &get, &vars);
    req.headers.push(("If-None-Match".into(), etag));
    let again = client.send_request(req).await.unwrap();
    assert_eq!(again.status, 304);
    assert!(again.json.is_none());
    sim.shutdown().await;
}
