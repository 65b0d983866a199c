//! The connector spec format: serde types for `connectors/<api>.yaml`.
//!
//! These types are the single definition of the format. `schemars` derives the
//! JSON Schema from them (committed as `connectors/schema.json` for editors and
//! used by the generator to validate specs), and the runtime deserializes the
//! same types from the descriptor embedded in generated code. Doc comments
//! become the schema's descriptions, so they are written for spec authors.
//!
//! Conventions used throughout:
//! - A *path* (`JsonPath`) addresses a value inside a JSON document with
//!   dot-separated segments; a numeric segment indexes an array (`0.message`),
//!   and the empty path is the document itself.
//! - A *template* is a string with `{placeholders}` filled in at run time:
//!   `{id}` (the record's primary key), connection parameters such as
//!   `{base_id}`, `{object}` (the object's API name), `{fields}` (the
//!   comma-joined API names of the object's fields) and `{since}` (the
//!   incremental cursor) and, for discovered objects with `cursor_fields`,
//!   `{cursor}` (the API name of the field the cursor follows).
//! - In the paths of single-record endpoints (`create`, `get`, `update`,
//!   `delete`), `{<field>}` may also name any field of the record by its
//!   API name, for APIs that address records by something other than the
//!   primary key (GitHub's `/issues/{number}`); write-through fills it from
//!   the statement's row (refusing a NULL), and a create's body leaves out
//!   the fields its path takes; connection parameters win over fields of
//!   the same name.
//! - In a JSON body template, a string that is exactly `"{fields}"` becomes
//!   the *array* of field API names (HubSpot's search `properties`).
//! - The endpoints of a child object (one with a [`Parent`]) may use
//!   `{<parent.param>}` (`{invoice}` in `/v1/invoices/{invoice}/lines`):
//!   the parent record's primary key.
//! - The endpoints of link tables ([`Links`]) take `{from}` and `{to}`, the
//!   paired objects' `api_name`s; their item templates take the link
//!   columns (`{from_id}`, `{to_id}`, `{category}`, `{type_id}`), and the
//!   read's item `{id}`, a source record's primary key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::async_query::{AsyncQuery, AsyncResults, RecordCount, ResultFormat};
use crate::duration::Duration;

/// A connector: everything Sequin needs to sync an API into Postgres and to
/// write back to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// Optional pointer to this format's JSON Schema, for editors.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Connector id: lowercase snake_case, unique among compiled-in connectors
    /// (`stripe`). It is also the default Postgres schema of a connection.
    pub name: String,
    /// Human name, used in client-visible errors as `[<display_name>]: ...`.
    pub display_name: String,
    /// A sentence or two for the generated docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Base URL of the API; each connection may override it (`base_url` in
    /// the config), and OAuth2 may replace it with an instance URL.
    pub base_url: String,
    /// Parameters a connection must (or may) provide, referenced as
    /// `{name}` in endpoint templates (an Airtable base id, a GitHub repo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// Headers sent with every request (API version pins, Accept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How requests authenticate.
    pub auth: Auth,
    /// How write request bodies are encoded.
    #[serde(default)]
    pub body: BodyEncoding,
    /// Default pagination of list endpoints (objects may override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Rate limits of an account, which Sequin never exceeds.
    pub rate_limit: RateLimit,
    /// An allowance over a long period (a daily quota of requests), read
    /// from the API, which sync keeps a floor of. See [`crate::quota`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::quota::Quota>,
    /// How to read the API's error bodies and map them to SQLSTATEs.
    pub errors: ErrorDecoding,
    /// Idempotency support for writes (Stripe's `Idempotency-Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Idempotency>,
    /// Default incremental sync strategy (objects may override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// Default delete detection (objects may override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeleteDetection>,
    /// Asynchronous query jobs for backfills of large objects (Salesforce's
    /// Bulk API 2.0). See [`AsyncQuery`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_query: Option<AsyncQuery>,
    /// Maps the API's own field type names (from describe/meta endpoints) to
    /// column types, for runtime-discovered objects and fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub type_map: BTreeMap<String, FieldType>,
    /// Restricts `{fields}` to the fields whose value path lies under this
    /// path (discovered fields included), still by API name: HubSpot's
    /// `properties=` takes property names, and `id` or `createdAt` are not
    /// properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_under: Option<JsonPath>,
    /// Objects known when the spec is written. Each becomes a table.
    #[serde(default)]
    pub objects: Vec<Object>,
    /// Objects that exist only at run time (Airtable tables of a base,
    /// HubSpot custom objects), besides the static ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_objects: Option<DiscoveredObjects>,
    /// Link tables: the associations between records of two objects
    /// (HubSpot's associations v4), one table per object pair. See
    /// [`Links`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    /// What of the API is deliberately not synced, and why (listed in the
    /// generated docs, so a user can tell a gap from a choice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// Link tables: the associations between the records of two objects (a
