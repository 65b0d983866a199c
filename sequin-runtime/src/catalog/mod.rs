//! The catalog: what Sequin knows of each connection's API, shared by
//! [`crate::sync`] and [`crate::write`] (both depend on it, neither on the
//! other).
//!
//! - [`Connection`] (`connection.rs`): a connection's spec (with its
//!   rate-limit override) and API client, one rate-limit budget per
//!   connection in the process;
//! - [`plan`]: an object's plan (table, endpoints, strategies, update
//!   marker), from the spec or from discovery;
//! - `discover.rs`: objects and fields known only at run time (Airtable
//!   tables, HubSpot custom objects and the link tables of their
//!   associations, custom fields), looked up through the API;
//! - [`links`]: a link table's plan (`links:` of the spec) and the batch
//!   read of records' links;
//! - `select.rs`: which objects a connection's `objects:` and
//!   `exclude_objects:` select (table names, API names, wildcards).

mod connection;
mod discover;
pub mod links;
pub mod plan;
mod select;

pub use connection::Connection;
pub use links::{Direction, LinkPlan};
pub use plan::{Marker, ObjectPlan, ParentPlan, now_us};
pub use select::{
    denied_literal, migrate_connections, to_migrate, unmatched_literals, wanted, wanted_static,
};

use crate::api;

/// Why a connection's API client or object plans could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be built, or a discovery request failed.
    #[error(transparent)]
    Api(Box<api::ApiError>),
    #[error("object `{object}` has no pagination in the {connector} spec")]
    NoPagination { connector: String, object: String },
}

impl From<api::ApiError> for Error {
    fn from(e: api::ApiError) -> Error {
        Error::Api(Box::new(e))
    }
}
