//! agent-vault: the embedded per-agent secret store (being built).
