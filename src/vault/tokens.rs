//! Tokens: their format, scopes, hashing and constant-time verification (authentication and
//! the scope half of authorization).
//!
//! A token reads `avt_<id>_<secret>`: the visible prefix makes leaked tokens easy to grep for
//! (secret scanners key on such prefixes), the 12-hex-digit id names the token in logs, audit
//! records and `tokens list`, and the 256-bit secret is never stored: only the SHA-256 of the
//! whole token is, compared with `subtle` in constant time.
//!
//! Verification happens against an in-memory table loaded at start and updated by `service`
//! on issue and revoke (this server is single-process), so authenticating a request never
//! touches SQLite. This module does not decide what an action needs; `service` asks a
//! [`Caller`] whether it may read or write a given agent and key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::crypto::random_array;
use super::error::{Error, Result};
use crate::protocol::ident;

/// Visible prefix of every token.
pub const TOKEN_PREFIX: &str = "avt_";
/// Hex digits of a token id.
const ID_HEX_LEN: usize = 12;
/// At most this many scopes per token (keeps checks and rows small).
const MAX_SCOPES: usize = 64;

/// What a token may do.
///
/// The agent part of a read or write scope is either an agent name (`production/openai`)
/// or a prefix ending in `/**` (`production/**`): every agent strictly below the prefix, at
/// any depth (`production/openai`, `production/eu/x`), but not the agent named by the prefix
/// itself (`production`), as a path glob's `production/**/*` does not match `production/x`'s
/// parent. The key pattern comes after the LAST `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Manage everything: secrets of every agent, project variables, tokens, audit. Does not
    /// read values at run time (issue a read token for that).
    Admin,
    /// `secrets:read:AGENT/PATTERN`: read matching values of AGENT (and project variables
    /// whose key matches) at run time. `agent` may end in `/**`.
    Read { agent: String, pattern: String },
    /// `secrets:write:AGENT/PATTERN`: manage AGENT's entries whose key matches. `agent` may
    /// end in `/**`.
    Write { agent: String, pattern: String },
}

/// The suffix of an agent part that selects every agent below a prefix.
const BELOW: &str = "/**";

/// Does the agent part of a scope (a name, or `PREFIX/**`) select `agent`?
pub fn agent_selected(selector: &str, agent: &str) -> bool {
    match selector.strip_suffix(BELOW) {
        // `agent` is `PREFIX/` followed by at least one more segment.
        Some(prefix) => agent
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty()),
        None => selector == agent,
    }
}

/// The prefix of a `PREFIX/**` agent part; `None` for a plain agent name.
pub fn selector_prefix(selector: &str) -> Option<&str> {
    selector.strip_suffix(BELOW)
}

impl Scope {
    /// Parse and validate one scope string.
    pub fn parse(text: &str) -> Result<Scope> {
        let bad = |reason| Error::InvalidScope {
            scope: text.chars().take(300).collect(),
            reason,
        };
        if text == "admin" {
            return Ok(Scope::Admin);
        }
        let (write, rest) = if let Some(rest) = text.strip_prefix("secrets:read:") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("secrets:write:") {
            (true, rest)
        } else {
            return Err(bad(
                "expected `admin`, `secrets:read:AGENT/PATTERN` or `secrets:write:AGENT/PATTERN`",
            ));
        };
        let (agent, pattern) = rest.rsplit_once('/').ok_or_else(|| {
            bad("expected AGENT/KEY_PATTERN after the action (the key pattern follows the last `/`)")
        })?;
        if agent == "**" || agent == BELOW {
            return Err(bad(
                "`**` needs a prefix before it (secrets:read:production/**/*); a scope over every agent is an admin's",
            ));
        }
        let name = agent.strip_suffix(BELOW).unwrap_or(agent);
        if name.split('/').any(|segment| segment == "**") {
            return Err(bad(
                "`**` may only be the last segment of the agent part (production/**/KEY_PATTERN)",
            ));
        }
        if name.contains('*') || name.contains('?') {
            return Err(bad("an agent segment is a literal name: `*` and `?` belong to the key pattern after the last `/`; `/**` selects every agent below a prefix"));
        }
        if name
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(bad("the agent part has an empty, `.` or `..` segment"));
        }
        if !ident::valid_agent(name) {
            return Err(bad(
                "the agent part must be an agent name (segments of [a-z0-9][a-z0-9_-]{0,62} joined by `/`), optionally followed by `/**`",
            ));
        }
        if pattern.contains("**") {
            return Err(bad("`**` selects agents, not keys: production/**/* is every key of every agent below production, production/* every key of production"));
        }
        if pattern.is_empty()
            || pattern.len() > 256
            || !pattern
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?'))
        {
            return Err(bad(
                "the key pattern may use letters, digits, `_`, `.`, `-`, `*` and `?` only",
            ));
        }
        let (agent, pattern) = (agent.to_string(), pattern.to_string());
        Ok(if write {
            Scope::Write { agent, pattern }
        } else {
            Scope::Read { agent, pattern }
        })
    }
}

