//! Validates the HubSpot simulator's responses against HubSpot's published OpenAPI schemas
//! (`shared/reference/hubspot/v3-*.json`), so that the simulator cannot drift from the real
//! response shapes (a missing required field or a wrongly typed value fails here).

use std::path::PathBuf;

use jsonschema::Validator;
use reqwest::StatusCode;
use sequin_sim::{Api, Sim, SimConfig};
use serde_json::{Value, json};

/// The reference directory: `$SEQUIN_REFERENCE_DIR`, else `shared/reference` next to the repo.
fn reference_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SEQUIN_REFERENCE_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../../shared/reference"),
        manifest.join("../../shared/reference"),
    ];
    candidates
        .into_iter()
        .find(|dir| dir.join("hubspot/v3-contacts.json").is_file())
        .expect("HubSpot reference files (shared/reference/hubspot) are present; set SEQUIN_REFERENCE_DIR")
}

fn spec(file: &str) -> Value {
    let path = reference_dir().join("hubspot").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the reference file is JSON")
}

/// A validator for `#/components/schemas/{name}` of an OpenAPI document, with formats checked.
fn validator(spec: &Value, name: &str) -> Validator {
    assert!(
        spec["components"]["schemas"].get(name).is_some(),
        "schema {name} exists in the reference"
    );
    let root = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": spec["components"],
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name} compiles: {e}"))
}

fn assert_valid(validator: &Validator, name: &str, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "response is not a valid {name}: {errors:#?}\n{instance:#}"
    );
}

async fn sim() -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Hubspot)
            .seed_records(30)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

