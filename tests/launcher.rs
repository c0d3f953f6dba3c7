//! agent-run as a launcher and PID 1, with real processes and real signals. Every
//! process-level behaviour runs twice: plainly, and as PID 1 of a new PID namespace.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{
    agent_run, alive, lines_starting, test_child, wait_until, zombies_of, Dir, Mode, MODES,
};

const LONG: Duration = Duration::from_secs(15);

fn sh(script: &str) -> Vec<String> {
    vec!["--".into(), "sh".into(), "-c".into(), script.into()]
}

#[test]
fn exit_codes_pass_through() {
    let dir = Dir::new();
    for mode in MODES {
        for (script, code) in [
            ("exit 0", 0),
            ("exit 1", 1),
            ("exit 42", 42),
            ("exit 255", 255),
            ("kill -TERM $$", 143),
            ("kill -KILL $$", 137),
            ("kill -USR1 $$", 138),
        ] {
            agent_run(mode, sh(script)).run(&dir).assert_code(code);
        }
        let out = agent_run(mode, ["--", "/nonexistent/program"]).run(&dir);
        out.assert_code(127);
        assert!(
            out.stderr
                .contains("/nonexistent/program: command not found"),
            "{}",
            out.description
        );
        agent_run(mode, ["--", "no-such-command-anywhere"])
            .run(&dir)
            .assert_code(127);
        let not_executable = dir.write("not-executable", "#!/bin/sh\nexit 0\n");
        let out = agent_run(mode, ["--", not_executable.to_str().unwrap()]).run(&dir);
        out.assert_code(126);
        assert!(out.stderr.contains("cannot execute"), "{}", out.description);
    }
}

#[test]
fn every_forwarded_signal_reaches_the_child() {
    let forwarded = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGALRM,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGPIPE,
    ];
    for mode in MODES {
        let dir = Dir::new();
        let log = dir.path("signals.log");
        // INT is a shutdown request too; a long grace keeps the child alive to log the rest.
        let mut launcher = agent_run(
            mode,
            [
                "--grace",
                "60s",
                "--",
                test_child().to_str().unwrap(),
                "signals",
                log.to_str().unwrap(),
            ],
        )
        .start(&dir);
        wait_until(LONG, "child ready", || {
            dir.read("signals.log").contains("ready")
        });
        for signal in forwarded {
            launcher.signal(signal);
            let expected = format!("got {}", signal.as_str());
            wait_until(LONG, &expected, || {
                dir.read("signals.log").lines().any(|l| l == expected)
            });
        }
        // A real-time signal, which nix's Signal cannot even name.
        let rt = libc::SIGRTMIN() + 3;
        kill_by_number(launcher.pid, rt);
        wait_until(LONG, "real-time signal", || {
            dir.read("signals.log").contains(&format!("got SIG{rt}"))
        });
        let out = launcher.stop();
        out.assert_code(0);
        assert!(dir.read("signals.log").contains("got SIGTERM"));
    }
}

/// `kill -N` through the shell, for a signal number nix cannot name.
fn kill_by_number(pid: i32, signo: i32) {
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{signo} {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signo} {pid} failed");
}

#[test]
fn child_ignoring_term_is_killed_after_grace() {
    for mode in MODES {
        let dir = Dir::new();
        let log = dir.path("signals.log");
        let mut launcher = agent_run(
            mode,
            [
                "--grace",
                "300ms",
                "--",
                test_child().to_str().unwrap(),
                "signals",
                log.to_str().unwrap(),
                "--ignore-term",
            ],
        )
        .start(&dir);
        wait_until(LONG, "child ready", || {
            dir.read("signals.log").contains("ready")
        });
        let child = launcher.child();
        launcher.signal(Signal::SIGTERM);
        let out = launcher.stop();
        out.assert_code(137);
        assert!(
            dir.read("signals.log").contains("got SIGTERM"),
            "the child got TERM before KILL"
        );
        assert!(!alive(child));
        assert!(out.stderr.contains("grace period"), "{}", out.description);
    }
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    for mode in MODES {
        let dir = Dir::new();
        let log = dir.path("orphans.log");
        let mut launcher = agent_run(
            mode,
            [
                "--",
                test_child().to_str().unwrap(),
                "orphans",
                log.to_str().unwrap(),
                "5",
            ],
        )
        .start(&dir);
        wait_until(LONG, "orphans spawned", || {
            dir.read("orphans.log").contains("spawned")
        });
        // The orphans (re-parented to agent-run) exit after 200 ms; none may stay a zombie.
        wait_until(LONG, "orphans to be re-parented and reaped", || {
            launcher.children().len() == 1 && zombies_of(launcher.pid).is_empty()
        });
        launcher.stop().assert_code(0);
    }
}

