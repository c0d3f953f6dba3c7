//! Secrets from OpenBao or HashiCorp Vault KV mounts (`--store openbao+https://…`), over
//! the Vault HTTP API both engines speak. Owns the whole client side of that API: address
//! failover, login (token, AppRole, JWT, Kubernetes), token renewal, KV v1/v2 reads, and the
//! polling watcher that notices a new version. It does not decide what a change means; the
//! supervisor does.
//!
//! Values are read from response bodies held in `Zeroizing` buffers and deserialized
//! straight into `SecretString`s (see `value::KvValue`); nothing keeps a value between fetches.
//! The watcher never reads KV v2 values at all, only `metadata` (`current_version` and the
//! current version's deleted/destroyed flags); for KV v1, which has no metadata, it keeps a
//! BLAKE3 digest keyed with a per-process random key, never the values.
//!
//! Tokens, secret ids and JWTs live in `SecretString`s, travel in headers marked sensitive,
//! and never appear in an error or a log line.

mod auth;
mod client;
mod kv;
#[cfg(test)]
mod tests;
mod value;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Url;
use tracing::debug;

use crate::source::digest::DigestKey;
use crate::source::{ChangeNotifier, Error, SecretSet, SecretSource, StartBudget};
use auth::token_from_env;
use client::{join_addresses, Client, Session};
use kv::PathState;
use watch::{StopFlag, Watcher};

/// The variables a `--auth token` source reads its token from, in order of preference
/// (OpenBao's own name first). `config` hides them from the child.
pub const TOKEN_VARIABLES: [&str; 2] = [BAO_TOKEN, VAULT_TOKEN];
/// OpenBao's name for the client token (the launcher's credential table lists both).
pub const BAO_TOKEN: &str = "BAO_TOKEN";
/// Vault's name for the client token.
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";

/// The service-account token a pod gets, the Kubernetes login's default `--jwt-file`.
pub const KUBERNETES_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Which KV secrets to read, from where, and how to log in. Built by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Base URLs (`https://host:8200`), tried in order; the one that answered last is
    /// tried first next time.
    pub addresses: Vec<Url>,
    /// KV paths as `bao kv get` takes them (`secret/agents/support-bot`); later paths win.
    pub paths: Vec<String>,
    pub namespace: Option<String>,
    pub auth: Auth,
    pub poll_interval: Duration,
    /// `--proxy`, for non-loopback addresses only (never one from the environment).
    pub proxy: Option<Url>,
    /// `--start-timeout`: until the first fetch has succeeded, no request may take longer
    /// than what is left of it.
    pub start_timeout: Duration,
    /// Extra trusted CAs (PEM): `--ca-cert`, `BAO_CACERT`, `VAULT_CACERT` or `SSL_CERT_FILE`.
    pub ca_pem: Option<Vec<u8>>,
}

/// How agent-run obtains its token. Holds file paths and names only: credentials are read
/// when needed, so a rotated secret-id or projected service-account token is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A token from `--token-file`, else `BAO_TOKEN` / `VAULT_TOKEN`.
    Token { file: Option<PathBuf> },
    AppRole {
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
        mount: String,
    },
    /// JWT/OIDC (`kind: Jwt`) or Kubernetes login: both post `{role, jwt}`.
    Jwt {
        kind: JwtKind,
        role: String,
        jwt_file: PathBuf,
        mount: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtKind {
    Jwt,
    Kubernetes,
}

impl Auth {
    /// The `--auth` name, for errors and logs.
    pub fn method(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::AppRole { .. } => "approle",
            Auth::Jwt {
                kind: JwtKind::Jwt, ..
            } => "jwt",
            Auth::Jwt {
                kind: JwtKind::Kubernetes,
                ..
            } => "kubernetes",
        }
    }

    /// Whether a refused or expired token can be replaced by logging in again. A token
    /// from the environment cannot; one from a file can be re-read (a sidecar may have
    /// written a new one).
    fn can_login(&self) -> bool {
        !matches!(self, Auth::Token { file: None })
    }
}

