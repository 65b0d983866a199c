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
        "tests/specs/invalid/three_errors.yaml:22:38: unknown placeholder `{widget_id}` in `/widgets/{widget_id}` (fix: declare `widget_id` under params, or use one of {id}, {object}, {fields}, {since} or a field of the object)",
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
