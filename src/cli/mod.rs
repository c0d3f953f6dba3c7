//! Command-line definitions for both binaries: clap derive structs only, no logic, no I/O.
//! `config` turns these into validated values (ripgrep's LowArgs/HiArgs split).

pub mod run;
pub mod vault;
