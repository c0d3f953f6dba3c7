//! Flags of `agent-vault`: clap derive structs only, no logic and no I/O (ripgrep's
//! LowArgs; `serve::ServeSettings` is the validated HiArgs step). Credentials (`--token`,
//! `--value`) are read straight into a `SecretString`, whose `Debug` is redacted, so the
//! `Debug` these structs derive never shows one.
//!
//! Every flag documents itself; the order of fields is the order in `--help`. Connection flags
//! are global so they can come before or after the subcommand, and each reads its
//! `AGENT_VAULT_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// A credential flag, straight into a `SecretString` (redacted `Debug`, wiped on drop).
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// The embedded per-agent secret store: HTTP server and admin command line.
///
/// Exit codes: 0 success; 1 the server or the request failed (message on stderr); 2 usage
/// error.
#[derive(Debug, Parser)]
#[command(
    name = "agent-vault",
    version = crate::VERSION,
    propagate_version = true,
    after_help = "Example (the first steps on one machine):\n  \
                  agent-vault init --data-dir /var/lib/agent-vault --admin-token-file admin-token\n  \
                  agent-vault serve --data-dir /var/lib/agent-vault &\n  \
                  AGENT_VAULT_TOKEN_FILE=admin-token agent-vault secrets set support-bot OPENAI_API_KEY"
)]
pub struct VaultCli {
    /// Log more to stderr: -v info, -vv debug, -vvv trace (default: warnings only). Values
    /// and tokens are never logged at any level.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log format on stderr: `json` makes every line a JSON object, including the
    /// "listening" notice and a fatal error (issue 13 item 7).
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "AGENT_VAULT_LOG_FORMAT",
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How agent-vault writes its log lines (and its fatal error) on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory (0700), the master key (0600) and the database, and print
    /// the first admin token once.
    #[command(
        after_help = "Example:\n  agent-vault init --data-dir /var/lib/agent-vault --admin-token-file admin-token\n  BAO_TOKEN=... agent-vault init --master-key openbao-transit://bao.internal:8200/transit/agent-vault   # the key kept by OpenBao Transit"
    )]
    Init(InitArgs),
    /// Run the HTTP server.
    #[command(
        after_help = "Example:\n  agent-vault serve --data-dir /var/lib/agent-vault --listen 0.0.0.0:8377 --tls-cert cert.pem --tls-key key.pem"
    )]
    Serve(ServeArgs),
    /// Manage one agent's secrets and plain variables.
    #[command(
        after_help = "Example:\n  agent-vault secrets set support-bot OPENAI_API_KEY --stdin < key.txt"
    )]
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage project-wide variables, shared by every agent.
    #[command(after_help = "Example:\n  agent-vault vars set REGION --plain --value eu-west-1")]
    #[command(subcommand)]
    Vars(VarsCommand),
    /// Issue, list and revoke access tokens.
    #[command(
        after_help = "Example:\n  agent-vault tokens issue --scope 'secrets:read:support-bot/*' --ttl 30d --description 'support-bot, prod'"
    )]
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  \
                  agent-vault completions bash > /etc/bash_completion.d/agent-vault\n  \
                  agent-vault completions zsh > \"${fpath[1]}/_agent-vault\"\n  \
                  agent-vault completions fish > ~/.config/fish/completions/agent-vault.fish")]
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Show the audit trail.
    #[command(after_help = "Example:\n  agent-vault audit --agent support-bot --since 1h")]
    Audit(AuditArgs),
    /// The agents the store knows (those with entries of their own).
    #[command(subcommand, after_help = "Example:\n  agent-vault agents list")]
    Agents(AgentsCommand),
    /// Make TLS certificates for `serve`.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-vault tls generate --name vault.internal,10.0.0.5 --out /etc/agent-vault/tls"
    )]
    Tls(TlsCommand),
    /// Serve the Model Context Protocol on stdin/stdout: an assistant manages entries and
    /// tokens without seeing a value or a token.
    ///
    /// JSON-RPC 2.0, one message a line. The tools list agents, entries (masked previews),
    /// project variables, tokens and the audit trail, set plain variables and revoke tokens.
    /// Setting a secret and issuing a token are refused, with the terminal command to run
    /// instead. Every call goes through the HTTP API with this command's token, so its scopes
    /// and the audit apply; give it a token of its own (`tokens issue --scope admin
    /// --description mcp`) and the audit tells its actions apart.
    #[command(
        after_help = "Example (an MCP client's server entry, e.g. in claude_desktop_config.json):\n  \
                  {\"mcpServers\": {\"agent-vault\": {\n    \
                  \"command\": \"agent-vault\", \"args\": [\"mcp\"],\n    \
                  \"env\": {\"AGENT_VAULT_ADDR\": \"http://127.0.0.1:8377\",\n            \
                  \"AGENT_VAULT_TOKEN_FILE\": \"/home/me/.config/agent-vault/mcp.token\"}}}}\n\
                  Example (by hand):\n  \
                  echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}' | agent-vault mcp --token-file mcp.token"
    )]
    Mcp(McpArgs),
    // ---- operations (issue 15) ----
    /// Copy the database to a new file (0600), consistently, while the server runs and takes
    /// writes (SQLite's online backup API). The master key is never inside a backup: keep
    /// the key apart from it.
    #[command(
        after_help = "Example:\n  agent-vault backup --data-dir /var/lib/agent-vault /backups/vault-$(date +%F).db"
    )]
    Backup(BackupArgs),
    /// Restore a backup into a new or empty data directory, after checking that the master
    /// key opens it. Start `serve` on the directory afterwards with the same key.
    #[command(
        after_help = "Example:\n  agent-vault restore /backups/vault-2026-01-31.db --data-dir /var/lib/agent-vault --master-key-file /etc/agent-vault/master-key"
    )]
    Restore(RestoreArgs),
    /// Re-wrap every data key under a new master key, in one transaction (the server must be
    /// stopped). A crash leaves the store opened by exactly one of the two keys; afterwards
    /// only the new key opens it.
    #[command(
        after_help = "Example:\n  agent-vault rekey --data-dir /var/lib/agent-vault --master-key-file /etc/agent-vault/master-key --new-master-key-file /etc/agent-vault/master-key.new\n  agent-vault rekey --master-key-file /etc/agent-vault/master-key --new-master-key openbao-transit://bao.internal:8200/transit/agent-vault   # to OpenBao Transit"
    )]
    Rekey(RekeyArgs),
    /// Move the store elsewhere (offline: the server stopped, the master key at hand).
    #[command(
        subcommand,
        after_help = "Example:\n  BAO_TOKEN=... agent-vault migrate openbao --address https://bao.internal:8200 --mount secret"
    )]
    Migrate(MigrateCommand),
}

