//! Turns the parsed flags into a validated [`Config`]: durations, signals, mappings and
//! globs are checked here, before anything is read or started, and every error names the
//! flag and the offending item. Reads no files and never touches the network.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::launcher::env::{self, Mapping, Policy, Preserve};
use crate::launcher::flags::{AuthArg, LogFormat, MountFormatArg, RestartArg, RunArgs};
use crate::launcher::require::Requirements;
use crate::launcher::signals;
use crate::launcher::supervise::{
    ExitRemap, Jitter, MountFormat, MountSettings, OnChange, RestartBudget, RestartPolicy,
    Settings, SignalRewrite,
};
use crate::source::openbao::{self, JwtKind};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--{flag} {value:?}: not a duration (write e.g. 500ms, 2s, 1m)")]
    BadDuration { flag: &'static str, value: String },
    #[error("--{flag}: {reason}")]
    BadSignal { flag: &'static str, reason: String },
    #[error("--{flag} {reason}")]
    BadMapping { flag: &'static str, reason: String },
    #[error("--max-restarts counts the restarts of --restart on-failure or always; with --restart no there are none")]
    BudgetWithoutRestart,
    #[error(
        "--restart-jitter {value:?}: expected MAX or MIN-MAX with MIN <= MAX (e.g. 30s, 5s-30s)"
    )]
    BadJitter { value: String },
    #[error("--mount takes the secrets out of the environment a reload would write: use --on-change restart with --mount")]
    MountWithReload,
    #[error("--mount-max-reads {0}: {1}")]
    BadMaxReads(u32, &'static str),
    #[error("--mount-max-reads needs --mount=PATH (the named pipe's path, e.g. --mount=/dev/shm/app.env): {0}")]
    MaxReadsWithoutPath(&'static str),
    #[error("--reload-file needs --on-change reload:SIG")]
    ReloadFileWithoutReload,
    #[error("--on-change {value:?}: expected restart, signal:SIG, reload:SIG, exit or none")]
    BadOnChange { value: String },
    #[error("--log-level {value:?}: expected off, error, warn, info, debug or trace")]
    BadLogLevel { value: String },
    #[error("--store {value:?}: {reason}")]
    BadStore { value: String, reason: String },
    #[error("--proxy {value:?}: {reason}")]
    BadProxy { value: String, reason: String },
    #[error("--{flag} {path}: {reason}")]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--{flag} needs a store (--store https://HOST:PORT, or openbao+https://…)")]
    NeedsStore { flag: &'static str },
    #[error("--{flag}: {reason}")]
    OpenBao { flag: &'static str, reason: String },
    #[error(transparent)]
    Env(#[from] env::Error),
}

/// Where the agent-vault store is and how to reach it. The token itself is read by
/// `launcher`, which scrubs it from agent-run's own environment.
#[derive(Debug)]
pub struct StoreConfig {
    /// Base URL without a trailing slash.
    pub url: String,
    pub agent: Option<String>,
    pub token_file: Option<PathBuf>,
    pub fallback: Option<PathBuf>,
    pub ca_pem: Option<Vec<u8>>,
    /// `--proxy`, for a non-loopback store only.
    pub proxy: Option<Url>,
}

/// Everything agent-run needs to know, validated.
#[derive(Debug)]
pub struct Config {
    pub env_files: Vec<PathBuf>,
    pub secrets_dirs: Vec<PathBuf>,
    /// `--allow-external-links`, `--strict-permissions`.
    pub file_options: crate::source::file::FileOptions,
    /// `--store https://…`: the agent-vault store.
    pub store: Option<StoreConfig>,
    /// `--store openbao+…` with its paths and login.
    pub openbao: Option<openbao::Settings>,
    pub policy: Policy,
    pub command: Vec<OsString>,
    pub once: bool,
    /// `--check`: print what would be injected, start nothing; `Some(true)` for JSON.
    pub check: Option<bool>,
    pub pdeathsig: bool,
    pub supervise: Settings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub level: tracing::level_filters::LevelFilter,
    pub format: LogFormat,
}

impl Config {
    pub fn from_args(args: RunArgs) -> Result<Config, Error> {
        let parsed_store = parse_stores(&args.stores, args.allow_insecure_http)?;
        let proxy = proxy_url(args.proxy.as_deref(), parsed_store.as_ref())?;
        if parsed_store.is_none() && (args.ca_cert.is_some() || args.store_ca.is_some()) {
            return Err(Error::NeedsStore { flag: "ca-cert" });
        }
        let openbao = openbao_settings(&args, parsed_store.as_ref(), proxy.clone())?;
        let store = match parsed_store {
            Some(Store::AgentVault { url }) => Some(store_config(&args, url, proxy)?),
            _ => {
                refuse_agent_vault_flags(&args)?;
                None
            }
        };
        let hidden = env::hidden_names(&args.allow_env)?;
        let policy = Policy {
            pristine: args.pristine,
            keep: env::compile_globs(&args.keep)?,
            only: env::compile_globs(&args.only)?,
            mappings: args
                .env
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| Mapping::parse(s))
                .collect::<Result<_, _>>()?,
            allow_missing: args.allow_missing,
            hidden,
            allowed: args.allow_env.clone(),
            require: Requirements::new(&args.require, args.require_nonempty)
                .map_err(env::Error::from)?,
            preserve: Preserve::parse(args.preserve_env.as_deref())?,
            prefix: env::check_prefix(args.prefix.as_deref())?,
        };
        let supervise = Settings {
            signal_group: args.signal_group,
            grace: duration("grace", &args.grace)?,
            stop_signal: signals::parse(&args.stop_signal).map_err(|reason| Error::BadSignal {
                flag: "stop-signal",
                reason,
            })?,
            on_change: on_change(&args.on_change)?,
            debounce: args
                .debounce
                .as_deref()
                .map(|d| duration("debounce", d))
                .transpose()?,
            start_timeout: duration("start-timeout", &args.start_timeout)?,
            exit_on_auth_failure: args.exit_on_auth_failure,
            restart: match args.restart {
                RestartArg::No => RestartPolicy::No,
                RestartArg::OnFailure => RestartPolicy::OnFailure,
                RestartArg::Always => RestartPolicy::Always,
            },
            remap_exit: ExitRemap::parse(&args.remap_exit).map_err(|reason| Error::BadMapping {
                flag: "remap-exit",
                reason,
            })?,
            reload_file: args.reload_file.clone(),
            mount: args.mount.as_ref().map(|path| MountSettings {
                path: (path.as_os_str() != "memfd").then(|| path.clone()),
                format: match args.mount_format {
                    MountFormatArg::Dotenv => MountFormat::Dotenv,
                    MountFormatArg::Json => MountFormat::Json,
                },
                allow_disk: args.mount_allow_disk,
                max_reads: args.mount_max_reads,
            }),
            restart_budget: restart_budget(&args)?,
            restart_jitter: args.restart_jitter.as_deref().map(jitter).transpose()?,
            rewrite_signal: SignalRewrite::parse(&args.rewrite_signal).map_err(|reason| {
                Error::BadMapping {
                    flag: "rewrite-signal",
                    reason,
                }
            })?,
            mask: args.mask,
        };
        if supervise.mount.is_some() && matches!(supervise.on_change, OnChange::Reload(_)) {
            return Err(Error::MountWithReload);
        }
        if let Some(reads) = args.mount_max_reads {
            match &supervise.mount {
                None => return Err(Error::MaxReadsWithoutPath("there is no --mount")),
                Some(mount) if mount.path.is_none() => {
                    return Err(Error::MaxReadsWithoutPath(
                        "the memfd of --mount alone is read as often as the child likes",
                    ))
                }
                Some(_) if reads == 0 => {
                    return Err(Error::BadMaxReads(
                        reads,
                        "give at least 1 (how many times the child may read the set per start)",
                    ))
                }
                Some(_) => {}
            }
        }
        if supervise.reload_file.is_some() && !matches!(supervise.on_change, OnChange::Reload(_)) {
            return Err(Error::ReloadFileWithoutReload);
        }
        let log = LogSettings {
            level: log_level(args.verbose, args.quiet, args.log_level.as_deref())?,
            format: args.log_format,
        };
        Ok(Config {
            env_files: args.env_files,
            secrets_dirs: args.secrets_dirs,
            file_options: crate::source::file::FileOptions {
                allow_external_links: args.allow_external_links,
                strict_permissions: args.strict_permissions,
            },
            store,
            openbao,
            check: args.check.then_some(args.json),
            policy,
            command: match args.shell_command {
                // `--command "a | b"`: doppler's form, run by the shell; clap refused it
                // next to a command after `--`.
                Some(line) => vec!["/bin/sh".into(), "-c".into(), line.into()],
                None => args.command,
            },
            once: args.once,
            pdeathsig: !args.no_pdeathsig,
            supervise,
            log,
        })
    }
}

/// The agent-vault store's settings from its URL and the agent-vault flags.
fn store_config(args: &RunArgs, url: Url, proxy: Option<Url>) -> Result<StoreConfig, Error> {
    let bad = |reason: &str| Error::BadStore {
        value: url.to_string(),
        reason: reason.to_owned(),
    };
    if let Some(agent) = &args.agent {
        if !crate::protocol::ident::valid_agent(agent) {
            return Err(bad(&format!(
                "--agent {agent:?} is not a valid agent name: {}",
                crate::protocol::ident::AGENT_RULE
            )));
        }
    }
    let ca_pem = ca_pem(args, false, env_var)?;
    Ok(StoreConfig {
        url: url.as_str().trim_end_matches('/').to_owned(),
        agent: args.agent.clone(),
        token_file: args.token_file.clone(),
        fallback: args.fallback.clone(),
        ca_pem,
        proxy,
    })
}

/// The variables that name a CA file when `--ca-cert` is not given, in order: what
/// OpenBao/Vault users (or agent-vault's admin CLI users) already set, then the general one.
const OPENBAO_CA_VARIABLES: [&str; 3] = ["BAO_CACERT", "VAULT_CACERT", "SSL_CERT_FILE"];
/// `AGENT_VAULT_CA_CERT` is the admin CLI's name (issue 13); `AGENT_VAULT_CACERT` its old one.
const AGENT_VAULT_CA_VARIABLES: [&str; 3] =
    ["AGENT_VAULT_CA_CERT", "AGENT_VAULT_CACERT", "SSL_CERT_FILE"];

fn env_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The extra CA bundle (PEM) for the store: `--ca-cert` (or its old name `--store-ca`),
/// else the first of the store kind's variables that is set (see `*_CA_VARIABLES`).
fn ca_pem(
    args: &RunArgs,
    openbao: bool,
    lookup: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Option<Vec<u8>>, Error> {
    let given = match (&args.ca_cert, &args.store_ca) {
        (Some(path), _) => Some(("ca-cert", path.clone())),
        (None, Some(path)) => Some(("store-ca", path.clone())),
        (None, None) => None,
    };
    let variables: &[&'static str] = if openbao {
        &OPENBAO_CA_VARIABLES
    } else {
        &AGENT_VAULT_CA_VARIABLES
    };
    let Some((flag, path)) = given.or_else(|| {
        variables
            .iter()
            .find_map(|&name| lookup(name).map(|path| (name, path)))
    }) else {
        return Ok(None);
    };
    let flag = match flag {
        "ca-cert" | "store-ca" => flag,
        "BAO_CACERT" => "ca-cert (from BAO_CACERT)",
        "VAULT_CACERT" => "ca-cert (from VAULT_CACERT)",
        "AGENT_VAULT_CA_CERT" => "ca-cert (from AGENT_VAULT_CA_CERT)",
        "AGENT_VAULT_CACERT" => "ca-cert (from AGENT_VAULT_CACERT)",
        _ => "ca-cert (from SSL_CERT_FILE)",
    };
    let pem = std::fs::read(&path).map_err(|e| Error::Unreadable {
        flag,
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some(pem))
}

/// Agent-vault-only flags are refused with any other (or no) store.
fn refuse_agent_vault_flags(args: &RunArgs) -> Result<(), Error> {
    for (flag, given) in [
        ("agent", args.agent.is_some()),
        ("fallback", args.fallback.is_some()),
    ] {
        if given {
            return Err(Error::NeedsStore { flag });
        }
    }
    Ok(())
}

/// What `--store` points at. Every `--store` value must name the same kind of store; the
/// OpenBao ones are the nodes of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// `https://` (`http://` on loopback): one agent-vault server.
    AgentVault { url: Url },
    /// `openbao+https://`, `vault+https://` (and `+http` on loopback): the base URLs.
    OpenBao { addresses: Vec<Url> },
}

/// Parses the `--store` values (`None` without any).
pub fn parse_stores(values: &[String], allow_insecure_http: bool) -> Result<Option<Store>, Error> {
    let mut addresses = Vec::new();
    let mut agent_vault: Vec<Url> = Vec::new();
    for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let bad = |reason: &str| Error::BadStore {
            value: without_userinfo(value),
            reason: reason.to_owned(),
        };
        let Some((kind, rest)) = value.split_once("://") else {
            return Err(bad(&no_scheme(value)));
        };
        let (scheme, is_openbao) = match kind {
            "openbao+https" | "vault+https" => ("https", true),
            "openbao+http" | "vault+http" => ("http", true),
            "https" => ("https", false),
            "http" => ("http", false),
            _ => return Err(bad(
                "unknown scheme; expected https:// (agent-vault) or openbao+https, vault+https \
                 (OpenBao/Vault; +http on loopback)",
            )),
        };
        let url = Url::parse(&format!("{scheme}://{rest}")).map_err(|e| bad(&e.to_string()))?;
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(bad("no host"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL (use AGENT_RUN_TOKEN, --token-file or --auth)",
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "give only scheme, host and port (the API path is /v1/…)",
            ));
        }
        if scheme == "http" && !allow_insecure_http && !is_loopback(host) {
            return Err(bad(
                "plain http would send the token in clear and is only allowed to a loopback \
                 host (127.0.0.1, ::1, localhost): use https, or --allow-insecure-http if the \
                 network is trusted",
            ));
        }
        if is_openbao {
            addresses.push(url);
        } else {
            agent_vault.push(url);
        }
    }
    match (agent_vault.len(), addresses.is_empty()) {
        (0, true) => Ok(None),
        (0, false) => Ok(Some(Store::OpenBao { addresses })),
        (1, true) => Ok(agent_vault.pop().map(|url| Store::AgentVault { url })),
        (_, true) => Err(Error::BadStore {
            value: values.join(","),
            reason: "agent-vault is one server: give a single --store".to_owned(),
        }),
        (_, false) => Err(Error::BadStore {
            value: values.join(","),
            reason: "mixes an agent-vault store with OpenBao/Vault addresses".to_owned(),
        }),
    }
}

/// The message for a `--store` without a scheme: every accepted form, and the value with the
/// scheme it most likely lacks (`http` for loopback, where plain http is allowed).
fn no_scheme(value: &str) -> String {
    let authority = value.split('/').next().unwrap_or(value);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    let scheme = if is_loopback(host) { "http" } else { "https" };
    format!(
        "no scheme; expected https://HOST:PORT (agent-vault; http:// on loopback), \
         openbao+https://HOST:PORT or vault+https://HOST:PORT (OpenBao/Vault; openbao+http://, \
         vault+http:// on loopback); did you mean {scheme}://{}?",
        without_userinfo(&format!("x://{value}")).trim_start_matches("x://")
    )
}

/// `value` with any `user:password@` replaced, so an error never repeats a credential.
fn without_userinfo(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => value.to_owned(),
    }
}

use crate::source::is_loopback;

/// `--proxy`: an `http://` or `https://` proxy URL (no path). A proxy sees everything that
/// is not inside a CONNECT tunnel, so it is refused when any non-loopback store address is
/// plain `http` (the token would reach the proxy in clear). Loopback addresses never go
/// through the proxy (see `source::http_client_builder`).
fn proxy_url(value: Option<&str>, store: Option<&Store>) -> Result<Option<Url>, Error> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason: &str| Error::BadProxy {
        value: without_userinfo(value),
        reason: reason.to_owned(),
    };
    let url = Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give only scheme, host and port"));
    }
    let addresses: Vec<&Url> = match store {
        None => {
            return Err(bad(
                "needs a --store (the proxy is used only for the store)",
            ))
        }
        Some(Store::AgentVault { url }) => vec![url],
        Some(Store::OpenBao { addresses }) => addresses.iter().collect(),
    };
    // Whatever the proxy's own scheme, a proxy in front of a plain-http store reads the
    // request, token included; in front of an https store it only relays a TLS tunnel.
    let clear = addresses
        .iter()
        .find(|a| a.scheme() == "http" && !a.host_str().is_some_and(is_loopback));
    if let Some(address) = clear {
        return Err(bad(&format!(
            "the proxy would read the token sent to the plain-http store {}: a proxy is used \
             only in front of https stores (the token then crosses it inside a TLS tunnel)",
            address.as_str().trim_end_matches('/')
        )));
    }
    Ok(Some(url))
}

