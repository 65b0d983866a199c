//! The org's 24-hour allocations, as the REST API's Limits resource
//! (`/services/data/vXX.X/limits`) reports them, written from Salesforce's
//! REST API Developer Guide ("Limits", "Limit Info Header") and the API
//! Request Limits and Allocations page:
//!
//! - `DailyApiRequests`: every REST API request takes one, the Limits
//!   resource included; only the Versions URI (`/services/data`) and the
//!   OAuth token endpoint are free. When none is left, every request is
//!   refused with 403 `REQUEST_LIMIT_EXCEEDED` ("TotalRequests Limit
//!   exceeded."), and a refused request takes none. Each answer carries
//!   `Sforce-Limit-Info: api-usage=<used>/<max>`.
//! - `DailyBulkV2QueryJobs`: each Bulk API 2.0 query job created takes one
//!   ([`DailyLimits::take_bulk_query_job`], called where jobs are created).
//!
//! The real allocations roll over 24 hours; here they only go down, and a
//! test resets them (`/_sim/salesforce/limits/reset`, or
//! [`super::Salesforce::reset_daily_limits`]) to simulate the new day.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Salesforce, SfError};

/// An Enterprise Edition org's base allocation of daily API requests
/// (Developer Edition orgs get 15,000; a test sets what it needs).
pub const DAILY_API_REQUESTS: u64 = 100_000;
/// Bulk API 2.0 query jobs a day.
pub const DAILY_BULK_V2_QUERY_JOBS: u64 = 10_000;

/// One allocation: its maximum and what is left of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub max: u64,
    pub remaining: u64,
}

impl Allocation {
    fn full(max: u64) -> Allocation {
        Allocation {
            max,
            remaining: max,
        }
    }

    /// Takes one, or says none is left.
    fn take(&mut self) -> bool {
        match self.remaining.checked_sub(1) {
            Some(left) => {
                self.remaining = left;
                true
            }
            None => false,
        }
    }

    fn json(self) -> Value {
        json!({"Max": self.max, "Remaining": self.remaining})
    }
}

/// The org's daily allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyLimits {
    pub api_requests: Allocation,
    pub bulk_v2_query_jobs: Allocation,
}

impl Default for DailyLimits {
    fn default() -> DailyLimits {
        DailyLimits {
            api_requests: Allocation::full(DAILY_API_REQUESTS),
            bulk_v2_query_jobs: Allocation::full(DAILY_BULK_V2_QUERY_JOBS),
        }
    }
}

impl DailyLimits {
    /// One API request: taken, or refused with `REQUEST_LIMIT_EXCEEDED`.
    pub fn take_request(&mut self) -> Result<(), SfError> {
        if self.api_requests.take() {
            Ok(())
        } else {
            Err(SfError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ))
        }
    }

    /// One Bulk API 2.0 query job: taken, or refused as Salesforce refuses
    /// a job over the daily allocation.
    pub fn take_bulk_query_job(&mut self) -> Result<(), SfError> {
        if self.bulk_v2_query_jobs.take() {
            Ok(())
        } else {
            Err(SfError::new(
                400,
                "LIMIT_EXCEEDED",
                "Max Bulk V2 query jobs per day exceeded.",
            ))
        }
    }

    /// A new day: every allocation is whole again.
    pub fn reset(&mut self) {
        self.api_requests.remaining = self.api_requests.max;
        self.bulk_v2_query_jobs.remaining = self.bulk_v2_query_jobs.max;
    }

    /// The Limits resource's answer (the allocations it simulates, plus
    /// the related ones at their documented defaults, untouched).
    pub fn json(&self) -> Value {
        json!({
            "DailyApiRequests": self.api_requests.json(),
            "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976_562, "Remaining": 976_562},
            "DailyBulkV2QueryJobs": self.bulk_v2_query_jobs.json(),
        })
    }

    /// `Sforce-Limit-Info`'s value: `api-usage=<used>/<max>`.
    fn usage_header(&self) -> String {
        let a = self.api_requests;
        format!("api-usage={}/{}", a.max - a.remaining, a.max)
    }
}

/// Middleware of the REST API's routes (behind authentication): each
/// request under `/services/data/vXX.X/` takes one daily API request, or
/// is refused when none is left.
pub(super) async fn count_request(
    State(sim): State<std::sync::Arc<Salesforce>>,
    req: Request,
    next: Next,
) -> Response {
    // The Versions URI is free.
    if req.uri().path().trim_end_matches('/') == "/services/data" {
        return next.run(req).await;
    }
    if let Err(e) = sim.limits().take_request() {
        return e.into_response();
    }
    let mut response = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&sim.limits().usage_header()) {
        response.headers_mut().insert("Sforce-Limit-Info", v);
    }
    response
}

/// `GET /limits`: the allocations after this request took its own.
pub(super) async fn limits(
    State(sim): State<std::sync::Arc<Salesforce>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Result<Response, SfError> {
    super::check_version(&version)?;
    Ok(axum::Json(sim.limits().json()).into_response())
}

/// `POST /_sim/salesforce/limits`: sets what is left (and the maximum) of
/// an allocation, as another integration using the org would.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct SetLimits {
    daily_api_requests: Option<SetAllocation>,
    #[serde(rename = "DailyBulkV2QueryJobs")]
    daily_bulk_v2_query_jobs: Option<SetAllocation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SetAllocation {
    max: Option<u64>,
    remaining: Option<u64>,
}

impl SetAllocation {
    fn apply(&self, a: &mut Allocation) {
        if let Some(m) = self.max {
            a.max = m;
        }
        if let Some(r) = self.remaining {
            a.remaining = r;
        }
        a.remaining = a.remaining.min(a.max);
    }
}

pub(super) async fn control_set(
    State(sim): State<std::sync::Arc<Salesforce>>,
    axum::Json(set): axum::Json<SetLimits>,
) -> Response {
    let mut limits = sim.limits();
    if let Some(a) = &set.daily_api_requests {
        a.apply(&mut limits.api_requests);
    }
    if let Some(a) = &set.daily_bulk_v2_query_jobs {
        a.apply(&mut limits.bulk_v2_query_jobs);
    }
    axum::Json(limits.json()).into_response()
}

/// `GET /_sim/salesforce/limits`: the allocations, without taking any.
pub(super) async fn control_get(State(sim): State<std::sync::Arc<Salesforce>>) -> Response {
    axum::Json(sim.limits().json()).into_response()
}

/// `POST /_sim/salesforce/limits/reset`: the new day.
pub(super) async fn control_reset(State(sim): State<std::sync::Arc<Salesforce>>) -> Response {
    let mut limits = sim.limits();
    limits.reset();
    axum::Json(limits.json()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_the_allocation_until_refused_and_a_reset_restores_it() {
        let mut l = DailyLimits::default();
        l.api_requests.remaining = 2;
        assert!(l.take_request().is_ok());
        assert_eq!(l.usage_header(), "api-usage=99999/100000");
        assert!(l.take_request().is_ok());
        let refused = l.take_request().unwrap_err();
        assert_eq!(
            (refused.status, refused.error_code.as_str()),
            (403, "REQUEST_LIMIT_EXCEEDED")
        );
        assert_eq!(l.api_requests.remaining, 0, "a refused request takes none");
        l.bulk_v2_query_jobs.remaining = 1;
        assert!(l.take_bulk_query_job().is_ok());
        assert!(l.take_bulk_query_job().is_err());
        l.reset();
        assert_eq!(l, DailyLimits::default());
        assert_eq!(
            l.json()["DailyApiRequests"],
            json!({"Max": 100000, "Remaining": 100000})
        );
    }
}
