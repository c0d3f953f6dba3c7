//! The server as a process: init and serve, the data directory and its encryption at rest,
//! TLS, signals, a second server, and what its memory keeps.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::vault::{
    file_mode, init_cmd, private_ca, serve_cmd, start_vault, start_vault_with,
};
use crate::common::{run, run_code, run_ok, Dir};
use serde_json::json;

#[test]
fn no_plaintext_in_database_or_wal() {
    let mut vault = start_vault();
    let values: Vec<String> = (0..20)
        .map(|i| format!("PLAINTEXT-CANARY-{i:04}-zq8x"))
        .collect();
    for (i, value) in values.iter().enumerate() {
        vault.set("canary", &format!("KEY_{i}"), value);
    }
    vault.put(
        "/v1/vars/CANARY_VAR",
        &vault.admin,
        json!({"value": "PLAINTEXT-CANARY-var-zq8x"}),
    );
    vault.post(
        "/v1/agents/canary/secrets/KEY_0/rollback",
        &vault.admin,
        json!({}),
    );
    let wal = vault.data_dir.join("vault.db-wal");
    assert!(
        wal.exists() && std::fs::metadata(&wal).expect("stat").len() > 0,
        "WAL in use"
    );
    vault.assert_not_stored_or_logged(&["PLAINTEXT-CANARY"]);
    // Also after a clean shutdown (checkpoint into the main file).
    assert!(vault.terminate().success());
    vault.assert_not_stored_or_logged(&["PLAINTEXT-CANARY"]);
    assert_eq!(file_mode(&vault.data_dir.join("master.key")), 0o600);
    assert_eq!(file_mode(&vault.data_dir), 0o700);
}

#[test]
fn acknowledged_write_survives_kill_9() {
    let mut vault = start_vault();
    let (_, reader) = vault.issue(&["secrets:read:durable/*"], None);
    for i in 0..10 {
        vault.set("durable", &format!("K{i}"), &format!("durable-value-{i}"));
    }
    vault.kill9();
    vault.restart();
    let read = vault.get_json("/v1/runtime/secrets", &reader);
    let secrets = read["secrets"].as_array().expect("array");
    assert_eq!(secrets.len(), 10, "{read}");
    assert!(secrets
        .iter()
        .any(|s| s["name"] == "K9" && s["value"] == "durable-value-9"));
}

