//! API simulators for Sequin's end-to-end tests: Stripe, Salesforce, HubSpot, Airtable and GitHub,
//! each served over real HTTP from the public API documentation, with the same auth, rate-limit
//! and fault-injection machinery (see [`common`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sequin_sim::Error> {
//! use sequin_sim::{Api, SimConfig};
//! let sim = sequin_sim::start(SimConfig::new(Api::Stripe).seed_records(100), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}/v1/customers with token {}", sim.base_url(), sim.token());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod airtable;
pub mod common;
pub mod github;
pub mod hubspot;
pub mod salesforce;
pub mod stripe;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use common::{Clock, Faults, RateLimit, SimContext, Simulator, Stats, StatsSnapshot};

/// Which API to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Stripe,
    Salesforce,
    Hubspot,
    Airtable,
    Github,
}

impl Api {
    pub const ALL: [Api; 5] = [
        Api::Stripe,
        Api::Salesforce,
        Api::Hubspot,
        Api::Airtable,
        Api::Github,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::Stripe => "stripe",
            Api::Salesforce => "salesforce",
            Api::Hubspot => "hubspot",
            Api::Airtable => "airtable",
            Api::Github => "github",
        }
    }

    /// The credential a simulator accepts when none is configured, shaped like the real API's.
    pub fn default_token(self) -> &'static str {
        match self {
            Api::Stripe => "sk_test_sequin",
            Api::Salesforce => "00Dsequin!sim.access.token",
            Api::Hubspot => "pat-na1-sequin",
            Api::Airtable => "patSequin.simulator",
            Api::Github => "ghp_sequin",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Api {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Api::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownApi(s.to_owned()))
    }
}

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub api: Api,
    /// `None`: [`Api::default_token`].
    pub token: Option<String>,
    /// Records seeded per main object.
    pub seed_records: usize,
    /// Seed `seed_records` records of every object the API serves, not only its main ones
    /// (Stripe: every catalogued object; other APIs seed their main objects either way).
    pub seed_every_object: bool,
    /// Stripe restricted keys (`rk_test_...`) the account also accepts, each with the
    /// permissions it lacks (`rak_event_read`).
    pub restricted_keys: Vec<(String, Vec<String>)>,
    /// Requests per second; `None`: the API's documented default; `Some(0.0)`: no limit.
    pub rate_limit: Option<f64>,
    pub fault_5xx: f64,
    pub fault_429: f64,
    pub fault_truncate: f64,
    pub fault_reset: f64,
    pub latency: Duration,
    /// Seed of every random choice (data, ids, faults).
    pub rng_seed: u64,
}

impl SimConfig {
    pub fn new(api: Api) -> Self {
        Self {
            api,
            token: None,
            seed_records: 0,
            seed_every_object: false,
            restricted_keys: Vec::new(),
            rate_limit: None,
            fault_5xx: 0.0,
            fault_429: 0.0,
            fault_truncate: 0.0,
            fault_reset: 0.0,
            latency: Duration::ZERO,
            rng_seed: 0x5e9_u64,
        }
    }

    pub fn seed_records(mut self, n: usize) -> Self {
        self.seed_records = n;
        self
    }

    /// Seed `seed_records` records of every object the API serves (see the field).
    pub fn seed_every_object(mut self) -> Self {
        self.seed_every_object = true;
        self
    }

    /// Adds a Stripe restricted key lacking the `denied` permissions
    /// (`.restricted_key("rk_test_sequin", ["rak_event_read"])`: a key that cannot read events).
    pub fn restricted_key<I, S>(mut self, key: impl Into<String>, denied: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.restricted_keys
            .push((key.into(), denied.into_iter().map(Into::into).collect()));
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Requests per second; 0 disables the limit.
    pub fn rate_limit(mut self, per_second: f64) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    pub fn faults(mut self, f: Faults) -> Self {
        self.fault_5xx = f.p_5xx;
        self.fault_429 = f.p_429;
        self.fault_truncate = f.p_truncate;
        self.fault_reset = f.p_reset;
        self.latency = f.latency;
        self
    }

    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = seed;
        self
    }

    fn fault_knobs(&self) -> Faults {
        Faults {
            p_5xx: self.fault_5xx,
            p_429: self.fault_429,
            p_truncate: self.fault_truncate,
            p_reset: self.fault_reset,
            latency: self.latency,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("unknown API {0:?} (expected stripe, salesforce, hubspot, airtable or github)")]
    UnknownApi(String),
    #[error(
        "{0} has no restricted keys (fix: configure restricted keys for the stripe simulator only)"
    )]
    RestrictedKeys(Api),
}

