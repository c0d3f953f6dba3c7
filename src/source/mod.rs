//! Where secrets come from. A [`SecretSource`] can `fetch` the current [`SecretSet`] and
//! `watch` for changes; the supervisor owns the sources and decides what a change means.
//!
//! A source never keeps values between fetches: each `fetch` reads afresh and hands the
//! values over in wiped-on-drop types, so nothing outlives the environment built from them.
//! Watchers only say "something changed"; they never carry values.

pub mod digest;
pub mod fallback;
pub mod file;
pub mod openbao;
pub mod store;
pub mod store_poll;

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use secrecy::SecretString;

/// Errors of every source. Variants carry paths, key names and URLs, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {}: {source}", Shown(.path))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file refused or unreadable (`secret_file`'s rules: regular files only, size cap,
    /// permissions, links out of a secrets directory).
    #[error(transparent)]
    File(#[from] crate::secret_file::Error),
    /// An env file that is not valid dotenv, or that could not be read.
    #[error(transparent)]
    EnvFile(#[from] crate::dotenv::FileError),
    #[error("{}: the value of {key} is not valid UTF-8", Shown(.path))]
    NotUtf8 { path: PathBuf, key: String },
    #[error("cannot watch {}: {reason}", Shown(.path))]
    Watch { path: PathBuf, reason: String },
    /// The store (agent-vault, or every address of an OpenBao/Vault cluster) did not
    /// answer, or answered that it cannot serve (sealed, standby).
    #[error(
        "cannot reach the store at {url}: {reason}; check that it is running and that --store \
         names it (agent-run retries within --start-timeout; --fallback PATH starts on the last \
         values read)"
    )]
    Unreachable { url: String, reason: String },
    /// A TLS problem that retrying cannot fix (`protocol::tls`): not transient, so
    /// agent-run fails at start at once instead of waiting out `--start-timeout`.
    #[error("cannot connect to the store at {url}: {reason}")]
    Tls { url: String, reason: String },
    #[error(
        "the store at {url} rejected the token: it is invalid, expired or revoked; issue a new \
         one (agent-vault tokens issue --scope 'secrets:read:AGENT/*') and give it to agent-run \
         (AGENT_RUN_TOKEN or --token-file)"
    )]
    Unauthorized { url: String },
    #[error(
        "the store at {url} refused access to {what}: the token is scoped to another agent or \
         keys; compare --agent with the token's scopes (agent-vault tokens list)"
    )]
    Forbidden { url: String, what: String },
    #[error(
        "the store at {url} refused the token: this is an admin token; issue a read token with \
         `agent-vault tokens issue --scope secrets:read:AGENT/*`"
    )]
    NotAReadToken { url: String },
    /// The token reads several agents (several scopes, or every agent below a prefix such
    /// as `production/**`) and agent-run did not say which.
    #[error(
        "the store at {url} needs to know which agent to read: the token reads several agents          (or every agent below a prefix); name one with --agent NAME (AGENT_RUN_AGENT)"
    )]
    AgentRequired { url: String },
    /// The token's scope covers a critical entry and no admin has approved it yet:
    /// transient, so agent-run keeps retrying until `--start-timeout`.
    #[error(
        "the store at {url} holds every secret of this token until an admin approves request \
         {id} (its scope covers a critical entry): run `agent-vault approvals approve {id}` \
         with an admin token other than the one that issued this token"
    )]
    ApprovalPending { url: String, id: String },
    #[error(
        "the store at {url} refused the token: its approval request {id} was denied; issue a \
         token whose scope leaves out the critical entries, or a new token and ask again"
    )]
    ApprovalDenied { url: String, id: String },
    #[error("the store at {url} answered {status}: {message}")]
    Store {
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot read the token from {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("fallback file {path}: {reason}")]
    Fallback { path: PathBuf, reason: String },
    /// The server refused to let our token read a path (HTTP 403), even after a new login.
    #[error("{path}: permission denied (HTTP {status}): the OpenBao/Vault token or role agent-run logged in with is not allowed to read this path (it is scoped to another agent's path, or its policy lacks read on it)")]
    Denied { path: String, status: u16 },
    /// Logging in (or taking the given token) failed.
    #[error("OpenBao/Vault login with --auth {method} failed: {reason}")]
    Auth {
        method: &'static str,
        reason: String,
    },
    #[error("{path}: no such secret on OpenBao/Vault (HTTP 404)")]
    NotFound { path: String },
    /// Any other answer: the status and the server's own error text (which describes the
    /// request, never a value).
    #[error("{path}: OpenBao/Vault answered HTTP {status}: {reason}")]
    Server {
        path: String,
        status: u16,
        reason: String,
    },
}

