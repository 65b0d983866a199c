//! The API client against the Stripe simulator over real HTTP: record-cursor
//! paging through 10k customers, faults retried without losing records,
//! Retry-After honoured, idempotent writes, error decoding, and secrets kept
//! out of errors and logs.

use crate::api_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use sequin_runtime::api::{
    Budgets, Client, ClientConfig, ErrorKind, Priority, Secret, SendRequest, Vars, write_body,
};
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Faults, RateLimit, SimConfig};
use sequin_spec::Connector;
use serde_json::{Map, json};

fn client(connector: Connector, sim: &sequin_sim::Sim) -> Client {
    Client::new(
        arc(connector),
        ClientConfig {
            retry: fast_retry(),
            ..ClientConfig::new("stripe")
                .base_url(sim.base_url())
                .credential("api_key", sim.token())
        },
    )
    .expect("client builds")
}

/// The spec as written, with a budget high enough that big listings are
/// quick (the limit itself is tested against the Airtable simulator).
fn fast_stripe() -> Connector {
    let mut c = connector("stripe");
    c.rate_limit.requests = 10_000;
    c
}

async fn list_customers(client: &Client, page_size: Option<u32>) -> Listing {
    let spec = client.connector().clone();
    let object = spec.object("customer").unwrap();
    let mut pagination = spec.pagination_of(object).unwrap().clone();
    if let Some(size) = page_size
        && let sequin_spec::model::Pagination::RecordCursor { common, .. } = &mut pagination
    {
        common.page_size = Some(size);
    }
    fetch_all(
        client,
        &object.endpoints.list,
        None,
        Some(&pagination),
        &Vars::new(),
        None,
    )
    .await
}

#[tokio::test]
async fn pages_through_10k_customers_without_gaps_or_duplicates() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    let seeded = sim.stripe().seed_customers(10_000);
    let client = client(fast_stripe(), &sim);
    let listing = list_customers(&client, None).await;
    assert_eq!(listing.pages, 100);
    let ids = unique_ids(&listing.records, "id");
    assert_eq!(ids.len(), 10_000);
    for id in &seeded {
        assert!(ids.contains(id), "customer {id} was skipped");
    }
    // Resuming from a checkpointed cursor continues exactly after it.
    let spec = client.connector().clone();
    let object = spec.object("customer").unwrap();
    let cursor = &listing.cursors[49];
    let page = client
        .fetch_page(
            &object.endpoints.list,
            spec.pagination_of(object),
            &Vars::new(),
            Some(cursor),
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.records[..], listing.records[5000..5100]);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_are_retried_and_no_record_is_lost() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0).faults(Faults {
        p_5xx: 0.15,
        p_429: 0.02,
        p_truncate: 0.15,
        p_reset: 0.1,
        latency: Duration::ZERO,
    }))
    .await;
    sim.stripe().seed_customers(1000);
    let client = client(fast_stripe(), &sim);
    let listing = list_customers(&client, Some(20)).await;
    assert_eq!(listing.pages, 50);
    assert_eq!(unique_ids(&listing.records, "id").len(), 1000);
    let stats = sim.stats();
    assert!(stats.faults.http_5xx > 0, "{stats:?}");
    assert!(stats.faults.truncated > 0, "{stats:?}");
    assert!(stats.faults.reset > 0, "{stats:?}");
    assert!(stats.faults.http_429 > 0, "{stats:?}");
    // Every fault cost one more request, nothing else.
    let faults =
        stats.faults.http_5xx + stats.faults.truncated + stats.faults.reset + stats.faults.http_429;
    assert_eq!(stats.requests, 50 + faults);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_page_that_never_arrives_is_an_error_not_an_empty_page() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    sim.stripe().seed_customers(10);
    sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    let client = client(fast_stripe(), &sim);
    let spec = client.connector().clone();
    let object = spec.object("customer").unwrap();
    let err = client
        .fetch_page(
            &object.endpoints.list,
            spec.pagination_of(object),
            &Vars::new(),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate, "58030");
    assert_eq!(err.status, Some(500));
    assert_eq!(err.attempts, fast_retry().max_attempts);
    assert_eq!(err.to_string(), "[Stripe]: An unknown error occurred");
    assert_eq!(sim.stats().requests, u64::from(fast_retry().max_attempts));
    sim.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = start(SimConfig::new(Api::Stripe)).await;
    sim.stripe().seed_customers(30);
    // The account allows one request per second; the spec thinks 25.
    sim.set_rate_limit(Some(RateLimit {
        requests: 1,
        window: Duration::from_secs(1),
    }));
    let client = client(connector("stripe"), &sim);
    let started = Instant::now();
    let listing = list_customers(&client, Some(10)).await;
    let elapsed = started.elapsed();
    assert_eq!(listing.pages, 3);
    assert_eq!(unique_ids(&listing.records, "id").len(), 30);
    let stats = sim.stats();
    // Pages 2 and 3 were each refused once (Retry-After: 1), then waited for:
    // a client retrying on its own short backoff would be refused again.
    assert_eq!(stats.rate_limited, 2, "{stats:?}");
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    sim.shutdown().await;
}

