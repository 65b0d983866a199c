//! The Airtable simulator over real HTTP: base schemas, list paging over 10k records with
//! `offset` iterators, `filterByFormula` for incremental sync, field selection and sorting,
//! typed cells with `typecast`, batch and single-record writes, errors, and the per-base
//! rate limit with its post-breach wait.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use sequin_sim::airtable::DEMO_BASE_ID as BASE;
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::{Value, json};

async fn sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Airtable)
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
        let body =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"));
        (status, body)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    async fn write(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .json(&body),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.write(reqwest::Method::POST, path, body).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.write(reqwest::Method::PATCH, path, body).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.write(reqwest::Method::PUT, path, body).await
    }

    async fn delete(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.send(
            self.http
                .delete(format!("{}{path}", self.base))
                .query(query),
        )
        .await
    }

    /// Every record of a listing, following `offset`.
    async fn list_all(&self, table: &str, query: &[(&str, &str)]) -> Vec<Value> {
        let mut records = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> = query.to_vec();
            if let Some(offset) = &offset {
                params.push(("offset", offset));
            }
            let (status, page) = self.get(&format!("/v0/{BASE}/{table}"), &params).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            records.extend(page["records"].as_array().unwrap().iter().cloned());
            match page.get("offset").and_then(Value::as_str) {
                Some(next) => offset = Some(next.to_owned()),
                None => return records,
            }
        }
    }
}

