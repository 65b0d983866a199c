//! End-to-end tests: every integration test, in one binary (one link of tokio,
//! reqwest and tokio-postgres instead of one per file). One module per
//! former test file; the helpers they share are modules too.

mod sync_common;
mod write_common;

mod ddl;
mod events;
mod events_faults;
mod faults;
mod observe;
mod spec_vs_reference;
mod sync_airtable;
mod sync_github;
mod sync_hubspot;
mod sync_hubspot_links;
mod sync_restart;
mod sync_salesforce;
mod sync_salesforce_bulk;
mod sync_salesforce_deletes;
mod sync_salesforce_objects;
mod sync_salesforce_quota;
mod sync_scale;
mod sync_stripe;
mod sync_stripe_account;
mod sync_stripe_children;
mod tls;
mod write_consistency;
mod write_contract;
mod write_drivers;
mod write_faults;
mod write_guard;
mod write_hubspot_links;
mod write_protocol;
mod write_salesforce_upsert;