/// contact's companies), one table per ordered object pair, one row per
/// linked pair of records and association type.
///
/// Every link table has the same columns: `id` (the primary key, derived
/// with the `id` template from the other columns), `from_id`, `to_id` (the
/// linked records' primary keys), `category` and `type_id` (the
/// association type) and `label` (the type's label; null for an unlabeled
/// type).
///
/// **How they are synced.** An API like HubSpot's changes no record when
/// a link changes (`hs_lastmodifieddate` stays), so no modification search
/// sees link changes. Sequin therefore (1) reads the links of every source
/// record in batches (`read`, ids from the source's table) once both
/// objects are backfilled; (2) reads again the links of every record of
/// either object whose row sync writes (a link made or removed together
/// with a record change arrives with it; for a target record, the sources
/// linked to it are read again); (3) reads every source record's links
/// again each `every` (each connection may override it with
/// `association_interval`; about one request per `read.max_size` source
/// records and pair) and deletes the rows no longer there, which finds a
/// link changed on its own; (4) deletes a record's links with the record.
///
/// **How they are written.** An INSERT creates the link (`create`, or
/// `create_default` when `category` and `type_id` are null); a DELETE
/// removes that association type (`delete`); an UPDATE is refused (0A000:
/// delete the row and insert the new one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// How the links of a batch of source records are read.
    pub read: LinkRead,
    /// Creates links with an explicit association type. Templates of
    /// `item` take the columns `{from_id}`, `{to_id}`, `{category}`,
    /// `{type_id}`.
    pub create: LinkWrite,
    /// Creates links with the pair's default type (an INSERT that leaves
    /// `category` and `type_id` null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default: Option<LinkWrite>,
    /// Removes one association type of a link.
    pub delete: LinkWrite,
    /// The primary key's template over the columns
    /// (`{from_id}-{to_id}-{type_id}`); it must make each row unique.
    pub id: String,
    /// How often every source record's links are read again, to find links
    /// changed without either record changing (e.g. `5m`).
    #[serde(default = "rediscover")]
    pub every: Duration,
    /// Most rows one SQL statement may write.
    #[serde(default = "max_rows", skip_serializing_if = "is_default_max_rows")]
    pub max_rows_per_write: u32,
    /// The object pairs, each a table.
    pub pairs: Vec<LinkPair>,
    /// Link tables of discovered objects (HubSpot's custom objects), found
    /// at run time in their definitions. See [`DiscoveredLinks`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<DiscoveredLinks>,
}

/// Link tables found at run time: each association a discovered object's
/// definition (a record of `discovered_objects.endpoint`) declares with an
/// object this connection syncs (a static object or another discovered
/// one) becomes a link table, from the discovered object to the other one,
/// read and written with the templates of [`Links`] (`{from}` and `{to}`
/// are the objects' `api_name`s).
///
/// **Naming.** The table is `<object>_<other>` (the two tables' names,
/// e.g. `pet_contact`). When that name is taken (by an object, a static
/// link table or another discovered table), it is `<object>_<other>_link`;
/// when that is taken too, the pair is not synced. One
/// table per object pair: when both of two discovered objects declare
/// their association, the first in the definitions' order (by `api_name`)
/// names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredLinks {
    /// In a discovered object's definition: its array of associations
    /// (`associations`).
    pub associations: JsonPath,
    /// In an association: the source object's API id (`fromObjectTypeId`);
    /// when it is not the defining object, `to` is (an association listed
    /// from the other side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<JsonPath>,
    /// In an association: the target object's API id (`toObjectTypeId`).
    pub to: JsonPath,
    /// The ids by which definitions name the static objects, by table name
    /// (HubSpot's object type ids, `contact: "0-1"`). A static object is
    /// also known by its `api_name` and its table name (any case); a
    /// discovered one by its `api_name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub object_ids: BTreeMap<String, String>,
}

/// One link table: the links from records of `from` to records of `to`.
/// Endpoint templates take `{from}` and `{to}`, the objects' `api_name`s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPair {
    /// Table name (`contact_company`); unique among the connector's tables.
    pub name: String,
    /// The source object (a table name of `objects`).
    pub from: String,
    /// The target object (a table name of `objects`).
    pub to: String,
    /// For the docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Reading the links of a batch of source records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRead {
    /// The request (`records`: where the per-source results are).
    pub endpoint: Endpoint,
    /// Key of the body's array of source records (`inputs`).
    pub items: String,
    /// One item of that array; `{id}` is a source record's primary key.
    pub item: serde_json::Value,
    /// Most source records per request.
    pub max_size: u32,
    /// In a result: the source record's id (`from.id`).
    pub from_id: JsonPath,
    /// In a result: the array of linked records (`to`).
    pub targets: JsonPath,
    /// In a linked record: its id (`toObjectId`).
    pub to_id: JsonPath,
    /// In a linked record: the array of association types
    /// (`associationTypes`).
    pub types: JsonPath,
    /// In a type: its category.
    pub category: JsonPath,
    /// In a type: its id.
    pub type_id: JsonPath,
    /// In a type: its label (absent or null for an unlabeled type).
    pub label: JsonPath,
}

/// A batch write of links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkWrite {
    pub endpoint: Endpoint,
    /// Key of the body's array of links (`inputs`).
    pub items: String,
    /// One item; a string that is exactly `"{column}"` becomes the column's
    /// value with its type (a number for `type_id`), other strings have
    /// their placeholders replaced by the values as text.
    pub item: serde_json::Value,
    /// Most links per request.
    pub max_size: u32,
    /// For `create_default`: in each result, where the assigned type's
    /// category and id are (`associationSpec.associationCategory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_category: Option<JsonPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_type_id: Option<JsonPath>,
}

/// Part of an API a connector deliberately does not sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    /// The endpoint or object (`/v1/country_specs`).
    pub what: String,
    /// Why it is not synced.
    pub why: String,
}

/// A connection parameter, referenced as `{name}` in templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Placeholder name (snake_case).
    pub name: String,
    /// What the user should put here.
    pub description: String,
    /// Whether a connection must provide it.
    #[serde(default = "yes")]
    pub required: bool,
    /// Value used when a connection does not provide one (Salesforce's
    /// `api_version`); a parameter with a default need not be required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

fn yes() -> bool {
    true
}

