//! GitHub REST simulator for repository issues: a differently shaped API (page-number pagination
//! with RFC 8288 `Link` headers, JSON bodies, ETag/`If-None-Match` conditional requests, 422
//! validation errors, secondary rate limits answered with 403), written from GitHub's public REST
//! documentation ("Issues", "Using pagination", "Rate limits for the REST API",
//! "Best practices: conditional requests").
//!
//! Served: `GET/POST /repos/{owner}/{repo}/issues`, `GET/PATCH /repos/{owner}/{repo}/issues/{n}`.
//! One repository exists, [`Github::OWNER`]/[`Github::REPO`]; the token belongs to
//! [`Github::VIEWER`], who is a collaborator and may be assigned, like a few seeded users.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use crate::common::{
    RateLimit, SimContext, Simulator, fake_sentence, retry_after_secs, seeded_rng,
};

const DOCS: &str = "https://docs.github.com/rest/issues/issues";
const LABELS: &[(&str, &str, &str)] = &[
    ("bug", "d73a4a", "Something isn't working"),
    (
        "documentation",
        "0075ca",
        "Improvements or additions to documentation",
    ),
    ("enhancement", "a2eeef", "New feature or request"),
    ("question", "d876e3", "Further information is requested"),
];
const USERS: &[&str] = &["sequin-bot", "octocat", "hubot", "monalisa", "defunkt"];

/// A GitHub error body: `{"message","documentation_url","status"}` (+ `errors` for 422).
fn error(status: StatusCode, message: &str, doc: &str) -> Response {
    json_response(status, error_body(status, message, doc).to_string())
}

