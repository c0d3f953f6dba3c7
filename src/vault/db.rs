//! SQLite storage: schema, migrations and every SQL statement. Sees ciphertext only.
//!
//! One writer connection behind a std `Mutex` (SQLite allows one writer at a time anyway, and
//! the lock is never held across an `.await`: every call runs inside `spawn_blocking`), plus a
//! small pool of read-only connections so run-time reads proceed in parallel with writes under
//! WAL. `synchronous=FULL` makes every commit fsync the WAL, so a write the API acknowledged
//! survives `kill -9` and power loss.
//!
//! This module knows nothing of HTTP, tokens' meaning, or plaintext: `service` calls these
//! functions inside [`Db::write`] / [`Db::read`] closures and does the crypto itself.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use super::crypto::Sealed;
use super::error::{Error, Result};
use super::tokens::TokenRecord;
use crate::protocol::wire::{format_ms, AuditEntry, Kind, Tags, Tier};

/// Owner name of project-wide variables. `@` cannot appear in an agent name, so it never
/// collides with one.
pub const PROJECT: &str = "@project";

/// Read-only connections in the pool: enough for two cores' worth of concurrent reads plus
/// slack while one waits on I/O.
const READERS: usize = 4;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('seq', 0);
-- Last change sequence per owner (agent name or '@project'): the run-time revision.
CREATE TABLE owner_seq (owner TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE entries (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_read_at INTEGER,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE TABLE versions (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    key_nonce BLOB NOT NULL,
    wrapped_key BLOB NOT NULL,
    PRIMARY KEY (owner, key, version)
) WITHOUT ROWID;
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    token_id TEXT,
    action TEXT NOT NULL,
    agent TEXT,
    keys TEXT NOT NULL,
    remote TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"#,
    // 2 (issue 15): the master key check, a known plaintext sealed under the master key, so a
    // wrong key is refused at start even on a store with no value yet. One row at most.
    r#"
CREATE TABLE key_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    key_nonce BLOB NOT NULL,
    wrapped_key BLOB NOT NULL
);
-- Which migration ran when, by which agent-vault (`PRAGMA user_version` stays the count that
-- decides; this is its history, for an operator reading an upgraded store). Migrations that
-- ran before this table existed get a row saying so.
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    by_version TEXT NOT NULL
);
"#,
    // 3 (issue 14 items 2 and 3): tags and tiers on every entry, the issuer of each token
    // (an approval must come from another admin), and the approval requests.
    r#"
ALTER TABLE entries ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE entries ADD COLUMN tier TEXT NOT NULL DEFAULT 'standard';
-- NULL: issued by `init` or offline, before issuers were recorded, or by no token.
ALTER TABLE tokens ADD COLUMN issued_by TEXT;
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    token_id TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    keys TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT
) WITHOUT ROWID;
"#,
];

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// The only connection that writes. A std mutex: held only inside `spawn_blocking`.
    writer: Arc<Mutex<Connection>>,
    /// Read-only connections; the semaphore guarantees a permit holder finds one in the Vec.
    readers: Arc<(Semaphore, Mutex<Vec<Connection>>)>,
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Db {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer, path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path)?;
            configure(&reader)?;
            reader.pragma_update(None, "query_only", "ON")?;
            readers.push(reader);
        }
        Ok(Db {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new((Semaphore::new(READERS), Mutex::new(readers))),
        })
    }

    /// Run `f` in one IMMEDIATE transaction on the writer; commit if it returns Ok, roll back
    /// otherwise (all-or-nothing).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| Error::Internal("database writer lock poisoned".into()))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|err| Error::Internal(format!("database task failed: {err}")))?
    }

    /// Run `f` in one read transaction (a consistent snapshot) on a pooled reader.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let _permit = readers
            .0
            .acquire()
            .await
            .map_err(|_| Error::Internal("reader pool closed".into()))?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = {
                let mut conns = pool
                    .1
                    .lock()
                    .map_err(|_| Error::Internal("reader pool lock poisoned".into()))?;
                conns
                    .pop()
                    .ok_or_else(|| Error::Internal("reader pool empty despite permit".into()))?
            };
            let result = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            if let Ok(mut conns) = pool.1.lock() {
                conns.push(conn);
            }
            result
        })
        .await
        .map_err(|err| Error::Internal(format!("database task failed: {err}")))?
    }
}

impl Db {
    /// For `/readyz`: the writer takes SQLite's write lock (an IMMEDIATE transaction, rolled
    /// back at once), so a locked, read-only or vanished database shows as not ready.
    pub async fn check_writable(&self) -> Result<()> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| Error::Internal("database writer lock poisoned".into()))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("UPDATE meta SET value = value WHERE name = 'seq'", [])?;
            tx.rollback()?;
            Ok(())
        })
        .await
        .map_err(|err| Error::Internal(format!("database task failed: {err}")))?
    }
}

