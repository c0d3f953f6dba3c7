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

/// Issue 14 item 7: the commands users of the hosted platforms already type. `secrets
/// create` is `secrets set`; the value may be the last argument (with a warning that it
/// lands in shell history and `ps`); `list` shows CREATED beside UPDATED.
#[test]
fn issue_14_secrets_create_and_the_value_as_an_argument() {
    let vault = start_vault();
    let value = "positional-value-ABCD4321";
    let out = vault.cli_run(&["secrets", "create", "hosted-bot", "API_KEY", value], None);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("created hosted-bot/API_KEY"), "{stdout}");
    assert!(
        stderr.contains("API_KEY")
            && stderr.contains("shell history")
            && stderr.contains("ps")
            && stderr.contains("--stdin"),
        "{stderr}"
    );
    assert!(!stderr.contains(value), "{stderr}");
    let described = json(&String::from_utf8_lossy(
        &vault
            .cli_run(
                &["secrets", "describe", "hosted-bot", "API_KEY", "--json"],
                None,
            )
            .stdout,
    ));
    assert_eq!(described["preview"], "****4321");

    // `--help` names the alias; the value may come one way only.
    let help = vault.cli_run(&["secrets", "--help"], None);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("create"),
        "{help:?}"
    );
    for args in [
        vec!["secrets", "set", "hosted-bot", "K", "one", "--value", "two"],
        vec!["secrets", "set", "hosted-bot", "K", "one", "--stdin"],
    ] {
        let mut cmd = vault.cli();
        cmd.args(&args);
        run_code(&mut cmd, Some(b"three"), 2);
    }

    // `update` takes the value as an argument too; CREATED stays, UPDATED moves.
    let before = json(&String::from_utf8_lossy(
        &vault
            .cli_run(&["secrets", "list", "hosted-bot", "--json"], None)
            .stdout,
    ));
    std::thread::sleep(std::time::Duration::from_millis(5)); // timestamps are in ms
    let out = vault.cli_run(
        &[
            "secrets",
            "update",
            "hosted-bot",
            "API_KEY",
            "rotated-value-0000",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 2"));
    let after = json(&String::from_utf8_lossy(
        &vault
            .cli_run(&["secrets", "list", "hosted-bot", "--json"], None)
            .stdout,
    ));
    let entry = |list: &serde_json::Value, field: &str| list["secrets"][0][field].clone();
    assert_eq!(entry(&before, "created_at"), entry(&after, "created_at"));
    assert_ne!(entry(&before, "updated_at"), entry(&after, "updated_at"));
    let mut cmd = vault.cli();
    cmd.args(["secrets", "list", "hosted-bot"]);
    let table = run_ok(&mut cmd, None);
    let header = table.lines().next().expect("header");
    assert!(
        header.contains("CREATED") && header.find("CREATED") < header.find("UPDATED"),
        "{table}"
    );
    let row = table.lines().nth(1).expect("row");
    for field in ["created_at", "updated_at"] {
        let shown = entry(&after, field);
        assert!(
            row.contains(shown.as_str().expect("text")),
            "{field}: {table}"
        );
    }

    // Project variables: `vars create` with the value as an argument.
    let out = vault.cli_run(&["vars", "create", "REGION", "eu-west-1", "--plain"], None);
    assert!(out.status.success(), "{out:?}");
    let vars = json(&String::from_utf8_lossy(
        &vault
            .cli_run(&["vars", "list", "--values", "--json"], None)
            .stdout,
    ));
    assert_eq!(vars["vars"][0]["value"], "eu-west-1");
    vault.assert_not_stored_or_logged(&[value, "rotated-value-0000"]);
}

/// Issue 14 item 7: `--ttl` as people type it; scoped tokens expire after 30 days unless
/// `--ttl never` says otherwise; an admin token does not expire unless asked.
#[test]
fn issue_14_token_lifetimes_as_typed_and_scoped_tokens_expire_by_default() {
    let vault = start_vault();
    vault.set("ttl-bot", "KEY", "ttl-value-00000001");
    let scope = "secrets:read:ttl-bot/*";
    let issue = |extra: &[&str]| -> serde_json::Value {
        let mut cmd = vault.cli();
        cmd.args(["tokens", "issue", "--json"]).args(extra);
        json(&run_ok(&mut cmd, None))
    };
    // Seconds from now until an RFC 3339 time.
    let from_now = |at: &serde_json::Value| -> i64 {
        let at = humantime::parse_rfc3339(at.as_str().expect("a time")).expect("rfc 3339");
        let now = std::time::SystemTime::now();
        match at.duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    };
    for (ttl, seconds) in [
        ("3600", 3600),
        ("3600s", 3600),
        ("90m", 5400),
        ("1h30m", 5400),
        ("30d", 30 * 86_400),
    ] {
        let issued = issue(&["--scope", scope, "--ttl", ttl]);
        let left = from_now(&issued["expires_at"]);
        assert!(
            (seconds - 60..=seconds).contains(&left),
            "--ttl {ttl}: expires in {left}s"
        );
    }
    // The defaults, and `never` spelt out.
    let scoped = issue(&["--scope", scope]);
    let left = from_now(&scoped["expires_at"]);
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&left),
        "default: {left}s"
    );
    assert!(issue(&["--scope", scope, "--ttl", "never"])["expires_at"].is_null());
    assert!(issue(&["--scope", "admin"])["expires_at"].is_null());
    let admin_1h = issue(&["--scope", "admin", "--ttl", "1h"]);
    assert!((3540..=3600).contains(&from_now(&admin_1h["expires_at"])));
    // The human output says when it expires.
    let out = vault.cli_run(&["tokens", "issue", "--scope", scope], None);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("expires never"),
        "{out:?}"
    );
    // Nonsense is a usage error naming the forms.
    for bad in ["soon", "0", "1.5s"] {
        let mut cmd = vault.cli();
        cmd.args(["tokens", "issue", "--scope", scope, "--ttl", bad]);
        let out = run_code(&mut cmd, None, 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--ttl"), "{stderr}");
    }
    // `--help` says what the default is.
    let help = vault.cli_run(&["tokens", "issue", "--help"], None);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("30 days") && help.contains("never"), "{help}");
}

