//! agent-run with the agent-vault source, end to end: real `agent-vault` and `agent-run`
//! processes on loopback, real children, real rotations through the admin API and CLI.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::common;
use crate::common::vault::{start_vault, VaultServer};
use crate::common::{
    agent_run, env_log_child, lines_starting, test_child, wait_until, Builder, Dir, Launcher, Mode,
};

const LONG: Duration = Duration::from_secs(20);

/// `start pid=P KEY=VALUE...` lines of an env-log, as maps of KEY -> VALUE (plus "pid").
fn starts(log: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    lines_starting(log, "start")
        .iter()
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// agent-run on `vault` with `token` in AGENT_RUN_TOKEN, running `test_child env-log`.
fn launcher(vault: &VaultServer, dir: &Dir, token: &str, flags: &[&str], keys: &[&str]) -> Builder {
    let mut args: Vec<String> = vec!["--store".into(), vault.addr.clone()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(env_log_child(&dir.join("child.log"), keys));
    agent_run(Mode::Plain, args).env("AGENT_RUN_TOKEN", token)
}

fn wait_for_starts(dir: &Dir, count: usize) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut found = Vec::new();
    wait_until(LONG, &format!("{count} child start(s)"), || {
        found = starts(&dir.read("child.log"));
        found.len() >= count
    });
    found
}

fn read_token(vault: &VaultServer, agent: &str) -> String {
    vault
        .issue(&[&format!("secrets:read:{agent}/*")], Some(json!("1h")))
        .1
}

#[test]
fn injects_exactly_the_scoped_keys_and_hides_the_token() {
    let vault = start_vault();
    vault.set("support-bot", "STRIPE_KEY", "sk_live_stripe_0001");
    vault.set("support-bot", "STRIPE_WEBHOOK", "whsec_0000000002");
    vault.set("support-bot", "OPENAI_API_KEY", "sk-openai-000003");
    vault.set("billing-bot", "STRIPE_KEY", "sk_live_billing_04");
    let (_, token) = vault.issue(&["secrets:read:support-bot/STRIPE_*"], Some(json!("1h")));
    let dir = Dir::new("scoped");
    let mut run = launcher(
        &vault,
        &dir,
        &token,
        &["-vvv"],
        &["STRIPE_KEY", "STRIPE_WEBHOOK", "OPENAI_API_KEY"],
    )
    .start(&dir);
    let start = &wait_for_starts(&dir, 1)[0];
    assert_eq!(start["STRIPE_KEY"], "sk_live_stripe_0001");
    assert_eq!(start["STRIPE_WEBHOOK"], "whsec_0000000002");
    assert_eq!(
        start["OPENAI_API_KEY"], "<unset>",
        "a key outside the token's scope leaked in"
    );

    // The token is in neither the child's environment nor agent-run's own.
    let child = run.child();
    let child_env = std::fs::read(format!("/proc/{child}/environ")).unwrap();
    assert!(!common::contains(&child_env, token.as_bytes()));
    assert!(!common::contains(&child_env, b"AGENT_RUN_"));
    let own_env = std::fs::read(format!("/proc/{}/environ", run.pid)).unwrap();
    assert!(
        !common::contains(&own_env, token.as_bytes()),
        "token still in agent-run's /proc/PID/environ"
    );

    let out = run.stop();
    out.assert_code(0);
    for secret in [token.as_str(), "sk_live_stripe_0001", "whsec_0000000002"] {
        assert!(
            !out.stderr.contains(secret),
            "a value or the token reached agent-run's log at -vvv"
        );
    }
}

#[test]
fn a_token_for_agent_a_cannot_read_agent_b() {
    let vault = start_vault();
    vault.set("support-bot", "KEY", "support-value-1");
    vault.set("billing-bot", "KEY", "billing-value-2");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("cross-agent");
    let marker = dir.join("started");
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--agent",
            "billing-bot",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("billing-bot") && out.stderr.contains("scoped to another agent"),
        "{}",
        out.description
    );
    // ... and says what to check next (issue 15: every error says what to do next).
    assert!(
        out.stderr.contains("agent-vault tokens list"),
        "{}",
        out.description
    );
    assert!(!marker.exists());
    assert!(!out.stderr.contains("billing-value-2") && !out.stderr.contains(&token));
}