/// Copy the database at `src` into a new file `dst` through SQLite's online backup API, in
/// one step: a consistent snapshot of one read transaction, which under WAL blocks no writer.
/// The copy is left in rollback-journal mode (one self-contained file) and checked with
/// `PRAGMA integrity_check`. `dst` must not hold a database.
pub fn copy_online(src: &Path, dst: &Path) -> Result<()> {
    use rusqlite::OpenFlags;
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut target = Connection::open(dst)?;
    {
        use rusqlite::backup::StepResult;
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        // -1: every page in one step, under one read transaction (rusqlite's
        // `run_to_completion` takes positive steps only, and a step-wise copy restarts
        // whenever the server commits, which under steady writes may be forever).
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // Busy or locked by a writer for a moment: try again.
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }
    target.pragma_update(None, "journal_mode", "DELETE")?;
    let verdict: String = target.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(Error::Internal(format!(
            "the copy failed SQLite's integrity check: {verdict}"
        )));
    }
    Ok(())
}

/// A read-only connection to an agent-vault database that is not served (a backup), or an
/// error saying it is not one: no `meta` table, or no migration applied.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let not_ours =
        || Error::InvalidRequest(format!("{} is not an agent-vault database", path.display()));
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|_| not_ours())?;
    let has_meta = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(|_| not_ours())?
        .is_some();
    if version < 1 || !has_meta {
        return Err(not_ours());
    }
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
            binary: env!("CARGO_PKG_VERSION"),
        });
    }
    Ok(conn)
}

/// This binary's schema version: how many migrations it knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Apply the migrations a database lacks, each in its own transaction with its
/// `user_version` bump and its `schema_migrations` row; refuse one written by a newer binary
/// ([`Error::SchemaTooNew`]) before changing anything.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if done > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: done,
            known: SCHEMA_VERSION,
            binary: env!("CARGO_PKG_VERSION"),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let version = (index + 1) as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        let has_history = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if has_history {
            for earlier in 1..version {
                tx.execute(
                    "INSERT OR IGNORE INTO schema_migrations (version, applied_at, by_version)
                     VALUES (?1, 0, 'before schema history')",
                    params![earlier],
                )?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at, by_version) VALUES (?1, ?2, ?3)",
                params![version, now, env!("CARGO_PKG_VERSION")],
            )?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// The master key check, if one was written (see migration 2).
pub fn get_key_check(conn: &Connection) -> Result<Option<Sealed>> {
    // A database from before migration 2 (a backup being restored) has no table yet.
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_check'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_table {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT nonce, ciphertext, key_nonce, wrapped_key FROM key_check WHERE id = 1",
            [],
            |row| {
                Ok(Sealed {
                    nonce: row.get(0)?,
                    ciphertext: row.get(1)?,
                    key_nonce: row.get(2)?,
                    wrapped_key: row.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Write (or replace) the master key check.
pub fn put_key_check(tx: &Transaction<'_>, sealed: &Sealed) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO key_check (id, nonce, ciphertext, key_nonce, wrapped_key)
         VALUES (1, ?1, ?2, ?3, ?4)",
        params![
            sealed.nonce,
            sealed.ciphertext,
            sealed.key_nonce,
            sealed.wrapped_key
        ],
    )?;
    Ok(())
}

/// Every stored version's identity (owner, key, version), for `rekey`.
pub fn all_version_ids(conn: &Connection) -> Result<Vec<(String, String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT owner, key, version FROM versions ORDER BY owner, key, version")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replace one version's wrapped data key (and its nonce), for `rekey`.
pub fn set_wrapped_key(
    tx: &Transaction<'_>,
    owner: &str,
    key: &str,
    version: i64,
    sealed: &Sealed,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE versions SET key_nonce = ?4, wrapped_key = ?5
         WHERE owner = ?1 AND key = ?2 AND version = ?3",
    )?
    .execute(params![
        owner,
        key,
        version,
        sealed.key_nonce,
        sealed.wrapped_key
    ])?;
    Ok(())
}

/// One entry's metadata row.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub owner: String,
    pub key: String,
    pub kind: Kind,
    pub description: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_read_at: Option<i64>,
    pub tags: Tags,
    pub tier: Tier,
}

/// One kept version (metadata and ciphertext).
#[derive(Clone)]
pub struct VersionRow {
    pub version: i64,
    pub kind: Kind,
    pub created_at: i64,
    pub sealed: Sealed,
}

fn kind_of(text: String) -> Kind {
    // Only `service` writes this column, always from Kind::as_str.
    Kind::parse(&text).unwrap_or(Kind::Secret)
}

/// Take the next number of the global change sequence.
pub fn next_seq(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx.query_row(
        "UPDATE meta SET value = value + 1 WHERE name = 'seq' RETURNING value",
        [],
        |row| row.get(0),
    )?)
}

pub fn set_owner_seq(tx: &Transaction<'_>, owner: &str, seq: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO owner_seq (owner, seq) VALUES (?1, ?2)
         ON CONFLICT (owner) DO UPDATE SET seq = excluded.seq",
        params![owner, seq],
    )?;
    Ok(())
}

