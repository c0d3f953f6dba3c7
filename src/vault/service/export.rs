//! What `migrate openbao` takes out of the store (issue 15): each agent's environment as a
//! launcher would get it (project variables, the agent's own entries winning), decrypted,
//! offline. Only `cmd::migrate` calls this, with the data directory's lock held by an open
//! `Vault` (no server runs), so no API token can ever reach it.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{now_ms, open_version, Vault};
use crate::vault::audit as audit_log;
use crate::vault::audit::AuditRecord;
use crate::vault::db::{self, PROJECT};
use crate::vault::error::{Error, Result};

/// One agent's environment: key → value, in key order.
pub type AgentEnv = BTreeMap<String, SecretString>;

impl Vault {
    /// Every agent with at least one entry, and its environment as `runtime_secrets` would
    /// compose it for a token reading all its keys. Audited (`store.export`, agent names only).
    pub async fn export_agents(&self, purpose: &'static str) -> Result<BTreeMap<String, AgentEnv>> {
        let master = self.inner.master.clone();
        let agents = self
            .inner
            .db
            .read(move |tx| {
                let read_owner = |owner: &str| -> Result<AgentEnv> {
                    let mut env = AgentEnv::new();
                    for entry in db::list_entries(tx, owner)? {
                        let row = db::get_version(tx, owner, &entry.key, entry.version)?
                            .ok_or_else(|| {
                                Error::Internal(format!(
                                    "{owner}/{} has no version {}",
                                    entry.key, entry.version
                                ))
                            })?;
                        let value = open_version(&master, owner, &entry.key, &row)?;
                        env.insert(entry.key, value);
                    }
                    Ok(env)
                };
                let project = read_owner(PROJECT)?;
                let mut agents = BTreeMap::new();
                for (owner, _) in db::all_owner_seqs(tx)? {
                    if owner == PROJECT {
                        continue;
                    }
                    let own = read_owner(&owner)?;
                    if own.is_empty() {
                        continue;
                    }
                    let mut env: AgentEnv = project.clone();
                    env.extend(own);
                    agents.insert(owner, env);
                }
                Ok(agents)
            })
            .await?;
        let names: Vec<String> = agents.keys().cloned().collect();
        self.inner
            .db
            .write(move |tx| {
                audit_log::write(
                    tx,
                    &AuditRecord {
                        at: now_ms(),
                        token_id: None,
                        action: purpose,
                        agent: None,
                        keys: names,
                        remote: None,
                        outcome: "ok",
                        reads: Vec::new(),
                    },
                )
            })
            .await?;
        Ok(agents)
    }
}
