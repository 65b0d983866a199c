//! The listener: accepts clients, runs one session task per client, keeps
//! the cancel-key map, and shuts down gracefully.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Upstream;
use crate::classify::Classifier;
use crate::codec;
use crate::frontend::{self, SessionEnv};
use crate::interceptor::Interceptor;
use crate::synced::SyncedTables;
use crate::tls::{TlsConfig, TlsError};

/// How the proxy listens and where it forwards.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The Postgres server sessions are forwarded to.
    pub upstream: Upstream,
    /// Offer TLS to clients that ask (SSLRequest); 'N' when `None`.
    pub tls: Option<TlsConfig>,
    /// Tables whose writes go to the interceptor; updatable at runtime.
    pub synced: SyncedTables,
    /// Largest message a client may send (the session ends with a FATAL
    /// error beyond it). Defaults to Postgres's own limit.
    pub max_message_len: u32,
    /// Initial read buffer per direction and session.
    pub buffer_size: usize,
    /// Sessions run on this many dedicated threads, each with a
    /// single-threaded runtime; 0 runs them on the caller's runtime. Pinning
    /// a session (both directions and both sockets) to one thread saves the
    /// cross-thread wake-ups a work-stealing runtime adds to every round
    /// trip. Defaults to half the CPUs (at least one): the proxy's work is
    /// mostly system calls, and fewer threads batch more ready sockets per
    /// wake-up, leaving the other cores to Postgres (measured with
    /// `cargo xtask bench proxy --proxy-threads N`: on 2 cores, one thread
    /// costs about a third less CPU per transaction than two).
    pub worker_threads: usize,
}