pub fn owner_seq(conn: &Connection, owner: &str) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM owner_seq WHERE owner = ?1",
            params![owner],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub fn all_owner_seqs(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT owner, seq FROM owner_seq")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

const ENTRY_COLUMNS: &str =
    "owner, key, kind, description, version, created_at, updated_at, last_read_at, tags, tier";

fn entry_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        owner: row.get(0)?,
        key: row.get(1)?,
        kind: kind_of(row.get(2)?),
        description: row.get(3)?,
        version: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
        last_read_at: row.get(7)?,
        // Only `service` writes these columns, from validated tags and Tier::as_str.
        tags: serde_json::from_str(&row.get::<_, String>(8)?).unwrap_or_default(),
        tier: Tier::parse(&row.get::<_, String>(9)?).unwrap_or(Tier::Critical),
    })
}

pub fn get_entry(conn: &Connection, owner: &str, key: &str) -> Result<Option<EntryRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE owner = ?1 AND key = ?2"),
            params![owner, key],
            entry_from,
        )
        .optional()?)
}

pub fn list_entries(conn: &Connection, owner: &str) -> Result<Vec<EntryRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE owner = ?1 ORDER BY key"
    ))?;
    let rows = stmt.query_map(params![owner], entry_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn upsert_entry(tx: &Transaction<'_>, entry: &EntryRow) -> Result<()> {
    let tags = serde_json::to_string(&entry.tags)
        .map_err(|err| Error::Internal(format!("encoding tags: {err}")))?;
    tx.execute(
        "INSERT INTO entries (owner, key, kind, description, version, created_at, updated_at, last_read_at, tags, tier)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (owner, key) DO UPDATE SET kind = excluded.kind,
             description = excluded.description, version = excluded.version,
             updated_at = excluded.updated_at, tags = excluded.tags, tier = excluded.tier",
        params![
            entry.owner,
            entry.key,
            entry.kind.as_str(),
            entry.description,
            entry.version,
            entry.created_at,
            entry.updated_at,
            entry.last_read_at,
            tags,
            entry.tier.as_str()
        ],
    )?;
    Ok(())
}

pub fn delete_entry(tx: &Transaction<'_>, owner: &str, key: &str) -> Result<bool> {
    tx.execute(
        "DELETE FROM versions WHERE owner = ?1 AND key = ?2",
        params![owner, key],
    )?;
    Ok(tx.execute(
        "DELETE FROM entries WHERE owner = ?1 AND key = ?2",
        params![owner, key],
    )? > 0)
}

/// A version row from the seven columns `version, kind, created_at, nonce, ciphertext,
/// key_nonce, wrapped_key` starting at column `first`.
fn version_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        version: row.get(first)?,
        kind: kind_of(row.get(first + 1)?),
        created_at: row.get(first + 2)?,
        sealed: Sealed {
            nonce: row.get(first + 3)?,
            ciphertext: row.get(first + 4)?,
            key_nonce: row.get(first + 5)?,
            wrapped_key: row.get(first + 6)?,
        },
    })
}

pub fn get_version(
    conn: &Connection,
    owner: &str,
    key: &str,
    version: i64,
) -> Result<Option<VersionRow>> {
    Ok(conn
        .query_row(
            "SELECT version, kind, created_at, nonce, ciphertext, key_nonce, wrapped_key
             FROM versions WHERE owner = ?1 AND key = ?2 AND version = ?3",
            params![owner, key, version],
            |row| version_at(row, 0),
        )
        .optional()?)
}

