//! The Sequin runtime: the `sequin` binary's library.
//!
//! Modules (dependencies point one way, top to bottom):
//! - [`connectors`]: generated from `connectors/*.yaml` by `cargo xtask gen`
//!   (typed records, descriptors, DDL); never edited by hand.
//! - [`registry`]: the compiled-in connectors as models, and their DDL for a
//!   connection's schema.
//!
//! The runtime does not depend on the generator (`sequin-codegen`).

pub mod api;
pub mod connectors;
pub mod registry;
