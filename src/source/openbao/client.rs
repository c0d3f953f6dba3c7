//! The HTTP side: one client for a list of addresses, failing over to the next on a
//! dead, sealed or standby server; replies read into wiped buffers; server error texts made
//! safe to print (credentials cut out, token-like runs masked).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as HttpClient, RequestBuilder};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, info, trace, warn};
use zeroize::{Zeroize, Zeroizing};

use super::auth::Token;
use super::kv::KvMount;
use super::Auth;
use crate::source::digest::DigestKey;
use crate::source::{Error, StartBudget};

/// A TCP connect to a live server on a LAN takes milliseconds; a dead address should not
/// hold up failover to the next one for long.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One whole request, including a slow server. Bounds how long a fetch can block the
/// supervisor when a server hangs.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A 403 makes agent-run log in again (the token may have been revoked) at most this often.
pub(super) const FORCED_LOGIN_EVERY: Duration = Duration::from_secs(30);

/// What agent-run knows about the server side, shared by `fetch` (supervisor thread) and
/// the watcher. One lock around the whole conversation: a fetch and a poll never
/// interleave, so there is one login at a time and one idea of the active address. A std
/// `Mutex` because nothing here is async.
pub(super) struct Client {
    /// Built on first use, not in `new`: reqwest's blocking client starts a runtime
    /// thread, and `new` runs before the launcher blocks signals — that thread would keep
    /// the default mask and a SIGTERM meant for the supervisor could kill the process.
    pub(super) http: OnceLock<HttpClient>,
    pub(super) addresses: Vec<Url>,
    pub(super) paths: Vec<String>,
    pub(super) namespace: Option<HeaderValue>,
    pub(super) proxy: Option<Url>,
    pub(super) ca_pem: Option<Vec<u8>>,
    /// The end of `--start-timeout`, until the first fetch has succeeded.
    pub(super) start: StartBudget,
    pub(super) auth: Auth,
    /// `--auth token` without a file: the token as it was in the environment at start.
    pub(super) env_token: Option<SecretString>,
    /// Keys the KV v1 change digests.
    pub(super) digest_key: DigestKey,
    pub(super) session: Mutex<Session>,
}

#[derive(Default)]
pub(super) struct Session {
    /// Index into `addresses` of the server that answered last.
    pub(super) active: usize,
    pub(super) token: Option<Token>,
    /// Mount of every KV path, detected once.
    pub(super) mounts: HashMap<String, KvMount>,
    /// When a 403 last made us log in again (see `Client::authed`).
    pub(super) forced_login: Option<Instant>,
    /// KV paths read successfully at least once: a 404 for one of these means its secret
    /// was deleted with every version (`bao kv metadata delete`, or a KV v1 delete), so it
    /// now provides nothing; for a path never read, a 404 is a configuration error.
    pub(super) known: std::collections::HashSet<String>,
    /// What each path looked like to the last fetch (the KV v2 version it read, or the
    /// digest of a KV v1 secret): the watcher's baseline, so a start reads the values once
    /// (issue 13) and a change after the fetch still differs from it at the first poll.
    pub(super) fetched: HashMap<String, super::kv::PathState>,
}

/// One answer: status and the whole body, in a buffer wiped on drop.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Zeroizing<Vec<u8>>,
    /// The server's `errors` list, ready for a message (see [`server_errors`]).
    pub(super) errors: String,
}

impl Reply {
    /// `sent`: every credential the request carried (token, role id, secret id, JWT), to be
    /// removed from the error text.
    pub(super) fn new(status: u16, body: Zeroizing<Vec<u8>>, sent: &[&str]) -> Reply {
        let errors = server_errors(&body, sent);
        Reply {
            status,
            body,
            errors,
        }
    }

    pub(super) fn errors(&self) -> &str {
        &self.errors
    }

