//! The HTTP side: routes for every catalogued object (only the operations Stripe has for it),
//! the events log, `Request-Id`, restricted keys' permissions, `Idempotency-Key` replays, and
//! Stripe's 404 for unknown URLs.
//!
//! Routes use Stripe's paths with uniform parameter names (`/v1/customers/{id}` and
//! `/v1/customers/{id}/tax_ids/{child}`), so that the router sees no two names for one segment.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use super::catalogue::{Kind, event_op};
use super::error::{StripeError, json_response, ok_json};
use super::lists::EVENT_RETENTION_SECS;
use super::objects::Origin;
use super::params::{parse_body, parse_query};
use super::{Stripe, StripeState, api_key, masked};

/// A stored idempotent result.
pub(super) struct Saved {
    endpoint: String,
    body: Bytes,
    status: StatusCode,
    json: String,
    /// The request that produced the result, sent back as `Original-Request` on replays.
    request_id: String,
}

#[derive(Clone)]
struct RequestId(String);

/// Adds Stripe's `Request-Id` header and makes the id available to handlers (for events).
async fn request_id(State(s): State<Arc<Stripe>>, mut req: Request, next: Next) -> Response {
    let id = s.next_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// The route patterns of each object's list and item, as registered.
fn routes_of(kind: Kind) -> (String, String) {
    match kind.parent() {
        None => {
            let list = kind.path().to_owned();
            let item = format!("{list}/{{id}}");
            (list, item)
        }
        Some(parent) => {
            let list = format!("{}/{{id}}/{}", parent.path(), kind.segment());
            let item = format!("{list}/{{child}}");
            (list, item)
        }
    }
}

/// The permission resource of every route pattern (`rak_<resource>_read`/`_write`).
static ROUTE_RESOURCES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut map: HashMap<String, String> = Kind::all()
        .flat_map(|kind| {
            let (list, item) = routes_of(kind);
            let resource = kind.permission_resource();
            [(list, resource.clone()), (item, resource)]
        })
        .collect();
    for events in ["/v1/events", "/v1/events/{id}"] {
        map.insert(events.to_owned(), "event".to_owned());
    }
    map
});

/// Refuses a restricted key's request when the key lacks the permission of the endpoint's
/// resource: `rak_<resource>_read` for GET, `rak_<resource>_write` (which needs read too) for
/// the rest. Requests without a key (the `/_sim` control routes) are the account owner's.
async fn permissions(State(s): State<Arc<Stripe>>, req: Request, next: Next) -> Response {
    let denied = api_key(req.headers()).and_then(|key| {
        let route = req.extensions().get::<MatchedPath>()?.as_str();
        let resource = ROUTE_RESOURCES.get(route)?;
        let level = if req.method() == Method::GET {
            "read"
        } else {
            "write"
        };
        let needed = format!("rak_{resource}_{level}");
        let read = format!("rak_{resource}_read");
        s.lacks_permission(&key, &[&needed, &read])
            .then(|| StripeError::permission(&masked(&key, 6), s.account_id(), &needed))
    });
    match denied {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    }
}

/// Where a request points: the parent of a nested list's record, and the record.
struct At {
    parent: Option<String>,
    id: Option<String>,
}

