//! Portal sessions: a browser trades a token for a session cookie once, and then never holds
//! the token again.
//!
//! A session id is 256 random bits (base64url) in the cookie `av_session` (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, and `Secure` when the store serves TLS). The server keeps
//! only the SHA-256 of the id, in memory, mapped to the token's id and scopes and a per-session
//! CSRF token; a restart ends every session. A session ends when it is idle for
//! [`IDLE_TTL`], [`ABSOLUTE_TTL`] after sign-in, at sign-out, or at the first request after
//! its token is revoked or expires (every request re-checks the token). A request that
//! changes something must carry the CSRF token in `X-CSRF-Token` (403 otherwise): the
//! cookie alone, which a browser attaches by itself, never authorizes a change.
//!
//! The session's caller keeps the token's admin and write scopes only, so a browser cannot
//! use a session for run-time reads of values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::vault::crypto::random_array;
use crate::vault::error::{Error, Result};
use crate::vault::service::Vault;
use crate::vault::tokens::{Caller, Scope};

/// The cookie's name.
pub const COOKIE: &str = "av_session";
/// The header a changing request carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends (what operators expect of an admin console).
pub const IDLE_TTL: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; past it the least recently used one ends. Signing in needs a
/// valid admin or write token, so only an operator can fill the table.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token_id: String,
    /// The token's scopes at sign-in, compared on every request (a changed token ends it).
    token_scopes: Arc<[Scope]>,
    /// What the session may use: the token's admin and write scopes.
    caller: Caller,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) >= IDLE_TTL
            || now.duration_since(self.created) >= ABSOLUTE_TTL
    }
}

