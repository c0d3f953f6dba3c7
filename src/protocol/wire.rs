//! Wire types of the HTTP API, shared by the server (`vault::api`), the admin CLI and the
//! launcher's store source (both through `protocol::client`).
//!
//! Every field that can carry a value is a `SecretString` with an explicit `serialize_with`
//! (`expose_value`) and `deserialize_with`: serde never sees a value by accident, and the types
//! that hold one implement `Debug` by hand with the value redacted. The only *responses* with
//! values are the run-time reads, [`RuntimeSecrets`] and [`RuntimeEntry`] (the same read
//! narrowed to one key); the others carry values only in requests (set, import) and the
//! issued token (shown once).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// How an entry is treated: `secret` is write-only (masked everywhere but the run-time read),
/// `plain` is readable configuration (shown in clear to managers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Secret,
    Plain,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Plain => "plain",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "secret" => Some(Kind::Secret),
            "plain" => Some(Kind::Plain),
            _ => None,
        }
    }
}

/// Where a run-time entry came from: the agent's own entry, or a project-wide variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Agent,
    Project,
}

/// The masked preview of a value, wherever one is shown (store listings, `agent-run --check`): `****` plus its last 4 characters if it has 12 or more,
/// its last 2 if it has 8 to 11, nothing more if shorter. Short values would be guessable
/// from a bigger tail, so they show less.
pub fn preview(value: &str) -> String {
    let count = value.chars().count();
    let shown = match count {
        12.. => 4,
        8..=11 => 2,
        _ => 0,
    };
    let tail: String = value.chars().skip(count - shown).collect();
    format!("****{tail}")
}

/// RFC 3339 (UTC, milliseconds): every time the API shows. `ms` is unix milliseconds.
pub fn format_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Serialize a value in clear. Used only on the fields listed in the module doc; grep for
/// `expose_value` to audit every place a value leaves the process.
pub fn expose_value<S: Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
}

fn expose_opt_value<S: Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_some(value.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// Deserializes a JSON string straight into a `SecretString`; an owned intermediate `String`
/// is wiped.
struct WireSecret(SecretString);

impl<'de> Deserialize<'de> for WireSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WireSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WireSecret, E> {
                Ok(WireSecret(SecretString::from(Box::<str>::from(text))))
            }
            fn visit_string<E: serde::de::Error>(self, mut text: String) -> Result<WireSecret, E> {
                let secret = SecretString::from(Box::<str>::from(text.as_str()));
                text.zeroize();
                Ok(WireSecret(secret))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

fn secret_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    WireSecret::deserialize(deserializer).map(|wire| wire.0)
}

fn opt_secret_value<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Option::<WireSecret>::deserialize(deserializer).map(|wire| wire.map(|wire| wire.0))
}

/// One entry of the run-time read: the only response type that carries values.
#[derive(Clone, Serialize, Deserialize)]
pub struct RuntimeSecret {
    pub name: String,
    #[serde(serialize_with = "expose_value", deserialize_with = "secret_value")]
    pub value: SecretString,
    pub kind: Kind,
    pub origin: Origin,
    /// The entry's current version (0 from a server older than this field).
    #[serde(default)]
    pub version: i64,
}

impl fmt::Debug for RuntimeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeSecret")
            .field("name", &self.name)
            .field("value", &"[REDACTED]")
            .field("kind", &self.kind)
            .field("origin", &self.origin)
            .field("version", &self.version)
            .finish()
    }
}

/// `GET /v1/runtime/secrets`: everything the token may read for `agent`, at `revision`.
#[derive(Clone, Serialize, Deserialize)]
pub struct RuntimeSecrets {
    pub agent: String,
    pub revision: u64,
    pub secrets: Vec<RuntimeSecret>,
}

impl fmt::Debug for RuntimeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeSecrets")
            .field("agent", &self.agent)
            .field("revision", &self.revision)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// `GET /v1/runtime/secrets/{key}`: one entry, for an agent that reads at call time (the
/// SDKs). `accessed_at` is the time of this read, the same the audit record carries.
#[derive(Clone, Serialize, Deserialize)]
pub struct RuntimeEntry {
    pub agent: String,
    pub key: String,
    #[serde(serialize_with = "expose_value", deserialize_with = "secret_value")]
    pub value: SecretString,
    pub version: i64,
    pub kind: Kind,
    pub origin: Origin,
    pub accessed_at: String,
}

