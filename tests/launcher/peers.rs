//! Issue 13 item 9, agent-run's side: the flags users of the peers type. `--preserve-env`
//! (doppler: inherited variables win over the sources), `--command "…"` (doppler: one
//! command line through `/bin/sh -c`, never next to a command after `--`), `--prefix PFX_`
//! (envconsul: every key from the sources renamed on injection, the dangerous-name deny
//! list judging the final name).

use serde_json::json;

use crate::common::vault::start_vault;
use crate::common::{agent_run, sh, Dir, Mode, MODES};

/// The child: writes `A|B|C|APP_A|APP_B` (unset as `-`) to `out`.
fn dump(dir: &Dir) -> Vec<String> {
    sh(&format!(
        "printf '%s|%s|%s|%s|%s' \"${{A--}}\" \"${{B--}}\" \"${{C--}}\" \"${{APP_A--}}\" \"${{APP_B--}}\" > '{}'",
        dir.join("out").display()
    ))
}

fn run_dump(dir: &Dir, flags: &[&str], env: &[(&str, &str)]) -> String {
    let _ = std::fs::remove_file(dir.join("out"));
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(dump(dir));
    let mut builder = agent_run(Mode::Plain, args);
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let out = builder.run(dir);
    out.assert_code(0);
    dir.read("out")
}

#[test]
fn issue_13_preserve_env_lets_inherited_variables_win() {
    let dir = Dir::new("peers-preserve");
    let file = dir.write("app.env", "A=file-a\nB=file-b\nC=file-c\n");
    let file = file.to_str().expect("utf-8");
    let inherited = [("A", "inherited-a"), ("B", "inherited-b")];
    let base = ["--env-file", file];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut flags = base.to_vec();
        flags.extend_from_slice(extra);
        flags
    }
    // Without the flag the sources win, as before.
    assert_eq!(
        run_dump(&dir, &base, &inherited),
        "file-a|file-b|file-c|-|-"
    );
    // Every inherited variable, by flag or variable.
    assert_eq!(
        run_dump(&dir, &with(&base, &["--preserve-env"]), &inherited),
        "inherited-a|inherited-b|file-c|-|-"
    );
    let mut env = inherited.to_vec();
    env.push(("AGENT_RUN_PRESERVE_ENV", "true"));
    assert_eq!(
        run_dump(&dir, &base, &env),
        "inherited-a|inherited-b|file-c|-|-"
    );
    // Only the named ones.
    assert_eq!(
        run_dump(&dir, &with(&base, &["--preserve-env=B"]), &inherited),
        "file-a|inherited-b|file-c|-|-"
    );
    let mut env = inherited.to_vec();
    env.push(("AGENT_RUN_PRESERVE_ENV", "A"));
    assert_eq!(run_dump(&dir, &base, &env), "inherited-a|file-b|file-c|-|-");
    // --env still wins over everything; a preserved key still counts for --require.
    assert_eq!(
        run_dump(
            &dir,
            &with(
                &base,
                &["--preserve-env", "--env", "B=@C", "--require", "A,B,C"]
            ),
            &inherited
        ),
        "inherited-a|file-c|file-c|-|-"
    );
    // --check shows which keys the inherited variables kept, without their values.
    let out = agent_run(
        Mode::Plain,
        ["--env-file", file, "--preserve-env=A", "--check"],
    )
    .env("A", "inherited-a")
    .run(&dir);
    out.assert_code(0);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("A "))
        .unwrap_or_else(|| panic!("no row for A: {}", out.description));
    assert!(row.contains("inherited (--preserve-env)"), "{row}");
    assert!(!out.stdout.contains("inherited-a"), "{}", out.description);
    assert!(out.stdout.contains("B "), "{}", out.description);

    // A bad name in the list is a usage error naming it.
    let out = agent_run(
        Mode::Plain,
        ["--env-file", file, "--preserve-env=A,1B", "--", "true"],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("--preserve-env") && out.stderr.contains("1B"),
        "{}",
        out.description
    );
}