fn error_body(status: StatusCode, message: &str, doc: &str) -> Value {
    json!({"message": message, "documentation_url": doc, "status": status.as_u16().to_string()})
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn not_found(doc: &str) -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", doc)
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

struct Issue {
    number: u64,
    created_ms: i64,
    updated_ms: i64,
    obj: Map<String, Value>,
    json: String,
    /// Copies of fields lists filter and sort on, so a page does not walk JSON maps.
    index: IssueIndex,
}

#[derive(Default)]
struct IssueIndex {
    open: bool,
    comments: u64,
    labels: Vec<String>,
}

impl IssueIndex {
    fn of(obj: &Map<String, Value>) -> Self {
        Self {
            open: obj.get("state").and_then(Value::as_str) == Some("open"),
            comments: obj.get("comments").and_then(Value::as_u64).unwrap_or(0),
            labels: obj
                .get("labels")
                .and_then(Value::as_array)
                .map(|ls| {
                    ls.iter()
                        .filter_map(|l| l["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct Repo {
    /// Issue `n` at index `n - 1`: numbers are dense and never reused.
    issues: Vec<Issue>,
    by_created: BTreeSet<(i64, u64)>,
    by_updated: BTreeSet<(i64, u64)>,
    next_number: u64,
}

struct GithubState {
    rng: StdRng,
    repo: Repo,
    next_issue_id: u64,
}

/// The simulated GitHub account and its one repository.
pub struct Github {
    ctx: SimContext,
    state: Mutex<GithubState>,
    /// Primary-limit accounting shown in `x-ratelimit-*` headers.
    requests_used: AtomicU64,
}

impl Github {
    pub const OWNER: &'static str = "sequin-sim";
    pub const REPO: &'static str = "demo";
    /// The login the token belongs to.
    pub const VIEWER: &'static str = "sequin-bot";

    pub fn new(ctx: SimContext) -> Self {
        Self {
            state: Mutex::new(GithubState {
                rng: seeded_rng(ctx.rng_seed, "github"),
                repo: Repo {
                    next_number: 1,
                    ..Repo::default()
                },
                next_issue_id: 1_000_001,
            }),
            ctx,
            requests_used: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GithubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn repo_url(&self) -> String {
        format!("{}/repos/{}/{}", self.ctx.base_url, Self::OWNER, Self::REPO)
    }

    fn user(&self, login: &str) -> Value {
        let id = USERS.iter().position(|u| *u == login).unwrap_or(0) as u64 + 583_231;
        let url = format!("{}/users/{login}", self.ctx.base_url);
        json!({
            "login": login,
            "id": id,
            "node_id": base64::engine::general_purpose::STANDARD.encode(format!("04:User{id}")),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "gravatar_id": "",
            "url": url,
            "html_url": format!("https://github.com/{login}"),
            "followers_url": format!("{url}/followers"),
            "following_url": format!("{url}/following{{/other_user}}"),
            "gists_url": format!("{url}/gists{{/gist_id}}"),
            "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{url}/subscriptions"),
            "organizations_url": format!("{url}/orgs"),
            "repos_url": format!("{url}/repos"),
            "events_url": format!("{url}/events{{/privacy}}"),
            "received_events_url": format!("{url}/received_events"),
            "type": "User",
            "site_admin": false,
        })
    }

    fn label(&self, name: &str) -> Value {
        let (color, description) = LABELS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, c, d)| (*c, Value::from(*d)))
            .unwrap_or(("ededed", Value::Null));
        let id = 208_045_946 + name.bytes().map(u64::from).sum::<u64>();
        json!({
            "id": id,
            "node_id": base64::engine::general_purpose::STANDARD.encode(format!("03:Label{id}")),
            "url": format!("{}/labels/{name}", self.repo_url()),
            "name": name,
            "description": description,
            "color": color,
            "default": LABELS.iter().any(|(n, _, _)| *n == name),
        })
    }

    /// A new issue object with every field GitHub returns.
    fn issue_object(&self, id: u64, number: u64, author: &str, now_ms: i64) -> Map<String, Value> {
        let url = format!("{}/issues/{number}", self.repo_url());
        let ts = iso(now_ms);
        let v = json!({
            "url": url,
            "repository_url": self.repo_url(),
            "labels_url": format!("{url}/labels{{/name}}"),
            "comments_url": format!("{url}/comments"),
            "events_url": format!("{url}/events"),
            "html_url": format!("https://github.com/{}/{}/issues/{number}", Self::OWNER, Self::REPO),
            "id": id,
            "node_id": base64::engine::general_purpose::STANDARD.encode(format!("05:Issue{id}")),
            "number": number,
            "title": "",
            "user": self.user(author),
            "labels": [],
            "state": "open",
            "locked": false,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "comments": 0,
            "created_at": ts,
            "updated_at": ts,
            "closed_at": null,
            "author_association": if author == Self::VIEWER { "OWNER" } else { "COLLABORATOR" },
            "active_lock_reason": null,
            "body": null,
            "closed_by": null,
            "reactions": {
                "url": format!("{url}/reactions"), "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
                "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0
            },
            "timeline_url": format!("{url}/timeline"),
            "performed_via_github_app": null,
            "state_reason": null,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! object"),
        }
    }

    // ----- library API for tests: changes made by another user of the repository -----

    /// Creates an issue as `POST /repos/{owner}/{repo}/issues` would (JSON body).
    pub fn create_issue(&self, body: &Value) -> Result<Value, Value> {
        self.create(body, Self::VIEWER).map_err(error_json)
    }

    /// Updates an issue as `PATCH .../issues/{number}` would.
    pub fn update_issue(&self, number: u64, body: &Value) -> Result<Value, Value> {
        self.update(number, body, Self::VIEWER).map_err(error_json)
    }

    pub fn issue(&self, number: u64) -> Option<Value> {
        self.lock()
            .repo
            .get(number)
            .map(|i| Value::Object(i.obj.clone()))
    }

    pub fn issue_count(&self) -> usize {
        self.lock().repo.issues.len()
    }

    fn create(&self, body: &Value, author: &str) -> Result<Value, Rejection> {
        let doc = format!("{DOCS}#create-an-issue");
        let Some(fields) = body.as_object() else {
            return Err(Rejection::BadJson(doc));
        };
        let title = match fields.get("title") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(Rejection::Invalid(
                    vec![json!({"resource": "Issue", "field": "title", "code": "missing_field"})],
                    doc,
                ));
            }
        };
        let mut st = self.lock();
        let now = self.ctx.clock.now_ms();
        let number = st.repo.next_number;
        let id = st.next_issue_id;
        let mut obj = self.issue_object(id, number, author, now);
        obj.insert("title".into(), title.into());
        self.apply(&mut obj, fields, now, author, &doc)?;
        st.repo.next_number += 1;
        st.next_issue_id += 1;
        let value = Value::Object(obj.clone());
        st.repo.insert(Issue {
            number,
            created_ms: now,
            updated_ms: now,
            json: value.to_string(),
            obj,
            index: IssueIndex::default(),
        });
        Ok(value)
    }

    fn update(&self, number: u64, body: &Value, actor: &str) -> Result<Value, Rejection> {
        let doc = format!("{DOCS}#update-an-issue");
        let Some(fields) = body.as_object() else {
            return Err(Rejection::BadJson(doc));
        };
        let mut st = self.lock();
        let Some(issue) = st.repo.get(number) else {
            return Err(Rejection::NotFound(doc));
        };
        let mut obj = issue.obj.clone();
        if let Some(title) = fields.get("title") {
            match title {
                Value::String(s) if !s.is_empty() => {
                    obj.insert("title".into(), s.clone().into());
                }
                Value::Number(n) => {
                    obj.insert("title".into(), n.to_string().into());
                }
                _ => {
                    return Err(Rejection::Invalid(
                        vec![
                            json!({"resource": "Issue", "field": "title", "code": "missing_field"}),
                        ],
                        doc,
                    ));
                }
            }
        }
        let now = self.ctx.clock.now_ms();
        self.apply(&mut obj, fields, now, actor, &doc)?;
        if obj == issue.obj {
            return Ok(Value::Object(obj));
        }
        obj.insert("updated_at".into(), iso(now).into());
        let created_ms = issue.created_ms;
        let value = Value::Object(obj.clone());
        st.repo.insert(Issue {
            number,
            created_ms,
            updated_ms: now,
            json: value.to_string(),
            obj,
            index: IssueIndex::default(),
        });
        Ok(value)
    }

    /// Applies body, state, state_reason, labels, assignee(s) from a create/update body.
    fn apply(
        &self,
        obj: &mut Map<String, Value>,
        fields: &Map<String, Value>,
        now: i64,
        actor: &str,
        doc: &str,
    ) -> Result<(), Rejection> {
        let invalid = |field: &str, value: &Value| {
            Rejection::Invalid(
                vec![
                    json!({"resource": "Issue", "field": field, "code": "invalid", "value": value}),
                ],
                doc.to_owned(),
            )
        };
        if let Some(body) = fields.get("body") {
            match body {
                Value::String(_) | Value::Null => {
                    obj.insert("body".into(), body.clone());
                }
                other => return Err(invalid("body", other)),
            }
        }
        if let Some(labels) = fields.get("labels") {
            let Value::Array(items) = labels else {
                return Err(invalid("labels", labels));
            };
            let mut out = Vec::new();
            for l in items {
                let name = match l {
                    Value::String(s) => s.as_str(),
                    Value::Object(m) => m.get("name").and_then(Value::as_str).unwrap_or(""),
                    _ => "",
                };
                if name.is_empty() {
                    return Err(invalid("labels", l));
                }
                out.push(self.label(name));
            }
            obj.insert("labels".into(), Value::Array(out));
        }
        let mut assignees: Option<Vec<String>> = None;
        if let Some(a) = fields.get("assignee") {
            assignees = Some(match a {
                Value::Null => vec![],
                Value::String(s) => vec![s.clone()],
                other => return Err(invalid("assignee", other)),
            });
        }
        if let Some(a) = fields.get("assignees") {
            let Value::Array(items) = a else {
                return Err(invalid("assignees", a));
            };
            let mut logins = Vec::new();
            for i in items {
                match i.as_str() {
                    Some(s) => logins.push(s.to_owned()),
                    None => return Err(invalid("assignees", i)),
                }
            }
            assignees = Some(logins);
        }
        if let Some(logins) = assignees {
            // Only collaborators can be assigned; GitHub rejects anyone else.
            if let Some(bad) = logins.iter().find(|l| !USERS.contains(&l.as_str())) {
                return Err(invalid("assignees", &Value::String(bad.clone())));
            }
            let users: Vec<Value> = logins.iter().map(|l| self.user(l)).collect();
            obj.insert(
                "assignee".into(),
                users.first().cloned().unwrap_or(Value::Null),
            );
            obj.insert("assignees".into(), Value::Array(users));
        }
        let reason = match fields.get("state_reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(r))
                if ["completed", "not_planned", "reopened"].contains(&r.as_str()) =>
            {
                Some(r.clone())
            }
            Some(other) => return Err(invalid("state_reason", other)),
        };
        if let Some(state) = fields.get("state") {
            let was = obj["state"].as_str().unwrap_or("open").to_owned();
            match state.as_str() {
                Some("closed") if was != "closed" => {
                    obj.insert("state".into(), "closed".into());
                    obj.insert("closed_at".into(), iso(now).into());
                    obj.insert("closed_by".into(), self.user(actor));
                    obj.insert(
                        "state_reason".into(),
                        reason.unwrap_or_else(|| "completed".into()).into(),
                    );
                }
                Some("open") if was != "open" => {
                    obj.insert("state".into(), "open".into());
                    obj.insert("closed_at".into(), Value::Null);
                    obj.insert("closed_by".into(), Value::Null);
                    obj.insert("state_reason".into(), "reopened".into());
                }
                Some("closed" | "open") => {}
                _ => return Err(invalid("state", state)),
            }
        }
        Ok(())
    }

    fn seed_issues(&self, n: usize) {
        let mut st = self.lock();
        // History starts 40 days ago: one issue a minute, updated some time after creation.
        let base = self.ctx.clock.now_ms() - 40 * 24 * 3600 * 1000;
        let mut issues = Vec::with_capacity(n);
        for i in 0..n {
            let created = base + i as i64 * 60_000 + st.rng.random_range(0..1000);
            let updated = created + st.rng.random_range(0..3_600_000);
            let number = st.repo.next_number;
            let id = st.next_issue_id;
            st.repo.next_number += 1;
            st.next_issue_id += 1;
            let author = USERS[st.rng.random_range(0..USERS.len())];
            let mut obj = self.issue_object(id, number, author, created);
            let words = st.rng.random_range(3..8);
            obj.insert("title".into(), fake_sentence(&mut st.rng, words).into());
            obj.insert(
                "body".into(),
                format!("{}.", fake_sentence(&mut st.rng, 20)).into(),
            );
            let label = LABELS[st.rng.random_range(0..LABELS.len())].0;
            obj.insert("labels".into(), json!([self.label(label)]));
            if i % 5 == 0 {
                let who = USERS[st.rng.random_range(0..USERS.len())];
                obj.insert("assignee".into(), self.user(who));
                obj.insert("assignees".into(), json!([self.user(who)]));
            }
            obj.insert("comments".into(), st.rng.random_range(0..20u32).into());
            obj.insert("updated_at".into(), iso(updated).into());
            if i % 3 == 0 {
                obj.insert("state".into(), "closed".into());
                obj.insert("closed_at".into(), iso(updated).into());
                obj.insert("closed_by".into(), self.user(author));
                obj.insert(
                    "state_reason".into(),
                    if i % 2 == 0 {
                        "completed"
                    } else {
                        "not_planned"
                    }
                    .into(),
                );
            }
            let json = Value::Object(obj.clone()).to_string();
            issues.push(Issue {
                number,
                created_ms: created,
                updated_ms: updated,
                obj,
                json,
                index: IssueIndex::default(),
            });
        }
        for issue in issues {
            st.repo.insert(issue);
        }
    }
}

impl Repo {
    fn insert(&mut self, mut issue: Issue) {
        issue.index = IssueIndex::of(&issue.obj);
        if let Some(old) = self.get(issue.number) {
            let (updated, created) = ((old.updated_ms, old.number), (old.created_ms, old.number));
            self.by_updated.remove(&updated);
            self.by_created.remove(&created);
        }
        self.by_created.insert((issue.created_ms, issue.number));
        self.by_updated.insert((issue.updated_ms, issue.number));
        let slot = (issue.number - 1) as usize;
        if slot < self.issues.len() {
            self.issues[slot] = issue;
        } else {
            debug_assert_eq!(
                slot,
                self.issues.len(),
                "issue numbers are allocated in order"
            );
            self.issues.push(issue);
        }
    }

    fn get(&self, number: u64) -> Option<&Issue> {
        number
            .checked_sub(1)
            .and_then(|i| self.issues.get(i as usize))
    }
}

enum Rejection {
    BadJson(String),
    Invalid(Vec<Value>, String),
    NotFound(String),
}

impl Rejection {
    /// The status and GitHub's error body.
    fn parts(self) -> (StatusCode, Value) {
        match self {
            Rejection::BadJson(doc) => (
                StatusCode::BAD_REQUEST,
                error_body(StatusCode::BAD_REQUEST, "Problems parsing JSON", &doc),
            ),
            Rejection::Invalid(errors, doc) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation Failed", "errors": errors, "documentation_url": doc, "status": "422"}),
            ),
            Rejection::NotFound(doc) => (
                StatusCode::NOT_FOUND,
                error_body(StatusCode::NOT_FOUND, "Not Found", &doc),
            ),
        }
    }

    fn response(self) -> Response {
        let (status, body) = self.parts();
        json_response(status, body.to_string())
    }
}

/// The error body a client would have received.
fn error_json(r: Rejection) -> Value {
    r.parts().1
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// Query parameters of the list endpoint, with GitHub's defaults.
struct ListQuery {
    state: String,
    sort: String,
    direction: String,
    since_secs: Option<i64>,
    per_page: usize,
    page: usize,
    labels: Vec<String>,
    pairs: Vec<(String, String)>,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, Rejection> {
    let doc = format!("{DOCS}#list-repository-issues");
    let invalid = |field: &str| {
        Rejection::Invalid(
            vec![json!({"resource": "Issue", "field": field, "code": "invalid"})],
            doc.clone(),
        )
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|_| invalid("query"))?;
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let state = get("state").unwrap_or("open").to_owned();
    if !["open", "closed", "all"].contains(&state.as_str()) {
        return Err(invalid("state"));
    }
    let sort = get("sort").unwrap_or("created").to_owned();
    if !["created", "updated", "comments"].contains(&sort.as_str()) {
        return Err(invalid("sort"));
    }
    let direction = get("direction").unwrap_or("desc").to_owned();
    if !["asc", "desc"].contains(&direction.as_str()) {
        return Err(invalid("direction"));
    }
    let since_secs = match get("since") {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| invalid("since"))?
                .timestamp(),
        ),
    };
    // Out-of-range values are clamped, unparsable ones fall back to the default, as GitHub does.
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let labels = get("labels")
        .map(|l| {
            l.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(ListQuery {
        state,
        sort,
        direction,
        since_secs,
        per_page,
        page,
        labels,
        pairs,
    })
}

/// A weak ETag from the versions of the issues a response shows (cheaper than hashing the
/// body, and it changes exactly when the body does).
fn etag_of(versions: impl Iterator<Item = (u64, i64)>, total: usize) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in versions {
        v.hash(&mut h);
    }
    total.hash(&mut h);
    let a = h.finish();
    "etag".hash(&mut h);
    format!("W/\"{a:016x}{:016x}\"", h.finish())
}

/// 304 when `If-None-Match` names the body's ETag, else 200 with the ETag.
fn conditional(headers: &HeaderMap, body: String, etag: &str, extra: Option<String>) -> Response {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let matched = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || strip(t) == strip(etag))
        });
    let mut resp = if matched {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json_response(StatusCode::OK, body)
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex etag"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60, s-maxage=60"),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"),
    );
    if let Some(link) = extra
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        h.insert(header::LINK, v);
    }
    resp
}