impl At {
    fn of(kind: Kind, params: Option<Path<HashMap<String, String>>>) -> Self {
        let mut params = params.map(|Path(p)| p).unwrap_or_default();
        if kind.parent().is_some() {
            Self {
                parent: params.remove("id"),
                id: params.remove("child"),
            }
        } else {
            Self {
                parent: None,
                id: params.remove("id"),
            }
        }
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// `POST /v1/customers/cus_1/tax_ids` and the like: what an idempotency key is bound to.
    fn endpoint(&self, kind: Kind) -> String {
        let list = kind.list_url(self.parent.as_deref());
        match &self.id {
            Some(id) => format!("POST {list}/{id}"),
            None => format!("POST {list}"),
        }
    }
}

async fn list(
    s: Arc<Stripe>,
    kind: Kind,
    at: At,
    query: Option<String>,
) -> Result<Response, StripeError> {
    let q = parse_query(kind.list_op(), query.as_deref())?;
    let body = s.lock().list(kind, at.parent.as_deref(), &q)?;
    Ok(ok_json(body))
}

async fn retrieve(
    s: Arc<Stripe>,
    kind: Kind,
    at: At,
    query: Option<String>,
) -> Result<Response, StripeError> {
    let op = kind
        .spec()
        .ops
        .retrieve
        .as_ref()
        .expect("routed only when it exists");
    parse_query(op, query.as_deref())?;
    let st = s.lock();
    let id = at.id();
    if kind == Kind::Customer && st.collections[&kind].deleted.contains(id) {
        // Deleted customers stay retrievable as a stub.
        return Ok(ok_json(
            json!({"id": id, "object": "customer", "deleted": true}).to_string(),
        ));
    }
    let record = st.require_at(kind, at.parent.as_deref(), id)?;
    Ok(ok_json(record.json.clone()))
}

struct PostRequest {
    headers: HeaderMap,
    body: Bytes,
    request_id: String,
}

fn create(s: &Stripe, kind: Kind, at: &At, req: PostRequest) -> Response {
    let op = kind
        .spec()
        .ops
        .create
        .as_ref()
        .expect("routed only when it exists");
    let params = match parse_body(op, &req.body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ctx = &s.ctx;
    let parent = at.parent.as_deref();
    idempotent(s, &req, at.endpoint(kind), |st, origin| {
        st.create(ctx, kind, parent, params, None, Some(origin))
    })
}

fn update(s: &Stripe, kind: Kind, at: &At, req: PostRequest) -> Response {
    let op = kind
        .spec()
        .ops
        .update
        .as_ref()
        .expect("routed only when it exists");
    let params = match parse_body(op, &req.body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ctx = &s.ctx;
    idempotent(s, &req, at.endpoint(kind), |st, origin| {
        st.update(ctx, kind, at.parent.as_deref(), at.id(), params, origin)
    })
}

fn delete(s: &Stripe, kind: Kind, at: &At, request_id: String) -> Response {
    let origin = Origin {
        request_id,
        idempotency_key: None,
    };
    match s
        .lock()
        .delete(&s.ctx, kind, at.parent.as_deref(), at.id(), &origin)
    {
        Ok(v) => ok_json(v.to_string()),
        Err(e) => e.into_response(),
    }
}

fn idempotent(
    s: &Stripe,
    req: &PostRequest,
    endpoint: String,
    run: impl FnOnce(&mut StripeState, &Origin) -> Result<Value, StripeError>,
) -> Response {
    let (body, request_id) = (&req.body, req.request_id.clone());
    let key = req
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = Origin {
        request_id,
        idempotency_key: key.clone(),
    };
    // One lock for check, run and save: concurrent retries with one key cannot both execute.
    let mut st = s.lock();
    if let Some(key) = &key
        && let Some(saved) = st.idempotency.get(key)
    {
        let error = if saved.endpoint != endpoint {
            Some(format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{endpoint}'). Try using a key other than '{key}' if you meant to execute a different request.",
                saved.endpoint
            ))
        } else if saved.body != body {
            Some(format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ))
        } else {
            None
        };
        if let Some(message) = error {
            return StripeError {
                status: StatusCode::BAD_REQUEST,
                kind: "idempotency_error",
                code: None,
                param: None,
                message,
            }
            .into_response();
        }
        let mut r = json_response(saved.status, saved.json.clone());
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        if let Ok(v) = HeaderValue::from_str(&saved.request_id) {
            r.headers_mut().insert("original-request", v);
        }
        add_idempotency_header(&mut r, key);
        return r;
    }
    let result = run(&mut st, &origin);
    let mut response = match result {
        Ok(v) => {
            let json = v.to_string();
            if let Some(key) = &key {
                st.idempotency.insert(
                    key.clone(),
                    Saved {
                        endpoint,
                        body: body.clone(),
                        status: StatusCode::OK,
                        json: json.clone(),
                        request_id: origin.request_id.clone(),
                    },
                );
            }
            ok_json(json)
        }
        Err(e) => e.into_response(),
    };
    if let Some(key) = &key {
        add_idempotency_header(&mut response, key);
    }
    response
}

fn add_idempotency_header(r: &mut Response, key: &str) {
    if let Ok(v) = HeaderValue::from_str(key) {
        r.headers_mut().insert("idempotency-key", v);
    }
}

async fn events_list(
    State(s): State<Arc<Stripe>>,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    let q = parse_query(event_op("GET /v1/events"), query.as_deref())?;
    let now = s.ctx.clock.now_secs();
    let body = s.lock().list_events(now, &q)?;
    Ok(ok_json(body))
}

async fn event_retrieve(
    State(s): State<Arc<Stripe>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, StripeError> {
    parse_query(event_op("GET /v1/events/{id}"), query.as_deref())?;
    let oldest = s.ctx.clock.now_secs() - EVENT_RETENTION_SECS;
    let st = s.lock();
    let event = st.events.by_id.get(&id).and_then(|k| st.events.log.get(k));
    match event.filter(|e| e.created >= oldest) {
        Some(e) => Ok(ok_json(e.json.clone())),
        None => Err(StripeError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            param: Some("id".into()),
            message: format!("No such event: '{id}'"),
        }),
    }
}

/// Unknown URLs get Stripe's 404 body.
async fn not_found(method: Method, uri: axum::http::Uri) -> StripeError {
    StripeError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: None,
        param: None,
        message: format!(
            "Unrecognized request URL ({method}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            uri.path()
        ),
    }
}