impl fmt::Debug for RuntimeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeEntry")
            .field("agent", &self.agent)
            .field("key", &self.key)
            .field("value", &"[REDACTED]")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("origin", &self.origin)
            .field("accessed_at", &self.accessed_at)
            .finish()
    }
}

/// Query of `GET /v1/runtime/secrets/{key}`: no long-poll (a caller that reads at call time
/// asks again when it needs the value).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeKeyQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// `GET /v1/runtime/revision`: the long-poll answer, deliberately without values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionResponse {
    pub revision: u64,
}

/// Query of both run-time endpoints.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Answer only once the revision is greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Seconds to wait for a newer revision before answering 304 (capped at 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// `PUT .../secrets/{key}` and `PUT /v1/vars/{key}`: create or update. On update every field
/// is optional; leaving `value` out changes the description (or kind) alone.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecretRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt_value",
        deserialize_with = "opt_secret_value"
    )]
    pub value: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Create the entry even though its name is on `protocol::names::DANGEROUS_NAMES`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_dangerous_name: bool,
    /// Store an empty (or whitespace-only) value: refused otherwise (`empty_value`), the
    /// same rule by which an import skips blank lines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty_value: bool,
}

impl fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutSecretRequest")
            .field("value", &self.value.as_ref().map(|_| "[REDACTED]"))
            .field("description", &self.description)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Metadata of one entry as every management call shows it: never a secret's value, only its
/// masked `preview`; `value` is present for plain entries where the call allows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretMeta {
    /// The owning agent; absent for project-wide variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub key: String,
    pub kind: Kind,
    pub description: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub last_read_at: Option<String>,
    /// `****` plus the last 4 characters (values of 12+ characters), the last 2 (8 to 11),
    /// or nothing (shorter values).
    pub preview: String,
    /// Plain entries only, in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Answer to a create/update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutResponse {
    /// The key did not exist before.
    pub created: bool,
    /// A new version or description was written. Every write of a value is a new version,
    /// whatever the value, so this never confirms a guessed value.
    pub changed: bool,
    pub secret: SecretMeta,
}

/// `GET /v1/agents/{agent}/secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretList {
    pub agent: String,
    pub secrets: Vec<SecretMeta>,
}

/// `GET /v1/vars`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VarList {
    pub vars: Vec<SecretMeta>,
}

/// `?values=true` on list calls: include plain values in clear.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub values: Option<bool>,
}

/// Metadata of one kept version; never its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: i64,
    pub kind: Kind,
    pub created_at: String,
    pub current: bool,
}

/// `GET .../{key}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub key: String,
    pub versions: Vec<VersionMeta>,
}

/// `POST .../{key}/rollback`: `to` defaults to the version before the current one.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
}

/// Answer to a rollback: the new current version holds the value of `rolled_back_to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackResponse {
    pub rolled_back_to: i64,
    pub secret: SecretMeta,
}

/// One `.env` line to import.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportEntry {
    pub key: String,
    #[serde(serialize_with = "expose_value", deserialize_with = "secret_value")]
    pub value: SecretString,
}

impl fmt::Debug for ImportEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportEntry")
            .field("key", &self.key)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

/// `POST /v1/agents/{agent}/import`: all-or-nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub entries: Vec<ImportEntry>,
    /// Import every entry as a plain variable.
    #[serde(default)]
    pub plain: bool,
    /// Import these keys as plain variables.
    #[serde(default)]
    pub plain_keys: Vec<String>,
    /// Replace existing keys instead of skipping them.
    #[serde(default)]
    pub overwrite: bool,
    /// Import names on `protocol::names::DANGEROUS_NAMES` too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_dangerous_name: bool,
}

/// What an import did, by key name. Blank values, existing keys (without `overwrite`) and
/// identical values are `skipped`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportSummary {
    pub created: Vec<String>,
    pub skipped: Vec<String>,
    pub overwritten: Vec<String>,
}

/// A token lifetime: seconds, or a humantime string such as `"1h"` or `"90s"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(u64),
    Text(String),
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    /// Omitted: the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Issue read scopes (`secrets:read:AGENT/…`) for agents that have no entries of their
    /// own yet; refused otherwise (`unknown_agent`), since such a token reads nothing but
    /// project variables (usually a misspelt agent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
}

