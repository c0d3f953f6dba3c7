//! agent-run against a real OpenBao (issue 7): `bao server -dev` on a free loopback port
//! per test, and a three-node Raft cluster for failover (both from the harness,
//! `common::openbao`). No mocks; every server is killed when its handle drops. Without
//! `bao` these tests fail, they do not skip.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;
use crate::common::openbao::{approle_args, Bao, RaftCluster, ROOT};
use crate::common::{
    agent_run, contains, env_log_child, memscan, random_values, starts, test_child, wait_until,
    Dir, Mode, MODES,
};

const LONG: Duration = Duration::from_secs(20);

fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Token auth (VAULT_TOKEN, BAO_TOKEN and --token-file), KV v2 and KV v1 read in one run,
/// later paths winning, JSON types as text, and the token variables kept from the child.
#[test]
fn token_auth_reads_kv_v2_and_v1() {
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/reader",
        json!({"API_KEY": "v2-api-key", "SHARED": "from-v2", "PORT": 8080, "ON": true,
               "CONF": {"a": [1, "x"]}}),
    );
    bao.enable_kv("kv1", "1");
    bao.put_v1(
        "kv1",
        "agents/reader",
        json!({"DB_URL": "postgres://v1", "SHARED": "from-v1"}),
    );
    let script = "echo \"$API_KEY|$SHARED|$PORT|$ON|$CONF|$DB_URL\"; env | grep -c -E '^(VAULT|BAO)_TOKEN=' || true";
    let expected = "v2-api-key|from-v1|8080|true|{\"a\":[1,\"x\"]}|postgres://v1";
    let token_file = dir.write("token", format!("{ROOT}\n"));
    for (variable, file) in [
        (Some("VAULT_TOKEN"), None),
        (Some("BAO_TOKEN"), None),
        (None, Some(&token_file)),
    ] {
        let mut a = args(&[
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/reader",
            "--path",
            "kv1/agents/reader",
        ]);
        if let Some(file) = file {
            a.extend(args(&["--token-file", file.to_str().unwrap()]));
        }
        a.extend(args(&["--", "sh", "-c", script]));
        let mut builder = agent_run(Mode::Plain, &a);
        if let Some(variable) = variable {
            builder = builder.env(variable, ROOT);
        }
        let out = builder.run(&dir);
        out.assert_code(0);
        let mut lines = out.stdout.lines();
        assert_eq!(lines.next(), Some(expected), "{}", out.description);
        assert_eq!(
            lines.next(),
            Some("0"),
            "a token variable reached the child"
        );
    }

    // No token anywhere: a clear error naming the variables, before anything starts.
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/reader",
            "--",
            "true",
        ],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("BAO_TOKEN") && out.stderr.contains("VAULT_TOKEN"),
        "{}",
        out.description
    );
    // A missing path is a 404 naming it; a wrong token an auth error.
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/nobody",
            "--",
            "true",
        ],
    )
    .env("VAULT_TOKEN", ROOT)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("secret/agents/nobody") && out.stderr.contains("404"),
        "{}",
        out.description
    );
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/reader",
            "--",
            "true",
        ],
    )
    .env("VAULT_TOKEN", "s.not-a-real-token-0000")
    .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("--auth token"), "{}", out.description);
    assert!(
        !out.stderr.contains("s.not-a-real-token-0000"),
        "{}",
        out.description
    );
}