#[test]
fn rotation_restarts_with_the_new_value_and_identical_writes_do_not() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-one-000001");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("rotation");
    let mut run = launcher(&vault, &dir, &token, &[], &["API_KEY"]).start(&dir);
    let first = wait_for_starts(&dir, 1)[0].clone();

    // Identical re-write through the admin CLI: no restart.
    let out = vault.cli_run(
        &["secrets", "set", "support-bot", "API_KEY", "--stdin"],
        Some(b"value-one-000001"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A real rotation through the admin CLI.
    let out = vault.cli_run(
        &["secrets", "set", "support-bot", "API_KEY", "--stdin"],
        Some(b"value-two-000002"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = wait_for_starts(&dir, 2);
    assert_eq!(
        all.iter()
            .map(|s| s["API_KEY"].as_str())
            .collect::<Vec<_>>(),
        ["value-one-000001", "value-two-000002"]
    );
    let log = dir.read("child.log");
    let stopped = format!("stop pid={} SIGTERM", first["pid"]);
    assert!(log.find(&stopped).expect("old child got SIGTERM") < log.find("value-two").unwrap());

    // Rollback restores the old value, and restarts the child with it.
    let out = vault.cli_run(&["secrets", "rollback", "support-bot", "API_KEY"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = wait_for_starts(&dir, 3);
    assert_eq!(all[2]["API_KEY"], "value-one-000001");
    run.stop().assert_code(0);
    assert_eq!(starts(&dir.read("child.log")).len(), 3, "no extra restart");
}

#[test]
fn a_rotated_token_file_is_picked_up() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-one-000001");
    let (first_id, first) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let dir = Dir::new("token-file");
    let token_file = dir.write("token", &first);
    let mut run = launcher(
        &vault,
        &dir,
        "",
        &["--token-file", token_file.to_str().unwrap()],
        &["API_KEY"],
    )
    .env("AGENT_RUN_TOKEN", "")
    .start(&dir);
    wait_for_starts(&dir, 1);
    // Rotate the token the way a projected volume does, then revoke the old one.
    let (_, second) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    dir.replace("token", &second);
    let (status, body) = vault.delete(&format!("/v1/tokens/{first_id}"), &vault.admin);
    assert_eq!(status, 204, "{body}");
    vault.set("support-bot", "API_KEY", "value-two-000002");
    let all = wait_for_starts(&dir, 2);
    assert_eq!(all[1]["API_KEY"], "value-two-000002");
    run.stop().assert_code(0);
}

#[test]
fn the_child_survives_a_store_restart_and_the_next_rotation_arrives() {
    let mut vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-one-000001");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("store-restart");
    let mut run = launcher(&vault, &dir, &token, &[], &["API_KEY"]).start(&dir);
    wait_for_starts(&dir, 1);
    let child = run.child();

    vault.kill9();
    // agent-run notices (its long-poll breaks) and keeps the child.
    wait_until(LONG, "agent-run to notice the store is gone", || {
        run.stderr().contains("lost the store")
    });
    assert_eq!(
        run.child(),
        child,
        "the child kept running while the store was down"
    );
    vault.start_again();
    vault.set("support-bot", "API_KEY", "value-two-000002");
    let all = wait_for_starts(&dir, 2);
    assert_eq!(all[1]["API_KEY"], "value-two-000002");
    run.stop().assert_code(0);
}

#[test]
fn store_down_at_start_uses_the_fallback_or_fails_with_125() {
    let mut vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-one-000001");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("fallback");
    let fallback = dir.join("state/last-good");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let fallback_flag = ["--fallback", fallback.to_str().unwrap()];

    // A first run with the store up writes the fallback file (mode 0600, encrypted).
    let mut run = launcher(&vault, &dir, &token, &fallback_flag, &["API_KEY"]).start(&dir);
    wait_for_starts(&dir, 1);
    wait_until(LONG, "fallback file", || fallback.exists());
    run.stop().assert_code(0);
    assert_eq!(common::vault::file_mode(&fallback), 0o600);
    let bytes = std::fs::read(&fallback).unwrap();
    assert!(
        !common::contains(&bytes, b"value-one-000001"),
        "plaintext in the fallback file"
    );

    vault.kill9();
    // Without a fallback: retried for --start-timeout, then 125 and a clear message.
    let marker = dir.join("started");
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--start-timeout",
            "500ms",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("cannot reach the store") && out.stderr.contains("--fallback PATH"),
        "{}",
        out.description
    );
    assert!(!marker.exists());

    // With it: the child starts on the last good secrets, and when the store is back with
    // a rotated value, agent-run picks it up.
    std::fs::remove_file(dir.join("child.log")).unwrap();
    let mut run = launcher(&vault, &dir, &token, &fallback_flag, &["API_KEY"]).start(&dir);
    let first = wait_for_starts(&dir, 1);
    assert_eq!(first[0]["API_KEY"], "value-one-000001");
    assert!(run.stderr().contains("fallback"), "{}", run.describe(None));
    vault.start_again();
    vault.set("support-bot", "API_KEY", "value-two-000002");
    let all = wait_for_starts(&dir, 2);
    assert_eq!(all[1]["API_KEY"], "value-two-000002");
    run.stop().assert_code(0);
}

#[test]
fn expired_and_revoked_tokens_give_clear_errors() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-one-000001");
    let dir = Dir::new("expired");
    let (_, short) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1s")));
    wait_until(LONG, "the short token to expire", || {
        vault.get("/v1/runtime/secrets", &short).0 == 401
    });
    let out = agent_run(Mode::Plain, ["--store", &vault.addr, "--", "true"])
        .env("AGENT_RUN_TOKEN", &short)
        .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("rejected the token")
            && out.stderr.contains("agent-vault tokens issue --scope"),
        "{}",
        out.description
    );
    assert!(!out.stderr.contains(&short));

    // Revoked while running: the child keeps running, agent-run says so...
    let (id, token) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let mut run = launcher(&vault, &dir, &token, &[], &["API_KEY"]).start(&dir);
    wait_for_starts(&dir, 1);
    let child = run.child();
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{id}"), &vault.admin).0,
        204
    );
    vault.set("support-bot", "API_KEY", "value-two-000002");
    wait_until(LONG, "agent-run to report the rejected token", || {
        run.stderr().contains("credentials rejected")
    });
    assert_eq!(run.child(), child);
    run.stop().assert_code(0);

    // ...and with --exit-on-auth-failure, it stops the child and exits 125.
    std::fs::remove_file(dir.join("child.log")).unwrap();
    let (id, token) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let mut run = launcher(
        &vault,
        &dir,
        &token,
        &["--exit-on-auth-failure"],
        &["API_KEY"],
    )
    .start(&dir);
    wait_for_starts(&dir, 1);
    assert_eq!(
        vault.delete(&format!("/v1/tokens/{id}"), &vault.admin).0,
        204
    );
    vault.set("support-bot", "API_KEY", "value-three-00003");
    let status = run.wait(LONG);
    let out = run.outcome(status);
    out.assert_code(125);
    assert!(
        dir.read("child.log").contains("SIGTERM"),
        "the child was stopped"
    );
}

