//! agent-run hands each agent exactly its own secrets. This crate holds both programs: the
//! launcher (`agent-run`, [`launcher`]) with the places its secrets come from ([`source`]),
//! and the store it talks to by default (`agent-vault`, [`vault`]); between them,
//! [`protocol`] is agent-vault's wire protocol and its one HTTP client; [`exit`], [`sys`],
//! [`secret_file`] and [`dotenv`] are shared. ARCHITECTURE.md is the one code map: read it
//! first.

pub mod dotenv;
pub mod exit;
pub mod launcher;
pub mod protocol;
pub mod secret_file;
pub mod source;
pub mod sys;
pub mod vault;

pub use launcher::run;

/// What `--version` prints for both programs: the package version and the git revision the
/// binary was built from (`build.rs`), so a deployed binary can be traced to its commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("AGENT_RUN_GIT_REV"),
    ")"
);