fn check_repo(owner: &str, repo: &str) -> bool {
    owner.eq_ignore_ascii_case(Github::OWNER) && repo.eq_ignore_ascii_case(Github::REPO)
}

async fn list_issues(
    State(g): State<Arc<Github>>,
    Path((owner, repo)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !check_repo(&owner, &repo) {
        return not_found(&format!("{DOCS}#list-repository-issues"));
    }
    let q = match parse_list_query(raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return r.response(),
    };
    let st = g.lock();
    let repo_state = &st.repo;
    let want_open = match q.state.as_str() {
        "open" => Some(true),
        "closed" => Some(false),
        _ => None,
    };
    let keep = |number: &u64| {
        let i = &repo_state.issues[(*number - 1) as usize];
        want_open.is_none_or(|open| i.index.open == open)
            && q.since_secs
                .is_none_or(|s| i.updated_ms.div_euclid(1000) >= s)
            && q.labels.iter().all(|l| i.index.labels.contains(l))
    };
    let by_comments: Vec<u64>;
    let ordered: Box<dyn DoubleEndedIterator<Item = &u64>> = match q.sort.as_str() {
        "updated" => Box::new(repo_state.by_updated.iter().map(|(_, n)| n)),
        "comments" => {
            let mut v: Vec<(u64, i64, u64)> = repo_state
                .issues
                .iter()
                .map(|i| (i.index.comments, i.created_ms, i.number))
                .collect();
            v.sort_unstable();
            by_comments = v.into_iter().map(|(_, _, n)| n).collect();
            Box::new(by_comments.iter())
        }
        _ => Box::new(repo_state.by_created.iter().map(|(_, n)| n)),
    };
    let ordered: Box<dyn Iterator<Item = &u64>> = if q.direction == "desc" {
        Box::new(ordered.rev())
    } else {
        ordered
    };
    // One pass: count every match (for rel="last") and keep this page's.
    let start = (q.page - 1).saturating_mul(q.per_page);
    let mut total = 0usize;
    let mut page: Vec<&Issue> = Vec::with_capacity(q.per_page);
    for n in ordered.filter(|n| keep(n)) {
        if total >= start && page.len() < q.per_page {
            page.push(&repo_state.issues[(*n - 1) as usize]);
        }
        total += 1;
    }
    let last_page = total.div_ceil(q.per_page).max(1);
    let mut body = String::with_capacity(q.per_page * 4096);
    body.push('[');
    for (i, issue) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&issue.json);
    }
    body.push(']');
    // The representation is determined by which issues are on the page and their versions.
    let etag = etag_of(page.iter().map(|i| (i.number, i.updated_ms)), total);
    drop(st);
    let link = link_header(&g, &owner, &repo, &q, last_page, total);
    conditional(&headers, body, &etag, link)
}

