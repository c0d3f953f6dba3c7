//! agent-vault: the embedded per-agent secret store.
//!
//! # Bird's eye view
//!
//! One process, one SQLite file, one master key. Agents own secrets (write-only) and plain
//! variables; project-wide variables are shared by every agent. Launchers read exactly the
//! values their token is scoped to at run time and long-poll a *revision* number (never the
//! values) to learn about rotations within milliseconds.
//!
//! Data flow: `api` (HTTP, extractors, JSON errors) → `tokens` (who is calling) → `service`
//! (the rules: scopes, versions, rotation, revisions) → `db` (ciphertext only) and `crypto`
//! (AES-256-GCM envelope). `service` writes `audit` records. Arrows point one way: `db` knows
//! nothing of HTTP, `api` never touches SQL or keys.
//!
//! # Code map
//! - `model`: serde request/response types shared by server, CLI client and the launcher.
//! - `api`: axum router and the single `ApiError -> IntoResponse`.
//! - `tokens`: token format, hashing, scopes, constant-time verification.
//! - `service`: the rules; the only caller of `db` and `crypto`.
//! - `db`: schema, migrations, every SQL statement; all calls run on `spawn_blocking`.
//! - `crypto`: master key loading, envelope encryption with agent/key/version as AAD.
//! - `audit`: audit record shape and its batched writer for run-time reads.
//! - `client`: blocking HTTP client used by the admin CLI.
//!
//! # Invariants
//! - `db` never sees a plaintext value; `crypto` never sees SQL.
//! - The only response that carries values is the run-time read (`model::RuntimeSecret`).
//! - Long-poll waiters hold no database connection or lock while they wait.
//! - `run` never binds a port nor installs signal handlers (mini-redis `server::run` style).

pub mod api;
pub mod audit;
pub mod client;
pub mod crypto;
pub mod db;
pub mod model;
pub mod service;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, trace, warn};

pub use service::{Vault, VaultConfig};

/// Everything that can go wrong inside the store. Variants carry names (agent, key, path,
/// token id), never a value or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid {what} name {name:?}: {rule}")]
    InvalidName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("invalid value for {key}: {reason}")]
    InvalidValue { key: String, reason: &'static str },
    #[error("value for {key} is {len} bytes, the limit is {max}")]
    ValueTooLarge { key: String, len: usize, max: usize },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: &'static str },
    #[error("{0} not found")]
    NotFound(String),
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// The request is valid but would leave the store in a state it must not be in.
    #[error("{0}")]
    Conflict(String),
    #[error("too many long-poll waiters; retry later")]
    TooManyWaiters,
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot decrypt {owner}/{key} version {version}: wrong master key or tampered row")]
    Decrypt {
        owner: String,
        key: String,
        version: i64,
    },
    #[error("encryption failed")]
    Encrypt,
    #[error("master key {source_name}: {reason}")]
    MasterKey { source_name: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Upper bound on concurrently open connections. Each connection is a task plus buffers; the
/// bound keeps a flood of clients from exhausting memory or file descriptors. It must stay
/// above the waiter bound so that a full house of long-pollers still leaves room for admins.
const MAX_CONNECTIONS: usize = 12_000;

/// How long graceful shutdown waits for in-flight requests before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client has this long to send its request headers (slowloris guard) and to finish a TLS
/// handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the store on an already bound `listener` until `shutdown` completes.
///
/// With `tls` every connection is a rustls session; without it the caller has already decided
/// plain HTTP is acceptable (loopback or explicitly allowed). On shutdown the accept loop
/// stops, long-poll waiters answer 503 at once, in-flight requests get [`SHUTDOWN_GRACE`] to
/// finish, and queued audit records are flushed before this returns.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    vault: Vault,
    shutdown: impl Future,
) -> Result<()> {
    let router = api::router(vault.clone());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Every connection task holds a clone of `done_tx`; when the last one is dropped,
    // `done_rx.recv()` returns None and we know all connections finished (mini-redis).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let done = done_tx.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _done = done;
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, remote, router, stop).await
                        }
                        Ok(Err(err)) => {
                            debug!(remote = %remote, error = %err, "TLS handshake failed")
                        }
                        Err(_) => debug!(remote = %remote, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, remote, router, stop).await,
            }
        });
    }

    info!("shutting down");
    vault.begin_shutdown();
    let _ = stop_tx.send(true);
    drop(done_tx);
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        warn!("connections still open after the shutdown grace period; closing them");
    }
    vault.flush_audit().await;
    Ok(())
}

/// One HTTP/1.1 connection: keep-alive, header timeout, graceful close on shutdown.
async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        trace!(remote = %remote, method = %req.method(), path = req.uri().path(), "request");
        req.extensions_mut().insert(api::RemoteAddr(remote));
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(err) = res {
                debug!(remote = %remote, error = %err, "connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
