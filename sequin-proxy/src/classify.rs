//! Statement classification with the real Postgres grammar (pg_query):
//! which statements of a query string write which synced tables, through
//! CTEs, `EXPLAIN`, `PREPARE`, `COPY ... FROM` and `TRUNCATE` too.
//!
//! For a statement that writes a synced table, it also records what
//! write-through needs of its text ([`Shape`]: the target's alias and the
//! RETURNING clause, an INSERT's ON CONFLICT clause), from the same parse
//! tree and the statement's tokens, so nothing downstream parses SQL again.
//!
//! Only text that passes [`SyncedSet::may_mention`] is parsed, and results are
//! cached by statement text (the prepared-statement-name cache lives in the
//! session, see `frontend`). The cache is dropped when the synced set changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pg_query::NodeEnum;
use pg_query::protobuf::{RangeVar, Token, WithClause};

use crate::synced::{SyncedSet, SyncedTables, TableName};

/// How a statement writes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
    Merge,
    /// `COPY ... FROM`.
    Copy,
    Truncate,
}

/// One synced table written by a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWrite {
    pub table: TableName,
    pub kind: WriteKind,
    /// Written by a data-modifying CTE (`WITH x AS (INSERT ...)`), not by the
    /// statement's main clause.
    pub in_cte: bool,
    /// The statement the write is wrapped in, if any.
    pub via: Via,
}

/// What a write is wrapped in, when it is not a statement of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Via {
    /// The statement itself (or a CTE of it).
    #[default]
    Statement,
    /// `EXPLAIN ANALYZE` (which executes it; plain `EXPLAIN` does not, and
    /// is no write).
    ExplainAnalyze,
    /// `PREPARE name AS ...` (SQL-level; the later `EXECUTE` runs it).
    Prepare,
    /// `COPY (... RETURNING ...) TO`.
    CopyTo,
    /// `CREATE TABLE AS`, `DECLARE CURSOR`.
    Other,
}

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedStatement {
    /// The statement's own text (a slice of the query string, trimmed).
    pub sql: String,
    /// Synced tables it writes; empty when it writes none.
    pub writes: Vec<TableWrite>,
    /// What write-through needs of its text (default when it writes no
    /// synced table).
    pub shape: Shape,
}

/// What write-through needs to know of an INSERT, UPDATE or DELETE's text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The RETURNING list's text (`id, upper(name) AS n`), if any, with
    /// `schema.table.` qualifications of the target rewritten to the alias.
    pub returning: Option<String>,
    /// Whether the RETURNING list uses `$n` parameters.
    pub returning_params: bool,
    /// Where the RETURNING clause starts in the statement's text
    /// ([`ClassifiedStatement::sql`]): the statement without it is the text
    /// before.
    pub returning_at: Option<usize>,
    /// The name the statement gives the target table (its alias, else the
    /// table's name), which RETURNING expressions refer to.
    pub alias: String,
    /// An INSERT's `ON CONFLICT` clause, if it has one.
    pub on_conflict: Option<OnConflict>,
}

/// An INSERT's `ON CONFLICT` clause: what write-through turns into the
/// API's upsert (or refuses, naming what would work).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnConflict {
    /// The conflict target's columns (`ON CONFLICT (a, b)`), as Postgres
    /// resolves the names; an expression in it is kept as `None`.
    pub target: Vec<Option<String>>,
    /// `ON CONFLICT ON CONSTRAINT name`.
    pub constraint: Option<String>,
    /// The target has a `WHERE` (a partial index's predicate).
    pub target_where: bool,
    /// `DO UPDATE` (else `DO NOTHING`).
    pub update: bool,
    /// `DO UPDATE SET`'s assignments: each column, with the column of
    /// `EXCLUDED` it takes when the value is just `EXCLUDED.<column>`.
    pub set: Vec<(String, Option<String>)>,
    /// `DO UPDATE SET ... WHERE`.
    pub update_where: bool,
    /// The INSERT's column list (empty when it names none).
    pub insert_columns: Vec<String>,
    /// Where the clause starts and ends in the statement's text: the
    /// statement without it is the text before `start` and from `end`.
    pub start: usize,
    pub end: usize,
    /// Whether the clause uses `$n` parameters.
    pub params: bool,
}

