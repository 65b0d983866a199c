//! The committed generated files match the specs (rust-analyzer's habit):
//! editing a spec without regenerating fails `cargo test`.

use std::path::Path;

#[test]
fn generated_files_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let files = match sequin_codegen::generate(root) {
        Ok(f) => f,
        Err(e) => {
            panic!("connector specs do not generate:\n{e}\nfix them, then run `cargo xtask gen`")
        }
    };
    // Each module's spec sibling is one of the files checked.
    let modules = files
        .iter()
        .filter(|f| f.path.extension().is_some_and(|e| e == "rs") && !f.path.ends_with("lib.rs"));
    for m in modules {
        let spec = m.path.with_extension("spec.json");
        assert!(
            files.iter().any(|f| f.path == spec),
            "{} is not generated",
            spec.display()
        );
    }
    let stale = sequin_codegen::stale_files(root, &files);
    assert!(
        stale.is_empty(),
        "generated files are stale:\n{}\nrun `cargo xtask gen` and commit the result",
        stale
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