    pub(super) fn parse<'a, T: Deserialize<'a>>(&'a self, path: &str) -> Result<T, Error> {
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
    pub(super) fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves a session that is still usable: at worst
        // a stale token, which the next request replaces.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is left of `--start-timeout` while the first fetch has not succeeded.
    pub(super) fn start_budget(&self) -> Option<Duration> {
        self.start.remaining(REQUEST_TIMEOUT)
    }

    pub(super) fn http(&self) -> Result<&HttpClient, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let unreachable = |reason: String| Error::Unreachable {
            url: join_addresses(&self.addresses),
            reason,
        };
        // The token goes in a header: never through a proxy picked up from HTTP_PROXY
        // (the builder takes none from the environment), only the user's --proxy.
        let http = crate::source::http_client_builder(self.proxy.as_ref(), self.ca_pem.as_deref())
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
    pub(super) fn send(
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
        // Every address failed with a TLS problem no retry fixes (`protocol::tls`): then
        // the error says so and is not retried for --start-timeout.
        let mut only_tls_problems = true;
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
                Err(e) => {
                    let problem = if url.starts_with("https://") {
                        crate::protocol::tls::diagnose(&e)
                    } else {
                        crate::protocol::tls::diagnose_plain(&e)
                    };
                    match problem {
                        Some(problem) => Err(problem.to_string()),
                        None => {
                            only_tls_problems = false;
                            Err(error_chain(&e))
                        }
                    }
                }
            };
            match reply {
                Err(reason) => {
                    warn!(address = %address, reason = %reason, "openbao address unreachable; trying the next one");
                    last_failure = format!("{address}: {reason}");
                }
                Ok(reply) if is_standby(&reply) => {
                    only_tls_problems = false;
                    let reason = format!("HTTP {} ({})", reply.status, reply.errors());
                    warn!(address = %address, status = reply.status, "openbao node is sealed, standby, not active or not ready; trying the next one");
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
        if only_tls_problems && count > 0 {
            return Err(Error::Tls {
                url: join_addresses(&self.addresses),
                reason: last_failure,
            });
        }
        Err(Error::Unreachable {
            url: join_addresses(&self.addresses),
            reason: last_failure,
        })
    }

    pub(super) fn headers(
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
    pub(super) fn authed(
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

    pub(super) fn send_with_token(
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
}

/// Sealed (503), standby (429, 472, 473, or 307 to the active node), a standby that
/// cannot reach an active node during an election (500 "local node not active"), or a
/// node whose KV v2 mount the active node has not finished upgrading yet (400 "Waiting for
/// the primary to upgrade from non-versioned to versioned data": seen on a standby of a
/// fresh Raft cluster right after the mount was enabled). Each passes with time or on
/// another node, so none may fail a start.
pub(super) fn is_standby(reply: &Reply) -> bool {
    match reply.status {
        503 | 429 | 472 | 473 | 307 => true,
        500 => {
            let errors = reply.errors();
            errors.contains("not active") || errors.contains("standby")
        }
        400 => reply
            .errors()
            .contains("Waiting for the primary to upgrade"),
        _ => false,
    }
}

/// The `errors` list of a Vault answer, on one line, safe to print. Vault's own texts
/// describe the request ("permission denied"), but whatever answers may echo it, so:
/// every credential the request carried is cut out, any long token-like run (a token, a
/// UUID, a JWT segment) is masked, control characters become spaces (no forged log lines),
/// and the text is capped.
pub(super) fn server_errors(body: &[u8], sent: &[&str]) -> String {
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
pub(super) const TOKEN_LIKE_RUN: usize = 20;
/// Longest server error text carried into a message.
pub(super) const MAX_ERROR_TEXT: usize = 300;

pub(super) fn mask_token_like(text: &str) -> String {
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
pub(super) fn read_reply(
    mut response: reqwest::blocking::Response,
    sent: &[&str],
) -> Result<Reply, String> {
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
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) fn join_addresses(addresses: &[Url]) -> String {
    addresses
        .iter()
        .map(|a| a.as_str().trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(", ")
}
