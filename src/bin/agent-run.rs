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
        Err(e) => {
            // --help and --version are not failures.
            let code = if e.use_stderr() { LAUNCHER_ERROR } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => return fail(&e, LAUNCHER_ERROR),
    };
    init_logging(config.log);
    match agent_run::run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            fail(&e, code)
        }
    }
}

fn fail(error: &(dyn std::error::Error + 'static), code: u8) -> ExitCode {
    eprintln!("agent-run: {}", chain(error));
    ExitCode::from(code)
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
