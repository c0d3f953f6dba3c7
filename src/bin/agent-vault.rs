//! `agent-vault`: parse flags, set up logging, run the command, turn the outcome into an exit
//! code (the table is in `agent_run::exit`). Everything else is `agent_run::vault::cmd`.

use std::process::ExitCode;

use clap::Parser;

use agent_run::vault::cmd::flags::{LogFormat, VaultCli};
use agent_run::vault::cmd::{self, logging};

/// Wipes every heap block before it is freed (see `agent_run::sys::WipeOnFree`): request
/// bodies, hyper's read buffers, serde's scratch strings and run-time responses all held
/// values at some point, and most of them are not ours to zeroize.
#[global_allocator]
static ALLOCATOR: agent_run::sys::WipeOnFree = agent_run::sys::WipeOnFree;

fn main() -> ExitCode {
    // Before anything else, while this is the only thread: take the master key out of the
    // environment and make this process undumpable (it holds the key and values).
    agent_run::vault::crypto::take_env_key();
    agent_run::vault::transit::take_env_token();
    cmd::harden();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match VaultCli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and exit 0; real errors exit 2, as a
            // JSON line when JSON logs were asked for.
            let format = logging::format_of_refused_args(&args);
            if err.use_stderr() && format == LogFormat::Json {
                logging::print_error(format, err.to_string().trim_end());
            } else {
                let _ = err.print();
            }
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    logging::install(cmd::log_level(cli.verbose), cli.log_format);
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.exit_code();
            logging::fatal(&chain(&err));
            ExitCode::from(code)
        }
    }
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