/// Kept versions, newest first.
pub fn list_versions(conn: &Connection, owner: &str, key: &str) -> Result<Vec<VersionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, kind, created_at, nonce, ciphertext, key_nonce, wrapped_key
         FROM versions WHERE owner = ?1 AND key = ?2 ORDER BY version DESC",
    )?;
    let rows = stmt.query_map(params![owner, key], |row| version_at(row, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn insert_version(
    tx: &Transaction<'_>,
    owner: &str,
    key: &str,
    version: &VersionRow,
) -> Result<()> {
    tx.execute(
        "INSERT INTO versions (owner, key, version, kind, created_at, nonce, ciphertext, key_nonce, wrapped_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            owner,
            key,
            version.version,
            version.kind.as_str(),
            version.created_at,
            version.sealed.nonce,
            version.sealed.ciphertext,
            version.sealed.key_nonce,
            version.sealed.wrapped_key
        ],
    )?;
    Ok(())
}

/// Drop all but the newest `keep` versions of one key.
pub fn prune_versions(tx: &Transaction<'_>, owner: &str, key: &str, keep: u32) -> Result<()> {
    tx.execute(
        "DELETE FROM versions WHERE owner = ?1 AND key = ?2 AND version NOT IN
           (SELECT version FROM versions WHERE owner = ?1 AND key = ?2
            ORDER BY version DESC LIMIT ?3)",
        params![owner, key, keep],
    )?;
    Ok(())
}

/// Current version of every entry of `agent` and of the project, for the run-time read.
pub fn runtime_rows(conn: &Connection, agent: &str) -> Result<Vec<(String, String, VersionRow)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.owner, e.key, v.version, v.kind, v.created_at, v.nonce, v.ciphertext,
                v.key_nonce, v.wrapped_key
         FROM entries e JOIN versions v
           ON v.owner = e.owner AND v.key = e.key AND v.version = e.version
         WHERE e.owner IN (?1, ?2) ORDER BY e.key",
    )?;
    let rows = stmt.query_map(params![agent, PROJECT], |row| {
        Ok((row.get(0)?, row.get(1)?, version_at(row, 2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One agent as `GET /v1/agents` shows it: counted from its own entries (agents exist only
/// through their entries; project variables are not counted here).
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub name: String,
    pub entries: i64,
    pub secrets: i64,
    pub last_read_at: Option<i64>,
}

/// Every agent that has at least one entry, by name.
pub fn agents(conn: &Connection) -> Result<Vec<AgentRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT owner, COUNT(*), SUM(kind = 'secret'), MAX(last_read_at) FROM entries
         WHERE owner != ?1 GROUP BY owner ORDER BY owner",
    )?;
    let rows = stmt.query_map(params![PROJECT], |row| {
        Ok(AgentRow {
            name: row.get(0)?,
            entries: row.get(1)?,
            secrets: row.get(2)?,
            last_read_at: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many entries `owner` has.
pub fn entry_count(conn: &Connection, owner: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM entries WHERE owner = ?1")?
        .query_row(params![owner], |row| row.get(0))?)
}

pub fn touch_read(tx: &Transaction<'_>, owner: &str, key: &str, at: i64) -> Result<()> {
    tx.prepare_cached("UPDATE entries SET last_read_at = ?3 WHERE owner = ?1 AND key = ?2")?
        .execute(params![owner, key, at])?;
    Ok(())
}

pub fn insert_token(tx: &Transaction<'_>, record: &TokenRecord) -> Result<()> {
    let scopes = serde_json::to_string(&record.scopes)
        .map_err(|err| Error::Internal(format!("encoding scopes: {err}")))?;
    tx.execute(
        "INSERT INTO tokens (id, hash, scopes, description, created_at, expires_at, revoked_at, issued_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            record.id,
            record.hash.as_slice(),
            scopes,
            record.description,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.issued_by
        ],
    )?;
    Ok(())
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, hash, scopes, description, created_at, expires_at, revoked_at, issued_by
         FROM tokens ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |row| {
        let hash: Vec<u8> = row.get(1)?;
        let scopes: String = row.get(2)?;
        Ok((
            TokenRecord {
                id: row.get(0)?,
                hash: [0; 32],
                scopes: Vec::new(),
                description: row.get(3)?,
                created_at: row.get(4)?,
                expires_at: row.get(5)?,
                revoked_at: row.get(6)?,
                issued_by: row.get(7)?,
            },
            hash,
            scopes,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut record, hash, scopes) = row?;
        record.hash = hash
            .try_into()
            .map_err(|_| Error::Internal(format!("token {} has a malformed hash", record.id)))?;
        record.scopes = serde_json::from_str(&scopes)
            .map_err(|_| Error::Internal(format!("token {} has malformed scopes", record.id)))?;
        out.push(record);
    }
    Ok(out)
}

pub fn revoke_token(tx: &Transaction<'_>, id: &str, at: i64) -> Result<bool> {
    let found = tx
        .query_row(
            "SELECT 1 FROM tokens WHERE id = ?1",
            params![id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    tx.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )?;
    Ok(found)
}

/// Raw audit row as stored (keys as a JSON array of names).
pub struct AuditRow<'a> {
    pub at: i64,
    pub token_id: Option<&'a str>,
    pub action: &'a str,
    pub agent: Option<&'a str>,
    pub keys: &'a [String],
    pub remote: Option<&'a str>,
    pub outcome: &'a str,
}

pub fn insert_audit(tx: &Transaction<'_>, row: &AuditRow<'_>) -> Result<()> {
    let keys = serde_json::to_string(row.keys)
        .map_err(|err| Error::Internal(format!("encoding audit keys: {err}")))?;
    tx.prepare_cached(
        "INSERT INTO audit (at, token_id, action, agent, keys, remote, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        row.at,
        row.token_id,
        row.action,
        row.agent,
        keys,
        row.remote,
        row.outcome
    ])?;
    Ok(())
}

/// The newest `limit` records at or after `since_ms` (optionally of one agent), oldest first,
/// as the API shows them: no second record type for the same row.
pub fn query_audit(
    conn: &Connection,
    agent: Option<&str>,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (
            SELECT id, at, token_id, action, agent, keys, remote, outcome FROM audit
            WHERE at >= ?1 AND (?2 IS NULL OR agent = ?2)
            ORDER BY id DESC LIMIT ?3)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![since_ms, agent, limit], audit_entry)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn audit_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let keys: String = row.get(5)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: format_ms(row.get(1)?),
        token_id: row.get(2)?,
        action: row.get(3)?,
        agent: row.get(4)?,
        keys: serde_json::from_str(&keys).unwrap_or_default(),
        remote: row.get(6)?,
        outcome: row.get(7)?,
    })
}

/// The oldest `limit` records with an id past `after` (and at or after `since_ms`,
/// optionally of one agent), oldest first: the next page of a follower, none skipped.
pub fn query_audit_after(
    conn: &Connection,
    agent: Option<&str>,
    since_ms: i64,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, token_id, action, agent, keys, remote, outcome FROM audit
         WHERE id > ?1 AND at >= ?2 AND (?3 IS NULL OR agent = ?3)
         ORDER BY id LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![after, since_ms, agent, limit], audit_entry)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One approval request as stored (see migration 3).
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub id: String,
    pub token_id: String,
    pub agent: String,
    pub keys: Vec<String>,
    pub status: String,
    pub requested_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

const APPROVAL_COLUMNS: &str =
    "id, token_id, agent, keys, status, requested_at, decided_at, decided_by";

fn approval_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: row.get(0)?,
        token_id: row.get(1)?,
        agent: row.get(2)?,
        keys: serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or_default(),
        status: row.get(4)?,
        requested_at: row.get(5)?,
        decided_at: row.get(6)?,
        decided_by: row.get(7)?,
    })
}

