//! The first hour (issue 13): mistyped flags must be usage errors (exit 125 with clap's
//! suggestion), never run as the command; and agent-run's messages must name the real cause
//! once, with the way out.

use crate::common::{agent_run, Dir, Mode};

/// A command that leaves a mark if it ever runs.
fn marker_command(dir: &Dir) -> Vec<String> {
    vec![
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("touch '{}'", dir.join("ran").display()),
    ]
}

#[test]
fn a_mistyped_flag_is_a_usage_error_with_a_suggestion_and_nothing_runs() {
    let dir = Dir::new("usage-typo");
    for (typo, value, meant) in [
        ("--stor", Some("http://127.0.0.1:9"), "--store"),
        ("--chek", None, "--check"),
        ("--gracee", Some("5s"), "--grace"),
    ] {
        let mut args = vec![typo.to_owned()];
        args.extend(value.map(str::to_owned));
        args.extend(marker_command(&dir));
        let out = agent_run(Mode::Plain, &args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains(typo) && out.stderr.contains(meant),
            "stderr must name {typo} and suggest {meant}\n{}",
            out.description
        );
        assert!(
            !dir.join("ran").exists(),
            "{typo}: the command must not have run"
        );
    }
}

#[test]
fn a_command_that_starts_with_a_dash_still_runs_after_double_dash() {
    let dir = Dir::new("usage-dash-command");
    let out = agent_run(Mode::Plain, ["--", "-weird-command"]).run(&dir);
    out.assert_code(127);
    assert!(out.stderr.contains("-weird-command"), "{}", out.description);
}

#[test]
fn flags_after_the_command_belong_to_the_command() {
    let dir = Dir::new("usage-command-flags");
    dir.write("a-file", "");
    let out = agent_run(Mode::Plain, ["--", "ls", "-la", "--check"])
        .current_dir(dir.path())
        .run(&dir);
    // ls gets `--check`, which it does not know: ls's own usage error (2), not agent-run's
    // --check (0 with a report) nor a usage error of agent-run (125).
    out.assert_code(2);
    let out = agent_run(Mode::Plain, ["ls", "-la"])
        .current_dir(dir.path())
        .run(&dir);
    out.assert_code(0);
    assert!(out.stdout.contains("a-file"), "{}", out.description);
}
