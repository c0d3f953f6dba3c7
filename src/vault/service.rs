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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info};

use super::audit::{self, AuditQueue, AuditRecord};
use super::crypto::{Aad, MasterKey};
use super::db::{self, Db, EntryRow, VersionRow, PROJECT};
use super::tokens::{self, Caller, TokenTable};
use super::{Error, Result};
use crate::protocol::wire::{
    preview, AuditEntry, AuditList, AuditQuery, ImportRequest, ImportSummary, IssuedToken, Kind,
    Origin, PutResponse, PutSecretRequest, RollbackResponse, RuntimeSecret, RuntimeSecrets,
    SecretMeta, TokenList, TokenMeta, TokenRequest, Ttl, VersionList, VersionMeta,
};

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

/// RFC 3339 (UTC, milliseconds) for the API.
pub fn format_ms(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Store settings fixed at start.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub data_dir: PathBuf,
    pub keep_versions: u32,
    pub max_waiters: usize,
}

impl VaultConfig {
    pub fn new(data_dir: PathBuf) -> VaultConfig {
        VaultConfig {
            data_dir,
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
    keep_versions: u32,
    audit: AuditQueue,
    /// Set once at shutdown; waiters answer at once instead of holding the server up.
    shutdown: watch::Sender<bool>,
}

fn validate_owner_name(owner: &Owner) -> Result<()> {
    match owner {
        Owner::Agent(agent) => validate_agent(agent),
        Owner::Project => Ok(()),
    }
}

pub fn validate_agent(agent: &str) -> Result<()> {
    if tokens::valid_agent(agent) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "agent",
            name: agent.chars().take(100).collect(),
            rule: "agent names match [a-z0-9][a-z0-9_-]{0,62}",
        })
    }
}

pub fn validate_key(key: &str) -> Result<()> {
    if tokens::valid_key(key) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "key",
            name: key.chars().take(100).collect(),
            rule: "keys are environment variable names: [A-Za-z_][A-Za-z0-9_]{0,255}",
        })
    }
}

fn validate_value(key: &str, value: &SecretString) -> Result<()> {
    let bytes = value.expose_secret().as_bytes();
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            len: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    if bytes.contains(&0) {
        return Err(Error::InvalidValue {
            key: key.to_string(),
            reason: "values may not contain NUL bytes (they cannot be environment variables)",
        });
    }
    Ok(())
}

fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::InvalidRequest(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if description.contains('\0') {
        return Err(Error::InvalidRequest(
            "description may not contain NUL bytes".into(),
        ));
    }
    Ok(())
}

fn meta(entry: &EntryRow, value: &SecretString, show_plain: bool) -> SecretMeta {
    let exposed = value.expose_secret();
    SecretMeta {
        agent: (entry.owner != PROJECT).then(|| entry.owner.clone()),
        key: entry.key.clone(),
        kind: entry.kind,
        description: entry.description.clone(),
        version: entry.version,
        created_at: format_ms(entry.created_at),
        updated_at: format_ms(entry.updated_at),
        last_read_at: entry.last_read_at.map(format_ms),
        preview: preview(exposed),
        // Plain entries are readable configuration by definition; secrets never leave here.
        value: (show_plain && entry.kind == Kind::Plain).then(|| exposed.to_string()),
    }
}

/// Decrypt the current value of an entry.
fn current_value(
    tx: &rusqlite::Transaction<'_>,
    master: &MasterKey,
    entry: &EntryRow,
) -> Result<SecretString> {
    let row = db::get_version(tx, &entry.owner, &entry.key, entry.version)?.ok_or_else(|| {
        Error::Internal(format!(
            "{}/{} has no stored version {}",
            entry.owner, entry.key, entry.version
        ))
    })?;
    open_version(master, &entry.owner, &entry.key, &row)
}

fn open_version(
    master: &MasterKey,
    owner: &str,
    key: &str,
    row: &VersionRow,
) -> Result<SecretString> {
    master.open(
        &Aad {
            owner,
            key,
            version: row.version,
        },
        &row.sealed,
    )
}

/// Encrypt and store `value` as `version` of `owner/key`, then prune old versions.
#[allow(clippy::too_many_arguments)]
fn store_version(
    tx: &rusqlite::Transaction<'_>,
    master: &MasterKey,
    keep: u32,
    owner: &str,
    key: &str,
    version: i64,
    kind: Kind,
    value: &SecretString,
    now: i64,
) -> Result<()> {
    let sealed = master.seal(
        &Aad {
            owner,
            key,
            version,
        },
        value.expose_secret().as_bytes(),
    )?;
    db::insert_version(
        tx,
        owner,
        key,
        &VersionRow {
            version,
            kind,
            created_at: now,
            sealed,
        },
    )?;
    db::prune_versions(tx, owner, key, keep)
}

/// Bump the global sequence, make it the owner's last change, and read the owner's entries
/// as of this change (in the same transaction, so the state matches the commit).
fn bump(tx: &rusqlite::Transaction<'_>, owner: &str) -> Result<OwnerState> {
    let seq = db::next_seq(tx)?;
    db::set_owner_seq(tx, owner, seq)?;
    OwnerState::read(tx, owner, seq)
}

