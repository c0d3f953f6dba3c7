//! Secrets from an agent-vault store over HTTP(S), with a scoped token.
//!
//! Two connections with two jobs. `fetch` reads values on a client with **no connection
//! pool**: once the response is parsed the connection and every buffer that saw the body
//! are freed (and wiped by the allocator), instead of idling in a pool with plaintext in
//! its read buffer. The watcher long-polls `/v1/runtime/revision`, which carries revision
//! numbers only, on a connection of its own per poll (`store_poll`), and reports a change
//! once the store has been quiet for a moment. A change is pushed within milliseconds;
//! nothing polls on a timer.
//!
//! The token lives in one [`TokenBuffer`] (page-locked, wiped on drop); each request's
//! header is built from it and dropped with the request. From a file (`--token-file`) it is
//! re-read whenever the file changes (Kubernetes projected tokens rotate that way) and once
//! more on a 401. No proxy comes from the environment; `--proxy` is used off loopback only.
//! Error messages carry the status and the store's error code, never the server's text.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::Response;
use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use tracing::{debug, info, warn};
use zeroize::{Zeroize, Zeroizing};

use super::fallback::{Fallback, Snapshot, StoredEntry};
use super::store_poll;
use super::{ChangeNotifier, Error, Origin, Secret, SecretSet, SecretSource, StartBudget};
use crate::protocol::client::{self as protocol_client, Client, Transport};
use crate::protocol::wire::{
    code as wire_code, Origin as WireOrigin, RevisionResponse, RuntimeSecrets,
};
use crate::secret_file;

/// How long one long-poll waits for a change before the store answers "not modified".
const LONG_POLL: Duration = Duration::from_secs(55);
/// Reconnect backoff of the watcher: doubles up to the cap, with ±25% jitter so a fleet of
/// launchers does not reconnect in lockstep after a store restart.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_secs(30);
/// One fetch of the values, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet period after a store change before the supervisor is told (see `Shared::settle`):
/// long enough to gather a script's burst of writes, short enough not to be noticed.
pub const STORE_QUIET: Duration = Duration::from_millis(40);
/// A constant stream of changes is acted on at least this often.
pub const STORE_SETTLE_CAP: Duration = Duration::from_millis(500);

/// Where the token comes from.
pub enum TokenSource {
    /// `AGENT_RUN_TOKEN`, read once and scrubbed from agent-run's own environment.
    Value(SecretString),
    /// `--token-file`, re-read when it changes.
    File(PathBuf),
}

/// The one copy of the token agent-run keeps: sized once, page-locked when RLIMIT_MEMLOCK
/// allows (kept out of swap), wiped and unlocked on drop. Every request's header is built
/// from it and dropped after the request. The token starts on a page boundary and the
/// allocation runs past its last page, as `EnvBlock` does, so the pages it locks and
/// unlocks hold nothing else (mlock does not count: unlocking a shared page would unlock
/// another buffer's too).
struct TokenBuffer {
    buf: Vec<u8>,
    start: usize,
    len: usize,
    locked: bool,
}

impl TokenBuffer {
    /// Copies `text` in; the caller wipes its own copy.
    fn new(text: &str) -> TokenBuffer {
        let page = crate::sys::page_size();
        let len = text.len();
        let mut buf: Vec<u8> = Vec::with_capacity(len + 2 * page);
        let start = buf.as_ptr().align_offset(page).min(page);
        buf.resize(start, 0);
        buf.extend_from_slice(text.as_bytes());
        let locked = len > 0 && crate::sys::lock_pages(&buf[start..]);
        TokenBuffer {
            buf,
            start,
            len,
            locked,
        }
    }

    fn as_str(&self) -> &str {
        // Copied from a &str in `new` and never changed.
        std::str::from_utf8(&self.buf[self.start..]).expect("the token buffer holds UTF-8")
    }
}

impl Drop for TokenBuffer {
    fn drop(&mut self) {
        self.buf.zeroize();
        if self.locked {
            crate::sys::unlock_pages(self.buf.as_ptr() as usize + self.start, self.len);
        }
    }
}