type Params = Option<Path<HashMap<String, String>>>;

/// `GET` list and, where Stripe has it, `POST` create.
fn list_route(kind: Kind) -> MethodRouter<Arc<Stripe>> {
    let mut route = get(
        move |State(s): State<Arc<Stripe>>, p: Params, RawQuery(q): RawQuery| {
            list(s, kind, At::of(kind, p), q)
        },
    );
    if kind.can_create() {
        route = route.post(
            move |State(s): State<Arc<Stripe>>,
                  p: Params,
                  axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
                  headers: HeaderMap,
                  body: Bytes| async move {
                let req = PostRequest {
                    headers,
                    body,
                    request_id: rid,
                };
                create(&s, kind, &At::of(kind, p), req)
            },
        );
    }
    route
}

/// Whichever of retrieve, update and delete Stripe has; `None` when it has none.
fn item_route(kind: Kind) -> Option<MethodRouter<Arc<Stripe>>> {
    let mut route: Option<MethodRouter<Arc<Stripe>>> = None;
    if kind.can_retrieve() {
        route = Some(get(
            move |State(s): State<Arc<Stripe>>, p: Params, RawQuery(q): RawQuery| {
                retrieve(s, kind, At::of(kind, p), q)
            },
        ));
    }
    if kind.can_update() {
        let post = move |State(s): State<Arc<Stripe>>,
                         p: Params,
                         axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
                         headers: HeaderMap,
                         body: Bytes| async move {
            let req = PostRequest {
                headers,
                body,
                request_id: rid,
            };
            update(&s, kind, &At::of(kind, p), req)
        };
        route = Some(match route {
            Some(r) => r.post(post),
            None => axum::routing::post(post),
        });
    }
    if kind.can_delete() {
        let del =
            move |State(s): State<Arc<Stripe>>,
                  p: Params,
                  axum::Extension(RequestId(rid)): axum::Extension<RequestId>| async move {
                delete(&s, kind, &At::of(kind, p), rid)
            };
        route = Some(match route {
            Some(r) => r.delete(del),
            None => axum::routing::delete(del),
        });
    }
    route
}

impl Stripe {
    pub(super) fn router(self: Arc<Self>) -> Router {
        let mut r: Router<Arc<Stripe>> = Router::new();
        for kind in Kind::all() {
            let (list, item) = routes_of(kind);
            r = r.route(&list, list_route(kind));
            if let Some(route) = item_route(kind) {
                r = r.route(&item, route);
            }
        }
        r.route("/v1/events", get(events_list))
            .route("/v1/events/{id}", get(event_retrieve))
            .fallback(not_found)
            .method_not_allowed_fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                permissions,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                request_id,
            ))
            .with_state(self)
    }
}
