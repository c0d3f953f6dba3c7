//! Composes the child's environment: the inherited variables, the secrets and the `--env`
//! mappings, by a documented precedence, into an [`EnvBlock`].
//!
//! Precedence, lowest to highest:
//! 1. the inherited environment (none with `--pristine`, except names matching `--keep`),
//!    always without `AGENT_RUN_*` and the credential variables
//!    ([`CREDENTIAL_VARIABLES`], unless `--allow-env` names one);
//! 2. every secret of every source under its own name (narrowed by `--only`), with
//!    `--prefix` in front of it; with `--preserve-env` an inherited variable of the same
//!    final name wins instead. A key that is not an environment name (`api-key`, `db.url`,
//!    as the hosted vaults name them) goes in under `protocol::ident::env_name`'s one rule
//!    (upper-cased, `-` and `.` to `_`: `API_KEY`); a valid name is never renamed. Such a
//!    key that an `--env NAME=@key` names goes in under NAME only. Two keys that end up
//!    with the same name are refused, naming both (`--check` refuses them the same way);
//! 3. the `--env` mappings, in order (later wins).
//!
//! A variable of 2. or 3. whose final name is on `protocol::names::DANGEROUS_NAMES`
//! (`PATH`, `LD_*`, `NODE_OPTIONS`, …) is refused unless `--allow-env` names it: whoever can
//! write a source would otherwise run code in the child. Inherited ones pass as before.
//!
//! The [`EnvBlock`] is the only place the composed values live: one buffer sized before
//! the first write, page-locked where the limit allows, and wiped in `Drop` — which the
//! supervisor runs as soon as the child has been started.

use std::collections::BTreeMap;
use std::ffi::{c_char, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use crate::launcher::template::{self, Parsed, Piece, Problem, Template};
use crate::protocol::ident;
use crate::source::digest::{Digest, DigestKey, NamedDigests};
use crate::source::{Origin, SecretSet};
use crate::sys;

/// Variables with this prefix configure agent-run and never reach the child.
pub const RESERVED_PREFIX: &str = "AGENT_RUN_";

/// The store token agent-run reads (`--store`); consumed and scrubbed by `launcher`.
pub const AGENT_RUN_TOKEN: &str = "AGENT_RUN_TOKEN";
/// The `--auth token` variables of the OpenBao source, OpenBao's own name first.
pub use crate::source::openbao::{BAO_TOKEN, VAULT_TOKEN};

/// The one table of credential variables, this project's and OpenBao's/Vault's: an
/// operator's shell exports them for the admin CLI or `bao`, and agent-run inherits that
/// shell, but none of them is meant for the agent. Each is removed from the child's
/// environment and scrubbed from agent-run's own unless `--allow-env NAME` lets it through.
/// `AGENT_VAULT_AGENT_TOKEN`, the token the SDKs read, is meant for the child and is not
/// here. Names only of variables that hold a credential, never of paths to one
/// (`AGENT_VAULT_TOKEN_FILE`, `BAO_TOKEN_PATH`), which give nothing away.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    // agent-vault: the admin token, the master key of the data directory, the scoped token.
    "AGENT_VAULT_TOKEN",
    "AGENT_VAULT_MASTER_KEY",
    AGENT_RUN_TOKEN,
    // OpenBao / Vault CLI and agents: the client token.
    BAO_TOKEN,
    VAULT_TOKEN,
    // AppRole credentials as deployment scripts and the SDKs' examples export them.
    "BAO_ROLE_ID",
    "BAO_SECRET_ID",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    // MFA credentials the CLI sends with a login (`VAULT_MFA=method:key=value`).
    "BAO_MFA",
    "VAULT_MFA",
    // `server -dev`'s root token.
    "BAO_DEV_ROOT_TOKEN_ID",
    "VAULT_DEV_ROOT_TOKEN_ID",
];

/// The kernel refuses any single `NAME=value` string longer than this (MAX_ARG_STRLEN,
/// 32 pages, including the NUL).
const MAX_ENTRY_LEN: usize = 32 * 4096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--env {spec:?}: expected KEY=@SECRET, KEY=@, KEY=\\@literal, KEY=value or KEY='text @{{SECRET}} text'")]
    BadMapping { spec: String },
    /// An `@{` without its `}`, or an empty `@{}`.
    #[error("--env {spec:?}: {problem}; write @{{SECRET}} to reference a secret, or \\@{{ for a literal @{{")]
    BadReference { spec: String, problem: &'static str },
    #[error("{what} {name:?} is not a valid environment variable name (letters, digits, '_', not starting with a digit)")]
    InvalidName { what: String, name: String },
    #[error("{name} ({origin}): the value contains a NUL byte, which an environment cannot hold")]
    NulInValue { name: String, origin: String },
    #[error("{name} ({origin}): the entry is {len} bytes, over the kernel's limit of {limit} for one variable")]
    EntryTooLarge {
        name: String,
        origin: String,
        len: usize,
        limit: usize,
    },
    #[error("--env {key}=@{secret}: no source has a secret named {secret} (use --allow-missing to skip it)")]
    MissingSecret { key: String, secret: String },
    /// The `MissingSecret` of an `@{SECRET}` inside a value.
    #[error("--env {key}=…@{{{secret}}}…: no source has a secret named {secret} (use --allow-missing to skip {key})")]
    MissingReference { key: String, secret: String },
    /// The source saw the secret but did not read it (a FIFO in a secrets dir); `reason`
    /// says why, naming the file, never a value.
    #[error("--env {key}=@{secret}: {reason}")]
    SkippedSecret {
        key: String,
        secret: String,
        reason: String,
    },
    /// The `SkippedSecret` of an `@{SECRET}` inside a value.
    #[error("--env {key}=…@{{{secret}}}…: {reason}")]
    SkippedReference {
        key: String,
        secret: String,
        reason: String,
    },
    #[error("--env {key}: names starting with {RESERVED_PREFIX} are reserved for agent-run")]
    Reserved { key: String },
    #[error("--prefix {prefix}: names starting with {RESERVED_PREFIX} are reserved for agent-run")]
    ReservedPrefix { prefix: String },
    #[error("--allow-env {name}: variables starting with {RESERVED_PREFIX} configure agent-run and never reach the child")]
    ReservedAllowed { name: String },
    /// A name on `protocol::names::DANGEROUS_NAMES` from a source or `--env`.
    #[error("{name} ({origin}) changes how the loader, a shell or a runtime starts the child, so agent-run does not inject it; pass --allow-env {name} if it is meant to")]
    DangerousName { name: String, origin: String },
    /// Two keys that become the same variable by `protocol::ident::env_name` (`api-key` and
    /// `API_KEY`); names only.
    #[error("keys {first} and {second} both become the variable {name} (a key that is not an environment name is upper-cased, '-' and '.' turned into '_'); inject one under another name with --env OTHER_NAME=@{renamed}, or leave one out with --only")]
    NameCollision {
        name: String,
        first: String,
        second: String,
        renamed: String,
    },
    #[error("invalid glob {pattern:?}: {reason}")]
    BadGlob { pattern: String, reason: String },
    /// `--require` / `--require-nonempty` not met (names only).
    #[error(transparent)]
    Required(#[from] crate::launcher::require::Error),
}

/// The right-hand side of one `--env` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingValue {
    /// `KEY=@SECRET` / `KEY=@`.
    Secret(String),
    /// `KEY=value` / `KEY=\@value`: not a secret, it was on the command line.
    Literal(String),
    /// `KEY=text @{SECRET} text`: composed in the `EnvBlock` itself.
    Template(Template),
}