/// Answer to `POST /v1/tokens`: the only time the token itself is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: String,
    #[serde(serialize_with = "expose_value", deserialize_with = "secret_value")]
    pub token: SecretString,
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: Option<String>,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One agent in `GET /v1/agents`: an agent exists through its own entries, so every agent
/// listed has at least one. Counts and times only, never a value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSummary {
    pub name: String,
    /// The agent's own entries (secrets and plain variables), not project variables.
    pub entries: u64,
    pub secrets: u64,
    pub plain: u64,
    /// The latest run-time read of any of its entries; `null` if never read.
    pub last_read_at: Option<String>,
}

/// `GET /v1/agents`: every agent with entries, by name, and the number of project
/// variables (which every agent's read token also reads where its pattern matches).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentSummary>,
    pub project_vars: u64,
}

/// Token metadata: never the token nor its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenMeta {
    pub id: String,
    pub scopes: Vec<String>,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenMeta>,
}

/// One audit record: who (token id), what (action, agent, key names), when, from where, how
/// it ended. Never a value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub token_id: Option<String>,
    pub action: String,
    pub agent: Option<String>,
    pub keys: Vec<String>,
    pub remote: Option<String>,
    pub outcome: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    pub records: Vec<AuditEntry>,
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// RFC 3339 time or unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Newest records to return, 1 to 10,000 (default 1,000). With `after`: the oldest
    /// that many after it, so a follower misses none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only records whose `id` is greater: the cursor of `agent-vault audit --follow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// Every error answer: `{"error":{"code":"forbidden","message":"..."}}`. Codes are stable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The stable error codes of [`ErrorDetail::code`]: clients may branch on them, so they
/// never change meaning.
pub mod code {
    pub const INVALID_NAME: &str = "invalid_name";
    /// The name changes how the child starts (`protocol::names`); `allow_dangerous_name`.
    pub const DANGEROUS_NAME: &str = "dangerous_name";
    /// An empty or whitespace-only value without `allow_empty_value`.
    pub const EMPTY_VALUE: &str = "empty_value";
    pub const INVALID_VALUE: &str = "invalid_value";
    pub const VALUE_TOO_LARGE: &str = "value_too_large";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const INVALID_SCOPE: &str = "invalid_scope";
    /// A read scope for an agent that has no entries of its own, without `allow_empty`
    /// (usually a misspelt agent; the message names close existing agents).
    pub const UNKNOWN_AGENT: &str = "unknown_agent";
    pub const NOT_FOUND: &str = "not_found";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    /// A run-time read with a token that may read no agent at all (an admin token): the
    /// client can then say which token to issue instead of a bare "forbidden".
    pub const NOT_A_READ_TOKEN: &str = "not_a_read_token";
    pub const CONFLICT: &str = "conflict";
    pub const TOO_MANY_WAITERS: &str = "too_many_waiters";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// `/readyz`: the database cannot take a write, or the server is shutting down.
    pub const NOT_READY: &str = "not_ready";
    pub const INTERNAL: &str = "internal";
    pub const BAD_JSON: &str = "bad_json";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const BAD_BODY: &str = "bad_body";
    pub const INVALID_QUERY: &str = "invalid_query";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews() {
        assert_eq!(preview(""), "****");
        assert_eq!(preview("abc"), "****");
        assert_eq!(preview("1234567"), "****");
        assert_eq!(preview("12345678"), "****78");
        assert_eq!(preview("12345678901"), "****01");
        assert_eq!(preview("sk_live_abcd1234"), "****1234");
    }

    #[test]
    fn debug_redacts_values() {
        let entry = RuntimeSecret {
            name: "K".into(),
            value: SecretString::from("hunter2-secret"),
            kind: Kind::Secret,
            origin: Origin::Agent,
            version: 1,
        };
        assert!(!format!("{entry:?}").contains("hunter2"));
        let req: PutSecretRequest =
            serde_json::from_str(r#"{"value":"hunter2-secret"}"#).expect("valid request");
        assert!(!format!("{req:?}").contains("hunter2"));
        assert_eq!(
            req.value.as_ref().map(|v| v.expose_secret().to_string()),
            Some("hunter2-secret".to_string())
        );
        let json = serde_json::to_string(&entry).expect("serializable");
        assert!(json.contains("hunter2-secret"));
    }
}
