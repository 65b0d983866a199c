//! The client side of a session: SSL/GSS negotiation, relaying the
//! startup and authentication exchange, then two forwarding directions that
//! run concurrently in one task.
//!
//! Client to server: bytes are forwarded in whole read-sized chunks; only the
//! five-byte headers are looked at, plus the payloads of Query, Parse, Bind,
//! Execute and Close (names and, when the pre-filter lets it through, SQL).
//! COPY data is streamed without buffering whole messages.
//!
//! Server to client: chunks are forwarded as read; headers feed the
//! [`ProtocolState`], which knows when the server owes no more replies.
//!
//! Interception: the client-to-server side asks the server-to-client side to
//! hand over the server's read half (and the client's write half) once the
//! server is idle, runs the interceptor, and hands them back. The directions
//! never block each other otherwise, so a client that pipelines while the
//! server streams a large result cannot deadlock the session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::backend::{
    self, BackendError, ClientRead, ClientWrite, ServerRead, ServerWrite, Upstream, write_server,
};
use crate::classify::{Classification, Classifier};
use crate::codec::startup::{CancelRequest, StartupMessage, StartupPacket};
use crate::codec::{
    self, Authentication, BackendKeyData, Bind, Close, CodecError, ErrorResponse, Execute, Message,
    Parse, PasswordMessage, Target,
};
use crate::interceptor::{
    InjectError, InterceptContext, Intercepted, Interceptor, Outcome, Protocol, SessionInfo,
    read_message,
};
use crate::pgtls::SslMode;
use crate::state::{Pending, ProtocolState};
use crate::synced::SyncedSet;

/// Cancel keys handed to clients, mapped to the real server keys. The pid
/// is kept (clients compare it with NotificationResponse pids); the secret
/// is the proxy's own, so a server secret never leaves the proxy.
pub(crate) type CancelKeys = Arc<Mutex<HashMap<(i32, i32), CancelRequest>>>;

/// Everything a session needs from the proxy.
pub(crate) struct SessionEnv {
    /// The proxy's counters (statements are counted here).
    pub stats: Arc<crate::server::ProxyStats>,
    pub upstream: Upstream,
    pub classifier: Arc<Classifier>,
    pub interceptor: Arc<dyn Interceptor>,
    pub cancel_keys: CancelKeys,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub max_message_len: u32,
    pub buffer_size: usize,
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client i/o: {0}")]
    Client(std::io::Error),
    #[error("server i/o: {0}")]
    Server(std::io::Error),
    #[error("client sent an invalid message: {0}")]
    ClientProtocol(CodecError),
    #[error("server sent an invalid message: {0}")]
    ServerProtocol(CodecError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("interceptor failed: {0}")]
    Intercept(InjectError),
    #[error("client sent no startup packet within the startup timeout")]
    StartupTimeout,
    #[error("client closed the connection during startup")]
    ClientGoneDuringStartup,
    #[error("server closed the connection during startup")]
    ServerGoneDuringStartup,
}

/// How a session ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent Terminate.
    Terminated,
    /// The client closed its connection (possibly mid-query or mid-COPY).
    ClientGone,
    /// The server closed the connection (restart, FATAL, admin command).
    ServerGone,
    /// Startup was refused by the server (bad password, unknown database).
    Refused,
    /// A CancelRequest was relayed.
    Cancel,
    /// The client negotiated and left (e.g. an SSL probe).
    NoStartup,
    /// The client broke the protocol; it was sent a FATAL error.
    ProtocolViolation,
}

/// Runs one client connection to its end and logs why it ended.
pub(crate) async fn run(tcp: TcpStream, peer: SocketAddr, env: Arc<SessionEnv>) {
    let _ = tcp.set_nodelay(true);
    match session(tcp, peer, &env).await {
        Ok(end) => tracing::debug!(%peer, ?end, "session ended"),
        Err(e) => tracing::info!(%peer, error = %e, "session ended with an error"),
    }
}

async fn read_startup_packet<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<Vec<u8>>, SessionError> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(SessionError::Client(e)),
    }
    let n = match StartupPacket::peek_len(&len) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(None),
        Err(e) => return Err(SessionError::ClientProtocol(e)),
    };
    let mut packet = vec![0u8; n];
    packet[..4].copy_from_slice(&len);
    s.read_exact(&mut packet[4..])
        .await
        .map_err(SessionError::Client)?;
    Ok(Some(packet))
}

fn fatal(code: &str, message: impl Into<String>) -> BytesMut {
    ErrorResponse::new("FATAL", code, message).to_bytes()
}

/// One step of the negotiation before the StartupMessage.
enum Step {
    Startup(Vec<u8>, StartupMessage),
    StartTls,
    End(SessionEnd),
}

/// Answers SSLRequest/GSSENCRequest and relays CancelRequest until the
/// StartupMessage (or a switch to TLS) arrives.
async fn negotiate<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    env: &SessionEnv,
    tls_possible: bool,
) -> Result<Step, SessionError> {
    loop {
        let packet = match read_startup_packet(s).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Step::End(SessionEnd::NoStartup)),
            Err(SessionError::ClientProtocol(e)) => {
                let _ = s
                    .write_all(&fatal("08P01", format!("invalid startup packet: {e}")))
                    .await;
                return Err(SessionError::ClientProtocol(e));
            }
            Err(e) => return Err(e),
        };
        let decoded = match StartupPacket::decode(&packet) {
            Ok(p) => p,
            Err(e) => {
                let _ = s
                    .write_all(&fatal("08P01", format!("invalid startup packet: {e}")))
                    .await;
                return Err(SessionError::ClientProtocol(e));
            }
        };
        match decoded {
            StartupPacket::SslRequest if tls_possible => {
                s.write_all(b"S").await.map_err(SessionError::Client)?;
                return Ok(Step::StartTls);
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                s.write_all(b"N").await.map_err(SessionError::Client)?;
                s.flush().await.map_err(SessionError::Client)?;
            }
            StartupPacket::Cancel(key) => {
                relay_cancel(env, key).await;
                return Ok(Step::End(SessionEnd::Cancel));
            }
            StartupPacket::Startup(m) => return Ok(Step::Startup(packet, m)),
        }
    }
}

