//! The file source under attack (issues 10 and 11): literal dotenv values through both
//! readers, files that would block or leak (FIFOs, links out of a secrets dir, loose
//! permissions), relative paths, watches that must survive replaced directories, swapped
//! links and a queue overflow, and file names that try to forge log lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common;
use crate::common::vault::start_vault;
use crate::common::{agent_run, env_log_child, wait_until, Dir, Mode, MODES};

const LONG: Duration = Duration::from_secs(15);

/// A command that writes its whole environment, NUL-separated, to `out`.
fn dump_env(out: &Path) -> Vec<String> {
    vec![
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("env -0 > '{}'", out.display()),
    ]
}

fn read_env_dump(path: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(path).expect("the child wrote its environment");
    bytes
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Values the old dotenvy reader corrupted, and how they are written in the file.
fn literal_cases() -> (String, Vec<(&'static str, String)>) {
    let all: String = (0x20u8..0x7f).map(char::from).collect();
    let single: String = all.chars().filter(|&c| c != '\'').collect();
    let escaped = all.replace('\\', "\\\\").replace('"', "\\\"");
    let expected = vec![
        ("ALL_DOUBLE", all.clone()),
        ("ALL_SINGLE", single.clone()),
        ("DB_PASSWORD", "Xk9$mQ2vLp8$zR4wNt7".to_owned()),
        ("PA_WORD", "pa$word123".to_owned()),
        ("BRACES", "x${HOME}y".to_owned()),
        ("DOUBLE_DOLLAR", "pa$$w0rd".to_owned()),
        ("SINGLE_DOLLAR", "${PATH}$1$".to_owned()),
        ("HASH", "a#b".to_owned()),
        ("BACKSLASH", "c:\\dir\\n".to_owned()),
        ("QUOTES", "it's \"quoted\"".to_owned()),
        ("ESCAPES", "line1\nline2\t\"$HOME\"\\".to_owned()),
    ];
    let file = format!(
        "# every printable ASCII character\n\
         ALL_DOUBLE=\"{escaped}\"\n\
         export ALL_SINGLE='{single}'\n\
         DB_PASSWORD=Xk9$mQ2vLp8$zR4wNt7\n\
         PA_WORD=pa$word123\n\
         BRACES=x${{HOME}}y # a comment\n\
         DOUBLE_DOLLAR=\"pa$$w0rd\"\n\
         SINGLE_DOLLAR='${{PATH}}$1$'\n\
         HASH=a#b\n\
         BACKSLASH=c:\\dir\\n\n\
         QUOTES='it'\"'\"'s \"quoted\"'\n\
         ESCAPES=\"line1\\nline2\\t\\\"\\$HOME\\\"\\\\\"\n"
    );
    (file, expected)
}

/// Issue 10 item 3: `$` is never expanded, and every printable character survives, through
/// `agent-run --env-file` and through `agent-vault secrets import` → `agent-run --store`.
#[test]
fn issue10_dotenv_values_are_literal_through_both_readers() {
    let dir = Dir::new("files-literal");
    let (file, expected) = literal_cases();
    // QUOTES uses shell-style quote splicing, which our grammar does not have: drop it
    // from the file and the expectations (the single-quoted value ends at the second ').
    let file: String = file
        .lines()
        .filter(|l| !l.starts_with("QUOTES="))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = format!("{file}QUOTES=\"it's \\\"quoted\\\"\"\n");
    let env_file = dir.write("literal.env", &file);

    // Path 1: --env-file → the child's environment.
    let out = dir.join("env-file.out");
    let mut args = vec!["--env-file".to_owned(), env_file.display().to_string()];
    args.extend(dump_env(&out));
    agent_run(Mode::Plain, &args)
        .env("HOME", "/home/not-expanded")
        .run(&dir)
        .assert_code(0);
    let env = read_env_dump(&out);
    for (name, value) in &expected {
        assert_eq!(env.get(*name), Some(value), "--env-file: {name}");
    }

    // Path 2: agent-vault secrets import → agent-run --store → the child's environment.
    let vault = start_vault();
    let import = vault.cli_run(
        &[
            "secrets",
            "import",
            "bot",
            "--file",
            env_file.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(import.status.success(), "{import:?}");
    let (_, token) = vault.issue(&["secrets:read:bot/*"], None);
    let out = dir.join("store.out");
    let mut args = vec!["--store".to_owned(), vault.addr.clone()];
    args.extend(dump_env(&out));
    agent_run(Mode::Plain, &args)
        .env("AGENT_RUN_TOKEN", &token)
        .env("HOME", "/home/not-expanded")
        .run(&dir)
        .assert_code(0);
    let env = read_env_dump(&out);
    for (name, value) in &expected {
        assert_eq!(env.get(*name), Some(value), "import → store: {name}");
    }
}

/// Issue 10 item 12: a parse error names the real line and column and why, never the text.
#[test]
fn issue10_parse_errors_give_the_real_line_without_the_text() {
    let dir = Dir::new("files-parse");
    let env_file = dir.write("bad.env", "A=1\n# c\n1KEY=s3cr3t-value\n");
    let out = agent_run(
        Mode::Plain,
        ["--env-file", env_file.to_str().unwrap(), "--", "true"],
    )
    .run(&dir);
    out.assert_code(125);
    assert!(out.stderr.contains("bad.env:3:1"), "{}", out.description);
    assert!(out.stderr.contains("invalid name"), "{}", out.description);
    assert!(!out.stderr.contains("s3cr3t"), "{}", out.description);

    let vault = start_vault();
    let import = vault.cli_run(
        &[
            "secrets",
            "import",
            "bot",
            "--file",
            env_file.to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(!import.status.success());
    assert!(stderr.contains("bad.env:3:1"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

/// Issue 11 item 3: an env file that is a FIFO is a clear error at start, not a hang.
#[test]
fn issue11_env_file_fifo_is_refused_at_start() {
    for mode in MODES {
        let dir = Dir::new("files-fifo");
        let fifo = dir.fifo("pipe.env");
        let out = agent_run(mode, ["--env-file", fifo.to_str().unwrap(), "--", "true"]).run(&dir);
        out.assert_code(125);
        assert!(out.stderr.contains("named pipe"), "{}", out.description);
    }
}

/// Issue 11 item 3 (cosmetic part): a FIFO in a secrets dir is skipped with a warning that
/// says why, and a reference to it reports the reason instead of "missing".
#[test]
fn issue11_secrets_dir_fifo_is_skipped_and_a_reference_says_why() {
    let dir = Dir::new("files-dir-fifo");
    let secrets = dir.join("secrets");
    dir.write("secrets/TOKEN", "abc\n");
    dir.fifo("secrets/PIPE");
    let out = dir.join("env.out");
    let mut args = vec!["--secrets-dir".to_owned(), secrets.display().to_string()];
    args.extend(dump_env(&out));
    let run = agent_run(Mode::Plain, &args).run(&dir);
    run.assert_code(0);
    assert!(run.stderr.contains("named pipe"), "{}", run.description);
    assert_eq!(
        read_env_dump(&out).get("TOKEN").map(String::as_str),
        Some("abc")
    );

    let run = agent_run(
        Mode::Plain,
        [
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "--env",
            "X=@PIPE",
            "--",
            "true",
        ],
    )
    .run(&dir);
    run.assert_code(125);
    assert!(run.stderr.contains("--env X=@PIPE"), "{}", run.description);
    assert!(run.stderr.contains("named pipe"), "{}", run.description);
}

/// Starts agent-run in `cwd` with `flags`, logging `keys` into `log`; waits for the start.
fn start_in(cwd: &Path, dir: &Dir, flags: &[&str], keys: &[&str], log: &Path) -> common::Launcher {
    let mut args: Vec<String> = vec!["-vv".into()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(env_log_child(log, keys));
    let launcher = agent_run(Mode::Plain, &args).current_dir(cwd).start(dir);
    wait_until(LONG, "first start", || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("start pid=")
    });
    // The file source re-reads once after arming its watches; an edit before that re-read
    // would be caught by it, which would hide a watch that never works.
    wait_until(LONG, "watches armed and the re-check done", || {
        launcher.stderr().contains("watching for changes")
    });
    launcher
}

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

/// Issue 11 item 1: edits to relative --env-file / --secrets-dir paths restart the child.
#[test]
fn issue11_relative_paths_are_watched() {
    let dir = Dir::new("files-relative");
    let log = dir.join("child.log");
    for (cwd, flag, path, file) in [
        ("w", "--env-file", "rt.env", "w/rt.env"),
        ("w", "--env-file", "./rt.env", "w/rt.env"),
        ("w", "--env-file", "../x/rt.env", "x/rt.env"),
        ("w", "--secrets-dir", "sec", "w/sec/A"),
    ] {
        let _ = std::fs::remove_file(&log);
        let content = |v: &str| {
            if flag == "--env-file" {
                format!("A={v}\n")
            } else {
                v.to_owned()
            }
        };
        dir.write(file, content("1"));
        let mut launcher = start_in(&dir.join(cwd), &dir, &[flag, path], &["A"], &log);
        assert!(log_has(&log, "A=1"), "{path}");
        dir.write(file, content("2"));
        wait_until(LONG, &format!("restart after editing {path}"), || {
            log_has(&log, "A=2")
        });
        launcher.stop().assert_code(0);
    }
}

/// Issue 11 item 4: a link out of the secrets dir is refused; the child never sees it.
#[test]
fn issue11_links_out_of_a_secrets_dir_are_refused() {
    let dir = Dir::new("files-links");
    let loot = dir.write("outside/shadow", "root:$6$not-for-the-child:19000::::::\n");
    let secrets = dir.join("secrets");
    dir.write("secrets/OK", "fine");
    std::os::unix::fs::symlink(&loot, secrets.join("LOOT")).unwrap();
    let out = dir.join("env.out");
    let mut args = vec!["--secrets-dir".to_owned(), secrets.display().to_string()];
    args.extend(dump_env(&out));
    let run = agent_run(Mode::Plain, &args).run(&dir);
    run.assert_code(125);
    assert!(
        run.stderr.contains("outside the secrets directory"),
        "{}",
        run.description
    );
    assert!(!out.exists(), "the child must not start");
    assert!(!run.stderr.contains("not-for-the-child"));
    if Path::new("/etc/shadow").exists() {
        std::fs::remove_file(secrets.join("LOOT")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", secrets.join("LOOT")).unwrap();
        agent_run(Mode::Plain, &args).run(&dir).assert_code(125);
        assert!(!out.exists(), "the child must not start");
    }

    // The explicit opt-in.
    std::fs::remove_file(secrets.join("LOOT")).unwrap();
    std::os::unix::fs::symlink(&loot, secrets.join("LOOT")).unwrap();
    let mut args = vec![
        "--allow-external-links".to_owned(),
        "--secrets-dir".to_owned(),
        secrets.display().to_string(),
    ];
    args.extend(dump_env(&out));
    agent_run(Mode::Plain, &args).run(&dir).assert_code(0);
    assert!(read_env_dump(&out)["LOOT"].contains("not-for-the-child"));
}

/// Issue 11 items 4 and 7: with --allow-external-links, an edit of a linked file outside the
/// secrets dir is seen.
#[test]
fn issue11_allowed_external_link_targets_are_watched() {
    let dir = Dir::new("files-ext-watch");
    let log = dir.join("child.log");
    let target = dir.write("shared/API_KEY", "one");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::os::unix::fs::symlink(&target, secrets.join("API_KEY")).unwrap();
    let mut launcher = start_in(
        dir.path(),
        &dir,
        &[
            "--allow-external-links",
            "--secrets-dir",
            secrets.to_str().unwrap(),
        ],
        &["API_KEY"],
        &log,
    );
    dir.replace("shared/API_KEY", "two");
    wait_until(LONG, "restart after editing the link's target", || {
        log_has(&log, "API_KEY=two")
    });
    launcher.stop().assert_code(0);
}

/// Issue 11 item 4: loose permissions warn, and --strict-permissions refuses.
#[test]
fn issue11_strict_permissions_refuse_loose_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new("files-perms");
    let env_file = dir.write("app.env", "A=1\n");
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let base = ["--env-file", env_file.to_str().unwrap()];
    let run = agent_run(Mode::Plain, base.iter().chain(&["--", "true"])).run(&dir);
    run.assert_code(0);
    assert!(
        run.stderr.contains("writable by group or others"),
        "{}",
        run.description
    );
    let run = agent_run(
        Mode::Plain,
        base.iter().chain(&["--strict-permissions", "--", "true"]),
    )
    .run(&dir);
    run.assert_code(125);
    assert!(
        run.stderr.contains("--strict-permissions"),
        "{}",
        run.description
    );

    // Owned by another non-root user (needs root to chown).
    if nix::unistd::geteuid().is_root() {
        let secrets = dir.join("secrets");
        let file = dir.write("secrets/A", "1");
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let run = agent_run(
            Mode::Plain,
            [
                "--strict-permissions",
                "--secrets-dir",
                secrets.to_str().unwrap(),
                "--",
                "true",
            ],
        )
        .run(&dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains("owned by uid 65534"),
            "{}",
            run.description
        );
    }
}

/// Whether `pid` holds an inotify watch on `dir`'s inode (fdinfo lists `ino:` in hex).
fn is_watched(pid: i32, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(ino) = std::fs::metadata(dir).map(|m| m.ino()) else {
        return false;
    };
    let needle = format!(" ino:{ino:x} ");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .any(|info| {
            info.lines()
                .any(|l| l.starts_with("inotify wd:") && l.contains(&needle))
        })
}

/// Issue 11 item 7: `rm -rf conf; mkdir conf` — every later write is still seen.
#[test]
fn issue11_watch_survives_a_recreated_directory() {
    let dir = Dir::new("files-recreate");
    let log = dir.join("child.log");
    let env_file = dir.write("conf/app.env", "A=1\n");
    let mut launcher = start_in(
        dir.path(),
        &dir,
        &["--env-file", env_file.to_str().unwrap()],
        &["A"],
        &log,
    );
    std::fs::remove_dir_all(dir.join("conf")).unwrap();
    // Watching degrades loudly: the missing directory is reported at warn level.
    wait_until(LONG, "a warning about the missing directory", || {
        launcher.stderr().contains("watched directory is missing")
    });
    dir.write("conf/app.env", "A=2\n");
    wait_until(LONG, "restart after re-creating conf", || {
        log_has(&log, "A=2")
    });
    dir.write("conf/app.env", "A=3\n");
    wait_until(LONG, "the next write is seen too", || log_has(&log, "A=3"));
    launcher.stop().assert_code(0);
}

/// Issue 11 item 7: a parent symlink (`current` → release dir) swapped atomically.
#[test]
fn issue11_watch_follows_a_swapped_parent_link() {
    let dir = Dir::new("files-current");
    let log = dir.join("child.log");
    dir.write("r1/app.env", "A=1\n");
    dir.write("r2/app.env", "A=2\n");
    std::os::unix::fs::symlink("r1", dir.join("current")).unwrap();
    let path = dir.join("current/app.env");
    let mut launcher = start_in(
        dir.path(),
        &dir,
        &["--env-file", path.to_str().unwrap()],
        &["A"],
        &log,
    );
    std::os::unix::fs::symlink("r2", dir.join("current.tmp")).unwrap();
    std::fs::rename(dir.join("current.tmp"), dir.join("current")).unwrap();
    wait_until(LONG, "restart after the link swap", || log_has(&log, "A=2"));
    // Edits in the new release are watched.
    dir.write("r2/app.env", "A=3\n");
    wait_until(LONG, "edit inside the new target", || log_has(&log, "A=3"));
    launcher.stop().assert_code(0);
}

/// Issue 11 item 7: a symlinked env file whose target lives in another directory.
#[test]
fn issue11_watch_follows_a_symlinked_env_file_to_its_target() {
    let dir = Dir::new("files-target");
    let log = dir.join("child.log");
    let target = dir.write("elsewhere/real.env", "A=1\n");
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::os::unix::fs::symlink(&target, dir.join("conf/app.env")).unwrap();
    let path = dir.join("conf/app.env");
    let mut launcher = start_in(
        dir.path(),
        &dir,
        &["--env-file", path.to_str().unwrap()],
        &["A"],
        &log,
    );
    dir.replace("elsewhere/real.env", "A=2\n");
    wait_until(LONG, "restart after editing the target", || {
        log_has(&log, "A=2")
    });
    launcher.stop().assert_code(0);
}

/// Issue 11 item 7: after an inotify queue overflow everything is re-read.
#[test]
fn issue11_watch_rereads_after_an_inotify_overflow() {
    use nix::sys::signal::Signal;
    let dir = Dir::new("files-overflow");
    let log = dir.join("child.log");
    let env_file = dir.write("conf/app.env", "A=1\n");
    let mut launcher = start_in(
        dir.path(),
        &dir,
        &["--env-file", env_file.to_str().unwrap()],
        &["A"],
        &log,
    );
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    // Stopped, agent-run's inotify queue fills with noise; the real edit comes after the
    // overflow, so its event is lost and only the overflow marker says so.
    wait_until(LONG, "conf watched", || {
        is_watched(launcher.pid, &dir.join("conf"))
    });
    launcher.signal(Signal::SIGSTOP);
    let noise = dir.join("conf/noise");
    for _ in 0..queue / 2 + 100 {
        std::fs::write(&noise, b"x").unwrap();
    }
    std::fs::write(&env_file, "A=2\n").unwrap();
    launcher.signal(Signal::SIGCONT);
    wait_until(LONG, "re-read after the overflow", || log_has(&log, "A=2"));
    let out = launcher.stop();
    out.assert_code(0);
    assert!(out.stderr.contains("overflow"), "{}", out.description);
}

/// Issue 11 item 15: a file name with a newline cannot forge a log line.
#[test]
fn issue11_control_characters_in_names_are_escaped_in_logs() {
    let dir = Dir::new("files-names");
    let secrets = dir.join("secrets");
    dir.write("secrets/OK", "1");
    dir.write("secrets/A\nERROR forged line", "1");
    let run = agent_run(
        Mode::Plain,
        [
            "-vv",
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "--",
            "true",
        ],
    )
    .run(&dir);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("ERROR forged")),
        "{}",
        run.description
    );
    assert!(
        run.stderr.contains("A\\nERROR forged line"),
        "{}",
        run.description
    );
}
