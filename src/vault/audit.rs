//! The audit trail: one append-only record per run-time read and per change (and per denied
//! attempt by an authenticated caller): token id, action, agent, key names, time, remote
//! address, outcome. Never a value, never a token.
//!
//! Changes write their record inside the same transaction as the change itself, so a change
//! without its audit record cannot exist. Run-time reads (and denials) go through
//! [`AuditQueue`]: a background task that commits whatever has queued up in one transaction
//! ("group commit"). A read does not wait for an fsync of its own; the cost is that the last
//! few milliseconds of read records can be lost on `kill -9`. `run` flushes the queue on
//! shutdown. The table itself refuses UPDATE and DELETE (triggers in `db`).

use rusqlite::Transaction;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::db::{self, Db};
use super::error::Result;

/// One audit record before it is stored.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: i64,
    pub token_id: Option<String>,
    pub action: &'static str,
    pub agent: Option<String>,
    pub keys: Vec<String>,
    pub remote: Option<String>,
    pub outcome: &'static str,
    /// (owner, key) pairs whose "last read at" this record updates (run-time reads only).
    pub reads: Vec<(String, String)>,
}

/// Store one record inside the caller's transaction.
pub fn write(tx: &Transaction<'_>, record: &AuditRecord) -> Result<()> {
    db::insert_audit(
        tx,
        &db::AuditRow {
            at: record.at,
            token_id: record.token_id.as_deref(),
            action: record.action,
            agent: record.agent.as_deref(),
            keys: &record.keys,
            remote: record.remote.as_deref(),
            outcome: record.outcome,
        },
    )?;
    for (owner, key) in &record.reads {
        db::touch_read(tx, owner, key, record.at)?;
    }
    Ok(())
}

enum Message {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// Queue of records written by a background group-commit task.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Message>,
}

/// Records taken per transaction at most; bounds the time the writer lock is held.
const BATCH: usize = 2048;
/// Queue depth before `push` applies back-pressure to readers.
const QUEUE: usize = 65_536;
/// After the first record arrives, how long the writer waits for more before committing:
/// one transaction (and one fsync) then covers a burst of reads instead of each read paying
/// for its own. It bounds how much later than the read its audit record is durable.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

impl AuditQueue {
    /// Start the writer task on the current runtime.
    pub fn start(db: Db) -> AuditQueue {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(BATCH);
            loop {
                if rx.recv_many(&mut buf, BATCH).await == 0 {
                    break;
                }
                if buf.len() < BATCH {
                    tokio::time::sleep(LINGER).await;
                    while buf.len() < BATCH {
                        match rx.try_recv() {
                            Ok(message) => buf.push(message),
                            Err(_) => break,
                        }
                    }
                }
                let mut records = Vec::with_capacity(buf.len());
                let mut waiters = Vec::new();
                for message in buf.drain(..) {
                    match message {
                        Message::Record(record) => records.push(record),
                        Message::Flush(done) => waiters.push(done),
                    }
                }
                if !records.is_empty() {
                    let count = records.len();
                    let result = db
                        .write(move |tx| {
                            for record in &records {
                                write(tx, record)?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(err) = result {
                        warn!(records = count, error = %err, "writing audit records failed");
                    }
                }
                for done in waiters {
                    let _ = done.send(());
                }
            }
        });
        AuditQueue { tx }
    }

    /// Queue a record; waits only if the queue is full.
    pub async fn push(&self, record: AuditRecord) {
        if self.tx.send(Message::Record(record)).await.is_err() {
            warn!("audit queue closed; record dropped");
        }
    }

    /// Wait until every record queued before this call is committed.
    pub async fn flush(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Message::Flush(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }
}
