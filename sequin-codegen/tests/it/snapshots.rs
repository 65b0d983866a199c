//! Snapshot tests of generated output for the tiny `todo` spec.
//!
//! The snapshots under `tests/snapshots/` are committed; set
//! `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change. The Rust
//! snapshot is also compiled (with warnings denied) by `tests/it/compiles.rs`.

use std::path::Path;

fn generated() -> Vec<sequin_codegen::GeneratedFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs");
    let text = std::fs::read_to_string(dir.join("todo.yaml")).unwrap();
    let spec = sequin_codegen::check_source(
        Path::new("tests/specs/todo.yaml"),
        &text,
        &sequin_codegen::current_validator(),
    )
    .unwrap_or_else(|d| panic!("todo.yaml must be valid:\n{d}"));
    sequin_codegen::connector_files(&spec.connector, "tests/specs/todo.yaml").unwrap()
}

#[test]
fn todo_snapshots_match() {
    let snap_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for f in generated() {
        let name = f.path.file_name().unwrap();
        let snap = snap_dir.join(name);
        if update {
            std::fs::write(&snap, &f.contents).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&snap).unwrap_or_default();
        if committed != f.contents {
            stale.push(name.to_string_lossy().into_owned());
        }
    }
    assert!(
        stale.is_empty(),
        "snapshots differ: {stale:?}; review the change and rerun with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generated(), generated());
}

#[test]
fn generated_files_carry_the_header() {
    for f in generated() {
        assert!(
            f.contents
                .lines()
                .next()
                .unwrap()
                .contains(sequin_codegen::HEADER),
            "{} lacks the @generated header",
            f.path.display()
        );
    }
}