async fn relay_cancel(env: &SessionEnv, key: CancelRequest) {
    let real = env
        .cancel_keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(key.pid, key.secret))
        .copied();
    match real {
        Some(real) => {
            if let Err(e) = backend::send_cancel(&env.upstream, real).await {
                tracing::warn!(pid = key.pid, error = %e, "relaying a cancel request failed");
            }
        }
        None => tracing::debug!(pid = key.pid, "cancel request with an unknown key ignored"),
    }
}

/// Removes the session's cancel key when the session ends.
struct CancelKeyGuard {
    keys: CancelKeys,
    key: (i32, i32),
}

impl Drop for CancelKeyGuard {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// How long a client may take to send its startup packet (and finish the
/// TLS handshake), like Postgres's `authentication_timeout`.
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn with_startup_timeout<T>(
    fut: impl Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(STARTUP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::StartupTimeout),
    }
}

async fn session(
    mut tcp: TcpStream,
    peer: SocketAddr,
    env: &SessionEnv,
) -> Result<SessionEnd, SessionError> {
    // Negotiation reads exactly one packet at a time: nothing a client sends
    // after an SSLRequest may be read before the TLS handshake
    // (CVE-2021-23222).
    let (client_read, client_write, packet, startup): (ClientRead, ClientWrite, _, _) =
        match with_startup_timeout(negotiate(&mut tcp, env, env.tls.is_some())).await? {
            Step::End(end) => return Ok(end),
            Step::Startup(packet, m) => {
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w), packet, m)
            }
            Step::StartTls => {
                let Some(acceptor) = env.tls.as_ref() else {
                    return Ok(SessionEnd::NoStartup);
                };
                let mut tls = with_startup_timeout(async {
                    acceptor.accept(tcp).await.map_err(SessionError::Tls)
                })
                .await?;
                match with_startup_timeout(negotiate(&mut tls, env, false)).await? {
                    Step::End(end) => return Ok(end),
                    // TLS is never offered twice (`tls_possible` is false).
                    Step::StartTls => return Ok(SessionEnd::NoStartup),
                    Step::Startup(packet, m) => {
                        let (r, w) = tokio::io::split(tls);
                        (Box::new(r), Box::new(w), packet, m)
                    }
                }
            }
        };
    established(client_read, client_write, packet, startup, peer, env).await
}

/// What a client whose SCRAM offers channel binding is told when the
/// proxy speaks TLS to the server (see `established`).
const CHANNEL_BINDING_REFUSED: &str = "the Sequin proxy cannot relay SCRAM channel binding (it holds TLS to you and to the server): connect with channel_binding=disable";

/// Connects to the server (over TLS when `encrypted`, else as the
/// upstream's sslmode says) and sends the client's startup packet. Returns
/// whether the connection is encrypted, and its halves.
async fn open_server(
    env: &SessionEnv,
    startup_packet: &[u8],
    encrypted: bool,
) -> Result<(bool, ServerRead, ServerWrite), SessionError> {
    let server = if encrypted {
        backend::connect_encrypted(&env.upstream).await?
    } else {
        backend::connect(&env.upstream).await?
    };
    let tls = server.is_tls();
    let (server_read, mut server_write) = server.into_split();
    write_server(&mut server_write, startup_packet)
        .await
        .map_err(SessionError::Server)?;
    Ok((tls, server_read, server_write))
}

/// Tells the client that the server cannot be reached (with the reason
/// when it is TLS: the operator's to fix, but the client may as well know
/// which one it is).
async fn send_unreachable(client_write: &mut ClientWrite, e: &SessionError) {
    let message = match e {
        SessionError::Backend(b @ (BackendError::NoSsl { .. } | BackendError::Tls { .. })) => {
            format!("the proxy cannot reach the database server: {b}")
        }
        _ => "the proxy cannot reach the database server".to_string(),
    };
    let _ = client_write.write_all(&fatal("08006", message)).await;
    let _ = client_write.flush().await;
}

/// Relays the server's refusal of the session (after what is pending in
/// `out`).
async fn relay_refusal(
    client_write: &mut ClientWrite,
    out: &mut BytesMut,
    frame: &[u8],
    peer: SocketAddr,
) {
    out.extend_from_slice(frame);
    let _ = client_write.write_all(out).await;
    let _ = client_write.flush().await;
    if let Ok(e) = ErrorResponse::decode(frame) {
        tracing::info!(%peer, error = %e, "server refused the session");
    }
}