/// The classification of a whole query string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    pub statements: Vec<ClassifiedStatement>,
    /// The parser's error when the text is not valid SQL; such text is never
    /// intercepted (the server reports the error to the client itself).
    pub parse_error: Option<String>,
}

impl Classification {
    /// Whether any statement writes a synced table.
    pub fn writes_synced(&self) -> bool {
        self.statements.iter().any(|s| !s.writes.is_empty())
    }
}

/// Parses `sql` and finds writes to tables in `synced`.
pub fn classify(sql: &str, synced: &SyncedSet) -> Classification {
    let parsed = match pg_query::parse(sql) {
        Ok(p) => p,
        Err(e) => {
            return Classification {
                statements: Vec::new(),
                parse_error: Some(e.to_string()),
            };
        }
    };
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(sql.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(n) => (start + n).min(sql.len()),
        };
        let text = sql.get(start..end).unwrap_or(sql).trim();
        let mut found = Vec::new();
        let node = raw.stmt.as_ref().and_then(|s| s.node.as_ref());
        if let Some(node) = node {
            walk(node, false, Via::Statement, &mut found);
        }
        // An unqualified name is kept with an empty schema when a synced
        // table has that name: the session's search_path decides, and the
        // interceptor asks the server which table it is.
        let writes: Vec<TableWrite> = found
            .into_iter()
            .filter(|w| {
                if w.rv.schemaname.is_empty() {
                    synced.may_be_unqualified(&w.rv.relname)
                } else {
                    synced.contains(&w.rv.schemaname, &w.rv.relname)
                }
            })
            .map(|w| TableWrite {
                table: TableName::new(w.rv.schemaname.clone(), w.rv.relname.clone()),
                kind: w.kind,
                in_cte: w.in_cte,
                via: w.via,
            })
            .collect();
        let shape = if writes.is_empty() {
            Shape::default()
        } else {
            shape(text, node)
        };
        statements.push(ClassifiedStatement {
            sql: text.to_owned(),
            writes,
            shape,
        });
    }
    Classification {
        statements,
        parse_error: None,
    }
}

/// The shape of one statement: the target's alias from its parse tree
/// `node`, the RETURNING clause from the tokens of its text.
pub fn shape(sql: &str, node: Option<&NodeEnum>) -> Shape {
    let mut out = Shape::default();
    let rel = match node {
        Some(NodeEnum::InsertStmt(s)) => s.relation.as_ref(),
        Some(NodeEnum::UpdateStmt(s)) => s.relation.as_ref(),
        Some(NodeEnum::DeleteStmt(s)) => s.relation.as_ref(),
        _ => None,
    };
    let (schema, table) = match rel {
        Some(r) => {
            out.alias = r
                .alias
                .as_ref()
                .map(|a| a.aliasname.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| r.relname.clone());
            (r.schemaname.as_str(), r.relname.as_str())
        }
        None => ("", ""),
    };
    let Ok(scan) = pg_query::scan(sql) else {
        return out;
    };
    let mut depth = 0i32;
    let mut at = None;
    let mut conflict_at = None;
    for (i, t) in scan.tokens.iter().enumerate() {
        match Token::try_from(t.token) {
            Ok(Token::Ascii40) => depth += 1,
            Ok(Token::Ascii41) => depth -= 1,
            Ok(Token::Returning) if depth == 0 => at = Some(i),
            Ok(Token::On)
                if depth == 0
                    && scan.tokens.get(i + 1).map(|n| Token::try_from(n.token))
                        == Some(Ok(Token::Conflict)) =>
            {
                conflict_at = Some(i)
            }
            _ => {}
        }
    }
    if let (Some(NodeEnum::InsertStmt(s)), Some(c)) = (node, conflict_at) {
        out.on_conflict = s.on_conflict_clause.as_deref().map(|clause| {
            let end = at
                .map(|i| scan.tokens[i].start as usize)
                .unwrap_or_else(|| sql.trim_end().trim_end_matches(';').len());
            let start = scan.tokens[c].start as usize;
            let params = scan.tokens[c..at.unwrap_or(scan.tokens.len())]
                .iter()
                .any(|t| Token::try_from(t.token) == Ok(Token::Param));
            on_conflict(clause, &s.cols, (start, end), params)
        });
    }
    if let Some(i) = at {
        out.returning_at = usize::try_from(scan.tokens[i].start).ok();
        let tokens = &scan.tokens[i + 1..];
        out.returning_params = tokens
            .iter()
            .any(|t| Token::try_from(t.token) == Ok(Token::Param));
        out.returning = Some(returning_list(
            sql,
            scan.tokens[i].end as usize,
            tokens,
            (schema, table),
            &out.alias,
        ));
    }
    out
}

