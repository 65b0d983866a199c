//! The API client against the Salesforce simulator: OAuth2 refresh with
//! rotating refresh tokens persisted through a token store, the instance
//! URL from the token response, 401 -> one refresh -> retry, and SOQL
//! paging with `nextRecordsUrl`.

use crate::api_support;

use std::sync::Arc;

use api_support::*;
use sequin_runtime::api::{
    Client, ClientConfig, ErrorKind, MemoryTokenStore, PageCursor, TokenStore, Vars,
};
use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET};
use sequin_sim::{Api, SimConfig};

fn config(
    sim: &sequin_sim::Sim,
    refresh_token: &str,
    store: Option<Arc<dyn TokenStore>>,
) -> ClientConfig {
    ClientConfig {
        token_url: Some(format!("{}/services/oauth2/token", sim.base_url())),
        token_store: store,
        retry: fast_retry(),
        ..ClientConfig::new("sf")
            .credential("client_id", CLIENT_ID)
            .credential("client_secret", CLIENT_SECRET)
            .credential("refresh_token", refresh_token)
    }
}

fn token_requests(sim: &sequin_sim::Sim) -> u64 {
    sim.stats()
        .by_route
        .get("POST /services/oauth2/token")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn oauth_refresh_rotation_and_next_records_url() {
    let sim = start(
        SimConfig::new(Api::Salesforce)
            .seed_records(4500)
            .rate_limit(0.0),
    )
    .await;
    sim.salesforce().set_rotate_refresh_tokens(true);
    let initial = sim.salesforce().refresh_token();
    let store = MemoryTokenStore::new();
    let spec = connector("salesforce");
    let account = spec.object("account").unwrap().clone();
    let pagination = spec.pagination_of(&account).cloned();
    // No base URL override: the instance URL from the token response is used.
    let client = Client::new(
        arc(spec.clone()),
        config(&sim, &initial, Some(Arc::new(store.clone()))),
    )
    .unwrap();
    let vars = Vars::new()
        .with("object", "Account")
        .fields(["Id", "Name", "SystemModstamp"]);

    let listing = fetch_all(
        &client,
        &account.endpoints.list,
        None,
        pagination.as_ref(),
        &vars,
        None,
    )
    .await;
    assert_eq!(listing.pages, 3);
    assert!(
        matches!(&listing.cursors[0], PageCursor::Url { url } if url.starts_with("/services/data/v59.0/query/"))
    );
    let ids = unique_ids(&listing.records, "Id");
    assert_eq!(ids.len(), sim.salesforce().count("Account", false));
    assert_eq!(ids.len(), 4500);
    assert_eq!(client.base_url().await.unwrap(), sim.base_url());

    // The rotated refresh token was persisted, with the instance URL.
    let stored = store.get("sf").expect("tokens stored");
    assert_ne!(stored.refresh_token.expose(), initial);
    assert_eq!(
        stored.instance_url.as_deref(),
        Some(sim.base_url().as_str())
    );
    assert_eq!(token_requests(&sim), 1);

    // Access tokens expire: concurrent requests get 401, one refresh serves all.
    sim.salesforce().expire_access_tokens();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, endpoint, pagination, vars) = (
            client.clone(),
            account.endpoints.list.clone(),
            pagination.clone(),
            vars.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .fetch_page(&endpoint, pagination.as_ref(), &vars, None, None)
                .await
        }));
    }
    for t in tasks {
        let page = t.await.unwrap().expect("page after refresh");
        assert_eq!(page.records.len(), 2000);
    }
    assert_eq!(token_requests(&sim), 2);
    assert!(sim.stats().unauthorized >= 1);
    let rotated_again = store.get("sf").unwrap().refresh_token;
    assert_ne!(rotated_again, stored.refresh_token);

    // The configured refresh token was revoked by rotation: without the
    // store a client cannot authenticate, and says so without the token.
    let stale = Client::new(arc(spec.clone()), config(&sim, &initial, None)).unwrap();
    let err = stale
        .fetch_page(
            &account.endpoints.list,
            pagination.as_ref(),
            &vars,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.sqlstate, "42501");
    // A refused grant is final: no retries.
    assert_eq!(err.attempts, 1);
    assert!(
        err.to_string()
            .starts_with("[Salesforce]: OAuth token refresh failed"),
        "{err}"
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(&initial), "{text}");
        assert!(!text.contains(CLIENT_SECRET), "{text}");
    }

    // A restarted client with the store resumes with the rotated token.
    let before = token_requests(&sim);
    let restarted = Client::new(
        arc(spec),
        config(&sim, &initial, Some(Arc::new(store.clone()))),
    )
    .unwrap();
    let page = restarted
        .fetch_page(
            &account.endpoints.list,
            pagination.as_ref(),
            &vars,
            None,
            None,
        )
        .await
        .expect("stored tokens work");
    assert_eq!(page.records.len(), 2000);
    // The stored access token was still valid: no refresh needed.
    assert_eq!(token_requests(&sim), before);
    sim.shutdown().await;
}

