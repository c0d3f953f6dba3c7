//! `agent-vault agents list`: the agents the store knows (those with entries of their own),
//! with entry counts and the last run-time read, so a misspelt agent in a token's scope is
//! easy to see.

use super::flags::AgentsCommand;
use super::output::{or_dash, print_json, print_table};
use super::{connect, Result};

pub(super) fn run(cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List { connect: c } => {
            let list = connect(&c)?.list_agents()?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .agents
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.entries.to_string(),
                        a.secrets.to_string(),
                        a.plain.to_string(),
                        or_dash(a.last_read_at.as_deref()),
                    ]
                })
                .collect();
            print_table(&["AGENT", "ENTRIES", "SECRETS", "PLAIN", "LAST READ"], rows);
            eprintln!(
                "agent-vault: {} agent(s); {} project variable(s), read by every agent's token \
                 whose pattern matches",
                list.agents.len(),
                list.project_vars
            );
            Ok(())
        }
    }
}