fn customer_body(client: &Client, name: &str, email: &str) -> sequin_spec::record::Body {
    let spec = client.connector();
    let create = spec
        .object("customer")
        .unwrap()
        .endpoints
        .create
        .as_ref()
        .unwrap();
    let mut obj = Map::new();
    obj.insert("name".into(), json!(name));
    obj.insert("email".into(), json!(email));
    write_body(spec, create, obj)
}

#[tokio::test]
async fn writes_with_an_idempotency_key_survive_lost_responses() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    let client = client(fast_stripe(), &sim);
    let spec = client.connector().clone();
    let create = spec
        .object("customer")
        .unwrap()
        .endpoints
        .create
        .clone()
        .unwrap();
    let before = sim.stripe().len(Kind::Customer);
    // Half the responses are cut off after Stripe created the customer.
    sim.set_faults(Faults {
        p_truncate: 0.5,
        ..Faults::default()
    });
    let vars = Vars::new();
    for i in 0..10 {
        let key = format!("sequin-test-{i}");
        let body = customer_body(
            &client,
            &format!("Customer {i}"),
            &format!("c{i}@example.com"),
        );
        let resp = client
            .send(Priority::Write, &create, &vars, Some(body), Some(&key))
            .await
            .unwrap_or_else(|e| panic!("create {i}: {e}"));
        assert_eq!(resp.status, 200);
        let json = resp.json.unwrap();
        assert_eq!(json["email"], json!(format!("c{i}@example.com")));
        assert!(json["id"].as_str().unwrap().starts_with("cus_"));
        assert!(resp.headers.contains_key("request-id"));
    }
    assert!(sim.stats().faults.truncated > 0);
    assert_eq!(sim.stripe().len(Kind::Customer), before + 10);

    // Without a key, a lost response is not retried: the caller learns the
    // write may have happened.
    sim.set_faults(Faults {
        p_truncate: 1.0,
        ..Faults::default()
    });
    sim.reset_stats();
    let body = customer_body(&client, "No key", "nokey@example.com");
    let err = client
        .send(Priority::Write, &create, &vars, Some(body), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode);
    assert!(err.maybe_applied);
    assert_eq!(err.attempts, 1);
    assert_eq!(sim.stats().requests, 1);
    assert_eq!(sim.stripe().len(Kind::Customer), before + 11);

    // A write refused before processing (injected 5xx) is not retried
    // either without a key, but one the caller vouches for is.
    sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    sim.reset_stats();
    let body = customer_body(&client, "Safe", "safe@example.com");
    let mut req = SendRequest::new(Priority::Write, &create, &vars);
    req.body = Some(body);
    req.retry_safe = true;
    let err = client.send_request(req).await.unwrap_err();
    assert_eq!(err.sqlstate, "58030");
    assert_eq!(err.attempts, fast_retry().max_attempts);
    sim.shutdown().await;
}

