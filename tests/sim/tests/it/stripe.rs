//! The Stripe simulator over real HTTP: pagination, ordering, filters, create/update/delete with
//! Stripe's parameter rules, metadata semantics, events, idempotency, errors and auth.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::Value;

pub(crate) const KEY: &str = "sk_test_sequin";

pub(crate) async fn sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(records)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Client {
    pub(crate) fn new(sim: &Sim) -> Self {
        Self::with_key(sim, KEY)
    }

    pub(crate) fn with_key(sim: &Sim, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            key: key.to_owned(),
        }
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is JSON ({e}): {text}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.key),
        )
        .await
    }

    pub(crate) async fn post(&self, path: &str, form: &str) -> Reply {
        self.post_with(path, form, None).await
    }

    pub(crate) async fn post_with(
        &self,
        path: &str,
        form: &str,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send(
            self.http
                .delete(format!("{}{path}", self.base))
                .bearer_auth(&self.key),
        )
        .await
    }
}

pub(crate) fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

pub(crate) fn assert_error(
    r: &Reply,
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    let e = &r.body["error"];
    assert_eq!(e["type"], kind, "{}", r.body);
    assert_eq!(e["code"].as_str(), code, "{}", r.body);
    assert_eq!(e["param"].as_str(), param, "{}", r.body);
    assert_eq!(e["message"], message, "{}", r.body);
}

#[tokio::test]
async fn pages_through_10k_customers_both_directions_without_gaps_or_duplicates() {
    let sim = sim(0).await;
    sim.stripe().seed_customers(10_000);
    let c = Client::new(&sim);

    let mut forward = Vec::new();
    let mut created = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/customers?limit=100".to_owned(),
            Some(id) => format!("/v1/customers?limit=100&starting_after={id}"),
        };
        let r = c.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["object"], "list");
        assert_eq!(r.body["url"], "/v1/customers");
        let page = ids(&r.body);
        created.extend(r.body["data"].as_array().unwrap().iter().map(|o| {
            (
                o["created"].as_i64().unwrap(),
                o["id"].as_str().unwrap().to_owned(),
            )
        }));
        forward.extend(page.iter().cloned());
        if !r.body["has_more"].as_bool().unwrap() {
            assert!(page.len() <= 100);
            break;
        }
        assert_eq!(page.len(), 100);
        cursor = page.last().cloned();
    }
    assert_eq!(forward.len(), 10_000);
    assert_eq!(
        forward.iter().collect::<HashSet<_>>().len(),
        10_000,
        "duplicates"
    );
    assert_eq!(
        forward,
        sim.stripe().ids(Kind::Customer),
        "every customer, in list order"
    );
    // Newest first by created, ties broken by id (descending), and ties do occur.
    for w in created.windows(2) {
        assert!(
            w[0] > w[1],
            "order violated between {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    assert!(
        created.windows(2).any(|w| w[0].0 == w[1].0),
        "seed has ties on created"
    );

    // Backwards from the oldest with ending_before: the same sequence, page by page.
    let mut backward: Vec<String> = Vec::new();
    let mut before = forward.last().cloned().unwrap();
    loop {
        let r = c
            .get(&format!("/v1/customers?limit=100&ending_before={before}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = ids(&r.body);
        let mut merged = page.clone();
        merged.extend(backward);
        backward = merged;
        if !r.body["has_more"].as_bool().unwrap() {
            break;
        }
        before = page.first().cloned().unwrap();
    }
    assert_eq!(backward.len(), 9_999);
    assert_eq!(backward[..], forward[..9_999]);
}

#[tokio::test]
async fn list_defaults_limits_and_parameter_errors() {
    let sim = sim(30).await;
    let c = Client::new(&sim);
    let r = c.get("/v1/customers").await;
    assert_eq!(
        r.body["data"].as_array().unwrap().len(),
        10,
        "default limit is 10"
    );
    assert_eq!(r.body["has_more"], true);

    let r = c.get("/v1/customers?limit=101").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        None,
        Some("limit"),
        "This value must be less than or equal to 100.",
    );
    let r = c.get("/v1/customers?limit=0").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        None,
        Some("limit"),
        "This value must be greater than or equal to 1.",
    );
    let r = c.get("/v1/customers?limit=abc").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        None,
        Some("limit"),
        "Invalid integer: abc",
    );
    let r = c.get("/v1/customers?foo=1").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some("foo"),
        "Received unknown parameter: foo",
    );
    let r = c.get("/v1/customers?starting_after=cus_nope").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("resource_missing"),
        Some("starting_after"),
        "No such customer: 'cus_nope'",
    );

    // Every kind lists; subscriptions exclude canceled ones unless asked.
    for kind in Kind::CORE {
        let r = c.get(&format!("/v1/{}?limit=100", kind.collection())).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        assert_eq!(r.body["data"].as_array().unwrap().len(), 30, "{kind:?}");
        assert!(
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["object"] == kind.object())
        );
    }
}