/// AppRole login with the shipped policy: each agent reads its own path and is refused
/// the other's with a clear 403 naming the path; no credential or value in stderr at -vvv.
#[test]
fn approle_per_agent_scope() {
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/alpha",
        json!({"ALPHA_KEY": "alpha-value-123456"}),
    );
    bao.put(
        "secret",
        "agents/beta",
        json!({"BETA_KEY": "beta-value-654321"}),
    );
    let (alpha_role, alpha_secret) =
        bao.setup_agent(&dir, "alpha", "secret/agents/alpha", "1h", "24h");
    bao.setup_agent(&dir, "beta", "secret/agents/beta", "1h", "24h");
    let approle =
        |path: &str| approle_args(&bao.store(), path, &alpha_role, &alpha_secret, &["-vvv"]);
    let credentials = [read_file(&alpha_role), read_file(&alpha_secret)];

    let mut own = approle("secret/agents/alpha");
    own.extend(args(&[
        "--",
        "sh",
        "-c",
        "echo \"$ALPHA_KEY|${BETA_KEY-unset}\"",
    ]));
    let out = agent_run(Mode::Plain, &own).run(&dir);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "alpha-value-123456|unset");
    for secret in credentials
        .iter()
        .map(String::as_str)
        .chain(["alpha-value-123456"])
    {
        assert!(
            !out.stderr.contains(secret),
            "a credential or value reached stderr at -vvv\n{}",
            out.description
        );
    }
    assert!(
        !has_token(&out.stderr),
        "something token-like in stderr\n{}",
        out.description
    );

    let marker = dir.join("started");
    let mut other = approle("secret/agents/beta");
    other.extend(args(&["--", "touch", marker.to_str().unwrap()]));
    let out = agent_run(Mode::Plain, &other).run(&dir);
    out.assert_code(125);
    assert!(!marker.exists(), "the command ran without its secrets");
    let message = out.stderr.lines().last().unwrap_or_default();
    assert!(
        message.contains("secret/agents/beta")
            && message.contains("403")
            && message.contains("not allowed to read this path"),
        "{}",
        out.description
    );
    for secret in credentials
        .iter()
        .map(String::as_str)
        .chain(["beta-value-654321"])
    {
        assert!(!out.stderr.contains(secret), "{}", out.description);
    }

    // A wrong secret id is an auth error that does not repeat it.
    let wrong = dir.write("wrong.secret-id", "00000000-1111-2222-3333-444444444444\n");
    let mut bad = approle("secret/agents/alpha");
    let at = bad.iter().position(|a| a == "--secret-id-file").unwrap();
    bad[at + 1] = wrong.display().to_string();
    bad.extend(args(&["--", "true"]));
    let out = agent_run(Mode::Plain, &bad).run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("--auth approle"), "{}", out.description);
    assert!(
        !out.stderr.contains("00000000-1111-2222-3333-444444444444"),
        "{}",
        out.description
    );
}

/// JWT login (`--auth jwt`) with an RS256 token signed by a key the jwt auth method trusts
/// (signed with the `openssl` CLI), under the shipped per-agent policy.
#[test]
fn jwt_login_reads_its_own_path() {
    use base64::Engine;
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/jwt-agent",
        json!({"JWT_AGENT_KEY": "jwt-agent-value-42"}),
    );
    let key = dir.join("jwt-key.pem");
    let openssl = |args: &[&str], input: Option<&[u8]>| -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl (scripts/test-all.sh installs it)");
        if let Some(input) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?} failed");
        out.stdout
    };
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"], None);
    let public = openssl(&["rsa", "-in", key.to_str().unwrap(), "-pubout"], None);

    let policy = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openbao/agent-policy.hcl.tmpl"),
    )
    .unwrap()
    .replace("@MOUNT@", "secret")
    .replace("@AGENT_PATH@", "agents/jwt-agent");
    bao.ok(
        reqwest::Method::POST,
        "sys/policies/acl/agent-jwt-agent",
        Some(json!({"policy": policy})),
    );
    bao.ok(
        reqwest::Method::POST,
        "sys/auth/jwt",
        Some(json!({"type": "jwt"})),
    );
    bao.ok(
        reqwest::Method::POST,
        "auth/jwt/config",
        Some(json!({"jwt_validation_pubkeys": [String::from_utf8(public).unwrap()]})),
    );
    bao.ok(
        reqwest::Method::POST,
        "auth/jwt/role/jwt-agent",
        Some(
            json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["agent-run-test"],
                    "token_policies": ["agent-jwt-agent"], "token_ttl": "1h"}),
        ),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(
            json!({"sub": "jwt-agent", "aud": "agent-run-test", "iat": now, "nbf": now - 10,
                   "exp": now + 600})
            .to_string()
            .as_bytes()
        )
    );
    let signature = openssl(
        &["dgst", "-sha256", "-sign", key.to_str().unwrap()],
        Some(signing_input.as_bytes()),
    );
    let jwt = format!("{signing_input}.{}", b64(&signature));
    let jwt_file = dir.write("jwt", &jwt);

    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/jwt-agent",
            "--auth",
            "jwt",
            "--auth-role",
            "jwt-agent",
            "--jwt-file",
            jwt_file.to_str().unwrap(),
            "-vvv",
            "--",
            "sh",
            "-c",
            "echo \"$JWT_AGENT_KEY\"",
        ],
    )
    .run(&dir);
    out.assert_code(0);
    assert_eq!(
        out.stdout.trim(),
        "jwt-agent-value-42",
        "{}",
        out.description
    );
    assert!(!out.stderr.contains(&jwt), "the JWT reached stderr");
    assert!(
        !out.stderr.contains(&b64(&signature)),
        "the JWT's signature reached stderr"
    );
    assert!(!has_token(&out.stderr), "{}", out.description);

    // The same JWT cannot read another agent's path.
    bao.put(
        "secret",
        "agents/other",
        json!({"OTHER": "other-value-0000"}),
    );
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/other",
            "--auth",
            "jwt",
            "--auth-role",
            "jwt-agent",
            "--jwt-file",
            jwt_file.to_str().unwrap(),
            "--",
            "true",
        ],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("secret/agents/other") && out.stderr.contains("403"),
        "{}",
        out.description
    );
}

