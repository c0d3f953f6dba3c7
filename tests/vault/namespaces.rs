//! Issue 14 item 1: hierarchical agent names (`production/openai`, percent-encoded in a
//! path), path scopes (`secrets:read:production/openai/*`, `secrets:read:production/**/*`)
//! and key names from the hosted vaults (`api-key`, `db.url`), against the real server and
//! its admin CLI.

use crate::common::vault::{error_code, json, start_vault, VaultServer};
use serde_json::{json, Value};

fn agents(vault: &VaultServer) -> Vec<String> {
    vault.get_json("/v1/agents", &vault.admin)["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["name"].as_str().expect("name").to_string())
        .collect()
}

fn token_count(vault: &VaultServer) -> usize {
    vault.get_json("/v1/tokens", &vault.admin)["tokens"]
        .as_array()
        .expect("tokens")
        .len()
}

/// The keys of a run-time read, in order.
fn keys(read: &Value) -> Vec<String> {
    read["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn hierarchical_agents_route_with_an_encoded_slash_and_bad_names_change_nothing() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-prod-openai-0001");
    vault.set("production%2Fopenai", "db.url", "postgres://prod-0002");
    assert_eq!(agents(&vault), ["production/openai"]);
    let listed = vault.get_json("/v1/agents/production%2Fopenai/secrets", &vault.admin);
    assert_eq!(listed["agent"], "production/openai", "{listed}");
    let names: Vec<&str> = listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api-key", "db.url"]);
    let one = vault.get_json(
        "/v1/agents/production%2Fopenai/secrets/api-key",
        &vault.admin,
    );
    assert_eq!(one["preview"], "****0001", "{one}");
    // An unencoded slash is another route, not the agent.
    assert_eq!(
        vault
            .get("/v1/agents/production/openai/secrets", &vault.admin)
            .0,
        404
    );

    for agent in [
        "production%2F%2Fopenai",
        "%2Fproduction",
        "production%2F",
        "production%2F..%2Fopenai",
        "production%2F.%2Fopenai",
        "Production%2Fopenai",
        "production%2Fop*nai",
    ] {
        let (status, body) = vault.put(
            &format!("/v1/agents/{agent}/secrets/KEY"),
            &vault.admin,
            json!({"value": "never-stored-0003"}),
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_name"),
            "{agent}: {body}"
        );
    }
    for key in ["1key", "-key", "a%20b", "a%2Fb", "k%3Dv"] {
        let (status, body) = vault.put(
            &format!("/v1/agents/production%2Fopenai/secrets/{key}"),
            &vault.admin,
            json!({"value": "never-stored-0004"}),
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_name"),
            "{key}: {body}"
        );
    }
    assert_eq!(agents(&vault), ["production/openai"]);
    vault.assert_not_stored_or_logged(&["never-stored-0003", "never-stored-0004"]);
}

#[test]
fn the_admin_cli_encodes_hierarchical_agent_names() {
    let vault = start_vault();
    let ok = |args: &[&str]| {
        let out = vault.cli_run(args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "secrets",
        "set",
        "production/openai",
        "api-key",
        "--value",
        "sk-cli-prod-0005",
    ]);
    let listed = json(&ok(&["secrets", "list", "production/openai", "--json"]));
    assert_eq!(listed["agent"], "production/openai", "{listed}");
    assert_eq!(listed["secrets"][0]["key"], "api-key", "{listed}");
    let token = ok(&[
        "tokens",
        "issue",
        "--scope",
        "secrets:read:production/**/*",
        "--ttl",
        "1h",
    ]);
    let read = vault.get_json("/v1/runtime/secrets?agent=production/openai", token.trim());
    assert_eq!(keys(&read), ["api-key"]);
    // A prefix with no agent below it: refused with the prefixes that have some.
    let out = vault.cli_run(
        &[
            "tokens",
            "issue",
            "--scope",
            "secrets:read:prodution/**/*",
            "--ttl",
            "1h",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("production/**"), "{stderr}");
}

#[test]
fn a_token_for_one_agent_path_reads_exactly_that_agent() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-prod-openai-0011");
    vault.set("production%2Fanthropic", "api-key", "sk-prod-anthr-0012");
    vault.set("production", "api-key", "sk-prod-parent-0013");
    let (_, token) = vault.issue(&["secrets:read:production/openai/*"], None);
    // One agent: no `agent` needed.
    let read = vault.get_json("/v1/runtime/secrets", &token);
    assert_eq!(read["agent"], "production/openai");
    assert_eq!(read["secrets"][0]["value"], "sk-prod-openai-0011");
    assert_eq!(keys(&read), ["api-key"]);
    for other in [
        "production/anthropic",
        "production",
        "production%2Fanthropic",
    ] {
        let (status, body) = vault.get(&format!("/v1/runtime/secrets?agent={other}"), &token);
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "forbidden"),
            "{other}: {body}"
        );
    }
    // The key pattern after the last `/`: `production/openai` is key `openai` of agent
    // `production`, not the agent `production/openai`.
    let (_, parent) = vault.issue(&["secrets:read:production/api-*"], None);
    let read = vault.get_json("/v1/runtime/secrets", &parent);
    assert_eq!(read["agent"], "production");
    assert_eq!(read["secrets"][0]["value"], "sk-prod-parent-0013");
}

