//! Tiers and approval (issue 14 item 2): the gate every run-time read passes, and the
//! admins' list of requests and decisions.
//!
//! A read token whose scope covers a *critical* entry (its agent's or a project variable's)
//! reads nothing until an admin token other than the one that issued it approves it. The
//! request is made at the token's first read attempt, not at issue time: a tier can change
//! after a token exists, and the first read is the moment the rule bites. The store never
//! serves part of a scope (everything but the critical keys): an agent would start with a
//! different environment from the one it was given a token for. The approval belongs to the
//! token and ends with it (expiry, revocation): a new token asks again.

use super::{format_ms, now_ms, record, Ctx, Owner, Vault};
use crate::protocol::wire::{Approval, ApprovalList, ApprovalQuery, Tier};
use crate::vault::audit as audit_log;
use crate::vault::crypto::random_array;
use crate::vault::db::{self, ApprovalRow, PROJECT};
use crate::vault::error::{Error, Result};
use crate::vault::tokens::{Caller, TokenRecord};
use tracing::info;

/// What stops a run-time read: the critical keys the scope covers, and the token's request
/// (none before its first attempt).
pub(super) struct Unapproved {
    critical: Vec<String>,
    request: Option<ApprovalRow>,
}

const PENDING: &str = "pending";
const APPROVED: &str = "approved";
const DENIED: &str = "denied";
const EXPIRED: &str = "expired";

/// A request whose token no longer works shows as `expired`, whatever was decided.
fn status_of(row: &ApprovalRow, token: Option<&TokenRecord>, now: i64) -> String {
    let alive =
        token.is_some_and(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now));
    if alive {
        row.status.clone()
    } else {
        EXPIRED.to_string()
    }
}

impl Vault {
    fn approval_view(&self, row: ApprovalRow, now: i64) -> Approval {
        let token = self.inner.tokens.get(&row.token_id);
        Approval {
            status: status_of(&row, token.as_ref(), now),
            issued_by: token.and_then(|t| t.issued_by),
            id: row.id,
            token_id: row.token_id,
            agent: row.agent,
            keys: row.keys,
            requested_at: format_ms(row.requested_at),
            decided_at: row.decided_at.map(format_ms),
            decided_by: row.decided_by,
        }
    }

    /// The gate of the run-time read of `agent`, inside the read's own transaction: `None`
    /// when the caller's scope covers no critical entry or its token is approved; otherwise
    /// the critical keys and the token's request, if it made one, for [`Vault::refuse_read`].
    pub(super) fn gate(
        tx: &rusqlite::Connection,
        caller: &Caller,
        agent: &str,
    ) -> Result<Option<Unapproved>> {
        let mut critical = Vec::new();
        for owner in [agent, PROJECT] {
            for entry in db::list_entries(tx, owner)? {
                if entry.tier == Tier::Critical && caller.can_read(agent, &entry.key) {
                    critical.push(entry.key);
                }
            }
        }
        if critical.is_empty() {
            return Ok(None);
        }
        let request = db::approval_of_token(tx, &caller.token_id)?;
        if request.as_ref().is_some_and(|row| row.status == APPROVED) {
            return Ok(None);
        }
        Ok(Some(Unapproved { critical, request }))
    }

    /// The answer to a read [`Vault::gate`] stopped: `approval_required` (making the request
    /// at the first attempt) or `approval_denied`. Audited.
    pub(super) async fn refuse_read(&self, ctx: &Ctx, agent: &str, gate: Unapproved) -> Error {
        match self.refusal(ctx, agent, gate).await {
            Ok(error) | Err(error) => error,
        }
    }

    async fn refusal(&self, ctx: &Ctx, agent: &str, gate: Unapproved) -> Result<Error> {
        let Unapproved {
            critical,
            request: existing,
        } = gate;
        let owner = Owner::Agent(agent.to_string());
        let token_id = ctx.caller.token_id.clone();
        let row = match existing {
            Some(row) => row,
            None => {
                let id = hex::encode(random_array::<6>()?.as_ref());
                let row = ApprovalRow {
                    id,
                    token_id: token_id.clone(),
                    agent: agent.to_string(),
                    keys: critical.clone(),
                    status: PENDING.to_string(),
                    requested_at: now_ms(),
                    decided_at: None,
                    decided_by: None,
                };
                let (ctx2, owner2) = (ctx.clone(), owner.clone());
                self.inner
                    .db
                    .write(move |tx| {
                        db::insert_approval(tx, &row)?;
                        // Two first reads at once: one insert wins, both answer with it.
                        let stored = db::approval_of_token(tx, &row.token_id)?
                            .ok_or_else(|| Error::Internal("approval request vanished".into()))?;
                        if stored.id == row.id {
                            audit_log::write(
                                tx,
                                &record(&ctx2, "approval.request", &owner2, vec![row.id.clone()], "pending"),
                            )?;
                            info!(token_id = %row.token_id, approval_id = %row.id, agent = %row.agent, "approval requested");
                        }
                        Ok(stored)
                    })
                    .await?
            }
        };
        let (outcome, error) = match row.status.as_str() {
            DENIED => (
                "approval_denied",
                Error::ApprovalDenied {
                    id: row.id,
                    token_id,
                },
            ),
            _ => (
                "approval_required",
                Error::ApprovalRequired {
                    id: row.id,
                    token_id,
                    agent: agent.to_string(),
                    keys: critical.join(", "),
                },
            ),
        };
        self.inner
            .audit
            .push(record(ctx, "runtime.read", &owner, critical, outcome))
            .await;
        Ok(error)
    }

