//! `rekey` (issue 15): re-wrap every data key under a new master key, in one SQLite
//! transaction, with no server running (it takes the data directory's lock).
//!
//! Atomic by SQLite: every wrapped key and the key check change in one IMMEDIATE transaction,
//! committed once; a crash at any point before the commit leaves the store exactly as it was
//! (opened by the old key), after it the store is opened by the new key only. Values' own
//! ciphertext is untouched (only the data keys are re-wrapped), so the transaction's size is
//! about 60 bytes per version. Offline rather than through the server, so a rekey cannot race
//! a write sealed under the old key, and no API token can start one.

use std::path::Path;
use std::sync::Arc;

use super::lifecycle::{key_fit, lock_data_dir, KeyFit};
use super::{now_ms, DB_FILE};
use crate::vault::audit as audit_log;
use crate::vault::audit::AuditRecord;
use crate::vault::crypto::{Aad, KeySource, MasterKey, KEY_CHECK_AAD};
use crate::vault::db::{self, Db};
use crate::vault::error::{Error, Result};
use crate::vault::transit::{write_wrapped, TransitKey, WRAPPED_FILE, WRAPPED_NEW_FILE};

/// Test hook: milliseconds to sleep after each re-wrapped row, so a test can SIGKILL a rekey
/// in the middle of its transaction. Not a user setting.
const ROW_DELAY_ENV: &str = "AGENT_VAULT_TEST_REKEY_ROW_DELAY_MS";

/// What a rekey did.
#[derive(Debug)]
pub struct Rekeyed {
    /// Versions re-wrapped.
    pub versions: usize,
    /// Where the old key came from.
    pub old: KeySource,
    /// Whether the new key file was created by this rekey.
    pub created: bool,
}

/// The key a rekey moves to.
#[derive(Debug, Clone)]
pub enum NewKey {
    /// `--new-master-key-file`: used if it exists, else created (0600) with a random key.
    File(std::path::PathBuf),
    /// `--new-master-key openbao-transit://…`: a new random key, wrapped by that Transit key
    /// into `DATA_DIR/master.key.transit` (written aside as `.new`, renamed over the old file
    /// once the transaction committed; `Vault::open` finishes a rename a crash cut off).
    Transit(TransitKey),
}

impl std::fmt::Display for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewKey::File(path) => write!(f, "{}", KeySource::Flag(path.clone())),
            NewKey::Transit(key) => write!(f, "the master key wrapped by OpenBao Transit {key}"),
        }
    }
}

/// Re-wrap every data key of `data_dir` from the key `KeySource::resolve(old_key_file,
/// old_transit, …)` to `new`.
pub async fn rekey(
    data_dir: &Path,
    old_key_file: Option<&Path>,
    old_transit: Option<&TransitKey>,
    new_key: &NewKey,
) -> Result<Rekeyed> {
    let db_path = data_dir.join(DB_FILE);
    if !db_path.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} does not exist: is {} an agent-vault data directory?",
            db_path.display(),
            data_dir.display()
        )));
    }
    let _lock = lock_data_dir(data_dir)?;
    let old_source = KeySource::resolve(old_key_file, old_transit, data_dir);
    let old = Arc::new(MasterKey::load(&old_source)?);
    let db = Db::open(&db_path)?;
    // Every check before the new key file is made: a refused rekey changes nothing.
    let check = old.clone();
    let fit = db.read(move |tx| key_fit(tx, &check)).await?;
    if fit == KeyFit::Wrong {
        return Err(Error::MasterKey {
            source_name: old_source.to_string(),
            reason: format!(
                "does not open {} (wrong key?); give the store's current key",
                db_path.display()
            ),
        });
    }
    let wrapped = data_dir.join(WRAPPED_FILE);
    let pending = data_dir.join(WRAPPED_NEW_FILE);
    let (new, created) = match new_key {
        NewKey::File(new_key_file) => {
            let created = !new_key_file.exists();
            let new = if created {
                MasterKey::create_file(new_key_file)?
            } else {
                MasterKey::load(&KeySource::Flag(new_key_file.clone()))?
            };
            (Arc::new(new), created)
        }
        NewKey::Transit(key) => {
            // Random, so it cannot be the old key; wrapped before the transaction, so a
            // refusal by Transit changes nothing. A `.new` left by a rekey that never
            // committed is stale (the old key opens the store, checked above).
            let (bytes, ciphertext) = key.seal_new()?;
            let _ = std::fs::remove_file(&pending);
            write_wrapped(&pending, key, &ciphertext)?;
            (Arc::new(MasterKey::from_bytes(&bytes)), true)
        }
    };
    let probe = new.clone();
    if db.read(move |tx| key_fit(tx, &probe)).await? == KeyFit::Checked {
        return Err(Error::InvalidRequest(format!(
            "{new_key} already opens this store: give a new key"
        )));
    }
    let delay = std::env::var(ROW_DELAY_ENV)
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    let versions = db
        .write(move |tx| {
            let ids = db::all_version_ids(tx)?;
            for (owner, key, version) in &ids {
                let row = db::get_version(tx, owner, key, *version)?.ok_or_else(|| {
                    Error::Internal(format!("{owner}/{key} version {version} vanished"))
                })?;
                let aad = Aad {
                    owner,
                    key,
                    version: *version,
                };
                let sealed = old.rewrap(&new, &aad, &row.sealed)?;
                db::set_wrapped_key(tx, owner, key, *version, &sealed)?;
                if let Some(delay) = delay {
                    std::thread::sleep(delay);
                }
            }
            let check = match db::get_key_check(tx)? {
                Some(sealed) => old.rewrap(&new, &KEY_CHECK_AAD, &sealed)?,
                None => new.seal_check()?,
            };
            db::put_key_check(tx, &check)?;
            audit_log::write(
                tx,
                &AuditRecord {
                    at: now_ms(),
                    token_id: None,
                    action: "store.rekey",
                    agent: None,
                    keys: Vec::new(),
                    remote: None,
                    outcome: "ok",
                    reads: Vec::new(),
                },
            )?;
            Ok(ids.len())
        })
        .await?;
    // Committed: the new key alone opens the store. Put its wrapped copy in place, or (moving
    // away from Transit) remove the wrapped old key, which opens nothing any more.
    match new_key {
        NewKey::Transit(_) => {
            std::fs::rename(&pending, &wrapped).map_err(|source| Error::Io {
                path: pending.clone(),
                source,
            })?;
            if let Ok(dir) = std::fs::File::open(data_dir) {
                let _ = dir.sync_all();
            }
        }
        NewKey::File(_) => {
            if matches!(old_source, KeySource::Transit { .. }) {
                let _ = std::fs::remove_file(&wrapped);
            }
        }
    }
    Ok(Rekeyed {
        versions,
        old: old_source,
        created,
    })
}
