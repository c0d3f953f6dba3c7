//! Issue 16 item 1: `--on-change reload:SIG`: the child keeps running (same pid) and
//! re-reads its environment from an inherited memfd or a `--reload-file` on a tmpfs, with
//! the example agent (`examples/reload_agent.rs`), plainly and as PID 1; and agent-run
//! keeps no value in its memory after a reload.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{
    agent_run, example, lines_starting, memscan, random_values, wait_until, Dir, MODES,
};

const LONG: Duration = Duration::from_secs(20);

/// A path on /dev/shm (a tmpfs) of this test's own.
fn shm_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(format!(
        "/dev/shm/agent-run-test-{tag}-{}-{n}.env",
        std::process::id()
    ))
}

/// `start pid=P …` / `reload pid=P …` lines of the example's log, as (pid, value of V).
fn events(log: &str, kind: &str) -> Vec<(String, String)> {
    lines_starting(log, kind)
        .iter()
        .map(|line| {
            let field = |prefix: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(prefix))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("pid="), field("V="))
        })
        .collect()
}

#[test]
fn reload_keeps_the_child_and_hands_it_the_new_environment() {
    for mode in MODES {
        for file in [None, Some(shm_path("reload"))] {
            let dir = Dir::new("reload");
            let env_file = dir.write("app.env", "V=1\nOTHER=x\n");
            let log = dir.join("agent.log");
            let agent = example("reload_agent");
            let mut args: Vec<String> = vec![
                "--env-file".into(),
                env_file.display().to_string(),
                "--on-change".into(),
                "reload:HUP".into(),
            ];
            if let Some(path) = &file {
                args.extend(["--reload-file".into(), path.display().to_string()]);
            }
            args.extend([
                "--".into(),
                agent.display().to_string(),
                log.display().to_string(),
                "V".into(),
            ]);
            if let Some(path) = &file {
                args.extend(["--file".into(), path.display().to_string()]);
            }
            let mut launcher = agent_run(mode, &args).start(&dir);
            wait_until(LONG, "the agent to start", || {
                dir.read("agent.log").contains("start pid=")
            });
            if let Some(path) = &file {
                let mode_bits = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode_bits, 0o600, "{}", path.display());
            }
            for value in ["2", "3"] {
                dir.replace("app.env", format!("V={value}\nOTHER=x\n"));
                wait_until(LONG, &format!("reload with V={value}"), || {
                    events(&dir.read("agent.log"), "reload")
                        .iter()
                        .any(|(_, v)| v == value)
                });
            }
            let log_text = dir.read("agent.log");
            let starts = events(&log_text, "start");
            let reloads = events(&log_text, "reload");
            assert_eq!(starts.len(), 1, "never restarted: {log_text}");
            assert_eq!(starts[0].1, "1", "{log_text}");
            assert_eq!(
                reloads,
                [
                    (starts[0].0.clone(), "2".to_owned()),
                    (starts[0].0.clone(), "3".to_owned())
                ],
                "same pid, one reload per change: {log_text}"
            );
            launcher.stop().assert_code(0);
            if let Some(path) = &file {
                assert!(!path.exists(), "the reload file outlived agent-run");
                let tmp_left = std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&*path.file_name().unwrap().to_string_lossy())
                });
                assert!(!tmp_left, "a temporary reload file was left");
            }
        }
    }
}

#[test]
fn a_reload_file_must_be_on_a_tmpfs_and_needs_reload() {
    let dir = Dir::new("reload-refused");
    let on_disk = dir.join("app.env");
    let marker = dir.join("ran");
    let command = ["--", "touch", marker.to_str().unwrap()];
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&fs_type.stdout).trim() != "tmpfs" {
        let mut args = vec![
            "--on-change",
            "reload:HUP",
            "--reload-file",
            on_disk.to_str().unwrap(),
        ];
        args.extend_from_slice(&command);
        let out = agent_run(MODES[0], &args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--reload-file") && out.stderr.contains("tmpfs"),
            "{}",
            out.description
        );
        assert!(!on_disk.exists() && !marker.exists());
    }
    let shm = shm_path("refused");
    let mut args = vec!["--reload-file", shm.to_str().unwrap()];
    args.extend_from_slice(&command);
    let out = agent_run(MODES[0], &args).run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("reload:SIG"), "{}", out.description);
    let out = agent_run(MODES[0], ["--on-change", "reload:NOPE", "--", "true"]).run(&dir);
    out.assert_code(125);
    assert!(!marker.exists());
}

/// The memory scan after a reload: neither the values the child started with nor the ones
/// it reloaded stay in agent-run (the new environment goes from the wiped block straight
/// into the memfd).
#[test]
fn no_secret_stays_in_agent_run_after_a_reload() {
    for mode in MODES {
        let dir = Dir::new("reload-memory");
        let first = random_values(28, 11);
        let env: String = first
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SECRET_{i}={v}\n"))
            .collect();
        let env_file = dir.write("app.env", format!("V=1\n{env}"));
        let log = dir.join("agent.log");
        let agent = example("reload_agent");
        let mut launcher = agent_run(
            mode,
            [
                "--env-file",
                env_file.to_str().unwrap(),
                "--on-change",
                "reload:HUP",
                "-vvv",
                "--",
                agent.to_str().unwrap(),
                log.to_str().unwrap(),
                "V",
                "SECRET_0",
            ],
        )
        .start(&dir);
        wait_until(LONG, "the agent to start", || {
            dir.read("agent.log").contains("start pid=")
        });
        let control = env_file.display().to_string();
        memscan::assert_no_secret_in_memory(launcher.pid, &first, &control, "after start");

        let second = random_values(28, 12);
        let env: String = second
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SECRET_{i}={v}\n"))
            .collect();
        dir.replace("app.env", format!("V=2\n{env}"));
        let expected = format!("SECRET_0={}", second[0]);
        wait_until(LONG, "the reload", || {
            dir.read("agent.log").contains(&expected)
        });
        let mut everything = first.clone();
        everything.extend(second);
        memscan::assert_no_secret_in_memory(launcher.pid, &everything, &control, "after a reload");
        let out = launcher.stop();
        out.assert_code(0);
        for value in &everything {
            assert!(
                !out.stderr.contains(value.as_str()),
                "a value reached the log"
            );
        }
    }
}