#[tokio::test]
async fn filters_by_created_and_fields() {
    let sim = sim(40).await;
    let c = Client::new(&sim);
    let all = c.get("/v1/customers?limit=100").await.body;
    let times: Vec<i64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["created"].as_i64().unwrap())
        .collect();
    let pivot = times[20];
    let r = c
        .get(&format!("/v1/customers?limit=100&created[gte]={pivot}"))
        .await;
    let got = r.body["data"].as_array().unwrap();
    assert_eq!(got.len(), times.iter().filter(|t| **t >= pivot).count());
    assert!(got.iter().all(|o| o["created"].as_i64().unwrap() >= pivot));
    let r = c
        .get(&format!("/v1/customers?limit=100&created[lt]={pivot}"))
        .await;
    assert_eq!(
        r.body["data"].as_array().unwrap().len(),
        times.iter().filter(|t| **t < pivot).count()
    );

    let email = all["data"][3]["email"].as_str().unwrap().to_owned();
    let r = c
        .get(&format!(
            "/v1/customers?email={}",
            email.replace('+', "%2B")
        ))
        .await;
    assert_eq!(
        ids(&r.body),
        vec![all["data"][3]["id"].as_str().unwrap().to_owned()]
    );

    let customer = all["data"][0]["id"].as_str().unwrap();
    let r = c
        .get(&format!("/v1/subscriptions?customer={customer}"))
        .await;
    let subs = r.body["data"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["customer"], customer);
}