/// One `--env KEY=SPEC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub key: String,
    pub value: MappingValue,
}

impl Mapping {
    /// Parses the reference syntax of hosted agent platforms.
    pub fn parse(spec: &str) -> Result<Mapping, Error> {
        let bad = || Error::BadMapping {
            spec: spec.to_owned(),
        };
        let (key, rhs) = spec.split_once('=').ok_or_else(bad)?;
        check_name("--env key", key)?;
        if key.starts_with(RESERVED_PREFIX) {
            return Err(Error::Reserved {
                key: key.to_owned(),
            });
        }
        let value = if rhs == "@" {
            MappingValue::Secret(key.to_owned())
        } else if let Some(secret) = rhs.strip_prefix('@').filter(|s| !s.starts_with('{')) {
            MappingValue::Secret(secret.to_owned())
        } else {
            // `KEY=\@literal`: a leading `\@` is an `@` (`\@{` is the template's own
            // escape, handled there); an `@` not followed by `{` is literal text.
            let text = match rhs.strip_prefix('\\') {
                Some(rest) if rest.starts_with('@') && !rest.starts_with("@{") => rest,
                _ => rhs,
            };
            match template::parse(text).map_err(|problem| Error::BadReference {
                spec: spec.to_owned(),
                problem: match problem {
                    Problem::Unterminated => "an @{ has no closing }",
                    Problem::Empty => "@{} names no secret",
                },
            })? {
                Parsed::Literal(text) => MappingValue::Literal(text),
                Parsed::Template(template) => MappingValue::Template(template),
            }
        };
        Ok(Mapping {
            key: key.to_owned(),
            value,
        })
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the portable shell name, the only kind every program can read.
pub fn is_valid_name(name: &str) -> bool {
    ident::valid_env_name(name)
}

fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: what.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Compiles `--keep` / `--only` patterns.
pub fn compile_globs(patterns: &[String]) -> Result<Vec<glob::Pattern>, Error> {
    patterns
        .iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|e| Error::BadGlob {
                pattern: p.clone(),
                reason: e.msg.to_owned(),
            })
        })
        .collect()
}

/// How to compose the environment; built once by `config`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub pristine: bool,
    pub keep: Vec<glob::Pattern>,
    pub only: Vec<glob::Pattern>,
    pub mappings: Vec<Mapping>,
    pub allow_missing: bool,
    /// Inherited variables that never pass: [`CREDENTIAL_VARIABLES`] except the names in
    /// `allowed` (`config` builds it; `launcher` scrubs the same names from its own
    /// environment).
    pub hidden: Vec<String>,
    /// `--allow-env`: names the user lets through every deny list.
    pub allowed: Vec<String>,
    /// `--require`, `--require-nonempty`: checked on every composition.
    pub require: crate::launcher::require::Requirements,
    /// `--preserve-env`: inherited variables that win over the sources.
    pub preserve: Preserve,
    /// `--prefix`: put before the name of every secret from the sources.
    pub prefix: Option<String>,
}

/// `--preserve-env` (doppler's): which inherited variables win over a source's secret of
/// the same final name. `--env` mappings still win over everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Preserve {
    /// The sources win (the default).
    #[default]
    None,
    /// `--preserve-env` without a list (or `true`): every inherited variable.
    All,
    /// `--preserve-env=NAME,NAME`: only these.
    Names(Vec<String>),
}

impl Preserve {
    /// From the flag's values: absent → `None`; no list, `true` or `1` → `All`; `false` or
    /// `0` → `None` (so the variable can switch it off); else a list of valid names.
    pub fn parse(values: Option<&[String]>) -> Result<Preserve, Error> {
        let Some(values) = values else {
            return Ok(Preserve::None);
        };
        let names: Vec<&str> = values
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        match names.as_slice() {
            [] | ["true" | "1"] => Ok(Preserve::All),
            ["false" | "0"] => Ok(Preserve::None),
            _ => {
                for name in &names {
                    check_name("--preserve-env", name)?;
                }
                Ok(Preserve::Names(
                    names.iter().map(|n| n.to_string()).collect(),
                ))
            }
        }
    }