async fn established(
    mut client_read: ClientRead,
    mut client_write: ClientWrite,
    startup_packet: Vec<u8>,
    startup: StartupMessage,
    peer: SocketAddr,
    env: &SessionEnv,
) -> Result<SessionEnd, SessionError> {
    let (mut upstream_tls, mut server_read, mut server_write) =
        match open_server(env, &startup_packet, false).await {
            Ok(opened) => opened,
            Err(e) => {
                send_unreachable(&mut client_write, &e).await;
                return Err(e);
            }
        };
    // `sslmode=allow`: a server that refuses the plain session at once
    // (pg_hba.conf `hostssl`) gets the startup again over TLS.
    let mut may_retry_with_tls = !upstream_tls && env.upstream.tls.mode() == SslMode::Allow;

    // Startup and authentication are relayed message by message: Postgres
    // decides who gets in; the proxy only swaps the cancel secret.
    let mut sbuf = BytesMut::with_capacity(env.buffer_size);
    let mut cbuf = BytesMut::with_capacity(env.buffer_size);
    let mut out = BytesMut::with_capacity(1024);
    let mut state = ProtocolState::default();
    let mut key_guard = None;
    let mut backend_pid = 0;
    let server_err = |e: InjectError| match e {
        InjectError::Io(e) => SessionError::Server(e),
        InjectError::Codec(e) => SessionError::ServerProtocol(e),
        _ => SessionError::ServerGoneDuringStartup,
    };
    loop {
        let frame = match read_message(&mut server_read, &mut sbuf, codec::MAX_MESSAGE_LEN).await {
            Ok(f) => f,
            Err(e) => {
                let _ = client_write.write_all(&out).await;
                return Err(server_err(e));
            }
        };
        match frame[0] {
            b'R' => {
                may_retry_with_tls = false;
                let auth = Authentication::decode(&frame).map_err(SessionError::ServerProtocol)?;
                match auth.without_channel_binding() {
                    Some(stripped) => stripped.encode(&mut out),
                    None => out.extend_from_slice(&frame),
                }
                client_write
                    .write_all(&out)
                    .await
                    .map_err(SessionError::Client)?;
                client_write.flush().await.map_err(SessionError::Client)?;
                out.clear();
                if auth.expects_answer() {
                    let answer = match read_message(&mut client_read, &mut cbuf, 10_000).await {
                        Ok(a) => a,
                        Err(InjectError::Closed) => return Ok(SessionEnd::ClientGone),
                        Err(InjectError::Io(e)) => return Err(SessionError::Client(e)),
                        Err(InjectError::Codec(e)) => {
                            let _ = client_write
                                .write_all(&fatal("08P01", format!("invalid message: {e}")))
                                .await;
                            return Err(SessionError::ClientProtocol(e));
                        }
                        Err(_) => return Err(SessionError::ClientGoneDuringStartup),
                    };
                    if answer[0] != b'p' {
                        let e = CodecError::WrongTag {
                            expected: b'p',
                            got: answer[0],
                        };
                        let _ = client_write
                            .write_all(&fatal(
                                "08P01",
                                "expected a password response during authentication",
                            ))
                            .await;
                        return Err(SessionError::ClientProtocol(e));
                    }
                    if upstream_tls
                        && matches!(auth, Authentication::Sasl { .. })
                        && PasswordMessage::decode(&answer)
                            .ok()
                            .and_then(|p| p.sasl_claims_binding_support())
                            == Some(true)
                    {
                        // The server would refuse it as a downgrade ("SCRAM
                        // channel binding negotiation error"); say why and
                        // what to do instead.
                        let _ = client_write
                            .write_all(&fatal("28000", CHANNEL_BINDING_REFUSED))
                            .await;
                        let _ = client_write.flush().await;
                        tracing::info!(%peer, "client offered SCRAM channel binding through the TLS proxy; refused");
                        return Ok(SessionEnd::Refused);
                    }
                    write_server(&mut server_write, &answer)
                        .await
                        .map_err(SessionError::Server)?;
                }
            }
            b'K' => {
                let real = BackendKeyData::decode(&frame).map_err(SessionError::ServerProtocol)?;
                let secret = rand::random::<i32>();
                env.cancel_keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        (real.pid, secret),
                        CancelRequest {
                            pid: real.pid,
                            secret: real.secret,
                        },
                    );
                key_guard = Some(CancelKeyGuard {
                    keys: env.cancel_keys.clone(),
                    key: (real.pid, secret),
                });
                backend_pid = real.pid;
                BackendKeyData {
                    pid: real.pid,
                    secret,
                }
                .encode(&mut out);
            }
            b'E' if std::mem::take(&mut may_retry_with_tls) => {
                tracing::debug!(%peer, "server refused a plain session; sslmode=allow tries TLS");
                match open_server(env, &startup_packet, true).await {
                    Ok(opened) => {
                        (upstream_tls, server_read, server_write) = opened;
                        sbuf.clear();
                    }
                    // No SSL either: the plain refusal is the answer.
                    Err(SessionError::Backend(BackendError::NoSsl { .. })) => {
                        relay_refusal(&mut client_write, &mut out, &frame, peer).await;
                        return Ok(SessionEnd::Refused);
                    }
                    Err(e) => {
                        send_unreachable(&mut client_write, &e).await;
                        return Err(e);
                    }
                }
            }
            b'E' => {
                relay_refusal(&mut client_write, &mut out, &frame, peer).await;
                return Ok(SessionEnd::Refused);
            }
            b'Z' => {
                let z =
                    codec::ReadyForQuery::decode(&frame).map_err(SessionError::ServerProtocol)?;
                state.server_sent(b'Z', Some(z.status));
                out.extend_from_slice(&frame);
                break;
            }
            _ => out.extend_from_slice(&frame),
        }
    }
    client_write
        .write_all(&out)
        .await
        .map_err(SessionError::Client)?;
    client_write.flush().await.map_err(SessionError::Client)?;

    let info = SessionInfo {
        user: startup.param("user").unwrap_or_default().to_owned(),
        database: startup
            .param("database")
            .or(startup.param("user"))
            .unwrap_or_default()
            .to_owned(),
        application_name: startup.param("application_name").map(str::to_owned),
        peer: Some(peer),
        backend_pid,
    };
    tracing::debug!(%peer, user = %info.user, database = %info.database, backend_pid, "session established");

    let state = Mutex::new(state);
    let (ctl_tx, ctl_rx) = mpsc::channel(1);
    let synced = env.classifier.synced();
    let mut c2s = ClientToServer {
        env,
        state: &state,
        ctl: ctl_tx,
        info: &info,
        client_read,
        buf: cbuf,
        server_write,
        injected: Default::default(),
        local: None,
        portals: Default::default(),
        track: Tracker {
            env,
            snapshot: synced.snapshot(),
            version: synced.version(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            skip: 0,
            skip_until_sync: false,
            deallocated: false,
            tags: Vec::with_capacity(64),
        },
    };
    let s2c = ServerToClient {
        io: Some(ServerSide {
            server_read,
            buf: sbuf,
            client_write,
            held: BytesMut::new(),
        }),
        state: &state,
        ctl: ctl_rx,
        buffer_size: env.buffer_size,
    };
    let result = tokio::select! {
        r = c2s.run() => r,
        r = s2c.run() => r,
    };
    let busy = !state.lock().unwrap_or_else(|e| e.into_inner()).is_idle();
    let client_left = matches!(
        result,
        Ok(SessionEnd::ClientGone | SessionEnd::ProtocolViolation)
            | Err(SessionError::Client(_) | SessionError::ClientProtocol(_))
    );
    if client_left && busy {
        // The server would go on with a long query (or wait for COPY data)
        // until it next talks to the vanished client: cancel it now. Closing
        // the connection then ends the session and rolls back its work.
        let real = key_guard.as_ref().and_then(|guard| {
            env.cancel_keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&guard.key)
                .copied()
        });
        if let Some(real) = real {
            tracing::info!(%peer, backend_pid, "client left mid-statement; cancelling it");
            if let Err(e) = backend::send_cancel(&env.upstream, real).await {
                tracing::warn!(%peer, error = %e, "cancel after client loss failed");
            }
        }
    }
    match &result {
        Ok(SessionEnd::ServerGone) => {
            tracing::info!(%peer, backend_pid, "server closed the connection; session ended")
        }
        Ok(SessionEnd::ProtocolViolation) => {
            tracing::warn!(%peer, backend_pid, "client broke the protocol; session ended")
        }
        Ok(SessionEnd::ClientGone) if busy => {
            tracing::info!(%peer, backend_pid, "client vanished mid-statement; session ended")
        }
        _ => {}
    }
    drop(key_guard);
    result
}