#[tokio::test]
async fn customer_create_update_metadata_semantics_and_delete() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let r = c
        .post("/v1/customers", "name=Ada+Lovelace&email=ada%40example.com&metadata[a]=1&address[city]=London&preferred_locales[]=en&preferred_locales[]=fr")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cus = r.body;
    let id = cus["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("cus_")
            && id.len() == 18
            && id[4..].chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(cus["object"], "customer");
    assert_eq!(cus["email"], "ada@example.com");
    assert_eq!(cus["metadata"], serde_json::json!({"a": "1"}));
    assert_eq!(cus["address"]["city"], "London");
    assert!(cus["address"]["line1"].is_null() && cus["address"].as_object().unwrap().len() == 6);
    assert_eq!(cus["preferred_locales"], serde_json::json!(["en", "fr"]));
    assert_eq!(cus["balance"], 0);

    let path = format!("/v1/customers/{id}");
    let r = c.post(&path, "metadata[b]=2").await;
    assert_eq!(
        r.body["metadata"],
        serde_json::json!({"a": "1", "b": "2"}),
        "merge"
    );
    let r = c.post(&path, "metadata[a]=").await;
    assert_eq!(
        r.body["metadata"],
        serde_json::json!({"b": "2"}),
        "empty value deletes the key"
    );
    let r = c.post(&path, "metadata=").await;
    assert_eq!(
        r.body["metadata"],
        serde_json::json!({}),
        "metadata= clears"
    );
    let r = c.post(&path, "balance=250&address[line1]=1+Main+St").await;
    assert_eq!(r.body["balance"], 250);
    assert_eq!(r.body["address"]["city"], "London", "nested objects merge");
    assert_eq!(r.body["address"]["line1"], "1 Main St");
    assert_eq!(
        c.get(&path).await.body,
        r.body,
        "retrieve returns the stored object"
    );

    // Stripe's parameter errors.
    let r = c.post(&path, "foo=1").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some("foo"),
        "Received unknown parameter: foo",
    );
    let r = c.post(&path, "address[planet]=Mars").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some("address[planet]"),
        "Received unknown parameter: address[planet]",
    );
    let r = c.post(&path, "balance=lots").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        None,
        Some("balance"),
        "Invalid integer: lots",
    );
    let r = c.post(&path, "tax_exempt=sometimes").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        None,
        Some("tax_exempt"),
        "Invalid tax_exempt: must be one of exempt, none, or reverse",
    );
    let r = c.post(&path, "email=not-an-email").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("email_invalid"),
        Some("email"),
        "Invalid email address: not-an-email",
    );
    let r = c.post("/v1/customers", "email=andrea__invalid").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("email_invalid"),
        Some("email"),
        "Invalid email address: andrea__invalid",
    );
    let r = c.get("/v1/customers/cus_doesnotexist").await;
    assert_error(
        &r,
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("id"),
        "No such customer: 'cus_doesnotexist'",
    );
    let r = c.post("/v1/customers/cus_doesnotexist", "name=x").await;
    assert_error(
        &r,
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("id"),
        "No such customer: 'cus_doesnotexist'",
    );

    let r = c.delete(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        serde_json::json!({"id": id, "object": "customer", "deleted": true})
    );
    let r = c.get(&path).await;
    assert_eq!(
        r.body,
        serde_json::json!({"id": id, "object": "customer", "deleted": true}),
        "deleted customers stay retrievable as a stub"
    );
    assert!(ids(&c.get("/v1/customers").await.body).is_empty());
    let r = c.delete(&path).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn events_record_every_change_newest_first() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let cus = c
        .post("/v1/customers", "name=Grace&email=grace%40example.com")
        .await
        .body;
    let id = cus["id"].as_str().unwrap();
    c.post(
        &format!("/v1/customers/{id}"),
        "name=Grace+Hopper&metadata[team]=navy",
    )
    .await;
    c.post(&format!("/v1/customers/{id}"), "name=Grace+Hopper")
        .await; // no change, no event
    let product = c.post("/v1/products", "name=Compiler").await.body;
    c.delete(&format!("/v1/customers/{id}")).await;

    let r = c.get("/v1/events").await;
    assert_eq!(r.status, 200);
    let events = r.body["data"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "customer.deleted",
            "product.created",
            "customer.updated",
            "customer.created"
        ]
    );
    let updated = &events[2];
    assert_eq!(updated["object"], "event");
    assert_eq!(updated["data"]["object"]["name"], "Grace Hopper");
    assert_eq!(
        updated["data"]["previous_attributes"],
        serde_json::json!({"name": "Grace", "metadata": {"team": null}})
    );
    assert!(events[3]["data"].get("previous_attributes").is_none());
    assert_eq!(events[0]["data"]["object"]["id"], id);
    assert_eq!(events[1]["data"]["object"]["id"], product["id"]);
    assert!(events[0]["id"].as_str().unwrap().starts_with("evt_"));

    let r = c.get("/v1/events?type=customer.updated").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = c
        .get("/v1/events?types[]=customer.created&types[]=product.created")
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    let r = c.get("/v1/events?type=customer.*").await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
    let newest = events[0]["created"].as_i64().unwrap();
    let r = c.get(&format!("/v1/events?created[gt]={newest}")).await;
    assert!(r.body["data"].as_array().unwrap().is_empty());
    let r = c.get("/v1/events?limit=2").await;
    assert_eq!(r.body["has_more"], true);
    let second = c
        .get(&format!(
            "/v1/events?limit=2&starting_after={}",
            ids(&r.body)[1]
        ))
        .await;
    assert_eq!(
        ids(&second.body),
        ids(&serde_json::json!({"data": events[2..4]}))
    );

    let eid = events[2]["id"].as_str().unwrap();
    let one = c.get(&format!("/v1/events/{eid}")).await;
    assert_eq!(&one.body, updated);

    // Events are kept 30 days: after that they are gone and a cursor on them fails.
    sim.clock()
        .advance(std::time::Duration::from_secs(31 * 24 * 3600));
    assert!(ids(&c.get("/v1/events").await.body).is_empty());
    let r = c.get(&format!("/v1/events?starting_after={eid}")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn idempotency_key_replays_and_rejects_mismatches() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let first = c
        .post_with("/v1/customers", "name=Once", Some("key-1"))
        .await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = c
        .post_with("/v1/customers", "name=Once", Some("key-1"))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        again.headers["original-request"],
        first.headers["request-id"]
    );
    assert_ne!(again.headers["request-id"], first.headers["request-id"]);
    assert_eq!(again.body, first.body);
    assert_eq!(
        sim.stripe().len(Kind::Customer),
        1,
        "the replay created nothing"
    );
    assert_eq!(sim.stripe().event_count(), 1);

    let other = c
        .post_with("/v1/customers", "name=Twice", Some("key-1"))
        .await;
    assert_error(
        &other,
        400,
        "idempotency_error",
        None,
        None,
        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than 'key-1' if you meant to execute a different request.",
    );
    let elsewhere = c
        .post_with("/v1/products", "name=Once", Some("key-1"))
        .await;
    assert_eq!(elsewhere.status, 400);
    assert_eq!(elsewhere.body["error"]["type"], "idempotency_error");
    // Without a key every POST executes.
    c.post("/v1/customers", "name=Once").await;
    c.post("/v1/customers", "name=Once").await;
    assert_eq!(sim.stripe().len(Kind::Customer), 3);
}