    fn keeps(&self, name: &str) -> bool {
        match self {
            Preserve::None => false,
            Preserve::All => true,
            Preserve::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

/// `--prefix`: a valid start of a name (so every prefixed name is one), never
/// agent-run's own `AGENT_RUN_`.
pub fn check_prefix(prefix: Option<&str>) -> Result<Option<String>, Error> {
    let Some(prefix) = prefix.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    check_name("--prefix", prefix)?;
    if prefix.starts_with(RESERVED_PREFIX) {
        return Err(Error::ReservedPrefix {
            prefix: prefix.to_owned(),
        });
    }
    Ok(Some(prefix.to_owned()))
}

/// The deny list of inherited names under `--allow-env`: every credential variable the
/// user did not let through by name. An allowed name that is not valid is an error.
pub fn hidden_names(allowed: &[String]) -> Result<Vec<String>, Error> {
    for name in allowed {
        check_name("--allow-env", name)?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(Error::ReservedAllowed { name: name.clone() });
        }
    }
    Ok(CREDENTIAL_VARIABLES
        .iter()
        .filter(|name| !allowed.iter().any(|a| a == *name))
        .map(|name| name.to_string())
        .collect())
}

/// What a composition did, for value-free logging and `check`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub inherited: usize,
    /// Names injected from secrets (bulk and mapped), sorted.
    pub injected: Vec<String>,
    pub literals: usize,
    /// `--env` references skipped under `--allow-missing`.
    pub missing: Vec<String>,
    /// Final names of secrets not injected because `--preserve-env` kept the inherited
    /// variable of that name, sorted.
    pub preserved: Vec<String>,
    /// Every variable the child gets from a secret or a `--env` mapping, and every
    /// reference skipped under `--allow-missing`, sorted by name, without values: what
    /// `--check` lists, so it shows exactly what a run composes.
    pub variables: Vec<Injected>,
}

/// One variable of [`Summary::variables`]: its name and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub name: String,
    pub from: InjectedFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectedFrom {
    /// The secret of this name (the variable's own name, or `@SECRET` of a mapping).
    Secret(String),
    /// A `--env KEY=value` literal.
    Literal,
    /// A `--env KEY=@SECRET` whose secret no source has, skipped under `--allow-missing`
    /// (for `@{SECRET}` references, the first one missing).
    Missing(String),
    /// A `--env KEY='… @{SECRET} …'`: the secrets it references, in order.
    Composed(Vec<String>),
}

enum Value<'a> {
    Inherited(OsString),
    Secret {
        value: &'a SecretString,
        origin: String,
        /// The secret's name (differs from the variable's for `--env KEY=@SECRET`).
        secret: &'a str,
    },
    Literal(&'a str),
    /// `--env KEY='text @{SECRET} text'`: the pieces in order, borrowed from the mapping's
    /// text and the secrets' values; joined only inside the `EnvBlock`.
    Composed {
        pieces: Vec<&'a [u8]>,
        /// The secrets referenced, in order of first appearance.
        references: Vec<&'a str>,
    },
}

impl Value<'_> {
    /// The value's bytes, in as many pieces as it has (one but for a composed value).
    fn pieces(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let one = match self {
            Value::Inherited(v) => Some(v.as_bytes()),
            Value::Secret { value, .. } => Some(value.expose_secret().as_bytes()),
            Value::Literal(v) => Some(v.as_bytes()),
            Value::Composed { .. } => None,
        };
        let many: &[&[u8]] = match self {
            Value::Composed { pieces, .. } => pieces,
            _ => &[],
        };
        one.into_iter().chain(many.iter().copied())
    }

    fn len(&self) -> usize {
        self.pieces().map(<[u8]>::len).sum()
    }

    fn is_blank(&self) -> bool {
        self.pieces().all(crate::launcher::require::is_blank)
    }

    fn origin(&self) -> String {
        match self {
            Value::Inherited(_) => "inherited".to_owned(),
            Value::Secret { origin, .. } => origin.clone(),
            Value::Literal(_) => "--env".to_owned(),
            Value::Composed { references, .. } => composed_origin(references),
        }
    }
}

/// How `--check` and errors name a composed variable's source: `--env (A, B)`.
pub fn composed_origin(references: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = references.iter().map(AsRef::as_ref).collect();
    format!("--env ({})", names.join(", "))
}

fn secret_origin(origin: &Origin) -> String {
    origin.to_string()
}

/// Builds the child's environment from the inherited variables and one fetch's secrets.
pub fn compose(
    policy: &Policy,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    secrets: &SecretSet,
) -> Result<(EnvBlock, Summary), Error> {
    let composed = compose_block(policy, inherited, secrets);
    // The values went through registers and the frames below this one: wipe those
    // (see `sys::wipe_stack`; the supervisor wipes again after the fetch as well).
    sys::wipe_stack();
    composed
}

