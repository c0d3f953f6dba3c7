//! Operating agent-vault (issue 15): the master key outside the data directory (flag,
//! variable, systemd credential, and a wrong key refused naming its source).

use std::os::unix::fs::PermissionsExt;

use crate::common::vault::ops::{init_with, serve_existing, spawn_serve};
use crate::common::vault::{file_mode, serve_cmd};
use crate::common::Dir;

const OTHER_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn write_key(path: &std::path::Path, key: &str, mode: u32) {
    std::fs::write(path, format!("{key}\n")).expect("writing a key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn master_key_file_keeps_the_key_out_of_the_data_dir() {
    let dir = Dir::new("keyfile");
    let data = dir.join("data");
    let key = dir.join("keys/master-key");
    std::fs::create_dir_all(key.parent().expect("parent")).expect("mkdir");
    let key_arg = key.to_str().expect("utf-8").to_string();
    // init creates the missing key file (0600) and writes no key into the data directory.
    let admin = init_with(&data, &["--master-key-file", &key_arg]);
    assert_eq!(file_mode(&key), 0o600);
    assert!(!data.join("master.key").exists());
    let vault = serve_existing(
        Dir::new("keyfile-server"),
        data.clone(),
        admin,
        &["--master-key-file", &key_arg],
    );
    vault.set("bot", "K", "value-under-the-outside-key");
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    drop(vault);

    // Without the flag there is no key: refused, saying where it looked and what to pass.
    let out = spawn_serve(&mut serve_cmd(&data, "127.0.0.1:0")).expect_err("no key");
    assert!(out.contains("master.key does not exist"), "{out}");
    assert!(out.contains("--master-key-file"), "{out}");

    // AGENT_VAULT_MASTER_KEY_FILE is the flag's variable; values come back.
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY_FILE", &key);
    let (mut child, addr) = spawn_serve(&mut serve).expect("serves with the variable");
    let body: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{addr}/v1/runtime/secrets"))
        .bearer_auth(&reader)
        .send()
        .expect("GET")
        .json()
        .expect("JSON");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        body["secrets"][0]["value"], "value-under-the-outside-key",
        "{body}"
    );

    // A key file group or others can read is refused, naming the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.args(["--master-key-file", &key_arg]);
    let out = spawn_serve(&mut serve).expect_err("readable key refused");
    assert!(out.contains("chmod 600"), "{out}");
}

#[test]
fn systemd_credential_gives_the_key_after_flag_and_variable() {
    let dir = Dir::new("keycred");
    let data = dir.join("data");
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).expect("mkdir");
    let key = "ab".repeat(32);
    // As systemd lays out LoadCredential=: a 0400 file named after the credential in a 0500
    // directory named by $CREDENTIALS_DIRECTORY.
    write_key(&creds.join("master-key"), &key, 0o400);
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let mut init = crate::common::vault::init_cmd(&data);
    init.env("CREDENTIALS_DIRECTORY", &creds);
    let out = crate::common::run(&mut init, None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !data.join("master.key").exists(),
        "the credential was used, no file made"
    );

    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("CREDENTIALS_DIRECTORY", &creds);
    let (mut child, _) = spawn_serve(&mut serve).expect("serves with the credential");
    let _ = child.kill();
    let _ = child.wait();

    // The flag wins over the credential: a wrong key there is refused, named by its flag.
    let wrong = dir.join("wrong-key");
    write_key(&wrong, OTHER_KEY, 0o600);
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .env("CREDENTIALS_DIRECTORY", &creds)
        .arg("--master-key-file")
        .arg(&wrong);
    let out = spawn_serve(&mut serve).expect_err("wrong key via the flag");
    assert!(
        out.contains(&format!(
            "the master key from --master-key-file {}",
            wrong.display()
        )),
        "{out}"
    );
    // So does the variable.
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("AGENT_VAULT_MASTER_KEY", OTHER_KEY);
    let out = spawn_serve(&mut serve).expect_err("wrong key via the variable");
    assert!(
        out.contains("the master key from AGENT_VAULT_MASTER_KEY"),
        "{out}"
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// Before the key check, a store without values accepted any key (and then wrote values
/// under it that the right key could not read).
#[test]
fn wrong_key_is_refused_on_an_empty_store_naming_its_source() {
    let dir = Dir::new("wrongkey");
    let data = dir.join("data");
    init_with(&data, &[]);
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY", OTHER_KEY);
    let out = spawn_serve(&mut serve).expect_err("wrong key refused");
    assert!(
        out.contains("the master key from AGENT_VAULT_MASTER_KEY: does not open")
            && out.contains("wrong key?"),
        "{out}"
    );
    assert!(
        !out.contains(OTHER_KEY),
        "the key itself is never shown: {out}"
    );
    // The right key (the data directory's file) still opens it.
    let (mut child, _) = spawn_serve(&mut serve_cmd(&data, "127.0.0.1:0")).expect("serves");
    let _ = child.kill();
    let _ = child.wait();
}

/// Which of `keys` opens the store in `data`: each is tried with a real `serve`; for the
/// one that opens, every run-time value `reader` sees is returned.
fn opened_by(
    data: &std::path::Path,
    keys: &[&std::path::Path],
    reader: &str,
) -> Vec<(usize, std::collections::BTreeMap<String, String>)> {
    let mut opened = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut serve = serve_cmd(data, "127.0.0.1:0");
        serve.arg("--master-key-file").arg(key);
        match spawn_serve(&mut serve) {
            Ok((mut child, addr)) => {
                let body: serde_json::Value = reqwest::blocking::Client::new()
                    .get(format!("{addr}/v1/runtime/secrets"))
                    .bearer_auth(reader)
                    .send()
                    .expect("GET")
                    .json()
                    .expect("JSON");
                let _ = child.kill();
                let _ = child.wait();
                let values = body["secrets"]
                    .as_array()
                    .expect("secrets")
                    .iter()
                    .map(|s| {
                        (
                            s["name"].as_str().expect("name").to_string(),
                            s["value"].as_str().expect("value").to_string(),
                        )
                    })
                    .collect();
                opened.push((i, values));
            }
            Err(err) => assert!(err.contains("wrong key?"), "{err}"),
        }
    }
    opened
}

