//! The connector spec model and the record machinery shared by generated
//! code and the runtime.
//!
//! - [`model`]: serde types of `connectors/<api>.yaml` (the format's single
//!   definition; its JSON Schema is derived from them).
//! - [`yaml`]: YAML parsing that remembers where each value stands, so every
//!   problem can be reported as `file:line:column`.
//! - [`record`]: columns, cells and the generic decode / encode / validate of
//!   API records that `sequin-derive` impls and runtime-discovered objects
//!   share.
//! - [`async_query`]: asynchronous query jobs for backfills (`async_query:`).
//! - [`duration`]: `500ms`, `10s`, `24h` in specs and configs.
//! - [`naming`]: API names to Postgres identifiers.
//! - [`pattern`]: object patterns with `*` and `?` (`objects: ["*__c"]`).
//! - [`links`]: link tables (`links:`) as objects, and their row and item
//!   templates.
//! - [`quota`]: an API's allowance over a long period (`quota:`).
//!
//! This crate does not depend on the generator, on HTTP or on Postgres.

pub mod async_query;
pub mod duration;
pub mod links;
pub mod model;
pub mod naming;
pub mod pattern;
pub mod quota;
pub mod record;
pub mod yaml;

pub use model::Connector;