/// The OpenBao/Vault source: the client (shared with the watcher thread) and the paths.
pub struct OpenBaoSource {
    client: Arc<Client>,
    poll_interval: Duration,
    /// Set on drop; the watcher thread sees it at its next wake-up and ends.
    stop: Arc<StopFlag>,
}

impl OpenBaoSource {
    /// Takes the token from the environment for `--auth token` without a file; builds
    /// nothing else and does no network I/O: the first `fetch` logs in.
    pub fn new(settings: Settings) -> Result<OpenBaoSource, Error> {
        let env_token = match &settings.auth {
            Auth::Token { file: None } => Some(token_from_env()?),
            _ => None,
        };
        let namespace = match &settings.namespace {
            Some(ns) => Some(HeaderValue::from_str(ns).map_err(|_| Error::Auth {
                method: settings.auth.method(),
                reason: format!("namespace {ns:?} is not a valid header value"),
            })?),
            None => None,
        };
        let poll_interval = settings.poll_interval;
        Ok(OpenBaoSource {
            client: Arc::new(Client {
                http: OnceLock::new(),
                addresses: settings.addresses,
                paths: settings.paths,
                namespace,
                proxy: settings.proxy,
                ca_pem: settings.ca_pem,
                start: StartBudget::new(settings.start_timeout),
                auth: settings.auth,
                env_token,
                digest_key: DigestKey::random(),
                session: Mutex::new(Session::default()),
            }),
            poll_interval,
            stop: Arc::new(StopFlag::default()),
        })
    }
}

impl Drop for OpenBaoSource {
    fn drop(&mut self) {
        self.stop.set();
    }
}

impl SecretSource for OpenBaoSource {
    fn describe(&self) -> String {
        format!(
            "openbao {} {}",
            join_addresses(&self.client.addresses),
            self.client.paths.join(", ")
        )
    }

    fn fetch(&mut self) -> Result<SecretSet, Error> {
        let mut session = self.client.lock();
        session.fetched.clear();
        let mut set = SecretSet::default();
        for path in &self.client.paths {
            set.extend(self.client.read_kv(&mut session, path)?);
        }
        self.client.start.started();
        debug!(
            secrets = set.len(),
            paths = self.client.paths.len(),
            "openbao fetch done"
        );
        Ok(set)
    }

    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error> {
        let label = self.describe();
        // The baseline is what the last fetch read (its KV v2 version, or a KV v1 digest):
        // any later change differs from it at the first poll, so a start reads the values
        // once (issue 13). A path the fetch did not record (the start came from the
        // fallback file, or an answer without a version) gets its baseline read here, and
        // then one re-check is asked for, since a change between the fetch and that baseline
        // had no watcher. A path that cannot be read now has no baseline; its first good poll
        // counts as a change (the supervisor compares environments, so at worst nothing
        // happens).
        let (baseline, recheck): (Vec<Option<PathState>>, bool) = {
            let mut session = self.client.lock();
            let fetched = std::mem::take(&mut session.fetched);
            let mut recheck = false;
            let baseline = self
                .client
                .paths
                .iter()
                .map(|path| match fetched.get(path) {
                    Some(state) => Some(state.clone()),
                    None => {
                        recheck = true;
                        self.client.path_state(&mut session, path).ok()
                    }
                })
                .collect();
            (baseline, recheck)
        };
        if recheck {
            notifier.revised(&label);
        }
        let watcher = Watcher {
            client: Arc::clone(&self.client),
            stop: Arc::clone(&self.stop),
            notifier,
            label: label.clone(),
            interval: self.poll_interval,
            states: baseline,
            failing: false,
        };
        std::thread::Builder::new()
            .name("openbao-watch".into())
            .spawn(move || watcher.run())
            .map_err(|e| Error::Watch {
                path: PathBuf::from(label),
                reason: e.to_string(),
            })?;
        Ok(())
    }
}