/// A prepared statement that writes a synced table.
#[derive(Debug)]
struct Prepared {
    name: String,
    sql: String,
    invalid_utf8: bool,
    param_types: Vec<u32>,
    classification: Arc<Classification>,
}

/// A portal bound to such a statement.
#[derive(Debug)]
struct BoundPortal {
    prepared: Arc<Prepared>,
    bind: Bind,
    id: u64,
}

/// Ids of bound portals, unique in the process.
static PORTAL_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Client-to-server bookkeeping that must not borrow the read buffer.
struct Tracker<'e> {
    env: &'e SessionEnv,
    snapshot: Arc<SyncedSet>,
    version: u64,
    /// Only statements and portals that write synced tables are kept, so
    /// ordinary traffic never allocates here.
    statements: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Arc<BoundPortal>>,
    /// Bytes of a streamed CopyData message still to forward.
    skip: usize,
    /// After a synthesized error in the extended protocol: drop messages
    /// until Sync, as the server would.
    skip_until_sync: bool,
    /// The client may have dropped every prepared statement since the
    /// interceptor last ran.
    deallocated: bool,
    /// Tags forwarded in the current chunk, for the protocol state.
    tags: Vec<u8>,
}

/// Where a scan of the client buffer stopped.
enum Stop {
    NeedMore,
    /// Drop the message of this length at the start of the remaining buffer.
    Drop(usize),
    /// Send this message to the server in place of the one of this length
    /// at the start of the remaining buffer.
    Replace(usize, BytesMut),
    /// Forward this Terminate and end.
    Terminate(usize),
    /// Intercept the message of this length.
    Intercept(usize, Box<Intercepted>),
    Violation(CodecError),
}

/// A NUL-terminated string at the start of `b`, decoded leniently: the
/// classifier only needs ASCII identifiers to match, and a client encoding
/// other than UTF-8 must not make a write invisible.
fn lossy_cstr(b: &[u8]) -> Option<(std::borrow::Cow<'_, str>, &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((String::from_utf8_lossy(&b[..nul]), &b[nul + 1..]))
}

/// Whether a leniently decoded text lost bytes (it borrows exactly when
/// the bytes were valid UTF-8).
#[allow(clippy::ptr_arg)] // the Cow's variant is the answer
fn lossy(text: &std::borrow::Cow<'_, str>) -> bool {
    matches!(text, std::borrow::Cow::Owned(_))
}

