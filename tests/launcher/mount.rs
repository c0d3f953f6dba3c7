//! Issue 16 item 2: `--mount[=PATH]`: the secrets in an inherited memfd or a tmpfs file,
//! not in the child's environment; gone when the child exits however it ends, and when
//! agent-run is stopped; and no value left in agent-run's memory. Plainly and as PID 1.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{
    agent_run, alive, memscan, random_values, sh, start_signals_child, wait_until, Dir, Mode, MODES,
};

const LONG: Duration = Duration::from_secs(20);

fn shm_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(format!(
        "/dev/shm/agent-run-test-mount-{tag}-{}-{n}",
        std::process::id()
    ))
}

/// The child: its environment to `env.log`, what it reads from the mount to `mount-N.log`
/// (N: its start), then it waits.
fn child_script(dir: &Dir, source: &str) -> Vec<String> {
    sh(&format!(
        "n=$(ls {d} | grep -c '^mount-'); env > {d}/env-$n.log; cat {source} > {d}/mount-$n.tmp; \
         mv {d}/mount-$n.tmp {d}/mount-$n.log; exec sleep 1000",
        d = dir.path().display()
    ))
}

#[test]
fn mounted_secrets_reach_the_child_as_a_file_not_as_environment() {
    for mode in MODES {
        for (path, format) in [
            (None, "dotenv"),
            (Some(shm_path("dotenv")), "dotenv"),
            (Some(shm_path("json")), "json"),
        ] {
            let dir = Dir::new("mount");
            let env_file = dir.write("app.env", "API_KEY=first-value-1\n");
            let mount_flag = match &path {
                Some(p) => format!("--mount={}", p.display()),
                None => "--mount".to_owned(),
            };
            let source = match &path {
                Some(p) => p.display().to_string(),
                None => "/proc/self/fd/$AGENT_RUN_MOUNT_FD".to_owned(),
            };
            let mut args: Vec<String> = vec![
                "--env-file".into(),
                env_file.display().to_string(),
                mount_flag,
                "--mount-format".into(),
                format.into(),
                "-e".into(),
                "LITERAL=plain".into(),
            ];
            args.extend(child_script(&dir, &source));
            let launcher = agent_run(mode, &args).start(&dir);
            wait_until(LONG, "the child to read the mount", || {
                dir.join("mount-0.log").exists()
            });
            let env_log = dir.read("env-0.log");
            assert!(!env_log.contains("first-value-1"), "{env_log}");
            assert!(!env_log.contains("API_KEY"), "{env_log}");
            assert!(env_log.contains("LITERAL=plain"), "{env_log}");
            let mounted = dir.read("mount-0.log");
            let expected = match format {
                "json" => "{\"API_KEY\":\"first-value-1\"}\n",
                _ => "API_KEY=\"first-value-1\"\n",
            };
            assert_eq!(mounted, expected, "{format}");
            if let Some(p) = &path {
                let bits = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(bits, 0o600);
            }

            // A restart on change rewrites it.
            dir.replace("app.env", "API_KEY=second-value-2\n");
            wait_until(LONG, "the restarted child to read the mount", || {
                dir.join("mount-1.log").exists()
            });
            assert!(dir.read("mount-1.log").contains("second-value-2"));

            // SIGKILL of the child: agent-run exits with 137 and the file is gone.
            let child = launcher.child();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL).unwrap();
            let mut launcher = launcher;
            let status = launcher.wait(LONG);
            launcher.outcome(status).assert_code(137);
            if let Some(p) = &path {
                assert!(!p.exists(), "the mount outlived the child");
            }
        }
    }
}

#[test]
fn the_mount_is_removed_when_agent_run_is_stopped() {
    for mode in MODES {
        let dir = Dir::new("mount-term");
        let env_file = dir.write("app.env", "API_KEY=v\n");
        let path = shm_path("term");
        let mut args: Vec<String> = vec![
            "--env-file".into(),
            env_file.display().to_string(),
            format!("--mount={}", path.display()),
        ];
        args.extend(child_script(&dir, &path.display().to_string()));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "the child to read the mount", || {
            dir.join("mount-0.log").exists()
        });
        assert!(path.exists());
        let child = launcher.child();
        launcher.stop().assert_code(143);
        assert!(!path.exists(), "the mount outlived agent-run");
        if mode == Mode::Plain {
            assert!(!alive(child));
        }
        let leftovers = std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&*path.file_name().unwrap().to_string_lossy())
        });
        assert!(!leftovers, "a temporary mount file was left");
    }
}

