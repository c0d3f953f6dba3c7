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
