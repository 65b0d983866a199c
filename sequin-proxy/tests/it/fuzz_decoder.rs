//! The fuzz target's body on stable Rust: `codec::fuzz_decode` (the same
//! function `fuzz/fuzz_targets/decode.rs` runs under libFuzzer) over a seed
//! corpus of valid messages and random mutations of it, for a bounded time
//! (`FUZZ_SECONDS`, default 5). Any panic or re-encoding mismatch fails.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use sequin_proxy::codec::startup::{CancelRequest, PROTOCOL_3_0, StartupMessage, StartupPacket};
use sequin_proxy::codec::*;

fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<BytesMut> = vec![
        Query {
            sql: "select 1; insert into stripe.customer values ('x')".into(),
        }
        .to_bytes(),
        Parse {
            name: "s1".into(),
            sql: "select $1".into(),
            param_types: vec![23],
        }
        .to_bytes(),
        Bind {
            portal: "p".into(),
            statement: "s1".into(),
            param_formats: vec![1],
            params: vec![Some(Bytes::from_static(&[0, 0, 0, 7])), None],
            result_formats: vec![0],
        }
        .to_bytes(),
        Describe {
            target: Target::Portal,
            name: "p".into(),
        }
        .to_bytes(),
        Execute {
            portal: "p".into(),
            max_rows: 0,
        }
        .to_bytes(),
        Close {
            target: Target::Statement,
            name: "s1".into(),
        }
        .to_bytes(),
        Sync.to_bytes(),
        Flush.to_bytes(),
        Terminate.to_bytes(),
        CopyData {
            data: Bytes::from_static(b"1\tx\n"),
        }
        .to_bytes(),
        CopyDone.to_bytes(),
        CopyFail {
            message: "no".into(),
        }
        .to_bytes(),
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        }
        .to_bytes(),
        Authentication::Md5Password { salt: [1, 2, 3, 4] }.to_bytes(),
        BackendKeyData { pid: 1, secret: 2 }.to_bytes(),
        ParameterStatus {
            name: "a".into(),
            value: "b".into(),
        }
        .to_bytes(),
        ReadyForQuery { status: b'T' }.to_bytes(),
        RowDescription {
            fields: vec![FieldDescription::new("id", 25)],
        }
        .to_bytes(),
        DataRow::from_text([Some("x"), None]).to_bytes(),
        CommandComplete {
            tag: "SELECT 1".into(),
        }
        .to_bytes(),
        ErrorResponse::new("ERROR", "23505", "dup").to_bytes(),
        NotificationResponse {
            pid: 1,
            channel: "c".into(),
            payload: "p".into(),
        }
        .to_bytes(),
        ParameterDescription { types: vec![23] }.to_bytes(),
        ParseComplete.to_bytes(),
    ];
    for p in [
        StartupPacket::SslRequest,
        StartupPacket::Cancel(CancelRequest { pid: 5, secret: 6 }),
        StartupPacket::Startup(StartupMessage {
            protocol: PROTOCOL_3_0,
            params: vec![("user".into(), "u".into())],
        }),
    ] {
        let mut b = BytesMut::new();
        p.encode(&mut b);
        out.push(b);
    }
    let mut all: Vec<Vec<u8>> = out.iter().map(|b| b.to_vec()).collect();
    // A pipeline of several messages in one buffer.
    all.push(out[..9].iter().flat_map(|b| b.iter().copied()).collect());
    all
}

fn mutate(rng: &mut impl Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..6) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let n = rng.random_range(0..v.len());
                v.truncate(n);
            }
            2 => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
            3 if v.len() >= 5 => {
                // Lie about the length.
                let len: u32 = match rng.random_range(0..4) {
                    0 => 0,
                    1 => 3,
                    2 => u32::MAX,
                    _ => rng.random_range(0..200),
                };
                v[1..5].copy_from_slice(&len.to_be_bytes());
            }
            4 if v.len() > 6 => {
                // Overwrite a count field with something large or negative.
                let i = rng.random_range(5..v.len() - 1);
                v[i] = 0xff;
                v[i + 1] = rng.random();
            }
            _ => {
                let extra: Vec<u8> = (0..rng.random_range(0..16)).map(|_| rng.random()).collect();
                v.extend(extra);
            }
        }
    }
    v
}

#[test]
fn decoders_never_panic_and_round_trip() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seeds = seeds();
    // Valid input must decode and re-encode exactly.
    for s in &seeds {
        fuzz_decode(s);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5e9),
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            let input = if rng.random_ratio(1, 20) {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            } else {
                mutate(&mut rng, seed)
            };
            fuzz_decode(&input);
            runs += 1;
        }
    }
    assert!(runs > 1000, "the fuzz loop ran ({runs} inputs)");
    eprintln!("{runs} inputs decoded without a panic");
}
