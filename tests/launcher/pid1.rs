//! agent-run as a launcher and PID 1, with real processes and real signals: exit codes,
//! forwarding, reaping, restarts, the terminal, and the peers' (tini, dumb-init) cases.
//! Every process-level behaviour runs twice: plainly, and as PID 1 of a new PID namespace.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common;
use crate::common::{
    agent_run, alive, env_log_child, lines_starting, sh, signals_child, start_signals_child,
    starts, test_child, wait_until, zombies_of, Dir, Mode, MODES,
};

const LONG: Duration = Duration::from_secs(15);

#[test]
fn exit_codes_pass_through() {
    let dir = Dir::new("launcher");
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
        let dir = Dir::new("launcher");
        // INT is a shutdown request too; a long grace keeps the child alive to log the rest.
        let mut launcher = start_signals_child(mode, &dir, &["--grace", "60s"], &[]);
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

/// dumb-init forwards the synchronous signals when a process sends them; only a fault of
/// agent-run's own (which the kernel forces through with the default action) kills it.
#[test]
fn synchronous_signals_sent_with_kill_are_forwarded() {
    let synchronous = [
        Signal::SIGILL,
        Signal::SIGTRAP,
        Signal::SIGABRT,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGSEGV,
        Signal::SIGSYS,
    ];
    for mode in MODES {
        let dir = Dir::new("launcher");
        let mut launcher = start_signals_child(mode, &dir, &[], &[]);
        for signal in synchronous {
            launcher.signal(signal);
            let expected = format!("got {}", signal.as_str());
            wait_until(LONG, &expected, || {
                dir.read("signals.log").lines().any(|l| l == expected)
            });
        }
        let out = launcher.stop();
        out.assert_code(0);
    }
}

/// What `exec` keeps, agent-run keeps: a caller that ignores INT, TTOU, SEGV and PIPE and
/// blocks TTIN, ILL and TERM gives the child exactly that, as if agent-run were not there
/// (Rust's runtime changes SIGPIPE and SIGSEGV/SIGBUS before `main`). Both modes, and
/// `--once`.
#[test]
fn inherited_ignored_and_blocked_signals_reach_the_child_as_exec_leaves_them() {
    let dir = Dir::new("launcher");
    let wrapper = dir.write(
        "sigwrap.py",
        "import os, signal, sys\n\
         for s in (signal.SIGINT, signal.SIGTTOU, signal.SIGSEGV, signal.SIGPIPE):\n\
         \x20   signal.signal(s, signal.SIG_IGN)\n\
         signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTIN, signal.SIGILL, signal.SIGTERM})\n\
         os.execv(sys.argv[1], sys.argv[1:])\n",
    );
    let grep = ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"];
    let run = |mode: Mode, agent_run_flags: Option<&[&str]>| -> String {
        let mut command = match mode {
            Mode::Plain => std::process::Command::new("python3"),
            Mode::Pid1 => {
                let mut c = std::process::Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "python3"]);
                c
            }
        };
        command.arg(&wrapper);
        if let Some(flags) = agent_run_flags {
            command.arg(common::agent_run_bin()).args(flags).arg("--");
        }
        command.args(grep).env_remove("RUST_LOG");
        common::run_ok(&mut command, None)
    };
    for mode in MODES {
        let without = run(mode, None);
        assert!(
            without.contains("SigIgn") && without.contains("SigBlk"),
            "{without}"
        );
        for flags in [&[][..], &["--once"][..]] {
            let with = run(mode, Some(flags));
            assert_eq!(
                with, without,
                "agent-run {flags:?} ({mode:?}) changed the child's ignored or blocked signals"
            );
        }
    }
}

