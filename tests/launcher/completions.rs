//! For people at a terminal (issue 15): shell completions that generate and load, man pages
//! in packaging/man/ that match the clap definitions, and a `--help` for every command that
//! ends with an example. Covers both programs (this target also has agent-vault's binary).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use agent_run::launcher::flags::RunArgs;
use agent_run::vault::cmd::flags::VaultCli;

use crate::common::agent_run_bin;
use crate::common::vault::vault_bin;

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash's completion function for `program` offers after `words` (the last one is the
/// word being completed), with the script loaded the way the README says:
/// `source <(agent-run --completions bash)`.
fn bash_complete(program: &str, generate: &str, words: &[&str]) -> Vec<String> {
    let name = Path::new(program).file_name().unwrap().to_str().unwrap();
    let script = format!(
        r#"set -e
source <({generate})
spec=$(complete -p {name})
fn=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_WORDS=({name} {words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$fn" {name} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" "),
    );
    let dir = Path::new(program).parent().unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loading the bash completion of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn completions_generate_for_every_shell_and_load_in_bash() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = output(agent_run_bin(), &["--completions", shell]);
        assert!(run.contains("agent-run"), "{shell}: {run}");
        assert!(run.contains("store"), "{shell} completes --store: {run}");
        let vault = output(vault_bin(), &["completions", shell]);
        assert!(vault.contains("agent-vault"), "{shell}: {vault}");
        assert!(
            vault.contains("secrets"),
            "{shell} completes secrets: {vault}"
        );
    }
    let offered = bash_complete(
        agent_run_bin(),
        &format!("{} --completions bash", agent_run_bin()),
        &["--start-ti"],
    );
    assert_eq!(offered, ["--start-timeout"], "agent-run --start-ti<TAB>");
    let offered = bash_complete(
        vault_bin(),
        &format!("{} completions bash", vault_bin()),
        &["sec"],
    );
    assert_eq!(offered, ["secrets"], "agent-vault sec<TAB>");
    let offered = bash_complete(
        vault_bin(),
        &format!("{} completions bash", vault_bin()),
        &["tokens", "re"],
    );
    assert_eq!(offered, ["revoke"], "agent-vault tokens re<TAB>");
    // A subcommand's own flags (clap_complete's bash script lost them for a hyphenated
    // program name; see vault/cmd/completions.rs).
    let offered = bash_complete(
        vault_bin(),
        &format!("{} completions bash", vault_bin()),
        &["secrets", "set", "--std"],
    );
    assert_eq!(offered, ["--stdin"], "agent-vault secrets set --std<TAB>");
}

/// `--completions` alone is a complete invocation (no command needed, even where the image
/// or unit sets AGENT_RUN_* variables), and an unknown shell is a usage error naming the
/// choices.
#[test]
fn completions_flag_needs_no_command_and_refuses_an_unknown_shell() {
    let out = Command::new(agent_run_bin())
        .args(["--completions", "bash"])
        .env("AGENT_RUN_STORE", "http://127.0.0.1:1")
        .env("AGENT_RUN_ONCE", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("_agent__run"));
    let out = Command::new(agent_run_bin())
        .args(["--completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tcsh") && stderr.contains("bash"),
        "{stderr}"
    );
}

/// Every command and subcommand, with its full name (`agent-vault secrets set`).
fn all_commands(command: clap::Command) -> Vec<clap::Command> {
    let mut command = command.version(env!("CARGO_PKG_VERSION"));
    command.build();
    let mut out = Vec::new();
    let mut stack = vec![command];
    while let Some(c) = stack.pop() {
        stack.extend(
            c.get_subcommands()
                .filter(|s| s.get_name() != "help")
                .cloned(),
        );
        out.push(c);
    }
    out
}

fn display_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or(command.get_name())
        .to_owned()
}

#[test]
fn every_commands_help_ends_with_an_example() {
    let mut missing = Vec::new();
    for command in all_commands(RunArgs::command())
        .into_iter()
        .chain(all_commands(VaultCli::command()))
    {
        let help = command
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        // After the last "Example" heading there must be an indented command line.
        let tail = help.rsplit_once("Example").map(|(_, t)| t).unwrap_or("");
        let name = display_name(&command);
        let program = if name.starts_with("agent-run") {
            "agent-run"
        } else {
            "agent-vault"
        };
        let has_command_line = tail.lines().any(|l| {
            l.trim_start().starts_with(&format!("{program} "))
                || l.contains(&format!(" {program} "))
        });
        if !has_command_line {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "--help without an example at its end: {missing:?}"
    );
    // And as the binaries print it: the last non-empty lines are the example.
    let help = output(agent_run_bin(), &["--help"]);
    let last = help
        .trim_end()
        .rsplit_once("Example:")
        .map(|(_, t)| t.to_owned());
    assert!(
        last.is_some_and(|t| t.contains("agent-run --store")),
        "{help}"
    );
    let help = output(vault_bin(), &["secrets", "set", "--help"]);
    assert!(
        help.trim_end()
            .ends_with("agent-vault secrets set support-bot OPENAI_API_KEY --stdin < key.txt"),
        "{help}"
    );
}

/// The man pages, one per command, as clap_mangen renders them from the definitions.
fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut pages = Vec::new();
    for command in all_commands(RunArgs::command())
        .into_iter()
        .chain(all_commands(VaultCli::command()))
    {
        let name = display_name(&command);
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page).unwrap();
        pages.push((format!("{name}.1"), page));
    }
    pages.sort();
    pages
}

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man")
}

/// packaging/man/ is what clap_mangen makes of the current flags: a flag added without
/// regenerating the pages fails here. `UPDATE_MAN=1 cargo test --test launcher
/// completions::man_pages` rewrites them.
#[test]
fn man_pages_are_current() {
    let pages = man_pages();
    let dir = man_dir();
    if std::env::var_os("UPDATE_MAN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, page) in &pages {
            std::fs::write(dir.join(name), page).unwrap();
        }
    }
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    committed.sort();
    let expected: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        committed, expected,
        "packaging/man/ has other pages than the commands: run UPDATE_MAN=1 cargo test --test launcher completions::man_pages"
    );
    for (name, page) in &pages {
        let on_disk = std::fs::read(dir.join(name)).unwrap();
        assert!(
            &on_disk == page,
            "packaging/man/{name} is stale: run UPDATE_MAN=1 cargo test --test launcher completions::man_pages"
        );
    }
    // The pages render: man(1) reads them (when installed), and name the command.
    let run = String::from_utf8_lossy(&pages.iter().find(|(n, _)| n == "agent-run.1").unwrap().1)
        .into_owned();
    assert!(
        run.contains(".TH agent-run 1") && run.contains("\\-\\-store"),
        "{run}"
    );
}
