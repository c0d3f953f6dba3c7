//! Issue 13 item 2, agent-run's side: a token scoped to a misspelt agent (or keys) gave the
//! child an empty environment in silence. A source that yields nothing is now a warning at
//! the default level, naming the source and the token's agent; `--require KEY,KEY` and
//! `--require-nonempty` make it an error (exit 125, every missing key named) at start, in
//! `--check`, and on every change — a change that drops a required key keeps the old child.

use std::time::Duration;

use serde_json::json;

use crate::common::vault::start_vault;
use crate::common::{agent_run, env_log_child, sh, starts, wait_until, Dir, Mode, MODES};

const LONG: Duration = Duration::from_secs(20);
const EMPTY_WARNING: &str = "source yielded no variables";

/// The child: leaves a marker file, so a refused start shows as its absence.
fn marker(dir: &Dir) -> Vec<String> {
    sh(&format!("touch '{}'", dir.join("started").display()))
}

fn with_command(flags: &[&str], command: Vec<String>) -> Vec<String> {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(command);
    args
}

#[test]
fn issue_13_a_store_scope_that_matches_nothing_warns_and_require_refuses() {
    let vault = start_vault();
    let value = "required-api-value-0001";
    vault.set("bot", "API_KEY", value);
    // The scope's key glob matches nothing the agent has: the store answers with no entry.
    let (_, narrow) = vault.issue(&["secrets:read:bot/NOPE_*"], Some(json!("1h")));
    let (_, right) = vault.issue(&["secrets:read:bot/*"], Some(json!("1h")));
    let dir = Dir::new("require-store");
    let store = vault.addr.as_str();

    // --check alone still succeeds, but says so at the default level, naming the source
    // and the agent the token's scope resolved to.
    let out = agent_run(Mode::Plain, ["--store", store, "--check"])
        .env("AGENT_RUN_TOKEN", &narrow)
        .run(&dir);
    out.assert_code(0);
    assert!(
        out.stderr.contains(EMPTY_WARNING)
            && out.stderr.contains(store)
            && out.stderr.contains("agent bot"),
        "{}",
        out.description
    );

    // --check honours --require: 125, the key named.
    let out = agent_run(
        Mode::Plain,
        ["--store", store, "--check", "--require", "API_KEY"],
    )
    .env("AGENT_RUN_TOKEN", &narrow)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("missing API_KEY") && out.stderr.contains("--require"),
        "{}",
        out.description
    );
    assert!(out.stdout.is_empty(), "{}", out.description);

    // A run: refused before anything starts, every missing key named (comma list and
    // repeated flag, and the variable).
    for (flags, env) in [
        (
            vec![
                "--store",
                store,
                "--require",
                "API_KEY,OTHER",
                "--require",
                "THIRD",
            ],
            None,
        ),
        (
            vec!["--store", store],
            Some(("AGENT_RUN_REQUIRE", "API_KEY,OTHER,THIRD")),
        ),
    ] {
        let mut builder = agent_run(Mode::Plain, with_command(&flags, marker(&dir)))
            .env("AGENT_RUN_TOKEN", &narrow);
        if let Some((key, val)) = env {
            builder = builder.env(key, val);
        }
        let out = builder.run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("missing API_KEY, OTHER, THIRD"),
            "{}",
            out.description
        );
        assert!(!dir.join("started").exists(), "{}", out.description);
    }

    // --require-nonempty (flag and variable): no variable from any source is an error.
    for (flags, env) in [
        (vec!["--store", store, "--require-nonempty"], None),
        (
            vec!["--store", store],
            Some(("AGENT_RUN_REQUIRE_NONEMPTY", "true")),
        ),
    ] {
        let mut builder = agent_run(Mode::Plain, with_command(&flags, marker(&dir)))
            .env("AGENT_RUN_TOKEN", &narrow);
        if let Some((key, val)) = env {
            builder = builder.env(key, val);
        }
        let out = builder.run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--require-nonempty"),
            "{}",
            out.description
        );
        assert!(!dir.join("started").exists(), "{}", out.description);
    }

    // The right token: no warning, the requirement met, the child runs.
    let out = agent_run(
        Mode::Plain,
        with_command(
            &[
                "--store",
                store,
                "--require",
                "API_KEY",
                "--require-nonempty",
            ],
            marker(&dir),
        ),
    )
    .env("AGENT_RUN_TOKEN", &right)
    .run(&dir);
    out.assert_code(0);
    assert!(!out.stderr.contains(EMPTY_WARNING), "{}", out.description);
    assert!(dir.join("started").exists(), "{}", out.description);
    assert!(!out.stderr.contains(value), "{}", out.description);
}

