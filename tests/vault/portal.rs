//! The web portal (`/ui`, issue 18) against the real server over HTTP: sign-in and the
//! session cookie's flags, the read token refused, CSRF, the security headers, a write
//! token confined to its agents, sign-out, revocation ending a session, and no value in
//! any response the portal's page reads.

use std::time::Duration;

use crate::common::vault::{
    assert_no_values, error_code, json, private_ca, start_vault, start_vault_with, VaultServer,
};
use crate::common::Dir;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn client(ca: Option<&std::path::Path>) -> Client {
    let mut builder = Client::builder().timeout(Duration::from_secs(60));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("reading the CA");
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"));
    }
    builder.build().expect("building the HTTP client")
}

/// A browser's view of one portal session: its cookie and CSRF token.
struct Portal<'a> {
    vault: &'a VaultServer,
    client: Client,
    cookie: String,
    csrf: String,
    /// Every response body this session read, for the no-value check.
    bodies: Vec<String>,
}

/// `POST /ui/api/session` with `token`; returns the raw response.
fn sign_in_raw(vault: &VaultServer, client: &Client, token: &str) -> Response {
    client
        .post(vault.url("/ui/api/session"))
        .header("content-type", "application/json")
        .body(json!({ "token": token }).to_string())
        .send()
        .expect("sign-in request")
}

fn set_cookie(response: &Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("ASCII cookie").to_string())
        .unwrap_or_default()
}

impl<'a> Portal<'a> {
    fn sign_in(vault: &'a VaultServer, token: &str) -> Portal<'a> {
        Portal::sign_in_with(vault, client(None), token)
    }

    fn sign_in_with(vault: &'a VaultServer, client: Client, token: &str) -> Portal<'a> {
        let response = sign_in_raw(vault, &client, token);
        let status = response.status().as_u16();
        let cookie = set_cookie(&response);
        let body = response.text().unwrap_or_default();
        assert_eq!(status, 200, "sign-in: {body}");
        let pair = cookie.split(';').next().expect("a cookie pair").to_string();
        assert!(pair.starts_with("av_session="), "{cookie}");
        Portal {
            vault,
            client,
            cookie: pair,
            csrf: json(&body)["csrf"].as_str().expect("csrf").to_string(),
            bodies: vec![body],
        }
    }

    /// One request with the session cookie; `csrf` adds the CSRF header.
    fn send(&mut self, method: &str, path: &str, body: Option<Value>, csrf: bool) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, self.vault.url(path))
            .header("cookie", &self.cookie);
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = req.send().expect("portal request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        self.bodies.push(text.clone());
        (status, text)
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        self.send("GET", path, None, false)
    }

    fn change(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        self.send(method, path, body, true)
    }
}

#[test]
fn admin_sign_in_sets_a_strict_http_only_cookie() {
    let vault = start_vault();
    let client = client(None);
    let response = sign_in_raw(&vault, &client, &vault.admin);
    assert_eq!(response.status().as_u16(), 200);
    let cookie = set_cookie(&response);
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie}");
    }
    // Plain HTTP on loopback: a Secure cookie would never be sent back.
    assert!(!attrs.contains(&"Secure"), "{cookie}");
    let id = attrs[0]
        .strip_prefix("av_session=")
        .expect("session cookie");
    // 256 random bits, base64url without padding.
    assert_eq!(id.len(), 43, "{cookie}");
    let body = response.text().expect("body");
    let view = json(&body);
    assert_eq!(view["admin"], true);
    assert_eq!(view["scopes"], json!(["admin"]));
    assert!(
        view["csrf"].as_str().is_some_and(|c| c.len() == 43),
        "{body}"
    );
    assert_no_values("sign-in answer", &body, &[&vault.admin]);
    let secret_part = vault.admin.rsplit('_').next().expect("token secret");
    assert_no_values("sign-in answer", &body, &[secret_part]);
    // The sign-in is audited.
    let audit = vault.get_json("/v1/audit", &vault.admin);
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["action"] == "portal.sign_in" && r["outcome"] == "ok"),
        "{audit}"
    );
}

