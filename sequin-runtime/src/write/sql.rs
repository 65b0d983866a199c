//! The SQL write-through runs around a client's statement: the RETURNING
//! clause recomputed over the final rows, and the write-back of the API's
//! canonical records.

use pg_query::NodeEnum;
use pg_query::protobuf::Token;
use sequin_spec::model::FieldType;

/// What write-through needs to know of a statement's text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The RETURNING list's text (`id, upper(name) AS n`), if any.
    pub returning: Option<String>,
    /// Whether the RETURNING list uses `$n` parameters.
    pub returning_params: bool,
    /// Where the RETURNING clause starts: the statement without it is the
    /// text before (write-through runs that, and computes RETURNING once,
    /// over the final rows).
    pub returning_at: Option<usize>,
    /// The name the statement gives the target table (its alias, else the
    /// table's name), which RETURNING expressions refer to.
    pub alias: String,
}

/// Reads the RETURNING clause and the target's alias of one INSERT, UPDATE
/// or DELETE.
pub fn shape(sql: &str) -> Shape {
    let mut out = Shape::default();
    let (mut schema, mut table) = (String::new(), String::new());
    if let Ok(parsed) = pg_query::parse(sql)
        && let Some(node) = parsed
            .protobuf
            .stmts
            .first()
            .and_then(|s| s.stmt.as_ref())
            .and_then(|s| s.node.as_ref())
    {
        let rel = match node {
            NodeEnum::InsertStmt(s) => s.relation.as_ref(),
            NodeEnum::UpdateStmt(s) => s.relation.as_ref(),
            NodeEnum::DeleteStmt(s) => s.relation.as_ref(),
            _ => None,
        };
        if let Some(r) = rel {
            schema = r.schemaname.clone();
            table = r.relname.clone();
            out.alias = r
                .alias
                .as_ref()
                .map(|a| a.aliasname.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| r.relname.clone());
        }
    }
    let Ok(scan) = pg_query::scan(sql) else {
        return out;
    };
    let mut depth = 0i32;
    let mut at = None;
    for (i, t) in scan.tokens.iter().enumerate() {
        match Token::try_from(t.token) {
            Ok(Token::Ascii40) => depth += 1,
            Ok(Token::Ascii41) => depth -= 1,
            Ok(Token::Returning) if depth == 0 => at = Some(i),
            _ => {}
        }
    }
    if let Some(i) = at {
        out.returning_at = usize::try_from(scan.tokens[i].start).ok();
        let tokens = &scan.tokens[i + 1..];
        out.returning_params = tokens
            .iter()
            .any(|t| Token::try_from(t.token) == Ok(Token::Param));
        // `schema.table.column` (as ORMs write it) names the target; the
        // recomputed list reads the rows under the bare alias.
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
        let mut pos = scan.tokens[i].end as usize;
        let mut k = 0;
        while k < tokens.len() {
            let qualified = !schema.is_empty()
                && name_at(k).as_deref() == Some(schema.as_str())
                && dot_at(k + 1)
                && name_at(k + 2).as_deref() == Some(table.as_str())
                && dot_at(k + 3);
            if qualified {
                text.push_str(sql.get(pos..tokens[k].start as usize).unwrap_or_default());
                text.push_str(&ident(&out.alias));
                pos = tokens[k + 2].end as usize;
                k += 3;
            } else {
                k += 1;
            }
        }
        text.push_str(sql.get(pos..).unwrap_or_default());
        out.returning = Some(text.trim().trim_end_matches(';').trim().to_string());
    }
    out
}

/// An identifier token as Postgres resolves it: quoted as written,
/// unquoted folded to lower case.
fn normalize(token: &str) -> String {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(q) => q.replace("\"\"", "\""),
        None => token.to_lowercase(),
    }
}