/// What an `ON CONFLICT` clause says, from its parse tree.
fn on_conflict(
    clause: &pg_query::protobuf::OnConflictClause,
    cols: &[pg_query::protobuf::Node],
    (start, end): (usize, usize),
    params: bool,
) -> OnConflict {
    use pg_query::protobuf::OnConflictAction;
    let infer = clause.infer.as_deref();
    let target = infer
        .map(|i| {
            i.index_elems
                .iter()
                .map(|e| match &e.node {
                    Some(NodeEnum::IndexElem(x)) if x.expr.is_none() => Some(x.name.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let set = clause
        .target_list
        .iter()
        .filter_map(|t| match &t.node {
            Some(NodeEnum::ResTarget(r)) => Some((r.name.clone(), excluded_column(r))),
            _ => None,
        })
        .collect();
    let insert_columns = cols
        .iter()
        .filter_map(|c| match &c.node {
            Some(NodeEnum::ResTarget(r)) => Some(r.name.clone()),
            _ => None,
        })
        .collect();
    OnConflict {
        target,
        constraint: infer.map(|i| i.conname.clone()).filter(|n| !n.is_empty()),
        target_where: infer.is_some_and(|i| i.where_clause.is_some()),
        update: clause.action == OnConflictAction::OnconflictUpdate as i32,
        set,
        update_where: clause.where_clause.is_some(),
        insert_columns,
        start,
        end,
        params,
    }
}

/// The column of `EXCLUDED` an assignment takes, when its value is just
/// `EXCLUDED.<column>` (and it assigns a whole column, no subscript).
fn excluded_column(r: &pg_query::protobuf::ResTarget) -> Option<String> {
    if !r.indirection.is_empty() {
        return None;
    }
    let Some(NodeEnum::ColumnRef(c)) = r.val.as_deref().and_then(|v| v.node.as_ref()) else {
        return None;
    };
    let names: Vec<&str> = c
        .fields
        .iter()
        .filter_map(|f| match &f.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [table, column] if *table == "excluded" && names.len() == c.fields.len() => {
            Some(column.to_string())
        }
        _ => None,
    }
}

/// The RETURNING list's text from `pos` on. `schema.table.column` (as ORMs
/// write it) names the target; the list is recomputed over the rows under
/// the bare alias, so such names are rewritten to `alias.column`.
fn returning_list(
    sql: &str,
    mut pos: usize,
    tokens: &[pg_query::protobuf::ScanToken],
    (schema, table): (&str, &str),
    alias: &str,
) -> String {
    let name_at = |k: usize| {
        tokens
            .get(k)
            .and_then(|t| sql.get(t.start as usize..t.end as usize))
            .map(normalize)
    };
    let dot_at = |k: usize| {
        tokens
            .get(k)
            .is_some_and(|t| Token::try_from(t.token) == Ok(Token::Ascii46))
    };
    let mut text = String::new();
    let mut k = 0;
    while k < tokens.len() {
        let qualified = !schema.is_empty()
            && name_at(k).as_deref() == Some(schema)
            && dot_at(k + 1)
            && name_at(k + 2).as_deref() == Some(table)
            && dot_at(k + 3);
        if qualified {
            text.push_str(sql.get(pos..tokens[k].start as usize).unwrap_or_default());
            text.push_str(&format!("\"{}\"", alias.replace('"', "\"\"")));
            pos = tokens[k + 2].end as usize;
            k += 3;
        } else {
            k += 1;
        }
    }
    text.push_str(sql.get(pos..).unwrap_or_default());
    text.trim().trim_end_matches(';').trim().to_string()
}

/// An identifier token as Postgres resolves it: quoted as written,
/// unquoted folded to lower case.
fn normalize(token: &str) -> String {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(q) => q.replace("\"\"", "\""),
        None => token.to_lowercase(),
    }
}

/// A relation a statement writes, as found in the parse tree.
struct Found<'a> {
    rv: &'a RangeVar,
    kind: WriteKind,
    in_cte: bool,
    via: Via,
}

/// Collects every relation a statement writes (synced or not).
fn walk<'a>(node: &'a NodeEnum, in_cte: bool, via: Via, out: &mut Vec<Found<'a>>) {
    let mut target = |rv: &'a Option<RangeVar>, kind| {
        if let Some(rv) = rv {
            out.push(Found {
                rv,
                kind,
                in_cte,
                via,
            });
        }
    };
    match node {
        NodeEnum::InsertStmt(s) => {
            target(&s.relation, WriteKind::Insert);
            with(&s.with_clause, via, out);
            if let Some(n) = s.select_stmt.as_ref().and_then(|n| n.node.as_ref()) {
                walk(n, in_cte, via, out);
            }
        }
        NodeEnum::UpdateStmt(s) => {
            target(&s.relation, WriteKind::Update);
            with(&s.with_clause, via, out);
        }
        NodeEnum::DeleteStmt(s) => {
            target(&s.relation, WriteKind::Delete);
            with(&s.with_clause, via, out);
        }
        NodeEnum::MergeStmt(s) => {
            target(&s.relation, WriteKind::Merge);
            with(&s.with_clause, via, out);
        }
        NodeEnum::SelectStmt(s) => walk_select(s, via, out),
        NodeEnum::CopyStmt(s) => {
            if s.is_from {
                target(&s.relation, WriteKind::Copy);
            }
            sub(&s.query, in_cte, Via::CopyTo, out);
        }
        NodeEnum::TruncateStmt(s) => {
            for r in &s.relations {
                if let Some(NodeEnum::RangeVar(rv)) = &r.node {
                    out.push(Found {
                        rv,
                        kind: WriteKind::Truncate,
                        in_cte,
                        via,
                    });
                }
            }
        }
        // EXPLAIN ANALYZE executes its statement, plain EXPLAIN does not.
        NodeEnum::ExplainStmt(s) if explains_analyze(s) => {
            sub(&s.query, in_cte, Via::ExplainAnalyze, out)
        }
        NodeEnum::ExplainStmt(_) => {}
        // A PREPARE'd write runs later through SQL-level EXECUTE, which the
        // proxy cannot see into: refusing it at PREPARE time is the seam.
        NodeEnum::PrepareStmt(s) => sub(&s.query, in_cte, Via::Prepare, out),
        NodeEnum::CreateTableAsStmt(s) => sub(&s.query, in_cte, Via::Other, out),
        NodeEnum::DeclareCursorStmt(s) => sub(&s.query, in_cte, Via::Other, out),
        _ => {}
    }
}

/// Whether an EXPLAIN has the ANALYZE option on (`ANALYZE`, `(ANALYZE)`,
/// `(ANALYZE true)`, `(ANALYZE on)`, ...).
fn explains_analyze(s: &pg_query::protobuf::ExplainStmt) -> bool {
    s.options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze") => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                None => true,
                Some(NodeEnum::Boolean(b)) => b.boolval,
                Some(NodeEnum::String(v)) => !matches!(
                    v.sval.to_ascii_lowercase().as_str(),
                    "false" | "off" | "no" | "0"
                ),
                Some(NodeEnum::Integer(i)) => i.ival != 0,
                Some(_) => true,
            }
        }
        _ => false,
    })
}

