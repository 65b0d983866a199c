//! `sequin-sim` binary.
fn main() {}