async fn call(
    sim: &Sim,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(sim.token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn object_responses_match_the_published_schemas() {
    let sim = sim().await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    let when = "2025-03-01T10:00:00.000Z";
    for (file, object, properties) in [
        (
            "v3-contacts.json",
            "contacts",
            json!({"email": "schema@example.com", "firstname": "Schema"}),
        ),
        (
            "v3-companies.json",
            "companies",
            json!({"name": "Schema Inc", "domain": "schema.example.com"}),
        ),
        (
            "v3-deals.json",
            "deals",
            json!({"dealname": "Schema deal", "amount": "100", "dealstage": "closedwon"}),
        ),
        (
            "v3-tickets.json",
            "tickets",
            json!({"subject": "Schema ticket", "hs_pipeline_stage": "1"}),
        ),
        (
            "v3-products.json",
            "products",
            json!({"name": "Schema product", "price": "9.5"}),
        ),
        (
            "v3-line-items.json",
            "line_items",
            json!({"name": "Schema seats", "quantity": "2", "price": "9.5"}),
        ),
        (
            "v3-quotes.json",
            "quotes",
            json!({"hs_title": "Schema quote", "hs_expiration_date": "2025-12-31"}),
        ),
        (
            "v3-calls.json",
            "calls",
            json!({"hs_timestamp": when, "hs_call_title": "Schema call"}),
        ),
        (
            "v3-emails.json",
            "emails",
            json!({"hs_timestamp": when, "hs_email_subject": "Schema email"}),
        ),
        (
            "v3-meetings.json",
            "meetings",
            json!({"hs_timestamp": when, "hs_meeting_title": "Schema meeting"}),
        ),
        (
            "v3-notes.json",
            "notes",
            json!({"hs_timestamp": when, "hs_note_body": "Schema note"}),
        ),
        (
            "v3-tasks.json",
            "tasks",
            json!({"hs_timestamp": when, "hs_task_subject": "Schema task"}),
        ),
        // The seeded custom object, through the generic objects API.
        (
            "v3-objects.json",
            "pets",
            json!({"pet_name": "Schema", "species": "cat"}),
        ),
    ] {
        let spec = spec(file);
        let list = validator(
            &spec,
            "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging",
        );
        let with_associations = validator(&spec, "SimplePublicObjectWithAssociations");
        let simple = validator(&spec, "SimplePublicObject");
        let search = validator(&spec, "CollectionResponseWithTotalSimplePublicObject");
        let batch = validator(&spec, "BatchResponseSimplePublicObject");
        let batch_with_errors = validator(&spec, "BatchResponseSimplePublicObjectWithErrors");
        let error = validator(&spec, "Error");

        let (status, body) = call(
            &sim,
            get.clone(),
            &format!("/crm/v3/objects/{object}?limit=5"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body["paging"]["next"]["after"].is_string(),
            "the page under test has paging"
        );
        assert_valid(&list, "list page", &body);

        let (status, created) = call(
            &sim,
            post.clone(),
            &format!("/crm/v3/objects/{object}"),
            Some(json!({"properties": properties})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_valid(&simple, "created object", &created);
        let id = created["id"].as_str().unwrap();

        let (_, read) = call(
            &sim,
            get.clone(),
            &format!("/crm/v3/objects/{object}/{id}"),
            None,
        )
        .await;
        assert_valid(&with_associations, "read object", &read);
        let (_, updated) = call(
            &sim,
            patch.clone(),
            &format!("/crm/v3/objects/{object}/{id}"),
            Some(json!({"properties": {}})),
        )
        .await;
        assert_valid(&simple, "updated object", &updated);

        let (_, found) = call(
            &sim,
            post.clone(),
            &format!("/crm/v3/objects/{object}/search"),
            Some(json!({"limit": 3})),
        )
        .await;
        assert!(found["paging"]["next"]["after"].is_string());
        assert_valid(&search, "search page", &found);

        let read_body =
            json!({"inputs": [{"id": id}], "properties": [], "propertiesWithHistory": []});
        let (status, body) = call(
            &sim,
            post.clone(),
            &format!("/crm/v3/objects/{object}/batch/read"),
            Some(read_body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_valid(&batch, "batch read", &body);
        let read_body = json!({"inputs": [{"id": id}, {"id": "999999999"}], "properties": [], "propertiesWithHistory": []});
        let (status, body) = call(
            &sim,
            post.clone(),
            &format!("/crm/v3/objects/{object}/batch/read"),
            Some(read_body),
        )
        .await;
        assert_eq!(status, StatusCode::MULTI_STATUS);
        assert_valid(&batch_with_errors, "batch read with errors", &body);

        let (status, body) = call(
            &sim,
            get.clone(),
            &format!("/crm/v3/objects/{object}/999999999"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_valid(&error, "not-found error", &body);
        let (status, body) = call(
            &sim,
            post.clone(),
            &format!("/crm/v3/objects/{object}"),
            Some(json!({"properties": {"nope": "x"}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_valid(&error, "validation error", &body);
    }
}

#[tokio::test]
async fn property_responses_match_the_published_schemas() {
    let sim = sim().await;
    let spec = spec("v3-properties.json");
    let collection = validator(&spec, "CollectionResponsePropertyNoPaging");
    let property = validator(&spec, "Property");
    for object in [
        "contacts",
        "companies",
        "deals",
        "tickets",
        "products",
        "line_items",
        "quotes",
        "calls",
        "emails",
        "meetings",
        "notes",
        "tasks",
        "pets",
    ] {
        let (status, body) = call(
            &sim,
            reqwest::Method::GET,
            &format!("/crm/v3/properties/{object}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_valid(&collection, "property list", &body);
    }
    let definition = json!({"name": "shoe_size", "label": "Shoe size", "type": "number", "fieldType": "number", "groupName": "contactinformation"});
    let (status, body) = call(
        &sim,
        reqwest::Method::POST,
        "/crm/v3/properties/contacts",
        Some(definition),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_valid(&property, "created property", &body);
}

#[tokio::test]
async fn owner_pipeline_and_schema_responses_match_the_published_schemas() {
    let sim = sim().await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let owners = spec("v3-owners.json");
    let (status, page) = call(&sim, get.clone(), "/crm/v3/owners?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["paging"]["next"]["after"].is_string(), "{page}");
    assert_valid(
        &validator(&owners, "CollectionResponsePublicOwnerForwardPaging"),
        "owners page",
        &page,
    );
    let id = page["results"][0]["id"].as_str().unwrap();
    let (_, owner) = call(&sim, get.clone(), &format!("/crm/v3/owners/{id}"), None).await;
    assert_valid(&validator(&owners, "PublicOwner"), "owner", &owner);

    let pipelines = spec("v3-pipelines.json");
    for object in ["deals", "tickets"] {
        let (status, list) = call(
            &sim,
            get.clone(),
            &format!("/crm/v3/pipelines/{object}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!list["results"].as_array().unwrap().is_empty());
        assert_valid(
            &validator(&pipelines, "CollectionResponsePipelineNoPaging"),
            "pipelines",
            &list,
        );
    }
    let input = json!({"label": "Schema pipeline", "displayOrder": 3, "stages": [
        {"label": "Open", "displayOrder": 0, "metadata": {"ticketState": "OPEN"}},
        {"label": "Done", "displayOrder": 1, "metadata": {"ticketState": "CLOSED"}}
    ]});
    let (status, created) =
        call(&sim, post.clone(), "/crm/v3/pipelines/tickets", Some(input)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_valid(
        &validator(&pipelines, "Pipeline"),
        "created pipeline",
        &created,
    );
    let (status, body) = call(&sim, get.clone(), "/crm/v3/pipelines/contacts", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_valid(&validator(&pipelines, "Error"), "no pipelines error", &body);

    let schemas = spec("v3-schemas.json");
    let (status, list) = call(&sim, get.clone(), "/crm-object-schemas/v3/schemas", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["results"][0]["name"], "pets");
    assert_valid(
        &validator(&schemas, "CollectionResponseObjectSchemaNoPaging"),
        "schemas",
        &list,
    );
    let egg = json!({
        "name": "boats",
        "labels": {"singular": "Boat", "plural": "Boats"},
        "primaryDisplayProperty": "boat_name",
        "requiredProperties": ["boat_name"],
        "associatedObjects": ["CONTACT", "COMPANY"],
        "properties": [
            {"name": "boat_name", "label": "Name", "type": "string", "fieldType": "text"},
            {"name": "length_m", "label": "Length", "type": "number", "fieldType": "number"}
        ]
    });
    let (status, created) = call(&sim, post.clone(), "/crm/v3/schemas", Some(egg)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_valid(
        &validator(&schemas, "ObjectSchema"),
        "created schema",
        &created,
    );
    let (status, body) = call(&sim, get, "/crm/v3/schemas/nothing_here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_valid(&validator(&schemas, "Error"), "missing schema error", &body);
}

/// The check above has teeth: dropping any required field of a real response fails it.
#[tokio::test]
async fn a_response_missing_a_required_field_is_rejected() {
    let sim = sim().await;
    let spec = spec("v3-contacts.json");
    let simple = validator(&spec, "SimplePublicObject");
    let list = validator(
        &spec,
        "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging",
    );
    let (_, page) = call(
        &sim,
        reqwest::Method::GET,
        "/crm/v3/objects/contacts?limit=2",
        None,
    )
    .await;
    assert!(list.is_valid(&page));
    let object = page["results"][0].clone();
    assert!(simple.is_valid(&object));
    for required in ["id", "properties", "createdAt", "updatedAt", "archived"] {
        let mut broken = object.clone();
        broken.as_object_mut().unwrap().remove(required);
        assert!(
            !simple.is_valid(&broken),
            "dropping {required} must fail validation"
        );
        let mut broken_page = page.clone();
        broken_page["results"][0]
            .as_object_mut()
            .unwrap()
            .remove(required);
        assert!(
            !list.is_valid(&broken_page),
            "dropping results[0].{required} must fail validation"
        );
    }
    let mut wrong_type = object.clone();
    wrong_type["properties"]["hs_object_id"] = json!(42);
    assert!(
        !simple.is_valid(&wrong_type),
        "property values must be strings"
    );
    let mut bad_time = object;
    bad_time["createdAt"] = json!("yesterday");
    assert!(!simple.is_valid(&bad_time), "timestamps must be date-times");
    let mut no_paging_cursor = page;
    no_paging_cursor["paging"]["next"]
        .as_object_mut()
        .unwrap()
        .remove("after");
    assert!(
        !list.is_valid(&no_paging_cursor),
        "paging.next.after is required"
    );
}

#[tokio::test]
async fn association_responses_match_the_published_schemas() {
    let sim = sim().await;
    let post = reqwest::Method::POST;
    let v4 = spec("v4-associations.json");
    let (_, contacts) = call(
        &sim,
        reqwest::Method::GET,
        "/crm/v3/objects/contacts?limit=3",
        None,
    )
    .await;
    let (_, companies) = call(
        &sim,
        reqwest::Method::GET,
        "/crm/v3/objects/companies?limit=3",
        None,
    )
    .await;
    let contact = |i: usize| contacts["results"][i]["id"].as_str().unwrap().to_owned();
    let company = |i: usize| companies["results"][i]["id"].as_str().unwrap().to_owned();

    let read = json!({"inputs": [{"id": contact(0)}, {"id": "999999999"}]});
    let (status, body) = call(
        &sim,
        post.clone(),
        "/crm/v4/associations/contacts/companies/batch/read",
        Some(read),
    )
    .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(
        body["results"][0]["to"][0]["toObjectId"],
        company(0).as_str()
    );
    assert_valid(
        &validator(
            &v4,
            "BatchResponsePublicAssociationMultiWithLabelWithErrors",
        ),
        "batch read",
        &body,
    );

    let create = json!({"inputs": [{"from": {"id": contact(1)}, "to": {"id": company(2)},
                         "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]});
    let (status, body) = call(
        &sim,
        post.clone(),
        "/crm/v4/associations/contacts/companies/batch/create",
        Some(create),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["results"][0]["labels"], json!(["Primary"]));
    assert_valid(
        &validator(&v4, "BatchResponseLabelsBetweenObjectPair"),
        "batch create",
        &body,
    );

    let default = json!({"inputs": [{"from": {"id": contact(2)}, "to": {"id": company(1)}}]});
    let (status, body) = call(
        &sim,
        post.clone(),
        "/crm/v4/associations/contacts/companies/batch/associate/default",
        Some(default),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(
        &validator(&v4, "BatchResponsePublicDefaultAssociation"),
        "default associations",
        &body,
    );

    let (status, body) = call(
        &sim,
        reqwest::Method::GET,
        &format!(
            "/crm/v4/objects/companies/{}/associations/contacts",
            company(2)
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid(
        &validator(
            &v4,
            "CollectionResponseMultiAssociatedObjectWithLabelForwardPaging",
        ),
        "a record's associations",
        &body,
    );

    let spec_list = json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]);
    let (status, body) = call(
        &sim,
        reqwest::Method::PUT,
        &format!(
            "/crm/v4/objects/contacts/{}/associations/companies/{}",
            contact(0),
            company(1)
        ),
        Some(spec_list),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_valid(
        &validator(&v4, "LabelsBetweenObjectPair"),
        "a link made",
        &body,
    );

    let labels = spec("v4-associations-schema.json");
    let (status, body) = call(
        &sim,
        reqwest::Method::GET,
        "/crm/associations/v4/contacts/companies/labels",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid(
        &validator(
            &labels,
            "CollectionResponseAssociationSpecWithLabelNoPaging",
        ),
        "labels",
        &body,
    );
    let (status, body) = call(&sim, post, "/crm/associations/v4/deals/contacts/labels", Some(json!({"label": "Decision maker", "name": "decision_maker", "inverseLabel": "Decides on"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(
        &validator(
            &labels,
            "CollectionResponseAssociationSpecWithLabelNoPaging",
        ),
        "labels created",
        &body,
    );
}