/// One owner's entries as of its last change: what a reader's revision is computed from.
/// Holds names and version numbers only, never a value.
#[derive(Debug, Default)]
pub struct OwnerState {
    /// The global change sequence of the owner's last change; orders publications (commits
    /// may publish out of order). Never shown to a run-time caller: it counts every write.
    seq: i64,
    entries: Vec<EntryStamp>,
}

#[derive(Debug)]
struct EntryStamp {
    key: String,
    version: i64,
    kind: Kind,
    /// Tells a deleted and re-created key (version 1 again) from the old one.
    created_at: i64,
}

impl OwnerState {
    fn read(conn: &rusqlite::Connection, owner: &str, seq: i64) -> Result<OwnerState> {
        let entries = db::list_entries(conn, owner)?
            .into_iter()
            .map(|entry| EntryStamp {
                key: entry.key,
                version: entry.version,
                kind: entry.kind,
                created_at: entry.created_at,
            })
            .collect();
        Ok(OwnerState { seq, entries })
    }
}

/// The revision a reader sees: a digest of the entries inside its scope (its agent's and
/// the project's keys it may read; name, version, kind, creation time). It changes exactly
/// when something the reader can read changes, and says nothing about other keys, other
/// agents or how many writes happened. Opaque: clients compare it for equality only.
/// 53 bits (exact in every JSON number), never 0 (a launcher's "nothing yet").
fn scope_revision(caller: &Caller, agent: &str, own: &OwnerState, project: &OwnerState) -> u64 {
    let mut hasher = blake3::Hasher::new_derive_key("agent-vault scope revision v1");
    for (tag, state) in [(b'a', own), (b'p', project)] {
        for entry in &state.entries {
            if !caller.can_read(agent, &entry.key) {
                continue;
            }
            hasher.update(&[tag, entry.kind as u8]);
            hasher.update(&(entry.key.len() as u64).to_le_bytes());
            hasher.update(entry.key.as_bytes());
            hasher.update(&entry.version.to_le_bytes());
            hasher.update(&entry.created_at.to_le_bytes());
        }
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(first) & ((1 << 53) - 1)).max(1)
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

/// Create the data directory, master key, database and first admin token. Returns the token
/// (the only time it exists in clear).
pub async fn init(data_dir: &Path) -> Result<SecretString> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    use std::os::unix::fs::DirBuilderExt;
    let key_path = data_dir.join(MASTER_KEY_FILE);
    let db_path = data_dir.join(DB_FILE);
    // Every check before the first change: a refused init leaves the directory as it was.
    if key_path.exists() || db_path.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} is already initialized ({} or {} exists); refusing to overwrite the master key",
            data_dir.display(),
            MASTER_KEY_FILE,
            DB_FILE
        )));
    }
    match std::fs::metadata(data_dir) {
        // Someone else's directory keeps its mode (it may be shared); one that others can
        // write to is no place for a master key and a database, so it is refused instead.
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(Error::InvalidRequest(format!(
                    "{} exists and is not a directory",
                    data_dir.display()
                )));
            }
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(Error::InvalidRequest(format!(
                    "{} (mode {:o}) is writable by group or others; use a private directory \
                     (mode 0700) for the store",
                    data_dir.display(),
                    mode & 0o7777
                )));
            }
        }
        Err(_) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(io(data_dir))?;
            // Ours: private whatever the umask.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(data_dir))?;
        }
    }
    let master = match MasterKey::from_env() {
        Some(key) => key?,
        None => MasterKey::create_file(&key_path)?,
    };
    drop(master);
    let db = Db::open(&db_path)?;
    // The file (and the WAL, which SQLite creates with the database file's mode) is private
    // whatever the directory's mode (an existing one keeps its own).
    std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(&db_path))?;
    let now = now_ms();
    let new = tokens::issue(
        vec!["admin".into()],
        "initial admin token".into(),
        now,
        None,
    )?;
    let record = new.record.clone();
    db.write(move |tx| {
        db::insert_token(tx, &record)?;
        audit::write(
            tx,
            &AuditRecord {
                at: now,
                token_id: None,
                action: "token.issue",
                agent: None,
                keys: vec![record.id.clone()],
                remote: None,
                outcome: "ok",
                reads: Vec::new(),
            },
        )
    })
    .await?;
    info!(token_id = %new.record.id, "store initialized");
    Ok(new.token)
}

/// Takes `DATA_DIR/serve.lock` exclusively, or says which directory is already served.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Error::InvalidRequest(format!(
            "{} is already served by another agent-vault process (its lock {} is held)",
            data_dir.display(),
            path.display()
        ))
    })
}