impl Tracker<'_> {
    /// Counts a statement forwarded as the client sent it.
    fn passed(&self) {
        self.env
            .stats
            .statements_passed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn refresh_snapshot(&mut self) {
        let synced = self.env.classifier.synced();
        let v = synced.version();
        if v != self.version {
            self.snapshot = synced.snapshot();
            self.version = v;
        }
    }

    /// Scans complete messages from the start of `buf`; returns how many
    /// bytes to forward and why it stopped.
    fn scan(&mut self, buf: &[u8]) -> (usize, Stop) {
        self.refresh_snapshot();
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - pos);
                pos += n;
                self.skip -= n;
                if self.skip > 0 {
                    return (pos, Stop::NeedMore);
                }
                continue;
            }
            let (tag, len) = match codec::peek_header(&buf[pos..], self.env.max_message_len) {
                Ok(Some(h)) => h,
                Ok(None) => return (pos, Stop::NeedMore),
                Err(e) => return (pos, Stop::Violation(e)),
            };
            if self.skip_until_sync {
                if tag == b'S' {
                    self.skip_until_sync = false;
                } else if buf.len() - pos >= len {
                    return (pos, Stop::Drop(len));
                } else {
                    return (pos, Stop::NeedMore);
                }
            }
            if tag == b'd' {
                // CopyData is streamed, never buffered whole.
                self.skip = len;
                continue;
            }
            if buf.len() - pos < len {
                return (pos, Stop::NeedMore);
            }
            let body = &buf[pos + codec::HEADER_LEN..pos + len];
            // DISCARD ALL / DEALLOCATE drop the interceptor's prepared
            // statements too (a cheap scan; false positives only cost a
            // Parse later).
            if matches!(tag, b'Q' | b'P') && mentions_deallocation(body) {
                self.deallocated = true;
            }
            match tag {
                b'Q' => {
                    if let Some(i) = self.on_query(body) {
                        return (pos, Stop::Intercept(len, Box::new(i)));
                    }
                    self.passed();
                }
                b'P' => {
                    if let Some(parse) = self.on_parse(body) {
                        return (pos, Stop::Replace(len, parse));
                    }
                }
                b'B' => self.on_bind(body),
                b'E' => {
                    if let Some(i) = self.on_execute(body) {
                        return (pos, Stop::Intercept(len, Box::new(i)));
                    }
                    self.passed();
                }
                b'C' => self.on_close(body),
                b'X' => return (pos, Stop::Terminate(len)),
                _ => {}
            }
            self.tags.push(tag);
            pos += len;
        }
    }

    fn on_query(&self, body: &[u8]) -> Option<Intercepted> {
        // The pre-filter on the raw bytes first, so most statements are
        // never decoded: it matches ASCII names bounded by non-identifier
        // bytes, and decoding only swaps invalid non-ASCII bytes for other
        // non-ASCII ones, so the raw text passes exactly when the decoded
        // one would (the classifier filters the decoded text again).
        if self.snapshot.is_empty() || !self.snapshot.may_mention(body) {
            return None;
        }
        let (sql, _) = lossy_cstr(body)?;
        let classification = self.env.classifier.writes_synced(&sql, &self.snapshot)?;
        Some(Intercepted {
            protocol: Protocol::Simple,
            invalid_utf8: lossy(&sql),
            sql: sql.into_owned(),
            classification,
            statement_name: None,
            param_types: Vec::new(),
            bind: None,
            max_rows: 0,
            portal_id: 0,
        })
    }

    /// Records a Parse of a statement that writes a synced table. Returns
    /// the Parse to send instead when the server must not see all of the
    /// text: an INSERT's `ON CONFLICT` clause, which write-through turns
    /// into the API's upsert (or refuses) at Execute, and which the server
    /// would reject at Parse (no unique index on the conflict column).
    fn on_parse(&mut self, body: &[u8]) -> Option<BytesMut> {
        if self.snapshot.is_empty() && self.statements.is_empty() {
            return None;
        }
        let (name, rest) = lossy_cstr(body)?;
        let (sql, _) = lossy_cstr(rest)?;
        match self.env.classifier.writes_synced(&sql, &self.snapshot) {
            Some(classification) => {
                let param_types = Parse::decode_body(body)
                    .map(|p| p.param_types)
                    .unwrap_or_default();
                let without_conflict = classification
                    .statements
                    .first()
                    .and_then(|s| s.shape.on_conflict.as_ref().map(|c| (s, c)))
                    .filter(|_| !lossy(&sql))
                    .map(|(s, c)| {
                        let mut text = s.sql.clone();
                        text.replace_range(c.start..c.end, "");
                        let mut buf = BytesMut::new();
                        Parse {
                            name: name.to_string(),
                            sql: text,
                            param_types: param_types.clone(),
                        }
                        .encode(&mut buf);
                        buf
                    });
                self.statements.insert(
                    name.to_string(),
                    Arc::new(Prepared {
                        name: name.into_owned(),
                        invalid_utf8: lossy(&sql),
                        sql: sql.into_owned(),
                        param_types,
                        classification,
                    }),
                );
                without_conflict
            }
            None => {
                if !self.statements.is_empty() {
                    self.statements.remove(name.as_ref());
                }
                None
            }
        }
    }

    fn on_bind(&mut self, body: &[u8]) {
        if self.statements.is_empty() {
            if !self.portals.is_empty()
                && let Ok((portal, _)) = Bind::portal_and_statement(body)
            {
                self.portals.remove(portal);
            }
            return;
        }
        let Ok((portal, statement)) = Bind::portal_and_statement(body) else {
            return;
        };
        match self.statements.get(statement) {
            Some(prepared) => {
                if let Ok(bind) = Bind::decode_body(body) {
                    let bound = Arc::new(BoundPortal {
                        prepared: prepared.clone(),
                        bind,
                        id: PORTAL_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    });
                    self.portals.insert(portal.to_owned(), bound);
                }
            }
            None => {
                self.portals.remove(portal);
            }
        }
    }

    fn on_execute(&self, body: &[u8]) -> Option<Intercepted> {
        if self.portals.is_empty() {
            return None;
        }
        let execute = Execute::decode_body(body).ok()?;
        let bound = self.portals.get(&execute.portal)?;
        Some(Intercepted {
            protocol: Protocol::Extended,
            sql: bound.prepared.sql.clone(),
            invalid_utf8: bound.prepared.invalid_utf8,
            classification: bound.prepared.classification.clone(),
            statement_name: Some(bound.prepared.name.clone()),
            param_types: bound.prepared.param_types.clone(),
            bind: Some(bound.bind.clone()),
            max_rows: execute.max_rows,
            portal_id: bound.id,
        })
    }

    fn on_close(&mut self, body: &[u8]) {
        if self.statements.is_empty() && self.portals.is_empty() {
            return;
        }
        if let Ok((target, name)) = Close::target_and_name(body) {
            match target {
                Target::Statement => {
                    self.statements.remove(name);
                }
                Target::Portal => {
                    self.portals.remove(name);
                }
            }
        }
    }
}

