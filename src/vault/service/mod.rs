//! The rules of the store: who may do what, versions and rollback, imports, revisions and the
//! long-poll wait. The only caller of `db` and `crypto`, and the writer of `audit`.
//!
//! Every change runs in one database transaction that also takes a number from the global
//! change sequence, stores it as the owner's (agent's or project's) last change, reads the
//! owner's entry list (names and versions), and appends the audit record; after commit that
//! state is published on the owner's `watch` channel, which wakes that owner's long-poll
//! waiters. A reader's revision is a digest of the entries inside its token's scope
//! (`scope_revision`), so a waiter answers only for a change it can read, and the number
//! tells nothing about other keys, other agents or write volume. Waiters also wake on a
//! revocation and at their token's expiry, and every run-time answer re-checks the token.
//!
//! Values are decrypted only inside `spawn_blocking` closures (to compare on write, compute a
//! masked preview, or answer the run-time read) and never logged.

mod agents;
mod audit;
pub mod backup;
mod export;
mod health;
mod lifecycle;
mod portal;
pub mod rekey;
mod runtime;
mod secrets;
mod tokens;
mod validate;

pub use lifecycle::init;
pub use portal::{AgentOverview, EntryDelivery};
use runtime::bump;
pub use runtime::OwnerState;
use secrets::open_version;
use validate::{
    is_blank, parse_since, parse_ttl, validate_description, validate_not_blank,
    validate_not_dangerous, validate_owner_name, validate_value,
};
pub use validate::{validate_agent, validate_key};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use tokio::sync::{watch, Semaphore};
use tracing::info;

use super::audit::{AuditQueue, AuditRecord};
use super::crypto::MasterKey;
use super::db::{Db, PROJECT};
use super::error::{Error, Result};
use super::tokens::{Caller, TokenTable};

/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest long-poll wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Default number of versions kept per key.
pub const DEFAULT_KEEP_VERSIONS: u32 = 10;
/// Default bound on concurrent long-poll waiters.
pub const DEFAULT_MAX_WAITERS: usize = 10_000;
/// Longest token lifetime accepted: 9999 days (what `9999d` says; about 27 years).
const MAX_TTL: Duration = Duration::from_secs(9999 * 24 * 3600);

/// File names inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";
pub const DB_FILE: &str = "vault.db";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use crate::protocol::wire::format_ms;

/// Store settings fixed at start.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub data_dir: PathBuf,
    /// `--master-key-file`; `None`: the rest of `crypto::KeySource::resolve`'s precedence.
    pub master_key_file: Option<PathBuf>,
    /// `--master-key openbao-transit://…`, which wins over the rest.
    pub master_key_transit: Option<crate::vault::transit::TransitKey>,
    pub keep_versions: u32,
    pub max_waiters: usize,
}

impl VaultConfig {
    pub fn new(data_dir: PathBuf) -> VaultConfig {
        VaultConfig {
            data_dir,
            master_key_file: None,
            master_key_transit: None,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            max_waiters: DEFAULT_MAX_WAITERS,
        }
    }
}

/// Whose entry: one agent's, or the project's (shared by all agents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Agent(String),
    Project,
}

impl Owner {
    fn name(&self) -> &str {
        match self {
            Owner::Agent(agent) => agent,
            Owner::Project => PROJECT,
        }
    }

    fn agent(&self) -> Option<&str> {
        match self {
            Owner::Agent(agent) => Some(agent),
            Owner::Project => None,
        }
    }
}

/// Who is asking, for authorization and audit.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub caller: Caller,
    pub remote: Option<String>,
}

/// The store: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Shared>,
}