#[test]
fn a_mount_on_disk_or_with_reload_or_once_is_refused() {
    let dir = Dir::new("mount-refused");
    let marker = dir.join("ran");
    let command = ["--", "touch", marker.to_str().unwrap()];
    let on_disk = format!("--mount={}", dir.join("secrets.env").display());
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--mount", "--on-change", "reload:HUP"],
        vec!["--mount", "--once"],
    ];
    if String::from_utf8_lossy(&fs_type.stdout).trim() != "tmpfs" {
        cases.push(vec![on_disk.as_str()]);
    }
    for case in cases {
        let mut args = case.clone();
        args.extend_from_slice(&command);
        let out = agent_run(Mode::Plain, &args).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--mount"),
            "{case:?}: {}",
            out.description
        );
        assert!(!marker.exists(), "{case:?}: the command ran");
    }
    assert!(!dir.join("secrets.env").exists());
}

#[test]
fn no_secret_stays_in_agent_run_with_a_mount() {
    for mode in MODES {
        let dir = Dir::new("mount-memory");
        let values = random_values(28, 21);
        let env: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SECRET_{i}={v}\n"))
            .collect();
        let env_file = dir.write("app.env", env);
        let mut args: Vec<String> = vec![
            "--env-file".into(),
            env_file.display().to_string(),
            "--mount".into(),
            "--mount-format".into(),
            "json".into(),
            "-vvv".into(),
        ];
        args.extend(child_script(&dir, "/proc/self/fd/$AGENT_RUN_MOUNT_FD"));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "the child to read the mount", || {
            dir.join("mount-0.log").exists()
        });
        assert!(dir.read("mount-0.log").contains(&values[0]));
        let control = env_file.display().to_string();
        memscan::assert_no_secret_in_memory(launcher.pid, &values, &control, "with a mount");
        let out = launcher.stop();
        for value in &values {
            assert!(
                !out.stderr.contains(value.as_str()),
                "a value reached the log"
            );
        }
    }
}

/// `--mount=PATH --mount-max-reads N`: the child of start `n` reads the pipe twice (to
/// `read-n-a.log` and `read-n-b.log`), then records whether PATH is still there
/// (`third-n.log`: `present` or `gone`), then waits.
fn pipe_child_script(dir: &Dir, path: &std::path::Path) -> Vec<String> {
    sh(&format!(
        "n=$(ls {d} | grep -c '^started-'); touch {d}/started-$n; env > {d}/env-$n.log; \
         cat {p} > {d}/read-$n-a.log; cat {p} > {d}/read-$n-b.log; \
         if [ -e {p} ]; then echo present; else echo gone; fi > {d}/third-$n.tmp; \
         mv {d}/third-$n.tmp {d}/third-$n.log; exec sleep 1000",
        d = dir.path().display(),
        p = path.display()
    ))
}

fn pipe_args(env_file: &std::path::Path, path: &std::path::Path, format: &str) -> Vec<String> {
    vec![
        "--env-file".into(),
        env_file.display().to_string(),
        format!("--mount={}", path.display()),
        "--mount-max-reads".into(),
        "2".into(),
        "--mount-format".into(),
        format.into(),
    ]
}

fn is_fifo(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_fifo())
}

#[test]
fn a_mount_pipe_serves_the_set_max_reads_times_and_the_new_set_after_a_rotation() {
    for mode in MODES {
        for format in ["dotenv", "json"] {
            let dir = Dir::new("mount-pipe");
            let env_file = dir.write("app.env", "API_KEY=first-value-1\n");
            let path = shm_path("pipe");
            let mut args = pipe_args(&env_file, &path, format);
            args.extend(pipe_child_script(&dir, &path));
            let launcher = agent_run(mode, &args).start(&dir);
            wait_until(LONG, "the child to read the pipe twice", || {
                dir.join("third-0.log").exists()
            });
            let expected = |value: &str| match format {
                "json" => format!("{{\"API_KEY\":\"{value}\"}}\n"),
                _ => format!("API_KEY=\"{value}\"\n"),
            };
            assert_eq!(
                dir.read("read-0-a.log"),
                expected("first-value-1"),
                "{mode:?} {format}"
            );
            assert_eq!(
                dir.read("read-0-b.log"),
                expected("first-value-1"),
                "{mode:?} {format}"
            );
            assert_eq!(
                dir.read("third-0.log"),
                "gone\n",
                "a third reader found the pipe"
            );
            assert!(!path.exists(), "the pipe outlived its reads");
            let env_log = dir.read("env-0.log");
            assert!(!env_log.contains("first-value-1"), "{env_log}");
            assert!(!env_log.contains("API_KEY"), "{env_log}");

            // A rotation restarts the child, which reads the new set, twice again.
            dir.replace("app.env", "API_KEY=second-value-2\n");
            wait_until(LONG, "the restarted child to read the pipe twice", || {
                dir.join("third-1.log").exists()
            });
            assert_eq!(dir.read("read-1-a.log"), expected("second-value-2"));
            assert_eq!(dir.read("read-1-b.log"), expected("second-value-2"));
            assert_eq!(dir.read("third-1.log"), "gone\n");
            assert!(!path.exists());
            let leftovers = std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&*path.file_name().unwrap().to_string_lossy())
            });
            assert!(!leftovers, "a temporary FIFO was left");
            let mut launcher = launcher;
            let out = launcher.stop();
            assert!(!out.stderr.contains("value-"), "a value reached the log");
        }
    }
}

