//! Integration tests of agent-vault: every rule of issue 5, against the real binary on
//! loopback. Each test owns its server and data directory; synchronisation is by polling
//! with deadlines, never by sleeping. One test target with a module per concern; the
//! harness in `tests/common/` is shared with `tests/launcher/`.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod api;
mod backup;
mod cli;
mod data_dir;
mod empty_value;
mod logs;
mod mcp;
mod metrics;
mod migrate;
mod ops;
mod portal;
mod runtime;
mod server;
mod tls;
mod tokens;
mod transit;
