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

/// Issue 13: `cannot read nope.env: No such file … (os error 2): No such file … (os error 2)`.
/// Every error whose message shows its cause and also returns it as its source is printed
/// with the cause once.
#[test]
fn a_missing_file_names_its_cause_once() {
    let dir = Dir::new("usage-missing-files");
    let cause = "No such file or directory";
    let out = agent_run(Mode::Plain, ["--env-file", "nope.env", "--", "true"])
        .current_dir(dir.path())
        .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("nope.env"), "{}", out.description);
    assert_eq!(out.stderr.matches(cause).count(), 1, "{}", out.description);

    let out = agent_run(
        Mode::Plain,
        [
            "--token-file",
            "nope.token",
            "--store",
            "http://127.0.0.1:9",
            "--",
            "true",
        ],
    )
    .current_dir(dir.path())
    .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("nope.token"), "{}", out.description);
    assert_eq!(out.stderr.matches(cause).count(), 1, "{}", out.description);
}

/// Issue 13: `--store 127.0.0.1:44967` listed only the OpenBao forms. Every accepted form,
/// and the value with the scheme it lacks.
#[test]
fn a_store_without_scheme_lists_every_form_and_suggests_one() {
    let dir = Dir::new("usage-store-scheme");
    let out = agent_run(Mode::Plain, ["--store", "127.0.0.1:44967", "--", "true"]).run(&dir);
    out.assert_code(125);
    for form in [
        "https://HOST:PORT",
        "openbao+https://",
        "vault+https://",
        "did you mean http://127.0.0.1:44967",
    ] {
        assert!(out.stderr.contains(form), "{form}\n{}", out.description);
    }
    let out = agent_run(Mode::Plain, ["--store", "vault.example:8200", "--", "true"]).run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr
            .contains("did you mean https://vault.example:8200"),
        "{}",
        out.description
    );
}

/// Issue 13: a dotenv name that starts with a digit says that the name is invalid and why.
#[test]
fn a_dotenv_name_starting_with_a_digit_says_why() {
    let dir = Dir::new("usage-dotenv-name");
    dir.write("bad.env", "1KEY=2\n");
    let out = agent_run(Mode::Plain, ["--env-file", "bad.env", "--", "true"])
        .current_dir(dir.path())
        .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("bad.env:1:")
            && out.stderr.contains("invalid name")
            && out.stderr.contains("must start with a letter or '_'"),
        "{}",
        out.description
    );
}

/// Issue 13: an admin token given to agent-run got "may not runtime.read project variables".
/// The server answers with its own code for a token that reads no agent, and agent-run says
/// which token to issue (its own words, never the server's message).
#[test]
fn an_admin_token_says_to_issue_a_read_token() {
    let vault = crate::common::vault::start_vault();
    let dir = Dir::new("usage-admin-token");
    for agent in [None, Some("support-bot")] {
        let mut args = vec!["--store".to_owned(), vault.addr.clone()];
        if let Some(agent) = agent {
            args.extend(["--agent".to_owned(), agent.to_owned()]);
        }
        args.extend(["--".to_owned(), "true".to_owned()]);
        let out = agent_run(Mode::Plain, &args)
            .env("AGENT_RUN_TOKEN", &vault.admin)
            .run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("this is an admin token")
                && out
                    .stderr
                    .contains("agent-vault tokens issue --scope secrets:read:AGENT/*"),
            "{agent:?}\n{}",
            out.description
        );
        assert!(!out.stderr.contains("may not"), "{}", out.description);
    }
}
