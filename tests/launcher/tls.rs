//! Issue 13 item 6, agent-run's side: a store set up with `agent-vault tls generate` works
//! with `--ca-cert` (and `AGENT_VAULT_CA_CERT`, the admin CLI's variable); failures that no
//! retry can heal end agent-run at start with exit 125 and the cause, without waiting out
//! `--start-timeout` (1 h here; `run` gives up after 30 s, so a retrying agent-run fails the
//! test): a certificate from a plain `openssl req -x509`, an untrusted CA, `https://` to a
//! plain-HTTP server and `http://` to a TLS one, a rejected token (401) and an admin token
//! (403).

use crate::common::vault::{openssl_self_signed, start_vault, start_vault_with, tls_generate};
use crate::common::{agent_run, Dir, Mode};

fn tls_args<'a>(cert: &'a std::path::Path, key: &'a std::path::Path) -> [&'a str; 4] {
    [
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]
}

/// agent-run on `store` with `token` and `extra` flags, `--start-timeout 1h`, running
/// `echo $API_KEY`.
fn run_on(dir: &Dir, store: &str, token: &str, extra: &[&str]) -> crate::common::Outcome {
    let mut args = vec!["--store", store, "--start-timeout", "1h"];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", "echo $API_KEY"]);
    agent_run(Mode::Plain, &args)
        .env("AGENT_RUN_TOKEN", token)
        .run(dir)
}

#[test]
fn a_store_with_generated_certificates_works_with_ca_cert() {
    let dir = Dir::new("tls-generated");
    let (ca, cert, key) = tls_generate(&dir, "certs");
    let vault = start_vault_with(&tls_args(&cert, &key));
    let ca = ca.to_str().expect("utf-8");
    // Set up through the admin CLI, trusting the generated CA by its variable.
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = vault.cli();
        cmd.env("AGENT_VAULT_CA_CERT", ca).args(args);
        crate::common::run_ok(&mut cmd, stdin).trim().to_owned()
    };
    cli(
        &["secrets", "set", "tls-bot", "API_KEY", "--stdin"],
        Some(b"value-over-generated-tls"),
    );
    let token = cli(
        &["tokens", "issue", "--scope", "secrets:read:tls-bot/*"],
        None,
    );
    let out = run_on(&dir, &vault.addr, &token, &["--ca-cert", ca]);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "value-over-generated-tls");
    // The admin CLI's variable names the same file for agent-run.
    let out = agent_run(
        Mode::Plain,
        ["--store", &vault.addr, "--", "sh", "-c", "echo $API_KEY"],
    )
    .env("AGENT_RUN_TOKEN", &token)
    .env("AGENT_VAULT_CA_CERT", ca)
    .run(&dir);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "value-over-generated-tls");
}

#[test]
fn errors_that_cannot_heal_fail_at_start_with_their_cause() {
    let dir = Dir::new("tls-fail-fast");
    let check = |out: crate::common::Outcome, needles: &[&str]| {
        out.assert_code(125);
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{needle}:\n{}",
                out.description
            );
        }
        assert!(
            !out.stderr.contains("retrying until --start-timeout"),
            "{}",
            out.description
        );
    };

    // A certificate from a plain `openssl req -x509`, trusted with --ca-cert.
    let (x509, x509_key) = openssl_self_signed(&dir);
    // (The handshake fails before any token is looked at, so none is needed.)
    let token = "avt_000000000000_handshakefirst";
    let vault = start_vault_with(&tls_args(&x509, &x509_key));
    let x509 = x509.to_str().expect("utf-8");
    check(
        run_on(&dir, &vault.addr, token, &["--ca-cert", x509]),
        &["CaUsedAsEndEntity", "agent-vault tls generate"],
    );
    drop(vault);

    // A private CA agent-run was not told about.
    let (_, cert, key) = tls_generate(&dir, "certs");
    let tls = start_vault_with(&tls_args(&cert, &key));
    check(
        run_on(&dir, &tls.addr, token, &[]),
        &["UnknownIssuer", "--ca-cert"],
    );
    // http:// to the TLS server.
    check(
        run_on(&dir, &tls.addr.replace("https://", "http://"), token, &[]),
        &["try https://"],
    );

    // https:// to a plain-HTTP server.
    let plain = start_vault();
    plain.set("bot", "API_KEY", "value-never-read-3");
    let token = plain.issue(&["secrets:read:bot/*"], None).1;
    check(
        run_on(
            &dir,
            &plain.addr.replace("http://", "https://"),
            &token,
            &[],
        ),
        &["the server does not speak TLS (is it http://?)"],
    );
    // A token the store rejects (401), and an admin token (403).
    check(
        run_on(&dir, &plain.addr, "avt_000000000000_notatoken", &[]),
        &["rejected the token"],
    );
    check(
        run_on(&dir, &plain.addr, &plain.admin, &[]),
        &["this is an admin token"],
    );
}

/// The same for an OpenBao store: when every address fails with a TLS problem (here a
/// private CA agent-run was not told about), agent-run stops at start with the cause.
#[test]
fn an_openbao_store_with_an_untrusted_ca_fails_at_start() {
    use crate::common::openbao::{Bao, ROOT};
    let dir = Dir::new("tls-openbao");
    let bao = Bao::dev_tls(&dir);
    let out = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/tls",
            "--start-timeout",
            "1h",
            "--",
            "true",
        ],
    )
    .env("BAO_TOKEN", ROOT)
    .env("BAO_CACERT", "")
    .env("VAULT_CACERT", "")
    .env("SSL_CERT_FILE", "")
    .run(&dir);
    out.assert_code(125);
    assert!(
        out.stderr.contains("UnknownIssuer") && out.stderr.contains("--ca-cert"),
        "{}",
        out.description
    );
}
