//! Backup and restore of a data directory's database (issue 15). A backup is one SQLite
//! file: a consistent snapshot taken through SQLite's online backup API while the server runs
//! and takes writes, mode 0600. It never holds the master key (the key lives in its own file,
//! variable or credential, never in the database), so a backup and its key are kept apart
//! and a stolen backup alone opens nothing. Restore goes into a new or empty data directory
//! only, after checking that the given master key opens the backup. A store whose master key
//! OpenBao Transit keeps has its wrapped key (Transit's ciphertext) copied beside the backup
//! as `BACKUP.transit`; restore with `--master-key` unwraps it through Transit.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::lifecycle::{key_fit, KeyFit};
use super::DB_FILE;
use crate::vault::crypto::{KeySource, MasterKey};
use crate::vault::db;
use crate::vault::error::{Error, Result};
use crate::vault::transit::WRAPPED_FILE;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// `PATH.partial` beside `path`: the copy is made there and renamed into place, so `path`
/// holds a whole backup or nothing.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copy `src` (a database) to `dst` through `.partial` (created 0600 first, removed on any
/// failure), fsynced and renamed.
fn copy_into_place(src: &Path, dst: &Path) -> Result<()> {
    let tmp = partial(dst);
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    drop(made);
    let result = db::copy_online(src, &tmp).and_then(|()| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, dst).map_err(io(dst))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let mut journal = tmp.clone().into_os_string();
        journal.push("-journal");
        let _ = std::fs::remove_file(journal);
    }
    result
}

/// `BACKUP.transit` beside a backup: the store's master key as Transit wrapped it
/// (`transit::WRAPPED_FILE`). Not a key: opening it takes OpenBao and a token.
pub fn wrapped_beside(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".transit");
    PathBuf::from(name)
}

/// Copies a wrapped-key file to `dst` (a new file, 0600, synced).
fn copy_wrapped(src: &Path, dst: &Path) -> Result<()> {
    let text = std::fs::read(src).map_err(io(src))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(io(dst))?;
    std::io::Write::write_all(&mut file, &text).map_err(io(dst))?;
    file.sync_all().map_err(io(dst))
}

/// `agent-vault backup`: a consistent copy of `DATA_DIR/vault.db` at `dest` (which must not
/// exist), while a server may run on it, and for a store whose key Transit keeps, the
/// wrapped key at `DEST.transit` ([`wrapped_beside`]). Returns the copy's size in bytes.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<u64> {
    let src = data_dir.join(DB_FILE);
    if !src.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} does not exist: is {} an agent-vault data directory?",
            src.display(),
            data_dir.display()
        )));
    }
    if dest.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} exists; give a new file name (a backup never overwrites one)",
            dest.display()
        )));
    }
    let wrapped = data_dir.join(WRAPPED_FILE);
    let wrapped_dest = wrapped_beside(dest);
    if wrapped.exists() && wrapped_dest.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} exists; give a new file name (a backup never overwrites one)",
            wrapped_dest.display()
        )));
    }
    db::open_read_only(&src)?;
    copy_into_place(&src, dest)?;
    if wrapped.exists() {
        copy_wrapped(&wrapped, &wrapped_dest)?;
    }
    Ok(std::fs::metadata(dest).map_err(io(dest))?.len())
}

/// `agent-vault restore`: check that the master key (`KeySource::resolve(key_file, …)`)
/// opens `backup`, then copy it into `data_dir` (created 0700, or existing and empty).
/// Nothing is written before every check passed. Returns where the key came from.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    key_file: Option<&Path>,
    transit: Option<&crate::vault::transit::TransitKey>,
) -> Result<KeySource> {
    if !backup.is_file() {
        return Err(Error::InvalidRequest(format!(
            "{} is not a file",
            backup.display()
        )));
    }
    let conn = db::open_read_only(backup)?;
    let source = KeySource::resolve(key_file, transit, data_dir);
    // A Transit key is unwrapped from the copy `backup` made beside the database.
    let (master, wrapped) = match &source {
        KeySource::Transit { key, .. } => {
            let from = wrapped_beside(backup);
            if !from.exists() {
                return Err(Error::MasterKey {
                    source_name: source.to_string(),
                    reason: format!(
                        "{} does not exist: `agent-vault backup` writes the wrapped key there, \
                         beside a backup of a store whose key Transit keeps; put it back, or \
                         restore with the key that store used",
                        from.display()
                    ),
                });
            }
            let bytes = crate::vault::transit::load(key, &from)?;
            (MasterKey::from_bytes(&bytes), Some(from))
        }
        other => (MasterKey::load(other)?, None),
    };
    if key_fit(&conn, &master)? == KeyFit::Wrong {
        return Err(Error::MasterKey {
            source_name: source.to_string(),
            reason: format!(
                "does not open the backup {} (wrong key?); give the key of the store it was \
                 taken from",
                backup.display()
            ),
        });
    }
    drop(conn);
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidRequest(format!(
                    "{} is not empty; restore only into a new or empty directory (nothing \
                     was changed)",
                    data_dir.display()
                )));
            }
            let mode = std::fs::metadata(data_dir)
                .map_err(io(data_dir))?
                .permissions()
                .mode();
            if mode & 0o022 != 0 {
                return Err(Error::InvalidRequest(format!(
                    "{} (mode {:o}) is writable by group or others; use a private directory \
                     (mode 0700) for the store",
                    data_dir.display(),
                    mode & 0o7777
                )));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(io(data_dir))?;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(data_dir))?;
        }
        Err(err) => return Err(io(data_dir)(err)),
    }
    copy_into_place(backup, &data_dir.join(DB_FILE))?;
    if let Some(from) = wrapped {
        copy_wrapped(&from, &data_dir.join(WRAPPED_FILE))?;
    }
    Ok(source)
}
