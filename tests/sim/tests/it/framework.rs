//! The shared machinery over real HTTP: every fault knob, the rate limiter and its statistics,
//! determinism of the seeded RNG, the `/_sim` control routes and the `sequin-sim` binary.

use std::collections::HashSet;

use std::process::Command;
use std::time::{Duration, Instant};

use sequin_pgtemp::SimChild;
use sequin_sim::{Api, Faults, RateLimit, Sim, SimConfig, StatsSnapshot};
use serde_json::Value;

const KEY: &str = "sk_test_sequin";

async fn stripe(records: usize, faults: Faults) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(records)
            .rate_limit(0.0)
            .faults(faults),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

fn customers_url(sim: &Sim) -> String {
    format!("{}/v1/customers", sim.base_url())
}

#[tokio::test]
async fn fault_5xx_always_answers_stripe_api_error() {
    let sim = stripe(
        5,
        Faults {
            p_5xx: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..10 {
        let r = http
            .get(customers_url(&sim))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["stripe-should-retry"], "true");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "api_error");
    }
    let s = sim.stats();
    assert_eq!(s.faults.http_5xx, 10);
    assert_eq!(s.by_status.get(&500), Some(&10));
    assert_eq!(s.requests, 10);
}

/// Pages through all customers, retrying any failed request (5xx, 429, broken connection,
/// truncated or unparsable body) until it succeeds.
async fn fetch_all_with_retries(sim: &Sim, http: &reqwest::Client) -> (Vec<String>, u32) {
    let mut ids = Vec::new();
    let mut retries = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}?limit=100", customers_url(sim));
        if let Some(c) = &cursor {
            url.push_str(&format!("&starting_after={c}"));
        }
        let page: Value = loop {
            let attempt = async {
                let r = http.get(&url).bearer_auth(KEY).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.json::<Value>().await.ok()
            };
            match attempt.await {
                Some(v) => break v,
                None => {
                    retries += 1;
                    assert!(retries < 1000, "client never got through");
                }
            }
        };
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            return (ids, retries);
        }
        cursor = ids.last().cloned();
    }
}

