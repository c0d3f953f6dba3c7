//! Issue 14 item 6: `@{SECRET}` references inside an `--env` value
//! (`--env 'AUTHORIZATION=Bearer @{STRIPE_KEY}'`), composed inside the wiped environment
//! block: only in `--env` specs, never in a source's values, never recursive, `\@{`
//! escapes, a missing reference refused like `KEY=@MISSING` (and skipped whole under
//! `--allow-missing`), `--check` showing `--env (KEY)` with a masked preview, a rotation
//! of the referenced secret restarting the child with the new composed value, and no copy
//! of either value left in agent-run's memory. Plainly and as PID 1.

use std::time::Duration;

use serde_json::json;

use crate::common::vault::start_vault;

use crate::common::{
    agent_run, env_log_child, memscan, random_values, sh, start_signals_child, starts, wait_until,
    Dir, MODES,
};

const LONG: Duration = Duration::from_secs(20);

fn with_command(flags: &[&str], command: Vec<String>) -> Vec<String> {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(command);
    args
}

#[test]
fn a_reference_composes_the_value_escapes_and_is_never_expanded_from_a_source() {
    for mode in MODES {
        let dir = Dir::new("refs-compose");
        let key = "sk_live_reference_0001";
        // A source's value that looks like a reference: passed as it is, and copied as it
        // is when referenced (no recursion).
        let env_file = dir.write(
            "app.env",
            format!("STRIPE_KEY={key}\nLOOKS=pre@{{STRIPE_KEY}}post\n"),
        );
        let out_file = dir.join("child.out");
        let script = format!(
            "printf '%s|%s|%s|%s|%s' \"$AUTHORIZATION\" \"$NESTED\" \"$ESCAPED\" \"$LOOKS\" \"$TWICE\" > '{}'",
            out_file.display()
        );
        let args = with_command(
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "--env",
                "AUTHORIZATION=Bearer @{STRIPE_KEY}",
                "--env",
                "NESTED=<@{LOOKS}>",
                "--env",
                "ESCAPED=\\@{STRIPE_KEY}",
                "--env",
                "TWICE=@{STRIPE_KEY}:@{STRIPE_KEY}",
            ],
            sh(&script),
        );
        let out = agent_run(mode, &args).env("RUST_LOG", "trace").run(&dir);
        out.assert_code(0);
        assert_eq!(
            dir.read("child.out"),
            format!(
                "Bearer {key}|<pre@{{STRIPE_KEY}}post>|@{{STRIPE_KEY}}|pre@{{STRIPE_KEY}}post|{key}:{key}"
            ),
            "{mode:?}"
        );
        assert!(
            !out.stderr.contains(key),
            "the value reached the log at trace: {}",
            out.description
        );
    }
}

#[test]
fn a_missing_reference_is_refused_naming_the_variable_and_the_key() {
    for mode in MODES {
        let dir = Dir::new("refs-missing");
        let env_file = dir.write("app.env", "STRIPE_KEY=sk_live_reference_0002\n");
        let file = env_file.to_str().unwrap();
        let marker = sh(&format!(
            "printf '%s' \"${{AUTHORIZATION-unset}}\" > '{}'",
            dir.join("started").display()
        ));
        let spec = "AUTHORIZATION=Bearer @{STRIPE_KEY} @{NO_SUCH_KEY}";

        // A run and --check: 125, both the variable and the missing key named, no value.
        for check in [false, true] {
            let mut flags = vec!["--env-file", file, "--env", spec];
            if check {
                flags.push("--check");
            }
            let out = agent_run(mode, with_command(&flags, marker.clone())).run(&dir);
            out.assert_code(125);
            assert!(
                out.stderr.contains("AUTHORIZATION")
                    && out.stderr.contains("NO_SUCH_KEY")
                    && out.stderr.contains("--allow-missing"),
                "{}",
                out.description
            );
            assert!(!out.stderr.contains("sk_live"), "{}", out.description);
            assert!(!dir.join("started").exists(), "the child was started");
        }

        // --allow-missing skips the whole variable (an inherited one of the name too), as
        // for KEY=@MISSING; --check lists it as missing.
        let out = agent_run(
            mode,
            with_command(
                &["--env-file", file, "--env", spec, "--allow-missing"],
                marker.clone(),
            ),
        )
        .env("AUTHORIZATION", "inherited")
        .run(&dir);
        out.assert_code(0);
        assert_eq!(dir.read("started"), "unset", "{}", out.description);
        let out = agent_run(
            mode,
            [
                "--env-file",
                file,
                "--env",
                spec,
                "--allow-missing",
                "--check",
            ],
        )
        .run(&dir);
        out.assert_code(0);
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with("AUTHORIZATION"))
            .unwrap_or_else(|| panic!("no row: {}", out.description));
        assert!(row.contains("missing"), "{row}");

        // An unterminated reference is a usage error naming the spec.
        let out = agent_run(
            mode,
            with_command(
                &[
                    "--env-file",
                    file,
                    "--env",
                    "AUTHORIZATION=Bearer @{STRIPE_KEY",
                ],
                marker.clone(),
            ),
        )
        .run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("AUTHORIZATION=Bearer @{STRIPE_KEY") && out.stderr.contains('}'),
            "{}",
            out.description
        );
    }
}

