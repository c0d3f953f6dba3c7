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
        let agent = query.agent.clone();
        let rows = self
            .inner
            .db
            .read(move |tx| db::query_audit(tx, agent.as_deref(), since_ms, limit))
            .await?;
        Ok(AuditList { records: rows })
    }
}
