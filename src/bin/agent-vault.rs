//! `agent-vault`: parse flags, set up logging, run the command, turn the outcome into an exit
//! code (the table is in `agent_run::exit`). Everything else is `agent_run::vault::cmd`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use agent_run::vault::cmd::{self, flags::VaultCli};

/// Wipes every heap block before it is freed (see `agent_run::sys::WipeOnFree`): request
/// bodies, hyper's read buffers, serde's scratch strings and run-time responses all held
/// values at some point, and most of them are not ours to zeroize.
#[global_allocator]
static ALLOCATOR: agent_run::sys::WipeOnFree = agent_run::sys::WipeOnFree;

fn main() -> ExitCode {
    // Before anything else, while this is the only thread: take the master key out of the
    // environment and make this process undumpable (it holds the key and values).
    agent_run::vault::crypto::take_env_key();
    cmd::harden();
    let cli = match VaultCli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and exit 0; real errors exit 2.
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(cmd::log_level(cli.verbose))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.exit_code();
            eprintln!("agent-vault: {}", chain(&err));
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
