//! The Salesforce simulator over real HTTP: OAuth refresh/expiry/rotation, sObject CRUD and its
//! error arrays, describe with custom fields, SOQL query/queryAll with 2000-record cursor pages,
//! incremental `SystemModstamp` queries, sObject Collections with `allOrNone`, rate limiting.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use sequin_sim::salesforce::{CLIENT_ID, CLIENT_SECRET, FieldType};
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::{Value, json};

const V: &str = "/services/data/v59.0";

async fn sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Salesforce)
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

    fn with_token(&self, token: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
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

    async fn query(&self, soql: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .get(format!("{}{V}/query", self.base))
                .query(&[("q", soql)]),
        )
        .await
    }

    async fn query_all(&self, soql: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .get(format!("{}{V}/queryAll", self.base))
                .query(&[("q", soql)]),
        )
        .await
    }

    /// Every record of a query, following `nextRecordsUrl`; asserts page sizes and `totalSize`.
    async fn query_every_page(&self, soql: &str, page_size: usize) -> Vec<Value> {
        let (status, mut page) = self.query(soql).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let total = page["totalSize"].as_u64().unwrap() as usize;
        let mut records = Vec::new();
        loop {
            let batch = page["records"].as_array().unwrap();
            let done = page["done"].as_bool().unwrap();
            if !done {
                assert_eq!(batch.len(), page_size, "full pages until the last");
            }
            records.extend(batch.iter().cloned());
            if done {
                assert!(page.get("nextRecordsUrl").is_none());
                break;
            }
            let next = page["nextRecordsUrl"].as_str().unwrap().to_owned();
            assert!(next.starts_with(&format!("{V}/query/")), "{next}");
            let (status, body) = self.get(&next).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["totalSize"], total);
            page = body;
        }
        assert_eq!(records.len(), total);
        records
    }
}

