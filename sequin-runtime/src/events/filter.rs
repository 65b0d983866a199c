//! Which events a sink takes (`filter:` of a sink, and `backfill:`).

use super::{Event, Op};
use crate::config::SinkConfig;

/// Whether `sink` takes `e`.
pub fn accepts(sink: &SinkConfig, e: &Event) -> bool {
    let f = &sink.filter;
    if e.op == Op::Read && !sink.backfill {
        return false;
    }
    if let Some(c) = &f.connections
        && !c.contains(&e.connection)
    {
        return false;
    }
    if let Some(t) = &f.tables
        && !t.iter().any(|t| match t.split_once('.') {
            Some((c, t)) => c == e.connection && t == e.table,
            None => *t == e.table,
        })
    {
        return false;
    }
    if let Some(ops) = &f.operations
        && !ops.contains(&e.op)
    {
        return false;
    }
    if let (Some(cols), Op::Update) = (&f.columns, e.op) {
        let changed = e.changes.as_ref().and_then(|c| c.as_object());
        return changed.is_some_and(|c| cols.iter().any(|col| c.contains_key(col)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Filter, SinkConfig};
    use crate::events::sample;

    fn sink(filter: Filter, backfill: bool) -> SinkConfig {
        let yaml = "name: s\nkind: notify\nchannel: c\n";
        let mut s: SinkConfig = serde_json::from_value(serde_json::json!({
            "name": "s", "kind": "notify", "channel": "c"
        }))
        .expect(yaml);
        s.filter = filter;
        s.backfill = backfill;
        s
    }

    #[test]
    fn filters_by_connection_table_operation_and_changed_column() {
        let e = sample(1, "cus_1");
        assert!(accepts(&sink(Filter::default(), false), &e));
        let by = |f: Filter| accepts(&sink(f, false), &e);
        assert!(by(Filter {
            connections: Some(vec!["stripe".into()]),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            connections: Some(vec!["hubspot".into()]),
            ..Filter::default()
        }));
        assert!(by(Filter {
            tables: Some(vec!["stripe.customer".into()]),
            ..Filter::default()
        }));
        assert!(by(Filter {
            tables: Some(vec!["customer".into()]),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            tables: Some(vec!["other.customer".into()]),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            operations: Some(vec![Op::Insert, Op::Delete]),
            ..Filter::default()
        }));
        assert!(by(Filter {
            columns: Some(vec!["name".into()]),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            columns: Some(vec!["email".into()]),
            ..Filter::default()
        }));
    }

    #[test]
    fn backfill_rows_only_to_sinks_that_ask() {
        let mut e = sample(1, "cus_1");
        e.op = Op::Read;
        assert!(!accepts(&sink(Filter::default(), false), &e));
        assert!(accepts(&sink(Filter::default(), true), &e));
    }
}
