//! Pages per second served by each simulator, and the CPU a 100-record Stripe page costs.
//!
//! `cargo bench -p sequin-sim --bench pages` (release build). Three measurements, each quoted
//! against a baseline taken in the same run:
//!
//! 1. In process: `Stripe::list` for 100-record customer pages (validation, cursor lookup and
//!    assembly from pre-serialized records) against serializing the same 100 customers from
//!    `serde_json::Value`s, the naive way.
//! 2. Over HTTP, per API: the `sequin-sim` binary as a child process, one client walking
//!    pages sequentially with the API's own cursor at the API's largest page size (100 records;
//!    Salesforce SOQL 2000, HubSpot search 200); pages/s (and records/s) against requests/s of
//!    the tiny `/_sim/faults` control route on the same server and connection (the HTTP floor).
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

/// How to walk one API's main list a page at a time.
struct Walk {
    api: Api,
    /// What the output line calls the walk (the API name, or API and endpoint).
    label: &'static str,
    /// First page, relative to the base URL.
    first: String,
    /// Extra request headers.
    headers: Vec<(&'static str, String)>,
    /// For endpoints that page through a POST body (HubSpot search): the body for a cursor
    /// (`None` for the first page). Such walks POST to `first` every time and `next` returns
    /// the cursor instead of a URL.
    post_body: Option<fn(Option<&str>) -> Value>,
    /// The next page's URL (absolute or relative) or POST cursor, or `None` at the end.
    next: fn(&Value, &HeaderMap, &str) -> Option<String>,
}

/// The fields a Salesforce sync of Account selects (standard fields including the compound
/// addresses), in the order incremental sync pages through them.
const SALESFORCE_SOQL: &str = "SELECT Id, IsDeleted, Name, Type, ParentId, BillingStreet, BillingCity, \
    BillingState, BillingPostalCode, BillingCountry, BillingLatitude, BillingLongitude, BillingAddress, \
    ShippingStreet, ShippingCity, ShippingPostalCode, ShippingCountry, ShippingAddress, Phone, Fax, \
    AccountNumber, Website, PhotoUrl, Sic, Industry, AnnualRevenue, NumberOfEmployees, Ownership, \
    Description, Rating, AccountSource, YearStarted, CleanStatus, OwnerId, CreatedDate, CreatedById, \
    LastModifiedDate, LastModifiedById, SystemModstamp FROM Account ORDER BY SystemModstamp, Id";

fn walks() -> Vec<Walk> {
    vec![
        Walk {
            api: Api::Stripe,
            label: "stripe",
            post_body: None,
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
            label: "github",
            post_body: None,
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
            label: "hubspot",
            post_body: None,
            first: "/crm/v3/objects/contacts?limit=100".into(),
            headers: vec![("authorization", "Bearer pat-na1-sequin".into())],
            next: |body, _, _| {
                body["paging"]["next"]["after"]
                    .as_str()
                    .map(|after| format!("/crm/v3/objects/contacts?limit=100&after={after}"))
            },
        },
        Walk {
            api: Api::Hubspot,
            label: "hubspot-search",
            // An incremental sync's search: everything modified since a point, oldest first,
            // at the endpoint's largest page (200).
            post_body: Some(|after| {
                serde_json::json!({
                    "limit": 200,
                    "after": after,
                    "filterGroups": [{"filters": [
                        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}
                    ]}],
                    "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                })
            }),
            first: "/crm/v3/objects/contacts/search".into(),
            headers: vec![("authorization", "Bearer pat-na1-sequin".into())],
            next: |body, _, _| body["paging"]["next"]["after"].as_str().map(str::to_owned),
        },
        Walk {
            api: Api::Airtable,
            label: "airtable",
            post_body: None,
            first: format!(
                "/v0/{}/Contacts?pageSize=100",
                sequin_sim::airtable::DEMO_BASE_ID
            ),
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
            // The default (and largest) SOQL page: 2000 records.
            api: Api::Salesforce,
            label: "salesforce",
            post_body: None,
            first: format!(
                "/services/data/v59.0/query?{}",
                serde_urlencoded::to_string([("q", SALESFORCE_SOQL)]).unwrap()
            ),
            headers: vec![("authorization", "Bearer 00Dsequin!sim.access.token".into())],
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
    // A POST walk sends its cursor in the body: `url` then stays `first` and the cursor moves.
    let request = |url: String, cursor: Option<&str>| {
        let mut req = match walk.post_body {
            Some(body) => http.post(url).json(&body(cursor)),
            None => http.get(url),
        };
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
    let first = absolute(&server.base, &walk.first);
    let mut url = first.clone();
    let mut cursor: Option<String> = None;
    let mut followed = 0u64;
    while t.elapsed() < duration {
        let resp = request(url.clone(), cursor.as_deref())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{status} {url}: {body}");
        pages += 1;
        page_records += records_on(&body);
        (url, cursor) = match ((walk.next)(&body, &headers, &server.base), walk.post_body) {
            (Some(next), Some(_)) => (first.clone(), Some(next)),
            (Some(next), None) => (absolute(&server.base, &next), None),
            (None, _) => (first.clone(), None),
        };
        followed += u64::from(cursor.is_some() || url != first);
    }
    assert!(
        followed > 0,
        "{}: the walk never reached a second page",
        walk.label
    );
    let elapsed = t.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu_before;
    let rate = pages as f64 / elapsed;
    println!(
        "{:<14} {:>6.0} pages/s of {:>4} records ({:>7.0} records/s)  {:>5.1}% of baseline ({:>6.0} req/s /_sim/faults)  server CPU {:>7.1} us/page",
        walk.label,
        rate,
        page_records / pages.max(1) as usize,
        page_records as f64 / elapsed,
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
            if selected(walk.label) {
                http_walk(&walk, records, duration).await;
            }
        }
    });
}
