//! `agent-vault completions SHELL`: the shell's completion script, generated from the same
//! clap definitions the parser uses (`flags::VaultCli`), so it never lists a stale flag.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::flags::VaultCli;
use super::{Error, Result};

/// Writes the completion script for `shell` to stdout. Rendered into memory first: clap's
/// generator panics on a write error, and a closed pipe (`| head`) is an error to report,
/// not a crash.
pub fn print(shell: Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut VaultCli::command(), "agent-vault", &mut script);
    let script = String::from_utf8_lossy(&script);
    let script = if shell == Shell::Bash {
        fix_bash_hyphenated_name(&script, "agent-vault")
    } else {
        script.into_owned()
    };
    std::io::stdout()
        .write_all(script.as_bytes())
        .map_err(Error::io("writing the completion script to stdout"))
}

/// clap_complete's bash script (4.6, clap-rs/clap#6421) spells the state of a subcommand of a
/// hyphenated program two ways: the loop over the words arrives at `agent__vault__subcmd__x`,
/// the arms that complete it are labelled `agent__subcmd__vault__subcmd__x`, so nothing after
/// the first subcommand ever completed. Relabel the arms the way the loop spells them.
fn fix_bash_hyphenated_name(script: &str, name: &str) -> String {
    script.replace(
        &format!("{}__subcmd__", name.replace('-', "__subcmd__")),
        &format!("{}__subcmd__", name.replace('-', "__")),
    )
}