fn single_error(body: &Value) -> &Value {
    let errors = body
        .as_array()
        .unwrap_or_else(|| panic!("errors are an array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    &errors[0]
}

/// Independent implementation of the 18-character id checksum, from Salesforce's docs.
fn expected_suffix(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    (0..3)
        .map(|chunk| {
            let mut flags = 0;
            for (bit, c) in id15[chunk * 5..chunk * 5 + 5].chars().enumerate() {
                if c.is_ascii_uppercase() {
                    flags += 1 << bit;
                }
            }
            ALPHABET[flags] as char
        })
        .collect()
}

async fn token_request(client: &Client, refresh_token: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", refresh_token),
    ];
    let response = client
        .http
        .post(format!("{}/services/oauth2/token", client.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn oauth_refresh_expiry_and_rotation() {
    let sim = sim(3).await;
    let client = Client::new(&sim);
    let sf = sim.salesforce();

    let response = client
        .http
        .post(format!("{}/services/oauth2/token", client.base))
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"], "unsupported_grant_type",
        "a JSON body is not a form"
    );

    let (status, body) = token_request(&client, "not-a-refresh-token").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "expired access/refresh token"})
    );

    let (status, body) = token_request(&client, &sf.refresh_token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["instance_url"], sim.base_url());
    for key in ["access_token", "id", "issued_at", "signature"] {
        assert!(
            body[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {body}"
        );
    }
    assert!(
        body.get("refresh_token").is_none(),
        "no rotation by default"
    );
    let access = client.with_token(body["access_token"].as_str().unwrap());
    assert_eq!(
        access
            .get(&format!("{V}/sobjects/Account/describe"))
            .await
            .0,
        StatusCode::OK
    );

    // Expired sessions answer 401 INVALID_SESSION_ID; a refresh brings the client back.
    sf.expire_access_tokens();
    let (status, body) = access.get(&format!("{V}/sobjects/Account/describe")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let (status, _) = client.with_token("").get(&format!("{V}/sobjects")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Tokens expire on their own after the configured lifetime.
    sf.set_access_token_ttl(Duration::from_millis(300));
    let (_, body) = token_request(&client, &sf.refresh_token()).await;
    let short = client.with_token(body["access_token"].as_str().unwrap());
    assert_eq!(short.get(&format!("{V}/sobjects")).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        short.get(&format!("{V}/sobjects")).await.0,
        StatusCode::UNAUTHORIZED
    );

    // With rotation, each refresh returns a new refresh token and revokes the one used.
    sf.set_access_token_ttl(Duration::from_secs(60));
    sf.set_rotate_refresh_tokens(true);
    let (status, body) = token_request(&client, &sf.refresh_token()).await;
    assert_eq!(status, StatusCode::OK);
    let rotated = body["refresh_token"]
        .as_str()
        .expect("rotated refresh token")
        .to_owned();
    assert_ne!(rotated, sf.refresh_token());
    let (status, body) = token_request(&client, &sf.refresh_token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = token_request(&client, &rotated).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(body["refresh_token"], rotated);
    let (status, body) = token_request(&client, &rotated).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
}

#[tokio::test]
async fn crud_ids_and_error_arrays() {
    let sim = sim(2).await;
    let client = Client::new(&sim);

    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Contact"),
            json!({"FirstName": "Andrea", "LastName": "Palladio", "Email": "andrea@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["errors"], json!([]));
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("003"));
    assert_eq!(id[15..], expected_suffix(&id[..15]));

    let (status, record) = client.get(&format!("{V}/sobjects/Contact/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["attributes"]["type"], "Contact");
    assert_eq!(
        record["attributes"]["url"],
        format!("{V}/sobjects/Contact/{id}")
    );
    assert_eq!(record["Name"], "Andrea Palladio");
    assert_eq!(record["IsDeleted"], false);
    let created_stamp = record["SystemModstamp"].as_str().unwrap().to_owned();
    assert!(created_stamp.ends_with("+0000"), "{created_stamp}");
    // `?fields=` narrows the record; unknown fields are refused.
    let (_, narrow) = client
        .get(&format!("{V}/sobjects/Contact/{id}?fields=email,LastName"))
        .await;
    assert_eq!(narrow.as_object().unwrap().len(), 3, "{narrow}");
    assert_eq!(narrow["Email"], "andrea@example.com");
    let (status, body) = client
        .get(&format!("{V}/sobjects/Contact/{id}?fields=Nope"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["errorCode"], "INVALID_FIELD");
    // A 15-character id addresses the same record.
    assert_eq!(
        client
            .get(&format!("{V}/sobjects/Contact/{}", &id[..15]))
            .await
            .1["Id"],
        id
    );

    let (status, body) = client
        .patch(
            &format!("{V}/sobjects/Contact/{id}"),
            json!({"Title": "Architect"}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (_, record) = client.get(&format!("{V}/sobjects/Contact/{id}")).await;
    assert_eq!(record["Title"], "Architect");
    assert!(record["SystemModstamp"].as_str().unwrap() > created_stamp.as_str());
    assert_eq!(record["LastModifiedDate"], record["SystemModstamp"]);

    let cases = [
        (
            json!({"LastName": "P", "Email": "andrea__invalid"}),
            json!({"message": "Email: invalid email address: andrea__invalid", "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]}),
        ),
        (
            json!({"FirstName": "Andrea"}),
            json!({"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}),
        ),
        (
            json!({"LastName": "x".repeat(81)}),
            json!({"message": format!("Last Name: data value too large: {} (max length=80)", "x".repeat(81)), "errorCode": "STRING_TOO_LONG", "fields": ["LastName"]}),
        ),
        (
            json!({"LastName": "P", "Name": "Full Name"}),
            json!({"message": "Unable to create/update fields: Name. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE", "fields": ["Name"]}),
        ),
        (
            json!({"LastName": "P", "Shoe_Size__c": 42}),
            json!({"message": "No such column 'Shoe_Size__c' on sobject of type Contact", "errorCode": "INVALID_FIELD"}),
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = client
            .post(&format!("{V}/sobjects/Contact"), input.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert_eq!(single_error(&body), &expected, "{input}");
    }
    let (status, body) = client
        .patch(
            &format!("{V}/sobjects/Contact/{id}"),
            json!({"Email": "still bad"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["errorCode"], "INVALID_EMAIL_ADDRESS");
    let (status, body) = client.post(&format!("{V}/sobjects/Opportunity"), json!({"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2025-01-01", "Amount": "lots"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["errorCode"], "JSON_PARSER_ERROR");

    assert_eq!(
        client.delete(&format!("{V}/sobjects/Contact/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = client.get(&format!("{V}/sobjects/Contact/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(single_error(&body)["errorCode"], "NOT_FOUND");
    let (status, body) = client.delete(&format!("{V}/sobjects/Contact/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        single_error(&body),
        &json!({"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED"})
    );
    let (status, body) = client
        .patch(&format!("{V}/sobjects/Contact/{id}"), json!({"Title": "x"}))
        .await;
    assert_eq!(
        (status, &single_error(&body)["errorCode"]),
        (StatusCode::NOT_FOUND, &json!("ENTITY_IS_DELETED"))
    );
    let (status, _) = client
        .get(&format!("{V}/sobjects/Contact/003000000000000AAA"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = client.get("/services/data/v5x/sobjects").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "malformed versions are not served"
    );
    let (status, _) = client
        .get("/services/data/v45.0/sobjects/Lead/describe")
        .await;
    assert_eq!(status, StatusCode::OK, "any vXX.X is served");
}

#[tokio::test]
async fn describe_and_custom_fields() {
    let sim = sim(2).await;
    let client = Client::new(&sim);
    let (status, global) = client.get(&format!("{V}/sobjects")).await;
    assert_eq!(status, StatusCode::OK);
    let prefixes: Vec<(String, String)> = global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_owned(),
                o["keyPrefix"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("Account", "001"),
        ("Contact", "003"),
        ("Lead", "00Q"),
        ("Opportunity", "006"),
    ] {
        assert!(
            prefixes.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{prefixes:?}"
        );
    }

    let (_, describe) = client.get(&format!("{V}/sobjects/Contact/describe")).await;
    let field = |describe: &Value, name: &str| -> Value {
        describe["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("field {name}"))
    };
    let email = field(&describe, "Email");
    assert_eq!(
        (
            email["type"].clone(),
            email["length"].clone(),
            email["nillable"].clone()
        ),
        (json!("email"), json!(80), json!(true))
    );
    let last_name = field(&describe, "LastName");
    assert_eq!(
        (
            last_name["nillable"].clone(),
            last_name["createable"].clone()
        ),
        (json!(false), json!(true))
    );
    let id = field(&describe, "Id");
    assert_eq!(
        (
            id["type"].clone(),
            id["createable"].clone(),
            id["updateable"].clone()
        ),
        (json!("id"), json!(false), json!(false))
    );
    assert_eq!(
        field(&describe, "AccountId")["referenceTo"],
        json!(["Account"])
    );
    assert_eq!(field(&describe, "SystemModstamp")["type"], "datetime");
    let (_, opportunity) = client
        .get(&format!("{V}/sobjects/Opportunity/describe"))
        .await;
    let stage = field(&opportunity, "StageName");
    assert_eq!(stage["type"], "picklist");
    assert!(
        stage["picklistValues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["value"] == "Closed Won")
    );
    assert_eq!(field(&opportunity, "Amount")["type"], "currency");
    assert_eq!(field(&opportunity, "CloseDate")["type"], "date");

    // A custom field added through the control route and one through the library.
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/salesforce/fields", sim.base_url()))
        .json(&json!({"object": "Contact", "name": "Shoe_Size__c", "type": "double", "label": "Shoe Size"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    sim.salesforce()
        .add_custom_field(
            "Contact",
            "Nickname__c",
            "Nickname",
            FieldType::String,
            Some(20),
        )
        .unwrap();
    let (_, describe) = client.get(&format!("{V}/sobjects/Contact/describe")).await;
    let shoe = field(&describe, "Shoe_Size__c");
    assert_eq!(
        (
            shoe["custom"].clone(),
            shoe["type"].clone(),
            shoe["label"].clone()
        ),
        (json!(true), json!("double"), json!("Shoe Size"))
    );
    assert_eq!(field(&describe, "Nickname__c")["length"], 20);

    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Contact"),
            json!({"LastName": "Custom", "Shoe_Size__c": 42.5, "Nickname__c": "Cus"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, page) = client
        .query("SELECT Id, shoe_size__c, Nickname__c FROM Contact WHERE Shoe_Size__c > 40")
        .await;
    assert_eq!(page["totalSize"], 1, "{page}");
    assert_eq!(
        page["records"][0]["Shoe_Size__c"], 42.5,
        "canonical field names in results"
    );
    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Contact"),
            json!({"LastName": "C", "Nickname__c": "x".repeat(21)}),
        )
        .await;
    assert_eq!(
        (status, &single_error(&body)["errorCode"]),
        (StatusCode::BAD_REQUEST, &json!("STRING_TOO_LONG"))
    );
}

#[tokio::test]
async fn query_pages_ten_thousand_records_without_gaps() {
    let sim = sim(10_000).await;
    let client = Client::new(&sim);
    let records = client
        .query_every_page(
            "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp ASC, Id ASC",
            2000,
        )
        .await;
    assert_eq!(records.len(), 10_000);
    let ids: HashSet<&str> = records.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000, "no duplicates");
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["SystemModstamp"].as_str().unwrap(),
                r["Id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "strictly ordered by (SystemModstamp, Id)"
    );
    assert!(
        keys.windows(2).any(|w| w[0].0 == w[1].0),
        "seeded modstamps have ties"
    );
    assert_eq!(records[0]["attributes"]["type"], "Account");
    assert_eq!(
        records[0].as_object().unwrap().len(),
        4,
        "attributes + the selected fields only"
    );

    // A smaller batch size through the query options header.
    let response = reqwest::Client::new()
        .get(format!("{}{V}/query", sim.base_url()))
        .query(&[("q", "SELECT Id FROM Contact")])
        .bearer_auth(sim.token())
        .header("Sforce-Query-Options", "batchSize=500")
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 500);
    assert_eq!(page["totalSize"], 10_000);
    assert!(page["nextRecordsUrl"].as_str().unwrap().ends_with("-500"));

    // LIMIT caps the result set; no cursor is needed for it.
    let (_, page) = client
        .query("SELECT Id FROM Lead ORDER BY SystemModstamp ASC LIMIT 1500")
        .await;
    assert_eq!(
        (page["totalSize"].clone(), page["done"].clone()),
        (json!(1500), json!(true))
    );
}

#[tokio::test]
async fn incremental_queries_see_exactly_the_changes() {
    let sim = sim(300).await;
    let client = Client::new(&sim);
    let sf = sim.salesforce();
    let all = client
        .query_every_page(
            "SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id",
            2000,
        )
        .await;
    let checkpoint = all.last().unwrap()["SystemModstamp"]
        .as_str()
        .unwrap()
        .replace("+0000", "Z");

    // Changes made behind the client's back: two updates, a create and a delete.
    let updated = [
        all[10]["Id"].as_str().unwrap(),
        all[5]["Id"].as_str().unwrap(),
    ];
    for id in updated {
        sf.update("Contact", id, json!({"Title": "Changed"}))
            .unwrap();
    }
    let created = sf.create("Contact", json!({"LastName": "New"})).unwrap();
    let deleted = all[20]["Id"].as_str().unwrap();
    sf.delete("Contact", deleted).unwrap();

    let soql = format!(
        "SELECT Id, Title, IsDeleted FROM Contact WHERE SystemModstamp > {checkpoint} ORDER BY SystemModstamp ASC, Id ASC"
    );
    let (status, page) = client.query(&soql).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [updated[0], updated[1], created.as_str()],
        "in modification order, deleted excluded"
    );

    let (_, page) = client.query_all(&soql).await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[3]["Id"], deleted);
    assert_eq!(records[3]["IsDeleted"], true);
    let (_, page) = client
        .query_all("SELECT Id FROM Contact WHERE IsDeleted = true")
        .await;
    assert_eq!(page["totalSize"], 1);
    assert_eq!(
        client
            .query("SELECT Id FROM Contact WHERE IsDeleted = true")
            .await
            .1["totalSize"],
        0
    );

    // queryAll pages continue through /queryAll/{locator} and keep the deleted record.
    let response = reqwest::Client::new()
        .get(format!("{}{V}/queryAll", sim.base_url()))
        .query(&[("q", "SELECT Id, IsDeleted FROM Contact ORDER BY Id")])
        .bearer_auth(sim.token())
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .await
        .unwrap();
    let first: Value = response.json().await.unwrap();
    assert_eq!(
        first["totalSize"], 301,
        "300 seeded + 1 created, the deleted one included"
    );
    let next = first["nextRecordsUrl"].as_str().unwrap();
    assert!(next.starts_with(&format!("{V}/queryAll/")), "{next}");
    let (status, second) = client.get(next).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["done"], true);
    let deleted_rows = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["records"].as_array().unwrap())
        .filter(|r| r["IsDeleted"] == true)
        .count();
    assert_eq!(deleted_rows, 1);
    // OFFSET skips rows after ordering.
    let (_, page) = client
        .query("SELECT Id FROM Contact ORDER BY Id LIMIT 2 OFFSET 5")
        .await;
    let offset_ids: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["Id"])
        .collect();
    let (_, page) = client
        .query("SELECT Id FROM Contact ORDER BY Id LIMIT 7")
        .await;
    let first_seven: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["Id"])
        .collect();
    assert_eq!(offset_ids, first_seven[5..]);

    // Keyset pagination through ties: (stamp, id) strictly after a record.
    let pivot = &all[99];
    let stamp = pivot["SystemModstamp"]
        .as_str()
        .unwrap()
        .replace("+0000", "Z");
    let soql = format!(
        "SELECT Id FROM Contact WHERE SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{}') \
         ORDER BY SystemModstamp ASC, Id ASC LIMIT 50",
        pivot["Id"].as_str().unwrap()
    );
    let (_, page) = client.query(&soql).await;
    let expected: Vec<&Value> = all[100..150].iter().map(|r| &r["Id"]).collect();
    let got: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["Id"])
        .collect();
    assert_eq!(got, expected);

    // Other filters and orders.
    let (_, page) = client
        .query("SELECT Id, Name FROM Account WHERE Name LIKE '%#1' ORDER BY Name DESC")
        .await;
    assert_eq!(page["totalSize"], 1, "{page}");
    let (_, page) = client.query("SELECT Id, Amount FROM Opportunity WHERE Amount >= 13000 ORDER BY Amount DESC, Id LIMIT 3").await;
    let amounts: Vec<f64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Amount"].as_f64().unwrap())
        .collect();
    assert!(
        amounts.windows(2).all(|w| w[0] >= w[1]) && amounts[0] == 13_250.0,
        "{amounts:?}"
    );
}

#[tokio::test]
async fn query_errors() {
    let sim = sim(5).await;
    let client = Client::new(&sim);
    let cases = [
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        ("SELEC Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT many", "MALFORMED_QUERY"),
        ("SELECT Id, Foo FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Bar = 1", "INVALID_FIELD"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            "INVALID_FIELD",
        ),
        ("SELECT Id FROM Widget", "INVALID_TYPE"),
    ];
    for (soql, code) in cases {
        let (status, body) = client.query(soql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{soql}: {body}");
        assert_eq!(single_error(&body)["errorCode"], code, "{soql}: {body}");
    }
    let (_, body) = client.query("SELECT Id, Foo FROM Account").await;
    let message = single_error(&body)["message"].as_str().unwrap();
    assert!(
        message.contains("ERROR at Row:1:Column:12")
            && message.contains("No such column 'Foo' on entity 'Account'"),
        "{message}"
    );
    let (status, body) = client
        .get(&format!("{V}/query/01gDn0000000000099-2000"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["errorCode"], "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn composite_collections_and_all_or_none() {
    let sim = sim(2).await;
    let client = Client::new(&sim);
    let sf = sim.salesforce();
    let path = format!("{V}/composite/sobjects");
    let contact = |last: &str, email: &str| json!({"attributes": {"type": "Contact"}, "LastName": last, "Email": email});

    // allOrNone: one bad record rolls back the others.
    let before = sf.count("Contact", false);
    let body = json!({"allOrNone": true, "records": [contact("A", "a@example.com"), contact("B", "andrea__invalid"), contact("C", "c@example.com")]});
    let (status, results) = client.post(&path, body).await;
    assert_eq!(status, StatusCode::OK);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r["success"] == false));
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_EMAIL_ADDRESS"
    );
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Email"]));
    for i in [0, 2] {
        assert_eq!(
            results[i]["errors"][0]["statusCode"],
            "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        );
    }
    assert_eq!(sf.count("Contact", false), before, "nothing was created");

    // Without allOrNone the valid records are saved.
    let body = json!({"allOrNone": false, "records": [contact("A", "a@example.com"), contact("B", "andrea__invalid"), contact("C", "c@example.com")]});
    let (_, results) = client.post(&path, body).await;
    let successes: Vec<bool> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["success"].as_bool().unwrap())
        .collect();
    assert_eq!(successes, [true, false, true]);
    assert!(results[1].get("id").is_none(), "a failed create has no id");
    assert_eq!(sf.count("Contact", false), before + 2);
    let a = results[0]["id"].as_str().unwrap().to_owned();
    let c = results[2]["id"].as_str().unwrap().to_owned();

    // Updates: allOrNone with a deleted record rolls back the valid update.
    let b = sf.create("Contact", json!({"LastName": "Doomed"})).unwrap();
    sf.delete("Contact", &b).unwrap();
    let update = |id: &str, title: &str| json!({"attributes": {"type": "Contact"}, "Id": id, "Title": title});
    let body =
        json!({"allOrNone": true, "records": [update(&a, "Rolled back"), update(&b, "Gone")]});
    let (status, results) = client.patch(&path, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(results[0]["id"], a);
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(results[1]["errors"][0]["statusCode"], "ENTITY_IS_DELETED");
    assert_eq!(sf.get("Contact", &a).unwrap()["Title"], Value::Null);
    let body =
        json!({"allOrNone": true, "records": [update(&a, "Applied"), update(&c, "Applied too")]});
    let (_, results) = client.patch(&path, body).await;
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["success"] == true),
        "{results}"
    );
    assert_eq!(sf.get("Contact", &c).unwrap()["Title"], "Applied too");

    // Deletes by ids, all or none.
    let (_, results) = client
        .delete(&format!("{path}?ids={a},{b}&allOrNone=true"))
        .await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert!(sf.get("Contact", &a).is_some());
    let (_, results) = client
        .delete(&format!("{path}?ids={a},{c}&allOrNone=true"))
        .await;
    assert_eq!(
        results,
        json!([{"id": a, "success": true, "errors": []}, {"id": c, "success": true, "errors": []}])
    );
    assert!(sf.get("Contact", &a).is_none());

    // At most 200 records per call.
    let records: Vec<Value> = (0..201).map(|i| contact(&format!("N{i}"), "")).collect();
    let (status, body) = client.post(&path, json!({"records": records})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["errorCode"], "EXCEEDED_ID_LIMIT");
    let records: Vec<Value> = (0..200).map(|i| contact(&format!("N{i}"), "")).collect();
    let (_, results) = client.post(&path, json!({"records": records})).await;
    assert_eq!(results.as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn rate_limit_is_403_request_limit_exceeded() {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Salesforce).rate_limit(3.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..10 {
        let response = http
            .get(format!("{}{V}/sobjects", sim.base_url()))
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::OK {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the fourth request within a second is refused");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(sim.stats().rate_limited, 1);
}

#[tokio::test]
async fn control_routes_change_data_behind_the_clients_back() {
    let sim = sim(1).await;
    let client = Client::new(&sim);
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let response = http
        .post(format!("{base}/_sim/salesforce/sobjects/Lead"))
        .json(&json!({"LastName": "Backdoor", "Company": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, lead) = client.get(&format!("{V}/sobjects/Lead/{id}")).await;
    assert_eq!(lead["Status"], "Open - Not Contacted", "defaulted picklist");
    let response = http
        .patch(format!("{base}/_sim/salesforce/sobjects/Lead/{id}"))
        .json(&json!({"Status": "Working - Contacted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, updated) = client.get(&format!("{V}/sobjects/Lead/{id}")).await;
    assert!(updated["SystemModstamp"].as_str() > lead["SystemModstamp"].as_str());
    let response = http
        .delete(format!("{base}/_sim/salesforce/sobjects/Lead/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, page) = client
        .query_all(&format!("SELECT Id, IsDeleted FROM Lead WHERE Id = '{id}'"))
        .await;
    assert_eq!(page["records"][0]["IsDeleted"], true);
}

/// One standard field's expected describe metadata, from Salesforce's Object Reference.
struct Expected {
    name: &'static str,
    field_type: &'static str,
    /// `length` for text types, `precision` for numbers with a scale, `digits` for ints.
    size: u64,
    nillable: bool,
    createable: bool,
    updateable: bool,
}

const fn field(
    name: &'static str,
    field_type: &'static str,
    size: u64,
    (nillable, createable, updateable): (bool, bool, bool),
) -> Expected {
    Expected {
        name,
        field_type,
        size,
        nillable,
        createable,
        updateable,
    }
}

/// Writable and nillable.
const RW: (bool, bool, bool) = (true, true, true);
/// Read-only, nillable (filled by the server or by activity).
const RO: (bool, bool, bool) = (true, false, false);
/// Read-only and never null (system flags).
const SYS: (bool, bool, bool) = (false, false, false);
/// A checkbox: never null, writable.
const FLAG: (bool, bool, bool) = (false, true, true);

const ACCOUNT_FIELDS: &[Expected] = &[
    field("Name", "string", 255, (false, true, true)),
    field("MasterRecordId", "reference", 18, RO),
    field("ParentId", "reference", 18, RW),
    field("BillingStreet", "textarea", 255, RW),
    field("BillingCity", "string", 40, RW),
    field("BillingState", "string", 80, RW),
    field("BillingPostalCode", "string", 20, RW),
    field("BillingCountry", "string", 80, RW),
    field("BillingLatitude", "double", 18, RW),
    field("BillingLongitude", "double", 18, RW),
    field("BillingAddress", "address", 0, RO),
    field("ShippingStreet", "textarea", 255, RW),
    field("ShippingPostalCode", "string", 20, RW),
    field("ShippingAddress", "address", 0, RO),
    field("Fax", "phone", 40, RW),
    field("AccountNumber", "string", 40, RW),
    field("Website", "url", 255, RW),
    field("PhotoUrl", "url", 255, RO),
    field("Sic", "string", 20, RW),
    field("SicDesc", "string", 80, RW),
    field("Industry", "picklist", 40, RW),
    field("AnnualRevenue", "currency", 18, RW),
    field("NumberOfEmployees", "int", 8, RW),
    field("Ownership", "picklist", 40, RW),
    field("TickerSymbol", "string", 20, RW),
    field("Description", "textarea", 32000, RW),
    field("Rating", "picklist", 40, RW),
    field("Site", "string", 80, RW),
    field("AccountSource", "picklist", 40, RW),
    field("LastActivityDate", "date", 0, RO),
    field("LastViewedDate", "datetime", 0, RO),
    field("LastReferencedDate", "datetime", 0, RO),
    field("Jigsaw", "string", 20, RW),
    field("JigsawCompanyId", "string", 20, RO),
    field("CleanStatus", "picklist", 40, RW),
    field("DunsNumber", "string", 9, RW),
    field("Tradestyle", "string", 255, RW),
    field("NaicsCode", "string", 8, RW),
    field("NaicsDesc", "string", 120, RW),
    field("YearStarted", "string", 4, RW),
];

const CONTACT_FIELDS: &[Expected] = &[
    field("Salutation", "picklist", 40, RW),
    field("MiddleName", "string", 40, RW),
    field("Suffix", "string", 40, RW),
    field("Name", "string", 121, RO),
    field("OtherStreet", "textarea", 255, RW),
    field("OtherCity", "string", 40, RW),
    field("OtherAddress", "address", 0, RO),
    field("MailingStreet", "textarea", 255, RW),
    field("MailingCity", "string", 40, RW),
    field("MailingState", "string", 80, RW),
    field("MailingPostalCode", "string", 20, RW),
    field("MailingCountry", "string", 80, RW),
    field("MailingLatitude", "double", 18, RW),
    field("MailingLongitude", "double", 18, RW),
    field("MailingAddress", "address", 0, RO),
    field("MobilePhone", "phone", 40, RW),
    field("HomePhone", "phone", 40, RW),
    field("OtherPhone", "phone", 40, RW),
    field("AssistantPhone", "phone", 40, RW),
    field("ReportsToId", "reference", 18, RW),
    field("Department", "string", 80, RW),
    field("AssistantName", "string", 40, RW),
    field("LeadSource", "picklist", 40, RW),
    field("Birthdate", "date", 0, RW),
    field("Description", "textarea", 32000, RW),
    field("HasOptedOutOfEmail", "boolean", 0, FLAG),
    field("DoNotCall", "boolean", 0, FLAG),
    field("EmailBouncedReason", "string", 255, RW),
    field("EmailBouncedDate", "datetime", 0, RW),
    field("IsEmailBounced", "boolean", 0, SYS),
    field("PhotoUrl", "url", 255, RO),
    field("Jigsaw", "string", 20, RW),
    field("JigsawContactId", "string", 20, RO),
    field("CleanStatus", "picklist", 40, RW),
    field("IndividualId", "reference", 18, RW),
    field("LastActivityDate", "date", 0, RO),
    field("LastCURequestDate", "datetime", 0, RO),
    field("LastCUUpdateDate", "datetime", 0, RO),
];

const LEAD_FIELDS: &[Expected] = &[
    field("Salutation", "picklist", 40, RW),
    field("MiddleName", "string", 40, RW),
    field("Suffix", "string", 40, RW),
    field("Name", "string", 121, RO),
    field("Title", "string", 128, RW),
    field("Company", "string", 255, (false, true, true)),
    field("Street", "textarea", 255, RW),
    field("City", "string", 40, RW),
    field("State", "string", 80, RW),
    field("PostalCode", "string", 20, RW),
    field("Country", "string", 80, RW),
    field("Latitude", "double", 18, RW),
    field("Longitude", "double", 18, RW),
    field("Address", "address", 0, RO),
    field("MobilePhone", "phone", 40, RW),
    field("Website", "url", 255, RW),
    field("PhotoUrl", "url", 255, RO),
    field("Description", "textarea", 32000, RW),
    field("Industry", "picklist", 40, RW),
    field("Rating", "picklist", 40, RW),
    field("AnnualRevenue", "currency", 18, RW),
    field("NumberOfEmployees", "int", 8, RW),
    // Only an insert may set it; conversion is not a field update.
    field("IsConverted", "boolean", 0, (false, true, false)),
    field("ConvertedDate", "date", 0, RO),
    field("ConvertedAccountId", "reference", 18, RO),
    field("ConvertedContactId", "reference", 18, RO),
    field("ConvertedOpportunityId", "reference", 18, RO),
    field("IsUnreadByOwner", "boolean", 0, FLAG),
    field("Jigsaw", "string", 20, RW),
    field("CleanStatus", "picklist", 40, RW),
    field("CompanyDunsNumber", "string", 9, RW),
    field("EmailBouncedReason", "string", 255, RW),
    field("EmailBouncedDate", "datetime", 0, RW),
    field("IndividualId", "reference", 18, RW),
];

const OPPORTUNITY_FIELDS: &[Expected] = &[
    field("IsPrivate", "boolean", 0, FLAG),
    field("Description", "textarea", 32000, RW),
    field("Probability", "percent", 3, RW),
    field("ExpectedRevenue", "currency", 18, RO),
    field("TotalOpportunityQuantity", "double", 18, RW),
    field("Type", "picklist", 40, RW),
    field("NextStep", "string", 255, RW),
    field("LeadSource", "picklist", 40, RW),
    field("IsClosed", "boolean", 0, SYS),
    field("IsWon", "boolean", 0, SYS),
    field("ForecastCategory", "picklist", 40, SYS),
    field("ForecastCategoryName", "picklist", 40, RW),
    field("CampaignId", "reference", 18, RW),
    field("HasOpportunityLineItem", "boolean", 0, SYS),
    field("Pricebook2Id", "reference", 18, RW),
    field("LastActivityDate", "date", 0, RO),
    field("FiscalQuarter", "int", 11, RO),
    field("FiscalYear", "int", 4, RO),
    field("Fiscal", "string", 6, RO),
    field("LastStageChangeDate", "datetime", 0, RO),
];

/// A well-formed 18-character id of an object the simulator does not serve (a queue, ...).
fn id_with_prefix(prefix: &str) -> String {
    let id15 = format!("{prefix}Dn0000000001");
    format!("{id15}{}", expected_suffix(&id15))
}

/// A field's entry in a describe result.
fn described<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{} describes no {name}", describe["name"]))
}

/// Default stage probabilities and forecast categories of a new org (Setup > Opportunity Stages).
fn stage_defaults(stage: &str) -> (f64, &'static str, &'static str) {
    match stage {
        "Prospecting" | "Qualification" => (10.0, "Pipeline", "Pipeline"),
        "Needs Analysis" => (20.0, "Pipeline", "Pipeline"),
        "Value Proposition" => (50.0, "Pipeline", "Pipeline"),
        "Id. Decision Makers" => (60.0, "Pipeline", "Pipeline"),
        "Perception Analysis" => (70.0, "Pipeline", "Pipeline"),
        "Proposal/Price Quote" => (75.0, "Pipeline", "Pipeline"),
        "Negotiation/Review" => (90.0, "Pipeline", "Pipeline"),
        "Closed Won" => (100.0, "Closed", "Closed"),
        "Closed Lost" => (0.0, "Omitted", "Omitted"),
        other => panic!("unexpected stage {other}"),
    }
}

#[tokio::test]
async fn standard_fields_are_described_and_queryable() {
    let sim = sim(30).await;
    let client = Client::new(&sim);
    let objects: [(&str, &[Expected]); 4] = [
        ("Account", ACCOUNT_FIELDS),
        ("Contact", CONTACT_FIELDS),
        ("Lead", LEAD_FIELDS),
        ("Opportunity", OPPORTUNITY_FIELDS),
    ];
    for (object, expected_fields) in objects {
        let (status, describe) = client.get(&format!("{V}/sobjects/{object}/describe")).await;
        assert_eq!(status, StatusCode::OK, "{describe}");
        for expected in expected_fields {
            let actual = described(&describe, expected.name);
            let size_key = match expected.field_type {
                "double" | "currency" | "percent" => "precision",
                "int" => "digits",
                _ => "length",
            };
            assert_eq!(
                (
                    actual["type"].as_str().unwrap(),
                    actual[size_key].as_u64().unwrap(),
                    actual["nillable"].as_bool().unwrap(),
                    actual["createable"].as_bool().unwrap(),
                    actual["updateable"].as_bool().unwrap(),
                ),
                (
                    expected.field_type,
                    expected.size,
                    expected.nillable,
                    expected.createable,
                    expected.updateable,
                ),
                "{object}.{}: (type, {size_key}, nillable, createable, updateable)",
                expected.name
            );
        }

        // Every described field can be selected, and every record carries all of them.
        let names: Vec<String> = describe["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(names.len() > 35, "{object} has {} fields", names.len());
        let soql = format!("SELECT {} FROM {object}", names.join(", "));
        let records = client.query_every_page(&soql, 2000).await;
        assert_eq!(records.len(), 30, "{object}");
        for record in &records {
            let keys: Vec<&String> = record
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "attributes")
                .collect();
            assert_eq!(keys, names.iter().collect::<Vec<_>>(), "{object} columns");
            let id = record["Id"].as_str().unwrap();
            if object != "Opportunity" {
                assert_eq!(
                    record["CleanStatus"], "Pending",
                    "{object}: new records await Data.com clean"
                );
                assert_eq!(
                    record["PhotoUrl"],
                    format!("/services/images/photo/{id}"),
                    "{object}"
                );
            }
        }
        let check = |record: &Value| match object {
            "Account" => {
                let address = &record["BillingAddress"];
                assert_eq!(address["city"], record["BillingCity"], "{record}");
                assert_eq!(address["street"], record["BillingStreet"], "{record}");
                assert_eq!(address["postalCode"], record["BillingPostalCode"]);
                assert_eq!(address["latitude"], record["BillingLatitude"]);
                assert!(address["geocodeAccuracy"].is_null());
                assert!(record["BillingState"].is_string(), "{record}");
            }
            "Contact" => {
                let expected = format!(
                    "{} {}",
                    record["FirstName"].as_str().unwrap(),
                    record["LastName"].as_str().unwrap()
                );
                assert_eq!(record["Name"], expected);
                assert_eq!(
                    record["MailingAddress"]["country"],
                    record["MailingCountry"]
                );
                assert!(
                    record["OtherAddress"].is_null(),
                    "an address without parts is null"
                );
                assert_eq!(record["IsEmailBounced"], false);
                assert_eq!(record["DoNotCall"], false);
            }
            "Lead" => {
                assert_eq!(record["Address"]["city"], record["City"], "{record}");
                assert_eq!(record["IsConverted"], false);
                assert!(record["ConvertedDate"].is_null());
                assert!(
                    record["Name"]
                        .as_str()
                        .unwrap()
                        .ends_with(record["LastName"].as_str().unwrap())
                );
            }
            _ => {
                let stage = record["StageName"].as_str().unwrap();
                let (probability, category_name, category) = stage_defaults(stage);
                assert_eq!(record["Probability"].as_f64(), Some(probability), "{stage}");
                assert_eq!(record["ForecastCategoryName"], category_name, "{stage}");
                assert_eq!(record["ForecastCategory"], category, "{stage}");
                assert_eq!(record["IsClosed"], stage.starts_with("Closed"), "{stage}");
                assert_eq!(record["IsWon"], stage == "Closed Won", "{stage}");
                let amount = record["Amount"].as_f64().unwrap();
                assert_eq!(
                    record["ExpectedRevenue"].as_f64(),
                    Some(amount * probability / 100.0),
                    "{record}"
                );
                let close = record["CloseDate"].as_str().unwrap();
                let year: i64 = close[..4].parse().unwrap();
                let month: i64 = close[5..7].parse().unwrap();
                let quarter = (month + 2) / 3;
                assert_eq!(record["FiscalYear"], year, "{close}");
                assert_eq!(record["FiscalQuarter"], quarter, "{close}");
                assert_eq!(record["Fiscal"], format!("{year} {quarter}"));
                assert_eq!(record["HasOpportunityLineItem"], false);
                assert_eq!(record["IsPrivate"], false);
            }
        };
        records.iter().for_each(check);
    }

    // Seeded opportunities cover every stage (and so both closed outcomes).
    let (_, page) = client
        .query("SELECT Id FROM Opportunity WHERE IsWon = true")
        .await;
    assert!(page["totalSize"].as_u64().unwrap() >= 1, "{page}");
    let (_, page) = client
        .query("SELECT Id, BillingAddress FROM Account WHERE BillingCity != null LIMIT 1")
        .await;
    assert!(page["records"][0]["BillingAddress"].is_object(), "{page}");
}

#[tokio::test]
async fn computed_and_read_only_standard_fields() {
    let sim = sim(1).await;
    let client = Client::new(&sim);
    let read_only = |field: &str| {
        json!({
            "message": format!("Unable to create/update fields: {field}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."),
            "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
            "fields": [field],
        })
    };

    // Opportunity: probability, forecast category and expected revenue follow the stage.
    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Opportunity"),
            json!({"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2025-08-15", "Amount": 2000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let opportunity = body["id"].as_str().unwrap().to_owned();
    let path = format!("{V}/sobjects/Opportunity/{opportunity}");
    let (_, record) = client.get(&path).await;
    assert_eq!(record["Probability"], 10.0);
    assert_eq!(record["ExpectedRevenue"], 200.0);
    assert_eq!(record["ForecastCategoryName"], "Pipeline");
    assert_eq!(
        (
            &record["FiscalYear"],
            &record["FiscalQuarter"],
            &record["Fiscal"]
        ),
        (&json!(2025), &json!(3), &json!("2025 3"))
    );
    assert_eq!(
        (&record["IsClosed"], &record["IsWon"]),
        (&json!(false), &json!(false))
    );
    assert!(record["LastStageChangeDate"].is_null(), "{record}");

    let (status, _) = client
        .patch(
            &path,
            json!({"StageName": "Closed Won", "CloseDate": "2026-01-10"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, record) = client.get(&path).await;
    assert_eq!(record["Probability"], 100.0);
    assert_eq!(record["ExpectedRevenue"], 2000.0);
    assert_eq!(
        (&record["ForecastCategoryName"], &record["ForecastCategory"]),
        (&json!("Closed"), &json!("Closed"))
    );
    assert_eq!(
        (&record["IsClosed"], &record["IsWon"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(record["Fiscal"], "2026 1");
    assert_eq!(record["LastStageChangeDate"], record["SystemModstamp"]);

    // A probability written with the stage wins over the stage default.
    client
        .patch(
            &path,
            json!({"StageName": "Negotiation/Review", "Probability": 35}),
        )
        .await;
    let (_, record) = client.get(&path).await;
    assert_eq!(record["Probability"], 35.0);
    assert_eq!(record["ExpectedRevenue"], 700.0);
    assert_eq!(record["IsClosed"], false);
    // Changing only the amount recomputes expected revenue, not the probability.
    client.patch(&path, json!({"Amount": 1000})).await;
    let (_, record) = client.get(&path).await;
    assert_eq!(
        (&record["Probability"], &record["ExpectedRevenue"]),
        (&json!(35.0), &json!(350.0))
    );

    for (field, value) in [
        ("ExpectedRevenue", json!(5)),
        ("IsClosed", json!(true)),
        ("FiscalYear", json!(2030)),
        ("ForecastCategory", json!("Closed")),
        ("HasOpportunityLineItem", json!(true)),
    ] {
        let (status, body) = client.patch(&path, json!({ field: value })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(single_error(&body), &read_only(field), "{field}");
    }
    let (status, body) = client
        .patch(&path, json!({"ForecastCategoryName": "Maybe"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        single_error(&body),
        &json!({"message": "Forecast Category: bad value for restricted picklist field: Maybe", "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["ForecastCategoryName"]})
    );
    assert_eq!(
        client
            .patch(&path, json!({"ForecastCategoryName": "Commit"}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(client.get(&path).await.1["ForecastCategory"], "Forecast");

    // Account: compound addresses are assembled from their parts and cannot be written.
    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Account"),
            json!({"Name": "Acme", "BillingStreet": "1 Market St", "BillingCity": "San Francisco", "BillingLatitude": 37.79})
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let account = body["id"].as_str().unwrap().to_owned();
    let account_path = format!("{V}/sobjects/Account/{account}");
    let (_, record) = client.get(&account_path).await;
    assert_eq!(
        record["BillingAddress"],
        json!({"street": "1 Market St", "city": "San Francisco", "state": null, "postalCode": null, "country": null, "latitude": 37.79, "longitude": null, "geocodeAccuracy": null})
    );
    assert!(record["ShippingAddress"].is_null());
    client
        .patch(
            &account_path,
            json!({"BillingCity": null, "BillingStreet": null, "BillingLatitude": null}),
        )
        .await;
    assert!(client.get(&account_path).await.1["BillingAddress"].is_null());
    for (field, value) in [
        ("BillingAddress", json!({"city": "Paris"})),
        ("PhotoUrl", json!("https://example.com/a.png")),
        ("LastActivityDate", json!("2025-01-01")),
        ("JigsawCompanyId", json!("123")),
    ] {
        let (status, body) = client
            .post(
                &format!("{V}/sobjects/Account"),
                json!({"Name": "X", field: value}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(single_error(&body), &read_only(field), "{field}");
    }
    let (status, body) = client
        .patch(&account_path, json!({"NumberOfEmployees": 123_456_789}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        single_error(&body),
        &json!({"message": "Employees: value outside of valid range on numeric field: 123456789", "errorCode": "NUMBER_OUTSIDE_VALID_RANGE", "fields": ["NumberOfEmployees"]})
    );
    let (status, body) = client
        .patch(
            &account_path,
            json!({"ParentId": account, "Website": "acme.example.com", "YearStarted": "1999"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Contact: the full name includes middle name and suffix; a recorded bounce sets IsEmailBounced.
    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Contact"),
            json!({"FirstName": "Ada", "MiddleName": "King", "LastName": "Lovelace", "Suffix": "II", "AccountId": account}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let contact_path = format!("{V}/sobjects/Contact/{}", body["id"].as_str().unwrap());
    let (_, record) = client.get(&contact_path).await;
    assert_eq!(record["Name"], "Ada King Lovelace II");
    assert_eq!(record["IsEmailBounced"], false);
    client
        .patch(&contact_path, json!({"EmailBouncedReason": "550 mailbox unavailable", "EmailBouncedDate": "2025-03-01T10:00:00.000+0000"}))
        .await;
    let (_, record) = client.get(&contact_path).await;
    assert_eq!(record["IsEmailBounced"], true);
    assert_eq!(record["EmailBouncedDate"], "2025-03-01T10:00:00.000+0000");
    let (status, body) = client
        .patch(&contact_path, json!({"IsEmailBounced": false}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body), &read_only("IsEmailBounced"));
    // A reference must name a record of the right object (Individual ids start 0PK).
    let (status, body) = client
        .patch(
            &contact_path,
            json!({"IndividualId": id_with_prefix("0PK")}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = client
        .patch(&contact_path, json!({"ReportsToId": account}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body)["fields"], json!(["ReportsToId"]));

    // Lead: IsConverted may be set on insert only; the conversion targets never.
    let (status, body) = client
        .post(
            &format!("{V}/sobjects/Lead"),
            json!({"LastName": "Hopper", "Company": "Navy", "IsConverted": false, "Street": "1 Pier", "Country": "US"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let lead_path = format!("{V}/sobjects/Lead/{}", body["id"].as_str().unwrap());
    let (_, record) = client.get(&lead_path).await;
    assert_eq!(record["Address"]["street"], "1 Pier");
    assert_eq!(record["Status"], "Open - Not Contacted");
    assert_eq!(record["IsUnreadByOwner"], false);
    for (field, value) in [
        ("IsConverted", json!(true)),
        ("ConvertedDate", json!("2025-01-01")),
        ("ConvertedAccountId", json!(account)),
    ] {
        let (status, body) = client.patch(&lead_path, json!({ field: value })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(single_error(&body), &read_only(field), "{field}");
    }
    let (status, body) = client
        .patch(
            &lead_path,
            json!({"OwnerId": id_with_prefix("00G"), "Rating": "Hot"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a queue may own a lead: {body}"
    );
}