/// The token and, for a file, the file state it was read at.
struct TokenCell {
    /// `--token-file`; `None` for a token taken from the environment.
    file: Option<PathBuf>,
    current: Mutex<Option<(Option<FileStamp>, TokenBuffer)>>,
    /// Counts the tokens read (1 for the first): lets the fallback file be re-sealed once a
    /// new token has worked, even when the revision is the same.
    generation: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl TokenCell {
    fn new(source: TokenSource) -> TokenCell {
        match source {
            TokenSource::Value(token) => TokenCell {
                file: None,
                // `token` (a SecretString) is wiped when it drops at the end of this call.
                current: Mutex::new(Some((None, TokenBuffer::new(token.expose_secret().trim())))),
                generation: AtomicU64::new(1),
            },
            TokenSource::File(path) => TokenCell {
                file: Some(path),
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
            },
        }
    }

    /// Runs `f` with the current token; a token file is read again when it changed since
    /// the last read (or when `reload` asks for it, after a 401). Returns `f`'s result and
    /// the token's generation.
    fn with_token<R>(
        &self,
        reload: bool,
        f: impl FnOnce(&str) -> Result<R, Error>,
    ) -> Result<R, Error> {
        // The lock is only held for short, non-blocking sections (the file is read
        // non-blocking; `f` composes a header or derives a key).
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(path) = &self.file else {
            // Set in `new` for a token from the environment.
            return f(current
                .as_ref()
                .expect("environment token present")
                .1
                .as_str());
        };
        let token_error = |reason: String| Error::Token {
            path: path.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| token_error(e.to_string()))?;
        let stamp = {
            use std::os::unix::fs::MetadataExt;
            FileStamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            }
        };
        if reload
            || current
                .as_ref()
                .is_none_or(|(seen, _)| *seen != Some(stamp))
        {
            // Non-blocking, regular files only: a FIFO here must not hang the launcher.
            let bytes = secret_file::read_credential(path)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| token_error("not UTF-8".into()))?
                .trim();
            if text.is_empty() {
                return Err(token_error("the file is empty".into()));
            }
            let same = current
                .as_ref()
                .is_some_and(|(_, old)| old.as_str() == text);
            if !same {
                if current.is_some() {
                    info!(path = %path.display(), "token file changed; using the new token");
                }
                self.generation.fetch_add(1, Ordering::Relaxed);
            }
            // Replacing drops (wipes, unlocks) the old buffer.
            *current = Some((Some(stamp), TokenBuffer::new(text)));
        }
        // Just stored above when it was missing.
        f(current.as_ref().expect("token read").1.as_str())
    }

    /// Which token is current (see `generation`).
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The `Authorization` header for one request, marked sensitive so no HTTP layer
    /// prints it; composed in a buffer sized once and wiped, dropped with the request.
    fn header(&self, reload: bool) -> Result<HeaderValue, Error> {
        self.with_token(reload, |token| {
            protocol_client::bearer(token).ok_or_else(|| Error::Token {
                path: self
                    .file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("AGENT_RUN_TOKEN")),
                reason: "the token contains characters a header cannot carry".into(),
            })
        })
    }

    fn reloadable(&self) -> bool {
        self.file.is_some()
    }
}

