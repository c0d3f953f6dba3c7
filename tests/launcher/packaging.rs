//! The packaging recipes' contracts (issue 15): what `packaging/` promises, run for real.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::vault::start_vault;
use crate::common::{agent_run, agent_run_bin, children, wait_until, Dir, Mode};

/// The systemd template unit passes the token as `LoadCredential=agent-run-token:...`:
/// agent-run finds it in `$CREDENTIALS_DIRECTORY` (a 0400 file, as systemd lays it out)
/// with no flag and no variable, and reads the store with it.
#[test]
fn reads_its_token_from_the_systemd_credentials_directory() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-cred-000001");
    let (_, token) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let dir = Dir::new("systemd-credential");
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let file = creds.join("agent-run-token");
    std::fs::write(&file, &token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500)).unwrap();

    let args = [
        "--store",
        &vault.addr,
        "--once",
        "--",
        "sh",
        "-c",
        "echo \"API_KEY=$API_KEY\"",
    ];
    let out = agent_run(Mode::Plain, args)
        .env("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())
        .run(&dir);
    out.assert_code(0);
    assert!(
        out.stdout.contains("API_KEY=value-cred-000001"),
        "{}",
        out.description
    );
    assert!(!out.stderr.contains(&token), "{}", out.description);
}

/// Kills `unshare` (and with `--kill-child` its namespace) if the test fails half-way.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The host pid of the first child of `parent` (the PID 1 of `unshare --fork`'s namespace).
fn first_child(parent: u32) -> i32 {
    let mut found = None;
    wait_until(Duration::from_secs(10), "PID 1 inside unshare", || {
        found = children(parent as i32).into_iter().next();
        found.is_some()
    });
    found.unwrap()
}

/// The container image's contract (packaging/docker/Dockerfile), without a container
/// runtime: agent-run is PID 1 of a new PID namespace, the root file system is read-only
/// (`docker run --read-only`), there is no HOME, it runs as a uid with no /etc/passwd entry
/// (the image's `USER 65532:65532`; here 4242), the token comes from a file (a Docker
/// secret), and the TERM that `docker stop` sends reaches the agent, whose exit code becomes
/// the container's.
#[test]
fn runs_as_a_container_would_run_it() {
    const UID: &str = "4242";
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert!(
        !passwd.lines().any(|l| l.split(':').nth(2) == Some(UID)),
        "uid {UID} must have no /etc/passwd entry for this test"
    );
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-docker-00001");
    let (_, token) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));

    // /run/secrets/agent-token: the Docker secret, owned by the container's user, 0400.
    let dir = Dir::new("container");
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let token_file = secrets.join("agent-token");
    std::fs::write(&token_file, &token).unwrap();
    let uid: u32 = UID.parse().unwrap();
    std::os::unix::fs::chown(&token_file, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o400)).unwrap();
    // A writable volume for the agent's log (the only writable place, as a volume would be).
    let volume = dir.join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::os::unix::fs::chown(&volume, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = volume.join("agent.log");

    // The agent: reports how it was started, then exits 42 on TERM.
    let agent = format!(
        "log={log}; \
         {{ echo \"ppid=$PPID uid=$(id -u) home=${{HOME-unset}} API_KEY=$API_KEY\"; \
            if getent passwd \"$(id -u)\" >/dev/null; then echo passwd-entry; else echo no-passwd-entry; fi; \
            if touch /tmp/probe-$$ 2>/dev/null; then rm -f /tmp/probe-$$; echo root-writable; else echo root-readonly; fi; \
         }} >> \"$log\"; \
         trap 'echo got-term >> \"$log\"; exit 42' TERM; \
         echo ready >> \"$log\"; \
         while :; do sleep 0.05; done",
        log = log.display()
    );
    // What the container runtime sets up, then exec: agent-run becomes PID 1.
    let setup = format!(
        "set -e; \
         mount --bind {volume} {volume}; \
         mount -o remount,bind,ro /; \
         exec setpriv --reuid {UID} --regid {UID} --clear-groups \
           env -i PATH=/usr/local/bin:/usr/bin:/bin \
             AGENT_RUN_STORE={store} AGENT_RUN_TOKEN_FILE={token} \
             {bin} -- sh -c \"$AGENT\"",
        volume = volume.display(),
        store = vault.addr,
        token = token_file.display(),
        bin = agent_run_bin(),
    );
    let unshare = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg(&setup)
        .env("AGENT", &agent)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    let _guard = KillOnDrop(unshare.id() as i32);
    let pid1 = first_child(unshare.id());
    wait_until(Duration::from_secs(20), "the agent to start", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
    });
    let started = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid1}/exe")).unwrap(),
        std::fs::canonicalize(agent_run_bin()).unwrap(),
        "PID 1 of the namespace is agent-run"
    );
    for line in [
        "ppid=1 ",
        &format!("uid={UID} "),
        "home=unset ",
        "API_KEY=value-docker-00001",
        "no-passwd-entry",
        "root-readonly",
    ] {
        assert!(started.contains(line), "missing {line:?} in:\n{started}");
    }

    // docker stop: SIGTERM to the container's PID 1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = unshare.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("got-term"),
        "the agent got the TERM\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(42),
        "the agent's exit code\n{stderr}"
    );
    assert!(!stderr.contains(&token), "{stderr}");
}

