//! The Sequin runtime: the `sequin` binary's library.
//!
//! Modules (dependencies point one way, top to bottom):
//! - [`config`]: `sequin.yaml`, checked against the compiled-in connectors.
//! - [`serve`]: `sequin proxy`, the Postgres proxy (crate `sequin-proxy`),
//!   writing through [`write`] (write-through: SQL -> API -> Postgres, the
//!   write journal and its reconciler).
//! - [`sync`]: backfill and incremental sync, driven by the specs.
//! - [`events`]: every committed change to a synced table, from the
//!   outbox to the sinks (webhooks, NATS JetStream, NOTIFY).
//! - [`catalog`]: below `sync` and `write` (neither depends on the other):
//!   each connection's API client, the object plans, and discovery of
//!   objects and fields known only at run time.
//! - [`api`]: the HTTP client layer (auth, rate limits, retries, pagination,
//!   error decoding), driven by the specs.
//! - [`store`]: Postgres (migrations, COPY + upsert, sync state); its
//!   sessions speak TLS through [`tls`] (libpq's `sslmode` meanings).
//! - [`guard`]: process keys (the write guard's startup option, digests
//!   registered with expiry); [`tokens`]: OAuth tokens kept in Postgres.
//! - [`process`]: one `sequin sync`/`proxy`/`run` process: its halves and
//!   the endpoint [`health`] serves on `metrics.listen` (`/metrics`,
//!   `/healthz`, `/readyz`).
//! - [`metrics`]: the process's Prometheus metrics, counted by `api`,
//!   `sync`, `write` and `serve` with one call each.
//! - [`status`]: `sequin status`, from the views `sequin.status` and
//!   `sequin.write_status`.
//! - [`registry`]: the compiled-in connectors (crate `sequin-connectors`,
//!   generated from `connectors/*.yaml` by `cargo xtask gen`) as models,
//!   with their DDL and columns.
//!
//! The runtime does not depend on the generator (`sequin-codegen`).

pub mod api;
pub mod catalog;
pub mod config;
pub mod events;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod process;
pub mod rates;
pub mod registry;
pub mod serve;
pub mod status;
pub mod store;
pub mod sync;
pub mod tls;
pub mod tokens;
pub mod write;