/// A new KV version restarts the child with the new value (plain and as PID 1); a key
/// dropped from the next version, and a deleted current version, leave the environment.
#[test]
fn new_version_restarts_the_child_and_deleted_keys_disappear() {
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    for (n, mode) in MODES.into_iter().enumerate() {
        let path = format!("agents/rotating-{n}");
        bao.put(
            "secret",
            &path,
            json!({"API_KEY": "v1", "EXTRA": "extra-1"}),
        );
        let log = dir.join(&format!("child-{n}.log"));
        let mut a = args(&[
            "--store",
            &bao.store(),
            "--path",
            &format!("secret/{path}"),
            "--poll-interval",
            "200ms",
            "-vv",
        ]);
        a.extend(env_log_child(&log, &["API_KEY", "EXTRA"]));
        let mut launcher = agent_run(mode, &a).env("BAO_TOKEN", ROOT).start(&dir);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until(LONG, "first start", || {
            starts(&read(), "API_KEY").len() == 1
        });

        // Same content as a new version: polled, re-read, no restart.
        bao.put(
            "secret",
            &path,
            json!({"API_KEY": "v1", "EXTRA": "extra-1"}),
        );
        bao.put(
            "secret",
            &path,
            json!({"API_KEY": "v2", "EXTRA": "extra-1"}),
        );
        wait_until(LONG, "restart with v2", || {
            starts(&read(), "API_KEY").iter().any(|(_, v)| v == "v2")
        });
        bao.put("secret", &path, json!({"API_KEY": "v3"}));
        wait_until(LONG, "restart without EXTRA", || {
            starts(&read(), "EXTRA")
                .last()
                .is_some_and(|(_, v)| v == "<unset>")
        });
        // Soft-delete the current version: the path now provides nothing.
        bao.ok(
            reqwest::Method::DELETE,
            &format!("secret/data/{path}"),
            None,
        );
        wait_until(LONG, "restart after the delete", || {
            starts(&read(), "API_KEY")
                .last()
                .is_some_and(|(_, v)| v == "<unset>")
        });
        let values: Vec<String> = starts(&read(), "API_KEY")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values, ["v1", "v2", "v3", "<unset>"], "{}", read());
        let out = launcher.stop();
        assert_eq!(
            out.code,
            Some(0),
            "{}\n--- child log\n{}",
            out.description,
            read()
        );
    }
}

