//! Issue 16, the restart itself: no overlap with the old child's process group (item 6) and
//! the restart budget (item 8).
//! Real children that fork a worker holding a TCP port, real rotations (env-file edits),
//! plainly and as PID 1 of a new PID namespace.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{
    agent_run, alive, lines_starting, start_signals_child, test_child, wait_until, Dir, Mode, MODES,
};

const LONG: Duration = Duration::from_secs(20);

/// The child: forks a worker (same process group) that binds 127.0.0.1:PORT and logs
/// `bound pid=P` or `failed pid=P …`, then logs `start pid=P V=…` itself and waits to be
/// stopped. The worker drains for 200 ms on TERM (`drain`) or ignores it (`ignore-term`);
/// with `crash` the child exits 1 after the worker bound, until the log has 5 starts.
const APP: &str = r#"
import os, signal, socket, sys, time
log, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def write(line):
    with open(log, "a") as f:
        f.write(line + "\n")
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        write(f"bound pid={os.getpid()}")
    except OSError as e:
        write(f"failed pid={os.getpid()} {e}")
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), os._exit(0)))
    os.write(w, b"x")
    os.close(w)
    while True:
        signal.pause()
os.close(w)
os.read(r, 1)
write(f"start pid={os.getpid()} V={os.environ.get('V')}")
if mode == "crash" and sum(l.startswith("start") for l in open(log)) < 5:
    sys.exit(1)
while True:
    signal.pause()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts agent-run with `flags` on `app.env` (V=0) running APP in `mode`; returns once
