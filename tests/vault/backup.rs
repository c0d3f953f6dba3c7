//! `agent-vault backup` and `restore` (issue 15): a consistent online copy under write load,
//! restored into a fresh data directory, every acknowledged secret read back through
//! agent-run; the master key never inside a backup; refusals that change nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::vault::ops::{init_with, serve_existing};
use crate::common::vault::{file_mode, vault_cmd};
use crate::common::{agent_run, contains, run, wait_until, Dir, Mode};

fn value_of(i: usize) -> String {
    format!("backup-load-value-{i:05}-{}", "v".repeat(i % 50))
}

/// `agent-vault ARGS` in a clean environment; returns the output.
fn vault_run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = vault_cmd();
    cmd.args(args);
    run(&mut cmd, None)
}

#[test]
fn backup_under_write_load_restores_every_acknowledged_secret() {
    let dir = Dir::new("backup");
    let key = dir.join("master-key");
    let data = dir.join("data");
    let key_arg = key.to_str().expect("utf-8").to_string();
    let admin = init_with(&data, &["--master-key-file", &key_arg]);
    let vault = serve_existing(
        Dir::new("backup-server"),
        data.clone(),
        admin.clone(),
        &["--master-key-file", &key_arg],
    );
    let (_, reader) = vault.issue(&["secrets:read:load/*"], None);

    // A writer sets secrets in a loop; `acked` holds the ones the server acknowledged.
    let acked = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), vault.addr.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let status = client
                    .put(format!("{addr}/v1/agents/load/secrets/K_{i}"))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({ "value": value_of(i) }))
                    .send()
                    .expect("PUT")
                    .status();
                assert_eq!(status.as_u16(), 201, "set K_{i}");
                i += 1;
                *acked.lock().expect("lock") = i;
            }
        })
    };
    wait_until(Duration::from_secs(60), "30 writes acknowledged", || {
        *acked.lock().expect("lock") >= 30
    });
    let before = *acked.lock().expect("lock");
    let backup = dir.join("vault-backup.db");
    let out = vault_run(&[
        "backup".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Writes went on during and after the backup.
    wait_until(Duration::from_secs(60), "writes continue", || {
        *acked.lock().expect("lock") >= before + 10
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let total = *acked.lock().expect("lock");

    // The backup is private and holds neither the master key nor a value in clear.
    assert_eq!(file_mode(&backup), 0o600);
    let bytes = std::fs::read(&backup).expect("backup");
    let key_hex = std::fs::read_to_string(&key).expect("key");
    let key_raw = hex::decode(key_hex.trim()).expect("hex key");
    assert!(
        !contains(&bytes, key_hex.trim().as_bytes()),
        "backup holds the key (hex)"
    );
    assert!(!contains(&bytes, &key_raw), "backup holds the key (raw)");
    assert!(
        !contains(&bytes, b"backup-load-value"),
        "backup holds a value"
    );
    drop(vault);

    // Restore into a fresh data directory, serve it, read through agent-run.
    let restored = dir.join("restored");
    let out = vault_run(&[
        "restore".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
        "--master-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(file_mode(&restored), 0o700);
    assert_eq!(file_mode(&restored.join("vault.db")), 0o600);
    let server = serve_existing(
        Dir::new("restored-server"),
        restored,
        String::new(),
        &["--master-key-file", &key_arg],
    );
    let launched = agent_run(Mode::Plain, ["--store", &server.addr, "--", "/usr/bin/env"])
        .env("AGENT_RUN_TOKEN", &reader)
        .run(&Dir::new("backup-launch"));
    launched.assert_code(0);
    let env: std::collections::HashMap<&str, &str> = launched
        .stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    for i in 0..before {
        assert_eq!(
            env.get(format!("K_{i}").as_str()).copied(),
            Some(value_of(i).as_str()),
            "K_{i}, acknowledged before the backup began, is missing or wrong"
        );
    }
    let found = env.keys().filter(|k| k.starts_with("K_")).count();
    assert!(
        (before..=total).contains(&found),
        "{found} secrets restored; {before} before the backup, {total} in all"
    );
}

#[test]
fn backup_and_restore_refuse_without_changing_anything() {
    let dir = Dir::new("backup-refuse");
    let key = dir.join("master-key");
    let data = dir.join("data");
    init_with(&data, &["--master-key-file", key.to_str().expect("utf-8")]);
    let backup = dir.join("b.db");
    let ok = vault_run(&[
        "backup".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // A backup never overwrites a file.
    let again = vault_run(&[
        "backup".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));

    // A wrong key is refused, naming where it came from; the target stays absent.
    let wrong = dir.join("wrong-key");
    std::fs::write(&wrong, "22".repeat(32)).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let target = dir.join("target");
    let out = vault_run(&[
        "restore".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        target.as_os_str(),
        "--master-key-file".as_ref(),
        wrong.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "the master key from --master-key-file {}: does not open the backup",
            wrong.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists(), "a refused restore created the directory");

    // A non-empty directory is refused and left as it was.
    let before: Vec<_> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let out = vault_run(&[
        "restore".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--master-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    let after: Vec<_> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after);

    // Not a database at all.
    let junk = dir.write("junk.db", "not sqlite at all, just text");
    let out = vault_run(&[
        "restore".as_ref(),
        junk.as_os_str(),
        "--data-dir".as_ref(),
        target.as_os_str(),
        "--master-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!target.exists());
}
