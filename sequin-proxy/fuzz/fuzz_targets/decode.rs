//! Fuzz target: every message decoder, in both directions and for startup
//! packets, must reject bad input with an error (never a panic) and
//! re-encode what it accepts byte for byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sequin_proxy::codec::fuzz_decode(data);
});