/// Agent names: segments of `[a-z0-9][a-z0-9_-]{0,62}` joined by `/` (`protocol::ident`).
pub fn valid_agent(name: &str) -> bool {
    ident::valid_agent(name)
}

/// Key names: `[A-Za-z_][A-Za-z0-9_.-]{0,255}` (`protocol::ident`).
pub fn valid_key(name: &str) -> bool {
    ident::valid_key(name)
}

/// `*` matches any run of characters, `?` exactly one; everything else matches itself.
/// Iterative with one backtrack point, so no pattern can make it exponential.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// One token as the server keeps it: the hash, never the token.
#[derive(Clone)]
pub struct TokenRecord {
    pub id: String,
    pub hash: [u8; 32],
    pub scopes: Vec<String>,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The admin token that issued this one (`None`: `init`, offline, or an older store),
    /// so its approval can be refused to that same admin.
    pub issued_by: Option<String>,
}

/// A freshly issued token: the record to store and the token to show once.
pub struct NewToken {
    pub record: TokenRecord,
    pub token: SecretString,
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Create a token with the given (already validated) scopes.
pub fn issue(
    scopes: Vec<String>,
    description: String,
    now_ms: i64,
    expires_at: Option<i64>,
) -> Result<NewToken> {
    let id_bytes = random_array::<{ ID_HEX_LEN / 2 }>()?;
    let secret = random_array::<32>()?;
    let id = hex::encode(id_bytes.as_ref());
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + ID_HEX_LEN + 1 + 43);
    token.push_str(TOKEN_PREFIX);
    token.push_str(&id);
    token.push('_');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(secret.as_ref(), &mut token);
    let hash = hash_token(&token);
    Ok(NewToken {
        record: TokenRecord {
            id,
            hash,
            scopes,
            description,
            created_at: now_ms,
            expires_at,
            revoked_at: None,
            issued_by: None,
        },
        token: SecretString::from(token),
    })
}

/// Validate a scope list from a request, returning the canonical strings.
pub fn validate_scopes(scopes: &[String]) -> Result<Vec<String>> {
    if scopes.is_empty() {
        return Err(Error::InvalidRequest(
            "a token needs at least one scope".into(),
        ));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(Error::InvalidRequest(format!(
            "a token may have at most {MAX_SCOPES} scopes"
        )));
    }
    for scope in scopes {
        Scope::parse(scope)?;
    }
    Ok(scopes.to_vec())
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub scopes: Arc<[Scope]>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// May read `key` of `agent` at run time (also used for project variables seen through
    /// that agent).
    pub fn can_read(&self, agent: &str, key: &str) -> bool {
        self.scopes.iter().any(|s| match s {
            Scope::Read { agent: a, pattern } => {
                agent_selected(a, agent) && glob_match(pattern, key)
            }
            _ => false,
        })
    }

    /// Has any read scope for `agent`.
    pub fn reads_agent(&self, agent: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| matches!(s, Scope::Read { agent: a, .. } if agent_selected(a, agent)))
    }

    /// The distinct agent parts of read scopes (names and `PREFIX/**`), in scope order.
    pub fn read_agents(&self) -> Vec<&str> {
        let mut agents: Vec<&str> = Vec::new();
        for scope in self.scopes.iter() {
            if let Scope::Read { agent, .. } = scope {
                if !agents.contains(&agent.as_str()) {
                    agents.push(agent);
                }
            }
        }
        agents
    }

    /// May manage `key` of `agent`.
    pub fn can_write(&self, agent: &str, key: &str) -> bool {
        self.is_admin()
            || self.scopes.iter().any(|s| match s {
                Scope::Write { agent: a, pattern } => {
                    agent_selected(a, agent) && glob_match(pattern, key)
                }
                _ => false,
            })
    }

    /// Has any management right on `agent` (needed to list it).
    pub fn manages_agent(&self, agent: &str) -> bool {
        self.is_admin()
            || self
                .scopes
                .iter()
                .any(|s| matches!(s, Scope::Write { agent: a, .. } if agent_selected(a, agent)))
    }
}

