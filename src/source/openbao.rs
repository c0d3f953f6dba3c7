//! Secrets from OpenBao or HashiCorp Vault KV mounts (`--store openbao+https://…`), over
//! the Vault HTTP API both engines speak. Owns the whole client side of that API: address
//! failover, login (token, AppRole, JWT, Kubernetes), token renewal, KV v1/v2 reads, and the
//! polling watcher that notices a new version. It does not decide what a change means; the
//! supervisor does.
//!
//! Values are read from response bodies held in `Zeroizing` buffers and deserialized
//! straight into `SecretString`s (see [`KvValue`]); nothing keeps a value between fetches.
//! The watcher never reads KV v2 values at all, only `metadata` (`current_version` and the
//! current version's deleted/destroyed flags); for KV v1, which has no metadata, it keeps a
//! BLAKE3 digest keyed with a per-process random key, never the values.
//!
//! Tokens, secret ids and JWTs live in `SecretString`s, travel in headers marked sensitive,
//! and never appear in an error or a log line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as HttpClient, RequestBuilder};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tracing::{debug, info, trace, warn};
use zeroize::{Zeroize, Zeroizing};

use super::{ChangeNotifier, Error, Origin, Secret, SecretSet, SecretSource};

/// The variables a `--auth token` source reads its token from, in order of preference
/// (OpenBao's own name first). `config` hides them from the child.
pub const TOKEN_VARIABLES: [&str; 2] = [
    crate::launcher::env::BAO_TOKEN,
    crate::launcher::env::VAULT_TOKEN,
];

