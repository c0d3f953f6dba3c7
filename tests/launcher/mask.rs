//! Issue 16 item 3: `--mask`. Real children write secret values (whole, encoded, split
//! across writes) to stdout and stderr; agent-run's output has `****` instead, plain
//! variables untouched, the exit code intact, the new value masked after a rotation, and
//! agent-run's memory holds none of the values while it masks. Plainly and as PID 1.

use std::time::Duration;

use base64::Engine;

use crate::common::{agent_run, memscan, random_values, wait_until, Dir, MODES};

const LONG: Duration = Duration::from_secs(20);

/// Single-quoted for sh (the values here have no `'`).
fn q(text: &str) -> String {
    format!("'{text}'")
}

#[test]
fn mask_replaces_values_and_their_encodings_in_stdout_and_stderr() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    for mode in MODES {
        let dir = Dir::new("mask");
        let token = "tok:en/val+ue?x=1&y";
        let long = random_values(1, 61)[0].clone() + "Xy";
        let env_file = dir.write(
            "app.env",
            format!("TOKEN={token}\nLONG={long}\nSHORT=abc\n"),
        );
        let (half1, half2) = long.split_at(long.len() / 2);
        let script = [
            "printf 'out %s|%s|%s|%s\\n' \"$TOKEN\" \"$SHORT\" \"$LIT\" \"$INHERITED\"".to_owned(),
            "printf 'err %s\\n' \"$LONG\" >&2".to_owned(),
            format!("printf 'b64 %s\\n' {}", q(&STANDARD.encode(token))),
            format!(
                "printf 'b64url %s\\n' {}",
                q(&URL_SAFE_NO_PAD.encode(&long))
            ),
            format!(
                "printf 'url %s\\n' {}",
                q("tok%3Aen%2Fval%2Bue%3Fx%3D1%26y")
            ),
            // One value in two writes, 5 ms apart, without a newline between them.
            format!("printf 'split %s' {}", q(half1)),
            "sleep 0.005".to_owned(),
            format!("printf '%s end\\n' {}", q(half2)),
            "exit 7".to_owned(),
        ]
        .join("; ");
        let out = agent_run(
            mode,
            [
                "--mask",
                "--env-file",
                env_file.to_str().unwrap(),
                "-e",
                "LIT=literal-value-1234",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .env("INHERITED", "inherited-value-5678")
        .run(&dir);
        out.assert_code(7);
        let all = format!("{}{}", out.stdout, out.stderr);
        for value in [token, long.as_str(), half1, half2] {
            assert!(
                !all.contains(value),
                "a value or half of one was not masked:\n{}",
                out.description
            );
        }
        for line in [
            "out ****|abc|literal-value-1234|inherited-value-5678\n",
            "b64 ****\n",
            "b64url ****\n",
            "url ****\n",
            "split **** end\n",
        ] {
            assert!(
                out.stdout.contains(line),
                "{line:?} missing ({mode:?}):\n{}",
                out.description
            );
        }
        assert!(out.stderr.contains("err ****\n"), "{}", out.description);
    }
}

#[test]
fn mask_follows_a_rotation() {
    for mode in MODES {
        let dir = Dir::new("mask-rotation");
        let (first, second) = ("first-value-1111", "second-value-2222");
        let env_file = dir.write("app.env", format!("V={first}\n"));
        let log = dir.join("starts.log");
        let script = format!(
            "echo start >> {}; while true; do echo \"v=$V\"; sleep 0.05; done",
            log.display()
        );
        let mut launcher = agent_run(
            mode,
            [
                "--mask",
                "--env-file",
                env_file.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .start(&dir);
        wait_until(LONG, "the first child's output", || {
            launcher.stdout().contains("v=****")
        });
        dir.replace("app.env", format!("V={second}\n"));
        wait_until(LONG, "the restart", || {
            dir.read("starts.log").matches("start").count() == 2
        });
        let before = launcher.stdout().matches("v=****").count();
        wait_until(LONG, "the second child's output", || {
            launcher.stdout().matches("v=****").count() >= before + 3
        });
        let out = launcher.stop();
        for value in [first, second] {
            assert!(
                !out.stdout.contains(value),
                "{value} shown ({mode:?}):\n{}",
                out.description
            );
        }
        let unmasked: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("v=") && *l != "v=****")
            .collect();
        assert!(unmasked.is_empty(), "{unmasked:?}\n{}", out.description);
    }
}

#[test]
fn mask_is_refused_with_once() {
    let dir = Dir::new("mask-once");
    let out = agent_run(
        crate::common::Mode::Plain,
        ["--mask", "--once", "--", "true"],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("--once"), "{}", out.description);
}

#[test]
fn no_secret_stays_in_agent_run_while_masking() {
    for mode in MODES {
        let dir = Dir::new("mask-memory");
        let values = random_values(8, 77);
        let env: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("MASKED_{i}={v}\n"))
            .collect();
        let env_file = dir.write("app.env", env);
        let script = (0..values.len())
            .map(|i| format!("echo \"v$MASKED_{i}\"; echo \"e$MASKED_{i}\" >&2"))
            .chain(["echo written".to_owned(), "exec sleep 60".to_owned()])
            .collect::<Vec<_>>()
            .join("; ");
        let mut launcher = agent_run(
            mode,
            [
                "--mask",
                "--env-file",
                env_file.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .start(&dir);
        wait_until(LONG, "the child's output", || {
            launcher.stdout().contains("written")
        });
        let control = env_file.display().to_string();
        memscan::assert_no_secret_in_memory(launcher.pid, &values, &control, "while masking");
        let out = launcher.stop();
        for value in &values {
            assert!(!out.stdout.contains(value.as_str()) && !out.stderr.contains(value.as_str()));
        }
        assert_eq!(
            out.stdout.matches("v****").count(),
            values.len(),
            "{}",
            out.description
        );
        assert_eq!(
            out.stderr.matches("e****").count(),
            values.len(),
            "{}",
            out.description
        );
    }
}

/// At a terminal (tmux: a real pty for agent-run), the child gets a pty of its own: it
/// sees a terminal on all three streams, its colours reach the screen, the value does
/// not, Ctrl-C reaches it once, a resize reaches it as SIGWINCH with the new size, Ctrl-Z
/// suspends it with agent-run and `fg` brings both back (plain mode: PID 1 never suspends
/// itself), keys reach it, and the terminal is cooked again after agent-run exits.
#[test]
fn mask_at_a_terminal_gives_the_child_a_pty() {
    use crate::terminal::Tmux;
    for mode in MODES {
        let dir = Dir::new("mask-pty");
        let token = "pty-secret-value-4242";
        let env_file = dir.write("app.env", format!("TOKEN={token}\nV=1\n"));
        let script = dir.write(
            "child.sh",
            "trap 'echo int-$V' INT\n\
             trap 'echo winch-$(stty size | tr \" \" x)' WINCH\n\
             trap 'echo cont-$V' CONT\n\
             if [ -t 0 ] && [ -t 1 ] && [ -t 2 ]; then echo isatty-yes; fi\n\
             echo \"v=$TOKEN\"\n\
             printf '\\033[31mred-text\\033[0m\\n'\n\
             echo child-up\n\
             while :; do read line; [ \"$line\" = quit ] && exit 3; done\n",
        );
        let launcher = match mode {
            crate::common::Mode::Plain => crate::common::agent_run_bin().to_owned(),
            crate::common::Mode::Pid1 => format!(
                "unshare --pid --fork --mount-proc --kill-child {}",
                crate::common::agent_run_bin()
            ),
        };
        let tmux = Tmux::start("mask-pty");
        tmux.keys(&[
            &format!(
                "{launcher} --mask --env-file {} -- sh {}",
                env_file.display(),
                script.display()
            ),
            "Enter",
        ]);
        wait_until(LONG, "the child", || tmux.screen().contains("child-up"));
        let screen = tmux.screen();
        assert!(screen.contains("isatty-yes"), "{mode:?}:\n{screen}");
        assert!(
            screen.contains("v=****") && !screen.contains(token),
            "{mode:?}:\n{screen}"
        );
        assert!(
            tmux.screen_with_colours().contains("\u{1b}[31mred-text"),
            "{mode:?}: no colour:\n{}",
            tmux.screen_with_colours()
        );
        tmux.keys(&["C-c"]);
        wait_until(LONG, "Ctrl-C to reach the child", || {
            tmux.count("int-1") == 1
        });
        tmux.resize(90, 30);
        wait_until(LONG, "the new size to reach the child", || {
            tmux.screen().contains("winch-30x90")
        });
        if mode == crate::common::Mode::Plain {
            tmux.keys(&["C-z"]);
            wait_until(LONG, "agent-run to be suspended", || {
                tmux.screen().contains("Stopped")
            });
            tmux.keys(&["fg", "Enter"]);
            wait_until(LONG, "the child to continue", || {
                tmux.screen().contains("cont-1")
            });
        }
        tmux.keys(&["quit", "Enter"]);
        wait_until(LONG, "the shell's prompt after agent-run", || {
            tmux.screen()
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                == Some("ready>")
        });
        tmux.keys(&["echo rc=$?", "Enter"]);
        wait_until(LONG, "agent-run to exit with the child's 3", || {
            tmux.screen().contains("rc=3")
        });
        tmux.keys(&["stty -a | grep -o -- ' -*icanon'", "Enter"]);
        wait_until(LONG, "the terminal to be cooked again", || {
            tmux.screen().lines().any(|l| l.trim() == "icanon")
        });
        let screen = tmux.screen();
        assert_eq!(tmux.count("int-1"), 1, "{mode:?}:\n{screen}");
        assert!(!screen.contains(token), "{mode:?}:\n{screen}");
    }
}
