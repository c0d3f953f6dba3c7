//! Issue 13 item 6, agent-vault's side: `agent-vault tls generate` makes a private CA and a
//! server certificate that `serve` and the admin CLI use; the CLI's TLS failures that no
//! retry can fix say what to do (a certificate from a plain `openssl req -x509`, `https://`
//! to a plain-HTTP server, an untrusted CA); `--ca-cert` reads `AGENT_VAULT_CA_CERT` (and
//! still the old `AGENT_VAULT_CACERT`).

use crate::common::vault::{
    file_mode, openssl_self_signed, start_vault, start_vault_with, tls_generate, vault_cmd,
};
use crate::common::{run, run_ok, Dir};

fn tls_args<'a>(cert: &'a std::path::Path, key: &'a std::path::Path) -> [&'a str; 4] {
    [
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]
}

#[test]
fn tls_generate_makes_a_ca_and_a_server_certificate_that_serve_and_the_cli_use() {
    let dir = Dir::new("tls-generate");
    let (ca, cert, key) = tls_generate(&dir, "certs");
    let certs = dir.join("certs");
    assert_eq!(file_mode(&certs), 0o700);
    assert_eq!(file_mode(&key), 0o600);
    assert_eq!(file_mode(&certs.join("ca.key")), 0o600);
    // openssl agrees: signed by the CA, not a CA itself, for the names given.
    let mut verify = std::process::Command::new("openssl");
    verify.args(["verify", "-CAfile"]).arg(&ca).arg(&cert);
    assert!(run_ok(&mut verify, None).contains("OK"));
    let mut text = std::process::Command::new("openssl");
    text.args(["x509", "-noout", "-text", "-in"]).arg(&cert);
    let text = run_ok(&mut text, None);
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");

    let vault = start_vault_with(&tls_args(&cert, &key));
    assert!(vault.addr.starts_with("https://"), "{}", vault.addr);
    let ca = ca.to_str().expect("utf-8");
    // The flag, the new variable and the old variable all trust the CA.
    let out = vault.cli_run(&["agents", "list", "--ca-cert", ca], None);
    assert!(out.status.success(), "{out:?}");
    for variable in ["AGENT_VAULT_CA_CERT", "AGENT_VAULT_CACERT"] {
        let mut cmd = vault.cli();
        cmd.env(variable, ca).args(["agents", "list"]);
        let out = run(&mut cmd, None);
        assert!(out.status.success(), "{variable}: {out:?}");
    }

    // Nothing is overwritten; a bad name is a usage error.
    let before = std::fs::read(&key).expect("key.pem");
    let mut again = vault_cmd();
    again
        .args(["tls", "generate", "--name", "localhost", "--out"])
        .arg(&certs);
    let again = run(&mut again, None);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("ca.pem exists"));
    assert_eq!(std::fs::read(&key).expect("key.pem"), before);
    let mut bad = vault_cmd();
    bad.args(["tls", "generate", "--name", "bad name", "--out"])
        .arg(dir.join("other"));
    let bad = run(&mut bad, None);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(!dir.join("other/key.pem").exists());
}

#[test]
fn the_clis_tls_failures_say_how_to_fix_them() {
    let dir = Dir::new("tls-errors");
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // A certificate from a plain `openssl req -x509`, even trusted: CaUsedAsEndEntity, and
    // the way to make a usable one.
    let (x509, x509_key) = openssl_self_signed(&dir);
    let vault = start_vault_with(&tls_args(&x509, &x509_key));
    let out = vault.cli_run(
        &["agents", "list", "--ca-cert", x509.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("CaUsedAsEndEntity")
            && stderr(&out).contains("agent-vault tls generate"),
        "{}",
        stderr(&out)
    );
    drop(vault);

    // A private CA the CLI was not told about: pass --ca-cert.
    let (_, cert, key) = tls_generate(&dir, "certs");
    let tls = start_vault_with(&tls_args(&cert, &key));
    let out = tls.cli_run(&["agents", "list"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("UnknownIssuer") && stderr(&out).contains("--ca-cert"),
        "{}",
        stderr(&out)
    );
    // http:// to the TLS server: it does not answer in plain HTTP.
    let mut cmd = tls.cli();
    cmd.env("AGENT_VAULT_ADDR", tls.addr.replace("https://", "http://"))
        .args(["agents", "list"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("try https://"), "{}", stderr(&out));

    // https:// to a plain-HTTP server.
    let plain = start_vault();
    let mut cmd = plain.cli();
    cmd.env(
        "AGENT_VAULT_ADDR",
        plain.addr.replace("http://", "https://"),
    )
    .args(["agents", "list"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("the server does not speak TLS (is it http://?)"),
        "{}",
        stderr(&out)
    );
}
