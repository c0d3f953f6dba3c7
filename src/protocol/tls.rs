//! TLS failures that cannot heal by retrying, told in terms a person can act on. Both
//! programs reach the store through rustls (via reqwest, or `source::store_poll` directly);
//! when a handshake fails because of what the server presents or speaks, retrying for
//! `--start-timeout` only hides the cause. [`diagnose`] finds the rustls error in a failed
//! request's cause chain and names the fix: `https://` to a plain-HTTP server, a CA
//! certificate used as the server's own (what a plain `openssl req -x509` makes), an issuer
//! nobody told us to trust, a name or date the certificate does not cover, a protocol the
//! two sides do not share.

use std::error::Error as StdError;
use std::fmt;

use rustls::{CertificateError, Error as TlsError};

/// Why a TLS connection cannot work until someone changes a certificate, a flag or an
/// address. Its `Display` is the whole explanation, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The server answered the TLS hello with something that is not TLS (an HTTP answer).
    NotTls,
    /// Plain `http://` to a server that answered in something that is not HTTP (TLS).
    SpeaksTls,
    /// The server presents a CA certificate as its own (`CaUsedAsEndEntity`).
    CaAsServerCertificate,
    /// Signed by a CA that is not trusted here (or self-signed).
    UnknownIssuer,
    /// The certificate does not name the host in the address.
    WrongName(String),
    /// Expired or not yet valid.
    OutOfDate(String),
    /// Any other refusal of the certificate.
    BadCertificate(String),
    /// The two sides share no protocol version, cipher suite or other parameter, or the
    /// server refused the handshake with an alert.
    Handshake(String),
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GENERATE: &str = "`agent-vault tls generate --name HOST[,IP...] --out DIR` makes \
             a private CA (DIR/ca.pem, trusted with --ca-cert) and a server certificate \
             signed by it (DIR/cert.pem, DIR/key.pem for `agent-vault serve --tls-cert \
             --tls-key`)";
        match self {
            TlsProblem::NotTls => f.write_str(
                "the server does not speak TLS (is it http://?): it answered the TLS \
                 handshake in plain text",
            ),
            TlsProblem::SpeaksTls => f.write_str(
                "the server did not answer in plain HTTP (does it speak TLS? try https://)",
            ),
            TlsProblem::CaAsServerCertificate => write!(
                f,
                "the server's certificate is a CA certificate (CaUsedAsEndEntity), as a plain \
                 `openssl req -x509` makes one; TLS clients refuse a CA certificate as a \
                 server's own even when it is trusted with --ca-cert. {GENERATE}"
            ),
            TlsProblem::UnknownIssuer => write!(
                f,
                "the server's certificate is not signed by a CA trusted here (UnknownIssuer): \
                 pass the CA's certificate with --ca-cert. {GENERATE}"
            ),
            TlsProblem::WrongName(detail) => write!(
                f,
                "the server's certificate is not valid for the host in the address ({detail}); \
                 connect by a name it holds, or make one for this name: {GENERATE}"
            ),
            TlsProblem::OutOfDate(detail) => write!(
                f,
                "the server's certificate is out of date ({detail}); renew it: {GENERATE}"
            ),
            TlsProblem::BadCertificate(detail) => {
                write!(
                    f,
                    "the server's certificate was refused ({detail}). {GENERATE}"
                )
            }
            TlsProblem::Handshake(detail) => write!(
                f,
                "the TLS handshake failed ({detail}): the server and this client share no TLS \
                 protocol version or parameters, or the server refused the connection"
            ),
        }
    }
}

/// The rustls error somewhere in `error`'s cause chain. `std::io::Error` hides the error it
/// wraps from `source()` (it returns the inner error's source), so each `io::Error` on the
/// way is opened with `get_ref` too.
fn find_rustls<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = find_rustls(inner) {
                    return Some(tls);
                }
            }
        }
        next = cause.source();
    }
    None
}

/// What a rustls error means for the user, if it cannot heal by itself. Timeouts, resets
/// and refused connections are not TLS problems (`None`): the server may come back.
pub fn classify(error: &TlsError) -> Option<TlsProblem> {
    Some(match error {
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => TlsProblem::NotTls,
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsProblem::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsProblem::WrongName(cert_text(cert))
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsProblem::OutOfDate(cert_text(cert)),
            CertificateError::Other(other)
                if format!("{other:?}").contains("CaUsedAsEndEntity") =>
            {
                TlsProblem::CaAsServerCertificate
            }
            other => TlsProblem::BadCertificate(cert_text(other)),
        },
        TlsError::AlertReceived(_)
        | TlsError::PeerIncompatible(_)
        | TlsError::PeerMisbehaved(_) => TlsProblem::Handshake(error.to_string()),
        _ => return None,
    })
}

fn cert_text(error: &CertificateError) -> String {
    TlsError::InvalidCertificate(error.clone()).to_string()
}

/// The TLS problem behind a failed request, if there is one that retrying cannot fix.
pub fn diagnose(error: &(dyn StdError + 'static)) -> Option<TlsProblem> {
    find_rustls(error).and_then(classify)
}

/// For a plain `http://` request: the answer could not be parsed as HTTP at all (hyper's
/// parse error, such as "invalid HTTP version" when a TLS server sends an alert), which is
/// what a TLS server answers to plain text.
pub fn diagnose_plain(error: &(dyn StdError + 'static)) -> Option<TlsProblem> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(cause) = next {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return Some(TlsProblem::SpeaksTls);
        }
        next = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rustls_error_is_found_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(diagnose(&io), Some(TlsProblem::UnknownIssuer));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(diagnose(&plain), None);
    }

    #[test]
    fn every_message_names_its_fix() {
        assert!(TlsProblem::NotTls.to_string().contains("is it http://?"));
        for problem in [TlsProblem::CaAsServerCertificate, TlsProblem::UnknownIssuer] {
            assert!(
                problem.to_string().contains("agent-vault tls generate"),
                "{problem}"
            );
        }
    }
}
