//! The generated Rust snapshot compiles without warnings, its derived
//! `Record` impl round-trips an API record, and it reads a synced row.
#![deny(warnings)]

#[path = "../snapshots/todo.rs"]
mod todo;

use sequin_spec::model::BodyEncoding;
use sequin_spec::record::{Body, Cell, Record};
use serde_json::json;

fn sample() -> serde_json::Value {
    json!({
        "id": "t_1",
        "title": "Write the spec",
        "status": "open",
        "dueOn": "2024-05-01",
        "estimateHours": 2.5,
        "owner": {"email": "ada@example.com"},
        "tags": ["docs", "yaml"],
        "updated_at": 1714521600
    })
}

#[test]
fn decodes_an_api_record() {
    let t = todo::Task::decode(&sample()).unwrap();
    assert_eq!(t.id, "t_1");
    assert_eq!(t.owner_email.as_deref(), Some("ada@example.com"));
    assert_eq!(t.updated_at.unwrap().0, 1_714_521_600_000_000);
    assert_eq!(t.estimate_hours.as_ref().unwrap().0, "2.5");
    let row = t.to_row();
    assert_eq!(row.len(), todo::Task::columns().len());
    assert_eq!(todo::Task::from_row(row).unwrap(), t);
}

#[test]
fn columns_follow_the_spec() {
    let cols = todo::Task::columns();
    let names: Vec<&str> = cols.iter().map(|c| &*c.name).collect();
    assert_eq!(
        names,
        [
            "id",
            "title",
            "status",
            "due_on",
            "estimate_hours",
            "owner_email",
            "tags",
            "updated_at"
        ]
    );
    assert_eq!(todo::Task::PRIMARY_KEY, 0);
    assert_eq!(cols[5].path, "owner.email");
    assert_eq!(&*cols[2].enum_values, ["open", "done"]);
    assert_eq!(todo::object_columns("task").unwrap().len(), 8);
    assert!(todo::object_columns("nope").is_none());
}

#[test]
fn encodes_creates_and_diffs() {
    let t = todo::Task::decode(&sample()).unwrap();
    // A create sends the settable columns only (not `id`, `updated_at`).
    let Body::Json(created) = t.create_body(BodyEncoding::Json, None).unwrap() else {
        panic!("json body expected");
    };
    assert!(created.get("id").is_none() && created.get("updated_at").is_none());
    assert_eq!(created["owner"]["email"], "ada@example.com");
    let mut untitled = t.clone();
    untitled.title = None;
    let err = untitled.create_body(BodyEncoding::Json, None).unwrap_err();
    assert_eq!(
        (err.column.as_str(), err.kind.sqlstate()),
        ("title", "23502")
    );
    let mut new = t.clone();
    new.title = Some("Ship it".into());
    new.status = Some("done".into());
    let Body::Json(body) = new.update_body(&t, BodyEncoding::Json, None).unwrap() else {
        panic!("json body expected");
    };
    assert_eq!(body, json!({"title": "Ship it", "status": "done"}));
    let mut bad = t.clone();
    bad.status = Some("later".into());
    let v = bad.update_body(&t, BodyEncoding::Json, None).unwrap_err();
    assert_eq!(v.kind.sqlstate(), "23514");
    let mut owner = t.clone();
    owner.owner_email = Some("b@example.com".into());
    let v = owner.update_body(&t, BodyEncoding::Form, None).unwrap_err();
    assert_eq!(v.kind.sqlstate(), "428C9");
    assert_eq!(
        Cell::Null,
        todo::Task::from_row(vec![Cell::Text("x".into())])
            .unwrap()
            .to_row()[1]
    );
}

#[test]
fn descriptor_round_trips() {
    let c: sequin_spec::Connector = serde_json::from_str(todo::SPEC_JSON).unwrap();
    assert_eq!(c.name, todo::NAME);
    assert_eq!(c.display_name, todo::DISPLAY_NAME);
    assert_eq!(c.objects[0].fields.len(), todo::Task::columns().len());
}

#[test]
fn deserializes_a_synced_row() {
    // A row as Postgres's row_to_json renders it, metadata columns included.
    let row = json!({
        "id": "t_1",
        "title": "Write the spec",
        "status": "open",
        "due_on": "2024-05-01",
        "estimate_hours": 2.50,
        "owner_email": null,
        "tags": ["docs"],
        "updated_at": "2024-05-01T00:00:00+00:00",
        "_sequin_synced_at": "2024-05-01T00:00:01.5+00:00",
        "_sequin_updated_at": null
    });
    let t: todo::Task = serde_json::from_value(row).unwrap();
    assert_eq!(t.id, "t_1");
    assert_eq!(t.due_on.unwrap().0, 19844);
    assert_eq!(t.estimate_hours.unwrap().0, "2.5");
    assert_eq!(t.owner_email, None);
    assert_eq!(t.tags, Some(vec!["docs".to_string()]));
    assert_eq!(t.updated_at.unwrap().0, 1_714_521_600_000_000);
    let exact: todo::Task =
        serde_json::from_value(json!({"id": "t_2", "estimate_hours": "2.50"})).unwrap();
    assert_eq!(exact.estimate_hours.unwrap().0, "2.50");
    let err = serde_json::from_value::<todo::Task>(json!({"title": "no id"})).unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
    let err =
        serde_json::from_value::<todo::Task>(json!({"id": "t", "due_on": "May 1"})).unwrap_err();
    assert!(err.to_string().contains("not a YYYY-MM-DD date"), "{err}");
}