#[tokio::test]
async fn salesforce_errors_and_writes() {
    let sim = start(
        SimConfig::new(Api::Salesforce)
            .seed_records(3)
            .rate_limit(0.0),
    )
    .await;
    let spec = connector("salesforce");
    let contact = spec.object("contact").unwrap().clone();
    let client = Client::new(
        arc(spec.clone()),
        config(&sim, &sim.salesforce().refresh_token(), None),
    )
    .unwrap();
    let create = contact.endpoints.create.clone().unwrap();
    let vars = Vars::new().with("object", "Contact");
    let mut obj = serde_json::Map::new();
    obj.insert("LastName".into(), "Palladio".into());
    obj.insert("Email".into(), "andrea__invalid".into());
    let body = sequin_runtime::api::write_body(&spec, &create, obj);
    let err = client
        .send(
            sequin_runtime::api::Priority::Write,
            &create,
            &vars,
            Some(body),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(
        err.code.as_deref(),
        Some("INVALID_EMAIL_ADDRESS"),
        "{err:?}"
    );
    assert_eq!(err.sqlstate, "22023");
    assert_eq!(err.field.as_deref(), Some("Email"));
    assert!(err.to_string().starts_with("[Salesforce]: "), "{err}");

    let mut obj = serde_json::Map::new();
    obj.insert("LastName".into(), "Palladio".into());
    obj.insert("Email".into(), "andrea@example.com".into());
    let body = sequin_runtime::api::write_body(&spec, &create, obj);
    let resp = client
        .send(
            sequin_runtime::api::Priority::Write,
            &create,
            &vars,
            Some(body),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 201);
    let id = resp.json.unwrap()["id"].as_str().unwrap().to_string();
    // Read back with the record's id in the path template.
    let get = contact.endpoints.get.clone().unwrap();
    let got = client
        .send(
            sequin_runtime::api::Priority::Read,
            &get,
            &vars.clone().with("id", &id),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(got.json.unwrap()["Email"], "andrea@example.com");
    sim.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_and_query_faults_are_retried() {
    let sim = start(
        SimConfig::new(Api::Salesforce)
            .seed_records(2500)
            .rate_limit(0.0)
            .faults(sequin_sim::Faults {
                p_5xx: 0.3,
                p_reset: 0.15,
                p_truncate: 0.15,
                ..sequin_sim::Faults::default()
            }),
    )
    .await;
    let spec = connector("salesforce");
    let account = spec.object("account").unwrap().clone();
    let client = Client::new(
        arc(spec.clone()),
        config(&sim, &sim.salesforce().refresh_token(), None),
    )
    .unwrap();
    let vars = Vars::new().with("object", "Account").fields(["Id", "Name"]);
    let listing = fetch_all(
        &client,
        &account.endpoints.list,
        None,
        spec.pagination_of(&account),
        &vars,
        None,
    )
    .await;
    assert_eq!(listing.pages, 2);
    assert_eq!(unique_ids(&listing.records, "Id").len(), 2500);
    let stats = sim.stats();
    assert!(stats.faults.http_5xx + stats.faults.reset > 0, "{stats:?}");
    assert!(token_requests(&sim) >= 1);
    sim.shutdown().await;
}
