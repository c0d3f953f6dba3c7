//! The master key kept by OpenBao Transit (issue 15), against a real `bao server -dev` with
//! the transit engine: init and serve with `--master-key openbao-transit://…`, values read back
//! through agent-run after a restart, no plaintext key anywhere in the data directory, and
//! the refusals (wrong key name, revoked token, OpenBao stopped, no `--master-key`), each
//! naming the Transit key; backup and restore; rekey between Transit keys and to and from a
//! key file.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use serde_json::json;

use crate::common::openbao::Bao;
use crate::common::vault::ops::{init_with, serve_existing, spawn_serve};
use crate::common::vault::{file_mode, serve_cmd, vault_cmd, VaultServer};
use crate::common::{agent_run, contains, describe, run, Dir, Mode};

/// A policy that may use one Transit key and nothing else: what the docs tell an operator to
/// give agent-vault's token.
fn transit_policy(key: &str) -> String {
    format!(
        "path \"transit/encrypt/{key}\" {{ capabilities = [\"update\"] }}\n\
         path \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n"
    )
}

/// A dev OpenBao with the transit engine and the keys `agent-vault` and `other`.
fn transit_bao(dir: &Dir) -> Bao {
    let bao = Bao::dev(dir);
    bao.ok(
        reqwest::Method::POST,
        "sys/mounts/transit",
        Some(json!({ "type": "transit" })),
    );
    for key in ["agent-vault", "other"] {
        bao.ok(reqwest::Method::POST, &format!("transit/keys/{key}"), None);
        bao.ok(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/transit-{key}"),
            Some(json!({ "policy": transit_policy(key) })),
        );
    }
    bao
}