/// Authentication of API requests. Credential names refer to keys of the
/// connection's `credentials` map in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// A key sent in a header or a query parameter.
    ApiKey {
        /// `header` or `query`.
        #[serde(rename = "in")]
        location: KeyLocation,
        /// Header or query parameter name.
        name: String,
        /// Text put before the key (`"Bearer "`, `"token "`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        /// Credential holding the key.
        credential: String,
    },
    /// `Authorization: Bearer <credential>`.
    Bearer {
        /// Credential holding the token.
        credential: String,
    },
    /// HTTP basic auth.
    Basic {
        /// Credential holding the user name.
        username: String,
        /// Credential holding the password (absent: empty password).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
    },
    /// OAuth2 refresh-token flow: an access token is obtained from the token
    /// endpoint and refreshed when it expires or the API answers 401.
    #[serde(rename = "oauth2_refresh")]
    OAuth2Refresh {
        /// Token endpoint (absolute, or a template over connection params).
        token_url: String,
        /// Credential holding the client id.
        client_id: String,
        /// Credential holding the client secret.
        client_secret: String,
        /// Credential holding the (initial) refresh token.
        refresh_token: String,
        /// The server may return a new refresh token with each access token
        /// and invalidate the old one; Sequin then persists the new one in the
        /// `sequin` schema and uses it from then on.
        #[serde(default)]
        rotating_refresh_token: bool,
        /// Path in the token response whose value replaces the base URL
        /// (Salesforce's `instance_url`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance_url: Option<JsonPath>,
    },
}

/// Where an API key goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    Header,
    Query,
}

/// Encoding of request bodies for writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded` with nested values in deepObject
    /// style (`metadata[key]=v`, `items[0][price]=p`), as Stripe expects.
    Form,
}

/// A dot-separated path into a JSON document (`data`, `paging.next.after`,
/// `0.message`). Empty means the document itself.
pub type JsonPath = String;

/// How a list endpoint pages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// The next page starts after the last record: its `field` is sent as
    /// `param` (Stripe's `starting_after=<id>`).
    RecordCursor {
        param: String,
        /// Record field whose value is the cursor.
        field: String,
        #[serde(flatten)]
        common: PageCommon,
    },
    /// The response carries the next cursor at `path` (HubSpot's
    /// `paging.next.after`, Airtable's `offset`); it is sent as `param`.
    ResponseCursor {
        param: String,
        path: JsonPath,
        /// Send the cursor in the JSON body instead of the query (search
        /// endpoints that are POSTs).
        #[serde(default)]
        in_body: bool,
        #[serde(flatten)]
        common: PageCommon,
    },
    /// The response carries the URL (or path) of the next page
    /// (Salesforce's `nextRecordsUrl`).
    NextUrl {
        path: JsonPath,
        #[serde(flatten)]
        common: PageCommon,
    },
    /// Numeric offset of the first record (`offset=200`).
    Offset {
        param: String,
        #[serde(flatten)]
        common: PageCommon,
    },
    /// Page number (`page=3`), starting at `first_page`.
    PageNumber {
        param: String,
        #[serde(default = "one")]
        first_page: u64,
        #[serde(flatten)]
        common: PageCommon,
    },
    /// RFC 8288 `Link` header with `rel="next"` (GitHub).
    LinkHeader {
        #[serde(flatten)]
        common: PageCommon,
    },
}

impl Pagination {
    /// The settings every pagination kind shares.
    pub fn common(&self) -> &PageCommon {
        match self {
            Pagination::RecordCursor { common, .. }
            | Pagination::ResponseCursor { common, .. }
            | Pagination::NextUrl { common, .. }
            | Pagination::Offset { common, .. }
            | Pagination::PageNumber { common, .. }
            | Pagination::LinkHeader { common } => common,
        }
    }

    /// The shared settings, mutably (a connection's page size).
    pub fn common_mut(&mut self) -> &mut PageCommon {
        match self {
            Pagination::RecordCursor { common, .. }
            | Pagination::ResponseCursor { common, .. }
            | Pagination::NextUrl { common, .. }
            | Pagination::Offset { common, .. }
            | Pagination::PageNumber { common, .. }
            | Pagination::LinkHeader { common } => common,
        }
    }
}

fn one() -> u64 {
    1
}

/// What every pagination kind shares: page size and the stop condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageCommon {
    /// Query parameter carrying the page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_param: Option<String>,
    /// Page size Sequin asks for (the API's maximum is best for sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// The most the API accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_page_size: Option<u32>,
    /// Stop condition; without one, paging stops when there is no next
    /// cursor/URL/link or a page comes back empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopCondition>,
    /// Where a response says how many records the whole listing has
    /// (Salesforce's `totalSize`), for backfill progress. Optional: most
    /// APIs do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<JsonPath>,
}

/// When to stop paging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "when", rename_all = "snake_case", deny_unknown_fields)]
pub enum StopCondition {
    /// Stop when the boolean at `path` is false (Stripe's `has_more`).
    FlagFalse { path: JsonPath },
    /// Stop when the boolean at `path` is true (Salesforce's `done`).
    FlagTrue { path: JsonPath },
    /// Stop when a page has fewer records than the page size.
    ShortPage,
    /// Stop when a page is empty.
    EmptyPage,
}

/// An account's rate limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window, as a duration (`1s`, `10s`, `1h`).
    pub per: Duration,
    /// Requests that may go at once after an idle period (defaults to
    /// `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Share of the budget kept free for writes (0.0..1.0): sync never takes
    /// it, so write-through stays responsive during a backfill.
    #[serde(default)]
    pub write_share: f64,
    /// What the budget is kept per: the whole account (default), or the value
    /// of a connection parameter (Airtable limits per base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_param: Option<String>,
    /// Header saying how long to wait after a 429 (seconds or HTTP date).
    #[serde(default = "retry_after", skip_serializing_if = "Option::is_none")]
    pub retry_after_header: Option<String>,
    /// Header with the remaining requests of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_header: Option<String>,
    /// Header with the window's reset time (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_header: Option<String>,
    /// Statuses besides 429 that mean "rate limited" (GitHub's secondary
    /// limit answers 403 with Retry-After).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_statuses: Vec<u16>,
    /// Further limits on some endpoints, each with a window of its own, on
    /// top of the account's: a request to such an endpoint takes a slot of
    /// both (HubSpot's search endpoints share 5 requests a second).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointLimit>,
}

