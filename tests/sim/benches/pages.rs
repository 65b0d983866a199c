//! Pages per second served by each simulator, and the CPU a 100-record Stripe page costs.
//!
//! `cargo bench -p sequin-sim --bench pages` (release build). Three measurements, each quoted
//! against a baseline taken in the same run:
//!
//! 1. In process: `Stripe::list` for 100-record customer pages (validation, cursor lookup and
//!    assembly from pre-serialized records) against serializing the same 100 customers from
//!    `serde_json::Value`s, the naive way.
//! 2. Over HTTP, per API: the `sequin-sim` binary as a child process, one client walking
//!    100-record pages sequentially with the API's own cursor; pages/s against requests/s of the
//!    tiny `/_sim/faults` control route on the same server and connection (the HTTP floor).
//! 3. Server CPU per page: the child's utime+stime from `/proc/PID/stat` over the walk.
//!
//! Environment: `SIM_BENCH_SECS` (default 3) seconds per walk, `SIM_BENCH_RECORDS` (default
//! 10000) seeded records.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use sequin_sim::stripe::Kind;
use sequin_sim::{Api, SimConfig};
use serde_json::Value;

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("SIM_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

fn records() -> usize {
    std::env::var("SIM_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// How to walk one API's main list 100 records at a time.
struct Walk {
    api: Api,
    /// First page, relative to the base URL.
    first: String,
    /// Extra request headers.
    headers: Vec<(&'static str, String)>,
    /// The next page's URL (absolute or relative), or `None` at the end.
    next: fn(&Value, &HeaderMap, &str) -> Option<String>,
}

fn walks() -> Vec<Walk> {
    vec![
        Walk {
            api: Api::Stripe,
            first: "/v1/customers?limit=100".into(),
            headers: vec![("authorization", "Bearer sk_test_sequin".into())],
            next: |body, _, _| {
                (body["has_more"] == true).then(|| {
                    let last = body["data"]
                        .as_array()
                        .and_then(|d| d.last())
                        .expect("a page");
                    format!(
                        "/v1/customers?limit=100&starting_after={}",
                        last["id"].as_str().unwrap()
                    )
                })
            },
        },
        Walk {
            api: Api::Github,
            first: format!(
                "/repos/{}/{}/issues?state=all&per_page=100",
                sequin_sim::github::Github::OWNER,
                sequin_sim::github::Github::REPO
            ),
            headers: vec![("authorization", "Bearer ghp_sequin".into())],
            next: |_, headers, _| {
                let link = headers.get("link")?.to_str().ok()?;
                link.split(", ")
                    .find(|l| l.ends_with("rel=\"next\""))
                    .map(|l| {
                        l.split(';')
                            .next()
                            .unwrap()
                            .trim_matches(|c| c == '<' || c == '>')
                            .to_owned()
                    })
            },
        },
        Walk {
            api: Api::Hubspot,
            first: "/crm/v3/objects/contacts?limit=100".into(),
            headers: vec![("authorization", "Bearer pat-na1-sequin".into())],
            next: |body, _, _| {
                body["paging"]["next"]["after"]
                    .as_str()
                    .map(|after| format!("/crm/v3/objects/contacts?limit=100&after={after}"))
            },
        },
        Walk {
            api: Api::Airtable,
            first: format!("/v0/{}/Contacts?pageSize=100", sequin_sim::airtable::DEMO_BASE_ID),
            headers: vec![("authorization", "Bearer patSequin.simulator".into())],
            next: |body, _, _| {
                body["offset"].as_str().map(|offset| {
                    format!(
                        "/v0/{}/Contacts?pageSize=100&offset={offset}",
                        sequin_sim::airtable::DEMO_BASE_ID
                    )
                })
            },
        },
        Walk {
            // SOQL pages are at least 200 records (batchSize 200..=2000).
            api: Api::Salesforce,
            first: "/services/data/v59.0/query?q=SELECT+Id,FirstName,LastName,Email,LastModifiedDate+FROM+Contact".into(),
            headers: vec![
                ("authorization", "Bearer 00Dsequin!sim.access.token".into()),
                ("sforce-query-options", "batchSize=200".into()),
            ],
            next: |body, _, _| body["nextRecordsUrl"].as_str().map(str::to_owned),
        },
    ]
}

/// Records on a page of the walk's response.
fn records_on(body: &Value) -> usize {
    ["data", "results", "records"]
        .iter()
        .find_map(|k| body[*k].as_array().map(Vec::len))
        .or_else(|| body.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Child-process simulator; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(api: Api, records: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sequin-sim"))
            .args([
                "--api",
                api.name(),
                "--rate-limit",
                "0",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--seed-records", &records.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sequin-sim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout piped"))
            .read_line(&mut line)
            .expect("address line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// utime + stime of the server process, in seconds (clock ticks of 1/100 s on Linux).
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn absolute(base: &str, url: &str) -> String {
    if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{base}{url}")
    }
}

async fn http_walk(walk: &Walk, records: usize, duration: Duration) {
    let server = Server::start(walk.api, records);
    let http = reqwest::Client::new();
    let get = |url: String| {
        let mut req = http.get(url);
        for (k, v) in &walk.headers {
            req = req.header(*k, v);
        }
        req
    };
    // Baseline: the smallest JSON route of the same server.
    let faults = format!("{}/_sim/faults", server.base);
    for _ in 0..200 {
        http.get(&faults)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let t = Instant::now();
    let mut baseline = 0u64;
    while t.elapsed() < duration / 2 {
        http.get(&faults)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        baseline += 1;
    }
    let baseline_rate = baseline as f64 / t.elapsed().as_secs_f64();

    let cpu_before = server.cpu();
    let t = Instant::now();
    let mut pages = 0u64;
    let mut page_records = 0usize;
    let mut url = absolute(&server.base, &walk.first);
    while t.elapsed() < duration {
        let resp = get(url.clone()).send().await.unwrap();
        assert!(resp.status().is_success(), "{} {url}", resp.status());
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.unwrap();
        pages += 1;
        page_records += records_on(&body);
        url = match (walk.next)(&body, &headers, &server.base) {
            Some(next) => absolute(&server.base, &next),
            None => absolute(&server.base, &walk.first),
        };
    }
    let elapsed = t.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu_before;
    let rate = pages as f64 / elapsed;
    println!(
        "{:<11} {:>6.0} pages/s of {:>3} records  {:>5.1}% of baseline ({:>6.0} req/s /_sim/faults)  server CPU {:>7.1} us/page",
        walk.api.name(),
        rate,
        page_records / pages.max(1) as usize,
        100.0 * rate / baseline_rate,
        baseline_rate,
        cpu * 1e6 / pages as f64,
    );
}

async fn in_process_stripe(records: usize, duration: Duration) {
    let sim = sequin_sim::start(
        SimConfig::new(Api::Stripe).rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let stripe = sim.stripe();
    stripe.seed_customers(records);
    let ids = stripe.ids(Kind::Customer);
    let cursors: Vec<String> = ids
        .iter()
        .step_by(100)
        .take(ids.len() / 100 - 1)
        .cloned()
        .collect();

    let t = Instant::now();
    let mut pages = 0usize;
    let mut bytes = 0usize;
    while t.elapsed() < duration {
        let cursor = &cursors[pages % cursors.len()];
        let page = stripe
            .list(
                Kind::Customer,
                &format!("limit=100&starting_after={cursor}"),
            )
            .unwrap();
        bytes += page.len();
        pages += 1;
    }
    let per_page = t.elapsed().as_secs_f64() / pages as f64;

    // Baseline: serializing the same 100 customers from JSON values.
    let values: Vec<Value> = ids[..100]
        .iter()
        .map(|id| stripe.get(Kind::Customer, id).unwrap())
        .collect();
    let page = serde_json::json!({"object": "list", "data": values, "has_more": true, "url": "/v1/customers"});
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed() < duration {
        bytes += serde_json::to_string(&page).unwrap().len();
        n += 1;
    }
    let naive = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "stripe in-process: {:.1} us per 100-customer page ({:.2}x the {:.1} us of serializing 100 Values), {} KiB/page",
        per_page * 1e6,
        per_page / naive,
        naive * 1e6,
        bytes / (pages + n) / 1024,
    );
    sim.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects APIs by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (records, duration) = (records(), secs());
        println!("records seeded: {records}; {duration:?} per measurement");
        if selected("stripe-in-process") {
            in_process_stripe(records, duration).await;
        }
        for walk in walks() {
            if selected(walk.api.name()) {
                http_walk(&walk, records, duration).await;
            }
        }
    });
}