/// The typed state of the running API, for tests that mutate data behind the client's back.
#[derive(Clone)]
enum Handle {
    Stripe(Arc<stripe::Stripe>),
    Salesforce(Arc<salesforce::Salesforce>),
    Hubspot(Arc<hubspot::Hubspot>),
    Airtable(Arc<airtable::Airtable>),
    Github(Arc<github::Github>),
}

/// A running simulator. Dropping it stops the server too (the task is aborted).
pub struct Sim {
    api: Api,
    addr: SocketAddr,
    token: String,
    clock: Clock,
    handle: Handle,
    framework: Arc<common::Framework>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts a simulator on `listen` (use port 0 for a free port) and seeds it.
pub async fn start(cfg: SimConfig, listen: SocketAddr) -> Result<Sim, Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    let token = cfg
        .token
        .clone()
        .unwrap_or_else(|| cfg.api.default_token().to_owned());
    let clock = Clock::new();
    let ctx = SimContext {
        token: token.clone(),
        rng_seed: cfg.rng_seed,
        clock: clock.clone(),
        base_url: format!("http://{addr}"),
    };
    fn pair<T: Simulator>(t: T, wrap: fn(Arc<T>) -> Handle) -> (Handle, Arc<dyn Simulator>) {
        let t = Arc::new(t);
        (wrap(t.clone()), t)
    }
    let (handle, sim) = match cfg.api {
        Api::Stripe => pair(stripe::Stripe::new(ctx), Handle::Stripe),
        Api::Salesforce => pair(salesforce::Salesforce::new(ctx), Handle::Salesforce),
        Api::Hubspot => pair(hubspot::Hubspot::new(ctx), Handle::Hubspot),
        Api::Airtable => pair(airtable::Airtable::new(ctx), Handle::Airtable),
        Api::Github => pair(github::Github::new(ctx), Handle::Github),
    };
    match &handle {
        Handle::Stripe(stripe) => {
            for (key, denied) in &cfg.restricted_keys {
                let denied: Vec<&str> = denied.iter().map(String::as_str).collect();
                stripe.add_restricted_key(key, &denied);
            }
        }
        _ if !cfg.restricted_keys.is_empty() => return Err(Error::RestrictedKeys(cfg.api)),
        _ => {}
    }
    if cfg.seed_every_object {
        sim.seed_every_object(cfg.seed_records);
    } else {
        sim.seed(cfg.seed_records);
    }
    let rate_limit = match cfg.rate_limit {
        None => Some(sim.default_rate_limit()),
        Some(r) => RateLimit::from_rate(r),
    };
    let settings = common::Settings {
        faults: cfg.fault_knobs(),
        rate_limit,
    };
    let framework = common::Framework::new(sim, settings, cfg.rng_seed);
    let app =
        common::app(framework.clone()).into_make_service_with_connect_info::<common::ConnHandle>();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server =
            axum::serve(common::SimListener::new(listener), app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
        if let Err(e) = server.await {
            tracing::error!("simulator server failed: {e}");
        }
    });
    Ok(Sim {
        api: cfg.api,
        addr,
        token,
        clock,
        handle,
        framework,
        shutdown: Some(tx),
        task: Some(task),
    })
}

impl Sim {
    pub fn api(&self) -> Api {
        self.api
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The credential the simulator accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The clock all timestamps come from; advancing it ages data and events.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.framework.stats().snapshot()
    }

    pub fn reset_stats(&self) {
        self.framework.stats().reset();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.framework.set_faults(faults);
    }

    /// `None`: no limit.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.framework.set_rate_limit(limit);
    }

    /// # Panics
    /// When the simulator runs another API.
    pub fn stripe(&self) -> &stripe::Stripe {
        match &self.handle {
            Handle::Stripe(s) => s,
            _ => panic!("simulator runs {}, not stripe", self.api),
        }
    }

    /// # Panics
    /// When the simulator runs another API.
    pub fn salesforce(&self) -> &salesforce::Salesforce {
        match &self.handle {
            Handle::Salesforce(s) => s,
            _ => panic!("simulator runs {}, not salesforce", self.api),
        }
    }

    /// # Panics
    /// When the simulator runs another API.
    pub fn hubspot(&self) -> &hubspot::Hubspot {
        match &self.handle {
            Handle::Hubspot(s) => s,
            _ => panic!("simulator runs {}, not hubspot", self.api),
        }
    }

    /// # Panics
    /// When the simulator runs another API.
    pub fn airtable(&self) -> &airtable::Airtable {
        match &self.handle {
            Handle::Airtable(s) => s,
            _ => panic!("simulator runs {}, not airtable", self.api),
        }
    }

    /// # Panics
    /// When the simulator runs another API.
    pub fn github(&self) -> &github::Github {
        match &self.handle {
            Handle::Github(s) => s,
            _ => panic!("simulator runs {}, not github", self.api),
        }
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Runs until the server stops (the binary's main loop).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
