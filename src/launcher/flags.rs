//! The flags of `agent-run`: clap derive structs only. Every option also reads an
//! `AGENT_RUN_*` variable, because containers and systemd units set environment, not flags.
//! Validation and meaning live in `config`; the order of fields here is the order of `--help`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

/// Start a program with exactly its own secrets in its environment, and supervise it:
/// forward signals, reap zombies, pass its exit code through, and restart it when a
/// secret changes.
#[derive(Debug, Parser)]
#[command(
    name = "agent-run",
    version = crate::VERSION,
    after_help = "Exit codes: the child's own code; 128+N if it died of signal N; \
                  125 agent-run failed (message on stderr); 126 command not executable; \
                  127 command not found.\n\
                  List-valued variables: AGENT_RUN_ENV is newline-separated; the others are \
                  comma-separated.\n\n\
                  Example:\n  \
                  agent-run --store https://vault.internal:8377 \
                  --token-file /run/secrets/agent-token -- node agent.js"
)]
pub struct RunArgs {
    // ---- sources -------------------------------------------------------------------
    /// Read secrets from a dotenv file (repeatable; later files win). Watched for changes.
    #[arg(
        long = "env-file",
        value_name = "PATH",
        env = "AGENT_RUN_ENV_FILE",
        value_delimiter = ',',
        help_heading = "Sources"
    )]
    pub env_files: Vec<PathBuf>,

    /// Read secrets from a directory with one file per secret (Kubernetes secret volumes,
    /// Docker /run/secrets). Names starting with '.' are skipped; one trailing newline is
    /// stripped. Repeatable; read before the --env-file files, so those win.
    #[arg(
        long = "secrets-dir",
        value_name = "DIR",
        env = "AGENT_RUN_SECRETS_DIR",
        value_delimiter = ',',
        help_heading = "Sources"
    )]
    pub secrets_dirs: Vec<PathBuf>,

    /// Read secrets-dir entries that are symlinks to files outside the directory. Off by
    /// default: whoever can write the directory could otherwise make agent-run (often root)
    /// read any file. Links inside the directory (the kubelet's `..data` layout) always work.
    #[arg(long, env = "AGENT_RUN_ALLOW_EXTERNAL_LINKS", help_heading = "Sources")]
    pub allow_external_links: bool,

    /// Refuse (instead of warn about) env files and secret files that are writable by group
    /// or others or owned by a user other than root or agent-run's own, as ssh does for keys.
    #[arg(long, env = "AGENT_RUN_STRICT_PERMISSIONS", help_heading = "Sources")]
    pub strict_permissions: bool,

    /// The secret store: an agent-vault server (`https://HOST:PORT`), or the nodes of an
    /// OpenBao/Vault cluster (`openbao+https://…`, `vault+https://…`; repeat or
    /// comma-separate: on a failure or a sealed/standby answer the next is tried). Plain
    /// `http` only to loopback unless --allow-insecure-http.
    #[arg(
        long = "store",
        value_name = "URL",
        env = "AGENT_RUN_STORE",
        value_delimiter = ',',
        help_heading = "Store"
    )]
    pub stores: Vec<String>,

    /// The agent whose secrets to read, when the token may read more than one (several
    /// scopes, or every agent below a prefix: `secrets:read:production/**/*`). Names may be
    /// hierarchical: `--agent production/openai`.
    #[arg(
        long,
        value_name = "NAME",
        env = "AGENT_RUN_AGENT",
        help_heading = "Store"
    )]
    pub agent: Option<String>,

    /// Read the store token from this file (re-read when it changes or is refused) instead
    /// of AGENT_RUN_TOKEN (agent-vault) or BAO_TOKEN / VAULT_TOKEN (OpenBao, --auth token).
    #[arg(
        long,
        value_name = "PATH",
        env = "AGENT_RUN_TOKEN_FILE",
        help_heading = "Store"
    )]
    pub token_file: Option<PathBuf>,

    /// Keep the last good secrets in this file (encrypted with a key derived from the
    /// token, mode 0600) and start from it when the store is unreachable.
    #[arg(
        long,
        value_name = "PATH",
        env = "AGENT_RUN_FALLBACK",
        help_heading = "Store"
    )]
    pub fallback: Option<PathBuf>,

    /// How long to retry an unreachable store at start before giving up (exit 125).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        env = "AGENT_RUN_START_TIMEOUT",
        help_heading = "Store"
    )]
    pub start_timeout: String,

    /// Stop the child and exit 125 when the store rejects the token while running
    /// (by default the child keeps running on the secrets it has).
    #[arg(long, env = "AGENT_RUN_EXIT_ON_AUTH_FAILURE", help_heading = "Store")]
    pub exit_on_auth_failure: bool,

    /// Trust the CA certificates (PEM, one or a bundle) in this file for the store's TLS, in
    /// addition to the public roots; any store (agent-vault, OpenBao, Vault). Without it:
    /// OpenBao/Vault stores read BAO_CACERT, then VAULT_CACERT; agent-vault reads
    /// AGENT_VAULT_CA_CERT, then AGENT_VAULT_CACERT; then SSL_CERT_FILE for both.
    #[arg(
        long = "ca-cert",
        value_name = "PATH",
        env = "AGENT_RUN_CA_CERT",
        help_heading = "Store"
    )]
    pub ca_cert: Option<PathBuf>,

    /// The former name of --ca-cert, kept so existing setups keep working.
    #[arg(
        long = "store-ca",
        value_name = "PATH",
        env = "AGENT_RUN_STORE_CA",
        hide = true,
        conflicts_with = "ca_cert"
    )]
    pub store_ca: Option<PathBuf>,

    /// Send the store's requests (agent-vault and OpenBao/Vault) through this proxy
    /// (http:// or https://). Proxy variables of the environment (HTTP_PROXY, ALL_PROXY, …)
    /// are never used. Not used for loopback addresses; refused in front of a plain-http
    /// store: the token must cross the proxy inside a TLS tunnel.
    #[arg(
        long,
        value_name = "URL",
        env = "AGENT_RUN_PROXY",
        help_heading = "Store"
    )]
    pub proxy: Option<String>,

    /// Allow plain http to a store that is not on loopback (tokens and values then cross
    /// the network in clear).
    #[arg(long, env = "AGENT_RUN_ALLOW_INSECURE_HTTP", help_heading = "Store")]
    pub allow_insecure_http: bool,

    /// Print what would be injected (names, source, kind, masked preview, revision) and
    /// exit without starting anything.
    #[arg(long, help_heading = "Check")]
    pub check: bool,

    /// With --check: JSON instead of a table.
    #[arg(long, requires = "check", help_heading = "Check")]
    pub json: bool,

    // ---- for people at a terminal ------------------------------------------------------
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) and exit:
    /// `agent-run --completions bash > /etc/bash_completion.d/agent-run`. A flag, not a
    /// command word, because a word after agent-run's flags is the command to run. No
    /// variable, as --check has none: a variable left set would stop every start.
    #[arg(long, value_enum, value_name = "SHELL", help_heading = "Shell")]
    pub completions: Option<clap_complete::Shell>,

    // ---- OpenBao / Vault -----------------------------------------------------------
    /// KV path to read, as `bao kv get` takes it (secret/agents/support-bot); every key
    /// becomes a secret. Repeatable; later paths win. KV v1 and v2 are detected.
    #[arg(
        long = "path",
        value_name = "PATH",
        env = "AGENT_RUN_PATH",
        value_delimiter = ',',
        help_heading = "OpenBao / Vault"
    )]
    pub paths: Vec<String>,

    /// Namespace (X-Vault-Namespace) of the paths and the login.
    #[arg(
        long,
        value_name = "NS",
        env = "AGENT_RUN_NAMESPACE",
        help_heading = "OpenBao / Vault"
    )]
    pub namespace: Option<String>,

    /// How to obtain a token: token (--token-file, else BAO_TOKEN / VAULT_TOKEN), approle,
    /// jwt or kubernetes. Tokens are renewed at 2/3 of their TTL; logins are repeated when
    /// renewal is refused or the max TTL is near.
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = "token",
        env = "AGENT_RUN_AUTH",
        help_heading = "OpenBao / Vault"
    )]
    pub auth: AuthArg,

    /// --auth approle: file holding the role id.
    #[arg(
        long,
        value_name = "FILE",
        env = "AGENT_RUN_ROLE_ID_FILE",
        help_heading = "OpenBao / Vault"
    )]
    pub role_id_file: Option<PathBuf>,

    /// --auth approle: file holding the secret id (read at every login).
    #[arg(
        long,
        value_name = "FILE",
        env = "AGENT_RUN_SECRET_ID_FILE",
        help_heading = "OpenBao / Vault"
    )]
    pub secret_id_file: Option<PathBuf>,

    /// --auth jwt|kubernetes: file holding the JWT (kubernetes default: the pod's
    /// service-account token).
    #[arg(
        long,
        value_name = "FILE",
        env = "AGENT_RUN_JWT_FILE",
        help_heading = "OpenBao / Vault"
    )]
    pub jwt_file: Option<PathBuf>,

    /// --auth jwt|kubernetes: the role to log in as.
    #[arg(
        long,
        value_name = "ROLE",
        env = "AGENT_RUN_AUTH_ROLE",
        help_heading = "OpenBao / Vault"
    )]
    pub auth_role: Option<String>,

    /// Mount path of the auth method (default: approle, jwt or kubernetes).
    #[arg(
        long,
        value_name = "MOUNT",
        env = "AGENT_RUN_AUTH_MOUNT",
        help_heading = "OpenBao / Vault"
    )]
    pub auth_mount: Option<String>,

    /// How often each path's version is checked (±10% jitter).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        env = "AGENT_RUN_POLL_INTERVAL",
        help_heading = "OpenBao / Vault"
    )]
    pub poll_interval: String,

    // ---- environment ---------------------------------------------------------------
    /// Start the child from an empty environment instead of inheriting agent-run's.
    #[arg(long, env = "AGENT_RUN_PRISTINE", help_heading = "Environment")]
    pub pristine: bool,

    /// With --pristine: let inherited variables whose name matches GLOB through (repeatable).
    #[arg(
        long,
        value_name = "GLOB",
        env = "AGENT_RUN_KEEP",
        value_delimiter = ',',
        requires = "pristine",
        help_heading = "Environment"
    )]
    pub keep: Vec<String>,

    /// Let the inherited variable NAME through every deny list (repeatable). Credential
    /// variables (AGENT_VAULT_TOKEN, BAO_TOKEN, VAULT_TOKEN, ...) are otherwise removed
    /// from the child's environment and from agent-run's own.
    #[arg(
        long = "allow-env",
        value_name = "NAME",
        env = "AGENT_RUN_ALLOW_ENV",
        value_delimiter = ',',
        help_heading = "Environment"
    )]
    pub allow_env: Vec<String>,

    /// Set a variable: KEY=@SECRET injects secret SECRET as KEY, KEY=@ means KEY=@KEY,
    /// KEY=\@x is the literal "@x", KEY=value is a literal, and @{SECRET} inside a value is
    /// replaced by that secret ('AUTHORIZATION=Bearer @{STRIPE_KEY}'; \@{ is a literal @{)
    /// (repeatable; wins over everything).
    #[arg(
        long = "env",
        short = 'e',
        value_name = "KEY=SPEC",
        env = "AGENT_RUN_ENV",
        value_delimiter = '\n',
        help_heading = "Environment"
    )]
    pub env: Vec<String>,

    /// Inject only the secrets whose name matches GLOB (repeatable). Explicit --env
    /// references are not narrowed by it.
    #[arg(
        long,
        value_name = "GLOB",
        env = "AGENT_RUN_ONLY",
        value_delimiter = ',',
        help_heading = "Environment"
    )]
    pub only: Vec<String>,

    /// A --env reference to a secret no source has is skipped with a warning instead of
    /// being an error (a value with a missing @{SECRET} inside is skipped whole, never
    /// half-built).
    #[arg(long, env = "AGENT_RUN_ALLOW_MISSING", help_heading = "Environment")]
    pub allow_missing: bool,

    // ---- issue 13 (agent-run's side): requirements ---------------------------------
    /// Refuse to start (exit 125, naming every missing key) unless the child gets each KEY
    /// from a source or --env, with a value that is not empty or whitespace only
    /// (repeatable, comma list). Checked on every change too: a change that drops one keeps
    /// the current child running and logs an error. Inherited variables do not count.
    #[arg(
        long = "require",
        value_name = "KEY,KEY",
        env = "AGENT_RUN_REQUIRE",
        value_delimiter = ',',
        help_heading = "Environment"
    )]
    pub require: Vec<String>,

    /// Refuse to start (exit 125) when the sources give the child no variable at all (a
    /// token scoped to a misspelt agent, an empty file); checked on every change too.
    #[arg(long, env = "AGENT_RUN_REQUIRE_NONEMPTY", help_heading = "Environment")]
    pub require_nonempty: bool,

    // ---- issue 13 (agent-run's side): the peers' flags -----------------------------
    /// Inherited variables win over the sources (doppler's --preserve-env): without a list
    /// every inherited variable, with --preserve-env=NAME,NAME only those. --env still wins
    /// over everything. The variable takes true (all), false, or a name list.
    #[arg(
        long = "preserve-env",
        value_name = "NAME,NAME",
        env = "AGENT_RUN_PRESERVE_ENV",
        num_args = 0..=1,
        require_equals = true,
        value_delimiter = ',',
        default_missing_value = "true",
        help_heading = "Environment"
    )]
    pub preserve_env: Option<Vec<String>>,

    /// Prefix every key from the sources with PFX on injection (envconsul's prefix):
    /// API_KEY becomes PFX_API_KEY. --env @SECRET references and --only use the source's
    /// names; the dangerous-name deny list, --require and --preserve-env the final ones.
    #[arg(
        long,
        value_name = "PFX",
        env = "AGENT_RUN_PREFIX",
        help_heading = "Environment"
    )]
    pub prefix: Option<String>,

    /// Run this command line through /bin/sh -c (doppler's --command), for pipes, `&&` and
    /// redirections; instead of a command after `--`, not with one.
    #[arg(
        long = "command",
        value_name = "LINE",
        env = "AGENT_RUN_COMMAND",
        conflicts_with = "command",
        help_heading = "Supervision"
    )]
    pub shell_command: Option<String>,

    // ---- supervision ---------------------------------------------------------------
    /// Fetch, build the environment and exec the command in place of agent-run: no
    /// supervisor, no restart (CI steps, short jobs).
    #[arg(long, env = "AGENT_RUN_ONCE", help_heading = "Supervision")]
    pub once: bool,

    /// Forward signals to the child's whole process group instead of the child alone.
    #[arg(long, env = "AGENT_RUN_SIGNAL_GROUP", help_heading = "Supervision")]
    pub signal_group: bool,

    /// How long a child may take to exit after the stop signal before it gets SIGKILL.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        env = "AGENT_RUN_GRACE",
        help_heading = "Supervision"
    )]
    pub grace: String,

    /// Replace every injected secret value in the child's stdout and stderr, and its
    /// base64 and URL-encoded forms, by ****, also when a value is split across writes.
    /// Values shorter than 4 bytes are not masked. The output is held back only as long as
    /// a value could still complete: lines leave at their newline, and a tail without one
    /// after 20ms of quiet (a value written in two parts further apart is only partly
    /// masked). Inherited variables and --env literals are not masked. When stdin and
    /// stdout are a terminal, the child runs on a pty of its own (isatty, colours, resize,
    /// Ctrl-C, Ctrl-Z work); otherwise pipes. Not with --once.
    #[arg(
        long,
        env = "AGENT_RUN_MASK",
        conflicts_with = "once",
        help_heading = "Supervision"
    )]
    pub mask: bool,

    /// Signal that stops the child for a restart on change.
    #[arg(
        long,
        value_name = "SIG",
        default_value = "TERM",
        env = "AGENT_RUN_STOP_SIGNAL",
        help_heading = "Supervision"
    )]
    pub stop_signal: String,

    /// Do not give the child a parent-death signal (by default the child is SIGKILLed if
    /// agent-run dies, so no agent runs unsupervised on stale secrets).
    #[arg(long, env = "AGENT_RUN_NO_PDEATHSIG", help_heading = "Supervision")]
    pub no_pdeathsig: bool,

    /// What to do when a secret changes: restart (stop, then start with the new secrets),
    /// signal:SIG (send SIG, keep running), reload:SIG (write the new environment where
    /// the child reads it, see --reload-file, then send SIG), exit, or none.
    #[arg(
        long,
        value_name = "ACTION",
        default_value = "restart",
        env = "AGENT_RUN_ON_CHANGE",
        help_heading = "Supervision"
    )]
    pub on_change: String,

    /// Quiet time that coalesces a burst of changes into one restart [default: 100ms for
    /// file changes; the agent-vault watcher always waits 40ms without a newer revision
    /// (500ms at most) before it reports one].
    #[arg(
        long,
        value_name = "DURATION",
        env = "AGENT_RUN_DEBOUNCE",
        help_heading = "Supervision"
    )]
    pub debounce: Option<String>,

    /// Restart the child when it exits by itself (exponential backoff, capped at 30s).
    #[arg(
        long,
        value_enum,
        default_value = "no",
        env = "AGENT_RUN_RESTART",
        help_heading = "Supervision"
    )]
    pub restart: RestartArg,

    // ---- supervision: issue 16 (exit and signal translation, restarts) -------------
    /// Exit with code TO when the child's exit code is FROM (128+N for a death by signal
    /// N), as tini's -e: `143:0` makes a JVM stopped by SIGTERM a success. Repeatable.
    /// Never applies to agent-run's own 125/126/127.
    #[arg(
        long = "remap-exit",
        value_name = "FROM:TO",
        env = "AGENT_RUN_REMAP_EXIT",
        value_delimiter = ',',
        conflicts_with = "once",
        help_heading = "Supervision"
    )]
    pub remap_exit: Vec<String>,

    /// Forward signal FROM to the child as TO, as dumb-init's --rewrite: `TERM:QUIT` for a
    /// server that drains on QUIT. Repeatable. Only signals agent-run forwards; a restart
    /// still stops the child with --stop-signal.
    #[arg(
        long = "rewrite-signal",
        value_name = "FROM:TO",
        env = "AGENT_RUN_REWRITE_SIGNAL",
        value_delimiter = ',',
        conflicts_with = "once",
        help_heading = "Supervision"
    )]
    pub rewrite_signal: Vec<String>,

    /// Stop restarting a child that keeps failing: after N restarts by --restart (within
    /// --within, if given), agent-run exits with the child's last code and says why.
    /// Restarts on a secret change do not count.
    #[arg(
        long = "max-restarts",
        value_name = "N",
        env = "AGENT_RUN_MAX_RESTARTS",
        help_heading = "Supervision"
    )]
    pub max_restarts: Option<u32>,

    /// With --max-restarts: count only the restarts of this last stretch of time (e.g. 10m).
    #[arg(
        long = "within",
        value_name = "DURATION",
        env = "AGENT_RUN_RESTART_WITHIN",
        requires = "max_restarts",
        help_heading = "Supervision"
    )]
    pub within: Option<String>,

    /// After a secret change, wait a random delay in MIN-MAX (or 0-MAX when one duration
    /// is given) before the restart, so a fleet on one store does not restart at the same
    /// instant (envconsul's splay). A newer change meanwhile joins the same restart.
    #[arg(
        long = "restart-jitter",
        value_name = "RANGE",
        env = "AGENT_RUN_RESTART_JITTER",
        help_heading = "Supervision"
    )]
    pub restart_jitter: Option<String>,

    /// With --on-change reload:SIG: write the new environment to this file (0600, replaced
    /// atomically, removed when agent-run exits; its directory must be a tmpfs such as
    /// /dev/shm) instead of the memfd whose descriptor the child finds in
    /// AGENT_RUN_RELOAD_FD.
    #[arg(
        long = "reload-file",
        value_name = "PATH",
        env = "AGENT_RUN_RELOAD_FILE",
        help_heading = "Supervision"
    )]
    pub reload_file: Option<PathBuf>,

    /// Put the secrets in a file instead of the environment (as doppler run --mount): with
    /// --mount=PATH a 0600 file in a tmpfs directory (/dev/shm, /run), replaced atomically;
    /// with --mount alone an inherited memfd whose descriptor the child finds in
    /// AGENT_RUN_MOUNT_FD; with --mount-max-reads, PATH is a named pipe. Emptied or removed
    /// when the child exits, removed when agent-run exits. The child's environment then
    /// carries none of the secrets' values.
    #[arg(
        long = "mount",
        value_name = "PATH",
        env = "AGENT_RUN_MOUNT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "memfd",
        conflicts_with = "once",
        help_heading = "Supervision"
    )]
    pub mount: Option<PathBuf>,

    /// With --mount: dotenv (NAME="value" lines) or json (one object).
    #[arg(
        long = "mount-format",
        value_enum,
        value_name = "FORMAT",
        default_value = "dotenv",
        env = "AGENT_RUN_MOUNT_FORMAT",
        help_heading = "Supervision"
    )]
    pub mount_format: MountFormatArg,

    /// With --mount=PATH: allow a directory that is not a tmpfs (the secrets then land on
    /// a disk).
    #[arg(
        long = "mount-allow-disk",
        env = "AGENT_RUN_MOUNT_ALLOW_DISK",
        requires = "mount",
        help_heading = "Supervision"
    )]
    pub mount_allow_disk: bool,

    /// With --mount=PATH: PATH is a named pipe (0600, made fresh at each start) that hands
    /// the whole set to N readers at most, each once then EOF; then it is removed.
    #[arg(
        long = "mount-max-reads",
        value_name = "N",
        env = "AGENT_RUN_MOUNT_MAX_READS",
        help_heading = "Supervision"
    )]
    pub mount_max_reads: Option<u32>,

    // ---- logging -------------------------------------------------------------------
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "AGENT_RUN_LOG_FORMAT",
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv trace). Values are never logged.
    #[arg(short, long, action = ArgAction::Count, help_heading = "Logging")]
    pub verbose: u8,

    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose", help_heading = "Logging")]
    pub quiet: u8,

    /// Log level (error, warn, info, debug, trace, off); -v/-q take precedence.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "AGENT_RUN_LOG_LEVEL",
        hide_short_help = true,
        help_heading = "Logging"
    )]
    pub log_level: Option<String>,

    // ---- the command ---------------------------------------------------------------
    /// The command to run, and its arguments (after `--`).
    // No `allow_hyphen_values`: with it a mistyped flag (`--stor`) became the command and the
    // failure looked like "command not found". A `-` word before the command is a flag; a
    // command that really starts with `-` goes after `--`. Once the command has begun,
    // `trailing_var_arg` hands it every later word, flags included.
    #[arg(
        value_name = "CMD",
        required_unless_present_any = ["check", "completions", "shell_command"],
        trailing_var_arg = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartArg {
    /// Exit with the child's status.
    No,
    /// Restart when it fails (non-zero code or a signal other than HUP, INT, TERM, PIPE).
    OnFailure,
    /// Always restart.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MountFormatArg {
    /// NAME="value" lines.
    Dotenv,
    /// One JSON object.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// A token from --token-file, BAO_TOKEN or VAULT_TOKEN.
    Token,
    /// AppRole login with --role-id-file and --secret-id-file.
    Approle,
    /// JWT login with --auth-role and --jwt-file.
    Jwt,
    /// Kubernetes login with --auth-role and the service-account token.
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        RunArgs::command().debug_assert();
    }

    #[test]
    fn command_after_double_dash_keeps_its_own_flags() {
        let args = RunArgs::try_parse_from(["agent-run", "--once", "--", "ls", "-l", "--env", "x"])
            .unwrap();
        assert!(args.once);
        assert_eq!(args.command, ["ls", "-l", "--env", "x"]);
        assert!(args.env.is_empty());
    }

    #[test]
    fn mistyped_flag_is_a_usage_error_not_the_command() {
        for typo in ["--stor", "--chek", "--gracee"] {
            let err = RunArgs::try_parse_from(["agent-run", typo, "x", "--", "true"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{typo}"
            );
        }
    }

    #[test]
    fn words_after_the_command_belong_to_it() {
        let args = RunArgs::try_parse_from(["agent-run", "ls", "-la", "--once"]).unwrap();
        assert_eq!(args.command, ["ls", "-la", "--once"]);
        assert!(!args.once);
        let args = RunArgs::try_parse_from(["agent-run", "--", "-weird"]).unwrap();
        assert_eq!(args.command, ["-weird"]);
    }

    #[test]
    fn keep_requires_pristine() {
        assert!(RunArgs::try_parse_from(["agent-run", "--keep", "PATH", "--", "true"]).is_err());
        assert!(RunArgs::try_parse_from([
            "agent-run",
            "--pristine",
            "--keep",
            "PATH",
            "--",
            "true"
        ])
        .is_ok());
    }
}
