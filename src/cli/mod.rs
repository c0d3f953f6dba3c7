//! Command-line definitions of `agent-vault`: clap derive structs only, no logic, no I/O.
//! (agent-run's flags live in its wing, `launcher::flags`.)

pub mod vault;