fn assert_error(body: &Value, error_type: &str) {
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

fn is_airtable_id(id: &str, prefix: &str) -> bool {
    id.len() == 17 && id.starts_with(prefix) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[tokio::test]
async fn base_schema() {
    let sim = sim(0).await;
    let client = Client::new(&sim);
    let (status, body) = client.get("/v0/meta/bases", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["bases"][0]["id"], BASE);

    let (status, body) = client
        .get(&format!("/v0/meta/bases/{BASE}/tables"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let tables = body["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Contacts", "Deals", "Projects"]);
    let mut types = HashSet::new();
    for table in tables {
        assert!(
            is_airtable_id(table["id"].as_str().unwrap(), "tbl"),
            "{table}"
        );
        let fields = table["fields"].as_array().unwrap();
        assert_eq!(table["primaryFieldId"], fields[0]["id"]);
        for field in fields {
            assert!(
                is_airtable_id(field["id"].as_str().unwrap(), "fld"),
                "{field}"
            );
            types.insert(field["type"].as_str().unwrap().to_owned());
        }
    }
    for expected in [
        "singleLineText",
        "email",
        "phoneNumber",
        "singleSelect",
        "multipleSelects",
        "multilineText",
        "checkbox",
        "currency",
        "percent",
        "number",
        "date",
        "dateTime",
        "url",
        "createdTime",
        "lastModifiedTime",
    ] {
        assert!(types.contains(expected), "{expected} in {types:?}");
    }
    let status_field = tables[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Status")
        .unwrap();
    let choices: Vec<&str> = status_field["options"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(choices, ["Lead", "Customer", "Churned"]);

    let (status, body) = client
        .get("/v0/meta/bases/appNope0000000000/tables", &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "NOT_FOUND");
}

#[tokio::test]
async fn lists_ten_thousand_records_with_offsets() {
    let sim = sim(10_000).await;
    let client = Client::new(&sim);
    let (_, first) = client.get(&format!("/v0/{BASE}/Contacts"), &[]).await;
    assert_eq!(
        first["records"].as_array().unwrap().len(),
        100,
        "default pageSize is 100"
    );
    let offset = first["offset"].as_str().unwrap();
    let (iterator, record) = offset.split_once('/').unwrap();
    assert!(
        is_airtable_id(iterator, "itr") && is_airtable_id(record, "rec"),
        "{offset}"
    );
    let sample = &first["records"][0];
    assert!(is_airtable_id(sample["id"].as_str().unwrap(), "rec"));
    assert!(sample["createdTime"].as_str().unwrap().ends_with('Z'));
    assert!(sample["fields"]["Name"].is_string());

    let records = client.list_all("Contacts", &[("pageSize", "100")]).await;
    assert_eq!(records.len(), 10_000);
    let ids: HashSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000, "no duplicates");
    let created: Vec<&str> = records
        .iter()
        .map(|r| r["createdTime"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "creation order");

    // Records deleted mid-iteration just disappear; records created after it started are not
    // part of it.
    let (_, first) = client
        .get(&format!("/v0/{BASE}/Deals"), &[("pageSize", "50")])
        .await;
    let later_id = client.list_all("Deals", &[("maxRecords", "60")]).await[55]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.airtable().delete(BASE, "Deals", &later_id).unwrap();
    sim.airtable()
        .create(BASE, "Deals", json!({"Name": "Late"}))
        .unwrap();
    let (_, second) = client
        .get(
            &format!("/v0/{BASE}/Deals"),
            &[
                ("pageSize", "50"),
                ("offset", first["offset"].as_str().unwrap()),
            ],
        )
        .await;
    let second_ids: Vec<&str> = second["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(second_ids.len(), 49);
    assert!(!second_ids.contains(&later_id.as_str()));

    let (status, body) = client
        .get(
            &format!("/v0/{BASE}/Contacts"),
            &[("offset", "itrNope000000000/recNope000000000")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE");
}

#[tokio::test]
async fn formulas_select_recent_changes() {
    let sim = sim(500).await;
    let client = Client::new(&sim);
    let at = sim.airtable();
    let all = client.list_all("Contacts", &[]).await;
    let checkpoint = all
        .iter()
        .map(|r| r["fields"]["Last Modified"].as_str().unwrap())
        .max()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let changed = [
        all[3]["id"].as_str().unwrap(),
        all[400]["id"].as_str().unwrap(),
    ];
    for id in changed {
        at.update(
            BASE,
            "Contacts",
            id,
            json!({"Notes": "edited behind the client's back"}),
        )
        .unwrap();
    }
    let new_id = at
        .create(BASE, "Contacts", json!({"Name": "Newcomer"}))
        .unwrap();

    for formula in [
        format!("IS_AFTER(LAST_MODIFIED_TIME(), '{checkpoint}')"),
        format!("LAST_MODIFIED_TIME() > '{checkpoint}'"),
        format!("IS_AFTER({{Last Modified}}, DATETIME_PARSE('{checkpoint}'))"),
    ] {
        let records = client
            .list_all("Contacts", &[("filterByFormula", formula.as_str())])
            .await;
        let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [changed[0], changed[1], new_id.as_str()], "{formula}");
    }
    // An update that changes nothing does not bump the modified time.
    at.update(
        BASE,
        "Contacts",
        changed[0],
        json!({"Notes": "edited behind the client's back"}),
    )
    .unwrap();
    let after_noop = at.get(BASE, "Contacts", changed[0]).unwrap();
    let again = client
        .list_all(
            "Contacts",
            &[(
                "filterByFormula",
                &format!(
                    "LAST_MODIFIED_TIME() > '{}'",
                    after_noop["fields"]["Last Modified"].as_str().unwrap()
                ),
            )],
        )
        .await;
    assert!(again.iter().all(|r| r["id"] != changed[0]));

    let customers = client
        .list_all(
            "Contacts",
            &[("filterByFormula", "AND({Status} = 'Customer', Subscribed)")],
        )
        .await;
    assert!(!customers.is_empty());
    assert!(
        customers
            .iter()
            .all(|r| r["fields"]["Status"] == "Customer" && r["fields"]["Subscribed"] == true)
    );

    for bad in ["IS_AFTER(LAST_MODIFIED_TIME(", "{Nope} = 1", "NOPE()"] {
        let (status, body) = client
            .get(&format!("/v0/{BASE}/Contacts"), &[("filterByFormula", bad)])
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_error(&body, "INVALID_FILTER_BY_FORMULA");
    }
}

#[tokio::test]
async fn field_selection_sorting_and_field_ids() {
    let sim = sim(30).await;
    let client = Client::new(&sim);
    let (_, body) = client
        .get(
            &format!("/v0/{BASE}/Deals"),
            &[
                ("fields[]", "Name"),
                ("fields[]", "Amount"),
                ("sort[0][field]", "Amount"),
                ("sort[0][direction]", "desc"),
                ("sort[1][field]", "Name"),
                ("maxRecords", "10"),
            ],
        )
        .await;
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 10);
    assert!(body.get("offset").is_none());
    let amounts: Vec<f64> = records
        .iter()
        .map(|r| r["fields"]["Amount"].as_f64().unwrap())
        .collect();
    assert!(amounts.windows(2).all(|w| w[0] >= w[1]), "{amounts:?}");
    for record in records {
        let keys: HashSet<&str> = record["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, HashSet::from(["Name", "Amount"]));
    }

    let (_, schema) = client
        .get(&format!("/v0/meta/bases/{BASE}/tables"), &[])
        .await;
    let deals = &schema["tables"][1];
    let amount_id = deals["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Amount")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = client
        .get(
            &format!("/v0/{BASE}/{}", deals["id"].as_str().unwrap()),
            &[
                ("fields[]", amount_id.as_str()),
                ("returnFieldsByFieldId", "true"),
                ("pageSize", "1"),
            ],
        )
        .await;
    assert!(
        body["records"][0]["fields"][amount_id.as_str()].is_number(),
        "{body}"
    );

    let (status, body) = client
        .get(&format!("/v0/{BASE}/Deals"), &[("fields[]", "Nope")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "UNKNOWN_FIELD_NAME");
    let (status, body) = client.get(&format!("/v0/{BASE}/Nope"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "NOT_FOUND");

    // The POST listRecords form takes the same parameters in a body.
    let (status, body) = client
        .post(&format!("/v0/{BASE}/Deals/listRecords"), json!({"pageSize": 5, "fields": ["Name"], "sort": [{"field": "Name", "direction": "asc"}]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"].as_array().unwrap().len(), 5);
    assert!(body["offset"].is_string());
}

#[tokio::test]
async fn writes_validation_and_typecast() {
    let sim = sim(0).await;
    let client = Client::new(&sim);
    let deals = format!("/v0/{BASE}/Deals");

    let (status, body) = client
        .post(&deals, json!({"records": [{"fields": {"Name": "Big", "Amount": 12, "Stage": "Won", "Close Date": "2025-03-01"}}, {"fields": {"Name": "Empty"}}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = body["records"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["fields"]["Amount"], 12);
    assert!(
        created[1]["fields"].get("Amount").is_none(),
        "empty fields are omitted"
    );
    assert!(
        created[1]["fields"]["Last Modified"].is_string(),
        "computed fields are present"
    );
    let big = created[0]["id"].as_str().unwrap().to_owned();

    let (status, body) = client
        .post(
            &deals,
            json!({"fields": {"Name": "Text amount", "Amount": "12"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"error": {"type": "INVALID_VALUE_FOR_COLUMN", "message": "Field \"Amount\" cannot accept the provided value"}})
    );
    let (status, body) = client
        .post(&deals, json!({"fields": {"Name": "Typecast", "Amount": "12", "Stage": "Stalled"}, "typecast": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["fields"]["Amount"], 12.0,
        "a single record in, a single record out"
    );
    assert_eq!(body["fields"]["Stage"], "Stalled");
    let (_, schema) = client
        .get(&format!("/v0/meta/bases/{BASE}/tables"), &[])
        .await;
    let stage = schema["tables"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Stage")
        .unwrap()
        .clone();
    assert!(
        stage["options"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Stalled"),
        "typecast creates select options"
    );
    let (status, body) = client
        .post(&deals, json!({"fields": {"Stage": "Imaginary"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "INVALID_MULTIPLE_CHOICE_OPTIONS");
    let (status, body) = client
        .post(&deals, json!({"fields": {"Colour": "red"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["type"], "UNKNOWN_FIELD_NAME");
    assert_eq!(body["error"]["message"], "Unknown field name: \"Colour\"");
    let (status, body) = client
        .post(
            &deals,
            json!({"fields": {"Last Modified": "2024-01-01T00:00:00.000Z"}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["type"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("INVALID_VALUE_FOR_COLUMN")
        )
    );
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"fields": {"Name": format!("N{i}")}}))
        .collect();
    let (status, _) = client.post(&deals, json!({"records": eleven})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        sim.airtable().count(BASE, "Deals"),
        3,
        "rejected requests create nothing"
    );

    // PATCH is partial, PUT replaces every writable cell.
    let (status, body) = client
        .patch(
            &format!("{deals}/{big}"),
            json!({"fields": {"Probability": 0.5}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["fields"]["Name"], "Big");
    assert_eq!(body["fields"]["Probability"], 0.5);
    let (status, body) = client
        .put(
            &deals,
            json!({"records": [{"id": big, "fields": {"Name": "Replaced"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fields = body["records"][0]["fields"].as_object().unwrap();
    assert_eq!(fields["Name"], "Replaced");
    assert!(!fields.contains_key("Amount") && !fields.contains_key("Probability"));
    let (status, body) = client.patch(&deals, json!({"records": [{"id": big, "fields": {"Amount": 1}}, {"id": "recNope0000000000", "fields": {}}]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "MODEL_ID_NOT_FOUND");
    assert!(
        sim.airtable().get(BASE, "Deals", &big).unwrap()["fields"]
            .get("Amount")
            .is_none(),
        "all or nothing"
    );

    // Checkbox false is an empty cell.
    let (_, project) = client
        .post(
            &format!("/v0/{BASE}/Projects"),
            json!({"fields": {"Name": "P", "Done": false, "Tags": ["client"]}}),
        )
        .await;
    assert!(project["fields"].get("Done").is_none());
    assert_eq!(project["fields"]["Tags"], json!(["client"]));

    // Deletes: by query list and single.
    let ids: Vec<String> = client
        .list_all("Deals", &[])
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let (status, body) = client
        .delete(
            &deals,
            &[
                ("records[]", ids[0].as_str()),
                ("records[]", ids[1].as_str()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"records": [{"id": ids[0], "deleted": true}, {"id": ids[1], "deleted": true}]})
    );
    let (status, body) = client.delete(&format!("{deals}/{}", ids[2]), &[]).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"id": ids[2], "deleted": true}))
    );
    let (status, body) = client.get(&format!("{deals}/{}", ids[2]), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "MODEL_ID_NOT_FOUND");

    // A field added through the meta API is writable at once.
    let (status, field) = client
        .post(&format!("/v0/meta/bases/{BASE}/tables/Deals/fields"), json!({"name": "Region", "type": "singleSelect", "options": {"choices": [{"name": "EMEA"}]}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{field}");
    assert!(is_airtable_id(field["id"].as_str().unwrap(), "fld"));
    let (status, body) = client
        .post(
            &deals,
            json!({"fields": {"Name": "Regional", "Region": "EMEA"}}),
        )
        .await;
    assert_eq!(
        (status, &body["fields"]["Region"]),
        (StatusCode::OK, &json!("EMEA"))
    );
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sim/airtable/{BASE}/Deals/fields",
            sim.base_url()
        ))
        .json(&json!({"name": "Owner", "type": "singleLineText"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, body) = client
        .post(&deals, json!({"fields": {"Owner": "Ada"}}))
        .await;
    assert_eq!(body["fields"]["Owner"], "Ada");
    let added = sim
        .airtable()
        .add_field(BASE, "Deals", json!({"name": "Score", "type": "number"}))
        .unwrap();
    assert_eq!(added["type"], "number");

    let response = reqwest::Client::new()
        .get(format!("{}{deals}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}})
    );
}

#[tokio::test]
async fn rate_limit_per_base_with_a_wait() {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Airtable).seed_records(2),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.airtable()
        .set_rate_limit_wait(Duration::from_millis(2000));
    let client = Client::new(&sim);
    let path = format!("/v0/{BASE}/Contacts");
    // Six requests at once: five pass, one breaches the limit.
    let requests = (0..6).map(|_| {
        client
            .http
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth(sim.token())
            .send()
    });
    let mut responses: Vec<reqwest::Response> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    responses.sort_by_key(reqwest::Response::status);
    let statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
    assert_eq!(
        statuses[..5],
        [StatusCode::OK; 5],
        "5 requests per second per base"
    );
    let limited = responses.pop().unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "2", "the configured wait");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": [{"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}]})
    );
    // After a breach the base stays blocked for the whole wait, though the window has moved on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client.get(&path, &[]).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The meta API is another bucket.
    assert_eq!(client.get("/v0/meta/bases", &[]).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(client.get(&path, &[]).await.0, StatusCode::OK);
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.rate_keys[BASE].max_admitted_in_window, 5);
}

#[tokio::test]
async fn control_routes_change_records_behind_the_clients_back() {
    let sim = sim(1).await;
    let client = Client::new(&sim);
    let http = reqwest::Client::new();
    let control = format!("{}/_sim/airtable/{BASE}/Contacts", sim.base_url());
    let response = http
        .post(&control)
        .json(&json!({"Name": "Backdoor", "Status": "Lead"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, before) = client.get(&format!("/v0/{BASE}/Contacts/{id}"), &[]).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let response = http
        .patch(format!("{control}/{id}"))
        .json(&json!({"Status": "Customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, after) = client.get(&format!("/v0/{BASE}/Contacts/{id}"), &[]).await;
    assert_eq!(after["fields"]["Status"], "Customer");
    assert!(
        after["fields"]["Last Modified"].as_str() > before["fields"]["Last Modified"].as_str(),
        "{before} -> {after}"
    );
    let response = http.delete(format!("{control}/{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = client.get(&format!("/v0/{BASE}/Contacts/{id}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
