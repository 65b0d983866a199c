//! The API simulators: every integration test, in one binary (one link of tokio,
//! reqwest and tokio-postgres instead of one per file). One module per
//! former test file.

mod airtable;
mod framework;
mod github;
mod hubspot;
mod openapi;
mod openapi_hubspot;
mod salesforce;
mod stripe;
mod stripe_catalogue;