#[test]
fn check_prints_masked_previews_and_starts_nothing() {
    let vault = start_vault();
    vault.set("support-bot", "OPENAI_API_KEY", "sk-openai-abcdef123456");
    let (status, body) = vault.put(
        "/v1/vars/REGION",
        &vault.admin,
        json!({ "value": "eu-west-1", "kind": "plain" }),
    );
    assert!(status == 200 || status == 201, "{body}");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("check");
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--check",
            "-e",
            "AI=@OPENAI_API_KEY",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(0);
    assert!(
        out.stdout.contains("OPENAI_API_KEY") && out.stdout.contains("****3456"),
        "{}",
        out.description
    );
    assert!(
        out.stdout.contains("AI (=@OPENAI_API_KEY)"),
        "{}",
        out.description
    );
    assert!(
        out.stdout.contains("REGION")
            && out.stdout.contains("eu-west-1")
            && out.stdout.contains("plain")
    );
    assert!(out.stdout.contains("revision"));
    assert!(!out.stdout.contains("sk-openai-abcdef123456"));
    let out = agent_run(Mode::Plain, ["--store", &vault.addr, "--check", "--json"])
        .env("AGENT_RUN_TOKEN", &token)
        .run(&dir);
    out.assert_code(0);
    let parsed: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    let names: Vec<&str> = parsed["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["OPENAI_API_KEY", "REGION"]);
}

#[test]
fn no_secret_stays_in_memory_with_the_store_source() {
    let vault = start_vault();
    let values: Vec<String> = (0..24)
        .map(|i| format!("store-secret-{i:02}-{}", "x".repeat(i * 37 % 300)))
        .collect();
    for (i, value) in values.iter().enumerate() {
        vault.set("support-bot", &format!("SECRET_{i}"), value);
    }
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("store-memscan");
    let log = dir.join("signals.log");
    let mut run = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "-vvv",
            "--",
            test_child().to_str().unwrap(),
            "signals",
            log.to_str().unwrap(),
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .start(&dir);
    wait_until(LONG, "child ready", || {
        dir.read("signals.log").contains("ready")
    });
    let first = run.child();
    // The token must stay (agent-run needs it); only the values must go.
    let scan_values = |run: &Launcher, values: &[String], when: &str| {
        let mut needles: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        needles.push(vault.addr.as_bytes().to_vec());
        let hits = common::memscan::scan(run.pid, &needles);
        assert!(
            hits.iter().any(|h| h.needle == values.len()),
            "{when}: the scan found not even the control"
        );
        let leaks: Vec<String> = hits
            .iter()
            .filter(|h| h.needle < values.len())
            .map(|h| format!("secret #{} in {}", h.needle, h.region))
            .collect();
        assert!(
            leaks.is_empty(),
            "{when}: agent-run's memory holds secrets:\n{}",
            leaks.join("\n")
        );
    };
    let environ = std::fs::read(format!("/proc/{first}/environ")).unwrap();
    for value in &values {
        assert!(common::contains(&environ, value.as_bytes()));
    }
    scan_values(&run, &values, "after start");

    let rotated: Vec<String> = values.iter().map(|v| format!("rotated-{v}")).collect();
    for (i, value) in rotated.iter().enumerate() {
        vault.set("support-bot", &format!("SECRET_{i}"), value);
    }
    wait_until(LONG, "a child with every rotated value", || {
        run.children().first().is_some_and(|&c| {
            std::fs::read(format!("/proc/{c}/environ"))
                .is_ok_and(|e| rotated.iter().all(|v| common::contains(&e, v.as_bytes())))
        })
    });
    let mut everything = values.clone();
    everything.extend(rotated);
    scan_values(&run, &everything, "after rotations");
    run.signal(Signal::SIGTERM);
    let out = run.stop();
    for value in &everything {
        assert!(!out.stderr.contains(value.as_str()));
    }
}

#[test]
fn https_store_with_a_private_ca() {
    let dir = Dir::new("store-tls");
    let (ca, cert, key) = common::vault::private_ca(&dir);
    let vault = common::vault::start_vault_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(vault.addr.starts_with("https://"), "{}", vault.addr);
    // Set up through the admin CLI, which is told to trust the private CA.
    let ca_flag = ["--ca-cert", ca.to_str().unwrap()];
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let args: Vec<&str> = args.iter().chain(&ca_flag).copied().collect();
        let out = vault.cli_run(&args, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    cli(
        &["secrets", "set", "tls-bot", "API_KEY", "--stdin"],
        Some(b"value-over-tls-01"),
    );
    let token = cli(
        &["tokens", "issue", "--scope", "secrets:read:tls-bot/*"],
        None,
    );
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--store-ca",
            ca.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo $API_KEY",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "value-over-tls-01");
    // `--ca-cert`, the name for every store: the watcher's own TLS connection trusts it
    // too, so a rotation arrives.
    let mut run = launcher(
        &vault,
        &dir,
        &token,
        &["--ca-cert", ca.to_str().unwrap()],
        &["API_KEY"],
    )
    .start(&dir);
    assert_eq!(wait_for_starts(&dir, 1)[0]["API_KEY"], "value-over-tls-01");
    cli(
        &["secrets", "set", "tls-bot", "API_KEY", "--stdin"],
        Some(b"value-over-tls-02"),
    );
    assert_eq!(wait_for_starts(&dir, 2)[1]["API_KEY"], "value-over-tls-02");
    run.stop().assert_code(0);
    // Without the CA the certificate is refused: a clear error, nothing started.
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--start-timeout",
            "0s",
            "--",
            "true",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("cannot connect to the store") && out.stderr.contains("--ca-cert"),
        "{}",
        out.description
    );
}

/// The proxy variables other programs need, pointing at `proxy`; NO_PROXY removed.
fn with_env_proxies(mut builder: Builder, proxy: &str) -> Builder {
    let url = format!("http://{proxy}");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        builder = builder.env(name, &url);
    }
    builder.env("NO_PROXY", "").env("no_proxy", "")
}