#[tokio::test]
async fn authentication_bearer_basic_and_stripe_401s() {
    let sim = sim(1).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/customers", sim.base_url());
    let basic = http
        .get(&url)
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You did not provide an API key.")
    );

    let wrong = http
        .get(&url)
        .bearer_auth("sk_test_wrongkey1234")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Invalid API Key provided: sk_test_********1234"
    );
    assert_eq!(sim.stats().unauthorized, 2);
}

#[tokio::test]
async fn products_prices_subscriptions_invoices_payments() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let r = c.post("/v1/products", "description=nameless").await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some("name"),
        "Missing required param: name.",
    );
    let product = c
        .post("/v1/products", "name=Pro&metadata[tier]=gold")
        .await
        .body;
    let pid = product["id"].as_str().unwrap();
    assert!(pid.starts_with("prod_"));
    assert_eq!(product["updated"], product["created"]);

    let r = c
        .post("/v1/prices", "unit_amount=100&product=prod_missing")
        .await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some("currency"),
        "Missing required param: currency.",
    );
    let r = c
        .post(
            "/v1/prices",
            "currency=usd&unit_amount=100&product=prod_missing",
        )
        .await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("resource_missing"),
        Some("product"),
        "No such product: 'prod_missing'",
    );
    let price = c
        .post(
            "/v1/prices",
            &format!("currency=usd&unit_amount=1500&product={pid}&recurring[interval]=month"),
        )
        .await
        .body;
    assert_eq!(price["type"], "recurring");
    assert_eq!(price["unit_amount_decimal"], "1500");
    assert_eq!(price["recurring"]["interval_count"], 1);
    let one_time = c
        .post(
            "/v1/prices",
            &format!("currency=usd&unit_amount=99&product={pid}"),
        )
        .await
        .body;
    assert_eq!(one_time["type"], "one_time");
    assert!(one_time["recurring"].is_null());
    let r = c
        .post(
            &format!("/v1/prices/{}", price["id"].as_str().unwrap()),
            "unit_amount=5",
        )
        .await;
    assert_error(
        &r,
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some("unit_amount"),
        "Received unknown parameter: unit_amount",
    );
    let r = c.delete(&format!("/v1/products/{pid}")).await;
    assert_eq!(r.status, 400, "a product with prices cannot be deleted");
    let r = c
        .delete(&format!("/v1/prices/{}", price["id"].as_str().unwrap()))
        .await;
    assert_eq!(r.status, 404, "prices cannot be deleted");

    let cus = c.post("/v1/customers", "name=Sub").await.body;
    let cid = cus["id"].as_str().unwrap();
    let sub = c
        .post(
            "/v1/subscriptions",
            &format!(
                "customer={cid}&items[0][price]={}",
                price["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(sub.status, 200, "{}", sub.body);
    let sub = sub.body;
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["items"]["data"][0]["price"]["id"], price["id"]);
    let sid = sub["id"].as_str().unwrap();
    let canceled = c.delete(&format!("/v1/subscriptions/{sid}")).await.body;
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["canceled_at"].is_i64());
    assert!(
        ids(&c.get("/v1/subscriptions").await.body).is_empty(),
        "canceled are hidden by default"
    );
    assert_eq!(
        ids(&c.get("/v1/subscriptions?status=all").await.body),
        vec![sid.to_owned()]
    );
    let r = c.get("/v1/events?type=customer.subscription.*").await;
    let types: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "customer.subscription.deleted",
            "customer.subscription.created"
        ]
    );

    let inv = c
        .post("/v1/invoices", &format!("customer={cid}&description=first"))
        .await
        .body;
    assert_eq!(inv["status"], "draft");
    let iid = inv["id"].as_str().unwrap();
    let r = c.delete(&format!("/v1/invoices/{iid}")).await;
    assert_eq!(
        r.body,
        serde_json::json!({"id": iid, "object": "invoice", "deleted": true})
    );

    let pi = c
        .post(
            "/v1/payment_intents",
            &format!("amount=2000&currency=usd&customer={cid}"),
        )
        .await
        .body;
    assert_eq!(pi["status"], "requires_payment_method");
    assert!(
        pi["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}_secret_", pi["id"].as_str().unwrap()))
    );
    let before = sim.stripe().event_count();
    let r = c
        .post(
            &format!("/v1/payment_intents/{}", pi["id"].as_str().unwrap()),
            "description=updated",
        )
        .await;
    assert_eq!(r.body["description"], "updated");
    assert_eq!(
        sim.stripe().event_count(),
        before,
        "Stripe has no payment_intent.updated event"
    );

    let ch = c
        .post(
            "/v1/charges",
            &format!("amount=500&currency=usd&customer={cid}&source=tok_visa"),
        )
        .await
        .body;
    assert_eq!(ch["status"], "succeeded");
    assert_eq!(ch["amount_captured"], 500);
    let r = c.get("/v1/events?limit=1").await;
    assert_eq!(r.body["data"][0]["type"], "charge.succeeded");
}