impl Vault {
    /// Open an initialized data directory: load the master key (env var or file), check it
    /// against the stored data, load tokens and revisions, start the audit writer.
    pub async fn open(config: VaultConfig) -> Result<Vault> {
        let db_path = config.data_dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(Error::InvalidRequest(format!(
                "{} does not exist; run `agent-vault init --data-dir {}` first",
                db_path.display(),
                config.data_dir.display()
            )));
        }
        let lock = lock_data_dir(&config.data_dir)?;
        let master = Arc::new(MasterKey::load(&config.data_dir.join(MASTER_KEY_FILE))?);
        let db = Db::open(&db_path)?;
        let check = master.clone();
        let (token_records, seqs) = db
            .read(move |tx| {
                // Fail early with a clear message if the key does not match the data, rather
                // than on the first read of a launcher.
                let sample = tx
                    .query_row(
                        "SELECT owner, key, version FROM versions LIMIT 1",
                        [],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get(2)?,
                            ))
                        },
                    )
                    .ok();
                if let Some((owner, key, version)) = sample {
                    if let Some(row) = db::get_version(tx, &owner, &key, version)? {
                        open_version(&check, &owner, &key, &row).map_err(|_| Error::MasterKey {
                            source_name: "master key".into(),
                            reason: "does not decrypt the values in vault.db (wrong key?)".into(),
                        })?;
                    }
                }
                let mut states = Vec::new();
                for (owner, seq) in db::all_owner_seqs(tx)? {
                    let state = OwnerState::read(tx, &owner, seq)?;
                    states.push((owner, state));
                }
                Ok((db::list_tokens(tx)?, states))
            })
            .await?;
        let table = TokenTable::default();
        for record in token_records {
            table.insert(record)?;
        }
        let revisions = seqs
            .into_iter()
            .map(|(owner, state)| (owner, watch::channel(Arc::new(state)).0))
            .collect();
        let audit = AuditQueue::start(db.clone());
        Ok(Vault {
            inner: Arc::new(Shared {
                _lock: lock,
                db,
                master,
                tokens: table,
                revisions: Mutex::new(revisions),
                token_events: watch::channel(0).0,
                waiters: Arc::new(Semaphore::new(config.max_waiters)),
                keep_versions: config.keep_versions.max(1),
                audit,
                shutdown: watch::channel(false).0,
            }),
        })
    }

    /// Make waiters answer at once; called by `run` when shutdown begins.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Commit every queued audit record.
    pub async fn flush_audit(&self) {
        self.inner.audit.flush().await;
    }

    /// Authenticate a bearer token.
    pub fn authenticate(&self, bearer: Option<&SecretString>) -> Result<Caller> {
        let bearer = bearer.ok_or(Error::Unauthorized("missing bearer token"))?;
        self.inner.tokens.verify(bearer, now_ms())
    }

    fn sender(&self, owner: &str) -> watch::Receiver<Arc<OwnerState>> {
        let mut map = match self.inner.revisions.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(owner.to_string())
            .or_insert_with(|| watch::channel(Arc::default()).0)
            .subscribe()
    }

    fn publish(&self, owner: &str, state: OwnerState) {
        let mut map = match self.inner.revisions.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let sender = map
            .entry(owner.to_string())
            .or_insert_with(|| watch::channel(Arc::default()).0);
        // Commits may publish out of order; keep the latest so a state never goes back.
        let mut state = Some(state);
        sender.send_if_modified(|current| match state.take() {
            Some(state) if state.seq > current.seq => {
                *current = Arc::new(state);
                true
            }
            _ => false,
        });
    }

    /// The in-memory revision of `agent` as `caller` sees it.
    fn revision(&self, caller: &Caller, agent: &str) -> u64 {
        let own = self.sender(agent).borrow().clone();
        let project = self.sender(PROJECT).borrow().clone();
        scope_revision(caller, agent, &own, &project)
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

    // ---- run time -------------------------------------------------------------------------

    /// Which agent a run-time call is about, and whether the caller may read it.
    async fn runtime_agent(&self, ctx: &Ctx, agent: Option<String>) -> Result<String> {
        let agent = match agent {
            Some(agent) => {
                validate_agent(&agent)?;
                agent
            }
            None => {
                let agents = ctx.caller.read_agents();
                match agents.as_slice() {
                    [one] => one.to_string(),
                    [] => {
                        return Err(self
                            .deny(ctx, "runtime.read", &Owner::Project, Vec::new())
                            .await)
                    }
                    _ => {
                        return Err(Error::InvalidRequest(
                            "this token reads several agents; pass ?agent=NAME".into(),
                        ))
                    }
                }
            }
        };
        if !ctx.caller.reads_agent(&agent) {
            return Err(self
                .deny(ctx, "runtime.read", &Owner::Agent(agent), Vec::new())
                .await);
        }
        Ok(agent)
    }

    /// Wait until the revision of the caller's scope differs from `since` (true) or `wait`
    /// passes (false). Wakes on its own agent's and the project's changes (a change outside
    /// its scope leaves the revision as it was, so it waits on), on a revocation and at the
    /// token's expiry, which end the wait with 401. Holds no database resource: only watch
    /// receivers and a semaphore permit.
    async fn wait_newer(&self, ctx: &Ctx, agent: &str, since: u64, wait: Duration) -> Result<bool> {
        let mut own = self.sender(agent);
        let mut project = self.sender(PROJECT);
        let mut revoked = self.inner.token_events.subscribe();
        let caller = &ctx.caller;
        let differs = |own: &mut watch::Receiver<Arc<OwnerState>>,
                       project: &mut watch::Receiver<Arc<OwnerState>>| {
            let own = own.borrow_and_update().clone();
            let project = project.borrow_and_update().clone();
            scope_revision(caller, agent, &own, &project) != since
        };
        if differs(&mut own, &mut project) {
            return Ok(true);
        }
        if wait.is_zero() {
            return Ok(false);
        }
        let _permit = self
            .inner
            .waiters
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyWaiters)?;
        let mut stop = self.inner.shutdown.subscribe();
        let now = tokio::time::Instant::now();
        let deadline = now + wait.min(MAX_WAIT);
        let expiry = self
            .inner
            .tokens
            .get(&caller.token_id)
            .and_then(|record| record.expires_at)
            // One millisecond late rather than early: the re-check compares in milliseconds.
            .map(|at| now + Duration::from_millis((at - now_ms()).max(0) as u64 + 1));
        debug!(token_id = %caller.token_id, agent, "waiting for a change");
        loop {
            revoked.borrow_and_update();
            self.recheck(ctx, agent).await?;
            if differs(&mut own, &mut project) {
                return Ok(true);
            }
            if *stop.borrow_and_update() {
                return Err(Error::ShuttingDown);
            }
            tokio::select! {
                _ = own.changed() => {}
                _ = project.changed() => {}
                _ = revoked.changed() => {}
                _ = stop.changed() => {}
                _ = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
            }
        }
    }

    /// `GET /v1/runtime/revision`: `None` means not modified within `wait`.
    pub async fn runtime_revision(
        &self,
        ctx: &Ctx,
        agent: Option<String>,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<Option<u64>> {
        let Some(agent) = self.runtime_agent_past(ctx, agent, since, wait).await? else {
            return Ok(None);
        };
        self.recheck(ctx, &agent).await?;
        Ok(Some(self.revision(&ctx.caller, &agent)))
    }

    /// The run-time calls' common first step: which agent the token reads, and, with
    /// `since`, a long-poll until its revision passes `since` (`None`: not within `wait`).
    async fn runtime_agent_past(
        &self,
        ctx: &Ctx,
        agent: Option<String>,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<Option<String>> {
        let agent = self.runtime_agent(ctx, agent).await?;
        if let Some(since) = since {
            if !self.wait_newer(ctx, &agent, since, wait).await? {
                return Ok(None);
            }
        }
        Ok(Some(agent))
    }

    /// `GET /v1/runtime/secrets`: every value the token may read for the agent; `None` means
    /// not modified within `wait` (only with `since`).
    pub async fn runtime_secrets(
        &self,
        ctx: &Ctx,
        agent: Option<String>,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<Option<RuntimeSecrets>> {
        let Some(agent) = self.runtime_agent_past(ctx, agent, since, wait).await? else {
            return Ok(None);
        };
        let master = self.inner.master.clone();
        let caller = ctx.caller.clone();
        let name = agent.clone();
        let (revision, secrets, reads) = self
            .inner
            .db
            .read(move |tx| {
                let revision = scope_revision(
                    &caller,
                    &name,
                    &OwnerState::read(tx, &name, 0)?,
                    &OwnerState::read(tx, PROJECT, 0)?,
                );
                let rows = db::runtime_rows(tx, &name)?;
                let mut by_key: std::collections::BTreeMap<String, RuntimeSecret> =
                    std::collections::BTreeMap::new();
                let mut reads = Vec::new();
                // Project rows first so the agent's own entry of the same name replaces them.
                for project_pass in [true, false] {
                    for (owner, key, row) in &rows {
                        if (owner == PROJECT) != project_pass || !caller.can_read(&name, key) {
                            continue;
                        }
                        let value = open_version(&master, owner, key, row)?;
                        by_key.insert(
                            key.clone(),
                            RuntimeSecret {
                                name: key.clone(),
                                value,
                                kind: row.kind,
                                origin: if project_pass {
                                    Origin::Project
                                } else {
                                    Origin::Agent
                                },
                            },
                        );
                    }
                }
                for secret in by_key.values() {
                    let owner = match secret.origin {
                        Origin::Agent => name.clone(),
                        Origin::Project => PROJECT.to_string(),
                    };
                    reads.push((owner, secret.name.clone()));
                }
                Ok((revision, by_key.into_values().collect::<Vec<_>>(), reads))
            })
            .await?;
        // The token may have been revoked while this read ran: answer nothing then.
        self.recheck(ctx, &agent).await?;
        let keys: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
        debug!(token_id = %ctx.caller.token_id, agent = %agent, revision, count = keys.len(), "runtime read");
        let mut rec = record(
            ctx,
            "runtime.read",
            &Owner::Agent(agent.clone()),
            keys,
            "ok",
        );
        rec.reads = reads;
        self.inner.audit.push(rec).await;
        Ok(Some(RuntimeSecrets {
            agent,
            revision,
            secrets,
        }))
    }

    // ---- management -----------------------------------------------------------------------

    /// Create or update one entry.
    pub async fn put(
        &self,
        ctx: &Ctx,
        owner: Owner,
        key: String,
        req: PutSecretRequest,
    ) -> Result<PutResponse> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        if let Some(value) = &req.value {
            validate_value(&key, value)?;
        }
        if let Some(description) = &req.description {
            validate_description(description)?;
        }
        self.require_manage(ctx, "set", &owner, Some(&key)).await?;
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let ctx2 = ctx.clone();
        let owner2 = owner.clone();
        let key2 = key.clone();
        let (response, seq) = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let (owner, key) = (&owner_name, &key2);
                let existing = db::get_entry(tx, owner, key)?;
                let (entry, value, created, changed) = match existing {
                    None => {
                        // Without a value this is an update of something that does not exist.
                        let value = req.value.ok_or_else(|| {
                            Error::NotFound(format!(
                                "entry {key} (a value is required to create it)"
                            ))
                        })?;
                        let kind = req.kind.unwrap_or(Kind::Secret);
                        store_version(tx, &master, keep, owner, key, 1, kind, &value, now)?;
                        let entry = EntryRow {
                            owner: owner.clone(),
                            key: key.clone(),
                            kind,
                            description: req.description.unwrap_or_default(),
                            version: 1,
                            created_at: now,
                            updated_at: now,
                            last_read_at: None,
                        };
                        db::upsert_entry(tx, &entry)?;
                        (entry, value, true, true)
                    }
                    Some(mut entry) => {
                        let kind = req.kind.unwrap_or(entry.kind);
                        if entry.kind == Kind::Secret && kind == Kind::Plain && req.value.is_none()
                        {
                            // A plain entry is shown in clear: turning a secret into one
                            // without replacing its value would read it back.
                            return Err(Error::InvalidRequest(format!(
                                "{key} is a secret; making it plain needs a new value"
                            )));
                        }
                        let mut changed = false;
                        // Every write of a value is a new version, even of the same bytes:
                        // "unchanged" would confirm a guessed value to a write-only caller.
                        let value = match req.value {
                            Some(value) => {
                                Self::new_version(
                                    tx, &master, keep, owner, key, &mut entry, kind, &value, now,
                                )?;
                                changed = true;
                                value
                            }
                            None => {
                                let current = current_value(tx, &master, &entry)?;
                                if kind != entry.kind {
                                    Self::new_version(
                                        tx, &master, keep, owner, key, &mut entry, kind, &current,
                                        now,
                                    )?;
                                    changed = true;
                                }
                                current
                            }
                        };
                        if let Some(description) = req.description {
                            if description != entry.description {
                                entry.description = description;
                                changed = true;
                            }
                        }
                        if changed {
                            entry.updated_at = now;
                            db::upsert_entry(tx, &entry)?;
                        }
                        (entry, value, false, changed)
                    }
                };
                let seq = if changed {
                    Some(bump(tx, owner)?)
                } else {
                    None
                };
                let action = if created { "create" } else { "update" };
                audit::write(tx, &record(&ctx2, action, &owner2, vec![key.clone()], "ok"))?;
                Ok((
                    PutResponse {
                        created,
                        changed,
                        secret: meta(&entry, &value, true),
                    },
                    seq.map(|state| (state, entry.version)),
                ))
            })
            .await?;
        if let Some((state, version)) = seq {
            let seq = state.seq;
            self.publish(owner.name(), state);
            info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key, version, seq, "entry written");
        }
        Ok(response)
    }

    /// Store `value` as the next version of `entry` with `kind` (the entry row itself is
    /// written by the caller).
    #[allow(clippy::too_many_arguments)]
    fn new_version(
        tx: &rusqlite::Transaction<'_>,
        master: &MasterKey,
        keep: u32,
        owner: &str,
        key: &str,
        entry: &mut EntryRow,
        kind: Kind,
        value: &SecretString,
        now: i64,
    ) -> Result<()> {
        entry.version += 1;
        entry.kind = kind;
        store_version(
            tx,
            master,
            keep,
            owner,
            key,
            entry.version,
            kind,
            value,
            now,
        )
    }

    /// Metadata of every entry of `owner` (filtered to the keys a scoped token manages).
    pub async fn list(&self, ctx: &Ctx, owner: Owner, show_plain: bool) -> Result<Vec<SecretMeta>> {
        validate_owner_name(&owner)?;
        self.require_manage(ctx, "list", &owner, None).await?;
        let master = self.inner.master.clone();
        let caller = ctx.caller.clone();
        let owner_name = owner.name().to_string();
        let owner2 = owner.clone();
        self.inner
            .db
            .read(move |tx| {
                let mut out = Vec::new();
                for entry in db::list_entries(tx, &owner_name)? {
                    if let Owner::Agent(agent) = &owner2 {
                        if !caller.can_write(agent, &entry.key) {
                            continue;
                        }
                    }
                    let value = current_value(tx, &master, &entry)?;
                    out.push(meta(&entry, &value, show_plain));
                }
                Ok(out)
            })
            .await
    }

    /// Metadata of one entry (plain values in clear).
    pub async fn describe(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<SecretMeta> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "describe", &owner, Some(&key))
            .await?;
        let master = self.inner.master.clone();
        let owner_name = owner.name().to_string();
        self.inner
            .db
            .read(move |tx| {
                let entry = db::get_entry(tx, &owner_name, &key)?
                    .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                let value = current_value(tx, &master, &entry)?;
                Ok(meta(&entry, &value, true))
            })
            .await
    }

    /// Delete an entry and all its versions.
    pub async fn delete(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<()> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "delete", &owner, Some(&key))
            .await?;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2, key2) = (ctx.clone(), owner.clone(), key.clone());
        let state = self
            .inner
            .db
            .write(move |tx| {
                if !db::delete_entry(tx, &owner_name, &key2)? {
                    return Err(Error::NotFound(format!("entry {key2}")));
                }
                let seq = bump(tx, &owner_name)?;
                audit::write(
                    tx,
                    &record(&ctx2, "delete", &owner2, vec![key2.clone()], "ok"),
                )?;
                Ok(seq)
            })
            .await?;
        let seq = state.seq;
        self.publish(owner.name(), state);
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key, seq, "entry deleted");
        Ok(())
    }

    /// Metadata of the kept versions of one entry, newest first.
    pub async fn versions(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<VersionList> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "list versions", &owner, Some(&key))
            .await?;
        let owner_name = owner.name().to_string();
        let agent = owner.agent().map(str::to_string);
        self.inner
            .db
            .read(move |tx| {
                let entry = db::get_entry(tx, &owner_name, &key)?
                    .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                let versions = db::list_versions(tx, &owner_name, &key)?
                    .into_iter()
                    .map(|row| VersionMeta {
                        version: row.version,
                        kind: row.kind,
                        created_at: format_ms(row.created_at),
                        current: row.version == entry.version,
                    })
                    .collect();
                Ok(VersionList {
                    agent,
                    key,
                    versions,
                })
            })
            .await
    }

    /// Make a new version holding the value of `to` (default: the newest kept version older
    /// than the current one).
    pub async fn rollback(
        &self,
        ctx: &Ctx,
        owner: Owner,
        key: String,
        to: Option<i64>,
    ) -> Result<RollbackResponse> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "rollback", &owner, Some(&key))
            .await?;
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2, key2) = (ctx.clone(), owner.clone(), key.clone());
        let (response, state) =
            self.inner
                .db
                .write(move |tx| {
                    let now = now_ms();
                    let key = &key2;
                    let mut entry = db::get_entry(tx, &owner_name, key)?
                        .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                    let target = match to {
                        Some(version) => db::get_version(tx, &owner_name, key, version)?
                            .ok_or_else(|| {
                                Error::NotFound(format!(
                                    "version {version} of {key} (not kept or never existed)"
                                ))
                            })?,
                        None => db::list_versions(tx, &owner_name, key)?
                            .into_iter()
                            .find(|row| row.version < entry.version)
                            .ok_or_else(|| {
                                Error::NotFound(format!("an earlier kept version of {key}"))
                            })?,
                    };
                    let value = open_version(&master, &owner_name, key, &target)?;
                    entry.version += 1;
                    // A rollback never turns a secret into a plain (readable) entry.
                    if entry.kind != Kind::Secret {
                        entry.kind = target.kind;
                    }
                    entry.updated_at = now;
                    store_version(
                        tx,
                        &master,
                        keep,
                        &owner_name,
                        key,
                        entry.version,
                        entry.kind,
                        &value,
                        now,
                    )?;
                    db::upsert_entry(tx, &entry)?;
                    let seq = bump(tx, &owner_name)?;
                    audit::write(
                        tx,
                        &record(&ctx2, "rollback", &owner2, vec![key.clone()], "ok"),
                    )?;
                    Ok((
                        RollbackResponse {
                            rolled_back_to: target.version,
                            secret: meta(&entry, &value, true),
                        },
                        seq,
                    ))
                })
                .await?;
        let seq = state.seq;
        self.publish(owner.name(), state);
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key,
            version = response.secret.version, from = response.rolled_back_to, seq, "entry rolled back");
        Ok(response)
    }

    /// Import many entries in one transaction: everything or nothing.
    pub async fn import(
        &self,
        ctx: &Ctx,
        owner: Owner,
        req: ImportRequest,
    ) -> Result<ImportSummary> {
        validate_owner_name(&owner)?;
        let mut req = req;
        for entry in &req.entries {
            validate_key(&entry.key)?;
            validate_value(&entry.key, &entry.value)?;
        }
        // A key given twice keeps its last value, as when a shell sources the file.
        let mut deduped: Vec<crate::protocol::wire::ImportEntry> =
            Vec::with_capacity(req.entries.len());
        for entry in std::mem::take(&mut req.entries) {
            match deduped.iter_mut().find(|e| e.key == entry.key) {
                Some(existing) => *existing = entry,
                None => deduped.push(entry),
            }
        }
        req.entries = deduped;
        for key in &req.plain_keys {
            validate_key(key)?;
        }
        for entry in &req.entries {
            self.require_manage(ctx, "import", &owner, Some(&entry.key))
                .await?;
        }
        if req.entries.is_empty() {
            self.require_manage(ctx, "import", &owner, None).await?;
        }
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2) = (ctx.clone(), owner.clone());
        let (summary, seq) = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let mut summary = ImportSummary::default();
                for item in &req.entries {
                    let key = &item.key;
                    if item.value.expose_secret().trim().is_empty() {
                        summary.skipped.push(key.clone());
                        continue;
                    }
                    let kind = if req.plain || req.plain_keys.contains(key) {
                        Kind::Plain
                    } else {
                        Kind::Secret
                    };
                    match db::get_entry(tx, &owner_name, key)? {
                        None => {
                            store_version(
                                tx,
                                &master,
                                keep,
                                &owner_name,
                                key,
                                1,
                                kind,
                                &item.value,
                                now,
                            )?;
                            db::upsert_entry(
                                tx,
                                &EntryRow {
                                    owner: owner_name.clone(),
                                    key: key.clone(),
                                    kind,
                                    description: String::new(),
                                    version: 1,
                                    created_at: now,
                                    updated_at: now,
                                    last_read_at: None,
                                },
                            )?;
                            summary.created.push(key.clone());
                        }
                        Some(_) if !req.overwrite => summary.skipped.push(key.clone()),
                        Some(mut entry) => {
                            // Overwriting is always a new version, whatever the value (see put).
                            entry.version += 1;
                            entry.kind = kind;
                            entry.updated_at = now;
                            store_version(
                                tx,
                                &master,
                                keep,
                                &owner_name,
                                key,
                                entry.version,
                                kind,
                                &item.value,
                                now,
                            )?;
                            db::upsert_entry(tx, &entry)?;
                            summary.overwritten.push(key.clone());
                        }
                    }
                }
                let changed: Vec<String> = summary
                    .created
                    .iter()
                    .chain(&summary.overwritten)
                    .cloned()
                    .collect();
                let seq = if changed.is_empty() {
                    None
                } else {
                    Some(bump(tx, &owner_name)?)
                };
                audit::write(tx, &record(&ctx2, "import", &owner2, changed, "ok"))?;
                Ok((summary, seq))
            })
            .await?;
        if let Some(state) = seq {
            self.publish(owner.name(), state);
        }
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"),
            created = summary.created.len(), skipped = summary.skipped.len(),
            overwritten = summary.overwritten.len(), "import done");
        Ok(summary)
    }

    // ---- tokens and audit -----------------------------------------------------------------

    pub async fn issue_token(&self, ctx: &Ctx, req: TokenRequest) -> Result<IssuedToken> {
        self.issue_token_as(Some(ctx), req).await
    }

    /// Offline recovery (`agent-vault tokens issue --offline`): issue a token with no caller,
    /// by whoever can open the data directory with its master key while no server runs (the
    /// data-dir lock is held by `open`). Audited as `token.issue.offline`.
    pub async fn issue_token_offline(&self, req: TokenRequest) -> Result<IssuedToken> {
        self.issue_token_as(None, req).await
    }

    async fn issue_token_as(&self, ctx: Option<&Ctx>, req: TokenRequest) -> Result<IssuedToken> {
        let scopes = tokens::validate_scopes(&req.scopes)?;
        let description = req.description.unwrap_or_default();
        validate_description(&description)?;
        let ttl = match req.ttl {
            None => None,
            Some(Ttl::Seconds(secs)) => Some(Duration::from_secs(secs)),
            Some(Ttl::Text(text)) => Some(parse_ttl(&text)?),
        };
        if let Some(ttl) = ttl {
            if ttl.is_zero() || ttl > MAX_TTL {
                return Err(Error::InvalidRequest(
                    "ttl must be between 1 second and 9999 days".into(),
                ));
            }
        }
        if let Some(ctx) = ctx {
            self.require_admin(ctx, "issue tokens").await?;
        }
        let now = now_ms();
        let expires_at = ttl.map(|ttl| now + ttl.as_millis() as i64);
        let new = tokens::issue(scopes, description, now, expires_at)?;
        let record_row = new.record.clone();
        let audit_record = match ctx {
            Some(ctx) => record(
                ctx,
                "token.issue",
                &Owner::Project,
                vec![record_row.id.clone()],
                "ok",
            ),
            None => AuditRecord {
                at: now,
                token_id: None,
                action: "token.issue.offline",
                agent: None,
                keys: vec![record_row.id.clone()],
                remote: None,
                outcome: "ok",
                reads: Vec::new(),
            },
        };
        self.inner
            .db
            .write(move |tx| {
                db::insert_token(tx, &record_row)?;
                audit::write(tx, &audit_record)
            })
            .await?;
        self.inner.tokens.insert(new.record.clone())?;
        let by = ctx.map_or("offline", |ctx| ctx.caller.token_id.as_str());
        info!(token_id = %by, new_token_id = %new.record.id, "token issued");
        Ok(IssuedToken {
            id: new.record.id.clone(),
            token: new.token,
            scopes: new.record.scopes.clone(),
            description: new.record.description.clone(),
            expires_at: new.record.expires_at.map(format_ms),
        })
    }

    pub async fn list_tokens(&self, ctx: &Ctx) -> Result<TokenList> {
        self.require_admin(ctx, "list tokens").await?;
        let records = self.inner.db.read(|tx| db::list_tokens(tx)).await?;
        Ok(TokenList {
            tokens: records
                .into_iter()
                .map(|record| TokenMeta {
                    id: record.id,
                    scopes: record.scopes,
                    description: record.description,
                    created_at: format_ms(record.created_at),
                    expires_at: record.expires_at.map(format_ms),
                    revoked_at: record.revoked_at.map(format_ms),
                })
                .collect(),
        })
    }

    pub async fn revoke_token(&self, ctx: &Ctx, id: String) -> Result<()> {
        self.require_admin(ctx, "revoke tokens").await?;
        let now = now_ms();
        let (ctx2, id2) = (ctx.clone(), id.clone());
        self.inner
            .db
            .write(move |tx| {
                // Checked in the write transaction, so two revocations at once cannot both
                // pass it. Nothing could administer the store after the last admin token.
                let tokens = db::list_tokens(tx)?;
                let active_admin = |t: &tokens::TokenRecord| {
                    t.revoked_at.is_none()
                        && t.expires_at.is_none_or(|at| at > now)
                        && t.scopes.iter().any(|s| s == "admin")
                };
                if tokens.iter().any(|t| t.id == id2 && active_admin(t))
                    && !tokens.iter().any(|t| t.id != id2 && active_admin(t))
                {
                    return Err(Error::Conflict(format!(
                        "token {id2} is the last admin token; issue another admin token \
                         before revoking it"
                    )));
                }
                if !db::revoke_token(tx, &id2, now)? {
                    return Err(Error::NotFound(format!("token {id2}")));
                }
                audit::write(
                    tx,
                    &record(
                        &ctx2,
                        "token.revoke",
                        &Owner::Project,
                        vec![id2.clone()],
                        "ok",
                    ),
                )
            })
            .await?;
        if let Some(mut record) = self.inner.tokens.get(&id) {
            if record.revoked_at.is_none() {
                record.revoked_at = Some(now);
                self.inner.tokens.insert(record)?;
            }
        }
        // Its long-poll waiters re-check and answer 401 now, not at their timeout.
        self.inner
            .token_events
            .send_modify(|n| *n = n.wrapping_add(1));
        info!(token_id = %ctx.caller.token_id, revoked_token_id = %id, "token revoked");
        Ok(())
    }

    pub async fn audit(&self, ctx: &Ctx, query: AuditQuery) -> Result<AuditList> {
        if let Some(agent) = &query.agent {
            validate_agent(agent)?;
        }
        let since_ms = match &query.since {
            None => 0,
            Some(text) => parse_since(text)?,
        };
        let limit = query.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(Error::InvalidRequest(
                "limit must be between 1 and 10000".into(),
            ));
        }
        self.require_admin(ctx, "read the audit trail").await?;
        // Make records of reads queued so far visible to this query.
        self.inner.audit.flush().await;
        let agent = query.agent.clone();
        let rows = self
            .inner
            .db
            .read(move |tx| db::query_audit(tx, agent.as_deref(), since_ms, limit))
            .await?;
        Ok(AuditList {
            records: rows
                .into_iter()
                .map(|row| AuditEntry {
                    id: row.id,
                    at: format_ms(row.at),
                    token_id: row.token_id,
                    action: row.action,
                    agent: row.agent,
                    keys: row.keys,
                    remote: row.remote,
                    outcome: row.outcome,
                })
                .collect(),
        })
    }
}