#[test]
fn check_shows_a_composed_variable_with_its_references_and_a_masked_preview() {
    let dir = Dir::new("refs-check");
    let key = "sk_live_reference_0003_abcd";
    let env_file = dir.write("app.env", format!("STRIPE_KEY={key}\nREGION=eu-west-1\n"));
    let file = env_file.to_str().unwrap();
    let out = agent_run(
        crate::common::Mode::Plain,
        [
            "--env-file",
            file,
            "--env",
            "AUTHORIZATION=Bearer @{STRIPE_KEY}",
            "--env",
            "URL=https://@{REGION}.example",
            "--check",
        ],
    )
    .run(&dir);
    out.assert_code(0);
    let row = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row: {}", out.description))
            .to_owned()
    };
    let auth = row("AUTHORIZATION");
    assert!(
        auth.contains("--env (STRIPE_KEY)") && auth.contains("secret") && auth.contains("****abcd"),
        "{auth}"
    );
    assert!(!out.stdout.contains("sk_live"), "{}", out.description);
    // An env file's values are secrets: a value built from one is masked too.
    let url = row("URL");
    assert!(
        url.contains("--env (REGION)") && url.contains("secret") && url.contains("****mple"),
        "{url}"
    );
    assert!(!out.stdout.contains("eu-west-1"), "{}", out.description);

    let out = agent_run(
        crate::common::Mode::Plain,
        [
            "--env-file",
            file,
            "--env",
            "AUTHORIZATION=Bearer @{STRIPE_KEY}",
            "--check",
            "--json",
        ],
    )
    .run(&dir);
    out.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let auth = json["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "AUTHORIZATION")
        .expect("row");
    assert_eq!(auth["references"], serde_json::json!(["STRIPE_KEY"]));
    assert_eq!(auth["source"], "--env (STRIPE_KEY)");
    assert_eq!(auth["preview"], "****abcd");
}

#[test]
fn rotating_the_referenced_secret_restarts_the_child_with_the_new_composed_value() {
    for mode in MODES {
        let dir = Dir::new("refs-rotate");
        dir.write("app.env", "STRIPE_KEY=first_value_0004\n");
        let file = dir.join("app.env");
        let log = dir.join("env.log");
        let args = with_command(
            &[
                "--env-file",
                file.to_str().unwrap(),
                "--env",
                "AUTHORIZATION=Bearer:@{STRIPE_KEY}",
            ],
            env_log_child(&log, &["AUTHORIZATION"]),
        );
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "first start", || {
            !starts(&dir.read("env.log"), "AUTHORIZATION").is_empty()
        });
        dir.replace("app.env", "STRIPE_KEY=second_value_0004\n");
        wait_until(LONG, "a restart with the new composed value", || {
            starts(&dir.read("env.log"), "AUTHORIZATION").len() >= 2
        });
        let values: Vec<String> = starts(&dir.read("env.log"), "AUTHORIZATION")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            values,
            ["Bearer:first_value_0004", "Bearer:second_value_0004"],
            "{mode:?}"
        );
        launcher.stop().assert_code(0);
    }
}

/// The composed value and the referenced one: neither stays in agent-run after a start and
/// after a restart on change, plainly and as PID 1 (scripts/test-all.sh runs every
/// `no_secret_stays` test again against the release build).
#[test]
fn no_secret_stays_in_agent_run_after_a_reference() {
    for mode in MODES {
        let dir = Dir::new("refs-memory");
        let write = |value: &str| dir.replace("app.env", format!("STRIPE_KEY={value}\n"));
        let first = random_values(2, 41);
        write(&first[0]);
        let control = dir.join("app.env").display().to_string();
        let mut launcher = start_signals_child(
            mode,
            &dir,
            &[
                "--env-file",
                &control,
                "--env",
                "AUTHORIZATION=Bearer @{STRIPE_KEY}",
                "-vvv",
            ],
            &[],
        );
        let first_child = launcher.child();
        let composed = |value: &str| format!("Bearer {value}");
        let first_values = vec![first[0].clone(), composed(&first[0])];
        memscan::assert_child_has_all(first_child, &first_values);
        memscan::assert_no_secret_in_memory(launcher.pid, &first_values, &control, "after start");

        let second = random_values(3, 42);
        write(&second[2]);
        let second_values = vec![second[2].clone(), composed(&second[2])];
        let mut second_child = 0;
        wait_until(LONG, "restart with the rotated value", || {
            match launcher.children()[..] {
                [child] if child != first_child => {
                    second_child = child;
                    dir.read("signals.log").matches("ready").count() >= 2
                }
                _ => false,
            }
        });
        memscan::assert_child_has_all(second_child, &second_values);
        let everything: Vec<String> = first_values.iter().chain(&second_values).cloned().collect();
        memscan::assert_no_secret_in_memory(
            launcher.pid,
            &everything,
            &control,
            "after a restart on change",
        );
        let out = launcher.stop();
        out.assert_code(0);
        for value in &everything {
            assert!(
                !out.stderr.contains(value.as_str()),
                "a value reached the log at -vvv"
            );
        }
    }
}

