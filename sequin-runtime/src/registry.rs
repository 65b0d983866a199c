//! The connectors compiled into this binary.
//!
//! Each module of the generated crate `sequin-connectors` includes its
//! validated spec as JSON; this module turns them into
//! [`sequin_spec::Connector`] models once and hands out DDL for a given
//! connection schema.

use std::sync::OnceLock;

use sequin_spec::Connector;
use sequin_spec::naming::quote_ident;
use sequin_spec::record::Column;

use sequin_connectors::{ALL, Compiled};

/// A compiled-in connector: its model plus generated artifacts.
pub struct Loaded {
    pub spec: Connector,
    compiled: &'static Compiled,
}

impl Loaded {
    /// The DDL of the connector's static tables in `schema`.
    pub fn ddl(&self, schema: &str) -> String {
        self.compiled
            .ddl
            .replace(":\"schema\"", &quote_ident(schema))
    }

    /// Columns of a static object (from its generated typed record).
    pub fn object_columns(&self, table: &str) -> Option<&'static [Column]> {
        (self.compiled.object_columns)(table)
    }
}

/// Every compiled-in connector, sorted by name.
pub fn all() -> &'static [Loaded] {
    static LOADED: OnceLock<Vec<Loaded>> = OnceLock::new();
    LOADED.get_or_init(|| {
        ALL.iter()
            .map(|c| Loaded {
                spec: serde_json::from_str(c.spec_json).unwrap_or_else(|e| {
                    panic!(
                        "generated descriptor of `{}` does not parse ({e}); run `cargo xtask gen`",
                        c.name
                    )
                }),
                compiled: c,
            })
            .collect()
    })
}

/// A compiled-in connector by name.
/// Each connection of `config` with its connector (the config is checked:
/// every connector is compiled in), for `store::migrate`.
pub fn of_config(config: &crate::config::Config) -> Vec<(&str, &'static Loaded)> {
    config
        .connections
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                get(&c.connector).expect("config is checked"),
            )
        })
        .collect()
}

pub fn get(name: &str) -> Option<&'static Loaded> {
    all().iter().find(|l| l.spec.name == name)
}

/// Names of every compiled-in connector (for error messages).
pub fn names() -> Vec<&'static str> {
    all().iter().map(|l| l.spec.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_parse_and_match_typed_records() {
        for l in all() {
            for o in &l.spec.objects {
                let cols = l
                    .object_columns(&o.name)
                    .unwrap_or_else(|| panic!("{}.{} has no typed record", l.spec.name, o.name));
                let names: Vec<String> = o.fields.iter().map(|f| f.column_name()).collect();
                let typed: Vec<&str> = cols.iter().map(|c| &*c.name).collect();
                assert_eq!(names, typed, "{}.{}", l.spec.name, o.name);
            }
            let ddl = l.ddl("My Schema");
            assert!(!ddl.contains(":\"schema\""));
            if !l.spec.objects.is_empty() {
                assert!(ddl.contains("\"My Schema\"."), "{ddl}");
            }
        }
    }
}