#[test]
fn issue_13_env_files_name_every_missing_and_empty_required_key() {
    let dir = Dir::new("require-files");
    let empty = dir.write("empty.env", "# nothing here\n");
    let empty = empty.to_str().expect("utf-8");
    let out = agent_run(Mode::Plain, ["--env-file", empty, "--check"]).run(&dir);
    out.assert_code(0);
    assert!(
        out.stderr.contains(EMPTY_WARNING) && out.stderr.contains(empty),
        "{}",
        out.description
    );

    let app = dir.write("app.env", "A=value-of-a-0001\nB=\nC=\"  \"\n");
    let app = app.to_str().expect("utf-8");
    // Missing and blank keys, all named; an inherited D does not count.
    let out = agent_run(
        Mode::Plain,
        with_command(
            &["--env-file", app, "--require", "A,B", "--require", "C,D"],
            marker(&dir),
        ),
    )
    .env("D", "inherited")
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("missing D") && out.stderr.contains("empty B, C"),
        "{}",
        out.description
    );
    assert!(
        !out.stderr.contains("value-of-a-0001"),
        "{}",
        out.description
    );
    assert!(!dir.join("started").exists(), "{}", out.description);

    // --check lists the same.
    let out = agent_run(
        Mode::Plain,
        ["--env-file", app, "--check", "--require", "A,B,C,D"],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("missing D") && out.stderr.contains("empty B, C"),
        "{}",
        out.description
    );

    // A key renamed by --env counts under its final name; --once checks too.
    let out = agent_run(
        Mode::Plain,
        with_command(
            &[
                "--env-file",
                app,
                "--env",
                "D=@A",
                "--require",
                "A,D",
                "--once",
            ],
            marker(&dir),
        ),
    )
    .run(&dir);
    out.assert_code(0);
    assert!(dir.join("started").exists(), "{}", out.description);
    std::fs::remove_file(dir.join("started")).expect("marker");
    let out = agent_run(
        Mode::Plain,
        with_command(
            &["--env-file", app, "--require", "D", "--once"],
            marker(&dir),
        ),
    )
    .run(&dir);
    out.assert_code(125);
    assert!(!dir.join("started").exists(), "{}", out.description);
}

/// Waits for the error a change that drops `key` logs, then checks the first child is the
/// only one and still running.
fn assert_kept(run: &crate::common::Launcher, log: &str, key: &str) {
    wait_until(LONG, "the error naming the dropped key", || {
        let err = run.stderr();
        err.contains("required variables") && err.contains(&format!("missing {key}"))
    });
    let started = starts(&std::fs::read_to_string(log).unwrap_or_default(), "A");
    assert_eq!(
        started.len(),
        1,
        "a child started without its keys: {started:?}"
    );
    // The first child is still agent-run's one child (its pid in PID-1 mode is the
    // namespace's, so count instead of comparing).
    assert_eq!(run.children().len(), 1, "{}", run.describe(None));
}

#[test]
fn issue_13_a_file_change_that_drops_a_required_key_keeps_the_old_child() {
    for mode in MODES {
        let dir = Dir::new("require-file-change");
        let app = dir.write("app.env", "A=one\nB=two\n");
        let log = dir.join("child.log");
        let mut args: Vec<String> = vec![
            "--env-file".into(),
            app.display().to_string(),
            "--require".into(),
            "A,B".into(),
        ];
        args.extend(env_log_child(&log, &["A", "B"]));
        let mut run = agent_run(mode, args).start(&dir);
        wait_until(LONG, "the first child", || {
            starts(&dir.read("child.log"), "A").len() == 1
        });
        dir.replace("app.env", "A=three\n");
        assert_kept(&run, log.to_str().unwrap(), "B");
        // Once the key is back, the change goes through.
        dir.replace("app.env", "A=four\nB=five\n");
        wait_until(LONG, "the restart with both keys", || {
            starts(&dir.read("child.log"), "B").len() == 2
        });
        assert_eq!(
            starts(&dir.read("child.log"), "B")
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>(),
            ["two", "five"],
            "{mode:?}"
        );
        run.stop();
    }
}

#[test]
fn issue_13_a_store_change_that_drops_a_required_key_keeps_the_old_child() {
    let vault = start_vault();
    for (n, mode) in MODES.into_iter().enumerate() {
        let agent = format!("keep-bot-{n}");
        vault.set(&agent, "A", "store-a-value-0001");
        vault.set(&agent, "B", "store-b-value-0001");
        let (_, token) = vault.issue(&[&format!("secrets:read:{agent}/*")], Some(json!("1h")));
        let dir = Dir::new("require-store-change");
        let log = dir.join("child.log");
        let mut args: Vec<String> = vec![
            "--store".into(),
            vault.addr.clone(),
            "--require".into(),
            "A,B".into(),
        ];
        args.extend(env_log_child(&log, &["A", "B"]));
        let mut run = agent_run(mode, args)
            .env("AGENT_RUN_TOKEN", &token)
            .start(&dir);
        wait_until(LONG, "the first child", || {
            starts(&dir.read("child.log"), "A").len() == 1
        });
        let (status, body) = vault.delete(&format!("/v1/agents/{agent}/secrets/B"), &vault.admin);
        assert!((200..300).contains(&status), "delete: {status} {body}");
        assert_kept(&run, log.to_str().unwrap(), "B");
        vault.set(&agent, "B", "store-b-value-0002");
        wait_until(LONG, "the restart with both keys", || {
            starts(&dir.read("child.log"), "B").len() == 2
        });
        assert_eq!(
            starts(&dir.read("child.log"), "B")
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>(),
            ["store-b-value-0001", "store-b-value-0002"],
            "{mode:?}"
        );
        let out = run.stop();
        assert!(!out.stderr.contains("store-b-value"), "{}", out.description);
    }
}