#[test]
fn sign_in_over_tls_sets_a_secure_cookie() {
    let dir = Dir::new("portal-tls");
    let (ca, cert, key) = private_ca(&dir);
    let vault = start_vault_with(&[
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]);
    let client = client(Some(&ca));
    let response = sign_in_raw(&vault, &client, &vault.admin);
    assert_eq!(response.status().as_u16(), 200);
    let cookie = set_cookie(&response);
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie}");
    }
    let mut portal = Portal::sign_in_with(&vault, client, &vault.admin);
    assert_eq!(portal.get("/ui/api/agents").0, 200);
}

#[test]
fn read_token_is_refused_with_a_clear_message() {
    let vault = start_vault();
    vault.set("bot", "K", "value-of-bot-k-0001");
    let (id, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let client = client(None);
    let response = sign_in_raw(&vault, &client, &reader);
    assert_eq!(response.status().as_u16(), 403);
    assert!(
        set_cookie(&response).is_empty(),
        "no session for a read token"
    );
    let body = response.text().expect("body");
    assert_eq!(error_code(&body), "forbidden");
    let message = json(&body)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("read-only") && message.contains(&id),
        "{message}"
    );
    assert_no_values("refusal", &body, &[&reader]);

    // A wrong token: 401; a token in a form post (no JSON content type): refused.
    let response = sign_in_raw(&vault, &client, "avt_000000000000_nope");
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .post(vault.url("/ui/api/session"))
        .header("content-type", "text/plain")
        .body(json!({ "token": vault.admin }).to_string())
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 400);
    assert!(set_cookie(&response).is_empty());
    // The denied sign-in is audited under the read token's id.
    let audit = vault.get_json("/v1/audit", &vault.admin);
    assert!(
        audit["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| {
                r["action"] == "portal.sign_in" && r["outcome"] == "denied" && r["token_id"] == id
            }),
        "{audit}"
    );
}

#[test]
fn a_change_without_the_csrf_header_is_forbidden() {
    let vault = start_vault();
    let mut portal = Portal::sign_in(&vault, &vault.admin);
    let path = "/v1/agents/bot/secrets/API_KEY";
    let body = json!({ "value": "csrf-test-value-1234" });
    let (status, text) = portal.send("PUT", path, Some(body.clone()), false);
    assert_eq!(
        (status, error_code(&text).as_str()),
        (403, "forbidden"),
        "{text}"
    );
    assert!(text.contains("X-CSRF-Token"), "{text}");
    // A wrong token is no better.
    let good = std::mem::replace(&mut portal.csrf, "x".repeat(43));
    assert_eq!(portal.change("PUT", path, Some(body.clone())).0, 403);
    portal.csrf = good;
    // Nothing was written.
    assert_eq!(vault.get(path, &vault.admin).0, 404);
    // Sign-out is a change too.
    assert_eq!(portal.send("DELETE", "/ui/api/session", None, false).0, 403);
    // With the header: created.
    let (status, text) = portal.change("PUT", path, Some(body));
    assert_eq!(status, 201, "{text}");
    assert_eq!(vault.get(path, &vault.admin).0, 200);
    // Reads need no CSRF header.
    assert_eq!(portal.get("/v1/agents/bot/secrets").0, 200);
}