/// A token lifetime as text: 1 to 4 digits (no leading zero) and a unit, `s`, `m`, `h` or
/// `d`, e.g. `90s`, `1h`, `30d`. Deliberately narrow so the OpenAPI pattern states it exactly.
fn parse_ttl(text: &str) -> Result<Duration> {
    let bad = || {
        Error::InvalidRequest(
            "ttl must be seconds or a duration such as \"1h\", \"90s\" or \"30d\"".into(),
        )
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty()
        || digits.len() > 4
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n * unit))
}

/// `since` of the audit query: unix seconds or an RFC 3339 date-time (any offset).
fn parse_since(text: &str) -> Result<i64> {
    let bad =
        || Error::InvalidRequest("since must be unix seconds or an RFC 3339 date-time".into());
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = text.parse().map_err(|_| bad())?;
        return Ok(secs * 1000);
    }
    parse_rfc3339_ms(text).ok_or_else(bad)
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to unix milliseconds (negative before
/// 1970). Hand-written because humantime accepts only UTC.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &text[start..i.min(start + 3)];
        millis = format!("{frac:0<3}").parse::<i64>().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let total = oh * 60 + om;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews() {
        assert_eq!(preview(""), "****");
        assert_eq!(preview("abc"), "****");
        assert_eq!(preview("1234567"), "****");
        assert_eq!(preview("12345678"), "****78");
        assert_eq!(preview("12345678901"), "****01");
        assert_eq!(preview("sk_live_abcd1234"), "****1234");
    }

    #[test]
    fn since_parses() {
        assert_eq!(parse_since("10").ok(), Some(10_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z").ok(), Some(1000));
        assert_eq!(
            parse_since("2024-01-01T00:00:00Z").ok(),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_since("2024-01-01T01:00:00.5+01:00").ok(),
            Some(1_704_067_200_500)
        );
        assert!(parse_since("2024-02-30T00:00:00Z").is_err());
        assert!(parse_ttl("1h").is_ok());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_since("yesterday").is_err());
    }
}