/// RFC 8288 `Link` header with next/last/first/prev, keeping the request's other parameters.
fn link_header(
    g: &Github,
    owner: &str,
    repo: &str,
    q: &ListQuery,
    last_page: usize,
    total: usize,
) -> Option<String> {
    if total == 0 {
        return None;
    }
    let url = |page: usize| {
        let mut pairs: Vec<(String, String)> = q
            .pairs
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        pairs.push(("page".into(), page.to_string()));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{}/repos/{owner}/{repo}/issues?{query}", g.ctx.base_url)
    };
    let mut links = Vec::new();
    if q.page > 1 {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            url((q.page - 1).min(last_page))
        ));
    }
    if q.page < last_page {
        links.push(format!("<{}>; rel=\"next\"", url(q.page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last_page)));
    }
    if q.page > 1 {
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

async fn get_issue(
    State(g): State<Arc<Github>>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let doc = format!("{DOCS}#get-an-issue");
    if !check_repo(&owner, &repo) {
        return not_found(&doc);
    }
    let found = number.parse::<u64>().ok().and_then(|n| {
        g.lock().repo.get(n).map(|i| {
            (
                i.json.clone(),
                etag_of([(i.number, i.updated_ms)].into_iter(), 1),
            )
        })
    });
    match found {
        Some((body, etag)) => conditional(&headers, body, &etag, None),
        None => not_found(&doc),
    }
}

fn parse_json(body: &Bytes, doc: &str) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|_| Rejection::BadJson(doc.to_owned()))
}

