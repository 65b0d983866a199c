//! The GitHub issues simulator over real HTTP: Link-header pagination, filters, sorting,
//! conditional requests, create/update with validation errors, auth and the secondary limit.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sequin_sim::github::Github;
use sequin_sim::{Api, RateLimit, Sim, SimConfig};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_sequin";

async fn sim(records: usize) -> Sim {
    sequin_sim::start(
        SimConfig::new(Api::Github)
            .seed_records(records)
            .rate_limit(0.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

fn issues_url(sim: &Sim) -> String {
    format!(
        "{}/repos/{}/{}/issues",
        sim.base_url(),
        Github::OWNER,
        Github::REPO
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    let mut req = reqwest::Client::new().get(url).bearer_auth(TOKEN);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.headers().clone(), r.text().await.unwrap())
}

/// `rel` -> URL from an RFC 8288 Link header.
fn links(headers: &HeaderMap) -> Vec<(String, String)> {
    let Some(v) = headers.get("link") else {
        return vec![];
    };
    v.to_str()
        .unwrap()
        .split(", ")
        .map(|part| {
            let (url, rel) = part.split_once("; ").unwrap();
            let url = url.trim_start_matches('<').trim_end_matches('>').to_owned();
            let rel = rel
                .strip_prefix("rel=\"")
                .unwrap()
                .trim_end_matches('"')
                .to_owned();
            (rel, url)
        })
        .collect()
}

fn link(headers: &HeaderMap, rel: &str) -> Option<String> {
    links(headers)
        .into_iter()
        .find(|(r, _)| r == rel)
        .map(|(_, u)| u)
}

#[tokio::test]
async fn follows_link_next_through_10k_issues_without_gaps() {
    let sim = sim(10_000).await;
    let mut url = format!("{}?state=all&per_page=100", issues_url(&sim));
    let mut numbers = Vec::new();
    let mut created = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, body) = get(&url, &[]).await;
        assert_eq!(status, 200);
        pages += 1;
        let issues: Vec<Value> = serde_json::from_str(&body).unwrap();
        for i in &issues {
            numbers.push(i["number"].as_u64().unwrap());
            created.push(i["created_at"].as_str().unwrap().to_owned());
        }
        let rels: Vec<String> = links(&headers).into_iter().map(|(r, _)| r).collect();
        if pages == 1 {
            assert_eq!(rels, ["next", "last"]);
            assert!(link(&headers, "last").unwrap().ends_with("page=100"));
        } else if pages < 100 {
            assert_eq!(rels, ["prev", "next", "last", "first"]);
        }
        match link(&headers, "next") {
            Some(next) => {
                assert_eq!(issues.len(), 100);
                assert!(
                    next.contains("state=all") && next.contains("per_page=100"),
                    "{next}"
                );
                url = next;
            }
            None => {
                assert_eq!(rels, ["prev", "first"]);
                break;
            }
        }
    }
    assert_eq!(pages, 100);
    assert_eq!(numbers.len(), 10_000);
    assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), 10_000);
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first by default"
    );
    let (_, headers, body) = get(
        &format!("{}?state=all&per_page=100&page=101", issues_url(&sim)),
        &[],
    )
    .await;
    assert_eq!(body, "[]");
    assert!(link(&headers, "next").is_none());
}