/// A caller that ignores SIGCHLD would have the kernel reap agent-run's children before
/// the supervisor sees their status: agent-run takes the default for itself, the exit code
/// passes through, and the child still inherits the ignored SIGCHLD.
#[test]
fn a_caller_ignoring_sigchld_still_gets_the_exit_code() {
    let dir = Dir::new("launcher");
    let wrapper = dir.write(
        "chldwrap.py",
        "import os, signal, sys\n\
         signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
         os.execv(sys.argv[1], sys.argv[1:])\n",
    );
    // `timeout`: without the fix agent-run waits for ever for a status it never gets.
    let command = |mode: Mode, child: &[&str]| {
        let mut command = std::process::Command::new("timeout");
        command.args(["-k", "5", "20"]);
        if mode == Mode::Pid1 {
            command.args(["unshare", "--pid", "--fork", "--mount-proc"]);
        }
        command
            .arg("python3")
            .arg(&wrapper)
            .arg(common::agent_run_bin())
            .arg("--")
            .args(child)
            .env_remove("RUST_LOG");
        command
    };
    for mode in MODES {
        common::run_code(&mut command(mode, &["sh", "-c", "exit 3"]), None, 3);
        let output = common::run_code(
            &mut command(mode, &["grep", "SigIgn", "/proc/self/status"]),
            None,
            0,
        );
        let ignored = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .expect("SigIgn line");
        assert_ne!(
            ignored & (1 << (libc::SIGCHLD - 1)),
            0,
            "the child lost the inherited SIG_IGN of SIGCHLD"
        );
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
        let dir = Dir::new("launcher");
        let mut launcher =
            start_signals_child(mode, &dir, &["--grace", "300ms"], &["--ignore-term"]);
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

/// agent-run supervising `test_child orphans`, which leaves `count` orphaned grandchildren
/// (re-parented to agent-run, exiting after 200 ms); returns once they are spawned.
fn start_orphans(mode: Mode, dir: &Dir, count: usize) -> common::Launcher {
    let log = dir.join("orphans.log");
    let launcher = agent_run(
        mode,
        [
            "--",
            test_child().to_str().unwrap(),
            "orphans",
            log.to_str().unwrap(),
            &count.to_string(),
        ],
    )
    .start(dir);
    wait_until(LONG, "orphans spawned", || {
        dir.read("orphans.log").contains("spawned")
    });
    launcher
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    for mode in MODES {
        let dir = Dir::new("launcher");
        let mut launcher = start_orphans(mode, &dir, 5);
        // The orphans (re-parented to agent-run) exit after 200 ms; none may stay a zombie.
        wait_until(LONG, "orphans to be re-parented and reaped", || {
            launcher.children().len() == 1 && zombies_of(launcher.pid).is_empty()
        });
        launcher.stop().assert_code(0);
    }
}

#[test]
fn stdin_and_50mb_stdout_pass_through() {
    let dir = Dir::new("launcher");
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
    let dir = Dir::new("launcher");
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
    let dir = Dir::new("launcher");
    let env_file = dir.write(
        ".env",
        "API_KEY=from-file\nSHARED=from-file\nOTHER=other-value\n",
    );
    let secrets = dir.join("secrets");
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
    let dir = Dir::new("launcher");
    for mode in MODES {
        let out = agent_run(mode, sh("env"))
            .env("AGENT_RUN_TOKEN", "avt_should_not_leak")
            .env("AGENT_RUN_SOMETHING_NEW", "x")
            .env("AGENT_RUN_GRACE", "2s")
            .run(&dir);
        out.assert_code(0);
        assert!(!out.stdout.contains("AGENT_RUN_"), "{}", out.description);
        assert!(!out.stdout.contains("avt_should_not_leak"));
    }
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let dir = Dir::new("launcher");
    let marker = dir.join("started");
    let touch = format!("touch {}", marker.display());
    let bad_name = dir.write("bad-name.env", "GOOD=1\n9LIVES=s3cr3t-bad-name\n");
    let bad_dir = dir.join("bad-dir");
    // `tls.crt` would be injected as TLS_CRT (the key rule); a leading digit stays invalid.
    dir.write("bad-dir/9tls.crt", "s3cr3t-cert");
    let nul_dir = dir.join("nul-dir");
    dir.write("nul-dir/TOKEN", b"s3cr3t\0tail");
    let unreadable = dir.join("missing.env");
    let good = dir.write("good.env", "A=s3cr3t-value\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--env-file".into(), bad_name.display().to_string()],
            "bad-name.env:2",
        ),
        (
            vec!["--secrets-dir".into(), bad_dir.display().to_string()],
            "9tls.crt",
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
    let dir = Dir::new("launcher");
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

/// `--once` retries a store that is down at start for `--start-timeout`, as supervised
/// mode does (it used to fail at once).
#[test]
fn once_honours_start_timeout() {
    for mode in MODES {
        let mut vault = common::vault::start_vault();
        vault.set("bot", "KEY", "once-value-0001");
        let (_, token) = vault.issue(&["secrets:read:bot/*"], Some(serde_json::json!("1h")));
        vault.kill9();
        let dir = Dir::new("once-timeout");
        let mut launcher = agent_run(
            mode,
            [
                "--once",
                "--store",
                &vault.addr,
                "--start-timeout",
                "60s",
                "--",
                "sh",
                "-c",
                "echo \"KEY=$KEY\"; exit 5",
            ],
        )
        .env("AGENT_RUN_TOKEN", &token)
        .start(&dir);
        wait_until(LONG, "agent-run --once to retry the store", || {
            launcher.stderr().contains("retrying until --start-timeout")
                || launcher.try_wait().is_some()
        });
        vault.start_again();
        let status = launcher.wait(Duration::from_secs(60));
        let out = launcher.outcome(status);
        out.assert_code(5);
        assert_eq!(
            out.stdout.trim(),
            "KEY=once-value-0001",
            "{}",
            out.description
        );
    }
}

/// `--once` gives the command the core-dump limit agent-run was given (agent-run sets its
/// own soft limit to 0).
#[test]
fn once_restores_the_core_limit() {
    let dir = Dir::new("once-core");
    let limit = 4096 * 1024;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, limit, limit).unwrap();
    for mode in MODES {
        let out = agent_run(
            mode,
            [
                "--once",
                "--",
                "sh",
                "-c",
                "grep 'Max core file size' /proc/$$/limits",
            ],
        )
        .run(&dir);
        out.assert_code(0);
        assert_eq!(
            out.stdout.split_whitespace().nth(4),
            Some("4194304"),
            "{}",
            out.description
        );
    }
}

#[test]
fn parent_death_signal_kills_the_child() {
    let dir = Dir::new("launcher");
    let launcher = start_signals_child(Mode::Plain, &dir, &[], &[]);
    let child = launcher.child();
    launcher.signal(Signal::SIGKILL);
    wait_until(LONG, "the orphaned child to die", || !alive(child));
}

#[test]
fn restart_policy_restarts_a_failing_child_with_backoff() {
    let dir = Dir::new("launcher");
    let log = dir.join("starts.log");
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
    let log = dir.join("ok.log");
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

/// Starts agent-run (with `flags`) on `app.env` holding `env`, running `test_child env-log`
/// for `keys` into `child.log`; returns once the first child has logged its start.
fn start_on_env_file(
    mode: Mode,
    dir: &Dir,
    env: &str,
    flags: &[&str],
    keys: &[&str],
) -> common::Launcher {
    let env_file = dir.write("app.env", env);
    let mut args: Vec<String> = vec!["--env-file".into(), env_file.display().to_string()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(env_log_child(&dir.join("child.log"), keys));
    let launcher = agent_run(mode, &args).start(dir);
    wait_until(LONG, "first start", || {
        dir.read("child.log").contains("start pid=")
    });
    launcher
}

#[test]
fn dotenv_edit_restarts_with_new_value_and_identical_content_does_not() {
    for mode in MODES {
        let dir = Dir::new("launcher");
        let mut launcher = start_on_env_file(mode, &dir, "API_KEY=v1\n", &[], &["API_KEY"]);

        // Same bytes, written in place and by rename-over-save: no restart.
        dir.write("app.env", "API_KEY=v1\n");
        dir.replace("app.env", "API_KEY=v1\n");
        // A real change, by an editor's rename-over-save.
        dir.replace("app.env", "API_KEY=v2\n");
        wait_until(LONG, "restart with v2", || {
            starts(&dir.read("child.log"), "API_KEY")
                .iter()
                .any(|(_, v)| v == "v2")
        });
        let log_text = dir.read("child.log");
        let starts = starts(&log_text, "API_KEY");
        assert_eq!(
            starts.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            ["v1", "v2"],
            "{log_text}"
        );
        // The old child got the stop signal before the new one started.
        let stop_line = format!("stop pid={} SIGTERM", starts[0].0);
        let stop_at = log_text.find(&stop_line).expect("old child got SIGTERM");
        assert!(
            stop_at < log_text.find("API_KEY=v2").unwrap(),
            "no overlap: old stopped before new started"
        );
        launcher.stop().assert_code(0);
    }
}

#[test]
fn kubelet_data_swap_restarts_the_child() {
    let dir = Dir::new("launcher");
    // The layout kubelet writes: KEY -> ..data/KEY, ..data -> ..<timestamp>/
    let volume = dir.join("volume");
    std::fs::create_dir_all(volume.join("..2026_01_01")).unwrap();
    std::fs::write(volume.join("..2026_01_01/DB_PASSWORD"), "first").unwrap();
    std::os::unix::fs::symlink("..2026_01_01", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/DB_PASSWORD", volume.join("DB_PASSWORD")).unwrap();
    let log = dir.join("child.log");
    let mut args = vec!["--secrets-dir".to_owned(), volume.display().to_string()];
    args.extend(env_log_child(&log, &["DB_PASSWORD"]));
    let mut launcher = agent_run(Mode::Plain, &args).start(&dir);
    wait_until(LONG, "first start", || {
        dir.read("child.log").contains("DB_PASSWORD=first")
    });

    // The atomic swap: new timestamped dir, new ..data_tmp link, rename over ..data.
    std::fs::create_dir_all(volume.join("..2026_01_02")).unwrap();
    std::fs::write(volume.join("..2026_01_02/DB_PASSWORD"), "second").unwrap();
    std::os::unix::fs::symlink("..2026_01_02", volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(volume.join("..2026_01_01")).unwrap();
    wait_until(LONG, "restart with the swapped value", || {
        dir.read("child.log").contains("DB_PASSWORD=second")
    });
    assert_eq!(starts(&dir.read("child.log"), "DB_PASSWORD").len(), 2);
    launcher.stop().assert_code(0);
}

#[test]
fn a_burst_of_edits_gives_one_restart() {
    let dir = Dir::new("launcher");
    let mut launcher =
        start_on_env_file(Mode::Plain, &dir, "V=0\n", &["--debounce", "400ms"], &["V"]);
    for i in 1..=20 {
        dir.replace("app.env", format!("V={i}\n"));
    }
    wait_until(LONG, "restart with the last value", || {
        dir.read("child.log").contains("V=20")
    });
    // One more change after the burst: if the burst had caused a second restart, it would
    // show up before this one.
    dir.replace("app.env", "V=final\n");
    wait_until(LONG, "restart with the final value", || {
        dir.read("child.log").contains("V=final")
    });
    let values: Vec<String> = starts(&dir.read("child.log"), "V")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["0", "20", "final"]);
    launcher.stop().assert_code(0);
}

#[test]
fn on_change_signal_keeps_the_child_and_signals_it() {
    let dir = Dir::new("launcher");
    let env_file = dir.write("app.env", "V=1\n");
    let mut launcher = start_signals_child(
        Mode::Plain,
        &dir,
        &[
            "--env-file",
            env_file.to_str().unwrap(),
            "--on-change",
            "signal:HUP",
        ],
        &[],
    );
    let child = launcher.child();
    dir.replace("app.env", "V=2\n");
    wait_until(LONG, "HUP after the change", || {
        dir.read("signals.log").contains("got SIGHUP")
    });
    assert_eq!(launcher.child(), child, "the child was not restarted");
    assert_eq!(lines_starting(&dir.read("signals.log"), "ready").len(), 1);
    launcher.stop().assert_code(0);
}

#[test]
fn signal_group_reaches_the_whole_process_group() {
    for (flag, grandchild_gets_it) in [(Some("--signal-group"), true), (None, false)] {
        let dir = Dir::new("signal-group");
        let (parent_log, grandchild_log) = (dir.join("parent.log"), dir.join("grandchild.log"));
        let tc = test_child().display().to_string();
        let script = format!(
            "{tc} signals {} & exec {tc} signals {}",
            grandchild_log.display(),
            parent_log.display()
        );
        let mut args: Vec<String> = flag.iter().map(|f| f.to_string()).collect();
        args.extend(sh(&script));
        let mut launcher = agent_run(Mode::Plain, &args).start(&dir);
        wait_until(LONG, "both ready", || {
            dir.read("parent.log").contains("ready") && dir.read("grandchild.log").contains("ready")
        });
        launcher.signal(Signal::SIGUSR1);
        wait_until(LONG, "the child got USR1", || {
            dir.read("parent.log").contains("got SIGUSR1")
        });
        if grandchild_gets_it {
            wait_until(LONG, "the grandchild got USR1", || {
                dir.read("grandchild.log").contains("got SIGUSR1")
            });
        }
        // A second signal the child logs after USR1: once it is there, USR1 had its chance
        // to reach the grandchild too.
        launcher.signal(Signal::SIGUSR2);
        wait_until(LONG, "the child got USR2", || {
            dir.read("parent.log").contains("got SIGUSR2")
        });
        assert_eq!(
            dir.read("grandchild.log").contains("got SIGUSR1"),
            grandchild_gets_it,
            "{flag:?}"
        );
        launcher.stop();
        // Without --signal-group the grandchild did not get TERM either: end it by its pid.
        let grandchild = dir.read("grandchild.log");
        if let Some(pid) = grandchild
            .lines()
            .find_map(|l| l.strip_prefix("ready pid="))
        {
            let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

#[test]
fn no_pdeathsig_leaves_the_child_running() {
    let dir = Dir::new("no-pdeathsig");
    let mut launcher = start_signals_child(Mode::Plain, &dir, &["--no-pdeathsig"], &[]);
    let child = launcher.child();
    launcher.signal(Signal::SIGKILL);
    launcher.wait(LONG);
    // With pdeathsig the kernel kills the child as agent-run exits; here it must stay.
    let until = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < until {
        assert!(
            alive(child),
            "the child died with agent-run despite --no-pdeathsig"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL).unwrap();
}

#[test]
fn on_change_exit_and_none() {
    // exit: the child is stopped and agent-run exits with its status.
    let dir = Dir::new("on-change-exit");
    let mut launcher =
        start_on_env_file(Mode::Plain, &dir, "V=1\n", &["--on-change", "exit"], &["V"]);
    dir.replace("app.env", "V=2\n");
    let status = launcher.wait(LONG);
    launcher.outcome(status).assert_code(0);
    assert!(dir.read("child.log").contains("SIGTERM"));
    assert_eq!(starts(&dir.read("child.log"), "V").len(), 1);

    // none: agent-run notes the change and leaves the child alone.
    let dir = Dir::new("on-change-none");
    let mut launcher = start_on_env_file(
        Mode::Plain,
        &dir,
        "V=1\n",
        &["-v", "--on-change", "none"],
        &["V"],
    );
    dir.replace("app.env", "V=2\n");
    wait_until(LONG, "the change to be noted", || {
        launcher.stderr().contains("secrets changed")
    });
    assert_eq!(starts(&dir.read("child.log"), "V").len(), 1);
    assert!(!dir.read("child.log").contains("stop"));
    launcher.stop().assert_code(0);
}

#[test]
fn json_logs_are_json_and_carry_no_values() {
    let dir = Dir::new("json-logs");
    let env_file = dir.write("app.env", "API_KEY=json-log-s3cr3t-value\n");
    let out = agent_run(
        Mode::Plain,
        [
            "--log-format",
            "json",
            "-vvv",
            "--env-file",
            env_file.to_str().unwrap(),
            "--",
            "true",
        ],
    )
    .run(&dir);
    out.assert_code(0);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("child started")),
        "{}",
        out.description
    );
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["fields"].is_object(),
            "{line}"
        );
    }
    assert!(!out.stderr.contains("json-log-s3cr3t-value"));
}

#[test]
fn an_environment_too_large_for_the_kernel_is_a_clear_error() {
    let dir = Dir::new("e2big");
    // 24 variables of 100 KiB: each under the per-string limit, together over ARG_MAX (2 MiB).
    // Two files, because one env file is capped at 2 MiB (refused before reading).
    let big = |range: std::ops::Range<usize>| -> String {
        range
            .map(|i| format!("BIG_{i}={}\n", "x".repeat(100 * 1024)))
            .collect()
    };
    let env_file = dir.write("big.env", big(0..12));
    let env_file2 = dir.write("big2.env", big(12..24));
    let marker = dir.join("started");
    let out = agent_run(
        Mode::Plain,
        [
            "--env-file",
            env_file.to_str().unwrap(),
            "--env-file",
            env_file2.to_str().unwrap(),
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("E2BIG"), "{}", out.description);
    assert!(!marker.exists());
}

/// A tmux session running an interactive bash, killed on drop.
struct Tmux(String);

impl Tmux {
    fn start() -> Tmux {
        let name = format!("agent-run-test-{}", std::process::id());
        let status = std::process::Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "200",
                "-y",
                "50",
                "env PS1='ready> ' bash --norc --noprofile -i",
            ])
            .status()
            .expect("tmux (scripts/test-all.sh installs it)");
        assert!(status.success());
        let tmux = Tmux(name);
        wait_until(LONG, "the shell prompt", || {
            tmux.screen().contains("ready>")
        });
        tmux
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        assert!(std::process::Command::new("tmux")
            .args(&args)
            .status()
            .unwrap()
            .success());
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn on_a_terminal_ctrl_c_ctrl_z_and_fg_work_as_without_agent_run() {
    let tmux = Tmux::start();
    let command = format!(
        "{} -- sh -c 'echo child-fg=$(ps -o tpgid= -p $$)/$(ps -o pgid= -p $$); sleep 100'",
        common::agent_run_bin()
    );
    tmux.keys(&[&command, "Enter"]);
    // The child's own line (the typed command line holds the text too, after the prompt).
    let child_line = |screen: &str| {
        screen
            .lines()
            .find(|l| l.starts_with("child-fg="))
            .map(str::to_owned)
    };
    wait_until(LONG, "the child to start", || {
        child_line(&tmux.screen()).is_some()
    });
    // The child's process group owns the terminal.
    let line = child_line(&tmux.screen()).unwrap();
    let (foreground, own) = line
        .trim_start_matches("child-fg=")
        .split_once('/')
        .unwrap();
    assert_eq!(
        foreground.trim(),
        own.trim(),
        "the child is not the terminal's foreground group: {line}"
    );

    tmux.keys(&["C-z"]);
    wait_until(LONG, "the shell to report the job stopped", || {
        tmux.screen().contains("Stopped")
    });
    tmux.keys(&["fg", "Enter"]);
    wait_until(LONG, "fg to resume the job", || {
        tmux.screen().matches("agent-run -- sh -c").count() >= 3
    });
    tmux.keys(&["C-c"]);
    tmux.keys(&["echo rc=$?", "Enter"]);
    wait_until(LONG, "Ctrl-C to end the child, code passed through", || {
        tmux.screen().contains("rc=130")
    });
}

/// "Max core file size" soft limit from /proc/PID/limits.
fn core_soft_limit(pid: i32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_owned();
    line.split_whitespace().nth(4).unwrap().to_owned()
}

#[test]
fn agent_run_dumps_no_core_but_the_child_keeps_its_limits() {
    let dir = Dir::new("core-limit");
    // A known, non-zero limit (inherited by agent-run) so "restored" differs from "zero".
    let limit = 4096 * 1024;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, limit, limit).unwrap();
    let mut launcher = start_signals_child(Mode::Plain, &dir, &[], &[]);
    let child = launcher.child();
    assert_eq!(
        core_soft_limit(launcher.pid),
        "0",
        "agent-run itself must not dump core"
    );
    assert_eq!(
        core_soft_limit(child),
        "4194304",
        "the child gets the limit agent-run was given"
    );
    launcher.stop().assert_code(0);
}

// ---- a source that hangs never holds up PID 1's duties (issue 11, items 3 and 5) ----------

/// A real agent-vault with `KEY` for agent `bot`, a freezing proxy in front of it, and a
/// read token for the agent.
fn frozen_store_setup() -> (
    common::vault::VaultServer,
    common::proxy::FreezingProxy,
    String,
) {
    let vault = common::vault::start_vault();
    vault.set("bot", "KEY", "first-value-0001");
    let (_, token) = vault.issue(&["secrets:read:bot/*"], Some(serde_json::json!("1h")));
    let proxy = common::proxy::FreezingProxy::start(&vault.addr, common::proxy::FETCH_PATH);
    (vault, proxy, token)
}

/// agent-run on the proxied store, supervising `test_child signals` with `child_flags`.
fn start_on_store(
    mode: Mode,
    dir: &Dir,
    proxy: &common::proxy::FreezingProxy,
    token: &str,
    flags: &[&str],
    child_flags: &[&str],
) -> common::Launcher {
    let mut args: Vec<String> = vec!["--store".into(), proxy.addr.clone()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(signals_child(&dir.join("signals.log")));
    args.extend(child_flags.iter().map(|f| f.to_string()));
    agent_run(mode, &args)
        .env("AGENT_RUN_TOKEN", token)
        .start(dir)
}

/// Freezes the store's answers, rotates the secret and waits until agent-run's fetch of the
/// new values hangs in the proxy.
fn hang_a_fetch(vault: &common::vault::VaultServer, proxy: &common::proxy::FreezingProxy) {
    proxy.freeze();
    vault.set("bot", "KEY", "rotated-value-0002");
    wait_until(LONG, "agent-run's fetch to hang in the proxy", || {
        proxy.held() >= 1
    });
}

#[test]
fn signals_are_forwarded_and_zombies_reaped_while_a_fetch_hangs() {
    for mode in MODES {
        let (vault, proxy, token) = frozen_store_setup();
        let dir = Dir::new("frozen");
        let mut launcher = start_on_store(
            mode,
            &dir,
            &proxy,
            &token,
            &["--grace", "60s"],
            &["--orphan-on-usr2", "--ignore-term"],
        );
        wait_until(LONG, "child ready", || {
            dir.read("signals.log").contains("ready")
        });
        hang_a_fetch(&vault, &proxy);

        launcher.signal(Signal::SIGUSR1);
        wait_until(LONG, "SIGUSR1 to reach the child", || {
            dir.read("signals.log").contains("got SIGUSR1")
        });
        assert!(
            proxy.held() >= 1,
            "SIGUSR1 was forwarded only after the fetch ended\n{}",
            launcher.describe(None)
        );

        // A grandchild orphaned to agent-run exits: it must be reaped, not left a zombie
        // until the fetch returns.
        launcher.signal(Signal::SIGUSR2);
        wait_until(LONG, "the orphan to be made", || {
            dir.read("signals.log").contains("orphaned")
        });
        wait_until(LONG, "the orphan to exit and be reaped", || {
            launcher.children().len() == 1 && zombies_of(launcher.pid).is_empty()
        });
        assert!(
            proxy.held() >= 1,
            "the orphan was reaped only after the fetch ended\n{}",
            launcher.describe(None)
        );

        // The child ignores TERM, so agent-run is still there (with its fetch) to check.
        let child = launcher.child();
        launcher.signal(Signal::SIGTERM);
        wait_until(LONG, "SIGTERM to reach the child", || {
            dir.read("signals.log").contains("got SIGTERM")
        });
        assert!(
            proxy.held() >= 1,
            "SIGTERM was forwarded only after the fetch ended\n{}",
            launcher.describe(None)
        );
        kill_by_number(child, libc::SIGKILL);
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(137);
        assert!(
            !out.stderr.contains("cannot re-read secrets"),
            "agent-run waited for the hanging fetch before exiting\n{}",
            out.description
        );
    }
}

#[test]
fn sigterm_ends_a_start_that_waits_on_a_frozen_store() {
    for mode in MODES {
        let (_vault, proxy, token) = frozen_store_setup();
        proxy.freeze();
        let dir = Dir::new("frozen-start");
        let mut launcher =
            start_on_store(mode, &dir, &proxy, &token, &["--start-timeout", "60s"], &[]);
        wait_until(LONG, "the first fetch to hang in the proxy", || {
            proxy.held() >= 1
        });
        launcher.signal(Signal::SIGTERM);
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(143);
        assert!(
            !out.stderr.contains("cannot fetch secrets yet"),
            "agent-run waited for the hanging fetch to fail before acting on SIGTERM\n{}",
            out.description
        );
        assert!(dir.read("signals.log").is_empty(), "a child was started");
    }
}

#[test]
fn start_timeout_is_honoured_while_the_store_hangs() {
    for mode in MODES {
        let (_vault, proxy, token) = frozen_store_setup();
        proxy.freeze();
        let dir = Dir::new("frozen-timeout");
        let mut launcher = start_on_store(
            mode,
            &dir,
            &proxy,
            &token,
            &["--start-timeout", "500ms"],
            &[],
        );
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--start-timeout"),
            "the error does not name --start-timeout\n{}",
            out.description
        );
        assert!(
            !out.stderr.contains("cannot fetch secrets yet"),
            "agent-run waited for the hanging fetch to fail\n{}",
            out.description
        );
        assert!(dir.read("signals.log").is_empty(), "a child was started");
    }
}

#[test]
fn a_child_exit_during_a_change_decides_first() {
    for mode in MODES {
        let (vault, proxy, token) = frozen_store_setup();
        let dir = Dir::new("exit-during-change");
        let mut launcher = start_on_store(
            mode,
            &dir,
            &proxy,
            &token,
            &["--restart", "no"],
            &["--exit-on-usr1", "7"],
        );
        wait_until(LONG, "child ready", || {
            dir.read("signals.log").contains("ready")
        });
        let child = launcher.child();
        hang_a_fetch(&vault, &proxy);
        // The child exits by itself while the change is being read...
        kill_by_number(child, libc::SIGUSR1);
        wait_until(LONG, "the child to exit", || !alive(child));
        // ...and only then does the read finish.
        proxy.thaw();
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(7);
        assert_eq!(
            lines_starting(&dir.read("signals.log"), "ready").len(),
            1,
            "the child was restarted despite --restart no\n{}",
            out.description
        );
    }
}

// ---- the peers' own suites, adapted (tini's test/ and dumb-init's tests/) -----------------

/// dumb-init's `test_proxies_signals`, over every signal number: everything a process can
/// send (except KILL and STOP, CHLD which is the supervisor's own, and glibc's two internal
/// real-time signals, which the test child cannot block) reaches the child.
#[test]
fn peers_every_signal_number_reaches_the_child() {
    let skip = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGTERM,
        32,
        33,
    ];
    for mode in MODES {
        let dir = Dir::new("peers");
        let mut launcher = start_signals_child(mode, &dir, &["--grace", "60s"], &[]);
        for signo in (1..=64).filter(|s| !skip.contains(s)) {
            kill_by_number(launcher.pid, signo);
            let expected = format!("got {}", common_signal_name(signo));
            wait_until(LONG, &expected, || {
                dir.read("signals.log").lines().any(|l| l == expected)
            });
        }
        launcher.stop().assert_code(0);
    }
}

/// The name test_child logs for `signo`.
fn common_signal_name(signo: i32) -> String {
    Signal::try_from(signo)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("SIG{signo}"))
}

/// dumb-init's `test_exit_status` and tini's exit-code checks: a child that dies of a signal
/// — one it raised, a fault of its own, or the TERM agent-run forwarded — gives 128+N, and
/// agent-run itself exits normally with that code.
#[test]
fn peers_exit_status_of_a_signal_death_is_128_plus_n() {
    let dir = Dir::new("peers");
    for mode in MODES {
        for (signal, code) in [
            ("HUP", 129),
            ("INT", 130),
            ("QUIT", 131),
            ("ABRT", 134),
            ("SEGV", 139),
            ("PIPE", 141),
            ("ALRM", 142),
        ] {
            // `ulimit -c 0`: a signal death with a core action must not leave core files.
            let out = agent_run(mode, sh(&format!("ulimit -c 0; kill -{signal} $$"))).run(&dir);
            out.assert_code(code);
        }
        // A real fault of the child (not a signal sent to it), with no core file left.
        let out = agent_run(
            mode,
            [
                "--",
                "python3",
                "-c",
                "import ctypes, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); ctypes.string_at(0)",
            ],
        )
        .run(&dir);
        out.assert_code(139);
        // The TERM agent-run forwards, to a child that keeps TERM's default action.
        let mut launcher = agent_run(mode, ["--", "sleep", "1000"]).start(&dir);
        launcher.child();
        launcher.signal(Signal::SIGTERM);
        launcher.stop().assert_code(143);
    }
}

/// tini exits when its child exits, without waiting for grandchildren that are still
/// running (as PID 1 the namespace's end kills them; otherwise they are re-parented).
#[test]
fn peers_agent_run_exits_with_the_child_while_grandchildren_run() {
    for mode in MODES {
        let dir = Dir::new("peers");
        let release = dir.join("release");
        let done = dir.join("done");
        let script = format!(
            "(while [ ! -e {r} ]; do sleep 0.02; done; touch {d}) >/dev/null 2>&1 & exit 4",
            r = release.display(),
            d = done.display()
        );
        let out = agent_run(mode, sh(&script)).run(&dir);
        out.assert_code(4);
        assert!(!done.exists(), "agent-run waited for its grandchild");
        std::fs::write(&release, "").unwrap();
        if mode == Mode::Plain {
            wait_until(LONG, "the grandchild to finish", || done.exists());
        }
    }
}

/// tini's reaping test at scale: a burst of orphans, all reaped, none left a zombie.
#[test]
fn peers_a_burst_of_orphans_is_reaped() {
    for mode in MODES {
        let dir = Dir::new("peers");
        let mut launcher = start_orphans(mode, &dir, 40);
        wait_until(LONG, "every orphan to be reaped", || {
            launcher.children().len() == 1 && zombies_of(launcher.pid).is_empty()
        });
        launcher.stop().assert_code(0);
    }
}

/// dumb-init's process-group behaviour, for a restart: with `--signal-group` the stop signal
/// of a restart on change reaches a process the child forked with the child; without it
/// only the child's PID is signalled first, and what is left of its group gets the stop
/// signal once the child has exited (issue 16: no overlap on restart), before the new child
/// starts (README, restart section).
#[test]
fn peers_a_restart_stops_the_process_group_with_or_after_the_child() {
    for (mode, group) in [
        (Mode::Plain, true),
        (Mode::Pid1, true),
        (Mode::Plain, false),
    ] {
        let dir = Dir::new("restart-group");
        let env_file = dir.write("app.env", "A=1\n");
        let (parent_log, grandchild_log) = (dir.join("parent.log"), dir.join("grandchild.log"));
        let tc = test_child().display().to_string();
        let script = format!(
            "{tc} signals {} & exec {tc} signals {}",
            grandchild_log.display(),
            parent_log.display()
        );
        let mut args: Vec<String> = vec!["--env-file".into(), env_file.display().to_string()];
        if group {
            args.push("--signal-group".into());
        }
        args.extend(sh(&script));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "child and grandchild ready", || {
            dir.read("parent.log").contains("ready") && dir.read("grandchild.log").contains("ready")
        });
        dir.replace("app.env", "A=2\n");
        wait_until(LONG, "the restarted child", || {
            lines_starting(&dir.read("parent.log"), "ready").len() == 2
        });
        let first_grandchild: i32 = lines_starting(&dir.read("grandchild.log"), "ready pid=")[0]
            ["ready pid=".len()..]
            .trim()
            .parse()
            .unwrap();
        wait_until(LONG, "the forked process to get the stop signal", || {
            dir.read("grandchild.log").contains("got SIGTERM")
        });
        if mode == Mode::Plain {
            // The new child started only once the old group was gone.
            assert!(
                !alive(first_grandchild),
                "the old group outlived the restart"
            );
        }
        launcher.stop();
        // Whatever is left of the forked processes (plain mode: re-parented away).
        for line in lines_starting(&dir.read("grandchild.log"), "ready pid=") {
            if let Ok(pid) = line["ready pid=".len()..].trim().parse::<i32>() {
                if mode == Mode::Plain {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

// ---- `--check` refuses exactly what a run refuses (issue 12, item 4) ----------------------

/// The one error line agent-run printed (`agent-run: …`), without the log lines around it.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| line.starts_with("agent-run: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_refuses_every_input_a_run_refuses() {
    let dir = Dir::new("check-equals-run");
    let env_file = dir.write("app.env", "API_KEY=sk-live-abcdefgh\n");
    dir.write("nul/TOKEN_WITH_NUL", b"ab\0cd");
    // `not-a-name` is mapped to NOT_A_NAME (issue 14 item 1); no rule maps a leading digit.
    dir.write("bad/9not-a-name", "value");
    let env_file = env_file.to_str().unwrap().to_owned();
    let nul_dir = dir.join("nul").to_str().unwrap().to_owned();
    let bad_dir = dir.join("bad").to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("a NUL byte in a value", vec!["--secrets-dir", &nul_dir]),
        ("an invalid secret name", vec!["--secrets-dir", &bad_dir]),
        (
            "a missing @REF",
            vec!["--env-file", &env_file, "--env", "X=@NO_SUCH_SECRET"],
        ),
        (
            "an invalid --env name",
            vec!["--env-file", &env_file, "--env", "1BAD=value"],
        ),
        (
            "a reserved AGENT_RUN_* name",
            vec!["--env-file", &env_file, "--env", "AGENT_RUN_X=value"],
        ),
        (
            "a credential name let through as reserved",
            vec!["--env-file", &env_file, "--allow-env", "AGENT_RUN_TOKEN"],
        ),
    ];
    for mode in MODES {
        for (what, flags) in &cases {
            let mut run_args = flags.clone();
            run_args.extend(["--", "true"]);
            let run = agent_run(mode, &run_args).run(&dir);
            let mut check_args = vec!["--check"];
            check_args.extend(flags.iter().copied());
            check_args.extend(["--", "true"]);
            let check = agent_run(mode, &check_args).run(&dir);
            assert_ne!(
                run.code,
                Some(0),
                "a run accepted {what}\n{}",
                run.description
            );
            assert_eq!(
                check.code, run.code,
                "--check and a run end differently on {what}\nrun: {}\ncheck: {}",
                run.description, check.description
            );
            assert!(
                !error_line(&run.stderr).is_empty(),
                "no error line for {what}\n{}",
                run.description
            );
            assert_eq!(
                error_line(&check.stderr),
                error_line(&run.stderr),
                "--check and a run say different things on {what}"
            );
            assert!(
                !check.stdout.contains("sk-live") && !check.stdout.contains("API_KEY"),
                "--check printed rows for refused input ({what})\n{}",
                check.description
            );
        }
    }
}
