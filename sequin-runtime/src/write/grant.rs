//! The tokens that open a client's transaction for one write-through
//! statement (`sequin.open_grant`, migration 0006).
//!
//! Each proxy process has a random grant key, registered beside its process
//! key's digest in `sequin.writer_key` (readable by Sequin's role only). A
//! token for backend `pid` is the time `at` (milliseconds since the epoch)
//! and the MAC `sha256(k || sha256(k || "<pid>:<at>"))`: good for that
//! backend only, for a minute, and never shown to the client (the proxy
//! keeps its statements' parameters out of the errors it forwards).

use std::sync::OnceLock;

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
/// `sequin.open_grant(kid, at, mac)`, as bind parameters in text format.
pub fn token(pid: i32) -> [Option<Bytes>; 3] {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The key's digest, as text, is the same for every statement.
    static KID: OnceLock<Bytes> = OnceLock::new();
    let kid = KID.get_or_init(|| Bytes::from(bytea_hex(&crate::guard::digest())));
    [
        Some(kid.clone()),
        Some(Bytes::from(at.to_string())),
        Some(Bytes::from(bytea_hex(&mac(key(), pid, at)))),
    ]
}

/// The MAC of a token.
fn mac(k: &[u8], pid: i32, at: i64) -> Vec<u8> {
    let inner = Sha256::new()
        .chain_update(k)
        .chain_update(format!("{pid}:{at}"))
        .finalize();
    Sha256::new()
        .chain_update(k)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A `bytea` in Postgres's hex text format.
fn bytea_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for byte in b {
        s.push(DIGITS[usize::from(byte >> 4)] as char);
        s.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_the_backend_and_the_time() {
        let k = [7u8; 32];
        assert_ne!(mac(&k, 42, 1000), mac(&k, 43, 1000));
        assert_ne!(mac(&k, 42, 1000), mac(&k, 42, 1001));
        assert_ne!(mac(&k, 42, 1000), mac(&[8u8; 32], 42, 1000));
        let [kid, at, m] = token(42);
        assert!(kid.unwrap().starts_with(b"\\x"));
        assert!(m.unwrap().starts_with(b"\\x"));
        assert_eq!(bytea_hex(&[0x00, 0x7f, 0xab, 0xff]), "\\x007fabff");
        let at: i64 = std::str::from_utf8(at.as_ref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(at > 1_700_000_000_000, "milliseconds since the epoch: {at}");
    }
}
