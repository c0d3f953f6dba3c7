//! `agent-vault`: parse flags, set up logging, dispatch, and turn the outcome into an exit code.
//!
//! Exit codes (the whole table): 0 success; 1 the request or the server failed (API error,
//! unreachable server, I/O), with the cause on stderr; 2 usage (bad flags, no value source,
//! no token, plain HTTP on a non-loopback address without --allow-insecure-http).
//!
//! `serve` is the only command that starts a tokio runtime for long: it binds the listener,
//! installs SIGTERM/SIGINT handling and hands both to `agent_run::vault::run`. Admin commands
//! use the blocking client and never start a runtime (reqwest's blocking client brings its own).

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Wipes every heap block before it is freed (see `agent_run::sys::WipeOnFree`): request
/// bodies, hyper's read buffers, serde's scratch strings and run-time responses all held
/// values at some point, and most of them are not ours to zeroize.
#[global_allocator]
static ALLOCATOR: agent_run::sys::WipeOnFree = agent_run::sys::WipeOnFree;

use agent_run::cli::vault::{
    AuditArgs, Command, ConnectArgs, InitArgs, SecretsCommand, ServeArgs, TokensCommand, ValueArgs,
    VarsCommand, VaultCli,
};
use agent_run::protocol::client::Client;
use agent_run::protocol::wire::{
    AuditQuery, ImportEntry, ImportRequest, Kind, PutSecretRequest, SecretMeta, TokenRequest, Ttl,
};
use agent_run::vault::{self, Vault, VaultConfig};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// An error that is the user's invocation, not the server's: exit code 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

fn main() -> ExitCode {
    // Before anything else, while this is the only thread: take the master key out of the
    // environment and make this process undumpable (it holds the key and values).
    vault::crypto::take_env_key();
    harden();
    let cli = match VaultCli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and exit 0; real errors exit 2.
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    init_tracing(cli.verbose);
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent-vault: {err:#}");
            if err.downcast_ref::<Usage>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// As agent-run does for itself: no core dump, and `PR_SET_DUMPABLE 0`, which also makes
/// `/proc/PID/mem`, `environ` and friends root-only and refuses `ptrace` by the same user.
fn harden() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("agent-vault: warning: cannot mark the process undumpable: {e}");
    }
    match getrlimit(Resource::RLIMIT_CORE) {
        Ok((_, hard)) => {
            if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
                eprintln!("agent-vault: warning: cannot disable core dumps: {e}");
            }
        }
        Err(e) => eprintln!("agent-vault: warning: cannot read the core limit: {e}"),
    }
}

/// stderr, default `warn`; each -v raises it, and `RUST_LOG=<level>` works as a plain level.
fn init_tracing(verbose: u8) {
    use tracing::Level;
    let level = match verbose {
        0 => match std::env::var("RUST_LOG")
            .ok()
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("trace") => Level::TRACE,
            Some("debug") => Level::DEBUG,
            Some("info") => Level::INFO,
            Some("error") => Level::ERROR,
            _ => Level::WARN,
        },
        1 => Level::INFO,
        2 => Level::DEBUG,
        _ => Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init(args),
        Command::Serve(args) => serve(args),
        Command::Secrets(cmd) => secrets(cmd),
        Command::Vars(cmd) => vars(cmd),
        Command::Tokens(cmd) => tokens(cmd),
        Command::Audit(args) => audit(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init(args: InitArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let token = runtime()?
        .block_on(vault::service::init(&dir))
        .with_context(|| format!("initializing {}", dir.display()))?;
    match args.admin_token_file {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(file, "{}", token.expose_secret())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("agent-vault: admin token written to {}", path.display());
        }
        None => {
            println!("{}", token.expose_secret());
            eprintln!(
                "agent-vault: this admin token is shown once; store it now (AGENT_VAULT_TOKEN)"
            );
        }
    }
    Ok(())
}

/// Raise the soft open-files limit to the hard one: every long-poll waiter is a socket.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            tracing::warn!(soft, hard, "could not raise the open files limit");
        }
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn serve(args: ServeArgs) -> Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_insecure_http {
        return Err(usage(format!(
            "refusing plain HTTP on non-loopback address {}: pass --tls-cert and --tls-key, \
             or --allow-insecure-http if a TLS proxy fronts this server",
            args.listen
        )));
    }
    raise_nofile_limit();
    let rt = runtime()?;
    rt.block_on(async move {
        let mut config = VaultConfig::new(args.data.data_dir.clone());
        config.keep_versions = args.keep_versions;
        config.max_waiters = args.max_waiters;
        let vault = Vault::open(config)
            .await
            .with_context(|| format!("opening {}", args.data.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("agent-vault listening on {scheme}://{local}");
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let limits = vault::ServeLimits::new(
            usize::try_from(args.max_connections).unwrap_or(vault::DEFAULT_MAX_CONNECTIONS),
        );
        vault::run_with(listener, tls, vault, limits, shutdown)
            .await
            .context("serving")?;
        eprintln!("agent-vault stopped");
        Ok(())
    })
}

// ---- admin commands ---------------------------------------------------------------------

fn connect(args: &ConnectArgs) -> Result<Client> {
    // Before the token is even read: a refused address gets nothing.
    agent_run::protocol::transport::check_transport(&args.addr, args.allow_insecure_http)
        .map_err(|e| usage(e.to_string()))?;
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => SecretString::from(token.trim()),
        (None, Some(path)) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading token file {}", path.display()))?,
            );
            SecretString::from(text.lines().next().unwrap_or("").trim())
        }
        (None, None) => {
            return Err(usage(
                "no token: set AGENT_VAULT_TOKEN, or pass --token-file (or --token)",
            ))
        }
    };
    Ok(Client::new(
        &args.addr,
        Some(token),
        args.ca_cert.as_deref(),
    )?)
}

