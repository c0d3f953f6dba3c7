//! Issue 16 item 2: `--mount[=PATH]`: the secrets in an inherited memfd or a tmpfs file,
//! not in the child's environment; gone when the child exits however it ends, and when
//! agent-run is stopped; and no value left in agent-run's memory. Plainly and as PID 1.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{agent_run, alive, memscan, random_values, sh, wait_until, Dir, Mode, MODES};

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