/// Settings of the store source, validated by `config`.
pub struct StoreSettings {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8200`.
    pub url: String,
    /// Which agent to read, when the token can read more than one.
    pub agent: Option<String>,
    pub token: TokenSource,
    pub fallback: Option<PathBuf>,
    /// Extra CA certificate (PEM) for a store with a private certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// `--proxy`: used only when the store is not on loopback.
    pub proxy: Option<reqwest::Url>,
    /// `--start-timeout`: until the first fetch has succeeded, no request may take longer
    /// than what is left of it (a store that accepts and never answers must not hold the
    /// start for a whole request timeout).
    pub start_timeout: Duration,
}

pub struct StoreSource {
    shared: Arc<Shared>,
    fallback: Option<PathBuf>,
    /// Revision of the snapshot last saved to the fallback file.
    saved_revision: Option<u64>,
    stop: Arc<AtomicBool>,
}

/// `Shared::sealed_generation` when no fallback file is kept.
const NO_FALLBACK: u64 = u64::MAX;

/// What the supervisor thread and the watcher thread both use.
struct Shared {
    url: String,
    agent: Option<String>,
    token: TokenCell,
    ca_pem: Option<Vec<u8>>,
    proxy: Option<reqwest::Url>,
    /// The end of `--start-timeout`, until the first fetch has succeeded.
    start: StartBudget,
    /// The token generation the fallback file was last sealed with (`NO_FALLBACK`
    /// without one): when the watcher has used a newer token, it asks for a fetch, which
    /// re-seals the file.
    sealed_generation: AtomicU64,
    /// The revision the child's environment was built from; the watcher waits past it.
    revision: AtomicU64,
    /// The last fetch came from the fallback file: re-fetch as soon as the store answers.
    degraded: AtomicBool,
    /// The client that reads values: built on first use (reqwest's blocking client starts a
    /// thread, which must not exist before the supervisor blocks signals), and without idle
    /// connections, so no connection keeps a response body in its buffers.
    fetch_client: OnceLock<Client>,
}

impl Drop for StoreSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl StoreSource {
    pub fn new(settings: StoreSettings) -> StoreSource {
        StoreSource {
            shared: Arc::new(Shared {
                url: settings.url,
                agent: settings.agent,
                token: TokenCell::new(settings.token),
                ca_pem: settings.ca_pem,
                proxy: settings.proxy,
                start: StartBudget::new(settings.start_timeout),
                sealed_generation: AtomicU64::new(match settings.fallback {
                    Some(_) => 0,
                    None => NO_FALLBACK,
                }),
                revision: AtomicU64::new(0),
                degraded: AtomicBool::new(false),
                fetch_client: OnceLock::new(),
            }),
            fallback: settings.fallback,
            saved_revision: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The fallback file sealed with the current token, and that token's generation.
    fn fallback_file(&self, path: &std::path::Path) -> Result<(Fallback, u64), Error> {
        self.shared.token.with_token(false, |token| {
            Ok((
                Fallback::new(
                    path.to_path_buf(),
                    token,
                    &self.shared.url,
                    self.shared.agent.as_deref(),
                ),
                self.shared.token.generation(),
            ))
        })
    }

    /// Saves the snapshot when its revision differs from the file's; a failure costs only
    /// the fallback, never the fetch.
    fn remember(&mut self, snapshot: &mut Snapshot) {
        let Some(path) = self.fallback.clone() else {
            return;
        };
        let (fallback, generation) = match self.fallback_file(&path) {
            Ok(found) => found,
            Err(e) => return warn!(error = %e, "cannot update the fallback file"),
        };
        // Written again for a new token even at the same revision: the next start, with
        // the new token, could not open a file sealed with the old one.
        let sealed = self.shared.sealed_generation.load(Ordering::Relaxed);
        if self.saved_revision == Some(snapshot.revision) && sealed == generation {
            return;
        }
        match fallback.save(snapshot) {
            Ok(()) => {
                debug!(path = %path.display(), revision = snapshot.revision, "fallback file updated");
                self.saved_revision = Some(snapshot.revision);
                self.shared
                    .sealed_generation
                    .store(generation, Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "cannot update the fallback file"),
        }
    }

    fn to_set(&self, snapshot: Snapshot, label: &str) -> SecretSet {
        let mut set = SecretSet::default();
        set.add_revision(format!(
            "{label} {} revision {}",
            self.shared.url, snapshot.revision
        ));
        set.set_scope(format!("agent {}", snapshot.agent));
        for entry in snapshot.entries {
            let origin = Origin::Store {
                url: self.shared.url.clone(),
                agent: snapshot.agent.clone(),
                kind: entry.kind,
                project: entry.project,
            };
            set.insert(
                entry.name,
                Secret {
                    value: entry.value,
                    origin,
                },
            );
        }
        set
    }
}

impl SecretSource for StoreSource {
    fn describe(&self) -> String {
        match &self.shared.agent {
            Some(agent) => format!("store {} agent {agent}", self.shared.url),
            None => format!("store {}", self.shared.url),
        }
    }

    fn fetch(&mut self) -> Result<SecretSet, Error> {
        let error = match self.shared.fetch() {
            Ok(mut snapshot) => {
                self.shared.started();
                self.shared
                    .revision
                    .store(snapshot.revision, Ordering::Relaxed);
                if self.shared.degraded.swap(false, Ordering::Relaxed) {
                    warn!(url = %self.shared.url, "store reachable again; using its secrets");
                }
                self.remember(&mut snapshot);
                return Ok(self.to_set(snapshot, "store"));
            }
            Err(error) => error,
        };
        // A pending approval is not an outage: the fallback file must not stand in for it.
        let pending = matches!(error, Error::ApprovalPending { .. });
        let Some(path) = self
            .fallback
            .clone()
            .filter(|_| error.is_transient() && !pending)
        else {
            return Err(error);
        };
        match self.fallback_file(&path).and_then(|(f, _)| f.load()) {
            Ok(snapshot) => {
                warn!(error = %error, path = %path.display(), revision = snapshot.revision,
                      "store unreachable; using the last good secrets from the fallback file");
                self.shared.started();
                self.shared
                    .revision
                    .store(snapshot.revision, Ordering::Relaxed);
                self.shared.degraded.store(true, Ordering::Relaxed);
                Ok(self.to_set(snapshot, "fallback of"))
            }
            Err(fallback_error) => {
                warn!(error = %fallback_error, "fallback file unusable");
                // Still the store's error (transient: it may come back), saying why the
                // fallback did not help.
                Err(match error {
                    Error::Unreachable { url, reason } => Error::Unreachable {
                        url,
                        reason: format!("{reason}; and the {fallback_error}"),
                    },
                    other => other,
                })
            }
        }
    }

    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error> {
        let shared = Arc::clone(&self.shared);
        let stop = Arc::clone(&self.stop);
        let label = self.describe();
        std::thread::Builder::new()
            .name("store-watch".into())
            .spawn(move || shared.watch(&label, &notifier, &stop))
            .map_err(|e| Error::Watch {
                path: PathBuf::from(&self.shared.url),
                reason: e.to_string(),
            })?;
        Ok(())
    }
}

impl Shared {
    fn client(&self, pooled: bool, timeout: Duration) -> Result<Client, Error> {
        // No proxy from the environment (it would see the token); --proxy only off loopback.
        let transport = Transport {
            proxy: self.proxy.as_ref(),
            ca_pem: self.ca_pem.as_deref(),
            timeout,
            connect_timeout: Some(Duration::from_secs(3)),
            pooled,
        };
        Client::with_transport(&self.url, &transport).map_err(|e| match e {
            protocol_client::Error::Setup(reason) => self.unreachable(reason),
            protocol_client::Error::Http { source, .. } => self.unreachable(source.to_string()),
            other => self.unreachable(other.to_string()),
        })
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    fn path_and_query(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut pairs: Vec<String> = self.agent.iter().map(|a| format!("agent={a}")).collect();
        pairs.extend(query.iter().map(|(k, v)| format!("{k}={v}")));
        if pairs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", pairs.join("&"))
        }
    }

    /// GET with the token; on a 401 with a token file, re-reads the file and tries once more.
    fn get(&self, client: &Client, path_and_query: &str) -> Result<Response, Error> {
        let mut reload = false;
        loop {
            let response = client
                .get(
                    path_and_query,
                    self.token.header(reload)?,
                    self.start_budget(),
                )
                .map_err(|e| match e {
                    protocol_client::Error::Http { source, .. } => {
                        self.unreachable(without_url(&source))
                    }
                    // Cannot heal: fail now, not after --start-timeout of retries.
                    protocol_client::Error::Tls { problem, .. } => Error::Tls {
                        url: self.url.clone(),
                        reason: problem.to_string(),
                    },
                    other => self.unreachable(other.to_string()),
                })?;
            if response.status() == StatusCode::UNAUTHORIZED && self.token.reloadable() && !reload {
                reload = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn check(&self, response: Response) -> Result<Response, Error> {
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let body = Zeroizing::new(response.bytes().map(|b| b.to_vec()).unwrap_or_default());
        Err(self.status_error(status.as_u16(), &body))
    }

    /// The error for a non-success answer. Only the stable error *code* of the body, never
    /// the server's message: whatever answers may echo the request, and the request
    /// carried the token.
    fn status_error(&self, status: u16, body: &[u8]) -> Error {
        let code = protocol_client::error_code(body).filter(|code| self.is_safe_code(code));
        let not_a_read_token = code.as_deref() == Some(wire_code::NOT_A_READ_TOKEN);
        let agent_required = code.as_deref() == Some(wire_code::AGENT_REQUIRED);
        let approval = protocol_client::approval_id(body).filter(|id| self.is_safe_code(id));
        match (status, code.as_deref(), approval) {
            (403, Some(wire_code::APPROVAL_REQUIRED), Some(id)) => {
                return Error::ApprovalPending {
                    url: self.url.clone(),
                    id,
                }
            }
            (403, Some(wire_code::APPROVAL_DENIED), Some(id)) => {
                return Error::ApprovalDenied {
                    url: self.url.clone(),
                    id,
                }
            }
            _ => {}
        }
        let message = match code {
            Some(code) => format!("error code {code}"),
            None => "no error code".to_owned(),
        };
        match status {
            401 => Error::Unauthorized {
                url: self.url.clone(),
            },
            403 if not_a_read_token => Error::NotAReadToken {
                url: self.url.clone(),
            },
            400 if agent_required => Error::AgentRequired {
                url: self.url.clone(),
            },
            403 => Error::Forbidden {
                url: self.url.clone(),
                what: match &self.agent {
                    Some(agent) => format!("agent {agent}'s secrets ({message})"),
                    None => format!("the requested secrets ({message})"),
                },
            },
            _ => Error::Store {
                url: self.url.clone(),
                status,
                message,
            },
        }
    }

    /// A well-formed error code (see `protocol::client::error_code`) with nothing of the
    /// token in it.
    fn is_safe_code(&self, code: &str) -> bool {
        !self
            .token
            .with_token(false, |t| Ok(t.contains(code)))
            .unwrap_or(true)
    }

    /// What is left of `--start-timeout` while the first fetch has not succeeded.
    fn start_budget(&self) -> Option<Duration> {
        self.start.remaining(FETCH_TIMEOUT)
    }

    /// The first fetch is done (from the store or the fallback).
    fn started(&self) {
        self.start.started();
    }

    fn fetch(&self) -> Result<Snapshot, Error> {
        let client = match self.fetch_client.get() {
            Some(client) => client,
            None => {
                let client = self.client(false, FETCH_TIMEOUT)?;
                self.fetch_client.get_or_init(|| client)
            }
        };
        let response =
            self.check(self.get(client, &self.path_and_query("/v1/runtime/secrets", &[]))?)?;
        let body = Zeroizing::new(
            response
                .bytes()
                .map_err(|e| self.unreachable(without_url(&e)))?
                .to_vec(),
        );
        let parsed: RuntimeSecrets = serde_json::from_slice(&body).map_err(|e| Error::Store {
            url: self.url.clone(),
            status: 200,
            // Only the category and position: serde_json's message can quote the input.
            message: format!(
                "unexpected response ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
        Ok(Snapshot {
            revision: parsed.revision,
            generation: 0,
            agent: parsed.agent,
            entries: parsed
                .secrets
                .into_iter()
                .map(|e| StoredEntry {
                    name: e.name,
                    value: e.value,
                    kind: e.kind,
                    project: e.origin == WireOrigin::Project,
                })
                .collect(),
        })
    }

    /// How the watcher reaches the store: its own connection per long-poll (see
    /// `store_poll`), or reqwest (unpooled) when a `--proxy` is in the way.
    fn watch_transport(&self) -> Result<WatchTransport, Error> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| self.unreachable(e.to_string()))?;
        let proxied = self.proxy.is_some() && !url.host_str().is_some_and(super::is_loopback);
        if proxied {
            return Ok(WatchTransport::Proxied(
                self.client(false, LONG_POLL + Duration::from_secs(15))?,
            ));
        }
        store_poll::Poller::new(&url, self.ca_pem.as_deref())
            .map(WatchTransport::Direct)
            .map_err(|reason| self.unreachable(reason))
    }

    /// One long-poll: `Some(revision)` when the store answered one, `None` for "not
    /// modified". On a 401 with a token file, the file is re-read and the poll repeated once.
    fn poll_revision(
        &self,
        transport: &WatchTransport,
        since: u64,
        wait: Duration,
    ) -> Result<Option<u64>, Error> {
        let query = [
            ("since", since.to_string()),
            ("wait", wait.as_secs().to_string()),
        ];
        let path = self.path_and_query("/v1/runtime/revision", &query);
        let (status, body) = match transport {
            WatchTransport::Proxied(client) => {
                let response = self.get(client, &path)?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .map_err(|e| self.unreachable(without_url(&e)))?;
                (status, Zeroizing::new(body.to_vec()))
            }
            WatchTransport::Direct(poller) => {
                let mut reload = false;
                loop {
                    let request = self
                        .token
                        .with_token(reload, |token| Ok(poller.request(&path, token)))?;
                    let answer = poller
                        .send(request, wait + Duration::from_secs(15))
                        .map_err(|reason| self.unreachable(reason))?;
                    if answer.status == 401 && self.token.reloadable() && !reload {
                        reload = true;
                        continue;
                    }
                    break (answer.status, answer.body);
                }
            }
        };
        match status {
            304 => Ok(None),
            200..=299 => serde_json::from_slice::<RevisionResponse>(&body)
                .map(|a| Some(a.revision))
                .map_err(|_| self.unreachable("unreadable revision answer".into())),
            _ => Err(self.status_error(status, &body)),
        }
    }

    /// After a new revision, waits for the store to be quiet: `STORE_QUIET` without a newer
    /// revision, or `STORE_SETTLE_CAP` after the first, so a steady stream still acts.
    /// Returns the latest revision seen. A burst of single-key writes (an import script,
    /// a rotation tool) then restarts the child once, not once per write.
    fn settle(&self, transport: &WatchTransport, first: u64, stop: &AtomicBool) -> u64 {
        let cap = Instant::now() + STORE_SETTLE_CAP;
        let mut latest = first;
        loop {
            let left = cap.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                return latest;
            }
            std::thread::sleep(STORE_QUIET.min(left));
            match self.poll_revision(transport, latest, Duration::ZERO) {
                Ok(Some(revision)) if revision != latest => latest = revision,
                // Quiet (or the check failed: act on what is known, the long-poll that
                // follows reports any failure).
                _ => return latest,
            }
        }
    }

    /// Long-polls for revisions past the current one until the source is dropped.
    fn watch(&self, label: &str, notifier: &ChangeNotifier, stop: &AtomicBool) {
        let mut backoff = RECONNECT_FIRST;
        let mut reported_failure = false;
        let mut resealing_asked = 0;
        let transport = match self.watch_transport() {
            Ok(transport) => transport,
            Err(e) => return notifier.failed(label, &e),
        };
        while !stop.load(Ordering::Relaxed) {
            let since = self.revision.load(Ordering::Relaxed);
            // After a failure, one poll that answers at once: "store reachable again" is
            // then said when the store is back, not at the next change or long-poll timeout.
            let wait = if reported_failure {
                Duration::ZERO
            } else {
                LONG_POLL
            };
            let answer =
                self.poll_revision(&transport, since, wait)
                    .map(|revision| match revision {
                        Some(revision) if revision != since => {
                            Some(self.settle(&transport, revision, stop))
                        }
                        other => other,
                    });
            match answer {
                Ok(revision) => {
                    backoff = RECONNECT_FIRST;
                    if reported_failure {
                        // At warn, as its "lost the store" twin: an operator who saw one
                        // at the default level sees the other.
                        warn!(source = %label, "store reachable again");
                        reported_failure = false;
                    }
                    // The store's revision is an opaque digest of this token's scope:
                    // compared for equality, never ordered.
                    let newer = revision.is_some_and(|r| r != since);
                    // A new token worked and the fallback file is still sealed with the
                    // old one: one fetch re-seals it (the environment is the same, so the
                    // supervisor restarts nothing).
                    let sealed = self.sealed_generation.load(Ordering::Relaxed);
                    let generation = self.token.generation();
                    let reseal = sealed != NO_FALLBACK
                        && sealed != 0
                        && sealed != generation
                        && resealing_asked != generation;
                    if reseal {
                        debug!(source = %label, "new token in use; re-sealing the fallback file");
                        resealing_asked = generation;
                    }
                    if newer || reseal || self.degraded.load(Ordering::Relaxed) {
                        if let Some(revision) = revision {
                            // Wait past it next time even if the supervisor's fetch is slow.
                            self.revision.store(revision, Ordering::Relaxed);
                        }
                        debug!(source = %label, ?revision, "store reported a change");
                        notifier.revised(label);
                    }
                }
                Err(error) => {
                    if !reported_failure {
                        warn!(source = %label, error = %error, retry_in = ?backoff, "lost the store; the child keeps running, reconnecting");
                        notifier.failed(label, &error);
                        reported_failure = true;
                    }
                    std::thread::sleep(jitter(backoff));
                    backoff = (backoff * 2).min(RECONNECT_CAP);
                }
            }
        }
    }
}

/// The watcher's connection to the store.
enum WatchTransport {
    Direct(store_poll::Poller),
    Proxied(Client),
}

/// What went wrong with a request, without the URL (the error message names it already):
/// the kind of failure and the cause chain (connection refused, TLS, ...).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = String::from(if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_decode() {
        "unreadable response"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// ±25% around `base`, from the kernel's randomness.
fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let factor = 0.75 + f64::from(byte[0]) / 255.0 * 0.5;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_buffer_owns_its_pages() {
        let page = crate::sys::page_size();
        for len in [1, 40, page - 1, page, page + 3] {
            let text = "t".repeat(len);
            let token = TokenBuffer::new(&text);
            assert_eq!(token.as_str(), text);
            let addr = token.as_str().as_ptr() as usize;
            assert_eq!(addr % page, 0, "starts on a page boundary");
            // The allocation covers the whole last page the token touches.
            let last_page_end = (addr + len).div_ceil(page) * page;
            let alloc_end = token.buf.as_ptr() as usize + token.buf.capacity();
            assert!(alloc_end >= last_page_end);
        }
    }

    #[test]
    fn error_codes_carry_nothing_of_the_token() {
        let shared = Shared {
            url: "http://127.0.0.1:1".into(),
            agent: None,
            token: TokenCell::new(TokenSource::Value(SecretString::from(
                "avt_abc_forbidden_x",
            ))),
            ca_pem: None,
            proxy: None,
            start: StartBudget::spent(),
            sealed_generation: AtomicU64::new(NO_FALLBACK),
            revision: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            fetch_client: OnceLock::new(),
        };
        let body = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        let text = |code: &str| shared.status_error(400, body(code).as_bytes()).to_string();
        assert!(text("bad_request").contains("error code bad_request"));
        // Part of the token, not a code word, or the echoed request: dropped.
        for code in ["forbidden", "GET /v1 avt_abc", "avt_abc_forbidden_x"] {
            let t = text(code);
            assert!(t.contains("no error code") && !t.contains("avt_"), "{t}");
        }
        assert!(
            !text("bad_request").contains(" m"),
            "the message is never shown"
        );
        // Issue 14 item 2: a pending or denied approval names its request (hex id only).
        let approval = |code: &str, id: &str| {
            let body =
                format!(r#"{{"error":{{"code":"{code}","message":"m","approval_id":"{id}"}}}}"#);
            shared.status_error(403, body.as_bytes())
        };
        match approval("approval_required", "0a1b2c3d4e5f") {
            Error::ApprovalPending { id, .. } => assert_eq!(id, "0a1b2c3d4e5f"),
            other => panic!("{other}"),
        }
        assert!(approval("approval_required", "0a1b2c3d4e5f").is_transient());
        match approval("approval_denied", "0a1b2c3d4e5f") {
            Error::ApprovalDenied { id, .. } => assert_eq!(id, "0a1b2c3d4e5f"),
            other => panic!("{other}"),
        }
        // Not a hex id (could be an echo of the request): a plain 403, nothing of it shown.
        let t = approval("approval_required", "avt_abc").to_string();
        assert!(!t.contains("avt_") && t.contains("refused access"), "{t}");
    }
}