/// The server's read side and the client's write side, owned by the
/// server-to-client direction and lent out for interception.
struct ServerSide {
    server_read: ServerRead,
    buf: BytesMut,
    client_write: ClientWrite,
    /// An interceptor's answer held back because the client's Sync follows
    /// at once: it goes to the client with the server's ReadyForQuery, in
    /// one write (the client wakes up once, not twice).
    held: BytesMut,
}

type Handover = (ServerSide, oneshot::Sender<ServerSide>);

/// Requests from the client-to-server direction.
enum Control {
    /// Lend the server side once the server owes no replies (`false`), or
    /// at the next message boundary (`true`: the borrower reads the owed
    /// replies itself).
    Handover(oneshot::Sender<Handover>, bool),
    /// Send this FATAL error to the client at the next message boundary and
    /// end the session.
    Fatal(BytesMut),
}

struct ClientToServer<'a> {
    env: &'a SessionEnv,
    state: &'a Mutex<ProtocolState>,
    ctl: mpsc::Sender<Control>,
    info: &'a SessionInfo,
    client_read: ClientRead,
    buf: BytesMut,
    server_write: ServerWrite,
    track: Tracker<'a>,
    /// The interceptor's statements prepared on this session's server
    /// connection (see `InterceptContext`).
    injected: crate::interceptor::Prepared,
    /// The interceptor's own state for this session
    /// (`InterceptContext::local`).
    local: Option<Box<dyn std::any::Any + Send>>,
    /// Portals the interceptor answered, for their later Executes.
    portals: crate::reply::Portals,
}