#[test]
fn init_and_serve_refuse_unsafe_setups() {
    let dir = Dir::new("init");
    let data = dir.join("data");
    let token_file = dir.join("admin.token");
    let mut init = init_cmd(&data);
    init.arg("--admin-token-file").arg(&token_file);
    let stdout = run_ok(&mut init, None);
    assert!(
        !stdout.contains("avt_"),
        "token went to the file, not stdout"
    );
    assert_eq!(file_mode(&token_file), 0o600);
    assert!(std::fs::read_to_string(&token_file)
        .expect("token file")
        .starts_with("avt_"));
    let key_before = std::fs::read(data.join("master.key")).expect("key");
    // A second init refuses to overwrite the key.
    let mut again = init_cmd(&data);
    let out = run_code(&mut again, None, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialized"));
    assert_eq!(
        std::fs::read(data.join("master.key")).expect("key"),
        key_before
    );

    // Plain HTTP off loopback is refused without --allow-insecure-http.
    let mut serve = serve_cmd(&data, "0.0.0.0:0");
    let out = run_code(&mut serve, None, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-insecure-http"));

    // A world-readable master key is refused, naming the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    let out = run_code(&mut serve, None, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{out:?}"
    );

    // The key can come from the environment instead; a wrong key is refused at start.
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .env(
            "AGENT_VAULT_MASTER_KEY",
            String::from_utf8_lossy(&key_before).trim(),
        )
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().expect("spawn serve");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("read a line");
    assert!(
        line.starts_with("agent-vault listening on http://127.0.0.1:"),
        "{line}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn wrong_master_key_is_refused_once_values_exist() {
    let mut vault = start_vault();
    vault.set("bot", "K", "value-under-key-one");
    vault.kill9();
    let mut serve = serve_cmd(&vault.data_dir, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY", "00".repeat(32));
    let out = run_code(&mut serve, None, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong key"),
        "{out:?}"
    );
}

#[test]
fn tls_with_rustls() {
    let dir = Dir::new("tls");
    let (ca, cert, key) = private_ca(&dir);
    let vault = start_vault_with(&[
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]);
    assert!(
        vault.addr.starts_with("https://127.0.0.1:"),
        "{}",
        vault.addr
    );
    let out = vault.cli_run(
        &[
            "secrets",
            "set",
            "tls-bot",
            "K",
            "--value",
            "over-tls-value",
            "--ca-cert",
            ca.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    // Without trusting the certificate the client refuses.
    let out = vault.cli_run(&["secrets", "list", "tls-bot"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut vault = start_vault();
    vault.set("bot", "K", "value-before-sigterm");
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    let addr = vault.addr.clone();
    let reader2 = reader.clone();
    // A long-poll waiter must not hold shutdown up.
    let waiter = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .get(format!("{addr}/v1/runtime/revision?since={rev}&wait=300"))
            .bearer_auth(reader2)
            .send()
            .map(|r| r.status().as_u16())
    });
    vault.get_json("/v1/health", &reader);
    let start = Instant::now();
    assert!(vault.terminate().success());
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    let _ = waiter.join();
    assert!(vault.log().contains("agent-vault stopped"));
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let vault = start_vault();
    let mut second = serve_cmd(&vault.data_dir, "127.0.0.1:0");
    let out = run_code(&mut second, None, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already served by another agent-vault"),
        "{stderr}"
    );
    // The first one is unaffected.
    assert_eq!(vault.get("/v1/health", "").0, 200);
}

/// Issue 10 item 8: agent-vault's `/proc/PID/environ` still held `AGENT_VAULT_MASTER_KEY`,
/// and its memory was readable by its own user. The server runs as an ordinary user here
/// (nobody when the tests run as root), so an undumpable process shows as root-owned files
/// under `/proc/PID`.
#[test]
fn issue_10_agent_vault_scrubs_its_master_key_and_is_undumpable() {
    use std::io::BufRead;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let key = "c0ffee00".repeat(8);
    let dir = Dir::new("harden");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let me = nix::unistd::getuid();
    let (uid, gid) = if me.is_root() {
        (65534, 65534)
    } else {
        (me.as_raw(), nix::unistd::getgid().as_raw())
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    nix::unistd::chown(&data, Some(uid.into()), Some(gid.into())).expect("chown");
    let as_user = |cmd: &mut std::process::Command| {
        cmd.env("AGENT_VAULT_MASTER_KEY", &key).uid(uid).gid(gid);
    };
    let mut init = init_cmd(&data);
    as_user(&mut init);
    let out = run(&mut init, None);
    assert!(out.status.success(), "{out:?}");
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    as_user(&mut serve);
    let mut child = serve.spawn().expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let listening = lines.any(|l| l.is_ok_and(|l| l.contains("listening on")));
    let pid = child.id();
    let proc = |name: &str| format!("/proc/{pid}/{name}");
    let checks = std::panic::catch_unwind(|| {
        assert!(listening, "the server started");
        let environ = std::fs::read(proc("environ")).unwrap_or_default();
        assert!(
            !common::contains(&environ, key.as_bytes()),
            "/proc/PID/environ still holds the master key"
        );
        let owner = std::fs::metadata(proc("environ")).expect("stat").uid();
        assert_eq!(
            owner, 0,
            "not undumpable: /proc/PID files belong to uid {owner}"
        );
        let limits = std::fs::read_to_string(proc("limits")).expect("limits");
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("core line");
        assert_eq!(
            core.split_whitespace().nth(4),
            Some("0"),
            "soft core limit: {core}"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic);
    }
}

/// Issue 10 item 10: `init` ran `chmod 0700` on an existing directory before checking
/// whether it was initialized (a shared 1777 directory became 0700 even when refused).
#[test]
fn issue_10_init_never_changes_a_directory_it_did_not_create() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    };
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let init = |path: &std::path::Path| {
        let mut cmd = init_cmd(path);
        run(&mut cmd, None)
    };
    let dir = Dir::new("init-mode");
    // An existing private-enough directory is used as it is.
    let existing = dir.join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    chmod(&existing, 0o750);
    let out = init(&existing);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&existing), 0o750);
    // Initialized and then shared: a refused init changes nothing.
    chmod(&existing, 0o1777);
    let out = init(&existing);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialized"));
    assert_eq!(mode(&existing), 0o1777);
    // A shared directory that others can write to is refused, untouched and empty.
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let out = init(&shared);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable by group or others"),
        "{out:?}"
    );
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(std::fs::read_dir(&shared).expect("ls").count(), 0);
    // A directory init creates is private.
    let fresh = dir.join("a/b/fresh");
    let out = init(&fresh);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&fresh), 0o700);
}