/// A limit on some of an API's endpoints ([`RateLimit::endpoints`]), kept
/// like the account's: at most `requests` in any window of `per`, with the
/// account's `write_share`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointLimit {
    /// The method it counts; absent: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The endpoints' path as the spec's endpoints write it, where `*`
    /// stands for any one segment: `/crm/v3/objects/*/search` covers
    /// `/crm/v3/objects/contacts/search` and a custom object's
    /// `/crm/v3/objects/{object_type_id}/search`.
    pub path: String,
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl EndpointLimit {
    /// Whether a request of `method` to the path template `template` counts
    /// against this limit.
    pub fn covers(&self, method: Method, template: &str) -> bool {
        if self.method.is_some_and(|m| m != method) {
            return false;
        }
        let template = template.split('?').next().unwrap_or(template);
        let mut want = self.path.trim_end_matches('/').split('/');
        let mut have = template.trim_end_matches('/').split('/');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    }
}

fn retry_after() -> Option<String> {
    Some("Retry-After".into())
}

/// How to read error bodies and map them to SQLSTATEs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDecoding {
    /// Path of the human message (`error.message`, `0.message`).
    pub message: JsonPath,
    /// Path of the API's error code (`error.code`, `0.errorCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<JsonPath>,
    /// Further paths tried for the code when `code` is absent or empty
    /// (Stripe puts `type` beside `code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_fallbacks: Vec<JsonPath>,
    /// Path of the offending field's API name (`error.param`, `0.fields.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<JsonPath>,
    /// Response header carrying the request id (for DETAIL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id_header: Option<String>,
    /// Path of a request/correlation id inside the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<JsonPath>,
    /// HTTP status -> SQLSTATE. Unlisted 4xx default to 23514, 401/403 to
    /// 42501, 404 to P0002, 409 to 23505, 429 to 53400, 5xx to 58030.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<u16, SqlState>,
    /// API error code -> SQLSTATE; wins over `status`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub codes: BTreeMap<String, SqlState>,
}

/// A five-character SQLSTATE (`23514`).
pub type SqlState = String;

/// Idempotent writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    /// Header carrying a unique key per logical write (`Idempotency-Key`).
    pub header: String,
}

/// How changes after the backfill are found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incremental {
    /// An account-wide events feed (Stripe's `/v1/events`): each event
    /// carries the full object after the change.
    Events {
        endpoint: Endpoint,
        /// Records of a page.
        records: JsonPath,
        pagination: Pagination,
        /// Whether the feed lists newest first (then paging asks for events
        /// *before* the newest seen, with `newer_param`).
        #[serde(default)]
        newest_first: bool,
        /// Query parameter that asks for events newer than an event id
        /// (`ending_before` on a newest-first list).
        newer_param: String,
        /// Path of the event id.
        id: JsonPath,
        /// Path of the event type (`type`).
        event_type: JsonPath,
        /// Path of the event time (for lag and ordering).
        created: JsonPath,
        /// Encoding of `created`.
        #[serde(default)]
        created_format: TimeFormat,
        /// Path of the changed object within the event (`data.object`).
        object: JsonPath,
        /// Path of the object's type name within the object (`object`);
        /// matched against each object's `api_name`.
        object_type: JsonPath,
        /// Event type suffix meaning the object was deleted (`.deleted`).
        deleted_suffix: String,
        /// How long the feed keeps events (e.g. `30d`); a cursor older than
        /// this forces a fresh backfill.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retention: Option<Duration>,
        /// What to do when the feed is refused, as a key without the
        /// permission to read events is (Stripe's restricted keys): sync
        /// by re-listing instead of stopping. Absent: a refused feed stops
        /// the connection like any refused request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<EventsFallback>,
    },
    /// The list endpoint filtered to records updated since a time: the
    /// object's list endpoint with `since_param`, or a `list_since` endpoint
    /// whose template uses `{since}` (Salesforce SOQL, GitHub `since`).
    UpdatedSince {
        /// Field whose value is the record's update marker
        /// (`SystemModstamp`, `updated_at`); also the "never go backwards"
        /// comparator.
        field: String,
        /// Query parameter for the lower bound, when the list endpoint takes
        /// one directly (GitHub's `since`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_param: Option<String>,
        /// Format of `{since}`.
        #[serde(default)]
        since_format: TimeFormat,
        /// Endpoint used for incremental polls instead of `list`, with
        /// `{since}` in its template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<Endpoint>,
        /// Whether the lower bound is inclusive at the API; Sequin then
        /// dedupes the boundary records.
        #[serde(default)]
        inclusive: bool,
    },
    /// A search endpoint filtered on last-modified (HubSpot). The request
    /// body template contains `{since}`.
    Search {
        endpoint: Endpoint,
        /// JSON body template (strings `"{since}"` are replaced).
        body: serde_json::Value,
        records: JsonPath,
        pagination: Pagination,
        /// Field holding the record's update marker.
        field: String,
        #[serde(default)]
        since_format: TimeFormat,
        /// Most results the search returns for one query (HubSpot: 10000);
        /// Sequin narrows the window and re-queries when reached.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_results: Option<u32>,
    },
    /// Re-list everything each poll and diff against the table.
    FullRefresh,
}

/// How an events-driven connection syncs when its key may not read the
/// events feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsFallback {
    /// The strategy: `full_refresh`, each event-driven object re-listed
    /// every `every` and diffed against its table (changes upserted,
    /// records no longer listed deleted; a child that changes without its
    /// parent listed again under every parent).
    pub kind: FallbackKind,
    /// How often each object is re-listed (each connection may override
    /// it with `events_fallback_interval`). A full listing costs a request
    /// per page of every object, so minutes rather than seconds.
    pub every: Duration,
    /// HTTP statuses of the feed's answer that mean "this key may not read
    /// the feed" (Stripe answers a restricted key without the permission
    /// 403; stand-ins that have no feed answer 404). 401 (a refused key)
    /// and 429 (rate limited) never count.
    pub on_status: Vec<u16>,
    /// The permission the feed needs, named in the warning logged when it
    /// is refused (`rak_event_read`), so the fix is plain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