/// A token whose only policy is `transit-KEY`, written to a 0600 file.
fn token_file(bao: &Bao, dir: &Dir, key: &str) -> (String, PathBuf) {
    let reply = bao.ok(
        reqwest::Method::POST,
        "auth/token/create",
        Some(json!({ "policies": [format!("transit-{key}")], "no_default_policy": true })),
    );
    let token = reply["auth"]["client_token"]
        .as_str()
        .expect("a client token")
        .to_owned();
    let path = dir.join(&format!("{key}.bao-token"));
    std::fs::write(&path, format!("{token}\n")).expect("writing the token file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (token, path)
}

fn url(bao: &Bao, key: &str) -> String {
    format!(
        "openbao-transit://{}/transit/{key}?tls=off",
        bao.addr.trim_start_matches("http://")
    )
}

fn key_args(url: &str, token: &Path) -> Vec<String> {
    vec![
        "--master-key".into(),
        url.into(),
        "--master-key-token-file".into(),
        token.to_str().expect("utf-8").into(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `serve` that is expected to refuse: its output (exit status and stderr).
fn serve_refused(data: &Path, args: &[String]) -> Output {
    let mut serve = serve_cmd(data, "127.0.0.1:0");
    serve.args(args);
    let out = run(&mut serve, None);
    assert!(
        !out.status.success(),
        "serve started:{}",
        describe(&serve, &out)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The launcher's view: the secrets `reader` may read, as agent-run injects them, plainly
/// and as PID 1 of a new PID namespace.
fn assert_agent_run_reads(server: &VaultServer, reader: &str, key: &str, value: &str) {
    for mode in [Mode::Plain, Mode::Pid1] {
        let launched = agent_run(mode, ["--store", &server.addr, "--", "/usr/bin/env"])
            .env("AGENT_RUN_TOKEN", reader)
            .run(&Dir::new("transit-launch"));
        launched.assert_code(0);
        assert!(
            launched
                .stdout
                .lines()
                .any(|l| l == format!("{key}={value}")),
            "{key} missing: {}",
            launched.stdout
        );
    }
}

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    out
}

#[test]
fn transit_key_opens_the_store_across_restarts_with_no_key_on_disk() {
    let dir = Dir::new("transit");
    let bao = transit_bao(&dir);
    let (bao_token, token) = token_file(&bao, &dir, "agent-vault");
    let data = dir.join("data");
    let args = key_args(&url(&bao, "agent-vault"), &token);
    let admin = init_with(&data, &strs(&args));
    assert!(!data.join("master.key").exists(), "no plaintext key file");
    let wrapped = data.join("master.key.transit");
    assert_eq!(file_mode(&wrapped), 0o600);
    let text = std::fs::read_to_string(&wrapped).expect("the wrapped key");
    let ciphertext = text
        .lines()
        .find(|l| l.starts_with("vault:v1:"))
        .unwrap_or_else(|| panic!("no Transit ciphertext in {text:?}"))
        .to_owned();
    assert!(text.contains(&url(&bao, "agent-vault")), "{text}");

    let mut server = serve_existing(
        Dir::new("transit-server"),
        data.clone(),
        admin,
        &strs(&args),
    );
    server.set("bot", "API_KEY", "value-under-transit");
    let (_, reader) = server.issue(&["secrets:read:bot/*"], None);
    server.terminate();
    // Restarted: Transit unwraps the key again and the value comes back through agent-run.
    server.start_again();
    assert_agent_run_reads(&server, &reader, "API_KEY", "value-under-transit");
    server.assert_not_stored_or_logged(&["value-under-transit"]);
    let mut logs = server.log();

    // An online backup carries the wrapped key beside it (BACKUP.transit); restored with
    // the same --master-key into a new directory, the value comes back.
    let backup = dir.join("backup.db");
    let mut cmd = vault_cmd();
    cmd.arg("backup").arg(&backup).arg("--data-dir").arg(&data);
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert_eq!(file_mode(&dir.join("backup.db.transit")), 0o600);
    drop(server);
    let restored = dir.join("restored");
    let mut cmd = vault_cmd();
    cmd.arg("restore")
        .arg(&backup)
        .arg("--data-dir")
        .arg(&restored)
        .args(&args);
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert!(!restored.join("master.key").exists());
    let server = serve_existing(
        Dir::new("transit-restored"),
        restored.clone(),
        String::new(),
        &strs(&args),
    );
    assert_agent_run_reads(&server, &reader, "API_KEY", "value-under-transit");
    logs.push_str(&server.log());
    drop(server);
    // Without the wrapped key beside it, a restore with --master-key is refused, saying why.
    let bare = dir.join("bare.db");
    std::fs::copy(&backup, &bare).expect("copy");
    let mut cmd = vault_cmd();
    cmd.arg("restore")
        .arg(&bare)
        .arg("--data-dir")
        .arg(dir.join("restored-bare"))
        .args(&args);
    let out = run(&mut cmd, None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&cmd, &out));
    assert!(
        stderr(&out).contains("bare.db.transit does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("restored-bare").exists());
    assert!(!logs.contains(&bao_token), "the OpenBao token was logged");

    // The master key itself, as Transit gives it to a holder of the ciphertext and a token:
    // nowhere in the data directory, the backup or the restored copy, in any encoding.
    let reply = bao.ok(
        reqwest::Method::POST,
        "transit/decrypt/agent-vault",
        Some(json!({ "ciphertext": ciphertext })),
    );
    let b64 = reply["data"]["plaintext"].as_str().expect("plaintext");
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(key.len(), 32);
    let hex_key = hex::encode(&key);
    assert!(
        !logs.contains(&hex_key) && !logs.contains(b64),
        "the master key was logged (-vvv)"
    );
    let mut files = files_under(&data);
    files.extend(files_under(&restored));
    for path in [backup.clone(), dir.join("backup.db.transit")] {
        files.push((path.clone(), std::fs::read(&path).expect("read")));
    }
    for (path, bytes) in files {
        for needle in [&key[..], hex_key.as_bytes(), b64.as_bytes()] {
            assert!(
                !contains(&bytes, needle),
                "{} holds the master key",
                path.display()
            );
        }
    }
    // And it is this store's key: given directly, it opens the store.
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve.env("AGENT_VAULT_MASTER_KEY", &hex_key);
    let (mut child, _) = spawn_serve(&mut serve).expect("the unwrapped key opens the store");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn transit_refusals_name_the_key_and_change_nothing() {
    let dir = Dir::new("transit-refusals");
    let mut bao = transit_bao(&dir);
    let (token, token_path) = token_file(&bao, &dir, "agent-vault");
    let data = dir.join("data");
    let good = url(&bao, "agent-vault");
    init_with(&data, &strs(&key_args(&good, &token_path)));

    // No --master-key: says the key is wrapped by Transit and which URL to pass.
    let out = serve_refused(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("pass --master-key {good}")),
        "{}",
        stderr(&out)
    );

    let root_token = dir.join("root.bao-token");
    std::fs::write(&root_token, &bao.token).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root_token, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A key name Transit does not have (a root token may use any).
    let missing = url(&bao, "no-such-key");
    let out = serve_refused(&data, &key_args(&missing, &root_token));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stderr(&out);
    assert!(
        text.contains(&format!(
            "the master key wrapped by OpenBao Transit {missing}"
        )) && text.contains("check the mount and key name"),
        "{text}"
    );

    // Another existing key: it cannot decrypt this ciphertext, and the refusal names the key
    // the file was wrapped by.
    let other = url(&bao, "other");
    let out = serve_refused(&data, &key_args(&other, &root_token));
    let text = stderr(&out);
    assert!(
        text.contains(&other) && text.contains(&format!("was wrapped by {good}")),
        "{text}"
    );

    // The token revoked: refused, naming the Transit key and what the token needs.
    bao.ok(
        reqwest::Method::POST,
        "auth/token/revoke",
        Some(json!({ "token": token })),
    );
    let out = serve_refused(&data, &key_args(&good, &token_path));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stderr(&out);
    assert!(
        text.contains(&format!("the master key wrapped by OpenBao Transit {good}"))
            && text.contains("OpenBao refused the token (HTTP 403"),
        "{text}"
    );
    assert!(!text.contains(&token), "the token is never printed: {text}");

    // A copy of the data directory holds only Transit's ciphertext: with OpenBao stopped,
    // nothing opens it.
    let copy = dir.join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for name in ["vault.db", "master.key.transit"] {
        std::fs::copy(data.join(name), copy.join(name)).expect("copy");
    }
    bao.kill();
    let out = serve_refused(&copy, &key_args(&good, &root_token));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stderr(&out);
    assert!(
        text.contains(&format!("the master key wrapped by OpenBao Transit {good}"))
            && text.contains(&format!("cannot reach OpenBao at {}", bao.addr)),
        "{text}"
    );
    // init against a stopped OpenBao makes nothing.
    let fresh = dir.join("fresh");
    let mut init = crate::common::vault::init_cmd(&fresh);
    init.args(key_args(&good, &root_token));
    let out = run(&mut init, None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&init, &out));
    assert!(!fresh.exists(), "a refused init leaves nothing behind");

    // Plain http off loopback is a usage error, before anything is read or sent.
    let out = serve_refused(
        &data,
        &key_args(
            "openbao-transit://10.255.255.1:8200/transit/agent-vault?tls=off",
            &token_path,
        ),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

/// The variable gives the token too, and leaves agent-vault's environment at start.
#[test]
fn transit_token_from_bao_token_is_scrubbed_from_the_environment() {
    let dir = Dir::new("transit-env");
    let bao = transit_bao(&dir);
    let (token, _) = token_file(&bao, &dir, "agent-vault");
    let data = dir.join("data");
    let good = url(&bao, "agent-vault");
    let mut init = crate::common::vault::init_cmd(&data);
    init.args(["--master-key", &good]).env("BAO_TOKEN", &token);
    let out = run(&mut init, None);
    assert!(out.status.success(), "{}", describe(&init, &out));
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .env("AGENT_VAULT_MASTER_KEY_URL", &good)
        .env("BAO_TOKEN", &token);
    let (mut child, _) = spawn_serve(&mut serve).expect("serves with BAO_TOKEN");
    let environ = std::fs::read(format!("/proc/{}/environ", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let environ = environ.expect("reading the server's environ (the tests run as root)");
    assert!(
        contains(&environ, b"BAO_TOKEN=") && !contains(&environ, token.as_bytes()),
        "BAO_TOKEN's value is still in /proc/PID/environ"
    );
}

fn rekey(data: &Path, args: &[String]) -> Output {
    let mut cmd = vault_cmd();
    cmd.arg("rekey").arg("--data-dir").arg(data).args(args);
    let out = run(&mut cmd, None);
    assert!(
        out.status.success(),
        "rekey failed:{}",
        describe(&cmd, &out)
    );
    out
}

fn reads_back(data: &Path, args: &[String], reader: &str) {
    let server = serve_existing(
        Dir::new("transit-rekeyed"),
        data.to_path_buf(),
        String::new(),
        &strs(args),
    );
    assert_agent_run_reads(&server, reader, "K", "kept-through-rekeys");
}

#[test]
fn rekey_between_transit_keys_and_to_and_from_a_key_file() {
    let dir = Dir::new("transit-rekey");
    let bao = transit_bao(&dir);
    let root_token = dir.join("root.bao-token");
    std::fs::write(&root_token, &bao.token).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root_token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (a, b) = (url(&bao, "agent-vault"), url(&bao, "other"));
    let on_a = key_args(&a, &root_token);
    let on_b = key_args(&b, &root_token);
    let data = dir.join("data");
    let admin = init_with(&data, &strs(&on_a));
    let server = serve_existing(Dir::new("transit-rk"), data.clone(), admin, &strs(&on_a));
    server.set("bot", "K", "kept-through-rekeys");
    let (_, reader) = server.issue(&["secrets:read:bot/*"], None);
    drop(server);

    // Transit key A → Transit key B: A no longer opens the store, B does.
    let mut args = on_a.clone();
    args.extend(["--new-master-key".to_string(), b.clone()]);
    rekey(&data, &args);
    assert!(!data.join("master.key.transit.new").exists());
    serve_refused(&data, &on_a);
    reads_back(&data, &on_b, &reader);

    // Transit B → a key file: the wrapped key, which opens nothing now, is removed.
    let file = dir.join("master-key");
    let file_arg = vec![
        "--master-key-file".to_string(),
        file.to_str().expect("utf-8").to_string(),
    ];
    let mut args = on_b.clone();
    args.extend(["--new-master-key-file".to_string(), file_arg[1].clone()]);
    rekey(&data, &args);
    assert!(!data.join("master.key.transit").exists());
    reads_back(&data, &file_arg, &reader);

    // A key file → Transit A.
    let mut args = file_arg.clone();
    args.extend([
        "--new-master-key".to_string(),
        a.clone(),
        "--new-master-key-token-file".to_string(),
        root_token.to_str().expect("utf-8").to_string(),
    ]);
    rekey(&data, &args);
    // The old key file, still about, is refused with the URL that opens the store now.
    let text = stderr(&serve_refused(&data, &file_arg));
    assert!(text.contains(&format!("pass --master-key {a}")), "{text}");
    reads_back(&data, &on_a, &reader);
    // Offline recovery (`tokens issue --offline`) opens the store through Transit too.
    let mut cmd = vault_cmd();
    cmd.args([
        "tokens",
        "issue",
        "--offline",
        "--scope",
        "admin",
        "--data-dir",
    ])
    .arg(&data)
    .args(&on_a);
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("avt_"));

    // A rekey cut off after its commit, before the rename (the state a SIGKILL leaves there):
    // master.key.transit still holds the old wrapped key, master.key.transit.new the new one.
    // Starting with the new key finishes the rename.
    let old_wrapped = std::fs::read(data.join("master.key.transit")).expect("read");
    let mut args = on_a.clone();
    args.extend(["--new-master-key".to_string(), b.clone()]);
    rekey(&data, &args);
    std::fs::rename(
        data.join("master.key.transit"),
        data.join("master.key.transit.new"),
    )
    .expect("rename");
    std::fs::write(data.join("master.key.transit"), old_wrapped).expect("write");
    reads_back(&data, &on_b, &reader);
    assert!(!data.join("master.key.transit.new").exists());
    serve_refused(&data, &on_a);
}

/// https is the default: OpenBao's CA from BAO_CACERT; without it the refusal names the fix,
/// and so does plain http to a TLS listener.
#[test]
fn transit_over_https_trusts_bao_cacert() {
    let dir = Dir::new("transit-tls");
    let bao = Bao::dev_tls(&dir);
    bao.ok(
        reqwest::Method::POST,
        "sys/mounts/transit",
        Some(json!({ "type": "transit" })),
    );
    bao.ok(reqwest::Method::POST, "transit/keys/agent-vault", None);
    let ca = bao.ca.clone().expect("the dev server's CA");
    let host = bao.addr.trim_start_matches("https://");
    let https = format!("openbao-transit://{host}/transit/agent-vault");
    let mut init = crate::common::vault::init_cmd(&dir.join("data"));
    init.args(["--master-key", &https])
        .env("BAO_TOKEN", &bao.token)
        .env("BAO_CACERT", &ca);
    let out = run(&mut init, None);
    assert!(out.status.success(), "{}", describe(&init, &out));

    let mut serve = serve_cmd(&dir.join("data"), "127.0.0.1:0");
    serve
        .args(["--master-key", &https])
        .env("BAO_TOKEN", &bao.token)
        .env("BAO_CACERT", &ca);
    let (mut child, _) = spawn_serve(&mut serve).expect("serves over https");
    let _ = child.kill();
    let _ = child.wait();

    let mut serve = serve_cmd(&dir.join("data"), "127.0.0.1:0");
    serve
        .args(["--master-key", &https])
        .env("BAO_TOKEN", &bao.token)
        .env_remove("BAO_CACERT")
        .env_remove("VAULT_CACERT");
    let text = stderr(&run(&mut serve, None));
    assert!(text.contains("set BAO_CACERT"), "{text}");

    let mut serve = serve_cmd(&dir.join("data"), "127.0.0.1:0");
    serve
        .args(["--master-key", &format!("{https}?tls=off")])
        .env("BAO_TOKEN", &bao.token);
    let text = stderr(&run(&mut serve, None));
    assert!(text.contains("drop ?tls=off"), "{text}");
}

/// Which of the Transit keys `urls` opens the store: each tried with a real `serve`, in
/// order; for the one that opens, every run-time value `reader` sees.
fn opened_by_transit(
    data: &Path,
    urls: &[&str],
    token: &Path,
    reader: &str,
) -> Vec<(usize, std::collections::BTreeMap<String, String>)> {
    let mut opened = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let mut serve = serve_cmd(data, "127.0.0.1:0");
        serve.args(key_args(url, token));
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
            Err(err) => assert!(
                err.contains(&format!("the master key wrapped by OpenBao Transit {url}")),
                "{err}"
            ),
        }
    }
    opened
}

/// A rekey between two Transit keys killed with SIGKILL at random points (before its
/// transaction, inside it, between its commit and the rename of `master.key.transit.new`,
/// after it) leaves a store that opens with exactly one of the two keys and loses nothing.
#[test]
fn transit_rekey_survives_sigkill_at_random_points() {
    let dir = Dir::new("transit-rekey-kill");
    let bao = transit_bao(&dir);
    let root_token = dir.join("root.bao-token");
    std::fs::write(&root_token, &bao.token).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root_token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let urls = [url(&bao, "agent-vault"), url(&bao, "other")];
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let data = dir.join("data");
    let admin = init_with(&data, &strs(&key_args(urls[0], &root_token)));
    let server = serve_existing(
        Dir::new("transit-rekey-kill-server"),
        data.clone(),
        admin,
        &strs(&key_args(urls[0], &root_token)),
    );
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..25 {
        let value = format!("transit-rekey-value-{i:03}");
        server.set("rk", &format!("K_{i}"), &value);
        expected.insert(format!("K_{i}"), value);
    }
    let (_, reader) = server.issue(&["secrets:read:rk/*"], None);
    drop(server);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut current = 0;
    for round in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // 25 versions at 4 ms each: the transaction lasts about 100 ms after two Transit
        // calls; kill anywhere in 0–300 ms.
        let kill_after = std::time::Duration::from_millis(rng % 300);
        let mut rekey = vault_cmd();
        rekey
            .arg("rekey")
            .arg("--data-dir")
            .arg(&data)
            .args(key_args(urls[current], &root_token))
            .args(["--new-master-key", urls[1 - current]])
            .env("AGENT_VAULT_TEST_REKEY_ROW_DELAY_MS", "4")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = rekey.spawn().expect("spawn rekey");
        std::thread::sleep(kill_after);
        let _ = child.kill();
        let _ = child.wait();
        let opened = opened_by_transit(&data, &urls, &root_token, &reader);
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
            "round {round}: killed after {kill_after:?}, opened by {}",
            urls[opened[0].0]
        );
        current = opened[0].0;
        assert!(
            !data.join("master.key.transit.new").exists(),
            "round {round}: a start left the pending wrapped key behind"
        );
    }
}