impl Error {
    /// Worth retrying: the store may come back. Everything else needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::ApprovalPending { .. }
        ) || matches!(self, Error::Store { status, .. } | Error::Server { status, .. } if *status >= 500)
    }

    /// The credentials are the problem (expired, revoked, wrong scope).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized { .. }
                | Error::Forbidden { .. }
                | Error::NotAReadToken { .. }
                | Error::ApprovalDenied { .. }
                | Error::Denied { .. }
                | Error::Auth { .. }
        )
    }
}

/// A store's two kinds of entry: write-only secrets and readable configuration.
pub use crate::protocol::Kind;

/// Where a secret came from, for error messages and `check` output. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a dotenv file.
    EnvFile { path: PathBuf, line: usize },
    /// One file of a secrets directory.
    SecretsDir { path: PathBuf },
    /// One KV secret of an OpenBao/Vault server (`address` is the one that answered).
    Vault { address: String, path: String },
    /// An agent-vault store: the agent's own entry or a project-wide variable.
    Store {
        url: String,
        agent: String,
        kind: Kind,
        project: bool,
    },
}

impl Origin {
    /// Files hold secrets; a store says which of its entries are plain configuration.
    pub fn kind(&self) -> Kind {
        match self {
            Origin::Store { kind, .. } => *kind,
            _ => Kind::Secret,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::EnvFile { path, line } => write!(f, "{}:{line}", Shown(path)),
            Origin::SecretsDir { path } => write!(f, "{}", Shown(path)),
            Origin::Store {
                url,
                agent,
                project: false,
                ..
            } => write!(f, "{url} agent {agent}"),
            Origin::Store {
                url, project: true, ..
            } => write!(f, "{url} project variable"),
            Origin::Vault { address, path } => {
                write!(f, "{path} on {}", address.trim_end_matches('/'))
            }
        }
    }
}

pub use crate::secret_file::Shown;

/// `--start-timeout` as the network sources apply it: until the first fetch succeeds, each
/// request may take only what is left of it (a store that accepts and never answers must not
/// hold the start past the deadline); afterwards requests get their normal timeouts.
pub struct StartBudget {
    deadline: std::sync::Mutex<Option<std::time::Instant>>,
}

impl StartBudget {
    /// The least time one request gets while the deadline runs out, so `--start-timeout 0s`
    /// still makes one attempt.
    const MIN_REQUEST: std::time::Duration = std::time::Duration::from_millis(500);

    pub fn new(start_timeout: std::time::Duration) -> StartBudget {
        StartBudget {
            deadline: std::sync::Mutex::new(Some(std::time::Instant::now() + start_timeout)),
        }
    }

    /// Already started: no budget applies.
    pub fn spent() -> StartBudget {
        StartBudget {
            deadline: std::sync::Mutex::new(None),
        }
    }

    /// What one request may take now, at most `max`; `None` once the first fetch is done.
    pub fn remaining(&self, max: std::time::Duration) -> Option<std::time::Duration> {
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        deadline.map(|at| {
            at.saturating_duration_since(std::time::Instant::now())
                .clamp(Self::MIN_REQUEST, max)
        })
    }

    /// The first fetch is done: requests get their normal timeouts from now on.
    pub fn started(&self) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// One secret: the value in a wiped-on-drop box, and where it came from.
pub struct Secret {
    pub value: SecretString,
    pub origin: Origin,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("value", &"[REDACTED]")
            .field("origin", &self.origin)
            .finish()
    }
}

/// The secrets of one fetch, by name. Later inserts win, which is how "later files win"
/// and "later sources win" are implemented.
#[derive(Debug, Default)]
pub struct SecretSet {
    entries: BTreeMap<String, Secret>,
    /// Value-free labels of what was read ("store 17"), for logs and `--check`.
    revisions: Vec<String>,
    /// Names a source saw but did not read, and why (a FIFO in a secrets dir), so that a
    /// reference to one says why it is missing.
    skipped: BTreeMap<String, String>,
    /// What the reader was allowed to read, when the source knows it (agent-vault: the
    /// agent its token's scope resolved to): named when the source yields nothing.
    scope: Option<String>,
}

impl SecretSet {
    pub fn add_revision(&mut self, label: String) {
        self.revisions.push(label);
    }

    pub fn revisions(&self) -> &[String] {
        &self.revisions
    }

    /// Records what the reader was allowed to read (see the field).
    pub fn set_scope(&mut self, scope: String) {
        self.scope = Some(scope);
    }

    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    pub fn insert(&mut self, name: String, secret: Secret) {
        self.skipped.remove(&name);
        self.entries.insert(name, secret);
    }

    /// Records that `name` exists at a source but was not read, and why.
    pub fn skip(&mut self, name: String, reason: String) {
        self.skipped.insert(name, reason);
    }

    /// Why `name` was skipped, if a source skipped it and no later one supplied it.
    pub fn skipped(&self, name: &str) -> Option<&str> {
        self.skipped
            .get(name)
            .filter(|_| !self.entries.contains_key(name))
            .map(String::as_str)
    }

