//! `agent-vault approvals …`: the requests of read tokens whose scope covers a critical
//! entry (list), and an admin's decision on one (approve, deny).

use super::flags::ApprovalsCommand;
use super::output::{or_dash, print_json, print_table};
use super::{connect, Result};
use crate::protocol::wire::ApprovalQuery;

pub(super) fn run(cmd: ApprovalsCommand) -> Result<()> {
    match cmd {
        ApprovalsCommand::List { status, connect: c } => {
            let list = connect(&c)?.list_approvals(&ApprovalQuery { status })?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .approvals
                .into_iter()
                .map(|a| {
                    vec![
                        a.id,
                        a.status,
                        a.token_id,
                        or_dash(a.issued_by.as_deref()),
                        a.agent,
                        a.keys.join(","),
                        a.requested_at,
                        or_dash(a.decided_by.as_deref()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "STATUS",
                    "TOKEN",
                    "ISSUED BY",
                    "AGENT",
                    "CRITICAL KEYS",
                    "REQUESTED",
                    "DECIDED BY",
                ],
                rows,
            );
            Ok(())
        }
        ApprovalsCommand::Approve { id, connect: c } => decide(&id, true, c),
        ApprovalsCommand::Deny { id, connect: c } => decide(&id, false, c),
    }
}

fn decide(id: &str, approve: bool, c: super::flags::ConnectArgs) -> Result<()> {
    let approval = connect(&c)?.decide_approval(id, approve)?;
    if c.json {
        return print_json(&approval);
    }
    println!(
        "{} request {} of token {} (agent {})",
        approval.status, approval.id, approval.token_id, approval.agent
    );
    Ok(())
}