/// A fallback strategy for a refused events feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FallbackKind {
    /// Re-list every object and diff it against its table.
    FullRefresh,
}

/// How records deleted upstream are found.
// Specs are parsed once and kept whole; boxing the large variant would only
// make them clumsier to build and match.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeleteDetection {
    /// Deletion events arrive in the events feed.
    Events,
    /// A list of deleted records: an endpoint (Salesforce's
    /// `sobjects/{object}/deleted`, HubSpot `archived=true`) with `{since}`
    /// available (and `{until}`, the end of the span asked for).
    DeletedList {
        endpoint: Endpoint,
        records: JsonPath,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pagination: Option<Pagination>,
        /// Format of `{since}` and `{until}`.
        #[serde(default)]
        since_format: TimeFormat,
        /// Path of the deleted record's id in each record, when the records
        /// are not shaped like the object's (`id` of `{id, deletedDate}`).
        /// Default: the primary key's path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<JsonPath>,
        /// How far back the list reaches, and what a cursor older than that
        /// does (see [`DeleteWindow`]). Absent: the list is taken to reach
        /// back as far as any cursor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<DeleteWindow>,
    },
    /// Compare the full id list with the table each `every` (Airtable).
    FullDiff {
        /// How often (e.g. `60s`); full lists are expensive.
        every: Duration,
    },
    /// The API never deletes (GitHub issues close instead).
    None,
}

/// The span of time a deleted-records list covers. Deletions are kept
/// upstream for a while only (Salesforce's recycle bin and delete log: 15
/// days, or less once purged), so a cursor older than what the list still
/// covers (a sync stopped for weeks, records purged early) would miss
/// deletions silently. Sequin instead runs a full id diff: it lists every
/// id of the object once (`full_diff`) and deletes the rows whose ids are
/// gone, logs that it did, and resumes the list from the diff's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteWindow {
    /// Path in the list's response of the earliest time it still covers
    /// (Salesforce's `earliestDateAvailable`): a request starting before it
    /// has missed purged deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest: Option<JsonPath>,
    /// Path in the response of the time the answer covers up to (Salesforce's
    /// `latestDateCovered`): the next request starts there. Absent: at the
    /// `{until}` sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<JsonPath>,
    /// How long deletions stay listed at most: a cursor older than this
    /// goes to the full diff without asking the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Longest span one request may ask for (`{since}`..`{until}`); a longer
    /// one is asked window after window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_span: Option<Duration>,
    /// Shortest span the list accepts: `{since}` is moved back to make it
    /// (deletions listed twice are deleted once), never before the last
    /// full diff (which covered everything before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_span: Option<Duration>,
    /// Error codes (the `errors.code` of the connector) meaning the start
    /// lies outside what the list still covers (`INVALID_REPLICATION_DATE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_codes: Vec<String>,
    /// The id listing of the full diff. Absent: the object's `list`
    /// endpoint (every record re-listed and upserted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_diff: Option<IdListing>,
}

/// A listing of every id of an object (`SELECT Id FROM {object}`), cheaper
/// than listing whole records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdListing {
    pub endpoint: Endpoint,
    pub records: JsonPath,
    /// Path of the id in each record. Default: the primary key's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<JsonPath>,
    /// Default: the connector's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// Encoding of a time value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 (`2024-05-01T12:00:00.000Z`).
    #[default]
    Iso8601,
    /// Seconds since the epoch (Stripe's `created`).
    UnixSeconds,
    /// Milliseconds since the epoch (HubSpot search filters).
    UnixMillis,
}

/// The `{names}` of a template, in order (`{"a": 1}` and other braces that
/// hold no identifier are not placeholders).
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push(name.to_string());
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// One HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default)]
    pub method: Method,
    /// Path template relative to the base URL (`/v1/customers/{id}`); may
    /// carry a query string.
    pub path: String,
    /// Extra query parameters (templates allowed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Records of the response for list endpoints; the record itself for
    /// single-record endpoints when nested (`records.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<JsonPath>,
    /// Key wrapping the request body of writes (`properties` for HubSpot,
    /// `fields` for Airtable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<String>,
    /// Extra constant members of a JSON request body (`typecast: true`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub body: serde_json::Map<String, serde_json::Value>,
    /// For writes whose response is not the whole record (Salesforce
    /// answers `{"id","success","errors"}`; HubSpot returns only the
    /// properties written): the path of the written record's id in the
    /// response (in each result, for batch endpoints). Sequin then reads the
    /// canonical record with `get`. A write answered without a body (204) is
    /// read back the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns_id: Option<JsonPath>,
}

impl Endpoint {
    /// The placeholders of its path and its query parameters.
    pub fn placeholders(&self) -> Vec<String> {
        let mut out = placeholders(&self.path);
        for v in self.query.values() {
            out.extend(placeholders(v));
        }
        out
    }
}

/// HTTP method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// An object of the API, synced into one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Object {
    /// Table name: the object's singular snake_case name (`customer`).
    pub name: String,
    /// The API's name of the object (`customer`, `Contact`, `contacts`);
    /// `{object}` in templates, and how events name it.
    pub api_name: String,
    /// For the docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Field (API name) whose value is the primary key.
    pub primary_key: String,
    /// The endpoints of the object.
    pub endpoints: Endpoints,
    /// Pagination of `list`, when it differs from the connector's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Incremental strategy, when it differs from the connector's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// Delete detection, when it differs from the connector's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeleteDetection>,
    /// Most rows one SQL statement may write (the proxy refuses more with
    /// SQLSTATE 54000).
    #[serde(default = "max_rows", skip_serializing_if = "is_default_max_rows")]
    pub max_rows_per_write: u32,
    /// The object's fields; each becomes a column.
    pub fields: Vec<Field>,
    /// Fields discovered at run time and added as columns (Salesforce
    /// custom fields, HubSpot custom properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_fields: Option<DiscoveredFields>,
    /// Set when the API lists this object only under a parent record
    /// (Stripe's invoice lines under an invoice, a customer's tax ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

