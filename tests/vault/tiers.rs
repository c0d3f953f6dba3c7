//! Issue 14 item 2: tiers and approval. A read token whose scope covers a critical entry
//! reads nothing until an admin other than its issuer approves it; denial, self-approval,
//! the end of an approval with its token, a standard-only scope, sensitive reads' audit.

use std::time::Duration;

use crate::common::vault::{error_code, json, start_vault, VaultServer};
use crate::common::wait_until;
use serde_json::{json, Value};

/// Issue a token with `issuer` (an admin token); returns (id, token).
fn issue_by(
    vault: &VaultServer,
    issuer: &str,
    scopes: &[&str],
    ttl: Option<Value>,
) -> (String, String) {
    let mut req = json!({"scopes": scopes, "allow_empty": true});
    if let Some(ttl) = ttl {
        req["ttl"] = ttl;
    }
    let (status, body) = vault.post("/v1/tokens", issuer, req);
    assert_eq!(status, 201, "{body}");
    let v = json(&body);
    (
        v["id"].as_str().expect("id").into(),
        v["token"].as_str().expect("token").into(),
    )
}

fn set_tier(vault: &VaultServer, agent: &str, key: &str, tier: &str) {
    let (status, body) = vault.put(
        &format!("/v1/agents/{agent}/secrets/{key}"),
        &vault.admin,
        json!({"tier": tier}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["secret"]["tier"], tier);
}

/// The approval id of an `approval_required` / `approval_denied` answer.
fn refused(vault: &VaultServer, token: &str, code: &str) -> String {
    let (status, body) = vault.get("/v1/runtime/secrets", token);
    assert_eq!((status, error_code(&body).as_str()), (403, code), "{body}");
    json(&body)["error"]["approval_id"]
        .as_str()
        .expect("approval_id")
        .to_string()
}

fn approvals(vault: &VaultServer) -> Vec<Value> {
    vault.get_json("/v1/approvals", &vault.admin)["approvals"]
        .as_array()
        .expect("approvals")
        .clone()
}

fn audit(vault: &VaultServer) -> Vec<Value> {
    vault.get_json("/v1/audit", &vault.admin)["records"]
        .as_array()
        .expect("records")
        .clone()
}

#[test]
fn a_critical_scope_waits_for_another_admin_and_self_approval_is_refused() {
    let vault = start_vault();
    vault.set("bot", "PAYMENTS_KEY", "sk-critical-payments-77");
    vault.set("bot", "LOG_LEVEL", "standard-level-value");
    set_tier(&vault, "bot", "PAYMENTS_KEY", "critical");
    let (admin2_id, admin2) = issue_by(&vault, &vault.admin, &["admin"], None);
    let (reader_id, reader) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], None);

    // Pending: the whole read fails, with the request named (the same one every time).
    let id = refused(&vault, &reader, "approval_required");
    assert_eq!(refused(&vault, &reader, "approval_required"), id);
    let (_, body) = vault.get("/v1/runtime/secrets", &reader);
    assert!(
        body.contains(&format!("agent-vault approvals approve {id}")),
        "{body}"
    );
    assert!(
        !body.contains("standard-level-value") && !body.contains("sk-critical"),
        "{body}"
    );
    // The revision (no values) still answers, so a launcher can wait on it.
    assert_eq!(vault.get("/v1/runtime/revision", &reader).0, 200);
    let list = approvals(&vault);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["token_id"], reader_id.as_str());
    assert_eq!(list[0]["issued_by"], admin2_id.as_str());
    assert_eq!(list[0]["keys"], json!(["PAYMENTS_KEY"]));

    // Self-approval: the issuing admin, and the token itself, cannot.
    let (status, body) = vault.post(&format!("/v1/approvals/{id}/approve"), &admin2, json!({}));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "self_approval"),
        "{body}"
    );
    let (status, _) = vault.post(&format!("/v1/approvals/{id}/approve"), &reader, json!({}));
    assert_eq!(status, 403);
    assert_eq!(approvals(&vault)[0]["status"], "pending");
    refused(&vault, &reader, "approval_required");
    // A write token may not lower a critical entry's tier (that would skip the approval).
    let (_, writer) = issue_by(&vault, &vault.admin, &["secrets:write:bot/*"], None);
    let (status, body) = vault.put(
        "/v1/agents/bot/secrets/PAYMENTS_KEY",
        &writer,
        json!({"tier": "standard"}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "forbidden"),
        "{body}"
    );

    // Another admin approves: the token reads everything, critical entry included.
    let (status, body) = vault.post(
        &format!("/v1/approvals/{id}/approve"),
        &vault.admin,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"], "approved");
    let secrets = vault.get_json("/v1/runtime/secrets", &reader);
    assert!(secrets.to_string().contains("sk-critical-payments-77"));
    assert!(secrets.to_string().contains("standard-level-value"));
    // Decided once: a second decision is a conflict.
    let (status, body) = vault.post(&format!("/v1/approvals/{id}/deny"), &vault.admin, json!({}));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "conflict"),
        "{body}"
    );

    // Denied: a second token of the same scope never reads.
    let (_, denied) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], None);
    let id2 = refused(&vault, &denied, "approval_required");
    assert_ne!(id2, id);
    let (status, body) = vault.post(
        &format!("/v1/approvals/{id2}/deny"),
        &vault.admin,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(refused(&vault, &denied, "approval_denied"), id2);
    let (status, _) = vault.post(
        "/v1/approvals/000000000000/approve",
        &vault.admin,
        json!({}),
    );
    assert_eq!(status, 404);
    let (status, body) = vault.get("/v1/approvals?status=pending", &vault.admin);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["approvals"], json!([]));

    // Audited: the request, the refused self-approval, the approval and the denial.
    let records = audit(&vault);
    let has = |action: &str, outcome: &str, token: &str| {
        records
            .iter()
            .any(|r| r["action"] == action && r["outcome"] == outcome && r["token_id"] == token)
    };
    assert!(
        has("approval.request", "pending", &reader_id),
        "{records:?}"
    );
    assert!(has("approval.approve", "denied", &admin2_id), "{records:?}");
    assert!(
        has("runtime.read", "approval_required", &reader_id),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r["action"] == "approval.approve"
            && r["outcome"] == "ok"
            && r["keys"] == json!([id, reader_id])),
        "{records:?}"
    );
    assert!(records
        .iter()
        .any(|r| r["action"] == "approval.deny" && r["outcome"] == "ok"));
    vault.assert_not_stored_or_logged(&["sk-critical-payments-77"]);
}