    /// Moves every entry of `later` in, replacing same-named ones.
    pub fn extend(&mut self, later: SecretSet) {
        self.entries.extend(later.entries);
        self.revisions.extend(later.revisions);
        self.skipped.extend(later.skipped);
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.entries.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.entries
            .iter()
            .map(|(name, secret)| (name.as_str(), secret))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A place secrets are read from. `Send` so a source may be built on one thread and used
/// on another; the supervisor calls it from its own loop only.
pub trait SecretSource: Send {
    /// A short, value-free description for logs ("env-file .env").
    fn describe(&self) -> String;

    /// Reads the current secrets. Called at start and after every change notification.
    fn fetch(&mut self) -> Result<SecretSet, Error>;

    /// Starts watching for changes in the background; every change calls
    /// `notifier.changed()`. Watching stops when the source is dropped. A change made
    /// since the last `fetch` (before any watch existed) must be reported too: the
    /// supervisor does no re-check of its own, so a start reads each source once.
    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error>;
}

/// What a watcher tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The source's content may have changed; fetch again. `settled`: the source reports a
    /// committed new state (a store revision), not one raw event of a possible burst (an
    /// editor's save is several filesystem events), so no quiet period is needed.
    Changed { source: String, settled: bool },
    /// The source can no longer be read (e.g. its credentials were revoked). The child
    /// keeps running; the supervisor decides whether that is fatal (`auth` failures can be,
    /// with `--exit-on-auth-failure`).
    Failed {
        source: String,
        reason: String,
        auth: bool,
    },
}

/// The sending half of the supervisor's event queue: a channel for the event and one byte
/// on a pipe so the supervisor's `poll` wakes up. Cloned into every watcher thread.
#[derive(Clone)]
pub struct ChangeNotifier {
    events: mpsc::Sender<SourceEvent>,
    wake: Arc<OwnedFd>,
}

impl ChangeNotifier {
    /// A raw change (filesystem events): debounced, since more may follow.
    pub fn changed(&self, source: &str) {
        self.send(SourceEvent::Changed {
            source: source.to_owned(),
            settled: false,
        });
    }

    /// A settled new revision (a store's change counter moved): acted on at once.
    pub fn revised(&self, source: &str) {
        self.send(SourceEvent::Changed {
            source: source.to_owned(),
            settled: true,
        });
    }

    pub fn failed(&self, source: &str, error: &Error) {
        self.send(SourceEvent::Failed {
            source: source.to_owned(),
            reason: error.to_string(),
            auth: error.is_auth(),
        });
    }

    fn send(&self, event: SourceEvent) {
        // A closed channel means the supervisor is gone: nobody to tell.
        if self.events.send(event).is_ok() {
            // The pipe is non-blocking: when it is full the supervisor is already due to
            // wake, so a failed write loses nothing.
            let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
        }
    }
}

/// The receiving half, owned by the supervisor.
pub struct ChangeQueue {
    events: mpsc::Receiver<SourceEvent>,
    wake: OwnedFd,
}

impl ChangeQueue {
    /// Creates a connected notifier and queue.
    pub fn new() -> nix::Result<(ChangeNotifier, ChangeQueue)> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (tx, rx) = mpsc::channel();
        Ok((
            ChangeNotifier {
                events: tx,
                wake: Arc::new(write),
            },
            ChangeQueue {
                events: rx,
                wake: read,
            },
        ))
    }

    /// The descriptor to poll for readability.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake pipe and returns every queued event.
    pub fn drain(&self) -> Vec<SourceEvent> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        self.events.try_iter().collect()
    }
}

/// The transport rules and client setup are the store protocol's, shared with the admin CLI.
pub use crate::protocol::transport::{http_client_builder, is_loopback};

/// A source that yields no variable at all is almost always a mistake (a token scoped to a
/// misspelt agent, an empty file, a wrong KV path) that would otherwise start the child
/// without its keys in silence: said at warn, the default level, on every fetch.
fn warn_empty(source: &dyn SecretSource, set: &SecretSet) {
    match set.scope() {
        Some(scope) => tracing::warn!(
            source = %source.describe(),
            scope,
            "source yielded no variables: the token's scope matches no entry of the store \
             (check the agent name and the scope with `agent-vault tokens list`)"
        ),
        None => tracing::warn!(
            source = %source.describe(),
            "source yielded no variables"
        ),
    }
}

/// Fetches every source in order and merges the results; later sources win.
pub fn fetch_all(sources: &mut [Box<dyn SecretSource>]) -> Result<SecretSet, Error> {
    let mut merged = SecretSet::default();
    for source in sources.iter_mut() {
        let set = source.fetch()?;
        if set.is_empty() {
            warn_empty(source.as_ref(), &set);
        }
        merged.extend(set);
    }
    Ok(merged)
}