/// The value to store: --value, --stdin, or a masked prompt on the terminal.
fn read_value(args: &ValueArgs, key: &str) -> Result<SecretString> {
    if let Some(value) = &args.value {
        return Ok(SecretString::from(value.as_str()));
    }
    if args.stdin {
        let mut buf = Zeroizing::new(Vec::new());
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the value from stdin")?;
        let mut end = buf.len();
        if buf[..end].ends_with(b"\n") {
            end -= 1;
            if buf[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        let text = std::str::from_utf8(&buf[..end])
            .map_err(|_| anyhow!("the value on stdin is not UTF-8"))?;
        return Ok(SecretString::from(text));
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "no value given: pass --stdin to read it from standard input (or --value), \
             or run in a terminal for a masked prompt",
        ));
    }
    let value = Zeroizing::new(
        rpassword::prompt_password(format!("Value for {key} (input hidden): "))
            .context("reading the value from the terminal")?,
    );
    Ok(SecretString::from(value.as_str()))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns, header in capitals.
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn or_dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_string()
}

fn print_entries(entries: &[SecretMeta]) {
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.key.clone(),
                e.kind.as_str().to_string(),
                e.version.to_string(),
                e.value.clone().unwrap_or_else(|| e.preview.clone()),
                e.updated_at.clone(),
                or_dash(e.last_read_at.as_deref()),
                or_dash(Some(&e.description)),
            ]
        })
        .collect();
    print_table(
        &[
            "KEY",
            "KIND",
            "VERSION",
            "VALUE",
            "UPDATED",
            "LAST READ",
            "DESCRIPTION",
        ],
        rows,
    );
}

fn print_entry(e: &SecretMeta) {
    if let Some(agent) = &e.agent {
        println!("agent:        {agent}");
    }
    println!("key:          {}", e.key);
    println!("kind:         {}", e.kind.as_str());
    println!("version:      {}", e.version);
    match &e.value {
        Some(value) => println!("value:        {value}"),
        None => println!("preview:      {}", e.preview),
    }
    println!("description:  {}", or_dash(Some(&e.description)));
    println!("created:      {}", e.created_at);
    println!("updated:      {}", e.updated_at);
    println!("last read:    {}", or_dash(e.last_read_at.as_deref()));
}

fn put_request(
    value: Option<SecretString>,
    description: Option<String>,
    plain: Option<bool>,
) -> PutSecretRequest {
    PutSecretRequest {
        value,
        description,
        kind: plain.map(|plain| if plain { Kind::Plain } else { Kind::Secret }),
    }
}