/// The same through a real agent-vault: a store value that looks like a reference is not
/// expanded, a plain variable referenced is shown whole by `--check`, and a rotation of the
/// referenced secret in the store restarts the child with the new composed value.
#[test]
fn through_the_store_a_rotation_recomposes_and_plain_references_show_whole() {
    let vault = start_vault();
    vault.set("ref-bot", "STRIPE_KEY", "store_first_value_0005");
    vault.set("ref-bot", "LOOKS", "x@{STRIPE_KEY}y");
    let (status, body) = vault.put(
        "/v1/agents/ref-bot/secrets/REGION",
        &vault.admin,
        json!({"value": "eu-west-1", "kind": "plain"}),
    );
    assert_eq!(status, 201, "{body}");
    let (_, token) = vault.issue(&["secrets:read:ref-bot/*"], Some(json!("1h")));
    let store = vault.addr.as_str();

    let dir = Dir::new("refs-store-check");
    let out = agent_run(
        crate::common::Mode::Plain,
        [
            "--store",
            store,
            "--env",
            "URL=https://@{REGION}.example",
            "--env",
            "AUTH=Bearer @{STRIPE_KEY}",
            "--check",
        ],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .run(&dir);
    out.assert_code(0);
    let row = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row: {}", out.description))
            .to_owned()
    };
    let url = row("URL");
    assert!(
        url.contains("plain") && url.contains("https://eu-west-1.example"),
        "{url}"
    );
    let auth = row("AUTH");
    assert!(
        auth.contains("secret") && auth.contains("****0005"),
        "{auth}"
    );
    assert!(!out.stdout.contains("store_first"), "{}", out.description);

    for mode in MODES {
        vault.set("ref-bot", "STRIPE_KEY", "store_first_value_0005");
        let dir = Dir::new("refs-store-rotate");
        let log = dir.join("env.log");
        let args = with_command(
            &["--store", store, "--env", "AUTH=Bearer:@{STRIPE_KEY}"],
            env_log_child(&log, &["AUTH", "LOOKS"]),
        );
        let mut launcher = agent_run(mode, &args)
            .env("AGENT_RUN_TOKEN", &token)
            .start(&dir);
        wait_until(LONG, "first start", || {
            !starts(&dir.read("env.log"), "AUTH").is_empty()
        });
        vault.set("ref-bot", "STRIPE_KEY", "store_second_value_0005");
        wait_until(LONG, "a restart with the new composed value", || {
            starts(&dir.read("env.log"), "AUTH").len() >= 2
        });
        let log = dir.read("env.log");
        let values: Vec<String> = starts(&log, "AUTH").into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                "Bearer:store_first_value_0005",
                "Bearer:store_second_value_0005"
            ],
            "{mode:?}"
        );
        assert!(
            starts(&log, "LOOKS")
                .iter()
                .all(|(_, v)| v == "x@{STRIPE_KEY}y"),
            "{log}"
        );
        launcher.stop().assert_code(0);
    }
}

/// A composed variable is a secret of the composition: `--mount` moves it into the mounted
/// set with the secret it is built from, out of the child's environment.
#[test]
fn with_mount_a_composed_variable_is_mounted_not_in_the_environment() {
    for mode in MODES {
        let dir = Dir::new("refs-mount");
        let env_file = dir.write("app.env", "STRIPE_KEY=mount_value_0006\n");
        let script = format!(
            "env > {d}/env.tmp; mv {d}/env.tmp {d}/env.log; \
             cat /proc/self/fd/$AGENT_RUN_MOUNT_FD > {d}/mount.tmp; mv {d}/mount.tmp {d}/mount.log",
            d = dir.path().display()
        );
        let args = with_command(
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "--mount",
                "--env",
                "AUTHORIZATION=Bearer @{STRIPE_KEY}",
            ],
            sh(&script),
        );
        let out = agent_run(mode, &args).run(&dir);
        out.assert_code(0);
        let env = dir.read("env.log");
        assert!(
            !env.contains("mount_value_0006") && !env.contains("AUTHORIZATION"),
            "{env}"
        );
        let mounted = dir.read("mount.log");
        assert!(
            mounted.contains("AUTHORIZATION=\"Bearer mount_value_0006\"")
                && mounted.contains("STRIPE_KEY=\"mount_value_0006\""),
            "{mounted}"
        );
    }
}
