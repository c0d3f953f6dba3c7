//! The admin CLI (`agent-vault secrets|tokens|...`) against a running server.

use crate::common::vault::{assert_no_values, json, start_vault, vault_cmd};
use crate::common::{run, run_code, run_ok, Dir};
use serde_json::json;

#[test]
fn admin_cli_end_to_end() {
    let vault = start_vault();
    let ok = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = vault.cli();
        cmd.args(args);
        run_ok(&mut cmd, stdin)
    };
    let secret = "cli-secret-value-ABCD1234";
    let out = ok(
        &[
            "secrets",
            "set",
            "cli-bot",
            "API_KEY",
            "--stdin",
            "--description",
            "the api key",
        ],
        Some(format!("{secret}\n").as_bytes()),
    );
    assert!(out.contains("created"), "{out}");
    ok(
        &[
            "secrets",
            "set",
            "cli-bot",
            "REGION",
            "--value",
            "eu-north-1",
            "--plain",
        ],
        None,
    );

    let out = ok(&["secrets", "list", "cli-bot"], None);
    assert!(
        out.contains("API_KEY") && out.contains("****1234") && out.contains("the api key"),
        "{out}"
    );
    assert!(!out.contains("eu-north-1"), "{out}");
    let listed = json(&ok(
        &["secrets", "list", "cli-bot", "--values", "--json"],
        None,
    ));
    assert_eq!(listed["secrets"][1]["value"], "eu-north-1");

    let described = json(&ok(
        &["secrets", "describe", "cli-bot", "API_KEY", "--json"],
        None,
    ));
    assert_eq!(described["preview"], "****1234");
    ok(
        &[
            "secrets",
            "update",
            "cli-bot",
            "API_KEY",
            "--description",
            "rotated monthly",
        ],
        None,
    );
    let out = ok(
        &["secrets", "update", "cli-bot", "API_KEY", "--stdin"],
        Some(b"cli-secret-value-NEW-9999"),
    );
    assert!(out.contains("version 2"), "{out}");
    let versions = json(&ok(
        &["secrets", "versions", "cli-bot", "API_KEY", "--json"],
        None,
    ));
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));
    let out = ok(&["secrets", "rollback", "cli-bot", "API_KEY"], None);
    assert!(out.contains("version 1"), "{out}");

    let dir = Dir::new("cli");
    let env = dir.write(".env", "FROM_FILE=file-value-123456\nEMPTY=\n");
    let summary = json(&ok(
        &[
            "secrets",
            "import",
            "cli-bot",
            "--file",
            env.to_str().expect("utf-8"),
            "--json",
        ],
        None,
    ));
    assert_eq!(summary["created"], json!(["FROM_FILE"]));

    ok(
        &["vars", "set", "LOG_LEVEL", "--value", "debug", "--plain"],
        None,
    );
    let vars = json(&ok(&["vars", "list", "--values", "--json"], None));
    assert_eq!(vars["vars"][0]["value"], "debug");
    ok(&["vars", "delete", "LOG_LEVEL"], None);

    let token = ok(
        &[
            "tokens",
            "issue",
            "--scope",
            "secrets:read:cli-bot/*",
            "--ttl",
            "1h",
            "--description",
            "launcher",
        ],
        None,
    );
    let token = token.trim().to_string();
    assert!(token.starts_with("avt_"));
    let read = vault.get_json("/v1/runtime/secrets", &token);
    assert_eq!(read["secrets"].as_array().map(Vec::len), Some(3));
    let tokens = json(&ok(&["tokens", "list", "--json"], None));
    let listed = tokens["tokens"].as_array().expect("array");
    assert_eq!(listed.len(), 2);
    assert!(
        !tokens.to_string().contains(&token),
        "token list shows only metadata"
    );
    let id = listed
        .iter()
        .find(|t| t["description"] == "launcher")
        .and_then(|t| t["id"].as_str())
        .expect("issued token listed")
        .to_string();
    assert!(token.starts_with(&format!("avt_{id}_")));
    ok(&["tokens", "revoke", &id], None);
    assert_eq!(vault.get("/v1/runtime/secrets", &token).0, 401);

    let audit = json(&ok(&["audit", "--agent", "cli-bot", "--json"], None));
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    for action in ["create", "update", "rollback", "import", "runtime.read"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let table = ok(&["audit", "--since", "2000-01-01T00:00:00Z"], None);
    assert!(table.contains("runtime.read"));
    // A duration means "that long ago": the last hour has records, the future none.
    let recent = json(&ok(&["audit", "--since", "1h", "--json"], None));
    assert!(!recent["records"].as_array().expect("records").is_empty());
    let future = json(&ok(
        &["audit", "--since", "2999-01-01T00:00:00Z", "--json"],
        None,
    ));
    assert!(future["records"].as_array().expect("records").is_empty());
    assert_no_values(
        "audit",
        &audit.to_string(),
        &[secret, "cli-secret-value-NEW-9999", "file-value-123456"],
    );

    // Exit codes: 1 for an API error (with the server's message), 2 for usage.
    let out = run_code(
        &mut {
            let mut c = vault.cli();
            c.args(["secrets", "describe", "cli-bot", "NOPE"]);
            c
        },
        None,
        1,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    run_code(
        &mut {
            let mut c = vault.cli();
            c.args(["secrets", "frobnicate"]);
            c
        },
        None,
        2,
    );
    run_code(
        &mut {
            let mut c = vault.cli();
            c.args(["secrets", "set", "cli-bot", "X"]);
            c
        },
        None,
        2,
    );
    let mut no_token = vault_cmd();
    no_token.args(["secrets", "list", "cli-bot", "--addr", &vault.addr]);
    run_code(&mut no_token, None, 2);
    let mut bad_token = vault_cmd();
    bad_token
        .env("AGENT_VAULT_ADDR", &vault.addr)
        .env("AGENT_VAULT_TOKEN", "avt_nope")
        .args(["secrets", "list", "cli-bot"]);
    let out = run_code(&mut bad_token, None, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));

    vault.assert_not_stored_or_logged(&[secret, "cli-secret-value-NEW-9999", "file-value-123456"]);
    assert!(!vault.log().contains(&token));
}

