//! The catalog: what Sequin knows of each connection's API, shared by
//! [`crate::sync`] and [`crate::write`] (both depend on it, neither on the
//! other).
//!
//! - [`Connection`] (`connection.rs`): a connection's spec (with its
//!   rate-limit override) and API client, one rate-limit budget per
//!   connection in the process;
//! - [`plan`]: an object's plan (table, endpoints, strategies, update
//!   marker), from the spec or from discovery;
//! - `discover.rs`: objects and fields known only at run time (Airtable
//!   tables, custom fields), looked up through the API.

mod connection;
mod discover;
pub mod plan;

pub use connection::{Connection, wanted};
pub use plan::{Marker, ObjectPlan, now_us};

use crate::api;

/// Why a connection's API client or object plans could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be built, or a discovery request failed.
    #[error(transparent)]
    Api(Box<api::ApiError>),
    #[error("object `{object}` has no pagination in the {connector} spec")]
    NoPagination { connector: String, object: String },
}

impl From<api::ApiError> for Error {
    fn from(e: api::ApiError) -> Error {
        Error::Api(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The `.rs` files under `src/<dir>` with their text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
        assert!(!out.is_empty(), "no sources under {}", root.display());
        out
    }

    #[test]
    fn sync_and_write_depend_on_the_catalog_not_on_each_other() {
        for (dir, other) in [("write", "crate::sync"), ("sync", "crate::write")] {
            for (path, text) in sources(dir) {
                assert!(!text.contains(other), "{path} uses {other}");
            }
        }
        for (path, text) in sources("catalog") {
            for upper in ["crate::sync", "crate::write"] {
                assert!(
                    !text
                        .lines()
                        .any(|l| l.starts_with("use ") && l.contains(upper)),
                    "{path} uses {upper}"
                );
            }
        }
    }
}
