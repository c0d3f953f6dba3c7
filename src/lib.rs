//! agent-run hands each agent exactly its own secrets. This crate holds both programs:
//! the launcher (`agent-run`) and the store it talks to by default (`agent-vault`).
//! Read ARCHITECTURE.md first; this is the short code map.
//!
//! **The launcher**, in data-flow order:
//!
//! * [`cli`] — clap structs for both binaries. Plain data, no I/O.
//! * [`config`] — turns flags and `AGENT_RUN_*` variables into a validated [`config::Config`].
//!   Reads files, never the network.
//! * [`source`] — the [`source::SecretSource`] trait: `fetch` the current secret set, `watch` for
//!   changes. [`source::file`] reads dotenv files and secrets directories; [`source::store`]
//!   reads an agent-vault store (with [`source::fallback`], its encrypted last-good copy);
//!   [`source::openbao`] reads KV secrets from OpenBao or HashiCorp Vault.
//! * [`env`] — composes the parent environment, the secrets and the `--env` mappings into an
//!   [`env::EnvBlock`]: one sized, locked, wiped-on-drop buffer plus its `envp` array.
//! * [`spawn`] — prepares argv and the exec candidates and starts the child (via [`sys`]).
//! * [`supervise`] — the single event loop: forward signals, reap zombies, restart on rotation.
//! * [`launcher`] — the checklist that wires the above together, as tini's `main` does.
//! * [`check`] — `--check`: what the child would get, masked, without starting it.
//!
//! **The store**: [`vault`] (`api → tokens → service → db / crypto`, `service → audit`).
//!
//! **Between them**: [`protocol`], agent-vault's wire types, `Kind`, the preview rule and the
//! one HTTP client of its API (used by the admin CLI and [`source::store`]).
//!
//! Cross-cutting: [`exit`] is the one table of exit codes; [`sys`] is the only module with
//! `unsafe` (syscalls between fork and exec, page locking, the wiping allocator).

pub mod check;
pub mod cli;
pub mod config;
pub mod env;
pub mod exit;
pub mod launcher;
pub mod protocol;
pub mod signals;
pub mod source;
pub mod spawn;
pub mod supervise;
pub mod sys;
pub mod vault;

pub use launcher::run;