/// `compose`'s work, in frames of its own (never inlined) that `compose` wipes afterwards.
#[inline(never)]
fn compose_block(
    policy: &Policy,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    secrets: &SecretSet,
) -> Result<(EnvBlock, Summary), Error> {
    let mut summary = Summary::default();
    let mut vars: BTreeMap<Vec<u8>, Value<'_>> = BTreeMap::new();

    for (name, value) in inherited {
        let text = name.to_string_lossy();
        if text.starts_with(RESERVED_PREFIX) || policy.hidden.iter().any(|h| *h == text) {
            continue;
        }
        if policy.pristine && !policy.keep.iter().any(|p| p.matches(&text)) {
            continue;
        }
        vars.insert(name.as_bytes().to_vec(), Value::Inherited(value));
    }
    summary.inherited = vars.len();

    // Secrets `--preserve-env` left out for an inherited variable: (final name, blank), so
    // `--require` still counts what the sources gave.
    let mut shadowed: Vec<(String, bool)> = Vec::new();
    // Each final name and the key it came from, to refuse two keys that map to one name.
    let mut sources: BTreeMap<String, &str> = BTreeMap::new();
    for (name, secret) in secrets.iter() {
        if !policy.only.is_empty() && !policy.only.iter().any(|p| p.matches(name)) {
            continue;
        }
        let env_name = ident::env_name(name);
        // A key that needs the rule and that an `--env NAME=@key` names goes in under NAME
        // only: the explicit mapping is the way out of a collision.
        if env_name != name
            && policy
                .mappings
                .iter()
                .any(|m| matches!(&m.value, MappingValue::Secret(s) if s == name))
        {
            continue;
        }
        let final_name = match &policy.prefix {
            Some(prefix) => format!("{prefix}{env_name}"),
            None => env_name.into_owned(),
        };
        if let Some(first) = sources.get(&final_name) {
            let (first, second) = (first.to_string(), name.to_owned());
            // Suggest the explicit mapping for a key the rule renamed (a name the rule kept
            // would still be injected under its own name).
            let renamed = if ident::env_name(&second) != second {
                second.clone()
            } else {
                first.clone()
            };
            return Err(Error::NameCollision {
                name: final_name,
                first,
                second,
                renamed,
            });
        }
        sources.insert(final_name.clone(), name);
        if final_name.starts_with(RESERVED_PREFIX) {
            tracing::warn!(name = %final_name, origin = %secret.origin, "secret name is reserved for agent-run; not injected");
            continue;
        }
        check_name(&format!("secret from {}", secret.origin), &final_name)?;
        // `vars` holds only inherited variables so far.
        if policy.preserve.keeps(&final_name) && vars.contains_key(final_name.as_bytes()) {
            let blank = crate::launcher::require::is_blank(secret.value.expose_secret().as_bytes());
            shadowed.push((final_name.clone(), blank));
            summary.preserved.push(final_name);
            continue;
        }
        vars.insert(
            final_name.into_bytes(),
            Value::Secret {
                value: &secret.value,
                origin: secret_origin(&secret.origin),
                secret: name,
            },
        );
    }

    // `--allow-missing` skips: (variable, the secret it referenced that no source has).
    let mut missing_refs: Vec<(String, String)> = Vec::new();
    for mapping in &policy.mappings {
        let value = match &mapping.value {
            MappingValue::Literal(text) => {
                summary.literals += 1;
                Value::Literal(text)
            }
            MappingValue::Secret(secret_name) => match secrets.get(secret_name) {
                Some(secret) => Value::Secret {
                    value: &secret.value,
                    origin: format!("--env {}=@{secret_name}", mapping.key),
                    secret: secret_name,
                },
                None if policy.allow_missing => {
                    tracing::warn!(key = %mapping.key, secret = %secret_name, "referenced secret is missing; skipped");
                    summary.missing.push(mapping.key.clone());
                    missing_refs.push((mapping.key.clone(), secret_name.clone()));
                    vars.remove(mapping.key.as_bytes());
                    continue;
                }
                None => {
                    return Err(match secrets.skipped(secret_name) {
                        Some(reason) => Error::SkippedSecret {
                            key: mapping.key.clone(),
                            secret: secret_name.clone(),
                            reason: reason.to_owned(),
                        },
                        None => Error::MissingSecret {
                            key: mapping.key.clone(),
                            secret: secret_name.clone(),
                        },
                    })
                }
            },
            MappingValue::Template(template) => {
                match compose_template(&mapping.key, template, secrets)? {
                    Some(value) => value,
                    // A half-built value (`Bearer `) would fail later and less clearly
                    // than no variable: skipped whole, as `KEY=@MISSING` is.
                    None if policy.allow_missing => {
                        let secret = template
                            .references()
                            .into_iter()
                            .find(|name| secrets.get(name).is_none())
                            .unwrap_or_default();
                        tracing::warn!(key = %mapping.key, secret = %secret, "referenced secret is missing; skipped");
                        summary.missing.push(mapping.key.clone());
                        missing_refs.push((mapping.key.clone(), secret.to_owned()));
                        vars.remove(mapping.key.as_bytes());
                        continue;
                    }
                    None => {
                        let secret = template
                            .references()
                            .into_iter()
                            .find(|name| secrets.get(name).is_none())
                            .unwrap_or_default();
                        return Err(match secrets.skipped(secret) {
                            Some(reason) => Error::SkippedReference {
                                key: mapping.key.clone(),
                                secret: secret.to_owned(),
                                reason: reason.to_owned(),
                            },
                            None => Error::MissingReference {
                                key: mapping.key.clone(),
                                secret: secret.to_owned(),
                            },
                        });
                    }
                }
            }
        };
        vars.insert(mapping.key.as_bytes().to_vec(), value);
    }
    summary.injected = vars
        .iter()
        .filter(|(_, value)| matches!(value, Value::Secret { .. } | Value::Composed { .. }))
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect();
    summary.variables = injected_variables(&vars, &missing_refs);

    for (name, value) in &vars {
        let name_text = String::from_utf8_lossy(name).into_owned();
        if !matches!(value, Value::Inherited(_))
            && crate::protocol::names::is_dangerous(&name_text)
            && !policy.allowed.contains(&name_text)
        {
            return Err(Error::DangerousName {
                name: name_text,
                origin: value.origin(),
            });
        }
        if value.pieces().any(|piece| piece.contains(&0)) {
            return Err(Error::NulInValue {
                name: name_text,
                origin: value.origin(),
            });
        }
        let len = name.len() + 1 + value.len() + 1;
        if len > MAX_ENTRY_LEN {
            return Err(Error::EntryTooLarge {
                name: name_text,
                origin: value.origin(),
                len,
                limit: MAX_ENTRY_LEN,
            });
        }
    }
    // Names only: whether each value is blank, never the value.
    policy.require.check(
        shadowed
            .iter()
            .map(|(name, blank)| (name.as_str(), *blank))
            .chain(
                vars.iter()
                    .filter(|(_, value)| !matches!(value, Value::Inherited(_)))
                    .map(|(name, value)| {
                        (
                            std::str::from_utf8(name).unwrap_or_default(),
                            value.is_blank(),
                        )
                    }),
            ),
        summary.injected.len() + shadowed.len(),
    )?;
    let block = EnvBlock::build_pieces(
        vars.iter()
            .map(|(name, value)| (name.as_slice(), value.pieces())),
    );
    Ok((block, summary))
}

/// `--env KEY='text @{SECRET} text'`: the value as borrowed pieces (the mapping's text and
/// the referenced values), or `None` when a referenced secret is missing. A referenced
/// value is copied as it is, `@{` and all: never expanded again.
fn compose_template<'a>(
    key: &str,
    template: &'a Template,
    secrets: &'a SecretSet,
) -> Result<Option<Value<'a>>, Error> {
    let mut pieces = Vec::with_capacity(template.pieces.len());
    for piece in &template.pieces {
        match piece {
            Piece::Text(text) => pieces.push(text.as_bytes()),
            Piece::Ref(name) => match secrets.get(name) {
                Some(secret) => pieces.push(secret.value.expose_secret().as_bytes()),
                None => return Ok(None),
            },
        }
    }
    let references = template.references();
    tracing::debug!(key, references = ?references, "composed from references");
    Ok(Some(Value::Composed { pieces, references }))
}

/// `Summary::variables`: the secret, literal and composed entries of `vars`, and the
/// references skipped as missing (variable, secret) that nothing set afterwards, by name.
fn injected_variables(
    vars: &BTreeMap<Vec<u8>, Value<'_>>,
    missing: &[(String, String)],
) -> Vec<Injected> {
    let mut variables: BTreeMap<String, InjectedFrom> = vars
        .iter()
        .filter_map(|(name, value)| {
            let from = match value {
                Value::Inherited(_) => return None,
                Value::Secret { secret, .. } => InjectedFrom::Secret((*secret).to_owned()),
                Value::Literal(_) => InjectedFrom::Literal,
                Value::Composed { references, .. } => {
                    InjectedFrom::Composed(references.iter().map(|r| r.to_string()).collect())
                }
            };
            Some((String::from_utf8_lossy(name).into_owned(), from))
        })
        .collect();
    // The last skip of a name is the one that counts.
    for (key, secret) in missing.iter().rev() {
        if !vars.contains_key(key.as_bytes()) && !variables.contains_key(key) {
            variables.insert(key.clone(), InjectedFrom::Missing(secret.clone()));
        }
    }
    variables
        .into_iter()
        .map(|(name, from)| Injected { name, from })
        .collect()
}

/// The child's environment as the kernel wants it: `NAME=value\0` strings and a
/// NULL-terminated pointer array, in one buffer that is allocated once at its final size,
/// page-locked when allowed, and wiped on drop.
pub struct EnvBlock {
    /// Over-allocated by two pages so the data can start on a page boundary and the pages
    /// we lock hold nothing but our data (munlock is per page, not per allocation).
    buf: Vec<u8>,
    start: usize,
    bytes: usize,
    count: usize,
    /// Pointers into `buf`; valid because `buf` is never pushed to after it is built.
    ptrs: Vec<*const c_char>,
    locked: bool,
}