/// Issue 14 item 7: `vars update` and `vars import` exist, with `secrets`' rules; a
/// malformed line of an imported file is reported with its line number (both imports),
/// nothing is imported, and the line's text (a value) is never shown.
#[test]
fn issue_14_vars_update_and_import_with_line_numbers() {
    let vault = start_vault();
    let ok = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = vault.cli();
        cmd.args(args);
        run_ok(&mut cmd, stdin)
    };
    ok(
        &["vars", "set", "LOG_LEVEL", "--plain", "--value", "info"],
        None,
    );
    // Only --description: the value stays.
    let out = ok(
        &["vars", "update", "LOG_LEVEL", "--description", "verbosity"],
        None,
    );
    assert!(out.contains("project variable LOG_LEVEL"), "{out}");
    let out = ok(&["vars", "update", "LOG_LEVEL", "debug"], None);
    assert!(out.contains("version 2"), "{out}");
    let vars = json(&ok(&["vars", "list", "--values", "--json"], None));
    assert_eq!(vars["vars"][0]["value"], "debug");
    assert_eq!(vars["vars"][0]["description"], "verbosity");
    // Update means "it exists".
    let mut cmd = vault.cli();
    cmd.args(["vars", "update", "NOPE", "--value", "x"]);
    let out = run_code(&mut cmd, None, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let vars = json(&ok(&["vars", "list", "--json"], None));
    assert_eq!(vars["vars"].as_array().map(Vec::len), Some(1));

    let dir = Dir::new("vars-import");
    let good = dir.write(
        "project.env",
        "REGION=eu-west-1\nSHARED_KEY=shared-import-value-77\nLOG_LEVEL=trace\nBLANK=\n",
    );
    let summary = json(&ok(
        &[
            "vars",
            "import",
            "--file",
            good.to_str().expect("utf-8"),
            "--plain-keys",
            "REGION",
            "--json",
        ],
        None,
    ));
    assert_eq!(summary["created"], json!(["REGION", "SHARED_KEY"]));
    assert_eq!(summary["skipped"], json!(["LOG_LEVEL", "BLANK"]));
    let vars = json(&ok(&["vars", "list", "--values", "--json"], None));
    let region = vars["vars"]
        .as_array()
        .expect("vars")
        .iter()
        .find(|v| v["key"] == "REGION")
        .expect("REGION");
    assert_eq!(region["value"], "eu-west-1");
    let shared = vars["vars"]
        .as_array()
        .expect("vars")
        .iter()
        .find(|v| v["key"] == "SHARED_KEY")
        .expect("SHARED_KEY");
    assert_eq!(shared["kind"], "secret");
    // The project's variables reach a run-time read.
    vault.set("import-bot", "OWN", "own-value-000000001");
    let (_, token) = vault.issue(&["secrets:read:import-bot/*"], Some(json!("1h")));
    let read = vault.get_json("/v1/runtime/secrets", &token);
    assert!(read.to_string().contains("SHARED_KEY"), "{read}");

    // Line 3 is broken: both imports name the file and the line, import nothing, and
    // never print the line's text.
    let bad = dir.write(
        "bad.env",
        "NEW_ONE=fine-value-0001\nNEW_TWO=fine-value-0002\nNEW_THREE=\"unterminated-secret-9\n",
    );
    let bad = bad.to_str().expect("utf-8");
    for args in [
        vec!["vars", "import", "--file", bad],
        vec!["secrets", "import", "import-bot", "--file", bad],
    ] {
        let mut cmd = vault.cli();
        cmd.args(&args);
        let out = run(&mut cmd, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            stderr.contains(&format!("{bad}:3:")) && stderr.contains("not valid dotenv"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("unterminated-secret"), "{stderr}");
    }
    let vars = json(&ok(&["vars", "list", "--json"], None));
    assert!(!vars.to_string().contains("NEW_ONE"), "{vars}");
    let listed = json(&ok(&["secrets", "list", "import-bot", "--json"], None));
    assert!(!listed.to_string().contains("NEW_ONE"), "{listed}");
    vault.assert_not_stored_or_logged(&["shared-import-value-77", "unterminated-secret-9"]);

    for help in [
        vec!["vars", "update", "--help"],
        vec!["vars", "import", "--help"],
    ] {
        let out = ok(&help, None);
        assert!(out.contains("Example:\n  agent-vault vars"), "{out}");
    }
}