/// Issue 11 item 2: the store client obeyed HTTP_PROXY & co. and sent the scoped token to
/// the proxy, even for a loopback store. Environment proxies are never used, and `--proxy`
/// is not used for a loopback store either.
#[test]
fn issue_11_environment_proxies_never_see_the_token() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-not-via-proxy-1");
    let token = read_token(&vault, "support-bot");
    let proxy = common::tcp::TcpServer::start(common::tcp::Behaviour::Record);
    let dir = Dir::new("env-proxy");
    for extra in [&[][..], &["--proxy", &format!("http://{}", proxy.addr)][..]] {
        let mut args = vec!["--store", &vault.addr];
        args.extend_from_slice(extra);
        args.extend(["--", "sh", "-c", "echo $API_KEY"]);
        let out = with_env_proxies(agent_run(Mode::Plain, &args), &proxy.addr)
            .env("AGENT_RUN_TOKEN", &token)
            .run(&dir);
        out.assert_code(0);
        assert_eq!(out.stdout.trim(), "value-not-via-proxy-1");
        assert!(
            proxy.requests().is_empty(),
            "the proxy was contacted ({extra:?}): {:?}",
            proxy.requests()
        );
    }
}

/// `--proxy` is used for a store that is not on loopback: an https store is reached through
/// a CONNECT tunnel, whose request carries no token; a proxy in front of a plain-http
/// remote store is refused before anything is sent.
#[test]
fn issue_11_proxy_flag_tunnels_to_a_remote_https_store() {
    let proxy = common::tcp::TcpServer::start(common::tcp::Behaviour::Record);
    let dir = Dir::new("proxy-flag");
    let token = "avt_proxytest_0123456789abcdef";
    let proxy_url = format!("http://{}", proxy.addr);
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            "https://store.invalid:8443",
            "--proxy",
            &proxy_url,
            "--start-timeout",
            "0s",
            "--",
            "true",
        ],
    )
    .env("AGENT_RUN_TOKEN", token)
    .run(&dir);
    out.assert_code(125);
    let requests = proxy.requests();
    assert!(
        requests
            .first()
            .is_some_and(|r| r.starts_with("CONNECT store.invalid:8443 ")),
        "{requests:?}\n{}",
        out.description
    );
    assert!(requests.iter().all(|r| !r.contains(token)), "{requests:?}");

    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            "http://store.invalid:8080",
            "--allow-insecure-http",
            "--proxy",
            &proxy_url,
            "--",
            "true",
        ],
    )
    .env("AGENT_RUN_TOKEN", token)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("--proxy") && out.stderr.contains("plain-http store"),
        "{}",
        out.description
    );
    assert_eq!(
        proxy.requests().len(),
        requests.len(),
        "nothing more was sent"
    );
}

/// Issue 11 item 14: a server that echoes the request in its error put the token on
/// stderr. Only the status and a well-formed error code reach a message now.
#[test]
fn issue_11_an_echoing_server_does_not_get_the_token_onto_stderr() {
    use common::tcp::{json_string, Behaviour, TcpServer};
    let dir = Dir::new("echo");
    let token = "avt_echoedtoken_0123456789";
    for status in [400, 403, 500] {
        let echo = TcpServer::start(Behaviour::Echo {
            status,
            body: |request| {
                format!(
                    r#"{{"error":{{"code":{},"message":{}}}}}"#,
                    json_string(request),
                    json_string(request)
                )
            },
        });
        let store = format!("http://{}", echo.addr);
        let out = agent_run(
            Mode::Plain,
            [
                "--store",
                &store,
                "--start-timeout",
                "0s",
                "-vvv",
                "--",
                "true",
            ],
        )
        .env("AGENT_RUN_TOKEN", token)
        .run(&dir);
        out.assert_code(125);
        assert!(
            echo.requests().iter().any(|r| r.contains(token)),
            "the fake store never saw the token: {:?}",
            echo.requests()
        );
        assert!(
            !out.stderr.contains("avt_echoed") && !out.stderr.contains("0123456789"),
            "HTTP {status}: the echoed token reached stderr\n{}",
            out.description
        );
    }
}