fn report_put(
    json: bool,
    what: &str,
    response: &agent_run::protocol::wire::PutResponse,
) -> Result<()> {
    if json {
        return print_json(response);
    }
    let verb = match (response.created, response.changed) {
        (true, _) => "created",
        (false, true) => "updated",
        (false, false) => "unchanged",
    };
    println!("{verb} {what} (version {})", response.secret.version);
    Ok(())
}

/// Parse a .env file with agent-run's own literal reader (no `$` substitution), through the
/// same safe file read. Errors name the file, line, column and reason, never the line's
/// text (it may hold a value). A key given twice keeps its last value, as a shell would.
fn read_env_file(path: &Path) -> Result<Vec<ImportEntry>> {
    use agent_run::source::{dotenv, secret_file::Checks};
    let entries = dotenv::read_file(path, &Checks::default())?;
    Ok(entries
        .into_iter()
        .map(|entry| ImportEntry {
            key: entry.name,
            value: entry.value,
        })
        .collect())
}

fn secrets(cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::Set {
            agent,
            key,
            value,
            description,
            plain,
            connect: c,
        } => {
            let client = connect(&c)?;
            let value = read_value(&value, &key)?;
            let response = client.put_secret(
                &agent,
                &key,
                &put_request(Some(value), description, Some(plain)),
            )?;
            report_put(c.json, &format!("{agent}/{key}"), &response)
        }
        SecretsCommand::Update {
            agent,
            key,
            value,
            description,
            connect: c,
        } => {
            let client = connect(&c)?;
            // Update means "it exists": fail clearly instead of creating a new entry.
            client.describe_secret(&agent, &key)?;
            let new_value = if value.value.is_none() && !value.stdin && description.is_some() {
                None
            } else {
                Some(read_value(&value, &key)?)
            };
            let response =
                client.put_secret(&agent, &key, &put_request(new_value, description, None))?;
            report_put(c.json, &format!("{agent}/{key}"), &response)
        }
        SecretsCommand::List {
            agent,
            values,
            connect: c,
        } => {
            let list = connect(&c)?.list_secrets(&agent, values)?;
            if c.json {
                return print_json(&list);
            }
            print_entries(&list.secrets);
            Ok(())
        }
        SecretsCommand::Describe {
            agent,
            key,
            connect: c,
        } => {
            let entry = connect(&c)?.describe_secret(&agent, &key)?;
            if c.json {
                return print_json(&entry);
            }
            print_entry(&entry);
            Ok(())
        }
        SecretsCommand::Delete {
            agent,
            key,
            connect: c,
        } => {
            connect(&c)?.delete_secret(&agent, &key)?;
            if c.json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            println!("deleted {agent}/{key}");
            Ok(())
        }
        SecretsCommand::Versions {
            agent,
            key,
            connect: c,
        } => {
            let list = connect(&c)?.secret_versions(&agent, &key)?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.kind.as_str().to_string(),
                        v.created_at.clone(),
                        if v.current { "*".into() } else { String::new() },
                    ]
                })
                .collect();
            print_table(&["VERSION", "KIND", "CREATED", "CURRENT"], rows);
            Ok(())
        }
        SecretsCommand::Rollback {
            agent,
            key,
            to,
            connect: c,
        } => {
            let response = connect(&c)?.rollback_secret(&agent, &key, to)?;
            if c.json {
                return print_json(&response);
            }
            println!(
                "rolled back {agent}/{key} to the value of version {} (now version {})",
                response.rolled_back_to, response.secret.version
            );
            Ok(())
        }
        SecretsCommand::Import {
            agent,
            file,
            plain,
            plain_keys,
            overwrite,
            connect: c,
        } => {
            let client = connect(&c)?;
            let entries = read_env_file(&file)?;
            let summary = client.import(
                &agent,
                &ImportRequest {
                    entries,
                    plain,
                    plain_keys,
                    overwrite,
                },
            )?;
            if c.json {
                return print_json(&summary);
            }
            let names = |list: &[String]| {
                if list.is_empty() {
                    "-".to_string()
                } else {
                    list.join(", ")
                }
            };
            println!(
                "created ({}): {}",
                summary.created.len(),
                names(&summary.created)
            );
            println!(
                "skipped ({}): {}",
                summary.skipped.len(),
                names(&summary.skipped)
            );
            println!(
                "overwritten ({}): {}",
                summary.overwritten.len(),
                names(&summary.overwritten)
            );
            Ok(())
        }
    }
}