/// The parent of a *child object*: one the API lists only under a parent
/// record (`GET /v1/invoices/{invoice}/lines`).
///
/// The child's backfill lists the children of every parent in the
/// parent's table once the parent is backfilled; afterwards, whenever a
/// parent row changes (an event or a poll upserts it), that parent's
/// children are listed again and those no longer listed are deleted, and
/// deleting a parent deletes its children. That is all for a child that
/// changes only with its parent (an invoice's lines); one that changes on
/// its own (`changes_without_parent`) also takes its own events from the
/// connector's events feed. A child object has no `incremental` or
/// `deletes` of its own. The child's primary key stays its own id, which
/// must be unique across parents (Stripe's `il_`, `txn_` ids are); its
/// `field` column is indexed. Write-through writes a child through the
/// endpoints the spec declares, their `{<param>}` filled from the row's
/// parent column (and any other `{<field>}` from the row's field of that
/// API name); an endpoint the spec leaves out is refused with 0A000.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    /// The parent object (its table name, an object of this connector that
    /// is not itself a child).
    pub object: String,
    /// The placeholder of the child's endpoints filled with the parent's
    /// primary key: `invoice` for `/v1/invoices/{invoice}/lines`.
    pub param: String,
    /// The child's field (by API name, a top-level field typed like the
    /// parent's primary key) that holds the parent's primary key: taken
    /// from the record when the API sends it (a tax id's `customer`), set
    /// by Sequin when it does not (an invoice line has no `invoice`).
    pub field: String,
    /// Whether a child changes without its parent changing (a customer's
    /// tax id is added while the customer stays as it was; an invoice's
    /// lines change the invoice). Such a child also takes its own events
    /// from the connector's events feed (which it needs), and while the
    /// feed is refused it is listed again under every parent each fallback
    /// interval (a request per parent: costly for many parents).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changes_without_parent: bool,
    /// The parent's field (by API name, a `json` field of the parent
    /// object) holding the first page of the children as a list object
    /// (`{data, has_more}`), when the API embeds it in the parent record
    /// (Stripe's `invoice.lines`). Sync then takes the children from the
    /// parent's row when the embedded list is complete (`has_more` false)
    /// and lists them only when it is not: a request per parent saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<String>,
}

fn max_rows() -> u32 {
    100
}

fn is_default_max_rows(n: &u32) -> bool {
    *n == max_rows()
}

/// Endpoints of an object. An absent write endpoint means the operation is
/// not supported (SQLSTATE 0A000).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub list: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_create: Option<BatchEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_update: Option<BatchEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_delete: Option<BatchEndpoint>,
    /// Create-or-update by an external id field: what `INSERT ... ON
    /// CONFLICT (<external id column>) DO UPDATE` becomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upsert: Option<Upsert>,
}

/// The API's own create-or-update by an external id: a field (declared
/// `external_id`, or discovered with `discovered_fields.field.external_id`)
/// whose value finds the record to update, or is set on the one created.
/// Write-through sends `INSERT ... ON CONFLICT (<that column>) DO UPDATE`
/// here, and refuses ON CONFLICT on any other column (0A000, naming these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upsert {
    /// One record: its path names the field with `{external_field}` and
    /// the value with `{external_value}`; the body carries the other
    /// fields (the external id is in the path only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single: Option<Endpoint>,
    /// Several records in one request: its path names the field with
    /// `{external_field}`; each item carries the external id among its
    /// fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchEndpoint>,
    /// Path of the boolean "a record was created" in the answer (in each
    /// result, for the batch endpoint); false means an existing record was
    /// updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<JsonPath>,
    /// The HTTP status that says a single upsert created the record (201),
    /// when the answer has no `created` member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_status: Option<u16>,
}

/// An endpoint writing several records in one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Most records per request.
    pub max_size: u32,
    /// Key of the request body's record array (`inputs`, `records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// Path of the per-record results in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<JsonPath>,
    /// Whether the batch is all-or-nothing at the API (Salesforce
    /// `allOrNone`, set via `body`).
    #[serde(default)]
    pub atomic: bool,
    /// Key of each item that carries the record's primary key, for batch
    /// updates and deletes (`id`). Each item is otherwise the record's write
    /// object, wrapped in `wrap` when set (`{"id": .., "properties": {..}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Constant members added to each item (Salesforce's
    /// `attributes: {type: Contact}`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub item_body: serde_json::Map<String, serde_json::Value>,
    /// For batch deletes that take the ids in the query instead of a body:
    /// the parameter, sent once with the ids comma-joined (Salesforce's
    /// `ids=a,b`), or once per id when its name ends in `[]` (Airtable's
    /// `records[]=a&records[]=b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids_param: Option<String>,
}

/// A field of an object: one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The API's name (`email`, `FirstName`).
    pub name: String,
    /// Column name; defaults to the snake_case of `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Where the value sits in a record, when not at the top level under
    /// `name` (`properties.email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<JsonPath>,
    /// The value's type (and so the column's).
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether the value may be null or absent.
    #[serde(default = "yes")]
    pub nullable: bool,
    /// Who may set the field.
    #[serde(default)]
    pub access: Access,
    /// Must be given when creating a record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required_on_create: bool,
    /// A well-known string format, checked before any API call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Maximum length in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Allowed values.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub enum_values: Vec<String>,
    /// An external id of the object: `INSERT ... ON CONFLICT (<this
    /// column>) DO UPDATE` becomes the object's `upsert` by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_id: bool,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How timestamps are encoded on the wire (for `timestamp` fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<TimeFormat>,
    /// How the value travels as text when the API sends all values as
    /// strings (HubSpot properties): `string`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stringly: bool,
    /// How the API applies a new value of a `json` object field on update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Merge>,
    /// For the docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How an API applies a new value of an object field on update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Key by key: keys left out of the new value stay, and a key is
    /// removed by sending it empty (Stripe's `metadata`). Write-through
    /// sends the keys that changed (removed ones as null), the value must
    /// be a JSON object, and an undo restores exactly the keys it changed.
    Keys,
}