/// The OpenBao source's settings, or `None` without an OpenBao `--store`; every flag that
/// only makes sense with one is refused without it.
fn openbao_settings(
    args: &RunArgs,
    store: Option<&Store>,
    proxy: Option<Url>,
) -> Result<Option<openbao::Settings>, Error> {
    let Some(Store::OpenBao { addresses }) = store else {
        let stray = [
            ("path", !args.paths.is_empty()),
            ("namespace", args.namespace.is_some()),
            ("auth", args.auth != AuthArg::Token),
            ("role-id-file", args.role_id_file.is_some()),
            ("secret-id-file", args.secret_id_file.is_some()),
            ("jwt-file", args.jwt_file.is_some()),
            ("auth-role", args.auth_role.is_some()),
            ("auth-mount", args.auth_mount.is_some()),
        ];
        if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
            return Err(Error::OpenBao {
                flag,
                reason: "needs an OpenBao/Vault store (--store openbao+https://HOST:PORT)"
                    .to_owned(),
            });
        }
        return Ok(None);
    };
    let bad = |flag: &'static str, reason: &str| Error::OpenBao {
        flag,
        reason: reason.to_owned(),
    };
    let paths: Vec<String> = args
        .paths
        .iter()
        .map(|p| p.trim().trim_matches('/').to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if paths.is_empty() {
        return Err(bad(
            "path",
            "an OpenBao/Vault store needs at least one --path (e.g. secret/agents/support-bot)",
        ));
    }
    for path in &paths {
        if path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(Error::OpenBao {
                flag: "path",
                reason: format!("{path:?}: empty, '.' or '..' segments are not allowed"),
            });
        }
        if !path.contains('/') {
            return Err(Error::OpenBao {
                flag: "path",
                reason: format!("{path:?}: give MOUNT/PATH, e.g. secret/agents/support-bot"),
            });
        }
    }
    let namespace = args
        .namespace
        .as_deref()
        .map(|ns| ns.trim().trim_matches('/').to_owned())
        .filter(|ns| !ns.is_empty());
    let require = |flag: &'static str, value: &Option<PathBuf>| {
        value.clone().ok_or_else(|| Error::OpenBao {
            flag,
            reason: format!("required with --auth {}", auth_name(args.auth)),
        })
    };
    let mount = |default: &str| -> Result<String, Error> {
        let mount = args
            .auth_mount
            .as_deref()
            .unwrap_or(default)
            .trim()
            .trim_matches('/');
        if mount.is_empty() || mount.split('/').any(|s| s.is_empty() || s == "..") {
            return Err(bad("auth-mount", "not a valid mount path"));
        }
        Ok(mount.to_owned())
    };
    let refuse = |flag: &'static str, given: bool| {
        if given {
            Err(Error::OpenBao {
                flag,
                reason: format!("not used with --auth {}", auth_name(args.auth)),
            })
        } else {
            Ok(())
        }
    };
    let approle_flags = args.role_id_file.is_some() || args.secret_id_file.is_some();
    let jwt_flags = args.jwt_file.is_some() || args.auth_role.is_some();
    let auth = match args.auth {
        AuthArg::Token => {
            refuse("role-id-file", args.role_id_file.is_some())?;
            refuse("secret-id-file", args.secret_id_file.is_some())?;
            refuse("jwt-file", args.jwt_file.is_some())?;
            refuse("auth-role", args.auth_role.is_some())?;
            refuse("auth-mount", args.auth_mount.is_some())?;
            openbao::Auth::Token {
                file: args.token_file.clone(),
            }
        }
        AuthArg::Approle => {
            refuse("token-file", args.token_file.is_some())?;
            refuse("jwt-file / --auth-role", jwt_flags)?;
            openbao::Auth::AppRole {
                role_id_file: require("role-id-file", &args.role_id_file)?,
                secret_id_file: require("secret-id-file", &args.secret_id_file)?,
                mount: mount("approle")?,
            }
        }
        AuthArg::Jwt | AuthArg::Kubernetes => {
            refuse("token-file", args.token_file.is_some())?;
            refuse("role-id-file / --secret-id-file", approle_flags)?;
            let (kind, default_mount) = match args.auth {
                AuthArg::Jwt => (JwtKind::Jwt, "jwt"),
                _ => (JwtKind::Kubernetes, "kubernetes"),
            };
            let jwt_file = match (kind, &args.jwt_file) {
                (_, Some(file)) => file.clone(),
                (JwtKind::Kubernetes, None) => PathBuf::from(openbao::KUBERNETES_JWT),
                (JwtKind::Jwt, None) => require("jwt-file", &None)?,
            };
            let role = args
                .auth_role
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| Error::OpenBao {
                    flag: "auth-role",
                    reason: format!("required with --auth {}", auth_name(args.auth)),
                })?
                .to_owned();
            openbao::Auth::Jwt {
                kind,
                role,
                jwt_file,
                mount: mount(default_mount)?,
            }
        }
    };
    let poll_interval = duration("poll-interval", &args.poll_interval)?;
    if poll_interval < Duration::from_millis(50) {
        return Err(bad("poll-interval", "must be at least 50ms"));
    }
    Ok(Some(openbao::Settings {
        addresses: addresses.clone(),
        paths,
        namespace,
        auth,
        poll_interval,
        proxy,
        start_timeout: duration("start-timeout", &args.start_timeout)?,
        ca_pem: ca_pem(args, true, env_var)?,
    }))
}