/// The approval request of one token, if it has made one.
pub fn approval_of_token(conn: &Connection, token_id: &str) -> Result<Option<ApprovalRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE token_id = ?1"),
            params![token_id],
            approval_from,
        )
        .optional()?)
}

pub fn get_approval(conn: &Connection, id: &str) -> Result<Option<ApprovalRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
            params![id],
            approval_from,
        )
        .optional()?)
}

pub fn list_approvals(conn: &Connection) -> Result<Vec<ApprovalRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals ORDER BY requested_at, id"
    ))?;
    let rows = stmt.query_map([], approval_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Insert a pending request; a token has one request at most (its UNIQUE `token_id`), so
/// two first reads at once insert one and both see it.
pub fn insert_approval(tx: &Transaction<'_>, row: &ApprovalRow) -> Result<()> {
    let keys = serde_json::to_string(&row.keys)
        .map_err(|err| Error::Internal(format!("encoding approval keys: {err}")))?;
    tx.execute(
        "INSERT OR IGNORE INTO approvals (id, token_id, agent, keys, status, requested_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            row.id,
            row.token_id,
            row.agent,
            keys,
            row.status,
            row.requested_at
        ],
    )?;
    Ok(())
}

/// Decide a request that is still pending; false if it is not (decided meanwhile).
pub fn decide_approval(
    tx: &Transaction<'_>,
    id: &str,
    status: &str,
    at: i64,
    by: &str,
) -> Result<bool> {
    Ok(tx.execute(
        "UPDATE approvals SET status = ?2, decided_at = ?3, decided_by = ?4
         WHERE id = ?1 AND status = 'pending'",
        params![id, status, at, by],
    )? == 1)
}