impl EnvBlock {
    fn build<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> EnvBlock {
        EnvBlock::build_pieces(entries.map(|(name, value)| (name, std::iter::once(value))))
    }

    /// `build` for values in pieces (a composed `--env` value): each value's pieces are
    /// written one after the other into the one buffer, so the joined value exists only
    /// here.
    fn build_pieces<'a, P>(entries: impl Iterator<Item = (&'a [u8], P)> + Clone) -> EnvBlock
    where
        P: Iterator<Item = &'a [u8]> + Clone,
    {
        let len: usize = entries
            .clone()
            .map(|(n, v)| n.len() + v.map(<[u8]>::len).sum::<usize>() + 2)
            .sum();
        let page = sys::page_size();
        let mut buf: Vec<u8> = Vec::with_capacity(len + 2 * page);
        let start = buf.as_ptr().align_offset(page).min(page);
        buf.resize(start, 0);
        let mut offsets = Vec::with_capacity(entries.clone().count());
        for (name, value) in entries {
            offsets.push(buf.len());
            buf.extend_from_slice(name);
            buf.push(b'=');
            for piece in value {
                buf.extend_from_slice(piece);
            }
            buf.push(0);
        }
        debug_assert!(buf.len() <= buf.capacity() && buf.len() == start + len);
        let locked = len > 0 && sys::lock_pages(&buf[start..start + len]);
        let mut ptrs: Vec<*const c_char> = Vec::with_capacity(offsets.len() + 1);
        ptrs.extend(offsets.iter().map(|&o| buf[o..].as_ptr().cast::<c_char>()));
        ptrs.push(std::ptr::null());
        EnvBlock {
            buf,
            start,
            bytes: len,
            count: offsets.len(),
            ptrs,
            locked,
        }
    }

    /// The NULL-terminated `envp` for execve.
    pub fn envp(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the kernel will copy for this environment (strings and pointers), for the
    /// ARG_MAX check before exec.
    pub fn kernel_size(&self) -> usize {
        self.bytes + self.ptrs.len() * std::mem::size_of::<*const c_char>()
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.bytes]
    }

    /// The block as `/proc/PID/environ` shows it (`NAME=value\0`…), values included: only
    /// for writing it where the child reads it on a reload (`supervise::reload`).
    pub fn as_environ(&self) -> &[u8] {
        self.data()
    }

    /// A block of `entries`, for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub fn test_block(entries: &[(&str, &str)]) -> EnvBlock {
        EnvBlock::build(entries.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// `NAME`, `value` of every entry.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.data()
            .split(|&b| b == 0)
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let eq = entry.iter().position(|&b| b == b'=')?;
                Some((&entry[..eq], &entry[eq + 1..]))
            })
    }

    /// `--mount`: (this block without the variables named in `names`, a block of just
    /// those), both locked and wiped on drop like this one.
    pub fn split_off(&self, names: &[String]) -> (EnvBlock, EnvBlock) {
        let named = |n: &[u8]| names.iter().any(|name| name.as_bytes() == n);
        let rest = EnvBlock::build(self.entries().filter(move |(n, _)| !named(n)));
        let taken = EnvBlock::build(self.entries().filter(move |(n, _)| named(n)));
        (rest, taken)
    }

    /// This block with one more variable (set by agent-run for the child, e.g. where it
    /// finds its reload file). `self` is wiped when the caller drops it.
    pub fn with_var(&self, name: &str, value: &str) -> EnvBlock {
        let entries = self
            .data()
            .split(|&b| b == 0)
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let eq = entry.iter().position(|&b| b == b'=')?;
                Some((&entry[..eq], &entry[eq + 1..]))
            })
            .filter(|(n, _)| *n != name.as_bytes())
            .chain(std::iter::once((name.as_bytes(), value.as_bytes())));
        EnvBlock::build(entries)
    }

    /// A variable's value, for non-secret lookups (the command is resolved with
    /// agent-run's own `PATH`, never this block's: see `spawn`).
    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.data().split(|&b| b == 0).find_map(|entry| {
            let rest = entry.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=").map(OsStr::from_bytes)
        })
    }

    /// A keyed digest of the whole environment: equal digests mean an equal environment,
    /// and the digest says nothing about a value to anyone without the per-process key.
    pub fn digest(&self, key: &DigestKey) -> Digest {
        let digest = self.hash(key);
        // BLAKE3's SIMD code spills message blocks (values) into its own frames.
        sys::wipe_stack();
        digest
    }

    /// A keyed digest of each variable, by name: what a change log line compares to name
    /// the keys that changed, without keeping or showing a value.
    pub fn named_digests(&self, key: &DigestKey) -> NamedDigests {
        let digests = self.hash_each(key);
        sys::wipe_stack();
        digests
    }

    #[inline(never)]
    fn hash_each(&self, key: &DigestKey) -> NamedDigests {
        let mut digests = NamedDigests::default();
        for entry in self.data().split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let name_len = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
            let name = String::from_utf8_lossy(&entry[..name_len]).into_owned();
            digests.insert(
                name,
                key.digest(|hasher| {
                    hasher.update(entry);
                }),
            );
        }
        digests
    }

    #[inline(never)]
    fn hash(&self, key: &DigestKey) -> Digest {
        key.digest(|hasher| {
            hasher.update(self.data());
        })
    }
}

impl Drop for EnvBlock {
    fn drop(&mut self) {
        // Wipe the whole allocation, spare capacity included, before the pages are
        // unlocked and the memory goes back to the allocator.
        self.buf.zeroize();
        if self.locked {
            let start = self.buf.as_ptr() as usize + self.start;
            sys::unlock_pages(start, self.bytes);
        }
    }
}