impl ProxyConfig {
    pub fn new(listen: SocketAddr, upstream: Upstream) -> Self {
        ProxyConfig {
            listen,
            upstream,
            tls: None,
            synced: SyncedTables::default(),
            max_message_len: codec::MAX_MESSAGE_LEN,
            buffer_size: 64 * 1024,
            worker_threads: std::thread::available_parallelism()
                .map(|n| (n.get() / 2).max(1))
                .unwrap_or(1),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Counters for operators and tests: the seam a metrics exporter reads
/// (the proxy itself exports nothing).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Client sessions open now.
    pub active_sessions: AtomicUsize,
    /// Client sessions accepted.
    pub sessions_total: AtomicU64,
    /// Statements (Query and Execute messages) the interceptor answered.
    pub statements_intercepted: AtomicU64,
    /// Statements forwarded to the server as the client sent them: those
    /// that write no synced table, and those the interceptor gave back.
    pub statements_passed: AtomicU64,
}

/// A bound proxy, not yet serving.
pub struct Proxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    env: Arc<SessionEnv>,
    synced: SyncedTables,
    stats: Arc<ProxyStats>,
    worker_threads: usize,
}

impl Proxy {
    /// Binds the listener and prepares TLS.
    pub async fn bind(
        config: ProxyConfig,
        interceptor: Arc<dyn Interceptor>,
    ) -> Result<Proxy, ProxyError> {
        let tls = config.tls.as_ref().map(TlsConfig::acceptor).transpose()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: config.listen,
            source,
        })?;
        let stats = Arc::new(ProxyStats::default());
        let env = Arc::new(SessionEnv {
            stats: stats.clone(),
            upstream: config.upstream,
            classifier: Arc::new(Classifier::new(config.synced.clone())),
            interceptor,
            cancel_keys: Arc::new(Mutex::new(HashMap::new())),
            tls,
            max_message_len: config.max_message_len,
            buffer_size: config.buffer_size.max(8192),
        });
        Ok(Proxy {
            listener,
            local_addr,
            env,
            synced: config.synced,
            stats,
            worker_threads: config.worker_threads,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The synced-table set (shared: updates apply to running sessions).
    pub fn synced(&self) -> SyncedTables {
        self.synced.clone()
    }

    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` resolves to a grace period, then stops
    /// accepting, lets open sessions finish for up to that long, and closes
    /// the rest.
    pub async fn serve(self, shutdown: impl Future<Output = Duration>) {
        let mut workers: Vec<Worker> = (0..self.worker_threads)
            .filter_map(|i| match Worker::start(i, self.env.clone(), self.stats.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a proxy worker thread; using the caller's runtime");
                    None
                }
            })
            .collect();
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        let grace = loop {
            tokio::select! {
                grace = &mut shutdown => break grace,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        self.stats.active_sessions.fetch_add(1, Ordering::Relaxed);
                        self.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
                        // The least busy worker takes the session.
                        let worker = workers
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, w)| w.load.load(Ordering::Relaxed))
                            .map(|(i, _)| i);
                        let tcp = match worker {
                            Some(i) => match tcp.into_std() {
                                Ok(std_tcp) => {
                                    workers[i].load.fetch_add(1, Ordering::Relaxed);
                                    if let Err(e) = workers[i].sessions.send((std_tcp, peer)) {
                                        tracing::error!(worker = i, "proxy worker thread is gone; session dropped");
                                        workers.remove(i);
                                        drop(e);
                                        self.stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                                    }
                                    continue;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot hand a connection to a worker");
                                    self.stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                                    continue;
                                }
                            },
                            None => tcp,
                        };
                        let env = self.env.clone();
                        let stats = self.stats.clone();
                        sessions.spawn(async move {
                            frontend::run(tcp, peer, env).await;
                            stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(done) = sessions.join_next(), if !sessions.is_empty() => log_join(done),
            }
        };
        drop(self.listener);
        for w in &workers {
            let _ = w.shutdown.send(Some(grace));
        }
        drain(sessions, grace).await;
        for w in workers {
            let _ = w.done.await;
        }
    }

    /// Serves in a background task.
    pub fn spawn(self) -> ProxyHandle {
        let (tx, mut rx) = watch::channel(None::<Duration>);
        let local_addr = self.local_addr;
        let synced = self.synced.clone();
        let stats = self.stats.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                loop {
                    if let Some(grace) = *rx.borrow_and_update() {
                        return grace;
                    }
                    if rx.changed().await.is_err() {
                        // The handle was dropped: serve until the runtime ends.
                        return std::future::pending().await;
                    }
                }
            };
            self.serve(shutdown).await;
        });
        ProxyHandle {
            local_addr,
            synced,
            stats,
            shutdown: tx,
            task,
        }
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a session task panicked");
    }
}

/// Lets sessions finish for up to `grace`, then closes the rest.
async fn drain(mut sessions: JoinSet<()>, grace: Duration) {
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    while !sessions.is_empty() {
        tokio::select! {
            _ = &mut deadline => {
                tracing::info!(remaining = sessions.len(), "closing sessions still open after the grace period");
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
                break;
            }
            Some(done) = sessions.join_next() => log_join(done),
        }
    }
}

/// A dedicated session thread with a single-threaded runtime.
struct Worker {
    sessions: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    /// Sessions currently on this worker.
    load: Arc<AtomicUsize>,
    shutdown: watch::Sender<Option<Duration>>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    fn start(
        index: usize,
        env: Arc<SessionEnv>,
        stats: Arc<ProxyStats>,
    ) -> std::io::Result<Worker> {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
        let (shutdown_tx, mut shutdown_rx) = watch::channel(None::<Duration>);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let load = Arc::new(AtomicUsize::new(0));
        let worker_load = load.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("sequin-proxy-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut sessions = JoinSet::new();
                    let grace = loop {
                        tokio::select! {
                            changed = shutdown_rx.changed() => {
                                match (changed, *shutdown_rx.borrow()) {
                                    (_, Some(grace)) => break grace,
                                    (Err(_), None) => break Duration::ZERO,
                                    (Ok(()), None) => {}
                                }
                            }
                            received = rx.recv() => match received {
                                Some((std_tcp, peer)) => {
                                    let env = env.clone();
                                    let stats = stats.clone();
                                    let load = worker_load.clone();
                                    sessions.spawn(async move {
                                        match tokio::net::TcpStream::from_std(std_tcp) {
                                            Ok(tcp) => frontend::run(tcp, peer, env).await,
                                            Err(e) => tracing::warn!(%peer, error = %e, "cannot register a connection"),
                                        }
                                        load.fetch_sub(1, Ordering::Relaxed);
                                        stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                                    });
                                }
                                None => break Duration::ZERO,
                            },
                            Some(done) = sessions.join_next(), if !sessions.is_empty() => log_join(done),
                        }
                    };
                    drain(sessions, grace).await;
                });
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            sessions: tx,
            load,
            shutdown: shutdown_tx,
            done: done_rx,
        })
    }
}

/// A proxy serving in the background.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    synced: SyncedTables,
    stats: Arc<ProxyStats>,
    shutdown: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn synced(&self) -> &SyncedTables {
        &self.synced
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Stops accepting, waits up to `grace` for open sessions, then closes
    /// them and returns.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(Some(grace));
        let _ = self.task.await;
    }
}
