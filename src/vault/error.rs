//! The store's one error type, apart from `run()` so the modules that need it do not
//! import the server's entry point. `api::ApiError` is the only thing that turns it into
//! an HTTP status.

use std::path::PathBuf;

/// Everything that can go wrong inside the store. Variants carry names (agent, key, path,
/// token id), never a value or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid {what} name {name:?}: {rule}")]
    InvalidName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("{key} changes how the loader, a shell or a runtime starts a program (a code-execution lever); it is refused unless the request allows a dangerous name (agent-vault: --allow-dangerous-name)")]
    DangerousName { key: String },
    #[error("the value for {key} is empty (or only whitespace); it is refused unless the request allows an empty value (agent-vault: --allow-empty-value)")]
    EmptyValue { key: String },
    #[error("invalid value for {key}: {reason}")]
    InvalidValue { key: String, reason: &'static str },
    #[error("value for {key} is {len} bytes, the limit is {max}")]
    ValueTooLarge { key: String, len: usize, max: usize },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: &'static str },
    /// A read scope for an agent without entries, and the request did not allow it.
    /// `hint` is "; did you mean …?" or a pointer to `agents list`.
    #[error("agent {agent} has no entries, so a read token for it reads nothing of its own{hint}; issue it anyway with allow_empty (agent-vault: --allow-empty) if its entries come later")]
    UnknownAgent { agent: String, hint: String },
    /// A run-time read without `agent` by a token that reads more than one agent (several
    /// scopes, or a `PREFIX/**` one): the store will not guess which.
    #[error(
        "token {token_id} reads {what}; name the agent: ?agent=NAME (agent-run: --agent NAME)"
    )]
    AgentRequired { token_id: String, what: String },
    #[error("invalid tag {tag:?}: {rule}")]
    InvalidTag { tag: String, rule: &'static str },
    /// A run-time read whose token covers a critical entry, before an approval.
    #[error("token {token_id} may read a critical entry of agent {agent} ({keys}), so it reads nothing until an admin other than its issuer approves request {id}: agent-vault approvals approve {id}")]
    ApprovalRequired {
        id: String,
        token_id: String,
        agent: String,
        keys: String,
    },
    #[error("approval request {id} for token {token_id} was denied: it reads nothing; issue a token whose scope leaves out the critical entries, or a new token and ask again")]
    ApprovalDenied { id: String, token_id: String },
    #[error("token {approver} may not decide approval request {id}: {why}; another admin token must approve it")]
    SelfApproval {
        id: String,
        approver: String,
        why: &'static str,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// A run-time read with a token that reads no agent (answered 403 `not_a_read_token`).
    #[error("{0}")]
    NotAReadToken(String),
    /// The request is valid but would leave the store in a state it must not be in.
    #[error("{0}")]
    Conflict(String),
    #[error("too many long-poll waiters; retry later")]
    TooManyWaiters,
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot decrypt {owner}/{key} version {version}: wrong master key or tampered row; start agent-vault with the master key that wrote this database (--master-key-file), or restore a backup")]
    Decrypt {
        owner: String,
        key: String,
        version: i64,
    },
    #[error("encryption failed")]
    Encrypt,
    /// `source_name` is a `crypto::KeySource` text ("the master key from …"), never the key.
    #[error("{source_name}: {reason}")]
    MasterKey { source_name: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer agent-vault (more migrations than this binary
    /// knows): opening it could corrupt what that version relies on, so it is refused.
    #[error("{path} has schema version {found}, newer than this agent-vault ({binary}, schema {known}) knows; run the agent-vault that wrote it, or a newer one (downgrade: restore a backup taken before the upgrade)")]
    SchemaTooNew {
        path: std::path::PathBuf,
        found: i64,
        known: i64,
        binary: &'static str,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