/// Column types. Each maps to one Postgres type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// `text`.
    String,
    /// `bigint`.
    Integer,
    /// `double precision`.
    Float,
    /// `numeric` (money, exact decimals).
    Decimal,
    /// `boolean`.
    Boolean,
    /// `timestamptz`.
    Timestamp,
    /// `date`.
    Date,
    /// `jsonb` (nested objects and arrays).
    Json,
    /// `text[]`.
    StringArray,
}

impl FieldType {
    /// The Postgres column type.
    pub fn pg_type(self) -> &'static str {
        match self {
            FieldType::String => "text",
            FieldType::Integer => "bigint",
            FieldType::Float => "double precision",
            FieldType::Decimal => "numeric",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp with time zone",
            FieldType::Date => "date",
            FieldType::Json => "jsonb",
            FieldType::StringArray => "text[]",
        }
    }
}

/// Who may set a field through a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Set by the API only; writing it is refused (SQLSTATE 428C9).
    #[default]
    ReadOnly,
    /// Settable when creating, never changed afterwards.
    CreateOnly,
    /// Settable by an update only (a parameter of the update request alone,
    /// such as a Stripe dispute's `evidence`); refused on create.
    UpdateOnly,
    /// Settable on create and update.
    Writable,
}

/// Well-known string formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Email,
    Uri,
    Phone,
    /// ISO 4217 currency code, lowercase or uppercase per the API.
    Currency,
    /// ISO 3166-1 alpha-2 country code.
    Country,
}

/// Fields discovered at run time for a static object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredFields {
    /// The describe/properties endpoint.
    pub endpoint: Endpoint,
    /// Where the field list sits in its response (`fields`, `results`).
    pub records: JsonPath,
    /// How to read one field description.
    pub field: FieldDescriptor,
    /// Only fields for which this path is true are added (`custom`); absent:
    /// every field not already declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if: Option<JsonPath>,
    /// Only fields for which this path is false or absent are added
    /// (HubSpot's `hubspotDefined`, which is true for built-in properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if_not: Option<JsonPath>,
    /// Discovered values travel as strings whatever their type (HubSpot
    /// properties); see [`Field::stringly`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stringly: bool,
    /// How a discovered field's value is found in a record: `{name}` is
    /// replaced by the field's API name (`properties.{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_path: Option<String>,
    /// How often to look again (e.g. `5m`).
    #[serde(default = "rediscover")]
    pub every: Duration,
}

fn rediscover() -> Duration {
    "5m".parse().expect("a duration")
}

/// How to read one field description of a describe/meta response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDescriptor {
    /// Path of the field's API name.
    pub name: JsonPath,
    /// Path of the API's type name, looked up in the connector's `type_map`
    /// (unknown types become `json`).
    #[serde(rename = "type")]
    pub ty: JsonPath,
    /// Path of a boolean "may be set on create".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub createable: Option<JsonPath>,
    /// Path of a boolean "may be updated".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updateable: Option<JsonPath>,
    /// Path of a boolean "read only" (inverse of the two above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<JsonPath>,
    /// Path of a boolean "may be null".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<JsonPath>,
    /// Path of the maximum length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<JsonPath>,
    /// Path of the allowed values (array of strings, or of objects with a
    /// `value` member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<JsonPath>,
    /// Path of a boolean "is an external id" (Salesforce's `externalId`):
    /// such a field is a conflict target of the object's `upsert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<JsonPath>,
    /// When a discovered field must be given on create (checked locally,
    /// 23502); the column itself stays nullable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_on_create: Option<RequiredOnCreate>,
    /// Every discovered field is writable unless this says otherwise.
    #[serde(default)]
    pub default_access: Access,
    /// API type names of computed fields, which are read-only whatever
    /// else the description says (Airtable's `formula`, `rollup`,
    /// `createdTime`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_types: Vec<String>,
    /// Path of a boolean "computed by the API" (Salesforce's `calculated`:
    /// formula and roll-up summary fields): such a field is read-only
    /// whatever else the description says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<JsonPath>,
    /// API type names whose fields are not synced at all, each for a
    /// reason the spec's comments give (Salesforce's compound `address`
    /// and `location`, whose parts are fields of their own, and `base64`,
    /// whose content a query does not return).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_types: Vec<String>,
}

/// When a discovered field is required on create: it may be set on create,
/// its `nullable` flag is false, and its `defaulted` flag (the API fills it
/// in when left out) is not true. Salesforce: `nillable: false`,
/// `defaultedOnCreate: false`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredOnCreate {
    /// Path of a boolean "may be null".
    pub nullable: JsonPath,
    /// Path of a boolean "the API fills it in on create".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaulted: Option<JsonPath>,
}