#[tokio::test]
async fn state_since_sort_direction_and_per_page() {
    let sim = sim(300).await;
    let base = issues_url(&sim);
    let fetch = |q: String| async move {
        let (status, _, body) = get(&q, &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    };
    let default = fetch(base.clone()).await;
    assert_eq!(default.len(), 30, "per_page defaults to 30");
    assert!(
        default.iter().all(|i| i["state"] == "open"),
        "state defaults to open"
    );
    let closed = fetch(format!("{base}?state=closed&per_page=100")).await;
    assert!(
        !closed.is_empty()
            && closed
                .iter()
                .all(|i| i["state"] == "closed" && i["closed_at"].is_string())
    );
    let capped = fetch(format!("{base}?state=all&per_page=500")).await;
    assert_eq!(capped.len(), 100, "per_page is capped at 100");

    let asc = fetch(format!(
        "{base}?state=all&sort=updated&direction=asc&per_page=100"
    ))
    .await;
    let updated: Vec<&str> = asc
        .iter()
        .map(|i| i["updated_at"].as_str().unwrap())
        .collect();
    assert!(updated.windows(2).all(|w| w[0] <= w[1]));

    let since = updated[50].to_owned();
    let mut recent = Vec::new();
    let mut page = 1;
    loop {
        let got = fetch(format!(
            "{base}?state=all&since={since}&per_page=100&page={page}"
        ))
        .await;
        if got.is_empty() {
            break;
        }
        recent.extend(got);
        page += 1;
    }
    assert!(
        recent
            .iter()
            .all(|i| i["updated_at"].as_str().unwrap() >= since.as_str())
    );
    let all = sim.github().issue_count();
    let expected = (1..=all as u64)
        .filter(|n| {
            sim.github().issue(*n).unwrap()["updated_at"]
                .as_str()
                .unwrap()
                >= since.as_str()
        })
        .count();
    assert_eq!(recent.len(), expected);

    let by_comments = fetch(format!("{base}?state=all&sort=comments&per_page=100")).await;
    let comments: Vec<u64> = by_comments
        .iter()
        .map(|i| i["comments"].as_u64().unwrap())
        .collect();
    assert!(
        comments.windows(2).all(|w| w[0] >= w[1]),
        "most comments first"
    );
    let bugs = fetch(format!("{base}?state=all&labels=bug&per_page=100")).await;
    assert!(!bugs.is_empty());
    assert!(bugs.iter().all(|i| {
        i["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "bug")
    }));

    let (status, _, body) = get(&format!("{base}?state=bogus"), &[]).await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "Validation Failed"
    );
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let sim = sim(20).await;
    let list = format!("{}?state=all", issues_url(&sim));
    let (status, headers, _) = get(&list, &[]).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    let (status, headers, body) = get(&list, &[("If-None-Match", &etag)]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(headers["etag"].to_str().unwrap(), etag);

    let one = format!("{}/1", issues_url(&sim));
    let (_, headers, body) = get(&one, &[]).await;
    let issue: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(issue["number"], 1);
    let single_etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(get(&one, &[("If-None-Match", &single_etag)]).await.0, 304);

    // A change by someone else changes the representation: 200 with a new ETag.
    sim.github()
        .update_issue(1, &json!({"title": "Renamed elsewhere"}))
        .unwrap();
    let (status, headers, body) = get(&one, &[("If-None-Match", &single_etag)]).await;
    assert_eq!(status, 200);
    assert_ne!(headers["etag"].to_str().unwrap(), single_etag);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["title"],
        "Renamed elsewhere"
    );
    assert_eq!(get(&list, &[("If-None-Match", &etag)]).await.0, 200);
}

#[tokio::test]
async fn create_update_and_validation_errors() {
    let sim = sim(2).await;
    let http = reqwest::Client::new();
    let url = issues_url(&sim);
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Found a bug", "body": "Steps...", "labels": ["bug"], "assignees": ["octocat"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let issue: Value = r.json().await.unwrap();
    assert_eq!(issue["number"], 3);
    assert_eq!(location, issue["url"].as_str().unwrap());
    for field in [
        "id",
        "node_id",
        "number",
        "title",
        "body",
        "state",
        "state_reason",
        "labels",
        "user",
        "assignee",
        "assignees",
        "comments",
        "created_at",
        "updated_at",
        "closed_at",
        "url",
        "html_url",
        "locked",
        "milestone",
        "author_association",
        "repository_url",
        "comments_url",
        "events_url",
        "labels_url",
    ] {
        assert!(issue.get(field).is_some(), "issue has {field}");
    }
    assert_eq!(issue["state"], "open");
    assert_eq!(issue["labels"][0]["name"], "bug");
    assert_eq!(issue["assignees"][0]["login"], "octocat");
    assert_eq!(issue["user"]["login"], Github::VIEWER);
    assert_eq!(
        issue["html_url"],
        format!(
            "https://github.com/{}/{}/issues/3",
            Github::OWNER,
            Github::REPO
        )
    );

    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"body": "no title"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Validation Failed");
    assert_eq!(
        body["errors"],
        json!([{"resource": "Issue", "field": "title", "code": "missing_field"}])
    );
    assert_eq!(
        body["documentation_url"],
        "https://docs.github.com/rest/issues/issues#create-an-issue"
    );

    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Problems parsing JSON"
    );

    let one = format!("{url}/3");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http
        .patch(&one)
        .bearer_auth(TOKEN)
        .json(&json!({"state": "closed", "state_reason": "not_planned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let closed: Value = r.json().await.unwrap();
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["state_reason"], "not_planned");
    assert!(closed["closed_at"].is_string());
    assert!(closed["updated_at"].as_str().unwrap() > issue["updated_at"].as_str().unwrap());
    assert_eq!(closed["created_at"], issue["created_at"]);

    let r = http
        .patch(&one)
        .bearer_auth(TOKEN)
        .json(&json!({"state": "open"}))
        .send()
        .await
        .unwrap();
    let reopened: Value = r.json().await.unwrap();
    assert_eq!(reopened["state_reason"], "reopened");
    assert!(reopened["closed_at"].is_null());

    let r = http
        .patch(&one)
        .bearer_auth(TOKEN)
        .json(&json!({"state": "archived"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "state");
    assert_eq!(body["errors"][0]["code"], "invalid");
    let r = http
        .patch(&one)
        .bearer_auth(TOKEN)
        .json(&json!({"assignees": ["nobody-here"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = http
        .get(format!("{url}/999"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "Not Found");
}

#[tokio::test]
async fn auth_schemes_and_bad_credentials() {
    let sim = sim(1).await;
    let http = reqwest::Client::new();
    let url = issues_url(&sim);
    let r = http
        .get(&url)
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5000");
    let r = http
        .get(&url)
        .bearer_auth("ghp_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert!(body["documentation_url"].is_string());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Requires authentication"
    );
}

#[tokio::test]
async fn secondary_rate_limit_is_a_403_with_retry_after() {
    let sim = sim(1).await;
    sim.set_rate_limit(Some(RateLimit {
        requests: 3,
        window: Duration::from_secs(60),
    }));
    let url = issues_url(&sim);
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).await.0, 200);
    }
    let (status, headers, body) = get(&url, &[]).await;
    assert_eq!(status, 403);
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&secs), "{secs}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("You have exceeded a secondary rate limit.")
    );
    let s = sim.stats();
    assert_eq!(s.rate_limited, 1);
    assert_eq!(s.rate_keys[Github::VIEWER].max_admitted_in_window, 3);
}
