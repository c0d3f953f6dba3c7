//! `agent-vault serve`: the server's flags turned into validated settings
//! ([`ServeSettings::from_args`], ripgrep's HiArgs step: it reads the TLS files and applies
//! the plain-HTTP rule before anything binds), then [`serve`]: bind, install SIGTERM/SIGINT
//! handling, and hand both to `vault::run_with`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::flags::ServeArgs;
use super::{runtime, Error, Result};
use crate::vault::{self, ServeLimits, Vault, VaultConfig};

/// Everything `serve` needs, validated.
pub struct ServeSettings {
    pub vault: VaultConfig,
    pub listen: SocketAddr,
    /// `None`: plain HTTP, allowed on loopback or with `--allow-insecure-http`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: ServeLimits,
}

impl ServeSettings {
    pub fn from_args(args: ServeArgs) -> Result<ServeSettings> {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_insecure_http {
            return Err(Error::Usage(format!(
                "refusing plain HTTP on non-loopback address {}: pass --tls-cert and --tls-key, \
                 or --allow-insecure-http if a TLS proxy fronts this server",
                args.listen
            )));
        }
        let mut config = VaultConfig::new(args.data.data_dir);
        config.master_key_transit = args.key.transit();
        config.master_key_file = args.key.master_key_file;
        config.keep_versions = args.keep_versions;
        config.max_waiters = args.max_waiters;
        Ok(ServeSettings {
            vault: config,
            listen: args.listen,
            tls,
            limits: ServeLimits::new(
                usize::try_from(args.max_connections).unwrap_or(vault::DEFAULT_MAX_CONNECTIONS),
            ),
        })
    }
}

/// The server's TLS: the certificate chain and key (PEM), ring provider, HTTP/1.1 only.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Failed(format!("reading TLS certificate {}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Failed(format!("parsing TLS certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Failed(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Failed(format!("reading TLS private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Failed(format!("configuring TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Failed(format!(
                "TLS certificate and key do not form a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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

/// Opens the store, binds, serves until SIGTERM or SIGINT, and flushes the audit queue.
pub fn serve(settings: ServeSettings) -> Result<()> {
    raise_nofile_limit();
    let rt = runtime()?;
    rt.block_on(async move {
        let data_dir = settings.vault.data_dir.clone();
        let vault = Vault::open(settings.vault)
            .await
            .map_err(Error::store(format!("opening {}", data_dir.display())))?;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(Error::io(format!("binding {}", settings.listen)))?;
        let local = listener
            .local_addr()
            .map_err(Error::io("reading the bound address"))?;
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let address = format!("{scheme}://{local}");
        super::logging::notice(
            &format!("agent-vault listening on {address}"),
            "agent-vault listening",
            &[("address", &address)],
        );
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
        vault::run_with(listener, settings.tls, vault, settings.limits, shutdown)
            .await
            .map_err(Error::store("serving"))?;
        super::logging::notice("agent-vault stopped", "agent-vault stopped", &[]);
        Ok(())
    })
}