/// Objects that exist only at run time (Airtable tables, HubSpot custom
/// objects). A connector may have them beside its static `objects`; one
/// whose table name is a static object's is not synced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredObjects {
    /// The meta endpoint listing objects.
    pub endpoint: Endpoint,
    /// Where the object list sits in its response (`tables`).
    pub records: JsonPath,
    /// Path of an object's display name (table name = its snake_case).
    pub name: JsonPath,
    /// Path of an object's API id (`{object}` in templates).
    pub api_name: JsonPath,
    /// Path of the object's field list in its entry of the listing, when
    /// the listing carries the fields (HubSpot's schemas, Airtable's
    /// tables); otherwise `describe` reads them per object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<JsonPath>,
    /// A per-object describe endpoint holding the object's fields, for a
    /// listing that names objects without their fields (Salesforce's
    /// describeGlobal, then `/sobjects/{object}/describe`). Only objects
    /// the connection syncs are described: one request each per discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub describe: Option<ObjectDescribe>,
    /// Paths of booleans of a listing entry that must all be true for the
    /// object to be synced (Salesforce's `queryable`, `retrieveable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_if: Vec<JsonPath>,
    /// Objects never synced, whatever the connection's `objects:` says:
    /// those the API cannot list without a filter, and other known
    /// troublemakers, each with why (listed in the generated docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<ObjectRule>,
    /// Objects not synced unless a connection names them literally (not
    /// by a wildcard) in `objects:`: audit trails, sharing rows, event
    /// and metadata types (listed in the generated docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_by_default: Vec<ObjectRule>,
    /// Name the table after the object's API name with the column rules
    /// (`Invoice__c` -> `invoice__c`, `PricebookEntry` ->
    /// `pricebook_entry`) rather than after its display name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub table_from_api_name: bool,
    /// Candidate fields of the incremental cursor, in order of preference
    /// (`SystemModstamp`, `LastModifiedDate`): the first timestamp field the
    /// object has becomes `{cursor}` in the `incremental` and `deletes`
    /// templates (and the incremental `field`). An object with none of them
    /// is re-listed whole and diffed at every poll. Empty: every object
    /// uses `incremental` as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursor_fields: Vec<String>,
    /// Delete detection applies only to objects having this field
    /// (Salesforce's `IsDeleted`: `User` has none, its records are
    /// deactivated, never deleted); the others have none, or the full
    /// re-list's diff when they have no cursor field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_if_field: Option<String>,
    /// Delete detection also needs this flag of the object's listing entry
    /// to be true (Salesforce's `replicateable`: the Get Deleted resource
    /// serves replicated objects only). An object without it is re-listed
    /// whole and diffed at every poll instead, which finds its deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_if_flag: Option<JsonPath>,
    /// How to read one field description.
    pub field: FieldDescriptor,
    /// How a field's value is found in a record: `{name}` is replaced by the
    /// field's API name (`fields.{name}`).
    pub value_path: String,
    /// Discovered values travel as strings whatever their type (HubSpot
    /// custom objects' properties); see [`Field::stringly`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stringly: bool,
    /// Fields every discovered object has (the record id, timestamps).
    pub fixed_fields: Vec<Field>,
    /// The primary key (a `fixed_fields` name).
    pub primary_key: String,
    /// Endpoint templates; `{object}` is the discovered object's API name.
    pub endpoints: Endpoints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeleteDetection>,
    #[serde(default = "max_rows")]
    pub max_rows_per_write: u32,
    /// How often to look again (e.g. `5m`).
    #[serde(default = "rediscover")]
    pub every: Duration,
}

/// The per-object describe of discovered objects ([`DiscoveredObjects`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectDescribe {
    /// The describe endpoint; `{object}` is the object's API name.
    pub endpoint: Endpoint,
    /// Where the field list sits in its response (`fields`).
    pub records: JsonPath,
}

/// Objects named by a pattern, with the reason for the rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectRule {
    /// An API name, or a pattern where `*` stands for any run of characters
    /// and `?` for one (`*History`, `*__mdt`); case-insensitive.
    pub pattern: String,
    /// Why, for the docs and the error that names an object the rule
    /// refuses.
    pub why: String,
}

impl DiscoveredObjects {
    /// The deny rule matching the API name `api_name`, if any.
    pub fn denied(&self, api_name: &str) -> Option<&ObjectRule> {
        self.deny
            .iter()
            .find(|r| crate::pattern::matches(&r.pattern, api_name))
    }

    /// The default exclusion matching the API name `api_name`, if any.
    pub fn excluded_by_default(&self, api_name: &str) -> Option<&ObjectRule> {
        self.exclude_by_default
            .iter()
            .find(|r| crate::pattern::matches(&r.pattern, api_name))
    }
}

impl Field {
    /// The column name: `column`, or the snake_case of the API name.
    pub fn column_name(&self) -> String {
        self.column
            .clone()
            .unwrap_or_else(|| crate::naming::column_name(&self.name))
    }

    /// Where the value sits in a record.
    pub fn value_path(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }
}

impl Object {
    /// The field holding the primary key.
    pub fn primary_key_field(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == self.primary_key)
    }
}

impl Connector {
    /// An object by table name.
    pub fn object(&self, name: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// The pagination of an object's list endpoint.
    pub fn pagination_of<'a>(&'a self, object: &'a Object) -> Option<&'a Pagination> {
        object.pagination.as_ref().or(self.pagination.as_ref())
    }

    /// The incremental strategy of an object.
    pub fn incremental_of<'a>(&'a self, object: &'a Object) -> Option<&'a Incremental> {
        object.incremental.as_ref().or(self.incremental.as_ref())
    }

    /// The delete detection of an object.
    pub fn deletes_of<'a>(&'a self, object: &'a Object) -> Option<&'a DeleteDetection> {
        object.deletes.as_ref().or(self.deletes.as_ref())
    }

    /// The child objects of `parent` (objects whose `parent.object` it is).
    pub fn children_of<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects
            .iter()
            .filter(move |o| o.parent.as_ref().is_some_and(|p| p.object == parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_in_order() {
        assert_eq!(
            placeholders("/v1/customers/{customer}/tax_ids/{id}"),
            ["customer", "id"]
        );
        assert!(placeholders("/v1/customers").is_empty());
        assert_eq!(placeholders("{a}{b"), ["a"]);
        assert_eq!(placeholders("{\"a\": 1}"), Vec::<String>::new());
        let ep = Endpoint {
            path: "/v0/{base_id}/{object}".into(),
            query: [("since".to_string(), "{since}".to_string())].into(),
            ..serde_json::from_str(r#"{"path": "/"}"#).unwrap()
        };
        assert_eq!(ep.placeholders(), ["base_id", "object", "since"]);
    }
}