fn rekey_cmd(
    data: &std::path::Path,
    old: &std::path::Path,
    new: &std::path::Path,
) -> std::process::Command {
    let mut cmd = crate::common::vault::vault_cmd();
    cmd.args(["rekey", "--data-dir"])
        .arg(data)
        .arg("--master-key-file")
        .arg(old)
        .arg("--new-master-key-file")
        .arg(new);
    cmd
}

/// Issue 15: a rekey killed with SIGKILL at random points (20 times) leaves a store that
/// opens with exactly one of the two keys and loses nothing; a finished one leaves only the
/// new key able to open it.
#[test]
fn rekey_survives_sigkill_at_random_points_and_retires_the_old_key() {
    let dir = Dir::new("rekey");
    let data = dir.join("data");
    let key_a = dir.join("key-a");
    let key_b = dir.join("key-b");
    write_key(&key_a, &"a1".repeat(32), 0o600);
    write_key(&key_b, &"b2".repeat(32), 0o600);
    let key_a_arg = key_a.to_str().expect("utf-8").to_string();
    let admin = init_with(&data, &["--master-key-file", &key_a_arg]);
    let vault = serve_existing(
        Dir::new("rekey-server"),
        data.clone(),
        admin,
        &["--master-key-file", &key_a_arg],
    );
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..40 {
        let value = format!("rekey-value-{i:03}");
        vault.set("rk", &format!("K_{i}"), &value);
        expected.insert(format!("K_{i}"), value);
    }
    // A second version of some keys: old versions are re-wrapped too.
    for i in 0..10 {
        let value = format!("rekey-value-{i:03}-v2");
        vault.set("rk", &format!("K_{i}"), &value);
        expected.insert(format!("K_{i}"), value);
    }
    let (_, reader) = vault.issue(&["secrets:read:rk/*"], None);
    drop(vault);

    let keys = [key_a.as_path(), key_b.as_path()];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut current = 0;
    for round in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // 50 versions at 4 ms each: the transaction lasts about 200 ms; kill anywhere in
        // 0–300 ms (before the lock, mid-transaction, or after the commit).
        let kill_after = std::time::Duration::from_millis(rng % 300);
        let mut rekey = rekey_cmd(&data, keys[current], keys[1 - current]);
        rekey
            .env("AGENT_VAULT_TEST_REKEY_ROW_DELAY_MS", "4")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = rekey.spawn().expect("spawn rekey");
        std::thread::sleep(kill_after);
        let _ = child.kill();
        let _ = child.wait();
        let opened = opened_by(&data, &keys, &reader);
        assert_eq!(
            opened.len(),
            1,
            "round {round} (seed {seed}, killed after {kill_after:?}): opened by keys {:?}",
            opened.iter().map(|(i, _)| *i).collect::<Vec<_>>()
        );
        assert_eq!(
            opened[0].1, expected,
            "round {round} (seed {seed}): values lost or changed"
        );
        eprintln!(
            "round {round}: killed after {kill_after:?}, opened by key {}",
            opened[0].0
        );
        current = opened[0].0;
    }

    // A rekey run to its end to a key file it creates: only that key opens the store.
    let key_c = dir.join("key-c");
    let out = crate::common::run(&mut rekey_cmd(&data, keys[current], &key_c), None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(file_mode(&key_c), 0o600);
    let all = [key_a.as_path(), key_b.as_path(), key_c.as_path()];
    let opened = opened_by(&data, &all, &reader);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].0, 2, "only the new key opens the store");
    assert_eq!(opened[0].1, expected);

    // The old key cannot start another rekey, and a refused one changes nothing.
    let key_d = dir.join("key-d");
    let out = crate::common::run(&mut rekey_cmd(&data, keys[current], &key_d), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong key?"),
        "{out:?}"
    );
    assert!(!key_d.exists(), "a refused rekey made a key file");
}

