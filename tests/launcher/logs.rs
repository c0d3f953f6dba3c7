//! Issue 13 item 7, agent-run's side: logs an operator can use. With `--log-format json`
//! every line on stderr is JSON — the fatal one and usage errors too; "store reachable
//! again" is a warning like its "lost the store" twin; a change names the keys it added,
//! removed or changed (names only, compared by keyed digest) and the revision read.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::vault::start_vault;
use crate::common::{agent_run, env_log_child, starts, wait_until, Dir, Mode};

const LONG: Duration = Duration::from_secs(20);

/// Every stderr line, parsed; panics on a line that is not a JSON object.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{stderr}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

/// The lines whose message is `message`.
fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

#[test]
fn issue_13_json_fatal_and_usage_lines_are_json() {
    let dir = Dir::new("logs-fatal");
    let app = dir.write("app.env", "A=fatal-a-value-0001\n");
    let app = app.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        // Usage errors (clap), by flag and by variable.
        (
            vec!["--log-format", "json", "--stor", "x", "--", "true"],
            None,
            "--stor",
        ),
        (vec!["--chek"], Some("json"), "--chek"),
        // Configuration and set-up errors, and a run-time refusal.
        (
            vec!["--log-format=json", "--grace", "soon", "--", "true"],
            None,
            "--grace",
        ),
        (
            vec![
                "--log-format",
                "json",
                "--env-file",
                "nope.env",
                "--",
                "true",
            ],
            None,
            "nope.env",
        ),
        (
            vec![
                "--log-format",
                "json",
                "-vvv",
                "--env-file",
                app,
                "--require",
                "B",
                "--",
                "true",
            ],
            None,
            "missing B",
        ),
    ];
    for (args, variable, named) in cases {
        let mut builder = agent_run(Mode::Plain, &args).current_dir(dir.path());
        if let Some(format) = variable {
            builder = builder.env("AGENT_RUN_LOG_FORMAT", format);
        }
        let out = builder.run(&dir);
        out.assert_code(125);
        let lines = json_lines(&out.stderr);
        let last = lines.last().expect("a fatal line");
        assert_eq!(last["level"], "ERROR", "{}", out.description);
        assert_eq!(last["fields"]["exit_code"], 125, "{}", out.description);
        assert!(
            last["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(named)),
            "{named}: {}",
            out.description
        );
        assert!(
            !out.stderr.contains("fatal-a-value-0001"),
            "{}",
            out.description
        );
    }
}

#[test]
fn issue_13_a_file_change_names_the_keys_it_added_removed_and_changed() {
    let dir = Dir::new("logs-file-change");
    let values = [
        "a-value-0001",
        "b-value-0001",
        "c-value-0001",
        "a-value-0002",
        "d-value-0001",
    ];
    dir.write(
        "app.env",
        format!("A={}\nB={}\nC={}\n", values[0], values[1], values[2]),
    );
    let log = dir.join("child.log");
    let mut args: Vec<String> = vec![
        "--log-format".into(),
        "json".into(),
        "-vvv".into(),
        "--env-file".into(),
        dir.join("app.env").display().to_string(),
    ];
    args.extend(env_log_child(&log, &["A"]));
    let mut run = agent_run(Mode::Plain, args).start(&dir);
    wait_until(LONG, "the first child", || {
        starts(&dir.read("child.log"), "A").len() == 1
    });
    dir.replace(
        "app.env",
        format!("A={}\nC={}\nD={}\n", values[3], values[2], values[4]),
    );
    wait_until(LONG, "the restart", || {
        starts(&dir.read("child.log"), "A").len() == 2
    });
    let out = run.stop();
    let lines = json_lines(&out.stderr);
    let changes = with_message(&lines, "secrets changed");
    assert_eq!(changes.len(), 1, "{}", out.description);
    let fields = &changes[0]["fields"];
    assert_eq!(fields["added"], "D", "{}", out.description);
    assert_eq!(fields["removed"], "B", "{}", out.description);
    assert_eq!(fields["changed"], "A", "{}", out.description);
    for value in values {
        assert!(!out.stderr.contains(value), "{value}: {}", out.description);
    }
}

#[test]
fn issue_13_store_change_names_keys_and_revision_and_reachable_again_is_a_warning() {
    let mut vault = start_vault();
    vault.set("log-bot", "A", "store-a-value-0001");
    vault.set("log-bot", "B", "store-b-value-0001");
    let (_, token) = vault.issue(&["secrets:read:log-bot/*"], Some(json!("1h")));
    let dir = Dir::new("logs-store");
    let log = dir.join("child.log");
    let mut args: Vec<String> = vec![
        "--log-format".into(),
        "json".into(),
        "-v".into(),
        "--store".into(),
        vault.addr.clone(),
    ];
    args.extend(env_log_child(&log, &["A"]));
    let mut run = agent_run(Mode::Plain, args)
        .env("AGENT_RUN_TOKEN", &token)
        .start(&dir);
    wait_until(LONG, "the first child", || {
        starts(&dir.read("child.log"), "A").len() == 1
    });
    vault.set("log-bot", "A", "store-a-value-0002");
    wait_until(LONG, "the restart", || {
        starts(&dir.read("child.log"), "A").len() == 2
    });
    wait_until(LONG, "the change's log line", || {
        run.stderr().contains("secrets changed")
    });

    // The store goes away and comes back: both said at warn.
    vault.kill9();
    wait_until(LONG, "the lost-store warning", || {
        run.stderr().contains("lost the store")
    });
    vault.start_again();
    // Said when the store answers again, not at the next change (a long-poll waits 55 s).
    wait_until(LONG, "the reachable-again line", || {
        run.stderr().contains("store reachable again")
    });
    vault.set("log-bot", "B", "store-b-value-0002");
    wait_until(LONG, "the restart for B", || {
        starts(&dir.read("child.log"), "A").len() == 3
    });
    wait_until(LONG, "the second change's log line", || {
        run.stderr().matches("secrets changed").count() == 2
    });
    let out = run.stop();
    let lines = json_lines(&out.stderr);
    let changes = with_message(&lines, "secrets changed");
    assert_eq!(changes.len(), 2, "{}", out.description);
    assert_eq!(changes[1]["fields"]["changed"], "B", "{}", out.description);
    let fields = &changes[0]["fields"];
    assert_eq!(fields["changed"], "A", "{}", out.description);
    assert_eq!(fields["added"], "", "{}", out.description);
    assert_eq!(fields["removed"], "", "{}", out.description);
    assert!(
        fields["revision"]
            .as_str()
            .is_some_and(|r| r.contains(&vault.addr) && r.contains("revision")),
        "{}",
        out.description
    );
    for message in [
        "lost the store; the child keeps running, reconnecting",
        "store reachable again",
    ] {
        let found = with_message(&lines, message);
        assert!(!found.is_empty(), "{message}: {}", out.description);
        assert!(
            found.iter().all(|l| l["level"] == "WARN"),
            "{message}: {}",
            out.description
        );
    }
    for value in [
        "store-a-value-0001",
        "store-a-value-0002",
        "store-b-value-0001",
        "store-b-value-0002",
    ] {
        assert!(!out.stderr.contains(value), "{value}: {}", out.description);
    }
}
