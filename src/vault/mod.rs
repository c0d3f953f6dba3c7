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
//! The code map (`api`, `tokens`, `service/`, `db`, `crypto`, `audit`, `error`, `cmd/`) is
//! in ARCHITECTURE.md, the one copy. The wire types and the HTTP client are not here but in
//! `protocol`, which the launcher shares; `vault` imports neither the launcher nor its
//! sources; `cmd::secrets` reads an import file with the shared `dotenv` reader.
//!
//! # Invariants
//! - `db` never sees a plaintext value; `crypto` never sees SQL.
//! - The only responses that carry values are the run-time reads (`protocol::wire::RuntimeSecret`,
//!   and `RuntimeEntry` for one key).
//! - Long-poll waiters hold no database connection or lock while they wait.
//! - `run` never binds a port nor installs signal handlers (mini-redis `server::run` style).

pub mod api;
pub mod audit;
pub mod cmd;
pub mod crypto;
pub mod db;
pub mod error;
pub mod metrics;
pub mod portal;
pub mod probes;
pub mod service;
pub mod tokens;
pub mod transit;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, trace, warn};

pub use error::{Error, Result};
pub use service::{Vault, VaultConfig};

/// Default bound on concurrently open connections. Each connection is a task plus buffers; the
/// bound keeps a flood of clients from exhausting memory or file descriptors. It must stay
/// above the waiter bound so that a full house of long-pollers still leaves room for admins.
pub const DEFAULT_MAX_CONNECTIONS: usize = 12_000;

/// Connection limits of [`run_with`].
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections past their admission at once (a long-poll waiter holds one).
    pub max_connections: usize,
    /// Connections from one address allowed to be sending their first request head (TLS
    /// handshake included) at once; more from that address wait in its queue. A slowloris
    /// from one address holds at most this many reading slots, while a fleet of launchers
    /// behind one NAT address is not limited once each has sent its request.
    pub head_per_peer: usize,
    /// The same bound over all addresses.
    pub head_total: usize,
    /// Connections from one address waiting for a head slot; beyond it (and beyond
    /// `queue_total` over all addresses) a new connection is closed at once. Queued
    /// connections hold a socket, no connection slot, for at most the head timeout.
    pub queue_per_peer: usize,
    pub queue_total: usize,
}

impl ServeLimits {
    /// Bounds derived from `max_connections`: a quarter of it per address (at most 128)
    /// and half of it in total (at most 1024) may read heads, so a slowloris leaves most
    /// slots free; queues hold a burst of thousands from one address (a fleet restarting).
    pub fn new(max_connections: usize) -> ServeLimits {
        let max_connections = max_connections.max(8);
        ServeLimits {
            max_connections,
            head_per_peer: (max_connections / 4).min(128),
            head_total: (max_connections / 2).min(1024),
            queue_per_peer: 4096,
            queue_total: 16_384,
        }
    }
}

/// Admission to the head-reading phase: a FIFO slot per address (fair among that address's
/// connections) and one over all addresses, with bounded queues in front of them.
struct HeadGate {
    limits: ServeLimits,
    total: Arc<Semaphore>,
    /// Per address: its slots and how many of its connections are queued or reading a
    /// head; plus that count over all addresses. A std mutex: short map operations, never
    /// held across an `.await`.
    state: Mutex<(PeerSlots, usize)>,
}

/// Per address: its head slots and how many of its connections are queued or reading.
type PeerSlots = HashMap<IpAddr, (Arc<Semaphore>, usize)>;

/// A connection's place in its address's queue or head phase; counted until dropped.
struct HeadTicket {
    gate: Arc<HeadGate>,
    ip: IpAddr,
    slots: Arc<Semaphore>,
}

