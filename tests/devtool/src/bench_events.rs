//! `cargo xtask bench events`: the events pipeline (issue #15) in one run.
//!
//! Delivery, per sink (NATS JetStream; a webhook with `batch_size` 100 and
//! `max_in_flight` 8; a webhook with `batch_size` 1), each in a fresh
//! database of one throwaway cluster, the sinks' order rotating between
//! rounds:
//! 1. `--records` Stripe customers are seeded with events off; then events
//!    are switched on and the sink registered (`sequin.event_settings`,
//!    `sequin.sink`), as `sequin` does at start.
//! 2. drain: `--events` changes (each an update of the next record's `name`,
//!    `c<change number>`) are committed by UPDATE statements on a
//!    `store::Writer`'s session (the sync engine's own, the process key
//!    registered; see `ChangeWriter::write` for why not its COPY + upsert)
//!    with the pipeline stopped; then `events::run` (sequencer and dispatcher)
//!    starts in this process and the clock runs until the receiver has
//!    every change: the rate the pipeline empties a backlog at.
//! 3. live: `--events` more changes are committed as fast as the writer
//!    goes (transactions of `--write-batch`) while the pipeline runs; the
//!    rate is changes over the time from the first write to the last
//!    delivery (the writer's own rate is reported beside it).
//! 4. latency: `--rate` changes/s for `--latency-secs` (a transaction every
//!    10 ms), each change's commit time taken right after its COMMIT
//!    returned, its delivery time when the receiver got it (same process,
//!    same clock), matched by the change number in the event's record.
//!
//! The receivers live in this process: for NATS a JetStream pull consumer
//! of the sink's stream (delivery = the message reached the consumer, after
//! the server stored it); for webhooks a minimal axum endpoint that parses
//! each body, notes its changes and answers 200 (it does not verify
//! signatures or store anything: the example consumer, which applies every
//! event to its own Postgres, would measure itself). Every change must
//! arrive (duplicates are counted), or the run fails.
//!
//! Backfill: `--backfill-records` customers in the Stripe simulator (a
//! child process, as `bench sync`), backfilled by the release `sequin sync
//! --once` into fresh databases with events off (no `sinks:`), with a sink
//! that takes no backfill rows (`backfill: false`: the capture trigger
//! returns before writing the outbox) and with one that does
//! (`backfill: true`: every row a `read` event in the outbox), the three in
//! rotating order each round; ratios are against events off within the
//! round, medians over rounds. The outbox is checked (empty, empty, one row
//! per record). `sync --once` does not run the sequencer; the first round
//! times one `sequin.sequence_events()` over the backfill's outbox apart.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use sequin_runtime::config::Config;
use sequin_runtime::store::{Row, Table, Writer};
use sequin_spec::record::Cell;
use serde::Deserialize;
use tokio::sync::watch;

use crate::bench_sync::{chrono_free_date, sync_once_measured};
use crate::sim_child;

/// Arguments of `cargo xtask bench events`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchEventsArgs {
    /// Changes of each throughput measurement (drain and live), per sink
    /// and round.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Records the changes update in turn (seeded first, events off).
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// Changes per writer transaction in the throughput runs.
    #[arg(long, default_value_t = 1000)]
    pub write_batch: usize,
    /// Changes/s of the latency run.
    #[arg(long, default_value_t = 1000)]
    pub rate: usize,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Stripe customers of the backfill comparison (the size; nine
    /// backfills of it take about 5 minutes on 2 idle cores).
    #[arg(long, default_value_t = 1_000_000)]
    pub backfill_records: usize,
    /// Rounds, in rotating order; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Run one part only.
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Use this `sequin` binary for the backfill instead of building it
    /// (release).
    #[arg(long)]
    pub sequin: Option<PathBuf>,
    /// Internal: serve the seeded simulator (the benchmark's child process).
    #[arg(long, hide = true)]
    pub serve_sim: bool,
}

/// The parts of the benchmark.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Throughput and latency into each sink.
    Delivery,
    /// The outbox's cost on a backfill.
    Backfill,
}

