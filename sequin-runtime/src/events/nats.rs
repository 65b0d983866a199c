//! The NATS JetStream sink: events published to one stream, one subject per
//! connection, table and partition (`<prefix>.<connection>.<table>.<partition>`),
//! each message's `Nats-Msg-Id` the event's id and its payload the event's
//! JSON payload.
//!
//! Delivery is at least once from the dispatcher and exactly once in the
//! stream within the duplicate window: the server drops a message whose
//! `Nats-Msg-Id` it stored less than [`DUPLICATE_WINDOW`] ago, so events
//! published again after a crash (the dispatcher's cursor had not moved past
//! them) or after a lost ack are stored once.
//!
//! A batch is pipelined: publishes go out without waiting for each other's
//! acks, but never two events of one record at once. A record's next event
//! goes out only once the server acked the one before, and after a failure
//! none of its later events in the batch is sent, so a retried event can
//! never land behind a later event of its record. Records hash to
//! partitions (`Event::partition`), so a consumer of one partition subject
//! sees each of its records' events in `seq` order.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{Event, SendError};

/// How long the server remembers a message id. Chosen to outlast a
/// crashed Sequin's restart and a dispatcher's first retries (seconds to a
/// minute or two), so what it publishes again is dropped by the server, not
/// stored twice. The server keeps every id of the window in memory (about
/// rate x window ids: 6 million at 20,000 events/s), which is why it is not
/// longer; an event published again after the window is stored again, and
/// consumers that must not see it twice dedupe by the event's id.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The longest a publish waits for its ack (and for room in the client's
/// send buffer), and every JetStream API request of [`Nats::connect`]. A
/// healthy server acks within milliseconds even with file storage; after
/// this the event fails (the dispatcher retries it) instead of a dead
/// server hanging the sink.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`Nats::connect`] waits for the TCP connection and the
/// server's INFO.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes of one batch awaiting their acks at most (one per record at
/// a time); more records wait their turn. Below the client's own limit of
/// 5,000 acks in flight, so that limit is never what a publish waits on.
const MAX_IN_FLIGHT: usize = 1024;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "NATS subject prefix {0:?} is not a subject: use dot-separated tokens without `*`, `>` or whitespace (e.g. `sequin`)"
    )]
    Prefix(String),
    #[error(
        "NATS stream name {0:?} is not valid: use letters, digits, `-` and `_` (no `.`, `*`, `>`, whitespace)"
    )]
    StreamName(String),
    #[error("NATS partitions must be at least 1 (got 0)")]
    Partitions,
    #[error(
        "the NATS server at {url} is unreachable ({detail}): start it (`nats-server -js`) or fix the url"
    )]
    Unreachable { url: String, detail: String },
    #[error("the NATS server at {url} refused to connect ({detail}): fix the url's credentials")]
    Refused { url: String, detail: String },
    #[error(
        "JetStream is not enabled on the NATS server at {url}: start it with `-js` (`nats-server -js`) or a `jetstream {{}}` block in its config"
    )]
    JetStreamDisabled { url: String },
    #[error("getting or creating the NATS stream {stream} failed: {detail}")]
    Stream { stream: String, detail: String },
    #[error(
        "the NATS stream {stream} exists with subjects {subjects:?}, not {wanted:?}: add {wanted:?} to it or name another stream"
    )]
    StreamSubjects {
        stream: String,
        subjects: Vec<String>,
        wanted: String,
    },
    #[error(
        "the NATS stream {stream} has a duplicate window of {have:?}, below the {want:?} that deduplicates redelivery after a crash: raise it (`nats stream edit {stream} --dupe-window 5m`) or name another stream"
    )]
    DuplicateWindow {
        stream: String,
        have: Duration,
        want: Duration,
    },
}

/// A connection to a NATS server and the stream events go to.
pub struct Nats {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    url: String,
    stream: String,
    prefix: String,
    partitions: u32,
}