/// Issue 10 item 5: the admin CLI sent `Authorization: Bearer avt_…` and the value over
/// plain HTTP to any host. It now refuses from the address alone, before any connection
/// (no traffic leaves this machine: the refused hosts are never contacted).
#[test]
fn issue_10_admin_cli_refuses_plain_http_off_loopback() {
    let value = "never-sent-value-5521";
    // `.invalid` never resolves; had the check regressed, at most a failed DNS lookup
    // leaves (the unit test `plain_http_only_to_loopback_unless_allowed` covers IPs).
    for addr in ["http://localhost.invalid:1", "http://127.0.0.1.invalid:1"] {
        for args in [
            vec!["secrets", "set", "bot", "K", "--value", value],
            vec!["tokens", "list"],
        ] {
            let mut cmd = vault_cmd();
            cmd.env("AGENT_VAULT_ADDR", addr)
                .env("AGENT_VAULT_TOKEN", "avt_000000000000_not-a-real-token")
                .args(&args);
            let out = run(&mut cmd, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{addr} {args:?}: {out:?}");
            assert!(
                stderr.contains("not a loopback address")
                    && stderr.contains("--allow-insecure-http"),
                "{stderr}"
            );
            assert!(
                !stderr.contains(value) && !stderr.contains("avt_"),
                "{stderr}"
            );
        }
    }
    // Loopback stays allowed over plain http, 127.0.0.0/8 included.
    let vault = start_vault();
    let out = vault.cli_run(&["secrets", "set", "bot", "K", "--value", value], None);
    assert!(out.status.success(), "{out:?}");
}

/// Issue 13: with the server down, the message named its URL three times (ours, reqwest's,
/// and reqwest's again as the cause). Once is enough.
#[test]
fn a_server_that_is_down_is_named_once() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let mut cmd = vault_cmd();
    cmd.env("AGENT_VAULT_TOKEN", "avt_not_a_real_token")
        .args(["tokens", "list", "--addr", &addr]);
    let out = run_code(&mut cmd, None, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches(&addr).count(),
        1,
        "the URL once, the cause once: {stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
}