/// `agent-vault mcp` (issue 14 item 5): only how to reach the store. `--json` is hidden: the
/// protocol is JSON whatever it says.
#[derive(Debug, Args)]
#[command(mut_arg("json", |arg| arg.hide(true)))]
pub struct McpArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `agent-vault tls …` (issue 13 item 6).
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a private CA and a server certificate signed by it, for `serve --tls-cert
    /// DIR/cert.pem --tls-key DIR/key.pem`; clients trust DIR/ca.pem with --ca-cert.
    #[command(
        after_help = "Example:\n  agent-vault tls generate --name vault.internal,10.0.0.5 --out /etc/agent-vault/tls\n  agent-vault serve --tls-cert /etc/agent-vault/tls/cert.pem --tls-key /etc/agent-vault/tls/key.pem"
    )]
    Generate(TlsGenerateArgs),
}

#[derive(Debug, Args)]
pub struct TlsGenerateArgs {
    /// Names clients reach the server by: DNS names and IP addresses, comma separated or
    /// repeated (the certificate's subject alternative names).
    #[arg(
        long = "name",
        required = true,
        value_delimiter = ',',
        env = "AGENT_VAULT_TLS_NAME",
        value_name = "HOST[,IP...]"
    )]
    pub names: Vec<String>,
    /// Directory for ca.pem, ca.key, cert.pem and key.pem (created 0700; keys are written
    /// 0600; an existing file is never overwritten).
    #[arg(long, env = "AGENT_VAULT_TLS_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// Days the server certificate is valid; the CA is valid ten times as long.
    #[arg(long, env = "AGENT_VAULT_TLS_DAYS", default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=3650), value_name = "DAYS")]
    pub days: u32,
}

