//! `agent-vault tls generate`: the TLS set-up a user can do in one command. A private CA
//! and a server certificate signed by it (rustls, and so both programs, refuse a CA
//! certificate as a server's own, which is what a plain `openssl req -x509` makes), with
//! the names and addresses clients use as subject alternative names. ECDSA P-256 keys,
//! written 0600 into a directory created 0700; nothing existing is overwritten, and a
//! failure part-way removes what this run wrote.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

use super::flags::{TlsCommand, TlsGenerateArgs};
use super::{Error, Result};

/// The files `generate` writes, with their modes: certificates are public, keys are not.
const FILES: [(&str, u32); 4] = [
    ("ca.pem", 0o644),
    ("ca.key", 0o600),
    ("cert.pem", 0o644),
    ("key.pem", 0o600),
];

pub(super) fn run(cmd: TlsCommand) -> Result<()> {
    match cmd {
        TlsCommand::Generate(args) => generate(&args),
    }
}

/// The subject alternative names, checked: each an IP address or a DNS name (a leading
/// `*.` allowed).
fn checked_names(names: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::Usage(
            "--name needs at least one host name or IP address".into(),
        ));
    }
    for name in &names {
        if name.parse::<IpAddr>().is_ok() {
            continue;
        }
        let host = name.strip_prefix("*.").unwrap_or(name);
        let valid = host.len() <= 253
            && host.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err(Error::Usage(format!(
                "--name {name:?} is neither an IP address nor a DNS name"
            )));
        }
    }
    Ok(names)
}

fn cert_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |err| Error::Failed(format!("making the {what}: {err}"))
}

/// The CA and server certificate as PEM: (ca.pem, ca.key, cert.pem, key.pem).
fn make(names: &[String], days: u32) -> Result<[Zeroizing<String>; 4]> {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().map_err(cert_error("CA key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_error("CA"))?;
    ca.distinguished_name
        .push(DnType::CommonName, "agent-vault private CA");
    // It signs server certificates and nothing below them.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = now + time::Duration::days(i64::from(days) * 10);
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(cert_error("CA certificate"))?;

    let key = KeyPair::generate().map_err(cert_error("server key"))?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(cert_error("certificate"))?;
    leaf.distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = now + time::Duration::days(i64::from(days));
    let issuer = Issuer::from_params(&ca, &ca_key);
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(cert_error("server certificate"))?;
    Ok([
        Zeroizing::new(ca_cert.pem()),
        Zeroizing::new(ca_key.serialize_pem()),
        Zeroizing::new(cert.pem()),
        Zeroizing::new(key.serialize_pem()),
    ])
}

/// Creates `dir` 0700 if it does not exist; refuses when any file to write exists.
fn prepare(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    for (name, _) in FILES {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(Error::Usage(format!(
                "{} exists; refusing to overwrite it (choose another --out, or move the old \
                 files away first)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn write_new(path: &Path, mode: u32, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn generate(args: &TlsGenerateArgs) -> Result<()> {
    let names = checked_names(&args.names)?;
    prepare(&args.out)?;
    let pems = make(&names, args.days)?;
    let mut written: Vec<PathBuf> = Vec::new();
    for ((name, mode), pem) in FILES.iter().zip(pems.iter()) {
        let path = args.out.join(name);
        if let Err(source) = write_new(&path, *mode, pem) {
            for done in &written {
                let _ = std::fs::remove_file(done);
            }
            let _ = std::fs::remove_file(&path);
            return Err(Error::Io {
                what: format!("writing {}", path.display()),
                source,
            });
        }
        written.push(path);
    }
    let dir = args.out.display();
    println!("{dir}/ca.pem    the private CA's certificate: give it to clients (--ca-cert, AGENT_VAULT_CA_CERT, AGENT_RUN_CA_CERT)");
    println!("{dir}/ca.key    the CA's key (0600): keep it offline, or delete it");
    println!(
        "{dir}/cert.pem  the server certificate for {}",
        names.join(", ")
    );
    println!("{dir}/key.pem   the server key (0600)");
    println!();
    println!("agent-vault serve --tls-cert {dir}/cert.pem --tls-key {dir}/key.pem --listen ADDR");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::checked_names;

    #[test]
    fn names_are_hosts_or_addresses() {
        let ok = |list: &[&str]| {
            checked_names(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_ok()
        };
        assert!(ok(&["vault.internal", "127.0.0.1", "::1", "*.example.com"]));
        assert!(!ok(&["bad name"]));
        assert!(!ok(&["-x.example"]));
        assert!(!ok(&[""]));
    }
}
