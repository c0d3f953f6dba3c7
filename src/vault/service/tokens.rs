//! Token management: issue (online, or offline by `tokens issue --data-dir`), list, revoke,
//! and the rule that the last admin token cannot be revoked.

use super::{
    format_ms, now_ms, parse_ttl, record, validate_description, Ctx, Owner, Vault, MAX_TTL,
};
use crate::protocol::wire::{IssuedToken, TokenList, TokenMeta, TokenRequest, Ttl};
use crate::vault::audit as audit_log;
use crate::vault::audit::AuditRecord;
use crate::vault::db;
use crate::vault::error::{Error, Result};
use crate::vault::tokens as vault_tokens;
use std::time::Duration;
use tracing::info;

impl Vault {
    pub async fn issue_token(&self, ctx: &Ctx, req: TokenRequest) -> Result<IssuedToken> {
        self.issue_token_as(Some(ctx), req).await
    }

    /// Offline recovery (`agent-vault tokens issue --offline`): issue a token with no caller,
    /// by whoever can open the data directory with its master key while no server runs (the
    /// data-dir lock is held by `open`). Audited as `token.issue.offline`.
    pub async fn issue_token_offline(&self, req: TokenRequest) -> Result<IssuedToken> {
        self.issue_token_as(None, req).await
    }

    pub(super) async fn issue_token_as(
        &self,
        ctx: Option<&Ctx>,
        req: TokenRequest,
    ) -> Result<IssuedToken> {
        let scopes = vault_tokens::validate_scopes(&req.scopes)?;
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
        if !req.allow_empty {
            self.require_known_agents(&scopes).await?;
        }
        let now = now_ms();
        let expires_at = ttl.map(|ttl| now + ttl.as_millis() as i64);
        let mut new = vault_tokens::issue(scopes, description, now, expires_at)?;
        // Recorded so this admin cannot approve the token's critical reads itself.
        new.record.issued_by = ctx.map(|ctx| ctx.caller.token_id.clone());
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
                audit_log::write(tx, &audit_record)
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
                let active_admin = |t: &vault_tokens::TokenRecord| {
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
                audit_log::write(
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
}