/// Issue 11 item 3: a FIFO as `--token-file` or `--fallback` hung agent-run for ever
/// (only SIGKILL ended it). Both are refused with a clear error, and agent-run exits.
#[test]
fn issue_11_a_fifo_token_file_or_fallback_is_an_error_not_a_hang() {
    let mut vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-fifo-000001");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("fifo");
    let token_fifo = dir.fifo("token");
    for mode in common::MODES {
        let out = agent_run(
            mode,
            [
                "--store",
                &vault.addr,
                "--token-file",
                token_fifo.to_str().unwrap(),
                "--",
                "true",
            ],
        )
        .run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("named pipe") && out.stderr.contains("token"),
            "{mode:?}\n{}",
            out.description
        );
    }

    // The store is down, so agent-run turns to the fallback, which is a FIFO.
    vault.kill9();
    let fallback_fifo = dir.fifo("fallback");
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &vault.addr,
            "--fallback",
            fallback_fifo.to_str().unwrap(),
            "--start-timeout",
            "1s",
            "--",
            "true",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("named pipe") && out.stderr.contains("fallback"),
        "{}",
        out.description
    );
}

/// Issue 10 item 14: the scoped token was in agent-run's memory three times. It is kept in
/// one wiped, page-locked buffer; each request's header is built from it and dropped (with
/// a connection per request, so no idle connection keeps a header in its write buffer).
#[test]
fn issue_10_the_token_is_in_agent_runs_memory_once() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-token-copies-1");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("token-copies");
    let token_file = dir.write("token", format!("{token}\n"));
    for source in ["env", "file"] {
        let _ = std::fs::remove_file(dir.join("child.log"));
        let flags: Vec<&str> = match source {
            "env" => vec![],
            _ => vec!["--token-file", token_file.to_str().unwrap()],
        };
        let env_token = if source == "env" { token.as_str() } else { "" };
        let mut run = launcher(&vault, &dir, env_token, &flags, &["API_KEY"]).start(&dir);
        wait_for_starts(&dir, 1);
        // A rotation: one more fetch and one more long-poll with the token.
        vault.set(
            "support-bot",
            "API_KEY",
            &format!("value-token-copies-{source}"),
        );
        wait_for_starts(&dir, 2);
        let hits = common::memscan::scan(run.pid, &[token.as_bytes().to_vec()]);
        let regions: Vec<&str> = hits.iter().map(|h| h.region.as_str()).collect();
        assert!(
            hits.len() == 1,
            "token from {source}: {} copies in agent-run's memory:\n{}",
            hits.len(),
            regions.join("\n")
        );
        run.stop().assert_code(0);
    }
}

/// Issue 10 item 11: `--start-timeout 3s` against a store that accepts and never answers
/// exited after 10 s (one whole request timeout). Each request now gets only what is left.
#[test]
fn issue_10_start_timeout_bounds_a_store_that_never_answers() {
    let silent = common::tcp::TcpServer::start(common::tcp::Behaviour::Silent);
    let dir = Dir::new("silent-store");
    let store = format!("http://{}", silent.addr);
    let started = std::time::Instant::now();
    let out = agent_run(
        Mode::Plain,
        ["--store", &store, "--start-timeout", "3s", "--", "true"],
    )
    .env("AGENT_RUN_TOKEN", "avt_silent_0000")
    .run(&dir);
    let took = started.elapsed();
    out.assert_code(125);
    assert!(!silent.requests().is_empty(), "agent-run never connected");
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} with --start-timeout 3s\n{}",
        out.description
    );
}

/// Issue 11 item 6: after `--token-file` changed, a fetch at the same revision did not
/// re-seal the fallback file, so the next start (store down, new token) failed with
/// "written with another token".
#[test]
fn issue_11_the_fallback_is_resealed_for_a_new_token_at_the_same_revision() {
    let mut vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-reseal-00001");
    let dir = Dir::new("reseal");
    let first = read_token(&vault, "support-bot");
    let token_file = dir.write("token", &first);
    let env_file = dir.write("local.env", "LOCAL=one\n");
    let fallback = dir.join("last-good");
    let flags = [
        "--token-file",
        token_file.to_str().unwrap(),
        "--fallback",
        fallback.to_str().unwrap(),
        "--env-file",
        env_file.to_str().unwrap(),
    ];
    let mut run = launcher(&vault, &dir, "", &flags, &["API_KEY", "LOCAL"])
        .env("AGENT_RUN_TOKEN", "")
        .start(&dir);
    wait_for_starts(&dir, 1);
    assert!(fallback.exists());
    // A new token; the store's revision does not move. A change of the env file makes
    // agent-run fetch again (with the new token); the watcher may also ask for it.
    let second = read_token(&vault, "support-bot");
    dir.replace("token", &second);
    dir.replace("local.env", "LOCAL=two\n");
    let all = wait_for_starts(&dir, 2);
    assert_eq!(all[1]["LOCAL"], "two");
    run.stop().assert_code(0);

    // The store is down; the next start has only the new token.
    vault.kill9();
    std::fs::remove_file(dir.join("child.log")).unwrap();
    let mut run = launcher(&vault, &dir, "", &flags, &["API_KEY", "LOCAL"])
        .env("AGENT_RUN_TOKEN", "")
        .start(&dir);
    let all = wait_for_starts(&dir, 1);
    assert_eq!(
        all[0]["API_KEY"],
        "value-reseal-00001",
        "{}",
        run.describe(None)
    );
    run.stop().assert_code(0);
}