#[test]
fn stdin_and_50mb_stdout_pass_through() {
    let dir = Dir::new();
    for mode in MODES {
        let input: Vec<u8> = (0..50 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let mut launcher = agent_run(mode, ["--", "cat"])
            .stdin(Stdio::piped())
            .start(&dir);
        // Dropping the pipe at the end of the statement closes cat's stdin.
        launcher.take_stdin().write_all(&input).unwrap();
        let status = launcher.wait(Duration::from_secs(60));
        assert!(status.success(), "{}", launcher.describe(Some(status)));
        let output = std::fs::read(launcher.stdout_path()).unwrap();
        assert_eq!(output.len(), input.len());
        assert!(output == input, "stdout differs from stdin");
    }
}

#[test]
fn argv_is_passed_intact() {
    let dir = Dir::new();
    for mode in MODES {
        let out = agent_run(
            mode,
            [
                "--",
                "sh",
                "-c",
                "for a in \"$@\"; do printf '[%s]' \"$a\"; done",
                "sh",
                "a b",
                "ünï cødé ✓",
                "",
                "--env",
                "-x",
            ],
        )
        .run(&dir);
        out.assert_code(0);
        assert_eq!(out.stdout, "[a b][ünï cødé ✓][][--env][-x]");
    }
}

#[test]
fn mappings_and_precedence_end_to_end() {
    let dir = Dir::new();
    let env_file = dir.write(
        ".env",
        "API_KEY=from-file\nSHARED=from-file\nOTHER=other-value\n",
    );
    let secrets = dir.path("secrets");
    dir.write("secrets/DB_URL", "postgres://db\n");
    dir.write("secrets/SHARED", "from-dir");
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            env_file.to_str().unwrap(),
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "-e",
            "ALIAS=@API_KEY",
            "-e",
            "DB_URL=@",
            "-e",
            "AT=\\@literal",
            "-e",
            "PLAIN=value",
            "-e",
            "INHERITED=overridden",
            "--",
            "sh",
            "-c",
            "echo \"$API_KEY|$SHARED|$OTHER|$ALIAS|$DB_URL|$AT|$PLAIN|$INHERITED|$KEPT\"",
        ],
    )
    .env("INHERITED", "parent")
    .env("KEPT", "parent-kept")
    .env("OTHER", "parent-other")
    .run(&dir);
    out.assert_code(0);
    // Later sources win (env files over dirs), secrets over inherited, --env over all.
    assert_eq!(
        out.stdout.trim(),
        "from-file|from-file|other-value|from-file|postgres://db|@literal|value|overridden|parent-kept"
    );

    // --pristine with --keep, and --only narrowing the bulk injection.
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            env_file.to_str().unwrap(),
            "--pristine",
            "--keep",
            "PATH",
            "--keep",
            "KEEP_*",
            "--only",
            "API_*",
            "-e",
            "X=@OTHER",
            "--",
            "sh",
            "-c",
            "env | sort | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_='",
        ],
    )
    .env("KEEP_ME", "1")
    .env("DROP_ME", "1")
    .run(&dir);
    out.assert_code(0);
    let names: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["API_KEY", "KEEP_ME", "PATH", "X"],
        "{}",
        out.description
    );
}