/// `agent-vault agents …` (issue 13 item 2).
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents with entries: entry counts and the last run-time read. Project variables
    /// are not counted as an agent's entries (their count is shown apart).
    #[command(after_help = "Example:\n  agent-vault agents list --json")]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Copy every agent's environment to OpenBao KV v2 at MOUNT/PREFIX/AGENT, write each
    /// agent's read-only policy `agent-AGENT`, and print the agent-run command line each
    /// agent needs next. Values never pass through the terminal. Audited.
    #[command(
        after_help = "Example:\n  BAO_TOKEN=... agent-vault migrate openbao --data-dir /var/lib/agent-vault --address https://bao.internal:8200 --mount secret"
    )]
    Openbao(MigrateOpenbaoArgs),
}

#[derive(Debug, Args)]
pub struct MigrateOpenbaoArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub key: MasterKeyArgs,
    /// OpenBao (or Vault) address, e.g. https://bao.internal:8200.
    #[arg(long, env = "AGENT_VAULT_BAO_ADDR", value_name = "URL")]
    pub address: String,
    /// The KV v2 mount.
    #[arg(
        long,
        env = "AGENT_VAULT_BAO_MOUNT",
        default_value = "secret",
        value_name = "MOUNT"
    )]
    pub mount: String,
    /// The path inside the mount under which each agent gets PREFIX/AGENT.
    #[arg(
        long,
        env = "AGENT_VAULT_BAO_PREFIX",
        default_value = "agents",
        value_name = "PREFIX"
    )]
    pub prefix: String,
    /// Read the OpenBao token (one that may write the mount and policies) from this file;
    /// without it, BAO_TOKEN (or VAULT_TOKEN).
    #[arg(long, env = "AGENT_VAULT_BAO_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Extra PEM CA certificate to trust for OpenBao's TLS.
    #[arg(long, env = "AGENT_VAULT_BAO_CACERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Allow plain http:// to a non-loopback OpenBao (values would cross the network in
    /// clear).
    #[arg(long, env = "AGENT_VAULT_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The current key (see `--master-key-file` precedence).
    #[command(flatten)]
    pub key: MasterKeyArgs,
    /// The new master key: used if the file exists (mode 0600 or stricter), else created
    /// (0600) with a random key.
    #[arg(
        long,
        env = "AGENT_VAULT_NEW_MASTER_KEY_FILE",
        value_name = "FILE",
        required_unless_present = "new_master_key",
        conflicts_with = "new_master_key"
    )]
    pub new_master_key_file: Option<PathBuf>,
    /// The new master key in OpenBao Transit (openbao-transit://HOST:PORT/MOUNT/KEY, as
    /// --master-key): a new random key, wrapped by this Transit key into
    /// DATA_DIR/master.key.transit.
    #[arg(long, env = "AGENT_VAULT_NEW_MASTER_KEY_URL", value_name = "URL")]
    pub new_master_key: Option<crate::vault::transit::TransitKey>,
    /// The OpenBao token for --new-master-key (first line of FILE); without it, the token of
    /// --master-key-token-file, BAO_TOKEN or VAULT_TOKEN.
    #[arg(
        long,
        env = "AGENT_VAULT_NEW_MASTER_KEY_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub new_master_key_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new backup file (refused if it exists).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file made by `agent-vault backup`.
    #[arg(value_name = "PATH")]
    pub backup: PathBuf,
    /// The data directory to restore into: new, or existing and empty.
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub key: MasterKeyArgs,
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory holding master.key and vault.db. Default: $XDG_DATA_HOME/agent-vault, else
    /// $HOME/.local/share/agent-vault (init creates it 0700).
    #[arg(
        long,
        env = "AGENT_VAULT_DATA_DIR",
        value_name = "DIR",
        default_value = super::paths::DEFAULT_DATA_DIR,
        value_parser = super::paths::data_dir
    )]
    pub data_dir: PathBuf,
}

