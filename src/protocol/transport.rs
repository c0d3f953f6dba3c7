//! The transport rules both programs follow when they talk to an agent-vault (and, for the
//! launcher, to OpenBao): which addresses may be spoken to in plain http, and the one
//! reqwest client setup. Decided from addresses alone, before any connection, so a refused
//! address is sent nothing (no token, no value). Knows nothing of endpoints or tokens.

use super::client::Error;

/// `localhost`, 127.0.0.0/8 or `::1` (bracketed or not, as `Url::host_str` writes hosts).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The admin CLI's address rule (agent-run's lives in its `config`, with its own flag
/// names): `https://` anywhere, `http://` only to a loopback host (127.0.0.0/8, `::1`,
/// `localhost`) unless `allow_insecure_http`.
pub fn check_transport(addr: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let url = reqwest::Url::parse(addr).map_err(|e| Error::Address {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })?;
    let host = url.host_str().unwrap_or("");
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(host) => Ok(()),
        "http" => Err(Error::InsecureHttp {
            host: host.to_owned(),
        }),
        other => Err(Error::Address {
            addr: addr.to_owned(),
            reason: format!("scheme {other:?} is not http or https"),
        }),
    }
}

/// The one HTTP client setup of the admin CLI, the store source and the OpenBao source. No
/// proxy ever comes from the environment: `HTTP_PROXY`, `http_proxy`, `ALL_PROXY` are set
/// for other programs and would see the token. The user's `--proxy` (validated by the
/// launcher's `config`: an `http://` proxy only when every non-loopback address is https, so
/// the token stays inside a CONNECT tunnel) is used for non-loopback addresses only.
/// `ca_pem` adds trusted CAs (a bundle).
pub fn http_client_builder(
    proxy: Option<&reqwest::Url>,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::blocking::ClientBuilder, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .no_proxy();
    if let Some(proxy) = proxy {
        let proxy = proxy.clone();
        builder = builder.proxy(reqwest::Proxy::custom(move |url| {
            url.host_str()
                .filter(|host| !is_loopback(host))
                .map(|_| proxy.clone())
        }));
    }
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("bad CA certificate (--ca-cert): {e}"))?;
        if certs.is_empty() {
            return Err("bad CA certificate (--ca-cert): no PEM certificate in it".to_owned());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::{check_transport, is_loopback};

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "https://vault.internal:8377",
            "http://127.0.0.1:8377",
            "http://127.8.9.10:1",
            "http://[::1]:8377",
            "http://localhost:8377",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.255.255.1:9",
            "http://localhost.invalid:1",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:8377",
        ] {
            assert!(check_transport(refused, false).is_err(), "{refused}");
            assert!(check_transport(refused, true).is_ok(), "{refused}");
        }
        assert!(check_transport("ftp://127.0.0.1", true).is_err());
        assert!(check_transport("not a url", true).is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("[::1]") && is_loopback("::1") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("[localhost]x") && !is_loopback("10.0.0.1"));
    }
}