impl Nats {
    /// Connects to `url` and gets the stream `stream` (creating it with
    /// subjects `<subject_prefix>.>`, file storage and [`DUPLICATE_WINDOW`]
    /// when it is missing). An existing stream must capture those subjects
    /// and deduplicate at least as long. One stream (and prefix) per Sequin
    /// database: message ids are `evt_<seq>`, unique only within one.
    pub async fn connect(
        url: &str,
        stream: &str,
        subject_prefix: &str,
        partitions: u32,
    ) -> Result<Nats, NatsError> {
        if !valid_subject(subject_prefix) {
            return Err(NatsError::Prefix(subject_prefix.to_string()));
        }
        if !valid_stream_name(stream) {
            return Err(NatsError::StreamName(stream.to_string()));
        }
        if partitions == 0 {
            return Err(NatsError::Partitions);
        }
        let client = connect_client(url).await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client.clone());
        jetstream_enabled(&client, url).await?;
        ensure_stream(&jetstream, stream, subject_prefix).await?;
        Ok(Nats {
            client,
            jetstream,
            url: url.to_string(),
            stream: stream.to_string(),
            prefix: subject_prefix.to_string(),
            partitions,
        })
    }

    /// The stream events go to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// `<prefix>.<connection>.<table>.<partition>`, refused when the
    /// connection or table is not a single subject token.
    pub fn subject(&self, event: &Event) -> Result<String, SendError> {
        self.subject_of(event, &event.record_key())
    }

    /// [`subject`](Self::subject) of an event whose record key is known.
    fn subject_of(&self, event: &Event, record_key: &str) -> Result<String, SendError> {
        for (what, token) in [("connection", &event.connection), ("table", &event.table)] {
            if !valid_token(token) {
                return Err(SendError::new(format!(
                    "{} {what} name {token:?} is not a NATS subject token (no `.`, `*`, `>` or whitespace)",
                    event.id()
                )));
            }
        }
        Ok(format!(
            "{}.{}.{}.{}",
            self.prefix,
            event.connection,
            event.table,
            super::partition_of(record_key, self.partitions)
        ))
    }

    /// Publishes `events` and returns one result per event, in order. Ok
    /// means the stream stored it (or had it already: a duplicate id).
    /// Events of different records are in flight together; a record's
    /// events go one at a time, and those after one that failed are not
    /// sent. A timeout, a lost connection or a refusing stream stops the
    /// whole batch: what was not sent yet fails without being sent.
    pub async fn publish<E: Borrow<Event>>(&self, events: &[E]) -> Vec<Result<(), SendError>> {
        let mut batch = Batch::new(events.len());
        if self.client.connection_state() != State::Connected {
            batch.broken = Some(format!(
                "not connected to the NATS server at {} (reconnecting)",
                self.url
            ));
        }
        let (mut queues, order) = self.queue_by_record(events, &mut batch);
        // First appearance order, so the batch's head goes out first.
        let mut ready: VecDeque<String> = order.into();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while batch.broken.is_none() && in_flight.len() < MAX_IN_FLIGHT {
                let Some(key) = ready.pop_front() else { break };
                let (index, subject) = queues
                    .get_mut(&key)
                    .and_then(VecDeque::pop_front)
                    .expect("a ready record has a queued event");
                let message = message(events[index].borrow());
                let jetstream = &self.jetstream;
                in_flight.push(async move {
                    let outcome = match jetstream.send_publish(subject, message).await {
                        Ok(ack) => ack.await.map(drop),
                        Err(e) => Err(e),
                    };
                    (key, index, outcome)
                });
            }
            let Some((key, index, outcome)) = in_flight.next().await else {
                break;
            };
            match outcome {
                Ok(()) => {
                    batch.results[index] = Some(Ok(()));
                    if queues.get(&key).is_some_and(|q| !q.is_empty()) {
                        ready.push_back(key);
                    }
                }
                Err(e) => {
                    let event = events[index].borrow();
                    let subject = self.subject(event).unwrap_or_default();
                    let message = format!(
                        "NATS publish of {} to {subject} failed: {}",
                        event.id(),
                        publish_error(&e)
                    );
                    if !matches!(
                        e.kind(),
                        jetstream::context::PublishErrorKind::MaxPayloadExceeded
                    ) && batch.broken.is_none()
                    {
                        batch.broken = Some(message.clone());
                    }
                    batch.results[index] = Some(Err(SendError::new(message)));
                    if let Some(rest) = queues.remove(&key) {
                        batch.behind(events, index, rest);
                    }
                }
            }
        }
        batch.finish(events, queues)
    }

    /// Each record's events (index and subject) in batch order, and the
    /// records in the order of their first event; events whose subject is
    /// refused fail now, with their record's later events behind them.
    fn queue_by_record<E: Borrow<Event>>(
        &self,
        events: &[E],
        batch: &mut Batch,
    ) -> (Queues, Vec<String>) {
        let mut queues = Queues::new();
        let mut order = Vec::new();
        let mut refused: HashMap<String, usize> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            let event = event.borrow();
            let key = event.record_key();
            if let Some(&first) = refused.get(&key) {
                batch.results[index] = Some(Err(not_sent_behind(event, events[first].borrow())));
                continue;
            }
            match self.subject_of(event, &key) {
                Ok(subject) => match queues.entry(key) {
                    Entry::Occupied(mut queue) => queue.get_mut().push_back((index, subject)),
                    Entry::Vacant(slot) => {
                        order.push(slot.key().clone());
                        slot.insert(VecDeque::from([(index, subject)]));
                    }
                },
                Err(e) => {
                    batch.results[index] = Some(Err(e));
                    // A record's events share connection and table, so none
                    // of its events was queued before this one.
                    refused.insert(key, index);
                }
            }
        }
        (queues, order)
    }
}

/// Per record key, its events not sent yet: index in the batch, subject.
type Queues = HashMap<String, VecDeque<(usize, String)>>;

/// The event's message: `Nats-Msg-Id` and JSON payload.
fn message(event: &Event) -> PublishMessage {
    PublishMessage::build()
        .payload(event.payload_json().into())
        .message_id(event.id())
}

/// The results of one [`Nats::publish`] as they come in.
struct Batch {
    results: Vec<Option<Result<(), SendError>>>,
    /// Why the rest of the batch is not sent (the connection, the stream).
    broken: Option<String>,
}

