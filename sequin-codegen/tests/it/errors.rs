//! Invalid specs: every problem reported at once, each with file:line:column.

use std::path::Path;

fn check(name: &str) -> Vec<String> {
    let path = Path::new("tests/specs/invalid").join(name);
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).unwrap();
    match sequin_codegen::check_source(&path, &text, &sequin_codegen::current_validator()) {
        Ok(_) => panic!("{name} must be rejected"),
        Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn three_planted_errors_are_all_reported_with_positions() {
    let got = check("three_errors.yaml");
    let expected = [
        "tests/specs/invalid/three_errors.yaml:19:18: primary key `uuid` is not a field of object `widget` (fix: declare a field named `uuid` or name an existing one)",
        "tests/specs/invalid/three_errors.yaml:22:38: unknown placeholder `{widget_id}` in `/widgets/{widget_id}` (fix: declare `widget_id` under params, or use one of {id}, {object}, {fields}, {since}, {cursor} or a field of the object)",
        "tests/specs/invalid/three_errors.yaml:25:57: unknown key `max_lenght` (fix: remove it or check its spelling; see connectors/schema.json for the keys allowed at /objects/0/fields/1)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}

#[test]
fn child_objects_and_a_feeds_fallback_are_checked_at_their_places() {
    let got = check("child.yaml");
    let expected = [
        "tests/specs/invalid/child.yaml:24:63: HTTP 401 cannot mean \"this key may not read the feed\" (fix: list client errors other than 401 (a refused key) and 429 (rate limited), e.g. 403)",
        "tests/specs/invalid/child.yaml:36:23: unknown parent object `invoices` (fix: name one of this connector's objects: invoice)",
        "tests/specs/invalid/child.yaml:45:39: the list endpoint `/notes` never uses `{invoice}` (fix: put `{invoice}` where the parent's id goes, e.g. `/v1/invoices/{invoice}/lines`)",
        "tests/specs/invalid/child.yaml:45:74: `notes` is not a field of the parent `invoice` (fix: name the parent's field holding the embedded list, or declare `notes` (type: json) on `invoice`)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}

#[test]
fn update_only_fields_need_an_update_and_cannot_be_required_on_create() {
    let got = check("update_only.yaml");
    let expected = [
        "tests/specs/invalid/update_only.yaml:26:47: field `colour` is update_only but object `widget` has no update endpoint (fix: declare endpoints.update, or make the field read_only)",
        "tests/specs/invalid/update_only.yaml:27:45: field `size` is update_only but object `widget` has no update endpoint (fix: declare endpoints.update, or make the field read_only)",
        "tests/specs/invalid/update_only.yaml:27:78: field `size` is required on create but update_only (fix: set `access: writable` or `create_only`)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}

#[test]
fn link_tables_are_checked_at_their_places() {
    let got = check("links.yaml");
    let expected = [
        "tests/specs/invalid/links.yaml:50:7: unknown placeholder `{kind}` in the link id (fix: use the link columns: {from_id}, {to_id}, {category}, {type_id}, {label})",
        "tests/specs/invalid/links.yaml:53:46: `team` is not an object of this connector (child objects cannot be linked) (fix: name an object of `objects:` by its table name)",
        "tests/specs/invalid/links.yaml:54:15: table `org` is declared twice (fix: give each link table a name no object or other pair has, e.g. `contact_company`)",
        "tests/specs/invalid/links.yaml:56:17: links of discovered objects, but the connector discovers no objects (fix: declare `discovered_objects:` or remove `links.discovered`)",
        "tests/specs/invalid/links.yaml:58:41: `badge` is not an object of this connector (child objects cannot be linked) (fix: key `object_ids` by the table names of `objects:`)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}

#[test]
fn upserts_and_external_ids_are_checked_at_their_places() {
    let got = check("upsert.yaml");
    let expected = [
        "tests/specs/invalid/upsert.yaml:26:15: a batch upsert's results must say which records were created (fix: declare `created:` (the boolean of each result, e.g. `created`))",
        "tests/specs/invalid/upsert.yaml:26:40: the single upsert endpoint `/widgets/{external_field}` does not name `{external_value}` (fix: e.g. `/sobjects/{object}/{external_field}/{external_value}`)",
        "tests/specs/invalid/upsert.yaml:31:50: external id `code` must be settable on create, and not the primary key (fix: set `access: writable` (or `create_only`) on another field than the primary key)",
        "tests/specs/invalid/upsert.yaml:39:15: object `gadget` has an upsert endpoint but no external id field (fix: mark a field `external_id: true`, or set `discovered_fields.field.external_id`)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}

#[test]
fn a_quota_is_checked_at_its_places() {
    let got = check("quota.yaml");
    let expected = [
        "tests/specs/invalid/quota.yaml:22:23: the quota is read with GET (fix: remove `method:` (GET is the default))",
        "tests/specs/invalid/quota.yaml:22:35: unknown placeholder `{id}` in the quota's endpoint `/quota/{id}/{region}` (fix: the quota's endpoint belongs to no object: use connection parameters only, e.g. {api_version})",
        "tests/specs/invalid/quota.yaml:22:35: unknown placeholder `{region}` in the quota's endpoint `/quota/{id}/{region}` (fix: declare `region` under params)",
        "tests/specs/invalid/quota.yaml:27:15: counter name `daily` is empty or used twice (fix: name each counter once, as the API does)",
        "tests/specs/invalid/quota.yaml:27:27: the path of the counter's max is empty (fix: write where the answer holds it, e.g. `daily.Max`)",
    ];
    assert_eq!(got, expected, "got:\n{}", got.join("\n"));
}
