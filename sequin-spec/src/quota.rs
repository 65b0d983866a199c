//! The `quota:` section of a spec: an API's allowance over a long period
//! (Salesforce's daily API requests), read from an endpoint of the API and
//! kept by Sequin so that sync stops before the allowance is gone and
//! write-through never finds it spent.
//!
//! A rate limit (`rate_limit:`) says how fast requests may go; a quota says
//! how many are left until the API resets it. Sequin reads the quota's
//! level from `endpoint` every `every`, counts its own requests in between
//! (so the estimate stays current without a read per request), and pauses
//! reads when the level nears the connection's floor: backfills first, then
//! polls. Writes never wait for a quota. While reads are paused the level
//! is read every `paused_every`, which is how the reset is noticed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::model::{Endpoint, JsonPath};

/// An API's allowance over a long period, read from one of its endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// The endpoint answering the counters' levels (a GET; templates may
    /// use connection parameters).
    pub endpoint: Endpoint,
    /// How often the levels are read again while reads run.
    pub every: Duration,
    /// How often the levels are read again while reads are paused: the
    /// longest a paused sync may lag behind the quota's reset.
    pub paused_every: Duration,
    /// The counters the endpoint answers, each shown in `sequin status`,
    /// `sequin.quota_status` and the metrics.
    pub counters: Vec<QuotaCounter>,
}

/// One counter of a [`Quota`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaCounter {
    /// The counter's name as shown (the API's own: `DailyApiRequests`).
    pub name: String,
    /// Path of the allowance in the endpoint's answer (`DailyApiRequests.Max`).
    pub max: JsonPath,
    /// Path of what is left of it (`DailyApiRequests.Remaining`).
    pub remaining: JsonPath,
    /// Every API request takes one of this counter (Sequin counts its own
    /// between reads, the read of `endpoint` included), and the
    /// connection's floor applies to it: reads pause as it nears the
    /// floor. A counter without it (Bulk jobs a day) is shown only.
    #[serde(default)]
    pub per_request: bool,
}

impl Quota {
    /// The counters every request takes one of.
    pub fn per_request(&self) -> impl Iterator<Item = &QuotaCounter> + '_ {
        self.counters.iter().filter(|c| c.per_request)
    }
}
