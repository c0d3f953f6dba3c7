//! What the probes and `/metrics` ask of the store (issue 15): readiness, the number of
//! long-poll waiters, the database's size, and the metrics handle. Numbers only: nothing
//! here names an agent or a key.

use std::sync::Arc;

use super::Vault;
use crate::vault::metrics::Metrics;

impl Vault {
    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Long-poll requests waiting now.
    pub fn waiting(&self) -> usize {
        self.inner
            .max_waiters
            .saturating_sub(self.inner.waiters.available_permits())
    }

    /// Bytes of `vault.db` and its WAL on disk (0 for a file that cannot be read).
    pub fn db_size(&self) -> u64 {
        let wal = {
            let mut name = self.inner.db_path.clone().into_os_string();
            name.push("-wal");
            std::path::PathBuf::from(name)
        };
        [self.inner.db_path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Ready for traffic: not shutting down, and the database takes a write. The reason
    /// otherwise (for the 503's message and the log; no name, no value).
    pub async fn ready(&self) -> Result<(), String> {
        if *self.inner.shutdown.borrow() {
            return Err("shutting down".into());
        }
        self.inner
            .db
            .check_writable()
            .await
            .map_err(|err| format!("the database does not take a write: {err}"))
    }
}