fn user_version(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .expect("open")
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version")
}

/// Issue 15: the database made by the first agent-vault in the history (commit cf3d957,
/// schema version 1; see tests/fixtures/vault-first-release/make.sh) opens with this binary,
/// which migrates it and reads back every value.
#[test]
fn a_newer_binary_migrates_the_first_release_database() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-first-release");
    let dir = Dir::new("migrate-fixture");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for entry in std::fs::read_dir(fixture.join("data")).expect("fixture data") {
        let entry = entry.expect("entry");
        let to = data.join(entry.file_name());
        std::fs::copy(entry.path(), &to).expect("copy");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert_eq!(
        user_version(&data.join("vault.db")),
        1,
        "the fixture is schema 1"
    );
    let key = std::fs::read_to_string(fixture.join("master-key")).expect("key");
    let token = std::fs::read_to_string(fixture.join("read.token")).expect("token");
    let token = token
        .lines()
        .next()
        .expect("a token line")
        .trim()
        .to_string();

    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY", key.trim());
    let (mut child, addr) = spawn_serve(&mut serve).expect("the first release's store opens");
    let body: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{addr}/v1/runtime/secrets"))
        .bearer_auth(&token)
        .send()
        .expect("GET")
        .json()
        .expect("JSON");
    let _ = child.kill();
    let _ = child.wait();
    let values: std::collections::BTreeMap<&str, &str> = body["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["value"].as_str().expect("value"),
            )
        })
        .collect();
    assert_eq!(
        values,
        std::collections::BTreeMap::from([
            ("API_KEY", "sk-fixture-first-release-0002"),
            ("DB_PASSWORD", "p@ss w0rd \"quoted\""),
            ("REGION", "eu-west-1"),
            ("SHARED_URL", "https://fixture.example"),
        ]),
        "{body}"
    );
    // Migrated: the newest schema, its history, and a key check that now refuses a wrong key.
    let db = data.join("vault.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let latest: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
    assert!(latest >= 2, "{latest}");
    let history: Vec<(i64, String)> = conn
        .prepare("SELECT version, by_version FROM schema_migrations ORDER BY version")
        .expect("history")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("history rows");
    assert_eq!(history.len() as i64, latest);
    assert_eq!(history[0], (1, "before schema history".to_string()));
    assert_eq!(history[1].1, env!("CARGO_PKG_VERSION"));
    // Migration 3 (issue 14): every old entry is standard and untagged.
    let labels: Vec<(String, String)> = conn
        .prepare("SELECT DISTINCT tier, tags FROM entries")
        .expect("tier and tags columns")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("label rows");
    assert_eq!(labels, vec![("standard".to_string(), "{}".to_string())]);
    drop(conn);
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY", OTHER_KEY);
    let out = spawn_serve(&mut serve).expect_err("a wrong key is refused");
    assert!(out.contains("wrong key?"), "{out}");
}

/// Issue 15: a database written by a newer agent-vault (a schema version this binary does
/// not know) is refused with a message saying so, and left untouched. Before, it was opened
/// as if it were current.
#[test]
fn an_older_binary_refuses_a_newer_database() {
    let dir = Dir::new("schema-newer");
    let data = dir.join("data");
    init_with(&data, &[]);
    let db = data.join("vault.db");
    let newer = 99;
    rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", newer)
        .expect("set user_version");
    let before = std::fs::read(&db).expect("db");
    let out = spawn_serve(&mut serve_cmd(&data, "127.0.0.1:0")).expect_err("refused");
    assert!(
        out.contains(&format!(
            "has schema version {newer}, newer than this agent-vault"
        )) && out.contains("run the agent-vault that wrote it"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&db).expect("db"),
        before,
        "the database was changed"
    );
    assert_eq!(user_version(&db), newer);
}