#[test]
fn a_standard_only_scope_reads_without_approval() {
    let vault = start_vault();
    vault.set("bot", "PAYMENTS_KEY", "sk-critical-payments-78");
    vault.set("bot", "LOG_LEVEL", "standard-level-value");
    set_tier(&vault, "bot", "PAYMENTS_KEY", "critical");
    let (_, narrow) = vault.issue(&["secrets:read:bot/LOG_*"], None);
    let secrets = vault.get_json("/v1/runtime/secrets", &narrow);
    assert_eq!(secrets["secrets"].as_array().expect("secrets").len(), 1);
    assert!(approvals(&vault).is_empty());
    // A critical project variable is covered by a scope whose pattern matches it.
    let (status, body) = vault.put(
        "/v1/vars/LOG_SINK_TOKEN",
        &vault.admin,
        json!({"value": "project-critical-token-1", "tier": "critical"}),
    );
    assert_eq!(status, 201, "{body}");
    refused(&vault, &narrow, "approval_required");
}

#[test]
fn an_approval_ends_with_its_token() {
    let vault = start_vault();
    vault.set("bot", "PAYMENTS_KEY", "sk-critical-payments-79");
    set_tier(&vault, "bot", "PAYMENTS_KEY", "critical");
    // Readers come from a second admin, so init's admin token may approve them.
    let (_, admin2) = issue_by(&vault, &vault.admin, &["admin"], None);
    let (_, short) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], Some(json!("3s")));
    let id = refused(&vault, &short, "approval_required");
    let (status, body) = vault.post(
        &format!("/v1/approvals/{id}/approve"),
        &vault.admin,
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(vault.get("/v1/runtime/secrets", &short).0, 200);
    wait_until(Duration::from_secs(10), "the 3s token expires", || {
        vault.get("/v1/runtime/secrets", &short).0 == 401
    });
    assert_eq!(approvals(&vault)[0]["status"], "expired");

    // A pending request of a token that expired cannot be approved any more.
    let (_, brief) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], Some(json!("1s")));
    let id = refused(&vault, &brief, "approval_required");
    wait_until(Duration::from_secs(10), "the 1s token expires", || {
        vault.get("/v1/runtime/secrets", &brief).0 == 401
    });
    let (status, body) = vault.post(
        &format!("/v1/approvals/{id}/approve"),
        &vault.admin,
        json!({}),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "conflict"),
        "{body}"
    );

    // Revocation ends it too; a new token asks again.
    let (rid, revoked) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], None);
    let id = refused(&vault, &revoked, "approval_required");
    vault.post(
        &format!("/v1/approvals/{id}/approve"),
        &vault.admin,
        json!({}),
    );
    assert_eq!(vault.get("/v1/runtime/secrets", &revoked).0, 200);
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{rid}"), &vault.admin).0,
        204
    );
    assert_eq!(vault.get("/v1/runtime/secrets", &revoked).0, 401);
    let list = approvals(&vault);
    assert!(list.iter().all(|a| a["status"] == "expired"), "{list:?}");
}