impl fmt::Debug for EnvBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvBlock")
            .field("vars", &self.count)
            .field("bytes", &self.bytes)
            .field("locked", &self.locked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Secret;
    use std::path::PathBuf;

    fn secrets(pairs: &[(&str, &str)]) -> SecretSet {
        let mut set = SecretSet::default();
        for (name, value) in pairs {
            let origin = Origin::SecretsDir {
                path: PathBuf::from(format!("/s/{name}")),
            };
            set.insert(
                name.to_string(),
                Secret {
                    value: SecretString::from(value.to_string()),
                    origin,
                },
            );
        }
        set
    }

    fn inherited(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), OsString::from(v)))
            .collect()
    }

    fn vars(block: &EnvBlock) -> Vec<String> {
        block
            .data()
            .split(|&b| b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect()
    }

    fn policy(mappings: &[&str]) -> Policy {
        Policy {
            mappings: mappings
                .iter()
                .map(|m| Mapping::parse(m).unwrap())
                .collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn mapping_forms() {
        let secret = |k: &str, s: &str| Mapping {
            key: k.into(),
            value: MappingValue::Secret(s.into()),
        };
        let literal = |k: &str, s: &str| Mapping {
            key: k.into(),
            value: MappingValue::Literal(s.into()),
        };
        assert_eq!(Mapping::parse("A=@B").unwrap(), secret("A", "B"));
        assert_eq!(Mapping::parse("A=@").unwrap(), secret("A", "A"));
        assert_eq!(Mapping::parse("A=\\@x").unwrap(), literal("A", "@x"));
        assert_eq!(Mapping::parse("A=\\@").unwrap(), literal("A", "@"));
        assert_eq!(Mapping::parse("A=x=y").unwrap(), literal("A", "x=y"));
        assert_eq!(Mapping::parse("A=").unwrap(), literal("A", ""));
        assert!(matches!(Mapping::parse("A"), Err(Error::BadMapping { .. })));
        assert!(matches!(
            Mapping::parse("1A=x"),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            Mapping::parse("AGENT_RUN_TOKEN=@X"),
            Err(Error::Reserved { .. })
        ));
    }

    #[test]
    fn references_inside_a_value() {
        let template = |k: &str, v: &str| match Mapping::parse(&format!("{k}={v}")).unwrap() {
            Mapping {
                value: MappingValue::Template(t),
                ..
            } => t,
            other => panic!("not a template: {other:?}"),
        };
        assert_eq!(template("A", "Bearer @{K}").references(), ["K"]);
        assert_eq!(template("A", "@{K}").references(), ["K"]);
        // `\@{` escapes; a leading `\@` stays the old literal rule.
        assert_eq!(
            Mapping::parse("A=\\@{K}").unwrap().value,
            MappingValue::Literal("@{K}".into())
        );
        assert_eq!(
            Mapping::parse("A=x\\@{K}y").unwrap().value,
            MappingValue::Literal("x@{K}y".into())
        );
        assert_eq!(template("A", "\\@x @{K}").references(), ["K"]);
        for spec in ["A=Bearer @{K", "A=@{}"] {
            let e = Mapping::parse(spec).unwrap_err();
            assert!(
                matches!(e, Error::BadReference { .. }) && e.to_string().contains(spec),
                "{e}"
            );
        }

        let set = secrets(&[("K", "sk-123"), ("L", "v@{K}x"), ("E", "")]);
        let (block, summary) = compose(
            &policy(&[
                "AUTH=Bearer @{K}",
                "NEST=<@{L}>",
                "TWO=@{K}:@{K}",
                "T=\\@{K}",
            ]),
            inherited(&[("AUTH", "inherited")]),
            &set,
        )
        .unwrap();
        assert_eq!(
            vars(&block),
            [
                "AUTH=Bearer sk-123",
                "E=",
                "K=sk-123",
                "L=v@{K}x",
                "NEST=<v@{K}x>",
                "T=@{K}",
                "TWO=sk-123:sk-123"
            ]
        );
        assert!(summary.injected.contains(&"AUTH".to_string()));
        let auth = summary.variables.iter().find(|v| v.name == "AUTH").unwrap();
        assert_eq!(auth.from, InjectedFrom::Composed(vec!["K".into()]));

        // A missing reference names the variable and the key; --allow-missing skips the
        // whole variable (an inherited one of that name too).
        let e = compose(&policy(&["AUTH=Bearer @{K} @{NOPE}"]), Vec::new(), &set).unwrap_err();
        assert!(
            matches!(e, Error::MissingReference { ref key, ref secret } if key == "AUTH" && secret == "NOPE"),
            "{e}"
        );
        assert!(!e.to_string().contains("sk-123"), "{e}");
        let mut p = policy(&["AUTH=Bearer @{NOPE}"]);
        p.allow_missing = true;
        let (block, summary) = compose(&p, inherited(&[("AUTH", "x")]), &set).unwrap();
        assert!(block.var("AUTH").is_none());
        assert_eq!(summary.missing, ["AUTH"]);
        let auth = summary.variables.iter().find(|v| v.name == "AUTH").unwrap();
        assert_eq!(auth.from, InjectedFrom::Missing("NOPE".into()));

        // The checks see the composed value: blank, NUL, size, dangerous names.
        let mut p = policy(&["BLANK= @{E} "]);
        p.require = crate::launcher::require::Requirements::new(&["BLANK".into()], false).unwrap();
        assert!(matches!(
            compose(&p, Vec::new(), &set),
            Err(Error::Required(_))
        ));
        let nul = secrets(&[("N", "a\0b")]);
        let e = compose(&policy(&["X=x@{N}"]), Vec::new(), &nul).unwrap_err();
        assert!(matches!(e, Error::NulInValue { .. }), "{e}");
        let big = secrets(&[("B", &"x".repeat(MAX_ENTRY_LEN / 2))]);
        let e = compose(&policy(&["X=@{B}@{B}"]), Vec::new(), &big).unwrap_err();
        assert!(matches!(e, Error::EntryTooLarge { .. }), "{e}");
        let e = compose(&policy(&["LD_PRELOAD=/x/@{K}"]), Vec::new(), &set).unwrap_err();
        assert!(e.to_string().contains("--env (K)"), "{e}");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("A") && is_valid_name("_a1") && is_valid_name("OPENAI_API_KEY"));
        assert!(
            !is_valid_name("")
                && !is_valid_name("1A")
                && !is_valid_name("A-B")
                && !is_valid_name("a.b")
        );
    }

    #[test]
    fn precedence_inherited_then_secrets_then_mappings() {
        let inh = inherited(&[("HOME", "/root"), ("A", "inherited"), ("B", "inherited")]);
        let set = secrets(&[("A", "secret-a"), ("B", "secret-b"), ("S", "secret-s")]);
        let (block, summary) = compose(&policy(&["B=literal", "C=@S"]), inh, &set).unwrap();
        assert_eq!(
            vars(&block),
            [
                "A=secret-a",
                "B=literal",
                "C=secret-s",
                "HOME=/root",
                "S=secret-s"
            ]
        );
        assert_eq!(summary.injected, ["A", "C", "S"]);
        assert_eq!(summary.literals, 1);
        assert_eq!(block.var("HOME").unwrap(), "/root");
    }

    #[test]
    fn keys_that_are_not_environment_names_are_mapped_by_one_rule() {
        let set = secrets(&[("api-key", "k"), ("db.url", "u"), ("lower_ok", "l")]);
        let (block, summary) = compose(&policy(&[]), inherited(&[]), &set).unwrap();
        assert_eq!(vars(&block), ["API_KEY=k", "DB_URL=u", "lower_ok=l"]);
        assert_eq!(
            summary.variables[0],
            Injected {
                name: "API_KEY".into(),
                from: InjectedFrom::Secret("api-key".into()),
            }
        );
        // The rule applies after `--prefix` is chosen, to the key part.
        let mut p = policy(&[]);
        p.prefix = Some("APP_".into());
        let (block, _) = compose(&p, inherited(&[]), &secrets(&[("api-key", "k")])).unwrap();
        assert_eq!(vars(&block), ["APP_API_KEY=k"]);
    }

    #[test]
    fn an_explicit_mapping_replaces_the_rule_for_its_key() {
        let set = secrets(&[("api-key", "k")]);
        let (block, _) = compose(&policy(&["OPENAI=@api-key"]), inherited(&[]), &set).unwrap();
        assert_eq!(vars(&block), ["OPENAI=k"]);
    }

    #[test]
    fn two_keys_that_map_to_one_name_are_refused_naming_both() {
        for pair in [
            ["API_KEY", "api-key"],
            ["api-key", "api.key"],
            ["A-B", "A_B"],
        ] {
            let set = secrets(&[(pair[0], "secret-one"), (pair[1], "secret-two")]);
            let err = compose(&policy(&[]), inherited(&[]), &set).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::NameCollision { .. }), "{text}");
            assert!(text.contains(pair[0]) && text.contains(pair[1]), "{text}");
            assert!(!text.contains("secret-"), "{text}");
        }
        // Named explicitly, the renamed one no longer collides.
        let set = secrets(&[("API_KEY", "one"), ("api-key", "two")]);
        let (block, _) = compose(&policy(&["OTHER=@api-key"]), inherited(&[]), &set).unwrap();
        assert_eq!(vars(&block), ["API_KEY=one", "OTHER=two"]);
    }

    #[test]
    fn a_mapped_name_is_checked_against_the_dangerous_names() {
        let set = secrets(&[("ld.preload", "/tmp/x.so")]);
        let err = compose(&policy(&[]), inherited(&[]), &set).unwrap_err();
        assert!(
            matches!(&err, Error::DangerousName { name, .. } if name == "LD_PRELOAD"),
            "{err}"
        );
        let set = secrets(&[("bad key", "v")]);
        assert!(matches!(
            compose(&policy(&[]), inherited(&[]), &set),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn summary_lists_each_injected_variable_and_its_origin_without_values() {
        let inh = inherited(&[("HOME", "/root"), ("B", "inherited")]);
        let set = secrets(&[("A", "secret-a"), ("S", "secret-s")]);
        let mut p = policy(&["B=literal", "C=@S", "M=@NOPE"]);
        p.allow_missing = true;
        let (_, summary) = compose(&p, inh, &set).unwrap();
        let from = |name: &str, from: InjectedFrom| Injected {
            name: name.into(),
            from,
        };
        assert_eq!(
            summary.variables,
            [
                from("A", InjectedFrom::Secret("A".into())),
                from("B", InjectedFrom::Literal),
                from("C", InjectedFrom::Secret("S".into())),
                from("M", InjectedFrom::Missing("NOPE".into())),
                from("S", InjectedFrom::Secret("S".into())),
            ]
        );
        assert!(!format!("{summary:?}").contains("secret-"));
    }

    #[test]
    fn reserved_and_hidden_inherited_names_never_pass() {
        let inh = inherited(&[
            ("AGENT_RUN_TOKEN", "t"),
            ("AGENT_RUN_ENV_FILE", "x"),
            ("KEEP", "1"),
            ("VAULT_TOKEN", "v"),
        ]);
        let p = Policy {
            hidden: vec!["VAULT_TOKEN".into()],
            ..Policy::default()
        };
        let (block, _) = compose(&p, inh, &secrets(&[("AGENT_RUN_X", "s")])).unwrap();
        assert_eq!(vars(&block), ["KEEP=1"]);
    }

    #[test]
    fn every_credential_variable_is_hidden_unless_allowed_by_name() {
        let all = hidden_names(&[]).unwrap();
        assert_eq!(all.len(), CREDENTIAL_VARIABLES.len());
        for name in [
            "AGENT_VAULT_TOKEN",
            "AGENT_RUN_TOKEN",
            "BAO_TOKEN",
            "VAULT_SECRET_ID",
        ] {
            assert!(all.iter().any(|h| h == name), "{name} is not hidden");
        }
        // The SDKs' token is the child's own.
        assert!(!all.iter().any(|h| h == "AGENT_VAULT_AGENT_TOKEN"));
        let some = hidden_names(&["BAO_TOKEN".into(), "UNLISTED".into()]).unwrap();
        assert_eq!(some.len(), CREDENTIAL_VARIABLES.len() - 1);
        assert!(!some.iter().any(|h| h == "BAO_TOKEN"));
        // agent-run's own variables never pass; a malformed name is named in the error.
        let e = hidden_names(&["AGENT_RUN_TOKEN".into()]).unwrap_err();
        assert!(e.to_string().contains("--allow-env AGENT_RUN_TOKEN"), "{e}");
        let e = hidden_names(&["BAO-TOKEN".into()]).unwrap_err();
        assert!(e.to_string().contains("BAO-TOKEN"), "{e}");
        // Inherited, the hidden names are dropped even with --pristine --keep '*'.
        let p = Policy {
            pristine: true,
            keep: compile_globs(&["*".into()]).unwrap(),
            hidden: some,
            ..Policy::default()
        };
        let inh = inherited(&[
            ("AGENT_VAULT_TOKEN", "avt_x"),
            ("BAO_TOKEN", "b"),
            ("VAULT_TOKEN", "v"),
            ("AGENT_VAULT_AGENT_TOKEN", "a"),
        ]);
        let (block, _) = compose(&p, inh, &secrets(&[])).unwrap();
        assert_eq!(vars(&block), ["AGENT_VAULT_AGENT_TOKEN=a", "BAO_TOKEN=b"]);
    }

    #[test]
    fn preserve_env_and_prefix() {
        let set = secrets(&[("A", "sa"), ("B", "sb")]);
        let inh = || inherited(&[("A", "ia"), ("B", "ib"), ("P_A", "ipa")]);
        let compose_with = |preserve: Preserve, prefix: Option<&str>, maps: &[&str]| {
            let p = Policy {
                preserve,
                prefix: prefix.map(str::to_owned),
                ..policy(maps)
            };
            let (block, summary) = compose(&p, inh(), &set).unwrap();
            (vars(&block), summary)
        };
        let (v, s) = compose_with(Preserve::None, None, &[]);
        assert_eq!(v, ["A=sa", "B=sb", "P_A=ipa"]);
        assert!(s.preserved.is_empty());
        let (v, s) = compose_with(Preserve::All, None, &[]);
        assert_eq!(v, ["A=ia", "B=ib", "P_A=ipa"]);
        assert_eq!(s.preserved, ["A", "B"]);
        let (v, _) = compose_with(Preserve::Names(vec!["B".into()]), None, &["A=@B"]);
        assert_eq!(v, ["A=sb", "B=ib", "P_A=ipa"], "--env still wins");
        // The prefix renames the sources' keys; @ references use the source's names;
        // --preserve-env compares final names.
        let (v, s) = compose_with(Preserve::All, Some("P_"), &["X=@B"]);
        assert_eq!(v, ["A=ia", "B=ib", "P_A=ipa", "P_B=sb", "X=sb"]);
        assert_eq!(s.preserved, ["P_A"]);
        // The deny list judges the final name.
        let p = Policy {
            prefix: Some("LD_".into()),
            ..Policy::default()
        };
        let e = compose(&p, inh(), &secrets(&[("PRELOAD", "x")])).unwrap_err();
        assert!(
            matches!(e, Error::DangerousName { ref name, .. } if name == "LD_PRELOAD"),
            "{e}"
        );

        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Preserve::parse(None).unwrap(), Preserve::None);
        assert_eq!(
            Preserve::parse(Some(&list(&["true"]))).unwrap(),
            Preserve::All
        );
        assert_eq!(Preserve::parse(Some(&list(&[]))).unwrap(), Preserve::All);
        assert_eq!(
            Preserve::parse(Some(&list(&["0"]))).unwrap(),
            Preserve::None
        );
        assert_eq!(
            Preserve::parse(Some(&list(&["A", "B"]))).unwrap(),
            Preserve::Names(list(&["A", "B"]))
        );
        assert!(Preserve::parse(Some(&list(&["A", "1B"]))).is_err());
        assert_eq!(check_prefix(Some("APP_")).unwrap().as_deref(), Some("APP_"));
        assert!(check_prefix(Some("1X")).is_err());
        assert!(matches!(
            check_prefix(Some("AGENT_RUN_X")),
            Err(Error::ReservedPrefix { .. })
        ));
    }

    #[test]
    fn pristine_keeps_only_globbed_names() {
        let p = Policy {
            pristine: true,
            keep: compile_globs(&["PA*".into(), "LANG".into()]).unwrap(),
            ..Policy::default()
        };
        let inh = inherited(&[
            ("PATH", "/bin"),
            ("PAGER", "less"),
            ("HOME", "/root"),
            ("LANG", "C"),
        ]);
        let (block, summary) = compose(&p, inh, &secrets(&[("X", "1")])).unwrap();
        assert_eq!(vars(&block), ["LANG=C", "PAGER=less", "PATH=/bin", "X=1"]);
        assert_eq!(summary.inherited, 3);
    }

    #[test]
    fn only_narrows_bulk_but_not_references() {
        let mut p = policy(&["OTHER=@DB_URL"]);
        p.only = compile_globs(&["STRIPE_*".into()]).unwrap();
        let set = secrets(&[("STRIPE_KEY", "sk"), ("DB_URL", "pg"), ("OPENAI", "oa")]);
        let (block, _) = compose(&p, Vec::new(), &set).unwrap();
        assert_eq!(vars(&block), ["OTHER=pg", "STRIPE_KEY=sk"]);
    }

    #[test]
    fn missing_reference_is_an_error_unless_allowed() {
        let err = compose(&policy(&["K=@NOPE"]), Vec::new(), &SecretSet::default()).unwrap_err();
        assert!(err.to_string().contains("NOPE"), "{err}");
        let mut p = policy(&["K=@NOPE"]);
        p.allow_missing = true;
        let (block, summary) =
            compose(&p, inherited(&[("K", "inherited")]), &SecretSet::default()).unwrap();
        assert!(block.is_empty());
        assert_eq!(summary.missing, ["K"]);
    }

    #[test]
    fn bad_secret_names_and_nul_values_are_refused_without_the_value() {
        let err = compose(
            &Policy::default(),
            Vec::new(),
            &secrets(&[("9tls.crt", "s3cr3t")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("9TLS_CRT") && err.contains("/s/9tls.crt") && !err.contains("s3cr3t"),
            "{err}"
        );
        let err = compose(
            &Policy::default(),
            Vec::new(),
            &secrets(&[("K", "a\0s3cr3t")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("K") && err.contains("NUL") && !err.contains("s3cr3t"),
            "{err}"
        );
        let big = "x".repeat(MAX_ENTRY_LEN);
        let err = compose(&Policy::default(), Vec::new(), &secrets(&[("BIG", &big)])).unwrap_err();
        assert!(matches!(err, Error::EntryTooLarge { .. }), "{err}");
    }

    #[test]
    fn digest_tracks_content() {
        let key = DigestKey::random();
        let a = compose(&Policy::default(), Vec::new(), &secrets(&[("A", "1")]))
            .unwrap()
            .0;
        let b = compose(&Policy::default(), Vec::new(), &secrets(&[("A", "1")]))
            .unwrap()
            .0;
        let c = compose(&Policy::default(), Vec::new(), &secrets(&[("A", "2")]))
            .unwrap()
            .0;
        assert_eq!(a.digest(&key), b.digest(&key));
        assert_ne!(a.digest(&key), c.digest(&key));
        assert_ne!(a.digest(&key), a.digest(&DigestKey::random()));
    }

    #[test]
    fn envp_points_at_nul_terminated_entries() {
        let (block, _) = compose(
            &Policy::default(),
            inherited(&[("A", "1"), ("B", "22")]),
            &SecretSet::default(),
        )
        .unwrap();
        let envp = block.envp();
        // SAFETY-free check through the public pointer array: read it as C strings.
        let strings: Vec<String> = (0..block.len())
            .map(|i| {
                let ptr = block.ptrs[i];
                let offset = ptr as usize - block.buf.as_ptr() as usize;
                let end = block.buf[offset..].iter().position(|&b| b == 0).unwrap();
                String::from_utf8(block.buf[offset..offset + end].to_vec()).unwrap()
            })
            .collect();
        assert_eq!(strings, ["A=1", "B=22"]);
        assert!(block.ptrs[block.len()].is_null());
        assert_eq!(envp, block.ptrs.as_ptr());
    }
}