/// Quotes an identifier for SQL.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A column type by its `pg_catalog` name: the statements write-through
/// runs in a client's session never resolve a name through the client's
/// `search_path` (a type, function or operator of the client's own, in a
/// schema it puts ahead of `pg_catalog`, would run its code there or
/// change what is written).
pub fn catalog_type(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "pg_catalog.text",
        FieldType::Integer => "pg_catalog.int8",
        FieldType::Float => "pg_catalog.float8",
        FieldType::Decimal => "pg_catalog.numeric",
        FieldType::Boolean => "pg_catalog.bool",
        FieldType::Timestamp => "pg_catalog.timestamptz",
        FieldType::Date => "pg_catalog.date",
        FieldType::Json => "pg_catalog.jsonb",
        FieldType::StringArray => "pg_catalog.text[]",
    }
}

/// A table's primary key column: its name and Postgres type.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub name: &'a str,
    /// Qualified ([`catalog_type`]).
    pub ty: &'a str,
}

impl Key<'_> {
    /// The key of `t`.
    pub fn of(t: &crate::store::Table) -> Key<'_> {
        let c = &t.columns[t.primary_key];
        Key {
            name: &c.name,
            ty: catalog_type(c.ty),
        }
    }

    /// `{alias}.{key} = ANY(the keys listed in {json})`: the keys are
    /// turned into the column's type once (an init plan), so the primary
    /// key's index finds the rows whatever the table's size. (Comparing
    /// `key::text` with each element instead reads the whole table.)
    fn any_of(&self, alias: &str, keys: &str) -> String {
        format!(
            "{alias}.{pk} OPERATOR(pg_catalog.=) ANY(ARRAY(SELECT k::{ty} FROM {keys} AS s(k)))",
            pk = ident(self.name),
            ty = self.ty,
        )
    }
}

/// Where the RETURNING query reads the final rows.
#[derive(Clone, Copy, Debug)]
pub enum FinalRows<'a> {
    /// The table itself, the rows whose primary key `pk` is in the JSON
    /// array of keys, in that order.
    Table { pk: Key<'a> },
    /// A JSON array of row objects (deleted rows, as they were).
    Json,
}

/// The query producing a statement's RETURNING rows from the final rows;
/// parameter `$json_param` is the JSON array `from` describes.
pub fn returning_query(
    list: &str,
    table: &str,
    alias: &str,
    json_param: usize,
    from: FinalRows<'_>,
) -> String {
    let alias = ident(alias);
    match from {
        FinalRows::Table { pk } => format!(
            "SELECT {list} FROM {table} AS {alias} \
             WHERE {any} \
             ORDER BY pg_catalog.array_position(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(${json_param}::pg_catalog.jsonb)), {alias}.{name}::pg_catalog.text)",
            any = pk.any_of(
                &alias,
                &format!("pg_catalog.jsonb_array_elements_text(${json_param}::pg_catalog.jsonb)")
            ),
            name = ident(pk.name),
        ),
        FinalRows::Json => format!(
            "SELECT {list} FROM pg_catalog.jsonb_populate_recordset(NULL::{table}, ${json_param}::pg_catalog.jsonb) AS {alias}"
        ),
    }
}

/// Replaces rows with the API's canonical values, matched by their current
/// key (`__sequin_key`: the provisional id of a created row). `$1` is a
/// JSON array of row objects.
pub fn write_back(table: &str, pk: Key<'_>, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let vals: Vec<String> = columns.iter().map(|c| format!("r.{}", ident(c))).collect();
    format!(
        "UPDATE {table} AS d SET ({cols}, _sequin_synced_at, _sequin_updated_at) = \
           (SELECT {vals}, pg_catalog.now(), r._sequin_updated_at FROM pg_catalog.jsonb_populate_record(NULL::{table}, e.doc) AS r) \
         FROM pg_catalog.jsonb_array_elements($1::pg_catalog.text::pg_catalog.jsonb) AS e(doc) \
         WHERE {any} AND d.{name} OPERATOR(pg_catalog.=) (e.doc OPERATOR(pg_catalog.->>) '__sequin_key')::{ty}",
        cols = cols.join(", "),
        vals = vals.join(", "),
        any = pk.any_of("d", KEYS),
        name = ident(pk.name),
        ty = pk.ty,
    )
}