async fn create_issue(
    State(g): State<Arc<Github>>,
    Path((owner, repo)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let doc = format!("{DOCS}#create-an-issue");
    if !check_repo(&owner, &repo) {
        return not_found(&doc);
    }
    let value = match parse_json(&body, &doc) {
        Ok(v) => v,
        Err(r) => return r.response(),
    };
    match g.create(&value, Github::VIEWER) {
        Ok(issue) => {
            let mut r = json_response(StatusCode::CREATED, issue.to_string());
            if let Some(url) = issue["url"].as_str()
                && let Ok(v) = HeaderValue::from_str(url)
            {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => e.response(),
    }
}

async fn update_issue(
    State(g): State<Arc<Github>>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let doc = format!("{DOCS}#update-an-issue");
    if !check_repo(&owner, &repo) {
        return not_found(&doc);
    }
    let Ok(number) = number.parse::<u64>() else {
        return not_found(&doc);
    };
    let value = match parse_json(&body, &doc) {
        Ok(v) => v,
        Err(r) => return r.response(),
    };
    match g.update(number, &value, Github::VIEWER) {
        Ok(issue) => json_response(StatusCode::OK, issue.to_string()),
        Err(e) => e.response(),
    }
}

/// Primary rate-limit headers (5000 requests per hour for a token), as GitHub sends on every
/// response.
async fn rate_headers(State(g): State<Arc<Github>>, req: Request, next: Next) -> Response {
    let used = g.requests_used.fetch_add(1, Ordering::Relaxed) + 1;
    let mut resp = next.run(req).await;
    let reset = (g.ctx.clock.now_secs() / 3600 + 1) * 3600;
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(5000u64));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(5000u64.saturating_sub(used)),
    );
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-used", HeaderValue::from(used));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

async fn fallback() -> Response {
    not_found("https://docs.github.com/rest")
}

impl Github {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/repos/{owner}/{repo}/issues",
                get(list_issues).post(create_issue),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}",
                get(get_issue).patch(update_issue),
            )
            .fallback(fallback)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                rate_headers,
            ))
            .with_state(self)
    }
}

