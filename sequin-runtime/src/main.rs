//! `sequin` binary.
fn main() {}