#[test]
fn the_mount_pipe_goes_when_the_child_exits_is_killed_or_agent_run_is_stopped() {
    for mode in MODES {
        // The child exits on its own after one read (of two allowed).
        let dir = Dir::new("mount-pipe-exit");
        let env_file = dir.write("app.env", "API_KEY=v1\n");
        let path = shm_path("pipe-exit");
        let mut args = pipe_args(&env_file, &path, "dotenv");
        args.extend(sh(&format!(
            "cat {p} > {d}/read.log; exit 3",
            p = path.display(),
            d = dir.path().display()
        )));
        agent_run(mode, &args).run(&dir).assert_code(3);
        assert_eq!(dir.read("read.log"), "API_KEY=\"v1\"\n");
        assert!(!path.exists(), "{mode:?}: the pipe outlived the child");

        // SIGKILL of a child that has read nothing yet: the pipe goes with it.
        let dir = Dir::new("mount-pipe-kill");
        let env_file = dir.write("app.env", "API_KEY=v1\n");
        let path = shm_path("pipe-kill");
        let mut args = pipe_args(&env_file, &path, "dotenv");
        args.extend(sh("exec sleep 1000"));
        let mut launcher = agent_run(mode, &args).start(&dir);
        let child = launcher.child();
        wait_until(LONG, "the pipe", || is_fifo(&path));
        let bits = path.symlink_metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(bits, 0o600);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL).unwrap();
        let status = launcher.wait(LONG);
        launcher.outcome(status).assert_code(137);
        assert!(
            !path.exists(),
            "{mode:?}: the pipe outlived a SIGKILL of the child"
        );

        // A child that deletes the pipe after one read (of two): the writer thread waits on
        // a FIFO no path leads to any more, and agent-run still stops at once.
        let dir = Dir::new("mount-pipe-rm");
        let env_file = dir.write("app.env", "API_KEY=v1\n");
        let path = shm_path("pipe-rm");
        let mut args = pipe_args(&env_file, &path, "dotenv");
        args.extend(sh(&format!(
            "cat {p} > {d}/read.log; rm {p}; touch {d}/removed; exec sleep 1000",
            p = path.display(),
            d = dir.path().display()
        )));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "the child to remove the pipe", || {
            dir.join("removed").exists()
        });
        assert_eq!(dir.read("read.log"), "API_KEY=\"v1\"\n");
        launcher.stop().assert_code(143);
        assert!(!path.exists());

        // A child that never reads: agent-run still forwards signals, and its own TERM
        // ends it and removes the pipe.
        let dir = Dir::new("mount-pipe-term");
        let env_file = dir.write("app.env", "API_KEY=v1\n");
        let path = shm_path("pipe-term");
        let mount = format!("--mount={}", path.display());
        let env_flag = env_file.display().to_string();
        let flags = [
            "--env-file",
            env_flag.as_str(),
            mount.as_str(),
            "--mount-max-reads",
            "2",
        ];
        let mut launcher = start_signals_child(mode, &dir, &flags, &[]);
        assert!(is_fifo(&path));
        launcher.signal(Signal::SIGHUP);
        wait_until(LONG, "the child to get SIGHUP", || {
            dir.read("signals.log").contains("got SIGHUP")
        });
        launcher.stop().assert_code(0);
        assert!(dir.read("signals.log").contains("got SIGTERM"));
        assert!(!path.exists(), "{mode:?}: the pipe outlived agent-run");
    }
}

