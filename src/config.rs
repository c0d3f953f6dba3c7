//! Turns the parsed flags into a validated [`Config`]: durations, signals, mappings and
//! globs are checked here, before anything is read or started, and every error names the
//! flag and the offending item. Reads no files and never touches the network.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::run::{LogFormat, RestartArg, RunArgs};
use crate::env::{self, Mapping, Policy};
use crate::signals;
use crate::supervise::{OnChange, RestartPolicy, Settings};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--{flag} {value:?}: not a duration (write e.g. 500ms, 2s, 1m)")]
    BadDuration { flag: &'static str, value: String },
    #[error("--{flag}: {reason}")]
    BadSignal { flag: &'static str, reason: String },
    #[error("--on-change {value:?}: expected restart, signal:SIG, exit or none")]
    BadOnChange { value: String },
    #[error("--log-level {value:?}: expected off, error, warn, info, debug or trace")]
    BadLogLevel { value: String },
    #[error("--store {url:?}: {reason}")]
    BadStore { url: String, reason: String },
    #[error("--{flag} {path}: {reason}")]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--{flag} needs --store")]
    NeedsStore { flag: &'static str },
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
}

/// Everything agent-run needs to know, validated.
#[derive(Debug)]
pub struct Config {
    pub env_files: Vec<PathBuf>,
    pub secrets_dirs: Vec<PathBuf>,
    pub store: Option<StoreConfig>,
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
            hidden: Vec::new(),
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
        };
        let log = LogSettings {
            level: log_level(args.verbose, args.quiet, args.log_level.as_deref())?,
            format: args.log_format,
        };
        let store = store(&args)?;
        Ok(Config {
            env_files: args.env_files,
            secrets_dirs: args.secrets_dirs,
            store,
            check: args.check.then_some(args.json),
            policy,
            command: args.command,
            once: args.once,
            pdeathsig: !args.no_pdeathsig,
            supervise,
            log,
        })
    }
}

fn store(args: &RunArgs) -> Result<Option<StoreConfig>, Error> {
    let Some(raw) = args.store.as_deref() else {
        for (flag, given) in [
            ("agent", args.agent.is_some()),
            ("token-file", args.token_file.is_some()),
            ("fallback", args.fallback.is_some()),
            ("store-ca", args.store_ca.is_some()),
        ] {
            if given {
                return Err(Error::NeedsStore { flag });
            }
        }
        return Ok(None);
    };
    let bad = |reason: &str| Error::BadStore {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if args.allow_insecure_http || is_loopback(host) => {}
        "http" => {
            return Err(bad(
                "plain http would send the token in clear; use https, or --allow-insecure-http",
            ))
        }
        _ => return Err(bad("expected an http:// or https:// URL")),
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(bad(
            "credentials and query strings do not belong in the URL",
        ));
    }
    if let Some(agent) = &args.agent {
        if agent.is_empty()
            || !agent
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(&format!("--agent {agent:?} is not a valid agent name")));
        }
    }
    let ca_pem = match &args.store_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| Error::Unreadable {
            flag: "store-ca",
            path: path.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    Ok(Some(StoreConfig {
        url: url.as_str().trim_end_matches('/').to_owned(),
        agent: args.agent.clone(),
        token_file: args.token_file.clone(),
        fallback: args.fallback.clone(),
        ca_pem,
    }))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn duration(flag: &'static str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value.trim()).map_err(|_| Error::BadDuration {
        flag,
        value: value.to_owned(),
    })
}

fn on_change(value: &str) -> Result<OnChange, Error> {
    match value.trim() {
        "restart" => Ok(OnChange::Restart),
        "exit" => Ok(OnChange::Exit),
        "none" => Ok(OnChange::None),
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
            config(&["--token-file", "/t"]),
            Err(Error::NeedsStore { flag: "token-file" })
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
