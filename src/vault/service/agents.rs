//! The agents the store knows (`GET /v1/agents`) and the rule that a read token names one of
//! them: an agent exists through its own entries, so `secrets:read:suport-bot/*` for an
//! agent with none is refused (`unknown_agent`, with the close names that do exist) unless
//! the request says `allow_empty`. Project variables do not make an agent known: every
//! read token reads them, so a misspelt agent would still look "non-empty" through them.
//! A `PREFIX/**` scope is known when some agent with entries lies below the prefix; its
//! "did you mean" names the prefixes that have agents below them.

use super::{format_ms, Ctx, Vault};
use crate::protocol::wire::{AgentList, AgentSummary};
use crate::vault::db::{self, PROJECT};
use crate::vault::error::{Error, Result};
use crate::vault::tokens::{agent_selected, selector_prefix, Scope};

/// Most suggestions in one "did you mean" hint.
const MAX_SUGGESTIONS: usize = 3;

/// Existing names close to `name` by Damerau-Levenshtein distance (a transposition is one
/// edit, as in `suport-bot` / `support-bot`), closest first: within 2 edits, or a third of
/// the name's length for longer names.
pub(super) fn close_names<'a>(name: &str, names: &'a [String]) -> Vec<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    let mut close: Vec<(usize, &str)> = names
        .iter()
        .map(|candidate| {
            (
                strsim::damerau_levenshtein(name, candidate),
                candidate.as_str(),
            )
        })
        .filter(|&(distance, _)| distance <= limit)
        .collect();
    close.sort();
    close
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, candidate)| candidate)
        .collect()
}

/// The hint of an `unknown_agent` error.
fn hint(close: &[&str]) -> String {
    match close {
        [] => "; no agent with entries has a close name (see `agent-vault agents list`)".into(),
        [one] => format!("; did you mean {one}?"),
        many => format!("; did you mean one of {}?", many.join(", ")),
    }
}

impl Vault {
    pub async fn list_agents(&self, ctx: &Ctx) -> Result<AgentList> {
        self.require_admin(ctx, "list agents").await?;
        // Reads queued so far set their "last read" in the same batch as their audit record.
        self.inner.audit.flush().await;
        let (rows, project_vars) = self
            .inner
            .db
            .read(|tx| Ok((db::agents(tx)?, db::entry_count(tx, PROJECT)?)))
            .await?;
        Ok(AgentList {
            agents: rows
                .into_iter()
                .map(|row| AgentSummary {
                    name: row.name,
                    entries: row.entries.max(0) as u64,
                    secrets: row.secrets.max(0) as u64,
                    plain: (row.entries - row.secrets).max(0) as u64,
                    last_read_at: row.last_read_at.map(format_ms),
                })
                .collect(),
            project_vars: project_vars.max(0) as u64,
        })
    }

    /// Refuse read scopes (already validated) whose agent has no entries, naming the close
    /// agents that have some. Called after the caller is known to be an admin, so the names
    /// go only to someone who may list them anyway.
    pub(super) async fn require_known_agents(&self, scopes: &[String]) -> Result<()> {
        let mut wanted: Vec<String> = scopes
            .iter()
            .filter_map(|text| match Scope::parse(text) {
                Ok(Scope::Read { agent, .. }) => Some(agent),
                _ => None,
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let known: Vec<String> = self
            .inner
            .db
            .read(|tx| Ok(db::agents(tx)?.into_iter().map(|row| row.name).collect()))
            .await?;
        let missing = wanted
            .into_iter()
            .find(|wanted| match selector_prefix(wanted) {
                Some(_) => !known.iter().any(|agent| agent_selected(wanted, agent)),
                None => !known.contains(wanted),
            });
        match missing {
            None => Ok(()),
            Some(wanted) => match selector_prefix(&wanted) {
                // A prefix with no agent below it: suggest the prefixes that have some.
                Some(prefix) => {
                    let mut prefixes: Vec<String> = known
                        .iter()
                        .flat_map(|agent| {
                            agent
                                .match_indices('/')
                                .map(|(at, _)| agent[..at].to_string())
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    prefixes.sort();
                    prefixes.dedup();
                    let close: Vec<String> = close_names(prefix, &prefixes)
                        .into_iter()
                        .map(|p| format!("{p}/**"))
                        .collect();
                    let hint = hint(&close.iter().map(String::as_str).collect::<Vec<_>>());
                    Err(Error::UnknownAgent {
                        agent: wanted,
                        hint,
                    })
                }
                None => {
                    let hint = hint(&close_names(&wanted, &known));
                    Err(Error::UnknownAgent {
                        agent: wanted,
                        hint,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_names;

    #[test]
    fn close_names_find_typos_not_strangers() {
        let names: Vec<String> = ["support-bot", "billing", "sales-bot", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(close_names("suport-bot", &names), ["support-bot"]);
        assert_eq!(close_names("supprot-bot", &names), ["support-bot"]);
        assert_eq!(close_names("biling", &names), ["billing"]);
        assert!(close_names("research", &names).is_empty());
        assert_eq!(close_names("b", &names)[0], "a");
    }
}
