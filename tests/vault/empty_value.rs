//! Issue 13 item 5: a blank value (empty or only whitespace) is refused by the server
//! (`empty_value`, secrets and project variables, API and CLI) unless the request says
//! `allow_empty_value`; an import skips blank entries by the same rule.

use crate::common::vault::{error_code, start_vault};
use serde_json::json;

#[test]
fn empty_values_are_refused_unless_allowed() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    for path in ["/v1/agents/bot/secrets/API_KEY", "/v1/vars/REGION"] {
        for blank in ["", "  \n"] {
            let (status, body) = vault.put(path, admin, json!({ "value": blank }));
            assert_eq!(
                (status, error_code(&body).as_str()),
                (400, "empty_value"),
                "{path}: {body}"
            );
            assert_eq!(vault.get(path, admin).0, 404, "{path} was not created");
        }
        let (status, body) = vault.put(
            path,
            admin,
            json!({ "value": "", "allow_empty_value": true }),
        );
        assert_eq!(status, 201, "{path}: {body}");
        // Updating an existing entry to a blank value is refused the same way.
        let (status, body) = vault.put(path, admin, json!({ "value": "" }));
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "empty_value"),
            "{path}: {body}"
        );
    }

    // The CLI: `--stdin` with empty input and `--value ''` fail naming the key and the
    // flag; `--allow-empty-value` stores it.
    let out = vault.cli_run(&["secrets", "set", "cli", "TOKEN", "--stdin"], Some(b""));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOKEN") && stderr.contains("--allow-empty-value"),
        "{out:?}"
    );
    assert_eq!(vault.get("/v1/agents/cli/secrets/TOKEN", admin).0, 404);
    let out = vault.cli_run(&["vars", "set", "MODE", "--value", ""], None);
    assert!(!out.status.success(), "{out:?}");
    let out = vault.cli_run(
        &[
            "secrets",
            "set",
            "cli",
            "TOKEN",
            "--stdin",
            "--allow-empty-value",
        ],
        Some(b""),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(vault.get("/v1/agents/cli/secrets/TOKEN", admin).0, 200);

    // Import skips blanks by the same rule and imports the rest.
    let (status, body) = vault.post(
        "/v1/agents/imp/import",
        admin,
        json!({"entries": [{"key": "FULL", "value": "x"}, {"key": "BLANK", "value": " "}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("BLANK"),
        "the skipped key is reported: {body}"
    );
    assert_eq!(vault.get("/v1/agents/imp/secrets/FULL", admin).0, 200);
    assert_eq!(vault.get("/v1/agents/imp/secrets/BLANK", admin).0, 404);
}