#[tokio::test]
async fn library_and_control_api_changes_look_like_another_user() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let cus = sim
        .stripe()
        .create(Kind::Customer, "name=Behind&email=b%40example.com")
        .unwrap();
    let id = cus["id"].as_str().unwrap();
    let http = reqwest::Client::new();
    // Control routes need no key and bypass faults and limits.
    let r = http
        .post(format!("{}/_sim/v1/customers/{id}", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Changed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = c.get(&format!("/v1/customers/{id}")).await.body;
    assert_eq!(got["name"], "Changed");
    let types: Vec<String> = c.get("/v1/events").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["customer.updated", "customer.created"]);
    sim.stripe().delete(Kind::Customer, id).unwrap();
    assert_eq!(
        c.get("/v1/events?limit=1").await.body["data"][0]["type"],
        "customer.deleted"
    );
}

#[tokio::test]
async fn a_cursor_on_a_deleted_object_still_pages_on() {
    let sim = sim(30).await;
    let c = Client::new(&sim);
    let all = ids(&c.get("/v1/customers?limit=30").await.body);
    let cursor = &all[9];
    c.delete(&format!("/v1/customers/{cursor}")).await;
    let next = c
        .get(&format!("/v1/customers?limit=10&starting_after={cursor}"))
        .await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(ids(&next.body), all[10..20]);
    let before = c
        .get(&format!("/v1/customers?limit=10&ending_before={cursor}"))
        .await;
    assert_eq!(ids(&before.body), all[..9]);
    assert_eq!(before.body["has_more"], false);
}
