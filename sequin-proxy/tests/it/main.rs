//! The proxy: every integration test, in one binary (one link of tokio,
//! reqwest and tokio-postgres instead of one per file). One module per
//! former test file; the helpers they share are modules too.

mod common;

mod auth_tls;
mod drivers;
mod fuzz_decoder;
mod intercept;
mod pgbench;
mod protocol;
mod robustness;
