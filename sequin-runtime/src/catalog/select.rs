//! Which objects a connection syncs: its `objects:` (table names, API
//! names, wildcards) less its `exclude_objects:`, and the spec's default
//! exclusions, which only a literal name in `objects:` overrides.

use sequin_spec::Connector;
use sequin_spec::pattern::{is_wildcard, matches};

use crate::config::ConnectionConfig;

/// Whether `pattern` names the object with table `table` and API name
/// `api_name`.
fn names(pattern: &str, table: &str, api_name: &str) -> bool {
    matches(pattern, table) || matches(pattern, api_name)
}

/// Whether the connection syncs the object with table `table` and API name
/// `api_name`, not excluded by default.
pub fn wanted(conn: &ConnectionConfig, table: &str, api_name: &str) -> bool {
    selects(conn, table, api_name, false)
}

/// Whether the connection syncs the object; `excluded_by_default`: the
/// spec's default exclusions match it, so only a literal name in
/// `objects:` brings it in.
pub fn selects(
    conn: &ConnectionConfig,
    table: &str,
    api_name: &str,
    excluded_by_default: bool,
) -> bool {
    if conn
        .exclude_objects
        .iter()
        .any(|p| names(p, table, api_name))
    {
        return false;
    }
    match &conn.objects {
        None => !excluded_by_default,
        Some(list) if excluded_by_default => list
            .iter()
            .any(|p| !is_wildcard(p) && names(p, table, api_name)),
        Some(list) => list.iter().any(|p| names(p, table, api_name)),
    }
}

/// Whether the connection syncs the static object or link table `table`
/// (its API name from the spec).
pub fn wanted_static(conn: &ConnectionConfig, spec: &Connector, table: &str) -> bool {
    let api_name = spec
        .objects
        .iter()
        .find(|o| o.name == table)
        .map_or(table, |o| o.api_name.as_str());
    wanted(conn, table, api_name)
}

/// Each connection of `config` with its connector and the static tables
/// it syncs, for `store::migrate_tables` (the config is checked: every
/// connector is compiled in).
pub fn to_migrate(config: &crate::config::Config) -> Vec<crate::store::Migrating<'_>> {
    config
        .connections
        .iter()
        .map(|c| {
            let loaded = crate::registry::get(&c.connector).expect("config is checked");
            let spec = c.spec.as_deref().unwrap_or(&loaded.spec);
            let tables = loaded
                .table_sections()
                .into_iter()
                .map(|(t, _)| t)
                .filter(|t| wanted_static(c, spec, t))
                .collect();
            crate::store::Migrating {
                name: &c.name,
                loaded,
                tables: Some(tables),
            }
        })
        .collect()
}

/// Creates the tables of the connections of `config` named `names` (those
/// a reload added or changed), on a session of its own.
pub async fn migrate_connections(
    url: &str,
    config: &crate::config::Config,
    names: &[String],
) -> Result<(), crate::store::StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let mut migrating = to_migrate(config);
    migrating.retain(|m| names.iter().any(|n| n == m.name));
    let mut admin = crate::store::connect(url).await?;
    crate::store::migrate_tables(&mut admin, &migrating).await
}

/// The literal names of `objects:` that name none of `found` (table and
/// API name of every object the API has, after discovery), each with what
/// to do. Not fatal: a custom object named before it is created upstream
/// is synced from the discovery that finds it.
pub fn unmatched_literals(
    conn: &ConnectionConfig,
    spec: &Connector,
    found: &[(String, String)],
) -> Vec<String> {
    let Some(list) = &conn.objects else {
        return Vec::new();
    };
    list.iter()
        .filter(|p| !is_wildcard(p))
        .filter(|p| !found.iter().any(|(t, a)| names(p, t, a)))
        .map(|p| {
            format!(
                "{} has no object `{p}` (neither a table nor an API name) yet: fix its spelling or remove it from objects of connection `{}`; it is synced once the API lists it",
                spec.display_name, conn.name
            )
        })
        .collect()
}

/// The first literal name of `objects:` that the spec's deny list refuses,
/// as the error naming the fix: such an object is never synced.
pub fn denied_literal(conn: &ConnectionConfig, spec: &Connector) -> Option<(usize, String)> {
    let d = spec.discovered_objects.as_ref()?;
    let list = conn.objects.as_ref()?;
    list.iter().enumerate().find_map(|(i, p)| {
        let rule = d.denied(p).filter(|_| !is_wildcard(p))?;
        Some((
            i,
            format!(
                "`{p}` is never synced ({}): remove it from objects of connection `{}`",
                rule.why.trim(),
                conn.name
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(objects: Option<&[&str]>, exclude: &[&str]) -> ConnectionConfig {
        let mut c = serde_json::json!({"name": "sf", "connector": "salesforce"});
        if let Some(o) = objects {
            c["objects"] = serde_json::json!(o);
        }
        c["exclude_objects"] = serde_json::json!(exclude);
        serde_json::from_value(c).expect("a connection")
    }

    #[test]
    fn wildcards_api_names_and_table_names_select() {
        let c = conn(Some(&["*__c", "Account", "case"]), &[]);
        assert!(wanted(&c, "invoice__c", "Invoice__c"));
        assert!(wanted(&c, "account", "Account"));
        assert!(wanted(&c, "case", "Case"));
        assert!(!wanted(&c, "contact", "Contact"));
    }

    #[test]
    fn exclusions_win_over_objects() {
        let c = conn(Some(&["*__c"]), &["Project__c"]);
        assert!(wanted(&c, "invoice__c", "Invoice__c"));
        assert!(!wanted(&c, "project__c", "Project__c"));
        let all = conn(None, &["*Feed", "task"]);
        assert!(wanted(&all, "account", "Account"));
        assert!(!wanted(&all, "account_feed", "AccountFeed"));
        assert!(!wanted(&all, "task", "Task"));
    }

    #[test]
    fn literal_names_matching_nothing_are_named_with_the_fix() {
        let spec = crate::registry::get("salesforce").unwrap().spec.clone();
        let c = conn(Some(&["*__c", "Invoice__c", "Nonexistent__c"]), &[]);
        let found = [("invoice__c".to_string(), "Invoice__c".to_string())];
        let unmatched = unmatched_literals(&c, &spec, &found);
        assert_eq!(unmatched.len(), 1, "{unmatched:?}");
        assert!(
            unmatched[0].contains("no object `Nonexistent__c`"),
            "{unmatched:?}"
        );
        assert!(unmatched[0].contains("remove it from objects of connection `sf`"));
        let denied = conn(Some(&["Invoice__c", "ContentDocumentLink"]), &[]);
        let (at, message) = denied_literal(&denied, &spec).expect("a denied name");
        assert_eq!(at, 1);
        assert!(
            message.contains("`ContentDocumentLink` is never synced"),
            "{message}"
        );
        assert!(denied_literal(&c, &spec).is_none());
    }

    #[test]
    fn default_exclusions_need_a_literal_name() {
        assert!(!selects(
            &conn(None, &[]),
            "account_history",
            "AccountHistory",
            true
        ));
        let wild = conn(Some(&["*History"]), &[]);
        assert!(!selects(&wild, "account_history", "AccountHistory", true));
        let literal = conn(Some(&["AccountHistory"]), &[]);
        assert!(selects(&literal, "account_history", "AccountHistory", true));
    }
}