/// One loaded token: its record and its parsed scopes (parsed once, not per request).
type LoadedToken = (TokenRecord, Arc<[Scope]>);

/// The live token table, by id. A std `RwLock`: lookups are short and never cross an `.await`.
#[derive(Default)]
pub struct TokenTable {
    by_id: RwLock<HashMap<String, LoadedToken>>,
}

impl TokenTable {
    /// Add or replace a record (on load, issue and revoke).
    pub fn insert(&self, record: TokenRecord) -> Result<()> {
        let scopes = record
            .scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>>>()?;
        let mut map = self
            .by_id
            .write()
            .map_err(|_| Error::Internal("token table lock poisoned".into()))?;
        map.insert(record.id.clone(), (record, scopes.into()));
        Ok(())
    }

    /// Authenticate a bearer token. The same message covers an unknown id and a wrong
    /// secret, so the answer does not tell which ids exist.
    pub fn verify(&self, bearer: &SecretString, now_ms: i64) -> Result<Caller> {
        let token = bearer.expose_secret();
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(Error::Unauthorized("malformed token"))?;
        if rest.len() <= ID_HEX_LEN + 1 || rest.as_bytes().get(ID_HEX_LEN) != Some(&b'_') {
            return Err(Error::Unauthorized("malformed token"));
        }
        let id = rest
            .get(..ID_HEX_LEN)
            .ok_or(Error::Unauthorized("malformed token"))?;
        let hash = hash_token(token);
        let map = self
            .by_id
            .read()
            .map_err(|_| Error::Internal("token table lock poisoned".into()))?;
        let (record, scopes) = map
            .get(id)
            .ok_or(Error::Unauthorized("unknown or invalid token"))?;
        if !bool::from(record.hash.ct_eq(&hash)) {
            return Err(Error::Unauthorized("unknown or invalid token"));
        }
        if record.revoked_at.is_some() {
            return Err(Error::Unauthorized("token revoked"));
        }
        if record.expires_at.is_some_and(|at| at <= now_ms) {
            return Err(Error::Unauthorized("token expired"));
        }
        Ok(Caller {
            token_id: record.id.clone(),
            scopes: scopes.clone(),
        })
    }