#[test]
fn a_prefix_token_reads_the_agents_below_with_an_agent_named() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-prod-openai-0021");
    vault.set("production%2Fx", "db.url", "postgres://prod-x-0022");
    vault.set("production%2Feu%2Fdeep", "K", "prod-eu-deep-0023");
    vault.set("production", "K", "prod-parent-0024");
    vault.set("staging%2Fopenai", "api-key", "sk-stag-openai-0025");
    vault.set("productionx%2Fopenai", "api-key", "sk-prodx-openai-0026");
    let (_, token) = vault.issue(&["secrets:read:production/**/*"], None);

    let (status, body) = vault.get("/v1/runtime/secrets", &token);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "agent_required"),
        "{body}"
    );
    assert!(
        body.contains("production/") && body.contains("agent"),
        "{body}"
    );
    let (status, body) = vault.get("/v1/runtime/revision", &token);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "agent_required")
    );

    for (agent, key, value) in [
        ("production/openai", "api-key", "sk-prod-openai-0021"),
        ("production%2Fx", "db.url", "postgres://prod-x-0022"),
        ("production/eu/deep", "K", "prod-eu-deep-0023"),
    ] {
        let read = vault.get_json(&format!("/v1/runtime/secrets?agent={agent}"), &token);
        assert_eq!(keys(&read), [key], "{agent}");
        assert_eq!(read["secrets"][0]["value"], value);
        let revision = vault.get_json(&format!("/v1/runtime/revision?agent={agent}"), &token);
        assert!(revision["revision"].as_u64().is_some(), "{revision}");
    }
    for outside in ["staging/openai", "production", "productionx/openai"] {
        let (status, body) = vault.get(&format!("/v1/runtime/secrets?agent={outside}"), &token);
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "forbidden"),
            "{outside}: {body}"
        );
        assert!(!body.contains("sk-"), "{body}");
    }

    // A write token over a prefix manages the agents below it, and nothing else.
    let (_, write) = vault.issue(&["secrets:write:production/**/api-*"], None);
    assert_eq!(
        vault
            .put(
                "/v1/agents/production%2Fnew/secrets/api-token",
                &write,
                json!({"value": "written-by-prefix-0027"})
            )
            .0,
        201
    );
    for (agent, key) in [
        ("production", "api-key"),
        ("staging%2Fopenai", "api-key"),
        ("production%2Fopenai", "db.url"),
    ] {
        let (status, _) = vault.put(
            &format!("/v1/agents/{agent}/secrets/{key}"),
            &write,
            json!({"value": "refused-0028"}),
        );
        assert_eq!(status, 403, "{agent}/{key}");
    }
    vault.assert_not_stored_or_logged(&["refused-0028"]);
}

#[test]
fn refused_scope_forms_are_400_and_issue_nothing() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-prod-openai-0031");
    let before = token_count(&vault);
    for scope in [
        "secrets:read:prod*",
        "secrets:read:prod*/x",
        "secrets:read:production/*/api-key",
        "secrets:read:production/../openai/*",
        "secrets:read:../*",
        "secrets:read:production//openai/*",
        "secrets:read:/production/openai/*",
        "secrets:read:production/openai/",
        "secrets:read:**/*",
        "secrets:read:production/**/openai/*",
        "secrets:read:production/**",
        "secrets:write:production/**/**/*",
    ] {
        let (status, body) = vault.post(
            "/v1/tokens",
            &vault.admin,
            json!({"scopes": [scope], "allow_empty": true}),
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_scope"),
            "{scope}: {body}"
        );
    }
    // The "did you mean" rule holds for prefixes, and `allow_empty` still overrides it.
    let (status, body) = vault.post(
        "/v1/tokens",
        &vault.admin,
        json!({"scopes": ["secrets:read:prodution/**/*"]}),
    );
    assert_eq!((status, error_code(&body).as_str()), (400, "unknown_agent"));
    assert!(body.contains("did you mean production/**"), "{body}");
    let (status, body) = vault.post(
        "/v1/tokens",
        &vault.admin,
        json!({"scopes": ["secrets:read:production/openai/*"]}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(token_count(&vault), before + 1);
    let (status, body) = vault.post(
        "/v1/tokens",
        &vault.admin,
        json!({"scopes": ["secrets:read:staging/**/*"], "allow_empty": true}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(token_count(&vault), before + 2);
}
