//! Test helpers for agent-vault: start the real binary on `127.0.0.1:0`, talk HTTP to it,
//! run its admin CLI, and check that values never leak.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{contains, run, run_ok, Dir};

pub mod ops;

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-vault");

/// The agent-vault under test: `AGENT_VAULT_BIN` when set (the release build, see
/// `super::agent_run_bin`), else the debug binary of this test run.
pub fn vault_bin() -> &'static str {
    static BIN_PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN_PATH.get_or_init(|| {
        std::env::var("AGENT_VAULT_BIN")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| BIN.to_owned())
    })
}

/// `agent-vault` with a clean environment (no inherited AGENT_VAULT_*).
pub fn vault_cmd() -> Command {
    let mut cmd = Command::new(vault_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("AGENT_VAULT_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `agent-vault init --data-dir DATA_DIR` (clean environment, see `vault_cmd`).
pub fn init_cmd(data_dir: &Path) -> Command {
    let mut cmd = vault_cmd();
    cmd.args(["init", "--data-dir"]).arg(data_dir);
    cmd
}

/// `agent-vault serve --listen LISTEN --data-dir DATA_DIR` (clean environment, see
/// `vault_cmd`); the one way the tests start a server, also when they expect it to refuse.
pub fn serve_cmd(data_dir: &Path, listen: &str) -> Command {
    let mut cmd = vault_cmd();
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir);
    cmd
}

/// A running server; killed (SIGKILL) on drop.
pub struct VaultServer {
    pub dir: Dir,
    pub data_dir: PathBuf,
    pub addr: String,
    pub admin: String,
    child: Option<Child>,
    /// Everything the server wrote to stderr, across restarts.
    log: Arc<Mutex<String>>,
    serve_args: Vec<String>,
    /// `127.0.0.1:0` at first; the bound address after `restart_same_address`.
    listen: String,
}

/// Init a data directory and start `serve -vvv` (trace logging, so every test also checks
/// that nothing secret is logged).
pub fn start_vault() -> VaultServer {
    start_vault_with(&[])
}

pub fn start_vault_with(extra: &[&str]) -> VaultServer {
    let dir = Dir::new("vault");
    let data_dir = dir.join("data");
    let mut init = init_cmd(&data_dir);
    let output = run(&mut init, None);
    assert!(
        output.status.success(),
        "init failed:{}",
        super::describe(&init, &output)
    );
    let admin = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        admin.starts_with("avt_"),
        "init printed no token: {admin:?}"
    );
    let mut server = VaultServer {
        dir,
        data_dir,
        addr: String::new(),
        admin,
        child: None,
        log: Arc::new(Mutex::new(String::new())),
        serve_args: extra.iter().map(|s| s.to_string()).collect(),
        listen: "127.0.0.1:0".to_owned(),
    };
    server.spawn();
    server
}

impl VaultServer {
    fn spawn(&mut self) {
        let mut cmd = serve_cmd(&self.data_dir, &self.listen);
        cmd.arg("-vvv")
            .args(&self.serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning agent-vault serve");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("agent-vault listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_string());
                    }
                }
                let mut log = log.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not print its address; log:\n{}", self.log());
            }
        };
        self.addr = addr;
        self.child = Some(child);
    }

    /// SIGKILL the server (no graceful anything) and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("sending SIGTERM");
        child.wait().expect("waiting for the server")
    }

    /// Start again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Start again on the same data directory *and address*, as a restarted store would
    /// come back for the launchers that know it.
    pub fn restart_same_address(&mut self) {
        self.kill9();
        self.listen = self.addr.trim_start_matches("http://").to_owned();
        self.spawn();
    }

    /// Start on the same data directory and address after `kill9`.
    pub fn start_again(&mut self) {
        self.listen = self.addr.trim_start_matches("http://").to_owned();
        self.spawn();
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    /// One HTTP call; returns status and body text.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().expect("sending the request");
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, String) {
        self.call("GET", path, Some(token), None)
    }

    pub fn put(&self, path: &str, token: &str, body: Value) -> (u16, String) {
        self.call(
            "PUT",
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> (u16, String) {
        self.call(
            "POST",
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn delete(&self, path: &str, token: &str) -> (u16, String) {
        self.call("DELETE", path, Some(token), None)
    }

    /// GET expecting 200, parsed.
    pub fn get_json(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.get(path, token);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Set an agent secret as admin, expecting success.
    pub fn set(&self, agent: &str, key: &str, value: &str) -> Value {
        let (status, body) = self.put(
            &format!("/v1/agents/{agent}/secrets/{key}"),
            &self.admin,
            serde_json::json!({ "value": value }),
        );
        assert!(
            status == 200 || status == 201,
            "set {agent}/{key}: {status} {body}"
        );
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Issue a token as admin; returns (id, token). With `allow_empty`, so a test may issue
    /// a read token before it writes the agent's entries (the rule that refuses an agent
    /// without entries is tested in `tests/vault/agents.rs`).
    pub fn issue(&self, scopes: &[&str], ttl: Option<Value>) -> (String, String) {
        let mut req = serde_json::json!({ "scopes": scopes, "allow_empty": true });
        if let Some(ttl) = ttl {
            req["ttl"] = ttl;
        }
        let (status, body) = self.post("/v1/tokens", &self.admin, req);
        assert_eq!(status, 201, "issue token: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON body");
        (
            v["id"].as_str().expect("id").to_string(),
            v["token"].as_str().expect("token").to_string(),
        )
    }

    /// The admin CLI against this server, with address and admin token in the environment.
    pub fn cli(&self) -> Command {
        let mut cmd = vault_cmd();
        cmd.env("AGENT_VAULT_ADDR", &self.addr)
            .env("AGENT_VAULT_TOKEN", &self.admin);
        cmd
    }

    pub fn cli_run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.cli();
        cmd.args(args);
        run(&mut cmd, stdin)
    }

    /// The bytes of vault.db, its WAL and shared-memory file.
    pub fn db_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["vault.db", "vault.db-wal", "vault.db-shm"]
            .iter()
            .map(|name| self.data_dir.join(name))
            .filter(|path| path.exists())
            .map(|path| {
                let bytes = std::fs::read(&path).expect("reading a database file");
                (path, bytes)
            })
            .collect()
    }

    /// Assert no value appears in the database files or the server log.
    pub fn assert_not_stored_or_logged(&self, values: &[&str]) {
        for (path, bytes) in self.db_bytes() {
            for value in values {
                assert!(
                    !contains(&bytes, value.as_bytes()),
                    "{} contains the plaintext of a value",
                    path.display()
                );
            }
        }
        let log = self.log();
        for value in values {
            assert!(!log.contains(value), "server log contains a value:\n{log}");
        }
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Assert none of `values` appears in `text`.
pub fn assert_no_values(what: &str, text: &str, values: &[&str]) {
    for value in values {
        assert!(!text.contains(value), "{what} leaks a value: {text}");
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

pub fn error_code(text: &str) -> String {
    json(text)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// A private CA and a leaf certificate for 127.0.0.1/localhost signed by it, made with
/// openssl in `dir`: returns (ca.pem, cert.pem, key.pem).
pub fn private_ca(dir: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    // A private CA and a leaf for 127.0.0.1 signed by it (rustls refuses a CA certificate as
    // the server's own).
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let ext = dir.write(
        "leaf.ext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=agent-vault test CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&ca);
    run_ok(&mut openssl, None);
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args(["req", "-subj", "/CN=localhost"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(dir.join("leaf.csr"));
    run_ok(&mut openssl, None);
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args(["x509", "-req", "-days", "1", "-CAcreateserial"])
        .arg("-in")
        .arg(dir.join("leaf.csr"))
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert);
    run_ok(&mut openssl, None);
    (ca, cert, key)
}

/// `agent-vault tls generate --name localhost,127.0.0.1 --out DIR/NAME`: returns (ca.pem,
/// cert.pem, key.pem).
pub fn tls_generate(dir: &Dir, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.join(name);
    let mut cmd = vault_cmd();
    cmd.args(["tls", "generate", "--name", "localhost,127.0.0.1", "--out"])
        .arg(&out);
    run_ok(&mut cmd, None);
    (
        out.join("ca.pem"),
        out.join("cert.pem"),
        out.join("key.pem"),
    )
}

/// A certificate as a plain `openssl req -x509` makes it (self-signed, `CA:TRUE`), for
/// 127.0.0.1: returns (cert.pem, key.pem).
pub fn openssl_self_signed(dir: &Dir) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("x509-cert.pem"), dir.join("x509-key.pem"));
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-days",
            "1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    run_ok(&mut openssl, None);
    (cert, key)
}