#[test]
fn sensitive_reads_are_audited_with_token_and_address() {
    let vault = start_vault();
    vault.set("bot", "SUPPORT_KEY", "sensitive-support-key-1");
    set_tier(&vault, "bot", "SUPPORT_KEY", "sensitive");
    let (id, reader) = vault.issue(&["secrets:read:bot/*"], None);
    assert_eq!(vault.get("/v1/runtime/secrets", &reader).0, 200);
    wait_until(Duration::from_secs(5), "the read is audited", || {
        audit(&vault).iter().any(|r| {
            r["action"] == "runtime.read"
                && r["token_id"] == id.as_str()
                && r["keys"] == json!(["SUPPORT_KEY"])
                && r["remote"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1:"))
        })
    });
}

#[test]
fn the_cli_lists_approves_and_denies() {
    let vault = start_vault();
    let out = vault.cli_run(
        &[
            "secrets",
            "set",
            "bot",
            "PAYMENTS_KEY",
            "--stdin",
            "--tier",
            "critical",
        ],
        Some(b"sk-critical-cli-value-5\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = vault.cli_run(&["secrets", "list", "bot"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("critical"),
        "{out:?}"
    );
    let (_, admin2) = issue_by(&vault, &vault.admin, &["admin"], None);
    let (_, reader) = issue_by(&vault, &admin2, &["secrets:read:bot/*"], None);
    let id = refused(&vault, &reader, "approval_required");
    let out = vault.cli_run(&["approvals", "list", "--status", "pending"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains(&id) && text.contains("PAYMENTS_KEY"),
        "{text}"
    );
    // The issuing admin may not approve; init's admin token (another one) may.
    let mut own = vault.cli();
    own.env("AGENT_VAULT_TOKEN", &admin2)
        .args(["approvals", "approve", &id]);
    let out = crate::common::run(&mut own, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("self_approval"),
        "{out:?}"
    );
    let out = vault.cli_run(&["approvals", "approve", &id], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("approved"), "{out:?}");
    assert_eq!(vault.get("/v1/runtime/secrets", &reader).0, 200);
    let out = vault.cli_run(&["approvals", "deny", &id], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The tier changes without a value: `update --tier` and `tag --tier`, no new version.
    let out = vault.cli_run(
        &[
            "secrets",
            "update",
            "bot",
            "PAYMENTS_KEY",
            "--tier",
            "sensitive",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = vault.cli_run(&["secrets", "describe", "bot", "PAYMENTS_KEY"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("tier:         sensitive") && text.contains("version:      1"),
        "{text}"
    );
    let out = vault.cli_run(
        &[
            "secrets",
            "tag",
            "bot",
            "PAYMENTS_KEY",
            "--tier",
            "critical",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tier:         critical"),
        "{out:?}"
    );
}