/// The service-account token a pod gets, the Kubernetes login's default `--jwt-file`.
pub const KUBERNETES_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A TCP connect to a live server on a LAN takes milliseconds; a dead address should not
/// hold up failover to the next one for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One whole request, including a slow server. Bounds how long a fetch can block the
/// supervisor when a server hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time one request gets while `--start-timeout` runs out.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(500);
/// A token is renewed once this share of its TTL has passed (the same point Vault's own
/// agent uses), leaving a third of the TTL for retries and failover.
const RENEW_AT: f64 = 2.0 / 3.0;
/// A renewal that grants less than the login's TTL minus this has hit the token's max TTL:
/// the next step is a new login, not another renewal.
const TTL_SLACK: Duration = Duration::from_secs(1);
/// A 403 makes agent-run log in again (the token may have been revoked) at most this often.
const FORCED_LOGIN_EVERY: Duration = Duration::from_secs(30);
/// After a failed renewal or login, the next attempt waits this long.
const TOKEN_RETRY: Duration = Duration::from_secs(1);

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
                start_deadline: Mutex::new(Some(Instant::now() + settings.start_timeout)),
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
        let mut set = SecretSet::default();
        for path in &self.client.paths {
            set.extend(self.client.read_kv(&mut session, path)?);
        }
        *self
            .client
            .start_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        debug!(
            secrets = set.len(),
            paths = self.client.paths.len(),
            "openbao fetch done"
        );
        Ok(set)
    }

    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error> {
        let label = self.describe();
        // The baseline is taken here, before `watch` returns, because the supervisor
        // re-fetches right after: a change later than that re-fetch is then seen by the
        // first poll. A path that cannot be read now has no baseline; its first good poll
        // counts as a change (the supervisor compares environments, so at worst nothing
        // happens).
        let baseline: Vec<Option<PathState>> = {
            let mut session = self.client.lock();
            self.client
                .paths
                .iter()
                .map(|path| self.client.path_state(&mut session, path).ok())
                .collect()
        };
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

/// What agent-run knows about the server side, shared by `fetch` (supervisor thread) and
/// the watcher. One lock around the whole conversation: a fetch and a poll never
/// interleave, so there is one login at a time and one idea of the active address. A std
/// `Mutex` because nothing here is async.
struct Client {
    /// Built on first use, not in `new`: reqwest's blocking client starts a runtime
    /// thread, and `new` runs before the launcher blocks signals — that thread would keep
    /// the default mask and a SIGTERM meant for the supervisor could kill the process.
    http: OnceLock<HttpClient>,
    addresses: Vec<Url>,
    paths: Vec<String>,
    namespace: Option<HeaderValue>,
    proxy: Option<Url>,
    ca_pem: Option<Vec<u8>>,
    /// The end of `--start-timeout`, until the first fetch has succeeded.
    start_deadline: Mutex<Option<Instant>>,
    auth: Auth,
    /// `--auth token` without a file: the token as it was in the environment at start.
    env_token: Option<SecretString>,
    /// Keys the KV v1 change digests.
    digest_key: DigestKey,
    session: Mutex<Session>,
}

#[derive(Default)]
struct Session {
    /// Index into `addresses` of the server that answered last.
    active: usize,
    token: Option<Token>,
    /// Mount of every KV path, detected once.
    mounts: HashMap<String, KvMount>,
    /// When a 403 last made us log in again (see `Client::authed`).
    forced_login: Option<Instant>,
    /// KV paths read successfully at least once: a 404 for one of these means its secret
    /// was deleted with every version (`bao kv metadata delete`, or a KV v1 delete), so it
    /// now provides nothing; for a path never read, a 404 is a configuration error.
    known: std::collections::HashSet<String>,
}

/// The token in use and when to act on it.
struct Token {
    value: SecretString,
    renewable: bool,
    /// The TTL the login granted: a renewal granting less has reached the max TTL.
    login_ttl: Duration,
    /// `None`: the token never expires (a root token, TTL 0).
    expires: Option<Instant>,
    /// When to renew or log in again (2/3 of the TTL granted last).
    due: Option<Instant>,
    /// The max TTL is near: at `due`, log in again instead of renewing.
    capped: bool,
}

impl Token {
    fn new(value: SecretString, ttl: Duration, renewable: bool) -> Token {
        let mut token = Token {
            value,
            renewable,
            login_ttl: ttl,
            expires: None,
            due: None,
            capped: false,
        };
        token.granted(ttl, Instant::now());
        token
    }

    /// Records a grant of `ttl` from `now`.
    fn granted(&mut self, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            self.expires = None;
            self.due = None;
        } else {
            self.expires = Some(now + ttl);
            self.due = Some(now + ttl.mul_f64(RENEW_AT));
        }
        self.capped = ttl + TTL_SLACK < self.login_ttl;
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now + TTL_SLACK)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KvVersion {
    V1,
    V2,
}

#[derive(Debug, Clone)]
struct KvMount {
    version: KvVersion,
    /// The mount path with its trailing slash (`secret/`).
    mount: String,
    /// The rest of the KV path below the mount (`agents/support-bot`).
    rest: String,
}

impl KvMount {
    fn data_path(&self) -> String {
        match self.version {
            KvVersion::V1 => format!("{}{}", self.mount, self.rest),
            KvVersion::V2 => format!("{}data/{}", self.mount, self.rest),
        }
    }

    fn metadata_path(&self) -> String {
        format!("{}metadata/{}", self.mount, self.rest)
    }
}

/// One answer: status and the whole body, in a buffer wiped on drop.
struct Reply {
    status: u16,
    body: Zeroizing<Vec<u8>>,
    /// The server's `errors` list, ready for a message (see [`server_errors`]).
    errors: String,
}

impl Reply {
    /// `sent`: every credential the request carried (token, role id, secret id, JWT), to be
    /// removed from the error text.
    fn new(status: u16, body: Zeroizing<Vec<u8>>, sent: &[&str]) -> Reply {
        let errors = server_errors(&body, sent);
        Reply {
            status,
            body,
            errors,
        }
    }

    fn errors(&self) -> &str {
        &self.errors
    }

    fn parse<'a, T: Deserialize<'a>>(&'a self, path: &str) -> Result<T, Error> {
        // Only the error's category and position: its message can quote the input (e.g.
        // "invalid type: string \"…\"") and the input may hold a value.
        serde_json::from_slice(&self.body).map_err(|e| Error::Server {
            path: path.to_owned(),
            status: self.status,
            reason: format!(
                "unexpected response body ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves a session that is still usable: at worst
        // a stale token, which the next request replaces.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is left of `--start-timeout` while the first fetch has not succeeded (at least
    /// a moment, so `--start-timeout 0s` still makes one attempt); `None` afterwards.
    fn start_budget(&self) -> Option<Duration> {
        let deadline = *self
            .start_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        deadline.map(|at| {
            at.saturating_duration_since(Instant::now())
                .clamp(MIN_REQUEST_TIME, REQUEST_TIMEOUT)
        })
    }

    fn http(&self) -> Result<&HttpClient, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let unreachable = |reason: String| Error::Unreachable {
            url: join_addresses(&self.addresses),
            reason,
        };
        // The token goes in a header: never through a proxy picked up from HTTP_PROXY
        // (the builder takes none from the environment), only the user's --proxy.
        let http = super::http_client_builder(self.proxy.as_ref(), self.ca_pem.as_deref())
            .map_err(unreachable)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A standby's redirect to the active node would carry X-Vault-Token (which
            // reqwest does not strip across hosts) to whatever the redirect names. We move
            // to the next configured address instead.
            .redirect(reqwest::redirect::Policy::none())
            // Idle pooled connections keep their last read buffer — a response with values
            // in it — alive and unwiped. A fresh connection per request lets every buffer
            // be freed (and zeroed by the wiping allocator) as soon as it is read.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| {
                unreachable(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        // Only the supervisor thread and the watcher call this, under the session lock.
        Ok(self.http.get_or_init(|| http))
    }

    /// Sends one request to the active address, moving on to the next one on a connection
    /// failure or a standby/sealed answer. Only a definite answer comes back.
    fn send(
        &self,
        session: &mut Session,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
        token: Option<&SecretString>,
        sent: &[&str],
    ) -> Result<Reply, Error> {
        let mut credentials: Vec<&str> = sent.to_vec();
        credentials.extend(token.map(|t| t.expose_secret()));
        let count = self.addresses.len();
        let mut last_failure = String::new();
        for attempt in 0..count {
            let index = (session.active + attempt) % count;
            let address = &self.addresses[index];
            let url = format!("{}/v1/{api_path}", address.as_str().trim_end_matches('/'));
            let mut request = self.http()?.request(method.clone(), &url);
            if let Some(budget) = self.start_budget() {
                request = request.timeout(budget);
            }
            request = self.headers(request, token)?;
            if let Some(body) = body {
                // reqwest takes ownership of the body; the copy it frees is zeroed by the
                // wiping allocator, and each failover attempt needs its own.
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            trace!(address = %address, path = api_path, method = %method, "openbao request");
            let reply = match request.send() {
                Ok(response) => read_reply(response, &credentials),
                Err(e) => Err(error_chain(&e)),
            };
            match reply {
                Err(reason) => {
                    warn!(address = %address, reason = %reason, "openbao address unreachable; trying the next one");
                    last_failure = format!("{address}: {reason}");
                }
                Ok(reply) if is_standby(&reply) => {
                    let reason = format!("HTTP {} ({})", reply.status, reply.errors());
                    warn!(address = %address, status = reply.status, "openbao node is sealed, standby or not active; trying the next one");
                    last_failure = format!("{address}: {reason}");
                }
                Ok(reply) => {
                    if session.active != index {
                        info!(address = %address, "openbao: switched to another address");
                        session.active = index;
                    }
                    return Ok(reply);
                }
            }
        }
        Err(Error::Unreachable {
            url: join_addresses(&self.addresses),
            reason: last_failure,
        })
    }

    fn headers(
        &self,
        mut request: RequestBuilder,
        token: Option<&SecretString>,
    ) -> Result<RequestBuilder, Error> {
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns.clone());
        }
        if let Some(token) = token {
            let mut value =
                HeaderValue::from_str(token.expose_secret()).map_err(|_| Error::Auth {
                    method: self.auth.method(),
                    reason: "the token contains characters a header cannot hold".to_owned(),
                })?;
            // Redacted in reqwest's and http's Debug output.
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        Ok(request)
    }

    /// A request with the session's token, logging in first when there is none (or it has
    /// expired), and once more when the server refuses a token that was expected to work.
    fn authed(
        &self,
        session: &mut Session,
        method: Method,
        api_path: &str,
        kv_path: &str,
    ) -> Result<Reply, Error> {
        self.ensure_token(session)?;
        let reply = self.send_with_token(session, method.clone(), api_path)?;
        let now = Instant::now();
        let may_retry = match session.forced_login {
            Some(at) => now.duration_since(at) >= FORCED_LOGIN_EVERY,
            None => true,
        };
        if reply.status == 403 && self.auth.can_login() && may_retry {
            // An expired or revoked token also answers 403: log in once more to tell that
            // apart from a policy that does not allow the path. Not more often than
            // FORCED_LOGIN_EVERY, so a path the policy refuses costs no login per poll.
            debug!(
                path = kv_path,
                "openbao refused the token; logging in again"
            );
            session.forced_login = Some(now);
            self.login(session)?;
            return self.send_with_token(session, method, api_path);
        }
        Ok(reply)
    }

    fn send_with_token(
        &self,
        session: &mut Session,
        method: Method,
        api_path: &str,
    ) -> Result<Reply, Error> {
        // A clone, so the session can be borrowed mutably by `send` (failover); the copy
        // is a SecretString, wiped on drop.
        let token = session.token.as_ref().map(|t| t.value.clone());
        self.send(session, method, api_path, None, token.as_ref(), &[])
    }

    fn ensure_token(&self, session: &mut Session) -> Result<(), Error> {
        let now = Instant::now();
        match &session.token {
            Some(token) if !token.expired(now) => Ok(()),
            Some(_) if !self.auth.can_login() => {
                // Nothing to log in with: try the token anyway, the server decides.
                Ok(())
            }
            _ => self.login(session),
        }
    }

    /// Obtains a new token by the configured method (for `--auth token`: takes the token
    /// and looks up its TTL).
    fn login(&self, session: &mut Session) -> Result<(), Error> {
        let method = self.auth.method();
        let token = match &self.auth {
            Auth::Token { file } => {
                let value = match file {
                    Some(path) => read_credential(path, method)?,
                    None => self.env_token.clone().ok_or_else(|| no_env_token(method))?,
                };
                self.lookup(session, value)?
            }
            Auth::AppRole {
                role_id_file,
                secret_id_file,
                mount,
            } => {
                let role_id = read_credential(role_id_file, method)?;
                let secret_id = read_credential(secret_id_file, method)?;
                let body = login_body(&[
                    ("role_id", role_id.expose_secret()),
                    ("secret_id", secret_id.expose_secret()),
                ]);
                let sent = [role_id.expose_secret(), secret_id.expose_secret()];
                self.post_login(session, &format!("auth/{mount}/login"), &body, &sent)?
            }
            Auth::Jwt {
                role,
                jwt_file,
                mount,
                ..
            } => {
                let jwt = read_credential(jwt_file, method)?;
                let body = login_body(&[("role", role), ("jwt", jwt.expose_secret())]);
                self.post_login(
                    session,
                    &format!("auth/{mount}/login"),
                    &body,
                    &[jwt.expose_secret()],
                )?
            }
        };
        info!(
            method,
            ttl = ?token.expires.map(|at| at.saturating_duration_since(Instant::now())),
            renewable = token.renewable,
            "openbao login"
        );
        session.token = Some(token);
        Ok(())
    }

    fn post_login(
        &self,
        session: &mut Session,
        api_path: &str,
        body: &[u8],
        sent: &[&str],
    ) -> Result<Token, Error> {
        let method = self.auth.method();
        let reply = self.send(session, Method::POST, api_path, Some(body), None, sent)?;
        if reply.status != 200 {
            return Err(Error::Auth {
                method,
                reason: format!("{api_path}: HTTP {}: {}", reply.status, reply.errors()),
            });
        }
        #[derive(Deserialize)]
        struct Login {
            auth: Option<LoginAuth>,
        }
        #[derive(Deserialize)]
        struct LoginAuth {
            client_token: KvValue,
            #[serde(default)]
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        let login: Login = reply.parse(api_path)?;
        let auth = login.auth.ok_or_else(|| Error::Auth {
            method,
            reason: format!("{api_path}: the answer holds no token"),
        })?;
        Ok(Token::new(
            auth.client_token.0,
            Duration::from_secs(auth.lease_duration),
            auth.renewable,
        ))
    }

    /// `auth/token/lookup-self`: checks a given token and learns its TTL.
    fn lookup(&self, session: &mut Session, value: SecretString) -> Result<Token, Error> {
        let api_path = "auth/token/lookup-self";
        let reply = self.send(session, Method::GET, api_path, None, Some(&value), &[])?;
        if reply.status != 200 {
            return Err(Error::Auth {
                method: "token",
                reason: format!(
                    "{api_path}: HTTP {}: {} (the token is invalid, expired or revoked)",
                    reply.status,
                    reply.errors()
                ),
            });
        }
        #[derive(Deserialize)]
        struct Lookup {
            data: LookupData,
        }
        #[derive(Deserialize)]
        struct LookupData {
            #[serde(default)]
            ttl: u64,
            #[serde(default)]
            renewable: bool,
        }
        let lookup: Lookup = reply.parse(api_path)?;
        Ok(Token::new(
            value,
            Duration::from_secs(lookup.data.ttl),
            lookup.data.renewable,
        ))
    }

    /// Renews or replaces the token when its time has come; called by the watcher.
    fn maintain_token(&self, session: &mut Session, now: Instant) -> Result<(), Error> {
        let Some(token) = &mut session.token else {
            return Ok(());
        };
        if !matches!(token.due, Some(due) if due <= now) {
            return Ok(());
        }
        // Success sets the next due time; a failure retries after TOKEN_RETRY instead of
        // at once (the watcher would otherwise spin against a dead server).
        token.due = Some(now + TOKEN_RETRY);
        let (renewable, capped) = (token.renewable, token.capped);
        if renewable && !capped {
            match self.renew(session) {
                Ok(()) => return Ok(()),
                Err(e) if self.auth.can_login() => {
                    info!(error = %e, "openbao token renewal refused; logging in again");
                }
                Err(e) => return Err(e),
            }
        }
        if self.auth.can_login() {
            return self.login(session);
        }
        // A token from the environment that cannot be renewed any further: say so once.
        if let Some(token) = &mut session.token {
            token.due = None;
        }
        warn!(
            "openbao token cannot be renewed and --auth token cannot log in again; it will expire"
        );
        Ok(())
    }

    fn renew(&self, session: &mut Session) -> Result<(), Error> {
        let api_path = "auth/token/renew-self";
        let token = session.token.as_ref().map(|t| t.value.clone());
        let reply = self.send(
            session,
            Method::POST,
            api_path,
            Some(b"{}"),
            token.as_ref(),
            &[],
        )?;
        if reply.status != 200 {
            return Err(Error::Auth {
                method: self.auth.method(),
                reason: format!("{api_path}: HTTP {}: {}", reply.status, reply.errors()),
            });
        }
        #[derive(Deserialize)]
        struct Renewal {
            auth: Option<RenewAuth>,
        }
        #[derive(Deserialize)]
        struct RenewAuth {
            #[serde(default)]
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        let renewal: Renewal = reply.parse(api_path)?;
        let auth = renewal.auth.ok_or_else(|| Error::Auth {
            method: self.auth.method(),
            reason: format!("{api_path}: the answer holds no lease"),
        })?;
        let ttl = Duration::from_secs(auth.lease_duration);
        if let Some(token) = &mut session.token {
            token.renewable = auth.renewable;
            token.granted(ttl, Instant::now());
            debug!(ttl = ?ttl, capped = token.capped, "openbao token renewed");
        }
        Ok(())
    }

    /// The mount under `kv_path` and its KV version, from `sys/internal/ui/mounts/<path>`
    /// (which the default policy allows); cached for the life of the process.
    fn mount_of(&self, session: &mut Session, kv_path: &str) -> Result<KvMount, Error> {
        if let Some(mount) = session.mounts.get(kv_path) {
            return Ok(mount.clone());
        }
        let api_path = format!("sys/internal/ui/mounts/{kv_path}");
        let reply = self.authed(session, Method::GET, &api_path, kv_path)?;
        check_status(&reply, kv_path)?;
        #[derive(Deserialize)]
        struct Mounts {
            data: MountData,
        }
        #[derive(Deserialize)]
        struct MountData {
            path: String,
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            options: Option<HashMap<String, serde_json::Value>>,
        }
        let info: Mounts = reply.parse(kv_path)?;
        let data = info.data;
        if data.kind != "kv" && data.kind != "generic" {
            return Err(Error::Server {
                path: kv_path.to_owned(),
                status: reply.status,
                reason: format!("mount {} is a {:?} mount, not KV", data.path, data.kind),
            });
        }
        let version = match data
            .options
            .as_ref()
            .and_then(|o| o.get("version"))
            .and_then(|v| v.as_str())
        {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        };
        let rest = kv_path
            .strip_prefix(data.path.as_str())
            .unwrap_or("")
            .trim_matches('/');
        if rest.is_empty() {
            return Err(Error::Server {
                path: kv_path.to_owned(),
                status: reply.status,
                reason: format!(
                    "this is the mount {} itself; give a secret's path inside it",
                    data.path
                ),
            });
        }
        let mount = KvMount {
            version,
            mount: data.path.clone(),
            rest: rest.to_owned(),
        };
        debug!(path = kv_path, mount = %mount.mount, version = ?version, "openbao kv mount detected");
        session.mounts.insert(kv_path.to_owned(), mount.clone());
        Ok(mount)
    }

    /// Reads one KV secret; every key becomes a secret.
    fn read_kv(&self, session: &mut Session, kv_path: &str) -> Result<SecretSet, Error> {
        let mount = self.mount_of(session, kv_path)?;
        let reply = self.authed(session, Method::GET, &mount.data_path(), kv_path)?;
        if reply.status == 404 && session.known.contains(kv_path) {
            // Checked before the KV v2 case below, which needs the metadata of a version:
            // a secret deleted with all its versions has none.
            warn!(path = kv_path, "this openbao secret no longer exists (deleted with every version); it provides no secrets");
            return Ok(SecretSet::default());
        }
        let map = match mount.version {
            KvVersion::V1 => {
                check_status(&reply, kv_path)?;
                let read: Envelope<KvMap> = reply.parse(kv_path)?;
                read.data.unwrap_or_default()
            }
            KvVersion::V2 => {
                if reply.status == 404 {
                    // A soft-deleted or destroyed current version answers 404 with its
                    // metadata: the secret exists and is empty now.
                    if let Ok(Envelope {
                        data:
                            Some(KvV2 {
                                metadata: Some(meta),
                                ..
                            }),
                    }) = serde_json::from_slice::<Envelope<KvV2>>(&reply.body)
                    {
                        if meta.is_gone() {
                            session.known.insert(kv_path.to_owned());
                            warn!(path = kv_path, "the current version of this openbao secret is deleted or destroyed; it provides no secrets");
                            return Ok(SecretSet::default());
                        }
                    }
                }
                check_status(&reply, kv_path)?;
                let read: Envelope<KvV2> = reply.parse(kv_path)?;
                read.data.and_then(|d| d.data).unwrap_or_default()
            }
        };
        session.known.insert(kv_path.to_owned());
        let address = self.addresses[session.active].to_string();
        let mut set = SecretSet::default();
        for (key, value) in map {
            set.insert(
                key,
                Secret {
                    value: value.0,
                    origin: Origin::Vault {
                        address: address.clone(),
                        path: kv_path.to_owned(),
                    },
                },
            );
        }
        debug!(path = kv_path, keys = set.len(), version = ?mount.version, "openbao kv read");
        Ok(set)
    }

    /// What the watcher compares: KV v2 metadata, or a keyed digest of a KV v1 secret.
    fn path_state(&self, session: &mut Session, kv_path: &str) -> Result<PathState, Error> {
        let mount = self.mount_of(session, kv_path)?;
        match mount.version {
            KvVersion::V2 => {
                // Errors name the metadata path: a policy may allow the values and not this.
                let meta_path = mount.metadata_path();
                let reply = self.authed(session, Method::GET, &meta_path, kv_path)?;
                if reply.status == 404 {
                    return Ok(PathState::Missing);
                }
                check_status(&reply, &meta_path)?;
                let meta: Envelope<KvMetadata> = reply.parse(kv_path)?;
                let meta = meta.data.ok_or_else(|| Error::Server {
                    path: kv_path.to_owned(),
                    status: reply.status,
                    reason: "metadata answer without data".to_owned(),
                })?;
                let current = meta.versions.get(&meta.current_version.to_string());
                Ok(PathState::Version {
                    version: meta.current_version,
                    gone: current.is_some_and(VersionMeta::is_gone),
                })
            }
            KvVersion::V1 => {
                let set = self.read_kv(session, kv_path)?;
                Ok(PathState::Digest(self.digest_key.digest(&set)))
            }
        }
    }
}

/// Maps the answers every KV call treats alike to errors; 200 passes.
fn check_status(reply: &Reply, kv_path: &str) -> Result<(), Error> {
    match reply.status {
        200 => Ok(()),
        403 => Err(Error::Denied {
            path: kv_path.to_owned(),
            status: reply.status,
        }),
        404 => Err(Error::NotFound {
            path: kv_path.to_owned(),
        }),
        status => Err(Error::Server {
            path: kv_path.to_owned(),
            status,
            reason: reply.errors().to_owned(),
        }),
    }
}

/// Sealed (503), standby (429, 472, 473, or 307 to the active node), or a standby that
/// cannot reach an active node during an election (500 "local node not active").
fn is_standby(reply: &Reply) -> bool {
    match reply.status {
        503 | 429 | 472 | 473 | 307 => true,
        500 => {
            let errors = reply.errors();
            errors.contains("not active") || errors.contains("standby")
        }
        _ => false,
    }
}

/// The `errors` list of a Vault answer, on one line, safe to print. Vault's own texts
/// describe the request ("permission denied"), but whatever answers may echo it, so:
/// every credential the request carried is cut out, any long token-like run (a token, a
/// UUID, a JWT segment) is masked, control characters become spaces (no forged log lines),
/// and the text is capped.
fn server_errors(body: &[u8], sent: &[&str]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let mut parsed = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors,
        _ => return "no error message".to_owned(),
    };
    let mut text = Zeroizing::new(parsed.join("; "));
    parsed.iter_mut().for_each(|e| e.zeroize());
    for credential in sent.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if text.contains(credential) {
            *text = text.replace(credential, "[redacted]");
        }
    }
    mask_token_like(&text)
}

/// Runs of at least this many token characters are masked in server error texts.
const TOKEN_LIKE_RUN: usize = 20;
/// Longest server error text carried into a message.
const MAX_ERROR_TEXT: usize = 300;

fn mask_token_like(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "._+=-".contains(c);
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_TEXT + 16));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= TOKEN_LIKE_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.zeroize();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut out);
        out.push(if c.is_control() { ' ' } else { c });
    }
    flush(&mut run, &mut out);
    if out.len() > MAX_ERROR_TEXT {
        let cut = (0..=MAX_ERROR_TEXT)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out.trim().to_owned()
}

/// Reads a whole response into a buffer sized from Content-Length, so it is not
/// reallocated (and copied) while it grows.
fn read_reply(mut response: reqwest::blocking::Response, sent: &[&str]) -> Result<Reply, String> {
    let status = response.status().as_u16();
    let len = response.content_length().unwrap_or(4096).min(1 << 24) as usize;
    let mut body = Zeroizing::new(Vec::with_capacity(len + 1));
    response
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the response: {e}"))?;
    Ok(Reply::new(status, body, sent))
}

/// The error and its causes on one line (reqwest's Display alone says only "error sending
/// request"). URLs carry no credentials: the token travels in a header.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn join_addresses(addresses: &[Url]) -> String {
    addresses
        .iter()
        .map(|a| a.as_str().trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_env_token(method: &'static str) -> Error {
    Error::Auth {
        method,
        reason: format!(
            "no token: set {} or {}, or give --token-file (or choose another --auth)",
            TOKEN_VARIABLES[0], TOKEN_VARIABLES[1]
        ),
    }
}

/// `BAO_TOKEN`, else `VAULT_TOKEN`, straight into a `SecretString`.
fn token_from_env() -> Result<SecretString, Error> {
    for name in TOKEN_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            let value = Zeroizing::new(value.into_encoded_bytes());
            let text = std::str::from_utf8(&value).map_err(|_| Error::Auth {
                method: "token",
                reason: format!("{name} is not valid UTF-8"),
            })?;
            let text = text.trim();
            if !text.is_empty() {
                return Ok(SecretString::from(text));
            }
        }
    }
    Err(no_env_token("token"))
}

/// A token, role id, secret id or JWT from a file: read into a wiped buffer, surrounding
/// whitespace trimmed (files written by `echo` end in a newline).
fn read_credential(path: &Path, method: &'static str) -> Result<SecretString, Error> {
    // Non-blocking, regular files only, size-capped: a FIFO must not hang the launcher.
    let buf = super::secret_file::read(path, super::secret_file::MAX_CREDENTIAL_FILE_BYTES)?;
    let text = std::str::from_utf8(&buf).map_err(|_| Error::Auth {
        method,
        reason: format!("{}: not valid UTF-8", path.display()),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Auth {
            method,
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(SecretString::from(text))
}

/// `{"k":"v",...}` for a login, in a buffer sized before the first write.
fn login_body(fields: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    // Each value may grow by JSON escaping (at most 6 bytes per byte, `\u00XX`).
    let capacity = 2 + fields
        .iter()
        .map(|(k, v)| k.len() + 6 * v.len() + 6)
        .sum::<usize>();
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    let map: BTreeMap<&str, &str> = fields.iter().copied().collect();
    // Serializing a map of strings into a Vec cannot fail (no I/O, no non-string keys).
    serde_json::to_writer(&mut *body, &map).expect("serializing a string map cannot fail");
    body
}

/// `{"data": T}`, the envelope of every Vault answer.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

type KvMap = BTreeMap<String, KvValue>;

#[derive(Deserialize)]
struct KvV2 {
    data: Option<KvMap>,
    metadata: Option<VersionMeta>,
}

#[derive(Deserialize)]
struct KvMetadata {
    current_version: u64,
    #[serde(default)]
    versions: HashMap<String, VersionMeta>,
}

#[derive(Deserialize)]
struct VersionMeta {
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

impl VersionMeta {
    fn is_gone(&self) -> bool {
        self.destroyed || !self.deletion_time.is_empty()
    }
}

/// What one path looked like at the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathState {
    /// KV v2: `current_version`, and whether that version is deleted or destroyed.
    Version { version: u64, gone: bool },
    /// KV v2 with no metadata at all (deleted with all its versions).
    Missing,
    /// KV v1: keyed digest of the keys and values.
    Digest([u8; 32]),
}

/// The random key of the KV v1 digests: without it, a digest of a short or guessable value
/// could be brute-forced from memory.
struct DigestKey([u8; 32]);

impl DigestKey {
    fn random() -> DigestKey {
        let mut key = [0u8; 32];
        // Without kernel randomness nothing else in a secret store is safe either.
        getrandom::fill(&mut key).expect("the kernel's random source is unavailable");
        DigestKey(key)
    }

    fn digest(&self, set: &SecretSet) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for (name, secret) in set.iter() {
            let value = secret.value.expose_secret().as_bytes();
            // Length-prefixed, so `A=bc` and `Ab=c` differ.
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
        let digest = *hasher.finalize().as_bytes();
        hasher.zeroize();
        digest
    }
}

impl Drop for DigestKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One KV value, deserialized straight into a `SecretString`. Strings keep their text;
/// numbers and booleans become their JSON text; objects and arrays their compact JSON;
/// `null` the empty string. No `Debug`: it holds a value.
struct KvValue(SecretString);

impl<'de> Deserialize<'de> for KvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KvValue, D::Error> {
        deserializer.deserialize_any(KvValueVisitor)
    }
}

struct KvValueVisitor;

impl KvValueVisitor {
    fn text<E: de::Error>(text: String) -> Result<KvValue, E> {
        Ok(KvValue(SecretString::from(text)))
    }

    /// Compact JSON of a nested value; the parsed tree is wiped string by string.
    fn json<E: de::Error>(mut value: serde_json::Value) -> Result<KvValue, E> {
        let text = serde_json::to_string(&value).map_err(E::custom);
        wipe_json(&mut value);
        Self::text(text?)
    }
}

impl<'de> Visitor<'de> for KvValueVisitor {
    type Value = KvValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a KV value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KvValue, E> {
        Ok(KvValue(SecretString::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<KvValue, E> {
        Self::text(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KvValue, E> {
        // Through serde_json, so the text is the JSON number as Vault would print it.
        Self::json(serde_json::Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<KvValue, E> {
        Self::text(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<KvValue, E> {
        Self::text(String::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KvValue, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Self::json(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<KvValue, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Self::json(value)
    }
}

/// Zeroes every string (keys too) of a parsed JSON tree before it is freed.
fn wipe_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe_json),
        serde_json::Value::Object(map) => {
            for (mut key, mut item) in std::mem::take(map) {
                wipe_json(&mut item);
                key.zeroize();
            }
        }
        _ => {}
    }
}

/// The flag the watcher thread sleeps on; `set` wakes it at once.
#[derive(Default)]
struct StopFlag {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopFlag {
    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps until `deadline`; true if the source was dropped meanwhile.
    fn sleep_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The polling thread: every interval (with jitter, so many agents do not poll in step),
/// one metadata read per path; in between, token renewal when it is due.
struct Watcher {
    client: Arc<Client>,
    stop: Arc<StopFlag>,
    notifier: ChangeNotifier,
    label: String,
    interval: Duration,
    states: Vec<Option<PathState>>,
    /// A failure was reported and nothing has succeeded since: report the next one only
    /// after a recovery, not on every poll.
    failing: bool,
}

impl Watcher {
    fn run(mut self) {
        let mut next_poll = Instant::now() + jittered(self.interval);
        loop {
            let token_due = self.client.lock().token.as_ref().and_then(|t| t.due);
            let wake = token_due.map_or(next_poll, |due| due.min(next_poll));
            if self.stop.sleep_until(wake) {
                debug!("openbao watcher stopped");
                return;
            }
            let now = Instant::now();
            let mut session = self.client.lock();
            if let Err(e) = self.client.maintain_token(&mut session, now) {
                drop(session);
                self.report_failure(&e);
                continue;
            }
            if now < next_poll {
                continue;
            }
            next_poll = now + jittered(self.interval);
            let mut changed = false;
            let mut failure = None;
            for (index, path) in self.client.paths.iter().enumerate() {
                match self.client.path_state(&mut session, path) {
                    Ok(state) => {
                        if self.states[index].as_ref() != Some(&state) {
                            debug!(path = %path, "openbao secret changed");
                            self.states[index] = Some(state);
                            changed = true;
                        }
                    }
                    Err(e) => failure = Some(e),
                }
            }
            drop(session);
            match failure {
                Some(e) => self.report_failure(&e),
                None if self.failing => {
                    info!(source = %self.label, "openbao source readable again");
                    self.failing = false;
                }
                None => {}
            }
            if changed {
                self.notifier.revised(&self.label);
            }
        }
    }

    fn report_failure(&mut self, error: &Error) {
        if !self.failing {
            self.failing = true;
            self.notifier.failed(&self.label, error);
        } else {
            debug!(error = %error, "openbao poll still failing");
        }
    }
}

/// `interval` ± 10%, from the kernel's randomness.
fn jittered(interval: Duration) -> Duration {
    let mut byte = [0u8; 2];
    if getrandom::fill(&mut byte).is_err() {
        return interval;
    }
    let unit = u16::from_le_bytes(byte) as f64 / u16::MAX as f64; // 0..=1
    interval.mul_f64(0.9 + 0.2 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(json: &str) -> BTreeMap<String, String> {
        let map: KvMap = serde_json::from_str(json).unwrap();
        map.into_iter()
            .map(|(k, v)| (k, v.0.expose_secret().to_owned()))
            .collect()
    }

    #[test]
    fn kv_values_of_every_json_type() {
        let v = values(
            r#"{"s":"text \"q\" \u00e9","n":42,"neg":-7,"f":1.5,"b":true,"z":null,
                "o":{"a":[1,"x"],"b":{"c":false}},"a":[1,2]}"#,
        );
        assert_eq!(v["s"], "text \"q\" é");
        assert_eq!(v["n"], "42");
        assert_eq!(v["neg"], "-7");
        assert_eq!(v["f"], "1.5");
        assert_eq!(v["b"], "true");
        assert_eq!(v["z"], "");
        assert_eq!(v["o"], r#"{"a":[1,"x"],"b":{"c":false}}"#);
        assert_eq!(v["a"], "[1,2]");
    }

    #[test]
    fn login_body_is_escaped_json() {
        let body = login_body(&[("role", "r\"1"), ("jwt", "a.b.c")]);
        assert_eq!(&body[..], br#"{"jwt":"a.b.c","role":"r\"1"}"#);
        assert!(body.capacity() >= body.len());
    }

    #[test]
    fn token_schedule_renews_at_two_thirds_and_notices_the_max_ttl() {
        let mut token = Token::new(SecretString::from("t"), Duration::from_secs(30), true);
        let now = Instant::now();
        let due = token.due.unwrap().saturating_duration_since(now);
        assert!(due <= Duration::from_secs(20) && due > Duration::from_secs(19));
        assert!(!token.capped);
        token.granted(Duration::from_secs(30), now);
        assert!(!token.capped);
        token.granted(Duration::from_secs(12), now);
        assert!(token.capped, "a shorter grant means the max TTL is near");
        let root = Token::new(SecretString::from("t"), Duration::ZERO, false);
        assert!(root.due.is_none() && !root.expired(now));
    }

    #[test]
    fn standby_answers_move_to_the_next_address() {
        let reply =
            |status, body: &str| Reply::new(status, Zeroizing::new(body.as_bytes().to_vec()), &[]);
        for status in [503, 429, 472, 473, 307] {
            assert!(is_standby(&reply(status, "")));
        }
        assert!(is_standby(&reply(
            500,
            r#"{"errors":["local node not active but active cluster node not found"]}"#
        )));
        assert!(!is_standby(&reply(500, r#"{"errors":["internal error"]}"#)));
        assert!(!is_standby(&reply(
            403,
            r#"{"errors":["permission denied"]}"#
        )));
    }

    #[test]
    fn status_errors_name_the_path_and_no_body() {
        let reply = Reply::new(
            403,
            Zeroizing::new(br#"{"errors":["permission denied"]}"#.to_vec()),
            &[],
        );
        let e = check_status(&reply, "secret/agents/b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret/agents/b") && e.contains("403"), "{e}");
        assert!(e.contains("not allowed to read"), "{e}");
    }

    #[test]
    fn server_error_texts_lose_what_was_sent() {
        let body = br#"{"errors":["invalid role_id rid-1 secret_id sid:2\nforged line","hvs.CAESIJ0123456789abcdefghij and a b"]}"#;
        let text = server_errors(body, &["rid-1", "sid:2"]);
        assert!(!text.contains("rid-1") && !text.contains("sid:2"), "{text}");
        assert!(!text.contains("hvs.CAES") && !text.contains('\n'), "{text}");
        assert!(text.contains("invalid role_id [redacted]"), "{text}");
        assert_eq!(server_errors(b"not json", &[]), "no error message");
        let long = format!(r#"{{"errors":["{}"]}}"#, "word ".repeat(200));
        assert!(server_errors(long.as_bytes(), &[]).len() <= MAX_ERROR_TEXT + 3);
    }

    #[test]
    fn poll_jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(5);
        for _ in 0..200 {
            let d = jittered(base);
            assert!(d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500));
        }
    }

    #[test]
    fn malformed_bodies_give_position_not_content() {
        let reply = Reply::new(
            200,
            Zeroizing::new(br#"{"data":"s3cr3t-in-the-wrong-place"}"#.to_vec()),
            &[],
        );
        let e = reply
            .parse::<Envelope<KvMap>>("secret/a")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("secret/a") && e.contains("column"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn v1_digest_depends_on_key_and_value_boundaries() {
        let key = DigestKey::random();
        let set = |pairs: &[(&str, &str)]| {
            let mut s = SecretSet::default();
            for (k, v) in pairs {
                s.insert(
                    k.to_string(),
                    Secret {
                        value: SecretString::from(*v),
                        origin: Origin::SecretsDir {
                            path: PathBuf::new(),
                        },
                    },
                );
            }
            s
        };
        assert_eq!(
            key.digest(&set(&[("A", "bc")])),
            key.digest(&set(&[("A", "bc")]))
        );
        assert_ne!(
            key.digest(&set(&[("A", "bc")])),
            key.digest(&set(&[("Ab", "c")]))
        );
    }
}
