//! Admin and agent tokens: expiry, revocation, scopes, the last admin token.

use std::time::Duration;

use crate::common::vault::{error_code, start_vault, vault_cmd};
use crate::common::{run, wait_until};
use serde_json::json;

#[test]
fn expired_and_revoked_tokens_get_401() {
    let vault = start_vault();
    vault.set("bot", "K", "value-for-expiry-test");
    let (_, short) = vault.issue(&["secrets:read:bot/*"], Some(json!("1s")));
    assert_eq!(vault.get("/v1/runtime/secrets", &short).0, 200);
    wait_until(Duration::from_secs(5), "the 1s token expires", || {
        vault.get("/v1/runtime/secrets", &short).0 == 401
    });
    let (status, body) = vault.get("/v1/runtime/secrets", &short);
    assert!(body.contains("expired"), "{status} {body}");

    let (id, token) = vault.issue(&["secrets:read:bot/*"], Some(json!(3600)));
    assert_eq!(vault.get("/v1/runtime/secrets", &token).0, 200);
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{id}"), &vault.admin).0,
        204
    );
    let (status, body) = vault.get("/v1/runtime/secrets", &token);
    assert_eq!(status, 401);
    assert!(body.contains("revoked"), "{body}");
    // Revocation survives a restart (it is stored, not just in memory).
    let mut vault = vault;
    vault.restart();
    assert_eq!(vault.get("/v1/runtime/secrets", &token).0, 401);
    assert_eq!(vault.delete("/v1/tokens/nosuchtoken", &vault.admin).0, 404);
}

#[test]
fn scopes_forbid_other_agents_and_management_with_read_tokens() {
    let vault = start_vault();
    vault.set("alpha", "KEY_A", "alpha-secret-value-1");
    vault.set("beta", "KEY_B", "beta-secret-value-22");
    let (_, read_a) = vault.issue(&["secrets:read:alpha/*"], None);
    let (_, write_a) = vault.issue(&["secrets:write:alpha/*"], None);

    // Run-time read of another agent.
    let (status, body) = vault.get("/v1/runtime/secrets?agent=beta", &read_a);
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    assert_eq!(vault.get("/v1/runtime/revision?agent=beta", &read_a).0, 403);
    // The admin token does not read values at run time either.
    assert_eq!(
        vault.get("/v1/runtime/secrets?agent=alpha", &vault.admin).0,
        403
    );
    // A write token manages its agent only and cannot read values at run time.
    assert_eq!(vault.get("/v1/agents/alpha/secrets", &write_a).0, 200);
    assert_eq!(vault.get("/v1/agents/beta/secrets", &write_a).0, 403);
    assert_eq!(
        vault
            .put("/v1/agents/beta/secrets/X", &write_a, json!({"value": "v"}))
            .0,
        403
    );
    assert_eq!(
        vault.get("/v1/runtime/secrets?agent=alpha", &write_a).0,
        403
    );

    // A read token gets 403 on every management call, even for its own agent.
    let calls: Vec<(&str, &str, Option<serde_json::Value>)> = vec![
        ("GET", "/v1/agents/alpha/secrets", None),
        ("GET", "/v1/agents/alpha/secrets/KEY_A", None),
        (
            "PUT",
            "/v1/agents/alpha/secrets/KEY_A",
            Some(json!({"value": "x"})),
        ),
        ("DELETE", "/v1/agents/alpha/secrets/KEY_A", None),
        ("GET", "/v1/agents/alpha/secrets/KEY_A/versions", None),
        (
            "POST",
            "/v1/agents/alpha/secrets/KEY_A/rollback",
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/agents/alpha/import",
            Some(json!({"entries": [{"key": "N", "value": "v"}]})),
        ),
        ("GET", "/v1/vars", None),
        ("PUT", "/v1/vars/V", Some(json!({"value": "x"}))),
        ("DELETE", "/v1/vars/V", None),
        ("GET", "/v1/tokens", None),
        ("POST", "/v1/tokens", Some(json!({"scopes": ["admin"]}))),
        ("DELETE", "/v1/tokens/abc", None),
        ("GET", "/v1/audit", None),
    ];
    for (method, path, body) in calls {
        let (status, text) = vault.call(
            method,
            path,
            Some(&read_a),
            body.map(|b| b.to_string().into_bytes()),
        );
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert_eq!(error_code(&text), "forbidden");
    }
    // Nothing changed: alpha still has its one original version.
    let list = vault.get_json("/v1/agents/alpha/secrets", &vault.admin);
    assert_eq!(list["secrets"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["secrets"][0]["version"], 1);

    // Key globs narrow a read token.
    vault.set("alpha", "STRIPE_KEY", "sk_test_abcdefgh12345");
    let (_, stripe_only) = vault.issue(&["secrets:read:alpha/STRIPE_*"], None);
    let read = vault.get_json("/v1/runtime/secrets", &stripe_only);
    let names: Vec<&str> = read["secrets"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["STRIPE_KEY"]);

    // Audit records the denials, by token id.
    let audit = vault.get_json("/v1/audit?agent=beta", &vault.admin);
    assert!(audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| r["outcome"] == "denied" && r["action"] == "runtime.read"));
}

/// Issue 10 item 7: the last admin token could revoke itself, and then nothing could
/// administer the store.
#[test]
fn issue_10_last_admin_token_stays_and_offline_recovery() {
    let mut vault = start_vault();
    let tokens = vault.get_json("/v1/tokens", &vault.admin);
    let first = tokens["tokens"][0]["id"].as_str().expect("id").to_string();
    let (status, body) = vault.delete(&format!("/v1/tokens/{first}"), &vault.admin);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "conflict"),
        "{body}"
    );
    assert_eq!(
        vault.get("/v1/tokens", &vault.admin).0,
        200,
        "still an admin"
    );
    // With a second admin token the first can go; then the second is the last one.
    let (second, admin2) = vault.issue(&["admin"], None);
    assert_eq!(vault.delete(&format!("/v1/tokens/{first}"), &admin2).0, 204);
    let (status, body) = vault.delete(&format!("/v1/tokens/{second}"), &admin2);
    assert_eq!(status, 409, "{body}");

    let data_dir = vault.data_dir.to_str().expect("utf-8").to_string();
    let offline = || {
        let mut cmd = vault_cmd();
        cmd.args(["tokens", "issue", "--offline", "--data-dir", &data_dir])
            .args(["--scope", "admin", "--description", "recovery"]);
        run(&mut cmd, None)
    };
    // Refused while the server runs (its lock is held), and nothing is written.
    let out = offline();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop the server"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());
    let count = |v: &serde_json::Value| v["tokens"].as_array().expect("tokens").len();
    assert_eq!(count(&vault.get_json("/v1/tokens", &admin2)), 2);

    assert!(vault.terminate().success());
    let out = offline();
    assert!(out.status.success(), "{out:?}");
    let recovered = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(recovered.starts_with("avt_"), "{out:?}");
    vault.start_again();
    let tokens = vault.get_json("/v1/tokens", &recovered);
    assert_eq!(count(&tokens), 3);
    let audit = vault.get_json("/v1/audit", &recovered);
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["action"] == "token.issue.offline" && r["token_id"].is_null()),
        "{audit}"
    );
    // The recovered admin may now retire the old one.
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{second}"), &recovered).0,
        204
    );
}
