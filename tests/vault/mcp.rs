//! `agent-vault mcp` (issue 14 item 5): the MCP server on stdio. The full session runs in
//! `tests/mcp/mcp_test.py` with the official MCP Python SDK (`pip install 'mcp>=2.3,<3'`,
//! installed by scripts/test-all.sh); the tests here run that script against this build, and check
//! what a client library hides: the raw lines on stdout, the end of input, and the start-up
//! refusals.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::vault::{start_vault, vault_bin, vault_cmd};
use crate::common::{run, run_code};

#[test]
fn mcp_session_through_the_python_sdk() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/mcp_test.py");
    let mut python = Command::new("python3");
    python.arg(script).env("AGENT_VAULT_BIN", vault_bin());
    let out = run(&mut python, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed, 0 failed"),
        "tests/mcp/mcp_test.py failed (the SDK missing? pip install 'mcp>=2.3,<3'):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Raw JSON-RPC lines against a real store: each answer one JSON line on stdout in order,
/// nothing else there; notifications unanswered; the server ends with its input.
#[test]
fn mcp_answers_raw_lines_in_order_and_ends_with_its_input() {
    let vault = start_vault();
    let secret = "sk_live_raw_mcp_value_L4k2";
    vault.set("support-bot", "OPENAI_API_KEY", secret);
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_entries","arguments":{"agent":"support-bot"}}}),
        json!([
            {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"set_secret","arguments":{"agent":"support-bot","key":"K","value":secret}}},
            {"jsonrpc":"2.0","id":"four","method":"ping"}
        ]),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"describe_entry","arguments":{"agent":"support-bot","key":"OPENAI_API_KEY"}}}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut mcp = vault_cmd();
    mcp.args(["mcp", "-vvv"])
        .env("AGENT_VAULT_ADDR", &vault.addr)
        .env("AGENT_VAULT_TOKEN", &vault.admin);
    let out = run(&mut mcp, Some(input.as_bytes()));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let answers: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(answers.len(), 4, "{stdout}");
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["result"]["protocolVersion"], "2025-06-18");
    let entries = &answers[1]["result"]["structuredContent"]["entries"];
    assert_eq!(entries[0]["key"], "OPENAI_API_KEY", "{stdout}");
    assert_eq!(entries[0]["preview"], "****L4k2", "{stdout}");
    assert_eq!(answers[2][0]["id"], 3);
    assert_eq!(answers[2][0]["result"]["isError"], true);
    assert_eq!(
        answers[2][1],
        json!({"jsonrpc":"2.0","id":"four","result":{}})
    );
    assert_eq!(
        answers[3]["result"]["structuredContent"]["preview"],
        "****L4k2"
    );
    for text in [&stdout, &*stderr] {
        assert!(
            !text.contains(secret),
            "a value on stdout or stderr:\n{text}"
        );
        assert!(
            !text.contains(&vault.admin),
            "the token on stdout or stderr:\n{text}"
        );
    }
    assert!(stderr.contains("mcp tool called"), "{stderr}");
    vault.assert_not_stored_or_logged(&[secret]);

    // A 2025-03-26 client: the same answer as text only (structured results came later).
    let older = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_entries","arguments":{"agent":"support-bot"}}}),
    ];
    let input: String = older.iter().map(|l| format!("{l}\n")).collect();
    let out = run(&mut mcp, Some(input.as_bytes()));
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(answers[0]["result"]["protocolVersion"], "2025-03-26");
    let result = &answers[1]["result"];
    assert!(result.get("structuredContent").is_none(), "{result}");
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().expect("text"))
        .expect("the text is the JSON answer");
    assert_eq!(text["entries"][0]["preview"], "****L4k2", "{result}");
}

/// No token, or plain http to a remote address: refused at start (exit 2), before reading
/// a message, and stdout stays empty for the client.
#[test]
fn mcp_refuses_to_start_without_a_token_or_on_plain_remote_http() {
    let mut mcp = vault_cmd();
    mcp.arg("mcp");
    let out = run_code(&mut mcp, Some(b"{}\n"), 2);
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no token"),
        "{out:?}"
    );
    let mut mcp = vault_cmd();
    mcp.args(["mcp", "--addr", "http://192.0.2.1:8377"])
        .env("AGENT_VAULT_TOKEN", "avt_x");
    let out = run_code(&mut mcp, Some(b"{}\n"), 2);
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing plain http"),
        "{out:?}"
    );
}

/// A token the store does not accept (revoked, expired, mistyped): the server still starts,
/// and each tool call is a tool error that says how to fix it, never a protocol error.
#[test]
fn mcp_with_a_token_the_store_refuses_says_what_to_do() {
    let vault = start_vault();
    let (id, token) = vault.issue(&["admin"], None);
    let (status, body) = vault.delete(&format!("/v1/tokens/{id}"), &vault.admin);
    assert!(status == 200 || status == 204, "revoke: {status} {body}");
    let call =
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_agents"}});
    let mut mcp = vault_cmd();
    mcp.arg("mcp")
        .env("AGENT_VAULT_ADDR", &vault.addr)
        .env("AGENT_VAULT_TOKEN", &token);
    let out = run(&mut mcp, Some(format!("{call}\n").as_bytes()));
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("unauthorized"), "{text}");
    assert!(text.contains("restart it with a valid"), "{text}");
    assert!(!text.contains(&token), "{text}");
}
