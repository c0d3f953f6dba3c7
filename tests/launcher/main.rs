//! agent-run, end to end: the real binary with real children, real signals and real
//! sources (env files, secrets directories, a real agent-vault, a real OpenBao), each
//! process-level behaviour also as PID 1 of a new PID namespace. One test target with a
//! module per concern; the harness in `tests/common/` is shared with `tests/vault/`.

#[path = "../common/mod.rs"]
mod common;

mod completions;
mod credentials;
mod docs;
mod files;
mod logs;
mod mask;
mod memory;
mod mount;
mod names;
mod openbao;
mod packaging;
mod peers;
mod pid1;
mod reads;
mod references;
mod reload;
mod remap;
mod require;
mod restarts;
mod store;
mod terminal;
mod tls;
mod usage;