/// Where the master key is (issue 15): outside the data directory, so a copy of the data
/// (a backup, a disk image) holds no key.
#[derive(Debug, Args)]
pub struct MasterKeyArgs {
    /// Read the master key (64 hex digits or base64 of 32 bytes; mode 0600 or stricter) from
    /// this file instead of DATA_DIR/master.key. With `init`, the file is used if it exists
    /// and created (0600) if not. Precedence: this flag, then AGENT_VAULT_MASTER_KEY, then
    /// the systemd credential $CREDENTIALS_DIRECTORY/master-key, then DATA_DIR/master.key.
    #[arg(long, env = "AGENT_VAULT_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Keep the master key in OpenBao Transit: openbao-transit://HOST:PORT/MOUNT/KEY (https;
    /// add ?tls=off for plain http to a loopback OpenBao; BAO_CACERT adds a CA). `init` wraps
    /// a new random key with that Transit key and keeps only the ciphertext, in
    /// DATA_DIR/master.key.transit; every start has Transit decrypt it. Nothing on disk opens
    /// the store without OpenBao.
    #[arg(
        long,
        env = "AGENT_VAULT_MASTER_KEY_URL",
        value_name = "URL",
        conflicts_with = "master_key_file"
    )]
    pub master_key: Option<crate::vault::transit::TransitKey>,
    /// The OpenBao token for --master-key (first line of FILE); without it BAO_TOKEN, then
    /// VAULT_TOKEN (both taken out of agent-vault's environment at start). Its policy needs
    /// `update` on MOUNT/encrypt/KEY (init, rekey) and MOUNT/decrypt/KEY.
    #[arg(long, env = "AGENT_VAULT_MASTER_KEY_TOKEN_FILE", value_name = "FILE")]
    pub master_key_token_file: Option<PathBuf>,
}

impl MasterKeyArgs {
    /// The Transit key of `--master-key`, with the token file it is reached with.
    pub fn transit(&self) -> Option<crate::vault::transit::TransitKey> {
        self.master_key.clone().map(|mut key| {
            key.token_file = self.master_key_token_file.clone();
            key
        })
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub key: MasterKeyArgs,
    /// Write the admin token to this file (created with mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub key: MasterKeyArgs,
    /// Address to listen on. Port 0 picks a free port; the real address is printed on stderr.
    #[arg(
        long,
        env = "AGENT_VAULT_LISTEN",
        default_value = "127.0.0.1:8377",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM). Requires --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Requires --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address. Tokens and values then cross the network in
    /// clear; use only behind a TLS-terminating proxy on a trusted link.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Versions kept per key (older ones are deleted on each change).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    pub keep_versions: u32,
    /// Most long-poll waiters at once; more get 503 `too_many_waiters`.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_waiters: usize,
    /// Most open connections at once. A quarter of them at most (and 128) may come from one
    /// address while still sending their request head, half (and 1024) from all addresses.
    #[arg(long, default_value_t = 12_000, value_parser = clap::value_parser!(u64).range(8..=1_000_000), value_name = "N")]
    pub max_connections: u64,
}

