//! Asynchronous query jobs (`async_query:` of a spec): a backfill of a large
//! object asks the API to run its query as a job, polls the job until it is
//! done, and streams the results in pages chained by a response header
//! (Salesforce's Bulk API 2.0 query jobs and `Sforce-Locator`). One job
//! costs a handful of requests where paging a list costs one per page.
//!
//! Part of the spec model ([`crate::model::Connector::async_query`]); the
//! runtime reads it and holds no API's names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::model::{Endpoint, FieldType, JsonPath};

/// Asynchronous query jobs for backfills of objects with many records.
///
/// A backfill of an object whose record count (`count`) is at least the
/// threshold (`threshold`, or the connection's `async_query_threshold`)
/// creates a job with the object's query, polls its state with a growing
/// pause until it is one of `done` (or `failed`), then reads the results
/// page by page. Rows are committed batch by batch with a cursor holding the
/// job's id and the page's locator, so a restarted backfill reuses a job
/// that is still running or complete; a job the API no longer knows (its
/// results expired), or that failed, is created again for the window the
/// committed rows do not cover (`window`). Smaller objects, incremental
/// sync and objects the API refuses to run as a job (a 4xx answer to the
/// create) use the list endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncQuery {
    /// Creates a job: its JSON `body` is a template whose `{query}` is the
    /// rendered `query`.
    pub create: Endpoint,
    /// The job's query. Placeholders: `{fields}`, `{object}` and
    /// `{window}` (empty for a whole backfill, else the rendered `window`).
    /// Results must come ordered by `window_field`, so the committed rows
    /// are always a prefix of them.
    pub query: String,
    /// The restriction of a job created again after rows were committed:
    /// `{after}` is the `window_field` of the last committed record
    /// (` WHERE Id > '{after}'`).
    pub window: String,
    /// The field the results are ordered by and `window` filters on (the
    /// API name of a column, usually the primary key).
    pub window_field: String,
    /// Path of the job's id in the create and status responses.
    pub id: JsonPath,
    /// The job's state: `{job}` is its id.
    pub status: Endpoint,
    /// Path of the state in the status response.
    pub state: JsonPath,
    /// States in which the results are ready.
    pub done: Vec<String>,
    /// States in which the job ended without results (failed, aborted): it
    /// is created again for the remaining window.
    pub failed: Vec<String>,
    /// The first pause between status polls; it doubles up to `poll_max`.
    pub poll_first: Duration,
    /// The longest pause between status polls.
    pub poll_max: Duration,
    /// The results.
    pub results: AsyncResults,
    /// How many records an object has (decides between a job and the list
    /// endpoint).
    pub count: RecordCount,
    /// Objects with at least this many records backfill through a job,
    /// unless the connection sets `async_query_threshold`.
    pub threshold: u64,
    /// Column types the API cannot return in a job's results (Salesforce's
    /// compound address and location fields): an object with such a column
    /// backfills through the list endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_types: Vec<FieldType>,
}

/// A job's results: pages chained by a response header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncResults {
    /// The results endpoint: `{job}` is the job's id.
    pub endpoint: Endpoint,
    /// Query parameter taking the locator of the page to read (absent for
    /// the first page).
    pub locator_param: String,
    /// Response header holding the next page's locator.
    pub locator_header: String,
    /// The header's value after the last page (absent header: also the
    /// end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Query parameter taking the page size.
    pub size_param: String,
    /// Records per page asked for.
    pub page_size: u32,
    /// The results' format.
    pub format: ResultFormat,
}

/// The format of a job's results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    /// RFC 4180 CSV with a header row of field names on every page; an empty
    /// field is null; values are text decoded into the column's type
    /// (`true`/`false`, ISO 8601 dates and times, plain numbers).
    Csv,
}

/// How to count an object's records: a request whose response holds the
/// count (`SELECT COUNT() FROM {object}`'s `totalSize`, or
/// `/limits/recordCount?sObjects={object}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordCount {
    /// The request (`{object}` is the object's API name).
    pub endpoint: Endpoint,
    /// Path of the count in its response. No count there: the object is
    /// taken as small.
    pub total: JsonPath,
}
