//! agent-run, the launcher. Data flows flags → config → sources → env → spawn → supervise;
//! `run` is the checklist that wires them together. ARCHITECTURE.md has the code map.

pub mod check;
pub mod config;
pub mod env;
pub mod flags;
pub mod run;
pub mod signals;
pub mod spawn;
pub mod supervise;

pub use run::{run, Error};