impl Batch {
    fn new(len: usize) -> Batch {
        Batch {
            results: (0..len).map(|_| None).collect(),
            broken: None,
        }
    }

    /// Fails the events `rest` of a record queued behind its event `failed`.
    fn behind<E: Borrow<Event>>(
        &mut self,
        events: &[E],
        failed: usize,
        rest: VecDeque<(usize, String)>,
    ) {
        for (index, _) in rest {
            self.results[index] = Some(Err(not_sent_behind(
                events[index].borrow(),
                events[failed].borrow(),
            )));
        }
    }

    /// Fails what was never sent (the batch broke first) and unwraps.
    fn finish<E: Borrow<Event>>(
        mut self,
        events: &[E],
        queues: Queues,
    ) -> Vec<Result<(), SendError>> {
        let why = self.broken.take().unwrap_or_default();
        for (index, _) in queues.into_values().flatten() {
            self.results[index] = Some(Err(SendError::new(format!(
                "{} not sent: {why}",
                events[index].borrow().id()
            ))));
        }
        self.results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect()
    }
}

fn not_sent_behind(event: &Event, failed: &Event) -> SendError {
    SendError::new(format!(
        "{} not sent: {} of the same record failed before it",
        event.id(),
        failed.id()
    ))
}

/// One line for a publish's error, naming a timeout's bound.
fn publish_error(e: &jetstream::context::PublishError) -> String {
    use jetstream::context::PublishErrorKind as Kind;
    match e.kind() {
        Kind::TimedOut => format!(
            "no ack from the server within {}s (is it up?)",
            ACK_TIMEOUT.as_secs()
        ),
        Kind::StreamNotFound => {
            "no stream captures the subject (was the stream deleted? restart the sink to create it)"
                .to_string()
        }
        _ => e.to_string(),
    }
}

async fn connect_client(url: &str) -> Result<async_nats::Client, NatsError> {
    use async_nats::ConnectErrorKind as Kind;
    let connected = async_nats::ConnectOptions::new()
        .name("sequin")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(ACK_TIMEOUT))
        .connect(url)
        .await;
    connected.map_err(|e| {
        let detail = e.to_string();
        let url = url.to_string();
        match e.kind() {
            Kind::Authentication | Kind::AuthorizationViolation => {
                NatsError::Refused { url, detail }
            }
            _ => NatsError::Unreachable { url, detail },
        }
    })
}

/// Asks JetStream's API for its info: nobody answering means the server
/// runs without JetStream. (Not `Context::query_account`: its reply type
/// wants fields Debian's nats-server 2.9 does not send.)
async fn jetstream_enabled(client: &async_nats::Client, url: &str) -> Result<(), NatsError> {
    use async_nats::RequestErrorKind as Kind;
    match client.request("$JS.API.INFO", "".into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == Kind::NoResponders => Err(NatsError::JetStreamDisabled {
            url: url.to_string(),
        }),
        Err(e) => Err(NatsError::Unreachable {
            url: url.to_string(),
            detail: format!("JetStream's info request: {e}"),
        }),
    }
}

/// Gets `name`, or creates it; checks an existing one's subjects and window.
async fn ensure_stream(
    jetstream: &jetstream::Context,
    name: &str,
    prefix: &str,
) -> Result<(), NatsError> {
    let wanted = format!("{prefix}.>");
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![wanted.clone()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        description: Some("Sequin events".to_string()),
        ..Default::default()
    };
    let stream = jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| NatsError::Stream {
            stream: name.to_string(),
            detail: e.to_string(),
        })?;
    let have = &stream.cached_info().config;
    if !have.subjects.iter().any(|s| s == &wanted || s == ">") {
        return Err(NatsError::StreamSubjects {
            stream: name.to_string(),
            subjects: have.subjects.clone(),
            wanted,
        });
    }
    if have.duplicate_window < DUPLICATE_WINDOW {
        return Err(NatsError::DuplicateWindow {
            stream: name.to_string(),
            have: have.duplicate_window,
            want: DUPLICATE_WINDOW,
        });
    }
    Ok(())
}

/// One subject token: non-empty, no `.`, wildcard or whitespace.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

/// Dot-separated valid tokens.
fn valid_subject(subject: &str) -> bool {
    subject.split('.').all(valid_token)
}

/// What JetStream takes as a stream name (it becomes a subject token of
/// its API, and a directory name in the store).
fn valid_stream_name(name: &str) -> bool {
    valid_token(name) && !name.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_prefixes_refuse_dots_wildcards_and_whitespace() {
        assert!(valid_token("stripe"));
        assert!(valid_token("customer_balance"));
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb"] {
            assert!(!valid_token(bad), "{bad:?}");
        }
        assert!(valid_subject("sequin"));
        assert!(valid_subject("acme.sequin"));
        for bad in ["", "a.", ".a", "a..b", "a.*", "a.>"] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
        assert!(valid_stream_name("SEQUIN_EVENTS"));
        assert!(!valid_stream_name("a/b"));
    }
}
