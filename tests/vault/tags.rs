//! Issue 14 item 3: tags on every entry (secret or plain, agent or project): set, changed
//! without touching the value, filtered, shown, validated, audited; never secret.

use crate::common::vault::{error_code, json, start_vault};
use serde_json::json;

fn audit_actions(vault: &crate::common::vault::VaultServer) -> Vec<(String, Vec<String>)> {
    json(&vault.get("/v1/audit", &vault.admin).1)["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_string(),
                r["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .map(|k| k.as_str().unwrap_or("").to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn tags_are_set_changed_filtered_and_audited_over_the_api() {
    let vault = start_vault();
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/OPENAI_KEY",
        &vault.admin,
        json!({"value": "sk-tagged-secret-value-1", "tags": {"team": "ml", "env": "prod"}}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        json(&body)["secret"]["tags"],
        json!({"env": "prod", "team": "ml"})
    );
    vault.put(
        "/v1/agents/bot/secrets/DB_URL",
        &vault.admin,
        json!({"value": "postgres://db-untagged-1", "tags": {"team": "data"}}),
    );
    vault.set("bot", "PLAIN_ONE", "no-tags-here-value");

    // Filter: NAME:VALUE, NAME alone, several (all must match), none matching.
    let keys = |query: &str| -> Vec<String> {
        json(
            &vault
                .get(&format!("/v1/agents/bot/secrets{query}"), &vault.admin)
                .1,
        )["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .map(|s| s["key"].as_str().expect("key").to_string())
            .collect()
    };
    assert_eq!(keys("?tag=team:ml"), ["OPENAI_KEY"]);
    assert_eq!(keys("?tag=team"), ["DB_URL", "OPENAI_KEY"]);
    assert_eq!(keys("?tag=team:ml,env:prod"), ["OPENAI_KEY"]);
    assert_eq!(keys("?tag=team:ml,env:dev"), Vec::<String>::new());
    assert_eq!(keys(""), ["DB_URL", "OPENAI_KEY", "PLAIN_ONE"]);
    let (status, body) = vault.get("/v1/agents/bot/secrets?tag=Team", &vault.admin);
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_tag"));

    // Change tags alone: no new version, the value untouched (the run-time read agrees).
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/OPENAI_KEY",
        &vault.admin,
        json!({"tags": {"team": "research", "owner": "ana"}, "untag": ["env"]}),
    );
    assert_eq!(status, 200, "{body}");
    let entry = &json(&body)["secret"];
    assert_eq!(entry["tags"], json!({"owner": "ana", "team": "research"}));
    assert_eq!(entry["version"], 1);
    let described = vault.get_json("/v1/agents/bot/secrets/OPENAI_KEY", &vault.admin);
    assert_eq!(
        described["tags"],
        json!({"owner": "ana", "team": "research"})
    );
    assert_eq!(described["tier"], "standard");
    let (_, read) = vault.issue(&["secrets:read:bot/*"], None);
    let runtime = vault.get_json("/v1/runtime/secrets", &read);
    assert!(runtime.to_string().contains("sk-tagged-secret-value-1"));

    // Bad input: 400 invalid_tag and nothing changed.
    let too_many: serde_json::Map<String, serde_json::Value> =
        (0..17).map(|i| (format!("t{i}"), json!("x"))).collect();
    for bad in [
        json!({"tags": {"Team": "ml"}}),
        json!({"tags": {"team": "m l"}}),
        json!({"tags": {"team": "a,b"}}),
        json!({"tags": {"team": "v".repeat(129)}}),
        json!({"tags": too_many}),
        json!({"untag": ["9bad"]}),
        json!({"value": "sk-should-not-land-1", "tags": {"": "x"}}),
    ] {
        let (status, body) = vault.put(
            "/v1/agents/bot/secrets/OPENAI_KEY",
            &vault.admin,
            bad.clone(),
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "invalid_tag"),
            "{bad}: {body}"
        );
    }
    let after = vault.get_json("/v1/agents/bot/secrets/OPENAI_KEY", &vault.admin);
    assert_eq!(after["tags"], described["tags"]);
    assert_eq!(after["version"], 1);
    // 16 tags fit; the 17th through an update is refused as well.
    let sixteen: serde_json::Map<String, serde_json::Value> =
        (0..16).map(|i| (format!("t{i}"), json!("x"))).collect();
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/DB_URL",
        &vault.admin,
        json!({"tags": sixteen, "untag": ["team"]}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/DB_URL",
        &vault.admin,
        json!({"tags": {"one-more": "x"}}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_tag"),
        "{body}"
    );

    // Plain project variables carry tags too.
    let (status, body) = vault.put(
        "/v1/vars/REGION",
        &vault.admin,
        json!({"value": "eu-west-1", "kind": "plain", "tags": {"scope": "global"}}),
    );
    assert_eq!(status, 201, "{body}");
    let vars = vault.get_json("/v1/vars?tag=scope:global", &vault.admin);
    assert_eq!(vars["vars"][0]["key"], "REGION");
    assert_eq!(vars["vars"][0]["tags"], json!({"scope": "global"}));

    // An import sets tags and tier on what it creates or overwrites.
    let (status, body) = vault.post(
        "/v1/agents/bot/import",
        &vault.admin,
        json!({"entries": [{"key": "IMPORTED", "value": "imported-value-0001"}],
               "tags": {"source": "dotenv"}, "tier": "sensitive"}),
    );
    assert_eq!(status, 200, "{body}");
    let imported = vault.get_json("/v1/agents/bot/secrets/IMPORTED", &vault.admin);
    assert_eq!(imported["tags"], json!({"source": "dotenv"}));
    assert_eq!(imported["tier"], "sensitive");
    let (status, body) = vault.post(
        "/v1/agents/bot/import",
        &vault.admin,
        json!({"entries": [{"key": "IMPORTED_TWO", "value": "imported-value-0002"}],
               "tags": {"Bad": "x"}}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_tag"),
        "{body}"
    );
    assert_eq!(
        vault
            .get("/v1/agents/bot/secrets/IMPORTED_TWO", &vault.admin)
            .0,
        404
    );

    // Audited as entry.tags with the entry's name; never a value.
    let actions = audit_actions(&vault);
    assert!(
        actions
            .iter()
            .any(|(a, k)| a == "entry.tags" && k == &["OPENAI_KEY".to_string()]),
        "{actions:?}"
    );
    let audit = vault.get("/v1/audit", &vault.admin).1;
    assert!(!audit.contains("sk-tagged-secret-value-1"), "{audit}");
    vault.assert_not_stored_or_logged(&["sk-tagged-secret-value-1", "sk-should-not-land-1"]);
}

#[test]
fn the_cli_sets_changes_filters_and_shows_tags() {
    let vault = start_vault();
    let out = vault.cli_run(
        &[
            "secrets", "set", "bot", "API_KEY", "--stdin", "--tag", "team=ml", "--tag", "env=prod",
        ],
        Some(b"sk-cli-tagged-value-99\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = vault.cli_run(
        &[
            "secrets", "set", "bot", "OTHER", "--stdin", "--tag", "team=ops",
        ],
        Some(b"other-cli-value-1234\n"),
    );
    assert!(out.status.success(), "{out:?}");

    let out = vault.cli_run(&["secrets", "list", "bot", "--tag", "team=ml"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("TAGS") && text.contains("env=prod,team=ml"),
        "{text}"
    );
    assert!(!text.contains("OTHER"), "{text}");
    assert!(!text.contains("sk-cli-tagged-value-99"), "{text}");

    let out = vault.cli_run(
        &[
            "secrets",
            "tag",
            "bot",
            "API_KEY",
            "--tag",
            "owner=ana",
            "--untag",
            "env",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("owner=ana,team=ml"), "{text}");
    assert!(text.contains("version:      1"), "{text}");

    let out = vault.cli_run(&["secrets", "describe", "bot", "API_KEY"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("tags:         owner=ana,team=ml"), "{text}");
    assert!(text.contains("tier:         standard"), "{text}");

    // A bad tag: the store's code, exit 1, nothing changed.
    let out = vault.cli_run(
        &["secrets", "tag", "bot", "API_KEY", "--tag", "Bad=x"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid tag"),
        "{out:?}"
    );
    // No NAME=VALUE: a usage error before any request.
    let out = vault.cli_run(&["secrets", "tag", "bot", "API_KEY", "--tag", "team"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let described = vault.get_json("/v1/agents/bot/secrets/API_KEY", &vault.admin);
    assert_eq!(described["tags"], json!({"owner": "ana", "team": "ml"}));
}
