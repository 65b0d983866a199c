//! The runtime: every integration test, in one binary (one link of tokio,
//! reqwest and tokio-postgres instead of one per file). One module per
//! former test file; the helpers they share are modules too.

mod api_support;
mod process_support;

mod api_airtable;
mod api_github;
mod api_hubspot;
mod api_salesforce;
mod api_stripe;
mod bad_input;
mod crash;
mod crash_bulk;
mod events_crash;
mod events_nats;
mod events_ops;
mod layering;
mod pool;
mod proxies;
mod rates;
mod reconcile;
mod reload;
mod scale_out;
mod status_progress;
mod store;