impl ClientToServer<'_> {
    async fn run(&mut self) -> Result<SessionEnd, SessionError> {
        loop {
            let (forward, stop) = self.track.scan(&self.buf);
            if !self.track.tags.is_empty() {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for t in self.track.tags.drain(..) {
                    st.client_sent(t);
                }
            }
            // Messages ahead of an intercepted statement (its Bind, say)
            // go out with the interceptor's first write, not on their own.
            let prefix = if forward > 0 && matches!(stop, Stop::Intercept(..)) {
                self.buf.split_to(forward)
            } else {
                if forward > 0 {
                    write_server(&mut self.server_write, &self.buf[..forward])
                        .await
                        .map_err(SessionError::Server)?;
                    self.buf.advance(forward);
                }
                BytesMut::new()
            };
            match stop {
                Stop::NeedMore => {
                    if let Ok(Some((_, len))) =
                        codec::peek_header(&self.buf, self.env.max_message_len)
                        && self.track.skip == 0
                        && len > self.buf.len()
                    {
                        self.buf.reserve(len - self.buf.len());
                    }
                    if self.buf.capacity() - self.buf.len() < 4096 {
                        self.buf.reserve(self.env.buffer_size);
                    }
                    let n = self
                        .client_read
                        .read_buf(&mut self.buf)
                        .await
                        .map_err(SessionError::Client)?;
                    if n == 0 {
                        return Ok(SessionEnd::ClientGone);
                    }
                }
                Stop::Drop(len) => self.buf.advance(len),
                Stop::Replace(len, msg) => {
                    self.buf.advance(len);
                    self.forward_message(BytesMut::new(), &msg).await?;
                }
                Stop::Terminate(len) => {
                    let _ = write_server(&mut self.server_write, &self.buf[..len]).await;
                    return Ok(SessionEnd::Terminated);
                }
                Stop::Intercept(len, what) => {
                    let msg = self.buf.split_to(len);
                    self.intercept(prefix, msg, *what).await?;
                }
                Stop::Violation(e) => {
                    let err = fatal("08P01", format!("invalid frontend message: {e}"));
                    tracing::warn!(peer = ?self.info.peer, error = %e, "client sent an invalid message");
                    if self.ctl.send(Control::Fatal(err)).await.is_ok() {
                        // The other direction sends the error and ends the
                        // session.
                        std::future::pending::<()>().await;
                    }
                    return Err(SessionError::ClientProtocol(e));
                }
            }
        }
    }

    /// Forwards one client message, after `unsent` (messages ahead of it
    /// already recorded in the protocol state), in one write.
    async fn forward_message(
        &mut self,
        mut unsent: BytesMut,
        msg: &[u8],
    ) -> Result<(), SessionError> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .client_sent(msg[0]);
        let out: &[u8] = if unsent.is_empty() {
            msg
        } else {
            unsent.extend_from_slice(msg);
            &unsent
        };
        write_server(&mut self.server_write, out)
            .await
            .map_err(SessionError::Server)
    }

    async fn intercept(
        &mut self,
        mut prefix: BytesMut,
        msg: BytesMut,
        what: Intercepted,
    ) -> Result<(), SessionError> {
        // Replies the server owes for earlier messages of the client's
        // pipeline that come back at once (Parse, Bind, Describe, Close: a
        // prepared statement's Bind, typically) are read by the
        // interceptor's first round trip, in front of its own: no round trip
        // of their own. Anything else owed (an earlier Execute, a Sync) is
        // waited for first.
        let early = what.protocol == Protocol::Extended && {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            !st.is_discarding()
                && !st.is_idle()
                && st.pending().all(|p| {
                    matches!(
                        p,
                        Pending::Parse | Pending::Bind | Pending::Describe | Pending::Close
                    )
                })
        };
        if !early {
            if what.protocol == Protocol::Extended {
                // Make the server send what it owes for earlier messages of
                // the pipeline without ending it.
                prefix.extend_from_slice(&codec::Flush.to_bytes());
            }
            if !prefix.is_empty() {
                write_server(&mut self.server_write, &prefix)
                    .await
                    .map_err(SessionError::Server)?;
                prefix.clear();
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Control::Handover(tx, early)).await.is_err() {
            return Ok(());
        }
        let Ok((mut side, back)) = rx.await else {
            return Ok(());
        };
        let (discarding, status) = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (st.is_discarding(), st.transaction_status())
        };
        if discarding {
            // The server skips this Execute anyway (an earlier message of the
            // pipeline failed): nothing to intercept.
            let _ = back.send(side);
            self.track.passed();
            return self.forward_message(prefix, &msg).await;
        }
        let result = self
            .run_interceptor(&mut side, prefix, &msg, &what, status)
            .await;
        let _ = back.send(side);
        result
    }

    async fn run_interceptor(
        &mut self,
        side: &mut ServerSide,
        prefix: BytesMut,
        msg: &[u8],
        what: &Intercepted,
        status: u8,
    ) -> Result<(), SessionError> {
        if std::mem::take(&mut self.track.deallocated) {
            self.injected.forget();
        }
        let mut ctx = InterceptContext {
            statement: what,
            session: self.info,
            transaction_status: status,
            server_read: &mut side.server_read,
            server_buf: &mut side.buf,
            server_write: &mut self.server_write,
            client_write: &mut side.client_write,
            server_failed: false,
            max_message_len: codec::MAX_MESSAGE_LEN,
            prepared: &mut self.injected,
            local: &mut self.local,
            owed: (!self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_idle())
            .then_some(self.state),
            early: BytesMut::new(),
            client_failed: false,
            unsent: prefix,
            // The proxy syncs after answering a simple Query itself.
            sync_follows: what.protocol == Protocol::Simple || sync_next(&self.buf),
            ready: None,
        };
        // A later Execute of a portal already answered: the write happened
        // at the first one (in a failed transaction the server answers).
        let replay = (what.protocol == Protocol::Extended && status != b'E')
            .then(|| self.portals.replay(what.portal_id))
            .flatten();
        let outcome = match replay {
            Some(reply) => Ok(Outcome::Respond(vec![reply])),
            None => self.env.interceptor.intercept(&mut ctx).await,
        };
        if ctx.client_failed {
            // An earlier message of the client's pipeline failed: the server
            // skipped the interceptor's statements and skips this Execute
            // too, as it would have without the proxy. The client gets the
            // error, and the Execute goes on so the protocol state stays
            // exact.
            let early = std::mem::take(&mut ctx.early);
            write_client(ctx.client_write, &early).await?;
            let unsent = std::mem::take(&mut ctx.unsent);
            self.track.passed();
            return self.forward_message(unsent, msg).await;
        }
        let outcome = outcome.map_err(SessionError::Intercept)?;
        let handled = match &outcome {
            Outcome::PassThrough => &self.env.stats.statements_passed,
            Outcome::Respond(_) => &self.env.stats.statements_intercepted,
        };
        handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Outcome::PassThrough => {
                if ctx.ready.is_some() {
                    return Err(SessionError::Intercept(InjectError::NotAllowed(
                        "passing a statement through after the Sync was sent",
                    )));
                }
                if what.protocol == Protocol::Simple && ctx.server_failed {
                    ctx.sync().await.map_err(SessionError::Intercept)?;
                }
                // Replies to the client's earlier messages the interceptor
                // read go first; any still owed come through the other
                // direction as usual.
                let early = std::mem::take(&mut ctx.early);
                write_client(ctx.client_write, &early).await?;
                let unsent = std::mem::take(&mut ctx.unsent);
                self.forward_message(unsent, msg).await
            }
            Outcome::Respond(replies) => {
                let mut out = std::mem::take(&mut ctx.early);
                ctx.drain_owed_into(&mut out)
                    .await
                    .map_err(SessionError::Intercept)?;
                let has_error = crate::reply::render(replies, what, &mut self.portals, &mut out);
                if what.protocol == Protocol::Simple {
                    // The server's own ReadyForQuery ends the exchange, so
                    // the transaction status the client sees is the truth
                    // (already read when the Sync went with the last round
                    // trip).
                    let status = ctx.sync().await.map_err(SessionError::Intercept)?;
                    codec::ReadyForQuery { status }.encode(&mut out);
                } else if let Some(ready) = ctx.ready.take() {
                    // The interceptor sent the client's Sync
                    // (`pipeline_to_sync`): the server's ReadyForQuery goes
                    // after the answer, and the Sync is consumed here.
                    out.extend_from_slice(&ready);
                    self.buf.advance(SYNC.len());
                    self.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .server_sent(b'Z', Some(ctx.transaction_status));
                } else {
                    if has_error {
                        self.track.skip_until_sync = true;
                    }
                    // The client's Sync is next: the server's ReadyForQuery
                    // for it will carry this answer along.
                    if sync_next(&self.buf) {
                        side.held = out;
                        return Ok(());
                    }
                }
                write_client(ctx.client_write, &out).await
            }
        }
    }
}

/// The client's next message (at the start of its buffer), already
/// received whole, is a Sync.
fn sync_next(client_buf: &[u8]) -> bool {
    client_buf.starts_with(&SYNC)
}

/// A Sync message, as the client sends it.
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// Writes `bytes` to the client and flushes (nothing when empty).
async fn write_client(client: &mut ClientWrite, bytes: &[u8]) -> Result<(), SessionError> {
    if bytes.is_empty() {
        return Ok(());
    }
    client
        .write_all(bytes)
        .await
        .map_err(SessionError::Client)?;
    client.flush().await.map_err(SessionError::Client)
}

