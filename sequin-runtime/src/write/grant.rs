//! The one-time tokens that open a client's transaction for one
//! write-through statement (`sequin.open_grant`, migration 0006).
//!
//! Each proxy process has a random grant key, registered beside its process
//! key's digest in `sequin.writer_key` (readable by Sequin's role only). A
//! token for backend `pid` is a counter `n` and the MAC
//! `sha256(k || sha256(k || "<pid>:<n>"))`: bound to that backend, good
//! once (the session records the last counter spent, not transactionally),
//! and useless to anyone who sees it afterwards. The counter only grows in
//! this process, and a client session lives on one proxy process.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// This process's grant key.
pub fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        k
    })
}

/// A token for one statement of backend `pid`: the arguments of
/// `sequin.open_grant(kid, n, mac)`, as bind parameters in text format.
pub fn token(pid: i32) -> [Option<Bytes>; 3] {
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let k = key();
    let inner = Sha256::new()
        .chain_update(k)
        .chain_update(format!("{pid}:{n}"))
        .finalize();
    let mac = Sha256::new().chain_update(k).chain_update(inner).finalize();
    [
        Some(Bytes::from(bytea_hex(&crate::guard::digest()))),
        Some(Bytes::from(n.to_string())),
        Some(Bytes::from(bytea_hex(&mac))),
    ]
}

/// A `bytea` in Postgres's hex text format.
fn bytea_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_count_up_and_bind_the_backend() {
        let [_, n1, m1] = token(42);
        let [_, n2, m2] = token(42);
        let n1: i64 = std::str::from_utf8(n1.as_ref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let n2: i64 = std::str::from_utf8(n2.as_ref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(n2 > n1);
        assert_ne!(m1, m2);
        let [_, _, other] = token(43);
        assert_ne!(other, m2);
        assert!(m1.unwrap().starts_with(b"\\x"));
    }
}
