//! Issue 16 item 5: `--remap-exit` (tini's `-e`) and `--rewrite-signal` (dumb-init's
//! `--rewrite`), with real children and real signals, plainly and as PID 1. The remap
//! touches the child's status only, never agent-run's own 125/126/127; the rewrite touches
//! forwarded signals only, never the stop signal of a restart.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{agent_run, lines_starting, sh, start_signals_child, wait_until, Dir, MODES};

const LONG: Duration = Duration::from_secs(15);

#[test]
fn remap_exit_changes_the_childs_status_only() {
    for mode in MODES {
        let dir = Dir::new("remap-exit");
        let remap = |script: &str| {
            let mut args = vec!["--remap-exit".to_owned(), "143:0".into()];
            args.extend(["--remap-exit".to_owned(), "3:9".into()]);
            args.extend(sh(script));
            agent_run(mode, args).run(&dir)
        };
        remap("exit 3").assert_code(9);
        remap("exit 4").assert_code(4);
        remap("kill -TERM $$").assert_code(0);
        remap("kill -KILL $$").assert_code(137);
        // The variable, comma-separated, as a container would set it.
        agent_run(mode, sh("exit 5"))
            .env("AGENT_RUN_REMAP_EXIT", "5:0,6:1")
            .run(&dir)
            .assert_code(0);

        // The JVM case: `docker stop` sends TERM, the child dies of it, the job succeeded.
        let mut launcher = agent_run(
            mode,
            ["--remap-exit", "143:0", "--", "sh", "-c", "exec sleep 1000"],
        )
        .start(&dir);
        launcher.child();
        launcher.signal(Signal::SIGTERM);
        let status = launcher.wait(LONG);
        launcher.outcome(status).assert_code(0);

        // agent-run's own codes are never remapped, even when asked to.
        let own = [
            "--remap-exit",
            "127:0",
            "--remap-exit",
            "126:0",
            "--remap-exit",
            "125:0",
        ];
        let run = |extra: &[&str]| {
            let mut args: Vec<&str> = own.to_vec();
            args.extend_from_slice(extra);
            agent_run(mode, args).run(&dir)
        };
        run(&["--", "/nonexistent/program"]).assert_code(127);
        let not_executable = dir.write("not-executable", "#!/bin/sh\nexit 0\n");
        run(&["--", not_executable.to_str().unwrap()]).assert_code(126);
        run(&["--env-file", "/nonexistent/app.env", "--", "true"]).assert_code(125);
    }
}

/// A restart whose exec fails (the program was removed) ends agent-run with 127, its own
/// code for "command not found", not with the remapped one.
#[test]
fn remap_exit_leaves_a_failed_exec_on_restart_alone() {
    for mode in MODES {
        let dir = Dir::new("remap-exit-restart");
        let env_file = dir.write("app.env", "V=1\n");
        let log = dir.join("started.log");
        let script = dir.write(
            "app.sh",
            format!(
                "#!/bin/sh\nrm -f \"$0\"\necho started >> '{}'\nexec sleep 1000\n",
                log.display()
            ),
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut launcher = agent_run(
            mode,
            [
                "--env-file",
                env_file.to_str().unwrap(),
                "--remap-exit",
                "127:0",
                "--",
                script.to_str().unwrap(),
            ],
        )
        .start(&dir);
        wait_until(LONG, "first start", || {
            dir.read("started.log").contains("started")
        });
        dir.replace("app.env", "V=2\n");
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(127);
        assert!(
            out.stderr.contains("command not found"),
            "{}",
            out.description
        );
    }
}

#[test]
fn rewrite_signal_changes_forwarded_signals_but_not_the_stop_signal() {
    for mode in MODES {
        let dir = Dir::new("rewrite-signal");
        let env_file = dir.write("app.env", "V=1\n");
        let mut launcher = start_signals_child(
            mode,
            &dir,
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "--rewrite-signal",
                "TERM:QUIT",
                "--rewrite-signal",
                "HUP:USR2",
                "--grace",
                "1s",
            ],
            &[],
        );
        launcher.signal(Signal::SIGHUP);
        launcher.signal(Signal::SIGUSR1);
        wait_until(LONG, "HUP as USR2, USR1 as is", || {
            let log = dir.read("signals.log");
            log.contains("got SIGUSR2") && log.contains("got SIGUSR1")
        });
        assert!(!dir.read("signals.log").contains("got SIGHUP"));

        // A restart on change stops the child with --stop-signal (TERM), not the rewrite.
        dir.replace("app.env", "V=2\n");
        wait_until(LONG, "the restarted child", || {
            lines_starting(&dir.read("signals.log"), "ready").len() == 2
        });
        let log = dir.read("signals.log");
        let first_life = &log[..log.rfind("ready").unwrap()];
        assert!(first_life.contains("got SIGTERM"), "{log}");
        assert!(!first_life.contains("got SIGQUIT"), "{log}");

        // TERM to agent-run reaches the child as QUIT, which it survives; TERM still means
        // "stop, do not restart": the grace runs out, SIGKILL, agent-run exits 137.
        launcher.signal(Signal::SIGTERM);
        let status = launcher.wait(LONG);
        let out = launcher.outcome(status);
        out.assert_code(137);
        let log = dir.read("signals.log");
        let second_life = &log[log.rfind("ready").unwrap()..];
        assert!(second_life.contains("got SIGQUIT"), "{log}");
        assert!(!second_life.contains("got SIGTERM"), "{log}");
        assert_eq!(lines_starting(&log, "ready").len(), 2, "{log}");
    }
}

#[test]
fn bad_remaps_and_rewrites_are_refused_before_anything_starts() {
    let dir = Dir::new("remap-refused");
    let marker = dir.join("ran");
    let command = ["--", "touch", marker.to_str().unwrap()];
    for (flag, value) in [
        ("--remap-exit", "143"),
        ("--remap-exit", "256:0"),
        ("--remap-exit", "143:zero"),
        ("--rewrite-signal", "TERM"),
        ("--rewrite-signal", "CHLD:TERM"),
        ("--rewrite-signal", "KILL:TERM"),
        ("--rewrite-signal", "TERM:NOPE"),
    ] {
        let mut args = vec![flag, value];
        args.extend_from_slice(&command);
        let out = agent_run(MODES[0], args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(value),
            "{flag} {value}: {}",
            out.description
        );
        assert!(!marker.exists(), "{flag} {value}: the command ran");
    }
    // Twice the same FROM, and --once (which forwards nothing and has no child status).
    for args in [
        vec!["--remap-exit", "1:0", "--remap-exit", "1:2"],
        vec!["--rewrite-signal", "TERM:QUIT,15:HUP"],
        vec!["--once", "--remap-exit", "143:0"],
        vec!["--once", "--rewrite-signal", "TERM:QUIT"],
    ] {
        let mut args = args.clone();
        args.extend_from_slice(&command);
        let out = agent_run(MODES[0], &args).run(&dir);
        out.assert_code(125);
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
}