/// The session id of a process (field 6 of /proc/PID/stat), if it exists.
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Every process still in session `sid`, with its command line.
fn processes_in_session(sid: i32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| session_of(pid) == Some(sid))
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
}

/// The CI recipes (packaging/ci/github-actions.yml, gitlab-ci.yml) run
/// `agent-run --once -- make deploy` with the token from the CI's secret store: GitHub
/// passes it as the variable AGENT_RUN_TOKEN, GitLab as a "File" variable, whose value is
/// the path of a file (AGENT_RUN_TOKEN_FILE). Run as the runners run a step: a session of its
/// own with no controlling terminal, stdin /dev/null, output to pipes. The exit code and the
/// output are make's own (a failing recipe gives make's 2), and when the step is over no
/// process of its session is left.
#[test]
fn a_ci_step_runs_once_with_its_exit_code_and_output_and_leaves_nothing() {
    let vault = start_vault();
    vault.set("deploy", "API_KEY", "value-ci-000000001");
    let (_, token) = vault.issue(&["secrets:read:deploy/*"], Some(json!("1h")));
    let dir = Dir::new("ci-step");
    let token_file = dir.write("gitlab-file-variable", &token);
    dir.write(
        "Makefile",
        "deploy:\n\
         \t@if [ -t 0 ] || tty -s; then echo has-a-tty; else echo no-tty; fi\n\
         \t@echo \"deploying with API_KEY=$$API_KEY\"\n\
         \t@seq 1 20000\n\
         \t@if [ -n \"$$FAIL\" ]; then echo 'deploy failed: ask the on-call' >&2; exit 3; fi\n\
         \t@echo deployed\n",
    );
    for (ci, token_var, token_value) in [
        ("github", "AGENT_RUN_TOKEN", token.clone()),
        (
            "gitlab",
            "AGENT_RUN_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ] {
        for fail in [false, true] {
            let mut step = Command::new("setsid");
            step.args([agent_run_bin(), "--once", "--", "make", "deploy"])
                .current_dir(dir.path())
                .env_remove("RUST_LOG")
                .env("AGENT_RUN_STORE", &vault.addr)
                .env("AGENT_RUN_AGENT", "deploy")
                .env(token_var, &token_value)
                .env("FAIL", if fail { "1" } else { "" })
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = step.spawn().expect("setsid agent-run");
            // setsid (not a group leader here) makes the session and execs: sid = its pid.
            let sid = child.id() as i32;
            let out = child.wait_with_output().unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            let what = format!("{ci} fail={fail}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
            let mut expected = String::from("no-tty\ndeploying with API_KEY=value-ci-000000001\n");
            for i in 1..=20000 {
                expected.push_str(&format!("{i}\n"));
            }
            if fail {
                assert_eq!(out.status.code(), Some(2), "make's exit code: {what}");
                assert_eq!(stdout, expected, "{what}");
                assert!(stderr.contains("deploy failed: ask the on-call"), "{what}");
            } else {
                assert_eq!(out.status.code(), Some(0), "{what}");
                expected.push_str("deployed\n");
                assert_eq!(stdout, expected, "{what}");
            }
            assert!(
                !stderr.contains(&token) && !stdout.contains(&token),
                "{what}"
            );
            let left = processes_in_session(sid);
            assert!(
                left.is_empty(),
                "left running after the step: {left:?}\n{what}"
            );
        }
    }
}

/// `--version` of both programs names the package version and the git revision they were
/// built from (build.rs), so a deployed binary can be traced to its commit.
#[test]
fn version_names_the_git_revision() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let version = env!("CARGO_PKG_VERSION");
    for (name, bin) in [
        ("agent-run", agent_run_bin()),
        ("agent-vault", crate::common::vault::vault_bin()),
    ] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version failed");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {version} (rev {rev})"),
        );
    }
}