/// `Authorization: Bearer TOKEN` or `Authorization: token TOKEN`.
fn bearer(req: &Parts) -> Option<&str> {
    let v = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
}

impl Simulator for Github {
    fn routes(self: Arc<Self>) -> Router {
        self.router()
    }

    fn authorized(&self, req: &Parts) -> bool {
        bearer(req) == Some(self.ctx.token.as_str())
    }

    fn unauthorized(&self) -> Response {
        error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            "https://docs.github.com/rest",
        )
    }

    fn unauthorized_for(&self, req: &Parts) -> Response {
        if req.headers.contains_key(header::AUTHORIZATION) {
            error(
                StatusCode::UNAUTHORIZED,
                "Bad credentials",
                "https://docs.github.com/rest",
            )
        } else {
            self.unauthorized()
        }
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        // Secondary rate limits are answered with 403 and Retry-After.
        let mut r = error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:000000:000000:00000000.",
            "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(retry_after)),
        );
        r
    }

    fn server_error(&self) -> Response {
        error(
            StatusCode::BAD_GATEWAY,
            "Server Error",
            "https://docs.github.com/rest",
        )
    }

    fn rate_key(&self, _req: &Parts) -> String {
        // Limits are per authenticated user; one token, one user.
        Self::VIEWER.to_owned()
    }

    fn default_rate_limit(&self) -> RateLimit {
        // Secondary limit: no more than 900 points per minute for REST (a GET costs one point).
        RateLimit {
            requests: 900,
            window: Duration::from_secs(60),
        }
    }

    fn seed(&self, n: usize) {
        self.seed_issues(n);
    }

    fn control_routes(self: Arc<Self>) -> Router {
        // The same API without auth, limits or faults, for changes "by another user".
        self.router()
    }
}