fn auth_name(auth: AuthArg) -> &'static str {
    match auth {
        AuthArg::Token => "token",
        AuthArg::Approle => "approle",
        AuthArg::Jwt => "jwt",
        AuthArg::Kubernetes => "kubernetes",
    }
}

fn duration(flag: &'static str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value.trim()).map_err(|_| Error::BadDuration {
        flag,
        value: value.to_owned(),
    })
}

/// `--restart-jitter MAX` or `MIN-MAX` (durations never contain a `-`).
fn jitter(value: &str) -> Result<Jitter, Error> {
    let bad = || Error::BadJitter {
        value: value.to_owned(),
    };
    let parse = |text: &str| humantime::parse_duration(text.trim()).map_err(|_| bad());
    let (min, max) = match value.split_once('-') {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => (Duration::ZERO, parse(value)?),
    };
    if min > max {
        return Err(bad());
    }
    Ok(Jitter { min, max })
}

/// `--max-restarts N [--within D]`, only where there are restarts to count.
fn restart_budget(args: &RunArgs) -> Result<Option<RestartBudget>, Error> {
    let Some(max) = args.max_restarts else {
        return Ok(None);
    };
    if args.restart == RestartArg::No {
        return Err(Error::BudgetWithoutRestart);
    }
    let within = args
        .within
        .as_deref()
        .map(|d| duration("within", d))
        .transpose()?;
    Ok(Some(RestartBudget { max, within }))
}

