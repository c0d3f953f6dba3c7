//! The admin HTTP API: secrets written once and read back only as masked previews,
//! versions and rollback, import, malformed input, and the OpenAPI document.

use std::time::Duration;

use crate::common;
use crate::common::vault::{assert_no_values, error_code, json, start_vault, start_vault_with};
use crate::common::{run, wait_until, Dir};
use serde_json::json;

#[test]
fn health_needs_no_token_and_everything_else_does() {
    let vault = start_vault();
    let (status, body) = vault.call("GET", "/v1/health", None, None);
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")));

    let (status, body) = vault.call("GET", "/v1/tokens", None, None);
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    for bad in ["garbage", "avt_", "avt_000000000000_xyz"] {
        let (status, body) = vault.get("/v1/tokens", bad);
        assert_eq!(
            (status, error_code(&body).as_str()),
            (401, "unauthorized"),
            "{bad}"
        );
    }
    // Right id, wrong secret.
    let mut forged = vault.admin.clone();
    let last = forged.pop();
    forged.push(if last == Some('A') { 'B' } else { 'A' });
    assert_eq!(vault.get("/v1/tokens", &forged).0, 401);
    assert_eq!(vault.get("/v1/tokens", &vault.admin).0, 200);
}

#[test]
fn write_only_masked_previews_and_runtime_read() {
    let vault = start_vault();
    let long = "sk_live_write_only_test_7Q4z";
    let medium = "medi9876"; // 8 chars: last 2 shown
    let short = "tiny42"; // < 8 chars: nothing shown
    let plain = "eu-west-3-plainvalue";
    let project = "project-wide-secret-XYZW";
    let shadowed = "project-value-shadowed-0000";

    let (status, body) = vault.put(
        "/v1/agents/support-bot/secrets/STRIPE_KEY",
        &vault.admin,
        json!({"value": long, "description": "stripe live key"}),
    );
    assert_eq!(status, 201);
    assert_no_values("PUT response", &body, &[long]);
    assert_eq!(json(&body)["secret"]["preview"], "****7Q4z");
    vault.set("support-bot", "MEDIUM", medium);
    vault.set("support-bot", "SHORT", short);
    let (status, body) = vault.put(
        "/v1/agents/support-bot/secrets/REGION",
        &vault.admin,
        json!({"value": plain, "kind": "plain"}),
    );
    assert_eq!(status, 201, "{body}");
    vault.put(
        "/v1/vars/SHARED_KEY",
        &vault.admin,
        json!({"value": project}),
    );
    vault.put(
        "/v1/vars/STRIPE_KEY",
        &vault.admin,
        json!({"value": shadowed}),
    );
    let secrets = [long, medium, short, project, shadowed];

    let list = vault.get("/v1/agents/support-bot/secrets", &vault.admin).1;
    assert_no_values("list", &list, &secrets);
    assert!(
        !list.contains(plain),
        "plain values only with ?values=true: {list}"
    );
    let entries = json(&list)["secrets"].as_array().expect("array").clone();
    let preview = |key: &str| {
        entries
            .iter()
            .find(|e| e["key"] == key)
            .map(|e| e["preview"].as_str().expect("preview").to_string())
            .expect("key listed")
    };
    assert_eq!(preview("STRIPE_KEY"), "****7Q4z");
    assert_eq!(preview("MEDIUM"), "****76");
    assert_eq!(preview("SHORT"), "****");

    let with_values = vault
        .get("/v1/agents/support-bot/secrets?values=true", &vault.admin)
        .1;
    assert!(with_values.contains(plain));
    assert_no_values("list with values", &with_values, &secrets);

    for path in [
        "/v1/agents/support-bot/secrets/STRIPE_KEY",
        "/v1/agents/support-bot/secrets/STRIPE_KEY/versions",
        "/v1/vars",
        "/v1/vars?values=true",
        "/v1/vars/SHARED_KEY",
        "/v1/audit",
    ] {
        let (status, body) = vault.get(path, &vault.admin);
        assert_eq!(status, 200, "{path}");
        assert_no_values(path, &body, &secrets);
    }
    let described = vault.get_json("/v1/agents/support-bot/secrets/REGION", &vault.admin);
    assert_eq!(
        described["value"], plain,
        "describe shows plain values in clear"
    );

    // The run-time read returns exactly the values, agent entry winning over the project's.
    let (_, reader) = vault.issue(&["secrets:read:support-bot/*"], None);
    let read = vault.get_json("/v1/runtime/secrets", &reader);
    assert_eq!(read["agent"], "support-bot");
    let find = |name: &str| {
        read["secrets"]
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {read}"))
    };
    assert_eq!(find("STRIPE_KEY")["value"], long);
    assert_eq!(find("STRIPE_KEY")["origin"], "agent");
    assert_eq!(find("SHARED_KEY")["value"], project);
    assert_eq!(find("SHARED_KEY")["origin"], "project");
    assert_eq!(find("REGION")["kind"], "plain");
    assert_eq!(read["secrets"].as_array().map(Vec::len), Some(5));
    // "Last read at" is recorded.
    wait_until(Duration::from_secs(5), "last_read_at is recorded", || {
        vault.get_json("/v1/agents/support-bot/secrets/STRIPE_KEY", &vault.admin)["last_read_at"]
            .is_string()
    });

    // The admin CLI shows masks too.
    let out = vault.cli_run(&["secrets", "list", "support-bot", "--values"], None);
    assert!(out.status.success());
    assert_no_values("CLI list", &String::from_utf8_lossy(&out.stdout), &secrets);

    vault.assert_not_stored_or_logged(&[long, medium, project, shadowed, plain]);
    assert!(!vault.log().contains(&vault.admin), "a token was logged");
}