/// the first child has started.
fn start_app(mode: Mode, dir: &Dir, app_mode: &str, flags: &[&str]) -> crate::common::Launcher {
    let env_file = dir.write("app.env", "V=0\n");
    let app = dir.write("app.py", APP);
    let port = free_port().to_string();
    let log = dir.join("app.log");
    let mut args: Vec<String> = vec!["--env-file".into(), env_file.display().to_string()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(
        [
            "--",
            "python3",
            app.to_str().unwrap(),
            log.to_str().unwrap(),
            &port,
            app_mode,
        ]
        .map(str::to_owned),
    );
    let launcher = agent_run(mode, &args).start(dir);
    wait_until(LONG, "first start", || {
        dir.read("app.log").contains("start pid=")
    });
    launcher
}

/// Workers left behind (plain mode: a worker that never got a signal is re-parented away
/// when agent-run exits; as PID 1 the namespace ends them).
fn kill_workers(mode: Mode, dir: &Dir) {
    if mode != Mode::Plain {
        return;
    }
    for line in dir.read("app.log").lines() {
        let pid = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .and_then(|p| p.parse::<i32>().ok());
        if let (true, Some(pid)) = (line.starts_with("bound") || line.starts_with("failed"), pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn assert_every_start_bound(dir: &Dir, starts: usize) {
    let log = dir.read("app.log");
    assert!(lines_starting(&log, "failed").is_empty(), "{log}");
    assert_eq!(lines_starting(&log, "bound").len(), starts, "{log}");
    assert_eq!(lines_starting(&log, "start").len(), starts, "{log}");
}

/// envconsul started the new child while the old one's worker still held the port: here
/// every one of 20 rotations binds it, with and without `--signal-group`.
#[test]
fn a_restart_waits_for_the_old_process_group_to_be_gone() {
    for mode in MODES {
        for group in [false, true] {
            let dir = Dir::new("restart-no-overlap");
            let flags: &[&str] = if group { &["--signal-group"] } else { &[] };
            let mut launcher = start_app(mode, &dir, "drain", flags);
            for i in 1..=20 {
                dir.replace("app.env", format!("V={i}\n"));
                let expected = format!(" V={i}");
                wait_until(LONG, &format!("start {i}"), || {
                    dir.read("app.log").contains(&expected)
                });
            }
            launcher.stop();
            kill_workers(mode, &dir);
            assert_every_start_bound(&dir, 21);
        }
    }
}

/// A worker that ignores the stop signal is SIGKILLed when `--grace` runs out, and only
/// then does the new child start.
#[test]
fn a_worker_ignoring_the_stop_signal_is_killed_after_the_grace() {
    for mode in MODES {
        let dir = Dir::new("restart-worker-killed");
        let mut launcher = start_app(mode, &dir, "ignore-term", &["--grace", "1s"]);
        let first_worker: i32 = lines_starting(&dir.read("app.log"), "bound pid=")[0]
            ["bound pid=".len()..]
            .trim()
            .parse()
            .unwrap();
        dir.replace("app.env", "V=1\n");
        wait_until(LONG, "the restarted child", || {
            dir.read("app.log").contains(" V=1")
        });
        if mode == Mode::Plain {
            assert!(!alive(first_worker), "the old worker outlived the restart");
        }
        launcher.stop();
        kill_workers(mode, &dir);
        assert_every_start_bound(&dir, 2);
        assert!(
            launcher.stderr().contains("sending SIGKILL"),
            "{}",
            launcher.stderr()
        );
    }
}

/// A crash restart (`--restart on-failure`) waits for the crashed child's group as well.
#[test]
fn a_crash_restart_waits_for_the_old_process_group_too() {
    for mode in MODES {
        let dir = Dir::new("restart-crash-no-overlap");
        let mut launcher = start_app(mode, &dir, "crash", &["--restart", "on-failure"]);
        wait_until(LONG, "five starts", || {
            lines_starting(&dir.read("app.log"), "start").len() == 5
        });
        launcher.stop();
        kill_workers(mode, &dir);
        assert_every_start_bound(&dir, 5);
    }
}

// ---- item 8: the restart budget (--max-restarts N --within D) ---------------------------

/// A child that crashes in a loop is restarted N times, then agent-run exits with its code
/// and says why.
#[test]
fn a_crash_loop_stops_after_max_restarts_with_the_childs_code() {
    for mode in MODES {
        let dir = Dir::new("restart-budget");
        let log = dir.join("crash.log");
        let out = agent_run(
            mode,
            [
                "--restart",
                "on-failure",
                "--max-restarts",
                "3",
                "--",
                test_child().to_str().unwrap(),
                "exit-after",
                log.to_str().unwrap(),
                "7",
            ],
        )
        .run(&dir);
        out.assert_code(7);
        assert_eq!(lines_starting(&dir.read("crash.log"), "start").len(), 4);
        assert!(
            out.stderr.contains("restart budget spent") && out.stderr.contains("--max-restarts"),
            "{}",
            out.description
        );
    }
}

/// `--within` counts only recent restarts: with a window shorter than the first backoff
/// (100 ms), no two restarts are ever in it, so one allowed restart is enough for ever.
/// Without the window the same budget ends the loop after one restart.
#[test]
fn within_counts_only_the_restarts_of_the_window() {
    let dir = Dir::new("restart-budget-window");
    let log = dir.join("crash.log");
    let tc = test_child().display().to_string();
    let mut launcher = agent_run(
        Mode::Plain,
        [
            "--restart",
            "on-failure",
            "--max-restarts",
            "1",
            "--within",
            "50ms",
            "--",
            &tc,
            "exit-after",
            log.to_str().unwrap(),
            "7",
        ],
    )
    .start(&dir);
    wait_until(LONG, "five starts", || {
        lines_starting(&dir.read("crash.log"), "start").len() >= 5
    });
    launcher.stop();

    let log = dir.join("crash-no-window.log");
    agent_run(
        Mode::Plain,
        [
            "--restart",
            "on-failure",
            "--max-restarts",
            "1",
            "--",
            &tc,
            "exit-after",
            log.to_str().unwrap(),
            "7",
        ],
    )
    .run(&dir)
    .assert_code(7);
    assert_eq!(
        lines_starting(&dir.read("crash-no-window.log"), "start").len(),
        2
    );
}

/// Restarts on a secret change are not crashes: they do not spend the budget.
#[test]
fn rotation_restarts_do_not_spend_the_budget() {
    for mode in MODES {
        let dir = Dir::new("restart-budget-rotation");
        let env_file = dir.write("app.env", "V=0\n");
        let mut launcher = start_signals_child(
            mode,
            &dir,
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "--restart",
                "on-failure",
                "--max-restarts",
                "1",
            ],
            &["--exit-on-usr1", "3"],
        );
        for i in 1..=3 {
            dir.replace("app.env", format!("V={i}\n"));
            wait_until(LONG, &format!("rotation {i}"), || {
                lines_starting(&dir.read("signals.log"), "ready").len() == i + 1
            });
        }
        // The first crash is restarted (the budget is 1), the second ends agent-run.
        launcher.signal(Signal::SIGUSR1);
        wait_until(LONG, "the crash restart", || {
            lines_starting(&dir.read("signals.log"), "ready").len() == 5
        });
        launcher.signal(Signal::SIGUSR1);
        let status = launcher.wait(LONG);
        launcher.outcome(status).assert_code(3);
        assert_eq!(lines_starting(&dir.read("signals.log"), "ready").len(), 5);
    }
}

#[test]
fn a_budget_without_restarts_or_a_window_without_a_budget_is_refused() {
    let dir = Dir::new("restart-budget-refused");
    for args in [
        vec!["--max-restarts", "3", "--", "true"],
        vec!["--restart", "always", "--within", "10m", "--", "true"],
        vec!["--restart", "always", "--max-restarts", "x", "--", "true"],
        vec![
            "--restart",
            "always",
            "--max-restarts",
            "3",
            "--within",
            "soon",
            "--",
            "true",
        ],
    ] {
        let out = agent_run(Mode::Plain, &args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--max-restarts") || out.stderr.contains("--within"),
            "{args:?}: {}",
            out.description
        );
    }
}

// ---- item 4: staggered restarts (--restart-jitter) --------------------------------------

/// `start NANOS V=…` lines of a `test_child stamp` log, as (nanoseconds, value).
fn stamps(log: &str) -> Vec<(u128, String)> {
    lines_starting(log, "start ")
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let nanos = words.next()?.parse().ok()?;
            let value = words.next()?.strip_prefix("V=")?.to_owned();
            Some((nanos, value))
        })
        .collect()
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// 20 launchers on one env file, `--restart-jitter 0-4s`: after one change each restarts
/// once, none before the change, and the restarts spread over the range instead of landing
/// together (20 uniform draws in 4 s all within 1 s: probability below 1e-10).
#[test]
fn restarts_after_one_change_are_spread_over_the_jitter() {
    let dir = Dir::new("restart-jitter");
    let env_file = dir.write("app.env", "V=1\n");
    let tc = test_child().display().to_string();
    let mut launchers: Vec<_> = (0..20)
        .map(|i| {
            let log = dir.join(&format!("child-{i}.log"));
            agent_run(
                Mode::Plain,
                [
                    "--env-file",
                    env_file.to_str().unwrap(),
                    "--restart-jitter",
                    "0-4s",
                    "--",
                    &tc,
                    "stamp",
                    log.to_str().unwrap(),
                    "V",
                ],
            )
            .start(&dir)
        })
        .collect();
    for i in 0..20 {
        wait_until(LONG, "every first start", || {
            dir.read(&format!("child-{i}.log")).contains("V=1")
        });
    }
    let changed_at = now_nanos();
    dir.replace("app.env", "V=2\n");
    let mut restarted_at = Vec::new();
    for i in 0..20 {
        let name = format!("child-{i}.log");
        wait_until(LONG, "every restart", || dir.read(&name).contains("V=2"));
        let starts = stamps(&dir.read(&name));
        let values: Vec<&str> = starts.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["1", "2"], "launcher {i}: one restart");
        assert!(
            starts[1].0 > changed_at,
            "launcher {i} restarted before the change"
        );
        restarted_at.push(starts[1].0);
    }
    let spread = restarted_at.iter().max().unwrap() - restarted_at.iter().min().unwrap();
    assert!(
        spread > 1_000_000_000,
        "the 20 restarts landed within {} ms",
        spread / 1_000_000
    );
    for launcher in &mut launchers {
        launcher.stop().assert_code(0);
    }
}

/// A newer change during the wait joins the same restart: one restart, with the newest value.
#[test]
fn a_change_during_the_jitter_joins_the_same_restart() {
    for mode in MODES {
        let dir = Dir::new("restart-jitter-join");
        let env_file = dir.write("app.env", "V=0\n");
        let log = dir.join("child.log");
        let tc = test_child().display().to_string();
        let mut launcher = agent_run(
            mode,
            [
                "-v",
                "--env-file",
                env_file.to_str().unwrap(),
                "--restart-jitter",
                "2s-3s",
                "--",
                &tc,
                "stamp",
                log.to_str().unwrap(),
                "V",
            ],
        )
        .start(&dir);
        wait_until(LONG, "first start", || {
            dir.read("child.log").contains("V=0")
        });
        dir.replace("app.env", "V=1\n");
        wait_until(LONG, "the delayed restart", || {
            launcher.stderr().contains("restart delayed")
        });
        dir.replace("app.env", "V=2\n");
        wait_until(LONG, "the restart", || {
            dir.read("child.log").contains("V=2")
        });
        let values: Vec<String> = stamps(&dir.read("child.log"))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values, ["0", "2"]);
        assert_eq!(launcher.stderr().matches("restart delayed").count(), 1);
        launcher.stop().assert_code(0);
    }
}

#[test]
fn bad_jitter_ranges_are_refused() {
    let dir = Dir::new("restart-jitter-refused");
    for value in ["soon", "30s-5s", "-5s", "5s-", "1s-2s-3s"] {
        let flag = format!("--restart-jitter={value}");
        let out = agent_run(Mode::Plain, [flag.as_str(), "--", "true"]).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--restart-jitter") && out.stderr.contains(value),
            "{value}: {}",
            out.description
        );
    }
    for value in ["30s", "0-30s", "500ms-2s"] {
        agent_run(Mode::Plain, ["--restart-jitter", value, "--", "true"])
            .run(&dir)
            .assert_code(0);
    }
}