/// Issue 11 item 9: an old fallback file put back handed out secrets from before a
/// rotation. agent-run keeps a revision floor (`PATH.floor`) and refuses an older file.
#[test]
fn issue_11_an_old_fallback_put_back_is_refused() {
    let mut vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-before-rotation");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("floor");
    let fallback = dir.join("last-good");
    let flags = ["--fallback", fallback.to_str().unwrap()];
    let mut run = launcher(&vault, &dir, &token, &flags, &["API_KEY"]).start(&dir);
    wait_for_starts(&dir, 1);
    let old = std::fs::read(&fallback).expect("fallback written");
    vault.set("support-bot", "API_KEY", "value-after-rotation");
    assert_eq!(
        wait_for_starts(&dir, 2)[1]["API_KEY"],
        "value-after-rotation"
    );
    run.stop().assert_code(0);
    assert_ne!(
        std::fs::read(&fallback).unwrap(),
        old,
        "rewritten at the rotation"
    );

    std::fs::write(&fallback, &old).unwrap();
    vault.kill9();
    std::fs::remove_file(dir.join("child.log")).unwrap();
    let mut args = vec!["--store".to_owned(), vault.addr.clone()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(["--start-timeout", "1s", "--", "sh", "-c", "echo $API_KEY"].map(String::from));
    let out = agent_run(Mode::Plain, &args)
        .env("AGENT_RUN_TOKEN", &token)
        .run(&dir);
    out.assert_code(125);
    assert!(
        !out.stdout.contains("value-before-rotation"),
        "{}",
        out.description
    );
    assert!(
        out.stderr.contains("older than generation") && out.stderr.contains("put back"),
        "{}",
        out.description
    );
}

/// Issue 11 item 12: 100 single-key writes in a fraction of a second gave 63 restarts. The
/// store watcher waits for a short quiet period (capped) before acting, so a burst is a
/// handful of restarts at most, and the last value reaches the child.
#[test]
fn issue_11_a_burst_of_store_writes_is_a_few_restarts() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "burst-start");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("burst");
    let mut run = launcher(&vault, &dir, &token, &[], &["API_KEY"]).start(&dir);
    wait_for_starts(&dir, 1);
    // One keep-alive client, as a script would use: the writes come as fast as the store
    // takes them.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let url = vault.url("/v1/agents/support-bot/secrets/API_KEY");
    let started = std::time::Instant::now();
    for i in 0..100 {
        let response = client
            .put(&url)
            .bearer_auth(&vault.admin)
            .json(&json!({ "value": format!("burst-{i:03}") }))
            .send()
            .unwrap();
        assert!(response.status().is_success());
    }
    let writing = started.elapsed();
    let mut all = Vec::new();
    wait_until(LONG, "the last value in a child", || {
        all = starts(&dir.read("child.log"));
        all.last().is_some_and(|s| s["API_KEY"] == "burst-099")
    });
    let restarts = all.len() - 1;
    eprintln!("{restarts} restarts for 100 writes in {writing:?}");
    assert!(
        restarts <= 5,
        "{restarts} restarts for 100 writes in {writing:?}"
    );
    run.stop().assert_code(0);
    assert_eq!(
        starts(&dir.read("child.log")).len(),
        all.len(),
        "nothing after the last"
    );
}

/// Issue 11 item 4: a token file anyone may write lets anyone choose agent-run's identity.
/// 0666 is refused outright; 0620 (group-writable) is a warning, refused with
/// `--strict-permissions`; 0600 is read without a word.
#[test]
fn issue_11_a_world_writable_token_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-perm-000001");
    let token = read_token(&vault, "support-bot");
    let dir = Dir::new("token-perms");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let run = |mode: u32, strict: bool| {
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut args = vec!["--store", &vault.addr, "--token-file"];
        args.push(token_file.to_str().unwrap());
        if strict {
            args.push("--strict-permissions");
        }
        args.extend(["--", "true"]);
        agent_run(Mode::Plain, args).run(&dir)
    };
    let out = run(0o666, false);
    out.assert_code(125);
    assert!(
        out.stderr.contains("writable by group or others") && !out.stderr.contains(&token),
        "{}",
        out.description
    );
    let out = run(0o620, false);
    out.assert_code(0);
    assert!(
        out.stderr.contains("unsafe permissions"),
        "no warning for a group-writable token file\n{}",
        out.description
    );
    run(0o620, true).assert_code(125);
    let out = run(0o600, true);
    out.assert_code(0);
    assert!(
        !out.stderr.contains("unsafe permissions"),
        "{}",
        out.description
    );
}

