//! Issue 13 item 9, agent-vault's side: `--data-dir` defaults to `$AGENT_VAULT_DATA_DIR`,
//! then `$XDG_DATA_HOME/agent-vault`, then `$HOME/.local/share/agent-vault`, so `init`,
//! `serve` and `tokens issue --offline` need no flag on a workstation; `init` creates the
//! directory 0700; with neither variable set the error names both.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::vault::{file_mode, start_vault, vault_cmd};
use crate::common::{run, Dir};

/// agent-vault with HOME and XDG_DATA_HOME as given (unset when `None`), no
/// AGENT_VAULT_* from the test's environment.
fn with_home(home: Option<&Path>, xdg: Option<&Path>) -> Command {
    let mut cmd = vault_cmd();
    cmd.env_remove("HOME").env_remove("XDG_DATA_HOME");
    if let Some(home) = home {
        cmd.env("HOME", home);
    }
    if let Some(xdg) = xdg {
        cmd.env("XDG_DATA_HOME", xdg);
    }
    cmd
}

/// `serve` starts on the default directory: it prints its address, then is killed.
fn serves(mut cmd: Command) {
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning serve");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.starts_with("agent-vault listening on "));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening.is_some(),
        "serve did not start on the default directory"
    );
}

#[test]
fn init_and_serve_need_no_data_dir_on_a_workstation() {
    let dir = Dir::new("data-dir-default");
    let home = dir.join("home");
    std::fs::create_dir(&home).expect("home");

    // $HOME/.local/share/agent-vault, created 0700 (and its missing parents).
    let mut init = with_home(Some(&home), None);
    init.arg("init");
    let out = run(&mut init, None);
    assert!(out.status.success(), "{out:?}");
    let data = home.join(".local/share/agent-vault");
    assert!(data.join("master.key").exists() && data.join("vault.db").exists());
    assert_eq!(file_mode(&data), 0o700);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(data.to_str().expect("utf-8")),
        "init names the directory: {out:?}"
    );
    let mut serve = with_home(Some(&home), None);
    serve.current_dir(dir.path());
    serves(serve);
    // Offline recovery finds the same directory.
    let mut offline = with_home(Some(&home), None);
    offline.args(["tokens", "issue", "--offline", "--scope", "admin"]);
    let out = run(&mut offline, None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("avt_"));

    // $XDG_DATA_HOME/agent-vault comes first.
    let xdg = dir.join("xdg");
    let mut init = with_home(Some(&home), Some(&xdg));
    init.arg("init");
    assert!(run(&mut init, None).status.success());
    assert!(xdg.join("agent-vault/master.key").exists());
    assert_eq!(file_mode(&xdg.join("agent-vault")), 0o700);
    serves(with_home(Some(&home), Some(&xdg)));

    // AGENT_VAULT_DATA_DIR before both.
    let own = dir.join("own");
    let mut init = with_home(Some(&home), Some(&xdg));
    init.env("AGENT_VAULT_DATA_DIR", &own).arg("init");
    assert!(run(&mut init, None).status.success());
    assert!(own.join("master.key").exists());
}

#[test]
fn without_home_or_xdg_the_error_names_both_and_online_commands_still_work() {
    let mut init = with_home(None, None);
    init.arg("init");
    let out = run(&mut init, None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("XDG_DATA_HOME")
            && stderr.contains("HOME")
            && stderr.contains("--data-dir"),
        "{stderr}"
    );
    // An online command needs no data directory, even with AGENT_VAULT_DATA_DIR exported.
    let vault = start_vault();
    let mut cmd = vault.cli();
    cmd.env_remove("HOME")
        .env_remove("XDG_DATA_HOME")
        .env("AGENT_VAULT_DATA_DIR", "/nonexistent/agent-vault")
        .args(["tokens", "issue", "--scope", "admin"]);
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{out:?}");
}
