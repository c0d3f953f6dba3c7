//! Init and open: the data directory, its master key, database and first admin token, and
//! the exclusive lock that makes one data directory one server; shutdown hooks.

use super::{
    now_ms, open_version, OwnerState, Shared, Vault, VaultConfig, DB_FILE, MASTER_KEY_FILE,
};
use crate::vault::audit as audit_log;
use crate::vault::audit::{AuditQueue, AuditRecord};
use crate::vault::crypto::{KeySource, MasterKey};
use crate::vault::db;
use crate::vault::db::Db;
use crate::vault::error::{Error, Result};
use crate::vault::tokens as vault_tokens;
use crate::vault::tokens::TokenTable;
use crate::vault::transit::{write_wrapped, TransitKey, WRAPPED_FILE, WRAPPED_NEW_FILE};
use secrecy::SecretString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Semaphore};
use tracing::info;

/// Create the data directory, master key, database and first admin token. Returns the token
/// (the only time it exists in clear). The key comes from `KeySource::resolve`: an existing
/// `key_file`, the environment or the systemd credential is used as it is; a missing
/// `key_file` or `DATA_DIR/master.key` is created.
///
/// With a Transit key (`transit`), the new random master key is encrypted by Transit before
/// anything is created, and only its ciphertext is written, to `DATA_DIR/master.key.transit`.
pub async fn init(
    data_dir: &Path,
    key_file: Option<&Path>,
    transit: Option<&TransitKey>,
) -> Result<SecretString> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    use std::os::unix::fs::DirBuilderExt;
    let key_path = data_dir.join(MASTER_KEY_FILE);
    let db_path = data_dir.join(DB_FILE);
    // Every check before the first change: a refused init leaves the directory as it was.
    let wrapped_path = data_dir.join(WRAPPED_FILE);
    if key_path.exists() || db_path.exists() || wrapped_path.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} is already initialized ({}, {} or {} exists); refusing to overwrite the \
             master key",
            data_dir.display(),
            MASTER_KEY_FILE,
            WRAPPED_FILE,
            DB_FILE
        )));
    }
    let source = KeySource::resolve(key_file, transit, data_dir);
    // An existing key is read (and checked) before anything is created; a Transit key is
    // made and wrapped by Transit now, so an unreachable OpenBao or a refused token leaves
    // nothing behind.
    let mut wrapped = None;
    let given = match &source {
        KeySource::DataDir(_) => None,
        KeySource::Flag(path) if !path.exists() => None,
        KeySource::Transit { key, .. } => {
            let (bytes, ciphertext) = key.seal_new()?;
            wrapped = Some((key, ciphertext));
            Some(MasterKey::from_bytes(&bytes))
        }
        other => Some(MasterKey::load(other)?),
    };
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
    if let Some((key, ciphertext)) = &wrapped {
        write_wrapped(&wrapped_path, key, ciphertext)?;
    }
    let master = match (given, &source) {
        (Some(key), _) => key,
        (None, KeySource::Flag(path)) => MasterKey::create_file(path)?,
        (None, _) => MasterKey::create_file(&key_path)?,
    };
    let check = master.seal_check()?;
    drop(master);
    let db = Db::open(&db_path)?;
    // The file (and the WAL, which SQLite creates with the database file's mode) is private
    // whatever the directory's mode (an existing one keeps its own).
    std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(&db_path))?;
    let now = now_ms();
    let new = vault_tokens::issue(
        vec!["admin".into()],
        "initial admin token".into(),
        now,
        None,
    )?;
    let record = new.record.clone();
    db.write(move |tx| {
        db::put_key_check(tx, &check)?;
        db::insert_token(tx, &record)?;
        audit_log::write(
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

/// How a master key fits a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyFit {
    /// It opens the key check.
    Checked,
    /// The store has no key check yet (made before it): it opens the first stored value, or
    /// there is none.
    Unchecked,
    /// It does not open the store.
    Wrong,
}

/// Does `master` open the store on `conn`? By the key check (migration 2), or on a store made
/// before it, by one stored value.
pub(super) fn key_fit(conn: &rusqlite::Connection, master: &MasterKey) -> Result<KeyFit> {
    if let Some(sealed) = db::get_key_check(conn)? {
        return Ok(if master.opens_check(&sealed) {
            KeyFit::Checked
        } else {
            KeyFit::Wrong
        });
    }
    let sample = conn
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
        if let Some(row) = db::get_version(conn, &owner, &key, version)? {
            if open_version(master, &owner, &key, &row).is_err() {
                return Ok(KeyFit::Wrong);
            }
        }
    }
    Ok(KeyFit::Unchecked)
}

/// The master key Transit unwraps from `wrapped`. A rekey to a Transit key commits the
/// database, then renames `master.key.transit.new` over `master.key.transit`
/// (`service::rekey`); killed between the two, the store is opened by the `.new` file's key
/// only, so that one is tried first and, when it opens the store, the rename is finished
/// here. A `.new` file beside a key that opens the store is a rekey that never committed, and
/// is removed.
async fn open_transit(db: &Db, key: &TransitKey, wrapped: &Path) -> Result<Arc<MasterKey>> {
    let pending = wrapped.with_file_name(WRAPPED_NEW_FILE);
    if pending.exists() {
        if let Ok(bytes) = crate::vault::transit::load(key, &pending) {
            let new = Arc::new(MasterKey::from_bytes(&bytes));
            let probe = new.clone();
            if db.read(move |tx| key_fit(tx, &probe)).await? == KeyFit::Checked {
                std::fs::rename(&pending, wrapped).map_err(|source| Error::Io {
                    path: pending.clone(),
                    source,
                })?;
                tracing::warn!(
                    file = %wrapped.display(),
                    "finished an interrupted rekey to a Transit key"
                );
                return Ok(new);
            }
        }
    }
    let bytes = crate::vault::transit::load(key, wrapped)?;
    let master = Arc::new(MasterKey::from_bytes(&bytes));
    if pending.exists() {
        let probe = master.clone();
        if db.read(move |tx| key_fit(tx, &probe)).await? != KeyFit::Wrong {
            let _ = std::fs::remove_file(&pending);
        }
    }
    Ok(master)
}

/// Takes `DATA_DIR/serve.lock` exclusively, or says which directory is already served.
pub(super) fn lock_data_dir(
    data_dir: &std::path::Path,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
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
    /// Open an initialized data directory: load the master key (`KeySource::resolve`), check it
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
        let source = KeySource::resolve(
            config.master_key_file.as_deref(),
            config.master_key_transit.as_ref(),
            &config.data_dir,
        );
        let db = Db::open(&db_path)?;
        let master = match &source {
            KeySource::Transit { key, wrapped } => open_transit(&db, key, wrapped).await?,
            other => Arc::new(MasterKey::load(other)?),
        };
        let check = master.clone();
        // A store rekeyed to Transit may still have its old key file about: say which URL
        // opens it now.
        let wrapped = config.data_dir.join(WRAPPED_FILE);
        let hint = match (&source, crate::vault::transit::read_wrapped(&wrapped)) {
            (KeySource::Transit { .. }, _) | (_, Err(_)) => String::new(),
            (_, Ok((_, named))) => format!(
                "; {} says OpenBao Transit keeps this store's key: pass --master-key {}",
                wrapped.display(),
                named.unwrap_or_else(|| "openbao-transit://HOST:PORT/MOUNT/KEY".into())
            ),
        };
        let wrong = {
            let source = source.to_string();
            let db_path = db_path.clone();
            move || Error::MasterKey {
                source_name: source,
                reason: format!(
                    "does not open {} (wrong key?); give the key this store was created or \
                     last rekeyed with{hint}",
                    db_path.display()
                ),
            }
        };
        let (token_records, seqs, has_check) = db
            .read(move |tx| {
                // Fail early with a clear message if the key does not match the data, rather
                // than on the first read of a launcher.
                let has_check = match key_fit(tx, &check)? {
                    KeyFit::Checked => true,
                    KeyFit::Unchecked => false,
                    KeyFit::Wrong => return Err(wrong()),
                };
                let mut states = Vec::new();
                for (owner, seq) in db::all_owner_seqs(tx)? {
                    let state = OwnerState::read(tx, &owner, seq)?;
                    states.push((owner, state));
                }
                Ok((db::list_tokens(tx)?, states, has_check))
            })
            .await?;
        if !has_check {
            // A store made before the key check: add it now that the key proved right.
            let sealed = master.seal_check()?;
            db.write(move |tx| db::put_key_check(tx, &sealed)).await?;
        }
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
                max_waiters: config.max_waiters,
                metrics: Arc::default(),
                db_path,
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
}
