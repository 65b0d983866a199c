//! The HubSpot simulator over real HTTP: list paging over 10k records, properties selection,
//! CRUD with HubSpot's error bodies, archived records, search filters/sorts and the 10,000
//! result cap, batch endpoints, the properties API and both rate limits.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use sequin_sim::hubspot::ObjectType;
use sequin_sim::{Api, RateLimit, Sim, SimConfig};
use serde_json::{Value, json};

async fn sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Hubspot)
            .seed_records(records)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(sim: &Sim) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            token: sim.token().to_owned(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn search(&self, object: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/crm/v3/objects/{object}/search"), body)
            .await
    }
}

fn assert_error(body: &Value, category: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["category"], category, "{body}");
    let correlation = body["correlationId"].as_str().expect("correlationId");
    assert_eq!(correlation.len(), 36, "UUID-shaped: {correlation}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn ids(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_ten_thousand_contacts_without_gaps() {
    let sim = sim(10_000).await;
    let client = Client::new(&sim);
    let (status, first) = client.get("/crm/v3/objects/contacts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first["results"].as_array().unwrap().len(),
        10,
        "default limit"
    );
    // Default properties for contacts, no more.
    let properties = first["results"][0]["properties"].as_object().unwrap();
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname"
        ]
    );

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/crm/v3/objects/contacts?limit=500&after={a}"),
            None => "/crm/v3/objects/contacts?limit=500".to_owned(),
        };
        let (status, page) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let batch = ids(&page["results"]);
        assert!(batch.len() <= 100, "limit is capped at 100");
        seen.extend(batch);
        pages += 1;
        match page.pointer("/paging/next/after").and_then(Value::as_str) {
            Some(next) => {
                let link = page["paging"]["next"]["link"].as_str().unwrap();
                assert!(link.ends_with(&format!("after={next}")), "{link}");
                after = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 100);
    assert_eq!(seen.len(), 10_000);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        10_000,
        "no duplicates"
    );
    let numeric: Vec<u64> = seen.iter().map(|id| id.parse().unwrap()).collect();
    assert!(numeric.windows(2).all(|w| w[0] < w[1]), "ascending ids");
}

