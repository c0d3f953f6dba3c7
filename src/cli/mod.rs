//! Command-line definitions of agent-run (agent-vault's flags live with its commands, in
//! `vault::cmd::flags`): clap derive structs only, no logic, no I/O.
//! `config` turns these into validated values (ripgrep's LowArgs/HiArgs split).

pub mod run;
