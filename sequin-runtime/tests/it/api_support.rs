//! Shared helpers of the `api_*` integration tests: connector specs loaded
//! from `connectors/*.yaml` as written, simulators started in-process, a fast
//! retry policy, and a loop that pages through a whole list.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sequin_runtime::api::{Client, PageCursor, RetryPolicy, Vars};
use sequin_sim::{Sim, SimConfig};
use sequin_spec::Connector;
use sequin_spec::model::{Endpoint, Pagination};
use serde_json::Value;

/// The connector spec `connectors/<name>.yaml`.
pub fn connector(name: &str) -> Connector {
    let path = format!("{}/../connectors/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc = sequin_spec::yaml::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_value(doc.value).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Starts a simulator on a free port.
pub async fn start(cfg: SimConfig) -> Sim {
    sequin_sim::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Retries quickly (tests inject many faults), still with jitter.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        max_elapsed: Duration::from_secs(60),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
    }
}

/// Everything a full listing produced.
pub struct Listing {
    pub records: Vec<Value>,
    pub pages: usize,
    /// Each page's cursor went through JSON, as a checkpoint would.
    pub cursors: Vec<PageCursor>,
}

/// Pages through a list from the first page to the end, checkpointing each
/// cursor through JSON text as the sync engine does.
pub async fn fetch_all(
    client: &Client,
    endpoint: &Endpoint,
    records: Option<&str>,
    pagination: Option<&Pagination>,
    vars: &Vars,
    body: Option<Value>,
) -> Listing {
    let mut out = Listing {
        records: Vec::new(),
        pages: 0,
        cursors: Vec::new(),
    };
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = match records {
            Some(path) => {
                client
                    .fetch_records_page(
                        endpoint,
                        path,
                        pagination,
                        vars,
                        cursor.as_ref(),
                        body.clone(),
                    )
                    .await
            }
            None => {
                client
                    .fetch_page(endpoint, pagination, vars, cursor.as_ref(), body.clone())
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("page {} failed: {e} ({})", out.pages + 1, e.detail()));
        assert_eq!(page.raw_status, 200);
        out.pages += 1;
        out.records.extend(page.records);
        match page.next {
            None => return out,
            Some(next) => {
                let text = serde_json::to_string(&next).unwrap();
                let restored: PageCursor = serde_json::from_str(&text).unwrap();
                assert_eq!(restored, next);
                out.cursors.push(restored.clone());
                cursor = Some(restored);
            }
        }
        assert!(out.pages < 100_000, "paging does not end");
    }
}

/// The values at `field` of each record, asserting there are no duplicates.
pub fn unique_ids(records: &[Value], field: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for r in records {
        let id = match &r[field] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("record without `{field}`: {other}"),
        };
        assert!(seen.insert(id.clone()), "duplicate record {id}");
    }
    seen
}

/// Shares a connector between clients.
pub fn arc(c: Connector) -> Arc<Connector> {
    Arc::new(c)
}