fn vars(cmd: VarsCommand) -> Result<()> {
    match cmd {
        VarsCommand::Set {
            key,
            value,
            description,
            plain,
            connect: c,
        } => {
            let client = connect(&c)?;
            let value = read_value(&value, &key)?;
            let response =
                client.put_var(&key, &put_request(Some(value), description, Some(plain)))?;
            report_put(c.json, &format!("project variable {key}"), &response)
        }
        VarsCommand::List { values, connect: c } => {
            let list = connect(&c)?.list_vars(values)?;
            if c.json {
                return print_json(&list);
            }
            print_entries(&list.vars);
            Ok(())
        }
        VarsCommand::Delete { key, connect: c } => {
            connect(&c)?.delete_var(&key)?;
            if c.json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            println!("deleted project variable {key}");
            Ok(())
        }
    }
}

/// `tokens issue --offline`: open the data directory as the server would (its lock proves
/// no server runs on it; the master key must decrypt its values) and write the token there.
fn issue_offline(dir: &Path, req: TokenRequest) -> Result<agent_run::protocol::wire::IssuedToken> {
    runtime()?.block_on(async {
        let vault = Vault::open(VaultConfig::new(dir.to_path_buf()))
            .await
            .with_context(|| {
                format!(
                    "opening {} offline (stop the server on it first; the master key is needed)",
                    dir.display()
                )
            })?;
        let issued = vault.issue_token_offline(req).await;
        vault.flush_audit().await;
        Ok(issued?)
    })
}

fn tokens(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Issue {
            scopes,
            ttl,
            description,
            offline,
            data_dir,
            connect: c,
        } => {
            let req = TokenRequest {
                scopes,
                ttl: ttl.map(Ttl::Text),
                description,
            };
            let issued = match data_dir.filter(|_| offline) {
                Some(dir) => issue_offline(&dir, req)?,
                None => connect(&c)?.issue_token(&req)?,
            };
            if c.json {
                return print_json(&issued);
            }
            println!("{}", issued.token.expose_secret());
            eprintln!(
                "agent-vault: issued token {} (expires {}); it is shown once",
                issued.id,
                issued.expires_at.as_deref().unwrap_or("never")
            );
            Ok(())
        }
        TokensCommand::List { connect: c } => {
            let list = connect(&c)?.list_tokens()?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.scopes.join(","),
                        t.created_at.clone(),
                        or_dash(t.expires_at.as_deref()),
                        or_dash(t.revoked_at.as_deref()),
                        or_dash(Some(&t.description)),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "REVOKED",
                    "DESCRIPTION",
                ],
                rows,
            );
            Ok(())
        }
        TokensCommand::Revoke { id, connect: c } => {
            connect(&c)?.revoke_token(&id)?;
            if c.json {
                return print_json(&serde_json::json!({"revoked": id}));
            }
            println!("revoked token {id}");
            Ok(())
        }
    }
}

/// `--since 1h` / `30m` / `2d` means that long ago; anything else (RFC 3339, unix seconds)
/// goes to the server as written.
fn since_to_absolute(since: &str) -> String {
    match humantime::parse_duration(since.trim()) {
        Ok(ago) => {
            humantime::format_rfc3339_seconds(std::time::SystemTime::now() - ago).to_string()
        }
        Err(_) => since.to_owned(),
    }
}

fn audit(args: AuditArgs) -> Result<()> {
    let list = connect(&args.connect)?.audit(&AuditQuery {
        agent: args.agent,
        since: args.since.as_deref().map(since_to_absolute),
        limit: Some(args.limit),
    })?;
    if args.connect.json {
        return print_json(&list);
    }
    let rows = list
        .records
        .iter()
        .map(|r| {
            vec![
                r.at.clone(),
                or_dash(r.token_id.as_deref()),
                r.action.clone(),
                or_dash(r.agent.as_deref()),
                if r.keys.is_empty() {
                    "-".into()
                } else {
                    r.keys.join(",")
                },
                or_dash(r.remote.as_deref()),
                r.outcome.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "AT", "TOKEN", "ACTION", "AGENT", "KEYS", "REMOTE", "OUTCOME",
        ],
        rows,
    );
    Ok(())
}
