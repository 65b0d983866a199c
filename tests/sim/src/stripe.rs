//! Temporary placeholder; S1 replaces it with the real simulator.
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::common::{RateLimit, SimContext, Simulator};

/// Placeholder: answers 501 to everything.
pub struct Stripe {
    ctx: SimContext,
}

impl Stripe {
    pub fn new(ctx: SimContext) -> Self {
        Self { ctx }
    }
}

impl Simulator for Stripe {
    fn routes(self: Arc<Self>) -> Router {
        Router::new().fallback(|| async { StatusCode::NOT_IMPLEMENTED })
    }
    fn authorized(&self, _req: &Parts) -> bool {
        !self.ctx.token.is_empty()
    }
    fn unauthorized(&self) -> Response {
        StatusCode::UNAUTHORIZED.into_response()
    }
    fn rate_limited(&self, _retry_after: Duration) -> Response {
        StatusCode::TOO_MANY_REQUESTS.into_response()
    }
    fn server_error(&self) -> Response {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
    fn rate_key(&self, _req: &Parts) -> String {
        "account".to_owned()
    }
    fn default_rate_limit(&self) -> RateLimit {
        RateLimit::per_second(10)
    }
    fn seed(&self, _n: usize) {}
    fn control_routes(self: Arc<Self>) -> Router {
        Router::new()
    }
}
