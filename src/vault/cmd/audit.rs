//! `agent-vault audit`: the audit trail, newest records last.

use super::flags::AuditArgs;
use super::output::{or_dash, print_json, print_table};
use super::{connect, Result};
use crate::protocol::wire::AuditQuery;

/// `--since 1h` / `30m` / `2d` means that long ago; anything else (RFC 3339, unix seconds)
/// goes to the server as written.
fn since_to_absolute(since: &str) -> String {
    match humantime::parse_duration(since.trim()) {
        Ok(ago) => {
            humantime::format_rfc3339_seconds(std::time::SystemTime::now() - ago).to_string()
        }
        Err(_) => since.to_owned(),
    }
}

pub(super) fn run(args: AuditArgs) -> Result<()> {
    let list = connect(&args.connect)?.audit(&AuditQuery {
        agent: args.agent,
        since: args.since.as_deref().map(since_to_absolute),
        limit: Some(args.limit),
    })?;
    if args.connect.json {
        return print_json(&list);
    }
    let rows = list
        .records
        .iter()
        .map(|r| {
            vec![
                r.at.clone(),
                or_dash(r.token_id.as_deref()),
                r.action.clone(),
                or_dash(r.agent.as_deref()),
                if r.keys.is_empty() {
                    "-".into()
                } else {
                    r.keys.join(",")
                },
                or_dash(r.remote.as_deref()),
                r.outcome.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "AT", "TOKEN", "ACTION", "AGENT", "KEYS", "REMOTE", "OUTCOME",
        ],
        rows,
    );
    Ok(())
}