fn sub<'a>(
    query: &'a Option<Box<pg_query::protobuf::Node>>,
    in_cte: bool,
    via: Via,
    out: &mut Vec<Found<'a>>,
) {
    if let Some(n) = query.as_ref().and_then(|n| n.node.as_ref()) {
        walk(n, in_cte, via, out);
    }
}

fn with<'a>(w: &'a Option<WithClause>, via: Via, out: &mut Vec<Found<'a>>) {
    let Some(w) = w else { return };
    for cte in &w.ctes {
        if let Some(NodeEnum::CommonTableExpr(c)) = &cte.node {
            sub(&c.ctequery, true, via, out);
        }
    }
}

/// A SELECT writes only through its WITH clause, also in UNION arms.
fn walk_select<'a>(s: &'a pg_query::protobuf::SelectStmt, via: Via, out: &mut Vec<Found<'a>>) {
    with(&s.with_clause, via, out);
    for side in [&s.larg, &s.rarg].into_iter().flatten() {
        walk_select(side, via, out);
    }
}

/// Most distinct statement texts kept before the cache is reset; bounds
/// memory when an application inlines literals into its SQL.
const CACHE_CAPACITY: usize = 8192;

/// Classifies with the pre-filter and a cache keyed by statement text.
#[derive(Debug)]
pub struct Classifier {
    synced: SyncedTables,
    cache: Mutex<ClassifierCache>,
}