/// The `__sequin_key`s of the rows in `$1` (text).
const KEYS: &str = "(SELECT x OPERATOR(pg_catalog.->>) '__sequin_key' FROM pg_catalog.jsonb_array_elements($1::pg_catalog.text::pg_catalog.jsonb) AS x)";

/// Replaces created rows (found by their provisional key, `__sequin_key`)
/// with the API's canonical records under the API's ids. The insert takes
/// the update path when the sync engine already wrote that id, waiting for
/// its transaction if it has not committed yet. `$1` is a JSON array of row
/// objects.
pub fn write_back_created(table: &str, pk: Key<'_>, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let vals: Vec<String> = columns.iter().map(|c| format!("r.{}", ident(c))).collect();
    let excluded: Vec<String> = columns
        .iter()
        .map(|c| format!("EXCLUDED.{}", ident(c)))
        .collect();
    format!(
        "WITH pending AS (DELETE FROM {table} AS d WHERE {any}) \
         INSERT INTO {table} ({cols}, _sequin_synced_at, _sequin_updated_at) \
         SELECT {vals}, pg_catalog.now(), r._sequin_updated_at \
           FROM pg_catalog.jsonb_array_elements($1::pg_catalog.text::pg_catalog.jsonb) AS e(doc), pg_catalog.jsonb_populate_record(NULL::{table}, e.doc) AS r \
         ON CONFLICT ({pk}) DO UPDATE SET ({cols}, _sequin_synced_at, _sequin_updated_at) = \
           ({excluded}, EXCLUDED._sequin_synced_at, EXCLUDED._sequin_updated_at)",
        cols = cols.join(", "),
        vals = vals.join(", "),
        excluded = excluded.join(", "),
        any = pk.any_of("d", KEYS),
        pk = ident(pk.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returning_list_and_alias() {
        let s = shape("insert into salesforce.contact (first_name) values ('a') returning id;");
        assert_eq!(s.returning.as_deref(), Some("id"));
        assert_eq!(s.returning_at, Some(57));
        assert_eq!(s.alias, "contact");
        assert!(!s.returning_params);
        let s = shape(
            "WITH c AS (DELETE FROM y RETURNING z) UPDATE s.t AS x SET a = 1 FROM c WHERE b = $1 RETURNING x.id, upper(x.name) || $2 AS n",
        );
        assert_eq!(
            s.returning.as_deref(),
            Some("x.id, upper(x.name) || $2 AS n")
        );
        assert_eq!(s.alias, "x");
        assert!(s.returning_params);
        let s = shape(
            "INSERT INTO salesforce.contact (last_name) VALUES ($1) RETURNING salesforce.contact.id, \"salesforce\".\"contact\".name",
        );
        assert_eq!(
            s.returning.as_deref(),
            Some("\"contact\".id, \"contact\".name")
        );
        let s = shape("delete from s.t where id = $1");
        assert_eq!(s.returning, None);
        assert_eq!(s.alias, "t");
    }

    #[test]
    fn write_back_matches_rows_by_their_key() {
        let key = Key {
            name: "id",
            ty: "pg_catalog.int8",
        };
        let q = write_back("\"s\".\"t\"", key, &["id".into(), "name".into()]);
        assert!(
            q.contains("SET (\"id\", \"name\", _sequin_synced_at, _sequin_updated_at)"),
            "{q}"
        );
        // Typed comparisons, never `id::text`: the key's index applies.
        assert!(
            q.contains("d.\"id\" OPERATOR(pg_catalog.=) (e.doc OPERATOR(pg_catalog.->>) '__sequin_key')::pg_catalog.int8"),
            "{q}"
        );
        assert!(
            q.contains("d.\"id\" OPERATOR(pg_catalog.=) ANY(ARRAY(SELECT k::pg_catalog.int8 FROM"),
            "{q}"
        );
        assert!(q.contains(" AS s(k)))"), "the key column, not the row: {q}");
        assert!(!q.contains("::text ="), "{q}");
    }
}