#[test]
fn no_secret_stays_in_agent_run_after_pipe_reads() {
    for mode in MODES {
        let dir = Dir::new("mount-pipe-memory");
        let values = random_values(28, 23);
        let env: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SECRET_{i}={v}\n"))
            .collect();
        let env_file = dir.write("app.env", env);
        let path = shm_path("pipe-memory");
        let mut args = pipe_args(&env_file, &path, "json");
        args.push("-vvv".into());
        args.extend(pipe_child_script(&dir, &path));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "the child to read the pipe twice", || {
            dir.join("third-0.log").exists()
        });
        assert!(dir.read("read-0-b.log").contains(&values[0]));
        // The writer thread ends (and wipes the set) once the reads are used up.
        let pid = launcher.pid;
        wait_until(LONG, "the pipe's writer thread to end", || {
            !thread_names(pid).iter().any(|n| n == "mount-pipe")
        });
        let control = env_file.display().to_string();
        memscan::assert_no_secret_in_memory(pid, &values, &control, "after the pipe's reads");
        let out = launcher.stop();
        for value in &values {
            assert!(
                !out.stderr.contains(value.as_str()),
                "a value reached the log"
            );
        }
    }
}

/// The names of `pid`'s threads.
fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn mount_max_reads_without_a_path_or_zero_or_over_a_file_is_refused() {
    let dir = Dir::new("mount-pipe-refused");
    let marker = dir.join("ran");
    let command = ["--", "touch", marker.to_str().unwrap()];
    let taken = shm_path("pipe-taken");
    std::fs::write(&taken, "someone's file").unwrap();
    let over_file = format!("--mount={}", taken.display());
    let fresh = format!("--mount={}", shm_path("pipe-zero").display());
    let cases: [(&[&str], &str); 4] = [
        (&["--mount-max-reads", "2"], "--mount-max-reads"),
        (&["--mount", "--mount-max-reads", "2"], "--mount-max-reads"),
        (
            &[fresh.as_str(), "--mount-max-reads", "0"],
            "--mount-max-reads",
        ),
        (
            &[over_file.as_str(), "--mount-max-reads", "2"],
            "not a named pipe",
        ),
    ];
    for (case, named) in cases {
        let mut args = case.to_vec();
        args.extend_from_slice(&command);
        let out = agent_run(Mode::Plain, &args).run(&dir);
        out.assert_code(125);
        assert!(out.stderr.contains(named), "{case:?}: {}", out.description);
        assert!(!marker.exists(), "{case:?}: the command ran");
    }
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "someone's file");
    std::fs::remove_file(&taken).unwrap();
    // The variable is the flag.
    let out = agent_run(Mode::Plain, ["--", "touch", marker.to_str().unwrap()])
        .env("AGENT_RUN_MOUNT_MAX_READS", "2")
        .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("--mount-max-reads"),
        "{}",
        out.description
    );
    assert!(!marker.exists());
}

#[test]
fn a_reader_that_leaves_early_counts_as_a_read_and_wedges_nothing() {
    for mode in MODES {
        let dir = Dir::new("mount-pipe-early");
        // More than a pipe's 64 KiB buffer: the write to a reader that left fails (EPIPE)
        // instead of landing whole in the buffer.
        let values = crate::common::random_values_of(&[4096; 24], 29);
        let env: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SECRET_{i}={v}\n"))
            .collect();
        let env_file = dir.write("app.env", env);
        let path = shm_path("pipe-early");
        let mut args = pipe_args(&env_file, &path, "dotenv");
        args.push("-v".into());
        args.extend(sh(&format!(
            ": < {p}; cat {p} > {d}/read.log; \
             if [ -e {p} ]; then echo present; else echo gone; fi > {d}/third.tmp; \
             mv {d}/third.tmp {d}/third.log; exec sleep 1000",
            p = path.display(),
            d = dir.path().display()
        )));
        let mut launcher = agent_run(mode, &args).start(&dir);
        wait_until(LONG, "the child's second read", || {
            dir.join("third.log").exists()
        });
        let read = dir.read("read.log");
        for (i, value) in values.iter().enumerate() {
            assert!(
                read.contains(&format!("SECRET_{i}=\"{value}\"\n")),
                "{mode:?}: the second reader missed SECRET_{i}"
            );
        }
        assert_eq!(read.lines().count(), values.len(), "{mode:?}");
        assert_eq!(
            dir.read("third.log"),
            "gone\n",
            "{mode:?}: the early reader was not counted"
        );
        // agent-run is unharmed (no SIGPIPE of its own reached the child) and stops as asked.
        assert!(launcher.try_wait().is_none(), "{mode:?}: agent-run ended");
        let out = launcher.stop();
        out.assert_code(143);
        assert!(
            out.stderr.contains("reader left early"),
            "{mode:?}: {}",
            out.description
        );
        assert!(!out.stderr.contains(&values[0]), "a value reached the log");
    }
}
