//! Secrets from an agent-vault store over HTTP(S), with a scoped token.
//!
//! Two connections with two jobs. `fetch` reads values on a client with **no connection
//! pool**: once the response is parsed the connection and every buffer that saw the body
//! are freed (and wiped by the allocator), instead of idling in a pool with plaintext in
//! its read buffer. The watcher long-polls `/v1/runtime/revision`, which carries revision
//! numbers only, so it may keep its connection. A change is pushed within milliseconds;
//! nothing polls on a timer.
//!
//! The token lives in a `SecretString`. From a file (`--token-file`) it is re-read whenever
//! the file changes (Kubernetes projected tokens rotate that way) and once more on a 401.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::fallback::{Fallback, Snapshot, StoredEntry};
use super::secret_file;
use super::{ChangeNotifier, Error, Origin, Secret, SecretSet, SecretSource};
use crate::vault::model::{ErrorBody, Origin as WireOrigin, RevisionResponse, RuntimeSecrets};

/// How long one long-poll waits for a change before the store answers "not modified".
const LONG_POLL: Duration = Duration::from_secs(55);
/// Reconnect backoff of the watcher: doubles up to the cap, with ±25% jitter so a fleet of
/// launchers does not reconnect in lockstep after a store restart.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_secs(30);

/// Where the token comes from.
pub enum TokenSource {
    /// `AGENT_RUN_TOKEN`, read once and scrubbed from agent-run's own environment.
    Value(SecretString),
    /// `--token-file`, re-read when it changes.
    File(PathBuf),
}

/// The token and, for a file, the file state it was read at.
struct TokenCell {
    source: TokenSource,
    cached: Mutex<Option<(FileStamp, SecretString)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl TokenCell {
    /// Runs `f` with the current token; a token file is read again when it changed since
    /// the last read (or when `reload` asks for it, after a 401).
    fn with_token<R>(
        &self,
        reload: bool,
        f: impl FnOnce(&SecretString) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let path = match &self.source {
            TokenSource::Value(token) => return f(token),
            TokenSource::File(path) => path,
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
        // The lock is only held for this short, non-blocking section.
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reload || cached.as_ref().is_none_or(|(seen, _)| *seen != stamp) {
            // Non-blocking, regular files only: a FIFO here must not hang the launcher.
            let bytes = secret_file::read(path, secret_file::MAX_CREDENTIAL_FILE_BYTES)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| token_error("not UTF-8".into()))?
                .trim();
            if text.is_empty() {
                return Err(token_error("the file is empty".into()));
            }
            if cached.is_some() {
                info!(path = %path.display(), "token file changed; using the new token");
            }
            *cached = Some((stamp, SecretString::from(text.to_owned())));
        }
        // Just stored above when it was missing.
        f(&cached.as_ref().expect("token cached").1)
    }

    /// The `Authorization` header, marked sensitive so no HTTP layer prints it.
    fn header(&self, reload: bool) -> Result<HeaderValue, Error> {
        self.with_token(reload, |token| {
            let text = Zeroizing::new(format!("Bearer {}", token.expose_secret().trim()));
            let mut value = HeaderValue::from_str(&text).map_err(|_| Error::Token {
                path: PathBuf::from("AGENT_RUN_TOKEN"),
                reason: "the token contains characters a header cannot carry".into(),
            })?;
            value.set_sensitive(true);
            Ok(value)
        })
    }

    fn reloadable(&self) -> bool {
        matches!(self.source, TokenSource::File(_))
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
}

pub struct StoreSource {
    shared: Arc<Shared>,
    fallback: Option<PathBuf>,
    /// Revision of the snapshot last saved to the fallback file.
    saved_revision: Option<u64>,
    stop: Arc<AtomicBool>,
}

/// What the supervisor thread and the watcher thread both use.
struct Shared {
    url: String,
    agent: Option<String>,
    token: TokenCell,
    ca_pem: Option<Vec<u8>>,
    proxy: Option<reqwest::Url>,
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
                token: TokenCell {
                    source: settings.token,
                    cached: Mutex::new(None),
                },
                ca_pem: settings.ca_pem,
                proxy: settings.proxy,
                revision: AtomicU64::new(0),
                degraded: AtomicBool::new(false),
                fetch_client: OnceLock::new(),
            }),
            fallback: settings.fallback,
            saved_revision: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn fallback_file(&self, path: &std::path::Path) -> Result<Fallback, Error> {
        self.shared.token.with_token(false, |token| {
            Ok(Fallback::new(
                path.to_path_buf(),
                token,
                &self.shared.url,
                self.shared.agent.as_deref(),
            ))
        })
    }

