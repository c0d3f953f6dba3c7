//! Reading the audit trail (`GET /v1/audit`); records are written by every other concern
//! through `record` and the `vault::audit` queue.

use super::{parse_since, validate_agent, Ctx, Vault};
use crate::protocol::wire::{AuditList, AuditQuery};
use crate::vault::db;
use crate::vault::error::{Error, Result};

impl Vault {
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
        if query.after.is_some_and(|after| after < 0) {
            return Err(Error::InvalidRequest("after must be 0 or more".into()));
        }
        let (agent, after) = (query.agent.clone(), query.after);
        let rows = self
            .inner
            .db
            .read(move |tx| match after {
                None => db::query_audit(tx, agent.as_deref(), since_ms, limit),
                Some(after) => db::query_audit_after(tx, agent.as_deref(), since_ms, after, limit),
            })
            .await?;
        Ok(AuditList { records: rows })
    }
}
