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
    #[error(transparent)]
    Env(#[from] env::Error),
}

/// Everything agent-run needs to know, validated.
#[derive(Debug)]
pub struct Config {
    pub env_files: Vec<PathBuf>,
    pub secrets_dirs: Vec<PathBuf>,
    pub policy: Policy,
    pub command: Vec<OsString>,
    pub once: bool,
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
            debounce: duration("debounce", &args.debounce)?,
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
        Ok(Config {
            env_files: args.env_files,
            secrets_dirs: args.secrets_dirs,
            policy,
            command: args.command,
            once: args.once,
            pdeathsig: !args.no_pdeathsig,
            supervise,
            log,
        })
    }
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
        assert_eq!(c.supervise.debounce, Duration::from_secs(2));
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
    fn verbosity_ladder() {
        use tracing::level_filters::LevelFilter;
        assert_eq!(log_level(3, 0, None).unwrap(), LevelFilter::TRACE);
        assert_eq!(log_level(0, 1, None).unwrap(), LevelFilter::ERROR);
        assert_eq!(log_level(0, 5, None).unwrap(), LevelFilter::OFF);
        assert_eq!(log_level(0, 0, Some("debug")).unwrap(), LevelFilter::DEBUG);
        assert!(log_level(0, 0, Some("loud")).is_err());
    }
}