struct ServerToClient<'a> {
    io: Option<ServerSide>,
    state: &'a Mutex<ProtocolState>,
    ctl: mpsc::Receiver<Control>,
    buffer_size: usize,
}

impl ServerToClient<'_> {
    async fn run(mut self) -> Result<SessionEnd, SessionError> {
        let mut skip = 0usize;
        let mut handover: Option<(oneshot::Sender<Handover>, bool)> = None;
        let mut fatal_to_send: Option<BytesMut> = None;
        let mut last_tag = 0u8;
        loop {
            let mut io = self
                .io
                .take()
                .expect("server side is home between iterations");
            if skip == 0 {
                if let Some(f) = fatal_to_send.take() {
                    let _ = io.client_write.write_all(&io.held).await;
                    let _ = io.client_write.write_all(&f).await;
                    let _ = io.client_write.flush().await;
                    return Ok(SessionEnd::ProtocolViolation);
                }
                let idle = self
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_idle();
                if let Some((tx, _)) = handover.take_if(|(_, now)| idle || *now) {
                    let (back_tx, back_rx) = oneshot::channel();
                    match tx.send((io, back_tx)) {
                        Ok(()) => match back_rx.await {
                            Ok(side) => {
                                self.io = Some(side);
                                continue;
                            }
                            // The interceptor failed; the other direction
                            // ends the session.
                            Err(_) => return std::future::pending().await,
                        },
                        Err((side, _)) => {
                            self.io = Some(side);
                            continue;
                        }
                    }
                }
            }
            if io.buf.capacity() - io.buf.len() < 4096 {
                io.buf.reserve(self.buffer_size);
            }
            let event = tokio::select! {
                biased;
                c = self.ctl.recv() => Err(c),
                r = io.server_read.read_buf(&mut io.buf) => Ok(r),
            };
            match event {
                Err(Some(Control::Handover(tx, now))) => handover = Some((tx, now)),
                Err(Some(Control::Fatal(f))) => fatal_to_send = Some(f),
                Err(None) => return std::future::pending().await,
                Ok(read) => {
                    let n = read.map_err(SessionError::Server)?;
                    if n == 0 {
                        let _ = io.client_write.write_all(&io.held).await;
                        if skip == 0 && last_tag != b'E' {
                            let _ = io
                                .client_write
                                .write_all(&fatal(
                                    "08006",
                                    "the database server closed the connection unexpectedly",
                                ))
                                .await;
                            let _ = io.client_write.flush().await;
                        }
                        return Ok(SessionEnd::ServerGone);
                    }
                    let mut pos = 0;
                    {
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        let buf = &io.buf[..];
                        loop {
                            if skip > 0 {
                                let n = skip.min(buf.len() - pos);
                                pos += n;
                                skip -= n;
                                if skip > 0 {
                                    break;
                                }
                                continue;
                            }
                            match codec::peek_header(&buf[pos..], codec::MAX_MESSAGE_LEN) {
                                Ok(Some((tag, len))) => {
                                    let status = if tag == b'Z' {
                                        match buf.get(pos + codec::HEADER_LEN) {
                                            Some(s) => Some(*s),
                                            None => break,
                                        }
                                    } else {
                                        None
                                    };
                                    st.server_sent(tag, status);
                                    last_tag = tag;
                                    skip = len;
                                }
                                Ok(None) => break,
                                Err(e) => return Err(SessionError::ServerProtocol(e)),
                            }
                        }
                    }
                    if pos > 0 {
                        let out: &[u8] = if io.held.is_empty() {
                            &io.buf[..pos]
                        } else {
                            io.held.extend_from_slice(&io.buf[..pos]);
                            &io.held
                        };
                        io.client_write
                            .write_all(out)
                            .await
                            .map_err(SessionError::Client)?;
                        io.held.clear();
                        io.client_write
                            .flush()
                            .await
                            .map_err(SessionError::Client)?;
                        io.buf.advance(pos);
                    }
                }
            }
            self.io = Some(io);
        }
    }
}

/// Whether a Query or Parse body drops prepared statements (DISCARD ALL,
/// DEALLOCATE): a cheap scan first, the real grammar only on a match.
fn mentions_deallocation(body: &[u8]) -> bool {
    // One pass for both words (every Query and Parse crosses this).
    static WORDS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(["discard", "deallocate"])
            .expect("two short words build an automaton")
    });
    if !WORDS.is_match(body) {
        return false;
    }
    // A Parse body starts with the statement name; the text follows it.
    let text = body
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find(|t| {
            let l = t.to_ascii_lowercase();
            l.contains("discard") || l.contains("deallocate")
        });
    let Some(text) = text else { return false };
    let Ok(parsed) = pg_query::parse(&text) else {
        return false;
    };
    parsed.protobuf.stmts.iter().any(|s| {
        matches!(
            s.stmt.as_ref().and_then(|n| n.node.as_ref()),
            Some(pg_query::NodeEnum::DeallocateStmt(_)) | Some(pg_query::NodeEnum::DiscardStmt(_))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocation_is_found_in_queries_and_parses_in_any_case() {
        assert!(mentions_deallocation(b"DISCARD ALL\0"));
        assert!(mentions_deallocation(b"deallocate prepare s1\0"));
        // A Parse body: the statement name, then the text.
        assert!(mentions_deallocation(b"s2\0DeAlLoCaTe ALL\0\0\0"));
        // The words elsewhere than in such a statement.
        assert!(!mentions_deallocation(b"select 'discard all'\0"));
        assert!(!mentions_deallocation(b"select * from discarded\0"));
        assert!(!mentions_deallocation(
            b"select abalance from pgbench_accounts\0"
        ));
    }
}