/// packaging/kubernetes/agent-pod.yaml: agent-run is the container's PID 1 and reads the
/// Secret volume as the kubelet lays it out (`KEY -> ..data/KEY`, `..data -> ..TIMESTAMP/`,
/// group-readable files); when the Secret changes the kubelet swaps `..data` atomically and
/// the agent is restarted with the new value. (pid1::kubelet_data_swap_restarts_the_child
/// does the same without the PID namespace.)
#[test]
fn a_kubernetes_secret_volume_update_restarts_the_agent_under_pid_1() {
    let dir = Dir::new("kubelet-volume");
    let volume = dir.join("etc-agent-secrets");
    let write_generation = |name: &str, value: &str| {
        let generation = volume.join(name);
        std::fs::create_dir_all(&generation).unwrap();
        let file = generation.join("STRIPE_KEY");
        std::fs::write(&file, value).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
    };
    write_generation("..2026_12_05_08_00_00.1", "value-k8s-first-001");
    std::os::unix::fs::symlink("..2026_12_05_08_00_00.1", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/STRIPE_KEY", volume.join("STRIPE_KEY")).unwrap();
    let log = dir.join("agent.log");
    let mut args = vec!["--secrets-dir".to_owned(), volume.display().to_string()];
    args.extend(crate::common::env_log_child(&log, &["STRIPE_KEY"]));
    let mut launcher = agent_run(Mode::Pid1, &args).start(&dir);
    wait_until(Duration::from_secs(15), "first start", || {
        dir.read("agent.log")
            .contains("STRIPE_KEY=value-k8s-first-001")
    });

    // The kubelet's update: a new timestamped directory, `..data_tmp`, renamed over `..data`,
    // then the old generation removed.
    write_generation("..2026_12_05_08_05_00.2", "value-k8s-second-02");
    std::os::unix::fs::symlink("..2026_12_05_08_05_00.2", volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(volume.join("..2026_12_05_08_00_00.1")).unwrap();
    wait_until(
        Duration::from_secs(15),
        "restart with the new value",
        || {
            dir.read("agent.log")
                .contains("STRIPE_KEY=value-k8s-second-02")
        },
    );
    let starts = crate::common::starts(&dir.read("agent.log"), "STRIPE_KEY");
    assert_eq!(
        starts.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["value-k8s-first-001", "value-k8s-second-02"],
        "{}",
        dir.read("agent.log")
    );
    // The kubelet's TERM at pod deletion: forwarded, the agent's 0 passed through.
    launcher.stop().assert_code(0);
}

/// The token's precedence: `--token-file`, then `AGENT_RUN_TOKEN`, then the systemd
/// credential `agent-run-token`. Each case gives a good token at one level and a refused one
/// at the next: the good one must be the one used (exit 0), and a refused token at the level
/// that wins must fail (125) even though a lower level holds a good one.
#[test]
fn token_precedence_is_flag_then_variable_then_credential() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-prec-000001");
    let (_, good) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let bad = "avt_000000000000_refusedrefusedrefusedrefused";
    let dir = Dir::new("token-precedence");
    let credentials = |token: &str| {
        let creds = dir.join(&format!("credentials-{}", &token[..8]));
        let _ = std::fs::create_dir(&creds);
        std::fs::write(creds.join("agent-run-token"), token).unwrap();
        creds
    };
    let good_file = dir.write("good.token", &good);
    // (what, --token-file, AGENT_RUN_TOKEN, credentials dir, expected exit code)
    let cases = [
        (
            "variable over credential",
            None,
            Some(good.as_str()),
            credentials(bad),
            0,
        ),
        (
            "variable wins, refused",
            None,
            Some(bad),
            credentials(&good),
            125,
        ),
        (
            "flag over variable",
            Some(good_file.as_path()),
            Some(bad),
            credentials(bad),
            0,
        ),
    ];
    for (what, file, variable, creds, code) in cases {
        let mut args = vec!["--store".to_owned(), vault.addr.clone(), "--once".into()];
        if let Some(file) = file {
            args.extend(["--token-file".to_owned(), file.display().to_string()]);
        }
        args.extend(crate::common::sh("echo \"API_KEY=$API_KEY\""));
        let mut run = agent_run(Mode::Plain, &args)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("AGENT_RUN_START_TIMEOUT", "0");
        if let Some(token) = variable {
            run = run.env("AGENT_RUN_TOKEN", token);
        }
        let out = run.run(&dir);
        assert_eq!(out.code, Some(code), "{what}\n{}", out.description);
        if code == 0 {
            assert!(
                out.stdout.contains("API_KEY=value-prec-000001"),
                "{what}\n{}",
                out.description
            );
        }
        assert!(!out.stderr.contains(&good), "{what}\n{}", out.description);
    }
}