#[tokio::test]
async fn api_errors_are_decoded_with_the_spec() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    let client = client(fast_stripe(), &sim);
    let spec = client.connector().clone();
    let customer = spec.object("customer").unwrap();
    let create = customer.endpoints.create.clone().unwrap();
    let body = customer_body(&client, "Andrea Palladio", "andrea__invalid");
    let err = client
        .send(
            Priority::Write,
            &create,
            &Vars::new(),
            Some(body),
            Some("k1"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(err.sqlstate, "22023", "{err:?}");
    assert_eq!(err.code.as_deref(), Some("email_invalid"));
    assert_eq!(err.field.as_deref(), Some("email"));
    assert!(
        err.request_id.as_deref().unwrap().starts_with("req_"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("[Stripe]: "), "{err}");
    assert!(err.to_string().contains("andrea__invalid"), "{err}");
    assert_eq!(err.attempts, 1);

    let get = customer.endpoints.get.clone().unwrap();
    let err = client
        .send(
            Priority::Read,
            &get,
            &Vars::new().with("id", "cus_missing/../x"),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(404));
    assert_eq!(err.sqlstate, "P0002");
    sim.shutdown().await;
}

/// A `MakeWriter` collecting everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "sk_test_51SequinVerySecretKeyValue0000";
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    let spec = connector("stripe");
    let object = spec.object("customer").unwrap().clone();
    let pagination = spec.pagination_of(&object).cloned();
    let mut errors = Vec::new();

    // A refused key (the API echoes part of it).
    let wrong = Client::new(
        arc(spec.clone()),
        ClientConfig {
            retry: fast_retry(),
            ..ClientConfig::new("stripe")
                .base_url(sim.base_url())
                .credential("api_key", secret)
        },
    )
    .unwrap();
    let err = wrong
        .fetch_page(
            &object.endpoints.list,
            pagination.as_ref(),
            &Vars::new(),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate, "42501");
    assert_eq!(err.status, Some(401));
    errors.push(err);

    // The key in the query string, and nobody listening: reqwest's own error
    // text would print the URL.
    let mut query_key = spec.clone();
    query_key.auth = sequin_spec::model::Auth::ApiKey {
        location: sequin_spec::model::KeyLocation::Query,
        name: "api_key".into(),
        prefix: None,
        credential: "api_key".into(),
    };
    let closed = format!("http://127.0.0.1:{}", sequin_pgtemp::free_port().unwrap());
    let nobody = Client::new(
        arc(query_key),
        ClientConfig {
            retry: sequin_runtime::api::RetryPolicy {
                max_attempts: 2,
                ..fast_retry()
            },
            ..ClientConfig::new("stripe")
                .base_url(closed)
                .credential("api_key", secret)
        },
    )
    .unwrap();
    let err = nobody
        .fetch_page(
            &object.endpoints.list,
            pagination.as_ref(),
            &Vars::new(),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert_eq!(err.sqlstate, "58030");
    assert_eq!(err.attempts, 2);
    errors.push(err);

    // A message that quotes the key verbatim is scrubbed.
    let err = sequin_runtime::api::error::decode_error(
        "Stripe",
        &spec.errors,
        400,
        None,
        format!(r#"{{"error":{{"message":"bad key {secret}"}}}}"#).as_bytes(),
    );
    assert!(err.message.contains(secret), "decode alone keeps the text");

    for e in &errors {
        for text in [e.to_string(), format!("{e:?}"), e.detail()] {
            assert!(!text.contains(secret), "secret leaked: {text}");
        }
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("api_request"),
        "requests are traced:\n{logged}"
    );
    assert!(!logged.contains(secret), "secret leaked to logs:\n{logged}");
    // Spans name the path template and the attempt, never the URL.
    for expected in [
        "path=/v1/customers",
        "attempt=1",
        "attempt=2",
        "status=401",
        "method=Get",
    ] {
        assert!(
            logged.contains(expected),
            "no `{expected}` in logs:\n{logged}"
        );
    }
    assert!(!logged.contains("limit=100"), "a URL was logged:\n{logged}");
    // (hyper logs the host it connects to; our own events name no host.)
    for line in logged.lines().filter(|l| l.contains("sequin_runtime::api")) {
        assert!(!line.contains("127.0.0.1"), "a URL was logged: {line}");
    }
    assert!(!format!("{:?}", Secret::new(secret)).contains(secret));
    sim.shutdown().await;
}

#[tokio::test]
async fn clients_of_one_account_share_a_budget() {
    let sim = start(SimConfig::new(Api::Stripe).rate_limit(0.0)).await;
    let budgets = Budgets::new();
    let make = || {
        Client::new(
            arc(connector("stripe")),
            ClientConfig {
                budgets: Some(budgets.clone()),
                ..ClientConfig::new("acme")
                    .base_url(sim.base_url())
                    .credential("api_key", sim.token())
            },
        )
        .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(Arc::ptr_eq(a.budget(), b.budget()));
    let named = |name: &str, key: &str| {
        Client::new(
            arc(connector("stripe")),
            ClientConfig {
                budgets: Some(budgets.clone()),
                ..ClientConfig::new(name)
                    .base_url(sim.base_url())
                    .credential("api_key", key)
            },
        )
        .unwrap()
    };
    // The API counts requests by account: another connection of the same
    // account (its key) shares the budget, another account does not.
    assert!(Arc::ptr_eq(
        a.budget(),
        named("again", sim.token()).budget()
    ));
    assert!(!Arc::ptr_eq(
        a.budget(),
        named("other", "sk_test_other").budget()
    ));
    sim.shutdown().await;
}