fn on_change(value: &str) -> Result<OnChange, Error> {
    match value.trim() {
        "restart" => Ok(OnChange::Restart),
        "exit" => Ok(OnChange::Exit),
        "none" => Ok(OnChange::None),
        other if other.starts_with("reload:") => signals::parse(&other["reload:".len()..])
            .map(OnChange::Reload)
            .map_err(|reason| Error::BadSignal {
                flag: "on-change",
                reason,
            }),
        other => match other.strip_prefix("signal:") {
            Some(sig) => {
                signals::parse(sig)
                    .map(OnChange::Signal)
                    .map_err(|reason| Error::BadSignal {
                        flag: "on-change",
                        reason,
                    })
            }
            None => Err(Error::BadOnChange {
                value: value.to_owned(),
            }),
        },
    }
}

/// Default `warn`; each -v one level more, each -q one less; --log-level when neither.
fn log_level(
    verbose: u8,
    quiet: u8,
    explicit: Option<&str>,
) -> Result<tracing::level_filters::LevelFilter, Error> {
    use tracing::level_filters::LevelFilter;
    let ladder = [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ];
    if verbose == 0 && quiet == 0 {
        if let Some(text) = explicit {
            return text.trim().parse().map_err(|_| Error::BadLogLevel {
                value: text.to_owned(),
            });
        }
    }
    let index = (2 + verbose as i32 - quiet as i32).clamp(0, ladder.len() as i32 - 1);
    Ok(ladder[index as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, Error> {
        let mut argv = vec!["agent-run"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--", "true"]);
        Config::from_args(RunArgs::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.supervise.grace, Duration::from_secs(10));
        assert_eq!(c.supervise.on_change, OnChange::Restart);
        assert_eq!(c.supervise.stop_signal, nix::sys::signal::Signal::SIGTERM);
        assert!(c.pdeathsig && !c.once);
        assert_eq!(c.log.level, tracing::level_filters::LevelFilter::WARN);
    }

    #[test]
    fn durations_signals_and_actions() {
        let c = config(&[
            "--grace",
            "500ms",
            "--debounce",
            "2s",
            "--on-change",
            "signal:HUP",
            "--stop-signal",
            "INT",
        ])
        .unwrap();
        assert_eq!(c.supervise.grace, Duration::from_millis(500));
        assert_eq!(c.supervise.debounce, Some(Duration::from_secs(2)));
        assert_eq!(
            c.supervise.on_change,
            OnChange::Signal(nix::sys::signal::Signal::SIGHUP)
        );
        assert!(matches!(
            config(&["--grace", "soon"]),
            Err(Error::BadDuration { flag: "grace", .. })
        ));
        assert!(matches!(
            config(&["--on-change", "reboot"]),
            Err(Error::BadOnChange { .. })
        ));
        assert!(matches!(
            config(&["--on-change", "signal:NOPE"]),
            Err(Error::BadSignal { .. })
        ));
        assert!(matches!(config(&["--env", "1X=@A"]), Err(Error::Env(_))));
    }

    #[test]
    fn store_urls() {
        let c = config(&["--store", "http://127.0.0.1:8200/", "--agent", "bot"]).unwrap();
        let store = c.store.unwrap();
        assert_eq!(store.url, "http://127.0.0.1:8200");
        assert_eq!(store.agent.as_deref(), Some("bot"));
        let c = config(&[
            "--store",
            "http://127.0.0.1:1",
            "--agent",
            "production/openai",
        ]);
        assert_eq!(
            c.unwrap().store.unwrap().agent.as_deref(),
            Some("production/openai")
        );
        for bad in [
            "production//openai",
            "/production",
            "production/",
            "a/../b",
            "Bot",
        ] {
            assert!(
                matches!(
                    config(&["--store", "http://127.0.0.1:1", "--agent", bad]),
                    Err(Error::BadStore { .. })
                ),
                "{bad}"
            );
        }
        assert!(config(&["--store", "https://vault.example.com"])
            .unwrap()
            .store
            .is_some());
        assert!(config(&["--store", "http://[::1]:1"]).is_ok());
        assert!(matches!(
            config(&["--store", "http://vault.example.com"]),
            Err(Error::BadStore { .. })
        ));
        assert!(config(&[
            "--store",
            "http://vault.example.com",
            "--allow-insecure-http"
        ])
        .is_ok());
        assert!(matches!(
            config(&["--store", "ftp://x"]),
            Err(Error::BadStore { .. })
        ));
        assert!(matches!(
            config(&["--fallback", "/f"]),
            Err(Error::NeedsStore { flag: "fallback" })
        ));
        // One kind of store at a time, and agent-vault is a single server.
        let e = config(&[
            "--store",
            "https://a:1,openbao+https://b:2",
            "--path",
            "s/a",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("mixes"), "{e}");
        let e = config(&["--store", "https://a:1,https://b:2"]).unwrap_err();
        assert!(e.to_string().contains("single"), "{e}");
    }

    #[test]
    fn mount_max_reads_needs_a_path_and_one_read() {
        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        for args in [
            &["--mount-max-reads", "2"][..],
            &["--mount", "--mount-max-reads", "2"],
            &["--mount=/dev/shm/x", "--mount-max-reads", "0"],
        ] {
            let e = err(args);
            assert!(e.starts_with("--mount-max-reads"), "{args:?}: {e}");
        }
        let c = config(&["--mount=/dev/shm/x", "--mount-max-reads", "2"]).unwrap();
        assert_eq!(c.supervise.mount.unwrap().max_reads, Some(2));
    }

    #[test]
    fn openbao_store_addresses_and_schemes() {
        let c = config(&[
            "--store",
            "openbao+http://127.0.0.1:8201,vault+https://bao.example:8200",
            "--store",
            "openbao+http://localhost:8203",
            "--path",
            "secret/agents/a",
        ])
        .unwrap();
        let bao = c.openbao.unwrap();
        let addresses: Vec<&str> = bao.addresses.iter().map(|u| u.as_str()).collect();
        assert_eq!(
            addresses,
            [
                "http://127.0.0.1:8201/",
                "https://bao.example:8200/",
                "http://localhost:8203/"
            ]
        );
        assert_eq!(bao.poll_interval, Duration::from_secs(5));
        assert_eq!(bao.auth, openbao::Auth::Token { file: None });
        assert!(c.policy.hidden.contains(&"VAULT_TOKEN".to_owned()));
        assert!(c.policy.hidden.contains(&"BAO_TOKEN".to_owned()));

        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        let e = err(&["--store", "openbao+http://10.0.0.1:8200", "--path", "s/a"]);
        assert!(e.contains("--store") && e.contains("loopback"), "{e}");
        assert!(config(&[
            "--store",
            "openbao+http://10.0.0.1:8200",
            "--allow-insecure-http",
            "--path",
            "s/a"
        ])
        .is_ok());
        let e = err(&["--store", "https://vault.example", "--path", "s/a"]);
        assert!(e.contains("--path") && e.contains("OpenBao"), "{e}");
        let e = err(&["--store", "ftp://x", "--path", "s/a"]);
        assert!(e.contains("unknown scheme"), "{e}");
        let e = err(&["--store", "openbao+https://u:p@h:1", "--path", "s/a"]);
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("u:p"), "{e}");
    }

    #[test]
    fn openbao_flags_are_validated_by_name() {
        let store = ["--store", "openbao+https://bao:8200"];
        let err = |extra: &[&str]| {
            let mut args = store.to_vec();
            args.extend_from_slice(extra);
            config(&args).unwrap_err().to_string()
        };
        assert!(err(&[]).contains("--path"));
        assert!(err(&["--path", "secret"]).contains("MOUNT/PATH"));
        assert!(err(&["--path", "secret/../b"]).contains("--path"));
        let e = err(&["--path", "s/a", "--auth", "approle", "--role-id-file", "r"]);
        assert!(e.contains("--secret-id-file"), "{e}");
        let e = err(&["--path", "s/a", "--auth", "jwt", "--jwt-file", "j"]);
        assert!(e.contains("--auth-role"), "{e}");
        let e = err(&["--path", "s/a", "--role-id-file", "r"]);
        assert!(
            e.contains("--role-id-file") && e.contains("--auth token"),
            "{e}"
        );
        let e = err(&["--path", "s/a", "--poll-interval", "often"]);
        assert!(e.contains("--poll-interval"), "{e}");
        let e = config(&["--path", "s/a"]).unwrap_err().to_string();
        assert!(e.contains("--path") && e.contains("--store"), "{e}");

        let c = config(&[
            "--store",
            "openbao+https://bao:8200",
            "--path",
            "/secret/agents/a/",
            "--auth",
            "kubernetes",
            "--auth-role",
            "agent-a",
            "--namespace",
            "team/",
            "--poll-interval",
            "200ms",
        ])
        .unwrap();
        let bao = c.openbao.unwrap();
        assert_eq!(bao.paths, ["secret/agents/a"]);
        assert_eq!(bao.namespace.as_deref(), Some("team"));
        assert_eq!(bao.poll_interval, Duration::from_millis(200));
        assert_eq!(
            bao.auth,
            openbao::Auth::Jwt {
                kind: JwtKind::Kubernetes,
                role: "agent-a".into(),
                jwt_file: PathBuf::from(openbao::KUBERNETES_JWT),
                mount: "kubernetes".into(),
            }
        );
        // Without a store no source is configured, and the credential variables are
        // hidden all the same (an operator's AGENT_VAULT_TOKEN must not reach the child).
        let c = config(&[]).unwrap();
        assert!(c.openbao.is_none());
        assert_eq!(c.policy.hidden.len(), env::CREDENTIAL_VARIABLES.len());
    }

    #[test]
    fn proxy_is_checked_against_the_store() {
        let c = config(&["--store", "https://s.example", "--proxy", "http://p:3128"]).unwrap();
        assert_eq!(c.store.unwrap().proxy.unwrap().as_str(), "http://p:3128/");
        // A plain-http proxy would see the token of a plain-http remote store.
        let e = config(&[
            "--store",
            "http://s.example",
            "--allow-insecure-http",
            "--proxy",
            "http://u:pw@p:3128",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--proxy") && e.contains("plain-http"), "{e}");
        assert!(!e.contains("pw"), "{e}");
        // An https proxy would read it just the same.
        assert!(matches!(
            config(&[
                "--store",
                "http://s.example",
                "--allow-insecure-http",
                "--proxy",
                "https://p:3128"
            ]),
            Err(Error::BadProxy { .. })
        ));
        // A loopback store is never proxied, so any proxy is harmless there.
        assert!(config(&["--store", "http://127.0.0.1:1", "--proxy", "http://p:1"]).is_ok());
        let bao = config(&[
            "--store",
            "openbao+https://b:1",
            "--path",
            "s/a",
            "--proxy",
            "http://p:1",
        ])
        .unwrap();
        assert!(bao.openbao.unwrap().proxy.is_some());
        for bad in ["socks5://p:1", "http://p:1/x", "nope"] {
            assert!(matches!(
                config(&["--store", "https://s:1", "--proxy", bad]),
                Err(Error::BadProxy { .. })
            ));
        }
        assert!(matches!(
            config(&["--proxy", "http://p:1"]),
            Err(Error::BadProxy { .. })
        ));
    }

    #[test]
    fn one_ca_flag_for_every_store_and_the_usual_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            path
        };
        let (flag, bao, vault, ssl) = (file("flag"), file("bao"), file("vault"), file("ssl"));
        let parse = |extra: &[&str]| {
            let mut argv = vec!["agent-run"];
            argv.extend_from_slice(extra);
            argv.extend_from_slice(&["--", "true"]);
            RunArgs::try_parse_from(argv).unwrap()
        };
        let env = |set: &'static [&'static str]| {
            let (bao, vault, ssl) = (bao.clone(), vault.clone(), ssl.clone());
            move |name: &str| match name {
                "BAO_CACERT" if set.contains(&name) => Some(bao.clone()),
                "VAULT_CACERT" if set.contains(&name) => Some(vault.clone()),
                "SSL_CERT_FILE" if set.contains(&name) => Some(ssl.clone()),
                _ => None,
            }
        };
        let all: &[&str] = &["BAO_CACERT", "VAULT_CACERT", "SSL_CERT_FILE"];
        let got = |args: &RunArgs, openbao, set| {
            ca_pem(args, openbao, env(set))
                .unwrap()
                .map(|p| String::from_utf8(p).unwrap())
        };
        let with_flag = parse(&["--ca-cert", flag.to_str().unwrap()]);
        let old_name = parse(&["--store-ca", flag.to_str().unwrap()]);
        let none = parse(&[]);
        assert_eq!(got(&with_flag, true, all).as_deref(), Some("flag"));
        assert_eq!(got(&old_name, true, all).as_deref(), Some("flag"));
        assert_eq!(got(&none, true, all).as_deref(), Some("bao"));
        assert_eq!(
            got(&none, true, &["VAULT_CACERT", "SSL_CERT_FILE"]).as_deref(),
            Some("vault")
        );
        assert_eq!(got(&none, true, &["SSL_CERT_FILE"]).as_deref(), Some("ssl"));
        assert_eq!(
            got(&none, false, all).as_deref(),
            Some("ssl"),
            "agent-vault skips BAO_/VAULT_"
        );
        assert_eq!(got(&none, true, &[]), None);
        let missing = parse(&["--ca-cert", "/nonexistent/ca.pem"]);
        let e = ca_pem(&missing, true, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("--ca-cert") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        // Accepted with an OpenBao store now; refused without any store.
        assert!(config(&[
            "--store",
            "openbao+https://b:1",
            "--path",
            "s/a",
            "--ca-cert",
            flag.to_str().unwrap()
        ])
        .is_ok_and(|c| c.openbao.unwrap().ca_pem.is_some()));
        assert!(matches!(
            config(&["--ca-cert", flag.to_str().unwrap()]),
            Err(Error::NeedsStore { flag: "ca-cert" })
        ));
    }

    #[test]
    fn verbosity_ladder() {
        use tracing::level_filters::LevelFilter;
        assert_eq!(log_level(3, 0, None).unwrap(), LevelFilter::TRACE);
        assert_eq!(log_level(0, 1, None).unwrap(), LevelFilter::ERROR);
        assert_eq!(log_level(0, 5, None).unwrap(), LevelFilter::OFF);
        assert_eq!(log_level(0, 0, Some("debug")).unwrap(), LevelFilter::DEBUG);
        assert!(log_level(0, 0, Some("loud")).is_err());
    }
}