#[derive(Debug, Default)]
struct ClassifierCache {
    version: u64,
    by_text: HashMap<Box<str>, Arc<Classification>>,
}

impl Classifier {
    pub fn new(synced: SyncedTables) -> Self {
        Classifier {
            synced,
            cache: Mutex::new(ClassifierCache::default()),
        }
    }

    pub fn synced(&self) -> &SyncedTables {
        &self.synced
    }

    /// The classification of `sql` when it writes a synced table, `None`
    /// otherwise (including when the pre-filter rules a parse out).
    pub fn writes_synced(&self, sql: &str, snapshot: &SyncedSet) -> Option<Arc<Classification>> {
        if snapshot.is_empty() || !snapshot.may_mention(sql.as_bytes()) {
            return None;
        }
        let c = self.classify_cached(sql, snapshot);
        c.writes_synced().then_some(c)
    }

    fn classify_cached(&self, sql: &str, snapshot: &SyncedSet) -> Arc<Classification> {
        let version = self.synced.version();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.version != version {
                cache.by_text.clear();
                cache.version = version;
            }
            if let Some(c) = cache.by_text.get(sql) {
                return c.clone();
            }
        }
        // Parse outside the lock: other sessions keep going meanwhile.
        let c = Arc::new(classify(sql, snapshot));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.version == version {
            if cache.by_text.len() >= CACHE_CAPACITY {
                cache.by_text.clear();
            }
            cache.by_text.insert(sql.into(), c.clone());
        }
        c
    }

    /// Number of cached texts (for tests).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_text
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced() -> SyncedTables {
        SyncedTables::new([
            TableName::new("stripe", "customer"),
            TableName::new("stripe", "charge"),
        ])
    }

    fn writes(sql: &str) -> Vec<(String, WriteKind, bool)> {
        classify(sql, &synced().snapshot())
            .statements
            .into_iter()
            .flat_map(|s| s.writes)
            .map(|w| (w.table.to_string(), w.kind, w.in_cte))
            .collect()
    }

    fn vias(sql: &str) -> Vec<Via> {
        classify(sql, &synced().snapshot())
            .statements
            .into_iter()
            .flat_map(|s| s.writes)
            .map(|w| w.via)
            .collect()
    }

    #[test]
    fn finds_direct_writes() {
        use WriteKind::*;
        assert_eq!(
            writes("insert into stripe.customer (email) values ('a@b.c') returning id"),
            [("stripe.customer".into(), Insert, false)]
        );
        assert_eq!(
            writes("UPDATE Stripe.Customer SET name = 'x' WHERE id = $1"),
            [("stripe.customer".into(), Update, false)]
        );
        assert_eq!(
            writes("delete from \"stripe\".\"charge\" where id = 'ch_1'"),
            [("stripe.charge".into(), Delete, false)]
        );
        assert_eq!(
            writes("copy stripe.customer (id) from stdin"),
            [("stripe.customer".into(), Copy, false)]
        );
        assert_eq!(
            writes("truncate stripe.charge"),
            [("stripe.charge".into(), Truncate, false)]
        );
        assert_eq!(
            writes(
                "merge into stripe.customer c using src s on c.id = s.id \
                 when matched then update set name = s.name"
            ),
            [("stripe.customer".into(), Merge, false)]
        );
    }

    #[test]
    fn finds_writes_in_ctes_and_wrappers() {
        use WriteKind::*;
        assert_eq!(
            writes(
                "with n as (insert into stripe.customer (email) values ('x') returning id) \
                 select * from n"
            ),
            [("stripe.customer".into(), Insert, true)]
        );
        assert_eq!(
            writes("explain analyze delete from stripe.charge"),
            [("stripe.charge".into(), Delete, false)]
        );
        assert_eq!(
            vias("explain analyze delete from stripe.charge"),
            [Via::ExplainAnalyze]
        );
        assert_eq!(
            vias("explain (analyze, buffers) update stripe.customer set name = 'x'"),
            [Via::ExplainAnalyze]
        );
        assert!(writes("explain update stripe.customer set name = 'x'").is_empty());
        assert!(writes("explain (analyze false) delete from stripe.charge").is_empty());
        assert_eq!(
            vias("copy (update stripe.customer set name = 'x' returning id) to stdout"),
            [Via::CopyTo]
        );
        assert_eq!(
            vias("prepare p as delete from stripe.charge"),
            [Via::Prepare]
        );
        assert_eq!(
            writes("update U&\"\\0073tripe\".customer set name = 'x'"),
            [("stripe.customer".into(), Update, false)]
        );
        assert_eq!(
            writes("prepare p as update stripe.customer set name = $1"),
            [("stripe.customer".into(), Update, false)]
        );
    }

    #[test]
    fn reads_other_tables_are_not_writes() {
        assert!(writes("select * from stripe.customer").is_empty());
        assert!(writes("insert into public.log select * from stripe.customer").is_empty());
        assert!(writes("update other set x = (select 1 from stripe.customer)").is_empty());
        assert!(writes("insert into unrelated values (1)").is_empty());
        assert!(writes("copy stripe.customer to stdout").is_empty());
        let c = classify("not sql at all", &synced().snapshot());
        assert!(c.parse_error.is_some());
        assert!(!c.writes_synced());
    }

    #[test]
    fn unqualified_names_of_synced_tables_are_kept_for_the_server_to_resolve() {
        let c = classify("insert into customer values (1)", &synced().snapshot());
        let w = &c.statements[0].writes;
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].table.schema.as_str(), w[0].table.table.as_str()),
            ("", "customer")
        );
        assert!(
            synced()
                .snapshot()
                .may_mention(b"INSERT INTO Customer VALUES (1)")
        );
    }

    #[test]
    fn splits_multi_statement_strings() {
        let c = classify(
            "begin; insert into stripe.customer (id) values ('c'); commit",
            &synced().snapshot(),
        );
        let texts: Vec<_> = c.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            texts,
            [
                "begin",
                "insert into stripe.customer (id) values ('c')",
                "commit"
            ]
        );
        assert!(c.statements[1].writes.len() == 1 && c.statements[0].writes.is_empty());
    }

    fn shape_of(sql: &str) -> Shape {
        let parsed = pg_query::parse(sql).unwrap();
        let node = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .and_then(|s| s.node.as_ref());
        shape(sql, node)
    }

    #[test]
    fn returning_list_and_alias() {
        let s = shape_of("insert into salesforce.contact (first_name) values ('a') returning id;");
        assert_eq!(s.returning.as_deref(), Some("id"));
        assert_eq!(s.returning_at, Some(57));
        assert_eq!(s.alias, "contact");
        assert!(!s.returning_params);
        let s = shape_of(
            "WITH c AS (DELETE FROM y RETURNING z) UPDATE s.t AS x SET a = 1 FROM c WHERE b = $1 RETURNING x.id, upper(x.name) || $2 AS n",
        );
        assert_eq!(
            s.returning.as_deref(),
            Some("x.id, upper(x.name) || $2 AS n")
        );
        assert_eq!(s.alias, "x");
        assert!(s.returning_params);
        let s = shape_of(
            "INSERT INTO salesforce.contact (last_name) VALUES ($1) RETURNING salesforce.contact.id, \"salesforce\".\"contact\".name",
        );
        assert_eq!(
            s.returning.as_deref(),
            Some("\"contact\".id, \"contact\".name")
        );
        let s = shape_of("delete from s.t where id = $1");
        assert_eq!(s.returning, None);
        assert_eq!(s.alias, "t");
    }

    #[test]
    fn on_conflict_do_update_records_target_assignments_and_span() {
        let sql = "INSERT INTO salesforce.account AS a (name, ext__c) VALUES ($1, $2) \
                   ON CONFLICT (Ext__c) DO UPDATE SET name = EXCLUDED.name, \"Ext__c\" = excluded.\"Ext__c\" \
                   RETURNING a.id;";
        let s = shape_of(sql);
        let c = s.on_conflict.expect("an ON CONFLICT clause");
        assert_eq!(c.target, [Some("ext__c".to_string())]);
        assert!(c.update && !c.update_where && !c.target_where && !c.params);
        assert_eq!(c.constraint, None);
        assert_eq!(
            c.set,
            [
                ("name".to_string(), Some("name".to_string())),
                ("Ext__c".to_string(), Some("Ext__c".to_string()))
            ]
        );
        assert_eq!(c.insert_columns, ["name", "ext__c"]);
        let without = format!("{}{}", &sql[..c.start], &sql[c.end..]);
        assert_eq!(
            without,
            "INSERT INTO salesforce.account AS a (name, ext__c) VALUES ($1, $2) RETURNING a.id;"
        );
        assert_eq!(s.returning.as_deref(), Some("a.id"));
        assert_eq!(s.returning_at, Some(c.end));
    }

    #[test]
    fn on_conflict_variants() {
        let s = shape_of("insert into s.t (k) values ('x') on conflict do nothing");
        let c = s.on_conflict.expect("clause");
        assert!(!c.update && c.target.is_empty());
        assert_eq!(
            c.end,
            "insert into s.t (k) values ('x') on conflict do nothing".len()
        );
        assert_eq!(
            &"insert into s.t (k) values ('x') on conflict do nothing"[c.start..],
            "on conflict do nothing"
        );
        let c = shape_of(
            "insert into s.t (k, n) values ('x', 1) on conflict (k) where n > 0 do update set n = t.n + $3 where t.n < 5",
        )
        .on_conflict
        .expect("clause");
        assert!(c.target_where && c.update_where && c.params);
        assert_eq!(c.set, [("n".to_string(), None)]);
        let c = shape_of("insert into s.t values (1) on conflict on constraint t_pkey do nothing")
            .on_conflict
            .expect("clause");
        assert_eq!(c.constraint.as_deref(), Some("t_pkey"));
        let c = shape_of("insert into s.t (a) values (1) on conflict (lower(a)) do nothing")
            .on_conflict
            .expect("clause");
        assert_eq!(c.target, [None]);
        // A subquery's parentheses hide nothing: the clause is the INSERT's.
        assert!(
            shape_of("insert into s.t (a) select 1 where exists (select 1)")
                .on_conflict
                .is_none()
        );
        assert!(shape_of("update s.t set a = 1").on_conflict.is_none());
    }

    #[test]
    fn statements_writing_synced_tables_carry_their_shape() {
        let c = classify(
            "select 1; update stripe.customer c set name = 'x' returning c.id; select 2",
            &synced().snapshot(),
        );
        assert_eq!(c.statements[0].shape, Shape::default());
        let s = &c.statements[1];
        assert_eq!(s.shape.alias, "c");
        assert_eq!(s.shape.returning.as_deref(), Some("c.id"));
        let at = s.shape.returning_at.expect("a RETURNING clause");
        assert_eq!(&s.sql[at..], "returning c.id");
    }

    #[test]
    fn classifier_prefilters_and_caches_and_follows_updates() {
        let s = synced();
        let classifier = Classifier::new(s.clone());
        let snap = s.snapshot();
        assert!(
            classifier
                .writes_synced("select * from pgbench_accounts", &snap)
                .is_none()
        );
        assert_eq!(
            classifier.cached(),
            0,
            "pre-filtered text must not be parsed"
        );
        assert!(
            classifier
                .writes_synced("select * from stripe.customer", &snap)
                .is_none()
        );
        assert_eq!(classifier.cached(), 1);
        let sql = "insert into hubspot.contact (email) values ('x')";
        assert!(classifier.writes_synced(sql, &snap).is_none());
        s.insert(TableName::new("hubspot", "contact"));
        let c = classifier
            .writes_synced(sql, &s.snapshot())
            .expect("now synced");
        assert_eq!(
            c.statements[0].writes[0].table.to_string(),
            "hubspot.contact"
        );
    }
}
