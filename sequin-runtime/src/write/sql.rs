//! The SQL write-through runs around a client's statement: the RETURNING
//! clause recomputed over the final rows, and the write-back of the API's
//! canonical records. (What a statement's text says is read by the
//! proxy's classifier: [`sequin_proxy::Shape`].)

use sequin_spec::model::FieldType;

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

/// [`write_back`] for a record read from the API afterwards (the
/// reconciler's refresh): a row a later write or sync made newer
/// (`_sequin_updated_at`) is left as it is, so a slow refresh never puts
/// back what the API held before.
pub fn write_back_if_newer(table: &str, pk: Key<'_>, columns: &[String]) -> String {
    format!(
        "{} AND (d._sequin_updated_at IS NULL \
              OR (e.doc OPERATOR(pg_catalog.->>) '_sequin_updated_at') IS NULL \
              OR (e.doc OPERATOR(pg_catalog.->>) '_sequin_updated_at')::pg_catalog.timestamptz OPERATOR(pg_catalog.>=) d._sequin_updated_at)",
        write_back(table, pk, columns)
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