/// Issue 14 item 1: a `production/**` token reads one agent below the prefix, named with
/// `--agent production/openai` (encoded by agent-run); keys from the hosted vaults go in
/// under the one rule (`api-key` → `API_KEY`) or an explicit `--env NAME=@api-key`; without
/// `--agent` the run stops with 125 before anything starts.
#[test]
fn issue_14_hosted_key_names_are_mapped_and_a_prefix_token_needs_an_agent() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-prod-openai-1401");
    vault.set("production%2Fopenai", "db.url", "postgres://prod-1402");
    vault.set("production%2Fx", "api-key", "sk-prod-x-00001403");
    vault.set("staging%2Fopenai", "api-key", "sk-stag-openai-1404");
    let (_, token) = vault.issue(&["secrets:read:production/**/*"], Some(json!("1h")));
    for mode in common::MODES {
        for (agent, expected) in [
            ("production/openai", "sk-prod-openai-1401"),
            ("production/x", "sk-prod-x-00001403"),
        ] {
            let dir = Dir::new("ns-mapped");
            let mut args: Vec<String> = ["--store", &vault.addr, "--agent", agent, "-e"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.push("OPENAI=@api-key".into());
            args.extend(env_log_child(
                &dir.join("child.log"),
                &["API_KEY", "OPENAI", "DB_URL", "api-key"],
            ));
            let mut run = agent_run(mode, args)
                .env("AGENT_RUN_TOKEN", &token)
                .start(&dir);
            let start = &wait_for_starts(&dir, 1)[0];
            // `api-key` is named by an `--env`, so it goes in under that name only.
            assert_eq!(start["OPENAI"], expected, "{mode:?} {agent}");
            assert_eq!(start["API_KEY"], "<unset>", "{mode:?} {agent}");
            assert_eq!(start["api-key"], "<unset>", "{mode:?} {agent}");
            if agent == "production/openai" {
                assert_eq!(start["DB_URL"], "postgres://prod-1402", "{mode:?}");
            } else {
                assert_eq!(start["DB_URL"], "<unset>", "{mode:?}");
            }
            run.stop();
        }
        // Without an explicit mapping, `api-key` is API_KEY.
        let dir = Dir::new("ns-rule");
        let mut args: Vec<String> = ["--store", &vault.addr, "--agent", "production/openai"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(env_log_child(
            &dir.join("child.log"),
            &["API_KEY", "DB_URL"],
        ));
        let mut run = agent_run(mode, args)
            .env("AGENT_RUN_TOKEN", &token)
            .start(&dir);
        let start = &wait_for_starts(&dir, 1)[0];
        assert_eq!(start["API_KEY"], "sk-prod-openai-1401", "{mode:?}");
        assert_eq!(start["DB_URL"], "postgres://prod-1402", "{mode:?}");
        run.stop();

        // No --agent, or one outside the prefix: 125, nothing started.
        for agent in [None, Some("staging/openai"), Some("production")] {
            let dir = Dir::new("ns-refused");
            let marker = dir.join("started");
            let mut args: Vec<String> = vec!["--store".into(), vault.addr.clone()];
            if let Some(agent) = agent {
                args.extend(["--agent".to_string(), agent.to_string()]);
            }
            args.extend(["--".into(), "touch".into(), marker.display().to_string()]);
            let out = agent_run(mode, args)
                .env("AGENT_RUN_TOKEN", &token)
                .run(&dir);
            out.assert_code(125);
            let expected = if agent.is_none() {
                "--agent"
            } else {
                "scoped to another agent"
            };
            assert!(
                out.stderr.contains(expected),
                "{mode:?} {agent:?}: {}",
                out.description
            );
            assert!(!marker.exists());
            assert!(!out.stderr.contains("sk-stag") && !out.stderr.contains(&token));
        }
    }
}

/// Issue 14 item 1: two keys that become one variable (`api-key` and `API_KEY`) stop the run
/// and `--check` with 125, naming both keys and never a value.
#[test]
fn issue_14_two_keys_mapping_to_one_name_are_refused_naming_both() {
    let vault = start_vault();
    vault.set("production%2Fopenai", "api-key", "sk-collide-one-1411");
    vault.set("production%2Fopenai", "API_KEY", "sk-collide-two-1412");
    let token = read_token(&vault, "production/openai");
    for mode in common::MODES {
        let dir = Dir::new("ns-collision");
        let marker = dir.join("started");
        for extra in [
            vec!["--check"],
            vec!["--", "touch", marker.to_str().unwrap()],
        ] {
            let mut args = vec!["--store", vault.addr.as_str()];
            args.extend(extra.iter().copied());
            let out = agent_run(mode, &args)
                .env("AGENT_RUN_TOKEN", &token)
                .run(&dir);
            out.assert_code(125);
            assert!(
                out.stderr.contains("api-key")
                    && out.stderr.contains("API_KEY")
                    && out.stderr.contains("--env OTHER_NAME=@api-key"),
                "{mode:?} {extra:?}: {}",
                out.description
            );
            assert!(!out.stderr.contains("sk-collide") && !out.stdout.contains("sk-collide"));
            assert!(!marker.exists());
        }
        // The explicit mapping resolves it.
        let out = agent_run(
            mode,
            ["--store", &vault.addr, "--check", "-e", "LEGACY=@api-key"],
        )
        .env("AGENT_RUN_TOKEN", &token)
        .run(&dir);
        out.assert_code(0);
        assert!(
            out.stdout.contains("LEGACY (=@api-key)") && out.stdout.contains("****1412"),
            "{}",
            out.description
        );
    }
}

/// Issue 14 item 2: a token whose scope covers a critical entry. agent-run says at start
/// which approval request is waiting and what to run, keeps retrying within
/// `--start-timeout`, and starts the child (critical key included) once another admin
/// approves; a denied request ends the start with 125. Plainly and as PID 1.
#[test]
fn waits_for_the_approval_of_a_critical_scope_then_starts() {
    for mode in common::MODES {
        let vault = start_vault();
        vault.set("pay-bot", "PAYMENTS_KEY", "sk-critical-payments-0042");
        vault.set("pay-bot", "REGION", "eu-west-1-region");
        let (status, body) = vault.put(
            "/v1/agents/pay-bot/secrets/PAYMENTS_KEY",
            &vault.admin,
            json!({"tier": "critical"}),
        );
        assert_eq!(status, 200, "{body}");
        // The reader comes from a second admin, so init's admin token may approve it.
        let (status, body) = vault.post("/v1/tokens", &vault.admin, json!({"scopes": ["admin"]}));
        assert_eq!(status, 201, "{body}");
        let admin2 = common::vault::json(&body)["token"]
            .as_str()
            .unwrap()
            .to_string();
        let issue = |admin: &str| {
            let (status, body) = vault.post(
                "/v1/tokens",
                admin,
                json!({"scopes": ["secrets:read:pay-bot/*"], "ttl": "1h"}),
            );
            assert_eq!(status, 201, "{body}");
            common::vault::json(&body)["token"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let token = issue(&admin2);
        let dir = Dir::new("approval-wait");
        let mut args: Vec<String> = vec![
            "--store".into(),
            vault.addr.clone(),
            "--start-timeout".into(),
            "60s".into(),
        ];
        args.extend(env_log_child(
            &dir.join("child.log"),
            &["PAYMENTS_KEY", "REGION"],
        ));
        let mut run = agent_run(mode, args)
            .env("AGENT_RUN_TOKEN", &token)
            .start(&dir);
        let mut id = String::new();
        wait_until(LONG, "the pending approval request", || {
            let list = vault.get_json("/v1/approvals?status=pending", &vault.admin);
            match list["approvals"][0]["id"].as_str() {
                Some(found) => {
                    id = found.to_string();
                    true
                }
                None => false,
            }
        });
        wait_until(
            LONG,
            "agent-run to name the request and what to run",
            || {
                run.stderr()
                    .contains(&format!("`agent-vault approvals approve {id}`"))
            },
        );
        assert!(!dir.join("child.log").exists(), "started before approval");
        let (status, body) = vault.post(
            &format!("/v1/approvals/{id}/approve"),
            &vault.admin,
            json!({}),
        );
        assert_eq!(status, 200, "{body}");
        let started = wait_for_starts(&dir, 1);
        assert_eq!(started[0]["PAYMENTS_KEY"], "sk-critical-payments-0042");
        assert_eq!(started[0]["REGION"], "eu-west-1-region");
        run.stop().assert_code(0);
        let stderr = run.stderr();
        assert!(!stderr.contains("sk-critical-payments-0042"));
        // Said once, not at every retry.
        assert_eq!(stderr.matches("approvals approve").count(), 1, "{stderr}");

        // --once waits the same way, then runs the command in its place.
        let once_token = issue(&admin2);
        let once_dir = Dir::new("approval-once");
        let mut args: Vec<String> = vec![
            "--store".into(),
            vault.addr.clone(),
            "--once".into(),
            "--start-timeout".into(),
            "60s".into(),
        ];
        args.extend(env_log_child(
            &once_dir.join("child.log"),
            &["PAYMENTS_KEY"],
        ));
        let mut once = agent_run(mode, args)
            .env("AGENT_RUN_TOKEN", &once_token)
            .start(&once_dir);
        let mut once_id = String::new();
        wait_until(LONG, "--once names its request", || {
            let list = vault.get_json("/v1/approvals?status=pending", &vault.admin);
            once_id = list["approvals"][0]["id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            !once_id.is_empty()
                && once
                    .stderr()
                    .contains(&format!("`agent-vault approvals approve {once_id}`"))
        });
        let (status, _) = vault.post(
            &format!("/v1/approvals/{once_id}/approve"),
            &vault.admin,
            json!({}),
        );
        assert_eq!(status, 200);
        let started = wait_for_starts(&once_dir, 1);
        assert_eq!(started[0]["PAYMENTS_KEY"], "sk-critical-payments-0042");
        assert_eq!(once.stderr().matches("approvals approve").count(), 1);
        once.stop();

        // Denied: the start fails with 125 and says so.
        let denied = issue(&admin2);
        let out = agent_run(
            mode,
            [
                "--store",
                &vault.addr,
                "--start-timeout",
                "1s",
                "--",
                "true",
            ],
        )
        .env("AGENT_RUN_TOKEN", &denied)
        .run(&dir);
        out.assert_code(125);
        let list = vault.get_json("/v1/approvals?status=pending", &vault.admin);
        let id = list["approvals"][0]["id"]
            .as_str()
            .expect("a request")
            .to_string();
        let (status, _) = vault.post(&format!("/v1/approvals/{id}/deny"), &vault.admin, json!({}));
        assert_eq!(status, 200);
        let out = agent_run(mode, ["--store", &vault.addr, "--", "true"])
            .env("AGENT_RUN_TOKEN", &denied)
            .run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr
                .contains(&format!("approval request {id} was denied")),
            "{}",
            out.description
        );
    }
}