#[tokio::test]
async fn retrying_client_gets_everything_through_mixed_faults() {
    let sim = stripe(
        1000,
        Faults {
            p_5xx: 0.3,
            p_429: 0.1,
            p_truncate: 0.1,
            p_reset: 0.1,
            ..Faults::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let (ids, retries) = fetch_all_with_retries(&sim, &http).await;
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
    assert_eq!(ids, sim.stripe().ids(sequin_sim::stripe::Kind::Customer));
    let f = sim.stats().faults;
    assert!(
        f.http_5xx > 0 && f.http_429 > 0 && f.truncated > 0 && f.reset > 0,
        "{f:?}"
    );
    assert_eq!(
        u64::from(retries),
        f.http_5xx + f.http_429 + f.truncated + f.reset,
        "every fault cost exactly one retry"
    );
}

#[tokio::test]
async fn injected_429_is_counted_apart_from_real_limit_breaches() {
    let sim = stripe(
        1,
        Faults {
            p_429: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let r = reqwest::Client::new()
        .get(customers_url(&sim))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit");
    let s = sim.stats();
    assert_eq!(s.faults.http_429, 1);
    assert_eq!(s.rate_limited, 0);
}

#[tokio::test]
async fn truncated_bodies_announce_more_than_they_send() {
    let sim = stripe(
        50,
        Faults {
            p_truncate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = http
            .get(format!("{}?limit=100", customers_url(&sim)))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "headers arrive intact");
        let announced = r.content_length().expect("content-length sent");
        assert!(announced > 1000);
        match r.bytes().await {
            Err(_) => {}
            Ok(bytes) => {
                assert!((bytes.len() as u64) < announced);
                assert!(serde_json::from_slice::<Value>(&bytes).is_err());
            }
        }
    }
    assert_eq!(sim.stats().faults.truncated, 5);
}

#[tokio::test]
async fn connection_reset_fails_the_request() {
    let sim = stripe(
        1,
        Faults {
            p_reset: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let err = reqwest::Client::new()
        .get(customers_url(&sim))
        .bearer_auth(KEY)
        .send()
        .await
        .expect_err("the connection is reset");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    let s = sim.stats();
    assert_eq!(s.faults.reset, 1);
    assert!(s.by_status.is_empty(), "no response was sent: {s:?}");
}

#[tokio::test]
async fn latency_delays_each_request() {
    let sim = stripe(
        1,
        Faults {
            latency: Duration::from_millis(1000),
            ..Faults::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let t = Instant::now();
    let r = http
        .get(customers_url(&sim))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    // Control routes are not delayed (nor faulted).
    let t = Instant::now();
    http.get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_millis(1000));
}

async fn status_sequence(seed: u64) -> Vec<u16> {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe)
            .seed_records(1)
            .rate_limit(0.0)
            .rng_seed(seed)
            .faults(Faults {
                p_5xx: 0.5,
                ..Faults::default()
            }),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..40 {
        let r = http
            .get(customers_url(&sim))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        out.push(r.status().as_u16());
    }
    out
}

#[tokio::test]
async fn faults_and_data_are_deterministic_per_seed() {
    let a = status_sequence(7).await;
    assert_eq!(a, status_sequence(7).await);
    assert_ne!(a, status_sequence(8).await);
    assert!(a.contains(&500) && a.contains(&200));

    let first = stripe(20, Faults::default()).await;
    let second = stripe(20, Faults::default()).await;
    let k = sequin_sim::stripe::Kind::Customer;
    assert_eq!(first.stripe().ids(k), second.stripe().ids(k));
}

#[tokio::test]
async fn rate_limit_rejects_with_429_and_retry_after_and_never_admits_more_than_the_limit() {
    // Stripe's documented default: 25 requests per second in test mode.
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).seed_records(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = customers_url(&sim);
    let r = http.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let key = &sim.stats().rate_keys["account"];
    assert_eq!((key.limit, key.window_ms), (25, 1000));

    // The burst below must land inside one window however loaded the machine is: 25 per 10 s.
    sim.set_rate_limit(Some(RateLimit {
        requests: 25,
        window: Duration::from_secs(10),
    }));
    sim.reset_stats();
    let mut tasks = Vec::new();
    for _ in 0..120 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(KEY).send().await.unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let should_retry = r.headers().get("stripe-should-retry").is_some();
            (
                r.status().as_u16(),
                retry_after,
                should_retry,
                r.json::<Value>().await.unwrap(),
            )
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        let (status, retry_after, should_retry, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let secs: u64 = retry_after.expect("Retry-After on 429").parse().unwrap();
                assert!((1..=10).contains(&secs), "{secs}");
                assert!(should_retry);
                assert_eq!(body["error"]["code"], "rate_limit");
                assert_eq!(body["error"]["type"], "invalid_request_error");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The first request above is still in the window: 24 more are admitted.
    assert_eq!((ok, limited), (24, 96));
    let s: StatsSnapshot = sim.stats();
    assert_eq!(s.rate_limited, limited);
    let key = &s.rate_keys["account"];
    assert_eq!((key.limit, key.window_ms), (25, 10_000));
    assert_eq!(key.max_admitted_in_window, 25, "{key:?}");
    assert_eq!(key.max_attempted_in_window, 121, "{key:?}");
    assert_eq!(key.rejected, limited);

    // A client pacing itself under the limit is never rejected and stays under it.
    sim.set_rate_limit(Some(RateLimit {
        requests: 5,
        window: Duration::from_millis(200),
    }));
    sim.reset_stats();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..12 {
        let r = http.get(&url).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
    let s = sim.stats();
    assert_eq!(s.rate_limited, 0);
    assert!(s.rate_keys["account"].max_attempted_in_window <= 5);
}

#[tokio::test]
async fn control_routes_stats_reset_and_faults_over_http() {
    let sim = stripe(3, Faults::default()).await;
    let http = reqwest::Client::new();
    let base = sim.base_url();
    http.get(customers_url(&sim))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    http.get(format!("{base}/v1/customers/cus_missing"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let s: StatsSnapshot = http
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s.requests, 2);
    assert_eq!(s.by_status.get(&200), Some(&1));
    assert_eq!(s.by_status.get(&404), Some(&1));
    assert_eq!(s.by_route.get("GET /v1/customers"), Some(&1));
    assert_eq!(s.by_route.get("GET /v1/customers/{id}"), Some(&1));

    let r = http
        .post(format!("{base}/_sim/reset-stats"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let s: StatsSnapshot = http
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s, StatsSnapshot::default());

    let r = http
        .post(format!("{base}/_sim/faults"))
        .json(&serde_json::json!({"p_5xx": 1.0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = http
        .get(customers_url(&sim))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let f: Faults = http
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f.p_5xx, 1.0);
    http.post(format!("{base}/_sim/faults"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/_sim/rate-limit"))
        .json(&serde_json::json!({"requests": 1, "window": 60000}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.get(customers_url(&sim))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(customers_url(&sim))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn binary_prints_its_address_and_serves_stripe() {
    // Killed on drop, also when an assertion below fails.
    let mut sim = SimChild::spawn(Command::new(env!("CARGO_BIN_EXE_sequin-sim")).args([
        "--api",
        "stripe",
        "--seed-records",
        "1000",
        "--listen",
        "127.0.0.1:0",
    ]))
    .unwrap_or_else(|e| panic!("first line names the address: {e}"));
    let base = sim.url.clone();
    let result = async {
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{base}/v1/customers"))
            .bearer_auth("sk_test_sequin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"].as_array().unwrap().len(), 10);
        assert_eq!(body["has_more"], true);
        let r = http
            .get(format!("{base}/v1/customers"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    .await;
    sim.child.kill().unwrap();
    sim.child.wait().unwrap();
    result
}

#[tokio::test]
async fn binary_help_documents_default_tokens() {
    let out = Command::new(env!("CARGO_BIN_EXE_sequin-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for api in Api::ALL {
        assert!(
            help.contains(api.default_token()),
            "--help names {api}'s token"
        );
    }
}