/// Runs the benchmark (or, with `--serve-sim`, the simulator child).
pub fn run(args: BenchEventsArgs) -> Result<()> {
    if args.serve_sim {
        return sim_child::serve(args.backfill_records);
    }
    if args.records < args.write_batch || args.records < args.rate / 100 {
        bail!(
            "--records ({}) must be at least --write-batch ({}): a transaction updates each record once",
            args.records,
            args.write_batch
        );
    }
    let sequin = match (&args.sequin, args.only) {
        (_, Some(Part::Delivery)) => None,
        (Some(path), _) => Some(path.clone()),
        (None, _) => Some(crate::demo::sequin_binary(&crate::root(), true)?),
    };
    eprintln!("starting a throwaway Postgres ...");
    let cluster = sequin_pgtemp::Cluster::start().context("starting Postgres")?;
    let mut out = String::new();
    if args.only != Some(Part::Backfill) {
        let rounds = delivery::run(&cluster, &args)?;
        out.push_str(&delivery::markdown(&rounds, &args));
    }
    if let Some(sequin) = &sequin {
        let rounds = backfill::run(&cluster, sequin, &args)?;
        out.push_str(&backfill::markdown(&rounds, &args));
    }
    println!(
        "\nCommand: `{}` ({}; {} cores).\n\n{out}",
        command_line(&args),
        chrono_free_date(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

fn command_line(args: &BenchEventsArgs) -> String {
    let mut s = format!(
        "cargo xtask bench events --events {} --rate {} --latency-secs {} --backfill-records {} --rounds {}",
        args.events, args.rate, args.latency_secs, args.backfill_records, args.rounds
    );
    if let Some(part) = args.only {
        s.push_str(match part {
            Part::Delivery => " --only delivery",
            Part::Backfill => " --only backfill",
        });
    }
    s
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `items` rotated left by `by`: round r starts with the r-th.
fn rotated<T: Clone>(items: &[T], by: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if !v.is_empty() {
        v.rotate_left(by % items.len());
    }
    v
}

mod delivery {
    //! Throughput and latency into each sink (see the file's docs).

    use super::*;

    /// A webhook secret (Standard Webhooks' example key, 24 bytes).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// The sink under test.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Sink {
        Nats,
        Webhook { batch_size: usize, in_flight: usize },
    }

    impl Sink {
        fn label(self) -> String {
            match self {
                Sink::Nats => "NATS JetStream (16 partitions, file storage)".into(),
                Sink::Webhook {
                    batch_size,
                    in_flight,
                } => format!("webhook, batch_size {batch_size}, max_in_flight {in_flight}"),
            }
        }

        /// The `sinks:` entry; `tag` names the NATS stream and subjects
        /// (each database numbers its events from 1, and the server drops
        /// ids it saw within its duplicate window, so no two runs share a
        /// stream).
        fn yaml(self, nats_url: &str, hook_url: &str, tag: &str) -> String {
            match self {
                Sink::Nats => format!(
                    "  - name: bench\n    kind: nats\n    url: {nats_url}\n    stream: BENCH_{tag}\n    subject_prefix: bench{tag}\n"
                ),
                Sink::Webhook {
                    batch_size,
                    in_flight,
                } => format!(
                    "  - name: bench\n    kind: webhook\n    url: {hook_url}\n    secret: {SECRET}\n    batch_size: {batch_size}\n    max_in_flight: {in_flight}\n"
                ),
            }
        }
    }

    pub const SINKS: [Sink; 3] = [
        Sink::Nats,
        Sink::Webhook {
            batch_size: 100,
            in_flight: 8,
        },
        Sink::Webhook {
            batch_size: 1,
            in_flight: 8,
        },
    ];

    /// What one sink measured in one round.
    pub struct Round {
        pub sink: Sink,
        /// Events/s emptying a backlog of `--events` (pipeline started
        /// after the writes).
        pub drain_eps: f64,
        /// Events/s with the writer and the pipeline running together.
        pub live_eps: f64,
        /// The writer's own changes/s in the live run.
        pub live_write_rps: f64,
        /// The writer's changes/s with the pipeline stopped (events on:
        /// the capture trigger writes the outbox).
        pub drain_write_rps: f64,
        /// Changes/s the latency run achieved.
        pub latency_rate: f64,
        pub p50_ms: f64,
        pub p99_ms: f64,
        pub max_ms: f64,
        pub duplicates: usize,
    }

    /// Every sink in every round (rotating order).
    pub fn run(cluster: &sequin_pgtemp::Cluster, args: &BenchEventsArgs) -> Result<Vec<Round>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        eprintln!("starting nats-server -js ...");
        let nats = sequin_pgtemp::NatsServer::start();
        let arrivals = Arc::new(Arrivals::default());
        let hook_url = rt.block_on(receiver::serve_webhook(arrivals.clone()))?;
        let mut rounds = Vec::new();
        for round in 0..args.rounds {
            for (i, sink) in rotated(&SINKS, round).into_iter().enumerate() {
                let tag = format!("{round}_{i}");
                eprintln!("round {}: {} ...", round + 1, sink.label());
                let db = format!("bench_events_{tag}");
                let url = cluster.create_database(&db)?;
                let r = rt.block_on(one_sink(
                    args,
                    sink,
                    &url,
                    &nats.url(),
                    &hook_url,
                    &tag,
                    arrivals.clone(),
                ))?;
                eprintln!(
                    "  drain {:.0} events/s, live {:.0} events/s (writer {:.0}/s), latency at {:.0}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    r.drain_eps,
                    r.live_eps,
                    r.live_write_rps,
                    r.latency_rate,
                    r.p50_ms,
                    r.p99_ms,
                    r.max_ms
                );
                rounds.push(r);
                cluster.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
            }
        }
        Ok(rounds)
    }

    /// One sink's drain, live and latency runs in the fresh database `url`.
    async fn one_sink(
        args: &BenchEventsArgs,
        sink: Sink,
        url: &str,
        nats_url: &str,
        hook_url: &str,
        tag: &str,
        arrivals: Arc<Arrivals>,
    ) -> Result<Round> {
        let yaml = format!(
            "database_url: {url}\nconnections:\n  - name: stripe\n    connector: stripe\n    \
             base_url: http://127.0.0.1:9\n    credentials: {{ api_key: \"sk_test_bench\" }}\n    \
             objects: [customer]\nsinks:\n{}",
            sink.yaml(nats_url, hook_url, tag)
        );
        let config = Config::parse("bench.yaml", &yaml, &|_| None)
            .map_err(|e| anyhow::anyhow!("the bench's config: {e}"))?;
        let mut writer = ChangeWriter::prepare(url, args.records).await?;
        // Events on and the sink registered (its cursor at the log's end),
        // as `sequin` does at start.
        let admin = sequin_runtime::store::connect(url).await?;
        sequin_runtime::events::outbox::apply_settings(&admin, &config, true).await?;
        sequin_runtime::events::outbox::register_sinks(&admin, &config.sinks).await?;
        let consumer = match sink {
            Sink::Nats => Some(receiver::consume_nats(nats_url, tag, arrivals.clone()).await?),
            Sink::Webhook { .. } => None,
        };
        arrivals.reset();

        // Drain: the backlog first, then the pipeline.
        let n = args.events;
        let t = Instant::now();
        writer.write(0..n, args.write_batch).await?;
        let drain_write_rps = n as f64 / t.elapsed().as_secs_f64();
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let pipeline = {
            let config = config.clone();
            tokio::spawn(async move {
                sequin_runtime::events::run(
                    &config,
                    sequin_runtime::metrics::Metrics::new(),
                    stopped,
                )
                .await
            })
        };
        let got = arrivals.wait_for(0..n, Duration::from_secs(300)).await?;
        let drain_eps = n as f64 / (got.last - started).as_secs_f64();
        let mut duplicates = got.duplicates;

        // Live: the writer and the pipeline together.
        arrivals.reset();
        let started = Instant::now();
        writer.write(n..2 * n, args.write_batch).await?;
        let live_write_rps = n as f64 / started.elapsed().as_secs_f64();
        let got = arrivals
            .wait_for(n..2 * n, Duration::from_secs(300))
            .await?;
        let live_eps = n as f64 / (got.last - started).as_secs_f64();
        duplicates += got.duplicates;

        // Latency at a steady rate.
        arrivals.reset();
        let first = 2 * n;
        let commits = writer
            .steady(first, args.rate, Duration::from_secs(args.latency_secs))
            .await?;
        if commits.is_empty() {
            bail!("the latency run committed nothing (--latency-secs 0?)");
        }
        let changes = first..first + commits.len();
        let got = arrivals
            .wait_for(changes.clone(), Duration::from_secs(120))
            .await?;
        duplicates += got.duplicates;
        let mut ms: Vec<f64> = got
            .first_at
            .iter()
            .map(|(no, at)| {
                let committed = commits[*no - first];
                at.saturating_duration_since(committed).as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];

        let _ = stop.send(true);
        match tokio::time::timeout(Duration::from_secs(30), pipeline).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("the events pipeline failed: {e}"),
            Ok(Err(e)) => bail!("the events pipeline panicked: {e}"),
            Err(_) => bail!("the events pipeline did not stop within 30s"),
        }
        if let Some(consumer) = consumer {
            consumer.abort();
            receiver::delete_stream(nats_url, tag).await?;
        }
        writer.stop().await;
        Ok(Round {
            sink,
            drain_eps,
            live_eps,
            live_write_rps,
            drain_write_rps,
            latency_rate: commits.len() as f64 / args.latency_secs as f64,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: *ms.last().unwrap_or(&f64::NAN),
            duplicates,
        })
    }

    /// Record `record`'s id.
    fn record_id(record: usize) -> String {
        format!("cus_bench{record:07}")
    }

    /// The sync engine's session writing the changes: updates of the
    /// seeded customers' `name`, `c<change number>`.
    struct ChangeWriter {
        writer: Writer,
        /// A session of Sequin's own (it holds the process key) for the
        /// changes' UPDATEs.
        session: tokio_postgres::Client,
        table: Table,
        records: usize,
        registration: sequin_runtime::guard::Registration,
    }

    impl ChangeWriter {
        /// Migrates, registers the process key (renewed while the bench
        /// runs) and seeds `records` customers with events still off.
        async fn prepare(url: &str, records: usize) -> Result<ChangeWriter> {
            let mut admin = sequin_runtime::store::connect(url).await?;
            let stripe = sequin_runtime::registry::get("stripe").context("the stripe connector")?;
            sequin_runtime::store::migrate(&mut admin, &[("stripe", stripe)]).await?;
            let columns = stripe
                .object_columns("customer")
                .context("stripe customer's columns")?
                .to_vec();
            let primary_key = columns
                .iter()
                .position(|c| c.name == "id")
                .context("customer has an id column")?;
            let table = Table {
                schema: "stripe".into(),
                name: "customer".into(),
                columns,
                primary_key,
            };
            let registration = sequin_runtime::guard::Registration::start(url, &admin).await?;
            let mut w = ChangeWriter {
                writer: Writer::connect(url).await?,
                session: sequin_runtime::store::connect(url).await?,
                table,
                records,
                registration,
            };
            // Named `seed`: change `no` of record `no % records` then
            // always changes the row.
            for first in (0..records).step_by(1000) {
                let rows: Vec<Row> = (first..(first + 1000).min(records))
                    .map(|record| w.row(record, "seed".into()))
                    .collect();
                w.writer.upsert("stripe", &w.table, &rows).await?;
            }
            Ok(w)
        }

        /// Record `record`'s row named `name`.
        fn row(&self, record: usize, name: String) -> Row {
            let created = 1_700_000_000_000_000 + record as i64 * 1_000_000;
            let cells = self
                .table
                .columns
                .iter()
                .map(|c| match c.name.as_ref() {
                    "id" => Cell::Text(record_id(record)),
                    "name" => Cell::Text(name.clone()),
                    "email" => Cell::Text(format!("customer{record}@example.com")),
                    "object" => Cell::Text("customer".into()),
                    "currency" => Cell::Text("usd".into()),
                    "invoice_prefix" => Cell::Text(format!("B{record:07}")),
                    "balance" | "next_invoice_sequence" => Cell::Int(1),
                    "created" => Cell::Timestamp(created),
                    "delinquent" | "livemode" => Cell::Bool(false),
                    "metadata" => Cell::Json(serde_json::json!({ "plan": "pro", "seats": 5 })),
                    "preferred_locales" => Cell::TextArray(vec!["en".into()]),
                    _ => Cell::Null,
                })
                .collect();
            Row {
                cells,
                updated_at: Some(sequin_runtime::catalog::plan::now_us()),
            }
        }

        /// Commits changes `nos` in transactions of `batch`: change `no`
        /// names record `no % records` `c<no>`. One UPDATE statement per
        /// transaction on a session of Sequin's own (it holds the process key;
        /// the sync engine's upsert of an existing row fires the same
        /// UPDATE trigger). Not `Writer::upsert` itself: its staging
        /// table is `ON COMMIT DELETE ROWS`, whose truncation made each
        /// COMMIT take 30-100 ms on this shared disk, so the writer, not
        /// the pipeline, would set the rate of small transactions.
        async fn write(&mut self, nos: std::ops::Range<usize>, batch: usize) -> Result<()> {
            let nos: Vec<usize> = nos.collect();
            for chunk in nos.chunks(batch.max(1)) {
                let ids: Vec<String> = chunk
                    .iter()
                    .map(|no| record_id(no % self.records))
                    .collect();
                let names: Vec<String> = chunk.iter().map(|no| format!("c{no}")).collect();
                let changed = self
                    .session
                    .execute(
                        "UPDATE stripe.customer c
                            SET name = u.name, _sequin_updated_at = now(), _sequin_synced_at = now()
                           FROM unnest($1::text[], $2::text[]) AS u(id, name)
                          WHERE c.id = u.id",
                        &[&ids, &names],
                    )
                    .await?;
                if changed != chunk.len() as u64 {
                    bail!("the writer changed {changed} of {} rows", chunk.len());
                }
            }
            Ok(())
        }

        /// Commits `rate` changes/s from change `first` for `secs`, a
        /// transaction every 10 ms; returns each change's commit time
        /// (taken right after COMMIT returned).
        async fn steady(
            &mut self,
            first: usize,
            rate: usize,
            secs: Duration,
        ) -> Result<Vec<Instant>> {
            let per_tick = (rate / 100).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut commits = Vec::new();
            let end = Instant::now() + secs;
            while Instant::now() < end {
                tick.tick().await;
                let no = first + commits.len();
                self.write(no..no + per_tick, per_tick).await?;
                let at = Instant::now();
                commits.extend(std::iter::repeat_n(at, per_tick));
            }
            Ok(commits)
        }

        async fn stop(self) {
            self.registration.stop().await;
        }
    }

    pub fn markdown(rounds: &[Round], args: &BenchEventsArgs) -> String {
        let mut s = format!(
            "Delivery: {} changes per throughput run, updates of {} records (transactions of {}); latency at {} changes/s for {} s; medians of {} rounds.\n\n\
             | sink | drain events/s | live events/s | writer changes/s (live) | writer changes/s (pipeline stopped) | latency rate/s | p50 ms | p99 ms | max ms | duplicates |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            args.events, args.records, args.write_batch, args.rate, args.latency_secs, args.rounds
        );
        for sink in SINKS {
            let of: Vec<&Round> = rounds.iter().filter(|r| r.sink == sink).collect();
            let med =
                |f: fn(&Round) -> f64| median(&mut of.iter().map(|r| f(r)).collect::<Vec<_>>());
            s.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} |\n",
                sink.label(),
                med(|r| r.drain_eps),
                med(|r| r.live_eps),
                med(|r| r.live_write_rps),
                med(|r| r.drain_write_rps),
                med(|r| r.latency_rate),
                med(|r| r.p50_ms),
                med(|r| r.p99_ms),
                med(|r| r.max_ms),
                of.iter().map(|r| r.duplicates).sum::<usize>(),
            ));
        }
        s.push_str("\nEach round:\n\n| round | sink | drain events/s | live events/s | p50 ms | p99 ms |\n|---:|---|---:|---:|---:|---:|\n");
        let per_round = SINKS.len();
        for (i, r) in rounds.iter().enumerate() {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
                i / per_round + 1,
                r.sink.label(),
                r.drain_eps,
                r.live_eps,
                r.p50_ms,
                r.p99_ms
            ));
        }
        s.push('\n');
        s
    }
}

