//! Issue 16 item 7: at a terminal, Ctrl-C reaches the child's group once, also after a
//! restart on change. Under tmux, with an interactive bash, a real pty and a real child
//! that counts its SIGINTs.

use std::time::Duration;

use crate::common::{self, Dir};

const LONG: Duration = Duration::from_secs(20);

/// A tmux session running an interactive bash, killed on drop.
pub(crate) struct Tmux(String);

impl Tmux {
    pub(crate) fn start(tag: &str) -> Tmux {
        let name = format!("agent-run-test-{tag}-{}", std::process::id());
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
        common::wait_until(LONG, "the shell prompt", || {
            tmux.screen().contains("ready>")
        });
        tmux
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        assert!(std::process::Command::new("tmux")
            .args(&args)
            .status()
            .unwrap()
            .success());
    }

    pub(crate) fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with its colours, as escape sequences.
    pub(crate) fn screen_with_colours(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-e", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn resize(&self, columns: u16, rows: u16) {
        assert!(std::process::Command::new("tmux")
            .args([
                "resize-window",
                "-t",
                &self.0,
                "-x",
                &columns.to_string(),
                "-y",
                &rows.to_string()
            ])
            .status()
            .unwrap()
            .success());
    }

    /// Lines the child printed that are exactly `line`, after the `^C` the terminal echoes.
    pub(crate) fn count(&self, line: &str) -> usize {
        self.screen()
            .lines()
            .filter(|l| l.trim().trim_start_matches("^C") == line)
            .count()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The child prints `int-V` for every SIGINT, and exits on USR1 after printing `usr1`. A
/// USR1 sent to agent-run with `kill` is forwarded after any SIGINT agent-run would have
/// forwarded (the signalfd hands out lower numbers first, and sh runs pending traps in
/// number order), so when `usr1` shows, every INT has been counted.
#[test]
fn ctrl_c_reaches_the_child_once_also_after_a_restart() {
    let dir = Dir::new("terminal-ctrl-c");
    let env_file = dir.write("app.env", "V=1\n");
    let tmux = Tmux::start("ctrl-c");
    let script = dir.write(
        "child.sh",
        "trap 'echo int-$V' INT\ntrap 'echo usr1; exit 0' USR1\n\
         echo ready-$V agent-run=$PPID\nwhile :; do sleep 0.1; done\n",
    );
    let command = format!(
        "{} --env-file {} -- sh {}",
        common::agent_run_bin(),
        env_file.display(),
        script.display()
    );
    tmux.keys(&[&command, "Enter"]);
    common::wait_until(LONG, "the first child", || {
        tmux.screen().contains("ready-1 ")
    });
    tmux.keys(&["C-c"]);
    common::wait_until(LONG, "Ctrl-C to reach the first child", || {
        tmux.count("int-1") == 1
    });

    // A restart on change: the new child must take over the terminal from the old one.
    dir.replace("app.env", "V=2\n");
    common::wait_until(LONG, "the restarted child", || {
        tmux.screen().contains("ready-2 ")
    });
    let screen = tmux.screen();
    let agent_run: i32 = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("ready-2 agent-run="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no agent-run pid on screen:\n{screen}"));
    tmux.keys(&["C-c"]);
    common::wait_until(LONG, "Ctrl-C to reach the restarted child", || {
        tmux.count("int-2") >= 1
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_run),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    common::wait_until(LONG, "the child to exit on USR1", || {
        tmux.count("usr1") == 1
    });
    tmux.keys(&["echo rc=$?", "Enter"]);
    common::wait_until(LONG, "agent-run to exit with the child's 0", || {
        tmux.screen().contains("rc=0")
    });
    assert_eq!(tmux.count("int-1"), 1, "{}", tmux.screen());
    assert_eq!(tmux.count("int-2"), 1, "{}", tmux.screen());
}
