//! Logging in (token, AppRole, JWT, Kubernetes — each a few lines, so one module) and
//! keeping the token alive: renewal at 2/3 of its TTL, a new login near the max TTL.
//! Credentials are read with `source::secret_file` into `SecretString`s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::client::{Client, Session};
use super::value::KvValue;
use super::{Auth, TOKEN_VARIABLES};
use crate::source::Error;

/// A token is renewed once this share of its TTL has passed (the same point Vault's own
/// agent uses), leaving a third of the TTL for retries and failover.
pub(super) const RENEW_AT: f64 = 2.0 / 3.0;
/// A renewal that grants less than the login's TTL minus this has hit the token's max TTL:
/// the next step is a new login, not another renewal.
pub(super) const TTL_SLACK: Duration = Duration::from_secs(1);
/// After a failed renewal or login, the next attempt waits this long.
pub(super) const TOKEN_RETRY: Duration = Duration::from_secs(1);

/// The token in use and when to act on it.
pub(super) struct Token {
    pub(super) value: SecretString,
    pub(super) renewable: bool,
    /// The TTL the login granted: a renewal granting less has reached the max TTL.
    pub(super) login_ttl: Duration,
    /// `None`: the token never expires (a root token, TTL 0).
    pub(super) expires: Option<Instant>,
    /// When to renew or log in again (2/3 of the TTL granted last).
    pub(super) due: Option<Instant>,
    /// The max TTL is near: at `due`, log in again instead of renewing.
    pub(super) capped: bool,
}

impl Token {
    pub(super) fn new(value: SecretString, ttl: Duration, renewable: bool) -> Token {
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
    pub(super) fn granted(&mut self, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            self.expires = None;
            self.due = None;
        } else {
            self.expires = Some(now + ttl);
            self.due = Some(now + ttl.mul_f64(RENEW_AT));
        }
        self.capped = ttl + TTL_SLACK < self.login_ttl;
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now + TTL_SLACK)
    }
}

impl Client {
    pub(super) fn ensure_token(&self, session: &mut Session) -> Result<(), Error> {
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
    pub(super) fn login(&self, session: &mut Session) -> Result<(), Error> {
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

    pub(super) fn post_login(
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
    pub(super) fn lookup(
        &self,
        session: &mut Session,
        value: SecretString,
    ) -> Result<Token, Error> {
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
    pub(super) fn maintain_token(&self, session: &mut Session, now: Instant) -> Result<(), Error> {
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

    pub(super) fn renew(&self, session: &mut Session) -> Result<(), Error> {
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
}

pub(super) fn no_env_token(method: &'static str) -> Error {
    Error::Auth {
        method,
        reason: format!(
            "no token: set {} or {}, or give --token-file (or choose another --auth)",
            TOKEN_VARIABLES[0], TOKEN_VARIABLES[1]
        ),
    }
}

/// `BAO_TOKEN`, else `VAULT_TOKEN`, straight into a `SecretString`.
pub(super) fn token_from_env() -> Result<SecretString, Error> {
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
pub(super) fn read_credential(path: &Path, method: &'static str) -> Result<SecretString, Error> {
    // Non-blocking, regular files only, size-capped (a FIFO must not hang the launcher),
    // and never a file anyone may write.
    let buf = crate::secret_file::read_credential(path)?;
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
pub(super) fn login_body(fields: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
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