/// What the receivers got: each change's first arrival.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<Vec<(usize, Instant)>>,
    count: AtomicUsize,
    bad: Mutex<Option<String>>,
}

/// The arrivals of one run's changes.
struct Got {
    /// Change number and its first arrival.
    first_at: Vec<(usize, Instant)>,
    /// The last first arrival.
    last: Instant,
    duplicates: usize,
}

impl Arrivals {
    fn reset(&self) {
        self.seen.lock().expect("not poisoned").clear();
        self.count.store(0, Ordering::SeqCst);
    }

    fn record(&self, changes: &[usize]) {
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.extend(changes.iter().map(|&no| (no, now)));
        self.count.fetch_add(changes.len(), Ordering::SeqCst);
    }

    fn refuse(&self, why: String) {
        self.bad.lock().expect("not poisoned").get_or_insert(why);
    }

    /// Waits until every change of `want` arrived (or `timeout`).
    async fn wait_for(&self, want: std::ops::Range<usize>, timeout: Duration) -> Result<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = self.bad.lock().expect("not poisoned").clone() {
                bail!("the receiver refused a delivery: {why}");
            }
            if self.count.load(Ordering::SeqCst) >= want.len() {
                let seen = self.seen.lock().expect("not poisoned").clone();
                let mut firsts = HashSet::new();
                let mut first_at = Vec::new();
                let mut duplicates = 0;
                for (no, at) in seen {
                    if !want.contains(&no) {
                        bail!("change {no} arrived, not one of {want:?}");
                    }
                    if firsts.insert(no) {
                        first_at.push((no, at));
                    } else {
                        duplicates += 1;
                    }
                }
                if first_at.len() == want.len() {
                    let last = first_at.iter().map(|(_, at)| *at).max().expect("some");
                    return Ok(Got {
                        first_at,
                        last,
                        duplicates,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} changes arrived within {timeout:?}",
                    self.count.load(Ordering::SeqCst),
                    want.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

mod receiver {
    //! The receivers: a webhook endpoint and a JetStream consumer, both
    //! noting each event's change number (from its record's `name`).

    use super::*;

    /// One event's payload, as much of it as the receivers read.
    #[derive(Deserialize)]
    struct Payload {
        data: Data,
    }

    #[derive(Deserialize)]
    struct Data {
        record: Option<Record>,
    }

    #[derive(Deserialize)]
    struct Record {
        name: Option<String>,
    }

    /// A webhook batch (`sequin.batch`): its events' payloads.
    #[derive(Deserialize)]
    struct Batch {
        data: Vec<Payload>,
    }

    fn change_no(p: &Payload) -> Result<usize, String> {
        p.data
            .record
            .as_ref()
            .and_then(|r| r.name.as_deref())
            .and_then(|n| n.strip_prefix('c'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "an event without a record named c<number>".to_string())
    }

    /// Serves the webhook endpoint on a free loopback port; returns its URL.
    pub async fn serve_webhook(arrivals: Arc<Arrivals>) -> Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(arrivals);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}/hook"))
    }

    async fn hook(
        axum::extract::State(arrivals): axum::extract::State<Arc<Arrivals>>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        // A batch's id is `evt_<first>-<last>`, one event's `evt_<seq>`.
        let batch = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|id| id.contains('-'));
        let parsed: Result<Vec<usize>, String> = if batch {
            serde_json::from_slice::<Batch>(&body)
                .map_err(|e| e.to_string())
                .and_then(|b| b.data.iter().map(change_no).collect())
        } else {
            serde_json::from_slice::<Payload>(&body)
                .map_err(|e| e.to_string())
                .and_then(|p| change_no(&p).map(|no| vec![no]))
        };
        match parsed {
            Ok(nos) => {
                arrivals.record(&nos);
                axum::http::StatusCode::OK
            }
            Err(e) => {
                arrivals.refuse(e);
                axum::http::StatusCode::BAD_REQUEST
            }
        }
    }

    /// Creates the sink's stream as the sink would (so the consumer is in
    /// place before the first event) and consumes it from the start.
    pub async fn consume_nats(
        url: &str,
        tag: &str,
        arrivals: Arc<Arrivals>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let stream_name = format!("BENCH_{tag}");
        sequin_runtime::events::nats::Nats::connect(url, &stream_name, &format!("bench{tag}"), 16)
            .await?;
        let client = async_nats::connect(url).await?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&stream_name).await?;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1000)
            .messages()
            .await?;
        Ok(tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let outcome = message.map_err(|e| e.to_string()).and_then(|m| {
                    serde_json::from_slice::<Payload>(&m.payload)
                        .map_err(|e| e.to_string())
                        .and_then(|p| change_no(&p))
                });
                match outcome {
                    Ok(no) => arrivals.record(&[no]),
                    Err(e) => arrivals.refuse(e),
                }
            }
        }))
    }

    /// Deletes a run's stream (its messages are on disk).
    pub async fn delete_stream(url: &str, tag: &str) -> Result<()> {
        let client = async_nats::connect(url).await?;
        let js = async_nats::jetstream::new(client);
        js.delete_stream(format!("BENCH_{tag}")).await?;
        Ok(())
    }
}

