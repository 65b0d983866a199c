//! Names: API names to Postgres identifiers.
//!
//! Tables and columns are snake_case (`FirstName` -> `first_name`). A
//! Salesforce custom suffix `__c` is kept as `__c` so a custom `Foo__c`
//! never collides with a standard `Foo`.

use heck::ToSnakeCase;

/// Column name for an API field name.
pub fn column_name(api_name: &str) -> String {
    if let Some(stem) = api_name.strip_suffix("__c") {
        return format!("{}__c", stem.to_snake_case());
    }
    let s = api_name.to_snake_case();
    if s.is_empty() { "_".to_string() } else { s }
}

/// Table name for a runtime-discovered object's display name (an Airtable
/// table called "Sales Deals" -> `sales_deals`).
pub fn table_name(display: &str) -> String {
    let s: String = display
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .to_snake_case();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("t_{s}")
    } else {
        s
    }
}

/// Whether `s` is a lowercase snake_case identifier usable unquoted in SQL.
pub fn is_snake_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Quotes an identifier for SQL when needed.
pub fn quote_ident(s: &str) -> String {
    if is_snake_identifier(s) && !RESERVED.contains(&s) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// The keywords Postgres does not take as a bare column name: its reserved
/// keywords and those reserved except as function or type names
/// (`pg_get_keywords()` categories R and T of PostgreSQL 15; a test checks
/// the list against a running server).
pub const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns() {
        assert_eq!(column_name("FirstName"), "first_name");
        assert_eq!(column_name("email"), "email");
        assert_eq!(column_name("Foo_Bar__c"), "foo_bar__c");
        assert_eq!(column_name("hs_object_id"), "hs_object_id");
        assert_eq!(column_name("SystemModstamp"), "system_modstamp");
        assert_eq!(column_name("createdAt"), "created_at");
    }

    #[test]
    fn tables_and_quoting() {
        assert_eq!(table_name("Sales Deals"), "sales_deals");
        assert_eq!(table_name("2024 Plan"), "t_2024_plan");
        assert_eq!(quote_ident("email"), "email");
        assert_eq!(quote_ident("order"), "\"order\"");
        assert_eq!(quote_ident("Bad Name"), "\"Bad Name\"");
    }
}
