//! The `sequin` binary.

fn main() {
    println!("sequin: see `sequin --help`");
}