/// The live sessions; shared by every connection (an `Extension` of the router). A std
/// mutex: it guards map operations and is never held across an `.await`.
#[derive(Clone, Default)]
pub struct Sessions {
    by_hash: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

/// A signed-in session as a handler sees it.
pub struct SessionInfo {
    pub caller: Caller,
    pub csrf: String,
    id_hash: [u8; 32],
}

/// A new session: the cookie value (the id) and its CSRF token.
pub struct NewSession {
    pub id: SecretString,
    pub csrf: String,
}

fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_text() -> Result<String> {
    let bytes = random_array::<32>()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves a consistent map (every operation is one
        // insert or remove), so a poisoned lock is still usable.
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session for `caller` (just authenticated by `Vault::portal_sign_in`).
    pub fn create(&self, caller: &Caller) -> Result<NewSession> {
        let id = SecretString::from(random_text()?);
        let csrf = random_text()?;
        let manage: Vec<Scope> = caller
            .scopes
            .iter()
            .filter(|scope| !matches!(scope, Scope::Read { .. }))
            .cloned()
            .collect();
        let now = Instant::now();
        let session = Session {
            token_id: caller.token_id.clone(),
            token_scopes: caller.scopes.clone(),
            caller: Caller {
                token_id: caller.token_id.clone(),
                scopes: manage.into(),
            },
            csrf: csrf.clone(),
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        map.retain(|_, s| !s.expired(now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(hash_id(id.expose_secret()), session);
        Ok(NewSession { id, csrf })
    }

    /// End a session (sign-out).
    pub fn remove(&self, info: &SessionInfo) {
        self.lock().remove(&info.id_hash);
    }

    /// The session named by the request's cookie, if any: `None` without a session cookie;
    /// `Some(Err)` when the session is unknown or over, its token no longer valid, or a
    /// changing request lacks the right CSRF token.
    pub fn from_parts(&self, parts: &Parts, vault: &Vault) -> Option<Result<SessionInfo>> {
        let id = session_cookie(parts)?;
        Some(self.check(&id, parts, vault))
    }

    fn check(&self, id: &SecretString, parts: &Parts, vault: &Vault) -> Result<SessionInfo> {
        let id_hash = hash_id(id.expose_secret());
        let now = Instant::now();
        let (token_id, token_scopes, caller, csrf) = {
            let mut map = self.lock();
            let session = match map.get_mut(&id_hash) {
                Some(session) if !session.expired(now) => session,
                Some(_) => {
                    map.remove(&id_hash);
                    return Err(Error::Unauthorized("portal session expired; sign in again"));
                }
                None => return Err(Error::Unauthorized("no such portal session; sign in")),
            };
            session.last_seen = now;
            (
                session.token_id.clone(),
                session.token_scopes.clone(),
                session.caller.clone(),
                session.csrf.clone(),
            )
        };
        if let Err(err) = vault.recheck_token(&token_id, &token_scopes) {
            // Revoked or expired: this session is over, not just this request.
            self.lock().remove(&id_hash);
            return Err(err);
        }
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(csrf.as_bytes())) {
                return Err(Error::Forbidden(
                    "a change from a portal session needs its X-CSRF-Token header".into(),
                ));
            }
        }
        Ok(SessionInfo {
            caller,
            csrf,
            id_hash,
        })
    }
}

/// The value of the `av_session` cookie of a request.
fn session_cookie(parts: &Parts) -> Option<SecretString> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.trim()))
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &SecretString, secure: bool) -> String {
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        id.expose_secret(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that clears the cookie at sign-out.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn session(created: Instant, last_seen: Instant) -> Session {
        Session {
            token_id: "0123456789ab".into(),
            token_scopes: Arc::from(vec![Scope::Admin]),
            caller: Caller {
                token_id: "0123456789ab".into(),
                scopes: Arc::from(vec![Scope::Admin]),
            },
            csrf: "x".into(),
            created,
            last_seen,
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_at_the_absolute_limit() {
        let now = Instant::now() + ABSOLUTE_TTL + IDLE_TTL;
        assert!(!session(now, now).expired(now));
        assert!(!session(now - ABSOLUTE_TTL / 2, now - IDLE_TTL / 2).expired(now));
        assert!(session(now - IDLE_TTL, now - IDLE_TTL).expired(now), "idle");
        assert!(
            session(now - ABSOLUTE_TTL, now - Duration::from_secs(1)).expired(now),
            "absolute, even when used a second ago"
        );
    }

    #[test]
    fn a_new_session_keeps_no_read_scope_and_a_fresh_id() {
        let sessions = Sessions::default();
        let caller = Caller {
            token_id: "0123456789ab".into(),
            scopes: Arc::from(vec![
                Scope::Write {
                    agent: "bot".into(),
                    pattern: "*".into(),
                },
                Scope::Read {
                    agent: "bot".into(),
                    pattern: "*".into(),
                },
            ]),
        };
        let one = sessions.create(&caller).expect("session");
        let two = sessions.create(&caller).expect("session");
        assert_ne!(one.id.expose_secret(), two.id.expose_secret());
        assert_ne!(one.csrf, two.csrf);
        assert_eq!(one.id.expose_secret().len(), 43, "256 bits, base64url");
        let map = sessions.lock();
        let kept = &map[&hash_id(one.id.expose_secret())];
        assert!(!kept.caller.can_read("bot", "K"));
        assert!(kept.caller.can_write("bot", "K"));
        assert_eq!(
            kept.token_scopes.len(),
            2,
            "the token's scopes, for the re-check"
        );
    }

    #[test]
    fn the_cookie_is_read_among_others_and_written_with_its_flags() {
        let (parts, ()) = Request::builder()
            .header(header::COOKIE, "a=1; av_session=abc_DEF-1; b=2")
            .body(())
            .expect("request")
            .into_parts();
        let id = session_cookie(&parts).expect("cookie");
        assert_eq!(id.expose_secret(), "abc_DEF-1");
        let (parts, ()) = Request::builder()
            .header(header::COOKIE, "xav_session=nope")
            .body(())
            .expect("request")
            .into_parts();
        assert!(session_cookie(&parts).is_none());
        let id = SecretString::from("abc");
        assert_eq!(
            set_cookie(&id, false),
            "av_session=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie(&id, true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
