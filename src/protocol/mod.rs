//! agent-vault's wire protocol, shared by both programs: the server (`vault`) answers it,
//! the admin CLI and agent-run's store source speak it. Nothing here knows the server's
//! rules or the launcher's.
//!
//! - `wire`: the serde request/response types, [`Kind`], the one masked-preview rule
//!   ([`preview`]) and the stable error codes.
//! - `transport`: which addresses may be spoken to in plain http; the one reqwest setup
//!   (no proxy from the environment, `--proxy` off loopback only, extra CAs).
//! - `ident`: agent names (hierarchical: `production/openai`), key names, and the one rule
//!   mapping a key that is not an environment name to one (`api-key` → `API_KEY`).
//! - `names`: the one deny list of environment names that change how a child starts
//!   (refused by the store and by agent-run's injection).
//! - `tls`: TLS failures that cannot heal (a plain-HTTP server, a CA certificate as the
//!   server's own, an untrusted issuer, ...) told with their fix; both programs fail fast on
//!   them.
//! - `client`: the one HTTP client of the store API, with its own error type.
//!
//! Architecture invariant: `protocol` imports neither `vault` nor `source` nor the
//! launcher; arrows point into it.

pub mod client;
pub mod ident;
pub mod names;
pub mod tls;
pub mod transport;
pub mod wire;

pub use client::{Client, Error};
pub use wire::{preview, Kind};