/// How to reach the server, for every admin command.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server base URL.
    #[arg(
        long,
        env = "AGENT_VAULT_ADDR",
        default_value = "http://127.0.0.1:8377",
        value_name = "URL"
    )]
    pub addr: String,
    /// Admin (or scoped) token. Prefer the environment variable or --token-file: a flag shows
    /// in `ps` and shell history.
    #[arg(
        long,
        env = "AGENT_VAULT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    pub token: Option<SecretString>,
    /// Read the token from this file (first line).
    #[arg(
        long,
        env = "AGENT_VAULT_TOKEN_FILE",
        conflicts_with = "token",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Extra PEM root certificate to trust (a private CA, such as the ca.pem of `agent-vault
    /// tls generate`). The old variable AGENT_VAULT_CACERT is still read when this is unset.
    #[arg(long, env = "AGENT_VAULT_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON (for scripts) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Allow plain `http://` to a server that is not on loopback. The admin token and every
    /// value sent then cross the network in clear; without it the command refuses before
    /// connecting.
    #[arg(long, env = "AGENT_VAULT_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

/// Where a new value comes from. Without --value or --stdin a masked prompt asks for it.
#[derive(Debug, Args)]
pub struct ValueArgs {
    /// The value itself. WARNING: visible in `ps` and shell history; prefer --stdin or the
    /// masked prompt.
    #[arg(long, conflicts_with = "stdin", value_name = "VALUE", value_parser = secret)]
    pub value: Option<SecretString>,
    /// Read the value from standard input (one trailing newline is removed).
    #[arg(long)]
    pub stdin: bool,
}

