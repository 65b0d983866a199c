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

use aho_corasick::AhoCorasick;

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
    /// The pre-filter's automaton: distinct schema names and listed table
    /// names, lowercased (a table named without its schema, resolved
    /// through the session's search_path, contains only its own name),
    /// then [`UNICODE_ESCAPE`] as the last pattern. One pass over a
    /// statement finds them all, however many tables are synced (an account
    /// syncs dozens; a scan per name cost more than the rest of the proxy).
    words: Option<AhoCorasick>,
}

/// `U&"`: a Unicode-escaped identifier (`U&"\0073tripe"` names `stripe`
/// without containing it), matched anywhere.
const UNICODE_ESCAPE: &str = "u&\"";

impl SyncedSet {
    fn new(tables: HashSet<TableName>) -> Self {
        let mut words: Vec<String> = tables
            .iter()
            .flat_map(|t| [&t.schema, &t.table])
            .filter(|w| w.as_str() != ALL_TABLES)
            .map(|w| w.to_ascii_lowercase())
            .collect();
        words.sort();
        words.dedup();
        words.push(UNICODE_ESCAPE.to_string());
        let words = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&words)
            .ok();
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
    /// case-insensitively) as a whole identifier, or a Unicode-escaped
    /// identifier anywhere. False positives only cost a parse; false
    /// negatives are impossible for qualified names, because a qualified
    /// name contains its schema or an escape, and for unqualified names of
    /// listed tables.
    ///
    /// "As a whole identifier": the bytes on either side are not identifier
    /// bytes (letters, digits, `_`, `$`, or any non-ASCII byte), so
    /// `pgbench_accounts` does not name `account`. An identifier naming a
    /// synced schema or table has exactly these bounds: whitespace, an
    /// operator, punctuation, `.` or a quote (`"stripe"`; a quoted name
    /// that merely contains the word, `"my stripe"`, is another name and
    /// may pass, costing a parse). A name inside a longer identifier is
    /// that other identifier, which is not synced.
    pub fn may_mention(&self, sql: &[u8]) -> bool {
        let Some(words) = &self.words else {
            // The automaton could not be built (it cannot fail for a few
            // thousand short names): every statement is parsed.
            return !self.tables.is_empty();
        };
        let escape = words.patterns_len() - 1;
        words.find_overlapping_iter(sql).any(|m| {
            m.pattern().as_usize() == escape
                || (!sql[..m.start()].last().is_some_and(|&b| identifier_byte(b))
                    && !sql.get(m.end()).is_some_and(|&b| identifier_byte(b)))
        })
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableName> {
        self.tables.iter()
    }
}

/// A byte that continues an unquoted Postgres identifier (the lexer's
/// `ident_cont`: letters, digits, `_`, `$` and every byte of a non-ASCII
/// character).
fn identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
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
    }

    #[test]
    fn prefilter_matches_whole_identifiers_only() {
        let s = SyncedTables::new([
            TableName::new("stripe", "customer"),
            TableName::new("stripe", "account"),
        ]);
        let snap = s.snapshot();
        // A listed name inside a longer identifier is another identifier.
        for other in [
            "select abalance from pgbench_accounts where aid = $1",
            "select * from public.accounts",
            "select * from customers_v2",
            "select * from stripe_archive.x",
            "select account$1 from t",
            "select * from \u{e9}customer",
        ] {
            assert!(!snap.may_mention(other.as_bytes()), "{other}");
        }
        // Every way a statement names them: bounded by whitespace, `.`,
        // quotes, operators, parentheses, commas, comments, the ends.
        for naming in [
            "insert into stripe.customer values (1)",
            "INSERT INTO Stripe . Customer VALUES (1)",
            "update \"stripe\".\"customer\" set x=1",
            "delete from customer",
            "select * from x,account",
            "select * from(account)",
            "delete from/**/stripe.x",
            "stripe",
            "with a as (select 1) insert into account select * from a;",
            "insert into u&\"\\0073tripe\".x values (1)",
            "select * from pgbench_accounts, stripe.customer",
        ] {
            assert!(snap.may_mention(naming.as_bytes()), "{naming}");
        }
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
