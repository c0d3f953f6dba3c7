//! Credential variables of the operator's shell (store and OpenBao tokens, AppRole ids)
//! reach neither the child nor agent-run's environ, unless `--allow-env` names them.

use crate::common;
use crate::common::{agent_run, sh, signals_child, wait_child_ready, Dir, Mode, MODES};

/// Credential variables an operator's shell may export, each with a value to look for.
const CREDENTIALS: [(&str, &str); 8] = [
    ("AGENT_VAULT_TOKEN", "avt_admin-credential-0001"),
    ("AGENT_VAULT_MASTER_KEY", "master-key-credential-0002"),
    ("BAO_TOKEN", "s.bao-credential-0003"),
    ("VAULT_TOKEN", "hvs.vault-credential-0004"),
    ("BAO_ROLE_ID", "role-id-credential-0005"),
    ("BAO_SECRET_ID", "secret-id-credential-0006"),
    ("VAULT_ROLE_ID", "role-id-credential-0007"),
    ("VAULT_SECRET_ID", "secret-id-credential-0008"),
];

/// agent-run started with every credential variable set, the signal-logging child, and
/// `flags`; returns once the child is ready.
fn start_with_credentials(mode: Mode, dir: &Dir, flags: &[&str]) -> common::Launcher {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(signals_child(&dir.join("signals.log")));
    let mut builder = agent_run(mode, &args)
        .env("NOT_A_CREDENTIAL", "passes-through-0009")
        .env("AGENT_VAULT_AGENT_TOKEN", "sdk-token-for-the-child-0010");
    for (name, value) in CREDENTIALS {
        builder = builder.env(name, value);
    }
    let launcher = builder.start(dir);
    wait_child_ready(dir);
    launcher
}

fn environ_of(pid: i32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ")
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Issue 10 item 4: the admin token (and every other credential variable of this project
/// and of OpenBao/Vault) passed through agent-run into the child's environment.
#[test]
fn credential_variables_reach_neither_the_child_nor_agent_runs_environ() {
    for mode in MODES {
        let dir = Dir::new("credentials");
        // --pristine --keep '*' would let every inherited name through: not these.
        for flags in [&[][..], &["--pristine", "--keep", "*"][..]] {
            let mut launcher = start_with_credentials(mode, &dir, flags);
            let child_env = environ_of(launcher.child());
            let own_env = environ_of(launcher.pid);
            for (name, value) in CREDENTIALS {
                assert!(
                    !holds(&child_env, &format!("{name}=")),
                    "{mode:?} {flags:?}: {name} reached the child"
                );
                assert!(
                    !holds(&child_env, value) && !holds(&own_env, value),
                    "{mode:?} {flags:?}: the value of {name} is still visible"
                );
            }
            assert!(holds(&child_env, "NOT_A_CREDENTIAL=passes-through-0009"));
            assert!(holds(
                &child_env,
                "AGENT_VAULT_AGENT_TOKEN=sdk-token-for-the-child-0010"
            ));
            launcher.stop().assert_code(0);
            std::fs::remove_file(dir.join("signals.log")).unwrap();
        }
    }
}

#[test]
fn allow_env_lets_exactly_the_named_credential_through() {
    for mode in MODES {
        let dir = Dir::new("allow-env");
        let mut launcher = start_with_credentials(mode, &dir, &["--allow-env", "BAO_TOKEN"]);
        let child_env = environ_of(launcher.child());
        let own_env = environ_of(launcher.pid);
        for (name, value) in CREDENTIALS {
            let entry = format!("{name}={value}");
            if name == "BAO_TOKEN" {
                assert!(
                    holds(&child_env, &entry),
                    "{mode:?}: {name} was not let through"
                );
            } else {
                assert!(
                    !holds(&child_env, &entry) && !holds(&own_env, value),
                    "{mode:?}: {name} passed without --allow-env"
                );
            }
        }
        launcher.stop().assert_code(0);
    }
    // The variable form takes a comma-separated list.
    let dir = Dir::new("allow-env-var");
    let out = agent_run(
        Mode::Plain,
        sh("echo \"$VAULT_TOKEN|$BAO_TOKEN|$AGENT_VAULT_TOKEN\""),
    )
    .env("AGENT_RUN_ALLOW_ENV", "VAULT_TOKEN,BAO_TOKEN")
    .env("VAULT_TOKEN", "v-0011")
    .env("BAO_TOKEN", "b-0012")
    .env("AGENT_VAULT_TOKEN", "avt_0013")
    .run(&dir);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "v-0011|b-0012|", "{}", out.description);
    // agent-run's own variables never pass, and a malformed name is refused by name.
    for (name, shown) in [
        ("AGENT_RUN_TOKEN", "AGENT_RUN_TOKEN"),
        ("BAO-TOKEN", "BAO-TOKEN"),
    ] {
        let out = agent_run(Mode::Plain, ["--allow-env", name, "--", "true"]).run(&dir);
        out.assert_code(125);
        assert!(
            out.stderr.contains("--allow-env") && out.stderr.contains(shown),
            "{}",
            out.description
        );
    }
}

#[test]
fn check_lists_no_credential_variable() {
    let dir = Dir::new("check-credentials");
    let env_file = dir.write("app.env", "API_KEY=sk-live-abcdefgh\n");
    for json in [false, true] {
        let mut args = vec!["--check", "--env-file", env_file.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        args.extend(["--", "true"]);
        let mut builder = agent_run(Mode::Plain, &args);
        for (name, value) in CREDENTIALS {
            builder = builder.env(name, value);
        }
        let out = builder.run(&dir);
        out.assert_code(0);
        assert!(out.stdout.contains("API_KEY"), "{}", out.description);
        for (name, value) in CREDENTIALS {
            assert!(
                !out.stdout.contains(name) && !out.stdout.contains(value),
                "--check listed {name}\n{}",
                out.description
            );
        }
    }
}
