//! Run-time reads and the long-poll: each owner's state published after every commit,
//! the per-scope revision digest, the bounded waiters, and the one read of values (of the
//! set, or of one key) behind both responses that carry them.

use super::{
    format_ms, now_ms, open_version, record, validate_agent, validate_key, Ctx, Owner, Vault,
    MAX_WAIT,
};
use crate::protocol::wire::{Kind, Origin, RuntimeEntry, RuntimeSecret, RuntimeSecrets};
use crate::vault::db;
use crate::vault::db::PROJECT;
use crate::vault::error::{Error, Result};
use crate::vault::tokens::Caller;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info};

/// Bump the global sequence, make it the owner's last change, and read the owner's entries
/// as of this change (in the same transaction, so the state matches the commit).
pub(super) fn bump(tx: &rusqlite::Transaction<'_>, owner: &str) -> Result<OwnerState> {
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
    pub(super) seq: i64,
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
    pub(super) fn read(conn: &rusqlite::Connection, owner: &str, seq: i64) -> Result<OwnerState> {
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
pub(super) fn scope_revision(
    caller: &Caller,
    agent: &str,
    own: &OwnerState,
    project: &OwnerState,
) -> u64 {
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

impl Vault {
    pub(super) fn sender(&self, owner: &str) -> watch::Receiver<Arc<OwnerState>> {
        let mut map = match self.inner.revisions.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(owner.to_string())
            .or_insert_with(|| watch::channel(Arc::default()).0)
            .subscribe()
    }

    pub(super) fn publish(&self, owner: &str, state: OwnerState) {
        let mut map = match self.inner.revisions.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let sender = map
            .entry(owner.to_string())
            .or_insert_with(|| watch::channel(Arc::default()).0);
        // Commits may publish out of order; keep the latest so a state never goes back.
        let mut state = Some(state);
        self.inner.metrics.changed();
        sender.send_if_modified(|current| match state.take() {
            Some(state) if state.seq > current.seq => {
                *current = Arc::new(state);
                true
            }
            _ => false,
        });
    }

    /// The in-memory revision of `agent` as `caller` sees it.
    pub(super) fn revision(&self, caller: &Caller, agent: &str) -> u64 {
        let own = self.sender(agent).borrow().clone();
        let project = self.sender(PROJECT).borrow().clone();
        scope_revision(caller, agent, &own, &project)
    }

    /// Which agent a run-time call is about, and whether the caller may read it.
    pub(super) async fn runtime_agent(&self, ctx: &Ctx, agent: Option<String>) -> Result<String> {
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
                        let denied = self
                            .deny(ctx, "runtime.read", &Owner::Project, Vec::new())
                            .await;
                        return Err(match denied {
                            Error::Forbidden(message) => Error::NotAReadToken(message),
                            other => other,
                        });
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
            let reads_none = ctx.caller.read_agents().is_empty();
            let denied = self
                .deny(ctx, "runtime.read", &Owner::Agent(agent), Vec::new())
                .await;
            return Err(match denied {
                Error::Forbidden(message) if reads_none => Error::NotAReadToken(message),
                other => other,
            });
        }
        Ok(agent)
    }

    /// Wait until the revision of the caller's scope differs from `since` (true) or `wait`
    /// passes (false). Wakes on its own agent's and the project's changes (a change outside
    /// its scope leaves the revision as it was, so it waits on), on a revocation and at the
    /// token's expiry, which end the wait with 401. Holds no database resource: only watch
    /// receivers and a semaphore permit.
    pub(super) async fn wait_newer(
        &self,
        ctx: &Ctx,
        agent: &str,
        since: u64,
        wait: Duration,
    ) -> Result<bool> {
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
    pub(super) async fn runtime_agent_past(
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
        let (secrets, _) = self.runtime_read(ctx, agent, None).await?;
        Ok(Some(secrets))
    }

    /// `GET /v1/runtime/secrets/{key}`: one value, for an agent that reads at call time. The
    /// same read as the set's, narrowed to `key` (the agent's own entry, else the project's
    /// variable of that name), so it obeys the same rules; a key outside the token's read
    /// scopes is refused (403) before anything is looked up, so the answer tells nothing of
    /// whether it exists.
    pub async fn runtime_secret(
        &self,
        ctx: &Ctx,
        agent: Option<String>,
        key: String,
    ) -> Result<RuntimeEntry> {
        validate_key(&key)?;
        let agent = self.runtime_agent(ctx, agent).await?;
        let (read, at) = self.runtime_read(ctx, agent, Some(&key)).await?;
        let RuntimeSecrets { agent, secrets, .. } = read;
        // `runtime_read` answers `NotFound` when nothing matched, so there is exactly one.
        let secret = secrets
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("one-key read returned no entry".into()))?;
        Ok(RuntimeEntry {
            agent,
            key: secret.name,
            value: secret.value,
            version: secret.version,
            kind: secret.kind,
            origin: secret.origin,
            accessed_at: format_ms(at),
        })
    }

    /// The one run-time read of values, of every key the token may read for `agent` or
    /// (`only`) of one of them: both endpoints go through here, so every rule on reading a
    /// value (scope, re-check, audit, "last read at") holds for both. Returns the read and
    /// the time its audit record carries.
    async fn runtime_read(
        &self,
        ctx: &Ctx,
        agent: String,
        only: Option<&str>,
    ) -> Result<(RuntimeSecrets, i64)> {
        if let Some(key) = only {
            if !ctx.caller.can_read(&agent, key) {
                let owner = Owner::Agent(agent.clone());
                let denied = self
                    .deny(ctx, "runtime.read", &owner, vec![key.to_string()])
                    .await;
                return Err(match denied {
                    Error::Forbidden(_) => Error::Forbidden(format!(
                        "token {} may not read {key} of agent {agent}: none of its read scopes \
                         matches the key; issue a token with secrets:read:{agent}/{key}",
                        ctx.caller.token_id
                    )),
                    other => other,
                });
            }
        }
        let only_key = only.map(str::to_string);
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
                        if (owner == PROJECT) != project_pass
                            || !caller.can_read(&name, key)
                            || only_key.as_ref().is_some_and(|only| only != key)
                        {
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
                                version: row.version,
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
        if let (Some(key), true) = (only, secrets.is_empty()) {
            info!(token_id = %ctx.caller.token_id, agent = %agent, key, "runtime read of a missing key");
            let owner = Owner::Agent(agent.clone());
            let rec = record(
                ctx,
                "runtime.read",
                &owner,
                vec![key.to_string()],
                "not_found",
            );
            self.inner.audit.push(rec).await;
            return Err(Error::NotFound(format!(
                "entry {key} for agent {agent} (its own or a project variable)"
            )));
        }
        let keys: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
        // At info (issue 13 item 7): who read how many keys from where; never a value.
        info!(
            token_id = %ctx.caller.token_id,
            agent = %agent,
            keys = keys.len(),
            remote = ctx.remote.as_deref().unwrap_or("-"),
            revision,
            "runtime read"
        );
        let mut rec = record(
            ctx,
            "runtime.read",
            &Owner::Agent(agent.clone()),
            keys,
            "ok",
        );
        rec.reads = reads;
        let at = rec.at;
        self.inner.audit.push(rec).await;
        Ok((
            RuntimeSecrets {
                agent,
                revision,
                secrets,
            },
            at,
        ))
    }
}
