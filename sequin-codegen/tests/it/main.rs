//! The code generator: every integration test, in one binary (one link of tokio,
//! reqwest and tokio-postgres instead of one per file). One module per
//! former test file.

mod compiles;
mod errors;
mod fresh;
mod openapi;
mod snapshots;