/// A 3 s TTL and an 8 s max TTL: agent-run renews, then logs in again at the max TTL, and
/// the child keeps running throughout; a rotation after 10 s is still picked up.
#[test]
fn token_renewal_and_relogin_across_a_short_ttl() {
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    bao.put("secret", "agents/short", json!({"API_KEY": "before"}));
    let (role_id, secret_id) = bao.setup_agent(&dir, "short", "secret/agents/short", "3s", "8s");
    let log = dir.join("child.log");
    let mut a = approle_args(
        &bao.store(),
        "secret/agents/short",
        &role_id,
        &secret_id,
        &["--poll-interval", "200ms", "-vv"],
    );
    a.extend(env_log_child(&log, &["API_KEY"]));
    let started = Instant::now();
    let mut launcher = agent_run(Mode::Plain, &a).start(&dir);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(LONG, "first start", || {
        starts(&read(), "API_KEY").len() == 1
    });
    wait_until(LONG, "renewals, then a second login at the max TTL", || {
        let err = launcher.stderr();
        err.matches("openbao token renewed").count() >= 2
            && err.matches("openbao login").count() >= 2
    });
    // Past the first token's max TTL: only a renewed or new token can still read.
    wait_until(LONG, "10 s after the start", || {
        started.elapsed() >= Duration::from_secs(10)
    });
    assert_eq!(
        starts(&read(), "API_KEY").len(),
        1,
        "the child was restarted\n{}",
        read()
    );
    bao.put("secret", "agents/short", json!({"API_KEY": "after"}));
    wait_until(LONG, "restart with the rotated value", || {
        starts(&read(), "API_KEY").iter().any(|(_, v)| v == "after")
    });
    let out = launcher.stop();
    out.assert_code(0);
    assert!(!out.stderr.contains("source failed"), "{}", out.description);
    assert!(
        !out.stderr.contains(&read_file(&secret_id)),
        "{}",
        out.description
    );
}

/// Three OpenBao nodes with Raft storage on loopback. agent-run gets all three addresses
/// (the leader first); the leader is killed; the child keeps running and the next
/// rotation, written through the new leader, still reaches it.
#[test]
fn raft_cluster_leader_loss_keeps_the_child_and_rotation() {
    let dir = Dir::new("openbao");
    let mut nodes = RaftCluster::start(&dir);
    let leader = nodes.leader();
    nodes.nodes[leader].put("secret", "agents/ha", json!({"API_KEY": "before-failover"}));
    let (role_id, secret_id) =
        nodes.nodes[leader].setup_agent(&dir, "ha", "secret/agents/ha", "1h", "24h");
    let mut order: Vec<usize> = vec![leader];
    order.extend((0..3).filter(|&i| i != leader));
    let stores: Vec<String> = order.iter().map(|&i| nodes.nodes[i].store()).collect();
    let log = dir.join("child.log");
    let mut a = approle_args(
        &stores.join(","),
        "secret/agents/ha",
        &role_id,
        &secret_id,
        &["--poll-interval", "200ms", "-v"],
    );
    a.extend(env_log_child(&log, &["API_KEY"]));
    let mut launcher = agent_run(Mode::Plain, &a).start(&dir);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(LONG, "first start", || {
        starts(&read(), "API_KEY").len() == 1
    });
    let child = launcher.child();

    nodes.nodes[leader].kill();
    let new_leader = nodes.wait_new_leader(leader);
    nodes.nodes[new_leader].put("secret", "agents/ha", json!({"API_KEY": "after-failover"}));
    wait_until(
        Duration::from_secs(40),
        "restart with the value written after failover",
        || {
            starts(&read(), "API_KEY")
                .iter()
                .any(|(_, v)| v == "after-failover")
        },
    );
    let values: Vec<String> = starts(&read(), "API_KEY")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["before-failover", "after-failover"], "{}", read());
    // The first child ran until the rotation stopped it (no restart on the failover).
    assert!(read().contains(&format!("stop pid={child} SIGTERM")));
    let out = launcher.stop();
    out.assert_code(0);
    assert!(
        out.stderr.contains("switched to another address"),
        "{}",
        out.description
    );
}

fn as_kv(values: &[String]) -> Value {
    Value::Object(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("SECRET_{i}"), Value::String(v.clone())))
            .collect(),
    )
}

