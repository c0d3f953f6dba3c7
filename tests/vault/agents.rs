//! Issue 13 item 2, the store's side: `agents list` (API and CLI) shows the agents with
//! entries, and a read token for an agent without entries is refused by the server
//! (`unknown_agent`, naming the close agents that exist) unless the request allows it.

use crate::common::vault::{error_code, json, start_vault};
use serde_json::json;

#[test]
fn agents_list_shows_agents_with_entries_and_their_last_read() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    vault.set("support-bot", "API_KEY", "agents-list-value-1");
    vault.set("support-bot", "DB_URL", "agents-list-value-2");
    let (status, body) = vault.put(
        "/v1/agents/billing/secrets/REGION",
        admin,
        json!({"value": "eu-west-1", "kind": "plain"}),
    );
    assert_eq!(status, 201, "{body}");
    vault.put("/v1/vars/SHARED", admin, json!({"value": "shared-value"}));

    let list = vault.get_json("/v1/agents", admin);
    assert_eq!(list["project_vars"], 1, "{list}");
    let agents = list["agents"].as_array().expect("agents array");
    let names: Vec<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["billing", "support-bot"], "{list}");
    assert_eq!(
        (agents[1]["entries"].clone(), agents[1]["secrets"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        (agents[0]["entries"].clone(), agents[0]["plain"].clone()),
        (json!(1), json!(1))
    );
    assert!(agents[1]["last_read_at"].is_null(), "never read: {list}");

    // A run-time read sets the agent's last read.
    let (_, reader) = vault.issue(&["secrets:read:support-bot/*"], None);
    assert_eq!(vault.get("/v1/runtime/secrets", &reader).0, 200);
    let list = vault.get_json("/v1/agents", admin);
    assert!(list["agents"][1]["last_read_at"].is_string(), "{list}");

    // Admin only.
    let (status, body) = vault.get("/v1/agents", &reader);
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));

    // The CLI: a table and JSON, metadata only.
    let out = vault.cli_run(&["agents", "list"], None);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("AGENT"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("support-bot"))
        .unwrap_or_else(|| panic!("no support-bot row: {table}"));
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "{row}");
    let out = vault.cli_run(&["agents", "list", "--json"], None);
    assert!(out.status.success(), "{out:?}");
    let listed = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(listed["agents"][0]["name"], "billing");
    vault.assert_not_stored_or_logged(&["agents-list-value-1", "agents-list-value-2"]);
    for out in [&table.to_string(), &listed.to_string()] {
        assert!(!out.contains("agents-list-value"), "{out}");
    }
}

#[test]
fn a_read_token_for_an_agent_without_entries_is_refused_with_a_suggestion() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    vault.set("support-bot", "API_KEY", "unknown-agent-value");
    vault.put("/v1/vars/SHARED", admin, json!({"value": "shared-value"}));

    // The API: 400 unknown_agent naming the close agent; nothing issued.
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["secrets:read:suport-bot/*"]}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "unknown_agent"),
        "{body}"
    );
    let message = json(&body)["error"]["message"].to_string();
    assert!(
        message.contains("suport-bot") && message.contains("did you mean support-bot?"),
        "{message}"
    );
    assert_eq!(
        vault.get_json("/v1/tokens", admin)["tokens"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "only the admin token exists"
    );
    // One bad scope among good ones refuses the whole token.
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["secrets:read:support-bot/*", "secrets:read:nobody/*"]}),
    );
    assert_eq!((status, error_code(&body).as_str()), (400, "unknown_agent"));
    // `nobody` has no entries of its own; the project variable does not make it known.
    assert!(body.contains("agents list"), "no close name: {body}");
    // Write scopes manage entries that may not exist yet: allowed.
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["secrets:write:new-bot/*"]}),
    );
    assert_eq!(status, 201, "{body}");
    // allow_empty issues it; the right name issues without it.
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["secrets:read:suport-bot/*"], "allow_empty": true}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["secrets:read:support-bot/*"]}),
    );
    assert_eq!(status, 201, "{body}");

    // The CLI: the server's message, non-zero exit, no token on stdout; --allow-empty issues.
    let out = vault.cli_run(
        &["tokens", "issue", "--scope", "secrets:read:suport-bot/*"],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did you mean support-bot?") && stderr.contains("--allow-empty"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = vault.cli_run(
        &[
            "tokens",
            "issue",
            "--scope",
            "secrets:read:suport-bot/*",
            "--allow-empty",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("avt_"));
}
