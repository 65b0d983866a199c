//! The set of synced tables, updatable at runtime while sessions run.
//!
//! Name resolution rule (documented for users): a statement is intercepted
//! when it writes a synced table **named with its schema** (`stripe.customer`,
//! `"stripe"."customer"`). Unqualified names are not resolved through the
//! session's `search_path`: the proxy cannot see every `SET search_path`
//! (functions, `ALTER ROLE ... SET`, `options=-c ...`) without asking the
//! server, and guessing wrong would silently skip the API. A write that is not
//! intercepted is not lost: the guard trigger on every synced table rejects it
//! with a message that says to qualify the table and use the proxy.
//!
//! Sessions read a snapshot (`Arc`) and refresh it only when the version
//! counter moved, so the hot path costs one atomic load per inspected message.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The table name standing for every table of its schema.
pub const ALL_TABLES: &str = "*";

/// A schema-qualified table name (as stored by Postgres: unquoted
/// identifiers are lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// An immutable snapshot of the synced tables.
#[derive(Debug, Default)]
pub struct SyncedSet {
    tables: HashSet<TableName>,
    /// Distinct schema names and listed table names, lowercased, for the
    /// pre-filter (a table named without its schema, resolved through the
    /// session's search_path, contains only its own name).
    words: Vec<Vec<u8>>,
}

impl SyncedSet {
    fn new(tables: HashSet<TableName>) -> Self {
        let mut words: Vec<Vec<u8>> = tables
            .iter()
            .flat_map(|t| [&t.schema, &t.table])
            .filter(|w| w.as_str() != ALL_TABLES)
            .map(|w| w.to_ascii_lowercase().into_bytes())
            .collect();
        words.sort();
        words.dedup();
        SyncedSet { tables, words }
    }

    /// Whether a table named `table` without a schema may be a synced one:
    /// a listed table has that name. Which one it is depends on the
    /// session's search_path, so the interceptor asks the server.
    pub fn may_be_unqualified(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t.table == table)
    }

    /// Whether `schema.table` is synced: listed, or in a schema listed
    /// with the table [`ALL_TABLES`] (tables created at run time are then
    /// synced from their first moment).
    pub fn contains(&self, schema: &str, table: &str) -> bool {
        // Avoids allocating a key for the lookup: the set is small and this
        // runs only for statements that passed the pre-filter and a parse.
        self.tables
            .iter()
            .any(|t| t.schema == schema && (t.table == table || t.table == ALL_TABLES))
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The cheap pre-filter: can `sql` possibly name a synced table? True
    /// when it contains a synced schema name or a listed table's name (ASCII
    /// case-insensitively), or a Unicode-escaped identifier (`U&"\0073tripe"`
    /// names `stripe` without containing it). False positives only cost a
    /// parse; false negatives are impossible for qualified names, because a
    /// qualified name contains its schema or an escape, and for unqualified
    /// names of listed tables.
    pub fn may_mention(&self, sql: &[u8]) -> bool {
        self.words
            .iter()
            .any(|s| contains_ignore_ascii_case(sql, s))
            || contains_ignore_ascii_case(sql, b"u&\"")
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableName> {
        self.tables.iter()
    }
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if haystack.len() < needle.len() {
        return false;
    }
    let upper = first.to_ascii_uppercase();
    (0..=haystack.len() - needle.len()).any(|i| {
        let b = haystack[i];
        (b == first || b == upper) && haystack[i + 1..i + needle.len()].eq_ignore_ascii_case(rest)
    })
}

#[derive(Debug, Default)]
struct Inner {
    current: RwLock<Arc<SyncedSet>>,
    version: AtomicU64,
}

/// The shared, runtime-updatable set of synced tables. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct SyncedTables {
    inner: Arc<Inner>,
}

impl SyncedTables {
    pub fn new(tables: impl IntoIterator<Item = TableName>) -> Self {
        let s = SyncedTables::default();
        s.replace(tables);
        s
    }

    /// Replaces the whole set; sessions see it from their next statement.
    pub fn replace(&self, tables: impl IntoIterator<Item = TableName>) {
        let set = Arc::new(SyncedSet::new(tables.into_iter().collect()));
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = set;
        self.inner.version.fetch_add(1, Ordering::Release);
    }

    /// Adds one table.
    pub fn insert(&self, table: TableName) {
        let mut tables: HashSet<TableName> = self.snapshot().tables.clone();
        tables.insert(table);
        self.replace(tables);
    }

    /// Removes one table.
    pub fn remove(&self, table: &TableName) {
        let mut tables: HashSet<TableName> = self.snapshot().tables.clone();
        tables.remove(table);
        self.replace(tables);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<SyncedSet> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A counter that changes on every update.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter_matches_schema_names_case_insensitively() {
        let s = SyncedTables::new([TableName::new("stripe", "customer")]);
        let snap = s.snapshot();
        assert!(snap.may_mention(b"insert into STRIPE.customer values (1)"));
        assert!(snap.may_mention(b"update \"stripe\".\"customer\" set x=1"));
        assert!(!snap.may_mention(b"select abalance from pgbench_accounts where aid = $1"));
        assert!(snap.may_mention(b"update U&\"\\0073tripe\".customer set x=1"));
        assert!(snap.contains("stripe", "customer"));
        assert!(!snap.contains("stripe", "charge"));
    }

    #[test]
    fn updates_bump_the_version_and_are_visible() {
        let s = SyncedTables::default();
        let v0 = s.version();
        assert!(s.snapshot().is_empty());
        s.insert(TableName::new("hubspot", "contact"));
        assert!(s.version() > v0);
        assert!(s.snapshot().contains("hubspot", "contact"));
        s.remove(&TableName::new("hubspot", "contact"));
        assert!(s.snapshot().is_empty());
    }
}

#[cfg(test)]
mod all_tables_tests {
    use super::*;

    #[test]
    fn a_schema_wildcard_covers_tables_created_later() {
        let s = SyncedSet::new(
            [TableName::new("airtable", ALL_TABLES)]
                .into_iter()
                .collect(),
        );
        assert!(s.contains("airtable", "contacts"));
        assert!(!s.contains("public", "contacts"));
        assert!(s.may_mention(b"insert into AIRTABLE.contacts values (1)"));
    }
}