#[test]
fn reserved_and_token_variables_never_reach_the_child() {
    let dir = Dir::new();
    for mode in MODES {
        let out = agent_run(mode, sh("env"))
            .env("AGENT_RUN_TOKEN", "avt_should_not_leak")
            .env("AGENT_RUN_TOKEN_FILE", "/tmp/token")
            .env("AGENT_RUN_GRACE", "2s")
            .run(&dir);
        out.assert_code(0);
        assert!(!out.stdout.contains("AGENT_RUN_"), "{}", out.description);
        assert!(!out.stdout.contains("avt_should_not_leak"));
    }
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let dir = Dir::new();
    let marker = dir.path("started");
    let touch = format!("touch {}", marker.display());
    let bad_name = dir.write("bad-name.env", "GOOD=1\n9LIVES=s3cr3t-bad-name\n");
    let bad_dir = dir.path("bad-dir");
    dir.write("bad-dir/tls.crt", "s3cr3t-cert");
    let nul_dir = dir.path("nul-dir");
    dir.write("nul-dir/TOKEN", b"s3cr3t\0tail");
    let unreadable = dir.path("missing.env");
    let good = dir.write("good.env", "A=s3cr3t-value\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--env-file".into(), bad_name.display().to_string()],
            "bad-name.env:2",
        ),
        (
            vec!["--secrets-dir".into(), bad_dir.display().to_string()],
            "tls.crt",
        ),
        (
            vec!["--secrets-dir".into(), nul_dir.display().to_string()],
            "TOKEN",
        ),
        (
            vec!["--env-file".into(), unreadable.display().to_string()],
            "missing.env",
        ),
        (
            vec![
                "--env-file".into(),
                good.display().to_string(),
                "-e".into(),
                "K=@NOPE".into(),
            ],
            "NOPE",
        ),
        (vec!["-e".into(), "bad-name=x".into()], "bad-name"),
        (vec!["--grace".into(), "soon".into()], "--grace"),
    ];
    for (mut args, names) in cases {
        args.extend(sh(&touch));
        let out = agent_run(Mode::Plain, &args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains(names),
            "error should name {names:?}\n{}",
            out.description
        );
        assert!(
            !out.stderr.contains("s3cr3t"),
            "a value leaked into the error\n{}",
            out.description
        );
        assert!(
            !marker.exists(),
            "the command ran despite bad input: {args:?}"
        );
    }
    // --allow-missing turns the missing reference into a warning.
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            good.to_str().unwrap(),
            "-e",
            "K=@NOPE",
            "--allow-missing",
            "--",
            "sh",
            "-c",
            "echo ${K-unset}",
        ],
    )
    .run(&dir);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "unset");
}

#[test]
fn once_replaces_agent_run() {
    let dir = Dir::new();
    let env_file = dir.write(".env", "ONCE=yes\n");
    for mode in MODES {
        let out = agent_run(
            mode,
            [
                "--once",
                "--env-file",
                env_file.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                "echo $$ $ONCE; readlink /proc/$$/exe; exit 7",
            ],
        )
        .run(&dir);
        out.assert_code(7);
        let mut lines = out.stdout.lines();
        let first = lines.next().unwrap_or_default().to_owned();
        let exe = lines.next().unwrap_or_default().to_owned();
        assert!(first.ends_with(" yes"), "{}", out.description);
        assert!(
            !exe.contains("agent-run"),
            "the command runs in agent-run's process: {exe}"
        );
        if mode == Mode::Plain {
            assert_eq!(first, format!("{} yes", out.pid), "same pid: no fork");
        } else {
            assert_eq!(first, "1 yes", "the command itself is PID 1");
        }
    }
}

#[test]
fn parent_death_signal_kills_the_child() {
    let dir = Dir::new();
    let log = dir.path("signals.log");
    let launcher = agent_run(
        Mode::Plain,
        [
            "--",
            test_child().to_str().unwrap(),
            "signals",
            log.to_str().unwrap(),
        ],
    )
    .start(&dir);
    wait_until(LONG, "child ready", || {
        dir.read("signals.log").contains("ready")
    });
    let child = launcher.child();
    launcher.signal(Signal::SIGKILL);
    wait_until(LONG, "the orphaned child to die", || !alive(child));
}

#[test]
fn restart_policy_restarts_a_failing_child_with_backoff() {
    let dir = Dir::new();
    let log = dir.path("starts.log");
    let mut launcher = agent_run(
        Mode::Plain,
        [
            "--restart",
            "on-failure",
            "--",
            test_child().to_str().unwrap(),
            "exit-after",
            log.to_str().unwrap(),
            "3",
        ],
    )
    .start(&dir);
    wait_until(LONG, "three starts", || {
        lines_starting(&dir.read("starts.log"), "start").len() >= 3
    });
    // TERM between two runs exits with the last child's code; during a run, with the
    // code of the child that TERM ended.
    let out = launcher.stop();
    assert!(
        matches!(out.code, Some(3) | Some(143)),
        "{}",
        out.description
    );

    // A successful exit is not a failure: exactly one start, and its code.
    let log = dir.path("ok.log");
    agent_run(
        Mode::Plain,
        [
            "--restart",
            "on-failure",
            "--",
            test_child().to_str().unwrap(),
            "exit-after",
            log.to_str().unwrap(),
            "0",
        ],
    )
    .run(&dir)
    .assert_code(0);
    assert_eq!(lines_starting(&dir.read("ok.log"), "start").len(), 1);
}