#[tokio::test]
async fn crud_properties_and_archive() {
    let sim = sim(3).await;
    let client = Client::new(&sim);

    let (status, created) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "andrea@example.com", "firstname": "Andrea", "lastname": "Palladio", "lifecyclestage": "lead"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["properties"]["hs_object_id"], id);
    assert_eq!(created["properties"]["email"], "andrea@example.com");
    assert_eq!(created["archived"], false);
    assert_eq!(created["createdAt"], created["updatedAt"]);
    assert_eq!(created["properties"]["createdate"], created["createdAt"]);

    let (status, read) = client
        .get(&format!(
            "/crm/v3/objects/contacts/{id}?properties=lifecyclestage,phone,nope"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut names: Vec<&str> = read["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "createdate",
            "hs_object_id",
            "lastmodifieddate",
            "lifecyclestage"
        ],
        "unknown and empty properties omitted"
    );
    let (_, by_email) = client
        .get("/crm/v3/objects/contacts/ANDREA@example.com?idProperty=email")
        .await;
    assert_eq!(by_email["id"], id);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, updated) = client
        .patch(
            &format!("/crm/v3/objects/contacts/{id}"),
            json!({"properties": {"firstname": "Andreas", "lifecyclestage": ""}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["properties"]["firstname"], "Andreas");
    assert!(
        updated["properties"].get("lifecyclestage").is_none(),
        "an empty string clears"
    );
    assert!(updated["updatedAt"].as_str() > created["updatedAt"].as_str());
    assert_eq!(
        updated["properties"]["lastmodifieddate"],
        updated["updatedAt"]
    );

    // Errors, with HubSpot's bodies.
    let (status, body) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "andrea__invalid"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
    assert_eq!(
        body["message"],
        r#"Property values were not valid: [{"isValid":false,"message":"Email address andrea__invalid is invalid","error":"INVALID_EMAIL","name":"email"}]"#
    );
    let (status, body) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "Andrea@Example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "CONFLICT");
    assert_eq!(
        body["message"],
        format!("Contact already exists. Existing ID: {id}")
    );
    let (status, body) = client
        .post(
            "/crm/v3/objects/deals",
            json!({"properties": {"amount": "lots", "dealstage": "nowhere", "createdate": "1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["message"].as_str().unwrap();
    for code in ["INVALID_DECIMAL", "INVALID_OPTION", "READ_ONLY_VALUE"] {
        assert!(message.contains(code), "{message}");
    }
    let (status, body) = client
        .patch(
            "/crm/v3/objects/companies/999999",
            json!({"properties": {"name": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "OBJECT_NOT_FOUND");
    let (status, body) = client.get("/crm/v3/objects/contacts/424242").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "OBJECT_NOT_FOUND");
    let (status, body) = client.get("/crm/v3/objects/widgets").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");

    // Archive: 204, gone from the default listing, visible with archived=true.
    let (status, body) = client
        .delete(&format!("/crm/v3/objects/contacts/{id}"))
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        client
            .get(&format!("/crm/v3/objects/contacts/{id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, live) = client.get("/crm/v3/objects/contacts?limit=100").await;
    assert!(!ids(&live["results"]).contains(&id));
    let (_, archived) = client.get("/crm/v3/objects/contacts?archived=true").await;
    assert_eq!(ids(&archived["results"]), std::slice::from_ref(&id));
    assert_eq!(archived["results"][0]["archived"], true);
    assert!(archived["results"][0]["archivedAt"].is_string());
    let (status, _) = client
        .get(&format!("/crm/v3/objects/contacts/{id}?archived=true"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The email is free again once the contact is archived.
    let (status, _) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "andrea@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // 401 without a valid private-app token.
    let response = reqwest::Client::new()
        .get(format!("{}/crm/v3/objects/contacts", sim.base_url()))
        .bearer_auth("pat-na1-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "INVALID_AUTHENTICATION");
}

#[tokio::test]
async fn search_filters_sorts_and_the_ten_thousand_cap() {
    let sim = sim(10_500).await;
    let client = Client::new(&sim);
    let hubspot = sim.hubspot();

    // Incremental sync: everything modified after a checkpoint, oldest first.
    let (_, newest) = client
        .search("contacts", json!({"sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}], "limit": 1}))
        .await;
    let checkpoint = newest["results"][0]["properties"]["lastmodifieddate"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, all) = client.get("/crm/v3/objects/contacts?limit=5").await;
    let changed: Vec<String> = ids(&all["results"]).into_iter().take(3).collect();
    for id in changed.iter().rev() {
        hubspot
            .update(ObjectType::Contacts, id, json!({"jobtitle": "Changed"}))
            .unwrap();
    }
    let created = hubspot
        .create(ObjectType::Contacts, json!({"email": "new@example.com"}))
        .unwrap();
    let millis = chrono_millis(&checkpoint);
    let body = json!({
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": millis.to_string()}]}],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["jobtitle"],
        "limit": 200,
    });
    let (status, page) = client.search("contacts", body).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 4);
    let expected: Vec<String> = changed.iter().rev().cloned().chain([created]).collect();
    assert_eq!(ids(&page["results"]), expected);
    assert_eq!(page["results"][0]["properties"]["jobtitle"], "Changed");
    // Repeating a search after a write sees the write (no stale cached results).
    let titled = json!({"filterGroups": [{"filters": [{"propertyName": "jobtitle", "operator": "EQ", "value": "changed"}]}]});
    assert_eq!(
        client.search("contacts", titled.clone()).await.1["total"],
        3
    );
    hubspot
        .update(ObjectType::Contacts, &changed[0], json!({"jobtitle": ""}))
        .unwrap();
    assert_eq!(client.search("contacts", titled).await.1["total"], 2);
    assert!(page.get("paging").is_none());
    // The same filter with hs_lastmodifieddate and an ISO value.
    let body = json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": checkpoint}]}]});
    assert_eq!(client.search("contacts", body).await.1["total"], 4);

    // Operators and OR-ed groups.
    let count = |filters: Value| {
        let body = json!({"filterGroups": filters, "limit": 1});
        let client = &client;
        async move {
            let (status, page) = client.search("deals", body).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["total"].as_u64().unwrap()
        }
    };
    let stage = |op: &str, value: &str| json!([{"filters": [{"propertyName": "dealstage", "operator": op, "value": value}]}]);
    let won = count(stage("EQ", "closedwon")).await;
    assert_eq!(won, 1500, "10,500 deals over 7 stages");
    assert_eq!(count(stage("NEQ", "closedwon")).await, 9000);
    let either = json!([
        {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]},
        {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedlost"}]},
    ]);
    assert_eq!(count(either).await, 3000);
    let within = json!([{"filters": [{"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]}]}]);
    assert_eq!(count(within).await, 3000);
    let both = json!([{"filters": [
        {"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"},
        {"propertyName": "amount", "operator": "GTE", "value": "10000"},
    ]}]);
    let rich_won = count(both).await;
    assert!(rich_won > 0 && rich_won < won, "{rich_won}");
    let has = json!([{"filters": [{"propertyName": "description", "operator": "HAS_PROPERTY"}]}]);
    assert_eq!(count(has).await, 0);
    let lacks =
        json!([{"filters": [{"propertyName": "description", "operator": "NOT_HAS_PROPERTY"}]}]);
    assert_eq!(count(lacks).await, 10_500);
    let range = json!([{"filters": [{"propertyName": "amount", "operator": "BETWEEN", "value": "1000", "highValue": "1250"}]}]);
    assert_eq!(count(range).await, 420);

    // Sort by another property, paging with `after`, no duplicates.
    let mut seen = HashSet::new();
    let mut after = json!(null);
    let mut previous_amount = f64::MIN;
    for _ in 0..3 {
        let body =
            json!({"sorts": ["amount"], "properties": ["amount"], "limit": 200, "after": after});
        let (_, page) = client.search("deals", body).await;
        for result in page["results"].as_array().unwrap() {
            let amount: f64 = result["properties"]["amount"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(amount >= previous_amount);
            previous_amount = amount;
            assert!(seen.insert(result["id"].as_str().unwrap().to_owned()));
        }
        after = page["paging"]["next"]["after"].clone();
    }
    assert_eq!(seen.len(), 600);

    // Paging up to 10,000 works; beyond it HubSpot answers 400.
    let (status, page) = client
        .search("companies", json!({"limit": 200, "after": "9800"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 10_500);
    assert_eq!(page["paging"]["next"]["after"], "10000");
    let (_, page) = client
        .search("companies", json!({"limit": 200, "after": "9900"}))
        .await;
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        100,
        "nothing past the cap"
    );
    assert_eq!(page["paging"]["next"]["after"], "10000");
    let (status, body) = client
        .search("companies", json!({"limit": 200, "after": "10000"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
    let (status, body) = client.search("companies", json!({"limit": 201})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
    let body = json!({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "x"}]}]});
    assert_eq!(
        client.search("companies", body).await.0,
        StatusCode::BAD_REQUEST
    );

    // Free-text query over the default searchable properties (case-insensitive).
    let body = json!({"query": "NEW@example", "properties": ["email"]});
    let (_, page) = client.search("contacts", body).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["results"][0]["properties"]["email"], "new@example.com");
}

/// Epoch milliseconds of an ISO timestamp as HubSpot renders them.
fn chrono_millis(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn batch_endpoints() {
    let sim = sim(0).await;
    let client = Client::new(&sim);
    let inputs: Vec<Value> = (0..3)
        .map(|i| json!({"properties": {"name": format!("Company {i}"), "domain": format!("c{i}.example.com")}}))
        .collect();
    let (status, body) = client
        .post(
            "/crm/v3/objects/companies/batch/create",
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "COMPLETE");
    assert!(body["startedAt"].is_string() && body["completedAt"].is_string());
    let created = ids(&body["results"]);
    assert_eq!(created.len(), 3);

    // One invalid input fails the whole batch.
    let bad = json!({"inputs": [{"properties": {"name": "ok"}}, {"properties": {"numberofemployees": "many"}}]});
    let (status, body) = client
        .post("/crm/v3/objects/companies/batch/create", bad)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
    assert_eq!(sim.hubspot().count(ObjectType::Companies, false), 3);
    let duplicate = json!({"inputs": [{"properties": {"email": "same@example.com"}}, {"properties": {"email": "same@example.com"}}]});
    assert_eq!(
        client
            .post("/crm/v3/objects/contacts/batch/create", duplicate)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    let update = json!({"inputs": [
        {"id": created[0], "properties": {"name": "Renamed"}},
        {"id": "777777", "properties": {"name": "Missing"}},
    ]});
    let (status, body) = client
        .post("/crm/v3/objects/companies/batch/update", update)
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(body["results"][0]["properties"]["name"], "Renamed");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["777777"]));

    let read = json!({"inputs": [{"id": created[0]}, {"id": created[1]}], "properties": ["name"], "propertiesWithHistory": []});
    let (status, body) = client
        .post("/crm/v3/objects/companies/batch/read", read)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body["results"]), created[..2]);
    assert_eq!(body["results"][0]["properties"]["name"], "Renamed");

    let archive = json!({"inputs": [{"id": created[1]}, {"id": created[2]}]});
    let (status, body) = client
        .post("/crm/v3/objects/companies/batch/archive", archive)
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(sim.hubspot().count(ObjectType::Companies, false), 1);
    let read = json!({"inputs": [{"id": created[0]}, {"id": created[1]}], "properties": [], "propertiesWithHistory": []});
    let (status, body) = client
        .post("/crm/v3/objects/companies/batch/read", read)
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["errors"][0]["context"]["ids"], json!([created[1]]));

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"properties": {"name": format!("N{i}")}}))
        .collect();
    let (status, body) = client
        .post(
            "/crm/v3/objects/companies/batch/create",
            json!({"inputs": too_many}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
}

#[tokio::test]
async fn properties_api_and_custom_properties() {
    let sim = sim(2).await;
    let client = Client::new(&sim);
    let (status, body) = client.get("/crm/v3/properties/deals").await;
    assert_eq!(status, StatusCode::OK);
    let properties = body["results"].as_array().unwrap();
    let stage = properties
        .iter()
        .find(|p| p["name"] == "dealstage")
        .unwrap();
    assert_eq!(
        (stage["type"].clone(), stage["fieldType"].clone()),
        (json!("enumeration"), json!("radio"))
    );
    assert!(
        stage["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == "closedwon")
    );
    let modified = properties
        .iter()
        .find(|p| p["name"] == "hs_lastmodifieddate")
        .unwrap();
    assert_eq!(modified["modificationMetadata"]["readOnlyValue"], true);

    let definition = json!({
        "name": "favorite_color",
        "label": "Favorite color",
        "type": "enumeration",
        "fieldType": "select",
        "groupName": "contactinformation",
        "options": [{"label": "Red", "value": "red", "hidden": false}, {"label": "Blue", "value": "blue", "hidden": false}],
    });
    let (status, created) = client
        .post("/crm/v3/properties/contacts", definition.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["hubspotDefined"], false);
    let (status, body) = client.post("/crm/v3/properties/contacts", definition).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "OBJECT_ALREADY_EXISTS");
    let (status, body) = client
        .post(
            "/crm/v3/properties/contacts",
            json!({"name": "x", "label": "X"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "VALIDATION_ERROR");
    assert_eq!(
        client
            .get("/crm/v3/properties/contacts/favorite_color")
            .await
            .1["label"],
        "Favorite color"
    );

    let (status, contact) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"favorite_color": "blue"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, read) = client
        .get(&format!(
            "/crm/v3/objects/contacts/{}?properties=favorite_color",
            contact["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(read["properties"]["favorite_color"], "blue");
    let (status, body) = client
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"favorite_color": "green"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("INVALID_OPTION"));
    let search = json!({"filterGroups": [{"filters": [{"propertyName": "favorite_color", "operator": "EQ", "value": "blue"}]}]});
    assert_eq!(client.search("contacts", search).await.1["total"], 1);
}

#[tokio::test]
async fn rate_limits_answer_429_with_hubspot_body() {
    let sim = sequin_sim::start(SimConfig::new(Api::Hubspot), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(&sim);
    // Search: 5 per second. Six requests sent at once: five pass, one is refused.
    let searches = (0..6).map(|_| client.search("contacts", json!({})));
    let mut replies = futures_util::future::join_all(searches).await;
    replies.sort_by_key(|(status, _)| *status);
    let statuses: Vec<StatusCode> = replies.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses[..5], [StatusCode::OK; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    let refused = &replies[5].1;
    assert_eq!(refused["policyName"], "SECONDLY", "{refused}");
    assert_eq!(refused["message"], "You have reached your secondly limit.");

    // General: 100 per ten seconds; the search requests are a separate bucket.
    sim.set_rate_limit(Some(RateLimit {
        requests: 100,
        window: Duration::from_secs(10),
    }));
    let mut limited = None;
    for i in 0..101 {
        let response = client
            .http
            .get(format!("{}/crm/v3/objects/deals", sim.base_url()))
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, response));
            break;
        }
    }
    let (index, response) = limited.expect("a 429 within 101 requests");
    assert_eq!(index, 100);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.rate_keys["portal"].max_admitted_in_window, 100);
    assert_eq!(stats.rate_keys["portal:search"].max_admitted_in_window, 5);
}

#[tokio::test]
async fn control_routes_change_records_behind_the_clients_back() {
    let sim = sim(1).await;
    let client = Client::new(&sim);
    let http = reqwest::Client::new();
    let control = format!("{}/_sim/hubspot/objects/deals", sim.base_url());
    let response = http
        .post(&control)
        .json(&json!({"properties": {"dealname": "Backdoor", "amount": "5"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let response = http
        .patch(format!("{control}/{id}"))
        .json(&json!({"properties": {"amount": "6"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, read) = client
        .get(&format!("/crm/v3/objects/deals/{id}?properties=amount"))
        .await;
    assert_eq!(read["properties"]["amount"], "6");
    assert!(read["updatedAt"].as_str() > created["updatedAt"].as_str());
    assert_eq!(read["properties"]["hs_lastmodifieddate"], read["updatedAt"]);
    let response = http.delete(format!("{control}/{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, archived) = client.get("/crm/v3/objects/deals?archived=true").await;
    assert_eq!(ids(&archived["results"]), std::slice::from_ref(&id));
}

/// `(path name, a valid create body, a property to change and its new value)` of every
/// standard object besides contacts, companies and deals, and of the seeded custom object.
fn new_objects() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let when = "2025-03-01T10:00:00.000Z";
    vec![
        (
            "tickets",
            json!({"subject": "Printer on fire", "hs_pipeline_stage": "1"}),
            "hs_pipeline_stage",
            "2",
        ),
        (
            "products",
            json!({"name": "Widget", "price": "12.5"}),
            "price",
            "13",
        ),
        (
            "line_items",
            json!({"name": "Widgets", "quantity": "3", "price": "12.5"}),
            "quantity",
            "4",
        ),
        (
            "quotes",
            json!({"hs_title": "Q-1", "hs_expiration_date": "2025-12-31"}),
            "hs_title",
            "Q-2",
        ),
        (
            "calls",
            json!({"hs_timestamp": when, "hs_call_title": "Intro"}),
            "hs_call_title",
            "Intro call",
        ),
        (
            "emails",
            json!({"hs_timestamp": when, "hs_email_subject": "Hello"}),
            "hs_email_subject",
            "Hello again",
        ),
        (
            "meetings",
            json!({"hs_timestamp": when, "hs_meeting_title": "Kickoff"}),
            "hs_meeting_outcome",
            "COMPLETED",
        ),
        (
            "notes",
            json!({"hs_timestamp": when, "hs_note_body": "Met at the fair"}),
            "hs_note_body",
            "Met twice",
        ),
        (
            "tasks",
            json!({"hs_timestamp": when, "hs_task_subject": "Call back"}),
            "hs_task_priority",
            "HIGH",
        ),
        (
            "pets",
            json!({"pet_name": "Rex", "species": "dog"}),
            "species",
            "cat",
        ),
    ]
}

#[tokio::test]
async fn every_object_lists_reads_writes_searches_and_archives() {
    let sim = sim(12).await;
    let c = Client::new(&sim);
    for (object, create, key, changed) in new_objects() {
        let (status, page) = c.get(&format!("/crm/v3/objects/{object}?limit=100")).await;
        assert_eq!(status, StatusCode::OK, "{object}: {page}");
        assert_eq!(
            page["results"].as_array().unwrap().len(),
            12,
            "{object} seeded"
        );
        let (status, created) = c
            .post(
                &format!("/crm/v3/objects/{object}"),
                json!({"properties": create}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{object}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let props = &created["properties"];
        assert_eq!(props["hs_object_id"], id.as_str(), "{object}");
        assert!(
            props["hs_lastmodifieddate"].is_string(),
            "{object}: {props}"
        );
        // Every write bumps the modified time, which searches find.
        let modified = props["hs_lastmodifieddate"].as_str().unwrap().to_owned();
        let (status, updated) = c
            .patch(
                &format!("/crm/v3/objects/{object}/{id}"),
                json!({"properties": {key: changed}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{object}: {updated}");
        assert_eq!(updated["properties"][key], changed);
        let (_, found) = c
            .search(
                object,
                json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": chrono_millis(&modified).to_string()}]}],
                       "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                       "properties": [key], "limit": 200}),
            )
            .await;
        assert_eq!(
            ids(&found["results"]),
            std::slice::from_ref(&id),
            "{object}: {found}"
        );
        assert_eq!(found["results"][0]["properties"][key], changed);
        let (status, _) = c.delete(&format!("/crm/v3/objects/{object}/{id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, archived) = c
            .get(&format!("/crm/v3/objects/{object}?archived=true"))
            .await;
        assert_eq!(
            ids(&archived["results"]),
            std::slice::from_ref(&id),
            "{object}"
        );
        // Batch create and archive.
        let (status, batch) = c
            .post(
                &format!("/crm/v3/objects/{object}/batch/create"),
                json!({"inputs": [{"properties": create}, {"properties": create}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{object}: {batch}");
        let batch_ids = ids(&batch["results"]);
        let inputs: Vec<Value> = batch_ids.iter().map(|id| json!({"id": id})).collect();
        let (status, _) = c
            .post(
                &format!("/crm/v3/objects/{object}/batch/archive"),
                json!({"inputs": inputs}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn default_properties_say_their_types_and_what_hubspot_calculates() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let property = |list: &Value, name: &str| -> Value {
        list["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {list}"))
    };
    for (object, name, ty, read_only, calculated) in [
        ("tickets", "hs_pipeline_stage", "enumeration", false, false),
        ("tickets", "closed_date", "datetime", true, true),
        ("tickets", "createdate", "datetime", true, false),
        ("products", "price", "number", false, false),
        ("line_items", "amount", "number", true, true),
        (
            "line_items",
            "hs_recurring_billing_start_date",
            "date",
            false,
            false,
        ),
        ("quotes", "hs_expiration_date", "date", false, false),
        ("quotes", "hs_esign_enabled", "bool", false, false),
        ("quotes", "hs_createdate", "datetime", true, false),
        ("calls", "hs_timestamp", "datetime", false, false),
        ("emails", "hs_email_direction", "enumeration", false, false),
        ("meetings", "hs_meeting_end_time", "datetime", false, false),
        ("notes", "hs_note_body", "string", false, false),
        ("tasks", "hs_task_completion_date", "datetime", true, true),
        ("tasks", "hs_lastmodifieddate", "datetime", true, false),
    ] {
        let (status, list) = c.get(&format!("/crm/v3/properties/{object}")).await;
        assert_eq!(status, StatusCode::OK);
        let p = property(&list, name);
        assert_eq!(p["type"], ty, "{object}.{name}");
        assert_eq!(p["hubspotDefined"], true, "{object}.{name}");
        assert_eq!(
            p["modificationMetadata"]["readOnlyValue"], read_only,
            "{object}.{name}"
        );
        assert_eq!(p["calculated"], calculated, "{object}.{name}");
    }
    // The owner property lists the portal's owners.
    let (_, list) = c.get("/crm/v3/properties/calls").await;
    let owner = property(&list, "hubspot_owner_id");
    assert_eq!(owner["referencedObjectType"], "OWNER");
    assert_eq!(
        owner["options"].as_array().unwrap().len(),
        sim.hubspot().owner_ids().len()
    );
    // Reads without `properties` return the documented defaults.
    let (_, ticket) = c
        .post(
            "/crm/v3/objects/tickets",
            json!({"properties": {"subject": "Defaults", "hs_pipeline_stage": "1", "source_type": "EMAIL"}}),
        )
        .await;
    let id = ticket["id"].as_str().unwrap();
    let (_, read) = c.get(&format!("/crm/v3/objects/tickets/{id}")).await;
    let keys: Vec<&String> = read["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_pipeline",
            "hs_pipeline_stage",
            "subject"
        ],
        "{read}"
    );
}

#[tokio::test]
async fn required_properties_pipelines_owners_and_calculated_values() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    // Required properties.
    for (object, body, missing) in [
        (
            "tickets",
            json!({"subject": "No stage"}),
            "hs_pipeline_stage",
        ),
        (
            "quotes",
            json!({"hs_title": "No expiry"}),
            "hs_expiration_date",
        ),
        ("notes", json!({"hs_note_body": "No time"}), "hs_timestamp"),
        ("products", json!({"price": "1"}), "name"),
        ("pets", json!({"species": "cat"}), "pet_name"),
    ] {
        let (status, err) = c
            .post(
                &format!("/crm/v3/objects/{object}"),
                json!({"properties": body}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{object}");
        assert_error(&err, "VALIDATION_ERROR");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("REQUIRED_PROPERTY") && message.contains(missing),
            "{message}"
        );
    }
    // A ticket lands in the default pipeline; a stage of another pipeline is refused.
    let (_, ticket) = c
        .post(
            "/crm/v3/objects/tickets",
            json!({"properties": {"subject": "Stuck", "hs_pipeline_stage": "2"}}),
        )
        .await;
    assert_eq!(ticket["properties"]["hs_pipeline"], "0");
    let id = ticket["id"].as_str().unwrap().to_owned();
    let (status, err) = c
        .patch(
            &format!("/crm/v3/objects/tickets/{id}"),
            json!({"properties": {"hs_pipeline_stage": "closedwon"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["message"].as_str().unwrap().contains("INVALID_OPTION"),
        "{err}"
    );
    // Closing the ticket sets its close date; reopening clears it.
    let (_, closed) = c
        .patch(
            &format!("/crm/v3/objects/tickets/{id}"),
            json!({"properties": {"hs_pipeline_stage": "4"}}),
        )
        .await;
    assert!(closed["properties"]["closed_date"].is_string(), "{closed}");
    let (_, reopened) = c
        .patch(
            &format!("/crm/v3/objects/tickets/{id}"),
            json!({"properties": {"hs_pipeline_stage": "3"}}),
        )
        .await;
    assert!(
        reopened["properties"].get("closed_date").is_none(),
        "{reopened}"
    );
    // A line item's net price is calculated and read-only.
    let (_, item) = c
        .post(
            "/crm/v3/objects/line_items",
            json!({"properties": {"name": "Seats", "quantity": "4", "price": "10", "discount": "1"}}),
        )
        .await;
    assert_eq!(item["properties"]["amount"], "36");
    let item_id = item["id"].as_str().unwrap();
    let (_, item) = c
        .patch(
            &format!("/crm/v3/objects/line_items/{item_id}"),
            json!({"properties": {"quantity": "5"}}),
        )
        .await;
    assert_eq!(item["properties"]["amount"], "45");
    let (status, err) = c
        .patch(
            &format!("/crm/v3/objects/line_items/{item_id}"),
            json!({"properties": {"amount": "1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["message"].as_str().unwrap().contains("READ_ONLY_VALUE"),
        "{err}"
    );
    // A completed task gets its completion date; a quote its number and public key.
    let (_, task) = c
        .post(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "2025-03-01T10:00:00Z", "hs_task_status": "COMPLETED"}}),
        )
        .await;
    assert!(
        task["properties"]["hs_task_completion_date"].is_string(),
        "{task}"
    );
    let (_, quote) = c
        .post(
            "/crm/v3/objects/quotes",
            json!({"properties": {"hs_title": "Q", "hs_expiration_date": "2025-12-31"}}),
        )
        .await;
    assert!(
        quote["properties"]["hs_public_url_key"].is_string(),
        "{quote}"
    );
    // Owners: an active owner's id is accepted, an unknown or deactivated one is not.
    let owners = sim.hubspot().owner_ids();
    let (status, _) = c
        .post(
            "/crm/v3/objects/notes",
            json!({"properties": {"hs_timestamp": "2025-03-01T10:00:00Z", "hubspot_owner_id": owners[0]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    sim.hubspot().archive_owner(&owners[0]).unwrap();
    let (status, err) = c
        .post(
            "/crm/v3/objects/notes",
            json!({"properties": {"hs_timestamp": "2025-03-01T10:00:00Z", "hubspot_owner_id": owners[0]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("INVALID_OPTION"),
        "{err}"
    );
}

#[tokio::test]
async fn owners_page_filter_and_archive() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let hs = sim.hubspot();
    for i in 0..4 {
        hs.create_owner(&format!("user{i}@example.com"), "User", &i.to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/crm/v3/owners?limit=3".to_owned();
    loop {
        let (status, page) = c.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(ids(&page["results"]));
        match page["paging"]["next"]["after"].as_str() {
            Some(after) => path = format!("/crm/v3/owners?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "three starting owners and four invited");
    let (_, by_email) = c.get("/crm/v3/owners?email=user2@example.com").await;
    assert_eq!(by_email["results"][0]["lastName"], "2");
    let gone = seen[3].clone();
    hs.archive_owner(&gone).unwrap();
    let (_, live) = c.get("/crm/v3/owners").await;
    assert!(!ids(&live["results"]).contains(&gone));
    let (_, archived) = c.get("/crm/v3/owners?archived=true").await;
    assert_eq!(ids(&archived["results"]), std::slice::from_ref(&gone));
    assert!(archived["results"][0].get("userId").is_none());
    let (status, _) = c.get(&format!("/crm/v3/owners/{gone}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, owner) = c.get(&format!("/crm/v3/owners/{gone}?archived=true")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(owner["archived"], true);
}

#[tokio::test]
async fn pipelines_and_stages_change_and_their_options_follow() {
    let sim = sim(0).await;
    let c = Client::new(&sim);
    let (_, deals) = c.get("/crm/v3/pipelines/deals").await;
    assert_eq!(deals["results"][0]["id"], "default");
    assert_eq!(deals["results"][0]["createdAt"], "1970-01-01T00:00:00.000Z");
    assert_eq!(deals["results"][0]["stages"].as_array().unwrap().len(), 7);
    let (status, err) = c
        .post(
            "/crm/v3/pipelines/deals",
            json!({"label": "Renewals", "displayOrder": 1, "stages": [{"label": "Up", "displayOrder": 0, "metadata": {}}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "deal stages need a probability"
    );
    assert_error(&err, "VALIDATION_ERROR");
    let (status, created) = c
        .post(
            "/crm/v3/pipelines/deals",
            json!({"label": "Renewals", "displayOrder": 1, "stages": [
                {"label": "Up for renewal", "displayOrder": 0, "metadata": {"probability": "0.5"}},
                {"label": "Renewed", "displayOrder": 1, "metadata": {"probability": "1.0"}}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let pipeline = created["id"].as_str().unwrap().to_owned();
    let stage = created["stages"][0]["id"].as_str().unwrap().to_owned();
    // Deals take the new pipeline and its stages, and no other pipeline's.
    let (status, deal) = c
        .post(
            "/crm/v3/objects/deals",
            json!({"properties": {"dealname": "Renewal", "pipeline": pipeline, "dealstage": stage}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{deal}");
    let (status, _) = c
        .post(
            "/crm/v3/objects/deals",
            json!({"properties": {"dealname": "Mixed", "pipeline": pipeline, "dealstage": "closedwon"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, duplicate) = c
        .post(
            "/crm/v3/pipelines/deals",
            json!({"label": "Renewals", "displayOrder": 2, "stages": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{duplicate}");
    let (status, renamed) = c
        .patch(
            &format!("/crm/v3/pipelines/deals/{pipeline}"),
            json!({"label": "Renewals 2025"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["label"], "Renewals 2025");
    let (status, added) = c
        .post(
            &format!("/crm/v3/pipelines/deals/{pipeline}/stages"),
            json!({"label": "Churned", "displayOrder": 2, "metadata": {"probability": "0.0"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, stages) = c
        .get(&format!("/crm/v3/pipelines/deals/{pipeline}/stages"))
        .await;
    assert_eq!(stages["results"].as_array().unwrap().len(), 3);
    let (_, properties) = c.get("/crm/v3/properties/deals/dealstage").await;
    assert!(
        properties["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == added["id"]),
        "dealstage options follow the stages"
    );
    let (status, _) = c
        .delete(&format!("/crm/v3/pipelines/deals/{pipeline}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, deals) = c.get("/crm/v3/pipelines/deals").await;
    assert_eq!(deals["results"].as_array().unwrap().len(), 1);
    let (status, _) = c.get(&format!("/crm/v3/pipelines/deals/{pipeline}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn custom_objects_are_defined_by_schemas_and_served_like_standard_ones() {
    let sim = sim(5).await;
    let c = Client::new(&sim);
    let (status, list) = c.get("/crm/v3/schemas").await;
    assert_eq!(status, StatusCode::OK);
    let pets = &list["results"][0];
    assert_eq!(pets["name"], "pets");
    assert_eq!(
        pets["fullyQualifiedName"],
        format!("p{}_pets", sequin_sim::hubspot::PORTAL_ID)
    );
    let pets_id = pets["objectTypeId"].as_str().unwrap().to_owned();
    assert!(pets_id.starts_with("2-"), "{pets_id}");
    let names: Vec<&str> = pets["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "pet_name",
        "species",
        "age",
        "hs_object_id",
        "hs_lastmodifieddate",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // The same records by type id, name and fully qualified name.
    let fqn = pets["fullyQualifiedName"].as_str().unwrap().to_owned();
    let mut pages = Vec::new();
    for name in [pets_id.as_str(), "pets", fqn.as_str()] {
        let (status, page) = c.get(&format!("/crm/v3/objects/{name}?limit=100")).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        pages.push(ids(&page["results"]));
    }
    assert_eq!(pages[0].len(), 5);
    assert!(pages.iter().all(|p| p == &pages[0]));
    // A new schema is an object type at once.
    let (status, created) = c
        .post(
            "/crm-object-schemas/v3/schemas",
            json!({"name": "boats", "labels": {"singular": "Boat", "plural": "Boats"},
                   "primaryDisplayProperty": "boat_name", "requiredProperties": ["boat_name"],
                   "properties": [{"name": "boat_name", "label": "Name", "type": "string", "fieldType": "text"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let boats = created["objectTypeId"].as_str().unwrap();
    let (status, boat) = c
        .post(
            &format!("/crm/v3/objects/{boats}"),
            json!({"properties": {"boat_name": "Bucintoro"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{boat}");
    assert!(boat["properties"]["hs_createdate"].is_string(), "{boat}");
    let (_, read) = c
        .get(&format!(
            "/crm/v3/objects/boats/{}",
            boat["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        read["properties"]["boat_name"], "Bucintoro",
        "the primary display property is a default"
    );
    let (_, schema) = c.get(&format!("/crm/v3/schemas/{boats}")).await;
    assert_eq!(schema["name"], "boats");
    // Names are unique; unknown types are refused as HubSpot does.
    let (status, err) = c
        .post(
            "/crm/v3/schemas",
            json!({"name": "boats", "labels": {"singular": "B", "plural": "Bs"}, "requiredProperties": [], "properties": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "OBJECT_ALREADY_EXISTS");
    let (status, err) = c.get("/crm/v3/objects/2-999?limit=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "VALIDATION_ERROR");
    // Custom properties on a custom object show in its schema.
    let (status, _) = c
        .post(
            "/crm/v3/properties/boats",
            json!({"name": "home_port", "label": "Home port", "type": "string", "fieldType": "text", "groupName": "boats_information"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, schema) = c.get("/crm/v3/schemas/boats").await;
    assert!(
        schema["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "home_port")
    );
}

#[tokio::test]
async fn associations_link_both_ways_with_labels_and_leave_records_unmodified() {
    let sim = sim(3).await;
    let c = Client::new(&sim);
    let first = |v: &Value| v["results"][0]["id"].as_str().unwrap().to_owned();
    let (_, contacts) = c.get("/crm/v3/objects/contacts?limit=3").await;
    let (_, companies) = c.get("/crm/v3/objects/companies?limit=3").await;
    let (_, deals) = c.get("/crm/v3/objects/deals?limit=3").await;
    let (contact, company, deal) = (first(&contacts), first(&companies), first(&deals));
    // Seeded: contact 0 with company 0, unlabeled and primary; the same link seen from the company.
    let (_, linked) = c
        .get(&format!(
            "/crm/v4/objects/contacts/{contact}/associations/companies"
        ))
        .await;
    assert_eq!(linked["results"][0]["toObjectId"], company.as_str());
    let types: Vec<&Value> = linked["results"][0]["associationTypes"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(types.len(), 2, "{linked}");
    assert!(
        types
            .iter()
            .any(|t| t["typeId"] == 1 && t["label"] == "Primary")
    );
    let (_, back) = c
        .get(&format!(
            "/crm/v4/objects/companies/{company}/associations/contacts"
        ))
        .await;
    let back_ids: Vec<i64> = back["results"][0]["associationTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["typeId"].as_i64().unwrap())
        .collect();
    assert_eq!(back_ids, [2, 280], "the inverse types");

    // A user-defined label, used on a deal-contact link; the deal's modified time stays.
    let (_, before) = c.get(&format!("/crm/v3/objects/deals/{deal}")).await;
    let (status, created) = c
        .post(
            "/crm/associations/v4/deals/contacts/labels",
            json!({"label": "Decision maker", "name": "decision_maker"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let label_id = created["results"][0]["typeId"].as_u64().unwrap();
    let (_, other_contacts) = c.get("/crm/v3/objects/contacts?limit=3").await;
    let second_contact = other_contacts["results"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = c
        .send(
            c.http
                .put(format!("{}/crm/v4/objects/deals/{deal}/associations/contacts/{second_contact}", c.base))
                .json(&json!([{"associationCategory": "USER_DEFINED", "associationTypeId": label_id}])),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["labels"], json!(["Decision maker"]));
    let (_, after) = c.get(&format!("/crm/v3/objects/deals/{deal}")).await;
    assert_eq!(
        after["properties"]["hs_lastmodifieddate"], before["properties"]["hs_lastmodifieddate"],
        "an association change does not modify the record"
    );
    assert_eq!(after["updatedAt"], before["updatedAt"]);
    // A type the pair does not have is refused.
    let (status, err) = c
        .post(
            "/crm/v4/associations/deals/contacts/batch/create",
            json!({"inputs": [{"from": {"id": deal}, "to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "VALIDATION_ERROR");
    // Removing one label keeps the others; archiving removes the link both ways.
    let (status, _) = c
        .post(
            "/crm/v4/associations/contacts/companies/batch/labels/archive",
            json!({"inputs": [{"from": {"id": contact}, "to": {"id": company}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, linked) = c
        .get(&format!(
            "/crm/v4/objects/contacts/{contact}/associations/companies"
        ))
        .await;
    assert_eq!(
        linked["results"][0]["associationTypes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, _) = c
        .post(
            "/crm/v4/associations/contacts/companies/batch/archive",
            json!({"inputs": [{"from": {"id": contact}, "to": [{"id": company}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, back) = c
        .get(&format!(
            "/crm/v4/objects/companies/{company}/associations/contacts"
        ))
        .await;
    assert_eq!(back["results"], json!([]));
    // Archiving a record drops its links.
    c.delete(&format!("/crm/v3/objects/contacts/{second_contact}"))
        .await;
    let (_, left) = c
        .get(&format!(
            "/crm/v4/objects/deals/{deal}/associations/contacts"
        ))
        .await;
    assert!(
        !left["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["toObjectId"] == second_contact.as_str()),
        "{left}"
    );
    // A custom object's pair comes from its schema.
    let (_, pets) = c.get("/crm/v3/objects/pets?limit=1").await;
    let pet = first(&pets);
    let (_, owner) = c
        .get(&format!("/crm/v4/objects/pets/{pet}/associations/contacts"))
        .await;
    assert_eq!(
        owner["results"][0]["associationTypes"][0]["category"],
        "USER_DEFINED"
    );
}