    /// Is the token `id` still valid with the same `scopes`? For answers given long after
    /// the request was authenticated (a long-poll may outlive its token).
    pub fn recheck(&self, id: &str, scopes: &Arc<[Scope]>, now_ms: i64) -> Result<()> {
        let map = self
            .by_id
            .read()
            .map_err(|_| Error::Internal("token table lock poisoned".into()))?;
        let (record, current) = map
            .get(id)
            .ok_or(Error::Unauthorized("unknown or invalid token"))?;
        if record.revoked_at.is_some() {
            return Err(Error::Unauthorized("token revoked"));
        }
        if record.expires_at.is_some_and(|at| at <= now_ms) {
            return Err(Error::Unauthorized("token expired"));
        }
        if current != scopes {
            return Err(Error::Unauthorized("token scopes changed"));
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<TokenRecord> {
        self.by_id
            .read()
            .ok()
            .and_then(|map| map.get(id).map(|(record, _)| record.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*", "ANY"));
        assert!(glob_match("STRIPE_*", "STRIPE_KEY"));
        assert!(!glob_match("STRIPE_*", "OPENAI_KEY"));
        assert!(glob_match("A?C", "ABC"));
        assert!(glob_match("*_KEY", "STRIPE_KEY"));
        assert!(!glob_match("ABC", "ABCD"));
        assert!(glob_match("A*B*C", "AXXBYYC"));
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("admin").ok(), Some(Scope::Admin));
        assert!(matches!(
            Scope::parse("secrets:read:support-bot/STRIPE_*"),
            Ok(Scope::Read { .. })
        ));
        assert!(Scope::parse("secrets:read:Bad/x").is_err());
        assert!(Scope::parse("secrets:read:bot").is_err());
        assert!(Scope::parse("secrets:delete:bot/*").is_err());
        assert!(Scope::parse("secrets:read:bot/a=b").is_err());
        assert!(Scope::parse("secrets:read:bot/a-b.*").is_ok());
    }

    #[test]
    fn namespaced_scopes_parse() {
        let read = |agent: &str, pattern: &str| Scope::Read {
            agent: agent.into(),
            pattern: pattern.into(),
        };
        let ok = |text: &str| Scope::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            ok("secrets:read:production/openai/*"),
            read("production/openai", "*")
        );
        assert_eq!(
            ok("secrets:read:production/openai/api-key"),
            read("production/openai", "api-key")
        );
        assert_eq!(
            ok("secrets:read:production/**/*"),
            read("production/**", "*")
        );
        assert_eq!(ok("secrets:read:a/b/**/db.*"), read("a/b/**", "db.*"));
        assert!(matches!(
            ok("secrets:write:production/**/STRIPE_*"),
            Scope::Write { .. }
        ));
        // The key pattern follows the LAST `/`.
        assert_eq!(
            ok("secrets:read:production/openai"),
            read("production", "openai")
        );
        for refused in [
            "secrets:read:prod*",
            "secrets:read:prod*/x",
            "secrets:read:production/*/x",
            "secrets:read:production/op?nai/*",
            "secrets:read:../x",
            "secrets:read:production/../x/*",
            "secrets:read:production/./x/*",
            "secrets:read:production//openai/*",
            "secrets:read:/production/*",
            "secrets:read:production/",
            "secrets:read:**/*",
            "secrets:read:/**/*",
            "secrets:read:production/**/x/*",
            "secrets:read:**/x/*",
            "secrets:read:production/**/**/*",
            "secrets:read:production/**",
            "secrets:read:production/x/**",
            "secrets:read:production/a b",
            "secrets:read:Production/*",
        ] {
            let err = Scope::parse(refused).expect_err(refused);
            assert!(
                matches!(err, Error::InvalidScope { .. }),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn prefix_scopes_select_the_agents_below_only() {
        assert!(agent_selected("production/**", "production/openai"));
        assert!(agent_selected("production/**", "production/eu/x"));
        assert!(!agent_selected("production/**", "production"));
        assert!(!agent_selected("production/**", "productionx/openai"));
        assert!(!agent_selected("production/**", "staging/openai"));
        assert!(agent_selected("production/openai", "production/openai"));
        assert!(!agent_selected("production/openai", "production/openai/x"));
        let caller = Caller {
            token_id: "0".into(),
            scopes: Arc::from(vec![
                Scope::parse("secrets:read:production/**/*").unwrap(),
                Scope::parse("secrets:write:staging/**/api-*").unwrap(),
            ]),
        };
        assert!(caller.can_read("production/openai", "api-key"));
        assert!(caller.reads_agent("production/x"));
        assert!(!caller.reads_agent("production"));
        assert!(!caller.can_read("staging/openai", "api-key"));
        assert!(caller.can_write("staging/openai", "api-key"));
        assert!(!caller.can_write("staging/openai", "db.url"));
        assert!(caller.manages_agent("staging/a/b"));
        assert!(!caller.manages_agent("production/openai"));
    }

    #[test]
    fn issue_then_verify() {
        let table = TokenTable::default();
        let new = issue(
            vec!["secrets:read:bot/*".into()],
            String::new(),
            0,
            Some(1000),
        )
        .expect("issue");
        table.insert(new.record.clone()).expect("insert");
        let caller = table.verify(&new.token, 10).expect("valid");
        assert!(caller.can_read("bot", "K"));
        assert!(!caller.can_read("other", "K"));
        assert!(!caller.can_write("bot", "K"));
        assert!(table.verify(&new.token, 1000).is_err(), "expired");
        let mut forged = new.token.expose_secret().to_string();
        let last = forged.pop();
        forged.push(if last == Some('x') { 'y' } else { 'x' });
        assert!(table.verify(&SecretString::from(forged), 10).is_err());
        assert!(table.verify(&SecretString::from("nope"), 10).is_err());
    }
}
