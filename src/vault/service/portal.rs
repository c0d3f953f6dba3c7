//! What the web portal (`vault::portal`) needs beyond the API's own calls: the sign-in rule
//! (an admin or write token only; a read token is refused, both audited), the re-check of a
//! session's token on every request (so revoking or expiring the token ends its sessions),
//! and the overview of the agents a caller manages. Every other portal action goes through
//! the same `Vault` methods as the JSON API, with the same rules and audit records.

use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;
use tracing::info;

use super::{format_ms, now_ms, record, validate_owner_name, Ctx, Owner, Vault};
use crate::vault::db::{self, PROJECT};
use crate::vault::error::{Error, Result};
use crate::vault::tokens::{agent_selected, selector_prefix, Caller, Scope};

/// One agent as the portal's agents page shows it: names and counts, never a value.
#[derive(Debug, Serialize)]
pub struct AgentOverview {
    pub agent: String,
    /// Entries of the agent the caller manages.
    pub entries: usize,
    /// The latest change of one of those entries.
    pub updated_at: Option<String>,
    /// The latest run-time read of one of those entries.
    pub last_read_at: Option<String>,
}

/// Whether launchers have read an entry's current value: the portal's live rotation mark.
#[derive(Debug, Serialize)]
pub struct EntryDelivery {
    pub key: String,
    pub version: i64,
    /// When the current value (version) was written.
    pub value_since: String,
    pub last_read_at: Option<String>,
    /// A run-time read happened at or after the current value was written: a launcher
    /// (one waiting on the long-poll, or one starting) has the value now.
    pub delivered: bool,
}

impl Vault {
    /// Sign in to the portal with `token`: only a token that manages something (admin or a
    /// `secrets:write:` scope) may; a read token is refused with 403 and an audit record.
    /// The returned caller keeps the token's scopes (for the re-check); the portal drops the
    /// read scopes from what a session may use, so a browser never reads values at run time.
    pub async fn portal_sign_in(
        &self,
        token: &SecretString,
        remote: Option<String>,
    ) -> Result<Caller> {
        let caller = self.authenticate(Some(token))?;
        let manages = caller
            .scopes
            .iter()
            .any(|scope| matches!(scope, Scope::Admin | Scope::Write { .. }));
        let ctx = Ctx {
            caller: caller.clone(),
            remote,
        };
        let outcome = if manages { "ok" } else { "denied" };
        self.inner
            .audit
            .push(record(
                &ctx,
                "portal.sign_in",
                &Owner::Project,
                Vec::new(),
                outcome,
            ))
            .await;
        info!(token_id = %caller.token_id, outcome, "portal sign-in");
        if manages {
            Ok(caller)
        } else {
            Err(Error::Forbidden(format!(
                "token {} is a read-only token; sign in with an admin token or a \
                 secrets:write:AGENT/* token",
                caller.token_id
            )))
        }
    }

    /// Is the token `token_id` still valid with these `scopes` (not revoked, not expired)?
    /// Asked on every request of a portal session.
    pub fn recheck_token(&self, token_id: &str, scopes: &Arc<[Scope]>) -> Result<()> {
        self.inner.tokens.recheck(token_id, scopes, now_ms())
    }

    /// The agents the caller manages with their entry counts: every agent that has entries
    /// for an admin, the agents named by its write scopes for a write token (counting only
    /// the keys those scopes match).
    pub async fn agents_overview(&self, ctx: &Ctx) -> Result<Vec<AgentOverview>> {
        let caller = ctx.caller.clone();
        self.inner
            .db
            .read(move |tx| {
                let mut agents: Vec<String> = if caller.is_admin() {
                    db::all_owner_seqs(tx)?
                        .into_iter()
                        .map(|(owner, _)| owner)
                        .filter(|owner| owner != PROJECT)
                        .collect()
                } else {
                    let selectors: Vec<&str> = caller
                        .scopes
                        .iter()
                        .filter_map(|scope| match scope {
                            Scope::Write { agent, .. } => Some(agent.as_str()),
                            _ => None,
                        })
                        .collect();
                    // A `PREFIX/**` scope shows the agents below the prefix that exist.
                    let below: Vec<String> =
                        if selectors.iter().any(|s| selector_prefix(s).is_some()) {
                            db::all_owner_seqs(tx)?
                                .into_iter()
                                .map(|(owner, _)| owner)
                                .filter(|owner| {
                                    owner != PROJECT
                                        && selectors.iter().any(|s| {
                                            selector_prefix(s).is_some() && agent_selected(s, owner)
                                        })
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                    selectors
                        .iter()
                        .filter(|s| selector_prefix(s).is_none())
                        .map(|s| s.to_string())
                        .chain(below)
                        .collect()
                };
                agents.sort();
                agents.dedup();
                let mut out = Vec::with_capacity(agents.len());
                for agent in agents {
                    let entries: Vec<_> = db::list_entries(tx, &agent)?
                        .into_iter()
                        .filter(|entry| caller.can_write(&agent, &entry.key))
                        .collect();
                    // An admin sees agents that have entries; a write token its own, empty or not.
                    if entries.is_empty() && caller.is_admin() {
                        continue;
                    }
                    out.push(AgentOverview {
                        entries: entries.len(),
                        updated_at: entries.iter().map(|e| e.updated_at).max().map(format_ms),
                        last_read_at: entries
                            .iter()
                            .filter_map(|e| e.last_read_at)
                            .max()
                            .map(format_ms),
                        agent,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// For each entry of `agent` the caller manages: has a run-time read happened since its
    /// current value was written? A rotation wakes the agent's long-poll waiters at commit,
    /// and their re-read records "last read at", so the mark turns within moments when a
    /// launcher is waiting, and stays off while none is.
    pub async fn entry_delivery(&self, ctx: &Ctx, agent: String) -> Result<Vec<EntryDelivery>> {
        let owner = Owner::Agent(agent.clone());
        validate_owner_name(&owner)?;
        self.require_manage(ctx, "list", &owner, None).await?;
        let caller = ctx.caller.clone();
        self.inner
            .db
            .read(move |tx| {
                let mut out = Vec::new();
                for entry in db::list_entries(tx, &agent)? {
                    if !caller.can_write(&agent, &entry.key) {
                        continue;
                    }
                    let since = db::get_version(tx, &agent, &entry.key, entry.version)?
                        .map_or(entry.updated_at, |row| row.created_at);
                    out.push(EntryDelivery {
                        delivered: entry.last_read_at.is_some_and(|read| read >= since),
                        key: entry.key,
                        version: entry.version,
                        value_since: format_ms(since),
                        last_read_at: entry.last_read_at.map(format_ms),
                    });
                }
                Ok(out)
            })
            .await
    }
}