#[test]
fn issue_13_command_runs_through_the_shell_and_never_next_to_a_trailing_command() {
    let dir = Dir::new("peers-command");
    let file = dir.write("app.env", "A=from-the-file\n");
    let file = file.to_str().expect("utf-8");
    let out_file = dir.join("out");
    let line = format!(
        "echo \"$A\" | tr a-z A-Z > '{}' && exit 7",
        out_file.display()
    );
    for mode in MODES {
        let _ = std::fs::remove_file(&out_file);
        let out = agent_run(mode, ["--env-file", file, "--command", line.as_str()]).run(&dir);
        out.assert_code(7);
        assert_eq!(dir.read("out"), "FROM-THE-FILE\n", "{mode:?}");
    }
    // The variable, with --once (exec in place).
    let _ = std::fs::remove_file(&out_file);
    let out = agent_run(Mode::Plain, ["--env-file", file, "--once"])
        .env("AGENT_RUN_COMMAND", &line)
        .run(&dir);
    out.assert_code(7);
    assert_eq!(dir.read("out"), "FROM-THE-FILE\n");

    // Both forms at once: a usage error (125) naming both, nothing run.
    let _ = std::fs::remove_file(&out_file);
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            file,
            "--command",
            line.as_str(),
            "--",
            "touch",
            out_file.to_str().unwrap(),
        ],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("--command") && out.stderr.contains("[CMD]"),
        "{}",
        out.description
    );
    assert!(!out_file.exists(), "{}", out.description);
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            file,
            "--",
            "touch",
            out_file.to_str().unwrap(),
        ],
    )
    .env("AGENT_RUN_COMMAND", &line)
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("--command") && out.stderr.contains("[CMD]"),
        "{}",
        out.description
    );
    assert!(!out_file.exists(), "{}", out.description);
}

#[test]
fn issue_13_prefix_renames_every_source_key_and_the_deny_list_judges_the_final_name() {
    let vault = start_vault();
    vault.set("prefix-bot", "B", "store-b-value-0001");
    let (_, token) = vault.issue(&["secrets:read:prefix-bot/*"], Some(json!("1h")));
    let dir = Dir::new("peers-prefix");
    let file = dir.write("app.env", "A=file-a\nPRELOAD=/nonexistent/evil.so\n");
    let file = file.to_str().expect("utf-8");
    let store = vault.addr.as_str();

    // Every key of every source (file and store) renamed; @ references use the source's
    // names; --require the final ones.
    let got = run_dump(
        &dir,
        &[
            "--env-file",
            file,
            "--store",
            store,
            "--prefix",
            "APP_",
            "--env",
            "C=@A",
            "--require",
            "APP_A,APP_B",
        ],
        &[("AGENT_RUN_TOKEN", &token)],
    );
    assert_eq!(got, "-|-|file-a|file-a|store-b-value-0001");
    // The variable, and --check shows the final names.
    let out = agent_run(Mode::Plain, ["--env-file", file, "--check"])
        .env("AGENT_RUN_PREFIX", "APP_")
        .run(&dir);
    out.assert_code(0);
    assert!(
        out.stdout.contains("APP_A (=@A)") && out.stdout.contains("APP_PRELOAD (=@PRELOAD)"),
        "{}",
        out.description
    );

    // The deny list applies after renaming: PRELOAD under LD_ is LD_PRELOAD.
    let preload = dir.write("preload.env", "PRELOAD=/nonexistent/evil.so\n");
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            preload.to_str().unwrap(),
            "--prefix",
            "LD_",
            "--",
            "true",
        ],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("LD_PRELOAD") && out.stderr.contains("--allow-env LD_PRELOAD"),
        "{}",
        out.description
    );
    assert!(
        !out.stderr.contains("/nonexistent/evil"),
        "{}",
        out.description
    );

    // A prefix that cannot start a name, or agent-run's own: usage errors naming it.
    for bad in ["1X_", "AGENT_RUN_X", "A-B"] {
        let out = agent_run(
            Mode::Plain,
            ["--env-file", file, "--prefix", bad, "--", "true"],
        )
        .run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--prefix") && out.stderr.contains(bad),
            "{}",
            out.description
        );
    }
}