/// Held while a connection reads its first request head; dropped once it is parsed.
struct HeadGuard {
    _ticket: HeadTicket,
    _peer: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl HeadGate {
    fn new(limits: ServeLimits) -> Arc<HeadGate> {
        Arc::new(HeadGate {
            limits,
            total: Arc::new(Semaphore::new(limits.head_total)),
            state: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// A ticket, or `None` when this address's queue (or everyone's) is full.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<HeadTicket> {
        let limits = &self.limits;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (peers, all) = &mut *state;
        if *all >= limits.head_total + limits.queue_total {
            return None;
        }
        let (slots, users) = peers
            .entry(ip)
            .or_insert_with(|| (Arc::new(Semaphore::new(limits.head_per_peer)), 0));
        if *users >= limits.head_per_peer + limits.queue_per_peer {
            return None;
        }
        *users += 1;
        *all += 1;
        Some(HeadTicket {
            gate: self.clone(),
            ip,
            slots: slots.clone(),
        })
    }
}

impl HeadTicket {
    /// Waits (in FIFO order) for a head slot of this address and one overall, at most
    /// `HEADER_TIMEOUT`.
    async fn admit(self) -> Option<HeadGuard> {
        let (slots, total) = (self.slots.clone(), self.gate.total.clone());
        let permits = tokio::time::timeout(HEADER_TIMEOUT, async move {
            let peer = slots.acquire_owned().await.ok()?;
            let total = total.acquire_owned().await.ok()?;
            Some((peer, total))
        })
        .await
        .ok()
        .flatten()?;
        Some(HeadGuard {
            _ticket: self,
            _peer: permits.0,
            _total: permits.1,
        })
    }
}

impl Drop for HeadTicket {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|p| p.into_inner());
        let (peers, all) = &mut *state;
        *all -= 1;
        if let Some((_, users)) = peers.get_mut(&self.ip) {
            *users -= 1;
            if *users == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}

/// How long graceful shutdown waits for in-flight requests before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client has this long to send each request head (slowloris guard; hyper's timer also
/// closes a keep-alive connection idle this long) and to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    let limits = ServeLimits::new(DEFAULT_MAX_CONNECTIONS);
    run_with(listener, tls, vault, limits, shutdown).await
}

/// [`run`] with explicit connection limits.
pub async fn run_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    vault: Vault,
    limits: ServeLimits,
    shutdown: impl Future,
) -> Result<()> {
    let router = portal::install(api::router(vault.clone()), tls.is_some());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    let heads = HeadGate::new(limits);
    // Every connection task holds a clone of `done_tx`; when the last one is dropped,
    // `done_rx.recv()` returns None and we know all connections finished (mini-redis).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);

    tokio::pin!(shutdown);
    loop {
        // Accepting is not gated by the connection bound: a connection first waits for a
        // head slot of its address (holding a socket only), then takes a connection slot.
        // A slowloris thus holds at most `head_per_peer` slots, never all of them.
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
        let Some(ticket) = heads.enter(remote.ip()) else {
            debug!(remote = %remote, "too many connections waiting to send a request; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let done = done_tx.clone();
        let stop = stop_rx.clone();
        let limit = limit.clone();
        tokio::spawn(async move {
            let _done = done;
            let Some(head) = ticket.admit().await else {
                debug!(remote = %remote, "no head slot within the header timeout; closing");
                return;
            };
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            let head = Arc::new(Mutex::new(Some(head)));
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, remote, router, head, stop).await
                        }
                        Ok(Err(err)) => {
                            debug!(remote = %remote, error = %err, "TLS handshake failed")
                        }
                        Err(_) => debug!(remote = %remote, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, remote, router, head, stop).await,
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

/// One HTTP/1.1 connection: keep-alive, header timeout, graceful close on shutdown. `head`
/// is released when the first request head has been parsed.
async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    router: axum::Router,
    head: Arc<Mutex<Option<HeadGuard>>>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        // The request head is in: this connection is established, no longer counted.
        drop(head.lock().unwrap_or_else(|p| p.into_inner()).take());
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