/// The launcher's memory bar, with this source: after start and after a restart on a new
/// version, agent-run's whole address space holds none of the values while the child has
/// them all. (The secret id and token are not scanned for: agent-run needs them again.)
#[test]
fn no_secret_stays_in_agent_runs_memory() {
    let dir = Dir::new("openbao");
    let bao = Bao::dev(&dir);
    let kv_path = "secret/agents/memscan-control";
    let first = random_values(28, 1);
    bao.put("secret", "agents/memscan-control", as_kv(&first));
    let (role_id, secret_id) = bao.setup_agent(&dir, "memscan", kv_path, "1h", "24h");
    for mode in MODES {
        let log = dir.join(&format!("signals-{mode:?}.log"));
        let mut launcher = agent_run(
            mode,
            approle_args(
                &bao.store(),
                kv_path,
                &role_id,
                &secret_id,
                &[
                    "--poll-interval",
                    "200ms",
                    "-vvv",
                    "--",
                    test_child().to_str().unwrap(),
                    "signals",
                    log.to_str().unwrap(),
                ],
            ),
        )
        .start(&dir);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until(LONG, "child ready", || read().contains("ready"));
        let first_child = launcher.child();
        memscan::assert_child_has_all(first_child, &first);
        memscan::assert_no_secret_in_memory(launcher.pid, &first, kv_path, "after start");

        let rotated = random_values(28, 2 + mode as u64);
        bao.put("secret", "agents/memscan-control", as_kv(&rotated));
        let mut second_child = 0;
        wait_until(LONG, "restart with the rotated values", || {
            let children = launcher.children();
            if let [child] = children[..] {
                if child != first_child
                    && std::fs::read(format!("/proc/{child}/environ"))
                        .is_ok_and(|e| contains(&e, rotated[0].as_bytes()))
                    && read().matches("ready").count() >= 2
                {
                    second_child = child;
                    return true;
                }
            }
            false
        });
        memscan::assert_child_has_all(second_child, &rotated);
        let mut everything = first.clone();
        everything.extend(rotated.iter().cloned());
        memscan::assert_no_secret_in_memory(
            launcher.pid,
            &everything,
            kv_path,
            "after a restart on a new version",
        );
        let out = launcher.stop();
        out.assert_code(0);
        for value in &everything {
            assert!(
                !out.stderr.contains(value.as_str()),
                "a value reached the log at -vvv"
            );
        }
        assert!(
            !out.stderr.contains(&read_file(&secret_id)),
            "the secret id reached the log"
        );
        // Back to the first values for the next mode.
        bao.put("secret", "agents/memscan-control", as_kv(&first));
    }
}

/// Whether `text` holds an OpenBao service token (`s.` and 24 alphanumerics).
fn has_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(26).enumerate().any(|(at, w)| {
        w.starts_with(b"s.")
            && w[2..].iter().all(u8::is_ascii_alphanumeric)
            && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
    })
}

/// Issue 11 item 2: the OpenBao client takes no proxy from HTTP_PROXY & co., and `--proxy`
/// is not used for a loopback address.
#[test]
fn issue_11_environment_proxies_are_never_used() {
    let dir = Dir::new("openbao-proxy");
    let bao = Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/proxied",
        json!({"API_KEY": "not-via-proxy"}),
    );
    let proxy = common::tcp::TcpServer::start(common::tcp::Behaviour::Record);
    let proxy_url = format!("http://{}", proxy.addr);
    for extra in [&[][..], &["--proxy", proxy_url.as_str()][..]] {
        let mut a = args(&["--store", &bao.store(), "--path", "secret/agents/proxied"]);
        a.extend(args(extra));
        a.extend(args(&["--", "sh", "-c", "echo $API_KEY"]));
        let mut builder = agent_run(Mode::Plain, &a).env("BAO_TOKEN", ROOT);
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            builder = builder.env(name, &proxy_url);
        }
        let out = builder.env("NO_PROXY", "").env("no_proxy", "").run(&dir);
        out.assert_code(0);
        assert_eq!(out.stdout.trim(), "not-via-proxy", "{}", out.description);
        assert!(
            proxy.requests().is_empty(),
            "the proxy was contacted ({extra:?})"
        );
    }
}

