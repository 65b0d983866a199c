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

    /// The static tables the DDL creates, each with the statements that
    /// create it (its `CREATE TABLE`, indexes and comments): the generated
    /// file is a header, `CREATE SCHEMA`, then one section per table opening
    /// with its `CREATE TABLE`.
    pub fn table_sections(&self) -> Vec<(&'static str, &'static str)> {
        const OPENING: &str = "CREATE TABLE IF NOT EXISTS :\"schema\".";
        let ddl: &'static str = self.compiled.ddl;
        let mut starts: Vec<usize> = ddl.match_indices(OPENING).map(|(at, _)| at).collect();
        starts.push(ddl.len());
        starts
            .windows(2)
            .map(|w| {
                let section = &ddl[w[0]..w[1]];
                let name = section[OPENING.len()..]
                    .split(' ')
                    .next()
                    .expect("a CREATE TABLE names its table");
                (name, section)
            })
            .collect()
    }

    /// The DDL of the static tables among `wanted` in `schema` (with the
    /// schema itself): a connection creates only the tables it syncs, so a
    /// thousand connections of a seven-object selection make 7,000 tables,
    /// not the connector's every table a thousand times.
    pub fn ddl_of(&self, schema: &str, wanted: &dyn Fn(&str) -> bool) -> String {
        let mut sql = String::from("CREATE SCHEMA IF NOT EXISTS :\"schema\";\n\n");
        for (name, section) in self.table_sections() {
            if wanted(name) {
                sql.push_str(section);
            }
        }
        sql.replace(":\"schema\"", &quote_ident(schema))
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
            // One section per object and link table, naming only its table.
            let sections = l.table_sections();
            let mut names: Vec<&str> = sections.iter().map(|(n, _)| *n).collect();
            let mut tables: Vec<&str> = l
                .spec
                .objects
                .iter()
                .map(|o| o.name.as_str())
                .chain(
                    l.spec
                        .links
                        .iter()
                        .flat_map(|k| k.pairs.iter().map(|p| p.name.as_str())),
                )
                .collect();
            names.sort();
            tables.sort();
            assert_eq!(names, tables, "{}", l.spec.name);
            for (name, section) in &sections {
                for (at, _) in section.match_indices(":\"schema\".") {
                    let named = section[at + 10..].split([' ', '.', '\n']).next().unwrap();
                    assert_eq!(named, *name, "{}: {section}", l.spec.name);
                }
            }
            let whole = l.ddl_of("s", &|_| true);
            let full = l.ddl("s");
            assert_eq!(
                whole.trim_end(),
                full[full.find("CREATE SCHEMA").unwrap()..].trim_end()
            );
            let ddl = l.ddl("My Schema");
            assert!(!ddl.contains(":\"schema\""));
            if !l.spec.objects.is_empty() {
                assert!(ddl.contains("\"My Schema\"."), "{ddl}");
            }
        }
    }
}