#[test]
fn versions_and_rollback() {
    let vault = start_vault_with(&["--keep-versions", "3"]);
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let value_of = || {
        vault.get_json("/v1/runtime/secrets", &reader)["secrets"][0]["value"]
            .as_str()
            .expect("value")
            .to_string()
    };
    for i in 1..=5 {
        vault.set("bot", "API_KEY", &format!("rotation-value-number-{i}"));
    }
    let versions = vault.get_json("/v1/agents/bot/secrets/API_KEY/versions", &vault.admin);
    let numbers: Vec<i64> = versions["versions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["version"].as_i64().expect("number"))
        .collect();
    assert_eq!(numbers, [5, 4, 3], "only the last 3 are kept, newest first");
    assert_eq!(versions["versions"][0]["current"], true);
    assert!(!versions.to_string().contains("rotation-value"));

    let before = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    let (status, body) = vault.post(
        "/v1/agents/bot/secrets/API_KEY/rollback",
        &vault.admin,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["rolled_back_to"], 4);
    assert_eq!(json(&body)["secret"]["version"], 6);
    assert!(!body.contains("rotation-value"));
    assert_eq!(value_of(), "rotation-value-number-4");
    let after = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    assert_ne!(after, before, "rollback changes the revision");

    // Explicit target via the CLI; a pruned version is 404.
    let out = vault.cli_run(
        &["secrets", "rollback", "bot", "API_KEY", "--to", "5"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(value_of(), "rotation-value-number-5");
    let (status, body) = vault.post(
        "/v1/agents/bot/secrets/API_KEY/rollback",
        &vault.admin,
        json!({"to": 1}),
    );
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    // Rollbacks are audited.
    let audit = vault.get_json("/v1/audit?agent=bot", &vault.admin);
    let rollbacks = audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "rollback")
        .count();
    assert_eq!(rollbacks, 2);
    vault.assert_not_stored_or_logged(&["rotation-value-number-"]);
}

/// Issue 10 item 1: a write token could turn a secret into a plain variable and read it
/// back, and an unchanged answer confirmed a guessed value.
#[test]
fn issue_10_secrets_never_turn_readable_and_every_write_is_a_version() {
    let vault = start_vault();
    let secret = "sk-write-only-value-0001";
    vault.set("support-bot", "OPENAI_API_KEY", secret);
    let (_, writer) = vault.issue(&["secrets:write:support-bot/*"], None);
    let path = "/v1/agents/support-bot/secrets/OPENAI_API_KEY";
    for token in [&vault.admin, &writer] {
        for body in [
            json!({"kind": "plain"}),
            json!({"kind": "plain", "description": "now config"}),
        ] {
            let (status, text) = vault.put(path, token, body);
            assert_eq!(
                (status, error_code(&text).as_str()),
                (400, "invalid_request"),
                "{text}"
            );
            assert_no_values("refused PUT", &text, &[secret]);
        }
    }
    let described = vault.get_json(path, &vault.admin);
    assert_eq!(
        (described["kind"].clone(), described["version"].clone()),
        (json!("secret"), json!(1)),
        "a refused change changed nothing"
    );
    // Every management answer about it stays masked.
    let texts = [
        vault.get(path, &writer).1,
        vault
            .get("/v1/agents/support-bot/secrets?values=true", &vault.admin)
            .1,
        vault.get(&format!("{path}/versions"), &vault.admin).1,
    ];
    for text in &texts {
        assert_no_values("management answer", text, &[secret]);
    }
    // Writing the same value again is a new version, reported as a change, audited `ok`.
    let again = vault.set("support-bot", "OPENAI_API_KEY", secret);
    assert_eq!(
        (again["changed"].clone(), again["secret"]["version"].clone()),
        (json!(true), json!(2))
    );
    assert_no_values("PUT answer", &again.to_string(), &[secret]);
    let audit = vault.get_json("/v1/audit?agent=support-bot", &vault.admin);
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .all(|r| r["outcome"] != "unchanged"),
        "{audit}"
    );
    // Plain with a new value is allowed: that value is the caller's own.
    let (status, text) = vault.put(
        path,
        &writer,
        json!({"kind": "plain", "value": "now-public-config"}),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["secret"]["value"], "now-public-config");
    // Rolling back to the secret version keeps it a secret: nothing reads it back.
    let (status, text) = vault.post(&format!("{path}/rollback"), &writer, json!({"to": 2}));
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["secret"]["kind"], "secret");
    assert_no_values("rollback answer", &text, &[secret]);
    let listed = vault
        .get("/v1/agents/support-bot/secrets?values=true", &writer)
        .1;
    assert_no_values("list --values", &listed, &[secret]);
    vault.assert_not_stored_or_logged(&[secret]);
}