/// Issue 11 item 14: a server that echoes the request in its `errors` put the token,
/// role_id and secret_id on stderr. What agent-run sent is cut out of every message.
#[test]
fn issue_11_an_echoing_server_does_not_get_credentials_onto_stderr() {
    use common::tcp::{json_string, Behaviour, TcpServer};
    let dir = Dir::new("openbao-echo");
    let echo = TcpServer::start(Behaviour::Echo {
        status: 400,
        body: |request| format!(r#"{{"errors":[{}]}}"#, json_string(request)),
    });
    let store = format!("openbao+http://{}", echo.addr);
    let (role_id, secret_id, token) = ("role-id-0001-abc", "sid-0002-xyz", "s.tok-0003-q");
    let role_file = dir.write("role-id", role_id);
    let secret_file = dir.write("secret-id", secret_id);
    let approle = approle_args(
        &store,
        "secret/agents/a",
        &role_file,
        &secret_file,
        &["--start-timeout", "0s", "-vvv", "--", "true"],
    );
    let with_token = args(&[
        "--store",
        &store,
        "--path",
        "secret/agents/a",
        "--start-timeout",
        "0s",
        "-vvv",
        "--",
        "true",
    ]);
    for a in [approle, with_token] {
        let out = agent_run(Mode::Plain, &a).env("BAO_TOKEN", token).run(&dir);
        out.assert_code(125);
        for sent in [role_id, secret_id, token] {
            assert!(
                !out.stderr.contains(sent),
                "{sent} reached stderr\n{}",
                out.description
            );
        }
        assert!(out.stderr.contains("HTTP 400"), "{}", out.description);
    }
    let requests = echo.requests().join("\n");
    assert!(
        requests.contains(secret_id) && requests.contains(token),
        "{requests}"
    );
}

/// Issue 11 item 3: a FIFO as the token, role-id or secret-id file hung agent-run; it is a
/// clear error before any request.
#[test]
fn issue_11_fifo_credential_files_are_refused() {
    let dir = Dir::new("openbao-fifo");
    let fifo = dir.fifo("credential");
    let plain = dir.write("plain", "role-or-secret");
    let fifo = fifo.to_str().unwrap();
    let plain = plain.to_str().unwrap();
    let store = [
        "--store",
        "openbao+http://127.0.0.1:1",
        "--path",
        "secret/agents/a",
    ];
    let cases: [&[&str]; 3] = [
        &["--token-file", fifo],
        &[
            "--auth",
            "approle",
            "--role-id-file",
            fifo,
            "--secret-id-file",
            plain,
        ],
        &[
            "--auth",
            "approle",
            "--role-id-file",
            plain,
            "--secret-id-file",
            fifo,
        ],
    ];
    for case in cases {
        let mut a = args(&store);
        a.extend(args(case));
        a.extend(args(&["--start-timeout", "0s", "--", "true"]));
        let out = agent_run(Mode::Plain, &a).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("named pipe"),
            "{case:?}\n{}",
            out.description
        );
    }
}

/// Issue 10 item 11, for OpenBao: a server that accepts and never answers held the start
/// for a whole request timeout (10 s) past `--start-timeout`.
#[test]
fn issue_10_start_timeout_bounds_a_server_that_never_answers() {
    let silent = common::tcp::TcpServer::start(common::tcp::Behaviour::Silent);
    let dir = Dir::new("openbao-silent");
    let store = format!("openbao+http://{}", silent.addr);
    let started = Instant::now();
    let out = agent_run(
        Mode::Plain,
        args(&[
            "--store",
            &store,
            "--path",
            "secret/agents/a",
            "--start-timeout",
            "3s",
            "--",
            "true",
        ]),
    )
    .env("BAO_TOKEN", "s.silent-0000")
    .run(&dir);
    let took = started.elapsed();
    out.assert_code(125);
    assert!(!silent.requests().is_empty(), "agent-run never connected");
    assert!(
        took < Duration::from_secs(6),
        "took {took:?}\n{}",
        out.description
    );
}

