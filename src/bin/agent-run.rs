//! `agent-run`: parse flags, set up logging, run, map the result to an exit code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use agent_run::exit::LAUNCHER_ERROR;
use agent_run::launcher::config::{Config, LogSettings};
use agent_run::launcher::flags::{LogFormat, RunArgs};

/// Wipes every heap block before it is freed: see `agent_run::sys::WipeOnFree`.
#[global_allocator]
static ALLOCATOR: agent_run::sys::WipeOnFree = agent_run::sys::WipeOnFree;

fn main() -> ExitCode {
    let args = match RunArgs::try_parse() {
        Ok(RunArgs {
            completions: Some(shell),
            ..
        }) => return print_completions(shell),
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version are not failures, and go to stdout as they are.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if json_requested(
                std::env::args_os(),
                std::env::var_os("AGENT_RUN_LOG_FORMAT"),
            ) {
                let text = e.render().to_string();
                eprintln!(
                    "{}",
                    json_line("usage error", text.trim_end(), LAUNCHER_ERROR)
                );
            } else {
                let _ = e.print();
            }
            return ExitCode::from(LAUNCHER_ERROR);
        }
    };
    let format = args.log_format;
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => return fail(format, &e, LAUNCHER_ERROR),
    };
    init_logging(config.log);
    match agent_run::run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            fail(format, &e, code)
        }
    }
}

/// The fatal line, printed whatever the log level (as `env` and `timeout` print theirs); with
/// `--log-format json` one JSON object shaped like the log lines, so a log pipeline that
/// parses every line never meets a stray text line.
fn fail(format: LogFormat, error: &(dyn std::error::Error + 'static), code: u8) -> ExitCode {
    match format {
        LogFormat::Text => eprintln!("agent-run: {}", chain(error)),
        LogFormat::Json => eprintln!("{}", json_line("agent-run failed", &chain(error), code)),
    }
    ExitCode::from(code)
}

/// One line as `tracing_subscriber`'s JSON format writes it (timestamp, level, fields).
fn json_line(message: &str, error: &str, code: u8) -> String {
    serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "level": "ERROR",
        "fields": { "message": message, "error": error, "exit_code": code },
    })
    .to_string()
}

/// Whether the flags that failed to parse asked for JSON logs: `--log-format json` (or
/// `=json`) among the words before `--`, else `AGENT_RUN_LOG_FORMAT`, as clap would have
/// read them. A best effort for usage errors only, which happen before the flags are known.
fn json_requested(
    args: impl Iterator<Item = std::ffi::OsString>,
    variable: Option<std::ffi::OsString>,
) -> bool {
    let words: Vec<String> = args
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    let mut flag = None;
    for (i, word) in words.iter().enumerate() {
        if let Some(value) = word.strip_prefix("--log-format=") {
            flag = Some(value.to_owned());
        } else if word == "--log-format" {
            flag = words.get(i + 1).cloned();
        }
    }
    flag.or_else(|| variable.map(|v| v.to_string_lossy().into_owned()))
        .is_some_and(|format| format.trim().eq_ignore_ascii_case("json"))
}

/// The error and its causes, `: `-separated, each cause once. Many errors show their cause in
/// their own message (so a log line with `%error` is complete) and also return it as
/// `source()`; printing the plain chain then said "No such file or directory" twice.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

fn init_logging(settings: LogSettings) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_max_level(settings.level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match settings.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `--completions SHELL`: the script, rendered into memory first (clap's generator panics
/// on a write error; a closed pipe is an error to report, not a crash).
fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut RunArgs::command(), "agent-run", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-run: writing the completion script to stdout: {e}");
            ExitCode::from(LAUNCHER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> impl Iterator<Item = std::ffi::OsString> {
        std::iter::once("agent-run")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn json_is_requested_by_flag_before_the_command_or_by_variable() {
        assert!(json_requested(
            words(&["--log-format", "json", "--stor"]),
            None
        ));
        assert!(json_requested(
            words(&["--log-format=JSON", "--stor"]),
            None
        ));
        assert!(json_requested(words(&["--chek"]), Some("json".into())));
        // The flag wins over the variable, as clap reads them.
        assert!(!json_requested(
            words(&["--log-format", "text", "--chek"]),
            Some("json".into())
        ));
        // Words after `--` belong to the command.
        assert!(!json_requested(
            words(&["--chek", "--", "x", "--log-format", "json"]),
            None
        ));
        assert!(!json_requested(words(&["--chek"]), None));
    }

    #[test]
    fn the_fatal_json_line_is_one_object_shaped_like_the_log_lines() {
        let line = json_line("agent-run failed", "multi\nline", 125);
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["fields"]["message"], "agent-run failed");
        assert_eq!(value["fields"]["error"], "multi\nline");
        assert_eq!(value["fields"]["exit_code"], 125);
        assert!(value["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
}
