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