/// Issue 11 item 8: no private CA for OpenBao (`--store-ca` was refused, BAO_CACERT and
/// friends ignored: UnknownIssuer). `--ca-cert` and the usual variables now work for it.
#[test]
fn issue_11_openbao_over_tls_with_a_private_ca() {
    let dir = Dir::new("openbao-tls");
    let bao = Bao::dev_tls(&dir);
    assert!(bao.addr.starts_with("https://"), "{}", bao.addr);
    bao.put("secret", "agents/tls", json!({"API_KEY": "over-tls"}));
    let ca = bao.ca.clone().unwrap();
    let ca = ca.to_str().unwrap();
    let base = args(&[
        "--store",
        &bao.store(),
        "--path",
        "secret/agents/tls",
        "--start-timeout",
        "0s",
    ]);
    let echo = args(&["--", "sh", "-c", "echo $API_KEY"]);
    let run = |flags: &[&str], variable: Option<&str>| {
        let mut a = base.clone();
        a.extend(args(flags));
        a.extend(echo.clone());
        let mut builder = agent_run(Mode::Plain, &a).env("BAO_TOKEN", ROOT);
        for name in ["BAO_CACERT", "VAULT_CACERT", "SSL_CERT_FILE"] {
            builder = builder.env(name, "");
        }
        if let Some(name) = variable {
            builder = builder.env(name, ca);
        }
        builder.run(&dir)
    };
    for (flags, variable) in [
        (&["--ca-cert", ca][..], None),
        (&["--store-ca", ca][..], None),
        (&[][..], Some("BAO_CACERT")),
        (&[][..], Some("VAULT_CACERT")),
        (&[][..], Some("SSL_CERT_FILE")),
        (&[][..], Some("AGENT_RUN_CA_CERT")),
    ] {
        let out = run(flags, variable);
        out.assert_code(0);
        assert_eq!(
            out.stdout.trim(),
            "over-tls",
            "{flags:?} {variable:?}\n{}",
            out.description
        );
    }
    // Without the CA: the certificate is refused, with a clear error.
    let out = run(&[], None);
    out.assert_code(125);
    assert!(out.stderr.contains("certificate"), "{}", out.description);
}

/// Issue 11 item 11: `bao kv metadata delete` (every version gone) left the old secrets in
/// the child (HTTP 404, no restart), while soft delete and destroy removed them. A 404 of a
/// path read before now means "empty".
#[test]
fn issue_11_metadata_delete_empties_the_path_and_restarts() {
    let dir = Dir::new("openbao-metadata-delete");
    let bao = Bao::dev(&dir);
    bao.put("secret", "agents/gone", json!({"API_KEY": "before-delete"}));
    bao.put("secret", "agents/stays", json!({"OTHER": "stays"}));
    let log = dir.join("child.log");
    let mut a = args(&[
        "--store",
        &bao.store(),
        "--path",
        "secret/agents/stays",
        "--path",
        "secret/agents/gone",
        "--poll-interval",
        "200ms",
    ]);
    a.extend(env_log_child(&log, &["API_KEY", "OTHER"]));
    let mut launcher = agent_run(Mode::Plain, &a)
        .env("BAO_TOKEN", ROOT)
        .start(&dir);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(LONG, "first start", || {
        starts(&read(), "API_KEY").len() == 1
    });
    bao.ok(reqwest::Method::DELETE, "secret/metadata/agents/gone", None);
    wait_until(LONG, "a restart without API_KEY", || {
        starts(&read(), "API_KEY")
            .last()
            .is_some_and(|(_, v)| v == "<unset>")
    });
    assert_eq!(
        starts(&read(), "OTHER").last().map(|(_, v)| v.as_str()),
        Some("stays")
    );
    let out = launcher.stop();
    assert_eq!(out.code, Some(0), "{}", out.description);
}

/// `--proxy` is used for a non-loopback OpenBao address: a CONNECT tunnel, whose request
/// carries no token.
#[test]
fn issue_11_proxy_flag_tunnels_to_a_remote_openbao() {
    let proxy = common::tcp::TcpServer::start(common::tcp::Behaviour::Record);
    let dir = Dir::new("openbao-proxy-flag");
    let token = "s.proxied-token-0000";
    let out = agent_run(
        Mode::Plain,
        args(&[
            "--store",
            "openbao+https://bao.invalid:8200",
            "--path",
            "secret/agents/a",
            "--proxy",
            &format!("http://{}", proxy.addr),
            "--start-timeout",
            "0s",
            "--",
            "true",
        ]),
    )
    .env("BAO_TOKEN", token)
    .run(&dir);
    out.assert_code(125);
    let requests = proxy.requests();
    assert!(
        requests
            .first()
            .is_some_and(|r| r.starts_with("CONNECT bao.invalid:8200 ")),
        "{requests:?}\n{}",
        out.description
    );
    assert!(requests.iter().all(|r| !r.contains(token)), "{requests:?}");
}