mod backfill {
    //! The outbox's cost on a backfill (see the file's docs).

    use super::*;

    /// Events off, a sink without backfill rows, a sink with them.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Mode {
        Off,
        NoBackfillRows,
        BackfillRows,
    }

    impl Mode {
        fn label(self) -> &'static str {
            match self {
                Mode::Off => "events off (no `sinks:`)",
                Mode::NoBackfillRows => "sink with `backfill: false`",
                Mode::BackfillRows => "sink with `backfill: true`",
            }
        }

        fn sinks_yaml(self) -> &'static str {
            match self {
                Mode::Off => "",
                Mode::NoBackfillRows => {
                    "sinks:\n  - name: bench\n    kind: notify\n    channel: bench_events\n    backfill: false\n"
                }
                Mode::BackfillRows => {
                    "sinks:\n  - name: bench\n    kind: notify\n    channel: bench_events\n    backfill: true\n"
                }
            }
        }
    }

    pub const MODES: [Mode; 3] = [Mode::Off, Mode::NoBackfillRows, Mode::BackfillRows];

    pub struct Round {
        pub round: usize,
        pub mode: Mode,
        pub wall_secs: f64,
        pub cpu_secs: f64,
        pub outbox_mb: f64,
        /// One `sequin.sequence_events()` over the backfill's outbox (first
        /// round, `backfill: true` only).
        pub sequence_secs: Option<f64>,
    }

    pub fn run(
        cluster: &sequin_pgtemp::Cluster,
        sequin: &std::path::Path,
        args: &BenchEventsArgs,
    ) -> Result<Vec<Round>> {
        let n = args.backfill_records;
        eprintln!("seeding {n} Stripe customers in the simulator (child process) ...");
        let (sim, token) = sim_child::start(&[
            "bench",
            "events",
            "--serve-sim",
            "--backfill-records",
            &n.to_string(),
        ])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let dir = tempfile::tempdir()?;
        let mut rounds = Vec::new();
        for round in 0..args.rounds {
            for mode in rotated(&MODES, round) {
                let db = format!("bench_events_backfill_{round}_{}", mode as u8);
                let url = cluster.create_database(&db)?;
                let config = dir.path().join(format!("{db}.yaml"));
                std::fs::write(
                    &config,
                    format!(
                        "database_url: {url}\nconnections:\n  - name: stripe\n    connector: stripe\n    \
                         base_url: {base}\n    credentials: {{ api_key: \"{token}\" }}\n    objects: [customer]\n    \
                         rate_limit: {{ requests: 1000000, per: 1s }}\n{sinks}",
                        base = sim.url,
                        sinks = mode.sinks_yaml()
                    ),
                )?;
                crate::bench_sync::migrate(sequin, &config)?;
                eprintln!("round {}: backfill of {n}, {} ...", round + 1, mode.label());
                let log = dir.path().join(format!("{db}.log"));
                let (code, _rss, cpu_secs, wall_secs) = sync_once_measured(sequin, &config, &log)?;
                if code != 0 {
                    bail!(
                        "sequin sync --once exited with {code}; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                let time_sequencer = round == 0 && mode == Mode::BackfillRows;
                let (outbox_mb, sequence_secs) =
                    rt.block_on(check(&url, n, mode, time_sequencer))?;
                eprintln!(
                    "  {wall_secs:.2} s ({:.0} records/s), sequin CPU {cpu_secs:.2} s, outbox {outbox_mb:.0} MB{}",
                    n as f64 / wall_secs,
                    sequence_secs.map_or(String::new(), |s| format!(", sequencer {s:.2} s"))
                );
                rounds.push(Round {
                    round,
                    mode,
                    wall_secs,
                    cpu_secs,
                    outbox_mb,
                    sequence_secs,
                });
                cluster.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
            }
        }
        drop(sim);
        Ok(rounds)
    }

    /// Checks the synced rows and the outbox (empty unless backfill rows
    /// were asked for: one `read` per record); returns the outbox's size
    /// and, when asked, the time of one sequencer pass over it.
    async fn check(
        url: &str,
        n: usize,
        mode: Mode,
        time_sequencer: bool,
    ) -> Result<(f64, Option<f64>)> {
        let client = sequin_pgtemp::client::try_connect(url).await?;
        let synced: i64 = client
            .query_one("SELECT count(*) FROM stripe.customer", &[])
            .await?
            .get(0);
        if synced != n as i64 {
            bail!("sequin synced {synced} customers, the simulator has {n}");
        }
        let reads: i64 = client
            .query_one(
                "SELECT count(*) FILTER (WHERE op = 'read') FROM sequin.outbox",
                &[],
            )
            .await?
            .get(0);
        let all: i64 = client
            .query_one("SELECT count(*) FROM sequin.outbox", &[])
            .await?
            .get(0);
        let want = if mode == Mode::BackfillRows {
            n as i64
        } else {
            0
        };
        if reads != want || all != want {
            bail!(
                "{}: the outbox holds {all} rows ({reads} reads), expected {want} reads",
                mode.label()
            );
        }
        let bytes: i64 = client
            .query_one("SELECT pg_total_relation_size('sequin.outbox')", &[])
            .await?
            .get(0);
        let sequence_secs = if time_sequencer {
            let t = Instant::now();
            let moved: i64 = client
                .query_one("SELECT sequin.sequence_events()", &[])
                .await?
                .get(0);
            if moved != n as i64 {
                bail!("the sequencer moved {moved} events, expected {n}");
            }
            Some(t.elapsed().as_secs_f64())
        } else {
            None
        };
        Ok((bytes as f64 / 1e6, sequence_secs))
    }

    pub fn markdown(rounds: &[Round], args: &BenchEventsArgs) -> String {
        let mut s = format!(
            "Backfill: {} Stripe customers through `sequin sync --once` (release), {} rounds in rotating order; ratio = wall time / the same round's events-off wall time, median over rounds.\n\n\
             | config | median wall s | median records/s | median sequin CPU s | outbox MB | ratio vs events off |\n\
             |---|---:|---:|---:|---:|---:|\n",
            args.backfill_records, args.rounds
        );
        let off_of = |round: usize| {
            rounds
                .iter()
                .find(|r| r.round == round && r.mode == Mode::Off)
                .map(|r| r.wall_secs)
        };
        for mode in MODES {
            let of: Vec<&Round> = rounds.iter().filter(|r| r.mode == mode).collect();
            let wall = median(&mut of.iter().map(|r| r.wall_secs).collect::<Vec<_>>());
            let cpu = median(&mut of.iter().map(|r| r.cpu_secs).collect::<Vec<_>>());
            let mb = median(&mut of.iter().map(|r| r.outbox_mb).collect::<Vec<_>>());
            let ratio = median(
                &mut of
                    .iter()
                    .filter_map(|r| off_of(r.round).map(|off| r.wall_secs / off))
                    .collect::<Vec<_>>(),
            );
            s.push_str(&format!(
                "| {} | {wall:.2} | {:.0} | {cpu:.2} | {mb:.0} | {ratio:.2} |\n",
                mode.label(),
                args.backfill_records as f64 / wall,
            ));
        }
        s.push_str("\nEach run (wall s): ");
        let runs: Vec<String> = rounds
            .iter()
            .map(|r| format!("r{} {}: {:.2}", r.round + 1, r.mode.label(), r.wall_secs))
            .collect();
        s.push_str(&runs.join("; "));
        s.push('\n');
        if let Some(secs) = rounds.iter().find_map(|r| r.sequence_secs) {
            s.push_str(&format!(
                "\nOne `sequin.sequence_events()` over the first round's backfill outbox ({} rows, one statement): {secs:.2} s.\n",
                args.backfill_records
            ));
        }
        s
    }
}