    /// `GET /v1/approvals` (admin), oldest first.
    pub async fn list_approvals(&self, ctx: &Ctx, query: ApprovalQuery) -> Result<ApprovalList> {
        if let Some(status) = &query.status {
            if ![PENDING, APPROVED, DENIED, EXPIRED].contains(&status.as_str()) {
                return Err(Error::InvalidRequest(format!(
                    "unknown approval status {:?}: pending, approved, denied or expired",
                    status.chars().take(40).collect::<String>()
                )));
            }
        }
        self.require_admin(ctx, "list approvals").await?;
        let rows = self.inner.db.read(|tx| db::list_approvals(tx)).await?;
        let now = now_ms();
        Ok(ApprovalList {
            approvals: rows
                .into_iter()
                .map(|row| self.approval_view(row, now))
                .filter(|a| query.status.as_ref().is_none_or(|s| *s == a.status))
                .collect(),
        })
    }

    /// `POST /v1/approvals/{id}/approve|deny` (admin, not the token's issuer nor the token
    /// itself). Only a pending request of a live token is decided; to take an approval back,
    /// revoke the token.
    pub async fn decide_approval(&self, ctx: &Ctx, id: String, approve: bool) -> Result<Approval> {
        let action = if approve {
            "approval.approve"
        } else {
            "approval.deny"
        };
        self.require_admin(ctx, "decide approvals").await?;
        let row = self
            .inner
            .db
            .read({
                let id = id.clone();
                move |tx| db::get_approval(tx, &id)
            })
            .await?
            .ok_or_else(|| Error::NotFound(format!("approval request {id}")))?;
        let owner = Owner::Agent(row.agent.clone());
        let token = self.inner.tokens.get(&row.token_id);
        let approver = ctx.caller.token_id.clone();
        let why = if approver == row.token_id {
            Some("it is the token waiting")
        } else if token.as_ref().and_then(|t| t.issued_by.as_deref()) == Some(approver.as_str()) {
            Some("it issued the token waiting")
        } else {
            None
        };
        if let Some(why) = why {
            info!(token_id = %approver, approval_id = %row.id, "self-approval refused");
            self.inner
                .audit
                .push(record(
                    ctx,
                    action,
                    &owner,
                    vec![row.id.clone(), row.token_id.clone()],
                    "denied",
                ))
                .await;
            return Err(Error::SelfApproval {
                id: row.id,
                approver,
                why,
            });
        }
        let now = now_ms();
        if status_of(&row, token.as_ref(), now) == EXPIRED {
            return Err(Error::Conflict(format!(
                "token {} of request {} has expired or was revoked: an approval ends with its token; issue a new token",
                row.token_id, row.id
            )));
        }
        if row.status != PENDING {
            return Err(Error::Conflict(format!(
                "request {} is already {}; to take an approval back, revoke token {}",
                row.id, row.status, row.token_id
            )));
        }
        let status = if approve { APPROVED } else { DENIED };
        let (ctx2, owner2, row2, approver2) = (ctx.clone(), owner, row.clone(), approver.clone());
        self.inner
            .db
            .write(move |tx| {
                // Pending is checked again here: two admins deciding at once, one wins.
                if !db::decide_approval(tx, &row2.id, status, now, &approver2)? {
                    return Err(Error::Conflict(format!(
                        "request {} was decided meanwhile; see agent-vault approvals list",
                        row2.id
                    )));
                }
                audit_log::write(
                    tx,
                    &record(
                        &ctx2,
                        action,
                        &owner2,
                        vec![row2.id.clone(), row2.token_id.clone()],
                        "ok",
                    ),
                )
            })
            .await?;
        info!(token_id = %approver, approval_id = %row.id, status, "approval decided");
        let mut row = row;
        row.status = status.to_string();
        row.decided_at = Some(now);
        row.decided_by = Some(approver);
        Ok(self.approval_view(row, now))
    }
}