#[test]
fn description_alone_updates_and_delete() {
    let vault = start_vault();
    vault.set("bot", "K", "same-value-every-time");
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let rev = || {
        vault.get_json("/v1/runtime/revision", &reader)["revision"]
            .as_u64()
            .expect("revision")
    };
    let before = rev();
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/K",
        &vault.admin,
        json!({"description": "new words"}),
    );
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(
        (body["changed"].clone(), body["secret"]["version"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(body["secret"]["description"], "new words");
    // Updating a missing key without a value is 404, nothing created.
    let (status, _) = vault.put(
        "/v1/agents/bot/secrets/MISSING",
        &vault.admin,
        json!({"description": "d"}),
    );
    assert_eq!(status, 404);
    // Delete removes it and bumps the revision.
    assert_eq!(
        vault.delete("/v1/agents/bot/secrets/K", &vault.admin).0,
        204
    );
    assert_ne!(rev(), before);
    assert_eq!(vault.get("/v1/agents/bot/secrets/K", &vault.admin).0, 404);
    assert_eq!(
        vault.delete("/v1/agents/bot/secrets/K", &vault.admin).0,
        404
    );
}

#[test]
fn import_summary_and_atomicity() {
    let vault = start_vault();
    vault.set("bot", "EXISTING", "existing-old-value");
    vault.set("bot", "KEEP", "keep-old-value");
    let path = "/v1/agents/bot/import";

    // One bad entry (NUL byte) and nothing is imported.
    let (status, body) = vault.post(
        path,
        &vault.admin,
        json!({"entries": [{"key": "NEW_ONE", "value": "fine"}, {"key": "BAD", "value": "a\u{0}b"}]}),
    );
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_value"));
    // One invalid name and nothing is imported.
    let (status, body) = vault.post(
        path,
        &vault.admin,
        json!({"entries": [{"key": "NEW_ONE", "value": "fine"}, {"key": "1BAD", "value": "x"}]}),
    );
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_name"));
    assert_eq!(
        vault.get("/v1/agents/bot/secrets/NEW_ONE", &vault.admin).0,
        404
    );

    let dir = Dir::new("import");
    let env = dir.write(
        "app.env",
        "# comment\nexport NEW_SECRET=\"imported-secret-value-1\"\nREGION=us-east-1\nBLANK=\nEXISTING=existing-new-value\n",
    );
    let out = vault.cli_run(
        &[
            "secrets",
            "import",
            "bot",
            "--file",
            env.to_str().expect("utf-8"),
            "--plain-keys",
            "REGION",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let summary = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(summary["created"], json!(["NEW_SECRET", "REGION"]));
    assert_eq!(summary["skipped"], json!(["BLANK", "EXISTING"]));
    assert_eq!(summary["overwritten"], json!([]));
    assert_eq!(
        vault.get_json("/v1/agents/bot/secrets/REGION", &vault.admin)["kind"],
        "plain"
    );

    let (status, body) = vault.post(
        path,
        &vault.admin,
        json!({"entries": [{"key": "EXISTING", "value": "existing-new-value"}, {"key": "KEEP", "value": "keep-old-value"}], "overwrite": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body)["overwritten"],
        json!(["EXISTING", "KEEP"]),
        "an identical value is a new version too (no answer confirms a guess)"
    );
    assert_no_values("import summary", &body, &["existing-new-value"]);
    vault.assert_not_stored_or_logged(&["imported-secret-value-1", "existing-new-value"]);
}

#[test]
fn malformed_input_is_rejected_and_changes_nothing() {
    let vault = start_vault();
    vault.set("bot", "GOOD", "good-value-123");
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"].clone();
    let admin = vault.admin.as_str();
    let put = |path: &str, body: Vec<u8>| vault.call("PUT", path, Some(admin), Some(body));

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/agents/bot/secrets/GOOD",
            b"{not json".to_vec(),
            400,
            "bad_json",
        ),
        ("/v1/agents/bot/secrets/GOOD", b"".to_vec(), 400, "bad_json"),
        (
            "/v1/agents/bot/secrets/GOOD",
            br#"{"value": 5}"#.to_vec(),
            400,
            "bad_json",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            br#"{"value":"x","extra":1}"#.to_vec(),
            400,
            "bad_json",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            br#"{"value":"x","kind":"weird"}"#.to_vec(),
            400,
            "bad_json",
        ),
        (
            "/v1/agents/Bad%20Name/secrets/GOOD",
            br#"{"value":"x"}"#.to_vec(),
            400,
            "invalid_name",
        ),
        (
            "/v1/agents/bot/secrets/9LIVES",
            br#"{"value":"x"}"#.to_vec(),
            400,
            "invalid_name",
        ),
        (
            "/v1/agents/bot/secrets/HAS%20SPACE",
            br#"{"value":"x"}"#.to_vec(),
            400,
            "invalid_name",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            br#"{"value":"nul\u0000inside"}"#.to_vec(),
            400,
            "invalid_value",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            json!({"value": "h".repeat(64 * 1024 + 1)})
                .to_string()
                .into_bytes(),
            413,
            "value_too_large",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            json!({"value": "h".repeat(2 * 1024 * 1024)})
                .to_string()
                .into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "/v1/agents/bot/secrets/GOOD",
            json!({"value": "x", "description": "d".repeat(1025)})
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, text) = put(path, body);
        assert_eq!(
            (got, error_code(&text).as_str()),
            (status, code),
            "{path}: {text}"
        );
        assert!(!text.contains("nul\u{0}inside"));
    }
    let (status, body) = vault.post("/v1/tokens", admin, json!({"scopes": ["secrets:read:*/x"]}));
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_scope"));
    let (status, body) = vault.post(
        "/v1/tokens",
        admin,
        json!({"scopes": ["admin"], "ttl": "soon"}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_request")
    );
    let (status, body) = vault.get("/v1/runtime/revision?since=abc", &reader);
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_query"));
    let (status, body) = vault.get("/v1/nope", admin);
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    // A secret quoted inside a wrongly typed field is not echoed back.
    let (status, body) = put(
        "/v1/agents/bot/secrets/GOOD",
        br#"{"kind":"sk_live_echo_me"}"#.to_vec(),
    );
    assert_eq!(status, 400);
    assert!(!body.contains("sk_live_echo_me"), "{body}");

    // Nothing changed.
    assert_eq!(
        vault.get_json("/v1/runtime/revision", &reader)["revision"],
        rev
    );
    let list = vault.get_json("/v1/agents/bot/secrets", admin);
    assert_eq!(list["secrets"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["secrets"][0]["version"], 1);
    let read = vault.get_json("/v1/runtime/secrets", &reader);
    assert_eq!(read["secrets"][0]["value"], "good-value-123");
    assert!(!vault.log().contains("sk_live_echo_me"));
}

/// The OpenAPI document checked against the running server by schemathesis.
#[test]
fn openapi_document_matches_the_server() {
    let probe = std::process::Command::new("st").arg("--version").output();
    if probe.map(|o| !o.status.success()).unwrap_or(true) {
        panic!(
            "schemathesis (`st`) is not on PATH: run `pip install schemathesis`, then \
             `cargo test --test vault openapi` (see the test command in README)"
        );
    }
    let vault = start_vault();
    vault.set("bot", "EXISTING", "openapi-existing-value");
    vault.put(
        "/v1/vars/SHARED",
        &vault.admin,
        json!({"value": "openapi-var-value"}),
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = Dir::new("openapi");
    let mut st = std::process::Command::new("st");
    st.current_dir(dir.path())
        .arg("--config-file")
        .arg(format!("{root}/docs/schemathesis.toml"))
        .args([
            "run",
            &format!("{root}/docs/openapi.yaml"),
            "--url",
            &vault.addr,
        ])
        .args(["-H", &format!("Authorization: Bearer {}", vault.admin)])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-allow-x00",
            "false",
        ])
        .args(["--request-timeout", "20", "--no-color"]);
    let output = run(&mut st, None);
    assert!(
        output.status.success(),
        "schemathesis found problems:{}",
        common::describe(&st, &output)
    );
    vault.assert_not_stored_or_logged(&["openapi-existing-value", "openapi-var-value"]);
}

/// Issue 13 item 4: names that change how the child starts are refused by the server
/// (API and CLI, secrets and project variables, set and import) unless the request says
/// `allow_dangerous_name`; an import with one such name changes nothing.
#[test]
fn dangerous_names_are_refused_unless_allowed() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    for key in ["PATH", "LD_PRELOAD", "NODE_OPTIONS"] {
        for path in [
            format!("/v1/agents/bot/secrets/{key}"),
            format!("/v1/vars/{key}"),
        ] {
            let (status, body) = vault.put(&path, admin, json!({"value": "/tmp/evil"}));
            assert_eq!(
                (status, error_code(&body).as_str()),
                (400, "dangerous_name"),
                "{path}: {body}"
            );
            assert!(body.contains(key), "the error names the key: {body}");
            assert_eq!(vault.get(&path, admin).0, 404, "{path} was not created");
        }
        // The CLI: refused without the flag (non-zero, the key named), accepted with it.
        let out = vault.cli_run(&["secrets", "set", "bot", key, "--value", "x1"], None);
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(key)
                && String::from_utf8_lossy(&out.stderr).contains("--allow-dangerous-name"),
            "{out:?}"
        );
        let out = vault.cli_run(&["vars", "set", key, "--value", "x1"], None);
        assert!(!out.status.success(), "{out:?}");
        let out = vault.cli_run(
            &[
                "secrets",
                "set",
                "bot",
                key,
                "--value",
                "x1",
                "--allow-dangerous-name",
            ],
            None,
        );
        assert!(out.status.success(), "{out:?}");
        let out = vault.cli_run(
            &[
                "vars",
                "set",
                key,
                "--value",
                "x1",
                "--allow-dangerous-name",
            ],
            None,
        );
        assert!(out.status.success(), "{out:?}");
    }
    let (status, body) = vault.put(
        "/v1/agents/bot2/secrets/LD_AUDIT",
        admin,
        json!({"value": "x", "kind": "plain", "allow_dangerous_name": true}),
    );
    assert_eq!(status, 201, "{body}");

    // Import: one such name and nothing is imported, by the API or the CLI.
    let (status, body) = vault.post(
        "/v1/agents/imp/import",
        admin,
        json!({"entries": [{"key": "FINE_ONE", "value": "fine"}, {"key": "LD_PRELOAD", "value": "/tmp/x.so"}]}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "dangerous_name")
    );
    assert_eq!(vault.get("/v1/agents/imp/secrets/FINE_ONE", admin).0, 404);
    let dir = Dir::new("dangerous-import");
    let env = dir.write(
        "app.env",
        "FINE_ONE=fine\nNODE_OPTIONS=--require /tmp/x.js\n",
    );
    let file = env.to_str().expect("utf-8");
    let out = vault.cli_run(&["secrets", "import", "imp", "--file", file], None);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NODE_OPTIONS"),
        "{out:?}"
    );
    assert_eq!(vault.get("/v1/agents/imp/secrets/FINE_ONE", admin).0, 404);
    let out = vault.cli_run(
        &[
            "secrets",
            "import",
            "imp",
            "--file",
            file,
            "--allow-dangerous-name",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        vault.get("/v1/agents/imp/secrets/NODE_OPTIONS", admin).0,
        200
    );
}

/// Issue 14 item 7: `POST /v1/vars` imports project variables by the agents' import rules:
/// bad input is a 400 with a stable code and changes nothing; a token that may manage one
/// agent cannot import project variables (403); audited as `import`.
#[test]
fn issue_14_vars_import_is_all_or_nothing_and_admin_only() {
    let vault = start_vault();
    for (entries, code) in [
        (
            json!([{"key": "NEW_VAR", "value": "fine"}, {"key": "BAD", "value": "a\u{0}b"}]),
            "invalid_value",
        ),
        (
            json!([{"key": "NEW_VAR", "value": "fine"}, {"key": "1BAD", "value": "x"}]),
            "invalid_name",
        ),
    ] {
        let (status, body) = vault.post("/v1/vars", &vault.admin, json!({ "entries": entries }));
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{body}");
        assert_eq!(vault.get("/v1/vars/NEW_VAR", &vault.admin).0, 404);
    }
    vault.set("writer-bot", "OWN", "own-value-00000001");
    let (_, writer) = vault.issue(&["secrets:write:writer-bot/*"], Some(json!("1h")));
    let (status, body) = vault.post(
        "/v1/vars",
        &writer,
        json!({"entries": [{"key": "NEW_VAR", "value": "fine"}]}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(vault.get("/v1/vars/NEW_VAR", &vault.admin).0, 404);

    let (status, body) = vault.post(
        "/v1/vars",
        &vault.admin,
        json!({"entries": [{"key": "NEW_VAR", "value": "imported-var-value-1"}], "plain_keys": []}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["created"], json!(["NEW_VAR"]));
    let audit = vault.get_json("/v1/audit", &vault.admin);
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["action"] == "import"),
        "{audit}"
    );
    vault.assert_not_stored_or_logged(&["imported-var-value-1"]);
}