    /// Saves the snapshot when it is newer than the file's; a failure costs only the
    /// fallback, never the fetch.
    fn remember(&mut self, snapshot: &Snapshot) {
        let Some(path) = self.fallback.clone() else {
            return;
        };
        if self.saved_revision == Some(snapshot.revision) {
            return;
        }
        match self.fallback_file(&path).and_then(|f| f.save(snapshot)) {
            Ok(()) => {
                debug!(path = %path.display(), revision = snapshot.revision, "fallback file updated");
                self.saved_revision = Some(snapshot.revision);
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
            Ok(snapshot) => {
                self.shared
                    .revision
                    .store(snapshot.revision, Ordering::Relaxed);
                if self.shared.degraded.swap(false, Ordering::Relaxed) {
                    info!(url = %self.shared.url, "store reachable again; using its secrets");
                }
                self.remember(&snapshot);
                return Ok(self.to_set(snapshot, "store"));
            }
            Err(error) => error,
        };
        let Some(path) = self.fallback.clone().filter(|_| error.is_transient()) else {
            return Err(error);
        };
        match self.fallback_file(&path).and_then(|f| f.load()) {
            Ok(snapshot) => {
                warn!(error = %error, path = %path.display(), revision = snapshot.revision,
                      "store unreachable; using the last good secrets from the fallback file");
                self.shared
                    .revision
                    .store(snapshot.revision, Ordering::Relaxed);
                self.shared.degraded.store(true, Ordering::Relaxed);
                Ok(self.to_set(snapshot, "fallback of"))
            }
            Err(fallback_error) => {
                warn!(error = %fallback_error, "fallback file unusable");
                Err(error)
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
        let mut builder = super::http_client_builder(self.proxy.as_ref(), self.ca_pem.as_deref())
            .map_err(|reason| self.unreachable(reason))?
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3));
        if !pooled {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder.build().map_err(|e| self.unreachable(e.to_string()))
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    fn endpoint(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut pairs: Vec<String> = self.agent.iter().map(|a| format!("agent={a}")).collect();
        pairs.extend(query.iter().map(|(k, v)| format!("{k}={v}")));
        if pairs.is_empty() {
            format!("{}{path}", self.url)
        } else {
            format!("{}{path}?{}", self.url, pairs.join("&"))
        }
    }

    /// GET with the token; on a 401 with a token file, re-reads the file and tries once more.
    fn get(&self, client: &Client, url: &str) -> Result<Response, Error> {
        let mut reload = false;
        loop {
            let response = client
                .get(url)
                .header(AUTHORIZATION, self.token.header(reload)?)
                .send()
                .map_err(|e| self.unreachable(without_url(&e)))?;
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
        // Only the stable error *code*, never the server's message: whatever answers may
        // echo the request, and the request carried the token.
        let code = response
            .json::<ErrorBody>()
            .ok()
            .map(|b| b.error.code)
            .filter(|code| self.is_safe_code(code));
        let message = match code {
            Some(code) => format!("error code {code}"),
            None => "no error code".to_owned(),
        };
        Err(match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                url: self.url.clone(),
            },
            StatusCode::FORBIDDEN => Error::Forbidden {
                url: self.url.clone(),
                what: match &self.agent {
                    Some(agent) => format!("agent {agent}'s secrets ({message})"),
                    None => format!("the requested secrets ({message})"),
                },
            },
            _ => Error::Store {
                url: self.url.clone(),
                status: status.as_u16(),
                message,
            },
        })
    }

    /// An agent-vault error code (`forbidden`, `not_found`): short lowercase words, and
    /// nothing of the token in it.
    fn is_safe_code(&self, code: &str) -> bool {
        (1..=40).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && !self
                .token
                .with_token(false, |t| Ok(t.expose_secret().contains(code)))
                .unwrap_or(true)
    }

    fn fetch(&self) -> Result<Snapshot, Error> {
        let client = match self.fetch_client.get() {
            Some(client) => client,
            None => {
                let client = self.client(false, Duration::from_secs(10))?;
                self.fetch_client.get_or_init(|| client)
            }
        };
        let response = self.check(self.get(client, &self.endpoint("/v1/runtime/secrets", &[]))?)?;
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

    /// Long-polls for revisions past the current one until the source is dropped.
    fn watch(&self, label: &str, notifier: &ChangeNotifier, stop: &AtomicBool) {
        let mut backoff = RECONNECT_FIRST;
        let mut reported_failure = false;
        let client = match self.client(true, LONG_POLL + Duration::from_secs(15)) {
            Ok(client) => client,
            Err(e) => return notifier.failed(label, &e),
        };
        while !stop.load(Ordering::Relaxed) {
            let since = self.revision.load(Ordering::Relaxed);
            let query = [
                ("since", since.to_string()),
                ("wait", LONG_POLL.as_secs().to_string()),
            ];
            let answer = self
                .get(&client, &self.endpoint("/v1/runtime/revision", &query))
                .and_then(|r| self.check(r))
                .and_then(|r| match r.status() {
                    StatusCode::NOT_MODIFIED => Ok(None),
                    _ => r
                        .json::<RevisionResponse>()
                        .map(|a| Some(a.revision))
                        .map_err(|e| self.unreachable(without_url(&e))),
                });
            match answer {
                Ok(revision) => {
                    backoff = RECONNECT_FIRST;
                    if reported_failure {
                        info!(source = %label, "store reachable again");
                        reported_failure = false;
                    }
                    let newer = revision.is_some_and(|r| r > since);
                    if newer || self.degraded.load(Ordering::Relaxed) {
                        if let Some(revision) = revision {
                            // Wait past it next time even if the supervisor's fetch is slow.
                            self.revision.fetch_max(revision, Ordering::Relaxed);
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