/// What `secrets set` and `vars set` write.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub value: ValueArgs,
    /// What the entry is for (shown in list and describe).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Store as a plain (readable) variable instead of a write-only secret.
    #[arg(long)]
    pub plain: bool,
    /// Create it even though the name changes how the child starts (PATH, LD_*, NODE_OPTIONS…).
    #[arg(long)]
    pub allow_dangerous_name: bool,
    /// Store an empty (or whitespace-only) value, which is refused otherwise.
    #[arg(long, env = "AGENT_VAULT_ALLOW_EMPTY_VALUE")]
    pub allow_empty_value: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create or replace a secret (or, with --plain, a plain variable).
    #[command(
        after_help = "Example:\n  agent-vault secrets set support-bot OPENAI_API_KEY --stdin < key.txt"
    )]
    Set {
        agent: String,
        key: String,
        #[command(flatten)]
        set: SetArgs,
    },
    /// List an agent's entries: metadata and masked previews.
    #[command(after_help = "Example:\n  agent-vault secrets list support-bot")]
    List {
        agent: String,
        /// Also show plain variables' values (secrets stay masked).
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one entry's metadata and masked preview.
    #[command(after_help = "Example:\n  agent-vault secrets describe support-bot OPENAI_API_KEY")]
    Describe {
        agent: String,
        key: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Change an existing entry's value and/or description. With only --description the
    /// value is kept; with neither a masked prompt asks for the new value.
    #[command(
        after_help = "Example:\n  agent-vault secrets update support-bot OPENAI_API_KEY --description 'rotated monthly'"
    )]
    Update {
        agent: String,
        key: String,
        #[command(flatten)]
        value: ValueArgs,
        /// New description.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete an entry and all its versions.
    #[command(after_help = "Example:\n  agent-vault secrets delete support-bot OLD_API_KEY")]
    Delete {
        agent: String,
        key: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the kept versions of an entry (metadata only).
    #[command(after_help = "Example:\n  agent-vault secrets versions support-bot OPENAI_API_KEY")]
    Versions {
        agent: String,
        key: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Make a new version holding an older version's value (default: the previous one).
    #[command(
        after_help = "Example:\n  agent-vault secrets rollback support-bot OPENAI_API_KEY --to 3"
    )]
    Rollback {
        agent: String,
        key: String,
        /// Version to restore.
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Import a .env file: all-or-nothing; blank values and existing keys are skipped.
    #[command(
        after_help = "Example:\n  agent-vault secrets import support-bot --file .env --plain-keys REGION,LOG_LEVEL"
    )]
    Import {
        agent: String,
        /// The .env file (dotenv syntax: quotes, escapes, `export`).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Import every entry as a plain variable.
        #[arg(long)]
        plain: bool,
        /// Import these keys as plain variables (comma separated).
        #[arg(long, value_delimiter = ',', value_name = "K1,K2")]
        plain_keys: Vec<String>,
        /// Replace keys that already exist instead of skipping them.
        #[arg(long)]
        overwrite: bool,
        /// Import names that change how the child starts (PATH, LD_*, NODE_OPTIONS…) too.
        #[arg(long)]
        allow_dangerous_name: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VarsCommand {
    /// Create or replace a project-wide variable (a secret unless --plain).
    #[command(after_help = "Example:\n  agent-vault vars set REGION --plain --value eu-west-1")]
    Set {
        key: String,
        #[command(flatten)]
        set: SetArgs,
    },
    /// List project-wide variables.
    #[command(after_help = "Example:\n  agent-vault vars list --values")]
    List {
        /// Also show plain variables' values.
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a project-wide variable.
    #[command(after_help = "Example:\n  agent-vault vars delete REGION")]
    Delete {
        key: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

// Parsed once per run: the size of `Issue` (its master key flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token; it is printed once and never shown again.
    #[command(
        after_help = "Example:\n  agent-vault tokens issue --scope 'secrets:read:support-bot/*' --ttl 30d > support-bot.token"
    )]
    Issue {
        /// A scope: `admin`, `secrets:read:AGENT/PATTERN` (run-time reads) or
        /// `secrets:write:AGENT/PATTERN` (manage). Repeat for several.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Lifetime such as 90s, 1h, 30d. Without it the token does not expire.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// What the token is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Issue read scopes for an agent that has no entries of its own yet (refused
        /// otherwise, with the close agent names that exist: a misspelt agent would read
        /// nothing).
        #[arg(long, env = "AGENT_VAULT_ALLOW_EMPTY")]
        allow_empty: bool,
        /// Recovery when no admin token is left: write the token straight into the data
        /// directory (`--data-dir`, or its default; needs its master key, and the server
        /// stopped). Audited as `token.issue.offline`.
        #[arg(long)]
        offline: bool,
        /// The data directory, with `--offline`. Default: $XDG_DATA_HOME/agent-vault, else
        /// $HOME/.local/share/agent-vault.
        #[arg(
            long,
            env = "AGENT_VAULT_DATA_DIR",
            value_name = "DIR",
            value_parser = super::paths::data_dir
        )]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        key: MasterKeyArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List tokens (ids and metadata; never the tokens).
    #[command(after_help = "Example:\n  agent-vault tokens list")]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a token by id; it stops working at once.
    #[command(
        after_help = "Example:\n  agent-vault tokens revoke ID   # the id from `agent-vault tokens list`"
    )]
    Revoke {
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this agent.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Only records at or after this time: a duration ago (`1h`, `30m`, `2d`), RFC 3339, or
    /// unix seconds.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Newest records to show.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: u32,
    /// Keep running and print new records as they are written, like `tail -f` (polls the
    /// server once a second from the last record seen); Ctrl-C or SIGTERM ends it with exit
    /// 0. With --json, one JSON record per line.
    #[arg(long, short = 'f', env = "AGENT_VAULT_AUDIT_FOLLOW")]
    pub follow: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        VaultCli::command().debug_assert();
    }

    #[test]
    fn credentials_are_redacted_in_debug() {
        let cli = VaultCli::try_parse_from([
            "agent-vault",
            "secrets",
            "set",
            "a",
            "K",
            "--value",
            "hunter2-value",
            "--token",
            "avt_hunter2_token",
        ])
        .expect("valid flags");
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