struct Shared {
    /// Exclusive lock on the data directory for the life of the server: tokens and revisions
    /// are cached in this process, so a second server on the same files would serve stale
    /// answers and wake no waiters of the first.
    _lock: nix::fcntl::Flock<std::fs::File>,
    db: Db,
    /// In an Arc so `spawn_blocking` closures can encrypt and decrypt.
    master: Arc<MasterKey>,
    tokens: TokenTable,
    /// Each owner's entries as of its last change, published after each commit; waiters
    /// recompute their scope's revision from it. A std mutex: it guards a map lookup and is
    /// never held across an `.await`.
    revisions: Mutex<HashMap<String, watch::Sender<Arc<OwnerState>>>>,
    /// Bumped on every revocation so waiters re-check their token at once.
    token_events: watch::Sender<u64>,
    /// Bounds concurrent long-poll waiters; beyond it a request gets 503 `too_many_waiters`.
    waiters: Arc<Semaphore>,
    /// The bound of `waiters`, so `/metrics` can say how many wait now.
    max_waiters: usize,
    keep_versions: u32,
    audit: AuditQueue,
    /// `/metrics`' counters (no names, no values), bumped by `api` and here.
    metrics: Arc<super::metrics::Metrics>,
    /// `DATA_DIR/vault.db`, for the size gauge.
    db_path: PathBuf,
    /// Set once at shutdown; waiters answer at once instead of holding the server up.
    shutdown: watch::Sender<bool>,
}

fn record(
    ctx: &Ctx,
    action: &'static str,
    owner: &Owner,
    keys: Vec<String>,
    outcome: &'static str,
) -> AuditRecord {
    AuditRecord {
        at: now_ms(),
        token_id: Some(ctx.caller.token_id.clone()),
        action,
        agent: owner.agent().map(str::to_string),
        keys,
        remote: ctx.remote.clone(),
        outcome,
        reads: Vec::new(),
    }
}

impl Vault {
    /// Authenticate a bearer token.
    pub fn authenticate(&self, bearer: Option<&SecretString>) -> Result<Caller> {
        let verified = bearer
            .ok_or(Error::Unauthorized("missing bearer token"))
            .and_then(|bearer| self.inner.tokens.verify(bearer, now_ms()));
        if verified.is_err() {
            self.inner.metrics.token_failed();
        }
        verified
    }

    /// Is the caller's token still what it was when the request was authenticated (not
    /// revoked, not expired, same scopes)? Asked again at the moment of answering, because a
    /// long-poll may outlive its token.
    async fn recheck(&self, ctx: &Ctx, agent: &str) -> Result<()> {
        match self
            .inner
            .tokens
            .recheck(&ctx.caller.token_id, &ctx.caller.scopes, now_ms())
        {
            Ok(()) => Ok(()),
            Err(err) => {
                info!(token_id = %ctx.caller.token_id, agent, "token no longer valid; run-time answer refused");
                self.inner
                    .audit
                    .push(record(
                        ctx,
                        "runtime.read",
                        &Owner::Agent(agent.to_string()),
                        Vec::new(),
                        "denied",
                    ))
                    .await;
                Err(err)
            }
        }
    }

    async fn deny(
        &self,
        ctx: &Ctx,
        action: &'static str,
        owner: &Owner,
        keys: Vec<String>,
    ) -> Error {
        info!(token_id = %ctx.caller.token_id, action, agent = owner.agent().unwrap_or("-"), "request denied");
        self.inner
            .audit
            .push(record(ctx, action, owner, keys, "denied"))
            .await;
        Error::Forbidden(match owner {
            Owner::Agent(agent) => format!(
                "token {} may not {action} for agent {agent}",
                ctx.caller.token_id
            ),
            Owner::Project => format!(
                "token {} may not {action} project variables",
                ctx.caller.token_id
            ),
        })
    }

    async fn require_manage(
        &self,
        ctx: &Ctx,
        action: &'static str,
        owner: &Owner,
        key: Option<&str>,
    ) -> Result<()> {
        let allowed = match (owner, key) {
            (Owner::Agent(agent), Some(key)) => ctx.caller.can_write(agent, key),
            (Owner::Agent(agent), None) => ctx.caller.manages_agent(agent),
            (Owner::Project, _) => ctx.caller.is_admin(),
        };
        if allowed {
            Ok(())
        } else {
            let keys = key.map(|k| vec![k.to_string()]).unwrap_or_default();
            Err(self.deny(ctx, action, owner, keys).await)
        }
    }

    async fn require_admin(&self, ctx: &Ctx, action: &'static str) -> Result<()> {
        if ctx.caller.is_admin() {
            Ok(())
        } else {
            info!(token_id = %ctx.caller.token_id, action, "request denied");
            self.inner
                .audit
                .push(record(ctx, action, &Owner::Project, Vec::new(), "denied"))
                .await;
            Err(Error::Forbidden(format!(
                "token {} is not an admin token",
                ctx.caller.token_id
            )))
        }
    }
}