#[test]
fn every_portal_response_carries_the_security_headers() {
    let vault = start_vault();
    let client = client(None);
    for path in [
        "/ui",
        "/ui/",
        "/ui/app.js",
        "/ui/app.css",
        "/ui/api/session",
        "/ui/api/agents",
    ] {
        let response = client.get(vault.url(path)).send().expect("request");
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(header("content-security-policy"), CSP, "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    // The page itself: no inline script or style (the CSP would block them anyway).
    let page = client.get(vault.url("/ui")).send().expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    let html = page.text().expect("html");
    assert!(html.contains(r#"<script src="/ui/app.js" defer></script>"#));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one external script only"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "no inline style"
    );
    for handler in ["onclick=", "onsubmit=", "onload=", "javascript:"] {
        assert!(!html.contains(handler), "no inline handler: {handler}");
    }
    let js = client.get(vault.url("/ui/app.js")).send().expect("script");
    assert!(js
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/javascript")));
    // Without a session the portal's API answers 401.
    let response = client
        .get(vault.url("/ui/api/agents"))
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
}

#[test]
fn a_write_token_sees_and_changes_only_its_agents() {
    let vault = start_vault();
    vault.set("alpha", "ALPHA_KEY", "alpha-value-000001");
    vault.set("beta", "BETA_KEY", "beta-value-0000002");
    let (_, writer) = vault.issue(&["secrets:write:alpha/*"], None);
    let mut portal = Portal::sign_in(&vault, &writer);
    let session = json(&portal.bodies[0]);
    assert_eq!(session["admin"], false);
    assert_eq!(session["scopes"], json!(["secrets:write:alpha/*"]));

    let (status, body) = portal.get("/ui/api/agents");
    assert_eq!(status, 200, "{body}");
    let agents = json(&body)["agents"].clone();
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(agents[0]["agent"], "alpha");
    assert_eq!(agents[0]["entries"], 1);
    assert_eq!(portal.get("/v1/agents/alpha/secrets").0, 200);

    for (method, path, body) in [
        ("GET", "/v1/agents/beta/secrets", None),
        ("GET", "/v1/agents/beta/secrets/BETA_KEY", None),
        (
            "PUT",
            "/v1/agents/beta/secrets/BETA_KEY",
            Some(json!({"value": "overwritten-by-alpha"})),
        ),
        ("DELETE", "/v1/agents/beta/secrets/BETA_KEY", None),
        ("GET", "/v1/tokens", None),
        ("POST", "/v1/tokens", Some(json!({"scopes": ["admin"]}))),
        ("GET", "/v1/audit", None),
    ] {
        let (status, text) = portal.change(method, path, body);
        assert_eq!(
            (status, error_code(&text).as_str()),
            (403, "forbidden"),
            "{method} {path}: {text}"
        );
    }
    assert_eq!(
        vault.get_json("/v1/agents/beta/secrets/BETA_KEY", &vault.admin)["version"],
        1,
        "beta's entry untouched"
    );
    let (status, text) = portal.change(
        "PUT",
        "/v1/agents/alpha/secrets/NEW_KEY",
        Some(json!({"value": "alpha-new-value-0003"})),
    );
    assert_eq!(status, 201, "{text}");
    // The admin's overview lists both agents.
    let mut admin = Portal::sign_in(&vault, &vault.admin);
    let (_, body) = admin.get("/ui/api/agents");
    let names: Vec<String> = json(&body)["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["agent"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
}

#[test]
fn a_session_cannot_read_values_at_run_time() {
    let vault = start_vault();
    vault.set("alpha", "K", "runtime-only-value-0004");
    let (_, both) = vault.issue(&["secrets:write:alpha/*", "secrets:read:alpha/*"], None);
    let mut portal = Portal::sign_in(&vault, &both);
    assert_eq!(
        json(&portal.bodies[0])["scopes"],
        json!(["secrets:write:alpha/*"]),
        "the session drops read scopes"
    );
    let (status, body) = portal.get("/v1/runtime/secrets?agent=alpha");
    assert_eq!(status, 403, "{body}");
    assert_no_values(
        "runtime read with a session",
        &body,
        &["runtime-only-value-0004"],
    );
    // The same token as a bearer still reads (the session changed nothing about it).
    assert_eq!(vault.get("/v1/runtime/secrets?agent=alpha", &both).0, 200);
}

#[test]
fn sign_out_ends_the_session() {
    let vault = start_vault();
    let mut portal = Portal::sign_in(&vault, &vault.admin);
    assert_eq!(portal.get("/ui/api/session").0, 200);
    let method = reqwest::Method::DELETE;
    let response = portal
        .client
        .request(method, vault.url("/ui/api/session"))
        .header("cookie", &portal.cookie)
        .header("x-csrf-token", &portal.csrf)
        .send()
        .expect("sign-out");
    assert_eq!(response.status().as_u16(), 204);
    let cleared = set_cookie(&response);
    assert!(
        cleared.starts_with("av_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // The old cookie is worth nothing now, on the portal's API and on /v1.
    for path in ["/ui/api/session", "/ui/api/agents", "/v1/tokens"] {
        let (status, body) = portal.get(path);
        assert_eq!(
            (status, error_code(&body).as_str()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    let (status, _) = portal.change(
        "PUT",
        "/v1/agents/bot/secrets/K",
        Some(json!({"value": "after-sign-out-0005"})),
    );
    assert_eq!(status, 401);
}

#[test]
fn revoking_the_token_ends_its_sessions() {
    let vault = start_vault();
    let (id, second_admin) = vault.issue(&["admin"], None);
    let mut portal = Portal::sign_in(&vault, &second_admin);
    assert_eq!(portal.get("/v1/tokens").0, 200);
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{id}"), &vault.admin).0,
        204
    );
    let (status, body) = portal.get("/ui/api/session");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "unauthorized"),
        "{body}"
    );
    assert_eq!(portal.get("/v1/tokens").0, 401);
    // Nor can it sign in again.
    let response = sign_in_raw(&vault, &client(None), &second_admin);
    assert_eq!(response.status().as_u16(), 401);
}

#[test]
fn no_value_in_any_portal_response() {
    let vault = start_vault();
    let values = [
        "portal-secret-value-AAAA1111",
        "portal-rotated-value-BBBB2222",
        "portal-imported-value-CCCC3333",
    ];
    let mut portal = Portal::sign_in(&vault, &vault.admin);
    let key = "/v1/agents/web/secrets/DB_PASSWORD";
    let (status, body) = portal.change(
        "PUT",
        key,
        Some(json!({"value": values[0], "description": "db"})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = portal.change("PUT", key, Some(json!({"value": values[1]})));
    assert_eq!(status, 200, "{body}");
    let (status, body) = portal.change(
        "POST",
        "/v1/agents/web/import",
        Some(json!({"entries": [{"key": "IMPORTED", "value": values[2]}]})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = portal.change("POST", &format!("{key}/rollback"), Some(json!({"to": 1})));
    assert_eq!(status, 200, "{body}");
    for path in [
        "/ui",
        "/ui/app.js",
        "/ui/api/session",
        "/ui/api/agents",
        "/v1/agents/web/secrets",
        key,
        &format!("{key}/versions"),
        "/v1/tokens",
        "/v1/audit",
    ] {
        let (status, _) = portal.get(path);
        assert_eq!(status, 200, "{path}");
    }
    let (status, body) = portal.get("/v1/agents/web/secrets");
    assert_eq!(status, 200);
    let previews: Vec<(String, String)> = json(&body)["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap_or("").into(),
                s["preview"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        previews,
        [
            ("DB_PASSWORD".into(), "****1111".into()),
            ("IMPORTED".into(), "****3333".into())
        ]
    );
    assert!(portal.bodies.len() > 12);
    for body in &portal.bodies {
        assert_no_values("portal response", body, &values);
    }
    vault.assert_not_stored_or_logged(&values);
}

#[test]
fn dotenv_import_reads_the_file_like_the_cli_and_is_all_or_nothing() {
    let vault = start_vault();
    vault.set("web", "EXISTING", "existing-value-0000EEEE");
    let mut portal = Portal::sign_in(&vault, &vault.admin);
    let path = "/ui/api/agents/web/import";
    let keys = |vault: &VaultServer| -> Vec<String> {
        vault.get_json("/v1/agents/web/secrets", &vault.admin)["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .map(|s| s["key"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // A syntax error on line 3: 400 naming the line, nothing imported.
    let bad = "A_KEY=import-value-AAAA1111\nB_KEY=import-value-BBBB2222\nC_KEY='unterminated\n";
    let (status, body) = portal.change("POST", path, Some(json!({ "content": bad })));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_request"),
        "{body}"
    );
    assert!(body.contains("line 3"), "{body}");
    assert_eq!(keys(&vault), ["EXISTING"]);
    // A dangerous name without the option: refused, nothing imported.
    let dangerous = "A_KEY=import-value-AAAA1111\nLD_PRELOAD=/tmp/evil.so\n";
    let (status, body) = portal.change("POST", path, Some(json!({ "content": dangerous })));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "dangerous_name"),
        "{body}"
    );
    assert_eq!(keys(&vault), ["EXISTING"]);
    // Without the CSRF header: refused.
    let good = "# comment\nexport A_KEY=import-value-AAAA1111\nB_KEY=\"pa$word-BBBB2222\"\n\
                REGION=eu-west-3\nEXISTING=replaced-value-0000FFFF\n";
    let (status, _) = portal.send("POST", path, Some(json!({ "content": good })), false);
    assert_eq!(status, 403);
    assert_eq!(keys(&vault), ["EXISTING"]);
    // The real thing: `$` kept literally, REGION plain, EXISTING skipped without overwrite.
    let (status, body) = portal.change(
        "POST",
        path,
        Some(json!({ "content": good, "plain_keys": ["REGION"] })),
    );
    assert_eq!(status, 200, "{body}");
    let summary = json(&body);
    assert_eq!(summary["created"], json!(["A_KEY", "B_KEY", "REGION"]));
    assert_eq!(summary["skipped"], json!(["EXISTING"]));
    let region = vault.get_json("/v1/agents/web/secrets/REGION", &vault.admin);
    assert_eq!(region["kind"], "plain");
    let (_, reader) = vault.issue(&["secrets:read:web/*"], None);
    let read = vault.get_json("/v1/runtime/secrets?agent=web", &reader);
    let value = |name: &str| {
        read["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["value"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(value("B_KEY").as_deref(), Some("pa$word-BBBB2222"));
    assert_eq!(
        value("EXISTING").as_deref(),
        Some("existing-value-0000EEEE")
    );
    // A write token for another agent cannot import here.
    let (_, writer) = vault.issue(&["secrets:write:other/*"], None);
    let mut other = Portal::sign_in(&vault, &writer);
    let (status, _) = other.change(
        "POST",
        path,
        Some(json!({ "content": "Z_KEY=zzzz-0000ZZZZ\n" })),
    );
    assert_eq!(status, 403);
    let secrets = [
        "import-value-AAAA1111",
        "pa$word-BBBB2222",
        "replaced-value-0000FFFF",
        "existing-value-0000EEEE",
    ];
    for body in portal.bodies.iter().chain(&other.bodies) {
        assert_no_values("import answer", body, &secrets);
    }
    vault.assert_not_stored_or_logged(&secrets);
}

#[test]
fn delivery_marks_show_when_launchers_have_read_the_current_value() {
    let vault = start_vault();
    vault.set("bot", "API_KEY", "delivery-value-one-1111");
    vault.set("bot", "OTHER", "delivery-other-value-2222");
    let mut portal = Portal::sign_in(&vault, &vault.admin);
    let marks = |portal: &mut Portal| -> Vec<(String, bool, bool)> {
        let (status, body) = portal.get("/ui/api/agents/bot/delivery");
        assert_eq!(status, 200, "{body}");
        json(&body)["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap_or("").to_string(),
                    e["delivered"].as_bool().unwrap_or(false),
                    e["last_read_at"].is_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        marks(&mut portal),
        [
            ("API_KEY".into(), false, false),
            ("OTHER".into(), false, false)
        ]
    );
    // A launcher's token reads API_KEY only.
    let (_, reader) = vault.issue(&["secrets:read:bot/API_KEY"], None);
    assert_eq!(vault.get("/v1/runtime/secrets?agent=bot", &reader).0, 200);
    crate::common::wait_until(Duration::from_secs(10), "the read is recorded", || {
        marks(&mut portal)[0].1
    });
    assert_eq!(marks(&mut portal)[1], ("OTHER".into(), false, false));
    // A rotation: not delivered until the next read; a description edit changes nothing.
    let (status, _) = portal.change(
        "PUT",
        "/v1/agents/bot/secrets/API_KEY",
        Some(json!({"value": "delivery-value-two-3333"})),
    );
    assert_eq!(status, 200);
    assert!(!marks(&mut portal)[0].1, "a new value is not delivered yet");
    assert_eq!(vault.get("/v1/runtime/secrets?agent=bot", &reader).0, 200);
    crate::common::wait_until(Duration::from_secs(10), "the new read is recorded", || {
        marks(&mut portal)[0].1
    });
    let (status, _) = portal.change(
        "PUT",
        "/v1/agents/bot/secrets/API_KEY",
        Some(json!({"description": "edited"})),
    );
    assert_eq!(status, 200);
    assert!(
        marks(&mut portal)[0].1,
        "a description edit is no new value"
    );
    // Another agent's write token may not look.
    let (_, writer) = vault.issue(&["secrets:write:other/*"], None);
    let mut other = Portal::sign_in(&vault, &writer);
    assert_eq!(other.get("/ui/api/agents/bot/delivery").0, 403);
    for body in &portal.bodies {
        assert_no_values(
            "delivery answer",
            body,
            &["delivery-value-one-1111", "delivery-value-two-3333"],
        );
    }
}
