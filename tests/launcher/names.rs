//! Issue 13 item 4: names that change how the loader, a shell or a runtime starts the child
//! (`protocol::names`) are never injected from a source or `--env` unless `--allow-env`
//! names them, and the command is resolved with agent-run's own `PATH`, never a source's.

use serde_json::json;

use crate::common::vault::start_vault;
use crate::common::{agent_run, sh, Dir, Mode};

/// The child: writes a marker file, so a refused start is visible as its absence.
fn marker_child(dir: &Dir) -> Vec<String> {
    sh(&format!(
        "printf '%s' \"$LD_PRELOAD\" > '{}'",
        dir.join("started").display()
    ))
}

fn run(dir: &Dir, flags: &[&str], extra_env: &[(&str, &str)]) -> crate::common::Outcome {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(marker_child(dir));
    let mut builder = agent_run(Mode::Plain, args);
    for (k, v) in extra_env {
        builder = builder.env(k, v);
    }
    builder.run(dir)
}

fn assert_refused(dir: &Dir, out: &crate::common::Outcome, origin: &str) {
    out.assert_code(125);
    assert!(
        out.stderr.contains("LD_PRELOAD") && out.stderr.contains("--allow-env LD_PRELOAD"),
        "{}",
        out.description
    );
    assert!(
        out.stderr.contains(origin),
        "source {origin:?} named: {}",
        out.description
    );
    assert!(
        !out.stderr.contains("/nonexistent/evil"),
        "no value in the error: {}",
        out.description
    );
    assert!(!dir.join("started").exists(), "the child was started");
}

#[test]
fn ld_preload_from_an_env_file_and_env_is_refused_unless_allowed() {
    let dir = Dir::new("names-file");
    let env_file = dir.write("app.env", "LD_PRELOAD=/nonexistent/evil.so\nFINE=1\n");
    let file = env_file.to_str().expect("utf-8");
    let out = run(&dir, &["--env-file", file], &[]);
    assert_refused(&dir, &out, file);

    // `--check` is built from the same composition: it refuses too.
    let out = agent_run(Mode::Plain, ["--env-file", file, "--check"]).run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("LD_PRELOAD"), "{}", out.description);

    // `--env` as a literal, and as a rename of a harmless secret.
    let harmless = dir.write("harmless.env", "HARMLESS=/nonexistent/evil.so\n");
    let harmless = harmless.to_str().expect("utf-8");
    let out = run(&dir, &["--env", "LD_PRELOAD=/nonexistent/evil.so"], &[]);
    assert_refused(&dir, &out, "--env");
    let out = run(
        &dir,
        &["--env-file", harmless, "--env", "LD_PRELOAD=@HARMLESS"],
        &[],
    );
    assert_refused(&dir, &out, "--env LD_PRELOAD=@HARMLESS");

    // An inherited LD_PRELOAD is the user's own and passes as before.
    let out = run(&dir, &[], &[("LD_PRELOAD", "")]);
    out.assert_code(0);
    std::fs::remove_file(dir.join("started")).expect("marker");

    // --allow-env lets it through.
    let out = run(
        &dir,
        &["--env-file", file, "--allow-env", "LD_PRELOAD"],
        &[],
    );
    out.assert_code(0);
    assert_eq!(dir.read("started"), "/nonexistent/evil.so");
}

#[test]
fn ld_preload_from_the_store_is_refused_and_path_never_resolves_the_command() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    let dir = Dir::new("names-store");
    // A fake `sleep` that would leave a marker if a source's PATH chose the command.
    let evil = dir.join("evil");
    std::fs::create_dir(&evil).expect("mkdir");
    let fake = dir.write(
        "evil/sleep",
        format!("#!/bin/sh\ntouch '{}'\n", dir.join("evil-ran").display()),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    for (key, value) in [
        ("LD_PRELOAD", "/nonexistent/evil.so".to_string()),
        ("PATH", format!("{}:/usr/bin:/bin", evil.display())),
    ] {
        let (status, body) = vault.put(
            &format!("/v1/agents/bot/secrets/{key}"),
            admin,
            json!({"value": value, "allow_dangerous_name": true}),
        );
        assert_eq!(status, 201, "{body}");
    }
    let token = vault.issue(&["secrets:read:bot/*"], Some(json!("1h"))).1;
    let store = ["--store", vault.addr.as_str()];

    let mut flags = store.to_vec();
    flags.extend(["--allow-env", "PATH"]);
    let out = run(&dir, &flags, &[("AGENT_RUN_TOKEN", &token)]);
    assert_refused(&dir, &out, &format!("{} agent bot", vault.addr));

    // PATH from the store, allowed in: the command still resolves with agent-run's own
    // PATH, so the real sleep runs, not EVIL_DIR/sleep.
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            vault.addr.as_str(),
            "--allow-env",
            "PATH",
            "--allow-env",
            "LD_PRELOAD",
            "--",
            "sleep",
            "0",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    assert!(
        !dir.join("evil-ran").exists(),
        "the command was resolved with the store's PATH: {}",
        out.description
    );
    out.assert_code(0);
}

/// The same rule for an OpenBao source (a real `bao server -dev`).
#[test]
fn node_options_from_openbao_is_refused_unless_allowed() {
    let dir = Dir::new("names-openbao");
    let bao = crate::common::openbao::Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/names",
        json!({"NODE_OPTIONS": "--require /nonexistent/evil.js", "FINE": "1"}),
    );
    let base = [
        "--store".to_string(),
        bao.store(),
        "--path".to_string(),
        "secret/agents/names".to_string(),
    ];
    let script = format!(
        "printf '%s' \"$NODE_OPTIONS\" > '{}'",
        dir.join("started").display()
    );
    let cmd = ["--", "sh", "-c", script.as_str()];
    let root = crate::common::openbao::ROOT;

    let args: Vec<String> = base.iter().cloned().chain(cmd.map(String::from)).collect();
    let out = agent_run(Mode::Plain, &args)
        .env("BAO_TOKEN", root)
        .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("NODE_OPTIONS") && out.stderr.contains("--allow-env NODE_OPTIONS"),
        "{}",
        out.description
    );
    assert!(!out.stderr.contains("evil.js"), "{}", out.description);
    assert!(!dir.join("started").exists(), "the child was started");

    let args: Vec<String> = base
        .iter()
        .cloned()
        .chain(["--allow-env", "NODE_OPTIONS"].map(String::from))
        .chain(cmd.map(String::from))
        .collect();
    let out = agent_run(Mode::Plain, &args)
        .env("BAO_TOKEN", root)
        .run(&dir);
    out.assert_code(0);
    assert_eq!(dir.read("started"), "--require /nonexistent/evil.js");
}
